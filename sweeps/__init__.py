"""Design-space sweeps over hwgen's targets: ``hwgen sweep SPEC.toml -o RESULTS/``.

Python::

    from sweeps import load_spec, run_sweep
    result = run_sweep(load_spec("spec.toml"), "results/", workers=2)   # or scheduler="tcp://host:8786"
    result.rows                                  # one dict a point (also results.csv / .parquet)

See ``docs/sweeps.md``.
"""

from .results import pareto_mask, plot_pareto, read_table
from .runner import SweepResult, run_sweep
from .spec import SpecError, SweepSpec, load_spec, parse_spec

__all__ = ["run_sweep", "SweepResult", "load_spec", "parse_spec", "SweepSpec", "SpecError", "read_table",
           "pareto_mask", "plot_pareto"]
