"""Vectorised polygon operations on one grid layer, shared by validation and repair
(plan code B2, see ARCHITECTURE.md).

Exact edge matching in numpy (``_unmatched_edges``: segments hashed, sorted and
confirmed on coordinates) and the GEOS calls it lets run on the few polygons that need
them (``_flagged``, ``_invalid_edges``, ``_union``; on vertical strips in parallel
threads from ``_PARALLEL_MIN`` grids); widths of pieces (largest inscribed circle,
``_widths``); which grid borders a piece and by how much (``_borders``,
``_longest_border_owner``, ``_neighbour_codes``); overlapping pairs; cutting pieces
along owners' borders and absorbing pieces into their owners. Each works on numpy
arrays of shapely geometries in a metric CRS.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.geometry import MULTIPOLYGON, POLYGON, polygonal

#: From this many grids in one layer, GEOS's coverage validation and union run on
#: vertical strips of the layer in parallel threads (GEOS releases the GIL); below it,
#: one call is as quick.
_PARALLEL_MIN = 20_000


def _pieces(geom) -> np.ndarray:
    """The non-empty polygons a (multi)polygonal result consists of."""
    parts = shapely.get_parts(shapely.get_parts(np.atleast_1d(np.asarray(geom, dtype=object))))
    parts = parts[shapely.get_type_id(parts) == POLYGON]
    return parts[shapely.area(parts) > 0]


def _thread_count(threads: int | None) -> int:
    if threads is None:
        return max(1, min(os.cpu_count() or 1, 8))
    return max(1, int(threads))


def _strips(geoms: np.ndarray, k: int, margin: float | None) -> list[np.ndarray]:
    """Row indices of ``k`` vertical strips of about equal counts.

    With ``margin=None`` the strips partition the rows (by box centre). Otherwise a row
    is in every strip its bounding box, grown by ``margin``, reaches: then any two rows
    whose boxes come within ``margin`` of each other share at least one strip, which is
    all a pairwise check (overlap, unmatched edge, near-miss) needs.
    """
    b = shapely.bounds(geoms)
    centre = (b[:, 0] + b[:, 2]) / 2.0
    cuts = np.quantile(centre, np.linspace(0.0, 1.0, k + 1)[1:-1])
    if margin is None:
        strip = np.searchsorted(cuts, centre)
        return [np.flatnonzero(strip == j) for j in range(k)]
    lo = np.concatenate([[-np.inf], cuts])
    hi = np.concatenate([cuts, [np.inf]])
    return [np.flatnonzero((b[:, 0] - margin <= h) & (b[:, 2] + margin >= lo_))
            for lo_, h in zip(lo, hi, strict=True)]


def _grouped_union(keys: np.ndarray, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of the geometries of each key: (unique keys, unions), in one GEOS call."""
    order = np.argsort(keys, kind="stable")
    rows, start, counts = np.unique(keys[order], return_index=True, return_counts=True)
    table = np.full((len(rows), counts.max() if len(rows) else 0), None, dtype=object)
    rank = np.arange(len(order)) - np.repeat(start, counts)
    table[np.repeat(np.arange(len(rows)), counts), rank] = geoms[order]
    # axis=1 unions each row of the table (None cells are skipped).
    return rows, shapely.union_all(table, axis=1)


def _invalid_edges(geoms: np.ndarray, gap_width: float, threads: int) -> np.ndarray:
    """``shapely.coverage_invalid_edges``, on strips in parallel for a large layer."""
    if threads <= 1 or len(geoms) < _PARALLEL_MIN:
        return shapely.coverage_invalid_edges(geoms, gap_width=gap_width)
    parts = _strips(geoms, threads, gap_width)
    with ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(
            lambda idx: shapely.coverage_invalid_edges(geoms[idx], gap_width=gap_width), parts))
    idx, edges = np.concatenate(parts), np.concatenate(found)
    hit = ~shapely.is_empty(edges)
    out = np.full(len(geoms), shapely.LineString(), dtype=object)
    if hit.any():
        # A row in two strips may have invalid edges found in each: their union.
        rows, merged = _grouped_union(idx[hit], edges[hit])
        out[rows] = merged
    return out


