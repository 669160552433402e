"""compile_graph(cost_only=True): the same programs and cost figures as a full compile,
without weight codes or image bytes."""

from __future__ import annotations

import pytest

import hwgen
from fpga.compile import compile_graph
from fpga.compile.report import binding_costs, build_report
from fpga.config import SMALL, AcceleratorConfig


@pytest.mark.parametrize("model, cfg", [
    ("vit-tiny", AcceleratorConfig()),
    ("m3vit-tiny", AcceleratorConfig(**SMALL)),
    ("m3vit-tiny", AcceleratorConfig.preset("int16", mac_rows=8, mac_cols=32, mem_port_bits=128)),
])
def test_cost_only_gives_the_full_compiles_programs_and_costs(model, cfg):
    g = hwgen.canonicalize(hwgen.load(model))
    full = compile_graph(g, cfg)
    cheap = compile_graph(g, cfg, cost_only=True)
    assert cheap.image == b"" and len(full.image) > 0
    assert [b.name for b in cheap.bindings] == [b.name for b in full.bindings]
    for a, b in zip(full.bindings, cheap.bindings):
        assert a.stats == b.stats  # includes weight_bytes: the size of the packed weights
        ins_a = [(e.instr.op, e.instr.length, e.instr.aux, e.instr.src1, e.instr.flags) for s in a.segments for e in s.instrs]
        ins_b = [(e.instr.op, e.instr.length, e.instr.aux, e.instr.src1, e.instr.flags) for s in b.segments for e in s.instrs]
        assert ins_a == ins_b
        assert binding_costs(full, a)["total"] == binding_costs(cheap, b)["total"]
    ra, rb = build_report(full, model), build_report(cheap, model)
    assert (ra["latency_s"], ra["energy_j"], ra["cycles"]) == (rb["latency_s"], rb["energy_j"], rb["cycles"])
    # every region of the full image has its counterpart, of the same size, in the cost-only layout
    sizes = {(r["name"], r["bytes"]) for r in cheap.image_regions}
    assert {(r["name"], r["bytes"]) for r in full.image_regions} <= sizes
