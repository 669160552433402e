"""Speed of the 4f simulation on this CPU.

1. One 1024 x 1024 frame through the whole optical path (input quantisation, lens,
   constrained Fourier filter, lens, camera with shot/read noise and ADC), complex64.
   Goal: <= 0.1 s.
2. 256 frames of 64 x 64: one batched call vs 256 single-frame calls. Goal: the
   batched call is >= 10x faster per frame (per-call overhead dominates small frames).

Run: ``python benchmarks/optical_frame.py`` (prints both figures with their goals).
"""

from __future__ import annotations

import time

import numpy as np

from optical4f.devices import load_config
from optical4f.physics import constrain_filter, encode_amplitude, frame_geometry, kernel_filter, run_frames, simulate_frames


def _setup(n: int, frames: int, seed: int = 0):
    cfg = load_config("realistic", {"sim.frame_px": str(n), "lens.focal_length_m": str(n * 20e-6 * 16e-6 / 532e-9)})
    # a frame this size may not fit the default camera/modulators: use ideal-size devices, realistic quantisation/noise
    cfg = cfg.replace(input_modulator={"resolution": (4096, 4096)}, camera={"resolution": (4096, 4096)},
                      fourier_modulator={"resolution": (2 * n, 2 * n)})
    geom = frame_geometry(cfg, n)
    rng = np.random.default_rng(seed)
    x = encode_amplitude(rng.random((frames, n, n)).astype(np.float32), cfg.input_modulator)
    plane = np.zeros((n, n))
    plane[:3, :3] = rng.random((3, 3))
    h, _ = kernel_filter(plane[None], np.complex64)
    filt = constrain_filter(h, cfg.fourier_modulator, geom).astype(np.complex64)
    return cfg, geom, x.astype(np.float32), filt


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> dict:
    # 1. one 1024 x 1024 frame: the whole path (filter written + propagation + camera)
    cfg, geom, x, filt = _setup(1024, 1)
    plane = np.zeros((1024, 1024))
    plane[:3, :3] = np.random.default_rng(2).random((3, 3))
    rng = np.random.default_rng(1)
    simulate_frames(x, plane, cfg, rng)  # warm-up (FFT plans)
    t_big = _best(lambda: simulate_frames(x, plane, cfg, rng), 5)
    t_big_prop = _best(lambda: run_frames(x, filt, cfg, geom, rng), 5)

    # 2. 256 frames of 64 x 64, batched vs one call per frame, at two levels
    cfg, geom, xs, filt = _setup(64, 256)
    plane = np.zeros((64, 64))
    plane[:3, :3] = np.random.default_rng(2).random((3, 3))
    simulate_frames(xs, plane, cfg, rng)
    api_batch = _best(lambda: simulate_frames(xs, plane, cfg, rng), 5)
    api_single = _best(lambda: [simulate_frames(xs[i:i + 1], plane, cfg, rng) for i in range(len(xs))], 3)
    prop_batch = _best(lambda: run_frames(xs, filt, cfg, geom, rng), 5)
    prop_single = _best(lambda: [run_frames(xs[i:i + 1], filt, cfg, geom, rng) for i in range(len(xs))], 3)
    nf = len(xs)
    print(f"{'benchmark':<58}{'measured':>12}{'goal':>12}")
    print(f"{'1 frame 1024x1024: simulate_frames (filter + 4f + camera)':<58}{t_big * 1e3:>9.1f} ms{'<= 100 ms':>12}")
    print(f"{'1 frame 1024x1024: run_frames (4f + camera, filter given)':<58}{t_big_prop * 1e3:>9.1f} ms")
    print("256 frames of 64x64, per frame (us): batched call | one call per frame | ratio (goal >= 10x)")
    for label, tb, ts in (("simulate_frames (whole path per call)", api_batch, api_single),
                          ("run_frames (propagation + camera only)", prop_batch, prop_single)):
        print(f"  {label:<40}{tb / nf * 1e6:>9.1f} | {ts / nf * 1e6:>9.1f} | {ts / tb:>6.1f}x")
    return {"frame_1024_s": t_big, "frame_1024_propagation_s": t_big_prop,
            "api_batch_s": api_batch, "api_single_s": api_single, "api_ratio": api_single / api_batch,
            "propagation_batch_s": prop_batch, "propagation_single_s": prop_single,
            "propagation_ratio": prop_single / prop_batch}


if __name__ == "__main__":
    main()
