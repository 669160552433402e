"""Pixel-level model of the Fourier filter on a phase-only modulator (``sim.slm_pixels``).

The ideal model (:func:`optical4f.physics.constrain_filter`) writes one complex value
``A e^{iφ}`` per Fourier sample and lets the camera see ``ifft(H · fft(u))``: the
double-phase pair is summed coherently *at the sample*. Here the modulator is what it is:

* **Pixels.** A Fourier sample (pitch ``p_F = λf/(N p)``) is a 2x2 macro-pixel of SLM
  pixels of pitch ``d = p_F / 2``, the two phases ``φ ± arccos A`` on a checkerboard
  (``θ1`` at (0,0), (1,1); ``θ2`` at (0,1), (1,0)). Each pixel samples the incident
  spectrum at its own position, half a sample apart: the spectrum is taken on the ``2N x
  2N`` pixel grid, ``U2 = FFT_2N(u zero-padded)`` (exact: the input has ``N`` samples).
* **Higher orders.** The checkerboard's difference term ``i e^{iφ} sin θ`` is modulated to
  the pixel grid's highest frequency: lens 2 puts it at ``N p`` (one frame width) from the
  wanted image, diagonally. The output is ``IFFT_2N(T2 · U2)``, ``2N x 2N`` samples of
  pitch ``p``; the camera window (a field stop) keeps the ``N x N`` frame, so the order is
  blocked where it lands outside the frame and mixes in where it overlaps it (frames whose
  tiles reach the far corner of the window). The SLM grating's own orders lie ``2N p``
  away (outside the camera).
* **Fill factor.** An SLM pixel is a square of side ``F_s d`` (``fourier_modulator.
  fill_factor``): the output field is multiplied by ``sinc(F_s k / 2N)`` per axis (``k``:
  output sample from the optical axis, at the frame centre). An input pixel is a square of
  side ``F_in p``: the spectrum is multiplied by ``sinc(F_in ν / N)`` (``ν``: frequency in
  samples). The filter design divides by the latter (pre-compensation, known at compile
  time); the former stays (it is an output-plane vignetting of at most
  ``sinc(F_s / 4)²`` at the frame edge, absorbed only on average by the calibration).
* **Aperture.** An iris in the Fourier plane passes one period of the input spectrum (the
  ``N x N`` macro-pixels); the replicas from the input pixel grid are blocked.

Not simulated: light from the inter-pixel gaps (unmodulated, ``1 - F_s²`` of the area),
fringing-field crosstalk between neighbouring LCoS pixels, phase flicker, the SLM's
phase-response nonlinearity (assumed calibrated by its look-up table), lens aberrations.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from .devices import Modulator

__all__ = ["signed_bins", "input_envelope", "output_envelope", "pixel_filter", "intensity_pixels"]

_WORKERS = 1


def signed_bins(n: int, step: float = 1.0) -> np.ndarray:
    """Signed frequency of each index of an ``n``-point FFT axis, in units of ``step``."""
    return np.fft.fftfreq(n, d=1.0 / n) * step


def input_envelope(n: int, fill: float, points: int | None = None) -> np.ndarray:
    """Per-axis spectrum envelope ``sinc(F_in ν / N)`` of input pixels of linear fill
    factor ``fill``, at the ``points`` (``N`` or ``2N``) FFT frequencies of the Fourier plane."""
    points = points or n
    nu = signed_bins(points, n / points)  # in samples of the N-grid
    return np.sinc(fill * nu / n)


def output_envelope(n: int, fill: float) -> np.ndarray:
    """Per-axis output-field envelope ``sinc(F_s k / 2N)`` of SLM pixels of linear fill factor
    ``fill``, at the frame's ``n`` samples (axis at the frame centre)."""
    k = np.arange(n) - n // 2
    return np.sinc(fill * k / (2 * n))


