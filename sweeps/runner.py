"""Running a sweep: points to jobs, jobs to a process pool or a dask cluster, rows to the cache.

:func:`run_sweep` evaluates a :class:`~sweeps.spec.SweepSpec` into ``OUT``:
``results.csv``, ``results.parquet``, ``pareto_*.png``, and ``cache/`` (one JSON a point,
keyed by :func:`sweeps.cache.point_key`). A grid submits every point not in the cache;
an Optuna search asks ``search.batch`` trials at a time, evaluates those not cached, and
tells their objectives in the order asked (so a rerun with the same seed asks the same
trials and finds them all cached). Points run on a local process pool (``workers``,
default one per core; one worker: in this process) or, with ``scheduler="tcp://HOST:PORT"``, on a dask.distributed
cluster; the workers there must import hwgen (same version) and the model.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import multiprocessing
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

from hwgen import __version__
from hwgen.errors import HwgenError

from .cache import ResultCache, model_fingerprint, point_key
from .results import plot_pareto, write_table
from .spec import MAXIMIZE, Range, SweepSpec, expand, grid_points
from .worker import evaluate_point, evaluate_points, prepare_graph

__all__ = ["run_sweep", "SweepResult"]


@dataclass
class SweepResult:
    rows: list[dict]
    out_dir: Path
    computed: int  # points evaluated in this run
    cached: int  # points found in the cache
    wall_s: float
    files: list[Path] = field(default_factory=list)


def _label(value) -> object:
    """A parameter value as a table cell: a table of settings becomes ``k=v,k=v``."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return value


class _Local:
    """A process pool, started once a sweep (fork: the workers inherit the loaded graph
    and the imported modules; jobs and rows are small dicts)."""

    def __init__(self, workers: int):
        gc.collect()
        gc.freeze()  # what the driver holds (the graph) is never scanned by a worker's collector, so not copied
        try:
            self.pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            list(self.pool.map(int, range(workers)))  # start the workers now, before any thread of ours
        finally:
            gc.unfreeze()

    def submit(self, job):
        return self.pool.submit(evaluate_point, job)

    def submit_batch(self, jobs: list[dict]):
        return self.pool.submit(evaluate_points, jobs)

    def as_completed(self, futures):
        return concurrent.futures.as_completed(futures)

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Inline:
    """One worker: the points run in this process, one after another."""

    class _Later:
        def __init__(self, job):
            self.job = job

        def result(self):
            return evaluate_point(self.job)

    def submit(self, job):
        return self._Later(job)

    def as_completed(self, futures):
        return iter(futures)  # each point runs when its result is asked for

    def close(self):
        pass


class _Dask:
    def __init__(self, address: str):
        try:
            from distributed import Client
        except ImportError as e:
            raise HwgenError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from e
        try:
            self.client = Client(address, timeout=10)
        except OSError as e:
            raise HwgenError(f"--scheduler {address}: cannot connect to a dask scheduler there ({e})") from e

    def submit(self, job):
        return self.client.submit(evaluate_point, job, pure=False)

    def as_completed(self, futures):
        from distributed import as_completed

        return as_completed(futures)

    def close(self):
        self.client.close()


class _Progress:
    """Points done and time left on stderr (rich); started on the first point, so that
    the process pool forks before its thread exists."""

    def __init__(self, total: int, show: bool, what: str):
        self.bar, self.show, self.total, self.what = None, show, total, what

    def advance(self, n: int = 1):
        if self.bar is None and self.show:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                                console=Console(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=self.total)
        if self.bar is not None:
            self.bar.update(self.task, advance=n)

    def close(self):
        if self.bar is not None:
            self.bar.stop()


