"""Resources of the accelerator top from Yosys (synth_xilinx -family xcup, flattened), against its part.

Run: ``python benchmarks/synth_top.py [config.toml] [--buffer-words N]`` (default: Edge-MoE's
configuration, the ZCU102). Prints LUT/FF/BRAM36/DSP used, available and the fraction, the
per-unit DSP split, the wall time of elaboration and synthesis, and whether it fits.
Slow: tens of minutes for the default top in the WebAssembly Yosys on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amaranth.back import verilog  # noqa: E402

from fpga.config import AcceleratorConfig  # noqa: E402
from fpga.hdl.top import Accelerator  # noqa: E402
from fpga.isa import Op  # noqa: E402
from fpga.synth import fits, synthesize, utilization  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", help="accelerator TOML (default: AcceleratorConfig())")
    ap.add_argument("--buffer-words", type=int, default=None)
    ap.add_argument("--ops", help="comma-separated engines to build (e.g. GELU,ATTENTION; default: all)")
    ap.add_argument("--work-dir", help="keep Yosys' files and its log (yosys.log, written as it runs) here")
    ap.add_argument("--no-map-luts", action="store_true", help="stop before ABC's LUT mapping (LUTs not counted)")
    ap.add_argument("--abc", choices=("abc", "abc9"), default="abc",
                    help="LUT mapper: Yosys' classic abc pass (default, see fpga.synth.MAP_LUTS_ABC) "
                         "or synth_xilinx's own abc9 (far slower in the WebAssembly Yosys)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    config = AcceleratorConfig.from_toml(args.config) if args.config else AcceleratorConfig()
    t0 = time.perf_counter()
    ops = [Op[o.strip().upper()] for o in args.ops.split(",")] if args.ops else None
    text = verilog.convert(Accelerator(config, buffer_words=args.buffer_words, ops=ops), name="accelerator")
    t1 = time.perf_counter()
    res = synthesize(text, "accelerator", work_dir=args.work_dir, map_luts=not args.no_map_luts, abc=args.abc)
    t2 = time.perf_counter()
    part = config.part
    print(f"accelerator on {part.name}: elaborated in {t1 - t0:.0f} s, synthesised in {t2 - t1:.0f} s "
          f"(LUT mapping: {args.abc})")
    print(f"{'resource':<10}{'used':>12}{'available':>12}{'fraction':>10}")
    for key, (used, avail, frac) in utilization(res, part).items():
        print(f"{key:<10}{used:>12,.1f}{avail:>12,}{frac:>9.1%}")
    if not res["lut_mapped"]:
        print(f"(LUTs not mapped: stopped before LUT mapping; {res['unmapped_gates']:,} gates left)")
    ok = fits(res, part)
    print("fits" if ok else "DOES NOT FIT")
    out = {"config": config.to_dict(), "ops": args.ops or "all", "abc": args.abc, "resources": {k: v for k, v in res.items() if k != "cells"},
           "cells": res["cells"], "fits": ok, "elaborate_s": t1 - t0, "synth_s": t2 - t1}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
