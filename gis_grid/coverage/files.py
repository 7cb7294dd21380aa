"""Ledger files against the phase targets (plans B6, B7; see ARCHITECTURE.md): the
households, merchants and firms with files (建档) over their totals per grid and per
institution, what is still needed to reach each target (:data:`PHASE_TARGETS`,
:class:`Files`, :func:`files_vs_targets`), and the county-wide (全辖) row, which takes its
totals from the county's own layers and counts each household once (:data:`FILES_RULES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.coverage.common import _fail, _polygon_index, _positions, _text

#: Phase targets of plan B7, as shares: participating villages / communities,
#: urban residents with files, merchants + parks + small firms with files, rural
#: households with files. Year 3 consolidates year 2.
PHASE_TARGETS: dict[int, dict[str, float]] = {
    1: {"participation": 0.40, "urban_households": 0.40, "merchants_firms": 0.50,
        "rural_households": 0.70},
    2: {"participation": 1.0, "urban_households": 1.0, "merchants_firms": 1.0,
        "rural_households": 1.0},
    3: {"participation": 1.0, "urban_households": 1.0, "merchants_firms": 1.0,
        "rural_households": 1.0},
}

#: How the files figures are counted, in Chinese (English follows); written into every
#: report (``meta.definitions``) and its 说明 sheet.
FILES_RULES: dict[str, str] = {
    "participation": (
        "参与村社区比例：某机构本期台账在某村/社区（台账网格所在的村/社区）记有建档（住户、商户或"
        "企业建档数大于0）或走访（贷前调查、贷后核查次数大于0），该村/社区即计为该机构参与；分母为"
        "辖区全部村/社区（村社区图层），不以网格是否覆盖为准。全辖行：任一机构参与的村/社区数 ÷ "
        "全部村/社区数。 A unit participates for a bank when the bank's ledger of the period "
        "records files or visits (surveys, checks) there; over every unit of the territory."),
    "county_households": (
        "全辖住户建档（城镇居民、农户）：分母为住户图层中按城乡类型合计的住户数（与城乡覆盖表一致），"
        "不是各机构台账之和；分子每户只计一次：按村/社区取各机构台账建档住户数的最大值（同一住户可在"
        "多家机构建档，取最大值即至少有这么多住户已建档，为保守下限），且不超过该村/社区的住户数，再按"
        "城乡类型相加。无法归入村/社区的台账行不计入全辖行。 County-wide households: the "
        "households layer's households by kind; a household counts once: per unit the largest "
        "number of households with files in any one bank's ledger, at most the unit's households."),
    "county_merchants_firms": (
        "全辖商户园区小微企业建档：分母按村/社区取市场主体图层中的主体数与各机构台账所记商户企业总数"
        "中的较大值（台账记录多于图层时说明图层不全，报告注意事项中列出）再相加，无市场主体图层时取各"
        "机构台账总数的最大值；分子按村/社区取各机构建档数的最大值，不超过分母。 County-wide "
        "merchants and firms: per unit the larger of the entities layer's count and any bank's "
        "ledger total; files: per unit the largest of any bank's, at most that total."),
}


@dataclass
class Files:
    """Ledger files against the phase targets (B6, B7).

    Attributes
    ----------
    grids
        Per ledger row (grid and institution) of the period: totals, files, shares, the
        grid's targets, what is missing to reach them, ``behind``.
    institutions
        Long table, one row per institution (and ``scope`` territory: all institutions)
        and metric (participation, urban_households, rural_households,
        merchants_firms): ``total``, ``achieved``, ``achieved_share``, ``target``, ``behind``,
        ``shortfall_pp`` (percentage points below target) and ``needed`` (units or files
        still to add to reach it).
    period
        The ledger period used.
    year
        The phase year of the targets.
    notes
        What a reader should know about the county-wide row (ledger rows in no unit,
        ledgers counting more than the layers hold).
    """

    grids: pd.DataFrame
    institutions: pd.DataFrame
    period: str | None
    year: int
    notes: list[str] = field(default_factory=list)


def _needed(target: np.ndarray, total: np.ndarray, achieved: np.ndarray) -> np.ndarray:
    # The smallest whole number of files that reaches the target (1e-9: 0.4 × 10 is 4).
    return np.maximum(0, np.ceil(target * total - 1e-9) - achieved).astype(np.int64)


def _grid_positions(codes: np.ndarray, owners: np.ndarray | None,
                    grids: gpd.GeoDataFrame | None) -> np.ndarray:
    """Row of ``grids`` holding each ledger grid, -1 if none. A ledger row names a grid
    of its institution's layer (grids__nsh), and two banks' layers may use one code, so
    a grid is matched by institution and code where both sides say whose it is, else
    (the government grid's rows, a ledger without owners) by code alone."""
    if grids is None or not len(grids):
        return np.full(len(codes), -1)
    gcode = _text(grids["code"])
    pos = np.full(len(codes), -1)
    if owners is not None and "institution" in grids:
        def pairs(who: np.ndarray, code: np.ndarray) -> np.ndarray:
            return (pd.Series(who, dtype=object).fillna("").astype(str) + "\x1f"
                    + pd.Series(code, dtype=object).fillna("").astype(str)).to_numpy(object)

        pos = _positions(pairs(_text(grids["institution"]), gcode), pairs(owners, codes))
    rest = pos < 0
    if rest.any():
        pos[rest] = _positions(gcode, codes[rest])
    return pos


def _grid_kinds(codes: np.ndarray, units: gpd.GeoDataFrame | None,
                grids: gpd.GeoDataFrame | None, owners: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Kind (urban / rural / None) and unit code of each ledger grid: the unit holding the
    grid's interior point where the grids layer has the grid (matched with its owner,
    ``owners``, the ledger rows' institutions), else the unit whose code the grid's code
    starts with (a ledger kept by village); the grid's own ``kind`` wins where it has
    one."""
    kind = np.full(len(codes), None, dtype=object)
    unit = np.full(len(codes), None, dtype=object)
    gpos = _grid_positions(codes, owners, grids)
    if units is not None and len(units):
        ucode = _text(units["code"])
        ukind = _text(units["kind"]) if "kind" in units else np.full(len(units), None)
        pos = _positions(ucode, np.array([c[:12] if c else None for c in codes], dtype=object))
        if (gpos >= 0).any():
            inner = shapely.point_on_surface(
                np.asarray(grids.geometry.to_crs(units.crs).array, dtype=object))
            at = _polygon_index(inner, np.asarray(units.geometry.array, dtype=object))
            from_grid = np.where(gpos >= 0, at[np.maximum(gpos, 0)], -1)
            pos = np.where(from_grid >= 0, from_grid, pos)
        ok = pos >= 0
        unit[ok] = ucode[pos[ok]]
        kind[ok] = ukind[pos[ok]]
    if grids is not None and len(grids) and "kind" in grids:
        gkind = _text(grids["kind"])
        has = gpos >= 0
        own = np.where(has, gkind[np.maximum(gpos, 0)], None)
        kind = np.where(own != None, own, kind)  # noqa: E711 — elementwise test for None
    return kind, unit


def files_vs_targets(
    ledger: pd.DataFrame,
    *,
    units: gpd.GeoDataFrame | None = None,
    grids: gpd.GeoDataFrame | None = None,
    year: int = 1,
    period: str | None = None,
    households: pd.DataFrame | None = None,
    entities: pd.DataFrame | None = None,
) -> Files:
    """Households, merchants and firms with files (建档) over their totals, per grid and
    per institution, against the phase targets of plan B7 (``PHASE_TARGETS``).

    Targets in year 1: participating villages / communities 40 %, urban residents with
    files 40 %, merchants, parks and small firms 50 %, rural households 70 %; year 2
    (and 3): 100 %. A ledger row names a finest grid of its institution's grid layer:
    it is found in ``grids`` by institution and code, and takes the grid's kind and the
    unit holding the grid's interior point; a row whose grid is not there (a ledger kept
    by village) takes the unit whose code its code starts with. A unit *participates* for
    an institution when its ledger rows of the period there record files or visits
    (``surveys``, ``checks``); the share is over every unit of the territory, for each
    institution and for the territory (any institution). The territory's row counts each
    household once (:data:`FILES_RULES`): totals from ``households`` (by kind) and
    ``entities`` where given, files per unit the most of any one institution, at most the
    unit's total.

    Parameters
    ----------
    ledger
        Rows of the ``ledger`` schema.
    units, grids
        To find each grid's kind and unit.
    year
        Phase year (1, 2 or 3).
    period
        Ledger period to use (``2026-06``); default the latest.
    households
        Household rows with ``count`` and ``unit`` (and ``kind``), e.g.
        ``Access.households``: the territory's totals by kind. Without them the
        territory's totals are per unit the largest of any institution's ledger.
    entities
        Market entities (``entities`` layer, with ``unit`` or points inside ``units``):
        the territory's merchants and firms, per unit at least this many.

    Returns
    -------
    Files

    Examples
    --------
    >>> ledger = pd.DataFrame({"grid": ["g1"], "institution": ["NSH"], "period": ["2026-06"],
    ...     "households_total": [100], "households_files": [50], "merchants_total": [10],
    ...     "merchants_files": [6], "firms_total": [0], "firms_files": [0]})
    >>> units = gpd.GeoDataFrame({"code": ["g1"], "kind": ["rural"]}, crs=4547,
    ...                          geometry=[shapely.box(0, 0, 1, 1)])
    >>> f = files_vs_targets(ledger, units=units)
    >>> row = f.grids.iloc[0]
    >>> float(row["households_target"]), int(row["households_needed"]), bool(row["behind"])
    (0.7, 20, True)
    """
    if year not in PHASE_TARGETS:
        raise ValueError(f"files_vs_targets: year must be one of {sorted(PHASE_TARGETS)}")
    targets = PHASE_TARGETS[year]
    needed_cols = ["grid", "institution", "households_total", "households_files",
                   "merchants_total", "merchants_files", "firms_total", "firms_files"]
    missing = [c for c in needed_cols if c not in ledger]
    if missing:
        _fail("ledger", f"missing columns {missing}")
    if len(ledger) == 0:
        _fail("ledger", "the ledger is empty: there are no files to measure")
    led = ledger
    if "period" in led and led["period"].notna().any():
        periods = sorted(set(_text(led["period"])) - {None})
        if period is None:
            period = periods[-1]
        elif period not in periods:
            _fail("ledger", f"no rows for period {period!r}; the ledger has {periods}")
        led = led.loc[_text(led["period"]) == period]
    led = led.reset_index(drop=True)
    codes = _text(led["grid"])
    kind, unit = _grid_kinds(codes, units, grids, _text(led["institution"]))
    num = {c: pd.to_numeric(led[c], errors="coerce").fillna(0).to_numpy(np.int64)
           for c in needed_cols[2:]}
    g = pd.DataFrame({"grid": codes, "institution": _text(led["institution"]), "unit": unit,
                      "kind": kind})
    g["households_total"] = num["households_total"]
    g["households_files"] = num["households_files"]
    mf_total = num["merchants_total"] + num["firms_total"]
    mf_files = num["merchants_files"] + num["firms_files"]
    with np.errstate(invalid="ignore", divide="ignore"):
        g["households_share"] = np.where(g["households_total"] > 0,
                                         g["households_files"] / g["households_total"], np.nan)
        htarget = np.where(kind == "urban", targets["urban_households"],
                           np.where(kind == "rural", targets["rural_households"], np.nan))
        g["households_target"] = htarget
        g["households_needed"] = _needed(np.nan_to_num(htarget), g["households_total"].to_numpy(),
                                         g["households_files"].to_numpy())
        g["merchants_firms_total"] = mf_total
        g["merchants_firms_files"] = mf_files
        g["merchants_firms_share"] = np.where(mf_total > 0, mf_files / mf_total, np.nan)
        g["merchants_firms_target"] = targets["merchants_firms"]
        g["merchants_firms_needed"] = _needed(np.full(len(g), targets["merchants_firms"]),
                                              mf_total, mf_files)
    g["behind"] = (g["households_needed"] > 0) | (g["merchants_firms_needed"] > 0)
    visits = sum((pd.to_numeric(led[c], errors="coerce").fillna(0).to_numpy(np.int64)
                  for c in ("surveys", "checks") if c in led), np.zeros(len(led), np.int64))
    g["participating"] = (g["households_files"] + mf_files + visits) > 0

    universe = (set(_text(units["code"])) - {None} if units is not None and len(units)
                else set(g["unit"].dropna()))
    county, notes = _county_counts(g, units, households, entities)
    rows = []
    scopes = [("institution", i) for i in sorted(set(g["institution"]) - {None})]
    scopes.append(("territory", None))
    for scope, name in scopes:
        part = g if name is None else g.loc[g["institution"] == name]
        active = set(part.loc[part["participating"], "unit"].dropna())
        metrics = [("participation", len(universe), len(active & universe))]
        if name is None:
            metrics += [(m, *county[m]) for m in ("urban_households", "rural_households",
                                                  "merchants_firms")]
        else:
            for k, label in (("urban", "urban_households"), ("rural", "rural_households")):
                sel = part["kind"] == k
                metrics.append((label, int(part.loc[sel, "households_total"].sum()),
                                int(part.loc[sel, "households_files"].sum())))
            metrics.append(("merchants_firms", int(part["merchants_firms_total"].sum()),
                            int(part["merchants_firms_files"].sum())))
        for metric, total, achieved in metrics:
            target = targets[metric]
            share = achieved / total if total else np.nan
            needed = int(_needed(np.array([target]), np.array([total]),
                                 np.array([achieved]))[0]) if total else 0
            rows.append({"scope": scope, "institution": name, "metric": metric,
                         "total": total, "achieved": achieved, "achieved_share": share,
                         "target": target, "behind": bool(needed > 0),
                         "shortfall_pp": max(0.0, 100 * (target - share)) if total else 0.0,
                         "needed": needed})
    return Files(g, pd.DataFrame(rows), period, year, notes)


def _unit_codes(frame: pd.DataFrame, units: gpd.GeoDataFrame | None) -> np.ndarray:
    """The unit of each row: its ``unit`` where the units layer knows it (or where there
    is no units layer), else the unit holding its point."""
    n = len(frame)
    code = _text(frame["unit"]) if "unit" in frame else np.full(n, None, dtype=object)
    if units is None or not len(units):
        return code
    ucode = _text(units["code"])
    known = _positions(ucode, code) >= 0
    if (~known).any() and isinstance(frame, gpd.GeoDataFrame) and frame.crs is not None:
        pts = np.asarray(frame.geometry.to_crs(units.crs).array, dtype=object)[~known]
        at = _polygon_index(pts, np.asarray(units.geometry.array, dtype=object))
        code[~known] = np.where(at >= 0, ucode[np.maximum(at, 0)], None)
    else:
        code[~known] = None
    return code


def _county_counts(g: pd.DataFrame, units: gpd.GeoDataFrame | None,
                   households: pd.DataFrame | None, entities: pd.DataFrame | None,
                   ) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """The territory's (total, achieved) of urban_households, rural_households and
    merchants_firms, each household / entity counted once (:data:`FILES_RULES`)."""
    notes: list[str] = []
    unmapped = int(g["unit"].isna().sum())
    ukind = {}
    if units is not None and len(units) and "kind" in units:
        ukind = dict(zip(_text(units["code"]), _text(units["kind"]), strict=True))
    # Rows in no unit keep their grid as the key: they cannot be matched across banks.
    key = np.where(g["unit"].notna(), g["unit"].to_numpy(object),
                   "grid:" + g["grid"].fillna("").astype(str).to_numpy(object))
    per = (g.assign(key=key)
           .groupby(["institution", "key"], dropna=False)
           [["households_total", "households_files", "merchants_firms_total",
             "merchants_firms_files"]].sum()
           .groupby(level="key").max())
    row_kind = pd.Series(g["kind"].to_numpy(object), index=key).groupby(level=0).first()
    kind = np.array([ukind.get(k, row_kind.get(k)) for k in per.index], dtype=object)
    out: dict[str, tuple[int, int]] = {}
    files = per["households_files"].to_numpy(np.int64)
    if households is not None and len(households):
        hunit = _unit_codes(households, units)
        count = pd.to_numeric(households["count"], errors="coerce").fillna(0).to_numpy(float)
        hkind = (_text(households["kind"]) if "kind" in households
                 else np.array([ukind.get(u) for u in hunit], dtype=object))
        per_unit = pd.Series(count).groupby(pd.Index(hunit, dtype=object)).sum()
        held = per_unit.reindex(per.index).fillna(0).to_numpy(float)
        over = int(((files > held) & ~per.index.str.startswith("grid:")).sum())
        if over:
            notes.append(f"全辖建档：{over} 个村/社区的台账建档住户数多于住户图层的住户数，全辖行按"
                         f"该村/社区住户数计 (in {over} units a ledger records more households "
                         "with files than the households layer holds: counted at most the "
                         "unit's households)")
        got = np.minimum(files, held)
        for k, label in (("urban", "urban_households"), ("rural", "rural_households")):
            out[label] = (int(round(count[hkind == k].sum())),
                          int(round(got[kind == k].sum())))
    else:
        total = per["households_total"].to_numpy(np.int64)
        got = np.minimum(files, total)
        for k, label in (("urban", "urban_households"), ("rural", "rural_households")):
            out[label] = (int(total[kind == k].sum()), int(got[kind == k].sum()))
    mf_total = per["merchants_firms_total"].to_numpy(np.int64)
    extra = 0
    if entities is not None and len(entities):
        eunit = _unit_codes(entities, units)
        layer = pd.Series(1, index=pd.Index(eunit, dtype=object)).groupby(level=0).sum()
        held = layer.reindex(per.index).fillna(0).to_numpy(np.int64)
        short = int((mf_total > held).sum())
        if short:
            notes.append(f"全辖建档：{short} 个村/社区的台账商户企业总数多于市场主体图层的主体数"
                         f"（图层不全），全辖行在这些村/社区取台账数 (in {short} units a ledger "
                         "counts more merchants and firms than the entities layer holds: the "
                         "county-wide total takes the larger count there)")
        extra = int(layer.drop(per.index, errors="ignore").sum()) + int(pd.isna(eunit).sum())
        mf_total = np.maximum(mf_total, held)
    mf_files = np.minimum(per["merchants_firms_files"].to_numpy(np.int64), mf_total)
    out["merchants_firms"] = (int(mf_total.sum()) + extra, int(mf_files.sum()))
    if unmapped:
        notes.append(f"全辖建档：{unmapped} 行台账无法归入村/社区，不计入全辖行 ({unmapped} "
                     "ledger rows are in no unit: the county-wide row cannot count them once)")
    return out, notes
