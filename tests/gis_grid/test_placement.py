"""Placement: maximal and set covering checked against brute force on small instances,
the greedy heuristic against the optimum and its 1 − 1/e guarantee, the bounds, and the
households each added site newly covers."""

from __future__ import annotations

import itertools
import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from scipy import sparse

from gis_grid.coverage import Radii, touch_points
from gis_grid.errors import InputError
from gis_grid.placement import (
    _merge_rows,
    _spopt_lscp,
    _spopt_mclp,
    candidate_sites,
    coverage_matrix,
    greedy_max_cover,
    greedy_set_cover,
    maximal_covering,
    set_covering,
)

M = "EPSG:4547"


def instance(seed: int, n: int = 40, m: int = 10, size: float = 10_000.0):
    rng = np.random.default_rng(seed)
    homes = gpd.GeoDataFrame({"count": rng.integers(1, 9, n)},
                             geometry=gpd.points_from_xy(*rng.uniform(0, size, (2, n))), crs=M)
    sites = gpd.GeoDataFrame({"site": [f"S{j}" for j in range(m)]},
                             geometry=gpd.points_from_xy(*rng.uniform(0, size, (2, m))), crs=M)
    return homes, sites


def covered_by(homes, sites, chosen, radius):
    h = shapely.get_coordinates(homes.geometry.array)
    s = shapely.get_coordinates(sites.geometry.array)[list(chosen)]
    if not len(s):
        return 0
    d = np.hypot(h[:, None, 0] - s[None, :, 0], h[:, None, 1] - s[None, :, 1])
    return int(homes["count"].to_numpy()[(d <= radius).any(axis=1)].sum())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_mclp_matches_brute_force_and_greedy_keeps_its_guarantee(seed, k):
    homes, sites = instance(seed)
    radius = 2500.0
    best = max(covered_by(homes, sites, c, radius)
               for c in itertools.combinations(range(len(sites)), k))
    r = maximal_covering(homes, sites, k=k, radii=Radii(rural=radius), method="exact")
    rep = r.report
    assert rep["exact"]["status"] == "optimal"
    assert rep["exact"]["covered"] == best
    assert r.method == "spopt" and r.sites["newly_covered"].sum() == best
    greedy = rep["greedy"]["covered"]
    assert (1 - 1 / math.e) * best - 1e-9 <= greedy <= best
    assert rep["bound"] >= best - 1e-6 and rep["bound_online"] >= best - 1e-6
    assert rep["bound_lp"] >= best - 1e-6


def test_greedy_can_fall_short_of_the_optimum_and_says_by_how_much():
    # S0 covers four points of weight 1; S1 and S2 each cover two of them and a point of
    # weight 1.5. Greedy takes S0 (4) then S1 (+1.5) = 5.5; the optimum S1 + S2 = 7.
    a = sparse.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1], [1, 0, 1], [0, 1, 0],
                                    [0, 0, 1]], bool))
    w = np.array([1, 1, 1, 1, 1.5, 1.5])
    order, gains = greedy_max_cover(a, w, 2)
    assert order == [0, 1] and gains == [4.0, 1.5]
    chosen, status = _spopt_mclp(a, w, 2, time_limit=30)
    assert sorted(chosen) == [1, 2] and status == "optimal"
    assert 5.5 / 7 >= 1 - 1 / math.e


def test_newly_covered_per_added_site_in_greedy_order():
    # Three clusters of 6, 4 and 1 households; one site each; radius 100 m.
    homes = gpd.GeoDataFrame({"count": [3, 3, 4, 1]}, crs=M,
                             geometry=gpd.points_from_xy([0, 10, 1000, 2000], [0] * 4))
    sites = gpd.GeoDataFrame({"site": ["c", "a", "b"]}, crs=M,
                             geometry=gpd.points_from_xy([2000, 5, 1000], [0] * 3))
    r = maximal_covering(homes, sites, k=3, radii=Radii(rural=100))
    assert r.sites["site"].tolist() == ["a", "b", "c"]
    assert r.sites["newly_covered"].tolist() == [6, 4, 1]
    assert r.sites["cumulative"].tolist() == [6, 10, 11]
    assert r.sites["cumulative_share"].tolist() == pytest.approx([6 / 11, 10 / 11, 1.0])
    assert r.sites["order"].tolist() == [1, 2, 3]


def test_existing_touch_points_remove_covered_demand():
    homes = gpd.GeoDataFrame({"count": [3, 3, 4]}, crs=M,
                             geometry=gpd.points_from_xy([0, 1000, 2000], [0] * 3))
    sites = gpd.GeoDataFrame({"site": ["a", "b", "c"]}, crs=M,
                             geometry=gpd.points_from_xy([0, 1000, 2000], [0] * 3))
    atm = gpd.GeoDataFrame({"id": ["D"], "institution": ["X"], "type": ["ATM"]}, crs=M,
                           geometry=gpd.points_from_xy([2000], [50]))
    r = maximal_covering(homes, sites, k=1, existing=touch_points(devices=atm),
                         radii=Radii(rural=100))
    assert r.report["households_uncovered"] == 6 and r.report["households_total"] == 10
    assert r.sites["newly_covered"].tolist() == [3]


