"""``conv2d`` on the simulated 4f correlator, with torch.nn.functional.conv2d's meaning.

How a convolution becomes frames
--------------------------------
* Every input channel of every image is one *tile* (padded as the conv asks). Tiles of
  the channels that meet the same kernels form one *correlation set*; a depthwise conv
  whose kernels are shared across channels (ConvShareViT) is one set holding all its
  channels. Channel sums (``C/groups > 1``) and the bias are done in electronics.
* Signs: ``two_pass`` splits tiles and kernels into positive and negative parts
  (``x = x⁺ - x⁻``, ``k = k⁺ - k⁻``; all four products, subtracted in electronics);
  ``bias`` adds offsets so both are non-negative and removes the cross terms in
  electronics (``(x+b)⋆(k+c) = x⋆k + c·box(x) + b·Σk + b·c·|k|``).
* A binary input modulator (DMD) shows a ``bits``-bit input as ``bits`` bit-planes.
* A frame holds a block of tiles (cells of the padded tile size + guard band) and the
  Fourier filter holds several kernels placed so that each kernel's outputs land in
  their own block of the camera frame (:func:`plan_tiles`). Only valid correlation
  outputs are read, and they never reach outside their own tile, so the tiles never
  alias into each other; the guard band is for device crosstalk.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from hwgen.errors import TargetError

from .calibration import LayerCalibration
from .devices import OpticalConfig, load_config
from .camera import detect_pixels, pattern_at
from .encoding import output_envelope, pixel_intensities
from .filters import written_filter
from .physics import _threads, encode_amplitude, frame_geometry, run_frames

__all__ = ["conv2d", "TilePlan", "plan_tiles", "set_plan", "encoded_counts", "electronic_flops", "correlation_sets",
           "dilate_kernels", "resolve_padding", "ConvInfo"]

_AUTO_FRAME_CAP = 512
_CHUNK = 8  # frames per batched FFT call (memory: 8 x 512² complex64 = 16 MB)


@dataclass
class TilePlan:
    """Placement of ``tiles`` input tiles x ``kernels`` kernels on ``n x n`` frames."""

    n: int
    cell: tuple          # (rows, cols) of one cell: padded tile + guard
    kernel_grid: tuple   # kernels per frame as (rows, cols) of blocks
    block: tuple         # tiles per block as (rows, cols) of cells
    tiles: int
    kernels: int

    @property
    def tiles_per_frame(self) -> int:
        return self.block[0] * self.block[1]

    @property
    def kernels_per_frame(self) -> int:
        return self.kernel_grid[0] * self.kernel_grid[1]

    @property
    def tile_chunks(self) -> int:
        return math.ceil(self.tiles / self.tiles_per_frame)

    @property
    def kernel_chunks(self) -> int:
        """Fourier-filter patterns (filter loads)."""
        return math.ceil(self.kernels / self.kernels_per_frame)

    @property
    def frames(self) -> int:
        return self.tile_chunks * self.kernel_chunks


def plan_tiles(tile_hw: tuple, tiles: int, kernels: int, n: int, guard: int = 0, max_kernels: int = 0) -> TilePlan:
    """Fewest frames for ``tiles`` x ``kernels`` correlations of padded tiles ``tile_hw``.

    The frame is a grid of ``n // cell`` cells; ``kr x kc`` kernels split it into blocks,
    the tiles fill block 0. Ties go to fewer filter loads. ``max_kernels`` caps the
    kernels sharing one filter (they share its dynamic range: the filter is normalised
    to its peak, which grows with the number of kernels)."""
    ch, cw = tile_hw[0] + guard, tile_hw[1] + guard
    gr, gc = n // ch, n // cw
    if gr < 1 or gc < 1:
        raise ValueError(f"a padded tile of {tile_hw[0]}x{tile_hw[1]} (+{guard} guard) does not fit a {n}x{n} frame")
    best = None
    for kr in range(1, min(gr, kernels) + 1):
        for kc in range(1, min(gc, math.ceil(kernels / kr)) + 1):
            br, bc = gr // kr, gc // kc
            tpf, kpf = br * bc, kr * kc
            if max_kernels and kpf > max_kernels:
                continue
            key = (math.ceil(kernels / kpf) * math.ceil(tiles / tpf), math.ceil(kernels / kpf), kpf)
            if best is None or key < best[0]:
                best = (key, (kr, kc), (br, bc))
    return TilePlan(n, (ch, cw), best[1], best[2], tiles, kernels)


def resolve_padding(padding, kernel_hw: tuple, dilation: tuple, stride: tuple) -> tuple:
    """(top, left, bottom, right) from "valid", "same", an int, (ph, pw) or 4 ONNX-order pads."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError("padding='same' needs stride 1 (as in torch)")
            th, tw = dilation[0] * (kernel_hw[0] - 1), dilation[1] * (kernel_hw[1] - 1)
            return (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        raise ValueError(f"padding must be 'valid', 'same', an int or a tuple, not {padding!r}")
    if isinstance(padding, int):
        return (padding,) * 4
    p = tuple(int(v) for v in padding)
    if len(p) == 2:
        return (p[0], p[1], p[0], p[1])
    if len(p) == 4:  # ONNX order: top, left, bottom, right
        return p
    raise ValueError(f"padding tuple must have 2 or 4 entries, not {len(p)}")


def _pair(v) -> tuple:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)


