"""The sample's ledger (台账, plan B6), one row per finest grid of each bank's grid layer.

Ledger rows belong to the grids: a row names a finest grid of its institution's grid
layer (``grids__nsh`` …, ``gis_grid.naming.grid_layer``), as ``gisgrid import`` checks
(``layers.checks.ledger_problems``). So the sample builds its ledger after the partition:
``gisgrid demo`` does so between partition and coverage, and ``gisgrid sample --ledger``
does it for whatever grid layers a store holds. Figures are synthetic and seeded: the
grid's households (its ``households`` field), merchants and firms by the grid's kind, and
the files (建档) at each bank's rate (``banks._FILE_RATE``), as the per-unit ledger of
``build_sample`` draws them.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from gis_grid.staffing import finest_grids
from layers.synthetic.banks import _FILE_RATE, PERIOD

__all__ = ["grid_ledger", "store_grid_ledger"]

#: The files rate (rural, urban) of a bank the sample does not know.
_DEFAULT_RATE = (0.20, 0.20)


def grid_ledger(grids: Mapping[str, pd.DataFrame], *, seed: int = 0,
                period: str = PERIOD) -> pd.DataFrame:
    """One ledger row per finest grid of each institution's grid layer, for ``period``.

    Parameters
    ----------
    grids
        Institution id → its grid layer (``code``, ``level``, ``parent``, ``kind``,
        ``households``), e.g. ``{"NSH": store.read("grids__nsh")}``.
    seed
        Seeds the figures; each institution has its own stream, so adding a bank leaves
        the others' rows as they were.

    Returns
    -------
    DataFrame
        Rows of the ``ledger`` schema, ``source`` synthetic.

    Examples
    --------
    >>> g = pd.DataFrame({"code": ["420527-101", "420527-101-001"], "level": [1, 2],
    ...                   "kind": ["rural", "rural"], "households": [300, 300]})
    >>> grid_ledger({"NSH": g})["grid"].tolist()
    ['420527-101-001']
    """
    frames = []
    for bank, layer in grids.items():
        leaf = layer.loc[finest_grids(layer)]
        if not len(leaf):
            continue
        rng = np.random.default_rng([seed, zlib.crc32(str(bank).encode("utf-8"))])
        urban = (leaf["kind"].astype(str).to_numpy() == "urban").astype(int) \
            if "kind" in leaf else np.zeros(len(leaf), int)
        households = (pd.to_numeric(leaf["households"], errors="coerce").fillna(0)
                      .to_numpy(np.int64) if "households" in leaf
                      else np.zeros(len(leaf), np.int64))
        n = len(leaf)
        merchants = np.round(households * np.where(urban, 0.09, 0.025)
                             * rng.lognormal(0.0, 0.3, n)).astype(np.int64)
        firms = np.round(households * np.where(urban, 0.012, 0.004)
                         * rng.lognormal(0.0, 0.4, n)).astype(np.int64)
        rate = np.array(_FILE_RATE.get(str(bank), _DEFAULT_RATE))[urban]
        rate = np.clip(rate * rng.uniform(0.7, 1.25, n), 0.0, 1.0)
        h_files = rng.binomial(households, rate)
        m_files = rng.binomial(merchants, np.clip(rate * 1.1, 0.0, 1.0))
        f_files = rng.binomial(firms, np.clip(rate * 1.2, 0.0, 1.0))
        surveys = rng.binomial(h_files + m_files + f_files, 0.04)
        rows = pd.DataFrame({
            "grid": leaf["code"].astype(str).to_numpy(), "institution": str(bank),
            "period": period, "households_total": households, "households_files": h_files,
            "merchants_total": merchants, "merchants_files": m_files,
            "firms_total": firms, "firms_files": f_files, "surveys": surveys,
            "checks": rng.binomial(surveys, 0.8), "source": "synthetic",
        })
        if "county" in leaf:  # a province's grids: the row is read with its county's
            rows["county"] = leaf["county"].astype(str).to_numpy()
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=["grid", "institution", "period", "households_total",
                                     "households_files", "merchants_total",
                                     "merchants_files", "firms_total", "firms_files",
                                     "surveys", "checks", "source"])
    ledger = pd.concat(frames, ignore_index=True)
    for column in ledger.columns[3:11]:
        ledger[column] = ledger[column].astype(np.int64)
    return ledger


def store_grid_ledger(store, *, seed: int = 0, period: str = PERIOD) -> pd.DataFrame:
    """Build the sample's ledger for every institution of layer ``institutions`` whose
    grid layer the store holds, check it as an import would, and replace layer
    ``ledger`` with it (a logged change). Returns the rows stored.

    Raises ``InputError`` when no institution's grid layer is partitioned yet (the ledger
    has nothing to belong to), or when a row fails its checks; nothing is stored then.
    """
    from gis_grid.errors import InputError, Problem, StoreError
    from gis_grid.naming import grid_layer
    from layers.checks import check_layer, ledger_problems

    present = {info.name for info in store.layers()}
    banks = (store.read("institutions", columns=["id"])["id"].astype(str).tolist()
             if "institutions" in present else [])
    layers = {bank: grid_layer(bank) for bank in banks if grid_layer(bank) in present}
    if not layers:
        raise InputError([Problem(
            "sample ledger", None, None,
            "no institution's grid layer is partitioned yet, and ledger rows belong to "
            "finest grids: run gisgrid partition --institution ID first")],
            source="sample ledger")
    def grids(name: str) -> pd.DataFrame:
        wanted = ["code", "level", "parent", "kind", "households"]
        try:  # a province's grid layers carry their county (layers.synthetic.province)
            return store.read(name, columns=[*wanted, "county"])
        except (StoreError, KeyError, ValueError):
            return store.read(name, columns=wanted)

    ledger = grid_ledger({bank: grids(name) for bank, name in layers.items()}, seed=seed,
                         period=period)
    labels = [f"row {i + 1}" for i in range(len(ledger))]
    frame, problems = check_layer(ledger, "ledger", source="sample ledger", labels=labels)
    problems += ledger_problems(store, frame, source="sample ledger", labels=labels)
    if problems:
        raise InputError(problems, source="sample ledger")
    from layers.history import default_actor

    store.change("ledger", frame, "replace", actor=default_actor("replace"),
                 source="sample ledger", labels=labels)
    return frame
