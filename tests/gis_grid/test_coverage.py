"""Coverage, gaps, indicators, across-bank overlap, files, staffing and assessment:
figures checked against answers computed by hand on small territories, against PostGIS
computing the same shares in SQL on the Zigui sample, and through the real CLI."""

from __future__ import annotations

import json
import math
import secrets
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import psycopg
import pytest
import shapely
from click.testing import CliRunner
from psycopg import sql

from gis_grid.cli import main
from gis_grid.cli.analysis import coverage, place
from gis_grid.coverage import (
    PHASE_TARGETS,
    Radii,
    access,
    access_indicators,
    assessment,
    blanks_closed,
    coverage_report,
    coverage_shares,
    files_vs_targets,
    gap_areas,
    grid_overlap,
    grid_shares,
    institution_shares,
    outlet_concentration,
    service_blanks,
    staffing,
    touch_points,
)
from gis_grid.crs import metric_crs
from gis_grid.errors import InputError
from layers.gpkg import GeoPackageStore
from layers.postgis import PostGISStore
from layers.synthetic import build_sample

for command in (coverage, place):
    if command.name not in main.commands:
        main.add_command(command)

M = "EPSG:4547"  # a metric CRS (CGCS2000 3° Gauss-Krüger CM 114°E): metres as given


def points(xs, ys=None, **columns) -> gpd.GeoDataFrame:
    ys = [0.0] * len(xs) if ys is None else ys
    return gpd.GeoDataFrame(columns, geometry=gpd.points_from_xy(xs, ys), crs=M)


# ------------------------------------------------------------------ a line of households
#
# Ten household points on the x axis, 1.5 km apart, with 1..10 households each; outlets
# at 0 km (tier-1 sub-branch), 10 km (office) and 20 km (assisted point); an ATM at 4 km.

XS = [1500.0 * i for i in range(10)]
COUNTS = list(range(1, 11))


@pytest.fixture
def line():
    homes = points(XS, id=list(range(10)), count=COUNTS)
    outlets = points([0, 10000, 20000], id=["T1", "OF", "AS"], institution=["X", "X", "Y"],
                     tier=["一级支行", "分理处", "助农点"], name=["a", "b", "c"],
                     status=["营业"] * 3)
    devices = points([4000], id=["ATM1"], institution=["Y"], type=["ATM"], outlet=[None])
    return homes, outlets, devices


def test_distances_to_each_kind_on_a_line(line):
    homes, outlets, devices = line
    acc = access(homes, touch_points(outlets, devices), radii=Radii(rural=2000))
    h = acc.households
    x = np.array(XS)
    np.testing.assert_allclose(h["d_outlet_tier1"], x)
    np.testing.assert_allclose(h["d_outlet_office"], abs(x - 10000))
    np.testing.assert_allclose(h["d_outlet_assisted"], abs(x - 20000))
    np.testing.assert_allclose(h["d_device_atm"], abs(x - 4000))
    np.testing.assert_allclose(h["d_outlet"], [0, 1500, 3000, 4500, 4000, 2500, 1000, 500,
                                               2000, 3500])
    np.testing.assert_allclose(h["d_any"], [0, 1500, 1000, 500, 2000, 2500, 1000, 500, 2000,
                                            3500])
    assert h["d_device_crs"].isna().all() and h["d_outlet_tier2"].isna().all()
    assert h["nearest"].tolist() == ["T1", "T1", "ATM1", "ATM1", "ATM1", "OF", "OF", "OF",
                                     "OF", "OF"]
    assert h["nearest_kind"].tolist() == ["outlet"] * 2 + ["device"] * 3 + ["outlet"] * 5
    # Within 2 km, the edge included (households 4 and 8 are exactly 2 km away).
    assert h["covered"].tolist() == [True, True, True, True, True, False, True, True, True,
                                     False]
    t = coverage_shares(acc, "territory").iloc[0]
    assert t["households"] == 55 and t["covered"] == 55 - 6 - 10
    assert t["covered_outlet"] == 1 + 2 + 7 + 8 + 9
    assert t["covered_device"] == 3 + 4 + 5
    assert t["share"] == pytest.approx(39 / 55)
    # Per institution: X has the two branches, Y the assisted point and the ATM.
    assert acc.covered_by["X"].tolist() == [True, True, False, False, False, False, True,
                                            True, True, False]
    assert acc.covered_by["Y"].tolist() == [False, False, True, True, True, False, False,
                                            False, False, False]
    inst = institution_shares(acc).set_index("institution")
    assert inst.loc["X", "covered_own"] == 1 + 2 + 7 + 8 + 9
    assert inst.loc["Y", "covered_own"] == 3 + 4 + 5
    assert inst.loc["Y", "outlets"] == 1 and inst.loc["Y", "devices"] == 1


