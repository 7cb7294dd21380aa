"""Placement: where new outlets or devices should go (选址).

Given candidate sites — a file of them, or the unit centres and town centres
(:func:`candidate_sites`) — and the households that no existing touch point covers, two
classic location problems are solved over the same coverage matrix (site *j* covers
household point *i* when it lies within *i*'s radius, 2 km urban / 5 km rural by
default, :class:`gis_grid.coverage.Radii`):

maximal covering (MCLP, Church & ReVelle 1974), :func:`maximal_covering`
    the ``k`` sites that cover the most uncovered households;
set covering (LSCP, Toregas et al. 1971), :func:`set_covering`
    the fewest sites that cover every uncovered household some candidate can reach.

Both are solved exactly with PySAL ``spopt`` (CBC through PuLP) where the problem is
small enough to finish in time, and always with a fast greedy heuristic: lazy greedy
(Minoux 1978) for MCLP, which covers at least (1 − 1/e) ≈ 63 % of the optimum, and
the greedy set cover, within a factor H(largest set) of the fewest sites. Where both run
the report puts the greedy result next to the optimum; where only the greedy runs, next
to a bound (the LP relaxation, and for MCLP the online bound of the greedy steps).

Demand points whose coverage rows are identical (the same candidate sites reach them)
are merged into one weighted point before solving: the problems are unchanged and often
a hundred times smaller.

Example
-------
>>> import geopandas as gpd
>>> homes = gpd.GeoDataFrame({"count": [5, 1, 1, 2]}, crs=4547,
...                          geometry=gpd.points_from_xy([0, 10, 100, 110], [0, 0, 0, 0]))
>>> sites = gpd.GeoDataFrame({"site": ["a", "b", "c"]}, crs=4547,
...                          geometry=gpd.points_from_xy([5, 105, 55], [0, 0, 0]))
>>> r = maximal_covering(homes, sites, k=1, radii=Radii(rural=20))
>>> r.sites[["site", "newly_covered"]].values.tolist()
[['a', 6]]
"""

from __future__ import annotations

import heapq
import math
import time
import warnings
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy import sparse
from scipy.optimize import linprog
from scipy.spatial import cKDTree

from gis_grid.coverage.common import (
    DEFAULT_RADII,
    Radii,
    _choose_crs,
    _counts,
    _fail,
    _household_unit_index,
    _metric,
    _points_xy,
    _text,
    check_layers,
    screen_points,
    territory_crs,
)
from gis_grid.coverage.points import _centres, town_centres

__all__ = [
    "Placement",
    "screen_inputs",
    "candidate_sites",
    "coverage_matrix",
    "greedy_max_cover",
    "greedy_set_cover",
    "maximal_covering",
    "set_covering",
]

#: spopt builds its model with Python loops over every demand × site cell; above this
#: many cells (after merging identical demand rows) the exact model is not attempted.
EXACT_MAX_CELLS = 400_000
#: CBC time limit of the exact model, seconds.
EXACT_TIME_LIMIT = 60.0
#: The LP bound is computed while the merged coverage matrix has at most this many
#: non-zeros (HiGHS takes about a second at 10^5), and given at most this many seconds.
LP_MAX_NONZEROS = 300_000
LP_TIME_LIMIT = 20.0


# ----------------------------------------------------------------------------- candidates


