"""Which version of each ONNX op the reference interpreter implements.

ONNX versions an op whenever its definition changes; a model at opset ``N`` uses, for
each op, the newest version ``<= N`` (its ``since_version``). :data:`OP_VERSIONS` records,
for every op hwgen implements, the newest ``since_version`` whose changes have been
reviewed and implemented (semantics, attributes, inputs; a version that only adds
exotic element types, such as float8, int4 or bfloat16, counts as reviewed: those
types are refused at run time with a clear error). Older versions are implemented
too, down to opset :data:`hwgen.frontend.MIN_OPSET`.

A node whose op, at the model's opset, has a newer ``since_version`` than recorded here
(an onnx release newer than this table) is refused by :func:`version_problem`, instead
of being run with the older semantics. ``tests/test_onnx_node_cases.py`` checks that the
table is complete for the installed onnx, so an upgrade of onnx shows what to review.

What changed in the versions after opset 23 (reviewed against onnx 1.23's schemas):

* ``Mod`` 28: ``fmod=0`` is defined for floats (``A - floor(A / B) * B``, sign of ``B``).
* ``Range`` 27: ``stash_type`` (accumulation precision for float16/bfloat16).
* ``Attention`` 24: optional input ``nonpad_kv_seqlen``; 25: ``left_window_size`` and
  ``right_window_size`` (sliding window).
* ``Cast``/``CastLike`` 24: ``round_mode`` (for float8e8m0 only).
* ``ReduceLogSumExp`` 28: integer types removed.
* every other op (``Reshape``, ``Transpose``, ``Shape``, ``Flatten``, ``Squeeze``,
  ``Unsqueeze``, ``Pad``, ``Identity``, ``Constant``, ``ConstantOfShape``, ``Size``,
  ``TopK``, ``Einsum``, ``OneHot``, ...): new element types only.
"""

from __future__ import annotations

__all__ = ["OP_VERSIONS", "schema_version", "version_problem"]

#: op type -> newest ONNX ``since_version`` that the interpreter implements.
OP_VERSIONS: dict[str, int] = {
    "Abs": 13, "Add": 14, "And": 7, "ArgMax": 13, "ArgMin": 13, "Attention": 25,
    "BatchNormalization": 15, "Cast": 28, "CastLike": 25, "Ceil": 13, "Clip": 13,
    "Concat": 13, "Constant": 25, "ConstantOfShape": 25, "Conv": 22, "Cos": 22,
    "CumSum": 14, "Div": 14, "Dropout": 22, "Einsum": 28, "Equal": 19, "Erf": 13,
    "Exp": 13, "Expand": 13, "Flatten": 25, "Floor": 13, "Gather": 13,
    "GatherElements": 13, "GatherND": 13, "Gelu": 20, "Gemm": 13, "Greater": 13,
    "GreaterOrEqual": 16, "HardSigmoid": 22, "HardSwish": 22, "Identity": 25,
    "IsInf": 20, "IsNaN": 20, "LayerNormalization": 17, "LeakyRelu": 16, "Less": 13,
    "LessOrEqual": 16, "Log": 13, "LogSoftmax": 13, "MatMul": 13, "Max": 13,
    "Mean": 13, "Min": 13, "Mod": 28, "Mul": 14, "Neg": 13, "NonZero": 13, "Not": 1,
    "OneHot": 28, "Or": 7, "Pad": 25, "Pow": 15, "Range": 27, "Reciprocal": 13,
    "ReduceL1": 18, "ReduceL2": 18, "ReduceLogSumExp": 28, "ReduceMax": 20,
    "ReduceMean": 18, "ReduceMin": 20, "ReduceProd": 18, "ReduceSum": 13,
    "ReduceSumSquare": 18, "Relu": 14, "Reshape": 25, "Scatter": 11,
    "ScatterElements": 18, "ScatterND": 18, "Shape": 25, "Sigmoid": 13, "Sign": 13,
    "Sin": 22, "Size": 25, "Slice": 13, "Softmax": 13, "Softplus": 22, "Split": 18,
    "Sqrt": 13, "Squeeze": 25, "Sub": 14, "Sum": 13, "Tanh": 13, "Tile": 13,
    "TopK": 24, "Transpose": 25, "Unsqueeze": 25, "Where": 16, "Xor": 7,
}


def _reference_op_versions() -> dict[str, int]:
    """Ops whose kernel is onnx's own reference implementation
    (:mod:`hwgen.interp.ops.onnx_reference`): it implements every version of the
    installed onnx, so their entry is the installed onnx's newest version."""
    from onnx.defs import onnx_opset_version

    from .ops.onnx_reference import REFERENCE_OPS

    newest = onnx_opset_version()
    return {op: v for op in REFERENCE_OPS if (v := schema_version(op, newest)) is not None}


def schema_version(op: str, opset: int) -> int | None:
    """``since_version`` of ``op`` at default-domain ``opset`` in the installed onnx
    (None if onnx defines no such op at that opset)."""
    from onnx import defs

    try:
        return int(defs.get_schema(op, int(opset), "").since_version)
    except Exception:  # onnx raises SchemaError for an unknown op/opset
        return None


def version_problem(op: str, opset: int) -> str | None:
    """Why a node of ``op`` at ``opset`` cannot run, or None if the interpreter
    implements the op's version at that opset."""
    implemented = OP_VERSIONS.get(op)
    if implemented is None:
        return None  # not an ONNX op of this table (hwgen's own, or checked elsewhere)
    since = schema_version(op, opset)
    if since is None:
        return f"op {op!r} does not exist at opset {opset}"
    if since > implemented:
        return (
            f"op {op!r} at opset {opset} is version {since}; hwgen implements versions up to {implemented} "
            f"(convert the model to an older opset with onnx.version_converter)"
        )
    return None


OP_VERSIONS.update(_reference_op_versions())
