"""A territory drawn by hand: the Zigui sample with its boundary replaced by its bounding
box (edges of 61 and 66 km, straight in longitude/latitude), partitioned into tiles and
balanced grids, validated and measured through the CLI.

Edges change CRS densified (``gis_grid.crs.reproject``): projected by their end points
alone, the box's east-west edges were chords some 50 m off the grids along them, and
``validate`` found a 2.2 km² gap, slivers and grids outside the territory in grids that
``partition`` had called coverage-valid.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from click.testing import CliRunner

from gis_grid.cli import main
from layers.store import open_store

pytestmark = pytest.mark.slow


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_bounding_box_territory_partitions_into_grids_validate_accepts(tmp_path):
    store = str(tmp_path / "s.gpkg")
    _run("sample", "--county", "420527", "--households", "20000", "--store", store)
    s = open_store(store)
    territory = s.read("territory")
    box = shapely.box(*territory.total_bounds)
    territory["geometry"] = [box]
    s.write("territory", territory)

    out = _run("partition", "--level1", "tiles", "--level2", "balanced", "--level3", "none",
               "--store", store)
    assert "INVALID" not in out
    grids = s.read("grids")
    # Staff every finest grid (one worker each): what is left to check is the geometry.
    finest = (grids["level"] == grids["level"].max()).to_numpy()
    grids["worker"] = np.where(finest, "w-" + grids["code"].astype(str), None)
    s.write("grids", grids)

    report = tmp_path / "validation"
    _run("validate", "--grids", "grids", "--store", store, "--out", str(report))
    problems = json.loads((report / "validation.json").read_text())
    assert problems["ok"] is True

    # Every household of the box is in exactly one finest grid.
    homes = s.read("households")
    xy = shapely.get_coordinates(homes.geometry.values)
    assert shapely.contains_xy(box, xy[:, 0], xy[:, 1]).all()
    pi, _ = shapely.STRtree(grids.geometry.values[finest]).query(
        homes.geometry.values, predicate="intersects")
    assert (np.bincount(pi, minlength=len(homes)) == 1).all()

    # Coverage: the gaps hold every uncovered household, and the grids every household.
    cov = tmp_path / "coverage"
    _run("coverage", "--store", store, "--out", str(cov))
    tables = json.loads((cov / "report.json").read_text())["tables"]
    whole = tables["territory"][0]
    uncovered = whole["households"] - whole["covered"]
    assert uncovered > 0
    assert sum(g["households"] for g in tables["gaps"]) == uncovered
    finest_rows = [g for g in tables["grids"] if g["level"] == int(grids["level"].max())]
    assert sum(g["households"] for g in finest_rows) == whole["households"]
