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
from scipy.spatial import cKDTree

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


def _nearest(touch_xy: np.ndarray, keys: np.ndarray, kinds: np.ndarray, xy: np.ndarray,
             order: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Distance from each point of ``xy`` to the nearest touch point of each category, and
    the index (into the touch points) of the nearest of all. One k-d tree per category;
    the distance to any outlet / device / touch point is the least over categories.
    ``order`` is the order to query in (default: as given)."""
    n = len(xy)
    xs = xy if order is None else xy[order]
    out: dict[str, np.ndarray] = {}
    best = np.full(n, np.inf)
    best_idx = np.full(n, -1, np.int64)
    group_min = {"outlet": np.full(n, np.inf), "device": np.full(n, np.inf)}
    for key in np.unique(keys):
        members = np.flatnonzero(keys == key)
        d, i = cKDTree(touch_xy[members]).query(xs, workers=-1)
        out[f"d_{key}"] = d
        kind = kinds[members[0]]
        np.minimum(group_min[kind], d, out=group_min[kind])
        closer = d < best
        best[closer] = d[closer]
        best_idx[closer] = members[i[closer]]
    out["d_outlet"] = group_min["outlet"]
    out["d_device"] = group_min["device"]
    out["d_any"] = best
    columns = list(DISTANCE_COLUMNS) + [f"d_{k}" for k in np.unique(keys)
                                        if f"d_{k}" not in DISTANCE_COLUMNS]
    result = {}
    for col in columns:  # back from Z-order; inf (no such touch point) as NaN
        values = np.full(n, np.nan)
        found = out.get(col)
        if found is not None:
            found = np.where(np.isfinite(found), found, np.nan)
            if order is None:
                values = found
            else:
                values[order] = found
        result[col] = values
    if order is None:
        return result, best_idx
    nearest = np.empty(n, np.int64)
    nearest[order] = best_idx
    return result, nearest


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

    h: dict[str, np.ndarray] = {
        "id": households["id"].to_numpy() if "id" in households else np.arange(len(xy)),
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
    else:
        h["unit"] = (_text(households["unit"]) if "unit" in households
                     else np.full(len(xy), None, dtype=object))
        h["township"] = np.full(len(xy), None, dtype=object)
        h["kind"] = (_text(households["kind"]) if "kind" in households
                     else np.full(len(xy), default_kind, dtype=object))
        notes.append("no units layer: every household is of kind "
                     f"{default_kind!r} unless its own 'kind' says otherwise")
    radius = radii.for_kinds(h["kind"])
    h["radius"] = radius

    inst = touch["institution"].to_numpy(dtype=object)
    names = sorted({i for i in inst if i is not None}) if by_institution else []
    # Z-order the households when several trees are queried on them (it pays from
    # Z_ORDER_TREES on; one kind of touch point and no per-institution flags: one tree).
    order = (_spatial_order(xy) if len(np.unique(keys)) + len(names) >= Z_ORDER_TREES
             else None)
    dist, nearest = _nearest(txy, keys, kinds, xy, order)
    h.update(dist)
    h["nearest"] = touch["id"].to_numpy(dtype=object)[nearest]
    h["nearest_institution"] = touch["institution"].to_numpy(dtype=object)[nearest]
    h["nearest_kind"] = kinds[nearest]
    with np.errstate(invalid="ignore"):
        h["covered"] = dist["d_any"] <= radius
        h["covered_outlet"] = dist["d_outlet"] <= radius
        h["covered_device"] = dist["d_device"] <= radius

    by: dict[str, np.ndarray] = {}
    if by_institution:
        # Only households some touch point covers can be covered by an institution's (in
        # Z-order when there is one); the search is bounded by the largest radius (the
        # bound is exclusive, hence ``reach``: a point at the radius is covered).
        rows = (order[h["covered"][order]] if order is not None
                else np.flatnonzero(h["covered"]))
        for name in names:
            members = np.flatnonzero(inst == name)
            d, _ = cKDTree(txy[members]).query(xy[rows], workers=-1,
                                               distance_upper_bound=radii.reach)
            flag = np.zeros(len(xy), bool)
            flag[rows] = d <= radius[rows]
            by[name] = flag
    covered_by = pd.DataFrame(by, index=pd.RangeIndex(len(xy)))
    # The geometry array as given (not through an object array: 0.25 s per 10^6 points).
    house = gpd.GeoDataFrame(h, geometry=households.geometry.array, crs=households.crs)
    unit_table = (_unit_access(house, units, touch, txy, keys, kinds, crs, radii, households,
                               xy)
                  if units is not None and len(units) else None)
    return Access(house, unit_table, covered_by, touch, crs, radii, xy, notes)


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
