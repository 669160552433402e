"""hwgen.fixedpoint: round half up and saturation, exact at every width (Python-int
references), defined once; float-then-quantise fallbacks are named."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import hwgen
from hwgen.errors import FixedFallbackWarning
from hwgen.fixedpoint import FixedFormat, exact_mul, requantize, saturate, shift_round
from hwgen.numerics.gelu import gelu_codes
from hwgen.numerics.residual import residual_codes

from conftest import make_model

ROOT = Path(hwgen.__file__).parent


def _ref_shift_round(v: int, s: int) -> int:
    """Round half up in Python integers: floor(v / 2**s + 1/2)."""
    if s <= 0:
        return v * 2 ** -s
    return (2 * v + 2**s) // 2 ** (s + 1)


@pytest.mark.parametrize("shift", [-40, -17, -1, 0, 1, 2, 13, 40, 62, 63, 70])
def test_shift_round_exact_at_int64_edges(shift):
    rng = np.random.default_rng(shift + 100)
    vals = [0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63), 3, -3] + [int(v) for v in rng.integers(-(2**63), 2**63 - 1, 40)]
    got = shift_round(np.array(vals, dtype=np.int64), shift)
    assert [int(g) for g in got] == [_ref_shift_round(v, shift) for v in vals]


def test_shift_round_per_element_shifts():
    q = np.array([5, -5, 7, 2**60, -6, 1])
    s = np.array([1, 2, -3, 0, 1, 64])
    assert [int(v) for v in shift_round(q, s)] == [_ref_shift_round(int(a), int(b)) for a, b in zip(q, s)]


def test_wide_formats_do_not_wrap():
    """The issue's example: 2**46 in fixed<48,48> aligned to 40 fraction bits needs 87
    bits; int64 wrapped it to 0. Exact integers saturate it to the output's maximum."""
    out = FixedFormat(48, 8)
    assert int(residual_codes(2**46, 0, FixedFormat(48, 48), out, out)) == out.qmax
    assert int(residual_codes(-(2**46), 0, FixedFormat(48, 48), out, out)) == out.qmin
    # GELU of the largest integer code of fixed<48,48> is x itself (ReLU beyond 5.5)
    big = FixedFormat(48, 48)
    assert int(gelu_codes(np.array([big.qmax]), big, big)[0]) == big.qmax


def test_saturate_and_requantize_take_python_ints():
    fmt = FixedFormat(8, 8)
    q = np.array([2**70, -(2**70), 3, 127, -129], dtype=object)
    assert saturate(q, fmt).dtype == np.int64
    assert list(saturate(q, fmt)) == [127, -128, 3, 127, -128]
    assert list(requantize(np.array([2**80 + 2**9, -(2**80)], dtype=object), 10, FixedFormat(48, 48))) == [2**47 - 1, -(2**47)]
    assert int(requantize(np.array([3 * 2**9], dtype=object), 10, FixedFormat(8, 8))[0]) == 2  # 1.5 -> 2 (half up)
    assert int(requantize(np.array([-3 * 2**9]), 10, FixedFormat(8, 8))[0]) == -1  # -1.5 -> -1 (half up)


def test_exact_mul():
    a = np.array([2**40, -(2**40), 7])
    b = np.array([2**40, 2**30, -3])
    assert [int(v) for v in exact_mul(a, b)] == [2**80, -(2**70), -21]
    assert exact_mul(np.array([3]), np.array([4])).dtype == np.int64


def test_rounding_and_saturation_are_written_once():
    """Round half up ('+ 2**(s-1)' then a shift) and clamping appear in fixedpoint.py
    only; hwgen.numerics imports them. The float softmax lives in interp/functions.py."""
    half_add = re.compile(r"1 << \(\w+ - 1\)|<< \(shift - 1\)|np\.left_shift\(np\.int64\(1\)")
    clamp = re.compile(r"np\.clip\(|np\.minimum\(np\.maximum\(")
    for path in (ROOT / "numerics").glob("*.py"):
        text = path.read_text()
        assert not half_add.search(text), f"{path.name} writes round-half-up itself"
        assert not clamp.search(text), f"{path.name} writes saturation itself"
    softmax_idiom = re.compile(r"/ (np\.sum\(e\b|den\b|np\.where\(den)")  # exp(x - max) / sum
    for path in (ROOT / "interp").rglob("*.py"):
        if path.name != "functions.py":
            assert not softmax_idiom.search(path.read_text()), f"{path} writes a softmax itself"


# --- float-then-quantise fallbacks are named --------------------------------------------
F = TensorProto.FLOAT


def _fallback_model():
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], name="scaled_gemm", alpha=0.5),
        helper.make_node("Reshape", ["h", "shape"], ["h3"], name="reshape"),
        helper.make_node("LayerNormalization", ["h3", "g", "b"], ["n"], name="ln_axis1", axis=1),
        helper.make_node("Mul", ["n", "n"], ["y"], name="square"),
    ]
    rng = np.random.default_rng(0)
    return make_model(
        nodes,
        [("x", F, [2, 4])],
        [("y", F, [2, 2, 3])],
        [("w", rng.standard_normal((4, 6)).astype(np.float32)), ("shape", np.array([2, 2, 3], np.int64)),
         ("g", np.ones((2, 3), np.float32)), ("b", np.zeros((2, 3), np.float32))],
    )


def test_fallbacks_warn_once_per_node(save):
    g = hwgen.load(save(_fallback_model()))
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            hwgen.interpret(g, {"x": x}, numerics="fixed")
    texts = sorted(str(w.message) for w in caught if issubclass(w.category, FixedFallbackWarning))
    assert len(texts) == 3, texts  # three nodes, each once (the Reshape is exact: silent)
    assert any("'scaled_gemm' (Gemm): Gemm with alpha/beta != 1" in t for t in texts)
    assert any("'ln_axis1' (LayerNormalization): LayerNormalization over axis 1" in t for t in texts)
    assert any("'square' (Mul): no bit-level kernel" in t for t in texts)


def test_exact_ops_do_not_warn(mlp_model, save):
    g = hwgen.load(save(mlp_model))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FixedFallbackWarning)
        hwgen.interpret(g, {"x": np.ones((1, 4), np.float32)}, numerics="fixed")  # Gemm, Relu, MatMul


def test_run_cli_names_fallbacks(save):
    import subprocess

    from conftest import hwgen_cmd

    r = subprocess.run(hwgen_cmd() + ["run", str(save(_fallback_model())), "--numerics", "fixed"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "float-then-quantise at 3 node(s)" in r.stderr
    for name in ("scaled_gemm", "ln_axis1", "square"):
        assert name in r.stderr
    assert r.stdout.startswith("y [2, 2, 3]")
    r = subprocess.run(hwgen_cmd() + ["run", str(save(_fallback_model())), "--numerics", "float"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "float-then-quantise" not in r.stderr
