"""Lowering: the hardware graph's nodes -> engine ops on stored matrices, or host steps.

Input: a graph in the form :func:`fpga.compile.graph.hardware_graph` makes (canonical,
``hwgen.Linear`` fused, fixed-point formats of the configuration). Per node, in order:

* layout ops are views (:mod:`fpga.compile.views`): no instruction;
* ``hwgen.Linear``, ``Gemm`` and a ``Conv`` whose stride equals its kernel (patches as
  rows) -> LINEAR (a following ``Gelu`` that is the only reader is fused; a linear layer
  whose large output only feeds another linear layer runs both in row tiles);
* ``Gelu`` -> GELU; ``Add`` -> ADD (a constant operand is stored in the other's layout);
  ``LayerNormalization`` over the last axis -> SET ln_eps + LAYERNORM;
* ``hwgen.Attention`` -> SET + ATTENTION per (batch, head);
* ``hwgen.MoE`` -> LINEAR gate scores, MOE_ROUTE, then per expert and chunk of tokens
  MOE_GATHER, LINEAR fc1 (+GELU), LINEAR fc2, MOE_COMBINE into Y (Edge-MoE's order:
  each expert's weights are fetched only for its routed tokens);
* anything else, or an op the hardware cannot take in the form it has (the reason is
  kept), is a :class:`~fpga.compile.ops.HostStep` run by the reference interpreter.

Each stored root gets a :class:`~fpga.compile.layout.RootLayout` when its producer is
lowered; :attr:`Lowering.checks` records which op completes which tensor elements, for the
layer-by-layer comparison of a simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwgen.errors import TargetError
from hwgen.fixedpoint import to_fixed
from hwgen.ir import Graph, Node
from hwgen.numerics.softmax import SOFTMAX_DEFAULT, scale_code

from ..isa import Op, schedule_length
from .image import linear_weight_image
from .layout import LayoutError, Matrix, RootLayout, Window, aligned_colmap, head_window, row_runs, window
from .ops import (AttentionOp, CombineOp, EngineOp, FillOp, GatherOp, HostStep, LayerNormOp, LinearOp, MoeRouteOp,
                  SetOp, WeightBlock, WordwiseOp, eps_code_checked)
from .roots import Roots, analyse_roots, natural_ids

__all__ = ["Lowering", "Check", "lower"]

#: MoE normalisations the routing unit computes identically (hwgen.numerics.topk).
_SAME_NORM = {"softmax_topk_renorm": "topk_then_softmax"}


@dataclass
class Check:
    """After op ``op`` the elements ``elems`` (flat) of ``tensor`` are at ``phys`` of ``mat``."""

    op: int
    tensor: str
    mat: Matrix
    elems: np.ndarray
    phys: np.ndarray


class _Fallback(Exception):
    """This node runs on the host; the message says why."""


class Lowering:
    """State of one lowering (see the module docstring).

    Members
    -------
    ops : list of EngineOp and HostStep
    layouts : dict root tensor -> RootLayout
    views : dict tensor -> View
    weights : list of WeightBlock
    consts : list of Matrix (kind ``"const"``)
    checks : list of Check
    host_reasons : dict node name -> why it runs on the host

    ``roots`` (:func:`fpga.compile.roots.analyse_roots` of ``g``, computed when not given)
    may be shared by lowerings of one hardware graph for several configurations: it
    depends on the graph alone, and a lowering copies what it changes.
    """

    def __init__(self, g: Graph, config, *, tile_budget: float = 0.5, cost_only: bool = False,
                 roots: Roots | None = None):
        self.g, self.c = g, config
        self.cost_only = cost_only  # weight codes and images are not computed, only their sizes
        self.lanes = config.lanes
        self.act, self.wfmt = config.act_fmt, config.weight_fmt
        self.pad = config.mac_cols
        self.capacity = config.buffer_words
        self.tile_words = max(1, int(self.capacity * tile_budget))
        self.ops: list[EngineOp | HostStep] = []
        self.layouts: dict[str, RootLayout] = {}
        self.weights: list[WeightBlock] = []
        self.consts: list[Matrix] = []
        self.checks: list[Check] = []
        self.host_reasons: dict[str, str] = {}
        self.host_nodes: set[str] = set()
        self.done: set[str] = set()  # nodes lowered together with an earlier one
        self.skipped_checks: dict[str, str] = {}
        roots = analyse_roots(g) if roots is None else roots  # read-only: what changes is copied
        self.cons, self.prod = roots.consumers, roots.producers
        self.view_nodes = set(roots.view_nodes)
        self.views = dict(roots.views)
        self.producer: dict[str, Node] = dict(roots.producer)  # root -> the node that writes it
        self.concat_fills = roots.concat_fills
        self.runs = roots.runs
        self._uid = 0
        self._viewers: dict[str, list[str]] | None = None

    # --- names, matrices ------------------------------------------------------------
    def fresh(self, stem: str) -> str:
        self._uid += 1
        return f"{stem}#{self._uid}"

    def matrix(self, name: str, rows: int, words: int, kind: str = "chip", **kw) -> Matrix:
        return Matrix(name, rows, words, self.lanes, kind, fmt_bits=self.act.width, **kw)

    def words_for(self, cols: int) -> int:
        return -(-max(cols, 1) // self.pad) * self.pad // self.lanes

    def const_matrix(self, name: str, codes: np.ndarray) -> Matrix:
        """A constant matrix ``[rows, words * lanes]`` of activation codes."""
        rows, cols = codes.shape
        m = self.matrix(name, rows, cols // self.lanes, "const", data=codes)
        self.consts.append(m)
        return m

    # --- views and roots -------------------------------------------------------------
    def _natural(self, node: Node) -> tuple[int, int] | None:
        """Rows and columns of the matrix an engine op writes for ``node``'s output."""
        t = self.g.tensors[node.outputs[0]]
        if node.op == "Conv":
            b, cout = t.shape[0], t.shape[1]
            return int(np.prod(t.shape, dtype=np.int64)) // cout, cout
        shape = t.shape or (1,)
        return int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1])

    def _natural_ids(self, node: Node, ids: np.ndarray) -> np.ndarray:
        """An output's element ids arranged as the engine's ``[rows, cols]`` matrix."""
        return natural_ids(node, ids)

    # --- layouts -------------------------------------------------------------------------
    def new_layout(self, root: str, rows: int, cols: int, *, colmap: np.ndarray | None = None,
                   words: int | None = None, natural: tuple[np.ndarray, np.ndarray] | None = None,
                   kind: str = "chip") -> RootLayout:
        """Create the matrix of ``root`` (``rows x cols`` logical), identity or given columns."""
        if colmap is None:
            colmap, width = aligned_colmap(cols, self.runs.get(root, []), self.lanes, self.pad)
            words = width // self.lanes
        elif words is None:
            words = self.words_for(int(colmap.max()) + 1)
        size = self.g.tensors[root].size
        if natural is None:
            e = np.arange(size, dtype=np.int64)
            mrow, mcol = e // cols, e % cols
        else:
            mrow, mcol = natural
        mat = self.matrix(root, rows, words, kind)
        lay = RootLayout(mat, mrow, mcol, np.asarray(colmap, dtype=np.int64))
        self.layouts[root] = lay
        return lay

    def placement(self, t: str) -> tuple[Matrix, np.ndarray]:
        """Matrix and physical element indices (``t``'s shape) of a stored tensor (an input or
        a host result without a layout yet gets the row-major one)."""
        v = self.views[t]
        lay = self.layouts.get(v.root)
        if lay is None and self._host_written(v.root):
            rt = self.g.tensors[v.root]
            shape = rt.shape or (1,)
            lay = self.new_layout(v.root, int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1]),
                                  kind="input" if v.root in self.g.inputs else "host")
        if lay is None:
            raise LayoutError(f"{t} is not stored yet")
        return lay.matrix, lay.phys[v.ids]

    def _host_written(self, root: str) -> bool:
        """A root the host writes: a graph input or the result of a host step."""
        if root in self.g.inputs:
            return True
        p = self.producer.get(root)
        return p is not None and p.name in self.host_nodes

    def operand(self, t: str, ids2d: np.ndarray | None = None, runs: bool = False) -> Window:
        """``t`` (or the ids ``ids2d`` of its root, as ``[M, K]``) as a window; a graph input or
        a host-written root without a layout yet adopts the operand's arrangement."""
        v = self.views[t]
        ids = v.ids if ids2d is None else ids2d
        ids = ids.reshape(-1, ids.shape[-1] if ids.ndim else 1)
        if v.root not in self.layouts:
            self._adopt(v.root, ids)
        lay = self.layouts[v.root]
        try:
            return window(lay.matrix, lay.phys[ids])
        except LayoutError:
            if not runs:
                raise
            rows, colmap = row_runs(lay.matrix, lay.phys[ids])
            return _Rows(lay.matrix, rows, colmap)

    def _adopt(self, root: str, ids: np.ndarray) -> None:
        """Lay out an input or host-written root: as the operand ``ids [M, K]`` reads it if
        that covers each element once, else row-major."""
        t = self.g.tensors[root]
        kind = "input" if root in self.g.inputs else "host"
        flat = ids.reshape(-1)
        m, k = ids.shape
        if flat.size == t.size and _each_once(flat, t.size):
            mrow, mcol = np.empty(t.size, np.int64), np.empty(t.size, np.int64)
            mrow[flat] = np.repeat(np.arange(m), k)
            mcol[flat] = np.tile(np.arange(k), m)
            self.new_layout(root, m, k, natural=(mrow, mcol), kind=kind)
        else:
            rows, cols = (int(np.prod(t.shape[:-1], dtype=np.int64)), int(t.shape[-1])) if t.shape else (1, 1)
            self.new_layout(root, rows, cols, kind=kind)

    def out_window(self, node: Node, root_rows: int | None = None) -> Window:
        """The window (rows in any order: see ``full_rows``) an op writes for ``node``'s output."""
        return self._out(node, runs=True)

    def _out(self, node: Node, runs: bool) -> Window:
        """The window an op writes for ``node``'s (first) output, creating its layout."""
        o = node.outputs[0]
        v = self.views[o]
        if v.root not in self.layouts:
            t = self.g.tensors[v.root]
            if v.root == o:
                rows, cols = self._natural(node)
                nat_ids = self._natural_ids(node, np.arange(t.size, dtype=np.int64).reshape(t.shape))
                mrow, mcol = np.empty(t.size, np.int64), np.empty(t.size, np.int64)
                mrow[nat_ids.reshape(-1)] = np.repeat(np.arange(rows), cols)
                mcol[nat_ids.reshape(-1)] = np.tile(np.arange(cols), rows)
                self.new_layout(o, rows, cols, natural=(mrow, mcol))
            else:
                shape = t.shape or (1,)
                self.new_layout(v.root, int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1]))
        lay = self.layouts[v.root]
        phys = lay.phys[self._natural_ids(node, v.ids)]
        try:
            return window(lay.matrix, phys)
        except LayoutError:
            if not runs:
                raise
            rows, colmap = row_runs(lay.matrix, phys)
            return _Rows(lay.matrix, rows, colmap)

    def check_after(self, t: str, win_rows: slice | None = None) -> None:
        """Record that the last op completes tensor ``t`` (or rows ``win_rows`` of its
        ``[rows, cols]`` arrangement)."""
        v = self.views[t]
        lay = self.layouts[v.root]
        ids = v.ids.reshape(-1, v.ids.shape[-1] if v.ids.ndim else 1)
        elems = np.arange(v.ids.size, dtype=np.int64).reshape(ids.shape)
        if win_rows is not None:
            ids, elems = ids[win_rows], elems[win_rows]
        self.checks.append(Check(len(self.ops) - 1, t, lay.matrix, elems.reshape(-1), lay.phys[ids.reshape(-1)]))

    # --- constants -------------------------------------------------------------------------
    def codes(self, t: str, weight: bool = False) -> np.ndarray:
        data = self.g.tensors[t].data
        if weight and self.cost_only:  # only the shape matters for the program (no memory: a broadcast zero)
            return np.broadcast_to(np.int64(0), np.shape(data))
        fmt = self.g.tensors[t].fmt or (self.wfmt if weight else self.act)
        return to_fixed(np.asarray(data, dtype=np.float64), fmt)

    def weight_block(self, name: str, w_codes: np.ndarray, b_codes: np.ndarray | None, x: Window, y: Window) -> WeightBlock:
        k_phys, n_phys = x.mat.row_elems, y.mat.row_elems
        if self.cost_only:  # the size of linear_weight_image's result, without packing it
            cols, word_bits = self.c.mac_cols, self.c.mem_port_bits
            words_per_tile = -(-cols * self.act.width // word_bits) + k_phys * -(-cols * self.wfmt.width // word_bits)
            wb = WeightBlock(name, np.zeros(0, dtype=np.uint8), nbytes=n_phys // cols * words_per_tile * word_bits // 8)
            self.weights.append(wb)
            return wb
        wp = np.zeros((k_phys, n_phys), dtype=np.int64)
        wp[np.ix_(x.colmap, y.colmap)] = w_codes
        bp = np.zeros(n_phys, dtype=np.int64)
        if b_codes is not None:
            bp[y.colmap] = b_codes
        blob = linear_weight_image(wp, bp, self.c.mac_cols, self.wfmt.width, self.act.width, self.c.mem_port_bits)
        wb = WeightBlock(name, np.frombuffer(blob, dtype=np.uint8))
        self.weights.append(wb)
        return wb

    # --- the walk ------------------------------------------------------------------------
    def run(self) -> "Lowering":
        for n in self.g.nodes:
            if n.name in self.done or n.name in self.view_nodes:
                continue
            handler = getattr(self, f"_lower_{n.op}", None) if n.domain in ("", "hwgen") else None
            reason = None
            if handler is None:
                reason = f"no engine runs {n.domain + '.' if n.domain else ''}{n.op}"
            elif (odd := self._foreign_format(n)) is not None:
                reason = odd
            else:
                mark = (len(self.ops), len(self.checks), len(self.weights), len(self.consts), set(self.layouts),
                        set(self.done))
                try:
                    handler(n)
                except (_Fallback, LayoutError) as e:
                    reason = str(e)
                    self.ops, self.checks = self.ops[:mark[0]], self.checks[:mark[1]]
                    self.weights, self.consts = self.weights[:mark[2]], self.consts[:mark[3]]
                    for r in set(self.layouts) - mark[4]:
                        del self.layouts[r]
                    self.done = mark[5]
            if reason is not None:
                self._host(n, reason)
        self._finish_host_steps()
        return self

    def _foreign_format(self, n: Node) -> str | None:
        """Why ``n`` cannot run on an engine, which computes in the configuration's two
        formats only: a tensor it reads or writes, the stored tensor of a view it reads, or a
        view of what it writes (a view shares its root's codes) has another format (a
        quantized model's grid or an integer range needs it: ``hwgen.passes.formats``);
        else None."""
        names = [t for t in list(n.inputs) + list(n.outputs) if t]
        names += [self.views[t].root for t in names if t in self.views]
        if self._viewers is None:  # root -> the tensors that are views of it (they share its codes)
            self._viewers = {}
            for t, v in self.views.items():
                self._viewers.setdefault(v.root, []).append(t)
        names += [t for o in n.outputs if o for t in self._viewers.get(o, ())]
        for t in names:
            fmt = self.g.tensors[t].fmt
            if fmt is not None and fmt != self.act and fmt != self.wfmt:
                return (f"tensor {t!r} is in {fmt}, not the accelerator's {self.act} / {self.wfmt} (a quantization "
                        f"grid or an integer range needs it)")
        return None

    def _host(self, n: Node, reason: str) -> None:
        outs = [o for o in n.outputs if o]
        size = sum(self.g.tensors[o].size for o in outs)
        self.ops.append(HostStep(n.name, f"{n.domain + '.' if n.domain else ''}{n.op}", reason=reason, size=size))
        self.host_reasons[n.name] = reason
        self.host_nodes.add(n.name)

    def _finish_host_steps(self) -> None:
        """Fill each host step's reads (stored roots it needs) and writes (roots it stores)."""
        for step in self.ops:
            if not isinstance(step, HostStep):
                continue
            node = next(n for n in self.g.nodes if n.name == step.node)
            for i in node.inputs:
                if not i or self.g.tensors[i].is_const or i not in self.views:
                    continue
                r = self.views[i].root
                if r in self.layouts and self.layouts[r].matrix.kind == "chip":
                    if self.layouts[r].matrix not in step.reads:
                        step.reads.append(self.layouts[r].matrix)
            for r, p in self.producer.items():
                if p is node and r in self.layouts and self.layouts[r].matrix not in step.writes:
                    step.writes.append(self.layouts[r].matrix)

    # --- node handlers ----------------------------------------------------------------
    def _linear_parts(self, n: Node):
        g = self.g
        if n.op == "Linear":
            x, w = n.inputs[0], n.inputs[1]
            b = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
            wc = self.codes(w, weight=True)
            bc = self.codes(b).reshape(-1) if b else None
            return x, wc, bc, None
        if n.op == "Gemm":
            a, bname = n.inputs[0], n.inputs[1]
            if int(n.attrs.get("transA", 0)) or float(n.attrs.get("alpha", 1.0)) != 1.0 or float(n.attrs.get("beta", 1.0)) != 1.0:
                raise _Fallback("Gemm with transA or alpha/beta != 1 is not a LINEAR")
            if not g.tensors[bname].is_const:
                raise _Fallback("Gemm with a run-time B is not a LINEAR")
            wc = self.codes(bname, weight=True)
            wc = wc.T if int(n.attrs.get("transB", 0)) else wc
            bc = None
            if len(n.inputs) > 2 and n.inputs[2]:
                ct = g.tensors[n.inputs[2]]
                if not ct.is_const:
                    raise _Fallback("Gemm with a run-time C is not a LINEAR")
                cc = self.codes(n.inputs[2])
                if cc.size == 1:
                    bc = np.full(wc.shape[1], int(cc.reshape(-1)[0]), np.int64)
                elif cc.size == wc.shape[1] and (cc.ndim == 1 or cc.shape[0] == 1):
                    bc = cc.reshape(-1)
                else:
                    raise _Fallback("Gemm's C is not a bias over the output columns")
            return a, wc, bc, None
        if n.op == "Conv":
            x, wname = n.inputs[0], n.inputs[1]
            if not g.tensors[wname].is_const:
                raise _Fallback("Conv with a run-time weight")
            wt = g.tensors[wname]
            ks = list(n.attrs.get("kernel_shape", wt.shape[2:]))
            if len(wt.shape) != 4 or int(n.attrs.get("group", 1)) != 1:
                raise _Fallback("only 2-D, group=1 convolutions are a LINEAR")
            if list(n.attrs.get("strides", [1, 1])) != ks or any(int(p) for p in n.attrs.get("pads", [0] * 4)) \
                    or any(int(d) != 1 for d in n.attrs.get("dilations", [1, 1])) \
                    or n.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
                raise _Fallback("a convolution is a LINEAR over patches only when its stride equals its kernel, "
                                "without padding or dilation")
            xs = g.tensors[x].shape
            if xs[2] % ks[0] or xs[3] % ks[1]:
                raise _Fallback("the image is not a whole number of patches")
            cout = wt.shape[0]
            wc = self.codes(wname, weight=True).reshape(cout, -1).T
            bc = self.codes(n.inputs[2]).reshape(-1) if len(n.inputs) > 2 and n.inputs[2] else None
            ids = self.views[x].ids
            b_, c_, h_, w_ = ids.shape
            kh, kw = ks
            patches = ids.reshape(b_, c_, h_ // kh, kh, w_ // kw, kw).transpose(0, 2, 4, 1, 3, 5).reshape(-1, c_ * kh * kw)
            return x, wc, bc, patches
        raise _Fallback(f"{n.op} is not a linear layer")

    def _emit_linear(self, node: Node, x: Window, y: Window, wc, bc, gelu: bool, name: str) -> LinearOp:
        if not x.full_rows or not y.full_rows:
            raise LayoutError("LINEAR reads and writes consecutive rows")
        if x.mat.row_elems > self.c.linear_max_k:
            raise _Fallback(f"K = {x.mat.row_elems} exceeds linear_max_k = {self.c.linear_max_k}")
        if y.mat.row_elems % self.c.mac_cols:
            raise LayoutError("output width is not a multiple of the MAC columns")
        if x.rows != y.rows:
            raise LayoutError("input and output rows differ")
        wb = self.weight_block(name, wc, bc, x, y)
        op = LinearOp(node.name, x, y, wb, gelu=gelu, k_logical=wc.shape[0], n_logical=wc.shape[1])
        self.ops.append(op)
        return op

    def _fusable_gelu(self, t: str) -> Node | None:
        users = self.cons.get(t, [])
        if len(users) == 1 and users[0].op == "Gelu" and not users[0].domain and t not in self.g.outputs \
                and self.views[t].root == t:
            return users[0]
        return None

    def _lower_Linear(self, n: Node) -> None:
        x, wc, bc, ids = self._linear_parts(n)
        xw = self.operand(x, ids, runs=True)
        gelu_node = self._fusable_gelu(n.outputs[0])
        out_node = gelu_node if gelu_node is not None else n
        nxt = self._tile_partner(out_node)
        if nxt is not None:
            self._lower_mlp_tiled(n, xw, wc, bc, gelu_node, nxt)
            return
        if gelu_node is not None:
            self.done.add(gelu_node.name)
            self.producer[gelu_node.outputs[0]] = gelu_node
            self.skipped_checks[n.outputs[0]] = "fused into the next GELU (the hardware never stores it)"
        y = self.out_window(out_node)
        room = int(0.9 * self.capacity) - y.mat.size
        if not xw.full_rows or not y.full_rows:  # e.g. the class token of each image of a batch
            xr, yr = _row_list(xw), _row_list(y)
            block = None
            for a, b in _runs(xr, yr):
                op = self._emit_linear(n, Window(xw.mat, int(xr[a]), b - a, xw.colmap),
                                       Window(y.mat, int(yr[a]), b - a, y.colmap), wc, bc, gelu_node is not None,
                                       self.fresh(f"w:{n.name}"))
                if block is not None:
                    self.weights.pop()
                    op.weights = block
                block = op.weights
        elif xw.mat.size + y.mat.size <= int(0.9 * self.capacity) or xw.mat.kind == "chip":
            self._emit_linear(n, xw, y, wc, bc, gelu_node is not None, self.fresh(f"w:{n.name}"))
        else:  # an input too large for the buffer with its result: LOAD and compute it in row blocks
            t = room // xw.mat.words
            t -= t % self.c.mac_rows if t >= self.c.mac_rows else 0
            if t < 1:
                raise _Fallback(f"{n.op}: its output alone fills the buffer")
            block = None
            for r0 in range(0, xw.rows, t):
                m = min(t, xw.rows - r0)
                part = self.matrix(self.fresh(f"{xw.mat.name}[{xw.row0 + r0}:{xw.row0 + r0 + m}]"), m, xw.mat.words,
                                   xw.mat.kind)
                part.meta["parent"] = (xw.mat, xw.row0 + r0)
                op = self._emit_linear(n, Window(part, 0, m, xw.colmap), Window(y.mat, y.row0 + r0, m, y.colmap), wc, bc,
                                       gelu_node is not None, self.fresh(f"w:{n.name}"))
                if block is not None:
                    self.weights.pop()
                    op.weights = block
                block = op.weights
        self.check_after(out_node.outputs[0])

    _lower_Gemm = _lower_Linear
    _lower_Conv = _lower_Linear

    def _tile_partner(self, out_node: Node) -> Node | None:
        """The linear layer that alone reads ``out_node``'s large output (an MLP's fc2)."""
        t = out_node.outputs[0]
        if t in self.g.outputs or self.views[t].root != t:
            return None
        users = self.cons.get(t, [])
        if len(users) != 1 or users[0].op != "Linear" or users[0].domain != "hwgen" or users[0].inputs[0] != t:
            return None
        rows, cols = self._natural(out_node)
        if rows * self.words_for(cols) <= self.tile_words:
            return None
        return users[0]

    def _lower_mlp_tiled(self, n1: Node, xw: Window, wc1, bc1, gelu_node: Node | None, n2: Node) -> None:
        """fc1 (+GELU) and fc2 in row tiles: the hidden tensor never exists whole."""
        h = (gelu_node or n1).outputs[0]
        hrows, hcols = self._natural(gelu_node or n1)
        hwords = self.words_for(hcols)
        t = max(1, self.tile_words // hwords)
        if t >= self.c.mac_rows:
            t -= t % self.c.mac_rows
        _, wc2, bc2, _ = self._linear_parts(n2)
        yw = self.out_window(n2)
        if not yw.full_rows or yw.rows != xw.rows:
            raise LayoutError("the MLP's output is not stored as consecutive rows")
        w1 = self.fresh(f"w:{n1.name}")
        w2 = self.fresh(f"w:{n2.name}")
        blocks = {}
        colmap_h = np.arange(hcols, dtype=np.int64)
        hid = np.arange(self.g.tensors[h].size, dtype=np.int64).reshape(hrows, hcols)
        for r0 in range(0, hrows, t):
            m = min(t, hrows - r0)
            hm = self.matrix(self.fresh(f"{h}[{r0}:{r0 + m}]"), m, hwords)
            hw_ = Window(hm, 0, m, colmap_h)
            xt = Window(xw.mat, xw.row0 + r0, m, xw.colmap)
            yt = Window(yw.mat, yw.row0 + r0, m, yw.colmap)
            for key, (node, a, b, wc, bc, gelu, name) in (("1", (n1, xt, hw_, wc1, bc1, gelu_node is not None, w1)),
                                                           ("2", (n2, hw_, yt, wc2, bc2, False, w2))):
                op = self._emit_linear(node, a, b, wc, bc, gelu, name)
                if key in blocks:  # one weight image per layer, shared by the tiles
                    self.weights.pop()
                    op.weights = blocks[key]
                blocks.setdefault(key, op.weights)
                if key == "1":
                    self.checks.append(Check(len(self.ops) - 1, h, hm, hid[r0:r0 + m].reshape(-1),
                                             (np.arange(m)[:, None] * hm.row_elems + colmap_h[None]).reshape(-1)))
        self.done.update({n2.name} | ({gelu_node.name} if gelu_node is not None else set()))
        if gelu_node is not None:
            self.skipped_checks[n1.outputs[0]] = "fused into the next GELU (the hardware never stores it)"
        self.check_after(n2.outputs[0])

    def _wordwise_out(self, n: Node, src: Window) -> Window:
        """Output layout of an elementwise op: the source's rows and columns."""
        o = n.outputs[0]
        if self.views[o].root != o:
            raise LayoutError("an elementwise result cannot be stored inside another tensor")
        t = self.g.tensors[o]
        if t.size != src.rows * len(src.colmap):
            raise LayoutError("elementwise output and input differ in size")
        lay = self.new_layout(o, src.rows, len(src.colmap), colmap=src.colmap, words=src.mat.words)
        if not src.full_rows:
            raise LayoutError("elementwise ops read consecutive rows")
        return window(lay.matrix, lay.phys.reshape(src.rows, -1))

    def _lower_Gelu(self, n: Node) -> None:
        x = self.operand(n.inputs[0])
        y = self._wordwise_out(n, x)
        self.ops.append(WordwiseOp(n.name, Op.GELU, [x], y))
        self.check_after(n.outputs[0])

    def _lower_Add(self, n: Node) -> None:
        g = self.g
        a, b = n.inputs[:2]
        ta, tb, to = g.tensors[a], g.tensors[b], g.tensors[n.outputs[0]]
        if ta.fmt is None or tb.fmt is None or to.fmt is None:
            raise _Fallback("integer Add")
        if ta.is_const and tb.is_const:
            raise _Fallback("constant Add")
        if ta.is_const or tb.is_const:
            var, const = (b, a) if ta.is_const else (a, b)
            if tuple(g.tensors[var].shape) != tuple(to.shape):
                raise _Fallback("Add broadcasts the activation")
            xw = self.operand(var)
            full = np.broadcast_to(np.asarray(g.tensors[const].data, dtype=np.float64), to.shape)
            codes = to_fixed(full, g.tensors[const].fmt).reshape(xw.rows, -1)
            packed = np.zeros((xw.rows, xw.mat.row_elems), dtype=np.int64)
            packed[:, xw.colmap] = codes
            cm = self.const_matrix(self.fresh(f"c:{const}"), packed)
            cw = Window(cm, 0, xw.rows, xw.colmap)
            srcs = [xw, cw] if var == a else [cw, xw]
        else:
            if tuple(ta.shape) != tuple(tb.shape) or tuple(ta.shape) != tuple(to.shape):
                raise _Fallback("Add with broadcasting between activations")
            aw, bw = self.operand(a), self.operand(b)
            if aw.mat.words != bw.mat.words or not np.array_equal(aw.colmap, bw.colmap):
                raise LayoutError("the two operands of Add are stored in different layouts")
            srcs = [aw, bw]
        y = self._wordwise_out(n, srcs[0] if not srcs[0].mat.kind == "const" else srcs[1])
        self.ops.append(WordwiseOp(n.name, Op.ADD, srcs, y))
        self.check_after(n.outputs[0])

    def _lower_LayerNormalization(self, n: Node) -> None:
        g = self.g
        x = n.inputs[0]
        rank = len(g.tensors[x].shape)
        if int(n.attrs.get("axis", -1)) % rank != rank - 1 or len([o for o in n.outputs if o]) > 1:
            raise _Fallback("LayerNorm over other than the last axis, or with mean/inv-std outputs")
        d = int(g.tensors[x].shape[-1])
        if d > self.c.max_row:
            raise _Fallback(f"LayerNorm row of {d} exceeds max_row = {self.c.max_row}")
        gamma = n.inputs[1]
        beta = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        if not g.tensors[gamma].is_const or (beta and not g.tensors[beta].is_const):
            raise _Fallback("LayerNorm with run-time scale or bias")
        if g.tensors[gamma].size != d or (beta and g.tensors[beta].size != d):
            raise _Fallback("LayerNorm scale/bias are not one value per element")
        xw = self.operand(x)
        if not np.array_equal(xw.colmap, np.arange(d)) or not xw.full_rows:
            raise LayoutError("LayerNorm reads a row's elements from column 0 on")
        sw = -(-d // self.lanes)
        gb = np.zeros((2, sw * self.lanes), dtype=np.int64)
        gb[0, :d] = self.codes(gamma).reshape(-1)
        if beta:
            gb[1, :d] = self.codes(beta).reshape(-1)
        gbm = self.const_matrix(self.fresh(f"c:{gamma}+beta"), gb)
        y = self._wordwise_out(n, xw)
        eps = float(n.attrs.get("epsilon", 1e-5))
        try:
            code = eps_code_checked(eps, g.tensors[x].fmt.frac_bits)
        except ValueError as e:
            raise _Fallback(str(e)) from e
        self.ops.append(LayerNormOp(n.name, xw, y, gbm, d, code))
        self.check_after(n.outputs[0])

    def _lower_Attention(self, n: Node) -> None:
        g = self.g
        if n.domain != "hwgen":
            raise _Fallback("ONNX Attention is fused to hwgen.Attention first")
        if len([i for i in n.inputs if i]) != 3:
            raise _Fallback("attention with a bias/mask input")
        q, kt, v = n.inputs[:3]
        qs, ks, vs = (g.tensors[i].shape for i in (q, kt, v))
        d, sq, sk = qs[-1], qs[-2], ks[-1]
        if vs[-1] != d:
            raise _Fallback(f"value width {vs[-1]} differs from the head dimension {d}")
        if d > self.c.attention_head_dim:
            raise _Fallback(f"head dimension {d} exceeds attention_head_dim = {self.c.attention_head_dim}")
        if sk > self.c.max_keys:
            raise _Fallback(f"{sk} keys exceed max_keys = {self.c.max_keys}")
        try:
            code = scale_code(float(n.attrs.get("scale", 1.0)), SOFTMAX_DEFAULT)
        except ValueError as e:
            raise _Fallback(str(e)) from e
        o = n.outputs[0]
        vo = self.views[o]
        if vo.root not in self.layouts:
            rt = g.tensors[vo.root]
            shape = rt.shape or (1,)
            self.new_layout(vo.root, int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1]))
        heads = []
        for idx in np.ndindex(*qs[:-2]):
            qm, qp = self.placement(q)
            km, kp = self.placement(kt)
            vm, vp = self.placement(v)
            om, op_ = self.placement(o)
            qw, kw, vw, ow = (head_window(qm, qp[idx]), head_window(km, np.swapaxes(kp[idx], -1, -2)),
                              head_window(vm, vp[idx]), head_window(om, op_[idx]))
            if qw.step * qm.words != kw.step * km.words or qw.step * qm.words != vw.step * vm.words:
                raise LayoutError("Q, K and V rows are not evenly spaced alike (one stride register)")
            heads.append((idx, qw, kw, vw, ow))
        for idx, qw, kw, vw, ow in heads:
            self.ops.append(AttentionOp(n.name, qw, kw, vw, ow, d, code, head=",".join(map(str, idx))))
        self.check_after(o)

    def _lower_Concat(self, n: Node) -> None:
        c = n.outputs[0]
        if c not in self.concat_fills:
            raise _Fallback("its inputs cannot all be stored inside it (only linear-layer outputs and whole "
                            "constant rows can)")
        if c not in self.layouts:
            shape = self.g.tensors[c].shape
            self.new_layout(c, int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1]))
        lay = self.layouts[c]
        for const, where in self.concat_fills[c]:
            codes = self.codes(const).reshape(-1, len(lay.colmap))
            rows = lay.mrow[where].reshape(-1, len(lay.colmap))[:, 0]
            for a, b in _runs(rows, rows):
                packed = np.zeros((b - a, lay.matrix.row_elems), dtype=np.int64)
                packed[:, lay.colmap] = codes[a:b]
                cm = self.const_matrix(self.fresh(f"c:{const}"), packed)
                self.ops.append(FillOp(n.name, cm, Window(lay.matrix, int(rows[a]), b - a, lay.colmap)))
        self.check_after(c)

    def _lower_MoE(self, n: Node) -> None:
        g, c = self.g, self.c
        ins = list(n.inputs) + [""] * (7 - len(n.inputs))
        x, gate_w, gate_b, w1, b1, w2, b2 = ins[:7]
        if len([i for i in n.inputs if i]) > 7 or len(n.inputs) > 7:
            raise _Fallback("gated (SwiGLU/GeGLU) experts need an elementwise product the accelerator does not have")
        act = n.attrs.get("activation", "gelu")
        norm = n.attrs.get("normalization", "softmax_then_topk")
        k = int(n.attrs.get("top_k", 1))
        if act not in ("gelu", "gelu_tanh", "identity"):
            raise _Fallback(f"expert activation {act!r} (the linear unit fuses GELU only)")
        if _SAME_NORM.get(norm, norm) != _SAME_NORM.get(c.moe_normalization, c.moe_normalization):
            raise TargetError(f"node {n.name!r} (hwgen.MoE): the model's gate normalisation is {norm!r}, the "
                              f"accelerator's routing unit computes {c.moe_normalization!r}; compile with "
                              f"--set moe_normalization={norm}")
        if k != c.moe_k:
            raise TargetError(f"node {n.name!r} (hwgen.MoE): the model picks top-{k} experts, the routing unit "
                              f"top-{c.moe_k}; compile with --set moe_k={k}")
        for name in (gate_w, w1, w2) + tuple(i for i in (gate_b, b1, b2) if i):
            if not g.tensors[name].is_const:
                raise _Fallback("the gate weight is computed at run time (bind the task with --task)")
        w1c, w2c = self.codes(w1, weight=True), self.codes(w2, weight=True)
        n_exp, dim, hid = w1c.shape
        if n_exp > c.moe_experts:
            raise TargetError(f"node {n.name!r} (hwgen.MoE): {n_exp} experts exceed moe_experts = {c.moe_experts}")
        dout = w2c.shape[2]
        gwc = self.codes(gate_w, weight=True)
        gbc = self.codes(gate_b).reshape(-1) if gate_b else None
        b1c = self.codes(b1).reshape(n_exp, hid) if b1 else None
        b2c = self.codes(b2).reshape(n_exp, dout) if b2 else None
        xw = self.operand(x)
        y = self.out_window(n)
        if not xw.full_rows or not y.full_rows or y.rows != xw.rows:
            raise LayoutError("MoE tokens are not stored as consecutive rows")
        m = xw.rows
        hwords, cols_h = self.words_for(hid), np.arange(hid, dtype=np.int64)
        per_row = xw.mat.words + 1 + hwords + y.mat.words
        t = max(1, min(m, c.max_keys, self.tile_words // per_row))
        zero = self.const_matrix(self.fresh("c:zeros"), np.zeros((y.rows, y.mat.row_elems), dtype=np.int64))
        zero.meta["zero"] = True
        self.ops.append(FillOp(n.name, zero, y))
        scores_words = self.words_for(n_exp)
        ecols = np.arange(n_exp, dtype=np.int64)
        gate_block = fc1 = fc2 = None
        fc1_blocks, fc2_blocks = {}, {}
        for g0 in range(0, m, c.max_keys):
            mg = min(c.max_keys, m - g0)
            xg = Window(xw.mat, xw.row0 + g0, mg, xw.colmap)
            yg = Window(y.mat, y.row0 + g0, mg, y.colmap)
            sm = self.matrix(self.fresh(f"{n.name}.scores"), mg, scores_words)
            sw = Window(sm, 0, mg, ecols)
            op = self._emit_linear(n, xg, sw, gwc, gbc, False, self.fresh(f"w:{n.name}.gate"))
            if gate_block is not None:
                self.weights.pop()
                op.weights = gate_block
            gate_block = op.weights
            table = self.matrix(self.fresh(f"{n.name}.route"), mg, 1)
            sched = self.matrix(self.fresh(f"{n.name}.schedule"), schedule_length(mg, k), 1)
            table.meta["pinned"] = sched.meta["pinned"] = True  # their addresses live in registers
            self.ops.append(MoeRouteOp(n.name, sw, table, sched, n_exp))
            self.ops.append(SetOp(n.name, "moe_cursor", 1, sched))
            self.ops.append(SetOp(n.name, "moe_end", schedule_length(mg, k), sched))
            avg = mg * k / n_exp  # tokens an expert gets under uniform routing (for estimates only)
            for e in range(n_exp):
                for chunk in range(-(-mg // t)):
                    expect = float(min(t, max(0.0, avg - chunk * t)))
                    gm = self.matrix(self.fresh(f"{n.name}.x{e}"), t, xw.mat.words)
                    lm = self.matrix(self.fresh(f"{n.name}.list{e}"), t, 1)
                    hm = self.matrix(self.fresh(f"{n.name}.h{e}"), t, hwords)
                    om = self.matrix(self.fresh(f"{n.name}.y{e}"), t, y.mat.words)
                    self.ops.append(GatherOp(n.name, xg, gm, lm, table, sched, e, t, expect))
                    gw = Window(gm, 0, t, xw.colmap)
                    hw_ = Window(hm, 0, t, cols_h)
                    ow = Window(om, 0, t, y.colmap)
                    for key, blocks, a, b, wcode, bcode, gelu in (
                            ("fc1", fc1_blocks, gw, hw_, w1c[e], None if b1c is None else b1c[e], act != "identity"),
                            ("fc2", fc2_blocks, hw_, ow, w2c[e], None if b2c is None else b2c[e], False)):
                        op = self._emit_linear(n, a, b, wcode, bcode, gelu, self.fresh(f"w:{n.name}.{key}[{e}]"))
                        op.rows_from_reg, op.expect_rows = True, expect
                        if e in blocks:
                            self.weights.pop()
                            op.weights = blocks[e]
                        blocks.setdefault(e, op.weights)
                    self.ops.append(CombineOp(n.name, om, lm, yg, e, expect))
        self.check_after(n.outputs[0])


class _Rows(Window):
    """Rows of a matrix in any order (``rows[i]`` holds operand row ``i``); ``full_rows`` is False."""

    def __init__(self, mat: Matrix, rows: np.ndarray, colmap: np.ndarray):
        super().__init__(mat, int(rows[0]), len(rows), colmap, 0)
        self.row_list = rows

    @property
    def full_rows(self) -> bool:
        return False


def _row_list(w: Window) -> np.ndarray:
    return w.row_list if isinstance(w, _Rows) else w.row0 + w.step * np.arange(w.rows)


def _each_once(ids: np.ndarray, size: int) -> bool:
    """Whether ``ids`` (``size`` of them) hold each of ``0 .. size - 1`` once (O(size),
    unlike a sort or hash of ``np.unique``)."""
    if ids.size != size or (size and (ids.min() < 0 or ids.max() >= size)):
        return False
    seen = np.zeros(size, dtype=bool)
    seen[ids] = True
    return bool(seen.all())


def _runs(xr: np.ndarray, yr: np.ndarray) -> list[tuple[int, int]]:
    """Split operand rows ``0..M-1`` where either stored-row sequence stops being consecutive."""
    out, a = [], 0
    for i in range(1, len(xr) + 1):
        if i == len(xr) or xr[i] != xr[i - 1] + 1 or yr[i] != yr[i - 1] + 1:
            out.append((a, i))
            a = i
    return out


def lower(g: Graph, config, **kw) -> Lowering:
    """Lower the hardware graph ``g`` for ``config`` (see :class:`Lowering`)."""
    return Lowering(g, config, **kw).run()
