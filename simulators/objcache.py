"""Compile Verilator's runtime library once per compiler command, not once per build.

Every Verilator build compiles the same runtime sources from the wheel's include folder
(``verilated.cpp``, ``verilated_vpi.cpp``, ``verilated_threads.cpp``, ``verilated_dpi.cpp``,
...): about 20 CPU-s a build, measured, against ~1.5 CPU-s for a small unit's own model
(tests/fpga build some 35 of them). ``verilated.mk`` runs every compile as
``$(OBJCACHE) $(CXX) ...``; :func:`make_var` sets ``OBJCACHE`` to this script, which

* passes every compile through unchanged (``os.execvp``), except
* one of a source file inside Verilator's include folder (``-c -o NAME.o SOURCE``): its
  object (and the ``-MMD`` dependency file) is stored under ``cache_dir`` by a SHA-256 of
  the compiler's identity (``--version`` and path), the whole command line and the bytes
  of every file in the source's folder and its ``vltstd`` (every header it can include
  from there); later builds with the same key copy the object instead of compiling.

The object is what the compiler writes for that exact command and those exact bytes, so
a build links the same code it would have compiled. Files outside the include folder (the
model, cocotb's ``verilator.cpp``, which includes the model's ``Vtop.h``) always compile.
Concurrent processes take an exclusive ``flock`` per key, so one compiles and the rest copy.

Run by make as ``python -S objcache.py CACHE_DIR CXX ARGS...``; standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["make_var", "runtime_key", "compile_or_copy", "main"]


def make_var(cache_dir: str | os.PathLike) -> str:
    """``OBJCACHE=...`` for make's command line: this script, run by this interpreter, on ``cache_dir``."""
    words = [sys.executable, "-S", str(Path(__file__).resolve()), str(Path(cache_dir).resolve())]
    return "OBJCACHE=" + " ".join(shlex.quote(w) for w in words)


def _runtime_source(argv: list[str]) -> tuple[Path, Path] | None:
    """``(source, object)`` when ``argv`` compiles one source of Verilator's include folder, else None."""
    if "-c" not in argv or "-o" not in argv or argv.index("-o") + 1 >= len(argv):
        return None
    obj = Path(argv[argv.index("-o") + 1])
    sources = [Path(a) for a in argv[1:] if a.endswith(".cpp")]
    if len(sources) != 1 or obj.suffix != ".o" or not sources[0].is_file():
        return None
    src = sources[0].resolve()
    if not (src.parent / "verilated.h").is_file() or not (src.parent / "vltstd").is_dir():
        return None  # not Verilator's include folder
    return src, obj


def runtime_key(argv: list[str], source: Path) -> str:
    """SHA-256 (hex) of the compiler (path, ``--version``), the command and the include folder's files."""
    h = hashlib.sha256()

    def put(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    compiler = shutil.which(argv[0]) or argv[0]
    put(compiler.encode())
    put(subprocess.run([argv[0], "--version"], capture_output=True).stdout)
    for arg in argv[1:]:
        put(arg.encode())
    for folder in (source.parent, source.parent / "vltstd"):
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            put(path.name.encode())
            put(path.read_bytes())
    return h.hexdigest()


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def compile_or_copy(cache_dir: Path, argv: list[str], source: Path, obj: Path) -> int:
    """Copy ``obj`` (and its ``.d``) from ``cache_dir`` or run ``argv`` and store them; the exit status."""
    key = runtime_key(argv, source)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stored_obj, stored_dep = cache_dir / f"{key}.o", cache_dir / f"{key}.d"
    dep = obj.with_suffix(".d")
    with open(cache_dir / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stored_obj.is_file():
            _copy(stored_obj, obj)
            if stored_dep.is_file():
                _copy(stored_dep, dep)
            return 0
        status = subprocess.run(argv).returncode
        if status == 0 and obj.is_file():
            if dep.is_file():
                _copy(dep, stored_dep)
            _copy(obj, stored_obj)  # last: a stored object means a finished compile
        return status


def main(args: list[str]) -> int:
    """``CACHE_DIR CXX ARGS...``: compile (or copy) one object as make asked."""
    if len(args) < 2:
        print("usage: objcache.py CACHE_DIR CXX [ARGS...]", file=sys.stderr)
        return 2
    cache_dir, argv = Path(args[0]), args[1:]
    found = _runtime_source(argv)
    if found is not None:
        try:
            return compile_or_copy(cache_dir, argv, *found)
        except OSError as e:  # an unwritable or full cache: compile as make would have
            print(f"objcache: {e}; compiling {found[0].name} without the cache", file=sys.stderr)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
