"""Fmax estimate from a mapped Yosys netlist: the longest register-to-register path.

The path is found in the LUT-mapped netlist (``write_json`` after :func:`fpga.synth.synthesize`
or ``synth_ecp5``): every cell is a node; flip-flops, block RAM, shift registers and the
registered sides of DSP blocks start and end paths; a LUT, a wide-function mux, a carry
cell or distributed-RAM read is one *logic level* on the way. A path's delay is

    clock-to-out of its start + sum over its cells (cell delay + the route into it) + setup

with the per-family figures of :data:`FAMILIES` (each with its source or marked as an
assumption; dedicated links -- carry cascades, MUXF7/F8 -- have no route delay). This is a
pre-placement estimate: routing is a per-level average, fan-out and congestion are not
modelled. ``docs/fpga-resources-and-clock.md`` compares it with nextpnr on an ECP5.

Interfaces: :func:`critical_path` (netlist dict -> path summary), :func:`estimate_fmax`,
:func:`effective_clock_hz` (the clock latency should use: the lower of the target and the
estimate).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

__all__ = ["FAMILIES", "critical_path", "critical_path_from_file", "estimate_fmax", "effective_clock_hz",
           "clock_check"]

#: Per-family timing figures (ns). ``cells``: type prefix -> (kind, delay) with kind
#: ``"comb"`` (a logic level), ``"cascade"`` (dedicated link in: no route delay), ``"seq"``
#: (starts and ends paths), ``"dsp"`` (see :func:`_dsp`).
FAMILIES = {
    "xcup": {
        "part": "xczu9eg-ffvb1156-2 (Zynq UltraScale+, speed grade -2, 0.85 V)",
        "route_ns": (0.45, "assumption: average net delay per LUT-to-LUT hop before placement; UG949 "
                           "(UltraFast methodology, 'Datapath Delay and Logic Levels') puts route delay at >= 50 % of "
                           "a path in UltraScale devices, and LUT-level figures measured on UltraScale+ (MapBuf "
                           "delay characterisation: ~0.7 ns per LUT level with its wiring, 6 levels in 4.2 ns) "
                           "bracket 0.45 ns net + 0.15 ns LUT"),
        "lut_ns": (0.15, "assumption: LUT6 propagation incl. the CLB input mux (DS925 gives no CLB delays; Vivado's "
                         "timing model is not public): see route_ns"),
        "clk_to_q_ns": (0.10, "assumption: CLB flip-flop clock-to-out"),
        "setup_ns": (0.10, "assumption: CLB flip-flop setup + clock skew"),
        "uncertainty_ns": (0.10, "assumption: clock jitter/uncertainty margin"),
        "carry_ns": (0.10, "assumption: CARRY4/CARRY8 CI->CO per cell (dedicated, no route)"),
        "bram_clk_to_out_ns": (0.90, "assumption: block RAM clock to DOUT without output register; the Versal "
                                     "data sheet (DS958) lists 0.797-0.967 ns for -2/-1, the UltraScale+ figure was "
                                     "not in the sources searched"),
        "dsp_through_ns": (1.0 / 410e6 * 1e9, "DS925 Table 'DSP48 Slice Switching Characteristics', -2 0.85 V: "
                                              "FMAX_NOPIPELINEREG 410 MHz (no MREG/ADREG), used as the DSP's "
                                              "combinational input-to-output delay"),
        "dsp_clk_to_out_ns": (1.0 / 775e6 * 1e9, "DS925: FMAX with all registers 775 MHz at -2 (one period as the "
                                                 "registered DSP's clock-to-out plus internal stage)"),
    },
    "ecp5": {
        "part": "LFE5U-85F CABGA381 (ECP5, nextpnr-ecp5 default speed grade 6)",
        "route_ns": (0.85, "assumption: average routed net delay; nextpnr-ecp5's critical-path report of the GELU "
                           "benchmark design lists 0.47-1.12 ns per general-routing net (so this figure is not "
                           "independent of that design's comparison)"),
        "lut_ns": (0.40, "assumption: LUT4 logic delay of the order of nextpnr-ecp5's timing database (-6)"),
        "clk_to_q_ns": (0.30, "assumption: TRELLIS_FF clock-to-out (nextpnr-ecp5 timing database order)"),
        "setup_ns": (0.10, "assumption: TRELLIS_FF setup"),
        "uncertainty_ns": (0.0, "nextpnr reports Fmax without margin"),
        "carry_ns": (0.10, "assumption: CCU2C carry-in to carry-out (dedicated)"),
        "bram_clk_to_out_ns": (3.8, "assumption: DP16KD clock to output without output register (nextpnr-ecp5)"),
        "dsp_through_ns": (4.0, "assumption: MULT18X18D combinational multiply"),
        "dsp_clk_to_out_ns": (1.0, "assumption"),
    },
}

#: Cell type -> kind, by family. Types not listed are taken as one logic level.
_KINDS = {
    "xcup": [("FD", "seq"), ("RAMB", "seq"), ("SRL", "seq"), ("MUXF", "cascade"), ("CARRY", "carry"),
             ("DSP48E2", "dsp"), ("RAM", "comb"), ("LUT", "comb"), ("INV", "comb"), ("BUFG", "wire"),
             ("VCC", "const"), ("GND", "const")],
    "ecp5": [("TRELLIS_FF", "seq"), ("DP16KD", "seq"), ("PDPW16KD", "seq"), ("L6MUX", "cascade"),
             ("PFUMX", "cascade"), ("CCU2", "carry"), ("MULT18", "dsp"), ("ALU54", "dsp"),
             ("TRELLIS_DPR16X4", "comb"), ("LUT4", "comb"), ("VCC", "const"), ("GND", "const")],
}


def _kind(family: str, cell_type: str) -> str:
    for prefix, kind in _KINDS[family]:
        if cell_type.startswith(prefix):
            return kind
    return "comb"


def _registered_inputs(cell: dict) -> tuple[set, bool]:
    """DSP48E2: input ports that end at an input register, and whether P is registered."""
    p = {k: int(str(v), 2) if isinstance(v, str) and set(v) <= {"0", "1"} else int(v)
         for k, v in cell.get("parameters", {}).items()
         if k in ("AREG", "BREG", "CREG", "DREG", "ADREG", "MREG", "PREG", "REG_INPUTA", "REG_INPUTB")}
    regs = set()
    if p.get("AREG", 0):
        regs |= {"A", "ACIN"}
    if p.get("BREG", 0):
        regs |= {"B", "BCIN"}
    if p.get("CREG", 0):
        regs.add("C")
    if p.get("DREG", 0):
        regs.add("D")
    if p.get("REG_INPUTA", 0):  # ECP5 MULT18X18D style
        regs.add("A")
    if p.get("REG_INPUTB", 0):
        regs.add("B")
    return regs, bool(p.get("PREG", 0) or p.get("MREG", 0))


def critical_path(netlist: dict, family: str = "xcup", top: str | None = None) -> dict:
    """Longest register-to-register path of a mapped netlist (Yosys ``write_json``).

    Returns ``{"delay_ns", "fmax_mhz", "levels" (logic levels: LUTs, distributed-RAM
    reads, unknown cells), "cells" ({type: n} on the path), "start", "end", "family"}``.
    """
    fam = FAMILIES[family]
    v = {k: val[0] for k, val in fam.items() if isinstance(val, tuple)}
    mods = netlist["modules"]
    mod = mods[top] if top else max(mods.values(), key=lambda m: len(m.get("cells", {})))
    cells = mod.get("cells", {})
    driver: dict = {}          # bit -> cell name
    kinds, ins = {}, {}
    for name, c in cells.items():
        kinds[name] = _kind(family, c["type"])
        dirs = c.get("port_directions", {})
        ins[name] = []
        for port, bits in c.get("connections", {}).items():
            for b in bits:
                if isinstance(b, str):
                    continue
                if dirs.get(port) == "output":
                    driver[b] = name
                elif dirs.get(port) == "input":
                    ins[name].append((port, b))
    # combinational cells are nodes; their arrival = max over inputs; sequential cells are sources
    src_delay = {}
    dsp_regs = {}
    for name, k in kinds.items():
        if k == "seq":
            t = cells[name]["type"]
            src_delay[name] = v["bram_clk_to_out_ns"] if t.startswith(("RAMB", "DP16KD", "PDPW16KD")) else v["clk_to_q_ns"]
        elif k == "dsp":
            regs, out_reg = _registered_inputs(cells[name])
            dsp_regs[name] = regs
            if out_reg:
                src_delay[name] = v["dsp_clk_to_out_ns"]
        elif k == "const":
            src_delay[name] = 0.0
    arrival: dict = {}
    pred: dict = {}
    # iterative DFS post-order over combinational nodes
    visiting: set = set()  # on the DFS path: an edge back to one of these closes a loop (ignored)

    def arrive(root: str) -> float:
        stack = [(root, 0)]
        while stack:
            name, i = stack.pop()
            if name in arrival:
                continue
            if name in src_delay:
                arrival[name] = src_delay[name]
                pred[name] = None
                continue
            pending = [driver[b] for p, b in _through_inputs(name, kinds, ins, dsp_regs) if b in driver
                       and driver[b] not in arrival and driver[b] not in visiting]
            if i == 0 and pending:
                visiting.add(name)
                stack.append((name, 1))
                for d in pending:
                    if d != name:
                        stack.append((d, 0))
                continue
            visiting.discard(name)
            best, best_pred = 0.0, None
            for port, b in _through_inputs(name, kinds, ins, dsp_regs):
                d = driver.get(b)
                if d is None or d == name:
                    continue
                a = arrival.get(d)
                if a is None:  # a combinational loop: ignore the edge
                    continue
                a += 0.0 if kinds[name] in ("cascade",) or (kinds[name] == "carry" and port in ("CI", "CIN")) else v["route_ns"]
                if a > best:
                    best, best_pred = a, d
            k = kinds[name]
            arrival[name] = best + (v["lut_ns"] if k == "comb" else v["carry_ns"] if k == "carry"
                                    else v["dsp_through_ns"] if k == "dsp" else 0.05 if k == "cascade" else 0.0)
            pred[name] = best_pred
        return arrival[root]

    worst, worst_end = 0.0, None
    for name, k in kinds.items():
        if k not in ("seq", "dsp"):
            continue
        regs = dsp_regs.get(name, None)
        for port, b in ins[name]:
            if k == "dsp" and port not in regs:
                continue
            if k == "seq" and port.upper() in ("C", "CLK", "CLKARDCLK", "CLKBWRCLK", "WCLK", "CLKA", "CLKB"):
                continue
            d = driver.get(b)
            if d is None:
                continue
            a = arrive(d) + v["route_ns"]
            if a > worst:
                worst, worst_end = a, (name, d)
    if worst_end is None:
        return {"delay_ns": 0.0, "fmax_mhz": None, "levels": 0, "cells": {}, "start": None, "end": None,
                "family": family}
    types: Counter = Counter()
    node, start = worst_end[1], None
    while node is not None:
        types[cells[node]["type"]] += 1
        start = node
        node = pred.get(node)
    total = worst + v["setup_ns"] + v["uncertainty_ns"]
    levels = sum(n for t, n in types.items() if _kind(family, t) in ("comb",))
    return {"delay_ns": round(total, 3), "fmax_mhz": round(1e3 / total, 1), "levels": levels,
            "cells": dict(types), "start": cells[start]["type"], "end": cells[worst_end[0]]["type"], "family": family}


def _through_inputs(name, kinds, ins, dsp_regs):
    """The input pins a path may pass through (a DSP's registered inputs end paths)."""
    if kinds[name] == "dsp":
        regs = dsp_regs[name]
        return [(p, b) for p, b in ins[name] if p not in regs and p not in ("CLK",)]
    return ins[name]


def critical_path_from_file(path, family: str = "xcup") -> dict:
    """:func:`critical_path` of a ``write_json`` file."""
    return critical_path(json.loads(Path(path).read_text()), family)


def estimate_fmax(path: dict) -> float:
    """Estimated Fmax (Hz) of a :func:`critical_path` summary."""
    return 1e9 / path["delay_ns"] if path.get("delay_ns") else float("inf")


def effective_clock_hz(target_hz: float, fmax_hz: float | None) -> float:
    """The clock latency should use: the target, or the estimated Fmax when lower."""
    return target_hz if fmax_hz is None else min(target_hz, fmax_hz)


def clock_check(target_hz: float, fmax_hz: float | None, source: str) -> dict:
    """Report entry: target, estimate, the clock used, and a warning when the target is unlikely."""
    used = effective_clock_hz(target_hz, fmax_hz)
    out = {"target_hz": target_hz, "fmax_estimated_hz": fmax_hz, "clock_used_hz": used, "source": source,
           "meets_target": fmax_hz is None or fmax_hz >= target_hz}
    if not out["meets_target"]:
        out["warning"] = (f"estimated Fmax {fmax_hz / 1e6:.0f} MHz is below the target clock {target_hz / 1e6:.0f} MHz: "
                          f"latency uses {used / 1e6:.0f} MHz")
    return out