def _coverage_union(geoms: np.ndarray, threads: int) -> BaseGeometry:
    """``shapely.coverage_union_all``, on strips in parallel for a large layer."""
    if threads <= 1 or len(geoms) < _PARALLEL_MIN:
        return shapely.coverage_union_all(geoms)
    parts = _strips(geoms, threads, None)
    with ThreadPoolExecutor(threads) as pool:
        unions = list(pool.map(lambda idx: shapely.coverage_union_all(geoms[idx]), parts))
    return shapely.union_all(unions)


_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_MIX3 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the bits of 64-bit keys (wrapping arithmetic)."""
    h = (h ^ (h >> np.uint64(30))) * _MIX2
    h = (h ^ (h >> np.uint64(27))) * _MIX3
    return h ^ (h >> np.uint64(31))


def _segment_keys(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each segment's exact coordinates (p, q: C-ordered (n, 2))."""
    pb, qb = p.view(np.uint64), q.view(np.uint64)
    h = _mix(pb[:, 0] ^ _MIX1)
    for bits in (pb[:, 1], qb[:, 0], qb[:, 1]):
        h = _mix(h ^ bits)
    return h


def _unmatched_edges(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each polygon has an edge not matched exactly by one other polygon, and
    each polygon's first vertex.

    In a valid coverage every edge inside the covered area joins the same two vertices in
    exactly two polygons, traversed in opposite directions once rings are oriented alike
    (shells counter-clockwise, holes clockwise). Polygons none of whose segments fail
    this are edge-matched with their neighbours; only the others (the outline of the
    layer, and wherever something is wrong) need GEOS's coverage validator. Segments are
    hashed and sorted, and hash matches confirmed on the exact coordinates.
    """
    n = len(geoms)
    if (shapely.get_type_id(geoms) == MULTIPOLYGON).any():
        parts, part_of = shapely.get_parts(geoms, return_index=True)
    else:
        parts, part_of = geoms, np.arange(n)
    if shapely.get_num_interior_rings(parts).any():
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        shell = np.r_[True, ring_part[1:] != ring_part[:-1]]
    else:
        rings, ring_part, shell = parts, np.arange(len(parts)), np.ones(len(parts), bool)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    xy = xy + 0.0  # -0.0 and 0.0 are the same coordinate but not the same bits
    same = ring_of[1:] == ring_of[:-1]
    a, b = xy[:-1][same], xy[1:][same]
    seg_ring = ring_of[:-1][same]
    cross = a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]
    ccw = np.bincount(seg_ring, weights=cross, minlength=len(rings)) > 0
    along = (ccw == shell)[seg_ring]  # the ring runs as a valid coverage's would
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    lo = np.where(swap[:, None], b, a)
    hi = np.where(swap[:, None], a, b)
    key = _segment_keys(lo, hi)
    order = np.argsort(key)
    key = key[order]
    start = np.r_[True, key[1:] != key[:-1]]
    run = np.cumsum(start) - 1
    size = np.bincount(run)[run]
    owner = part_of[ring_part[seg_ring]][order]
    direction = (along ^ swap)[order]
    lo, hi = lo[order], hi[order]
    partner = np.minimum(np.where(start, np.arange(len(key)) + 1, np.arange(len(key)) - 1),
                         len(key) - 1)
    matched = (size == 2) & (owner[partner] != owner) & (direction[partner] != direction)
    matched &= (lo[partner] == lo).all(axis=1) & (hi[partner] == hi).all(axis=1)
    out = np.zeros(n, dtype=bool)
    out[owner[~matched]] = True
    first = np.full((n, 2), np.nan)
    ring_start = np.flatnonzero(np.r_[True, ring_of[1:] != ring_of[:-1]])
    polygon = part_of[ring_part[ring_of[ring_start]]]
    polygon, earliest = np.unique(polygon, return_index=True)
    first[polygon] = xy[ring_start[earliest]]
    return out, first


def _flagged(geoms: np.ndarray, gap_width: float) -> np.ndarray:
    """Which polygons GEOS's coverage validator flags, asking it only about those with
    an edge no neighbour matches exactly, and their neighbours."""
    out = np.zeros(len(geoms), dtype=bool)
    unmatched = _unmatched_edges(geoms)[0] if len(geoms) else out
    if unmatched.any():
        tree = shapely.STRtree(geoms)
        box = shapely.bounds(geoms[unmatched]) + np.array([-1, -1, 1, 1]) * gap_width
        near = np.unique(tree.query(shapely.box(*box.T))[1])
        out[near] = ~shapely.is_empty(shapely.coverage_invalid_edges(geoms[near],
                                                                     gap_width=gap_width))
    return out


def _union(geoms: np.ndarray, suspect: np.ndarray, threads: int = 1) -> BaseGeometry:
    """Union of polygons of which those not ``suspect`` form a valid coverage.

    GEOS's coverage union is fast but assumes edges match exactly; the few polygons the
    coverage validator flagged are added with the general (overlay) union.
    """
    good = geoms[~suspect]
    union = _coverage_union(good, threads) if len(good) else shapely.Polygon()
    if suspect.any():
        union = shapely.union_all(np.concatenate([[union], geoms[suspect]]))
    return polygonal(np.array([union], dtype=object))[0]


def _filled(union: BaseGeometry) -> BaseGeometry:
    """``union`` with its holes filled (the region a layer without territory claims)."""
    shells = shapely.polygons(shapely.get_exterior_ring(_pieces(union)))
    return shapely.union_all(shells)


def _widths(geoms: np.ndarray, tol: float, thresholds: Sequence[float] = ()) -> np.ndarray:
    """Diameter of the largest inscribed circle of each polygon (0 for empty ones).

    Measured first to 1 % of the square root of the polygon's area (a fine tolerance on
    a large polygon is slow), then to ``tol`` for the polygons that may be narrower than
    the largest of ``thresholds`` (slivers, noise), which are the ones decided by it.
    GEOS finds a circle at most its tolerance smaller than the largest. Polygons narrower
    than the smallest threshold get an estimate below it.
    """
    out = np.zeros(len(geoms))
    live = np.flatnonzero(~shapely.is_empty(geoms))
    floor = min(thresholds, default=0.0)
    if floor > 0 and len(live):
        # Below the lowest threshold (noise, mostly: hair-thin slivers, on which GEOS's
        # inscribed-circle search is slow) an estimate is enough: mean width 2A/P.
        below = ~_wider_than(geoms[live], floor)
        area, perimeter = shapely.area(geoms[live[below]]), shapely.length(geoms[live[below]])
        out[live[below]] = np.minimum(2.0 * area / np.maximum(perimeter, 1e-300),
                                      np.nextafter(floor, 0.0))
        live = live[~below]
    if not len(live):
        return out
    coarse = np.maximum(tol, 1e-2 * np.sqrt(shapely.area(geoms[live])))
    width = 2.0 * shapely.length(shapely.maximum_inscribed_circle(geoms[live], coarse))
    narrow = (width < max(thresholds, default=0.0) + 2.0 * coarse) & (coarse > tol)
    if narrow.any():
        width[narrow] = 2.0 * shapely.length(
            shapely.maximum_inscribed_circle(geoms[live[narrow]], tol))
    out[live] = width
    return out


def _wider_than(geoms: np.ndarray, width: float) -> np.ndarray:
    """Whether each polygon holds a disc of diameter ``width`` (its inward buffer by half
    of it is not empty): a quick test for a threshold far below any measure reported."""
    return ~shapely.is_empty(shapely.buffer(geoms, -width / 2.0, quad_segs=2))


def _split_by(pieces: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pieces cut along the owners' borders: (polygons, index of the owner of each)."""
    if not len(pieces) or not len(owners):
        return np.empty(0, dtype=object), np.empty(0, dtype=int)
    pi, oi = shapely.STRtree(owners).query(pieces, predicate="intersects")
    parts, src = shapely.get_parts(polygonal(shapely.intersection(pieces[pi], owners[oi])),
                                   return_index=True)
    keep = (shapely.get_type_id(parts) == POLYGON) & (shapely.area(parts) > 0)
    return parts[keep], oi[src[keep]]


