"""Real clients against the running service: GDAL's OAPIF driver (ogrinfo), OWSLib, and
a schemathesis run over the OpenAPI definition that must find no 5xx and no answer the
definition does not document."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate as validate_openapi
from owslib.ogcapi.features import Features

from tests.api.server import running_service


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    with running_service(request.param, request, tmp_path_factory.mktemp("cl")) as service:
        yield service


def ogrinfo(svc, key, *args) -> str:
    """The system GDAL (3.6 on Debian 12) signed in as the README says: HTTP Basic,
    any user name, the key as the password."""
    command = ["ogrinfo", "-ro", *args, "--config", "GDAL_HTTP_AUTH", "BASIC",
               "--config", "GDAL_HTTP_USERPWD", f"gdal:{key}", "--config", "CPL_DEBUG", "OFF"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def regulator_collections(svc) -> set[str]:
    r = svc.get("/collections", svc.keys.regulator)
    return {c["id"] for c in r.json()["collections"]}


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="needs gdal-bin (scripts/setup.sh)")
def test_gdal_lists_collections_and_reads_every_feature(svc):
    listing = ogrinfo(svc, svc.keys.regulator, "-so", f"OAPIF:{svc.url}/")
    layers = set(re.findall(r"^\d+: (\S+)", listing, flags=re.M))
    assert layers == regulator_collections(svc)
    grids = ogrinfo(svc, svc.keys.regulator, "-al", f"OAPIF:{svc.url}/collections/grids")
    assert grids.count("OGRFeature(grids)") == len(svc.sample.layers["grids"])
    homes = ogrinfo(svc, svc.keys.regulator, "-al", "-so", "-oo", "PAGE_SIZE=1000",
                    f"OAPIF:{svc.url}/collections/households")
    assert f"Feature Count: {len(svc.sample.layers['households'])}" in homes
    # an administrator's GDAL sees its own institution's rows only
    outlets = ogrinfo(svc, svc.keys.admin_a, "-al", "-q", f"OAPIF:{svc.url}/collections/outlets")
    own = (svc.sample.layers["outlets"]["institution"] == "NSH").sum()
    assert outlets.count("OGRFeature(outlets)") == own
    assert "YCB" not in outlets


@pytest.mark.skipif(shutil.which("ogr2ogr") is None, reason="needs gdal-bin (scripts/setup.sh)")
def test_gdal_copies_every_layer_as_gisgrid_export_writes_it(svc, tmp_path):
    """ogr2ogr with its default options (GDAL 3.6 asks for 10 features a page; the next
    links grow the pages) copies every collection the regulator reads: counts equal the
    store's, and the outlets' values equal `gisgrid export outlets`."""
    import geopandas as gpd
    import pyogrio
    from click.testing import CliRunner

    from gis_grid.cli import main

    out = tmp_path / "copy.gpkg"
    done = subprocess.run(
        ["ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{svc.url}/", "--debug", "on",
         "--config", "GDAL_HTTP_AUTH", "BASIC",
         "--config", "GDAL_HTTP_USERPWD", f"gdal:{svc.keys.regulator}"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    requests = done.stderr.count("HTTP: Fetch(")
    with svc.store() as store:
        stored = {layer.name: layer.count for layer in store.layers()}
    names = regulator_collections(svc)
    copied = {str(n): pyogrio.read_info(out, layer=str(n))["features"]
              for n, _ in pyogrio.list_layers(out)}
    assert copied == {name: stored[name] for name in names}
    # 10 a page would take > 500 requests for the 4,065 household points alone
    assert requests < 150, requests
    exported = tmp_path / "outlets.geojson"
    ran = CliRunner().invoke(main, ["export", "outlets", str(exported), "--store",
                                    svc.store_url])
    assert ran.exit_code == 0, ran.output
    want = gpd.read_file(exported).sort_values("id").reset_index(drop=True)
    got = gpd.read_file(out, layer="outlets").sort_values("id").reset_index(drop=True)
    for column in ("id", "institution", "tier", "name", "status", "unit"):
        assert got[column].tolist() == want[column].tolist(), column
    assert abs(got.geometry.x - want.geometry.x).max() < 1e-7  # degrees: ~1 cm
    assert abs(got.geometry.y - want.geometry.y).max() < 1e-7


def test_owslib_lists_collections_and_reads_items(svc):
    client = Features(svc.url, headers={"X-API-Key": svc.keys.regulator})
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in \
        client.conformance()["conformsTo"]
    assert set(client.feature_collections()) == regulator_collections(svc)
    doc = client.collection_items("grids", limit=1000)
    assert doc["numberMatched"] == doc["numberReturned"] == len(svc.sample.layers["grids"])
    one = client.collection_item("grids", doc["features"][0]["id"])
    assert one["id"] == doc["features"][0]["id"]
    assert client.collection("outlets")["id"] == "outlets"


def test_owslib_reads_the_openapi_30_service_description(svc):
    """OWSLib follows only a service-desc link typed OpenAPI 3.0 (issue 17)."""
    client = Features(svc.url, headers={"X-API-Key": svc.keys.regulator})
    api = client.api()
    assert api["openapi"].startswith("3.0")
    assert "/collections/{collectionId}/items" in api["paths"]
    limit = api["components"]["parameters"]["limit"]["schema"]
    assert limit["default"] == 10 and limit["maximum"] == 10000
    items = api["paths"]["/collections/{collectionId}/items"]["get"]["parameters"]
    assert {"$ref": "#/components/parameters/limit"} in items
    assert "BasicAuth" in api["components"]["securitySchemes"]
    assert_openapi_30(api)
    validate_openapi(api)  # the 3.0 meta-schema, and the 3.1 document against 3.1's
    validate_openapi(svc.get("/openapi.json").json())
    doc = client.collection_items("outlets", limit=5)
    assert doc["numberReturned"] == 5
    queryables = client.collection_queryables("outlets")
    assert "tier" in queryables["properties"] and "geometry" in queryables["properties"]


def assert_openapi_30(doc) -> None:
    """No JSON Schema 2020-12 construct that OpenAPI 3.0 lacks is left anywhere."""
    def walk(node, where):
        if isinstance(node, dict):
            kind = node.get("type")
            assert not isinstance(kind, list), where
            assert kind != "null", where
            for key in ("anyOf", "oneOf"):
                assert not any(isinstance(b, dict) and (b.get("type") == "null"
                                                        or b == {"nullable": True})
                               for b in node.get(key, [])), where
            for key in ("exclusiveMinimum", "exclusiveMaximum"):
                assert key not in node or isinstance(node[key], bool), where
            assert "const" not in node and "contentMediaType" not in node, where
            if "$ref" in node:
                assert set(node) == {"$ref"}, where
            if isinstance(node.get("examples"), list):
                # 3.0 has examples only as a map, on parameters and media types
                raise AssertionError(f"examples list at {where}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(doc, "#")


#: What the schemathesis run checks: no 5xx, and every answer documented — its status,
#: content type, headers and body schema (issue 18's done-when).
CONFORMANCE = ("not_a_server_error,status_code_conformance,content_type_conformance,"
               "response_headers_conformance,response_schema_conformance")


@pytest.mark.parametrize("role", ["admin_a", "worker_a", "regulator"])
def test_schemathesis_finds_no_server_error_and_nothing_undocumented(svc, role, tmp_path):
    """Every operation of /openapi.json with examples, the coverage phase's boundary
    values and fuzzed values, as each role, on both stores, bounded in time. It found
    4xx answers the document did not declare (a FastAPI 422 schema the service never
    sends), application/schema+json and HTML not declared, and GeoPackage tiles as 501."""
    st = Path(sys.executable).with_name("st")
    key = getattr(svc.keys, role)
    command = [str(st), "run", f"{svc.url}/openapi.json", "-H", f"X-API-Key: {key}",
               "--checks", CONFORMANCE, "-n", "5", "--seed", "7",
               "--phases", "examples,coverage,fuzzing", "--max-time", "10",
               "--request-timeout", "20", "--warnings", "off"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:]
    assert "No issues found" in done.stdout, done.stdout[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert generated and int(generated.group(1)) == int(generated.group(2)) > 300, \
        done.stdout[-2000:]
