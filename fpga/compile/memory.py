"""Buffer planning: addresses for every stored matrix, spills to external memory when full.

The program is straight-line, so every use of every matrix is known before any address
is chosen (tinygrad's ``_internal_memory_planner`` idea, with spills):

1. a matrix is *resident* in one interval of ops (a *segment*) from its first to its last
   use by an engine op;
2. while the words of the segments live at some op exceed the buffer, the segment not used
   there whose next use is farthest is split around that op (its matrix is spilled:
   STOREd after its last use before, LOADed before its next use);
3. segments are placed offline, largest first, each at the lowest address free for its
   whole interval; if one does not fit (fragmentation), another segment live at the
   same time is split and placement starts over.

Then LOAD/STORE ops are inserted where data must move: a segment that starts by reading a
matrix whose value is in external memory (constants, inputs, host results, spilled
values) LOADs it; a segment that ends while its value is still needed (a later use, a
host step, a graph output) and was written since its last store STOREs it. Host steps
read their operands from external memory, so dirty operands are stored before them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwgen.errors import TargetError

from .layout import Matrix
from .ops import EngineOp, HostStep, LoadOp, StoreOp

__all__ = ["Plan", "plan_memory"]


@dataclass(eq=False)
class _Seg:
    mat: Matrix
    start: int
    end: int
    addr: int = -1


@dataclass
class Plan:
    """Result of :func:`plan_memory`.

    ``ops``: the op list with LOAD/STORE inserted; ``addr_at[i]``: matrix -> buffer word
    address for op ``i`` of ``ops``; ``orig_index[i]``: index of op ``i`` in the input list
    (None for inserted ones); ``ext``: matrix -> external byte address it needs (spills,
    outputs, host operands); ``peak_words``; ``spills``: matrices stored for lack of room.
    """

    ops: list
    addr_at: list[dict]
    orig_index: list[int | None]
    ext_needed: list[Matrix]
    peak_words: int
    spilled: list[str]


def _uses(ops) -> tuple[dict, dict]:
    chip: dict[Matrix, list[tuple[int, str]]] = {}
    host: dict[Matrix, list[tuple[int, str]]] = {}
    for i, op in enumerate(ops):
        if isinstance(op, HostStep):
            for m in op.reads:
                host.setdefault(m, []).append((i, "r"))
            for m in op.writes:
                host.setdefault(m, []).append((i, "w"))
        else:
            seen = {}
            for m, mode in op.uses():
                prev = seen.get(m)
                seen[m] = mode if prev is None else ("r" if "r" in (prev, mode) else "m" if "m" in (prev, mode) else "w")
            for m, mode in seen.items():
                chip.setdefault(m, []).append((i, mode))
    return chip, host


def plan_memory(ops: list, capacity: int, outputs: set, pinned: set | None = None) -> Plan:
    """Plan the buffer for ``ops`` (EngineOp and HostStep) in ``capacity`` words.

    ``outputs``: matrices whose final value must be in external memory; ``pinned``:
    matrices never spilled (their address is held in a register).
    """
    pinned = pinned or set()
    chip, host = _uses(ops)
    n = len(ops)
    for i, op in enumerate(ops):
        if isinstance(op, EngineOp):
            need = sum(m.size for m in {m for m, _ in op.uses()})
            if need > capacity:
                raise TargetError(f"node {op.node!r}: one {op.label} needs {need} buffer words at once, the buffer "
                                  f"holds {capacity} (raise act_buffer_bytes, or the op must be tiled)")
    segs: list[_Seg] = [_Seg(m, u[0][0], u[-1][0]) for m, u in chip.items()]
    use_idx = {m: np.array([i for i, _ in u]) for m, u in chip.items()}

    def split(seg: _Seg, t: int) -> bool:
        """Split ``seg`` around op ``t`` (not a use of it); False if it cannot be."""
        u = use_idx[seg.mat]
        u = u[(u >= seg.start) & (u <= seg.end)]
        before, after = u[u < t], u[u > t]
        if seg.mat in pinned or not len(before) or not len(after) or t in u:
            return False
        segs.append(_Seg(seg.mat, int(after[0]), seg.end))
        seg.end = int(before[-1])
        in_use[seg.end + 1:int(after[0])] -= seg.mat.size  # not resident between the two
        return True

    def live_at(t: int) -> list[_Seg]:
        return [s for s in segs if s.start <= t <= s.end]

    def victim(t: int, exclude=()) -> _Seg | None:
        best, key = None, None
        for s in live_at(t):
            if s in exclude or s.mat in pinned:
                continue
            u = use_idx[s.mat]
            if t in u:
                continue
            nxt = u[u > t]
            prev = u[u < t]
            if not len(nxt) or not len(prev) or prev[-1] < s.start or nxt[0] > s.end:
                continue
            k = (int(nxt[0]) - t, s.mat.size)
            if key is None or k > key:
                best, key = s, k
        return best

    def words_in_use() -> np.ndarray:
        """Words resident at each op."""
        bounds = np.array([(s.start, s.end + 1, s.mat.size) for s in segs], dtype=np.int64).reshape(-1, 3)
        delta = np.zeros(n + 1, dtype=np.int64)
        np.add.at(delta, bounds[:, 0], bounds[:, 2])
        np.add.at(delta, bounds[:, 1], -bounds[:, 2])
        return np.cumsum(delta)[:n]

    # 2. pressure
    in_use = words_in_use()  # kept up to date by split()
    for t in np.flatnonzero(in_use > capacity):
        t = int(t)
        while in_use[t] > capacity:  # (an earlier split may have relieved it)
            v = victim(t)
            if v is None or not split(v, t):
                raise TargetError(f"op {t} ({getattr(ops[t], 'node', '?')}): the matrices in use at once do not fit "
                                  f"the {capacity}-word buffer")
    # 3. placement
    for _attempt in range(10 * n + 10):
        order = sorted(segs, key=lambda s: (-s.mat.size, s.start))
        placed = np.zeros((4, len(order)), dtype=np.int64)  # start, end, first word, end word of those placed
        k = 0
        failed = None
        for s in order:
            if k:
                st, en, lo, hi = placed[:, :k]
                mask = (st <= s.end) & (en >= s.start)
                lo, hi = lo[mask], hi[mask]
                ordr = np.argsort(lo)
                lo, hi = lo[ordr], hi[ordr]
                addr = 0
                for a, b in zip(lo, hi):
                    if a - addr >= s.mat.size:
                        break
                    addr = max(addr, int(b))
            else:
                addr = 0
            if addr + s.mat.size > capacity:
                failed = s
                break
            s.addr = addr
            placed[:, k] = (s.start, s.end, addr, addr + s.mat.size)
            k += 1
        if failed is None:
            break
        # split the segment live in the failed one's interval whose next use is farthest
        best = None
        for t in range(failed.start, failed.end + 1):
            v = victim(t, exclude=(failed,))
            if v is not None:
                u = use_idx[v.mat]
                gap = int(u[u > t][0]) - int(u[u < t][-1])
                if best is None or (gap, v.mat.size) > best[0]:
                    best = ((gap, v.mat.size), v, t)
        if best is None or not split(best[1], best[2]):
            raise TargetError(f"the buffer ({capacity} words) is too fragmented to place {failed.mat.name} "
                              f"({failed.mat.size} words) at op {failed.start}")
    else:
        raise TargetError("buffer placement did not converge")
    peak = max((s.addr + s.mat.size for s in segs), default=0)
    return _insert_moves(ops, segs, chip, host, outputs, peak)


def _insert_moves(ops, segs, chip, host, outputs, peak) -> Plan:
    by_start: dict[int, list[_Seg]] = {}
    by_end: dict[int, list[_Seg]] = {}
    for s in segs:
        by_start.setdefault(s.start, []).append(s)
        by_end.setdefault(s.end, []).append(s)
    events: dict[Matrix, list[tuple[int, str, str]]] = {}
    for m, u in chip.items():
        events.setdefault(m, []).extend((i, mode, "chip") for i, mode in u)
    for m, u in host.items():
        events.setdefault(m, []).extend((i, mode, "host") for i, mode in u)
    for m in events:
        events[m].sort()
    chip_mode = {m: dict(u) for m, u in chip.items()}  # matrix -> {op: its use there}
    ext_valid = {m: m.kind in ("const", "input") for m in events}
    dirty = {m: False for m in events}
    ext_needed: list[Matrix] = []
    spilled: list[str] = []
    out_ops, addr_at, orig = [], [], []
    resident: dict[Matrix, int] = {}

    def needed_later(m: Matrix, i: int) -> bool:
        return m in outputs or any(j > i and (mode != "w" or where == "host") for j, mode, where in events[m])

    def emit(op, i_orig):
        out_ops.append(op)
        addr_at.append(dict(resident))
        orig.append(i_orig)

    for i, op in enumerate(ops):
        if isinstance(op, HostStep):
            for m in op.reads:
                if dirty.get(m):
                    if m not in ext_needed:
                        ext_needed.append(m)
                    emit(StoreOp(op.node, m, -1), None)
                    dirty[m], ext_valid[m] = False, True
            emit(op, i)
            for m in op.writes:
                ext_valid[m] = True
            continue
        for s in by_start.get(i, []):
            m = s.mat
            resident[m] = s.addr
            mode = chip_mode[m][i]
            if mode != "w" and ext_valid.get(m):
                if m.kind == "chip" and m not in ext_needed:
                    ext_needed.append(m)
                emit(LoadOp(op.node, m, -1), None)
        emit(op, i)
        for m, mode in op.uses():
            if mode in ("w", "m"):
                dirty[m], ext_valid[m] = True, False if mode == "w" else ext_valid[m]
                if mode == "m":
                    ext_valid[m] = False
        for s in by_end.get(i, []):
            m = s.mat
            if dirty[m] and needed_later(m, i):
                if m not in ext_needed:
                    ext_needed.append(m)
                if m not in outputs or any(j > i for j, _, w in events[m] if w == "chip"):
                    spilled.append(m.name)
                emit(StoreOp(op.node, m, -1), None)
                dirty[m], ext_valid[m] = False, True
            resident.pop(m, None)
    return Plan(out_ops, addr_at, orig, ext_needed, peak, spilled)
