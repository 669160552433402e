"""The FPGA target's report (schema :mod:`hwgen.report`) from a compiled model.

Figures per IR node (``layers``) and in total: estimated cycles (:mod:`fpga.cost.cycles`),
latency at the configured clock, first-order energy (:mod:`fpga.cost.energy`), MACs,
instructions, external bytes. When a simulation has run (``sim.json`` beside the
report), measured cycles per layer stand next to the estimate.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from hwgen.report import make_report

from ..cost.cycles import BURST, FETCH_CYCLES, MEM_LATENCY, estimate_cycles
from ..cost.energy import ENERGY_TABLE, estimate_energy, instruction_actions
from .compiler import Binding, Compiled

__all__ = ["binding_costs", "build_report", "first_order_resources"]


def binding_costs(compiled: Compiled, b: Binding) -> dict:
    """Per-node and total estimated cycles and actions of one program set."""
    c = compiled.config
    per_node: "OrderedDict[str, dict]" = OrderedDict()
    total = {"cycles": 0.0, "macs": 0.0, "buffer_words": 0.0, "dram_bytes": 0.0, "instructions": 0}
    for seg in b.segments:
        if seg.kind != "program":
            per_node.setdefault(seg.node, {"cycles": 0.0, "macs": 0.0, "buffer_words": 0.0, "dram_bytes": 0.0,
                                           "instructions": 0, "host": True})
            continue
        for e in seg.instrs:
            node = e.node or "(control)"
            row = per_node.setdefault(node, {"cycles": 0.0, "macs": 0.0, "buffer_words": 0.0, "dram_bytes": 0.0,
                                             "instructions": 0})
            cyc = estimate_cycles(e.instr, c, e.expect_rows)
            act = instruction_actions(e.instr, c, e.expect_rows)
            row["cycles"] += cyc
            row["instructions"] += 1
            for k in ("macs", "buffer_words", "dram_bytes"):
                row[k] += act[k]
            total["cycles"] += cyc
            total["instructions"] += 1
            for k in ("macs", "buffer_words", "dram_bytes"):
                total[k] += act[k]
    return {"nodes": per_node, "total": total}


def first_order_resources(config) -> dict:
    """Resources known without synthesis: the MAC array's DSPs and the buffer's BRAM36."""
    buf_bits = config.buffer_words * config.mem_port_bits
    w_bits = config.weight_buffer_bytes * 8
    return {
        "dsp_mac_array": config.mac_rows * config.mac_cols,
        "bram36_activation_buffer": math.ceil(buf_bits / 36864),
        "bram36_weight_banks": math.ceil(w_bits / 36864),
    }


def build_report(compiled: Compiled, model: str, sim: dict | None = None, synth: dict | None = None) -> dict:
    c = compiled.config
    f = c.clock_hz
    main = compiled.bindings[0]
    costs = binding_costs(compiled, main)
    t = costs["total"]
    latency = t["cycles"] / f
    energy = estimate_energy(t, latency)
    sim_layers = {}
    if sim is not None:
        prog = next((p for p in sim.get("bindings", []) if p.get("name") == main.name), None)
        if prog is not None:
            sim_layers = {k: v for k, v in prog.get("layer_cycles", {}).items()}
    layers = []
    for node, row in costs["nodes"].items():
        if row.get("host"):
            continue
        lat = row["cycles"] / f
        en = estimate_energy(row, lat)
        entry = {"name": node, "op": _op_of(main, node), "latency_s": lat, "energy_j": sum(en.values()),
                 "cycles_estimated": round(row["cycles"]), "instructions": row["instructions"],
                 "macs": int(row["macs"]), "dram_bytes": int(row["dram_bytes"])}
        if node in sim_layers:
            entry["cycles_measured"] = int(sim_layers[node])
        layers.append(entry)
    host_ops = []
    for seg in main.segments:
        if seg.kind == "host":
            host_ops.append({"name": seg.node, "op": _op_of(main, seg.node), "reason": main.host_reasons.get(seg.node, ""),
                             "elements": int(sum(main.graph.tensors[o].size for n in main.graph.nodes if n.name == seg.node
                                                 for o in n.outputs if o))})
    assumptions = [{"name": k, "value": v[0], "unit": v[1], "source": v[2]} for k, v in ENERGY_TABLE.items()]
    assumptions += [
        {"name": "clock_hz", "value": f, "unit": "Hz", "source": "accelerator configuration (clock_hz)"},
        {"name": "fetch_cycles", "value": FETCH_CYCLES, "unit": "cycles per instruction",
         "source": "fpga/hdl/controller.py: FETCH, WAIT_INS, DECODE, NEXT states"},
        {"name": "memory_latency", "value": MEM_LATENCY, "unit": "cycles from request to first beat",
         "source": "assumption: the simulation memory model's default; DDR4 behind an AXI interconnect is slower"},
        {"name": "burst_beats", "value": BURST, "unit": "beats", "source": "fpga/hdl/dma.py (burst_beats=16)"},
        {"name": "moe_routing", "value": "uniform", "unit": "",
         "source": "estimate only: each expert gets tokens x k / E tokens; the simulation measures the real routing"},
    ]
    warnings = []
    if host_ops:
        warnings.append(f"{len(host_ops)} node(s) run on the host (see host_ops)")
    if main.stats["spilled"]:
        warnings.append(f"{len(main.stats['spilled'])} matrices are spilled to external memory for lack of buffer space")
    totals = {"cycles_estimated": round(t["cycles"]), "macs": int(t["macs"]), "instructions": t["instructions"],
              "dram_bytes": int(t["dram_bytes"]), "buffer_words_moved": int(t["buffer_words"])}
    extra = {"cycles": round(t["cycles"]), "totals": totals,
             "energy_breakdown_j": {k: float(v) for k, v in energy.items()},
             "resources": first_order_resources(c),
             "programs": [{"name": b.name, "bind": b.bind, **b.stats,
                           "cycles_estimated": round(binding_costs(compiled, b)["total"]["cycles"])}
                          for b in compiled.bindings],
             "notes": ["cycles are a first-order estimate from the engines' documented behaviour (fpga/cost/cycles.py); "
                       "`hwgen simulate OUT` measures them in RTL",
                       "resources: first-order (no synthesis); `hwgen fpga synth` gives Yosys figures"],
             "warnings": warnings}
    if t["macs"]:
        extra["gops"] = 2 * t["macs"] / 1e9
        extra["throughput_gop_s"] = 2 * t["macs"] / latency / 1e9 if latency else 0.0
    if sim is not None:
        extra["simulation"] = {k: sim[k] for k in ("cycles", "bit_exact", "max_abs_error_vs_float", "simulator",
                                                   "cycles_per_s", "wall_s") if k in sim}
        if "cycles" in sim and sim["cycles"]:
            extra["latency_measured_s"] = sim["cycles"] / f
    if synth is not None:
        extra["resources"] = synth
    # [cost-res] Resources (estimate always; Yosys when `hwgen fpga synth --report OUT` ran) and Clock
    # (Fmax estimate, the clock latency should use): keys resources, resources_detail, clock,
    # latency_at_clock_used_s; warnings appended. fpga/cost/report_section.py
    from ..cost.report_section import resources_and_clock
    extra.update(resources_and_clock(c, t["cycles"], synth, warnings))
    return make_report("fpga", model, c.to_dict(), latency, float(sum(energy.values())), layers, host_ops,
                       assumptions, **extra)


def _op_of(b: Binding, node: str) -> str:
    for n in b.graph.nodes:
        if n.name == node:
            return f"{n.domain + '.' if n.domain else ''}{n.op}"
    return "control"
