"""The store contract (``layers.store.Store``), run against every store.

The ``store`` fixture (tests/conftest.py) yields an empty GeoPackage store and an empty
PostGIS store in turn; each test below runs on both. The sections at the end check what
is particular to each: the GeoPackage file stays one that GDAL and QGIS open and edit,
and the PostGIS store's connection errors, migrations, indexes and catalog.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyogrio
import pytest
import shapely
from psycopg import sql
from shapely.geometry import MultiPolygon, Point, Polygon, box

from gis_grid.errors import ConflictError, InputError, LayerNotFound, StoreError
from layers.gpkg import GeoPackageStore
from layers.migrations import MIGRATIONS, migrate
from layers.postgis import PostGISStore
from layers.store import LayerInfo, open_store

CRS = "EPSG:4326"
LON, LAT = 110.8, 30.9  # 秭归县, the seed's county


# --- sample layers -------------------------------------------------------------------

def outlets() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "id": ["O-1", "O-2", "O-3", "O-4"],
            "institution": ["农商行", "邮储银行", "农商行", "工商银行"],
            "tier": ["一级支行", "二级支行", "分理处", "助农点"],
            "name": ["茅坪支行", "归州分理处", "屈原镇 \"老街\" 网点, 二楼", "水田坝村助农点"],
            "status": ["营业", "营业", "停业", None],
            "unit": ["420527100001", "420527100002", "420527100003", "420527100004"],
            "source": ["synthetic"] * 4,
        },
        geometry=[Point(LON, LAT), Point(LON + 0.1, LAT), Point(LON, LAT + 0.1),
                  Point(LON + 0.2, LAT + 0.2)],
        crs=CRS,
    )


def institutions() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["NSH", "PSBC", "ICBC"],
        "name": ["湖北秭归农村商业银行", "中国邮政储蓄银行", "中国工商银行"],
        "type": ["农村商业银行", "邮政储蓄银行", "国有大型商业银行"],
        "source": ["synthetic", "real", "real"],
    })


def ledger() -> pd.DataFrame:
    return pd.DataFrame({
        "grid": ["420527100001-1", "420527100001-2", "420527100002-1"],
        "institution": ["NSH", "NSH", "PSBC"],
        "period": ["2024-06", "2024-Q2", "2024-06"],
        "households_total": [310, 295, 402],
        "households_files": [250, 0, 402],
        "merchants_total": [12, 3, 0],
        "merchants_files": [12, 1, 0],
        "firms_total": [2, 0, 5],
        "firms_files": [1, 0, 5],
        "surveys": pd.array([4, None, 7], dtype="Int64"),
        "checks": pd.array([1, 2, 3], dtype="int64"),
    })


def l_shape(x: float, y: float) -> Polygon:
    """An L whose bounding box covers (x + 0.75, y + 0.75) while the L does not."""
    return Polygon([(x, y), (x + 1, y), (x + 1, y + 0.5), (x + 0.5, y + 0.5),
                    (x + 0.5, y + 1), (x, y + 1)])


def grids() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "code": ["420527-A", "420527-B", "420527-C"],
            "level": [1, 1, 2],
            "kind": ["urban", "rural", "rural"],
            "households": [300, 280, 150],
        },
        geometry=[l_shape(LON, LAT), box(LON + 2, LAT, LON + 3, LAT + 1),
                  Polygon(box(LON + 4, LAT, LON + 5, LAT + 1).exterior.coords,
                          [box(LON + 4.4, LAT + 0.4, LON + 4.6, LAT + 0.6).exterior.coords])],
        crs=CRS,
    )


def units_mixed() -> gpd.GeoDataFrame:
    """Villages, one of them in two parts: Polygon and MultiPolygon mixed."""
    two_parts = MultiPolygon([box(LON, LAT, LON + 0.1, LAT + 0.1),
                              box(LON + 0.2, LAT, LON + 0.3, LAT + 0.1)])
    return gpd.GeoDataFrame(
        {"code": ["420527100001", "420527100002"], "name": ["茅坪村", "月亮包村"],
         "kind": ["rural", "rural"], "households": [410, 233]},
        geometry=[box(LON, LAT + 0.2, LON + 0.1, LAT + 0.3), two_parts],
        crs=CRS,
    )


def households(n: int, seed: int = 7) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    return gpd.GeoDataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "count": rng.integers(1, 20, n),
            "unit": pd.Series(rng.integers(0, 50, n)).map("4205271000{:02d}".format)
            .astype("str"),
            "source": pd.Series(["synthetic"] * n, dtype="str"),
        },
        geometry=shapely.points(rng.uniform(LON - 0.25, LON + 0.25, n),
                                rng.uniform(LAT - 0.2, LAT + 0.2, n)),
        crs=CRS,
    )


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns, values and dtypes; geometry identical (exact WKB), CRS EPSG:4326."""
    if isinstance(expected, gpd.GeoDataFrame):
        assert isinstance(actual, gpd.GeoDataFrame)
        assert actual.crs == CRS
        assert actual.geometry.name == "geometry"
        assert np.array_equal(shapely.to_wkb(np.asarray(actual.geometry.array)),
                              shapely.to_wkb(np.asarray(expected.geometry.array)))
        actual, expected = (pd.DataFrame(actual.drop(columns="geometry")),
                            pd.DataFrame(expected.drop(columns="geometry")))
    else:
        assert not isinstance(actual, gpd.GeoDataFrame)
    pd.testing.assert_frame_equal(actual, expected.reset_index(drop=True))


# --- listing -------------------------------------------------------------------------

def test_a_new_store_is_empty(store):
    assert store.layers() == []
    assert not store.has("outlets")


def test_layers_tell_name_count_geometry_type_and_bbox(store):
    store.write("outlets", outlets())
    store.write("institutions", institutions())
    store.write("grids", grids())
    infos = store.layers()
    assert [i.name for i in infos] == ["grids", "institutions", "outlets"]
    by_name = {i.name: i for i in infos}
    assert by_name["outlets"] == LayerInfo(
        "outlets", 4, "Point", pytest.approx((LON, LAT, LON + 0.2, LAT + 0.2)))
    assert by_name["institutions"] == LayerInfo("institutions", 3, None, None)
    assert by_name["grids"].geometry_type == "Polygon"
    assert by_name["grids"].count == 3
    assert by_name["grids"].bbox == pytest.approx((LON, LAT, LON + 5, LAT + 1))
    assert store.has("grids")


