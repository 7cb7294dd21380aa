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


@dataclass
class Staffing:
    """One person per grid (一人一格, B4).

    Attributes
    ----------
    institutions
        Per institution: ``grids`` (its finest grids, else its ledger grids), ``workers``
        (grid workers, full- and part-time), ``managers``, ``grids_staffed`` (grids with
        someone assigned; by headcount when no assignment is recorded), ``unstaffed``,
        ``multi_grid_workers`` (people holding more than one grid), ``trained_share``,
        ``compliance`` (staffed / grids) and ``basis`` (assigned / headcount).
    grids
        Per grid (when grids are known): ``code``, ``institution``, ``staff`` (count of
        people assigned), ``staffed``.
    """

    institutions: pd.DataFrame
    grids: pd.DataFrame


def staffing(staff: pd.DataFrame, *, grids: gpd.GeoDataFrame | None = None,
             ledger: pd.DataFrame | None = None) -> Staffing:
    """Staffing compliance: is there one grid worker per grid (B4)?

    An institution's grids are its finest grids in ``grids`` (the level where workers
    work), else the grids named in its ledger rows of the latest period. A person is
    assigned to a grid by the staff layer's ``grids`` field (codes separated by ``;``)
    or the grid's ``worker`` / ``manager`` field. Where an institution records no
    assignment at all, compliance is judged by headcount (workers ≥ grids).

    Examples
    --------
    >>> staff = pd.DataFrame({"id": ["s1", "s2"], "institution": ["X", "X"],
    ...                       "role": ["worker", "worker"], "grids": ["g1", "g1;g2"]})
    >>> ledger = pd.DataFrame({"grid": ["g1", "g2", "g3"], "institution": ["X"] * 3})
    >>> s = staffing(staff, ledger=ledger)
    >>> row = s.institutions.iloc[0]
    >>> int(row["grids"]), int(row["grids_staffed"]), round(float(row["compliance"]), 3)
    (3, 2, 0.667)
    """
    inst_grids: dict[str, set[str]] = {}
    grid_worker: dict[str, str] = {}
    if grids is not None and len(grids) and "institution" in grids:
        g = pd.DataFrame({"code": _text(grids["code"]), "institution": _text(grids["institution"]),
                          "level": pd.to_numeric(grids.get("level", 1), errors="coerce")})
        for col in ("worker", "manager"):
            if col in grids:
                for code, who in zip(g["code"], _text(grids[col]), strict=True):
                    if who:
                        grid_worker.setdefault(code, who)
        g = g.loc[g["institution"].notna()]
        finest = g.groupby("institution")["level"].transform("max")
        for inst, part in g.loc[g["level"] == finest].groupby("institution"):
            inst_grids[inst] = set(part["code"])
    elif ledger is not None and len(ledger):
        led = ledger
        if "period" in led and led["period"].notna().any():
            led = led.loc[_text(led["period"]) == max(set(_text(led["period"])) - {None})]
        for inst, part in pd.DataFrame({"i": _text(led["institution"]),
                                        "g": _text(led["grid"])}).groupby("i"):
            inst_grids[inst] = set(part["g"])
    sid = _text(staff["id"]) if len(staff) else np.array([], object)
    sinst = _text(staff["institution"]) if len(staff) else np.array([], object)
    role = _text(staff["role"]) if len(staff) else np.array([], object)
    held = [[c.strip() for c in (v or "").split(";") if c.strip()]
            for v in (_text(staff["grids"]) if "grids" in staff and len(staff)
                      else [None] * len(staff))]
    trained = (pd.Series(staff["trained"]).notna().to_numpy() if "trained" in staff
               else np.zeros(len(staff), bool))
    person_grids = pd.DataFrame([(s, i, c) for s, i, cs in zip(sid, sinst, held, strict=True)
                                 for c in cs], columns=["staff", "institution", "grid"])
    extra = pd.DataFrame([(who, None, code) for code, who in grid_worker.items()],
                         columns=["staff", "institution", "grid"])
    assigned = pd.concat([person_grids, extra], ignore_index=True).drop_duplicates(
        ["staff", "grid"])
    per_grid = assigned.groupby("grid")["staff"].nunique()
    per_person = person_grids.groupby("staff")["grid"].nunique()
    rows, grid_rows = [], []
    for inst in sorted(set(inst_grids) | {i for i in sinst if i}):
        codes = inst_grids.get(inst, set())
        mine = sinst == inst
        workers = int((mine & np.isin(role, ("worker", "part-time"))).sum())
        managers = int((mine & (role == "manager")).sum())
        counts = per_grid.reindex(sorted(codes), fill_value=0)
        recorded = bool(len(codes)) and bool(counts.sum() > 0)
        staffed = int((counts > 0).sum()) if recorded else min(workers, len(codes))
        multi = int((per_person.reindex(sid[mine]).fillna(0) > 1).sum())
        rows.append({
            "institution": inst, "grids": len(codes), "workers": workers,
            "managers": managers, "grids_staffed": staffed,
            "unstaffed": len(codes) - staffed, "multi_grid_workers": multi,
            "trained_share": float(trained[mine].mean()) if mine.any() else np.nan,
            "compliance": staffed / len(codes) if codes else np.nan,
            "basis": "assigned" if recorded else "headcount",
        })
        grid_rows += [{"code": c, "institution": inst, "staff": int(n), "staffed": bool(n > 0)}
                      for c, n in counts.items()] if recorded else []
    return Staffing(pd.DataFrame(rows, columns=[
        "institution", "grids", "workers", "managers", "grids_staffed", "unstaffed",
        "multi_grid_workers", "trained_share", "compliance", "basis"]),
        pd.DataFrame(grid_rows, columns=["code", "institution", "staff", "staffed"]))
