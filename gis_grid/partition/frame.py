"""The two coordinate systems of a run — EPSG:4326 for topology, the territory's metric
CRS for decisions and measures — with the snap grid of the topology, regions carried into
the metric CRS and the reading order of places on a map (see ARCHITECTURE.md).
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.crs import edge_step, metric_crs, transformer
from gis_grid.geometry import transform_dense, transform_xy
from gis_grid.model import STORAGE_CRS

#: Snap grid of the topology, in degrees (about 0.1 µm): coarse enough that every noding is
#: exact and repeatable (snap-rounding), fine enough to move no vertex measurably.
_GRID_DEG = 1e-12


class _Frame:
    """The two coordinate systems of a run: EPSG:4326 for topology, the territory's
    metric CRS (coordinates less a rounded origin) for decisions and measures."""

    def __init__(self, roots: gpd.GeoDataFrame):
        self.crs = metric_crs(roots)
        self._fwd = transformer(STORAGE_CRS, self.crs)
        self._inv = transformer(self.crs, STORAGE_CRS)
        minx, miny, maxx, maxy = roots.total_bounds
        lon0, lat0 = (minx + maxx) / 2, (miny + maxy) / 2
        x0, y0 = self._fwd.transform(lon0, lat0)
        # A rounded origin keeps metric coordinates small without moving with the data.
        self.origin = (round(float(x0), -3), round(float(y0), -3))
        self.grid = _GRID_DEG
        # Metres per degree near the centre: quick, local measures of atoms (areas,
        # border lengths) for choices between neighbours; reports use the metric CRS.
        self.kx = 111_320.0 * math.cos(math.radians(lat0))
        self.ky = 110_574.0

    def xy(self, lonlat: np.ndarray) -> np.ndarray:
        lonlat = np.asarray(lonlat, dtype=float).reshape(-1, 2)
        x, y = self._fwd.transform(lonlat[:, 0], lonlat[:, 1])
        return np.column_stack([np.asarray(x) - self.origin[0], np.asarray(y) - self.origin[1]])

    def lonlat(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        lon, lat = self._inv.transform(xy[:, 0] + self.origin[0], xy[:, 1] + self.origin[1])
        return np.column_stack([lon, lat])

    def to_metric(self, geoms, *, dense: bool = True) -> np.ndarray:
        """EPSG:4326 geometries in local metric coordinates, to measure: their edges
        densified every ``EDGE_STEP`` metres first (``gis_grid.geometry.transform_dense``,
        as ``gis_grid.crs.reproject``), so a long straight edge of the territory is
        measured as stored, not as its chord. ``dense=False`` projects the vertices
        alone: what the methods decide on (``_metric_region``)."""
        geoms = np.atleast_1d(np.asarray(geoms, dtype=object))
        if not dense:
            return transform_xy(geoms, self._xy)
        return transform_dense(geoms, self._xy, edge_step(STORAGE_CRS))

    def to_storage(self, geoms, step: float = 100.0) -> np.ndarray:
        """Metric lines carried into EPSG:4326, densified every ``step`` metres so that a
        line straight on the ground stays within a millimetre of straight."""
        geoms = np.atleast_1d(np.asarray(geoms, dtype=object))
        return transform_dense(geoms, self._lonlat, step)

    def _xy(self, lon, lat):
        x, y = self._fwd.transform(lon, lat)
        return np.asarray(x) - self.origin[0], np.asarray(y) - self.origin[1]

    def _lonlat(self, x, y):
        return self._inv.transform(np.asarray(x) + self.origin[0],
                                   np.asarray(y) + self.origin[1])


def _metric_region(frame: _Frame, geom: BaseGeometry) -> BaseGeometry:
    """A region in metric coordinates, to decide on; valid even where the projection
    squeezed a needle of it.

    Its vertices alone are projected: a decision (which tile a piece of land is nearest,
    where a cut shares the land) only places the cutting lines, and the grids are cut in
    EPSG:4326 along the stored outline whatever was decided, so they are exact either
    way. Densifying here would move the cuts of existing partitions for nothing (on the
    Zigui sample it moved one balanced cut by 17.6 km²)."""
    out = frame.to_metric(geom, dense=False)[0]
    return out if out.is_valid else shapely.make_valid(out)


def _reading_key(xy: np.ndarray) -> float:
    # Reading order on a map: west before east, north before south; a diagonal tie goes
    # to the north.
    return float(xy[0] - 1.001 * xy[1])
