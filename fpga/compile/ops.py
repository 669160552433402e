"""Engine operations: what the lowering emits and the memory planner places.

An op names the matrices it uses (:meth:`Op.uses`: ``"r"`` read, ``"w"`` every word
written, ``"m"`` some words written, the rest kept) and, once the planner has given every
matrix a buffer address, turns into instructions (:meth:`Op.emit`) of :mod:`fpga.isa`,
each with a comment. Register writes (``SET``) are emitted only when a value changes
(:class:`RegState`). ``node`` is the IR node the op implements (the ``layer`` of its
instructions in ``program.asm`` and in the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..isa import REGISTERS, Instr, Op
from .layout import Matrix, Window

__all__ = ["RegState", "WeightBlock", "EngineOp", "LinearOp", "WordwiseOp", "LayerNormOp", "AttentionOp",
           "MoeRouteOp", "SetOp", "GatherOp", "CombineOp", "FillOp", "LoadOp", "StoreOp", "HostStep", "Emitted"]

#: Flags of LINEAR (fpga.isa): bit 0 fused GELU, bit 1 rows from the ``moe_rows`` register.
LINEAR_GELU, LINEAR_ROWS_FROM_REG = 1, 2


@dataclass
class Emitted:
    """One instruction with the IR node it implements and a comment."""

    instr: Instr
    node: str
    comment: str = ""
    expect_rows: float = 0.0  # rows a register-sized op is expected to see (uniform routing), for estimates


class RegState:
    """Register values as the program has set them (None: unknown)."""

    def __init__(self) -> None:
        self.values: dict[str, int | None] = {name: None for name in REGISTERS}

    def set(self, name: str, value: int, node: str, out: list[Emitted], force: bool = False) -> None:
        if force or self.values.get(name) != value:
            out.append(Emitted(Instr(Op.SET, aux=REGISTERS[name], ext_addr=value), node, f"{name} = {value}"))
            self.values[name] = value

    def forget(self, name: str) -> None:
        self.values[name] = None


@dataclass(eq=False)
class WeightBlock:
    """A linear layer's weight image (``fpga.hdl.engine_linear``): packed words; the
    image builder gives it an external byte address (identical blocks share one).
    A cost-only lowering leaves ``words`` empty and gives only ``nbytes``."""

    name: str
    words: np.ndarray  # the image's bytes (uint8)
    addr: int | None = None
    nbytes: int | None = None  # bytes of the image (default: words.size)

    def __post_init__(self) -> None:
        if self.nbytes is None:
            self.nbytes = int(self.words.size)


class EngineOp:
    """Base of the ops; subclasses have a ``node`` field and implement ``uses`` and ``emit``."""

    def uses(self) -> list[tuple[Matrix, str]]:
        raise NotImplementedError

    def emit(self, addr, regs: RegState) -> list[Emitted]:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return type(self).__name__


def _w(win: Window) -> str:
    return f"{win.mat.name}[{win.row0}:{win.row0 + win.rows * win.step}:{win.step}]" if win.step != 1 else \
        f"{win.mat.name}[{win.row0}:{win.row0 + win.rows}]"


def _mode(win: Window, rows: int | None = None) -> str:
    """'w' when the window covers every word of its matrix, else 'm'."""
    n = win.rows if rows is None else rows
    return "w" if win.row0 == 0 and win.step == 1 and n == win.mat.rows else "m"


@dataclass(eq=False)
class LinearOp(EngineOp):
    """``y = x @ W + b`` (+ GELU) on consecutive rows; ``rows_from_reg``: M from ``moe_rows``."""

    node: str
    x: Window
    y: Window
    weights: WeightBlock
    gelu: bool = False
    rows_from_reg: bool = False
    k_logical: int = 0
    n_logical: int = 0
    expect_rows: float = 0.0

    def uses(self):
        return [(self.x.mat, "r"), (self.y.mat, "m" if self.rows_from_reg else _mode(self.y))]

    def emit(self, addr, regs):
        flags = (LINEAR_GELU if self.gelu else 0) | (LINEAR_ROWS_FROM_REG if self.rows_from_reg else 0)
        m = 0 if self.rows_from_reg else self.x.rows
        ins = Instr(Op.LINEAR, flags=flags, src0=addr(self.x.mat) + self.x.word0, dst=addr(self.y.mat) + self.y.word0,
                    length=m, aux=self.x.mat.row_elems, src1=self.y.mat.row_elems, ext_addr=self.weights.addr)
        rows = "rows=moe_rows" if self.rows_from_reg else f"M={m}"
        what = f"{_w(self.y)} = {'gelu(' if self.gelu else ''}{_w(self.x)} @ {self.weights.name}{')' if self.gelu else ''}"
        return [Emitted(ins, self.node, f"{what}  {rows} K={self.k_logical}({self.x.mat.row_elems}) "
                                        f"N={self.n_logical}({self.y.mat.row_elems})", self.expect_rows)]


@dataclass(eq=False)
class WordwiseOp(EngineOp):
    """GELU (one source) or ADD (two sources) over the words of consecutive rows."""

    node: str
    op: Op
    srcs: list[Window]
    dst: Window

    def uses(self):
        return [(s.mat, "r") for s in self.srcs] + [(self.dst.mat, _mode(self.dst))]

    def emit(self, addr, regs):
        n = self.dst.rows * self.dst.mat.words
        a = [addr(s.mat) + s.word0 for s in self.srcs]
        ins = Instr(self.op, src0=a[0], src1=a[1] if len(a) > 1 else 0, dst=addr(self.dst.mat) + self.dst.word0, length=n)
        sym = " + ".join(_w(s) for s in self.srcs) if self.op == Op.ADD else f"gelu({_w(self.srcs[0])})"
        return [Emitted(ins, self.node, f"{_w(self.dst)} = {sym}  ({n} words)")]


@dataclass(eq=False)
class LayerNormOp(EngineOp):
    node: str
    x: Window
    y: Window
    gb: Matrix  # gamma words then beta words (const)
    d: int
    eps_code: int

    def uses(self):
        return [(self.x.mat, "r"), (self.gb, "r"), (self.y.mat, _mode(self.y))]

    def emit(self, addr, regs):
        out: list[Emitted] = []
        regs.set("ln_eps", self.eps_code, self.node, out)
        lanes = self.x.mat.lanes
        stride = self.x.mat.words
        override = 0 if stride == -(-self.d // lanes) else stride
        out.append(Emitted(Instr(Op.LAYERNORM, src0=addr(self.x.mat) + self.x.word0, src1=addr(self.gb),
                                 dst=addr(self.y.mat) + self.y.word0, length=self.x.rows, aux=self.d, ext_addr=override),
                           self.node, f"{_w(self.y)} = layernorm({_w(self.x)}) D={self.d}"
                                      + (f" stride={stride}" if override else "")))
        return out


@dataclass(eq=False)
class AttentionOp(EngineOp):
    """One head: ``O = softmax(Q K^T scale) V``; Q, K, V with one row stride."""

    node: str
    q: Window
    k: Window
    v: Window
    o: Window
    d: int
    scale_code: int
    head: str = ""

    def uses(self):
        return [(self.q.mat, "r"), (self.k.mat, "r"), (self.v.mat, "r"), (self.o.mat, "m")]

    def emit(self, addr, regs):
        out: list[Emitted] = []
        lanes = self.q.mat.lanes
        regs.set("att_dim", self.d, self.node, out)
        regs.set("att_in_stride", self.q.step * self.q.mat.words, self.node, out)
        regs.set("att_out_stride", self.o.step * self.o.mat.words, self.node, out)
        regs.set("att_scale", self.scale_code & ((1 << 20) - 1), self.node, out)

        def a(w: Window) -> int:
            return addr(w.mat) + w.word0 + int(w.colmap[0]) // lanes

        out.append(Emitted(Instr(Op.ATTENTION, src0=a(self.q), src1=a(self.k), ext_addr=a(self.v), dst=a(self.o),
                                 length=self.q.rows, aux=self.k.rows),
                           self.node, f"head {self.head}: Sq={self.q.rows} Sk={self.k.rows} D={self.d}"))
        return out


@dataclass(eq=False)
class MoeRouteOp(EngineOp):
    node: str
    scores: Window
    table: Matrix
    sched: Matrix
    experts: int

    def uses(self):
        return [(self.scores.mat, "r"), (self.table, "w"), (self.sched, "w")]

    def emit(self, addr, regs):
        lanes = self.scores.mat.lanes
        stride = self.scores.mat.words
        override = 0 if stride == -(-self.experts // lanes) else stride
        return [Emitted(Instr(Op.MOE_ROUTE, src0=addr(self.scores.mat) + self.scores.word0, dst=addr(self.table),
                              src1=addr(self.sched), length=self.scores.rows, aux=self.experts, ext_addr=override),
                        self.node, f"route {self.scores.rows} tokens over {self.experts} experts")]


@dataclass(eq=False)
class SetOp(EngineOp):
    """``SET`` of a register to a value, or to a matrix address plus an offset (``mat``)."""

    node: str
    reg: str
    value: int
    mat: Matrix | None = None

    def uses(self):
        return [(self.mat, "r")] if self.mat is not None else []

    def emit(self, addr, regs):
        out: list[Emitted] = []
        v = self.value + (addr(self.mat) if self.mat is not None else 0)
        regs.set(self.reg, v, self.node, out, force=True)
        return out


@dataclass(eq=False)
class GatherOp(EngineOp):
    """MOE_GATHER: up to ``t`` rows routed to ``expert`` from ``x`` (the route group's rows)
    into ``g``; the (token, gate weight) list into ``lst``."""

    node: str
    x: Window
    g: Matrix
    lst: Matrix
    table: Matrix
    sched: Matrix
    expert: int
    t: int
    expect_rows: float = 0.0

    def uses(self):
        return [(self.x.mat, "r"), (self.table, "r"), (self.sched, "r"), (self.g, "m"), (self.lst, "m")]

    def emit(self, addr, regs):
        regs.forget("moe_rows")
        regs.forget("moe_cursor")
        s = self.x.mat.words
        return [Emitted(Instr(Op.MOE_GATHER, src0=addr(self.x.mat) + self.x.word0, dst=addr(self.g), src1=addr(self.lst),
                              aux=self.expert, length=self.t, ext_addr=s | (addr(self.table) << 16)),
                        self.node, f"gather <= {self.t} tokens of expert {self.expert} into {self.g.name}",
                        self.expect_rows)]


@dataclass(eq=False)
class CombineOp(EngineOp):
    """MOE_COMBINE: ``Y[token] += w * H[i]`` for the gathered rows (``y``: the group's rows)."""

    node: str
    h: Matrix
    lst: Matrix
    y: Window
    expert: int
    expect_rows: float = 0.0

    def uses(self):
        return [(self.h, "r"), (self.lst, "r"), (self.y.mat, "m")]

    def emit(self, addr, regs):
        return [Emitted(Instr(Op.MOE_COMBINE, src0=addr(self.h), src1=addr(self.lst), dst=addr(self.y.mat) + self.y.word0,
                              aux=self.h.words), self.node, f"combine expert {self.expert} into {_w(self.y)}",
                        self.expect_rows)]


@dataclass(eq=False)
class FillOp(EngineOp):
    """LOAD of a constant matrix into rows of a stored matrix (same words a row)."""

    node: str
    src: Matrix  # kind "const"
    dst: Window

    def uses(self):
        return [(self.dst.mat, _mode(self.dst, self.src.rows))]

    def emit(self, addr, regs):
        n = self.src.rows * self.src.words
        return [Emitted(Instr(Op.LOAD, dst=addr(self.dst.mat) + self.dst.word0, length=n, ext_addr=self.src.meta["ext"]),
                        self.node, f"{self.dst.mat.name}[{self.dst.row0}:{self.dst.row0 + self.src.rows}] = {self.src.name}")]


@dataclass(eq=False)
class LoadOp(EngineOp):
    """Planner-inserted: a matrix from its external copy into the buffer."""

    node: str
    mat: Matrix
    ext: int

    def uses(self):
        return [(self.mat, "w")]

    def emit(self, addr, regs):
        ext = self.ext if self.ext >= 0 else self.mat.meta["ext"]
        return [Emitted(Instr(Op.LOAD, dst=addr(self.mat), length=self.mat.size, ext_addr=ext), self.node,
                        f"load {self.mat.name} ({self.mat.size} words)")]


@dataclass(eq=False)
class StoreOp(EngineOp):
    """Planner-inserted: a matrix from the buffer to its external copy."""

    node: str
    mat: Matrix
    ext: int

    def uses(self):
        return [(self.mat, "r")]

    def emit(self, addr, regs):
        ext = self.ext if self.ext >= 0 else self.mat.meta["ext"]
        return [Emitted(Instr(Op.STORE, src0=addr(self.mat), length=self.mat.size, ext_addr=ext), self.node,
                        f"store {self.mat.name} ({self.mat.size} words)")]


@dataclass(eq=False)
class HostStep:
    """An IR node the host runs between two accelerator programs (reference interpreter).

    ``reads``: matrices whose values it needs from external memory; ``writes``: matrices
    it writes there.
    """

    node: str
    op: str
    reads: list[Matrix] = field(default_factory=list)
    writes: list[Matrix] = field(default_factory=list)
    reason: str = ""
    size: int = 0  # output elements


def eps_code_checked(eps: float, frac_bits: int, bits: int = 32) -> int:
    code = math.floor(eps * 2.0 ** (2 * frac_bits) + 0.5)
    if not 0 <= code < (1 << bits):
        raise ValueError(f"LayerNorm epsilon {eps} does not fit the {bits}-bit eps register at {frac_bits} fraction bits")
    return code
