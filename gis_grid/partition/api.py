"""The public entry points of the partition engine: :func:`partition` cuts a territory
(or parent grids) into nested grids level by level, :func:`household_blocks` gives the
household atoms on their own, and :class:`PartitionResult` holds the grids and the report
(plans B1–B3 and C1, see ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_grid.model import STORAGE_CRS
from gis_grid.partition.balanced import split_balanced
from gis_grid.partition.context import _check_polygons, _Context, _Grid
from gis_grid.partition.finish import finish
from gis_grid.partition.frame import _Frame
from gis_grid.partition.outlets import split_outlets
from gis_grid.partition.spec import SHAPES, LevelSpec
from gis_grid.partition.tiles import split_tiles
from gis_grid.partition.units import split_units


@dataclass
class PartitionResult:
    """What :func:`partition` made.

    Attributes
    ----------
    grids
        The grids (schema ``grids``, see ``gis_grid.model``) in EPSG:4326, coarsest level
        first, each parent's children in code order.
    report
        Per run: grid count, household balance (min / max / coefficient of variation) and
        compactness (Polsby-Popper 4πA/P², metric CRS) per level, validity and coverage
        validity per level, and ``unmet``: each parent whose children could not meet the
        tolerance, with why (``heavy point``, ``contiguity`` or ``total``).
    """

    grids: gpd.GeoDataFrame
    report: dict = field(default_factory=dict)

    def to_json(self, **kwargs) -> str:
        """The report as JSON (Chinese kept readable)."""
        kwargs.setdefault("ensure_ascii", False)
        kwargs.setdefault("indent", 2)
        return json.dumps(self.report, **kwargs)

    def summary(self) -> str:
        """A short human summary of the report."""
        r = self.report
        who = r.get("institution") or "government grid"
        lines = [f"partition for {who}: {len(self.grids)} grids, "
                 f"{r.get('households_total', 0):,} households, "
                 f"{r.get('seconds', 0):.1f} s (metric CRS {r.get('metric_crs')})"]
        for lv in r.get("levels", []):
            b, c = lv["households"], lv["compactness"]
            ok = "valid" if lv["coverage_valid"] and lv["valid"] and lv["polygons"] else \
                "INVALID"
            lines.append(
                f"  level {lv['level']} {lv['method']:<8} {lv['grids']:>6} grids  "
                f"households {b['min']}–{b['max']} (CV {b['cv']:.2f})  "
                f"compactness min {c['min']:.2f} mean {c['mean']:.2f}  coverage {ok}")
        unmet = r.get("unmet", [])
        if unmet:
            by_reason: dict[str, int] = {}
            for u in unmet:
                by_reason[u["reason"]] = by_reason.get(u["reason"], 0) + 1
            lines.append(f"  {len(unmet)} parents could not meet the tolerance: "
                         + ", ".join(f"{n} {why}" for why, n in sorted(by_reason.items())))
            for u in unmet[:5]:
                lines.append(f"    {u['parent']} (level {u['level']}): {u['detail']}")
            if len(unmet) > 5:
                lines.append(f"    … and {len(unmet) - 5} more (see the report)")
        notes = r.get("notes", [])
        for note in notes[:5]:
            lines.append(f"  note: {note}")
        if len(notes) > 5:
            lines.append(f"  … and {len(notes) - 5} more notes")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def partition(
    territory_or_parents: gpd.GeoDataFrame,
    households: gpd.GeoDataFrame | None = None,
    *,
    levels: Sequence[LevelSpec | str],
    institution: str | None = None,
    units: gpd.GeoDataFrame | None = None,
    townships: gpd.GeoDataFrame | None = None,
    outlets: gpd.GeoDataFrame | None = None,
    target_households: int = 300,
    tolerance: float = 0.2,
    cell_size: float = 1000.0,
    min_area: float | None = None,
    shape: str = "square",
    seed: int = 0,
) -> PartitionResult:
    """Cut a territory (or parent grids) into nested grids, one level per ``levels`` entry.

    Parameters
    ----------
    territory_or_parents
        Polygons to cut, any CRS. A territory (rows with a ``code`` such as ``420527``;
        each part of a multipolygon is cut on its own) gives grids from level 1; parent
        grids (``code`` and a numeric ``level`` of 1 or 2) give grids from the level below.
    households
        Household points (住户) with a ``count`` (default 1 each). Needed by ``balanced``
        and by capacity-balanced ``outlets``; they fill every grid's ``households``.
    levels
        One :class:`LevelSpec` (or method name) per level, coarsest first; at most 3
        levels in all.
    institution
        The owning institution written on every grid, also the one whose outlets are used;
        None for the government grid (outlets of every institution).
    units, townships
        Villages / communities and townships, for ``units`` levels and for each grid's
        ``kind`` (urban / rural) and ``zone`` (those of the unit holding most of its
        households).
    outlets
        Outlet points with ``id``, ``tier`` (and ``institution``, ``status``), for
        ``outlets`` levels; a grid that no ``outlets`` level gave an outlet gets the
        nearest serving outlet of its level's tiers.
    target_households, tolerance
        ``balanced``: a parent of H households gets the number k of children whose mean
        H / k is nearest ``target_households`` (C1: 300), each within ``± tolerance``
        (0.2 = ±20 %) of that mean; a parent with fewer than
        ``target_households * (1 - tolerance)`` households stays one grid.
    cell_size, shape, min_area
        ``tiles``: side of a square in metres (a hexagon has the same area); pieces of
        tiles below ``min_area`` m² (default a tenth of a tile) merge into the neighbour
        sharing the longest border.
    seed
        Offsets the lattice of the atoms that capacity-balanced ``outlets`` (and the
        fallback of ``balanced``) cut along. The result is a function of the inputs and
        the seed only.

    Returns
    -------
    PartitionResult
        ``.grids`` (schema ``grids``, EPSG:4326) and ``.report``.

    Examples
    --------
    >>> import geopandas as gpd, numpy as np, shapely
    >>> land = gpd.GeoDataFrame({"code": ["420527"]}, crs="EPSG:4326",
    ...                         geometry=[shapely.box(110.70, 30.90, 110.72, 30.91)])
    >>> xy = np.random.default_rng(0).uniform((110.70, 30.90), (110.72, 30.91), (600, 2))
    >>> homes = gpd.GeoDataFrame(geometry=gpd.points_from_xy(*xy.T), crs="EPSG:4326")
    >>> r = partition(land, homes, levels=["balanced"])
    >>> r.grids[["code", "households"]].values.tolist()  # west first, each within 2 %
    [['420527-001', 294], ['420527-002', 306]]
    """
    started = time.perf_counter()
    specs = [s if isinstance(s, LevelSpec) else LevelSpec(s) for s in levels]
    if not specs:
        raise ValueError("partition: levels is empty; give at least one LevelSpec")
    if not 0 < tolerance < 1:
        raise ValueError("partition: tolerance must be between 0 and 1 (0.2 = ±20 %)")
    if target_households < 1:
        raise ValueError("partition: target_households must be at least 1")
    if shape not in SHAPES:
        raise ValueError(f"partition: shape {shape!r} is not one of {SHAPES}")
    if not cell_size > 0:
        raise ValueError("partition: cell_size must be positive (metres)")
    roots = _check_polygons(territory_or_parents, "territory_or_parents")
    start_level = _start_level(roots)
    if start_level + len(specs) - 1 > 3:
        raise ValueError(f"partition: {len(specs)} levels from level {start_level} go past "
                         f"level 3 (grids have three nested levels)")
    if households is None and any(
            s.method == "balanced" or (s.method == "outlets" and s.capacity) for s in specs):
        raise ValueError("partition: balanced levels need the households layer")
    if outlets is None and any(s.method == "outlets" for s in specs):
        raise ValueError("partition: outlets levels need the outlets layer")

    ctx = _Context(frame=_Frame(roots), seed=seed, target=target_households,
                   tolerance=tolerance, cell_size=cell_size, shape=shape, min_area=min_area,
                   institution=institution)
    ctx.load_households(households)
    ctx.load_units(units, townships)
    ctx.load_outlets(outlets, institution)

    grids_by_level: list[list[_Grid]] = []
    parents = ctx.top_parents(roots, start_level)
    for offset, spec in enumerate(specs):
        level = start_level + offset
        numbering: dict[str, int] = {}
        children = [c for p in parents for c in _split(ctx, p, spec, level, numbering)]
        grids_by_level.append(children)
        parents = children

    grids, report = finish(ctx, grids_by_level, specs, start_level)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return PartitionResult(grids, report)


def household_blocks(
    territory: gpd.GeoDataFrame,
    households: gpd.GeoDataFrame,
    *,
    households_per_block: int = 30,
    seed: int = 0,
) -> gpd.GeoDataFrame:
    """Small blocks that tile the territory, each holding at most about
    ``households_per_block`` households: Voronoi cells of household clusters (and of a
    lattice over empty land) cut out of each part of the territory — the atoms the engine
    falls back on. Useful to compare with regionalization tools that group polygons
    (PySAL ``spopt``).

    Returns
    -------
    GeoDataFrame
        ``block`` (0..n-1), ``households`` and the polygon, in EPSG:4326: a valid coverage
        of the territory.

    Examples
    --------
    >>> import geopandas as gpd, numpy as np, shapely
    >>> land = gpd.GeoDataFrame(geometry=[shapely.box(110.70, 30.90, 110.72, 30.91)],
    ...                         crs="EPSG:4326")
    >>> xy = np.random.default_rng(0).uniform((110.70, 30.90), (110.72, 30.91), (600, 2))
    >>> homes = gpd.GeoDataFrame(geometry=gpd.points_from_xy(*xy.T), crs="EPSG:4326")
    >>> int(household_blocks(land, homes)["households"].sum())
    600
    """
    roots = _check_polygons(territory, "territory")
    ctx = _Context(frame=_Frame(roots), seed=seed, target=households_per_block * 10,
                   tolerance=0.3, cell_size=1000.0, shape="square", min_area=None,
                   institution=None)
    ctx.load_households(households)
    faces, weights = [], []
    for parent in ctx.top_parents(roots, 1):
        k = max(1, round(parent.weight(ctx) / (households_per_block * 10)))
        atoms = ctx.household_atoms(parent.geom, parent.pts, k, households_per_block)
        faces.append(atoms.faces)
        weights.append(atoms.weight)
    geoms = np.concatenate(faces)
    return gpd.GeoDataFrame(
        {"block": np.arange(len(geoms)), "households": np.concatenate(weights).astype(int)},
        geometry=geoms, crs=STORAGE_CRS)


def _start_level(roots: gpd.GeoDataFrame) -> int:
    """Level of the first grids made: 1 under a territory, one below given parent grids."""
    if "level" not in roots.columns:
        return 1
    levels = pd.to_numeric(roots["level"], errors="coerce")  # a territory's is "county"
    if levels.notna().all() and levels.between(1, 2).all():
        return int(levels.max()) + 1
    return 1


def _split(ctx: _Context, parent: _Grid, spec: LevelSpec, level: int,
           numbering: dict[str, int]) -> list[_Grid]:
    """Cut one parent into its children at ``level`` by the method of ``spec``; the
    children get their level, parent code, the parent's outlet, kind and zone where they
    have none, and codes (``numbering`` carries the count on across a parent's parts)."""
    if spec.method == "units":
        source = spec.source or ("townships" if level == 1 and "townships" in ctx.layers
                                 else "units")
        children = split_units(ctx, parent, source, level)
    elif spec.method == "balanced":
        children = split_balanced(ctx, parent, spec, level)
    elif spec.method == "tiles":
        children = split_tiles(ctx, parent, spec)
    else:
        children = split_outlets(ctx, parent, spec, level)
    for child in children:
        child.level, child.method = level, spec.method
        child.parent = parent.code if parent.level >= 1 else None
        if child.outlet is None:
            child.outlet = parent.outlet
        if child.unit is None and child.kind is None:
            child.kind, child.zone = parent.kind, parent.zone
    # Generated children ("#") are numbered on from earlier parts of a multipart
    # territory, so codes stay unique under one root.
    generated = [c for c in children if c.code == "#"]
    if generated:
        start = numbering.get(parent.code, 0)
        width = max(3, len(str(start + len(generated))))
        for n_c, child in enumerate(generated, start=start + 1):
            child.code = f"{parent.code}-{n_c:0{width}d}"
        numbering[parent.code] = start + len(generated)
    parent.children = children
    return children
