"""The sample territory builder (layers.synthetic) on the three real counties.

Geometry is checked where it is stored (EPSG:4326) and, for areas, in the county's metric
CRS from ``gis_grid.crs``: townships tile the territory, units tile each township, every
household lies in its unit; every layer satisfies its schema in ``gis_grid.model``; the
names and codes are the real ones; the same arguments give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from importlib.resources import files

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import shape

from gis_grid.crs import central_meridian, gauss_kruger_epsg, metric_crs, to_metric
from gis_grid.errors import InputError
from gis_grid.model import LAYERS, REFERENCES, STORAGE_CRS
from layers.synthetic import COUNTIES, LAYER_NAMES, RISK_WORDS, build_sample

CODES = ("420527", "330382", "371328")
#: Households for the structural tests: enough for every unit, small enough to be quick.
SMALL = 20_000


@pytest.fixture(scope="module", params=CODES)
def sample(request) -> tuple[str, dict]:
    return request.param, build_sample(request.param, seed=7, households=SMALL)


@pytest.fixture(scope="module")
def zigui() -> dict:
    return build_sample("420527")


def _divisions(code: str) -> pd.DataFrame:
    path = files("layers").joinpath("data", COUNTIES[code].divisions)
    with path.open("rb") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def _raw_boundary(code: str) -> shapely.Geometry:
    text = files("layers").joinpath("data", COUNTIES[code].boundary).read_text("utf-8")
    return shape(json.loads(text)["features"][0]["geometry"])


# ----------------------------------------------------------------------------- schema


def _schema_problems(name: str, layer: pd.DataFrame) -> list[str]:
    """Every way ``layer`` breaks the schema of ``name`` (an empty list if none)."""
    schema = LAYERS[name]
    problems = []
    missing = [f.name for f in schema.fields if f.name not in layer.columns]
    if missing:
        return [f"missing fields {missing}"]
    for f in schema.fields:
        values = layer[f.name]
        present = values.notna()
        if f.required and not present.all():
            problems.append(f"{f.name}: {int((~present).sum())} missing values")
        values = values[present]
        if f.dtype == "int" and not pd.api.types.is_integer_dtype(values):
            problems.append(f"{f.name}: dtype {values.dtype}, not integer")
        if f.dtype == "str" and not all(isinstance(v, str) for v in values):
            problems.append(f"{f.name}: not all strings")
        if f.dtype == "date" and not all(isinstance(v, dt.date) for v in values):
            problems.append(f"{f.name}: not all dates")
        if f.enum is not None and not values.isin(f.enum).all():
            problems.append(f"{f.name}: values {sorted(set(values) - set(f.enum))[:5]} "
                            f"not in {f.enum}")
        if f.pattern is not None:
            bad = [v for v in values if not re.match(f.pattern, v)]
            if bad:
                problems.append(f"{f.name}: {bad[:5]} do not match {f.pattern}")
        if f.minimum is not None and (values < f.minimum).any():
            problems.append(f"{f.name}: below {f.minimum}")
        if f.maximum is not None and (values > f.maximum).any():
            problems.append(f"{f.name}: above {f.maximum}")
    if schema.key is not None and layer[schema.key].duplicated().any():
        problems.append(f"key {schema.key} not unique")
    unique = schema.extra.get("unique")
    if unique and layer.duplicated(list(unique)).any():
        problems.append(f"{unique} not unique")
    for files_field, total_field in schema.extra.get("not_above", ()):
        if (layer[files_field] > layer[total_field]).any():
            problems.append(f"{files_field} above {total_field}")
    if schema.spatial:
        if not isinstance(layer, gpd.GeoDataFrame) or layer.crs != STORAGE_CRS:
            problems.append("not a GeoDataFrame in the storage CRS")
        else:
            geoms = layer.geometry
            if not schema.geometry_optional and geoms.isna().any():
                problems.append("missing geometries")
            types = set(geoms.dropna().geom_type)
            if not types <= set(schema.geometry):
                problems.append(f"geometry types {types} not in {schema.geometry}")
            if not geoms.dropna().is_valid.all():
                problems.append("invalid geometries")
    elif isinstance(layer, gpd.GeoDataFrame):
        problems.append("a table layer has geometry")
    sources = layer["source"]
    if sources.isna().any() or not sources.isin(("real", "derived", "synthetic")).all():
        problems.append("source not set on every row")
    return problems


def test_every_layer_satisfies_its_schema(sample):
    _, layers = sample
    assert tuple(layers) == LAYER_NAMES
    for name, layer in layers.items():
        assert _schema_problems(name, layer) == [], name


def test_references_resolve(sample):
    _, layers = sample
    for name, refs in REFERENCES.items():
        if name not in layers:  # grids: made by the partition, not the sample
            continue
        for field, (target, key) in refs.items():
            values = layers[name][field].dropna()
            assert values.isin(layers[target][key]).all(), (name, field)


def test_sources_say_what_is_real(sample):
    _, layers = sample
    for name in ("territory", "townships", "units"):
        assert (layers[name]["source"] == "derived").all()
    for name in ("households", "institutions", "outlets", "devices", "staff", "ledger",
                 "entities"):
        assert (layers[name]["source"] == "synthetic").all()


# ----------------------------------------------------------------------------- tiling


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def test_townships_tile_the_territory(sample):
    _, layers = sample
    crs = metric_crs(layers["territory"])
    territory = to_metric(layers["territory"], crs).geometry.iloc[0]
    for townships in (layers["townships"], to_metric(layers["townships"], crs)):
        assert shapely.coverage_is_valid(townships.geometry.to_numpy())
    townships = to_metric(layers["townships"], crs).geometry.to_numpy()
    union = shapely.coverage_union_all(townships)
    assert _rel(union.area, territory.area) < 1e-9  # no gap
    assert _rel(shapely.area(townships).sum(), union.area) < 1e-9  # no overlap
    assert shapely.difference(territory, union).area < 1e-6 * territory.area


def test_units_tile_each_township(sample):
    _, layers = sample
    crs = metric_crs(layers["territory"])
    units = layers["units"]
    assert (units.geom_type == "Polygon").all()
    assert shapely.coverage_is_valid(units.geometry.to_numpy())
    units_m = to_metric(units, crs)
    assert shapely.coverage_is_valid(units_m.geometry.to_numpy())
    townships_m = to_metric(layers["townships"], crs).set_index("code").geometry
    for code, group in units_m.groupby("parent"):
        union = shapely.coverage_union_all(group.geometry.to_numpy())
        assert _rel(union.area, townships_m[code].area) < 1e-9, code
        assert _rel(group.area.sum(), union.area) < 1e-9, code
    assert set(units["parent"]) == set(layers["townships"]["code"])


def test_townships_are_single_polygons_holding_their_seats(sample):
    _, layers = sample
    townships = layers["townships"]
    assert (townships.geom_type == "Polygon").all()
    assert shapely.contains_xy(townships.geometry.to_numpy(), townships["seat_lon"],
                               townships["seat_lat"]).all()
    assert set(townships["seat_source"]) <= {"real", "derived", "synthetic"}


def test_every_household_is_inside_its_unit(sample):
    _, layers = sample
    units = layers["units"].set_index("code")
    house = layers["households"]
    polygons = units.geometry.reindex(house["unit"]).to_numpy()
    assert shapely.contains_xy(polygons, house.geometry.x, house.geometry.y).all()


def test_points_are_inside_their_units(sample):
    _, layers = sample
    units = layers["units"].set_index("code")
    for name in ("outlets", "devices", "entities"):
        points = layers[name]
        polygons = units.geometry.reindex(points["unit"]).to_numpy()
        assert shapely.contains_xy(polygons, points.geometry.x, points.geometry.y).all(), name


def test_unit_households_are_the_sum_of_their_points(sample):
    _, layers = sample
    units = layers["units"].set_index("code")
    sums = layers["households"].groupby("unit")["count"].sum()
    assert (sums.reindex(units.index, fill_value=0) == units["households"]).all()
    assert units["households"].sum() == SMALL
    ratio = units["population"] / units["households"].clip(lower=1)
    assert ratio[units["households"] >= 10].between(2.7, 3.3).all()
    assert (layers["households"]["id"] == np.arange(len(layers["households"]))).all()


# ----------------------------------------------------------------------------- real data


def test_names_and_codes_are_the_real_ones(sample):
    code, layers = sample
    table = _divisions(code)
    county = table[table["level"] == "county"].iloc[0]
    territory = layers["territory"].iloc[0]
    assert (territory["code"], territory["name"], territory["level"]) == (
        code, county["name"], "county")
    assert territory.geometry.geom_type == "MultiPolygon"

    towns = table[table["level"] == "town"].set_index("code")
    townships = layers["townships"].set_index("code")
    assert sorted(townships.index) == sorted(towns.index)
    assert (townships["name"] == towns["name"].reindex(townships.index)).all()
    assert (townships["parent"] == code).all()

    villages = table[table["level"] == "village"].set_index("code")
    units = layers["units"].set_index("code")
    assert sorted(units.index) == sorted(villages.index)
    for column in ("name", "parent", "ur_code"):
        assert (units[column] == villages[column].reindex(units.index)).all(), column
    urban = units["ur_code"].str.startswith("1")
    assert (units["kind"] == np.where(urban, "urban", "rural")).all()
    assert (units.loc[~urban, "zone"] == "村").all()
    assert (units.loc[urban, "zone"] != "村").all()
    assert (units.loc[urban, "zone"] == "社区").mean() > 0.6


def test_zigui_has_all_193_villages(zigui):
    assert len(zigui["units"]) == 193
    assert len(zigui["townships"]) == 12


def test_real_village_points_seed_their_units(sample):
    code, layers = sample
    table = _divisions(code).set_index("code")
    units = layers["units"].set_index("code")
    real = units[units["seed_source"] == "real"]
    assert len(real) >= 0.5 * (table["lon_gcj02"][table["level"] == "village"] != "").sum()
    assert (table.loc[real.index, "lon_gcj02"] != "").all()


def test_territory_is_converted_from_gcj02(sample):
    code, layers = sample
    raw = gpd.GeoSeries([_raw_boundary(code)], crs=STORAGE_CRS)
    crs = metric_crs(raw)
    shift = to_metric(raw, crs).centroid.iloc[0].distance(
        to_metric(layers["territory"], crs).centroid.iloc[0])
    assert 100.0 < shift < 1000.0
    # Converted, not re-drawn: the same shape, moved (the offset's gradient changes the
    # area by about a thousandth).
    assert _rel(to_metric(layers["territory"], crs).area.iloc[0],
                to_metric(raw, crs).area.iloc[0]) < 5e-3


# ----------------------------------------------------------------------------- synthetic


def test_default_household_totals(zigui):
    total = int(zigui["households"]["count"].sum())
    assert 1.2e5 <= total <= 1.4e5
    assert int(zigui["units"]["households"].sum()) == total


def test_urban_units_are_larger(zigui):
    units = zigui["units"]
    mean = units.groupby("kind")["households"].mean()
    assert mean["urban"] > 2 * mean["rural"]


def test_banks_outlets_devices_staff(zigui):
    institutions = zigui["institutions"]
    assert 5 <= len(institutions) <= 7
    assert institutions["name"].str.contains("秭归").all()
    outlets, devices, staff = zigui["outlets"], zigui["devices"], zigui["staff"]
    assert outlets["id"].str.match(r"^[A-Z]{3}-O-\d{3}$").all()
    assert set(outlets["tier"]) == {"一级支行", "二级支行", "分理处", "助农点"}
    assisted = outlets[outlets["tier"] == "助农点"]
    assert assisted["institution"].isin(["NSH", "YCB"]).mean() > 0.8
    tier_of = outlets.set_index("id")["tier"]
    assert (tier_of.reindex(devices.loc[devices["type"] == "助农取款POS", "outlet"])
            == "助农点").all()
    assert (tier_of.reindex(devices.loc[devices["type"].isin(["ATM", "CRS"]), "outlet"])
            != "助农点").all()
    workers = staff[staff["role"] != "manager"].groupby("institution").size()
    assert 100 <= workers["NSH"] <= 999
    assert workers.drop("NSH").max() < workers["NSH"]
    assert (staff["role"] == "manager").sum() >= len(institutions)
    assert staff["phone"].is_unique
    assert staff["grids"].isna().all()


def test_entities_carry_watch_list_words(zigui):
    names = zigui["entities"]["name"]
    assert 150 <= len(names) <= 999
    risky = names[names.apply(lambda n: any(w in n for w in RISK_WORDS))]
    assert 0.05 < len(risky) / len(names) < 0.3
    assert names.str.contains("小额贷款有限公司").sum() >= 2


def test_ledger_periods_and_grids(zigui):
    ledger = zigui["ledger"]
    assert (ledger["period"] == "2026-06").all()
    assert ledger["grid"].isin(zigui["units"]["code"]).all()
    assert (ledger["surveys"] >= ledger["checks"]).all()


# ----------------------------------------------------------------------------- determinism


def _dump(layers: dict, folder) -> dict[str, bytes]:
    out = {}
    for name, layer in layers.items():
        if isinstance(layer, gpd.GeoDataFrame):
            path = folder / f"{name}.geojson"
            layer.to_file(path, driver="GeoJSON")
        else:
            path = folder / f"{name}.csv"
            layer.to_csv(path, index=False)
        out[name] = path.read_bytes()
    return out


@pytest.mark.parametrize("code", ["420527", "330382"])
def test_same_arguments_same_bytes(code, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    first = _dump(build_sample(code, seed=3, households=5_000), tmp_path / "a")
    second = _dump(build_sample(code, seed=3, households=5_000), tmp_path / "b")
    assert first == second
    other = _dump(build_sample(code, seed=4, households=5_000), tmp_path / "c")
    for name in ("units", "households", "outlets", "staff", "entities"):
        assert other[name] != first[name], name


def test_households_argument_scales_the_total():
    layers = build_sample("371328", households=3_000)
    assert int(layers["households"]["count"].sum()) == 3_000
    empty = build_sample("371328", households=0)
    assert len(empty["households"]) == 0 and (empty["units"]["households"] == 0).all()
    assert len(empty["entities"]) > 0


def test_unknown_county_and_bad_arguments():
    with pytest.raises(InputError, match="not a sample county"):
        build_sample("110101")
    with pytest.raises(InputError, match="seed"):
        build_sample("420527", seed=-1)
    with pytest.raises(InputError, match="households"):
        build_sample("420527", households=-5)
    assert len(build_sample(420527, households=1_000)["units"]) == 193


# ----------------------------------------------------------------------------- CRS


@pytest.mark.parametrize(("code", "meridian", "epsg"),
                         [("420527", 111, 4546), ("330382", 120, 4549), ("371328", 117, 4548)])
def test_metric_crs_is_the_nearest_gauss_kruger_zone(code, meridian, epsg):
    raw = gpd.GeoSeries([_raw_boundary(code)], crs=STORAGE_CRS)
    crs = metric_crs(raw)
    assert central_meridian(crs) == meridian
    minx, _, maxx, _ = raw.total_bounds
    assert crs.to_epsg() == epsg == gauss_kruger_epsg((minx + maxx) / 2)
    assert crs.is_projected and crs.axis_info[0].unit_name == "metre"
    assert metric_crs(raw.total_bounds) == crs == metric_crs(raw.iloc[0])


def test_gauss_kruger_series_matches_pyproj():
    for cm in range(75, 136, 3):
        crs = metric_crs((cm - 1.0, 30.0, cm + 1.0, 31.0))
        assert central_meridian(crs) == cm
        assert "CGCS2000" in crs.name
    assert metric_crs((-3.0, 50.0, -2.0, 51.0)).to_epsg() == 32630  # abroad: UTM


# ----------------------------------------------------------------------------- ledger per grid


@pytest.fixture(scope="module")
def gridded(tmp_path_factory) -> tuple:
    """A small Zigui sample in a GeoPackage with NSH's grids (no ledger yet)."""
    from gis_grid.staffing import assign_staff
    from layers.gpkg import GeoPackageStore
    from layers.synthetic import sample_grids

    layers = build_sample("420527", households=5_000)
    grids = sample_grids(layers)
    grids["institution"] = "NSH"
    grids, staff = assign_staff(grids, layers["staff"], institution="NSH")
    path = tmp_path_factory.mktemp("ledger") / "s.gpkg"
    with GeoPackageStore(path) as store:
        for name in ("territory", "townships", "units", "institutions"):
            store.write(name, layers[name])
        store.write("staff", staff)
        store.write("grids__nsh", grids)
    return path, layers, grids


