"""Feature schemas (OGC API – Features Part 5) and geometry types the clients see: the
sample's staff start with 30 unlocated people, and QGIS 3.22 and GDAL 3.6 take a
layer's geometry type from its first page, so the default order puts located staff
first and the schema states Point."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.api.server import BANK_A, running_service


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    with running_service(request.param, request, tmp_path_factory.mktemp("sch")) as service:
        yield service


def schema(svc, name, key):
    r = svc.get(f"/collections/{name}/schema", key)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/schema+json")
    return r.json()


def test_grid_schema_has_roles_types_and_the_model_rules(svc):
    doc = schema(svc, "grids", svc.keys.regulator)
    assert doc["$schema"].startswith("https://json-schema.org/")
    assert doc["$id"].endswith("/collections/grids/schema")
    props = doc["properties"]
    assert props["code"]["x-ogc-role"] == "id" and props["code"]["type"] == "string"
    assert props["geometry"]["x-ogc-role"] == "primary-geometry"
    assert props["geometry"]["format"] == "geometry-polygon"
    assert props["level"]["type"] == "integer"
    assert set(props["kind"]["enum"]) == {"urban", "rural"}
    assert [n for n, p in props.items() if p.get("x-ogc-role") == "id"] == ["code"]
    # the link from the collection, and the conformance class
    links = svc.get("/collections/grids", svc.keys.regulator).json()["links"]
    assert any(link["rel"] == "http://www.opengis.net/def/rel/ogc/1.0/schema"
               and link["type"] == "application/schema+json" for link in links)
    assert "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/schemas" in \
        svc.get("/conformance").json()["conformsTo"]


def test_schema_shows_only_the_callers_columns(svc):
    regulator = schema(svc, "staff", svc.keys.regulator)["properties"]
    admin = schema(svc, "staff", svc.keys.admin_a)["properties"]
    assert "phone" not in regulator and "phone" in admin
    assert regulator["geometry"]["format"] == "geometry-point"
    assert regulator["geometry"].get("x-gisgrid-geometry-optional") is True
    assert regulator["trained"]["format"] == "date"
    # a table has no geometry; a layer the caller may not read has no schema
    ledger = schema(svc, "ledger", svc.keys.admin_a)["properties"]
    assert "geometry" not in ledger and ledger["fid"]["x-ogc-role"] == "id"
    assert svc.get("/collections/ledger/schema", svc.keys.regulator).status_code == 200
    assert svc.get("/collections/overlaps/schema", svc.keys.admin_a).status_code == 403
    assert svc.get("/collections/nothing/schema", svc.keys.admin_a).status_code == 404
    assert svc.get("/collections/grids/schema").status_code == 401


def test_located_staff_come_first_and_every_one_is_served_once(svc):
    staff = svc.sample.layers["staff"]
    assert staff.geometry.iloc[:10].isna().all()  # the case the clients trip over
    doc = svc.get("/collections/staff/items", svc.keys.regulator,
                  params={"limit": 10}).json()
    assert all(f["geometry"] is not None for f in doc["features"])
    everything = svc.get("/collections/staff/items", svc.keys.regulator,
                         params={"limit": 10000}).json()["features"]
    located = [f["geometry"] is not None for f in everything]
    assert located == sorted(located, reverse=True)  # located, then the rest
    assert sorted(f["id"] for f in everything) == sorted(staff["id"])
    # with a filter (the role's scope) too
    own = svc.get("/collections/staff/items", svc.keys.admin_a,
                  params={"limit": 10000}).json()["features"]
    located = [f["geometry"] is not None for f in own]
    assert located == sorted(located, reverse=True) and not all(located)
    assert {f["properties"]["institution"] for f in own} == {BANK_A}
    # an explicit sortby still rules
    by_id = svc.get("/collections/staff/items", svc.keys.regulator,
                    params={"limit": 10000, "sortby": "id"}).json()["features"]
    assert [f["id"] for f in by_id] == sorted(staff["id"])


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="needs gdal-bin (scripts/setup.sh)")
def test_gdal_sees_staff_as_points(svc):
    done = subprocess.run(
        ["ogrinfo", "-ro", "-so", f"OAPIF:{svc.url}/collections/staff", "staff",
         "--config", "GDAL_HTTP_AUTH", "BASIC",
         "--config", "GDAL_HTTP_USERPWD", f"x:{svc.keys.regulator}"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Geometry: Point" in done.stdout
    assert f"Feature Count: {len(svc.sample.layers['staff'])}" in done.stdout