class _Driver:
    """Submits jobs, caches rows, shows progress; the executor starts on the first miss."""

    def __init__(self, spec: SweepSpec, out: Path, scheduler, workers, progress):
        self.spec, self.out = spec, out
        self.cache = ResultCache(out / "cache")
        self.identity = spec.identity()
        self.fingerprint = model_fingerprint(spec.model)
        self.scheduler, self.workers = scheduler, workers or os.cpu_count() or 1
        self.exec = None
        self.computed = self.cached = 0
        self.show = progress
        self.progress = None
        self.graph_pickle = out / "graphs" / f"{self.fingerprint[:16] or 'model'}-b{spec.batch}-{__version__}.pkl"

    def job(self, params: dict) -> dict:
        flat = {k: _label(v) for k, v in params.items()}
        key = point_key(self.identity, self.fingerprint, flat)
        return {"key": key, "target": self.spec.target, "model": self.spec.model, "model_name": self.spec.model,
                "batch": self.spec.batch, "task": self.spec.task, "base": self.spec.base,
                "settings": expand(params, self.spec.fixed), "params_flat": flat, "evaluate": self.spec.evaluate,
                "graph_pickle": str(self.graph_pickle), "memo_dir": str(self.out / "memo")}

    def _start(self):
        if self.exec is not None:
            return
        from . import worker

        if not self.graph_pickle.is_file():  # load once here; the workers read the pickle (or inherit it)
            self.graph_pickle.parent.mkdir(parents=True, exist_ok=True)
            g = prepare_graph(self.spec.model, self.spec.batch)
            tmp = self.graph_pickle.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                pickle.dump(g, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.graph_pickle)
        if self.scheduler:
            self.exec = _Dask(self.scheduler)
        else:
            worker.graph_for(self.spec.model, self.spec.batch, str(self.graph_pickle))
            worker.preload(self.spec.target)
            self.exec = _Local(self.workers) if self.workers > 1 else _Inline()

    def run(self, jobs: list[dict]) -> dict[str, dict]:
        """Rows of ``jobs`` by key: from the cache, or evaluated (and cached)."""
        rows, todo = {}, []
        for j in jobs:
            if j["key"] in rows:
                continue
            rows[j["key"]] = self.cache.get(j["key"])
            if rows[j["key"]] is None:
                todo.append(j)
        if todo:
            todo = self._interleave(todo)
            self._start()
        hits = len(rows) - len(todo)
        self.cached += hits
        if hits:
            self.progress.advance(hits)
        if todo:
            batches = self._batches(todo)
            if batches is not None:  # a local pool, FPGA cost points: one future per shared compile
                futures = [self.exec.submit_batch(b) for b in batches]
                results = (row for fut in self.exec.as_completed(futures) for row in fut.result())
            else:
                futures = [self.exec.submit(j) for j in todo]
                results = (fut.result() for fut in self.exec.as_completed(futures))
            for row in results:
                self.cache.put(row["key"], row)
                rows[row["key"]] = row
                self.computed += 1
                self.progress.advance()
        return rows

    def _batches(self, todo: list[dict]) -> list[list[dict]] | None:
        """FPGA points grouped by the cost-only compile they share, for a local pool: a
        worker's compile stays in its memory, so a group sent to one worker compiles once
        (sent point by point, both workers compiled it). Groups are split so that there are
        at least four batches a worker (balance), largest first. None: no batching (one
        worker, dask, an optical sweep, or accuracy runs, which share work across processes)."""
        if not isinstance(self.exec, _Local) or self.spec.target != "fpga" or self.spec.evaluate.get("accuracy"):
            return None
        from .fpga_point import compile_group_key

        batches = sorted(_groups(todo, compile_group_key), key=len, reverse=True)
        want = 4 * self.workers
        while len(batches) < want and len(batches[0]) > 1:  # split the largest until there are enough
            big = batches.pop(0)
            half = (len(big) + 1) // 2
            batches += [big[:half], big[half:]]
            batches.sort(key=len, reverse=True)
        return batches

    def _interleave(self, todo: list[dict]) -> list[dict]:
        """Points that share work (an accuracy run) spread out: one of each group first,
        so that the workers start on different groups and the rest find the work done."""
        if self.spec.target == "fpga":
            from .fpga_point import shared_work_key
        else:
            from .optical_point import shared_work_key
        groups = _groups(todo, shared_work_key)
        return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]

    def close(self):
        if self.exec is not None:
            self.exec.close()


def _groups(todo: list[dict], key_of) -> list[list[dict]]:
    """``todo`` grouped by ``key_of(settings, job)`` (a point's own key where that is None),
    groups and points in ``todo`` order."""
    groups: dict = {}
    for j in todo:
        groups.setdefault(key_of(j["settings"], j) or j["key"], []).append(j)
    return list(groups.values())


