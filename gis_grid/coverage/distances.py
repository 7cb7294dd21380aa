"""Access (plan B2, see ARCHITECTURE.md): per household point and per unit, the distance
to the nearest touch point of each kind and whether it is covered within the radius of its
kind of area; which institutions cover each household (:class:`Access`, :func:`access`).

Every distance is measured in the territory's metric CRS with one k-d tree per touch-point
category, the households queried in Z-order when several trees are queried on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
from pykdtree.kdtree import KDTree

from gis_grid.coverage.common import (
    DEFAULT_RADII,
    DISTANCE_COLUMNS,
    Radii,
    _check_near,
    _choose_crs,
    _counts,
    _fail,
    _household_unit_index,
    _metric,
    _points_xy,
    _positions,
    _text,
    check_layers,
)
from gis_grid.coverage.points import _centres


@dataclass
class Access:
    """What :func:`access` measured.

    Attributes
    ----------
    households
        One row per household point: ``id``, ``count``, ``unit``, ``township``, ``kind``,
        ``radius`` (m), the distances ``d_any`` … (``DISTANCE_COLUMNS``, metres; NaN
        where there is no touch point of that kind), ``nearest`` (id of the nearest touch
        point), ``nearest_institution``, ``nearest_kind``, and ``covered``,
        ``covered_outlet``, ``covered_device`` (a touch point of that kind within the
        radius). Geometry as given.
    units
        One row per unit (when units were given): ``code``, ``name``, ``township``,
        ``kind``, ``radius``, ``households`` (sum of counts), ``covered``, ``share``,
        ``d_nearest`` (the distance from the nearest of its households to the nearest
        touch point, or from its centre when it has none), ``nearest``…, the distances
        ``d_any`` … from the unit's centre (:func:`unit_centres`), and ``blank`` (no
        touch point within the radius of any of its households).
    covered_by
        Boolean frame, one row per household point and one column per institution: a
        touch point of that institution within the household's radius.
    touch
        The touch points used.
    crs
        The metric CRS every distance was measured in.
    radii
        The radii used.
    xy
        The household points' coordinates in ``crs``, shape (n, 2).
    notes
        What the caller should know (households placed in units by location, …).
    """

    households: gpd.GeoDataFrame
    units: gpd.GeoDataFrame | None
    covered_by: pd.DataFrame
    touch: gpd.GeoDataFrame
    crs: pyproj.CRS
    radii: Radii
    xy: np.ndarray
    notes: list[str] = field(default_factory=list)


def _query(points: np.ndarray, xy: np.ndarray, bound: float | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each of ``xy`` to the nearest of ``points`` (both (n, 2), metres) and
    its index; with ``bound``, only neighbours nearer than it are looked for (inf and
    index -1 for the others: callers test ``d <= radius`` themselves, the bound only
    prunes).

    pykdtree's k-d tree (OpenMP on every core) rather than scipy's ``cKDTree``: the same
    distances and indices, in half the time on 10^6 households × 2·10^4 touch points
    (0.11 s against 0.22 s with ``workers=-1`` on 2 cores), the query that dominates
    :func:`access`."""
    tree = KDTree(np.ascontiguousarray(points, dtype=np.float64))
    query = np.ascontiguousarray(xy, dtype=np.float64)
    if bound is None:
        d, i = tree.query(query, k=1)
    else:
        d, i = tree.query(query, k=1, distance_upper_bound=bound * (1 + 1e-9))
    i = i.astype(np.int64)
    i[~np.isfinite(d)] = -1
    return d, i


#: From how many k-d trees queried on the households on a Z-order pays for itself.
Z_ORDER_TREES = 3


def _spatial_order(xy: np.ndarray, bits: int = 16) -> np.ndarray:
    """A Z-order (Morton) permutation of the points: neighbours on the ground become
    neighbours in memory, so k-d tree queries made in this order reuse the cache. On 10^6
    households and 2·10^4 touch points it costs 0.14 s and saves about 0.05 s per tree
    queried: worth it from :data:`Z_ORDER_TREES` trees on (see :func:`access`)."""
    if len(xy) < 2:
        return np.arange(len(xy))
    lo = xy.min(axis=0)
    span = np.maximum(xy.max(axis=0) - lo, 1e-9)
    q = ((xy - lo) / span * (2**bits - 1)).astype(np.uint64)

    def spread(v: np.ndarray) -> np.ndarray:  # put a zero bit between each bit of v
        for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF),
                            (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333),
                            (1, 0x5555555555555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
        return v

    return np.argsort(spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1)), kind="stable")


