"""MoE routing in fixed point: top-k of gate scores, gate-weight normalisation, and the
expert schedule of ``fpga.hdl.moe``.

Top-k
    Experts ranked by descending score code; equal scores rank by lower expert index
    (a stable sort; the hardware inserts each arriving expert behind every kept expert
    whose score is >= its own).

Normalisation (``hwgen.MoE``'s ``normalization`` attribute, :mod:`hwgen.interp.moe`)
    Experts are always ranked on the gate-score codes: every normalisation is monotonic,
    so this is the float op's order; only where two different scores round to the same
    probability does the larger score win instead of the lower index. With
    :func:`hwgen.numerics.softmax.softmax_codes` as the one softmax:

    * ``"topk_then_softmax"`` and ``"softmax_topk_renorm"`` (the same function): softmax
      over the ``k`` selected scores, elements in rank order (so the first is the
      running maximum and nothing is ever rescaled);
    * ``"softmax_then_topk"``: softmax over all ``E`` scores (online pass in expert
      order), the selected experts' probabilities;
    * ``"sigmoid_then_topk"``: ``sigmoid(x)`` as ``softmax([x, 0])[0]``, per selected score;
    * ``"topk"``: the selected scores, requantized to the weight format.

Schedule
    Given the experts of every token, each expert that has tokens runs once, in
    increasing expert id; its tokens in increasing token index. The weights of the
    ``n+1``-th scheduled expert are requested while the ``n``-th computes.
"""

from __future__ import annotations

import numpy as np

from ..fixedpoint import FixedFormat, requantize
from ..interp.moe import NORMALIZATIONS  # the one list of names (float semantics there)
from .softmax import SOFTMAX_DEFAULT, SoftmaxSpec, softmax_codes

__all__ = ["NORMALIZATIONS", "topk_codes", "gate_weights", "route", "expert_schedule"]


def topk_codes(scores, k: int) -> np.ndarray:
    """Indices ``[..., k]`` of the ``k`` largest scores along the last axis, best first,
    ties broken by lower index."""
    scores = np.asarray(scores, dtype=np.int64)
    n = scores.shape[-1]
    if not 1 <= k <= n:
        raise ValueError(f"top-k needs 1 <= k <= {n} (the number of experts), not k={k}")
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :k]


def gate_weights(
    scores,
    experts,
    score_fmt: FixedFormat,
    out_fmt: FixedFormat,
    normalization: str = "topk_then_softmax",
    spec: SoftmaxSpec = SOFTMAX_DEFAULT,
) -> np.ndarray:
    """Gate weights (``out_fmt`` codes ``[..., k]``) of the selected ``experts`` (rank
    order) given all gate score codes ``[..., E]``."""
    scores = np.asarray(scores, dtype=np.int64)
    sel = np.take_along_axis(scores, np.asarray(experts), axis=-1)
    f = score_fmt.frac_bits
    if normalization in ("topk_then_softmax", "softmax_topk_renorm"):
        return softmax_codes(sel, f, out_fmt, axis=-1, spec=spec)
    if normalization == "softmax_then_topk":
        return np.take_along_axis(softmax_codes(scores, f, out_fmt, axis=-1, spec=spec), np.asarray(experts), axis=-1)
    if normalization == "sigmoid_then_topk":
        pair = np.stack([sel, np.zeros_like(sel)], axis=-1)
        return softmax_codes(pair, f, out_fmt, axis=-1, spec=spec)[..., 0]
    if normalization == "topk":
        return requantize(sel, f, out_fmt)
    raise ValueError(f"gate normalization {normalization!r} is not supported; supported: {', '.join(NORMALIZATIONS)}")


def route(scores, k: int, score_fmt: FixedFormat, out_fmt: FixedFormat, normalization: str = "topk_then_softmax"):
    """``(experts [..., k], weights [..., k])`` for gate score codes ``[..., E]``."""
    experts = topk_codes(scores, k)
    return experts, gate_weights(scores, experts, score_fmt, out_fmt, normalization)


def expert_schedule(experts) -> list[tuple[int, list[int]]]:
    """``[(expert, [tokens...]), ...]`` for the experts ``[N, k]`` chosen by each token."""
    experts = np.asarray(experts, dtype=np.int64)
    if experts.ndim != 2:
        raise ValueError(f"expert_schedule takes a [tokens, k] array, not shape {experts.shape}")
    queues: dict[int, list[int]] = {}
    for tok, row in enumerate(experts.tolist()):
        for e in row:
            queues.setdefault(e, []).append(tok)
    return [(e, queues[e]) for e in sorted(queues)]
