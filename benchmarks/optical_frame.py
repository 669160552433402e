"""Speed of the 4f simulation on this CPU.

1. One 1024 x 1024 frame through the whole optical path (input quantisation, lens,
   constrained Fourier filter, lens, camera with shot/read noise and ADC), complex64.
   Goal: <= 0.1 s.
2. 256 frames of 64 x 64: one batched call vs 256 single-frame calls. Goal: the
   batched call is >= 10x faster per frame. Batched calls are measured on one thread
   (``sim.threads = 1``, the default) and on one thread per core (``sim.threads = 0``);
   a single frame is one pass, always on one thread.

Every figure is the best of several rounds, and the rounds interleave the variants, so
that a busy machine (the CPU is shared) slows them alike; the load average is printed,
and the process CPU time beside the wall time (on a busy machine the wall time mostly
measures the scheduler; on an idle one the two agree for one thread).

3. The digits test split (360 images) through convsharevit-tiny on the realistic preset,
   with its compiled calibration (made beforehand on 360 training images, not timed; it
   writes the Fourier filters, which stay cached), beside the digital run of the same graph
   (hwgen's float interpreter). Goal: <= 5 s. Measured for the default pixel-level Fourier
   SLM (``sim.slm_pixels = true``) and the sample-level one, the first run (noise seed 0)
   and a second (seed 1: the first layer's optics, whose input is the images, cached, as in
   a multi-seed evaluation), wall and process CPU time.

Parts 1 and 2 use the sample-level filter (``sim.slm_pixels = false``), as measured
before; part 1 also the pixel-level one.

Run: ``python benchmarks/optical_frame.py`` (prints the figures with their goals);
``--digits-only`` runs part 3 alone.
"""

from __future__ import annotations

import os
import time

import numpy as np

from optical4f.devices import load_config
from optical4f.physics import constrain_filter, encode_amplitude, frame_geometry, kernel_filter, run_frames, simulate_frames


def _setup(n: int, frames: int, seed: int = 0, pixels: bool = False):
    cfg = load_config("realistic", {"sim.frame_px": str(n), "lens.focal_length_m": str(n * 20e-6 * 16e-6 / 532e-9),
                                    "sim.slm_pixels": str(pixels)})
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
    return cfg, geom, x.astype(np.float32), filt, plane


def _rounds(cases: dict, rounds: int) -> tuple[dict, dict]:
    """Best wall time and best process CPU time (summed over threads) of each case, over
    ``rounds`` rounds that run every case once."""
    wall = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, fn in cases.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
    return wall, cpu


