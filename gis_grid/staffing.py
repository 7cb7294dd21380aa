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


#: Staff roles that hold a finest grid one-to-one (B4). A manager (网格管理员) oversees
#: grids one level up and never staffs a finest grid.
WORKER_ROLES = ("worker", "part-time")


def _clean(values) -> pd.Series:
    """Strings with blanks, NaN and "None" as None (vectorised)."""
    s = pd.Series(values, dtype=object).reset_index(drop=True)
    missing = s.isna().to_numpy()
    out = s.astype(str).str.strip()
    out = out.astype(object).where(~(missing | out.isin(("", "nan", "None", "<NA>"))
                                     .to_numpy()), None)
    return out


def finest_grids(grids: pd.DataFrame) -> np.ndarray:
    """Which rows of ``grids`` are finest grids: grids no other grid of the layer names as
    its parent (the ``parent`` field, else the code less its last ``-`` segment; level 1
    has no parent). The same rule ``gisgrid validate`` calls a leaf.

    Examples
    --------
    >>> g = pd.DataFrame({"code": ["A", "A-1", "A-2", "B"], "level": [1, 2, 2, 1]})
    >>> finest_grids(g).tolist()
    [False, True, True, True]
    """
    n = len(grids)
    if n == 0:  # str.rpartition of no rows has no columns to pick
        return np.zeros(0, dtype=bool)
    code = _clean(grids["code"] if "code" in grids else [None] * n).fillna("")
    level = (pd.to_numeric(grids["level"], errors="coerce").fillna(1).astype(int).to_numpy()
             if "level" in grids else np.ones(n, int))
    parent = _clean(grids["parent"] if "parent" in grids else [None] * n)
    split = code.str.rpartition("-")
    derived = split[0].where(split[1] == "-")
    parent = parent.where(parent.notna(), derived).where(level > 1)
    named = parent[parent.notna() & (parent != code)]
    return ~code.isin(set(named)).to_numpy()


def grid_staffing(grids: pd.DataFrame, staff: pd.DataFrame | None = None) -> pd.DataFrame:
    """Which finest grids are staffed, and by whom: the one staffing rule (B4, 一人一格).

    **A finest grid is staffed when a worker or part-time worker (not a manager) is
    assigned to it.** A person is assigned to a grid by the grid's ``worker`` field or by
    the staff layer's ``grids`` field (``;``-separated codes). Staff with the role
    ``manager`` never staff a grid, whichever field names them; staff rows of any other
    role are not counted either. An id in ``worker`` that the staff layer does not list is
    taken at its word (a worker). Finest grids: :func:`finest_grids`.

    ``gisgrid validate`` (``no_worker``, ``worker_multiple``), the coverage report's
    staffing tables, the assessment's staffing score and the maps all use this function.

    Parameters
    ----------
    grids
        A grid layer (``code``; ``level``, ``parent``, ``institution``, ``worker`` used
        when present). Several layers may be concatenated.
    staff
        The staff layer (``id``; ``role``, ``grids`` used when present), optional.

    Returns
    -------
    DataFrame
        One row per row of ``grids``, in order (RangeIndex): ``code``, ``institution``,
        ``level``, ``finest`` (bool), ``workers`` (tuple of staff ids, sorted),
        ``staffed`` (finest and at least one worker).

    Examples
    --------
    >>> g = pd.DataFrame({"code": ["A", "A-1", "A-2", "A-3"], "level": [1, 2, 2, 2],
    ...                   "manager": ["m", None, None, None],
    ...                   "worker": [None, "w", "m", None]})
    >>> s = pd.DataFrame({"id": ["m", "w", "p"], "role": ["manager", "worker", "part-time"],
    ...                   "grids": ["A;A-2", "A-1", "A-3"]})
    >>> t = grid_staffing(g, s)
    >>> t["staffed"].tolist(), t["workers"].tolist()
    ([False, True, False, True], [(), ('w',), (), ('p',)])
    """
    n = len(grids)
    code = _clean(grids["code"] if "code" in grids else [None] * n).to_numpy(object)
    inst = _clean(grids["institution"] if "institution" in grids else [None] * n
                  ).to_numpy(object)
    level = (pd.to_numeric(grids["level"], errors="coerce").fillna(1).astype(int).to_numpy()
             if "level" in grids else np.ones(n, int))
    held: dict[str, set[str]] = {}
    not_workers: set[str] = set()
    if staff is not None and len(staff) and "id" in staff:
        ids = _clean(staff["id"]).to_numpy(object)
        roles = (_clean(staff["role"]).to_numpy(object) if "role" in staff
                 else np.full(len(staff), "worker", dtype=object))
        lists = (_clean(staff["grids"]).to_numpy(object) if "grids" in staff
                 else np.full(len(staff), None, dtype=object))
        for sid, role, listed in zip(ids, roles, lists, strict=True):
            if sid is None:
                continue
            if role not in WORKER_ROLES:
                not_workers.add(sid)
                continue
            for c in (listed or "").split(";"):
                if c.strip():
                    held.setdefault(c.strip(), set()).add(sid)
        # Someone listed as a worker somewhere is a worker, even if another row says not.
        not_workers -= {s for people in held.values() for s in people}
    named = (_clean(grids["worker"]).to_numpy(object) if "worker" in grids
             else np.full(n, None, dtype=object))
    workers = []
    for c, w in zip(code, named, strict=True):
        people = set(held.get(c, ())) if c is not None else set()
        if w is not None and w not in not_workers:
            people.add(w)
        workers.append(tuple(sorted(people)))
    finest = finest_grids(grids)
    has = np.array([bool(w) for w in workers], dtype=bool)
    return pd.DataFrame({"code": code, "institution": inst, "level": level,
                         "finest": finest, "workers": pd.Series(workers, dtype=object),
                         "staffed": finest & has})


