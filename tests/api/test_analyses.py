"""Analyses as jobs over HTTP: validate, coverage, gaps, across-bank overlap,
assessment, placement — with status URLs, progress, results, and who may run what."""

from __future__ import annotations

import time

import pytest

from tests.api.server import BANK_A, BANK_B, running_service


@pytest.fixture(scope="module")
def svc(request, tmp_path_factory):
    with running_service("postgis", request, tmp_path_factory.mktemp("jobs")) as service:
        yield service


def run_job(svc, name, key, body=None, timeout=90.0):
    r = svc.post(f"/analyses/{name}", key, json=body or {})
    assert r.status_code == 202, r.text
    status = r.json()
    assert r.headers["location"].endswith(f"/jobs/{status['jobID']}")
    assert status["state"] in ("queued", "running", "done")
    deadline = time.monotonic() + timeout
    progress = [status["progress"]]
    while status["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
        status = svc.get(r.headers["location"], key).json()
        progress.append(status["progress"])
    assert progress == sorted(progress)  # progress never goes back
    return status


def result(svc, status, key):
    r = svc.get(f"/jobs/{status['jobID']}/result", key)
    assert r.status_code == 200, r.text
    return r.json()


def test_validate_reports_as_validate_grids(svc):
    status = run_job(svc, "validate", svc.keys.regulator, {"grids": "grids"})
    assert status["state"] == "done" and status["progress"] == 100  # per cent (OGC)
    report = result(svc, status, svc.keys.regulator)
    assert set(report) >= {"ok", "parameters", "counts", "problems"}
    assert report["parameters"]["grids"] == len(svc.sample.layers["grids"])
    # an administrator validates its own grids only: B's layer holds none of A's
    status = run_job(svc, "validate", svc.keys.admin_a, {"grids": "grids__ycb"})
    assert status["state"] in ("done", "failed")
    if status["state"] == "done":
        assert result(svc, status, svc.keys.admin_a)["parameters"]["grids"] == 0
    bad = svc.post("/analyses/validate", svc.keys.regulator, json={"gap_width": -1})
    assert bad.status_code == 422
    assert svc.post("/analyses/validate", svc.keys.regulator,
                    json={"grids": "nope"}).status_code == 422
    assert svc.post("/analyses/validate", svc.keys.regulator,
                    json={"grids": "grids", "extra": 1}).status_code == 422


def test_coverage_as_an_administrator_is_its_own(svc):
    status = run_job(svc, "coverage", svc.keys.admin_a, {"rural_radius": 4000})
    assert status["state"] == "done", status
    assert status["parameters"]["institution"] == BANK_A
    report = result(svc, status, svc.keys.admin_a)
    assert {"territory", "blanks", "gaps"} <= set(report["tables"])
    assert report["meta"]["radii"]["rural_m"] == 4000
    # no other bank appears anywhere in its tables
    institutions = {row.get("institution") for table in report["tables"].values()
                    for row in table if isinstance(row, dict)}
    assert BANK_B not in institutions
    assert svc.post("/analyses/coverage", svc.keys.admin_a,
                    json={"institution": BANK_B}).status_code == 403
    assert svc.post("/analyses/coverage", svc.keys.worker_a, json={}).status_code == 403


def test_gaps_overlap_and_assessment(svc):
    gaps = result(svc, run_job(svc, "gaps", svc.keys.regulator), svc.keys.regulator)
    # Both kinds of blank: units without outlet or device, units beyond every radius.
    assert set(gaps["tables"]) == {"no_point", "blanks", "gaps"}
    assert gaps["layers"]["coverage_gaps"]["type"] == "FeatureCollection"
    assert gaps["layers"]["units_without_service_point"]["type"] == "FeatureCollection"
    overlap = result(svc, run_job(svc, "overlap", svc.keys.regulator), svc.keys.regulator)
    assert "overlap" in overlap["tables"]
    assert svc.post("/analyses/overlap", svc.keys.admin_a, json={}).status_code == 403
    assessment = result(svc, run_job(svc, "assessment", svc.keys.regulator),
                        svc.keys.regulator)
    ranked = {row["institution"] for row in assessment["tables"]["assessment"]}
    assert {BANK_A, BANK_B} <= ranked
    assert svc.post("/analyses/assessment", svc.keys.admin_b, json={}).status_code == 403


def test_placement(svc):
    body = {"kind": "device", "k": 3, "method": "greedy", "problem": "mclp"}
    report = result(svc, run_job(svc, "placement", svc.keys.regulator, body),
                    svc.keys.regulator)
    sites = report["mclp"]["sites"]
    assert sites["type"] == "FeatureCollection" and len(sites["features"]) == 3
    assert report["meta"]["k"] == 3
    candidates = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"site": f"S{i}"},
         "geometry": {"type": "Point", "coordinates": [110.7 + 0.05 * i, 30.9]}}
        for i in range(4)]}
    body = {"k": 2, "method": "greedy", "problem": "mclp", "candidates": candidates,
            "candidates_crs": "gcj02"}
    report = result(svc, run_job(svc, "placement", svc.keys.admin_a, body), svc.keys.admin_a)
    assert report["meta"]["institution"] == BANK_A
    assert {f["properties"]["site"] for f in report["mclp"]["sites"]["features"]} <= {
        "S0", "S1", "S2", "S3"}
    assert svc.post("/analyses/placement", svc.keys.admin_a,
                    json={"institution": BANK_B}).status_code == 403


