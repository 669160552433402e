"""fpga package of hwgen: the Edge-MoE-style accelerator.

``fpga.AcceleratorConfig`` holds every architectural parameter (Edge-MoE's defaults);
the units live in :mod:`fpga.hdl`; :mod:`fpga.synth` gives Yosys resource counts;
:func:`generate_verilog` writes the whole accelerator as one Verilog file.
"""

from __future__ import annotations

from pathlib import Path

from .config import AcceleratorConfig

__all__ = ["AcceleratorConfig", "generate_verilog", "LINT_WAIVERS"]

#: Verilator lint rules waived for the generated file, each with its reason. All come
#: from the way Amaranth writes Verilog, not from the design; any other warning fails.
LINT_WAIVERS = {
    "UNUSEDSIGNAL": "Amaranth's intermediate `$n` wires keep bits a slice then drops "
                    "(e.g. the carry of an adder), and unused stream payload fields",
    "WIDTHEXPAND": "Amaranth emits operands at their own width and relies on Verilog's "
                   "context-determined extension (e.g. a 1-bit signed compare against 32 bits)",
    "WIDTHTRUNC": "Amaranth emits `!x` on multi-bit values for `x == 0`",
    "CASEINCOMPLETE": "Amaranth's FSM and ROM `casez` have no `default` (the assignment "
                      "before the case is the default)",
    "PROCASSINIT": "Amaranth gives each register its reset value with an initialiser",
    "DECLFILENAME": "one file holds every module (ONE Verilog file is the requirement)",
}


def generate_verilog(config=None, out_dir=".", *, name: str = "accelerator", buffer_words: int | None = None) -> Path:
    """Write the accelerator for ``config`` as one Verilog file ``out_dir/<name>.v``.

    Beside it, ``<name>.vlt`` holds the Verilator waivers of :data:`LINT_WAIVERS` for that
    file: ``verilator --lint-only -Wall <name>.vlt <name>.v`` passes.
    """
    from amaranth.back import verilog

    from .hdl.top import Accelerator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    path.write_text(verilog.convert(Accelerator(config, buffer_words=buffer_words), name=name))
    waivers = [f"// {rule}: {why}\nlint_off -rule {rule} -file \"*/{path.name}\"\n"
               for rule, why in LINT_WAIVERS.items()]
    (out_dir / f"{name}.vlt").write_text("`verilator_config\n" + "".join(waivers))
    return path
