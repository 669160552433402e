"""Engines that run the experts of a MoE layer: MOE_GATHER and MOE_COMBINE.

After MOE_ROUTE has written the route table and the per-expert schedule
(:mod:`fpga.hdl.engine_moe`), the program runs, for each expert ``e`` and each chunk of at
most ``T`` of its tokens: MOE_GATHER, LINEAR fc1 (+GELU) and LINEAR fc2 with their row
count from the ``moe_rows`` register (LINEAR ``flags`` bit 1), MOE_COMBINE. So an
expert's weights are streamed only when it has tokens, and once per chunk.

**MOE_GATHER** — ``src0`` = X (token rows), ``dst`` = G, ``src1`` = L, ``aux`` = expert
``e``, ``length`` = T, ``ext_addr[15:0]`` = S (words a row of X and of G),
``ext_addr[31:16]`` = R (the route table). From the schedule entry at register
``moe_cursor`` on, while fewer than T rows are gathered, the cursor is below ``moe_end``
and the entry's expert (lane 0) is ``e``: read the route word ``R + token`` (lane 1 of the
entry is the token), take the gate weight of the first slot ``j < k`` whose expert is
``e`` (lane ``k + j``), copy the S words ``X[token·S ..]`` to ``G[count·S ..]``, write
``L[count]`` = (lane 0 token, lane 1 weight). At the end ``moe_rows`` = count and
``moe_cursor`` = the next entry. Cycles: per row about ``S + 8`` (two one-word reads, S
copied words at one a cycle, one list write), plus about 4 to look at the entry that ends it.

**MOE_COMBINE** — ``src0`` = H (rows of ``So`` words), ``src1`` = L, ``dst`` = Y, ``aux`` =
So; rows = register ``moe_rows``. For each row ``i``: (token, w) = ``L[i]``; for each word
``j``: ``Y[token·So + j] = residual(Y, requantize(w·H[i·So + j], 2F -> act))`` lane by lane
(:func:`hwgen.numerics.moe.combine_codes`: the exact ``w x h`` product rounded half up and
saturated, then a saturating add). Cycles: per row 3 + about 6 a word (two reads, a
registered product, a write). ``lanes`` multipliers of ``act_fmt.width`` squared bits.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .engine import engine_members
from .softmax import requantize_hw

__all__ = ["MoeGatherEngine", "MoeCombineEngine", "REG_BITS"]

#: Width of the moe_* registers (buffer addresses and row counts).
REG_BITS = 16


class MoeGatherEngine(wiring.Component):
    """MOE_GATHER (see the module docstring).

    Members
    -------
    moe_cursor, moe_end : In(16)
        The registers.
    reg_we : Out(1); next_cursor, rows_gathered : Out(16)
        ``reg_we`` pulses with ``done``: the top writes them to ``moe_cursor`` and ``moe_rows``.
    """

    def __init__(self, config, addr_bits: int):
        c = config
        self.lanes, self.data_bits, self.fw, self.k = c.lanes, c.mem_port_bits, c.act_fmt.width, c.moe_k
        if 2 * self.k > self.lanes:
            raise ValueError(f"moe_k={self.k}: a route word holds {self.lanes // 2} experts and weights at most")
        super().__init__({**engine_members(addr_bits, self.data_bits),
                          "moe_cursor": In(REG_BITS), "moe_end": In(REG_BITS),
                          "reg_we": Out(1), "next_cursor": Out(REG_BITS), "rows_gathered": Out(REG_BITS)})

    def elaborate(self, platform):
        m = Module()
        fw, k = self.fw, self.k
        x_base, g_addr, l_base, expert, t_max = (Signal(16, name=n) for n in ("x_base", "g_addr", "l_base", "expert", "t_max"))
        s, table, cur, end, count = (Signal(16, name=n) for n in ("s", "table", "cur", "end", "count"))
        token, x_row = Signal(16), Signal(16)
        weight = Signal(fw)
        req_i, wr_i = Signal(16), Signal(16)
        word = self.rd_data.payload

        def lane(i):
            return word.word_select(i, fw)

        m.d.comb += [self.next_cursor.eq(cur), self.rows_gathered.eq(count)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    a = self.args
                    m.d.sync += [x_base.eq(a.src0), g_addr.eq(a.dst), l_base.eq(a.src1), expert.eq(a.aux),
                                 t_max.eq(a.length), s.eq(a.ext_addr[:16]), table.eq(a.ext_addr[16:32]),
                                 cur.eq(self.moe_cursor), end.eq(self.moe_end), count.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                with m.If((count == t_max) | (cur >= end)):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "ENTRY_REQ"
            with m.State("ENTRY_REQ"):
                m.d.comb += [self.rd.valid.eq(1), self.rd.payload.eq(cur)]
                with m.If(self.rd.ready):
                    m.next = "ENTRY"
            with m.State("ENTRY"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    with m.If(lane(0) != expert):
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += token.eq(lane(1)[:16])
                        m.next = "ROUTE_REQ"
            with m.State("ROUTE_REQ"):
                m.d.comb += [self.rd.valid.eq(1), self.rd.payload.eq(table + token)]
                with m.If(self.rd.ready):
                    m.d.sync += x_row.eq(x_base + (token * s)[:16])
                    m.next = "ROUTE"
            with m.State("ROUTE"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    for j in reversed(range(k)):  # the first matching slot wins (assigned last)
                        with m.If(lane(j) == expert):
                            m.d.sync += weight.eq(lane(k + j))
                    m.d.sync += [req_i.eq(0), wr_i.eq(0)]
                    m.next = "COPY"
            with m.State("COPY"):
                m.d.comb += [self.rd.valid.eq(req_i < s), self.rd.payload.eq(x_row + req_i),
                             self.wr.valid.eq(self.rd_data.valid), self.rd_data.ready.eq(self.wr.ready),
                             self.wr.payload.addr.eq(g_addr + wr_i), self.wr.payload.data.eq(word)]
                with m.If(self.rd.valid & self.rd.ready):
                    m.d.sync += req_i.eq(req_i + 1)
                with m.If(self.wr.valid & self.wr.ready):
                    m.d.sync += wr_i.eq(wr_i + 1)
                    with m.If(wr_i + 1 == s):
                        m.next = "LIST"
            with m.State("LIST"):
                m.d.comb += [self.wr.valid.eq(1), self.wr.payload.addr.eq(l_base + count),
                             self.wr.payload.data.eq(Cat(token, Const(0, fw - 16), weight))]
                with m.If(self.wr.ready):
                    m.d.sync += [count.eq(count + 1), cur.eq(cur + 1), g_addr.eq(g_addr + s)]
                    m.next = "CHECK"
            with m.State("FINISH"):
                m.d.comb += [self.done.eq(1), self.reg_we.eq(1)]
                m.next = "IDLE"
        return m


class MoeCombineEngine(wiring.Component):
    """MOE_COMBINE (see the module docstring).

    Members
    -------
    moe_rows : In(16)
        The register.
    """

    def __init__(self, config, addr_bits: int):
        c = config
        self.lanes, self.data_bits, self.fmt = c.lanes, c.mem_port_bits, c.act_fmt
        super().__init__({**engine_members(addr_bits, self.data_bits), "moe_rows": In(REG_BITS)})

    def elaborate(self, platform):
        m = Module()
        fmt, lanes = self.fmt, self.lanes
        fw, f = fmt.width, fmt.frac_bits
        h_row, l_base, y_base, so = (Signal(16, name=n) for n in ("h_row", "l_base", "y_base", "so"))
        n_rows, i, j, y_row, token = (Signal(16, name=n) for n in ("n_rows", "i", "j", "y_row", "token"))
        w = Signal(signed(fw))
        h = Signal(self.data_bits)
        y = Signal(self.data_bits)
        prods = [Signal(signed(2 * fw), name=f"prod{k}") for k in range(lanes)]
        word = self.rd_data.payload
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    a = self.args
                    m.d.sync += [h_row.eq(a.src0), l_base.eq(a.src1), y_base.eq(a.dst), so.eq(a.aux),
                                 n_rows.eq(self.moe_rows), i.eq(0)]
                    m.next = "ROW"
            with m.State("ROW"):
                with m.If(i == n_rows):
                    m.next = "FINISH"
                with m.Else():
                    m.next = "LIST_REQ"
            with m.State("LIST_REQ"):
                m.d.comb += [self.rd.valid.eq(1), self.rd.payload.eq(l_base + i)]
                with m.If(self.rd.ready):
                    m.next = "LIST"
            with m.State("LIST"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    m.d.sync += [token.eq(word[:16]), w.eq(word.word_select(1, fw).as_signed()), j.eq(0)]
                    m.next = "ROW_ADDR"
            with m.State("ROW_ADDR"):
                m.d.sync += y_row.eq(y_base + (token * so)[:16])
                m.next = "WORD"
            with m.State("WORD"):
                with m.If(j == so):
                    m.d.sync += [i.eq(i + 1), h_row.eq(h_row + so)]
                    m.next = "ROW"
                with m.Else():
                    m.next = "H_REQ"
            with m.State("H_REQ"):
                m.d.comb += [self.rd.valid.eq(1), self.rd.payload.eq(h_row + j)]
                with m.If(self.rd.ready):
                    m.next = "H"
            with m.State("H"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    m.d.sync += h.eq(word)
                    m.next = "Y_REQ"
            with m.State("Y_REQ"):
                m.d.comb += [self.rd.valid.eq(1), self.rd.payload.eq(y_row + j)]
                with m.If(self.rd.ready):
                    m.next = "Y"
            with m.State("Y"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(self.rd_data.valid):
                    m.d.sync += y.eq(word)
                    for k in range(lanes):
                        m.d.sync += prods[k].eq(w * h.word_select(k, fw).as_signed())
                    m.next = "WRITE"
            with m.State("WRITE"):
                out = []
                for k in range(lanes):
                    p = requantize_hw(prods[k], 2 * f, fmt)
                    out.append(requantize_hw(y.word_select(k, fw).as_signed() + p, f, fmt))
                m.d.comb += [self.wr.valid.eq(1), self.wr.payload.addr.eq(y_row + j), self.wr.payload.data.eq(Cat(*out))]
                with m.If(self.wr.ready):
                    m.d.sync += j.eq(j + 1)
                    m.next = "WORD"
            with m.State("FINISH"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
