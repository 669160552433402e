"""Yosys runs that calibrate and check :mod:`fpga.cost.resources` (and feed :mod:`fpga.cost.clock`).

``python benchmarks/synth_calibrate.py [NAME ...] [--only ENGINES] [--checks] [--out runs.jsonl] [--netlists DIR]``
synthesises the runs of :data:`fpga.cost.calibration.RUNS` (all, or those named, or those
``--only`` selects) one at a time with :func:`fpga.synth.synthesize` and appends one JSON
record a run to ``--out``:
the configuration, engines, buffer words, Yosys version and commands, the counts, the wall
time, and the longest register-to-register path of the mapped netlist
(:func:`fpga.cost.clock.critical_path`). ``--netlists`` keeps each mapped netlist
(gzipped JSON). Run it with ``nice -n 10``: each run takes 0.5-10 minutes of one core.

After an RTL change to some engines, ``--only linear,layernorm`` re-synthesises just the
one-engine fit runs of those engines (``none``: the tops without engines, after a change to
the controller, DMA or buffer) -- minutes; ``--checks`` adds the whole-top checks (each
holds every engine: 5-20 minutes each). ``--list`` prints the selection without running it.

``--record`` merges ``--out`` into ``fpga/cost/yosys_runs.json`` (runs in RUNS order; the
last record of each run in ``--out`` replaces the recorded one, the others are kept);
``--predict NAME`` records the estimator's figures for a check *before* Yosys runs on it
(a blind check: commit the JSON, then synthesise); ``--table`` prints the estimator's
accuracy against the recorded runs (markdown, as in ``docs/fpga-resources-and-clock.md``).
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

from fpga.cost.calibration import RUNS, RUNS_PATH, run_config, run_ops, select_runs, yosys_version  # noqa: E402


def synth_run(run: dict, netlists: Path | None) -> dict:
    from amaranth.back import verilog

    from fpga.cost.clock import critical_path_from_file
    from fpga.hdl.top import Accelerator
    from fpga.synth import synthesize, yosys_commands

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
            "commands": yosys_commands("accelerator.v", "accelerator", write_netlist=True),
            "resources": {k: res[k] for k in ("lut", "lut_logic", "lut_memory", "ff", "dsp", "bram36", "carry")},
            "cells": res["cells"], "elaborate_s": round(t1 - t0, 1), "synth_s": round(t2 - t1, 1),
            "critical_path": path, "date": time.strftime("%Y-%m-%d")}


_ABOUT = ("Yosys runs of fpga/cost/calibration.py's RUNS (benchmarks/synth_calibrate.py): 'fit' runs set "
          "fpga/cost/resources.py's coefficients, 'check' runs (whole tops) are held out; 'predictions' are the "
          "estimates of the blind checks, recorded before Yosys ran on them. synth_s is wall time on 2 shared "
          "cores with other jobs running, not a quiet machine's.")


def _write(runs: list[dict], predictions: dict) -> None:
    RUNS_PATH.write_text(json.dumps({"about": _ABOUT, "runs": runs, "predictions": predictions}, indent=1) + "\n")


def _recorded() -> dict:
    return json.loads(RUNS_PATH.read_text()) if RUNS_PATH.exists() else {"runs": [], "predictions": {}}


def record(jsonl: Path) -> None:
    if not jsonl.exists():
        sys.exit(f"--record: no runs to record, {jsonl} does not exist (name it with --out)")
    old = _recorded()
    last = {r["name"]: r for r in old["runs"]}
    new = {}
    for line in jsonl.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            new[r["name"]] = {**r, **{k: v for k, v in _run(r["name"]).items() if k not in r}}
    # a new top without engines (the shared part changed) leaves the one-engine runs of its
    # configuration that are not re-recorded with the baseline they were measured against
    for r in new.values():
        if r["ops"] == [] and r["name"] in last:
            was = last[r["name"]]
            for x in last.values():
                if (x["config"] == r["config"] and x["ops"] not in ([], "all") and x["name"] not in new
                        and "baseline" not in x):
                    x["baseline"] = {"run": was["name"], "date": was["date"], "resources": was["resources"]}
    last.update(new)
    runs = [last[r["name"]] for r in RUNS if r["name"] in last]
    _write(runs, old.get("predictions", {}))
    print(f"{RUNS_PATH}: {len(runs)} runs ({len(new)} records from {jsonl})")


def _run(name: str) -> dict:
    for r in RUNS:
        if r["name"] == name:
            return r
    sys.exit(f"unknown run {name!r}; known: {', '.join(r['name'] for r in RUNS)}")


def predict(names: list[str]) -> None:
    """Record the estimator's figures for the named checks (before Yosys runs on them)."""
    from fpga.cost.resources import estimate_resources

    old = _recorded()
    preds = dict(old.get("predictions", {}))
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    for n in names:
        r = _run(n)
        if any(x["name"] == n for x in old["runs"]):
            sys.exit(f"{n} is already synthesised: a prediction now would not be blind")
        est = estimate_resources(run_config(r), ops=run_ops(r), buffer_words=r["buffer_words"])
        preds[n] = {**{k: est[k] for k in ("lut", "ff", "dsp", "bram36")}, "date": time.strftime("%Y-%m-%d %H:%M"),
                    "estimator_commit": head}
        print(f"{n}: predicted {preds[n]}")
    _write(old["runs"], preds)


