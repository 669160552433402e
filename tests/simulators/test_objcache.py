"""simulators.objcache: a runtime source compiles once per command; the copy is the same object."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simulators import objcache

CXX = shutil.which("c++") or shutil.which("g++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler on PATH")


def _include_folder(root: Path, value: int) -> Path:
    """A folder shaped like Verilator's include folder: verilated.h, vltstd/, one runtime source."""
    inc = root / "include"
    (inc / "vltstd").mkdir(parents=True, exist_ok=True)
    (inc / "verilated.h").write_text(f"#define VALUE {value}\n")
    (inc / "vltstd" / "svdpi.h").write_text("")
    (inc / "verilated_x.cpp").write_text('#include "verilated.h"\nint verilated_x() { return VALUE; }\n')
    return inc


def _compile(cache: Path, build: Path, inc: Path, source: Path) -> subprocess.CompletedProcess:
    """What make runs: ``$(OBJCACHE) $(CXX) ... -c -o NAME.o SOURCE`` in the build folder."""
    build.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-S", objcache.__file__, str(cache), CXX, "-O1", "-MMD", f"-I{inc}",
            "-c", "-o", f"{source.stem}.o", str(source)]
    return subprocess.run(argv, cwd=build, capture_output=True, text=True)


def test_runtime_object_compiles_once_and_copies_are_identical(tmp_path):
    inc, cache = _include_folder(tmp_path, 7), tmp_path / "cache"
    src = inc / "verilated_x.cpp"
    assert _compile(cache, tmp_path / "a", inc, src).returncode == 0
    stored = sorted(p.name for p in cache.glob("*.o"))
    assert len(stored) == 1
    assert _compile(cache, tmp_path / "b", inc, src).returncode == 0
    assert sorted(p.name for p in cache.glob("*.o")) == stored  # copied, not a second entry
    a, b = (tmp_path / d / "verilated_x.o" for d in "ab")
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "b" / "verilated_x.d").read_text() == (tmp_path / "a" / "verilated_x.d").read_text()
    # the object equals a plain compile of the same command
    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run([CXX, "-O1", "-MMD", f"-I{inc}", "-c", "-o", "verilated_x.o", str(src)], cwd=plain, check=True)
    assert (plain / "verilated_x.o").read_bytes() == a.read_bytes()


def test_a_changed_header_or_flag_is_a_new_key(tmp_path):
    inc = _include_folder(tmp_path, 7)
    src = inc / "verilated_x.cpp"
    argv = [CXX, "-O1", f"-I{inc}", "-c", "-o", "verilated_x.o", str(src)]
    key = objcache.runtime_key(argv, src)
    assert objcache.runtime_key(argv[:1] + ["-O2"] + argv[2:], src) != key
    (inc / "vltstd" / "svdpi.h").write_text("// edited\n")
    assert objcache.runtime_key(argv, src) != key


def test_other_sources_compile_without_the_cache(tmp_path):
    inc, cache = _include_folder(tmp_path, 7), tmp_path / "cache"
    model = tmp_path / "Vtop.cpp"
    model.write_text("int model() { return 1; }\n")
    assert _compile(cache, tmp_path / "m", inc, model).returncode == 0
    assert (tmp_path / "m" / "Vtop.o").is_file() and not list(cache.glob("*.o"))


def test_a_failing_compile_fails_and_stores_nothing(tmp_path):
    inc, cache = _include_folder(tmp_path, 7), tmp_path / "cache"
    src = inc / "verilated_x.cpp"
    src.write_text("this is not C++\n")
    r = _compile(cache, tmp_path / "f", inc, src)
    assert r.returncode != 0 and "error" in r.stderr
    assert not list(cache.glob("*.o"))


def test_make_var_names_this_interpreter_and_the_folder(tmp_path):
    var = objcache.make_var(tmp_path / "objects")
    assert var.startswith("OBJCACHE=") and sys.executable in var and str(tmp_path / "objects") in var


def test_an_unusable_cache_folder_still_compiles(tmp_path):
    inc = _include_folder(tmp_path, 7)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    r = _compile(blocker / "cache", tmp_path / "u", inc, inc / "verilated_x.cpp")
    assert r.returncode == 0 and (tmp_path / "u" / "verilated_x.o").is_file()
    assert "without the cache" in r.stderr
