"""The coverage report (plans B2, B4, B6–B8; see ARCHITECTURE.md): every analysis of the
package in one call (:func:`coverage_report`), returned as a :class:`CoverageReport` of
tables, layers and the parameters, counts, layers used and definitions (:data:`DEFINITIONS`)
that make every figure traceable; ``to_dict`` for JSON, ``summary`` for people.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gis_grid.coverage.across_banks import grid_overlap, outlet_concentration
from gis_grid.coverage.common import (
    DEFAULT_RADII,
    DISTANCE_COLUMNS,
    Radii,
    _check_near,
    _check_touch_near,
    _fail,
    _metric,
    _points_xy,
    _text,
    check_layers,
    screen_points,
    territory_crs,
)
from gis_grid.coverage.distances import access
from gis_grid.coverage.files import FILES_RULES, PHASE_TARGETS, files_vs_targets
from gis_grid.coverage.gaps import gap_areas, service_blanks, units_without_service_point
from gis_grid.coverage.indicators import access_indicators
from gis_grid.coverage.points import touch_points
from gis_grid.coverage.ranking import CRITERIA, assessment, assessment_weights, blanks_closed
from gis_grid.coverage.shares import coverage_shares, grid_shares, institution_shares
from gis_grid.coverage.staff import staffing
from gis_grid.jsonable import plain


@dataclass
class CoverageReport:
    """Everything ``gisgrid coverage`` reports.

    Attributes
    ----------
    tables
        Named tables (see :func:`coverage_report`), in reading order.
    layers
        Named GeoDataFrames in the storage CRS: ``units_access``, ``service_blanks``,
        ``units_without_service_point``,
        ``coverage_gaps``, ``grid_overlap`` (with grids), ``households_access``.
    meta
        The parameters (radii, year, period), data date, counts, the layers used and the
        definitions of each measure, so that every figure can be traced.
    """

    tables: dict[str, pd.DataFrame]
    layers: dict[str, gpd.GeoDataFrame]
    meta: dict

    def to_dict(self) -> dict:
        """JSON-ready: the meta and each table as a list of records (NaN → None)."""
        return {"meta": self.meta,
                "tables": {name: _records(t) for name, t in self.tables.items()}}

    def summary(self) -> str:
        """A short human summary, in Chinese and English."""
        m = self.meta
        t = self.tables.get("territory")
        lines = [f"{m.get('territory_name') or m.get('territory_code') or ''} 覆盖分析 coverage "
                 f"(半径 radius: 城区 urban {m['radii']['urban_m']:g} m, 农村 rural "
                 f"{m['radii']['rural_m']:g} m; 数据日期 data date {m.get('data_date')})"]
        if t is not None and len(t):
            r = t.iloc[0]
            lines.append(f"  住户覆盖 households covered: {int(r['covered']):,} / "
                         f"{int(r['households']):,} = {100 * r['share']:.1f} %  "
                         f"(网点 outlets {100 * r['share_outlet']:.1f} %, 机具 devices "
                         f"{100 * r['share_device']:.1f} %)")
        for name, label in (("no_point", "无网点无机具村社区 units without outlet or device"),
                            ("blanks", "服务空白(住户均在服务半径外) service blanks")):
            blanks = self.tables.get(name)
            if blanks is not None:
                rural = int((blanks["kind"] == "rural").sum()) if len(blanks) else 0
                lines.append(f"  {label}: {len(blanks)} units ({rural} villages), "
                             f"{int(blanks['households'].sum()) if len(blanks) else 0:,} "
                             "households")
        gaps = self.tables.get("gaps")
        if gaps is not None:
            lines.append(f"  覆盖缺口 gap areas: {len(gaps)} polygons, "
                         f"{gaps['area_km2'].sum():,.1f} km², "
                         f"{int(np.nansum(gaps['households'])):,} households")
        ind = self.tables.get("indicators")
        if ind is not None and (ind["level"] == "territory").any():
            r = ind.loc[ind["level"] == "territory"].iloc[0]
            lines.append(f"  每万户网点 outlets per 10k households "
                         f"{r['outlets_per_10k_households']:.1f}, 每千平方公里 per 1,000 km² "
                         f"{r['outlets_per_1000km2']:.1f}; 机具 devices "
                         f"{r['devices_per_10k_households']:.1f} / "
                         f"{r['devices_per_1000km2']:.1f}")
        over = self.tables.get("overlap")
        if over is not None:
            lines.append(f"  跨机构 across banks: {int(over['over_concentrated'].sum())} urban "
                         f"units over-concentrated, {int(over['blank'].sum())} rural units "
                         "with no bank's grid")
        files = self.tables.get("files")
        if files is not None:
            behind = files.loc[(files["scope"] == "institution") & files["behind"]]
            lines.append(f"  建档 files (year {m.get('year')} targets): {len(behind)} "
                         "institution-metric pairs behind target")
            county = files.loc[files["scope"] == "territory"].set_index("metric")
            if len(county):
                lines.append("  全辖建档 county-wide: " + ", ".join(
                    f"{_FILES_ZH.get(k, k)} {int(r['achieved']):,} / {int(r['total']):,}"
                    for k, r in county.iterrows()))
        rank = self.tables.get("assessment")
        if rank is not None and len(rank):
            top = ", ".join(f"{int(r['rank'])}. {r['name']} {r['score']:.1f}"
                            for _, r in rank.head(6).iterrows() if pd.notna(r["score"]))
            lines.append(f"  考核排名 ranking: {top}")
        for note in m.get("notes", [])[:5]:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


#: The files metrics as the summary names them.
_FILES_ZH = {"participation": "参与村社区 participation", "urban_households": "城镇居民 urban",
             "rural_households": "农户 rural", "merchants_firms": "商户企业 merchants+firms"}


def _as_of(data_date: str | None, files) -> pd.Timestamp | None:
    """The day figures such as "trained within six months" are judged on: the last day of
    the data date (``2026-06`` → 2026-06-30), else of the ledger period, else today."""
    text = data_date or (files.period if files is not None else None)
    if not text:
        return None
    try:
        return pd.Period(str(text), freq="D" if len(str(text)) > 7 else "M").end_time.normalize()
    except ValueError:
        return None


def _records(t: pd.DataFrame) -> list[dict]:
    out = []
    for row in t.to_dict(orient="records"):
        out.append({k: plain(v) for k, v in row.items()})
    return out


def _check_grids_territory(name: str, grids: gpd.GeoDataFrame, land: shapely.Geometry,
                           crs: pyproj.CRS, min_share: float = 0.5) -> None:
    geoms = _metric(grids, crs)
    area = shapely.area(geoms)
    inside = shapely.area(shapely.intersection(geoms, land))
    total = area.sum()
    share = inside.sum() / total if total > 0 else 0.0
    if share < min_share:
        outside = int((inside < 0.5 * area).sum())
        _fail(name, f"{outside} of {len(grids)} grids lie outside the territory "
                    f"({100 * (1 - share):.0f} % of their area): a grid layer from another "
                    "territory?")


def coverage_report(
    *,
    territory: gpd.GeoDataFrame,
    households: gpd.GeoDataFrame,
    outlets: gpd.GeoDataFrame | None = None,
    devices: gpd.GeoDataFrame | None = None,
    units: gpd.GeoDataFrame | None = None,
    townships: gpd.GeoDataFrame | None = None,
    institutions: pd.DataFrame | None = None,
    grids: Mapping[str, gpd.GeoDataFrame] | None = None,
    ledger: pd.DataFrame | None = None,
    staff: pd.DataFrame | None = None,
    entities: gpd.GeoDataFrame | None = None,
    radii: Radii = DEFAULT_RADII,
    institution: str | None = None,
    max_institutions: int = 3,
    year: int = 1,
    period: str | None = None,
    data_date: str | None = None,
    include_households: bool = False,
    layers_used: Mapping[str, str] | None = None,
    weights: Mapping[str, float] | None = None,
    weights_source: str | None = None,
    strict: bool = False,
) -> CoverageReport:
    """Every analysis of the coverage issue in one call, with traceable figures.

    Parameters
    ----------
    territory, households
        Required layers.
    outlets, devices
        Touch points; at least one serving outlet or device.
    units, townships, institutions
        Give kinds of area, shares per unit and township, names.
    grids
        Grid layers by name (``grids``, ``grids__nsh`` …); merged for the across-bank
        tables.
    ledger, staff
        For files against targets, staffing and the assessment.
    entities
        Market entities: the county-wide total of merchants and firms (``files``).
    radii
        Service radii (:class:`Radii`).
    institution
        Measure access through this institution's touch points only (and restrict its
        grids, ledger and staff to it); the across-bank tables still use every bank.
    max_institutions
        Urban units covered by more institutions' grids than this are over-concentrated.
    year, period
        Phase year of the targets; ledger period (default the latest).
    data_date
        What the data date is; default the ledger period.
    include_households
        Add the per-household layer ``households_access`` (large).
    layers_used
        Where each layer came from (``{"households": "store.gpkg:households"}``), for the
        report.
    weights, weights_source
        The assessment's criteria and weights (``gis_grid.coverage.ranking``; default
        ``ASSESSMENT_WEIGHTS``) and where they came from (a file, options), for the
        report's meta ``assessment``.
    strict
        Refuse (``InputError``) household, outlet and device points with broken
        coordinates or beyond the largest radius of the territory, naming each by layer
        and id; by default they are left out, listed in ``meta["left_out"]`` and warned
        of in ``meta["warnings"]`` and the notes. The metric CRS is the territory's
        (``territory_crs``), whatever the points.

    Returns
    -------
    CoverageReport
        Tables ``territory``, ``kinds``, ``townships``, ``units``, ``grids``,
        ``institutions``, ``no_point``, ``blanks``, ``gaps``, ``indicators``, ``overlap``,
        ``concentration``, ``files_grids``, ``files``, ``staffing``, ``staffing_grids``,
        ``assessment`` (those whose inputs were given).

    Raises
    ------
    InputError
        Empty or inconsistent inputs: no touch points, no households, layers in
        different CRSs, a grid layer or points from another territory.
    """
    started = dt.datetime.now(dt.UTC)
    weights = assessment_weights(weights)
    grids = dict(grids or {})
    layers_in = {"territory": territory, "households": households, "outlets": outlets,
                 "devices": devices, "units": units, "townships": townships, **grids}
    check_layers(layers_in, screened=("households", "outlets", "devices"))
    if len(territory) == 0:
        _fail("territory", "the territory layer is empty")
    crs = territory_crs(territory)
    land = shapely.union_all(_metric(territory, crs))
    # Points with broken coordinates or beyond the largest radius: refused (strict) or
    # left out with a warning, by layer and id; the CRS is the territory's alone.
    screened = screen_points({"households": households, "outlets": outlets,
                              "devices": devices}, land, crs, radii.largest, strict=strict)
    far_homes = len(screened.left_out.get("households", ()))
    if far_homes and far_homes > 0.5 * len(households):
        _fail("households", f"{100 * far_homes / len(households):.0f} % of the households "
                            "lie beyond the largest radius of the territory or have no "
                            "usable coordinates: a layer of another territory, or a CRS "
                            "mismatch?")
    given_touch = sum(len(f) for f in (outlets, devices) if f is not None)
    if given_touch and given_touch == sum(len(screened.left_out.get(n, ()))
                                          for n in ("outlets", "devices")):
        _fail("touch points", f"none of the {given_touch} outlets and devices is within "
                              f"{radii.largest / 1000:g} km of the territory: outlets of "
                              "another territory, or a CRS mismatch?")
    households, outlets, devices = (screened.frames[n] for n in
                                    ("households", "outlets", "devices"))
    for name, frame in grids.items():
        if len(frame):
            _check_grids_territory(name, frame, land, crs)
    all_touch = touch_points(outlets, devices)
    if len(all_touch) == 0:
        _fail("touch points", "no touch points: the outlets and devices layers are empty or "
                              "no outlet is serving (营业); coverage cannot be measured")
    _check_touch_near(_points_xy(all_touch, crs), land, radii.largest)
    touch = all_touch if institution is None else touch_points(outlets, devices,
                                                               institution=institution)
    if len(touch) == 0:
        _fail("touch points", f"institution {institution!r} has no serving outlet or device "
                              f"(known: {sorted(set(all_touch['institution']) - {None})})")
    home_xy = screened.xy.get("households")  # projected once, by screen_points
    if home_xy is None:
        home_xy = _points_xy(households, crs)
    _check_near(home_xy, np.array([land]), "households", "the territory", 0.5)
    merged = (pd.concat([g for g in grids.values() if len(g)], ignore_index=True)
              if any(len(g) for g in grids.values()) else None)
    if merged is not None:
        merged = gpd.GeoDataFrame(merged, geometry="geometry", crs=territory.crs)
    own_grids = (merged.loc[_text(merged["institution"]) == institution]
                 if merged is not None and institution is not None and "institution" in merged
                 else merged)

    acc = access(households, touch, units=units, radii=radii, crs=crs, xy=home_xy)
    tables: dict[str, pd.DataFrame] = {}
    layers: dict[str, gpd.GeoDataFrame] = {}
    tables["territory"] = coverage_shares(acc, "territory")
    tables["kinds"] = coverage_shares(acc, "kind")
    if units is not None:
        tables["townships"] = coverage_shares(acc, "township", names=townships)
        tables["units"] = coverage_shares(acc, "unit")
    if own_grids is not None and len(own_grids):
        tables["grids"] = grid_shares(acc, own_grids)
    ledger_areas = None
    if ledger is not None and len(ledger) and units is not None:
        every = files_vs_targets(ledger, units=units, grids=merged, year=year, period=period)
        ledger_areas = {i: set(p["unit"].dropna())
                        for i, p in every.grids.groupby("institution")}
    tables["institutions"] = institution_shares(acc, grids=merged, institutions=institutions,
                                                areas=ledger_areas)
    if institution is not None:
        tables["institutions"] = tables["institutions"].loc[
            tables["institutions"]["institution"] == institution].reset_index(drop=True)
    if units is not None:
        no_point = units_without_service_point(acc)
        tables["no_point"] = pd.DataFrame(no_point.drop(columns="geometry"))
        layers["units_without_service_point"] = no_point
        blanks = service_blanks(acc)
        tables["blanks"] = pd.DataFrame(blanks.drop(columns="geometry"))
        layers["service_blanks"] = blanks
        ua = acc.units.drop(columns=[c for c in DISTANCE_COLUMNS[3:] if c in acc.units])
        layers["units_access"] = ua
    gaps = gap_areas(territory, touch, units=units, radii=radii, acc=acc, crs=crs)
    tables["gaps"] = pd.DataFrame(gaps.drop(columns="geometry"))
    layers["coverage_gaps"] = gaps
    if townships is not None:
        tables["indicators"] = access_indicators(touch, townships, units=units,
                                                 households=households, territory=territory,
                                                 crs=crs)
    if merged is not None and units is not None:
        over = grid_overlap(merged, units, max_institutions=max_institutions, crs=crs)
        tables["overlap"] = pd.DataFrame(over.drop(columns="geometry"))
        layers["grid_overlap"] = over
    if outlets is not None and townships is not None:
        tables["concentration"] = outlet_concentration(outlets, townships, crs=crs)
    files = None
    if ledger is not None and len(ledger):
        led = ledger if institution is None else ledger.loc[
            _text(ledger["institution"]) == institution]
        if len(led):
            files = files_vs_targets(led, units=units, grids=merged, year=year, period=period,
                                     households=acc.households, entities=entities)
            tables["files_grids"] = files.grids
            tables["files"] = files.institutions
    staffed = None
    if staff is not None and len(staff):
        st = staff if institution is None else staff.loc[_text(staff["institution"]) == institution]
        staffed = staffing(st, grids=own_grids, ledger=ledger if institution is None else
                           (ledger.loc[_text(ledger["institution"]) == institution]
                            if ledger is not None else None),
                           at=_as_of(data_date, files))
        tables["staffing"] = staffed.institutions
        if len(staffed.grids):
            tables["staffing_grids"] = staffed.grids
    closed = blanks_closed(acc) if institution is None else None
    tables["assessment"] = assessment(tables["institutions"], files=files, staff=staffed,
                                      closed=closed, weights=weights)
    if include_households:
        layers["households_access"] = acc.households

    counts = {
        "household_points": int(len(households)),
        "households": int(round(acc.households["count"].sum())),
        "touch_points": int(len(touch)),
        "outlets": int((touch["kind"] == "outlet").sum()),
        "devices": int((touch["kind"] == "device").sum()),
        "by_category": {k: int(v) for k, v in touch["key"].value_counts().sort_index().items()},
        "units": int(len(units)) if units is not None else 0,
        "townships": int(len(townships)) if townships is not None else 0,
        "grids": {name: int(len(g)) for name, g in grids.items()},
        "ledger_rows": int(len(ledger)) if ledger is not None else 0,
        "staff": int(len(staff)) if staff is not None else 0,
    }
    notes = [*screened.notes(), *acc.notes, *(files.notes if files is not None else [])]
    if outlets is not None:
        closed_outlets = len(outlets) - int((all_touch["kind"] == "outlet").sum())
        if closed_outlets:
            notes.append(f"{closed_outlets} outlets not serving (停业/筹建) were left out")
    tables_meta = tables.get("indicators")
    if tables_meta is not None and "residents" in tables_meta:
        notes.append("the units give no adult population: indicators are per 10,000 "
                     "residents (常住人口) and per 10,000 households, not per adult")
    if closed is None:
        notes.append("blanks closed are not assessed for a single institution's view")
    zeroed = tables["assessment"].dropna(subset=["note"])
    if len(zeroed):
        notes.append("考核：某项无数据的机构该项得 0 分 (assessment: no figure for a criterion "
                     "scores 0 on it): "
                     + "; ".join(f"{i} ({n})" for i, n in zip(zeroed["institution"],
                                                            zeroed["note"], strict=True)))
    meta = {
        "generated_at": started.isoformat(timespec="seconds"),
        "data_date": data_date or (files.period if files is not None else None),
        "territory_code": _text(territory["code"])[0] if "code" in territory else None,
        "territory_name": _text(territory["name"])[0] if "name" in territory else None,
        "metric_crs": f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else crs.to_string(),
        "radii": radii.as_dict(),
        "institution": institution,
        "max_institutions": max_institutions,
        "year": year,
        "targets": PHASE_TARGETS[year],
        "assessment": {"weights": weights, "source": weights_source or "default",
                       "criteria": CRITERIA},
        "period": files.period if files is not None else None,
        "layers_used": dict(layers_used) if layers_used else
        {k: "given" for k, v in {**layers_in, "institutions": institutions, "ledger": ledger,
                                 "staff": staff}.items() if v is not None},
        "counts": counts,
        "definitions": DEFINITIONS,
        "notes": notes,
        "warnings": screened.notes(),
        "left_out": screened.as_dict(),
    }
    return CoverageReport(tables, layers, meta)


#: What each measure means, written into every report.
DEFINITIONS = {
    "covered": "已覆盖：住户所在城乡类型（城镇/农村）的服务半径内有服务触点（营业网点或电子机具），"
               "在米制坐标系中量算 (a touch point — serving outlet or device — lies within the "
               "radius of the household's kind of area, measured in the metric CRS)",
    "share": "覆盖率：已覆盖住户数 ÷ 住户数（住户点按户数加权） (covered households ÷ "
             "households, household points weighted by count)",
    "no_point": "无网点无机具的村/社区：村/社区范围内（含边界）没有任何营业网点或电子机具；"
                "其住户仍可能被村外的触点覆盖（见「覆盖住户数」「服务空白」列）。"
                "与服务空白分开统计 (a unit with "
                "no serving outlet or device inside it or on its border; its households may "
                "still be reached from outside)",
    "service_blank": "服务空白：村/社区内所有住户到最近服务触点的距离都超过服务半径"
                     "（无住户点的村/社区按其中心计） (a unit none of whose households has a "
                     "touch point within the "
                     "radius; a unit without households: its centre)",
    "d_nearest": "最近触点距离：村/社区内离触点最近的住户到最近服务触点的距离（米） (metres from "
                 "the unit's nearest household to the nearest touch point)",
    "gap_area": "覆盖缺口：辖区内超出所有服务触点服务半径的区域（多边形），"
                "其住户为落在其中的未覆盖住户点 "
                "(part of the territory beyond the radius of every touch point; its households "
                "are the uncovered household points inside)",
    "indicators": "金融服务可得性指标（参照IMF金融可得性调查）：每万户/每万人、"
                  "每千平方公里的网点、机具数；触点按所在位置计 (IMF Financial Access Survey "
                  "form: per 10,000 households / "
                  "residents and per 1,000 km²; touch points counted where they stand)",
    "overlap": "跨机构重叠：某机构同一层级网格覆盖村/社区面积一半以上，"
               "即视为该机构覆盖该村/社区 (an "
               "institution covers a unit when its grids of one level cover at least half of "
               "the unit's area)",
    "hhi": "网点集中度HHI：按机构计营业网点份额，Σ(100×份额)² (Herfindahl-Hirschman index of "
           "serving outlets by institution)",
    "files": "建档率：台账期间已建档数 ÷ 总数，对照方案B7的阶段目标；"
             "机构行为该机构台账之和 (files ÷ "
             "totals of the ledger period against the phase targets of plan B7; an "
             "institution's row sums its ledger)",
    **FILES_RULES,
    "staffing": "一人一格：有网格员（专职或兼职，不含网格管理员）的最细网格 ÷ 最细网格，与 "
                "gisgrid validate 的无网格员 (no_worker) 同一规则 (a finest grid is staffed "
                "when a worker or part-time worker, not a manager, is assigned to it)",
    "trained_share": "培训率：数据日期前六个月内参加过培训的人员 ÷ 人员（原则上每半年培训一次）"
                     " (staff trained within the six months before the data date)",
    "blanks_closed": "填补空白：仅靠该机构的触点才不成为服务空白的村/社区数 (units an institution "
                     "alone keeps from being blanks)",
    "score": "考核总分 = Σ 权重 × 各项得分 (0–1) × 100，权重见「考核权重」（合计为 1）；"
             "某项无数据的机构该项得 0 分并注明 (weighted sum of the criteria × 100; a "
             "criterion without data scores 0, with a note)",
}
