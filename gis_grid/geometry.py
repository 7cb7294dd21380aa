"""Shared geometry helpers: the one home for small, vectorised shapely operations that
more than one part of the system needs (grid validation and repair in
``gis_grid.topology``, input checking in ``layers.checks``).

Geometry types are told by shapely's type ids (``shapely.get_type_id``): ``POLYGON``
and ``MULTIPOLYGON`` here, and ``type_names`` for the names a user reads. ``polygonal``
reduces what ``shapely.make_valid`` or an overlay returns to its polygonal part.
``transform_xy`` moves every coordinate at once through a function of (x, y) — a pyproj
transformer or a datum shift (``layers.datum``, the synthetic builders, repair).
``densify`` splits long edges, the same way whichever way round a ring runs (two
neighbours that share an edge get the same new vertices, bit for bit), and
``transform_dense`` is the one way polygon and line edges are carried from one CRS to
another: densify, then transform (``gis_grid.crs.reproject`` names the CRSs). The CRS
policy (what to measure in) is ``gis_grid.crs``; see ARCHITECTURE.md for where this
module sits in the engine.
"""

from __future__ import annotations

import numpy as np
import shapely

__all__ = ["GEOMETRY_TYPES", "MULTIPOLYGON", "POLYGON", "densify", "polygonal",
           "transform_dense", "transform_xy", "type_names"]

#: shapely type ids (``shapely.get_type_id``) of the two polygonal types.
POLYGON, MULTIPOLYGON = 3, 6
#: ... and of the two linear types.
LINESTRING, MULTILINESTRING = 1, 5

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



def densify(geoms, step: float):
    """``geoms`` (a shapely geometry or an array of them) with every edge longer than
    ``step`` (in the geometries' own units) split into equal pieces no longer than it.

    Unlike ``shapely.segmentize``, the new vertices of an edge do not depend on which
    way the edge runs: they are computed from the edge's lower end point (by x, then y),
    so two polygons sharing an edge, which run along it in opposite directions, get the
    same vertices bit for bit, and stay edge-matched once transformed. Polygons and
    lines are densified; points, missing and empty geometries are returned as they are
    (other collections through ``shapely.segmentize``).

    >>> import shapely
    >>> densify(shapely.LineString([(0, 0), (3, 0)]), 1.0).wkt
    'LINESTRING (0 0, 1 0, 2 0, 3 0)'
    """
    if not step > 0:
        raise ValueError(f"densify: step must be positive, got {step!r}")
    single = isinstance(geoms, shapely.Geometry)
    arr = np.atleast_1d(np.asarray(geoms, dtype=object))
    out = arr.copy()
    types = shapely.get_type_id(arr)
    live = ~shapely.is_empty(arr) & (types >= 0)
    for family, single_type in (((POLYGON, MULTIPOLYGON), POLYGON),
                                ((LINESTRING, MULTILINESTRING), LINESTRING)):
        sel = np.flatnonzero(live & np.isin(types, family))
        if not len(sel):
            continue
        kind, xy, offsets = shapely.to_ragged_array(arr[sel])
        xy, paths = _densify_paths(xy, np.asarray(offsets[0], dtype=np.int64), step)
        rebuilt = shapely.from_ragged_array(kind, xy, (paths, *offsets[1:]))
        first = types[sel] == single_type
        if first.any() and kind != single_type:
            rebuilt[first] = shapely.get_geometry(rebuilt[first], 0)
        out[sel] = rebuilt
    other = np.flatnonzero(live & ~np.isin(types, (0, 4, POLYGON, MULTIPOLYGON, LINESTRING,
                                                   MULTILINESTRING)))
    if len(other):
        out[other] = shapely.segmentize(arr[other], step)
    return out[0] if single else out


def _densify_paths(xy: np.ndarray, starts: np.ndarray, step: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of paths (rings or lines; path ``i`` is ``xy[starts[i]:starts[i+1]]``)
    with the edges longer than ``step`` split evenly, and the new ``starts``."""
    n = len(xy)
    if n < 2:
        return xy, starts
    last = np.zeros(n, dtype=bool)
    ends = starts[1:][np.diff(starts) > 0] - 1
    last[ends] = True
    a, b = xy[:-1], xy[1:]
    length = np.hypot(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])
    ok = ~last[:-1] & np.isfinite(length)
    pieces = np.ones(n - 1, dtype=np.int64)
    pieces[ok] = np.maximum(np.ceil(length[ok] / step), 1).astype(np.int64)
    extra = pieces - 1  # vertices inserted after vertex i
    if not extra.any():
        return xy, starts
    shift = np.concatenate([[0], np.cumsum(extra)])
    pos = np.arange(n) + shift  # where each old vertex goes
    total = n + int(shift[-1])
    out = np.empty((total, 2))
    out[pos] = xy
    seg = np.repeat(np.arange(n - 1), extra)
    k = np.arange(len(seg)) - np.repeat(shift[:-1], extra) + 1  # 1 .. extra
    m = pieces[seg]
    p, q = a[seg], b[seg]
    # From the lower end point: the same new vertices whichever way the edge runs.
    swap = (p[:, 0] > q[:, 0]) | ((p[:, 0] == q[:, 0]) & (p[:, 1] > q[:, 1]))
    lo = np.where(swap[:, None], q, p)
    hi = np.where(swap[:, None], p, q)
    j = np.where(swap, m - k, k)
    out[pos[seg] + k] = lo + (hi - lo) * (j / m)[:, None]
    return out, np.append(pos, total)[starts]


def transform_dense(geoms, fn, step: float):
    """``geoms`` carried through ``fn(x, y) -> (x2, y2)`` (a pyproj transform) with their
    edges first densified every ``step`` (in the source units, see :func:`densify`).

    The one way edges go from one CRS to another: a straight edge in one CRS is a curve
    in the other, and projected by its two end points alone it would become a chord
    (metres off the true line over tens of kilometres). Densified first, each piece is
    short enough that its chord stays within millimetres of the curve, and a long
    outline edge and the shorter edges of the grids along it project onto one line.
    """
    return transform_xy(densify(geoms, step), fn)