# --- reading -------------------------------------------------------------------------

def test_read_whole_layer_round_trips(store):
    store.write("outlets", outlets())
    assert_same(store.read("outlets"), outlets())


def test_read_by_bbox_keeps_true_intersections_only(store):
    store.write("grids", grids())
    # Inside the L's bounding box but outside the L: not a match.
    got = store.read("grids", bbox=(LON + 0.7, LAT + 0.7, LON + 0.8, LAT + 0.8))
    assert len(got) == 0
    got = store.read("grids", bbox=(LON + 0.2, LAT + 0.2, LON + 2.5, LAT + 0.3))
    assert got["code"].tolist() == ["420527-A", "420527-B"]
    # Touching the boundary counts as intersecting.
    got = store.read("grids", bbox=(LON + 3, LAT + 1, LON + 3.5, LAT + 1.5))
    assert got["code"].tolist() == ["420527-B"]
    # Inside the hole of C: no intersection.
    got = store.read("grids", bbox=(LON + 4.45, LAT + 0.45, LON + 4.55, LAT + 0.55))
    assert len(got) == 0


def test_read_by_attributes(store):
    store.write("outlets", outlets())
    assert store.read("outlets", where={"institution": "农商行"})["id"].tolist() == ["O-1", "O-3"]
    got = store.read("outlets", where={"institution": ["邮储银行", "工商银行"]})
    assert got["id"].tolist() == ["O-2", "O-4"]
    got = store.read("outlets", where={"institution": "农商行", "tier": "分理处"})
    assert got["id"].tolist() == ["O-3"]
    assert store.read("outlets", where={"status": None})["id"].tolist() == ["O-4"]
    assert len(store.read("outlets", where={"institution": []})) == 0
    got = store.read("outlets", where={"name": '屈原镇 "老街" 网点, 二楼'})
    assert got["id"].tolist() == ["O-3"]
    got = store.read("outlets", where={"institution": "农商行"},
                     bbox=(LON - 0.01, LAT + 0.05, LON + 0.01, LAT + 0.15))
    assert got["id"].tolist() == ["O-3"]


def test_read_by_attributes_of_other_types(store):
    store.write("grids", grids())
    assert store.read("grids", where={"level": 2})["code"].tolist() == ["420527-C"]
    assert store.read("grids", where={"households": [300, 150]})["code"].tolist() == [
        "420527-A", "420527-C"]
    assert store.read("grids", where={"level": np.int64(1)})["code"].tolist() == [
        "420527-A", "420527-B"]


def test_filter_values_cannot_inject_sql(store):
    store.write("outlets", outlets())
    for value in ["x' OR '1'='1", "x') OR ('1'='1", "'; DROP TABLE outlets; --", 'x" OR 1=1']:
        assert len(store.read("outlets", where={"institution": value})) == 0
    assert len(store.read("outlets")) == 4


def test_read_rejects_unknown_columns(store):
    store.write("outlets", outlets())
    with pytest.raises(StoreError, match="nope"):
        store.read("outlets", where={"nope": 1})
    with pytest.raises(StoreError, match="nope"):
        store.read("outlets", columns=["id", "nope"])
    with pytest.raises(StoreError, match='"x"'):
        store.read("outlets", where={'"x"': 1})


def test_read_selected_columns(store):
    store.write("outlets", outlets())
    got = store.read("outlets", columns=["name", "id"])
    assert list(got.columns) == ["name", "id", "geometry"]
    assert_same(got, outlets()[["name", "id", "geometry"]])
    only_geometry = store.read("outlets", columns=[])
    assert list(only_geometry.columns) == ["geometry"]
    assert len(only_geometry) == 4


def test_read_rejects_bad_bbox(store):
    store.write("outlets", outlets())
    for bad in [(1, 2, 3), (LON + 1, LAT, LON, LAT + 1), ("a", 1, 2, 3), (0, 0, float("nan"), 1)]:
        with pytest.raises(StoreError, match="bbox"):
            store.read("outlets", bbox=bad)


# --- writing -------------------------------------------------------------------------

def test_write_replaces_the_layer(store):
    store.write("outlets", outlets())
    replacement = outlets().iloc[[3, 1]].reset_index(drop=True)
    replacement["name"] = ["新名字", "另一个"]
    replacement = replacement.drop(columns=["status"])
    store.write("outlets", replacement)
    assert_same(store.read("outlets"), replacement)
    assert [(i.name, i.count) for i in store.layers()] == [("outlets", 2)]
    # A layer may change geometry type and columns on replace.
    polygons = gpd.GeoDataFrame({"id": ["O-9"], "extra": [1.5]},
                                geometry=[box(LON, LAT, LON + 1, LAT + 1)], crs=CRS)
    store.write("outlets", polygons)
    assert_same(store.read("outlets"), polygons)
    assert store.layers()[0].geometry_type == "Polygon"


def test_tables_without_geometry(store):
    store.write("institutions", institutions())
    store.write("ledger", ledger())
    assert_same(store.read("institutions"), institutions())
    assert_same(store.read("ledger"), ledger())
    got = store.read("ledger", where={"institution": "NSH"}, columns=["grid", "surveys"])
    assert_same(got, ledger().loc[[0, 1], ["grid", "surveys"]])
    with pytest.raises(StoreError, match="bbox"):
        store.read("ledger", bbox=(0, 0, 1, 1))
    # A GeoDataFrame without a geometry column is a table too.
    store.write("institutions", gpd.GeoDataFrame(institutions()))
    assert_same(store.read("institutions"), institutions())


def test_delete(store):
    store.write("outlets", outlets())
    store.write("institutions", institutions())
    store.delete("outlets")
    assert [i.name for i in store.layers()] == ["institutions"]
    with pytest.raises(LayerNotFound):
        store.read("outlets")
    with pytest.raises(LayerNotFound):
        store.delete("outlets")
    store.write("outlets", outlets())  # the name is free again
    assert len(store.read("outlets")) == 4


