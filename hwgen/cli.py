"""The ``hwgen`` command line.

Every error that is the user's (bad model, unknown target, bad option) prints one line
``error: ...`` on stderr and exits with status 2; no traceback, no output folder left.
Extra command groups (``hwgen models``) and targets register through entry points.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

import click

from . import __version__
from .errors import HwgenError

__all__ = ["main", "cli"]

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


class _Group(click.Group):
    """A click group that adds entry-point command groups lazily (no torch at start)."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group="hwgen.commands")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        ep = self._plugins().get(name)
        if ep is None:
            return None
        try:
            return ep.load()
        except ImportError as e:
            missing = getattr(e, "name", None) or str(e)
            raise HwgenError(
                f"'hwgen {name}' needs an optional dependency that is not installed ({missing}); "
                f"install it with: pip install 'hwgen[{name}]'"
            ) from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hwgen")
def cli():
    """hwgen: ONNX models -> one hardware IR -> FPGA accelerators (Amaranth, Edge-MoE style)
    or a simulated 4f optical correlator (ConvShareViT), with latency/energy/resource reports.

    \b
    Typical use:
      hwgen inspect m3vit-tiny
      hwgen compile model.onnx --target fpga -o build/
      hwgen models list
    """


def _status(text: str):
    """A spinner on stderr while a long stage runs (silent when stderr is not a terminal)."""
    from rich.console import Console

    return Console(stderr=True).status(text)


