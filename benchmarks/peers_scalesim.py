"""SCALE-Sim 3.0 beside hwgen: cycles of every GEMM layer of a compiled model on a 16x16 array.

Run (from the project's environment)::

    python benchmarks/peers_scalesim.py OUT_OR_MODEL [--sim OUT/sim.json] [--dataflows os,ws]
                                         [--uniform] [--bandwidth WORDS] [--json FILE]

``OUT_OR_MODEL`` is an ``hwgen compile --target fpga`` output directory (``compiled.pkl``)
or a model name (compiled here on the default configuration; ``m3vit-edge-moe`` is the
benchmark). The GEMMs are the program's LINEAR instructions grouped per weight matrix
(:mod:`peer_layers`): M = tokens, or for an expert its routed tokens measured on the
instruction-set simulator for ``hwgen simulate``'s default input (``--uniform``: the
compiler's uniform-routing estimate), K, N as the hardware runs them (N padded to
``mac_cols``). Each distinct (M, K, N) runs once per dataflow.

SCALE-Sim is a benchmark peer, not a dependency: it needs numpy < 2, so it lives in its own
virtual environment, ``$SCALESIM_VENV`` (default ``/work/venvs/scalesim``)::

    python -m venv /work/venvs/scalesim
    /work/venvs/scalesim/bin/pip install "numpy<2" scalesim==3.0.0

The equivalent array: ``mac_rows x mac_cols`` PEs; the activation buffer split in halves for
SCALE-Sim's ifmap and ofmap SRAMs and the linear unit's two weight banks as its filter SRAM,
all converted to elements (SCALE-Sim's word is one byte: its kB are kilo-elements here).
Default ``InterfaceBandwidth CALC``: SCALE-Sim reports stall-free compute cycles and the DRAM
bandwidth they would need; ``--bandwidth W`` models a W-element/cycle interface instead
(much slower to simulate; hwgen's 256-bit port carries 16 weights or 8 activations a cycle).
Printed per IR node: SCALE-Sim's cycles per dataflow, hwgen's model of the same LINEAR
instructions, and the RTL's measured cycles of the node from ``--sim`` (whole node: for a
MoE layer also routing, gathers and combines).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_layers import add_source_args, load_gemms, sim_layer_cycles  # noqa: E402

DEFAULT_VENV = "/work/venvs/scalesim"
HOWTO = ('python -m venv {v} && {v}/bin/pip install "numpy<2" scalesim==3.0.0')


def scalesim_python() -> Path:
    venv = Path(os.environ.get("SCALESIM_VENV", DEFAULT_VENV))
    py = venv / "bin" / "python"
    if not py.exists():
        sys.exit(f"SCALE-Sim's environment {venv} does not exist (set SCALESIM_VENV to another one). Make it with:\n"
                 f"  {HOWTO.format(v=venv)}")
    return py


def _config(cfg, dataflow: str, bandwidth: int | None) -> str:
    act_elems = cfg.act_buffer_bytes // (cfg.act_fmt.width // 8)
    w_elems = cfg.weight_buffer_bytes // (cfg.weight_fmt.width // 8)
    return f"""[general]
run_name = hwgen_{dataflow}

