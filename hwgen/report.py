"""The report every target writes: one versioned schema, ``report.json`` + ``report.md``.

A report is a plain dict (JSON types only). Required keys:

=================  ===========================================================
``schema_version``  :data:`SCHEMA_VERSION`
``target``          target name (``"fpga"``, ``"optical4f"``)
``model``           model name or path
``config``          dict: the target configuration actually used
``latency_s``       float: end-to-end latency of one inference (batch as compiled)
``energy_j``        float: energy of one inference
``layers``          list of dicts, each with ``name``, ``op``, ``latency_s``,
                    ``energy_j`` and any target-specific figures
``host_ops``        list of dicts (``name``, ``op`` and any figures): what runs in
                    electronics on the host / outside the accelerator
``assumptions``     list of ``{name, value, unit, source}``: every constant used
=================  ===========================================================

Optional keys with a checked shape: ``resources`` (dict name -> number, FPGA),
``energy_breakdown_j`` (dict component -> joules), ``comparisons`` (list of dicts with
``name``, ``latency_s`` and optionally ``speedup``), ``warnings`` (list of str),
``notes`` (list of str). Any other key is allowed and rendered as JSON.

``validate_report`` raises :class:`ReportError` naming the first bad key;
``write_report`` validates, then writes ``report.json`` and ``report.md`` (rendered from
the dict only, so the two never disagree).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import HwgenError

__all__ = ["SCHEMA_VERSION", "ReportError", "make_report", "validate_report", "write_report", "render_markdown"]

SCHEMA_VERSION = "1.0"

_REQUIRED = ("schema_version", "target", "model", "config", "latency_s", "energy_j", "layers", "host_ops", "assumptions")
_LAYER_KEYS = ("name", "op", "latency_s", "energy_j")
_ASSUMPTION_KEYS = ("name", "value", "unit", "source")


class ReportError(HwgenError):
    """A report dict does not follow the schema."""


def make_report(target: str, model: str, config: dict, latency_s: float, energy_j: float, layers: list[dict],
                host_ops: list[dict], assumptions: list[dict], **extra: Any) -> dict:
    """Build a report dict (with ``schema_version``) and validate it."""
    report = {
        "schema_version": SCHEMA_VERSION,
        "target": target,
        "model": model,
        "config": config,
        "latency_s": latency_s,
        "energy_j": energy_j,
        "layers": layers,
        "host_ops": host_ops,
        "assumptions": assumptions,
        **extra,
    }
    validate_report(report)
    return report


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_report(report: dict) -> None:
    """Raise ReportError unless ``report`` follows the schema (and is JSON-serialisable)."""
    if not isinstance(report, dict):
        raise ReportError(f"a report is a dict, not {type(report).__name__}")
    missing = [k for k in _REQUIRED if k not in report]
    if missing:
        raise ReportError(f"report lacks required key(s): {', '.join(missing)}")
    if report["schema_version"] != SCHEMA_VERSION:
        raise ReportError(f"schema_version is {report['schema_version']!r}, this hwgen writes {SCHEMA_VERSION!r}")
    for k in ("target", "model"):
        if not isinstance(report[k], str) or not report[k]:
            raise ReportError(f"{k} must be a non-empty string")
    if not isinstance(report["config"], dict):
        raise ReportError("config must be a dict")
    for k in ("latency_s", "energy_j"):
        if not _is_number(report[k]) or report[k] < 0:
            raise ReportError(f"{k} must be a finite non-negative number, not {report[k]!r}")
    for key, needed in (("layers", _LAYER_KEYS), ("host_ops", ("name", "op"))):
        rows = report[key]
        if not isinstance(rows, list):
            raise ReportError(f"{key} must be a list")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ReportError(f"{key}[{i}] must be a dict")
            lack = [k for k in needed if k not in row]
            if lack:
                raise ReportError(f"{key}[{i}] ({row.get('name', '?')}) lacks {', '.join(lack)}")
            for k in ("latency_s", "energy_j"):
                if k in row and not (_is_number(row[k]) and row[k] >= 0):
                    raise ReportError(f"{key}[{i}] ({row['name']}): {k} must be a finite non-negative number")
    if not isinstance(report["assumptions"], list):
        raise ReportError("assumptions must be a list")
    for i, a in enumerate(report["assumptions"]):
        if not isinstance(a, dict) or any(k not in a for k in _ASSUMPTION_KEYS):
            raise ReportError(f"assumptions[{i}] must be a dict with keys {', '.join(_ASSUMPTION_KEYS)}")
        if not isinstance(a["source"], str) or not a["source"].strip():
            raise ReportError(f"assumptions[{i}] ({a['name']}) has no source")
    if "resources" in report:
        res = report["resources"]
        if not isinstance(res, dict) or not all(_is_number(v) for v in res.values()):
            raise ReportError("resources must be a dict of name -> number")
    if "energy_breakdown_j" in report:
        eb = report["energy_breakdown_j"]
        if not isinstance(eb, dict) or not all(_is_number(v) and v >= 0 for v in eb.values()):
            raise ReportError("energy_breakdown_j must be a dict of component -> non-negative joules")
    if "comparisons" in report:
        for i, c in enumerate(report["comparisons"]):
            if not isinstance(c, dict) or "name" not in c or "latency_s" not in c:
                raise ReportError(f"comparisons[{i}] must be a dict with name and latency_s (null if not measured)")
    for k in ("warnings", "notes"):
        if k in report and not (isinstance(report[k], list) and all(isinstance(s, str) for s in report[k])):
            raise ReportError(f"{k} must be a list of strings")
    try:
        json.dumps(report, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ReportError(f"report is not plain JSON: {e}") from e


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict], first: tuple[str, ...] = ()) -> list[str]:
    if not rows:
        return ["(none)", ""]
    cols = list(first) + sorted({k for r in rows for k in r} - set(first))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out + [""]


def render_markdown(report: dict) -> str:
    """The Markdown view of a (valid) report: summary, then one table per list."""
    lines = [f"# {report['target']} report: {report['model']}", "",
             f"schema {report['schema_version']}", "",
             "| figure | value |", "|---|---|",
             f"| latency | {report['latency_s']:.6g} s |",
             f"| energy | {report['energy_j']:.6g} J |"]
    for k in ("throughput_per_s",):
        if k in report:
            lines.append(f"| {k} | {_fmt(report[k])} |")
    lines.append("")
    if report.get("energy_breakdown_j"):
        lines += ["## Energy breakdown", ""]
        lines += _table([{"component": k, "energy_j": v} for k, v in report["energy_breakdown_j"].items()], ("component", "energy_j"))
    for sec in report.get("markdown_sections", ()):  # target-specific sections, rendered by the target
        lines += [f"## {sec['title']}", "", sec["markdown"], ""]
    if report.get("comparisons"):
        lines += ["## Comparisons", ""] + _table(report["comparisons"], ("name", "latency_s"))
    if "resources" in report:
        lines += ["## Resources", ""] + _table([{"resource": k, "value": v} for k, v in report["resources"].items()], ("resource", "value"))
    lines += ["## Layers", ""] + _table(report["layers"], _LAYER_KEYS)
    lines += ["## Host (electronic) ops", ""] + _table(report["host_ops"], ("name", "op"))
    lines += ["## Configuration", ""] + _table([{"key": k, "value": v} for k, v in sorted(report["config"].items())], ("key", "value"))
    lines += ["## Assumptions", ""] + _table(report["assumptions"], _ASSUMPTION_KEYS)
    for k in ("warnings", "notes"):
        if report.get(k):
            lines += [f"## {k.capitalize()}", ""] + [f"- {s}" for s in report[k]] + [""]
    known = set(_REQUIRED) | {"resources", "energy_breakdown_j", "comparisons", "warnings", "notes", "throughput_per_s",
                              "markdown_sections"}
    rest = {k: v for k, v in report.items() if k not in known}
    if rest:
        lines += ["## Other figures", "", "```json", json.dumps(rest, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Validate ``report`` and write ``out_dir/report.json`` and ``out_dir/report.md``."""
    validate_report(report)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pj, pm = out / "report.json", out / "report.md"
    pj.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    pm.write_text(render_markdown(report))
    return pj, pm
