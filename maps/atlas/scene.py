"""What goes on an atlas page: the layers prepared once, the clipping to a page, the
rows of its table, and the atlas's volumes and overview maps (plan B5, see
ARCHITECTURE.md).

``_Scene`` projects every layer once into the territory's metric CRS, simplifies the
polygons (a level of grids, the townships, the villages as coverages, so neighbours keep
their shared edges), builds an STRtree per polygon layer and keeps the point layers as
coordinate arrays with their category (which picks the symbol) and label. A page takes
what lies in its frame with ``_Polygons.query``, ``_Points.within`` and ``_inside``.
Polygons become matplotlib paths once (``_paths``) and are drawn as one collection per
style (``_add_paths``). ``_fact_row`` and ``_summary_rows`` make the table rows of a grid
page and of an overview.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from matplotlib.collections import PathCollection
from matplotlib.path import Path as MplPath

from maps import data as mapdata
from maps.symbology import GOVERNMENT_COLOUR, GOVERNMENT_LABEL, area_style, institution_colours

VOLUMES = ("urban", "rural")
VOLUME_TITLES = {"urban": "城区卷", "rural": "农村卷"}

#: The three maps of plan B5, in the order they open each volume.
OVERVIEW_MAPS = ("outlets", "devices", "service")
OVERVIEW_TITLES = {"outlets": "物理网点分布图", "devices": "电子机具分布图",
                   "service": "网格人员及服务分布图"}

#: Simplification of the drawn polygons in metres (well under a printed line's width at
#: the scale of a county overview).
DRAW_SIMPLIFY_M = 5.0

#: The levels as printed in titles and tables.
_LEVEL_ZH = {1: "一级", 2: "二级", 3: "三级"}


def _paths(geoms: np.ndarray) -> list[MplPath]:
    """One matplotlib path per (multi)polygon, holes included, built from one ragged
    array of all rings (no per-vertex Python)."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return []
    # Holes wound against their shell: matplotlib and PDF fill by the non-zero rule.
    parts, owner = shapely.get_parts(shapely.orient_polygons(geoms), return_index=True)
    polygons = parts[shapely.get_type_id(parts) == 3]
    owner = owner[shapely.get_type_id(parts) == 3]
    if len(polygons) == 0:
        return [MplPath(np.zeros((0, 2))) for _ in geoms]
    _, coords, (ring_offsets, poly_offsets) = shapely.to_ragged_array(polygons)
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    codes[ring_offsets[:-1]] = MplPath.MOVETO
    codes[ring_offsets[1:] - 1] = MplPath.CLOSEPOLY
    # Coordinate range of each original geometry: its polygons are consecutive parts.
    start = ring_offsets[poly_offsets[:-1]]
    stop = ring_offsets[poly_offsets[1:]]
    present, first = np.unique(owner, return_index=True)
    last = np.r_[first[1:], len(owner)] - 1
    lo = np.full(len(geoms), -1)
    hi = np.full(len(geoms), -1)
    lo[present] = start[first]
    hi[present] = stop[last]
    return [MplPath(coords[a:b], codes[a:b]) if a >= 0 else MplPath(np.zeros((0, 2)))
            for a, b in zip(lo, hi, strict=True)]


@dataclass
class _Points:
    """A point layer in the metric CRS with its category and label."""

    xy: np.ndarray
    category: np.ndarray
    label: np.ndarray
    weight: np.ndarray | None = None

    @classmethod
    def empty(cls) -> _Points:
        return cls(np.zeros((0, 2)), np.array([], dtype=object), np.array([], dtype=object))

    def within(self, box: Sequence[float]) -> np.ndarray:
        x, y = self.xy[:, 0], self.xy[:, 1]
        return np.flatnonzero((x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3]))


