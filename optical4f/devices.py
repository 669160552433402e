"""Device models of the 4f correlator, loadable from TOML, and the bundled presets.

Each device is a dataclass whose numeric fields carry a unit (field metadata) and a
source (``sources`` dict, field -> citation; ``source`` is the device's default
citation). :class:`OpticalConfig` groups the devices with the simulation settings.

Presets live in ``optical4f/presets/*.toml``: ``ideal`` (the ConvShareViT authors'
simulator: λ = 532 nm, f = 10 mm, pitch √(λf/N), no quantisation, no noise, complex
Fourier filter, double precision), ``realistic`` (the default: amplitude LCoS input,
phase-only LCoS Fourier filter with double-phase encoding, a Sony IMX250 machine-vision
camera) and ``dmd-highspeed`` (DMD input driven by binary bit-planes, high-speed camera).

A user TOML names a ``preset`` to start from and overrides any field::

    preset = "realistic"
    [camera]
    bits = 10
    [sim]
    signed = "bias"
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hwgen.errors import TargetError

__all__ = [
    "Modulator", "Lens", "Laser", "Camera", "Converters", "Electronics", "SimSettings", "OpticalConfig",
    "load_config", "preset_names", "DEFAULT_PRESET", "source_kind", "SOURCE_KINDS",
]

DEFAULT_PRESET = "realistic"
_PRESET_DIR = Path(__file__).with_name("presets")


def _f(unit: str, default: Any = dataclasses.MISSING):
    kw = {"metadata": {"unit": unit}}
    if default is not dataclasses.MISSING:
        kw["default"] = default
    return field(**kw)


SOURCE_KINDS = ("source", "assumption", "derived", "design choice", "idealised", "user setting", "unverified")


def source_kind(text: str) -> str:
    """How a figure is backed: ``assumption`` (the text says so), ``source`` (it cites a
    stored page: a URL), ``derived`` / ``design choice`` / ``idealised`` / ``user setting``
    (by their prefix), else ``unverified`` (a citation without a checked source)."""
    t = text.strip().lower()
    for kind in ("assumption", "derived", "design choice", "idealised", "user setting"):
        if t.startswith(kind):
            return kind
    return "source" if "http" in t else "unverified"


@dataclass
class _Device:
    name: str = ""
    source: str = ""
    sources: dict = field(default_factory=dict)

    def source_of(self, attr: str) -> str:
        return self.sources.get(attr, self.source) or "unsourced"

    def assumptions(self, prefix: str) -> list[dict]:
        out = []
        for f_ in fields(self):
            if "unit" not in f_.metadata:
                continue
            v = getattr(self, f_.name)
            src = self.source_of(f_.name)
            out.append({"name": f"{prefix}.{f_.name}", "value": list(v) if isinstance(v, tuple) else v,
                        "unit": f_.metadata["unit"], "source": f"{self.name}: {src}", "kind": source_kind(src)})
        return out


@dataclass
class Modulator(_Device):
    """A spatial light modulator (LCoS SLM or DMD).

    ``modulation``: ``"amplitude"`` (real transmission in [0, 1]), ``"binary"`` (DMD:
    0/1; more bits are shown as binary bit-planes, one optical pass each), ``"phase"``
    (phase-only; as a Fourier filter a complex value is written by double-phase
    encoding, two pixels per sample), ``"complex"`` (ideal: any complex value).
    ``bits = 0`` means unquantised.
    """

    resolution: tuple = _f("px (rows, cols)", (1024, 1024))
    pixel_pitch_m: float = _f("m", 8e-6)
    bits: int = _f("bit", 8)
    modulation: str = _f("-", "amplitude")
    frame_rate_hz: float = _f("Hz", 60.0)
    power_w: float = _f("W", 1.0)
    efficiency: float = _f("-", 1.0)  # optical throughput (fill factor x reflectance x diffraction efficiency)
    fill_factor: float = _f("-", 1.0)  # linear fraction of a pixel's pitch that modulates (per axis; 1: no dead space)


@dataclass
class Lens(_Device):
    focal_length_m: float = _f("m", 0.01)


@dataclass
class Laser(_Device):
    wavelength_m: float = _f("m", 532e-9)
    power_w: float = _f("W (optical)", 0.1)
    wall_plug_efficiency: float = _f("-", 0.1)


@dataclass
class Camera(_Device):
    resolution: tuple = _f("px (rows, cols)", (2048, 2048))
    pixel_pitch_m: float = _f("m", 3.45e-6)
    bits: int = _f("bit", 12)
    frame_rate_hz: float = _f("Hz", 60.0)
    read_noise_e: float = _f("e- rms", 2.0)
    full_well_e: float = _f("e-", 10000.0)
    quantum_efficiency: float = _f("-", 0.6)
    power_w: float = _f("W", 3.0)
    shot_noise: bool = _f("-", True)
    prnu: float = _f("- (rms, relative)", 0.0)  # photo-response non-uniformity: per-pixel gain spread (fixed pattern)
    dsnu_e: float = _f("e- rms", 0.0)  # dark-signal non-uniformity: per-pixel offset spread (fixed pattern)
    dark_current_e_per_s: float = _f("e-/pixel/s", 0.0)
    gain_error: float = _f("-", 0.0)  # true conversion gain / nominal - 1 (the electronics use the nominal one)
    dark_frames: int = _f("frames", 16)  # dark frames averaged into the calibration's dark reference
    pattern_seed: int = _f("-", 1)  # this camera's fixed pattern (PRNU, DSNU) and dark-reference draw


@dataclass
class Converters(_Device):
    """DAC (modulator drive) and ADC (camera) energy: Walden figure of merit x 2^bits."""

    dac_fom_j_per_step: float = _f("J/conversion-step", 10e-15)
    adc_fom_j_per_step: float = _f("J/conversion-step", 10e-15)


@dataclass
class Electronics(_Device):
    """The host electronics that run everything but the optical correlations."""

    flops_per_s: float = _f("FLOP/s", 50e9)
    energy_per_flop_j: float = _f("J/FLOP", 2.3e-12)
    bytes_per_s: float = _f("B/s", 10e9)
    energy_per_byte_j: float = _f("J/B", 20e-12)


@dataclass
class SimSettings(_Device):
    """Simulation and mapping settings (not devices; sources say why)."""

    frame_px: int = _f("px", 0)  # 0: auto (smallest fast FFT size fitting one layer, capped by the devices)
    guard_px: int = _f("px", 0)
    max_kernels_per_frame: int = _f("-", 0)  # 0: no limit (kernels sharing a filter share its dynamic range)
    signed: str = _f("-", "two_pass")  # "two_pass" or "bias"
    precision: str = _f("-", "complex64")  # "complex64" or "complex128"
    noise: bool = _f("-", True)
    exposure_fill: float = _f("-", 0.9)  # calibration: brightest calibration pixel / full well
    input_headroom: float = _f("-", 1.0)  # calibration: DAC full scale / largest calibration input
    seed: int = _f("-", 0)
    slm_pixels: bool = _f("-", False)  # phase-only Fourier filter simulated pixel by pixel (optical4f.encoding)
    threads: int = _f("-", 1)  # threads for the passes of a batch of frames (0: one per core); no effect on results


_SECTIONS = {
    "input_modulator": Modulator, "fourier_modulator": Modulator, "lens": Lens, "laser": Laser,
    "camera": Camera, "converters": Converters, "electronics": Electronics, "sim": SimSettings,
}


@dataclass
class OpticalConfig:
    preset: str
    input_modulator: Modulator
    fourier_modulator: Modulator
    lens: Lens
    laser: Laser
    camera: Camera
    converters: Converters
    electronics: Electronics
    sim: SimSettings

    def to_dict(self) -> dict:
        d = {"preset": self.preset}
        for sec in _SECTIONS:
            dev = getattr(self, sec)
            d[sec] = {f_.name: (list(v) if isinstance(v := getattr(dev, f_.name), tuple) else v)
                      for f_ in fields(dev) if f_.name not in ("sources",)}
        return d

    def flat(self) -> dict:
        """section.field -> value (for the report's config)."""
        out = {"preset": self.preset}
        for sec in _SECTIONS:
            dev = getattr(self, sec)
            out[f"{sec}.name"] = dev.name
            for f_ in fields(dev):
                if "unit" in f_.metadata:
                    v = getattr(dev, f_.name)
                    out[f"{sec}.{f_.name}"] = list(v) if isinstance(v, tuple) else v
        return out

    def assumptions(self) -> list[dict]:
        return [a for sec in _SECTIONS for a in getattr(self, sec).assumptions(sec)]

    def replace(self, **section_fields: dict) -> "OpticalConfig":
        """A copy with fields replaced: ``cfg.replace(camera={"bits": 8})``."""
        new = {sec: getattr(self, sec) for sec in _SECTIONS}
        for sec, kv in section_fields.items():
            if sec not in _SECTIONS:
                raise TargetError(f"unknown config section {sec!r}; sections: {', '.join(_SECTIONS)}")
            new[sec] = _apply(new[sec], kv, sec)
        return OpticalConfig(self.preset, **new)


def _coerce(value: Any, current: Any, where: str) -> Any:
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                return value.lower() in ("true", "1")
            return bool(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, tuple):
            if isinstance(value, str):
                value = [int(v) for v in value.replace("x", ",").split(",")]
            return tuple(int(v) for v in value)
        return str(value)
    except (TypeError, ValueError) as e:
        raise TargetError(f"{where}: cannot use {value!r} (expected {type(current).__name__})") from e


def _apply(dev, kv: dict, sec: str):
    names = {f_.name for f_ in fields(dev)}
    # a new device (new source) drops the per-field citations of the old one
    changes, sources = {}, ({} if "source" in kv else dict(dev.sources))
    for k, v in kv.items():
        if k not in names:
            raise TargetError(f"unknown field {sec}.{k}; fields: {', '.join(sorted(names - {'sources'}))}")
        if k == "sources":
            sources.update(v)
        elif k in ("name", "source"):
            changes[k] = str(v)
        else:
            changes[k] = _coerce(v, getattr(dev, k), f"{sec}.{k}")
            if k not in kv.get("sources", {}) and "source" not in kv:
                sources[k] = "user setting"
    changes["sources"] = sources
    out = dataclasses.replace(dev, **changes)
    _check(out, sec)
    return out


def _check(dev, sec: str) -> None:
    if isinstance(dev, Modulator) and dev.modulation not in ("amplitude", "binary", "phase", "complex"):
        raise TargetError(f"{sec}.modulation must be amplitude, binary, phase or complex, not {dev.modulation!r}")
    if isinstance(dev, SimSettings):
        if dev.signed not in ("two_pass", "bias"):
            raise TargetError(f"sim.signed must be 'two_pass' or 'bias', not {dev.signed!r}")
        if dev.precision not in ("complex64", "complex128"):
            raise TargetError(f"sim.precision must be 'complex64' or 'complex128', not {dev.precision!r}")
        if not 0 < dev.exposure_fill <= 1:
            raise TargetError("sim.exposure_fill must be in (0, 1]")
    for f_ in fields(dev):
        v = getattr(dev, f_.name)
        if "unit" in f_.metadata and isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            raise TargetError(f"{sec}.{f_.name} must not be negative ({v})")


def preset_names() -> list[str]:
    return sorted(p.stem for p in _PRESET_DIR.glob("*.toml"))


def _from_dict(data: dict, origin: str) -> OpticalConfig:
    data = dict(data)
    base_name = data.pop("preset", None)
    if base_name is not None:
        cfg = _load_preset(str(base_name))
    else:
        cfg = OpticalConfig("custom", *(cls() for cls in _SECTIONS.values()))
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise TargetError(f"{origin}: unknown section(s) {', '.join(sorted(unknown))}; sections: preset, {', '.join(_SECTIONS)}")
    cfg = cfg.replace(**data)
    if base_name is None or origin.endswith(f"{base_name}.toml"):
        cfg.preset = str(base_name) if base_name else Path(origin).stem
    else:
        cfg.preset = f"{base_name}+{Path(origin).name}"
    return cfg


def _load_preset(name: str) -> OpticalConfig:
    path = _PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise TargetError(f"unknown optical4f preset {name!r}; presets: {', '.join(preset_names())}")
    data = tomllib.loads(path.read_text())
    if "preset" in data:  # a preset built on another one
        cfg = _load_preset(str(data["preset"]))
    else:
        cfg = OpticalConfig(name, *(cls() for cls in _SECTIONS.values()))
    cfg = cfg.replace(**{k: v for k, v in data.items() if k in _SECTIONS})
    # preset fields are sourced by the preset, not "user setting"
    for sec in _SECTIONS:
        dev = getattr(cfg, sec)
        given = data.get(sec, {})
        dev.sources = {k: v for k, v in dev.sources.items() if v != "user setting" or k not in given}
        dev.sources.update(given.get("sources", {}))
    cfg.preset = name
    return cfg


def load_config(spec: "str | Path | dict | OpticalConfig | None" = None, overrides: dict | None = None) -> OpticalConfig:
    """A config from a preset name, a TOML path, a dict (TOML structure) or a config.

    ``overrides``: ``{"camera.bits": "10", ...}`` applied last (values may be strings).
    """
    if spec is None:
        cfg = _load_preset(DEFAULT_PRESET)
    elif isinstance(spec, OpticalConfig):
        cfg = spec
    elif isinstance(spec, dict):
        cfg = _from_dict(spec, "<dict>")
    elif isinstance(spec, Path) or (isinstance(spec, str) and spec.endswith(".toml")):
        p = Path(spec)
        try:
            data = tomllib.loads(p.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise TargetError(f"{p}: cannot read optical4f config: {e}") from e
        cfg = _from_dict(data, str(p))
    else:
        cfg = _load_preset(str(spec))
    if overrides:
        per: dict[str, dict] = {}
        for key, v in overrides.items():
            sec, dot, fld = key.partition(".")
            if key == "preset":
                continue
            if not dot:
                raise TargetError(f"override {key!r}: use SECTION.FIELD, sections: {', '.join(_SECTIONS)}")
            per.setdefault(sec, {})[fld] = v
        preset = cfg.preset
        cfg = cfg.replace(**per)
        cfg.preset = preset
    return cfg
