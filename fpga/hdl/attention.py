"""Attention unit: QKᵀ, single-pass softmax and ×V for several queries at a time.

Arithmetic: :mod:`hwgen.numerics.attention`, bit for bit (for every ``chunk``: only
*when* each operation happens depends on it). Architecture (Edge-MoE):

* Rows travel in ``F = head_dim // chunk`` beats of ``chunk`` elements, chunk 0 first.
  A group of up to ``queries`` query rows is loaded from ``q`` (``F`` beats a row; the
  group ends at ``last`` on a row's final beat, or when every lane holds a query).
* Keys and values then stream in on ``kv``, one chunk of a key and of its value a beat,
  ``last`` on the final key's final beat. One *key step* is ``F`` cycles. Lane 0 takes
  each key as it arrives; lane ``i`` takes the same chunk one key step after lane
  ``i-1`` (a delay line of ``F`` chunks between lanes), so every lane sees keys in index
  order, skewed by one key step, and all lanes work on the same chunk index: one chunk
  counter serves them all. Each lane holds its running max, running sum and ``×V``
  accumulator.
* A lane has two stages. Stage 1 accumulates the partial dot product of its query with
  the key over the ``F`` chunk cycles and, on the last chunk, registers the logit
  (scale, rounding). Stage 2, the online-softmax update for that key, runs during the
  next key step: on chunk 0 it computes ``(new_max, a, b)``, updates the running max and
  sum and registers ``a, b``; on chunk ``c`` it updates the accumulator's chunk ``c``
  (``shift_round(acc·a, Fp) + b·v``) with ``a, b`` as computed on chunk 0 and
  registered after. The ``v`` chunks stage 2 needs are the lane's ``kv`` input one key
  step later: the output of its delay line (the last lane has one holding only ``v``).
  The query and the accumulator are circular shift registers turned one chunk a cycle,
  so the multipliers always read their first chunk (no multiplexers).
* Because of the skew, lane ``i`` finishes one key step after lane ``i-1``. A finishing
  lane keeps its row (its accumulator) and hands its sum, tagged with the lane, to the
  pipelined reciprocal (:func:`~fpga.hdl.softmax.reciprocal_divider`, ``R = latency``
  cycles, one sum a cycle). The one shared normaliser takes the row of each reciprocal
  that comes out (lane order): it copies that lane's accumulator (and zeroes it) and
  sends the row on ``o`` as ``F`` beats, ``chunk`` multiplies and roundings a beat (a
  register after each) —
  the output bandwidth matches, and a group's rows leave back to back.
* The whole pipeline advances one chunk when a ``kv`` beat is available (or the keys
  have ended), the divider can take the sum of a lane finishing in that cycle, and no
  lane still holding an unsent row would update its accumulator (a new group's first
  key reaching it). So back-pressure on ``o`` and gaps on ``kv`` stall it without
  changing any result, and a group's last rows are normalised while the next group's
  queries load.

Cycle counts without stalls (``kv`` always valid, ``o`` always ready), a group of ``n``
queries and ``K`` keys: ``n·F`` cycles loading the queries, then ``(K + n)·F`` cycles
computing (one ``kv`` beat a cycle for the first ``K·F``), so ``F·(K + 2n)`` cycles a
group, plus ``max(0, R - 2n·F)`` when the reciprocal is slower than a lane's turn around
(a lane's row must be taken before the next group's first key reaches it). The group's
``n·F`` output beats leave on consecutive cycles, the first one ``(K + 1)·F + R + 2``
cycles after the group's first ``kv`` beat (``+ 2``: the normaliser's product and its
requantise each end in a register, :data:`OUT_STAGES`); they overlap the next group's
query loading.
(Measured by ``simulators/tb/tb_attention.py``.)

Multipliers (several DSPs each at 32 bits), with ``Vc = value_dim // F`` value elements a
beat: per lane ``chunk`` for the dot product, one for the scale, ``2·Vc + 1`` for the
update; ``Vc`` in the normaliser (and the pipelined divider for the reciprocal).
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat
from hwgen.numerics.softmax import SOFTMAX_DEFAULT, SoftmaxSpec, scale_code

from .softmax import online_step_hw, reciprocal_divider, reciprocal_operands_hw, requantize_hw, shift_round_hw
from .unit_timing import ATTENTION_OUT_STAGES as OUT_STAGES

__all__ = ["AttentionUnit", "OUT_STAGES"]

# OUT_STAGES (fpga.hdl.unit_timing.ATTENTION_OUT_STAGES): registers between the
# normaliser's row and ``o``: the product ``acc * r``, then the requantised beat (cycles
# they add to a row's first beat).


class AttentionUnit(wiring.Component):
    """Attention for ``queries`` rows at a time with skewed key order, ``chunk`` elements a beat.

    Parameters
    ----------
    head_dim : int
        Elements of a query / key row (``D``).
    value_dim : int
        Elements of a value / output row (``Dv``); must equal ``head_dim`` when
        ``chunk < head_dim``.
    max_keys : int
        Most keys per group; sizes the running sum and the accumulators.
    queries : int
        Query lanes (Edge-MoE: 4).
    scale : float or None
        The softmax scale (``hwgen.Attention``'s ``scale``), fixed at elaboration; ``None``
        adds the input port ``scale_code``.
    in_fmt, out_fmt : FixedFormat
        Format of q, k, v codes and of output codes.
    spec : SoftmaxSpec
        Softmax formats.
    chunk : int or None
        Elements per beat; must divide ``head_dim``. ``None`` (or ``head_dim``): a whole
        row a beat (``F = 1``), and then the value rows and output rows are ``value_dim``
        wide.

    Members
    -------
    q : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(W), chunk), "last": 1})))
        ``F`` beats per query row, chunk 0 first. ``last`` is read on a row's final beat
        (ignored on the others): that row ends the group.
    kv : In(stream.Signature(StructLayout({"k": ArrayLayout(signed(W), chunk), "v": ArrayLayout(signed(W), Vc), "last": 1})))
        ``F`` beats per key, chunks in order; ``last`` is read on a key's final beat (set
        it on the group's final key). ``Vc = value_dim // F``.
    o : Out(stream.Signature(ArrayLayout(signed(out_fmt.width), Vc)))
        ``F`` beats per output row, rows in query order.
    scale_code : In(signed(spec.scale_fmt.width))
        Only with ``scale=None``: the code of ``scale * log2(e)``
        (:func:`hwgen.numerics.softmax.scale_code`); hold it stable while a group
        computes (from its first ``kv`` beat until its last row is out). With a float
        ``scale``, ``scale_code`` is that constant (an ``int``).
    """

    def __init__(
        self,
        head_dim: int,
        value_dim: int,
        max_keys: int = 256,
        queries: int = 4,
        scale: float | None = 1.0,
        in_fmt: FixedFormat = ACT_DEFAULT,
        out_fmt: FixedFormat = ACT_DEFAULT,
        spec: SoftmaxSpec = SOFTMAX_DEFAULT,
        chunk: int | None = None,
    ):
        for name, val in (("head_dim", head_dim), ("value_dim", value_dim), ("max_keys", max_keys), ("queries", queries)):
            if not isinstance(val, int) or val < 1:
                raise TypeError(f"{name} must be a positive integer, not {val!r}")
        if chunk is None:
            chunk = head_dim
        if not isinstance(chunk, int) or chunk < 1:
            raise TypeError(f"chunk must be a positive integer or None, not {chunk!r}")
        if head_dim % chunk:
            raise ValueError(f"chunk ({chunk}) must divide head_dim ({head_dim})")
        if chunk < head_dim and value_dim != head_dim:
            raise ValueError(f"value_dim ({value_dim}) must equal head_dim ({head_dim}) when chunk ({chunk}) < head_dim")
        self.head_dim, self.value_dim, self.max_keys, self.queries = head_dim, value_dim, max_keys, queries
        self.chunk, self.beats = chunk, head_dim // chunk
        self.in_fmt, self.out_fmt, self.spec = in_fmt, out_fmt, spec
        elem = signed(in_fmt.width)
        ports = {
            "q": In(stream.Signature(data.StructLayout({"data": data.ArrayLayout(elem, chunk), "last": 1}))),
            "kv": In(stream.Signature(data.StructLayout({
                "k": data.ArrayLayout(elem, chunk), "v": data.ArrayLayout(elem, value_dim // self.beats), "last": 1}))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_fmt.width), value_dim // self.beats))),
        }
        if scale is None:
            self.scale = None
            ports["scale_code"] = In(signed(spec.scale_fmt.width))
        else:
            self.scale = float(scale)
            self.scale_code = scale_code(scale, spec)  # ValueError with the range if it does not fit
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        spec, fmt = self.spec, self.in_fmt
        n_lanes, d, dv, n_beats = self.queries, self.head_dim, self.value_dim, self.beats
        kc, vc = self.chunk, dv // n_beats  # key and value elements per beat
        fp = spec.prob_frac_bits
        key_bits = ceil_log2(self.max_keys + 1)
        sum_shape = unsigned(fp + 1 + key_bits)
        acc_shape = signed(fmt.width + fp + 1 + key_bits)
        prob_shape = unsigned(fp + 1)
        kv_layout = self.kv.payload.shape()

        # the chunk counter: of the q beat while loading, of the key chunk at lane 0 while computing
        beat = Signal(range(n_beats))
        last_beat = Signal()
        m.d.comb += last_beat.eq(beat == n_beats - 1)
        next_beat = Mux(last_beat, 0, beat + 1)

        # query lanes (circular shift registers of elements) and the group's state
        qreg = [[Signal(signed(fmt.width), name=f"q{i}_{j}") for j in range(d)] for i in range(n_lanes)]
        n_q = Signal(range(n_lanes + 1))  # queries in this group
        load_idx = Signal(range(n_lanes))
        computing = Signal()  # else loading queries
        keys_done = Signal()  # the key with `last` has entered lane 0

        # the reciprocal of each finished row's sum, tagged with its lane
        m.submodules.recip = recip = reciprocal_divider(spec, sum_shape.width, tag_shape=range(n_lanes))
        held = [Signal(name=f"held{i}") for i in range(n_lanes)]  # lane i keeps a row not yet taken
        fin_sum = Signal(sum_shape)  # the sum of the lane finishing now

        # the finished row being sent (a shift register: beat by beat, chunk 0 first)
        fin_valid = Signal()
        fin_r = Signal(unsigned(len(recip.o.payload.quotient[0])))
        fin_acc = [Signal(acc_shape, name=f"fin_acc{j}") for j in range(dv)]
        o_beat = Signal(range(n_beats))
        o_last = Signal()
        m.d.comb += o_last.eq(o_beat == n_beats - 1)

        # a lane finishing now needs the finished-row register free after this cycle
        s1_valid = [Signal(name=f"s1_valid{i}") for i in range(n_lanes)]
        s1_last = [Signal(name=f"s1_last{i}") for i in range(n_lanes)]
        finishing = Signal()
        fin_ok = Signal()      # the divider takes the sum of a lane finishing now
        lanes_free = Signal()  # no lane holding a row would update its accumulator
        advance = Signal()
        m.d.comb += [
            finishing.eq(last_beat & sum(s1_valid[i] & s1_last[i] for i in range(n_lanes)).bool()),
            fin_ok.eq(~finishing | recip.i.ready),
            lanes_free.eq(~sum(held[i] & s1_valid[i] for i in range(n_lanes)).bool()),
            advance.eq(computing & fin_ok & lanes_free & (self.kv.valid | keys_done)),
            self.kv.ready.eq(computing & fin_ok & lanes_free & ~keys_done),
            self.q.ready.eq(~computing),
            recip.i.valid.eq(finishing & computing & lanes_free & (self.kv.valid | keys_done)),
        ]
        dividend, divisor = reciprocal_operands_hw(fin_sum, spec)
        m.d.comb += [recip.i.payload.dividend[0].eq(dividend), recip.i.payload.divisor[0].eq(divisor),
                     recip.i.payload.tag.eq(sum(Mux(s1_valid[i] & s1_last[i], i, 0) for i in range(n_lanes)))]
        # the output registers (OUT_STAGES: the product, the requantised beat) move as a whole
        # when the last one is empty or taken
        out_valid = [Signal(name=f"o_valid{s}") for s in range(1, OUT_STAGES + 1)]
        out_advance = Signal()
        m.d.comb += out_advance.eq(~out_valid[-1] | self.o.ready)
        with m.If(fin_valid & out_advance):
            with m.If(o_last):
                m.d.sync += [fin_valid.eq(0), o_beat.eq(0)]
            with m.Else():
                m.d.sync += o_beat.eq(o_beat + 1)
                m.d.sync += [fin_acc[j].eq(fin_acc[j + vc]) for j in range(dv - vc)]

        # loading a group of queries, F beats a row
        with m.If(self.q.valid & self.q.ready):
            m.d.sync += beat.eq(next_beat)
            for i in range(n_lanes):
                with m.If(load_idx == i):
                    m.d.sync += _shift_in(qreg[i], list(self.q.payload.data))
            with m.If(last_beat):
                with m.If(self.q.payload.last | (load_idx == n_lanes - 1)):
                    m.d.sync += [n_q.eq(load_idx + 1), load_idx.eq(0), computing.eq(1), keys_done.eq(0)]
                with m.Else():
                    m.d.sync += load_idx.eq(load_idx + 1)
        with m.If(advance):
            m.d.sync += beat.eq(next_beat)

        # the lanes
        lane_in = Signal(kv_layout)
        lane_in_valid = Signal()
        m.d.comb += [lane_in.eq(self.kv.payload), lane_in_valid.eq(self.kv.valid & self.kv.ready)]
        fs = spec.scale_fmt.frac_bits
        src, src_valid = lane_in, lane_in_valid
        lane_acc = []
        for i in range(n_lanes):
            # the delay line: one key step (F chunks); its output is the next lane's input
            # and this lane's v for stage 2 (the last lane's holds v only)
            last_lane = i == n_lanes - 1
            line = [Signal(kv_layout["v"].shape if last_lane else kv_layout, name=f"kv{i}_{c}") for c in range(n_beats)]
            line_valid = [] if last_lane else [Signal(name=f"kv{i}_{c}_valid") for c in range(n_beats)]
            v2 = line[-1] if last_lane else line[-1].v

            run_max = Signal(signed(spec.logit.width), init=spec.logit.qmin, name=f"max{i}")
            run_sum = Signal(sum_shape, name=f"sum{i}")
            acc = [Signal(acc_shape, name=f"acc{i}_{j}") for j in range(dv)]
            lane_acc.append(acc)

            # stage 1: the dot product over F chunks, then the logit
            partial = sum(qreg[i][j] * src.k[j] for j in range(kc))
            if n_beats > 1:
                dot_acc = Signal(signed(2 * fmt.width + ceil_log2(d) + 1), name=f"dot{i}")
                dot = dot_acc + partial
            else:
                dot = partial
            logit = Signal(signed(spec.logit.width), name=f"logit{i}")
            m.d.comb += logit.eq(requantize_hw(dot * self.scale_code, 2 * fmt.frac_bits + fs, spec.logit))
            t_reg = Signal(signed(spec.logit.width), name=f"t{i}")

            # stage 2: the online-softmax update, chunk 0 computes and registers a, b
            new_max, a, b = online_step_hw(m, run_max, t_reg, spec, name=f"lane{i}")
            new_sum = Signal(sum_shape, name=f"new_sum{i}")
            m.d.comb += new_sum.eq(shift_round_hw(run_sum * a, fp) + b)
            if n_beats > 1:
                a_reg, b_reg = Signal(prob_shape, name=f"a{i}"), Signal(prob_shape, name=f"b{i}")
                a_now, b_now = Mux(beat == 0, a, a_reg), Mux(beat == 0, b, b_reg)
            else:
                a_now, b_now = a, b
            new_head = [Signal(acc_shape, name=f"new_acc{i}_{j}") for j in range(vc)]
            for j in range(vc):
                m.d.comb += new_head[j].eq(shift_round_hw(acc[j] * a_now, fp) + b_now * v2[j])
            acc_next = acc[vc:] + new_head  # the updated chunk goes to the back

            with m.If(s1_valid[i] & s1_last[i]):  # the sum of lane i's row, final on its last step
                m.d.comb += fin_sum.eq(new_sum if n_beats == 1 else run_sum)
            with m.If(~computing):  # a fresh group: reset the lane and its key registers (the
                # accumulator is zeroed when the normaliser takes its row)
                m.d.sync += [run_max.eq(spec.logit.qmin), run_sum.eq(0), s1_valid[i].eq(0)]
                m.d.sync += [v.eq(0) for v in line_valid]
                if n_beats > 1:
                    m.d.sync += dot_acc.eq(0)
            with m.Elif(advance):
                m.d.sync += line[0].eq(src.v if last_lane else src)
                m.d.sync += [line[c].eq(line[c - 1]) for c in range(1, n_beats)]
                if not last_lane:
                    m.d.sync += line_valid[0].eq(src_valid)
                    m.d.sync += [line_valid[c].eq(line_valid[c - 1]) for c in range(1, n_beats)]
                if n_beats > 1:
                    m.d.sync += _shift_in(qreg[i], qreg[i][:kc])  # turn the query one chunk
                    m.d.sync += dot_acc.eq(Mux(last_beat, 0, dot))
                with m.If(last_beat):
                    m.d.sync += [t_reg.eq(logit), s1_valid[i].eq(src_valid & (n_q > i)), s1_last[i].eq(src.last)]
                with m.If(s1_valid[i]):
                    m.d.sync += [acc[j].eq(acc_next[j]) for j in range(dv)]
                    with m.If(beat == 0):
                        m.d.sync += [run_max.eq(new_max), run_sum.eq(new_sum)]
                        if n_beats > 1:
                            m.d.sync += [a_reg.eq(a), b_reg.eq(b)]
                    with m.If(last_beat & s1_last[i]):  # lane i has its row; its sum went to the divider
                        m.d.sync += held[i].eq(1)
                        with m.If(n_q == i + 1):  # the group's last row
                            m.d.sync += computing.eq(0)
            if not last_lane:
                src, src_valid = line[-1], line_valid[-1]

        with m.If(advance & self.kv.ready & self.kv.payload.last & last_beat):
            m.d.sync += keys_done.eq(1)

        # the shared normaliser: takes the row of each reciprocal in turn, `Vc` multiplies a beat
        take = Signal()
        tag = recip.o.payload.tag
        m.d.comb += [take.eq(recip.o.valid & (~fin_valid | (out_advance & o_last))), recip.o.ready.eq(take)]
        with m.If(take):
            m.d.sync += [fin_valid.eq(1), fin_r.eq(recip.o.payload.quotient[0])]
            m.d.sync += [fin_acc[j].eq(Array(acc[j] for acc in lane_acc)[tag]) for j in range(dv)]
            for i in range(n_lanes):
                with m.If(tag == i):
                    m.d.sync += [held[i].eq(0)] + [a_.eq(0) for a_ in lane_acc[i]]
        frac = fmt.frac_bits + fp + spec.recip_frac_bits
        with m.If(out_advance):
            m.d.sync += [out_valid[0].eq(fin_valid), out_valid[1].eq(out_valid[0])]
            for j in range(vc):
                product = Signal(signed(len(fin_acc[j]) + len(fin_r) + 1), name=f"o_product{j}")
                m.d.sync += [product.eq(fin_acc[j] * fin_r),
                             self.o.payload[j].eq(requantize_hw(product, frac, self.out_fmt))]
        m.d.comb += self.o.valid.eq(out_valid[-1])
        return m


def _shift_in(reg: list, chunk: list) -> list:
    """Statements moving ``reg`` forward by ``len(chunk)`` elements with ``chunk`` at the back."""
    n = len(chunk)
    return [reg[j].eq(reg[j + n]) for j in range(len(reg) - n)] + [reg[len(reg) - n + j].eq(chunk[j]) for j in range(n)]
