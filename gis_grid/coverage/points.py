"""The points coverage is measured from and to: touch points (触点: serving outlets and
devices as one layer) and the centres of units and townships (plans B2, B3; see
ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.coverage.common import (
    CATEGORY_KEYS,
    _choose_crs,
    _counts,
    _household_unit_index,
    _points_xy,
    _positions,
    _text,
    check_layers,
)

#: Outlet statuses that serve customers (closed 停业 and planned 筹建 outlets do not).
SERVING = ("营业",)


def touch_points(
    outlets: gpd.GeoDataFrame | None = None,
    devices: gpd.GeoDataFrame | None = None,
    *,
    institution: str | Iterable[str] | None = None,
) -> gpd.GeoDataFrame:
    """Outlets and devices as one layer of touch points (触点).

    Only serving outlets count (``status`` 营业 or empty); a device attached to an outlet
    that does not serve is left out with it.

    Parameters
    ----------
    outlets, devices
        Layers of the ``outlets`` and ``devices`` schemas (same CRS). Either may be None.
    institution
        Keep only the touch points of this institution (or these institutions).

    Returns
    -------
    GeoDataFrame
        ``id``, ``institution``, ``kind`` (outlet / device), ``category`` (the tier or
        device type), ``key`` (e.g. ``outlet_tier1``, see ``CATEGORY_KEYS``), ``name``
        and the point, in the layers' CRS. May be empty: :func:`access` says so.

    Examples
    --------
    >>> o = gpd.GeoDataFrame({"id": ["A"], "institution": ["NSH"], "tier": ["分理处"],
    ...                       "name": ["x"], "status": ["营业"]}, crs=4326,
    ...                      geometry=gpd.points_from_xy([110.9], [30.8]))
    >>> touch_points(o)[["id", "kind", "key"]].values.tolist()
    [['A', 'outlet', 'outlet_office']]
    """
    if outlets is not None or devices is not None:
        check_layers({"outlets": outlets, "devices": devices})
    parts = []
    closed: set[str] = set()
    if outlets is not None:
        status = _text(outlets["status"]) if "status" in outlets else np.full(len(outlets), None)
        serving = np.array([s is None or s in SERVING for s in status], dtype=bool)
        closed = set(_text(outlets.loc[~serving, "id"]))
        o = outlets.loc[serving]
        tier = _text(o["tier"])
        parts.append(gpd.GeoDataFrame({
            "id": _text(o["id"]), "institution": _text(o["institution"]),
            "kind": "outlet", "category": tier,
            "key": [CATEGORY_KEYS.get(("outlet", t), "outlet_other") for t in tier],
            "name": _text(o["name"]) if "name" in o else tier,
        }, geometry=np.asarray(o.geometry.array, dtype=object), crs=outlets.crs))
    if devices is not None:
        d = devices
        if closed and "outlet" in d:
            d = d.loc[~pd.Series(_text(d["outlet"]), index=d.index).isin(closed)]
        kind = _text(d["type"])
        parts.append(gpd.GeoDataFrame({
            "id": _text(d["id"]), "institution": _text(d["institution"]),
            "kind": "device", "category": kind,
            "key": [CATEGORY_KEYS.get(("device", t), "device_other") for t in kind],
            "name": kind,
        }, geometry=np.asarray(d.geometry.array, dtype=object), crs=devices.crs))
    if not parts:
        return gpd.GeoDataFrame({c: [] for c in ("id", "institution", "kind", "category",
                                                 "key", "name")},
                                geometry=[], crs="EPSG:4326")
    touch = pd.concat(parts, ignore_index=True)
    touch = gpd.GeoDataFrame(touch, geometry="geometry", crs=parts[0].crs)
    if institution is not None:
        wanted = {institution} if isinstance(institution, str) else set(institution)
        touch = touch.loc[touch["institution"].isin(wanted)].reset_index(drop=True)
    return touch


def _medoids(xy: np.ndarray, weight: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """Per group 0..n-1, the index of the point nearest the group's weighted mean (-1 for
    an empty group): a centre where people live, inside the group's area."""
    valid = group >= 0
    g, p, w = group[valid], xy[valid], weight[valid]
    total = np.bincount(g, w, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(g, w * p[:, 0], minlength=n) / total
        my = np.bincount(g, w * p[:, 1], minlength=n) / total
    d2 = (p[:, 0] - mx[g]) ** 2 + (p[:, 1] - my[g]) ** 2
    order = np.lexsort((d2, g))
    first = np.ones(len(order), bool)
    first[1:] = g[order][1:] != g[order][:-1]
    picked = np.full(n, -1, np.int64)
    picked[g[order][first]] = np.flatnonzero(valid)[order][first]
    return picked


def unit_centres(units: gpd.GeoDataFrame, households: gpd.GeoDataFrame | None = None
                 ) -> gpd.GeoSeries:
    """A centre of each unit: the household point nearest the household-weighted mean of
    the unit's points (a place where people live, inside the unit); for a unit without
    households, a point on its surface. Indexed like ``units``, in its CRS.

    Examples
    --------
    >>> u = gpd.GeoDataFrame({"code": ["420527100001"]}, crs=4547,
    ...                      geometry=[shapely.box(0, 0, 10, 10)])
    >>> h = gpd.GeoDataFrame({"unit": ["420527100001"] * 3, "count": [1, 1, 5]}, crs=4547,
    ...                      geometry=gpd.points_from_xy([1, 2, 9], [1, 2, 9]))
    >>> unit_centres(u, h).iloc[0].wkt
    'POINT (9 9)'
    """
    if households is None or not len(households):
        return _centres(units, None, None, None)
    return _centres(units, households, _household_unit_index(households, units),
                    _points_xy(households, _choose_crs(None, units)))


def _centres(units: gpd.GeoDataFrame, households: gpd.GeoDataFrame | None,
             idx: np.ndarray | None, xy: np.ndarray | None) -> gpd.GeoSeries:
    centres = shapely.point_on_surface(np.asarray(units.geometry.array, dtype=object))
    if households is not None and len(households):
        picked = _medoids(xy, _counts(households), idx, len(units))
        has = picked >= 0
        centres[has] = np.asarray(households.geometry.array, dtype=object)[picked[has]]
    return gpd.GeoSeries(centres, index=units.index, crs=units.crs)


def town_centres(townships: gpd.GeoDataFrame, units: gpd.GeoDataFrame | None = None,
                 households: gpd.GeoDataFrame | None = None) -> gpd.GeoSeries:
    """A centre of each township: its seat where the layer gives one (``seat_lon``,
    ``seat_lat`` in longitude/latitude), else the household point nearest the
    household-weighted mean of its households, else a point on its surface."""
    centres = shapely.point_on_surface(np.asarray(townships.geometry.array, dtype=object))
    if households is not None and units is not None and len(households):
        crs = _choose_crs(None, townships)
        uidx = _household_unit_index(households, units)
        parent = _positions(_text(townships["code"]), _text(units["parent"]))
        tidx = np.where(uidx >= 0, parent[np.maximum(uidx, 0)], -1)
        picked = _medoids(_points_xy(households, crs), _counts(households), tidx,
                          len(townships))
        has = picked >= 0
        centres[has] = np.asarray(households.geometry.array, dtype=object)[picked[has]]
    if {"seat_lon", "seat_lat"} <= set(townships.columns):
        lon = pd.to_numeric(townships["seat_lon"], errors="coerce").to_numpy(float)
        lat = pd.to_numeric(townships["seat_lat"], errors="coerce").to_numpy(float)
        done = np.isfinite(lon) & np.isfinite(lat)
        if done.any():
            seats = gpd.GeoSeries(gpd.points_from_xy(lon[done], lat[done]), crs="EPSG:4326")
            centres[done] = np.asarray(seats.to_crs(townships.crs).array, dtype=object)
    return gpd.GeoSeries(centres, index=townships.index, crs=townships.crs)
