"""optnn 0.1 (the ConvShareViT authors' 4f simulator) and ``optical4f.conv2d`` on the same
convolutions, side by side: relative error of each against a direct convolution, and
wall time per call, in one run.

Run (main venv)::

    python benchmarks/optnn_side_by_side.py [--optnn-python /work/venvs/optnn/bin/python] [--images 8]

optnn runs in its own venv (``python -m venv /work/venvs/optnn``; optnn 0.1 from PyPI
installed with ``--no-deps`` plus scikit-image and seaborn, which it imports; torch is the
main venv's 2.13.0+cpu through a ``.pth`` file -- the same version, so no second torch).
This script starts that interpreter as a worker (``--worker IN.npz OUT.npz``) on the same
arrays; if optnn cannot be imported or run, the exact error is printed in its columns.

Cases: the stride-1 convolutions of ``convsharevit-tiny`` on digit test images (every
one is a 3x3 "same" conv of 8x8 tiles, one input channel per tile, the kernels shared by
every tile; the shared-depthwise fc2 runs as one channel per tile) and synthetic shapes
(28x28 and 64x64 inputs, 3x3/5x5 kernels). Both simulators get identical inputs and
kernels; the reference is ``torch.nn.functional.conv2d`` in float64 (a cross-correlation).

What each side does (details in docs/optical4f.md, "optnn side by side"):

* optnn ``OpticalConv2d(1, F, k, input_size=n, pseudo_negativity=True, noise=...)``:
  pads the input by 2, angular-spectrum (Fresnel transfer function) propagation through
  two lens phase masks (lambda 532 nm, f = 10 mm, pitch sqrt(lambda f / N)), the Fourier
  filter ``fftshift(fft2(kernel))`` (a convolution: we pass the kernel flipped so that it
  computes torch's cross-correlation), the camera reads the field **amplitude** ``|U|``
  and returns it inverted (as lens 2 images it; flipped back here, as any read-out would),
  signed kernels as ReLU(k) and ReLU(-k) subtracted; noise: ``out + Poisson(255 out)/255``.
  It has no input sign handling, so signed inputs are split here (x+ and x-, two calls,
  subtracted) -- the same two-pass scheme optical4f uses.
* optical4f ``conv2d(..., preset="ideal")`` (noiseless, unquantised, complex128) and the
  default ``realistic`` preset (LCoS modulators, double-phase filter, 16-bit sCMOS with
  shot and read noise).

Errors are ``||y - ref|| / ||ref||``; for optnn also after the best single scale factor
(least squares), since its noise term doubles the mean (see the docs). optnn 0.1 calls
``torch.fft.fftshift`` without ``dim`` on 5-D tensors, which also rolls the batch and
output-channel axes: with more than one tile or kernel per call its outputs land on the
wrong tile/kernel ("batched" column). Its physics is therefore measured with one tile and
one kernel per call (where that roll is a no-op); the times are of the batched call (the
same optical work; the per-call loop's time is in the JSON).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OPTNN_PY = "/work/venvs/optnn/bin/python"


# ----------------------------------------------------------------------------- worker (optnn venv)
def _worker(inp: str, out: str) -> None:
    res: dict = {}
    try:
        import torch
        import optnn
        from optnn import OpticalConv2d

        res["optnn_version"] = getattr(optnn, "__version__", "?")
        res["torch_version"] = torch.__version__
        torch.set_num_threads(1)
        z = np.load(inp)
        names = json.loads(str(z["names"]))
        for i, name in enumerate(names):
            x, w = z[f"x{i}"], z[f"w{i}"]
            T, _, n, _ = x.shape
            F, _, k, _ = w.shape
            for noise in (False, True):
                torch.manual_seed(0)
                layer = OpticalConv2d(1, F, k, is_bias=False, pseudo_negativity=True, input_size=n, noise=noise)
                one = OpticalConv2d(1, 1, k, is_bias=False, pseudo_negativity=True, input_size=n, noise=noise)
                wf = torch.from_numpy(np.ascontiguousarray(w[:, :, ::-1, ::-1]))
                parts = [torch.from_numpy(np.maximum(x, 0)), torch.from_numpy(np.maximum(-x, 0))]
                with torch.no_grad():  # optnn multiplies by fft2(kernel): a convolution -> pass the kernel flipped
                    # (a) as a user calls it: all tiles and kernels in one call
                    layer.kernel.copy_(wf)
                    t0 = time.perf_counter()
                    ys = [layer(p).numpy() if p.any() else 0.0 for p in parts]
                    res[f"t{i}_{int(noise)}"] = time.perf_counter() - t0
                    # optnn returns the camera image as the second lens forms it, inverted: flip it back
                    res[f"y{i}_{int(noise)}"] = np.asarray(ys[0] - ys[1], np.float64)[..., ::-1, ::-1]
                    # (b) one tile x one kernel per call (its fftshift over every tensor axis then permutes nothing)
                    y1 = np.zeros((T, F, n, n))
                    t0 = time.perf_counter()
                    for f in range(F):
                        one.kernel.copy_(wf[f:f + 1])
                        for t in range(T):
                            for sgn, p in zip((1.0, -1.0), parts):
                                if p[t].any():
                                    y1[t, f] += sgn * one(p[t:t + 1]).numpy()[0, 0, ::-1, ::-1]
                    res[f"l{i}_{int(noise)}"] = time.perf_counter() - t0
                    res[f"z{i}_{int(noise)}"] = y1
    except Exception as e:  # the exact error goes into the table
        import traceback

        res["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
    np.savez(out, **{k: (np.asarray(v) if not isinstance(v, str) else np.asarray(v)) for k, v in res.items()})


# ----------------------------------------------------------------------------- cases (main venv)
def _cases(images: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, x [T, 1, n, n], w [F, 1, k, k]) in float64."""
    sys.path.insert(0, str(ROOT))
    import hwgen
    from hwgen.interp import interpret
    from optical4f.evaluate import digits_test_split

    cases = []
    g = hwgen.load("convsharevit-tiny", batch=images)
    xd, _ = digits_test_split()
    env = interpret(g, {g.inputs[0]: xd[:images].astype(np.float32)}, keep_all=True)
    for node in g.nodes:
        if node.op != "Conv" or tuple(node.attrs.get("strides", (1, 1))) != (1, 1):
            continue
        x = np.asarray(env[node.inputs[0]], np.float64)
        w = np.asarray(g.const(node.inputs[1]), np.float64)
        groups = int(node.attrs.get("group", 1))
        if groups > 1:  # shared depthwise: the same kernel list for every channel -> one channel per tile
            w = w[: w.shape[0] // groups]
            x = x.reshape(-1, 1, *x.shape[2:])
        cases.append((f"convsharevit-tiny {node.name}", x, w))
    rng = np.random.default_rng(0)
    for n, k, f, t in ((28, 3, 8, 4), (28, 5, 8, 4), (64, 5, 4, 2)):
        x = rng.random((t, 1, n, n))  # non-negative, as an image
        w = rng.standard_normal((f, 1, k, k)) / k
        cases.append((f"synthetic {t}x1x{n}x{n} * {f}x{k}x{k}", x, w))
    return cases


def _rel(y, ref) -> float:
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-300))


