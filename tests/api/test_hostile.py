"""Issue 18: every endpoint of the service, swept with hostile values in its path and
query parameters (a NUL byte, a 30-digit integer, a negative number, the wrong layer
kind, a path traversal, SQL, a long string) and hostile bodies, answers 4xx — never a
5xx — and no answer shows internals (SQL, a database URL, a server path, a traceback).
On both stores, through the real service; the endpoints are read from its own OpenAPI
document, so a new endpoint is swept too."""

from __future__ import annotations

import re

import pytest

from tests.api.server import running_service

HOSTILE = ["\x00", "9" * 30, "-1", "staff", "grids\x00", "../../etc/passwd",
           "' OR 1=1 --", "x" * 3000, "", "1e309", "NaN", "api_keys"]
INTERNALS = re.compile(r"postgresql://|/tmp/|Traceback|SELECT |COPY |psycopg|sqlite3",
                       re.IGNORECASE)
#: Valid values of path parameters, so that one hostile parameter reaches real data.
VALID = {"collectionId": "staff", "featureId": "E-1", "jobId": "nope", "processId":
         "validate", "tileMatrixSetId": "WebMercatorQuad", "z": "0", "x": "0", "y": "0",
         "tileMatrix": "0", "tileRow": "0", "tileCol": "0", "layer": "outlets"}
#: Endpoints that start work or need a body of their own (swept with hostile bodies).
WRITES = ("post", "patch", "put", "delete")


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    with running_service(request.param, request,
                         tmp_path_factory.mktemp(f"hostile{request.param}")) as running:
        yield running


def _operations(svc) -> list[tuple[str, str, dict]]:
    doc = svc.get("/openapi.json").json()
    return [(path, method, op) for path, ops in doc["paths"].items()
            for method, op in ops.items() if method in ("get", *WRITES)]


def _check(answer, what: str) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    text = answer.text if "json" in answer.headers.get("content-type", "") or \
        "text/" in answer.headers.get("content-type", "") else ""
    if answer.status_code >= 400:
        assert not INTERNALS.search(text), (what, text[:500])


def test_every_endpoint_answers_hostile_values_with_4xx(svc):
    key = svc.keys.admin_a
    swept = 0
    for path, method, op in _operations(svc):
        params = [p for p in op.get("parameters", []) if p.get("in") in ("path", "query")]
        names = re.findall(r"{(\w+)}", path)
        # Each parameter hostile in turn, the others valid (a hostile feature id must
        # reach a real collection), then every query parameter hostile at once.
        cases = [(n, None) for n in names] + [(None, p["name"]) for p in params
                                              if p["in"] == "query"] + [(None, None)]
        for hostile_path, hostile_query in cases:
            for value in HOSTILE:
                url = path
                for name in names:
                    chosen = value if name == hostile_path else VALID.get(name, "x")
                    url = url.replace("{" + name + "}", _quote(chosen) or "x")
                query = {p["name"]: value for p in params if p["in"] == "query"
                         and (hostile_query is None or p["name"] == hostile_query)}
                if hostile_path is not None:
                    query = {}
                if method == "get":
                    answer = svc.get(url, key, params=query)
                else:
                    answer = svc.client.request(method.upper(), url, params=query,
                                                headers={"X-API-Key": key},
                                                json={"x": value, "properties": {"id": value}})
                _check(answer, f"{method.upper()} {url} {query!r}"[:300])
                swept += 1
    assert swept > 500


def test_hostile_bodies_are_4xx(svc):
    key = svc.keys.worker_a
    bodies = [None, [], "x", 1e308, {"type": "Feature", "geometry": {"type": "Point",
                                                                     "coordinates": ["a"]}},
              {"type": "Feature", "properties": {"kind": "\x00"}, "geometry": None},
              {"type": "Feature", "properties": ["x"]}, {"state": {"x": 1}},
              {"status": "accepted", "at": "9" * 30}, {"grid": "9" * 30, "date": "\x00"}]
    for path, method, _ in _operations(svc):
        if method not in WRITES:
            continue
        url = re.sub(r"{\w+}", "E-1", path)
        for body in bodies:
            answer = svc.client.request(method.upper(), url, json=body,
                                        headers={"X-API-Key": key, "If-Match": '"1"'})
            _check(answer, f"{method.upper()} {url} {body!r}"[:300])


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
