"""Fast resource estimate of the accelerator (no synthesis): LUT, FF, DSP48E2, BRAM36.

``estimate_resources(config)`` adds up one term per engine built and the shared part
(controller, DMA, buffer, buffer reader). Each term is a *structural count* computed
from the configuration -- register bits, adder/mux bits, LUT-RAM bits, DSP48E2 tiles of
each multiplier -- times a per-engine coefficient (plus a constant) fitted to Yosys runs
of that engine alone (:func:`coefficients`: :func:`fit_coefficients` over the ``"fit"``
runs of :mod:`fpga.cost.calibration`). Block RAM is not fitted: it is the cheapest tiling of
each block-RAM memory (the buffer, LINEAR's activation store, LayerNorm's row, gamma and
beta) into RAMB18E2/RAMB36E2 shapes, as Yosys' ``memory_libmap`` chooses it.

The structural counts (``_features``), per engine, with ``R x C`` MACs, ``L`` lanes of
``w``-bit activations, ``P``-bit buffer words:

* LINEAR: FF ``2·R·C·A`` (the accumulators and the output tile registers, ``A`` = exact
  accumulator width) + weight-row/bias registers; LUT ``R·C·A`` (accumulate and shift) +
  ``C·(A + w)`` (bias alignment, requantise) + the weight banks' LUT RAM
  (``2·depth·C·w_weight`` bits) + the activation store's lane select + the fused GELU's
  lanes; DSP ``R·C`` products of ``w x w_weight`` bits (+ GELU's). The activation store
  (``ceil(linear_max_k / L)`` lines of ``R`` words) is block RAM or LUT RAM as
  :func:`memory_in_bram` says.
* ATTENTION: ``Q`` query lanes, head ``D`` in chunks of ``c``: FF ``Q·D·(w + acc + 2w)``
  (query, accumulator, the key/value delay line) + ``D·acc`` (normaliser); LUT
  ``Q·c·(2w + 2·acc)`` (dot product, online update) + ``c·(acc + w)`` + the normaliser's
  reciprocal, a combinational divider (``2·N²``, N = 42 bits); DSP ``Q·c`` dot
  products ``w x w`` + ``Q·c`` updates ``acc x prob`` and ``prob x w`` + ``c`` normaliser.
* LAYERNORM (``L`` lanes, three rows in flight): per lane the sums, ``n·x - s1``, the
  products ``x·x``, ``n·x``, ``·root``, ``·gamma`` and the rounding shift; per row the
  variance products and the restoring divider / square root (2 bits a cycle); the row,
  gamma and beta memories (block RAM or LUT RAM, :func:`memory_in_bram`).
* GELU, ADD: ``L·w`` per lane; MOE_COMBINE: ``L`` products ``w x w``; MOE_ROUTE: the
  scheduler's queues (``E·max_keys`` tokens, LUT RAM), top-k slots, the gate softmax;
  MOE_GATHER: address logic only.

Accuracy against Yosys on the recorded whole tops: ``docs/fpga-resources-and-clock.md``.
"""

from __future__ import annotations

import functools
import math

__all__ = ["estimate_resources", "ENGINE_NAMES", "coefficients", "features", "fit_coefficients", "bram36_of_memory",
           "divider_counts", "memory_in_bram", "dsp_of_product", "overflow"]

#: Engines by the name of their opcode, in :data:`fpga.hdl.top.ENGINE_OPS` order.
ENGINE_NAMES = ("GELU", "ADD", "LAYERNORM", "LINEAR", "ATTENTION", "MOE_ROUTE", "MOE_GATHER", "MOE_COMBINE")
_RES = ("lut", "ff", "dsp")


def dsp_of_product(a_bits: int, b_bits: int) -> int:
    """DSP48E2 tiles of a signed ``a x b``-bit product as Yosys' ``mul2dsp`` splits it
    (27 x 18 signed; wider operands in 17-bit unsigned slices plus a signed top slice)."""
    a, b = max(a_bits, b_bits), min(a_bits, b_bits)
    if b < 2 or a + b < 10:
        return 0
    na = 1 if a <= 27 else 1 + math.ceil((a - 27) / 17)
    nb = 1 if b <= 18 else 1 + math.ceil((b - 18) / 17)
    return na * nb


