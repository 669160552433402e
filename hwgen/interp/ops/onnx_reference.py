"""Float kernels for the ONNX ops hwgen does not implement itself, taken from ONNX's own
reference implementation (``onnx.reference.ops``) of the installed onnx.

hwgen implements natively every op its targets lower (MatMul, Conv, Softmax, LayerNorm,
...), with its own fixed-point kernels. Models from other libraries and exporters also
carry ops no accelerator engine runs -- pooling, ``Resize``, ``ConvTranspose``,
``InstanceNormalization``, QDQ quantisation, ``PRelu``/``Elu``/``Selu``, ... They run on
the host, so the interpreter needs their float semantics, and ONNX's reference
implementation is the definition of those semantics: hwgen does not write its own copy.

Each op in :data:`REFERENCE_OPS` is registered in
:data:`hwgen.interp.registry.FLOAT_OPS`; ``numerics="fixed"`` runs it in float on the
quantized inputs and quantizes the result (``FixedFallbackWarning`` names it). The op
version is the one onnx's reference implements for the model's opset, which is always
the installed onnx's own (so :data:`hwgen.interp.op_versions.OP_VERSIONS` lists, for
these ops, the installed onnx's newest version).

Left out on purpose: control flow and sequence/optional/string types (``If``, ``Loop``,
``Scan``, ``Sequence*``, ``Optional*``, ``String*``), which the IR has no value for;
random generators (``Random*``, ``Bernoulli``), whose output is not a function of the
inputs; training losses; ``ImageDecoder``; ``RoiAlign``, whose node cases list rounded
values that onnxruntime (no opset-22 kernel) cannot arbitrate.
"""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedOpError
from ..registry import register

__all__ = ["REFERENCE_OPS"]

#: ONNX (default domain) op types whose float semantics come from ``onnx.reference``.
REFERENCE_OPS: tuple[str, ...] = (
    # pooling
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "MaxUnpool",
    # convolutions and resampling
    "ConvTranspose", "DeformConv", "Col2Im", "Resize", "Upsample", "GridSample", "AffineGrid",
    "DepthToSpace", "SpaceToDepth", "CenterCropPad",
    # normalisations
    "InstanceNormalization", "LRN", "LpNormalization", "RMSNormalization",
    # activations and element-wise maths
    "PRelu", "Elu", "Selu", "Celu", "Swish", "ThresholdedRelu", "Shrink", "Softsign", "Hardmax",
    "Round", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
    "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
    # reductions, scans and linear algebra
    "ReduceLogSum", "CumProd", "Det", "Trilu", "EyeLike", "ReverseSequence", "Compress", "Unique",
    # quantisation (QDQ and QOperator models)
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
    "QLinearMatMul", "QLinearConv",
    # recurrent layers, transformer pieces of the newest opsets
    "RNN", "GRU", "LSTM", "RotaryEmbedding", "SwiGLU",
    # detection and signal processing
    "NonMaxSuppression", "DFT", "STFT", "HannWindow", "HammingWindow", "BlackmanWindow",
    "MelWeightMatrix",
)


#: Ops whose oldest reference class (opset 19) also defines their older versions: 19
#: only added float8 types and ``saturate`` (which acts on float8 alone), so an opset-13
#: model's int8/uint8 QDQ nodes mean the same under it.
_OLDEST_REFERENCE_COVERS_OLDER = {"QuantizeLinear": 19, "DequantizeLinear": 19}


def _reference_class(op: str, opset: int):
    from onnx.reference.ops import load_op

    opset = max(int(opset), _OLDEST_REFERENCE_COVERS_OLDER.get(op, 0))
    return load_op("", op, version=opset)


def _attribute(name: str, value):
    from onnx import helper, numpy_helper

    if isinstance(value, np.ndarray):
        return helper.make_attribute(name, numpy_helper.from_array(value))
    if isinstance(value, (list, tuple)) and not value:
        return None  # an empty list has no type; onnx's reference treats it as absent
    return helper.make_attribute(name, value)


def _node_proto(node):
    from onnx import helper

    proto = helper.make_node(node.op, list(node.inputs), list(node.outputs), name=node.name)
    for name, value in node.attrs.items():
        attr = _attribute(name, value)
        if attr is not None:
            proto.attribute.append(attr)
    return proto


def _run(node, inputs, opset):
    try:
        cls = _reference_class(node.op, opset)
    except Exception as e:  # onnx has no implementation at this opset
        raise UnsupportedOpError(f"node {node.name!r}: op {node.op!r} at opset {opset}: {e}") from e
    impl = cls(_node_proto(node), {"log": lambda *a: None, "opsets": {"": int(opset)}, "verbose": 0,
                                   "new_ops": None, "existing_functions": {}, "evaluator_cls": None})
    n_in = len(inputs)
    while n_in and inputs[n_in - 1] is None:  # trailing omitted optional inputs
        n_in -= 1
    outs = impl.run(*inputs[:n_in])
    return tuple(np.asarray(o) if o is not None else None for o in outs)


register(*REFERENCE_OPS)(_run)
