"""Field records over HTTP (issue 16): a worker reports events and patrols in its own
grids, moves them along their path with If-Match, and nothing else gets through — on
GeoPackage and PostGIS, through the real service."""

from __future__ import annotations

import pytest
import shapely

from gis_grid.events import adopt_events
from layers.store import open_store
from tests.api.server import running_service


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    with running_service(request.param, request,
                         tmp_path_factory.mktemp(f"records{request.param}")) as running:
        with open_store(running.store_url) as store:  # the sample's events, adopted once
            store.write("events", adopt_events(store.read("events")))
        yield running


def _grid_of(svc, worker: str):
    grids = svc.sample.layers["grids"]
    return grids[grids["worker"] == worker].iloc[0]


def _feature(point: shapely.Point | None, **props) -> dict:
    return {"type": "Feature", "properties": props,
            "geometry": None if point is None else {"type": "Point",
                                                    "coordinates": [point.x, point.y]}}


def _patch(svc, path, key, body, etag=None):
    headers = {"X-API-Key": key}
    if etag is not None:
        headers["If-Match"] = etag
    return svc.client.patch(path, json=body, headers=headers)


def test_a_worker_reports_in_its_grid_and_moves_the_event_with_if_match(svc):
    grid = _grid_of(svc, svc.sample.worker_a)
    inside = grid.geometry.representative_point()
    made = svc.post("/collections/events/items", svc.keys.worker_a,
                    json=_feature(inside, kind="general", summary="井盖缺失",
                                  category="市容管控", reported_at="2026-06-02 08:00"))
    assert made.status_code == 201, made.text
    ident = made.json()["id"]
    assert made.headers["location"].endswith(f"/collections/events/items/{ident}")
    assert made.headers["etag"] == '"1"' and made.json()["properties"]["grid"] == grid["code"]
    path = f"/collections/events/items/{ident}"
    assert _patch(svc, path, svc.keys.worker_a, {"state": "accepted"}).status_code == 428
    moved = _patch(svc, path, svc.keys.worker_a, {"state": "accepted"}, '"1"')
    assert moved.status_code == 200, moved.text
    assert moved.headers["etag"] == '"2"' and moved.json()["state"] == "accepted"
    stale = _patch(svc, path, svc.keys.worker_a, {"state": "handled_on_site"}, '"1"')
    assert stale.status_code == 412
    refused = _patch(svc, path, svc.keys.worker_a, {"state": "closed"}, '"2"')
    assert refused.status_code == 409 and "allowed: handle" in refused.text
    assert _patch(svc, path, svc.keys.worker_a, {"state": "handled_on_site"},
                  'W/"2"').status_code == 200
    with open_store(svc.store_url) as store:
        row = store.read("events", where={"id": [ident]}).iloc[0]
        log = store.read("event_log", where={"event": [ident]})
    assert row["state"] == "handled_on_site" and int(row["version"]) == 3
    assert row["category"] == "市容管控" and row["reporter"] == svc.sample.worker_a
    assert sorted(log["action"]) == ["accept", "handle"]
    with open_store(svc.store_url) as store:  # the change log names the key
        changes = [c for c in store.history("events") if ident in c.keys]
    assert changes and all(svc.keys.ids["worker_a"] in c.who for c in changes)
    assert any("PATCH /collections/events/items" in c.how for c in changes)
    # read back through the API, with the ETag to move it next
    got = svc.get(path, svc.keys.worker_a)
    assert got.json()["properties"]["state"] == "handled_on_site"
    assert got.headers["etag"] == '"3"'
    assert _patch(svc, path, svc.keys.worker_a, {"state": "resolved"},
                  got.headers["etag"]).status_code == 200