def test_closed_outlets_and_their_devices_are_not_touch_points(line):
    homes, outlets, devices = line
    outlets = outlets.assign(status=["停业", "营业", "筹建"])
    devices = devices.assign(outlet=["T1"])
    touch = touch_points(outlets, devices)
    assert touch["id"].tolist() == ["OF"]


@pytest.fixture
def two_units(line):
    """An urban unit (x < 5 km) and a rural one (5–21 km), and a remote village 30–40 km
    out with households at 31 and 35 km."""
    homes, outlets, devices = line
    units = gpd.GeoDataFrame(
        {"code": ["420527100001", "420527100002", "420527100003"],
         "name": ["城东社区", "河口村", "远山村"], "parent": ["420527100000"] * 3,
         "kind": ["urban", "rural", "rural"]},
        geometry=[shapely.box(-1000, -1000, 5000, 1000), shapely.box(5000, -1000, 21000, 1000),
                  shapely.box(30000, -1000, 40000, 1000)], crs=M)
    remote = points([31000, 35000], id=[10, 11], count=[5, 2])
    homes = gpd.GeoDataFrame(pd.concat([homes, remote], ignore_index=True), crs=M)
    return homes, outlets, devices, units


def test_radius_per_kind_of_area_and_unit_shares(two_units):
    homes, outlets, devices, units = two_units
    acc = access(homes, touch_points(outlets, devices), units=units,
                 radii=Radii(urban=1000, rural=3000))
    h = acc.households
    assert h["kind"].tolist() == ["urban"] * 4 + ["rural"] * 8
    assert h["radius"].tolist() == [1000] * 4 + [3000] * 8
    # urban: 0, 1.5, 1, 0.5 km against 1 km; rural: 2, 2.5, 1, 0.5, 2, 3.5 km against 3 km.
    assert h["covered"].tolist()[:10] == [True, False, True, True, True, True, True, True,
                                          True, False]
    u = coverage_shares(acc, "unit").set_index("code")
    assert u.loc["420527100001", ["households", "covered"]].tolist() == [10, 8]
    assert u.loc["420527100002", ["households", "covered"]].tolist() == [45, 35]
    assert u.loc["420527100002", "share"] == pytest.approx(35 / 45)
    assert u.loc["420527100003", ["households", "covered"]].tolist() == [7, 0]
    k = coverage_shares(acc, "kind").set_index("kind")
    assert k.loc["urban", "covered"] == 8 and k.loc["rural", "covered"] == 35
    town = coverage_shares(acc, "township").iloc[0]
    assert town["households"] == 62 and town["covered"] == 43


def test_service_blanks_list_the_village_beyond_reach(two_units):
    homes, outlets, devices, units = two_units
    acc = access(homes, touch_points(outlets, devices), units=units,
                 radii=Radii(urban=1000, rural=3000))
    blanks = service_blanks(acc)
    assert blanks["code"].tolist() == ["420527100003"]
    row = blanks.iloc[0]
    assert row["households"] == 7 and row["kind"] == "rural"
    assert row["d_nearest"] == pytest.approx(11000.0)  # 31 km to the assisted point at 20 km
    assert row["nearest"] == "AS" and row["nearest_institution"] == "Y"
    # With a 12 km rural radius it is reached, and the blank disappears.
    acc = access(homes, touch_points(outlets, devices), units=units,
                 radii=Radii(urban=1000, rural=12000))
    assert service_blanks(acc).empty


def test_unit_without_households_is_judged_from_its_centre():
    units = gpd.GeoDataFrame({"code": ["a", "b"], "kind": ["rural", "rural"]}, crs=M,
                             geometry=[shapely.box(0, 0, 100, 100),
                                       shapely.box(10000, 0, 10100, 100)])
    homes = points([50], [50], unit=["a"])
    atm = points([50], [60], id=["D"], institution=["X"], type=["ATM"])
    acc = access(homes, touch_points(devices=atm), units=units, radii=Radii(rural=500))
    u = acc.units.set_index("code")
    assert not u.loc["a", "blank"] and u.loc["b", "blank"]
    assert u.loc["b", "d_nearest"] == pytest.approx(math.hypot(10050 - 50, 50 - 60))