def test_unknown_layer(store):
    with pytest.raises(LayerNotFound, match="no layer named 'outlets'"):
        store.read("outlets")
    with pytest.raises(LayerNotFound):
        store.delete("outlets")
    assert isinstance(LayerNotFound("x", "y"), StoreError)


@pytest.mark.parametrize("name", [
    "Outlets", "1outlets", "out-lets", "outlets; DROP TABLE x", "out lets", "", "x" * 61,
    "gpkg_contents", "rtree_outlets_geom", "gisgrid_layers", "spatial_ref_sys", "outlets\"",
    "сеть", "网点",
])
def test_layer_names_are_validated(store, name):
    with pytest.raises(StoreError, match="layer name"):
        store.write(name, outlets())
    with pytest.raises(StoreError, match="layer name"):
        store.read(name)
    with pytest.raises(StoreError, match="layer name"):
        store.delete(name)
    assert store.layers() == []


def test_free_form_layers_and_longest_name(store):
    name = "a" + "b" * 59
    frame = gpd.GeoDataFrame({"Label": ["甲", "乙"], "score": [0.5, 1.5], "名称": ["x", "y"]},
                             geometry=[Point(1, 2), Point(3, 4)], crs=CRS)
    store.write(name, frame)
    store.write("my_layer__v2", frame)
    assert_same(store.read(name), frame)
    assert_same(store.read("my_layer__v2", where={"名称": "y"}), frame.iloc[[1]])
    assert [i.name for i in store.layers()] == [name, "my_layer__v2"]


def test_chinese_and_awkward_text_round_trips(store):
    texts = ["秭归县茅坪镇", "湖北省宜昌市秭归县归州镇香溪村 3 组", "😀 emoji", "", "tab\there",
             "line\nbreak\r\n", "quote ' and \" and \\ backslash", "NULL", "\\N", "a,b;c",
             "ＡＢＣ全角", "𠀀 (CJK ext B)"]
    frame = pd.DataFrame({"id": [f"E-{i}" for i in range(len(texts))], "name": texts,
                          "registered_type": ["有限责任公司"] * len(texts)})
    frame.loc[len(frame)] = ["E-x", None, "个体工商户"]
    store.write("entity_names", frame)
    got = store.read("entity_names")
    assert_same(got, frame)
    assert got["name"].isna().tolist() == [False] * len(texts) + [True]  # '' is not NULL
    assert store.read("entity_names", where={"name": ""})["id"].tolist() == ["E-3"]
    assert store.read("entity_names", where={"name": "秭归县茅坪镇"})["id"].tolist() == ["E-0"]


def test_types_round_trip(store):
    frame = gpd.GeoDataFrame(
        {
            "i": np.array([0, -5, 2**53 + 1, 2**62], dtype="int64"),
            "i_null": pd.array([1, None, -(2**62) - 1, None], dtype="Int64"),
            "f": [0.1 + 0.2, 1e-300, -2.5e17, np.nan],
            "b": [True, False, True, False],
            "b_null": pd.array([True, None, False, None], dtype="boolean"),
            "d": [dt.date(2024, 2, 29), dt.date(1970, 1, 1), None, dt.date(2000, 12, 31)],
            "t": pd.to_datetime(["2024-06-01T08:30:00Z", "2000-01-01T00:00:00.123Z", None,
                                 "1999-12-31T23:59:59Z"], format="ISO8601"
                                ).astype("datetime64[us, UTC]"),
            "s": pd.Series(["a", None, "", "长"], dtype="str"),
        },
        geometry=[Point(0, 0), Point(1e-9, -1e-9), Point(179.999999, -89.5),
                  Point(LON, LAT)],
        crs=CRS,
    )
    store.write("kinds", frame)
    got = store.read("kinds")
    assert_same(got, frame)
    assert got["d"].tolist()[0] == dt.date(2024, 2, 29)
    assert store.read("kinds", where={"d": dt.date(1970, 1, 1)})["i"].tolist() == [-5]
    assert store.read("kinds", where={"b": True})["i"].tolist() == [0, 2**53 + 1]


def test_object_columns_are_typed_by_their_values(store):
    frame = pd.DataFrame({
        "big": pd.Series([2**62 + 1, None, 7], dtype=object),
        "flag": pd.Series([True, None, False], dtype=object),
        "day": pd.Series([dt.date(2024, 1, 2), None, dt.date(2024, 1, 3)], dtype=object),
        "text": pd.Series(["甲", None, "丙"], dtype=object),
    })
    store.write("loose", frame)
    expected = pd.DataFrame({
        "big": pd.array([2**62 + 1, None, 7], dtype="Int64"),
        "flag": pd.array([True, None, False], dtype="boolean"),
        "day": frame["day"],
        "text": pd.Series(["甲", None, "丙"], dtype="str"),
    })
    assert_same(store.read("loose"), expected)


def test_schema_types_are_applied(store):
    """A known layer's fields take the schema's types: staff.trained is a date even when
    the frame holds datetimes or ISO text; events.reported_at a datetime."""
    staff = gpd.GeoDataFrame(
        {"id": ["S1", "S2", "S3"], "institution": ["NSH"] * 3, "name": ["张三", "李四", "王五"],
         "role": ["worker", "manager", "part-time"],
         "trained": pd.to_datetime(["2024-03-01", None, "2023-11-15"])},
        geometry=[Point(LON, LAT), None, Point(LON, LAT + 0.01)],  # staff may lack a place
        crs=CRS,
    )
    store.write("staff", staff)
    got = store.read("staff")
    assert got["trained"].tolist() == [dt.date(2024, 3, 1), None, dt.date(2023, 11, 15)]
    assert got.geometry.isna().tolist() == [False, True, False]
    store.write("staff__text", staff.assign(trained=["2024-03-01", None, "2023-11-15"]))
    assert store.read("staff__text")["trained"].tolist() == got["trained"].tolist()

    beijing = dt.timezone(dt.timedelta(hours=8))
    events = gpd.GeoDataFrame(
        {"id": ["EV1"], "kind": ["general"], "reporter": ["S1"], "state": ["registered"],
         "reported_at": [dt.datetime(2024, 6, 1, 16, 30, tzinfo=beijing)]},
        geometry=[Point(LON, LAT)], crs=CRS,
    )
    store.write("events", events)
    stamp = store.read("events")["reported_at"][0]
    assert stamp == pd.Timestamp("2024-06-01T08:30:00Z")
    assert str(store.read("events")["reported_at"].dtype) == "datetime64[us, UTC]"


