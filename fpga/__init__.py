"""fpga package of hwgen: the Edge-MoE-style accelerator."""

from __future__ import annotations

from pathlib import Path

__all__ = ["generate_verilog"]


def generate_verilog(config=None, out_dir=".", *, name: str = "accelerator", buffer_words: int | None = None) -> Path:
    """Write the accelerator for ``config`` as one Verilog file ``out_dir/<name>.v``."""
    from amaranth.back import verilog

    from .hdl.top import Accelerator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    path.write_text(verilog.convert(Accelerator(config, buffer_words=buffer_words), name=name))
    return path
