"""Yosys runs that calibrate and check :mod:`fpga.cost.resources` (and feed :mod:`fpga.cost.clock`).

``python benchmarks/synth_calibrate.py [NAME ...] [--out runs.jsonl] [--netlists DIR]``
synthesises the runs of :data:`fpga.cost.calibration.RUNS` (all, or those named) one at a
time with :func:`fpga.synth.synthesize` and appends one JSON record a run to ``--out``:
the configuration, engines, buffer words, Yosys version and commands, the counts, the wall
time, and the longest register-to-register path of the mapped netlist
(:func:`fpga.cost.clock.critical_path`). ``--netlists`` keeps each mapped netlist
(gzipped JSON). Run it with ``nice -n 10``: each run takes 0.5-10 minutes of one core.

``--record`` turns ``--out`` into ``fpga/cost/yosys_runs.json`` (runs in RUNS order, the
last record of each); ``--table`` prints the estimator's accuracy against the recorded runs
(markdown, as in ``docs/fpga-resources-and-clock.md``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpga.cost.calibration import RUNS, run_config, run_ops, yosys_version  # noqa: E402


def synth_run(run: dict, netlists: Path | None) -> dict:
    from amaranth.back import verilog

    from fpga.cost.clock import critical_path_from_file
    from fpga.hdl.top import Accelerator
    from fpga.synth import MAP_LUTS_ABC, synthesize

    config = run_config(run)
    t0 = time.perf_counter()
    text = verilog.convert(Accelerator(config, buffer_words=run["buffer_words"], ops=run_ops(run)), name="accelerator")
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = synthesize(text, "accelerator", work_dir=tmp, write_netlist=True)
        t2 = time.perf_counter()
        path = critical_path_from_file(Path(tmp) / "netlist.json", "xcup")
        if netlists is not None:
            netlists.mkdir(parents=True, exist_ok=True)
            with open(Path(tmp) / "netlist.json", "rb") as f, gzip.open(netlists / f"{run['name']}.json.gz", "wb") as g:
                shutil.copyfileobj(f, g)
    return {**run, "yosys": yosys_version(),
            "commands": ["synth_xilinx -flatten -noiopad -family xcup -top accelerator -run :map_luts", "splitnets",
                         *MAP_LUTS_ABC, "synth_xilinx -flatten -noiopad -family xcup -top accelerator -run finalize:",
                         "stat -json"],
            "resources": {k: res[k] for k in ("lut", "lut_logic", "lut_memory", "ff", "dsp", "bram36", "carry")},
            "cells": res["cells"], "elaborate_s": round(t1 - t0, 1), "synth_s": round(t2 - t1, 1),
            "critical_path": path, "date": time.strftime("%Y-%m-%d")}


def record(jsonl: Path) -> None:
    from fpga.cost.calibration import RUNS_PATH

    last = {}
    for line in jsonl.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            last[r["name"]] = r
    runs = [last[r["name"]] for r in RUNS if r["name"] in last]
    RUNS_PATH.write_text(json.dumps({
        "about": "Yosys runs of fpga/cost/calibration.py's RUNS (benchmarks/synth_calibrate.py): 'fit' runs set "
                 "fpga/cost/resources.py's coefficients, 'check' runs (whole tops) are held out. synth_s is wall "
                 "time on 2 shared cores at load average 4-8 (other jobs running), not a quiet machine's.",
        "runs": runs}, indent=1) + "\n")
    print(f"{RUNS_PATH}: {len(runs)} runs")


def table() -> None:
    from fpga.cost.calibration import load_runs
    from fpga.cost.resources import estimate_resources

    keys = ("lut", "ff", "dsp", "bram36")
    print("| run | role | " + " | ".join(f"{k} Yosys / estimate (error)" for k in keys) + " | Yosys s | path ns (levels) |")
    print("|---|---|" + "---|" * len(keys) + "---|---|")
    for r in load_runs():
        est = estimate_resources(run_config(r), ops=run_ops(r), buffer_words=r["buffer_words"])
        cells = []
        for k in keys:
            y, e = r["resources"][k], est[k]
            err = f"{e / y - 1:+.1%}" if y else ("exact" if e == 0 else "n/a")
            cells.append(f"{y:,} / {e:,} ({err})")
        cp = r["critical_path"]
        print(f"| {r['name']} | {r['role']} | " + " | ".join(cells) + f" | {r['synth_s']:.0f} | "
              f"{cp['delay_ns']:.1f} ({cp['levels']}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--out", type=Path, default=Path("synth_runs.jsonl"))
    ap.add_argument("--netlists", type=Path, default=None)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    if a.record or a.table:
        if a.record:
            record(a.out)
        if a.table:
            table()
        return
    known = {r["name"]: r for r in RUNS}
    for n in a.names:
        if n not in known:
            sys.exit(f"unknown run {n!r}; known: {', '.join(known)}")
    done = set()
    if a.out.exists():
        done = {json.loads(l)["name"] for l in a.out.read_text().splitlines() if l.strip()}
    for run in [known[n] for n in a.names] if a.names else RUNS:
        if run["name"] in done and not a.names:
            continue
        print(f"{time.strftime('%H:%M:%S')} {run['name']} ...", flush=True)
        try:
            rec = synth_run(run, a.netlists)
        except Exception as e:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
            print(f"  FAILED: {e!s:.500}", flush=True)
            continue
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        r = rec["resources"]
        print(f"  {r['lut']} LUT {r['ff']} FF {r['dsp']} DSP {r['bram36']} BRAM36 in {rec['synth_s']} s; "
              f"path {rec['critical_path']['delay_ns']:.2f} ns", flush=True)


if __name__ == "__main__":
    main()
