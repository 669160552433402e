"""Energy of a program: actions x energy per action + static power x time.

Every constant is one row of :data:`ENERGY_TABLE` ``(value, unit, source)``; a row whose
source starts with ``"assumption"`` has no published figure behind it (the report lists
every row in ``assumptions``). :func:`action_energies` derives the energy of each action
from the table for one configuration:

================  ===================================================================
action            energy (J) per unit
================  ===================================================================
macs              DSP48E2 slices per product (``ceil(a/27) * ceil(w/18)`` at the
                  configured activation/weight widths) x one 27x18 multiply + 48-bit
                  add: Horowitz's 45 nm figures scaled by area (bits a x b), node
                  (45 -> 16 nm) and the FPGA hard-block factor
buffer_*_bits     block RAM read / write per bit: Horowitz's 8 KB SRAM, same scaling
weight_bank_bits  the linear unit's weight banks, written and read once a bit a tile
dram_*_bytes      DDR4 per byte: Micron IDD currents (core) + POD12 I/O termination
gelu/exp/recip/   special functions: DSP multiplies + soft-logic operations of the
rsqrt_ops         :mod:`hwgen.numerics` algorithm the hardware mirrors
alu_ops           one 32-bit add/compare/saturate in LUT logic (Kuon & Rose factor)
instructions      controller fetch/decode logic (the 16-byte fetch is a DRAM read)
================  ===================================================================

:func:`instruction_actions` counts the actions of one instruction from its fields and the
configuration (the engines' documented access patterns, ``docs/fpga-architecture.md``);
:func:`node_actions` sums them per IR node of a compiled program set; :func:`energy_figures`
and :func:`layer_energy` turn actions, cycles and the clock into energy per inference,
average power, GOP/s and GOP/J. ``docs/fpga-energy-and-peers.md`` discusses the table.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Mapping

from ..isa import Op, schedule_length

__all__ = ["ENERGY_TABLE", "ACTIONS", "action_energies", "instruction_actions", "node_actions", "estimate_energy",
           "energy_figures", "layer_energy"]

_HOROWITZ = "Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm 0.9 V table"
_MICRON = ("Micron MTA4ATF51264AZ data sheet (4 GB x64 DDR4 module of 4 x MT40A512M16, 8 Gb), IDD table, DDR4-2400 "
           "column (module values); a 64-bit DDR4-2400 channel like the ZCU102's PS DDR4")

#: name -> (value, unit, source). Every number the energy model uses, and only these.
ENERGY_TABLE: dict[str, tuple] = {
    # --- technology anchors ------------------------------------------------------------
    "horowitz_mult32_j": (3.1e-12, "J per 32-bit integer multiply (45 nm)",
                          f"{_HOROWITZ}: 32-bit int mult 3.1 pJ (8-bit 0.2 pJ: energy ~ bits a x bits b)"),
    "horowitz_add32_j": (0.1e-12, "J per 32-bit integer add (45 nm)", f"{_HOROWITZ}: 32-bit int add 0.1 pJ"),
    "horowitz_sram64_j": (10e-12, "J per 64-bit read of an 8 KB SRAM (45 nm)",
                          f"{_HOROWITZ}: 8 KB SRAM, 64-bit read 10 pJ (a BRAM36 holds 4.5 KB)"),
    "node_scale_45_to_16": ((16 / 45) * (0.85 / 0.9) ** 2, "energy factor 45 nm 0.9 V -> 16 nm 0.85 V",
                            "classical scaling E = C V^2 with C ~ feature size: (16/45) x (0.85/0.9)^2; UltraScale+ "
                            "is 16 nm, VCCINT 0.85 V for the -2 grade (DS925, DSP48 switching table); Stillmaker & "
                            "Baas (Integration 58, 2017) show classical scaling errs by up to 83x: read as +-2x"),
    "fpga_soft_logic_factor": (14.0, "FPGA / ASIC dynamic energy, LUT logic",
                               "Kuon & Rose, 'Measuring the gap between FPGAs and ASICs', IEEE TCAD 26(2) 2007: "
                               "dynamic power ratio ~14x for LUT and flip-flop logic (90 nm)"),
    "fpga_hard_block_factor": (3.0, "FPGA / ASIC dynamic energy, DSP and block RAM with their routing",
                               "assumption: Kuon & Rose 2007 find the gap 'generally smaller' than 14x with hard "
                               "multipliers and memories but give no single figure"),
    # --- the DSP48E2 ---------------------------------------------------------------------
    "dsp48e2_a_bits": (27, "bits of the DSP48E2 multiplier's A input",
                       "UG579 (UltraScale DSP slice user guide): 27 x 18 two's-complement multiplier"),
    "dsp48e2_b_bits": (18, "bits of the DSP48E2 multiplier's B input", "UG579: 27 x 18 multiplier"),
    "dsp48e2_acc_bits": (48, "bits of the DSP48E2 accumulator", "UG579: 48-bit ALU / accumulator"),
    # --- DDR4 (Micron data sheet) -------------------------------------------------------
    "ddr4_vdd_v": (1.2, "V, DDR4 VDD", _MICRON),
    "ddr4_idd3n_a": (0.188, "A, active standby current of the module (IDD3N)", _MICRON),
    "ddr4_idd4r_a": (0.972, "A, burst read current of the module (IDD4R)", _MICRON),
    "ddr4_idd4w_a": (0.912, "A, burst write current of the module (IDD4W)", _MICRON),
    "ddr4_transfers_per_s": (2.4e9, "transfers per second per pin (DDR4-2400)", _MICRON),
    "ddr4_bus_bits": (64, "data bits of the channel", _MICRON),
    "ddr4_io_j_per_bit": (3.7e-12, "J per bit on the pins (both ends' termination)",
                          "assumption: POD12 termination, VDDQ 1.2 V, RON 34 ohm + RTT 48 ohm (JEDEC JESD79-4 "
                          "values): 17.6 mW while a pin is low, half the time, at 2.4 Gb/s = 3.7 pJ/bit; "
                          "switching and the FPGA's PHY logic not included"),
    # --- special functions (operations of the hwgen.numerics algorithm) ----------------
    "gelu_dsp_ops": (1, "DSP multiplies per GELU element",
                     "hwgen/numerics/gelu.py: one table interpolation product (t1 - t0) * fr"),
    "gelu_logic_ops": (4, "32-bit logic ops per GELU element",
                       "hwgen/numerics/gelu.py: |x|, split, two table reads, x - delta; assumption: one add each"),
    "exp_dsp_ops": (2, "DSP multiplies per softmax exponential",
                    "hwgen/numerics/softmax.py: the logit scale product and the running-sum rescale l * a"),
    "exp_logic_ops": (3, "32-bit logic ops per softmax exponential",
                      "hwgen/numerics/softmax.py: max compare, exp2 table read, shift; assumption: one add each"),
    "recip_logic_ops": (40, "32-bit logic ops per reciprocal",
                        "hwgen/numerics/softmax.py: 2**(Fp+Fr) / l, Fp + Fr = 40 bits, one restoring-divider "
                        "step a bit; assumption: a step costs one add"),
    "rsqrt_logic_ops": (80, "32-bit logic ops per reciprocal square root",
                        "docs/fpga-architecture.md: LayerNorm's ~80-cycle bit-serial divide and square root; "
                        "assumption: one add a cycle"),
    "control_logic_ops": (16, "32-bit logic ops per instruction (fetch, decode, start)",
                          "assumption: the controller's 4 fetch/decode states (fpga/hdl/controller.py) over a "
                          "128-bit instruction"),
    "instruction_bytes": (16, "bytes fetched from external memory per instruction",
                          "fpga/isa.py: one 128-bit word an instruction"),
    # --- static ------------------------------------------------------------------------
    "static_w": (1.0, "W of static power (leakage and always-on clocking) while the accelerator runs",
                 "assumption: XCZU9EG order of magnitude; Xilinx wiki 'Power Optimization Guide for Zynq "
                 "UltraScale+ MPSoC': static power grows with capacity, ZU19EG 850 mW above ZU2EG"),
}

#: The actions an instruction can cost (keys of :func:`instruction_actions`).
ACTIONS = ("macs", "buffer_read_bits", "buffer_write_bits", "weight_bank_bits", "dram_read_bytes",
           "dram_write_bytes", "gelu_ops", "exp_ops", "recip_ops", "rsqrt_ops", "alu_ops", "instructions")

#: Component of the energy breakdown each action belongs to.
_COMPONENT = {"macs": "mac", "buffer_read_bits": "buffer", "buffer_write_bits": "buffer",
              "weight_bank_bits": "buffer", "dram_read_bytes": "dram", "dram_write_bytes": "dram",
              "gelu_ops": "special", "exp_ops": "special", "recip_ops": "special", "rsqrt_ops": "special",
              "alu_ops": "logic", "instructions": "control"}


def _v(name: str) -> float:
    return ENERGY_TABLE[name][0]


def action_energies(config) -> dict:
    """Joules per unit of each action of :data:`ACTIONS` for ``config`` (from :data:`ENERGY_TABLE`)."""
    node, hard, soft = _v("node_scale_45_to_16"), _v("fpga_hard_block_factor"), _v("fpga_soft_logic_factor")
    a_bits, b_bits = _v("dsp48e2_a_bits"), _v("dsp48e2_b_bits")
    dsp_op = (_v("horowitz_mult32_j") * a_bits * b_bits / (32 * 32)
              + _v("horowitz_add32_j") * _v("dsp48e2_acc_bits") / 32) * node * hard
    dsps_per_mac = math.ceil(config.act_fmt.width / a_bits) * math.ceil(config.weight_fmt.width / b_bits)
    logic_op = _v("horowitz_add32_j") * node * soft
    bram_bit = _v("horowitz_sram64_j") / 64 * node * hard
    bits_per_s = _v("ddr4_transfers_per_s") * _v("ddr4_bus_bits")
    vdd, idd3n, io = _v("ddr4_vdd_v"), _v("ddr4_idd3n_a"), _v("ddr4_io_j_per_bit")
    return {
        "macs": dsps_per_mac * dsp_op,
        "buffer_read_bits": bram_bit,
        "buffer_write_bits": bram_bit,
        "weight_bank_bits": bram_bit,
        "dram_read_bytes": 8 * ((_v("ddr4_idd4r_a") - idd3n) * vdd / bits_per_s + io),
        "dram_write_bytes": 8 * ((_v("ddr4_idd4w_a") - idd3n) * vdd / bits_per_s + io),
        "gelu_ops": _v("gelu_dsp_ops") * dsp_op + _v("gelu_logic_ops") * logic_op,
        "exp_ops": _v("exp_dsp_ops") * dsp_op + _v("exp_logic_ops") * logic_op,
        "recip_ops": _v("recip_logic_ops") * logic_op,
        "rsqrt_ops": _v("rsqrt_logic_ops") * logic_op,
        "alu_ops": logic_op,
        "instructions": _v("control_logic_ops") * logic_op,
    }


def instruction_actions(instr, config, moe_rows: float = 0.0) -> dict:
    """Actions of one instruction: a dict with every key of :data:`ACTIONS`.

    Counts follow the engines' documented access patterns (``docs/fpga-architecture.md``):
    buffer words are ``mem_port_bits`` wide; ``moe_rows`` is the row count of the
    register-sized ops (LINEAR with flags bit 1, MOE_GATHER, MOE_COMBINE). For backward
    compatibility the dict also holds ``buffer_words`` (read + written) and ``dram_bytes``
    (read + written).
    """
    c = config
    lanes, port, wb = c.lanes, c.mem_port_bits, c.mem_port_bits // 8
    a = dict.fromkeys(ACTIONS, 0.0)
    a["instructions"] = 1
    a["dram_read_bytes"] = _v("instruction_bytes")
    rd = wr = 0.0  # buffer words read / written
    op = instr.op
    if op == Op.LOAD:
        wr = instr.length
        a["dram_read_bytes"] += instr.length * wb
    elif op == Op.STORE:
        rd = instr.length
        a["dram_write_bytes"] = instr.length * wb
    elif op == Op.LINEAR:
        m = moe_rows if instr.flags & 2 else instr.length
        k, n = instr.aux, instr.src1
        if m > 0:
            tiles = math.ceil(m / c.mac_rows) * math.ceil(n / c.mac_cols)
            w_words = math.ceil(c.mac_cols * c.weight_fmt.width / port)
            b_words = math.ceil(c.mac_cols * c.act_fmt.width / port)
            weight_bytes = tiles * (b_words + k * w_words) * wb  # weights + bias, again for every row tile
            rd = tiles * math.ceil(k / lanes) * c.mac_rows  # the transposer's reads, per output tile
            wr = m * math.ceil(n / lanes)
            a["macs"] = m * k * n
            a["dram_read_bytes"] += weight_bytes
            a["weight_bank_bits"] = 2 * weight_bytes * 8  # written into a bank, read once
            if instr.flags & 1:
                a["gelu_ops"] = m * n
    elif op == Op.GELU:
        rd = wr = instr.length
        a["gelu_ops"] = instr.length * lanes
    elif op == Op.ADD:
        rd, wr = 2 * instr.length, instr.length
        a["alu_ops"] = 2 * instr.length * lanes  # add + saturate
    elif op == Op.LAYERNORM:
        rows, d = instr.length, instr.aux
        words = math.ceil(d / lanes)
        rd, wr = rows * 3 * words + 2 * words, rows * words  # 3 passes over a row; gamma and beta once
        a["macs"] = 3 * rows * d  # x*x, (N x - s1) * r, * gamma
        a["alu_ops"] = 3 * rows * d  # sums, N x - s1, + beta
        a["rsqrt_ops"] = rows
    elif op == Op.ATTENTION:
        sq, sk, d = instr.length, instr.aux, c.attention_head_dim  # the unit computes whole configured heads
        words = math.ceil(d / lanes)
        groups = math.ceil(sq / c.attention_queries)
        rd = groups * (c.attention_queries * words + 2 * sk * words)  # K and V again for every query group
        wr = sq * words
        a["macs"] = 2 * sq * sk * d + sq * d  # q.k, p.v, the output's normalisation
        a["exp_ops"] = sq * sk
        a["recip_ops"] = sq
    elif op == Op.MOE_ROUTE:
        m, e = instr.length, instr.aux
        rd = m * math.ceil(e / lanes)
        wr = m + schedule_length(m, c.moe_k)  # route table, schedule
        a["alu_ops"] = m * e  # top-k compares
        a["exp_ops"] = m * c.moe_k
        a["recip_ops"] = m
    elif op == Op.MOE_GATHER:
        s = instr.ext_addr & 0xFFFF
        rd, wr = moe_rows * (s + 2), moe_rows * (s + 1)  # entry + route word + row; row + list word
    elif op == Op.MOE_COMBINE:
        so = instr.aux
        rd, wr = moe_rows * (2 * so + 1), moe_rows * so
        a["macs"] = moe_rows * so * lanes
        a["alu_ops"] = moe_rows * so * lanes
    a["buffer_read_bits"], a["buffer_write_bits"] = rd * port, wr * port
    a["buffer_words"] = rd + wr
    a["dram_bytes"] = a["dram_read_bytes"] + a["dram_write_bytes"]
    return a


def node_actions(binding, config, rows: Mapping | None = None) -> "OrderedDict[str, dict]":
    """Actions summed per IR node (program order) of one compiled program set.

    ``rows`` optionally maps ``(segment index, instruction index)`` to the measured row
    count of a register-sized instruction (routing of a real input); otherwise each such
    instruction's ``expect_rows`` (uniform routing) is used. Control instructions without a
    node count under ``"(control)"``; host steps are skipped.
    """
    out: "OrderedDict[str, dict]" = OrderedDict()
    for si, seg in enumerate(binding.segments):
        if seg.kind != "program":
            continue
        for ii, e in enumerate(seg.instrs):
            r = e.expect_rows if rows is None else rows.get((si, ii), e.expect_rows)
            acc = out.setdefault(e.node or "(control)", dict.fromkeys(ACTIONS, 0.0))
            for k, v in instruction_actions(e.instr, config, r).items():
                if k in acc:
                    acc[k] += v
    return out


def estimate_energy(actions: Mapping, seconds: float, config=None) -> dict:
    """Energy components (J): ``mac``, ``buffer``, ``dram``, ``special``, ``logic``,
    ``control`` from summed ``actions`` and ``static`` over ``seconds`` of run time.

    ``config`` defaults to ``AcceleratorConfig()``. Actions summed by older code with only
    ``buffer_words`` / ``dram_bytes`` are taken as reads of 256-bit words and DRAM reads.
    """
    if config is None:
        from ..config import AcceleratorConfig

        config = AcceleratorConfig()
    act = dict(actions)
    if not any(k in act for k in ("buffer_read_bits", "dram_read_bytes")):
        act["buffer_read_bits"] = act.get("buffer_words", 0) * config.mem_port_bits
        act["dram_read_bytes"] = act.get("dram_bytes", 0)
    per = action_energies(config)
    out = dict.fromkeys(("mac", "buffer", "dram", "special", "logic", "control"), 0.0)
    for k, j in per.items():
        out[_COMPONENT[k]] += act.get(k, 0) * j
    out["static"] = seconds * _v("static_w")
    return out


def energy_figures(actions: Mapping, cycles: float, config) -> dict:
    """Energy per inference, average power and throughput of ``actions`` taking ``cycles``.

    Returns ``cycles``, ``latency_s`` (at ``config.clock_hz``), ``energy_j``,
    ``energy_breakdown_j`` (see :func:`estimate_energy`), ``average_power_w``, ``ops``
    (2 x executed MACs, padding included), ``gop_per_s`` and ``gop_per_j``.
    """
    latency = cycles / config.clock_hz
    parts = estimate_energy(actions, latency, config)
    energy = sum(parts.values())
    ops = 2 * actions.get("macs", 0)
    return {"cycles": cycles, "latency_s": latency, "energy_j": energy, "energy_breakdown_j": parts,
            "average_power_w": energy / latency if latency else 0.0, "ops": ops,
            "gop_per_s": ops / latency / 1e9 if latency else 0.0, "gop_per_j": ops / energy / 1e9 if energy else 0.0}


def layer_energy(cycles_by_node: Mapping[str, float], actions_by_node: Mapping[str, Mapping], config) -> dict:
    """:func:`energy_figures` per node and in total: ``{"layers": {node: figures}, "total": figures}``.

    ``cycles_by_node`` (estimated or measured) and ``actions_by_node``
    (:func:`node_actions`) are keyed alike; a node missing from ``cycles_by_node`` counts
    0 cycles (no static energy). The total sums the nodes' actions and cycles.
    """
    layers, total_act, total_cyc = {}, dict.fromkeys(ACTIONS, 0.0), 0.0
    for node, act in actions_by_node.items():
        cyc = float(cycles_by_node.get(node, 0.0))
        layers[node] = energy_figures(act, cyc, config)
        total_cyc += cyc
        for k in ACTIONS:
            total_act[k] += act.get(k, 0)
    return {"layers": layers, "total": energy_figures(total_act, total_cyc, config)}
