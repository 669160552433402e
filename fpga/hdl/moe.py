"""MoE routing units: gate-score top-k and the per-expert token schedule.

Arithmetic and ordering: :mod:`hwgen.numerics.topk`, bit for bit.

:class:`TopKUnit`
    Gate scores stream in one expert a beat (expert ``e`` is the ``e``-th beat of a
    token). ``k`` slots hold the best scores so far in rank order; an arriving score is
    inserted behind every slot whose score is ``>=`` its own, so equal scores keep the
    lower expert index first. After the last expert the token's ``k`` experts and gate
    weights (softmax over the selected scores, in rank order, or the scores themselves)
    leave on ``o``, one beat per token; the next token's scores are taken meanwhile.
    For ``softmax_then_topk`` a running max and sum over all scores are kept as they
    arrive (the online softmax), so that the selected probabilities need no second pass.

:class:`ExpertScheduler`
    Takes the ``k`` experts of every token of an image (one beat a token, ``last`` on
    the final token) into per-expert queues (one memory, ``max_tokens`` rows per
    expert; the unit takes ``k`` cycles per token, one queue write each). Then it emits
    the schedule: for each expert with tokens, in increasing id, its tokens in arrival
    order on ``schedule`` (``last`` on the expert's final token), so each expert's
    weights are loaded once per image. ``prefetch`` names the experts in the same order
    for the weight loader, double-buffered: the request for the ``n+1``-th expert is
    issued before the ``n``-th expert's first token, and not before the ``n-1``-th
    expert's last token has been taken.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat
from hwgen.numerics.softmax import SOFTMAX_DEFAULT, SoftmaxSpec, scale_code
from hwgen.numerics.topk import NORMALIZATIONS

from .softmax import exp2_neg_hw, online_step_hw, reciprocal_divider, reciprocal_operands_hw, requantize_hw, shift_round_hw

__all__ = ["TopKUnit", "ExpertScheduler"]


def _check_pos(**kw):
    for name, val in kw.items():
        if not isinstance(val, int) or val < 1:
            raise TypeError(f"{name} must be a positive integer, not {val!r}")


class TopKUnit(wiring.Component):
    """Top-``k`` of ``num_experts`` gate scores per token, with gate weights.

    Parameters
    ----------
    num_experts, k : int
        Experts (E) and experts chosen per token (1 <= k <= E).
    score_fmt, weight_fmt : FixedFormat
        Formats of the gate scores and of the gate weights.
    normalization : str
        As ``hwgen.MoE``'s ``normalization`` attribute (one of
        :data:`hwgen.numerics.topk.NORMALIZATIONS`).

    Members
    -------
    scores : In(stream.Signature(signed(score_fmt.width)))
        One score a beat, experts 0..E-1 of a token in order.
    o : Out(stream.Signature(StructLayout({"experts": ArrayLayout(unsigned(ceil_log2 E), k),
        "weights": ArrayLayout(signed(weight_fmt.width), k)})))
        Best expert first.
    """

    def __init__(
        self,
        num_experts: int,
        k: int,
        score_fmt: FixedFormat = ACT_DEFAULT,
        weight_fmt: FixedFormat = ACT_DEFAULT,
        normalization: str = "topk_then_softmax",
        spec: SoftmaxSpec = SOFTMAX_DEFAULT,
    ):
        _check_pos(num_experts=num_experts, k=k)
        if k > num_experts:
            raise ValueError(f"k must be at most num_experts ({num_experts}), not {k}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization {normalization!r} is not supported; supported: {', '.join(NORMALIZATIONS)}")
        self.num_experts, self.k = num_experts, k
        self.score_fmt, self.weight_fmt, self.normalization, self.spec = score_fmt, weight_fmt, normalization, spec
        self.expert_bits = max(1, ceil_log2(num_experts))
        super().__init__({
            "scores": In(stream.Signature(signed(score_fmt.width))),
            "o": Out(stream.Signature(data.StructLayout({
                "experts": data.ArrayLayout(unsigned(self.expert_bits), k),
                "weights": data.ArrayLayout(signed(weight_fmt.width), k),
            }))),
        })

    def elaborate(self, platform):
        m = Module()
        k, spec = self.k, self.spec
        w = self.score_fmt.width
        idx = Signal(range(self.num_experts))
        slot_score = [Signal(signed(w), name=f"slot_score{p}") for p in range(k)]
        slot_idx = [Signal(unsigned(self.expert_bits), name=f"slot_idx{p}") for p in range(k)]
        slot_valid = [Signal(name=f"slot_valid{p}") for p in range(k)]
        res_valid = Signal()
        res_score = [Signal(signed(w), name=f"res_score{p}") for p in range(k)]
        res_idx = [Signal(unsigned(self.expert_bits), name=f"res_idx{p}") for p in range(k)]

        is_last = idx == self.num_experts - 1
        res_ready = Signal()  # the result registers are taken (by o, or by the reciprocal's pipeline)
        m.d.comb += self.scores.ready.eq(~is_last | ~res_valid | res_ready)
        with m.If(res_valid & res_ready):
            m.d.sync += res_valid.eq(0)

        # insertion: keep[p] if slot p beats or ties the new score (a prefix, slots sorted)
        s = self.scores.payload
        keep = [Signal(name=f"keep{p}") for p in range(k)]
        m.d.comb += [keep[p].eq(slot_valid[p] & (slot_score[p] >= s)) for p in range(k)]
        new_score = [Signal(signed(w), name=f"new_score{p}") for p in range(k)]
        new_idx = [Signal(unsigned(self.expert_bits), name=f"new_idx{p}") for p in range(k)]
        for p in range(k):
            with m.If(keep[p]):
                m.d.comb += [new_score[p].eq(slot_score[p]), new_idx[p].eq(slot_idx[p])]
            with m.Elif(keep[p - 1] if p > 0 else 1):
                m.d.comb += [new_score[p].eq(s), new_idx[p].eq(idx)]
            with m.Else():
                m.d.comb += [new_score[p].eq(slot_score[p - 1]), new_idx[p].eq(slot_idx[p - 1])]
        # a slot is filled once idx >= p (the first p+1 experts fill p+1 slots)
        with m.If(self.scores.valid & self.scores.ready):
            with m.If(is_last):
                m.d.sync += [idx.eq(0), res_valid.eq(1)]
                m.d.sync += [sv.eq(0) for sv in slot_valid]
                m.d.sync += [res_score[p].eq(new_score[p]) for p in range(k)]
                m.d.sync += [res_idx[p].eq(new_idx[p]) for p in range(k)]
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
                m.d.sync += [slot_score[p].eq(new_score[p]) for p in range(k)]
                m.d.sync += [slot_idx[p].eq(new_idx[p]) for p in range(k)]
                m.d.sync += [slot_valid[p].eq(slot_valid[p] | (idx >= p) if p else 1) for p in range(k)]

        # gate weights of the selected scores, rank order
        norm, f_in, fp = self.normalization, self.score_fmt.frac_bits, spec.prob_frac_bits
        weights = self.o.payload.weights
        if norm == "topk":
            m.d.comb += [self.o.valid.eq(res_valid), res_ready.eq(self.o.ready)]
            m.d.comb += [self.o.payload.experts[p].eq(res_idx[p]) for p in range(k)]
            m.d.comb += [weights[p].eq(requantize_hw(res_score[p], f_in, self.weight_fmt)) for p in range(k)]
            return m

        c1 = scale_code(1.0, spec)

        def logit(score, name):
            t = Signal(signed(spec.logit.width), name=name)
            m.d.comb += t.eq(requantize_hw(score * c1, f_in + spec.scale_fmt.frac_bits, spec.logit))
            return t

        def online(elems, name):  # softmax_codes' pass over a few logits: (max, sum)
            run_max, run_sum = spec.logit.qmin, 0
            for i, t in enumerate(elems):
                new_max, a, b = online_step_hw(m, run_max, t, spec, name=f"{name}_step{i}")
                nsum = Signal(unsigned(fp + 1 + ceil_log2(len(elems) + 1)), name=f"{name}_sum{i}")
                m.d.comb += nsum.eq(shift_round_hw(run_sum * a, fp) + b)
                run_max, run_sum = new_max, nsum
            return run_max, run_sum

        def prob(run_max, t, r, p):  # requantize(exp2_neg(m - t) * r), after the reciprocal's pipeline
            gap = Signal(unsigned(spec.logit.width + 1), name=f"gap{p}")
            m.d.comb += gap.eq(run_max - t)
            e = exp2_neg_hw(m, gap, spec, name=f"exp{p}")
            frac = fp + spec.recip_frac_bits
            m.d.comb += weights[p].eq(requantize_hw(e * r, frac, self.weight_fmt))

        logits = [logit(res_score[p], f"logit{p}") for p in range(k)]
        if norm in ("topk_then_softmax", "softmax_topk_renorm"):
            run_max, run_sum = online(logits, "sel")
            maxes, sums = [run_max], [run_sum]
        elif norm == "sigmoid_then_topk":  # softmax([t, 0])[0]
            maxes, sums = zip(*[online([logits[p], 0], f"sig{p}") for p in range(k)])
        else:  # softmax_then_topk: the online pass runs as the scores arrive
            all_max = Signal(signed(spec.logit.width), init=spec.logit.qmin)
            all_sum = Signal(unsigned(fp + 1 + ceil_log2(self.num_experts + 1)))
            res_max = Signal.like(all_max)
            res_sum = Signal.like(all_sum)
            t_in = logit(s, "logit_in")
            new_max, a, b = online_step_hw(m, all_max, t_in, spec, name="all")
            new_sum = Signal.like(all_sum)
            m.d.comb += new_sum.eq(shift_round_hw(all_sum * a, fp) + b)
            with m.If(self.scores.valid & self.scores.ready):
                with m.If(is_last):
                    m.d.sync += [all_max.eq(spec.logit.qmin), all_sum.eq(0), res_max.eq(new_max), res_sum.eq(new_sum)]
                with m.Else():
                    m.d.sync += [all_max.eq(new_max), all_sum.eq(new_sum)]
            maxes, sums = [res_max], [res_sum]

        # the reciprocals of the sums on the pipelined divider; the token travels with them
        lw = spec.logit.width
        tag = data.StructLayout({"experts": data.ArrayLayout(unsigned(self.expert_bits), k),
                                 "logits": data.ArrayLayout(signed(lw), k),
                                 "maxes": data.ArrayLayout(signed(lw), len(maxes))})
        m.submodules.recip = recip = reciprocal_divider(spec, max(len(x) for x in sums), count=len(sums),
                                                        tag_shape=tag)
        m.d.comb += [recip.i.valid.eq(res_valid), res_ready.eq(recip.i.ready)]
        for j, l_sum in enumerate(sums):
            dividend, divisor = reciprocal_operands_hw(l_sum, spec)
            m.d.comb += [recip.i.payload.dividend[j].eq(dividend), recip.i.payload.divisor[j].eq(divisor),
                         recip.i.payload.tag.maxes[j].eq(maxes[j])]
        m.d.comb += [recip.i.payload.tag.experts[p].eq(res_idx[p]) for p in range(k)]
        m.d.comb += [recip.i.payload.tag.logits[p].eq(logits[p]) for p in range(k)]

        out = recip.o.payload
        m.d.comb += [self.o.valid.eq(recip.o.valid), recip.o.ready.eq(self.o.ready)]
        m.d.comb += [self.o.payload.experts[p].eq(out.tag.experts[p]) for p in range(k)]
        for p in range(k):
            j = p if len(sums) > 1 else 0
            prob(out.tag.maxes[j], out.tag.logits[p], out.quotient[j], p)
        return m


class ExpertScheduler(wiring.Component):
    """Per-expert token queues and the expert schedule of one image.

    Parameters
    ----------
    num_experts, k, max_tokens : int
        Experts, experts per token, most tokens per image.

    Members
    -------
    route : In(stream.Signature(StructLayout({"experts": ArrayLayout(unsigned(eb), k), "last": 1})))
        The experts of token 0, 1, ...; ``last`` on the image's final token.
    schedule : Out(stream.Signature(StructLayout({"expert": unsigned(eb), "token": unsigned(tb), "last": 1})))
    prefetch : Out(stream.Signature(unsigned(eb)))
    """

    def __init__(self, num_experts: int, k: int, max_tokens: int):
        _check_pos(num_experts=num_experts, k=k, max_tokens=max_tokens)
        self.num_experts, self.k, self.max_tokens = num_experts, k, max_tokens
        self.expert_bits = max(1, ceil_log2(num_experts))
        self.token_bits = max(1, ceil_log2(max_tokens))
        eb, tb = self.expert_bits, self.token_bits
        super().__init__({
            "route": In(stream.Signature(data.StructLayout({"experts": data.ArrayLayout(unsigned(eb), k), "last": 1}))),
            "schedule": Out(stream.Signature(data.StructLayout({"expert": unsigned(eb), "token": unsigned(tb), "last": 1}))),
            "prefetch": Out(stream.Signature(unsigned(eb))),
        })

    def elaborate(self, platform):
        m = Module()
        n_e, n_tok, k = self.num_experts, self.max_tokens, self.k
        m.submodules.queues = queues = Memory(shape=unsigned(self.token_bits), depth=n_e * n_tok, init=[])
        wp = queues.write_port()
        rp = queues.read_port(domain="comb")
        counts = Array(Signal(range(n_tok + 1), name=f"count{e}") for e in range(n_e))

        scheduling = Signal()
        token = Signal(range(n_tok + 1))
        sel = Signal(range(k))
        # collect: one queue write a cycle, k per token
        expert_in = Signal(unsigned(self.expert_bits))
        m.d.comb += expert_in.eq(Array(self.route.payload.experts)[sel])
        m.d.comb += [
            self.route.ready.eq(~scheduling & (sel == k - 1)),
            wp.addr.eq(expert_in * n_tok + counts[expert_in]),
            wp.data.eq(token),
            wp.en.eq(~scheduling & self.route.valid),
        ]
        with m.If(~scheduling & self.route.valid):
            m.d.sync += counts[expert_in].eq(counts[expert_in] + 1)
            with m.If(sel == k - 1):
                m.d.sync += [sel.eq(0), token.eq(token + 1)]
                with m.If(self.route.payload.last):
                    m.d.sync += scheduling.eq(1)
            with m.Else():
                m.d.sync += sel.eq(sel + 1)

        # schedule: two scanning pointers over the experts, skipping empty queues
        pf_e = Signal(range(n_e + 1))
        sc_e = Signal(range(n_e + 1))
        sc_pos = Signal(range(n_tok))
        pf_count = Signal(range(n_e + 1))
        done_count = Signal(range(n_e + 1))
        pf_cnt = Signal(range(n_tok + 1))
        sc_cnt = Signal(range(n_tok + 1))
        m.d.comb += [
            pf_cnt.eq(counts[pf_e[: max(1, ceil_log2(n_e))]]),
            sc_cnt.eq(counts[sc_e[: max(1, ceil_log2(n_e))]]),
        ]
        pf_done = pf_e == n_e
        sc_done = sc_e == n_e
        m.d.comb += [
            self.prefetch.payload.eq(pf_e),
            self.prefetch.valid.eq(scheduling & ~pf_done & (pf_cnt != 0) & (pf_count <= done_count + 1)),
            rp.addr.eq(sc_e * n_tok + sc_pos),
            self.schedule.payload.expert.eq(sc_e),
            self.schedule.payload.token.eq(rp.data),
            self.schedule.payload.last.eq(sc_pos == sc_cnt - 1),
            self.schedule.valid.eq(scheduling & ~sc_done & (sc_cnt != 0) & (pf_done | (pf_count >= done_count + 2))),
        ]
        with m.If(scheduling):
            with m.If(~pf_done & (pf_cnt == 0)):
                m.d.sync += pf_e.eq(pf_e + 1)
            with m.If(self.prefetch.valid & self.prefetch.ready):
                m.d.sync += [pf_e.eq(pf_e + 1), pf_count.eq(pf_count + 1)]
            with m.If(~sc_done & (sc_cnt == 0)):
                m.d.sync += sc_e.eq(sc_e + 1)
            with m.If(self.schedule.valid & self.schedule.ready):
                with m.If(self.schedule.payload.last):
                    m.d.sync += [sc_e.eq(sc_e + 1), sc_pos.eq(0), done_count.eq(done_count + 1)]
                with m.Else():
                    m.d.sync += sc_pos.eq(sc_pos + 1)
            with m.If(pf_done & sc_done):  # image done: empty the queues
                m.d.sync += [scheduling.eq(0), token.eq(0), pf_e.eq(0), sc_e.eq(0), pf_count.eq(0), done_count.eq(0)]
                m.d.sync += [c.eq(0) for c in counts]
        return m
