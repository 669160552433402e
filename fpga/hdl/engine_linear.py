"""Engine of LINEAR: ``Y = X @ W + b`` (optionally GELU) on :class:`~fpga.hdl.linear.LinearUnit`.

Instruction fields: ``src0`` = X ``[M, K]`` (row stride ``ceil(K / lanes)`` words),
``dst`` = Y ``[M, N]`` (row stride ``N / lanes``), ``length`` = M, ``aux`` = K,
``src1`` = N (a multiple of ``cols``), ``ext_addr`` = the weight image in external
memory, ``flags`` bit 0 = GELU on the results.

Weight image (written by the compiler, read by the DMA straight into the unit, never
through the buffer): for each feature tile ``j`` (``cols`` outputs) one block of
``bias_words + K * w_words`` words: the bias ``b[j*cols : (j+1)*cols]`` (``b_fmt``
codes packed from bit 0, ``bias_words`` words), then rows ``k = 0 .. K-1`` of
``W[k, j*cols : (j+1)*cols]`` (``w_fmt`` codes from bit 0, ``w_words`` words a row).
Block ``j`` starts at ``ext_addr + j * block_words * data_bits / 8``.

Order: for each token tile (``rows`` tokens), for each feature tile (``cols`` outputs),
the K columns. Three streams overlap:

* **weights**: one DMA command per token tile streams its ``N / cols`` blocks (one word a
  cycle, the DMA requesting two bursts ahead) straight into the unit's two weight banks
  (the next K tile loads while this one computes);
* **activations**: the token tile's X rows are read once (``ceil(K / lanes)`` words per
  token, one a cycle through the buffer's read port) into the *activation store*, a
  local memory of ``rows`` words a line (``store_words = ceil(linear_max_k / lanes)``
  lines), and every feature tile reads its columns ``X[t0 : t0+rows, k]`` from there,
  one a cycle. The store has two halves when a row fits half of it (``ceil(K / lanes) <=
  store_words / 2``): the next token tile fills one while the MAC array reads the other;
  a longer K fills after the tile is done;
* **results**: the unit's output tile registers let the MAC array start the next output
  tile while ``rows`` rows of ``cols / lanes`` words (tokens ``< M``) go, through the GELU
  unit if asked, to Y. Tokens past ``M`` in the last tile compute on whatever the store
  holds and are dropped.

Cycles: the weight stream bounds the engine, ``bias_words + K * w_words`` beats per output
tile (194 for K = 192 on the default configuration) against ``K`` cycles of the MAC array;
:func:`linear_cycles` gives the exact count.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .dma import cmd_layout
from .engine import ceil_div_pow2, engine_members
from .gelu import GeluUnit
from .linear import LinearUnit
from .linear_timing import linear_cycles, weight_words

__all__ = ["LinearEngine", "linear_cycles", "weight_words"]


class LinearEngine(wiring.Component):
    """LINEAR on a ``rows x cols`` MAC array.

    Parameters
    ----------
    config : fpga.config.AcceleratorConfig
        ``mac_rows``, ``mac_cols``, ``weight_depth``, ``linear_max_k``, formats.
    addr_bits, buf_addr_bits : int
        Engine-side and DMA-side buffer address widths.

    Members
    -------
    dma_cmd : Out(stream.Signature(dma command)); dma_words : In(stream.Signature(data_bits))
        Weight-block transfers (``to_unit``) and their words.
    """

    def __init__(self, config, addr_bits: int, buf_addr_bits: int):
        c = config
        self.rows, self.cols, self.lanes = c.mac_rows, c.mac_cols, c.lanes
        self.data_bits = c.mem_port_bits
        self.act, self.wfmt = c.act_fmt, c.weight_fmt
        if self.cols % self.lanes:
            raise ValueError(f"mac_cols={self.cols} must be a multiple of the {self.lanes} activations a word holds")
        if self.cols & (self.cols - 1):
            raise ValueError(f"LINEAR needs mac_cols to be a power of two, not {self.cols}")
        #: Words of the activation store per token row: a row of the longest K.
        self.store_words = -(-c.linear_max_k // self.lanes)
        self.w_words, self.bias_words = weight_words(self.cols, self.wfmt.width, self.act.width, self.data_bits)
        self.unit = LinearUnit(self.rows, self.cols, c.weight_depth, c.linear_max_k, self.act, self.wfmt,
                               self.act, self.act, gelu=False)
        super().__init__({
            **engine_members(addr_bits, self.data_bits),
            "dma_cmd": Out(stream.Signature(cmd_layout(buf_addr_bits))),
            "dma_words": In(stream.Signature(self.data_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, lanes, depth = self.rows, self.cols, self.lanes, self.unit.depth
        cpw = cols // lanes
        lane_bits, col_bits = lanes.bit_length() - 1, cols.bit_length() - 1
        m.submodules.unit = unit = self.unit
        m.submodules.gelu = gelu = GeluUnit(lanes, self.act, self.act)

        y_base, ext_base = Signal(16), Signal(40)
        n_tok, k_len, n_out = Signal(16), Signal(16), Signal(16)
        sk, sn = Signal(16), Signal(16)       # row strides of X and Y (words)
        tile_words = Signal(32)               # weight words of one token tile: N / cols blocks
        use_gelu = Signal()
        running = Signal()
        with m.If(self.start):
            a = self.args
            m.d.sync += [y_base.eq(a.dst), ext_base.eq(a.ext_addr), n_tok.eq(a.length),
                         k_len.eq(a.aux), n_out.eq(a.src1), sk.eq(ceil_div_pow2(a.aux, lanes)),
                         sn.eq(a.src1 >> (lanes.bit_length() - 1)), use_gelu.eq(a.flags[0]), running.eq(1),
                         tile_words.eq((a.src1 >> col_bits) * (self.bias_words + a.aux * self.w_words))]

        # --- 1. weight transfers: one DMA command per token tile (all N / cols blocks) --
        d_t0 = Signal(16)
        with m.If(self.start):
            m.d.sync += d_t0.eq(0)
        m.d.comb += [self.dma_cmd.valid.eq(running & (d_t0 < n_tok)),
                     self.dma_cmd.p.store.eq(0), self.dma_cmd.p.to_unit.eq(1), self.dma_cmd.p.ext_addr.eq(ext_base),
                     self.dma_cmd.p.length.eq(tile_words)]
        with m.If(self.dma_cmd.valid & self.dma_cmd.ready):
            m.d.sync += d_t0.eq(d_t0 + rows)

        # --- 2. weight words -> weight rows (bias first) ------------------------------
        bias_bits = len(unit.w.payload.bias.as_value())
        row_bits = len(unit.w.payload.data.as_value())
        bias = Signal(self.bias_words * self.data_bits)
        row = Signal(self.w_words * self.data_bits)
        w_word = Signal(range(max(self.bias_words, self.w_words) + 1))  # word within the bias / row
        in_bias = Signal(init=1)
        w_k = Signal(16)          # row index k
        w_kpos = Signal(range(depth))  # k within its K tile
        with m.If(self.start):
            m.d.sync += [w_word.eq(0), in_bias.eq(1), w_k.eq(0), w_kpos.eq(0)]
        word_in = self.dma_words.payload
        row_done = ~in_bias & (w_word == self.w_words - 1)
        m.d.comb += [
            unit.w.payload.data.eq(Cat(row[:(self.w_words - 1) * self.data_bits], word_in)[:row_bits]
                                   if self.w_words > 1 else word_in[:row_bits]),
            unit.w.payload.bias.eq(bias[:bias_bits]),
            unit.w.payload.last.eq((w_kpos == depth - 1) | (w_k == k_len - 1)),
            unit.w.payload.final.eq(w_k - w_kpos + depth >= k_len),
            unit.w.valid.eq(self.dma_words.valid & row_done),
            self.dma_words.ready.eq(~row_done | unit.w.ready),
        ]
        with m.If(self.dma_words.valid & self.dma_words.ready):
            with m.If(in_bias):
                for i in range(self.bias_words):
                    with m.If(w_word == i):
                        m.d.sync += bias[i * self.data_bits:(i + 1) * self.data_bits].eq(word_in)
                with m.If(w_word == self.bias_words - 1):
                    m.d.sync += [w_word.eq(0), in_bias.eq(0)]
                with m.Else():
                    m.d.sync += w_word.eq(w_word + 1)
            with m.Elif(~row_done):
                for i in range(self.w_words - 1):
                    with m.If(w_word == i):
                        m.d.sync += row[i * self.data_bits:(i + 1) * self.data_bits].eq(word_in)
                m.d.sync += w_word.eq(w_word + 1)
            with m.Else():  # a row went to the unit
                m.d.sync += [w_word.eq(0), w_kpos.eq(Mux(w_kpos == depth - 1, 0, w_kpos + 1)), w_k.eq(w_k + 1)]
                with m.If(w_k == k_len - 1):  # the block's last row: the next block starts with its bias
                    m.d.sync += [in_bias.eq(1), w_k.eq(0), w_kpos.eq(0)]

        # --- 3. activation store: a token tile's X rows, filled once, read per feature tile
        # Two halves (token tiles alternate) when a row fits half the store; else one.
        store = Memory(shape=data.ArrayLayout(unsigned(self.data_bits), rows), depth=self.store_words, init=[])
        m.submodules.xstore = store
        sw_port = store.write_port(granularity=1)
        sr_port = store.read_port()
        half = self.store_words // 2
        two_halves = Signal()
        FREE, FILLING, FULL = 0, 1, 2
        bank_state = [Signal(2, name=f"xbank{i}") for i in range(2)]
        # fill: word kw of every row of the tile, kw = 0 .. sk-1, through the buffer's read
        # port; the feed may read the columns of the words filled so far
        f_t0, f_bank, f_r, f_kw, f_addr = Signal(16), Signal(), Signal(16), Signal(16), Signal(16)
        f_base = Signal(16)       # the tile's first word: src0 + f_t0 * sk
        f_busy = Signal()         # issuing a tile's reads
        r_bank, r_r, r_kw = Signal(), Signal(16), Signal(16)   # the word coming back
        with m.If(self.start):
            m.d.sync += [two_halves.eq(ceil_div_pow2(self.args.aux, lanes) <= half), f_t0.eq(0), f_bank.eq(0),
                         f_r.eq(0), f_kw.eq(0), f_addr.eq(self.args.src0), f_base.eq(self.args.src0), f_busy.eq(0), r_bank.eq(0),
                         r_r.eq(0), r_kw.eq(0), bank_state[0].eq(FREE), bank_state[1].eq(FREE)]
        other_free = Mux(f_bank, bank_state[0], bank_state[1]) == FREE
        f_free = (Mux(f_bank, bank_state[1], bank_state[0]) == FREE) & (two_halves | other_free)
        bank_set = [Signal(3, name=f"xbank{i}_set") for i in range(2)]   # 0: no change
        with m.If(running & ~f_busy & (f_t0 < n_tok) & f_free & ~self.start):
            m.d.sync += f_busy.eq(1)
            for i in range(2):
                with m.If(f_bank == i):
                    m.d.comb += bank_set[i].eq(FILLING | 4)
        last_row = lambda t0, r: (r == rows - 1) | (t0 + r + 1 == n_tok)  # noqa: E731
        m.d.comb += [self.rd.valid.eq(f_busy), self.rd.payload.eq(f_addr)]
        with m.If(self.rd.valid & self.rd.ready):
            m.d.sync += [f_addr.eq(f_addr + sk), f_r.eq(f_r + 1)]
            with m.If(last_row(f_t0, f_r)):
                m.d.sync += [f_r.eq(0), f_kw.eq(f_kw + 1), f_addr.eq(f_base + f_kw + 1)]
                with m.If(f_kw == sk - 1):  # the tile's last word: the next tile, other half
                    m.d.sync += [f_kw.eq(0), f_busy.eq(0), f_t0.eq(f_t0 + rows), f_bank.eq(~f_bank),
                                 f_base.eq(f_base + sk * rows), f_addr.eq(f_base + sk * rows)]
        r_t0 = Signal(16)
        with m.If(self.start):
            m.d.sync += r_t0.eq(0)
        m.d.comb += [self.rd_data.ready.eq(1), sw_port.data.eq(Cat(*([self.rd_data.payload] * rows))),
                     sw_port.addr.eq(Mux(r_bank & two_halves, half, 0) + r_kw)]
        with m.If(self.rd_data.valid):
            for r in range(rows):
                m.d.comb += sw_port.en[r].eq(r_r == r)
            m.d.sync += r_r.eq(r_r + 1)
            with m.If(last_row(r_t0, r_r)):
                m.d.sync += [r_r.eq(0), r_kw.eq(r_kw + 1)]
                with m.If(r_kw == sk - 1):
                    m.d.sync += [r_kw.eq(0), r_t0.eq(r_t0 + rows), r_bank.eq(~r_bank)]
                    for i in range(2):
                        with m.If(r_bank == i):
                            m.d.comb += bank_set[i].eq(FULL | 4)
        # feed: for each feature tile, columns k = 0 .. K-1 of the tile in the store
        c_t0, c_bank, c_n0, c_k = Signal(16), Signal(), Signal(16), Signal(16)
        c_kpos = Signal(range(depth))
        x_valid, x_lane, x_last = Signal(), Signal(range(lanes)), Signal()
        with m.If(self.start):
            m.d.sync += [c_t0.eq(0), c_bank.eq(0), c_n0.eq(0), c_k.eq(0), c_kpos.eq(0), x_valid.eq(0)]
        c_state = Mux(c_bank, bank_state[1], bank_state[0])
        filled = (c_state == FULL) | ((c_state == FILLING) & (r_bank == c_bank) & ((c_k >> lane_bits) < r_kw))
        c_ready = running & (c_t0 < n_tok) & filled
        advance = ~x_valid | unit.x.ready
        m.d.comb += [sr_port.en.eq(advance), sr_port.addr.eq(Mux(c_bank & two_halves, half, 0) + (c_k >> lane_bits)),
                     unit.x.valid.eq(x_valid), unit.x.payload.last.eq(x_last)]
        for r in range(rows):
            m.d.comb += unit.x.payload.data[r].eq(sr_port.data[r].word_select(x_lane, self.act.width))
        with m.If(advance & ~self.start):
            m.d.sync += x_valid.eq(c_ready)
            with m.If(c_ready):
                col_last = (c_kpos == depth - 1) | (c_k == k_len - 1)
                m.d.sync += [x_lane.eq(c_k[:lane_bits] if lane_bits else 0), x_last.eq(col_last),
                             c_k.eq(c_k + 1), c_kpos.eq(Mux(c_kpos == depth - 1, 0, c_kpos + 1))]
                with m.If(c_k == k_len - 1):  # the feature tile's last column
                    m.d.sync += [c_k.eq(0), c_kpos.eq(0), c_n0.eq(c_n0 + cols)]
                    with m.If(c_n0 + cols >= n_out):  # the token tile's last: its half is free
                        m.d.sync += [c_n0.eq(0), c_t0.eq(c_t0 + rows), c_bank.eq(~c_bank)]
                        for i in range(2):
                            with m.If(c_bank == i):
                                m.d.comb += bank_set[i].eq(FREE | 4)
        for i in range(2):
            with m.If(bank_set[i][2]):
                m.d.sync += bank_state[i].eq(bank_set[i][:2])

        # --- 4. output rows -> words (tokens < M), GELU or not -> Y ------------------
        o_t0, o_n0 = Signal(16), Signal(16)
        o_r = Signal(range(rows))
        o_j = Signal(range(cpw))
        with m.If(self.start):
            m.d.sync += [o_t0.eq(0), o_n0.eq(0), o_r.eq(0), o_j.eq(0)]
        keep = o_t0 + o_r < n_tok
        word_out = unit.o.payload.as_value().word_select(o_j, self.data_bits)
        word_valid = unit.o.valid & keep
        down_ready = Signal()
        m.d.comb += unit.o.ready.eq(~keep | ((o_j == cpw - 1) & down_ready))
        with m.If(unit.o.valid & (~keep | down_ready)):
            m.d.sync += o_j.eq(Mux(keep & (o_j != cpw - 1), o_j + 1, 0))
            with m.If(~keep | (o_j == cpw - 1)):
                m.d.sync += o_r.eq(o_r + 1)
                with m.If(o_r == rows - 1):
                    m.d.sync += o_r.eq(0)
                    with m.If(o_n0 + cols >= n_out):
                        m.d.sync += [o_n0.eq(0), o_t0.eq(o_t0 + rows)]
                    with m.Else():
                        m.d.sync += o_n0.eq(o_n0 + cols)
        # through GELU or straight to the writer
        wr_valid, wr_data = Signal(), Signal(self.data_bits)
        m.d.comb += [gelu.i.payload.eq(word_out), gelu.i.valid.eq(use_gelu & word_valid),
                     gelu.o.ready.eq(self.wr.ready)]
        with m.If(use_gelu):
            m.d.comb += [down_ready.eq(gelu.i.ready), wr_valid.eq(gelu.o.valid), wr_data.eq(gelu.o.payload)]
        with m.Else():
            m.d.comb += [down_ready.eq(self.wr.ready), wr_valid.eq(word_valid), wr_data.eq(word_out)]

        # writer: words of tokens < M in order: (token tile, feature tile, row, word)
        y_t, y_n0w, y_j = Signal(16), Signal(16), Signal(range(cpw))
        y_row_addr = Signal(16)       # y_base + y_t * sn
        y_tile_t0 = Signal(16)
        y_tile_addr = Signal(16)      # y_base + y_tile_t0 * sn
        y_done = Signal()
        with m.If(self.start):
            m.d.sync += [y_t.eq(0), y_n0w.eq(0), y_j.eq(0), y_row_addr.eq(self.args.dst), y_tile_t0.eq(0),
                         y_tile_addr.eq(self.args.dst), y_done.eq(self.args.length == 0)]
        m.d.comb += [self.wr.valid.eq(wr_valid), self.wr.payload.data.eq(wr_data),
                     self.wr.payload.addr.eq(y_row_addr + y_n0w + y_j)]
        tile_rows_end = (y_t + 1 == n_tok) | (y_t + 1 == y_tile_t0 + rows)
        with m.If(self.wr.valid & self.wr.ready):
            m.d.sync += y_j.eq(y_j + 1)
            with m.If(y_j == cpw - 1):
                m.d.sync += [y_j.eq(0), y_t.eq(y_t + 1), y_row_addr.eq(y_row_addr + sn)]
                with m.If(tile_rows_end):  # next feature tile of the same tokens, or the next token tile
                    with m.If(y_n0w + cpw >= sn):
                        m.d.sync += [y_n0w.eq(0), y_tile_t0.eq(y_t + 1), y_tile_addr.eq(y_row_addr + sn)]
                        with m.If(y_t + 1 == n_tok):
                            m.d.sync += y_done.eq(1)
                    with m.Else():
                        m.d.sync += [y_n0w.eq(y_n0w + cpw), y_t.eq(y_tile_t0), y_row_addr.eq(y_tile_addr)]
        # done once every result is written and the unit has emitted the whole last token
        # tile: rows past M are dropped as they leave; were the next instruction to start
        # before the last of them, its output counters would take them as its own
        with m.If(running & y_done & (o_t0 >= n_tok) & ~self.start):
            m.d.comb += self.done.eq(1)
            m.d.sync += running.eq(0)
        return m
