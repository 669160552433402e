"""The energy model (fpga/cost/energy.py) against hand computations.

The per-action energies below are worked out by hand from the published figures the
table cites (arithmetic in the comments), not by calling the code under test; the action
counts of a small program are counted by hand from the engines' documented access
patterns (docs/fpga-architecture.md).
"""

from __future__ import annotations

import math
import re

import pytest

import hwgen
from fpga.compile import compile_graph
from fpga.compile.compiler import Segment
from fpga.compile.ops import Emitted
from fpga.compile.report import build_report
from fpga.config import AcceleratorConfig
from fpga.cost.energy import (ACTIONS, ENERGY_TABLE, action_energies, energy_figures, instruction_actions,
                              layer_energy, node_actions)
from fpga.isa import Instr, Op

CFG = AcceleratorConfig()  # fixed<32,10> activations, fixed<16,2> weights, 256-bit words (8 lanes), 300 MHz

# Hand values (J). node = (16/45) * (0.85/0.9)^2 = 0.355556 * 0.891975 = 0.317147.
# DSP op = (3.1 pJ * 27*18/1024 + 0.1 pJ * 48/32) * node * 3 = 1.621289 pJ * 0.951440 = 1.542560 pJ;
# a 32x16 MAC takes ceil(32/27) * ceil(16/18) = 2 DSP48E2.
E_MAC = 2 * 1.542560e-12
E_BRAM_BIT = 10e-12 / 64 * 0.951440  # 0.148662 pJ
E_LOGIC = 0.1e-12 * 0.317147 * 14  # 0.444006 pJ
E_DRAM_RD = 8 * ((0.972 - 0.188) * 1.2 / (2.4e9 * 64) + 3.7e-12)  # 8 * (6.125 + 3.7) pJ = 78.6 pJ
E_DRAM_WR = 8 * ((0.912 - 0.188) * 1.2 / (2.4e9 * 64) + 3.7e-12)  # 8 * (5.65625 + 3.7) pJ = 74.85 pJ
E_GELU = 1.542560e-12 + 4 * E_LOGIC


def test_per_action_energies_match_the_hand_computation():
    e = action_energies(CFG)
    assert e["macs"] == pytest.approx(E_MAC, rel=1e-5)
    assert e["buffer_read_bits"] == e["buffer_write_bits"] == pytest.approx(E_BRAM_BIT, rel=1e-5)
    assert e["alu_ops"] == pytest.approx(E_LOGIC, rel=1e-5)
    assert e["dram_read_bytes"] == pytest.approx(78.6e-12, rel=1e-9)
    assert e["dram_write_bytes"] == pytest.approx(74.85e-12, rel=1e-9)
    assert e["gelu_ops"] == pytest.approx(E_GELU, rel=1e-5)
    assert e["rsqrt_ops"] == pytest.approx(80 * E_LOGIC, rel=1e-5)
    # int8 x int8 fits one DSP48E2: half the 32x16 MAC
    assert action_energies(AcceleratorConfig.preset("int8"))["macs"] == pytest.approx(E_MAC / 2, rel=1e-5)


def _program():
    """LOAD 10 words; LINEAR+GELU M=20 K=24 N=32; STORE 80 words; END."""
    return [Emitted(Instr(Op.LOAD, length=10), "a"),
            Emitted(Instr(Op.LINEAR, flags=1, length=20, aux=24, src1=32), "a"),
            Emitted(Instr(Op.STORE, length=80), "b"),
            Emitted(Instr(Op.END), "")]


def test_linear_actions_counted_by_hand():
    a = instruction_actions(Instr(Op.LINEAR, flags=1, length=20, aux=24, src1=32), CFG)
    # 2 row tiles x 2 column tiles; weights: (2 bias words + 24 rows x 1 word) x 32 B per tile
    assert a["macs"] == 20 * 24 * 32
    assert a["dram_read_bytes"] == 16 + 4 * (2 + 24) * 32
    assert a["weight_bank_bits"] == 2 * 4 * 26 * 32 * 8
    assert a["buffer_read_bits"] == 4 * 3 * 16 * 256  # the transposer: 16 words per 8 columns, per tile
    assert a["buffer_write_bits"] == 20 * 4 * 256
    assert a["gelu_ops"] == 20 * 32
    assert set(ACTIONS) <= set(a)


