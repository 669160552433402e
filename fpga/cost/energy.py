"""First-order energy of a program: actions x energy per action + static power x time.

Every constant is in :data:`ENERGY_TABLE` with its source. The dynamic figures are
Horowitz's 45 nm ASIC numbers (ISSCC 2014, "Computing's energy problem"), scaled by
multiplier width where noted, *not* UltraScale+ measurements: an FPGA spends several
times more per operation in its routing. They are placeholders that keep the report's
energy column honest about its basis until the cost-model work replaces them with
vendor power data.

Actions counted per instruction: MACs (LINEAR, ATTENTION), buffer words read and written
(``mem_port_bits`` each), external bytes moved (LOAD/STORE and LINEAR's weight stream).
"""

from __future__ import annotations

import math

from ..isa import Op

__all__ = ["ENERGY_TABLE", "instruction_actions", "estimate_energy"]

#: name -> (value, unit, source)
ENERGY_TABLE = {
    "mac_32x16_j": (1.6e-12, "J per multiply-accumulate (32-bit activation x 16-bit weight)",
                    "Horowitz ISSCC 2014, 45 nm: 32-bit int multiply 3.1 pJ, scaled by 16/32 bits, + 32-bit add 0.1 pJ; assumption for an FPGA DSP"),
    "buffer_word_j": (40e-12, "J per 256-bit on-chip buffer word read or written",
                      "Horowitz ISSCC 2014, 45 nm: 64-bit read of an 8 KB SRAM 10 pJ, x4 for 256 bits; assumption for block RAM"),
    "dram_byte_j": (20e-12 * 8, "J per external-memory byte",
                    "Horowitz ISSCC 2014: DRAM 1.3-2.6 nJ per 64-bit access, ~20 pJ/bit (upper end 2.6 nJ/64 b = 40 pJ/bit); assumption for DDR4"),
    "static_w": (1.0, "W of static (leakage + clock) power while the accelerator runs",
                 "assumption: order of magnitude of a mid-size UltraScale+ device's static power; not measured"),
}


def _v(name: str) -> float:
    return ENERGY_TABLE[name][0]


def instruction_actions(instr, config, moe_rows: float = 0.0) -> dict:
    """``{"macs", "buffer_words", "dram_bytes"}`` of one instruction (first order)."""
    c = config
    lanes, wb = c.lanes, c.mem_port_bits // 8
    op = instr.op
    if op in (Op.LOAD, Op.STORE):
        return {"macs": 0, "buffer_words": instr.length, "dram_bytes": instr.length * wb}
    if op == Op.LINEAR:
        m = moe_rows if instr.flags & 2 else instr.length
        k, n = instr.aux, instr.src1
        tiles_t = math.ceil(m / c.mac_rows) if m else 0
        w_words = math.ceil(c.mac_cols * c.weight_fmt.width / c.mem_port_bits)
        b_words = math.ceil(c.mac_cols * c.act_fmt.width / c.mem_port_bits)
        weight_bytes = tiles_t * (n // c.mac_cols) * (b_words + k * w_words) * wb
        return {"macs": m * k * n, "buffer_words": tiles_t * (n // c.mac_cols) * math.ceil(k / lanes) * c.mac_rows
                + m * n / lanes, "dram_bytes": weight_bytes}
    if op in (Op.GELU, Op.ADD):
        return {"macs": 0, "buffer_words": instr.length * (2 if op == Op.GELU else 3), "dram_bytes": 0}
    if op == Op.LAYERNORM:
        words = math.ceil(instr.aux / lanes)
        return {"macs": 2 * instr.length * instr.aux, "buffer_words": instr.length * 4 * words, "dram_bytes": 0}
    if op == Op.ATTENTION:
        sq, sk, d = instr.length, instr.aux, c.attention_head_dim
        groups = math.ceil(sq / c.attention_queries)
        return {"macs": 2 * sq * sk * d, "buffer_words": groups * (sk * 2 + c.attention_queries) * d / lanes
                + sq * d / lanes, "dram_bytes": 0}
    if op == Op.MOE_ROUTE:
        return {"macs": 0, "buffer_words": instr.length * (math.ceil(instr.aux / lanes) + 1 + c.moe_k), "dram_bytes": 0}
    if op == Op.MOE_GATHER:
        s = instr.ext_addr & 0xFFFF
        return {"macs": 0, "buffer_words": moe_rows * (2 * s + 3), "dram_bytes": 0}
    if op == Op.MOE_COMBINE:
        return {"macs": moe_rows * instr.aux * lanes, "buffer_words": moe_rows * (3 * instr.aux + 1), "dram_bytes": 0}
    return {"macs": 0, "buffer_words": 0, "dram_bytes": 0}


def estimate_energy(actions: dict, seconds: float) -> dict:
    """Energy components (J) for summed ``actions`` over ``seconds`` of run time."""
    scale = (actions.get("buffer_word_bits", 256)) / 256
    return {
        "mac": actions.get("macs", 0) * _v("mac_32x16_j"),
        "buffer": actions.get("buffer_words", 0) * _v("buffer_word_j") * scale,
        "dram": actions.get("dram_bytes", 0) * _v("dram_byte_j"),
        "static": seconds * _v("static_w"),
    }