#: Grid staff are trained at least every this many months (A8: 原则上每半年培训一次).
TRAINING_EVERY_MONTHS = 6


def training_due(staff: pd.DataFrame, at: object | None = None) -> pd.DataFrame:
    """Each person's training against the six-month rule, judged on day ``at`` (default
    today): ``trained`` (last training), ``due`` (trained + :data:`TRAINING_EVERY_MONTHS`
    months), ``status`` — ``current`` (due on or after ``at``), ``overdue`` or ``never`` —
    and ``days_overdue``. The one rule for "trained" in every output (the coverage
    report's ``trained_share`` counts ``current``).

    Examples
    --------
    >>> s = pd.DataFrame({"id": ["A", "B", "C"], "trained": ["2026-05-01", "2025-10-01", None]})
    >>> training_due(s, "2026-06-30")[["id", "status", "days_overdue"]].values.tolist()
    [['A', 'current', 0], ['B', 'overdue', 90], ['C', 'never', 0]]
    """
    day = pd.Timestamp(at if at is not None else pd.Timestamp.now(tz="Asia/Shanghai").date()
                       ).normalize().tz_localize(None)
    trained = pd.to_datetime(staff["trained"] if "trained" in staff
                             else pd.Series(None, index=staff.index), errors="coerce")
    if getattr(trained.dt, "tz", None) is not None:
        trained = trained.dt.tz_localize(None)
    due = trained + pd.DateOffset(months=TRAINING_EVERY_MONTHS)
    status = np.where(trained.isna(), "never", np.where(due >= day, "current", "overdue"))
    late = ((day - due).dt.days).where(status == "overdue", 0).fillna(0).astype(np.int64)
    keep = [c for c in ("id", "name", "institution", "role") if c in staff]
    out = pd.DataFrame({c: staff[c].to_numpy() for c in keep})
    out["trained"] = trained.dt.date.to_numpy()
    out["due"] = due.dt.date.to_numpy()
    out["status"] = status
    out["days_overdue"] = late.to_numpy()
    return out
