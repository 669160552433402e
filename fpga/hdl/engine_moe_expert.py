"""Engines that run the experts of a MoE layer: MOE_GATHER and MOE_COMBINE.

After MOE_ROUTE has written the route table and the per-expert schedule
(:mod:`fpga.hdl.engine_moe`), the program runs, for each expert ``e`` and each chunk of at
most ``T`` of its tokens: MOE_GATHER, LINEAR fc1 (+GELU) and LINEAR fc2 with their row
count from the ``moe_rows`` register (LINEAR ``flags`` bit 1), MOE_COMBINE. So an
expert's weights are streamed only when it has tokens, and once per chunk (a LINEAR of
zero rows finishes at once and fetches nothing). Arithmetic: :mod:`hwgen.numerics.moe`.

**MOE_GATHER** — ``src0`` = X (token rows), ``dst`` = G, ``src1`` = L, ``aux`` = expert
``e``, ``length`` = T, ``ext_addr[15:0]`` = S (words a row of X and of G),
``ext_addr[31:16]`` = R (the route table). From the schedule entry at register
``moe_cursor`` on, while fewer than T rows are gathered, the cursor is below ``moe_end``
and the entry's expert (index field 0, :func:`fpga.isa.index_lanes`) is ``e``: read the
route word ``R + token`` (field 1 of the entry is the token), take the gate weight of
the first slot ``j < k`` whose expert is ``e`` (lane ``k + j``; 0 if no slot names ``e``,
which MOE_ROUTE's schedules never cause), copy the S words ``X[token·S ..]`` to ``G[count·S ..]``, write ``L[count]`` =
(index field 0 the token, the lane after it the weight, other lanes 0: lanes 0 and 1 at
16- and 32-bit activations, lanes 0-1 and 2 at int8). At the end the top sets ``moe_rows`` =
count and ``moe_cursor`` = the next entry. Cycles (no stalls): ``S + 9`` per gathered
row (entry and route word: two reads of 3 cycles each; S copied words, one a cycle, plus
the read latency; the list write), plus 4 to look at the entry that ends it (or 2 when
T or ``moe_end`` ends it).

**MOE_COMBINE** — ``src0`` = H (rows of ``So`` words), ``src1`` = L, ``dst`` = Y, ``aux`` =
So; rows = register ``moe_rows``. For each row ``i``: (token, w) = ``L[i]``; for each word
``j``: ``Y[token·So + j] = residual(Y, requantize(w·H[i·So + j], 2F -> act))`` lane by lane
(:func:`hwgen.numerics.moe.combine_codes`: the exact ``w x h`` product rounded half up and
saturated, then a saturating add). The rows of L must name distinct tokens (MOE_GATHER's
lists do): a Y word is read before the word of an earlier row is written back. Cycles
(no stalls): ``rows · (2·So + 5) + 6`` (1 for no rows): the list word (its read latency is not hidden),
then H and Y words alternately on the one read port, one result word every two cycles
through a four-stage pipeline (registered operands, the registered ``lanes`` products of
``act_fmt.width`` squared bits — four DSP48E2 each at 32 bits, so 32 for the default
eight lanes —, the rounded product, the saturating sum).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..isa import INDEX_BITS, index_lanes
from .engine import engine_members
from .softmax import requantize_hw, saturate_hw

__all__ = ["MoeGatherEngine", "MoeCombineEngine", "REG_BITS"]

#: Width of the moe_* registers (buffer addresses and row counts).
REG_BITS = 16


def _list_word(token, weight, fw: int, data_bits: int):
    """A list word: ``token`` in index field 0 (zero-extended), ``weight`` (``fw`` bits) in the
    lane after it, zeros above."""
    iw = index_lanes(fw) * fw
    return Cat(token[:INDEX_BITS], Const(0, iw - min(INDEX_BITS, len(token))), weight[:fw],
               Const(0, data_bits - iw - fw))


class MoeGatherEngine(wiring.Component):
    """MOE_GATHER (see the module docstring).

    Parameters
    ----------
    config : fpga.config.AcceleratorConfig
        ``moe_k``, ``act_fmt``, ``mem_port_bits``.
    addr_bits : int
        Buffer address width.

    Members
    -------
    cursor_in, end_in : In(16)
        Registers ``moe_cursor`` and ``moe_end`` (read at ``start``).
    reg_we : Out(1); cursor_out, rows_out : Out(16)
        ``reg_we`` pulses with ``done``: the top writes ``cursor_out`` to ``moe_cursor`` and
        ``rows_out`` to ``moe_rows``.
    """

    def __init__(self, config, addr_bits: int):
        c = config
        self.lanes, self.data_bits, self.fw, self.k = c.lanes, c.mem_port_bits, c.act_fmt.width, c.moe_k
        if 2 * self.k > self.lanes:
            raise ValueError(f"moe_k={self.k}: a route word holds {self.lanes // 2} experts and weights at most")
        self.iw = index_lanes(self.fw) * self.fw  # bits of an index field (whole lanes)
        if 3 * self.iw > self.data_bits:
            raise ValueError(f"a schedule entry (3 index fields of {self.iw} bits) does not fit a "
                             f"{self.data_bits}-bit buffer word")
        super().__init__({**engine_members(addr_bits, self.data_bits),
                          "cursor_in": In(REG_BITS), "end_in": In(REG_BITS),
                          "reg_we": Out(1), "cursor_out": Out(REG_BITS), "rows_out": Out(REG_BITS)})

    def elaborate(self, platform):
        m = Module()
        fw, k = self.fw, self.k
        x_base, g_addr, l_base, expert, t_max = (Signal(16, name=n)
                                                  for n in ("x_base", "g_addr", "l_base", "expert", "t_max"))
        s, table, cur, end, count = (Signal(16, name=n) for n in ("s", "table", "cur", "end", "count"))
        token, x_row = Signal(16), Signal(16)
        weight = Signal(fw)
        req_i, wr_i = Signal(16), Signal(16)
        word = self.rd_data.payload

        def lane(i):
            return word.word_select(i, fw)

        def field(i):  # index field i of a schedule entry
            return word.word_select(i, self.iw)[:INDEX_BITS]

        m.d.comb += [self.cursor_out.eq(cur), self.rows_out.eq(count)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    a = self.args
                    m.d.sync += [x_base.eq(a.src0), g_addr.eq(a.dst), l_base.eq(a.src1), expert.eq(a.aux),
                                 t_max.eq(a.length), s.eq(a.ext_addr[:16]), table.eq(a.ext_addr[16:32]),
                                 cur.eq(self.cursor_in), end.eq(self.end_in), count.eq(0)]
                    m.next = "ENTRY_REQ"
            with m.State("ENTRY_REQ"):  # the next schedule entry, unless T rows are there or the schedule ends
                more = (count != t_max) & (cur < end)
                m.d.comb += [self.rd.valid.eq(more), self.rd.payload.eq(cur)]
                with m.If(~more):
                    m.next = "FINISH"
                with m.Elif(self.rd.ready):
                    m.next = "ENTRY"
            with m.State("ENTRY"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    with m.If(field(0) != expert):
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += token.eq(field(1))
                        m.next = "ROUTE_REQ"
            with m.State("ROUTE_REQ"):
                m.d.comb += [self.rd.valid.eq(1), self.rd.payload.eq(table + token)]
                with m.If(self.rd.ready):
                    m.d.sync += x_row.eq(x_base + (token * s)[:16])
                    m.next = "ROUTE"
            with m.State("ROUTE"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    m.d.sync += weight.eq(0)
                    for j in reversed(range(k)):  # the first matching slot wins (assigned last)
                        with m.If(lane(j) == expert):
                            m.d.sync += weight.eq(lane(k + j))
                    m.d.sync += [req_i.eq(0), wr_i.eq(0)]
                    m.next = "COPY"
            with m.State("COPY"):  # S words X -> G: reads and writes stream, one a cycle
                m.d.comb += [self.rd.valid.eq(req_i < s), self.rd.payload.eq(x_row + req_i),
                             self.wr.valid.eq(self.rd_data.valid), self.rd_data.ready.eq(self.wr.ready),
                             self.wr.payload.addr.eq(g_addr + wr_i), self.wr.payload.data.eq(word)]
                with m.If(self.rd.valid & self.rd.ready):
                    m.d.sync += req_i.eq(req_i + 1)
                with m.If(self.wr.valid & self.wr.ready):
                    m.d.sync += wr_i.eq(wr_i + 1)
                with m.If((wr_i == s) | (self.wr.valid & self.wr.ready & (wr_i + 1 == s))):
                    m.next = "LIST"
            with m.State("LIST"):
                m.d.comb += [self.wr.valid.eq(1), self.wr.payload.addr.eq(l_base + count),
                             self.wr.payload.data.eq(_list_word(token, weight, fw, self.data_bits))]
                with m.If(self.wr.ready):
                    m.d.sync += [count.eq(count + 1), cur.eq(cur + 1), g_addr.eq(g_addr + s)]
                    m.next = "ENTRY_REQ"
            with m.State("FINISH"):
                m.d.comb += [self.done.eq(1), self.reg_we.eq(1)]
                m.next = "IDLE"
        return m


class MoeCombineEngine(wiring.Component):
    """MOE_COMBINE (see the module docstring).

    Parameters
    ----------
    config : fpga.config.AcceleratorConfig
        ``act_fmt``, ``mem_port_bits``.
    addr_bits : int
        Buffer address width.

    Members
    -------
    rows_in : In(16)
        Register ``moe_rows`` (read at ``start``).
    """

    def __init__(self, config, addr_bits: int):
        c = config
        self.lanes, self.data_bits, self.fmt = c.lanes, c.mem_port_bits, c.act_fmt
        super().__init__({**engine_members(addr_bits, self.data_bits), "rows_in": In(REG_BITS)})

    def elaborate(self, platform):
        m = Module()
        fmt, lanes = self.fmt, self.lanes
        fw, f = fmt.width, fmt.frac_bits
        h_addr, l_base, y_base, so = (Signal(16, name=n) for n in ("h_addr", "l_base", "y_base", "so"))
        n_rows, i, j, y_row = (Signal(16, name=n) for n in ("n_rows", "i", "j", "y_row"))
        running = Signal()
        word = self.rd_data.payload

        # --- requests: per row the list word, then H and Y words alternately ----------
        token, w = Signal(16), Signal(signed(fw))   # the row's list word (set by the response side)
        l_got = Signal()                            # the list word of row i has arrived
        is_y = Signal()                             # the next stream request is the Y word
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    a = self.args
                    m.d.sync += [h_addr.eq(a.src0), l_base.eq(a.src1), y_base.eq(a.dst), so.eq(a.aux),
                                 n_rows.eq(self.rows_in), i.eq(0)]
                    m.next = "LIST_REQ"
            with m.State("LIST_REQ"):
                m.d.comb += [self.rd.valid.eq(i != n_rows), self.rd.payload.eq(l_base + i)]
                with m.If(i == n_rows):  # every request made: the response side ends the instruction
                    m.next = "IDLE"
                with m.Elif(self.rd.ready):
                    m.next = "LIST_WAIT"
            with m.State("LIST_WAIT"):
                with m.If(l_got):
                    m.d.sync += [y_row.eq(y_base + (token * so)[:16]), j.eq(0), is_y.eq(0), l_got.eq(0)]
                    m.next = "STREAM"
            with m.State("STREAM"):
                row_end = j == so
                m.d.comb += [self.rd.valid.eq(~row_end), self.rd.payload.eq(Mux(is_y, y_row + j, h_addr + j))]
                with m.If(row_end):
                    m.d.sync += [i.eq(i + 1), h_addr.eq(h_addr + so)]
                    m.next = "LIST_REQ"
                with m.Elif(self.rd.ready):
                    m.d.sync += is_y.eq(~is_y)
                    with m.If(is_y):
                        m.d.sync += j.eq(j + 1)

        # --- responses: list word / H word / Y word -> pipeline -----------------------
        KIND_L, KIND_H, KIND_Y = 0, 1, 2
        kind = Signal(2)
        r_j, rows_seen = Signal(16), Signal(16)
        h_hold = Signal(self.data_bits)
        # pipeline: 1 operands, 2 products, 3 rounded products, 4 sums (-> wr)
        v = [Signal(name=f"v{s}") for s in range(1, 5)]
        addr = [Signal(16, name=f"addr{s}") for s in range(1, 5)]
        y_pipe = [Signal(self.data_bits, name=f"y{s}") for s in range(1, 4)]
        h1, w1 = Signal(self.data_bits), Signal(signed(fw))
        prod = [Signal(signed(2 * fw), name=f"prod{q}") for q in range(lanes)]
        rounded = [Signal(signed(fw), name=f"rounded{q}") for q in range(lanes)]
        out = Signal(self.data_bits)
        adv = ~v[3] | self.wr.ready
        m.d.comb += [self.wr.valid.eq(v[3]), self.wr.payload.addr.eq(addr[3]), self.wr.payload.data.eq(out)]
        m.d.comb += self.rd_data.ready.eq((kind != KIND_Y) | adv)
        take = self.rd_data.valid & self.rd_data.ready
        row_last = r_j + 1 == so
        with m.If(take):
            with m.Switch(kind):
                with m.Case(KIND_L):
                    m.d.sync += [token.eq(word[:INDEX_BITS]), w.eq(word.word_select(index_lanes(fw), fw)), l_got.eq(1),
                                 r_j.eq(0)]
                    with m.If(so == 0):
                        m.d.sync += rows_seen.eq(rows_seen + 1)
                    with m.Else():
                        m.d.sync += kind.eq(KIND_H)
                with m.Case(KIND_H):
                    m.d.sync += [h_hold.eq(word), kind.eq(KIND_Y)]
                with m.Default():
                    m.d.sync += [r_j.eq(r_j + 1), kind.eq(KIND_H)]
                    with m.If(row_last):
                        m.d.sync += [kind.eq(KIND_L), rows_seen.eq(rows_seen + 1)]
        with m.If(adv):
            m.d.sync += [v[0].eq(take & (kind == KIND_Y)), h1.eq(h_hold), w1.eq(w), y_pipe[0].eq(word),
                         addr[0].eq(y_row + r_j)]
            for s in range(1, 4):
                m.d.sync += [v[s].eq(v[s - 1]), addr[s].eq(addr[s - 1])]
            m.d.sync += [y_pipe[1].eq(y_pipe[0]), y_pipe[2].eq(y_pipe[1])]
            for q in range(lanes):
                m.d.sync += [prod[q].eq(w1 * h1.word_select(q, fw).as_signed()),
                             rounded[q].eq(requantize_hw(prod[q], 2 * f, fmt)),
                             out.word_select(q, fw).eq(
                                 saturate_hw(y_pipe[2].word_select(q, fw).as_signed() + rounded[q], fmt))]

        with m.If(self.start):
            m.d.sync += [kind.eq(KIND_L), rows_seen.eq(0), running.eq(1), l_got.eq(0)]
        finished = running & (rows_seen == n_rows) & ~v[0] & ~v[1] & ~v[2] & ~v[3] & ~self.start
        with m.If(finished):
            m.d.comb += self.done.eq(1)
            m.d.sync += running.eq(0)
        return m
