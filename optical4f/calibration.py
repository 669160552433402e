"""Calibration of the 4f system at compile time: what a lab fixes before it runs a model.

For every Conv layer, from a calibration set (the digits TRAINING images, never the test
split):

* ``input_full_scale`` -- the input modulator's DAC full scale: the largest input
  magnitude the layer saw on the calibration set (shown at amplitude 1). At evaluation a
  larger input saturates at full amplitude.
* ``input_offset`` -- the bias scheme's offset (``sim.signed = "bias"``): the most
  negative calibration input; a more negative one clips at 0.
* ``exposure_e`` -- per Fourier filter of the layer (``"set/chunk"``), electrons per unit
  simulated intensity: the brightest read pixel of the calibration frames (noiseless
  optics, as a lab would set the exposure on averaged frames) is put at
  ``sim.exposure_fill`` x full well. Brighter pixels at evaluation saturate.
* ``scale`` -- the end-to-end gain of the layer: the least-squares factor that maps the
  layer's optical output (noisy camera, fixed pattern, nominal conversion gain) to the
  digital output on the calibration set. It absorbs the camera's gain error and every
  global factor the electronics do not know exactly.

The values are stored in the compiled plan (:meth:`Calibration.to_dict`) and used unchanged
at evaluation (:func:`optical4f.evaluate.run_graph`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwgen.errors import TargetError

__all__ = ["LayerCalibration", "Calibration", "calibrate", "calibration_images", "CALIBRATION_SOURCE"]

CALIBRATION_SOURCE = "digits training split (models.data.load_split), first images; never the test split"


@dataclass
class LayerCalibration:
    """Calibrated settings of one Conv layer (see the module docstring)."""

    input_full_scale: float | None = None
    input_offset: float | None = None
    exposure_e: dict = field(default_factory=dict)  # "set/chunk" -> e- per unit intensity
    scale: float = 1.0
    frozen: bool = False  # True: use as is; a missing value is an error (not measured on the fly)

    def to_dict(self) -> dict:
        return {"input_full_scale": self.input_full_scale, "input_offset": self.input_offset,
                "exposure_e": dict(self.exposure_e), "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerCalibration":
        return cls(d["input_full_scale"], d.get("input_offset"), dict(d["exposure_e"]), float(d["scale"]), frozen=True)

    def exposure(self, key: str, peak: float, fill: float, full_well: float, where: str) -> float:
        """The exposure of filter ``key``; measured from ``peak`` unless frozen."""
        if key not in self.exposure_e:
            if self.frozen:
                raise TargetError(f"{where}: the calibration has no exposure for filter {key} "
                                  "(calibrated with another configuration?)")
            self.exposure_e[key] = fill * full_well / peak if peak > 0 else 1.0
        return self.exposure_e[key]


@dataclass
class Calibration:
    """Per-layer calibration of a graph, and where it came from."""

    layers: dict = field(default_factory=dict)  # Conv node name -> LayerCalibration
    images: int = 0
    source: str = CALIBRATION_SOURCE
    preset: str = ""

    def to_dict(self) -> dict:
        return {"source": self.source, "images": self.images, "preset": self.preset,
                "layers": {k: v.to_dict() for k, v in self.layers.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls({k: LayerCalibration.from_dict(v) for k, v in d["layers"].items()}, int(d["images"]), d["source"],
                   d.get("preset", ""))

    def layer(self, name: str) -> LayerCalibration:
        if name not in self.layers:
            raise TargetError(f"the calibration has no Conv layer {name!r}; it has {', '.join(self.layers) or 'none'}")
        return self.layers[name]


def calibration_images(count: int) -> np.ndarray:
    """The first ``count`` digits TRAINING images [count, 1, 8, 8] (needs scikit-learn)."""
    from models.data import load_split

    xtr, _, _, _ = load_split()
    if count > len(xtr):
        raise TargetError(f"the calibration set has {len(xtr)} training images, not {count}")
    return xtr[:count]


def calibrate(graph, x_cal: np.ndarray, config=None, seed: int = 12345) -> Calibration:
    """Calibrate every default-domain Conv of ``graph`` on the calibration images ``x_cal``.

    ``graph`` must take ``len(x_cal)`` images (load it with that batch). Each layer sees the
    digital model's activations of the calibration set (the host computes them at compile
    time); its optical output is simulated with noise (generator ``seed``, apart from any
    evaluation's), and ``scale`` fitted against the digital conv output."""
    from hwgen.interp import interpret

    from .conv import conv2d
    from .devices import OpticalConfig, load_config
    from .evaluate import conv_args

    cfg = config if isinstance(config, OpticalConfig) else load_config(config)
    name = graph.inputs[0]
    env = interpret(graph, {name: np.asarray(x_cal)}, keep_all=True)
    rng = np.random.default_rng(seed)
    cal = Calibration(images=int(len(x_cal)), preset=cfg.preset)
    for node in graph.nodes:
        if node.op != "Conv" or node.domain:
            continue
        x, w = env[node.inputs[0]], env[node.inputs[1]]
        b = env[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
        lc = LayerCalibration()
        y = conv2d(x, w, None, config=cfg, rng=rng, calibration=lc, name=node.name, **conv_args(node))
        ref = env[node.outputs[0]].astype(np.float64)
        if b is not None:
            ref = ref - np.asarray(b, np.float64).reshape(1, -1, 1, 1)
        yy = float(np.vdot(y, y))
        lc.scale = float(np.vdot(y.astype(np.float64), ref) / yy) if yy > 0 else 1.0
        lc.frozen = True
        cal.layers[node.name] = lc
    return cal