[architecture_presets]
ArrayHeight : {cfg.mac_rows}
ArrayWidth : {cfg.mac_cols}
IfmapSramSzkB : {act_elems // 2 // 1024}
FilterSramSzkB : {max(1, w_elems // 1024)}
OfmapSramSzkB : {act_elems // 2 // 1024}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Dataflow : {dataflow}
Bandwidth : {bandwidth or 16}
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : 10
IfmapSRAMBankNum : 10
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : 10
FilterSRAMBankNum : 10
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false

[run_presets]
InterfaceBandwidth : {"USER" if bandwidth else "CALC"}
UseRamulatorTrace : False
"""


def run_scalesim(shapes: list[tuple[int, int, int]], cfg, dataflow: str, bandwidth: int | None, work: Path) -> dict:
    """``{(M, K, N): {"cycles", "cycles_with_prefetch", "util_pct", "dram_filter_reads"}}`` from one run."""
    py = scalesim_python()
    d = work / dataflow
    d.mkdir(parents=True, exist_ok=True)
    (d / "scale.cfg").write_text(_config(cfg, dataflow, bandwidth))
    (d / "layout.csv").write_text("")
    # SCALE-Sim's GEMM topology: "Layer, M, N, K" (M rows, N output columns, K reduction)
    (d / "topo.csv").write_text("Layer, M, N, K,\n" + "".join(f"g{i}, {m}, {n}, {k},\n"
                                                            for i, (m, k, n) in enumerate(shapes)))
    cmd = [str(py), "-m", "scalesim.scale", "-t", str(d / "topo.csv"), "-l", str(d / "layout.csv"),
           "-c", str(d / "scale.cfg"), "-p", str(d / "out"), "-i", "gemm", "-s", "N"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    rep = d / "out" / f"hwgen_{dataflow}"
    if r.returncode != 0 or not (rep / "COMPUTE_REPORT.csv").exists():
        sys.exit(f"SCALE-Sim failed ({' '.join(cmd)}), exit {r.returncode}:\n{r.stderr[-3000:] or r.stdout[-3000:]}")

    def rows(name):
        with open(rep / name) as f:
            return [[x.strip() for x in row] for row in csv.reader(f)][1:]

    out = {}
    detail = rows("DETAILED_ACCESS_REPORT.csv")
    for i, row in enumerate(rows("COMPUTE_REPORT.csv")):
        out[shapes[i]] = {"cycles_with_prefetch": float(row[1]), "cycles": float(row[2]), "stall_cycles": float(row[3]),
                          "util_pct": float(row[4]), "dram_filter_reads": float(detail[i][15])}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(ap)
    ap.add_argument("--dataflows", default="os,ws")
    ap.add_argument("--bandwidth", type=int, default=None, help="USER interface bandwidth in elements/cycle")
    args = ap.parse_args(argv)

    scalesim_python()
    t0 = time.time()
    c, b, rows, gs, shapes = load_gemms(args)
    print(f"{len(gs)} GEMMs ({len(shapes)} distinct shapes), {sum(g.m * g.k * g.n for g in gs):,} MACs; "
          f"routing: {'uniform estimate' if rows is None else 'measured (isa_sim, seeded input)'}")
    dfs = [d.strip() for d in args.dataflows.split(",") if d.strip()]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for df in dfs:
            t = time.time()
            res[df] = run_scalesim(shapes, c.config, df, args.bandwidth, Path(tmp))
            print(f"SCALE-Sim {df}: {time.time() - t:.0f} s")
    measured = sim_layer_cycles(args.sim, b.name)
    layers: dict = {}
    for g in gs:
        row = layers.setdefault(g.layer, {"layer": g.layer, "gemms": 0, "macs": 0, "hwgen_model": 0.0,
                                          **{f"scalesim_{df}": 0.0 for df in dfs}})
        row["gemms"] += 1
        row["macs"] += g.m * g.k * g.n
        row["hwgen_model"] += g.cycles
        for df in dfs:
            row[f"scalesim_{df}"] += res[df][(g.m, g.k, g.n)]["cycles"]
    for name, row in layers.items():
        if name in measured:
            row["rtl_node"] = measured[name]
    cols = ["layer", "gemms", "macs"] + [f"scalesim_{df}" for df in dfs] + ["hwgen_model"] + (["rtl_node"] if measured else [])
    print(" | ".join(cols) + " | hwgen / " + f"scalesim_{dfs[0]}")
    tot = {k: 0.0 for k in cols[1:]}
    for row in layers.values():
        print(" | ".join(str(row.get(k, "")) if k in ("layer", "gemms", "macs") else f"{row.get(k, 0):,.0f}" for k in cols)
              + f" | {row['hwgen_model'] / row[f'scalesim_{dfs[0]}']:.2f}")
        for k in tot:
            tot[k] += row.get(k, 0)
    print("TOTAL | " + " | ".join(f"{tot[k]:,.0f}" for k in cols[1:])
          + f" | {tot['hwgen_model'] / tot[f'scalesim_{dfs[0]}']:.2f}")
    peak = sum(g.m * g.k * g.n for g in gs) / (c.config.mac_rows * c.config.mac_cols)
    print(f"ideal (MACs / {c.config.mac_rows * c.config.mac_cols} per cycle): {peak:,.0f} cycles; wall {time.time() - t0:.0f} s")
    result = {"source": args.source, "binding": b.name, "dataflows": dfs, "bandwidth": args.bandwidth or "CALC",
              "routing": "uniform" if rows is None else "measured", "layers": list(layers.values()), "total": tot,
              "ideal_cycles": peak,
              "gemms": [{"name": g.name, "m": g.m, "k": g.k, "n": g.n, "hwgen_model": g.cycles,
                         **{f"scalesim_{df}": res[df][(g.m, g.k, g.n)] for df in dfs}} for g in gs]}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
