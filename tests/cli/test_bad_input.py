"""Bad input is rejected with a message naming file, row, field and problem, every problem
at once, and the store is left exactly as it was — on both stores, through the real CLI."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner
from shapely.geometry import box

from gis_grid.cli import main
from layers.store import open_store

INSTITUTIONS = "id,name,type\nNSH,秭归农商行,农村商业银行\nYCB,邮储银行秭归县支行,邮政储蓄银行\n"
HEADER = "id,institution,tier,name,status,unit,lon,lat"


def outlet_rows(n: int) -> list[str]:
    return [f"O-{i:03d},NSH,助农点,{i}号助农点,营业,420527101201,{110.70 + i * 0.001:.4f},30.90"
            for i in range(n)]


def csv_text(rows: list[str]) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


@pytest.fixture(params=["gpkg", "postgis"])
def store_url(request, tmp_path):
    if request.param == "gpkg":
        yield str(tmp_path / "bad-input.gpkg")
        return
    url = request.getfixturevalue("postgis_url")
    yield url
    with open_store(url) as store:
        for info in store.layers():
            store.delete(info.name)


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def snapshot(url: str) -> dict[str, str]:
    """Everything the store holds, as text that compares exactly."""
    with open_store(url) as store:
        out = {}
        for info in store.layers():
            frame = store.read(info.name)
            if "geometry" in frame.columns:
                frame = pd.DataFrame(frame).assign(geometry=frame.geometry.to_wkt())
            out[info.name] = frame.sort_values(list(frame.columns)[0]).to_csv(index=False)
        return out


@pytest.fixture
def seeded(store_url, tmp_path):
    """A store holding the township and village the outlets lie in, institutions and 20
    good outlets (references are checked whatever the store holds: issue 15)."""
    with open_store(store_url) as store:
        store.write("townships", gpd.GeoDataFrame(
            {"code": ["420527101000"], "name": ["茅坪镇"], "parent": ["420527"]},
            geometry=[box(110.6, 30.8, 111.0, 31.0)], crs="EPSG:4326"))
        store.write("units", gpd.GeoDataFrame(
            {"code": ["420527101201"], "name": ["长岭村"], "parent": ["420527101000"],
             "kind": ["rural"], "households": [120]},
            geometry=[box(110.6, 30.8, 111.0, 31.0)], crs="EPSG:4326"))
    (tmp_path / "institutions.csv").write_text(INSTITUTIONS, encoding="utf-8")
    (tmp_path / "good.csv").write_text(csv_text(outlet_rows(20)), encoding="utf-8")
    assert run("import", str(tmp_path / "institutions.csv"), "--layer", "institutions",
               "--store", store_url).exit_code == 0
    result = run("import", str(tmp_path / "good.csv"), "--layer", "outlets", "--store", store_url)
    assert result.exit_code == 0, result.output
    return store_url, snapshot(store_url)


def rejected(seeded, tmp_path, name: str, content: str | bytes, layer: str, *extra: str):
    url, before = seeded
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    result = run("import", str(path), "--layer", layer, "--store", url, "--mode", "replace",
                 *extra)
    assert result.exit_code == 3, result.output
    assert "nothing was stored" in result.output
    assert snapshot(url) == before, "a rejected import changed the store"
    return result.output


def test_lon_out_of_range_names_row_and_value(seeded, tmp_path):
    rows = outlet_rows(20)
    rows[15] = rows[15].replace("110.7150", "1130.2")  # data row 16 = spreadsheet row 17
    out = rejected(seeded, tmp_path, "outlets.csv", csv_text(rows), "outlets")
    assert "outlets.csv row 17: lon 1130.2 out of range" in out


def test_every_problem_reported_at_once(seeded, tmp_path):
    rows = outlet_rows(10)
    rows[0] = rows[0].replace(",30.90", ",abc")                    # row 2: lat not a number
    rows[2] = rows[2].replace("助农点,", "支行,", 1)                 # row 4: tier not in enum
    rows[4] = rows[4].replace("420527101201", "42052710120")       # row 6: code 11 digits
    rows[6] = rows[6].replace("O-006", "O-005")                    # row 8: duplicate id
    rows[8] = rows[8].replace(",NSH,", ",XYZ,")                    # row 10: unknown bank
    out = rejected(seeded, tmp_path, "outlets.csv", csv_text(rows), "outlets")
    assert "outlets.csv row 2: lat" in out and "not a number" in out
    assert "outlets.csv row 4: tier '支行' is not one of 一级支行" in out
    assert "outlets.csv row 6: unit '42052710120' does not match" in out
    assert "outlets.csv row 8: id 'O-005' is a duplicate (also row 7)" in out
    # A reference is only checked once the rows themselves are sound.
    assert "XYZ" not in out or "is not in layer institutions" in out


def test_unknown_institution_is_rejected(seeded, tmp_path):
    rows = outlet_rows(5)
    rows[3] = rows[3].replace(",NSH,", ",XYZ,")
    out = rejected(seeded, tmp_path, "outlets.csv", csv_text(rows), "outlets")
    assert "outlets.csv row 5: institution 'XYZ' is not in layer institutions" in out


def test_missing_column_and_empty_required_value(seeded, tmp_path):
    text = "id,institution,name,lon,lat\nO-1,NSH,,110.7,30.9\n"
    out = rejected(seeded, tmp_path, "outlets.csv", text, "outlets")
    assert "outlets.csv: tier is required but the input has no 'tier' column" in out
    assert "outlets.csv row 2: name is empty but required" in out


def test_gbk_csv_is_read_and_its_errors_named(seeded, tmp_path):
    rows = outlet_rows(3)
    rows[1] = rows[1].replace("营业", "关门")
    out = rejected(seeded, tmp_path, "outlets.csv", csv_text(rows).encode("gbk"), "outlets")
    assert "outlets.csv row 3: status '关门' is not one of 营业, 停业, 筹建" in out


def _feature(geometry: dict, code: str = "420527101201") -> dict:
    return {"type": "Feature", "geometry": geometry,
            "properties": {"code": code, "name": "长岭村", "parent": "420527101000",
                           "kind": "rural", "households": 120}}


def _geojson(*features: dict) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)},
                      ensure_ascii=False)


BOWTIE = {"type": "Polygon", "coordinates": [[[110.70, 30.90], [110.72, 30.92], [110.72, 30.90],
                                              [110.70, 30.92], [110.70, 30.90]]]}
SQUARE = {"type": "Polygon", "coordinates": [[[110.70, 30.90], [110.71, 30.90], [110.71, 30.91],
                                              [110.70, 30.91], [110.70, 30.90]]]}


def test_self_intersection_reported_then_fixed_on_request(seeded, tmp_path):
    text = _geojson(_feature(SQUARE, "420527101202"), _feature(BOWTIE))
    out = rejected(seeded, tmp_path, "units.geojson", text, "units")
    assert "units.geojson feature 2 (code=420527101201): geometry is invalid: " \
           "Self-intersection" in out
    url, _ = seeded
    result = run("import", str(tmp_path / "units.geojson"), "--layer", "units", "--store", url,
                 "--fix-geometry", "--mode", "replace")
    assert result.exit_code == 0, result.output
    assert "1 geometries repaired" in result.output
    with open_store(url) as store:
        units = store.read("units")
    assert units.is_valid.all() and len(units) == 2


def test_unclosed_ring_is_reported(seeded, tmp_path):
    ring = SQUARE["coordinates"][0][:-1]
    text = _geojson(_feature({"type": "Polygon", "coordinates": [ring]}))
    out = rejected(seeded, tmp_path, "units.geojson", text, "units")
    assert "units.geojson feature 1" in out and "not closed" in out


def test_wrong_geometry_type(seeded, tmp_path):
    line = {"type": "LineString", "coordinates": [[110.7, 30.9], [110.8, 30.9]]}
    out = rejected(seeded, tmp_path, "units.geojson", _geojson(_feature(line)), "units")
    assert "geometry is a LineString, expected Polygon or MultiPolygon" in out


def test_unreadable_file_named(seeded, tmp_path):
    out = rejected(seeded, tmp_path, "outlets.txt", "hello", "outlets")
    assert "outlets.txt" in out


def test_staff_without_location_is_fine_but_half_a_coordinate_is_not(seeded, tmp_path):
    url, _ = seeded
    header = "id,institution,name,role,phone,lon,lat\n"
    path = tmp_path / "staff.csv"
    path.write_text(header + "S-1,NSH,张伟,worker,13800000001,,\n"
                    "S-2,NSH,李娜,manager,13800000002,110.7,30.9\n", encoding="utf-8")
    result = run("import", str(path), "--layer", "staff", "--store", url)
    assert result.exit_code == 0, result.output
    half = header + "S-3,NSH,王芳,worker,13800000003,110.7,\n"
    out = rejected((url, snapshot(url)), tmp_path, "staff2.csv", half, "staff")
    assert "staff2.csv row 2: lat is missing" in out


def test_good_import_replaces_layer(seeded, tmp_path):
    url, _ = seeded
    (tmp_path / "five.csv").write_text(csv_text(outlet_rows(5)), encoding="utf-8")
    result = run("import", str(tmp_path / "five.csv"), "--layer", "outlets", "--store", url,
                 "--mode", "replace")
    assert result.exit_code == 0, result.output
    with open_store(url) as store:
        outlets = store.read("outlets")
    assert sorted(outlets["id"]) == [f"O-{i:03d}" for i in range(5)]
    assert isinstance(outlets, pd.DataFrame)
