"""One FPGA design point: a configuration compiled (cost only) and costed.

Per point: the accelerator configuration (the base configuration with the point's
settings, :func:`fpga.compile.target.load_config`), :func:`fpga.compile.compile_graph`
with ``cost_only=True`` (no Verilog, no weight image) for one task, the report's cycle
and energy model (:func:`fpga.compile.report.build_report`), the resources of
:func:`point_resources` against the part (:func:`fpga.synth.fits`), and where the spec
asks, the test-split accuracy in the accelerator's fixed point
(:func:`models.evaluate.evaluate_onnx`, once per format pair in the sweep).

Per process (a worker), two caches: the hardware graph and its storage analysis per
format pair (:class:`fpga.compile.reuse.CompileReuse`: they read the formats only), and
whole compiles per :func:`fpga.compile.reuse.cost_only_key` (points differing only in
the clock, part, weight buffer or attention lanes/chunk share one: the programs do not
read those). Both give the figures of a compile from scratch (tested).
"""

from __future__ import annotations

import time
from collections import OrderedDict

__all__ = ["point_resources", "fpga_config", "evaluate_fpga_point", "shared_work_key", "reset_caches",
           "cache_stats"]

_COMPILED: "OrderedDict[tuple, tuple]" = OrderedDict()  # (graph id, cost_only_key, task) -> (graph, Compiled)
_COMPILED_MAX = 4
_REUSE = None  # fpga.compile.reuse.CompileReuse of this process (made on first use)
_REUSE_MAX = 4  # format pairs x tasks kept (~47 MB each for m3vit-edge-moe)


def point_resources(config) -> dict:
    """Resources of ``config``: ``{"lut", "ff", "dsp", "bram36", "source"}``.

    The one place a sweep takes resources from: the fast estimator
    (:func:`fpga.cost.resources.estimate_resources`, structural counts calibrated on
    recorded Yosys runs; within 15 % of Yosys on the checked tops, well under a second).
    """
    from fpga.cost.resources import estimate_resources

    est = estimate_resources(config)
    return {"lut": est["lut"], "ff": est["ff"], "dsp": est["dsp"], "bram36": est["bram36"],
            "source": f"estimate ({est['method']})" if isinstance(est.get("method"), str)
            else "estimate (fpga/cost/resources.py)"}


def fpga_config(base, settings: dict):
    """The :class:`fpga.config.AcceleratorConfig` of a point (TargetError if invalid)."""
    from fpga.compile.target import load_config

    return load_config(base, {k: str(v) for k, v in settings.items()})


def _compiled(graph, cfg, task):
    """The cost-only compile of ``cfg`` and whether it was reused: configurations with the
    same :func:`fpga.compile.reuse.cost_only_key` (differing only in the clock, part,
    weight buffer or attention lanes/chunk) share one; the hardware graph and its storage
    analysis are shared by every configuration with the same formats (``_REUSE``)."""
    from fpga.compile import compile_graph
    from fpga.compile.graph import task_inputs
    from fpga.compile.reuse import cost_only_key

    key = (id(graph), cost_only_key(cfg), task)
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key][1], True
    bind_task = task if task is not None else (0 if task_inputs(graph) else None)
    compiled = compile_graph(graph, cfg, task=bind_task, cost_only=True, reuse=_reuse())
    _COMPILED[key] = (graph, compiled)  # the graph kept: its id is not reused while the entry lives
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return compiled, False


def _reuse():
    global _REUSE
    if _REUSE is None:
        from fpga.compile.reuse import CompileReuse

        _REUSE = CompileReuse(max_entries=_REUSE_MAX)
    return _REUSE


def cache_stats() -> dict:
    """This process's caches: ``compiles`` kept, ``graph_hits`` and ``graph_misses`` of the
    hardware-graph reuse."""
    return {"compiles": len(_COMPILED), "graph_hits": _REUSE.hits if _REUSE else 0,
            "graph_misses": _REUSE.misses if _REUSE else 0}


def reset_caches() -> None:
    """Forget this process's compiles and hardware graphs (every point then starts from scratch)."""
    _COMPILED.clear()
    if _REUSE is not None:
        _REUSE.clear()
        _REUSE.hits = _REUSE.misses = 0


def _accuracy_parts(cfg, task, images) -> tuple:
    """What the fixed-point accuracy depends on."""
    return str(cfg.act_fmt), str(cfg.weight_fmt), cfg.moe_normalization, task, images


