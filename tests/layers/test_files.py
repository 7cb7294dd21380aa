"""layers.files: every format read and written with real files, the problems a user sees
(row and feature named exactly), encodings, offset datums and projected input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import shapely
from pyogrio.errors import DataSourceError

from gis_grid.errors import InputError, StoreError
from layers.datum import bd09_to_wgs84, gcj02_to_wgs84
from layers.files import FORMATS, RawLayer, read_file, write_file

NAMES = ["长岭村网点", "茅坪镇分理处", "屈原镇助农点"]
CODES = ["0420527101", "0000000001", "0100"]


@pytest.fixture
def outlets() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"id": ["O-1", "O-2", "O-3"], "name": NAMES, "code": CODES},
        geometry=shapely.points([110.7012345, 110.75, 110.8], [30.9, 30.95, 30.8765432]),
        crs="EPSG:4326",
    )


@pytest.fixture
def grids() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"code": ["420527-G01", "420527-G02"], "name": ["茅坪一网格", "茅坪二网格"],
         "households": [120, 85]},
        geometry=[shapely.box(110.70, 30.90, 110.71, 30.91),
                  shapely.MultiPolygon([shapely.box(110.71, 30.90, 110.72, 30.91),
                                        shapely.box(110.73, 30.90, 110.74, 30.91)])],
        crs="EPSG:4326",
    )


def problems(layer: RawLayer) -> list[str]:
    return [str(p) for p in layer.problems]


def same_geometries(actual, expected, tolerance: float = 1e-7) -> bool:
    """Equal up to orientation and RFC 7946's 7-decimal rounding."""
    a = shapely.normalize(np.asarray(actual, dtype=object))
    b = shapely.normalize(np.asarray(expected, dtype=object))
    return bool(shapely.equals_exact(a, b, tolerance=tolerance).all())


# --- round trips


@pytest.mark.parametrize("ext", [".geojson", ".json", ".gpkg", ".zip", ".csv", ".xlsx"])
def test_points_round_trip(tmp_path, outlets, ext):
    path = tmp_path / f"outlets{ext}"
    write_file(outlets, path)
    layer = read_file(path)
    assert layer.problems == [] and layer.source == str(path)
    assert layer.frame.crs.to_epsg() == 4326
    assert list(layer.frame["name"]) == NAMES
    assert list(layer.frame["code"]) == CODES  # leading zeros kept
    assert same_geometries(layer.frame.geometry, outlets.geometry)
    expected = ([f"row {i}" for i in (2, 3, 4)] if ext in (".csv", ".xlsx")
                else [f"feature {i} (id=O-{i})" for i in (1, 2, 3)])
    assert layer.labels == expected


@pytest.mark.parametrize("ext", [".geojson", ".gpkg", ".zip"])
def test_polygons_round_trip(tmp_path, grids, ext):
    path = tmp_path / f"grids{ext}"
    write_file(grids, path)
    layer = read_file(path)
    assert layer.problems == []
    assert list(layer.frame["name"]) == ["茅坪一网格", "茅坪二网格"]
    assert list(layer.frame["households"]) == [120, 85]
    assert same_geometries(layer.frame.geometry, grids.geometry)
    assert layer.labels == ["feature 1 (code=420527-G01)", "feature 2 (code=420527-G02)"]


@pytest.mark.parametrize("ext", [".csv", ".gpkg", ".geojson", ".xlsx"])
def test_table_round_trip(tmp_path, ext):
    ledger = pd.DataFrame({"grid": ["420527-G01", "420527-G02"], "period": ["2024-Q1"] * 2,
                           "institution": ["秭归农商行", "邮储银行"]})
    path = tmp_path / f"ledger{ext}"
    write_file(ledger, path)
    layer = read_file(path)
    assert not isinstance(layer.frame, gpd.GeoDataFrame)
    assert layer.problems == []
    assert layer.frame[list(ledger.columns)].equals(ledger)


