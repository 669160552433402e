"""A sweep's results: the table (CSV and Parquet), its Pareto fronts, and their plots.

Every point is one row, failed ones too (``status`` and ``reason``). Columns: ``key``,
the parameters, ``status``, ``reason``, the figures (``latency_s``, ``energy_j``,
resources or frames, ``fits``, ``accuracy`` where evaluated), ``wall_s``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

__all__ = ["write_table", "read_table", "pareto_mask", "plot_pareto", "LEAD_COLUMNS"]

LEAD_COLUMNS = ("key", "status", "reason", "latency_s", "energy_j", "accuracy", "fits")


def _columns(rows: list[dict], params: list[str]) -> list[str]:
    cols = ["key", *params]
    for c in LEAD_COLUMNS[1:]:
        if any(c in r for r in rows):
            cols.append(c)
    for r in rows:
        for c in r:
            if c not in cols and c != "wall_s":
                cols.append(c)
    return cols + ["wall_s"]


def _column_values(values: list):
    """One type per column for Parquet: ints with floats -> floats, anything with str -> str."""
    kinds = {type(v) for v in values if v is not None}
    if str in kinds and len(kinds) > 1 or kinds & {list, dict, tuple}:
        return [None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values]
    if float in kinds and int in kinds:
        return [None if v is None else float(v) for v in values]
    return values


def write_table(rows: list[dict], params: list[str], out_dir) -> tuple[Path, Path]:
    """``results.csv`` and ``results.parquet`` in ``out_dir``; returns their paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    cols = _columns(rows, params)
    csv_path, pq_path = out_dir / "results.csv", out_dir / "results.parquet"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    table = pa.table({c: pa.array(_column_values([r.get(c) for r in rows])) for c in cols})
    pq.write_table(table, pq_path)
    return csv_path, pq_path


def read_table(out_dir) -> list[dict]:
    """The rows of ``results.parquet`` (a list of dicts)."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(out_dir) / "results.parquet").to_pylist()


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def pareto_mask(rows: list[dict], objectives: dict[str, str]) -> list[bool]:
    """Which rows are on the Pareto front of ``objectives`` (column -> ``"min"``/``"max"``)
    among the points with status ``ok`` and every objective present."""
    pts = []
    for r in rows:
        vals = [_num(r.get(c)) for c in objectives]
        if r.get("status") != "ok" or any(v is None for v in vals):
            pts.append(None)
        else:
            pts.append([v if d == "min" else -v for v, d in zip(vals, objectives.values())])
    mask = []
    for i, p in enumerate(pts):
        if p is None:
            mask.append(False)
            continue
        dominated = any(q is not None and all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
                        for j, q in enumerate(pts) if j != i)
        mask.append(not dominated)
    return mask


def plot_pareto(rows: list[dict], path, x: str = "latency_s", y: str = "energy_j", color: str | None = None,
                title: str = "", ydir: str = "min") -> Path:
    """Scatter of ``y`` against ``x`` (log axes for times and energies), coloured by
    ``color``; points that do not fit are grey crosses; the front is joined by a line."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's) stays

    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    ok = [r for r in rows if r.get("status") == "ok" and _num(r.get(x)) is not None and _num(r.get(y)) is not None]
    nofit = [r for r in rows if r.get("status") == "does_not_fit" and _num(r.get(x)) is not None
             and _num(r.get(y)) is not None]
    if nofit:
        ax.scatter([r[x] for r in nofit], [r[y] for r in nofit], marker="x", c="0.6", label="does not fit")
    if ok:
        cvals = [_num(r.get(color)) for r in ok] if color else []
        if color and all(v is not None for v in cvals):
            sc = ax.scatter([r[x] for r in ok], [r[y] for r in ok], c=cvals, cmap="viridis", s=30, label="fits")
            fig.colorbar(sc, ax=ax, label=color)
        else:
            ax.scatter([r[x] for r in ok], [r[y] for r in ok], s=30, label="fits")
        front = [r for r, m in zip(ok, pareto_mask(ok, {x: "min", y: ydir})) if m]
        front.sort(key=lambda r: r[x])
        ax.plot([r[x] for r in front], [r[y] for r in front], "r-", lw=1, label="Pareto front")
        ax.scatter([r[x] for r in front], [r[y] for r in front], facecolors="none", edgecolors="r", s=80)
    for axis, name in ((ax.set_xscale, x), (ax.set_yscale, y)):
        if name.endswith(("_s", "_j")):
            axis("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    failed = sum(r.get("status") in ("error", "invalid") for r in rows)
    ax.set_title(title + (f"  ({failed} failed point(s) not shown)" if failed else ""), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
