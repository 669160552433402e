"""Pixel-level phase-only Fourier filter (optical4f.encoding): the fast path against a brute-force
2N x 2N transform, the double-phase pixel pair's response against its analytic form, and the
conv against torch."""

from __future__ import annotations

import numpy as np
import pytest

from optical4f import load_config
from optical4f.devices import Modulator
from optical4f.encoding import intensity_pixels, output_envelope, pixel_field, pixel_filter, pixel_intensities
from optical4f.physics import kernel_filter

N = 32


def _filter(bits=0, fill=0.9, seed=0):
    rng = np.random.default_rng(seed)
    plane = np.zeros((N, N))
    plane[:3, :3] = rng.standard_normal((3, 3))
    h, _ = kernel_filter(plane[None], np.complex128)
    return h[0], pixel_filter(h[0], Modulator(bits=bits, modulation="phase"), (N, N), fill, np.complex128)


def test_paired_pruned_transform_equals_brute_force():
    _, t2 = _filter(bits=6)
    rng = np.random.default_rng(1)
    frames = rng.random((5, N, N))  # odd: pairs and a lone frame
    env = output_envelope(N, 0.95)
    out = np.empty_like(frames)
    intensity_pixels(frames, t2, env, np.complex128, out)
    big = np.zeros((5, 2 * N, 2 * N))
    big[:, :N, :N] = frames
    field = np.fft.ifft2(np.fft.fft2(big) * t2)[:, :N, :N] * np.outer(env, env)
    np.testing.assert_allclose(out, np.abs(field) ** 2, rtol=0, atol=1e-12 * np.abs(field).max() ** 2)
    # dark rows skipped and only the rows read computed: the same numbers there, zeros below
    frames[:, 20:] = 0
    big[:, 20:N] = 0
    field = np.fft.ifft2(np.fft.fft2(big) * t2)[:, :N, :N] * np.outer(env, env)
    intensity_pixels(frames, t2, env, np.complex128, out, rows=24, cols=17)
    np.testing.assert_allclose(out[:, :24, :17], np.abs(field[:, :24, :17]) ** 2, rtol=0,
                               atol=1e-12 * np.abs(field).max() ** 2)
    assert not out[:, 24:].any() and not out[:, :, 17:].any()
    intensity_pixels(frames[:1], t2, env, np.complex128, out[:1], rows=24)  # a lone frame
    np.testing.assert_allclose(out[0, :24], np.abs(field[0, :24]) ** 2, rtol=0, atol=1e-12 * np.abs(field).max() ** 2)


def test_double_phase_pixels_respond_as_sum_and_shifted_difference():
    """IFFT_2N of the checkerboard field = 1/4 [h_a (1+e1)(1+e2) + h_d (1-e1)(1-e2)], e = exp(iπm/N),
    h_a, h_d the N-grid responses of (e^{iθ1} ± e^{iθ2})/2: the difference term is the higher
    order, at N samples diagonally from the wanted one."""
    h, t2 = _filter(bits=0, fill=0.0)
    theta, phi = np.arccos(np.abs(h)), np.angle(h)
    p1, p2 = np.exp(1j * (phi + theta)), np.exp(1j * (phi - theta))
    ha = np.fft.ifft2((p1 + p2) / 2)  # N-grid responses
    hd = np.fft.ifft2((p1 - p2) / 2)
    m = np.arange(2 * N)
    e = np.exp(1j * np.pi * m / N)
    r = (np.tile(ha, (2, 2)) * np.outer(1 + e, 1 + e) + np.tile(hd, (2, 2)) * np.outer(1 - e, 1 - e)) / 4
    np.testing.assert_allclose(np.fft.ifft2(t2), r, atol=1e-12)
    # unquantised, the sum term is the ideal filter's kernel: (p1 + p2)/2 = h
    np.testing.assert_allclose((p1 + p2) / 2, h, atol=1e-12)


def test_pixel_model_conv_is_close_to_torch_but_not_exact():
    torch = pytest.importorskip("torch")
    import optical4f

    rng = np.random.default_rng(2)
    x = rng.random((4, 1, 8, 8))
    w = rng.standard_normal((2, 1, 3, 3))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    exact = {"sim.noise": "false", "camera.bits": "0", "input_modulator.bits": "0", "fourier_modulator.bits": "0",
             "sim.precision": "complex128", "camera.prnu": "0", "camera.dsnu_e": "0", "camera.read_noise_e": "0",
             "camera.gain_error": "0", "camera.dark_current_e_per_s": "0", "sim.frame_px": "64"}
    cfg = load_config("realistic", exact)
    assert cfg.sim.slm_pixels
    y = optical4f.conv2d(x, w, padding=1, config=cfg.replace(lens={"focal_length_m": 64 * 20e-6 * 16e-6 / 532e-9}))
    err = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    assert 1e-5 < err < 0.02, err  # half-pixel sampling of the spectrum by the pixel pair: small, not zero


def test_quantised_phases_are_the_rounded_phasors():
    # independent: exp(i·round(p/step)·step) of the double-phase pair, on the checkerboard
    h, t2 = _filter(bits=6, fill=0.0)
    step = 2 * np.pi / 64
    theta = np.arccos(np.clip(np.abs(h), 0, 1))
    p0 = np.exp(1j * np.round((np.angle(h) + theta) / step) * step)
    p1 = np.exp(1j * np.round((np.angle(h) - theta) / step) * step)
    np.testing.assert_allclose(t2[0::2, 0::2], p0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t2[1::2, 1::2], p0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t2[0::2, 1::2], p1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t2[1::2, 0::2], p1, rtol=0, atol=1e-12)


def test_fields_sharing_spectra_equal_brute_force_and_the_compact_form_the_dense():
    """pixel_intensities: 7 frames (pairs and a lone frame, chunks of 4) through three compact
    fields (8-bit levels, input envelope, an aperture) on two threads, each against its own
    brute-force 2N x 2N transform; the compact field expands to pixel_filter's."""
    rng = np.random.default_rng(2)
    frames = rng.random((7, N, N))
    frames[:, 25:] = 0  # dark rows: skipped in the forward transform
    env = output_envelope(N, 0.95)
    mod = Modulator(bits=8, modulation="phase")
    fields, dense = [], []
    for seed in (0, 1, 2):
        h, _ = _filter(seed=seed)
        fields.append(pixel_field(h, mod, (N - 6, N - 4), 0.9, np.complex128))
        dense.append(pixel_filter(h, mod, (N - 6, N - 4), 0.9, np.complex128))
        np.testing.assert_array_equal(fields[-1].dense(), dense[-1])
    assert fields[0].levels.dtype == np.uint8 and fields[0].nbytes < dense[0].nbytes / 7
    big = np.zeros((7, 2 * N, 2 * N))
    big[:, :N, :N] = frames
    got = np.full((3, 7, 20, 30), np.nan)

    def sink(k, f0, inten):
        got[k, f0:f0 + inten.shape[0]] = inten

    pixel_intensities(frames, fields, env, np.complex128, sink, rows=20, cols=30, threads=2, chunk=4)
    for k, t2 in enumerate(dense):
        field = np.fft.ifft2(np.fft.fft2(big) * t2)[:, :20, :30] * np.outer(env[:20], env[:30])
        np.testing.assert_allclose(got[k], np.abs(field) ** 2, rtol=0, atol=1e-12 * np.abs(field).max() ** 2)