def test_geojson_is_rfc7946_utf8_with_chinese_unescaped(tmp_path, outlets):
    path = tmp_path / "outlets.geojson"
    write_file(outlets.to_crs("EPSG:3857"), path)  # written back in WGS84
    text = path.read_bytes().decode("utf-8")
    assert "长岭村网点" in text and "\\u" not in text
    data = json.loads(text)
    assert "crs" not in data and data["name"] == "outlets"
    assert data["features"][0]["geometry"]["coordinates"] == pytest.approx([110.7012345, 30.9])


def test_gpkg_keeps_other_layers_and_replaces_its_namesake(tmp_path, outlets, grids):
    path = tmp_path / "export.gpkg"
    write_file(outlets, path, layer="outlets")
    write_file(grids, path, layer="grids")
    write_file(outlets.iloc[:1], path, layer="outlets")
    assert sorted(pyogrio.list_layers(path)[:, 0]) == ["grids", "outlets"]
    assert len(read_file(path, layer="outlets").frame) == 1
    assert len(read_file(path, layer="grids").frame) == 2


def test_zipped_shapefile_holds_its_parts_and_maps_long_field_names(tmp_path, grids):
    frame = grids.assign(households_total=[1, 2], households_files=[3, 4])
    path = tmp_path / "grids.zip"
    # "households" is taken already, so both long names need a suffix.
    with pytest.warns(UserWarning, match="households_total → househol_1, "
                                         "households_files → househol_2"):
        write_file(frame, path, layer="网格")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == [f"网格.{e}" for e in
                                              ("cpg", "dbf", "prj", "shp", "shx")]
        assert archive.read("网格.cpg").decode().strip().upper() in ("UTF-8", "UTF8")
    layer = read_file(path)
    assert list(layer.frame["households"]) == [120, 85]
    assert list(layer.frame["househol_2"]) == [3, 4]
    assert list(layer.frame["name"]) == ["茅坪一网格", "茅坪二网格"]


def test_bare_shapefile_is_read(tmp_path, outlets):
    pyogrio.write_dataframe(outlets, tmp_path / "outlets.shp", encoding="UTF-8")
    layer = read_file(tmp_path / "outlets.shp")
    assert list(layer.frame["name"]) == NAMES and layer.problems == []


@pytest.mark.parametrize("zipped", [False, True])
def test_gbk_shapefile_without_cpg_is_not_mojibake(tmp_path, outlets, zipped):
    # Desktop GIS in Chinese offices writes the .dbf in GBK and often no .cpg, which
    # GDAL alone would read as ISO-8859-1.
    frame = outlets.rename(columns={"name": "名称"})
    pyogrio.write_dataframe(frame, tmp_path / "outlets.shp", encoding="GBK")
    (tmp_path / "outlets.cpg").unlink()
    path = tmp_path / "outlets.shp"
    if zipped:
        path = tmp_path / "outlets.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for ext in ("shp", "shx", "dbf", "prj"):
                archive.write(tmp_path / f"outlets.{ext}", arcname=f"outlets.{ext}")
    assert list(read_file(path).frame["名称"]) == NAMES
    assert list(read_file(path, encoding="gbk").frame["名称"]) == NAMES


# --- CSV text encodings and columns

CSV = "id,name,code,lon,lat\nO-1,长岭村网点,0420527101,110.7,30.9\nO-2,䶮山助农点,0100,110.8,30.8\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_encodings_are_detected(tmp_path, encoding):
    text = CSV if encoding == "gb18030" else CSV.replace("䶮", "岩")  # 䶮 is not in GBK
    path = tmp_path / "outlets.csv"
    path.write_bytes(text.encode(encoding))
    layer = read_file(path)
    assert list(layer.frame.columns) == ["id", "name", "code", "geometry"]
    assert list(layer.frame["name"]) == [line.split(",")[1] for line in text.splitlines()[1:]]
    assert list(layer.frame["code"]) == ["0420527101", "0100"]
    assert layer.problems == []


def test_csv_encoding_given(tmp_path):
    path = tmp_path / "outlets.csv"
    path.write_bytes(CSV.replace("䶮", "岩").encode("gbk"))
    assert read_file(path, encoding="GBK").frame["name"][0] == "长岭村网点"
    with pytest.raises(InputError, match="is not valid utf-8 text"):
        read_file(path, encoding="utf-8")