def _rel_scaled(y, ref) -> float:
    a = float((y * ref).sum() / max((y * y).sum(), 1e-300))
    return _rel(a * y, ref)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--optnn-python", default=DEFAULT_OPTNN_PY)
    ap.add_argument("--images", type=int, default=8, help="digit images through convsharevit-tiny (default 8)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return {}

    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT))
    import optical4f

    cases = _cases(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        arrays = {"names": json.dumps([c[0] for c in cases])}
        for i, (_, x, w) in enumerate(cases):
            arrays[f"x{i}"], arrays[f"w{i}"] = x, w
        np.savez(inp, **arrays)
        try:
            p = subprocess.run([args.optnn_python, __file__, "--worker", str(inp), str(out)], capture_output=True,
                               text=True, timeout=3600)
            if p.returncode or not out.exists():
                on = {"error": f"worker exit {p.returncode}: {p.stderr.strip()[-2000:]}"}
            else:
                with np.load(out) as z:
                    on = {k: z[k] for k in z.files}
        except (OSError, subprocess.TimeoutExpired) as e:
            on = {"error": f"{type(e).__name__}: {e}"}
    err = str(on["error"]) if "error" in on else None
    rows = []
    for i, (name, x, w) in enumerate(cases):
        k = w.shape[-1]
        ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=k // 2).numpy()
        row = {"case": name, "tiles": int(x.shape[0]), "n": int(x.shape[-1]), "kernels": int(w.shape[0]), "k": int(k)}
        for preset in ("ideal", "realistic"):
            t0 = time.perf_counter()
            y = optical4f.conv2d(x, w, padding="same", preset=preset)
            row[f"optical4f_{preset}_s"] = time.perf_counter() - t0
            row[f"optical4f_{preset}_err"] = _rel(y, ref)
        for noise in (0, 1):
            tag = "optnn_noisy" if noise else "optnn_noiseless"
            if err is None:
                y = on[f"y{i}_{noise}"]
                row[f"{tag}_s"] = float(on[f"t{i}_{noise}"])
                row[f"{tag}_batched_err"] = _rel(y, ref)
                z = on[f"z{i}_{noise}"]
                row[f"{tag}_percall_s"] = float(on[f"l{i}_{noise}"])
                row[f"{tag}_err"] = _rel(z, ref)
                row[f"{tag}_err_scaled"] = _rel_scaled(z, ref)
        rows.append(row)
    _print(rows, err, on)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "optnn_error": err}, indent=1))
    return {"rows": rows, "optnn_error": err}


def _print(rows, err, on) -> None:
    if err is None:
        print(f"optnn {on.get('optnn_version')} (torch {on.get('torch_version')}) vs optical4f.conv2d; errors "
              "||y - conv|| / ||conv||; optnn errors from one tile x one kernel per call, 'batched' = all in one call; "
              "(s) = after the best single scale; times: one call with every tile and kernel, 1 thread")
    else:
        print(f"optnn could not run: {err}")
    hdr = (f"{'case':38s} {'T':>4s} {'F':>2s} | {'o4f ideal':>9s} {'o4f real':>9s} | {'optnn':>8s} {'+noise':>8s} "
           f"{'+noise(s)':>9s} {'batched':>8s} | {'t o4f id':>8s} {'t o4f re':>8s} {'t optnn':>8s} {'t +noise':>8s}")
    print(hdr)
    print("-" * len(hdr))
    f = lambda v, w=8: f"{v:{w}.2e}" if isinstance(v, float) else f"{'-':>{w}s}"
    for r in rows:
        print(f"{r['case'][:38]:38s} {r['tiles']:4d} {r['kernels']:2d} | {f(r['optical4f_ideal_err'], 9)} "
              f"{f(r['optical4f_realistic_err'], 9)} | {f(r.get('optnn_noiseless_err'))} {f(r.get('optnn_noisy_err'))} "
              f"{f(r.get('optnn_noisy_err_scaled'), 9)} {f(r.get('optnn_noiseless_batched_err'))} | "
              f"{f(r['optical4f_ideal_s'])} {f(r['optical4f_realistic_s'])} {f(r.get('optnn_noiseless_s'))} "
              f"{f(r.get('optnn_noisy_s'))}")


if __name__ == "__main__":
    main()
