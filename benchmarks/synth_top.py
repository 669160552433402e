"""Resources of the accelerator top from Yosys (synth_xilinx -family xcup, flattened), against its part.

Run: ``python benchmarks/synth_top.py [config.toml] [--buffer-words N] [--ops GELU,...]
[--abc abc|abc9] [--no-map-luts] [--work-dir DIR] [--json FILE]`` — the same as
``hwgen fpga synth`` (default: Edge-MoE's configuration, the ZCU102). Prints LUT/FF/BRAM36/DSP
used, available and the fraction, the wall time of elaboration and synthesis, and whether
it fits. Slow: about 18 minutes for the default top in the WebAssembly Yosys on this machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwgen.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["fpga", "synth", *sys.argv[1:]]))
