"""The sweep specification (``SPEC.toml``): model, target, parameters, search, evaluations.

::

    model = "m3vit-edge-moe"        # a bundled model's name or an .onnx path (relative: to the SPEC)
    target = "fpga"                 # or "optical4f"
    batch = 1                       # value of a dynamic batch dimension
    task = 0                        # the task input's value (multi-task models; default 0)
    base = "edge.toml"              # optional: the target's base configuration (fpga: an
                                    # accelerator TOML; optical4f: a preset name or a TOML)

    [parameters]                    # what varies; every point is base + fixed + one value of each
    mac_rows = [8, 16, 32]          # a list: these values (grid and Optuna alike)
    preset = ["edge-moe", "int8"]
    clock_hz = {low = 100e6, high = 400e6, log = false}   # a range (Optuna only; ints if both ints)
    array = [{mac_rows = 8, mac_cols = 8}, {mac_rows = 16, mac_cols = 16}]   # tables: set together
    "camera.bits" = [8, 12]         # optical4f: SECTION.FIELD (or a [camera] table of lists)

    [fixed]                         # set on every point
    moe_experts = 16

    [search]
    method = "grid"                 # or "optuna"
    trials = 50                     # optuna: points to evaluate (distinct ones)
    objectives = ["latency_s", "energy_j"]   # optuna: result columns, "accuracy" is maximised
    sampler = "tpe"                 # optuna: "tpe", "nsga2" or "random"
    seed = 0
    batch = 4                       # optuna: trials asked at a time (fixed, so a rerun asks the same)

    [evaluate]
    accuracy = false                # test-split accuracy (digits models)
    accuracy_images = 0             # first N test images (0: all 360)
    rtl = false                     # fpga: run the program on the RTL (hwgen simulate; minutes)
    yosys = false                   # fpga: Yosys resources of the configuration (tens of minutes)
    report = false                  # optical4f: run the whole target (its sample simulation too)

Every key is checked; an unknown one is an error that names the known ones.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hwgen.errors import HwgenError

__all__ = ["SweepSpec", "SpecError", "Range", "load_spec", "parse_spec", "grid_points", "expand", "TARGETS", "MAXIMIZE"]

#: Targets a sweep can evaluate.
TARGETS = ("fpga", "optical4f")
#: Result columns an Optuna search maximises (all others are minimised).
MAXIMIZE = ("accuracy", "throughput_per_s", "speedup_vs_cpu", "speedup_vs_gpu")

_TOP = {"model", "target", "batch", "task", "base", "parameters", "fixed", "search", "evaluate"}
_SEARCH = {"method": "grid", "trials": 20, "objectives": ["latency_s", "energy_j"], "sampler": "tpe", "seed": 0,
           "batch": 4}
_EVALUATE = {"accuracy": False, "accuracy_images": 0, "rtl": False, "yosys": False, "report": False}
_RANGE_KEYS = {"low", "high", "log", "step"}


class SpecError(HwgenError):
    """A sweep specification that cannot be used (the message says where and why)."""


@dataclass(frozen=True)
class Range:
    """A numeric range for Optuna: ints when ``low`` and ``high`` are ints."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


@dataclass
class SweepSpec:
    model: str
    target: str
    parameters: dict  # name -> list of values (scalars or dicts) or Range
    fixed: dict = field(default_factory=dict)
    batch: int = 1
    task: int | None = None
    base: str | None = None
    search: dict = field(default_factory=lambda: dict(_SEARCH))
    evaluate: dict = field(default_factory=lambda: dict(_EVALUATE))

    @property
    def method(self) -> str:
        return self.search["method"]

    def identity(self) -> dict:
        """What, besides a point's parameters, decides its result (part of the cache key)."""
        return {"model": self.model, "target": self.target, "batch": self.batch, "task": self.task,
                "base": self.base, "fixed": self.fixed, "evaluate": self.evaluate}


def _flatten(table: dict, where: str, prefix: str = "") -> dict:
    """``{"camera": {"bits": [..]}}`` -> ``{"camera.bits": [..]}``; ranges stay tables."""
    out = {}
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and not (set(v) <= _RANGE_KEYS and {"low", "high"} <= set(v)):
            out.update(_flatten(v, where, name + "."))
        else:
            out[name] = v
    return out


