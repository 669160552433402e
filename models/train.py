"""Reproducible training of the tiny models on scikit-learn's digits.

``train(name, epochs=None, out_dir=None)``: fixed split (:mod:`models.data`), fixed seed,
one CPU thread by default (bit-for-bit reproducible on a machine), AdamW with a cosine
learning rate and one warm-up epoch, batch 64, random +-1 pixel shifts as augmentation,
label smoothing 0.1. The M3ViT trains both tasks on every batch (one forward per task,
the task input selects the gates) plus 0.01 x a Switch-style load-balance loss on the
gate probabilities. Writes ``NAME.weights.npz``, ``NAME.metrics.json`` and the ONNX
file(s) (``m3vit-tiny`` also writes ``m3vit-tiny-sparse.onnx``) to ``out_dir``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

__all__ = ["train", "accuracy_torch"]


def _shift(x, gen):
    """Random shift of every image by -1..1 pixels in each direction (zero fill)."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    pad = F.pad(x, (1, 1, 1, 1))
    dx = torch.randint(0, 3, (b,), generator=gen)
    dy = torch.randint(0, 3, (b,), generator=gen)
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(b):
        out[i] = pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    return out


def _forward(model, x, task: int):
    import torch

    if "task" in model.input_names:
        return model(x, torch.tensor(task, dtype=torch.int64))[task]
    return model(x)


def accuracy_torch(model, x: np.ndarray, y: list[np.ndarray]) -> list[float]:
    """Test accuracy per task of a torch model."""
    import torch

    ntasks = len(model.output_names) if "task" in model.input_names else 1
    accs = []
    with torch.no_grad():
        xt = torch.from_numpy(x)
        for t in range(ntasks):
            pred = _forward(model.eval(), xt, t).argmax(-1).numpy()
            accs.append(float((pred == y[t]).mean()))
    return accs


def train(name: str, epochs: int | None = None, out_dir=None, seed: int | None = None, threads: int = 1,
          progress: bool = True, export: bool = True) -> dict:
    """Train ``name`` and write its weights, metrics and ONNX file(s); returns the metrics."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from .data import TASKS, load_split
    from .export import export_onnx
    from .registry import SPECS, build_model, data_dir, get_spec

    spec = get_spec(name)
    if not spec.trained:
        raise ValueError(f"{name} is not a trained model (random weights)")
    base = spec.weights  # m3vit-tiny-sparse and the -same alias train their base model
    bspec = get_spec(base)
    epochs = bspec.epochs if epochs is None else int(epochs)
    seed = bspec.seed if seed is None else int(seed)
    out = Path(out_dir) if out_dir is not None else data_dir()
    out.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    xtr, ytr, xte, yte = load_split()
    model = build_model(base, pretrained=False)
    multitask = "task" in model.input_names
    ntasks = len(model.output_names) if multitask else 1
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    bs = 64
    steps_per_epoch = math.ceil(len(xtr) / bs)
    total = max(1, epochs * steps_per_epoch)
    warm = steps_per_epoch

    def lr_at(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(seed)
    X = torch.from_numpy(xtr)
    Y = [torch.from_numpy(y) for y in ytr]
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc=f"train {base}", unit="epoch", disable=not progress)
    for _ in bar:
        model.train()
        perm = torch.randperm(len(X), generator=gen)
        tot, n = 0.0, 0
        for i in range(0, len(X), bs):
            idx = perm[i : i + bs]
            xb = _shift(X[idx], gen)
            loss = 0.0
            for t in range(ntasks):
                loss = loss + F.cross_entropy(_forward(model, xb, t), Y[t][idx], label_smoothing=0.1)
                if multitask:
                    loss = loss + 0.01 * model.balance_loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
        bar.set_postfix(loss=f"{tot / n:.3f}")
    train_s = time.perf_counter() - t0
    model.eval()
    accs = accuracy_torch(model, xte, yte)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez(out / f"{base}.weights.npz", **state)
    metrics = {
        "model": base,
        "epochs": epochs,
        "seed": seed,
        "threads": threads,
        "train_seconds": round(train_s, 1),
        "test_images": int(len(xte)),
        "test_accuracy": {TASKS[t]: round(a, 4) for t, a in enumerate(accs)},
        "torch": torch.__version__,
    }
    (out / f"{base}.metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if export:
        names = [n for n, s in SPECS.items() if s.weights == base and s.shipped]
        for n in names:
            export_onnx(build_model(n, weights_dir=out), out / f"{n}.onnx")
        metrics["onnx"] = [str(out / f"{n}.onnx") for n in names]
    return metrics
