"""Run a compiled model (``hwgen compile --target fpga``) on a simulator and check it.

One :class:`CompiledHook` goes with a simulation run: at each checkpoint (the instruction
that completes an IR tensor) it reads that tensor's words from the on-chip buffer; between
programs it runs the host steps (:meth:`fpga.compile.runtime.Runtime.host_step`). The words
come back to :func:`simulate_binding`, which compares every stored tensor with the
fixed-point reference, the outputs with the float model, and attributes the measured
cycles to IR nodes from the per-instruction trace.

Backends: ``"verilator"``/``"icarus"`` (the RTL, through :mod:`simulators.program_run`) and
``"isa"`` (:mod:`fpga.isa_sim`, the instruction set's functional model: no cycles).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fpga.compile.compiler import Compiled
from fpga.compile.image import pack_rows
from fpga.compile.runtime import Runtime

__all__ = ["CompiledHook", "BindingResult", "simulate_binding"]


class CompiledHook:
    """Checkpoint reads and host steps inside a simulation (picklable).

    ``programs``: the program segments in order; checkpoints of program ``p`` are the
    instruction indices in ``reads[p]``.
    """

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.reads: list[dict[int, list[tuple[int, int]]]] = []
        self.after: list[list] = []  # host segments after program p
        self.before: list = []  # host segments before the first program
        progs = 0
        for seg in runtime.b.segments:
            if seg.kind == "program":
                r: dict[int, list[tuple[int, int]]] = {}
                for idx, loc in seg.checks:
                    r.setdefault(idx, []).append((loc.addr, loc.rows * loc.words))
                self.reads.append(r)
                self.after.append([])
                progs += 1
            elif progs == 0:
                self.before.append(seg)
            else:
                self.after[-1].append(seg)
        self.words: dict[tuple[int, int, int], bytes] = {}

    def checkpoints(self, p: int) -> list[int]:
        return sorted(self.reads[p])

    def checkpoint(self, ctx, p: int, instr: int) -> None:
        for addr, n in self.reads[p].get(instr, ()):
            self.words[(p, instr, addr)] = _as_bytes(ctx.read_buf(addr, n), self.rt.word_bits)

    def after_program(self, ctx, p: int) -> None:
        wb = self.rt.word_bits // 8

        def read(a, n):
            return _as_bytes(ctx.read_ext(a // wb, -(-n // wb)), self.rt.word_bits)[:n]

        def write(a, data):
            ws = [int.from_bytes(data[i:i + wb], "little") for i in range(0, len(data), wb)]
            ctx.write_ext(a // wb, ws)

        for seg in self.after[p]:
            self.rt.host_step(seg, read, write)
        if p == len(self.reads) - 1:  # the last program: the model's outputs
            self.outputs = {k: np.asarray(v) for k, v in self.rt.outputs(read).items()}

    def result(self) -> dict:
        return {"words": self.words, "outputs": getattr(self, "outputs", {})}


def _as_bytes(words, word_bits: int) -> bytes:
    if isinstance(words, (bytes, bytearray)):
        return bytes(words)
    wb = word_bits // 8
    return b"".join(int(w).to_bytes(wb, "little") for w in words)


@dataclass
class BindingResult:
    name: str
    cycles: int | None
    program_cycles: list
    layer_cycles: dict
    bit_exact: bool
    first_mismatch: str | None
    layers: list
    outputs: dict
    max_abs_error_vs_float: float
    float_tolerance: float
    within_tolerance: bool
    wall_s: float
    sim_wall_s: float
    extra: dict = field(default_factory=dict)


def simulate_binding(compiled: Compiled, binding: str, feeds: dict, backend, float_ref: dict | None = None,
                     progress=None) -> BindingResult:
    """Run one program set on ``backend`` and check it (see the module docstring).

    ``backend(compiled, runtime, memory, hook) -> dict`` runs the programs and returns
    ``{"programs": [{"cycles", "trace": [(pc, cycle), ...]}], "hook": hook.result() or the
    hook, "read_ext": callable, "sim_wall_s"}``.
    """
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    rt = Runtime(compiled, binding)
    say(f"{binding}: reference (fixed point)")
    rt.reference(feeds)
    from fpga.cost.routing import expert_choices

    choices = expert_choices(rt.b, {}, rt.ref)  # the experts each MoE token picks (for the cycle model)
    mem = rt.memory(feeds)
    hook = CompiledHook(rt)
    for seg in hook.before:  # host steps before the first program write into the initial memory
        rt.host_step(seg, lambda a, n: bytes(mem[a:a + n]), lambda a, d: mem.__setitem__(slice(a, a + len(d)), d))
    say(f"{binding}: simulating")
    run = backend(compiled, rt, mem, hook)
    words = run["hook"]["words"]
    # layer checks, in program order
    progs = [s for s in rt.b.segments if s.kind == "program"]
    first = None
    for p, seg in enumerate(progs):
        for idx, loc in seg.checks:
            data = words.get((p, idx, loc.addr))
            if data is None:
                raise RuntimeError(f"checkpoint {p}:{idx} ({loc.name}) was not read by the simulation")
            res = rt.check(loc, data, f" (program {p}, instruction {idx}: {seg.instrs[idx].instr})")
            if not res.bit_exact and first is None:
                first = str(res.first)
    outs = run["hook"]["outputs"]
    out_exact = all(np.array_equal(np.asarray(outs[k]), np.asarray(rt.ref[k]).reshape(np.shape(outs[k])))
                    for k in outs)
    if not out_exact and first is None:
        k = next(k for k in outs if not np.array_equal(np.asarray(outs[k]), rt.ref[k]))
        first = f"output {k} differs from the reference"
    # cycles per IR node from the instruction trace
    layer_cycles: dict[str, int] = {}
    prog_cycles = []
    instr_cycles: list[list[int]] = []  # per program, cycles of each instruction (END last)
    for p, seg in enumerate(progs):
        pr = run["programs"][p]
        prog_cycles.append(pr.get("cycles"))
        trace = pr.get("trace") or []  # (instruction index, cycles since the start) as each completes
        prev = 0
        per_instr = []
        for idx, cyc in trace:
            per_instr.append(int(cyc - prev))
            if 0 <= idx < len(seg.instrs):
                node = seg.instrs[idx].node or "(control)"
                layer_cycles[node] = layer_cycles.get(node, 0) + int(cyc - prev)
            prev = cyc
        instr_cycles.append(per_instr)
    # the float model
    err, tol, ok = 0.0, 0.0, True
    if float_ref is not None:
        for k, v in outs.items():
            want = np.asarray(float_ref[k], dtype=np.float64).reshape(np.shape(v))
            e = float(np.max(np.abs(np.asarray(v, dtype=np.float64) - want))) if np.size(v) else 0.0
            t = 0.05 * float(np.max(np.abs(want))) + 1e-3 if np.size(want) else 0.0
            err, tol = max(err, e), max(tol, t)
            ok = ok and e <= t
    extra = dict(run.get("extra", {}))
    if any(instr_cycles):
        extra["instr_cycles"] = instr_cycles
    if choices:
        extra["moe_experts"] = {k: np.asarray(v).tolist() for k, v in choices.items()}
    if not ok:  # a Mixture of Experts near a tie routes some tokens elsewhere in fixed point: say so
        flips = routing_differences(rt.b.graph, rt.feeds(feeds), rt.ref)
        if flips:
            extra["routing_differences"] = flips
    layers = [{"tensor": r.tensor, "elements": r.elements, "bit_exact": r.bit_exact,
               **({"first_mismatch": str(r.first)} if r.first else {})} for r in rt.layers.values()]
    total = sum(c for c in prog_cycles if c is not None) if any(c is not None for c in prog_cycles) else None
    return BindingResult(binding, total, prog_cycles, layer_cycles, first is None, first, layers,
                         {k: np.asarray(v).tolist() for k, v in outs.items()}, err, tol, ok,
                         time.perf_counter() - t0, run.get("sim_wall_s", 0.0), extra)


def routing_differences(graph, feeds: dict, ref_fixed: dict) -> dict:
    """Per MoE node, the tokens whose top-k experts differ between the fixed-point
    reference and float arithmetic: ``{node: {"tokens": n, "of": total, "min_gap": g}}``
    (``min_gap``: the smallest float score gap between the k-th and (k+1)-th expert)."""
    import hwgen
    from hwgen.fixedpoint import to_fixed
    from hwgen.numerics.linear import linear_codes
    from hwgen.numerics.topk import topk_codes

    moes = [n for n in graph.nodes if n.op == "MoE" and n.domain == "hwgen"]
    if not moes:
        return {}
    flt = hwgen.interpret(graph, feeds, keep_all=True)
    out = {}
    for n in moes:
        x, gw = n.inputs[0], n.inputs[1]
        gb = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        if not graph.tensors[gw].is_const:
            continue
        k = int(n.attrs.get("top_k", 1))
        t = graph.tensors
        d = t[x].shape[-1]
        xs = to_fixed(ref_fixed[x], t[x].fmt).reshape(-1, d)
        s_fixed = linear_codes(xs, to_fixed(t[gw].data, t[gw].fmt), None if gb is None else to_fixed(t[gb].data, t[gb].fmt),
                               t[x].fmt, t[gw].fmt, None if gb is None else t[gb].fmt, t[x].fmt)
        s_float = np.asarray(flt[x], np.float64).reshape(-1, d) @ np.asarray(t[gw].data, np.float64)
        if gb is not None:
            s_float = s_float + np.asarray(t[gb].data, np.float64).reshape(-1)
        a = np.sort(topk_codes(s_fixed, k), axis=1)
        b = np.sort(np.argsort(-s_float, axis=1, kind="stable")[:, :k], axis=1)
        diff = int(np.any(a != b, axis=1).sum())
        if diff:
            srt = np.sort(s_float, axis=1)[:, ::-1]
            gap = float(np.min(srt[:, k - 1] - srt[:, k])) if srt.shape[1] > k else 0.0
            out[n.name] = {"tokens": diff, "of": int(len(a)), "min_gap": gap}
    return out


def isa_backend(compiled, rt, mem, hook) -> dict:
    """The instruction-set simulator as a backend (no cycles)."""
    from fpga.isa_sim import IsaSim

    sim = IsaSim(compiled.config, bytes(mem))

    class _Ctx:
        def read_buf(self, a, n):
            return pack_rows(sim.buf[a:a + n], rt.bits, rt.word_bits)

        def read_ext(self, w, n):
            wb = rt.word_bits // 8
            return bytes(sim.ext[w * wb:(w + n) * wb])

        def write_ext(self, w, words):
            wb = rt.word_bits // 8
            data = b"".join(int(x).to_bytes(wb, "little") for x in words)
            sim.ext[w * wb:w * wb + len(data)] = data

    ctx = _Ctx()
    t0 = time.perf_counter()
    programs = []
    for p, seg in enumerate(s for s in rt.b.segments if s.kind == "program"):
        marks = set(hook.checkpoints(p))
        sim.run(seg.addr, after=lambda i, p=p: hook.checkpoint(ctx, p, i) if i in marks else None)
        hook.after_program(ctx, p)
        programs.append({"cycles": None, "trace": []})
    return {"programs": programs, "hook": hook.result(), "sim_wall_s": time.perf_counter() - t0}
