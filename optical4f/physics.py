"""Scalar-field simulation of the 4f correlator, frame by frame (batched over frames).

The optical path of one frame (``N x N`` samples, input pixel pitch ``p``)::

    input modulator  u(x)            amplitude in [0, 1], quantised to its bit depth
    lens 1 (f)       U(x_f) = 1/(iλf) ∫ u(x) exp(-2πi x·x_f / (λf)) dx
                     sampled at x_f = k λf / (N p): Fourier-plane pitch λf / (N p)
    Fourier filter   U · H           H ideal (complex) or written on the modulator:
                                     phase-only (double-phase encoding), amplitude-only,
                                     quantised; the modulator's aperture clips the spectrum
    lens 2 (f)       forward transform again: the image is inverted, x -> -x, at unit
                     magnification (the camera reads it back flipped)
    camera           I = |field|², exposure so the brightest pixel reaches
                     ``exposure_fill`` x full well, shot noise (Poisson; its Gaussian
                     limit from 20 e- on), read noise (Gaussian), clipping, ADC
                     quantisation to its bit depth

With ``H = conj(FFT(k)) / max|FFT(k)|`` the camera sees ``|corr(u, k)|²`` (a
VanderLugt correlator), i.e. the cross-correlation that ``torch.nn.functional.conv2d``
computes; the electronics take the square root (every pass has non-negative inputs and
kernels, so the field is real and non-negative) and undo the known scales.

Discrete lens transform: ``U[k] = p²/(iλf) · DFT(u)[k]``; with the Fourier-plane pitch
``p_F = λf/(N p)`` this conserves power, ``Σ|U|² p_F² = Σ|u|² p²`` (Parseval), and two
lenses give ``-u[-n]``. Arrays stay in FFT order (no fftshift) on the hot path;
:func:`centered` shifts for pictures.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from .devices import Camera, Modulator, OpticalConfig
from .encoding import PixelField, intensity_pixels, output_envelope
from .filters import constrain_filter, kernel_filter, write_filter, written_filter

__all__ = [
    "OpticalAliasingWarning", "FrameGeometry", "frame_geometry", "matched_pitch", "fourier_pitch", "fourier_coords",
    "lens_ft", "encode_amplitude", "kernel_filter", "constrain_filter", "write_filter", "written_filter", "camera_detect", "standard_normals",
    "hermitian_split", "run_frames", "simulate_frames", "centered",
]

_WORKERS = 1  # the CPU is shared; scipy.fft workers
_CACHE_PIXELS = 1 << 16  # samples per batched pass: its ~2 MB of arrays stay in the L2 caches
# Shot noise: exact Poisson below this mean (electrons), its Gaussian limit N(λ, λ) from it
# on (the usual rule is λ >~ 20-100). Mean and variance are exact either way; lost are the
# skewness 1/√λ (0.22 at λ = 20; the continuity-corrected normal CDF is within 0.015 of the
# Poisson CDF there, 0.007 at λ = 100) and the 1-e- steps, which read noise blurs. The
# realistic camera reads out up to 27,000 e- at ~0.5 e- per ADC code: only the darkest
# pixels are below 20 e-, and they stay exact. (numpy's Poisson costs ~40 ns a sample.)
_POISSON_BELOW = 20.0


class OpticalAliasingWarning(UserWarning):
    """A sampling / aperture / padding check failed; the message starts with the check's name."""


def matched_pitch(wavelength_m: float, focal_length_m: float, n: int) -> float:
    """Pixel pitch √(λf/N) for which the Fourier-plane pitch equals the input pitch."""
    return float(np.sqrt(wavelength_m * focal_length_m / n))


def fourier_pitch(wavelength_m: float, focal_length_m: float, n: int, pitch_m: float) -> float:
    """Fourier-plane sample pitch λf / (N p) of an N-sample input of pitch p."""
    return wavelength_m * focal_length_m / (n * pitch_m)


