"""The resource estimator against recorded Yosys runs (fast), and the runs re-synthesised (opt-in)."""

from __future__ import annotations

import os
import time

import pytest

from fpga.config import PARTS, AcceleratorConfig
from fpga.cost.calibration import RUNS, load_predictions, load_runs, run_config, run_ops, select_runs
from fpga.cost.resources import (bram36_of_memory, coefficients, dsp_of_product, estimate_resources,
                                 fit_coefficients, memory_in_bram)

KEYS = ("lut", "ff", "dsp", "bram36")
#: The documented tolerance (docs/fpga-resources-and-clock.md, the issue's figure): each of LUT,
#: FF, DSP and BRAM36 of every held-out top within 15 % of Yosys.
TOLERANCE = 0.15


def _checks():
    return [r for r in load_runs() if r["role"] == "check"]


#: Recorded checks the estimator misses by more than 15 % (the issue is not met for them):
#: name -> what misses. strict xfail: fixing the model turns them into failures to update here.
KNOWN_MISSES = {}


def _check_params():
    return [pytest.param(r["name"], marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[r["name"]]))
            if r["name"] in KNOWN_MISSES else r["name"] for r in _checks()]


@pytest.mark.parametrize("name", _check_params())
def test_estimator_within_15_percent_of_yosys_on_held_out_tops(name):
    """A recorded whole top (held out of the fit) within 15 % on LUT, FF, DSP, BRAM36."""
    r = {r["name"]: r for r in _checks()}[name]
    if r.get("stale"):  # visible in every run's summary: the check is not a check of this RTL
        pytest.skip(f"STALE Yosys figures: {r['stale']}")
    est = estimate_resources(run_config(r), ops=run_ops(r), buffer_words=r["buffer_words"])
    bad = [f"{k}: estimate {est[k]} vs Yosys {r['resources'][k]} ({est[k] / r['resources'][k] - 1:+.1%})"
           for k in KEYS if abs(est[k] - r["resources"][k]) > TOLERANCE * r["resources"][k]]
    assert not bad, "; ".join(bad)


def test_five_recorded_checks_of_the_current_runs():
    # the issue asks for 5 configurations; every check of RUNS is recorded
    assert len({r["config"] for r in _checks()}) >= 5
    assert {r["name"] for r in _checks()} == {r["name"] for r in RUNS if r["role"] == "check"}


def test_blind_checks_have_their_prediction_recorded():
    # a blind check's estimate was written to the JSON (and committed) before Yosys ran on it
    preds = load_predictions()
    blind = [r["name"] for r in RUNS if r.get("blind")]
    assert blind and set(blind) <= set(preds)
    for n in blind:
        assert all(isinstance(preds[n][k], (int, float)) and preds[n][k] > 0 for k in KEYS), preds[n]


def test_select_runs_for_an_engine_change():
    names = [r["name"] for r in select_runs(["linear", "LayerNorm"])]
    assert names and all(n.endswith((":LINEAR", ":LAYERNORM")) for n in names)
    assert "small:LINEAR" in names and "small:LAYERNORM" in names
    with_checks = {r["name"] for r in select_runs(["attention"], checks=True)}
    assert {r["name"] for r in RUNS if r["role"] == "check"} <= with_checks
    assert {r["name"] for r in select_runs(["none"])} == {r["name"] for r in RUNS if r["ops"] == []}
    with pytest.raises(ValueError, match="unknown engine 'linea'; known: none, linear"):
        select_runs(["linea"])


def test_coefficients_come_from_the_fit_runs_only():
    runs = load_runs()
    fit_only = [r for r in runs if r["role"] == "fit"]
    assert fit_coefficients(fit_only) == coefficients()
    assert {r["name"] for r in runs} <= {r["name"] for r in RUNS}


def test_estimate_is_fast_and_adds_up():
    configs = [run_config(r) for r in RUNS] + [AcceleratorConfig()]
    t0 = time.perf_counter()
    for c in configs:
        est = estimate_resources(c)
    per = (time.perf_counter() - t0) / len(configs)
    assert per < 0.05, f"{per * 1e3:.1f} ms per estimate"
    for k in KEYS:  # the total is the sum of the per-engine breakdown
        assert est[k] == pytest.approx(sum(e[k] for e in est["engines"].values()), abs=len(est["engines"]))
    only = estimate_resources(AcceleratorConfig(), ops=["GELU"])
    assert set(only["engines"]) == {"shared", "GELU"} and only["lut"] < est["lut"]


