"""Stored matrices, their layouts, and the windows engines read and write.

Every value the accelerator stores is a :class:`Matrix` of ``rows x words`` buffer words
(``lanes`` activations a word, element ``(r, c)`` is lane ``c % lanes`` of word
``r * words + c // lanes``). A root tensor (:mod:`fpga.compile.views`) is stored in one
matrix through a :class:`RootLayout`: its producer maps each element to a logical matrix
position ``(row, col)`` (a linear layer's ``[tokens, features]``, a convolution's
``[patches, channels]``), and a *column map* places logical columns at physical columns.
The column map is the identity padded at the end to a multiple of the MAC array's
columns (every linear layer's output width), except where attention needs each head's
columns to start at a word (:func:`aligned_colmap`).

An engine operand is a :class:`Window`: rows ``row0, row0 + step, ...`` of a matrix and
one column map shared by all of them; :func:`window` recovers it from the physical
element indices of a tensor, or says why there is none.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Matrix", "Window", "RootLayout", "aligned_colmap", "window", "head_window", "row_runs", "LayoutError"]


class LayoutError(ValueError):
    """A tensor is not stored the way an engine can read it (the caller falls back)."""


@dataclass(eq=False)
class Matrix:
    """A block of ``rows x words`` buffer words: the unit the memory planner places.

    Members
    -------
    name : str
    rows, words : int
        Rows and words a row (the row stride).
    lanes : int
        Activations a word.
    kind : str
        ``"chip"`` (written by engines), ``"const"`` (in the image), ``"input"`` (written by
        the host before a run), ``"host"`` (written by the host between programs).
    data : numpy.ndarray or None
        ``[rows, words * lanes]`` codes of a constant (packed into the image), or the
        packed words ``[rows * words]`` when ``packed``.
    fmt_bits : int
        Bits of a code (activation width).
    """

    name: str
    rows: int
    words: int
    lanes: int
    kind: str = "chip"
    data: np.ndarray | None = None
    fmt_bits: int = 32
    packed: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Words."""
        return self.rows * self.words

    @property
    def row_elems(self) -> int:
        return self.words * self.lanes

    def __repr__(self) -> str:
        return f"Matrix({self.name!r} {self.rows}x{self.words}w {self.kind})"


@dataclass
class Window:
    """Rows ``row0 + i * step`` (``i < rows``) of ``mat``, logical column ``k`` at physical ``colmap[k]``."""

    mat: Matrix
    row0: int
    rows: int
    colmap: np.ndarray
    step: int = 1

    @property
    def word0(self) -> int:
        """Word offset of the first row in the matrix."""
        return self.row0 * self.mat.words

    @property
    def full_rows(self) -> bool:
        """Consecutive rows (step 1)."""
        return self.step == 1 or self.rows <= 1


@dataclass
class RootLayout:
    """Where each element of a root tensor lives in its matrix.

    ``mrow[e]``, ``mcol[e]``: logical matrix position of root element ``e``; ``colmap``:
    logical column -> physical column; ``phys[e]``: flat physical element index.
    """

    matrix: Matrix
    mrow: np.ndarray
    mcol: np.ndarray
    colmap: np.ndarray

    @functools.cached_property
    def phys(self) -> np.ndarray:
        """Computed once (a layout is not changed once made; the array is read-only)."""
        phys = self.mrow * self.matrix.row_elems + self.colmap[self.mcol]
        phys.flags.writeable = False
        return phys


def aligned_colmap(cols: int, runs: list[tuple[int, int]], lanes: int, pad: int) -> tuple[np.ndarray, int]:
    """Column map placing each run ``(start, length)`` of logical columns at a word boundary.

    Returns ``(colmap, physical columns)``; the width is padded to a multiple of ``pad``.
    A run that another run's start would split is not aligned (the caller's window check
    then fails for it and the op falls back).
    """
    starts = {s for s, n in runs if n > 0}
    colmap = np.empty(cols, dtype=np.int64)
    cur = 0
    for c in range(cols):
        if c in starts and cur % lanes:
            cur += lanes - cur % lanes
        colmap[c] = cur
        cur += 1
    width = -(-max(cur, 1) // pad) * pad
    return colmap, width


def window(mat: Matrix, phys: np.ndarray) -> Window:
    """The window of ``mat`` holding ``phys`` (``[M, K]`` flat physical indices)."""
    phys = np.asarray(phys).reshape(-1, np.shape(phys)[-1] if np.ndim(phys) else 1)
    re = mat.row_elems
    m = phys.shape[0]
    if m == 0:
        raise LayoutError("empty operand")
    r, c = phys[:, 0] // re, phys[0] % re
    if not np.array_equal(phys, r[:, None] * re + c[None, :]):  # one test for both (the common case passes)
        rows, cols = phys // re, phys % re
        if np.any(rows != rows[:, :1]):
            raise LayoutError("a row of the operand spans several stored rows")
        raise LayoutError("rows of the operand use different stored columns")
    step = int(r[1] - r[0]) if m > 1 else 1
    if step <= 0 or np.any(r != r[0] + step * np.arange(m)):
        raise LayoutError("the operand's rows are not evenly spaced stored rows")
    return Window(mat, int(r[0]), m, c, step)


def head_window(mat: Matrix, phys: np.ndarray) -> Window:
    """An attention operand: evenly spaced rows, contiguous columns from a word boundary."""
    w = window(mat, phys)
    c0 = int(w.colmap[0])
    if np.any(w.colmap != c0 + np.arange(len(w.colmap))):
        raise LayoutError("a head's columns are not contiguous in storage")
    if c0 % mat.lanes:
        raise LayoutError(f"a head starts at column {c0}, not at a word boundary ({mat.lanes} lanes)")
    return w


def row_runs(mat: Matrix, phys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, colmap)`` of an operand whose rows are stored rows of ``mat`` in any order
    (each operand row in one stored row, all with the same columns)."""
    phys = np.asarray(phys).reshape(-1, np.shape(phys)[-1] if np.ndim(phys) else 1)
    re = mat.row_elems
    rows, cols = phys // re, phys % re
    if np.any(rows != rows[:, :1]):
        raise LayoutError("a row of the operand spans several stored rows")
    if np.any(cols != cols[:1]):
        raise LayoutError("rows of the operand use different stored columns")
    return rows[:, 0].copy(), cols[0].copy()
