"""The host side of a compiled model: inputs in, host steps, results out, layer checks.

Used by ``hwgen simulate`` (the RTL, through :mod:`simulators.program_run`) and by
:func:`run_isa` (the instruction-set simulator :mod:`fpga.isa_sim`). Everything here works
on external memory through two callables, ``read(addr, nbytes) -> bytes`` and
``write(addr, data)``, so it runs the same beside any simulator.

* :meth:`Runtime.memory` — the image with the inputs written in (codes of the hardware
  graph's input formats, placed as the compiled layout says);
* :meth:`Runtime.host_step` — one host step: its stored operands read back, the node run
  by the reference interpreter (fixed point), its stored results written;
* :meth:`Runtime.reference` — every tensor of the hardware graph by
  ``hwgen.interpret(numerics="fixed")``: what the hardware must produce, bit for bit;
* :meth:`Runtime.compare` — a stored tensor (or part) against the reference, first
  differing element named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwgen.fixedpoint import from_fixed, quantize, to_fixed
from hwgen.interp import interpret
from hwgen.interp import _run_node_fixed as run_node_fixed

from .compiler import Binding, Compiled, Segment, TensorLoc
from .image import pack_rows, unpack_rows

__all__ = ["Runtime", "Mismatch", "LayerResult", "run_isa"]


@dataclass
class Mismatch:
    tensor: str
    element: tuple
    got: float
    want: float
    where: str = ""

    def __str__(self) -> str:
        return f"{self.tensor}{list(self.element)}: hardware {self.got!r}, reference {self.want!r}{self.where}"


@dataclass
class LayerResult:
    tensor: str
    elements: int = 0
    bit_exact: bool = True
    first: Mismatch | None = None
    checked: np.ndarray | None = field(default=None, repr=False)


class Runtime:
    """Host-side operations for ``compiled``'s program set ``binding``."""

    def __init__(self, compiled: Compiled, binding: Binding | str | None = None):
        self.c = compiled
        self.b = binding if isinstance(binding, Binding) else compiled.binding(binding)
        self.cfg = compiled.config
        self.bits = self.cfg.act_fmt.width
        self.word_bits = self.cfg.mem_port_bits
        self.env: dict[str, np.ndarray] = {}  # host-side values (inputs, host results)
        self.ref: dict[str, np.ndarray] | None = None
        self.layers: dict[str, LayerResult] = {}

    # --- tensors <-> stored matrices --------------------------------------------------------
    def pack(self, loc: TensorLoc, codes: np.ndarray) -> bytes:
        lanes = self.word_bits // self.bits
        mat = np.zeros(loc.rows * loc.words * lanes, dtype=np.int64)
        mat[loc.phys] = np.asarray(codes, dtype=np.int64).reshape(-1)
        return pack_rows(mat.reshape(loc.rows, -1), self.bits, self.word_bits)

    def unpack(self, loc: TensorLoc, data: bytes) -> np.ndarray:
        lanes = self.word_bits // self.bits
        mat = unpack_rows(data, loc.rows, loc.words * lanes, self.bits, self.word_bits).reshape(-1)
        return mat[loc.phys]

    def fmt(self, name: str):
        return self.b.graph.tensors[name].fmt

    # --- inputs, host steps, outputs --------------------------------------------------
    def feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feeds for the hardware graph (bound task inputs dropped, dtypes as the graph's)."""
        out = {}
        for name in self.b.graph.inputs:
            if name not in feeds:
                raise KeyError(f"missing input {name!r}; the model takes {self.b.graph.inputs}")
            t = self.b.graph.tensors[name]
            out[name] = np.asarray(feeds[name]).astype(t.dtype).reshape(t.shape)
        return out

    def memory(self, feeds: dict[str, np.ndarray]) -> bytearray:
        """The initial external memory: the image plus the inputs the accelerator reads."""
        mem = bytearray(self.c.image)
        # the host computes on the inputs in their formats, as the reference does
        self.env = {k: (quantize(v, self.fmt(k)) if self.fmt(k) is not None else v)
                    for k, v in self.feeds(feeds).items()}
        for name, loc in self.b.inputs.items():
            codes = to_fixed(self.env[name], self.fmt(name))
            data = self.pack(loc, codes)
            mem[loc.addr:loc.addr + len(data)] = data
        return mem

    def host_step(self, seg: Segment, read, write) -> None:
        """Run host step ``seg``: operands from external memory (or the host's own values),
        the node in fixed point, results stored where the accelerator will read them."""
        g = self.b.graph
        node = next(n for n in g.nodes if n.name == seg.node)
        args = []
        for i in node.inputs:
            if not i:
                args.append(None)
            elif g.tensors[i].is_const:
                t = g.tensors[i]
                args.append(from_fixed(to_fixed(t.data, t.fmt), t.fmt) if t.fmt is not None else t.data)
            elif i in seg.host_reads:
                loc = seg.host_reads[i]
                codes = self.unpack(loc, read(loc.addr, loc.rows * loc.words * self.word_bits // 8))
                args.append(from_fixed(codes, self.fmt(i)).reshape(loc.shape))
            else:
                args.append(self._host_value(i))
        outs = run_node_fixed(g, node, args)
        for o, val in zip(node.outputs, outs):
            if o:
                self.env[o] = val
        for r, loc in seg.host_writes.items():  # a result, or the view of it that it is stored as
            write(loc.addr, self.pack(loc, to_fixed(self._host_value(r), self.fmt(r))))

    def _host_value(self, name: str) -> np.ndarray:
        """A tensor the host has: an input, a host result, or a view of one (run the views)."""
        if name in self.env:
            return self.env[name]
        g = self.b.graph
        prod = g.producers()[name]
        args = [None if not i else (g.tensors[i].data if g.tensors[i].is_const else self._host_value(i))
                for i in prod.inputs]
        for o, val in zip(prod.outputs, run_node_fixed(g, prod, args)):
            if o:
                self.env[o] = val
        return self.env[name]

    def outputs(self, read) -> dict[str, np.ndarray]:
        """The graph outputs after the last program (real values of the output formats)."""
        out = {}
        for name in self.b.graph.outputs:
            loc = self.b.outputs.get(name)
            if loc is None:
                out[name] = self._host_value(name)
                continue
            codes = self.unpack(loc, read(loc.addr, loc.rows * loc.words * self.word_bits // 8))
            out[name] = from_fixed(codes, self.fmt(name)).reshape(loc.shape)
        return out

    # --- the reference and the layer-by-layer check ---------------------------------------
    def reference(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.ref = interpret(self.b.graph, self.feeds(feeds), numerics="fixed", keep_all=True)
        return self.ref

    def check(self, loc: TensorLoc, words: list[int] | bytes, where: str = "") -> LayerResult:
        """Compare the stored elements ``loc`` (its matrix's words as read) with the reference."""
        data = words if isinstance(words, (bytes, bytearray)) else b"".join(
            int(w).to_bytes(self.word_bits // 8, "little") for w in words)
        got = self.unpack(loc, data)
        name = loc.name
        fmt = self.fmt(name)
        want_all = to_fixed(self.ref[name], fmt).reshape(-1)
        elems = loc.elems if loc.elems is not None else np.arange(want_all.size)
        want = want_all[elems]
        res = self.layers.setdefault(name, LayerResult(name, checked=np.zeros(want_all.size, dtype=bool)))
        res.checked[elems] = True
        res.elements = int(res.checked.sum())
        bad = np.nonzero(got != want)[0]
        if len(bad) and res.bit_exact:
            e = int(elems[bad[0]])
            idx = np.unravel_index(e, self.b.graph.tensors[name].shape) if self.b.graph.tensors[name].shape else ()
            res.bit_exact = False
            res.first = Mismatch(name, tuple(int(i) for i in idx), float(from_fixed(got[bad[0]], fmt)),
                                 float(from_fixed(want[bad[0]], fmt)), where)
        return res


def run_isa(compiled: Compiled, feeds: dict, binding: str | None = None, check_layers: bool = True):
    """Run a compiled program set on the instruction-set simulator.

    Returns ``(outputs, runtime)``; ``runtime.layers`` holds the layer checks (when
    ``check_layers``) against the fixed-point reference.
    """
    from ..isa_sim import IsaSim

    rt = Runtime(compiled, binding)
    mem = rt.memory(feeds)
    if check_layers:
        rt.reference(feeds)
    sim = IsaSim(compiled.config, bytes(mem))
    read = lambda a, n: bytes(sim.ext[a:a + n])  # noqa: E731

    def write(a, d):
        sim.ext[a:a + len(d)] = d

    for si, seg in enumerate(rt.b.segments):
        if seg.kind == "host":
            rt.host_step(seg, read, write)
            continue
        pending = {}
        for idx, loc in seg.checks:
            pending.setdefault(idx, []).append(loc)

        def after(i, pending=pending, si=si):
            for loc in pending.get(i, ()):
                words = sim.buf[loc.addr:loc.addr + loc.rows * loc.words]
                data = pack_rows(words, rt.bits, rt.word_bits)
                rt.check(loc, data, f" (program {si}, instruction {i})")

        sim.run(seg.addr, after=after if check_layers else None)
    return rt.outputs(read), rt
