"""`hwgen models eval NAME --target optical4f`: per-seed lines, then `accuracy: x`, the mean."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("onnx")
from click.testing import CliRunner  # noqa: E402

from models.cli import models  # noqa: E402


def test_eval_optical_prints_the_mean_over_seeds_last(tmp_path):
    toml = tmp_path / "small.toml"  # the realistic devices, a small frame so that the test is quick
    toml.write_text('preset = "realistic"\n[sim]\nframe_px = 128\n[lens]\nfocal_length_m = 0.0770\n')
    r = CliRunner().invoke(models, ["eval", "convsharevit-tiny", "--target", "optical4f", "--preset", str(toml),
                                    "--seeds", "2", "--limit", "12"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    seeds = [float(m.group(1)) for m in (re.match(r"seed \d+: optical ([0-9.]+)", ln) for ln in lines) if m]
    assert len(seeds) == 2
    last = re.fullmatch(r"accuracy: ([0-9.]+)", lines[-1])
    assert last and float(last.group(1)) == pytest.approx(sum(seeds) / 2, abs=1e-4)
    assert "calibration: 12 digits training images" in r.output


def test_eval_optical_bad_preset_is_a_clear_error():
    r = CliRunner().invoke(models, ["eval", "convsharevit-tiny", "--target", "optical4f", "--preset", "nope",
                                    "--seeds", "1", "--limit", "2"])
    assert r.exit_code != 0
    assert "unknown optical4f preset 'nope'" in r.output