def compile_group_key(settings: dict, job: dict) -> str | None:
    """Points with the same key share one cost-only compile (:func:`_compiled`), which a
    worker keeps in memory: the driver sends them to one worker together (None: invalid
    configuration, evaluated alone)."""
    from fpga.compile.reuse import cost_only_key

    try:
        cfg = fpga_config(job.get("base"), settings)
    except Exception:  # an invalid point fails on its own
        return None
    return repr(cost_only_key(cfg))  # the key _compiled shares compiles by (it holds the formats)


def shared_work_key(settings: dict, job: dict) -> str | None:
    """Points with the same key share their accuracy run (None: nothing shared)."""
    ev = job.get("evaluate", {})
    if not ev.get("accuracy"):
        return None
    try:
        cfg = fpga_config(job.get("base"), settings)
    except Exception:  # an invalid point fails on its own
        return None
    return repr(_accuracy_parts(cfg, job.get("task"), int(ev.get("accuracy_images", 0))))


def _accuracy(model_path: str, cfg, task: int | None, images: int, memo_dir=None) -> float:
    from models.evaluate import evaluate_onnx

    from .memo import memo_key, memoized

    def run():
        return evaluate_onnx(model_path, numerics="fixed", limit=images or None, config=cfg)[task or 0]

    return memoized(memo_dir, memo_key("fpga-accuracy", model_path, *_accuracy_parts(cfg, task, images)), run)


def evaluate_fpga_point(graph, settings: dict, job: dict) -> dict:
    """Figures of one point (raises TargetError for an invalid configuration).

    ``job``: ``base`` (configuration TOML or None), ``task``, ``model_name``,
    ``evaluate`` (the spec's ``[evaluate]``).
    """
    import dataclasses

    from fpga.compile.report import build_report
    from fpga.synth import fits, utilization

    timing = {}
    t = time.perf_counter()
    cfg = fpga_config(job.get("base"), settings)
    compiled, reused = _compiled(graph, cfg, job.get("task"))
    if reused and compiled.config != cfg:
        compiled = dataclasses.replace(compiled, config=cfg)
    timing["compile_s"] = 0.0 if reused else time.perf_counter() - t
    t = time.perf_counter()
    report = build_report(compiled, job.get("model_name", ""))
    timing["cost_s"] = time.perf_counter() - t
    res = point_resources(cfg)
    used = {k: res[k] for k in ("lut", "ff", "dsp", "bram36") if res.get(k) is not None}
    util = utilization(used, cfg.part)
    ok = fits(used, cfg.part)
    b = compiled.bindings[0]
    row = {
        "latency_s": report["latency_s"], "energy_j": report["energy_j"], "cycles": report["cycles"],
        "gops": report.get("gops"), "throughput_gop_s": report.get("throughput_gop_s"),
        "dram_bytes": report["totals"]["dram_bytes"], "instructions": report["totals"]["instructions"],
        "host_steps": b.stats["host_steps"], "spills": len(b.stats["spilled"]),
        **{f"energy_{k}_j": v for k, v in report["energy_breakdown_j"].items()},
        "lut": res.get("lut"), "ff": res.get("ff"), "dsp": res.get("dsp"), "bram36": res.get("bram36"),
        **{f"util_{k}": u[2] for k, u in util.items()},
        "resources_source": res["source"], "part": cfg.part.name, "fits": ok,
        "clock_target_hz": cfg.clock_hz, "clock_used_hz": report.get("clock", {}).get("clock_used_hz"),
        "fmax_estimate_hz": report.get("clock", {}).get("fmax_estimated_hz"),
        "latency_at_target_clock_s": report.get("latency_at_target_clock_s"),
        "program_set": b.name, "compile_reused": reused,
    }
    if not ok:
        over = [f"{k} {u[0]:g} of {u[1]:g}" for k, u in util.items() if u[2] > 1]
        row["reason"] = f"does not fit {cfg.part.name}: " + ", ".join(over)
    ev = job.get("evaluate", {})
    if ev.get("accuracy"):
        t = time.perf_counter()
        row["accuracy"] = _accuracy(str(graph.source), cfg, job.get("task"), int(ev.get("accuracy_images", 0)),
                                    job.get("memo_dir"))
        timing["accuracy_s"] = time.perf_counter() - t
    if ev.get("rtl") or ev.get("yosys"):
        from .fpga_slow import rtl_and_yosys

        t = time.perf_counter()
        row.update(rtl_and_yosys(job.get("model_name", str(graph.source)), cfg, job.get("task"), ev))
        timing["rtl_yosys_s"] = time.perf_counter() - t
    row.update({f"time_{k}": v for k, v in timing.items()})
    return row
