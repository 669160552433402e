"""Export a model to one self-contained ONNX file.

``export_onnx(model, path, opset=18, dynamo=True, dynamic_batch=True)``

* ``dynamo=True`` (default) uses ``torch.onnx.export(..., dynamo=True,
  external_data=False)``; ``dynamo=False`` the TorchScript exporter. Both give one file
  with the weights inside (no ``.data`` side file).
* Graph inputs are named ``image`` (float32 ``[batch, C, H, W]``) and, for multi-task
  models, ``task`` (int64 scalar); outputs ``logits`` or ``logits_task0``, ``logits_task1``.
* The batch dimension is dynamic (named ``batch``) unless ``dynamic_batch=False``.
* For the M3ViT the MoE formulation is the model's current ``moe`` mode (``dense`` or
  ``sparse``; set it with ``model.set_moe_mode``).
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch

__all__ = ["export_onnx", "DEFAULT_OPSET"]

DEFAULT_OPSET = 18


class _Wrap1(torch.nn.Module):
    """Gives the exporters a forward with named inputs whose outputs are a flat tuple."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, image):
        out = self.m(image)
        return out if isinstance(out, tuple) else (out,)


class _Wrap2(_Wrap1):
    def forward(self, image, task):
        return tuple(self.m(image, task))


def _wrap(model):
    return (_Wrap2 if "task" in model.input_names else _Wrap1)(model)


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = DEFAULT_OPSET, dynamo: bool = True,
                dynamic_batch: bool = True, verbose: bool = False) -> Path:
    """Write ``model`` to ``path`` as one ONNX file and return the path (see module doc)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # batch 2 for a dynamic batch (torch.export specialises a size-1 dimension)
    args = model.example_inputs(2 if dynamic_batch else 1)
    in_names = list(model.input_names)
    out_names = list(model.output_names)
    tmp = path.with_name(f".{path.name}.tmp")
    sink = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), redirect_stdout(sink), redirect_stderr(sink if not verbose else None):
        warnings.simplefilter("ignore")
        if dynamo:
            dyn = None
            if dynamic_batch:
                b = torch.export.Dim("batch", min=1, max=4096)
                dyn = tuple({0: b} if n == "image" else None for n in in_names)
            onnx_prog = torch.onnx.export(
                _wrap(model), args, dynamo=True, opset_version=opset, input_names=in_names,
                output_names=out_names, dynamic_shapes=dyn, external_data=False, verbose=False,
                optimize=True,
            )
            onnx_prog.save(str(tmp), external_data=False)
        else:
            dyn_axes = {"image": {0: "batch"}} if dynamic_batch else None
            if dynamic_batch:
                for o in out_names:
                    dyn_axes[o] = {0: "batch"}
            torch.onnx.export(
                _wrap(model), args, str(tmp), dynamo=False, opset_version=opset, input_names=in_names,
                output_names=out_names, dynamic_axes=dyn_axes, do_constant_folding=True,
            )
    m = onnx.load(str(tmp))
    # the weights must be inside the file
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer):
        raise RuntimeError("exporter wrote external data")
    for n in m.graph.node:  # the exporter's Python stack traces name files of this machine
        keep = [p for p in n.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        if len(keep) != len(n.metadata_props):
            del n.metadata_props[:]
            n.metadata_props.extend(keep)
    onnx.checker.check_model(m)
    onnx.save(m, str(tmp))
    os.replace(tmp, path)
    for side in path.parent.glob(f".{path.name}.tmp*"):
        side.unlink()
    return path
