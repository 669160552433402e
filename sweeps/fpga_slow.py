"""The slow evaluations of an FPGA point, through hwgen's own commands in a scratch folder:
``hwgen compile`` + ``hwgen simulate`` (RTL cycles on Verilator, every layer checked bit
for bit; minutes) and ``hwgen fpga synth`` (Yosys resources; tens of minutes on big
configurations). Only where the spec's ``[evaluate]`` asks (``rtl``, ``yosys``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hwgen.errors import TargetError

__all__ = ["rtl_and_yosys"]


def _run(args: list[str], what: str) -> None:
    p = subprocess.run([sys.executable, "-m", "hwgen.cli", *args], capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise TargetError(f"{what} failed: {' | '.join(tail)}")


def rtl_and_yosys(model: str, cfg, task: int | None, evaluate: dict) -> dict:
    """``{"cycles_rtl", "latency_rtl_s", "bit_exact"}`` and/or ``{"yosys_lut", "yosys_ff",
    "yosys_dsp", "yosys_bram36", "yosys_fits"}`` of one configuration."""
    row: dict = {}
    with tempfile.TemporaryDirectory(prefix="hwgen-sweep-") as tmp:
        conf = Path(tmp) / "config.toml"
        cfg.to_toml(conf)
        if evaluate.get("rtl"):
            out = Path(tmp) / "out"
            task_args = ["--task", str(task)] if task is not None else []
            _run(["compile", model, "--target", "fpga", "--config", str(conf), "-o", str(out), *task_args], "hwgen compile")
            _run(["simulate", str(out), "--image", "0"], "hwgen simulate")
            sim = json.loads((out / "sim.json").read_text())
            row["cycles_rtl"] = sim.get("cycles")
            row["latency_rtl_s"] = sim["cycles"] / cfg.clock_hz if sim.get("cycles") else None
            row["bit_exact"] = sim.get("bit_exact")
        if evaluate.get("yosys"):
            js = Path(tmp) / "synth.json"
            _run(["fpga", "synth", str(conf), "--json", str(js)], "hwgen fpga synth")
            syn = json.loads(js.read_text())
            for k in ("lut", "ff", "dsp", "bram36"):
                row[f"yosys_{k}"] = syn["resources"].get(k)
            row["yosys_fits"] = syn["fits"]
    return row