def _parameter(name: str, v, where: str):
    if isinstance(v, dict):
        try:
            r = Range(v["low"], v["high"], bool(v.get("log", False)), v.get("step"))
        except KeyError as e:
            raise SpecError(f"{where}: parameter {name!r}: a range needs low and high") from e
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (r.low, r.high)) or r.low > r.high:
            raise SpecError(f"{where}: parameter {name!r}: low and high must be numbers with low <= high")
        return r
    if not isinstance(v, list) or not v:
        raise SpecError(f"{where}: parameter {name!r} must be a non-empty list of values or a range "
                        f"{{low = .., high = ..}}, not {v!r}")
    return v


def parse_spec(data: dict, where: str = "<spec>", root: Path | None = None) -> SweepSpec:
    """A :class:`SweepSpec` from a TOML document's dict (``root``: folder of relative paths)."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; known: {sorted(_TOP)}")
    for key in ("model", "target"):
        if not isinstance(data.get(key), str):
            raise SpecError(f"{where}: '{key}' (a string) is required")
    if data["target"] not in TARGETS:
        raise SpecError(f"{where}: target {data['target']!r} cannot be swept; targets: {', '.join(TARGETS)}")
    model = data["model"]
    if root is not None and model.endswith(".onnx") and not Path(model).is_absolute():
        model = str((root / model).resolve())
    base = data.get("base")
    if base is not None and root is not None and str(base).endswith(".toml") and not Path(base).is_absolute():
        base = str((root / base).resolve())
    params = {k: _parameter(k, v, where) for k, v in _flatten(data.get("parameters", {}), where).items()}
    if not params:
        raise SpecError(f"{where}: [parameters] is empty: name at least one parameter to vary")
    search = dict(_SEARCH)
    for sec, known in (("search", _SEARCH), ("evaluate", _EVALUATE)):
        given = data.get(sec, {})
        bad = sorted(set(given) - set(known))
        if bad:
            raise SpecError(f"{where}: unknown [{sec}] key(s) {bad}; known: {sorted(known)}")
    search.update(data.get("search", {}))
    evaluate = dict(_EVALUATE, **data.get("evaluate", {}))
    if search["method"] not in ("grid", "optuna"):
        raise SpecError(f"{where}: search.method must be 'grid' or 'optuna', not {search['method']!r}")
    if search["sampler"] not in ("tpe", "nsga2", "random"):
        raise SpecError(f"{where}: search.sampler must be 'tpe', 'nsga2' or 'random', not {search['sampler']!r}")
    for k in ("trials", "batch"):
        if not isinstance(search[k], int) or search[k] < 1:
            raise SpecError(f"{where}: search.{k} must be a positive integer, not {search[k]!r}")
    if not isinstance(search["objectives"], list) or not search["objectives"]:
        raise SpecError(f"{where}: search.objectives must be a non-empty list of result columns")
    if search["method"] == "grid":
        ranges = [k for k, v in params.items() if isinstance(v, Range)]
        if ranges:
            raise SpecError(f"{where}: parameter(s) {ranges} are ranges; a grid needs lists (or search.method = 'optuna')")
    batch, task = data.get("batch", 1), data.get("task")
    if not isinstance(batch, int) or batch < 1:
        raise SpecError(f"{where}: batch must be a positive integer, not {batch!r}")
    if task is not None and (not isinstance(task, int) or task < 0):
        raise SpecError(f"{where}: task must be a non-negative integer, not {task!r}")
    fixed = _flatten(data.get("fixed", {}), where)
    return SweepSpec(model, data["target"], params, fixed, batch, task, base, search, evaluate)


def load_spec(path) -> SweepSpec:
    """Read and check ``SPEC.toml``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SpecError(f"{path}: cannot read the sweep spec: {e}") from e
    return parse_spec(data, str(path), path.resolve().parent)


def grid_points(spec: SweepSpec) -> list[dict]:
    """Every combination of the parameters' values, in the spec's order (last varies fastest)."""
    names = list(spec.parameters)
    return [dict(zip(names, combo)) for combo in itertools.product(*(spec.parameters[n] for n in names))]


def expand(point: dict, fixed: dict) -> dict:
    """The settings of a point: ``fixed``, then each parameter (a table value sets its keys)."""
    out = dict(fixed)
    for k, v in point.items():
        if isinstance(v, dict):
            out.update(v)
        else:
            out[k] = v
    return out
