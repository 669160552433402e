"""Helpers shared by the op implementations."""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedOpError

__all__ = ["fail", "attr_or_input", "norm_axes", "np_dtype"]


def fail(node, why: str):
    raise UnsupportedOpError(f"node {node.name!r} ({node.op}): {why}")


def attr_or_input(node, inputs, attr: str, index: int):
    """An operand that moved from an attribute to an input across opsets (axes, split...)."""
    if len(inputs) > index and inputs[index] is not None:
        return [int(v) for v in np.asarray(inputs[index]).reshape(-1)]
    v = node.attrs.get(attr)
    if v is None:
        return None
    return [int(a) for a in np.asarray(v).reshape(-1)]


def norm_axes(axes, rank: int, node=None) -> list[int]:
    out = []
    for a in axes:
        a = int(a)
        if not -rank <= a < max(rank, 1):
            if node is not None:
                fail(node, f"axis {a} out of range for rank {rank}")
            raise ValueError(f"axis {a} out of range for rank {rank}")
        out.append(a % rank if rank else 0)
    return out


def np_dtype(onnx_type: int, node=None):
    from onnx import helper

    try:
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(int(onnx_type)))
    except Exception:
        if node is not None:
            fail(node, f"element type {onnx_type} is not supported")
        raise
    if dt.kind == "V" or dt.names is not None:  # float8/bfloat16/int4 custom dtypes
        if node is not None:
            fail(node, f"element type {onnx_type} ({dt}) is not supported")
    return dt
