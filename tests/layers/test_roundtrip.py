"""Round trips (issue 15): every layer of the sample store, exported in every format,
imports back unchanged — CSV with English or Chinese headers, XLSX both ways, GeoJSON,
GeoPackage and zipped Shapefile. A format that cannot hold a layer (polygons in CSV or
XLSX, a table in a Shapefile) refuses the export with a message, and that is tested too.

Real files and a real GeoPackage store: the export goes through ``export_layer``, the
import through ``import_file`` (mode replace, into a copy of the same store, so every
reference, the territory and the grids are there), and the layer read back is compared
with the original value by value and geometry by geometry (exactly, up to ring order).
"""

from __future__ import annotations

import datetime as dt
import shutil
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis_grid.errors import InputError
from gis_grid.model import LAYERS, schema_for
from gis_grid.naming import grid_layer
from layers.files import shapefile_names
from layers.gpkg import GeoPackageStore
from layers.synthetic import build_sample, sample_grids
from layers.synthetic.ledger import grid_ledger
from layers.transfer import export_layer, import_file

HOUSEHOLDS = 3_000
BANK = "NSH"
#: (file suffix, headers) of each export.
FORMATS = [(".csv", "en"), (".csv", "zh"), (".xlsx", "zh"), (".xlsx", "en"),
           (".geojson", None), (".gpkg", None), (".zip", None)]
LAYER_NAMES = ("territory", "townships", "units", "households", "institutions", "outlets",
               "devices", "staff", grid_layer(BANK), "ledger", "entities")


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    """The sample county with NSH's grids and the ledger per finest grid, in a GeoPackage."""
    layers = build_sample("420527", households=HOUSEHOLDS)
    grids = sample_grids(layers)
    grids["institution"] = BANK
    layers[grid_layer(BANK)] = grids
    layers["ledger"] = grid_ledger({BANK: grids})
    path = tmp_path_factory.mktemp("roundtrip") / "sample.gpkg"
    with GeoPackageStore(path) as store:
        for name in LAYER_NAMES:
            store.write(name, layers[name])
        originals = {name: store.read(name) for name in LAYER_NAMES}
    return path, originals


def _cells(values: pd.Series) -> list:
    """Values as plain Python, missing as None, dates as ISO text."""
    out = []
    for v in values.astype(object).tolist():
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            out.append(None)
        elif isinstance(v, (pd.Timestamp, dt.datetime, dt.date)):
            out.append(v.isoformat())
        elif isinstance(v, (np.integer,)):
            out.append(int(v))
        elif isinstance(v, (np.floating,)):
            out.append(float(v))
        else:
            out.append(v)
    return out


def _shape(values) -> np.ndarray:
    """Geometries up to ring orientation and start (RFC 7946 and Shapefile each fix an
    orientation), a one-part MultiPolygon as its Polygon (a Shapefile cannot tell them
    apart)."""
    geoms = shapely.remove_repeated_points(np.asarray(values, dtype=object), 0.0)
    multi = shapely.get_type_id(geoms) == shapely.GeometryType.MULTIPOLYGON
    single = multi & (shapely.get_num_geometries(geoms) == 1)
    geoms = geoms.copy()
    geoms[single] = shapely.get_geometry(geoms[single], 0)
    return shapely.normalize(geoms)


def assert_same_layer(back: pd.DataFrame, original: pd.DataFrame, name: str,
                      suffix: str) -> None:
    assert len(back) == len(original), name
    key = schema_for(name).key or list(schema_for(name).extra.get("unique", ()))
    keys = [key] if isinstance(key, str) else key
    back = back.sort_values(keys, kind="stable").reset_index(drop=True)
    original = original.sort_values(keys, kind="stable").reset_index(drop=True)
    if suffix == ".zip":
        # dBASE names hold 10 bytes: the schema's fields come back under their own names
        # (import_file), other columns keep the shortened name the export warned of.
        extra = [c for c in original.columns if c not in schema_for(name).field_names]
        original = original.rename(columns=shapefile_names(extra))
    columns = [c for c in original.columns if c != "geometry"]
    assert sorted(c for c in back.columns if c != "geometry") == sorted(columns), name
    for column in columns:
        assert _cells(back[column]) == _cells(original[column]), (name, column)
    if isinstance(original, gpd.GeoDataFrame):
        a = _shape(back.geometry.values)
        b = _shape(original.geometry.values)
        same = shapely.equals_exact(a, b, tolerance=0.0) | (
            shapely.is_missing(a) & shapely.is_missing(b))
        assert same.all(), (name, np.flatnonzero(~same)[:5])


