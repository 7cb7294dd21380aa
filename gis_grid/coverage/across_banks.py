"""Across banks (plan B2, see ARCHITECTURE.md): how many institutions' grids cover each
unit, with over-concentrated urban units and rural units no bank's grid covers
(:func:`grid_overlap`), and the Herfindahl-Hirschman index of serving outlets by
institution per township (:func:`outlet_concentration`).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gis_grid.coverage.common import (
    _choose_crs,
    _metric,
    _points_xy,
    _polygon_index,
    _text,
    check_layers,
)
from gis_grid.coverage.points import touch_points


def grid_overlap(
    grids: gpd.GeoDataFrame,
    units: gpd.GeoDataFrame,
    *,
    max_institutions: int = 3,
    min_share: float = 0.5,
    crs: pyproj.CRS | str | int | None = None,
) -> gpd.GeoDataFrame:
    """Across banks (B2): for each unit, how many institutions' grids cover it.

    Every institution's grid layer is merged (``grids`` holds them all, each grid with its
    ``institution``; grids without one — the government grid — are left out). An
    institution covers a unit when its grids of one level cover at least ``min_share`` of
    the unit's area. Urban units covered by more than ``max_institutions`` institutions
    are flagged over-concentrated; rural units covered by none are flagged as blanks.

    Returns
    -------
    GeoDataFrame
        The units: ``code``, ``name``, ``township``, ``kind``, ``institutions`` (count),
        ``institution_ids`` (``;`` separated), ``over_concentrated``, ``blank``.

    Examples
    --------
    >>> units = gpd.GeoDataFrame({"code": ["a", "b"], "kind": ["urban", "rural"]}, crs=4547,
    ...                          geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)])
    >>> grids = gpd.GeoDataFrame({"institution": ["X", "Y"], "level": [1, 1]}, crs=4547,
    ...                          geometry=[shapely.box(0, 0, 1, 1), shapely.box(0, 0, 1, 1)])
    >>> grid_overlap(grids, units, max_institutions=1)[
    ...     ["institutions", "over_concentrated", "blank"]].values.tolist()
    [[2, True, False], [0, False, True]]
    """
    if not 0 < min_share <= 1:
        raise ValueError("grid_overlap: min_share must be in (0, 1]")
    check_layers({"grids": grids, "units": units})
    crs = _choose_crs(crs, units)
    inst = _text(grids["institution"]) if "institution" in grids else np.full(len(grids), None)
    keep = np.array([i is not None and i != "" for i in inst], dtype=bool)
    ggeoms = _metric(grids, crs)[keep]
    inst = inst[keep]
    level = (pd.to_numeric(grids["level"], errors="coerce").fillna(1).astype(int).to_numpy()[keep]
             if "level" in grids else np.ones(len(inst), int))
    ugeoms = _metric(units, crs)
    uarea = shapely.area(ugeoms)
    ui, gi = shapely.STRtree(ggeoms).query(ugeoms, predicate="intersects")
    inter = shapely.area(shapely.intersection(ugeoms[ui], ggeoms[gi]))
    pairs = pd.DataFrame({"u": ui, "inst": inst[gi], "level": level[gi], "area": inter})
    per = pairs.groupby(["u", "inst", "level"])["area"].sum().groupby(["u", "inst"]).max()
    per = per[per.to_numpy() >= min_share * uarea[per.index.get_level_values("u")]]
    ids = per.reset_index().groupby("u")["inst"].agg(lambda s: ";".join(sorted(s)))
    count = per.reset_index().groupby("u").size()
    kind = _text(units["kind"]) if "kind" in units else np.full(len(units), "rural")
    n_inst = count.reindex(range(len(units)), fill_value=0).to_numpy(np.int64)
    out = pd.DataFrame({
        "code": _text(units["code"]),
        "name": _text(units["name"]) if "name" in units else None,
        "township": _text(units["parent"]) if "parent" in units else None,
        "kind": kind,
        "institutions": n_inst,
        "institution_ids": ids.reindex(range(len(units))).fillna("").to_numpy(),
        "over_concentrated": (kind == "urban") & (n_inst > max_institutions),
        "blank": (kind != "urban") & (n_inst == 0),
    })
    return gpd.GeoDataFrame(out, geometry=np.asarray(units.geometry.array, dtype=object),
                            crs=units.crs)


def _hhi(counts: pd.Series) -> tuple[float, str | None, float]:
    total = counts.sum()
    if total == 0:
        return np.nan, None, np.nan
    shares = counts / total
    return float((100 * shares).pow(2).sum()), str(shares.idxmax()), float(shares.max())


def outlet_concentration(outlets: gpd.GeoDataFrame, townships: gpd.GeoDataFrame,
                         *, crs: pyproj.CRS | str | int | None = None) -> pd.DataFrame:
    """Concentration of outlets across institutions: the Herfindahl-Hirschman index
    HHI = Σ (100 · sᵢ)², sᵢ the share of the township's serving outlets held by
    institution i (0–10,000; above 2,500 is commonly read as highly concentrated), per
    township (outlets counted where they stand) and for all of them together.

    Returns
    -------
    DataFrame
        ``level``, ``code``, ``name``, ``outlets``, ``institutions``, ``hhi``,
        ``top_institution``, ``top_share``.

    Examples
    --------
    >>> towns = gpd.GeoDataFrame({"code": ["t"], "name": ["甲"]}, crs=4547,
    ...                          geometry=[shapely.box(0, 0, 10, 10)])
    >>> o = gpd.GeoDataFrame({"id": list("abcd"), "institution": list("XXXY"),
    ...                       "tier": ["分理处"] * 4, "name": list("abcd")}, crs=4547,
    ...                      geometry=gpd.points_from_xy([1, 2, 3, 4], [1, 1, 1, 1]))
    >>> float(outlet_concentration(o, towns).loc[0, "hhi"])   # 75² + 25²
    6250.0
    """
    check_layers({"outlets": outlets, "townships": townships})
    touch = touch_points(outlets)
    crs = _choose_crs(crs, townships)
    where = _polygon_index(shapely.points(_points_xy(touch, crs)), _metric(townships, crs))
    inst = touch["institution"].to_numpy(object)
    tcode = _text(townships["code"])
    tname = _text(townships["name"]) if "name" in townships else tcode
    rows = []
    frame = pd.DataFrame({"t": where, "inst": inst})
    for k in range(len(townships)):
        counts = frame.loc[frame["t"] == k, "inst"].value_counts()
        hhi, top, top_share = _hhi(counts)
        rows.append({"level": "township", "code": tcode[k], "name": tname[k],
                     "outlets": int(counts.sum()), "institutions": int((counts > 0).sum()),
                     "hhi": hhi, "top_institution": top, "top_share": top_share})
    counts = frame.loc[frame["t"] >= 0, "inst"].value_counts()
    hhi, top, top_share = _hhi(counts)
    rows.append({"level": "territory", "code": "", "name": "", "outlets": int(counts.sum()),
                 "institutions": int((counts > 0).sum()), "hhi": hhi,
                 "top_institution": top, "top_share": top_share})
    return pd.DataFrame(rows)
