"""Assessment and ranking of each institution's grid work (plan B8, see ARCHITECTURE.md):
the units an institution alone keeps from being blanks (:func:`blanks_closed`), the
criteria and their weights (:data:`ASSESSMENT_WEIGHTS`, :func:`assessment_weights`,
:func:`read_assessment`) and the weighted score and rank (:func:`assessment`).

The rule for weights: each names a criterion of :data:`CRITERIA`, is a finite number
≥ 0, and together they sum to 1 (± 1e-6); a criterion not named weighs 0. Anything else is
refused with an ``InputError`` (exit 3) naming the problem.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gis_grid.coverage.distances import Access
from gis_grid.coverage.files import Files
from gis_grid.coverage.staff import Staffing
from gis_grid.errors import InputError, Problem

#: The criteria of the assessment (B8), each a score 0–1, in Chinese for the reports.
CRITERIA = {"coverage": "覆盖：本机构网格内住户在本机构触点服务半径内的比例",
            "files": "建档：四项阶段目标达成度的平均（达成比例 ÷ 目标，封顶 1）",
            "staffing": "人员：有网格员（专职或兼职，不含网格管理员）的最细网格 ÷ 最细网格",
            "blanks_closed": "填补空白：仅由本机构覆盖的村/社区数 ÷ 各机构中的最多者"}

#: Default weights of the assessment score (B8).
ASSESSMENT_WEIGHTS = {"coverage": 0.3, "files": 0.3, "staffing": 0.2, "blanks_closed": 0.2}

#: Tolerance of the sum of the weights around 1.
_SUM_TOLERANCE = 1e-6


def assessment_weights(weights: Mapping[str, object] | None = None, *,
                       source: str = "weights") -> dict[str, float]:
    """Check assessment weights and return them as floats (default
    :data:`ASSESSMENT_WEIGHTS`).

    Each key is a criterion of :data:`CRITERIA`, each value a finite number ≥ 0, and
    the values sum to 1 (± 1e-6); criteria not named weigh 0.

    Raises
    ------
    InputError
        Naming every problem: an unknown criterion, a value that is not a number or is
        negative, a sum other than 1.

    Examples
    --------
    >>> assessment_weights({"coverage": 0.5, "files": "0.5"})
    {'coverage': 0.5, 'files': 0.5, 'staffing': 0.0, 'blanks_closed': 0.0}
    >>> assessment_weights({"coverage": 0.5, "speed": 0.5})
    Traceback (most recent call last):
    ...
    gis_grid.errors.InputError: weights: 2 problems; nothing was stored
      weights: speed is not a criterion; the criteria are blanks_closed, coverage, files, staffing
      weights: the weights must sum to 1, not 0.5
    """
    if weights is None:
        return dict(ASSESSMENT_WEIGHTS)
    problems, out = [], dict.fromkeys(CRITERIA, 0.0)
    if not isinstance(weights, Mapping):
        raise InputError([Problem(source, None, None, "weights must be a table of "
                                  "criterion = number")])
    for key, value in weights.items():
        if key not in CRITERIA:
            problems.append(Problem(source, None, str(key), "is not a criterion; the criteria are "
                                    f"{', '.join(sorted(CRITERIA))}"))
            continue
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            problems.append(Problem(source, None, key, f"is {value!r}, not a number"))
        elif number < 0:
            problems.append(Problem(source, None, key, f"is {number:g}, negative; weights "
                                    "are ≥ 0"))
        else:
            out[key] = number
    total = sum(out.values())
    if not any(p.field in CRITERIA for p in problems) and abs(total - 1) > _SUM_TOLERANCE:
        problems.append(Problem(source, None, None,
                                f"the weights must sum to 1, not {total:g}"))
    if problems:
        raise InputError(problems, source=source)
    return out


def read_assessment(path: str | Path, *, overrides: Iterable[tuple[str, object]] = ()
                    ) -> dict[str, float]:
    """The weights of an assessment file, TOML (``*.toml``) or JSON (anything else), then
    ``overrides`` (criterion, weight) applied over them, checked by
    :func:`assessment_weights`.

    The file holds the weights at its top level or in a ``weights`` table::

        [weights]            # assessment.toml
        coverage = 0.4
        files = 0.3
        staffing = 0.3       # blanks_closed not named: weighs 0

    Raises
    ------
    InputError
        The file cannot be read or parsed, or its weights break the rule.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except OSError as err:
        raise InputError([Problem(source, None, None, f"cannot be read: {err.strerror or err}")],
                         source=source) from err
    except (tomllib.TOMLDecodeError, ValueError) as err:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise InputError([Problem(source, None, None, f"is not valid {kind}: {err}")],
                         source=source) from err
    if isinstance(data, Mapping) and isinstance(data.get("weights"), Mapping):
        data = data["weights"]
    if not isinstance(data, Mapping):
        raise InputError([Problem(source, None, None, "holds no table of criterion = weight")],
                         source=source)
    merged = dict(data)
    merged.update(dict(overrides))
    return assessment_weights(merged, source=source)


