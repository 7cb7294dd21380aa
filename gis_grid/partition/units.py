"""The ``units`` method: grids that follow administrative units — townships (乡镇/街道)
or villages and communities (村/社区) — cut exactly out of each parent (plan B1, see
ARCHITECTURE.md).
"""

from __future__ import annotations

import re

import numpy as np
import shapely

from gis_grid.partition.atoms import _absorb, _arrange, _atoms, _orphans
from gis_grid.partition.context import _Context, _Grid
from gis_grid.partition.points import _first_hits


def split_units(ctx: _Context, parent: _Grid, source: str, level: int) -> list[_Grid]:
    """Children of ``parent`` that follow the units of layer ``source`` (``townships`` or
    ``units``) owning a point inside it, coded by the units' codes."""
    if source not in ctx.layers:
        raise ValueError(f"partition: a units level with source {source!r} needs the "
                         f"{source} layer")
    layer, tree = ctx.layers[source], ctx.trees[source]
    geoms = layer.geometry.values
    near = np.sort(tree.query(parent.geom, predicate="intersects"))
    # A unit belongs to the parent holding a point inside it; slivers of it straying
    # into a neighbouring parent are absorbed there.
    shapely.prepare(parent.geom)
    inner = ctx.inner[source][near]
    owned = near[shapely.contains_xy(parent.geom, inner[:, 0], inner[:, 1])]
    if len(owned) == 0:
        ctx.notes.append(f"{parent.code}: no {source} inside; kept whole at level {level}")
        return ctx.single(parent)
    faces = _arrange(parent.geom, list(shapely.boundary(geoms[owned])), ctx.frame.grid)
    atoms = _atoms(faces, ctx.frame)
    fi, ui = shapely.STRtree(geoms[owned]).query(shapely.point_on_surface(faces),
                                                 predicate="within")
    labels = _first_hits(fi, ui, atoms.n)
    labels = _absorb(atoms, labels, _orphans(atoms, labels))
    if (labels < 0).any():  # no unit of this parent touches them at all
        return ctx.single(parent)
    present = np.unique(labels)
    compact = np.full(len(owned), -1)
    compact[present] = np.arange(len(present))
    ctx.locate(parent.pts, atoms)
    codes = layer["code"].astype(str).to_numpy()[owned[present]]
    segs = [_unit_segment(parent.code, c) for c in codes]
    order = np.argsort(segs, kind="stable")
    kids = ctx.make_children(parent.pts, atoms, compact[labels], order=order)
    for child, lab in zip(kids, order, strict=True):
        child.code = f"{parent.code}-{segs[lab]}"
        if source == "units":
            child.unit = int(owned[present[lab]])
    lost = len(owned) - len(present)
    if lost:
        ctx.notes.append(f"{parent.code}: {lost} {source} left no piece of their own "
                         "and were merged into neighbours")
    return kids


def _unit_segment(parent_code: str, unit_code: str) -> str:
    """Code segment of a unit below its parent: the digits after the parent's division
    code, trailing ``000`` groups dropped (township 420527101000 under 420527 → ``101``,
    village 420527101203 under 420527-101 → ``203``)."""
    digits = parent_code.replace("-", "")
    code = re.sub(r"[^0-9A-Za-z]", "", unit_code)
    rest = code[len(digits):] if code.startswith(digits) and len(code) > len(digits) else code
    while len(rest) > 3 and rest.endswith("000"):
        rest = rest[:-3]
    return rest
