"""``hwgen models ...``: list, export, train and evaluate the reference models."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["models"]


def _check_name(name: str):
    from .registry import SPECS

    if name not in SPECS:
        raise click.BadParameter(f"unknown model {name!r}; known: {', '.join(SPECS)}", param_hint="NAME")


@click.group()
def models():
    """Reference PyTorch models (M3ViT MoE, ConvShareViT, ViT): list, export, train, eval."""


@models.command("list")
def list_():
    """Names, parameter counts, MACs and what each model is for."""
    from rich.console import Console
    from rich.table import Table

    from .registry import SPECS, model_info

    t = Table("name", "params", "MACs", "test acc (task 0)", "what", title="hwgen reference models", title_justify="left")
    for name in SPECS:
        info = model_info(name)
        acc = info.get("metrics", {}).get("test_accuracy", {}).get("digit")
        t.add_row(name, f"{info['params']:,}", f"{info['macs']:,}", "" if acc is None else f"{acc:.3f}", info["description"])
    Console(width=160).print(t)
    click.echo("MACs count the k active experts of a MoE layer (the dense formulation computes all E).")


@models.command()
@click.argument("name")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ONNX file to write.")
@click.option("--moe", type=click.Choice(["dense", "sparse"]), default=None, help="MoE formulation (M3ViT models; default: the model's).")
@click.option("--opset", type=click.IntRange(13, 23), default=None, help="ONNX opset (default 18).")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo", show_default=True,
              help="torch.onnx exporter: dynamo (default) or the TorchScript one (dynamo=False).")
@click.option("--static-batch", is_flag=True, help="Fix the batch dimension to 1 (default: dynamic 'batch').")
def export(name: str, out: Path, moe: str | None, opset: int | None, exporter: str, static_batch: bool):
    """Export NAME to one self-contained ONNX file OUT."""
    _check_name(name)
    from .export import DEFAULT_OPSET, export_onnx
    from .registry import build_model, get_spec

    spec = get_spec(name)
    if moe is not None and spec.family != "m3vit":
        raise click.BadParameter(f"{name} has no MoE layers", param_hint="--moe")
    model = build_model(name, moe=moe)
    p = export_onnx(model, out, opset=opset or DEFAULT_OPSET, dynamo=exporter == "dynamo", dynamic_batch=not static_batch)
    click.echo(f"{name} -> {p} ({p.stat().st_size / 1e3:.0f} kB)")


@models.command()
@click.argument("name")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (default: the registry's).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for NAME.weights.npz, NAME.metrics.json and NAME.onnx (default: hwgen/data/models).")
@click.option("--seed", type=int, default=None, help="Seed (default: the registry's).")
@click.option("--threads", type=click.IntRange(1, 2), default=1, show_default=True, help="torch CPU threads.")
def train(name: str, epochs: int | None, out: Path | None, seed: int | None, threads: int):
    """Train NAME on scikit-learn's digits (reproducible); write its weights and ONNX."""
    _check_name(name)
    from .registry import get_spec
    from .train import train as train_

    if not get_spec(name).trained:
        raise click.BadParameter(f"{name} has random weights; nothing to train", param_hint="NAME")
    m = train_(name, epochs=epochs, out_dir=out, seed=seed, threads=threads)
    for task, acc in m["test_accuracy"].items():
        click.echo(f"test accuracy ({task}): {acc:.3f}")
    click.echo(f"training time: {m['train_seconds']:.1f} s ({m['epochs']} epochs)")
    for p in m.get("onnx", []):
        click.echo(f"wrote {p}")


