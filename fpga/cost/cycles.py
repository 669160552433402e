"""Analytic cycle model of the accelerator, per instruction, from each engine's RTL.

Every instruction costs the controller's fetch (``fetch_cycles = L + 3``: the NEXT and
FETCH states, the instruction read's latency ``L`` and DECODE, ``fpga/hdl/controller.py``)
plus its engine's cycles from ``unit_start`` to ``unit_done`` (what the unit testbenches
count). ``L`` is the external memory's read latency in cycles (:data:`MEM_LATENCY`, the
simulated memory's default, ``simulators/program_backend.py``). Units: cycles; ``lanes``
activations a buffer word, ``B`` = :data:`BURST` beats a DMA burst.

===========  ========================================================================================
op           engine cycles (after the fetch)
===========  ========================================================================================
LOAD         ``2 + L + n``: command handshake and done (2), the latency once, then one beat a
             cycle: the DMA keeps two bursts requested ahead (``dma.py``; exact for ``L <= B``)
STORE        ``2 + n + ceil(n / B) * 3``: per burst NEXT, WR_REQ, WR_PRIME (the buffer's read
             latency); writes are posted
LINEAR       :func:`linear_cycles`: the engine's exact count (weight stream, activation store, DMA)
GELU, ADD    ``operands * n + 4``: one buffer read a cycle; the reader's two-cycle round
             trip, the unit's register stage, the done pulse
LAYERNORM    :func:`fpga.hdl.engine_layernorm.layernorm_cycles`: ``3W + B + (rows - 1) max(W, B)
             + W + 13`` with ``W = ceil(D / lanes)`` words a row and ``B = 43`` (the reciprocal
             square root at two bits a cycle, pipelined across rows: statistics of row r+1,
             square root of row r, output of row r-1; 10 of the 13: the unit's input and
             output registers); gamma and beta read once
ATTENTION    per group of ``n <= P`` queries (``P = attention_queries``):
             ``n*F*w + 2*Sk*F*w + (n-1)*F + 3``, plus ``R + 2 + n_last*F*w - (n_last-1)*F + 1``
             once (``2``: the normaliser's output registers), with ``F = head_dim / chunk`` (configured head, whatever ``att_dim``),
             ``w = chunk / lanes``, ``R`` = :data:`RECIP_LATENCY`: query words, key and value
             words (the read port bounds the unit), the skew of ``n-1`` key steps of ``F``
             cycles (a finished lane keeps its row while its reciprocal is computed, so the
             next group's queries load while the rows leave at ``w`` cycles a chunk); after
             the last group, its first reciprocal and its ``n_last`` rows (for ``R <= 2*F*w``
             and ``R >= P``: the divider holds every row of a group)
MOE_ROUTE    ``M * (E_cfg + ceil(E / lanes)) + M * k + (E_cfg - E_used) + 6 + R + 5``: ``E_cfg =
             moe_experts`` score beats a token (missing experts are fed as the most negative
             code) plus one cycle a score word taken; then one schedule entry a cycle and one
             cycle per expert without tokens (the scheduler scans all ``E_cfg`` queues); the
             top-k result, the last token's ``k`` queue writes, the prefetch pointer's start,
             the header word and done (6); the last token's gate weights through the pipelined
             reciprocal and the registers around it (``R + 5``, ``fpga.hdl.moe.GATE_PRE_STAGES``
             and ``GATE_POST_STAGES``; none for ``moe_normalization = "topk"``; earlier tokens'
             overlap the next token's ``E_cfg`` score beats)
MOE_GATHER   ``rows * (S + 9) + 4`` (``+ 2`` when T rows or ``moe_end`` end it): schedule entry
             and route word (two dependent reads), ``S`` words copied, the list word
MOE_COMBINE  ``rows * (2 So + 5) + 6`` (``1`` for no rows): H and Y words share the read port
SET          1;  SYNC 0;  END: ``L + 2`` in all (``done`` rises in DECODE)
===========  ========================================================================================

Register-sized ops (MOE_GATHER, the experts' LINEARs with ``flags.1``, MOE_COMBINE) depend
on the rows each expert gets: pass the real count (``moe_rows``, e.g. from
:mod:`fpga.cost.routing` on a fixed-point reference run) or the compiler's uniform
expectation (``Instr.expect_rows``).

Not fitted to measurements: every term above is read off the RTL's state machines; the
RTL runs check the model (``tests/fpga/compile/test_simulate_rtl.py``, ``docs/fpga-cost-model.md``).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple


from hwgen.numerics.softmax import SOFTMAX_DEFAULT

from ..hdl.linear_timing import linear_cycles as engine_linear_cycles
from ..hdl.unit_timing import ATTENTION_OUT_STAGES, GATE_POST_STAGES, GATE_PRE_STAGES, layernorm_cycles, reciprocal_latency
from ..isa import Op

__all__ = ["estimate_cycles", "linear_cycles", "fetch_cycles", "dma_read_cycles", "memory_latency",
           "attention_cycles", "gather_cycles", "combine_cycles", "route_cycles",
           "attention_unit_group_cycles", "attention_unit_first_output", "attention_unit_hold_stall",
           "FETCH_CYCLES", "MEM_LATENCY", "BURST", "RECIP_LATENCY"]

#: Read latency of the external memory in cycles (request accepted -> first beat): the
#: simulated memory's default (``simulators/program_backend.py``). A configuration may
#: set ``mem_latency`` to model a slower memory.
MEM_LATENCY = 4
#: Beats per DMA burst (``fpga/hdl/dma.py``, ``burst_beats``; ``top.py`` keeps the default).
BURST = 16
#: Controller cycles per instruction besides the memory latency (NEXT, FETCH, DECODE).
FETCH_CYCLES = 3
#: Cycles of the pipelined softmax reciprocal (attention's normaliser, MOE_ROUTE's gate
#: weights): ``fpga.hdl.softmax.reciprocal_divider``'s input register and stages.
RECIP_LATENCY = reciprocal_latency(SOFTMAX_DEFAULT)


def memory_latency(config) -> int:
    """External read latency in cycles: ``config.mem_latency`` if set, else :data:`MEM_LATENCY`."""
    return int(getattr(config, "mem_latency", None) or MEM_LATENCY)


def fetch_cycles(config) -> int:
    """Cycles the controller spends on one instruction outside its engine."""
    return memory_latency(config) + FETCH_CYCLES


def dma_read_cycles(words: float, latency: int) -> float:
    """Cycles of a DMA read of ``words`` words: the latency once, then one beat a cycle (the
    DMA keeps up to two bursts requested ahead of the words received, so bursts stream back
    to back while ``latency <= BURST``; beyond, each further burst waits the difference)."""
    if words <= 0:
        return 0.0
    return latency + words + (math.ceil(words / BURST) - 1) * max(0, latency - BURST)


def linear_cycles(m: float, n: int, k: int, config, latency: int | None = None, gelu: bool = False) -> float:
    """Engine cycles of LINEAR ``[m, k] @ [k, n]``: the engine's exact count
    (:func:`fpga.hdl.linear_timing.linear_cycles`, asserted against the RTL by
    ``simulators/tb/tb_linear_engine.py``), memoised.

    The engine is bound by the weight stream (``bias_words + K * w_words`` beats an output
    tile of ``mac_rows x mac_cols``), plus per token tile the DMA command's latency and
    before the first tile the activation fill. ``m`` may be fractional (an expected row
    count of an expert): the cycles are then interpolated between the two whole counts.
    """
    if m <= 0:
        return 1.0
    lat = memory_latency(config) if latency is None else latency
    lo = math.floor(m)
    key = _LinearKey(config.mac_rows, config.mac_cols, config.lanes, config.weight_depth, config.linear_max_k,
                     config.mem_port_bits, config.act_fmt.width, config.weight_fmt.width)
    c_hi = _engine_linear(math.ceil(m), n, k, key, lat, bool(gelu))
    if lo == m:
        return float(c_hi)
    c_lo = _engine_linear(lo, n, k, key, lat, bool(gelu)) if lo > 0 else 1
    return c_lo + (m - lo) * (c_hi - c_lo)


class _Fmt(NamedTuple):
    width: int


class _LinearKey(NamedTuple):
    """The configuration fields LINEAR's timing reads (hashable, for the memo)."""
    mac_rows: int
    mac_cols: int
    lanes: int
    weight_depth: int
    linear_max_k: int
    mem_port_bits: int
    act_width: int
    weight_width: int

    @property
    def act_fmt(self):
        return _Fmt(self.act_width)

    @property
    def weight_fmt(self):
        return _Fmt(self.weight_width)


