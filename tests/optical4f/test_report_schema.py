"""hwgen.report: the shared schema (validation and rendering)."""

from __future__ import annotations

import json

import pytest

from hwgen.report import SCHEMA_VERSION, ReportError, make_report, render_markdown, validate_report, write_report


def _report(**extra):
    return make_report("fpga", "m", {"clock_mhz": 300}, 1e-3, 2e-3,
                       [{"name": "l0", "op": "MatMul", "latency_s": 1e-3, "energy_j": 2e-3, "cycles": 300000}],
                       [{"name": "h0", "op": "Softmax"}],
                       [{"name": "clock", "value": 300, "unit": "MHz", "source": "Edge-MoE"}], **extra)


def test_roundtrip_and_markdown(tmp_path):
    r = _report(resources={"LUT": 1000, "DSP": 256}, comparisons=[{"name": "cpu", "latency_s": None}])
    pj, pm = write_report(r, tmp_path)
    back = json.loads(pj.read_text())
    assert back["schema_version"] == SCHEMA_VERSION
    validate_report(back)
    md = pm.read_text()
    assert "| l0 | MatMul |" in md and "| LUT | 1000 |" in md and "Edge-MoE" in md
    assert render_markdown(back) == md


@pytest.mark.parametrize("mutate,match", [
    (lambda r: r.pop("assumptions"), "assumptions"),
    (lambda r: r.update(schema_version="0.1"), "schema_version"),
    (lambda r: r.update(latency_s=-1.0), "latency_s"),
    (lambda r: r.update(energy_j=float("nan")), "energy_j"),
    (lambda r: r["layers"][0].pop("op"), "layers\\[0\\]"),
    (lambda r: r["assumptions"][0].update(source=""), "no source"),
    (lambda r: r.update(resources={"LUT": "many"}), "resources"),
    (lambda r: r.update(extra=object()), "plain JSON"),
])
def test_invalid_reports_name_the_key(mutate, match):
    r = _report()
    mutate(r)
    with pytest.raises(ReportError, match=match):
        validate_report(r)