def test_small_program_energy_and_figures_by_hand():
    prog = _program()
    total = dict.fromkeys(ACTIONS, 0.0)
    for e in prog:
        for k, v in instruction_actions(e.instr, CFG).items():
            if k in total:
                total[k] += v
    # counted by hand: 4 fetches of 16 B; LOAD 320 B; the LINEAR's 3,328 weight bytes; STORE 2,560 B
    assert total["dram_read_bytes"] == 4 * 16 + 320 + 3328
    assert total["dram_write_bytes"] == 2560
    assert total["buffer_read_bits"] == (192 + 80) * 256
    assert total["buffer_write_bits"] == (10 + 80) * 256
    fig = energy_figures(total, 1000, CFG)
    parts = {"mac": 15360 * E_MAC,
             "buffer": (69632 + 23040 + 53248) * E_BRAM_BIT,
             "dram": 3712 * E_DRAM_RD + 2560 * E_DRAM_WR,
             "special": 640 * E_GELU,
             "control": 4 * 16 * E_LOGIC,
             "static": 1000 / 300e6 * 1.0}
    for k, v in parts.items():
        assert fig["energy_breakdown_j"][k] == pytest.approx(v, rel=1e-5), k
    energy = sum(parts.values())  # 3.8879e-6 J
    assert fig["energy_j"] == pytest.approx(energy, rel=1e-5)
    assert fig["latency_s"] == pytest.approx(1000 / 300e6)
    assert fig["average_power_w"] == pytest.approx(energy / (1000 / 300e6), rel=1e-5)
    assert fig["gop_per_s"] == pytest.approx(2 * 15360 / (1000 / 300e6) / 1e9, rel=1e-9)  # 9.216
    assert fig["gop_per_j"] == pytest.approx(2 * 15360 / energy / 1e9, rel=1e-5)


class _Binding:
    def __init__(self, segments):
        self.segments = segments


def test_per_layer_energy_sums_to_the_total_and_moe_rows_override():
    b = _Binding([Segment("program", _program())])
    acts = node_actions(b, CFG)
    assert list(acts) == ["a", "b", "(control)"]
    res = layer_energy({"a": 600, "b": 300, "(control)": 100}, acts, CFG)
    assert res["total"]["energy_j"] == pytest.approx(sum(f["energy_j"] for f in res["layers"].values()), rel=1e-12)
    # layer b is the STORE alone: 16 B fetch + 80 words read, 2,560 B written, 300 cycles static
    b_energy = 16 * E_DRAM_RD + 2560 * E_DRAM_WR + 80 * 256 * E_BRAM_BIT + 16 * E_LOGIC + 300 / 300e6
    assert res["layers"]["b"]["energy_j"] == pytest.approx(b_energy, rel=1e-5)
    # a register-sized LINEAR takes its rows from expect_rows, or from the measured rows
    moe = _Binding([Segment("program", [Emitted(Instr(Op.LINEAR, flags=2, aux=16, src1=16), "e", expect_rows=3.0)])])
    assert node_actions(moe, CFG)["e"]["macs"] == 3 * 16 * 16
    assert node_actions(moe, CFG, rows={(0, 0): 7})["e"]["macs"] == 7 * 16 * 16
    assert node_actions(moe, CFG, rows={(0, 0): 0})["e"]["macs"] == 0


def test_every_constant_has_a_unit_and_a_source_and_unsourced_ones_say_assumption():
    cited = re.compile(r"(ISSCC|TCAD|Integration|UG\d+|DS\d+|data sheet|JESD|hwgen/|fpga/|docs/|wiki)")
    for name, row in ENERGY_TABLE.items():
        value, unit, source = row
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, name
        assert unit.strip() and source.strip(), name
        assert source.startswith("assumption") or cited.search(source), f"{name}: {source}"
    pure = {k for k, (_, _, s) in ENERGY_TABLE.items() if s.startswith("assumption")}
    assert pure == {"fpga_hard_block_factor", "ddr4_io_j_per_bit", "control_logic_ops", "static_w"}


def test_report_lists_every_constant_and_its_layers_add_up():
    c = compile_graph(hwgen.canonicalize(hwgen.load("vit-tiny")), CFG)
    rep = build_report(c, "vit-tiny")
    names = {a["name"]: a for a in rep["assumptions"]}
    for k, (value, _, source) in ENERGY_TABLE.items():
        assert names[k]["value"] == value and names[k]["source"] == source
    assert rep["energy_j"] == pytest.approx(sum(row["energy_j"] for row in rep["layers"]), rel=1e-9)
    assert rep["energy_j"] == pytest.approx(sum(rep["energy_breakdown_j"].values()), rel=1e-12)
    lin = [row for row in rep["layers"] if row["macs"]]
    assert lin and all(row["gop_per_s"] > 0 and row["gop_per_j"] > 0 for row in lin)
    assert rep["energy"]["average_power_w"] == pytest.approx(rep["energy_j"] / rep["latency_s"], rel=1e-9)