@pytest.mark.parametrize("props, status, words", [
    ({"kind": "general", "reported_at": "2025-02-30 08:00"}, 422, "not a time"),
    ({"kind": "general", "reported_at": "2999-01-01"}, 422, "future"),
    ({"kind": "nonsense"}, 422, "kind"),
    ({"kind": "general", "category": "外星人"}, 422, "不在定责分类中"),
    ({"kind": "general", "grid": "NOPE-GRID"}, 403, "not a grid you may report in"),
])
def test_bad_reports_are_refused_plainly(svc, props, status, words):
    inside = _grid_of(svc, svc.sample.worker_a).geometry.representative_point()
    answer = svc.post("/collections/events/items", svc.keys.worker_a,
                      json=_feature(None if "grid" in props else inside, **props))
    assert answer.status_code == status, answer.text
    assert words in answer.text


def test_no_one_writes_outside_its_scope(svc):
    # the sample's banks grid the same units: a grid worker B does not hold
    held_b = svc.sample.layers["grids__ycb"]
    held_b = set(held_b.loc[held_b["worker"] == svc.sample.worker_b, "code"])
    grids = svc.sample.layers["grids"]
    other = grids[~grids["code"].isin(held_b)].iloc[0]
    inside = other.geometry.representative_point()
    # worker B (the other bank) in worker A's grid, by point and by code
    answer = svc.post("/collections/events/items", svc.keys.worker_b,
                      json=_feature(inside, kind="general", grid=other["code"]))
    assert answer.status_code == 403 and "not a grid you may report in" in answer.text
    # the regulator reads only
    assert svc.post("/collections/events/items", svc.keys.regulator,
                    json=_feature(inside, kind="general")).status_code == 403
    # a point in Beijing
    far = svc.post("/collections/events/items", svc.keys.worker_a,
                   json=_feature(shapely.Point(116.4, 39.9), kind="general"))
    assert far.status_code == 422 and "outside the territory" in far.text
    # another bank's event is not there for B's admin
    assert _patch(svc, "/collections/events/items/E-1", svc.keys.admin_b,
                  {"state": "accepted"}, '"1"').status_code == 404
    assert _patch(svc, "/collections/events/items/NOPE", svc.keys.admin_a,
                  {"state": "accepted"}, '"1"').status_code == 404
    bad = _patch(svc, "/collections/events/items/E-2", svc.keys.admin_a,
                 {"state": "accepted", "reporter": "x"}, '"1"')
    assert bad.status_code == 422 and "cannot change reporter" in bad.text


def test_an_id_in_use_is_a_conflict(svc):
    inside = _grid_of(svc, svc.sample.worker_a).geometry.representative_point()
    ident = f"{svc.sample.worker_a}-API-1"  # a chosen id begins with the reporter's
    body = _feature(inside, kind="general", id=ident)
    made = svc.post("/collections/events/items", svc.keys.worker_a, json=body)
    assert made.status_code == 201, made.text
    again = svc.post("/collections/events/items", svc.keys.worker_a, json=body)
    assert again.status_code == 409 and ident in again.text


def test_a_chosen_id_tells_nothing_of_others_events(svc):
    """Issue 18, M4: another bank's event id (E-3, B's), an id nobody uses (E-404) and
    one in B's worker's namespace are refused for the caller's namespace, the same way
    each time: the 409 "in use" once told a worker which ids other banks' events had."""
    inside = _grid_of(svc, svc.sample.worker_a).geometry.representative_point()
    answers = []
    for ident in ("E-3", "E-404", f"{svc.sample.worker_b}-9"):
        r = svc.post("/collections/events/items", svc.keys.worker_a,
                     json=_feature(inside, kind="general", id=ident))
        assert r.status_code == 422, r.text
        assert f"begins with its reporter's id followed by '-' ({svc.sample.worker_a}-" \
            in r.json()["description"], r.text
        answers.append(r.json()["description"].replace(repr(ident), "ID"))
    assert len(set(answers)) == 1, answers
    with open_store(svc.store_url) as store:  # nothing was stored
        assert not store.read("events", where={"id": ["E-404", f"{svc.sample.worker_b}-9"]}
                              ).shape[0]