def test_frames_that_cannot_be_stored(store):
    store.write("outlets", outlets())
    with pytest.raises(StoreError, match="note"):
        store.write("outlets", outlets().assign(note=[{"a": 1}, None, None, None]))
    with pytest.raises(StoreError, match="households"):
        store.write("households", households(3).set_geometry(
            gpd.GeoSeries([None, Point(0, 0), None], crs=CRS)))
    with pytest.raises(StoreError, match="EPSG:3857"):
        store.write("outlets", outlets().to_crs(3857))
    with pytest.raises(StoreError, match="reserved"):
        store.write("outlets", outlets().assign(fid=1))
    with pytest.raises(StoreError, match="twice"):
        store.write("outlets", outlets().assign(Name="x"))
    with pytest.raises(StoreError, match="schema says int"):
        store.write("grids", grids().assign(level=["one", "one", "two"]))
    with pytest.raises(StoreError, match="whole numbers"):
        store.write("grids", grids().assign(level=[1.5, 1.0, 2.0]))
    assert_same(store.read("outlets"), outlets())  # untouched by the failed writes


def test_frame_without_crs_is_taken_as_storage_crs(store):
    frame = outlets().set_crs(None, allow_override=True)
    store.write("outlets", frame)
    assert store.read("outlets").crs == CRS


def test_empty_layers(store):
    empty = outlets().iloc[0:0]
    store.write("outlets", empty)
    assert store.layers() == [LayerInfo("outlets", 0, "Point", None)]
    got = store.read("outlets")
    assert isinstance(got, gpd.GeoDataFrame) and len(got) == 0
    assert list(got.columns) == list(empty.columns)
    assert got.crs == CRS
    store.write("institutions", institutions().iloc[0:0])
    got = store.read("institutions")
    assert len(got) == 0 and list(got.columns) == list(institutions().columns)
    assert len(store.read("outlets", bbox=(0, 0, 180, 90))) == 0


def test_polygons_multipolygons_and_mixed(store):
    store.write("grids", grids())
    assert_same(store.read("grids"), grids())
    territory = gpd.GeoDataFrame(
        {"code": ["420527"], "name": ["秭归县"], "level": ["county"]},
        geometry=[MultiPolygon([box(LON, LAT, LON + 1, LAT + 1), l_shape(LON + 2, LAT)])],
        crs=CRS)
    store.write("territory", territory)
    assert_same(store.read("territory"), territory)
    # Polygon and MultiPolygon mixed: stored as MultiPolygon, the same shapes.
    units = units_mixed()
    store.write("units", units)
    got = store.read("units")
    assert got.geom_type.tolist() == ["MultiPolygon", "MultiPolygon"]
    assert got.geom_equals(units.geometry).all()
    assert {i.name: i.geometry_type for i in store.layers()} == {
        "grids": "Polygon", "territory": "MultiPolygon", "units": "MultiPolygon"}
    assert store.read("units", bbox=(LON + 0.25, LAT, LON + 0.26, LAT + 0.01))[
        "code"].tolist() == ["420527100002"]


def test_points_and_polygons_in_one_free_form_layer(store):
    frame = gpd.GeoDataFrame({"what": ["point", "area", "nothing", "empty"]},
                             geometry=[Point(LON, LAT), box(LON, LAT, LON + 1, LAT + 1), None,
                                       Polygon()],
                             crs=CRS)
    store.write("sketch", frame)
    assert_same(store.read("sketch"), frame)
    assert store.layers()[0].geometry_type == "Geometry"


def test_large_layer(store):
    frame = households(10_000)
    store.write("households", frame)
    assert store.layers() == [LayerInfo("households", 10_000, "Point",
                                        pytest.approx(tuple(frame.total_bounds)))]
    assert_same(store.read("households"), frame)
    window = (LON - 0.05, LAT - 0.05, LON + 0.05, LAT + 0.05)
    got = store.read("households", bbox=window, columns=["id"])
    expected = frame.index[frame.intersects(box(*window))]
    assert got["id"].tolist() == expected.tolist()
    got = store.read("households", where={"unit": "420527100007", "id": list(range(0, 10_000, 3))})
    expected = frame[(frame["unit"] == "420527100007") & (frame["id"] % 3 == 0)]
    assert got["id"].tolist() == expected["id"].tolist()


def test_data_outlives_the_store_object(store, open_again):
    store.write("outlets", outlets())
    store.close()
    again = open_again()
    assert_same(again.read("outlets"), outlets())


def test_open_store_picks_the_implementation(store_location):
    address = (str(store_location.path) if store_location.kind == "gpkg"
               else store_location.url)
    opened = open_store(address)
    try:
        assert isinstance(opened, GeoPackageStore if store_location.kind == "gpkg"
                          else PostGISStore)
        assert opened.layers() is not None
    finally:
        opened.close()


# --- GeoPackage: the file stays one GDAL and QGIS open and edit -------------------------

needs_gdal = pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="gdal-bin missing")


