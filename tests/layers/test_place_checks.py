"""Place checks (issue 15): points or shapes farther than --max-outside outside the
territory are refused by row, with the likely cause, on both stores, through the CLI and
the API upload; nothing is stored. Real stores, real files, a real HTTP server."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from gis_grid.cli import main
from layers.checks import Territory, place_problems
from layers.datum import wgs84_to_gcj02
from layers.store import open_store
from layers.synthetic import build_sample

HOUSEHOLDS = 20_000


@pytest.fixture(scope="module")
def zigui() -> dict:
    layers = build_sample("420527", households=HOUSEHOLDS)
    layers.pop("ledger")
    return layers


@pytest.fixture(params=["gpkg", "postgis"])
def store_url(request, tmp_path, zigui):
    if request.param == "gpkg":
        url = str(tmp_path / "place.gpkg")
    else:
        url = request.getfixturevalue("postgis_url")
    with open_store(url) as store:
        for name in ("territory", "townships", "units", "institutions", "outlets"):
            store.write(name, zigui[name])
    yield url
    if request.param == "postgis":
        with open_store(url) as store:
            for info in store.layers():
                store.delete(info.name)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def outlets_csv(frame: gpd.GeoDataFrame) -> pd.DataFrame:
    table = pd.DataFrame(frame.drop(columns="geometry"))
    return table.assign(lon=frame.geometry.x.to_numpy(), lat=frame.geometry.y.to_numpy())


def snapshot(url: str) -> tuple:
    with open_store(url) as store:
        outlets = store.read("outlets")
        return len(outlets), tuple(outlets["id"]), len(store.history("outlets"))


def test_outlet_at_zero_zero_in_hubei_is_refused_naming_its_row(store_url, zigui, tmp_path):
    table = outlets_csv(zigui["outlets"].iloc[:10])
    table.loc[3, ["lon", "lat"]] = 0.0                       # spreadsheet row 5
    path = tmp_path / "outlets.csv"
    table.to_csv(path, index=False)
    before = snapshot(store_url)
    result = run("import", str(path), "--layer", "outlets", "--mode", "upsert",
                 "--store", store_url)
    assert result.exit_code == 3, result.output
    assert "outlets.csv row 5: geometry lies" in result.output
    assert "outside the territory" in result.output and "(0, 0)" in result.output
    assert "nothing was stored" in result.output
    assert snapshot(store_url) == before
    # The same file with the row mended goes in.
    table.loc[3, ["lon", "lat"]] = outlets_csv(zigui["outlets"].iloc[3:4])[["lon", "lat"]
                                                                          ].to_numpy()[0]
    table.to_csv(path, index=False)
    result = run("import", str(path), "--layer", "outlets", "--mode", "upsert",
                 "--store", store_url)
    assert result.exit_code == 0, result.output


def test_causes_are_suggested_and_every_far_row_is_listed(store_url, zigui, tmp_path):
    table = outlets_csv(zigui["outlets"].iloc[:6])
    table.loc[1, ["lon", "lat"]] = [116.40, 39.90]          # Beijing: far, no known cause
    table.loc[2, ["lon", "lat"]] = table.loc[2, ["lat", "lon"]].to_numpy()  # swapped
    path = tmp_path / "far.csv"
    table.to_csv(path, index=False)
    problems = tmp_path / "problems.xlsx"
    result = run("import", str(path), "--layer", "outlets", "--mode", "upsert",
                 "--store", store_url, "--problems", str(problems))
    assert result.exit_code == 3, result.output
    assert "far.csv row 3: geometry lies" in result.output
    assert "row 4: lat" in result.output and "look swapped" in result.output
    import openpyxl

    book = openpyxl.load_workbook(problems)
    assert book.sheetnames == ["问题汇总", "问题明细"]
    listed = [row for row in book["问题明细"].values][1:]
    assert [row[1] for row in listed] == ["row 3", "row 4"]

    # Degrees labelled EPSG:3857: read as metres they land near (0, 0), far outside.
    metres = outlets_csv(zigui["outlets"].iloc[:3])
    path = tmp_path / "mercator.csv"
    metres.to_csv(path, index=False)
    result = run("import", str(path), "--layer", "outlets", "--mode", "upsert", "--crs",
                 "EPSG:3857", "--store", store_url)
    assert result.exit_code == 3, result.output
    assert result.output.count("were read as EPSG:3857") == 3


def test_max_outside_is_a_distance_and_gcj02_is_named(zigui):
    territory = shapely.box(110.5, 30.5, 111.0, 31.0)
    inside = np.array([110.9999, 30.8])                     # 10 m inside the east edge
    lon, lat = wgs84_to_gcj02(inside[:1], inside[1:])        # ~500 m east: outside
    frame = gpd.GeoDataFrame({"id": ["a", "b"]}, crs="EPSG:4326",
                             geometry=shapely.points([lon[0], 111.05], [lat[0], 30.8]))
    area = Territory(territory, "the test box")
    labels = ["row 2", "row 3"]
    loose = place_problems(frame, "outlets", area, source="f", labels=labels)
    assert loose == []                                        # both within 20 km
    tight = place_problems(frame, "outlets", area, source="f", labels=labels,
                           max_outside=100.0)
    assert [p.where for p in tight] == ["row 2", "row 3"]
    assert "GCJ-02" in tight[0].message and "--crs gcj02" in tight[0].message
    assert "4.8 km outside the test box" in tight[1].message
    assert "GCJ-02" not in tight[1].message


def test_without_a_territory_the_check_is_skipped_and_said(tmp_path, zigui):
    url = str(tmp_path / "bare.gpkg")
    with open_store(url) as store:
        store.write("institutions", zigui["institutions"])
    table = outlets_csv(zigui["outlets"].iloc[:2]).drop(columns="unit")
    table.loc[0, ["lon", "lat"]] = 0.0
    path = tmp_path / "outlets.csv"
    table.to_csv(path, index=False)
    result = CliRunner(mix_stderr=False).invoke(
        main, ["import", str(path), "--layer", "outlets", "--store", url]) \
        if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else \
        run("import", str(path), "--layer", "outlets", "--store", url)
    assert result.exit_code == 0, result.output
    assert "no territory layer in the store" in (result.output + (result.stderr or ""))


@pytest.mark.parametrize("kind", ["gpkg", "postgis"])
def test_api_upload_refuses_the_same_row(kind, request, tmp_path):
    from tests.api.server import running_service

    with running_service(kind, request, tmp_path) as svc:
        outlets = svc.sample.layers["outlets"]
        mine = outlets[outlets["institution"] == "NSH"].reset_index(drop=True)
        table = outlets_csv(mine.iloc[:5])
        table.loc[2, ["lon", "lat"]] = 0.0
        before = svc.get("/collections/outlets/items", svc.keys.admin_a,
                         params={"limit": 1}).json()["numberMatched"]
        r = svc.post("/imports/outlets", svc.keys.admin_a, params={"mode": "upsert"},
                     files={"file": ("网点.csv", table.to_csv(index=False).encode())})
        assert r.status_code == 422, r.text
        body = r.json()
        text = str(body)
        assert "row 4" in text and "outside the territory" in text and "(0, 0)" in text
        after = svc.get("/collections/outlets/items", svc.keys.admin_a,
                        params={"limit": 1}).json()["numberMatched"]
        assert after == before
        # The same rows, mended, as an Excel sheet with the Chinese titles: stored.
        from gis_grid.model import field_titles_zh

        fixed = outlets_csv(mine.iloc[:5]).rename(
            columns={**field_titles_zh("outlets"), "lon": "经度", "lat": "纬度"})
        sheet = tmp_path / "网点.xlsx"
        fixed.to_excel(sheet, index=False)
        r = svc.post("/imports/outlets", svc.keys.admin_a, params={"mode": "upsert"},
                     files={"file": ("网点.xlsx", sheet.read_bytes())})
        assert r.status_code == 201, r.text
        assert svc.get("/collections/outlets/items", svc.keys.admin_a,
                       params={"limit": 1}).json()["numberMatched"] == before


def test_report_counts_by_kind_first_and_the_file_lists_every_problem(store_url, zigui,
                                                                      tmp_path):
    table = outlets_csv(zigui["outlets"].iloc[:80])
    table.loc[0:59, "tier"] = "支行"                          # 60 bad tiers
    table.loc[60:69, "name"] = ""                            # 10 missing names
    table.loc[70:71, ["lon", "lat"]] = 0.0                   # 2 at (0, 0)
    path = tmp_path / "many.csv"
    table.to_csv(path, index=False)
    listing = tmp_path / "problems.csv"
    result = run("import", str(path), "--layer", "outlets", "--mode", "upsert",
                 "--store", store_url, "--problems", str(listing))
    assert result.exit_code == 3, result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if "72 problems" in line)
    assert lines[start + 1].strip() == "by kind (field: problem × how many):"
    assert lines[start + 2].strip() == "tier: is not one of 一级支行, 二级支行, 分理处, 助农点 × 60"
    assert lines[start + 3].strip() == "name: is empty but required × 10"
    assert lines[start + 4].strip().startswith("geometry: lies more than 20 km outside")
    assert lines[start + 4].strip().endswith("× 2")
    assert "… and 22 more (--problems FILE lists every one)" in result.output
    listed = pd.read_csv(listing, encoding="utf-8-sig", dtype=str)
    assert list(listed.columns) == ["文件", "位置", "字段", "问题类型", "说明"]
    assert len(listed) == 72 and listed["位置"].nunique() == 72
    assert listed["位置"].iloc[-1] == "row 73"
    assert snapshot(store_url)[0] == len(zigui["outlets"])
