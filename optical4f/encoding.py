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

How it is computed (exact, only arranged for speed): a written filter is kept as its
pixels' phase levels (:class:`PixelField`: 1 byte a pixel; the phasors are looked up when a
filter is used) and the envelopes, which are folded into the spectra. A correlation set's
frames are transformed once, two real frames per complex transform, and met by every
filter of the set (:func:`pixel_intensities`): per frame and filter one product and one
inverse transform pruned to the rows and columns the camera reads.

Not simulated: light from the inter-pixel gaps (unmodulated, ``1 - F_s²`` of the area),
fringing-field crosstalk between neighbouring LCoS pixels, phase flicker, the SLM's
phase-response nonlinearity (assumed calibrated by its look-up table), lens aberrations.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from .devices import Modulator

__all__ = ["signed_bins", "input_envelope", "output_envelope", "PixelField", "pixel_field", "pixel_filter",
           "pixel_intensities", "intensity_pixels"]

_WORKERS = 1
_SCRATCH = threading.local()  # per thread: reused work arrays (a fresh 8 MB array costs its page faults)


def _scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """A work array of this thread, reused while the shape and dtype stay the same."""
    arrays = _SCRATCH.__dict__.setdefault("arrays", {})
    a = arrays.get(name)
    if a is None or a.shape != tuple(shape) or a.dtype != np.dtype(dtype):
        a = arrays[name] = np.empty(shape, dtype)
    return a


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


@dataclass(frozen=True, eq=False)
class PixelField:
    """A filter written on the phase-only SLM, in compact form: its field on the ``2N x 2N``
    pixel grid (FFT order) is ``T2[p, q] = phasor[p, q] · envelope[0][p] · envelope[1][q]``.

    ``levels`` [2N, 2N] holds each pixel's phase level (uint8 up to 8 bits, 1 byte a pixel
    instead of the 8 of a complex64 field) and ``lut`` [2^bits] the level's phasor; an
    unquantised SLM (``bits = 0``) keeps the phasors [2N, 2N] themselves in ``unit``.
    ``envelope``: (rows [2N], cols [2N]), real: the input pixels' spectrum envelope times the
    aperture (0 outside it), or None (1). The arrays are read-only."""

    levels: np.ndarray | None
    lut: np.ndarray | None
    unit: np.ndarray | None
    envelope: tuple | None

    def __post_init__(self):
        for a in (self.levels, self.lut, self.unit, *(self.envelope or ())):
            if a is not None:
                a.setflags(write=False)

    @property
    def size(self) -> int:
        """Pixels per axis (2N)."""
        return (self.levels if self.levels is not None else self.unit).shape[-1]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.levels, self.lut, self.unit, *(self.envelope or ())) if a is not None)

    def phasors(self, out: np.ndarray | None = None) -> np.ndarray:
        """The unit phasors [2N, 2N] (looked up into ``out`` or a new array; unquantised, the
        stored read-only one)."""
        return self.unit if self.levels is None else np.take(self.lut, self.levels, out=out, mode="clip")

    def dense(self) -> np.ndarray:
        """The field ``T2`` [2N, 2N], envelope included (a new array)."""
        t2 = np.array(self.phasors())
        if self.envelope is not None:
            t2 *= self.envelope[0][:, None]
            t2 *= self.envelope[1][None, :]
        return t2


