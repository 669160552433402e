"""The GEMM layers of a compiled model and hwgen's figures for them (for the peer benchmarks).

``benchmarks/peers_scalesim.py`` and ``benchmarks/peers_zigzag.py`` hand these GEMMs to a
peer tool in its own virtual environment and print its cycles (and energy) beside hwgen's.

* :func:`load_compiled` -- an ``OUT`` directory of ``hwgen compile --target fpga``
  (``compiled.pkl``) or a model name/path (compiled here on the default configuration).
* :func:`measured_rows` -- the row count of every register-sized instruction (the experts'
  LINEARs, gathers, combines) for one input, from the instruction-set simulator: the routed
  token counts of a real run, not the uniform estimate.
* :func:`gemms` -- one :class:`Gemm` per weight matrix: ``M`` (rows: tokens, or an expert's
  routed tokens), ``K``, ``N`` as the LINEAR instructions carry them (N padded to
  ``mac_cols``), hwgen's estimated cycles and actions for those instructions.
* :func:`sim_layer_cycles` -- measured cycles per IR node from a ``sim.json``.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["Gemm", "load_compiled", "measured_rows", "gemms", "sim_layer_cycles"]


@dataclass
class Gemm:
    """One weight matrix's GEMM ``[M, K] @ [K, N]`` and hwgen's figures for it."""

    layer: str  # IR node
    name: str  # IR node, or node + expert and fc1/fc2
    m: int
    k: int
    n: int
    cycles: float = 0.0  # hwgen's estimate (fpga/cost/cycles.py) of these LINEAR instructions
    actions: dict = field(default_factory=dict)  # fpga/cost/energy.py actions of these instructions
    instructions: int = 0


def load_compiled(source: str):
    """A :class:`fpga.compile.Compiled` from ``OUT/compiled.pkl`` or by compiling model ``source``."""
    p = Path(source)
    if (p / "compiled.pkl").exists():
        with open(p / "compiled.pkl", "rb") as f:
            return pickle.load(f)
    import hwgen
    from fpga.compile import compile_graph
    from fpga.config import AcceleratorConfig

    return compile_graph(hwgen.canonicalize(hwgen.load(source)), AcceleratorConfig())


def measured_rows(compiled, binding=None, seed: int = 0) -> dict:
    """``{(segment index, instruction index): rows}`` of the register-sized instructions.

    Runs the program set on :class:`fpga.isa_sim.IsaSim` with ``hwgen simulate``'s default
    input of a model that is not an 8x8 digit (``sample_inputs(graph, seed=0)``) and reads
    the ``moe_rows`` register after each MOE_GATHER and before each rows-from-register op.
    """
    from fpga.compile.runtime import Runtime
    from fpga.isa import Op
    from fpga.isa_sim import IsaSim
    from hwgen.frontend import sample_inputs

    rt = Runtime(compiled, binding)
    feeds = dict(sample_inputs(rt.b.graph, seed=seed))
    import numpy as np

    for k, v in rt.b.bind.items():
        feeds[k] = np.array(v, dtype=np.int64)
    sim = IsaSim(compiled.config, bytes(rt.memory(feeds)))
    rows: dict = {}

    def write(a, d):
        sim.ext[a:a + len(d)] = d

    for si, seg in enumerate(rt.b.segments):
        if seg.kind == "host":
            rt.host_step(seg, lambda a, n: bytes(sim.ext[a:a + n]), write)
            continue

        def after(i, si=si, seg=seg):
            ins = seg.instrs[i].instr
            if ins.op in (Op.MOE_GATHER, Op.MOE_COMBINE) or (ins.op == Op.LINEAR and ins.flags & 2):
                rows[(si, i)] = int(sim.regs["moe_rows"])

        sim.run(seg.addr, after=after)
    return rows


_EXPERT = re.compile(r"w:[^ ]*\.(fc\d)\[(\d+)\]")


def gemms(compiled, binding=None, rows: dict | None = None) -> list[Gemm]:
    """One :class:`Gemm` per (IR node, weight address), in program order.

    ``rows`` (:func:`measured_rows`) gives the experts' routed token counts; without it the
    uniform estimate (``expect_rows``) is used, rounded to whole rows.
    """
    from fpga.cost.cycles import estimate_cycles
    from fpga.cost.energy import instruction_actions
    from fpga.isa import Op

    c = compiled.config
    b = compiled.binding(binding) if hasattr(compiled, "binding") else compiled.bindings[0]
    out: dict = {}
    for si, seg in enumerate(b.segments):
        if seg.kind != "program":
            continue
        for ii, e in enumerate(seg.instrs):
            ins = e.instr
            if ins.op != Op.LINEAR:
                continue
            reg = bool(ins.flags & 2)
            m = (rows.get((si, ii), e.expect_rows) if rows is not None else e.expect_rows) if reg else ins.length
            key = (e.node, ins.ext_addr)
            g = out.get(key)
            if g is None:
                hit = _EXPERT.search(e.comment or "")
                name = f"{e.node}.{hit.group(1)}[{hit.group(2)}]" if hit else e.node
                g = out[key] = Gemm(e.node, name, 0, ins.aux, ins.src1)
            g.m += m
            g.cycles += estimate_cycles(ins, c, m)
            g.instructions += 1
            for k, v in instruction_actions(ins, c, m).items():
                g.actions[k] = g.actions.get(k, 0) + v
    for g in out.values():
        g.m = int(round(g.m))
    return list(out.values())


def add_source_args(ap) -> None:
    """The arguments every peer benchmark takes: what to compare and how to route."""
    ap.add_argument("source", help="hwgen compile OUT directory or a model name")
    ap.add_argument("--sim", default=None, help="sim.json of an RTL run (hwgen simulate) for measured cycles")
    ap.add_argument("--binding", default=None, help="program set (default: the first)")
    ap.add_argument("--uniform", action="store_true", help="uniform routing estimate instead of a measured run")
    ap.add_argument("--json", default=None, help="write the results to this file")


def load_gemms(args):
    """``(compiled, binding, rows, gemms, shapes)`` for :func:`add_source_args`' arguments:
    the GEMMs with at least one row and their distinct ``(M, K, N)`` shapes, sorted."""
    c = load_compiled(args.source)
    b = c.binding(args.binding)
    rows = None if args.uniform else measured_rows(c, b.name)
    gs = [g for g in gemms(c, b.name, rows) if g.m > 0]
    return c, b, rows, gs, sorted({(g.m, g.k, g.n) for g in gs})


def sim_layer_cycles(path: str | None, binding_name: str) -> dict:
    """Measured cycles per IR node (``layer_cycles``) of one program set in a ``sim.json``."""
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    for b in data.get("bindings", []):
        if b.get("name") == binding_name:
            return {k: v for k, v in (b.get("layer_cycles") or {}).items() if v is not None}
    return {}
