"""The FPGA target's report (schema :mod:`hwgen.report`) from a compiled model.

Figures per IR node (``layers``) and in total: estimated cycles (:mod:`fpga.cost.cycles`),
latency at the configured clock, first-order energy (:mod:`fpga.cost.energy`), MACs,
instructions, external bytes. When a simulation has run (``sim.json`` beside the
report), measured cycles per layer stand next to the estimate.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np

from hwgen.report import make_report

from ..cost.cycles import BURST, FETCH_CYCLES, estimate_cycles, memory_latency
from ..cost.expert_bytes import expert_bytes_section, expert_weight_bytes
from ..cost.energy import ENERGY_TABLE, action_energies, instruction_actions, layer_energy, node_actions
from ..cost.routing import RowsOfInstr, instruction_rows
from .compiler import Binding, Compiled
from .report_latency import edge_moe_comparison, latency_section

__all__ = ["binding_costs", "build_report", "energy_report", "latency_figures"]


def binding_costs(compiled: Compiled, b: Binding, moe_choices: dict | None = None) -> dict:
    """Per-node and total modelled cycles and actions of one program set.

    ``moe_choices``: per MoE node the experts its tokens pick for a given input
    (:func:`fpga.cost.routing.expert_choices`); without, the uniform expectation.
    ``instr_cycles``: per program, the model's cycles of each instruction.
    """
    c = compiled.config
    rows_of = RowsOfInstr(moe_choices, c.moe_k)
    per_node: "OrderedDict[str, dict]" = OrderedDict()
    by_op: "OrderedDict[str, dict]" = OrderedDict()
    instr_cycles: list[list[float]] = []
    total = {"cycles": 0.0, "macs": 0.0, "buffer_words": 0.0, "dram_bytes": 0.0, "instructions": 0}
    for seg in b.segments:
        if seg.kind != "program":
            per_node.setdefault(seg.node, {"cycles": 0.0, "macs": 0.0, "buffer_words": 0.0, "dram_bytes": 0.0,
                                           "instructions": 0, "host": True})
            continue
        instr_cycles.append([])
        for e in seg.instrs:
            node = e.node or "(control)"
            row = per_node.setdefault(node, {"cycles": 0.0, "macs": 0.0, "buffer_words": 0.0, "dram_bytes": 0.0,
                                             "instructions": 0})
            rows, by_entry, used = rows_of(e)
            cyc = estimate_cycles(e.instr, c, rows, gather_ended_by_entry=by_entry, experts_used=used)
            instr_cycles[-1].append(cyc)
            op_row = by_op.setdefault(e.instr.op.name, {"count": 0, "model": 0.0})
            op_row["count"] += 1
            op_row["model"] += cyc
            act = instruction_actions(e.instr, c, rows)
            row["cycles"] += cyc
            row["instructions"] += 1
            for k in ("macs", "buffer_words", "dram_bytes"):
                row[k] += act[k]
            total["cycles"] += cyc
            total["instructions"] += 1
            for k in ("macs", "buffer_words", "dram_bytes"):
                total[k] += act[k]
    return {"nodes": per_node, "total": total, "by_op": by_op, "instr_cycles": instr_cycles,
            "moe_rows_exact": rows_of.exact}


def build_report(compiled: Compiled, model: str, sim: dict | None = None, synth: dict | None = None,
                 moe_choices: dict | None = None, moe_input: str = "") -> dict:
    """The report of ``compiled`` (its first program set); ``sim``: ``sim.json`` of a run;
    ``moe_choices``/``moe_input``: the experts each MoE token picks for that run's input
    (:func:`fpga.cost.routing.expert_choices`) and what the input was."""
    c = compiled.config
    f = c.clock_hz
    main = compiled.bindings[0]
    if moe_choices is None and sim is not None:  # the routing of the simulated input (sim.json)
        run = next((p for p in sim.get("bindings", []) if p.get("name") == main.name), {})
        if run.get("moe_experts"):
            moe_choices = {k: np.asarray(v) for k, v in run["moe_experts"].items()}
            moe_input = moe_input or run.get("input", "")
    costs = binding_costs(compiled, main, moe_choices)
    t = costs["total"]
    # Resources (estimate always; Yosys when `hwgen fpga synth --report OUT` ran) and Clock
    # (Fmax estimate): keys resources, resources_detail, clock, latency_at_clock_used_s; warnings
    # appended (fpga/cost/report_section.py). Latency and static energy use the clock the design
    # can reach: the lower of the target and the Fmax estimate.
    from ..cost.report_section import resources_and_clock

    warnings: list = []
    rc = resources_and_clock(c, t["cycles"], synth, warnings)
    f = rc["clock"].get("clock_used_hz") or c.clock_hz
    latency = t["cycles"] / f
    routed = _routed_rows(main, moe_choices, c.moe_k) if costs["moe_rows_exact"] else None
    en = energy_report(compiled, main, {n: r["cycles"] for n, r in costs["nodes"].items() if not r.get("host")}, routed,
                       config=dataclasses.replace(c, clock_hz=f))
    energy = en["total"]["energy_breakdown_j"]
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
        fig = en["layers"][node]
        entry = {"name": node, "op": _op_of(main, node), "latency_s": lat, "energy_j": fig["energy_j"],
                 "average_power_w": fig["average_power_w"], "gop_per_s": fig["gop_per_s"], "gop_per_j": fig["gop_per_j"],
                 "cycles_estimated": round(row["cycles"]), "cycles_model": round(row["cycles"]),
                 "instructions": row["instructions"],
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
        {"name": "clock_hz", "value": f, "unit": "Hz",
         "source": "the lower of the configured clock_hz and the Fmax estimate (report key clock, fpga/cost/clock.py)"},
        {"name": "fetch_cycles", "value": FETCH_CYCLES, "unit": "cycles per instruction besides the memory latency",
         "source": "fpga/hdl/controller.py: NEXT, FETCH, DECODE states"},
        {"name": "memory_latency", "value": memory_latency(c), "unit": "cycles from request to first beat",
         "source": "the simulated memory's default (simulators/program_backend.py); DDR4 behind an AXI interconnect "
                   "is slower: set mem_latency"},
        {"name": "burst_beats", "value": BURST, "unit": "beats", "source": "fpga/hdl/dma.py (burst_beats=16)"},
        _moe_rows_assumption(costs, moe_input),
    ]
    if host_ops:
        warnings.append(f"{len(host_ops)} node(s) run on the host (see host_ops)")
    if main.stats["spilled"]:
        warnings.append(f"{len(main.stats['spilled'])} matrices are spilled to external memory for lack of buffer space")
    totals = {"cycles_estimated": round(t["cycles"]), "macs": int(t["macs"]), "instructions": t["instructions"],
              "dram_bytes": int(t["dram_bytes"]), "buffer_words_moved": int(t["buffer_words"])}
    extra = {"cycles": round(t["cycles"]), "totals": totals,
             "energy_breakdown_j": {k: float(v) for k, v in energy.items()},
             "energy": {k: en["total"][k] for k in ("average_power_w", "gop_per_s", "gop_per_j")}
             | {"per_action_j": en["per_action_j"]},
             # every program set under the uniform routing expectation: main's costs are that without moe_choices
             "programs": [{"name": b.name, "bind": b.bind, **b.stats,
                           "cycles_estimated": round((costs if b is main and moe_choices is None
                                                      else binding_costs(compiled, b))["total"]["cycles"])}
                          for b in compiled.bindings],
             "notes": ["cycles: an analytic model of each engine's RTL (fpga/cost/cycles.py, docs/fpga-cost-model.md); "
                       "`hwgen simulate OUT` measures them in RTL",
                       "resources: the estimator (fpga/cost/resources.py, calibrated on recorded Yosys runs); "
                       "`hwgen fpga synth --report OUT` adds Yosys' figures",
                       "clock: latency and static energy at the lower of the target clock and the Fmax estimate "
                       "(fpga/cost/clock.py); latency_at_target_clock_s is the figure at the target clock"],
             "warnings": warnings}
    if t["macs"]:
        extra["gops"] = 2 * t["macs"] / 1e9
        extra["throughput_gop_s"] = 2 * t["macs"] / latency / 1e9 if latency else 0.0
    if sim is not None:
        extra["simulation"] = {k: sim[k] for k in ("cycles", "bit_exact", "max_abs_error_vs_float", "simulator",
                                                   "cycles_per_s", "wall_s") if k in sim}
        if "cycles" in sim and sim["cycles"]:
            extra["latency_measured_s"] = sim["cycles"] / f
    extra.update(rc)
    extra["latency_at_target_clock_s"] = t["cycles"] / c.clock_hz
    extra.update(latency_figures(compiled, main, costs, sim, moe_input, model))
    moe_bytes = _moe_expert_bytes(compiled, sim, moe_choices)
    if moe_bytes is not None:
        extra["moe_expert_bytes"] = moe_bytes
    report = make_report("fpga", model, c.to_dict(), latency, float(sum(energy.values())), layers, host_ops,
                         assumptions, **extra)
    report["markdown_sections"] = [{"title": "Latency: cycle model and RTL", "markdown": latency_section(report)}]
    if moe_bytes is not None:
        report["markdown_sections"].append({"title": "MoE: expert weight bytes per image",
                                            "markdown": expert_bytes_section(moe_bytes)})
    return report


def _moe_expert_bytes(compiled: Compiled, sim: dict | None, main_choices: dict | None) -> dict | None:
    """``moe_expert_bytes`` of the report: per program set (task), the expert weight bytes
    of one image (:func:`fpga.cost.expert_bytes.expert_weight_bytes`), with the routing of
    the simulated input where ``sim.json`` has it, else the uniform expectation."""
    runs = {p.get("name"): p for p in (sim or {}).get("bindings", [])}
    tasks = []
    for i, b in enumerate(compiled.bindings):
        if not any(n.op == "MoE" and n.domain == "hwgen" for n in b.graph.nodes):
            return None
        run = runs.get(b.name, {})
        choices = main_choices if i == 0 else None
        if choices is None and run.get("moe_experts"):
            choices = {k: np.asarray(v) for k, v in run["moe_experts"].items()}
        fig = expert_weight_bytes(b, compiled.config, choices)
        fig["task"] = b.name
        fig["input"] = run.get("input", "") if fig["routing"] == "routed" else ""
        tasks.append(fig)
    return {"source": "fpga/cost/expert_bytes.py", "tasks": tasks}


def _moe_rows_assumption(costs: dict, moe_input: str) -> dict:
    if costs["moe_rows_exact"]:
        return {"name": "moe_rows", "value": "routed", "unit": "rows per expert",
                "source": f"the experts each token picks in the fixed-point reference of {moe_input or 'the given input'}"}
    return {"name": "moe_rows", "value": "uniform", "unit": "rows per expert",
            "source": "no input given: each expert is expected to get tokens x k / E rows"}


def latency_figures(compiled: Compiled, main: Binding, costs: dict, sim: dict | None, moe_input: str = "",
                    model: str = "") -> dict:
    """The report's latency keys: ``cycle_model`` (totals, model against RTL), ``cycles_by_op``
    (model and RTL per instruction type), ``roofline`` (the array's peak in ops/cycle and the
    external port in bytes/cycle) and, for Edge-MoE's M3ViT, ``comparisons`` and ``edge_moe``."""
    from hwgen.analysis import total_macs

    c = compiled.config
    t_model = costs["total"]["cycles"]
    by_op = {k: dict(v) for k, v in costs["by_op"].items()}
    has_moe = any(n.op == "MoE" and n.domain == "hwgen" for n in main.graph.nodes)
    cm = {"source": "fpga/cost/cycles.py", "total_model": round(t_model), "memory_latency": memory_latency(c),
          "moe_rows": "no MoE layers" if not has_moe else
          (f"routed: the experts the tokens of {moe_input or 'the given input'} pick in the fixed-point "
           "reference") if costs["moe_rows_exact"] else "uniform expectation (no input given)"}
    prog = None
    if sim is not None:
        prog = next((p for p in sim.get("bindings", []) if p.get("name") == main.name), None)
    rtl_total = None
    if prog is not None and prog.get("cycles"):
        rtl_total = int(prog["cycles"])
        cm["total_rtl"] = rtl_total
        cm["deviation"] = (t_model - rtl_total) / rtl_total
        measured = prog.get("instr_cycles") or []
        progs = [s for s in main.segments if s.kind == "program"]
        if len(measured) == len(progs):
            for seg, meas in zip(progs, measured):
                for e, m in zip(seg.instrs, meas):
                    row = by_op[e.instr.op.name]
                    row["rtl"] = row.get("rtl", 0) + int(m)
    out = {"cycle_model": cm, "cycles_by_op": by_op,
           "roofline": {"peak_ops_per_cycle": 2 * c.mac_rows * c.mac_cols, "ext_bytes_per_cycle": c.mem_port_bits // 8}}
    if "edge-moe" in model:  # Edge-MoE's M3ViT: its published configuration beside hwgen's
        cmp = edge_moe_comparison(total_macs(main.graph), t_model, c, rtl_total)
        out["comparisons"] = cmp["rows"]
        out["edge_moe"] = {k: v for k, v in cmp.items() if k != "rows"}
    return out


def energy_report(compiled: Compiled, b: Binding, cycles_by_node: dict, rows: dict | None = None,
                  config=None) -> dict:
    """Energy per layer and in total of program set ``b`` (:func:`fpga.cost.energy.layer_energy`).

    ``cycles_by_node``: cycles per IR node (estimated, or measured from ``sim.json``);
    ``rows``: measured rows of register-sized instructions (see
    :func:`fpga.cost.energy.node_actions`); ``config``: the configuration to cost with (default
    the compiled one; the report passes it at the clock it uses). Returns ``{"layers": {node: figures}, "total":
    figures, "per_action_j": {action: J}}``, figures as :func:`fpga.cost.energy.energy_figures`.
    """
    c = config or compiled.config
    out = layer_energy(cycles_by_node, node_actions(b, c, rows), c)
    out["per_action_j"] = action_energies(c)
    return out


def _routed_rows(b: Binding, moe_choices: dict, k: int) -> dict:
    """``{(segment index, instruction index): rows}`` of the routed input (energy's rows)."""
    per_prog = iter(instruction_rows(b, moe_choices, k))
    out = {}
    for si, seg in enumerate(b.segments):
        if seg.kind == "program":
            for ii, (rows, _, _) in enumerate(next(per_prog)):
                out[(si, ii)] = rows
    return out


def _op_of(b: Binding, node: str) -> str:
    for n in b.graph.nodes:
        if n.name == node:
            return f"{n.domain + '.' if n.domain else ''}{n.op}"
    return "control"
