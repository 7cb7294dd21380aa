"""The page of an atlas: its geometry and its furniture (plan B5, see ARCHITECTURE.md).

Geometry: B5 paper in millimetres, the rectangles of a page's parts (title block, map
frame, inset, legend, table, footer) for a portrait or a landscape page and a table of
so many rows (``_layout``), and the orientation that prints a grid the larger
(``_orientation``).

Furniture, drawn around the map: the reusable sheet of an orientation (``_Sheet``: the
figure, its four axes and the inset's county drawn once), the title block and footer
(``_frame``), the map frame's extent at one scale in x and y (``_map_axes``), the inset
locating the page in the county (``_inset``), the legend (``_legend``), the table
(``_table``), the north arrow and the scale bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from maps.atlas.scene import _add_paths, _Scene
from maps.fonts import CJKFont

#: ISO B5, millimetres (portrait).
B5_MM = (176.0, 250.0)
_MM = 1.0 / 25.4

TABLE_HEADER = ("网格编码", "层级", "金融机构", "网格管理员", "网格员", "联系电话",
                "住户", "网点", "机具", "建档率")
#: Relative widths of the table columns.
TABLE_WIDTHS = (2.3, 0.7, 2.0, 1.1, 1.1, 1.5, 0.9, 0.6, 0.6, 0.8)


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


class _TableSheet:
    """A page that is a table only (the assessment table): a landscape B5 figure whose
    table axes fill the page between the title block and the footer, with ``notes``
    lines below the table."""

    def __init__(self, rows: int) -> None:
        long_, short = B5_MM[1], B5_MM[0]
        page = (long_, short)
        table_y = 40.0
        table_h = min(max(rows, 2) * _ROW_MM, short - 24 - 6 - table_y)
        top = short - 24 - 6
        none = (0.0, 0.0, 0.0, 0.0)
        self.lay = _Layout(size=(long_ * _MM, short * _MM),
                           title=(10 / long_, (short - 9) / short), map=none, inset=none,
                           legend=none, table=_rect(page, 10, top - table_h, long_ - 20,
                                                    table_h),
                           footer=6 / short)
        self.notes_top = (top - table_h - 4) / short
        self.fig = Figure(figsize=self.lay.size)
        self.table = self.fig.add_axes(self.lay.table)
        self.table.axis("off")
        self.table.set_xlim(0, 1)
        self.table.set_ylim(0, 1)


def _frame(sheet: _Sheet, *, title: str, subtitle: str, heading: str, note: str,
           page: int, pages: int) -> None:
    """The title block (title, subtitle, and the atlas and volume at the right) and the
    footer (the source and date ``note``, wrapped, and the page number)."""
    fig, lay = sheet.fig, sheet.lay
    x, y = lay.title
    fig.text(x, y, title, fontsize=14, fontweight="bold", va="top", ha="left")
    fig.text(x, y - 7.2 * _MM / lay.size[1], subtitle, fontsize=8, color="#333333",
             va="top", ha="left")
    fig.text(1 - x, y, heading, fontsize=8, color="#555555", va="top", ha="right")
    width_mm = (1 - 2 * x) * lay.size[0] / _MM - 24  # room left of the page number
    lines = _wrap(note, width_mm, 5.2)
    fig.text(x, lay.footer, "\n".join(lines), fontsize=5.2, color="#444444",
             va="bottom", ha="left", linespacing=1.3)
    fig.text(1 - x, lay.footer, f"第 {page} 页 / 共 {pages} 页", fontsize=7,
             va="bottom", ha="right")


def _map_axes(sheet: _Sheet, box: Sequence[float]):
    """The map axes showing ``box`` grown to the frame's shape, and the box shown."""
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


def _inset(sheet: _Sheet, scene: _Scene, highlight: np.ndarray,
           frame_box: Sequence[float]) -> None:
    """The inset: the ``highlight`` grids in red (ringed when too small to see) and the
    map frame's box over the county drawn with the sheet."""
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


def _legend(sheet: _Sheet, handles: list, font: CJKFont) -> None:
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
    spacing = pitch_in * 72 / (fontsize * font.line_height)
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


def _table(sheet: _Sheet, rows: list[tuple[str, ...]], bold_first: bool,
           font: CJKFont, header: Sequence[str] = TABLE_HEADER,
           widths: Sequence[float] = TABLE_WIDTHS) -> None:
    """The page's table, drawn as one text per column over ruled rows.

    matplotlib's ``Table`` makes a text and a rectangle per cell, and text is the
    dearest thing to draw; a column of lines in one text, at a line pitch equal to
    the row height, prints the same in a tenth of the time.
    """
    ax, lay = sheet.table, sheet.lay
    rows = rows or [("—",) * len(header)]
    n = len(rows) + 1
    height_in = lay.table[3] * lay.size[1]
    row_in = min(_ROW_MM * _MM, height_in / n)
    fontsize = float(np.clip(row_in * 72 * 0.6, 4.0, 6.8))
    h = row_in / height_in  # a row in axes fraction
    edges = np.r_[0.0, np.cumsum(widths)] / sum(widths)
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
    spacing = row_in * 72 / (fontsize * font.line_height)
    for c, label in enumerate(header):
        ax.text(centres[c], 1 - h / 2, label, fontsize=fontsize, fontweight="bold",
                ha="center", va="center", zorder=2)
        ax.text(centres[c], 1 - h, "\n".join(row[c] for row in rows), fontsize=fontsize,
                ha="center", va="top", multialignment="center", linespacing=spacing,
                zorder=2)


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
