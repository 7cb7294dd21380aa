"""A synthetic province: many counties, each one unit of work for the fan-out.

``build_province("示范省", counties=20)`` returns the layers of the data model for a
province made of generated counties, every layer with a ``county`` column (the 6-digit
county code) so that one county can be read on its own
(``store.read(name, where={"county": code})``). Everything is **synthetic** (``source``
synthetic, or derived for the polygons cut from synthetic seats): the outline, the county
and township seats, the names and codes. Codes start with ``99``, a province code that
does not exist, so they can never be mistaken for real ones.

How it is made (the machinery of ``layers.synthetic.county``, at province scale):

* the outline is a smooth, seeded blob sized so each county has about ``county_km2``;
* county seats, then township seats within each county, are spread by best-candidate
  sampling; counties are the Voronoi cells of their seats within the outline, townships
  the cells of theirs within their county, units (villages / communities) the cells of
  their seeds within their township;
* each level is cut by ``layers.synthetic.cells._cells`` over *all* the regions of the level at
  once, so the whole province is one noding: neighbouring counties share every vertex of
  their seam and the counties, townships and units are each a valid coverage with no gap
  and no overlap — across county borders as well as inside a county;
* each county is then populated exactly as a sample county is (zones, households,
  outlets, devices, staff, ledger, entities), with its own random streams seeded from
  ``(seed, county code, layer)``, so a county's layers do not depend on the others'.

Ids that the sample numbers per county (outlets, devices, staff, entities, households)
are made unique across the province: text ids are prefixed with the county code,
household ids are numbered on across counties. ``institutions`` holds the six banks
once, named after the province; their ids (``NSH``, ``YCB`` …) are shared by all counties,
so ``--institution NSH`` means the same bank everywhere.

Example
-------
>>> from layers.synthetic import build_province
>>> layers = build_province("示范省", counties=3, households_per_county=2_000)
>>> sorted(layers["territory"]["code"]), int(layers["households"]["count"].sum())
(['990101', '990102', '990103'], 6000)
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.crs import metric_crs
from gis_grid.errors import InputError, Problem
from gis_grid.model import STORAGE_CRS

# The sample's construction is reused as is, at province scale.
from layers.synthetic.banks import _institutions
from layers.synthetic.cells import (
    _as_multipolygon,
    _cells,
    _dissolve,
    _Frame,
    _sample_in,
)
from layers.synthetic.county import _STREAMS, County, _unit_seeds
from layers.synthetic.populate import _populate

__all__ = ["PROVINCE_CODE", "build_province"]

#: The province code of synthetic provinces: no real province has it.
PROVINCE_CODE = "99"

_SYLLABLES = tuple("安宁丰泰和平兴隆富康永乐清河长青云山阳明德远新华福寿嘉禾瑞金广济")
#: Longest edge of the generated polygons (metres): long straight edges would bend by
#: centimetres when another metric CRS (a county's) re-projects them.
_SEGMENT = 100.0
_TOWN_SUFFIX = ("镇", "乡", "镇", "镇", "乡")


def build_province(
    name: str = "示范省",
    *,
    counties: int = 20,
    seed: int = 0,
    households_per_county: int = 50_000,
    townships_per_county: int = 8,
    units_per_township: int = 12,
    centre: tuple[float, float] = (112.0, 30.5),
    county_km2: float = 1_500.0,
) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """Build a synthetic province of ``counties`` counties, every layer with ``county``.

    Parameters
    ----------
    name
        The province's name (it also names the banks), e.g. ``"示范省"``.
    counties
        Number of counties, 1 to 9,999 (codes ``99PPCC``: 20 counties per prefecture).
    seed
        Seeds every generated part; the same arguments give the same layers.
    households_per_county
        Households of each county.
    townships_per_county, units_per_township
        Townships (乡镇/街道) per county and villages / communities per township.
    centre
        Where the province lies (lon, lat, EPSG:4326).
    county_km2
        Mean area of a county, km².

    Returns
    -------
    dict
        The layers of ``layers.synthetic.LAYER_NAMES``. ``territory`` has one row per county
        (level ``county``); ``townships``, ``units``, ``households``, ``outlets``,
        ``devices``, ``staff``, ``ledger`` and ``entities`` carry ``county``.

    Raises
    ------
    InputError
        For a count out of range or a negative seed.
    """
    _check(counties, seed, households_per_county, townships_per_county, units_per_township)
    rng = np.random.default_rng([seed, 99, 0])
    frame = _Frame(metric_crs(shapely.Point(*centre).buffer(0.5)))
    cx, cy = frame.from_lonlat_xy(*centre)
    outline = _outline(rng, float(cx), float(cy), counties * county_km2 * 1e6)

    # Counties: Voronoi cells of their seats within the outline.
    county_seats = _spread(rng, outline, counties)
    faces, labels = _cells([outline], [county_seats], [np.arange(counties)],
                           site_labels=np.arange(counties), anchors=county_seats,
                           label_groups=np.zeros(counties, int),
                           segment_length=_SEGMENT)
    counties_m = _dissolve(faces, labels, counties)
    codes = [f"{PROVINCE_CODE}{k // 20 + 1:02d}{k % 20 + 1:02d}" for k in range(counties)]
    names = _names(rng, counties, "县")

    # Townships: cells of their seats within their county, all counties in one noding.
    n_town = counties * townships_per_county
    town_county = np.repeat(np.arange(counties), townships_per_county)
    seats = np.vstack([_spread(rng, c, townships_per_county) for c in counties_m])
    per_county = [np.flatnonzero(town_county == c) for c in range(counties)]
    faces, labels = _cells(list(counties_m), [seats[i] for i in per_county], per_county,
                           site_labels=np.arange(n_town), anchors=seats,
                           label_groups=town_county, segment_length=_SEGMENT)
    townships_m = _dissolve(faces, labels, n_town)

    towns, units = _divisions(rng, codes, town_county, townships_per_county,
                              units_per_township)
    seeds, _ = _unit_seeds(np.random.default_rng([seed, 99, 1]), townships_m, seats, units)
    unit_town = units["town"].to_numpy()
    per_town = [np.flatnonzero(unit_town == t) for t in range(n_town)]
    unit_faces, unit_labels = _cells(
        list(townships_m), [seeds[i] for i in per_town], per_town,
        site_labels=np.arange(len(units)), anchors=seeds, label_groups=unit_town,
        segment_length=_SEGMENT)
    # Every level is re-made from the unit faces, so all share one set of vertices.
    units_m = _dissolve(unit_faces, unit_labels, len(units))
    townships_m = _dissolve(unit_faces, unit_town[unit_labels], n_town)
    counties_m = _dissolve(unit_faces, town_county[unit_town[unit_labels]], counties)

    built = [
        _county(seed, frame, name, codes[c], names[c], towns[town_county == c],
                units[town_county[unit_town] == c], seeds, seats, townships_m, units_m,
                counties_m[c], households_per_county)
        for c in range(counties)
    ]
    out: dict[str, gpd.GeoDataFrame | pd.DataFrame] = {}
    for layer in ("territory", "townships", "units", "households", "outlets", "devices",
                  "staff", "ledger", "entities"):
        frames = [b[layer] for b in built]
        merged = pd.concat(frames, ignore_index=True)
        out[layer] = (gpd.GeoDataFrame(merged, geometry="geometry", crs=STORAGE_CRS)
                      if "geometry" in merged.columns else merged)
    # Households are numbered on across counties (the sample numbers them from 0).
    out["households"]["id"] = np.arange(len(out["households"]), dtype=np.int64)
    province = County(PROVINCE_CODE, name, name, name, "", "", 0)
    out["institutions"] = _institutions(_Short(province, name))
    order = ("territory", "townships", "units", "households", "institutions", "outlets",
             "devices", "staff", "ledger", "entities")
    return {k: out[k] for k in order}


class _Short:
    """A ``County``-like record whose short name is the province's (for bank names)."""

    def __init__(self, info: County, short: str) -> None:
        self.name, self.short = info.name, short.removesuffix("省")


