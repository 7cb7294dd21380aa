"""The interactive map of one territory: a folium (Leaflet) page that works offline.

``build_map`` draws, as layers one switches on and off:

- the county, township and village boundaries (always there, so the map reads without a
  basemap);
- the grids (网格), one overlay per level, filled in the colour of their institution,
  urban grids (城区) with a solid outline and denser fill, rural grids (农村) dashed and
  lighter;
- outlets (物理网点) by tier, devices (电子机具) by type, staff (网格人员) by role;
- covered and uncovered households (住户), summed in small cells;
- service blanks (服务空白区), coverage gaps (网格缺口) and across-bank overlaps
  (跨行重叠) when the analysis layers are given;

with a legend, and tooltips and popups in Chinese giving the grid code, name, level,
institution, outlet, manager, worker, phone (only when the viewer may see phones),
households, outlets, devices and files %.

It works on a network with no internet: every script, stylesheet and image comes from
``maps/static`` (``STATIC_DIR``), referred to under ``static_base`` — ``static/`` next to
a standalone page (``write_map``) or the API's mount point (``maps.web``). folium's own
CDN defaults (jQuery, Bootstrap, Font Awesome …) are replaced, not merely added to. The
basemap is optional: a tile URL of the office's own tile server.

Large layers stay light: polygons are simplified in the territory's metric CRS with
``shapely.coverage_simplify`` (neighbours keep sharing their edges, so the tiling shows
no gap), coordinates are rounded to 1e-5° (about 1 m), points are drawn on one canvas
(``preferCanvas``) or clustered, households are summed per cell, and popups are built
only when opened. The Zigui sample page is 1.5 MB and has every layer on the map about
0.3–0.7 s after navigation in headless Chromium (scripts/bench_maps.py).

Example
-------
>>> from layers.synthetic import sample_layers                   # doctest: +SKIP
>>> html = render_map_html(sample_layers("420527"))              # doctest: +SKIP
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from branca.element import Element, MacroElement
from folium.template import Template

from gis_grid.crs import metric_crs
from gis_grid.errors import GisGridError
from gis_grid.model import STORAGE_CRS
from gis_grid.naming import GRIDS, layer_kind
from maps import data as mapdata
from maps.symbology import (
    AREA_FIELD_LABELS,
    BOUNDARY_STYLES,
    COVERED_COLOUR,
    DEVICE_STYLES,
    FALLBACK_POINT,
    FIELD_LABELS,
    GOVERNMENT_COLOUR,
    GOVERNMENT_LABEL,
    KIND_LABELS,
    KIND_STYLES,
    LEVEL_LABELS,
    LEVEL_WEIGHTS,
    OUTLET_STYLES,
    ROLE_LABELS,
    STAFF_STYLES,
    UNCOVERED_COLOUR,
    area_style,
    institution_colours,
)

#: The folder of the vendored scripts and stylesheets the page loads (see VERSIONS.md).
STATIC_DIR = Path(__file__).resolve().parent / "static"

#: Simplification tolerance of the drawn polygons, metres (GEOS coverage simplification:
#: roughly the square root of the area of the triangles removed). Invisible at the
#: zoom a county is looked at, and it divides the vertex count of a detailed border.
SIMPLIFY_M = 15.0

#: Decimal places kept of a longitude / latitude: 1e-5° is about 1 m.
COORD_DECIMALS = 5


def _scripts(static_base: str) -> list[tuple[str, str]]:
    return [("leaflet", f"{static_base}leaflet/leaflet.js"),
            ("markercluster", f"{static_base}leaflet.markercluster/leaflet.markercluster.js"),
            ("gisgrid", f"{static_base}gisgrid/gisgrid.js")]


def _stylesheets(static_base: str) -> list[tuple[str, str]]:
    return [("leaflet_css", f"{static_base}leaflet/leaflet.css"),
            ("markercluster_css", f"{static_base}leaflet.markercluster/MarkerCluster.css"),
            ("markercluster_default_css",
             f"{static_base}leaflet.markercluster/MarkerCluster.Default.css"),
            ("gisgrid_css", f"{static_base}gisgrid/gisgrid.css")]


class _DataLayer(folium.map.Layer):
    """One overlay drawn by ``gisgrid.js`` from embedded GeoJSON text.

    folium's ``GeoJson`` writes a ``switch`` case per feature for styles and its popups
    per feature; this writes the data once, the styles once, and lets the page build
    popups on demand — a fraction of the size and of the parse time.
    """

    _template = Template("""
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = gisgrid.{{ this.method }}({{ this.config }},
            {{ this.data }});
        {% endmacro %}
    """)

    def __init__(self, name: str, data: str, config: dict, *, cluster: bool = False,
                 show: bool = True, control: bool = True):
        super().__init__(name=name, overlay=True, control=control, show=show)
        self._name = "GisGridLayer"
        self.method = "cluster" if cluster else "features"
        self.config = _script_json({"name": name, **config})
        self.data = data


class _Control(MacroElement):
    """A fixed HTML box (title, legend) added by ``gisgrid.control``."""

    _template = Template("""
        {% macro script(this, kwargs) %}
        gisgrid.control({{ this._parent.get_name() }}, {{ this.html }},
            {{ this.position }}, {{ this.css_class }});
        {% endmacro %}
    """)

    def __init__(self, html_text: str, position: str, css_class: str):
        super().__init__()
        self._name = "GisGridControl"
        self.html = _script_json(html_text)
        self.position = _script_json(position)
        self.css_class = _script_json(css_class)


class _Done(MacroElement):
    _template = Template("""
        {% macro script(this, kwargs) %}
        L.control.scale({imperial: false, position: "bottomleft"})
            .addTo({{ this._parent.get_name() }});
        gisgrid.done({{ this._parent.get_name() }});
        {% endmacro %}
    """)


def _script_json(value) -> str:
    """JSON safe to place inside a ``<script>`` element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _round_coords(geoms: np.ndarray) -> np.ndarray:
    return shapely.transform(geoms, lambda xy: np.round(xy, COORD_DECIMALS))


