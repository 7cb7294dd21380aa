"""Ledger files against the phase targets (plans B6, B7; see ARCHITECTURE.md): the
households, merchants and firms with files (建档) over their totals per grid and per
institution, what is still needed to reach each target (:data:`PHASE_TARGETS`,
:class:`Files`, :func:`files_vs_targets`).
"""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    grids: pd.DataFrame
    institutions: pd.DataFrame
    period: str | None
    year: int


def _needed(target: np.ndarray, total: np.ndarray, achieved: np.ndarray) -> np.ndarray:
    # The smallest whole number of files that reaches the target (1e-9: 0.4 × 10 is 4).
    return np.maximum(0, np.ceil(target * total - 1e-9) - achieved).astype(np.int64)


def _grid_kinds(codes: np.ndarray, units: gpd.GeoDataFrame | None,
                grids: gpd.GeoDataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Kind (urban / rural / None) and unit code of each ledger grid: the unit holding the
    grid's interior point where the grids layer has the grid, else the unit whose code
    the grid's code starts with; the grid's own ``kind`` wins where it has one."""
    kind = np.full(len(codes), None, dtype=object)
    unit = np.full(len(codes), None, dtype=object)
    gpos = (_positions(_text(grids["code"]), codes) if grids is not None and len(grids)
            else np.full(len(codes), -1))
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
) -> Files:
    """Households, merchants and firms with files (建档) over their totals, per grid and
    per institution, against the phase targets of plan B7 (``PHASE_TARGETS``).

    Targets in year 1: participating villages / communities 40 %, urban residents with
    files 40 %, merchants, parks and small firms 50 %, rural households 70 %; year 2
    (and 3): 100 %. A grid's kind comes from the grids layer, else from the unit whose
    code its code starts with. A unit *participates* when an institution has at least
    one file in a grid of it; an institution's participation is over the units its
    ledger rows cover, the territory's over every unit.

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
    kind, unit = _grid_kinds(codes, units, grids)
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

    rows = []
    scopes = [("institution", i) for i in sorted(set(g["institution"]) - {None})]
    scopes.append(("territory", None))
    all_units = (set(_text(units["code"])) if units is not None and len(units) else None)
    for scope, name in scopes:
        part = g if name is None else g.loc[g["institution"] == name]
        files_any = (part["households_files"] + part["merchants_firms_files"]) > 0
        area_units = set(part["unit"].dropna())
        if name is None and all_units is not None:
            area_units = all_units
        active = set(part.loc[files_any, "unit"].dropna())
        metrics = [("participation", len(area_units), len(active & area_units))]
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
    return Files(g, pd.DataFrame(rows), period, year)
