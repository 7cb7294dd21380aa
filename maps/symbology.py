"""Symbology shared by the interactive map and the printed atlas.

One place decides how each thing looks, so the screen and the paper agree: the colour of
each institution's grids (金融机构), how urban (城区) and rural (农村) grids differ, the
symbol of each outlet tier (物理网点), device type (电子机具) and staff role (网格人员),
and the colours of covered / uncovered households and of service blanks, coverage gaps
and across-bank overlaps. The Chinese labels of layers and fields live here too.

Colours are plain hex strings, usable by Leaflet (CSS) and matplotlib alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from gis_grid.model import DEVICE_TYPES, OUTLET_TIERS, STAFF_ROLES
from gis_grid.naming import layer_kind

#: Qualitative palette for institutions (colour-blind-safe "Tableau 10" order, minus the
#: grey that is kept for the government grid and the red kept for problems).
INSTITUTION_PALETTE = (
    "#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
    "#ff9da7", "#1b9e77", "#7570b3",
)
#: Grids without an owning institution: the government grid (政府网格).
GOVERNMENT_COLOUR = "#5b6f8a"
GOVERNMENT_LABEL = "政府网格"

KIND_LABELS = {"urban": "城区", "rural": "农村"}
LEVEL_LABELS = {1: "一级网格", 2: "二级网格", 3: "三级网格"}
ROLE_LABELS = {"manager": "网格管理员", "worker": "网格员", "part-time": "兼职网格员"}


@dataclass(frozen=True)
class KindStyle:
    """How a grid of one kind (urban / rural) is told apart on screen and on paper."""

    dash: str | None  # Leaflet dashArray; None for a solid line
    linestyle: str | tuple  # matplotlib linestyle
    fill_opacity: float


#: Urban grids: solid outline, denser fill; rural grids: dashed outline, lighter fill.
KIND_STYLES = {
    "urban": KindStyle(dash=None, linestyle="-", fill_opacity=0.32),
    "rural": KindStyle(dash="6 4", linestyle=(0, (5, 3)), fill_opacity=0.14),
}

#: Outline weight (screen pixels) of each grid level: big grids bold, small grids thin.
LEVEL_WEIGHTS = {1: 3.0, 2: 1.8, 3: 0.8}
#: Outline width (points) of each grid level in the atlas.
LEVEL_LINEWIDTHS = {1: 1.6, 2: 1.0, 3: 0.4}


@dataclass(frozen=True)
class PointStyle:
    """The symbol of one category of points.

    ``marker`` is a matplotlib marker, ``size`` its size in points; ``radius`` the
    Leaflet circle radius in pixels; ``letter`` the one-character badge on screen.
    """

    label: str
    colour: str
    marker: str
    size: float
    radius: float
    letter: str


#: Outlets by tier (B3): tier-1 sub-branches biggest; assisted-service points smallest.
OUTLET_STYLES: dict[str, PointStyle] = {
    "一级支行": PointStyle("一级支行", "#c0392b", "s", 9.0, 8.0, "一"),
    "二级支行": PointStyle("二级支行", "#e67e22", "D", 7.0, 6.5, "二"),
    "分理处": PointStyle("分理处", "#8e44ad", "^", 7.0, 5.5, "分"),
    "助农点": PointStyle("助农点", "#16a085", "o", 4.5, 4.0, "助"),
}

#: Devices by type.
DEVICE_STYLES: dict[str, PointStyle] = {
    "ATM": PointStyle("ATM 自动取款机", "#2c3e50", "s", 5.5, 5.0, "A"),
    "CRS": PointStyle("CRS 存取款一体机", "#2980b9", "D", 5.5, 5.0, "C"),
    "助农取款POS": PointStyle("助农取款 POS", "#27ae60", "o", 4.5, 4.0, "P"),
    "智能终端": PointStyle("智能终端", "#d35400", "^", 5.5, 5.0, "T"),
}

#: Staff by role (B4).
STAFF_STYLES: dict[str, PointStyle] = {
    "manager": PointStyle("网格管理员", "#6c3483", "P", 7.0, 6.0, "管"),
    "worker": PointStyle("网格员", "#1f618d", "o", 5.0, 5.0, "员"),
    "part-time": PointStyle("兼职网格员", "#117a65", "o", 4.5, 4.5, "兼"),
}

assert set(OUTLET_STYLES) == set(OUTLET_TIERS)
assert set(DEVICE_STYLES) == set(DEVICE_TYPES)
assert set(STAFF_STYLES) == set(STAFF_ROLES)

FALLBACK_POINT = PointStyle("其他", "#7f8c8d", "o", 4.0, 4.0, "?")

#: Households within reach of a serving outlet or device, and those without.
COVERED_COLOUR = "#2e86c1"
UNCOVERED_COLOUR = "#e74c3c"


@dataclass(frozen=True)
class AreaStyle:
    """A problem area layer (units without outlet or device, service blanks, coverage
    gaps, overlaps)."""

    label: str
    colour: str
    fill_opacity: float
    hatch: str  # matplotlib hatch of the same area in the atlas


#: Analysis layers of ``gis_grid.coverage``, by layer name (a ``__suffix`` is ignored).
AREA_STYLES: dict[str, AreaStyle] = {
    "service_blanks": AreaStyle("服务空白区", "#e74c3c", 0.35, "xx"),
    "units_without_service_point": AreaStyle("无网点无机具村社区", "#e67e22", 0.25, ".."),
    "coverage_gaps": AreaStyle("网格缺口", "#f1c40f", 0.55, "//"),
    "overlaps": AreaStyle("跨行重叠", "#8e44ad", 0.40, "\\\\"),
}

#: Boundaries drawn when there is no basemap (and over it): county, township, village.
BOUNDARY_STYLES = {
    "territory": {"label": "县界", "colour": "#222222", "weight": 2.6, "dash": "10 4 2 4"},
    "townships": {"label": "乡镇（街道）界", "colour": "#555555", "weight": 1.4,
                  "dash": "6 3"},
    "units": {"label": "村（社区）界", "colour": "#999999", "weight": 0.7, "dash": "2 3"},
}

#: Chinese labels of the fields people ask about, in the order they are shown.
FIELD_LABELS = {
    "code": "网格编码",
    "name": "名称",
    "level": "层级",
    "kind": "类型",
    "zone": "片区",
    "institution": "金融机构",
    "outlet": "服务网点",
    "manager": "网格管理员",
    "worker": "网格员",
    "phone": "联系电话",
    "households": "住户（户）",
    "outlets": "网点数",
    "devices": "机具数",
    "files_pct": "建档率",
}

#: Chinese labels of the columns of the analysis layers (``gis_grid.coverage``).
AREA_FIELD_LABELS = {
    "gap": "缺口编号",
    "code": "编码",
    "name": "名称",
    "township": "乡镇（街道）",
    "kind": "类型",
    "area_km2": "面积（平方公里）",
    "households": "住户（户）",
    "covered": "覆盖住户（户）",
    "points": "住户点数",
    "radius": "服务半径（米）",
    "d_nearest": "距最近触点（米）",
    "nearest": "最近触点",
    "nearest_institution": "最近触点所属机构",
    "institutions": "覆盖机构数",
    "institution_ids": "覆盖机构",
    "units": "涉及村（社区）",
}


def institution_colours(ids) -> dict[str, str]:
    """A colour per institution id, stable for a given set of ids (sorted order).

    The government grid (id ``None`` or empty) always gets ``GOVERNMENT_COLOUR``.

    >>> institution_colours(["YCB", "NSH"])["NSH"]
    '#4e79a7'
    """
    names = sorted({str(i) for i in ids if i is not None and str(i) not in ("", "nan")})
    return {name: INSTITUTION_PALETTE[k % len(INSTITUTION_PALETTE)]
            for k, name in enumerate(names)}


def area_style(layer: str) -> AreaStyle | None:
    """The style of an analysis layer by name (``overlaps__2026`` → ``overlaps``)."""
    base = layer_kind(layer)
    if base.startswith(("overlap", "grid_overlap")):
        base = "overlaps"
    return AREA_STYLES.get(base)
