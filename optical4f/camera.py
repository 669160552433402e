"""The camera as the electronics see it: a calibrated exposure, fixed-pattern noise, shot
and read noise, dark current, saturation, the ADC and a conversion gain known only
nominally.

Per read-out pixel ``q`` of a frame exposed with ``exposure_e`` electrons per unit of
(simulated) intensity ``I``::

    signal     s = I · exposure_e · (1 + PRNU_q)                  PRNU_q ~ N(0, prnu²), fixed
    electrons  e = Poisson(s + dark_current · t_exp) + DSNU_q + read noise N(0, read²)
    saturation e -> clip(e, 0, full well)
    ADC        code = clip(round(e / g_true), 0, 2^bits - 1),     g_true = g_nominal (1 + gain_error)
    electronics e' = code · g_nominal - dark_ref_q,  I' = e' / exposure_e,  amplitude √max(I', 0)

``g_nominal = full well / (2^bits - 1)`` (the datasheet's conversion factor). The dark
reference ``dark_ref_q = DSNU_q + dark_current · t_exp + N(0, read² / dark_frames)`` is
the mean of ``dark_frames`` dark frames taken at calibration (its own noise stays in it).
PRNU, DSNU and that draw are the camera's: fixed by ``camera.pattern_seed``, the same in
every run. The exposure is not chosen here: it comes from the calibration
(:mod:`optical4f.calibration`), and what exceeds the full well saturates. The gain error
is not corrected pixel by pixel; the calibration's per-layer scale absorbs its mean.

Shot noise: exact Poisson below ``POISSON_BELOW`` electrons, from there its Gaussian limit
drawn together with the read noise (see :mod:`optical4f.physics`). Only read-out pixels
are simulated: the noise is independent per pixel, so the pixels nobody reads do not
change the ones read.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .devices import Camera
from .physics import standard_normals

__all__ = ["POISSON_BELOW", "BLOCK_PIXELS", "camera_pattern", "pattern_at", "detect_pixels", "exposure_time_s"]

POISSON_BELOW = 20.0
BLOCK_PIXELS = 1 << 17  # pixels per block of the camera model (~0.5 MB a float32 array: the L2 cache)


@lru_cache(maxsize=16)
def _pattern(n: int, prnu: float, dsnu_e: float, read_e: float, dark_frames: int, seed: int):
    rng = np.random.default_rng([seed, n])
    gain = (1.0 + prnu * rng.standard_normal((n, n))).astype(np.float32)
    offset = (dsnu_e * rng.standard_normal((n, n))).astype(np.float32)
    residual = (read_e / np.sqrt(max(dark_frames, 1)) * rng.standard_normal((n, n))).astype(np.float32)
    for a in (gain, offset, residual):
        a.setflags(write=False)
    return gain, offset, residual


def camera_pattern(cam: Camera, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1 + PRNU [n, n], DSNU [n, n] in e-, dark-reference residual [n, n] in e-) of the
    camera's ``n x n`` read-out window (read-only float32 arrays, cached)."""
    return _pattern(int(n), float(cam.prnu), float(cam.dsnu_e), float(cam.read_noise_e), int(cam.dark_frames),
                    int(cam.pattern_seed))


def exposure_time_s(cam: Camera) -> float:
    """Exposure time assumed for dark current: one camera frame period (an upper bound)."""
    return 1.0 / cam.frame_rate_hz if cam.frame_rate_hz > 0 else 0.0


