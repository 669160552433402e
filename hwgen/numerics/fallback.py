"""Which ops the fixed-point interpreter runs without a bit-level kernel, and the warning
it gives for them.

Under ``numerics="fixed"`` an op with a kernel in :data:`hwgen.interp.registry.FIXED_OPS`
runs the hardware's integer arithmetic. Any other op runs its float kernel on the
(representable) inputs and its result is quantised to the output format. For the ops of
:data:`EXACT_OPS` that is exact -- they move, select or compare values and never round
(a saturation at the output format's edge is the defined behaviour) -- so nothing is
said. For every other op, and for a kernel that meets a case it does not implement
(``Gemm`` with alpha/beta != 1, ``LayerNormalization`` on another axis than the last),
the result is float arithmetic rounded once, not what the hardware computes: a
:class:`hwgen.errors.FixedFallbackWarning` names the node and why (once per node, by
Python's default warning filter; ``hwgen run --numerics fixed`` lists them all).
"""

from __future__ import annotations

import warnings

from ..errors import FixedFallbackWarning

__all__ = ["EXACT_OPS", "warn_fallback", "fallback_reason"]

#: Ops whose float kernel is exact on fixed-point values: data movement, selection,
#: comparisons, logic, sign manipulation, integer/shape computations.
EXACT_OPS = frozenset({
    "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "GatherND", "Expand", "Tile", "Pad", "Scatter", "ScatterElements", "ScatterND",
    "Where", "Dropout", "Shape", "Size", "Constant", "ConstantOfShape", "NonZero", "TopK", "ArgMax", "ArgMin",
    "Max", "Min", "Relu", "Neg", "Abs", "Sign", "Clip", "Equal", "Less", "LessOrEqual", "Greater",
    "GreaterOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "OneHot", "Range", "Cast", "CastLike",
    "Floor", "Ceil",
})


def fallback_reason(node, out_fmts) -> str | None:
    """Why ``node`` (an op without a fixed kernel) is not bit-level, or None if its float
    kernel is exact here (an op of :data:`EXACT_OPS`, or no float output format)."""
    if node.op in EXACT_OPS and not node.domain:
        return None
    if all(f is None for f in out_fmts):
        return None  # integer / boolean results: exact
    return "no bit-level kernel for this op"


def warn_fallback(node, why: str, out_fmts) -> None:
    """Warn that ``node``'s result is float arithmetic quantised to ``out_fmts``."""
    fmts = ", ".join(str(f) for f in out_fmts if f is not None) or "its formats"
    op = f"{node.domain}.{node.op}" if node.domain else node.op
    warnings.warn(
        f"numerics='fixed': node {node.name!r} ({op}): {why}; its float result is quantised to {fmts} "
        f"(not the hardware's bit-level arithmetic)",
        FixedFallbackWarning,
        stacklevel=3,
    )