def _check(counties: int, seed: int, households: int, towns: int, units: int) -> None:
    problems = []
    for field, value, low, high in (("counties", counties, 1, 9_999),
                                    ("households_per_county", households, 1, 10**8),
                                    ("townships_per_county", towns, 1, 999),
                                    ("units_per_township", units, 1, 999),
                                    ("seed", seed, 0, 2**63 - 1)):
        if not isinstance(value, int | np.integer) or not low <= value <= high:
            problems.append(Problem("build_province", None, field,
                                    f"must be an integer from {low} to {high}, got {value!r}"))
    if problems:
        raise InputError(problems, source="build_province")


def _outline(rng: np.random.Generator, cx: float, cy: float, area: float) -> shapely.Polygon:
    """A smooth seeded blob of about ``area`` m² around (cx, cy) metres."""
    theta = np.linspace(0.0, 2 * np.pi, 256, endpoint=False)
    phase = rng.uniform(0, 2 * np.pi, 3)
    r = (1.0 + 0.12 * np.sin(2 * theta + phase[0]) + 0.08 * np.sin(3 * theta + phase[1])
         + 0.05 * np.sin(5 * theta + phase[2]))
    blob = shapely.Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))
    scale = np.sqrt(area / blob.area)
    return shapely.Polygon(np.column_stack([cx + scale * r * np.cos(theta),
                                            cy + scale * r * np.sin(theta)]))


