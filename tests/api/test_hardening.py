"""Issue 18, the service's own part: constant-time key checks (L4), per-key job quotas
(M8), durable jobs across a restart and a crash (L6), the ledger for the regulator (M5),
grid layers written only by their institution (L1), the map's session cookie (L5) and no
internals in error bodies (L3). Over real HTTP, on GeoPackage and PostGIS."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from api import auth
from api.auth import KeyRing, Principal, write_rule
from api.errors import Forbidden, ServiceUnavailable, public_message
from api.jobs import JobManager, default_folder
from tests.api.server import BANK_A, BANK_B, TEST_SETTINGS, Server, running_service

INTERNALS = ("postgresql://", "/tmp/", "SELECT", "COPY")


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    settings = dataclasses.replace(
        TEST_SETTINGS, max_jobs_per_key=2, keys_ttl_s=60.0,
        jobs_dir=str(tmp_path_factory.mktemp("jobs")))
    with running_service(request.param, request, tmp_path_factory.mktemp("hard"),
                         settings) as service:
        yield service


# ------------------------------------------------------------------------ L4 timing


def test_unknown_key_ids_run_the_hash_too(monkeypatch):
    """The dummy path computes the hash (unit level): without it, 7.5 ms against 2.3 ms
    told which key ids exist."""
    calls = []
    real = auth._matches
    monkeypatch.setattr(auth, "_matches", lambda s, h: calls.append(h) or real(s, h))
    ring = KeyRing(lambda: None)  # never loaded: the keys are set below
    ring._keys = {"aaaaaaaaaaaa": (auth._hash("x" * 43, b"s" * 16),
                                   Principal("aaaaaaaaaaaa", "regulator"))}
    for token in ("gg_bbbbbbbbbbbb." + "y" * 43, "gg_aaaaaaaaaaaa." + "y" * 43):
        with pytest.raises(auth.NotAuthenticated):
            ring.verify(token)
    assert calls == [auth._DUMMY_HASH, ring._keys["aaaaaaaaaaaa"][0]]


def test_unknown_ids_and_wrong_secrets_take_the_same_time(svc):
    """Over HTTP, both fast (many in a row) and slow (one a second, when an unknown id
    used to make the service reload the keys from the store: 7.5 ms against 2.3 ms)."""
    known = svc.keys.ids["admin_a"]
    wrong_secret = f"gg_{known}." + "x" * 43
    unknown_id = "gg_0123456789ab." + "x" * 43
    assert svc.get("/collections", svc.keys.admin_a).status_code == 200

    def timed(token):
        start = time.perf_counter()
        assert svc.get("/collections", token).status_code == 401
        return time.perf_counter() - start

    slow = {wrong_secret: [], unknown_id: []}
    for _ in range(4):
        for token in slow:
            time.sleep(1.05)
            slow[token].append(timed(token))
    fast = {token: [timed(token) for _ in range(60)] for token in slow}
    for label, times in (("one a second", slow), ("in a row", fast)):
        a, b = (statistics.median(v) for v in times.values())
        print(f"401 medians {label}: wrong secret {a * 1e3:.2f} ms, unknown id "
              f"{b * 1e3:.2f} ms")
        assert max(a, b) / min(a, b) < 2.0, (label, a, b)


# ------------------------------------------------------------------------ M8 quotas


def test_one_key_cannot_fill_the_queue(svc):
    body = {"grids": ["grids"]}
    codes = []
    for _ in range(4):
        codes.append(svc.post("/analyses/coverage", svc.keys.regulator, json=body))
        if codes[-1].status_code == 429:
            break
    refused = codes[-1]
    assert refused.status_code == 429, [r.status_code for r in codes]
    assert "GISGRID_API_MAX_JOBS_PER_KEY=2" in refused.json()["description"]
    assert refused.json()["limit"] == 2
    # another key is not affected, in either API
    assert svc.post("/analyses/coverage", svc.keys.admin_a, json={}).status_code == 202
    ogc = svc.post("/processes/coverage/execution", svc.keys.admin_b, json={"inputs": {}})
    assert ogc.status_code == 201, ogc.text
    _wait_idle(svc, svc.keys.regulator)
    assert svc.post("/analyses/coverage", svc.keys.regulator, json=body).status_code == 202
    _wait_idle(svc, svc.keys.regulator)


def _wait_idle(svc, key, timeout=120.0):
    deadline = time.monotonic() + timeout
    while any(j["state"] in ("queued", "running")
              for j in svc.get("/jobs", key).json()["jobs"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)


# ------------------------------------------------------------------------ M5 ledger


def test_the_regulator_reads_the_ledger_everywhere(svc):
    key = svc.keys.regulator
    ledger = svc.sample.layers["ledger"]
    assert svc.get("/collections/ledger", key).status_code == 200
    page = svc.get("/collections/ledger/items", key, params={"limit": 10000}).json()
    assert page["numberMatched"] == len(ledger)
    assert {f["properties"]["institution"] for f in page["features"]} == \
        set(ledger["institution"])
    rows = svc.get("/ledger/summary", key).json()["rows"]
    assert sum(r["households_total"] for r in rows) == int(ledger["households_total"].sum())
    # admins still see only their own rows
    own = svc.get("/collections/ledger/items", svc.keys.admin_b,
                  params={"limit": 10000}).json()["features"]
    assert own and {f["properties"]["institution"] for f in own} == {BANK_B}


# ------------------------------------------------------------------------ L1 grid layers


def test_grid_layers_belong_to_their_institution():
    cols = frozenset({"code", "institution", "level"})
    nsh, ycb = Principal("a" * 12, "admin", BANK_A), Principal("b" * 12, "admin", BANK_B)
    assert write_rule(ycb, "grids__ycb", cols)[0].fixed == {"institution": (BANK_B,)}
    with pytest.raises(Forbidden, match="grids__ycb"):
        write_rule(nsh, "grids__ycb", cols)
    with pytest.raises(Forbidden):
        write_rule(Principal("c" * 12, "worker", BANK_B, "W1"), "grids__ycb", cols)
    assert write_rule(nsh, "grids", cols)[0].fixed == {"institution": (BANK_A,)}


def test_another_banks_grid_layer_is_not_writable_over_http(svc):
    grids = svc.sample.layers["grids__ycb"].head(2).copy()
    grids["institution"] = BANK_A
    body = grids.to_json().encode()
    before = svc.get("/collections/grids__ycb/items", svc.keys.regulator,
                     params={"limit": 1}).json()["numberMatched"]
    r = svc.client.post("/imports/grids__ycb", params={"mode": "upsert"},
                        headers={"X-API-Key": svc.keys.admin_a},
                        files={"file": ("g.geojson", body, "application/geo+json")})
    assert r.status_code == 403, r.text
    assert svc.get("/collections/grids__ycb/items", svc.keys.regulator,
                   params={"limit": 1}).json()["numberMatched"] == before


# ------------------------------------------------------------------------ L5 the cookie


def test_the_map_cookie_is_a_signed_session_not_the_key(svc):
    first = svc.get("/map", params={"key": svc.keys.admin_a, "grids": "grids"},
                    headers={"Host": "evil.example"}, follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/map?grids=grids"  # not from the Host header
    cookie = first.headers["set-cookie"]
    secret = svc.keys.admin_a.split(".", 1)[1]
    assert secret not in cookie and svc.keys.admin_a not in cookie
    for part in ("HttpOnly", "SameSite=strict", "Path=/map", "Max-Age=28800"):
        assert part.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain HTTP here
    value = first.cookies["gisgrid_session"]
    assert value.startswith(svc.keys.ids["admin_a"] + ".")
    page = svc.client.get("/map", cookies={"gisgrid_session": value})
    assert page.status_code == 200
    # forged, expired, or the raw key as a cookie: refused
    key_id, expiry, sig = value.split(".")
    forged = f"{key_id}.{int(expiry) + 10**6}.{sig}"
    assert svc.client.get("/map", cookies={"gisgrid_session": forged}).status_code == 401
    assert svc.client.get("/map", cookies={"gisgrid_session": svc.keys.admin_a}
                          ).status_code == 401
    # over HTTPS behind a proxy the cookie is Secure
    https = svc.get("/map", params={"key": svc.keys.admin_a}, follow_redirects=False,
                    headers={"X-Forwarded-Proto": "https"})
    assert "secure" in https.headers["set-cookie"].lower()


def test_revoking_the_key_ends_the_session(tmp_path, request):
    with running_service("gpkg", request, tmp_path) as svc:
        value = svc.get("/map", params={"key": svc.keys.worker_a},
                        follow_redirects=False).cookies["gisgrid_session"]
        assert svc.client.get("/map", cookies={"gisgrid_session": value}).status_code == 200
        with svc.store() as store:
            auth.revoke_key(store, svc.keys.ids["worker_a"])
        time.sleep(1.2)  # TEST_SETTINGS: keys reloaded every 0.5 s
        assert svc.client.get("/map", cookies={"gisgrid_session": value}).status_code == 401


def test_the_redirect_follows_the_public_url(tmp_path, request):
    settings = dataclasses.replace(TEST_SETTINGS, public_url="https://grid.example.org/gg/")
    with running_service("gpkg", request, tmp_path, settings) as svc:
        r = svc.get("/map", params={"key": svc.keys.regulator}, follow_redirects=False)
        assert r.headers["location"] == "https://grid.example.org/gg/map"
        assert "secure" in r.headers["set-cookie"].lower()


def test_sessions_expire():
    stored = auth._hash("s" * 43, b"t" * 16)
    ring = KeyRing(lambda: None)
    who = Principal("aaaaaaaaaaaa", "admin", BANK_A)
    ring._keys = {who.key_id: (stored, who)}
    value = ring.session(who, 60, now=1000.0)
    assert ring.verify_session(value, now=1059.0) == who
    with pytest.raises(auth.NotAuthenticated, match="expired"):
        ring.verify_session(value, now=1061.0)


# ------------------------------------------------------------------------ L3 internals


def test_public_messages_hide_urls_paths_and_sql():
    text = ("postgresql://gisgrid:pw@db:5432/g: cannot write outlets: invalid byte sequence"
            " for encoding \"UTF8\": 0x00\nCONTEXT:  COPY outlets, line 2\n"
            "while reading /tmp/gisgrid-upload-x1/outlets.csv; SELECT 1")
    clean = public_message(text)
    assert not any(bad in clean for bad in INTERNALS), clean
    assert "outlets.csv" in clean and "0x00" in clean


@pytest.mark.parametrize("store", [
    "postgresql://gisgrid:secret@127.0.0.1:1/nothing",          # cannot connect
    "/tmp/gisgrid-no-such-folder/x/store.gpkg",                 # no such folder
])
def test_no_internals_in_store_errors(store, tmp_path):
    """A real StoreError (its text names the store's URL or path) reaching a handler."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from layers.store import open_store

    app = create_app(str(tmp_path / "s.gpkg"), TEST_SETTINGS)

    @app.get("/boom")
    def boom():
        open_store(store).read("outlets")

    @app.get("/unavailable")
    def unavailable():
        try:
            open_store(store).read("outlets")
        except Exception as exc:  # as the PostGIS provider reports a failed connection
            raise ServiceUnavailable(f"cannot connect to PostGIS: {exc}") from exc

    with TestClient(app) as client:
        r = client.get("/boom")
        assert r.status_code == 503 and r.json()["code"] == "StoreError"
        assert not any(bad in r.text for bad in (*INTERNALS, "secret")), r.text
        r = client.get("/unavailable")
        assert r.status_code == 503 and r.json()["code"] == "ServiceUnavailable"
        assert not any(bad in r.text for bad in (*INTERNALS, "secret")), r.text


def test_no_internals_in_failed_jobs(svc):
    # a failing job
    key = svc.keys.regulator
    status = svc.post("/analyses/coverage", key, json={"grids": ["overlaps"]}).json()
    deadline = time.monotonic() + 60
    while status["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
        status = svc.get(f"/jobs/{status['jobID']}", key).json()
    assert status["state"] == "failed"
    for path in (f"/jobs/{status['jobID']}", f"/jobs/{status['jobID']}/result"):
        body = svc.get(path, key).text
        assert not any(bad in body for bad in INTERNALS), body


# ------------------------------------------------------------------------ L6 restarts

_CRASHING = textwrap.dedent("""
    import sys, time
    from api.jobs import JobManager
    from layers.store import open_store
    where = sys.argv[1]
    jobs = JobManager(open_store(where) if where.startswith("postgresql") else where)
    job = jobs.submit("coverage", sys.argv[2], {}, lambda progress: time.sleep(600))
    print(job["jobID"], flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("kind", ["gpkg", "postgis"])
def test_jobs_survive_a_restart_and_a_crash(kind, tmp_path, request):
    settings = TEST_SETTINGS  # no jobs_dir: the default folder, named after the store
    leftover = Path(tempfile.mkdtemp(prefix="gisgrid-upload-"))
    (leftover / "copy.csv").write_text("x")
    old = time.time() - 3600
    os.utime(leftover / "copy.csv", (old, old))
    os.utime(leftover, (old, old))
    with running_service(kind, request, tmp_path, settings) as svc:
        key, headers = svc.keys.regulator, {"X-API-Key": svc.keys.regulator}
        folder = default_folder(svc.store_url)
        request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
        # server A runs a job to the end and is stopped
        with Server(svc.store_url, settings) as first, httpx.Client(
                base_url=first.url, timeout=60) as client:
            r = client.post("/analyses/validate", headers=headers, json={})
            assert r.status_code == 202
            job = r.json()["jobID"]
            deadline = time.monotonic() + 120
            while client.get(f"/jobs/{job}", headers=headers).json()["state"] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            before = client.get(f"/jobs/{job}/result", headers=headers)
            assert before.status_code == 200
        # a server process killed with -9 while its job runs
        # (on PostGIS the jobs are in the store, on GeoPackage in the default folder)
        where = svc.store_url if kind == "postgis" else str(folder)
        crash = subprocess.Popen([sys.executable, "-c", _CRASHING, where,
                                  svc.keys.ids["regulator"]], stdout=subprocess.PIPE,
                                 text=True, cwd=Path(__file__).parents[2])
        lost = crash.stdout.readline().strip()
        assert svc.get(f"/jobs/{lost}", key).json()["state"] in ("queued", "running")
        os.kill(crash.pid, signal.SIGKILL)
        crash.wait()
        # server B on the same store (and so the same table, or default folder)
        with Server(svc.store_url, settings) as again, httpx.Client(
                base_url=again.url, timeout=60) as client:
            status = client.get(f"/jobs/{job}", headers=headers).json()
            assert status["state"] == "done"
            assert client.get(f"/jobs/{job}/result", headers=headers).json() == before.json()
            failed = client.get(f"/jobs/{lost}", headers=headers).json()
            assert failed["state"] == "failed" and "restarted" in failed["error"]
            assert job in {j["jobID"] for j in client.get("/jobs", headers=headers)
                           .json()["jobs"]}
    assert not leftover.exists()


@pytest.fixture(params=["folder", "postgis"])
def shelf(request, tmp_path):
    """Where job records are kept: a folder (GeoPackage), or a PostGIS store's table."""
    if request.param == "folder":
        yield tmp_path
        return
    from layers.store import open_store
    from tests.api.server import database

    with database(request.getfixturevalue("postgis_url"), "gisgrid_jobs") as url, \
            open_store(url) as store:
        yield store


def test_a_live_process_keeps_its_jobs(shelf):
    """Several worker processes share the jobs: one starting does not fail the jobs
    another is running."""
    first = JobManager(shelf)
    job = first.submit("x", "k" * 12, {}, lambda progress: time.sleep(2))
    second = JobManager(shelf)
    assert second.recovered == 0
    assert second.get(job["jobID"], "k" * 12)["state"] in ("queued", "running")
    first.shutdown()
    second.shutdown()


def test_the_quota_counts_every_worker_process(shelf):
    """Worker processes share the jobs: a key's quota is counted over all of them, and a
    finished job frees its place."""
    from api.errors import TooManyRequests

    first, second = (JobManager(shelf, max_per_key=2) for _ in range(2))
    gate = threading.Event()
    first.submit("x", "k" * 12, {}, lambda progress: gate.wait(10))
    second.submit("x", "k" * 12, {}, lambda progress: gate.wait(10))
    with pytest.raises(TooManyRequests, match="MAX_JOBS_PER_KEY=2"):
        first.submit("x", "k" * 12, {}, lambda progress: None)
    second.submit("x", "j" * 12, {}, lambda progress: None)  # another key
    gate.set()
    deadline = time.monotonic() + 10
    while any(j["state"] != "done" for j in first.owned("k" * 12)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.submit("x", "k" * 12, {}, lambda progress: None)
    first.shutdown()
    second.shutdown()


def test_two_machines_on_one_postgis_store_answer_each_others_jobs(tmp_path, request):
    """Jobs are kept in the store: a job started through one server is polled, and its
    result read, through another that shares nothing with it but the database (its own
    jobs folder, as on another machine) — before, each answered 404 for the other's."""
    with running_service("postgis", request, tmp_path) as svc:
        headers = {"X-API-Key": svc.keys.regulator}
        other = dataclasses.replace(TEST_SETTINGS, jobs_dir=str(tmp_path / "elsewhere"))
        with Server(svc.store_url, other) as second, httpx.Client(
                base_url=second.url, timeout=60) as client:
            r = svc.client.post("/analyses/validate", headers=headers, json={})
            assert r.status_code == 202, r.text
            job = r.json()["jobID"]
            deadline = time.monotonic() + 120
            while (status := client.get(f"/jobs/{job}", headers=headers)).json()[
                    "state"] != "done":
                assert status.status_code == 200, status.text
                assert time.monotonic() < deadline
                time.sleep(0.2)
            there = client.get(f"/jobs/{job}/result", headers=headers)
            here = svc.get(f"/jobs/{job}/result", svc.keys.regulator)
            assert there.status_code == here.status_code == 200
            assert there.json() == here.json()
            # and still another key's job is 404 there
            assert client.get(f"/jobs/{job}", headers={"X-API-Key": svc.keys.admin_a}
                              ).status_code == 404


def test_a_dismissed_job_keeps_nothing_and_frees_its_place(shelf):
    """A running job dismissed — through this process or another one sharing the jobs —
    leaves the key's quota at once, and what it does after is not kept."""
    first, second = (JobManager(shelf, max_per_key=1) for _ in range(2))
    gate = threading.Event()
    key = "d" * 12
    job = first.submit("x", key, {}, lambda progress: gate.wait(10) and {"kept": True})
    from api.errors import NotFound, TooManyRequests

    with pytest.raises(TooManyRequests, match="MAX_JOBS_PER_KEY=1"):
        first.submit("x", key, {}, lambda progress: None)
    assert second.dismiss(job["jobID"], key)["state"] == "dismissed"
    later = second.submit("x", key, {}, lambda progress: {"n": 1})  # its place is free
    gate.set()
    deadline = time.monotonic() + 10
    while first.owned(key) and first.owned(key)[0]["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # the dismissed job has ended and tried to keep its state
    assert [j["jobID"] for j in first.owned(key)] == [later["jobID"]]
    with pytest.raises(NotFound):
        first.get(job["jobID"], key)
    with pytest.raises(FileNotFoundError):
        first.result_text(job["jobID"])
    first.shutdown()
    second.shutdown()
