"""Results shared by the points of one sweep across worker processes (e.g. one accuracy
run for every point that differs only in cost settings): a JSON file per key in the
sweep's ``memo/`` folder, computed under a file lock so that two workers never compute
the same key at once (the second waits, then reads).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["memoized", "memo_key"]


def memo_key(*parts) -> str:
    """A file-name-safe key of JSON-able ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def memoized(folder, key: str, compute):
    """``compute()`` once per ``key`` in ``folder`` (None: no sharing, just compute)."""
    if not folder:
        return compute()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / f"{key}.json"
    if done.is_file():
        return json.loads(done.read_text())
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker computing it: wait for its result
        if done.is_file():
            return json.loads(done.read_text())
        value = compute()
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, done)
        return value
