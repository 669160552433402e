"""FPGA sweeps on vit-tiny: figures against a full compile, failed rows, resume, Optuna,
the CLI, and the same sweep on a dask LocalCluster."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest

import hwgen
from fpga.cost.resources import estimate_resources
from fpga.compile import compile_graph
from fpga.compile.report import build_report
from fpga.config import PRESETS, AcceleratorConfig
from sweeps import parse_spec, pareto_mask, read_table, run_sweep

GRID = {"model": "vit-tiny", "target": "fpga",
        "parameters": {"mac_rows": [4, 16], "preset": ["edge-moe", "int16"], "clock_hz": [150e6, 300e6]},
        "fixed": {"mac_cols": 16}}


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    data = dict(GRID, parameters=dict(GRID["parameters"], act_buffer_bytes=[129 * 768 * 4, 5_000_000]))
    return out, run_sweep(parse_spec(data), out, workers=2, progress=False)


def _full_compile_report(mac_rows, preset, clock_hz, act_buffer_bytes):
    act, w = PRESETS[preset]
    cfg = AcceleratorConfig(mac_rows=mac_rows, mac_cols=16, act_fmt=act, weight_fmt=w, clock_hz=clock_hz,
                            act_buffer_bytes=act_buffer_bytes)
    g = hwgen.canonicalize(hwgen.load("vit-tiny"))
    return cfg, build_report(compile_graph(g, cfg), "vit-tiny")


def test_every_point_matches_a_full_compile(grid_run):
    out, r = grid_run
    assert len(r.rows) == 16 and r.computed == 16 and r.cached == 0
    for row in r.rows[::3]:
        cfg, rep = _full_compile_report(row["mac_rows"], row["preset"], row["clock_hz"], row["act_buffer_bytes"])
        assert row["latency_s"] == pytest.approx(rep["latency_s"], rel=1e-12)
        assert row["energy_j"] == pytest.approx(rep["energy_j"], rel=1e-12)
        assert row["cycles"] == rep["cycles"]
        est = estimate_resources(cfg)
        assert (row["dsp"], row["lut"], row["bram36"]) == (est["dsp"], est["lut"], est["bram36"])


def test_points_that_do_not_fit_are_rows_with_a_reason(grid_run):
    _, r = grid_run
    big = [row for row in r.rows if row["act_buffer_bytes"] == 5_000_000]
    assert big and all(row["status"] == "does_not_fit" and not row["fits"] for row in big)
    for row in big:  # the activation buffer alone (5 MB) is 1,085 BRAM36 of the part's 912
        assert row["bram36"] > 1085 and f"bram36 {row['bram36']:g} of 912" in row["reason"]
    assert all(row["latency_s"] > 0 for row in big)  # costed all the same
    assert all(row["status"] == "ok" for row in r.rows if row["act_buffer_bytes"] != 5_000_000)


def test_tables_and_plots(grid_run):
    out, r = grid_run
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    table = read_table(out)
    assert [x["key"] for x in rows] == [x["key"] for x in table] == [x["key"] for x in r.rows]
    assert {"mac_rows", "preset", "clock_hz", "status", "reason", "latency_s", "energy_j", "fits", "wall_s"} <= set(rows[0])
    assert [float(x["latency_s"]) for x in rows] == pytest.approx([x["latency_s"] for x in table], rel=1e-12)
    assert (out / "pareto_latency_energy.png").stat().st_size > 10_000


def test_pareto_mask_against_brute_force():
    rng = np.random.default_rng(1)
    pts = rng.integers(0, 6, size=(40, 2)).astype(float)
    rows = [{"status": "ok", "a": a, "b": b} for a, b in pts] + [{"status": "error"}]
    mask = pareto_mask(rows, {"a": "min", "b": "max"})
    for i, (a, b) in enumerate(pts):
        beaten = any(a2 <= a and b2 >= b and (a2 < a or b2 > b) for a2, b2 in pts)
        assert mask[i] == (not beaten)
    assert mask[-1] is False


def test_rerun_computes_nothing_and_an_interrupted_one_continues(grid_run):
    out, first = grid_run
    spec = parse_spec(dict(GRID, parameters=dict(GRID["parameters"], act_buffer_bytes=[129 * 768 * 4, 5_000_000])))
    again = run_sweep(spec, out, workers=2, progress=False, plots=False)
    assert again.computed == 0 and again.cached == 16
    assert [r["latency_s"] for r in again.rows] == [r["latency_s"] for r in first.rows]
    for key in (first.rows[2]["key"], first.rows[7]["key"]):  # as if the sweep had stopped before them
        (out / "cache" / f"{key}.json").unlink()
    resumed = run_sweep(spec, out, workers=1, progress=False, plots=False)
    assert resumed.computed == 2 and resumed.cached == 14
    assert [r["latency_s"] for r in resumed.rows] == [r["latency_s"] for r in first.rows]


def test_invalid_configurations_are_rows(tmp_path):
    spec = parse_spec({"model": "vit-tiny", "target": "fpga", "parameters": {"mac_rows": [4, 64], "mac_cols": [64]},
                       "fixed": {"preset": "int8"}})
    r = run_sweep(spec, tmp_path, workers=1, progress=False, plots=False)
    bad = [x for x in r.rows if x["mac_rows"] == 64]
    assert bad[0]["status"] == "invalid" and "4096 MACs exceed the 2520 DSPs" in bad[0]["reason"]
    assert [x["status"] for x in r.rows if x["mac_rows"] == 4] == ["ok"]


def test_optuna_search_has_its_budget_and_reruns_from_the_cache(tmp_path):
    data = {"model": "vit-tiny", "target": "fpga",
            "parameters": {"mac_rows": [4, 8, 16], "preset": ["edge-moe", "int16"],
                           "clock_hz": {"low": 100_000_000, "high": 400_000_000, "step": 50_000_000}},
            "search": {"method": "optuna", "trials": 6, "batch": 3, "objectives": ["latency_s", "energy_j"], "seed": 3}}
    r = run_sweep(parse_spec(data), tmp_path, workers=2, progress=False, plots=False)
    assert len(r.rows) == 6 == len({x["key"] for x in r.rows}) and r.computed == 6
    assert all(x["status"] == "ok" and 100e6 <= x["clock_hz"] <= 400e6 and x["clock_hz"] % 50e6 == 0 for x in r.rows)
    again = run_sweep(parse_spec(data), tmp_path, workers=1, progress=False, plots=False)
    assert again.computed == 0 and [x["key"] for x in again.rows] == [x["key"] for x in r.rows]


def test_accuracy_in_fixed_point_per_format(tmp_path):
    spec = parse_spec({"model": "vit-tiny", "target": "fpga", "parameters": {"preset": ["edge-moe", "int16"]},
                       "evaluate": {"accuracy": True, "accuracy_images": 20}})
    r = run_sweep(spec, tmp_path, workers=2, progress=False)
    from models.data import load_split
    import onnxruntime as ort

    _, _, x, y = load_split()
    sess = ort.InferenceSession(str(hwgen.frontend.resolve_model("vit-tiny")), providers=["CPUExecutionProvider"])
    float_acc = float((np.concatenate([sess.run(None, {"image": x[i:i + 1]})[0] for i in range(20)]).argmax(-1)
                       == y[0][:20]).mean())
    acc = {row["preset"]: row["accuracy"] for row in r.rows}
    # Edge-MoE's formats keep float accuracy on the digits models (docs); integer-only int16 does not
    assert acc["edge-moe"] == float_acc
    assert acc["int16"] < float_acc - 0.3
    assert (tmp_path / "pareto_latency_accuracy.png").is_file()


def test_cli_writes_the_tables(tmp_path):
    from hwgen.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text('model = "vit-tiny"\ntarget = "fpga"\n[parameters]\nmac_rows = [4, 8]\n')
    assert main(["sweep", str(spec), "-o", str(tmp_path / "res"), "--workers", "1", "--no-progress"]) == 0
    assert [r["mac_rows"] for r in read_table(tmp_path / "res")] == [4, 8]
    spec.write_text('model = "vit-tiny"\ntarget = "fpga"\n')
    assert main(["sweep", str(spec), "-o", str(tmp_path / "res")]) == 2  # a clear error, no traceback


def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    from distributed import LocalCluster

    spec = parse_spec({"model": "vit-tiny", "target": "fpga", "parameters": {"mac_rows": [4, 16], "preset": ["edge-moe", "int16"]}})
    local = run_sweep(spec, tmp_path / "local", workers=1, progress=False, plots=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        r = run_sweep(spec, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False, plots=False)
    assert r.computed == 4
    assert [(x["key"], x["latency_s"], x["energy_j"], x["status"]) for x in r.rows] == \
        [(x["key"], x["latency_s"], x["energy_j"], x["status"]) for x in local.rows]


def test_reuse_gives_the_rows_of_points_computed_from_scratch(tmp_path):
    """A worker keeps hardware graphs per format pair and compiles per cost-only key; each
    row equals that of the point run alone in a process with empty caches (every column
    but the times and the ``compile_reused`` flag)."""
    import itertools
    import shutil

    from sweeps.fpga_point import cache_stats, reset_caches

    def spec(params):
        return parse_spec({"model": "m3vit-tiny", "target": "fpga", "parameters": params})

    params = {"array": [{"mac_rows": 4, "mac_cols": 16}, {"mac_rows": 16, "mac_cols": 32}],
              "preset": ["edge-moe", "int16"],
              # fields the programs do not read (the report does): one compile serves both
              "costs": [{"weight_buffer_bytes": 4096, "attention_queries": 2, "clock_hz": 150e6},
                        {"weight_buffer_bytes": 24576, "attention_queries": 4, "clock_hz": 300e6}]}
    reset_caches()
    shared = run_sweep(spec(params), tmp_path / "shared", workers=1, progress=False, plots=False)
    stats = cache_stats()
    assert len(shared.rows) == 8 and all(r["status"] == "ok" for r in shared.rows)
    # 2 format pairs: 2 hardware graphs built, 2 reused; 4 points compile, 4 reuse a compile
    assert (stats["graph_misses"], stats["graph_hits"]) == (2, 2)
    assert sum(r["compile_reused"] for r in shared.rows) == 4
    assert len({r["latency_s"] for r in shared.rows}) == 8
    by_key = {r["key"]: r for r in shared.rows}
    skip = {"wall_s", "cpu_s", "compile_reused"}
    for i, values in enumerate(itertools.product(*params.values())):
        reset_caches()
        shutil.copytree(tmp_path / "shared" / "graphs", tmp_path / f"alone{i}" / "graphs")
        alone = run_sweep(spec({k: [v] for k, v in zip(params, values)}), tmp_path / f"alone{i}", workers=1,
                          progress=False, plots=False).rows[0]
        assert not alone["compile_reused"] and cache_stats()["graph_hits"] == 0
        row = by_key[alone["key"]]
        cols = {k for k in row if k not in skip and not k.startswith("time_")}
        assert cols == {k for k in alone if k not in skip and not k.startswith("time_")}
        assert {k: row[k] for k in cols} == {k: alone[k] for k in cols}
