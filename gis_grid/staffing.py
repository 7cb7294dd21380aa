"""Staffing grids (B4): one grid worker per finest grid (一人一格), managers over the grids
one level up.

``assign_staff`` is a plain, deterministic rule for a territory whose staff list does not
yet say who holds which grid (the sample, or a bank's first partition): managers take the
level-2 grids round robin in code order; workers, then part-time workers, take the finest
grids one each in code order until they run out — the grids left over show as unstaffed
(a B4 breach ``gisgrid validate`` reports). A bank that has its own assignment uploads
``staff`` with ``grids`` filled instead.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd


def assign_staff(grids: gpd.GeoDataFrame, staff: pd.DataFrame, *,
                 institution: str | None = None) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Assign ``staff`` (of ``institution`` when given) to ``grids``.

    Returns copies of ``grids`` (``manager`` / ``worker`` set to staff ids) and of
    ``staff`` (``grids`` set to the ``;``-separated codes each holds; rows of other
    institutions untouched).

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely
    >>> g = gpd.GeoDataFrame({"code": ["A", "A-1", "A-2"], "level": [2, 3, 3]},
    ...                      geometry=[shapely.box(0, 0, 2, 1)] * 3, crs=4326)
    >>> s = pd.DataFrame({"id": ["m", "w"], "institution": ["X", "X"],
    ...                   "role": ["manager", "worker"]})
    >>> g2, s2 = assign_staff(g, s)
    >>> g2["worker"].tolist(), s2["grids"].tolist()
    ([None, 'w', None], ['A', 'A-1'])
    """
    grids = grids.copy()
    staff = staff.copy()
    for column in ("manager", "worker"):
        grids[column] = (grids[column] if column in grids else
                         pd.Series(None, index=grids.index)).astype(object)
        grids[column] = grids[column].where(grids[column].notna(), None)
    mine = (staff["institution"].astype(str) == institution) if institution else \
        pd.Series(True, index=staff.index)
    held: dict[str, list[str]] = {}
    ordered = grids.iloc[np.argsort(grids["code"].to_numpy(str), kind="stable")]
    finest = ordered[ordered["level"] == ordered["level"].max()]
    middle = ordered[ordered["level"] == min(2, int(ordered["level"].max()))]
    roles = staff["role"].astype(str)
    ids = staff["id"].astype(str)
    managers = sorted(ids[mine & (roles == "manager")])
    workers = sorted(ids[mine & (roles == "worker")]) + sorted(ids[mine & (roles == "part-time")])
    if managers:
        for k, idx in enumerate(middle.index):
            who = managers[k % len(managers)]
            grids.at[idx, "manager"] = who
            held.setdefault(who, []).append(grids.at[idx, "code"])
    for who, idx in zip(workers, finest.index, strict=False):
        grids.at[idx, "worker"] = who
        held.setdefault(who, []).append(grids.at[idx, "code"])
    current = staff["grids"] if "grids" in staff else pd.Series(None, index=staff.index)
    assigned = pd.Series([";".join(held[s]) if s in held else None for s in ids],
                         index=staff.index, dtype=object)
    staff["grids"] = assigned.where(mine, current)
    return grids, staff
