"""The Fourier filter: the ideal matched filter of a kernel plane and what the Fourier
modulator actually applies -- sample by sample (:func:`constrain_filter`) or, for a
phase-only modulator with ``sim.slm_pixels``, pixel by pixel (:mod:`optical4f.encoding`).
:func:`written_filter` caches the patterns (fixed at compile time, reused by every run).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import scipy.fft as sfft

from .devices import Modulator, OpticalConfig

if TYPE_CHECKING:
    from .physics import FrameGeometry

__all__ = ["kernel_filter", "constrain_filter", "write_filter", "written_filter"]

_WORKERS = 1


def kernel_filter(kernel_planes: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Ideal matched filter ``conj(FFT(k))`` of each kernel plane, normalised to max |H| = 1.

    Returns (H [.., N, N], scale [..]) with ``ideal H = conj(FFT(k)) / scale``. Real planes
    take a real transform and fill the other half by symmetry, ``H(k) = conj H(-k)``."""
    planes = np.asarray(kernel_planes)
    if np.iscomplexobj(planes):
        h = np.conj(sfft.fft2(planes.astype(dtype, copy=False), workers=_WORKERS))
        scale = np.abs(h).max(axis=(-2, -1))
    else:
        rows, n = planes.shape[-2:]
        m = n // 2 + 1
        half = sfft.rfft2(planes.astype(np.finfo(dtype).dtype, copy=False), workers=_WORKERS)
        h = np.empty(planes.shape, dtype)
        np.conjugate(half, out=h[..., :m])
        if n > m:  # k2 >= m: H(k1, k2) = conj K(k1, k2) = K(-k1, N - k2)
            h[..., m:] = half.take(-np.arange(rows) % rows, axis=-2)[..., n - m:0:-1]
        scale = np.abs(half).max(axis=(-2, -1))
    scale = np.where(scale > 0, scale, 1.0)
    hv = h.view(h.real.dtype)  # a real multiply: complex division is ~10x slower
    hv *= (1.0 / scale)[..., None, None].astype(hv.dtype)
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
        theta = np.abs(h)
        np.clip(theta, 0.0, 1.0, out=theta)
        np.arccos(theta, out=theta)
        phi = np.angle(h)
        if mod.bits > 0:  # quantised phases: look the phasors up
            levels = 1 << mod.bits
            k = rdt.type(levels / (2 * np.pi))
            lut = (0.5 * np.exp(2j * np.pi * np.arange(levels) / levels)).astype(h.dtype)
            idx = []
            for p in (np.add(phi, theta), np.subtract(phi, theta, out=theta)):
                p *= k
                np.rint(p, out=p)
                i = p.astype(np.int32)
                i &= levels - 1  # levels is a power of two: the same as % levels, also below 0
                idx.append(i)
            out = lut[idx[0]]
            out += lut[idx[1]]
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


_FILTER_CACHE: "OrderedDict[bytes, tuple]" = OrderedDict()
# written filters kept per process (compile-time patterns, reused across runs): a pixel-level
# filter of a 512 x 512 frame takes 1 MB (phase levels), a sample-level one 2 MB (complex64)
_FILTER_CACHE_BYTES = 512 << 20


def written_filter(plane, cfg: OpticalConfig, geom: FrameGeometry, plane_id: bytes | None = None) -> tuple:
    """The filter the Fourier modulator applies for one kernel plane [N, N] (float64), in the
    simulation's precision, and its normalisation ``max|FFT(plane)|`` (so that the ideal
    filter is ``conj(FFT(plane)) / scale``); cached (the patterns are fixed at compile time,
    the same in every evaluation run). See :func:`write_filter` for the filter's form.

    ``plane_id``: bytes that name the plane exactly (its size, kernels and their places);
    then ``plane`` may be a function that builds it, called only when the cache misses.
    Without it the plane is named by its nonzero entries."""
    cdt = np.complex128 if cfg.sim.precision == "complex128" else np.complex64
    if plane_id is None:
        nonzero = np.flatnonzero(plane)  # a kernel plane is mostly zeros
        values = plane.reshape(-1)[nonzero].astype(np.float64)
        plane_id = repr(plane.shape).encode() + nonzero.tobytes() + values.tobytes()
    digest = hashlib.blake2b(plane_id, digest_size=20)
    digest.update(repr((cfg.fourier_modulator, cfg.input_modulator.fill_factor, geom, np.dtype(cdt).str,
                        cfg.sim.slm_pixels)).encode())
    key = digest.digest()
    hit = _FILTER_CACHE.get(key)
    if hit is not None:
        _FILTER_CACHE.move_to_end(key)
        return hit
    filt, hscale = write_filter(np.asarray(plane() if callable(plane) else plane, np.float64), cfg, geom)
    if isinstance(filt, np.ndarray):
        filt.setflags(write=False)
    out = (filt, hscale)
    _FILTER_CACHE[key] = out
    while sum(v[0].nbytes for v in _FILTER_CACHE.values()) > _FILTER_CACHE_BYTES:
        _FILTER_CACHE.popitem(last=False)
    return out


def write_filter(plane: np.ndarray, cfg: OpticalConfig, geom: FrameGeometry) -> tuple:
    """:func:`written_filter` without the cache: ``[1, N, N]`` on the sample grid, or the
    SLM's pixels (``sim.slm_pixels``, phase-only modulator) as an
    :class:`optical4f.encoding.PixelField` (its field is ``[2N, 2N]``)."""
    cdt = np.complex128 if cfg.sim.precision == "complex128" else np.complex64
    h, hscale = kernel_filter(plane[None], cdt)
    fm = cfg.fourier_modulator
    if cfg.sim.slm_pixels and fm.modulation == "phase":
        from .encoding import input_envelope, pixel_field

        fill = cfg.input_modulator.fill_factor
        if fill > 0:  # pre-compensate the input pixels' spectrum envelope (known at design time)
            env = input_envelope(plane.shape[-1], fill)
            h = h / (env[:, None] * env[None, :])
            peak = float(np.abs(h).max())
            if peak > 0:
                h /= peak
                hscale = hscale * peak
        filt = pixel_field(h[0], fm, geom.fourier_samples, fill, cdt)
    else:
        filt = constrain_filter(h, fm, geom).astype(cdt, copy=False)
    return filt, float(np.asarray(hscale).reshape(-1)[0])
