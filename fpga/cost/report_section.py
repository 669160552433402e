"""The compile report's Resources and Clock figures (one call from ``fpga/compile/report.py``).

:func:`resources_and_clock` gives the report keys:

* ``resources`` (numbers only, the schema's shape): the estimate
  (:func:`fpga.cost.resources.estimate_resources`) as ``lut_estimated`` ..., the part's
  capacity as ``lut_available`` ..., and, when Yosys ran (``hwgen fpga synth --report OUT``
  wrote ``OUT/synth.json``), its counts as ``lut_yosys`` ...;
* ``resources_detail``: per-engine estimate, what overflows the part (from Yosys when it
  ran, else from the estimate), the method;
* ``clock``: the target clock, the estimated Fmax (from the synthesised netlist's longest
  path when Yosys ran, else from the recorded Yosys runs of the same engines:
  :func:`recorded_fmax`), the clock latency should use (the lower one) and a warning when
  the target is unlikely; ``latency_at_clock_used_s`` = cycles / that clock.

Warnings (does not fit, clock unlikely) are appended to the ``warnings`` list given.
"""

from __future__ import annotations

import math

from .clock import clock_check, estimate_fmax
from .resources import ENGINE_NAMES, estimate_resources, overflow

__all__ = ["resources_and_clock", "recorded_fmax"]

_KEYS = ("lut", "ff", "dsp", "bram36")


def _distance(a, b) -> float:
    keys = ("mac_rows", "mac_cols", "attention_head_dim", "attention_chunk", "attention_queries", "mem_port_bits")
    d = sum(abs(math.log2(getattr(a, k) / getattr(b, k))) for k in keys)
    return d + abs(math.log2(a.act_fmt.width / b.act_fmt.width)) + abs(math.log2(a.weight_fmt.width / b.weight_fmt.width))


def recorded_fmax(config, ops=None, runs: list[dict] | None = None) -> tuple[float | None, str]:
    """``(Fmax in Hz, source)`` for ``config`` without synthesis: per engine built, the
    longest register-to-register path recorded for it (``fpga/cost/yosys_runs.json``, the
    one-engine run of the nearest configuration, a ``"clock"`` run where the engine has one);
    the slowest engine sets the clock."""
    from .calibration import load_runs, run_config

    try:
        runs = runs if runs is not None else load_runs()
    except FileNotFoundError:
        return None, "no recorded Yosys runs"
    names = ENGINE_NAMES if ops is None or ops == "all" else [o if isinstance(o, str) else o.name for o in ops]
    timed = [r for r in runs if r.get("critical_path", {}).get("delay_ns") and not r.get("stale")]
    groups = []  # (runs to take the nearest of, how the source is named)
    for engine in names:
        cands = [r for r in timed if r.get("ops") == [engine]]
        # a "clock" run is of the engine's current RTL; older fit runs' paths are superseded
        groups.append(([r for r in cands if r.get("role") == "clock"] or cands, "recorded Yosys run"))
    if ops is None or ops == "all":
        # a whole top's path can be longer than any engine's alone: it ends at the buffer's
        # write port behind the multiplexer of every engine's result (36.2-36.9 ns against the
        # engines' 33-34 ns on the recorded checks), so the nearest whole top counts too
        groups.append(([r for r in timed if r.get("ops") == "all"], "recorded Yosys run of a whole top,"))
    worst, source = 0.0, ""
    for cands, what in groups:
        if not cands:
            continue
        best = min(cands, key=lambda r: _distance(config, run_config(r)))
        d = best["critical_path"]["delay_ns"]
        if d > worst:
            worst, source = d, f"{what} {best['name']} ({best['critical_path']['levels']} LUT levels)"
    if not worst:
        return None, "no recorded path for these engines"
    return 1e9 / worst, source


def resources_and_clock(config, cycles: float, synth: dict | None = None, warnings: list | None = None,
                        ops=None, buffer_words: int | None = None) -> dict:
    """Report keys ``resources``, ``resources_detail``, ``clock``, ``latency_at_clock_used_s``.

    ``synth`` is what ``hwgen fpga synth --json/--report`` writes (``resources``,
    ``critical_path``, ...), or None.
    """
    est = estimate_resources(config, ops=ops, buffer_words=buffer_words)
    part = config.part
    avail = part.capacity()
    flat = {f"{k}_estimated": est[k] for k in _KEYS}
    flat.update({f"{k}_available": avail[k] for k in _KEYS})
    detail = {"estimate": {k: est[k] for k in _KEYS}, "engines": est["engines"], "method": est["method"],
              "part": part.name}
    over = est["overflow"]
    if synth is not None:
        yos = synth.get("resources", synth)
        flat.update({f"{k}_yosys": yos[k] for k in _KEYS if yos.get(k) is not None})
        over = overflow(yos, part)
        detail["yosys"] = {k: yos.get(k) for k in _KEYS}
        detail["yosys_run"] = {k: synth[k] for k in ("yosys", "synth_s", "buffer_words", "ops") if k in synth}
    detail["overflow"] = {k: {"needed": n, "available": a} for k, (n, a) in over.items()}
    detail["fits"] = not over
    detail["figures_from"] = "yosys" if synth is not None else "estimate"
    if over and warnings is not None:
        what = ", ".join(f"{k} {n:,.0f} of {a:,}" for k, (n, a) in over.items())
        warnings.append(f"the design does not fit {part.name} ({detail['figures_from']}): {what}")
    path = (synth or {}).get("critical_path")
    if path and path.get("delay_ns"):
        fmax, source = estimate_fmax(path), (f"Yosys netlist of this configuration: {path['levels']} LUT levels, "
                                                f"{path['delay_ns']:.1f} ns (fpga/cost/clock.py)")
    else:
        fmax, source = recorded_fmax(config, ops)
    clock = clock_check(config.clock_hz, fmax, source)
    if path:
        clock["critical_path"] = path
    if "warning" in clock and warnings is not None:
        warnings.append(clock["warning"])
    return {"resources": flat, "resources_detail": detail, "clock": clock,
            "latency_at_clock_used_s": cycles / clock["clock_used_hz"]}
