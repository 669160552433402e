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

from amaranth.hdl import Array, Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat
from hwgen.numerics.softmax import SOFTMAX_DEFAULT, SoftmaxSpec, scale_code
from hwgen.numerics.topk import NORMALIZATIONS

from .softmax import exp2_neg_hw, online_step_hw, reciprocal_divider, reciprocal_operands_hw, requantize_hw, shift_round_hw
from .unit_timing import GATE_POST_STAGES, GATE_PRE_STAGES

__all__ = ["TopKUnit", "ExpertScheduler", "GATE_PRE_STAGES", "GATE_POST_STAGES"]

# GATE_PRE_STAGES / GATE_POST_STAGES (fpga.hdl.unit_timing): registers between a token's
# top-k result and the reciprocal's input (the logits, then the online maxima and sums), and
# after the reciprocal (exp2(max - t) and r, their product, the requantised weight): cycles
# they add to a token's gate weights (the modes with a softmax; "topk" has neither).


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
        lw = spec.logit.width

        def stage(name, valid_in, ready_next, values):
            """One elastic register stage: ``values`` ({name: (shape, value)}) move on when the
            stage is empty or its word is taken. Returns (valid, ready, {name: register})."""
            valid, ready = Signal(name=f"{name}_valid"), Signal(name=f"{name}_ready")
            m.d.comb += ready.eq(~valid | ready_next)
            regs = {}
            with m.If(ready):
                m.d.sync += valid.eq(valid_in)
                for key, (shape, value) in values.items():
                    regs[key] = Signal(shape, name=f"{name}_{key}")
                    m.d.sync += regs[key].eq(value)
            return valid, ready, regs

        def logit(score, name):
            t = Signal(signed(lw), name=name)
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

        expert_shape = data.ArrayLayout(unsigned(self.expert_bits), k)
        logit_shape = data.ArrayLayout(signed(lw), k)
        carried = {}
        if norm == "softmax_then_topk":  # the online pass runs as the scores arrive
            all_max = Signal(signed(lw), init=spec.logit.qmin)
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
            carried = {"max": (res_max.shape(), res_max), "sum": (res_sum.shape(), res_sum)}

        # GATE_PRE_STAGES registers before the reciprocal: 1 the logits, 2 the online maxima and sums
        s_ready = Signal()
        l_valid, l_ready, l_regs = stage("gate_logits", res_valid, s_ready, {
            "experts": (expert_shape, Cat(*res_idx)),
            "logits": (logit_shape, Cat(*[logit(res_score[p], f"logit{p}") for p in range(k)])),
            **carried})
        m.d.comb += res_ready.eq(l_ready)
        l_logits = [l_regs["logits"][p] for p in range(k)]
        if norm in ("topk_then_softmax", "softmax_topk_renorm"):
            run_max, run_sum = online(l_logits, "sel")
            maxes, sums = [run_max], [run_sum]
        elif norm == "sigmoid_then_topk":  # softmax([t, 0])[0]
            maxes, sums = zip(*[online([l_logits[p], 0], f"sig{p}") for p in range(k)])
        else:
            maxes, sums = [l_regs["max"]], [l_regs["sum"]]
        sum_bits = max(len(x) for x in sums)
        maxes_shape = data.ArrayLayout(signed(lw), len(maxes))
        sums_shape = data.ArrayLayout(unsigned(sum_bits), len(sums))
        m.submodules.recip = recip = reciprocal_divider(spec, sum_bits, count=len(sums), tag_shape=data.StructLayout({
            "experts": expert_shape, "logits": logit_shape, "maxes": maxes_shape}))
        maxes_word, sums_word = Signal(maxes_shape), Signal(sums_shape)
        m.d.comb += [maxes_word[j].eq(x) for j, x in enumerate(maxes)]
        m.d.comb += [sums_word[j].eq(x) for j, x in enumerate(sums)]
        s_valid, s_ready_, s_regs = stage("gate_sums", l_valid, recip.i.ready, {
            "experts": (expert_shape, l_regs["experts"]), "logits": (logit_shape, l_regs["logits"]),
            "maxes": (maxes_shape, maxes_word), "sums": (sums_shape, sums_word)})
        m.d.comb += s_ready.eq(s_ready_)
        m.d.comb += recip.i.valid.eq(s_valid)
        for j in range(len(sums)):
            dividend, divisor = reciprocal_operands_hw(s_regs["sums"][j], spec)
            m.d.comb += [recip.i.payload.dividend[j].eq(dividend), recip.i.payload.divisor[j].eq(divisor)]
        m.d.comb += [recip.i.payload.tag.experts.eq(s_regs["experts"]), recip.i.payload.tag.logits.eq(s_regs["logits"]),
                     recip.i.payload.tag.maxes.eq(s_regs["maxes"])]

        # GATE_POST_STAGES registers after it: 1 exp2(max - t) and r, 2 their product, 3 the requantised weight
        out = recip.o.payload
        q_bits = len(out.quotient[0])
        frac = fp + spec.recip_frac_bits
        exps, recips = [], []
        for p in range(k):
            j = p if len(sums) > 1 else 0
            gap = Signal(unsigned(lw + 1), name=f"gap{p}")
            m.d.comb += gap.eq(out.tag.maxes[j] - out.tag.logits[p])
            exps.append(exp2_neg_hw(m, gap, spec, name=f"exp{p}"))
            recips.append(out.quotient[j])
        e_shape, r_shape = data.ArrayLayout(unsigned(fp + 1), k), data.ArrayLayout(unsigned(q_bits), k)
        prod_shape = data.ArrayLayout(unsigned(fp + 1 + q_bits), k)
        w_shape = data.ArrayLayout(signed(self.weight_fmt.width), k)
        p2_ready, p3_ready = Signal(), Signal()
        p1_valid, p1_ready, p1 = stage("gate_exp", recip.o.valid, p2_ready, {
            "experts": (expert_shape, out.tag.experts), "exps": (e_shape, Cat(*exps)), "recips": (r_shape, Cat(*recips))})
        m.d.comb += recip.o.ready.eq(p1_ready)
        p2_valid, p2_ready_, p2 = stage("gate_prod", p1_valid, p3_ready, {
            "experts": (expert_shape, p1["experts"]),
            "prods": (prod_shape, Cat(*[p1["exps"][p] * p1["recips"][p] for p in range(k)]))})
        m.d.comb += p2_ready.eq(p2_ready_)
        p3_valid, p3_ready_, p3 = stage("gate_weight", p2_valid, self.o.ready, {
            "experts": (expert_shape, p2["experts"]),
            "weights": (w_shape, Cat(*[requantize_hw(p2["prods"][p], frac, self.weight_fmt) for p in range(k)]))})
        m.d.comb += p3_ready.eq(p3_ready_)
        m.d.comb += [self.o.valid.eq(p3_valid), self.o.payload.experts.eq(p3["experts"]),
                     self.o.payload.weights.eq(p3["weights"])]
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
