"""Staffing (plan B4, see ARCHITECTURE.md): one person per grid (一人一格), per
institution and per grid (:class:`Staffing`, :func:`staffing`).

The module is not named ``staffing`` so that the function :func:`staffing`, which the
package re-exports, does not hide it.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_grid.coverage.common import _text
from gis_grid.staffing import WORKER_ROLES, grid_staffing, training_due


@dataclass
class Staffing:
    """One person per grid (一人一格, B4), by the one rule of
    :func:`gis_grid.staffing.grid_staffing`.

    Attributes
    ----------
    institutions
        Per institution: ``grids`` (its finest grids, else the grids of its ledger rows of
        the latest period), ``workers`` (grid workers, full- and part-time), ``managers``,
        ``grids_staffed`` (finest grids a worker or part-time worker is assigned to),
        ``unstaffed``, ``multi_grid_workers`` (workers holding more than one of its finest
        grids), ``trained_share`` (staff trained within the last six months on the day
        ``at``: :func:`gis_grid.staffing.training_due`), ``compliance`` (staffed ÷ grids;
        empty without grids)
        and ``basis`` (``grids`` / ``ledger``: where its grids came from).
    grids
        Per finest grid: ``code``, ``institution``, ``staff`` (workers assigned),
        ``staffed``.
    """

    institutions: pd.DataFrame
    grids: pd.DataFrame


def staffing(staff: pd.DataFrame, *, grids: gpd.GeoDataFrame | None = None,
             ledger: pd.DataFrame | None = None, at: object | None = None) -> Staffing:
    """Staffing compliance: is there a grid worker on every finest grid (B4)?

    An institution's grids are its finest grids in ``grids``
    (:func:`gis_grid.staffing.finest_grids`), else the grids named in its ledger rows of
    the latest period. Whether a grid is staffed is
    :func:`gis_grid.staffing.grid_staffing`: a worker or part-time worker (not a manager)
    is assigned to it, by the staff layer's ``grids`` field or the grid's ``worker``
    field — the rule ``gisgrid validate`` checks as ``no_worker``.

    Examples
    --------
    >>> staff = pd.DataFrame({"id": ["s1", "s2", "m"], "institution": ["X", "X", "X"],
    ...                       "role": ["worker", "worker", "manager"],
    ...                       "grids": ["g1", "g1;g2", "g3"]})
    >>> ledger = pd.DataFrame({"grid": ["g1", "g2", "g3"], "institution": ["X"] * 3})
    >>> s = staffing(staff, ledger=ledger)
    >>> row = s.institutions.iloc[0]
    >>> int(row["grids"]), int(row["grids_staffed"]), round(float(row["compliance"]), 3)
    (3, 2, 0.667)
    """
    basis = "grids"
    if grids is not None and len(grids) and "institution" in grids:
        frame = pd.DataFrame(grids.drop(columns=grids.geometry.name)
                             if isinstance(grids, gpd.GeoDataFrame) else grids)
        frame = frame.reset_index(drop=True)
    elif ledger is not None and len(ledger):
        led = ledger
        if "period" in led and led["period"].notna().any():
            led = led.loc[_text(led["period"]) == max(set(_text(led["period"])) - {None})]
        frame = pd.DataFrame({"code": _text(led["grid"]), "institution": _text(led["institution"]),
                              "level": 1}).dropna(subset=["code"]).drop_duplicates(
            ["code", "institution"]).reset_index(drop=True)
        basis = "ledger"
    else:
        frame = pd.DataFrame({"code": [], "institution": [], "level": []})
    who = grid_staffing(frame, staff)
    who = who.loc[who["finest"] & who["institution"].notna()]
    sinst = _text(staff["institution"]) if len(staff) else np.array([], object)
    role = _text(staff["role"]) if len(staff) else np.array([], object)
    # Trained means trained within the last six months on day ``at`` (A8; the one rule,
    # gis_grid.staffing.training_due), not ever trained.
    trained = (training_due(staff, at)["status"].to_numpy() == "current" if len(staff)
               else np.zeros(0, bool))
    rows, grid_rows = [], []
    for inst in sorted(set(who["institution"]) | {i for i in sinst if i}):
        mine_grids = who.loc[who["institution"] == inst]
        n = len(mine_grids)
        mine = sinst == inst
        staffed = int(mine_grids["staffed"].sum())
        held = mine_grids["workers"].explode().dropna()
        multi = int((held.value_counts() > 1).sum()) if len(held) else 0
        rows.append({
            "institution": inst, "grids": n,
            "workers": int((mine & np.isin(role, WORKER_ROLES)).sum()),
            "managers": int((mine & (role == "manager")).sum()), "grids_staffed": staffed,
            "unstaffed": n - staffed, "multi_grid_workers": multi,
            "trained_share": float(trained[mine].mean()) if mine.any() else np.nan,
            "compliance": staffed / n if n else np.nan,
            "basis": basis if n else None,
        })
        grid_rows += [{"code": c, "institution": inst, "staff": len(w), "staffed": bool(s)}
                      for c, w, s in zip(mine_grids["code"], mine_grids["workers"],
                                         mine_grids["staffed"], strict=True)]
    return Staffing(pd.DataFrame(rows, columns=[
        "institution", "grids", "workers", "managers", "grids_staffed", "unstaffed",
        "multi_grid_workers", "trained_share", "compliance", "basis"]),
        pd.DataFrame(grid_rows, columns=["code", "institution", "staff", "staffed"]))