def candidate_sites(units: gpd.GeoDataFrame, households: gpd.GeoDataFrame | None = None,
                    townships: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Candidate sites: the centre of every unit (the household point nearest its
    household-weighted mean) and of every township (its seat where known).

    Returns
    -------
    GeoDataFrame
        ``site`` (``U-<unit code>`` / ``T-<township code>``), ``name``, ``source`` (unit
        centre / town centre), ``unit`` (code; the township code for a town centre), in
        the units' CRS.

    Examples
    --------
    >>> import shapely
    >>> u = gpd.GeoDataFrame({"code": ["420527100001"], "name": ["甲村"]}, crs=4547,
    ...                      geometry=[shapely.box(0, 0, 10, 10)])
    >>> candidate_sites(u)[["site", "source"]].values.tolist()
    [['U-420527100001', 'unit centre']]
    """
    check_layers({"units": units, "households": households, "townships": townships})
    code = _text(units["code"])
    if households is not None and len(households):
        centres = _centres(units, households, _household_unit_index(households, units),
                           _points_xy(households, _choose_crs(None, units)))
    else:
        centres = _centres(units, None, None, None)
    frames = [gpd.GeoDataFrame({
        "site": [f"U-{c}" for c in code],
        "name": _text(units["name"]) if "name" in units else code,
        "source": "unit centre", "unit": code}, geometry=centres.to_numpy(), crs=units.crs)]
    if townships is not None and len(townships):
        tcode = _text(townships["code"])
        tc = town_centres(townships, units, households).to_crs(units.crs)
        frames.append(gpd.GeoDataFrame({
            "site": [f"T-{c}" for c in tcode],
            "name": _text(townships["name"]) if "name" in townships else tcode,
            "source": "town centre", "unit": tcode}, geometry=tc.to_numpy(), crs=units.crs))
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry",
                            crs=units.crs)


def screen_inputs(layers: dict[str, gpd.GeoDataFrame | None],
                  territory: gpd.GeoDataFrame | None = None,
                  units: gpd.GeoDataFrame | None = None, radii: Radii = DEFAULT_RADII, *,
                  strict: bool = False):
    """The metric CRS of a placement and its point layers screened (``screen_points``).

    The CRS is chosen from the territory alone (else from the units, else from the
    households' median point), never moved by a stray point; households, existing touch
    points and candidates with broken coordinates or beyond the largest radius of the
    territory (of the units without one) are refused (``strict``) or left out.

    Returns ``(crs, Screened)``.
    """
    area = territory if territory is not None and len(territory) else (
        units if units is not None and len(units) else None)
    check_layers({"territory": area, **layers}, screened=tuple(layers))
    if area is not None:
        crs = territory_crs(area)
        land = shapely.union_all(_metric(area, crs))
    else:
        crs, land = _choose_crs(None, *layers.values()), None
    return crs, screen_points(layers, land, crs, radii.largest, strict=strict,
                              source="place")


# ----------------------------------------------------------------------------- matrices


def coverage_matrix(demand_xy: np.ndarray, radius: np.ndarray | float,
                    site_xy: np.ndarray) -> sparse.csr_matrix:
    """Boolean sparse matrix (demand × sites): site *j* within ``radius[i]`` of demand *i*.

    Examples
    --------
    >>> coverage_matrix(np.array([[0.0, 0], [10, 0]]), np.array([1.0, 5.0]),
    ...                 np.array([[0.0, 0], [6, 0]])).toarray().tolist()
    [[True, False], [False, True]]
    """
    n, m = len(demand_xy), len(site_xy)
    radius = np.broadcast_to(np.asarray(radius, float), (n,))
    if n == 0 or m == 0:
        return sparse.csr_matrix((n, m), dtype=bool)
    pairs = cKDTree(demand_xy).sparse_distance_matrix(
        cKDTree(site_xy), float(radius.max()), output_type="ndarray")
    # The "ndarray" output keeps pairs at distance 0 (a site on a household point).
    keep = pairs["v"] <= radius[pairs["i"]]
    return sparse.csr_matrix((np.ones(int(keep.sum()), bool),
                              (pairs["i"][keep], pairs["j"][keep])), shape=(n, m))


def _merge_rows(a: sparse.csr_matrix, w: np.ndarray, points: np.ndarray
                ) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """Merge demand rows with identical coverage into one row of summed weight. Rows
    covered by no site are dropped. Returns the merged matrix, weights, point counts and
    each original row's merged row (-1 for a dropped one)."""
    n = a.shape[0]
    rows = np.flatnonzero(np.diff(a.indptr) > 0)
    if not len(rows):
        return (sparse.csr_matrix((0, a.shape[1]), dtype=bool), np.zeros(0), np.zeros(0),
                np.full(n, -1))
    sub = a[rows]
    # Two random projections identify a row's set of sites; identical sets give identical
    # sums (same terms in the same order), different sets collide with probability ~2⁻¹⁰⁰.
    rng = np.random.default_rng(12345)
    keys = np.column_stack([sub @ rng.random(a.shape[1]), sub @ rng.random(a.shape[1]),
                            np.diff(sub.indptr)])
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    merged = sub[first]
    wm = np.bincount(inverse, w[rows], minlength=len(first))
    pm = np.bincount(inverse, points[rows], minlength=len(first))
    group = np.full(n, -1, np.int64)
    group[rows] = inverse
    return merged.tocsr(), wm, pm, group


# ----------------------------------------------------------------------------- heuristics


def greedy_max_cover(a: sparse.spmatrix, w: np.ndarray, k: int
                     ) -> tuple[list[int], list[float]]:
    """Lazy greedy maximal covering: ``k`` columns of ``a`` (demand × sites, boolean)
    covering the most weight ``w``, and each one's marginal gain. Gains only shrink as
    sites are added (submodularity), so a site whose stale gain is below the best fresh
    one need not be re-evaluated (Minoux's lazy evaluation); the result is the plain
    greedy's, within 1 − 1/e of the optimum. Stops early when no site adds anything.

    Examples
    --------
    >>> a = sparse.csr_matrix(np.array([[1, 0], [1, 1], [0, 1]], bool))
    >>> greedy_max_cover(a, np.array([1.0, 1, 5]), 2)
    ([1, 0], [6.0, 1.0])
    """
    csc = sparse.csc_matrix(a, dtype=bool)
    remaining = np.asarray(w, float).copy()
    gains = csc.T @ remaining
    heap = [(-g, j) for j, g in enumerate(gains) if g > 0]
    heapq.heapify(heap)
    order: list[int] = []
    added: list[float] = []
    while heap and len(order) < k:
        _, j = heapq.heappop(heap)
        rows = csc.indices[csc.indptr[j]:csc.indptr[j + 1]]
        gain = float(remaining[rows].sum())
        if gain <= 0:
            continue
        if heap and (-gain, j) > heap[0]:
            # Stale: re-queue with its fresh gain. Comparing (−gain, site) pairs breaks
            # ties by the lower site number, as the plain greedy does.
            heapq.heappush(heap, (-gain, j))
            continue
        order.append(j)
        added.append(gain)
        remaining[rows] = 0.0
    return order, added


def greedy_set_cover(a: sparse.spmatrix, count: np.ndarray | None = None) -> list[int]:
    """Greedy set covering: columns of ``a`` added, each covering the most demand points
    not yet covered (``count`` points per row, default 1), until every row that some
    column covers is covered. Within a factor H(largest column) of the fewest columns.

    Examples
    --------
    >>> a = sparse.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], bool))
    >>> greedy_set_cover(a)
    [0, 2]
    """
    n = a.shape[0]
    count = np.ones(n) if count is None else np.asarray(count, float)
    coverable = np.asarray(a.sum(axis=1) > 0).ravel()
    order, _ = greedy_max_cover(a, np.where(coverable, count, 0.0), a.shape[1])
    return order


def _online_bound(a: sparse.csc_matrix, w: np.ndarray, k: int, order: list[int]) -> float:
    """An upper bound on the best ``k``-site coverage from the greedy run: for every
    prefix S of the greedy order, OPT ≤ f(S) + the sum of the ``k`` largest marginal gains
    with respect to S (Nemhauser, Wolsey & Fisher 1978)."""
    remaining = np.asarray(w, float).copy()
    covered = 0.0
    best = math.inf
    for step in range(len(order) + 1):
        gains = a.T @ remaining
        top = np.sort(gains)[::-1][:k].sum() if len(gains) else 0.0
        best = min(best, covered + top)
        if step < len(order):
            rows = a.indices[a.indptr[order[step]]:a.indptr[order[step] + 1]]
            covered += remaining[rows].sum()
            remaining[rows] = 0.0
    return float(best)


def _lp_mclp(a: sparse.csr_matrix, w: np.ndarray, k: int) -> float | None:
    """Value of the LP relaxation of MCLP, an upper bound on its optimum."""
    n, m = a.shape
    if a.nnz > LP_MAX_NONZEROS or n == 0:
        return None
    # Variables [x_1..x_m, y_1..y_n]; maximise w·y ⇔ minimise −w·y.
    c = np.concatenate([np.zeros(m), -np.asarray(w, float)])
    cover = sparse.hstack([-a.astype(float), sparse.identity(n, format="csr")])  # y ≤ A x
    budget = sparse.csr_matrix(np.concatenate([np.ones(m), np.zeros(n)])[None, :])
    res = linprog(c, A_ub=sparse.vstack([cover, budget]).tocsr(),
                  b_ub=np.concatenate([np.zeros(n), [k]]), bounds=(0, 1), method="highs",
                  options={"time_limit": LP_TIME_LIMIT})
    # Only a solved LP is a bound (status 0); a time-limited one is not.
    return float(-res.fun) if res.status == 0 else None


def _lp_lscp(a: sparse.csr_matrix) -> float | None:
    """Value of the LP relaxation of LSCP, a lower bound on the fewest sites."""
    n, m = a.shape
    if a.nnz > LP_MAX_NONZEROS or n == 0:
        return None
    res = linprog(np.ones(m), A_ub=-a.astype(float), b_ub=-np.ones(n), bounds=(0, 1),
                  method="highs", options={"time_limit": LP_TIME_LIMIT})
    return float(res.fun) if res.status == 0 else None


# ----------------------------------------------------------------------------- exact (spopt)


def _solver(time_limit: float):
    import pulp

    return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit)


def _status(problem) -> str:
    # PuLP's sol_status: 1 optimal, 2 a feasible solution found before the time limit.
    return {1: "optimal", 2: "time limit (feasible, not proven optimal)"}.get(
        getattr(problem, "sol_status", 0), "not solved")


def _spopt_mclp(a: sparse.csr_matrix, w: np.ndarray, k: int, time_limit: float
                ) -> tuple[list[int], str]:
    from spopt.locate import MCLP

    # A 0/2 cost matrix with a service radius of 1 carries any per-demand radius.
    cost = np.where(a.toarray(), 0.0, 2.0)
    # PuLP 3.3 warns that its 4.0 will rename what spopt calls; nothing to act on here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = MCLP.from_cost_matrix(cost, np.asarray(w, float), service_radius=1.0,
                                      p_facilities=int(k), name="mclp")
        try:
            model.solve(_solver(time_limit), results=False)
        except RuntimeError:
            return [], _status(model.problem)
    chosen = [j for j, x in enumerate(model.fac_vars) if (x.value() or 0) > 0.5]
    return chosen, _status(model.problem)