def blanks_closed(acc: Access) -> pd.Series:
    """Per institution, the units it alone keeps from being blanks: units where some
    household is within the radius of its touch points and of no other institution's.

    Examples
    --------
    >>> import geopandas as gpd
    >>> import shapely
    >>> from gis_grid.coverage import Radii, access, touch_points
    >>> u = gpd.GeoDataFrame({"code": ["a", "b"], "kind": ["rural"] * 2}, crs=4547,
    ...                      geometry=[shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)])
    >>> h = gpd.GeoDataFrame({"unit": ["a", "b"]}, crs=4547,
    ...                      geometry=gpd.points_from_xy([5, 15], [5, 5]))
    >>> d = gpd.GeoDataFrame({"id": ["1", "2", "3"], "institution": ["X", "Y", "Y"],
    ...                       "type": ["ATM"] * 3}, crs=4547,
    ...                      geometry=gpd.points_from_xy([5, 6, 15], [5, 5, 5]))
    >>> blanks_closed(access(h, touch_points(devices=d), units=u, radii=Radii(rural=5))
    ...               ).to_dict()   # a is covered by X and Y, b by Y alone
    {'X': 0, 'Y': 1}
    """
    if acc.units is None or acc.covered_by.shape[1] == 0:
        return pd.Series(dtype=np.int64)
    unit = acc.households["unit"].to_numpy(object)
    per_unit = acc.covered_by.groupby(unit).any()
    sole = per_unit.loc[per_unit.sum(axis=1) == 1]
    counts = sole.idxmax(axis=1).value_counts() if len(sole) else pd.Series(dtype=np.int64)
    return counts.reindex(acc.covered_by.columns, fill_value=0).astype(np.int64)


def assessment(
    coverage: pd.DataFrame,
    *,
    files: Files | None = None,
    staff: Staffing | None = None,
    closed: pd.Series | None = None,
    weights: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Assessment table of each institution's grid work (B8) and its ranking.

    Scores, each 0–1: ``coverage`` — share of the households of its area within reach of
    its own touch points (:func:`institution_shares`); ``files`` — mean attainment of the
    four phase targets (achieved share ÷ target, capped at 1, over the metrics it has);
    ``staffing`` — grids staffed ÷ grids; ``blanks_closed`` — units it alone keeps from
    being blanks, over the most any institution does. The score is the weighted mean
    (``weights``, checked by :func:`assessment_weights`; default ``ASSESSMENT_WEIGHTS``)
    × 100; rank 1 is best. An institution with no figure for a criterion (no grids → no
    staffing, no ledger rows → no files) scores 0 on it, and its ``note`` says so.

    Returns
    -------
    DataFrame
        ``rank``, ``institution``, ``name``, ``coverage``, ``files``, ``staffing``,
        ``blanks_closed`` (count), ``blanks_closed_score``, ``score``, ``note``, sorted by
        rank.

    Examples
    --------
    >>> cov = pd.DataFrame({"institution": ["X", "Y"], "name": ["x", "y"],
    ...                     "share_own": [0.9, 0.5]})
    >>> assessment(cov, weights={"coverage": 1})[["rank", "institution", "score"]
    ...     ].values.tolist()
    [[1, 'X', 90.0], [2, 'Y', 50.0]]
    """
    w = assessment_weights(weights)
    t = pd.DataFrame({"institution": coverage["institution"].to_numpy(),
                      "name": coverage["name"].to_numpy() if "name" in coverage
                      else coverage["institution"].to_numpy(),
                      "coverage": coverage["share_own"].to_numpy(float)})
    t["files"] = np.nan
    if files is not None and len(files.institutions):
        f = files.institutions.loc[files.institutions["scope"] == "institution"]
        att = (f["achieved_share"] / f["target"]).clip(upper=1.0)
        att = att.where(f["total"] > 0)
        t["files"] = t["institution"].map(att.groupby(f["institution"]).mean())
    t["staffing"] = np.nan
    if staff is not None and len(staff.institutions):
        t["staffing"] = t["institution"].map(
            staff.institutions.set_index("institution")["compliance"])
    t["blanks_closed"] = 0
    t["blanks_closed_score"] = np.nan
    if closed is not None and len(closed):
        t["blanks_closed"] = t["institution"].map(closed).fillna(0).astype(np.int64)
        top = t["blanks_closed"].max()
        t["blanks_closed_score"] = t["blanks_closed"] / top if top > 0 else 0.0
    parts = {"coverage": "coverage", "files": "files", "staffing": "staffing",
             "blanks_closed": "blanks_closed_score"}
    why = {"coverage": "覆盖得 0 分：本机构范围内无住户 (coverage 0: no households in its area)",
           "files": "建档得 0 分：无台账记录 (files 0: no ledger rows)",
           "staffing": "人员得 0 分：无网格 (staffing 0: no grids)",
           "blanks_closed": "填补空白得 0 分：本视图不考核 (blanks_closed 0: not assessed in "
                            "this view)"}
    notes = [[] for _ in range(len(t))]
    for key, column in parts.items():
        missing = ~np.isfinite(t[column].to_numpy(float))
        for i in np.flatnonzero(missing if w[key] > 0 else []):
            notes[i].append(why[key])
        t[column] = t[column].astype(float).fillna(0.0)
    values = np.column_stack([t[parts[k]].to_numpy(float) for k in parts])
    weight = np.array([w[k] for k in parts])
    t["score"] = 100 * (values * weight).sum(axis=1)
    t["note"] = ["; ".join(n) if n else None for n in notes]
    t["rank"] = t["score"].rank(ascending=False, method="min").astype("Int64")
    t = t.sort_values(["rank", "institution"]).reset_index(drop=True)
    return t[["rank", "institution", "name", "coverage", "files", "staffing", "blanks_closed",
              "blanks_closed_score", "score", "note"]]
