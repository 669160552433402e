"""AcceleratorConfig: defaults, presets, TOML round trip, exact error messages."""

from __future__ import annotations

import pytest

from fpga.config import AcceleratorConfig
from hwgen.errors import TargetError
from hwgen.fixedpoint import FixedFormat


def test_defaults_are_edge_moe():
    c = AcceleratorConfig()
    assert (c.mac_rows, c.mac_cols, c.macs_per_cycle) == (16, 16, 256)
    assert c.act_fmt == FixedFormat(32, 10) and c.weight_fmt == FixedFormat(16, 2)
    assert c.attention_queries == 4 and c.mem_port_bits == 256 and c.clock_hz == 300e6
    p = c.part
    assert (p.name, p.lut, p.ff, p.bram36, p.dsp) == ("xczu9eg-ffvb1156-2-e", 274_080, 548_160, 912, 2_520)


def test_presets():
    assert AcceleratorConfig.preset("int8").act_fmt == FixedFormat(8, 8)
    assert AcceleratorConfig.preset("int16").weight_fmt == FixedFormat(16, 16)
    with pytest.raises(TargetError, match=r"unknown format preset 'int4'; known: edge-moe, int16, int8"):
        AcceleratorConfig.preset("int4")


def test_int8_preset_takes_a_port_its_linear_can_write(tmp_path):
    # 16 columns of int8 are 128 bits: a 256-bit word would hold 32 activations, more than a
    # LINEAR output tile writes (the K = 0 / "mac_cols must be a multiple" failure of issue 12)
    c = AcceleratorConfig.preset("int8")
    assert (c.mem_port_bits, c.lanes, c.mac_cols) == (128, 16, 16)
    assert AcceleratorConfig.preset("int8", mac_cols=32).mem_port_bits == 256
    assert AcceleratorConfig.preset("edge-moe").mem_port_bits == 256
    assert AcceleratorConfig.preset("int8", mac_cols=8, mem_port_bits=64).lanes == 8
    with pytest.raises(TargetError) as e:
        AcceleratorConfig.preset("int8", mem_port_bits=256)
    assert str(e.value) == (
        "accelerator config: mac_cols=16 must be a multiple of the 32 activations a buffer word holds "
        "(mem_port_bits / act width = 256 / 8): LINEAR writes mac_cols / lanes whole words per output tile; "
        "with fixed<8,8> use mem_port_bits <= 128 or mac_cols >= 32")
    p = tmp_path / "acc.toml"
    p.write_text('[accelerator]\npreset = "int8"\n')
    assert AcceleratorConfig.from_toml(p).mem_port_bits == 128
    from fpga.compile.target import load_config

    assert load_config(None, {"preset": "int8"}).mem_port_bits == 128
    assert load_config(None, {"preset": "int8", "mac_cols": "32"}).mem_port_bits == 256
    with pytest.raises(TargetError, match="must be a multiple of the 32 activations"):
        load_config(None, {"preset": "int8", "mem_port_bits": "256"})


@pytest.mark.parametrize("kwargs, message", [
    ({"moe_k": 5, "moe_experts": 8},
     "accelerator config: moe_k=5 does not fit a MoE route-table word: it holds 4 experts and their gate weights "
     "(8 lanes)"),
    ({"act_fmt": FixedFormat(8, 8), "mac_cols": 4, "mac_rows": 4, "mem_port_bits": 32, "moe_k": 1,
      "weight_buffer_bytes": 1 << 12},
     "accelerator config: a MoE schedule entry (3 index fields of 16 bits) does not fit a 32-bit buffer word "
     "(mem_port_bits >= 48)"),
    ({"act_fmt": FixedFormat(8, 8), "mem_port_bits": 128, "moe_experts": 300},
     "accelerator config: moe_experts=300 exceeds the 256 experts a 8-bit route-table lane names"),
])
def test_moe_word_errors(kwargs, message):
    with pytest.raises(TargetError) as e:
        AcceleratorConfig(**kwargs)
    assert str(e.value) == message


def test_toml_round_trip(tmp_path):
    c = AcceleratorConfig(mac_rows=8, mac_cols=32, weight_fmt=FixedFormat(8, 1), clock_hz=250e6)
    p = tmp_path / "acc.toml"
    c.to_toml(p)
    assert AcceleratorConfig.from_toml(p) == c
    p.write_text('[accelerator]\npreset = "int8"\nmac_rows = 4\n')
    d = AcceleratorConfig.from_toml(p)
    assert d.act_fmt == FixedFormat(8, 8) and d.mac_rows == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"mac_rows": 0}, "accelerator config: mac_rows must be a positive integer, not 0"),
    ({"mem_port_bits": 100}, "accelerator config: mem_port_bits must be a power of two >= 8, not 100"),
    ({"clock_hz": 5e9}, "accelerator config: clock_hz must be between 1 MHz and 1 GHz, not 5000000000.0"),
    ({"board": "zcu104"}, "accelerator config: unknown board 'zcu104'; known: zcu102"),
    ({"attention_queries": 32}, "accelerator config: attention_queries=32 exceeds mac_rows=16"),
    ({"mac_rows": 64, "mac_cols": 64, "weight_buffer_bytes": 1 << 20},
     "accelerator config: 64x64 = 4096 MACs exceed the 2520 DSPs of xczu9eg-ffvb1156-2-e"),
    ({"attention_chunk": 24}, "accelerator config: attention_chunk=24 does not divide attention_head_dim=64"),
    ({"moe_k": 17}, "accelerator config: moe_k=17 exceeds moe_experts=16"),
    ({"moe_normalization": "softmax"},
     "accelerator config: moe_normalization 'softmax' is not supported; supported: softmax_then_topk, "
     "softmax_topk_renorm, topk_then_softmax, topk, sigmoid_then_topk"),
    ({"weight_buffer_bytes": 1000},
     "accelerator config: weight_buffer_bytes=1000 cannot double-buffer a 16x16 tile of fixed<16,2> weights "
     "(needs >= 1024)"),
])
def test_errors(kwargs, message):
    with pytest.raises(TargetError) as e:
        AcceleratorConfig(**kwargs)
    assert str(e.value) == message


def test_derived_sizes():
    c = AcceleratorConfig()
    assert c.lanes == 8                     # 256-bit words of fixed<32,10>
    assert c.buffer_words == 12_384         # 129 tokens x 768 activations
    assert c.weight_depth == 192            # 12,288 bytes: two banks of 192 rows of 16 x 16-bit weights


def test_toml_errors(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[accelerator]\nmac_rowz = 4\n")
    with pytest.raises(TargetError, match=r"unknown accelerator config keys \['mac_rowz'\]"):
        AcceleratorConfig.from_toml(p)
    p.write_text('[accelerator]\nact_fmt = "fixed<32>"\n')
    with pytest.raises(TargetError, match="act_fmt: cannot parse fixed-point format"):
        AcceleratorConfig.from_toml(p)
