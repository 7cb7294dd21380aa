"""Sign-in every client can use: HTTP Basic with the key as the password (QGIS 3.22,
GDAL 3.6, browsers), X-API-Key and Bearer, with the same role rules; and the GDAL
settings the README gives, run with the system GDAL (ogrinfo) and pyogrio's GDAL."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.api.server import BANK_A, running_service


@pytest.fixture(scope="module")
def svc(request, tmp_path_factory):
    with running_service("gpkg", request, tmp_path_factory.mktemp("signin")) as service:
        yield service


def basic(user: str, password: str) -> dict:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_basic_with_any_user_name_and_the_key_as_password(svc):
    key = svc.keys.regulator
    for user in ("qgis", "", "张三"):
        r = svc.client.get("/collections", auth=httpx.BasicAuth(user, key))
        assert r.status_code == 200, (user, r.text)
    # curl -u KEY: (the key as the user name, no password)
    assert svc.client.get("/collections", headers=basic(key, "")).status_code == 200
    ids = {c["id"] for c in svc.client.get("/collections", auth=("u", key)).json()["collections"]}
    assert ids == {c["id"] for c in svc.get("/collections", key).json()["collections"]}


def test_basic_keeps_the_role_rules(svc):
    outlets = svc.sample.layers["outlets"]
    doc = svc.client.get("/collections/outlets/items", auth=("bank", svc.keys.admin_a),
                         params={"limit": 1000}).json()
    assert doc["numberMatched"] == (outlets["institution"] == BANK_A).sum()
    assert {f["properties"]["institution"] for f in doc["features"]} == {BANK_A}
    r = svc.client.get("/collections/households/items", auth=("w", svc.keys.worker_a))
    assert r.status_code == 403
    # the regulator does not see staff phones, whichever way it signs in
    staff = svc.client.get("/collections/staff/items", auth=("r", svc.keys.regulator)).json()
    assert staff["features"] and all("phone" not in f["properties"] for f in staff["features"])


@pytest.mark.parametrize("headers", [
    basic("u", "gg_000000000000.wrongwrongwrongwrongwrong"),
    basic("u", "not-a-key"),
    basic("u", ""),
    {"Authorization": "Basic !!!notbase64"},
    {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
    {"Authorization": "Digest abc"},
])
def test_bad_credentials_are_401_offering_basic_and_bearer(svc, headers):
    r = svc.client.get("/collections", headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "NotAuthenticated"
    challenges = r.headers.get_list("www-authenticate")
    assert 'Basic realm="gisgrid", charset="UTF-8"' in challenges
    assert 'Bearer realm="gisgrid"' in challenges


def test_no_credentials_prompt_for_basic(svc):
    r = svc.client.get("/collections/grids/items")
    assert r.status_code == 401
    assert any(c.startswith("Basic ") for c in r.headers.get_list("www-authenticate"))
    assert "password" in r.json()["description"]


def test_a_revoked_key_is_refused_over_basic_too(svc):
    import time

    from api.auth import create_key, revoke_key

    with svc.store() as store:
        key_id, token = create_key(store, "regulator")
    time.sleep(1.05)
    assert svc.client.get("/collections", auth=("x", token)).status_code == 200
    with svc.store() as store:
        revoke_key(store, key_id)
    time.sleep(1.1)
    assert svc.client.get("/collections", auth=("x", token)).status_code == 401


# ------------------------------------------------------------- GDAL, as the README says


def _system_gdal(svc, *args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["ogrinfo", "-ro", *args], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", **env})


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="needs gdal-bin (scripts/setup.sh)")
def test_system_gdal_signs_in_with_basic(svc):
    """GDAL 3.6 (Debian 12): GDAL_HTTP_AUTH=BASIC and GDAL_HTTP_USERPWD=any:KEY."""
    env = {"GDAL_HTTP_AUTH": "BASIC", "GDAL_HTTP_USERPWD": f"gdal:{svc.keys.admin_a}"}
    done = _system_gdal(svc, "-al", "-q", f"OAPIF:{svc.url}/collections/outlets", env=env)
    assert done.returncode == 0, done.stderr
    own = (svc.sample.layers["outlets"]["institution"] == BANK_A).sum()
    assert done.stdout.count("OGRFeature(outlets)") == own
    # a wrong key is refused, not silently empty
    env["GDAL_HTTP_USERPWD"] = "gdal:gg_000000000000.wrongwrongwrongwrongwrong"
    done = _system_gdal(svc, "-so", f"OAPIF:{svc.url}/", env=env)
    assert done.returncode != 0
    assert "401" in done.stderr or "NotAuthenticated" in done.stderr


_PYOGRIO = """
import json, sys, pyogrio
url = sys.argv[1]
frame = pyogrio.read_dataframe(url, layer="outlets")
print(json.dumps({"gdal": pyogrio.__gdal_version_string__,
                  "layers": [str(n) for n, _ in pyogrio.list_layers(url)],
                  "outlets": len(frame),
                  "institutions": sorted(set(frame["institution"]))}))
"""


def _pyogrio(svc, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", _PYOGRIO, f"OAPIF:{svc.url}/"],
                          capture_output=True, text=True, timeout=180,
                          env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("how", ["bearer", "header-file", "basic"])
def test_pyogrio_gdal_signs_in_as_the_readme_says(svc, tmp_path, how):
    """GDAL ≥ 3.7 (pyogrio's wheels): GDAL_HTTP_AUTH=BEARER with GDAL_HTTP_BEARER, or
    GDAL_HTTP_HEADER_FILE; Basic works there too."""
    key = svc.keys.admin_a
    if how == "bearer":
        env = {"GDAL_HTTP_AUTH": "BEARER", "GDAL_HTTP_BEARER": key}
    elif how == "header-file":
        path = tmp_path / "headers.txt"
        path.write_text(f"X-API-Key: {key}\n")
        env = {"GDAL_HTTP_HEADER_FILE": str(path)}
    else:
        env = {"GDAL_HTTP_AUTH": "BASIC", "GDAL_HTTP_USERPWD": f"me:{key}"}
    got = _pyogrio(svc, env)
    assert tuple(int(p) for p in got["gdal"].split(".")[:2]) >= (3, 7)
    own = (svc.sample.layers["outlets"]["institution"] == BANK_A).sum()
    assert got["outlets"] == own and got["institutions"] == [BANK_A]
    assert "ledger" in got["layers"] and "overlaps" not in got["layers"]