def fourier_coords(n: int, pitch_m: float, wavelength_m: float, focal_length_m: float) -> np.ndarray:
    """Physical Fourier-plane coordinates (m), FFT order: x_f = λf · fftfreq(N, p)."""
    return wavelength_m * focal_length_m * np.fft.fftfreq(n, d=pitch_m)


def lens_ft(field: np.ndarray, pitch_m: float, wavelength_m: float, focal_length_m: float) -> tuple[np.ndarray, float]:
    """Optical Fourier transform by a lens over the last two axes.

    Returns the Fourier-plane field (FFT order, same dtype precision) and its pitch."""
    n = field.shape[-1]
    if field.shape[-2] != n:
        raise ValueError(f"lens_ft needs square frames, not {field.shape[-2:]}")
    scale = pitch_m * pitch_m / (1j * wavelength_m * focal_length_m)
    out = sfft.fft2(field, workers=_WORKERS, overwrite_x=False)
    out *= out.dtype.type(scale)
    return out, fourier_pitch(wavelength_m, focal_length_m, n, pitch_m)


def centered(a: np.ndarray) -> np.ndarray:
    """Shift an FFT-order plane so that the zero frequency sits in the middle (for plots)."""
    return np.fft.fftshift(a, axes=(-2, -1))


def encode_amplitude(values: np.ndarray, mod: Modulator) -> np.ndarray:
    """Quantise non-negative amplitudes in [0, 1] to the modulator's levels.

    ``amplitude``/``complex``: ``2^bits`` levels (``bits = 0``: unquantised); ``binary``:
    the values must already be bit-planes (0/1)."""
    if mod.modulation == "binary":
        return values
    if mod.bits <= 0:
        return values
    levels = (1 << mod.bits) - 1
    return np.round(np.clip(values, 0.0, 1.0) * levels) / levels


@dataclass
class FrameGeometry:
    """Sampling of one frame: sizes, pitches and the Fourier modulator's aperture."""

    n: int
    pitch_m: float          # input plane (= output plane) sample pitch
    fourier_pitch_m: float  # λf / (N p)
    slm_fourier_pitch_m: float  # the Fourier modulator's sample pitch (macro-pixel for double-phase)
    fourier_samples: tuple  # samples the Fourier modulator can hold (rows, cols)