def _borders(pieces: np.ndarray, geoms: np.ndarray, tol: float,
             tree: shapely.STRtree | None = None):
    """Pairs (piece, geometry) that share a border, with its length.

    The shared border is the part of the piece's boundary within ``tol`` of the geometry
    (robust where edges match to within rounding rather than bit for bit). Pairs touching
    only at points are left out.
    """
    if not len(pieces) or not len(geoms):
        return np.empty(0, int), np.empty(0, int), np.empty(0)
    tree = tree if tree is not None else shapely.STRtree(geoms)
    pi, gi = tree.query(pieces, predicate="intersects")
    live = ~shapely.is_empty(geoms[gi])
    pi, gi = pi[live], gi[live]
    shared = shapely.length(shapely.intersection(shapely.boundary(pieces[pi]),
                                                 shapely.buffer(geoms[gi], tol, quad_segs=2)))
    # A corner contact leaves a stub of about 2·tol inside the buffer: not a border.
    real = shared > 4 * tol
    return pi[real], gi[real], shared[real]


def _neighbour_codes(pieces: np.ndarray, geoms: np.ndarray, codes: np.ndarray,
                     tol: float, tree: shapely.STRtree | None = None) -> np.ndarray:
    """For each piece, the ';'-joined codes of the grids bordering it, longest border first."""
    out = np.full(len(pieces), "", dtype=object)
    pi, gi, shared = _borders(pieces, geoms, tol, tree)
    if len(pi):
        order = np.lexsort((-shared, pi))
        joined = pd.Series(codes[gi[order]], dtype=object).groupby(pi[order]).agg(";".join)
        out[joined.index.to_numpy()] = joined.to_numpy()
    return out


