"""Grid-layer validation and repair: the well-field rule (井田制, DESIGN.md B2).

Within one institution's layer, at one level, grids must tile their territory with no gap
(不遗漏) and no overlap (不重复); small grids nest in big ones (大网格套小网格); each grid is
one valid polygon; and each grid has one grid worker who holds no other grid (一人一格, B4).

``validate_grids`` is a linter: it returns every problem with its location (a geometry in
EPSG:4326) and its measure (area in m², households inside). ``repair_grids`` fixes what
geometry can fix — snapping, gaps, overlaps, slivers, invalid rings, pieces — and lists
every change; what it cannot fix is left in its ``remaining`` report, with the reason.

Checks apply per institution and per level: grids of different banks may overlap (that
is the regulator's across-bank question, not a fault of one layer), and a level-2 grid
overlapping its level-1 parent is the nesting itself.

Tolerances, all in metres or square metres of the metric CRS of the layer
(``gis_grid.crs.metric_crs``; nothing is measured in degrees):

``snap_tolerance`` (default 0.1 m)
    Boundaries closer than this are the same boundary. A difference between a grid and
    its territory or parent that is thinner than this is numerical noise (a projected
    vertex a nanometre off its edge), not a gap; between two grids of one layer such a
    near-miss is still reported, as a ``coverage_edge`` (GEOS requires shared edges to
    match exactly). Where edges do not match, repair snaps vertices closer than this
    together; it closes gaps and cuts overhangs down to rounding (``_REPAIR_FLOOR``).
``gap_width`` (default 1 m)
    A gap, overlap or grid narrower than this (diameter of its largest inscribed circle)
    is a sliver. Repair hands gaps narrower than this to GEOS's ``coverage_clean``; wider
    gaps inside the territory are filled as well, by the same longest-border rule.
``sliver_area`` (default 1 m²)
    A gap, overlap or grid smaller than this is a sliver.

Problem kinds (``KINDS``; every kind is an error, ``ok`` means none):

gap / parent_uncovered
    Part of the territory (top level; without a territory: a hole in the layer) or of a
    parent grid (nested level, 大网格套小网格) that no grid covers; with its neighbours,
    area and households.
overlap
    Two grids of one layer sharing area; one row per pair, with the shared polygon.
sliver
    A grid, gap, overlap or overhang smaller than ``sliver_area`` or narrower than
    ``gap_width``; ``sliver_of`` says which.
outside_territory / child_outside_parent
    The part of a grid beyond the territory, or beyond its parent.
invalid_geometry, multipart
    Not a valid polygon (with GEOS's reason; checks go on with ``make_valid``'s
    polygon), or a grid in several pieces (the schema wants one polygon per grid).
coverage_edge
    Edges GEOS's coverage validator flags that no gap or overlap above explains: a
    near-miss thinner than ``snap_tolerance`` or a T-junction (a vertex on one side of
    a shared edge missing on the other).
duplicate_code, missing_parent, code_prefix
    Codes: unique; a nested grid's parent (``parent``, else its code less the last
    ``-`` segment) is in the layer, one level up, of the same institution, and the
    child's code starts with the parent's.
household_outside
    Households in no grid of a top-level layer and in no gap reported (outside the
    territory, or outside the layer's outline).
no_worker, worker_multiple (B4, 一人一格)
    A leaf grid (one without children) without a worker; a worker holding two grids of
    one layer (from ``grids.worker`` and the ``staff`` table; managers may hold many).

How validation stays fast (10^5 grids in about the time GEOS's coverage validator alone
takes, see ``scripts/bench_validate.py``): segments are matched exactly in numpy (hashed,
sorted, confirmed on coordinates); only polygons with an unmatched edge (the outline of
the layer, and wherever something is wrong) and their neighbours go to GEOS's
``coverage_invalid_edges``; the union is GEOS's ``coverage_union_all`` of those plus the
general union of what GEOS flags; gaps are ``difference``; overlap pairs come from one
``STRtree.query(predicate="intersects")`` of the flagged polygons. The polygons whose
edges all match are accounted for by area. GEOS's validator does not look at an edge a
neighbour matches exactly, so it misses overlaps where all edges match (two tilings laid
over one another); the area accounting catches them and then every pair is tested.

Repair builds on GEOS's ``coverage_clean`` (snapping, exact shared edges, overlaps by the
chosen priority, gaps narrower than ``gap_width``); what it leaves — gaps wider than
``gap_width``, gaps of a nested level (GEOS knows nothing of parents), overhangs, detached
pieces, sliver grids — is given to the neighbour sharing the longest border by the same
rule, in one union per receiving grid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.crs import metric_crs, transformer
from gis_grid.errors import InputError, Problem
from gis_grid.model import STORAGE_CRS

__all__ = [
    "DEFAULT_GAP_WIDTH", "DEFAULT_SLIVER_AREA", "DEFAULT_SNAP_TOLERANCE", "KINDS",
    "RepairResult", "ValidationReport", "repair_grids", "validate_grids",
]

DEFAULT_GAP_WIDTH = 1.0
DEFAULT_SLIVER_AREA = 1.0
#: 10 cm: a straight lon/lat edge projected to metres vertex by vertex becomes a chord up
#: to a few centimetres off the same edge split at a node (km-long county edges), so one
#: stored boundary differs from itself by that much in metres; no county boundary is
#: surveyed finer than this.
DEFAULT_SNAP_TOLERANCE = 0.1

#: Every problem kind, in report order, with the title a person reads (Chinese first).
KINDS: dict[str, str] = {
    "invalid_geometry": "几何无效 invalid geometry",
    "duplicate_code": "编码重复 duplicate code",
    "missing_parent": "上级网格缺失 missing parent",
    "code_prefix": "编码不以上级编码开头 code not prefixed by its parent's",
    "gap": "缺口 gap",
    "parent_uncovered": "上级网格未被下级覆盖 parent not covered by its children",
    "overlap": "重叠 overlap",
    "sliver": "碎片 sliver",
    "outside_territory": "超出辖区 outside the territory",
    "child_outside_parent": "超出上级网格 child outside its parent",
    "multipart": "多块 grid in several pieces",
    "coverage_edge": "边界不吻合 edges that do not match",
    "household_outside": "住户不在任何网格 households in no grid",
    "no_worker": "无网格员 grid without a worker",
    "worker_multiple": "一人多格 worker holding several grids",
}

#: Kinds whose geometry is an area in which households are counted.
_AREA_KINDS = ("gap", "parent_uncovered", "overlap", "sliver", "outside_territory",
               "child_outside_parent")

#: Staff roles that hold a grid one-to-one (B4); a manager (网格管理员) may oversee several.
_WORKER_ROLES = ("worker", "part-time")

_PRIORITY_STRATEGIES = ("longest_border", "max_area", "min_area", "min_index")

_COLUMNS = ["kind", "codes", "level", "institution", "area_m2", "width_m", "households",
            "sliver_of", "message"]

_POLYGON, _MULTIPOLYGON = 3, 6

#: From this many grids in one layer, GEOS's coverage validation and union run on
#: vertical strips of the layer in parallel threads (GEOS releases the GIL); below it,
#: one call is as quick.
_PARALLEL_MIN = 20_000


# --------------------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate_grids`` found.

    Attributes
    ----------
    problems : GeoDataFrame
        One row per problem, geometry in EPSG:4326, columns ``kind`` (see ``KINDS``),
        ``codes`` (grid codes concerned, ``;``-separated), ``level``, ``institution``,
        ``area_m2``, ``width_m`` (largest inscribed circle's diameter), ``households``,
        ``sliver_of`` (``grid``, ``gap``, ``overlap`` … for slivers) and ``message``.
    parameters : dict
        The tolerances used, the metric CRS, and which inputs were given.
    """

    problems: gpd.GeoDataFrame
    parameters: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the layer has no problem at all."""
        return len(self.problems) == 0

    @property
    def summary(self) -> pd.Series:
        """Number of problems of each kind (every kind, zeros included)."""
        counts = self.problems["kind"].value_counts()
        return pd.Series({k: int(counts.get(k, 0)) for k in KINDS}, name="problems",
                         dtype="int64")

    def as_dict(self, *, wkt: bool = True, precision: int = 7) -> dict:
        """The machine report as plain Python (see ``to_json``)."""
        frame = pd.DataFrame(self.problems[_COLUMNS])
        rows = json.loads(frame.to_json(orient="records", force_ascii=False))
        if wkt:
            texts = shapely.to_wkt(self.problems.geometry.to_numpy(), rounding_precision=precision)
            for row, text in zip(rows, texts, strict=True):
                row["wkt"] = text
        return {
            "ok": self.ok,
            "parameters": self.parameters,
            "counts": {k: v for k, v in self.summary.items() if v},
            "problems": rows,
        }

    def to_json(self, *, wkt: bool = True, indent: int | None = None) -> str:
        """The machine report as JSON text: parameters, counts per kind and each problem
        (with its geometry as WKT in EPSG:4326 when ``wkt``)."""
        return json.dumps(self.as_dict(wkt=wkt), ensure_ascii=False, indent=indent)

    def to_geojson(self, path: str | Path) -> Path:
        """Write the problems as a GeoJSON FeatureCollection (EPSG:4326) for QGIS / GDAL."""
        path = Path(path)
        text = self.problems.to_json(na="null", drop_id=True, ensure_ascii=False)
        path.write_text(text, encoding="utf-8")
        return path

    def human(self, limit: int = 10) -> str:
        """A short summary for a person (Chinese first, English after)."""
        p = self.parameters
        head = (f"网格图层检查 grid layer check: {p.get('grids', 0)} 个网格 grids in "
                f"{p.get('groups', 0)} 层 layers (机构×层级 institution × level)")
        if self.ok:
            return f"{head}\n通过 OK: 无缺口、无重叠 no gap, no overlap, no problem found."
        lines = [head, f"发现 {len(self.problems)} 个问题 problems:"]
        frame = self.problems
        for kind, count in self.summary.items():
            if not count:
                continue
            sel = frame[frame["kind"] == kind]
            extra = []
            if sel["area_m2"].notna().any():
                extra.append(f"{sel['area_m2'].sum():,.1f} m²")
            if sel["households"].notna().any():
                extra.append(f"{int(sel['households'].sum()):,} 户 households")
            tail = f" ({', '.join(extra)})" if extra else ""
            lines.append(f"  {KINDS[kind]}: {count}{tail}")
        lines.append("例如 e.g.:")
        for message in frame["message"].head(limit):
            lines.append(f"  - {message}")
        if len(frame) > limit:
            lines.append(f"  … 另有 {len(frame) - limit} 个 and {len(frame) - limit} more")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = {k: v for k, v in self.summary.items() if v}
        return f"ValidationReport(ok={self.ok}, problems={counts})"


@dataclass(frozen=True)
class RepairResult:
    """What ``repair_grids`` did.

    Attributes
    ----------
    grids : GeoDataFrame
        The repaired layer, same columns and CRS as the input; grids whose whole area
        went to neighbours are dropped (and listed in ``changes``).
    changes : DataFrame
        One row per grid whose geometry changed: ``code``, ``area_gained_m2``,
        ``area_lost_m2``, ``households_gained``, ``households_lost``, ``what``.
    remaining : ValidationReport
        Validation of the repaired layer: empty, or what repair cannot fix and why.
    """

    grids: gpd.GeoDataFrame
    changes: pd.DataFrame
    remaining: ValidationReport

    @property
    def ok(self) -> bool:
        return self.remaining.ok


# --------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class _Tolerances:
    gap_width: float
    sliver_area: float
    snap_tolerance: float

    def __post_init__(self) -> None:
        for name in ("gap_width", "sliver_area", "snap_tolerance"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number ≥ 0 (metres / m²), got {value!r}")

    @property
    def mic_tolerance(self) -> float:
        # Precision of the inscribed-circle width: well below both thresholds it decides.
        positive = [v for v in (self.snap_tolerance, self.gap_width) if v > 0]
        return max(min(positive, default=0.01) / 100.0, 1e-9)

    @property
    def thresholds(self) -> tuple[float, float]:
        """The widths a decision turns on: noise below snap, sliver below gap_width."""
        return (self.snap_tolerance, self.gap_width)

    @property
    def border_tolerance(self) -> float:
        # Distance within which a piece's edge counts as shared with a grid.
        return max(self.snap_tolerance, 1e-6)


@dataclass
class _Layer:
    """The grid layer prepared for measuring: metric geometries and parsed attributes."""

    frame: gpd.GeoDataFrame
    crs: pyproj.CRS
    raw: np.ndarray  # metric geometry as given
    geoms: np.ndarray  # metric, valid and polygonal (empty where nothing is left)
    empty: np.ndarray
    fixed: np.ndarray  # made valid here
    reasons: np.ndarray  # invalidity reason per row ("" if valid)
    code: np.ndarray
    level: np.ndarray
    institution: np.ndarray  # object: str or None
    parent_code: np.ndarray
    parent_idx: np.ndarray  # row of the parent grid or -1
    has_children: np.ndarray
    group: np.ndarray  # group id per row, groups sorted by (level, institution)
    groups: list[tuple[str | None, int]]
    territory: BaseGeometry | None
    points: np.ndarray | None
    counts: np.ndarray | None


def _as_territory(territory, crs: pyproj.CRS) -> BaseGeometry | None:
    if territory is None:
        return None
    if isinstance(territory, BaseGeometry):
        series = gpd.GeoSeries([territory], crs=STORAGE_CRS)
    elif isinstance(territory, gpd.GeoDataFrame | gpd.GeoSeries):
        series = territory.geometry if isinstance(territory, gpd.GeoDataFrame) else territory
        if series.crs is None:
            raise InputError([Problem("territory", None, None,
                                      "has no CRS; set it (e.g. EPSG:4326) before checking")])
    else:
        raise TypeError("territory must be a GeoDataFrame, GeoSeries or shapely geometry")
    geoms = _polygonal(shapely.make_valid(series.to_crs(crs).to_numpy()))
    return shapely.union_all(geoms)


def _as_households(households, crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray] | None:
    if households is None:
        return None
    if isinstance(households, gpd.GeoSeries):
        households = gpd.GeoDataFrame(geometry=households)
    if not isinstance(households, gpd.GeoDataFrame):
        raise TypeError("households must be a GeoDataFrame of points (with a count column)")
    if households.crs is None:
        raise InputError([Problem("households", None, None,
                                  "has no CRS; set it (e.g. EPSG:4326) before checking")])
    points = households.geometry.to_crs(crs).to_numpy()
    if "count" in households.columns:
        counts = pd.to_numeric(households["count"], errors="coerce").fillna(1).to_numpy(float)
    else:
        counts = np.ones(len(points))
    keep = (shapely.get_type_id(points) == 0) & ~shapely.is_empty(points)
    return points[keep], counts[keep]


def _text(frame: pd.DataFrame, name: str) -> pd.Series:
    """A string column with blanks as NA (absent columns are all NA)."""
    if name not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    values = frame[name].astype("string").str.strip()
    return values.where(values != "", pd.NA)


def _prepare(grids: gpd.GeoDataFrame, territory, households) -> _Layer:
    if not isinstance(grids, gpd.GeoDataFrame):
        raise TypeError("grids must be a GeoDataFrame (see gis_grid.model.LAYERS['grids'])")
    problems = []
    if grids.crs is None:
        problems.append(Problem("grids", None, None,
                                "has no CRS; set it (e.g. EPSG:4326) before checking"))
    if "code" not in grids.columns:
        problems.append(Problem("grids", None, "code", "is missing; every grid needs a code"))
    if problems:
        raise InputError(problems)

    frame = grids.reset_index(drop=True)
    n = len(frame)
    where = territory if territory is not None and n == 0 else frame
    if isinstance(where, BaseGeometry):
        where = gpd.GeoSeries([where], crs=STORAGE_CRS)
    crs = metric_crs(where) if n or territory is not None else pyproj.CRS.from_epsg(4546)

    original = frame.geometry.to_numpy()
    raw = frame.geometry.to_crs(crs).to_numpy() if n else np.empty(0, dtype=object)
    missing = shapely.is_missing(raw) | shapely.is_empty(raw)
    polygonal = np.isin(shapely.get_type_id(raw), (_POLYGON, _MULTIPOLYGON))
    # Validity is checked once, in metres (projection keeps topology; where it matters,
    # the reason below is told from the stored geometry).
    valid = shapely.is_valid(raw)
    bad = ~missing & (~polygonal | ~valid)

    reasons = np.full(n, "", dtype=object)
    reasons[missing] = "empty or missing geometry"
    not_polygon = ~missing & ~polygonal
    if not_polygon.any():
        names = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint",
                          "MultiLineString", "MultiPolygon", "GeometryCollection"])
        reasons[not_polygon] = [f"a {t}, not a polygon"
                                for t in names[shapely.get_type_id(raw[not_polygon])]]
    invalid = ~missing & polygonal & ~valid
    if invalid.any():
        # The reason is told in the coordinates a user sees (longitude/latitude).
        orig_reason = shapely.is_valid_reason(original[invalid])
        metric_reason = shapely.is_valid_reason(raw[invalid])
        projected = "invalid once projected to metres: " + metric_reason.astype(str)
        reasons[invalid] = np.where(orig_reason == "Valid Geometry", projected, orig_reason)

    geoms = raw.copy()
    geoms[missing] = shapely.Polygon()
    if bad.any():
        geoms[bad] = _polygonal(shapely.make_valid(raw[bad], method="structure",
                                                   keep_collapsed=False))
    empty = shapely.is_empty(geoms)

    code = _text(frame, "code").fillna("").to_numpy(dtype=object)
    if "level" in frame.columns:
        level = pd.to_numeric(frame["level"], errors="coerce").fillna(1).astype(int).to_numpy()
    else:
        level = np.ones(n, dtype=int)
    inst = _text(frame, "institution")
    institution = inst.astype(object).where(inst.notna(), None).to_numpy(dtype=object)

    # The parent is the ``parent`` field, else the code less its last "-" segment.
    nested = level > 1
    parent_code = _text(frame, "parent").where(nested, pd.NA)
    if nested.any():
        codes = pd.Series(code[nested], index=frame.index[nested], dtype="string")
        derived = codes.str.rsplit("-", n=1).str[0].where(codes.str.contains("-"), pd.NA)
        parent_code = parent_code.fillna(derived)
    first_row = pd.Series(np.arange(n), index=code)
    first_row = first_row[~first_row.index.duplicated()]
    parent_idx = first_row.index.get_indexer(parent_code.fillna("\0").to_numpy(dtype=object))
    parent_idx = np.where(parent_idx >= 0, first_row.to_numpy()[np.maximum(parent_idx, 0)], -1)
    parent_idx[parent_idx == np.arange(n)] = -1
    has_children = np.zeros(n, dtype=bool)
    has_children[parent_idx[parent_idx >= 0]] = True

    inst_key = inst.fillna("").to_numpy(dtype=object)
    keys = pd.DataFrame({"level": level, "institution": inst_key})
    uniq = keys.drop_duplicates().sort_values(["level", "institution"]).reset_index(drop=True)
    group = pd.MultiIndex.from_frame(uniq).get_indexer(pd.MultiIndex.from_frame(keys))
    groups = [(i or None, int(lv)) for lv, i in zip(uniq["level"], uniq["institution"],
                                                   strict=True)]

    hh = _as_households(households, crs)
    return _Layer(
        frame=frame, crs=crs, raw=raw, geoms=geoms, empty=empty, fixed=bad,
        reasons=reasons, code=code, level=level, institution=institution,
        parent_code=parent_code.astype(object).where(parent_code.notna(), None).to_numpy(),
        parent_idx=parent_idx, has_children=has_children, group=group, groups=groups,
        territory=_as_territory(territory, crs),
        points=None if hh is None else hh[0], counts=None if hh is None else hh[1],
    )


# --------------------------------------------------------------------------------------
# Geometry helpers (all vectorised)


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """Each geometry reduced to its polygonal part (a Polygon, MultiPolygon or empty)."""
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    types = shapely.get_type_id(geoms)
    odd = np.flatnonzero(~np.isin(types, (_POLYGON, _MULTIPOLYGON)))
    if len(odd):
        parts, idx = shapely.get_parts(geoms[odd], return_index=True)
        parts, sub = shapely.get_parts(parts, return_index=True)  # collections of multis
        idx = idx[sub]
        keep = shapely.get_type_id(parts) == _POLYGON
        rebuilt = np.empty(len(odd), dtype=object)
        if keep.any():
            shapely.multipolygons(parts[keep], indices=idx[keep], out=rebuilt)
        rebuilt[shapely.is_missing(rebuilt)] = shapely.Polygon()
        out[odd] = rebuilt
    single = (shapely.get_type_id(out) == _MULTIPOLYGON) & (shapely.get_num_geometries(out) == 1)
    if single.any():
        out[single] = shapely.get_geometry(out[single], 0)
    return out


def _pieces(geom) -> np.ndarray:
    """The non-empty polygons a (multi)polygonal result consists of."""
    parts = shapely.get_parts(shapely.get_parts(np.atleast_1d(np.asarray(geom, dtype=object))))
    parts = parts[shapely.get_type_id(parts) == _POLYGON]
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
    if (shapely.get_type_id(geoms) == _MULTIPOLYGON).any():
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
    return _polygonal(np.array([union], dtype=object))[0]


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
    parts, src = shapely.get_parts(_polygonal(shapely.intersection(pieces[pi], owners[oi])),
                                   return_index=True)
    keep = (shapely.get_type_id(parts) == _POLYGON) & (shapely.area(parts) > 0)
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
    inter = _polygonal(shapely.intersection(geoms[a], geoms[b]))
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
    geoms[rows] = _polygonal(merged)
    return rows


# --------------------------------------------------------------------------------------
# Validation


def _rows(kind: str, geometry, codes, level, institution, message, *, area=np.nan,
          width=np.nan, households=None, sliver_of="") -> pd.DataFrame:
    geometry = np.asarray(geometry, dtype=object)
    n = len(geometry)
    frame = pd.DataFrame({
        "kind": kind,
        "codes": np.broadcast_to(np.asarray(codes, dtype=object), n),
        "level": np.broadcast_to(np.asarray(level), n),
        "institution": np.broadcast_to(np.asarray(institution, dtype=object), n),
        "area_m2": np.broadcast_to(np.asarray(area, dtype=float), n),
        "width_m": np.broadcast_to(np.asarray(width, dtype=float), n),
        "households": pd.array(np.broadcast_to(
            np.asarray(np.nan if households is None else households, dtype=float), n)),
        "sliver_of": np.broadcast_to(np.asarray(sliver_of, dtype=object), n),
        "message": np.broadcast_to(np.asarray(message, dtype=object), n),
    }, index=pd.RangeIndex(n))
    frame["geometry"] = geometry
    return frame


class _Validator:
    def __init__(self, layer: _Layer, tol: _Tolerances, threads: int = 1):
        self.layer = layer
        self.tol = tol
        self.threads = threads
        self.found: list[pd.DataFrame] = []
        n = len(layer.code)
        # Flagged by the GEOS coverage validator or made valid here: not to be trusted to
        # GEOS's coverage union, which assumes exactly matching edges.
        self.unsafe = np.zeros(n, dtype=bool)

    # -- attributes ---------------------------------------------------------------------

    def attributes(self) -> None:
        L = self.layer
        if L.fixed.any() or L.empty.any():
            bad = np.flatnonzero(L.fixed | (L.empty & (L.reasons != "")))
            self._add("invalid_geometry", L.raw[bad], L.code[bad], L.level[bad],
                      L.institution[bad],
                      [f"grid {c}: {r}" for c, r in zip(L.code[bad], L.reasons[bad],
                                                        strict=True)],
                      area=shapely.area(L.geoms[bad]))
        codes = pd.Series(L.code)
        dup = np.flatnonzero(codes.duplicated(keep=False).to_numpy() | (codes == "").to_numpy())
        if len(dup):
            rows_of = codes.iloc[dup].groupby(codes.iloc[dup]).apply(
                lambda s: ", ".join(str(i + 1) for i in s.index))
            self._add("duplicate_code", L.raw[dup], L.code[dup], L.level[dup],
                      L.institution[dup],
                      [f"code {c!r} is used by features {rows_of[c]}" if c else
                       f"feature {i + 1} has no code" for c, i in zip(L.code[dup], dup,
                                                                    strict=True)],
                      area=shapely.area(L.geoms[dup]))
        nested = L.level > 1
        missing = np.flatnonzero(nested & (L.parent_idx < 0))
        if len(missing):
            self._add("missing_parent", L.raw[missing], L.code[missing], L.level[missing],
                      L.institution[missing],
                      [f"level-{lv} grid {c}: parent {p!r} is not in the layer" if p else
                       f"level-{lv} grid {c} names no parent"
                       for c, lv, p in zip(L.code[missing], L.level[missing],
                                           L.parent_code[missing], strict=True)])
        linked = np.flatnonzero(nested & (L.parent_idx >= 0))
        if len(linked):
            parent = L.parent_idx[linked]
            pcode, child = L.code[parent].astype(str), L.code[linked].astype(str)
            wrong_prefix = ~np.strings.startswith(child, pcode) | (child == pcode)
            wrong_level = L.level[parent] != L.level[linked] - 1
            wrong_inst = pd.Series(L.institution[parent]).fillna("").to_numpy() != \
                pd.Series(L.institution[linked]).fillna("").to_numpy()
            bad = linked[wrong_prefix]
            if len(bad):
                self._add("code_prefix", L.raw[bad], L.code[bad], L.level[bad],
                          L.institution[bad],
                          [f"grid {c} does not start with its parent's code {L.code[p]}"
                           for c, p in zip(L.code[bad], L.parent_idx[bad], strict=True)])
            bad = linked[wrong_level | wrong_inst]
            if len(bad):
                self._add("missing_parent", L.raw[bad], L.code[bad], L.level[bad],
                          L.institution[bad],
                          [f"level-{lv} grid {c}: parent {L.code[p]} is level {L.level[p]} of "
                           f"{L.institution[p] or 'no institution'}; expected level {lv - 1} "
                           f"of {i or 'no institution'}"
                           for c, lv, p, i in zip(L.code[bad], L.level[bad], L.parent_idx[bad],
                                                  L.institution[bad], strict=True)])

    # -- geometry, one (institution, level) layer at a time -----------------------------

    def group(self, g: int) -> None:
        L, tol = self.layer, self.tol
        inst, level = L.groups[g]
        rows = np.flatnonzero((L.group == g) & ~L.empty)
        if not len(rows):
            return
        G = L.geoms[rows]
        codes = L.code[rows]
        label = f"{inst or '(no institution)'} level {level}"

        tree = shapely.STRtree(G)
        parent_rows = np.unique(L.parent_idx[rows][L.parent_idx[rows] >= 0])
        if len(parent_rows):
            region = _union(L.geoms[parent_rows], self.unsafe[parent_rows], self.threads)
            kind = "parent_uncovered"
        else:
            region, kind = L.territory, "gap"
        edges, unsafe, gaps, (a, b, inter) = self._coverage(G, tree, L.fixed[rows], region)
        self.unsafe[rows] = unsafe
        explained: list[np.ndarray] = []

        # Overlaps, each pair once, with its polygon.
        area = shapely.area(inter)
        width = _widths(inter, tol.mic_tolerance, tol.thresholds)
        real = width >= tol.snap_tolerance
        a, b, inter, area, width = a[real], b[real], inter[real], area[real], width[real]
        explained.append(inter)
        pair_codes = np.array([f"{x};{y}" for x, y in zip(codes[a], codes[b], strict=True)],
                              dtype=object)
        self._pieces("overlap", inter, pair_codes, level, inst, area, width,
                     [f"grids {x} and {y} ({label}) overlap by {s:,.2f} m²"
                      for x, y, s in zip(codes[a], codes[b], area, strict=True)])

        # Gaps: against the parents (nested level), the territory, or the layer's holes.
        if kind == "parent_uncovered":
            # The parents' union has no inner borders: cut the pieces back to each parent.
            gaps, owner = _split_by(gaps, L.geoms[parent_rows])
            owner = parent_rows[owner]
        width = _widths(gaps, tol.mic_tolerance, tol.thresholds)
        real = width >= tol.snap_tolerance
        gaps, width = gaps[real], width[real]
        area = shapely.area(gaps)
        explained.append(gaps)
        if kind == "parent_uncovered":
            gap_codes = L.code[owner[real]]
            messages = [f"{s:,.2f} m² of parent grid {p} is in none of its level-{level} "
                        f"children" for s, p in zip(area, gap_codes, strict=True)]
        else:
            gap_codes = _neighbour_codes(gaps, G, codes, tol.border_tolerance, tree)
            where = "the territory" if L.territory is not None else "the layer"
            messages = [f"gap of {s:,.2f} m² in {where} ({label})"
                        + (f", beside {c.replace(';', ', ')}" if c else
                           ", bordered by no grid (nothing to extend into it)")
                        for s, c in zip(area, gap_codes, strict=True)]
        self._pieces(kind, gaps, gap_codes, level, inst, area, width, messages)

        # Grids reaching outside their territory or parent.
        if len(parent_rows):
            linked = np.flatnonzero(L.parent_idx[rows] >= 0)
            outer = L.geoms[L.parent_idx[rows[linked]]]
            explained.append(self._outside(
                "child_outside_parent", linked, G, outer, codes, level, inst,
                [f"parent {p}" for p in L.code[L.parent_idx[rows[linked]]]]))
        elif L.territory is not None:
            shapely.prepare(L.territory)
            explained.append(self._outside("outside_territory", np.arange(len(rows)), G,
                                           L.territory, codes, level, inst, "the territory"))

        # Grids that are slivers themselves: tiny, or thinner than gap_width.
        area = shapely.area(G)
        perimeter = shapely.length(G)
        # A convex polygon's inscribed circle is at least 2A/P across: only grids with
        # 2A/P under twice gap_width (a margin for concave ones) are measured.
        maybe = (area < tol.sliver_area) | (2 * area < 2 * tol.gap_width * perimeter)
        idx = np.flatnonzero(maybe)
        width = _widths(G[idx], tol.mic_tolerance, tol.thresholds)
        thin = (area[idx] < tol.sliver_area) | (width < tol.gap_width)
        idx, width = idx[thin], width[thin]
        self._add("sliver", G[idx], codes[idx], level, inst,
                  [f"grid {c} is a sliver: {s:,.3f} m², {w:,.3f} m wide"
                   for c, s, w in zip(codes[idx], area[idx], width, strict=True)],
                  area=area[idx], width=width, sliver_of="grid")

        # Grids in several pieces (the schema allows one polygon per grid).
        nparts = shapely.get_num_geometries(G)
        multi = np.flatnonzero(nparts > 1)
        if len(multi):
            parts, owner = shapely.get_parts(G[multi], return_index=True)
            part_area = shapely.area(parts)
            small = pd.Series(part_area).groupby(owner).agg(lambda s: s.sum() - s.max())
            self._add("multipart", G[multi], codes[multi], level, inst,
                      [f"grid {c} is in {k} pieces; the smaller ones total {s:,.2f} m²"
                       for c, k, s in zip(codes[multi], nparts[multi], small.to_numpy(),
                                          strict=True)],
                      area=area[multi])

        # Edges the coverage validator flagged that no gap or overlap above explains:
        # near-misses, T-junctions and other edges that do not match exactly. An invalid
        # edge line touching a reported piece is its consequence (an overlapping grid
        # also leaves its neighbours' edges unmatched), and is not reported again.
        idx = np.flatnonzero(~shapely.is_empty(edges))
        if len(idx):
            lines, src = shapely.get_parts(edges[idx], return_index=True)
            pieces = np.concatenate(explained) if explained else np.empty(0, dtype=object)
            if len(pieces):
                zone = shapely.buffer(pieces, tol.border_tolerance, quad_segs=2)
                hit, _ = shapely.STRtree(zone).query(lines, predicate="intersects")
                alone = np.ones(len(lines), dtype=bool)
                alone[hit] = False
                lines, src = lines[alone], src[alone]
            length = np.bincount(src, weights=shapely.length(lines), minlength=len(idx))
            keep = np.flatnonzero(length > tol.snap_tolerance)
            left = np.empty(len(idx), dtype=object)
            if len(lines):
                shapely.multilinestrings(lines, indices=src, out=left)
            idx, left, length = idx[keep], left[keep], length[keep]
            self._add("coverage_edge", left, codes[idx], level, inst,
                      [f"grid {c}: {s:,.2f} m of edges do not match a neighbour's exactly "
                       f"(near-miss or T-junction)" for c, s in zip(codes[idx], length,
                                                                    strict=True)])

        # Households in no grid of this layer and in no gap reported above (those are
        # counted with their gap): outside the territory, or outside the layer's outline.
        # Top level only: a nested level covers its parents, checked already.
        if L.points is not None and not len(parent_rows):
            pi, _ = tree.query(L.points, predicate="intersects")
            out = np.ones(len(L.points), dtype=bool)
            out[pi] = False
            if out.any() and len(gaps):
                idx = np.flatnonzero(out)
                pi, _ = shapely.STRtree(gaps).query(L.points[idx], predicate="intersects")
                out[idx[pi]] = False
            if out.any():
                total = L.counts[out].sum()
                where = "outside the territory" if L.territory is not None else "outside it"
                self._add("household_outside", [shapely.multipoints(L.points[out])], "", level,
                          inst, [f"{total:,.0f} households ({out.sum():,} points) are in no "
                                 f"grid of {label}, {where}"], households=[total])

    def _coverage(self, G: np.ndarray, tree: shapely.STRtree, fixed: np.ndarray,
                  region: BaseGeometry | None):
        """GEOS coverage validation of ``G``, its overlapping pairs, and the parts of
        ``region`` it leaves uncovered (``region=None``: the holes of the layer).

        GEOS's validator and union run only where they can find something: on the
        polygons whose edges do not all match a neighbour's exactly (``_unmatched_edges``)
        and their neighbours. The polygons that do match all lie inside the covered area
        (any gap or outline is bordered by unmatched edges), so each region piece left by
        the union of the others is either filled by them (their areas add up to it) or a
        gap (none lies in it).

        GEOS's validator does not look at an edge that a neighbour matches exactly, so it
        misses an overlap where every edge matches (two tilings laid over one another).
        Areas tell: interior polygons adding up to more than their piece, or polygons
        adding up to more than their union plus the overlaps found. Then every pair is
        tested with predicates.

        Returns the invalid edges per polygon, whether each polygon is unsafe for a
        coverage union (flagged, made valid or overlapping), the uncovered pieces, and
        the overlapping pairs ``(a, b, intersection)`` with ``a < b``.
        """
        m = self.tol.snap_tolerance
        unmatched, first_vertex = _unmatched_edges(G)
        boundary = unmatched | fixed
        if region is not None and len(G):
            # Polygons reaching across the region's outline are measured with the outline.
            # Queried piece by piece: the outline's own box would take in every polygon.
            step = 4.0 * np.sqrt(np.median(shapely.area(G)))
            outline = shapely.get_parts(shapely.segmentize(shapely.boundary(region), step))
            xy, ring = shapely.get_coordinates(outline, return_index=True)
            same = ring[1:] == ring[:-1]
            segments = shapely.linestrings(np.stack([xy[:-1][same], xy[1:][same]], axis=1))
            boundary[tree.query(segments, predicate="intersects")[1]] = True
        check = boundary.copy()
        if boundary.any():
            box = shapely.bounds(G[boundary]) + np.array([-m, -m, m, m])
            check[tree.query(shapely.box(*box.T))[1]] = True
        edges = np.full(len(G), shapely.LineString(), dtype=object)
        idx = np.flatnonzero(check)
        if len(idx):
            # With gap_width = snap_tolerance GEOS also flags near-misses: edges a hair
            # apart that do not touch (with 0 it flags only overlaps and mismatches).
            edges[idx] = _invalid_edges(G[idx], m, self.threads)
            flagged = np.flatnonzero(~shapely.is_empty(edges))
            if region is not None and len(flagged):
                # Edges lying on the region's own outline are not between two grids: two
                # grids on either side of a hair-thin inlet of a coastline come within
                # the snap tolerance of each other without any gap in the territory.
                # What differs from the outline itself is measured as gap / outside.
                along = shapely.buffer(shapely.boundary(region), m, quad_segs=2)
                rest = shapely.difference(edges[flagged], along)
                on_outline = shapely.length(rest) <= m
                edges[flagged[on_outline]] = shapely.LineString()
        unsafe = ~shapely.is_empty(edges) | fixed
        outer = boundary | unsafe
        if unsafe.any():
            # GEOS flags the polygon that overlaps, not always the one overlapped.
            outer[tree.query(G[unsafe], predicate="intersects")[1]] = True
        union = _union(G[outer], unsafe[outer], self.threads)
        pieces = _pieces(shapely.difference(region if region is not None else _filled(union),
                                            union))
        pairs = _overlapping_pairs(G, tree, np.flatnonzero(unsafe))
        area = shapely.area(G)
        missed = area[outer].sum() - shapely.area(union) > \
            shapely.area(pairs[2]).sum() + 1e-9 * area[outer].sum()

        inner = np.flatnonzero(~outer)
        gaps = [pieces]
        if len(inner) and len(pieces) and not missed:
            # A vertex of an inner polygon is strictly inside its piece unless the polygon
            # touches an outer one: for those, a point on its surface.
            touching = np.zeros(len(G), dtype=bool)
            touching[tree.query(G[outer])[1]] = True  # bounding boxes meet
            probe = shapely.points(first_vertex[inner])
            near = touching[inner] | (shapely.get_num_geometries(G[inner]) > 1)
            probe[near] = shapely.point_on_surface(G[inner[near]])
            pi, pj = shapely.STRtree(probe).query(pieces, predicate="contains")
            filled = np.bincount(pi, weights=area[inner][pj], minlength=len(pieces))
            whole = shapely.area(pieces)
            slack = 1e-9 * whole  # rounding of a sum of areas, far below one polygon's
            missed = bool((filled > whole + slack).any())
            empty = np.bincount(pi, minlength=len(pieces)) == 0
            short = ~empty & (filled < whole - slack)
            gaps = [pieces[empty]]
            # Not expected of a coverage whose inner edges all match; measured exactly.
            for piece in pieces[short]:
                members = tree.query(piece, predicate="intersects")
                gaps.append(_pieces(shapely.difference(piece, shapely.union_all(G[members]))))
        if missed:
            every = np.concatenate([tree.query(G, predicate=p) for p in ("overlaps", "contains")],
                                   axis=1)
            unsafe[every[0][every[0] != every[1]]] = True
            union = _union(G, unsafe, self.threads)
            gaps = [_pieces(shapely.difference(
                region if region is not None else _filled(union), union))]
            pairs = _overlapping_pairs(G, tree, np.flatnonzero(unsafe))
        return edges, unsafe, np.concatenate(gaps), pairs

    def _outside(self, kind, local, G, outer, codes, level, inst, what) -> np.ndarray:
        """Report the parts of grids ``G[local]`` outside ``outer``; returns them."""
        if not len(local):
            return np.empty(0, dtype=object)
        inside = shapely.covers(outer, G[local])
        idx = local[~inside]
        outer_bad = outer[~inside] if isinstance(outer, np.ndarray) else outer
        what_bad = np.asarray(what, dtype=object)
        what_bad = what_bad[~inside] if what_bad.ndim else np.broadcast_to(what_bad, len(idx))
        extra = _polygonal(shapely.difference(G[idx], outer_bad))
        width = _widths(extra, self.tol.mic_tolerance, self.tol.thresholds)
        real = width >= self.tol.snap_tolerance
        idx, extra, width, what_bad = idx[real], extra[real], width[real], what_bad[real]
        area = shapely.area(extra)
        self._pieces(kind, extra, codes[idx], level, inst, area, width,
                     [f"{s:,.2f} m² of grid {c} lies outside {w}"
                      for s, c, w in zip(area, codes[idx], what_bad, strict=True)])
        return extra

    def _pieces(self, kind, geoms, codes, level, inst, area, width, messages) -> None:
        """Add area problems, those below the sliver limits as slivers of ``kind``."""
        if not len(geoms):
            return
        sliver = (area < self.tol.sliver_area) | (width < self.tol.gap_width)
        messages = np.asarray(messages, dtype=object)
        codes = np.asarray(codes, dtype=object)
        for mask, k, of in ((~sliver, kind, ""), (sliver, "sliver", kind)):
            if mask.any():
                text = messages[mask] if not of else np.array(
                    [f"sliver ({w:,.3f} m wide): {m}" for w, m in zip(width[mask],
                                                                       messages[mask],
                                                                       strict=True)],
                    dtype=object)
                self._add(k, geoms[mask], codes[mask], level, inst, text, area=area[mask],
                          width=width[mask], sliver_of=of)

    def _add(self, kind, geometry, codes, level, institution, message, **kw) -> None:
        if len(geometry):
            self.found.append(_rows(kind, geometry, codes, level, institution, message, **kw))

    # -- staffing (B4) ------------------------------------------------------------------

    def staffing(self, staff) -> bool:
        """一人一格: each leaf grid has a worker; no worker holds two grids of one level.

        Returns whether there was anything to check (a worker column or a staff table).
        """
        L = self.layer
        pairs = []
        if "worker" in L.frame.columns:
            worker = _text(L.frame, "worker")
            pairs.append(pd.DataFrame({"worker": worker, "row": np.arange(len(worker))})
                         .dropna())
        if staff is not None:
            if not {"id", "grids"} <= set(staff.columns):
                raise InputError([Problem("staff", None, "grids",
                                          "staff needs the columns id and grids")])
            held = pd.DataFrame({"worker": _text(staff, "id"), "grids": _text(staff, "grids")})
            if "role" in staff.columns:
                held = held[_text(staff, "role").isin(_WORKER_ROLES).fillna(False).to_numpy()]
            held = held.dropna().assign(grids=lambda f: f["grids"].str.split(";"))
            held = held.explode("grids")
            held["grids"] = held["grids"].str.strip()
            first_row = pd.Series(np.arange(len(L.code)), index=L.code)
            first_row = first_row[~first_row.index.duplicated()]
            held["row"] = first_row.reindex(held["grids"].to_numpy()).to_numpy()
            pairs.append(held.dropna(subset=["row"])[["worker", "row"]]
                         .astype({"row": int}))
        if not pairs:
            return False
        pairs = pd.concat(pairs, ignore_index=True).drop_duplicates()

        leaf = np.flatnonzero(~L.has_children)
        staffed = np.zeros(len(L.code), dtype=bool)
        staffed[pairs["row"].to_numpy()] = True
        lonely = leaf[~staffed[leaf]]
        self._add("no_worker", L.raw[lonely], L.code[lonely], L.level[lonely],
                  L.institution[lonely],
                  [f"grid {c} has no grid worker (网格员)" for c in L.code[lonely]])

        pairs["group"] = L.group[pairs["row"].to_numpy()]
        counts = pairs.groupby(["worker", "group"])["row"].transform("nunique")
        many = pairs[counts > 1].sort_values(["worker", "group", "row"])
        if len(many):
            keys = many.groupby(["worker", "group"], sort=True)
            rows = keys["row"].agg(list)
            geoms = np.array([shapely.multipolygons(_pieces(L.geoms[r])) for r in rows],
                             dtype=object)
            first = np.array([r[0] for r in rows])
            codes = [";".join(L.code[r]) for r in rows]
            self._add("worker_multiple", geoms, codes, L.level[first], L.institution[first],
                      [f"worker {w} holds {len(r)} level-{L.level[r[0]]} grids: "
                       f"{', '.join(L.code[r])}"
                       for (w, _), r in zip(rows.index, rows, strict=True)])
        return True

    # -- report -------------------------------------------------------------------------

    def report(self, parameters: dict) -> ValidationReport:
        L = self.layer
        frames = [f for f in self.found if len(f)]
        if frames:
            found = pd.concat(frames, ignore_index=True)
        else:
            found = _rows("gap", [], "", 0, None, "").iloc[:0]
        geoms = found["geometry"].to_numpy()
        households = found["households"].to_numpy(dtype=float, na_value=np.nan)
        if L.points is not None:
            area_rows = np.flatnonzero(found["kind"].isin(_AREA_KINDS).to_numpy())
            if len(area_rows):
                pi, gi = shapely.STRtree(geoms[area_rows]).query(L.points,
                                                                 predicate="intersects")
                households[area_rows] = np.bincount(gi, weights=L.counts[pi],
                                                    minlength=len(area_rows))
        order = pd.Series(list(KINDS)).reset_index().set_index(0)["index"]
        found = found.assign(
            households=pd.array(np.round(households), dtype="Int64"),
            level=found["level"].astype("Int64"),
            _order=found["kind"].map(order).to_numpy(),
        ).sort_values(["_order", "level", "codes"], kind="stable").drop(columns="_order")
        found = found.reset_index(drop=True)
        geometry = gpd.GeoSeries(found["geometry"].to_numpy(), crs=L.crs).to_crs(STORAGE_CRS)
        problems = gpd.GeoDataFrame(found[_COLUMNS], geometry=geometry.to_numpy(),
                                    crs=STORAGE_CRS)
        return ValidationReport(problems=problems, parameters=parameters)


def _parameters(layer: _Layer, tol: _Tolerances, **given) -> dict:
    epsg = layer.crs.to_epsg()
    return {
        "gap_width_m": tol.gap_width,
        "sliver_area_m2": tol.sliver_area,
        "snap_tolerance_m": tol.snap_tolerance,
        "metric_crs": f"EPSG:{epsg}" if epsg else layer.crs.to_string(),
        "grids": int(len(layer.code)),
        "groups": len(layer.groups),
        **given,
    }


def validate_grids(
    grids: gpd.GeoDataFrame,
    *,
    territory: gpd.GeoDataFrame | gpd.GeoSeries | BaseGeometry | None = None,
    households: gpd.GeoDataFrame | None = None,
    staff: pd.DataFrame | None = None,
    gap_width: float = DEFAULT_GAP_WIDTH,
    sliver_area: float = DEFAULT_SLIVER_AREA,
    snap_tolerance: float = DEFAULT_SNAP_TOLERANCE,
    threads: int | None = None,
) -> ValidationReport:
    """Check a grid layer against the well-field rule (不重复、不遗漏) and B4 staffing.

    Each institution's grids are checked level by level: no gap inside the territory (or,
    for a nested level, inside the parents), no overlap, each grid one valid polygon with
    edges matching its neighbours' exactly, children inside their parent and covering it,
    child codes prefixed by the parent's, codes unique, every household in a grid, every
    leaf grid with a worker and no worker holding two grids of one level.

    Parameters
    ----------
    grids : GeoDataFrame
        The ``grids`` layer (``gis_grid.model.LAYERS['grids']``): ``code`` is required;
        ``level`` (default 1), ``parent`` (default: the code less its last ``-`` segment),
        ``institution`` and ``worker`` are used when present. Any CRS.
    territory : GeoDataFrame, GeoSeries or shapely geometry, optional
        The area the top level must cover (a bare geometry is read as EPSG:4326). Without
        it, gaps are the holes in the union of each layer's grids.
    households : GeoDataFrame, optional
        Household points with an optional ``count`` column (default 1 per point).
    staff : DataFrame, optional
        The ``staff`` layer; workers (roles ``worker``, ``part-time``) hold the grids
        listed in ``grids`` (``;``-separated codes), together with ``grids.worker``.
    gap_width, sliver_area, snap_tolerance : float
        Tolerances in metres / m², see the module docstring.
    threads : int, optional
        Threads for GEOS's coverage validation and union of large layers (from
        20,000 grids); default: the CPU count, at most 8. ``1`` runs in one thread.

    Returns
    -------
    ValidationReport
        ``.ok``, ``.problems`` (GeoDataFrame in EPSG:4326), ``.summary``, ``.to_json()``,
        ``.to_geojson(path)``, ``.human()``.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely import box
    >>> grids = gpd.GeoDataFrame({"code": ["A", "B"], "worker": ["w1", "w2"]},
    ...     geometry=[box(110.80, 30.90, 110.81, 30.91), box(110.81, 30.90, 110.82, 30.91)],
    ...     crs="EPSG:4326")
    >>> territory = box(110.80, 30.90, 110.83, 30.91)
    >>> report = validate_grids(grids, territory=territory)
    >>> int(report.summary["gap"]), round(float(report.problems.area_m2.iloc[0]) / 1e6, 2)
    (1, 1.06)
    """
    tol = _Tolerances(float(gap_width), float(sliver_area), float(snap_tolerance))
    layer = _prepare(grids, territory, households)
    check = _Validator(layer, tol, _thread_count(threads))
    check.attributes()
    for g in range(len(layer.groups)):
        check.group(g)
    if layer.territory is not None and layer.empty.all():
        pieces = _pieces(layer.territory)
        area = shapely.area(pieces)
        check._pieces("gap", pieces, np.full(len(pieces), "", dtype=object), 1, None, area,
                      _widths(pieces, tol.mic_tolerance, tol.thresholds),
                      [f"gap of {s:,.2f} m² in the territory: the layer has no grid"
                       for s in area])
    staffing = check.staffing(staff)
    return check.report(_parameters(
        layer, tol, territory=territory is not None, households=households is not None,
        staffing_checked=staffing))


# --------------------------------------------------------------------------------------
# Repair

#: Repair closes gaps and cuts protrusions down to this width (m): below it, a piece is
#: the rounding of projected coordinates (about 1e-9 m), which union and difference would
#: only turn into spikes.
_REPAIR_FLOOR = 1e-6

_STEPS = (
    "made valid",
    "clipped to territory",
    "clipped to parent",
    "overlaps and edges cleaned",
    "gap filled",
    "gave away detached pieces",
    "took detached pieces",
    "took a sliver grid",
    "removed: sliver grid dissolved into its neighbour",
    "removed: no area left",
    "snapped to the territory or parent outline",
)


def _priority_order(layer: _Layer, rows: np.ndarray, priority) -> tuple[np.ndarray, str]:
    """The order to give GEOS and its merge strategy for a stated priority."""
    if priority is None:
        return rows, "longest_border"
    if isinstance(priority, str) and priority in _PRIORITY_STRATEGIES:
        return rows, priority
    if isinstance(priority, str):
        if priority not in layer.frame.columns:
            raise ValueError(
                f"priority {priority!r} is neither a strategy {_PRIORITY_STRATEGIES} nor a "
                f"column of grids")
        key = layer.frame[priority].iloc[rows].reset_index(drop=True)
        rank = key.rank(method="first", na_option="bottom").to_numpy()
        return rows[np.argsort(rank, kind="stable")], "min_index"
    ranks = pd.Series(np.arange(len(priority)), index=list(priority))
    ranks = ranks[~ranks.index.duplicated()]
    rank = pd.Series(layer.code[rows]).map(ranks).fillna(len(ranks)).to_numpy()
    return rows[np.argsort(rank, kind="stable")], "min_index"


def repair_grids(
    grids: gpd.GeoDataFrame,
    *,
    territory: gpd.GeoDataFrame | gpd.GeoSeries | BaseGeometry | None = None,
    households: gpd.GeoDataFrame | None = None,
    snap_tolerance: float = DEFAULT_SNAP_TOLERANCE,
    gap_width: float = DEFAULT_GAP_WIDTH,
    sliver_area: float = DEFAULT_SLIVER_AREA,
    priority: str | Sequence[str] | None = "longest_border",
) -> RepairResult:
    """Repair a grid layer so that it passes ``validate_grids``, listing every change.

    Level by level (parents first), for each institution: invalid rings are made valid;
    grids are clipped to the territory (top level) or to their parent (nested levels);
    GEOS ``coverage_clean`` snaps vertices within ``snap_tolerance``, makes shared edges
    identical, resolves overlaps by ``priority`` and merges gaps narrower than
    ``gap_width``; the gaps left (wider ones inside the territory or parent, or holes of
    the layer when no territory is given) go to the neighbour sharing the longest border
    (of the same parent); detached pieces of a grid and sliver grids (below
    ``sliver_area`` or thinner than ``gap_width``) go the same way. Codes, attributes and
    staff are not changed: problems of that kind remain in ``.remaining``.

    Parameters
    ----------
    grids : GeoDataFrame
        The ``grids`` layer, any CRS.
    territory : GeoDataFrame, GeoSeries or shapely geometry, optional
        What the top level must cover exactly; without it the layer's own outline is kept
        and only holes inside it are filled.
    households : GeoDataFrame, optional
        Household points (``count`` column optional), to count households moved.
    snap_tolerance, gap_width, sliver_area : float
        Tolerances in metres / m² (see the module docstring).
    priority : str or sequence of str
        Who keeps an overlap: ``"longest_border"`` (default, as GEOS), ``"max_area"``,
        ``"min_area"``, ``"min_index"`` (the earlier row), the name of a column (the lower
        value wins, e.g. ``"code"``), or a sequence of codes (earlier wins; unlisted last).

    Returns
    -------
    RepairResult
        ``.grids`` (repaired, same columns), ``.changes`` (per grid: area and households
        gained and lost, what was done), ``.remaining`` (validation after repair).

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely import box
    >>> grids = gpd.GeoDataFrame({"code": ["A", "B"]},
    ...     geometry=[box(110.80, 30.90, 110.811, 30.91), box(110.81, 30.90, 110.82, 30.91)],
    ...     crs="EPSG:4326")
    >>> result = repair_grids(grids, priority=["B"])   # B keeps the overlap
    >>> result.remaining.ok
    True
    >>> result.changes.set_index("code")["area_lost_m2"].round(-3).to_dict()
    {'A': 106000.0, 'B': 0.0}
    """
    tol = _Tolerances(float(gap_width), float(sliver_area), float(snap_tolerance))
    L = _prepare(grids, territory, households)
    n = len(L.code)
    before = L.geoms.copy()
    geoms = L.geoms.copy()
    steps = np.zeros((n, len(_STEPS)), dtype=bool)
    there, back = transformer(L.crs, L.frame.crs), transformer(L.frame.crs, L.crs)

    def fragile(polygons: np.ndarray) -> np.ndarray:
        """Whether each polygon turns invalid stored in the layer's CRS and read back."""
        stored = shapely.transform(polygons, lambda xy: np.column_stack(there.transform(*xy.T)))
        return ~shapely.is_valid(shapely.transform(
            stored, lambda xy: np.column_stack(back.transform(*xy.T))))

    steps[:, 0] = L.fixed
    keep = np.ones(n, dtype=bool)  # False: removed from the layer
    cleaned_any = np.zeros(n, dtype=bool)

    if L.territory is not None:
        shapely.prepare(L.territory)
    # Levels in order (groups are sorted by level): a level is fitted to its parents
    # once they are repaired.
    for g in range(len(L.groups)):
        rows = np.flatnonzero((L.group == g) & ~L.empty)
        if not len(rows):
            continue
        nested = bool((L.parent_idx[rows] >= 0).any())
        _clip_group(L, geoms, rows, nested, tol, steps)
        for _ in range(3):
            rows = rows[~shapely.is_empty(geoms[rows])]
            order, strategy = _priority_order(L, rows, priority)
            # GEOS merges narrow gaps by longest border but knows nothing of parents, so
            # a nested level's gaps are left to the parent-aware fill below.
            gaps = 0.0 if nested else tol.gap_width
            # First with GEOS's own tiny snapping distance (exact noding, area kept to
            # rounding); snapping at snap_tolerance only where near-misses remain, since
            # it may also move vertices of the outline that are merely close together.
            clean = shapely.coverage_clean(geoms[order], gap_width=gaps, snapping_distance=-1,
                                           merge_strategy=strategy)
            if (_flagged(clean, tol.snap_tolerance) | fragile(clean)).any():
                clean = shapely.coverage_clean(clean, gap_width=gaps,
                                               snapping_distance=tol.snap_tolerance,
                                               merge_strategy=strategy)
            clean = _polygonal(clean)
            cleaned_any[order[_moved(geoms[order], clean)]] = True
            geoms[order] = clean
            # Snapping may have pulled a vertex of the outline a hair outside.
            _clip_group(L, geoms, rows, nested, tol, steps)
            rows = rows[~shapely.is_empty(geoms[rows])]
            grew = _fill(L, geoms, rows, tol, nested)
            steps[grew, 4] = True
            _single_parts(L, geoms, rows, tol, steps)
            slivers = _dissolve_slivers(L, geoms, rows, tol, steps)
            keep[slivers] = False
            rows = rows[keep[rows]]
            # Filling and moving pieces add no overlap; one more round only if they left
            # edges that do not match, or a needle that reprojection would turn into a
            # self-intersection: the next round snaps its vertices together.
            if not (_flagged(geoms[rows], tol.snap_tolerance).any()
                    or fragile(geoms[rows]).any()):
                break
    steps[:, 3] = cleaned_any
    gone = shapely.is_empty(geoms) & ~L.empty
    steps[gone & keep, 9] = True
    keep &= ~gone

    changes = _changes(L, before, geoms, steps, keep)
    frame = L.frame.copy()
    repaired = gpd.GeoSeries(geoms, crs=L.crs).to_crs(frame.crs).to_numpy()
    repaired[L.empty] = frame.geometry.to_numpy()[L.empty]
    frame = frame.set_geometry(gpd.GeoSeries(repaired, index=frame.index, crs=frame.crs))
    frame = frame[keep]
    frame.index = grids.index[keep]
    remaining = validate_grids(frame, territory=territory, households=households,
                               gap_width=gap_width, sliver_area=sliver_area,
                               snap_tolerance=snap_tolerance)
    return RepairResult(grids=frame, changes=changes, remaining=remaining)


