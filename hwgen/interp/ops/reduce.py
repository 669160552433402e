"""Reductions and arg-reductions: ReduceMean/Max/Min/Sum/Prod/L2/SumSquare, ArgMax/ArgMin,
TopK, CumSum."""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._util import attr_or_input, fail, norm_axes

# opset from which `axes` is an input rather than an attribute
_AXES_INPUT_FROM = {"ReduceSum": 13}
_DEFAULT_AXES_INPUT_FROM = 18


def _reduce(fn, post=None):
    def run(node, inputs, opset):
        x = inputs[0]
        from_opset = _AXES_INPUT_FROM.get(node.op, _DEFAULT_AXES_INPUT_FROM)
        axes = attr_or_input(node, inputs, "axes", 1) if opset >= from_opset else attr_or_input(node, [], "axes", 1)
        if axes is None and opset < from_opset:
            axes = node.attrs.get("axes")
        keep = bool(int(node.attrs.get("keepdims", 1)))
        if not axes:
            if int(node.attrs.get("noop_with_empty_axes", 0)):
                y = x if post is None else post(x)
                return (np.asarray(y).astype(x.dtype, copy=False),)
            axes = list(range(x.ndim))
        ax = tuple(norm_axes(axes, x.ndim, node))
        if x.size == 0 and fn in (np.max, np.min):
            return (_empty_extremum(x, ax, keep, fn is np.max),)
        y = fn(x, axis=ax, keepdims=keep)
        if post is not None:
            y = post(y)
        return (np.asarray(y).astype(x.dtype, copy=False),)

    return run


def _empty_extremum(x: np.ndarray, axes: tuple[int, ...], keep: bool, is_max: bool) -> np.ndarray:
    """ReduceMax/ReduceMin over an empty set: -inf/+inf, or the type's min/max (bool:
    False/True), as ONNX defines it."""
    shape = [1 if a in axes else d for a, d in enumerate(x.shape)] if keep else [d for a, d in enumerate(x.shape) if a not in axes]
    if x.dtype == np.bool_:
        value = not is_max
    elif np.issubdtype(x.dtype, np.floating):
        value = -np.inf if is_max else np.inf
    else:
        info = np.iinfo(x.dtype)
        value = info.min if is_max else info.max
    return np.full(shape, value, dtype=x.dtype)


register("ReduceMean")(_reduce(np.mean))
register("ReduceMax")(_reduce(np.max))
register("ReduceMin")(_reduce(np.min))
register("ReduceSum")(_reduce(np.sum))
register("ReduceProd")(_reduce(np.prod))
register("ReduceSumSquare")(_reduce(lambda x, axis, keepdims: np.sum(np.square(x), axis=axis, keepdims=keepdims)))
register("ReduceL2")(_reduce(lambda x, axis, keepdims: np.sqrt(np.sum(np.square(x.astype(np.float64)), axis=axis, keepdims=keepdims))))
register("ReduceL1")(_reduce(lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims)))
register("ReduceLogSumExp")(
    _reduce(lambda x, axis, keepdims: np.log(np.sum(np.exp(x.astype(np.float64)), axis=axis, keepdims=keepdims)))
)


def _arg(fn):
    def run(node, inputs, opset):
        x = inputs[0]
        axis = norm_axes([int(node.attrs.get("axis", 0))], x.ndim, node)[0]
        keep = bool(int(node.attrs.get("keepdims", 1)))
        if int(node.attrs.get("select_last_index", 0)):
            y = x.shape[axis] - 1 - fn(np.flip(x, axis=axis), axis=axis)
        else:
            y = fn(x, axis=axis)
        y = np.asarray(y, dtype=np.int64)
        if keep:
            y = np.expand_dims(y, axis)
        return (y,)

    return run


register("ArgMax")(_arg(np.argmax))
register("ArgMin")(_arg(np.argmin))


@register("TopK")
def topk(node, inputs, opset):
    """Ties: the lower index comes first (ONNX's rule), for largest and smallest."""
    x = inputs[0]
    k = int(np.asarray(inputs[1]).reshape(-1)[0]) if len(inputs) > 1 and inputs[1] is not None else int(node.attrs["k"])
    axis = norm_axes([int(node.attrs.get("axis", -1))], x.ndim, node)[0]
    largest = int(node.attrs.get("largest", 1))
    if k < 0 or k > x.shape[axis]:
        fail(node, f"k={k} is outside [0, {x.shape[axis]}]")
    key = -x if largest else x
    if np.issubdtype(x.dtype, np.unsignedinteger) and largest:
        key = -(x.astype(np.int64))
    idx = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(idx, np.arange(k), axis=axis)
    vals = np.take_along_axis(x, idx, axis=axis)
    return vals, idx.astype(np.int64)


@register("CumSum")
def cumsum(node, inputs, opset):
    x, axis = inputs
    axis = norm_axes([int(np.asarray(axis).reshape(-1)[0])], x.ndim, node)[0]
    xs = np.flip(x, axis) if int(node.attrs.get("reverse", 0)) else x
    y = np.cumsum(xs, axis=axis)
    if int(node.attrs.get("exclusive", 0)):
        y = y - xs
    if int(node.attrs.get("reverse", 0)):
        y = np.flip(y, axis)
    return (y.astype(x.dtype, copy=False),)
