"""Access indicators in the form of the IMF Financial Access Survey (plan B2, see
ARCHITECTURE.md): outlets, devices and ATMs per 10,000 households, per 10,000 residents
(or adults) and per 1,000 km², per township and for the territory
(:func:`access_indicators`).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gis_grid.coverage.common import (
    _choose_crs,
    _counts,
    _metric,
    _points_xy,
    _polygon_index,
    _positions,
    _text,
    check_layers,
)


def access_indicators(
    touch: gpd.GeoDataFrame,
    townships: gpd.GeoDataFrame,
    *,
    units: gpd.GeoDataFrame | None = None,
    households: gpd.GeoDataFrame | None = None,
    territory: gpd.GeoDataFrame | None = None,
    crs: pyproj.CRS | str | int | None = None,
) -> pd.DataFrame:
    """Access indicators in the form of the IMF Financial Access Survey: outlets and
    devices per 10,000 households, per 10,000 residents (adults when the units carry an
    ``adults`` column) and per 1,000 km², per township and for the territory.

    Touch points are counted where they stand (point in township), not by their ``unit``
    attribute. Households are the household points' counts when given, else the units'
    ``households``; residents the units' ``population``.

    Returns
    -------
    DataFrame
        ``level`` (township / territory), ``code``, ``name``, ``area_km2``,
        ``households``, ``residents`` (or ``adults``), ``outlets``, ``devices``, ``atms``
        (ATM + CRS), and ``outlets_per_10k_households``, ``devices_per_10k_households``,
        ``outlets_per_10k_residents`` …, ``outlets_per_1000km2``, ``devices_per_1000km2``.

    Examples
    --------
    >>> from gis_grid.coverage import touch_points
    >>> towns = gpd.GeoDataFrame({"code": ["420527100000"], "name": ["甲镇"]}, crs=4547,
    ...                          geometry=[shapely.box(0, 0, 10000, 10000)])
    >>> atm = gpd.GeoDataFrame({"id": ["D1"], "institution": ["YCB"], "type": ["ATM"]},
    ...                        crs=4547, geometry=gpd.points_from_xy([5000], [5000]))
    >>> homes = gpd.GeoDataFrame({"count": [2000]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([1000], [1000]))
    >>> t = access_indicators(touch_points(devices=atm), towns, households=homes)
    >>> t.loc[0, ["devices_per_10k_households", "devices_per_1000km2"]].tolist()
    [5.0, 10.0]
    """
    check_layers({"touch points": touch, "townships": townships, "units": units,
                  "households": households, "territory": territory})
    crs = _choose_crs(crs, townships)
    tgeoms = _metric(townships, crs)
    tcode = _text(townships["code"])
    n = len(townships)
    where = _polygon_index(shapely.points(_points_xy(touch, crs)), tgeoms)
    kind = touch["kind"].to_numpy(object)
    category = touch["category"].to_numpy(object)
    outlets = np.bincount(where[(where >= 0) & (kind == "outlet")], minlength=n)
    devices = np.bincount(where[(where >= 0) & (kind == "device")], minlength=n)
    atm = (kind == "device") & np.isin(category, ("ATM", "CRS"))
    atms = np.bincount(where[(where >= 0) & atm], minlength=n)
    parent = (_positions(tcode, _text(units["parent"]))
              if units is not None and "parent" in units else None)
    if households is not None and len(households):
        hidx = _polygon_index(shapely.points(_points_xy(households, crs)), tgeoms)
        hh = np.bincount(hidx[hidx >= 0], _counts(households)[hidx >= 0], minlength=n)
    elif units is not None and parent is not None and "households" in units:
        ok = parent >= 0
        hh = np.bincount(parent[ok], units["households"].to_numpy(float)[ok], minlength=n)
    else:
        hh = np.full(n, np.nan)
    people_col = None
    if units is not None and parent is not None:
        people_col = "adults" if "adults" in units else (
            "population" if "population" in units else None)
    label = "adults" if people_col == "adults" else "residents"
    if people_col is not None:
        ok = parent >= 0
        people = np.bincount(parent[ok], pd.to_numeric(units[people_col], errors="coerce")
                             .fillna(0).to_numpy(float)[ok], minlength=n)
    else:
        people = np.full(n, np.nan)
    area = shapely.area(tgeoms) / 1e6
    t = pd.DataFrame({"level": "township", "code": tcode,
                      "name": _text(townships["name"]) if "name" in townships else tcode,
                      "area_km2": area, "households": hh, label: people,
                      "outlets": outlets, "devices": devices, "atms": atms})
    if territory is not None and len(territory):
        land = shapely.union_all(_metric(territory, crs))
        inside = shapely.contains_xy(land, *_points_xy(touch, crs).T)
        total = {"level": "territory",
                 "code": _text(territory["code"])[0] if "code" in territory else "",
                 "name": _text(territory["name"])[0] if "name" in territory else "",
                 "area_km2": shapely.area(land) / 1e6}
        if households is not None and len(households):
            total["households"] = float(_counts(households).sum())
        else:
            total["households"] = float(np.nansum(hh))
        total[label] = float(np.nansum(people)) if people_col else np.nan
        total["outlets"] = int((inside & (kind == "outlet")).sum())
        total["devices"] = int((inside & (kind == "device")).sum())
        total["atms"] = int((inside & atm).sum())
    else:
        total = {"level": "territory", "code": "", "name": "",
                 "area_km2": float(area.sum()), "households": float(np.nansum(hh)),
                 label: float(np.nansum(people)) if people_col else np.nan,
                 "outlets": int(outlets.sum()), "devices": int(devices.sum()),
                 "atms": int(atms.sum())}
    t = pd.concat([t, pd.DataFrame([total])], ignore_index=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        for what in ("outlets", "devices", "atms"):
            t[f"{what}_per_10k_households"] = np.where(
                t["households"] > 0, 1e4 * t[what] / t["households"], np.nan)
            t[f"{what}_per_10k_{label}"] = np.where(
                t[label] > 0, 1e4 * t[what] / t[label], np.nan)
            t[f"{what}_per_1000km2"] = np.where(
                t["area_km2"] > 0, 1e3 * t[what] / t["area_km2"], np.nan)
    for col in ("households", label):
        if t[col].notna().all():
            t[col] = np.round(t[col]).astype(np.int64)
    return t
