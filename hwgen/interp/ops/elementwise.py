"""Elementwise ops: arithmetic, comparisons, logic, activations."""

from __future__ import annotations

import numpy as np

from ..functions import erf as _erf_fn
from ..functions import gelu as _gelu_fn
from ..functions import sigmoid as _sigmoid_fn
from ..registry import register
from ._util import fail


def _same(x, like):
    return np.asarray(x).astype(np.asarray(like).dtype, copy=False)


def _binary(fn):
    def run(node, inputs, opset):
        a, b = inputs[0], inputs[1]
        return (_same(fn(a, b), a),)

    return run


for _name, _fn in {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}.items():
    register(_name)(_binary(_fn))


@register("Div")
def div(node, inputs, opset):
    a, b = inputs
    if np.issubdtype(a.dtype, np.integer):
        if np.any(b == 0):
            fail(node, "integer division by zero")
        q = np.trunc(a.astype(np.float64) / b.astype(np.float64))  # ONNX truncates
        return (q.astype(a.dtype),)
    return (_same(np.divide(a, b), a),)


@register("Mod")
def mod(node, inputs, opset):
    a, b = inputs
    if int(node.attrs.get("fmod", 0)):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (_same(np.fmod(a, b), a),)
    if np.issubdtype(a.dtype, np.floating):
        if opset < 28:
            fail(node, "Mod with fmod=0 on floats is defined from opset 28 on (use fmod=1 before)")
        # opset 28: A - floor(A / B) * B, the sign of B; numpy's remainder has exactly the
        # special cases of the spec (0 -> 0 with B's sign, inf or B = 0 -> NaN, B = inf -> A or B)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (_same(np.mod(a, b), a),)
    if np.any(b == 0):
        fail(node, "integer Mod by zero")
    return (_same(np.mod(a, b), a),)


@register("Pow")
def pow_(node, inputs, opset):
    a, b = inputs
    if np.issubdtype(a.dtype, np.integer):
        return (np.power(a.astype(np.int64), b.astype(np.int64)).astype(a.dtype),)
    return (_same(np.power(a, b.astype(a.dtype) if np.issubdtype(b.dtype, np.floating) else b), a),)


def _unary(fn, float_only=False):
    def run(node, inputs, opset):
        x = inputs[0]
        if float_only and not np.issubdtype(x.dtype, np.floating):
            fail(node, f"dtype {x.dtype} is not supported")
        return (_same(fn(x), x),)

    return run


_UNARY = {
    "Neg": np.negative,
    "Abs": np.abs,
    "Sqrt": np.sqrt,
    "Exp": np.exp,
    "Log": np.log,
    "Tanh": np.tanh,
    "Sin": np.sin,
    "Cos": np.cos,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Relu": lambda x: np.maximum(x, 0),
    "Sign": np.sign,
}
for _name, _fn in _UNARY.items():
    register(_name)(_unary(_fn))


@register("Reciprocal")
def reciprocal(node, inputs, opset):
    x = inputs[0]
    return (_same(np.reciprocal(x.astype(np.float64) if not np.issubdtype(x.dtype, np.floating) else x), x),)


@register("Erf")
def erf(node, inputs, opset):
    x = inputs[0]
    return (_same(_erf_fn(x.astype(np.float64)), x),)


@register("Sigmoid")
def sigmoid(node, inputs, opset):
    x = inputs[0]
    return (_same(_sigmoid_fn(x.astype(np.float64)), x),)


@register("HardSigmoid")
def hard_sigmoid(node, inputs, opset):
    x = inputs[0]
    a, b = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    return (_same(np.clip(a * x.astype(np.float64) + b, 0, 1), x),)


@register("HardSwish")
def hard_swish(node, inputs, opset):
    x = inputs[0]
    xd = x.astype(np.float64)
    return (_same(xd * np.clip(xd / 6 + 0.5, 0, 1), x),)


@register("LeakyRelu")
def leaky_relu(node, inputs, opset):
    x = inputs[0]
    a = float(node.attrs.get("alpha", 0.01))
    return (_same(np.where(x >= 0, x, x * a), x),)


@register("Softplus")
def softplus(node, inputs, opset):
    x = inputs[0]
    return (_same(np.logaddexp(0, x.astype(np.float64)), x),)


@register("Gelu")
def gelu(node, inputs, opset):
    x = inputs[0]
    approximate = node.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        fail(node, f"approximate={approximate!r} is not 'none' or 'tanh'")
    return (_same(_gelu_fn(x.astype(np.float64), approximate), x),)


@register("Clip")
def clip(node, inputs, opset):
    x = inputs[0]
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else node.attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else node.attrs.get("max")
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo, dtype=x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi, dtype=x.dtype))
    return (_same(y, x),)


def _variadic(fn):
    def run(node, inputs, opset):
        xs = [x for x in inputs if x is not None]
        y = xs[0]
        for x in xs[1:]:
            y = fn(y, x)
        return (_same(y, xs[0]),)

    return run


register("Max")(_variadic(np.maximum))
register("Min")(_variadic(np.minimum))
register("Sum")(_variadic(np.add))


@register("Mean")
def mean(node, inputs, opset):
    xs = [x for x in inputs if x is not None]
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return (_same(y / len(xs), xs[0]),)


def _compare(fn):
    def run(node, inputs, opset):
        return (np.asarray(fn(inputs[0], inputs[1]), dtype=bool),)

    return run


for _name, _fn in {
    "Equal": np.equal,
    "Less": np.less,
    "Greater": np.greater,
    "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal,
}.items():
    register(_name)(_compare(_fn))

register("And")(_compare(np.logical_and))
register("Or")(_compare(np.logical_or))
register("Xor")(_compare(np.logical_xor))


@register("Not")
def not_(node, inputs, opset):
    return (np.logical_not(inputs[0]),)


@register("IsNaN")
def isnan(node, inputs, opset):
    return (np.isnan(inputs[0]),)


@register("IsInf")
def isinf(node, inputs, opset):
    x = inputs[0]
    pos, neg = int(node.attrs.get("detect_positive", 1)), int(node.attrs.get("detect_negative", 1))
    return ((np.isposinf(x) & bool(pos)) | (np.isneginf(x) & bool(neg)),)


@register("Where")
def where(node, inputs, opset):
    c, a, b = inputs
    return (np.where(c, a, b).astype(np.result_type(a, b), copy=False),)