def _simplified(frame: gpd.GeoDataFrame, crs: pyproj.CRS, tolerance: float,
                coverage: bool = True) -> np.ndarray:
    """``frame``'s polygons simplified in the metric ``crs``, back in EPSG:4326.

    A layer that tiles (grids of one level, townships, villages) goes through
    ``coverage_simplify`` so shared edges are simplified once and stay shared; a layer
    that does not tile is simplified polygon by polygon.
    """
    geoms = frame.to_crs(crs).geometry.values
    if tolerance > 0 and len(geoms):
        simple = None
        if coverage:
            try:
                simple = shapely.coverage_simplify(geoms, tolerance)
            except shapely.errors.GEOSException:
                simple = None  # not a valid coverage: fall back to one by one
        if simple is None:
            simple = shapely.simplify(geoms, tolerance, preserve_topology=True)
        geoms = simple
    back = gpd.GeoSeries(geoms, crs=crs).to_crs(STORAGE_CRS).values
    return _round_coords(np.asarray(back))


def _clean(value):
    """A property value as JSON: None for missing, plain Python numbers and strings."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return None
        return int(value) if float(value).is_integer() else round(float(value), 2)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    text = str(value)
    return None if text in ("nan", "None", "NaT", "<NA>", "") else text


def feature_collection(geoms: np.ndarray, properties: pd.DataFrame | None = None) -> str:
    """GeoJSON FeatureCollection text of ``geoms`` (EPSG:4326) with ``properties``.

    Built with ``shapely.to_geojson`` in one vectorised call; properties with missing
    values are left out of each feature.
    """
    geoms = np.asarray(geoms, dtype=object)
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    geometry = shapely.to_geojson(geoms[keep])
    records: list[dict] = [{} for _ in range(int(keep.sum()))]
    if properties is not None and len(properties.columns):
        rows = properties[keep].to_dict("records")
        records = [{k: v for k, v in ((k, _clean(v)) for k, v in row.items()) if v is not None}
                   for row in rows]
    parts = [f'{{"type":"Feature","geometry":{g},"properties":'
             f'{json.dumps(p, ensure_ascii=False, separators=(",", ":"))}}}'
             for g, p in zip(geometry, records, strict=True)]
    text = '{"type":"FeatureCollection","features":[' + ",".join(parts) + "]}"
    return text.replace("</", "<\\/")


def _fmt_pct(value: float) -> str | None:
    return None if value is None or np.isnan(value) else f"{value:.1f}%"


def _fields(*names: str) -> list[list[str]]:
    return [[n, FIELD_LABELS[n]] for n in names]


class _Legend:
    """Collects legend rows as the layers are made, then renders one HTML box."""

    def __init__(self) -> None:
        self.sections: dict[str, list[str]] = {}

    def add(self, section: str, swatch: str, label: str) -> None:
        row = f"<div>{swatch}{html.escape(label)}</div>"
        rows = self.sections.setdefault(section, [])
        if row not in rows:
            rows.append(row)

    def render(self) -> str:
        out = []
        for section, rows in self.sections.items():
            out.append(f"<h4>{html.escape(section)}</h4>")
            out.extend(rows)
        return "".join(out)


def _fill(colour: str, opacity: float = 0.6, border: str = "rgba(0,0,0,.45)") -> str:
    return (f'<i style="background:{colour};opacity:{max(opacity, 0.35):.2f};'
            f'border-color:{border}"></i>')


def _line(colour: str, dashed: bool = False) -> str:
    cls = "gg-line gg-dash" if dashed else "gg-line"
    return f'<i class="{cls}" style="border-color:{colour}"></i>'


def _dot(colour: str) -> str:
    return f'<i class="gg-dot" style="background:{colour}"></i>'


def _badge(colour: str, letter: str) -> str:
    return f'<i class="gg-badge-key" style="background:{colour}">{html.escape(letter)}</i>'


def _grid_layers(fmap: folium.Map, key: str, grids: gpd.GeoDataFrame, facts: pd.DataFrame,
                 crs: pyproj.CRS, legend: _Legend, colours: dict[str, str], *,
                 phones: bool, tolerance: float, multiple: bool, inst_names: dict) -> None:
    """One overlay per level of one grid layer."""
    suffix = ""
    if multiple:
        # Several grid layers (one per bank): name each by its institutions.
        owners = sorted({str(i) for i in grids.get("institution", pd.Series()).dropna()})
        names = [inst_names.get(i, i) for i in owners]
        suffix = f"（{'、'.join(names) if names else key}）"
    levels = sorted(grids["level"].unique().tolist())
    for level in levels:
        mask = (grids["level"] == level).to_numpy()
        part = grids[mask]
        rows = facts[mask].reset_index(drop=True)
        geoms = _simplified(part, crs, tolerance)
        inst = rows["institution_id"].fillna("")
        kinds = rows["kind"].fillna("rural").astype(str)
        style_keys = (inst + "|" + kinds).tolist()
        unique = sorted(set(style_keys))
        styles = []
        for sk in unique:
            inst_id, kind = sk.split("|")
            colour = colours.get(inst_id, GOVERNMENT_COLOUR)
            ks = KIND_STYLES.get(kind, KIND_STYLES["rural"])
            styles.append({"color": colour, "weight": LEVEL_WEIGHTS.get(level, 1.0),
                           "fillColor": colour,
                           "fillOpacity": ks.fill_opacity if level > 1 else 0.04,
                           "dashArray": ks.dash, "opacity": 0.9})
            legend.add("网格（按机构着色）", _fill(colour),
                       inst_names.get(inst_id, inst_id) if inst_id else GOVERNMENT_LABEL)
        props = pd.DataFrame({
            "_s": [unique.index(sk) for sk in style_keys],
            "code": rows["code"], "name": rows["name"],
            "level": [LEVEL_LABELS.get(int(v), str(v)) for v in rows["level"]],
            "kind": [KIND_LABELS.get(k, k) for k in kinds],
            "zone": rows["zone"],
            "institution": rows["institution"].fillna(GOVERNMENT_LABEL),
            "outlet": rows["outlet"], "manager": rows["manager"],
            "worker": rows["worker"].fillna("未配备"),
            "households": rows["households"], "outlets": rows["outlets"],
            "devices": rows["devices"],
            "files_pct": [_fmt_pct(v) for v in rows["files_pct"]],
        })
        popup = ["code", "level", "kind", "zone", "institution", "outlet", "manager",
                 "worker", "households", "outlets", "devices", "files_pct"]
        if phones:
            props["phone"] = rows["phone"]
            popup.insert(popup.index("worker") + 1, "phone")
        config = {"kind": "polygon", "styles": styles, "title": "name", "subtitle": "code",
                  "tooltip": _fields("worker", "households", "files_pct"),
                  "popup": _fields(*popup)}
        name = LEVEL_LABELS.get(level, f"{level}级网格") + suffix
        _DataLayer(name, feature_collection(geoms, props), config,
                   show=level <= 2).add_to(fmap)
    for kind, ks in KIND_STYLES.items():
        legend.add("网格类型", _line("#333", dashed=ks.dash is not None),
                   f"{KIND_LABELS[kind]}网格" + ("（实线、较深）" if ks.dash is None
                                                 else "（虚线、较浅）"))


def _point_styles(values: pd.Series, styles: dict) -> tuple[list[int], list[dict], list]:
    keys = values.fillna("").astype(str).tolist()
    unique = sorted(set(keys), key=lambda k: (list(styles).index(k) if k in styles else 99, k))
    return [unique.index(k) for k in keys], unique, [styles.get(k, FALLBACK_POINT)
                                                     for k in unique]


def _outlet_layer(fmap, outlets, legend, inst_names) -> None:
    idx, unique, styles = _point_styles(outlets["tier"], OUTLET_STYLES)
    props = pd.DataFrame({
        "_s": idx, "name": outlets["name"], "tier": outlets["tier"],
        "institution": outlets["institution"].map(lambda i: inst_names.get(str(i), i)),
        "status": outlets.get("status"), "id": outlets["id"],
    })
    config = {"kind": "point", "title": "name", "subtitle": "tier",
              "styles": [{"radius": s.radius, "color": "#fff", "weight": 1.2,
                          "fillColor": s.colour, "fillOpacity": 0.95} for s in styles],
              "tooltip": [["institution", "金融机构"]],
              "popup": [["tier", "层级"], ["institution", "金融机构"], ["status", "状态"],
                        ["id", "编号"]]}
    for s in styles:
        legend.add("物理网点（按层级）", _dot(s.colour), s.label)
    _DataLayer("物理网点", feature_collection(outlets.geometry.values, props),
               config).add_to(fmap)


def _device_layer(fmap, devices, legend, inst_names, outlet_names) -> None:
    idx, unique, styles = _point_styles(devices["type"], DEVICE_STYLES)
    props = pd.DataFrame({
        "_s": idx, "type": devices["type"],
        "label": [DEVICE_STYLES.get(t, FALLBACK_POINT).label for t in devices["type"]],
        "institution": devices["institution"].map(lambda i: inst_names.get(str(i), i)),
        "outlet": devices.get("outlet", pd.Series(None, index=devices.index)).map(
            lambda o: outlet_names.get(str(o), o)),
        "id": devices["id"],
    })
    config = {"kind": "point", "title": "label", "subtitle": "id",
              "styles": [{"color": s.colour, "letter": s.letter, "size": 16} for s in styles],
              "tooltip": [["institution", "金融机构"]],
              "popup": [["type", "类型"], ["institution", "金融机构"], ["outlet", "所属网点"],
                        ["id", "编号"]]}
    for s in styles:
        legend.add("电子机具（按类型，聚合显示）", _badge(s.colour, s.letter), s.label)
    _DataLayer("电子机具", feature_collection(devices.geometry.values, props), config,
               cluster=True).add_to(fmap)


def _staff_layer(fmap, staff, legend, inst_names, phones: bool) -> None:
    idx, unique, styles = _point_styles(staff["role"], STAFF_STYLES)
    props = pd.DataFrame({
        "_s": idx, "name": staff["name"],
        "role": [ROLE_LABELS.get(str(r), r) for r in staff["role"]],
        "institution": staff["institution"].map(lambda i: inst_names.get(str(i), i)),
        "grids": staff["grids"],
    })
    popup = [["role", "角色"], ["institution", "金融机构"], ["grids", "负责网格"]]
    if phones:
        props["phone"] = staff["phone"]
        popup.append(["phone", "联系电话"])
    config = {"kind": "point", "title": "name", "subtitle": "role",
              "styles": [{"color": s.colour, "letter": s.letter, "size": 16} for s in styles],
              "tooltip": [["grids", "负责网格"]], "popup": popup, "radius": 35}
    for s in styles:
        legend.add("网格人员（按角色，聚合显示）", _badge(s.colour, s.letter), s.label)
    # Off at first: hundreds of badges over the devices' would bury the grids.
    _DataLayer("网格人员", feature_collection(staff.geometry.values, props), config,
               cluster=True, show=False).add_to(fmap)


def _household_layers(fmap, cells: gpd.GeoDataFrame, legend, cell_m: float) -> None:
    # Area of the circle grows with the households in it; capped so a town centre does
    # not cover its neighbours.
    radius = np.clip(1.0 + np.sqrt(cells["households"].to_numpy(float)) * 0.3, 1.5, 10.0)
    for covered, name, colour in ((True, "已覆盖住户", COVERED_COLOUR),
                                  (False, "未覆盖住户", UNCOVERED_COLOUR)):
        mask = (cells["covered"] == covered).to_numpy()
        props = pd.DataFrame({"_r": np.round(radius[mask], 1),
                              "households": cells["households"][mask].to_numpy(),
                              "what": name})
        config = {"kind": "point", "title": "what",
                  "styles": [{"color": colour, "weight": 0.5, "fillColor": colour,
                              "fillOpacity": 0.45, "opacity": 0.7}],
                  "tooltip": _fields("households")}
        legend.add(f"住户（每 {cell_m:.0f} 米方格合计，圆越大户越多）", _dot(colour), name)
        _DataLayer(name, feature_collection(cells.geometry.values[mask], props), config,
                   show=True).add_to(fmap)


def _area_layer(fmap, name: str, frame: gpd.GeoDataFrame, crs, legend, tolerance) -> None:
    style = area_style(name)
    frame = mapdata.analysis_rows(name, frame)
    if len(frame) == 0:
        return
    geoms = _simplified(frame, crs, tolerance, coverage=False)
    known = [c for c in AREA_FIELD_LABELS if c in frame.columns]
    props = frame[known].reset_index(drop=True)
    if "kind" in props.columns:
        props["kind"] = [KIND_LABELS.get(k, k) for k in props["kind"]]
    title = next((c for c in ("name", "gap", "code") if c in known), None)
    fields = [[c, AREA_FIELD_LABELS[c]] for c in known if c != title]
    config = {"kind": "polygon", "title": title,
              "styles": [{"color": style.colour, "weight": 1.2, "fillColor": style.colour,
                          "fillOpacity": style.fill_opacity}],
              "tooltip": fields[:3], "popup": fields}
    label = style.label + (f"（{name.split('__', 1)[1]}）" if "__" in name else "")
    legend.add("分析结果", _fill(style.colour, style.fill_opacity), label)
    _DataLayer(label, feature_collection(geoms, props), config).add_to(fmap)


def _boundary_layers(fmap, layers, crs, legend, tolerance) -> None:
    for name in ("units", "townships", "territory"):
        frame = layers.get(name)
        if frame is None or len(frame) == 0:
            continue
        spec = BOUNDARY_STYLES[name]
        geoms = _simplified(frame, crs, tolerance, coverage=name != "territory")
        config = {"kind": "line", "interactive": False,
                  "styles": [{"color": spec["colour"], "weight": spec["weight"],
                              "dashArray": spec["dash"], "fill": False, "opacity": 0.9}]}
        legend.add("行政界线", _line(spec["colour"], dashed=True), spec["label"])
        _DataLayer(spec["label"], feature_collection(shapely.boundary(geoms)), config
                   ).add_to(fmap)


def _title(layers: dict, title: str | None) -> tuple[str, str]:
    territory = layers.get("territory")
    name = None
    if territory is not None and len(territory) and "name" in territory.columns:
        name = str(territory["name"].iloc[0])
    head = title or f"{name or ''}金融服务网格图"
    sources = set()
    for frame in layers.values():
        if isinstance(frame, pd.DataFrame) and "source" in frame.columns:
            sources.update(str(s) for s in frame["source"].dropna().unique())
    sub = "含合成样例数据（synthetic），非真实业务数据" if "synthetic" in sources else ""
    return head, sub


def build_map(
    layers: dict[str, pd.DataFrame],
    *,
    basemap_url: str | None = None,
    basemap_attribution: str = "本单位瓦片服务",
    viewer_may_see_phones: bool = False,
    static_base: str = "static/",
    title: str | None = None,
    simplify_m: float = SIMPLIFY_M,
    household_cell_m: float = mapdata.HOUSEHOLD_CELL_M,
) -> folium.Map:
    """The interactive map of a territory's grids, outlets, devices, staff and coverage.

    Parameters
    ----------
    layers
        Layers by name (``gis_grid.model`` names): ``grids`` (required; more grid layers
        may be given as ``grids__NAME``), and when present ``territory``, ``townships``,
        ``units``, ``institutions``, ``outlets``, ``devices``, ``staff``, ``households``,
        ``ledger`` and the analysis layers ``service_blanks``,
        ``units_without_service_point``, ``coverage_gaps``, ``overlaps…``. Any CRS; see
        ``maps.data.load_layers``.
    basemap_url
        A tile URL template of the office's own tile server
        (``http://tiles.intranet/{z}/{x}/{y}.png``); None draws no basemap — the
        boundaries alone orient the reader.
    basemap_attribution
        Attribution shown for the basemap.
    viewer_may_see_phones
        Whether phone numbers go into the page. When False they are not hidden but left
        out: the page's data holds none.
    static_base
        URL prefix of ``STATIC_DIR``'s contents, ending in ``/``: ``static/`` for a page
        saved beside a ``static`` folder, ``/static/maps/`` when the API serves it.
    title
        Title of the page and of its title box (default: ``<territory>金融服务网格图``).
    simplify_m
        Polygon simplification tolerance in metres (0 keeps every vertex).
    household_cell_m
        Side of the cells households are summed in, metres (``maps.data.household_cells``;
        covered or not as ``gis_grid.coverage.access`` decides, unless the households
        carry a ``covered`` column).

    Returns
    -------
    folium.Map
        Save it with ``render_map_html`` / ``write_map``, or ``.get_root().render()``.

    Raises
    ------
    GisGridError
        No ``grids`` layer, or it lacks ``code`` / ``level`` / ``kind``.
    """
    grid_keys = sorted(k for k in layers if layer_kind(k) == GRIDS)
    if not grid_keys:
        raise GisGridError("build_map: no grids layer; give layers['grids']")
    if not static_base.endswith("/"):
        raise GisGridError(f"build_map: static_base {static_base!r} must end with '/'")
    grid_frames = {k: mapdata.check_grids(layers[k]) for k in grid_keys}
    everything = pd.concat([g.geometry for g in grid_frames.values()])
    crs = metric_crs(gpd.GeoSeries(everything.values, crs=STORAGE_CRS))
    west, south, east, north = gpd.GeoSeries(everything.values, crs=STORAGE_CRS).total_bounds

    head, sub = _title(layers, title)
    fmap = folium.Map(location=[(south + north) / 2, (west + east) / 2], zoom_start=10,
                      tiles=None, prefer_canvas=True,
                      zoom_control=True, maxZoom=19, minZoom=4, zoomSnap=0.25)
    # Only the product's own files: folium's CDN defaults are replaced, not extended.
    fmap.default_js = _scripts(static_base)
    fmap.default_css = _stylesheets(static_base)
    # The empty icon stops the browser asking the server for /favicon.ico (a 404 in the
    # console of every page load).
    fmap.get_root().header.add_child(
        Element(f'<title>{html.escape(head)}</title><link rel="icon" href="data:,">'),
        name="title")
    if basemap_url:
        folium.TileLayer(tiles=basemap_url, attr=basemap_attribution, name="底图",
                         overlay=False, control=True, max_zoom=19).add_to(fmap)

    legend = _Legend()
    institutions = layers.get("institutions")
    inst_names = {} if institutions is None else dict(
        zip(institutions["id"].astype(str), institutions["name"].astype(str), strict=True))
    all_insts = set()
    for g in grid_frames.values():
        if "institution" in g.columns:
            all_insts.update(g["institution"].dropna().astype(str))
    colours = institution_colours(all_insts)

    for key, grids in grid_frames.items():
        facts = mapdata.grid_facts(layers, grids)
        _grid_layers(fmap, key, grids, facts, crs, legend, colours,
                     phones=viewer_may_see_phones, tolerance=simplify_m,
                     multiple=len(grid_frames) > 1, inst_names=inst_names)
    for name in sorted(layers):
        frame = layers[name]
        if area_style(name) is not None and isinstance(frame, gpd.GeoDataFrame) and len(frame):
            _area_layer(fmap, name, frame.to_crs(STORAGE_CRS), crs, legend, simplify_m)
    _boundary_layers(fmap, layers, crs, legend, simplify_m)
    if layers.get("households") is not None and len(layers["households"]):
        cells = mapdata.household_cells(layers, crs, cell_m=household_cell_m)
        _household_layers(fmap, cells, legend, household_cell_m)
    outlets = layers.get("outlets")
    outlet_names = {} if outlets is None else dict(
        zip(outlets["id"].astype(str), outlets["name"].astype(str), strict=True))
    if outlets is not None and len(outlets):
        _outlet_layer(fmap, outlets.to_crs(STORAGE_CRS), legend, inst_names)
    devices = layers.get("devices")
    if devices is not None and len(devices):
        _device_layer(fmap, devices.to_crs(STORAGE_CRS), legend, inst_names, outlet_names)
    staff = mapdata.staff_points(layers.get("staff"), grid_frames[grid_keys[0]])
    if len(staff):
        _staff_layer(fmap, staff, legend, inst_names, viewer_may_see_phones)

    title_html = f"{html.escape(head)}" + (f"<span class='gg-sub'>{html.escape(sub)}</span>"
                                           if sub else "")
    _Control(title_html, "topleft", "gg-title").add_to(fmap)
    _Control(legend.render(), "bottomleft", "gg-legend").add_to(fmap)
    folium.LayerControl(collapsed=False, position="topright").add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]])
    _Done().add_to(fmap)
    return fmap


def render_map_html(layers: dict[str, pd.DataFrame], **options) -> str:
    """The map page as one HTML string; ``options`` as ``build_map``."""
    return build_map(layers, **options).get_root().render()


def copy_static(folder: str | Path) -> Path:
    """Copy the page's scripts and stylesheets into ``folder/static``; returns that path."""
    target = Path(folder) / "static"
    shutil.copytree(STATIC_DIR, target, dirs_exist_ok=True)
    return target


def write_map(layers: dict[str, pd.DataFrame], folder: str | Path, **options) -> Path:
    """Write ``folder/map.html`` and its ``folder/static/`` files: a page that opens from
    the disk or any web server with no internet. Returns the HTML path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options.setdefault("static_base", "static/")
    page = render_map_html(layers, **options)
    copy_static(folder)
    path = folder / "map.html"
    path.write_text(page, encoding="utf-8")
    return path