def _clip_group(L: _Layer, geoms: np.ndarray, rows: np.ndarray, nested: bool,
                tol: _Tolerances, steps: np.ndarray) -> int:
    """Fit the grids to their (already repaired) parent, or to the territory: vertices
    within ``snap_tolerance`` of its outline onto it, then cut what lies outside.
    Returns how many grids were cut."""
    if nested:
        linked = rows[L.parent_idx[rows] >= 0]
        outer = geoms[L.parent_idx[linked]]
        steps[_snap_to_outline(geoms, linked, shapely.boundary(outer), tol), 10] = True
        cut = _clip(geoms, linked, outer, tol)
        steps[cut, 2] = True
    elif L.territory is not None:
        outline = shapely.boundary(L.territory)
        steps[_snap_to_outline(geoms, rows, outline, tol), 10] = True
        cut = _clip(geoms, rows, L.territory, tol)
        steps[cut, 1] = True
    else:
        return 0
    return len(cut)


def _snap_to_outline(geoms: np.ndarray, rows: np.ndarray, outline, tol: _Tolerances):
    """Move, in place, the vertices of ``geoms[rows]`` lying within ``snap_tolerance`` of
    ``outline`` (one line, or one per row) onto it; returns the rows moved.

    A grid a few millimetres off the territory is the same boundary to validation; moved
    onto it, repair keeps the territory's area exactly, rather than filling a sliver a
    few millimetres wide (which leaves vertices a hair apart, fragile once reprojected).
    A vertex shared by neighbours moves alike in each (same point, same nearest point).
    """
    per_row = isinstance(outline, np.ndarray)
    if per_row:
        near = shapely.dwithin(geoms[rows], outline, tol.snap_tolerance)
    else:
        shapely.prepare(outline)
        near = shapely.dwithin(outline, geoms[rows], tol.snap_tolerance)
    rows = rows[near]
    if not len(rows):
        return rows
    xy, which = shapely.get_coordinates(geoms[rows], return_index=True)
    points = shapely.points(xy)
    target = outline[near][which] if per_row else outline
    distance = shapely.distance(points, target)
    move = (distance > _REPAIR_FLOOR) & (distance < tol.snap_tolerance)
    if move.any():
        # Only vertices of the layer's own outline: a corner where grids meet inside,
        # however near the territory's edge, stays where it is.
        edge = shapely.boundary(shapely.union_all(geoms[rows]))
        shapely.prepare(edge)
        move[move] = shapely.dwithin(edge, points[move], 1e-9)
    move = np.flatnonzero(move)
    if not len(move):
        return rows[:0]
    onto = shapely.shortest_line(points[move], target[move] if per_row else target)
    xy[move] = shapely.get_coordinates(shapely.get_point(onto, 1))
    # Onto a vertex of the outline where one is as near: a point a millimetre beside a
    # vertex would be a near-miss of its own.
    corners = shapely.points(np.unique(shapely.get_coordinates(
        outline[near] if per_row else outline), axis=0))
    hit, corner = shapely.STRtree(corners).query_nearest(
        points[move], max_distance=tol.snap_tolerance, all_matches=False)
    xy[move[hit]] = shapely.get_coordinates(corners[corner])
    moved = np.unique(which[move])
    fitted = shapely.set_coordinates(geoms[rows].copy(), xy)[moved]
    bad = ~shapely.is_valid(fitted)
    if bad.any():
        fitted[bad] = _polygonal(shapely.make_valid(fitted[bad], method="structure",
                                                    keep_collapsed=False))
    geoms[rows[moved]] = fitted
    return rows[moved]


