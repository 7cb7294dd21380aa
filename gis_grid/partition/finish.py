"""The end of a run: the finest grids made one edge-matched coverage, coarser grids rebuilt
as the unions of their children, each grid's households, kind, zone and outlet, and the
report (see ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry

from gis_grid.model import KINDS, STORAGE_CRS, ZONES
from gis_grid.partition.atoms import _absorb, _atoms, _union
from gis_grid.partition.context import _Context, _Grid
from gis_grid.partition.frame import _Frame
from gis_grid.partition.points import _first_hits, _pip
from gis_grid.partition.spec import DEFAULT_TIERS, LevelSpec


def finish(ctx: _Context, grids_by_level: list[list[_Grid]], specs: list[LevelSpec],
           start_level: int) -> tuple[gpd.GeoDataFrame, dict]:
    """The grids of every level as one frame (schema ``grids``) and the run's report: the
    finest level made one coverage, each coarser grid the union of its children."""
    finest = grids_by_level[-1]
    for g, geom in zip(finest, _assemble([g.geom for g in finest], ctx.frame),
                       strict=True):
        g.geom = geom
    gone = {id(g) for g in finest if g.geom is None}
    if gone:
        ctx.notes.append(f"{len(gone)} grids thinner than the snap grid were merged "
                         "into their neighbours")
        grids_by_level[-1] = [g for g in finest if id(g) not in gone]
        for g in grids_by_level[-2] if len(grids_by_level) > 1 else []:
            g.children = [c for c in g.children if id(c) not in gone]
    # Coarser levels are the unions of their children: nesting is exact.
    for level_grids in reversed(grids_by_level[:-1]):
        for g in level_grids:
            g.geom = _union(np.array([c.geom for c in g.children], dtype=object))
    grids = [g for level in grids_by_level for g in level]
    geoms = np.array([g.geom for g in grids], dtype=object)
    households = _count_households(ctx, geoms, grids)
    kinds, zones = _kinds(ctx, grids)
    frame = gpd.GeoDataFrame({
        "code": [g.code for g in grids],
        "level": np.array([g.level for g in grids], dtype=np.int64),
        "parent": [g.parent for g in grids],
        "kind": kinds,
        "zone": zones,
        "institution": [ctx.institution] * len(grids),
        "outlet": _outlets(ctx, grids, specs, start_level),
        "manager": [None] * len(grids),
        "worker": [None] * len(grids),
        "households": households.astype(np.int64),
        "source": ["derived"] * len(grids),
    }, geometry=geoms, crs=STORAGE_CRS)
    return frame, _report(ctx, frame, specs, start_level)


def _count_households(ctx: _Context, geoms: np.ndarray, grids: list[_Grid]) -> np.ndarray:
    """Households per grid: point-in-polygon on the finest level (a point on a shared
    border counts once, in the first grid), summed up the tree."""
    out = np.zeros(len(grids))
    levels = np.array([g.level for g in grids])
    finest = np.flatnonzero(levels == levels.max())
    ctx.point_grid = np.full(len(ctx.hw), -1)
    if len(ctx.hw) == 0:
        return out
    hit = _pip(geoms[finest], ctx.hlonlat, ctx.hpoints)
    inside = hit >= 0
    ctx.point_grid[inside] = finest[hit[inside]]
    out[finest] = np.bincount(hit[inside], ctx.hw[inside], minlength=len(finest))
    index = {id(g): i for i, g in enumerate(grids)}
    for i in sorted(range(len(grids)), key=lambda i: -levels[i]):
        if grids[i].children:
            out[i] = sum(out[index[id(c)]] for c in grids[i].children)
    return out


def _kinds(ctx: _Context, grids: list[_Grid]) -> tuple[list[str], list[str | None]]:
    """Kind (urban / rural) and zone of each grid: its own unit's for a grid that is a
    village or community, else those of the unit holding most of its households (or
    its centre), else the parent's; rural by default."""
    n = len(grids)
    dominant = np.full(n, -1)
    units = ctx.layers.get("units")
    if units is not None:
        index = {id(g): i for i, g in enumerate(grids)}
        parent_of = np.full(n, -1)
        for i, g in enumerate(grids):
            for c in g.children:
                parent_of[index[id(c)]] = i
        have = (ctx.point_grid >= 0) & (ctx.hunit >= 0)
        if have.any():
            # Each household counts for its finest grid and every ancestor of it.
            g_of, u_of, w_of = ctx.point_grid[have], ctx.hunit[have], ctx.hw[have]
            rows, cols, ws = [], [], []
            while (g_of >= 0).any():
                ok = g_of >= 0
                rows.append(g_of[ok])
                cols.append(u_of[ok])
                ws.append(w_of[ok])
                g_of = np.where(ok, parent_of[np.maximum(g_of, 0)], -1)
            tot = (pd.DataFrame({"g": np.concatenate(rows), "u": np.concatenate(cols),
                                 "w": np.concatenate(ws)})
                   .groupby(["g", "u"], sort=True)["w"].sum().reset_index()
                   .sort_values(["g", "w", "u"], ascending=[True, False, True])
                   .drop_duplicates("g"))
            dominant[tot["g"].to_numpy()] = tot["u"].to_numpy()
        empty = np.flatnonzero(dominant < 0)
        if len(empty):
            inner = shapely.point_on_surface([grids[i].geom for i in empty])
            mi, ui = ctx.trees["units"].query(inner, predicate="within")
            hits = _first_hits(mi, ui, len(empty))
            dominant[empty[hits >= 0]] = hits[hits >= 0]
    ukind = units["kind"].to_numpy() if units is not None and "kind" in units else None
    uzone = units["zone"].to_numpy() if units is not None and "zone" in units else None
    kinds: list[str] = []
    zones: list[str | None] = []
    for i, g in enumerate(grids):
        row = g.unit if g.unit is not None else (
            int(dominant[i]) if dominant[i] >= 0 else None)
        kind = ukind[row] if ukind is not None and row is not None else g.kind
        zone = uzone[row] if uzone is not None and row is not None else g.zone
        kinds.append(kind if kind in KINDS else "rural")
        zones.append(zone if zone in ZONES else None)
    return kinds, zones