def test_patrols_are_the_workers_own_once_a_day(svc):
    grid = _grid_of(svc, svc.sample.worker_a)["code"]
    ok = svc.post("/collections/patrols/items", svc.keys.worker_a,
                  json={"grid": grid, "date": "2026-06-01"})
    assert ok.status_code == 201, ok.text
    again = svc.post("/collections/patrols/items", svc.keys.worker_a,
                     json={"grid": grid, "date": "2026-06-01"})
    assert again.status_code == 409
    assert svc.post("/collections/patrols/items", svc.keys.worker_a,
                    json={"grid": grid, "date": "2025-02-30"}).status_code == 422
    held_b = svc.sample.layers["grids__ycb"]
    held_b = set(held_b.loc[held_b["worker"] == svc.sample.worker_b, "code"])
    not_b = next(c for c in svc.sample.layers["grids"]["code"] if c not in held_b)
    assert svc.post("/collections/patrols/items", svc.keys.worker_b,
                    json={"grid": not_b}).status_code == 403
    assert svc.post("/collections/patrols/items", svc.keys.admin_a,
                    json={"grid": grid, "worker": svc.sample.worker_a,
                          "date": "2026-06-02"}).status_code == 201
    assert svc.post("/collections/patrols/items", svc.keys.admin_a,
                    json={"grid": grid, "worker": "someone-else"}).status_code == 403


def _entity_in(svc, worker: str, layer: str = "grids") -> str | None:
    grids = svc.sample.layers[layer]
    mine = grids[grids["worker"] == worker]
    entities = svc.sample.layers["entities"]
    inside = entities[entities.geometry.within(mine.geometry.union_all())]
    return None if inside.empty else str(inside["id"].iloc[0])


def test_an_inspection_makes_a_report_moved_with_if_match(svc):
    entity = _entity_in(svc, svc.sample.worker_a)
    assert entity is not None
    made = svc.post("/collections/inspections/items", svc.keys.worker_a,
                    json={"entity": entity, "date": "2026-06-01", "found": [5],
                          "detail": "承诺年化12%"})
    assert made.status_code == 201, made.text
    report = made.json()["report"]
    assert report["route"] == "city" and report["handler"] == "市金融办"
    assert made.headers["etag"] == '"1"' and report["id"] in made.headers["location"]
    again = svc.post("/collections/inspections/items", svc.keys.worker_a,
                     json={"entity": entity, "date": "2026-06-01", "found": [5]})
    assert again.status_code == 409
    path = f"/collections/risk_reports/items/{report['id']}"
    ok = _patch(svc, path, svc.keys.worker_a, {"status": "accepted"}, '"1"')
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"', ok.text
    assert _patch(svc, path, svc.keys.worker_a, {"status": "disposed"}, '"1"'
                  ).status_code == 412
    refused = _patch(svc, path, svc.keys.worker_a, {"status": "transferred"}, '"2"')
    assert refused.status_code == 409 and "department" in refused.text
    done = _patch(svc, path, svc.keys.admin_a,
                  {"status": "transferred", "department": "县公安局"}, '"2"')
    assert done.status_code == 200 and done.json()["status_zh"] == "已转办"
    # another bank's key: as if there were no such report
    assert _patch(svc, path, svc.keys.admin_b, {"status": "fed_back", "note": "x"},
                  '"3"').status_code == 404
    with open_store(svc.store_url) as store:
        row = store.read("risk_reports", where={"id": [report["id"]]}).iloc[0]
        log = store.read("report_log", where={"record": [report["id"]]})
    assert row["status"] == "transferred" and row["department"] == "县公安局"
    assert sorted(log["action"]) == ["accept", "transfer"]


def test_inspections_only_in_ones_own_grids(svc):
    held_a = svc.sample.layers["grids"]
    held_a = set(held_a.loc[held_a["worker"] == svc.sample.worker_a, "code"])
    entities = svc.sample.layers["entities"]
    grids = svc.sample.layers["grids"]
    others = grids[~grids["code"].isin(held_a)]
    outside = entities[entities.geometry.within(others.geometry.union_all())]
    answer = svc.post("/collections/inspections/items", svc.keys.worker_a,
                      json={"entity": str(outside["id"].iloc[0]), "found": [1]})
    assert answer.status_code == 403 and "not in a grid you may inspect" in answer.text
    assert svc.post("/collections/inspections/items", svc.keys.worker_a,
                    json={"entity": "NOPE", "found": [1]}).status_code == 403
    assert svc.post("/collections/inspections/items", svc.keys.regulator,
                    json={"entity": "NOPE"}).status_code == 403