def pattern_at(cam: Camera, window: int, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed pattern at flat pixel indices ``pixels`` (``row * window + col``) of the
    ``window x window`` read-out window: (1 + PRNU, DSNU in e-, dark reference in e-)."""
    gain, offset, residual = (a.reshape(-1) for a in camera_pattern(cam, window))
    off = offset[pixels]
    return gain[pixels], off, off + residual[pixels]


def detect_pixels(inten: np.ndarray, exposure_e, cam: Camera, noise: bool, rng: np.random.Generator,
                  pattern: tuple | None = None, threads: int = 1) -> np.ndarray:
    """Estimated amplitude ``√I'`` of read-out pixels (``inten``'s shape; float32, or
    float64 when ``inten`` is).

    Parameters
    ----------
    inten : array, float
        Noiseless intensity at each read pixel (simulation units).
    exposure_e : float or array broadcasting to ``inten``
        Electrons per unit intensity (the calibrated exposure x quantum efficiency).
    pattern : (1 + PRNU, DSNU, dark reference), arrays broadcasting to ``inten``
        (:func:`pattern_at`), or None: no fixed pattern.
    threads : int
        Blocks of pixels run on this many threads; the result does not depend on it.

    The pixels go in blocks of ~``BLOCK_PIXELS`` along the first axis (a block's arrays
    stay in the CPU caches); with more than one block, each block draws its noise from its
    own generator spawned from ``rng``.
    """
    from .physics import _chunk_rngs, _pool

    inten = np.asarray(inten)
    dt = np.result_type(inten.dtype, np.float32)
    if inten.ndim == 0:
        return detect_pixels(inten[None], exposure_e, cam, noise, rng, pattern, threads)[0]
    lead = inten.shape[0]
    step = max(1, BLOCK_PIXELS // max(1, inten.size // max(lead, 1)))
    starts = range(0, lead, step)
    rngs = _chunk_rngs(rng, len(starts))
    exp = np.asarray(exposure_e, dt)
    out = np.empty(inten.shape, dt)

    def rows(a, t0):  # the block's part of an operand that broadcasts to inten
        return a[t0:t0 + step] if a.ndim == inten.ndim and a.shape[0] == lead > 1 else a

    def block(i: int):
        t0 = starts[i]
        pat = tuple(rows(np.asarray(a), t0) for a in pattern) if pattern is not None else None
        _detect_block(inten[t0:t0 + step], rows(exp, t0), cam, noise, rngs[i], pat, out[t0:t0 + step])

    if threads > 1 and len(starts) > 1:
        list(_pool(threads).map(block, range(len(starts))))
    else:
        for i in range(len(starts)):
            block(i)
    return out


def _detect_block(inten: np.ndarray, exp: np.ndarray, cam: Camera, noise: bool, rng: np.random.Generator,
                  pattern: tuple | None, e: np.ndarray) -> None:
    """:func:`detect_pixels` of one block, into ``e`` (inten's shape, the output dtype)."""
    f = e.dtype.type
    np.multiply(inten, exp, out=e)
    if pattern is not None:
        gain, offset, dark_ref = pattern
        if cam.prnu > 0:
            e *= gain
    dark = f(cam.dark_current_e_per_s * exposure_time_s(cam))
    if dark > 0:
        e += dark
    if noise and (cam.shot_noise or cam.read_noise_e > 0):
        z = standard_normals(rng, e.size).reshape(e.shape)
        if cam.shot_noise:
            ev = e.reshape(-1)
            small = np.flatnonzero(ev < POISSON_BELOW)
            lam = np.maximum(ev[small], 0).astype(np.float64)
            sd = np.add(e, f(cam.read_noise_e ** 2))
            np.sqrt(sd, out=sd)
            sd *= z
            e += sd
            if small.size:
                ev[small] = rng.poisson(lam) + z.reshape(-1)[small] * f(cam.read_noise_e)
        else:
            z *= f(cam.read_noise_e)
            e += z
    if pattern is not None and cam.dsnu_e > 0:
        e += offset
    np.clip(e, 0, cam.full_well_e, out=e)
    if cam.bits > 0:
        codes = (1 << cam.bits) - 1
        g_nom = cam.full_well_e / codes
        e *= f(1.0 / (g_nom * (1.0 + cam.gain_error)))
        np.rint(e, out=e)
        if cam.gain_error < 0:  # else e <= full well / g_true <= codes already (and >= 0)
            np.minimum(e, codes, out=e)
        e *= f(g_nom)
    elif cam.gain_error:
        e *= f(1.0 / (1.0 + cam.gain_error))
    # the electronics: subtract the calibration's dark reference, undo the exposure
    if pattern is not None:
        e -= dark_ref
    if dark > 0:
        e -= dark
    e /= exp
    np.maximum(e, 0, out=e)
    np.sqrt(e, out=e)
