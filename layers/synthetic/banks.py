"""The banks of a synthetic territory: institutions, outlets, devices, staff, ledger.

``institutions`` (金融机构): six banks named after the county (rural commercial bank NSH,
postal savings bank YCB, ABC, CCB, BOC and a village bank CZB). ``outlets`` (物理网点):
tier-1 sub-branches in the county seat, tier-2 sub-branches and offices at township seats,
assisted-service points (助农点) in villages. ``devices`` (电子机具) at the outlets.
``staff`` (网格人员): grid workers and managers with generated names and mobile numbers.
``ledger`` (台账): one row per unit and bank operating there, for ``PERIOD``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.model import STORAGE_CRS
from layers.synthetic.cells import _Geo, _points
from layers.synthetic.names import _names, _place_name, _town_short

if TYPE_CHECKING:
    from layers.synthetic.county import County

PERIOD = "2026-06"

# --------------------------------------------------------------------------- banks

#: id, name (``{short}`` 秭归, ``{county}`` 秭归县), label in outlet names, type,
#: share of the county's ~300-household grids it staffs, share of its grid workers who are
#: part-time. The rural commercial bank is the lead bank of the grid work (as in Hubei's
#: model) and staffs every grid of the county, with a margin.
_BANKS = (
    ("NSH", "{short}农商行", "{short}农商行", "农村商业银行", 1.10, 0.45),
    ("YCB", "邮储银行{county}支行", "邮储银行", "邮政储蓄银行", 0.22, 0.40),
    ("ABC", "农业银行{short}支行", "农业银行", "国有大型商业银行", 0.12, 0.60),
    ("CCB", "建设银行{short}支行", "建设银行", "国有大型商业银行", 0.08, 0.60),
    ("BOC", "中国银行{short}支行", "中国银行", "国有大型商业银行", 0.08, 0.60),
    ("CZB", "{short}村镇银行", "{short}村镇银行", "村镇银行", 0.10, 0.50),
)
#: Tier-1 sub-branches each bank keeps in the county seat.
_SEAT_BRANCHES = {"NSH": 2, "YCB": 1, "ABC": 2, "CCB": 1, "BOC": 1, "CZB": 1}
#: Probability that a bank keeps an assisted-service point (助农点) in a rural village.
_ASSISTED = {"NSH": 0.55, "YCB": 0.22, "CZB": 0.06}


def _institutions(info: County) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [b[0] for b in _BANKS],
        "name": [b[1].format(short=info.short, county=info.name) for b in _BANKS],
        "type": [b[3] for b in _BANKS],
        "source": "synthetic",
    })


def _bank_label(bank: str, info: County) -> str:
    return next(b[2] for b in _BANKS if b[0] == bank).format(short=info.short, county=info.name)


def _outlets(
    rng: np.random.Generator, info: County, towns: pd.DataFrame, units: pd.DataFrame,
    geo: _Geo, seats: np.ndarray, county_seat: tuple[np.ndarray, np.ndarray],
) -> gpd.GeoDataFrame:
    """Tier-1 sub-branches in the county seat, tier-2 sub-branches and offices at township
    seats, assisted-service points in villages."""
    town = units["town"].to_numpy()
    urban = units["kind"].to_numpy() == "urban"
    cx, cy = float(county_seat[0]), float(county_seat[1])
    seat_unit = _unit_at(geo, cx, cy)
    seat_town = int(town[seat_unit])
    # Downtown: the urban units of the seat's township nearest the county seat.
    downtown = np.flatnonzero((town == seat_town) & urban)
    if not len(downtown):
        downtown = np.array([seat_unit])
    downtown = downtown[np.argsort(np.hypot(*(geo.seeds[downtown] - (cx, cy)).T),
                                   kind="stable")][:4]
    town_unit = np.array([_unit_at(geo, *seats[t]) for t in range(len(towns))])
    town_households = np.bincount(town, weights=units["households"].to_numpy(float),
                                  minlength=len(towns))
    by_size = [t for t in np.argsort(-town_households, kind="stable") if t != seat_town]

    rows: list[tuple[str, str, str, int, float, float, float]] = []  # bank tier name unit cx cy s
    for bank, *_ in _BANKS:
        label = _bank_label(bank, info)
        full = next(b[1] for b in _BANKS if b[0] == bank).format(short=info.short,
                                                                  county=info.name)
        for k in range(_SEAT_BRANCHES[bank]):
            u = int(downtown[k % len(downtown)])
            name = f"{full}营业部" if k == 0 else f"{label}{info.short}城区支行"
            x0, y0 = (cx, cy) if u == seat_unit else geo.seeds[u]
            rows.append((bank, "一级支行", name, u, x0, y0, 400.0))

        if bank == "NSH":
            branch_towns, tier = [t for t in range(len(towns)) if t != seat_town], "二级支行"
        elif bank == "YCB":
            branch_towns = [t for t in range(len(towns))
                            if t != seat_town and rng.random() < 0.75]
            tier = "二级支行"
        elif bank == "ABC":
            branch_towns, tier = sorted(by_size[:3]), "分理处"
        elif bank in ("CCB", "BOC"):
            branch_towns, tier = sorted([seat_town, *by_size[:1]]), "分理处"
        else:
            branch_towns, tier = sorted(by_size[:2]), "分理处"
        for t in branch_towns:
            suffix = "支行" if tier == "二级支行" else "分理处"
            name = f"{label}{_town_short(towns.loc[t, 'name'])}{suffix}"
            rows.append((bank, tier, name, int(town_unit[t]), *seats[t], 250.0))

        if bank in _ASSISTED:
            villages = np.flatnonzero(~urban & (rng.random(len(units)) < _ASSISTED[bank]))
            for u in villages:
                name = f"{label}{_place_name(units.loc[u, 'name'])}助农点"
                rows.append((bank, "助农点", name, int(u), *geo.seeds[u], 120.0))

    table = pd.DataFrame(rows, columns=["institution", "tier", "name", "unit_index", "cx", "cy",
                                        "spread"])
    table["id"] = table["institution"] + "-O-" + (
        table.groupby("institution", sort=False).cumcount() + 1).map("{:03d}".format)
    unit = table["unit_index"].to_numpy()
    _, _, lon, lat = geo.scatter(rng, table["cx"].to_numpy(float), table["cy"].to_numpy(float),
                                 table["spread"].to_numpy(float), unit)
    return gpd.GeoDataFrame(
        {"id": table["id"].to_numpy(), "institution": table["institution"].to_numpy(),
         "tier": table["tier"].to_numpy(), "name": table["name"].to_numpy(),
         "status": "营业", "unit": units["code"].to_numpy()[unit], "source": "synthetic"},
        geometry=_points(lon, lat), crs=STORAGE_CRS,
    )


def _unit_at(geo: _Geo, x: float, y: float) -> int:
    """The unit containing the point (metres), or the nearest one."""
    lon, lat = geo.frame.to_lonlat_xy(x, y)
    point = shapely.points(float(lon), float(lat))
    hit = np.flatnonzero(shapely.contains(geo.units_ll, point))
    if len(hit):
        return int(hit[0])
    return int(np.argmin(shapely.distance(geo.units_m, shapely.points(x, y))))


def _devices(
    rng: np.random.Generator, outlets: gpd.GeoDataFrame, units: pd.DataFrame, geo: _Geo
) -> gpd.GeoDataFrame:
    """ATM and CRS at branches (more in the county seat), a 助农取款POS at every assisted
    point, smart terminals at some branches; each a few metres from its outlet."""
    tier = outlets["tier"].to_numpy()
    n = len(outlets)
    seat, assisted = tier == "一级支行", tier == "助农点"
    branch = np.isin(tier, ("二级支行", "分理处"))
    counts = {
        "ATM": np.where(seat, rng.integers(2, 5, n), np.where(branch, rng.integers(1, 3, n), 0)),
        "CRS": np.where(seat, rng.integers(1, 3, n), np.where(branch, rng.integers(0, 2, n), 0)),
        "助农取款POS": np.where(assisted, 1, 0),
        "智能终端": np.where(seat, rng.integers(1, 3, n),
                         np.where(branch, (rng.random(n) < 0.35).astype(int), 0)),
    }
    kinds = np.array(list(counts), dtype=object)
    per_outlet = np.column_stack([counts[k] for k in kinds])  # (outlets, kinds)
    outlet_idx = np.repeat(np.repeat(np.arange(n), len(kinds)), per_outlet.ravel())
    kind = np.repeat(np.tile(kinds, n), per_outlet.ravel())

    code_index = pd.Series(np.arange(len(units)), index=units["code"].to_numpy())
    unit = code_index.reindex(outlets["unit"].to_numpy()).to_numpy()[outlet_idx]
    ox, oy = geo.frame.from_lonlat_xy(outlets.geometry.x.to_numpy(), outlets.geometry.y.to_numpy())
    _, _, lon, lat = geo.scatter(rng, ox[outlet_idx], oy[outlet_idx],
                                 np.full(len(outlet_idx), 10.0), unit)
    institution = outlets["institution"].to_numpy()[outlet_idx]
    number = pd.Series(institution).groupby(institution, sort=False).cumcount().to_numpy() + 1
    return gpd.GeoDataFrame(
        {"id": [f"{b}-D-{k:04d}" for b, k in zip(institution, number, strict=True)],
         "institution": institution, "type": kind,
         "outlet": outlets["id"].to_numpy()[outlet_idx],
         "unit": units["code"].to_numpy()[unit], "source": "synthetic"},
        geometry=_points(lon, lat), crs=STORAGE_CRS,
    )


# --------------------------------------------------------------------------- staff, ledger

_MOBILE_PREFIXES = tuple(str(p) for p in (*range(130, 140), *range(150, 154), *range(155, 160),
                                          166, 173, 175, 176, 177, 178, *range(180, 190),
                                          191, 198, 199))


def _banks_operating(units: pd.DataFrame, outlets: gpd.GeoDataFrame) -> dict[str, np.ndarray]:
    """Per bank, a mask of the units it serves: NSH and YCB everywhere; the big banks in
    urban units; the village bank in the townships where it has an outlet."""
    urban = units["kind"].to_numpy() == "urban"
    everywhere = np.ones(len(units), bool)
    parent = units["parent"].to_numpy()
    czb_units = outlets.loc[outlets["institution"] == "CZB", "unit"].to_numpy()
    czb_towns = units.loc[units["code"].isin(czb_units), "parent"].unique()
    return {"NSH": everywhere, "YCB": everywhere, "ABC": urban, "CCB": urban, "BOC": urban,
            "CZB": np.isin(parent, czb_towns)}


def _staff(
    rng: np.random.Generator, info: County, units: pd.DataFrame, geo: _Geo, total: int
) -> gpd.GeoDataFrame:
    """Grid workers, one per expected grid of ~300 households in the bank's share, placed
    at a unit of the bank's area (systematic sampling by households); one grid manager
    per about twelve workers, with no fixed place."""
    weight = units["households"].to_numpy(float)
    # Grids of about 300 households, and at least one per village / community: a small
    # village is still one grid with its own worker (一人一格).
    grids = max(1, int(np.maximum(1, np.round(weight / 300)).sum()))
    urban = units["kind"].to_numpy() == "urban"
    seat_lonlat = geo.frame.to_lonlat_xy(geo.seeds[:, 0], geo.seeds[:, 1])
    rows = []
    for bank, _, _, _, share, part_time in _BANKS:
        workers = max(1, round(grids * share))
        managers = -(-workers // 12)
        w = weight * (urban if bank in ("ABC", "CCB", "BOC") else 1.0)
        if w.sum() == 0:
            w = np.ones(len(units))
        cum = np.cumsum(w) / w.sum()
        home = np.searchsorted(cum, (np.arange(workers) + rng.random()) / workers, side="right")
        home = np.minimum(home, len(units) - 1)
        role = np.where(rng.random(workers) < part_time, "part-time", "worker")
        for k in range(managers):
            rows.append((bank, f"{bank}-S-{k + 1:04d}", "manager", -1))
        for k in range(workers):
            rows.append((bank, f"{bank}-S-{managers + k + 1:04d}", role[k], int(home[k])))
    table = pd.DataFrame(rows, columns=["institution", "id", "role", "home"])
    n = len(table)
    home = table["home"].to_numpy()
    located = home >= 0
    lon = np.where(located, seat_lonlat[0][np.maximum(home, 0)], np.nan)
    lat = np.where(located, seat_lonlat[1][np.maximum(home, 0)], np.nan)
    geometry = np.full(n, None, dtype=object)
    geometry[located] = _points(lon[located], lat[located])
    phones = np.char.add(rng.choice(np.array(_MOBILE_PREFIXES), n).astype(str),
                         np.char.zfill(rng.choice(10**8, n, replace=False).astype(str), 8))
    start = dt.date(2025, 1, 1).toordinal()
    days = rng.integers(0, (dt.date(2026, 5, 31).toordinal() - start) + 1, n)
    untrained = rng.random(n) < 0.08
    trained = np.array([None if u else dt.date.fromordinal(start + int(d))
                        for d, u in zip(days, untrained, strict=True)], dtype=object)
    return gpd.GeoDataFrame(
        {"id": table["id"].to_numpy(), "institution": table["institution"].to_numpy(),
         "name": _names(rng, n), "role": table["role"].to_numpy(),
         "phone": phones.astype(object), "grids": np.full(n, None, dtype=object),
         "trained": trained, "source": "synthetic",
         "unit": np.where(located, units["code"].to_numpy()[np.maximum(home, 0)], None)},
        geometry=geometry, crs=STORAGE_CRS,
    )


#: Share of households with a credit file (建档), by bank, for rural and urban units.
_FILE_RATE = {"NSH": (0.75, 0.45), "YCB": (0.35, 0.30), "ABC": (0.10, 0.25),
              "CCB": (0.08, 0.22), "BOC": (0.08, 0.20), "CZB": (0.20, 0.15)}


def _ledger(
    rng: np.random.Generator, units: pd.DataFrame, outlets: gpd.GeoDataFrame
) -> pd.DataFrame:
    """One ledger row (台账) per unit and bank serving it, for ``PERIOD``; the unit code
    stands for the grid until a partition makes the grids."""
    operating = _banks_operating(units, outlets)
    urban = (units["kind"].to_numpy() == "urban").astype(int)
    households = units["households"].to_numpy(np.int64)
    merchants = np.round(households * np.where(urban, 0.09, 0.025)
                         * rng.lognormal(0.0, 0.3, len(units))).astype(np.int64)
    firms = np.round(households * np.where(urban, 0.012, 0.004)
                     * rng.lognormal(0.0, 0.4, len(units))).astype(np.int64)
    frames = []
    for bank, *_ in _BANKS:
        idx = np.flatnonzero(operating[bank])
        rate = np.array(_FILE_RATE[bank])[urban[idx]] * rng.uniform(0.7, 1.25, len(idx))
        rate = np.clip(rate, 0.0, 1.0)
        h_files = rng.binomial(households[idx], rate)
        m_files = rng.binomial(merchants[idx], np.clip(rate * 1.1, 0.0, 1.0))
        f_files = rng.binomial(firms[idx], np.clip(rate * 1.2, 0.0, 1.0))
        surveys = rng.binomial(h_files + m_files + f_files, 0.04)
        frames.append(pd.DataFrame({
            "grid": units["code"].to_numpy()[idx], "institution": bank, "period": PERIOD,
            "households_total": households[idx], "households_files": h_files,
            "merchants_total": merchants[idx], "merchants_files": m_files,
            "firms_total": firms[idx], "firms_files": f_files,
            "surveys": surveys, "checks": rng.binomial(surveys, 0.8),
            "source": "synthetic",
        }))
    ledger = pd.concat(frames, ignore_index=True)
    for column in ledger.columns[3:-1]:
        ledger[column] = ledger[column].astype(np.int64)
    return ledger
