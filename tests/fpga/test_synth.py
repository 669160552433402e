"""Yosys (synth_xilinx -family xcup, flattened) on the GELU, residual, linear and LayerNorm units."""

from __future__ import annotations

import os

import pytest

from fpga.config import SMALL, AcceleratorConfig
from fpga.hdl.gelu import GeluUnit
from fpga.hdl.layernorm import LayerNormUnit
from fpga.hdl.linear import LinearUnit
from fpga.hdl.residual import ResidualAdd
from fpga.hdl.top import Accelerator
from fpga.synth import fits, synthesize, utilization
from hwgen.fixedpoint import FixedFormat


@pytest.mark.rtl
@pytest.mark.slow
def test_synthesize_units():
    res = {
        "residual": synthesize(ResidualAdd(1), "residual"),
        "gelu": synthesize(GeluUnit(1), "gelu"),
        "linear": synthesize(LinearUnit(rows=4, cols=4, depth=16, max_k=256), "linear"),
        "layernorm": synthesize(LayerNormUnit(16, *[FixedFormat(16, 6)] * 4), "layernorm"),
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
    for r in res.values():
        assert r["lut"] is None or r["lut"] > 0
        assert r["lut_mapped"] or r["unmapped_gates"] > 0


@pytest.mark.rtl
@pytest.mark.slow
def test_synthesize_small_top():
    """The whole top (every engine), small: its buffer is block RAM, and it fits.

    SMALL with two 8-element attention lanes, so that CI can afford it; stops before LUT
    mapping (ABC takes tens of minutes on the attention normaliser's combinational
    divider; SMALL itself takes 6 CPU minutes even without it). DSP, FF and BRAM counts
    are final. The default top: ``benchmarks/synth_top.py`` and
    ``test_synthesize_default_top`` (``HWGEN_SYNTH_DEFAULT_TOP=1``).
    """
    config = AcceleratorConfig(**{**SMALL, "attention_head_dim": 16, "attention_chunk": 8, "attention_queries": 2})
    res = synthesize(Accelerator(config, buffer_words=512), "accelerator", map_luts=False)
    assert res["lut"] is None and not res["lut_mapped"]
    print({k: v for k, v in res.items() if k != "cells"}, utilization(res, config.part))
    # 512 words x 256 bits = 128 kbit: block RAM, not 131,072 flip-flops
    assert res["bram36"] >= 4
    assert res["ff"] < 512 * 256 // 2
    # 64 products of 32 x 16 bits in the MAC array, 2 lanes x 8 32-bit products in attention
    assert res["dsp"] >= 64 + 2 * 8
    assert fits(res, config.part)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HWGEN_SYNTH_DEFAULT_TOP") != "1",
                    reason="the default top takes over an hour in Yosys here; set HWGEN_SYNTH_DEFAULT_TOP=1")
def test_synthesize_default_top():
    """Edge-MoE's configuration fits the ZCU102 (xczu9eg)."""
    config = AcceleratorConfig()
    res = synthesize(Accelerator(config), "accelerator",
                     map_luts=os.environ.get("HWGEN_SYNTH_MAP_LUTS", "1") == "1")
    print({k: v for k, v in res.items() if k != "cells"}, utilization(res, config.part))
    assert res["bram36"] >= config.buffer_words * config.mem_port_bits / 36_864
    assert res["dsp"] >= 2 * config.macs_per_cycle  # 32 x 16-bit products: two DSP48E2 each
    assert fits(res, config.part)
