"""Issue 18, keys and headers: security headers on every response (L5) and no key in the
access log of a real ``gisgrid serve`` process (M7)."""

from __future__ import annotations

import time
import warnings

import httpx
import pytest

from api.auth import create_key
from api.security import CONTENT_SECURITY_POLICY
from layers.gpkg import GeoPackageStore
from tests.api.server import SERVE, free_port, load_sample, running_service, served


@pytest.fixture(scope="module")
def service(request, tmp_path_factory):
    with running_service("gpkg", request, tmp_path_factory.mktemp("security")) as running:
        yield running


@pytest.mark.parametrize("path", ["/", "/collections", "/collections/outlets/items",
                                  "/conformance", "/map", "/no/such/path", "/openapi.json"])
def test_every_response_has_the_security_headers(service, path):
    answer = service.get(path, key=service.keys.regulator)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_html_pages_have_a_content_security_policy(service):
    for path in ("/map", "/collections?f=html", "/"):
        answer = service.get(path, key=service.keys.regulator,
                             headers={"accept": "text/html"})
        assert answer.headers["content-type"].startswith("text/html"), path
        policy = answer.headers["content-security-policy"]
        assert policy == CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    # Unauthenticated answers carry the headers too.
    assert service.client.get("/map").headers["x-frame-options"] == "DENY"


@pytest.mark.slow
def test_the_access_log_never_holds_a_key(tmp_path):
    """M7: ``/map?key=…`` is written to uvicorn's access log as ``key=***``."""
    store = tmp_path / "s.gpkg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_sample(GeoPackageStore(store))
    with GeoPackageStore(store) as s:
        _, token = create_key(s, "regulator")
    port = free_port()
    log = tmp_path / "serve.log"
    command = [*SERVE, "--store", str(store), "--port", str(port), "--log-level", "info"]
    with served(command, port, "/conformance", log=log,
                env={"GISGRID_API_JOBS_DIR": str(tmp_path / "jobs")}) as (base, _):
        answer = httpx.get(f"{base}/map", params={"key": token}, follow_redirects=False)
        assert answer.status_code == 303
        httpx.get(f"{base}/collections", params={"api_key": token, "f": "json"})
        time.sleep(0.5)
    text = log.read_text()
    assert "/map?key=***" in text, text[-2000:]
    secret = token.split(".", 1)[1]
    assert secret not in text and token not in text
