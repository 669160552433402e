"""The accelerator's configuration: one dataclass, loadable from and savable to TOML.

Defaults are Edge-MoE's (DESIGN.md): a 16x16 MAC array, activations fixed<32,10>,
linear weights fixed<16,2>, four queries at a time in attention, a 256-bit memory port,
300 MHz on a ZCU102 (xczu9eg).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hwgen.errors import TargetError
from hwgen.fixedpoint import FixedFormat
from hwgen.numerics.topk import NORMALIZATIONS
from .isa import index_lanes

__all__ = ["AcceleratorConfig", "Part", "PARTS", "PRESETS", "SMALL", "preset_port_bits", "preset_changes",
           "read_toml_table"]


@dataclass(frozen=True)
class Part:
    """An FPGA part and its resources."""

    name: str
    lut: int
    ff: int
    bram36: int
    dsp: int

    def capacity(self) -> dict[str, int]:
        """``{"lut", "ff", "dsp", "bram36"}``: what the part holds of each resource."""
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram36": self.bram36}


#: Known parts by board name.
PARTS = {"zcu102": Part("xczu9eg-ffvb1156-2-e", 274_080, 548_160, 912, 2_520)}

#: Format presets: (activation, weight).
PRESETS = {
    "edge-moe": (FixedFormat(32, 10), FixedFormat(16, 2)),
    "int16": (FixedFormat(16, 16), FixedFormat(16, 16)),
    "int8": (FixedFormat(8, 8), FixedFormat(8, 8)),
}


def preset_port_bits(act_fmt: FixedFormat, mac_cols: int) -> int:
    """The memory port (bits) a format preset takes when none is given: Edge-MoE's 256 bits,
    narrowed to ``mac_cols * act width`` when that is less (int8 on 16 columns: 128), so
    that a buffer word holds no more activations than LINEAR's ``mac_cols`` output columns
    (:meth:`AcceleratorConfig.validate`)."""
    return min(256, mac_cols * act_fmt.width)


def preset_changes(name: str, given: dict) -> dict:
    """The fields format preset ``name`` sets beside the fields ``given`` explicitly
    (:class:`AcceleratorConfig` keyword arguments): ``act_fmt`` and ``weight_fmt`` where
    ``given`` has none, and, where ``given`` has no ``mem_port_bits``, the port
    :func:`preset_port_bits` gives for that activation format on ``given``'s ``mac_cols``
    (the default without). TargetError for an unknown preset."""
    if name not in PRESETS:
        raise TargetError(f"unknown format preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    act, weight = PRESETS[name]
    changes = {"act_fmt": given.get("act_fmt", act), "weight_fmt": given.get("weight_fmt", weight)}
    mac_cols = given.get("mac_cols", AcceleratorConfig.mac_cols)
    if "mem_port_bits" not in given and isinstance(mac_cols, int):  # a bad mac_cols: validate() says so
        changes["mem_port_bits"] = preset_port_bits(changes["act_fmt"], mac_cols)
    return changes


def read_toml_table(path: str | Path) -> dict:
    """The ``[accelerator]`` table of a TOML file (the whole file without one), as written."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TargetError(f"{path}: cannot read accelerator config: {e}") from e
    return dict(data.get("accelerator", data))


#: A small accelerator with every engine, for fast RTL simulation and synthesis: 4 x 16
#: MACs, 16-row weight banks, 32-element attention heads in two chunks, 4 experts.
SMALL = dict(mac_rows=4, mac_cols=16, weight_buffer_bytes=2 * 16 * 16 * 2, attention_head_dim=32, attention_chunk=16,
             max_keys=32, max_row=64, linear_max_k=256, moe_experts=4, moe_k=2)