def _holds(name: str, suffix: str) -> bool:
    schema = LAYERS[name.split("__")[0]]
    if suffix in (".csv", ".xlsx"):
        return not schema.spatial or schema.geometry == ("Point",)
    if suffix == ".zip":
        return schema.spatial
    return True


@pytest.mark.parametrize("suffix, headers", FORMATS,
                         ids=[f"{s[1:]}-{h}" if h else s[1:] for s, h in FORMATS])
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_export_imports_back_unchanged(sample_store, tmp_path, name, suffix, headers):
    path, originals = sample_store
    copy = tmp_path / "copy.gpkg"
    shutil.copy(path, copy)
    target = tmp_path / f"{name}{suffix}"
    with GeoPackageStore(copy) as store:
        if not _holds(name, suffix):
            with pytest.raises(InputError, match="holds points only|cannot be a Shapefile"):
                export_layer(store, name, target, headers=headers)
            assert not target.exists()
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Shapefile's shortened names
            written = export_layer(store, name, target, headers=headers)
        assert written == len(originals[name])
        if headers == "zh":
            text = target.read_bytes()[:2000].decode("utf-8-sig", errors="ignore") \
                if suffix == ".csv" else ""
            if suffix == ".csv" and name == "outlets":
                assert text.startswith("编号,机构,网点层级,网点名称")
        report = import_file(store, target, name, mode="replace")
        assert report.count == len(originals[name])
        # Unchanged, as the change log sees it too: nothing added, changed or removed.
        change = report.change
        assert (len(change.added), len(change.changed), len(change.removed)) == (0, 0, 0)
        assert_same_layer(store.read(name), originals[name], name, suffix)


def test_the_products_own_chinese_headers_are_column_names(sample_store, tmp_path):
    """主体编号/名称/…/经度/纬度, as the product writes them for people, and a column
    name in other capitals, import as the fields they title."""
    path, originals = sample_store
    copy = tmp_path / "copy.gpkg"
    shutil.copy(path, copy)
    file = tmp_path / "市场主体.csv"
    file.write_text("主体编号,名称,登记类型,地址,UNIT,经度,纬度\n"
                    "E-9001,秭归某某理财咨询有限公司,有限责任公司,茅坪镇,,110.98,30.83\n",
                    encoding="gbk")
    with GeoPackageStore(copy) as store:
        report = import_file(store, file, "entities", mode="upsert")
        assert report.count == 1
        back = store.read("entities", where={"id": "E-9001"})
    assert back["name"].tolist() == ["秭归某某理财咨询有限公司"]
    assert back["registered_type"].tolist() == ["有限责任公司"]
    assert (back.geometry.x.tolist(), back.geometry.y.tolist()) == ([110.98], [30.83])
    assert len(originals["entities"]) + 1 == report.change.rows_after


def test_a_missing_column_names_itself_its_title_and_the_closest_header(sample_store,
                                                                        tmp_path):
    path, _ = sample_store
    file = tmp_path / "outlets.csv"
    file.write_text("id,institution,teir,name,lon,lat\n"
                    "O-1,NSH,助农点,甲,110.98,30.83\n", encoding="utf-8")
    with GeoPackageStore(path) as store, pytest.raises(InputError) as refused:
        import_file(store, file, "outlets", mode="upsert")
    (problem,) = refused.value.problems
    assert str(problem) == (f"{file}: tier is required but the input has no 'tier' column "
                            "(or 网点层级) (closest header: 'teir')")
    assert "lon, lat" not in str(problem)  # the header is not repeated


def test_cli_export_format_names_the_file_and_imports_back(sample_store, tmp_path):
    from click.testing import CliRunner

    from gis_grid.cli import main

    path, originals = sample_store
    copy = tmp_path / "copy.gpkg"
    shutil.copy(path, copy)
    runner = CliRunner()
    result = runner.invoke(main, ["export", "outlets", str(tmp_path / "网点"), "--format",
                                  "xlsx", "--store", str(copy)])
    assert result.exit_code == 0, result.output
    sheet = tmp_path / "网点.xlsx"
    assert sheet.is_file() and f"to {sheet}" in result.output
    result = runner.invoke(main, ["import", str(sheet), "--layer", "outlets", "--mode",
                                  "replace", "--store", str(copy)])
    assert result.exit_code == 0, result.output
    assert "0 added, 0 changed, 0 removed" in result.output