def frame_geometry(cfg: OpticalConfig, n: int, warn: bool = True, where: str = "") -> FrameGeometry:
    """Check a frame of ``n x n`` samples against the devices and return its geometry.

    Raises ValueError when the frame does not fit the input modulator or the camera;
    warns (:class:`OpticalAliasingWarning`) when the Fourier modulator clips the spectrum
    (``fourier_aperture``) or samples it at the wrong pitch (``fourier_sampling``)."""
    lam, f = cfg.laser.wavelength_m, cfg.lens.focal_length_m
    im, fm, cam = cfg.input_modulator, cfg.fourier_modulator, cfg.camera
    if n > min(im.resolution):
        raise ValueError(f"frame of {n}x{n} does not fit the input modulator {im.name} ({im.resolution[0]}x{im.resolution[1]})")
    if n > min(cam.resolution):
        raise ValueError(f"frame of {n}x{n} does not fit the camera {cam.name} ({cam.resolution[0]}x{cam.resolution[1]})")
    p = im.pixel_pitch_m if im.pixel_pitch_m > 0 else matched_pitch(lam, f, n)
    pf = fourier_pitch(lam, f, n, p)
    macro = 2 if fm.modulation == "phase" else 1  # double-phase: a 2x2 macro-pixel per sample
    slm_pf = fm.pixel_pitch_m * macro if fm.pixel_pitch_m > 0 else pf
    samples = (fm.resolution[0] // macro, fm.resolution[1] // macro)
    pre = f"{where}: " if where else ""
    if warn and min(samples) < n:
        warnings.warn(f"fourier_aperture: {pre}the Fourier modulator {fm.name} holds {samples[0]}x{samples[1]} samples, "
                      f"the {n}x{n} spectrum is clipped to them (high frequencies lost)", OpticalAliasingWarning, stacklevel=2)
    if warn and abs(slm_pf - pf) > 0.01 * pf:
        warnings.warn(f"fourier_sampling: {pre}Fourier-plane pitch λf/(Np) = {pf * 1e6:.3g} um but {fm.name} samples at "
                      f"{slm_pf * 1e6:.3g} um: the filter is written at the wrong spatial frequencies "
                      f"(focal length should be {n * p * slm_pf / lam:.4g} m)", OpticalAliasingWarning, stacklevel=2)
    return FrameGeometry(n, p, pf, slm_pf, samples)


def standard_normals(rng: np.random.Generator, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """``size`` independent N(0, 1) samples (float32) by the Box-Muller transform.

    One 64-bit draw of ``rng``'s bit generator gives two 23-bit uniforms
    ``u1 ∈ (0, 1]``, ``u2 ∈ [0, 1)`` and two normals ``√(-2 ln u1) · (cos 2πu2, sin 2πu2)``
    (exact transform; the 23-bit radius caps |z| at √(46 ln 2) = 5.65, a tail of
    probability 1.6e-8). On this CPU 3.5x faster than ``Generator.standard_normal(dtype=
    float32)`` (ziggurat) for 2^16 samples, 1.9x for 4096; its per-sample cost dominated the
    camera model. ``out``: a float32 array of ``size`` elements to fill (C-contiguous)."""
    half = (size + 1) // 2
    w = rng.bit_generator.random_raw(half).view(np.uint32)  # 2 * half random 32-bit words
    w >>= np.uint32(9)
    w |= np.uint32(0x3F800000)  # exponent of 1.0: the words read as floats uniform in [1, 2)
    f = w.view(np.float32)
    r, a = f[:half], f[half:]
    np.subtract(np.float32(2.0), r, out=r)  # u1 in (0, 1]
    np.log(r, out=r)
    r *= np.float32(-2.0)
    np.sqrt(r, out=r)
    a *= np.float32(2 * np.pi)  # 2π(1 + u2): same cos/sin as 2πu2
    lo = size - half  # the second half of the output (one sample fewer when size is odd)
    out = np.empty(size, np.float32) if out is None else out.reshape(-1)
    np.cos(a, out=out[:half])
    np.sin(a[:lo], out=out[half:])
    out[:half] *= r
    out[half:] *= r[:lo]
    return out


def _detect(inten: np.ndarray, cam: Camera, fill: float, noise: bool, rng: np.random.Generator,
            scratch: np.ndarray | None = None, zbuf: np.ndarray | None = None) -> np.ndarray:
    """:func:`camera_detect`, in place on a C-contiguous ``inten`` [F, N, N] (float32 or
    float64); ``scratch``: an optional spare array of its shape and dtype, ``zbuf`` one
    of float32 for the normals."""
    assert inten.flags.c_contiguous, "_detect works in place on a C-contiguous array"
    dt = inten.dtype.type
    peak = inten.max(axis=(-2, -1), keepdims=True)
    peak = np.where(peak > 0, peak, 1.0)
    to_e = ((fill * cam.full_well_e) / peak).astype(inten.dtype)  # per frame: exposure x gain
    e = inten
    e *= to_e
    if noise and (cam.shot_noise or cam.read_noise_e > 0):
        z = standard_normals(rng, e.size, zbuf).reshape(e.shape)
        if cam.shot_noise:
            # shot + read noise as one Gaussian of variance e + r² where the mean is large;
            # exact Poisson (+ Gaussian read noise) below _POISSON_BELOW electrons
            ev = e.reshape(-1)
            small = np.flatnonzero(ev < _POISSON_BELOW)
            lam = ev[small].astype(np.float64)
            sd = np.add(e, dt(cam.read_noise_e ** 2), out=scratch)
            np.sqrt(sd, out=sd)
            sd *= z
            e += sd
            if small.size:
                zs = z.reshape(-1)[small]
                zs *= np.float32(cam.read_noise_e)
                ev[small] = rng.poisson(lam) + zs
        else:
            z *= np.float32(cam.read_noise_e)
            e += z
    if cam.bits > 0:  # clip to [0, full well] and quantise to the ADC's codes
        codes = (1 << cam.bits) - 1
        e *= dt(codes / cam.full_well_e)
        np.clip(e, 0, codes, out=e)
        np.rint(e, out=e)
        e *= (cam.full_well_e / codes) / to_e
    else:
        np.clip(e, 0, cam.full_well_e, out=e)
        e /= to_e
    return e  # back to the input units (the electronics know exposure and gain)


def camera_detect(intensity: np.ndarray, cam: Camera, fill: float, noise: bool, rng: np.random.Generator) -> np.ndarray:
    """Detected intensity (same units as ``intensity``) of each frame [F, N, N].

    Exposure per frame puts the brightest pixel at ``fill`` x full well; then shot noise
    (Poisson below ``_POISSON_BELOW`` = 20 e-; from 20 e- on its Gaussian limit, drawn
    together with the read noise as one normal of variance mean + read², see
    :func:`standard_normals`), read noise, clipping to [0, full well], ADC quantisation to
    ``2^bits - 1`` codes over the full well; then back to the input units (the electronics
    know exposure and gain)."""
    inten = np.array(intensity, dtype=np.result_type(intensity.dtype, np.float32), order="C", copy=True)
    return _detect(inten, cam, fill, noise, rng)


def _readout_flip(a: np.ndarray) -> np.ndarray:
    """Sample ``n`` -> ``-n (mod N)`` over the last two axes (its own inverse)."""
    return np.roll(np.flip(a, axis=(-2, -1)), 1, axis=(-2, -1))


def hermitian_split(filters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split Fourier filters [.., N, N] into ``H = A + iB`` with ``A`` and ``B`` Hermitian,
    ``A(-k) = conj A(k)``: ``A = (H(k) + conj H(-k)) / 2``, ``B = (H(k) - conj H(-k)) / 2i``.

    Then for real frames ``u1``, ``u2`` and ``Z = fft(u1 + i·u2)``: ``ifft(Z·A) = a1 + i·a2``
    and ``ifft(Z·B) = b1 + i·b2`` with ``a_j = ifft(U_j·A)``, ``b_j = ifft(U_j·B)`` real
    (``U_j·A`` is Hermitian), so ``ifft(U_j·H) = a_j + i·b_j`` and ``I_j = a_j² + b_j²``:
    two real frames cost three complex transforms instead of four."""
    hc = np.conj(_readout_flip(filters))  # conj(H(-k))
    a = filters + hc
    a *= 0.5
    hc -= filters
    hc *= 0.5j  # (H - conj(H(-k))) / 2i
    return a, hc


def _intensity_pairs(frames: np.ndarray, a: np.ndarray, b: np.ndarray, cdt, out: np.ndarray):
    """Read-out-orientation intensity of an even number of real frames [F, N, N] through
    the filter ``a + ib`` (:func:`hermitian_split`), two frames per complex transform,
    into ``out`` [F, N, N]; returns two spare real arrays of that shape (for the camera)."""
    f, n = frames.shape[0], frames.shape[-1]
    z = np.empty((f // 2, n, n), cdt)
    zv = z.view(out.dtype).reshape(f // 2, n, n, 2)
    zv[..., 0] = frames[0::2]
    zv[..., 1] = frames[1::2]
    z = sfft.fft2(z, workers=_WORKERS, overwrite_x=True)
    za = z * a
    z *= b
    za = sfft.ifft2(za, workers=_WORKERS, overwrite_x=True)
    zb = sfft.ifft2(z, workers=_WORKERS, overwrite_x=True)
    va, vb = za.view(out.dtype), zb.view(out.dtype)  # [re, im] pairs: frame 2j, frame 2j+1
    va *= va
    vb *= vb
    va += vb
    out.reshape(f // 2, 2, n, n)[:] = va.reshape(f // 2, n, n, 2).transpose(0, 3, 1, 2)
    return va.reshape(out.shape), vb.reshape(out.shape)


def _intensity_fields(frames: np.ndarray, filt: np.ndarray, cdt, out: np.ndarray):
    """Read-out-orientation intensity of any frames [F, N, N] (complex fields too) into
    ``out``; returns two spare real arrays of its shape."""
    spec = sfft.fft2(frames.astype(cdt, copy=False), workers=_WORKERS)
    spec *= filt
    field = sfft.ifft2(spec, workers=_WORKERS, overwrite_x=True)
    np.multiply(field.real, field.real, out=out)
    spare = np.multiply(field.imag, field.imag)
    out += spare
    return spare, None


def _threads(cfg: OpticalConfig) -> int:
    t = int(cfg.sim.threads)
    return t if t > 0 else (os.cpu_count() or 1)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix=f"optical4f-{threads}")
    return _POOLS[threads]


def _chunk_rngs(rng: np.random.Generator, k: int) -> list:
    """One generator per pass: the caller's for a single pass, else ``k`` children spawned
    from it, so that the noise does not depend on the number of threads."""
    if k == 1:
        return [rng]
    try:
        return rng.spawn(k)
    except (TypeError, ValueError):  # a generator without a seed sequence
        return [np.random.default_rng(s) for s in rng.integers(2 ** 63, size=k)]


def run_frames(frames: np.ndarray, filters: np.ndarray, cfg: OpticalConfig, geom: FrameGeometry,
               rng: np.random.Generator | None = None, keep_planes: bool = False, detect: bool = True,
               rows: int | None = None):
    """Propagate input frames [F, N, N] (amplitudes in [0, 1]) through the 4f system.

    ``detect=False``: return the noiseless intensity ``|field|²`` at the camera (read-out
    orientation) instead; the caller applies its own camera model (:mod:`optical4f.camera`).
    ``rows``: (rows, cols); with ``detect=False`` and a pixel-level filter only that corner
    of the camera is computed (the caller reads no other pixel; the rest are zero).

    ``filters``: the applied Fourier filters, [F, N, N] or [1, N, N] (from
    :func:`constrain_filter`), or one filter written pixel by pixel on the SLM
    (:class:`optical4f.encoding.PixelField`, or its dense field [1, 2N, 2N]). Returns the
    detected amplitude ``sqrt(I)`` read back in input orientation, [F, N, N] real; with
    ``keep_planes`` also a dict of the input,
    Fourier-plane and camera arrays of the first frame (for pictures).

    The two lenses scale the field by ``p²/(iλf) · p_F²/(iλf) = -1/N²`` and lens 2 inverts
    it, so the camera pixel ``-n`` holds ``-ifft(H · fft(u))[n]``: the frames are computed
    in read-out orientation directly (the camera-orientation frame is only flipped for
    ``keep_planes``); the noise is i.i.d. per pixel, so the orientation does not change its
    statistics. Real frames sharing one filter go two per complex transform
    (:func:`hermitian_split`). Frames run in passes of ~``_CACHE_PIXELS`` samples, so that
    a pass's arrays stay in cache; with ``sim.threads`` != 1 the passes of a batch run on
    that many threads (0: one per core), each with its own noise generator spawned from
    ``rng`` (the result does not depend on the number of threads)."""
    cdt = np.complex128 if cfg.sim.precision == "complex128" else np.complex64
    rdt = np.float64 if cdt is np.complex128 else np.float32
    lam, f = cfg.laser.wavelength_m, cfg.lens.focal_length_m
    rng = rng if rng is not None else np.random.default_rng(cfg.sim.seed)
    frames = np.asarray(frames)
    nf, n = frames.shape[0], frames.shape[-1]
    pixels = isinstance(filters, PixelField) or np.shape(filters)[-1] == 2 * n  # on the SLM's pixel grid
    filt = filters if isinstance(filters, PixelField) else np.asarray(filters).astype(cdt, copy=False)
    shared = isinstance(filt, PixelField) or filt.shape[0] == 1  # a PixelField is one filter
    paired = shared and nf > 1 and not np.iscomplexobj(frames)
    if pixels and (not shared or np.iscomplexobj(frames)):
        raise ValueError("the pixel-level SLM model takes real frames and one shared filter")
    if paired and not pixels:
        fa, fb = hermitian_split(filt)
    step = max(2, _CACHE_PIXELS // (n * n) // 2 * 2)  # frames per pass (even)
    starts = list(range(0, nf, step))
    rngs = _chunk_rngs(rng, len(starts))
    amp = np.empty(frames.shape, rdt)
    cam, fill, noise = cfg.camera, cfg.sim.exposure_fill, cfg.sim.noise
    if pixels:  # the optics of every frame first (no random numbers), then the camera by passes
        want = (None, None) if detect or rows is None else rows
        intensity_pixels(frames.astype(rdt, copy=False), filt if isinstance(filt, PixelField) else filt[0],
                         output_envelope(n, cfg.fourier_modulator.fill_factor), cdt, amp, *want, threads=_threads(cfg))

    def one(i: int):
        fs = slice(starts[i], starts[i] + step)
        fr, e = frames[fs], amp[fs]  # the intensity, then the detected amplitude, is made in amp
        k = fr.shape[0] // 2 * 2 if paired else 0
        if pixels:
            spare = zbuf = None
        elif k:
            spare, zbuf = _intensity_pairs(fr[:k].astype(rdt, copy=False), fa, fb, cdt, e[:k])
            if k < fr.shape[0]:  # an odd pass: the last frame alone
                _intensity_fields(fr[k:], filt, cdt, e[k:])
                spare = zbuf = None
        else:
            spare, zbuf = _intensity_fields(fr, filt if shared else filt[fs], cdt, e)
        if not detect:
            return None
        if rdt is not np.float32:
            zbuf = None
        det = _detect(e, cam, fill, noise, rngs[i], spare, zbuf)
        det0 = _readout_flip(det[0]) if i == 0 and keep_planes else None  # as the camera sees it
        np.sqrt(det, out=det)
        return det0

    threads = min(_threads(cfg), len(starts))
    if threads > 1:
        det0 = list(_pool(threads).map(one, range(len(starts))))[0]
    else:
        det0 = [one(i) for i in range(len(starts))][0] if starts else None
    if not keep_planes:
        return amp
    if not detect:
        det0 = _readout_flip(np.sqrt(amp[0]))
    planes = {"input": np.asarray(frames[0]).real.copy(),
              "fourier": lens_ft(frames[:1].astype(cdt), geom.pitch_m, lam, f)[0][0],  # incident on the filter
              "camera": det0}
    return amp, planes


def simulate_frames(frames: np.ndarray, kernel_plane: np.ndarray, cfg: OpticalConfig,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """The whole 4f path for frames [F, N, N] (amplitudes in [0, 1]) and one kernel plane
    [N, N]: geometry checks, matched filter written on the Fourier modulator, propagation,
    detection. Returns the detected amplitudes [F, N, N] (see :func:`run_frames`)."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    geom = frame_geometry(cfg, frames.shape[-1])
    filt, _ = write_filter(np.asarray(kernel_plane, np.float64), cfg, geom)
    return run_frames(frames, filt, cfg, geom, rng)
