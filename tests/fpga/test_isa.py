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


def test_moe_index_words_by_hand():
    # int8 lanes: a 16-bit index takes two lanes, least significant first
    from fpga.isa import list_entry, list_word, schedule_length, schedule_words

    sched = [(1, [0, 2]), (3, [1])]  # expert 1: tokens 0 and 2; expert 3: token 1
    want = [[3, 0, 2, 0, 0, 0, 0, 0],   # header: 3 entries, 2 experts with tokens
            [1, 0, 0, 0, 0, 0, 0, 0],   # expert 1, token 0
            [1, 0, 2, 0, 1, 0, 0, 0],   # expert 1, token 2, its last
            [3, 0, 1, 0, 1, 0, 0, 0]]   # expert 3, token 1, its last
    assert schedule_words(sched, 8, 8).tolist() == want
    assert schedule_length(3, 1) == len(want)
    word = list_word(0x1234, -3, 8, 8)
    assert word.tolist() == [0x34, 0x12, -3, 0, 0, 0, 0, 0]
    assert list_entry(word, 8) == (0x1234, -3)
    assert list_word(7, 100, 32, 4).tolist() == [7, 100, 0, 0]  # 32-bit lanes: field i is lane i
