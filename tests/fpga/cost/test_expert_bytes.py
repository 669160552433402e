"""Expert weight bytes per image (fpga/cost/expert_bytes.py) against numpy from the weight
shapes and the routing counts; experts without tokens contribute nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hwgen
from fpga.compile import compile_graph
from fpga.compile.report import build_report
from fpga.config import SMALL, AcceleratorConfig
from fpga.cost.expert_bytes import expert_weight_bytes
from fpga.cost.routing import expert_choices
from fpga.isa import Op


@pytest.fixture(scope="module")
def m3vit_int8():
    g = hwgen.canonicalize(hwgen.load("m3vit-tiny", batch=1))
    return compile_graph(g, AcceleratorConfig.preset("int8", **SMALL))


def _image(i: int) -> np.ndarray:
    from models.data import load_split

    return load_split()[2][i:i + 1].astype(np.float32)


def _golden(binding, config, counts: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per MoE node, per expert: (unique bytes, bytes moved), from the expert weight shapes
    (``w1 [E, D, H]``, ``w2 [E, H, D']``) and the rows each expert gets."""
    c = config
    port_bytes = c.mem_port_bits // 8
    out = {}
    for n in binding.graph.nodes:
        if n.op != "MoE" or n.domain != "hwgen":
            continue
        w1, w2 = (binding.graph.tensors[n.inputs[i]].shape for i in (3, 5))  # x, gate w, gate b, w1, b1, w2, b2
        per_expert = 0
        for k, nn in ((w1[1], w1[2]), (w2[1], w2[2])):
            tiles_n = -(-nn // c.mac_cols)  # output tiles of mac_cols columns
            words = -(-c.mac_cols * c.act_fmt.width // c.mem_port_bits) + k * -(-c.mac_cols * c.weight_fmt.width
                                                                                 // c.mem_port_bits)
            per_expert += tiles_n * words * port_bytes
        rows = counts[n.name]
        token_tiles = np.ceil(rows / c.mac_rows)  # all 17 tokens fit one gather chunk (asserted below)
        out[n.name] = (np.where(rows > 0, per_expert, 0), token_tiles * per_expert)
    return out


def test_routed_bytes_equal_numpy_and_unused_experts_fetch_nothing(m3vit_int8):
    c, b = m3vit_int8.config, m3vit_int8.bindings[0]
    gathers = [e.instr for s in b.segments if s.kind == "program" for e in s.instrs if e.instr.op == Op.MOE_GATHER]
    assert gathers and all(g.length >= 17 for g in gathers)  # one chunk an expert: tiles = ceil(rows / mac_rows)
    choices = expert_choices(b, {"image": _image(0)})
    assert len(choices) == 2
    counts = {k: np.bincount(v.reshape(-1), minlength=c.moe_experts) for k, v in choices.items()}
    got = expert_weight_bytes(b, c, choices)
    want = _golden(b, c, counts)
    assert got["routing"] == "routed" and [x["node"] for x in got["layers"]] == list(want)
    unused = 0
    for x in got["layers"]:
        uniq, moved = want[x["node"]]
        assert x["rows"] == counts[x["node"]].tolist()
        assert x["bytes_moved_per_expert"] == moved.tolist()
        assert (x["unique_bytes"], x["bytes_moved"]) == (uniq.sum(), moved.sum())
        assert x["experts_with_tokens"] == np.count_nonzero(counts[x["node"]])
        for e in np.nonzero(counts[x["node"]] == 0)[0]:
            assert x["bytes_moved_per_expert"][e] == 0
            unused += 1
    assert unused > 0  # int8's routing of this image leaves experts without tokens
    assert got["bytes_moved"] == sum(m.sum() for _, m in want.values())
    assert got["refetch"] == pytest.approx(got["bytes_moved"] / got["unique_bytes"])


def test_uniform_expectation_and_report_tables(m3vit_int8):
    c, b = m3vit_int8.config, m3vit_int8.bindings[0]
    got = expert_weight_bytes(b, c)
    rows = 17 * c.moe_k / c.moe_experts  # 8.5 rows an expert
    want = _golden(b, c, {n.name: np.full(c.moe_experts, rows) for n in b.graph.nodes if n.op == "MoE"})
    assert got["routing"] == "uniform"
    assert got["bytes_moved"] == sum(m.sum() for _, m in want.values())
    assert got["unique_bytes"] == sum(u.sum() for u, _ in want.values())  # every expert expected to have rows
    assert got["refetch"] == 3.0  # 8.5 rows on a 4-row array: 3 token tiles
    rep = build_report(m3vit_int8, "m3vit-tiny")
    tasks = rep["moe_expert_bytes"]["tasks"]
    assert [t["task"] for t in tasks] == ["task0", "task1"] and tasks[0]["bytes_moved"] == got["bytes_moved"]
    md = next(s["markdown"] for s in rep["markdown_sections"] if s["title"].startswith("MoE"))
    assert "**task1** (uniform expectation" in md and f"| total | | | {got['unique_bytes']:,} |" in md
    # a simulated input's routing (sim.json's moe_experts) per task
    choices = {k: v.tolist() for k, v in expert_choices(b, {"image": _image(0)}).items()}
    sim = {"bindings": [{"name": "task0", "moe_experts": choices, "input": "digits test image 0"},
                        {"name": "task1", "moe_experts": choices, "input": "digits test image 0"}]}
    rep = build_report(m3vit_int8, "m3vit-tiny", sim=sim)
    t1 = rep["moe_expert_bytes"]["tasks"][1]
    assert t1["routing"] == "routed" and t1["input"] == "digits test image 0"
    assert math.isclose(t1["refetch"], t1["bytes_moved"] / t1["unique_bytes"])
