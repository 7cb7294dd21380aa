"""Covered shares (plan B2, see ARCHITECTURE.md): the share of households within reach of
a touch point per territory, kind of area, township and unit (:func:`coverage_shares`),
per grid (:func:`grid_shares`) and per institution, by its own touch points
(:func:`institution_shares`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.coverage.common import _text, check_layers
from gis_grid.coverage.distances import Access


def _share_table(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    w = frame["count"].to_numpy(float)
    sums = {"households": w,
            "covered": w * frame["covered"].to_numpy(bool),
            "covered_outlet": w * frame["covered_outlet"].to_numpy(bool),
            "covered_device": w * frame["covered_device"].to_numpy(bool)}
    g = (_bincount_sums(frame[keys[0]].to_numpy(), keys[0], sums) if len(keys) == 1
         else None)
    if g is None:
        t = pd.DataFrame({k: frame[k].to_numpy() for k in keys})
        for col, values in sums.items():
            t[col] = values
        t["points"] = 1
        g = t.groupby(keys, dropna=False, sort=True).sum().reset_index() if keys else \
            t.sum().to_frame().T
    g["uncovered"] = g["households"] - g["covered"]
    with np.errstate(invalid="ignore", divide="ignore"):
        for col, name in (("covered", "share"), ("covered_outlet", "share_outlet"),
                          ("covered_device", "share_device")):
            g[name] = np.where(g["households"] > 0, g[col] / g["households"], np.nan)
    for col in ("households", "covered", "covered_outlet", "covered_device", "uncovered",
                "points"):
        g[col] = np.round(g[col].to_numpy(float)).astype(np.int64)
    return g


def _bincount_sums(values: np.ndarray, key: str, sums: Mapping[str, np.ndarray]
                   ) -> pd.DataFrame | None:
    """The sums per value of ``key`` (and ``points``, the rows), as ``groupby(key,
    sort=True).sum()`` gives them, by ``np.bincount`` (a third of the time on 10^6
    households), when it is the same to the last bit: no missing key and whole household
    counts (sums of integers are exact in any order). None otherwise."""
    w = sums["households"]
    if not (w == np.round(w)).all() or not np.isfinite(w).all() or w.sum() >= 2**53:
        return None
    codes, uniques = pd.factorize(values, sort=True)  # a missing key: code -1
    if len(codes) and codes.min() < 0:
        return None
    n = len(uniques)
    g = pd.DataFrame({key: uniques})
    for col, v in sums.items():
        g[col] = np.bincount(codes, v, minlength=n)
    g["points"] = np.bincount(codes, minlength=n).astype(np.int64)
    return g


def coverage_shares(acc: Access, by: str = "unit", *,
                    names: pd.DataFrame | None = None) -> pd.DataFrame:
    """Share of households covered, per ``unit``, ``township``, ``kind`` or ``territory``.

    Parameters
    ----------
    acc
        From :func:`access`.
    by
        ``"unit"``, ``"township"``, ``"kind"`` (urban / rural) or ``"territory"`` (one row).
    names
        A frame with ``code`` and ``name`` (the townships layer) to name the rows by.

    Returns
    -------
    DataFrame
        The key, ``households``, ``covered``, ``covered_outlet``, ``covered_device``,
        ``uncovered``, ``points``, ``share``, ``share_outlet``, ``share_device``.

    Examples
    --------
    >>> from gis_grid.coverage import access, touch_points
    >>> homes = gpd.GeoDataFrame({"count": [1, 3]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([0, 0], [1000, 9000]))
    >>> atm = gpd.GeoDataFrame({"id": ["D1"], "institution": ["YCB"], "type": ["ATM"]},
    ...                        crs=4547, geometry=gpd.points_from_xy([0], [0]))
    >>> acc = access(homes, touch_points(devices=atm))
    >>> coverage_shares(acc, "territory")[["households", "covered", "share"]].values.tolist()
    [[4.0, 1.0, 0.25]]
    """
    h = acc.households
    if by == "territory":
        t = _share_table(h, [])
        t.insert(0, "scope", "territory")
        return t
    column = {"unit": "unit", "township": "township", "kind": "kind"}.get(by)
    if column is None:
        raise ValueError(f"coverage_shares: by must be unit, township, kind or territory, "
                         f"got {by!r}")
    t = _share_table(h, [column]).rename(columns={column: "code" if by != "kind" else "kind"})
    if by == "unit" and acc.units is not None:
        meta = pd.DataFrame(acc.units[["code", "name", "township", "kind"]])
        t = meta.merge(t, on="code", how="left")
        t = _fill_zero(t)
    elif by == "township" and names is not None:
        meta = pd.DataFrame({"code": _text(names["code"]), "name": _text(names["name"])})
        t = meta.merge(t, on="code", how="outer")
        t = _fill_zero(t)
    return t


def _fill_zero(t: pd.DataFrame) -> pd.DataFrame:
    for col in ("households", "covered", "covered_outlet", "covered_device", "uncovered",
                "points"):
        if col in t:
            t[col] = t[col].fillna(0).astype(np.int64)
    return t


def _grid_pairs(acc: Access, grids: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(household row, grid row) pairs: each household point in at most one grid per
    (institution, level) — a point on a shared border goes to the first grid."""
    geoms = np.asarray(grids.geometry.to_crs(acc.households.crs).array, dtype=object)
    tree = shapely.STRtree(geoms)
    hp, gi = tree.query(np.asarray(acc.households.geometry.array, dtype=object),
                        predicate="intersects")
    inst = _text(grids["institution"]) if "institution" in grids else np.full(len(grids), None)
    level = (pd.to_numeric(grids["level"], errors="coerce").fillna(0).astype(int).to_numpy()
             if "level" in grids else np.zeros(len(grids), int))
    key = pd.DataFrame({"h": hp, "i": pd.Series(inst[gi]).fillna("").to_numpy(),
                        "l": level[gi], "g": gi})
    key = key.drop_duplicates(["h", "i", "l"], keep="first")
    return key["h"].to_numpy(), key["g"].to_numpy()


def grid_shares(acc: Access, grids: gpd.GeoDataFrame) -> pd.DataFrame:
    """Share of households covered per grid, by any touch point and by the touch points
    of the grid's own institution.

    Returns
    -------
    DataFrame
        ``code``, ``institution``, ``level``, ``kind``, ``households``, ``covered``,
        ``share``, ``covered_own``, ``share_own`` (NaN for a grid without institution).
    """
    check_layers({"households": acc.households, "grids": grids})
    hp, gi = _grid_pairs(acc, grids)
    w = acc.households["count"].to_numpy(float)[hp]
    cov = acc.households["covered"].to_numpy(bool)[hp]
    inst = _text(grids["institution"]) if "institution" in grids else np.full(len(grids), None)
    own = np.zeros(len(hp), bool)
    for name in acc.covered_by.columns:
        here = inst[gi] == name
        own[here] = acc.covered_by[name].to_numpy(bool)[hp[here]]
    n = len(grids)
    households = np.bincount(gi, w, minlength=n)
    covered = np.bincount(gi, w * cov, minlength=n)
    covered_own = np.bincount(gi, w * own, minlength=n)
    t = pd.DataFrame({
        "code": _text(grids["code"]) if "code" in grids else np.arange(n).astype(str),
        "institution": inst,
        "level": grids["level"].to_numpy() if "level" in grids else 1,
        "kind": _text(grids["kind"]) if "kind" in grids else None,
        "households": np.round(households).astype(np.int64),
        "covered": np.round(covered).astype(np.int64),
    })
    has_own = np.isin(inst, list(acc.covered_by.columns))
    with np.errstate(invalid="ignore", divide="ignore"):
        t["share"] = np.where(households > 0, covered / households, np.nan)
        t["covered_own"] = np.where(has_own, np.round(covered_own), np.nan)
        t["share_own"] = np.where(has_own & (households > 0), covered_own / households, np.nan)
    return t


def institution_shares(acc: Access, *, grids: gpd.GeoDataFrame | None = None,
                       institutions: pd.DataFrame | None = None,
                       areas: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """Per institution, the share of the households of its area that its own touch points
    cover. Its area is the union of its grids where ``grids`` holds grids of it, else the
    units ``areas`` names for it (the units of its ledger rows), else the whole territory.

    Returns
    -------
    DataFrame
        ``institution``, ``name``, ``area`` (grids / ledger / territory), ``households``,
        ``covered_own``, ``share_own``, ``covered_any``, ``share_any``, ``outlets``,
        ``devices``.

    Examples
    --------
    >>> from gis_grid.coverage import access, touch_points
    >>> homes = gpd.GeoDataFrame({"count": [1, 3]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([0, 0], [1000, 9000]))
    >>> atm = gpd.GeoDataFrame({"id": ["D1"], "institution": ["YCB"], "type": ["ATM"]},
    ...                        crs=4547, geometry=gpd.points_from_xy([0], [0]))
    >>> t = institution_shares(access(homes, touch_points(devices=atm)))
    >>> t[["institution", "households", "covered_own"]].values.tolist()
    [['YCB', 4, 1]]
    """
    w = acc.households["count"].to_numpy(float)
    anyc = acc.households["covered"].to_numpy(bool)
    touch_inst = acc.touch["institution"].to_numpy(object)
    touch_kind = acc.touch["kind"].to_numpy(object)
    pairs = None
    ginst = None
    if grids is not None and len(grids) and "institution" in grids:
        pairs = _grid_pairs(acc, grids)
        ginst = _text(grids["institution"])
    known = set(acc.covered_by.columns)
    if institutions is not None and len(institutions):
        known |= set(_text(institutions["id"]))
    rows = []
    for name in sorted(i for i in known if i):
        mask = np.ones(len(w), bool)
        area = "territory"
        if pairs is not None and (ginst == name).any():
            hp, gi = pairs
            mask = np.zeros(len(w), bool)
            mask[hp[ginst[gi] == name]] = True
            area = "grids"
        elif areas is not None and name in areas:
            mask = np.isin(acc.households["unit"].to_numpy(object), list(areas[name]))
            area = "ledger"
        own = (acc.covered_by[name].to_numpy(bool) if name in acc.covered_by
               else np.zeros(len(w), bool))
        total = w[mask].sum()
        rows.append({
            "institution": name, "area": area, "households": int(round(total)),
            "covered_own": int(round((w * own)[mask].sum())),
            "covered_any": int(round((w * anyc)[mask].sum())),
            "outlets": int(((touch_inst == name) & (touch_kind == "outlet")).sum()),
            "devices": int(((touch_inst == name) & (touch_kind == "device")).sum()),
        })
    t = pd.DataFrame(rows, columns=["institution", "area", "households", "covered_own",
                                    "covered_any", "outlets", "devices"])
    with np.errstate(invalid="ignore", divide="ignore"):
        t["share_own"] = np.where(t["households"] > 0,
                                  t["covered_own"] / t["households"].clip(lower=1), np.nan)
        t["share_any"] = np.where(t["households"] > 0,
                                  t["covered_any"] / t["households"].clip(lower=1), np.nan)
    t.insert(1, "name", _names_of(t["institution"], institutions))
    return t


def _names_of(ids: pd.Series, institutions: pd.DataFrame | None) -> list:
    if institutions is None or not len(institutions):
        return list(ids)
    names = dict(zip(_text(institutions["id"]), _text(institutions["name"]), strict=True))
    return [names.get(i, i) for i in ids]
