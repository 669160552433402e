"""The reference interpreter: float semantics (ONNX's) and bit-accurate fixed point.

``interpret(graph, inputs, numerics="float")`` runs the graph with numpy; the result
matches onnxruntime. ``numerics="fixed"`` is the bit-accurate reference that the
hardware must match: every float tensor carries a :class:`~hwgen.fixedpoint.FixedFormat`
(:func:`hwgen.passes.assign_formats` sets Edge-MoE's defaults where none is set), graph
inputs and constants are quantized to their formats, and each op either runs its fixed
kernel (:data:`~hwgen.interp.registry.FIXED_OPS`) or its float kernel followed by
quantization of the outputs.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import HwgenError, UnsupportedOpError
from ..fixedpoint import quantize
from ..ir import Graph, Node
from . import fused, linear, moe, onnx_attention, ops  # noqa: F401  (fill the registries)
from .registry import FIXED_OPS, FLOAT_OPS, check_alloc, supported_ops

__all__ = ["interpret", "run_node", "supported_ops"]


def run_node(node: Node, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    """Run one node with float semantics."""
    fn = FLOAT_OPS.get(f"{node.domain}.{node.op}" if node.domain else node.op)
    if fn is None:
        raise UnsupportedOpError(
            f"node {node.name!r}: op {node.op!r} is not supported; supported ops: {', '.join(sorted(FLOAT_OPS))}"
        )
    try:
        out = fn(node, inputs, opset)
    except HwgenError:
        raise
    except Exception as e:  # a numpy error inside an op is the model's fault, say where
        raise UnsupportedOpError(f"node {node.name!r} ({node.op}) failed: {type(e).__name__}: {e}") from e
    return list(out)


def _run_node_fixed(graph: Graph, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    in_fmts = [graph.tensors[i].fmt if i else None for i in node.inputs]
    out_fmts = [graph.tensors[o].fmt if o in graph.tensors else None for o in node.outputs]
    fn = FIXED_OPS.get(f"{node.domain}.{node.op}" if node.domain else node.op)
    if fn is not None:
        outs = list(fn(node, inputs, in_fmts, out_fmts, graph.opset))
    else:
        from ..numerics.fallback import fallback_reason, warn_fallback

        why = fallback_reason(node, out_fmts)
        if why is not None:
            warn_fallback(node, why, out_fmts)
        outs = run_node(node, inputs, graph.opset)
    return [quantize(o, f) if f is not None and o is not None else o for o, f in zip(outs, out_fmts)]


def interpret(
    graph: Graph,
    inputs: Mapping[str, np.ndarray],
    numerics: str = "float",
    *,
    keep_all: bool = False,
) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``inputs`` (graph-input name -> array).

    Parameters
    ----------
    numerics : "float" or "fixed"
        ``"float"``: ONNX semantics in the model's dtypes. ``"fixed"``: the bit-accurate
        fixed-point reference; outputs are float64 arrays of exactly representable values.
    keep_all : bool
        Return every intermediate tensor too, not only the graph outputs.

    Returns
    -------
    dict mapping output name (as in the ONNX graph) to array.
    """
    if numerics not in ("float", "fixed"):
        raise ValueError(f"numerics must be 'float' or 'fixed', not {numerics!r}")
    if numerics == "fixed":
        from .. import numerics as _fixed_kernels  # noqa: F401  (registers FIXED_OPS)
        from ..passes.formats import assign_formats

        if any(t.fmt is None and np.issubdtype(t.dtype, np.floating) for t in graph.tensors.values()):
            graph = assign_formats(graph.copy())
    env: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        if name not in inputs:
            raise HwgenError(f"missing input {name!r}; the graph takes {graph.inputs}")
        t = graph.tensors[name]
        arr = np.asarray(inputs[name])
        if tuple(arr.shape) != tuple(t.shape) and all(d >= 0 for d in t.shape):
            raise HwgenError(f"input {name!r} has shape {tuple(arr.shape)}, the graph expects {tuple(t.shape)}")
        arr = arr.astype(t.dtype, copy=False)
        if numerics == "fixed" and t.fmt is not None:
            arr = quantize(arr, t.fmt)
        env[name] = arr
    for name, t in graph.tensors.items():
        if t.data is not None and name not in env:
            env[name] = quantize(t.data, t.fmt) if numerics == "fixed" and t.fmt is not None else t.data
    last_use: dict[str, int] = {}
    if not keep_all:
        for idx, n in enumerate(graph.nodes):
            for i in n.inputs:
                last_use[i] = idx
    keep = set(graph.outputs)
    for idx, node in enumerate(graph.nodes):
        args = [env[i] if i else None for i in node.inputs]
        if numerics == "fixed":
            outs = _run_node_fixed(graph, node, args)
        else:
            outs = run_node(node, args, graph.opset)
        for name, val in zip(node.outputs, outs):
            if name:
                env[name] = val
        if not keep_all:  # free what no later node reads
            for i in node.inputs:
                if i and last_use.get(i) == idx and i not in keep and graph.tensors.get(i) is not None and not graph.tensors[i].is_const:
                    env.pop(i, None)
    if keep_all:
        return env
    return {o: env[o] for o in graph.outputs}
