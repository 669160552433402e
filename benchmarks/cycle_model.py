"""The cycle model (fpga/cost/cycles.py) against the RTL: per model, per op type and in total.

Run: ``python benchmarks/cycle_model.py [MODEL ...] [--out DIR]`` (default: ``vit-tiny``
``m3vit-tiny``; add ``m3vit-edge-moe`` for Edge-MoE's M3ViT, task 0: ~5 min of Verilator
on one core, 1.6 GB). Each model: ``hwgen compile MODEL --target fpga -o DIR/MODEL``
(``--task 0`` for several tasks), ``hwgen simulate DIR/MODEL`` (Verilator, the default
configuration, the default input), then the model's and the RTL's cycles from the
re-rendered ``report.json`` (the model uses the experts the simulated input's tokens pick).
Prints one table per model and the summary; ``report.md``, ``layers.png`` and
``roofline.png`` stay in ``DIR/MODEL``. Exits 1 if a total is off by more than 5 % or a
layer by more than 10 %.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_model(model: str, out: Path) -> dict:
    """Compile and simulate ``model`` into ``out``; returns its report.json."""
    hw = [sys.executable, "-m", "hwgen.cli"]
    task = ["--task", "0"] if "m3vit" in model else []
    subprocess.run(hw + ["compile", model, "--target", "fpga", "-o", str(out), "--force"] + task, check=True)
    subprocess.run(hw + ["simulate", str(out)], check=True)
    return json.loads((out / "report.json").read_text())


def summarise(model: str, report: dict) -> tuple[bool, list[str]]:
    from fpga.compile.report_latency import LAYER_DEVIATION_LIMIT, TOTAL_DEVIATION_LIMIT

    cm = report["cycle_model"]
    lines = [f"## {model}: model {cm['total_model']:,} cycles, RTL {cm['total_rtl']:,} ({cm['deviation']:+.2%}); "
             f"MoE rows: {cm['moe_rows']}", "", "| op | count | model | RTL | model - RTL |", "|---|---|---|---|---|"]
    for op, row in report["cycles_by_op"].items():
        lines.append(f"| {op} | {row['count']} | {round(row['model']):,} | {row.get('rtl', 0):,} | "
                     f"{(row['model'] - row['rtl']) / row['rtl'] if row.get('rtl') else 0:+.2%} |")
    layers = [la for la in report["layers"] if "cycles_measured" in la]
    worst = max(layers, key=lambda la: abs(la["cycles_model"] - la["cycles_measured"]) / la["cycles_measured"])
    w = (worst["cycles_model"] - worst["cycles_measured"]) / worst["cycles_measured"]
    lines += ["", f"worst layer: {worst['name']} ({worst['op']}) {w:+.2%}", ""]
    ok = abs(cm["deviation"]) <= TOTAL_DEVIATION_LIMIT and abs(w) <= LAYER_DEVIATION_LIMIT
    return ok, lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["vit-tiny", "m3vit-tiny"])
    ap.add_argument("--out", type=Path, default=None, help="output folders (default: a temporary folder)")
    a = ap.parse_args(argv)
    base = a.out or Path(tempfile.mkdtemp(prefix="hwgen-cycle-model-"))
    ok = True
    for model in a.models:
        report = run_model(model, base / model)
        good, lines = summarise(model, report)
        ok = ok and good
        print("\n".join(lines))
    print(f"outputs in {base}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
