"""LayerNorm unit: ``lanes`` elements a cycle, three rows in flight.

Mirrors :func:`hwgen.numerics.layernorm.layernorm_codes` bit for bit. Rows of ``n``
elements (the ``n`` input) arrive as words of ``lanes`` elements, ``W = ceil(n / lanes)``
beats a row (lanes past ``n`` in the last word are ignored); gamma and beta are written
beforehand into the unit's parameter memories (``param``). Three stages, each holding
one row, hand rows on without a bubble:

* **A** (statistics): per beat store the word in the row memory (three row slots),
  ``s1 += sum x``, ``s2 += sum x*x`` over the word's valid lanes; ``W`` cycles a row;
* **B** (reciprocal square root): ``VAR`` (the products) and ``VAR2``
  ``D = max(n*s2 - s1**2 + n*n*e, 1)``, ``NORM`` (``R = 24 + ceil(bitlen(D)/2)``), ``DIV``
  ``q = floor(2**(2R) / D)`` by restoring division, ``SQRT`` ``r = isqrt(q)`` by the
  restoring square root (its first cycle set by DIV's last), each
  ``rsqrt_steps`` bits a cycle: :func:`rsqrt_cycles` cycles a row (42 at 2 bits a cycle),
  then ``DONE`` until C takes the row;
* **C** (output): per beat one word, lane ``j`` is
  ``requantize((n*x - s1) * r * gamma + (beta << (R + Fg - Fb)), R + Fg, out_fmt)``
  (0 past ``n``); ``W`` cycles a row.

While C writes row ``r - 1`` out, B works on row ``r`` and A takes in row ``r + 1`` (three
slots: A's slot is never one that B or C still reads). In steady state a row costs
``max(W, rsqrt_cycles + 1)`` cycles (the ``+ 1``: B's hand-over cycle).
"""

from __future__ import annotations

import math

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat
from hwgen.numerics.layernorm import RSQRT_BITS

from .unit_timing import LAYERNORM_IN_STAGES as IN_STAGES
from .unit_timing import LAYERNORM_OUT_STAGES as OUT_STAGES
from .unit_timing import rsqrt_cycles, rsqrt_div_steps, rsqrt_root_steps

__all__ = ["LayerNormUnit", "EPS_BITS", "OUT_STAGES", "IN_STAGES", "eps_code", "rsqrt_cycles"]

#: Width of the run-time ``eps_code`` input.
EPS_BITS = 32



def eps_code(eps: float, x_fmt: FixedFormat) -> int:
    """The code of ``eps`` as the variance term sees it (``2 * x_fmt.frac_bits`` fraction bits)."""
    return math.floor(eps * 2.0 ** (2 * x_fmt.frac_bits) + 0.5)


