"""Assessment and ranking of each institution's grid work (plan B8, see ARCHITECTURE.md):
the units an institution alone keeps from being blanks (:func:`blanks_closed`) and the
weighted score and rank (:data:`ASSESSMENT_WEIGHTS`, :func:`assessment`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from gis_grid.coverage.distances import Access
from gis_grid.coverage.files import Files
from gis_grid.coverage.staff import Staffing

#: Default weights of the assessment score (B8).
ASSESSMENT_WEIGHTS = {"coverage": 0.3, "files": 0.3, "staffing": 0.2, "blanks_closed": 0.2}


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
    (``ASSESSMENT_WEIGHTS``; a component an institution has no data for is left out and
    the weights renormalised) × 100; rank 1 is best.

    Returns
    -------
    DataFrame
        ``rank``, ``institution``, ``name``, ``coverage``, ``files``, ``staffing``,
        ``blanks_closed`` (count), ``blanks_closed_score``, ``score``, sorted by rank.

    Examples
    --------
    >>> cov = pd.DataFrame({"institution": ["X", "Y"], "name": ["x", "y"],
    ...                     "share_own": [0.9, 0.5]})
    >>> assessment(cov, weights={"coverage": 1})[["rank", "institution", "score"]
    ...     ].values.tolist()
    [[1, 'X', 90.0], [2, 'Y', 50.0]]
    """
    w = dict(ASSESSMENT_WEIGHTS if weights is None else weights)
    unknown = set(w) - set(ASSESSMENT_WEIGHTS)
    if unknown or any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
        raise ValueError(f"assessment: weights are non-negative numbers for "
                         f"{sorted(ASSESSMENT_WEIGHTS)}, not all zero")
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
    values = np.column_stack([t[parts[k]].to_numpy(float) for k in parts])
    weight = np.array([w.get(k, 0.0) for k in parts])
    have = np.isfinite(values)
    wsum = (have * weight).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t["score"] = np.where(wsum > 0, 100 * np.nansum(values * weight, axis=1) / wsum, np.nan)
    t["rank"] = t["score"].rank(ascending=False, method="min").astype("Int64")
    t = t.sort_values(["rank", "institution"]).reset_index(drop=True)
    return t[["rank", "institution", "name", "coverage", "files", "staffing", "blanks_closed",
              "blanks_closed_score", "score"]]
