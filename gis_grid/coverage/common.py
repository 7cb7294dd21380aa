"""What every coverage module shares: the touch-point categories, the service radii, the
input checks and the small array helpers (plans B2, B3; see ARCHITECTURE.md).

- :data:`CATEGORY_KEYS`, :data:`DISTANCE_COLUMNS`: the touch-point categories and the
  distance columns measured for each.
- :class:`Radii`, :data:`DEFAULT_RADII`: the service radius per kind of area.
- :func:`check_layers` and the private ``_fail`` / ``_check_near`` /
  ``_check_touch_near``: the inputs' checks, raising ``InputError``.
- :func:`screen_points`, :class:`Screened`: point features with broken coordinates
  (missing, non-finite, not a longitude/latitude) or far outside the territory (beyond
  the largest radius), named by layer and id, refused (``strict``) or left out with a
  warning; :func:`territory_crs`: the metric CRS, chosen from the territory alone.
- Private helpers over arrays: point coordinates in a metric CRS, codes as text, positions
  of codes, household counts, each household's unit, the polygon holding each point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gis_grid.crs import metric_crs, to_crs, transform_points
from gis_grid.errors import InputError, Problem
from gis_grid.model import DEVICE_TYPES, OUTLET_TIERS

#: Short ASCII keys of the touch-point categories, used in column names (``d_outlet_tier1``):
#: outlet tiers (B3) and device types.
CATEGORY_KEYS: dict[tuple[str, str], str] = {
    ("outlet", "一级支行"): "outlet_tier1",
    ("outlet", "二级支行"): "outlet_tier2",
    ("outlet", "分理处"): "outlet_office",
    ("outlet", "助农点"): "outlet_assisted",
    ("device", "ATM"): "device_atm",
    ("device", "CRS"): "device_crs",
    ("device", "助农取款POS"): "device_pos",
    ("device", "智能终端"): "device_terminal",
}
assert {c for k, c in CATEGORY_KEYS if k == "outlet"} == set(OUTLET_TIERS)
assert {c for k, c in CATEGORY_KEYS if k == "device"} == set(DEVICE_TYPES)

#: Distance columns of :attr:`Access.households`, in order: any touch point, any outlet,
#: any device, then each category.
DISTANCE_COLUMNS = ("d_any", "d_outlet", "d_device",
                    *(f"d_{key}" for key in CATEGORY_KEYS.values()))


@dataclass(frozen=True)
class Radii:
    """Service radius in metres per kind of area.

    Parameters
    ----------
    urban
        Radius in urban units (城区: communities, business areas, parks, campuses).
        Default 2 km.
    rural
        Radius in rural units (农村: villages). Default 5 km, the threshold India's
        regulator uses for villages.

    Examples
    --------
    >>> Radii().for_kinds(np.array(["urban", "rural"])).tolist()
    [2000.0, 5000.0]
    """

    urban: float = 2000.0
    rural: float = 5000.0

    def __post_init__(self) -> None:
        for name in ("urban", "rural"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"Radii: {name} radius must be a positive number of metres, "
                                 f"got {value!r}")

    @property
    def largest(self) -> float:
        return float(max(self.urban, self.rural))

    @property
    def reach(self) -> float:
        """The least float above the largest radius: an exclusive search bound that keeps
        points at exactly the radius."""
        return float(np.nextafter(self.largest, np.inf))

    def for_kinds(self, kinds: np.ndarray) -> np.ndarray:
        """The radius of each kind ("urban" → urban, anything else → rural)."""
        return np.where(np.asarray(kinds) == "urban", float(self.urban), float(self.rural))

    def as_dict(self) -> dict[str, float]:
        return {"urban_m": float(self.urban), "rural_m": float(self.rural)}


#: The default radii, 2 km urban and 5 km rural.
DEFAULT_RADII = Radii()


def _problem(source: str, message: str) -> Problem:
    return Problem(source, None, None, message)


def _fail(source: str, message: str) -> None:
    raise InputError([_problem(source, message)], source=source)


def check_layers(layers: Mapping[str, gpd.GeoDataFrame | None],
                 screened: Iterable[str] = ()) -> pyproj.CRS:
    """Check that every given layer is a GeoDataFrame with a CRS, that all share one
    CRS, and that longitude/latitude layers hold longitudes and latitudes.

    Returns the shared CRS. Raises ``InputError`` listing every problem: a CRS mismatch
    would otherwise measure nothing near anything and report zero coverage.

    The point layers named in ``screened`` are checked point by point by
    :func:`screen_points` instead: a few features without geometry or with broken
    coordinates are not a problem of the layer here; a layer whose points are mostly not
    longitudes/latitudes still is (a projected layer labelled with a geographic CRS).

    Examples
    --------
    >>> a = gpd.GeoDataFrame(geometry=gpd.points_from_xy([110.9], [30.8]), crs=4326)
    >>> check_layers({"households": a}).to_epsg()
    4326
    """
    problems: list[Problem] = []
    crs: pyproj.CRS | None = None
    first = None
    for name, frame in layers.items():
        if frame is None:
            continue
        if not isinstance(frame, gpd.GeoDataFrame):
            problems.append(_problem(name, f"must be a GeoDataFrame, got {type(frame).__name__}"))
            continue
        if frame.crs is None:
            problems.append(_problem(name, "has no CRS; set it (e.g. frame.set_crs(4326))"))
            continue
        if crs is None:
            crs, first = frame.crs, name
        elif not crs.equals(frame.crs, ignore_axis_order=True):
            problems.append(_problem(
                name, f"CRS mismatch: {name} is in {frame.crs.to_string()}, {first} in "
                      f"{crs.to_string()}; reproject one of them (frame.to_crs(...))"))
            continue
        geoms = np.asarray(frame.geometry.array, dtype=object)
        missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
        if name in screened:
            if frame.crs.is_geographic and len(frame) and not missing.all():
                xy = shapely.get_coordinates(geoms[~missing])
                bad = ~_lonlat_ok(xy[:, 0], xy[:, 1])
                if bad.mean() > 0.5:
                    problems.append(_problem(
                        name, f"{100 * bad.mean():.0f} % of the coordinates are not "
                              f"longitudes/latitudes although the CRS "
                              f"{frame.crs.to_string()} says so: a projected layer labelled "
                              "with a geographic CRS (CRS mismatch)?"))
            continue
        if missing.any():
            problems.append(_problem(name, f"{int(missing.sum())} feature(s) have no geometry"))
        if frame.crs.is_geographic and len(frame) and not missing.all():
            minx, miny, maxx, maxy = shapely.total_bounds(geoms[~missing])
            if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
                problems.append(_problem(
                    name, f"coordinates ({minx:.6g}, {miny:.6g}, {maxx:.6g}, {maxy:.6g}) are "
                          f"not longitudes/latitudes although the CRS "
                          f"{frame.crs.to_string()} says so: a projected layer labelled with "
                          "a geographic CRS (CRS mismatch)?"))
    if problems:
        raise InputError(problems, source="coverage")
    if crs is None:
        raise ValueError("check_layers: no layer given")
    return crs


def _points_xy(frame: gpd.GeoDataFrame, crs: pyproj.CRS) -> np.ndarray:
    """(n, 2) coordinates of point features in ``crs`` (a fast path for 10^6 points)."""
    xy = shapely.get_coordinates(np.asarray(frame.geometry.array, dtype=object))
    if len(xy) != len(frame):
        raise InputError([_problem("points", "expected one point per feature (no multipoints "
                                             "or empty geometries)")])
    if frame.crs.equals(crs):
        return xy
    x, y = transform_points(frame.crs, crs, xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def _metric(frame: gpd.GeoDataFrame | gpd.GeoSeries, crs: pyproj.CRS) -> np.ndarray:
    """Geometries of ``frame`` in ``crs`` as a shapely array, long edges densified on the
    way (``gis_grid.crs.to_crs``, the one path edges take between CRSs)."""
    series = frame.geometry if isinstance(frame, gpd.GeoDataFrame) else frame
    return np.asarray(to_crs(series, crs).array, dtype=object)


def _text(values: pd.Series | Iterable) -> np.ndarray:
    """Values as an object array of str, missing values as None (vectorised: 10^6 unit
    codes take a fraction of a second)."""
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if isinstance(s.dtype, pd.StringDtype):  # already text: only the missing become None
        return s.to_numpy(dtype=object, na_value=None)
    missing = s.isna().to_numpy()
    out = s.astype(str).astype(object).to_numpy(copy=True)
    out[missing] = None
    return out


def _positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position in ``keys`` of each of ``values`` (its first occurrence), -1 if absent."""
    first = pd.Series(np.arange(len(keys)), index=pd.Index(keys, dtype=object))
    first = first[~first.index.duplicated()]
    return first.reindex(pd.Index(values, dtype=object)).fillna(-1).to_numpy(np.int64)