def _clip(geoms: np.ndarray, rows: np.ndarray, outer, tol: _Tolerances) -> np.ndarray:
    """Cut off, in place, what of ``geoms[rows]`` lies outside ``outer``; returns the rows
    cut. Parts thinner than ``_REPAIR_FLOOR`` are rounding, left alone (cutting them
    would only add vertices a rounding error away from the old ones)."""
    out = ~shapely.covers(outer, geoms[rows])
    if not out.any():
        return np.empty(0, dtype=int)
    outer = outer[out] if isinstance(outer, np.ndarray) else outer
    rows = rows[out]
    extra = _polygonal(shapely.difference(geoms[rows], outer))
    real = _wider_than(extra, _REPAIR_FLOOR)
    outer = outer[real] if isinstance(outer, np.ndarray) else outer
    rows = rows[real]
    geoms[rows] = _polygonal(shapely.intersection(geoms[rows], outer))
    return rows


def _fill(L: _Layer, geoms: np.ndarray, rows: np.ndarray, tol: _Tolerances,
          nested: bool) -> np.ndarray:
    """Give each gap of the group to the neighbour with the longest shared border.

    A gap of a nested level goes only to a child of the parent it lies in.
    """
    G = geoms[rows]
    # After coverage_clean the group is a coverage, but cutting it to the territory
    # computes each grid's cut apart: GEOS's fast union only for what it finds valid.
    union = _union(G, _flagged(G, 0.0))
    if nested:
        parents = np.unique(L.parent_idx[rows][L.parent_idx[rows] >= 0])
        region = shapely.union_all(geoms[parents])
    elif L.territory is not None:
        region = L.territory
    else:
        region = _filled(union)
    gaps = _pieces(shapely.difference(region, union))
    if nested:
        # A gap on both sides of a parents' border is two gaps, one for each parent.
        gaps, piece_parent = _split_by(gaps, geoms[parents])
        piece_parent = parents[piece_parent]
    # Validation lets pass what is thinner than snap_tolerance; repair closes it too, down
    # to rounding (so that areas add up), but no further.
    wide = _wider_than(gaps, _REPAIR_FLOOR)
    gaps = gaps[wide]
    if not len(gaps):
        return np.empty(0, dtype=int)
    if nested:
        owner = _longest_border_owner(gaps, G, tol.border_tolerance, piece_parent[wide],
                                      L.parent_idx[rows])
    else:
        owner = _longest_border_owner(gaps, G, tol.border_tolerance)
    local = np.where(owner >= 0, rows[np.maximum(owner, 0)], -1)
    return _absorb(geoms, local, gaps)


