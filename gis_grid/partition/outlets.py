"""The ``outlets`` method: service areas centred on the outlets (物理网点) of a level's
tiers, optionally balanced by households (plan B3, see ARCHITECTURE.md).
"""

from __future__ import annotations

import re

import numpy as np
import shapely

from gis_grid.partition.atoms import _absorb, _arrange, _atoms, _orphans, _rebalance
from gis_grid.partition.balanced import check_balance
from gis_grid.partition.context import _Context, _Grid
from gis_grid.partition.frame import _metric_region
from gis_grid.partition.points import _first_hits
from gis_grid.partition.spec import DEFAULT_TIERS, LevelSpec


def split_outlets(ctx: _Context, parent: _Grid, spec: LevelSpec, level: int) -> list[_Grid]:
    """Children of ``parent`` that are the service areas of its serving outlets of the
    level's tiers (nearest outlet, or balanced by households with ``spec.capacity``)."""
    tiers = spec.tiers or DEFAULT_TIERS.get(level, DEFAULT_TIERS[3])
    sel = np.flatnonzero(np.isin(ctx.otier, tiers))
    if len(sel):
        inside = shapely.contains_xy(parent.geom, *ctx.frame.lonlat(ctx.oxy[sel]).T)
        sel = sel[inside]
    if len(sel) == 0:
        ctx.notes.append(f"{parent.code}: no outlet of tier {'/'.join(tiers)} inside; "
                         f"kept whole at level {level}")
        return ctx.single(parent)
    # Two outlets on one spot share one area; the first by id serves it.
    _, first = np.unique(np.round(ctx.oxy[sel], 3), axis=0, return_index=True)
    sel = sel[np.sort(first)]
    ids = ctx.oids[sel]
    if len(sel) == 1:
        kids = ctx.single(parent)
        kids[0].outlet = ids[0]
        return kids
    oxy = ctx.oxy[sel]
    geom_m = _metric_region(ctx.frame, parent.geom)
    b = geom_m.bounds
    pad = 0.1 * max(b[2] - b[0], b[3] - b[1]) + 1.0
    edges = shapely.voronoi_polygons(
        shapely.multipoints(oxy), only_edges=True,
        extend_to=shapely.box(b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad))
    lines = list(ctx.frame.to_storage(edges))
    tol = spec.tolerance or ctx.tolerance
    if spec.capacity:
        w_max = max(1.0, (spec.target_households or ctx.target) * tol / 3)
        atoms = ctx.household_atoms(parent.geom, parent.pts, len(sel), w_max, lines)
    else:
        atoms = _atoms(_arrange(parent.geom, lines, ctx.frame.grid), ctx.frame)
        ctx.locate(parent.pts, atoms)
    inner = ctx.frame.xy(shapely.get_coordinates(shapely.point_on_surface(atoms.faces)))
    d = np.hypot(inner[:, None, 0] - oxy[None, :, 0], inner[:, None, 1] - oxy[None, :, 1])
    labels = _capacity_labels(d, atoms.weight, tol) if spec.capacity else d.argmin(axis=1)
    # The atom holding each outlet anchors its area.
    oi, ai = shapely.STRtree(atoms.faces).query(
        shapely.points(ctx.frame.lonlat(oxy)), predicate="intersects")
    anchor = _first_hits(oi, ai, len(sel))
    anchors = {o: int(a) for o, a in enumerate(anchor) if a >= 0}
    labels[list(anchors.values())] = list(anchors.keys())
    labels = _absorb(atoms, labels, _orphans(atoms, labels, anchors))
    if spec.capacity:
        t = np.full(len(sel), atoms.weight.sum() / len(sel))
        protected = np.zeros(atoms.n, dtype=bool)
        protected[list(anchors.values())] = True
        labels = _rebalance(atoms, labels, atoms.weight, t, t * (1 - tol), t * (1 + tol),
                            protected)
    present = np.unique(labels)
    compact = np.full(len(sel), -1)
    compact[present] = np.arange(len(present))
    segs = [re.sub(r"[^0-9A-Za-z]", "", i) for i in ids[present]]
    if len(set(segs)) != len(segs) or not all(segs):
        segs = [f"{n + 1:03d}" for n in range(len(present))]
    order = np.argsort(segs, kind="stable")
    ctx.locate(parent.pts, atoms)
    kids = ctx.make_children(parent.pts, atoms, compact[labels], order=order)
    for child, lab in zip(kids, order, strict=True):
        child.code = f"{parent.code}-{segs[lab]}"
        child.outlet = str(ids[present[lab]])
    if spec.capacity:
        check_balance(ctx, parent, level, kids, ctx.target, tol, total=False)
    return kids


def _capacity_labels(d: np.ndarray, w: np.ndarray, tol: float, rounds: int = 200
                     ) -> np.ndarray:
    """Nearest outlet with additive offsets (an additively weighted Voronoi diagram),
    raised for over-full areas and lowered for under-full ones until the loads level."""
    k = d.shape[1]
    total = w.sum()
    labels = np.argmin(d, axis=1)
    if total <= 0:
        return labels
    mean = total / k
    bias = np.zeros(k)
    scale = float(np.median(d.min(axis=1))) + 1.0
    for step in range(rounds):
        labels = np.argmin(d + bias, axis=1)
        dev = (np.bincount(labels, w, minlength=k) - mean) / mean
        if np.all(np.abs(dev) <= tol / 2):
            break
        bias += scale * 0.5 * dev / (1 + step / 20)
    return labels
