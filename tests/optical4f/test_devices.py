"""Device presets and TOML configuration."""

from __future__ import annotations

import pytest

from hwgen.errors import TargetError
from optical4f import load_config, preset_names
from optical4f.devices import SOURCE_KINDS, source_kind


def test_presets_exist_and_every_constant_is_sourced_or_an_assumption():
    """Each figure cites a stored page (a URL), or says it is an assumption, derived, a
    design choice or idealised: nothing is cited without a checked source."""
    assert {"ideal", "realistic", "dmd-highspeed"} <= set(preset_names())
    for name in preset_names():
        rows = load_config(name).assumptions()
        assert rows and all(r["kind"] in SOURCE_KINDS[:5] for r in rows), [r for r in rows if r["kind"] not in SOURCE_KINDS[:5]]
        assert all("http" in r["source"] for r in rows if r["kind"] == "source")


def test_source_kinds():
    assert source_kind("assumption: 5 W") == "assumption"
    assert source_kind("Vendor page https://example.org/x: 5 W") == "source"
    assert source_kind("Vendor datasheet: 5 W") == "unverified"  # a citation nobody checked
    assert source_kind("design choice: 512 px") == "design choice"


def test_realistic_is_default_and_labels_its_figures():
    cfg = load_config()
    assert cfg.preset == "realistic"
    kinds = {r["name"]: r["kind"] for r in cfg.assumptions()}
    assert kinds["camera.full_well_e"] == "assumption"  # no stored datasheet was found
    assert kinds["camera.prnu"] == "source" and kinds["electronics.energy_per_flop_j"] == "source"
    dmd = load_config("dmd-highspeed")
    assert dmd.input_modulator.modulation == "binary" and dmd.input_modulator.frame_rate_hz > 10_000
    assert "DLP7000" in dmd.input_modulator.source
    assert "Genie" not in dmd.camera.source_of("frame_rate_hz")  # the replaced camera's citations are gone


def test_toml_file_and_overrides(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('preset = "realistic"\n[camera]\nbits = 10\n[sim]\nsigned = "bias"\n')
    cfg = load_config(p, {"input_modulator.bits": "6"})
    assert (cfg.camera.bits, cfg.sim.signed, cfg.input_modulator.bits) == (10, "bias", 6)
    assert cfg.camera.source_of("bits") == "user setting"
    assert cfg.camera.full_well_e == load_config("realistic").camera.full_well_e


@pytest.mark.parametrize("bad,match", [
    ({"camera.nonsense": "1"}, "unknown field camera.nonsense"),
    ({"optics.bits": "1"}, "unknown config section"),
    ({"camera.bits": "many"}, "camera.bits"),
    ({"sim.signed": "three_pass"}, "sim.signed"),
    ({"input_modulator.modulation": "holographic"}, "modulation"),
    ({"camera.read_noise_e": "-1"}, "negative"),
])
def test_bad_settings_are_clear_errors(bad, match):
    with pytest.raises(TargetError, match=match):
        load_config("realistic", bad)


def test_unknown_preset():
    with pytest.raises(TargetError, match="presets: .*realistic"):
        load_config("nope")
