"""Attention unit: QKᵀ, single-pass softmax and ×V for several queries at a time.

Arithmetic: :mod:`hwgen.numerics.attention`, bit for bit. Architecture (Edge-MoE):

* A group of up to ``queries`` query rows is loaded from ``q`` (one row a beat; the
  group ends at ``last`` or when every lane holds a query).
* Keys and values then stream in on ``kv``, one key a beat, ``last`` on the final key.
  Lane 0 takes each key as it arrives; lane ``i`` takes it one step after lane ``i-1``
  (a shift register of keys), so every lane sees keys in index order, skewed by one
  step. Each lane holds its running max, running sum and ``×V`` accumulator.
* A lane has two stages: the logit of the key entering it (dot product, scale,
  rounding) is registered, then the online-softmax update of its state.
* Because of the skew, lane ``i`` finishes one step after lane ``i-1``: one finished row
  a step goes to the one shared normaliser (reciprocal of the sum, multiply, round),
  which feeds ``o`` — the output bandwidth is constant.
* The whole pipeline advances only when a key is available (or the keys have ended)
  and the output register is free, so back-pressure on ``o`` and gaps on ``kv`` stall
  it without changing any result.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hwgen.fixedpoint import ACT_DEFAULT, FixedFormat
from hwgen.numerics.softmax import SOFTMAX_DEFAULT, SoftmaxSpec, scale_code

from .softmax import online_step_hw, reciprocal_hw, requantize_hw, shift_round_hw

__all__ = ["AttentionUnit"]


class AttentionUnit(wiring.Component):
    """Attention for ``queries`` rows at a time with skewed key order.

    Parameters
    ----------
    head_dim : int
        Elements of a query / key row (``D``).
    value_dim : int
        Elements of a value / output row (``Dv``).
    max_keys : int
        Most keys per group; sizes the running sum and the accumulators.
    queries : int
        Query lanes (Edge-MoE: 4).
    scale : float
        The softmax scale (``hwgen.Attention``'s ``scale``), fixed at elaboration.
    in_fmt, out_fmt : FixedFormat
        Format of q, k, v codes and of output codes.
    spec : SoftmaxSpec
        Softmax formats.

    Members
    -------
    q : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(W), head_dim), "last": 1})))
    kv : In(stream.Signature(StructLayout({"k": ..., "v": ArrayLayout(signed(W), value_dim), "last": 1})))
    o : Out(stream.Signature(ArrayLayout(signed(out_fmt.width), value_dim)))
        One output row per query, in query order.
    """

    def __init__(
        self,
        head_dim: int,
        value_dim: int,
        max_keys: int = 256,
        queries: int = 4,
        scale: float = 1.0,
        in_fmt: FixedFormat = ACT_DEFAULT,
        out_fmt: FixedFormat = ACT_DEFAULT,
        spec: SoftmaxSpec = SOFTMAX_DEFAULT,
    ):
        for name, val in (("head_dim", head_dim), ("value_dim", value_dim), ("max_keys", max_keys), ("queries", queries)):
            if not isinstance(val, int) or val < 1:
                raise TypeError(f"{name} must be a positive integer, not {val!r}")
        self.head_dim, self.value_dim, self.max_keys, self.queries = head_dim, value_dim, max_keys, queries
        self.scale, self.in_fmt, self.out_fmt, self.spec = float(scale), in_fmt, out_fmt, spec
        self.scale_code = scale_code(scale, spec)  # ValueError with the range if it does not fit
        row = data.ArrayLayout(signed(in_fmt.width), head_dim)
        super().__init__({
            "q": In(stream.Signature(data.StructLayout({"data": row, "last": 1}))),
            "kv": In(stream.Signature(data.StructLayout({
                "k": row, "v": data.ArrayLayout(signed(in_fmt.width), value_dim), "last": 1}))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_fmt.width), value_dim))),
        })

    def elaborate(self, platform):
        m = Module()
        spec, fmt = self.spec, self.in_fmt
        n_lanes, dv = self.queries, self.value_dim
        fp = spec.prob_frac_bits
        key_bits = ceil_log2(self.max_keys + 1)
        sum_shape = unsigned(fp + 1 + key_bits)
        acc_shape = signed(fmt.width + fp + 1 + key_bits)
        kv_layout = self.kv.payload.shape()

        # query lanes and the group's state
        qreg = [Signal(self.q.payload.shape()["data"].shape, name=f"q{i}") for i in range(n_lanes)]
        n_q = Signal(range(n_lanes + 1))  # queries in this group
        load_idx = Signal(range(n_lanes))
        computing = Signal()  # else loading queries
        keys_done = Signal()  # the key with `last` has entered lane 0

        # the key shift register: lane i's input is what lane i-1 took one step earlier
        kv_reg = [Signal(kv_layout, name=f"kv{i}") for i in range(n_lanes)]
        kv_reg_valid = [Signal(name=f"kv{i}_valid") for i in range(n_lanes)]

        # the output register (one finished row awaiting normalisation)
        fin_valid = Signal()
        fin_l = Signal(sum_shape)
        fin_acc = [Signal(acc_shape, name=f"fin_acc{j}") for j in range(dv)]

        out_free = ~fin_valid | self.o.ready
        advance = Signal()
        m.d.comb += [
            advance.eq(computing & out_free & (self.kv.valid | keys_done)),
            self.kv.ready.eq(computing & out_free & ~keys_done),
            self.q.ready.eq(~computing),
        ]
        with m.If(fin_valid & self.o.ready):
            m.d.sync += fin_valid.eq(0)

        # loading a group of queries
        with m.If(self.q.valid & self.q.ready):
            for i in range(n_lanes):
                with m.If(load_idx == i):
                    m.d.sync += qreg[i].eq(self.q.payload.data)
            with m.If(self.q.payload.last | (load_idx == n_lanes - 1)):
                m.d.sync += [n_q.eq(load_idx + 1), load_idx.eq(0), computing.eq(1), keys_done.eq(0)]
            with m.Else():
                m.d.sync += load_idx.eq(load_idx + 1)

        # the lanes
        lane_in = Signal(kv_layout)
        lane_in_valid = Signal()
        m.d.comb += [lane_in.eq(self.kv.payload), lane_in_valid.eq(self.kv.valid & self.kv.ready)]
        fs = spec.scale_fmt.frac_bits
        for i in range(n_lanes):
            src = lane_in if i == 0 else kv_reg[i - 1]
            src_valid = lane_in_valid if i == 0 else kv_reg_valid[i - 1]
            run_max = Signal(signed(spec.logit.width), init=spec.logit.qmin, name=f"max{i}")
            run_sum = Signal(sum_shape, name=f"sum{i}")
            acc = [Signal(acc_shape, name=f"acc{i}_{j}") for j in range(dv)]

            # stage 1: the logit of the key entering the lane
            dot = sum(qreg[i][d] * src.k[d] for d in range(self.head_dim))
            logit = Signal(signed(spec.logit.width), name=f"logit{i}")
            m.d.comb += logit.eq(requantize_hw(dot * self.scale_code, 2 * fmt.frac_bits + fs, spec.logit))
            t_reg = Signal(signed(spec.logit.width), name=f"t{i}")
            v_reg = Signal(kv_layout["v"].shape, name=f"v{i}")
            s1_valid = Signal(name=f"s1_valid{i}")
            s1_last = Signal(name=f"s1_last{i}")

            # stage 2: the online-softmax update of the lane's state
            new_max, a, b = online_step_hw(m, run_max, t_reg, spec, name=f"lane{i}")
            new_sum = Signal(sum_shape, name=f"new_sum{i}")
            m.d.comb += new_sum.eq(shift_round_hw(run_sum * a, fp) + b)
            new_acc = [Signal(acc_shape, name=f"new_acc{i}_{j}") for j in range(dv)]
            for j in range(dv):
                m.d.comb += new_acc[j].eq(shift_round_hw(acc[j] * a, fp) + b * v_reg[j])

            with m.If(~computing):  # a fresh group: reset the lane and its key registers
                m.d.sync += [run_max.eq(spec.logit.qmin), run_sum.eq(0), kv_reg_valid[i].eq(0), s1_valid.eq(0)]
                m.d.sync += [a_.eq(0) for a_ in acc]
            with m.Elif(advance):
                m.d.sync += [kv_reg[i].eq(src), kv_reg_valid[i].eq(src_valid)]
                m.d.sync += [t_reg.eq(logit), v_reg.eq(src.v), s1_valid.eq(src_valid & (n_q > i)), s1_last.eq(src.last)]
                with m.If(s1_valid):
                    m.d.sync += [run_max.eq(new_max), run_sum.eq(new_sum)]
                    m.d.sync += [acc[j].eq(new_acc[j]) for j in range(dv)]
                    with m.If(s1_last):  # lane i has its row: to the normaliser
                        m.d.sync += [fin_valid.eq(1), fin_l.eq(new_sum)]
                        m.d.sync += [fin_acc[j].eq(new_acc[j]) for j in range(dv)]
                        with m.If(n_q == i + 1):  # the group's last row
                            m.d.sync += computing.eq(0)

        with m.If(advance & self.kv.valid & self.kv.ready & self.kv.payload.last):
            m.d.sync += keys_done.eq(1)

        # the shared normaliser
        r = reciprocal_hw(m, fin_l, spec)
        frac = fmt.frac_bits + fp + spec.recip_frac_bits
        m.d.comb += self.o.valid.eq(fin_valid)
        for j in range(dv):
            m.d.comb += self.o.payload[j].eq(requantize_hw(fin_acc[j] * r, frac, self.out_fmt))
        return m