def test_radius_follows_the_kind_of_area():
    units = gpd.GeoDataFrame({"code": ["u", "r"], "kind": ["urban", "rural"]}, crs=M,
                             geometry=[shapely.box(-5000, -100, 5000, 100),
                                       shapely.box(5000, -100, 20000, 100)])
    homes = gpd.GeoDataFrame({"count": [1, 1], "unit": ["u", "r"]}, crs=M,
                             geometry=gpd.points_from_xy([3000, 7000], [0, 0]))
    sites = gpd.GeoDataFrame({"site": ["s"]}, crs=M, geometry=gpd.points_from_xy([5000], [0]))
    # The site is 2 km from both: beyond the urban radius (1 km), within the rural (3 km).
    r = maximal_covering(homes, sites, k=1, units=units, radii=Radii(urban=1000, rural=3000))
    assert r.report["households_coverable"] == 1


@pytest.mark.parametrize("seed", range(5))
def test_lscp_matches_brute_force(seed):
    homes, sites = instance(seed, n=30, m=9)
    radius = 3000.0
    reachable = covered_by(homes, sites, range(len(sites)), radius)
    fewest = next(size for size in range(1, len(sites) + 1)
                  if any(covered_by(homes, sites, c, radius) == reachable
                         for c in itertools.combinations(range(len(sites)), size)))
    r = set_covering(homes, sites, radii=Radii(rural=radius), method="exact")
    rep = r.report
    assert rep["exact"]["sites"] == fewest and len(r.sites) == fewest
    assert rep["greedy"]["sites"] >= fewest and rep["bound"] <= fewest
    assert covered_by(homes, sites, [int(s[1:]) for s in r.sites["site"]], radius) == reachable
    assert r.sites["newly_covered"].sum() == reachable == rep["households_coverable"]


def test_greedy_set_cover_and_spopt_lscp_on_a_matrix():
    a = sparse.csr_matrix(np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1],
                                    [0, 0, 0, 0]], bool))
    order = greedy_set_cover(a)
    assert len(order) == 2 and np.asarray(a[:4][:, order].sum(axis=1)).min() >= 1
    chosen, status = _spopt_lscp(a[:4], time_limit=30)
    assert len(chosen) == 2 and status == "optimal"


def test_greedy_only_beyond_the_exact_size_reports_a_bound():
    homes, sites = instance(3, n=200, m=40, size=20_000)
    r = maximal_covering(homes, sites, k=4, radii=Radii(rural=3000), max_cells=10)
    assert r.method == "greedy" and r.report["exact"]["status"] == "not run"
    exact = maximal_covering(homes, sites, k=4, radii=Radii(rural=3000), method="exact")
    optimum = exact.report["exact"]["covered"]
    assert r.report["greedy"]["covered"] <= optimum <= r.report["bound"] + 1e-6
    assert r.report["greedy_over_bound"] <= 1.0


def test_merging_identical_demand_rows_keeps_the_problem():
    homes, sites = instance(1, n=300, m=12)
    xy = shapely.get_coordinates(homes.geometry.array)
    a = coverage_matrix(xy, 2500.0, shapely.get_coordinates(sites.geometry.array))
    w = homes["count"].to_numpy(float)
    merged, wm, pm, group = _merge_rows(a, w, np.ones(len(w)))
    assert merged.shape[0] < a.shape[0]
    assert wm.sum() == w[np.diff(a.indptr) > 0].sum() and pm.sum() == (np.diff(a.indptr) > 0
                                                                       ).sum()
    for cols in itertools.combinations(range(12), 3):
        whole = w[np.asarray(a[:, list(cols)].sum(axis=1)).ravel() > 0].sum()
        part = wm[np.asarray(merged[:, list(cols)].sum(axis=1)).ravel() > 0].sum()
        assert whole == part
    kept = group >= 0
    assert (merged[group[kept]] != a[kept]).nnz == 0


def test_coverage_matrix_includes_the_edge_and_coincident_points():
    a = coverage_matrix(np.array([[0.0, 0], [100, 0]]), np.array([100.0, 10.0]),
                        np.array([[0.0, 0], [100, 0]]))
    assert a.toarray().tolist() == [[True, True], [False, True]]


def test_candidate_sites_are_unit_and_town_centres():
    from layers.synthetic import build_sample

    s = build_sample("420527", households=3_000)
    sites = candidate_sites(s["units"], s["households"], s["townships"])
    assert len(sites) == len(s["units"]) + len(s["townships"])
    assert set(sites["source"]) == {"unit centre", "town centre"}
    unit_sites = sites.loc[sites["source"] == "unit centre"].reset_index(drop=True)
    inside = shapely.contains(s["units"].geometry.array, unit_sites.geometry.array) | \
        shapely.touches(s["units"].geometry.array, unit_sites.geometry.array)
    assert inside.all()


def test_placement_input_errors():
    homes, sites = instance(0)
    with pytest.raises(InputError, match="no candidate sites"):
        maximal_covering(homes, sites.iloc[:0], k=1)
    with pytest.raises(InputError, match="no household points"):
        set_covering(homes.iloc[:0], sites)
    with pytest.raises(InputError, match="CRS mismatch"):
        maximal_covering(homes, sites.to_crs(4326), k=1)
    with pytest.raises(ValueError, match="k must be"):
        maximal_covering(homes, sites, k=0)
