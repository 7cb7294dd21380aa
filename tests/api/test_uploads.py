"""Uploads over HTTP (``POST /imports/{layer}``) on both stores: every format, datum
conversion, problems listed by row with nothing stored, 413, who may write what, the
write modes (an existing layer needs one), references and the change log (issue 15)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
import pytest
import shapely

from gis_grid.model import schema_for
from layers.datum import wgs84_to_gcj02
from layers.files import write_file
from tests.api.server import BANK_A, BANK_B, TEST_SETTINGS, Server, running_service


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    with running_service(request.param, request, tmp_path_factory.mktemp("up")) as service:
        yield service


def upload(svc, layer, key, name, content, **params):
    return svc.post(f"/imports/{layer}", key, files={"file": (name, content)}, params=params)


def count(svc, layer, key, **params):
    r = svc.get(f"/collections/{layer}/items", key, params={"limit": 1, **params})
    assert r.status_code == 200, r.text
    return r.json()["numberMatched"]


def outlets_csv(rows: pd.DataFrame, *, gcj02: bool = False) -> bytes:
    lon, lat = rows.geometry.x.to_numpy(), rows.geometry.y.to_numpy()
    if gcj02:
        lon, lat = wgs84_to_gcj02(lon, lat)
    table = pd.DataFrame(rows.drop(columns="geometry")).assign(lon=lon, lat=lat)
    return table.to_csv(index=False).encode("utf-8")


def own_outlets(svc, bank=BANK_A):
    outlets = svc.sample.layers["outlets"]
    return outlets[outlets["institution"] == bank].reset_index(drop=True)


def test_admin_uploads_its_outlets_in_every_format(svc, tmp_path):
    mine = own_outlets(svc)
    theirs = count(svc, "outlets", svc.keys.regulator, institution=BANK_B)
    more = pd.concat([mine, _new_outlet(mine)], ignore_index=True)
    for ext in (".geojson", ".gpkg"):
        path = tmp_path / f"outlets{ext}"
        write_file(more, path, layer="outlets")
        r = upload(svc, "outlets", svc.keys.admin_a, path.name, path.read_bytes(),
                   mode="replace")
        assert r.status_code == 201, (ext, r.text)
        assert r.json()["stored"] == len(mine) + 1
        assert count(svc, "outlets", svc.keys.admin_a) == len(mine) + 1
        assert count(svc, "outlets", svc.keys.regulator, institution=BANK_B) == theirs
    # A zipped Shapefile is read and checked too; its DBF cuts field names to 10
    # characters (`institution` → `institutio`), and the import gives them back.
    path = tmp_path / "outlets.zip"
    with pytest.warns(UserWarning, match="institution → institutio"):
        write_file(mine, path, layer="outlets")
    r = upload(svc, "outlets", svc.keys.admin_a, path.name, path.read_bytes(), mode="replace")
    assert r.status_code == 201, r.text
    assert r.json()["removed"] == 1  # the new outlet, which no device uses
    assert count(svc, "outlets", svc.keys.admin_a, institution=BANK_A) == len(mine)
    # CSV with GCJ-02 (Amap) coordinates: converted back to WGS84 on the way in
    r = upload(svc, "outlets", svc.keys.admin_a, "网点.csv", outlets_csv(mine, gcj02=True),
               crs="gcj02", mode="replace")
    assert r.status_code == 201, r.text
    assert r.json() | {"stored": len(mine), "mode": "replace"} == r.json()
    one = mine.iloc[0]
    doc = svc.get(f"/collections/outlets/items/{one['id']}", svc.keys.admin_a).json()
    lon, lat = doc["geometry"]["coordinates"]
    metres = np.hypot((lon - one.geometry.x) * 95_000, (lat - one.geometry.y) * 111_000)
    assert metres < 0.5
    assert count(svc, "outlets", svc.keys.regulator) == len(svc.sample.layers["outlets"])


def _new_outlet(outlets: pd.DataFrame, new_id: str = "NSH-O-900") -> pd.DataFrame:
    """One more outlet of the first one's bank, at its place, which no device uses."""
    return outlets.iloc[:1].assign(id=new_id, name="新设助农点", tier="助农点")