@models.command("eval")
@click.argument("name")
@click.option("--onnx", "onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="ONNX file to evaluate (default: NAME's shipped file).")
@click.option("--runtime", type=click.Choice(["hwgen", "onnxruntime"]), default="hwgen", show_default=True,
              help="hwgen's reference interpreter, or onnxruntime for comparison.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N test images.")
@click.option("--numerics", type=click.Choice(["float", "fixed"]), default="float", show_default=True,
              help="fixed: the FPGA accelerator's arithmetic, bit for bit (hwgen's fixed-point reference of the "
                   "hardware graph, default configuration's formats).")
@click.option("--target", type=click.Choice(["optical4f"]), default=None,
              help="Run the model's Conv layers on a hardware target's simulation: optical4f (the 4f optical "
                   "correlator, calibrated on digits training images; the rest digital).")
@click.option("--preset", default=None, help="optical4f: preset name or TOML file (default: realistic).")
@click.option("--seeds", type=click.IntRange(min=1), default=8, show_default=True,
              help="optical4f: noise seeds 0..N-1; the accuracy is their mean.")
def eval_(name: str, onnx_file: Path | None, runtime: str, limit: int | None, numerics: str, target: str | None,
          preset: str | None, seeds: int):
    """Test-split accuracy of NAME per task; the last line is `accuracy: 0.xxx` (task 0; with
    --target optical4f the mean over the noise seeds)."""
    _check_name(name)
    if target == "optical4f":
        _eval_optical(name, onnx_file, limit, preset, seeds)
        return
    from .data import TASKS
    from .evaluate import evaluate_onnx
    from .registry import resolve_model

    path = onnx_file or resolve_model(name)
    if path is None:
        raise click.ClickException(f"{name}: no ONNX file (train it first: hwgen models train {name})")
    if numerics == "fixed" and runtime != "hwgen":
        raise click.BadParameter("--numerics fixed runs on hwgen's interpreter", param_hint="--runtime")
    accs = evaluate_onnx(path, runtime=runtime, limit=limit, numerics=numerics)
    click.echo(f"{name}: {path} via {runtime}" + (" (fixed point: the accelerator's arithmetic)" if numerics == "fixed" else ""))
    for t, a in enumerate(accs):
        click.echo(f"task {t} ({TASKS[t]}): {a:.3f}")
    click.echo(f"accuracy: {accs[0]:.3f}")


def _eval_optical(name: str, onnx_file: Path | None, limit: int | None, preset: str | None, seeds: int):
    """``hwgen models eval NAME --target optical4f``: digital vs optical accuracy, mean over seeds."""
    import time

    import hwgen
    from hwgen.errors import HwgenError
    from optical4f.evaluate import accuracy, calibrated, digits_test_split

    from .registry import resolve_model

    path = onnx_file or resolve_model(name)
    if path is None:
        raise click.ClickException(f"{name}: no ONNX file (train it first: hwgen models train {name})")
    x, y = digits_test_split()
    if limit:
        x, y = x[:limit], y[:limit]
    try:
        g = hwgen.load(str(path), batch=len(y))
        if tuple(g.tensors[g.inputs[0]].shape[1:]) != (1, 8, 8) or len(g.inputs) != 1:
            raise click.ClickException(f"{name}: --target optical4f evaluates one-input 8x8 digit classifiers")
        t0 = time.perf_counter()
        cal = calibrated(g, preset)
        t1 = time.perf_counter()
        r = accuracy(g, x, y, preset, calibration=cal, seeds=seeds)
        t2 = time.perf_counter()
    except HwgenError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{name}: {path} via optical4f, preset {r['preset']}, {r['images']} test images")
    click.echo(f"calibration: {cal.images} digits training images ({t1 - t0:.1f} s)")
    for row in r["per_seed"]:
        click.echo(f"seed {row['seed']}: optical {row['optical_accuracy']:.4f}, drop {row['accuracy_drop_points']:+.2f} "
                   f"points, logits rel. error {row['logits_rel_error']:.3f}")
    click.echo(f"digital accuracy: {r['digital_accuracy']:.4f}")
    click.echo(f"mean drop over {seeds} seeds: {r['accuracy_drop_points']:+.2f} points "
               f"({(t2 - t1) / seeds:.1f} s per seed, {r['frames']} frames per run)")
    click.echo(f"accuracy: {r['optical_accuracy']:.4f}")
