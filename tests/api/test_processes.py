"""The analyses as OGC API – Processes over a real PostGIS store: descriptions, async
execution (201 and a Location), job status per the Processes schema, results that
equal `gisgrid coverage`, the role rules of /analyses, and OWSLib's Processes client."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from owslib.ogcapi.processes import Processes

from tests.api.server import BANK_B, running_service

NAMES = {"validate", "coverage", "gaps", "overlap", "assessment", "placement"}
STATUS = {"accepted", "running", "successful", "failed", "dismissed"}


@pytest.fixture(scope="module")
def svc(request, tmp_path_factory):
    with running_service("postgis", request, tmp_path_factory.mktemp("proc")) as service:
        yield service


def execute(svc, name, key, inputs=None, **extra):
    return svc.post(f"/processes/{name}/execution", key,
                    json={"inputs": inputs or {}, **extra})


def wait(svc, location, key, timeout=120.0):
    """Poll a job to its end; checks every status document against the schema."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        r = svc.client.get(location, headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["type"] == "process" and info["status"] in STATUS
        assert isinstance(info["progress"], int) and 0 <= info["progress"] <= 100
        seen.append(info["progress"])
        if info["status"] in ("successful", "failed"):
            assert seen == sorted(seen)
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.1)


def test_processes_are_listed_and_described(svc):
    listing = svc.get("/processes").json()  # describes the service: no key needed
    assert {p["id"] for p in listing["processes"]} == NAMES
    for summary in listing["processes"]:
        assert summary["jobControlOptions"] == ["async-execute", "dismiss"]
        assert summary["version"]
    doc = svc.get("/processes/coverage").json()
    radius = doc["inputs"]["urban_radius"]
    assert radius["schema"]["type"] == "number" and radius["minOccurs"] == 0
    assert radius["schema"]["default"] == 2000.0
    assert doc["inputs"]["weights"]["description"]
    assert set(doc["outputs"]) == {"report"}
    assert any(link["rel"].endswith("/execute") for link in doc["links"])
    placement = svc.get("/processes/placement").json()["inputs"]
    assert set(placement["kind"]["schema"]["enum"]) == {"outlet", "device", "any"}
    # OpenAPI 3.0's dialect: an optional value is nullable, not anyOf with null
    institution = placement["institution"]["schema"]
    assert institution["type"] == "string" and institution["nullable"] is True
    assert "anyOf" not in institution and institution["maxLength"] == 64
    assert doc["inputs"]["urban_radius"]["schema"]["exclusiveMinimum"] is True
    missing = svc.get("/processes/nothing")
    assert missing.status_code == 404 and missing.json()["type"].endswith("no-such-process")
    conformance = svc.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in conformance
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list" in conformance
    rels = {link["rel"] for link in svc.get("/").json()["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/processes" in rels


def test_coverage_process_equals_gisgrid_coverage(svc, tmp_path):
    from gis_grid.cli import main

    r = execute(svc, "coverage", svc.keys.regulator)
    assert r.status_code == 201, r.text
    created = r.json()
    location = r.headers["location"]
    assert location.endswith(f"/jobs/{created['jobID']}")
    assert created["processID"] == "coverage" and created["status"] in STATUS
    info = wait(svc, location, svc.keys.regulator)
    assert info["status"] == "successful" and info["progress"] == 100
    assert info["state"] == "done"  # what /analyses clients read
    [results] = [link["href"] for link in info["links"] if link["rel"].endswith("/results")]
    got = svc.client.get(results, headers={"X-API-Key": svc.keys.regulator})
    assert got.status_code == 200
    report = got.json()["report"]
    assert report == svc.get(f"/jobs/{info['jobID']}/result", svc.keys.regulator).json()

    out = tmp_path / "cli"
    ran = CliRunner().invoke(main, ["coverage", "--store", svc.store_url, "--out", str(out),
                                    "--no-store-layers"])
    assert ran.exit_code == 0, ran.output
    written = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["tables"].keys() == written["tables"].keys()
    for name, rows in written["tables"].items():
        assert report["tables"][name] == rows, name


def test_execution_keeps_the_role_rules_and_checks_inputs(svc):
    assert execute(svc, "coverage", None).status_code == 401
    assert execute(svc, "validate", svc.keys.worker_a).status_code == 403
    assert execute(svc, "overlap", svc.keys.admin_a).status_code == 403
    assert execute(svc, "coverage", svc.keys.admin_a, {"institution": BANK_B}).status_code == 403
    for body in ({"inputs": {"urban_radius": -1}}, {"inputs": {"speed": 1}},
                 {"inputs": [1, 2]}, {"inputs": {}, "mode": "sync"},
                 {"inputs": {}, "response": "nonsense"}, {"inputs": {"grids": "nope"}}):
        r = svc.post("/processes/validate/execution", svc.keys.regulator, json=body)
        assert r.status_code in (400, 422), (body, r.text)
        assert r.status_code < 500
    r = svc.post("/processes/validate/execution", svc.keys.regulator,
                 json={"inputs": {"gap_width": -1}})
    assert r.status_code == 400 and "gap_width" in r.json()["description"]
    assert execute(svc, "nothing", svc.keys.regulator).status_code == 404


def test_a_failed_process_and_someone_elses_job(svc):
    r = execute(svc, "coverage", svc.keys.regulator, {"grids": ["overlaps"]})
    assert r.status_code == 201
    info = wait(svc, r.headers["location"], svc.keys.regulator)
    assert info["status"] == "failed" and info["message"]
    failed = svc.get(f"/jobs/{info['jobID']}/results", svc.keys.regulator)
    assert failed.status_code == 409 and failed.json()["type"].endswith("job-results-failed")
    assert svc.get(f"/jobs/{info['jobID']}", svc.keys.admin_a).status_code == 404
    assert svc.get(f"/jobs/{info['jobID']}/results", svc.keys.admin_a).status_code == 404
    assert svc.get("/jobs/0123456789abcdef/results", svc.keys.regulator).status_code == 404
    jobs = svc.get("/jobs", svc.keys.regulator).json()["jobs"]
    assert info["jobID"] in {j["jobID"] for j in jobs}
    assert all(j["status"] in STATUS for j in jobs)


def test_owslib_runs_a_process(svc):
    client = Processes(svc.url, headers={"X-API-Key": svc.keys.regulator})
    assert {p["id"] for p in client.processes()} == NAMES
    assert "grids" in client.process("validate")["inputs"]
    started = client.execute("validate", inputs={"grids": "grids"}, async_=True)
    assert started["processID"] == "validate"
    info = wait(svc, f"{svc.url}/jobs/{started['jobID']}", svc.keys.regulator)
    assert info["status"] == "successful"
    report = svc.get(f"/jobs/{info['jobID']}/results", svc.keys.regulator).json()["report"]
    assert report["parameters"]["grids"] == len(svc.sample.layers["grids"])


def test_a_job_is_dismissed_with_its_result(svc):
    """OGC API – Processes' dismiss (DELETE /jobs/{jobId}): the job and its result are
    gone for its key, and another key cannot dismiss it."""
    conformance = svc.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss" in conformance
    assert "dismiss" in svc.get("/processes/validate").json()["jobControlOptions"]
    r = execute(svc, "validate", svc.keys.regulator)
    info = wait(svc, r.headers["location"], svc.keys.regulator)
    path = f"/jobs/{info['jobID']}"
    assert svc.client.delete(path, headers={"X-API-Key": svc.keys.admin_a}).status_code == 404
    gone = svc.client.delete(path, headers={"X-API-Key": svc.keys.regulator})
    assert gone.status_code == 200, gone.text
    assert gone.json()["status"] == "dismissed" and gone.json()["jobID"] == info["jobID"]
    for suffix in ("", "/results", "/result"):
        assert svc.get(path + suffix, svc.keys.regulator).status_code == 404, suffix
    assert info["jobID"] not in {j["jobID"] for j in
                                 svc.get("/jobs", svc.keys.regulator).json()["jobs"]}
    assert svc.client.delete(path, headers={"X-API-Key": svc.keys.regulator}
                             ).status_code == 404
