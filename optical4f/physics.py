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
                     ``exposure_fill`` x full well, shot noise (Poisson), read noise
                     (Gaussian), clipping, ADC quantisation to its bit depth

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

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from .devices import Camera, Modulator, OpticalConfig

__all__ = [
    "OpticalAliasingWarning", "FrameGeometry", "frame_geometry", "matched_pitch", "fourier_pitch", "fourier_coords",
    "lens_ft", "encode_amplitude", "kernel_filter", "constrain_filter", "camera_detect", "run_frames", "simulate_frames",
    "centered",
]

_WORKERS = 1  # the CPU is shared; scipy.fft workers
_CACHE_PIXELS = 1 << 18  # samples per batched pass (2 MB of complex64)
_POISSON_BELOW = 20.0  # electrons: exact Poisson below, Gaussian limit (error < 1% in sigma) above


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


def kernel_filter(kernel_planes: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Ideal matched filter ``conj(FFT(k))`` of each kernel plane, normalised to max |H| = 1.

    Returns (H [.., N, N], scale [..]) with ``ideal H = conj(FFT(k)) / scale``."""
    h = np.conj(sfft.fft2(kernel_planes.astype(dtype, copy=False), workers=_WORKERS))
    scale = np.abs(h).max(axis=(-2, -1))
    scale = np.where(scale > 0, scale, 1.0)
    h /= scale[..., None, None].astype(h.real.dtype)
    return h, scale


def _quantise_phase(phase: np.ndarray, bits: int) -> np.ndarray:
    if bits <= 0:
        return phase
    step = 2 * np.pi / (1 << bits)
    return np.round(phase / step) * step


def constrain_filter(h: np.ndarray, mod: Modulator, geom: FrameGeometry) -> np.ndarray:
    """The filter the Fourier modulator actually applies to an ideal ``h`` (|h| <= 1).

    * ``complex``: amplitude and phase quantised to ``bits`` each (unless 0);
    * ``phase``: double-phase encoding ``A e^{iφ} = (e^{i(φ+θ)} + e^{i(φ-θ)})/2``,
      ``θ = arccos A``, both phases quantised to ``2^bits`` levels;
    * ``amplitude``: ``|h|`` quantised (the phase of the filter is lost);
    * ``binary``: ``|h| >= 0.5`` (a binary amplitude mask).
    Then the modulator's aperture (``geom.fourier_samples``) clips the spectrum and its
    efficiency scales the transmitted field.
    """
    if mod.modulation == "complex":
        if mod.bits > 0:
            levels = (1 << mod.bits) - 1
            amp = np.round(np.abs(h) * levels) / levels
            out = amp * np.exp(1j * _quantise_phase(np.angle(h), mod.bits))
        else:
            out = h.copy()
    elif mod.modulation == "phase":
        rdt = h.real.dtype
        amp = np.clip(np.abs(h), 0.0, 1.0)
        phi = np.angle(h)
        theta = np.arccos(amp)
        if mod.bits > 0:  # quantised phases: look the phasors up
            levels = 1 << mod.bits
            k = rdt.type(levels / (2 * np.pi))
            lut = (0.5 * np.exp(2j * np.pi * np.arange(levels) / levels)).astype(h.dtype)
            i1 = np.rint((phi + theta) * k).astype(np.int64) % levels
            i2 = np.rint((phi - theta) * k).astype(np.int64) % levels
            out = lut[i1] + lut[i2]
        else:
            out = 0.5 * (np.exp(1j * (phi + theta)) + np.exp(1j * (phi - theta)))
    elif mod.modulation == "amplitude":
        amp = np.abs(h)
        if mod.bits > 0:
            levels = (1 << mod.bits) - 1
            amp = np.round(amp * levels) / levels
        out = amp.astype(h.dtype)
    else:  # binary
        out = (np.abs(h) >= 0.5).astype(h.dtype)
    out = out.astype(h.dtype, copy=False)
    n = h.shape[-1]
    rows, cols = geom.fourier_samples
    if rows < n or cols < n:
        fy = np.abs(np.fft.fftfreq(n) * n)
        keep = (fy[:, None] <= rows // 2) & (fy[None, :] <= cols // 2)
        out = out * keep
    # (the modulator's efficiency scales every field by one factor; the camera's exposure
    # absorbs it, so it enters the photon budget in optical4f.cost, not the simulation)
    return out


def camera_detect(intensity: np.ndarray, cam: Camera, fill: float, noise: bool, rng: np.random.Generator) -> np.ndarray:
    """Detected intensity (same units as ``intensity``) of each frame [F, N, N].

    Exposure per frame puts the brightest pixel at ``fill`` x full well; then shot noise
    (Poisson; for means of 20 e- and more its Gaussian limit, drawn together with the
    read noise as one normal of variance mean + read²), read noise, clipping to [0, full well],
    ADC quantisation to ``2^bits - 1`` codes over the full well; then back to the input
    units (the electronics know exposure and gain)."""
    peak = intensity.max(axis=(-2, -1), keepdims=True)
    peak = np.where(peak > 0, peak, 1.0)
    to_e = (fill * cam.full_well_e) / peak
    e = intensity * to_e.astype(intensity.dtype)
    if noise and (cam.shot_noise or cam.read_noise_e > 0):
        z = rng.standard_normal(e.shape, dtype=np.float32).astype(e.dtype, copy=False)
        r2 = cam.read_noise_e ** 2
        if cam.shot_noise:
            # shot + read noise as one Gaussian of variance e + r² where the mean is large,
            # exact Poisson (+ Gaussian read noise) below _POISSON_BELOW electrons
            small = e < _POISSON_BELOW
            noisy = e + np.sqrt(e + r2) * z
            if small.any():
                noisy[small] = rng.poisson(e[small]) + cam.read_noise_e * z[small]
            e = noisy
        else:
            e = e + cam.read_noise_e * z
    e = np.clip(e, 0.0, cam.full_well_e)
    if cam.bits > 0:
        codes = (1 << cam.bits) - 1
        e = np.round(e * (codes / cam.full_well_e)) * (cam.full_well_e / codes)
    return e / to_e.astype(e.dtype)


def run_frames(frames: np.ndarray, filters: np.ndarray, cfg: OpticalConfig, geom: FrameGeometry,
               rng: np.random.Generator | None = None, keep_planes: bool = False):
    """Propagate input frames [F, N, N] (amplitudes in [0, 1]) through the 4f system.

    ``filters``: the applied Fourier filters, [F, N, N] or [1, N, N] (from
    :func:`constrain_filter`). Returns the detected amplitude ``sqrt(I)`` read back in
    input orientation, [F, N, N] real; with ``keep_planes`` also a dict of the input,
    Fourier-plane and camera arrays of the first frame (for pictures)."""
    cdt = np.complex128 if cfg.sim.precision == "complex128" else np.complex64
    lam, f = cfg.laser.wavelength_m, cfg.lens.focal_length_m
    rng = rng if rng is not None else np.random.default_rng(cfg.sim.seed)
    n = frames.shape[-1]
    step = max(1, _CACHE_PIXELS // (n * n))  # frames per pass: keep the working set in cache
    amp = np.empty(frames.shape, np.float64 if cdt is np.complex128 else np.float32)
    filt = filters.astype(cdt, copy=False)
    for f0 in range(0, frames.shape[0], step):
        u = frames[f0:f0 + step].astype(cdt, copy=False)
        spec, pf = lens_ft(u, geom.pitch_m, lam, f)
        spec *= filt if filt.shape[0] == 1 else filt[f0:f0 + step]
        out, _ = lens_ft(spec, pf, lam, f)
        inten = out.real * out.real + out.imag * out.imag
        det = camera_detect(inten, cfg.camera, cfg.sim.exposure_fill, cfg.sim.noise, rng)
        if f0 == 0:
            det0 = det[0]
        # lens 2 inverts the image: sample n of the camera holds input position -n (mod N)
        np.sqrt(np.roll(np.flip(det, axis=(-2, -1)), 1, axis=(-2, -1)), out=amp[f0:f0 + step])
    if not keep_planes:
        return amp
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
    cdt = np.complex128 if cfg.sim.precision == "complex128" else np.complex64
    h, _ = kernel_filter(np.asarray(kernel_plane)[None], cdt)
    return run_frames(frames, constrain_filter(h, cfg.fourier_modulator, geom), cfg, geom, rng)