def table() -> None:
    from fpga.cost.calibration import load_predictions, load_runs
    from fpga.cost.resources import estimate_resources

    keys = ("lut", "ff", "dsp", "bram36")
    preds = load_predictions()
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
        pred = preds.get(r["name"])
        role = (r["role"] + (" (blind)" if pred and "checked_against" not in pred else "")
                + (" STALE: older RTL" if r.get("stale") else "")
                + (f" (older shared part: {r['baseline']['resources']['lut']:,} LUT)" if r.get("baseline") else ""))
        print(f"| {r['name']} | {role} | " + " | ".join(cells) + f" | {r['synth_s']:.0f} | "
              f"{cp['delay_ns']:.1f} ({cp['levels']}) |")
    if preds:
        print("\n| blind check | " + " | ".join(f"{k} Yosys / prediction (error)" for k in keys)
              + " | predicted (HEAD then) |")
        print("|---|" + "---|" * len(keys) + "---|")
        recorded = {r["name"]: r for r in load_runs()}
        for n, p in preds.items():
            # checked_against: the Yosys figures of the RTL the prediction was made for (the top
            # was re-synthesised since, after an RTL change; the recorded run is of the new RTL)
            y = p.get("checked_against") or recorded.get(n, {}).get("resources")
            cells = [f"{y[k]:,} / {p[k]:,} ({p[k] / y[k] - 1:+.1%})" if y else f"- / {p[k]:,}" for k in keys]
            then = f"; Yosys of {p['checked_against']['date']}, RTL since changed" if "checked_against" in p else ""
            print(f"| {n} | " + " | ".join(cells) + f" | {p['date']} ({p['estimator_commit']}){then} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--out", type=Path, default=Path("synth_runs.jsonl"))
    ap.add_argument("--netlists", type=Path, default=None)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--only", default=None, metavar="ENGINES",
                    help="comma-separated engines (e.g. linear,layernorm; none = no engine): their one-engine runs")
    ap.add_argument("--checks", action="store_true", help="with --only: also the whole-top checks")
    ap.add_argument("--list", action="store_true", help="print the selected runs and stop")
    ap.add_argument("--predict", action="store_true", help="record the estimator's figures for the named checks")
    a = ap.parse_args()
    if a.record or a.table:
        if a.record:
            record(a.out)
        if a.table:
            table()
        return
    if a.predict:
        if not a.names:
            sys.exit("--predict needs the names of the checks to predict")
        predict(a.names)
        return
    selected = a.only is not None or a.checks or a.names
    try:
        runs = select_runs(a.only.split(",") if a.only else (), a.checks, a.names) if selected else RUNS
    except ValueError as e:
        sys.exit(str(e))
    if a.list:
        print("\n".join(r["name"] for r in runs))
        return
    done = set()
    if a.out.exists():
        done = {json.loads(l)["name"] for l in a.out.read_text().splitlines() if l.strip()}
    for run in runs:
        if run["name"] in done and not selected:
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
