"""The accelerator's arithmetic on the whole digits test split: within 1 point of float.

``numerics="fixed"`` evaluates the FPGA hardware graph (task bound, linear layers with
their bias, fixed<32,10> activations and fixed<16,2> weights) in hwgen's bit-accurate
interpreter: what `hwgen simulate` proves the RTL computes, bit for bit.
"""

from __future__ import annotations

import pytest

from models.evaluate import evaluate_onnx
from models.registry import resolve_model

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["vit-tiny", "m3vit-tiny", "convsharevit-tiny", "convsharevit-tiny-valid"])
def test_fixed_point_within_one_point_of_float(name):
    path = resolve_model(name)
    flt = evaluate_onnx(path, numerics="float")
    fixed = evaluate_onnx(path, numerics="fixed")
    assert len(fixed) == len(flt)
    for task, (a, b) in enumerate(zip(flt, fixed)):
        assert abs(a - b) <= 0.01, f"{name} task {task}: float {a:.3f}, fixed {b:.3f}"
        assert b > 0.9  # and the model still works
