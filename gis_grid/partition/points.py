"""Which polygon holds each point: household points in parents, atoms and units, with a
point on a shared border counted once, always in the same polygon.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry


def _pip(polys: Sequence[BaseGeometry], lonlat: np.ndarray,
         points: np.ndarray | None = None) -> np.ndarray:
    """Index of the first polygon holding each point, border included (-1 for none): a
    point on a shared border counts once, always in the same grid. Bounding boxes from an
    STRtree, then one prepared, vectorised test per polygon — far faster than a
    predicate query when a few large polygons hold many points."""
    polys = np.asarray(polys, dtype=object)
    out = np.full(len(lonlat), -1)
    if len(polys) == 0 or len(lonlat) == 0:
        return out
    if len(polys) == 1:
        shapely.prepare(polys[0])
        out[shapely.intersects_xy(polys[0], lonlat[:, 0], lonlat[:, 1])] = 0
        return out
    qi, ti = shapely.STRtree(polys).query(shapely.points(lonlat) if points is None
                                          else points)
    order = np.lexsort((qi, ti))
    qi, ti = qi[order], ti[order]
    bounds = np.searchsorted(ti, np.arange(len(polys) + 1))
    for j in np.flatnonzero(np.diff(bounds)):
        cand = qi[bounds[j]:bounds[j + 1]]
        cand = cand[out[cand] < 0]
        if len(cand):
            shapely.prepare(polys[j])
            cand = cand[shapely.intersects_xy(polys[j], lonlat[cand, 0], lonlat[cand, 1])]
            out[cand] = j
    return out


def _first_hits(qi: np.ndarray, ti: np.ndarray, n: int) -> np.ndarray:
    """For ``STRtree.query`` pairs, the lowest tree index hit by each of ``n`` inputs
    (-1 for none): a point on a shared border counts once, always in the same grid."""
    out = np.full(n, -1)
    order = np.lexsort((-ti, qi))  # highest first, so the lowest is written last
    out[qi[order]] = ti[order]
    return out