def _spopt_lscp(a: sparse.csr_matrix, time_limit: float) -> tuple[list[int], str]:
    from spopt.locate import LSCP

    cost = np.where(a.toarray(), 0.0, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = LSCP.from_cost_matrix(cost, service_radius=1.0, name="lscp")
        try:
            model.solve(_solver(time_limit), results=False)
        except RuntimeError:
            return [], _status(model.problem)
    chosen = [j for j, x in enumerate(model.fac_vars) if (x.value() or 0) > 0.5]
    return chosen, _status(model.problem)


# ----------------------------------------------------------------------------- the problems


@dataclass
class Placement:
    """Recommended sites and how they were found.

    Attributes
    ----------
    sites
        The recommended sites in the order they add most (greedy order within the chosen
        set): ``order``, ``site``, the candidate's own columns, ``newly_covered``
        (households it adds to those before it), ``cumulative``, ``cumulative_share``
        (of the uncovered households), in the candidates' CRS.
    problem
        ``"mclp"`` (maximal covering) or ``"lscp"`` (set covering).
    method
        Which result ``sites`` holds: ``"spopt"`` (exact) or ``"greedy"``.
    report
        Households (total, uncovered, coverable by some candidate), the greedy result,
        the exact result where it ran (status, seconds), the bounds, the sizes before
        and after merging identical demand rows, the radii and the time taken.
    """

    sites: gpd.GeoDataFrame
    problem: str
    method: str
    report: dict = field(default_factory=dict)

    def summary(self) -> str:
        """A short human summary, in Chinese and English."""
        r = self.report
        head = ("最大覆盖选址 maximal covering" if self.problem == "mclp"
                else "集合覆盖选址 set covering")
        lines = [f"{head}: {len(self.sites)} sites by {self.method}; uncovered households "
                 f"{r['households_uncovered']:,} of {r['households_total']:,}, coverable "
                 f"{r['households_coverable']:,} (radius urban {r['radii']['urban_m']:g} m, "
                 f"rural {r['radii']['rural_m']:g} m)"]
        g, x = r["greedy"], r.get("exact")
        if self.problem == "mclp":
            line = f"  greedy covers {g['covered']:,.0f}"
            if x and x.get("covered") is not None:
                line += f"; optimum ({x['status']}) {x['covered']:,.0f} — greedy/optimum " \
                        f"{g['covered'] / max(x['covered'], 1e-9):.3f}"
            line += f"; upper bound {r['bound']:,.0f}"
        else:
            line = f"  greedy needs {g['sites']} sites"
            if x and x.get("sites") is not None:
                line += f"; optimum ({x['status']}) {x['sites']}"
            line += f"; lower bound {r['bound']}"
        lines.append(line)
        for _, s in self.sites.head(10).iterrows():
            lines.append(f"  {int(s['order']):>3}. {s['site']:<20} +{int(s['newly_covered']):,}"
                         f" households (cumulative {int(s['cumulative']):,}, "
                         f"{100 * s['cumulative_share']:.1f} %)")
        if len(self.sites) > 10:
            lines.append(f"  … and {len(self.sites) - 10} more sites")
        return "\n".join(lines)


@dataclass
class _Demand:
    a: sparse.csr_matrix  # merged demand rows × candidate sites
    w: np.ndarray  # households per merged row
    points: np.ndarray  # household points per merged row
    total: float
    uncovered: float
    radii: Radii
    rows: int  # uncovered household points before merging


def _demand(households: gpd.GeoDataFrame, sites: gpd.GeoDataFrame,
            existing: gpd.GeoDataFrame | None, units: gpd.GeoDataFrame | None,
            radii: Radii, crs, default_kind: str) -> _Demand:
    if households is None or not len(households):
        _fail("households", "no household points: there is no demand to place sites for")
    if sites is None or not len(sites):
        _fail("candidate sites", "no candidate sites to choose from")
    check_layers({"households": households, "candidate sites": sites,
                  "existing touch points": existing, "units": units})
    crs = _choose_crs(crs, units, households)
    xy = _points_xy(households, crs)
    w = _counts(households)
    if units is not None and len(units):
        idx = _household_unit_index(households, units)
        kinds = (_text(units["kind"]) if "kind" in units
                 else np.full(len(units), default_kind, object))[idx]
    else:
        kinds = (_text(households["kind"]) if "kind" in households
                 else np.full(len(households), default_kind, object))
    radius = radii.for_kinds(kinds)
    uncovered = np.ones(len(xy), bool)
    if existing is not None and len(existing):
        d, _ = cKDTree(_points_xy(existing, crs)).query(xy, workers=-1,
                                                         distance_upper_bound=radii.reach)
        uncovered = ~(d <= radius)
    rows = np.flatnonzero(uncovered)
    a = coverage_matrix(xy[rows], radius[rows], _points_xy(sites, crs))
    merged, wm, pm, _ = _merge_rows(a, w[rows], np.ones(len(rows)))
    return _Demand(merged, wm, pm, float(w.sum()), float(w[rows].sum()), radii, len(rows))


def _ordered_sites(sites: gpd.GeoDataFrame, a: sparse.csr_matrix, w: np.ndarray,
                   chosen: list[int], uncovered: float) -> gpd.GeoDataFrame:
    """The chosen sites in greedy order within the set, with what each adds."""
    order, gains = greedy_max_cover(a[:, chosen], w, len(chosen)) if chosen else ([], [])
    rest = [j for j in range(len(chosen)) if j not in set(order)]
    picks = [chosen[j] for j in order] + [chosen[j] for j in rest]
    gains = list(gains) + [0.0] * len(rest)
    out = sites.iloc[picks].reset_index(drop=True).copy()
    if "site" not in out:
        out.insert(0, "site", [str(i) for i in sites.index[picks]])
    out.insert(0, "order", np.arange(1, len(picks) + 1))
    out["newly_covered"] = np.round(gains).astype(np.int64)
    out["cumulative"] = np.cumsum(out["newly_covered"].to_numpy())
    out["cumulative_share"] = out["cumulative"] / uncovered if uncovered else np.nan
    return gpd.GeoDataFrame(out, geometry=sites.geometry.name, crs=sites.crs)


def _use_exact(method: str, cells: int, max_cells: int) -> bool:
    if method not in ("auto", "exact", "greedy"):
        raise ValueError(f"method must be auto, exact or greedy, got {method!r}")
    return method == "exact" or (method == "auto" and cells <= max_cells)


def _base_report(dem: _Demand, sites: gpd.GeoDataFrame, started: float) -> dict:
    return {
        "households_total": int(round(dem.total)),
        "households_uncovered": int(round(dem.uncovered)),
        "households_coverable": int(round(dem.w.sum())),
        "uncovered_points": dem.rows,
        "demand_rows_merged": int(dem.a.shape[0]),
        "candidates": int(len(sites)),
        "radii": dem.radii.as_dict(),
        "seconds_prepare": round(time.perf_counter() - started, 3),
    }


def maximal_covering(
    households: gpd.GeoDataFrame,
    sites: gpd.GeoDataFrame,
    *,
    k: int,
    existing: gpd.GeoDataFrame | None = None,
    units: gpd.GeoDataFrame | None = None,
    radii: Radii = DEFAULT_RADII,
    method: str = "auto",
    time_limit: float = EXACT_TIME_LIMIT,
    max_cells: int = EXACT_MAX_CELLS,
    crs: pyproj.CRS | str | int | None = None,
    default_kind: str = "rural",
) -> Placement:
    """The ``k`` candidate sites that cover the most households not yet covered (MCLP).

    Parameters
    ----------
    households
        Household points with ``count`` (and ``unit`` for their kind of area).
    sites
        Candidate sites (points); :func:`candidate_sites` makes them from units.
    k
        Number of sites to add.
    existing
        Existing touch points (:func:`gis_grid.coverage.touch_points`, or just outlets
        or devices); households within their radius are already covered.
    units
        Villages / communities with ``kind``, giving each household its radius.
    radii
        Service radius per kind of area.
    method
        ``"auto"`` — exact (spopt, CBC) when the merged problem has at most ``max_cells``
        demand × site cells, and greedy always; ``"exact"`` — always try spopt;
        ``"greedy"`` — greedy only.
    time_limit
        Seconds CBC may take; a solution found by then is reported as not proven optimal.

    Returns
    -------
    Placement
        The exact solution where it ran and is at least as good, else the greedy one;
        ``report`` has both, with the upper bound on the optimum.

    Examples
    --------
    >>> homes = gpd.GeoDataFrame({"count": [3, 3, 4]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([0, 20, 40], [0, 0, 0]))
    >>> sites = gpd.GeoDataFrame({"site": ["a", "b"]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([10, 40], [0, 0]))
    >>> r = maximal_covering(homes, sites, k=2, radii=Radii(rural=10))
    >>> r.sites["newly_covered"].tolist(), r.report["exact"]["status"]
    ([6, 4], 'optimal')
    """
    if int(k) < 1:
        raise ValueError("maximal_covering: k must be at least 1")
    started = time.perf_counter()
    dem = _demand(households, sites, existing, units, radii, crs, default_kind)
    report = _base_report(dem, sites, started)
    k = min(int(k), len(sites))
    t = time.perf_counter()
    g_order, g_gains = greedy_max_cover(dem.a, dem.w, k)
    greedy = {"covered": float(sum(g_gains)), "sites": len(g_order),
              "seconds": round(time.perf_counter() - t, 4)}
    report["greedy"] = greedy
    csc = sparse.csc_matrix(dem.a)
    bound = _online_bound(csc, dem.w, k, g_order) if dem.a.shape[0] else 0.0
    lp = _lp_mclp(dem.a, dem.w, k)
    report["bound_online"] = bound
    report["bound_lp"] = lp
    report["bound"] = float(min(b for b in (bound, lp, greedy["covered"] / (1 - 1 / math.e))
                                if b is not None))
    chosen, method_used = g_order, "greedy"
    cells = dem.a.shape[0] * dem.a.shape[1]
    if dem.a.shape[0] and _use_exact(method, cells, max_cells):
        t = time.perf_counter()
        x_sites, status = _spopt_mclp(dem.a, dem.w, k, time_limit)
        covered = float(dem.w[np.asarray(dem.a[:, x_sites].sum(axis=1)).ravel() > 0].sum()
                        ) if x_sites else None
        report["exact"] = {"solver": "spopt MCLP (CBC)", "status": status, "covered": covered,
                           "sites": len(x_sites), "seconds": round(time.perf_counter() - t, 3)}
        if covered is not None:
            report["greedy_over_optimum"] = (greedy["covered"] / covered if covered > 0
                                             else 1.0)
            if covered >= greedy["covered"] - 1e-9:
                chosen, method_used = x_sites, "spopt"
    else:
        report["exact"] = {"status": "not run", "reason": (
            f"{cells:,} demand × site cells > {max_cells:,}" if method == "auto"
            else "method greedy")}
    report["greedy_over_bound"] = greedy["covered"] / report["bound"] if report["bound"] else 1.0
    report["seconds"] = round(time.perf_counter() - started, 3)
    out = _ordered_sites(sites, dem.a, dem.w, list(chosen), dem.uncovered)
    report["k"] = k
    return Placement(out, "mclp", method_used, report)


def set_covering(
    households: gpd.GeoDataFrame,
    sites: gpd.GeoDataFrame,
    *,
    existing: gpd.GeoDataFrame | None = None,
    units: gpd.GeoDataFrame | None = None,
    radii: Radii = DEFAULT_RADII,
    method: str = "auto",
    time_limit: float = EXACT_TIME_LIMIT,
    max_cells: int = EXACT_MAX_CELLS,
    crs: pyproj.CRS | str | int | None = None,
    default_kind: str = "rural",
) -> Placement:
    """The fewest candidate sites that cover every uncovered household that some
    candidate can reach (LSCP). Households no candidate reaches are counted in the
    report (``households_uncovered`` − ``households_coverable``).

    Parameters are those of :func:`maximal_covering`, without ``k``.

    Examples
    --------
    >>> homes = gpd.GeoDataFrame({"count": [1, 1, 1]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([0, 20, 40], [0, 0, 0]))
    >>> sites = gpd.GeoDataFrame({"site": ["a", "b", "c"]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([0, 10, 40], [0, 0, 0]))
    >>> set_covering(homes, sites, radii=Radii(rural=10)).sites["site"].tolist()
    ['b', 'c']
    """
    started = time.perf_counter()
    dem = _demand(households, sites, existing, units, radii, crs, default_kind)
    report = _base_report(dem, sites, started)
    t = time.perf_counter()
    g_order = greedy_set_cover(dem.a, dem.points)
    report["greedy"] = {"sites": len(g_order), "covered": float(dem.w.sum()),
                        "seconds": round(time.perf_counter() - t, 4)}
    lp = _lp_lscp(dem.a)
    largest = int(np.asarray(dem.a.sum(axis=0)).max()) if dem.a.nnz else 1
    harmonic = sum(1.0 / i for i in range(1, largest + 1))
    bounds = [math.ceil(len(g_order) / harmonic - 1e-9)]
    if lp is not None:
        bounds.append(math.ceil(lp - 1e-6))
    report["bound_lp"] = lp
    report["bound"] = int(max(bounds)) if dem.a.shape[0] else 0
    chosen, method_used = g_order, "greedy"
    cells = dem.a.shape[0] * dem.a.shape[1]
    if dem.a.shape[0] and _use_exact(method, cells, max_cells):
        t = time.perf_counter()
        x_sites, status = _spopt_lscp(dem.a, time_limit)
        report["exact"] = {"solver": "spopt LSCP (CBC)", "status": status,
                           "sites": len(x_sites) if x_sites else None,
                           "seconds": round(time.perf_counter() - t, 3)}
        if x_sites:
            report["greedy_over_optimum"] = len(g_order) / len(x_sites)
            if len(x_sites) <= len(g_order):
                chosen, method_used = x_sites, "spopt"
    else:
        report["exact"] = {"status": "not run", "reason": (
            f"{cells:,} demand × site cells > {max_cells:,}" if method == "auto"
            else "method greedy")}
    report["seconds"] = round(time.perf_counter() - started, 3)
    out = _ordered_sites(sites, dem.a, dem.w, list(chosen), dem.uncovered)
    return Placement(out, "lscp", method_used, report)