def test_jobs_belong_to_their_key(svc):
    status = run_job(svc, "validate", svc.keys.regulator, {"grids": "grids"})
    job = status["jobID"]
    assert svc.get(f"/jobs/{job}", svc.keys.admin_a).status_code == 404
    assert svc.get(f"/jobs/{job}/result", svc.keys.admin_a).status_code == 404
    assert svc.get(f"/jobs/{job}").status_code == 401
    assert svc.get("/jobs/0123456789abcdef", svc.keys.regulator).status_code == 404
    assert svc.get("/jobs/../../etc/passwd", svc.keys.regulator).status_code == 404
    mine = {j["jobID"] for j in svc.get("/jobs", svc.keys.regulator).json()["jobs"]}
    assert job in mine
    assert job not in {j["jobID"] for j in svc.get("/jobs", svc.keys.admin_a).json()["jobs"]}


def test_a_failed_job_says_why(svc):
    status = run_job(svc, "coverage", svc.keys.regulator, {"grids": ["overlaps"]})
    assert status["state"] == "failed" and status["error"]
    r = svc.get(f"/jobs/{status['jobID']}/result", svc.keys.regulator)
    assert r.status_code == 409 and r.json()["state"] == "failed"


def test_the_service_and_the_cli_run_one_coverage_job(svc, tmp_path):
    """One definition (gis_grid.jobs.COVERAGE) behind both outputs: the regulator's
    coverage over HTTP and `gisgrid coverage --out` on the same store give the same
    tables, figure for figure."""
    import json

    from click.testing import CliRunner

    from gis_grid.cli import main

    status = run_job(svc, "coverage", svc.keys.regulator, {})
    assert status["state"] == "done", status
    served = result(svc, status, svc.keys.regulator)
    out = tmp_path / "report"
    ran = CliRunner().invoke(main, ["coverage", "--store", svc.store_url, "--out", str(out),
                                    "--no-store-layers"])
    assert ran.exit_code == 0, ran.output
    written = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert served["tables"].keys() == written["tables"].keys()
    for name, rows in written["tables"].items():
        assert served["tables"][name] == rows, name
    assert served["summary"].splitlines()[1:] == ran.output.splitlines()[1:
        len(served["summary"].splitlines())]


def test_assessment_weights_pass_through_and_bad_ones_are_refused(svc):
    """The API's assessment is the CLI's table, under the weights the caller gives."""
    body = {"weights": {"coverage": 0.5, "staffing": 0.5}}
    report = result(svc, run_job(svc, "assessment", svc.keys.regulator, body),
                    svc.keys.regulator)
    assert report["meta"]["assessment"]["weights"] == {
        "coverage": 0.5, "files": 0.0, "staffing": 0.5, "blanks_closed": 0.0}
    for row in report["tables"]["assessment"]:
        assert row["score"] == pytest.approx(50 * row["coverage"] + 50 * row["staffing"])
    default = result(svc, run_job(svc, "assessment", svc.keys.regulator), svc.keys.regulator)
    assert default["meta"]["assessment"]["weights"] == {
        "coverage": 0.3, "files": 0.3, "staffing": 0.2, "blanks_closed": 0.2}
    for weights, words in (({"coverage": 0.5, "speed": 0.5}, "speed is not a criterion"),
                           ({"coverage": 0.5}, "must sum to 1"),
                           ({"coverage": 1.5, "files": -0.5}, "negative")):
        r = svc.post("/analyses/assessment", svc.keys.regulator, json={"weights": weights})
        assert r.status_code == 422 and words in r.text, r.text