def _single_parts(L: _Layer, geoms: np.ndarray, rows: np.ndarray, tol: _Tolerances,
                  steps: np.ndarray) -> bool:
    """Keep each grid's largest piece; give the others to the longest-border neighbour."""
    multi = rows[shapely.get_num_geometries(geoms[rows]) > 1]
    if not len(multi):
        return False
    parts, src = shapely.get_parts(geoms[multi], return_index=True)
    area = shapely.area(parts)
    order = np.lexsort((-area, src))
    largest = np.zeros(len(parts), dtype=bool)
    largest[order[np.unique(src[order], return_index=True)[1]]] = True
    detached, source = parts[~largest], multi[src[~largest]]
    source_local = np.searchsorted(rows, source)  # rows is sorted
    owner = _longest_border_owner(detached, geoms[rows], tol.border_tolerance,
                                  L.parent_idx[source], L.parent_idx[rows], source_local)
    if not (owner >= 0).any():
        return False
    given = owner >= 0
    # The source keeps its largest piece and any piece no neighbour borders.
    kept = np.concatenate([parts[largest], detached[~given]])
    kept_src = np.concatenate([multi[src[largest]], source[~given]])
    srt = np.argsort(kept_src, kind="stable")
    rebuilt = np.empty(len(multi), dtype=object)
    local_src = np.searchsorted(multi, kept_src[srt])
    shapely.multipolygons(kept[srt], indices=local_src, out=rebuilt)
    geoms[multi] = _polygonal(rebuilt)
    steps[np.unique(source[given]), 5] = True
    grew = _absorb(geoms, rows[owner[given]], detached[given])
    steps[grew, 6] = True
    return True


