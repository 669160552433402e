"""fpga.isa: encode/decode and assemble/disassemble round trips."""

import random

import pytest

from fpga.isa import FIELDS, WORD_BITS, Instr, Op, assemble, decode, disassemble, encode


def _random_instr(rng):
    kwargs = {name: rng.randrange(1 << width) for name, _, width in FIELDS[1:]}
    return Instr(rng.choice(list(Op)), **kwargs)


def test_fields_tile_the_word():
    bits = 0
    for _, lsb, width in FIELDS:
        assert bits == lsb
        bits += width
    assert bits == WORD_BITS


def test_round_trip_random():
    rng = random.Random(4)
    for _ in range(2000):
        instr = _random_instr(rng)
        word = encode(instr)
        assert 0 <= word < (1 << WORD_BITS)
        assert decode(word) == instr


def test_known_encoding():
    word = encode(Instr(Op.LOAD, dst=2, length=3, ext_addr=0x100))
    assert word == 1 | (2 << 8) | (3 << 56) | (0x100 << 72)


def test_assemble_disassemble_round_trip():
    rng = random.Random(5)
    program = [_random_instr(rng) for _ in range(200)] + [Instr(Op.END)]
    assert assemble(disassemble(program)) == program
    assert assemble(disassemble([encode(i) for i in program])) == program


def test_errors():
    with pytest.raises(ValueError, match="field dst must be an integer in"):
        Instr(Op.LOAD, dst=1 << 16)
    with pytest.raises(ValueError, match="unknown opcode 15"):
        decode(15)
    with pytest.raises(ValueError, match="unknown mnemonic 'FOO'"):
        assemble("FOO dst=1")
