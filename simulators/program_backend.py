"""The RTL as a backend of :func:`simulators.compiled_run.simulate_binding`.

Builds (cached) the compiled configuration's accelerator under the simulation wrapper
(:mod:`simulators.program_run`), loads the image with the inputs, runs the program set's
programs in one simulation with a :class:`~simulators.compiled_run.CompiledHook` (layer
checkpoints, host steps between programs).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["rtl_backend"]


def rtl_backend(simulator: str = "verilator", waves: Path | None = None, max_cycles: int = 200_000_000,
                latency: int = 4, beat_interval: int = 1, progress=None):
    """A backend function for ``simulate_binding`` running on ``simulator``."""
    from .program_run import build

    def run(compiled, rt, mem, hook) -> dict:
        say = progress or (lambda s: None)
        say(f"building the accelerator for {simulator} (cached after the first time)")
        ext_words = max(1 << 16, -(-len(mem) // compiled.word_bytes) + 1024)
        sim = build(compiled.config, simulator=simulator, waves=waves is not None,
                    ext_words=1 << max(16, (ext_words - 1).bit_length()))
        waves_file = waves
        if waves is not None and sim.waves_format and Path(waves).suffix.lower() != f".{sim.waves_format}":
            waves_file = Path(waves).with_suffix(f".{sim.waves_format}")
            say(f"this build writes {sim.waves_format.upper()} waves: {waves_file}")
        run.waves_file = waves_file
        programs = [(seg.addr, hook.checkpoints(p))
                    for p, seg in enumerate(s for s in rt.b.segments if s.kind == "program")]
        say(f"running {len(programs)} program(s) on {simulator}")
        res = sim.run(bytes(mem), programs, hook=hook, max_cycles=max_cycles, waves_file=waves_file,
                      latency=latency, beat_interval=beat_interval)
        if res.mem_error:
            raise RuntimeError(f"the memory model flagged an error: {res.mem_error_info}")
        progs = [{"cycles": p.cycles, "trace": [(i, c) for i, c in p.trace], "error": p.error} for p in res.programs]
        for p, pr in enumerate(progs):
            if pr["error"]:
                raise RuntimeError(f"program {p}: the accelerator raised its error output (an opcode without an engine?)")
        return {"programs": progs, "hook": res.hook_result, "sim_wall_s": res.wall_s,
                "extra": {"cycles_per_s": res.cycles_per_s, "process_s": res.process_s,
                          **({"waves": str(waves_file)} if waves_file is not None else {})}}

    return run
