"""Partition a territory into nested financial service grids (金融服务网格, 井田制).

``partition`` cuts a territory (辖区) — or a layer of existing parent grids — into grids at
up to three nested levels for one institution (or the government grid when none is named),
following plans B1–B3 and C1 (DESIGN.md §1): no gap, no overlap, small grids inside big
grids, each grid one connected polygon whose code starts with its parent's code. Each
level is made by one method, and any method can make any level:

``units``
    grids follow administrative units: townships (乡镇/街道) or villages / communities
    (村/社区). A big urban grid is a community, a big rural grid a village (B1).
``balanced``
    each parent is split into contiguous, compact children of about ``target_households``
    households (C1: about 300) within ``± tolerance``.
``tiles``
    a regular well-field tiling of squares or hexagons of ``cell_size`` metres.
``outlets``
    service areas centred on outlets (物理网点) of the level's tiers (B3), optionally
    balanced by households.

How the geometry stays exact
----------------------------
Topology is built in the storage CRS (EPSG:4326), where the input edges are straight and
where the grids are stored; the territory's metric CRS (``gis_grid.crs.metric_crs``) is
used to decide (where to cut, what is nearest) and to measure. A parent is never replaced
by independently made children: it is cut by noding its own outline together with the
cutting lines — snap-rounded to a grid of 10^-12 degree (about 0.1 µm), so every
vertex lying on a line becomes a node of it — and polygonizing, which gives *atoms* that
tile the parent exactly. A method only labels atoms; a child is the coverage union of its
atoms, so siblings share their edges vertex for vertex. Cutting lines made in the metric
CRS are densified before they are carried into EPSG:4326, so a straight cut stays straight
on the ground. When every level is cut, the finest grids are noded once more all
together, with GEOS's coverage cleaner and a snapping distance of 10^-11 degree (a node a
cut made on one side of a parent's border is then on the other side too), and every
coarser grid is rebuilt as the union of its children: each level is a valid coverage
(``shapely.coverage_is_valid``) and each child lies exactly inside its parent.

Areas are measured in the metric CRS. A polygon stored in EPSG:4326 has edges straight in
longitude / latitude; projected vertex by vertex, a kilometre-long edge becomes a chord a
centimetre or so off the projected line. Where a child's node sits on such an edge of the
territory, comparing the two projected vertex by vertex shows centimetre slivers that are
not in the data; densify in EPSG:4326 (``shapely.segmentize``) before projecting to
measure what is stored.

Example
-------
>>> from layers.sample import build_sample
>>> from gis_grid.partition import LevelSpec, partition
>>> s = build_sample("420527", households=20_000)
>>> result = partition(s["territory"], s["households"], units=s["units"],
...                    townships=s["townships"],
...                    levels=[LevelSpec("units", source="townships"),
...                            LevelSpec("units", source="units"), LevelSpec("balanced")])
>>> sorted(result.grids["level"].unique().tolist())
[1, 2, 3]
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry

from gis_grid.crs import metric_crs, transformer
from gis_grid.errors import InputError, Problem
from gis_grid.model import KINDS, OUTLET_TIERS, STORAGE_CRS, ZONES

__all__ = [
    "DEFAULT_TIERS",
    "LevelSpec",
    "PartitionResult",
    "household_blocks",
    "partition",
]

METHODS = ("units", "balanced", "tiles", "outlets")
SHAPES = ("square", "hexagon")

#: Outlet tiers (B3) whose service areas make each level of the ``outlets`` method: tier-1
#: and tier-2 sub-branches (一级/二级支行) the big grids, tier-2 sub-branches and offices
#: (分理处) the middle ones, assisted-service points (助农点) the small ones.
DEFAULT_TIERS: dict[int, tuple[str, ...]] = {
    1: ("一级支行", "二级支行"),
    2: ("二级支行", "分理处"),
    3: ("助农点",),
}

#: Outlet statuses that serve a grid; closed (停业) and planned (筹建) outlets do not.
_SERVING = ("营业",)

#: Snap grid of the topology, in degrees (about 0.1 µm): coarse enough that every noding is
#: exact and repeatable (snap-rounding), fine enough to move no vertex measurably.
_GRID_DEG = 1e-12


# ----------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class LevelSpec:
    """How one level of grids is cut out of its parents.

    Parameters
    ----------
    method
        ``"units"``, ``"balanced"``, ``"tiles"`` or ``"outlets"`` (see the module doc).
    source
        For ``units``: the layer whose polygons become the grids, ``"townships"`` or
        ``"units"``. Default: townships at level 1 when given, else units.
    target_households, tolerance
        For ``balanced`` (and ``outlets`` with ``capacity``): override the defaults of
        :func:`partition` for this level.
    cell_size, shape, min_area
        For ``tiles``: override the defaults of :func:`partition` for this level.
    tiers
        For ``outlets``: the outlet tiers whose service areas make this level; default
        ``DEFAULT_TIERS[level]``.
    capacity
        For ``outlets``: balance the service areas by households — boundary pieces move
        from over-full to under-full neighbouring areas.

    Examples
    --------
    >>> LevelSpec("balanced", target_households=250).method
    'balanced'
    """

    method: str
    source: str | None = None
    target_households: int | None = None
    tolerance: float | None = None
    cell_size: float | None = None
    shape: str | None = None
    min_area: float | None = None
    tiers: tuple[str, ...] | None = None
    capacity: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"LevelSpec: method {self.method!r} is not one of {METHODS}")
        if self.source not in (None, "townships", "units"):
            raise ValueError(f"LevelSpec: source {self.source!r} is not townships or units")
        if self.shape not in (None, *SHAPES):
            raise ValueError(f"LevelSpec: shape {self.shape!r} is not one of {SHAPES}")
        if self.target_households is not None and self.target_households < 1:
            raise ValueError("LevelSpec: target_households must be at least 1")
        if self.tolerance is not None and not 0 < self.tolerance < 1:
            raise ValueError("LevelSpec: tolerance must be between 0 and 1 (0.2 = ±20 %)")
        if self.cell_size is not None and not self.cell_size > 0:
            raise ValueError("LevelSpec: cell_size must be positive (metres)")
        if self.min_area is not None and self.min_area < 0:
            raise ValueError("LevelSpec: min_area must not be negative (m²)")
        if self.tiers is not None:
            if isinstance(self.tiers, str):
                object.__setattr__(self, "tiers", (self.tiers,))
            unknown = sorted(set(self.tiers) - set(OUTLET_TIERS))
            if unknown:
                raise ValueError(f"LevelSpec: unknown outlet tiers {unknown}; "
                                 f"known: {OUTLET_TIERS}")
            object.__setattr__(self, "tiers", tuple(self.tiers))


@dataclass
class PartitionResult:
    """What :func:`partition` made.

    Attributes
    ----------
    grids
        The grids (schema ``grids``, DESIGN.md §3) in EPSG:4326, coarsest level first,
        each parent's children in code order.
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
        children = [c for p in parents for c in ctx.split(p, spec, level, numbering)]
        grids_by_level.append(children)
        parents = children

    grids, report = ctx.finish(grids_by_level, specs, start_level)
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


