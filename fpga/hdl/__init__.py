"""Amaranth units of the Edge-MoE-style accelerator (one module per unit)."""