@functools.lru_cache(maxsize=8192)
def _engine_linear(m: int, n: int, k: int, key: _LinearKey, latency: int, gelu: bool) -> int:
    return engine_linear_cycles(m, n, k, key, latency=latency, gelu=gelu)


def attention_unit_hold_stall(queries: int, beats: int, recip_latency: int = RECIP_LATENCY) -> int:
    """Cycles a group following another waits (the unit alone, no stalls) for a lane whose
    row the normaliser has not taken yet: ``recip_latency - 2 * queries * F`` when the
    reciprocal takes longer than the ``2 * queries * F`` cycles from a lane's finish to the
    next group's first key reaching its accumulator, else 0."""
    return max(0, recip_latency - 2 * queries * beats)


def attention_unit_group_cycles(queries: int, keys: int, beats: int, recip_latency: int = RECIP_LATENCY) -> int:
    """The attention unit alone, no stalls: a group of ``queries`` rows and ``keys`` keys of
    ``beats = F`` chunks takes ``F * (keys + 2 * queries)`` cycles (queries loading, one key
    step of ``F`` cycles a key, the skew of ``queries`` key steps; ``fpga/hdl/attention.py``)
    plus :func:`attention_unit_hold_stall`."""
    return beats * (keys + 2 * queries) + attention_unit_hold_stall(queries, beats, recip_latency)


