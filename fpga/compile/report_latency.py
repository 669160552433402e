"""The latency part of the FPGA report: model and RTL side by side, Edge-MoE, plots.

* :func:`latency_section`: Markdown of the cycle model against the RTL's measured cycles
  (``sim.json``), per layer (IR node), the largest deviations in bold, and per op type;
* :func:`edge_moe_comparison`: hwgen's figures next to Edge-MoE's published configuration
  (ZCU102, 300 MHz, a 16 x 16 linear array = 256 MAC/cycle, 783 M MAC an image) and the
  utilisation against that compute floor, with the model's own MAC count from the IR;
* :func:`plot_latency`, :func:`plot_roofline`: ``layers.png`` (cycles per layer, model and
  RTL) and ``roofline.png`` (achieved ops/cycle against operational intensity per layer,
  the array's peak and the external port's roof).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EDGE_MOE", "latency_section", "edge_moe_comparison", "plot_latency", "plot_roofline",
           "LAYER_DEVIATION_LIMIT", "TOTAL_DEVIATION_LIMIT"]

#: Edge-MoE (Sarkar et al., ICCAD 2023) as published: the board, its clock, the linear
#: unit's MACs a cycle and the MACs of one M3ViT image.
EDGE_MOE = {"board": "ZCU102", "clock_hz": 300e6, "macs_per_cycle": 16 * 16, "macs_per_image": 783e6,
            "source": "Edge-MoE, Sarkar et al., ICCAD 2023: ZCU102 at 300 MHz, 16x16 linear unit, "
                      "783 M MAC per M3ViT image"}
#: IR ops whose MACs are matrix products on the array (the roofline's points).
MATRIX_OPS = {"hwgen.Linear", "Gemm", "MatMul", "Conv", "hwgen.MoE"}
#: What the RTL tests hold the model to: every layer within 10 %, the total within 5 %.
LAYER_DEVIATION_LIMIT = 0.10
TOTAL_DEVIATION_LIMIT = 0.05


def _dev(model: float, rtl: float) -> float:
    return (model - rtl) / rtl if rtl else 0.0


def latency_section(report: dict, top: int = 5) -> str:
    """Markdown: the cycle model and, when measured, the RTL per layer and per op type."""
    layers = [r for r in report["layers"] if "cycles_model" in r]
    cm = report.get("cycle_model", {})
    lines = [f"Cycle model: `fpga/cost/cycles.py` (from the engines' RTL; not fitted). MoE rows: "
             f"{cm.get('moe_rows', 'uniform expectation')}.", ""]
    measured = [r for r in layers if "cycles_measured" in r]
    if not measured:
        lines += [f"Total: {report.get('cycles', 0):,} cycles (model). `hwgen simulate OUT` measures the RTL.", ""]
        return "\n".join(lines)
    tm = sum(r["cycles_model"] for r in measured)
    tr = sum(r["cycles_measured"] for r in measured)
    worst = sorted(measured, key=lambda r: -abs(_dev(r["cycles_model"], r["cycles_measured"])))[:top]
    bold = {r["name"] for r in worst}
    lines += [f"Total: model {tm:,} cycles, RTL {tr:,} cycles ({_dev(tm, tr):+.2%}).", "",
              "| layer | op | model cycles | RTL cycles | model - RTL |", "|---|---|---|---|---|"]
    for r in layers:
        if "cycles_measured" not in r:
            continue
        d = f"{_dev(r['cycles_model'], r['cycles_measured']):+.2%}"
        name = f"**{r['name']}**" if r["name"] in bold else r["name"]
        lines.append(f"| {name} | {r['op']} | {r['cycles_model']:,} | {r['cycles_measured']:,} | "
                     f"{'**' + d + '**' if r['name'] in bold else d} |")
    lines.append("")
    lines.append("Largest deviations (bold): " + ", ".join(
        f"{r['name']} {_dev(r['cycles_model'], r['cycles_measured']):+.2%}" for r in worst) + ".")
    lines.append("")
    by_op = report.get("cycles_by_op") or {}
    if by_op:
        lines += ["| instruction | count | model cycles | RTL cycles | model - RTL |", "|---|---|---|---|---|"]
        for op, row in by_op.items():
            if "rtl" in row:
                lines.append(f"| {op} | {row['count']} | {round(row['model']):,} | {row['rtl']:,} | "
                             f"{_dev(row['model'], row['rtl']):+.2%} |")
        lines.append("")
    return "\n".join(lines)


def edge_moe_comparison(macs_ir: int, cycles_model: float, config, cycles_rtl: int | None = None) -> dict:
    """hwgen next to Edge-MoE's configuration: latencies, MACs, utilisation of the compute floor.

    ``macs_ir``: MACs of one image counted from the IR (:func:`hwgen.analysis.total_macs`);
    ``cycles_*``: one image on hwgen's accelerator at ``config``.
    """
    e = EDGE_MOE
    floor_s = e["macs_per_image"] / e["macs_per_cycle"] / e["clock_hz"]
    own_floor_s = macs_ir / (config.mac_rows * config.mac_cols) / config.clock_hz
    lat_model = cycles_model / config.clock_hz
    rows = [{"name": f"Edge-MoE compute floor ({e['board']}, {e['clock_hz'] / 1e6:.0f} MHz, "
                     f"{e['macs_per_cycle']} MAC/cycle, {e['macs_per_image'] / 1e6:.0f} M MAC)",
             "latency_s": floor_s, "macs": e["macs_per_image"], "utilisation": 1.0, "source": e["source"]},
            {"name": f"hwgen IR MACs at hwgen's array ({config.mac_rows}x{config.mac_cols}, "
                     f"{config.clock_hz / 1e6:.0f} MHz): compute floor",
             "latency_s": own_floor_s, "macs": int(macs_ir), "utilisation": 1.0,
             "source": "hwgen.analysis.total_macs of the compiled graph"},
            {"name": "hwgen cycle model", "latency_s": lat_model, "macs": int(macs_ir),
             "utilisation": floor_s / lat_model if lat_model else 0.0,
             "source": "fpga/cost/cycles.py; utilisation = Edge-MoE floor / latency"}]
    if cycles_rtl:
        lat = cycles_rtl / config.clock_hz
        rows.append({"name": "hwgen RTL (Verilator)", "latency_s": lat, "macs": int(macs_ir),
                     "utilisation": floor_s / lat, "source": "hwgen simulate (sim.json)"})
    return {"rows": rows, "macs_ir_vs_edge_moe": macs_ir / e["macs_per_image"], "floor_s": floor_s}


def plot_latency(report: dict, path: Path) -> None:
    """Bars of cycles per layer: the model, and the RTL next to it when measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in report["layers"] if r.get("cycles_model")]
    if not rows:
        return
    both = any("cycles_measured" in r for r in rows)
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, max(3, 0.18 * len(rows) + 1)))
    ax.barh(y, [r["cycles_model"] for r in rows], height=0.4 if both else 0.8, label="model")
    if both:
        ax.barh(y + 0.4, [r.get("cycles_measured", 0) for r in rows], height=0.4, label="RTL (Verilator)")
        ax.legend()
    ax.set_yticks(y, [r["name"][-28:] for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("cycles")
    ax.set_title(f"{Path(str(report['model'])).name}: cycles per layer ({report['config']['clock_hz'] / 1e6:.0f} MHz)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roofline(report: dict, path: Path) -> None:
    """Achieved ops/cycle (2 per MAC; RTL cycles when measured) against ops per external byte,
    for the layers that multiply matrices on the array (:data:`MATRIX_OPS`; attention has no
    external traffic and is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rf = report.get("roofline")
    pts = [r for r in report["layers"] if r.get("op") in MATRIX_OPS and r.get("macs") and r.get("dram_bytes")
           and r.get("cycles_model")]
    if not rf or not pts:
        return
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [2 * r["macs"] / r["dram_bytes"] for r in pts]
    meas = all("cycles_measured" in r for r in pts)
    ys = [2 * r["macs"] / (r["cycles_measured"] if meas else r["cycles_model"]) for r in pts]
    lo, hi = min(xs) / 2, max(xs) * 2
    ridge = rf["peak_ops_per_cycle"] / rf["ext_bytes_per_cycle"]
    grid = [lo, min(max(ridge, lo), hi), hi]
    ax.loglog(grid, [min(rf["peak_ops_per_cycle"], x * rf["ext_bytes_per_cycle"]) for x in grid], "k-",
              label=f"roof: {rf['peak_ops_per_cycle']} ops/cycle, {rf['ext_bytes_per_cycle']} B/cycle")
    ops = sorted({r["op"] for r in pts})
    for op in ops:
        sel = [i for i, r in enumerate(pts) if r["op"] == op]
        ax.scatter([xs[i] for i in sel], [ys[i] for i in sel], s=14, label=op)
    ax.set_xlabel("operational intensity (ops / external byte)")
    ax.set_ylabel(f"achieved ops / cycle ({'RTL' if meas else 'model'})")
    ax.set_title(f"{Path(str(report['model'])).name}: roofline per layer")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