def _ogr(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_gdal
def test_gpkg_opens_in_gdal_with_its_spatial_index(gpkg_path):
    store = GeoPackageStore(gpkg_path)
    store.write("households", households(5_000))
    store.write("grids", grids())
    store.write("institutions", institutions())
    info = _ogr("ogrinfo", "-so", str(gpkg_path), "households")
    assert "Geometry: Point" in info and "Feature Count: 5000" in info
    assert "EPSG\",4326" in info or "ID[\"EPSG\",4326]" in info
    for layer in ("households", "grids"):
        out = _ogr("ogrinfo", str(gpkg_path), "-sql",
                   f"SELECT HasSpatialIndex('{layer}', 'geom')")
        assert "HasSpatialIndex" in out and "(Integer) = 1" in out
    meta = pyogrio.read_info(gpkg_path, layer="grids")
    assert meta["features"] == 3 and meta["geometry_type"] == "Polygon"
    assert meta["crs"] == "EPSG:4326"
    assert pyogrio.read_info(gpkg_path, layer="institutions")["geometry_type"] is None
    layers = {name for name, _ in pyogrio.list_layers(gpkg_path)}
    assert layers == {"households", "grids", "institutions"}
    with sqlite3.connect(gpkg_path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 10300
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for layer in ("households", "grids"):
            assert conn.execute(f"SELECT rtreecheck('rtree_{layer}_geom')").fetchone()[0] == "ok"
        srs = {row[0] for row in conn.execute("SELECT srs_id FROM gpkg_spatial_ref_sys")}
        assert {-1, 0, 4326} <= srs
    # GDAL's own spatial filter (through our R-tree) agrees with the store.
    window = (LON - 0.05, LAT - 0.05, LON + 0.05, LAT + 0.05)
    via_gdal = pyogrio.read_dataframe(gpkg_path, layer="households", bbox=window)
    assert sorted(via_gdal["id"]) == store.read("households", bbox=window)["id"].tolist()


@needs_gdal
def test_gdal_can_edit_our_gpkg(gpkg_path, tmp_path):
    store = GeoPackageStore(gpkg_path)
    store.write("households", households(2_000))
    extra = households(10, seed=99).assign(id=np.arange(5_000, 5_010))
    extra.to_file(tmp_path / "extra.gpkg", layer="households", engine="pyogrio")
    # Appending fires our R-tree and feature-count triggers inside GDAL.
    _ogr("ogr2ogr", "-update", "-append", str(gpkg_path), str(tmp_path / "extra.gpkg"),
         "households", "-nln", "households")
    assert {i.name: i.count for i in store.layers()} == {"households": 2_010}
    window = tuple(extra.total_bounds)
    found = set(store.read("households", bbox=window)["id"])
    assert set(range(5_000, 5_010)) <= found
    # Deleting fires the R-tree delete trigger: SQLite reorganises our packed tree.
    _ogr("ogrinfo", str(gpkg_path), "-sql", "DELETE FROM households WHERE id < 1500")
    assert {i.name: i.count for i in store.layers()} == {"households": 510}
    assert set(store.read("households", bbox=(0, 0, 180, 90))["id"]) == (
        set(range(1_500, 2_000)) | set(range(5_000, 5_010)))
    with sqlite3.connect(gpkg_path) as conn:
        assert conn.execute("SELECT rtreecheck('rtree_households_geom')").fetchone()[0] == "ok"
    # A layer GDAL creates in our file is one of ours too, and ours still replace it.
    _ogr("ogr2ogr", "-update", str(gpkg_path), str(tmp_path / "extra.gpkg"), "households",
         "-nln", "from_gdal")
    assert len(store.read("from_gdal")) == 10
    store.write("from_gdal", outlets())
    store.write("households", households(100))
    assert {i.name: i.count for i in store.layers()} == {"from_gdal": 4, "households": 100}
    _ogr("ogrinfo", "-so", str(gpkg_path), "from_gdal")


@pytest.mark.parametrize("rows", [1, 51, 52, 2_603])
def test_gpkg_spatial_index_is_a_valid_sqlite_rtree(gpkg_path, rows):
    """The R-tree is packed by the store (not inserted entry by entry): SQLite's own
    checker accepts it at each depth, and it finds what a scan finds."""
    rng = np.random.default_rng(rows)
    x, y = rng.uniform(-180, 179, rows), rng.uniform(-90, 89, rows)
    frame = gpd.GeoDataFrame({"k": np.arange(rows)},
                             geometry=shapely.box(x, y, x + rng.exponential(0.3, rows),
                                                  y + rng.exponential(0.3, rows)), crs=CRS)
    store = GeoPackageStore(gpkg_path)
    store.write("boxes", frame)
    with sqlite3.connect(gpkg_path) as conn:
        assert conn.execute("SELECT rtreecheck('rtree_boxes_geom')").fetchone()[0] == "ok"
    for window in [(-10, -10, 10, 10), (100, 0, 140, 60), (-180, -90, 180, 90)]:
        expected = frame.index[frame.intersects(box(*window))].tolist()
        assert store.read("boxes", bbox=window)["k"].tolist() == expected


def test_gpkg_refuses_other_files(tmp_path):
    other = tmp_path / "other.gpkg"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a GeoPackage"):
        GeoPackageStore(other)
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="garbage.gpkg"):
        GeoPackageStore(garbage)
    with pytest.raises(StoreError, match="does not exist"):
        GeoPackageStore(tmp_path / "missing" / "x.gpkg")


# --- PostGIS: connection, migrations, indexes, catalog -------------------------------

def test_postgis_connection_failure_names_the_url_not_the_password():
    with pytest.raises(StoreError) as caught:
        PostGISStore("postgresql://gisgrid:s3cret@127.0.0.1:1/gisgrid")
    message = str(caught.value)
    assert "postgresql://gisgrid@127.0.0.1:1/gisgrid" in message
    assert "s3cret" not in message
    assert "cannot connect" in message and "refused" in message.lower()


def test_postgis_migrations_are_recorded_and_rerunnable(postgis_url):
    schema = "t_migrations"
    store = PostGISStore(postgis_url, schema=schema)
    try:
        store.write("outlets", outlets())
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            assert migrate(conn, schema) == []  # nothing left to do, nothing lost
            versions = conn.execute(sql.SQL("SELECT version FROM {}").format(
                sql.Identifier(schema, "gisgrid_migrations"))).fetchall()
            assert versions == [(m.version,) for m in MIGRATIONS]
        again = PostGISStore(postgis_url, schema=schema)
        assert_same(again.read("outlets"), outlets())
        again.close()
    finally:
        store.close()
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def schema_store(url: str, schema: str) -> Iterator[PostGISStore]:
    """A PostGIS store in its own schema, dropped afterwards."""
    store = PostGISStore(url, schema=schema)
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _generation(conn: psycopg.Connection, schema: str, name: str) -> int | None:
    row = conn.execute(sql.SQL("SELECT generation FROM {} WHERE name = %s").format(
        sql.Identifier(schema, "gisgrid_layers")), [name]).fetchone()
    return None if row is None else row[0]


def test_postgis_generation_moves_with_every_change_by_anyone(postgis_url):
    seen = []
    with schema_store(postgis_url, "t_generation") as store:
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            def moved() -> int:
                now = _generation(conn, store.schema, "tasks")
                assert now is not None and now not in seen, (now, seen)
                seen.append(now)
                return now

            table = sql.Identifier(store.schema, "tasks")
            store.write("tasks", tasks())
            moved()
            store.append("tasks", tasks().assign(id=["T3", "T4"]))
            moved()
            store.update("tasks", "id", "T1", {"state": "done"}, expected_version=1)
            moved()
            store.read("tasks")
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
            assert _generation(conn, store.schema, "tasks") == seen[-1]  # reading changes nothing
            # Another client's SQL, statement by statement.
            conn.execute(sql.SQL("UPDATE {} SET state = 'late' WHERE id = 'T2'").format(table))
            moved()
            conn.execute(sql.SQL("DELETE FROM {} WHERE id = 'T4'").format(table))
            moved()
            with pytest.raises(psycopg.errors.DivisionByZero):
                with conn.transaction():
                    conn.execute(sql.SQL("DELETE FROM {}").format(table))
                    conn.execute("SELECT 1 / 0")
            assert _generation(conn, store.schema, "tasks") == seen[-1]  # rolled back: unmoved
            conn.execute(sql.SQL("TRUNCATE {}").format(table))
            moved()
            # Deleted and written again: a value never seen before.
            store.delete("tasks")
            assert _generation(conn, store.schema, "tasks") is None
            store.write("tasks", tasks())
            assert moved() > max(seen[:-1])


def test_postgis_migration_3_gives_existing_layers_a_generation(postgis_url):
    schema = "t_migration3"
    store = PostGISStore(postgis_url, schema=schema)
    try:
        store.write("outlets", outlets())
        store.close()
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            # Take the store back to what migration 2 left.
            conn.execute(sql.SQL("DROP TRIGGER gisgrid_touch ON {}").format(
                sql.Identifier(schema, "outlets")))
            conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN generation").format(
                sql.Identifier(schema, "gisgrid_layers")))
            conn.execute(sql.SQL("DROP SEQUENCE {}").format(
                sql.Identifier(schema, "gisgrid_generation")))
            conn.execute(sql.SQL("DELETE FROM {} WHERE version = 3").format(
                sql.Identifier(schema, "gisgrid_migrations")))
            assert migrate(conn, schema) == [3]
            before = _generation(conn, schema, "outlets")
            conn.execute(sql.SQL("UPDATE {} SET status = '营业'").format(
                sql.Identifier(schema, "outlets")))
            assert _generation(conn, schema, "outlets") > before
        again = PostGISStore(postgis_url, schema=schema)
        assert again.read("outlets")["status"].tolist() == ["营业"] * 4
        again.close()
    finally:
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_postgis_indexes_the_county_of_a_province_layer(postgis_url):
    """Province runs read every layer county by county: the county column is indexed,
    and a county's read uses the index (it survives the write's swap)."""
    frame = households(20_000).assign(county=lambda f: np.where(f["id"] % 20 == 0,
                                                                "990101", "990102"))
    with schema_store(postgis_url, "t_county_index") as store:
        store.write("households", frame)
        store.write("households", frame)  # replaced: the index is renamed with the table
        assert store.read("households", where={"county": "990101"})["id"].tolist() == \
            list(range(0, 20_000, 20))
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            indexes = dict(conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
                " AND tablename = 'households'", [store.schema]).fetchall())
            assert "(county)" in indexes["gisgrid_households_county"]
            query, params = store._select("households", False, ["id"], None,
                                          [("county", ["990101"])])
            plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, params))
            assert "gisgrid_households_county" in plan, plan


