"""Work that compiles of one model for many configurations share (a sweep's worker).

:func:`~fpga.compile.graph.hardware_graph` reads two fields of the configuration, the
number formats (:data:`HARDWARE_GRAPH_FIELDS`), and the storage analysis
(:func:`~fpga.compile.roots.analyse_roots`) reads the hardware graph alone. A
:class:`CompileReuse` passed to :func:`~fpga.compile.compile_graph` keeps both for the
last ``max_entries`` keys ``(canonical graph, task binding, act_fmt, weight_fmt)``
(least recently used out), so that points differing in anything else (array, buffers,
port width, ...) skip them. Neither is modified by a compile (the hardware graph is
read-only to lowering; the analysis is copied where a lowering changes it), and a test
compares every figure of a sweep with and without it.

:data:`COST_ONLY_UNREAD_FIELDS` are the configuration fields that
``compile_graph(cost_only=True)`` does not read at all (the cycle and energy report
does): configurations differing only in them have the same programs. A test records
every field a compile reads and checks this list against it.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from hwgen.ir import Graph

from .graph import hardware_graph
from .roots import Roots, analyse_roots

__all__ = ["CompileReuse", "HARDWARE_GRAPH_FIELDS", "COST_ONLY_UNREAD_FIELDS", "cost_only_key"]

#: configuration fields :func:`~fpga.compile.graph.hardware_graph` reads
HARDWARE_GRAPH_FIELDS = ("act_fmt", "weight_fmt")

#: configuration fields ``compile_graph(cost_only=True)`` does not read
COST_ONLY_UNREAD_FIELDS = frozenset({"clock_hz", "board", "weight_buffer_bytes", "attention_queries",
                                     "attention_chunk"})


def cost_only_key(config) -> tuple:
    """The fields of ``config`` a cost-only compile reads, as a hashable tuple: two
    configurations with the same key compile to the same programs."""
    return tuple((f.name, str(getattr(config, f.name))) for f in dataclasses.fields(config)
                 if f.name not in COST_ONLY_UNREAD_FIELDS)


class CompileReuse:
    """Hardware graphs and their storage analyses, kept across compiles.

    Parameters
    ----------
    max_entries : int
        Keys kept (a key: one canonical graph object, task binding and format pair). A
        hardware graph shares its constant arrays with the canonical graph: an entry
        costs its node list and the analysis' id arrays (one int64 per element of every
        non-constant tensor: ~47 MB for m3vit-edge-moe).

    Members
    -------
    hits, misses : int
        Lookups that found an entry, and those that built one.
    """

    def __init__(self, max_entries: int = 4):
        if max_entries < 1:
            raise ValueError(f"CompileReuse: max_entries must be >= 1, not {max_entries}")
        self.max_entries = max_entries
        self.hits = self.misses = 0
        self._entries: OrderedDict[tuple, tuple[Graph, Graph, Roots]] = OrderedDict()

    def prepared(self, g: Graph, config, bind: dict[str, int]) -> tuple[Graph, Roots]:
        """``(hardware_graph(g, config, bind), analyse_roots(...) of it)``, reused when the
        graph object, ``bind`` and the formats were seen (treat both as read-only)."""
        key = (id(g), tuple(sorted(bind.items())), *(str(getattr(config, f)) for f in HARDWARE_GRAPH_FIELDS))
        entry = self._entries.get(key)
        if entry is not None and entry[0] is g:  # the graph is kept in the entry: its id is not reused
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1], entry[2]
        self.misses += 1
        hg = hardware_graph(g, config, bind)
        roots = analyse_roots(hg)
        self._entries[key] = (g, hg, roots)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return hg, roots

    def clear(self) -> None:
        self._entries.clear()
