"""The accelerator's instruction set: one 128-bit word per instruction.

Encoding (bit 0 is the least significant bit of the word):

=========  ======  =====  ===============================================================
field      bits    width  meaning
=========  ======  =====  ===============================================================
opcode     3:0     4      :class:`Op`
flags      7:4     4      op-specific (LINEAR: bit 0 fused GELU, bit 1 rows from ``moe_rows``)
dst        23:8    16     destination buffer address (words) / external address for STORE
src0       39:24   16     first source buffer address (words)
src1       55:40   16     second source buffer address (weights, residual operand, ...)
length     71:56   16     number of buffer words (rows for LINEAR/ATTENTION/LAYERNORM/MOE_*)
ext_addr   111:72  40     external memory byte address (LOAD/STORE/LINEAR), value (SET), op-specific
aux        127:112 16     op-specific (LINEAR: K dimension; ATTENTION: keys; MOE_ROUTE: experts)
=========  ======  =====  ===============================================================

LOAD copies ``length`` words from external ``ext_addr`` to buffer ``dst``; STORE copies
``length`` words from buffer ``src0`` to external ``ext_addr``. SYNC waits until every
unit is idle; END raises the controller's ``done``. SET writes ``ext_addr`` into register
``aux`` (:data:`REGISTERS`). The compute ops' fields are documented by their engines
(``fpga/hdl/engine_*.py``) and in ``docs/fpga-architecture.md``. Unused fields must be zero (the
decoder does not check them, the assembler writes zeros).

Row strides: ``lanes`` activations fill a buffer word, a row of D elements takes
``ceil(D / lanes)`` words. MOE_ROUTE (scores) and LAYERNORM (X and Y) take a row stride in
words from ``ext_addr[15:0]`` when that is not 0 (e.g. scores written by a LINEAR padded to
``mac_cols`` columns); LAYERNORM's gamma and beta stay ``ceil(D / lanes)`` words each.

MoE experts (Edge-MoE: each expert runs only on the tokens routed to it), after MOE_ROUTE
has written the route table R (word ``R + t``: token t's experts in lanes ``0..k-1``, best
first, their gate weights in lanes ``k..2k-1``) and the schedule (entries: index field 0
expert, field 1 token, field 2 last; experts in increasing id, tokens in order), and SET has put the
first entry's word in ``moe_cursor`` and the word after the last in ``moe_end``:

* ``MOE_GATHER`` (src0 = X, dst = G, src1 = L, aux = expert e, length = T, ``ext_addr[15:0]``
  = S words a row of X and G, ``ext_addr[31:16]`` = R): while fewer than T rows are gathered,
  ``moe_cursor < moe_end`` and the entry at ``moe_cursor`` is expert e's: copy X's row of
  its token (S words) to G's next row, write L's next word (index field 0 the token, then
  in the lane after it the token's gate weight for e: the weight lane of the first route
  slot naming e, 0 if none does),
  advance ``moe_cursor``. Sets ``moe_rows`` to the rows gathered (0 at once if the entry is
  another expert's).
* ``LINEAR`` with ``flags`` bit 1: M is ``moe_rows`` (``length`` is ignored); M = 0 finishes
  at once and fetches no weights.
* ``MOE_COMBINE`` (src0 = H, src1 = L, dst = Y, aux = So words a row of H and Y; rows from
  ``moe_rows``): for each row i, (token, w) = L[i], ``Y[token] = Y[token] + w * H[i]``
  lane by lane (:func:`hwgen.numerics.moe.combine_codes`: the exact product rounded half up
  and saturated to the activation format, then a saturating add). The rows of L must name
  distinct tokens (MOE_GATHER's do).

**Index fields.** Schedule words (header: entries, experts with tokens; entries: expert,
token, last) and list words (token) hold 16-bit indices, which need not fit one lane of a
narrow activation format: field ``i`` takes lanes ``[i·n, (i+1)·n)`` with ``n =``
:func:`index_lanes` (``ceil(16 / act width)``: 1 for 16- and 32-bit activations, so the
field is lane ``i``; 2 at int8), least significant lane first. A list word's gate weight
is lane ``n``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Op", "Instr", "FIELDS", "REGISTERS", "WORD_BITS", "INDEX_BITS", "encode", "decode", "assemble",
           "disassemble", "index_lanes", "index_words", "index_field", "schedule_length", "schedule_words", "list_word",
           "list_entry"]

#: Width of one instruction word in bits.
WORD_BITS = 128

#: Bits of an index (token, expert, count) in MoE schedule and list words.
INDEX_BITS = 16


def index_lanes(lane_bits: int) -> int:
    """Lanes of ``lane_bits`` bits one index field takes: ``ceil(INDEX_BITS / lane_bits)``."""
    return -(-INDEX_BITS // lane_bits)


def index_words(rows, lane_bits: int, lanes: int):
    """Rows of indices (each ``0 <= v < 2**16``) as buffer words of ``lanes`` codes.

    Field ``i`` of a row takes lanes ``[i·n, (i+1)·n)``, ``n = index_lanes(lane_bits)``,
    least significant first (unsigned lane values); the other lanes are 0.
    Returns an int64 array ``[rows, lanes]``.
    """
    import numpy as np

    vals = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
    n = index_lanes(lane_bits)
    if vals.shape[1] * n > lanes:
        raise ValueError(f"{vals.shape[1]} index fields of {n} lanes do not fit a word of {lanes} lanes")
    if np.any(vals < 0) or np.any(vals >= 1 << INDEX_BITS):
        raise ValueError(f"an index is outside [0, 2**{INDEX_BITS})")
    out = np.zeros((len(vals), lanes), dtype=np.int64)
    mask = (1 << lane_bits) - 1
    for i in range(vals.shape[1]):
        for j in range(n):
            out[:, i * n + j] = (vals[:, i] >> (j * lane_bits)) & mask
    return out


def index_field(word_lanes, i: int, lane_bits: int) -> int:
    """Index field ``i`` of one word given as its lane codes (signed or unsigned)."""
    n = index_lanes(lane_bits)
    mask = (1 << lane_bits) - 1
    return sum((int(word_lanes[i * n + j]) & mask) << (j * lane_bits) for j in range(n)) & ((1 << INDEX_BITS) - 1)


def schedule_length(tokens: int, k: int) -> int:
    """Words of MOE_ROUTE's schedule for ``tokens`` tokens of ``k`` experts each: the header
    word, then one entry a (token, expert) pair (``moe_cursor`` starts at word 1,
    ``moe_end`` is this)."""
    return 1 + tokens * k


def schedule_words(schedule, lane_bits: int, lanes: int):
    """MOE_ROUTE's schedule as buffer words (int64 ``[1 + entries, lanes]``).

    ``schedule``: ``[(expert, [tokens])]`` as :func:`hwgen.numerics.topk.expert_schedule`
    gives it. Word 0 (header): index field 0 the entries, field 1 the experts with tokens;
    then one entry a word: field 0 the expert, field 1 the token, field 2 one on the
    expert's last token (:func:`index_words`).
    """
    entries = [(e, t, int(i == len(toks) - 1)) for e, toks in schedule for i, t in enumerate(toks)]
    return index_words([(len(entries), len(schedule), 0)] + entries, lane_bits, lanes)


def list_word(token: int, weight: int, lane_bits: int, lanes: int):
    """A MOE_GATHER list word (int64 ``[lanes]``): ``token`` in index field 0, the gate
    ``weight`` (an activation code) in lane ``index_lanes(lane_bits)``, the other lanes 0."""
    word = index_words([(token,)], lane_bits, lanes)[0]
    word[index_lanes(lane_bits)] = weight
    return word


def list_entry(word_lanes, lane_bits: int) -> tuple[int, int]:
    """``(token, weight)`` of a list word given as its lane codes (the weight as its lane
    holds it: signed lanes give a signed weight)."""
    return index_field(word_lanes, 0, lane_bits), int(word_lanes[index_lanes(lane_bits)])


class Op(enum.IntEnum):
    """Opcodes (4 bits)."""

    END = 0
    LOAD = 1
    STORE = 2
    LINEAR = 3
    GELU = 4
    LAYERNORM = 5
    ATTENTION = 6
    ADD = 7
    MOE_ROUTE = 8
    SYNC = 9
    SET = 10
    MOE_GATHER = 11
    MOE_COMBINE = 12


#: Registers that ``SET`` writes (``aux`` = index, ``ext_addr`` = value), read by later ops.
REGISTERS = {
    "att_dim": 0,         # ATTENTION: head dimension D (elements)
    "att_in_stride": 1,   # ATTENTION: words between rows of Q, K, V
    "att_out_stride": 2,  # ATTENTION: words between rows of O
    "att_scale": 3,       # ATTENTION: scale code (hwgen.numerics.softmax.scale_code), two's complement
    "ln_eps": 4,          # LAYERNORM: eps code (fpga.hdl.layernorm.eps_code)
    "moe_cursor": 5,      # MOE_GATHER: buffer word of the next schedule entry (MOE_GATHER advances it)
    "moe_end": 6,         # MOE_GATHER: buffer word one past the last schedule entry
    "moe_rows": 7,        # rows gathered by the last MOE_GATHER (read by LINEAR flags bit 1, MOE_COMBINE)
}


#: (name, lsb, width) of every field, in word order.
FIELDS = (
    ("op", 0, 4),
    ("flags", 4, 4),
    ("dst", 8, 16),
    ("src0", 24, 16),
    ("src1", 40, 16),
    ("length", 56, 16),
    ("ext_addr", 72, 40),
    ("aux", 112, 16),
)


@dataclass(frozen=True)
class Instr:
    """One instruction; every field is an unsigned integer that must fit its width."""

    op: Op
    flags: int = 0
    dst: int = 0
    src0: int = 0
    src1: int = 0
    length: int = 0
    ext_addr: int = 0
    aux: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", Op(self.op))
        for name, _, width in FIELDS[1:]:
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < (1 << width):
                raise ValueError(f"field {name} must be an integer in [0, {1 << width}), not {value!r}")

    def __str__(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name, _, _ in FIELDS[1:] if getattr(self, name)]
        return " ".join([self.op.name] + parts)


def encode(instr: Instr) -> int:
    """Instruction -> 128-bit word."""
    word = 0
    for name, lsb, width in FIELDS:
        word |= (int(getattr(instr, name)) & ((1 << width) - 1)) << lsb
    return word


def decode(word: int) -> Instr:
    """128-bit word -> instruction; raises ValueError for an unknown opcode or a wider word."""
    if not 0 <= word < (1 << WORD_BITS):
        raise ValueError(f"an instruction word is {WORD_BITS} bits, got {word:#x}")
    values = {name: (word >> lsb) & ((1 << width) - 1) for name, lsb, width in FIELDS}
    if values["op"] not in Op._value2member_map_:
        raise ValueError(f"unknown opcode {values['op']} (known: {', '.join(o.name for o in Op)})")
    return Instr(**values)


def assemble(text: str) -> list[Instr]:
    """Parse lines like ``LOAD dst=0 length=4 ext_addr=0x100`` (``#`` starts a comment)."""
    program = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        mnemonic, *args = line.split()
        if mnemonic.upper() not in Op.__members__:
            raise ValueError(f"line {lineno}: unknown mnemonic {mnemonic!r} (known: {', '.join(Op.__members__)})")
        kwargs = {}
        for arg in args:
            key, _, value = arg.partition("=")
            kwargs[key] = int(value, 0)
        program.append(Instr(Op[mnemonic.upper()], **kwargs))
    return program


def disassemble(program) -> str:
    """Instructions (or words) -> assembler text that :func:`assemble` reads back."""
    return "\n".join(str(decode(i) if isinstance(i, int) else i) for i in program) + "\n"
