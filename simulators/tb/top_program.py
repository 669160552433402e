"""A program that exercises every compute op of the accelerator top, with its expected results.

:func:`build` lays out operands in external memory, writes the program (``fpga.isa``)
that LOADs them, runs LINEAR (with and without GELU, several token and feature tiles,
K split over weight-bank tiles), ADD, LAYERNORM (also with a row-stride override), GELU,
MOE_ROUTE, (if built) ATTENTION on two heads, and a whole MoE layer (:func:`_moe_layer`:
gate LINEAR, MOE_ROUTE reading the padded scores with a row-stride override, then for every
expert and chunk MOE_GATHER, LINEAR fc1 + GELU and fc2 with rows from ``moe_rows``,
MOE_COMBINE), and STOREs every result; the expected external words come from
``hwgen.numerics`` only (the reference the hardware must equal bit for bit; the MoE layer's
from :func:`hwgen.numerics.moe.moe_codes`).
"""

from __future__ import annotations

import math

import numpy as np

from fpga.hdl.engine_linear import weight_words
from fpga.hdl.layernorm import eps_code
from fpga.isa import REGISTERS, Instr, Op, schedule_length, schedule_words
from hwgen.numerics.attention import attention_codes
from hwgen.numerics.gelu import gelu_codes
from hwgen.numerics.layernorm import layernorm_codes
from hwgen.numerics.linear import linear_codes
from hwgen.numerics.moe import moe_codes
from hwgen.numerics.residual import residual_codes
from hwgen.numerics.softmax import SOFTMAX_DEFAULT, scale_code
from hwgen.numerics.topk import expert_schedule, route

__all__ = ["build", "pack_words", "unpack_words", "designed_routing"]


def pack_words(codes: np.ndarray, bits: int, per_word: int) -> list[int]:
    """Rows of codes -> words (``per_word`` codes of ``bits`` each, code 0 at bit 0), row by row;
    each row starts a new word."""
    out = []
    for row in np.asarray(codes, dtype=np.int64).reshape(len(codes), -1):
        for w0 in range(0, len(row), per_word):
            word = 0
            for i, v in enumerate(row[w0:w0 + per_word]):
                word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
            out.append(word)
    return out


def unpack_words(words: list[int], bits: int, per_word: int, n: int) -> list[int]:
    """The first ``n`` codes of words (signed)."""
    vals = []
    for w in words:
        for i in range(per_word):
            v = (w >> (i * bits)) & ((1 << bits) - 1)
            vals.append(v - (1 << bits) if v >> (bits - 1) else v)
    return vals[:n]


def designed_routing(k: int, n_e: int) -> tuple[np.ndarray, int]:
    """Gate scores (``fixed<32,10>`` codes, steps of 1/4) ``[tokens, n_e]`` and a chunk size T
    such that top-``k`` routing gives expert 0 no tokens, one expert exactly T, another more
    than T, with tied scores (the lower index wins) and, for ``k = 2``, unequal gate weights."""
    if n_e < 4 or k > 2:
        raise ValueError(f"designed_routing needs >= 4 experts and k <= 2, not {n_e} and {k}")
    if k == 1:  # (chosen, tie partner or None): expert 1 x3 (= T), 2 x4 (> T), 3 x1, 0 none
        picks = [(1, 2), (2, None), (1, None), (2, 3), (1, 3), (2, None), (2, None), (3, None)]
    else:  # ((first, second), tied): expert 1 x3 (= T), 2 x5, 3 x6 (> T), 0 none
        picks = [((1, 2), True), ((2, 3), True), ((1, 3), True), ((2, 3), False), ((1, 3), False),
                 ((2, 3), True), ((3, 2), False)]
    scores = np.full((len(picks), n_e), -100, dtype=np.int64)
    for t, (chosen, tie) in enumerate(picks):
        if k == 1:
            scores[t, chosen] = 10
            if tie is not None:
                scores[t, tie] = 10
        else:
            scores[t, chosen[0]], scores[t, chosen[1]] = 10, 10 if tie else 7
    return scores << 20, 3


