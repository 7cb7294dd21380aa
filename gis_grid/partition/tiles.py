"""The ``tiles`` method: a regular well-field tiling (井田) of squares or hexagons of
``cell_size`` metres cut out of each parent, small pieces merged into the neighbour of
longest border (see ARCHITECTURE.md).
"""

from __future__ import annotations

import numpy as np
import shapely
from scipy.spatial import cKDTree

from gis_grid.partition.atoms import _absorb, _arrange, _atoms, _orphans
from gis_grid.partition.context import _Context, _Grid
from gis_grid.partition.frame import _metric_region
from gis_grid.partition.seeds import _lattice, _nearest_square
from gis_grid.partition.spec import LevelSpec


def split_tiles(ctx: _Context, parent: _Grid, spec: LevelSpec) -> list[_Grid]:
    """Children of ``parent`` that are the tiles of a square or hexagonal lattice cut out
    of it, row by row from the north."""
    size = spec.cell_size or ctx.cell_size
    shape = spec.shape or ctx.shape
    min_area = next(a for a in (spec.min_area, ctx.min_area, 0.1 * size * size)
                    if a is not None)
    geom_m = _metric_region(ctx.frame, parent.geom)
    cells, centres = _lattice(geom_m.bounds, size, shape)
    shapely.prepare(geom_m)
    hit = shapely.intersects(geom_m, cells)
    cells, centres = cells[hit], centres[hit]
    if len(cells) <= 1:
        return ctx.single(parent)
    if shape == "square":
        xs, ys = np.unique(centres[:, 0]) - size / 2, np.unique(centres[:, 1]) - size / 2
        xs, ys = np.append(xs, xs[-1] + size), np.append(ys, ys[-1] + size)
        lines = shapely.multilinestrings(
            [[(x, ys[0]), (x, ys[-1])] for x in xs] + [[(xs[0], y), (xs[-1], y)]
                                                      for y in ys])
    else:
        lines = shapely.union_all(shapely.boundary(cells))
    step = min(size / 2, 200.0)
    faces = _arrange(parent.geom, list(ctx.frame.to_storage(lines, step)),
                     ctx.frame.grid)
    atoms = _atoms(faces, ctx.frame)
    inner = ctx.frame.xy(shapely.get_coordinates(shapely.point_on_surface(faces)))
    labels = cKDTree(centres).query(inner)[1] if shape == "hexagon" else \
        _nearest_square(centres, inner, size)
    pending = _orphans(atoms, labels)
    piece = np.bincount(labels[~pending], atoms.area[~pending], minlength=len(cells))
    pending |= piece[labels] < min_area
    if pending.all():
        return ctx.single(parent)
    labels = _absorb(atoms, labels, pending)
    present = np.unique(labels)
    compact = np.full(len(cells), -1)
    compact[present] = np.arange(len(present))
    # Row by row from the north, west to east within a row.
    row = np.round(centres[present, 1] / (size * 0.5))
    order = np.lexsort((centres[present, 0], -row))
    ctx.locate(parent.pts, atoms)
    return ctx.make_children(parent.pts, atoms, compact[labels], order=order)
