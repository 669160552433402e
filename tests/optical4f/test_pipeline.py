"""Pipelined vs serial latency (optical4f.pipeline) against hand-computed schedules."""

from __future__ import annotations

import dataclasses

import pytest

from optical4f import load_config
from optical4f.mapping import FramePlan, plan_graph
from optical4f.pipeline import schedule, serial_latency
from test_mapping import _graph  # the same two-Conv graph, frame counts worked out there

_H, _C = 6.62607015e-34, 299792458.0


def _exposure(cfg, n):
    """Worst-case frame energy / laser power, written out from the devices (s)."""
    cam = cfg.camera
    photons = n * n * cfg.sim.exposure_fill * cam.full_well_e / cam.quantum_efficiency
    joules = photons * _H * _C / cfg.laser.wavelength_m / (cfg.input_modulator.efficiency * cfg.fourier_modulator.efficiency)
    return joules / cfg.laser.power_w


def _one_layer(cfg, frames, loads, flops):
    layer = plan_graph(_graph(), cfg).layers[0]
    layer = dataclasses.replace(layer, frames=frames, filter_loads=loads, electronic_flops=flops)
    return FramePlan(layers=[layer], order=[("layer", 0)])


@pytest.mark.parametrize("frames", [3, 1000])  # 1000: past the exactly simulated frames, the periodic jump
def test_input_bound_chunk_matches_the_closed_form(frames):
    # input modulator slowest (100 Hz), camera 1 kHz read-out, filter load 5 ms, light electronics
    cfg = load_config("realistic", {"input_modulator.frame_rate_hz": "100", "camera.frame_rate_hz": "1000",
                                    "fourier_modulator.frame_rate_hz": "200"})
    plan = _one_layer(cfg, frames, 1, 1000 * frames)
    t_in, t_ro, t_f, t_exp = 1 / 100, 1 / 1000, 1 / 200, _exposure(cfg, plan.layers[0].frame_px)
    t_e = 1000 / cfg.electronics.flops_per_s
    assert t_in > max(t_ro, t_exp, t_e, t_f)
    # double-buffered: frame k is exposed as soon as it is written, (k + 1) t_in; the filter
    # load hides under the first write; the last frame is then exposed, read out, processed
    expect = frames * t_in + t_exp + t_ro + t_e
    assert schedule(plan, cfg).latency_s == pytest.approx(expect, rel=1e-9)
    # single-buffered: frame k+1 is written only after frame k's exposure
    expect1 = frames * (t_in + t_exp) + t_ro + t_e
    assert schedule(plan, cfg, double_buffered=False).latency_s == pytest.approx(expect1, rel=1e-9)
    # serial: nothing overlapped
    serial = frames * (t_in + t_exp + t_ro) + t_f + frames * t_e
    assert serial_latency(plan, cfg)["latency_s"] == pytest.approx(serial, rel=1e-9)


def test_readout_bound_chunks_hide_the_filter_reload():
    # camera slowest (10 ms read-out); 2 chunks of 5 frames; the second filter (1 ms) loads
    # after the 5th exposure, during the 5th read-out, so it costs nothing
    cfg = load_config("realistic", {"input_modulator.frame_rate_hz": "10000", "camera.frame_rate_hz": "100",
                                    "fourier_modulator.frame_rate_hz": "1000"})
    plan = _one_layer(cfg, 10, 2, 10)
    t_ro, t_f, t_exp = 1e-2, 1e-3, _exposure(cfg, plan.layers[0].frame_px)
    t_e = 1 / cfg.electronics.flops_per_s
    # first exposure after the first filter load; read-outs back to back from its end
    expect = t_f + t_exp + 10 * t_ro + t_e
    assert schedule(plan, cfg).latency_s == pytest.approx(expect, rel=1e-9)
    serial = 10 * (1e-4 + t_exp + t_ro) + 2 * t_f + 10 * t_e
    assert serial_latency(plan, cfg)["latency_s"] == pytest.approx(serial, rel=1e-9)


@pytest.mark.parametrize("preset", ["realistic", "dmd-highspeed", "ideal"])
def test_pipelined_between_busiest_device_and_serial(preset):
    cfg = load_config(preset)
    plan = plan_graph(_graph(), cfg)
    tl = schedule(plan, cfg)
    # independent: each device's total work from the plan's counts and the device rates
    im, fm, cam, el = cfg.input_modulator, cfg.fourier_modulator, cfg.camera, cfg.electronics
    busy = {
        "input modulator": sum(l.frames for l in plan.layers) / im.frame_rate_hz,
        "Fourier modulator": sum(l.filter_loads for l in plan.layers) / fm.frame_rate_hz,
        "camera read-out": sum(l.frames for l in plan.layers) / cam.frame_rate_hz,
        "camera exposure": sum(l.frames * _exposure(cfg, l.frame_px) for l in plan.layers),
        "host electronics": sum(l.electronic_flops for l in plan.layers) / el.flops_per_s
        + sum(h.flops / el.flops_per_s + h.bytes / el.bytes_per_s for h in plan.host_ops),
    }
    for k, v in busy.items():
        assert tl.busy_s[k] == pytest.approx(v, rel=1e-9), k
    serial = sum(busy.values())
    assert serial_latency(plan, cfg)["latency_s"] == pytest.approx(serial, rel=1e-9)
    assert max(busy.values()) * (1 - 1e-12) <= tl.latency_s <= serial * (1 + 1e-12)
    assert tl.latency_s < serial  # something does overlap


def test_electronics_bound_chunk_jumps_correctly():
    # host slowest: per-frame electronics 1 ms against a 0.1 ms input and read-out; 5000 frames
    cfg = load_config("realistic", {"input_modulator.frame_rate_hz": "10000", "camera.frame_rate_hz": "10000",
                                    "fourier_modulator.frame_rate_hz": "1000", "electronics.flops_per_s": "1e6"})
    frames = 5000
    plan = _one_layer(cfg, frames, 1, 1000 * frames)
    t_in, t_ro, t_f, t_exp = 1e-4, 1e-4, 1e-3, _exposure(cfg, plan.layers[0].frame_px)
    t_e = 1e-3
    # the first frame is read out after the filter load, its exposure and read-out; then the
    # host works back to back
    expect = max(t_in, t_f) + t_exp + t_ro + frames * t_e
    tl = schedule(plan, cfg)
    assert tl.latency_s == pytest.approx(expect, rel=1e-9)
    assert tl.busy_s["host electronics"] == pytest.approx(frames * t_e, rel=1e-9)