def test_block_ram_tiling_matches_yosys():
    # the recorded tops without engines: the buffer alone is their block RAM
    for r in load_runs():
        if r["ops"] == []:
            c = run_config(r)
            assert bram36_of_memory(r["buffer_words"], c.mem_port_bits) == r["resources"]["bram36"], r["name"]
    # docs/fpga-architecture.md: the default 12,384 x 256-bit buffer took 189 RAMB18E2 + 3 RAMB36E2
    assert bram36_of_memory(12_384, 256) == 189 / 2 + 3
    # the default top's activation store, 512 lines of 16 x 256 bits written a row at a time:
    # +58 BRAM36 in Yosys (each 256-bit row takes 29 of the 8 9-bit byte lanes of a RAMB36)
    assert bram36_of_memory(512, 16 * 256, 16) == 58


def test_lut_ram_or_block_ram_as_yosys_chose():
    # LayerNorm row memories synthesised before the lanes-wide unit: 64 x 96 and 128 x 48 bits in
    # LUT RAM, 256 x 96 and 1,024 x 96 in block RAM; the default LayerNorm's 384 x 256 row and
    # 128 x 256 gamma and beta (+9 BRAM36 over the 3 of the old 1,024 x 96 row)
    assert [memory_in_bram(d, w) for d, w in ((64, 96), (128, 48), (256, 96), (1024, 96), (384, 256), (128, 256))] \
        == [False, False, True, True, True, True]
    assert bram36_of_memory(384, 256) + 2 * bram36_of_memory(128, 256) == 12


def test_dsp_tiles_of_products():
    # measured (tests/fpga/test_synth.py, docs/fpga-architecture.md): 32 x 16 bits on two
    # DSP48E2, 32 x 32 on four; 27 x 18 fits one
    assert (dsp_of_product(32, 16), dsp_of_product(32, 32), dsp_of_product(27, 18), dsp_of_product(8, 8)) == (2, 4, 1, 1)


def test_overflow_names_what_does_not_fit():
    big = AcceleratorConfig(mac_rows=36, mac_cols=64, weight_buffer_bytes=2 * 64 * 64 * 2, attention_queries=4)
    est = estimate_resources(big)
    part = PARTS["zcu102"]
    assert not est["fits"] and "dsp" in est["overflow"]
    needed, available = est["overflow"]["dsp"]
    assert available == part.dsp and needed > part.dsp  # 2,304 products of 32 x 16 bits: two DSPs each
    assert estimate_resources(run_config(RUNS[0]))["fits"]


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HWGEN_SYNTH_CALIBRATION") != "1",
                    reason="re-synthesises the recorded tops: about an hour of one core; set HWGEN_SYNTH_CALIBRATION=1")
@pytest.mark.parametrize("name", [r["name"] for r in RUNS if r["role"] == "check"])
def test_recorded_runs_resynthesise_to_the_same_counts(name):
    from fpga.hdl.top import Accelerator
    from fpga.synth import synthesize

    rec = {r["name"]: r for r in load_runs()}[name]
    res = synthesize(Accelerator(run_config(rec), buffer_words=rec["buffer_words"], ops=run_ops(rec)), "accelerator")
    for k in KEYS:
        assert res[k] == rec["resources"][k], (k, res[k], rec["resources"][k])


def test_a_run_older_than_the_shared_part_is_taken_less_its_own_baseline():
    # one fit point: the engine's scale is (run - the top without engines it was measured with) / count
    from fpga.cost.resources import features

    res = {"lut": 5000, "ff": 1500, "dsp": 8, "bram36": 7.5}
    none = {"name": "small:none", "config": "small", "ops": [], "role": "fit",
            "resources": {"lut": 650, "ff": 293, "dsp": 0, "bram36": 7.5}}
    old = {"name": "small:GELU", "config": "small", "ops": ["GELU"], "role": "fit", "resources": res,
           "baseline": {"resources": {"lut": 514, "ff": 240, "dsp": 0, "bram36": 7.5}}}
    count = features(run_config(old), "GELU")
    k = fit_coefficients([none, old])["GELU"]
    assert k["lut"][0] == pytest.approx((5000 - 514) / count["lut"], abs=1e-4)
    assert k["ff"][0] == pytest.approx((1500 - 240) / count["ff"], abs=1e-4)
    new = {**old, "baseline": None}
    del new["baseline"]
    assert fit_coefficients([none, new])["GELU"]["lut"][0] == pytest.approx((5000 - 650) / count["lut"], abs=1e-4)
