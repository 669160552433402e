"""Cost models of the accelerator: cycles per instruction, energy per inference.

First-order today (``cycles.py``: each engine's documented per-instruction behaviour;
``energy.py``: actions x energy per action + static power x time, every constant with its
source). The RTL simulation (``hwgen simulate``) measures cycles; the report shows both.
"""

from .cycles import estimate_cycles
from .energy import ENERGY_TABLE, estimate_energy

__all__ = ["estimate_cycles", "estimate_energy", "ENERGY_TABLE"]
