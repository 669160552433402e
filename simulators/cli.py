"""``hwgen simulate OUT``: run a compiled model on the accelerator's RTL and check it.

``OUT`` is a folder written by ``hwgen compile MODEL --target fpga -o OUT``. The input is
``--input x.npy`` (or ``NAME=FILE.npy`` per input), ``--image N`` (test image N of the
digits split, for the bundled 8x8 models), or by default image 0 where that fits and a
seeded random tensor otherwise. Every program set (one per task value) runs unless
``--task`` picks one.

Checks: every tensor the accelerator stores against ``hwgen.interpret(numerics="fixed")``
bit for bit (the first differing layer, instruction and element are named), and the
outputs against the float model (onnxruntime on the source ONNX file when available)
within ``5 % of the largest output + 1e-3``. Writes ``OUT/sim.json`` and re-renders
``OUT/report.md`` with measured cycles beside the estimate. Exit status 1 on a mismatch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from hwgen.errors import HwgenError

__all__ = ["simulate"]


def _feeds(b, source: str, inputs: tuple[str, ...], image: int | None) -> tuple[dict, str]:
    g = b.graph
    names = list(g.inputs)
    feeds: dict[str, np.ndarray] = {}
    for item in inputs:
        name, sep, path = item.partition("=")
        if not sep:
            if len(names) != 1:
                raise HwgenError(f"--input {item}: the model takes {names}; write NAME=FILE.npy")
            name, path = names[0], item
        if name not in names:
            raise HwgenError(f"--input {name}: the compiled model's inputs are {names}")
        try:
            arr = np.load(path)
        except Exception as e:
            raise HwgenError(f"--input {name}: cannot read {path}: {e}") from e
        want = tuple(g.tensors[name].shape)
        if tuple(arr.shape) != want:
            raise HwgenError(f"--input {name}: {path} has shape {tuple(arr.shape)}, the model takes {want}")
        feeds[name] = arr.astype(g.tensors[name].dtype)
    what = "given inputs"
    missing = [n for n in names if n not in feeds]
    if missing:
        img_ok = len(missing) == 1 and tuple(g.tensors[missing[0]].shape)[1:] == (1, 8, 8)
        if image is not None and not img_ok:
            raise HwgenError(f"--image takes the digits test split (8x8, one channel); input {missing[0]} is "
                             f"{list(g.tensors[missing[0]].shape)}: give --input")
        if img_ok and (image is not None or not inputs):
            from models.data import load_split

            _, _, xte, _ = load_split()
            n = image or 0
            batch = g.tensors[missing[0]].shape[0]
            if not 0 <= n <= len(xte) - batch:
                raise HwgenError(f"--image {n}: the test split has {len(xte)} images")
            feeds[missing[0]] = xte[n:n + batch].astype(np.float32)
            what = f"digits test image {n}" + (f"..{n + batch - 1}" if batch > 1 else "")
        else:
            from hwgen.frontend import sample_inputs

            rnd = sample_inputs(g, seed=0)
            for m in missing:
                feeds[m] = rnd[m]
            what = "seeded random input (seed 0)"
    return feeds, what


def _float_reference(b, source: str, feeds: dict) -> tuple[dict, str]:
    full = dict(feeds)
    for k, v in b.bind.items():
        full[k] = np.array(v, dtype=np.int64)
    if source and Path(source).is_file():
        try:
            import onnxruntime as ort

            s = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
            names = [o.name for o in s.get_outputs()]
            run = s.run(None, {i.name: full[i.name] for i in s.get_inputs()})
            return dict(zip(names, run)), "onnxruntime"
        except Exception:  # fall back to hwgen's float interpreter
            pass
    import hwgen

    return hwgen.interpret(b.graph, feeds), "hwgen float interpreter"


def _backend(simulator: str, waves: Path | None, max_cycles: int):
    if simulator == "isa":
        from .compiled_run import isa_backend

        return isa_backend
    from .program_backend import rtl_backend

    return rtl_backend(simulator, waves, max_cycles)


@click.command("simulate")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--input", "-i", "inputs", multiple=True, metavar="[NAME=]FILE.npy", help="Input array (repeatable).")
@click.option("--image", type=click.IntRange(min=0), default=None, help="Use test image N of the digits split.")
@click.option("--task", default=None, help="Program set to run (e.g. task0; default: all).")
@click.option("--simulator", type=click.Choice(["verilator", "icarus", "isa"]), default="verilator", show_default=True,
              help="RTL on Verilator or Icarus; isa = the instruction set's functional model (no cycles, no RTL).")
@click.option("--waves", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a waveform (FST on Verilator, VCD on Icarus) that GTKWave opens.")
@click.option("--max-cycles", type=click.IntRange(min=1), default=200_000_000, show_default=True)
@click.option("--strict-float", is_flag=True,
              help="Fail on outputs outside the float tolerance even where MoE routing near a tie explains them.")
def simulate(out: Path, inputs, image, task, simulator, waves, max_cycles, strict_float):
    """Run compiled model OUT on the accelerator's RTL; check every layer bit for bit."""
    from rich.console import Console
    from rich.table import Table

    from fpga.compile.target import load_compiled, rerender_report

    from .compiled_run import simulate_binding

    con = Console(stderr=True)
    compiled, layout = load_compiled(out)
    names = [b.name for b in compiled.bindings]
    if task is not None:
        cand = task if task in names else f"task{task}"
        if cand not in names:
            raise HwgenError(f"--task {task}: the program sets are {names}")
        names = [cand]
    source = compiled.bindings[0].graph.source
    if waves is not None and simulator == "isa":
        raise HwgenError("--waves needs an RTL simulator (verilator or icarus)")
    results = []
    t0 = time.perf_counter()
    with con.status("simulating") as st:
        for name in names:
            b = compiled.binding(name)
            feeds, what = _feeds(b, source, inputs, image)
            st.update(f"{name}: float reference")
            float_ref, float_by = _float_reference(b, source, feeds)
            wave = waves if waves is None or len(names) == 1 else waves.with_name(f"{waves.stem}.{name}{waves.suffix}")
            backend = _backend(simulator, wave, max_cycles)
            res = simulate_binding(compiled, name, feeds, backend, float_ref, progress=st.update)
            res.extra.update({"input": what, "float_reference": float_by})
            results.append(res)
    # the exit status: the RTL against the reference (bit for bit), and the float model within
    # the tolerance -- unless fixed point routed some MoE tokens to other experts at a near-tie,
    # which no tolerance on the outputs can bound (reported, not fatal; --strict-float makes it so)
    explained = [r for r in results if not r.within_tolerance and r.extra.get("routing_differences")]
    ok = all(r.bit_exact for r in results) and all(
        r.within_tolerance or (r in explained and not strict_float) for r in results)
    total_cycles = results[0].cycles
    sim = {
        "simulator": simulator,
        "model": layout.get("model"),
        "bit_exact": all(r.bit_exact for r in results),
        "cycles": total_cycles,
        "max_abs_error_vs_float": max(r.max_abs_error_vs_float for r in results),
        "float_tolerance": "max |hardware - float| <= 0.05 * max|float| + 1e-3 per output",
        "within_tolerance": all(r.within_tolerance for r in results),
        "wall_s": time.perf_counter() - t0,
        "sim_wall_s": sum(r.sim_wall_s for r in results),
        "bindings": [{
            "name": r.name, "cycles": r.cycles, "program_cycles": r.program_cycles, "bit_exact": r.bit_exact,
            "first_mismatch": r.first_mismatch, "max_abs_error_vs_float": r.max_abs_error_vs_float,
            "within_tolerance": r.within_tolerance, "layer_cycles": r.layer_cycles, "layers": r.layers,
            "outputs": r.outputs, "wall_s": r.wall_s, "sim_wall_s": r.sim_wall_s, **r.extra,
        } for r in results],
    }
    cyc_sum = sum(r.cycles or 0 for r in results)
    if cyc_sum and sim["sim_wall_s"]:
        sim["cycles_per_s"] = cyc_sum / sim["sim_wall_s"]
    (out / "sim.json").write_text(json.dumps(sim, indent=1) + "\n")
    report = rerender_report(out, compiled, layout, sim=sim)  # with synth.json of `hwgen fpga synth --report OUT`
    from fpga.compile.report_latency import plot_latency, plot_roofline

    plot_latency(report, out / "layers.png")
    plot_roofline(report, out / "roofline.png")
    t = Table("program set", "input", "cycles", "latency", "layers", "bit-exact", "max |err| vs float", title_justify="left",
              title=f"hwgen simulate {out} ({simulator})")
    # latency at the clock the report uses (the lower of the target and the Fmax estimate)
    clock = report.get("clock") or {}
    f_used = clock.get("clock_used_hz") or compiled.config.clock_hz
    for r in results:
        lat = f"{r.cycles / f_used * 1e3:.4g} ms" if r.cycles else "-"
        t.add_row(r.name, r.extra.get("input", ""), f"{r.cycles:,}" if r.cycles else "-", lat, str(len(r.layers)),
                  "yes" if r.bit_exact else "NO", f"{r.max_abs_error_vs_float:.3g}"
                  + ("" if r.within_tolerance else f" > {r.float_tolerance:.3g}"))
    Console().print(t)
    click.echo(_clock_line(clock, f_used, compiled.config.clock_hz, total_cycles))
    if "cycles_per_s" in sim:
        click.echo(f"simulated {cyc_sum:,} cycles in {sim['sim_wall_s']:.1f} s ({sim['cycles_per_s']:,.0f} cycles/s)")
    for r in results:
        if "waves" in r.extra:
            click.echo(f"{r.name}: waveform {r.extra['waves']} (open it with GTKWave)")
        if not r.bit_exact:
            click.echo(f"MISMATCH in {r.name}: {r.first_mismatch}", err=True)
        if not r.within_tolerance:
            click.echo(f"{r.name}: outputs differ from the float model by {r.max_abs_error_vs_float:.4g} "
                       f"(tolerance {r.float_tolerance:.4g})", err=True)
            for node, f in r.extra.get("routing_differences", {}).items():
                click.echo(f"  {node}: {f['tokens']} of {f['of']} tokens go to other experts in fixed point than in "
                           f"float (near-ties: smallest float gap between the k-th and next expert {f['min_gap']:.2g})",
                           err=True)
    click.echo(f"wrote {out / 'sim.json'}")
    if not ok:
        raise SystemExit(1)


def _clock_line(clock: dict, used: float, target_hz: float, cycles: int | None) -> str:
    """One line saying which clock (``used``, Hz) the latency column uses, and the
    target-clock figure when they differ."""
    fmax = clock.get("fmax_estimated_hz")
    line = f"latency at {used / 1e6:.4g} MHz"
    if used < target_hz:
        line += (f": the Fmax estimate ({fmax / 1e6:.3g} MHz, report key clock) is below the target "
                 f"{target_hz / 1e6:.4g} MHz")
        if cycles:
            line += f"; at the target clock the program would take {cycles / target_hz * 1e3:.4g} ms"
    elif fmax:
        line += f" (target; Fmax estimate {fmax / 1e6:.3g} MHz)"
    return line
