"""The ``fpga`` target: ``hwgen compile MODEL --target fpga [--config acc.toml] [--task T] -o OUT``.

Writes into OUT (atomically, through ``hwgen compile``):

==================  ================================================================
``accelerator.v``   the accelerator for the configuration (Amaranth -> Verilog), with
``accelerator.vlt`` Verilator's lint waivers (``--set verilog=false`` skips both)
``config.toml``     the configuration used
``program.bin``     every program, 16 bytes an instruction (little-endian), back to back
``program.asm``     the same, readable: each instruction commented with its IR node
``image.bin``       the external-memory image from address 0 (weights, constants, programs;
                    inputs, outputs and spill slots zeroed)
``layout.json``     where everything is: regions, programs, inputs/outputs, host steps
``compiled.pkl``    the compiled model for ``hwgen simulate OUT`` (this hwgen version only)
``report.json``     figures (schema ``hwgen.report``) and ``report.md``, ``layers.png`` (cycles per
                    layer), ``roofline.png`` (ops/cycle against ops per external byte)
==================  ================================================================

Options (``--set KEY=VALUE`` besides the configuration's own fields): ``verilog=true|false``.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures.process import BrokenProcessPool
import json
import pickle
from pathlib import Path

import numpy as np

from hwgen import __version__
from hwgen.errors import TargetError
from hwgen.report import write_report

from ..config import AcceleratorConfig, preset_changes, read_toml_table
from .compiler import Compiled, compile_graph
from .report import binding_costs, build_report
from .report_latency import plot_latency, plot_roofline

__all__ = ["FpgaTarget", "load_config", "write_program", "load_compiled", "rerender_report"]

_TARGET_KEYS = ("verilog",)


def load_config(path, overrides: dict) -> AcceleratorConfig:
    """The configuration from ``path`` (default Edge-MoE's) with ``overrides`` applied."""
    import dataclasses

    from hwgen.fixedpoint import FixedFormat

    table = read_toml_table(path) if path else {}
    cfg = AcceleratorConfig.from_table(table, path) if path else AcceleratorConfig()
    fields = {f.name: f for f in dataclasses.fields(AcceleratorConfig)}
    changes = {}
    for k, v in overrides.items():
        if k in _TARGET_KEYS or k == "preset":
            continue
        if k not in fields:
            raise TargetError(f"--set {k}: not a configuration field; fields: {', '.join(sorted(fields))}, "
                              f"target options: {', '.join(_TARGET_KEYS)}")
        cur = getattr(cfg, k)
        try:
            if isinstance(cur, FixedFormat):
                val = FixedFormat.parse(v)
            elif isinstance(cur, bool):
                val = str(v).lower() in ("1", "true", "yes")
            elif isinstance(cur, int):
                val = int(v, 0)
            elif isinstance(cur, float):
                val = float(v)
            else:
                val = str(v)
        except ValueError as e:
            raise TargetError(f"--set {k}={v}: {e}") from e
        changes[k] = val
    if "preset" in overrides:  # its formats replace the file's; its port too, unless the file or --set gives one
        given = {"mac_cols": cfg.mac_cols, **changes}
        if "mem_port_bits" in table:
            given["mem_port_bits"] = cfg.mem_port_bits
        changes.update(preset_changes(overrides["preset"], given))
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    return cfg


def _verilog_job(config_dict: dict, out_dir: str) -> float:
    """Generate accelerator.v in a worker process (it takes seconds to tens of seconds)."""
    import time

    from hwgen.fixedpoint import FixedFormat

    from .. import generate_verilog

    d = dict(config_dict)
    d["act_fmt"], d["weight_fmt"] = FixedFormat.parse(d["act_fmt"]), FixedFormat.parse(d["weight_fmt"])
    t0 = time.perf_counter()
    generate_verilog(AcceleratorConfig(**d), out_dir)
    return time.perf_counter() - t0


def write_program(compiled: Compiled, out: Path) -> None:
    """``program.bin`` and ``program.asm``."""
    blobs, lines = [], [f"# hwgen {__version__} fpga program: one 128-bit instruction a line (fpga.isa.assemble reads "
                        f"it back); byte address = program base + 16 x index"]
    for b in compiled.bindings:
        lines.append(f"\n# ===== program set {b.name}  bind={b.bind}")
        for si, seg in enumerate(b.segments):
            if seg.kind == "host":
                lines.append(f"\n# --- host step: {seg.node} (reference interpreter on the host)")
                continue
            lines.append(f"\n# --- program {si} at {seg.addr:#x}: {len(seg.instrs)} instructions")
            last = None
            for i, e in enumerate(seg.instrs):
                if e.node and e.node != last:
                    lines.append(f"# {e.node}")
                    last = e.node
                text = str(e.instr)
                lines.append(f"{text:<72s} # [{i}] {e.comment}")
                blobs.append(int(_encode(e.instr)).to_bytes(16, "little"))
    (out / "program.bin").write_bytes(b"".join(blobs))
    (out / "program.asm").write_text("\n".join(lines) + "\n")


def _encode(instr):
    from ..isa import encode

    return encode(instr)


def _layout_json(compiled: Compiled, model: str) -> dict:
    def loc(l):
        return {"addr": l.addr, "rows": l.rows, "words": l.words, "shape": list(l.shape)}

    out = {"hwgen": __version__, "model": model, "word_bytes": compiled.word_bytes, "image_bytes": len(compiled.image),
           "regions": compiled.image_regions, "programs": []}
    for b in compiled.bindings:
        segs = []
        for si, s in enumerate(b.segments):
            if s.kind == "program":
                segs.append({"kind": "program", "addr": s.addr, "instructions": len(s.instrs), "checks": len(s.checks)})
            else:
                segs.append({"kind": "host", "node": s.node, "reason": b.host_reasons.get(s.node, ""),
                             "reads": {k: loc(v) for k, v in s.host_reads.items()},
                             "writes": {k: loc(v) for k, v in s.host_writes.items()}})
        out["programs"].append({
            "name": b.name, "bind": b.bind, "segments": segs,
            "inputs": {k: {**loc(v), "format": str(b.graph.tensors[k].fmt),
                           "note": "element e of the input (row-major) is code phys[e] of the matrix; phys in compiled.pkl"}
                       for k, v in b.inputs.items()},
            "outputs": {k: {**loc(v), "format": str(b.graph.tensors[k].fmt)} for k, v in b.outputs.items()},
            "stats": b.stats,
        })
    return out


def load_compiled(out_dir) -> tuple[Compiled, dict]:
    """``(compiled, layout)`` from a folder written by this target."""
    out_dir = Path(out_dir)
    p = out_dir / "compiled.pkl"
    if not p.exists():
        raise TargetError(f"{out_dir}: not a compiled FPGA folder (no compiled.pkl); run hwgen compile MODEL --target fpga -o {out_dir}")
    layout = json.loads((out_dir / "layout.json").read_text())
    if layout.get("hwgen") != __version__:
        raise TargetError(f"{out_dir} was compiled by hwgen {layout.get('hwgen')}, this is {__version__}: compile again")
    with open(p, "rb") as f:
        return pickle.load(f), layout


def rerender_report(out_dir, compiled: Compiled, layout: dict, sim: dict | None = None,
                    synth: dict | None = None) -> dict:
    """Build the report of a compiled folder again and write ``report.json``/``report.md``.

    ``sim`` (``hwgen simulate``'s record) and ``synth`` (``hwgen fpga synth --report``'s),
    when not given, come from the folder's ``sim.json`` and ``synth.json`` if there.
    Returns the report."""
    out_dir = Path(out_dir)

    def saved(record, name):
        path = out_dir / name
        return record if record is not None or not path.exists() else json.loads(path.read_text())

    report = build_report(compiled, layout.get("model", str(out_dir)), sim=saved(sim, "sim.json"),
                          synth=saved(synth, "synth.json"))
    write_report(report, out_dir)
    return report


class FpgaTarget:
    name = "fpga"
    help = "Edge-MoE-style accelerator (Amaranth -> Verilog), its programs and memory image; cycle/energy estimates"

    def __init__(self):
        self._pool = self._future = self._cfg = None

    def prepare(self, out_dir: Path, options: dict) -> None:
        """Check the configuration and start generating the Verilog (a second process) while
        the model loads."""
        self._cfg = load_config(options.get("config"), options.get("overrides", {}))
        verilog = str(options.get("overrides", {}).get("verilog", "true")).lower() not in ("0", "false", "no", "off")
        if verilog:
            self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=1)
            self._future = self._pool.submit(_verilog_job, self._cfg.to_dict(), str(out_dir))

    def abort(self) -> None:
        """Stop the Verilog generation at once (its worker is killed)."""
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.kill()
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._future = self._cfg = None

    #: where "not host" is, for ``hwgen inspect``
    placement_device = "accelerator's engines"

    def placement(self, graph) -> dict[str, dict]:
        """Where each node of the hardware graph of the canonical ``graph`` runs on the
        default configuration (a cost-only compile of the first task's program set, ~0.2 s):
        node name -> ``{"op": op type, "where": "engine" or "host: reason"}``. The hardware
        graph names a fused Linear ``<node>_linear__<i>``."""
        from .graph import task_inputs

        b = compile_graph(graph, AcceleratorConfig(), task=0 if task_inputs(graph) else None,
                          cost_only=True).bindings[0]
        return {n.name: {"op": f"{n.domain}.{n.op}" if n.domain else n.op,
                         "where": f"host: {b.host_reasons[n.name]}" if n.name in b.host_reasons else "engine"}
                for n in b.graph.nodes}

    def compile(self, graph, out_dir: Path, options: dict) -> dict:
        from rich.console import Console

        out_dir = Path(out_dir)
        if self._cfg is None:
            self.prepare(out_dir, options)
        cfg, pool, future = self._cfg, self._pool, self._future
        model = str(options.get("model_name") or graph.source or graph.name)
        con = Console(stderr=True)
        try:
            with con.status("compiling") as st:
                compiled = compile_graph(graph, cfg, task=options.get("task"), progress=lambda s: st.update(s))
                st.update("writing program, image and layout")
                write_program(compiled, out_dir)
                (out_dir / "image.bin").write_bytes(compiled.image)
                (out_dir / "layout.json").write_text(json.dumps(_layout_json(compiled, model), indent=1) + "\n")
                cfg.to_toml(out_dir / "config.toml")
                with open(out_dir / "compiled.pkl", "wb") as f:
                    pickle.dump(compiled, f, protocol=pickle.HIGHEST_PROTOCOL)
                report = build_report(compiled, model)
                if future is not None:
                    st.update("generating Verilog (Amaranth)")
                    report["verilog_s"] = future.result()
                write_report(report, out_dir)
                plot_latency(report, out_dir / "layers.png")
                plot_roofline(report, out_dir / "roofline.png")
        except BrokenProcessPool as e:
            raise TargetError(f"Verilog generation failed: {e}") from e
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            self._pool = self._future = self._cfg = None
        return report


def estimated_cycles(compiled: Compiled, binding=None) -> float:
    return binding_costs(compiled, compiled.binding(binding))["total"]["cycles"]
