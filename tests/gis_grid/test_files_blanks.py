"""County-wide files rows, participation and the two kinds of service blank (issue 14),
checked against answers worked out by hand on small territories and, for the county-wide
row, as a property over random ledgers (hypothesis)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from gis_grid.coverage import (
    Radii,
    access,
    files_vs_targets,
    service_blanks,
    touch_points,
    units_without_service_point,
)

M = "EPSG:4547"  # metres as given

CODES = ["420527100001", "420527100002", "420527100003"]


def three_units() -> gpd.GeoDataFrame:
    """An urban community (0–1 km), a rural village (1–2 km), a remote village (10–11 km)."""
    return gpd.GeoDataFrame(
        {"code": CODES, "name": ["城东社区", "河口村", "远山村"], "parent": ["420527100000"] * 3,
         "kind": ["urban", "rural", "rural"]}, crs=M,
        geometry=[shapely.box(0, 0, 1000, 1000), shapely.box(1000, 0, 2000, 1000),
                  shapely.box(10_000, 0, 11_000, 1000)])


def households() -> gpd.GeoDataFrame:
    """100 urban households, 50 + 30 rural ones."""
    return gpd.GeoDataFrame({"id": [1, 2, 3], "count": [100, 50, 30], "unit": CODES}, crs=M,
                            geometry=gpd.points_from_xy([500, 1500, 10_500], [500] * 3))


def ledger(**change) -> pd.DataFrame:
    rows = pd.DataFrame({
        "grid": [CODES[0], CODES[1], CODES[0], CODES[1]],
        "institution": ["X", "X", "Y", "Y"], "period": ["2026-06"] * 4,
        "households_total": [100, 50, 100, 50], "households_files": [60, 40, 30, 45],
        "merchants_total": [10, 2, 10, 2], "merchants_files": [5, 1, 8, 0],
        "firms_total": [0, 0, 0, 0], "firms_files": [0, 0, 0, 0],
        "surveys": [1, 0, 0, 0], "checks": [0, 0, 0, 0]})
    for column, values in change.items():
        rows[column] = values
    return rows


def county(f) -> pd.DataFrame:
    return f.institutions.loc[f.institutions["scope"] == "territory"].set_index("metric")


def banks(f) -> pd.DataFrame:
    return f.institutions.loc[f.institutions["scope"] == "institution"].set_index(
        ["institution", "metric"])


def test_county_row_counts_each_household_once_over_the_households_layer():
    f = files_vs_targets(ledger(), units=three_units(), households=households())
    c = county(f)
    # Denominators: the households layer by kind (100 urban; 50 + 30 rural), not the sum
    # of the two banks' ledgers (200 urban, 100 rural).
    assert c.loc["urban_households", ["total", "achieved"]].tolist() == [100, 60]
    assert c.loc["rural_households", ["total", "achieved"]].tolist() == [80, 45]
    # Each bank's own row is its own ledger.
    b = banks(f)
    assert b.loc[("X", "urban_households"), ["total", "achieved"]].tolist() == [100, 60]
    assert b.loc[("Y", "rural_households"), ["total", "achieved"]].tolist() == [50, 45]
    # Merchants and firms: per unit the larger ledger total (10, 2) and the most files.
    assert c.loc["merchants_firms", ["total", "achieved"]].tolist() == [12, 9]


def test_county_row_never_exceeds_the_households_of_a_unit():
    f = files_vs_targets(ledger(households_total=[100, 50, 100, 80],
                                households_files=[60, 40, 30, 70]),
                         units=three_units(), households=households())
    assert county(f).loc["rural_households", ["total", "achieved"]].tolist() == [80, 50]
    assert any("1 个村/社区" in n for n in f.notes)


def test_county_merchants_firms_from_the_entities_layer():
    entities = gpd.GeoDataFrame({"id": [f"E{i}" for i in range(15)], "unit": [CODES[0]] * 15},
                                crs=M, geometry=gpd.points_from_xy([500] * 15, [500] * 15))
    f = files_vs_targets(ledger(), units=three_units(), households=households(),
                         entities=entities)
    # Unit 1: 15 entities in the layer (more than any ledger's 10); unit 2: the ledger's 2.
    assert county(f).loc["merchants_firms", ["total", "achieved"]].tolist() == [17, 9]
    assert any("市场主体" in n for n in f.notes)  # unit 2: the layer holds none of the 2


def test_participation_is_files_or_visits_over_every_unit():
    # X: files in both units; Y: files in unit 1 only, a survey (no file) in unit 2 of Z.
    led = ledger(households_files=[60, 40, 30, 0], merchants_files=[5, 1, 8, 0])
    visit = pd.DataFrame({"grid": [CODES[1]], "institution": ["Z"], "period": ["2026-06"],
                          "households_total": [50], "households_files": [0],
                          "merchants_total": [2], "merchants_files": [0], "firms_total": [0],
                          "firms_files": [0], "surveys": [0], "checks": [2]})
    f = files_vs_targets(pd.concat([led, visit], ignore_index=True), units=three_units())
    b = banks(f)
    assert b.loc[("X", "participation"), ["total", "achieved"]].tolist() == [3, 2]
    # Y's row in unit 2 records neither files nor visits: it does not take part there.
    assert b.loc[("Y", "participation"), ["total", "achieved"]].tolist() == [3, 1]
    assert b.loc[("Z", "participation"), ["total", "achieved"]].tolist() == [3, 1]
    assert county(f).loc["participation", ["total", "achieved"]].tolist() == [3, 2]
    assert f.grids["participating"].tolist() == [True, True, True, False, True]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 2),
                          st.integers(0, 120), st.integers(0, 120)),
                min_size=1, max_size=12, unique_by=lambda r: (r[0], r[1])))
def test_county_row_lies_between_the_best_bank_and_the_households(rows):
    led = pd.DataFrame({
        "grid": [CODES[u] for _, u, _, _ in rows], "institution": [b for b, *_ in rows],
        "period": "2026-06", "households_total": [max(t, f) for *_, t, f in rows],
        "households_files": [f for *_, f in rows], "merchants_total": 0,
        "merchants_files": 0, "firms_total": 0, "firms_files": 0})
    f = files_vs_targets(led, units=three_units(), households=households())
    c = county(f)
    assert c.loc["urban_households", "total"] == 100
    assert c.loc["rural_households", "total"] == 80
    held = {0: 100, 1: 50, 2: 30}
    for metric, units in (("urban_households", {0}), ("rural_households", {1, 2})):
        got = c.loc[metric, "achieved"]
        files = {(b, u): fl for b, u, _, fl in rows if u in units}
        # At least any one bank's files (each unit capped at its households) ...
        best = max((sum(min(fl, held[u]) for (bb, u), fl in files.items() if bb == b)
                    for b in "ABC"), default=0)
        # ... at most every bank's files together (capped the same way).
        together = sum(min(held[u], sum(fl for (_, uu), fl in files.items() if uu == u))
                       for u in units)
        assert best <= got <= together <= c.loc[metric, "total"]
        # Where no two banks share a unit, nothing is counted twice and nothing is lost.
        if len({u for _, u in files}) == len(files):
            assert got == together


def test_two_kinds_of_blank_are_kept_apart():
    units = three_units()
    homes = households()
    # One ATM inside unit 1 at 900 m from unit 2's households: unit 2 has no point inside
    # but is reached (rural radius 2 km); the remote village is both kinds of blank.
    atm = gpd.GeoDataFrame({"id": ["D1"], "institution": ["X"], "type": ["ATM"]}, crs=M,
                           geometry=gpd.points_from_xy([600], [500]))
    acc = access(homes, touch_points(devices=atm), units=units,
                 radii=Radii(urban=1000, rural=2000))
    none = units_without_service_point(acc)
    assert none["code"].tolist() == [CODES[1], CODES[2]]
    assert none["households"].tolist() == [50, 30]
    assert none["covered"].tolist() == [50, 0]
    assert none["blank"].tolist() == [False, True]
    assert service_blanks(acc)["code"].tolist() == [CODES[2]]
    # A point on the border counts for the units on both sides.
    edge = atm.set_geometry(gpd.points_from_xy([1000], [500], crs=M))
    acc = access(homes, touch_points(devices=edge), units=units,
                 radii=Radii(urban=1000, rural=2000))
    assert units_without_service_point(acc)["code"].tolist() == [CODES[2]]
    assert np.isin(units_without_service_point(acc)["code"], service_blanks(acc)["code"]).all()
