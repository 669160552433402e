"""convsharevit-tiny on digits: digital vs optical test accuracy, calibrated on training images
(slow: ~20-40 s of CPU per preset, calibration included)."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

import hwgen  # noqa: E402
from optical4f.evaluate import accuracy, digits_test_split  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data():
    x, y = digits_test_split()
    return hwgen.load("convsharevit-tiny", batch=len(y)), x, y


def test_ideal_optics_are_the_digital_model(data):
    r = accuracy(*data, config="ideal")
    assert r["agreement"] == 1.0 and r["accuracy_drop_points"] == 0.0
    assert r["logits_rel_error"] < 1e-5


def test_realistic_preset_loses_at_most_one_point(data):
    r = accuracy(*data, config="realistic")
    assert r["digital_accuracy"] > 0.9
    assert r["accuracy_drop_points"] <= 1.0, r
