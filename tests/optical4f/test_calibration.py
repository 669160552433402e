"""Calibration on training images: fixed at compile time, used unchanged, never the test split."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from hwgen.errors import TargetError  # noqa: E402
from hwgen.ir import Graph, Node, Tensor  # noqa: E402
from optical4f import load_config  # noqa: E402
from optical4f.calibration import Calibration, LayerCalibration, calibrate  # noqa: E402
from optical4f.conv import conv2d  # noqa: E402

F32 = np.dtype(np.float32)
# an exact optical path: no noise, no quantisation, no fixed pattern, samples not pixels
EXACT = {"sim.noise": "false", "camera.bits": "0", "input_modulator.bits": "0", "fourier_modulator.bits": "0",
         "sim.precision": "complex128", "sim.slm_pixels": "false", "camera.prnu": "0", "camera.dsnu_e": "0",
         "camera.read_noise_e": "0", "camera.gain_error": "0", "camera.dark_current_e_per_s": "0",
         "sim.frame_px": "64", "lens.focal_length_m": str(64 * 20e-6 * 16e-6 / 532e-9)}


def _graph(batch: int) -> Graph:
    """x[B,1,8,8] -> Conv (w[2,1,3,3], pads 1, bias)."""
    rng = np.random.default_rng(0)
    g = Graph("one-conv")
    g.add_tensor(Tensor("x", (batch, 1, 8, 8), F32))
    g.inputs = ["x"]
    g.add_const("w", rng.standard_normal((2, 1, 3, 3)).astype(np.float32))
    g.add_const("b", np.array([0.5, -0.25], np.float32))
    g.add_tensor(Tensor("y", (batch, 2, 8, 8), F32))
    g.nodes = [Node("Conv", "conv", ["x", "w", "b"], ["y"], {"pads": [1, 1, 1, 1], "group": 1, "kernel_shape": [3, 3]})]
    g.outputs = ["y"]
    g.check()
    return g


def _ref(x, w):
    return F.conv2d(torch.from_numpy(np.asarray(x, np.float64)), torch.from_numpy(np.asarray(w, np.float64)),
                    padding=1).numpy()


def test_inputs_beyond_the_calibrated_full_scale_saturate():
    """The DAC full scale is fixed by the calibration: larger inputs clip, as the modulator would."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 8, 8))
    w = rng.standard_normal((2, 1, 3, 3))
    cfg = load_config("realistic", EXACT)
    lc = LayerCalibration(input_full_scale=0.5)
    y = conv2d(x, w, padding=1, config=cfg, calibration=lc)
    np.testing.assert_allclose(y, _ref(np.clip(x, -0.5, 0.5), w), atol=1e-9)
    assert np.abs(y - _ref(x, w)).max() > 0.1  # the clipping is real
    assert lc.exposure_e  # the exposures were measured on this call (not frozen)


def test_exposure_is_fixed_and_brighter_frames_saturate():
    rng = np.random.default_rng(2)
    x = np.abs(rng.standard_normal((3, 1, 8, 8)))
    w = np.abs(rng.standard_normal((1, 1, 3, 3)))
    cfg = load_config("realistic", EXACT)
    lc = LayerCalibration()
    conv2d(x, w, padding=1, config=cfg, calibration=lc)  # calibrate on x: brightest pixel at 0.9 full well
    lc.frozen = True
    y = conv2d(2 * x, w, padding=1, config=cfg, calibration=lc)
    ref = _ref(np.minimum(2 * x, lc.input_full_scale), w)
    # intensities above full well (1/0.9 of the calibration's peak) are clipped: amplitude <= sqrt(1/0.9) x peak
    cap = np.sqrt(1 / 0.9) * _ref(x, w).max()
    assert y.max() == pytest.approx(cap, rel=1e-6)
    low = ref < 0.9 * cap
    np.testing.assert_allclose(y[low], ref[low], atol=1e-9)


def test_frozen_calibration_without_a_value_is_a_clear_error():
    cfg = load_config("realistic", EXACT)
    x, w = np.ones((1, 1, 8, 8)), np.ones((1, 1, 3, 3))
    with pytest.raises(TargetError, match="no exposure for filter 0/0"):
        conv2d(x, w, padding=1, config=cfg, calibration=LayerCalibration(input_full_scale=1.0, frozen=True))
    with pytest.raises(TargetError, match="no input full scale"):
        conv2d(x, w, padding=1, config=cfg, calibration=LayerCalibration(frozen=True))


def test_the_layer_scale_absorbs_the_camera_gain_error():
    """Electronics use the nominal conversion gain; a 10 % gain error scales the amplitude by
    1/sqrt(1.1), and the calibration's least-squares scale undoes it (bias left to electronics)."""
    g = _graph(4)
    x = np.random.default_rng(3).random((4, 1, 8, 8)).astype(np.float32)
    cal = calibrate(g, x, load_config("realistic", {**EXACT, "camera.gain_error": "0.1"}))
    assert cal.layer("conv").scale == pytest.approx(np.sqrt(1.1), rel=1e-6)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))  # what the compiled plan stores (JSON)
    assert back.layer("conv").frozen and back.layer("conv").exposure_e == cal.layer("conv").exposure_e


def test_accuracy_calibrates_on_training_images_only(monkeypatch):
    """accuracy() never shows the test split to the calibration: every calibration image is
    a training image, none equals a test image."""
    pytest.importorskip("sklearn")
    import optical4f.evaluate as ev
    from models.data import load_split

    xtr, _, xte, _ = load_split()
    seen = []
    real = ev.calibrate

    def spy(graph, x_cal, config=None, seed=12345):
        seen.append(np.asarray(x_cal))
        return real(graph, x_cal, config, seed)

    monkeypatch.setattr(ev, "calibrate", spy)
    g = _graph(6)
    # the one-conv "classifier": logits are the conv output flattened
    x, y = xte[:6], np.zeros((6, 2, 8), np.int64)
    ev.accuracy(g, x, y, load_config("realistic", EXACT))
    (cal_x,) = seen
    flat_te = {row.tobytes() for row in xte.reshape(len(xte), -1)}
    flat_tr = {row.tobytes() for row in xtr.reshape(len(xtr), -1)}
    rows = [r.tobytes() for r in cal_x.astype(xte.dtype).reshape(len(cal_x), -1)]
    assert all(r in flat_tr for r in rows)
    assert not any(r in flat_te for r in rows)
