"""The external memory image of a program run: instructions into words, words into a ``$readmemh`` file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["add_program", "write_memh"]


def add_program(memory: dict, prog_addr: int, instructions: Sequence[int], data_bits: int) -> dict:
    """Put 128-bit instruction words (``fpga.isa.encode``) at byte ``prog_addr`` into ``memory``
    (``{word address: int}`` of ``data_bits``-bit words, updated in place and returned)."""
    if prog_addr % 16:
        raise ValueError(f"prog_addr {prog_addr:#x} must be 16-byte aligned")
    per_word = data_bits // 128
    for i, ins in enumerate(instructions):
        unit = prog_addr // 16 + i
        word, part = divmod(unit, per_word)
        mask = ((1 << 128) - 1) << (128 * part)
        memory[word] = (memory.get(word, 0) & ~mask) | (int(ins) << (128 * part))
    return memory


def write_memh(memory, path: Path, data_bits: int, words: int) -> int:
    """Write ``memory`` for ``$readmemh``; return the number of words written.

    ``memory``: ``{word address: int}``, or a sequence of ints (words from address 0), or
    ``bytes`` (the little-endian byte image from address 0, padded to whole words).
    """
    digits = data_bits // 4
    limit = 1 << data_bits
    if isinstance(memory, (bytes, bytearray, memoryview)):
        raw = bytes(memory)
        step = data_bits // 8
        raw += bytes(-len(raw) % step)
        memory = [int.from_bytes(raw[i:i + step], "little") for i in range(0, len(raw), step)]
    if isinstance(memory, Mapping):
        items = sorted(memory.items())
    elif isinstance(memory, Sequence) or hasattr(memory, "__array__"):
        items = list(enumerate(memory))
    else:
        raise TypeError(f"memory must be a dict of word address -> int, a sequence of ints or bytes, "
                        f"not {type(memory).__name__}")
    lines, expect = [], None
    for addr, word in items:
        addr, word = int(addr), int(word)
        if not 0 <= addr < words:
            raise ValueError(f"memory word address {addr} is outside the model's 0..{words - 1} "
                             f"(build(ext_words=...) sets its size)")
        if not 0 <= word < limit:
            raise ValueError(f"memory word {addr}: {word:#x} is not an unsigned {data_bits}-bit word")
        if addr != expect:
            lines.append(f"@{addr:x}")
        lines.append(format(word, f"0{digits}x"))
        expect = addr + 1
    path.write_text("\n".join(lines) + "\n")
    return len(items)
