"""The one staffing rule (B4, 一人一格): a finest grid is staffed when a worker or
part-time worker (not a manager) is assigned to it — ``gis_grid.staffing.grid_staffing``,
used by validate's ``no_worker``, the coverage staffing table and the assessment."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from gis_grid.coverage import staffing
from gis_grid.coverage.ranking import ASSESSMENT_WEIGHTS, assessment, assessment_weights
from gis_grid.errors import InputError
from gis_grid.staffing import finest_grids, grid_staffing
from gis_grid.topology import validate_grids


def _layer(children: int) -> gpd.GeoDataFrame:
    """One level-1 grid of ``children`` level-2 strips, institution X, in EPSG:4326."""
    x0, y0, w = 110.80, 30.90, 0.01
    parent = shapely.box(x0, y0, x0 + w * children, y0 + w)
    kids = [shapely.box(x0 + w * k, y0, x0 + w * (k + 1), y0 + w) for k in range(children)]
    return gpd.GeoDataFrame({
        "code": ["X1", *(f"X1-{k:03d}" for k in range(children))],
        "level": [1, *([2] * children)], "institution": "X",
        "parent": [None, *(["X1"] * children)]}, geometry=[parent, *kids], crs=4326)


def _no_worker(grids, staff) -> int:
    return int(validate_grids(grids, staff=staff).summary.get("no_worker", 0))


def test_a_manager_holding_finest_grids_does_not_staff_them():
    """The Zigui YCB case: a manager whose staff row lists finest grids (and who is
    named in their worker field) is not a worker; validate and coverage agree."""
    grids = _layer(4)
    grids["worker"] = [None, "w1", "m1", None, None]
    staff = pd.DataFrame({"id": ["m1", "w1"], "institution": ["X", "X"],
                          "role": ["manager", "worker"],
                          "grids": ["X1;X1-001;X1-002;X1-003", "X1-000"]})
    row = staffing(staff, grids=grids).institutions.set_index("institution").loc["X"]
    assert _no_worker(grids, staff) == 3
    assert (int(row["grids"]), int(row["grids_staffed"])) == (4, 1)
    assert row["compliance"] == pytest.approx(1 - 3 / 4)
    table = assessment(pd.DataFrame({"institution": ["X"], "share_own": [1.0]}),
                       staff=staffing(staff, grids=grids))
    assert table.loc[0, "staffing"] == pytest.approx(0.25)


def test_part_time_workers_staff_and_finest_is_the_leaf():
    grids = _layer(2)
    staff = pd.DataFrame({"id": ["p"], "institution": ["X"], "role": ["part-time"],
                          "grids": ["X1-001"]})
    assert finest_grids(grids).tolist() == [False, True, True]
    who = grid_staffing(grids, staff)
    assert who["staffed"].tolist() == [False, False, True]
    assert who["workers"].tolist() == [(), (), ("p",)]


@settings(max_examples=40, deadline=None)
@given(roles=st.lists(st.sampled_from(["worker", "part-time", "manager", None]),
                      min_size=1, max_size=8),
       holds=st.lists(st.lists(st.integers(0, 5), max_size=3), min_size=8, max_size=8),
       named=st.lists(st.one_of(st.none(), st.integers(0, 7)), min_size=6, max_size=6))
def test_validate_and_coverage_always_agree(roles, holds, named):
    """Any staff list and worker fields: coverage's compliance is 1 − no_worker ÷ finest."""
    grids = _layer(6)
    ids = [f"s{k}" for k in range(len(roles))]
    grids["worker"] = [None, *(ids[n] if n is not None and n < len(ids) else None
                               for n in named)]
    staff = pd.DataFrame({
        "id": ids, "institution": "X", "role": roles,
        "grids": [";".join(f"X1-{g:03d}" for g in h) or None for h in holds[:len(ids)]]})
    row = staffing(staff, grids=grids).institutions.set_index("institution").loc["X"]
    assert int(row["grids"]) == 6
    assert row["compliance"] == pytest.approx(1 - _no_worker(grids, staff) / 6)


def test_a_bank_without_grids_scores_0_on_staffing_with_a_note():
    cov = pd.DataFrame({"institution": ["X", "Y"], "name": ["x", "y"],
                        "share_own": [0.5, 0.5]})
    staff = pd.DataFrame({"id": ["w"], "institution": ["X"], "role": ["worker"],
                          "grids": ["X1-000"]})
    s = staffing(staff, grids=_layer(1))
    t = assessment(cov, staff=s, weights={"coverage": 0.5, "staffing": 0.5}).set_index(
        "institution")
    assert t.loc["X", "score"] == pytest.approx(75.0)
    assert t.loc["Y", "score"] == pytest.approx(25.0)   # not renormalised to 50
    assert t.loc["Y", "staffing"] == 0 and "无网格" in t.loc["Y", "note"]
    assert pd.isna(t.loc["X", "note"])


@pytest.mark.parametrize("weights, field, words", [
    ({"coverage": 0.5, "speed": 0.5}, "speed", "is not a criterion"),
    ({"coverage": 1.2, "files": -0.2}, "files", "negative"),
    ({"coverage": 0.5, "files": 0.4}, None, "must sum to 1, not 0.9"),
    ({"coverage": "a lot"}, "coverage", "not a number"),
])
def test_bad_weights_are_refused_naming_the_problem(weights, field, words):
    with pytest.raises(InputError) as err:
        assessment_weights(weights)
    assert err.value.exit_code == 3
    assert any(p.field == field and words in str(p) for p in err.value.problems), \
        err.value.report()


def test_default_weights_sum_to_1():
    assert assessment_weights() == ASSESSMENT_WEIGHTS
    assert np.isclose(sum(ASSESSMENT_WEIGHTS.values()), 1)
