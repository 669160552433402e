"""The result cache of a sweep: one JSON file per point, keyed by a hash of what decides it.

The key is the SHA-256 of the model (its name and the SHA-256 of its ONNX file), the
target, the point's parameters, the rest of the spec that changes a result (batch, task,
base configuration, fixed settings, evaluations) and the hwgen version. A finished sweep
run again finds every point here and computes nothing; an interrupted one computes only
what is missing. Files are written atomically (a crash leaves no half file).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from hwgen import __version__

__all__ = ["model_fingerprint", "point_key", "ResultCache"]


def model_fingerprint(model: str) -> str:
    """SHA-256 of the model's ONNX file (a bundled name is resolved first; "" if no file)."""
    path = Path(model)
    if not path.is_file():
        from hwgen.frontend import resolve_model

        try:
            path = Path(resolve_model(model))
        except Exception:  # an unknown model fails on the points, with its reason
            return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def point_key(identity: dict, fingerprint: str, params: dict) -> str:
    """The cache key of one point (hex, 24 characters)."""
    text = _canonical({"identity": identity, "model_sha256": fingerprint, "params": params, "hwgen": __version__})
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ResultCache:
    """Rows by key in ``folder`` (``KEY.json`` each)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict | None:
        p = self.folder / f"{key}.json"
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, row: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=self.folder)
        with os.fdopen(fd, "w") as f:
            json.dump(row, f, default=str)
        os.replace(tmp, self.folder / f"{key}.json")

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*.json"))
