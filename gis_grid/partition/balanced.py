"""The ``balanced`` method: each parent cut by recursive bisection into contiguous,
compact children of about ``target_households`` households within ``± tolerance`` (plan
C1, see ARCHITECTURE.md) — straight cuts first, the atom graph where none does — and the
balance check that reports the parents that could not meet the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.partition.atoms import (
    _absorb,
    _arrange,
    _Atoms,
    _atoms,
    _connected,
    _orphans,
    _rebalance,
    _union,
)
from gis_grid.partition.context import _Context, _Grid
from gis_grid.partition.frame import _metric_region, _reading_key
from gis_grid.partition.seeds import _area_sample
from gis_grid.partition.spec import LevelSpec


def _child_count(h: float, target: float, tol: float) -> int:
    """How many children: the count whose mean is nearest the target (H = 450, target
    300 → 2 × 225 rather than 1 × 450; ties → fewer); below the lower bound, one."""
    if h <= 0 or h < target * (1 - tol):
        return 1
    lo = max(1, math.floor(h / target))
    return lo if abs(h / lo - target) <= abs(h / (lo + 1) - target) else lo + 1


def split_balanced(ctx: _Context, parent: _Grid, spec: LevelSpec, level: int) -> list[_Grid]:
    """Children of ``parent`` by recursive bisection, the number of them whose mean is
    nearest the level's target; a parent whose children miss the tolerance is reported."""
    target = spec.target_households or ctx.target
    tol = spec.tolerance or ctx.tolerance
    k = _child_count(parent.weight(ctx), target, tol)
    if k == 1:
        return ctx.single(parent)
    leaves: list[_Grid] = []
    _bisect_region(ctx, parent.geom, parent.pts, k, tol, target, leaves)
    check_balance(ctx, parent, level, leaves, target, tol)
    return leaves


def _bisect_region(ctx: _Context, geom: BaseGeometry, pts: np.ndarray, k: int, tol: float,
                   target: float, leaves: list[_Grid]) -> None:
    """Recursive bisection: split ``geom`` for ``k // 2`` and ``k - k // 2`` children,
    then each side; leaves are appended in reading order (north-west first down the
    bisection tree), which keeps codes in place when the inputs change a little."""
    if k == 1:
        leaves.append(_Grid(code="#", geom=geom, pts=pts))
        return
    sides = (_straight_cut(ctx, geom, pts, k, tol)
             or _atom_cut(ctx, geom, pts, k, tol, target))
    if sides is None or any(ctx.hw[p].sum() <= 0 for _, p in sides):
        # Nothing to cut along, or only a cut that leaves one side without households
        # (a heavy point): one grid, which the balance check reports.
        leaves.append(_Grid(code="#", geom=geom, pts=pts))
        return
    (ga, pa), (gb, pb) = sides
    ka = k // 2
    parts = [(ga, pa, ka), (gb, pb, k - ka)]
    keys = [_reading_key(ctx.frame.xy(shapely.get_coordinates(g.centroid))[0])
            for g in (ga, gb)]
    if keys[1] < keys[0]:
        parts.reverse()
    for g, p, kk in parts:
        _bisect_region(ctx, g, p, kk, tol, target, leaves)


