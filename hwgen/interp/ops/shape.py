"""Shape and data-movement ops, constants and casts."""

from __future__ import annotations

import numpy as np

from ..registry import check_alloc, register
from ._util import attr_or_input, fail, norm_axes, np_dtype


@register("Identity")
def identity(node, inputs, opset):
    return (inputs[0],)


@register("Dropout")
def dropout(node, inputs, opset):
    """Inference (or training with ratio 0): identity; the mask output is all True."""
    x = inputs[0]
    if len(inputs) > 2 and inputs[2] is not None and bool(np.asarray(inputs[2]).reshape(-1)[0]):
        ratio = float(np.asarray(inputs[1]).reshape(-1)[0]) if len(inputs) > 1 and inputs[1] is not None else 0.5
        if ratio != 0.0:
            fail(node, f"training_mode=True with ratio {ratio} drops at random; only inference is supported")
    return x, np.ones(x.shape, dtype=bool)


@register("Reshape")
def reshape(node, inputs, opset):
    x, shape = inputs[0], [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
    allowzero = int(node.attrs.get("allowzero", 0))
    new = []
    for i, d in enumerate(shape):
        if d == 0 and not allowzero:
            if i >= x.ndim:
                fail(node, f"shape {shape} copies dimension {i} of a rank-{x.ndim} input")
            new.append(x.shape[i])
        else:
            new.append(d)
    if new.count(-1) > 1:
        fail(node, f"shape {shape} has more than one -1")
    try:
        return (x.reshape(new),)
    except ValueError:
        fail(node, f"cannot reshape {list(x.shape)} to {shape}")


@register("Transpose")
def transpose(node, inputs, opset):
    x = inputs[0]
    perm = node.attrs.get("perm")
    if perm is not None and sorted(int(p) % max(x.ndim, 1) for p in perm) != list(range(x.ndim)):
        fail(node, f"perm {perm} is not a permutation of {x.ndim} axes")
    return (np.transpose(x, perm),)


@register("Flatten")
def flatten(node, inputs, opset):
    x = inputs[0]
    axis = int(node.attrs.get("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        fail(node, f"axis {axis} out of range")
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return (x.reshape(lead, -1) if x.size else x.reshape(lead, int(np.prod(x.shape[axis:], dtype=np.int64))),)


@register("Squeeze")
def squeeze(node, inputs, opset):
    x = inputs[0]
    axes = attr_or_input(node, inputs, "axes", 1)
    if axes is None:
        return (np.squeeze(x),)
    ax = norm_axes(axes, x.ndim, node)
    if any(x.shape[a] != 1 for a in ax):
        fail(node, f"cannot squeeze axes {axes} of shape {list(x.shape)}")
    return (np.squeeze(x, axis=tuple(ax)),)


@register("Unsqueeze")
def unsqueeze(node, inputs, opset):
    x = inputs[0]
    axes = attr_or_input(node, inputs, "axes", 1)
    rank = x.ndim + len(axes)
    ax = sorted(norm_axes(axes, rank, node))
    if len(set(ax)) != len(ax):
        fail(node, f"repeated axes {axes}")
    y = x
    for a in ax:
        y = np.expand_dims(y, a)
    return (y,)


@register("Concat")
def concat(node, inputs, opset):
    xs = [x for x in inputs if x is not None]
    axis = int(node.attrs["axis"])
    axis = norm_axes([axis], xs[0].ndim, node)[0]
    return (np.concatenate(xs, axis=axis),)


@register("Split")
def split(node, inputs, opset):
    x = inputs[0]
    axis = norm_axes([int(node.attrs.get("axis", 0))], x.ndim, node)[0]
    sizes = attr_or_input(node, inputs, "split", 1)
    n_out = len(node.outputs)
    if sizes is None:
        num = int(node.attrs.get("num_outputs", n_out))
        length = x.shape[axis]
        chunk = -(-length // num)
        sizes = [chunk] * (length // chunk) + ([length % chunk] if length % chunk else [])
        if len(sizes) != num:
            sizes = [chunk] * (num - 1) + [length - chunk * (num - 1)]
    if sum(sizes) != x.shape[axis]:
        fail(node, f"split sizes {sizes} do not add up to {x.shape[axis]}")
    idx = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, idx, axis=axis))


@register("Slice")
def slice_(node, inputs, opset):
    x = inputs[0]
    starts = [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
    ends = [int(v) for v in np.asarray(inputs[2]).reshape(-1)]
    axes = [int(v) for v in np.asarray(inputs[3]).reshape(-1)] if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
    steps = [int(v) for v in np.asarray(inputs[4]).reshape(-1)] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, norm_axes(axes, x.ndim, node), steps):
        if st == 0:
            fail(node, "step 0")
        dim = x.shape[a]
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            e = None if e == -1 else e
        sl[a] = slice(s, e, st)
    return (x[tuple(sl)],)


@register("Expand")
def expand(node, inputs, opset):
    x, shape = inputs[0], [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
    try:
        out = np.broadcast_shapes(x.shape, tuple(shape))
    except ValueError:
        fail(node, f"cannot expand {list(x.shape)} to {shape}")
    check_alloc(out, x.itemsize, what=f"node {node.name!r} (Expand) output")
    return (np.broadcast_to(x, out).copy(),)


@register("Tile")
def tile(node, inputs, opset):
    x, reps = inputs[0], [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
    check_alloc([d * r for d, r in zip(x.shape, reps)], x.itemsize, what=f"node {node.name!r} (Tile) output")
    return (np.tile(x, reps),)


@register("Pad")
def pad(node, inputs, opset):
    x = inputs[0]
    mode = node.attrs.get("mode", "constant")
    if len(inputs) > 1 and inputs[1] is not None:
        pads = [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
    else:
        pads = [int(v) for v in node.attrs.get("pads", [])]
    value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else node.attrs.get("value", 0.0)
    value = np.asarray(value).reshape(-1)[0] if np.size(value) else 0
    axes = [int(v) for v in np.asarray(inputs[3]).reshape(-1)] if len(inputs) > 3 and inputs[3] is not None else list(range(x.ndim))
    axes = norm_axes(axes, x.ndim, node)
    n = len(axes)
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        width[a] = (pads[i], pads[i + n])
    if any(b < 0 or e < 0 for b, e in width):
        # negative pads crop
        sl = tuple(slice(max(-b, 0), x.shape[k] - max(-e, 0)) for k, (b, e) in enumerate(width))
        x = x[sl]
        width = [(max(b, 0), max(e, 0)) for b, e in width]
    check_alloc([d + b + e for d, (b, e) in zip(x.shape, width)], x.itemsize, what=f"node {node.name!r} (Pad) output")
    if mode == "constant":
        return (np.pad(x, width, mode="constant", constant_values=value).astype(x.dtype, copy=False),)
    if mode in ("reflect", "edge"):
        return (np.pad(x, width, mode=mode),)
    if mode == "wrap":
        return (np.pad(x, width, mode="wrap"),)
    fail(node, f"mode {mode!r} is not supported")


@register("Shape")
def shape(node, inputs, opset):
    s = np.array(inputs[0].shape, dtype=np.int64)
    rank = len(s)
    start = int(node.attrs.get("start", 0))
    end = int(node.attrs.get("end", rank))
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return (s[start:end],)


@register("Size")
def size(node, inputs, opset):
    return (np.array(inputs[0].size, dtype=np.int64),)


@register("ConstantOfShape")
def constant_of_shape(node, inputs, opset):
    shape = [int(v) for v in np.asarray(inputs[0]).reshape(-1)]
    value = node.attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    check_alloc(shape, value.dtype.itemsize, what=f"node {node.name!r} (ConstantOfShape) output")
    return (np.full(shape, value[0], dtype=value.dtype),)


@register("Range")
def range_(node, inputs, opset):
    start, limit, delta = (np.asarray(v).reshape(-1)[0] for v in inputs)
    if delta == 0:
        fail(node, "delta 0")
    n = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    check_alloc([n], np.asarray(start).itemsize, what=f"node {node.name!r} (Range) output")
    dtype = np.asarray(inputs[0]).dtype
    # output[i] = start + i * delta, in T; float16 from opset 27 on in stash_type (float)
    if dtype == np.float16:
        acc = np.float32 if opset >= 27 and int(node.attrs.get("stash_type", 1)) == 1 else np.float16
        i = np.arange(n).astype(acc)
        return ((acc(start) + i * acc(delta)).astype(dtype),)
    return ((start + np.arange(n) * delta).astype(dtype),)


@register("Cast")
def cast(node, inputs, opset):
    x = inputs[0]
    to = np_dtype(node.attrs["to"], node)
    if x.dtype.kind in "US" or to.kind in "US":
        if to.kind in "US":
            return (x.astype(str).astype(object) if x.dtype == object else x.astype(str),)
        return (x.astype(np.float64).astype(to),)
    if np.issubdtype(x.dtype, np.floating) and np.issubdtype(to, np.integer):
        with np.errstate(invalid="ignore"):
            return (np.trunc(x).astype(to),)
    return (x.astype(to),)


@register("CastLike")
def cast_like(node, inputs, opset):
    x, like = inputs[0], inputs[1]
    if np.issubdtype(x.dtype, np.floating) and np.issubdtype(like.dtype, np.integer):
        return (np.trunc(x).astype(like.dtype),)
    return (x.astype(like.dtype),)


@register("Constant")
def constant(node, inputs, opset):
    a = node.attrs
    if "value" in a:
        return (np.asarray(a["value"]),)
    if "value_float" in a:
        return (np.array(a["value_float"], dtype=np.float32),)
    if "value_floats" in a:
        return (np.array(a["value_floats"], dtype=np.float32),)
    if "value_int" in a:
        return (np.array(a["value_int"], dtype=np.int64),)
    if "value_ints" in a:
        return (np.array(a["value_ints"], dtype=np.int64),)
    if "value_string" in a:
        return (np.array(a["value_string"], dtype=object),)
    if "value_strings" in a:
        return (np.array(a["value_strings"], dtype=object),)
    fail(node, f"attributes {sorted(a)} are not supported")


@register("OneHot")
def one_hot(node, inputs, opset):
    idx, depth, values = inputs
    depth = int(np.asarray(depth).reshape(-1)[0])
    axis = int(node.attrs.get("axis", -1))
    rank = idx.ndim + 1
    axis = norm_axes([axis], rank, node)[0]
    check_alloc(list(idx.shape) + [depth], np.asarray(values).itemsize, what=f"node {node.name!r} (OneHot) output")
    i = np.asarray(idx).astype(np.int64)
    i = np.where(i < 0, i + depth, i)
    hot = np.arange(depth) == i[..., None]
    y = np.where(hot, values[1], values[0]).astype(values.dtype)
    return (np.moveaxis(y, -1, axis),)
