"""What runs on a worker: one point from a job dict to a result row, never raising.

A job holds the target, the model, the point's parameters and settings, and the spec's
evaluation options (plain data: it travels to a process pool or a dask worker). The
canonical graph is loaded once per process (``_GRAPHS``); when the job names a pickle of
it (written by the driver beside the results) that is read instead (~0.05 s against
~13 s to load and canonicalise m3vit-edge-moe).
"""

from __future__ import annotations

import pickle
import threading
import time
import traceback
import warnings
from pathlib import Path

__all__ = ["evaluate_point", "prepare_graph", "graph_for", "preload"]

_GRAPHS: dict[tuple, object] = {}
_LOCK = threading.Lock()  # dask runs tasks on threads: one load per process


def prepare_graph(model: str, batch: int):
    """Load and canonicalise ``model`` (``hwgen.load`` + ``hwgen.canonicalize``)."""
    import hwgen

    return hwgen.canonicalize(hwgen.load(model, batch=batch))


#: modules a point of each target imports (a driver imports them before a process pool
#: forks, so that each worker does not: ~0.2 s CPU a worker for fpga)
_PRELOAD = {"fpga": ("fpga.compile", "fpga.compile.report", "fpga.compile.reuse", "fpga.compile.target",
                     "fpga.cost.resources", "fpga.synth", "sweeps.fpga_point"),
            "optical4f": ("optical4f.cost", "optical4f.devices", "optical4f.mapping", "sweeps.optical_point")}


def preload(target: str) -> None:
    """Import the modules a point of ``target`` needs."""
    import importlib

    for name in _PRELOAD.get(target, ()):
        importlib.import_module(name)


def graph_for(model: str, batch: int, pickle_path: str | None = None):
    """The canonical graph of ``model``, cached in this process."""
    key = (model, batch)
    with _LOCK:
        if key not in _GRAPHS:
            p = Path(pickle_path) if pickle_path else None
            if p is not None and p.is_file():
                with open(p, "rb") as f:
                    _GRAPHS[key] = pickle.load(f)
            else:
                _GRAPHS[key] = prepare_graph(model, batch)
        return _GRAPHS[key]


def evaluate_point(job: dict) -> dict:
    """The result row of one point: the parameters, ``status`` (``ok``, ``does_not_fit``,
    ``invalid``: the configuration is refused, ``error``: anything else), ``reason``, the
    figures, ``warnings`` (those the point gave), ``cpu_s``, ``wall_s`` and ``key``. Errors become rows;
    nothing is raised."""
    from hwgen.errors import HwgenError

    t0, c0 = time.perf_counter(), time.process_time()
    row = {"key": job["key"], **job["params_flat"]}
    row.update({k: v for k, v in job["settings"].items() if k not in row})  # what tables of settings set, fixed ones
    try:
        graph = graph_for(job["model"], job["batch"], job.get("graph_pickle"))
        if job["target"] == "fpga":
            from .fpga_point import evaluate_fpga_point as run
        else:
            from .optical_point import evaluate_optical_point as run
        with warnings.catch_warnings(record=True) as caught:  # kept in the row, not printed
            warnings.simplefilter("always")
            figures = run(graph, job["settings"], job)
        row["warnings"] = "; ".join(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
        row.update(figures)
        row["status"] = "ok" if figures.get("fits", True) else "does_not_fit"
        row.setdefault("reason", "")
    except HwgenError as e:
        row.update(status="invalid", reason=str(e))
    except Exception as e:  # a failure of this point only: the sweep goes on
        tb = traceback.extract_tb(e.__traceback__)[-1]
        row.update(status="error", reason=f"{type(e).__name__}: {e} ({Path(tb.filename).name}:{tb.lineno})")
    row["cpu_s"] = time.process_time() - c0  # this process's CPU time (others' load does not count)
    row["wall_s"] = time.perf_counter() - t0
    return row


def evaluate_points(jobs: list[dict]) -> list[dict]:
    """The rows of several points, one after another in this worker (points that share a
    compile: the second finds it in this process's memory)."""
    return [evaluate_point(j) for j in jobs]
