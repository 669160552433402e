"""Engine of ATTENTION: one head, ``softmax(Q Kᵀ · scale) V``, on :class:`~fpga.hdl.attention.AttentionUnit`.

Instruction fields: ``src0`` = Q ``[Sq, D]``, ``src1`` = K ``[Sk, D]``, ``ext_addr[15:0]``
= V ``[Sk, D]``, ``dst`` = O ``[Sq, D]``, ``length`` = Sq, ``aux`` = Sk. From the top's
registers (``SET``): ``att_dim`` = D (at most the unit's ``head_dim``), ``att_in_stride``
(words between rows of Q, K and V: one head is a column slice of the QKV matrix),
``att_out_stride`` (words between rows of O), ``att_scale``
(:func:`hwgen.numerics.softmax.scale_code` of the op's scale, two's complement). D must be a multiple of
``lanes`` (an output word is never shared by two heads).

For each group of ``queries`` query rows: the rows go to the unit chunk by chunk
(``chunk / lanes`` words a chunk, elements ``>= D`` set to zero), then every key and
value row, chunk by chunk; the unit's output chunks are written to O (words past D are
not written). Buffer reads bound the engine: ``2 F·chunk/lanes`` reads per key per group
(``F = head_dim / chunk``), i.e. about ``Sq / queries · Sk · 2 · head_dim / lanes``
cycles per head.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .attention import AttentionUnit
from .engine import ceil_div_pow2, engine_members

__all__ = ["AttentionEngine", "ATTENTION_REGS"]

#: Widths of the registers the engine reads.
ATTENTION_REGS = {"att_dim": 16, "att_in_stride": 16, "att_out_stride": 16, "att_scale": 20}


class AttentionEngine(wiring.Component):
    """ATTENTION on ``config.attention_queries`` query lanes, ``config.attention_chunk`` elements a cycle."""

    def __init__(self, config, addr_bits: int):
        c = config
        self.lanes, self.data_bits, self.fmt = c.lanes, c.mem_port_bits, c.act_fmt
        self.head_dim, self.chunk, self.queries = c.attention_head_dim, c.attention_chunk, c.attention_queries
        if self.chunk % self.lanes:
            raise ValueError(f"attention_chunk={self.chunk} must be a multiple of the {self.lanes} activations a word holds")
        self.unit = AttentionUnit(self.head_dim, self.head_dim, max_keys=c.max_keys, queries=self.queries,
                                  scale=None, in_fmt=c.act_fmt, out_fmt=c.act_fmt, chunk=self.chunk)
        if len(self.unit.scale_code) > ATTENTION_REGS["att_scale"]:
            raise ValueError("the attention unit's scale code is wider than the att_scale register")
        members = {**engine_members(addr_bits, self.data_bits),
                   **{name: In(bits) for name, bits in ATTENTION_REGS.items()}}
        super().__init__(members)

    def _walk(self, m, advance, name, q_base, k_base, v_base, stride, n_q, n_k):
        """Counters of the read order (requests and responses walk it alike).

        Per group: phase Q: rows i < nq, chunk c, word j; phase KV: key, chunk c, part
        (0 = K, 1 = V), word j. Returns the signals and the word address.
        """
        wpc, nf = self.chunk // self.lanes, self.head_dim // self.chunk
        s = {k: Signal(16, name=f"{name}_{k}") for k in ("g0", "i", "key", "row_addr")}
        s.update(kv=Signal(name=f"{name}_kv"), c=Signal(range(nf), name=f"{name}_c"),
                 j=Signal(range(wpc), name=f"{name}_j"), part=Signal(name=f"{name}_part"),
                 done=Signal(name=f"{name}_done"))
        group_rows = Mux(n_q - s["g0"] < self.queries, n_q - s["g0"], self.queries)
        word_off = s["c"] * wpc + s["j"]
        addr = Mux(s["kv"], Mux(s["part"], v_base, k_base) + s["row_addr"], q_base + s["row_addr"]) + word_off
        last_word = (s["j"] == wpc - 1) & (s["c"] == nf - 1)
        with m.If(advance):
            m.d.sync += s["j"].eq(s["j"] + 1)
            with m.If(s["j"] == wpc - 1):
                m.d.sync += s["j"].eq(0)
                with m.If(~s["kv"]):
                    m.d.sync += s["c"].eq(s["c"] + 1)
                    with m.If(s["c"] == nf - 1):
                        m.d.sync += [s["c"].eq(0), s["i"].eq(s["i"] + 1), s["row_addr"].eq(s["row_addr"] + stride)]
                        with m.If(s["i"] + 1 == group_rows):
                            m.d.sync += [s["kv"].eq(1), s["i"].eq(0), s["key"].eq(0), s["row_addr"].eq(0)]
                with m.Else():
                    m.d.sync += s["part"].eq(~s["part"])
                    with m.If(s["part"]):
                        m.d.sync += s["c"].eq(s["c"] + 1)
                        with m.If(s["c"] == nf - 1):
                            m.d.sync += [s["c"].eq(0), s["key"].eq(s["key"] + 1),
                                         s["row_addr"].eq(s["row_addr"] + stride)]
                            with m.If(s["key"] + 1 == n_k):  # group done
                                m.d.sync += [s["kv"].eq(0), s["g0"].eq(s["g0"] + self.queries),
                                             s["row_addr"].eq((s["g0"] + self.queries) * stride)]
                                with m.If(s["g0"] + self.queries >= n_q):
                                    m.d.sync += s["done"].eq(1)
        s["group_rows"], s["addr"], s["last_word"] = group_rows, addr, last_word
        return s

    def elaborate(self, platform):
        m = Module()
        lanes, chunk, fw = self.lanes, self.chunk, self.fmt.width
        wpc, nf = chunk // lanes, self.head_dim // chunk
        m.submodules.unit = unit = self.unit
        q_base, k_base, v_base, o_base = Signal(16), Signal(16), Signal(16), Signal(16)
        n_q, n_k = Signal(16), Signal(16)
        head_dim, stride, o_stride = Signal(16), Signal(16), Signal(16)
        running = Signal()
        scale = Signal.like(unit.scale_code)
        m.d.comb += unit.scale_code.eq(scale)
        with m.If(self.start):
            a = self.args
            m.d.sync += [q_base.eq(a.src0), k_base.eq(a.src1), v_base.eq(a.ext_addr[:16]), o_base.eq(a.dst),
                         n_q.eq(a.length), n_k.eq(a.aux), head_dim.eq(self.att_dim), stride.eq(self.att_in_stride),
                         o_stride.eq(self.att_out_stride), scale.eq(self.att_scale), running.eq(1)]

        walk_args = (q_base, k_base, v_base, stride, n_q, n_k)
        req = self._walk(m, self.rd.valid & self.rd.ready, "rq", *walk_args)
        m.d.comb += [self.rd.valid.eq(running & ~req["done"]), self.rd.payload.eq(req["addr"])]

        # responses -> chunks: q beats and kv beats (elements >= D are zero)
        resp_adv = Signal()
        rsp = self._walk(m, resp_adv, "rs", *walk_args)
        held = Signal(2 * wpc * self.data_bits)          # K words then V words of a chunk (or Q words)
        w = self.rd_data.payload
        pos = Mux(rsp["kv"] & rsp["part"], wpc, 0) + rsp["j"]  # word position in `held`
        words = Cat(*[Mux(pos == i, w, held.word_select(i, self.data_bits)) for i in range(2 * wpc)])

        def masked(bits):  # the chunk's elements, zero from element D on
            elems = [bits[e * fw:(e + 1) * fw] for e in range(chunk)]
            return Cat(*[Mux(rsp["c"] * chunk + e < head_dim, el, 0) for e, el in enumerate(elems)])

        q_chunk = masked(words[:wpc * self.data_bits])
        k_chunk, v_chunk = masked(words[:wpc * self.data_bits]), masked(words[wpc * self.data_bits:])
        beat_q = ~rsp["kv"] & (rsp["j"] == wpc - 1)
        beat_kv = rsp["kv"] & rsp["part"] & (rsp["j"] == wpc - 1)
        m.d.comb += [
            unit.q.payload.data.eq(q_chunk),
            unit.q.payload.last.eq((rsp["i"] + 1 == rsp["group_rows"]) & (rsp["c"] == nf - 1)),
            unit.q.valid.eq(self.rd_data.valid & beat_q),
            unit.kv.payload.k.eq(k_chunk), unit.kv.payload.v.eq(v_chunk),
            unit.kv.payload.last.eq((rsp["key"] + 1 == n_k) & (rsp["c"] == nf - 1)),
            unit.kv.valid.eq(self.rd_data.valid & beat_kv),
            self.rd_data.ready.eq(Mux(beat_q, unit.q.ready, Mux(beat_kv, unit.kv.ready, 1))),
            resp_adv.eq(self.rd_data.valid & self.rd_data.ready),
        ]
        with m.If(resp_adv):
            m.d.sync += held.eq(words)

        # output chunks -> words of O (words past D dropped)
        o_row, o_c, o_j = Signal(16), Signal(range(nf)), Signal(range(wpc))
        o_row_addr = Signal(16)
        keep = o_c * wpc + o_j < ceil_div_pow2(head_dim, lanes)
        advance = unit.o.valid & (~keep | self.wr.ready)
        m.d.comb += [
            self.wr.valid.eq(unit.o.valid & keep),
            self.wr.payload.addr.eq(o_base + o_row_addr + o_c * wpc + o_j),
            self.wr.payload.data.eq(unit.o.payload.as_value().word_select(o_j, self.data_bits)),
            unit.o.ready.eq((o_j == wpc - 1) & (~keep | self.wr.ready)),
        ]
        with m.If(advance):
            m.d.sync += o_j.eq(o_j + 1)
            with m.If(o_j == wpc - 1):
                m.d.sync += [o_j.eq(0), o_c.eq(o_c + 1)]
                with m.If(o_c == nf - 1):
                    m.d.sync += [o_c.eq(0), o_row.eq(o_row + 1), o_row_addr.eq(o_row_addr + o_stride)]
        with m.If(self.start):
            for s in (req, rsp):
                m.d.sync += [s[k].eq(0) for k in ("g0", "i", "key", "row_addr", "kv", "c", "j", "part")]
                m.d.sync += s["done"].eq(self.args.length == 0)
            m.d.sync += [o_row.eq(0), o_c.eq(0), o_j.eq(0), o_row_addr.eq(0)]
        with m.If(running & (o_row == n_q) & ~self.start):
            m.d.comb += self.done.eq(1)
            m.d.sync += running.eq(0)
        return m
