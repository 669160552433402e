"""Test-split accuracy of an exported model, run through hwgen's reference interpreter
(``hwgen.load`` + ``hwgen.interpret``, float or the accelerator's fixed point) or onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["evaluate_onnx"]


def _input_names(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits]


def _outputs_fixed(path: Path, x: np.ndarray, task: int | None, config=None) -> list[np.ndarray]:
    """The accelerator's arithmetic: the FPGA hardware graph (task bound, linear layers with
    their bias, the configuration's formats) in hwgen's bit-accurate interpreter."""
    import hwgen
    from fpga.compile.graph import hardware_graph, task_inputs
    from fpga.config import AcceleratorConfig

    config = config or AcceleratorConfig()
    g = hwgen.canonicalize(hwgen.load(str(path), batch=len(x)))
    bind = {name: task for name in task_inputs(g)} if task is not None else {}
    hg = hardware_graph(g, config, bind)
    out = hwgen.interpret(hg, {"image": x}, numerics="fixed")
    return [np.asarray(out[o]) for o in hg.outputs]


def _outputs_hwgen(path: Path, x: np.ndarray, task: int | None) -> list[np.ndarray]:
    import hwgen

    try:  # a dynamic batch: the whole split in one run
        g = hwgen.load(str(path), batch=len(x))
        batched = g.tensors[g.inputs[g.inputs.index("image")]].shape[0] == len(x)
    except hwgen.HwgenError:
        batched = False
    if not batched:
        g = hwgen.load(str(path), batch=1)
    chunks = [x] if batched else [x[i : i + 1] for i in range(len(x))]
    outs: list[list[np.ndarray]] = []
    for c in chunks:
        feeds = {"image": c}
        if task is not None:
            feeds["task"] = np.array(task, dtype=np.int64)
        r = hwgen.interpret(g, feeds)
        outs.append([np.asarray(r[o]) for o in g.outputs])
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def _outputs_ort(path: Path, x: np.ndarray, task: int | None) -> list[np.ndarray]:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = s.get_inputs()[[i.name for i in s.get_inputs()].index("image")].shape[0]
    chunks = [x] if not isinstance(batch, int) else [x[i : i + batch] for i in range(0, len(x), batch)]
    outs = []
    for c in chunks:
        feeds = {"image": c}
        if task is not None:
            feeds["task"] = np.array(task, dtype=np.int64)
        outs.append(s.run(None, feeds))
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def evaluate_onnx(path, runtime: str = "hwgen", limit: int | None = None, numerics: str = "float",
                  config=None) -> list[float]:
    """Accuracy per task on the test split; ``runtime`` is ``"hwgen"`` or ``"onnxruntime"``;
    ``numerics="fixed"`` (hwgen only) evaluates what the FPGA accelerator computes, bit for bit,
    for ``config`` (an ``fpga.config.AcceleratorConfig``; default: Edge-MoE's formats)."""
    from .data import load_split

    path = Path(path)
    _, _, xte, yte = load_split()
    if limit:
        xte, yte = xte[:limit], [y[:limit] for y in yte]
    multitask = "task" in _input_names(path)
    if numerics not in ("float", "fixed"):
        raise ValueError(f"numerics must be 'float' or 'fixed', not {numerics!r}")
    if numerics == "fixed" and runtime != "hwgen":
        raise ValueError("numerics='fixed' needs runtime='hwgen'")
    run = {"hwgen": _outputs_hwgen, "onnxruntime": _outputs_ort}[runtime]
    if numerics == "fixed":
        run = lambda p, x, t: _outputs_fixed(p, x, t, config)  # noqa: E731
    accs = []
    for t in range(len(yte) if multitask else 1):
        outs = run(path, xte, t if multitask else None)
        logits = outs[t] if multitask else outs[0]
        accs.append(float((logits.argmax(-1) == yte[t]).mean()))
    return accs
