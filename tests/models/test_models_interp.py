"""hwgen's reference interpreter (float) agrees with onnxruntime on the shipped models.

Skips (naming the missing ops) while hwgen.interp lacks an op that a model uses; it runs
as soon as the interpreter's ops land."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("torch")

import hwgen  # noqa: E402
from hwgen.interp import supported_ops  # noqa: E402

from models.data import load_split  # noqa: E402
from models.registry import data_dir  # noqa: E402

pytestmark = pytest.mark.torch

SHIPPED = ["vit-tiny", "m3vit-tiny", "m3vit-tiny-sparse", "convsharevit-tiny", "convsharevit-tiny-valid"]


def _require_ops(path):
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    missing = sorted(ops - set(supported_ops()))
    if missing:
        pytest.skip(f"hwgen.interp does not support yet: {', '.join(missing)}")


@pytest.mark.parametrize("name", SHIPPED)
def test_interpret_equals_onnxruntime(name):
    path = data_dir() / f"{name}.onnx"
    _require_ops(path)
    x = load_split()[2][:4]
    g = hwgen.load(str(path), batch=1)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tasks = [0, 1] if "task" in g.inputs else [None]
    for task in tasks:
        for i in range(len(x)):
            feeds = {"image": x[i : i + 1]}
            if task is not None:
                feeds["task"] = np.array(task, dtype=np.int64)
            got = hwgen.interpret(g, feeds)
            want = sess.run(None, feeds)
            for o, w in zip(g.outputs, want):
                np.testing.assert_allclose(got[o], w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["vit-tiny", "m3vit-tiny-sparse"])
def test_eval_through_hwgen_interpret(name):
    from click.testing import CliRunner

    from models.cli import models

    _require_ops(data_dir() / f"{name}.onnx")
    r = CliRunner().invoke(models, ["eval", name, "--limit", "40"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "via hwgen" in r.output
    assert r.output.strip().splitlines()[-1].startswith("accuracy: ")


@pytest.mark.parametrize("name", SHIPPED)
def test_hwgen_counts_the_same_macs(name):
    """hwgen's MAC count of the canonicalised graph equals the models' own analytic count:
    both formulations become one hwgen.MoE op, which counts the k routed experts."""
    from hwgen.analysis import total_macs
    from hwgen.passes import canonicalize

    from models.registry import model_info

    path = data_dir() / f"{name}.onnx"
    _require_ops(path)
    info = model_info(name)
    want = info["macs"]
    assert total_macs(canonicalize(hwgen.load(str(path)))) == want