def _partial_sum_luts(a_bits: int, b_bits: int) -> int:
    """LUTs adding a product's DSP partial products: ``(tiles - 1)`` adders ``a + b`` wide."""
    return max(dsp_of_product(a_bits, b_bits) - 1, 0) * (a_bits + b_bits)


#: (depth, width, cost in BRAM36) of the block-RAM shapes (simple dual port).
_BRAM_SHAPES = [(16384, 1, .5), (8192, 2, .5), (4096, 4, .5), (2048, 9, .5), (1024, 18, .5), (512, 36, .5),
                (32768, 1, 1), (16384, 2, 1), (8192, 4, 1), (4096, 9, 1), (2048, 18, 1), (1024, 36, 1), (512, 72, 1)]


def bram36_of_memory(depth: int, width: int, enable_groups: int = 1) -> float:
    """BRAM36 equivalents of a ``depth x width`` memory: its cheapest tiling by one shape.

    A memory whose write port enables ``enable_groups`` equal slices of the word separately
    (LINEAR's activation store: one slice of ``mem_port_bits`` per MAC row) is tiled as Yosys'
    ``memory_libmap`` does it with the blocks' 9-bit byte enables: each slice takes whole
    9-bit byte lanes (a 72-bit RAMB36 port has 8), so a 256-bit slice takes 29 lanes, not
    256 / 9 = 28.4."""
    return min(_bram_tiles(depth, width, enable_groups, d, w) * cost for d, w, cost in _BRAM_SHAPES)