@pytest.mark.parametrize("lon, lat", [("经度", "纬度"), ("x", "y"), ("X", "Y")])
def test_csv_coordinate_columns_are_configurable(tmp_path, lon, lat):
    path = tmp_path / "outlets.csv"
    path.write_text("id,x,y\nO-1,110.7,30.9\n".replace("x,y", f"{lon},{lat}"),
                    encoding="utf-8")
    layer = read_file(path, lon=lon.lower() if lon.isascii() else lon,
                      lat=lat.lower() if lat.isascii() else lat)
    assert layer.frame.geometry[0].equals(shapely.Point(110.7, 30.9))
    assert list(layer.frame.columns) == ["id", "geometry"]


def test_csv_without_coordinates_is_a_table(tmp_path):
    path = tmp_path / "ledger.csv"
    path.write_text("grid,period,households_total\n420527-G01,2024-01,0012\n", encoding="utf-8")
    layer = read_file(path)
    assert type(layer.frame) is pd.DataFrame
    assert layer.frame["households_total"][0] == "0012" and layer.labels == ["row 2"]


def test_csv_with_one_coordinate_column_is_a_problem(tmp_path):
    path = tmp_path / "outlets.csv"
    path.write_text("id,lon\nO-1,110.7\n", encoding="utf-8")
    assert problems(read_file(path)) == [
        f"{path}: has a 'lon' column but no 'lat' column; both are needed for points"]


def test_every_bad_coordinate_is_reported_with_its_row(tmp_path):
    path = tmp_path / "outlets.csv"
    path.write_text(
        "id,name,lon,lat\n"
        "O-1,good,110.7,30.9\n"         # row 2
        "O-2,lon too big,1130.2,30.9\n"  # row 3
        "O-3,lat text,110.7,abc\n"       # row 4
        "\n"                             # row 5, blank: skipped but counted
        "O-5,both empty,,\n"             # row 6
        "O-6,\"multi\nline\",-180.5,-91\n"  # row 7, a quoted newline is one row
        "O-7,good too, 110.8 ,30.8\n",     # row 8, spaces around a number are fine
        encoding="utf-8")
    layer = read_file(path)
    assert problems(layer) == [
        f"{path} row 3: lon 1130.2 out of range [-180, 180]",
        f'{path} row 4: lat "abc" is not a number',
        f"{path} row 6: lon is missing",
        f"{path} row 6: lat is missing",
        f"{path} row 7: lon -180.5 out of range [-180, 180]",
        f"{path} row 7: lat -91 out of range [-90, 90]",
    ]
    # Every row is kept for the checks; bad coordinates leave no geometry.
    assert layer.labels == ["row 2", "row 3", "row 4", "row 6", "row 7", "row 8"]
    assert list(layer.frame["id"]) == ["O-1", "O-2", "O-3", "O-5", "O-6", "O-7"]
    assert list(layer.frame.geometry.isna()) == [False, True, True, True, True, False]
    assert layer.frame.geometry[5].equals(shapely.Point(110.8, 30.8))


def test_csv_with_ragged_rows_is_rejected(tmp_path):
    path = tmp_path / "outlets.csv"
    path.write_text("id,lon,lat\nO-1,110.7,30.9\nO-2,110.7,30.9,extra\n", encoding="utf-8")
    with pytest.raises(InputError, match="Expected 3 fields in line 3, saw 4") as err:
        read_file(path)
    assert err.value.problems[0].source == str(path)


# --- geometry problems in vector files


def feature(fid: str, geometry: dict | None) -> dict:
    return {"type": "Feature", "properties": {"id": fid, "name": "网格"}, "geometry": geometry}


def write_geojson(path: Path, *features: dict) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)},
                               ensure_ascii=False), encoding="utf-8")
    return path


SQUARE = [[110.70, 30.90], [110.71, 30.90], [110.71, 30.91], [110.70, 30.91], [110.70, 30.90]]


