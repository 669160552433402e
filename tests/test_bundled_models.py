"""The bundled models: float interpretation equals onnxruntime before and after
canonicalisation, and the passes find their attention and MoE layers."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import hwgen
from hwgen.analysis import find_patterns
from hwgen.frontend import bundled_models, sample_inputs

BUNDLED = sorted(bundled_models())


def _feeds(g, seed):
    return sample_inputs(g, seed, int_value=seed % 2)  # both tasks of multi-task models


def test_models_are_bundled():
    assert {"m3vit-tiny", "m3vit-tiny-sparse", "convsharevit-tiny", "vit-tiny"} <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_float_matches_onnxruntime(name):
    path = bundled_models()[name]
    g = hwgen.load(name)
    g2 = hwgen.canonicalize(g)
    sess = ort.InferenceSession(str(path))
    for seed in range(3):
        feeds = _feeds(g, seed)
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        for graph in (g, g2):
            got = hwgen.interpret(graph, feeds)
            for k, w in want.items():
                np.testing.assert_allclose(got[k], w, rtol=1e-4, atol=1e-5, err_msg=f"{name}:{k}")


@pytest.mark.parametrize("name", BUNDLED)
def test_patterns_found(name):
    g = hwgen.canonicalize(hwgen.load(name))
    p = find_patterns(g)
    cfg = _config(name)
    assert len(p.attention) == cfg["depth"], p.attention
    assert all(a["heads"] == cfg["heads"] for a in p.attention)
    assert len(p.moe) == cfg["moe_layers"], p.moe
    for m in p.moe:
        assert m["experts"] == cfg["experts"] and m["top_k"] == cfg["top_k"]
        assert m["gate_is_input_dependent"]  # the gate is chosen by the task input


def _config(name):
    """depth, heads and MoE layout of a bundled model, from the model registry's config
    (plain data; importing it needs no torch)."""
    from models.registry import get_spec

    kw = get_spec(name).kwargs
    moe = kw.get("experts") is not None and kw.get("moe") is not None
    return {
        "depth": kw["depth"],
        "heads": kw["heads"],
        "moe_layers": kw["depth"] // 2 if moe else 0,  # odd layers are MoE
        "experts": kw.get("experts"),
        "top_k": kw.get("top_k"),
    }