def test_gap_area_is_the_square_less_the_disc():
    r = 1000.0
    land = gpd.GeoDataFrame({"code": ["420527"]}, geometry=[shapely.box(-2 * r, -2 * r, 2 * r,
                                                                        2 * r)], crs=M)
    atm = points([0], id=["D"], institution=["X"], type=["ATM"])
    homes = points([0, 1900, -1900, 500], [0, 1900, 1900, 0], count=[4, 3, 2, 1])
    touch = touch_points(devices=atm)
    acc = access(homes, touch, radii=Radii(rural=r))
    gaps = gap_areas(land, touch, radii=Radii(rural=r), acc=acc)
    expected = (16 - math.pi) * r * r / 1e6
    # The disc is a 64-gon inscribed in the circle: the gap is at most 0.2 % of πr² larger.
    assert gaps["area_km2"].sum() == pytest.approx(expected, abs=0.002 * math.pi * r * r / 1e6)
    assert gaps["area_km2"].sum() >= expected
    assert len(gaps) == 1 and gaps["households"].sum() == 5 and gaps["points"].sum() == 2
    assert gaps.crs == land.crs


def test_gap_area_uses_the_radius_of_each_kind_of_area():
    # Left half urban (radius 500 m), right half rural (radius 1 km), one ATM in the middle.
    land = gpd.GeoDataFrame(geometry=[shapely.box(-2000, -2000, 2000, 2000)], crs=M)
    units = gpd.GeoDataFrame({"code": ["u", "r"], "kind": ["urban", "rural"]}, crs=M,
                             geometry=[shapely.box(-2000, -2000, 0, 2000),
                                       shapely.box(0, -2000, 2000, 2000)])
    atm = points([0], id=["D"], institution=["X"], type=["ATM"])
    radii = Radii(urban=500, rural=1000)
    gaps = gap_areas(land, touch_points(devices=atm), units=units, radii=radii)
    discs = math.pi * (0.5 ** 2 + 1.0 ** 2) / 2
    # As above: the 64-gons are at most 0.2 % smaller than the half discs.
    assert gaps["area_km2"].sum() == pytest.approx(16 - discs, abs=0.002 * discs)
    assert set(gaps["units"].iloc[0].split(";")) == {"u", "r"}


def test_gaps_hold_exactly_the_uncovered_households_on_the_sample(zigui):
    s = zigui
    touch = touch_points(s["outlets"], s["devices"])
    radii = Radii(urban=1000, rural=2000)
    acc = access(s["households"], touch, units=s["units"], radii=radii)
    gaps = gap_areas(s["territory"], touch, units=s["units"], radii=radii, acc=acc)
    uncovered = acc.households.loc[~acc.households["covered"], "count"].sum()
    assert gaps["households"].sum() == uncovered
    assert gaps.geometry.is_valid.all() and (gaps.geom_type == "Polygon").all()


def test_fas_indicators_per_township_and_territory():
    towns = gpd.GeoDataFrame({"code": ["t1", "t2"], "name": ["甲镇", "乙镇"]}, crs=M,
                             geometry=[shapely.box(0, 0, 10000, 10000),
                                       shapely.box(10000, 0, 20000, 10000)])
    land = gpd.GeoDataFrame({"code": ["420527"], "name": ["县"]}, crs=M,
                            geometry=[shapely.box(0, 0, 20000, 10000)])
    units = gpd.GeoDataFrame({"code": ["u1", "u2"], "parent": ["t1", "t2"],
                              "households": [5000, 2000], "population": [16000, 4000]},
                             crs=M, geometry=list(towns.geometry))
    outlets = points([1000, 2000, 15000], [1000, 1000, 5000], id=["a", "b", "c"],
                     institution=["X", "Y", "X"], tier=["分理处"] * 3, name=["a", "b", "c"])
    devices = points([1000, 1000, 1000], [2000, 3000, 4000], id=["d1", "d2", "d3"],
                     institution=["X"] * 3, type=["ATM", "ATM", "智能终端"])
    t = access_indicators(touch_points(outlets, devices), towns, units=units, territory=land)
    t1, t2, total = (t.iloc[i] for i in range(3))
    assert t1["area_km2"] == pytest.approx(100) and total["area_km2"] == pytest.approx(200)
    assert (t1["outlets"], t1["devices"], t1["atms"]) == (2, 3, 2)
    assert t1["outlets_per_10k_households"] == pytest.approx(2 / 5000 * 1e4)
    assert t1["devices_per_10k_residents"] == pytest.approx(3 / 16000 * 1e4)
    assert t1["outlets_per_1000km2"] == pytest.approx(20)
    assert t2["outlets_per_10k_households"] == pytest.approx(5)
    assert total["level"] == "territory" and total["outlets"] == 3
    assert total["outlets_per_10k_households"] == pytest.approx(3 / 7000 * 1e4)
    assert total["devices_per_1000km2"] == pytest.approx(15)