def _straight_cut(ctx: _Context, geom: BaseGeometry, pts: np.ndarray, k: int, tol: float):
    """The best straight cut of a region for ``k // 2`` and ``k - k // 2`` children.

    Candidates cross the principal direction of the households and the land, its
    perpendicular, and north-south / east-west, each at the household quantile
    ``(k // 2) / k``, placed in the gap between neighbouring households where it best
    shares the land as well; where such a line would leave a side in several pieces
    (a region wrapped round a lake), other positions within the balance budget are
    tried too. The shortest cut leaving both sides one piece within the budget wins.
    Returns the two sides as (geometry, points), or None when no straight cut does
    (the caller falls back on atoms)."""
    k1 = k // 2
    frac = k1 / k
    budget = 0.5 * tol * min(k1, k - k1)
    xy, w = ctx.hxy[pts], ctx.hw[pts]
    W = w.sum()
    geom_m = _metric_region(ctx.frame, geom)
    sample = _area_sample(geom_m)
    if W <= 0 or len(pts) < 2 or len(sample) == 0:
        return None
    unit = W / k
    theta = _principal_axis(np.concatenate([xy, sample]),
                            np.concatenate([0.5 * w / W,
                                            np.full(len(sample), 0.5 / len(sample))]))
    shapely.prepare(geom_m)

    def pieces(d, t) -> int:
        half = _halfplane(geom_m.bounds, d, t)
        return (shapely.get_num_geometries(shapely.intersection(geom_m, half))
                + shapely.get_num_geometries(shapely.difference(geom_m, half)))

    clean, broken = [], []
    tried: list[float] = []
    for ang in (theta, theta + math.pi / 2, 0.0, math.pi / 2):
        ang %= math.pi
        if any(min(abs(ang - a), math.pi - abs(ang - a)) < 1e-3 for a in tried):
            continue
        tried.append(ang)
        d = np.array([math.cos(ang), math.sin(ang)])
        proj = xy @ d
        order = np.argsort(proj, kind="stable")
        ps, cw = proj[order], np.cumsum(w[order])
        gaps = np.flatnonzero(ps[1:] - ps[:-1] > 1e-3)  # between distinct positions
        if len(gaps) == 0:
            continue
        ew = np.abs(cw[gaps] - W * frac) / unit
        # Within a fifth of the budget of the best balance, the gap nearest the line
        # that shares the land in the same ratio, and the point in it nearest that line.
        ok = gaps[ew <= max(ew.min(), 0.2 * budget)]
        t_land = float(np.quantile(sample @ d, frac))
        lo, hi = ps[ok], ps[ok + 1]
        g = int(np.argmin(np.maximum(lo - t_land, 0) + np.maximum(t_land - hi, 0)))
        margin = min(0.25 * (hi[g] - lo[g]), 5.0)  # keep off the households
        positions = [(float(np.clip(t_land, lo[g] + margin, hi[g] - margin)),
                      abs(cw[ok[g]] - W * frac) / unit)]
        if pieces(d, positions[0][0]) > 2:
            # Other gaps within the whole budget, spread over its range.
            wide = gaps[ew <= max(ew.min(), budget)]
            for i in wide[np.unique(np.linspace(0, len(wide) - 1, 8).astype(int))]:
                positions.append(((ps[i] + ps[i + 1]) / 2, abs(cw[i] - W * frac) / unit))
        for t, e in positions:
            cut = shapely.length(shapely.intersection(
                shapely.linestrings(_line_across(geom_m.bounds, d, t)), geom_m))
            one_piece = pieces(d, t) <= 2
            (clean if one_piece and e <= budget else broken).append((cut, e, d, t))
    # Clean cuts shortest first; then the others, best balanced first (their stray
    # pieces may be small enough to hand over within the budget).
    for _, _, d, t in sorted(clean, key=lambda c: c[:2]) + sorted(
            broken, key=lambda c: (c[1], c[0]))[:3]:
        sides = _exact_cut(ctx, geom, geom_m, pts, d, t, W * frac, unit, budget)
        if sides is not None:
            return sides
    return None


def _exact_cut(ctx: _Context, geom, geom_m, pts, d, t, want, unit, budget):
    """Cut a region along the metric line p·d = t, exactly (snap-rounded, in EPSG:4326),
    hand any stray piece to the side it borders most, and return both sides with
    their points — or None if the first side then misses its share by more than
    ``budget``."""
    line = ctx.frame.to_storage(shapely.linestrings(_line_across(geom_m.bounds, d, t)))
    faces = _arrange(geom, list(line), ctx.frame.grid)
    if len(faces) < 2:
        return None
    atoms = _atoms(faces, ctx.frame)
    inner = ctx.frame.xy(shapely.get_coordinates(shapely.point_on_surface(faces)))
    labels = (inner @ d > t).astype(np.int64)
    if labels.min() == labels.max():
        return None
    pending = _orphans(atoms, labels)
    if pending.any():
        labels = _absorb(atoms, labels, pending)
    if labels.min() == labels.max():
        return None
    proj = ctx.hxy[pts] @ d - t
    if pending.any() or np.any(np.abs(proj) < 0.01):
        # Stray pieces changed side, or households sit on the cut: ask the faces.
        ctx.locate(pts, atoms)
        point_side = labels[atoms.point_atom]
    else:
        point_side = (proj > 0).astype(np.int64)
    if abs(ctx.hw[pts][point_side == 0].sum() - want) / unit > budget:
        return None
    return [(_union(faces[labels == lab]), pts[point_side == lab]) for lab in (0, 1)]


def _atom_cut(ctx: _Context, geom, pts, k, tol, target):
    """Fallback bisection on the atom graph, for a region no straight cut splits into
    two balanced pieces (a U-shaped valley, households strung along a ring)."""
    atoms = ctx.household_atoms(geom, pts, k, w_max=max(1.0, target * tol / 6))
    if atoms.n < 2:
        return None
    first = _atom_bisect(atoms, k, tol)
    if first.all() or not first.any():
        return None
    on_first = first[atoms.point_atom]
    return [(_union(atoms.faces[first]), pts[on_first]),
            (_union(atoms.faces[~first]), pts[~on_first])]


def check_balance(ctx: _Context, parent, level, children, target, tol, *, total=True) -> None:
    """Report ``parent`` in ``ctx.unmet`` when its children miss ``± tol`` of their mean
    (why: a heavy point or contiguity), or, with ``total``, when that mean misses the
    target (no count of children does better)."""
    loads = np.array([c.weight(ctx) for c in children])
    k = len(children)
    mean = loads.sum() / k
    if np.all(np.abs(loads - mean) <= tol * mean + 1e-9):
        if total and abs(mean - target) > tol * target:
            _unmet(ctx, parent, level, "total",
                   f"{int(loads.sum())} households make {k} children of "
                   f"{mean:.0f} on average, outside {target} ± {tol:.0%}; no "
                   "count of children does better")
        return
    heavy = ctx.hw[parent.pts].max() if len(parent.pts) else 0.0
    if heavy > mean * (1 + tol):
        _unmet(ctx, parent, level, "heavy point",
               f"one point holds {int(heavy)} households, above the upper bound "
               f"{mean * (1 + tol):.0f} of {k} children averaging {mean:.0f}")
    else:
        _unmet(ctx, parent, level, "contiguity",
               f"{int(loads.sum())} households could not be split into {k} "
               f"contiguous children within ±{tol:.0%} of {mean:.0f}: children "
               f"hold {int(loads.min())}–{int(loads.max())}")


