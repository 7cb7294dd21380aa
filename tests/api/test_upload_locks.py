"""Issue 18, M3 and M6: an upload carries only the layer's fields (an extra or duplicate
header is refused naming it, and no column is added to a shared layer), and a grid layer
that would break the well-field rule (a gap, an overlap) is refused with the problems as
`gisgrid validate` names them — 422, nothing stored, on both stores."""

from __future__ import annotations

import io
import zipfile

import geopandas as gpd
import pytest
import shapely

from layers.files import write_file
from layers.store import open_store
from tests.api.server import BANK_A, running_service


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    with running_service(request.param, request,
                         tmp_path_factory.mktemp(f"locks{request.param}")) as running:
        yield running


def upload(svc, layer, key, name, content, **params):
    return svc.post(f"/imports/{layer}", key, files={"file": (name, content)}, params=params)


def _own_outlets_csv(svc, extra: str) -> bytes:
    rows = svc.sample.layers["outlets"]
    rows = rows[rows["institution"] == BANK_A].head(3)
    frame = rows.drop(columns="geometry").assign(lon=rows.geometry.x, lat=rows.geometry.y)
    text = frame.to_csv(index=False)
    header, body = text.split("\n", 1)
    lines = [line + ",x" for line in body.strip().split("\n")]
    return (header + "," + extra + "\n" + "\n".join(lines) + "\n").encode("utf-8")


@pytest.mark.parametrize("extra", ['x");DROP TABLE staff;--', "institution", "secret_note"])
def test_an_upload_carries_only_the_layers_fields(svc, extra):
    with open_store(svc.store_url) as store:
        before = list(store.read("outlets", where={"id": []}).columns)
    answer = upload(svc, "outlets", svc.keys.admin_a, "outlets.csv",
                    _own_outlets_csv(svc, extra), mode="upsert")
    assert answer.status_code == 422, answer.text
    assert "not a field of outlets" in answer.text or "duplicate" in answer.text.lower()
    with open_store(svc.store_url) as store:
        assert list(store.read("outlets", where={"id": []}).columns) == before
        assert store.has("staff")


def _grids_file(frame: gpd.GeoDataFrame, tmp_path) -> bytes:
    path = tmp_path / "grids.geojson"
    write_file(frame, path)
    return path.read_bytes()


def test_a_grid_layer_with_a_gap_is_refused_with_the_problems(svc, tmp_path):
    grids = svc.sample.layers["grids__ycb"].copy()
    metric = grids.to_crs(grids.estimate_utm_crs())
    shrunk = metric.geometry.iloc[0].buffer(-200)  # a 200 m gap along its border
    metric.loc[metric.index[0], "geometry"] = shrunk
    with_gap = metric.to_crs(grids.crs)
    answer = upload(svc, "grids__ycb", svc.keys.admin_b, "grids.geojson",
                    _grids_file(with_gap, tmp_path), mode="replace")
    assert answer.status_code == 422, answer.text
    assert "gap" in answer.text and "well-field" in answer.text
    overlapping = grids.copy()
    overlapping.loc[overlapping.index[0], "geometry"] = shapely.buffer(
        grids.geometry.iloc[0], 0.01)
    answer = upload(svc, "grids__ycb", svc.keys.admin_b, "grids.geojson",
                    _grids_file(overlapping, tmp_path), mode="replace")
    assert answer.status_code == 422, answer.text  # was 503 StoreError on PostGIS
    assert "overlap" in answer.text
    with open_store(svc.store_url) as store:  # nothing stored
        kept = store.read("grids__ycb")
    assert len(kept) == len(grids)
    assert shapely.equals_exact(kept.geometry.iloc[0], grids.geometry.iloc[0], 1e-7) or \
        kept.geometry.iloc[0].symmetric_difference(grids.geometry.iloc[0]).area < 1e-12
    same = upload(svc, "grids__ycb", svc.keys.admin_b, "grids.geojson",
                  _grids_file(grids, tmp_path), mode="replace")
    assert same.status_code == 201, same.text


@pytest.fixture(scope="module")
def small(request, tmp_path_factory):
    """A service with small upload limits (rows, unpacked size), on GeoPackage."""
    from api.settings import Settings

    settings = Settings(max_upload_bytes=4 * 2**20, max_upload_rows=1500,
                        max_upload_unpacked_bytes=2 * 2**20, keys_ttl_s=0.5,
                        catalog_ttl_s=0.5)
    with running_service("gpkg", request, tmp_path_factory.mktemp("small"),
                         settings) as running:
        yield running


def _bad_outlets(n: int) -> bytes:
    rows = ["id,institution,tier,name,status,lon,lat"]
    rows += [f"X-{i},{BANK_A},不是层级,网点{i},营业,110.7,30.8" for i in range(n)]
    return ("\n".join(rows) + "\n").encode("utf-8")


def test_uploads_are_bounded_in_rows_and_unpacked_size(small):
    """M2: the limits are checked before the file is read, and named with their setting."""
    import zipfile

    answer = upload(small, "outlets", small.keys.admin_a, "outlets.csv", _bad_outlets(1600),
                    mode="upsert")
    assert answer.status_code == 413, answer.text
    assert "1,500 rows" in answer.text and "GISGRID_API_MAX_UPLOAD_ROWS" in answer.text
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("outlets.csv", b"x" * (3 * 2**20))  # 3 MB that packs to ~3 kB
    answer = upload(small, "outlets", small.keys.admin_a, "outlets.zip", packed.getvalue(),
                    mode="upsert")
    assert answer.status_code == 413, answer.text
    assert "GISGRID_API_MAX_UPLOAD_UNPACKED_MB" in answer.text


def test_workbooks_are_bounded_too(small, tmp_path):
    """M2 for .xlsx, which is a zip: its rows (counted in the sheet as it is unpacked)
    and its unpacked size were not checked before the workbook was read."""
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("outlets")
    sheet.append(["id", "institution", "tier", "name", "status", "lon", "lat"])
    for i in range(1600):
        sheet.append([f"{BANK_A}-X-{i}", BANK_A, "支行", f"网点{i}", "营业", 110.7, 30.8])
    book.save(tmp_path / "outlets.xlsx")
    answer = upload(small, "outlets", small.keys.admin_a, "outlets.xlsx",
                    (tmp_path / "outlets.xlsx").read_bytes(), mode="upsert")
    assert answer.status_code == 413, answer.text
    assert "1,500 rows" in answer.text and "GISGRID_API_MAX_UPLOAD_ROWS" in answer.text
    packed = io.BytesIO()  # a "workbook" holding 3 MB of padding that packs to ~3 kB
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b" " * (3 * 2**20))
    answer = upload(small, "outlets", small.keys.admin_a, "outlets.xlsx", packed.getvalue(),
                    mode="upsert")
    assert answer.status_code == 413, answer.text
    assert "GISGRID_API_MAX_UPLOAD_UNPACKED_MB" in answer.text
    broken = upload(small, "outlets", small.keys.admin_a, "outlets.xlsx", b"not a zip",
                    mode="upsert")
    assert broken.status_code == 422 and "workbook" in broken.text, broken.text


def test_a_long_problem_list_is_capped_after_its_summary(small):
    answer = upload(small, "outlets", small.keys.admin_a, "outlets.csv", _bad_outlets(1400),
                    mode="upsert")
    assert answer.status_code == 422, answer.text[:500]
    body = answer.json()
    assert body["total"] >= 1400 and body["truncated"] is True
    assert len(body["problems"]) == 1000
    assert any(s["field"] == "tier" and s["count"] == 1400 for s in body["summary"])
    assert len(answer.content) < 2 * 2**20