def _bram_tiles(depth: int, width: int, groups: int, d: int, w: int) -> int:
    g = width // groups
    across = math.ceil(groups * math.ceil(g / 9) / (w // 9)) if w >= 9 else groups * math.ceil(g / w)
    return math.ceil(depth / d) * across


#: memory_libmap's costs (Yosys techlibs/xilinx: brams_xc4v.txt, lutrams_xcu.txt): a RAMB18E2,
#: a RAMB36E2, a LUT-RAM cell (RAM32M16: 14 bits x 32, RAM64M8: 7 bits x 64)
_COST_RAMB18, _COST_RAMB36, _COST_LUTRAM = 129, 257, 16


def memory_in_bram(depth: int, width: int, enable_groups: int = 1) -> bool:
    """Whether Yosys puts a ``depth x width`` memory with one write port and one
    synchronous read port in block RAM rather than LUT RAM: the cheaper of the two by
    ``memory_libmap``'s cell costs (block RAM: 129 a RAMB18, 257 a RAMB36; LUT RAM: 16 a
    cell, each write-enable slice in cells of its own). Agrees with the LayerNorm rows and
    activation stores synthesised (``fpga/cost/yosys_runs.json``)."""
    bram = min(_bram_tiles(depth, width, enable_groups, d, w) * (_COST_RAMB18 if c < 1 else _COST_RAMB36)
               for d, w, c in _BRAM_SHAPES)
    g = width // enable_groups
    cells = enable_groups * (math.ceil(g / 14) if depth <= 32 else math.ceil(g / 7) * math.ceil(depth / 64))
    return bram < cells * _COST_LUTRAM


def _memory(depth: int, width: int, enable_groups: int = 1) -> dict:
    """``{"lut", "ff", "bram36"}`` of a memory with a synchronous read port: block RAM, or
    LUT RAM and the read register (:func:`memory_in_bram`)."""
    if memory_in_bram(depth, width, enable_groups):
        return {"lut": 0, "ff": 0, "bram36": bram36_of_memory(depth, width, enable_groups)}
    return {"lut": _lutram(depth, width), "ff": width, "bram36": 0.0}


def _lutram(depth: int, width: int) -> float:
    """LUTs of a ``depth x width`` LUT RAM with one write and one asynchronous read port
    (RAM32M16: 14 bits x 32 in 8 LUTs; RAM64M8: 7 bits x 64 in 8; deeper: RAM64 x n)."""
    if depth <= 32:
        return 8 * math.ceil(width / 14)
    return 8 * math.ceil(width / 7) * math.ceil(depth / 64) + (width * math.ceil(depth / 64) if depth > 64 else 0)


def divider_counts(spec, sum_bits: int, count: int = 1, tag_bits: int = 0) -> dict:
    """Structural ``{"lut", "ff"}`` of the softmax reciprocal on the pipelined divider
    (:func:`fpga.hdl.softmax.reciprocal_divider`, :class:`fpga.hdl.divider.PipelinedDivider`):
    ``count`` divisions of ``2**(Fp+Fr+1) + l`` by ``2 l`` for sums ``l`` of ``sum_bits`` bits.

    The quotient has ``Q = (2**(Fp+Fr+1) + 2**Fp) // 2**(Fp+1)``'s bit length (a softmax sum
    is never below 1.0); each quotient bit is one ``D + 1``-bit subtract and a ``D``-bit
    select (``D = sum_bits + 1``): ``2 D + 2`` LUTs a step. Registers: the input stage and
    ``ceil(Q / STEPS_PER_STAGE)`` stages, each holding remainder and divisor (``D`` bits
    each), the shared dividend/quotient shift register (``Q`` bits), a valid bit and the
    ``tag_bits`` the caller carries (all in bits). The divider alone at 26-bit sums is
    1,638 LUT / 576 FF by Yosys (``docs/fpga-resources-and-clock.md``) against 1,400 / 640
    counted here; the engines' fitted scales absorb the difference."""
    from fpga.hdl.unit_timing import divider_latency, reciprocal_quotient_bits

    q = reciprocal_quotient_bits(spec, spec.one)
    d = sum_bits + 1
    stages = divider_latency(q)  # the input register and the step stages
    return {"lut": count * q * (2 * d + 2), "ff": stages * (count * (2 * d + q) + 1 + tag_bits)}


def _store(c) -> dict:
    """LINEAR's activation store (:mod:`fpga.hdl.engine_linear`): ``ceil(linear_max_k / lanes)``
    lines of ``mac_rows`` buffer words, each row's word written on its own enable."""
    return _memory(math.ceil(c.linear_max_k / c.lanes), c.mac_rows * c.mem_port_bits, c.mac_rows)


def _layernorm_memories(c) -> list:
    """LayerNorm's row memory (three rows of ``W = ceil(max_row / lanes)`` words) and its
    gamma and beta memories (``W`` words each), all ``mem_port_bits`` wide
    (:mod:`fpga.hdl.layernorm`)."""
    words = math.ceil(c.max_row / c.lanes)
    return [_memory(3 * words, c.mem_port_bits), _memory(words, c.mem_port_bits), _memory(words, c.mem_port_bits)]


def features(config, engine: str) -> dict:
    """Structural counts ``{"lut": x, "ff": x, "dsp": x}`` of one engine (or ``"shared"``)."""
    c = config
    from hwgen.numerics.linear import accumulator_bits
    from hwgen.numerics.softmax import SOFTMAX_DEFAULT as spec

    w, lanes, p = c.act_fmt.width, c.lanes, c.mem_port_bits
    if engine == "shared":
        # controller + DMA + the top's registers, and the buffer reader's two word registers
        return {"lut": p + 16 * math.ceil(math.log2(max(c.buffer_words, 2))), "ff": 2 * p + 200, "dsp": 0}
    if engine == "GELU":
        # per lane: two 177-entry x 14-bit slope/offset ROMs, |x|, the interpolation product
        # (slope x the fraction bits below the table step: none for integer formats), requantise
        from hwgen.numerics.gelu import TABLE_ENTRIES, TABLE_STEP_BITS

        fb = max(c.act_fmt.frac_bits - TABLE_STEP_BITS, 0)
        up = max(TABLE_STEP_BITS - c.act_fmt.frac_bits, 0)  # integer formats reach every 2**up-th entry
        rom = 2 * 14 * math.ceil(math.ceil(TABLE_ENTRIES / 2 ** up) / 64)
        return {"lut": lanes * (rom + 4 * w + fb), "ff": lanes * w + 2 * p,
                "dsp": lanes * (dsp_of_product(15, fb) if fb else 0)}
    if engine == "ADD":
        return {"lut": lanes * w, "ff": 2 * p, "dsp": 0}
    if engine == "MOE_GATHER":
        return {"lut": p, "ff": p, "dsp": 1}
    if engine == "MOE_COMBINE":
        return {"lut": lanes * (2 * w + _partial_sum_luts(w, w)) + p, "ff": 6 * p + lanes * 2 * w,
                "dsp": lanes * dsp_of_product(w, w) + 1}
    if engine == "LINEAR":
        r, cols = c.mac_rows, c.mac_cols
        acc = accumulator_bits(c.act_fmt, c.weight_fmt, c.linear_max_k)
        ww = c.weight_fmt.width
        words = math.ceil(cols * ww / p) + math.ceil(cols * w / p)
        gelu = features(c, "GELU")
        store = _store(c)
        # the accumulators and the output tile registers (R·C·A each); the store's lane select
        # (R·w bits of an L-to-1 mux); the store in LUT RAM when it is small
        return {"lut": r * cols * (acc + _partial_sum_luts(w, ww)) + 2 * cols * (acc + w)
                + 2 * _lutram(c.weight_depth, cols * ww)
                + r * lanes * w / 2 + gelu["lut"] + store["lut"],
                "ff": 2 * r * cols * acc + 3 * cols * w + words * p + gelu["ff"] + store["ff"],
                "dsp": r * cols * dsp_of_product(w, ww) + gelu["dsp"]}
    if engine == "ATTENTION":
        q, d, ch = c.attention_queries, c.attention_head_dim, c.attention_chunk
        key_bits = math.ceil(math.log2(c.max_keys + 1))
        fp = spec.prob_frac_bits
        acc = w + fp + 1 + key_bits
        prob = fp + 1
        sums = _partial_sum_luts(w, w) + _partial_sum_luts(acc, prob) + _partial_sum_luts(prob, w)
        # the normaliser's reciprocal: sums of fp + 1 + key_bits bits, tagged with the lane
        div = divider_counts(spec, fp + 1 + key_bits, tag_bits=max(1, math.ceil(math.log2(q))))
        return {"lut": q * ch * (2 * w + 2 * acc + sums) + ch * (acc + w) + q * d * acc / 4 + div["lut"],
                "ff": q * d * (w + acc + 2 * w) + d * acc + 2 * ch * w + div["ff"],
                "dsp": q * ch * (dsp_of_product(w, w) + dsp_of_product(acc, prob) + dsp_of_product(prob, w))
                + ch * dsp_of_product(acc, spec.recip_frac_bits + 1) + q * dsp_of_product(2 * w, 20)}
    if engine == "LAYERNORM":
        from hwgen.numerics.layernorm import RSQRT_BITS as rb

        from fpga.hdl.layernorm import EPS_BITS

        # fpga/hdl/layernorm.py, names as there: nb bits of n; the variance D (dbits); per lane
        # x*x and the sums (stage A), n*x - s1 (centred, cw bits), * root (rb + 3 bits) * gamma
        # (u, uw bits), rounded by a variable shift (sb bits) and saturated (stage C)
        nb = c.max_row.bit_length()
        dbits = 2 * w + 3 * nb + EPS_BITS + 4
        cw = w + 2 * nb + 2
        uw = cw + rb + 4 + w
        sb = math.ceil(math.log2(2 * (rb + dbits) + c.act_fmt.frac_bits + 2))
        lane_dsp = (dsp_of_product(w, w) + dsp_of_product(nb + 1, w) + dsp_of_product(cw, rb + 4)
                    + dsp_of_product(cw + rb + 4, w))
        # (no LUT adders for the partial products here: LUT does not follow them -- 16.1 k at 8
        # lanes of 32 bits, 16.5 k at 16 lanes of 16 bits, where they would be 10.9 k and 5.3 k)
        lane_lut = (w + nb) + (2 * w + nb) + cw + uw * (math.ceil(sb / 2) + 1) + w
        # stage B: n*s2, s1*s1, n*n*eps; restoring division and square root, 2 bits a cycle
        qbits = 2 * rb + 4
        row_dsp = (dsp_of_product(nb + 1, 2 * w + nb) + dsp_of_product(w + nb + 1, w + nb + 1)
                   + dsp_of_product(nb, nb) + dsp_of_product(2 * nb, EPS_BITS))
        row_lut = 2 * 2 * (dbits + 3) + 2 * 3 * qbits + dbits
        mems = _layernorm_memories(c)
        return {"lut": lanes * lane_lut + row_lut + sum(m["lut"] for m in mems),
                "ff": 3 * (w + nb + 1) + 2 * (2 * w + nb) + 3 * dbits + 4 * qbits + 3 * p + sum(m["ff"] for m in mems),
                "dsp": lanes * lane_dsp + row_dsp}
    if engine == "MOE_ROUTE":
        e, k = c.moe_experts, c.moe_k
        tb = max(1, math.ceil(math.log2(c.max_keys)))
        eb = max(1, math.ceil(math.log2(e)))
        # the gate softmax: its reciprocals on the pipelined divider (one; sigmoid_then_topk
        # has k, of [t, 0] each), the token's experts, logits and maxima travelling as the tag;
        # k exponentials and products (~1,000 LUTs each: assumption, scaled by the fit);
        # the scheduler's token queues in LUT RAM
        from hwgen.numerics.softmax import SOFTMAX_DEFAULT as spec

        lw, fp = spec.logit.width, spec.prob_frac_bits
        norm = c.moe_normalization
        n_sums, terms = ((k, 2) if norm == "sigmoid_then_topk" else (1, e) if norm == "softmax_then_topk"
                         else (1, k))
        div = divider_counts(spec, fp + 1 + math.ceil(math.log2(terms + 1)), count=n_sums,
                             tag_bits=k * (eb + lw) + n_sums * lw)
        return {"lut": div["lut"] + 1000 * k + _lutram(e * c.max_keys, tb) + e * tb * 2
                + k * (w + eb) * 4 + lanes * w,
                "ff": e * (tb + 1) + k * (w + eb) * 2 + p + div["ff"], "dsp": k}
    raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINE_NAMES)}, shared")


