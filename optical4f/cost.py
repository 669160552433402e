"""Latency and energy of a FramePlan on the configured devices; GPU estimate.

Optical layer (one Conv node)::

    frame period  T_f = max(1 / input modulator rate, 1 / camera rate)
                  (a binary DMD's rate is its bit-plane rate: bit-planes are frames)
    latency       frames x T_f + filter loads x (1 / Fourier modulator rate)
                  + electronic work of the layer (sqrt, sign/bit-plane sums, channel sums, bias)
    energy        laser: P_opt / wall-plug efficiency x optical time
                  modulators, camera: their power x optical time
                  DAC: pixels written x FoM x 2^bits (input; Fourier: 4 pixels per
                  double-phase sample); ADC: pixels read x FoM x 2^bits
                  electronics: FLOPs x J/FLOP

Host op: ``FLOPs / FLOP/s + bytes / (B/s)`` seconds, ``FLOPs x J/FLOP + bytes x J/B``.
Everything is sequential (no overlap of optics and electronics): an upper bound.

GPU estimate (:func:`gpu_estimate`): every non-view node as one kernel, time
``max(FLOPs / peak, bytes / bandwidth) + launch overhead``, energy = board power x time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .devices import OpticalConfig
from .mapping import FramePlan, HostOp, LayerFrames

__all__ = ["frame_period_s", "layer_cost", "host_cost", "plan_cost", "GPU_A100", "gpu_estimate", "photon_budget"]

_H, _C = 6.62607015e-34, 299792458.0  # Planck constant (J s), speed of light (m/s): SI 2019 exact


def frame_period_s(cfg: OpticalConfig) -> float:
    return max(1.0 / cfg.input_modulator.frame_rate_hz, 1.0 / cfg.camera.frame_rate_hz)


def _conv_energy(e_per_step: float, bits: int, samples: int) -> float:
    return samples * e_per_step * float(1 << max(bits, 1))


def layer_cost(layer: LayerFrames, cfg: OpticalConfig) -> dict:
    """Latency and energy breakdown of one optical layer."""
    el = cfg.electronics
    t_opt = layer.frames * frame_period_s(cfg) + layer.filter_loads / cfg.fourier_modulator.frame_rate_hz
    t_el = layer.electronic_flops / el.flops_per_s
    in_bits = 1 if cfg.input_modulator.modulation == "binary" else cfg.input_modulator.bits
    macro = 4 if cfg.fourier_modulator.modulation == "phase" else 1
    energy = {
        "laser": cfg.laser.power_w / max(cfg.laser.wall_plug_efficiency, 1e-12) * t_opt,
        "input_modulator": cfg.input_modulator.power_w * t_opt,
        "fourier_modulator": cfg.fourier_modulator.power_w * t_opt,
        "camera": cfg.camera.power_w * t_opt,
        "dac": _conv_energy(cfg.converters.dac_fom_j_per_step, in_bits, layer.input_pixels)
        + _conv_energy(cfg.converters.dac_fom_j_per_step, cfg.fourier_modulator.bits, layer.filter_pixels * macro),
        "adc": _conv_energy(cfg.converters.adc_fom_j_per_step, cfg.camera.bits, layer.camera_pixels),
        "electronics": layer.electronic_flops * el.energy_per_flop_j,
    }
    return {"optical_time_s": t_opt, "electronic_time_s": t_el, "latency_s": t_opt + t_el,
            "energy_j": sum(energy.values()), "energy_breakdown_j": energy}


def host_cost(op: HostOp, cfg: OpticalConfig) -> dict:
    el = cfg.electronics
    t = op.flops / el.flops_per_s + op.bytes / el.bytes_per_s
    return {"latency_s": t, "energy_j": op.flops * el.energy_per_flop_j + op.bytes * el.energy_per_byte_j}


def photon_budget(cfg: OpticalConfig, frame_px: int) -> dict:
    """Laser energy per frame vs the most a frame can need (every pixel at the exposure
    level: ``N² x fill x full well / QE`` photons, divided by the modulators' throughput)."""
    cam, lam = cfg.camera, cfg.laser.wavelength_m
    photons = frame_px ** 2 * cfg.sim.exposure_fill * cam.full_well_e / max(cam.quantum_efficiency, 1e-12)
    need_j = photons * _H * _C / lam / max(cfg.input_modulator.efficiency * cfg.fourier_modulator.efficiency, 1e-12)
    have_j = cfg.laser.power_w * frame_period_s(cfg)
    return {"frame_energy_needed_max_j": need_j, "frame_energy_available_j": have_j, "ratio": have_j / need_j}


def plan_cost(plan: FramePlan, cfg: OpticalConfig) -> dict:
    """Totals, per-layer and per-host-op figures, and the energy breakdown of a plan."""
    layers = [layer_cost(l, cfg) for l in plan.layers]
    hosts = [host_cost(h, cfg) for h in plan.host_ops]
    breakdown: dict[str, float] = {}
    for c in layers:
        for k, v in c["energy_breakdown_j"].items():
            breakdown[k] = breakdown.get(k, 0.0) + v
    breakdown["host_ops"] = sum(h["energy_j"] for h in hosts)
    t_opt = sum(c["optical_time_s"] for c in layers)
    t_el = sum(c["electronic_time_s"] for c in layers) + sum(h["latency_s"] for h in hosts)
    return {"layers": layers, "host_ops": hosts, "optical_time_s": t_opt, "electronic_time_s": t_el,
            "latency_s": t_opt + t_el, "energy_j": sum(breakdown.values()), "energy_breakdown_j": breakdown}


@dataclass(frozen=True)
class GpuSpec:
    name: str
    fp32_flops_per_s: float
    bytes_per_s: float
    power_w: float
    launch_s: float
    source: str
    launch_source: str


GPU_A100 = GpuSpec(
    "NVIDIA A100 SXM4 40GB", 19.5e12, 1555e9, 400.0, 5e-6,
    "NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5 TFLOPS (non-tensor), HBM2 1,555 GB/s, max TDP 400 W",
    "assumption: ~5 us per CUDA kernel launch + sync for tiny kernels (typical measured 3-10 us)",
)


def gpu_estimate(plan: FramePlan, gpu: GpuSpec = GPU_A100) -> dict:
    """Roofline + launch estimate of the whole graph on ``gpu`` (one kernel per non-view node)."""
    t_roof = t = 0.0
    kernels = 0
    for l in plan.layers:
        in_b, out_b = 4 * int(np.prod(l.in_shape)), 4 * int(np.prod(l.out_shape))
        r = max(2 * l.macs / gpu.fp32_flops_per_s, (in_b + out_b) / gpu.bytes_per_s)
        t_roof += r
        t += r + gpu.launch_s
        kernels += 1
    for h in plan.host_ops:
        if h.flops == 0 and h.bytes == 0:
            continue
        r = max(h.flops / gpu.fp32_flops_per_s, 2 * h.bytes / gpu.bytes_per_s)
        t_roof += r
        t += r + gpu.launch_s
        kernels += 1
    return {"name": gpu.name, "latency_s": t, "roofline_s": t_roof, "kernels": kernels,
            "energy_j": gpu.power_w * t, "source": gpu.source, "launch_source": gpu.launch_source}
