"""The sweep spec: parsing, checks with clear messages, grid expansion, cache keys."""

from __future__ import annotations

import pytest

from sweeps.cache import point_key
from sweeps.spec import Range, SpecError, expand, grid_points, parse_spec


def _spec(**kw):
    data = {"model": "vit-tiny", "target": "fpga", "parameters": {"mac_rows": [4, 16], "preset": ["int8", "edge-moe"]}}
    data.update(kw)
    return parse_spec(data)


def test_grid_is_the_cartesian_product_in_spec_order():
    s = _spec()
    assert grid_points(s) == [{"mac_rows": 4, "preset": "int8"}, {"mac_rows": 4, "preset": "edge-moe"},
                              {"mac_rows": 16, "preset": "int8"}, {"mac_rows": 16, "preset": "edge-moe"}]


def test_tables_flatten_to_section_fields_and_ranges_stay():
    s = parse_spec({"model": "m", "target": "optical4f", "search": {"method": "optuna"},
                    "parameters": {"camera": {"bits": [8, 12], "frame_rate_hz": {"low": 100.0, "high": 1000.0, "log": True}}}})
    assert s.parameters["camera.bits"] == [8, 12]
    assert s.parameters["camera.frame_rate_hz"] == Range(100.0, 1000.0, True)


def test_a_table_value_sets_several_fields():
    s = _spec(parameters={"array": [{"mac_rows": 8, "mac_cols": 8}]}, fixed={"moe_k": 2})
    assert expand(grid_points(s)[0], s.fixed) == {"moe_k": 2, "mac_rows": 8, "mac_cols": 8}


@pytest.mark.parametrize("data, words", [
    ({"target": "gpu"}, "targets: fpga, optical4f"),
    ({"colour": 1}, "unknown key(s) ['colour']"),
    ({"parameters": {}}, "[parameters] is empty"),
    ({"parameters": {"mac_rows": 16}}, "non-empty list"),
    ({"parameters": {"clock_hz": {"low": 1e8, "high": 3e8}}}, "a grid needs lists"),
    ({"search": {"method": "annealing"}}, "'grid' or 'optuna'"),
    ({"search": {"trials": 0, "method": "optuna"}}, "search.trials must be a positive integer"),
    ({"evaluate": {"rtll": True}}, "unknown [evaluate] key(s) ['rtll']"),
])
def test_bad_specs_say_what_and_where(data, words):
    base = {"model": "vit-tiny", "target": "fpga", "parameters": {"mac_rows": [4]}}
    with pytest.raises(SpecError) as e:
        parse_spec({**base, **data}, "my.toml")
    assert words in str(e.value) and "my.toml" in str(e.value)


def test_cache_key_changes_with_what_decides_a_result():
    s = _spec()
    k = point_key(s.identity(), "abc", {"mac_rows": 4})
    assert k == point_key(_spec().identity(), "abc", {"mac_rows": 4})
    assert k != point_key(s.identity(), "abd", {"mac_rows": 4})  # the model file
    assert k != point_key(s.identity(), "abc", {"mac_rows": 8})  # a parameter
    assert k != point_key(_spec(batch=2).identity(), "abc", {"mac_rows": 4})  # the rest of the spec
