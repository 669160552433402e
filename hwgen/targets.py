"""Target registry: backends register through the ``hwgen.targets`` entry point.

A target is a class with::

    name: str                     # "fpga", "optical4f"
    help: str                     # one line for ``hwgen compile --help``
    def compile(self, graph: Graph, out_dir: Path, options: dict) -> dict
        # writes OUT/report.json (hwgen.report schema) and whatever else it makes,
        # returns the report dict. Raises hwgen.errors.TargetError for what it
        # cannot compile (name the node and op).
    def prepare(self, out_dir: Path, options: dict) -> None     # optional
        # called before the model is loaded: check options, start work that needs
        # no model (e.g. hardware generation); errors here leave nothing behind.
    def abort(self) -> None                                     # optional
        # stop what prepare() started (compile failed or was interrupted).

hwgen imports no target package directly; ``pyproject.toml`` lists them under
``[project.entry-points."hwgen.targets"]``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Protocol

from .errors import TargetError

__all__ = ["Target", "available_targets", "get_target"]


class Target(Protocol):
    name: str
    help: str

    def compile(self, graph: Any, out_dir: Any, options: dict) -> dict: ...


def available_targets() -> dict[str, Any]:
    """Name -> entry point of every installed target (not yet imported)."""
    return {ep.name: ep for ep in entry_points(group="hwgen.targets")}


def get_target(name: str) -> Target:
    """Instantiate the target called ``name``; TargetError lists the known ones."""
    eps = available_targets()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "(none installed)"
        raise TargetError(f"unknown target {name!r}; known targets: {known}")
    try:
        cls = eps[name].load()
    except (ImportError, AttributeError) as e:
        raise TargetError(f"target {name!r} is registered but cannot be loaded: {e}") from e
    return cls()
