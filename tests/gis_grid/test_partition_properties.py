"""Property tests of the partition engine: random territories (non-convex stars, with
holes, in several parts) and random household clouds (uniform, clustered, with heavy
points), cut by every method at one or two levels.

For every example: each level is a valid coverage in EPSG:4326 with no gap and no overlap
(relative area error < 1e-9, measured in the metric CRS on a faithful image of the
polygons), each grid one valid Polygon exactly inside its parent whose code prefixes its
own, households conserved — and, for ``balanced``, every child within the tolerance of its
parent's mean whenever that is feasible: no single point holds more than a quarter of the
tolerance band.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gis_grid.crs import metric_crs
from gis_grid.partition import LevelSpec, partition

LON, LAT = 110.70, 30.90
M_LON = 1 / (111_320 * np.cos(np.radians(LAT)))
M_LAT = 1 / 110_574
TOL = 0.2

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def to_lonlat(xy: np.ndarray) -> np.ndarray:
    return np.column_stack([LON + xy[:, 0] * M_LON, LAT + xy[:, 1] * M_LAT])


def star(rng, centre, radius, n) -> shapely.Polygon:
    """A star-shaped polygon: simple, usually far from convex."""
    # Jittered even angles: every edge subtends less than half a turn, so the polygon
    # is simple.
    ang = (np.arange(n) + rng.uniform(0, 0.8, n)) * 2 * np.pi / n
    r = radius * rng.uniform(0.35, 1.0, n)
    xy = np.column_stack([centre[0] + r * np.cos(ang), centre[1] + r * np.sin(ang)])
    return shapely.Polygon(to_lonlat(xy))


@st.composite
def scenes(draw):
    """(territory, households) in EPSG:4326."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    radius = draw(st.floats(800, 4000))
    shape = draw(st.sampled_from(["star", "hole", "parts"]))
    n = draw(st.integers(5, 14))
    outer = star(rng, (0, 0), radius, n)
    if shape == "hole":
        lake = star(rng, (0, 0), 0.15 * radius, 7)  # inside the shell's inner reach
        geom = shapely.Polygon(outer.exterior.coords, [lake.exterior.coords])
    elif shape == "parts":
        geom = shapely.MultiPolygon([outer, star(rng, (2.5 * radius, 0), 0.8 * radius, n)])
    else:
        geom = outer
    land = gpd.GeoDataFrame({"code": ["420527"]}, geometry=[geom], crs="EPSG:4326")
    cloud = draw(st.sampled_from(["uniform", "clustered", "heavy"]))
    count = draw(st.integers(150, 2500))
    minx, miny, maxx, maxy = geom.bounds
    pts = np.zeros((0, 2))
    while len(pts) < count:
        if cloud == "uniform":
            cand = rng.uniform((minx, miny), (maxx, maxy), (count, 2))
        else:
            centres = rng.uniform((minx, miny), (maxx, maxy), (rng.integers(1, 6), 2))
            spread = 0.08 * (maxy - miny)
            cand = centres[rng.integers(0, len(centres), count)] + rng.normal(
                0, spread, (count, 2)) * [[M_LON / M_LAT, 1]]
        cand = cand[shapely.contains_xy(geom, cand[:, 0], cand[:, 1])]
        pts = np.vstack([pts, cand])
    pts = pts[:count]
    weights = np.ones(count, dtype=int)
    if cloud == "heavy":
        heavy = rng.choice(count, size=min(count, 4), replace=False)
        weights[heavy] = rng.integers(20, 400, len(heavy))
    homes = gpd.GeoDataFrame({"count": weights},
                             geometry=gpd.points_from_xy(pts[:, 0], pts[:, 1]),
                             crs="EPSG:4326")
    return land, homes


def metric_areas(geoms, crs) -> np.ndarray:
    dense = shapely.segmentize(np.asarray(geoms, dtype=object), 1e-4)
    return gpd.GeoSeries(dense, crs="EPSG:4326").to_crs(crs).area.to_numpy()


