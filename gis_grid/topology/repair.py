"""Grid-layer repair: ``repair_grids`` fixes what geometry can fix so that the layer
passes ``validate_grids``, and lists every change (plan code B2, see ARCHITECTURE.md).

Repair builds on GEOS's ``coverage_clean`` (snapping, exact shared edges, overlaps by the
chosen priority, gaps narrower than ``gap_width``); what it leaves — gaps wider than
``gap_width``, gaps of a nested level (GEOS knows nothing of parents), overhangs, detached
pieces, sliver grids — is given to the neighbour sharing the longest border by the same
rule, in one union per receiving grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.crs import reproject
from gis_grid.geometry import polygonal
from gis_grid.topology.layer import (
    DEFAULT_GAP_WIDTH,
    DEFAULT_SLIVER_AREA,
    DEFAULT_SNAP_TOLERANCE,
    _Layer,
    _prepare,
    _Tolerances,
)
from gis_grid.topology.ops import (
    _absorb,
    _filled,
    _flagged,
    _longest_border_owner,
    _pieces,
    _split_by,
    _union,
    _wider_than,
    _widths,
)
from gis_grid.topology.report import ValidationReport
from gis_grid.topology.validate import validate_grids

_PRIORITY_STRATEGIES = ("longest_border", "max_area", "min_area", "min_index")


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

    def fragile(polygons: np.ndarray) -> np.ndarray:
        """Whether each polygon turns invalid stored in the layer's CRS and read back."""
        stored = reproject(polygons, L.crs, L.frame.crs)
        return ~shapely.is_valid(reproject(stored, L.frame.crs, L.crs))

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
            clean = polygonal(clean)
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
    # Carried back with the vertices validation densified (``gis_grid.crs.reproject``):
    # neighbours keep sharing them.
    repaired = np.asarray(reproject(geoms, L.crs, frame.crs), dtype=object)
    repaired[L.empty] = frame.geometry.to_numpy()[L.empty]
    frame = frame.set_geometry(gpd.GeoSeries(repaired, index=frame.index, crs=frame.crs))
    frame = frame[keep]
    frame.index = grids.index[keep]
    remaining = validate_grids(frame, territory=territory, households=households,
                               gap_width=gap_width, sliver_area=sliver_area,
                               snap_tolerance=snap_tolerance)
    return RepairResult(grids=frame, changes=changes, remaining=remaining)


def _clip_group(L: _Layer, geoms: np.ndarray, rows: np.ndarray, nested: bool,
                tol: _Tolerances, steps: np.ndarray) -> None:
    """Fit the grids to their (already repaired) parent, or to the territory: vertices
    within ``snap_tolerance`` of its outline onto it, then cut what lies outside."""
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
        fitted[bad] = polygonal(shapely.make_valid(fitted[bad], method="structure",
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
    extra = polygonal(shapely.difference(geoms[rows], outer))
    real = _wider_than(extra, _REPAIR_FLOOR)
    outer = outer[real] if isinstance(outer, np.ndarray) else outer
    rows = rows[real]
    geoms[rows] = polygonal(shapely.intersection(geoms[rows], outer))
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
                  steps: np.ndarray) -> None:
    """Keep each grid's largest piece; give the others to the longest-border neighbour."""
    multi = rows[shapely.get_num_geometries(geoms[rows]) > 1]
    if not len(multi):
        return
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
        return
    given = owner >= 0
    # The source keeps its largest piece and any piece no neighbour borders.
    kept = np.concatenate([parts[largest], detached[~given]])
    kept_src = np.concatenate([multi[src[largest]], source[~given]])
    srt = np.argsort(kept_src, kind="stable")
    rebuilt = np.empty(len(multi), dtype=object)
    local_src = np.searchsorted(multi, kept_src[srt])
    shapely.multipolygons(kept[srt], indices=local_src, out=rebuilt)
    geoms[multi] = polygonal(rebuilt)
    steps[np.unique(source[given]), 5] = True
    grew = _absorb(geoms, rows[owner[given]], detached[given])
    steps[grew, 6] = True


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
    gained = polygonal(shapely.difference(after[changed], before[changed]))
    lost = polygonal(shapely.difference(before[changed], after[changed]))
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
