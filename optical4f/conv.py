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

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from .devices import OpticalConfig, load_config
from .physics import constrain_filter, encode_amplitude, frame_geometry, kernel_filter, run_frames

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


def _encode_signed(v: np.ndarray, scheme: str):
    """Non-negative parts of v [M, ...] -> (parts [P*M, ...], owner idx, sign, offset)."""
    m = v.shape[0]
    if scheme == "bias":
        b = float(max(0.0, -v.min()))
        return v + b, np.arange(m), np.ones(m), b
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


def _correlate_set(tiles: np.ndarray, kernels: np.ndarray, cfg: OpticalConfig, rng, info: ConvInfo, where: str,
                   keep_planes: bool) -> np.ndarray:
    """Correlate every tile [T, Hp, Wp] with every kernel [K, kh, kw] optically -> [T, K, Ho, Wo]."""
    sim, im = cfg.sim, cfg.input_modulator
    T, hp, wp = tiles.shape
    K, kh, kw = kernels.shape
    ho, wo = hp - kh + 1, wp - kw + 1
    # --- encode signs, full scale, quantisation / bit-planes
    tp, t_owner, t_sign, bx = _encode_signed(tiles, sim.signed)
    kp, k_owner, k_sign, bk = _encode_signed(kernels, sim.signed)
    xs = float(tp.max()) or 1.0
    tp = tp / xs
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
    enc = np.zeros((te, ke, ho, wo), np.float64)  # measured correlation of every encoded tile x kernel
    for kc_i in range(plan.kernel_chunks):
        ks = range(kc_i * kpf, min((kc_i + 1) * kpf, ke))
        plane = np.zeros((n, n), np.float64)
        slots = []
        for j, kk in enumerate(ks):
            r, c = divmod(j, kc)
            rows = (np.arange(kh) - r * bh) % n
            cols = (np.arange(kw) - c * bw) % n
            plane[np.ix_(rows, cols)] = kp[kk]
            slots.append((kk, r * bh, c * bw))
        h, hscale = kernel_filter(plane[None], np.complex128)
        filt = constrain_filter(h, cfg.fourier_modulator, geom)
        for f0 in range(0, tchunks, _CHUNK):
            fr = frames[f0:f0 + _CHUNK]
            want = keep_planes and kc_i == 0 and f0 == 0
            res = run_frames(fr, filt, cfg, geom, rng, keep_planes=want)
            if want:
                amp, info.planes = res
                info.planes["n"], info.planes["pitch_m"], info.planes["fourier_pitch_m"] = n, geom.pitch_m, geom.fourier_pitch_m
                keep_planes = False
            else:
                amp = res
            nf = fr.shape[0]
            for kk, r0, c0 in slots:
                reg = amp[:, r0:r0 + bh, c0:c0 + bw].reshape(nf, br, ch, bc, cw)[:, :, :ho, :, :wo]
                reg = reg.transpose(0, 1, 3, 2, 4).reshape(nf * tpf, ho, wo)
                t_lo = f0 * tpf
                t_hi = min(te, (f0 + nf) * tpf)
                if t_hi <= t_lo:
                    continue
                enc[t_lo:t_hi, kk] = reg[: t_hi - t_lo] * hscale[0]
    # electronics: weights (sign, full scale, bit-plane) and sums over the parts; the
    # part of encoded tile i is tile i % T (parts are concatenated), same for kernels
    enc *= t_weight[:, None, None, None]
    enc *= k_sign[None, :, None, None]
    out = enc.reshape(te // T, T, ke // K, K, ho, wo).sum(axis=(0, 2))
    if sim.signed == "bias":  # remove the offset terms in electronics
        cs = np.pad(tiles, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
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
           keep_planes: bool = False, name: str = ""):
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
    rng = rng if rng is not None else np.random.default_rng(cfg.sim.seed)
    y = np.zeros((B, O, ho1, wo1), np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("once")
        for ks, members in sets:
            chans = [c for c, _ in members]
            tiles = xp[:, chans].transpose(1, 0, 2, 3).reshape(len(chans) * B, hp, wp)
            res = _correlate_set(tiles, ks, cfg, rng, info, name, keep_planes)
            keep_planes = False
            res = res.reshape(len(chans), B, len(ks), ho1, wo1)
            for i, (_, outs) in enumerate(members):
                y[:, outs] += res[i]
    if cg > 1:
        info.electronic_flops += B * O * (cg - 1) * ho1 * wo1
    y = y[:, :, :: stride[0], :: stride[1]]
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