@dataclass
class ConvInfo:
    """What one conv2d call cost on the optics."""

    frames: int = 0
    filter_loads: int = 0
    sets: int = 0
    tiles: int = 0          # encoded input tiles (after sign split / bit-planes)
    products: int = 0       # tile x kernel correlations
    n: int = 0
    input_pixels: int = 0   # DAC samples written to the input modulator
    filter_pixels: int = 0  # DAC samples written to the Fourier modulator
    camera_pixels: int = 0  # ADC samples read
    electronic_flops: int = 0  # sqrt, sign/bit-plane recombination, channel sums, bias terms
    planes: dict | None = None


def _encode_signed(v: np.ndarray, scheme: str, offset: float | None = None):
    """Non-negative parts of v [M, ...] -> (parts [P*M, ...], owner idx, sign, offset).

    ``bias``: ``v + offset`` (``offset``: the calibrated one, else ``max(0, -min v)``),
    clipped at 0 (an input below the calibrated offset clips, as the modulator would)."""
    m = v.shape[0]
    if scheme == "bias":
        b = float(max(0.0, -v.min())) if offset is None else float(offset)
        return np.maximum(v + b, 0.0), np.arange(m), np.ones(m), b
    if (v < 0).any():
        return np.concatenate([np.maximum(v, 0), np.maximum(-v, 0)]), np.tile(np.arange(m), 2), np.repeat([1.0, -1.0], m), 0.0
    return v, np.arange(m), np.ones(m), 0.0


def _auto_frame(cfg: OpticalConfig, cell: tuple, products: int) -> int:
    cap = min(min(cfg.input_modulator.resolution), min(cfg.camera.resolution), _AUTO_FRAME_CAP)
    side = math.ceil(math.sqrt(products)) + 1
    return min(sfft.next_fast_len(side * max(cell)), cap)


def encoded_counts(cfg: OpticalConfig, tiles: int, kernels: int, x_signed: bool, k_signed: bool) -> tuple[int, int]:
    """(tiles, kernels) actually put on the optics after the sign scheme and bit-planes."""
    two = cfg.sim.signed == "two_pass"
    te = tiles * (2 if two and x_signed else 1)
    if cfg.input_modulator.modulation == "binary":
        te *= max(cfg.input_modulator.bits, 1)
    return te, kernels * (2 if two and k_signed else 1)


