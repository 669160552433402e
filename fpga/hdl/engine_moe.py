"""Engine of MOE_ROUTE: gate scores -> top-k experts and gate weights -> the expert schedule.

Instruction fields: ``src0`` = gate scores ``[M, E]`` (the first ``ceil(E / lanes)`` words
of each row; row stride ``ext_addr[15:0]`` words, or ``ceil(E / lanes)`` when that is 0:
e.g. scores from a LINEAR padded to ``mac_cols``),
``length`` = M tokens, ``aux`` = E (at most the unit's ``moe_experts``; missing experts
score the most negative code, so they are never chosen ahead of a real one and, but for
``softmax_then_topk``, change no weight), ``dst`` = the route table, ``src1`` = the
schedule.

* Route table: word ``dst + t`` holds token ``t``'s experts (best first) in lanes
  ``0 .. k-1`` and their gate weights (activation codes) in lanes ``k .. 2k-1``.
* Schedule: word ``src1`` holds the number of entries (``M * k``) in index field 0 and
  the number of experts with tokens in field 1; words ``src1 + 1 + n`` are the entries in
  schedule order, field 0 the expert, field 1 the token, field 2 one on an expert's last
  token (:class:`~fpga.hdl.moe.ExpertScheduler`: each expert once, in increasing id, its
  tokens in order, so that its weights load once per image). Index fields are 16 bits in
  :func:`fpga.isa.index_lanes` whole lanes: lane ``i`` at 16- and 32-bit activations,
  lanes ``2i, 2i + 1`` at int8.

Cycles: ``M * E`` score beats (one a cycle) plus ``k`` per token in the queues, then
``M * k`` schedule entries.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring

from ..isa import INDEX_BITS, index_lanes
from .engine import ceil_div_pow2, engine_members
from .moe import ExpertScheduler, TopKUnit

__all__ = ["MoeRouteEngine"]


class MoeRouteEngine(wiring.Component):
    """MOE_ROUTE over ``config.moe_experts`` experts, top ``config.moe_k``."""

    def __init__(self, config, addr_bits: int):
        c = config
        self.lanes, self.data_bits, self.fmt = c.lanes, c.mem_port_bits, c.act_fmt
        self.n_e, self.k, self.max_tokens = c.moe_experts, c.moe_k, c.max_keys
        if 2 * self.k > self.lanes:
            raise ValueError(f"moe_k={self.k}: a route-table word holds {self.lanes // 2} experts and weights at most")
        if self.n_e > 1 << self.fmt.width:
            raise ValueError(f"moe_experts={self.n_e}: a route-table lane of {self.fmt.width} bits names "
                             f"{1 << self.fmt.width} experts at most")
        self.index_bits = index_lanes(self.fmt.width) * self.fmt.width
        if 3 * self.index_bits > self.data_bits:
            raise ValueError(f"a schedule entry (3 index fields of {self.index_bits} bits) does not fit a "
                             f"{self.data_bits}-bit buffer word")
        self.topk = TopKUnit(self.n_e, self.k, c.act_fmt, c.act_fmt, c.moe_normalization)
        self.sched = ExpertScheduler(self.n_e, self.k, self.max_tokens)
        super().__init__(engine_members(addr_bits, self.data_bits))

    def elaborate(self, platform):
        m = Module()
        lanes, fw, n_e, k = self.lanes, self.fmt.width, self.n_e, self.k
        m.submodules.topk = topk = self.topk
        m.submodules.sched = sched = self.sched
        src, table, sched_base = Signal(16), Signal(16), Signal(16)
        n_tok, n_exp, stride = Signal(16), Signal(16), Signal(16)
        words = Signal(16)  # words of a row that hold scores: ceil(E / lanes)
        running = Signal()
        with m.If(self.start):
            a = self.args
            w = ceil_div_pow2(a.aux, lanes)
            m.d.sync += [src.eq(a.src0), table.eq(a.dst), sched_base.eq(a.src1), n_tok.eq(a.length),
                         n_exp.eq(a.aux), running.eq(1), words.eq(w),
                         stride.eq(Mux(a.ext_addr[:16] != 0, a.ext_addr[:16], w))]

        # reads: token t, word w of its scores
        rq_t, rq_w, rq_row = Signal(16), Signal(16), Signal(16)
        m.d.comb += [self.rd.valid.eq(running & (rq_t < n_tok)), self.rd.payload.eq(rq_row + rq_w)]
        with m.If(self.rd.valid & self.rd.ready):
            m.d.sync += rq_w.eq(rq_w + 1)
            with m.If(rq_w == words - 1):
                m.d.sync += [rq_w.eq(0), rq_t.eq(rq_t + 1), rq_row.eq(rq_row + stride)]

        # words -> one score a beat, experts 0 .. n_e - 1 (missing ones: the most negative code)
        e = Signal(range(n_e))
        f_t = Signal(16)            # token being fed
        have = Signal()             # `word` holds the word of expert e
        word = Signal(self.data_bits)
        lane = e % lanes
        real = e < n_exp
        m.d.comb += self.rd_data.ready.eq(running & real & ~have & (f_t < n_tok))
        with m.If(self.rd_data.valid & self.rd_data.ready):
            m.d.sync += [word.eq(self.rd_data.payload), have.eq(1)]
        m.d.comb += [topk.scores.payload.eq(Mux(real, word.word_select(lane, fw), Const(self.fmt.qmin, fw))),
                     topk.scores.valid.eq(running & (f_t < n_tok) & (have | ~real))]
        with m.If(topk.scores.valid & topk.scores.ready):
            m.d.sync += e.eq(e + 1)
            with m.If(real & ((lane == lanes - 1) | (e + 1 == n_exp))):
                m.d.sync += have.eq(0)
            with m.If(e == n_e - 1):
                m.d.sync += [e.eq(0), f_t.eq(f_t + 1)]

        # top-k results -> route table and the scheduler's queues
        o_t = Signal(16)
        m.d.comb += [
            sched.route.payload.experts.eq(topk.o.payload.experts),
            sched.route.payload.last.eq(o_t == n_tok - 1),
            sched.route.valid.eq(running & topk.o.valid & (o_t < n_tok)),
            topk.o.ready.eq(sched.route.ready),
        ]
        eb = topk.expert_bits
        route_word = Cat(*[Cat(topk.o.payload.experts[p], Const(0, fw - eb)) for p in range(k)],
                         *[topk.o.payload.weights[p] for p in range(k)])
        # schedule entries -> words
        n_sched, n_used = Signal(16), Signal(16)
        ent = sched.schedule.payload
        iw = self.index_bits  # an index field: INDEX_BITS bits in whole lanes
        ent_word = Cat(Cat(ent.expert, Const(0, iw - len(ent.expert))), Cat(ent.token, Const(0, iw - len(ent.token))),
                       Cat(ent.last, Const(0, iw - 1)))
        total = Signal(32)
        header_written = Signal()
        m.d.comb += [sched.prefetch.ready.eq(1), total.eq(n_tok * k)]
        write_route = sched.route.valid & sched.route.ready
        with m.If(write_route):
            m.d.comb += [self.wr.valid.eq(1), self.wr.payload.addr.eq(table + o_t), self.wr.payload.data.eq(route_word)]
            m.d.sync += o_t.eq(o_t + 1)
        with m.Elif(sched.schedule.valid):
            m.d.comb += [self.wr.valid.eq(1), self.wr.payload.addr.eq(sched_base + 1 + n_sched),
                         self.wr.payload.data.eq(ent_word), sched.schedule.ready.eq(self.wr.ready)]
            with m.If(self.wr.ready):
                m.d.sync += n_sched.eq(n_sched + 1)
                with m.If(ent.last):
                    m.d.sync += n_used.eq(n_used + 1)
        with m.Elif(running & (n_sched == total) & ~header_written & (o_t == n_tok)):
            m.d.comb += [self.wr.valid.eq(1), self.wr.payload.addr.eq(sched_base),
                         self.wr.payload.data.eq(Cat(n_sched, Const(0, iw - INDEX_BITS), n_used))]
            m.d.sync += header_written.eq(self.wr.ready)
        with m.If(self.start):
            m.d.sync += [rq_t.eq(0), rq_w.eq(0), rq_row.eq(self.args.src0), e.eq(0), f_t.eq(0), have.eq(0), o_t.eq(0),
                         n_sched.eq(0), n_used.eq(0), header_written.eq(0)]
        with m.If(running & header_written & ~self.start):
            m.d.comb += self.done.eq(1)
            m.d.sync += running.eq(0)
        return m
