"""From a canonical graph to programs and an external-memory image for one configuration.

:func:`compile_graph` runs, per task binding (one program set per value of a task
input, all sharing one image): :func:`~fpga.compile.graph.hardware_graph`,
:func:`~fpga.compile.lower.lower`, :func:`~fpga.compile.memory.plan_memory`, then lays out
the image (weights and constants once, deduplicated; per binding its inputs, outputs,
spill slots and host operands) and emits the instructions. The result,
:class:`Compiled`, holds everything a run needs: :mod:`fpga.compile.runtime` executes it
on the RTL or checks it against the reference.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from hwgen.errors import TargetError
from hwgen.ir import Graph

from ..isa import Instr, Op, encode
from .graph import hardware_graph, task_inputs
from .image import Image, pack_rows
from .layout import Matrix
from .lower import Lowering, lower
from .memory import plan_memory
from .reuse import CompileReuse
from .roots import analyse_roots
from .ops import Emitted, EngineOp, HostStep, RegState

__all__ = ["Compiled", "Binding", "Segment", "TensorLoc", "compile_graph"]


@dataclass
class TensorLoc:
    """A logical tensor in a stored matrix: element ``e`` (flat) is at flat physical index
    ``phys[e]`` of a matrix of ``rows x words`` words at ``addr`` (external bytes, or
    buffer words for a check)."""

    name: str
    shape: tuple
    addr: int
    rows: int
    words: int
    phys: np.ndarray
    elems: np.ndarray | None = None  # which elements (flat) this covers; None: all


@dataclass
class Segment:
    """An accelerator program (``kind="program"``) or a host step (``kind="host"``)."""

    kind: str
    instrs: list[Emitted] = field(default_factory=list)
    addr: int = 0  # program byte address
    node: str = ""  # host step: the IR node
    checks: list[tuple[int, TensorLoc]] = field(default_factory=list)  # (instruction index, where)
    host_reads: dict[str, TensorLoc] = field(default_factory=dict)  # tensor -> external location
    host_writes: dict[str, TensorLoc] = field(default_factory=dict)  # root tensor -> external location


@dataclass
class Binding:
    """The programs for one value of the task inputs."""

    name: str
    bind: dict[str, int]
    graph: Graph
    segments: list[Segment]
    inputs: dict[str, TensorLoc]
    outputs: dict[str, TensorLoc]
    host_reasons: dict[str, str]
    skipped_checks: dict[str, str]
    stats: dict


@dataclass
class Compiled:
    config: object
    image: bytes
    image_regions: list[dict]
    bindings: list[Binding]
    word_bytes: int
    timings: dict

    def binding(self, name: str | None = None) -> Binding:
        if name is None:
            return self.bindings[0]
        for b in self.bindings:
            if b.name == name:
                return b
        raise TargetError(f"no program set {name!r}; compiled: {', '.join(b.name for b in self.bindings)}")


def _bindings(g: Graph, task: int | None) -> list[tuple[str, dict]]:
    tasks = task_inputs(g)
    if not tasks:
        if task is not None:
            raise TargetError("--task given, but the model has no integer task input")
        return [("main", {})]
    if task is not None:
        for name, count in tasks.items():
            if count is not None and not 0 <= task < count:
                raise TargetError(f"--task {task}: the model's input {name!r} selects one of {count} tasks (0..{count - 1})")
        return [(f"task{task}", {name: task for name in tasks})]
    unknown = [n for n, c in tasks.items() if c is None]
    if unknown:
        raise TargetError(f"the model's integer input(s) {unknown} select values at run time; give --task N")
    counts = [range(c) for c in tasks.values()]
    out = []
    for values in itertools.product(*counts):
        b = dict(zip(tasks, values))
        out.append(("task" + "_".join(str(v) for v in values), b))
    return out


def _loc(name, shape, mat: Matrix, phys, addr, elems=None) -> TensorLoc:
    return TensorLoc(name, tuple(shape), addr, mat.rows, mat.words, np.asarray(phys, dtype=np.int64).reshape(-1), elems)


def compile_graph(g: Graph, config, *, task: int | None = None, progress=None, tile_budget: float = 0.5,
                  cost_only: bool = False, reuse: CompileReuse | None = None) -> Compiled:
    """Compile the canonical graph ``g`` for ``config`` (see the module docstring).

    ``progress(stage: str)`` is called as stages start (for a progress display).
    ``cost_only=True`` skips what only a run needs: weights are neither quantised nor
    packed and the image holds no bytes (``image == b""``; every address, instruction and
    cost figure is as in a full compile). Such a result is for the cost model only.
    ``reuse`` keeps hardware graphs and their storage analyses across calls
    (:class:`~fpga.compile.reuse.CompileReuse`: a sweep compiling one model many times);
    the result is the same with or without it.
    """
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    lanes, wb = config.lanes, config.mem_port_bits // 8
    image = Image(config.mem_port_bits, base=0, virtual=cost_only)
    lowered = []
    for name, bind in _bindings(g, task):
        say(f"lowering {name}")
        if reuse is not None:
            hg, roots = reuse.prepared(g, config, bind)
        else:
            hg = hardware_graph(g, config, bind)
            roots = analyse_roots(hg)  # once for every tile budget tried
        budget = tile_budget
        while True:
            low = lower(hg, config, tile_budget=budget, cost_only=cost_only, roots=roots)
            outputs = dict.fromkeys(low.layouts[low.views[o].root].matrix for o in hg.outputs  # ordered: the
                                    if o in low.views and low.views[o].root in low.layouts)  # image is reproducible
            pinned = {m for op in low.ops if isinstance(op, EngineOp) for m, _ in op.uses() if m.meta.get("pinned")}
            try:
                plan = plan_memory(low.ops, config.buffer_words, outputs, pinned)
                break
            except TargetError:
                if budget < 0.1:
                    raise
                budget /= 2
        lowered.append((name, bind, hg, low, plan, outputs))
    t_lower = time.perf_counter() - t0

    say("laying out the external memory image")
    for _, _, _, low, _, _ in lowered:
        for w in low.weights:
            w.addr = image.reserve(w.name, w.nbytes, "weights") if cost_only else \
                image.put(w.name, w.words.tobytes(), "weights")
        for m in low.consts:
            m.meta["ext"] = image.reserve(m.name, m.data.shape[0] * -(-m.data.shape[1] * m.fmt_bits // config.mem_port_bits) * wb, "const") if cost_only else \
                image.put(m.name, pack_rows(m.data, m.fmt_bits, config.mem_port_bits), "const")
    bindings = []
    for name, bind, hg, low, plan, outputs in lowered:
        stored = [lay.matrix for lay in low.layouts.values() if lay.matrix.kind in ("input", "host")]
        stored += [m for m in plan.ext_needed if "parent" not in m.meta]
        for m in dict.fromkeys(stored):  # in a fixed order (a set of matrices iterates by address)
            if "ext" not in m.meta:
                kind = {"input": "input", "host": "host"}.get(m.kind, "output" if m in outputs else "spill")
                m.meta["ext"] = image.reserve(f"{name}:{m.name}", m.size * wb, kind)
        for m in outputs:
            if "ext" not in m.meta:
                m.meta["ext"] = image.reserve(f"{name}:{m.name}", m.size * wb, "output")
        for op in low.ops:  # row blocks of a stored matrix: their parent's external copy
            for m, _ in (op.uses() if isinstance(op, EngineOp) else []):
                if "parent" in m.meta and "ext" not in m.meta:
                    parent, row0 = m.meta["parent"]
                    m.meta["ext"] = parent.meta["ext"] + row0 * parent.words * wb
        bindings.append(_emit(name, bind, hg, low, plan, config))
    say("placing programs")
    for b in bindings:
        for seg in b.segments:
            if seg.kind == "program" and cost_only:
                seg.addr = image.reserve(f"{b.name}:program", 16 * len(seg.instrs), "program")
            elif seg.kind == "program":
                words = [encode(e.instr) for e in seg.instrs]
                blob = b"".join(w.to_bytes(16, "little") for w in words)
                seg.addr = image.put(f"{b.name}:program", blob, "program", dedup=False)
    image.align()
    return Compiled(config, bytes(image.data), image.regions, bindings, wb,
                    {"lower_s": t_lower, "total_s": time.perf_counter() - t0})


def _emit(name: str, bind: dict, hg: Graph, low: Lowering, plan, config) -> Binding:
    """Instructions per program segment, checks, host step I/O, input/output locations."""
    segments: list[Segment] = []
    cur: Segment | None = None
    regs = RegState()
    last_instr: dict[int, tuple[Segment, int]] = {}  # plan position -> (segment, last instruction index)
    for pos, op in enumerate(plan.ops):
        if isinstance(op, HostStep):
            if cur is not None:
                cur.instrs.append(Emitted(Instr(Op.END), "", "end of program (host step follows)"))
                cur = None
            seg = Segment("host", node=op.node)
            segments.append(seg)
            continue
        if cur is None:
            cur = Segment("program")
            segments.append(cur)
            regs = RegState()
        at = plan.addr_at[pos]
        try:
            cur.instrs.extend(op.emit(lambda m: at[m], regs))
        except KeyError as e:
            raise TargetError(f"internal: matrix {e} of op {op.label} ({op.node}) has no buffer address") from e
        last_instr[pos] = (cur, len(cur.instrs) - 1)
    if cur is not None:
        cur.instrs.append(Emitted(Instr(Op.END), "", "end of program"))
    # checks: after the op that completes them, read from the buffer
    pos_of = {orig: pos for pos, orig in enumerate(plan.orig_index) if orig is not None}
    for chk in low.checks:
        pos = pos_of[chk.op]
        seg, idx = last_instr[pos]
        addr = plan.addr_at[pos][chk.mat]
        seg.checks.append((idx, TensorLoc(chk.tensor, tuple(hg.tensors[chk.tensor].shape), addr, chk.mat.rows,
                                          chk.mat.words, chk.phys, chk.elems)))
    # host steps: where their stored operands are, where their stored results go
    host_iter = iter(s for s in segments if s.kind == "host")
    node_by_name = {n.name: n for n in hg.nodes}
    for op in plan.ops:
        if not isinstance(op, HostStep):
            continue
        seg = next(host_iter)
        node = node_by_name[op.node]
        for i in node.inputs:
            if not i or hg.tensors[i].is_const or i not in low.views:
                continue
            v = low.views[i]
            lay = low.layouts.get(v.root)
            if lay is not None and lay.matrix.kind == "chip":
                seg.host_reads[i] = _loc(i, hg.tensors[i].shape, lay.matrix, lay.phys[v.ids], lay.matrix.meta["ext"])
        for r, p in low.producer.items():  # the roots this node's results are stored as
            if p is node and r in low.layouts:
                lay = low.layouts[r]
                seg.host_writes[r] = _loc(r, hg.tensors[r].shape, lay.matrix, lay.phys, lay.matrix.meta["ext"])
    inputs = {}
    for i in hg.inputs:
        lay = low.layouts.get(low.views[i].root) if i in low.views else None
        if lay is not None:
            inputs[i] = _loc(i, hg.tensors[i].shape, lay.matrix, lay.phys, lay.matrix.meta["ext"])
    outputs = {}
    for o in hg.outputs:
        v = low.views.get(o)
        lay = low.layouts.get(v.root) if v is not None else None
        if lay is not None and lay.matrix.kind == "chip":
            outputs[o] = _loc(o, hg.tensors[o].shape, lay.matrix, lay.phys[v.ids], lay.matrix.meta["ext"])
    n_instr = sum(len(s.instrs) for s in segments if s.kind == "program")
    stats = {"instructions": n_instr, "programs": sum(s.kind == "program" for s in segments),
             "host_steps": sum(s.kind == "host" for s in segments), "peak_buffer_words": plan.peak_words,
             "spilled": plan.spilled, "weight_bytes": int(sum(w.nbytes for w in low.weights))}
    return Binding(name, dict(bind), hg, segments, inputs, outputs, dict(low.host_reasons),
                   dict(low.skipped_checks), stats)