def test_hhi_of_outlets_per_township():
    towns = gpd.GeoDataFrame({"code": ["t1", "t2"], "name": ["甲", "乙"]}, crs=M,
                             geometry=[shapely.box(0, 0, 10, 10), shapely.box(10, 0, 20, 10)])
    outlets = points([1, 2, 3, 4, 15, 16], [1] * 6, id=list("abcdef"),
                     institution=list("XXXYXY"), tier=["分理处"] * 6, name=list("abcdef"))
    t = outlet_concentration(outlets, towns)
    assert t["hhi"].tolist() == pytest.approx([75**2 + 25**2, 50**2 + 50**2,
                                               (400 / 6) ** 2 + (200 / 6) ** 2])
    assert t["top_institution"].tolist() == ["X", "X", "X"]
    assert t.loc[0, "top_share"] == pytest.approx(0.75)


def test_grid_overlap_flags_over_concentration_and_rural_blanks():
    units = gpd.GeoDataFrame({"code": ["a", "b", "c"], "kind": ["urban", "urban", "rural"]},
                             crs=M, geometry=[shapely.box(0, 0, 100, 100),
                                              shapely.box(100, 0, 200, 100),
                                              shapely.box(200, 0, 300, 100)])
    grids = gpd.GeoDataFrame(
        {"code": ["X-1", "Y-1", "Z-1", "W-1", "X-1-1", "X-1-2"],
         "institution": ["X", "Y", "Z", "W", "X", "X"], "level": [1, 1, 1, 1, 2, 2]},
        crs=M, geometry=[shapely.box(0, 0, 200, 100), shapely.box(0, 0, 100, 100),
                         shapely.box(0, 0, 100, 100),
                         shapely.box(170, 0, 230, 100),  # 30 % of b and of c: too little
                         shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)])
    t = grid_overlap(grids, units, max_institutions=2).set_index("code")
    assert t["institutions"].tolist() == [3, 1, 0]
    assert t.loc["a", "institution_ids"] == "X;Y;Z"
    assert t["over_concentrated"].tolist() == [True, False, False]
    assert t["blank"].tolist() == [False, False, True]
    assert grid_overlap(grids, units, max_institutions=3)["over_concentrated"].sum() == 0


def test_grid_shares_count_own_and_any_coverage(two_units):
    homes, outlets, devices, units = two_units
    grids = gpd.GeoDataFrame({"code": ["G1", "G2"], "institution": ["X", "Y"],
                              "level": [1, 1], "kind": ["urban", "rural"]}, crs=M,
                             geometry=[shapely.box(-1000, -1000, 5000, 1000),
                                       shapely.box(5000, -1000, 21000, 1000)])
    acc = access(homes, touch_points(outlets, devices), units=units,
                 radii=Radii(urban=1000, rural=3000))
    g = grid_shares(acc, grids).set_index("code")
    assert g.loc["G1", ["households", "covered"]].tolist() == [10, 8]
    # G1 belongs to X (branch at 0 km): households at 0 km (1) and 1.5 km (2, beyond 1 km);
    # 3 km and 4.5 km are reached by Y's ATM only.
    assert g.loc["G1", "covered_own"] == 1
    inst = institution_shares(acc, grids=grids).set_index("institution")
    assert inst.loc["X", "area"] == "grids" and inst.loc["X", "households"] == 10


def ledger_rows(period="2026-06"):
    return pd.DataFrame({
        "grid": ["420527100001", "420527100002"], "institution": ["X", "X"],
        "period": [period] * 2,
        "households_total": [100, 200], "households_files": [30, 150],
        "merchants_total": [10, 10], "merchants_files": [5, 2],
        "firms_total": [10, 0], "firms_files": [6, 0]})


def test_files_against_year_one_targets(two_units):
    units = two_units[3]
    ledger = pd.concat([ledger_rows(), ledger_rows("2025-12").assign(households_files=0)],
                       ignore_index=True)
    f = files_vs_targets(ledger, units=units, year=1)
    assert f.period == "2026-06" and len(f.grids) == 2
    g = f.grids.set_index("grid")
    urban, rural = g.loc["420527100001"], g.loc["420527100002"]
    assert urban["kind"] == "urban" and urban["households_target"] == 0.4
    assert urban["households_needed"] == 10 and urban["merchants_firms_needed"] == 0
    assert urban["merchants_firms_share"] == pytest.approx(11 / 20)
    assert rural["households_target"] == 0.7 and rural["households_needed"] == 0
    assert rural["merchants_firms_needed"] == 3 and bool(rural["behind"])
    inst = f.institutions.set_index(["scope", "metric"]).loc["institution"]
    assert inst.loc["urban_households", ["total", "achieved", "needed"]].tolist() == [100, 30,
                                                                                      10]
    assert inst.loc["urban_households", "shortfall_pp"] == pytest.approx(10.0)
    assert bool(inst.loc["urban_households", "behind"])
    assert not inst.loc["rural_households", "behind"]
    # merchants + firms: 13 of 30 against 50 %: 2 more files needed.
    assert inst.loc["merchants_firms", ["total", "achieved", "needed"]].tolist() == [30, 13, 2]
    # Participation is over every unit of the territory, not the units of its ledger.
    assert inst.loc["participation", ["total", "achieved"]].tolist() == [3, 2]
    # The territory counts every unit: the remote village takes part in nothing.
    terr = f.institutions.set_index(["scope", "metric"]).loc["territory"]
    assert terr.loc["participation", ["total", "achieved", "needed"]].tolist() == [3, 2, 0]


