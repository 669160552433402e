"""CompileReuse: what it keys on is what the compiler reads, and a compile that reuses a
hardware graph and its storage analysis is the compile from scratch."""

from __future__ import annotations

import dataclasses

import pytest

import hwgen
from hwgen.errors import TargetError
from fpga.compile import compile_graph
from fpga.compile.graph import hardware_graph, task_inputs
from fpga.compile.report import build_report
from fpga.compile.reuse import COST_ONLY_UNREAD_FIELDS, HARDWARE_GRAPH_FIELDS, CompileReuse, cost_only_key
from fpga.config import AcceleratorConfig

FIELDS = [f.name for f in dataclasses.fields(AcceleratorConfig)]


class _Recording(AcceleratorConfig):
    """An AcceleratorConfig that notes every attribute read (properties read fields through it)."""

    def __getattribute__(self, name):
        read = object.__getattribute__(self, "__dict__").get("_read")
        if read is not None and not name.startswith("__"):
            read.add(name)
        return object.__getattribute__(self, name)


def _recording(cfg: AcceleratorConfig) -> _Recording:
    rec = _Recording(**{f: getattr(cfg, f) for f in FIELDS})
    rec.__dict__["_read"] = set()
    return rec


@pytest.fixture(scope="module")
def graphs():
    return {m: hwgen.canonicalize(hwgen.load(m)) for m in ("vit-tiny", "m3vit-tiny")}


def _bind(g):
    return {name: 0 for name in task_inputs(g)}


@pytest.mark.parametrize("model", ["vit-tiny", "m3vit-tiny"])
def test_the_keys_hold_what_the_compiler_reads(graphs, model):
    g = graphs[model]
    cfg = _recording(AcceleratorConfig.preset("int16", mac_rows=8, mac_cols=32))
    cfg._read.clear()
    hardware_graph(g, cfg, _bind(g))
    assert set(cfg._read) & set(FIELDS) == set(HARDWARE_GRAPH_FIELDS)
    cfg._read.clear()
    compiled = compile_graph(g, cfg, task=0 if _bind(g) else None, cost_only=True)
    read = set(cfg._read) & set(FIELDS)
    assert read and not read & COST_ONLY_UNREAD_FIELDS
    cfg._read.clear()
    build_report(compiled, model)  # the report does read them: they are costs, not programs
    assert COST_ONLY_UNREAD_FIELDS <= set(cfg._read)
    a, b = AcceleratorConfig(), AcceleratorConfig(clock_hz=200e6, weight_buffer_bytes=4 * 16 * 192 * 2,
                                                  attention_queries=8, attention_chunk=32)
    assert cost_only_key(a) == cost_only_key(b) != cost_only_key(AcceleratorConfig(mac_cols=32))


def _figures(compiled, model):
    rep = build_report(compiled, model)
    progs = [[(e.instr, e.node, e.comment, e.expect_rows) for s in b.segments for e in s.instrs]
             for b in compiled.bindings]
    return (progs, [b.stats for b in compiled.bindings], [dict(b.host_reasons) for b in compiled.bindings],
            compiled.image_regions, rep["cycles"], rep["latency_s"], rep["energy_j"], rep["energy_breakdown_j"])


# (preset, mac_rows, mac_cols, act_buffer_bytes): two format pairs, arrays and buffers that
# spill (m3vit-tiny at 20,000 B), halve the tile budget once (vit-tiny at 24,000 B) or fail
CASES = {"m3vit-tiny": [("edge-moe", 8, 16, 129 * 768 * 4), ("int16", 8, 16, 129 * 768 * 4),
                        ("edge-moe", 16, 32, 129 * 768 * 4), ("int16", 4, 64, 40_000), ("edge-moe", 4, 16, 20_000)],
         "vit-tiny": [("edge-moe", 4, 16, 24_000), ("edge-moe", 4, 16, 12_000), ("edge-moe", 16, 16, 129 * 768 * 4)]}


def _compile_or_error(g, cfg, task, **kw):
    try:
        return compile_graph(g, cfg, task=task, cost_only=True, **kw)
    except TargetError as e:
        return str(e)


@pytest.mark.parametrize("model", list(CASES))
def test_reused_compiles_equal_compiles_from_scratch(graphs, model):
    g = graphs[model]
    task = 1 if _bind(g) else None
    configs = [AcceleratorConfig.preset(p, mac_rows=r, mac_cols=c, act_buffer_bytes=ab) for p, r, c, ab in CASES[model]]
    reuse = CompileReuse(max_entries=2)
    for cfg in configs + configs[:1]:  # the first again after the others used the reuse object
        fresh = _compile_or_error(g, cfg, task)
        shared = _compile_or_error(g, cfg, task, reuse=reuse)
        if isinstance(fresh, str):
            assert shared == fresh and "buffer" in fresh
        else:
            assert _figures(shared, model) == _figures(fresh, model)
    pairs = len({(str(c.act_fmt), str(c.weight_fmt)) for c in configs})
    assert (reuse.hits, reuse.misses) == (len(configs) + 1 - pairs, pairs)
    with pytest.raises(ValueError, match="max_entries must be >= 1"):
        CompileReuse(0)


def test_least_recently_used_entry_goes_first(graphs):
    g = graphs["vit-tiny"]
    reuse = CompileReuse(max_entries=2)
    edge, i16, i8 = (AcceleratorConfig.preset(p) for p in ("edge-moe", "int16", "int8"))
    hg_edge, _ = reuse.prepared(g, edge, {})
    reuse.prepared(g, i16, {})
    assert reuse.prepared(g, edge, {})[0] is hg_edge  # edge used last: int16 is the oldest
    reuse.prepared(g, i8, {})
    assert reuse.prepared(g, edge, {})[0] is hg_edge
    assert (reuse.hits, reuse.misses) == (2, 3)
    reuse.prepared(g, i16, {})  # dropped: built again
    assert reuse.misses == 4
    other = hwgen.canonicalize(hwgen.load("vit-tiny"))  # another graph object: its own entry
    assert reuse.prepared(other, edge, {})[0] is not hg_edge


def test_a_compile_is_reproducible(graphs):
    """The external image's layout does not depend on where matrices sit in memory (it did:
    input, output and spill regions were reserved in the order of a set of matrices)."""
    g = graphs["vit-tiny"]
    cfg = AcceleratorConfig(act_buffer_bytes=18_000)  # four spills, an input and an output in the image
    first = _figures(compile_graph(g, cfg, cost_only=True), "vit-tiny")
    for _ in range(6):
        assert _figures(compile_graph(g, cfg, cost_only=True), "vit-tiny") == first