def test_sample_ledger_is_one_row_per_finest_grid_of_each_partitioned_bank(gridded):
    from gis_grid.coverage import files_vs_targets
    from gis_grid.staffing import finest_grids
    from layers.gpkg import GeoPackageStore
    from layers.synthetic.ledger import grid_ledger, store_grid_ledger

    path, layers, grids = gridded
    with GeoPackageStore(path) as store:
        ledger = store_grid_ledger(store, seed=3)
        stored = store.read("ledger")
    leaves = set(grids.loc[finest_grids(grids), "code"])
    assert len(stored) == len(leaves) == len(ledger)
    assert set(stored["grid"]) == leaves and set(stored["institution"]) == {"NSH"}
    assert (stored["households_files"] <= stored["households_total"]).all()
    # The grids' households are the ledger's totals; same seed, same figures.
    by_code = grids.set_index("code")["households"]
    assert (stored.set_index("grid")["households_total"]
            == by_code.loc[stored["grid"]].to_numpy()).all()
    pd.testing.assert_frame_equal(grid_ledger({"NSH": grids}, seed=3), ledger,
                                  check_dtype=False)
    # Coverage's files figures find each grid's village by location, not by code.
    files = files_vs_targets(stored, units=layers["units"], grids=grids)
    assert files.grids["unit"].notna().all() and files.grids["kind"].notna().all()
    part = files.institutions.set_index(["scope", "metric"]).loc[("institution",
                                                                  "participation")]
    assert part["achieved"] > 0 and part["total"] == len(layers["units"])


