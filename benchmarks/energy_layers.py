"""Energy per layer of a compiled model (fpga/cost/energy.py): the table of docs/fpga-energy-and-peers.md.

Run: ``python benchmarks/energy_layers.py OUT_OR_MODEL [--sim OUT/sim.json] [--uniform] [--top N]``.
Per IR node: cycles (measured from ``--sim`` where the node has them, else hwgen's estimate),
energy, its split (MAC, buffer, DRAM, special functions, logic, control, static), average
power, GOP/s and GOP/J; then the total. The experts' rows are measured on the
instruction-set simulator for ``hwgen simulate``'s default input unless ``--uniform``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_layers import load_compiled, measured_rows, sim_layer_cycles  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("--sim", default=None)
    ap.add_argument("--binding", default=None)
    ap.add_argument("--uniform", action="store_true")
    ap.add_argument("--top", type=int, default=0, help="print only the N most energy-hungry layers")
    args = ap.parse_args(argv)

    from fpga.cost.cycles import estimate_cycles
    from fpga.cost.energy import ENERGY_TABLE, action_energies, layer_energy, node_actions

    c = load_compiled(args.source)
    b = c.binding(args.binding)
    rows = None if args.uniform else measured_rows(c, b.name)
    est: dict = {}
    for si, seg in enumerate(b.segments):
        if seg.kind != "program":
            continue
        for ii, e in enumerate(seg.instrs):
            r = e.expect_rows if rows is None else rows.get((si, ii), e.expect_rows)
            est[e.node or "(control)"] = est.get(e.node or "(control)", 0.0) + estimate_cycles(e.instr, c.config, r)
    measured = sim_layer_cycles(args.sim, b.name)
    cycles = {k: measured.get(k, v) for k, v in est.items()}
    res = layer_energy(cycles, node_actions(b, c.config, rows), c.config)
    print("per action (J):", {k: f"{v:.4g}" for k, v in action_energies(c.config).items()})
    print("assumptions:", ", ".join(k for k, (_, _, s) in ENERGY_TABLE.items() if s.startswith("assumption")))
    parts = ["mac", "buffer", "dram", "special", "logic", "control", "static"]
    print("layer | cycles | energy uJ | " + " | ".join(parts) + " | avg W | GOP/s | GOP/J")
    items = list(res["layers"].items())
    if args.top:
        items = sorted(items, key=lambda kv: -kv[1]["energy_j"])[:args.top]
    for name, f in items + [("TOTAL", res["total"])]:
        eb = f["energy_breakdown_j"]
        print(f"{name} | {f['cycles']:,.0f} | {f['energy_j'] * 1e6:,.1f} | "
              + " | ".join(f"{eb[p] * 1e6:,.1f}" for p in parts)
              + f" | {f['average_power_w']:.3f} | {f['gop_per_s']:.1f} | {f['gop_per_j']:.1f}")
    return res


if __name__ == "__main__":
    main()
