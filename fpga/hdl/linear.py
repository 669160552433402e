"""Linear unit: a rows x cols MAC array computing ``Y = X @ W + b`` tile by tile.

Mirrors :func:`hwgen.numerics.linear.linear_codes` bit for bit (exact accumulation,
bias aligned by ``shift_round``, one ``requantize``, optional fused GELU).

Dataflow (outer product, output stationary): one output tile is ``rows`` tokens x
``cols`` output features. Each ``x`` beat carries ``X[0:rows, k]`` and meets row
``W[k, 0:cols]`` of the weight tile: ``rows*cols`` MACs per cycle. A weight tile is
``depth`` (or fewer) rows of ``W``; ``K`` longer than ``depth`` is split into K tiles
whose products keep accumulating. Weights are **double-buffered**: two banks; the ``w``
stream fills one bank while the ``x`` stream computes with the other. The last K tile
of an output tile (``w.final``) carries the bias; its last ``x`` beat copies the
finished sums into a second set of registers (the *output tile*), from which the unit
sends ``rows`` beats on ``o`` (one token's ``cols`` outputs each, in token order) while
the accumulators already start the next output tile (its first beat overwrites them
instead of adding). So the MAC array takes an ``x`` beat every cycle across output
tiles; it waits only when an output tile finishes while the previous one is still
being sent (output tiles shorter than ``rows`` beats of ``o``). An ``x`` beat may also
use a row of the bank still being loaded once that row is in (the first K tile need not
wait for its whole bank); the K tile's last beat waits for the bank to be complete.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.fixedpoint import ACT_DEFAULT, WEIGHT_DEFAULT, FixedFormat
from hwgen.numerics.linear import accumulator_bits

from .gelu import gelu_hw
from .softmax import requantize_hw, shift_round_hw

__all__ = ["LinearUnit"]


class LinearUnit(wiring.Component):
    """Tiled matrix multiply with accumulation, bias and optional fused GELU.

    Parameters
    ----------
    rows, cols : int
        MAC array: tokens x output features per tile.
    depth : int
        Rows of ``W`` per weight bank (the K-tile length).
    max_k : int
        Longest total K; sizes the accumulators (exact for any ``K <= max_k``).
    x_fmt, w_fmt, b_fmt, out_fmt : FixedFormat
    gelu : bool
        Apply GELU (``out_fmt`` -> ``out_fmt``) after requantizing.

    Members
    -------
    w : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(Ww), cols),
        "bias": ArrayLayout(signed(Wb), cols), "last": 1, "final": 1})))
        Weight rows of one K tile; ``last`` on its final row; ``final`` (read with
        ``last``) marks the last K tile of an output tile, whose ``bias`` is used.
    x : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(Wx), rows), "last": 1})))
        Activation columns, one per weight row; ``last`` on the K tile's final one.
    o : Out(stream.Signature(ArrayLayout(signed(Wo), cols)))
        Output rows, token 0 first.
    """

    def __init__(self, rows: int = 16, cols: int = 16, depth: int = 64, max_k: int = 4096,
                 x_fmt: FixedFormat = ACT_DEFAULT, w_fmt: FixedFormat = WEIGHT_DEFAULT,
                 b_fmt: FixedFormat = ACT_DEFAULT, out_fmt: FixedFormat = ACT_DEFAULT, gelu: bool = False):
        for name, v in (("rows", rows), ("cols", cols), ("depth", depth), ("max_k", max_k)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TypeError(f"{name} must be a positive integer, not {v!r}")
        for name, f in (("x_fmt", x_fmt), ("w_fmt", w_fmt), ("b_fmt", b_fmt), ("out_fmt", out_fmt)):
            if not isinstance(f, FixedFormat):
                raise TypeError(f"{name} must be a FixedFormat, not {f!r}")
        if accumulator_bits(x_fmt, w_fmt, max_k) > 63:
            raise ValueError(f"max_k={max_k} sums of {x_fmt} x {w_fmt} products need more than 63 bits")
        self.rows, self.cols, self.depth, self.max_k = rows, cols, depth, max_k
        self.x_fmt, self.w_fmt, self.b_fmt, self.out_fmt, self.gelu = x_fmt, w_fmt, b_fmt, out_fmt, bool(gelu)
        super().__init__({
            "w": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(w_fmt.width), cols),
                "bias": data.ArrayLayout(signed(b_fmt.width), cols),
                "last": 1, "final": 1}))),
            "x": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(x_fmt.width), rows), "last": 1}))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_fmt.width), cols))),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, depth = self.rows, self.cols, self.depth
        fa = self.x_fmt.frac_bits + self.w_fmt.frac_bits
        acc_bits = accumulator_bits(self.x_fmt, self.w_fmt, self.max_k)
        row_layout = data.ArrayLayout(signed(self.w_fmt.width), cols)
        banks = []
        for i in range(2):
            mem = Memory(shape=row_layout, depth=depth, init=[])
            m.submodules[f"wbank{i}"] = mem
            banks.append(mem)
        full = Signal(2)          # bank holds a complete K tile
        final = Signal(2)         # that K tile is the last of its output tile
        bias = [Signal(data.ArrayLayout(signed(self.b_fmt.width), cols), name=f"bias{i}") for i in range(2)]
        wr_bank = Signal()
        wr_addr = Signal(range(depth))
        rd_bank = Signal()
        rd_addr = Signal(range(depth))

        # --- weight loading into bank wr_bank -------------------------------------
        wps = [b.write_port() for b in banks]
        m.d.comb += self.w.ready.eq(~full.bit_select(wr_bank, 1))
        for i, wp in enumerate(wps):
            m.d.comb += [wp.addr.eq(wr_addr), wp.data.eq(self.w.payload.data),
                         wp.en.eq(self.w.valid & self.w.ready & (wr_bank == i))]
        set_full = Signal(2)
        with m.If(self.w.valid & self.w.ready):
            with m.If(self.w.payload.last):
                m.d.sync += [wr_addr.eq(0), wr_bank.eq(~wr_bank)]
                m.d.comb += set_full.eq(Mux(wr_bank, 0b10, 0b01))
                for i in range(2):
                    with m.If(wr_bank == i):
                        m.d.sync += [final[i].eq(self.w.payload.final), bias[i].eq(self.w.payload.bias)]
            with m.Else():
                m.d.sync += wr_addr.eq(wr_addr + 1)

        # --- compute with bank rd_bank ----------------------------------------------
        rps = [b.read_port(domain="comb") for b in banks]
        for rp in rps:
            m.d.comb += rp.addr.eq(rd_addr)
        wrow = Signal(row_layout)
        m.d.comb += wrow.eq(Mux(rd_bank, rps[1].data, rps[0].data))
        acc = [[Signal(signed(acc_bits), name=f"acc_{r}_{c}") for c in range(cols)] for r in range(rows)]
        # the finished output tile, sent row by row from out_acc[0] (rows shift up)
        out_acc = [[Signal(signed(acc_bits), name=f"out_acc_{r}_{c}") for c in range(cols)] for r in range(rows)]
        fresh = Signal(init=1)    # the next x beat starts an output tile: overwrite, not add
        out_row = Signal(range(rows + 1))
        emitting = Signal()
        clear_full = Signal(2)
        tile_end = Signal()       # this x beat is the last of its output tile
        # the row at rd_addr is in: the bank is complete, or it is the one being loaded and
        # the row was written in an earlier cycle (the read port is asynchronous)
        row_in = full.bit_select(rd_bank, 1) | ((wr_bank == rd_bank) & (rd_addr < wr_addr) & ~self.x.payload.last)
        m.d.comb += [tile_end.eq(self.x.payload.last & final.bit_select(rd_bank, 1)),
                     self.x.ready.eq(row_in & ~(emitting & tile_end))]
        with m.If(self.x.valid & self.x.ready):
            for r in range(rows):
                for c in range(cols):
                    total = Mux(fresh, 0, acc[r][c]) + self.x.payload.data[r] * wrow[c]
                    m.d.sync += acc[r][c].eq(total)
                    with m.If(tile_end):
                        m.d.sync += out_acc[r][c].eq(total)
            m.d.sync += fresh.eq(tile_end)
            with m.If(self.x.payload.last):
                m.d.sync += [rd_addr.eq(0), rd_bank.eq(~rd_bank)]
                m.d.comb += clear_full.eq(Mux(rd_bank, 0b10, 0b01))
                with m.If(tile_end):
                    m.d.sync += [emitting.eq(1), out_row.eq(0)]
            with m.Else():
                m.d.sync += rd_addr.eq(rd_addr + 1)
        m.d.sync += full.eq((full | set_full) & ~clear_full)

        # --- output: token rows leave from out_acc[0]; the rows shift up -------------
        out_bias = Signal(data.ArrayLayout(signed(self.b_fmt.width), cols))
        with m.If(self.x.valid & self.x.ready & tile_end):
            m.d.sync += out_bias.eq(Mux(rd_bank, bias[1], bias[0]))
        m.d.comb += self.o.valid.eq(emitting)
        for c in range(cols):
            b_aligned = shift_round_hw(out_bias[c], self.b_fmt.frac_bits - fa)
            y = requantize_hw(out_acc[0][c] + b_aligned, fa, self.out_fmt)
            if self.gelu:
                ys = Signal(signed(self.out_fmt.width), name=f"pre_gelu{c}")
                m.d.comb += ys.eq(y)
                y = gelu_hw(m, ys, self.out_fmt, self.out_fmt, name=f"gelu{c}")
            m.d.comb += self.o.payload[c].eq(y)
        with m.If(self.o.valid & self.o.ready):
            for r in range(rows - 1):
                for c in range(cols):
                    m.d.sync += out_acc[r][c].eq(out_acc[r + 1][c])
            with m.If(out_row == rows - 1):
                m.d.sync += emitting.eq(0)
            m.d.sync += out_row.eq(out_row + 1)
        return m
