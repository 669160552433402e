"""The hardware graph: the canonical IR with what the FPGA target fixes at compile time.

:func:`hardware_graph` binds task inputs (integer scalars that select per-task weights,
e.g. M3ViT's gate ``gate[task]``) to a value and folds what then becomes constant,
fuses linear layers with their bias (``hwgen.Linear``: one rounding, as the linear unit
adds the bias in its accumulator) and gives every tensor the accelerator's fixed-point
formats (a quantized model's tensor whose grid they do not resolve gets a finer one and
runs on the host: :func:`hwgen.passes.formats.assign_formats`); constant scalings of
attention queries/keys become the attention's scale
(:func:`hwgen.passes.absorb_attention_scale`). ``interpret(hardware_graph(...), ...,
numerics="fixed")`` is the bit-exact
reference of what the accelerator computes.

:func:`task_inputs` finds the task inputs and how many values each takes.
"""

from __future__ import annotations

import numpy as np

from hwgen.errors import TargetError
from hwgen.ir import Graph
from hwgen.passes import canonicalize, fuse_linear
from hwgen.passes.absorb_attention_scale import absorb_attention_scale
from hwgen.passes.formats import assign_formats

__all__ = ["task_inputs", "hardware_graph"]

_PASS_THROUGH = {"Reshape", "Squeeze", "Unsqueeze", "Cast", "Identity", "Flatten"}


def task_inputs(g: Graph) -> dict[str, int | None]:
    """Integer scalar inputs -> the number of values they index (None if unknown).

    The count is the size of the axis that a ``Gather`` selects with the input (directly
    or through reshapes/casts/element picks of it).
    """
    cons = g.consumers()
    out: dict[str, int | None] = {}
    for name in g.inputs:
        t = g.tensors[name]
        if np.issubdtype(np.dtype(t.dtype), np.floating) or t.size != 1:
            continue
        count = None
        frontier, seen = [name], set()
        while frontier and count is None:
            cur = frontier.pop()
            for n in cons.get(cur, []):
                if n.name in seen:
                    continue
                seen.add(n.name)
                if n.op == "Gather" and len(n.inputs) > 1 and n.inputs[1] == cur:
                    data = g.tensors[n.inputs[0]]
                    axis = int(n.attrs.get("axis", 0)) % max(len(data.shape), 1)
                    if data.shape:
                        count = int(data.shape[axis])
                        break
                if n.op in _PASS_THROUGH or (n.op == "Gather" and n.inputs[0] == cur):
                    frontier.extend(o for o in n.outputs if o)
        out[name] = count
    return out


def hardware_graph(g: Graph, config, bind: dict[str, int] | None = None) -> Graph:
    """The graph the accelerator runs for ``config`` with inputs ``bind`` fixed.

    ``g`` should be canonical (``hwgen.canonicalize``); it is not modified.
    """
    h = g.copy()
    for name, value in (bind or {}).items():
        if name not in h.inputs:
            raise TargetError(f"cannot bind {name!r}: the model's inputs are {h.inputs}")
        t = h.tensors[name]
        t.data = np.full(t.shape, value, dtype=t.dtype)
        h.inputs = [i for i in h.inputs if i != name]
    h = canonicalize(h)
    absorb_attention_scale(h)
    fuse_linear(h)
    h.check()
    for t in h.tensors.values():
        t.fmt = None
    return assign_formats(h, act=config.act_fmt, weight=config.weight_fmt, keep_resolving=True)