def digits_split(repeats: int = 2) -> dict:
    """Part 3: the 360 test images through the realistic preset vs the digital interpreter."""
    import hwgen
    from optical4f.evaluate import calibrated, digits_test_split, run_graph

    x, y = digits_test_split()
    g = hwgen.load("convsharevit-tiny", batch=len(y))
    out = {}
    t0, c0 = time.perf_counter(), time.process_time()
    hwgen.interpret(g, {"image": x})
    out["digital_s"], out["digital_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    for pixels in (True, False):
        cfg = load_config("realistic", {"sim.slm_pixels": str(pixels)})
        cal = calibrated(g, cfg)
        tag = "pixels" if pixels else "samples"
        for r in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            run_graph(g, {"image": x}, cfg, rng=np.random.default_rng(r), calibration=cal)
            out[f"{tag}_run{r}_s"], out[f"{tag}_run{r}_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    print(f"{'360 digits test images, convsharevit-tiny':<58}{'wall':>10}{'CPU':>10}{'goal':>12}")
    print(f"{'  digital (hwgen float interpreter)':<58}{out['digital_s']:>8.2f} s{out['digital_cpu_s']:>8.2f} s")
    for tag, label in (("pixels", "realistic, pixel-level SLM (default)"), ("samples", "realistic, sample-level SLM")):
        for r in range(repeats):
            what = "first run" if r == 0 else "again (layer 1 cached)"
            print(f"  {label + ', ' + what:<56}{out[f'{tag}_run{r}_s']:>8.2f} s{out[f'{tag}_run{r}_cpu_s']:>8.2f} s"
                  f"{'<= 5 s':>12}")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return out


def main(rounds: int = 15) -> dict:
    load0 = os.getloadavg()[0]
    rng = np.random.default_rng(1)
    # 1. one 1024 x 1024 frame: the whole path (filter written + propagation + camera)
    cb, gb, xb, fb, pb = _setup(1024, 1)
    cpx, _, _, _, _ = _setup(1024, 1, pixels=True)
    # 2. 256 frames of 64 x 64, batched (1 thread, 1 per core) vs one call per frame
    cfg, geom, xs, filt, plane = _setup(64, 256)
    cores = cfg.replace(sim={"threads": 0})
    nf = len(xs)
    cases = {
        "frame_1024_s": lambda: simulate_frames(xb, pb, cb, rng),
        "frame_1024_propagation_s": lambda: run_frames(xb, fb, cb, gb, rng),
        "frame_1024_pixels_s": lambda: simulate_frames(xb, pb, cpx, rng),
        "api_batch_s": lambda: simulate_frames(xs, plane, cfg, rng),
        "api_batch_cores_s": lambda: simulate_frames(xs, plane, cores, rng),
        "api_single_s": lambda: [simulate_frames(xs[i:i + 1], plane, cfg, rng) for i in range(nf)],
        "propagation_batch_s": lambda: run_frames(xs, filt, cfg, geom, rng),
        "propagation_batch_cores_s": lambda: run_frames(xs, filt, cores, geom, rng),
        "propagation_single_s": lambda: [run_frames(xs[i:i + 1], filt, cfg, geom, rng) for i in range(nf)],
    }
    for fn in cases.values():  # warm-up (FFT plans, thread pool)
        fn()
    r, c = _rounds(cases, rounds)
    load1 = os.getloadavg()[0]
    ncores = os.cpu_count() or 1
    print(f"{'benchmark':<58}{'wall':>10}{'CPU':>10}{'goal':>12}")
    for key, label, goal in (("frame_1024_s", "1 frame 1024x1024: simulate_frames (filter + 4f + camera)", "<= 100 ms"),
                             ("frame_1024_propagation_s", "1 frame 1024x1024: run_frames (4f + camera, filter given)", ""),
                             ("frame_1024_pixels_s", "1 frame 1024x1024, pixel-level SLM: simulate_frames", "")):
        print(f"{label:<58}{r[key] * 1e3:>7.1f} ms{c[key] * 1e3:>7.1f} ms{goal:>12}")
    print("256 frames of 64x64, per frame (us): batched call | one call per frame | ratio (goal >= 10x)")
    rows = (("simulate_frames (whole path), 1 thread", "api_batch_s", "api_single_s", True),
            (f"simulate_frames (whole path), {ncores} threads", "api_batch_cores_s", "api_single_s", False),
            ("run_frames (propagation + camera), 1 thread", "propagation_batch_s", "propagation_single_s", True),
            (f"run_frames (propagation + camera), {ncores} threads", "propagation_batch_cores_s",
             "propagation_single_s", False))
    for label, kb, ks, with_cpu in rows:
        for clock, t in (("wall", r), ("CPU", c)) if with_cpu else (("wall", r),):
            print(f"  {label if clock == 'wall' else '':<50}{clock:>5}{t[kb] / nf * 1e6:>9.1f} | {t[ks] / nf * 1e6:>9.1f} |"
                  f"{t[ks] / t[kb]:>6.1f}x")
    print(f"best of {rounds} interleaved rounds; load average {load0:.1f} -> {load1:.1f} on {ncores} cores "
          "(CPU: process time, for the one-thread rows)")
    out = dict(r)
    out.update({f"cpu_{k}": v for k, v in c.items()})
    out.update(api_ratio=r["api_single_s"] / r["api_batch_s"], api_ratio_cores=r["api_single_s"] / r["api_batch_cores_s"],
               propagation_ratio=r["propagation_single_s"] / r["propagation_batch_s"],
               propagation_ratio_cores=r["propagation_single_s"] / r["propagation_batch_cores_s"],
               api_ratio_cpu=c["api_single_s"] / c["api_batch_s"],
               propagation_ratio_cpu=c["propagation_single_s"] / c["propagation_batch_s"],
               load_average=(load0, load1), cores=ncores)
    return out


if __name__ == "__main__":
    import sys

    if "--digits-only" not in sys.argv:
        main()
    digits_split()
