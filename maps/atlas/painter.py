"""The maps of an atlas page, drawn with matplotlib (plan B5, see ARCHITECTURE.md).

``_Painter`` draws the pages of one atlas run into PDF volumes: the three overview maps
that open each volume (outlets by tier, devices by type, staff by role over grids shaded
by files %) and one page per big grid (its children outlined and labelled, neighbours
named, analysis areas, households, outlets, devices and staff). It keeps one reusable
sheet per orientation (``maps.atlas.layout._Sheet``) and takes its layers from the
prepared scene (``maps.atlas.scene._Scene``); the page furniture (title block, inset,
legend, table, north arrow, scale bar) is drawn by ``maps.atlas.layout``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from maps.atlas.layout import (
    _MM,
    _frame,
    _inset,
    _Layout,
    _legend,
    _map_axes,
    _north_arrow,
    _ordered,
    _orientation,
    _scale_bar,
    _Sheet,
    _table,
    _TableSheet,
    _wrap,
)
from maps.atlas.scene import (
    _LEVEL_ZH,
    OVERVIEW_TITLES,
    VOLUME_TITLES,
    _add_paths,
    _fact_row,
    _in_box,
    _inside,
    _pad,
    _Points,
    _Scene,
    _summary_rows,
)
from maps.fonts import CJKFont
from maps.symbology import (
    AREA_STYLES,
    COVERED_COLOUR,
    DEVICE_STYLES,
    FALLBACK_POINT,
    GOVERNMENT_LABEL,
    KIND_LABELS,
    KIND_STYLES,
    LEVEL_LINEWIDTHS,
    OUTLET_STYLES,
    STAFF_STYLES,
    UNCOVERED_COLOUR,
    area_style,
)

#: The assessment page's columns (the coverage report's ``assessment`` table, B8), their
#: relative widths, and those printed as percentages (as the report's xlsx shows them).
ASSESSMENT_COLUMNS = ("rank", "institution", "name", "coverage", "files", "staffing",
                      "blanks_closed", "blanks_closed_score", "score", "note")
ASSESSMENT_WIDTHS = (0.5, 0.8, 2.2, 0.8, 0.8, 0.8, 1.3, 0.9, 0.7, 3.4)
_ASSESSMENT_PERCENT = ("coverage", "files", "staffing", "blanks_closed_score")
#: The criteria in the weights line, in Chinese.
_CRITERIA_ZH = {"coverage": "覆盖", "files": "建档", "staffing": "人员",
                "blanks_closed": "填补空白"}


def assessment_cell(column: str, value) -> str:
    """How the atlas prints a value of the assessment table: scores 0–1 as percentages
    with one decimal (the xlsx's ``0.0%``), the total score with one decimal, counts and
    ranks as integers, a note by its Chinese part."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if column in _ASSESSMENT_PERCENT:
        return f"{100 * float(value):.1f}%"
    if column == "score":
        return f"{float(value):.1f}"
    if column in ("rank", "blanks_closed"):
        return str(int(value))
    if column == "note":  # "人员得 0 分：无网格 (staffing 0: no grids); …" → the Chinese
        return "；".join(part.split(" (")[0] for part in str(value).split("; "))
    return str(value)


#: Files % classes of the service map (建档率), with their colours (light to dark green).
FILES_BINS = (0, 20, 40, 60, 80, 100.0001)
FILES_COLOURS = ("#edf8e9", "#bae4b3", "#74c476", "#31a354", "#006d2c")
NO_DATA_COLOUR = "#dddddd"


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

    def _page_frame(self, sheet: _Sheet, *, title: str, subtitle: str, volume: str,
                    page: int, pages: int) -> None:
        """The title block and footer of a page of ``volume`` (``layout._frame``)."""
        heading = f"{self.territory_name}金融服务网格图集 · {VOLUME_TITLES[volume]}"
        _frame(sheet, title=title, subtitle=subtitle, heading=heading,
               note=f"{self.source_note}{self.date_note}", page=page, pages=pages)

    # -- map content ---------------------------------------------------------------

    def _base(self, ax, box, focus: np.ndarray, legend: dict, *,
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
            faces = [to_rgba(c, alpha) for c in colours]
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
        """One of the three overview maps (``which``) of ``volume`` over its grids
        ``focus``, with a table row per parent grid."""
        scene = self.scene
        geoms = scene.grids.geoms[focus]
        bounds = shapely.total_bounds(geoms)
        box = _pad(bounds, 0.03)
        rows = _summary_rows(scene, focus, self.show_phones)
        orientation, lay = _orientation(box, len(rows) + 1)
        sheet = self._sheet(orientation, lay)
        ax, view = _map_axes(sheet, box)
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
        self._page_frame(sheet, title=title, subtitle=subtitle, volume=volume, page=page,
                         pages=pages)
        _inset(sheet, scene, focus, view)
        _legend(sheet, _ordered(legend), self.font)
        _table(sheet, rows, bold_first=False, font=self.font)
        pdf.savefig(sheet.fig)

    def grid_page(self, pdf: PdfPages, volume: str, k: int, page: int, pages: int) -> None:
        """The page of big grid ``k``: its children, neighbours, households, outlets,
        devices and staff, with a table row for it and each child."""
        scene = self.scene
        facts = scene.facts
        geom = scene.grids.geoms[k]
        box = _pad(shapely.bounds(geom), 0.06)
        code = facts["code"].iloc[k]
        children = np.flatnonzero(facts["parent"].astype(str).to_numpy() == code)
        orientation, lay = _orientation(box, len(children) + 2)
        sheet = self._sheet(orientation, lay)
        ax, view = _map_axes(sheet, box)
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
        self._page_frame(sheet, title=title, subtitle=subtitle, volume=volume, page=page,
                         pages=pages)
        _inset(sheet, scene, focus, view)
        _legend(sheet, _ordered(legend), self.font)
        rows = [_fact_row(scene, k, self.show_phones)]
        rows += [_fact_row(scene, c, self.show_phones) for c in children]
        _table(sheet, rows, bold_first=True, font=self.font)
        pdf.savefig(sheet.fig)

    # -- the assessment table --------------------------------------------------------

    def assessment_page(self, pdf: PdfPages, volume: str, table, meta: dict, page: int,
                        pages: int) -> None:
        """The assessment table (考核评分表, B8) of every institution, as the coverage
        report computes it (``gis_grid.coverage.ranking.assessment``), with its weights
        and the definition of each criterion."""
        from gis_grid.coverage.ranking import CRITERIA
        from layers.reports import COLUMNS_ZH

        rows = [tuple(assessment_cell(c, r[c]) for c in ASSESSMENT_COLUMNS)
                for r in table.to_dict("records")]
        sheet = _TableSheet(len(rows) + 1)
        weights = meta.get("weights") or {}
        line = " · ".join(f"{_CRITERIA_ZH.get(k, k)} {v:g}" for k, v in weights.items())
        subtitle = (f"{self.territory_name} · 全辖各金融机构 · 总分 = Σ 权重 × 得分 × 100"
                    f" ｜ 权重：{line}（来源：{meta.get('source', 'default')}）")
        self._page_frame(sheet, title="金融服务网格化考核评分表", subtitle=subtitle,
                         volume=volume, page=page, pages=pages)
        header = [COLUMNS_ZH.get(c, c) for c in ASSESSMENT_COLUMNS]
        header[1] = "机构编码"
        _table(sheet, rows, bold_first=False, font=self.font, header=header,
               widths=ASSESSMENT_WIDTHS)
        width_mm = (1 - 2 * sheet.lay.title[0]) * sheet.lay.size[0] / _MM
        notes = ["得分说明（各项得分 0–100%）：", *CRITERIA.values()]
        notes += ["某项无数据的机构该项得 0 分，并在备注中说明。"]
        lines = [w for n in notes for w in _wrap(n, width_mm, 6.0)]
        sheet.fig.text(sheet.lay.title[0], sheet.notes_top, "\n".join(lines), fontsize=6.0,
                       va="top", ha="left", color="#333333", linespacing=1.4)
        pdf.savefig(sheet.fig)