def test_problems_are_listed_by_row_and_nothing_is_stored(svc):
    before = count(svc, "outlets", svc.keys.admin_a)
    rows = own_outlets(svc).iloc[:4].copy()
    text = outlets_csv(rows).decode()
    lines = text.splitlines()
    lines[2] = lines[2].replace("一级支行", "支行").replace("二级支行", "支行").replace(
        "分理处", "支行").replace("助农点", "支行")
    lines[3] = lines[3].rsplit(",", 2)[0] + ",1130.2," + lines[3].rsplit(",", 1)[1]
    r = upload(svc, "outlets", svc.keys.admin_a, "outlets.csv", "\n".join(lines).encode(),
               mode="replace")
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    where = {(p["where"], p["field"]) for p in problems}
    assert ("row 3", "tier") in where and ("row 4", "lon") in where
    assert all(p["source"] == "outlets.csv" for p in problems)
    assert "nothing was stored" in r.json()["description"]
    assert count(svc, "outlets", svc.keys.admin_a) == before


def test_rows_of_another_institution_are_refused(svc):
    before = count(svc, "outlets", svc.keys.regulator)
    rows = pd.concat([own_outlets(svc).iloc[:2], own_outlets(svc, BANK_B).iloc[:1]])
    r = upload(svc, "outlets", svc.keys.admin_a, "mixed.csv", outlets_csv(rows),
               mode="upsert")
    assert r.status_code == 403, r.text
    assert [p["where"] for p in r.json()["problems"]] == ["row 4"]
    assert r.json()["problems"][0]["field"] == "institution"
    # B's outlet ids cannot be taken over by A either, and the answer is the one for an
    # id that exists nowhere: it tells A nothing of B's rows (issue 18, M4)
    taken = own_outlets(svc, BANK_B).iloc[:1].assign(institution=BANK_A)
    unheard = taken.assign(id=f"{BANK_B}-O-98765")
    answers = []
    for rows in (taken, unheard):
        r = upload(svc, "outlets", svc.keys.admin_a, "taken.csv", outlets_csv(rows),
                   mode="upsert")
        assert r.status_code == 422, r.text
        problem = r.json()["problems"][0]
        assert f"begins with '{BANK_A}-'" in problem["message"], problem
        answers.append(problem["message"].replace(str(rows["id"].iloc[0]), "ID"))
    assert answers[0] == answers[1]
    assert count(svc, "outlets", svc.keys.regulator) == before