@functools.cache
def coefficients() -> dict:
    """Per engine and resource, ``(scale, constant)``: resource = scale x structural count +
    constant, fitted by :func:`fit_coefficients` on the recorded ``"fit"`` runs
    (``fpga/cost/yosys_runs.json``) when first needed (a few milliseconds)."""
    from .calibration import load_runs

    return fit_coefficients(load_runs())


#: Fits without a constant: LayerNorm's counts cover the whole engine, and its three fit points
#: span too little of them (LUT 8.1-9.1 k counted for 16.1-17.5 k measured) for a constant to be
#: told from the scale -- a constant would take the per-lane terms out of the estimate.
_THROUGH_ORIGIN = {("LAYERNORM", "lut"), ("LAYERNORM", "dsp")}


def fit_coefficients(runs: list[dict]) -> dict:
    """:func:`coefficients` from recorded runs: for each engine, Yosys' figure of the top with that
    engine alone less the top without engines, against the engine's structural counts
    (least squares on relative error, scale and constant >= 0). A run recorded before the
    shared part (controller, DMA) changed carries the top without engines it was measured
    against (``baseline``) and is taken less that one."""
    import numpy as np

    from .calibration import run_config

    by_cfg = {}
    for r in runs:
        if r.get("role") == "fit":
            by_cfg.setdefault(r["config"], {})["shared" if r["ops"] == [] else r["ops"][0]] = r
    coeffs = {}
    for engine in ("shared",) + ENGINE_NAMES:
        coeffs[engine] = {}
        for res in _RES:
            xs, ys = [], []
            for cfg_name, rs in by_cfg.items():
                if engine not in rs or "shared" not in rs:
                    continue
                cfg = run_config(rs[engine])
                x = features(cfg, engine)[res]
                if engine == "shared":
                    y = rs["shared"]["resources"][res]
                else:  # against the top without engines of the same RTL (``baseline``: an older one)
                    base = rs[engine].get("baseline", rs["shared"])["resources"]
                    y = rs[engine]["resources"][res] - base[res]
                xs.append(x)
                ys.append(y)
            if not xs:
                continue
            x, y = np.array(xs, float), np.array(ys, float)
            wgt = 1 / np.maximum(np.abs(y), 1.0)  # relative error
            a = np.stack([x, np.ones_like(x)], 1) * wgt[:, None]
            if (engine, res) not in _THROUGH_ORIGIN and len(xs) > 1 and np.ptp(x) > 1e-6 * max(np.max(np.abs(x)), 1.0):
                sol = np.linalg.lstsq(a, y * wgt, rcond=None)[0]
            else:  # one point (or the same counts twice, or _THROUGH_ORIGIN): through the origin
                sol = np.array([-1.0, 0.0])
            if sol[1] < 0 or sol[0] < 0:  # refit through the origin (or a constant alone)
                sol = (np.array([float(np.sum(x * y * wgt ** 2) / max(np.sum((x * wgt) ** 2), 1e-12)), 0.0])
                       if np.any(x) else np.array([0.0, float(np.mean(y))]))
            coeffs[engine][res] = (round(float(sol[0]), 4), round(float(sol[1]), 1))
    return coeffs


