"""Service blanks and coverage gaps (plan B2, see ARCHITECTURE.md). Two kinds of blank,
kept apart: units with no touch point (serving outlet or device) inside them
(:func:`units_without_service_point`, 无网点无机具的村/社区) and units none of whose
households has a touch point within reach (:func:`service_blanks`, 服务空白); and the parts
of the territory beyond the radius of every touch point, with the households inside
(:func:`gap_areas`, 覆盖缺口).
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gis_grid.coverage.common import (
    DEFAULT_RADII,
    Radii,
    _check_touch_near,
    _choose_crs,
    _fail,
    _points_xy,
    _text,
    check_layers,
)
from gis_grid.coverage.distances import Access
from gis_grid.crs import to_crs
from gis_grid.geometry import polygonal


def service_blanks(acc: Access) -> gpd.GeoDataFrame:
    """Service blanks (服务空白): units with no touch point within the radius of any of
    their households (a unit without household points: of its centre). A unit may have
    no touch point inside and still not be a blank (a point next door reaches it): that
    is :func:`units_without_service_point`.

    Returns
    -------
    GeoDataFrame
        The blank units, most households first: ``code``, ``name``, ``township``,
        ``kind``, ``radius``, ``households``, ``d_nearest`` (metres from the unit's
        nearest household to the nearest touch point), ``nearest``,
        ``nearest_institution``, ``nearest_kind``, and the unit's polygon.
    """
    if acc.units is None:
        raise ValueError("service_blanks: the access was measured without units")
    cols = ["code", "name", "township", "kind", "radius", "households", "d_nearest",
            "nearest", "nearest_institution", "nearest_kind"]
    u = acc.units
    blanks = u.loc[u["blank"].to_numpy(bool), [*cols, "geometry"]].copy()
    blanks["households"] = np.round(blanks["households"]).astype(np.int64)
    blanks = blanks.sort_values(["households", "d_nearest"], ascending=[False, False])
    return gpd.GeoDataFrame(blanks.reset_index(drop=True), geometry="geometry", crs=u.crs)


def units_without_service_point(acc: Access) -> gpd.GeoDataFrame:
    """Units without a service point (无网点无机具的村/社区): no touch point of ``acc`` (a
    serving outlet or a device) lies inside the unit's polygon or on its border. Their
    households may still be within reach of a point outside (see ``blank`` and
    ``covered``): this is the other kind of blank than :func:`service_blanks`.

    Returns
    -------
    GeoDataFrame
        The units, most households first: ``code``, ``name``, ``township``, ``kind``,
        ``households``, ``covered`` (households within the radius of a touch point
        elsewhere), ``share``, ``d_nearest``, ``nearest``, ``nearest_institution``,
        ``nearest_kind``, ``blank`` (also a service blank: every household beyond the
        radius), and the unit's polygon.

    Examples
    --------
    >>> from gis_grid.coverage import access, touch_points
    >>> homes = gpd.GeoDataFrame({"count": [2, 3]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([500, 1500], [500, 500]))
    >>> units = gpd.GeoDataFrame({"code": ["U1", "U2"], "kind": ["rural", "rural"]},
    ...     crs=4547, geometry=[shapely.box(0, 0, 1000, 1000), shapely.box(1000, 0, 2000, 1000)])
    >>> atm = gpd.GeoDataFrame({"id": ["D1"], "institution": ["YCB"], "type": ["ATM"]},
    ...                        crs=4547, geometry=gpd.points_from_xy([400], [400]))
    >>> none = units_without_service_point(access(homes, touch_points(devices=atm), units=units))
    >>> none[["code", "households", "covered", "blank"]].values.tolist()
    [['U2', 3, 3, False]]
    """
    if acc.units is None:
        raise ValueError("units_without_service_point: the access was measured without units")
    cols = ["code", "name", "township", "kind", "households", "covered", "share",
            "d_nearest", "nearest", "nearest_institution", "nearest_kind", "blank"]
    u = acc.units
    geoms = np.asarray(u.geometry.array, dtype=object)
    touch = np.asarray(acc.touch.geometry.to_crs(u.crs).array, dtype=object) \
        if len(acc.touch) else np.array([], dtype=object)
    has = np.zeros(len(u), bool)
    if len(touch) and len(geoms):
        _, hit = shapely.STRtree(geoms).query(touch, predicate="intersects")
        has[hit] = True
    out = u.loc[~has, [c for c in cols if c in u] + ["geometry"]].copy()
    for c in ("households", "covered"):
        if c in out:
            out[c] = np.round(out[c].to_numpy(float)).astype(np.int64)
    out = out.sort_values(["households", "d_nearest"], ascending=[False, False])
    return gpd.GeoDataFrame(out.reset_index(drop=True), geometry="geometry", crs=u.crs)


def _union_of_discs(xy: np.ndarray, radius: float, quad_segs: int) -> shapely.Geometry:
    """The union of discs of ``radius`` around the points. Points closer than a metre are
    merged first (devices beside their outlet), and the discs are unioned tile by tile
    (a tile a few radii wide) before the tiles are unioned: each union stays small."""
    unique = np.unique(np.round(xy), axis=0)
    discs = shapely.buffer(shapely.points(unique), radius, quad_segs=quad_segs)
    tile = 4.0 * radius
    cell = np.floor(unique / tile).astype(np.int64)
    _, label = np.unique(cell, axis=0, return_inverse=True)
    label = label.ravel()
    order = np.argsort(label, kind="stable")
    bounds = np.flatnonzero(np.diff(label[order])) + 1
    parts = [shapely.union_all(discs[group]) for group in np.split(order, bounds)]
    return shapely.union_all(np.asarray(parts, dtype=object))


def _dense_metric(frame: gpd.GeoDataFrame, crs: pyproj.CRS) -> np.ndarray:
    """Polygons of ``frame`` in ``crs`` with their long edges densified on the way
    (``gis_grid.crs.to_crs``): a territory drawn as a box keeps its true outline."""
    return np.asarray(to_crs(frame.geometry, crs).array, dtype=object)


def gap_areas(
    territory: gpd.GeoDataFrame,
    touch: gpd.GeoDataFrame,
    *,
    units: gpd.GeoDataFrame | None = None,
    radii: Radii = DEFAULT_RADII,
    acc: Access | None = None,
    crs: pyproj.CRS | str | int | None = None,
    quad_segs: int = 16,
    min_area: float = 100.0,
    default_kind: str = "rural",
) -> gpd.GeoDataFrame:
    """Gap areas (覆盖缺口): the parts of the territory beyond the radius of every touch
    point — the urban radius in urban units, the rural radius elsewhere.

    Each disc is a polygon of ``4 * quad_segs`` sides inscribed in the circle, so a gap is
    at most ``r (1 - cos(π / (4 quad_segs)))`` wider than the true one (6 m for 5 km at
    the default 16). The households inside are the *uncovered* household points of
    ``acc`` inside the territory that fall in (or within that tolerance of) each polygon,
    so that the gaps' households add up to the uncovered households of the territory
    (one over its border is uncovered, but in no gap). The territory and units are
    carried into the metric CRS, and the gaps back, with their edges densified
    (``gis_grid.crs.to_crs``): a territory drawn as a box keeps its true outline, and
    every uncovered household inside it lies inside a gap polygon.

    Parameters
    ----------
    territory
        The territory polygon(s).
    touch
        Touch points (:func:`touch_points`).
    units
        Units with ``kind``; without them the whole territory is of ``default_kind``.
    radii
        As for :func:`access`.
    acc
        The access measured on the same inputs, to count households inside the gaps.
    quad_segs
        Segments per quarter circle of each disc.
    min_area
        Pieces smaller than this (m²) are dropped as rounding slivers.

    Returns
    -------
    GeoDataFrame
        One polygon per gap, largest first: ``gap`` (G001 …), ``kind`` (urban / rural, by
        most of its area), ``area_km2``, ``households`` (NaN without ``acc``), ``points``,
        ``units`` (the codes of the units it touches, ``;`` separated), in the
        territory's CRS.

    Examples
    --------
    >>> from gis_grid.coverage import touch_points
    >>> land = gpd.GeoDataFrame(geometry=[shapely.box(-3000, -3000, 3000, 3000)], crs=4547)
    >>> atm = gpd.GeoDataFrame({"id": ["D1"], "institution": ["YCB"], "type": ["ATM"]},
    ...                        crs=4547, geometry=gpd.points_from_xy([0], [0]))
    >>> gaps = gap_areas(land, touch_points(devices=atm), radii=Radii(rural=1000))
    >>> round(float(gaps["area_km2"].sum()), 2)   # 36 - π (1 km disc)
    32.86
    """
    if touch is None or len(touch) == 0:
        _fail("touch points", "no touch points: the whole territory would be one gap")
    check_layers({"territory": territory, "touch points": touch, "units": units})
    crs = _choose_crs(crs, units, territory)
    land = shapely.union_all(_dense_metric(territory, crs))
    txy = _points_xy(touch, crs)
    _check_touch_near(txy, land, radii.largest)
    urban = shapely.Polygon()
    if units is not None and len(units) and "kind" in units:
        kinds = _text(units["kind"])
        geoms = _dense_metric(units, crs)
        if (kinds == "urban").any():
            urban = shapely.intersection(shapely.union_all(geoms[kinds == "urban"]), land)
    elif default_kind == "urban":
        urban = land
    rest = shapely.difference(land, urban)
    pieces = []
    if not urban.is_empty:
        pieces.append(shapely.difference(urban, _union_of_discs(txy, radii.urban, quad_segs)))
    if not rest.is_empty:
        pieces.append(shapely.difference(rest, _union_of_discs(txy, radii.rural, quad_segs)))
    gaps = shapely.union_all(np.asarray(pieces, dtype=object)) if pieces else shapely.Polygon()
    parts = shapely.get_parts(gaps)
    parts = parts[shapely.get_type_id(parts) == 3]
    area = shapely.area(parts)
    parts, area = parts[area >= min_area], area[area >= min_area]
    order = np.argsort(-area, kind="stable")
    parts, area = parts[order], area[order]
    urban_area = shapely.area(shapely.intersection(parts, urban)) if len(parts) else area
    kind = np.where(urban_area > area / 2, "urban", "rural")
    out = pd.DataFrame({"gap": [f"G{k + 1:03d}" for k in range(len(parts))], "kind": kind,
                        "area_km2": area / 1e6})
    if acc is not None:
        sagitta = radii.largest * (1 - math.cos(math.pi / (4 * quad_segs))) + 1.0
        uncovered = np.flatnonzero(~acc.households["covered"].to_numpy(bool))
        # Only households inside the territory as stored can be in a gap: one outside it
        # (a point over the border) is uncovered, but in no gap polygon.
        stored = acc.households.geometry.array[uncovered]
        shape = shapely.union_all(np.asarray(to_crs(territory.geometry, acc.households.crs)
                                             .array, dtype=object))
        shapely.prepare(shape)
        uncovered = uncovered[shapely.intersects(shape, np.asarray(stored, dtype=object))]
        gxy = (acc.xy if acc.crs.equals(crs) else _points_xy(acc.households, crs))[uncovered]
        pts = shapely.points(gxy)
        tree = shapely.STRtree(parts)
        hit_p, hit_g = tree.query(pts, predicate="intersects")
        first = np.unique(hit_p, return_index=True)[1]
        owner = np.full(len(pts), -1, np.int64)
        owner[hit_p[first]] = hit_g[first]
        stray = np.flatnonzero(owner < 0)
        if len(stray) and len(parts):
            sp, sg = tree.query_nearest(pts[stray], max_distance=sagitta, all_matches=False)
            owner[stray[sp]] = sg
        w = acc.households["count"].to_numpy(float)[uncovered]
        inside = owner >= 0
        out["households"] = np.round(np.bincount(owner[inside], w[inside],
                                                 minlength=len(parts))).astype(np.int64)
        out["points"] = np.bincount(owner[inside], minlength=len(parts)).astype(np.int64)
    else:
        out["households"] = np.nan
        out["points"] = np.nan
    if units is not None and len(units) and len(parts):
        ugeoms = _dense_metric(units, crs)
        gi, ui = shapely.STRtree(ugeoms).query(parts, predicate="intersects")
        touching = shapely.area(shapely.intersection(parts[gi], ugeoms[ui])) >= min_area
        codes = _text(units["code"])
        pairs = pd.DataFrame({"g": gi[touching], "code": codes[ui[touching]]})
        joined = pairs.groupby("g")["code"].agg(lambda c: ";".join(sorted(c)))
        out["units"] = joined.reindex(range(len(parts))).to_numpy()
    else:
        out["units"] = None
    result = to_crs(gpd.GeoDataFrame(out, geometry=parts, crs=crs), territory.crs)
    # A ring touching itself (valid) may cross itself by a hair once transformed.
    geoms = np.asarray(result.geometry.array, dtype=object)
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms[bad] = polygonal(shapely.make_valid(geoms[bad], method="structure"))
        result = result.set_geometry(gpd.GeoSeries(geoms, index=result.index,
                                                   crs=result.crs))
    return result
