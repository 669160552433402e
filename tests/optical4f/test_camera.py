"""The camera model: fixed pattern (PRNU, DSNU), dark reference, gain error, saturation, ADC."""

from __future__ import annotations

import numpy as np
import pytest

from optical4f.camera import camera_pattern, detect_pixels, pattern_at
from optical4f.devices import Camera

N = 256


def _flat(n=N):
    return np.arange(n * n).reshape(n, n)


def test_prnu_is_a_fixed_gain_pattern_of_the_given_spread():
    cam = Camera(prnu=0.02, dsnu_e=0.0, read_noise_e=0.0, bits=0, full_well_e=1e6, shot_noise=False, dark_frames=0)
    inten = np.full((N, N), 0.25)
    pat = pattern_at(cam, N, _flat())
    a = detect_pixels(inten, 4e5, cam, True, np.random.default_rng(0), pat)  # 1e5 e-, no noise sources
    ratio = (a / 0.5) ** 2  # detected / true intensity = 1 + PRNU
    assert ratio.std() == pytest.approx(0.02, rel=0.02)  # 65,536 pixels: sd of the sd ~0.3 %
    again = detect_pixels(inten, 4e5, cam, True, np.random.default_rng(1), pat)
    np.testing.assert_array_equal(a, again)  # fixed: the same pattern whatever the noise seed
    other = Camera(prnu=0.02, dsnu_e=0.0, read_noise_e=0.0, bits=0, full_well_e=1e6, shot_noise=False,
                   dark_frames=0, pattern_seed=2)
    assert not np.allclose(camera_pattern(cam, N)[0], camera_pattern(other, N)[0])  # another camera


def test_dark_reference_leaves_the_averaged_read_noise():
    """DSNU is removed by the calibration's dark reference; what stays is the read noise of
    the dark frames' mean, read / sqrt(dark_frames)."""
    cam = Camera(prnu=0.0, dsnu_e=5.0, read_noise_e=2.0, bits=0, full_well_e=1e6, shot_noise=False, dark_frames=4)
    inten = np.full((N, N), 100.0)
    pat = pattern_at(cam, N, _flat())
    e = detect_pixels(inten, 1.0, cam, False, np.random.default_rng(0), pat) ** 2  # noiseless frame: e- back
    err = e - 100.0
    assert err.std() == pytest.approx(2.0 / np.sqrt(4), rel=0.03)
    assert abs(err.mean()) < 0.02
    assert pat[1].std() == pytest.approx(5.0, rel=0.02)  # the DSNU itself is 5 e- rms


def test_saturation_and_adc_codes_with_a_gain_error():
    cam = Camera(bits=4, full_well_e=1500.0, read_noise_e=0.0, shot_noise=False, gain_error=0.5)
    inten = np.linspace(0, 2, 4001)  # up to twice the full well at 1000 e- per unit
    a = detect_pixels(inten, 1000.0, cam, False, np.random.default_rng(0))
    e = a ** 2 * 1000.0
    g_nom = 1500.0 / 15
    # the ADC counts in true gain steps (1.5 x nominal): codes 0..10 before the full well clips
    assert np.unique(np.round(e / g_nom, 6)).tolist() == list(range(0, 11))
    assert e.max() == pytest.approx(10 * g_nom)


def test_blocks_on_threads_give_the_same_pixels_and_the_noise_follows_the_generator():
    """Several blocks of pixels (each with its own spawned generator): one thread or two give
    the same result; another seed another one; the shot noise stays Poisson-sized."""
    from optical4f.camera import BLOCK_PIXELS

    cam = Camera(prnu=0.01, dsnu_e=0.5, read_noise_e=1.6, bits=16, full_well_e=30000.0, shot_noise=True,
                 dark_frames=16)
    tiles = 3 * BLOCK_PIXELS // 64 + 5  # three blocks and a partial one
    inten = np.full((tiles, 1, 8, 8), 4.0, np.float32)
    inten[::2] = 0.002  # dark pixels: exact Poisson
    pat = pattern_at(cam, 64, np.arange(64).reshape(1, 1, 8, 8))
    one = detect_pixels(inten, 100.0, cam, True, np.random.default_rng(3), pat, threads=1)
    two = detect_pixels(inten, 100.0, cam, True, np.random.default_rng(3), pat, threads=2)
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, detect_pixels(inten, 100.0, cam, True, np.random.default_rng(4), pat))
    e = one[1::2] ** 2 * 100.0  # 400 e-: shot noise 20 e- rms, read noise 1.6 e-, PRNU 1 % = 4 e- over the pixels
    assert e.std() == pytest.approx(np.sqrt(400 + 1.6 ** 2 + 4.0 ** 2), rel=0.02)
    assert e.mean() == pytest.approx(400, rel=0.005)
