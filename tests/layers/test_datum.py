"""Property tests of the offset datums (layers.datum): round trips, the box outside which
nothing moves, the size of the offsets, and agreement with an independent implementation
(prcoords, public domain). Distances are measured in metres on the ellipsoid, not degrees.
"""

from __future__ import annotations

import warnings

import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from layers.datum import (
    bd09_to_wgs84,
    from_wgs84,
    gcj02_to_wgs84,
    out_of_china,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

try:  # the test extra; the comparison with it is skipped without it
    import prcoords
except ImportError:  # pragma: no cover
    prcoords = None

GEOD = pyproj.Geod(ellps="WGS84")
SETTINGS = settings(max_examples=150, deadline=None)

# China's box, where every inhabited place the product grids lies.
china_lon = st.floats(73.0, 135.0, allow_nan=False, allow_infinity=False)
china_lat = st.floats(18.0, 53.0, allow_nan=False, allow_infinity=False)
china_points = st.lists(st.tuples(china_lon, china_lat), min_size=1, max_size=40)

# Outside the box in which GCJ-02 shifts (lon 72.004–137.8347, lat 0.8293–55.8271).
west = st.tuples(st.floats(-180.0, 72.0), st.floats(-90.0, 90.0))
east = st.tuples(st.floats(137.9, 180.0), st.floats(-90.0, 90.0))
north = st.tuples(st.floats(-180.0, 180.0), st.floats(55.9, 90.0))
south = st.tuples(st.floats(-180.0, 180.0), st.floats(-90.0, 0.8))
abroad_points = st.lists(st.one_of(west, east, north, south), min_size=1, max_size=40)


def metres(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.atleast_1d(GEOD.inv(lon1, lat1, lon2, lat2)[2])


def columns(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(points, dtype=float)
    return array[:, 0], array[:, 1]


@SETTINGS
@given(china_points)
def test_gcj02_round_trip_within_half_a_metre(points):
    lon, lat = columns(points)
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert metres(lon, lat, *back).max() < 0.5


@SETTINGS
@given(china_points)
def test_bd09_round_trip_within_half_a_metre(points):
    lon, lat = columns(points)
    back = bd09_to_wgs84(*wgs84_to_bd09(lon, lat))
    assert metres(lon, lat, *back).max() < 0.5


@SETTINGS
@given(china_lon, china_lat)
def test_scalars_work_like_arrays(lon, lat):
    glon, glat = wgs84_to_gcj02(lon, lat)
    alon, alat = wgs84_to_gcj02(np.array([lon]), np.array([lat]))
    assert np.ndim(glon) == 0 and (glon, glat) == (alon[0], alat[0])


@SETTINGS
@given(abroad_points)
def test_points_outside_china_are_unchanged_exactly(points):
    lon, lat = columns(points)
    assert out_of_china(lon, lat).all()
    for transform in (wgs84_to_gcj02, gcj02_to_wgs84, wgs84_to_bd09, bd09_to_wgs84):
        tlon, tlat = transform(lon, lat)
        assert np.array_equal(tlon, lon) and np.array_equal(tlat, lat), transform.__name__


@SETTINGS
@given(china_points)
def test_gcj02_offsets_are_hundreds_of_metres(points):
    lon, lat = columns(points)
    offset = metres(lon, lat, *wgs84_to_gcj02(lon, lat))
    # Over the box the offset runs from about 18 m to 700 m.
    assert (offset > 0).all() and (offset < 1000).all()


@SETTINGS
@given(china_points)
def test_geometries_round_trip_through_both_datums(points):
    lon, lat = columns(points)
    geoms = np.array([shapely.Point(lon[0], lat[0]), None,
                      shapely.multipoints(np.column_stack([lon, lat]))], dtype=object)
    for datum in ("gcj02", "bd09"):
        back = to_wgs84(from_wgs84(geoms, datum), datum)
        assert back[1] is None
        xy = shapely.get_coordinates(np.delete(geoms, 1))
        back_xy = shapely.get_coordinates(np.delete(back, 1))
        assert metres(xy[:, 0], xy[:, 1], back_xy[:, 0], back_xy[:, 1]).max() < 0.5


# --- against prcoords, an independent implementation of the same published formulas

needs_prcoords = pytest.mark.skipif(prcoords is None, reason="prcoords is not installed")


def prc(function, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """prcoords works one (lat, lon) point at a time; only a test does this."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = np.array([function((b, a)) for a, b in zip(lon, lat, strict=True)])
    return out[:, 1], out[:, 0]


@needs_prcoords
@SETTINGS
@given(china_points)
def test_forward_transforms_match_prcoords(points):
    lon, lat = columns(points)
    for ours, theirs in ((wgs84_to_gcj02, prcoords.wgs_gcj), (wgs84_to_bd09, prcoords.wgs_bd)):
        olon, olat = ours(lon, lat)
        plon, plat = prc(theirs, lon, lat)
        assert np.allclose(olon, plon, rtol=0, atol=1e-6), ours.__name__
        assert np.allclose(olat, plat, rtol=0, atol=1e-6), ours.__name__


@needs_prcoords
@SETTINGS
@given(china_points)
def test_inverse_transforms_match_prcoords(points):
    lon, lat = columns(points)
    for ours, theirs in ((gcj02_to_wgs84, prcoords.gcj_wgs_bored),
                         (bd09_to_wgs84, prcoords.bd_wgs_bored)):
        olon, olat = ours(lon, lat)
        plon, plat = prc(theirs, lon, lat)
        assert np.allclose(olon, plon, rtol=0, atol=1e-6), ours.__name__
        assert np.allclose(olat, plat, rtol=0, atol=1e-6), ours.__name__
