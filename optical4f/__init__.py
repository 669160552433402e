"""optical4f: convolutions of a ConvShareViT-style model on a simulated 4f free-space
optical correlator (input modulator, lens, Fourier-plane filter, lens, camera), with
device presets, a frame mapping of the IR graph and a sourced cost model.

    y = optical4f.conv2d(x, w, padding="same", groups=1, preset="realistic")
"""

from .conv import conv2d
from .devices import DEFAULT_PRESET, OpticalConfig, load_config, preset_names
from .physics import OpticalAliasingWarning

__all__ = ["conv2d", "load_config", "preset_names", "OpticalConfig", "DEFAULT_PRESET", "OpticalAliasingWarning"]