def pixel_filter(h: np.ndarray, mod: Modulator, fourier_samples: tuple, input_fill: float, dtype) -> np.ndarray:
    """The SLM's field ``T2`` [2N, 2N] (FFT order on the pixel grid) for an ideal filter
    ``h`` [N, N] (|h| <= 1, FFT order): double-phase pixels on a checkerboard, phases
    quantised to ``2^bits`` levels, the input pixels' spectrum envelope folded in, macro-
    pixels beyond the modulator's aperture dark."""
    n = h.shape[-1]
    theta = np.arccos(np.clip(np.abs(h), 0.0, 1.0))
    phi = np.angle(h)
    phases = []
    for p in (phi + theta, phi - theta):
        if mod.bits > 0:  # quantised: look the phasors up (the same rounding as np.round(p / step) * step)
            levels = 1 << mod.bits
            step = 2 * np.pi / levels
            i = np.round(p / step).astype(np.int64)
            i &= levels - 1  # levels is a power of two: i mod levels, also below 0
            phases.append(np.exp(1j * step * np.arange(levels)).astype(dtype)[i])
        else:
            phases.append(np.exp(1j * p).astype(dtype))
    t2 = np.empty((2 * n, 2 * n), dtype)
    # macro-sample k covers pixels 2k, 2k+1 (frequencies k, k + 1/2 samples)
    t2[0::2, 0::2] = phases[0]
    t2[1::2, 1::2] = phases[0]
    t2[0::2, 1::2] = phases[1]
    t2[1::2, 0::2] = phases[1]
    if input_fill > 0:
        env = input_envelope(n, input_fill, 2 * n).astype(np.float32 if dtype == np.complex64 else np.float64)
        t2 *= env[:, None]
        t2 *= env[None, :]
    rows, cols = fourier_samples
    if rows < n or cols < n:
        fy = np.abs(signed_bins(n))
        keep = np.repeat(np.repeat((fy[:, None] <= rows // 2) & (fy[None, :] <= cols // 2), 2, 0), 2, 1)
        t2 *= keep
    return t2


_SPLITS: dict = {}


def _split(t2: np.ndarray) -> tuple:
    """The Hermitian split ``(A, B)`` of a (read-only, cached) SLM field, kept for the last few."""
    hit = _SPLITS.get(id(t2))
    if hit is not None and hit[0] is t2:
        return hit[1]
    from .physics import hermitian_split

    halves = tuple(h[0] for h in hermitian_split(t2[None]))
    _SPLITS[id(t2)] = (t2, halves)
    while len(_SPLITS) > 4:
        _SPLITS.pop(next(iter(_SPLITS)))
    return halves


def _fft_padded(z: np.ndarray, cdt, lit: int) -> np.ndarray:
    """2N x 2N FFT of frames [G, N, N] zero-padded to 2N whose rows ``lit`` and on are zero
    (rows first: only the lit rows are transformed)."""
    g, n = z.shape[0], z.shape[-1]
    zr = np.zeros((g, lit, 2 * n), cdt)
    zr[:, :, :n] = z[:, :lit]
    zr = sfft.fft(zr, axis=-1, workers=_WORKERS, overwrite_x=True)
    big = np.zeros((g, 2 * n, 2 * n), cdt)
    big[:, :lit] = zr
    return sfft.fft(big, axis=-2, workers=_WORKERS, overwrite_x=True)


def _ifft_window(x: np.ndarray, rows: int) -> np.ndarray:
    """Rows [0, ``rows``) of the N x N window [0, N)² of the 2N x 2N inverse FFT (columns
    first, then only the rows wanted)."""
    n = x.shape[-1] // 2
    x = sfft.ifft(x, axis=-2, workers=_WORKERS, overwrite_x=True)[:, :rows]
    return sfft.ifft(x, axis=-1, workers=_WORKERS)[:, :, :n]


def intensity_pixels(frames: np.ndarray, t2: np.ndarray, env_out: np.ndarray, cdt, out: np.ndarray,
                     paired: bool = True, rows: int | None = None, cols: int | None = None,
                     spectra: dict | None = None) -> None:
    """Camera intensity (read-out orientation) of real frames [F, N, N] through the SLM
    field ``t2`` [2N, 2N], into ``out`` [F, N, N]: ``|IFFT_2N(T2 · FFT_2N(u)) · env|²`` on the
    frame window. ``paired``: two frames share each forward transform (``t2``'s Hermitian
    split ``A + iB``: ``ifft(Z A) = a1 + i a2``, ``ifft(Z B) = b1 + i b2``, field ``a + ib``).
    ``rows``, ``cols``: only camera rows [0, rows) and columns [0, cols) are wanted (the
    rest of ``out`` is zero, and rows beyond are not transformed); frame rows that are dark
    everywhere are skipped in the forward transform. All exact. ``spectra``: a dict the
    caller keeps while it sends these same frames through other filters (a conv's frames
    meet one kernel's filter after another): the forward transforms are kept in it and reused."""
    f, n = frames.shape[0], frames.shape[-1]
    rows = n if rows is None else rows
    cols = n if cols is None else cols
    lit_rows = np.flatnonzero(frames.any(axis=(0, 2)))
    lit = int(lit_rows[-1]) + 1 if lit_rows.size else 1
    out[:] = 0
    win = out[:, :rows, :cols]
    env2 = ((env_out[:rows, None] * env_out[None, :cols]) ** 2).astype(out.dtype)
    k = f // 2 * 2 if paired else 0
    if k:
        ka, kb = _split(t2)
        spec = spectra.get("pairs") if spectra is not None else None
        if spec is None:
            z = np.empty((k // 2,) + frames.shape[1:], cdt)
            z.real = frames[0:k:2]
            z.imag = frames[1:k:2]
            spec = _fft_padded(z, cdt, lit)
            if spectra is not None:
                spectra["pairs"] = spec
        ya = _ifft_window(spec * ka, rows)[:, :, :cols]
        yb = _ifft_window(spec * kb, rows)[:, :, :cols]
        win[0:k:2] = ya.real ** 2 + yb.real ** 2
        win[1:k:2] = ya.imag ** 2 + yb.imag ** 2
    if k < f:
        spec = spectra.get("single") if spectra is not None else None
        if spec is None:
            spec = _fft_padded(frames[k:].astype(cdt), cdt, lit)
            if spectra is not None:
                spectra["single"] = spec
        y = _ifft_window(spec * t2, rows)[:, :, :cols]
        win[k:] = y.real ** 2 + y.imag ** 2
    win *= env2
