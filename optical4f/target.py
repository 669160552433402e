"""The ``optical4f`` target: ``hwgen compile MODEL --target optical4f -o OUT``.

Writes ``OUT/report.json`` and ``OUT/report.md`` (schema :mod:`hwgen.report`) and three
PNGs of the first Conv layer's first frame: ``input_plane.png``, ``fourier_plane.png``,
``camera_frame.png``.

Options (``--config FILE.toml``, ``--set KEY=VALUE``): any ``SECTION.FIELD`` of
:mod:`optical4f.devices`, ``preset=NAME`` (default ``realistic``), ``accuracy=auto|true|false``
(test-set accuracy digital vs optical for 8x8 digit classifiers; ``auto``: when the
input is ``[B, 1, 8, 8]`` and scikit-learn is installed), ``ort=true|false`` (measure
onnxruntime on this CPU), ``ort_seconds=0.5``, ``sweep=true`` (with the accuracy: the
input-modulator and camera bit-depth sweep, ~2 minutes), ``map=auto|cost|optics|electronics``
(which Conv nodes the optics run: :mod:`optical4f.mapping`), ``simulate=auto|true|sample|false``
(physical simulation of the optical layers on the sample input -- per-layer error, plane
images, end-to-end error; ``auto``: every layer up to ``SIM_AUTO_PIXELS`` frame pixels in all,
else only the first optical layer: ``SIM_AUTO_PIXELS``; a progress bar on stderr), ``double_buffer=true|false``
(input modulator double-buffered in the pipelined latency).

``latency_s`` is the pipelined latency (:mod:`optical4f.pipeline`), ``latency_serial_s``
the serial upper bound; ``timeline.png`` shows the per-layer timeline.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from hwgen.errors import TargetError
from hwgen.ir import Graph
from hwgen.report import make_report, write_report

from .conv import conv2d
from .cost import GPU_A100, frame_period_s, gpu_estimate, photon_budget, plan_cost
from .devices import load_config
from .evaluate import accuracy, bit_depth_sweep, conv_args, digits_test_split, run_graph
from .mapping import FLOPS_PER_ELEMENT, plan_graph
from .pipeline import plot_timeline, schedule, serial_latency, stage_times
from .physics import OpticalAliasingWarning, centered

__all__ = ["Optical4fTarget", "measure_onnxruntime"]

_TARGET_KEYS = ("accuracy", "ort", "ort_seconds", "preset", "sweep", "map", "simulate", "double_buffer")

#: simulate=auto simulates every optical layer up to this many frame pixels in all (512 frames
#: of 512 x 512, ~10-20 s on one core of this machine), else samples the first optical layer
SIM_AUTO_PIXELS = 512 * 512 ** 2


def _sim_mode(v) -> str:
    v = str(v if v is not None else "auto").lower()
    if v in ("1", "true", "yes", "on", "all"):
        return "all"
    if v in ("0", "false", "no", "off", "none"):
        return "none"
    if v in ("auto", "sample"):
        return v
    raise TargetError(f"simulate={v!r}: expected true (every optical layer), sample (the first one), false or auto")


def _flag(v, default: str = "auto") -> str:
    v = str(v if v is not None else default).lower()
    if v in ("1", "true", "yes", "on"):
        return "true"
    if v in ("0", "false", "no", "off"):
        return "false"
    if v == "auto":
        return "auto"
    raise TargetError(f"expected true, false or auto, not {v!r}")


def measure_onnxruntime(model_path: str, inputs: dict, seconds: float = 0.5) -> dict:
    """Median latency of the ONNX model under onnxruntime (CPU, 1 thread) on ``inputs``."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"name": "onnxruntime CPU (measured)", "latency_s": None, "note": "onnxruntime is not installed: not measured"}
    if not model_path or not Path(model_path).is_file():
        return {"name": "onnxruntime CPU (measured)", "latency_s": None, "note": f"no ONNX file to run ({model_path!r})"}
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
        feeds = {i.name: inputs[i.name] for i in sess.get_inputs()}
        for _ in range(5):
            sess.run(None, feeds)
        times = []
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(times) < 20:
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t0)
    except Exception as e:  # a model ORT cannot run is reported, not fatal
        return {"name": "onnxruntime CPU (measured)", "latency_s": None, "note": f"onnxruntime failed: {type(e).__name__}: {e}"}
    return {"name": "onnxruntime CPU (measured)", "latency_s": float(np.median(times)), "runs": len(times),
            "threads": 1, "cpu": platform.processor() or platform.machine(), "onnxruntime": ort.__version__}