def test_postgis_stores_rows_along_the_map_but_reads_them_in_order(postgis_url):
    """Rows lie on disk along a space-filling curve (a bbox query reads few pages); the
    fids and every read keep the order the rows were written in."""
    frame = households(5_000)
    with schema_store(postgis_url, "t_spatial_order") as store:
        store.write("households", frame)
        store.append("households", households(1_000, seed=8).assign(
            id=np.arange(5_000, 6_000)))
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            on_disk = np.array(conn.execute(sql.SQL(
                "SELECT fid, ST_X(geom), ST_Y(geom) FROM {} ORDER BY ctid").format(
                sql.Identifier(store.schema, "households"))).fetchall())
        first = on_disk[on_disk[:, 0] <= 5_000]
        assert sorted(first[:, 0]) == list(range(1, 5_001))  # fids as written
        step_on_disk = np.hypot(*np.diff(first[:, 1:], axis=0).T).mean()
        by_fid = first[np.argsort(first[:, 0])]
        step_by_fid = np.hypot(*np.diff(by_fid[:, 1:], axis=0).T).mean()
        assert step_on_disk < step_by_fid / 10, (step_on_disk, step_by_fid)
        # The appended rows follow, ordered among themselves.
        assert (on_disk[-1_000:, 0] > 5_000).all()
        back = store.read("households")
        assert back["id"].tolist() == list(range(6_000))
        assert_same(back.iloc[:5_000], frame)


def test_postgis_tables_indexes_and_catalog(postgis_url):
    schema = "t_structure"
    store = PostGISStore(postgis_url, schema=schema)
    try:
        store.write("households", households(20_000))
        store.write("institutions", institutions())
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            cols = conn.execute(
                "SELECT type, srid FROM geometry_columns WHERE f_table_schema = %s"
                " AND f_table_name = 'households'", [schema]).fetchall()
            assert cols == [("POINT", 4326)]
            indexes = dict(conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
                " AND tablename = 'households'", [schema]).fetchall())
            assert "USING gist (geom)" in indexes["gisgrid_households_geom"]
            assert "UNIQUE INDEX" in indexes["gisgrid_households_key"]
            assert "(fid)" in indexes["gisgrid_households_fid"]
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])}
            assert tables == {"households", "institutions", "gisgrid_layers",
                              "gisgrid_migrations", "gisgrid_history", "gisgrid_jobs"}
            query, params = store._select(
                "households", True, ["id"], (LON, LAT, LON + 0.01, LAT + 0.01), [])
            plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + query, params))
            assert "gisgrid_households_geom" in plan
        # A table that is not a layer is never replaced.
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(
                sql.Identifier(schema, "someone_elses")))
        with pytest.raises(StoreError, match="not a layer"):
            store.write("someone_elses", outlets())
    finally:
        store.close()
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