@dataclass
class AcceleratorConfig:
    """Parameters of the generated accelerator.

    Members
    -------
    mac_rows, mac_cols : int
        Linear-unit MAC array (rows x cols MACs per cycle).
    act_fmt, weight_fmt : FixedFormat
        Activation and linear-weight formats.
    attention_queries : int
        Queries processed at a time by the attention unit.
    weight_buffer_bytes, act_buffer_bytes : int
        On-chip buffer sizes (the weight buffer is double-buffered: two halves).
    mem_port_bits : int
        External memory port width.
    clock_hz : float
        Target clock.
    board : str
        Target board (key of :data:`PARTS`).
    attention_head_dim : int
        Largest head dimension of the attention unit (elements; shorter heads are
        zero-padded at run time).
    attention_chunk : int
        Elements of a query/key/value row the attention unit takes per cycle
        (``attention_head_dim // attention_chunk`` cycles per key per query group).
    max_keys : int
        Most keys of one attention call and most tokens of one MoE routing call.
    max_row : int
        Longest LayerNorm row (elements).
    linear_max_k : int
        Longest reduction of a linear op (sizes the exact accumulators and LINEAR's
        activation store: ``mac_rows`` words x ``ceil(linear_max_k / lanes)`` lines).
    moe_experts, moe_k : int
        Experts the routing unit ranks and experts it selects per token.
    moe_normalization : str
        Gate normalisation of the routing unit (``hwgen.MoE``'s ``normalization``).
    """

    mac_rows: int = 16
    mac_cols: int = 16
    act_fmt: FixedFormat = field(default_factory=lambda: FixedFormat(32, 10))
    weight_fmt: FixedFormat = field(default_factory=lambda: FixedFormat(16, 2))
    attention_queries: int = 4
    weight_buffer_bytes: int = 2 * 16 * 192 * 2
    act_buffer_bytes: int = 129 * 768 * 4
    mem_port_bits: int = 256
    clock_hz: float = 300e6
    board: str = "zcu102"
    attention_head_dim: int = 64
    attention_chunk: int = 16
    max_keys: int = 256
    max_row: int = 1024
    linear_max_k: int = 4096
    moe_experts: int = 16
    moe_k: int = 2
    moe_normalization: str = "topk_then_softmax"

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides) -> "AcceleratorConfig":
        """Formats from :data:`PRESETS` (``"edge-moe"``, ``"int16"``, ``"int8"``); without a
        ``mem_port_bits`` override, the port :func:`preset_port_bits` gives
        (:func:`preset_changes`)."""
        return cls(**{**overrides, **preset_changes(name, overrides)})

    @property
    def part(self) -> Part:
        return PARTS[self.board]

    @property
    def macs_per_cycle(self) -> int:
        return self.mac_rows * self.mac_cols

    @property
    def lanes(self) -> int:
        """Activations per on-chip buffer word (``mem_port_bits // act_fmt.width``)."""
        return self.mem_port_bits // self.act_fmt.width

    @property
    def buffer_words(self) -> int:
        """Words of the on-chip activation buffer."""
        return max(2, self.act_buffer_bytes * 8 // self.mem_port_bits)

    @property
    def weight_depth(self) -> int:
        """Weight rows per bank of the linear unit (the K-tile length; two banks)."""
        return max(1, self.weight_buffer_bytes * 8 // (2 * self.mac_cols * self.weight_fmt.width))

    def validate(self) -> None:
        """Raise :class:`~hwgen.errors.TargetError` for an invalid combination."""
        for name in ("mac_rows", "mac_cols", "attention_queries", "weight_buffer_bytes", "act_buffer_bytes",
                     "mem_port_bits", "attention_head_dim", "attention_chunk", "max_keys", "max_row",
                     "linear_max_k", "moe_experts", "moe_k"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TargetError(f"accelerator config: {name} must be a positive integer, not {v!r}")
        for name in ("act_fmt", "weight_fmt"):
            if not isinstance(getattr(self, name), FixedFormat):
                raise TargetError(f"accelerator config: {name} must be a FixedFormat, not {getattr(self, name)!r}")
        if self.mem_port_bits & (self.mem_port_bits - 1) or self.mem_port_bits < 8:
            raise TargetError(f"accelerator config: mem_port_bits must be a power of two >= 8, not {self.mem_port_bits}")
        if not isinstance(self.clock_hz, (int, float)) or not 1e6 <= self.clock_hz <= 1e9:
            raise TargetError(f"accelerator config: clock_hz must be between 1 MHz and 1 GHz, not {self.clock_hz!r}")
        if self.board not in PARTS:
            raise TargetError(f"accelerator config: unknown board {self.board!r}; known: {', '.join(sorted(PARTS))}")
        tile_bytes = self.mac_rows * self.mac_cols * self.weight_fmt.width // 8
        if self.weight_buffer_bytes < 2 * tile_bytes:
            raise TargetError(
                f"accelerator config: weight_buffer_bytes={self.weight_buffer_bytes} cannot double-buffer a "
                f"{self.mac_rows}x{self.mac_cols} tile of {self.weight_fmt} weights (needs >= {2 * tile_bytes})"
            )
        if self.attention_queries > self.mac_rows:
            raise TargetError(
                f"accelerator config: attention_queries={self.attention_queries} exceeds mac_rows={self.mac_rows}"
            )
        if self.attention_head_dim % self.attention_chunk:
            raise TargetError(
                f"accelerator config: attention_chunk={self.attention_chunk} does not divide "
                f"attention_head_dim={self.attention_head_dim}"
            )
        if self.moe_k > self.moe_experts:
            raise TargetError(f"accelerator config: moe_k={self.moe_k} exceeds moe_experts={self.moe_experts}")
        lanes = self.lanes
        if lanes < 1 or self.mac_cols % lanes:
            raise TargetError(
                f"accelerator config: mac_cols={self.mac_cols} must be a multiple of the {lanes} activations a "
                f"buffer word holds (mem_port_bits / act width = {self.mem_port_bits} / {self.act_fmt.width}): "
                f"LINEAR writes mac_cols / lanes whole words per output tile; with {self.act_fmt} use "
                f"mem_port_bits <= {self.mac_cols * self.act_fmt.width} or mac_cols >= {max(lanes, 1)}"
            )
        if 2 * self.moe_k > lanes:
            raise TargetError(
                f"accelerator config: moe_k={self.moe_k} does not fit a MoE route-table word: it holds "
                f"{lanes // 2} experts and their gate weights ({lanes} lanes)"
            )
        if self.moe_experts > 1 << self.act_fmt.width:
            raise TargetError(
                f"accelerator config: moe_experts={self.moe_experts} exceeds the {1 << self.act_fmt.width} experts "
                f"a {self.act_fmt.width}-bit route-table lane names"
            )
        index_bits = index_lanes(self.act_fmt.width) * self.act_fmt.width
        if 3 * index_bits > self.mem_port_bits:
            raise TargetError(
                f"accelerator config: a MoE schedule entry (3 index fields of {index_bits} bits) does not fit "
                f"a {self.mem_port_bits}-bit buffer word (mem_port_bits >= {3 * index_bits})"
            )
        if self.moe_normalization not in NORMALIZATIONS:
            raise TargetError(
                f"accelerator config: moe_normalization {self.moe_normalization!r} is not supported; "
                f"supported: {', '.join(NORMALIZATIONS)}"
            )
        if self.mac_rows * self.mac_cols > self.part.dsp:
            raise TargetError(
                f"accelerator config: {self.mac_rows}x{self.mac_cols} = {self.mac_rows * self.mac_cols} MACs exceed "
                f"the {self.part.dsp} DSPs of {self.part.name}"
            )

    # --- TOML -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["act_fmt"], d["weight_fmt"] = str(self.act_fmt), str(self.weight_fmt)
        return d

    def to_toml(self, path: str | Path | None = None) -> str:
        """The config as TOML text (written to ``path`` if given)."""
        lines = ["[accelerator]"]
        for k, v in self.to_dict().items():
            lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}")
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_toml(cls, path: str | Path) -> "AcceleratorConfig":
        """Load ``[accelerator]`` from a TOML file; keys as in :meth:`to_toml`, plus
        ``preset = "int8"``/``"int16"``/``"edge-moe"`` for the formats (and, without
        ``mem_port_bits``, the port :func:`preset_port_bits` gives)."""
        return cls.from_table(read_toml_table(path), path)

    @classmethod
    def from_table(cls, table: dict, where: str | Path) -> "AcceleratorConfig":
        """The config of an ``[accelerator]`` table as :func:`read_toml_table` gives it
        (see :meth:`from_toml`); errors name ``where``."""
        table = dict(table)
        known = {f.name for f in dataclasses.fields(cls)} | {"preset"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise TargetError(f"{where}: unknown accelerator config keys {unknown}; known: {sorted(known)}")
        preset = table.pop("preset", None)
        for k in ("act_fmt", "weight_fmt"):
            if k in table:
                try:
                    table[k] = FixedFormat.parse(str(table[k]))
                except ValueError as e:
                    raise TargetError(f"{where}: {k}: {e}") from e
        try:
            if preset is not None:
                table.update(preset_changes(preset, table))
            return cls(**table)
        except TargetError as e:
            raise TargetError(f"{where}: {e}") from e
