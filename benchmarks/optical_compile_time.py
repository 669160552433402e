"""Wall and CPU time of ``hwgen compile MODEL --target optical4f`` on a model no one here
wrote (goal: seconds, with the cost model; the physical simulation sampled or opt-in).

Run: ``python benchmarks/optical_compile_time.py [MODEL] [--set KEY=VALUE ...]``
(default ``convnext-atto``: timm's convnext_atto shape, 224x224, 40 Conv nodes, 1x1
pointwise convs up to 320x1280; exported once to ``$HWGEN_CACHE/models`` before timing).
Each configuration runs in a fresh process: the default (``simulate=auto``: the first
optical layer sampled), ``simulate=false`` (cost model only) and ``map=cost``; the
mapping summary of the default run is printed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(model: str, sets: list[str], out: Path) -> tuple[float, float, dict]:
    cmd = [sys.executable, "-m", "hwgen.cli", "compile", model, "--target", "optical4f", "-o", str(out), "--force"]
    for s in sets:
        cmd += ["--set", s]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, json.loads((out / "report.json").read_text())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="convnext-atto")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    args = ap.parse_args(argv)
    from hwgen.frontend import resolve_model

    model = str(resolve_model(args.model) or args.model)  # export once, outside the timing
    runs = [("default (simulate=auto)", []), ("simulate=false", ["simulate=false"]), ("map=cost", ["map=cost"])]
    with tempfile.TemporaryDirectory() as tmp:
        for label, sets in runs:
            wall, cpu, r = _run(model, sets + args.sets, Path(tmp) / "OUT")
            kinds = Counter((m["kind"], m["device"]) for m in r["mapping"])
            print(f"{label:26s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  latency {r['latency_s']:.4g} s "
                  f"(serial {r['latency_serial_s']:.4g} s)  sim: {r['fidelity']['simulated']}")
            if not sets:
                for (kind, dev), n in sorted(kinds.items()):
                    print(f"    {n:3d} x {kind:17s} -> {dev}")
                print("    " + r["notes"][-1])


if __name__ == "__main__":
    main()
