"""The CRS policy: store in WGS84, measure in a metric CRS chosen for the territory.

Layers are stored in ``gis_grid.model.STORAGE_CRS`` (EPSG:4326). Lengths, areas and
distances are never measured in degrees: they are computed in the CGCS2000 3-degree
Gauss-Krüger zone (国家2000坐标系 3度带) whose central meridian is nearest the centre of
the territory. The "CM" variants EPSG:4534 (CM 75°E) … EPSG:4554 (CM 135°E), which carry
no zone number in the easting, cover China from 73.5°E to 136.5°E; a territory whose
centre lies outside that range (a test fixture abroad) falls back to its WGS84 UTM zone.

``MetricFrame`` is one territory's metric CRS with the transforms in and out of it, for
code that draws in metres and stores in degrees (the synthetic builders).

**Edges are densified whenever they change CRS.** A polygon's edge is straight in the CRS
it is stored in and curved in any other: a 100 km edge of a territory drawn in
longitude/latitude (a bounding box, a hull drawn by hand) bows up to about 120 m away
from the chord between its projected end points at 31°N. ``reproject`` (and ``to_crs``
for layers) first split every edge longer than ``EDGE_STEP`` metres (500 m) in the
source CRS, the same way for the two neighbours sharing it (``gis_grid.geometry.
densify``), then transform the vertices: a 500 m piece stays within about 3 mm of the
true curve at 31°N (7 mm at 53°N), far inside the 0.1 m snap tolerance of validation, so
a grid layer and its territory, whatever the lengths of their edges, agree in either
CRS. Partition, validation, repair and the coverage gaps carry polygons through it.

This module is the one place that knows the policy; everything else asks it::

    >>> from gis_grid.crs import metric_crs
    >>> metric_crs((110.3, 30.6, 111.0, 31.2)).to_epsg()   # 秭归县 Zigui
    4546
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.geometry import transform_dense, transform_xy
from gis_grid.model import STORAGE_CRS

#: EPSG code of CGCS2000 / 3-degree Gauss-Kruger CM 75E; CM 78E is the next code, and so
#: on every 3 degrees up to EPSG:4554, CM 135E.
_GK3_CM75_EPSG = 4534
_GK3_CM_MIN = 75
_GK3_CM_MAX = 135

#: Longest edge, in metres, carried from one CRS to another without new vertices (see the
#: module docstring): its chord then stays within millimetres of the true line.
EDGE_STEP = 500.0
#: Metres in a degree of latitude (the longest degree), to turn EDGE_STEP into degrees.
_METRES_PER_DEGREE = 111_320.0

BoundsLike = Sequence[float]
GeometryLike = gpd.GeoDataFrame | gpd.GeoSeries | BaseGeometry | np.ndarray | BoundsLike


def gauss_kruger_epsg(lon: float) -> int | None:
    """EPSG code of the CGCS2000 3-degree Gauss-Krüger "CM" CRS nearest ``lon``.

    Returns None when the nearest central meridian is outside 75°E..135°E, where the
    series has no member.

    >>> gauss_kruger_epsg(110.7), gauss_kruger_epsg(121.0), gauss_kruger_epsg(117.95)
    (4546, 4549, 4548)
    """
    cm = 3 * int(np.floor(lon / 3.0 + 0.5))
    if not _GK3_CM_MIN <= cm <= _GK3_CM_MAX:
        return None
    return _GK3_CM75_EPSG + (cm - _GK3_CM_MIN) // 3


@lru_cache(maxsize=64)
def _crs_for_centre(lon: float, lat: float) -> pyproj.CRS:
    code = gauss_kruger_epsg(lon)
    if code is not None:
        return pyproj.CRS.from_epsg(code)
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    return pyproj.CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _lonlat_bounds(where: GeometryLike) -> tuple[float, float, float, float]:
    """The WGS84 bounds of ``where`` (GeoDataFrame / GeoSeries in any CRS, shapely
    geometries taken as lon/lat, or a ``(minx, miny, maxx, maxy)`` lon/lat tuple)."""
    if isinstance(where, gpd.GeoDataFrame | gpd.GeoSeries):
        if where.crs is None:
            raise ValueError("metric_crs: the layer has no CRS; set it before measuring")
        if not where.crs.is_geographic:
            where = where.to_crs(STORAGE_CRS)
        minx, miny, maxx, maxy = where.total_bounds
    elif isinstance(where, BaseGeometry):
        minx, miny, maxx, maxy = where.bounds
    elif isinstance(where, np.ndarray) and where.dtype == object:
        minx, miny, maxx, maxy = shapely.total_bounds(where)
    else:
        values = [float(v) for v in where]
        if len(values) != 4:
            raise ValueError(
                f"metric_crs: bounds must be (minx, miny, maxx, maxy), got {len(values)} values"
            )
        minx, miny, maxx, maxy = values
    bounds = (float(minx), float(miny), float(maxx), float(maxy))
    if not np.all(np.isfinite(bounds)):
        raise ValueError("metric_crs: the geometry is empty; there is no centre to project on")
    if not (-180.0 <= bounds[0] <= bounds[2] <= 180.0 and -90.0 <= bounds[1] <= bounds[3] <= 90.0):
        raise ValueError(f"metric_crs: {bounds} are not longitude/latitude bounds")
    return bounds


@lru_cache(maxsize=64)
def transformer(source: pyproj.CRS, target: pyproj.CRS) -> pyproj.Transformer:
    """A shared ``always_xy`` transformer from ``source`` to ``target``: making one costs
    tens of milliseconds (about as much as moving 10⁶ points), and a territory, or each
    county of a province, uses the same few again and again. pyproj transformers are
    thread-safe (pyproj ≥ 3.1), so one per pair serves every thread."""
    return pyproj.Transformer.from_crs(source, target, always_xy=True)


#: From how many points :func:`transform_points` splits the work over the cores.
PARALLEL_POINTS = 200_000


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                              thread_name_prefix="gisgrid-proj")


def transform_points(source: pyproj.CRS, target: pyproj.CRS, x: np.ndarray, y: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``x``, ``y`` moved from ``source`` to ``target`` (always x/lon first), in pieces
    on every core when there are many: pyproj releases the GIL while PROJ works and its
    transformers are thread-safe, so 10^6 households take half the time on 2 cores. The
    same numbers as one ``transform`` call, point by point."""
    move = transformer(source, target)
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    cores = os.cpu_count() or 1
    if len(x) < PARALLEL_POINTS or cores < 2:
        return move.transform(x, y)
    bounds = np.linspace(0, len(x), cores + 1).astype(int)
    out_x, out_y = np.empty_like(x), np.empty_like(y)

    def piece(k: int) -> None:
        a, b = bounds[k], bounds[k + 1]
        out_x[a:b], out_y[a:b] = move.transform(x[a:b], y[a:b])

    list(_pool().map(piece, range(cores)))
    return out_x, out_y


