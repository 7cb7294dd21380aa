"""What the units hold: their zone, households and population, and the household points.

``_zones`` names each unit's zone (村, 社区, or near the town centre 商区 / 园区 / 校区);
``_allocate_households`` shares the county's total over units by urban-rural code with
seeded log-normal noise; ``_households`` places the household (住户) points: urban
buildings of a few households around the unit's seed, village houses in two to six
hamlets (自然村), every point inside its unit.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.model import STORAGE_CRS
from layers.synthetic.cells import _Geo, _points

#: Relative size (households) of a unit by urban-rural code.
_UR_WEIGHT = {"111": 6.0, "112": 3.5, "121": 4.5, "122": 2.2, "123": 1.5, "210": 1.6,
              "220": 1.0}


def _zones(
    rng: np.random.Generator, units: pd.DataFrame, seeds: np.ndarray, seats: np.ndarray,
    townships_m: np.ndarray,
) -> np.ndarray:
    """村 for rural units; 社区 for urban ones except a seeded few near the town centre,
    which become 商区 / 园区 / 校区 (123 special areas are 园区)."""
    town = units["town"].to_numpy()
    urban = units["kind"].to_numpy() == "urban"
    radius = np.sqrt(shapely.area(townships_m) / np.pi)[town]
    closeness = np.hypot(*(seeds - seats[town]).T) / radius
    cut = np.quantile(closeness[urban], 0.4) if urban.any() else 0.0
    near_centre = urban & (closeness <= cut)
    special = near_centre & (rng.random(len(units)) < 0.25)
    kind = rng.choice(np.array(["商区", "园区", "校区"], dtype=object), size=len(units),
                      p=[0.45, 0.3, 0.25])
    zone = np.where(urban, "社区", "村").astype(object)
    zone[special] = kind[special]
    zone[units["ur_code"].to_numpy() == "123"] = "园区"
    return zone


def _allocate_households(rng: np.random.Generator, units: pd.DataFrame, total: int) -> np.ndarray:
    """Share ``total`` households over units: weights by urban-rural code times log-normal
    noise, rounded by largest remainder so they add up exactly; every unit gets at least
    one while there are enough."""
    weight = units["ur_code"].map(_UR_WEIGHT).to_numpy(float)
    weight = weight * rng.lognormal(0.0, 0.35, len(units))
    base = 1 if total >= len(units) else 0
    return base + _largest_remainder(total - base * len(units), weight)


def _largest_remainder(total: int, weight: np.ndarray) -> np.ndarray:
    quota = total * weight / weight.sum()
    out = np.floor(quota).astype(np.int64)
    rest = total - int(out.sum())
    out[np.argsort(-(quota - out), kind="stable")[:rest]] += 1
    return out


def _households(rng: np.random.Generator, units: pd.DataFrame, geo: _Geo) -> gpd.GeoDataFrame:
    """Household points: urban units dense around their seed, villages in hamlets."""
    total = units["households"].to_numpy(np.int64)
    urban = units["kind"].to_numpy() == "urban"
    radius = geo.radius
    # Urban points are buildings of a few households; village points are single houses.
    n_points = np.where(urban, -(-total // 3), total)
    unit = np.repeat(np.arange(len(units)), n_points)
    start = np.concatenate([[0], np.cumsum(n_points)[:-1]])

    extra = total - n_points
    slot = np.repeat(start, extra) + np.floor(
        rng.random(int(extra.sum())) * np.repeat(n_points, extra)).astype(np.int64)
    count = 1 + np.bincount(slot, minlength=len(unit))

    # Hamlets: two to six per village, the first at the village seed.
    n_hamlets = np.where(urban, 1, np.minimum(rng.integers(2, 7, len(units)),
                                              np.maximum(n_points, 1)))
    hamlet_unit = np.repeat(np.arange(len(units)), n_hamlets)
    first = np.concatenate([[0], np.cumsum(n_hamlets)[:-1]])
    is_first = np.zeros(len(hamlet_unit), bool)
    is_first[first] = True
    hx, hy = geo.seeds[hamlet_unit, 0].copy(), geo.seeds[hamlet_unit, 1].copy()
    others = np.flatnonzero(~is_first)
    hx[others], hy[others], _, _ = geo.scatter(
        rng, hx[others], hy[others], 0.5 * radius[hamlet_unit[others]], hamlet_unit[others])
    # Each point picks a hamlet of its unit by the hamlets' shares (Dirichlet weights):
    # the hamlets' cumulative shares, offset by the unit's index, are one sorted array
    # in which a point of unit u draws u + U(0, 1).
    share = rng.gamma(1.5, size=len(hamlet_unit))
    share /= np.bincount(hamlet_unit, weights=share)[hamlet_unit]
    running = np.cumsum(share)
    ends = hamlet_unit + running - (running[first] - share[first])[hamlet_unit]
    ends[np.append(first[1:] - 1, len(ends) - 1)] = np.arange(1, len(units) + 1)
    hamlet = np.searchsorted(ends, unit + rng.random(len(unit)), side="right")

    core = rng.random(len(unit)) < 0.75
    spread = np.where(
        urban[unit],
        np.where(core, 0.3, 0.7) * radius[unit],
        np.clip(0.15 * radius[unit] / np.sqrt(n_hamlets[unit]), 60.0, 350.0),
    )
    _, _, lon, lat = geo.scatter(rng, hx[hamlet], hy[hamlet], spread, unit)
    return gpd.GeoDataFrame(
        {"id": np.arange(len(unit), dtype=np.int64), "count": count.astype(np.int64),
         "unit": units["code"].to_numpy()[unit], "source": "synthetic"},
        geometry=_points(lon, lat), crs=STORAGE_CRS,
    )