def _distance_columns(keys: np.ndarray) -> list[str]:
    """The distance columns for touch points of categories ``keys``: every standard one
    (:data:`DISTANCE_COLUMNS`), then any other category's."""
    return list(DISTANCE_COLUMNS) + [f"d_{k}" for k in np.unique(keys)
                                     if f"d_{k}" not in DISTANCE_COLUMNS]


def _nearest(touch_xy: np.ndarray, keys: np.ndarray, kinds: np.ndarray, xy: np.ndarray,
             order: np.ndarray | None = None, out: np.ndarray | None = None
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Distance from each point of ``xy`` to the nearest touch point of each category, and
    the index (into the touch points) of the nearest of all. One k-d tree per category;
    the distance to any outlet / device / touch point is the least over categories.
    ``order`` is the order to query in (default: as given). The distances are written in
    the rows of ``out`` (shape (len(_distance_columns(keys)), len(xy)), NaN where there
    is no touch point of that kind; allocated when not given), one row per column, so the
    caller can make them one block of its frame without a copy; the dict maps each column
    name to its row."""
    n = len(xy)
    columns = _distance_columns(keys)
    if out is None:
        out = np.empty((len(columns), n))
    out.fill(np.nan)
    rows = {col: out[i] for i, col in enumerate(columns)}

    def put(col: str, values: np.ndarray) -> None:  # back from query order
        if order is None:
            rows[col][:] = values
        else:
            rows[col][order] = values

    xs = xy if order is None else xy[order]
    best = np.full(n, np.inf)
    best_idx = np.full(n, -1, np.int64)
    group: dict[str, np.ndarray] = {}  # least distance per kind (outlet, device)
    for key in np.unique(keys):
        members = np.flatnonzero(keys == key)
        d, i = _query(touch_xy[members], xs)
        put(f"d_{key}", d)
        kind = kinds[members[0]]
        if kind in group:
            np.minimum(group[kind], d, out=group[kind])
        else:
            group[kind] = d.copy()
        closer = d < best
        best[closer] = d[closer]
        best_idx[closer] = members[i[closer]]
    put("d_any", best)
    for kind, d in group.items():
        put(f"d_{kind}", d)
    if order is None:
        return rows, best_idx
    nearest = np.empty(n, np.int64)
    nearest[order] = best_idx
    return rows, nearest


def access(
    households: gpd.GeoDataFrame,
    touch: gpd.GeoDataFrame,
    *,
    units: gpd.GeoDataFrame | None = None,
    radii: Radii = DEFAULT_RADII,
    crs: pyproj.CRS | str | int | None = None,
    default_kind: str = "rural",
    by_institution: bool = True,
    xy: np.ndarray | None = None,
) -> Access:
    """Distance from every household point (and unit) to the nearest touch point of each
    kind, and whether it is covered within the radius of its kind of area.

    Parameters
    ----------
    households
        Points with ``count`` (households at the point, default 1) and ``unit`` (unit
        code; where missing or unknown, the unit containing the point is used).
    touch
        Touch points from :func:`touch_points`; at least one.
    units
        Villages / communities with ``code``, ``kind`` (urban / rural), ``name`` and
        ``parent`` (township code). They give each household its kind of area, hence
        its radius. Without units every household is of ``default_kind`` (or of its own
        ``kind`` column).
    radii
        Service radius per kind of area (:class:`Radii`).
    crs
        The metric CRS to measure in; default ``metric_crs`` of the units (else of the
        households).
    by_institution
        Also find, per institution, which households its touch points cover
        (:attr:`Access.covered_by`).
    xy
        The households' coordinates in ``crs``, shape (n, 2), when the caller has them
        already (:attr:`Screened.xy`); default: projected here.

    Returns
    -------
    Access

    Raises
    ------
    InputError
        No touch points; no households; layers in different CRSs; households far from
        every unit (another territory's layer).

    Examples
    --------
    >>> from gis_grid.coverage import touch_points
    >>> homes = gpd.GeoDataFrame({"count": [1, 1]}, crs=4547,
    ...                          geometry=gpd.points_from_xy([0, 0], [1500, 2500]))
    >>> atm = gpd.GeoDataFrame({"id": ["D1"], "institution": ["YCB"], "type": ["ATM"]},
    ...                        crs=4547, geometry=gpd.points_from_xy([0], [0]))
    >>> acc = access(homes, touch_points(devices=atm), radii=Radii(rural=2000))
    >>> acc.households[["d_device_atm", "covered"]].values.tolist()
    [[1500.0, True], [2500.0, False]]
    """
    if not isinstance(radii, Radii):
        raise TypeError("access: radii must be a Radii")
    if households is None or len(households) == 0:
        _fail("households", "no household points: there is nothing to measure coverage for")
    if touch is None or len(touch) == 0:
        _fail("touch points", "no touch points (no serving outlet and no device): every "
                              "household would be uncovered; load the outlets and devices "
                              "layers, or check the institution asked for")
    check_layers({"households": households, "touch points": touch, "units": units})
    crs = _choose_crs(crs, units, households)
    notes: list[str] = []
    counts = _counts(households)
    if xy is None:
        xy = _points_xy(households, crs)
    elif np.shape(xy) != (len(households), 2):
        raise ValueError(f"access: xy must have shape ({len(households)}, 2), got "
                         f"{np.shape(xy)}")
    txy = _points_xy(touch, crs)
    keys = touch["key"].to_numpy(dtype=object)
    kinds = touch["kind"].to_numpy(dtype=object)

    n = len(xy)
    h: dict[str, np.ndarray] = {
        "id": households["id"].to_numpy() if "id" in households else np.arange(n),
        "count": counts}
    if units is not None and len(units):
        given = (_positions(_text(units["code"]), _text(households["unit"]))
                 if "unit" in households else np.full(len(households), -1))
        uidx = _household_unit_index(households, units)
        placed = int((given < 0).sum())
        if placed:
            notes.append(f"{placed} household points had no known unit code and were "
                         "placed in the unit containing (or nearest) them")
        _check_near(xy, _metric(units, crs), "households", "the units", 0.5)
        ucode = _text(units["code"])
        ukind = _text(units["kind"]) if "kind" in units else np.full(len(units), default_kind)
        uparent = _text(units["parent"]) if "parent" in units else np.full(len(units), None)
        h["unit"] = ucode[uidx]
        h["township"] = uparent[uidx]
        h["kind"] = ukind[uidx]
        household_radius = radii.for_kinds(ukind)[uidx]  # per unit, not per household
    else:
        h["unit"] = (_text(households["unit"]) if "unit" in households
                     else np.full(n, None, dtype=object))
        h["township"] = np.full(n, None, dtype=object)
        h["kind"] = (_text(households["kind"]) if "kind" in households
                     else np.full(n, default_kind, dtype=object))
        notes.append("no units layer: every household is of kind "
                     f"{default_kind!r} unless its own 'kind' says otherwise")
        household_radius = radii.for_kinds(h["kind"])
    # The radius and the distances are one float block of the result, written in place.
    distance_columns = _distance_columns(keys)
    floats = np.empty((1 + len(distance_columns), n))
    radius = floats[0]
    radius[:] = household_radius

    inst = touch["institution"].to_numpy(dtype=object)
    names = sorted({i for i in inst if i is not None}) if by_institution else []
    # Z-order the households when several trees are queried on them (it pays from
    # Z_ORDER_TREES on; one kind of touch point and no per-institution flags: one tree).
    order = (_spatial_order(xy) if len(np.unique(keys)) + len(names) >= Z_ORDER_TREES
             else None)
    dist, nearest = _nearest(txy, keys, kinds, xy, order, out=floats[1:])
    touch_ids = touch["id"].to_numpy(dtype=object)
    near = {"nearest": touch_ids[nearest],
            "nearest_institution": inst[nearest],
            "nearest_kind": kinds[nearest]}
    flags = np.empty((3, n), bool)
    with np.errstate(invalid="ignore"):
        np.less_equal(dist["d_any"], radius, out=flags[0])
        np.less_equal(dist["d_outlet"], radius, out=flags[1])
        np.less_equal(dist["d_device"], radius, out=flags[2])
    covered = flags[0]

    by: dict[str, np.ndarray] = {}
    if by_institution:
        # Only households some touch point covers can be covered by an institution's (in
        # Z-order when there is one); the search is bounded by the largest radius (the
        # bound only prunes: a point at exactly the radius is covered).
        rows = order[covered[order]] if order is not None else np.flatnonzero(covered)
        for name in names:
            members = np.flatnonzero(inst == name)
            d, _ = _query(txy[members], xy[rows], bound=radii.largest)
            flag = np.zeros(n, bool)
            flag[rows] = d <= radius[rows]
            by[name] = flag
    covered_by = pd.DataFrame(by, index=pd.RangeIndex(n))
    house = _households_frame(
        h, floats, ["radius", *distance_columns], near, flags,
        ["covered", "covered_outlet", "covered_device"], households)
    unit_table = (_unit_access(house, units, touch, txy, keys, kinds, crs, radii, households,
                               xy)
                  if units is not None and len(units) else None)
    return Access(house, unit_table, covered_by, touch, crs, radii, xy, notes)


def _households_frame(head: dict[str, np.ndarray], floats: np.ndarray, float_names: list[str],
                      near: dict[str, np.ndarray], flags: np.ndarray, flag_names: list[str],
                      households: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The households result frame, made of the blocks as computed: no column is copied
    into a consolidated block (pandas would copy the eleven distance columns and infer a
    string dtype for each text column: 0.2 s per 10^6 households), and the geometry is
    the given GeometryArray (not through an object array: 0.25 s per 10^6 points)."""
    index = pd.RangeIndex(floats.shape[1])
    parts = [
        pd.DataFrame({"id": head["id"], "count": head["count"]}, index=index),
        pd.DataFrame({k: head[k] for k in ("unit", "township", "kind")}, index=index,
                     dtype=object),
        pd.DataFrame(floats.T, columns=float_names, index=index, copy=False),
        pd.DataFrame(near, index=index, dtype=object),
        pd.DataFrame(flags.T, columns=flag_names, index=index, copy=False),
        pd.DataFrame({"geometry": households.geometry.array}, index=index, copy=False),
    ]
    return gpd.GeoDataFrame(pd.concat(parts, axis=1), geometry="geometry",
                            crs=households.crs, copy=False)


def _unit_access(house: gpd.GeoDataFrame, units: gpd.GeoDataFrame, touch: gpd.GeoDataFrame,
                 txy: np.ndarray, keys: np.ndarray, kinds: np.ndarray, crs: pyproj.CRS,
                 radii: Radii, households: gpd.GeoDataFrame, xy: np.ndarray
                 ) -> gpd.GeoDataFrame:
    code = _text(units["code"])
    kind = _text(units["kind"]) if "kind" in units else np.full(len(units), "rural")
    u = pd.DataFrame({
        "code": code,
        "name": _text(units["name"]) if "name" in units else code,
        "township": _text(units["parent"]) if "parent" in units else None,
        "kind": kind,
        "radius": radii.for_kinds(kind),
    })
    idx = _positions(code, house["unit"].to_numpy())
    w = house["count"].to_numpy(float)
    cov = house["covered"].to_numpy(bool)
    u["households"] = np.bincount(idx, w, minlength=len(u))
    u["covered"] = np.bincount(idx, w * cov, minlength=len(u))
    u["points"] = np.bincount(idx, minlength=len(u))
    with np.errstate(invalid="ignore", divide="ignore"):
        u["share"] = np.where(u["households"] > 0, u["covered"] / u["households"], np.nan)
    # The settlement's distance: from its nearest household to the nearest touch point.
    d = house["d_any"].to_numpy(float)
    order = np.lexsort((d, idx))
    first = np.ones(len(order), bool)
    first[1:] = idx[order][1:] != idx[order][:-1]
    nearest_row = np.full(len(u), -1, np.int64)
    nearest_row[idx[order][first]] = order[first]

    centres = _centres(units, households, idx, xy)
    cxy = _points_xy(gpd.GeoDataFrame(geometry=centres, crs=units.crs), crs)
    cdist, cnear = _nearest(txy, keys, kinds, cxy)
    has = nearest_row >= 0
    d_near = np.where(has, d[np.maximum(nearest_row, 0)], cdist["d_any"])
    near_id = np.where(has, house["nearest"].to_numpy(object)[np.maximum(nearest_row, 0)],
                       touch["id"].to_numpy(object)[cnear])
    near_inst = np.where(
        has, house["nearest_institution"].to_numpy(object)[np.maximum(nearest_row, 0)],
        touch["institution"].to_numpy(object)[cnear])
    near_kind = np.where(has, house["nearest_kind"].to_numpy(object)[np.maximum(nearest_row, 0)],
                         kinds[cnear])
    u["d_nearest"] = d_near
    u["nearest"] = near_id
    u["nearest_institution"] = near_inst
    u["nearest_kind"] = near_kind
    for col in DISTANCE_COLUMNS:
        u[col] = cdist[col]
    u["blank"] = ~(d_near <= u["radius"].to_numpy())
    return gpd.GeoDataFrame(u, geometry=np.asarray(units.geometry.array, dtype=object),
                            crs=units.crs)