def _longest_border_owner(pieces: np.ndarray, geoms: np.ndarray, tol: float,
                          piece_parent: np.ndarray | None = None,
                          geom_parent: np.ndarray | None = None,
                          piece_source: np.ndarray | None = None) -> np.ndarray:
    """For each piece, the index of the geometry sharing the longest border with it.

    Candidates are the geometries bordering the piece (see ``_borders``); with
    ``piece_parent`` only those of the same parent, with ``piece_source`` never the
    geometry the piece came from. Returns -1 where no candidate borders the piece.
    """
    owner = np.full(len(pieces), -1)
    pi, gi, shared = _borders(pieces, geoms, tol)
    keep = np.ones(len(pi), dtype=bool)
    if piece_parent is not None:
        keep &= piece_parent[pi] == geom_parent[gi]
    if piece_source is not None:
        keep &= piece_source[pi] != gi
    pi, gi, shared = pi[keep], gi[keep], shared[keep]
    if not len(pi):
        return owner
    order = np.lexsort((-shared, pi))
    pi, gi = pi[order], gi[order]
    first = np.unique(pi, return_index=True)[1]
    owner[pi[first]] = gi[first]
    return owner


def _overlapping_pairs(geoms: np.ndarray, tree: shapely.STRtree, candidates: np.ndarray):
    """Pairs ``(a, b, intersection)``, ``a < b``, of geometries overlapping with positive
    area, one of them among ``candidates``."""
    a, b = tree.query(geoms[candidates], predicate="intersects")
    a = candidates[a]
    a, b = np.minimum(a, b)[a != b], np.maximum(a, b)[a != b]
    if len(a):
        pairs = np.unique(np.column_stack([a, b]), axis=0)
        a, b = pairs[:, 0], pairs[:, 1]
    inter = polygonal(shapely.intersection(geoms[a], geoms[b]))
    live = shapely.area(inter) > 0
    return a[live], b[live], inter[live]


def _absorb(geoms: np.ndarray, owner: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Union each piece into its owner, in place; returns the rows that grew."""
    take = owner >= 0
    owner, pieces = owner[take], pieces[take]
    if not len(owner):
        return np.empty(0, dtype=int)
    rows = np.unique(owner)
    keys = np.concatenate([rows, owner])
    _, merged = _grouped_union(keys, np.concatenate([geoms[rows], pieces]))
    geoms[rows] = polygonal(merged)
    return rows