def test_too_large_uploads_are_413(svc):
    big = b"lon,lat\n" + b"110.9,30.8\n" * 30_000  # ~330 KiB > the test limit of 256 KiB
    r = upload(svc, "outlets", svc.keys.admin_a, "big.csv", big)
    assert r.status_code == 413 and "limited" in r.json()["description"]
    # without a Content-Length (chunked), refused as the body streams in
    boundary = "gisgridboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        for _ in range(40):
            yield b"110.9,30.8\n" * 1000
        yield tail

    r = svc.client.post("/imports/outlets", content=body(), headers={
        "X-API-Key": svc.keys.admin_a,
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413


def test_who_may_write_what(svc, tmp_path):
    mine = own_outlets(svc).iloc[:2]
    csv = outlets_csv(mine)
    assert upload(svc, "outlets", svc.keys.regulator, "o.csv", csv).status_code == 403
    assert upload(svc, "outlets", svc.keys.worker_a, "o.csv", csv).status_code == 403
    units = svc.sample.layers["units"].iloc[:2]
    path = tmp_path / "units.geojson"
    write_file(units, path, layer="units")
    assert upload(svc, "units", svc.keys.admin_a, path.name,
                  path.read_bytes()).status_code == 403
    assert upload(svc, "free_form", svc.keys.admin_a, "o.csv", csv).status_code == 403
    assert upload(svc, "api_keys", svc.keys.admin_a, "o.csv", csv).status_code == 403
    assert upload(svc, "outlets", None, "o.csv", csv).status_code == 401
    r = upload(svc, "outlets", svc.keys.admin_a, "o.txt", csv, mode="upsert")
    assert r.status_code == 422 and "unknown type" in r.json()["description"]
    assert upload(svc, "Bad-Name", svc.keys.admin_a, "o.csv", csv).status_code == 400


def ledger_rows(svc, grid: str, period: str, bank: str = BANK_A) -> bytes:
    return pd.DataFrame({
        "grid": [grid], "institution": [bank], "period": [period],
        "households_total": [100], "households_files": [60], "merchants_total": [10],
        "merchants_files": [5], "firms_total": [2], "firms_files": [1], "surveys": [3],
        "checks": [2]}).to_csv(index=False).encode()


def test_worker_upserts_its_own_ledger_rows_only(svc):
    grids = svc.sample.layers["grids"]
    mine = grids.loc[grids["worker"] == svc.sample.worker_a, "code"].iloc[0]
    other = grids.loc[grids["worker"] != svc.sample.worker_a, "code"].iloc[0]
    before = count(svc, "ledger", svc.keys.admin_a)
    r = upload(svc, "ledger", svc.keys.worker_a, "ledger.csv",
               ledger_rows(svc, mine, "2026-07"), mode="upsert")
    assert r.status_code == 201, r.text
    assert r.json()["mode"] == "upsert" and r.json()["added"] == 1
    assert count(svc, "ledger", svc.keys.admin_a) == before + 1
    # the same key again changes it
    again = ledger_rows(svc, mine, "2026-07").replace(b",100,60,", b",100,61,")
    r = upload(svc, "ledger", svc.keys.worker_a, "ledger.csv", again, mode="upsert")
    assert r.status_code == 201 and (r.json()["added"], r.json()["changed"]) == (0, 1)
    assert count(svc, "ledger", svc.keys.admin_a) == before + 1
    assert count(svc, "ledger", svc.keys.worker_a, period="2026-07") == 1
    for grid, bank in ((other, BANK_A), (mine, BANK_B)):
        r = upload(svc, "ledger", svc.keys.worker_a, "ledger.csv",
                   ledger_rows(svc, grid, "2026-07", bank), mode="upsert")
        assert r.status_code == 403, r.text
    r = upload(svc, "ledger", svc.keys.worker_a, "ledger.csv",
               ledger_rows(svc, mine, "2026-08"), mode="replace")
    assert r.status_code == 403
    # B's administrator sees none of it
    assert count(svc, "ledger", svc.keys.admin_b, period="2026-07") == 0


def test_worker_reports_events_as_itself(svc):
    me = svc.sample.worker_a
    unit = svc.sample.layers["units"].iloc[5]
    point = unit.geometry.representative_point()

    def report(reporter: str, event_id: str) -> bytes:
        frame = pd.DataFrame({"id": [event_id], "kind": ["general"], "grid": [unit["code"]],
                              "reporter": [reporter], "state": ["reported"],
                              "reported_at": ["2026-06-02T09:30:00Z"],
                              "lon": [point.x], "lat": [point.y]})
        out = io.StringIO()
        frame.to_csv(out, index=False)
        return out.getvalue().encode()

    r = upload(svc, "events", svc.keys.worker_a, "report.csv", report(me, f"{me}-10"),
               mode="append")
    assert r.status_code == 201, r.text
    events = svc.get("/collections/events/items", svc.keys.worker_a).json()["features"]
    assert f"{me}-10" in {e["id"] for e in events}
    assert upload(svc, "events", svc.keys.worker_a, "report.csv",
                  report(svc.sample.worker_b, f"{svc.sample.worker_b}-11"), mode="upsert"
                  ).status_code == 403
    # another worker's event id cannot be overwritten
    r = upload(svc, "events", svc.keys.worker_a, "report.csv", report(me, "E-3"),
               mode="upsert")
    assert r.status_code == 422
    assert svc.get("/collections/events/items/E-3", svc.keys.admin_b).json()[
        "properties"]["reporter"] == svc.sample.worker_b


def test_uploads_to_one_layer_through_two_servers_at_once_keep_every_row(svc):
    """Two servers on one store (as two worker processes or two machines are: each its
    own connections and its own in-process lock) take ledger uploads to the same layer
    at once: every upserted row is kept, none overwritten by a merge that did not see
    it."""
    grids = svc.sample.layers["grids"]
    mine = grids.loc[grids["worker"] == svc.sample.worker_a, "code"].iloc[0]
    periods = [f"2030-{m:02d}" for m in range(1, 13)]
    with Server(svc.store_url, TEST_SETTINGS) as second, httpx.Client(
            base_url=second.url, timeout=60) as other:

        def send(i: int, period: str) -> httpx.Response:
            client = svc.client if i % 2 else other
            return client.post("/imports/ledger", headers={"X-API-Key": svc.keys.admin_a},
                               params={"mode": "upsert"},
                               files={"file": ("ledger.csv", ledger_rows(svc, mine, period))})

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(send, range(len(periods)), periods))
    assert [r.status_code for r in answers] == [201] * len(periods), [r.text for r in answers]
    for period in periods:
        assert count(svc, "ledger", svc.keys.admin_a, period=period) == 1, period


def test_an_existing_layer_needs_a_mode(svc):
    before = count(svc, "outlets", svc.keys.regulator)
    r = upload(svc, "outlets", svc.keys.admin_a, "o.csv", outlets_csv(own_outlets(svc)))
    assert r.status_code == 422, r.text
    assert "mode=replace|append|upsert|delete" in r.json()["description"]
    # a worker is named the modes it may use
    grids = svc.sample.layers["grids"]
    mine = grids.loc[grids["worker"] == svc.sample.worker_a, "code"].iloc[0]
    r = upload(svc, "ledger", svc.keys.worker_a, "l.csv", ledger_rows(svc, mine, "2026-09"))
    assert r.status_code == 422 and "mode=append|upsert" in r.json()["description"]
    assert count(svc, "outlets", svc.keys.regulator) == before


def test_a_change_leaving_devices_without_their_outlet_is_refused(svc):
    """Replacing the caller's outlets without one that devices use: 422 naming the
    devices, and nothing changes; deleting it by key is refused the same way."""
    mine = own_outlets(svc)
    devices = svc.sample.layers["devices"]
    used = devices.loc[devices["outlet"].isin(mine["id"]), "outlet"].iloc[0]
    users = sorted(devices.loc[devices["outlet"] == used, "id"])
    before = count(svc, "outlets", svc.keys.regulator)
    r = upload(svc, "outlets", svc.keys.admin_a, "o.csv",
               outlets_csv(mine[mine["id"] != used]), mode="replace")
    assert r.status_code == 422, r.text
    message = " ".join(p["message"] for p in r.json()["problems"])
    assert "layer devices" in message and users[0] in message, message
    r = upload(svc, "outlets", svc.keys.admin_a, "gone.csv",
               f"id\n{used}\n".encode(), mode="delete")
    assert r.status_code == 422, r.text
    assert count(svc, "outlets", svc.keys.regulator) == before
    # one no device uses is appended and deleted; another bank's is not the caller's
    new = _new_outlet(mine, "NSH-O-901")
    r = upload(svc, "outlets", svc.keys.admin_a, "new.csv", outlets_csv(new), mode="append")
    assert r.status_code == 201 and r.json()["added"] == 1, r.text
    r = upload(svc, "outlets", svc.keys.admin_a, "new.csv", outlets_csv(new), mode="append")
    assert r.status_code == 422 and "already in layer outlets" in r.text
    r = upload(svc, "outlets", svc.keys.admin_a, "gone.csv", b"id\nNSH-O-901\n",
               mode="delete")
    assert r.status_code == 201 and r.json()["removed"] == 1, r.text
    theirs = own_outlets(svc, BANK_B)["id"].iloc[0]
    answers = []
    for ident in (theirs, f"{BANK_B}-O-98765"):  # B's, and one that exists nowhere
        r = upload(svc, "outlets", svc.keys.admin_a, "gone.csv", f"id\n{ident}\n".encode(),
                   mode="delete")
        assert r.status_code == 422 and "not among your rows" in r.text, r.text
        answers.append(r.json()["problems"][0]["message"].replace(ident, "ID"))
    assert answers[0] == answers[1]  # no existence oracle (issue 18, M4)
    assert count(svc, "outlets", svc.keys.regulator) == before


def test_uploads_are_logged_with_the_key(svc):
    """Issue 15's done-when through the API: an upsert of one changed and one new outlet
    adds one, is logged with the key, and a restore brings the layer back."""
    mine = own_outlets(svc)
    total = count(svc, "outlets", svc.keys.regulator)
    first = mine.iloc[:1]
    changed = first.assign(name=first["name"] + "（迁址）")
    new = _new_outlet(mine, "NSH-O-902")
    r = upload(svc, "outlets", svc.keys.admin_a, "move.csv",
               outlets_csv(pd.concat([changed, new])), mode="upsert")
    assert r.status_code == 201, r.text
    assert (r.json()["added"], r.json()["changed"], r.json()["total"]) == (1, 1, total + 1)
    assert count(svc, "outlets", svc.keys.regulator) == total + 1
    with svc.store() as store:
        entry = store.history("outlets", since_id=r.json()["change"], with_old=True)[0]
        assert (entry.added, entry.changed) == (["NSH-O-902"], [first["id"].iloc[0]])
        assert "admin of NSH" in entry.who and "POST /imports/outlets?mode=upsert" in entry.how
        assert entry.old[0]["name"] == first["name"].iloc[0]
        restored = store.restore("outlets", entry.id)
    assert (restored.removed, restored.changed) == (["NSH-O-902"], [first["id"].iloc[0]])
    assert count(svc, "outlets", svc.keys.regulator) == total
    doc = svc.get(f"/collections/outlets/items/{first['id'].iloc[0]}", svc.keys.admin_a).json()
    assert doc["properties"]["name"] == first["name"].iloc[0]
    # institutions are reference data: not uploaded, so not replaced through the API
    institutions = svc.sample.layers["institutions"].to_csv(index=False).encode()
    assert upload(svc, "institutions", svc.keys.admin_a, "i.csv", institutions,
                  mode="replace").status_code == 403


def test_upload_errors_tell_nothing_of_others_rows(svc):
    """Issue 18, M4: an NSH admin upserting staff under YCB's real ids got a 422 naming
    them "already used by a row you may not change"; ids nobody uses were accepted. Now
    both are refused alike for NSH's namespace, and a worker's events likewise."""
    staff = svc.sample.layers["staff"]
    mine = staff[staff["institution"] == BANK_A].iloc[:1]
    real = staff.loc[staff["institution"] == BANK_B, "id"].iloc[:3].tolist()
    made_up = [f"{BANK_B}-S-{9000 + k}" for k in range(3)]

    def staff_csv(ids):
        rows = pd.concat([mine] * len(ids), ignore_index=True).assign(id=ids)
        fields = [f for f in schema_for("staff").field_names if f in rows.columns]
        table = pd.DataFrame(rows[fields])
        table["lon"], table["lat"] = rows.geometry.x.to_numpy(), rows.geometry.y.to_numpy()
        return table.to_csv(index=False).encode("utf-8")

    before = count(svc, "staff", svc.keys.regulator)
    answers = []
    for ids in (real, made_up):
        r = upload(svc, "staff", svc.keys.admin_a, "staff.csv", staff_csv(ids), mode="upsert")
        assert r.status_code == 422, r.text
        body = r.json()
        messages = [p["message"] for p in body["problems"]]
        assert all(f"begins with '{BANK_A}-'" in m for m in messages), messages
        description = body["description"]
        for i in ids:
            description = description.replace(i, "ID")
        answers.append(([m.replace(i, "ID") for m, i in zip(messages, ids, strict=True)],
                        description))
    assert answers[0] == answers[1]
    assert count(svc, "staff", svc.keys.regulator) == before
    # in its own namespace a new id is simply added
    r = upload(svc, "staff", svc.keys.admin_a, "staff.csv", staff_csv([f"{BANK_A}-S-9001"]),
               mode="upsert")
    assert r.status_code == 201 and r.json()["added"] == 1, r.text
    r = upload(svc, "staff", svc.keys.admin_a, "gone.csv", f"id\n{BANK_A}-S-9001\n".encode(),
               mode="delete")
    assert r.status_code == 201 and r.json()["removed"] == 1, r.text
    # a worker's events: B's E-3 and an id nobody uses are answered alike
    events = svc.sample.layers["events"]
    own = events[events["reporter"] == svc.sample.worker_a].iloc[:1]
    answers = []
    for ident in ("E-3", "E-405"):
        row = own.assign(id=ident, reported_at=own["reported_at"].astype(str))
        text = row.to_json(to_wgs84=True).encode()
        r = upload(svc, "events", svc.keys.worker_a, "events.geojson", text, mode="upsert")
        assert r.status_code == 422, r.text
        message = r.json()["problems"][0]["message"]
        assert "its reporter's id followed by '-'" in message, message
        answers.append(message.replace(ident, "ID"))
    assert answers[0] == answers[1]


def test_how_far_outside_is_asked_as_the_cli_asks_it(svc):
    """``max_outside`` (km) is ``gisgrid import --max-outside``: an outlet about 4.8 km
    east of the territory's easternmost point passes the default 20 km, not 1 km."""
    territory = svc.sample.layers["territory"]
    coords = shapely.get_coordinates(territory.geometry.to_numpy())
    east = coords[np.argmax(coords[:, 0])]
    new = _new_outlet(own_outlets(svc), "NSH-O-950")
    new = new.set_geometry([shapely.Point(east[0] + 0.05, east[1])], crs=new.crs)
    r = upload(svc, "outlets", svc.keys.admin_a, "far.csv", outlets_csv(new),
               mode="append", max_outside=1)
    assert r.status_code == 422 and "outside" in r.text, r.text
    r = upload(svc, "outlets", svc.keys.admin_a, "far.csv", outlets_csv(new), mode="append")
    assert r.status_code == 201, r.text
    r = upload(svc, "outlets", svc.keys.admin_a, "gone.csv", b"id\nNSH-O-950\n",
               mode="delete")
    assert r.status_code == 201, r.text
