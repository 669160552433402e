"""Yosys (synth_xilinx -family xcup, flattened) on the GELU, residual, linear and LayerNorm units."""

from __future__ import annotations

import os

import pytest

from fpga.config import SMALL, AcceleratorConfig
from fpga.hdl.attention import AttentionUnit
from fpga.hdl.controller import Controller
from fpga.hdl.dma import Dma
from fpga.hdl.engine_moe_expert import MoeCombineEngine, MoeGatherEngine
from fpga.hdl.gelu import GeluUnit
from fpga.hdl.layernorm import LayerNormUnit
from fpga.hdl.linear import LinearUnit
from fpga.hdl.moe import ExpertScheduler, TopKUnit
from fpga.hdl.residual import ResidualAdd
from fpga.hdl.top import Accelerator
from fpga.synth import count_resources, fits, synthesize, utilization
from hwgen.fixedpoint import FixedFormat

ACT = FixedFormat(32, 10)


def test_count_resources_counts_lut_memory_and_inverters():
    cells = {"LUT2": 10, "LUT6": 5, "INV": 3, "RAM64M8": 2, "SRLC32E": 4, "FDRE": 7, "FDSE": 1,
             "DSP48E2": 2, "RAMB36E2": 1, "RAMB18E2": 3, "CARRY4": 6, "MUXF7": 9}
    r = count_resources(cells)
    assert (r["lut_logic"], r["lut_memory"], r["lut"]) == (18, 2 * 8 + 4, 38)
    assert (r["ff"], r["dsp"], r["bram36"], r["carry"], r["unmapped_gates"]) == (8, 2, 2.5, 6, 0)
    r = count_resources({**cells, "$_MUX_": 11}, lut_mapped=False)
    assert r["lut"] is None and r["lut_logic"] is None and r["unmapped_gates"] == 11
    part = AcceleratorConfig().part
    assert "lut" not in utilization(r, part) and fits(r, part)
    assert not fits({**count_resources(cells), "dsp": part.dsp + 1}, part)


@pytest.mark.rtl
@pytest.mark.slow
def test_synthesize_units():
    res = {
        "residual": synthesize(ResidualAdd(1), "residual"),
        "gelu": synthesize(GeluUnit(1), "gelu"),
        "linear": synthesize(LinearUnit(rows=4, cols=4, depth=16, max_k=256), "linear"),
        "layernorm": synthesize(LayerNormUnit(16, *[FixedFormat(16, 6)] * 4), "layernorm"),
        "attention": synthesize(AttentionUnit(8, 8, max_keys=16, queries=2, chunk=4), "attention"),
        "topk": synthesize(TopKUnit(4, 2, ACT, ACT, "softmax_then_topk"), "topk"),
        "scheduler": synthesize(ExpertScheduler(4, 2, 16), "scheduler"),
        "dma": synthesize(Dma(64, 64, 4), "dma"),
        "controller": synthesize(Controller(8), "controller"),
    }
    for name, r in res.items():
        print(name, {k: v for k, v in r.items() if k != "cells"})
    # one 32-bit output register + valid in each single-stage unit
    assert res["residual"]["ff"] == 33 and res["residual"]["dsp"] == 0
    assert res["gelu"]["ff"] == 33
    assert res["gelu"]["dsp"] >= 1                      # the interpolation multiply
    # 16 MACs of 32x16 bits: at least one DSP48E2 each (27x18 multipliers)
    assert res["linear"]["dsp"] >= 16
    # 16 accumulators of 32+16+8 bits
    assert res["linear"]["ff"] >= 16 * 56
    # the row buffer (16 x 48 bits) and the divider/square-root state are registers
    assert res["layernorm"]["ff"] > 2 * 51
    # 2 lanes x 4-element chunks of q.k products (32 x 32 bits: several DSP48E2 each)
    assert res["attention"]["dsp"] >= 2 * 4
    # the DMA's 64 x 64-bit buffer is RAM (distributed or block), not 4,096 flip-flops
    assert res["dma"]["ff"] < 64 * 64 // 4
    assert res["dma"]["lut_memory"] > 0 or res["dma"]["bram36"] > 0
    for r in res.values():  # LUT-mapped completely: no generic gates left
        assert r["lut_mapped"] and r["lut"] > 0 and r["unmapped_gates"] == 0