# ----------------------------------------------------------------------------- input checks


def _check_polygons(frame: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    if not isinstance(frame, gpd.GeoDataFrame):
        raise TypeError(f"partition: {name} must be a GeoDataFrame, got {type(frame).__name__}")
    problems: list[Problem] = []
    if frame.crs is None:
        problems.append(Problem(name, None, None, "has no CRS; set it (e.g. EPSG:4326)"))
    if len(frame) == 0:
        problems.append(Problem(name, None, None, "is empty; there is nothing to cut"))
    geoms = frame.geometry.values
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))  # Polygon, MultiPolygon
    for i in np.flatnonzero(~polygonal)[:20]:
        problems.append(Problem(name, f"feature {i + 1}", "geometry",
                                "is not a polygon or multipolygon"))
    for i in np.flatnonzero(polygonal & ~shapely.is_valid(geoms))[:20]:
        problems.append(Problem(name, f"feature {i + 1}", "geometry",
                                f"is invalid ({shapely.is_valid_reason(geoms[i])}); repair "
                                "it first (gis_grid.topology)"))
    if problems:
        raise InputError(problems, source=name)
    return frame if frame.crs.equals(STORAGE_CRS) else frame.to_crs(STORAGE_CRS)


def _check_points(frame: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    if not isinstance(frame, gpd.GeoDataFrame):
        raise TypeError(f"partition: {name} must be a GeoDataFrame, got {type(frame).__name__}")
    if frame.crs is None:
        raise InputError([Problem(name, None, None, "has no CRS; set it (e.g. EPSG:4326)")],
                         source=name)
    types = shapely.get_type_id(frame.geometry.values)
    bad = np.flatnonzero((types != 0) & (types != -1))
    if len(bad):
        raise InputError([Problem(name, f"feature {i + 1}", "geometry", "is not a point")
                          for i in bad[:20]], source=name)
    frame = frame[(types == 0) & ~shapely.is_empty(frame.geometry.values)]
    return frame if frame.crs.equals(STORAGE_CRS) else frame.to_crs(STORAGE_CRS)


def _start_level(roots: gpd.GeoDataFrame) -> int:
    """Level of the first grids made: 1 under a territory, one below given parent grids."""
    if "level" not in roots.columns:
        return 1
    levels = pd.to_numeric(roots["level"], errors="coerce")  # a territory's is "county"
    if levels.notna().all() and levels.between(1, 2).all():
        return int(levels.max()) + 1
    return 1


# ----------------------------------------------------------------------------- the frame


class _Frame:
    """The two coordinate systems of a run: EPSG:4326 for topology, the territory's
    metric CRS (coordinates less a rounded origin) for decisions and measures."""

    def __init__(self, roots: gpd.GeoDataFrame):
        self.crs = metric_crs(roots)
        self._fwd = transformer(STORAGE_CRS, self.crs)
        self._inv = transformer(self.crs, STORAGE_CRS)
        minx, miny, maxx, maxy = roots.total_bounds
        lon0, lat0 = (minx + maxx) / 2, (miny + maxy) / 2
        x0, y0 = self._fwd.transform(lon0, lat0)
        # A rounded origin keeps metric coordinates small without moving with the data.
        self.origin = (round(float(x0), -3), round(float(y0), -3))
        self.grid = _GRID_DEG
        # Metres per degree near the centre: quick, local measures of atoms (areas,
        # border lengths) for choices between neighbours; reports use the metric CRS.
        self.kx = 111_320.0 * math.cos(math.radians(lat0))
        self.ky = 110_574.0

    def xy(self, lonlat: np.ndarray) -> np.ndarray:
        lonlat = np.asarray(lonlat, dtype=float).reshape(-1, 2)
        x, y = self._fwd.transform(lonlat[:, 0], lonlat[:, 1])
        return np.column_stack([np.asarray(x) - self.origin[0], np.asarray(y) - self.origin[1]])

    def lonlat(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        lon, lat = self._inv.transform(xy[:, 0] + self.origin[0], xy[:, 1] + self.origin[1])
        return np.column_stack([lon, lat])

    def to_metric(self, geoms) -> np.ndarray:
        """EPSG:4326 geometries in local metric coordinates (to decide and measure)."""
        return _transform_unique(np.atleast_1d(np.asarray(geoms, dtype=object)), self.xy)

    def to_storage(self, geoms, step: float = 100.0) -> np.ndarray:
        """Metric lines carried into EPSG:4326, densified every ``step`` metres so that a
        line straight on the ground stays within a millimetre of straight."""
        geoms = shapely.segmentize(np.atleast_1d(np.asarray(geoms, dtype=object)), step)
        return _transform_unique(geoms, self.lonlat)


def _transform_unique(geoms: np.ndarray, fn) -> np.ndarray:
    """``geoms`` with ``fn`` applied to the distinct vertices, once each: vertices shared by
    neighbours stay identical."""
    coords = shapely.get_coordinates(geoms)
    if len(coords) == 0:
        return geoms.copy()
    uniq, inverse = np.unique(coords, axis=0, return_inverse=True)
    moved = np.asarray(fn(uniq))[inverse.ravel()]
    return shapely.set_coordinates(shapely.transform(geoms, lambda c: c), moved)


# ----------------------------------------------------------------------------- atoms


@dataclass
class _Atoms:
    """Polygons (EPSG:4326) that tile one region exactly, with local metric measures and
    their adjacency: ``ei, ej, elen`` are the pairs of atoms sharing a border (i < j) and
    its length in metres. A shared corner is no adjacency, so a connected set of atoms
    unites to one Polygon."""

    faces: np.ndarray
    area: np.ndarray
    perimeter: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    ei: np.ndarray
    ej: np.ndarray
    elen: np.ndarray
    weight: np.ndarray | None = None  # households per atom
    point_atom: np.ndarray | None = None  # atom of each point of the region

    @property
    def n(self) -> int:
        return len(self.faces)

    def subset(self, idx: np.ndarray) -> _Atoms:
        """The atoms ``idx`` (renumbered 0..len-1) with the adjacency among them."""
        local = np.full(self.n, -1)
        local[idx] = np.arange(len(idx))
        inside = (local[self.ei] >= 0) & (local[self.ej] >= 0)
        return _Atoms(self.faces[idx], self.area[idx], self.perimeter[idx], self.cx[idx],
                      self.cy[idx], local[self.ei[inside]], local[self.ej[inside]],
                      self.elen[inside],
                      None if self.weight is None else self.weight[idx])


def _arrange(region: BaseGeometry, lines: Sequence[BaseGeometry], grid: float) -> np.ndarray:
    """The faces of ``region`` cut by ``lines``: one snap-rounded noding of its outline
    and the lines, polygonized, keeping the faces inside the region."""
    edges = shapely.union_all(
        np.array([shapely.boundary(region), *lines], dtype=object), grid_size=grid)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(edges)))
    if len(faces) == 0:
        return np.array([region], dtype=object)
    xy = shapely.get_coordinates(shapely.point_on_surface(faces))
    shapely.prepare(region)
    return faces[shapely.contains_xy(region, xy[:, 0], xy[:, 1])]


