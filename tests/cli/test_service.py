"""The ``serve`` and ``keys`` commands: keys created, listed and revoked through the
store, and ``serve`` with two worker processes answering a job's polls from either."""

from __future__ import annotations

import json
import time
import warnings

import httpx
from click.testing import CliRunner

from gis_grid.cli.service import keys
from layers.gpkg import GeoPackageStore
from tests.api.server import SERVE, free_port, load_sample, serve_process


def test_keys_create_list_revoke(tmp_path):
    store = str(tmp_path / "k.gpkg")
    runner = CliRunner()
    done = runner.invoke(keys, ["create", "--role", "admin", "--institution", "NSH",
                                "--store", store])
    assert done.exit_code == 0, done.output
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("gg_")
    listed = json.loads(runner.invoke(keys, ["list", "--json", "--store", store]).stdout)
    assert [(k["role"], k["institution"], k["revoked"]) for k in listed] == [
        ("admin", "NSH", None)]
    assert token.split(".")[1] not in json.dumps(listed)
    key_id = listed[0]["key_id"]
    assert runner.invoke(keys, ["revoke", key_id, "--store", store]).exit_code == 0
    listed = json.loads(runner.invoke(keys, ["list", "--json", "--store", store]).stdout)
    assert listed[0]["revoked"]
    bad = runner.invoke(keys, ["create", "--role", "worker", "--institution", "NSH",
                               "--store", store])
    assert bad.exit_code == 2 and "--worker" in bad.output
    bad = runner.invoke(keys, ["create", "--role", "regulator", "--institution", "NSH",
                               "--store", store])
    assert bad.exit_code == 2


def test_serve_with_two_workers_shares_jobs(tmp_path):
    store = tmp_path / "s.gpkg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_sample(GeoPackageStore(store))
    runner = CliRunner()
    token = runner.invoke(keys, ["create", "--role", "regulator", "--store", str(store)]
                          ).stdout.strip().splitlines()[-1]
    port = free_port()
    command = [*SERVE, "--store", str(store), "--port", str(port), "--workers", "2",
               "--log-level", "warning"]
    with serve_process(command, port, "/conformance",
                       env={"GISGRID_API_JOBS_DIR": str(tmp_path / "jobs")}) as base, \
            httpx.Client(base_url=base, headers={"X-API-Key": token}, timeout=30) as client:
        job = client.post("/analyses/validate", json={"grids": "grids"}).json()
        for _ in range(300):  # each poll may land on either worker process
            status = client.get(f"/jobs/{job['jobID']}").json()
            if status["state"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert status["state"] == "done", status
        assert client.get(f"/jobs/{job['jobID']}/result").json()["parameters"]["grids"]
