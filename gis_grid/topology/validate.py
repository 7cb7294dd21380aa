"""Grid-layer validation: ``validate_grids`` checks a layer against the well-field rule
(不重复、不遗漏, plan code B2) and one worker per grid (一人一格, B4); see ARCHITECTURE.md.
The problem kinds and tolerances are described in ``gis_grid.topology``.

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
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.errors import InputError, Problem
from gis_grid.geometry import polygonal
from gis_grid.model import STORAGE_CRS
from gis_grid.staffing import grid_staffing
from gis_grid.topology.layer import (
    DEFAULT_GAP_WIDTH,
    DEFAULT_SLIVER_AREA,
    DEFAULT_SNAP_TOLERANCE,
    _Layer,
    _prepare,
    _Tolerances,
)
from gis_grid.topology.ops import (
    _filled,
    _invalid_edges,
    _neighbour_codes,
    _overlapping_pairs,
    _pieces,
    _split_by,
    _thread_count,
    _union,
    _unmatched_edges,
    _widths,
)
from gis_grid.topology.report import _COLUMNS, KINDS, ValidationReport

#: Kinds whose geometry is an area in which households are counted.
_AREA_KINDS = ("gap", "parent_uncovered", "overlap", "sliver", "outside_territory",
               "child_outside_parent")


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
        extra = polygonal(shapely.difference(G[idx], outer_bad))
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
        Who staffs which grid is ``gis_grid.staffing.grid_staffing``, the one rule the
        coverage report, the assessment and the maps use too.

        Returns whether there was anything to check (a worker column or a staff table).
        """
        L = self.layer
        if staff is not None and not {"id", "grids"} <= set(staff.columns):
            raise InputError([Problem("staff", None, "grids",
                                      "staff needs the columns id and grids")])
        if "worker" not in L.frame.columns and staff is None:
            return False
        who = grid_staffing(L.frame, staff)
        pairs = pd.DataFrame({"worker": who["workers"], "row": np.arange(len(who))}
                             ).explode("worker").dropna()
        pairs = pairs.astype({"row": int}).drop_duplicates()

        lonely = np.flatnonzero(who["finest"].to_numpy() & ~who["staffed"].to_numpy())
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
        ``.geojson()``, ``.human()``.

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
