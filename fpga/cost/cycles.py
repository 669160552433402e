"""First-order cycle estimate per instruction, from the engines' documented behaviour.

Every instruction costs a fetch (``FETCH_CYCLES`` plus the memory latency: the controller
fetches, decodes and starts one instruction at a time) plus its engine's work:

==========  ===================================================================================
LOAD/STORE  ``length`` beats + the memory latency per burst of ``BURST`` beats
LINEAR      per output tile (``mac_rows`` tokens x ``mac_cols`` features):
            ``ceil(K / lanes) * (mac_rows + lanes)`` cycles (the transposer reads ``mac_rows``
            words, then sends ``lanes`` columns, on the buffer's one read port) plus
            ``mac_rows * mac_cols / lanes`` result words; M from ``moe_rows`` when flagged
GELU, ADD   ``length`` words x operands (one buffer read a cycle)
LAYERNORM   per row ``3 * ceil(D / lanes)`` reads and ``D`` beats in, ~80 cycles of reciprocal
            square root, ``D`` beats out
ATTENTION   per group of ``attention_queries`` queries: ``queries * head_dim / lanes`` query
            words + ``Sk * 2 * head_dim / lanes`` key and value words (chunks of the
            configured head size, whatever ``att_dim``)
MOE_ROUTE   ``M * E`` score beats + ``M * k`` schedule entries
MOE_GATHER  per gathered row ``S + 9`` cycles (entry and route word reads, ``S`` words, the
            list word) + 4 (measured in ``tb_moe_expert.py``)
MOE_COMBINE per row ``2 * So + 5`` cycles (two reads a word, the list word) + 6 (measured)
SET, SYNC   the fetch only
==========  ===================================================================================

This is the issue-15 estimate; the RTL's measured cycles (``sim.json``) are the truth.
"""

from __future__ import annotations

import math

from ..isa import Op

__all__ = ["estimate_cycles", "FETCH_CYCLES", "MEM_LATENCY", "BURST"]

#: Cycles of fetch/decode/start per instruction besides the memory latency.
FETCH_CYCLES = 4
#: Cycles from a memory request to its first beat (the simulation's memory model default).
MEM_LATENCY = 8
#: Beats per DMA burst.
BURST = 16


def estimate_cycles(instr, config, moe_rows: float = 0.0) -> float:
    """Cycles of one instruction (``moe_rows``: rows assumed for register-sized LINEARs)."""
    c = config
    lanes = c.lanes
    base = FETCH_CYCLES + MEM_LATENCY
    op = instr.op
    if op in (Op.LOAD, Op.STORE):
        return base + instr.length + MEM_LATENCY * math.ceil(instr.length / BURST)
    if op == Op.LINEAR:
        m = moe_rows if instr.flags & 2 else instr.length
        if m <= 0:
            return base
        k, n = instr.aux, instr.src1
        tiles = math.ceil(m / c.mac_rows) * math.ceil(n / c.mac_cols)
        per_tile = math.ceil(k / lanes) * (c.mac_rows + lanes) + c.mac_rows * c.mac_cols / lanes
        return base + tiles * per_tile + MEM_LATENCY
    if op == Op.GELU:
        return base + instr.length + 4
    if op == Op.ADD:
        return base + 2 * instr.length + 4
    if op == Op.LAYERNORM:
        d = instr.aux
        return base + instr.length * (3 * math.ceil(d / lanes) + 2 * d + 80)
    if op == Op.ATTENTION:
        sq, sk = instr.length, instr.aux
        words = c.attention_head_dim / lanes
        groups = math.ceil(sq / c.attention_queries)
        return base + groups * (c.attention_queries * words + sk * 2 * words + 2 * c.attention_head_dim / c.attention_chunk)
    if op == Op.MOE_ROUTE:
        return base + instr.length * instr.aux + instr.length * c.moe_k + 8
    if op == Op.MOE_GATHER:
        s = instr.ext_addr & 0xFFFF
        return base + moe_rows * (s + 9) + 4
    if op == Op.MOE_COMBINE:
        return base + (moe_rows * (2 * instr.aux + 5) + 6 if moe_rows > 0 else 1)
    return base