def metric_crs(where: GeometryLike) -> pyproj.CRS:
    """The metric CRS to measure ``where`` in.

    Parameters
    ----------
    where
        A GeoDataFrame or GeoSeries (any CRS), a shapely geometry or array of them in
        longitude/latitude, or ``(minx, miny, maxx, maxy)`` bounds in longitude/latitude.

    Returns
    -------
    pyproj.CRS
        The CGCS2000 3-degree Gauss-Krüger "CM" CRS (EPSG:4534..4554) whose central
        meridian is nearest the centre of the bounds; outside 73.5°E..136.5°E, the WGS84
        UTM zone of the centre.

    Examples
    --------
    >>> metric_crs((117.75, 35.44, 118.25, 36.03)).to_epsg()   # 蒙阴县 Mengyin, CM 117°E
    4548
    """
    minx, miny, maxx, maxy = _lonlat_bounds(where)
    # Rounded so that layers of one territory, whose bounds differ in the last digits,
    # share one cached CRS object.
    return _crs_for_centre(round((minx + maxx) / 2.0, 6), round((miny + maxy) / 2.0, 6))


def central_meridian(crs: pyproj.CRS) -> float:
    """The central meridian (longitude of natural origin) of a transverse Mercator CRS."""
    op = crs.coordinate_operation
    if op is None:
        raise ValueError(f"{crs.name} is not a projected CRS")
    for param in op.params:
        if param.name == "Longitude of natural origin":
            return float(param.value)
    raise ValueError(f"{crs.name} has no central meridian")


