"""Shared geometry helpers: the one home for small, vectorised shapely operations that
more than one part of the system needs (grid validation and repair in
``gis_grid.topology``, input checking in ``layers.checks``).

Geometry types are told by shapely's type ids (``shapely.get_type_id``): ``POLYGON``
and ``MULTIPOLYGON`` here, and ``type_names`` for the names a user reads. ``polygonal``
reduces what ``shapely.make_valid`` or an overlay returns to its polygonal part.
``transform_xy`` moves every coordinate at once through a function of (x, y) — a pyproj
transformer or a datum shift (``layers.datum``, the synthetic builders, repair). The
CRS policy (what to measure in) is ``gis_grid.crs``; see ARCHITECTURE.md for where this
module sits in the engine.
"""

from __future__ import annotations

import numpy as np
import shapely

__all__ = ["GEOMETRY_TYPES", "MULTIPOLYGON", "POLYGON", "polygonal", "transform_xy",
           "type_names"]

#: shapely type ids (``shapely.get_type_id``) of the two polygonal types.
POLYGON, MULTIPOLYGON = 3, 6

#: Geometry type names, indexed by shapely type id.
GEOMETRY_TYPES = ("Point", "LineString", "LinearRing", "Polygon", "MultiPoint",
                  "MultiLineString", "MultiPolygon", "GeometryCollection")


def type_names(geoms: np.ndarray) -> np.ndarray:
    """The type name of each geometry (``"Polygon"`` …), ``"None"`` for a missing one."""
    types = shapely.get_type_id(geoms)
    names = np.array(GEOMETRY_TYPES)
    return np.where(types >= 0, names[np.clip(types, 0, 7)], "None")


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Each geometry reduced to its polygonal part (a Polygon, MultiPolygon or empty).

    Polygons and multipolygons are kept as they are (a multipolygon of one part becomes
    that polygon); of anything else (the collection ``make_valid`` returns for a bow-tie,
    holding its collapsed lines; an overlay's mixed result) the polygons are kept, and
    an empty polygon where there are none.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    types = shapely.get_type_id(geoms)
    odd = np.flatnonzero(~np.isin(types, (POLYGON, MULTIPOLYGON)))
    if len(odd):
        parts, idx = shapely.get_parts(geoms[odd], return_index=True)
        parts, sub = shapely.get_parts(parts, return_index=True)  # collections of multis
        idx = idx[sub]
        keep = shapely.get_type_id(parts) == POLYGON
        rebuilt = np.empty(len(odd), dtype=object)
        if keep.any():
            shapely.multipolygons(parts[keep], indices=idx[keep], out=rebuilt)
        rebuilt[shapely.is_missing(rebuilt)] = shapely.Polygon()
        out[odd] = rebuilt
    single = (shapely.get_type_id(out) == MULTIPOLYGON) & (shapely.get_num_geometries(out) == 1)
    if single.any():
        out[single] = shapely.get_geometry(out[single], 0)
    return out


def transform_xy(geoms, fn):
    """``geoms`` (a shapely geometry or an array of them) with every coordinate moved by
    ``fn(x, y) -> (x2, y2)`` in one vectorised call, e.g. a pyproj
    ``Transformer.transform`` or a datum shift. Vertices shared by neighbours stay shared.

    >>> import shapely
    >>> transform_xy(shapely.Point(1, 2), lambda x, y: (x + 10, y * 2)).wkt
    'POINT (11 4)'
    """
    def xy(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(fn(coords[:, 0], coords[:, 1]))

    if not isinstance(geoms, shapely.Geometry):
        geoms = np.asarray(geoms, dtype=object)
    return shapely.transform(geoms, xy)