def test_files_against_year_two_targets(two_units):
    f = files_vs_targets(ledger_rows(), units=two_units[3], year=2)
    assert set(PHASE_TARGETS[2].values()) == {1.0}
    g = f.grids.set_index("grid")
    assert g["households_needed"].tolist() == [70, 50]
    terr = f.institutions.set_index(["scope", "metric"]).loc["territory"]
    assert terr.loc["participation", "needed"] == 1


def test_staffing_one_person_per_grid():
    grids = gpd.GeoDataFrame(
        {"code": ["X1", "X1-1", "X1-2", "X1-3", "Y1", "Y1-1", "Y1-2"],
         "institution": ["X"] * 4 + ["Y"] * 3, "level": [1, 2, 2, 2, 1, 2, 2],
         "worker": [None, "s1", None, None, None, None, None]},
        crs=M, geometry=[shapely.box(0, 0, 1, 1)] * 7)
    staff = pd.DataFrame({"id": ["s1", "s2", "s9", "y1", "ym"],
                          "institution": ["X", "X", "X", "Y", "Y"],
                          "role": ["worker", "part-time", "manager", "worker", "manager"],
                          "grids": [None, "X1-2;X1-3", None, None, None],
                          "trained": ["2026-01-01", None, "2026-01-01", None, None]})
    s = staffing(staff, grids=grids, at="2026-06-30").institutions.set_index("institution")
    assert s.loc["X", ["grids", "workers", "managers", "grids_staffed"]].tolist() == [3, 2, 1,
                                                                                      3]
    assert s.loc["X", "compliance"] == 1.0 and s.loc["X", "basis"] == "grids"
    assert s.loc["X", "multi_grid_workers"] == 1
    assert s.loc["X", "trained_share"] == pytest.approx(2 / 3)
    # Trained means within the last six months (A8): by 2026-07-02 the training of
    # 2026-01-01 has lapsed.
    later = staffing(staff, grids=grids, at="2026-07-02").institutions.set_index("institution")
    assert later.loc["X", "trained_share"] == 0.0
    # One rule, no headcount: Y's worker is assigned to no grid, so none is staffed.
    assert s.loc["Y", ["grids", "grids_staffed", "compliance", "basis"]].tolist() == [
        2, 0, 0.0, "grids"]


def test_assessment_scores_and_ranking(two_units):
    homes, outlets, devices, units = two_units
    acc = access(homes, touch_points(outlets, devices), units=units,
                 radii=Radii(urban=1000, rural=3000))
    closed = blanks_closed(acc)
    # Unit 1: X covers 0 km, Y's ATM covers 3 and 4.5 km → both; unit 2: X (9–12 km) and
    # Y (6 km, from its ATM) → both; the remote village: none.
    assert closed.to_dict() == {"X": 0, "Y": 0}
    cov = pd.DataFrame({"institution": ["X", "Y", "Z"], "name": ["x", "y", "z"],
                        "share_own": [0.8, 0.6, 0.2]})
    files = files_vs_targets(ledger_rows(), units=units)
    staff = staffing(pd.DataFrame({"id": ["s"], "institution": ["Y"], "role": ["worker"],
                                   "grids": ["420527100001"]}),
                     ledger=ledger_rows().assign(institution="Y"))
    t = assessment(cov, files=files, staff=staff, closed=pd.Series({"X": 0, "Y": 2, "Z": 1}))
    t = t.set_index("institution")
    # X: files attainment = mean(1, 0.3/0.4, 150/200/0.7 → 1, 13/30/0.5) over 4 metrics.
    files_x = (1 + 0.75 + 1 + (13 / 30) / 0.5) / 4
    assert t.loc["X", "files"] == pytest.approx(files_x)
    assert t.loc["Y", "staffing"] == pytest.approx(0.5)  # one of its two grids staffed
    # X has no staffing row, Y and Z no files, Z no staffing: each scores 0 on what it
    # lacks, with a note, and the weights are not renormalised.
    assert t.loc["X", "score"] == pytest.approx(100 * (0.3 * 0.8 + 0.3 * files_x + 0.2 * 0))
    assert t.loc["Y", "score"] == pytest.approx(100 * (0.3 * 0.6 + 0.2 * 0.5 + 0.2 * 1.0))
    assert t.loc["Z", "score"] == pytest.approx(100 * (0.3 * 0.2 + 0.2 * 0.5))
    assert "无网格" in t.loc["X", "note"] and "无台账" in t.loc["Z", "note"]
    assert t["rank"].tolist() == [1, 2, 3]
    assert list(t.index) == sorted(t.index, key=lambda i: -t.loc[i, "score"])


