"""Run an IR graph with its Conv nodes on the simulated optics, everything else digital.

:func:`run_graph` walks ``graph.nodes`` itself: Conv nodes go through
:func:`optical4f.conv2d` (the configured preset), every other node through the float
reference interpreter (:func:`hwgen.interp.run_node`). :func:`accuracy` compares the
digital and the optical model on a labelled set; :func:`bit_depth_sweep` repeats it
over input-modulator and camera bit depths.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from hwgen.errors import TargetError
from hwgen.interp import run_node
from hwgen.ir import Graph, Node

from .calibration import Calibration, calibrate, calibration_images
from .conv import ConvInfo, conv2d
from .devices import OpticalConfig, load_config

__all__ = ["conv_args", "run_graph", "calibrated", "accuracy", "bit_depth_sweep", "digits_test_split"]


def conv_args(node: Node) -> dict:
    """conv2d keyword arguments from an ONNX Conv node's attributes."""
    a = node.attrs
    auto = a.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    ks = a.get("kernel_shape")
    if auto in ("NOTSET", ""):
        pads = tuple(a.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4:
            raise TargetError(f"node {node.name!r} (Conv): only 2-D convolutions map to the 4f system (pads {pads})")
        padding = pads
    elif auto == "VALID":
        padding = "valid"
    elif auto == "SAME_UPPER" and all(s == 1 for s in a.get("strides", (1, 1))):
        padding = "same"
    else:
        raise TargetError(f"node {node.name!r} (Conv): auto_pad={auto} with strides is not supported by optical4f")
    if ks is not None and len(ks) != 2:
        raise TargetError(f"node {node.name!r} (Conv): only 2-D convolutions map to the 4f system")
    return {"stride": tuple(a.get("strides", (1, 1))), "dilation": tuple(a.get("dilations", (1, 1))),
            "groups": int(a.get("group", 1)), "padding": padding}


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray], config: OpticalConfig | str | None = None,
              rng: np.random.Generator | None = None, infos: dict | None = None, keep: bool = False,
              planes_for: str | None = None, electronic=frozenset(),
              calibration: Calibration | None = None) -> dict[str, np.ndarray]:
    """Outputs of ``graph`` with its Conv nodes computed optically.

    ``calibration``: the compiled plan's :class:`~optical4f.calibration.Calibration`, used
    unchanged (None: each Conv calibrates on the inputs it is given -- an oracle, for
    tests of the optics only). ``infos`` (if a dict) receives node name ->
    :class:`ConvInfo`; ``keep`` returns every tensor; ``planes_for``: the Conv node whose
    first frame's planes are kept in its info; ``electronic``: names of Conv nodes the
    mapper put in electronics (run digitally)."""
    cfg = config if isinstance(config, OpticalConfig) else load_config(config)
    rng = rng if rng is not None else np.random.default_rng(cfg.sim.seed)
    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in inputs:
            raise TargetError(f"missing input {name!r}; the graph takes {graph.inputs}")
        env[name] = np.asarray(inputs[name]).astype(graph.tensors[name].dtype, copy=False)
    for name, t in graph.tensors.items():
        if t.data is not None and name not in env:
            env[name] = t.data
    for node in graph.nodes:
        args = [env[i] if i else None for i in node.inputs]
        if node.op == "Conv" and not node.domain and node.name not in electronic:
            x, w = args[0], args[1]
            if x.ndim != 4:
                raise TargetError(f"node {node.name!r} (Conv): only 2-D convolutions map to the 4f system")
            b = args[2] if len(args) > 2 else None
            lcal = calibration.layer(node.name) if calibration is not None else None
            y, info = conv2d(x, w, b, config=cfg, rng=rng, return_info=True, keep_planes=(node.name == planes_for),
                             name=node.name, calibration=lcal, **conv_args(node))
            if infos is not None:
                infos[node.name] = info
            outs = [y.astype(x.dtype, copy=False)]
        else:
            outs = run_node(node, args, graph.opset)
        for o, v in zip(node.outputs, outs):
            if o:
                env[o] = v
    return env if keep else {o: env[o] for o in graph.outputs}