def _grid(d: _Driver) -> list[dict]:
    jobs = [d.job(p) for p in grid_points(d.spec)]
    d.progress = _Progress(len({j["key"] for j in jobs}), d.show, f"{d.spec.target} grid")
    rows = d.run(jobs)
    return [rows[j["key"]] for j in dict((j["key"], j) for j in jobs).values()]


def _suggest(trial, name: str, space):
    if isinstance(space, Range):
        if space.is_int:
            return trial.suggest_int(name, space.low, space.high, log=space.log, step=int(space.step or 1))
        return trial.suggest_float(name, float(space.low), float(space.high), log=space.log, step=space.step)
    labels = [json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in space]
    pick = trial.suggest_categorical(name, labels)
    return space[labels.index(pick)]


def _optuna(d: _Driver) -> list[dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = d.spec.search
    objectives = list(s["objectives"])
    directions = ["maximize" if o in MAXIMIZE else "minimize" for o in objectives]

    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=s["seed"], n_startup_trials=10),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=s["seed"]),
        "random": lambda: optuna.samplers.RandomSampler(seed=s["seed"]),
    }[s["sampler"]]()
    study = optuna.create_study(directions=directions, sampler=sampler)
    d.progress = _Progress(s["trials"], d.show, f"{d.spec.target} optuna")
    order: list[str] = []
    rows: dict[str, dict] = {}
    asked = 0
    while len(order) < s["trials"] and asked < 20 * s["trials"]:
        batch = []
        for _ in range(min(s["batch"], s["trials"] - len(order))):
            trial = study.ask()
            params = {name: _suggest(trial, name, space) for name, space in d.spec.parameters.items()}
            batch.append((trial, d.job(params)))
        asked += len(batch)
        new = [j for _, j in batch if j["key"] not in rows]
        rows.update(d.run(new))
        for trial, job in batch:
            row = rows[job["key"]]
            if job["key"] not in order:
                order.append(job["key"])
            vals = [row.get(o) for o in objectives]
            if row["status"] not in ("ok", "does_not_fit") or any(not isinstance(v, (int, float)) for v in vals):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            # feasible at <= 0: the most used resource's fraction - 1 (or 1 when it does not fit)
            utils = [v for k, v in row.items() if k.startswith("util_") and isinstance(v, (int, float))]
            trial.set_constraint("fits", max(utils) - 1.0 if utils else (0.0 if row.get("fits", True) else 1.0))
            study.tell(trial, [float(v) for v in vals])
    return [rows[k] for k in order]


def run_sweep(spec: SweepSpec, out_dir, *, scheduler: str | None = None, workers: int | None = None,
              progress: bool = True, plots: bool = True) -> SweepResult:
    """Evaluate ``spec`` into ``out_dir`` (see the module docstring); ``plots=False`` skips
    the PNGs (matplotlib takes seconds)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps({**spec.identity(), "parameters": {
        k: (v.__dict__ if isinstance(v, Range) else v) for k, v in spec.parameters.items()}, "search": spec.search},
        indent=1, default=str))
    d = _Driver(spec, out, scheduler, workers, progress)
    try:
        rows = _grid(d) if spec.method == "grid" else _optuna(d)
    finally:
        if d.progress is not None:
            d.progress.close()
        d.close()
    files = list(write_table(rows, list(spec.parameters), out))
    if not plots:
        return SweepResult(rows, out, d.computed, d.cached, time.perf_counter() - t0, files)
    color = "accuracy" if spec.evaluate.get("accuracy") else ("util_dsp" if spec.target == "fpga" else "frames")
    title = f"{spec.model} on {spec.target}: {len(rows)} points"
    files.append(plot_pareto(rows, out / "pareto_latency_energy.png", "latency_s", "energy_j", color, title))
    if spec.evaluate.get("accuracy"):
        files.append(plot_pareto(rows, out / "pareto_latency_accuracy.png", "latency_s", "accuracy", "energy_j",
                                 title, ydir="max"))
    return SweepResult(rows, out, d.computed, d.cached, time.perf_counter() - t0, files)
