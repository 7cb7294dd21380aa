"""Seeds and lattices, in metric coordinates: the quadtree seeds of household atoms, the
square or hexagonal tiling of ``tiles``, the lookup of the square holding a point, and
a lattice of points sampling a region's land.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry


def _household_seeds(xy: np.ndarray, w: np.ndarray, bounds: tuple, cell: float,
                     w_max: float, offset: tuple[float, float], depth: int = 16
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Seeds of the atoms, in metric coordinates: the weighted centres of quadtree leaves
    holding at most ``w_max`` households (or a single spot), within a lattice of ``cell``
    metres whose empty cells each give their centre. Returns (household seeds, empty-cell
    seeds). Vectorised level by level of the quadtree."""
    ox, oy = offset
    fine = cell / 2 ** depth
    seeds = []
    if len(xy):
        qx = np.floor((xy[:, 0] - ox) / fine).astype(np.int64)
        qy = np.floor((xy[:, 1] - oy) / fine).astype(np.int64)
        active = np.flatnonzero(w > 0)
        for d in range(depth + 1):
            if len(active) == 0:
                break
            shift = depth - d
            _, inv = np.unique(np.column_stack([qx[active] >> shift, qy[active] >> shift]),
                               axis=0, return_inverse=True)
            inv = inv.ravel()
            wa, px, py = w[active], xy[active, 0], xy[active, 1]
            wsum = np.bincount(inv, wa)
            sx = np.bincount(inv, wa * px) / wsum
            sy = np.bincount(inv, wa * py) / wsum
            # A cell whose points all sit on one spot cannot be split further.
            spread = np.bincount(inv, wa * (np.abs(px - sx[inv]) + np.abs(py - sy[inv])))
            stop = (wsum <= w_max) | (spread <= fine * wsum) | (d == depth)
            seeds.append(np.column_stack([sx[stop], sy[stop]]))
            active = active[~stop[inv]]
    hh = np.concatenate(seeds) if seeds else np.zeros((0, 2))
    # Lattice cells without households give one seed each, so that empty land is cut
    # into pieces small enough to shape compact grids.
    minx, miny, maxx, maxy = bounds
    ix = np.arange(math.floor((minx - ox) / cell), math.floor((maxx - ox) / cell) + 1)
    iy = np.arange(math.floor((miny - oy) / cell), math.floor((maxy - oy) / cell) + 1)
    gx, gy = (a.ravel() for a in np.meshgrid(ix, iy))
    if len(xy):
        occupied = np.unique(np.floor((xy - (ox, oy)) / cell).astype(np.int64), axis=0)
        code = gx.astype(np.int64) * 100_000_007 + gy
        empty = ~np.isin(code, occupied[:, 0] * 100_000_007 + occupied[:, 1])
        gx, gy = gx[empty], gy[empty]
    return hh, np.column_stack([ox + (gx + 0.5) * cell, oy + (gy + 0.5) * cell])


def _lattice(bounds: tuple, size: float, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """Tiles of a regular lattice anchored at the metric origin, covering ``bounds``;
    returns (cells, centres)."""
    minx, miny, maxx, maxy = bounds
    if shape == "square":
        ix = np.arange(math.floor(minx / size), math.floor(maxx / size) + 1)
        iy = np.arange(math.floor(miny / size), math.floor(maxy / size) + 1)
        gx, gy = (a.ravel() * size for a in np.meshgrid(ix, iy))
        return (shapely.box(gx, gy, gx + size, gy + size),
                np.column_stack([gx + size / 2, gy + size / 2]))
    # Pointy-top hexagons with the area of a size × size square.
    r = math.sqrt(2 * size * size / (3 * math.sqrt(3)))
    dx, dy = math.sqrt(3) * r, 1.5 * r
    rows = np.arange(math.floor(miny / dy) - 1, math.floor(maxy / dy) + 2)
    cols = np.arange(math.floor(minx / dx) - 1, math.floor(maxx / dx) + 2)
    gc, gr = (a.ravel() for a in np.meshgrid(cols, rows))
    cx, cy = gc * dx + (gr % 2) * dx / 2, gr * dy
    ang = np.deg2rad(30 + 60 * np.arange(7))
    ring = np.stack([cx[:, None] + r * np.cos(ang), cy[:, None] + r * np.sin(ang)], axis=-1)
    return shapely.polygons(ring), np.column_stack([cx, cy])


def _nearest_square(centres: np.ndarray, xy: np.ndarray, size: float) -> np.ndarray:
    """Index of the square tile (centres on a lattice of ``size``) holding each point."""
    key = np.floor(centres / size).astype(np.int64)
    q = np.floor(xy / size).astype(np.int64)
    order = np.lexsort((key[:, 1], key[:, 0]))
    flat = key[order, 0] * 100_000_007 + key[order, 1]
    pos = np.searchsorted(flat, q[:, 0] * 100_000_007 + q[:, 1])
    pos = np.clip(pos, 0, len(flat) - 1)
    found = flat[pos] == q[:, 0] * 100_000_007 + q[:, 1]
    out = np.where(found, order[pos], -1)
    if not found.all():  # a face just outside the lattice after snapping: nearest tile
        out[~found] = cKDTree(centres).query(xy[~found])[1]
    return out


def _area_sample(geom: BaseGeometry, n: int = 2000) -> np.ndarray:
    """A regular lattice of about ``n`` points inside a metric polygon: the distribution
    of its land, for cuts that share the land as well as the households."""
    minx, miny, maxx, maxy = geom.bounds
    area = geom.area
    if area <= 0:
        return np.zeros((0, 2))
    # A thin diagonal shape has a bounding box far larger than itself: cap the lattice.
    step = max(math.sqrt(area / n), math.sqrt((maxx - minx) * (maxy - miny) / (20 * n)))
    gx, gy = (a.ravel() for a in np.meshgrid(np.arange(minx + step / 2, maxx, step),
                                             np.arange(miny + step / 2, maxy, step)))
    shapely.prepare(geom)
    inside = shapely.contains_xy(geom, gx, gy)
    if not inside.any():
        return shapely.get_coordinates(shapely.point_on_surface(geom))
    return np.column_stack([gx[inside], gy[inside]])