def edge_step(crs: pyproj.CRS, step: float = EDGE_STEP) -> float:
    """``step`` metres in the units of ``crs``: degrees for a geographic CRS (a degree of
    latitude, so that no piece is longer than ``step`` on the ground), else its linear
    unit."""
    crs = pyproj.CRS.from_user_input(crs)
    if crs.is_geographic:
        return step / _METRES_PER_DEGREE
    factor = next((a.unit_conversion_factor for a in crs.axis_info
                   if a.unit_conversion_factor), 1.0)
    return step / factor


def reproject(geoms, source, target, *, step: float = EDGE_STEP):
    """Shapely geometries (one, or an array) from ``source`` to ``target`` CRS, with every
    edge longer than ``step`` metres densified in ``source`` first.

    The one helper that carries polygon and line edges between the storage CRS and a
    metric CRS (see the module docstring); points pass through unchanged but for the
    transform.

    >>> import shapely
    >>> edge = shapely.LineString([(110.3, 31.0), (111.0, 31.0)])   # 67 km along 31°N
    >>> bowed = reproject(edge, 4326, 4546)
    >>> chord = reproject(edge, 4326, 4546, step=1e6)
    >>> len(bowed.coords), round(bowed.hausdorff_distance(chord))   # bows 53 m off the chord
    (157, 53)
    """
    source, target = pyproj.CRS.from_user_input(source), pyproj.CRS.from_user_input(target)
    if source.equals(target):
        return geoms
    return transform_dense(geoms, transformer(source, target).transform,
                           edge_step(source, step))


def to_crs(layer: gpd.GeoDataFrame | gpd.GeoSeries, crs, *, step: float = EDGE_STEP
           ) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """``layer`` (GeoDataFrame or GeoSeries) in ``crs``, its edges densified on the way
    (:func:`reproject`); the same as ``layer.to_crs(crs)`` but for the new vertices."""
    if layer.crs is None:
        raise ValueError("to_crs: the layer has no CRS; set it first")
    crs = pyproj.CRS.from_user_input(crs)
    if layer.crs.equals(crs):
        return layer
    geoms = reproject(np.asarray(layer.geometry.array, dtype=object), layer.crs, crs,
                      step=step)
    if isinstance(layer, gpd.GeoSeries):
        return gpd.GeoSeries(geoms, index=layer.index, crs=crs, name=layer.name)
    out = layer.copy()
    out[layer.geometry.name] = gpd.GeoSeries(geoms, index=layer.index, crs=crs)
    return out


def to_metric(
    layer: gpd.GeoDataFrame | gpd.GeoSeries, crs: pyproj.CRS | None = None
) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """``layer`` reprojected to ``crs``, by default ``metric_crs(layer)``, its edges
    densified on the way (:func:`to_crs`).

    Pass the same ``crs`` to every layer of one territory so they are measured alike.
    """
    if layer.crs is None:
        raise ValueError("to_metric: the layer has no CRS; set it before measuring")
    return to_crs(layer, crs if crs is not None else metric_crs(layer))


def areas(
    layer: gpd.GeoDataFrame | gpd.GeoSeries, crs: pyproj.CRS | None = None
) -> pd.Series:
    """Area of each feature in square metres, measured in ``crs`` (default
    ``metric_crs(layer)``); the index is the layer's."""
    return to_metric(layer, crs).area


class MetricFrame:
    """A metric CRS and the (cached) transforms in and out of it, always x = east:
    geometries (``to_metric``, ``to_lonlat``) and coordinate arrays (``from_lonlat_xy``,
    ``to_lonlat_xy``)."""

    def __init__(self, crs: pyproj.CRS) -> None:
        self.crs = crs
        self._to_ll = transformer(crs, STORAGE_CRS)
        self._from_ll = transformer(STORAGE_CRS, crs)

    def to_metric(self, geoms):
        """Geometries in the storage CRS, in this metric CRS."""
        return transform_xy(geoms, self._from_ll.transform)

    def to_lonlat(self, geoms):
        """Geometries in this metric CRS, in the storage CRS."""
        return transform_xy(geoms, self._to_ll.transform)

    def to_lonlat_xy(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = self._to_ll.transform(np.asarray(x, float), np.asarray(y, float))
        return np.asarray(lon), np.asarray(lat)

    def from_lonlat_xy(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._from_ll.transform(np.asarray(lon, float), np.asarray(lat, float))
        return np.asarray(x), np.asarray(y)

