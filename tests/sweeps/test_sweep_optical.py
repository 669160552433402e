"""optical4f sweeps on convsharevit-tiny: the cost figures against the cost model's
formula, the report's figures, accuracy shared across cost-only settings."""

from __future__ import annotations

import pytest

from sweeps import parse_spec, run_sweep

# a small frame (and the lens that matches it) keeps the simulation quick; see docs/sweeps.md
SMALL_FRAME = {"sim.frame_px": 128, "lens.focal_length_m": 128 * 20e-6 * 16e-6 / 532e-9}


@pytest.fixture(scope="module")
def optical_run(tmp_path_factory):
    spec = parse_spec({"model": "convsharevit-tiny", "target": "optical4f",
                       "parameters": {"camera.bits": [6, 12], "input_modulator.frame_rate_hz": [180.0, 1440.0],
                                      "camera.frame_rate_hz": [400.0]},
                       "fixed": SMALL_FRAME, "evaluate": {"accuracy": True, "accuracy_images": 16}})
    return run_sweep(spec, tmp_path_factory.mktemp("optical"), workers=1, progress=False)


def test_optical_time_is_frames_times_the_slowest_device_plus_filter_loads(optical_run):
    rows = optical_run.rows
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        period = max(1 / r["input_modulator.frame_rate_hz"], 1 / r["camera.frame_rate_hz"])
        assert r["optical_time_s"] == pytest.approx(r["frames"] * period + r["filter_loads"] / 60.0, rel=1e-12)
        assert r["latency_s"] == pytest.approx(r["optical_time_s"] + r["electronic_time_s"], rel=1e-12)
        assert r["speedup_vs_gpu"] == pytest.approx(r["gpu_latency_s"] / r["latency_s"])
    slow, fast = (next(r for r in rows if r["camera.bits"] == 12 and r["input_modulator.frame_rate_hz"] == f)
                  for f in (180.0, 1440.0))
    assert fast["latency_s"] < slow["latency_s"] and fast["frames"] == slow["frames"]


def test_accuracy_depends_on_bits_and_is_shared_across_frame_rates(optical_run):
    acc = {(r["camera.bits"], r["input_modulator.frame_rate_hz"]): r["accuracy"] for r in optical_run.rows}
    assert acc[(12, 180.0)] == acc[(12, 1440.0)] and acc[(6, 180.0)] == acc[(6, 1440.0)]
    assert acc[(6, 180.0)] < acc[(12, 180.0)]  # 6 camera bits break the model (docs/optical4f.md)
    assert all(r["accuracy_images"] == 16 for r in optical_run.rows)
    assert len(list((optical_run.out_dir / "memo").glob("*.json"))) == 2  # one simulation per bit depth


def test_the_cost_figures_are_the_reports(tmp_path):
    """One point through the whole target (its report) and through the sweep's cost path."""
    import hwgen
    from optical4f.cost import plan_cost  # noqa: F401  (the report's source, named for the reader)
    from optical4f.target import Optical4fTarget

    settings = {"camera.bits": 12, "sim.frame_px": 64, "lens.focal_length_m": 64 * 20e-6 * 16e-6 / 532e-9}
    spec = parse_spec({"model": "vit-tiny", "target": "optical4f", "parameters": {"camera.bits": [12]},
                       "fixed": {k: v for k, v in settings.items() if k != "camera.bits"}})
    row = run_sweep(spec, tmp_path / "sweep", workers=1, progress=False, plots=False).rows[0]
    g = hwgen.canonicalize(hwgen.load("vit-tiny"))
    (tmp_path / "target").mkdir()
    rep = Optical4fTarget().compile(g, tmp_path / "target", {"overrides": {**{k: str(v) for k, v in settings.items()},
                                                                         "ort": "false", "accuracy": "false"}})
    assert row["latency_s"] == pytest.approx(rep["latency_s"], rel=1e-12)
    assert row["energy_j"] == pytest.approx(rep["energy_j"], rel=1e-12)
    assert (row["frames"], row["filter_loads"]) == (rep["frames"], rep["filter_loads"])
