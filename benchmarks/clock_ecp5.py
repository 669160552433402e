"""Fmax: the logic-level estimate beside nextpnr-ecp5's achieved figure, same designs.

``python benchmarks/clock_ecp5.py [NAME ...] [--json OUT]`` synthesises each design for an
ECP5 (``fpga.cost.ecp5.place_and_route_ecp5``: synth_ecp5, nextpnr-ecp5 --85k) and for
UltraScale+ (``fpga.synth.synthesize``), and prints per design: nextpnr's achieved Fmax,
the estimate from the same ECP5 netlist with ECP5 delays, their ratio, and the estimate
for the ZCU102's xczu9eg-2 (the figure the compile report uses). Designs: small units and
the GELU engine on 32-bit words (a whole accelerator top has more ports than an ECP5
package has pins).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def designs() -> dict:
    from fpga.hdl.engine_elementwise import ElementwiseEngine
    from fpga.hdl.gelu import GeluUnit
    from fpga.hdl.linear import LinearUnit
    from fpga.hdl.residual import ResidualAdd

    return {
        "residual": lambda: ResidualAdd(1),
        "gelu": lambda: GeluUnit(1),
        "linear-2x2": lambda: LinearUnit(rows=2, cols=2, depth=16, max_k=64),
        "gelu-engine": lambda: ElementwiseEngine(GeluUnit(1), 1, 16, 32),
    }


def main() -> None:
    from fpga.cost.clock import critical_path_from_file
    from fpga.cost.ecp5 import place_and_route_ecp5
    from fpga.synth import synthesize

    known = designs()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"designs (default all): {', '.join(known)}")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    print(f"{'design':14s} {'LUT4':>6s} {'nextpnr MHz':>11s} {'estimate MHz':>12s} {'est/npr':>7s} "
          f"{'levels':>6s} {'xczu9eg-2 est MHz':>17s} {'xcup levels':>11s}")
    for name in a.names or known:
        make = known[name]
        e = place_and_route_ecp5(make(), "top", package="CABGA756" if name.endswith("engine") else "CABGA381")
        with tempfile.TemporaryDirectory() as tmp:
            synthesize(make(), "top", work_dir=tmp, write_netlist=True)
            x = critical_path_from_file(Path(tmp) / "netlist.json", "xcup")
        est = e["estimate"]
        ratio = est["fmax_mhz"] / e["fmax_nextpnr_mhz"]
        print(f"{name:14s} {e['lut4']:6d} {e['fmax_nextpnr_mhz']:11.1f} {est['fmax_mhz']:12.1f} {ratio:7.2f} "
              f"{est['levels']:6d} {x['fmax_mhz']:17.1f} {x['levels']:11d}", flush=True)
        rows.append({"design": name, "ecp5": e, "xcup": x, "ratio": ratio})
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
