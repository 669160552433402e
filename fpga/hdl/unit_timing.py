"""Latencies of the pipelined divider, the softmax reciprocal and the LayerNorm engine, as
plain arithmetic (no Amaranth): the cost model (:mod:`fpga.cost.cycles`) imports this
module, and the Amaranth units take their own latencies from it, so the two cannot drift.

* :func:`divider_latency`: :class:`~fpga.hdl.divider.PipelinedDivider`'s input register
  and ``ceil(quotient bits / steps_per_stage)`` stages (cycles).
* :func:`reciprocal_latency`: that of :func:`fpga.hdl.softmax.reciprocal_divider`, whose
  quotient has :func:`reciprocal_quotient_bits` bits.
* :func:`rsqrt_cycles`, :func:`layernorm_cycles`: the LayerNorm unit's reciprocal square
  root a row and a whole LAYERNORM instruction (:mod:`fpga.hdl.layernorm`,
  :mod:`fpga.hdl.engine_layernorm`).
* The register stages the units add for the clock (cycles of latency an instruction, none
  a row or a beat): :data:`LAYERNORM_IN_STAGES`, :data:`LAYERNORM_OUT_STAGES`,
  :data:`ATTENTION_OUT_STAGES`, :data:`GATE_PRE_STAGES`, :data:`GATE_POST_STAGES`.
"""

from __future__ import annotations

from hwgen.numerics.layernorm import RSQRT_BITS
from hwgen.numerics.softmax import SoftmaxSpec

__all__ = ["LAYERNORM_IN_STAGES", "LAYERNORM_OUT_STAGES", "ATTENTION_OUT_STAGES", "GATE_PRE_STAGES",
           "GATE_POST_STAGES", "STEPS_PER_STAGE", "divider_latency", "reciprocal_quotient_bits", "reciprocal_latency", "RSQRT_STEPS",
           "rsqrt_div_steps", "rsqrt_root_steps", "rsqrt_cycles", "layernorm_cycles"]

#: Quotient bits a stage by default: a stage is then four ``divisor_bits + 1``-bit
#: subtract-and-select steps (10.6 ns, 95 MHz, by fpga.cost.clock on Yosys' xczu9eg netlist of the 27-bit
#: softmax divider alone; three steps 8.1 ns, six 15.5 ns: ``docs/fpga-resources-and-clock.md``).
STEPS_PER_STAGE = 4

#: Registers between the LayerNorm unit's ``i`` and stage A's accumulators (the lanes'
#: squares, then the word's sums): cycles a word takes from ``i`` to the statistics.
LAYERNORM_IN_STAGES = 2
#: Registers between the LayerNorm row memory's read data and ``o`` (stage C's arithmetic,
#: one step a cycle: ``LayerNormUnit._output_pipeline``).
LAYERNORM_OUT_STAGES = 8
#: The attention normaliser's output registers (its product, the requantised beat).
ATTENTION_OUT_STAGES = 2
#: MoE gate (``TopKUnit``) registers before the reciprocal: the logits, then the online
#: maxima and sums.
GATE_PRE_STAGES = 2
#: MoE gate registers after the reciprocal: ``exp2(max - t)`` and ``r``, their product, the
#: requantised weight.
GATE_POST_STAGES = 3

#: Reciprocal-square-root bits the LAYERNORM engine's unit computes a cycle.
RSQRT_STEPS = 2

_QBITS = 2 * RSQRT_BITS + 3  # the LayerNorm division's quotient q < 2**51
_SQRT_STEPS = (_QBITS + 1) // 2


def divider_latency(quotient_bits: int, steps_per_stage: int = STEPS_PER_STAGE) -> int:
    """Cycles from a beat's handshake into a pipelined divider of a ``quotient_bits``-bit
    quotient to its result: the input register, then ``ceil(quotient_bits /
    steps_per_stage)`` stages."""
    return 1 + -(-quotient_bits // steps_per_stage)


def reciprocal_quotient_bits(spec: SoftmaxSpec, min_sum: int) -> int:
    """Bits of the softmax reciprocal's quotient for sums ``l >= min_sum``."""
    num = 1 << (spec.prob_frac_bits + spec.recip_frac_bits + 1)
    return ((num + min_sum) // (2 * min_sum)).bit_length()


def reciprocal_latency(spec: SoftmaxSpec, min_sum: int | None = None, steps_per_stage: int = STEPS_PER_STAGE) -> int:
    """Cycles of :func:`fpga.hdl.softmax.reciprocal_divider`'s pipeline (its ``latency``)
    without building it (8 for the default spec: 25 quotient bits, 4 a stage);
    ``min_sum`` defaults to ``spec.one``."""
    q = reciprocal_quotient_bits(spec, spec.one if min_sum is None else min_sum)
    return divider_latency(q, steps_per_stage)


def rsqrt_div_steps(rsqrt_steps: int) -> int:
    """Quotient bits of the LayerNorm unit's division, rounded up to whole cycles of ``rsqrt_steps``."""
    return -(-_QBITS // rsqrt_steps) * rsqrt_steps


def rsqrt_root_steps(rsqrt_steps: int) -> int:
    """Root bits of the LayerNorm unit's square root, rounded up to whole cycles of ``rsqrt_steps``."""
    return -(-_SQRT_STEPS // rsqrt_steps) * rsqrt_steps


def rsqrt_cycles(rsqrt_steps: int = 2) -> int:
    """Cycles of the LayerNorm unit's stage B a row (``VAR``, ``VAR2``, ``NORM``, ``DIV``,
    ``SQRT``) at ``rsqrt_steps`` quotient/root bits a cycle: 80 at 1, 42 at 2."""
    return 3 + rsqrt_div_steps(rsqrt_steps) // rsqrt_steps + rsqrt_root_steps(rsqrt_steps) // rsqrt_steps


def layernorm_cycles(rows: int, d: int, config) -> int:
    """Cycles of one LAYERNORM of ``rows`` rows of ``d`` elements, from the cycle after
    ``start`` to ``done`` inclusive, with no stalls (the top's buffer reader, writes taken
    at once).

    Parameters
    ----------
    rows, d : int
        Rows (``length``) and elements a row (``aux``); the row stride does not matter.
    config : fpga.config.AcceleratorConfig
        Only ``config.lanes`` (activations a buffer word) is used.

    Returns
    -------
    int
        ``1`` for no rows; else ``3 W + B + (rows - 1) max(W, B) + W + 3 + 10`` with
        ``W = ceil(d / lanes)`` words a row and ``B = rsqrt_cycles(RSQRT_STEPS) + 1`` (43):
        ``2 W`` parameter reads, row 0's statistics (``W``), its reciprocal square root
        (``B``), each further row at the slower of the word rate and the square root,
        the last row's ``W`` output words, the reader's and the stages' latency (3), and
        the unit's input and output registers (:data:`LAYERNORM_IN_STAGES`, 2;
        :data:`LAYERNORM_OUT_STAGES`, 8).
    """
    if rows <= 0:
        return 1
    w = -(-d // config.lanes)
    b = rsqrt_cycles(RSQRT_STEPS) + 1
    return 3 * w + b + (rows - 1) * max(w, b) + w + 3 + LAYERNORM_IN_STAGES + LAYERNORM_OUT_STAGES