# ------------------------------------------------------------------ clear errors


def test_no_touch_points_is_an_error_not_zero(line):
    homes, outlets, devices = line
    with pytest.raises(InputError, match="no touch points"):
        access(homes, touch_points(outlets.iloc[:0], devices.iloc[:0]))
    closed = outlets.assign(status="停业")
    with pytest.raises(InputError, match="no touch points"):
        access(homes, touch_points(closed))


def test_crs_mismatch_is_an_error(line):
    homes, outlets, devices = line
    with pytest.raises(InputError, match="CRS mismatch"):
        access(homes.to_crs(4326), touch_points(outlets, devices))
    mislabelled = outlets.set_crs(4326, allow_override=True)
    with pytest.raises(InputError, match="not longitudes/latitudes"):
        touch_points(mislabelled)
    with pytest.raises(InputError, match="has no CRS"):
        access(homes.set_crs(None, allow_override=True), touch_points(outlets))


@pytest.fixture(scope="module")
def zigui():
    return build_sample("420527", seed=0, households=20_000)


def report_inputs(s):
    return {k: s[k] for k in ("territory", "households", "outlets", "devices", "units",
                              "townships", "institutions", "ledger", "staff")}


def test_grids_of_another_territory_are_rejected(zigui):
    other = build_sample("371328", seed=0, households=2_000)
    foreign = gpd.GeoDataFrame({"code": other["units"]["code"], "institution": "NSH",
                                "level": 1, "kind": other["units"]["kind"]},
                               geometry=other["units"].geometry, crs=4326)
    with pytest.raises(InputError, match="grids__nsh.*outside the territory"):
        coverage_report(**report_inputs(zigui), grids={"grids__nsh": foreign})
    with pytest.raises(InputError, match="touch points.*territory"):
        coverage_report(**{**report_inputs(zigui), "outlets": other["outlets"],
                           "devices": other["devices"]})
    with pytest.raises(InputError, match="households"):
        coverage_report(**{**report_inputs(zigui), "households": other["households"]})


def test_report_on_the_sample_is_traceable(zigui):
    units = zigui["units"]
    grids = gpd.GeoDataFrame({"code": units["code"], "institution": "NSH", "level": 1,
                              "kind": units["kind"]}, geometry=units.geometry, crs=4326)
    urban = units.loc[units["kind"] == "urban"]
    grids_abc = gpd.GeoDataFrame({"code": urban["code"], "institution": "ABC", "level": 1,
                                  "kind": "urban"}, geometry=urban.geometry, crs=4326)
    r = coverage_report(**report_inputs(zigui), grids={"grids__nsh": grids,
                                                        "grids__abc": grids_abc},
                        max_institutions=1, radii=Radii(urban=1500, rural=3000))
    m = r.meta
    assert m["radii"] == {"urban_m": 1500.0, "rural_m": 3000.0}
    assert m["data_date"] == "2026-06" and m["metric_crs"] == "EPSG:4546"
    assert m["counts"]["households"] == 20_000 and m["counts"]["grids"]["grids__nsh"] == 193
    t = r.tables
    assert t["territory"]["households"].iloc[0] == 20_000
    assert t["townships"]["households"].sum() == t["units"]["households"].sum() == 20_000
    assert t["units"]["covered"].sum() == t["territory"]["covered"].iloc[0]
    assert t["gaps"]["households"].sum() == t["territory"]["uncovered"].iloc[0]
    assert set(t["blanks"]["code"]) == set(units.loc[
        r.layers["units_access"]["blank"].to_numpy(), "code"])
    over = t["overlap"]
    assert over.loc[over["kind"] == "urban", "over_concentrated"].all()
    assert not over["blank"].any()
    assert (t["grids"]["households"].groupby(t["grids"]["institution"]).sum()["NSH"]
            == 20_000)
    assert t["assessment"]["rank"].min() == 1 and len(t["assessment"]) == 6
    json.dumps(r.to_dict(), allow_nan=False)  # JSON-ready: no NaN
    assert "households covered" in r.summary()


# ------------------------------------------------------------------ PostGIS cross-check


