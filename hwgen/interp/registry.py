"""Registry of reference op implementations, one function per ONNX op type.

Keys are ONNX op types (``"MatMul"``) or, for hwgen's own fused ops, ``"hwgen.<Op>"``
(``"hwgen.Attention"``, ``"hwgen.MoE"``; nodes carry ``domain="hwgen"``).

An implementation has the signature::

    def _run(node: Node, inputs: list[np.ndarray | None], opset: int) -> tuple[np.ndarray, ...]

``inputs`` holds one array per node input, ``None`` for an omitted optional input;
attributes are in ``node.attrs`` as plain Python values (ints, floats, strings, lists,
numpy arrays for tensor attributes). It returns one array per node output (fewer is fine
when trailing optional outputs are unused). It raises
:class:`hwgen.errors.UnsupportedOpError` for an attribute value or dtype it does not
handle; it never returns a wrong number.

Fixed-point kernels (``numerics="fixed"``) register with :func:`register_fixed` and have
the signature::

    def _run(node, inputs, in_fmts, out_fmts, opset) -> tuple[np.ndarray, ...]

where inputs are real values exactly representable in ``in_fmts`` (``None`` format for
integer tensors) and outputs must be exactly representable in ``out_fmts``. Ops without
a fixed kernel run their float kernel on the (already quantized) inputs and the result
is quantized to the output format by :func:`hwgen.fixedpoint.quantize`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import UnsupportedOpError

__all__ = ["register", "register_fixed", "FLOAT_OPS", "FIXED_OPS", "supported_ops", "check_alloc", "MAX_TENSOR_BYTES"]

FLOAT_OPS: dict[str, Callable] = {}
FIXED_OPS: dict[str, Callable] = {}

#: Refuse to create any tensor larger than this (bytes): a guard against absurd shapes.
MAX_TENSOR_BYTES = 4 << 30


def register(*op_types: str):
    """Decorator: register a float reference implementation for ``op_types``."""

    def deco(fn):
        for t in op_types:
            FLOAT_OPS[t] = fn
        return fn

    return deco


def register_fixed(*op_types: str):
    """Decorator: register a bit-accurate fixed-point kernel for ``op_types``."""

    def deco(fn):
        for t in op_types:
            FIXED_OPS[t] = fn
        return fn

    return deco


def supported_ops() -> list[str]:
    """Sorted op types the reference interpreter implements."""
    from . import fused, linear, moe, onnx_attention, ops  # noqa: F401  (fill the registry)

    return sorted(k for k in FLOAT_OPS if not k.startswith("hwgen."))


def check_alloc(shape, itemsize: int = 8, what: str = "tensor") -> None:
    """Raise UnsupportedOpError if a tensor of ``shape`` would be absurdly large."""
    shape = [int(d) for d in np.asarray(shape).reshape(-1)]
    if any(d < 0 for d in shape):
        raise UnsupportedOpError(f"{what} has a negative dimension in shape {shape}")
    n = 1
    for d in shape:
        n *= d
    if n * itemsize > MAX_TENSOR_BYTES:
        raise UnsupportedOpError(
            f"{what} of shape {shape} would take {n * itemsize / 2**30:.1f} GiB "
            f"(limit {MAX_TENSOR_BYTES / 2**30:.0f} GiB)"
        )