class LayerNormUnit(wiring.Component):
    """LayerNorm of rows of up to ``max_n`` elements, ``lanes`` elements a beat.

    Parameters
    ----------
    max_n : int
        Longest row (elements).
    x_fmt, g_fmt, b_fmt, out_fmt : FixedFormat
        Formats of x, gamma, beta and the output.
    eps : float or None
        ``None`` adds the input ``eps_code`` (unsigned, :data:`EPS_BITS` bits): the code of
        ``eps`` with ``2 * x_fmt.frac_bits`` fraction bits, set at run time (held stable
        while rows flow).
    lanes : int
        Elements a beat (a power of two).
    rsqrt_steps : int
        Quotient and root bits the reciprocal square root computes a cycle (1 to 4).

    Members
    -------
    n : In(range(max_n + 1))
        Elements a row; held stable while rows flow (change it only when the unit is empty).
    param : In(StructLayout({"gamma_en": 1, "beta_en": 1, "addr": range(W_max), "gamma": ArrayLayout(signed(Wg), lanes), "beta": ArrayLayout(signed(Wb), lanes)}))
        Writes gamma / beta word ``addr`` (elements ``addr * lanes ...``) when ``gamma_en`` /
        ``beta_en``; only while the unit is empty.
    i : In(stream.Signature(StructLayout({"x": ArrayLayout(signed(Wx), lanes)})))
        ``ceil(n / lanes)`` words a row.
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(Wo), lanes), "last": 1})))
        The normalised rows, a word a beat (lanes past ``n`` are 0), ``last`` on a row's last word.
    """

    def __init__(self, max_n: int = 192, x_fmt: FixedFormat = ACT_DEFAULT, g_fmt: FixedFormat = ACT_DEFAULT,
                 b_fmt: FixedFormat = ACT_DEFAULT, out_fmt: FixedFormat = ACT_DEFAULT, eps: float = 1e-5,
                 lanes: int = 1, rsqrt_steps: int = 2):
        if not isinstance(max_n, int) or isinstance(max_n, bool) or max_n < 1:
            raise TypeError(f"max_n must be a positive integer, not {max_n!r}")
        for name, f in (("x_fmt", x_fmt), ("g_fmt", g_fmt), ("b_fmt", b_fmt), ("out_fmt", out_fmt)):
            if not isinstance(f, FixedFormat):
                raise TypeError(f"{name} must be a FixedFormat, not {f!r}")
        if eps is not None and not eps >= 0:
            raise ValueError(f"eps must be >= 0, not {eps!r}")
        if not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        if rsqrt_steps not in (1, 2, 3, 4):
            raise ValueError(f"rsqrt_steps must be 1, 2, 3 or 4, not {rsqrt_steps!r}")
        if out_fmt.frac_bits >= RSQRT_BITS + 1 + g_fmt.frac_bits or b_fmt.frac_bits > RSQRT_BITS + 1 + g_fmt.frac_bits:
            raise ValueError(
                f"out_fmt {out_fmt} / b_fmt {b_fmt} have more fraction bits than the normalised product "
                f"({RSQRT_BITS + 1 + g_fmt.frac_bits} at least)"
            )
        self.max_n, self.x_fmt, self.g_fmt, self.b_fmt, self.out_fmt = max_n, x_fmt, g_fmt, b_fmt, out_fmt
        self.lanes, self.rsqrt_steps = lanes, rsqrt_steps
        self.max_words = -(-max_n // lanes)
        self.eps_const = None if eps is None else eps_code(eps, x_fmt)
        ports = {} if eps is not None else {"eps_code": In(unsigned(EPS_BITS))}
        super().__init__({
            **ports,
            "n": In(range(max_n + 1)),
            "param": In(data.StructLayout({
                "gamma_en": 1, "beta_en": 1, "addr": range(self.max_words),
                "gamma": data.ArrayLayout(signed(g_fmt.width), lanes),
                "beta": data.ArrayLayout(signed(b_fmt.width), lanes)})),
            "i": In(stream.Signature(data.StructLayout({"x": data.ArrayLayout(signed(x_fmt.width), lanes)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(out_fmt.width), lanes), "last": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, mw = self.lanes, self.max_words
        wx, nb = self.x_fmt.width, self.max_n.bit_length()
        fg, fb, fo = self.g_fmt.frac_bits, self.b_fmt.frac_bits, self.out_fmt.frac_bits
        shift = lanes.bit_length() - 1
        n = self.n
        nw = Signal(range(mw + 1))
        m.d.comb += nw.eq((n + (lanes - 1)) >> shift)

        m.submodules.row = row = Memory(shape=data.ArrayLayout(signed(wx), lanes), depth=3 * mw, init=[])
        m.submodules.gamma = gmem = Memory(shape=data.ArrayLayout(signed(self.g_fmt.width), lanes), depth=mw, init=[])
        m.submodules.beta = bmem = Memory(shape=data.ArrayLayout(signed(self.b_fmt.width), lanes), depth=mw, init=[])
        row_wp, gwp, bwp = row.write_port(), gmem.write_port(), bmem.write_port()
        row_rp, grp, brp = row.read_port(), gmem.read_port(), bmem.read_port()  # synchronous (block RAM)
        p = self.param
        m.d.comb += [gwp.addr.eq(p.addr), gwp.data.eq(p.gamma), gwp.en.eq(p.gamma_en),
                     bwp.addr.eq(p.addr), bwp.data.eq(p.beta), bwp.en.eq(p.beta_en)]

        # ---- stage A: statistics of the incoming row, behind IN_STAGES registers:
        # 1 the lanes' masked codes and their squares, 2 the word's sums (A adds them up)
        a_word, a_base = Signal(range(mw)), Signal(range(3 * mw))
        a_full = Signal()  # the row is complete, waiting for B
        s1 = Signal(signed(wx + nb + 1))
        s2 = Signal(unsigned(2 * wx + nb))
        s1_next, s2_next = Signal.like(s1), Signal.like(s2)
        in_valid = [Signal(name=f"a_in_valid{s}") for s in range(1, IN_STAGES + 1)]
        in_advance = Signal()
        m.d.comb += [in_advance.eq(~in_valid[-1] | ~a_full), self.i.ready.eq(in_advance)]
        in_elem = Signal(range(mw * lanes + 1))  # element index of the word on i
        with m.If(self.i.valid & in_advance):
            m.d.sync += in_elem.eq(Mux(in_elem + lanes >= n, 0, in_elem + lanes))
        xs = self.i.payload.x
        word1 = Signal.like(xs, name="a_word1")
        word2 = Signal.like(xs, name="a_word2")
        masked1 = [Signal(signed(wx), name=f"a_masked{j}") for j in range(lanes)]
        square1 = [Signal(unsigned(2 * wx), name=f"a_square{j}") for j in range(lanes)]
        word_s1 = Signal(signed(wx + lanes.bit_length()))
        word_s2 = Signal(unsigned(2 * wx + lanes.bit_length()))
        with m.If(in_advance):
            m.d.sync += [in_valid[0].eq(self.i.valid), in_valid[1].eq(in_valid[0]), word1.eq(xs), word2.eq(word1),
                         word_s1.eq(sum(masked1)), word_s2.eq(sum(square1))]
            for j in range(lanes):
                masked = Mux(in_elem + j < n, xs[j], 0)
                m.d.sync += [masked1[j].eq(masked), square1[j].eq(masked * masked)]
        m.d.comb += [s1_next.eq(s1 + word_s1), s2_next.eq(s2 + word_s2)]
        beat = Signal()
        m.d.comb += [beat.eq(in_valid[-1] & ~a_full),
                     row_wp.addr.eq(a_base + a_word), row_wp.data.eq(word2), row_wp.en.eq(beat)]
        a_last = beat & (a_word == nw - 1)

        # ---- stage B: reciprocal square root (one row)
        steps = self.rsqrt_steps
        div_steps, sqrt_steps = rsqrt_div_steps(steps), rsqrt_root_steps(steps)
        eps = self.eps_const if self.eps_const is not None else self.eps_code
        eps_bits = max(self.eps_const.bit_length(), 1) if self.eps_const is not None else EPS_BITS
        d_bits = 2 * wx + 3 * nb + eps_bits + 4
        b_s1, b_s2, b_base = Signal.like(s1), Signal.like(s2), Signal.like(a_base)
        dd = Signal(unsigned(d_bits))
        var_pos, var_neg = Signal(unsigned(d_bits + 1)), Signal(unsigned(2 * len(s1)))  # n*s2 + n*n*e, s1*s1
        # n*n*e, registered twice (n and e are held while rows flow; VAR comes >= 4 cycles after a new n)
        n_n, n_n_eps = Signal(unsigned(2 * nb)), Signal(unsigned(2 * nb + eps_bits))
        m.d.sync += [n_n.eq(n * n), n_n_eps.eq(n_n * eps)]
        big_r = Signal(range(RSQRT_BITS + d_bits + 2))
        rem = Signal(unsigned(d_bits + 2))
        q = Signal(unsigned(div_steps))
        step = Signal(range(max(div_steps, sqrt_steps) + 1))
        root = Signal(unsigned(2 * sqrt_steps))
        sq_num = Signal(unsigned(2 * sqrt_steps))
        sq_bit = Signal(unsigned(2 * sqrt_steps))
        b_done = Signal()  # B holds a finished row
        b_free, c_free, b_to_c = Signal(), Signal(), Signal()
        a_to_b = Signal()
        m.d.comb += [b_to_c.eq(b_done & c_free), a_to_b.eq((a_last | a_full) & b_free)]

        with m.If(beat):
            m.d.sync += [s1.eq(s1_next), s2.eq(s2_next), a_word.eq(a_word + 1)]
            with m.If(a_word == nw - 1):
                m.d.sync += [a_word.eq(0), a_full.eq(1)]
        with m.If(a_to_b):
            m.d.sync += [b_s1.eq(Mux(a_full, s1, s1_next)), b_s2.eq(Mux(a_full, s2, s2_next)), b_base.eq(a_base),
                         s1.eq(0), s2.eq(0), a_full.eq(0),
                         a_base.eq(Mux(a_base == 2 * mw, 0, a_base + mw))]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += b_free.eq(1)
                with m.If(a_to_b):
                    m.next = "VAR"
            with m.State("VAR"):  # the products of D
                m.d.sync += [var_pos.eq(n * b_s2 + n_n_eps), var_neg.eq(b_s1 * b_s1)]
                m.next = "VAR2"
            with m.State("VAR2"):
                v = Signal(signed(d_bits + 2))
                m.d.comb += v.eq(var_pos - var_neg)
                m.d.sync += dd.eq(Mux(v < 1, 1, v))
                m.next = "NORM"
            with m.State("NORM"):
                # L = bitlen(D); R = RSQRT_BITS + ceil(L/2); rem = floor(2**(2R) / 2**div_steps)
                length = Signal(range(d_bits + 1))
                m.d.comb += length.eq(_bit_length(dd))
                r_val = Signal.like(big_r)
                m.d.comb += r_val.eq(RSQRT_BITS + ((length + 1) >> 1))
                two_r = r_val * 2
                m.d.sync += [big_r.eq(r_val), q.eq(0), step.eq(div_steps), rem.eq(0)]
                with m.If(two_r >= div_steps):
                    m.d.sync += rem.bit_select((two_r - div_steps)[:len(rem).bit_length()], 1).eq(1)
                m.next = "DIV"
            with m.State("DIV"):
                # quotient bits step-1 down to step-steps; the numerator's only 1 is at bit 2R
                r_k, q_k = rem, q
                for k in range(steps):
                    shifted = ((r_k << 1) | ((big_r * 2) == (step - 1 - k)))[:d_bits + 3]
                    take = shifted >= dd
                    r_k = Mux(take, shifted - dd, shifted)[:len(rem)]
                    q_k = ((q_k << 1) | take)[:len(q)]
                m.d.sync += [rem.eq(r_k), q.eq(q_k), step.eq(step - steps)]
                with m.If(step == steps):  # the quotient is complete: start the square root
                    m.d.sync += [sq_num.eq(q_k), root.eq(0), sq_bit.eq(1 << (2 * sqrt_steps - 2)),
                                 step.eq(sqrt_steps)]
                    m.next = "SQRT"
            with m.State("SQRT"):
                num_k, root_k, bit_k = sq_num, root, sq_bit
                for k in range(steps):
                    trial = root_k + bit_k
                    ge = num_k >= trial
                    num_k = Mux(ge, num_k - trial, num_k)[:len(sq_num)]
                    root_k = Mux(ge, (root_k >> 1) + bit_k, root_k >> 1)[:len(root)]
                    bit_k = bit_k >> 2
                m.d.sync += [sq_num.eq(num_k), root.eq(root_k), sq_bit.eq(bit_k), step.eq(step - steps)]
                with m.If(step == steps):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [b_done.eq(1), b_free.eq(c_free)]
                with m.If(a_to_b):
                    m.next = "VAR"
                with m.Elif(c_free):
                    m.next = "IDLE"

        # ---- stage C: the normalised row, a word a beat, through OUT_STAGES registers
        c_active, c_word, c_elem, c_base = Signal(), Signal(range(mw)), Signal(range(mw * lanes + 1)), Signal.like(a_base)
        c_s1, c_big_r = Signal.like(s1), Signal.like(big_r)
        c_root = Signal(unsigned(RSQRT_BITS + 3))  # r < 2**(RSQRT_BITS + 2)
        c_last = c_word == nw - 1
        # the output pipeline moves as a whole when its last stage is empty or taken
        pipe_valid = [Signal(name=f"c_valid{s}") for s in range(1, OUT_STAGES + 1)]
        advance = Signal()
        m.d.comb += advance.eq(~pipe_valid[-1] | self.o.ready)
        take = advance & c_active  # C's word enters the pipeline
        m.d.comb += c_free.eq(~c_active | (take & c_last))
        # the read ports show last cycle's address: run one word ahead when a word is taken
        with m.If(c_active & ~(take & c_last)):
            m.d.comb += [row_rp.addr.eq(c_base + c_word + take), grp.addr.eq(c_word + take),
                         brp.addr.eq(c_word + take)]
        with m.Else():
            m.d.comb += [row_rp.addr.eq(b_base), grp.addr.eq(0), brp.addr.eq(0)]
        with m.If(take):
            m.d.sync += [c_word.eq(c_word + 1), c_elem.eq(c_elem + lanes)]
            with m.If(c_last):
                m.d.sync += [c_active.eq(0), c_word.eq(0), c_elem.eq(0)]
        with m.If(b_to_c):
            m.d.sync += [c_active.eq(1), c_word.eq(0), c_elem.eq(0), c_base.eq(b_base), c_s1.eq(b_s1),
                         c_big_r.eq(big_r), c_root.eq(root[:RSQRT_BITS + 3])]
        self._output_pipeline(m, advance, take, pipe_valid, row_rp.data, grp.data, brp.data, c_s1, c_root, c_big_r,
                              c_elem, c_last, d_bits)
        return m

    def _output_pipeline(self, m, advance, take, valid, xs, gs, bs, c_s1, c_root, c_big_r, c_elem, c_last, d_bits):
        """Stage C's arithmetic, one register after each step (:data:`OUT_STAGES`):
        1 ``centred = n*x - s1``, 2 ``centred * r``, 3 ``u = centred * r * gamma``,
        4 ``total = u + beta << (frac - Fb)`` (with ``Fb == Fo`` beta waits for 7),
        5 and 6 ``total >> (sh - 1)`` (by whole 16s, then the rest), 7 ``+ 1`` (and ``+ 2 beta``)
        ``>> 1``, 8 saturation and the lane mask. Every register moves on ``advance``;
        ``valid[s]`` says stage ``s + 1`` holds a word."""
        lanes, n = self.lanes, self.n
        fg, fb, fo = self.g_fmt.frac_bits, self.b_fmt.frac_bits, self.out_fmt.frac_bits
        same_b = fb == fo

        def reg(shape, name, value):
            r = Signal(shape, name=name)
            with m.If(advance):
                m.d.sync += r.eq(value)
            return r

        def carry(sig, stages, name):
            """``sig`` delayed through stages 1..``stages``: a list, index s - 1 = at stage s."""
            out = []
            for s in range(1, stages + 1):
                sig = reg(sig.shape(), f"{name}{s}", sig)
                out.append(sig)
            return out

        with m.If(advance):
            m.d.sync += valid[0].eq(take)
            m.d.sync += [valid[s].eq(valid[s - 1]) for s in range(1, len(valid))]
        # per row: the rounding shift less one (``sh - 1 >= 0``), beta's alignment
        shift_bits = range(2 * (RSQRT_BITS + d_bits) + fg + 2)
        sh_m1, b_shift = Signal(shift_bits), Signal(shift_bits)
        m.d.comb += [sh_m1.eq(c_big_r + (fg - fo - 1)), b_shift.eq(c_big_r + (fg - fb))]
        last = carry(c_last, OUT_STAGES, "c_last")
        sh_at = carry(sh_m1, 5, "c_sh")
        root_at = carry(c_root, 1, "c_root")
        b_shift_at = carry(b_shift, 3, "c_bshift")
        for j in range(lanes):
            mask = carry(c_elem + j < n, OUT_STAGES, f"c_mask{j}_")
            g_at = carry(gs[j], 2, f"c_g{j}_")
            b_at = carry(bs[j], 6 if same_b else 3, f"c_b{j}_")
            centred = reg(signed(self.x_fmt.width + 2 * self.max_n.bit_length() + 2), f"centred{j}", n * xs[j] - c_s1)
            scaled = reg(signed(len(centred) + len(c_root) + 1), f"scaled{j}", centred * root_at[0])
            u = reg(signed(len(scaled) + self.g_fmt.width), f"u{j}", scaled * g_at[1])
            if same_b:
                total = reg(u.shape(), f"total{j}", u)
            else:
                total = reg(signed(len(u) + 2 + RSQRT_BITS + d_bits + fg), f"total{j}",
                            u + (b_at[2] << b_shift_at[2]))
            # total >> (sh - 1) in two shifts: by whole 16s, then by the rest
            coarse = reg(total.shape(), f"coarse{j}", total >> Cat(C(0, 4), sh_at[3][4:]))
            halved = reg(total.shape(), f"halved{j}", coarse >> sh_at[4][:4])
            # (t + 1) >> 1 (+ b) == (t + 2b + 1) >> 1: one adder
            addend = Cat(C(1, 1), b_at[5]).as_signed() if same_b else C(1, 1)
            rounded = reg(signed(len(halved) + 1), f"rounded{j}", (halved + addend) >> 1)
            out = reg(signed(self.out_fmt.width), f"out{j}", Mux(mask[6], _saturate(rounded, self.out_fmt), 0))
            m.d.comb += self.o.payload.data[j].eq(out)
        m.d.comb += [self.o.valid.eq(valid[-1]), self.o.payload.last.eq(last[-1])]


def _saturate(x, fmt: FixedFormat):
    """``fpga.hdl.softmax.saturate_hw`` from the bits above the code's sign: ``x > qmax`` when
    ``x`` is positive and one of them is set, ``x < qmin`` when negative and one is clear (two
    reduction trees instead of two wide compares); shape ``signed(fmt.width)``."""
    above = x[fmt.width - 1:]
    over = ~x[-1] & above.any()
    under = x[-1] & ~above.all()
    return Mux(over, fmt.qmax, Mux(under, fmt.qmin, x[:fmt.width])).as_signed()[:fmt.width].as_signed()


def _bit_length(x):
    """``x.bit_length()`` of an unsigned value as a tree (depth ``ceil(log2(len(x)))`` muxes):
    the high half's length plus the low half's width when the high half is not zero."""
    if len(x) == 1:
        return x[0]
    half = 1 << ((len(x) - 1).bit_length() - 1)
    lo, hi = x[:half], x[half:]
    return Mux(hi.any(), half + _bit_length(hi), _bit_length(lo))
