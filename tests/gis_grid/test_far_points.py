"""Far or broken coordinates do not derail coverage or placement (issue 14): the metric
CRS is the territory's alone, and points with broken coordinates or beyond the largest
radius are named by layer and id — refused with ``strict``, else left out with a warning."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from gis_grid.coverage import access, coverage_report, touch_points
from gis_grid.coverage.common import _choose_crs, _points_xy, screen_points, territory_crs
from gis_grid.errors import InputError
from gis_grid.placement import maximal_covering, screen_inputs
from layers.synthetic import build_sample


@pytest.fixture(scope="module")
def zigui():
    return build_sample("420527", seed=0, households=20_000)


def _inputs(s, **over):
    return {**{k: s[k] for k in ("territory", "households", "outlets", "devices", "units",
                                 "townships")}, **over}


def _with(frame, ids, points):
    extra = frame.iloc[:len(ids)].copy()
    extra["id"] = ids
    extra["geometry"] = points
    return gpd.GeoDataFrame(pd.concat([frame, extra], ignore_index=True), crs=frame.crs)


def test_an_outlet_at_0_0_changes_nothing_but_a_warning(zigui):
    clean = coverage_report(**_inputs(zigui))
    far = _with(zigui["outlets"], ["AT-0-0", "AT-163E"],
                [shapely.Point(0, 0), shapely.Point(163, 31)])
    report = coverage_report(**_inputs(zigui, outlets=far))
    assert report.meta["metric_crs"] == clean.meta["metric_crs"] == "EPSG:4546"
    pd.testing.assert_frame_equal(report.tables["territory"], clean.tables["territory"])
    assert report.meta["left_out"]["layers"] == {
        "outlets": [{"id": "AT-0-0", "reason": "far"}, {"id": "AT-163E", "reason": "far"}]}
    assert any("AT-0-0" in n and "已排除" in n for n in report.meta["notes"])
    with pytest.raises(InputError) as refused:
        coverage_report(**_inputs(zigui, outlets=far), strict=True)
    assert {p.where for p in refused.value.problems} == {"id AT-0-0", "id AT-163E"}


def test_a_household_at_0_0_is_left_out_not_counted(zigui):
    """Today's code counted it among the territory's households (a lower covered share)."""
    clean = coverage_report(**_inputs(zigui))
    homes = _with(zigui["households"], [10**9], [shapely.Point(0, 0)])
    report = coverage_report(**_inputs(zigui, households=homes))
    pd.testing.assert_frame_equal(report.tables["territory"], clean.tables["territory"])
    assert report.meta["left_out"]["layers"]["households"] == [
        {"id": str(10**9), "reason": "far"}]


def test_a_far_household_does_not_move_the_metric_crs(zigui):
    """Without units or a CRS, access chose the CRS from the households' extent: one point
    at (0, 0) moved it to another zone. It now follows the bulk of the points."""
    homes = zigui["households"]
    touch = touch_points(zigui["outlets"], zigui["devices"])
    far = _with(homes, [10**9], [shapely.Point(0, 0)])
    assert access(far, touch).crs == access(homes, touch).crs
    assert _choose_crs(None, far) == _choose_crs(None, homes) == territory_crs(
        zigui["territory"])


def test_placement_crs_and_screen(zigui):
    far = _with(zigui["households"], [10**9], [shapely.Point(163, 31)])
    crs, screened = screen_inputs({"households": far}, zigui["territory"], zigui["units"])
    assert crs == territory_crs(zigui["territory"])
    assert screened.left_out == {"households": [(str(10**9), "far")]}
    sites = gpd.GeoDataFrame({"site": ["A", "B"]}, crs=4326,
                             geometry=gpd.points_from_xy([110.75, 0.0], [30.85, 0.0]))
    _, named = screen_inputs({"households": zigui["households"], "candidates": sites},
                             zigui["territory"], zigui["units"])
    assert named.left_out == {"candidates": [("B", "far")]}
    kept = screened.frames["households"]
    result = maximal_covering(kept, sites.iloc[:1], k=1, units=zigui["units"], crs=crs)
    assert result.report["households_total"] == int(zigui["households"]["count"].sum())
    with pytest.raises(InputError, match="163|far|radius"):
        screen_inputs({"households": far}, zigui["territory"], zigui["units"], strict=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True, width=32),
                          st.floats(allow_nan=True, allow_infinity=True, width=32)),
                min_size=1, max_size=8))
def test_any_coordinates_are_screened_without_error(coords):
    """Whatever the coordinates (NaN, inf, beyond ±180/±90, far, near), the screen
    names each point it cannot measure and keeps only finite points within reach."""
    territory = gpd.GeoDataFrame(geometry=[shapely.box(110.6, 30.7, 110.8, 30.9)], crs=4326)
    crs = territory_crs(territory)
    land = shapely.union_all(np.asarray(territory.geometry.to_crs(crs).array))
    points = gpd.GeoDataFrame({"id": [f"P{i}" for i in range(len(coords))]}, crs=4326,
                              geometry=[shapely.Point(x, y) for x, y in coords])
    screened = screen_points({"outlets": points}, land, crs, 5000.0)
    kept = screened.frames["outlets"]
    left = [pid for pid, _ in screened.left_out.get("outlets", [])]
    assert sorted(left + kept["id"].tolist()) == sorted(points["id"])
    xy = shapely.get_coordinates(kept.geometry.to_crs(crs).array)
    assert np.isfinite(xy).all()
    assert shapely.dwithin(shapely.points(xy), land, 5000.0 + 1e-6).all()
    if len(kept):  # the metric coordinates screen_points hands on, row for row
        np.testing.assert_array_equal(screened.xy["outlets"], _points_xy(kept, crs))


def test_access_takes_the_screened_coordinates(zigui):
    """coverage_report projects the households once (screen_points) and hands the metric
    coordinates to access: the same households frame, row for row, as projecting again."""
    homes = _with(zigui["households"], [10**9, 10**9 + 1],
                  [shapely.Point(0, 0), shapely.Point(110.75, 30.85)])
    crs = territory_crs(zigui["territory"])
    land = shapely.union_all(np.asarray(zigui["territory"].geometry.to_crs(crs).array))
    screened = screen_points({"households": homes}, land, crs, 5000.0)
    kept = screened.frames["households"]
    assert len(kept) == len(homes) - 1
    touch = touch_points(zigui["outlets"], zigui["devices"])
    given = access(kept, touch, units=zigui["units"], crs=crs, xy=screened.xy["households"])
    again = access(kept, touch, units=zigui["units"], crs=crs)
    pd.testing.assert_frame_equal(given.households, again.households, check_exact=True)
    pd.testing.assert_frame_equal(given.units, again.units, check_exact=True)
    with pytest.raises(ValueError, match="shape"):
        access(kept, touch, crs=crs, xy=screened.xy["households"][1:])