# --- row by row: append and update under a version check ------------------------------

def test_append_adds_rows_and_creates_a_missing_layer(store):
    store.append("outlets", outlets().iloc[:1])
    store.append("outlets", outlets().iloc[1:])
    assert_same(store.read("outlets"), outlets())
    store.append("ledger", ledger().iloc[:2])
    store.append("ledger", ledger().iloc[2:])
    assert_same(store.read("ledger"), ledger())
    assert {i.name: i.count for i in store.layers()} == {"ledger": 3, "outlets": 4}
    info = next(i for i in store.layers() if i.name == "outlets")
    assert info.bbox == pytest.approx(tuple(outlets().total_bounds))
    store.append("outlets", outlets().iloc[:0])  # nothing to add: nothing changes
    assert len(store.read("outlets")) == 4


def test_appended_features_are_spatially_indexed(store, store_location):
    store.write("households", households(3_000))
    extra = households(500, seed=3)
    extra["id"] += 10_000
    extra.geometry = extra.geometry.translate(0.3, 0.3)  # partly outside the old extent
    store.append("households", extra)
    everything = pd.concat([households(3_000), extra], ignore_index=True)
    info = next(i for i in store.layers() if i.name == "households")
    assert info.count == 3_500
    assert info.bbox == pytest.approx(tuple(everything.total_bounds))
    for window in [(LON, LAT, LON + 0.3, LAT + 0.3), (LON + 0.2, LAT + 0.1, LON + 1, LAT + 1)]:
        expected = everything[everything.intersects(box(*window))]["id"].tolist()
        assert store.read("households", bbox=window)["id"].tolist() == expected
    if store_location.kind == "gpkg":
        with sqlite3.connect(store_location.path) as conn:
            assert conn.execute("SELECT rtreecheck('rtree_households_geom')").fetchone()[0] \
                == "ok"
            assert conn.execute("SELECT count(*) FROM rtree_households_geom").fetchone()[0] \
                == 3_500
        # GDAL's own spatial filter goes through the R-tree: it finds the appended rows.
        window = tuple(extra.total_bounds)
        via_gdal = pyogrio.read_dataframe(store_location.path, layer="households",
                                          bbox=window)
        assert set(extra["id"]) <= set(via_gdal["id"])
    # An empty layer takes its extent from the first rows appended.
    store.write("later", outlets().iloc[:0])
    store.append("later", outlets().iloc[:2])
    info = next(i for i in store.layers() if i.name == "later")
    assert info.count == 2 and info.bbox == pytest.approx(tuple(outlets().iloc[:2].total_bounds))


def test_append_fits_rows_to_the_stored_layer(store):
    readings = pd.DataFrame({"k": [1, 2], "v": [0.5, 1.5], "t": ["a", "b"],
                             "d": [dt.date(2026, 5, 1), dt.date(2026, 5, 2)]})
    store.write("readings", readings)
    # Missing columns stay null; values convert to the stored types (int → float).
    store.append("readings", pd.DataFrame({"k": [3], "v": [7]}))
    back = store.read("readings")
    assert back["v"].dtype == "float64" and back["v"].tolist() == [0.5, 1.5, 7.0]
    assert back["t"].isna().tolist() == [False, False, True] and back["d"].iloc[2] is None
    for frame, message in [
        (pd.DataFrame({"k": [4], "extra": ["x"]}), "appending never adds columns"),
        (pd.DataFrame({"k": [4], "v": ["abc"]}), "stored layer readings says float"),
        (gpd.GeoDataFrame({"k": [4]}, geometry=[Point(LON, LAT)], crs=CRS),
         "has no geometry"),
    ]:
        with pytest.raises(StoreError, match=message):
            store.append("readings", frame)
    assert_same(store.read("readings"), back)
    # Geometry must be of the layer's type; single parts join a multi-part layer.
    store.write("villages", units_mixed())
    store.append("villages", units_mixed().iloc[:1].assign(code="420527100003"))
    assert store.read("villages").geom_type.tolist() == ["MultiPolygon"] * 3
    with pytest.raises(StoreError, match="holds MultiPolygon, the frame Point"):
        store.append("villages", gpd.GeoDataFrame(
            {"code": ["420527100004"]}, geometry=[Point(LON, LAT)], crs=CRS))
    store.write("grids", grids())
    with pytest.raises(StoreError, match="holds Polygon, the frame MultiPolygon"):
        store.append("grids", units_mixed().iloc[1:][["geometry"]].assign(code="X"))
    # A duplicate key refuses the whole append.
    store.write("outlets", outlets())
    twice = pd.concat([outlets().iloc[3:].assign(id="O-new"), outlets().iloc[:1]])
    with pytest.raises(StoreError, match="cannot append to outlets"):
        store.append("outlets", twice)
    assert_same(store.read("outlets"), outlets())


def tasks() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"id": ["T1", "T2"], "state": ["open", "open"], "version": [1, 1],
         "due": pd.to_datetime(["2026-05-01T00:00Z", None], utc=True)},
        geometry=[Point(LON, LAT), Point(LON + 1, LAT + 1)], crs=CRS)