class _Polygons:
    """A polygon layer in the metric CRS: simplified geometries, their paths (made on
    first use) and an STRtree for clipping to a page."""

    def __init__(self, geoms: np.ndarray, tolerance: float, coverage: bool) -> None:
        geoms = np.asarray(geoms, dtype=object)
        if tolerance > 0 and len(geoms):
            try:
                simple = shapely.coverage_simplify(geoms, tolerance) if coverage else None
            except shapely.errors.GEOSException:
                simple = None
            geoms = simple if simple is not None else shapely.simplify(
                geoms, tolerance, preserve_topology=True)
        self.geoms = geoms
        self.tree = shapely.STRtree(geoms)
        self._paths: list[MplPath] | None = None

    @property
    def paths(self) -> list[MplPath]:
        if self._paths is None:
            self._paths = _paths(self.geoms)
        return self._paths

    def query(self, box: Sequence[float]) -> np.ndarray:
        return np.sort(self.tree.query(shapely.box(*box)))


class _Scene:
    """Every layer of the atlas projected once into the territory's metric CRS."""

    def __init__(self, layers: dict[str, pd.DataFrame], grids: gpd.GeoDataFrame,
                 facts: pd.DataFrame, crs: pyproj.CRS) -> None:
        self.crs = crs
        self.facts = facts.reset_index(drop=True)
        # Each level is a coverage: simplified level by level, neighbours keep their edges.
        metric = np.asarray(grids.to_crs(crs).geometry.values, dtype=object)
        levels = grids["level"].to_numpy()
        for level in np.unique(levels):
            mask = levels == level
            metric[mask] = _Polygons(metric[mask], DRAW_SIMPLIFY_M, True).geoms
        self.grids = _Polygons(metric, 0.0, False)
        self.grid_index = {code: k for k, code in enumerate(self.facts["code"])}
        self.levels = self.facts["level"].to_numpy()
        self.kinds = self.facts["kind"].fillna("rural").astype(str).to_numpy()
        colours = institution_colours(self.facts["institution_id"])
        self.colours = np.array([colours.get(i, GOVERNMENT_COLOUR) if i else GOVERNMENT_COLOUR
                                 for i in self.facts["institution_id"]], dtype=object)
        self.anchors = shapely.get_coordinates(
            shapely.point_on_surface(self.grids.geoms))

        def polygons(name: str, coverage: bool) -> _Polygons | None:
            frame = layers.get(name)
            if frame is None or len(frame) == 0:
                return None
            return _Polygons(frame.to_crs(crs).geometry.values, DRAW_SIMPLIFY_M, coverage)

        self.territory = polygons("territory", False)
        self.townships = polygons("townships", True)
        self.units = polygons("units", True)
        # A coarse county for the inset: a few hundred vertices at most.
        self.inset_county = _Polygons(self.territory.geoms, 200.0, False) \
            if self.territory is not None else _Polygons(
                self.grids.geoms[self.levels == self.levels.min()], 200.0, True)
        self.inset_townships = _Polygons(self.townships.geoms, 200.0, True) \
            if self.townships is not None else None
        self.areas: list[tuple[str, _Polygons]] = []
        for name in sorted(layers):
            frame = layers[name]
            if area_style(name) is not None and isinstance(frame, gpd.GeoDataFrame):
                frame = mapdata.analysis_rows(name, frame)
                if len(frame):
                    self.areas.append((name, _Polygons(frame.to_crs(crs).geometry.values,
                                                       DRAW_SIMPLIFY_M, False)))
        self.outlets = self._points(layers.get("outlets"), "tier", "name")
        self.devices = self._points(layers.get("devices"), "type", "id")
        staff = mapdata.staff_points(layers.get("staff"), grids)
        self.staff = self._points(staff, "role", "name")
        self.households = _Points.empty()
        homes = layers.get("households")
        if homes is not None and len(homes):
            covered = mapdata.household_coverage(layers, crs)
            xy, count = mapdata.household_points(homes, crs)
            self.households = _Points(xy, covered, np.array([], dtype=object), count)

    def _points(self, frame: pd.DataFrame | None, category: str, label: str) -> _Points:
        if frame is None or len(frame) == 0:
            return _Points.empty()
        geoms = frame.to_crs(self.crs).geometry.values
        keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        return _Points(shapely.get_coordinates(geoms[keep]),
                       frame[category].astype(str).to_numpy()[keep],
                       frame[label].astype(str).to_numpy()[keep])