def _inputs(graph: Graph, use_digits: bool) -> tuple[dict, set]:
    """Sample inputs (digit test images when the model takes them) and the non-negative ones."""
    from hwgen.frontend import sample_inputs

    feeds = sample_inputs(graph)
    if use_digits:
        x, _ = digits_test_split()
        name = graph.inputs[0]
        b = graph.tensors[name].shape[0]
        reps = -(-b // len(x))  # more images than the test split: repeat it
        feeds[name] = np.concatenate([x] * reps)[:b].astype(graph.tensors[name].dtype)
    nonneg = {k for k, v in feeds.items() if np.issubdtype(v.dtype, np.floating) and (v >= 0).all()}
    return feeds, nonneg


def _is_digit_model(graph: Graph) -> bool:
    if len(graph.inputs) != 1:
        return False
    shape = graph.tensors[graph.inputs[0]].shape
    if len(shape) != 4 or tuple(shape[1:]) != (1, 8, 8):
        return False
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def _crop(img: np.ndarray, margin: int = 6) -> tuple[slice, slice]:
    """Rows/cols around the lit part of a plane (tiles fill only part of a frame)."""
    lit = np.argwhere(img > 1e-3 * max(float(img.max()), 1e-30))
    if lit.size == 0:
        return slice(0, img.shape[0]), slice(0, img.shape[1])
    (r0, c0), (r1, c1) = lit.min(0), lit.max(0)
    side = max(r1 - r0, c1 - c0) + 1 + 2 * margin
    r0, c0 = max(0, r0 - margin), max(0, c0 - margin)
    return slice(r0, min(img.shape[0], r0 + side)), slice(c0, min(img.shape[1], c0 + side))


def _save_planes(planes: dict, out_dir: Path, layer: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, p, pf = planes["n"], planes["pitch_m"], planes["fourier_pitch_m"]
    # the camera as read out: flipped back from the inversion by lens 2 (input orientation)
    # roll by a margin so that outputs that wrap around the frame edge (full-correlation
    # borders) sit next to their tile, then crop to the lit part of the input
    m = 8
    cam = np.roll(np.flip(planes["camera"], axis=(0, 1)), 1 + m, axis=(0, 1))
    inp = np.roll(planes["input"], m, axis=(0, 1))
    rs, cs = _crop(inp, m)
    ext = [(cs.start - m) * p * 1e3, (cs.stop - m) * p * 1e3, (rs.stop - m) * p * 1e3, (rs.start - m) * p * 1e3]
    extf = [-n / 2 * pf * 1e3, n / 2 * pf * 1e3, n / 2 * pf * 1e3, -n / 2 * pf * 1e3]
    out = []
    pics = [
        ("input_plane.png", inp[rs, cs], ext, f"input modulator amplitude (lit part of the {n}x{n} frame)", "x (mm)"),
        ("fourier_plane.png", np.log10(np.abs(centered(planes["fourier"])) ** 2 + 1e-30), extf,
         "Fourier plane |U|² (log10), before the filter", "x_f (mm)"),
        ("camera_frame.png", cam[rs, cs], ext, "camera intensity, read-out orientation (lit part)", "x (mm)"),
    ]
    for fname, img, extent, title, xl in pics:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        if fname.startswith("fourier"):
            finite = img[np.isfinite(img)]
            vmax = float(finite.max())
            im = ax.imshow(img, extent=extent, cmap="magma", vmin=vmax - 8, vmax=vmax)
        else:
            im = ax.imshow(img, extent=extent, cmap="gray")
        ax.set_title(f"{layer}: {title}", fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(xl.replace("x", "y"))
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        out.append(fname)
    return out


def _check_graph(graph: Graph) -> None:
    from hwgen.interp.registry import FLOAT_OPS

    for t in graph.tensors.values():
        if t.dynamic:
            raise TargetError(f"tensor {t.name!r} has a data-dependent shape; optical4f needs static shapes")
    for n in graph.nodes:
        key = f"{n.domain}.{n.op}" if n.domain else n.op
        if key not in FLOAT_OPS:
            raise TargetError(f"node {n.name!r}: op {n.op!r} cannot run on the host; supported: {', '.join(sorted(FLOAT_OPS))}")


class Optical4fTarget:
    name = "optical4f"
    help = "ConvShareViT-style convolutions on a simulated 4f optical correlator (latency, energy, accuracy)"

    #: what :meth:`placement` covers, where "not host" is, and what ``hwgen inspect`` adds about the rest
    placement_scope = "convolutions"
    placement_device = "optics"
    placement_note = "every other op runs in electronics"

    def placement(self, graph: Graph) -> dict[str, dict]:
        """Where each Conv runs on the default configuration: node name -> ``{"op": "Conv",
        "where": "optics" or "host: reason"}`` (the mapper's decision, both costs quoted)."""
        plan = plan_graph(graph, load_config(None, {}), frozenset())
        return {d.name: {"op": "Conv", "where": "optics" if d.device == "optics" else f"host: {d.reason}"}
                for d in plan.decisions}

    def compile(self, graph: Graph, out_dir: Path, options: dict) -> dict:
        out_dir = Path(out_dir)
        overrides = dict(options.get("overrides") or {})
        target_opts = {k: overrides.pop(k) for k in list(overrides) if k in _TARGET_KEYS}
        spec = options.get("config") or target_opts.get("preset") or options.get("preset")
        cfg = load_config(spec, overrides)
        _check_graph(graph)
        model = str(options.get("model_name") or graph.source or graph.name)
        convs = [n for n in graph.nodes if n.op == "Conv" and not n.domain]
        if not convs:
            raise TargetError(f"{model}: no Conv node; the optical4f target maps convolutions (ConvShareViT-style models)")
        want_acc = _flag(target_opts.get("accuracy"))
        digits = _is_digit_model(graph)
        if want_acc == "true" and not digits:
            raise TargetError("accuracy=true needs a classifier of 8x8 digit images ([B,1,8,8] input) and scikit-learn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OpticalAliasingWarning)
            report = self._compile(graph, cfg, model, out_dir, target_opts, digits and want_acc != "false", digits)
        msgs = sorted({str(w.message) for w in caught if issubclass(w.category, OpticalAliasingWarning)})
        if msgs:
            report["warnings"] = msgs + report.get("warnings", [])
        write_report(report, out_dir)
        return report

    def _simulate(self, graph, cfg, plan, feeds, mode, out_dir) -> dict:
        """Physical simulation of the optical layers on the sample input: per-layer error
        against the digital conv, the first layer's plane images, and (every layer
        simulated) the end-to-end output error. ``mode``: all | sample | none | auto."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from hwgen.interp import interpret

        none = {"mode": "none", "errors": {}, "end_error": None, "images": []}
        if not plan.layers:
            return {**none, "note": "no optical layer to simulate"}
        pixels = sum(l.frames * l.frame_px ** 2 for l in plan.layers)
        if mode == "auto":
            mode = "all" if pixels <= SIM_AUTO_PIXELS else "sample"
        if mode == "none":
            return {**none, "note": "physical simulation off (simulate=false)"}
        layers = plan.layers if mode == "all" else plan.layers[:1]
        nodes = {n.name: n for n in graph.nodes}
        electronic = frozenset(d.name for d in plan.decisions if d.device == "electronics")
        t0 = time.perf_counter()
        env = interpret(graph, feeds, keep_all=True)
        rng = np.random.default_rng(cfg.sim.seed)
        errors, first = {}, None
        total = sum(l.frames for l in layers) * (2 if mode == "all" else 1)  # per-layer pass + end-to-end pass
        with Progress(TextColumn("simulating optics {task.description}"), BarColumn(), TextColumn("{task.completed}/"
                      "{task.total} frames"), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("", total=total)
            for i, l in enumerate(layers):
                node = nodes[l.name]
                bar.update(task, description=l.name)
                args = [env[x] if x else None for x in node.inputs]
                y, info = conv2d(args[0], args[1], args[2] if len(args) > 2 else None, config=cfg, rng=rng,
                                 return_info=True, keep_planes=(i == 0), name=node.name, **conv_args(node))
                ref = env[node.outputs[0]]
                errors[node.name] = float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30))
                if i == 0:
                    first = info.planes
                bar.advance(task, l.frames)
            end_err = None
            if mode == "all":
                bar.update(task, description="end to end")
                outs = run_graph(graph, feeds, cfg, rng=np.random.default_rng(cfg.sim.seed), electronic=electronic)
                o = graph.outputs[0]
                end_err = float(np.linalg.norm(outs[o] - env[o]) / max(np.linalg.norm(env[o]), 1e-30))
                bar.advance(task, plan.frames)
        images = _save_planes(first, out_dir, layers[0].name) if first else []
        t = time.perf_counter() - t0
        what = ("every optical layer" if mode == "all" else
                f"sampled: the first optical layer only ({plan.frames:,} frames, {pixels:,} frame pixels in all > "
                f"{SIM_AUTO_PIXELS:,}; --set simulate=true runs every layer)")
        return {"mode": mode, "errors": errors, "end_error": end_err, "images": images,
                "note": f"physical simulation ({what}): {t:.3g} s on this CPU"}

    def _compile(self, graph, cfg, model, out_dir, topts, do_acc, digits) -> dict:
        t_start = time.perf_counter()
        feeds, nonneg = _inputs(graph, digits)
        policy = str(topts.get("map", "auto")).lower()
        plan = plan_graph(graph, cfg, nonneg, policy=policy)
        cost = plan_cost(plan, cfg)
        double = _flag(topts.get("double_buffer"), "true") != "false"
        timeline = schedule(plan, cfg, double_buffered=double)
        serial = serial_latency(plan, cfg)
        t_cost = time.perf_counter() - t_start
        images = [Path(plot_timeline(timeline, out_dir / "timeline.png", Path(model).name, serial["latency_s"])).name]
        sim = self._simulate(graph, cfg, plan, feeds, _sim_mode(topts.get("simulate")), out_dir)
        images += sim["images"]
        errors = sim["errors"]
        # --- comparisons
        batch = int(graph.tensors[graph.inputs[0]].shape[0]) if graph.tensors[graph.inputs[0]].shape else 1
        comps = []
        if _flag(topts.get("ort"), "true") != "false":
            ort = measure_onnxruntime(graph.source, feeds, float(topts.get("ort_seconds", 0.5)))
        else:
            ort = {"name": "onnxruntime CPU (measured)", "latency_s": None, "note": "not measured (ort=false)"}
        gpu = gpu_estimate(plan, GPU_A100)
        for c in (ort, {"name": f"{gpu['name']} (estimate)", "latency_s": gpu["latency_s"], "roofline_s": gpu["roofline_s"],
                        "kernels": gpu["kernels"], "energy_j": gpu["energy_j"]}):
            c = dict(c)
            if c.get("latency_s"):
                c["speedup"] = c["latency_s"] / timeline.latency_s  # > 1: the optical system is faster
            comps.append(c)
        # --- rows
        spans = {sp.name: sp for sp in timeline.spans}
        decisions = {d.name: d for d in plan.decisions}
        layers = []
        for l, c in zip(plan.layers, cost["layers"]):
            sp = spans[l.name]
            layers.append({
                "name": l.name, "op": l.op, "latency_s": serial["layers"][l.name], "energy_j": c["energy_j"],
                "pipelined_start_s": sp.start_s, "pipelined_end_s": sp.end_s, "kind": decisions[l.name].kind,
                "mapping_reason": decisions[l.name].reason,
                "optical_time_s": c["optical_time_s"], "electronic_time_s": c["electronic_time_s"],
                "frames": l.frames, "filter_loads": l.filter_loads, "frame_px": l.frame_px,
                "tiles": l.tiles, "kernels": l.kernels, "tiles_per_frame": l.tiles_per_frame,
                "kernels_per_frame": l.kernels_per_frame, "correlation_sets": l.sets,
                "shared_kernels": l.shared_kernels, "signed_input": l.x_signed, "macs": l.macs,
                "electronic_flops": l.electronic_flops, "weight_shape": list(l.weight_shape),
                "rel_error_vs_digital": errors.get(l.name),
            })
        hosts = []
        for h, c in zip(plan.host_ops, cost["host_ops"]):
            row = {"name": h.name, "op": h.op, "flops": h.flops, "bytes": h.bytes, "latency_s": c["latency_s"],
                   "energy_j": c["energy_j"]}
            if h.name in decisions:
                row["mapping_reason"] = decisions[h.name].reason
                row["kind"] = decisions[h.name].kind
            hosts.append(row)
        st0 = stage_times(cfg, max((l.frame_px for l in plan.layers), default=512), double)
        assumptions = cfg.assumptions() + [
            {"name": "frame_period_s", "value": frame_period_s(cfg), "unit": "s",
             "source": "max(1/input modulator rate, 1/camera rate) of the devices above"},
            {"name": "latency_model", "value": "pipelined", "unit": "-",
             "source": "modelling choice: latency_s is the pipelined schedule (optical4f.pipeline: double-buffered "
                       "input modulator, read-out during the next exposure, electronics and filter loads overlapped "
                       "where the data allow); latency_serial_s overlaps nothing (upper bound)"},
            {"name": "input_modulator.double_buffered", "value": double, "unit": "-",
             "source": "assumption: the modulator controller holds the next frame while showing the current one "
                       "(--set double_buffer=false to drop it)"},
            {"name": "camera.exposure_s", "value": st0.exposure_s, "unit": "s",
             "source": "derived: worst-case frame energy (photon budget) / laser power, for the largest frame"},
            {"name": "camera.readout_s", "value": st0.readout_s, "unit": "s",
             "source": "1 / camera frame rate (the quoted rate is read-out bound; read-out overlaps the next exposure)"},
            {"name": "planck_h", "value": 6.62607015e-34, "unit": "J s", "source": "SI 2019 exact"},
            {"name": "host_flops_per_element", "value": FLOPS_PER_ELEMENT, "unit": "FLOP/element",
             "source": "counting convention of optical4f.mapping (not measured)"},
            {"name": "gpu.fp32_flops_per_s", "value": GPU_A100.fp32_flops_per_s, "unit": "FLOP/s", "source": GPU_A100.source},
            {"name": "gpu.bytes_per_s", "value": GPU_A100.bytes_per_s, "unit": "B/s", "source": GPU_A100.source},
            {"name": "gpu.power_w", "value": GPU_A100.power_w, "unit": "W", "source": GPU_A100.source},
            {"name": "gpu.launch_s", "value": GPU_A100.launch_s, "unit": "s", "source": GPU_A100.launch_source},
        ]
        budget = photon_budget(cfg, max((l.frame_px for l in plan.layers), default=512))
        n_opt = len(plan.layers)
        n_conv = len(plan.decisions)
        slow_res, slow_busy = timeline.slowest_device
        notes = [
            f"latency_s is PIPELINED ({timeline.latency_s:.4g} s): devices overlap where the data allow "
            f"(optical4f.pipeline); serial upper bound latency_serial_s = {serial['latency_s']:.4g} s; busiest device "
            f"{slow_res} ({slow_busy:.4g} s of work); timeline.png; layers' latency_s are serial",
            f"mapping (map={policy}): {n_opt} of {n_conv} Conv nodes on the optics, {n_conv - n_opt} in electronics; "
            "each Conv's mapping_reason says why",
            "speedup = other latency / optical latency (> 1: the optical system is faster)",
            f"cost model and mapping: {t_cost:.3g} s; {sim['note']}",
        ]
        if ort.get("latency_s") is None:
            notes.append(f"onnxruntime comparison missing: {ort.get('note')}")
        if budget["ratio"] < 1:
            notes.append(f"photon budget: the laser delivers {budget['ratio']:.3g} of the worst-case frame energy")
        extra = {
            "latency_model": "pipelined",
            "latency_serial_s": serial["latency_s"],
            "latency_pipelined_s": timeline.latency_s,
            "busiest_device": {"name": slow_res, "busy_s": slow_busy},
            "device_busy_s": timeline.busy_s,
            "mapping": [{"name": d.name, "device": d.device, "kind": d.kind, "reason": d.reason,
                         "optical_s": d.optical_s, "electronic_s": d.electronic_s, "frames": d.frames,
                         "filter_loads": d.filter_loads} for d in plan.decisions],
            "throughput_per_s": batch / timeline.latency_s,
            "batch": batch,
            "frames": plan.frames,
            "filter_loads": plan.filter_loads,
            "optical_time_s": cost["optical_time_s"],
            "electronic_time_s": cost["electronic_time_s"],
            "energy_breakdown_j": cost["energy_breakdown_j"],
            "comparisons": comps,
            "fidelity": {"sample": "digit test images" if digits else "standard-normal sample input",
                         "simulated": sim["mode"], "output_rel_error_vs_digital": sim["end_error"],
                         "conv_rel_error_vs_digital": errors},
            "photon_budget": budget,
            "images": images,
            "notes": notes,
        }
        if "convsharevit" in model.lower():
            gpu_c = comps[-1]
            extra["paper_claim"] = {
                "paper_speedup_over_gpu": 3.04,
                "paper_source": "Ibadulla, Chen, Reyes-Aldasoro, ConvShareViT, arXiv 2504.11517 / IEEE TNNLS 2026 "
                                "(abstract: 'theoretically up to 3.04x faster inference than GPU-based systems'; GPU, "
                                "device rates and resolution not in the stored material)",
                "hwgen_speedup_over_gpu_estimate": gpu_c.get("speedup"),
                "hwgen_energy_ratio_gpu_over_optics": (gpu_c["energy_j"] / cost["energy_j"]) if gpu_c.get("energy_j")
                else None,
                "full_comparison": "python benchmarks/convsharevit_claim.py (docs/optical4f.md, 'ConvShareViT's claim')",
            }
        if do_acc:
            import hwgen

            x, yl = digits_test_split()
            g_all = hwgen.load(graph.source, batch=len(yl)) if graph.source and os.path.isfile(graph.source) else None
            if g_all is not None:
                # --- optics-cal hook: the compiled plan's calibration (digits TRAINING images, per Conv
                # layer: DAC full scale, exposure per Fourier filter, scale), stored in the report and
                # used unchanged by the accuracy run (optical4f.calibration)
                from .evaluate import calibrated

                calibration = calibrated(g_all, cfg)
                extra["calibration"] = calibration.to_dict()
                electronic = frozenset(d.name for d in plan.decisions if d.device == "electronics")
                extra["accuracy"] = accuracy(g_all, x, yl, cfg, calibration=calibration, electronic=electronic)
                if _flag(topts.get("sweep"), "false") == "true":
                    extra["bit_depth_sweep"] = bit_depth_sweep(g_all, x, yl, cfg)
        return make_report("optical4f", model, cfg.flat(), timeline.latency_s, cost["energy_j"], layers, hosts,
                           assumptions, **extra)

