"""The camera's noise statistics (exact Poisson below 20 e-, Gaussian N(λ, λ + read²) from
20 e- on, Box-Muller normals) and the batched frame path (two real frames per complex
transform, passes on threads) against one frame at a time and a direct formula.

Statistical tolerances are ``Z`` standard errors of the estimate for the sample size used
(a false failure has probability < 1e-6 per check); the seeds are fixed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optical4f import load_config
from optical4f.devices import Camera
from optical4f.physics import (camera_detect, constrain_filter, frame_geometry, kernel_filter, run_frames,
                               standard_normals)

Z = 5.0


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_box_muller_normals_are_standard_and_independent():
    n = 1 << 20
    z = standard_normals(np.random.default_rng(3), n)
    assert z.dtype == np.float32 and z.shape == (n,)
    z = z.astype(np.float64)
    assert abs(z.mean()) < Z / math.sqrt(n)
    assert abs(z.var() - 1.0) < Z * math.sqrt(2.0 / n)
    assert abs((z ** 4).mean() - 3.0) < Z * math.sqrt(96.0 / n)  # Var(z⁴) = 105 - 9
    for x in (-3.0, -1.96, -1.0, 0.0, 0.5, 1.0, 1.96, 3.0):  # the CDF at a few points
        p = _phi(x)
        assert abs((z <= x).mean() - p) < Z * math.sqrt(p * (1 - p) / n), x
    # the two normals of one draw share its radius: they must still be uncorrelated, also in z²
    a, b = z[: n // 2], z[n // 2:]
    assert abs(np.corrcoef(a, b)[0, 1]) < Z / math.sqrt(n // 2)
    assert abs(np.corrcoef(a * a, b * b)[0, 1]) < Z / math.sqrt(n // 2)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < Z / math.sqrt(n)
    assert np.abs(z).max() <= math.sqrt(46 * math.log(2)) + 1e-6


def test_box_muller_odd_sizes_and_out():
    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 4097):
        assert standard_normals(rng, size).shape == (size,)
    out = np.full(9, np.nan, np.float32)
    res = standard_normals(rng, 9, out)
    assert np.shares_memory(res, out) and np.isfinite(out).all()


@pytest.mark.parametrize("lam, read_e", [(0.3, 0.0), (5.0, 0.0), (19.0, 0.0), (20.0, 2.0), (150.0, 2.0), (2.5e4, 1.6)])
def test_camera_counts_have_mean_and_variance_of_lambda(lam, read_e):
    """Mean = λ and variance = λ + read² of the counts, in the exact-Poisson branch (λ < 20,
    whole electrons) and in the Gaussian one (λ >= 20); no ADC, so no quantisation term."""
    full_well = 1e5
    cam = Camera(read_noise_e=read_e, full_well_e=full_well, bits=0, shot_noise=True)
    shape = (4, 128, 128)
    inten = np.full(shape, lam / (0.5 * full_well))
    inten[:, 0, 0] = 1.0  # exposure: the brightest pixel at 0.5 x full well, so 1.0 -> 5e4 e-
    e = camera_detect(inten, cam, 0.5, True, np.random.default_rng(int(lam * 10))) * (0.5 * full_well)
    vals = e[:, 1:, :].astype(np.float64).ravel()
    n = vals.size
    var = lam + read_e ** 2
    kurt = 1.0 / lam if lam < 20 else 0.0  # excess kurtosis of the count
    assert abs(vals.mean() - lam) < Z * math.sqrt(var / n)
    assert abs(vals.var(ddof=1) - var) < Z * var * math.sqrt(2.0 / (n - 1) + kurt / n)
    if lam < 20:
        assert np.allclose(vals, np.round(vals), atol=1e-3 * max(lam, 1.0))  # whole electrons


def _realistic(n: int, **sim):
    cfg = load_config("realistic", {"sim.frame_px": str(n), "lens.focal_length_m": str(n * 20e-6 * 16e-6 / 532e-9)})
    return cfg.replace(input_modulator={"resolution": (4096, 4096)}, camera={"resolution": (4096, 4096)},
                       fourier_modulator={"resolution": (2 * n, 2 * n)}, sim=sim)


def _filter(cfg, n: int, seed: int = 2):
    plane = np.zeros((n, n))
    plane[:3, :4] = np.random.default_rng(seed).random((3, 4))
    h, _ = kernel_filter(plane[None], np.complex128)
    return constrain_filter(h, cfg.fourier_modulator, frame_geometry(cfg, n))  # phase-only, quantised


@pytest.mark.parametrize("precision, tol", [("complex64", 2e-5), ("complex128", 1e-12)])
@pytest.mark.parametrize("frames", [2, 5])
def test_batched_frames_equal_one_at_a_time_and_the_formula(precision, tol, frames):
    """Without noise and ADC, a batch (real frames in pairs, an odd one alone) gives each
    frame's |ifft(H · fft(u))| (the read-out orientation) as single-frame calls do."""
    n = 48
    cfg = _realistic(n, noise=False, precision=precision)
    cfg = cfg.replace(camera={"bits": 0})
    geom = frame_geometry(cfg, n)
    filt = _filter(cfg, n)
    x = np.random.default_rng(1).random((frames, n, n))
    batch = run_frames(x, filt, cfg, geom)
    ref = np.abs(np.fft.ifft2(np.fft.fft2(x) * filt))
    scale = ref.max()
    np.testing.assert_allclose(batch, ref, rtol=0, atol=tol * scale)
    single = np.concatenate([run_frames(x[i:i + 1], filt, cfg, geom) for i in range(frames)])
    np.testing.assert_allclose(batch, single, rtol=0, atol=tol * scale)


def test_threads_do_not_change_the_result():
    n = 64
    cfg1 = _realistic(n, threads=1)
    geom = frame_geometry(cfg1, n)
    filt = _filter(cfg1, n).astype(np.complex64)
    x = np.random.default_rng(4).random((41, n, n)).astype(np.float32)  # several passes, an odd tail
    a = run_frames(x, filt, cfg1, geom, np.random.default_rng(9))
    b = run_frames(x, filt, cfg1.replace(sim={"threads": 2}), geom, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    c = run_frames(x, filt, cfg1, geom, np.random.default_rng(10))
    assert not np.array_equal(a, c)  # the noise is there and follows the generator


def test_camera_plane_is_the_camera_orientation():
    n = 32
    cfg = _realistic(n, noise=False)
    geom = frame_geometry(cfg, n)
    x = np.random.default_rng(5).random((3, n, n)).astype(np.float32)
    amp, planes = run_frames(x, _filter(cfg, n), cfg, geom, keep_planes=True)
    # the camera sees sample -n (mod N) of the read-out frame
    np.testing.assert_allclose(np.roll(np.flip(planes["camera"]), 1, axis=(0, 1)), amp[0] ** 2, rtol=1e-5,
                               atol=1e-6 * planes["camera"].max())
