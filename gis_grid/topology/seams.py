"""Stitching county seams (ARCHITECTURE.md, "The job model": the partition job's combine).

Counties partitioned apart each cut their grids out of their own border, so where two
counties meet, the grids on either side follow the same line but need not share the
same vertices. ``stitch_seams`` makes the grids of every level on both sides of a seam
share every vertex, with array geometry (numpy + GEOS), so that the merged province is an
edge-matched coverage: no gap, no overlap, nothing moved by more than about a millimetre.
"""

from __future__ import annotations

import numpy as np
import shapely

__all__ = ["stitch_seams"]

#: How near (degrees, about 1 mm) a neighbour's vertex must be to a seam to be shared.
_SEAM_TOLERANCE = 1e-8


def stitch_seams(geoms: np.ndarray, counties: np.ndarray, borders: np.ndarray,
                 border_counties: np.ndarray, levels: np.ndarray | None = None,
                 tolerance: float = _SEAM_TOLERANCE) -> np.ndarray:
    """Make the grids on both sides of each county seam share every vertex.

    Each county is partitioned on its own, and the engine nodes the county's border with
    its internal lines (and rounds to its precision grid), so a vertex may appear on one
    side of a seam only (a T-junction) or a rounding error away from its twin: no gap, no
    overlap, yet edges that do not match exactly. A *seam vertex* is a grid vertex within
    ``tolerance`` of the border (``borders``, the counties' polygons, of
    ``border_counties``) of a county other than its grid's (``counties``): it lies on
    the neighbour's grids too, since a county's grids cover it. Each seam vertex is
    given one representative — the first, by county code and position, of the seam
    vertices within ``tolerance`` of it — and each grid near a representative of a seam
    vertex of its own level (``levels``; default: all one level) that it does not
    already have as a vertex is snapped to those representatives (GEOS snapping moves
    its vertices onto them and inserts the missing ones into its edges). Each level
    becomes edge-matched across the seams; a location has one representative at every
    level, so children stay inside their parents. Grids that already match are not
    touched.
    """
    geoms = np.asarray(geoms, dtype=object).copy()
    # County codes as integers in code order, shared by grids and borders.
    counties, border_counties = (np.asarray(counties, dtype=str),
                                 np.asarray(border_counties, dtype=str))
    names = np.unique(np.concatenate([counties, border_counties]))
    grid_county = np.searchsorted(names, counties)
    # County borders as short segments (so that each query meets only the few near
    # it), each with its county.
    parts, part_of = shapely.get_parts(borders, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    ring_xy, ring_idx = shapely.get_coordinates(rings, return_index=True)
    same = ring_idx[1:] == ring_idx[:-1]
    segment_county = np.searchsorted(names, border_counties)[
        part_of[ring_part[ring_idx[:-1][same]]]]
    segments = shapely.linestrings(np.stack([ring_xy[:-1][same], ring_xy[1:][same]], axis=1))
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    # Most vertices lie far from any border; a numpy cell test drops them before GEOS
    # sees a single point (on a 20-county province, 1.0 M vertices → 0.21 M candidates).
    candidates = np.flatnonzero(_near_segments(coords, ring_xy, same))
    if not len(candidates):
        return geoms
    cand_owner, cand_xy = owner[candidates], coords[candidates]
    near_grids = np.unique(cand_owner)
    # Each grid's level as one bit, so that a point can say at which levels it is a
    # vertex.
    level_bit = (np.ones(len(geoms), dtype=np.int64) if levels is None else
                 np.left_shift(1, np.unique(np.asarray(levels), return_inverse=True)[1]
                               ).astype(np.int64))
    # One point per distinct (county, x, y): the levels and neighbouring grids of a
    # county repeat each border vertex (0.21 M → 0.07 M), ordered by county, x, y.
    county, xy, bits = grid_county[cand_owner], cand_xy, level_bit[cand_owner]
    order = np.lexsort((xy[:, 1], xy[:, 0], county))
    county, xy, bits = county[order], xy[order], bits[order]
    first = np.ones(len(xy), dtype=bool)
    first[1:] = (county[1:] != county[:-1]) | (xy[1:] != xy[:-1]).any(axis=1)
    point_of = np.cumsum(first) - 1
    county, xy = county[first], xy[first]
    point_bits = np.zeros(len(xy), dtype=np.int64)
    np.bitwise_or.at(point_bits, point_of, bits)
    point_idx, segment_idx = shapely.STRtree(segments).query(
        shapely.points(xy), predicate="dwithin", distance=tolerance)
    seam = np.unique(point_idx[segment_county[segment_idx] != county[point_idx]])
    if not len(seam):
        return geoms
    # Representatives: in that order, each seam vertex takes the first one near it.
    seam_xy = xy[seam]
    seam_points = shapely.points(seam_xy)
    a, b = shapely.STRtree(seam_points).query(seam_points, predicate="dwithin",
                                              distance=tolerance)
    rep = np.arange(len(seam))
    np.minimum.at(rep, a, b)
    targets, rep = np.unique(rep, return_inverse=True)
    target_xy = seam_xy[targets]
    target_bits = np.zeros(len(targets), dtype=np.int64)
    np.bitwise_or.at(target_bits, rep, point_bits[seam])
    # Each grid near the border with the representatives near it of its level that it
    # does not have as vertices (sorted by grid, then x, then y): snapping to a vertex
    # it already has would change nothing and cost as much. A grid that has them all is
    # left as it is.
    grid_idx, target_idx = shapely.STRtree(shapely.points(target_xy)).query(
        geoms[near_grids], predicate="dwithin", distance=tolerance)
    grid_idx = near_grids[grid_idx]
    level = (target_bits[target_idx] & level_bit[grid_idx]) != 0
    grid_idx, pair_xy = grid_idx[level], target_xy[target_idx[level]]
    order = np.lexsort((pair_xy[:, 1], pair_xy[:, 0], grid_idx))
    grid_idx, pair_xy = grid_idx[order], pair_xy[order]
    missing = ~np.isin(_rows(grid_idx, pair_xy), _rows(cand_owner, cand_xy))
    grid_idx, pair_xy = grid_idx[missing], pair_xy[missing]
    if not len(grid_idx):
        return geoms
    snapped, which = np.unique(grid_idx, return_inverse=True)
    snap_to = shapely.multipoints(shapely.points(pair_xy), indices=which)
    geoms[snapped] = shapely.snap(geoms[snapped], snap_to, tolerance)
    return geoms


def _rows(index: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(index, x, y) rows as single comparable values, for ``np.isin``."""
    rows = np.empty(len(index), dtype=[("i", "<i8"), ("x", "<f8"), ("y", "<f8")])
    rows["i"], rows["x"], rows["y"] = index, xy[:, 0], xy[:, 1]
    return rows.view(np.dtype((np.void, rows.dtype.itemsize)))


#: The cell (degrees, about 200 m) of the test that keeps only the vertices near a border.
_BORDER_CELL = 0.002


def _near_segments(coords: np.ndarray, ring_xy: np.ndarray, same: np.ndarray,
                   cell: float = _BORDER_CELL) -> np.ndarray:
    """Which of ``coords`` lie in a cell a border segment crosses, or next to one (a
    superset of the vertices on a border; exact tests follow). The segments run from
    ``ring_xy[i]`` to ``ring_xy[i + 1]`` where ``same[i]``; they are sampled at half a
    cell, so every cell a segment crosses holds a sample or neighbours one."""
    starts, ends = ring_xy[:-1][same], ring_xy[1:][same]
    steps = np.maximum(1, np.ceil(np.hypot(*(ends - starts).T) / (cell / 2))).astype(np.int64)
    first = np.repeat(np.cumsum(steps) - steps, steps)
    fraction = (np.arange(steps.sum()) - first) / np.repeat(steps, steps)
    samples = np.repeat(starts, steps, axis=0) + (
        np.repeat(ends - starts, steps, axis=0) * fraction[:, None])
    origin = np.minimum(coords.min(axis=0), samples.min(axis=0)) - cell
    width = int(np.ceil((max(coords[:, 0].max(), samples[:, 0].max()) - origin[0]) / cell)) + 2

    def key(xy: np.ndarray) -> np.ndarray:
        ij = np.floor((xy - origin) / cell).astype(np.int64)
        return ij[:, 0] * width + ij[:, 1]

    occupied = np.unique(key(samples))
    around = np.array([dx * width + dy for dx in (-1, 0, 1) for dy in (-1, 0, 1)])
    occupied = np.unique((occupied[:, None] + around[None, :]).ravel())
    keys = key(coords)
    at = np.minimum(np.searchsorted(occupied, keys), len(occupied) - 1)
    return occupied[at] == keys