def check(result, land, homes, levels) -> None:
    g = result.grids
    crs = metric_crs(land)
    whole = metric_areas(land.geometry.values, crs).sum()
    by_code = g.set_index("code")
    assert g["code"].is_unique
    assert (g.geom_type == "Polygon").all(), "each grid is one connected polygon"
    assert g.is_valid.all()
    for level in sorted(g["level"].unique()):
        lv = g[g["level"] == level]
        assert shapely.coverage_is_valid(lv.geometry.values), "edge-matched, no overlap"
        areas = metric_areas(lv.geometry.values, crs)
        assert abs(areas.sum() - whole) / whole < 1e-9, "no gap"
        union = shapely.coverage_union_all(lv.geometry.values)
        parts = shapely.area(lv.geometry.values).sum()
        assert abs(union.area - parts) / parts < 1e-9, "no overlap"
        assert lv["households"].sum() == homes["count"].sum()
    for _, row in g[g["parent"].notna()].iterrows():
        parent = by_code.loc[row["parent"]]
        assert row["code"].startswith(row["parent"] + "-")
        assert row["geometry"].within(parent["geometry"])
    # Balance, wherever it is feasible.
    xy = shapely.get_coordinates(homes.geometry.values)
    w = homes["count"].to_numpy()
    for offset, spec in enumerate(levels):
        if spec.method != "balanced":
            continue
        level = offset + 1
        kids = g[g["level"] == level]
        if level == 1:
            parents = list(shapely.get_parts(land.geometry.iloc[0]))
            groups = [kids[shapely.contains_xy(p, *shapely.get_coordinates(
                shapely.point_on_surface(kids.geometry.values)).T)] for p in parents]
        else:
            parents = [by_code.loc[c, "geometry"] for c in kids["parent"].unique()]
            groups = [kids[kids["parent"] == c] for c in kids["parent"].unique()]
        for parent, group in zip(parents, groups, strict=True):
            k = len(group)
            if k < 2:
                continue
            mean = group["households"].sum() / k
            inside = shapely.intersects_xy(parent, xy[:, 0], xy[:, 1])
            if w[inside].max() > 0.25 * TOL * mean:
                continue  # a heavy point may make the tolerance unreachable
            loads = group["households"].to_numpy()
            assert np.all(np.abs(loads - mean) <= TOL * mean + 1e-9), (
                f"level {level}: {loads.tolist()} around {mean:.0f}")


@SETTINGS
@given(scene=scenes())
def test_balanced(scene):
    land, homes = scene
    levels = [LevelSpec("balanced", target_households=120)]
    check(partition(land, homes, levels=levels, tolerance=TOL), land, homes, levels)


@SETTINGS
@given(scene=scenes())
def test_two_balanced_levels(scene):
    land, homes = scene
    levels = [LevelSpec("balanced", target_households=600), LevelSpec("balanced",
                                                                      target_households=150)]
    check(partition(land, homes, levels=levels, tolerance=TOL), land, homes, levels)


@SETTINGS
@given(scene=scenes(), shape=st.sampled_from(["square", "hexagon"]),
       cell=st.floats(600, 2500))
def test_tiles_then_balanced(scene, shape, cell):
    land, homes = scene
    levels = [LevelSpec("tiles", cell_size=cell, shape=shape),
              LevelSpec("balanced", target_households=100)]
    check(partition(land, homes, levels=levels, tolerance=TOL), land, homes, levels)


@SETTINGS
@given(scene=scenes(), n=st.integers(1, 6), capacity=st.booleans())
def test_outlets(scene, n, capacity):
    land, homes = scene
    xy = shapely.get_coordinates(homes.geometry.values)
    rng = np.random.default_rng(n)
    at = xy[rng.choice(len(xy), size=min(n, len(xy)), replace=False)]
    outlets = gpd.GeoDataFrame({"id": [f"O{i}" for i in range(len(at))], "tier": "一级支行"},
                               geometry=gpd.points_from_xy(at[:, 0], at[:, 1]),
                               crs="EPSG:4326")
    levels = [LevelSpec("outlets", capacity=capacity)]
    r = partition(land, homes, outlets=outlets, levels=levels)
    check(r, land, homes, levels)
    # The grid holding an outlet is that outlet's area (a part of the territory without
    # any outlet is one grid served by the nearest).
    for oid, spot in zip(outlets["id"], outlets.geometry, strict=True):
        holder = r.grids[r.grids.intersects(spot)]
        assert oid in holder["outlet"].tolist()
