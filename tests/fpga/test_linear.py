"""Linear unit and LINEAR's engine: constructor checks and the cocotb testbenches on
Verilator and Icarus."""

from __future__ import annotations

import gc
import json

import pytest

from fpga.config import AcceleratorConfig
from fpga.hdl.engine_linear import LinearEngine, linear_cycles
from fpga.hdl.linear import LinearUnit
from fpga.hdl.top import ENGINE_ADDR_BITS
from hwgen.fixedpoint import FixedFormat
from simulators.engine_harness import EngineHarness
from simulators.runner import run_cocotb

#: A small LINEAR engine, quick to build: 2 x 8 MACs, a 128-bit port (4 activations a word,
#: a bias of 2 words a block), 16-row weight banks, K <= 128 (K <= 64 double-buffers the
#: activation store).
ENGINE_CONFIG = dict(mac_rows=2, mac_cols=8, mem_port_bits=128, attention_queries=2, weight_buffer_bytes=2 * 16 * 8 * 2,
                     linear_max_k=128)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_constructor_checks():
    with pytest.raises(TypeError, match="rows must be a positive integer, not 0"):
        LinearUnit(rows=0)
    with pytest.raises(TypeError, match="w_fmt must be a FixedFormat"):
        LinearUnit(w_fmt="fixed<16,2>")
    with pytest.raises(ValueError, match="need more than 63 bits"):
        LinearUnit(x_fmt=FixedFormat(40, 10), w_fmt=FixedFormat(24, 2), max_k=1024)
    with pytest.raises(ValueError, match="LINEAR needs mac_cols to be a power of two, not 24"):
        LinearEngine(AcceleratorConfig(mac_cols=24), ENGINE_ADDR_BITS, 1)
    gc.collect()


def test_linear_cycles_of_the_qkv_projection():
    """The m3vit-edge-moe QKV GEMM on the default array: above the weight-stream bound
    (194 beats per 16 x 16 output tile, 9 x 36 tiles), within 1 % of it."""
    c = AcceleratorConfig()
    cycles = linear_cycles(129, 576, 192, c)
    assert 9 * 36 * 194 < cycles < 1.01 * 9 * 36 * 194
    assert linear_cycles(0, 576, 192, c) == 1
    with pytest.raises(ValueError, match="N=20 must be a positive multiple of mac_cols=16"):
        linear_cycles(4, 20, 8, c)


def test_column_edges_in_closed_form_equal_the_column_walk():
    """linear_cycles' O(1) edge of a K tile's columns (waiting for the activation fill or
    the weight rows) against the recurrence walked one column at a time."""
    import random

    from fpga.hdl.linear_timing import _column_edge

    def walk(length, x_prev, x_prev2, row_done, w_words, act0, kept, k0, lanes):
        second, x_last = x_prev2, x_prev
        for i in range(length):
            issue = max(x_last, act0 + ((k0 + i) // lanes + 1) * kept)
            second, x_last = x_last, max(issue + 1, x_last + 1, row_done + i * w_words + 1)
        return second, x_last

    rng = random.Random(7)
    for _ in range(10_000):
        lanes, length, kept = rng.choice([1, 2, 4, 8, 16]), rng.randint(1, 70), rng.randint(1, 40)
        k0, w_words = rng.choice([0, rng.randint(0, 300)]), rng.randint(1, 5)
        act0, row_done, x_prev = rng.randint(0, 500), rng.randint(0, 600), rng.randint(0, 700)
        args = (x_prev, row_done, w_words, act0, kept, k0, lanes)
        closed = (_column_edge(length - 2, *args) if length > 1 else x_prev, _column_edge(length - 1, *args))
        assert closed == walk(length, x_prev, x_prev - 1, row_done, w_words, act0, kept, k0, lanes)


@pytest.mark.rtl
@pytest.mark.parametrize("rows, cols, depth, max_k, fx, fw, fb, fo, gelu, jobs", [
    # Edge-MoE formats; K up to 10 in tiles of 4 (accumulation over K tiles); 4x4 array
    (4, 4, 4, 10, (32, 10), (16, 2), (32, 10), (32, 10), False, 260),
    # narrow output: saturation; fused GELU
    (3, 2, 3, 7, (16, 6), (8, 2), (12, 4), (12, 5), True, 340),
], ids=["4x4-fixed32", "3x2-narrow-gelu"])
def test_cocotb(tmp_path, simulator, rows, cols, depth, max_k, fx, fw, fb, fo, gelu, jobs):
    """>= 1,000 output rows per configuration, bit-exact vs hwgen.numerics.linear."""
    assert jobs * rows >= 1000
    dut = LinearUnit(rows, cols, depth, max_k, FixedFormat(*fx), FixedFormat(*fw), FixedFormat(*fb),
                     FixedFormat(*fo), gelu=gelu)
    env = {"TB_JOBS": str(jobs), "TB_ROWS": str(rows), "TB_COLS": str(cols), "TB_DEPTH": str(depth),
           "TB_MAXK": str(max_k), "TB_X": "%d,%d" % fx, "TB_W": "%d,%d" % fw, "TB_B": "%d,%d" % fb,
           "TB_OUT": "%d,%d" % fo, "TB_GELU": str(int(gelu)), "TB_SEED": str(rows)}
    run_cocotb(dut, "tb_linear", build_dir=tmp_path, extra_env=env, simulator=simulator)


@pytest.mark.rtl
@pytest.mark.slow
def test_engine_cocotb(tmp_path, simulator):
    """LINEAR's engine behind the top's buffer reader and DMA: 10 LINEARs without stalls
    (bit-exact, cycles equal to linear_cycles: partial token tiles, K = 1, K over several
    weight-bank tiles, K past half the activation store, GELU), then 8 random ones (M = 0
    too) with every stream stalling, bit-exact vs hwgen.numerics.linear."""
    config = AcceleratorConfig(**ENGINE_CONFIG)
    exact = [[5, 16, 20, 0], [2, 8, 8, 1], [9, 24, 40, 0], [1, 8, 100, 0], [6, 16, 16, 1], [3, 8, 1, 0],
             [4, 16, 3, 0], [7, 24, 70, 1], [2, 8, 128, 0], [5, 32, 17, 0]]
    params = {"config": config.to_dict(), "seed": 5, "latency": 4, "exact": exact, "random": 8,
              "stalls": [0.7, 0.6, 0.6, 0.5, 0.7]}
    dut = EngineHarness(LinearEngine(config, ENGINE_ADDR_BITS, (EngineHarness.DMA_WORDS - 1).bit_length()), ENGINE_ADDR_BITS, config.mem_port_bits)
    run_cocotb(dut, "tb_linear_engine", build_dir=tmp_path, simulator=simulator,
               extra_env={"HWGEN_TB_PARAMS": json.dumps(params)})