def test_covered_shares_match_postgis(zigui, postgis_url):
    """PostGIS computes the same per-unit shares with ST_DWithin, and the same nearest
    distances with KNN <->, in the same metric CRS (ST_Transform to its EPSG)."""
    s = zigui
    radii = Radii(urban=1500, rural=3000)
    touch = touch_points(s["outlets"], s["devices"])
    acc = access(s["households"], touch, units=s["units"], radii=radii)
    epsg = metric_crs(s["territory"]).to_epsg()
    schema = f"cov_{secrets.token_hex(4)}"
    store = PostGISStore(postgis_url, schema=schema)
    try:
        for name in ("households", "units", "outlets", "devices"):
            store.write(name, s[name])
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("""
                CREATE TEMP TABLE tp AS
                  SELECT ST_Transform(geom, {e}) AS g FROM outlets WHERE status = '营业'
                  UNION ALL SELECT ST_Transform(geom, {e}) FROM devices;
                CREATE INDEX ON tp USING gist (g);
                CREATE TEMP TABLE hh AS
                  SELECT h.id, h.count, h.unit,
                         CASE u.kind WHEN 'urban' THEN {ru} ELSE {rr} END AS r,
                         ST_Transform(h.geom, {e}) AS g
                  FROM households h JOIN units u ON u.code = h.unit;
                ANALYZE tp; ANALYZE hh;""").format(
                e=sql.Literal(epsg), ru=sql.Literal(radii.urban), rr=sql.Literal(radii.rural)))
            shares = conn.execute("""
                SELECT unit, sum(count),
                       sum(count) FILTER (WHERE EXISTS (
                           SELECT 1 FROM tp WHERE ST_DWithin(tp.g, hh.g, hh.r)))
                FROM hh GROUP BY unit ORDER BY unit""").fetchall()
            nearest = conn.execute("""
                SELECT hh.id, k.d FROM hh CROSS JOIN LATERAL (
                    SELECT ST_Distance(tp.g, hh.g) AS d FROM tp ORDER BY tp.g <-> hh.g LIMIT 1
                ) k ORDER BY hh.id""").fetchall()
    finally:
        store.close()
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
    ours = coverage_shares(acc, "unit").set_index("code")
    sql_shares = pd.DataFrame(shares, columns=["code", "households", "covered"]).set_index(
        "code").fillna(0)
    with_households = ours.loc[ours["households"] > 0]
    assert len(sql_shares) == len(with_households)
    pd.testing.assert_series_equal(
        with_households["households"].astype(int), sql_shares["households"].astype(int),
        check_names=False)
    pd.testing.assert_series_equal(
        with_households["covered"].astype(int), sql_shares["covered"].astype(int),
        check_names=False)
    assert 0 < sql_shares["covered"].sum() < sql_shares["households"].sum()
    d_sql = pd.Series(dict(nearest)).sort_index()
    d_ours = acc.households.set_index("id")["d_any"].sort_index()
    np.testing.assert_allclose(d_ours.to_numpy(), d_sql.to_numpy(), rtol=0, atol=1e-3)


# ------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def zigui_store(tmp_path_factory, zigui) -> Path:
    path = tmp_path_factory.mktemp("zigui") / "zigui.gpkg"
    store = GeoPackageStore(path)
    for name, frame in zigui.items():
        store.write(name, frame)
    return path


@pytest.fixture
def store_copy(zigui_store, tmp_path) -> Path:
    path = tmp_path / "zigui.gpkg"
    shutil.copy(zigui_store, path)
    return path


