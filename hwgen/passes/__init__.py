"""Graph passes. The canonicalisation pipeline is the ordered list :data:`PIPELINE`.

Each pass is ``fn(graph) -> bool`` (changed or not), edits the graph in place, and keeps
the float results unchanged; :func:`canonicalize` re-applies the list until nothing
changes and runs the IR spec check after every pass.
"""

from __future__ import annotations

from ..ir import Graph
from .fold_constants import fold_constants, remove_identities
from .fuse_attention import fuse_attention
from .fuse_gelu import fuse_gelu
from .fuse_layernorm import fuse_layernorm
from .fuse_linear import fuse_linear
from .fuse_moe import fuse_moe

__all__ = ["PIPELINE", "canonicalize", "fold_constants", "fuse_layernorm", "fuse_gelu", "fuse_attention", "fuse_moe", "fuse_linear"]

#: The canonicalisation pipeline, in order.
PIPELINE = [
    remove_identities,
    fold_constants,
    fuse_layernorm,
    fuse_gelu,
    fuse_moe,
    fuse_attention,
]


def canonicalize(graph: Graph, passes=None, max_rounds: int = 8) -> Graph:
    """Apply ``passes`` (default :data:`PIPELINE`) until none changes the graph.

    Works on a copy; returns the new graph.
    """
    g = graph.copy()
    for _ in range(max_rounds):
        changed = False
        for p in passes or PIPELINE:
            if p(g):
                changed = True
                g.check()
        if not changed:
            break
    return g