def _spread(rng: np.random.Generator, region: shapely.Geometry, n: int) -> np.ndarray:
    """``n`` points (n, 2) in ``region``, each the farthest of 12 draws from those before
    and from the region's border (best-candidate sampling), so cells come out even."""
    pool = _sample_in(rng, region, 12 * n, None, 0.0)
    border = shapely.distance(shapely.points(pool), shapely.boundary(region))
    chosen = np.empty((0, 2))
    for k in range(n):
        draw, edge = pool[12 * k:12 * (k + 1)], border[12 * k:12 * (k + 1)]
        gap = edge.copy() * 2.0
        if len(chosen):
            gap = np.minimum(gap, np.hypot(draw[:, None, 0] - chosen[None, :, 0],
                                           draw[:, None, 1] - chosen[None, :, 1]).min(axis=1))
        chosen = np.vstack([chosen, draw[int(np.argmax(gap))]])
    return chosen


def _names(rng: np.random.Generator, n: int, suffix: str | np.ndarray) -> np.ndarray:
    """``n`` distinct two-syllable place names with ``suffix``."""
    syllables = np.array(_SYLLABLES, dtype=object)
    pairs = np.array([a + b for a in syllables for b in syllables if a != b], dtype=object)
    if n > len(pairs):  # more than the list gives: number them on
        pairs = np.concatenate([pairs, [f"{p}{k}" for k in range(2, 2 + n // len(pairs))
                                        for p in pairs]])
    return rng.choice(pairs, n, replace=False) + suffix


def _divisions(
    rng: np.random.Generator, codes: list[str], town_county: np.ndarray,
    per_county: int, per_town: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Township and unit tables shaped like ``layers.synthetic.county``'s: the first township of a
    county is the seat's 街道 with urban communities (城乡分类代码 111/112), the others
    towns with a centre (121) and villages (210/220)."""
    n_town = len(town_county)
    local = np.arange(n_town) % per_county
    town_codes = np.array([f"{codes[c]}{k + 1:03d}000" for c, k in zip(town_county, local,
                                                                       strict=True)])
    suffix = np.where(local == 0, "街道", np.array(_TOWN_SUFFIX, dtype=object)[local % 5])
    towns = pd.DataFrame({"code": town_codes, "name": _names(rng, n_town, suffix),
                          "x": np.nan, "y": np.nan})
    town = np.repeat(np.arange(n_town), per_town)
    k = np.tile(np.arange(per_town), n_town)
    seat_town = local[town] == 0
    ur = np.where(seat_town, np.where(k < per_town // 2 + 1, "111", "112"),
                  np.where(k == 0, "121", np.where(k % 4 == 1, "210", "220")))
    kind = np.where(np.char.startswith(ur.astype(str), "1"), "urban", "rural")
    unit_suffix = np.where(kind == "urban", "社区", "村").astype(object)
    units = pd.DataFrame({
        "code": [f"{town_codes[t][:9]}{j + 1:03d}" for t, j in zip(town, k, strict=True)],
        "name": _names(rng, len(town), unit_suffix), "parent": town_codes[town],
        "ur_code": ur, "kind": kind, "town": town, "x": np.nan, "y": np.nan,
    })
    return towns, units


def _county(
    seed: int, frame: _Frame, province: str, code: str, name: str, towns: pd.DataFrame,
    units: pd.DataFrame, seeds_all: np.ndarray, seats_all: np.ndarray,
    townships_all: np.ndarray, units_all: np.ndarray, county_m: shapely.Geometry,
    total: int,
) -> dict[str, gpd.GeoDataFrame | pd.DataFrame]:
    """One county's layers, populated by the sample's generators from its own streams."""
    town_rows, unit_rows = towns.index.to_numpy(), units.index.to_numpy()
    towns = towns.reset_index(drop=True)
    units = units.reset_index(drop=True)
    units["town"] = units["town"].to_numpy() - town_rows[0]
    seeds, seats = seeds_all[unit_rows], seats_all[town_rows]
    townships_m, units_m = townships_all[town_rows], units_all[unit_rows]
    info = County(code, name, name, province, "", "", total)

    def rng(stream: str) -> np.random.Generator:
        return np.random.default_rng([int(seed), int(code), _STREAMS.index(stream)])

    drawn = _populate(rng, info, frame, towns, units, seeds, seats, townships_m, units_m,
                      seats[0], total)
    outlets, devices, staff, ledger, entities = (
        drawn[k] for k in ("outlets", "devices", "staff", "ledger", "entities"))
    house = drawn["households"]
    # Ids numbered per county are made unique across the province.
    for frame_ in (outlets, devices, staff, entities):
        frame_["id"] = code + "-" + frame_["id"].astype(str)
    devices["outlet"] = code + "-" + devices["outlet"].astype(str)

    seat_ll = frame.to_lonlat_xy(seats[:, 0], seats[:, 1])
    layers = {
        "territory": gpd.GeoDataFrame(
            {"code": [code], "name": [name], "level": ["county"], "source": ["synthetic"]},
            geometry=[_as_multipolygon(frame.to_lonlat(np.array([county_m]))[0])],
            crs=STORAGE_CRS),
        "townships": gpd.GeoDataFrame(
            {"code": towns["code"].to_numpy(), "name": towns["name"].to_numpy(),
             "parent": np.full(len(towns), code, dtype=object),
             "source": "synthetic", "seat_source": "synthetic",
             "seat_lon": seat_ll[0], "seat_lat": seat_ll[1]},
            geometry=frame.to_lonlat(townships_m), crs=STORAGE_CRS),
        "units": gpd.GeoDataFrame(
            {"code": units["code"].to_numpy(), "name": units["name"].to_numpy(),
             "parent": units["parent"].to_numpy(), "kind": units["kind"].to_numpy(),
             "zone": units["zone"].to_numpy(), "ur_code": units["ur_code"].to_numpy(),
             "households": units["households"].to_numpy(np.int64),
             "population": units["population"].to_numpy(np.int64),
             "source": "synthetic", "seed_source": "synthetic"},
            geometry=drawn["geo"].units_ll, crs=STORAGE_CRS),
        "households": house, "outlets": outlets, "devices": devices, "staff": staff,
        "ledger": ledger, "entities": entities,
    }
    for frame_ in layers.values():
        frame_["county"] = code
    return layers