def _atoms(faces: np.ndarray, frame: _Frame) -> _Atoms:
    """Measures and adjacency of faces that share their edges exactly (faces of one noded
    arrangement): each segment is keyed by its snapped end points, and a key met twice
    is a border between two faces."""
    n = len(faces)
    rings, ring_face = shapely.get_rings(faces, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[1:] == ring_of[:-1]
    a, b = coords[:-1][same], coords[1:][same]
    seg_face = ring_face[ring_of[:-1][same]]
    seg_len = np.hypot((b[:, 0] - a[:, 0]) * frame.kx, (b[:, 1] - a[:, 1]) * frame.ky)
    perimeter = np.bincount(seg_face, seg_len, minlength=n)
    qa = np.rint(a / frame.grid).astype(np.int64)
    qb = np.rint(b / frame.grid).astype(np.int64)
    swap = (qa[:, 0] > qb[:, 0]) | ((qa[:, 0] == qb[:, 0]) & (qa[:, 1] > qb[:, 1]))
    lo = np.where(swap[:, None], qb, qa)
    hi = np.where(swap[:, None], qa, qb)
    order = np.lexsort((hi[:, 1], hi[:, 0], lo[:, 1], lo[:, 0]))
    key = np.column_stack([lo, hi])[order]
    dup = np.all(key[1:] == key[:-1], axis=1)
    first, second = order[:-1][dup], order[1:][dup]
    fi, fj = seg_face[first], seg_face[second]
    ok = fi != fj
    fi, fj, ln = fi[ok], fj[ok], seg_len[first][ok]
    if len(fi):
        pair = np.minimum(fi, fj) * n + np.maximum(fi, fj)
        upair, inv = np.unique(pair, return_inverse=True)
        elen = np.bincount(inv.ravel(), ln)
        ei, ej = upair // n, upair % n
    else:
        ei = ej = np.zeros(0, dtype=np.int64)
        elen = np.zeros(0)
    centre = frame.xy(shapely.get_coordinates(shapely.centroid(faces)))
    return _Atoms(faces=faces, area=shapely.area(faces) * frame.kx * frame.ky,
                  perimeter=perimeter, cx=centre[:, 0], cy=centre[:, 1],
                  ei=ei.astype(np.int64), ej=ej.astype(np.int64), elen=elen)


def _components(n: int, ei: np.ndarray, ej: np.ndarray, keep: np.ndarray) -> np.ndarray:
    g = sparse.coo_matrix((np.ones(int(keep.sum())), (ei[keep], ej[keep])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _orphans(atoms: _Atoms, labels: np.ndarray, anchors: dict[int, int] | None = None
             ) -> np.ndarray:
    """Atoms cut off from their label's main piece — the piece holding the label's anchor
    atom if given, else its largest piece. Unlabelled atoms (-1) are orphans too."""
    n = atoms.n
    comp = _components(n, atoms.ei, atoms.ej, labels[atoms.ei] == labels[atoms.ej])
    ncomp = comp.max() + 1 if n else 0
    comp_area = np.bincount(comp, atoms.area, minlength=ncomp)
    comp_label = np.full(ncomp, -1)
    comp_label[comp] = labels
    order = np.lexsort((-comp_area, comp_label))  # largest piece first within each label
    first = np.ones(len(order), dtype=bool)
    first[1:] = comp_label[order][1:] != comp_label[order][:-1]
    main = np.zeros(ncomp, dtype=bool)
    main[order[first]] = True
    for label, atom in (anchors or {}).items():
        main[comp_label == label] = False
        main[comp[atom]] = True
    main[comp_label < 0] = False
    return ~main[comp]


def _absorb(atoms: _Atoms, labels: np.ndarray, pending: np.ndarray) -> np.ndarray:
    """Give each connected group of pending atoms the label of the settled neighbour it
    shares the longest border with, round after round. The group borders that neighbour,
    so every label stays one piece."""
    labels = labels.copy()
    pending = pending.copy()
    n = atoms.n
    while pending.any():
        comp = _components(n, atoms.ei, atoms.ej, pending[atoms.ei] & pending[atoms.ej])
        cross = pending[atoms.ei] != pending[atoms.ej]
        if not cross.any():
            break
        ei, ej = atoms.ei[cross], atoms.ej[cross]
        p_end = np.where(pending[ei], ei, ej)
        s_end = np.where(pending[ei], ej, ei)
        m = sparse.coo_matrix((atoms.elen[cross], (comp[p_end], labels[s_end])),
                              shape=(comp.max() + 1, labels.max() + 1)).tocsr()
        m.sum_duplicates()
        has = np.diff(m.indptr) > 0
        best = np.asarray(m.argmax(axis=1)).ravel()
        take = pending & has[comp]
        labels[take] = best[comp[take]]
        pending &= ~take
    return labels


def _connected(mask: np.ndarray, li: np.ndarray, lj: np.ndarray) -> bool:
    """Whether the atoms in ``mask`` form one piece."""
    count = int(mask.sum())
    if count <= 1:
        return count == 1
    sel = mask[li] & mask[lj]
    n = len(mask)
    g = sparse.coo_matrix((np.ones(int(sel.sum())), (li[sel], lj[sel])), shape=(n, n))
    return connected_components(g, directed=False)[0] - (n - count) == 1


def _rebalance(atoms: _Atoms, labels: np.ndarray, w: np.ndarray, target: np.ndarray,
               lo: np.ndarray, hi: np.ndarray, protected: np.ndarray | None = None,
               max_moves: int = 400) -> np.ndarray:
    """Move single boundary atoms between neighbouring labels — steepest descent on the
    squared relative deviation from ``target`` — until every label is within
    ``[lo, hi]``. A move must leave its label in one piece and not take a protected atom
    (an outlet's own)."""
    labels = labels.copy()
    k = len(target)
    load = np.bincount(labels, w, minlength=k)
    both_i = np.concatenate([atoms.ei, atoms.ej])
    both_j = np.concatenate([atoms.ej, atoms.ei])
    blen = np.concatenate([atoms.elen, atoms.elen])
    t2 = np.maximum(target, 1e-9) ** 2
    for _ in range(max_moves):
        if np.all((load >= lo - 1e-9) & (load <= hi + 1e-9)):
            break
        a, b = labels[both_i], labels[both_j]
        cand = (a != b) & (w[both_i] > 0)
        if protected is not None:
            cand &= ~protected[both_i]
        i, la, lb = both_i[cand], a[cand], b[cand]
        wi = w[i]
        gain = (((load[la] - wi - target[la]) ** 2 - (load[la] - target[la]) ** 2) / t2[la]
                + ((load[lb] + wi - target[lb]) ** 2 - (load[lb] - target[lb]) ** 2) / t2[lb])
        good = np.flatnonzero(gain < -1e-12)
        if len(good) == 0:
            break
        # Among equal gains prefer atoms sharing more of their outline with the new label.
        share = blen[cand][good] / np.maximum(atoms.perimeter[i[good]], 1e-12)
        good = good[np.lexsort((-share, gain[good]))]
        moved = False
        tried: set[int] = set()
        for t in good[:64]:
            atom = int(i[t])
            if atom in tried:
                continue
            tried.add(atom)
            region = np.flatnonzero(labels == la[t])
            if len(region) <= 1:
                continue
            sub = atoms.subset(region)
            mask = np.ones(len(region), dtype=bool)
            mask[np.searchsorted(region, atom)] = False
            if _connected(mask, sub.ei, sub.ej):
                labels[atom] = lb[t]
                load[la[t]] -= wi[t]
                load[lb[t]] += wi[t]
                moved = True
                break
        if not moved:
            break
    return labels


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


def _reading_key(xy: np.ndarray) -> float:
    # Reading order on a map: west before east, north before south; a diagonal tie goes
    # to the north.
    return float(xy[0] - 1.001 * xy[1])


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


def _child_count(h: float, target: float, tol: float) -> int:
    """How many children: the count whose mean is nearest the target (H = 450, target
    300 → 2 × 225 rather than 1 × 450; ties → fewer); below the lower bound, one."""
    if h <= 0 or h < target * (1 - tol):
        return 1
    lo = max(1, math.floor(h / target))
    return lo if abs(h / lo - target) <= abs(h / (lo + 1) - target) else lo + 1


# ----------------------------------------------------------------------------- seeds


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


# ----------------------------------------------------------------------------- the context


@dataclass
class _Grid:
    """One grid while the partition is made (geometry in EPSG:4326)."""

    code: str
    geom: BaseGeometry
    pts: np.ndarray  # indices of the household points inside
    level: int = 0
    parent: str | None = None
    method: str = ""
    outlet: str | None = None
    unit: int | None = None  # row of the ``units`` layer it follows
    kind: str | None = None
    zone: str | None = None
    children: list = field(default_factory=list)

    def weight(self, ctx: _Context) -> float:
        return float(ctx.hw[self.pts].sum())


@dataclass
class _Context:
    frame: _Frame
    seed: int
    target: int
    tolerance: float
    cell_size: float
    shape: str
    min_area: float | None
    institution: str | None
    unmet: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    outside: int = 0

    # -- inputs

    def load_households(self, households: gpd.GeoDataFrame | None) -> None:
        if households is None:
            self.hlonlat = np.zeros((0, 2))
            self.hw = np.zeros(0)
        else:
            frame = _check_points(households, "households")
            w = np.ones(len(frame))
            if "count" in frame.columns:
                counts = pd.to_numeric(frame["count"], errors="coerce")
                bad = np.flatnonzero((counts.isna() | (counts < 0)).to_numpy())
                if len(bad):
                    raise InputError([Problem("households", f"feature {i + 1}", "count",
                                              "is not a number of households ≥ 0")
                                      for i in bad[:20]], source="households")
                w = counts.to_numpy(dtype=float)
            self.hlonlat = shapely.get_coordinates(frame.geometry.values)
            self.hw = w
        self.hxy = self.frame.xy(self.hlonlat)
        self.hpoints = shapely.points(self.hlonlat)

    def load_units(self, units, townships) -> None:
        self.layers: dict[str, gpd.GeoDataFrame] = {}
        self._trees: dict[str, shapely.STRtree] = {}
        self._inner: dict[str, np.ndarray] = {}
        for name, layer in (("units", units), ("townships", townships)):
            if layer is None:
                continue
            layer = _check_polygons(layer, name)
            if "code" not in layer.columns:
                raise InputError([Problem(name, None, "code", "is missing")], source=name)
            layer = layer.reset_index(drop=True)
            self.layers[name] = layer
            self._trees[name] = shapely.STRtree(layer.geometry.values)
            # A point inside each unit decides which parent owns it.
            self._inner[name] = shapely.get_coordinates(
                shapely.point_on_surface(layer.geometry.values))
        # The unit of each household, for each grid's kind and zone.
        self.hunit = np.full(len(self.hw), -1)
        if "units" in self.layers and len(self.hw):
            self.hunit = _pip(self.layers["units"].geometry.values, self.hlonlat, self.hpoints)

    def load_outlets(self, outlets, institution) -> None:
        self.outlets = None
        if outlets is None:
            return
        layer = _check_points(outlets, "outlets")
        missing = [c for c in ("id", "tier") if c not in layer.columns]
        if missing:
            raise InputError([Problem("outlets", None, c, "is missing") for c in missing],
                             source="outlets")
        if institution is not None and "institution" in layer.columns:
            layer = layer[layer["institution"].astype(str) == str(institution)]
        if "status" in layer.columns:
            layer = layer[layer["status"].isna() | layer["status"].isin(_SERVING)]
        self.outlets = layer.sort_values("id", kind="stable").reset_index(drop=True)
        self.oxy = self.frame.xy(shapely.get_coordinates(self.outlets.geometry.values))
        self.oids = self.outlets["id"].astype(str).to_numpy()
        self.otier = self.outlets["tier"].astype(str).to_numpy()

    def top_parents(self, roots: gpd.GeoDataFrame, start_level: int) -> list[_Grid]:
        geoms = shapely.set_precision(roots.geometry.values, self.frame.grid)
        codes = (roots["code"].astype(str).tolist() if "code" in roots.columns
                 else ["T"] * len(roots))
        parents: list[_Grid] = []
        for row, (code, geom) in enumerate(zip(codes, geoms, strict=True)):
            code = re.sub(r"[^0-9A-Za-z-]", "", code) or "T"
            parts = [p for p in shapely.get_parts(geom) if p.area > 0]
            # Parts of a multipart territory in reading order.
            parts.sort(key=lambda p: _reading_key(self.frame.xy(
                shapely.get_coordinates(p.centroid))[0]))
            for part in parts:
                grid = _Grid(code=code, geom=part, pts=np.zeros(0, dtype=np.int64),
                             level=start_level - 1)
                if start_level > 1:
                    for attr in ("kind", "zone", "outlet"):
                        if attr in roots.columns and pd.notna(roots[attr].iloc[row]):
                            setattr(grid, attr, str(roots[attr].iloc[row]))
                parents.append(grid)
        if len(self.hw):
            where = _pip([p.geom for p in parents], self.hlonlat, self.hpoints)
            for n_p, p in enumerate(parents):
                p.pts = np.flatnonzero(where == n_p)
            out = where < 0
            self.outside = int(self.hw[out].sum())
            if out.any():
                self.notes.append(f"{int(out.sum())} household points ({self.outside} "
                                  "households) lie outside the territory and are in no grid")
        return parents

    # -- one parent

    def split(self, parent: _Grid, spec: LevelSpec, level: int,
              numbering: dict[str, int]) -> list[_Grid]:
        if spec.method == "units":
            source = spec.source or ("townships" if level == 1 and "townships" in self.layers
                                     else "units")
            children = self._split_units(parent, source, level)
        elif spec.method == "balanced":
            children = self._split_balanced(parent, spec, level)
        elif spec.method == "tiles":
            children = self._split_tiles(parent, spec)
        else:
            children = self._split_outlets(parent, spec, level)
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

    def _single(self, parent: _Grid) -> list[_Grid]:
        return [_Grid(code="#", geom=parent.geom, pts=parent.pts)]

    def _locate(self, pts: np.ndarray, atoms: _Atoms) -> None:
        """The atom of each household point of a region, and households per atom."""
        if len(pts) == 0:
            atoms.point_atom = np.zeros(0, dtype=np.int64)
            atoms.weight = np.zeros(atoms.n)
            return
        atom = _pip(atoms.faces, self.hlonlat[pts], self.hpoints[pts])
        lost = np.flatnonzero(atom < 0)
        if len(lost):
            # A point on the region's outline that snapping left outside: nearest atom.
            tree = shapely.STRtree(atoms.faces)
            li, lf = tree.query_nearest(self.hpoints[pts[lost]], all_matches=False)
            atom[lost[li]] = lf
        atoms.point_atom = atom
        atoms.weight = np.bincount(atom, self.hw[pts], minlength=atoms.n)

    def _children(self, pts: np.ndarray, atoms: _Atoms, labels: np.ndarray,
                  order: Sequence[int] | None = None) -> list[_Grid]:
        """One child per label (taken in ``order``): the coverage union of its atoms."""
        k = int(labels.max()) + 1
        by = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[by], np.arange(k + 1))
        p_lab = labels[atoms.point_atom]
        p_by = np.argsort(p_lab, kind="stable")
        p_bounds = np.searchsorted(p_lab[p_by], np.arange(k + 1))
        out = []
        for lab in (order if order is not None else range(k)):
            idx = by[bounds[lab]:bounds[lab + 1]]
            if len(idx) == 0:
                continue
            geom = (atoms.faces[idx[0]] if len(idx) == 1
                    else shapely.coverage_union_all(atoms.faces[idx]))
            out.append(_Grid(code="#", geom=geom,
                             pts=pts[p_by[p_bounds[lab]:p_bounds[lab + 1]]]))
        return out

    def household_atoms(self, geom: BaseGeometry, pts: np.ndarray, k: int, w_max: float,
                        extra_lines: Sequence[BaseGeometry] = ()) -> _Atoms:
        """Atoms of a region for balancing: Voronoi cells (in the metric CRS) of household
        clusters of at most ``w_max`` and of empty lattice cells, cut out of the region."""
        geom_m = _metric_region(self.frame, geom)
        # Lattice side about a third of a child's side, rounded to a power of two metres
        # so that small changes of the inputs keep the same lattice.
        cell = 2.0 ** round(math.log2(max(math.sqrt(geom_m.area / max(k, 1)) / 3, 1e-2)))
        offset = ((0.0, 0.0) if not self.seed
                  else tuple(np.random.default_rng([self.seed, 7]).uniform(0, cell, 2)))
        b = geom_m.bounds
        hh, filler = _household_seeds(self.hxy[pts], self.hw[pts], b, cell, w_max, offset)
        if len(filler):
            half = cell / 2
            boxes = shapely.box(filler[:, 0] - half, filler[:, 1] - half,
                                filler[:, 0] + half, filler[:, 1] + half)
            shapely.prepare(geom_m)
            filler = filler[shapely.intersects(geom_m, boxes)]
        seeds = np.unique(np.round(np.concatenate([hh, filler]), 4), axis=0)
        lines = list(extra_lines)
        if len(seeds) >= 2:
            pad = 2 * cell + 0.1 * max(b[2] - b[0], b[3] - b[1])
            edges = shapely.voronoi_polygons(
                shapely.multipoints(seeds), only_edges=True,
                extend_to=shapely.box(b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad))
            lines.append(self.frame.to_storage(edges, step=max(cell, 100.0))[0])
        faces = _arrange(geom, lines, self.frame.grid) if lines else np.array([geom])
        atoms = _atoms(faces, self.frame)
        self._locate(pts, atoms)
        return atoms

    # ---- balanced

    def _split_balanced(self, parent: _Grid, spec: LevelSpec, level: int) -> list[_Grid]:
        target = spec.target_households or self.target
        tol = spec.tolerance or self.tolerance
        k = _child_count(parent.weight(self), target, tol)
        if k == 1:
            return self._single(parent)
        leaves: list[_Grid] = []
        self._bisect_region(parent.geom, parent.pts, k, tol, target, leaves)
        self._check_balance(parent, level, leaves, target, tol)
        return leaves

    def _bisect_region(self, geom: BaseGeometry, pts: np.ndarray, k: int, tol: float,
                       target: float, leaves: list[_Grid]) -> None:
        """Recursive bisection: split ``geom`` for ``k // 2`` and ``k - k // 2`` children,
        then each side; leaves are appended in reading order (north-west first down the
        bisection tree), which keeps codes in place when the inputs change a little."""
        if k == 1:
            leaves.append(_Grid(code="#", geom=geom, pts=pts))
            return
        sides = self._straight_cut(geom, pts, k, tol) or self._atom_cut(geom, pts, k, tol,
                                                                        target)
        if sides is None or any(self.hw[p].sum() <= 0 for _, p in sides):
            # Nothing to cut along, or only a cut that leaves one side without households
            # (a heavy point): one grid, which the balance check reports.
            leaves.append(_Grid(code="#", geom=geom, pts=pts))
            return
        (ga, pa), (gb, pb) = sides
        ka = k // 2
        parts = [(ga, pa, ka), (gb, pb, k - ka)]
        keys = [_reading_key(self.frame.xy(shapely.get_coordinates(g.centroid))[0])
                for g in (ga, gb)]
        if keys[1] < keys[0]:
            parts.reverse()
        for g, p, kk in parts:
            self._bisect_region(g, p, kk, tol, target, leaves)

    def _straight_cut(self, geom: BaseGeometry, pts: np.ndarray, k: int, tol: float):
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
        xy, w = self.hxy[pts], self.hw[pts]
        W = w.sum()
        geom_m = _metric_region(self.frame, geom)
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
            sides = self._exact_cut(geom, geom_m, pts, d, t, W * frac, unit, budget)
            if sides is not None:
                return sides
        return None

    def _exact_cut(self, geom, geom_m, pts, d, t, want, unit, budget):
        """Cut a region along the metric line p·d = t, exactly (snap-rounded, in EPSG:4326),
        hand any stray piece to the side it borders most, and return both sides with
        their points — or None if the first side then misses its share by more than
        ``budget``."""
        line = self.frame.to_storage(shapely.linestrings(_line_across(geom_m.bounds, d, t)))
        faces = _arrange(geom, list(line), self.frame.grid)
        if len(faces) < 2:
            return None
        atoms = _atoms(faces, self.frame)
        inner = self.frame.xy(shapely.get_coordinates(shapely.point_on_surface(faces)))
        labels = (inner @ d > t).astype(np.int64)
        if labels.min() == labels.max():
            return None
        pending = _orphans(atoms, labels)
        if pending.any():
            labels = _absorb(atoms, labels, pending)
        if labels.min() == labels.max():
            return None
        proj = self.hxy[pts] @ d - t
        if pending.any() or np.any(np.abs(proj) < 0.01):
            # Stray pieces changed side, or households sit on the cut: ask the faces.
            self._locate(pts, atoms)
            point_side = labels[atoms.point_atom]
        else:
            point_side = (proj > 0).astype(np.int64)
        if abs(self.hw[pts][point_side == 0].sum() - want) / unit > budget:
            return None
        return [(_union(faces[labels == lab]), pts[point_side == lab]) for lab in (0, 1)]

    def _atom_cut(self, geom, pts, k, tol, target):
        """Fallback bisection on the atom graph, for a region no straight cut splits into
        two balanced pieces (a U-shaped valley, households strung along a ring)."""
        atoms = self.household_atoms(geom, pts, k, w_max=max(1.0, target * tol / 6))
        if atoms.n < 2:
            return None
        first = _atom_bisect(atoms, k, tol)
        if first.all() or not first.any():
            return None
        on_first = first[atoms.point_atom]
        return [(_union(atoms.faces[first]), pts[on_first]),
                (_union(atoms.faces[~first]), pts[~on_first])]

    def _check_balance(self, parent, level, children, target, tol, *, total=True) -> None:
        loads = np.array([c.weight(self) for c in children])
        k = len(children)
        mean = loads.sum() / k
        if np.all(np.abs(loads - mean) <= tol * mean + 1e-9):
            if total and abs(mean - target) > tol * target:
                self._unmet(parent, level, "total",
                            f"{int(loads.sum())} households make {k} children of "
                            f"{mean:.0f} on average, outside {target} ± {tol:.0%}; no "
                            "count of children does better")
            return
        heavy = self.hw[parent.pts].max() if len(parent.pts) else 0.0
        if heavy > mean * (1 + tol):
            self._unmet(parent, level, "heavy point",
                        f"one point holds {int(heavy)} households, above the upper bound "
                        f"{mean * (1 + tol):.0f} of {k} children averaging {mean:.0f}")
        else:
            self._unmet(parent, level, "contiguity",
                        f"{int(loads.sum())} households could not be split into {k} "
                        f"contiguous children within ±{tol:.0%} of {mean:.0f}: children "
                        f"hold {int(loads.min())}–{int(loads.max())}")

    def _unmet(self, parent: _Grid, level: int, reason: str, detail: str) -> None:
        self.unmet.append({"parent": parent.code, "level": level, "reason": reason,
                           "detail": detail})

    # ---- units

    def _split_units(self, parent: _Grid, source: str, level: int) -> list[_Grid]:
        if source not in self.layers:
            raise ValueError(f"partition: a units level with source {source!r} needs the "
                             f"{source} layer")
        layer, tree = self.layers[source], self._trees[source]
        geoms = layer.geometry.values
        near = np.sort(tree.query(parent.geom, predicate="intersects"))
        # A unit belongs to the parent holding a point inside it; slivers of it straying
        # into a neighbouring parent are absorbed there.
        shapely.prepare(parent.geom)
        inner = self._inner[source][near]
        owned = near[shapely.contains_xy(parent.geom, inner[:, 0], inner[:, 1])]
        if len(owned) == 0:
            self.notes.append(f"{parent.code}: no {source} inside; kept whole at level {level}")
            return self._single(parent)
        faces = _arrange(parent.geom, list(shapely.boundary(geoms[owned])), self.frame.grid)
        atoms = _atoms(faces, self.frame)
        fi, ui = shapely.STRtree(geoms[owned]).query(shapely.point_on_surface(faces),
                                                     predicate="within")
        labels = _first_hits(fi, ui, atoms.n)
        labels = _absorb(atoms, labels, _orphans(atoms, labels))
        if (labels < 0).any():  # no unit of this parent touches them at all
            return self._single(parent)
        present = np.unique(labels)
        compact = np.full(len(owned), -1)
        compact[present] = np.arange(len(present))
        self._locate(parent.pts, atoms)
        codes = layer["code"].astype(str).to_numpy()[owned[present]]
        segs = [_unit_segment(parent.code, c) for c in codes]
        order = np.argsort(segs, kind="stable")
        kids = self._children(parent.pts, atoms, compact[labels], order=order)
        for child, lab in zip(kids, order, strict=True):
            child.code = f"{parent.code}-{segs[lab]}"
            if source == "units":
                child.unit = int(owned[present[lab]])
        lost = len(owned) - len(present)
        if lost:
            self.notes.append(f"{parent.code}: {lost} {source} left no piece of their own "
                              "and were merged into neighbours")
        return kids

    # ---- tiles

    def _split_tiles(self, parent: _Grid, spec: LevelSpec) -> list[_Grid]:
        size = spec.cell_size or self.cell_size
        shape = spec.shape or self.shape
        min_area = next(a for a in (spec.min_area, self.min_area, 0.1 * size * size)
                        if a is not None)
        geom_m = _metric_region(self.frame, parent.geom)
        cells, centres = _lattice(geom_m.bounds, size, shape)
        shapely.prepare(geom_m)
        hit = shapely.intersects(geom_m, cells)
        cells, centres = cells[hit], centres[hit]
        if len(cells) <= 1:
            return self._single(parent)
        if shape == "square":
            xs, ys = np.unique(centres[:, 0]) - size / 2, np.unique(centres[:, 1]) - size / 2
            xs, ys = np.append(xs, xs[-1] + size), np.append(ys, ys[-1] + size)
            lines = shapely.multilinestrings(
                [[(x, ys[0]), (x, ys[-1])] for x in xs] + [[(xs[0], y), (xs[-1], y)]
                                                          for y in ys])
        else:
            lines = shapely.union_all(shapely.boundary(cells))
        step = min(size / 2, 200.0)
        faces = _arrange(parent.geom, list(self.frame.to_storage(lines, step)),
                         self.frame.grid)
        atoms = _atoms(faces, self.frame)
        inner = self.frame.xy(shapely.get_coordinates(shapely.point_on_surface(faces)))
        labels = cKDTree(centres).query(inner)[1] if shape == "hexagon" else \
            _nearest_square(centres, inner, size)
        pending = _orphans(atoms, labels)
        piece = np.bincount(labels[~pending], atoms.area[~pending], minlength=len(cells))
        pending |= piece[labels] < min_area
        if pending.all():
            return self._single(parent)
        labels = _absorb(atoms, labels, pending)
        present = np.unique(labels)
        compact = np.full(len(cells), -1)
        compact[present] = np.arange(len(present))
        # Row by row from the north, west to east within a row.
        row = np.round(centres[present, 1] / (size * 0.5))
        order = np.lexsort((centres[present, 0], -row))
        self._locate(parent.pts, atoms)
        return self._children(parent.pts, atoms, compact[labels], order=order)

    # ---- outlets

    def _split_outlets(self, parent: _Grid, spec: LevelSpec, level: int) -> list[_Grid]:
        tiers = spec.tiers or DEFAULT_TIERS.get(level, DEFAULT_TIERS[3])
        sel = np.flatnonzero(np.isin(self.otier, tiers))
        if len(sel):
            inside = shapely.contains_xy(parent.geom, *self.frame.lonlat(self.oxy[sel]).T)
            sel = sel[inside]
        if len(sel) == 0:
            self.notes.append(f"{parent.code}: no outlet of tier {'/'.join(tiers)} inside; "
                              f"kept whole at level {level}")
            return self._single(parent)
        # Two outlets on one spot share one area; the first by id serves it.
        _, first = np.unique(np.round(self.oxy[sel], 3), axis=0, return_index=True)
        sel = sel[np.sort(first)]
        ids = self.oids[sel]
        if len(sel) == 1:
            kids = self._single(parent)
            kids[0].outlet = ids[0]
            return kids
        oxy = self.oxy[sel]
        geom_m = _metric_region(self.frame, parent.geom)
        b = geom_m.bounds
        pad = 0.1 * max(b[2] - b[0], b[3] - b[1]) + 1.0
        edges = shapely.voronoi_polygons(
            shapely.multipoints(oxy), only_edges=True,
            extend_to=shapely.box(b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad))
        lines = list(self.frame.to_storage(edges))
        tol = spec.tolerance or self.tolerance
        if spec.capacity:
            w_max = max(1.0, (spec.target_households or self.target) * tol / 3)
            atoms = self.household_atoms(parent.geom, parent.pts, len(sel), w_max, lines)
        else:
            atoms = _atoms(_arrange(parent.geom, lines, self.frame.grid), self.frame)
            self._locate(parent.pts, atoms)
        inner = self.frame.xy(shapely.get_coordinates(shapely.point_on_surface(atoms.faces)))
        d = np.hypot(inner[:, None, 0] - oxy[None, :, 0], inner[:, None, 1] - oxy[None, :, 1])
        labels = _capacity_labels(d, atoms.weight, tol) if spec.capacity else d.argmin(axis=1)
        # The atom holding each outlet anchors its area.
        oi, ai = shapely.STRtree(atoms.faces).query(
            shapely.points(self.frame.lonlat(oxy)), predicate="intersects")
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
        self._locate(parent.pts, atoms)
        kids = self._children(parent.pts, atoms, compact[labels], order=order)
        for child, lab in zip(kids, order, strict=True):
            child.code = f"{parent.code}-{segs[lab]}"
            child.outlet = str(ids[present[lab]])
        if spec.capacity:
            self._check_balance(parent, level, kids, self.target, tol, total=False)
        return kids

    # -- the end

    def finish(self, grids_by_level: list[list[_Grid]], specs: list[LevelSpec],
               start_level: int) -> tuple[gpd.GeoDataFrame, dict]:
        finest = grids_by_level[-1]
        for g, geom in zip(finest, _assemble([g.geom for g in finest], self.frame),
                           strict=True):
            g.geom = geom
        gone = {id(g) for g in finest if g.geom is None}
        if gone:
            self.notes.append(f"{len(gone)} grids thinner than the snap grid were merged "
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
        households = self._count_households(geoms, grids)
        kinds, zones = self._kinds(grids)
        frame = gpd.GeoDataFrame({
            "code": [g.code for g in grids],
            "level": np.array([g.level for g in grids], dtype=np.int64),
            "parent": [g.parent for g in grids],
            "kind": kinds,
            "zone": zones,
            "institution": [self.institution] * len(grids),
            "outlet": self._outlets(grids, specs, start_level),
            "manager": [None] * len(grids),
            "worker": [None] * len(grids),
            "households": households.astype(np.int64),
            "source": ["derived"] * len(grids),
        }, geometry=geoms, crs=STORAGE_CRS)
        return frame, self._report(frame, specs, start_level)

    def _count_households(self, geoms: np.ndarray, grids: list[_Grid]) -> np.ndarray:
        """Households per grid: point-in-polygon on the finest level (a point on a shared
        border counts once, in the first grid), summed up the tree."""
        out = np.zeros(len(grids))
        levels = np.array([g.level for g in grids])
        finest = np.flatnonzero(levels == levels.max())
        self.point_grid = np.full(len(self.hw), -1)
        if len(self.hw) == 0:
            return out
        hit = _pip(geoms[finest], self.hlonlat, self.hpoints)
        inside = hit >= 0
        self.point_grid[inside] = finest[hit[inside]]
        out[finest] = np.bincount(hit[inside], self.hw[inside], minlength=len(finest))
        index = {id(g): i for i, g in enumerate(grids)}
        for i in sorted(range(len(grids)), key=lambda i: -levels[i]):
            if grids[i].children:
                out[i] = sum(out[index[id(c)]] for c in grids[i].children)
        return out

    def _kinds(self, grids: list[_Grid]) -> tuple[list[str], list[str | None]]:
        """Kind (urban / rural) and zone of each grid: its own unit's for a grid that is a
        village or community, else those of the unit holding most of its households (or
        its centre), else the parent's; rural by default."""
        n = len(grids)
        dominant = np.full(n, -1)
        units = self.layers.get("units")
        if units is not None:
            index = {id(g): i for i, g in enumerate(grids)}
            parent_of = np.full(n, -1)
            for i, g in enumerate(grids):
                for c in g.children:
                    parent_of[index[id(c)]] = i
            have = (self.point_grid >= 0) & (self.hunit >= 0)
            if have.any():
                # Each household counts for its finest grid and every ancestor of it.
                g_of, u_of, w_of = self.point_grid[have], self.hunit[have], self.hw[have]
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
                mi, ui = self._trees["units"].query(inner, predicate="within")
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

    def _outlets(self, grids: list[_Grid], specs: list[LevelSpec], start_level: int
                 ) -> list[str | None]:
        """The outlet of each grid: its service area's (``outlets`` levels, inherited
        below), else the nearest serving outlet of its level's tiers."""
        out: list[str | None] = [g.outlet for g in grids]
        if self.outlets is None or len(self.outlets) == 0:
            return out
        for offset, spec in enumerate(specs):
            level = start_level + offset
            idx = [i for i, g in enumerate(grids) if g.level == level and out[i] is None]
            if not idx:
                continue
            tiers = spec.tiers or DEFAULT_TIERS.get(level, DEFAULT_TIERS[3])
            sel = np.flatnonzero(np.isin(self.otier, tiers))
            if len(sel) == 0:
                sel = np.arange(len(self.oids))
            inner = self.frame.xy(shapely.get_coordinates(
                shapely.point_on_surface([grids[i].geom for i in idx])))
            nearest = cKDTree(self.oxy[sel]).query(inner)[1]
            for i, o in zip(idx, nearest, strict=True):
                out[i] = str(self.oids[sel[o]])
        return out

    def _report(self, frame: gpd.GeoDataFrame, specs: list[LevelSpec],
                start_level: int) -> dict:
        metric = self.frame.to_metric(frame.geometry.values)
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
                "unmet": sum(1 for u in self.unmet if u["level"] == level),
            })
        return {
            "institution": self.institution,
            "metric_crs": f"EPSG:{self.frame.crs.to_epsg()}",
            "target_households": self.target,
            "tolerance": self.tolerance,
            "households_total": int(self.hw.sum()),
            "households_outside": self.outside,
            "levels": levels,
            "unmet": self.unmet,
            "notes": self.notes,
        }


def _metric_region(frame: _Frame, geom: BaseGeometry) -> BaseGeometry:
    """A region in metric coordinates, to decide on; valid even where the projection
    squeezed a needle of it."""
    out = frame.to_metric(geom)[0]
    return out if out.is_valid else shapely.make_valid(out)


def _union(faces: np.ndarray) -> BaseGeometry:
    return faces[0] if len(faces) == 1 else shapely.coverage_union_all(faces)


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