def _dissolve_slivers(L: _Layer, geoms: np.ndarray, rows: np.ndarray, tol: _Tolerances,
                      steps: np.ndarray) -> np.ndarray:
    """Merge leaf grids that are slivers into their longest-border neighbour."""
    G = geoms[rows]
    area = shapely.area(G)
    maybe = ((area < tol.sliver_area) | (area < tol.gap_width * shapely.length(G))) \
        & ~L.has_children[rows]
    idx = np.flatnonzero(maybe)
    if not len(idx):
        return np.empty(0, dtype=int)
    width = _widths(G[idx], tol.mic_tolerance, tol.thresholds)
    idx = idx[(area[idx] < tol.sliver_area) | (width < tol.gap_width)]
    if not len(idx):
        return np.empty(0, dtype=int)
    owner = _longest_border_owner(G[idx], G, tol.border_tolerance, L.parent_idx[rows[idx]],
                                  L.parent_idx[rows], idx)
    # A sliver may not receive another sliver: it is about to disappear itself.
    owner[np.isin(owner, idx)] = -1
    give = owner >= 0
    gone = rows[idx[give]]
    grew = _absorb(geoms, rows[owner[give]], G[idx[give]])
    geoms[gone] = shapely.Polygon()
    steps[gone, 8] = True
    steps[grew, 7] = True
    return gone