class _Layout:
    def __init__(self, bytes_per_word: int):
        self.ext, self.buf, self.bpw = 0x10000, 0, bytes_per_word
        self.memory: dict[int, int] = {}

    def ext_block(self, words: list[int]) -> int:
        addr = self.ext
        for i, w in enumerate(words):
            self.memory[addr // self.bpw + i] = w
        self.ext += (len(words) + 8) * self.bpw
        return addr

    def buf_block(self, n: int) -> int:
        addr = self.buf
        self.buf += n + 2
        return addr


def build(config, ops, seed: int = 0) -> dict:
    """``{"program", "memory" (ext word -> int), "expect" (ext word -> int), "names" (ext word -> what)}``."""
    c = config
    act, wf = c.act_fmt, c.weight_fmt
    lanes, bits, bpw = c.lanes, act.width, c.mem_port_bits // 8
    rng = np.random.default_rng(seed)
    lay = _Layout(bpw)
    prog: list[Instr] = []
    expect: dict[int, int] = {}
    names: dict[int, str] = {}

    def stride(d):
        return -(-d // lanes)

    def small(shape, scale=2.0):  # codes of moderate values, so that results are not all saturated
        return np.clip(np.round(rng.normal(0, scale, shape) * 2 ** act.frac_bits), act.qmin, act.qmax).astype(np.int64)

    def load(codes, d):
        words = pack_words(codes, bits, lanes)
        ext = lay.ext_block(words)
        buf = lay.buf_block(len(words))
        prog.append(Instr(Op.LOAD, dst=buf, length=len(words), ext_addr=ext))
        return buf

    def store(buf, codes, name):
        words = pack_words(codes, bits, lanes)
        ext = lay.ext_block([0] * len(words))
        prog.append(Instr(Op.STORE, src0=buf, length=len(words), ext_addr=ext))
        for i, w in enumerate(words):
            expect[ext // bpw + i] = w
            names[ext // bpw + i] = f"{name} word {i}"

    def weights(w, b):
        """The LINEAR weight image (fpga.hdl.engine_linear)."""
        cols = c.mac_cols
        w_words, bias_words = weight_words(cols, wf.width, act.width, c.mem_port_bits)
        img = []
        for j in range(0, w.shape[1], cols):
            bias = pack_words(b[None, j:j + cols], act.width, lanes)
            rows = pack_words(w[:, j:j + cols], wf.width, c.mem_port_bits // wf.width)
            assert len(bias) == bias_words and len(rows) == w_words * len(w)
            img += bias + rows
        return lay.ext_block(img)

    m_tok = c.mac_rows + 2                      # a partial token tile
    k = 2 * c.weight_depth + lanes // 2 + 1     # K over three weight-bank tiles, not a whole word
    n = 2 * c.mac_cols                          # two feature tiles
    x = small((m_tok, k))
    xb = load(x, k)
    outs = {}
    if Op.LINEAR in ops:
        for name, gelu in (("linear_gelu", True), ("linear", False)):
            w = rng.integers(wf.qmin, wf.qmax + 1, (k, n)) // 4
            b = small((n,))
            y = linear_codes(x, w, b, act, wf, act, act, gelu=gelu)
            yb = lay.buf_block(m_tok * stride(n))
            prog.append(Instr(Op.LINEAR, flags=int(gelu), src0=xb, dst=yb, length=m_tok, aux=k, src1=n,
                              ext_addr=weights(w, b)))
            store(yb, y, name)
            outs[name] = (yb, y)
    if not outs:  # without LINEAR: the ADD operands straight from memory
        for name in ("linear_gelu", "linear"):
            y = small((m_tok, n))
            outs[name] = (load(y, n), y)
    (y1b, y1), (y2b, y2) = outs["linear_gelu"], outs["linear"]
    if Op.ADD in ops:
        z = residual_codes(y1, y2, act, act, act)
        zb = lay.buf_block(m_tok * stride(n))
        prog.append(Instr(Op.ADD, src0=y1b, src1=y2b, dst=zb, length=m_tok * stride(n)))
        store(zb, z, "add")
    else:
        z = small((m_tok, n), 8.0)
        zb = load(z, n)
    if Op.LAYERNORM in ops:
        eps = 1e-5
        g, be = small((n,), 1.0), small((n,), 1.0)
        gb = load(np.stack([g, be]), n)  # gamma words then beta words
        prog.append(Instr(Op.SET, aux=REGISTERS["ln_eps"], ext_addr=eps_code(eps, act)))
        lnb = lay.buf_block(m_tok * stride(n))
        prog.append(Instr(Op.LAYERNORM, src0=zb, src1=gb, dst=lnb, length=m_tok, aux=n))
        store(lnb, layernorm_codes(z, g, be, act, act, act, act, eps=eps), "layernorm")
        # the first d2 elements of each row, rows stride(n) words apart (ext_addr[15:0]); the
        # rest of each destination row keeps what was LOADed there
        d2 = n - lanes
        gb2 = load(np.stack([g[:d2], be[:d2]]), d2)
        pre = small((m_tok, n))
        ln2b = load(pre, n)
        prog.append(Instr(Op.LAYERNORM, src0=zb, src1=gb2, dst=ln2b, length=m_tok, aux=d2, ext_addr=stride(n)))
        want = pre.copy()
        want[:, :d2] = layernorm_codes(z[:, :d2], g[:d2], be[:d2], act, act, act, act, eps=eps)
        store(ln2b, want, "layernorm row stride")
    if Op.GELU in ops:
        gx = small((m_tok, n), 3.0)
        gx[0, :4] = [act.qmin, act.qmax, 0, -1]
        gxb = load(gx, n)
        gob = lay.buf_block(m_tok * stride(n))
        prog.append(Instr(Op.GELU, src0=gxb, dst=gob, length=m_tok * stride(n)))
        store(gob, gelu_codes(gx, act, act), "gelu")
    if Op.MOE_ROUTE in ops:
        for e_run in (c.moe_experts, max(c.moe_k, c.moe_experts - 1)):
            scores = small((m_tok, e_run), 1.0)
            scores[1, :] = scores[1, 0]                # ties: the lower index wins
            sb = load(scores, e_run)
            experts, gw = route(scores, c.moe_k, act, act, c.moe_normalization)
            tb = lay.buf_block(m_tok)
            words = schedule_words(expert_schedule(experts), act.width, lanes)
            schb = lay.buf_block(len(words))
            prog.append(Instr(Op.MOE_ROUTE, src0=sb, dst=tb, src1=schb, length=m_tok, aux=e_run))
            store(tb, np.concatenate([experts, gw], axis=1), f"moe_route_table E={e_run}")
            store(schb, words, f"moe_schedule E={e_run}")
    if Op.ATTENTION in ops:
        d = c.attention_head_dim - (lanes if c.attention_head_dim > lanes else 0)  # a head shorter than the unit's
        heads, sq, sk = 2, c.attention_queries + 1, c.attention_queries + 3
        q, kk, v = small((sq, heads * d), 1.0), small((sk, heads * d), 1.0), small((sk, heads * d), 1.0)
        qb, kb, vb = load(q, heads * d), load(kk, heads * d), load(v, heads * d)
        ob = lay.buf_block(sq * stride(heads * d))
        scale = 1.0 / math.sqrt(d)
        code = scale_code(scale, SOFTMAX_DEFAULT)
        for reg, val in (("att_dim", d), ("att_in_stride", stride(heads * d)), ("att_out_stride", stride(heads * d)),
                         ("att_scale", code & ((1 << 20) - 1))):
            prog.append(Instr(Op.SET, aux=REGISTERS[reg], ext_addr=val))
        want = np.zeros((sq, heads * d), dtype=np.int64)
        for h in range(heads):
            hs = slice(h * d, (h + 1) * d)
            want[:, hs] = attention_codes(q[:, hs], kk[:, hs].T, v[:, hs], (act, act, act), act, scale=scale)
            w0 = h * d // lanes
            prog.append(Instr(Op.ATTENTION, src0=qb + w0, src1=kb + w0, ext_addr=vb + w0, dst=ob + w0,
                              length=sq, aux=sk))
        store(ob, want, "attention")
    if {Op.LINEAR, Op.MOE_ROUTE, Op.MOE_GATHER, Op.MOE_COMBINE} <= set(ops):
        _moe_layer(c, rng, prog, lay, load, store, weights, small)
    prog.append(Instr(Op.END))
    return {"program": prog, "memory": lay.memory, "expect": expect, "names": names, "buffer_words": lay.buf}


def _moe_layer(c, rng, prog, lay, load, store, weights, small) -> None:
    """A whole ``hwgen.MoE`` (GELU experts) on the accelerator, Edge-MoE's way.

    Tokens ``x [N, D]``, gate ``[D, E]`` = identity on the first E dimensions (so the
    scores are ``x[:, :E]``: :func:`designed_routing`'s, with its experts of 0, T and more
    than T tokens and ties). The gate LINEAR writes scores padded to ``mac_cols`` columns,
    which MOE_ROUTE reads with ``ext_addr`` = their row stride. Y is zeroed by a LOAD; then
    for every expert and every chunk that could hold tokens (``ceil(N / T)``, so most
    gather nothing and their LINEARs have no rows): MOE_GATHER, LINEAR fc1 with GELU and
    fc2 (``length`` 0: the rows come from ``moe_rows``), MOE_COMBINE.
    """
    act, wf, lanes, n_e, k = c.act_fmt, c.weight_fmt, c.lanes, c.moe_experts, c.moe_k
    d, hid, d_out = 2 * lanes, 2 * c.mac_cols, c.mac_cols   # fc2's K spans two weight-bank tiles if depth < 2 mac_cols
    if d < n_e or d_out % lanes:
        raise ValueError(f"the MoE layer needs >= {n_e} input dimensions and whole output words")
    scores, t_max = designed_routing(k, n_e)
    n_tok = len(scores)
    x = small((n_tok, d), 1.0)
    x[:, :n_e] = scores
    gate = np.zeros((d, n_e), dtype=np.int64)
    gate[np.arange(n_e), np.arange(n_e)] = 1 << wf.frac_bits   # 1.0
    w1 = rng.integers(wf.qmin, wf.qmax + 1, (n_e, d, hid)) // 16
    b1 = small((n_e, hid), 0.5)
    w2 = rng.integers(wf.qmin, wf.qmax + 1, (n_e, hid, d_out)) // 16
    b2 = small((n_e, d_out), 0.5)
    want = moe_codes(x, gate, None, w1, b1, w2, b2, k, "gelu", c.moe_normalization, act, wf, wf)

    s_x, s_h, s_o = d // lanes, hid // lanes, d_out // lanes
    xb = load(x, d)
    n_pad = c.mac_cols * -(-n_e // c.mac_cols)
    gate_pad = np.zeros((d, n_pad), dtype=np.int64)
    gate_pad[:, :n_e] = gate
    sb = lay.buf_block(n_tok * n_pad // lanes)
    prog.append(Instr(Op.LINEAR, src0=xb, dst=sb, length=n_tok, aux=d, src1=n_pad,
                      ext_addr=weights(gate_pad, np.zeros(n_pad, dtype=np.int64))))
    table, sched = lay.buf_block(n_tok), lay.buf_block(schedule_length(n_tok, k))
    prog.append(Instr(Op.MOE_ROUTE, src0=sb, dst=table, src1=sched, length=n_tok, aux=n_e, ext_addr=n_pad // lanes))
    prog.append(Instr(Op.SET, aux=REGISTERS["moe_cursor"], ext_addr=sched + 1))
    prog.append(Instr(Op.SET, aux=REGISTERS["moe_end"], ext_addr=sched + schedule_length(n_tok, k)))
    yb = load(np.zeros((n_tok, d_out), dtype=np.int64), d_out)
    gb, lb = lay.buf_block(t_max * s_x), lay.buf_block(t_max)
    hb, ob = lay.buf_block(t_max * s_h), lay.buf_block(t_max * s_o)
    for e in range(n_e):
        fc1, fc2 = weights(w1[e], b1[e]), weights(w2[e], b2[e])
        for _ in range(-(-n_tok // t_max)):
            prog.append(Instr(Op.MOE_GATHER, src0=xb, dst=gb, src1=lb, aux=e, length=t_max,
                              ext_addr=s_x | (table << 16)))
            prog.append(Instr(Op.LINEAR, flags=0b11, src0=gb, dst=hb, aux=d, src1=hid, ext_addr=fc1))
            prog.append(Instr(Op.LINEAR, flags=0b10, src0=hb, dst=ob, aux=hid, src1=d_out, ext_addr=fc2))
            prog.append(Instr(Op.MOE_COMBINE, src0=ob, src1=lb, dst=yb, aux=s_o))
    store(yb, want, "moe layer")
