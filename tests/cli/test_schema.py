"""`gisgrid schema`: what each layer holds, from the data model, as text and as JSON."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gis_grid.cli import main
from gis_grid.model import LAYERS, OUTLET_TIERS, describe_layer, field_titles_zh


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_schema_outlets_lists_the_four_tiers_key_and_titles():
    result = run("schema", "outlets")
    assert result.exit_code == 0, result.output
    assert "one of 一级支行 / 二级支行 / 分理处 / 助农点" in result.output
    assert "key: id" in result.output
    assert "网点层级" in result.output and "geometry: Point" in result.output
    assert "refers to institutions.id" in result.output


def test_schema_json_is_the_model_description():
    result = run("schema", "outlets", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc == describe_layer("outlets")
    tier = next(f for f in doc["fields"] if f["name"] == "tier")
    assert tier["enum"] == list(OUTLET_TIERS) and tier["required"] is True
    unit = next(f for f in doc["fields"] if f["name"] == "unit")
    assert unit["pattern"] == r"^\d{12}$" and unit["required"] is False


def test_schema_of_every_layer_and_of_a_suffixed_layer():
    result = run("schema", "--json")
    assert result.exit_code == 0, result.output
    assert [d["layer"] for d in json.loads(result.output)] == list(LAYERS)
    grids = json.loads(run("schema", "grids__nsh", "--json").output)
    assert grids["kind"] == "grids" and grids["key"] == ["code"]
    ledger = describe_layer("ledger")
    assert ledger["key"] == ["grid", "institution", "period"]
    assert ["households_files", "households_total"] in ledger["not_above"]
    grid = next(f for f in ledger["fields"] if f["name"] == "grid")
    assert grid["references"] == "grids__<institution>.code (a finest grid)"
    text = run("schema").output
    assert "ledger 台账" in text and "households_files may not exceed households_total" in text


def test_unknown_layer_is_wrong_usage_naming_the_known_ones():
    result = run("schema", "outletz")
    assert result.exit_code == 2
    assert "'outletz' has no schema" in result.output and "outlets" in result.output


def test_titles_are_unique_within_each_layer_and_never_a_field_name():
    """Every layer's titles are unique (a header maps back to one field); the layers a
    county's data arrive in have a Chinese title for every field. (A field added to
    another layer without one is written under its name, which import reads too.)"""
    from layers.synthetic import LAYER_NAMES

    for name, schema in LAYERS.items():
        titles = field_titles_zh(name)
        assert set(titles) == set(schema.field_names)
        assert len(set(titles.values())) == len(titles), name
        if name in (*LAYER_NAMES, "grids", "events"):
            assert not set(titles.values()) & set(schema.field_names), name