def attention_unit_first_output(keys: int, beats: int, recip_latency: int = RECIP_LATENCY, stall: int = 0) -> int:
    """Cycles from a group's first ``kv`` beat to its first output beat (the unit alone):
    ``(keys + 1) * F`` to lane 0's finish, then the reciprocal's pipeline and the
    normaliser's output registers (:data:`fpga.hdl.attention.OUT_STAGES`), plus the
    ``stall`` of :func:`attention_unit_hold_stall` in a group that follows another."""
    return (keys + 1) * beats + recip_latency + ATTENTION_OUT_STAGES + stall


def attention_cycles(sq: int, sk: int, config) -> float:
    """Engine cycles of one ATTENTION head (``fpga/hdl/engine_attention.py``, ``attention.py``)."""
    c = config
    f = c.attention_head_dim // c.attention_chunk
    w = c.attention_chunk // c.lanes
    total, n = 0.0, 0
    for g0 in range(0, sq, c.attention_queries):
        n = min(c.attention_queries, sq - g0)
        total += n * f * w + 2 * sk * f * w + (n - 1) * f + 3
    # the last group's rows: lane 0's reciprocal, the normaliser's output registers, then n rows
    # of F chunks at w cycles a chunk
    return total + RECIP_LATENCY + ATTENTION_OUT_STAGES + n * f * w - (n - 1) * f + 1 if sq > 0 else 1.0


def route_cycles(m: int, e: int, config, experts_used: int | None = None) -> float:
    """Engine cycles of MOE_ROUTE over ``m`` tokens and ``e`` experts (``engine_moe.py``, ``moe.py``)."""
    c = config
    used = min(e, m * c.moe_k) if experts_used is None else experts_used
    # the last token's gate weights: registers around the reciprocal, and the reciprocal
    recip = RECIP_LATENCY + GATE_PRE_STAGES + GATE_POST_STAGES if c.moe_normalization != "topk" else 0
    return m * (c.moe_experts + math.ceil(e / c.lanes)) + m * c.moe_k + (c.moe_experts - used) + 6 + recip


def gather_cycles(rows: float, s: int, ended_by_entry: bool = True) -> float:
    """Engine cycles of MOE_GATHER copying ``rows`` rows of ``s`` words (``engine_moe_expert.py``)."""
    return rows * (s + 9) + (4 if ended_by_entry else 2)


def combine_cycles(rows: float, so: int) -> float:
    """Engine cycles of MOE_COMBINE over ``rows`` rows of ``so`` words (``engine_moe_expert.py``)."""
    return rows * (2 * so + 5) + 6 if rows > 0 else 1.0


def estimate_cycles(instr, config, moe_rows: float = 0.0, *, gather_ended_by_entry: bool = True,
                    experts_used: int | None = None) -> float:
    """Cycles of one instruction, fetch included (see the module table).

    Parameters
    ----------
    instr : fpga.isa.Instr
    config : fpga.config.AcceleratorConfig
    moe_rows : float
        Rows of a register-sized op (MOE_GATHER, LINEAR with ``flags.1``, MOE_COMBINE): the
        real count for a given input, or the uniform expectation.
    gather_ended_by_entry : bool
        MOE_GATHER stopped at another expert's entry (else T rows or ``moe_end``: 2 cycles less).
    experts_used : int, optional
        MOE_ROUTE: experts that get tokens (default ``min(E, M * k)``).
    """
    c = config
    lat = memory_latency(c)
    base = lat + FETCH_CYCLES
    op = instr.op
    if op == Op.END:
        return lat + 2
    if op == Op.LOAD:
        return base + 2 + dma_read_cycles(instr.length, lat)
    if op == Op.STORE:
        return base + 2 + instr.length + math.ceil(instr.length / BURST) * 3
    if op == Op.LINEAR:
        m = moe_rows if instr.flags & 2 else instr.length
        return base + linear_cycles(m, instr.src1, instr.aux, c, lat, bool(instr.flags & 1))
    if op == Op.GELU:
        return base + instr.length + 4
    if op == Op.ADD:
        return base + 2 * instr.length + 4
    if op == Op.LAYERNORM:
        return base + layernorm_cycles(instr.length, instr.aux, c)
    if op == Op.ATTENTION:
        return base + attention_cycles(instr.length, instr.aux, c)
    if op == Op.MOE_ROUTE:
        return base + route_cycles(instr.length, instr.aux, c, experts_used)
    if op == Op.MOE_GATHER:
        return base + gather_cycles(moe_rows, instr.ext_addr & 0xFFFF, gather_ended_by_entry)
    if op == Op.MOE_COMBINE:
        return base + combine_cycles(moe_rows, instr.aux)
    if op == Op.SET:
        return base + 1
    return base  # SYNC
