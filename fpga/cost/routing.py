"""Which experts each token of a Mixture of Experts picks, for the cycle model.

The cycles of MOE_GATHER, an expert's LINEARs and MOE_COMBINE depend on the rows each
expert gets. For a given input they are known exactly from the fixed-point reference
(``hwgen.interpret(numerics="fixed")``: the accelerator's arithmetic, bit for bit): the
gate scores of every MoE node's input and their top-k, as the routing unit computes them
(:func:`hwgen.numerics.topk.topk_codes`). Without an input the model uses the compiler's
uniform expectation (each expert ``tokens * k / E`` rows).

:func:`expert_choices` gives, per MoE node, the ``[tokens, k]`` experts in token order;
:func:`instruction_rows` walks a program set and gives each instruction the rows it sees.
"""

from __future__ import annotations

import numpy as np

from ..isa import Op

__all__ = ["expert_choices", "instruction_rows", "RowsOfInstr"]


def expert_choices(binding, feeds: dict, reference: dict | None = None) -> dict[str, np.ndarray]:
    """Per ``hwgen.MoE`` node of ``binding``: the ``[tokens, k]`` experts its tokens pick.

    ``feeds``: the program set's inputs (as ``hwgen simulate`` gives them); ``reference``:
    a fixed-point run already made (``Runtime.reference``), else one is made here.
    """
    from hwgen.fixedpoint import to_fixed
    from hwgen.interp import interpret
    from hwgen.numerics.linear import linear_codes
    from hwgen.numerics.topk import topk_codes

    g = binding.graph
    moes = [n for n in g.nodes if n.op == "MoE" and n.domain == "hwgen"]
    if not moes:
        return {}
    if reference is None:
        full = dict(feeds)
        for k, v in binding.bind.items():
            if k in g.inputs and k not in full:
                full[k] = np.array(v, dtype=np.int64)
        reference = interpret(g, {k: v for k, v in full.items() if k in g.inputs}, numerics="fixed", keep_all=True)
    out = {}
    t = g.tensors
    for n in moes:
        x, gw = n.inputs[0], n.inputs[1]
        gb = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        if not t[gw].is_const or x not in reference:
            continue
        k = int(n.attrs.get("top_k", 1))
        d = t[x].shape[-1]
        xs = to_fixed(reference[x], t[x].fmt).reshape(-1, d)
        scores = linear_codes(xs, to_fixed(t[gw].data, t[gw].fmt),
                              None if gb is None else to_fixed(t[gb].data, t[gb].fmt),
                              t[x].fmt, t[gw].fmt, None if gb is None else t[gb].fmt, t[x].fmt)
        out[n.name] = np.asarray(topk_codes(scores, k))[:, :k]
    return out


class RowsOfInstr:
    """Per instruction of a program set: ``(rows, gather ended by another expert's entry,
    experts used)`` -- the arguments :func:`fpga.cost.cycles.estimate_cycles` takes.

    With ``choices`` (from :func:`expert_choices`) the rows are the real ones: MOE_ROUTE
    ``r`` of a node covers its next ``M`` tokens; the ``c``-th MOE_GATHER of expert ``e``
    after it takes ``min(T, n_e - c * T)`` rows (``T`` = its length field), ending at the
    schedule's end when it holds the last entry; the LINEARs and the COMBINE that follow
    see the rows of that gather. Without, the uniform expectation: each expert ``M * k / E``
    rows, chunked the same way (the cycles of the expected rows, not the compiler's
    per-chunk average ``expect_rows``, which would charge every chunk a weight fetch).
    """

    def __init__(self, choices: dict[str, np.ndarray] | None = None, k: int = 2):
        self.choices = choices or {}
        self.k = k  # experts a token picks (the configuration's moe_k), for the uniform expectation
        self.token0: dict[str, int] = {}
        self.counts: np.ndarray | None = None
        self.chunk: dict[int, int] = {}
        self.rows = 0.0
        self.node = None

    @property
    def exact(self) -> bool:
        return bool(self.choices)

    def __call__(self, emitted) -> tuple[float, bool, int | None]:
        ins, node = emitted.instr, emitted.node
        ch = self.choices.get(node)
        if ins.op == Op.MOE_ROUTE:
            self.chunk, self.node = {}, node
            if ch is None:  # uniform: every expert gets M * k / E rows, gathered in chunks like real ones
                self.counts = np.full(ins.aux, ins.length * self.k / ins.aux) if ins.aux else None
                return 0.0, True, None
            t0 = self.token0.get(node, 0)
            picks = ch[t0:t0 + ins.length]
            self.token0[node] = t0 + ins.length
            self.counts = np.bincount(picks.reshape(-1), minlength=ins.aux)
            return 0.0, True, int(np.count_nonzero(self.counts))
        if ins.op == Op.MOE_GATHER:
            if self.counts is None or node != self.node:
                self.rows = emitted.expect_rows
                return self.rows, True, None
            e, t = ins.aux, ins.length
            c = self.chunk.get(e, 0)
            self.chunk[e] = c + 1
            n_e = float(self.counts[e]) if e < len(self.counts) else 0.0
            rows = max(0.0, min(t, n_e - c * t))
            last_used = max((i for i, v in enumerate(self.counts) if v), default=-1)
            at_end = e >= last_used and c * t + rows >= n_e  # moe_cursor reaches moe_end
            self.rows = float(rows)
            return self.rows, not (rows == t or at_end), None
        if (ins.op == Op.LINEAR and ins.flags & 2) or ins.op == Op.MOE_COMBINE:
            if self.counts is None:
                return emitted.expect_rows, True, None
            return self.rows, True, None
        return emitted.expect_rows, True, None


def instruction_rows(binding, choices: dict[str, np.ndarray] | None = None,
                     k: int = 2) -> list[list[tuple[float, bool, int | None]]]:
    """Per program segment of ``binding``, per instruction: :class:`RowsOfInstr`'s tuple."""
    walk = RowsOfInstr(choices, k)
    return [[walk(e) for e in seg.instrs] for seg in binding.segments if seg.kind == "program"]