def test_ledger_rows_off_the_finest_grids_are_refused_with_the_reason(gridded, tmp_path):
    from click.testing import CliRunner

    from gis_grid.cli import main
    from layers.gpkg import GeoPackageStore

    path, _, grids = gridded
    with GeoPackageStore(path) as store:
        if "ledger" in {i.name for i in store.layers()}:
            store.delete("ledger")
    coarse = grids.loc[grids["level"] == 1, "code"].iloc[0]
    fine = grids.loc[grids["level"] == 3, "code"].iloc[0]
    rows = pd.DataFrame({
        "网格": [fine, coarse, "420527-999", fine], "机构": ["NSH", "NSH", "NSH", "YCB"],
        "期间": "2026-06", "住户总数": 10, "已建档住户": 5, "商户总数": 1, "已建档商户": 0,
        "小微企业总数": 0, "已建档小微企业": 0})
    file = tmp_path / "台账.csv"
    rows.to_csv(file, index=False)
    result = CliRunner().invoke(main, ["import", str(file), "--layer", "ledger",
                                       "--store", str(path)])
    assert result.exit_code == 3, result.output
    assert "row 2" not in result.output
    assert f"row 3: grid '{coarse}' has sub-grids in grids__nsh" in result.output
    assert "row 4: grid '420527-999' is not a grid of grids__nsh" in result.output
    assert "row 5: grid institution 'YCB' has no grids yet (no layer grids__ycb)" \
        in result.output
    with GeoPackageStore(path) as store:
        assert "ledger" not in {i.name for i in store.layers()}
    ok = rows.iloc[:1]
    ok.to_csv(file, index=False)
    result = CliRunner().invoke(main, ["import", str(file), "--layer", "ledger",
                                       "--store", str(path)])
    assert result.exit_code == 0, result.output


