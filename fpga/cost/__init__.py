"""Cost models of the accelerator: cycles per instruction, energy per inference.

``cycles.py``: each engine's documented per-instruction behaviour; ``energy.py``: actions x
energy per action + static power x time, every constant in one table with its source
(``docs/fpga-energy-and-peers.md``). The RTL simulation (``hwgen simulate``) measures
cycles; the report shows both.
"""

from .cycles import estimate_cycles
from .energy import ENERGY_TABLE, action_energies, energy_figures, estimate_energy, layer_energy, node_actions

__all__ = ["estimate_cycles", "estimate_energy", "ENERGY_TABLE", "action_energies", "energy_figures", "layer_energy",
           "node_actions"]
