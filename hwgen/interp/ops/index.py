"""Indexing ops: Gather, GatherElements, GatherND, ScatterND, ScatterElements, NonZero."""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._util import fail, norm_axes


def _check_index(node, idx, dim):
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        fail(node, f"index out of range [-{dim}, {dim})")


@register("Gather")
def gather(node, inputs, opset):
    x, idx = inputs
    axis = norm_axes([int(node.attrs.get("axis", 0))], x.ndim, node)[0]
    idx = np.asarray(idx).astype(np.int64)
    _check_index(node, idx, x.shape[axis])
    return (np.take(x, idx, axis=axis),)


@register("GatherElements")
def gather_elements(node, inputs, opset):
    x, idx = inputs
    axis = norm_axes([int(node.attrs.get("axis", 0))], x.ndim, node)[0]
    idx = np.asarray(idx).astype(np.int64)
    _check_index(node, idx, x.shape[axis])
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return (np.take_along_axis(x, idx, axis=axis),)


@register("GatherND")
def gather_nd(node, inputs, opset):
    data, idx = inputs
    b = int(node.attrs.get("batch_dims", 0))
    idx = np.asarray(idx).astype(np.int64)
    k = idx.shape[-1]
    if k > data.ndim - b:
        fail(node, f"index depth {k} exceeds data rank {data.ndim} - batch_dims {b}")
    batch_shape = data.shape[:b]
    nb = int(np.prod(batch_shape, dtype=np.int64))
    d = data.reshape((nb,) + data.shape[b:])
    ix = idx.reshape((nb, -1, k))
    dims = np.array(data.shape[b : b + k])
    if ix.size and (np.any(ix < -dims) or np.any(ix >= dims)):
        fail(node, "index out of range")
    ix = np.where(ix < 0, ix + dims, ix)
    out = np.stack([d[i][tuple(ix[i].T)] for i in range(nb)]) if nb else np.empty((0,) + d.shape[1 + k :], d.dtype)
    return (out.reshape(idx.shape[:-1] + data.shape[b + k :]),)


def _reducer(node):
    red = node.attrs.get("reduction", "none")
    ufunc = {"none": None, "add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}.get(red, "bad")
    if ufunc == "bad":
        fail(node, f"reduction {red!r} is not supported")
    return ufunc


@register("ScatterND")
def scatter_nd(node, inputs, opset):
    data, idx, upd = inputs
    ufunc = _reducer(node)
    out = data.copy()
    idx = np.asarray(idx).astype(np.int64)
    k = idx.shape[-1]
    dims = np.array(data.shape[:k])
    flat_idx = idx.reshape(-1, k)
    if flat_idx.size and (np.any(flat_idx < -dims) or np.any(flat_idx >= dims)):
        fail(node, "index out of range")
    flat_idx = np.where(flat_idx < 0, flat_idx + dims, flat_idx)
    flat_upd = upd.reshape((flat_idx.shape[0],) + data.shape[k:])
    if ufunc is None:
        for i in range(flat_idx.shape[0]):
            out[tuple(flat_idx[i])] = flat_upd[i]
    else:
        ufunc.at(out, tuple(flat_idx.T), flat_upd)
    return (out,)


@register("ScatterElements", "Scatter")
def scatter_elements(node, inputs, opset):
    data, idx, upd = inputs
    ufunc = _reducer(node)
    axis = norm_axes([int(node.attrs.get("axis", 0))], data.ndim, node)[0]
    idx = np.asarray(idx).astype(np.int64)
    _check_index(node, idx, data.shape[axis])
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    out = data.copy()
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = idx
    if ufunc is None:
        out[tuple(grid)] = upd
    else:
        ufunc.at(out, tuple(np.broadcast_arrays(*grid)), upd)
    return (out,)


@register("NonZero")
def nonzero(node, inputs, opset):
    x = inputs[0]
    if x.ndim == 0:
        fail(node, "NonZero of a scalar is not supported")
    return (np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1),)