def test_update_checks_the_version(store):
    store.write("tasks", tasks())
    assert store.update("tasks", "id", "T1", {"state": "done", "due": "2026-05-02T08:00+08:00"},
                        expected_version=1) == 2
    back = store.read("tasks")
    assert back.loc[0, ["state", "version"]].tolist() == ["done", 2]
    assert back.loc[0, "due"] == pd.Timestamp("2026-05-02T00:00Z")
    assert back.loc[1, ["state", "version"]].tolist() == ["open", 1]
    with pytest.raises(ConflictError) as conflict:
        store.update("tasks", "id", "T1", {"state": "lost"}, expected_version=1)
    assert (conflict.value.expected, conflict.value.actual) == (1, 2)
    assert isinstance(conflict.value, StoreError)
    assert store.update("tasks", "id", "T1", {"due": None}, expected_version=2) == 3
    assert pd.isna(store.read("tasks").loc[0, "due"])
    assert store.read("tasks").loc[0, "state"] == "done"  # the stale change never landed
    # Updating attributes keeps the feature where the index finds it.
    assert store.read("tasks", bbox=(LON - 0.1, LAT - 0.1, LON + 0.1, LAT + 0.1)
                      )["id"].tolist() == ["T1"]
    store.write("outlets", outlets())
    for args, changes, error, message in [
        (("tasks", "id", "T9"), {"state": "x"}, StoreError, "no row with id='T9'"),
        (("nothing", "id", "T1"), {"state": "x"}, LayerNotFound, "no layer named"),
        (("tasks", "id", "T2"), {"version": 5}, StoreError, "set by the store"),
        (("tasks", "id", "T2"), {"id": "T3"}, StoreError, "cannot change here"),
        (("tasks", "id", "T2"), {"colour": "red"}, StoreError, "no column"),
        (("tasks", "id", "T2"), {"due": "soon"}, StoreError, "tasks.due"),
        (("outlets", "id", "O-1"), {"name": "x"}, StoreError, "no 'version' column"),
    ]:
        with pytest.raises(error, match=message):
            store.update(*args, changes, expected_version=1)
    store.write("doubled", tasks().assign(id="T"))  # a free-form layer, key not unique
    with pytest.raises(StoreError, match="2 rows with id='T'"):
        store.update("doubled", "id", "T", {"state": "x"}, expected_version=1)
    assert store.read("doubled")["state"].tolist() == ["open", "open"]
    assert store.read("tasks")["version"].tolist() == [3, 1]


def test_update_and_its_append_are_one_transaction(store):
    store.write("tasks", tasks())
    log = pd.DataFrame({"id": ["T1/2"], "task": ["T1"], "note": ["started"]})
    assert store.update("tasks", "id", "T1", {"state": "doing"}, expected_version=1,
                        append=("task_log", log)) == 2
    assert store.read("task_log")["id"].tolist() == ["T1/2"]
    # The append fails (no such column): the update is undone with it.
    with pytest.raises(StoreError, match="appending never adds columns"):
        store.update("tasks", "id", "T1", {"state": "done"}, expected_version=2,
                     append=("task_log", log.assign(id="T1/3", extra=1)))
    assert store.read("tasks").loc[0, ["state", "version"]].tolist() == ["doing", 2]
    assert len(store.read("task_log")) == 1
    # A conflict appends nothing.
    with pytest.raises(ConflictError):
        store.update("tasks", "id", "T1", {"state": "done"}, expected_version=1,
                     append=("task_log", log.assign(id="T1/x")))
    assert store.read("task_log")["id"].tolist() == ["T1/2"]
    # A duplicate key in the appended log undoes the update (event_log's key is id).
    store.write("event_log", pd.DataFrame({
        "id": ["T1/3"], "event": ["T1"], "version": [3], "from_state": ["reported"],
        "to_state": ["accepted"], "action": ["accept"], "actor": ["w"],
        "at": pd.to_datetime(["2026-05-01T00:00Z"], utc=True), "note": [None]}))
    with pytest.raises(StoreError):
        store.update("tasks", "id", "T1", {"state": "done"}, expected_version=2,
                     append=("event_log", store.read("event_log")))
    assert store.read("tasks").loc[0, "version"] == 2
    assert len(store.read("event_log")) == 1


# --- read-modify-write ----------------------------------------------------------------

def test_modify_gives_the_current_layer_and_replaces_it(store):
    seen = []

    def add_one(current):
        seen.append(None if current is None else len(current))
        extra = outlets().iloc[[0]].assign(id="O-NEW", name="新网点")
        return extra if current is None else pd.concat([current, extra], ignore_index=True)

    store.modify("outlets", add_one)  # no layer yet: the change gets None
    store.write("outlets", outlets())
    store.modify("outlets", add_one)
    assert seen == [None, len(outlets())]
    got = store.read("outlets")
    assert len(got) == len(outlets()) + 1 and got["id"].iloc[-1] == "O-NEW"


def test_a_failed_modify_leaves_the_layer_as_it_was(store):
    store.write("outlets", outlets())

    def fails(current):
        raise RuntimeError("the change itself fails")

    with pytest.raises(RuntimeError):
        store.modify("outlets", fails)
    assert_same(store.read("outlets"), outlets())
    with pytest.raises((InputError, StoreError)):  # a frame the store cannot take
        store.modify("outlets", lambda current: current.set_crs(None, allow_override=True)
                     .drop(columns="geometry").assign(geometry=1))
    assert_same(store.read("outlets"), outlets())


def test_concurrent_modifies_lose_no_change(store, open_again):
    """Two writers (each its own store, as two server processes would have), each adding
    its rows one modify at a time, slowly: every row of both is there at the end. Read
    and write done apart, the later writer would overwrite the other's row each time."""
    store.write("outlets", outlets().iloc[:1])
    errors = []

    def writer(tag: str) -> None:
        mine = open_again()
        try:
            for i in range(4):
                def add(current, i=i):
                    time.sleep(0.05)  # both read before either writes, unless locked
                    row = current.iloc[[0]].assign(id=f"{tag}-{i}")
                    return pd.concat([current, row], ignore_index=True)
                mine.modify("outlets", add)
        except Exception as exc:  # reported below, with the thread's name
            errors.append((tag, exc))

    threads = [threading.Thread(target=writer, args=(tag,)) for tag in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    ids = sorted(store.read("outlets")["id"])
    assert ids == sorted([outlets()["id"].iloc[0], *(f"{t}-{i}" for t in "AB"
                                                      for i in range(4))])