def test_records_carry_only_their_fields(svc):
    inside = _grid_of(svc, svc.sample.worker_a).geometry.representative_point()
    answer = svc.post("/collections/events/items", svc.keys.worker_a,
                      json=_feature(inside, kind="general", state="closed"))
    assert answer.status_code == 422 and "'state' is not a field you may set" in answer.text
    answer = svc.post("/collections/patrols/items", svc.keys.worker_a,
                      json={"grid": "x", 'x");DROP TABLE staff;--': 1})
    assert answer.status_code == 422 and "DROP TABLE" in answer.text


def test_an_event_just_reported_can_be_replaced_or_withdrawn(svc):
    grid = _grid_of(svc, svc.sample.worker_a)
    inside = grid.geometry.representative_point()
    made = svc.post("/collections/events/items", svc.keys.worker_a,
                    json=_feature(inside, kind="general", summary="初报"))
    ident = made.json()["id"]
    path = f"/collections/events/items/{ident}"
    headers = {"X-API-Key": svc.keys.worker_a}
    body = _feature(inside, kind="coordination", summary="更正", category="民政")
    assert svc.client.put(path, json=body, headers=headers).status_code == 428
    done = svc.client.put(path, json=body, headers={**headers, "If-Match": '"1"'})
    assert done.status_code == 200 and done.headers["etag"] == '"2"', done.text
    again = svc.client.put(path, json=body, headers={**headers, "If-Match": '"1"'})
    assert again.status_code == 412
    got = svc.get(path, svc.keys.worker_a).json()["properties"]
    assert (got["kind"], got["summary"], got["category"], got["version"]) == (
        "coordination", "更正", "民政", 2)
    assert got["reporter"] == svc.sample.worker_a
    assert _patch(svc, path, svc.keys.worker_a, {"state": "accepted"}, '"2"'
                  ).status_code == 200
    moved = svc.client.put(path, json=body, headers={**headers, "If-Match": '"3"'})
    assert moved.status_code == 409 and "kept" in moved.text
    assert svc.client.delete(path, headers={**headers, "If-Match": '"3"'}).status_code == 409
    # a fresh one is withdrawn; the change log keeps it
    fresh = svc.post("/collections/events/items", svc.keys.worker_a,
                     json=_feature(inside, kind="general", summary="误报")).json()["id"]
    other = {"X-API-Key": svc.keys.worker_b, "If-Match": '"1"'}
    assert svc.client.delete(f"/collections/events/items/{fresh}",
                             headers=other).status_code == 404
    gone = svc.client.delete(f"/collections/events/items/{fresh}",
                             headers={**headers, "If-Match": '"1"'})
    assert gone.status_code == 204, gone.text
    assert svc.get(f"/collections/events/items/{fresh}", svc.keys.worker_a).status_code == 404
    with open_store(svc.store_url) as store:
        removed = [c for c in store.history("events") if fresh in c.removed]
    assert removed and svc.keys.ids["worker_a"] in removed[0].who


def test_part_4_is_declared(svc):
    classes = svc.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete" \
        in classes
    assert "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update" in classes


def test_a_worker_cannot_report_in_a_colleagues_grid(svc):
    """Issue 16, done when: 403 in another worker's grid (of the same bank)."""
    grids = svc.sample.layers["grids"]
    colleague = grids[grids["worker"].notna() & (grids["worker"] != svc.sample.worker_a)]
    assert len(colleague)
    target = colleague.iloc[0]
    inside = target.geometry.representative_point()
    answer = svc.post("/collections/events/items", svc.keys.worker_a,
                      json=_feature(inside, kind="general", grid=target["code"]))
    assert answer.status_code == 403, answer.text
    by_point = svc.post("/collections/events/items", svc.keys.worker_a,
                        json=_feature(inside, kind="general"))
    assert by_point.status_code == 403, by_point.text
