"""simulators.program_run: whole programs with the memory inside the simulation, bit-exact.

The every-op program of simulators/tb/top_program.py (expected words from hwgen.numerics)
runs on the SMALL top through ``build(...).run(...)``; hooks read and write memory
between instructions and programs; builds come from the cache the second time.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from fpga.config import SMALL, AcceleratorConfig
from fpga.hdl.top import ENGINE_OPS
from fpga.isa import Instr, Op, encode
from simulators import build_cache
from simulators.hooks import END, ScriptHook
from simulators.program_run import ProgramRunError, add_program, build

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "simulators" / "tb"))
from top_program import build as every_op_program  # noqa: E402

CONFIG = AcceleratorConfig(**SMALL)
#: The every-op program needs 555 buffer words on SMALL; 768 is also what
#: benchmarks/program_speed.py --small picks, so its smoke test reuses this build (one
#: Verilator build of the SMALL top in CI, not two).
BUFFER_WORDS = 768
PROG = 0x40
WORD_BYTES = CONFIG.mem_port_bits // 8


@pytest.fixture(scope="module")
def small_build():
    """The SMALL top (every engine, 768 buffer words) on Verilator, from the default cache."""
    return build(CONFIG, buffer_words=BUFFER_WORDS)


@pytest.fixture(scope="module")
def scenario():
    scen = every_op_program(CONFIG, list(ENGINE_OPS), seed=5)
    assert scen["buffer_words"] <= BUFFER_WORDS, "the program's buffer addresses would wrap around"
    memory = add_program(dict(scen["memory"]), PROG, [encode(i) for i in scen["program"]], CONFIG.mem_port_bits)
    return scen, memory


def _check_every_op(result, scen):
    addrs = sorted(scen["expect"])
    got = [w[0] for w in result.hook_result[(0, END)]]
    bad = [(scen["names"][a], hex(g), hex(scen["expect"][a])) for a, g in zip(addrs, got) if g != scen["expect"][a]]
    assert not bad, f"{len(bad)} of {len(addrs)} result words differ, first {bad[0]}"
    prog = result.programs[0]
    assert prog.finished and not prog.error and not result.mem_error
    n = len(scen["program"])
    assert [i for i, _ in prog.trace] == list(range(n)), "one trace entry per instruction, END last"
    stamps = [c for _, c in prog.trace]
    assert stamps == sorted(stamps) and stamps[-1] == prog.cycles


def _read_expected(scen):
    return ScriptHook({(0, END): [("read_ext", a, 1) for a in sorted(scen["expect"])]})


@pytest.mark.rtl
@pytest.mark.slow
def test_every_op_bit_exact_at_two_memory_speeds(small_build, scenario):
    scen, memory = scenario
    fast = small_build.run(memory, [(PROG, [])], hook=_read_expected(scen), latency=1, beat_interval=1)
    _check_every_op(fast, scen)
    slow = small_build.run(memory, [(PROG, [])], hook=_read_expected(scen), latency=7, beat_interval=3)
    _check_every_op(slow, scen)
    assert slow.hook_result == {**fast.hook_result, **{k: v for k, v in slow.hook_result.items() if k[0] == "cycles"}}
    assert slow.programs[0].cycles > fast.programs[0].cycles
    assert all(s > f for (_, s), (_, f) in zip(slow.programs[0].trace, fast.programs[0].trace))
    assert fast.cycles_per_s > 0 and fast.wall_s > 0


@pytest.mark.rtl
def test_hooks_read_the_buffer_and_feed_the_next_program(small_build, scenario):
    """Checkpoint after the first LOAD: the buffer holds the loaded words. After program 0 the
    hook writes a word that program 1 LOADs and STOREs elsewhere."""
    scen, memory = scenario
    first = scen["program"][0]
    assert first.op == Op.LOAD
    src, dst, magic = 0x200000, 0x201000, (1 << 255) | 0xC0FFEE << 64 | 0x1234
    memory = add_program(dict(memory), 0x8000, [encode(i) for i in (
        Instr(Op.LOAD, dst=BUFFER_WORDS - 1, length=1, ext_addr=src),
        Instr(Op.STORE, src0=BUFFER_WORDS - 1, length=1, ext_addr=dst), Instr(Op.END))], CONFIG.mem_port_bits)
    hook = ScriptHook({
        (0, 0): [("read_buf", first.dst, first.length)],
        (0, END): [("write_ext", src // WORD_BYTES, [magic])],
        (1, 1): [("read_buf", BUFFER_WORDS - 1, 1), ("read_ext", dst // WORD_BYTES, 1)],
        (1, END): [("read_ext", dst // WORD_BYTES, 1)]})
    res = small_build.run(memory, [(PROG, [0]), (0x8000, [1])], hook=hook, latency=3, beat_interval=2)
    out = res.hook_result
    assert out[(0, 0)][0] == [memory[first.ext_addr // WORD_BYTES + i] for i in range(first.length)]
    assert out[("cycles", 0, 0)] == res.programs[0].trace[0][1]   # the accelerator waited there
    assert out[(1, 1)] == [[magic], [magic]]                          # LOADed, then STOREd
    assert out[(1, END)] == [[magic]]
    assert [p.finished for p in res.programs] == [True, True]
    assert [i for i, _ in res.programs[1].trace] == [0, 1, 2]


@pytest.mark.rtl
def test_memory_errors_and_timeouts_are_reported(small_build):
    bad_addr = (small_build.ext_words + 5) * WORD_BYTES
    memory = add_program({}, PROG, [encode(i) for i in (
        Instr(Op.LOAD, dst=0, length=2, ext_addr=bad_addr), Instr(Op.END))], CONFIG.mem_port_bits)
    res = small_build.run(memory, [(PROG, [])])
    assert res.mem_error and res.mem_error_info["code"] == 4 and res.mem_error_info["addr"] == bad_addr
    assert "out of range" in res.mem_error_info["what"]
    unaligned = add_program({}, PROG, [encode(i) for i in (
        Instr(Op.STORE, src0=0, length=1, ext_addr=0x1008), Instr(Op.END))], CONFIG.mem_port_bits)
    res = small_build.run(unaligned, [(PROG, [])])
    assert res.mem_error and res.mem_error_info["code"] == 5
    forever = add_program({}, PROG, [encode(Instr(Op.SYNC))] * 64 + [encode(Instr(Op.END))], CONFIG.mem_port_bits)
    with pytest.raises(ProgramRunError, match="did not reach END within 50 cycles") as err:
        small_build.run(forever, [(PROG, [])], max_cycles=50)
    assert err.value.result is not None and not err.value.result.programs[0].finished
    with pytest.raises(ProgramRunError, match="checkpoint 9 not reached"):
        small_build.run(unaligned, [(PROG, [9])])
    with pytest.raises(ValueError, match="outside the model"):
        small_build.run({small_build.ext_words: 1}, [(PROG, [])])


@pytest.mark.rtl
def test_second_build_comes_from_the_cache(small_build):
    t0 = time.perf_counter()
    again = build(CONFIG, buffer_words=BUFFER_WORDS)
    seconds = time.perf_counter() - t0
    assert again.dir == small_build.dir and not again.built and again.cache_hit == "inputs"
    assert seconds < 5, f"a cached build took {seconds:.1f} s"


def _make_slowly(folder: Path) -> dict:
    with open(folder.parent / "makes.txt", "a") as f:
        f.write("made\n")
    time.sleep(1.0)
    return {"what": "test"}


def _ask(cache_dir: str) -> bool:
    return build_cache.cached(Path(cache_dir), "k" * 24, _make_slowly)["built"]


def test_cache_builds_once_for_two_processes(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        built = pool.map(_ask, [str(tmp_path)] * 2)
    assert sorted(built) == [False, True]
    assert (tmp_path / "makes.txt").read_text() == "made\n"
    assert build_cache.lookup(tmp_path, "k" * 24)["what"] == "test"


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HWGEN_WAVES_TEST") != "1",
                    reason="a second, traced Verilator build of the top: ~4 min (256 s measured); the Icarus test "
                           "writes and checks a VCD where iverilog is installed; set HWGEN_WAVES_TEST=1")
def test_waves_file_is_written(scenario, tmp_path):
    scen, memory = scenario
    waves_build = build(CONFIG, buffer_words=BUFFER_WORDS, waves=True)
    out = tmp_path / f"run.{waves_build.waves_format}"
    res = waves_build.run(memory, [(PROG, [])], hook=_read_expected(scen), waves_file=out)
    _check_every_op(res, scen)
    assert out.stat().st_size > 10_000
    if waves_build.waves_format == "vcd":
        head = out.open(errors="replace").read(4000)
        assert head.startswith("$version") and " stop $end" in head  # the wrapper's stop output


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed")
def test_every_op_bit_exact_on_icarus(small_build, scenario, tmp_path):
    scen, memory = scenario
    icarus = build(CONFIG, buffer_words=BUFFER_WORDS, simulator="icarus", ext_words=1 << 14, waves=True)
    # the same Verilog as the Verilator build (program_run converts it once for both)
    assert (icarus.dir / "accelerator.v").read_text() == (small_build.dir / "accelerator.v").read_text()
    vcd = tmp_path / "run.vcd"
    res = icarus.run(memory, [(PROG, [])], hook=_read_expected(scen), latency=2, waves_file=vcd)
    _check_every_op(res, scen)
    assert vcd.read_text(errors="replace").startswith("$date")