def _moved(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Whether each geometry changed (not merely re-ordered: rings may start elsewhere)."""
    return ~shapely.equals_exact(shapely.normalize(before), shapely.normalize(after),
                                 tolerance=0.0)


def _changes(L: _Layer, before: np.ndarray, after: np.ndarray, steps: np.ndarray,
             keep: np.ndarray) -> pd.DataFrame:
    changed = np.flatnonzero((_moved(before, after) | ~keep | steps[:, 0]) & ~L.empty)
    gained = _polygonal(shapely.difference(after[changed], before[changed]))
    lost = _polygonal(shapely.difference(before[changed], after[changed]))
    hh_gained = np.zeros(len(changed))
    hh_lost = np.zeros(len(changed))
    if L.points is not None and len(changed):
        for pieces, out in ((gained, hh_gained), (lost, hh_lost)):
            pi, gi = shapely.STRtree(pieces).query(L.points, predicate="intersects")
            out[:] = np.bincount(gi, weights=L.counts[pi], minlength=len(changed))
    labels = np.array(_STEPS, dtype=object)
    what = [", ".join(labels[s]) or "snapped (vertices moved or added)" for s in steps[changed]]
    return pd.DataFrame({
        "code": L.code[changed],
        "area_gained_m2": shapely.area(gained),
        "area_lost_m2": shapely.area(lost),
        "households_gained": np.round(hh_gained).astype(int),
        "households_lost": np.round(hh_lost).astype(int),
        "what": what,
    })
