"""Real clients against the running service: GDAL's OAPIF driver (ogrinfo), OWSLib, and
a schemathesis run over the OpenAPI definition that must find no 5xx."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from owslib.ogcapi.features import Features

from tests.api.server import running_service


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    with running_service(request.param, request, tmp_path_factory.mktemp("cl")) as service:
        yield service


def ogrinfo(svc, key, *args) -> str:
    command = ["ogrinfo", "-ro", *args, "--config", "GDAL_HTTP_HEADERS", f"X-API-Key: {key}",
               "--config", "CPL_DEBUG", "OFF"]
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


def test_schemathesis_finds_no_server_error(svc, tmp_path):
    if svc.kind != "postgis":
        pytest.skip("one run is enough; the PostGIS provider has the SQL")
    st = Path(sys.executable).with_name("st")
    command = [str(st), "run", f"{svc.url}/openapi.json", "-H", f"X-API-Key: {svc.keys.admin_a}",
               "--checks", "not_a_server_error", "-n", "3", "--seed", "7",
               "--phases", "examples,coverage,fuzzing", "--max-time", "12",
               "--request-timeout", "20",
               "--warnings", "off"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "passed" in done.stdout
