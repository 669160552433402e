"""ZigZag beside hwgen: latency and energy of every GEMM layer on the default configuration.

Run (from the project's environment)::

    python benchmarks/peers_zigzag.py OUT_OR_MODEL [--sim OUT/sim.json] [--uniform] [--json FILE]

The GEMMs are those of ``benchmarks/peers_scalesim.py`` (:mod:`peer_layers`: LINEAR
instructions per weight matrix, experts with their routed token counts). They are written as
one ONNX MatMul per distinct (M, K, N) with ZigZag's precision attributes (activations and
outputs ``act_fmt`` bits, weights ``weight_fmt`` bits, partial sums 48) and evaluated by
ZigZag's ``get_hardware_performance_zigzag`` (LOMA temporal-mapping search, minimal
latency) on an architecture equivalent to the configuration:

* operational array ``mac_rows x mac_cols`` (D1 = tokens, D2 = output features: the linear
  unit's output-stationary tile), ``unit_energy`` = hwgen's energy per MAC;
* a 48-bit accumulator per MAC (output registers, free: in the MAC energy);
* the weight banks (``weight_buffer_bytes``, one ``mac_cols``-weight row a cycle) for W,
  shared along D1, filled from DRAM only (weights never pass the activation buffer);
* the activation buffer (``act_buffer_bytes``, one ``mem_port_bits`` read and one write
  port) for I and O;
* DRAM behind one ``mem_port_bits`` port;
* every access energy from ``fpga/cost/energy.py`` (``action_energies``).

ZigZag is a benchmark peer, not a dependency: it runs in its own environment,
``$ZIGZAG_VENV`` (default ``/work/venvs/zigzag``)::

    python -m venv /work/venvs/zigzag && /work/venvs/zigzag/bin/pip install zigzag-dse==3.9.1 six

Printed per IR node: ZigZag's latency (cycles) and energy beside hwgen's model of the same
LINEAR instructions (cycles; dynamic energy: MAC, buffer, weight banks, DRAM; no static)
and, with ``--sim``, the RTL's measured cycles of the node.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_layers import add_source_args, load_gemms, sim_layer_cycles  # noqa: E402

DEFAULT_VENV = "/work/venvs/zigzag"
HOWTO = "python -m venv {v} && {v}/bin/pip install zigzag-dse==3.9.1 six"

# Runs inside ZigZag's environment: argv = accelerator.yaml mapping.yaml work_dir shapes.json
_RUNNER = r'''
import json, logging, sys
logging.disable(logging.CRITICAL)
import onnx
from onnx import TensorProto, helper, numpy_helper
import numpy as np
from zigzag.api import get_hardware_performance_zigzag
acc, mapping, work, shapes_file, act, wgt = sys.argv[1:7]
out = {}
for i, (m, k, n) in enumerate(json.load(open(shapes_file))):
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name=f"g{i}", act_size=int(act), weight_size=int(wgt),
                            output_size=48)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                          [numpy_helper.from_array(np.zeros((k, n), np.float32), "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = f"{work}/g{i}.onnx"
    onnx.save(model, path)
    energy, latency, cmes = get_hardware_performance_zigzag(path, acc, mapping, opt="latency",
                                                            dump_folder=f"{work}/out{i}", loma_show_progress_bar=False)
    cme = cmes[0][1][0][0]
    out[f"{m},{k},{n}"] = {"latency_cycles": float(latency), "energy_pj": float(energy),
                           "mac_energy_pj": float(cme.mac_energy), "mem_energy_pj": float(cme.mem_energy),
                           "ideal_cycles": float(cme.ideal_cycle), "utilization": float(cme.mac_utilization2)}
    print(i, m, k, n, latency, energy, flush=True)
json.dump(out, open(f"{work}/zigzag_results.json", "w"))
'''


def zigzag_python() -> Path:
    venv = Path(os.environ.get("ZIGZAG_VENV", DEFAULT_VENV))
    py = venv / "bin" / "python"
    if not py.exists():
        sys.exit(f"ZigZag's environment {venv} does not exist (set ZIGZAG_VENV to another one). Make it with:\n"
                 f"  {HOWTO.format(v=venv)}")
    return py


def _port(name, kind, bits, alloc):
    lines = [f"      - name: {name}", f"        type: {kind}", f"        bandwidth_min: {bits}",
             f"        bandwidth_max: {bits}", "        allocation:"]
    return "\n".join(lines + [f"          - {a}" for a in alloc])


def _memory(name, size_bits, r_pj, w_pj, operands, ports, served):
    return "\n".join([f"  {name}:", f"    size: {size_bits}", f"    r_cost: {r_pj}", f"    w_cost: {w_pj}", "    area: 0",
                      "    latency: 1", f"    operands: [{', '.join(operands)}]", "    ports:", *ports,
                      f"    served_dimensions: [{', '.join(served)}]"])


def accelerator_yaml(cfg) -> str:
    """ZigZag's description of the default configuration's linear unit and memories."""
    from fpga.cost.energy import action_energies

    e = action_energies(cfg)
    port = cfg.mem_port_bits
    w_row = cfg.mac_cols * cfg.weight_fmt.width
    mems = [
        _memory("acc_reg", 48, 0, 0, ["O"], [_port("r_port_1", "read", 48, ["O, tl"]), _port("r_port_2", "read", 48, ["O, th"]),
                                                _port("w_port_1", "write", 48, ["O, fh"]),
                                                _port("w_port_2", "write", 48, ["O, fl"])], []),
        _memory("weight_banks", cfg.weight_buffer_bytes * 8, w_row * e["weight_bank_bits"] * 1e12,
                w_row * e["weight_bank_bits"] * 1e12, ["I2"],
                [_port("r_port_1", "read", w_row, ["I2, tl"]), _port("w_port_1", "write", w_row, ["I2, fh"])], ["D1"]),
        _memory("act_buffer", cfg.act_buffer_bytes * 8, port * e["buffer_read_bits"] * 1e12,
                port * e["buffer_write_bits"] * 1e12, ["I1", "O"],
                [_port("r_port_1", "read", port, ["I1, tl", "O, tl", "O, th"]),
                 _port("w_port_1", "write", port, ["I1, fh", "O, fh", "O, fl"])], ["D1", "D2"]),
        _memory("dram", 10_000_000_000, port // 8 * e["dram_read_bytes"] * 1e12, port // 8 * e["dram_write_bytes"] * 1e12,
                ["I1", "I2", "O"], [_port("rw_port_1", "read_write", port,
                                          ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"])],
                ["D1", "D2"]),
    ]
    return ("name: hwgen_default\n\nmemories:\n" + "\n\n".join(mems) + "\n\noperational_array:\n"
            f"  unit_energy: {e['macs'] * 1e12}\n  unit_area: 1\n  dimensions: [D1, D2]\n"
            f"  sizes: [{cfg.mac_rows}, {cfg.mac_cols}]\n")


def mapping_yaml(cfg) -> str:
    return (f"- name: default\n  spatial_mapping:\n    D1:\n      - D, {cfg.mac_rows}\n    D2:\n      - K, {cfg.mac_cols}\n"
            "  memory_operand_links:\n    O: O\n    W: I2\n    I: I1\n")


def run_zigzag(shapes, cfg, work: Path) -> dict:
    py = zigzag_python()
    (work / "accelerator.yaml").write_text(accelerator_yaml(cfg))
    (work / "mapping.yaml").write_text(mapping_yaml(cfg))
    (work / "shapes.json").write_text(json.dumps(shapes))
    (work / "runner.py").write_text(_RUNNER)
    cmd = [str(py), str(work / "runner.py"), str(work / "accelerator.yaml"), str(work / "mapping.yaml"), str(work),
           str(work / "shapes.json"), str(cfg.act_fmt.width), str(cfg.weight_fmt.width)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    res = work / "zigzag_results.json"
    if r.returncode != 0 or not res.exists():
        sys.exit(f"ZigZag failed ({' '.join(cmd)}), exit {r.returncode}:\n{r.stderr[-4000:] or r.stdout[-4000:]}")
    data = json.loads(res.read_text())
    return {tuple(int(x) for x in k.split(",")): v for k, v in data.items()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_args(ap)
    ap.add_argument("--keep", default=None, help="keep ZigZag's files in this directory")
    args = ap.parse_args(argv)

    from fpga.cost.energy import estimate_energy

    zigzag_python()
    t0 = time.time()
    c, b, rows, gs, shapes = load_gemms(args)
    print(f"{len(gs)} GEMMs ({len(shapes)} distinct shapes); routing: {'uniform' if rows is None else 'measured'}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t = time.time()
        zz = run_zigzag([list(s) for s in shapes], c.config, work)
        print(f"ZigZag: {time.time() - t:.0f} s for {len(shapes)} shapes")
    measured = sim_layer_cycles(args.sim, b.name)
    layers: dict = {}
    for g in gs:
        z = zz[(g.m, g.k, g.n)]
        parts = estimate_energy(g.actions, 0.0, c.config)  # dynamic only: no static
        row = layers.setdefault(g.layer, {"layer": g.layer, "gemms": 0, "macs": 0, "zigzag_cycles": 0.0,
                                          "hwgen_cycles": 0.0, "zigzag_uj": 0.0, "hwgen_uj": 0.0,
                                          "zigzag_mem_uj": 0.0, "hwgen_mem_uj": 0.0})
        row["gemms"] += 1
        row["macs"] += g.m * g.k * g.n
        row["zigzag_cycles"] += z["latency_cycles"]
        row["hwgen_cycles"] += g.cycles
        row["zigzag_uj"] += z["energy_pj"] * 1e-6
        row["zigzag_mem_uj"] += z["mem_energy_pj"] * 1e-6
        row["hwgen_uj"] += sum(parts.values()) * 1e6
        row["hwgen_mem_uj"] += (parts["buffer"] + parts["dram"]) * 1e6
    for name, row in layers.items():
        if name in measured:
            row["rtl_node_cycles"] = measured[name]
    cols = ["zigzag_cycles", "hwgen_cycles", "zigzag_uj", "hwgen_uj", "zigzag_mem_uj", "hwgen_mem_uj"] + \
        (["rtl_node_cycles"] if measured else [])
    print("layer | gemms | macs | " + " | ".join(cols))
    tot = dict.fromkeys(["gemms", "macs"] + cols, 0.0)
    for row in layers.values():
        print(f"{row['layer']} | {row['gemms']} | {row['macs']} | "
              + " | ".join(f"{row.get(k, 0):,.1f}" if k.endswith("uj") else f"{row.get(k, 0):,.0f}" for k in cols))
        for k in tot:
            tot[k] += row.get(k, 0)
    print("TOTAL | " + " | ".join(f"{tot[k]:,.1f}" if k.endswith("uj") else f"{tot[k]:,.0f}" for k in tot)
          + f"; wall {time.time() - t0:.0f} s")
    result = {"source": args.source, "binding": b.name, "routing": "uniform" if rows is None else "measured",
              "layers": list(layers.values()), "total": tot,
              "gemms": [{"name": g.name, "m": g.m, "k": g.k, "n": g.n, "hwgen_cycles": g.cycles,
                         "zigzag": zz[(g.m, g.k, g.n)]} for g in gs]}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