def test_sample_ledger_before_any_partition_is_refused(tmp_path):
    from click.testing import CliRunner

    from gis_grid.cli import main
    from layers.gpkg import GeoPackageStore

    path = tmp_path / "bare.gpkg"
    with GeoPackageStore(path) as store:
        store.write("institutions", build_sample("420527", households=2_000)["institutions"])
    result = CliRunner().invoke(main, ["sample", "--county", "420527", "--ledger",
                                       "--store", str(path)])
    assert result.exit_code == 3, result.output
    assert "no institution's grid layer is partitioned yet" in result.output


def test_a_grid_workers_key_reads_the_ledger_rows_of_its_own_grids(gridded):
    """Over real HTTP: once the ledger is kept per finest grid, a worker's key reads the
    rows of the grids it holds, and no others."""
    import httpx

    from api.auth import create_key
    from gis_grid.staffing import finest_grids
    from layers.gpkg import GeoPackageStore
    from layers.synthetic.ledger import store_grid_ledger
    from tests.api.server import Server

    path, _, grids = gridded
    leaf = grids.loc[finest_grids(grids)]
    worker = leaf["worker"].dropna().value_counts().index[0]
    mine = set(leaf.loc[leaf["worker"] == worker, "code"])
    with GeoPackageStore(path) as store:
        store_grid_ledger(store)
        _, key = create_key(store, "worker", "NSH", worker)
    with Server(str(path)) as server:
        r = httpx.get(f"{server.url}/collections/ledger/items", params={"limit": 1000},
                      headers={"X-API-Key": key}, timeout=60)
    assert r.status_code == 200, r.text
    seen = {f["properties"]["grid"] for f in r.json()["features"]}
    assert seen == mine and len(mine) > 0