def set_plan(cfg: OpticalConfig, tile_hw: tuple, tiles: int, kernels: int, x_signed: bool, k_signed: bool) -> TilePlan:
    """The frame plan of one correlation set (shared by conv2d and optical4f.mapping)."""
    te, ke = encoded_counts(cfg, tiles, kernels, x_signed, k_signed)
    g = cfg.sim.guard_px
    n = cfg.sim.frame_px or _auto_frame(cfg, (tile_hw[0] + g, tile_hw[1] + g), te * ke)
    return plan_tiles(tile_hw, te, ke, n, g, cfg.sim.max_kernels_per_frame)


def electronic_flops(cfg: OpticalConfig, plan: TilePlan, tiles: int, kernels: int, out_hw: tuple) -> int:
    """Electronic work of one set: sqrt, scale and accumulate per read output, bias terms."""
    ho, wo = out_hw
    flops = plan.tiles * plan.kernels * ho * wo * 3
    if cfg.sim.signed == "bias":
        flops += tiles * kernels * ho * wo * 4 + tiles * ho * wo * 4
    return flops


def correlation_sets(kd: np.ndarray, groups: int) -> list[tuple[np.ndarray, list]]:
    """[(kernels [K, kh, kw], [(channel, output channels), ...]), ...] of a weight [O, C/g, kh, kw].

    Channels that meet the same kernel list (shared depthwise kernels) share one set."""
    O, cg = kd.shape[:2]
    og = O // groups
    sets: dict[bytes, list] = {}
    for c in range(cg * groups):
        g, ci = divmod(c, cg)
        ks = kd[g * og:(g + 1) * og, ci]
        sets.setdefault(ks.tobytes(), [ks, []])[1].append((c, np.arange(g * og, (g + 1) * og)))
    return [(ks, members) for ks, members in sets.values()]


_OPTICS: "OrderedDict[bytes, tuple]" = OrderedDict()
_OPTICS_BYTES = 256 << 20


