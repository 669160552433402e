"""Realistic presets: the error against a direct convolution is there, bounded and reported."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import optical4f  # noqa: E402
from optical4f import load_config  # noqa: E402


# every imperfection of the realistic preset switched off
OFF = {"sim.noise": "false", "camera.bits": "0", "input_modulator.bits": "0", "fourier_modulator.bits": "0",
       "camera.prnu": "0", "camera.dsnu_e": "0", "camera.gain_error": "0", "camera.dark_current_e_per_s": "0",
       "camera.read_noise_e": "0", "sim.slm_pixels": "false"}


def _rel(y, ref):
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((17, 1, 8, 8))
    w = rng.standard_normal((3, 1, 3, 3))
    return x, w, F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()


@pytest.mark.parametrize("preset", ["realistic", "dmd-highspeed"])
def test_realistic_presets_have_bounded_nonzero_error(data, preset):
    x, w, ref = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the presets are consistent: no sampling warning
        y = optical4f.conv2d(x, w, padding="same", preset=preset)
    err = _rel(y, ref)
    assert 1e-4 < err < 0.15, err


def test_error_sources_add_up(data):
    """Each imperfection alone costs accuracy; all off gives the ideal result back."""
    x, w, ref = data
    base = load_config("realistic", {**OFF, "sim.precision": "complex128"})
    assert _rel(optical4f.conv2d(x, w, padding="same", config=base), ref) < 1e-9
    for key, val in (("sim.noise", "true"), ("camera.bits", "8"), ("input_modulator.bits", "4"), ("fourier_modulator.bits", "4"),
                     ("camera.prnu", "0.01"), ("camera.read_noise_e", "20")):
        cfg = load_config(base, {key: val})
        assert _rel(optical4f.conv2d(x, w, padding="same", config=cfg), ref) > 1e-3, key
    # the pixel-level SLM alone: 17 tiles fill a corner of the 512 frame, where the
    # double-phase pair's half-sample offset and higher order barely matter (measured 8.7e-5)
    pix = _rel(optical4f.conv2d(x, w, padding="same", config=load_config(base, {"sim.slm_pixels": "true"})), ref)
    assert 2e-5 < pix < 1e-3, pix


def test_dmd_bitplanes_are_exact_without_noise(data):
    """A binary modulator showing 8 bit-planes computes the conv of the 8-bit-quantised input."""
    x, w, _ = data
    x = np.abs(x)  # one sign: quantisation of x / max|x| to 255 levels is then easy to mirror
    cfg = load_config("dmd-highspeed", {**OFF, "sim.precision": "complex128"})
    cfg = cfg.replace(input_modulator={"bits": 8})
    y, info = optical4f.conv2d(x, w, padding="same", config=cfg, return_info=True)
    xq = np.round(x / x.max() * 255) / 255 * x.max()
    ref = F.conv2d(torch.from_numpy(xq), torch.from_numpy(w), padding=1).numpy()
    assert _rel(y, ref) < 1e-9
    assert info.tiles == 17 * 8  # 8 bit-planes per tile


def test_more_bits_less_error(data):
    x, w, ref = data
    errs = [_rel(optical4f.conv2d(x, w, padding="same", config=load_config("realistic", {"sim.noise": "false", "camera.bits": str(b)})), ref)
            for b in (6, 10, 16)]
    assert errs[0] > errs[1] > errs[2]