def test_files_figures_match_a_ledger_grid_by_its_institution_and_code():
    """Two banks' layers may use one grid code; each ledger row takes the village of its
    own bank's grid (by location), not the first grid of that code."""
    import geopandas as gpd

    from gis_grid.coverage import files_vs_targets

    units = gpd.GeoDataFrame(
        {"code": ["420527100201", "420527100202"], "kind": ["urban", "rural"]},
        geometry=[shapely.box(110.0, 30.0, 110.1, 30.1), shapely.box(110.1, 30.0, 110.2, 30.1)],
        crs=STORAGE_CRS)
    grids = gpd.GeoDataFrame(
        {"code": ["G-1", "G-1"], "institution": ["NSH", "YCB"], "level": [1, 1]},
        geometry=[shapely.box(110.01, 30.01, 110.02, 30.02),
                  shapely.box(110.11, 30.01, 110.12, 30.02)], crs=STORAGE_CRS)
    ledger = pd.DataFrame({
        "grid": ["G-1", "G-1"], "institution": ["YCB", "NSH"], "period": "2026-06",
        "households_total": [100, 100], "households_files": [50, 50],
        "merchants_total": [0, 0], "merchants_files": [0, 0], "firms_total": [0, 0],
        "firms_files": [0, 0]})
    rows = files_vs_targets(ledger, units=units, grids=grids).grids.set_index("institution")
    assert rows.loc["NSH", "unit"] == "420527100201" and rows.loc["NSH", "kind"] == "urban"
    assert rows.loc["YCB", "unit"] == "420527100202" and rows.loc["YCB", "kind"] == "rural"
