"""The hwgen command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import hwgen_cmd


def run(*args, cwd=None):
    return subprocess.run(hwgen_cmd() + list(args), capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("sub", [[], ["inspect"], ["compile"], ["run"], ["targets"]])
def test_help(sub):
    r = run(*sub, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def test_bad_model_clean_error_no_output(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    out = tmp_path / "out"
    r = run("compile", str(bad), "--target", "optical4f", "-o", str(out))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and str(bad) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_unknown_target_lists_known(mlp_model, save, tmp_path):
    r = run("compile", str(save(mlp_model)), "--target", "asic", "-o", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "unknown target 'asic'" in r.stderr and "optical4f" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_inspect_json_counts(mlp_model, save):
    import json

    r = run("inspect", str(save(mlp_model)), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["parameters"] == 8 * 4 + 8 + 8 * 3
    assert s["macs"] == 4 * 8 + 8 * 3
    assert s["inputs"]["x"][0] == [1, 4]
    # where each target runs each node: the mlp's Relu has no FPGA engine, the optics place convolutions only
    fpga = s["placement"]["fpga"]
    assert fpga["relu"] == {"op": "Relu", "where": "host: no engine runs Relu"}
    assert [v["where"] for k, v in fpga.items() if k != "relu"] == ["engine", "engine"]  # fc1, fc2 as LINEARs
    assert s["placement"]["optical4f"] == {}


def test_inspect_says_where_a_cnn_runs(save):
    """A conv net with padding and pooling: the FPGA runs padded 3x3 convs and MaxPool on the
    host and says why; the optics take the convolutions."""
    import json

    import numpy as np
    from onnx import TensorProto, helper

    from conftest import make_model

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2])]
    m = make_model(nodes, [("x", TensorProto.FLOAT, [1, 1, 8, 8])], [("y", TensorProto.FLOAT, [1, 4, 4, 4])],
                   [("w", rng.standard_normal((4, 1, 3, 3)).astype(np.float32))])
    r = run("inspect", str(save(m)), "--json")
    assert r.returncode == 0, r.stderr
    where = json.loads(r.stdout)["placement"]
    assert where["fpga"]["pool"] == {"op": "MaxPool", "where": "host: no engine runs MaxPool"}
    assert where["fpga"]["conv"]["where"].startswith("host: ") and "stride" in where["fpga"]["conv"]["where"]
    assert set(where["optical4f"]) == {"conv"}
    r = run("inspect", str(save(m)))
    assert r.returncode == 0, r.stderr
    assert "fpga: ops on the host" in r.stdout and "MaxPool" in r.stdout


def test_run_prints_outputs(mlp_model, save):
    r = run("run", str(save(mlp_model)), "--numerics", "fixed")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("y [1, 3]")


def _ln_eps_outside_sqrt():
    """(x - mean) / (sqrt(var) + eps) * gamma: looks like LayerNorm, is not."""
    import numpy as np
    from onnx import TensorProto, helper

    from conftest import make_model

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1], keepdims=1, name="mean"),
        helper.make_node("Sub", ["x", "m"], ["d"], name="center"),
        helper.make_node("Mul", ["d", "d"], ["d2"], name="square"),
        helper.make_node("ReduceMean", ["d2"], ["v"], axes=[-1], keepdims=1, name="var"),
        helper.make_node("Sqrt", ["v"], ["s0"], name="root"),
        helper.make_node("Add", ["s0", "eps"], ["s"], name="plus_eps"),
        helper.make_node("Div", ["d", "s"], ["n"], name="normalise"),
        helper.make_node("Mul", ["n", "gamma"], ["y"], name="scale"),
    ]
    inits = [("eps", np.float32(1e-5)), ("gamma", np.linspace(0.5, 1.5, 16).astype(np.float32))]
    return make_model(nodes, [("x", TensorProto.FLOAT, [2, 16])], [("y", TensorProto.FLOAT, [2, 16])], inits)


def test_inspect_lists_regions_that_were_not_fused(save):
    import json

    p = save(_ln_eps_outside_sqrt())
    r = run("inspect", str(p), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["layernorm"] == 0
    (rej,) = s["rejected"]
    assert rej["pattern"] == "layernorm" and rej["anchor"] == "mean" and rej["anchor_op"] == "ReduceMean"
    assert {"center", "root", "plus_eps", "normalise", "scale"} <= set(rej["nodes"])
    assert "LayerNormalization(axis=-1, epsilon=1e-05)" in rej["why"] and "differs by" in rej["why"]
    r = run("inspect", str(p))
    assert r.returncode == 0, r.stderr
    assert "not fused" in r.stdout and "layernorm" in r.stdout and "mean (ReduceMean)" in r.stdout
