"""Physics sanity of the 4f simulation: Parseval through the lenses, λf scaling of the
Fourier plane, inversion by the second lens, detector statistics, sampling warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from optical4f import OpticalAliasingWarning, load_config
from optical4f.devices import Camera
from optical4f.physics import (camera_detect, centered, constrain_filter, fourier_coords, fourier_pitch, frame_geometry,
                               kernel_filter, lens_ft, matched_pitch)

LAM, F = 532e-9, 0.01


@pytest.mark.parametrize("n", [64, 128, 250])
def test_parseval_through_each_lens(n):
    rng = np.random.default_rng(n)
    u = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
    p = 8e-6
    U, pf = lens_ft(u, p, LAM, F)
    assert pf == pytest.approx(LAM * F / (n * p))
    assert np.sum(np.abs(U) ** 2) * pf ** 2 == pytest.approx(np.sum(np.abs(u) ** 2) * p ** 2, rel=1e-10)
    V, pv = lens_ft(U, pf, LAM, F)
    assert pv == pytest.approx(p)  # unit magnification
    assert np.sum(np.abs(V) ** 2) * pv ** 2 == pytest.approx(np.sum(np.abs(u) ** 2) * p ** 2, rel=1e-10)


def test_two_lenses_invert_the_image():
    rng = np.random.default_rng(0)
    n, p = 32, 10e-6
    u = rng.standard_normal((n, n))
    V, _ = lens_ft(lens_ft(u.astype(complex), p, LAM, F)[0], LAM * F / (n * p), LAM, F)
    inverted = np.roll(np.flip(u, (0, 1)), 1, (0, 1))  # u[-n mod N]
    np.testing.assert_allclose(V, -inverted, atol=1e-12)


@pytest.mark.parametrize("lam,f,k0", [(532e-9, 0.01, 5), (633e-9, 0.2, -12), (1064e-9, 0.05, 30)])
def test_plane_wave_focuses_at_lambda_f_times_frequency(lam, f, k0):
    """A tilted plane wave exp(2πi fx x) focuses at x_f = λ f fx."""
    n, p = 128, 12e-6
    x = np.arange(n) * p
    fx = k0 / (n * p)
    u = np.exp(2j * np.pi * fx * x)[None, :] * np.ones((n, 1))
    U, _ = lens_ft(u, p, lam, f)
    xf = fourier_coords(n, p, lam, f)
    iy, ix = np.unravel_index(np.argmax(np.abs(U)), U.shape)
    assert xf[ix] == pytest.approx(lam * f * fx)
    assert xf[iy] == pytest.approx(0.0)


def test_gaussian_beam_width_scales_with_lambda_f():
    """exp(-r²/w0²) transforms to a Gaussian of waist λf/(π w0) (1/e field radius)."""
    n = 256
    lam, f, w0 = 532e-9, 0.1, 200e-6
    p = matched_pitch(lam, f, n)
    x = (np.arange(n) - n // 2) * p
    r2 = x[None, :] ** 2 + x[:, None] ** 2
    U, pf = lens_ft(np.fft.ifftshift(np.exp(-r2 / w0 ** 2)), p, lam, f)
    prof = np.abs(centered(U))[n // 2]
    xf = (np.arange(n) - n // 2) * pf
    w_meas = np.sqrt(np.sum(xf ** 2 * prof ** 2) / np.sum(prof ** 2)) * 2  # 2 x rms of |U|² = 1/e field radius
    assert w_meas == pytest.approx(lam * f / (np.pi * w0), rel=0.01)


def test_matched_pitch_makes_fourier_pitch_equal():
    n = 1024
    p = matched_pitch(LAM, F, n)
    assert p == pytest.approx(np.sqrt(LAM * F / n))
    assert fourier_pitch(LAM, F, n, p) == pytest.approx(p)


def test_geometry_warnings_name_the_check():
    cfg = load_config("realistic")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame_geometry(cfg, 512)  # the preset is consistent: no warning
    with pytest.warns(OpticalAliasingWarning, match="^fourier_sampling: layerX"):
        frame_geometry(cfg.replace(lens={"focal_length_m": 0.2}), 512, where="layerX")
    small = cfg.replace(fourier_modulator={"resolution": (600, 600)})
    with pytest.warns(OpticalAliasingWarning, match="^fourier_aperture"):
        g = frame_geometry(small, 512)
    # the clipped aperture really removes high frequencies
    plane = np.zeros((1, 512, 512))
    plane[0, 0, 0] = 1.0  # a delta kernel: flat spectrum
    h, _ = kernel_filter(plane, np.complex128)
    filt = constrain_filter(h, small.replace(fourier_modulator={"modulation": "complex", "bits": 0}).fourier_modulator, g)
    assert filt[0, 0, 0] != 0 and filt[0, 256, 256] == 0
    with pytest.raises(ValueError, match="does not fit"):
        frame_geometry(cfg, 1024)


def test_phase_only_double_phase_encoding_is_exact_unquantised():
    cfg = load_config("realistic", {"fourier_modulator.bits": "0"})
    rng = np.random.default_rng(1)
    h = rng.random((1, 16, 16)) * np.exp(2j * np.pi * rng.random((1, 16, 16)))
    geom = frame_geometry(load_config("ideal"), 16)
    np.testing.assert_allclose(constrain_filter(h, cfg.fourier_modulator, geom), h, atol=1e-12)
    q = constrain_filter(h, cfg.replace(fourier_modulator={"bits": 4}).fourier_modulator, geom)
    assert 1e-3 < np.abs(q - h).max() < 0.3  # 16 phase levels: visibly but boundedly off


def test_camera_shot_and_read_noise_statistics():
    cam = Camera(read_noise_e=3.0, full_well_e=1e5, bits=0, shot_noise=True)
    rng = np.random.default_rng(0)
    inten = np.full((4, 128, 128), 0.5)
    inten[:, 0, 0] = 1.0  # exposure: brightest pixel at fill x full well
    e = camera_detect(inten, cam, 0.5, True, rng) * (0.5 * 1e5)  # back to electrons
    vals = e[:, 1:, :].ravel()
    mean_e = 0.5 * 0.5 * 1e5
    assert vals.mean() == pytest.approx(mean_e, rel=1e-3)
    assert vals.var() == pytest.approx(mean_e + 9.0, rel=0.03)
    # ~5 e-: the exact Poisson branch (no read noise, so clipping at 0 does not bias it)
    quiet = Camera(read_noise_e=0.0, full_well_e=1e5, bits=0, shot_noise=True)
    low = camera_detect(np.where(inten > 0.9, 1.0, 1e-4), quiet, 0.5, True, rng) * (0.5 * 1e5)
    lv = low[:, 1:, :].ravel()
    assert lv.mean() == pytest.approx(5.0, abs=0.05)
    assert lv.var() == pytest.approx(5.0, rel=0.05)
    assert np.allclose(lv, np.round(lv))  # whole electrons


def test_adc_quantises_to_its_codes():
    cam = Camera(read_noise_e=0.0, full_well_e=1000.0, bits=4, shot_noise=False)
    inten = np.linspace(0, 1, 1000).reshape(1, 1, 1000)
    det = camera_detect(inten, cam, 1.0, False, np.random.default_rng(0))
    assert len(np.unique(det)) == 16