def _outlets(ctx: _Context, grids: list[_Grid], specs: list[LevelSpec], start_level: int
             ) -> list[str | None]:
    """The outlet of each grid: its service area's (``outlets`` levels, inherited
    below), else the nearest serving outlet of its level's tiers."""
    out: list[str | None] = [g.outlet for g in grids]
    if ctx.outlets is None or len(ctx.outlets) == 0:
        return out
    for offset, spec in enumerate(specs):
        level = start_level + offset
        idx = [i for i, g in enumerate(grids) if g.level == level and out[i] is None]
        if not idx:
            continue
        tiers = spec.tiers or DEFAULT_TIERS.get(level, DEFAULT_TIERS[3])
        sel = np.flatnonzero(np.isin(ctx.otier, tiers))
        if len(sel) == 0:
            sel = np.arange(len(ctx.oids))
        inner = ctx.frame.xy(shapely.get_coordinates(
            shapely.point_on_surface([grids[i].geom for i in idx])))
        nearest = cKDTree(ctx.oxy[sel]).query(inner)[1]
        for i, o in zip(idx, nearest, strict=True):
            out[i] = str(ctx.oids[sel[o]])
    return out


def _report(ctx: _Context, frame: gpd.GeoDataFrame, specs: list[LevelSpec],
            start_level: int) -> dict:
    metric = ctx.frame.to_metric(frame.geometry.values)
    area, perim = shapely.area(metric), shapely.length(metric)
    pp = 4 * math.pi * area / np.maximum(perim, 1e-12) ** 2
    levels = []
    for offset, spec in enumerate(specs):
        level = start_level + offset
        sel = (frame["level"] == level).to_numpy()
        h = frame["households"].to_numpy()[sel].astype(float)
        geoms = frame.geometry.values[sel]
        mean = float(h.mean()) if len(h) else 0.0
        levels.append({
            "level": level,
            "method": spec.method,
            "grids": int(sel.sum()),
            "households": {"min": int(h.min()) if len(h) else 0,
                           "max": int(h.max()) if len(h) else 0,
                           "mean": round(mean, 1),
                           "cv": round(float(h.std() / mean), 4) if mean > 0 else 0.0},
            "compactness": {"min": round(float(pp[sel].min()), 4),
                            "mean": round(float(pp[sel].mean()), 4)},
            "area_km2": {"min": round(float(area[sel].min() / 1e6), 4),
                         "max": round(float(area[sel].max() / 1e6), 4)},
            "valid": bool(shapely.is_valid(geoms).all()),
            "polygons": bool((shapely.get_type_id(geoms) == 3).all()),
            "coverage_valid": bool(shapely.coverage_is_valid(geoms)),
            "unmet": sum(1 for u in ctx.unmet if u["level"] == level),
        })
    return {
        "institution": ctx.institution,
        "metric_crs": f"EPSG:{ctx.frame.crs.to_epsg()}",
        "target_households": ctx.target,
        "tolerance": ctx.tolerance,
        "households_total": int(ctx.hw.sum()),
        "households_outside": ctx.outside,
        "levels": levels,
        "unmet": ctx.unmet,
        "notes": ctx.notes,
    }


def _assemble(geoms: Sequence[BaseGeometry], frame: _Frame) -> list[BaseGeometry | None]:
    """Make the finest grids one edge-matched coverage.

    Each parent was cut on its own, so a node a cut made on one side of a parent's border
    is missing on the other side, and two neighbours may each have bent a long shared
    edge through their own nodes, a snap step or so apart. GEOS's coverage cleaner nodes
    all grids together with a snapping noder (a vertex within ``10 × grid`` of a segment
    becomes a node of it; nothing else moves) and merges what is left between grids into
    the neighbour of longest border. A grid left in several parts keeps its largest, the
    others join the neighbour they border most; a grid left with nothing (a sliver) is
    None, for the caller to drop."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 1:
        return list(geoms)
    snap = 10 * frame.grid
    out = shapely.coverage_clean(geoms, gap_width=snap, snapping_distance=snap)
    multi = np.flatnonzero(shapely.get_type_id(out) == 6)
    if len(multi):
        out = _single_parts(out, multi, frame)
    return [None if g is None or g.is_empty else g for g in out]


def _single_parts(geoms: np.ndarray, multi: np.ndarray, frame: _Frame) -> np.ndarray:
    """Give the minor parts of multipart grids to the neighbour of longest border."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    atoms = _atoms(parts, frame)
    label = owner.copy()
    pending = np.zeros(len(parts), dtype=bool)
    for g in multi:
        idx = np.flatnonzero(owner == g)
        pending[idx[idx != idx[np.argmax(atoms.area[idx])]]] = True
    label = _absorb(atoms, label, pending)
    out = geoms.copy()
    for g in np.unique(np.concatenate([multi, label[pending]])):
        out[g] = _union(parts[label == g])
    return out