def test_cli_coverage_writes_every_output_and_stores_layers(store_copy, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["coverage", "--store", str(store_copy), "--out",
                                       str(out), "--rural-radius", "3000"])
    assert result.exit_code == 0, result.output
    assert "households covered" in result.output and "服务空白" in result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["meta"]["radii"] == {"urban_m": 2000.0, "rural_m": 3000.0}
    assert report["meta"]["layers_used"]["households"].endswith(":households")
    assert report["tables"]["territory"][0]["households"] == 20_000
    for name in ("territory", "units", "blanks", "gaps", "indicators", "files",
                 "assessment"):
        assert (out / f"{name}.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    units_csv = pd.read_csv(out / "units.csv", encoding="utf-8-sig", dtype=str)
    assert list(units_csv.columns[:4]) == ["代码", "名称", "乡镇街道", "城乡类型"]
    book = openpyxl.load_workbook(out / "coverage.xlsx")
    assert book.sheetnames[0] == "说明" and "村社区覆盖" in book.sheetnames
    notes = {row[0]: row[1] for row in book["说明"].iter_rows(values_only=True) if row[0]}
    assert notes["农村服务半径 (米)"] == "3000" and notes["数据日期"] == "2026-06"
    assert book["村社区覆盖"]["A2"].value == "420527101001"  # a code kept as text
    gaps = gpd.read_file(out / "coverage_gaps.geojson")
    assert len(gaps) == len(report["tables"]["gaps"])
    with GeoPackageStore(store_copy) as store:
        assert store.has("coverage_gaps") and store.has("service_blanks")
        assert len(store.read("coverage_gaps")) == len(gaps)


def test_cli_coverage_for_one_institution(store_copy, tmp_path):
    result = CliRunner().invoke(main, ["coverage", "--store", str(store_copy), "--out",
                                       str(tmp_path / "nsh"), "--institution", "NSH"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "nsh" / "institutions.csv", encoding="utf-8-sig")
    assert table["机构"].tolist() == ["NSH"]
    with GeoPackageStore(store_copy) as store:
        assert store.has("coverage_gaps__nsh")


def test_cli_coverage_errors_have_exit_codes(store_copy, tmp_path):
    with GeoPackageStore(store_copy) as store:
        store.write("outlets", store.read("outlets").assign(status="停业"))
        store.delete("devices")
    result = CliRunner().invoke(main, ["coverage", "--store", str(store_copy), "--out",
                                       str(tmp_path / "x")])
    assert result.exit_code == 3 and "no touch points" in result.output
    result = CliRunner().invoke(main, ["coverage", "--store", str(tmp_path / "empty.gpkg")])
    assert result.exit_code == 4 and "no layer named 'territory'" in result.output


def test_cli_place_recommends_sites(store_copy, tmp_path):
    out = tmp_path / "place"
    result = CliRunner().invoke(main, ["place", "--store", str(store_copy), "--kind",
                                       "device", "--k", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sites = pd.read_csv(out / "sites_mclp.csv", encoding="utf-8-sig")
    assert len(sites) == 3 and sites["新增覆盖住户"].is_monotonic_decreasing
    report = json.loads((out / "placement.json").read_text(encoding="utf-8"))
    mclp = report["mclp"]["report"]
    assert mclp["greedy"]["covered"] <= mclp["exact"]["covered"] <= mclp["bound"] + 1e-6
    assert sum(s["newly_covered"] for s in report["mclp"]["sites"]) == mclp["exact"]["covered"]
    lscp = report["lscp"]
    assert lscp["report"]["exact"]["sites"] <= lscp["report"]["greedy"]["sites"]
    assert sum(s["newly_covered"] for s in lscp["sites"]) == lscp["report"][
        "households_coverable"]
    assert len(gpd.read_file(out / "sites_lscp.geojson")) == len(lscp["sites"])


def test_cli_place_with_a_candidates_file(store_copy, tmp_path):
    csv = tmp_path / "sites.csv"
    csv.write_text("name,lon,lat\n镇中心,110.977,30.830\n江边,110.80,30.95\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["place", "--store", str(store_copy), "--k", "1",
                                       "--candidates", str(csv), "--radius", "3000",
                                       "--problem", "mclp", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    sites = pd.read_csv(tmp_path / "p" / "sites_mclp.csv", encoding="utf-8-sig")
    assert len(sites) == 1 and sites["名称"].iloc[0] in ("镇中心", "江边")


def test_commands_have_manual_like_help():
    for command in ("coverage", "place"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "--store" in result.output and "Example" in (
            result.output)


@pytest.mark.parametrize("counts", ["whole", "fractional"])
def test_shares_by_bincount_equal_the_groupby_to_the_last_bit(monkeypatch, counts):
    """coverage_shares sums per unit by np.bincount when that is exact (whole counts, no
    missing key), else by groupby: both give the same table, bit for bit."""
    from gis_grid.coverage import shares

    rng = np.random.default_rng(7)
    n = 3000
    w = rng.integers(1, 6, n) if counts == "whole" else rng.uniform(0.1, 5, n)
    unit = rng.choice(np.array(["U1", "U2", "U10", "甲", "乙"], dtype=object), n)
    homes = points(rng.uniform(0, 40_000, n), rng.uniform(0, 40_000, n), count=w, unit=unit,
                   kind=rng.choice(np.array(["urban", "rural"], dtype=object), n))
    atm = points(rng.uniform(0, 40_000, 30), rng.uniform(0, 40_000, 30),
                 id=[f"D{i}" for i in range(30)], institution="YCB", type="ATM")
    acc = access(homes, touch_points(devices=atm), radii=Radii(urban=1000, rural=3000))
    fast = {by: coverage_shares(acc, by) for by in ("unit", "kind", "territory")}
    monkeypatch.setattr(shares, "_bincount_sums", lambda values, key, sums: None)
    for by, table in fast.items():
        slow = coverage_shares(acc, by)
        pd.testing.assert_frame_equal(table, slow, check_exact=True)
        if counts == "whole":
            assert table["households"].sum() == w.sum()