def _engines(ops) -> tuple:
    if ops is None or ops == "all":
        return ENGINE_NAMES
    names = []
    for o in ops:
        n = o if isinstance(o, str) else o.name
        n = n.upper()
        if n not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {o!r}; known: {', '.join(ENGINE_NAMES)}")
        names.append(n)
    return tuple(n for n in ENGINE_NAMES if n in names)


def estimate_resources(config, ops=None, buffer_words: int | None = None, coeffs: dict | None = None) -> dict:
    """LUT, FF, DSP and BRAM36 of the accelerator for ``config``, without synthesis.

    Parameters
    ----------
    config : fpga.config.AcceleratorConfig
    ops : iterable of engine names or :class:`fpga.isa.Op`, optional
        Engines built (default all), as ``Accelerator(ops=...)``.
    buffer_words : int, optional
        Buffer depth in words (default ``config.buffer_words``).

    Returns
    -------
    dict
        ``lut``, ``ff``, ``dsp``, ``bram36`` (totals), ``engines`` (``{name: {lut, ff, dsp,
        bram36}}``, the shared part as ``"shared"``), ``part``, ``utilization``
        (``{resource: fraction of the part}``), ``fits`` (bool), ``overflow`` (resources
        over the part, ``{resource: (needed, available)}``) and ``method``.
    """
    k = coeffs or coefficients()
    words = buffer_words or config.buffer_words
    per = {}
    for engine in ("shared",) + _engines(ops):
        f = features(config, engine)
        row = {}
        for res in _RES:
            scale, const = k.get(engine, {}).get(res, (1.0, 0.0))
            row[res] = max(0.0, scale * f[res] + const)
        row["bram36"] = 0.0
        per[engine] = row
    # each one-engine fit run includes the buffer reader's two word registers and its output
    # mux, which a top has once: move them from the engines to the shared part
    reader = {"lut": config.mem_port_bits, "ff": 2 * config.mem_port_bits, "dsp": 0}
    engines = [e for e in per if e != "shared"]
    for e in engines:
        for res in _RES:
            per[e][res] = max(0.0, per[e][res] - reader[res])
    if engines:
        for res in _RES:
            per["shared"][res] += reader[res]
    per["shared"]["bram36"] = bram36_of_memory(words, config.mem_port_bits)
    if "LAYERNORM" in per:
        per["LAYERNORM"]["bram36"] = sum(m["bram36"] for m in _layernorm_memories(config))
    if "LINEAR" in per:
        per["LINEAR"]["bram36"] = _store(config)["bram36"]
    tot = {res: sum(r[res] for r in per.values()) for res in _RES + ("bram36",)}
    out = {res: (round(tot[res]) if res != "bram36" else tot[res]) for res in tot}
    part = config.part
    avail = part.capacity()
    out["engines"] = {e: {res: (round(v) if res != "bram36" else v) for res, v in r.items()} for e, r in per.items()}
    out["part"] = part.name
    out["utilization"] = {res: out[res] / avail[res] for res in avail}
    out["overflow"] = overflow(out, part)
    out["fits"] = not out["overflow"]
    out["method"] = "estimate: structural counts x per-engine coefficients fitted to Yosys (fpga/cost/resources.py)"
    return out


def overflow(resources: dict, part) -> dict:
    """``{resource: (needed, available)}`` for each resource of ``resources`` over ``part``."""
    avail = part.capacity()
    return {res: (resources[res], a) for res, a in avail.items()
            if resources.get(res) is not None and resources[res] > a}
