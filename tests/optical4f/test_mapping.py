"""IR graph -> FramePlan on small hand-built graphs (frame counts worked out by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from hwgen.ir import Graph, Node, Tensor
from optical4f import load_config
from optical4f.conv import conv2d
from optical4f.cost import frame_period_s, plan_cost
from optical4f.evaluate import conv_args
from optical4f.mapping import plan_graph

F32 = np.dtype(np.float32)


def _graph():
    """x[2,3,8,8] -> Conv A (w[4,3,3,3], pads 1) -> Relu -> Conv B (depthwise over 4
    channels, w[4,1,3,3] = one 3x3 kernel shared by every channel, pads 1)."""
    rng = np.random.default_rng(0)
    g = Graph("tiny")
    g.add_tensor(Tensor("x", (2, 3, 8, 8), F32))
    g.inputs = ["x"]
    wa = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g.add_const("wa", wa)
    g.add_tensor(Tensor("a", (2, 4, 8, 8), F32))
    g.add_tensor(Tensor("r", (2, 4, 8, 8), F32))
    shared = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    g.add_const("wb", np.tile(shared, (4, 1, 1, 1)))  # depthwise, one kernel shared by the 4 channels
    g.add_tensor(Tensor("b", (2, 4, 8, 8), F32))
    g.nodes = [
        Node("Conv", "convA", ["x", "wa"], ["a"], {"pads": [1, 1, 1, 1], "group": 1, "kernel_shape": [3, 3]}),
        Node("Relu", "relu", ["a"], ["r"]),
        Node("Conv", "convB", ["r", "wb"], ["b"], {"pads": [1, 1, 1, 1], "group": 4, "kernel_shape": [3, 3]}),
    ]
    g.outputs = ["b"]
    g.check()
    return g


def test_frame_counts_by_hand():
    cfg = load_config("realistic")  # 512 frame, guard 2, one kernel per filter, two-pass signs
    plan = plan_graph(_graph(), cfg)
    a, b = plan.layers
    # convA: 3 channels with different kernel lists -> 3 sets; per set 2 images x 2 signs = 4 tiles,
    # 4 kernels x 2 signs = 8 kernels, one kernel per frame -> 8 frames; 3 sets -> 24 frames.
    assert (a.sets, a.tiles, a.kernels, a.frames, a.filter_loads) == (3, 12, 24, 24, 24)
    assert not a.shared_kernels and a.x_signed
    # convB: input from Relu (non-negative, one pass); one shared kernel -> 1 set of 2 x 4 = 8 tiles,
    # kernel split into +/- -> 2 kernels -> 2 frames.
    assert (b.sets, b.tiles, b.kernels, b.frames) == (1, 8, 2, 2)
    assert b.shared_kernels and not b.x_signed
    assert plan.frames == 26
    assert [h.op for h in plan.host_ops] == ["Relu"] and plan.host_ops[0].flops == 2 * 4 * 8 * 8
    # tiles per frame: cells of (8 + 2 pad + 2 guard) = 12 px in 512 -> 42 x 42
    assert a.tiles_per_frame == 42 * 42


def test_no_kernel_limit_packs_kernels_into_one_filter():
    cfg = load_config("realistic", {"sim.max_kernels_per_frame": "0"})
    a, b = plan_graph(_graph(), cfg).layers
    assert (a.frames, b.frames) == (3, 1)  # every set's 8 kernels share one frame; convB's 2 too


def test_mapping_frames_match_the_simulation():
    g = _graph()
    cfg = load_config("realistic", {"sim.noise": "false"})
    plan = plan_graph(g, cfg)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    _, ia = conv2d(x, g.const("wa"), config=cfg, return_info=True, **conv_args(g.nodes[0]))
    r = np.maximum(np.random.default_rng(2).standard_normal((2, 4, 8, 8)), 0)
    _, ib = conv2d(r, g.const("wb"), config=cfg, return_info=True, **conv_args(g.nodes[2]))
    assert (ia.frames, ib.frames) == (plan.layers[0].frames, plan.layers[1].frames)
    assert (ia.filter_loads, ib.filter_loads) == (plan.layers[0].filter_loads, plan.layers[1].filter_loads)


def test_cost_is_frames_times_slowest_period_plus_loads():
    cfg = load_config("realistic")
    plan = plan_graph(_graph(), cfg)
    cost = plan_cost(plan, cfg)
    period = max(1 / cfg.input_modulator.frame_rate_hz, 1 / cfg.camera.frame_rate_hz)
    assert frame_period_s(cfg) == pytest.approx(period)
    a = plan.layers[0]
    expect = a.frames * period + a.filter_loads / cfg.fourier_modulator.frame_rate_hz
    assert cost["layers"][0]["optical_time_s"] == pytest.approx(expect)
    assert cost["latency_s"] == pytest.approx(cost["optical_time_s"] + cost["electronic_time_s"])
    assert cost["energy_j"] == pytest.approx(sum(cost["energy_breakdown_j"].values()))
    laser = cfg.laser.power_w / cfg.laser.wall_plug_efficiency * cost["optical_time_s"]
    assert cost["energy_breakdown_j"]["laser"] == pytest.approx(laser)


def _mixed_graph():
    """x[1,8,6,6] -> 1x1 Conv (16 kernels) -> depthwise 3x3 Conv, one kernel shared by the 16
    channels (pads 1) -> 2x2 stride-2 Conv (4 kernels)."""
    rng = np.random.default_rng(3)
    g = Graph("mixed")
    g.add_tensor(Tensor("x", (1, 8, 6, 6), F32))
    g.inputs = ["x"]
    g.add_const("w1", rng.standard_normal((16, 8, 1, 1)).astype(np.float32))
    g.add_tensor(Tensor("a", (1, 16, 6, 6), F32))
    g.add_const("w3", np.tile(rng.standard_normal((1, 1, 3, 3)).astype(np.float32), (16, 1, 1, 1)))
    g.add_tensor(Tensor("b", (1, 16, 6, 6), F32))
    g.add_const("w2", rng.standard_normal((4, 16, 2, 2)).astype(np.float32))
    g.add_tensor(Tensor("c", (1, 4, 3, 3), F32))
    g.nodes = [
        Node("Conv", "pw", ["x", "w1"], ["a"], {"kernel_shape": [1, 1]}),
        Node("Conv", "dw", ["a", "w3"], ["b"], {"pads": [1, 1, 1, 1], "group": 16, "kernel_shape": [3, 3]}),
        Node("Conv", "down", ["b", "w2"], ["c"], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ]
    g.outputs = ["c"]
    g.check()
    return g


def test_mapper_sends_matmuls_in_disguise_to_electronics_with_reasons():
    cfg = load_config("realistic")
    plan = plan_graph(_mixed_graph(), cfg)  # map=auto
    d = {x.name: x for x in plan.decisions}
    assert [(d[n].kind, d[n].device) for n in ("pw", "dw", "down")] == [
        ("pointwise", "electronics"), ("shared depthwise", "optics"), ("patchify", "electronics")]
    assert "channel matmul" in d["pw"].reason and "electronics is faster" in d["pw"].reason
    assert "reshape plus a matmul" in d["down"].reason
    # electronic time of the 1x1 conv: 2 x MACs / FLOP/s + output bytes / (B/s), MACs by hand
    el = cfg.electronics
    assert d["pw"].electronic_s == pytest.approx(2 * 16 * 8 * 6 * 6 / el.flops_per_s + 16 * 6 * 6 * 4 / el.bytes_per_s)
    assert d["pw"].optical_s > d["pw"].electronic_s
    # the depthwise conv stays on the optics under map=auto, and its reason says electronics would be faster
    assert "map=cost moves it" in d["dw"].reason
    assert [l.name for l in plan.layers] == ["dw"] and [h.name for h in plan.host_ops] == ["pw", "down"]
    assert plan.order == [("host", 0), ("layer", 0), ("host", 1)]


def test_mapper_puts_the_shared_3x3_on_the_optics_when_the_cost_model_says_so():
    g = _mixed_graph()
    # fast devices and a slow host: the optics win the shared 3x3 (and not the 1x1's 16 x 8 kernels)
    fast = load_config("realistic", {"input_modulator.frame_rate_hz": "1e7", "camera.frame_rate_hz": "1e7",
                                     "fourier_modulator.frame_rate_hz": "1e7", "electronics.flops_per_s": "1e6",
                                     "electronics.bytes_per_s": "1e6"})
    d = {x.name: x for x in plan_graph(g, fast, policy="cost").decisions}
    assert d["dw"].device == "optics" and "optics is faster" in d["dw"].reason
    # its optical time is frames x frame period + filter loads / Fourier rate + electronic work
    lay = next(l for l in plan_graph(g, fast, policy="cost").layers if l.name == "dw")
    assert d["dw"].optical_s == pytest.approx(lay.frames / 1e7 + lay.filter_loads / 1e7 + lay.electronic_flops / 1e6)
    assert d["dw"].optical_s < d["dw"].electronic_s
    # on the realistic devices the cost model sends it to electronics
    d = {x.name: x for x in plan_graph(g, load_config("realistic"), policy="cost").decisions}
    assert d["dw"].device == "electronics" and "electronics is faster (map=cost)" in d["dw"].reason


def test_mapper_policies_force_and_reject():
    from hwgen.errors import TargetError

    g = _mixed_graph()
    cfg = load_config("realistic")
    assert len(plan_graph(g, cfg, policy="optics").layers) == 3
    plan = plan_graph(g, cfg, policy="electronics")
    assert not plan.layers and all(d.device == "electronics" for d in plan.decisions)
    with pytest.raises(TargetError, match="mapping policy must be one of auto, cost, optics, electronics"):
        plan_graph(g, cfg, policy="fastest")