def _recording(category, fn, *args):
    """``fn(*args)`` and the warnings of ``category`` it gave (others pass through)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        result = fn(*args)
    mine = [w.message for w in caught if issubclass(w.category, category)]
    for w in caught:
        if not issubclass(w.category, category):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, mine


def _rejections(messages) -> list[dict]:
    """FusionRejectedWarnings -> one record per (pattern, anchor), the last reason kept."""
    found: dict[tuple[str, str], dict] = {}
    for m in messages:
        found[(m.pattern, m.anchor)] = {
            "pattern": m.pattern, "anchor": m.anchor, "anchor_op": m.anchor_op, "nodes": list(m.nodes), "why": m.reason,
        }
    return list(found.values())


def _load(model: str, batch: int, canonical: bool = True):
    from .frontend import load
    from .passes import canonicalize

    with _status(f"loading {model}"):
        g = load(model, batch=batch)
    if not canonical:
        return g, g
    with _status("canonicalising (folding, fusing LayerNorm/GELU/MoE/attention)"):
        return g, canonicalize(g)


def _placements(g) -> tuple[dict[str, dict], dict[str, object]]:
    """``(placement, targets)``: per installed target with a ``placement(graph)`` hook, node
    name -> ``{"op", "where"}`` (or ``{"error": why}`` when the target cannot place this
    model); and the target objects by name (for their ``placement_*`` wording)."""
    from .targets import available_targets

    out: dict[str, dict[str, str]] = {}
    targets: dict[str, object] = {}
    for name, ep in sorted(available_targets().items()):
        try:
            target = targets[name] = ep.load()()
            if hasattr(target, "placement"):
                out[name] = target.placement(g)
        except HwgenError as e:
            out[name] = {"error": str(e).splitlines()[0]}
        except Exception as e:  # a target's bug must not break inspect
            out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return out, targets


@cli.command()
@click.argument("model")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Value of a dynamic batch dimension.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of tables.")
def inspect(model: str, batch: int, as_json: bool):
    """Summarise MODEL (an .onnx path or a bundled model's name): inputs, outputs, ops,
    parameters, MACs, the attention / MoE / LayerNorm / GELU patterns found, and any op
    no installed target supports, and where each target runs each node (engine or host)."""
    from rich.console import Console
    from rich.table import Table

    from .analysis import find_patterns, total_macs
    from .errors import FusionRejectedWarning
    from .targets import available_targets

    (raw, g), rejected_msgs = _recording(FusionRejectedWarning, _load, model, batch)
    rejected = _rejections(rejected_msgs)
    pats = find_patterns(g)
    ops_used = {f"{n.domain}.{n.op}" if n.domain else n.op for n in g.nodes}
    unsupported: dict[str, list[str]] = {}  # target -> ops it refuses (a target without a list takes all)
    for name, ep in sorted(available_targets().items()):
        try:
            ops = getattr(ep.load(), "supported_ops", None)
        except Exception:  # a target that cannot load is reported by `compile`
            continue
        unsupported[name] = sorted(ops_used - set(ops)) if ops is not None else []
    no_target = sorted(set.intersection(*(set(v) for v in unsupported.values()))) if unsupported else sorted(ops_used)
    placement, targets = _placements(g)
    summary = {
        "model": str(model),
        "source": g.source,
        "opset": g.opset,
        "inputs": {i: [list(g.tensors[i].shape), str(g.tensors[i].dtype)] for i in g.inputs},
        "outputs": {o: [list(g.tensors[o].shape), str(g.tensors[o].dtype)] for o in g.outputs},
        "onnx_ops": dict(sorted(raw.op_histogram().items())),
        "ir_ops": dict(sorted(g.op_histogram().items())),
        "parameters": raw.parameter_count(),  # initializers as exported, before folding
        "macs": total_macs(g),
        "attention": pats.attention,
        "moe": pats.moe,
        "layernorm": pats.layernorm,
        "gelu": pats.gelu,
        "rejected": rejected,
        "unsupported_by_target": unsupported,
        "unsupported_by_every_target": no_target,
        "placement": placement,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    con = Console()
    con.print(f"[bold]{model}[/bold]  ({g.source}, opset {g.opset})")
    io = Table("", "name", "shape", "dtype", title="Inputs and outputs", title_justify="left")
    for kind, names in (("input", g.inputs), ("output", g.outputs)):
        for i in names:
            io.add_row(kind, i, str(list(g.tensors[i].shape)), str(g.tensors[i].dtype))
    con.print(io)
    con.print(f"parameters: {summary['parameters']:,}    MACs: {summary['macs']:,}")
    ops = Table("op", "ONNX nodes", "IR nodes", title="Ops (as exported -> after canonicalisation)", title_justify="left")
    for op in sorted(set(summary["onnx_ops"]) | set(summary["ir_ops"])):
        ops.add_row(op, str(summary["onnx_ops"].get(op, "")), str(summary["ir_ops"].get(op, "")))
    con.print(ops)
    con.print(
        f"patterns: {len(pats.attention)} attention, {len(pats.moe)} MoE, {pats.layernorm} LayerNorm, {pats.gelu} GELU"
        + (f"; {len(rejected)} look-alike region(s) not fused (below)" if rejected else "")
    )
    if pats.attention:
        t = Table("attention node", "heads", "seq", "head dim", "scale", title_justify="left")
        for a in pats.attention:
            t.add_row(a["node"], str(a["heads"]), str(a["seq"]), str(a["head_dim"]), f"{a['scale']:.4g}")
        con.print(t)
    if pats.moe:
        t = Table("MoE node", "experts", "top-k", "normalisation", "experts' MLP", "tokens", "gate input", title_justify="left")
        for m in pats.moe:
            gate = m["gate"] + (" (input-dependent, e.g. per task)" if m["gate_is_input_dependent"] else "")
            if m["gate_bias"]:
                gate += f"; bias {m['gate_bias']}" + (" (input-dependent, e.g. a task embedding)" if m["gate_bias_is_input_dependent"] else "")
            mlp = f"gated {m['activation']} ({ {'silu': 'SwiGLU', 'gelu': 'GeGLU', 'gelu_tanh': 'GeGLU'}.get(m['activation'], 'GLU') })" if m["gated"] else m["activation"]
            t.add_row(m["node"], str(m["experts"]), str(m["top_k"]), m["normalization"], mlp, str(m["tokens"]), gate)
        con.print(t)
    if rejected:
        t = Table("pattern", "at node", "nodes", "why not fused", title="Regions that looked like a pattern but were not fused", title_justify="left")
        for r in rejected:
            nodes = ", ".join(r["nodes"][:4]) + (f", ... ({len(r['nodes'])} nodes)" if len(r["nodes"]) > 4 else "")
            t.add_row(r["pattern"], f"{r['anchor']} ({r['anchor_op']})", nodes, r["why"])
        con.print(t)
    for name, ops_ in unsupported.items():
        con.print(f"ops target {name} does not support: {', '.join(ops_) if ops_ else 'none'}")
    for name, where in placement.items():
        if "error" in where:
            con.print(f"target {name}: placement not computed ({where['error']})")
            continue
        host: dict[str, list[str]] = {}
        for node in where.values():
            if node["where"].startswith("host"):
                host.setdefault(node["op"], []).append(node["where"].split(": ", 1)[1])
        on_target = sum(1 for node in where.values() if not node["where"].startswith("host"))
        target = targets[name]
        con.print(f"target {name} (default configuration): {on_target} of {len(where)} "
                  f"{getattr(target, 'placement_scope', 'nodes')} on the {getattr(target, 'placement_device', 'target')}, "
                  f"{len(where) - on_target} on the host"
                  + (f" ({target.placement_note})" if hasattr(target, "placement_note") else ""))
        if host:
            t = Table("op", "nodes on the host", "why (first node)", title=f"{name}: ops on the host", title_justify="left")
            for op, reasons in sorted(host.items()):
                t.add_row(op, str(len(reasons)), reasons[0])
            con.print(t)
    con.print(f"ops no installed target supports: {', '.join(no_target) if no_target else 'none'}")


@cli.command()
@click.argument("model")
@click.option("--target", "-t", required=True, help="Target name (see `hwgen targets`).")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True, help="Output folder (created).")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Target configuration (TOML).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Value of a dynamic batch dimension.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override one configuration field (repeatable).")
@click.option("--task", type=click.IntRange(min=0), default=None,
              help="Value of the model's integer task input (e.g. M3ViT's task id), fixed at compile time; "
                   "default: one program set per task value.")
def compile(model: str, target: str, out: Path, config: Path | None, batch: int, force: bool, overrides: tuple[str, ...],
            task: int | None):
    """Compile MODEL for a target into OUT: report.json, report.md and target files.

    OUT is written atomically: on any error nothing is left behind."""
    from .targets import get_target

    tgt = get_target(target)  # unknown target: clear error before any work
    if out.exists() and not force:
        raise HwgenError(f"{out} exists; pass --force to replace it")
    options: dict = {"config": config, "overrides": dict(_kv(o) for o in overrides), "model_name": model, "task": task}
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        prepare = getattr(tgt, "prepare", None)
        if prepare is not None:  # checks the target's options and starts work that needs no model
            prepare(tmp, options)
        _, g = _load(model, batch)
        report = tgt.compile(g, tmp, options)  # targets show their own progress
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        abort = getattr(tgt, "abort", None)
        if abort is not None:  # stop what prepare() started before the folder goes
            abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    lat, en = report.get("latency_s"), report.get("energy_j")
    click.echo(
        f"{target}: {model} -> {out}/report.json"
        + (f"  latency {lat * 1e3:.4g} ms" if isinstance(lat, (int, float)) else "")
        + (f"  energy {en * 1e3:.4g} mJ" if isinstance(en, (int, float)) else "")
    )


def _kv(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise HwgenError(f"--set expects KEY=VALUE, not {text!r}")
    return k.strip(), v.strip()


@cli.command()
def targets():
    """List the installed targets."""
    from .targets import available_targets

    for name, ep in sorted(available_targets().items()):
        try:
            help_ = getattr(ep.load(), "help", "")
        except Exception as e:
            help_ = f"(cannot load: {e})"
        click.echo(f"{name:12s} {help_}")


@cli.command()
@click.argument("model")
@click.option("--input", "-i", "inputs", multiple=True, metavar="NAME=FILE.npy", help="Input array (repeatable); default: seeded random.")
@click.option("--numerics", type=click.Choice(["float", "fixed"]), default="float", show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--save", type=click.Path(path_type=Path), help="Write the outputs to this .npz file.")
def run(model: str, inputs: tuple[str, ...], numerics: str, batch: int, save: Path | None):
    """Run MODEL with hwgen's reference interpreter and print its outputs' summary.

    With ``--numerics fixed``, the nodes that ran without a bit-level kernel (float
    arithmetic quantised to their formats, not the hardware's) are listed on stderr."""
    import warnings

    import numpy as np

    from .errors import FixedFallbackWarning
    from .frontend import sample_inputs
    from .interp import interpret

    _, g = _load(model, batch)
    feeds = sample_inputs(g)
    for item in inputs:
        k, v = _kv(item)
        if k not in feeds:
            raise HwgenError(f"--input {k!r}: the model's inputs are {list(feeds)}")
        try:
            feeds[k] = np.load(v)
        except Exception as e:
            raise HwgenError(f"--input {k}: cannot read {v}: {e}") from e
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FixedFallbackWarning)
        outs = interpret(g, feeds, numerics=numerics)
    fallbacks = [str(w.message) for w in caught if issubclass(w.category, FixedFallbackWarning)]
    for w in caught:
        if not issubclass(w.category, FixedFallbackWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if fallbacks:
        click.echo(f"float-then-quantise at {len(fallbacks)} node(s) (no bit-level kernel):", err=True)
        for text in fallbacks:
            click.echo("  " + text.removeprefix("numerics='fixed': "), err=True)
    for k, v in outs.items():
        flat = np.asarray(v).reshape(-1)
        head = ", ".join(f"{x:.5g}" for x in flat[:6])
        click.echo(f"{k} {list(np.shape(v))} {np.asarray(v).dtype}: [{head}{', ...' if flat.size > 6 else ''}]")
    if save:
        np.savez(save, **outs)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="hwgen", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return EXIT_USER_ERROR
    except HwgenError as e:
        click.echo(f"error: {e}", err=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as e:  # a bug in hwgen, not the user's input
        if os.environ.get("HWGEN_DEBUG"):
            raise
        click.echo(f"internal error: {type(e).__name__}: {e} (a bug in hwgen; rerun with HWGEN_DEBUG=1 for the traceback)", err=True)
        return EXIT_INTERNAL_ERROR
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
