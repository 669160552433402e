"""A folder of finished simulator builds, keyed by content hash, safe for concurrent processes.

:func:`cached` returns ``cache_dir/<key>/`` after running ``make(folder)`` there once: the
first process to ask takes an exclusive ``fcntl.flock`` on ``cache_dir/<key>.lock``,
builds, and writes ``done.json`` last; a process asking meanwhile waits on the lock and
then finds the build done. A folder without ``done.json`` (an interrupted build) is
emptied and built again. :func:`content_key` hashes what a build depends on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

__all__ = ["default_cache_dir", "content_key", "cached", "lookup", "locked"]

_DONE = "done.json"


def default_cache_dir() -> Path:
    """``$HWGEN_CACHE/verilator``, else ``~/.cache/hwgen/verilator``."""
    root = os.environ.get("HWGEN_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "hwgen") / "verilator"


def content_key(parts: Iterable[str | bytes]) -> str:
    """SHA-256 (hex, 24 characters) of the parts, each length-prefixed so that boundaries count."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:24]


@contextmanager
def locked(path: Path):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def lookup(cache_dir: Path, key: str) -> dict | None:
    """The ``done.json`` of a finished build (with ``"dir"`` added), or None."""
    folder = Path(cache_dir) / key
    try:
        info = json.loads((folder / _DONE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return {**info, "dir": str(folder)}


def cached(cache_dir: Path, key: str, make: Callable[[Path], dict]) -> dict:
    """``cache_dir/<key>``'s build info, running ``make(folder) -> info`` first if it is not there.

    Returns the info dict with ``"dir"`` (the folder), ``"built"`` (True when this call
    built it) and ``"build_s"`` (seconds the build took when it was made).
    """
    cache_dir = Path(cache_dir)
    info = lookup(cache_dir, key)
    if info is not None:
        return {**info, "built": False}
    with locked(cache_dir / f"{key}.lock"):
        info = lookup(cache_dir, key)  # another process may have built it while we waited
        if info is not None:
            return {**info, "built": False}
        folder = cache_dir / key
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        info = dict(make(folder))
        info["build_s"] = time.perf_counter() - t0
        tmp = folder / f"{_DONE}.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        tmp.replace(folder / _DONE)
        return {**info, "dir": str(folder), "built": True}