def pixel_field(h: np.ndarray, mod: Modulator, fourier_samples: tuple, input_fill: float, dtype) -> PixelField:
    """The SLM's field for an ideal filter ``h`` [N, N] (|h| <= 1, FFT order), compactly: double-
    phase pixels on a checkerboard, phases quantised to ``2^bits`` levels, the input pixels'
    spectrum envelope folded in, macro-pixels beyond the modulator's aperture dark."""
    n = h.shape[-1]
    theta = np.arccos(np.clip(np.abs(h), 0.0, 1.0))
    phi = np.angle(h)
    levels = lut = unit = None
    if mod.bits > 0:  # quantised: the phase levels (the same rounding as np.round(p / step) * step) and their phasors
        count = 1 << mod.bits
        step = 2 * np.pi / count
        levels = np.empty((2 * n, 2 * n), np.uint8 if mod.bits <= 8 else np.uint16 if mod.bits <= 16 else np.int64)
        lut = np.exp(1j * step * np.arange(count)).astype(dtype)
        place = levels
    else:
        unit = np.empty((2 * n, 2 * n), dtype)
        place = unit
    for pair, p in enumerate((phi + theta, phi - theta)):
        if mod.bits > 0:
            v = np.round(p / step).astype(np.int64)
            v &= count - 1  # count is a power of two: v mod count, also below 0
        else:
            v = np.exp(1j * p).astype(dtype)
        # macro-sample k covers pixels 2k, 2k+1 (frequencies k, k + 1/2 samples): phi + theta on
        # (0, 0) and (1, 1), phi - theta on (0, 1) and (1, 0)
        place[0::2, pair::2] = v
        place[1::2, 1 - pair::2] = v
    rdt = np.float32 if np.dtype(dtype) == np.complex64 else np.float64
    env = input_envelope(n, input_fill, 2 * n).astype(rdt) if input_fill > 0 else np.ones(2 * n, rdt)
    rows, cols = fourier_samples
    fy = np.repeat(np.abs(signed_bins(n)), 2)
    er, ec = env * (fy <= rows // 2), env * (fy <= cols // 2)
    envelope = None if input_fill <= 0 and rows >= n and cols >= n else (er.astype(rdt), ec.astype(rdt))
    return PixelField(levels, lut, unit, envelope)


def pixel_filter(h: np.ndarray, mod: Modulator, fourier_samples: tuple, input_fill: float, dtype) -> np.ndarray:
    """The SLM's field ``T2`` [2N, 2N] (FFT order on the pixel grid) for an ideal filter
    ``h`` [N, N]: :func:`pixel_field`, expanded."""
    return pixel_field(h, mod, fourier_samples, input_fill, dtype).dense()


def _pair_spectra(pair: np.ndarray, lit: int, envelope, out: np.ndarray) -> None:
    """The spectra ``FFT_2N(u)`` of two real frames [2, N, N] (zero beyond row ``lit``) into
    ``out`` [2, 2N, 2N], from one complex transform ``Z = FFT_2N(u1 + i u2)`` (rows first: only
    the lit rows are transformed): ``U1 = (Z(k) + conj Z(-k)) / 2``, ``U2 = (Z(k) - conj Z(-k))
    / 2i``, each times the SLM envelope (applied to ``Z`` when it is even, ``E(-k) = E(k)``; an
    aperture that clips macro-pixels is not). (``U2`` is stored times ``i``: a global phase the
    camera does not see.)"""
    n, size = pair.shape[-1], out.shape[-1]
    rdt = out.real.dtype
    even = envelope is None or all(np.array_equal(e, e[-np.arange(size) % size]) for e in envelope)
    z = out[0]
    zv = z.view(rdt).reshape(size, size, 2)  # [re, im] pairs
    zv[:lit, :n, 0] = pair[0, :lit]
    zv[:lit, :n, 1] = pair[1, :lit]
    z[:lit, n:] = 0
    z[lit:] = 0
    head = sfft.fft(z[:lit], axis=-1, workers=_WORKERS, overwrite_x=True)  # in place (contiguous rows)
    if not np.shares_memory(head, z):
        z[:lit] = head
    if envelope is not None and even:  # a real factor per column
        zv[:lit] *= envelope[1][:, None]
    z = sfft.fft(z, axis=-2, workers=_WORKERS, overwrite_x=True)
    if not np.shares_memory(z, out):
        out[0] = z
        z = out[0]
    er = np.full(size, 0.5, rdt) if envelope is None or not even else (0.5 * envelope[0]).astype(rdt)
    z.view(rdt).reshape(size, size, 2)[...] *= er[:, None, None]
    m = _scratch("mirror", z.shape, z.dtype)  # conj Z(-k): index -k mod 2N
    m[0, 0] = z[0, 0]
    m[0, 1:] = z[0, :0:-1]
    m[1:, 0] = z[:0:-1, 0]
    m[1:, 1:] = z[:0:-1, :0:-1]
    np.conjugate(m, out=m)
    np.subtract(z, m, out=out[1])
    np.add(z, m, out=out[0])
    if not even:
        out.view(rdt).reshape(out.shape + (2,))[...] *= envelope[0][:, None, None]
        out *= envelope[1]


def pixel_intensities(frames: np.ndarray, fields: list, env_out: np.ndarray, cdt, sink, rows: int | None = None,
                      cols: int | None = None, threads: int = 1, chunk: int = 8) -> None:
    """Camera intensity (read-out orientation) of real frames [F, N, N] through each SLM field
    (:class:`PixelField`, one envelope for all): ``|IFFT_2N(T2 · FFT_2N(u)) · env|²`` on the
    frame window, rows [0, ``rows``) and columns [0, ``cols``) only.

    Calls ``sink(k, f0, inten)`` with ``inten`` [nf, rows, cols] (float, cdt's precision; a
    work array, reused after the call) for field ``k`` and frames ``f0 .. f0 + nf - 1``, frames
    in chunks of ``chunk``; with ``threads`` > 1 from that many threads (the sink must take
    distinct ``k`` / ``f0`` at once).
    Each chunk's spectra are computed once (two real frames per complex transform, split by
    symmetry) and met by every field: per frame and field one product and one inverse
    transform, columns first, then only the ``rows`` wanted. Frame rows dark in every frame
    are skipped in the forward transform. All exact."""
    from .physics import _pool

    f, n = frames.shape[0], frames.shape[-1]
    rows = n if rows is None else rows
    cols = n if cols is None else cols
    rdt = np.float32 if np.dtype(cdt) == np.complex64 else np.float64
    envelope = fields[0].envelope
    for fd in fields[1:]:
        if (fd.envelope is None) != (envelope is None) or envelope is not None and not all(
                np.array_equal(a, b) for a, b in zip(fd.envelope, envelope)):
            raise ValueError("pixel_intensities: the fields must share one envelope (one modulator and geometry)")
    lit_rows = np.flatnonzero(frames.any(axis=(0, 2)))
    lit = int(lit_rows[-1]) + 1 if lit_rows.size else 1
    env2 = ((env_out[:rows, None] * env_out[None, :cols]) ** 2).astype(rdt)
    run = _pool(threads).map if threads > 1 else map
    spectra = _scratch("spectra", (min(f + f % 2, chunk + chunk % 2), 2 * n, 2 * n), cdt)
    for f0 in range(0, f, chunk):
        fr = frames[f0:f0 + chunk]
        nf = fr.shape[0]
        if nf % 2:
            fr = np.concatenate([fr, np.zeros((1,) + fr.shape[1:], fr.dtype)])
        spec = spectra[:fr.shape[0]]
        list(run(lambda j: _pair_spectra(fr[j:j + 2], lit, envelope, spec[j:j + 2]), range(0, nf, 2)))
        # work items: a field and some of the chunk's frames (split when there are fewer fields than threads)
        parts = max(1, min(nf, -(-threads // len(fields))))
        cuts = np.linspace(0, nf, parts + 1).astype(int)
        items = [(k, cuts[i], cuts[i + 1]) for k in range(len(fields)) for i in range(parts)]

        def item(it, f0=f0, spec=spec):
            k, j0, j1 = it
            t2 = fields[k].phasors(_scratch("phasors", (2 * n, 2 * n), fields[k].lut.dtype)
                                   if fields[k].levels is not None else None)
            buf = _scratch("product", (2 * n, 2 * n), cdt)
            inten = _scratch("intensity", (j1 - j0, rows, cols), rdt)
            for j in range(j0, j1):
                np.multiply(t2, spec[j], out=buf)
                y = sfft.ifft(buf, axis=-2, workers=_WORKERS, overwrite_x=True)[:rows]
                y = sfft.ifft(y, axis=-1, workers=_WORKERS, overwrite_x=True)
                sq = y.view(rdt)[:, :2 * cols]  # [re, im] pairs
                np.square(sq, out=sq)
                o = inten[j - j0]
                np.add(sq[:, 0::2], sq[:, 1::2], out=o)
                o *= env2
            sink(k, f0 + j0, inten)

        list(run(item, items))


def intensity_pixels(frames: np.ndarray, t2, env_out: np.ndarray, cdt, out: np.ndarray,
                     rows: int | None = None, cols: int | None = None, threads: int = 1) -> None:
    """Camera intensity (read-out orientation) of real frames [F, N, N] through one SLM field
    ``t2`` (a :class:`PixelField`, or the dense field [2N, 2N]) into ``out`` [F, N, N]:
    ``|IFFT_2N(T2 · FFT_2N(u)) · env|²`` on the frame window (:func:`pixel_intensities`).
    ``rows``, ``cols``: only camera rows [0, rows) and columns [0, cols) are wanted (the rest
    of ``out`` is zero, and rows beyond are not transformed)."""
    field = t2 if isinstance(t2, PixelField) else PixelField(None, None, np.array(t2, cdt), None)
    rows = frames.shape[-1] if rows is None else rows
    cols = frames.shape[-1] if cols is None else cols
    out[:] = 0

    def sink(_k, f0, inten):
        out[f0:f0 + inten.shape[0], :rows, :cols] = inten

    pixel_intensities(frames, [field], env_out, cdt, sink, rows, cols, threads)