def _add_paths(ax, paths: list[MplPath], *, facecolors="none", edgecolors="#333333",
               linewidths=0.5, linestyles="-", hatch=None, alpha=None, zorder=1.0) -> None:
    """Draw ``paths`` into ``ax`` as one collection of one style."""
    if not paths:
        return
    collection = PathCollection(paths, facecolors=facecolors, edgecolors=edgecolors,
                                linewidths=linewidths, linestyles=linestyles, hatch=hatch,
                                alpha=alpha, zorder=zorder)
    ax.add_collection(collection, autolim=False)


def _pad(bounds: Sequence[float], fraction: float) -> tuple[float, float, float, float]:
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    pad = fraction * max(maxx - minx, maxy - miny, 1.0)
    return (minx - pad, miny - pad, maxx + pad, maxy + pad)


def _in_box(xy: Sequence[float], box: Sequence[float]) -> bool:
    return box[0] <= xy[0] <= box[2] and box[1] <= xy[1] <= box[3]


def _inside(xy: np.ndarray, geoms) -> np.ndarray:
    """Which points lie in any of ``geoms`` (borders included)."""
    if len(xy) == 0:
        return np.zeros(0, dtype=bool)
    points = shapely.points(xy)
    hit, _ = shapely.STRtree(np.asarray(geoms, dtype=object)).query(
        points, predicate="intersects")
    out = np.zeros(len(xy), dtype=bool)
    out[hit] = True
    return out


def _fmt_int(value) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) \
        else f"{int(round(float(value))):,}"


def _fmt_pct(value) -> str:
    return "—" if value is None or np.isnan(value) else f"{value:.1f}%"


def _mask_phone(phone, show: bool) -> str:
    if phone is None or (isinstance(phone, float) and np.isnan(phone)) or not str(phone):
        return "—"
    phone = str(phone)
    return phone if show else f"{phone[:3]}****{phone[-4:]}"


def _text(value) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) \
        or str(value) in ("", "nan", "None") else str(value)


def _fact_row(scene: _Scene, k: int, show_phones: bool) -> tuple[str, ...]:
    """The table row of grid ``k`` (a grid page lists its grid, then its children)."""
    f = scene.facts.iloc[k]
    return (str(f["code"]), _LEVEL_ZH.get(int(f["level"]), str(f["level"])),
            _text(f["institution"]) if f["institution"] else GOVERNMENT_LABEL,
            _text(f["manager"]), _text(f["worker"]),
            _mask_phone(f["phone"], show_phones), _fmt_int(f["households"]),
            _fmt_int(f["outlets"]), _fmt_int(f["devices"]), _fmt_pct(f["files_pct"]))


def _summary_rows(scene: _Scene, focus: np.ndarray, show_phones: bool
                  ) -> list[tuple[str, ...]]:
    """Overview table: one row per parent grid holding the volume's grids, with the
    volume's households, outlets and devices inside it."""
    facts = scene.facts
    parents = facts["parent"].iloc[focus].fillna("").astype(str).to_numpy()
    rows = []
    for parent in sorted(set(parents)):
        members = focus[parents == parent]
        k = scene.grid_index.get(parent)
        f = facts.iloc[members]
        households = np.nansum(f["households"].to_numpy(float))
        pct = f["files_pct"].to_numpy(float)
        weights = f["households"].to_numpy(float)
        ok = ~np.isnan(pct) & ~np.isnan(weights)
        files = float(np.average(pct[ok], weights=weights[ok])) \
            if ok.any() and weights[ok].sum() > 0 else np.nan
        head = facts.iloc[k] if k is not None else None
        code = f"{parent}（{len(members)} 格）" if parent else f"（{len(members)} 格）"
        rows.append((code,
                     _LEVEL_ZH.get(int(head["level"]), "") if head is not None else "",
                     (_text(head["institution"]) if head is not None
                      and head["institution"] else GOVERNMENT_LABEL),
                     _text(head["manager"]) if head is not None else "—",
                     _text(head["worker"]) if head is not None else "—",
                     _mask_phone(head["phone"], show_phones)
                     if head is not None else "—",
                     _fmt_int(households), _fmt_int(f["outlets"].sum()),
                     _fmt_int(f["devices"].sum()), _fmt_pct(files)))
    return rows