def digits_test_split():
    """(x_test, digit labels) of the tiny models' fixed digits split (needs scikit-learn)."""
    from models.data import load_split

    _, _, xte, yte = load_split()
    return xte, yte[0]


def calibrated(graph: Graph, config: OpticalConfig | str | None = None, images: int | None = None) -> Calibration:
    """The calibration of ``graph`` on the first ``images`` (default: the graph's batch)
    digits TRAINING images; ``graph`` must take that many images."""
    cfg = config if isinstance(config, OpticalConfig) else load_config(config)
    b = int(graph.tensors[graph.inputs[0]].shape[0])
    return calibrate(graph, calibration_images(images or b), cfg)


def accuracy(graph: Graph, x: np.ndarray, y: np.ndarray, config: OpticalConfig | str | None = None,
             seed: int = 0, calibration: Calibration | None = None, seeds: int = 1,
             electronic=frozenset()) -> dict:
    """Top-1 accuracy digital (float interpreter) vs optical of a one-input classifier.

    ``graph`` must have been loaded with the batch size ``len(x)``. ``calibration``: the
    compiled plan's (default: calibrated on ``len(x)`` digits training images, never on
    ``x``). ``seeds``: noise seeds ``seed .. seed + seeds - 1``; the figures are means over
    them, per-seed values under ``per_seed``. ``electronic``: Conv nodes the mapper put in
    electronics (computed digitally, as the compiled plan runs them)."""
    from hwgen.interp import interpret

    name, out = graph.inputs[0], graph.outputs[0]
    digital = interpret(graph, {name: x})[out]
    cfg = config if isinstance(config, OpticalConfig) else load_config(config)
    cal = calibration if calibration is not None else calibrate(graph, calibration_images(len(x)), cfg)
    acc_d = float((digital.argmax(-1) == y).mean())
    rows = []
    for s in range(seed, seed + seeds):
        infos: dict[str, ConvInfo] = {}
        optical = run_graph(graph, {name: x}, cfg, rng=np.random.default_rng(s), infos=infos, calibration=cal,
                            electronic=electronic)[out]
        acc_o = float((optical.argmax(-1) == y).mean())
        rows.append({"seed": s, "optical_accuracy": acc_o, "accuracy_drop_points": 100.0 * (acc_d - acc_o),
                     "logits_rel_error": float(np.linalg.norm(optical - digital) / np.linalg.norm(digital)),
                     "agreement": float((digital.argmax(-1) == optical.argmax(-1)).mean()),
                     "frames": int(sum(i.frames for i in infos.values()))})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("optical_accuracy", "accuracy_drop_points",
                                                               "logits_rel_error", "agreement")}
    return {"preset": cfg.preset, "images": int(len(y)), "digital_accuracy": acc_d, **mean,
            "frames": rows[0]["frames"], "seeds": seeds, "calibration_images": cal.images,
            "calibration_source": cal.source, "per_seed": rows}


def bit_depth_sweep(graph: Graph, x: np.ndarray, y: np.ndarray, base: OpticalConfig | str | None = None,
                    input_bits=(2, 3, 4, 6, 8), camera_bits=(4, 6, 8, 10, 12), seeds: int = 1) -> list[dict]:
    """Accuracy when the input modulator's bit depth varies (camera as in ``base``) and when
    the camera's does (input as in ``base``); each configuration calibrated on training
    images (the calibration depends on the bit depths), noise seeds ``0 .. seeds - 1``."""
    cfg = base if isinstance(base, OpticalConfig) else load_config(base)
    rows = []
    for b in input_bits:
        r = accuracy(graph, x, y, cfg.replace(input_modulator={"bits": b}), seeds=seeds)
        rows.append({"swept": "input_modulator.bits", "bits": b, **r})
    for b in camera_bits:
        r = accuracy(graph, x, y, cfg.replace(camera={"bits": b}), seeds=seeds)
        rows.append({"swept": "camera.bits", "bits": b, **r})
    return rows