@pytest.mark.rtl
@pytest.mark.slow
def test_synthesize_moe_expert_engines():
    """MOE_GATHER and MOE_COMBINE alone (SMALL: 8 lanes of fixed<32,10>), LUT-mapped."""
    config = AcceleratorConfig(**SMALL)
    gather = synthesize(MoeGatherEngine(config, 16), "moe_gather")
    combine = synthesize(MoeCombineEngine(config, 16), "moe_combine")
    for name, r in (("gather", gather), ("combine", combine)):
        print(name, {k: v for k, v in r.items() if k != "cells"})
        assert r["lut_mapped"] and r["lut"] > 0 and r["unmapped_gates"] == 0
    # gather moves words: at most the token x S address product in a DSP, no datapath
    assert gather["dsp"] <= 1 and gather["bram36"] == 0
    # combine: 8 products of 32 x 32 bits, each at least 2 x 2 DSP48E2 (27 x 18 multipliers)
    assert combine["dsp"] >= 4 * config.lanes
    # its pipeline registers: operands (h, y: 2 x 256 bits), 8 x 64-bit products,
    # rounded products and sums (256 bits each), y delayed twice
    assert combine["ff"] >= 2 * 256 + 8 * 64 + 2 * 256 + 2 * 256


@pytest.mark.rtl
@pytest.mark.slow
def test_abc_and_abc9_agree_on_everything_but_luts():
    """The classic ``abc`` LUT mapping (the default) and synth_xilinx's own ``abc9`` map
    the same unit completely, with the same FF and DSP cells; their LUT counts differ by
    the mappers' optimisation, not by logic lost. ``abc9`` may also drop carry cells (it
    sees through carry-chain boxes), ``abc`` leaves them all."""
    unit = lambda: GeluUnit(2)  # noqa: E731
    classic = synthesize(unit(), "gelu", abc="abc")
    abc9 = synthesize(unit(), "gelu", abc="abc9")
    print("abc", classic["lut"], "abc9", abc9["lut"])
    for r in (classic, abc9):
        assert r["lut_mapped"] and r["unmapped_gates"] == 0 and r["lut"] > 0
    assert (classic["ff"], classic["dsp"]) == (abc9["ff"], abc9["dsp"])
    assert classic["carry"] >= abc9["carry"]
    assert 0.5 * abc9["lut"] < classic["lut"] < 2 * abc9["lut"]
    with pytest.raises(ValueError, match="abc must be"):
        synthesize(unit(), "gelu", abc="fast")


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HWGEN_SYNTH_SMALL_TOP") != "1",
                    reason="the reduced top with every engine takes ~8 min of one core in Yosys (468 s measured); "
                           "CI synthesises every unit (test_synthesize_units) and checks the resource estimator "
                           "against recorded whole-top runs; set HWGEN_SYNTH_SMALL_TOP=1")
def test_synthesize_small_top():
    """The whole top (every engine), small: its buffer is block RAM, and it fits.

    SMALL with two 8-element attention lanes, so that CI can afford it (about 5 minutes
    of one core with LUT mapping). The default top: ``benchmarks/synth_top.py`` and
    ``test_synthesize_default_top`` (``HWGEN_SYNTH_DEFAULT_TOP=1``).
    """
    config = AcceleratorConfig(**{**SMALL, "attention_head_dim": 16, "attention_chunk": 8, "attention_queries": 2})
    res = synthesize(Accelerator(config, buffer_words=512), "accelerator")
    print({k: v for k, v in res.items() if k != "cells"}, utilization(res, config.part))
    assert res["lut_mapped"] and res["unmapped_gates"] == 0
    # 512 words x 256 bits = 128 kbit: block RAM, not 131,072 flip-flops
    assert res["bram36"] >= 4
    assert res["ff"] < 512 * 256 // 2
    # 64 products of 32 x 16 bits in the MAC array, 2 lanes x 8 32-bit products in attention
    assert res["dsp"] >= 64 + 2 * 8
    assert set(utilization(res, config.part)) == {"lut", "ff", "bram36", "dsp"}
    assert fits(res, config.part)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HWGEN_SYNTH_DEFAULT_TOP") != "1",
                    reason="the default top takes ~18 min of one core in Yosys here; set HWGEN_SYNTH_DEFAULT_TOP=1")
def test_synthesize_default_top():
    """Edge-MoE's configuration fits the ZCU102 (xczu9eg)."""
    config = AcceleratorConfig()
    res = synthesize(Accelerator(config), "accelerator")
    print({k: v for k, v in res.items() if k != "cells"}, utilization(res, config.part))
    assert res["bram36"] >= config.buffer_words * config.mem_port_bits / 36_864
    assert res["dsp"] >= 2 * config.macs_per_cycle  # 32 x 16-bit products: two DSP48E2 each
    assert res["lut_mapped"] and res["unmapped_gates"] == 0
    assert fits(res, config.part)
