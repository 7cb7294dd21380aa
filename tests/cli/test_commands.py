"""The CLI as a user meets it: help that reads like a manual, exit codes, the demo."""

from __future__ import annotations

import json
import subprocess
import sys

import geopandas as gpd
from click.testing import CliRunner

from gis_grid.cli import main


def test_help_lists_commands_and_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("sample", "import", "export", "layers", "delete", "demo"):
        assert command in result.output
    assert "Exit codes" in result.output and "input rejected" in result.output


def test_every_command_has_help():
    for command in ("sample", "import", "export", "layers", "delete", "demo"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0, command
        assert "--store" in result.output or command == "demo"


def test_usage_error_exits_2():
    result = CliRunner().invoke(main, ["sample", "--county", "999999"])
    assert result.exit_code == 2


def test_store_error_exits_4(tmp_path):
    result = CliRunner().invoke(main, ["layers", "--store", str(tmp_path / "x.txt")])
    assert result.exit_code == 4
    assert "expected a path ending in .gpkg or a postgresql:// URL" in result.output


def test_missing_layer_exits_4(tmp_path):
    result = CliRunner().invoke(main, ["export", "grids", str(tmp_path / "g.geojson"),
                                       "--store", str(tmp_path / "empty.gpkg")])
    assert result.exit_code == 4
    assert "no layer named 'grids'" in result.output


def test_demo_end_to_end_as_a_process(tmp_path):
    """The installed entry point, as the README runs it: every stage leaves its output."""
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "gis_grid.cli", "demo", "--out", str(out), "--households",
         "20000", "--atlas-pages", "2"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = out / "gisgrid.gpkg"
    assert str(store) in proc.stdout
    for path in ("validation/validation.json", "coverage/coverage.xlsx", "map/map.html",
                 "atlas/atlas-urban.pdf", "atlas/atlas-rural.pdf"):
        assert (out / path).stat().st_size > 0, path
        assert str(out / path) in proc.stdout, path
    assert json.loads((out / "validation/validation.json").read_text())["ok"] is True
    listing = subprocess.run(
        [sys.executable, "-m", "gis_grid.cli", "layers", "--json", "--store", str(store)],
        capture_output=True, text=True, check=True)
    names = {layer["name"]: layer["count"] for layer in json.loads(listing.stdout)}
    assert names["units"] == 193 and names["townships"] == 12
    assert names["grids__nsh"] > 193 and "coverage_gaps" in names
    assert sum(gpd.read_file(store, layer="households")["count"]) == 20000
    grids = gpd.read_file(store, layer="grids__nsh")
    assert set(grids["level"]) == {1, 2, 3}
