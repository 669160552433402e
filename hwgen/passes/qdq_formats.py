"""Fixed-point formats that a quantized model's own scales call for.

A QDQ model (onnxruntime's ``quantize_static``, QuantFormat.QDQ) computes in float on
values of an int8 grid: ``DequantizeLinear`` gives ``(q - z) * s``, the float ops combine
them, ``QuantizeLinear`` rounds ``x / s + z`` back to the grid. In fixed point, a value of
the grid that the tensor's format cannot hold, or a ``QuantizeLinear`` input rounded to
fewer bits than its step, moves a result across a rounding boundary of the next
``QuantizeLinear``: one whole int8 step. A dynamically quantized model
(``quantize_dynamic``) computes its scales at run time (``DynamicQuantizeLinear``) and
multiplies them with the weights' scales: values of 1e-5 that ``fixed<32,10>`` holds to
two digits.

:func:`quant_needs` says, per float tensor, how many fraction and integer bits it needs:

* a ``DequantizeLinear`` output with constant scale ``s`` and zero point: its grid.
  ``ceil(-log2 s)`` fraction bits resolve one step; a power-of-two scale is then exact,
  any other scale gets :data:`GUARD_BITS` more (the representation error is at most
  ``2**-(GUARD_BITS + 1)`` of a step). Integer bits hold ``(q - z) * s`` over the
  integer type's range (over the data, for a constant).
* a ``QuantizeLinear`` input with constant scale: ``ceil(-log2 s) + GUARD_BITS`` fraction
  bits, integer bits for the quantized range plus one step (beyond it both saturate).
* a folded ``DequantizeLinear`` constant (a weight or bias) carries its grid in
  ``Tensor.grid`` (set by :func:`hwgen.passes.fold_constants.fold_constants`).
* the scale of ``DynamicQuantizeLinear`` and products of it with constants (the
  ``x_scale * w_scale`` of ``MatMulInteger``/``ConvInteger`` layers): 48 bits with the
  integer bits of a bound of their range (``(max - min) / 255`` of the input's format
  range; the product of the factors' bounds), i.e. float32's precision or better.

:func:`hwgen.passes.formats.assign_formats` turns the needs into formats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..fixedpoint import FixedFormat
from ..ir import Graph, Node

__all__ = ["GUARD_BITS", "MIN_GUARD_BITS", "CONST_FRAC_BITS", "Need", "dequantized_need", "quant_needs"]

#: Fraction bits below a quantization step that a format gets for a non-power-of-two scale:
#: the value is within 2**-17 of a step of the exact one, so a QuantizeLinear rounds it as
#: float32 would but for about one value in 10**5.
GUARD_BITS = 16
#: Fewest such bits with which a target's own format still counts as resolving the grid
#: (the FPGA keeps its formats on the engines if they resolve a quarter step).
MIN_GUARD_BITS = 2
#: Fraction bits with which a target's format counts as holding a constant of a quantized
#: region (a GELU's 1/sqrt(2) to 2**-16)
CONST_FRAC_BITS = 16
_MAX_WIDTH = 48


@dataclass(frozen=True)
class Need:
    """What a tensor's format must hold.

    Members
    -------
    frac_bits : int
        Fraction bits it should have (bits; the grid's step bits plus the guard bits).
    int_bits : int
        Integer bits, sign included, that hold its range.
    min_frac_bits : int
        Fewest fraction bits that still resolve the grid (a target's format with at least
        these and ``int_bits`` is kept).
    """

    frac_bits: int
    int_bits: int
    min_frac_bits: int

    def merged(self, default: FixedFormat) -> FixedFormat:
        """The finer of ``default`` and this need: the most fraction and integer bits of the
        two, fraction bits dropped first when they exceed 48 bits."""
        ints = max(default.int_bits, self.int_bits)
        fracs = min(max(default.frac_bits, self.frac_bits), _MAX_WIDTH - ints)
        return FixedFormat(max(1, ints + fracs), ints)

    def resolved_by(self, fmt: FixedFormat) -> bool:
        """``fmt`` has the range and at least :attr:`min_frac_bits` fraction bits."""
        return fmt.int_bits >= self.int_bits and fmt.frac_bits >= self.min_frac_bits


def _int_bits(bound: float) -> int:
    """Integer bits (sign included) of a format whose range holds ``[-bound, bound]``."""
    if bound <= 0:
        return 1
    return math.floor(math.log2(bound)) + 2


def _step_bits(scale: np.ndarray) -> tuple[int, bool]:
    """Fraction bits that resolve the smallest step, and whether every scale is a power of two."""
    s = np.abs(np.asarray(scale, dtype=np.float64)).reshape(-1)
    s = s[s > 0]
    if s.size == 0:
        return 0, True
    bits = int(math.ceil(-math.log2(float(s.min()))))
    mant, _ = np.frexp(s)
    return bits, bool(np.all(mant == 0.5))


def _qrange(dtype) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def dequantized_need(scale, zero_point, qdtype, q: np.ndarray | None = None) -> Need | None:
    """The need of ``(q - zero_point) * scale`` for ``q`` of integer type ``qdtype`` (over the
    data ``q`` when it is known); None for a type without integer range."""
    if not np.issubdtype(np.dtype(qdtype), np.integer):
        return None
    bits, exact = _step_bits(scale)
    s_max = float(np.max(np.abs(np.asarray(scale, dtype=np.float64)))) if np.size(scale) else 0.0
    z = np.asarray(zero_point if zero_point is not None else 0, dtype=np.int64)
    if q is not None and np.size(q):
        span = float(np.max(np.abs(np.asarray(q, dtype=np.int64) - z.min()), initial=0))
        span = max(span, float(np.max(np.abs(np.asarray(q, dtype=np.int64) - z.max()), initial=0)))
    else:
        lo, hi = _qrange(qdtype)
        span = float(max(hi - int(z.min()), int(z.max()) - lo))
    guard = 0 if exact else GUARD_BITS
    return Need(bits + guard, _int_bits(span * s_max), bits + (0 if exact else MIN_GUARD_BITS))


def _const(g: Graph, name: str | None):
    if not name or name not in g.tensors or not g.tensors[name].is_const:
        return None
    return g.tensors[name].data


def _qdq_node_need(g: Graph, n: Node) -> tuple[str, Need] | None:
    """(float tensor, need) of one QuantizeLinear/DequantizeLinear with a constant scale."""
    scale = _const(g, n.inputs[1] if len(n.inputs) > 1 else None)
    if scale is None or not np.all(np.isfinite(scale)):
        return None
    zp_name = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
    zp = _const(g, zp_name)
    if zp_name and zp is None:
        return None  # a run-time zero point: no static grid
    if n.op == "DequantizeLinear":
        qdtype = g.tensors[n.inputs[0]].dtype
        return n.outputs[0], dequantized_need(scale, zp, qdtype, _const(g, n.inputs[0]))
    qdtype = g.tensors[n.outputs[0]].dtype  # the zero point's type, or output_dtype, or uint8
    if not np.issubdtype(np.dtype(qdtype), np.integer):
        return None
    lo, hi = _qrange(qdtype)
    bits, _ = _step_bits(scale)
    z = np.asarray(zp if zp is not None else 0, dtype=np.int64)
    span = float(max(hi - int(z.min()), int(z.max()) - lo) + 1)
    s_max = float(np.max(np.abs(np.asarray(scale, dtype=np.float64))))
    return n.inputs[0], Need(bits + GUARD_BITS, _int_bits(span * s_max), bits + MIN_GUARD_BITS)


def _scale_bound(g: Graph, name: str, bounds: dict[str, float]) -> float | None:
    if name in bounds:
        return bounds[name]
    data = _const(g, name)
    if data is not None and np.issubdtype(np.asarray(data).dtype, np.floating) and np.size(data) <= 4096:
        return float(np.max(np.abs(data), initial=0.0))
    return None


def quant_needs(g: Graph, act: FixedFormat, weights=frozenset()) -> dict[str, Need]:
    """Float tensor name -> :class:`Need`, from the model's quantization nodes and the
    ``grid`` of folded constants; empty for a model without them. ``act`` bounds the
    inputs of ``DynamicQuantizeLinear`` that have no format yet; ``weights`` (linear-layer
    weights) get a need only from their own grid."""
    out: dict[str, Need] = {}

    def put(name: str, need: Need) -> None:
        old = out.get(name)
        if old is None:
            out[name] = need
        else:
            out[name] = Need(max(old.frac_bits, need.frac_bits), max(old.int_bits, need.int_bits),
                             max(old.min_frac_bits, need.min_frac_bits))

    for t in g.tensors.values():
        if t.grid is not None and np.issubdtype(np.dtype(t.dtype), np.floating):
            put(t.name, t.grid)
    bounds: dict[str, float] = {}  # run-time scales -> a bound of their magnitude
    for n in g.nodes:
        if n.domain:
            continue
        if n.op in ("QuantizeLinear", "DequantizeLinear"):
            got = _qdq_node_need(g, n)
            if got is not None and got[1] is not None and np.issubdtype(np.dtype(g.tensors[got[0]].dtype), np.floating):
                put(*got)
        elif n.op == "DynamicQuantizeLinear" and len(n.outputs) > 1 and n.outputs[1]:
            fmt = g.tensors[n.inputs[0]].fmt or act
            bounds[n.outputs[1]] = 2.0 ** fmt.int_bits / 255  # (max(x, 0) - min(x, 0)) / 255
            # its input's grid is chosen at run time: float32's precision (a target's format
            # with CONST_FRAC_BITS fraction bits will do)
            put(n.inputs[0], Need(_MAX_WIDTH - fmt.int_bits, fmt.int_bits, CONST_FRAC_BITS))
        elif n.op == "Mul" and any(i in bounds for i in n.inputs):
            factors = [_scale_bound(g, i, bounds) for i in n.inputs]
            if all(f is not None for f in factors):
                bounds[n.outputs[0]] = float(np.prod(factors))
                for i, f in zip(n.inputs, factors):
                    if i not in bounds:  # a constant factor (a weight's scale)
                        bounds[i] = f
    _spread(g, out, put, set(bounds), set(weights))
    for name, bound in bounds.items():  # run-time scales are host values: float32's precision
        ints = _int_bits(bound)
        put(name, Need(_MAX_WIDTH - ints, ints, _MAX_WIDTH - ints))
    return out


def _const_need(data) -> Need:
    """A float constant of a quantized region (a scale, a GELU's 1/sqrt(2)): float32's
    precision, 48 bits with the integer bits of its largest magnitude."""
    ints = _int_bits(float(np.max(np.abs(np.asarray(data, dtype=np.float64)), initial=0.0)))
    return Need(_MAX_WIDTH - ints, ints, CONST_FRAC_BITS)


def _spread(g: Graph, out: dict[str, Need], put, skip: set[str], weights: set[str]) -> None:
    """Quantized regions: the scales of QuantizeLinear/DequantizeLinear, and the float ops
    after a DequantizeLinear (up to the next QuantizeLinear), need the fraction bits of what
    they read and its integer bits; their constants other than linear weights (which keep
    the weight format) float32's precision. Integer bits do not grow along a chain: this is
    no range analysis, and the default format's range is kept where it is larger."""
    for n in g.nodes:
        floats = [i for i in n.inputs if i and np.issubdtype(np.dtype(g.tensors[i].dtype), np.floating)]
        if n.op in ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger") or any(i in skip for i in n.inputs):
            continue  # integer results, or the multiplication by a run-time scale
        if n.op in ("QuantizeLinear", "DequantizeLinear"):
            scale = n.inputs[1] if len(n.inputs) > 1 else None
            if scale and g.tensors[scale].is_const:  # read by the quantizer alone: always float32's
                need = _const_need(g.tensors[scale].data)
                put(scale, Need(need.frac_bits, need.int_bits, need.frac_bits))
            continue
        read = [out[i] for i in floats if i in out and not g.tensors[i].is_const]
        if not read:
            continue
        frac = max(r.frac_bits for r in read)
        ints = max(r.int_bits for r in read)
        for i in floats:
            if g.tensors[i].is_const and i not in out and i not in weights:
                put(i, _const_need(g.tensors[i].data))
        for o in n.outputs:
            if o and o not in out and np.issubdtype(np.dtype(g.tensors[o].dtype), np.floating):
                put(o, Need(frac, ints, max(r.min_frac_bits for r in read)))
