"""One optical4f design point: device settings, the cost model, and (if asked) accuracy.

The figures are the optical4f report's: its plan (:func:`optical4f.mapping.plan_graph`),
cost (:func:`optical4f.cost.plan_cost`) and A100 estimate (:func:`optical4f.cost.gpu_estimate`),
called as the target calls them, without the target's sample-run simulation and plane
pictures (18-34 s a point; ``evaluate.report = true`` runs the whole target instead and
takes its report's figures). Accuracy is :func:`optical4f.evaluate.accuracy` on the first
``accuracy_images`` digits test images (all 360 by default); settings that only change the
cost (frame rates, powers, converters, electronics: :data:`COST_ONLY_FIELDS`) share one
accuracy run in the sweep (:mod:`sweeps.memo`). The CPU figure is onnxruntime on this machine, measured once per
process (:func:`optical4f.target.measure_onnxruntime`).
"""

from __future__ import annotations

import tempfile
import time

__all__ = ["evaluate_optical_point", "optical_config", "shared_work_key", "COST_ONLY_FIELDS"]

#: Settings that change cost figures but not what the simulation computes.
COST_ONLY_FIELDS = ("frame_rate_hz", "power_w", "wall_plug_efficiency", "dac_fom_j_per_step", "adc_fom_j_per_step",
                    "flops_per_s", "energy_per_flop_j", "bytes_per_s", "energy_per_byte_j", "threads")

_CPU: dict[str, dict] = {}


def optical_config(base, settings: dict):
    """The :class:`optical4f.devices.OpticalConfig` of a point: ``preset`` (a setting) or
    ``base``, then every ``SECTION.FIELD`` setting."""
    from optical4f.devices import load_config

    settings = dict(settings)
    preset = settings.pop("preset", None)
    return load_config(preset or base, settings)


def _sim_key(cfg) -> str:
    import json

    d = cfg.to_dict()
    for sec, fields in d.items():
        if isinstance(fields, dict):
            for k in list(fields):
                if k in COST_ONLY_FIELDS or k in ("name", "source"):
                    del fields[k]
    return json.dumps(d, sort_keys=True, default=str)


def _nonneg(graph) -> set:
    """Inputs known to be non-negative, as the target finds them: digit images (in [0, 1])
    for an 8x8 digits classifier, else those of hwgen's sample input that are >= 0."""
    import numpy as np

    from hwgen.frontend import sample_inputs

    shape = graph.tensors[graph.inputs[0]].shape
    if len(graph.inputs) == 1 and len(shape) == 4 and tuple(shape[1:]) == (1, 8, 8):
        return {graph.inputs[0]}
    return {k for k, v in sample_inputs(graph).items() if np.issubdtype(v.dtype, np.floating) and (v >= 0).all()}


def _cpu_figure(graph) -> dict:
    from hwgen.frontend import sample_inputs
    from optical4f.target import measure_onnxruntime

    src = str(graph.source)
    if src not in _CPU:
        _CPU[src] = measure_onnxruntime(src, sample_inputs(graph), 0.3)
    return _CPU[src]


def evaluate_optical_point(graph, settings: dict, job: dict) -> dict:
    """Figures of one point (TargetError for invalid settings)."""
    from optical4f.cost import gpu_estimate, plan_cost
    from optical4f.mapping import plan_graph

    timing = {}
    ev = job.get("evaluate", {})
    t = time.perf_counter()
    cfg = optical_config(job.get("base"), settings)
    if ev.get("report"):
        from optical4f.target import Optical4fTarget

        opts = {"config": cfg, "overrides": {"ort": "false", "accuracy": "false"}, "model_name": job.get("model_name")}
        with tempfile.TemporaryDirectory(prefix="hwgen-sweep-") as tmp:
            report = Optical4fTarget().compile(graph, tmp, opts)
        lat, en, frames, loads = report["latency_s"], report["energy_j"], report["frames"], report["filter_loads"]
        breakdown = report["energy_breakdown_j"]
        gpu_s = next(c["latency_s"] for c in report["comparisons"] if "A100" in c["name"])
        gpu_j = next(c["energy_j"] for c in report["comparisons"] if "A100" in c["name"])
        opt_s, el_s = report["optical_time_s"], report["electronic_time_s"]
    else:
        plan = plan_graph(graph, cfg, _nonneg(graph))
        cost = plan_cost(plan, cfg)
        gpu = gpu_estimate(plan)
        lat, en, frames, loads = cost["latency_s"], cost["energy_j"], plan.frames, plan.filter_loads
        breakdown, gpu_s, gpu_j = cost["energy_breakdown_j"], gpu["latency_s"], gpu["energy_j"]
        opt_s, el_s = cost["optical_time_s"], cost["electronic_time_s"]
    timing["cost_s"] = time.perf_counter() - t
    batch = int(graph.tensors[graph.inputs[0]].shape[0]) if graph.tensors[graph.inputs[0]].shape else 1
    cpu = _cpu_figure(graph)
    row = {"latency_s": lat, "energy_j": en, "throughput_per_s": batch / lat, "frames": frames, "filter_loads": loads,
           "optical_time_s": opt_s, "electronic_time_s": el_s,
           **{f"energy_{k}_j": v for k, v in breakdown.items()},
           "gpu_latency_s": gpu_s, "gpu_energy_j": gpu_j, "speedup_vs_gpu": gpu_s / lat,
           "cpu_latency_s": cpu.get("latency_s"),
           "speedup_vs_cpu": cpu["latency_s"] / lat if cpu.get("latency_s") else None,
           "preset": cfg.preset, "fits": True}
    if ev.get("accuracy"):
        t = time.perf_counter()
        row.update(_accuracy(graph, cfg, int(ev.get("accuracy_images", 0)), job.get("memo_dir")))
        timing["accuracy_s"] = time.perf_counter() - t
    row.update({f"time_{k}": v for k, v in timing.items()})
    return row


def shared_work_key(settings: dict, job: dict) -> str | None:
    """Points with the same key share their accuracy run (None: nothing shared)."""
    if not job.get("evaluate", {}).get("accuracy"):
        return None
    try:
        cfg = optical_config(job.get("base"), settings)
    except Exception:  # an invalid point fails on its own
        return None
    return _sim_key(cfg) + f"|{job['model']}|{job['evaluate'].get('accuracy_images', 0)}"


def _accuracy(graph, cfg, images: int, memo_dir=None) -> dict:
    import hwgen
    from optical4f.evaluate import accuracy, digits_test_split

    from .memo import memo_key, memoized

    def run():
        x, y = digits_test_split()
        if images:
            x, y = x[:images], y[:images]
        g = hwgen.load(str(graph.source), batch=len(y))
        r = accuracy(g, x, y, cfg)
        return {"accuracy": r["optical_accuracy"], "digital_accuracy": r["digital_accuracy"],
                "accuracy_drop_points": r["accuracy_drop_points"], "accuracy_images": r["images"]}

    return memoized(memo_dir, memo_key("optical-accuracy", _sim_key(cfg), str(graph.source), images), run)