#: How many points of a point layer :func:`_choose_crs` takes the median of.
CRS_SAMPLE = 65_536


def _choose_crs(crs: pyproj.CRS | None, *frames: gpd.GeoDataFrame | None) -> pyproj.CRS:
    """``crs`` if given, else the metric CRS of the first non-empty frame: of its extent
    for areas (territory, units, townships), of its median point for a point layer, so
    that a stray point (at 0, 0) does not move the CRS of the whole analysis."""
    if crs is not None:
        return pyproj.CRS.from_user_input(crs)
    for frame in frames:
        if frame is not None and len(frame):
            if frame.crs.is_projected:
                return frame.crs
            geoms = np.asarray(frame.geometry.array, dtype=object)
            # The median of a regular sample (at most CRS_SAMPLE points) stands for the
            # median of all: the same zone, without reading 10^6 coordinates twice.
            geoms = geoms[::max(1, len(geoms) // CRS_SAMPLE)]
            point = shapely.get_type_id(geoms) == 0
            if not point.all():
                return metric_crs(frame)
            xy = shapely.get_coordinates(geoms)  # fast path: no empty point
            lon, lat = ((xy[:, 0], xy[:, 1]) if len(xy) == len(geoms) else
                        _xy_of_points(geoms, point & ~shapely.is_empty(geoms)))
            ok = _lonlat_ok(lon, lat)
            if ok.any():
                x, y = float(np.median(lon[ok])), float(np.median(lat[ok]))
                return metric_crs((x, y, x, y))
    raise ValueError("no layer to choose a metric CRS from")


def territory_crs(territory: gpd.GeoDataFrame) -> pyproj.CRS:
    """The metric CRS of an analysis: chosen from the territory alone (its extent), never
    from the points measured in it."""
    return territory.crs if territory.crs.is_projected else metric_crs(territory)


def _xy_of_points(geoms: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the (non-empty) points ``which`` selects, NaN elsewhere."""
    x, y = np.full(len(geoms), np.nan), np.full(len(geoms), np.nan)
    x[which], y[which] = shapely.get_x(geoms[which]), shapely.get_y(geoms[which])
    return x, y


def _lonlat_ok(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= 180) & (np.abs(y) <= 90))


#: How many ids a warning names per layer before it says "and N more".
SHOWN_IDS = 20


@dataclass
class Screened:
    """Point layers screened by :func:`screen_points`.

    Attributes
    ----------
    frames
        Each layer without the points left out (the same frame when none was).
    left_out
        Per layer, the ``(id, reason)`` of every point left out; reason ``broken``
        (no geometry, non-finite, not a longitude/latitude, not projectable) or ``far``
        (beyond the largest radius of the territory).
    reach
        That radius, metres.
    xy
        Per layer whose kept features are all points, their coordinates in the metric
        CRS, shape (n, 2), row for row with ``frames`` (measured once here: pass them on
        to :func:`access` instead of projecting the households again).
    """

    frames: dict[str, gpd.GeoDataFrame | None]
    left_out: dict[str, list[tuple[str, str]]]
    reach: float
    xy: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        """One problem per point left out, naming its layer and id."""
        return [Problem(layer, f"id {pid}", None, _SINGLE[reason].format(
                    km=self.reach / 1000))
                for layer, rows in self.left_out.items() for pid, reason in rows]

    def notes(self) -> list[str]:
        """One warning per layer and reason, in Chinese then English, naming the ids."""
        out = []
        for layer, rows in self.left_out.items():
            for reason, (zh, en) in _REASONS.items():
                ids = [pid for pid, r in rows if r == reason]
                if not ids:
                    continue
                shown = ", ".join(ids[:SHOWN_IDS]) + (
                    f" … (+{len(ids) - SHOWN_IDS})" if len(ids) > SHOWN_IDS else "")
                out.append(f"{layer}: {len(ids)} 个点{zh.format(km=self.reach / 1000)}，"
                           f"已排除，不参与计算 ({len(ids)} point(s) "
                           f"{en.format(km=self.reach / 1000)}, left out): {shown}")
        return out

    def as_dict(self) -> dict:
        """For a report's meta: the points left out by layer, and the radius."""
        return {"reach_m": self.reach,
                "layers": {layer: [{"id": pid, "reason": reason} for pid, reason in rows]
                           for layer, rows in self.left_out.items()}}


_REASONS = {
    "broken": ("坐标缺失、非有限值或不是经纬度", "have no usable coordinates (missing, "
               "non-finite or not a longitude/latitude)"),
    "far": ("距辖区超过最大服务半径 {km:g} 公里", "lie more than the largest radius, {km:g} km, "
            "outside the territory"),
}


_SINGLE = {
    "broken": "the point has no usable coordinates (missing, non-finite or not a "
              "longitude/latitude)",
    "far": "the point lies more than the largest radius, {km:g} km, outside the territory",
}


def screen_points(layers: Mapping[str, gpd.GeoDataFrame | None],
                  land: shapely.Geometry | None, crs: pyproj.CRS, reach: float, *,
                  strict: bool = False, source: str = "coverage") -> Screened:
    """Find the point features that cannot be measured: no geometry, non-finite
    coordinates, not a longitude/latitude in a geographic layer, not projectable into
    ``crs``, or farther than ``reach`` metres from ``land`` (the territory in ``crs``;
    None: no territory to measure from, only broken coordinates are found).

    With ``strict``, raise ``InputError`` naming each by layer and id; otherwise return
    the layers without them (:class:`Screened`, whose ``notes`` are the warnings).
    Features of other geometry types are kept for the layer checks to report.

    Examples
    --------
    >>> t = gpd.GeoDataFrame(geometry=[shapely.box(110.6, 30.7, 110.8, 30.9)], crs=4326)
    >>> crs = territory_crs(t)
    >>> o = gpd.GeoDataFrame({"id": ["A", "B"]}, crs=4326,
    ...                      geometry=gpd.points_from_xy([110.7, 0.0], [30.8, 0.0]))
    >>> s = screen_points({"outlets": o}, _metric(t, crs)[0], crs, 5000.0)
    >>> s.frames["outlets"]["id"].tolist(), s.left_out
    (['A'], {'outlets': [('B', 'far')]})
    """
    if land is not None:
        shapely.prepare(land)
    frames: dict[str, gpd.GeoDataFrame | None] = {}
    left_out: dict[str, list[tuple[str, str]]] = {}
    metric: dict[str, np.ndarray] = {}
    for name, frame in layers.items():
        frames[name] = frame
        if frame is None or not len(frame):
            continue
        geoms = np.asarray(frame.geometry.array, dtype=object)
        point = shapely.get_type_id(geoms) == 0
        empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
        x, y = _xy_of_points(geoms, point & ~empty)
        broken = empty | (point & ~(_lonlat_ok(x, y) if frame.crs.is_geographic
                                    else np.isfinite(x) & np.isfinite(y)))
        far = np.zeros(len(frame), bool)
        todo = np.flatnonzero(point & ~broken)
        if len(todo):
            if frame.crs.equals(crs):
                mx, my = x[todo], y[todo]
            else:
                mx, my = transform_points(frame.crs, crs, x[todo], y[todo])
                mx, my = np.asarray(mx, float), np.asarray(my, float)
            finite = np.isfinite(mx) & np.isfinite(my)
            broken[todo[~finite]] = True
            todo, mx, my = todo[finite], mx[finite], my[finite]
            near = (shapely.contains_xy(land, mx, my) if land is not None
                    else np.ones(len(todo), bool))
            rest = np.flatnonzero(~near)
            if len(rest):
                near[rest] = shapely.dwithin(shapely.points(mx[rest], my[rest]), land, reach)
            far[todo[~near]] = True
            keep = ~(broken | far)
            if point[keep].all():
                at = np.full(len(frame), -1, np.int64)
                at[todo] = np.arange(len(todo))
                metric[name] = np.column_stack([mx, my])[at[keep]]
        bad = broken | far
        if not bad.any():
            continue
        key = next((k for k in ("id", "site") if k in frame), None)
        ids = (_text(frame[key]) if key is not None
               else np.array([f"#{i + 1}" for i in range(len(frame))], object))
        left_out[name] = [(str(ids[i]), "broken" if broken[i] else "far")
                          for i in np.flatnonzero(bad)]
        frames[name] = frame.loc[~bad]
    screened = Screened(frames, left_out, float(reach), metric)
    if strict and left_out:
        raise InputError(screened.problems, source=source)
    return screened


def _counts(households: pd.DataFrame) -> np.ndarray:
    if "count" not in households:
        return np.ones(len(households))
    counts = pd.to_numeric(households["count"], errors="coerce").to_numpy(float)
    if (~np.isfinite(counts)).any() or (counts < 0).any():
        _fail("households", "count must be a non-negative number on every point")
    return counts


def _household_unit_index(households: gpd.GeoDataFrame, units: gpd.GeoDataFrame
                          ) -> np.ndarray:
    """Index (0..len(units)-1) of each household's unit: by its ``unit`` code where that
    names a unit, else the unit containing the point, else the nearest unit."""
    idx = (_positions(_text(units["code"]), _text(households["unit"])) if "unit" in households
           else np.full(len(households), -1))
    todo = np.flatnonzero(idx < 0)
    if len(todo):
        tree = shapely.STRtree(np.asarray(units.geometry.array, dtype=object))
        pts = np.asarray(households.geometry.array, dtype=object)[todo]
        hit_p, hit_u = tree.query(pts, predicate="intersects")
        first = np.unique(hit_p, return_index=True)[1]
        idx[todo[hit_p[first]]] = hit_u[first]
        rest = todo[idx[todo] < 0]
        if len(rest):
            near_p, near_u = tree.query_nearest(
                np.asarray(households.geometry.array, dtype=object)[rest], all_matches=False)
            idx[rest[near_p]] = near_u
    return idx


def _check_near(xy: np.ndarray, polygons: np.ndarray, what: str, where: str,
                share: float) -> None:
    """Fail when fewer than ``share`` of the points fall within the polygons' extent."""
    if not len(xy):
        return
    minx, miny, maxx, maxy = shapely.total_bounds(polygons)
    pad = 0.05 * max(maxx - minx, maxy - miny, 1.0)
    inside = ((xy[:, 0] >= minx - pad) & (xy[:, 0] <= maxx + pad)
              & (xy[:, 1] >= miny - pad) & (xy[:, 1] <= maxy + pad))
    if inside.mean() < share:
        _fail(what, f"{100 * (1 - inside.mean()):.0f} % of the {what} lie outside the extent "
                    f"of {where}: a layer of another territory, or a CRS mismatch?")


def _check_touch_near(txy: np.ndarray, land: shapely.Geometry, reach: float) -> None:
    near = shapely.dwithin(shapely.points(txy), land, reach)
    if not near.any():
        _fail("touch points", f"none of the {len(txy)} touch points is within "
                              f"{reach / 1000:g} km of the territory: outlets of another "
                              "territory, or a CRS mismatch?")


def _polygon_index(points: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """Index of the polygon containing each point (first hit), -1 for none."""
    out = np.full(len(points), -1, np.int64)
    if not len(points) or not len(polygons):
        return out
    p, g = shapely.STRtree(polygons).query(points, predicate="intersects")
    first = np.unique(p, return_index=True)[1]
    out[p[first]] = g[first]
    return out