def _unmet(ctx: _Context, parent: _Grid, level: int, reason: str, detail: str) -> None:
    ctx.unmet.append({"parent": parent.code, "level": level, "reason": reason,
                      "detail": detail})


def _principal_axis(xy: np.ndarray, m: np.ndarray) -> float:
    """Angle of the principal axis of points ``xy`` with masses ``m``."""
    total = m.sum()
    if total <= 0 or len(xy) < 2:
        return 0.0
    c = (m[:, None] * xy).sum(axis=0) / total
    d = xy - c
    sxx, syy = (m * d[:, 0] ** 2).sum(), (m * d[:, 1] ** 2).sum()
    sxy = (m * d[:, 0] * d[:, 1]).sum()
    return 0.5 * math.atan2(2 * sxy, sxx - syy)


def _atom_bisect(atoms: _Atoms, k: int, tol: float) -> np.ndarray:
    """Bisection of a connected atom graph for ``k // 2`` and ``k - k // 2`` children:
    a cut across the principal axis at the weighted quantile, trying other directions and
    positions until both sides are one piece; else the best cut with its stray pieces
    handed to the side they border most, then rebalanced atom by atom. Returns a mask of
    the first side."""
    n = atoms.n
    k1 = k // 2
    frac = k1 / k
    w, ar = atoms.weight, atoms.area
    W, A = w.sum(), ar.sum()
    if W <= 0:
        w, W = ar, A  # no households: share the land
    unit = W / k
    budget = 0.5 * tol * min(k1, k - k1)
    xy = np.column_stack([atoms.cx, atoms.cy])
    theta = _principal_axis(xy, 0.5 * w / W + 0.5 * ar / A)
    best, fallback = None, None
    for turn in (0.0, 0.5, 0.25, 0.75):
        ang = theta + turn * math.pi
        order = np.lexsort((np.arange(n), xy @ np.array([math.cos(ang), math.sin(ang)])))
        ew = np.abs(np.cumsum(w[order])[:-1] - W * frac) / unit
        ea = np.abs(np.cumsum(ar[order])[:-1] - A * frac) / (A / k)
        good = np.flatnonzero(ew <= max(ew.min(), 0.5 * budget))
        trials = [good[np.argmin(ea[good])], good[np.argmin(ew[good])]]
        trials += list(good[np.linspace(0, len(good) - 1, 5).astype(int)])
        for pos in dict.fromkeys(int(p) for p in trials):
            side = np.zeros(n, dtype=bool)
            side[order[: pos + 1]] = True
            if fallback is None or ew[pos] < fallback[0]:
                fallback = (ew[pos], side)
            if _connected(side, atoms.ei, atoms.ej) and _connected(~side, atoms.ei, atoms.ej):
                cut = atoms.elen[side[atoms.ei] != side[atoms.ej]].sum()
                cand = (ew[pos] > budget, cut, ew[pos], side)
                if best is None or cand[:3] < best[:3]:
                    best = cand
                break
        if best is not None and not best[0] and turn == 0.5:
            break  # the principal direction or its perpendicular cut cleanly
    if best is not None and not best[0]:
        return best[3]
    labels = np.where(fallback[1], 0, 1)
    pending = _orphans(atoms, labels)
    if pending.any():
        labels = _absorb(atoms, labels, pending)
    target = np.array([W * frac, W * (1 - frac)])
    slack = budget * unit
    labels = _rebalance(atoms, labels, w, target, target - slack, target + slack)
    side = labels == 0
    if best is not None and best[2] <= abs(w[side].sum() - W * frac) / unit:
        return best[3]
    return side


def _line_across(bounds: tuple, d: np.ndarray, t: float) -> np.ndarray:
    """End points of the line p·d = t, long enough to cross the whole of ``bounds``."""
    minx, miny, maxx, maxy = bounds
    centre = np.array([(minx + maxx) / 2, (miny + maxy) / 2])
    reach = math.hypot(maxx - minx, maxy - miny) + 1.0
    foot = centre + (t - centre @ d) * d
    e = np.array([-d[1], d[0]])
    return np.array([foot - reach * e, foot + reach * e])


def _halfplane(bounds: tuple, d: np.ndarray, t: float) -> BaseGeometry:
    """The half-plane p·d ≤ t, as a polygon covering ``bounds``."""
    a, b = _line_across(bounds, d, t)
    reach = np.linalg.norm(b - a)
    return shapely.Polygon([a, b, b - reach * d, a - reach * d])
