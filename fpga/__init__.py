"""The Edge-MoE-style FPGA accelerator: configuration, Amaranth units, synthesis.

``fpga.AcceleratorConfig`` holds every architectural parameter (Edge-MoE's defaults);
the units live in :mod:`fpga.hdl`; :mod:`fpga.synth` gives Yosys resource counts.
"""

from .config import AcceleratorConfig

__all__ = ["AcceleratorConfig"]
