"""``hwgen sweep SPEC.toml -o RESULTS/``: a design-space sweep (registered as an hwgen command)."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["sweep"]


@click.command()
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Results folder (created; a rerun into it reuses its cache).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes of the local pool (default: one per core).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the points on this dask.distributed scheduler instead of a local pool.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sweep(spec: Path, out: Path, workers: int | None, scheduler: str | None, no_progress: bool):
    """Evaluate the design points of SPEC (model, target, parameters: a grid or an Optuna
    search) and write OUT/results.csv, results.parquet and pareto_*.png.

    Each point's result is cached in OUT/cache by a hash of model, target, parameters and
    hwgen version: rerunning a finished sweep computes nothing, an interrupted one
    continues. A point that fails (does not fit, invalid, error) is a row with its reason.
    See docs/sweeps.md for the SPEC format.
    """
    from .runner import run_sweep
    from .spec import load_spec

    s = load_spec(spec)
    r = run_sweep(s, out, scheduler=scheduler, workers=workers, progress=not no_progress)
    status: dict[str, int] = {}
    for row in r.rows:
        status[row["status"]] = status.get(row["status"], 0) + 1
    click.echo(f"{len(r.rows)} points ({', '.join(f'{n} {k}' for k, n in sorted(status.items()))}): "
               f"{r.computed} computed, {r.cached} from the cache, in {r.wall_s:.1f} s")
    for f in r.files:
        click.echo(f"  {f}")


if __name__ == "__main__":  # pragma: no cover
    sweep()
