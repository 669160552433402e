"""The Mixture of Experts as the accelerator computes it, bit for bit.

Mirrored by ``fpga.hdl`` (MOE_ROUTE, MOE_GATHER, LINEAR, MOE_COMBINE) and the fixed-point
kernel of ``hwgen.MoE`` (``interpret(..., numerics="fixed")``). For tokens ``x`` (codes
of ``act``):

1. gate scores ``s = linear_codes(x, gate_w, gate_b)`` (activation codes);
2. :func:`hwgen.numerics.topk.route`: the top-k experts of each token by score code (ties:
   the lower expert index first) and their gate weights (activation codes) under the
   op's normalisation — the routing unit's arithmetic;
3. for each expert ``e`` in increasing id, its tokens in increasing index:
   ``h = linear_codes(x[tokens], w1[e], b1[e], gelu=GELU expert)``,
   ``o = linear_codes(h, w2[e], b2[e])``;
4. ``Y`` starts at zero; each (token, expert) adds, in that order,
   :func:`combine_codes`: ``p = requantize(w * o, 2F -> act)`` (the exact product of the
   gate weight and the expert output, rounded half up and saturated once), then
   ``Y = residual_codes(Y, p)`` (a saturating add). The order matters only where a sum
   saturates; it is the hardware's.

Expert activations: ``gelu`` and ``gelu_tanh`` are the hardware's GELU (Edge-MoE's
table), ``relu`` is ``max(code, 0)``, ``identity``; others (``silu``) and gated experts
have no bit-level definition here (UnsupportedOpError).

Formats in the interpreter's kernel (:func:`moe_fixed`): those of the tensors
(:func:`hwgen.passes.formats.assign_formats`): x and Y the activation format, w1 and w2 the
weight format, biases the activation format (their codes are what the LINEAR weight
image holds). The gate takes its own tensor's format: a constant gate is a weight
(``fixed<16,2>``), a gate computed at run time (M3ViT's per-task gate, a Gather of the
task's row) keeps the activation format (``fixed<32,10>``) — ``linear_codes`` is exact for
any two formats, so the interpreter runs such a graph bit-accurately; the accelerator's
LINEAR takes weight-format weights only, so the compiler binds the task first (the gate
becomes a constant weight) or runs the MoE on the host.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from ..fixedpoint import FixedFormat, exact_mul, from_fixed, requantize, to_fixed
from ..interp.registry import register_fixed
from .linear import linear_codes
from .residual import residual_codes
from .topk import route

__all__ = ["combine_codes", "moe_codes", "moe_fixed"]

_GELU = ("gelu", "gelu_tanh")


def combine_codes(y, h, w, act: FixedFormat) -> np.ndarray:
    """``y + w * h`` as MOE_COMBINE computes it (``w`` broadcasts over the last axis of ``h``)."""
    y = np.asarray(y, dtype=np.int64)
    h = np.asarray(h, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if w.ndim == h.ndim - 1:
        w = w[..., None]
    q = requantize(exact_mul(w, h), 2 * act.frac_bits, act)  # exact at any width
    return residual_codes(y, q, act, act, act)


def moe_codes(x, gate_w, gate_b, w1, b1, w2, b2, top_k: int, activation: str, normalization: str,
              act: FixedFormat, wfmt: FixedFormat, gate_fmt: FixedFormat | None = None) -> np.ndarray:
    """``hwgen.MoE`` on codes: ``x [..., D]`` (``act``), ``gate_w [D, E]`` (``gate_fmt``,
    default ``wfmt``), ``w1 [E, D, H]``, ``w2 [E, H, Dout]`` (``wfmt``), biases (``act``,
    ``None`` for none) -> ``act`` codes ``[..., Dout]``."""
    if activation not in _GELU + ("relu", "identity"):
        raise UnsupportedOpError(f"MoE expert activation {activation!r} has no bit-level definition "
                                 f"(the hardware fuses GELU; relu and identity are exact)")
    x = np.asarray(x, dtype=np.int64)
    d = x.shape[-1]
    tok = x.reshape(-1, d)
    n_exp = w1.shape[0]
    scores = linear_codes(tok, gate_w, gate_b, act, gate_fmt or wfmt, act if gate_b is not None else None, act)
    experts, weights = route(scores, top_k, act, act, normalization)
    y = np.zeros((tok.shape[0], w2.shape[-1]), dtype=np.int64)
    for e in range(n_exp):
        rows, slot = np.nonzero(experts == e)
        if rows.size == 0:
            continue
        order = np.argsort(rows, kind="stable")
        rows, slot = rows[order], slot[order]
        h = linear_codes(tok[rows], w1[e], None if b1 is None else b1[e], act, wfmt, act, act,
                         gelu=activation in _GELU)
        if activation == "relu":
            h = np.maximum(h, 0)
        o = linear_codes(h, w2[e], None if b2 is None else b2[e], act, wfmt, act, act)
        y[rows] = combine_codes(y[rows], o, weights[rows, slot], act)
    return y.reshape(x.shape[:-1] + (w2.shape[-1],))


@register_fixed("hwgen.MoE")
def moe_fixed(node, inputs, in_fmts, out_fmts, opset):
    """Fixed-point kernel of ``hwgen.MoE`` (:func:`moe_codes`)."""
    ins = list(inputs) + [None] * (7 - len(inputs))
    fmts = list(in_fmts) + [None] * (7 - len(in_fmts))
    gated = len(inputs) > 7 and any(v is not None for v in inputs[7:])
    activation = node.attrs.get("activation", "gelu")
    if gated or activation not in _GELU + ("relu", "identity"):
        # no engine runs these experts, so the FPGA compiler leaves the MoE on the host: its
        # bits are the float MoE on the quantized inputs, quantized to the output format
        from ..interp import run_node
        from .fallback import warn_fallback

        why = ("gated (SwiGLU/GeGLU) experts have" if gated else f"expert activation {activation!r} has") + \
            " no bit-level kernel (no engine runs it: the MoE runs on the host)"
        warn_fallback(node, why, out_fmts)
        return tuple(run_node(node, list(inputs), opset))
    x, gate_w, gate_b, w1, b1, w2, b2 = ins[:7]
    act, out = fmts[0], out_fmts[0] if out_fmts else None
    if act is None or out is None or fmts[3] is None or fmts[5] is None:
        raise UnsupportedOpError(f"node {node.name!r} (hwgen.MoE): inputs and output need fixed-point formats")
    if out != act:
        raise UnsupportedOpError(f"node {node.name!r} (hwgen.MoE): output format {out} differs from the input's {act}")
    wfmt = fmts[3]
    if fmts[5] != wfmt:
        raise UnsupportedOpError(f"node {node.name!r} (hwgen.MoE): w1 is {wfmt} but w2 is {fmts[5]}; the linear "
                                 f"unit has one weight format")
    gate_fmt = fmts[1] or act

    def codes(v, f):  # biases: activation codes (exact unless a bias has more fraction bits)
        return None if v is None else to_fixed(np.asarray(v, dtype=np.float64), f or act)

    y = moe_codes(codes(x, act), codes(gate_w, gate_fmt), codes(gate_b, act), codes(w1, wfmt), codes(b1, act),
                  codes(w2, wfmt), codes(b2, act), int(node.attrs.get("top_k", 1)),
                  node.attrs.get("activation", "gelu"), node.attrs.get("normalization", "softmax_then_topk"),
                  act, wfmt, gate_fmt)
    return (from_fixed(y, out),)