def test_unclosed_rings_are_reported_by_feature(tmp_path):
    hole = [[110.702, 30.902], [110.703, 30.902], [110.703, 30.903]]  # open, 3 points
    path = write_geojson(
        tmp_path / "grids.geojson",
        feature("G-1", {"type": "Polygon", "coordinates": [SQUARE]}),
        feature("G-2", {"type": "Polygon", "coordinates": [SQUARE[:-1]]}),
        feature("G-3", {"type": "Polygon", "coordinates": [SQUARE, hole]}),
        feature("G-4", {"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE[:-1]]]}),
    )
    layer = read_file(path)
    assert problems(layer) == [
        f"{path} feature 2 (id=G-2): geometry ring 0 is not closed",
        f"{path} feature 3 (id=G-3): geometry ring 1 is not closed",
        f"{path} feature 4 (id=G-4): geometry polygon 1 ring 0 is not closed",
    ]
    # Reported, and kept closed so the checks still see the polygon.
    assert layer.frame.geometry[1].equals(shapely.Polygon(SQUARE))
    assert not layer.frame.geometry.isna().any()


def test_missing_and_empty_geometries_are_reported(tmp_path):
    path = write_geojson(
        tmp_path / "grids.geojson",
        feature("G-1", {"type": "Polygon", "coordinates": [SQUARE]}),
        feature("G-2", None),
        feature("G-3", {"type": "Polygon", "coordinates": []}),
    )
    assert problems(read_file(path)) == [
        f"{path} feature 2 (id=G-2): geometry is missing",
        f"{path} feature 3 (id=G-3): geometry is empty",
    ]


def test_geojson_in_metres_without_a_crs_is_caught_then_read_with_one(tmp_path):
    x, y = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(110.7, 30.9)
    path = write_geojson(tmp_path / "outlets.geojson",
                         feature("O-1", {"type": "Point", "coordinates": [x, y]}))
    [problem] = read_file(path).problems
    assert problem.where == "feature 1 (id=O-1)" and problem.field == "geometry"
    assert problem.message.startswith("coordinates out of lon/lat range (x 12323067.6")
    assert problem.message.endswith("if it is projected, give its CRS")
    # GeoJSON's WGS84 is only RFC 7946's default, so the CRS given wins over it.
    layer = read_file(path, crs="EPSG:3857")
    assert layer.problems == []
    assert layer.frame.geometry[0].equals_exact(shapely.Point(110.7, 30.9), tolerance=1e-9)


# --- CRS: offset datums and projected input

LON = np.array([110.7, 113.26, 121.47, 116.40])
LAT = np.array([30.9, 23.13, 31.23, 39.90])


def points_csv(path: Path, x, y, names=("lon", "lat")) -> Path:
    frame = pd.DataFrame({"id": [f"O-{i}" for i in range(len(x))], names[0]: x, names[1]: y})
    frame.to_csv(path, index=False, float_format="%.10f")
    return path


@pytest.mark.parametrize("crs, inverse", [("gcj02", gcj02_to_wgs84), ("GCJ-02", gcj02_to_wgs84),
                                          ("bd09", bd09_to_wgs84), ("BD-09", bd09_to_wgs84)])
def test_offset_datum_csv_is_converted(tmp_path, crs, inverse):
    path = points_csv(tmp_path / "outlets.csv", LON, LAT)
    frame = read_file(path, crs=crs).frame
    lon, lat = inverse(LON, LAT)
    assert frame.crs.to_epsg() == 4326
    assert np.allclose(frame.geometry.x, lon, atol=1e-9)
    assert np.allclose(frame.geometry.y, lat, atol=1e-9)
    assert not np.allclose(frame.geometry.x, LON, atol=1e-4)  # it did move


def test_offset_datum_file_labelled_wgs84_is_converted(tmp_path):
    path = tmp_path / "outlets.gpkg"
    gpd.GeoDataFrame({"id": ["a", "b", "c", "d"]}, geometry=shapely.points(LON, LAT),
                     crs="EPSG:4326").to_file(path)
    frame = read_file(path, crs="gcj02").frame
    lon, lat = gcj02_to_wgs84(LON, LAT)
    assert np.allclose(frame.geometry.x, lon, atol=1e-9)
    assert np.allclose(frame.geometry.y, lat, atol=1e-9)


@pytest.mark.parametrize("ext", [".gpkg", ".geojson", ".zip"])
def test_declared_web_mercator_is_reprojected(tmp_path, ext):
    mercator = gpd.GeoSeries(shapely.points(LON, LAT), crs="EPSG:4326").to_crs("EPSG:3857")
    frame = gpd.GeoDataFrame({"id": list("abcd")}, geometry=mercator)
    path = tmp_path / f"outlets{ext}"
    if ext == ".zip":
        pyogrio.write_dataframe(frame, tmp_path / "outlets.shp")
        with zipfile.ZipFile(path, "w") as archive:
            for part in tmp_path.glob("outlets.[sdp][hbr][pfjx]"):
                archive.write(part, arcname=part.name)
    else:
        # GeoJSON: GDAL writes the legacy "crs" member when RFC 7946 is not asked for.
        pyogrio.write_dataframe(frame, path)
    layer = read_file(path)
    assert layer.problems == [] and layer.frame.crs.to_epsg() == 4326
    assert np.allclose(layer.frame.geometry.x, LON, atol=1e-7)
    assert np.allclose(layer.frame.geometry.y, LAT, atol=1e-7)


def test_cgcs2000_gauss_kruger_csv_is_reprojected(tmp_path):
    lon, lat = np.array([113.2, 114.0, 114.9]), np.array([22.6, 30.5, 35.0])
    to_gk = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:4547", always_xy=True)
    x, y = to_gk.transform(lon, lat)
    path = points_csv(tmp_path / "outlets.csv", x, y, names=("x", "y"))
    layer = read_file(path, crs="EPSG:4547", lon="x", lat="y")
    assert layer.problems == []
    # CGCS2000 and WGS84 agree to centimetres; PROJ treats them as equal here.
    assert np.allclose(layer.frame.geometry.x, lon, atol=1e-7)
    assert np.allclose(layer.frame.geometry.y, lat, atol=1e-7)


def test_declared_crs_conflicting_with_the_given_one_is_an_error(tmp_path):
    path = tmp_path / "outlets.gpkg"
    gpd.GeoDataFrame({"id": ["a"]}, geometry=[shapely.Point(12e6, 3.6e6)],
                     crs="EPSG:3857").to_file(path)
    with pytest.raises(InputError) as err:
        read_file(path, crs="EPSG:4326")
    assert str(err.value.problems[0]) == (
        f"{path}: file declares EPSG:3857 but --crs EPSG:4326 was given")
    with pytest.raises(InputError, match="declares EPSG:3857 but --crs gcj02"):
        read_file(path, crs="gcj02")
    assert read_file(path, crs="3857").problems == []  # the same CRS, said twice
    # A GeoJSON's legacy "crs" member is a declaration too.
    legacy = tmp_path / "legacy.geojson"
    pyogrio.write_dataframe(gpd.read_file(path), legacy)
    assert '"crs"' in legacy.read_text(encoding="utf-8")
    with pytest.raises(InputError, match="declares EPSG:3857 but --crs EPSG:4490 was given"):
        read_file(legacy, crs="EPSG:4490")


def test_unknown_crs_is_an_error(tmp_path):
    path = points_csv(tmp_path / "outlets.csv", LON, LAT)
    with pytest.raises(InputError, match="unknown CRS 'wgs-85'"):
        read_file(path, crs="wgs-85")


# --- unreadable files


def test_unknown_extension_missing_and_corrupt_files_name_the_file(tmp_path):
    (tmp_path / "outlets.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [',
                                             encoding="utf-8")
    (tmp_path / "broken.gpkg").write_text("not a database", encoding="utf-8")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    (tmp_path / "empty.csv").write_bytes(b"")
    for name, message in [("outlets.txt", "unknown file type '.txt'"),
                          ("missing.geojson", "file not found"),
                          ("broken.geojson", "cannot be read"),
                          ("broken.gpkg", "cannot be read"),
                          ("broken.zip", "is not a readable zip file"),
                          ("empty.csv", "is empty")]:
        path = tmp_path / name
        with pytest.raises(InputError) as err:
            read_file(path)
        [problem] = err.value.problems
        assert problem.source == str(path) and message in problem.message, name
        assert str(path) in str(err.value)


def test_zip_with_two_shapefiles_lists_them(tmp_path, outlets, grids):
    pyogrio.write_dataframe(outlets, tmp_path / "outlets.shp")
    pyogrio.write_dataframe(grids, tmp_path / "grids.shp")
    path = tmp_path / "both.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for part in sorted(tmp_path.glob("*.*")):
            if part.suffix in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
                archive.write(part, arcname=f"data/{part.name}")
    with pytest.raises(InputError) as err:
        read_file(path)
    assert str(err.value.problems[0]) == (
        f"{path}: holds 2 Shapefiles: data/grids.shp, data/outlets.shp; "
        "choose one with the layer option")
    assert len(read_file(path, layer="grids").frame) == 2


def test_gpkg_with_two_layers_needs_one_named(tmp_path, outlets, grids):
    path = tmp_path / "sample.gpkg"
    outlets.to_file(path, layer="outlets")
    grids.to_file(path, layer="grids")
    with pytest.raises(InputError) as err:
        read_file(path)
    message = err.value.problems[0].message
    assert "holds 2 layers" in message and "outlets" in message and "grids" in message
    with pytest.raises(InputError, match="has no layer 'units'; it holds"):
        read_file(path, layer="units")
    assert list(read_file(path, layer="outlets").frame["name"]) == NAMES


# --- writing: encodings, refusals, atomicity


def test_csv_is_written_with_bom_or_in_gb18030(tmp_path, outlets):
    utf8, gb = tmp_path / "utf8.csv", tmp_path / "gb.csv"
    write_file(outlets, utf8)
    write_file(outlets, gb, encoding="gb18030", lon="经度", lat="纬度")
    assert utf8.read_bytes().startswith(b"\xef\xbb\xbfid,name,code,lon,lat\n")
    assert gb.read_bytes().decode("gb18030").startswith("id,name,code,经度,纬度\n")
    for path, names in ((utf8, {}), (gb, {"lon": "经度", "lat": "纬度"})):
        layer = read_file(path, **names)
        assert list(layer.frame["name"]) == NAMES and list(layer.frame["code"]) == CODES
        assert same_geometries(layer.frame.geometry, outlets.geometry, tolerance=1e-12)


def test_write_refusals_leave_no_file(tmp_path, outlets, grids):
    existing = tmp_path / "grids.csv"
    existing.write_text("old", encoding="utf-8")
    cases = [(grids, existing, {}, "CSV holds points only, but feature 1 is a Polygon"),
             (grids, tmp_path / "grids.xlsx", {}, "XLSX holds points only"),
             (outlets.assign(name=["𠀀", "b", "c"]), tmp_path / "gbk.csv",
              {"encoding": "gbk"}, "cannot be written in gbk"),
             (pd.DataFrame({"a": [1]}), tmp_path / "table.zip", {}, "cannot be a Shapefile"),
             (outlets, tmp_path / "outlets.kml", {}, "cannot write '.kml' files")]
    for frame, path, options, message in cases:
        with pytest.raises(InputError, match=message):
            write_file(frame, path, **options)
    assert existing.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grids.csv"]  # no temp left over


def test_failed_gdal_write_leaves_the_old_file(tmp_path, outlets, monkeypatch):
    path = tmp_path / "outlets.gpkg"
    write_file(outlets, path)
    before = path.read_bytes()
    real_write = pyogrio.write_dataframe

    def write_half_then_fail(frame, target, **options):
        real_write(frame.iloc[:1], target, **options)
        raise DataSourceError("disk full")

    monkeypatch.setattr(pyogrio, "write_dataframe", write_half_then_fail)
    with pytest.raises(StoreError, match="outlets.gpkg: cannot be written: disk full"):
        write_file(outlets.iloc[:2], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outlets.gpkg"]


def test_xlsx_with_chinese_titles_typed_cells_and_blank_rows(tmp_path):
    """A sheet as people leave it: Chinese headers, coordinates as 经度/纬度, codes typed
    as numbers, a date cell, an empty row in between, blank cells."""
    import datetime as dt

    import openpyxl

    path = tmp_path / "网点.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["编号", "名称", "代码", "开业", "经度", "纬度"])
    sheet.append(["O-1", "长岭村网点", 420527101201, dt.datetime(2024, 3, 1), 110.7012345, 30.9])
    sheet.append([None, None, None, None, None, None])
    sheet.append(["O-2", None, "0100", dt.datetime(2024, 3, 1, 8, 30), 110.75, 30.95])
    book.save(path)
    layer = read_file(path)
    assert layer.problems == [] and layer.labels == ["row 2", "row 4"]
    assert layer.coordinates == ("经度", "纬度")
    assert list(layer.frame["代码"]) == ["420527101201", "0100"]
    assert list(layer.frame["名称"]) == ["长岭村网点", ""]
    assert list(layer.frame["开业"]) == ["2024-03-01", "2024-03-01T08:30:00"]
    assert list(shapely.get_x(layer.frame.geometry.values)) == [110.7012345, 110.75]


def test_xlsx_sheet_choice_and_unreadable_workbook(tmp_path, outlets):
    path = tmp_path / "book.xlsx"
    write_file(outlets, path, layer="网点")
    assert len(read_file(path, layer="网点").frame) == 3
    with pytest.raises(InputError, match="has no sheet 'other'; it holds 网点"):
        read_file(path, layer="other")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="broken.xlsx: is not a readable .xlsx workbook"):
        read_file(broken)


def test_titles_name_the_csv_and_xlsx_headers(tmp_path, outlets):
    titles = {"id": "编号", "name": "名称"}
    for ext in (".csv", ".xlsx"):
        path = tmp_path / f"titled{ext}"
        write_file(outlets, path, titles=titles, lon="经度", lat="纬度")
        layer = read_file(path)
        assert list(layer.frame.columns[:3]) == ["编号", "名称", "code"]
        assert same_geometries(layer.frame.geometry, outlets.geometry, tolerance=0)


def test_formats_describe_every_extension():
    assert set(FORMATS) == {".geojson", ".json", ".gpkg", ".zip", ".shp", ".csv", ".xlsx"}
    assert all(FORMATS.values())


def test_import_gives_back_field_names_a_shapefile_shortened(tmp_path):
    """ArcGIS writes `institution` as the dBASE field INSTITUTIO; the import maps such
    names back to the layer's own, and still reports a field that is really absent."""
    from layers.gpkg import GeoPackageStore
    from layers.transfer import import_file

    frame = gpd.GeoDataFrame(
        {"ID": ["O-1", "O-2"], "INSTITUTIO": ["农商行", "邮储银行"], "TIER": ["一级支行"] * 2,
         "NAME": ["茅坪支行", "归州分理处"], "SOURCE": ["real"] * 2},
        geometry=shapely.points([110.70, 110.75], [30.90, 30.95]), crs="EPSG:4326")
    pyogrio.write_dataframe(frame, tmp_path / "outlets.shp", encoding="UTF-8")
    store = GeoPackageStore(tmp_path / "store.gpkg")
    store.write("institutions", pd.DataFrame({"id": ["农商行", "邮储银行"],
                                              "name": ["农商行", "邮储银行"],
                                              "type": ["农村商业银行", "邮政储蓄银行"]}))
    report = import_file(store, tmp_path / "outlets.shp", "outlets")
    assert report.count == 2
    back = store.read("outlets")
    assert back["institution"].tolist() == ["农商行", "邮储银行"]
    assert back["name"].tolist() == ["茅坪支行", "归州分理处"]
    # Without the shortened column the problem is still named by the layer's field.
    pyogrio.write_dataframe(frame.drop(columns="INSTITUTIO"), tmp_path / "bad.shp",
                            encoding="UTF-8")
    with pytest.raises(InputError) as caught:
        import_file(store, tmp_path / "bad.shp", "outlets", mode="replace")
    assert any(p.field == "institution" for p in caught.value.problems)
    assert store.read("outlets")["id"].tolist() == ["O-1", "O-2"]  # left as it was