def _optics_key(frames: np.ndarray, tp: np.ndarray, kp: np.ndarray, cfg: OpticalConfig) -> bytes:
    """What the noiseless camera intensities of a set depend on: the input frames as the
    optics see them (the encoded tiles ``tp`` placed in the simulation's precision; only its
    shape is hashed besides: the frames hold half the bytes and are all the optics read),
    the kernels and the optical devices (not the camera, the noise or its seed)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(np.ascontiguousarray(frames))  # the buffer itself (no bytes copy)
    h.update(np.ascontiguousarray(kp))
    s = cfg.sim
    h.update(repr((tp.shape, frames.shape, kp.shape, cfg.input_modulator, cfg.fourier_modulator, cfg.lens,
                   cfg.laser.wavelength_m, s.frame_px, s.guard_px, s.max_kernels_per_frame, s.signed, s.precision,
                   s.slm_pixels)).encode())
    return h.digest()


def _read_pixels(plan: TilePlan, kernel_offsets: list, out_hw: tuple) -> np.ndarray:
    """Flat camera-pixel index (``row * n + col``, read-out orientation) of every read
    output, [te, 1, ho, wo] when one kernel shares a filter, else [te, ke, ho, wo]: encoded
    tile ``t`` sits in cell ``t % tiles_per_frame`` of its frame, kernel ``k``'s outputs in
    the block at ``kernel_offsets[k % kernels_per_frame]``."""
    (ch, cw), (br, bc), n = plan.cell, plan.block, plan.n
    ho, wo = out_hw
    cell = np.arange(plan.tiles_per_frame)
    tile_off = (cell // bc) * ch * n + (cell % bc) * cw
    slot_off = np.array([r0 * n + c0 for r0, c0 in kernel_offsets])
    local = np.arange(ho)[:, None] * n + np.arange(wo)[None, :]
    t_idx = tile_off[np.arange(plan.tiles) % plan.tiles_per_frame]
    k_idx = slot_off[np.arange(plan.kernels) % plan.kernels_per_frame] if len(slot_off) > 1 else slot_off
    return (t_idx[:, None, None, None] + k_idx[None, :, None, None] + local).astype(np.intp)


def _correlate_set(tiles: np.ndarray, kernels: np.ndarray, cfg: OpticalConfig, rng, info: ConvInfo, where: str,
                   keep_planes: bool, lcal, set_index: int) -> np.ndarray:
    """Correlate every tile [T, Hp, Wp] with every kernel [K, kh, kw] optically -> [T, K, Ho, Wo].

    The optics give the noiseless camera intensity of every read pixel; the camera model
    (:func:`optical4f.camera.detect_pixels`) then applies the calibrated exposure of each
    Fourier filter (``lcal``, :class:`optical4f.calibration.LayerCalibration`), fixed
    pattern, noise, saturation and the ADC."""
    sim, im, cam = cfg.sim, cfg.input_modulator, cfg.camera
    T, hp, wp = tiles.shape
    K, kh, kw = kernels.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    # --- encode signs, full scale (calibrated DAC range: larger inputs saturate), quantisation / bit-planes
    tp, t_owner, t_sign, bx = _encode_signed(tiles, sim.signed, lcal.input_offset)
    kp, k_owner, k_sign, bk = _encode_signed(kernels, sim.signed)
    xs = lcal.input_full_scale or 1.0
    tp = np.minimum(tp / xs, 1.0)
    t_weight = t_sign * xs
    if im.modulation == "binary":
        bits = max(im.bits, 1)
        levels = (1 << bits) - 1
        q = np.round(tp * levels).astype(np.int64)
        tp = np.concatenate([((q >> b) & 1).astype(tp.dtype) for b in range(bits)])
        t_owner = np.tile(t_owner, bits)
        t_weight = np.concatenate([t_weight * (1 << b) / levels for b in range(bits)])
    else:
        tp = encode_amplitude(tp, im)
    te, ke = tp.shape[0], kp.shape[0]
    plan = set_plan(cfg, (hp, wp), T, K, bool((tiles < 0).any()), bool((kernels < 0).any()))
    if (plan.tiles, plan.kernels) != (te, ke):  # the mapping's counts must be the simulation's
        raise RuntimeError(f"{where}: planned {plan.tiles}x{plan.kernels} tiles x kernels, encoded {te}x{ke}")
    n = plan.n
    geom = frame_geometry(cfg, n, where=where)
    (ch, cw), (br, bc), (_, kc) = plan.cell, plan.block, plan.kernel_grid
    bh, bw = br * ch, bc * cw
    tpf, kpf = plan.tiles_per_frame, plan.kernels_per_frame
    rdt = np.float64 if sim.precision == "complex128" else np.float32
    # --- input frames: tile chunks (shared by every kernel chunk)
    tchunks = plan.tile_chunks
    cells = np.zeros((tchunks * tpf, ch, cw), rdt)
    cells[:te, :hp, :wp] = tp
    frames = np.zeros((tchunks, n, n), rdt)
    frames[:, :bh, :bw] = cells.reshape(tchunks, br, bc, ch, cw).transpose(0, 1, 3, 2, 4).reshape(tchunks, bh, bw)
    offsets = [(r * bh, c * bw) for r, c in (divmod(j, kc) for j in range(kpf))]
    exposure = np.zeros(ke, np.float64)
    key = None if keep_planes else _optics_key(frames, tp, kp, cfg)
    cached = _OPTICS.get(key) if key is not None else None
    if cached is not None:  # the same frames through the same filters: the optics are deterministic
        inten, hscales, peaks = cached
        for kc_i, peak in enumerate(peaks):
            ks = slice(kc_i * kpf, min((kc_i + 1) * kpf, ke))
            exposure[ks] = lcal.exposure(f"{set_index}/{kc_i}", peak, sim.exposure_fill, cam.full_well_e, where)
    inten = np.zeros((te, ke, ho, wo), rdt) if cached is None else inten  # noiseless intensity of every read output
    hscales = np.zeros(ke, np.float64) if cached is None else hscales
    peaks = []
    flat = sim.slm_pixels and cfg.fourier_modulator.modulation == "phase"  # the SLM simulated pixel by pixel
    if cached is None:
        filts, kranges = [], []
        for kc_i in range(plan.kernel_chunks):
            ks = range(kc_i * kpf, min((kc_i + 1) * kpf, ke))

            def plane(ks=ks):  # the kernels of the chunk at their offsets on the Fourier filter's plane
                p = np.zeros((n, n), np.float64)
                for j, kk in enumerate(ks):
                    r0, c0 = offsets[j]
                    p[np.ix_((np.arange(kh) - r0) % n, (np.arange(kw) - c0) % n)] = kp[kk]
                return p

            plane_id = repr((n, kh, kw, offsets[:len(ks)])).encode() + kp[ks.start:ks.stop].astype(np.float64).tobytes()
            filt, hscales[ks.start:ks.stop] = written_filter(plane, cfg, geom, plane_id)
            filts.append(filt)
            kranges.append(ks)
        # the camera pixels read: up to the last tile row / column of the fullest frame
        used = (math.ceil(min(tpf, te) / bc) * ch, min(tpf, te, bc) * cw)
        read = ((plan.kernel_grid[0] - 1) * bh + used[0], (kc - 1) * bw + used[1])

        def store(kc_i: int, f0: int, inten_f: np.ndarray):
            """The read outputs of frames f0 .. through filter kc_i (camera rows/cols from 0)."""
            nf = inten_f.shape[0]
            t_lo, t_hi = f0 * tpf, min(te, (f0 + nf) * tpf)
            for j, kk in enumerate(kranges[kc_i] if t_hi > t_lo else ()):
                r0, c0 = offsets[j]
                part = inten_f[:, r0:r0 + bh, c0:c0 + bw]
                reg = np.zeros((nf, bh, bw), rdt)
                reg[:, :part.shape[1], :part.shape[2]] = part
                reg = reg.reshape(nf, br, ch, bc, cw)[:, :, :ho, :, :wo]
                inten[t_lo:t_hi, kk] = reg.transpose(0, 1, 3, 2, 4).reshape(nf * tpf, ho, wo)[: t_hi - t_lo]

        if flat:  # every frame chunk's spectra once, met by every filter
            pixel_intensities(frames, filts, output_envelope(n, cfg.fourier_modulator.fill_factor),
                              np.complex128 if sim.precision == "complex128" else np.complex64, store, *read,
                              threads=_threads(cfg), chunk=_CHUNK)
        else:
            for kc_i, f0 in itertools.product(range(plan.kernel_chunks), range(0, tchunks, _CHUNK)):
                fr = frames[f0:f0 + _CHUNK]
                store(kc_i, f0, run_frames(fr, filts[kc_i], cfg, geom, rng, detect=False, rows=read))
        if keep_planes:  # the first frame chunk through the first filter again, its planes kept
            _, info.planes = run_frames(frames[:_CHUNK], filts[0], cfg, geom, rng, keep_planes=True, detect=False,
                                        rows=read)
            info.planes.update(n=n, pitch_m=geom.pitch_m, fourier_pitch_m=geom.fourier_pitch_m)
    for kc_i in range(plan.kernel_chunks if cached is None else 0):
        ks = range(kc_i * kpf, min((kc_i + 1) * kpf, ke))
        peak = float(inten[:, ks.start:ks.stop].max()) if te else 0.0
        peaks.append(peak)
        exposure[ks.start:ks.stop] = lcal.exposure(f"{set_index}/{kc_i}", peak, sim.exposure_fill, cam.full_well_e,
                                                   where)
    if cached is None and key is not None:
        inten.setflags(write=False)
        _OPTICS[key] = (inten, hscales, peaks)
        while sum(v[0].nbytes for v in _OPTICS.values()) > _OPTICS_BYTES:
            _OPTICS.popitem(last=False)
    # --- the camera, at the read pixels only (its noise is independent per pixel)
    fixed = cam.prnu > 0 or cam.dsnu_e > 0 or cam.read_noise_e > 0 and cam.dark_frames > 0
    pix = _read_pixels(plan, offsets, (ho, wo)) if fixed or flat else None
    pattern = pattern_at(cam, n, pix) if fixed else None
    det = detect_pixels(inten, exposure[None, :, None, None], cam, sim.noise, rng, pattern, threads=_threads(cfg))
    # electronics: flat field, weights (sign, full scale, bit-plane, filter normalisation) and
    # sums over the parts; the part of encoded tile i is tile i % T (parts are concatenated), same for kernels
    # (float32 when the camera's values are: 24 bits of mantissa against a 16-bit ADC and shot noise)
    tile_w = t_weight.astype(det.dtype)[:, None, None, None]  # [te, 1, 1, 1]
    if flat:  # flat-field: the SLM pixels' output envelope (vignetting), measured at calibration, divided out
        env = output_envelope(n, cfg.fourier_modulator.fill_factor)
        tile_w = tile_w / np.outer(env, env).astype(det.dtype).reshape(-1)[pix]  # [te, 1 or ke, ho, wo]
    det *= tile_w  # det is this call's own array
    k_weight = (k_sign * hscales).astype(det.dtype)
    parts = det.reshape(te // T, T, ke // K, K, ho, wo)
    out = np.zeros((T, K, ho, wo), np.float64)
    for pt, pk in itertools.product(range(te // T), range(ke // K)):
        out += parts[pt, :, pk] * k_weight[pk * K:(pk + 1) * K, None, None]
    if sim.signed == "bias":  # remove the offset terms in electronics
        shown = np.clip(tiles, -bx, xs - bx)  # what the modulator showed (calibrated range)
        cs = np.pad(shown, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
        box = cs[:, kh:, kw:] - cs[:, :-kh, kw:] - cs[:, kh:, :-kw] + cs[:, :-kh, :-kw]
        out -= bk * box[:, None] + bx * kernels.sum(axis=(1, 2))[None, :, None, None] + bx * bk * kh * kw
    info.frames += plan.frames
    info.filter_loads += plan.kernel_chunks
    info.tiles += te
    info.products += te * ke
    info.n = max(info.n, n)
    info.input_pixels += plan.frames * n * n
    info.filter_pixels += plan.kernel_chunks * n * n
    info.camera_pixels += plan.frames * n * n
    info.electronic_flops += electronic_flops(cfg, plan, T, K, (ho, wo))
    return out


def dilate_kernels(w: np.ndarray, dilation: tuple) -> np.ndarray:
    """Kernels [O, C/g, kh, kw] with zeros inserted for the dilation (float64)."""
    O, cg, kh, kw = w.shape
    kd = np.zeros((O, cg, dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1), np.float64)
    kd[:, :, :: dilation[0], :: dilation[1]] = w
    return kd


def _to_numpy(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy(), True
    return np.asarray(a), False


def conv2d(x, w, bias=None, stride=1, padding="valid", dilation=1, groups: int = 1, preset=None, *,
           config: OpticalConfig | None = None, rng: np.random.Generator | None = None, return_info: bool = False,
           keep_planes: bool = False, name: str = "", calibration=None):
    """2-D convolution (cross-correlation, as torch) computed by the simulated 4f system.

    Parameters
    ----------
    x : array [C, H, W] or [B, C, H, W] (numpy or torch)
    w : array [O, C/groups, kh, kw]
    bias : array [O] or None (added in electronics)
    stride, dilation : int or (sh, sw)
    padding : "valid", "same", int, (ph, pw) or ONNX (top, left, bottom, right)
    groups : int
    preset : preset name or TOML path (default: the realistic preset); ``config`` wins.
    return_info : also return a :class:`ConvInfo` (frames, pixels, electronic work).
    calibration : :class:`optical4f.calibration.LayerCalibration` or None
        The layer's calibrated input full scale, exposures and scale, used as they are when
        frozen; values it lacks are measured on this call's input and stored in it. None:
        the call calibrates on its own input (a lab's calibration run of exactly these
        inputs -- for a model, calibrate on training images, :func:`optical4f.calibration.calibrate`).

    Returns an array of torch's output shape and x's float dtype (a torch tensor if ``x`` is one).
    """
    cfg = config if config is not None else load_config(preset)
    xa, is_torch = _to_numpy(x)
    wa, _ = _to_numpy(w)
    squeeze = xa.ndim == 3
    if squeeze:
        xa = xa[None]
    if xa.ndim != 4 or wa.ndim != 4:
        raise ValueError(f"conv2d expects x [C,H,W] or [B,C,H,W] and w [O,C/groups,kh,kw], not {xa.shape} and {wa.shape}")
    B, C, H, W = xa.shape
    O, cg, kh, kw = wa.shape
    if groups < 1 or C % groups or O % groups or cg != C // groups:
        raise ValueError(f"groups={groups} does not fit x with {C} channels and w of shape {wa.shape}")
    stride, dilation = _pair(stride), _pair(dilation)
    pads = resolve_padding(padding, (kh, kw), dilation, stride)
    kd = dilate_kernels(wa, dilation)
    khd, kwd = kd.shape[2:]
    xp = np.pad(xa.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    hp, wp = xp.shape[2:]
    if hp < khd or wp < kwd:
        raise ValueError(f"kernel {khd}x{kwd} (dilated) is larger than the padded input {hp}x{wp}")
    ho1, wo1 = hp - khd + 1, wp - kwd + 1
    sets = correlation_sets(kd, groups)
    info = ConvInfo(sets=len(sets))
    lcal = calibration if calibration is not None else LayerCalibration()
    if lcal.input_full_scale is None:
        if lcal.frozen:
            raise TargetError(f"{name or 'conv2d'}: the calibration has no input full scale")
        if cfg.sim.signed == "bias":
            lcal.input_offset = float(max(0.0, -xp.min()))
            lcal.input_full_scale = cfg.sim.input_headroom * float(xp.max() + lcal.input_offset) or 1.0
        else:
            lcal.input_full_scale = cfg.sim.input_headroom * float(np.abs(xp).max()) or 1.0
    rng = rng if rng is not None else np.random.default_rng(cfg.sim.seed)
    y = np.zeros((B, O, ho1, wo1), np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("once")
        for si, (ks, members) in enumerate(sets):
            chans = [c for c, _ in members]
            tiles = xp[:, chans].transpose(1, 0, 2, 3).reshape(len(chans) * B, hp, wp)
            res = _correlate_set(tiles, ks, cfg, rng, info, name, keep_planes, lcal, si)
            keep_planes = False
            res = res.reshape(len(chans), B, len(ks), ho1, wo1)
            for i, (_, outs) in enumerate(members):
                y[:, outs] += res[i]
    if cg > 1:
        info.electronic_flops += B * O * (cg - 1) * ho1 * wo1
    y = y[:, :, :: stride[0], :: stride[1]]
    if lcal.scale != 1.0:
        y *= lcal.scale
    if bias is not None:
        ba, _ = _to_numpy(bias)
        y = y + ba.reshape(1, O, 1, 1)
        info.electronic_flops += y.size
    y = y.astype(xa.dtype if np.issubdtype(xa.dtype, np.floating) else np.float32)
    if squeeze:
        y = y[0]
    if is_torch:
        import torch

        y = torch.from_numpy(y)
    return (y, info) if return_info else y
