"""Writing field records over HTTP (issue 16; OGC API – Features Part 4 style): grid
events, daily patrols, inspections and risk reports, created one at a time and moved
along their path.

``POST /collections/events/items``
    A GeoJSON Feature (Point, or no geometry with a ``grid``): ``kind`` (required),
    ``grid``, ``summary``, ``category``, ``reported_at``, ``id``. The checks are the
    command line's (``gis_grid.events.place_report``: time, category, territory, grid,
    point within its grid), then ``gis_grid.events.report_event``. 201 with ``Location``
    and ``ETag`` (the event's version); 422 naming the problem; 409 for an id in use. An
    ``id`` the client chooses begins with the reporter's id and ``-`` (``api.auth.
    namespace``), else 422 whether or not the id is taken; left out, the service
    chooses one.
``PATCH /collections/events/items/{id}``
    ``{"state": "accepted", "note": …, "owner": …, "at": …}`` (a JSON merge patch of the
    state): the move is the state machine's (``gis_grid.events.move_event``), checked
    against ``If-Match`` (the version the caller saw; required, 428 without): 412 when
    the event changed since, 409 naming the allowed moves when the path does not allow it.
``POST /collections/patrols/items``
    ``{"grid": …, "date": "YYYY-MM-DD", "note": …}`` (properties of a Feature or a plain
    object): a day's patrol (``gis_grid.events.record_patrol``), strict date, the grid in
    the grid layer, once per worker, grid and day. 201.

``POST /collections/inspections/items``
    ``{"entity": …, "date": …, "found": [5], "detail": …}``: ``gisgrid inspect``'s
    ``gis_grid.riskflow.record_inspection``; a finding makes a risk report routed once,
    answered with its ``Location`` and ``ETag``.
``PATCH /collections/risk_reports/items/{id}``
    ``{"status": "accepted" | "disposed" | "transferred" …, "department": …, "note": …}``
    with ``If-Match``: ``gis_grid.riskflow.move`` (412 stale, 409 naming the allowed moves).

Who may write: a grid worker reports, patrols and inspects as itself, only in the grids
it holds (the grid layers' ``worker`` and ``institution`` fields), and moves the events
it reported and the reports of its inspections; an institution's administrator writes
for its own staff (``reporter`` / ``worker`` / ``inspector`` one of them) and moves their
events and reports; the regulator reads only (403). A grid the caller may not write in
is refused exactly like one that does not exist in its scope (403 naming the grid), and
another bank's event or report is 404 as if absent, so no write reveals another bank's
records. Every write is logged as the caller's key (``layers.history.acting``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import geopandas as gpd
import pandas as pd
import shapely
from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse, Response

from api.auth import OWN_STAFF, Principal, namespace
from api.dependencies import Caller
from api.errors import ApiError, Conflict, Forbidden, NotFound, Unprocessable
from gis_grid.errors import ConflictError, InputError, StoreError, TransitionRefused

router = APIRouter(tags=["Records"])


class PreconditionFailed(ApiError):
    status, code = 412, "PreconditionFailed"


class PreconditionRequired(ApiError):
    status, code = 428, "PreconditionRequired"


def _etag(version: int) -> str:
    return f'"{int(version)}"'


def _if_match(value: str | None) -> int:
    """The version an ``If-Match`` header names (``"3"``, ``W/"3"`` or ``3``)."""
    if value is None:
        raise PreconditionRequired("If-Match is required: send the ETag (version) of the "
                                   "event as you last read it")
    text = value.strip().removeprefix("W/").strip('"')
    try:
        version = int(text)
    except ValueError:
        raise PreconditionFailed(f"If-Match {value!r} is not an ETag of this service "
                                 "(the event's version, e.g. \"3\")") from None
    if version < 1:
        raise PreconditionFailed(f"If-Match {value!r}: versions start at 1")
    return version


def _properties(body: Any) -> tuple[dict, shapely.Geometry | None]:
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object (a GeoJSON Feature)")
    if body.get("type") == "Feature":
        props = body.get("properties") or {}
        if not isinstance(props, dict):
            raise Unprocessable("properties must be an object")
        geometry = body.get("geometry")
        if geometry is None:
            return props, None
        try:
            shape = shapely.from_geojson(json.dumps(geometry))
        except (shapely.errors.GEOSException, ValueError, TypeError):
            raise Unprocessable("geometry is not valid GeoJSON") from None
        if shape.geom_type != "Point" or shape.is_empty:
            raise Unprocessable("geometry must be a Point (longitude, latitude, WGS84)")
        return props, shape
    return body, None


def _only(props: dict, allowed: set[str], what: str) -> None:
    """A record carries only the fields it may set (issue 18, schema-locked writes)."""
    extra = sorted(set(props) - allowed)
    if extra:
        raise Unprocessable(f"{what}: {', '.join(repr(str(e)[:60]) for e in extra[:10])} "
                            f"is not a field you may set; use {', '.join(sorted(allowed))}")


def _text(props: dict, name: str, *, required: bool = False) -> str | None:
    value = props.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Unprocessable(f"{name} is required")
        return None
    if not isinstance(value, (str, int)):
        raise Unprocessable(f"{name} must be text")
    text = str(value).strip()
    if "\x00" in text or len(text) > 2000:
        raise Unprocessable(f"{name}: not a usable text (NUL byte or over 2,000 characters)")
    return text


def _areas(store, who: Principal):
    """The areas the caller's records are checked and located against: the rows of its
    institution in every grid layer (each bank keeps its own), else the units when the
    store has no grids (None when it has neither)."""
    from gis_grid.jobs.screening import area_reads, areas_of
    from gis_grid.naming import grid_layers
    from layers.runner import available_layers, read_inputs

    names = grid_layers(available_layers(store))
    frames = [store.read(n) for n in names]
    frames = [f for f in frames if len(f) and "institution" in f]
    if frames:
        merged = pd.concat([f.to_crs(frames[0].crs) for f in frames], ignore_index=True)
        mine = merged["institution"].astype("string").eq(who.institution).fillna(False)
        return merged[mine.to_numpy()].reset_index(drop=True)
    return areas_of(read_inputs(store, area_reads(None),
                                available=available_layers(store)))[0]


async def _own_staff(request: Request, who: Principal) -> set[str]:
    provider = request.app.state.provider
    return set(map(str, await provider.lookup(OWN_STAFF, who)))


def _writer(who: Principal) -> None:
    if who.role == "regulator":
        raise Forbidden("regulators read; grid workers and institution administrators write "
                        "field records")


def _held_grids(areas, who: Principal) -> set[str] | None:
    """The grids the caller may write in: a worker's own, an admin's institution's (None:
    no grid layer to tell)."""
    if areas is None or not len(areas) or "institution" not in areas:
        return None
    mine = areas["institution"].astype("string").eq(who.institution).fillna(False)
    if who.role == "worker" and "worker" in areas:
        mine &= areas["worker"].astype("string").eq(who.worker).fillna(False)
    return set(areas.loc[mine.to_numpy(), "code"].astype(str))


def _as(who: Principal, how: str, write):
    """``write`` run with the store's writes logged as the caller's key (the change log,
    ``layers.history``), as uploads are."""
    from layers.history import Actor, acting

    def run():
        with acting(Actor(f"api key {who.key_id}: {who}", how)):
            return write()
    return run


async def _acting_person(request: Request, who: Principal, props: dict, field: str,
                         what: str) -> str:
    """Who a record is made by: a grid worker itself (naming another is 403); for an
    administrator the ``field`` it gives, one of its institution's staff."""
    if who.role == "worker":
        if props.get(field) not in (None, who.worker):
            raise Forbidden(f"a grid worker {what} as itself")
        return who.worker
    person = _text(props, field, required=True)
    if person not in await _own_staff(request, who):
        raise Forbidden(f"{field} {person!r} is not one of your institution's staff")
    return person


def _is_mine(person: object, who: Principal, staff: set[str]) -> bool:
    """Whether a record made by ``person`` is the caller's to change: its own (a worker),
    or its staff's (an administrator; ``staff`` from :func:`_own_staff`)."""
    return person == who.worker if who.role == "worker" else person in staff


def _move_patch(body, key: str, extra: tuple[str, ...], what: str, hint: str = "") -> None:
    """A PATCH that moves a record along its path: a JSON object with ``key`` (the new
    state) and only ``extra`` besides (422 naming what else it holds)."""
    if not isinstance(body, dict) or not isinstance(body.get(key), str):
        raise Unprocessable(f'the body must be a JSON object with "{key}" (e.g. '
                            f'{{"{key}": "accepted"}}){hint}')
    unknown = set(body) - {key, *extra}
    if unknown:
        raise Unprocessable(f"cannot change {', '.join(sorted(unknown))}: {what} changes "
                            f"by its moves ({key}, with {', '.join(extra)})")


def _mover(who: Principal) -> str:
    """Who a move is logged as: the worker itself, or the institution's administrator."""
    return who.worker if who.role == "worker" else f"{who.institution} admin"


def _event_grid(store, who: Principal, grid: str | None, point, at, category) -> str | None:
    """The checks of a new or replaced event (``gis_grid.events.place_report``) and its
    grid, which must be one the caller may report in (403 otherwise, as for a grid that
    does not exist in its scope)."""
    from gis_grid.events import SUBJECT_CATEGORIES, place_report

    areas = _areas(store, who)
    territory = store.read("territory") if store.has("territory") else None
    try:
        located = place_report(grid=grid, point=point, at=at, category=category,
                               categories=SUBJECT_CATEGORIES, areas=areas,
                               territory=territory, layer="grids", source="events")
    except InputError as exc:
        if grid is not None and any(p.kind == "unknown grid" for p in exc.problems):
            raise Forbidden(f"grid {grid}: not a grid you may report in") from None
        raise _refused(exc) from None
    held = _held_grids(areas, who)
    if held is not None and located is not None and located not in held:
        raise Forbidden(f"grid {located}: not a grid you may report in")
    return located


def _refused(exc: InputError) -> Unprocessable:
    return Unprocessable(exc.report(limit=20))


@router.post("/collections/events/items", status_code=201,
             summary="Report an event (a grid worker's report, plan C)")
async def create_event(request: Request, who: Caller,
                       body: Annotated[Any, Body()] = None) -> JSONResponse:
    from gis_grid.events import (
        EVENT_KINDS,
        EVENTS,
        report_event,
    )

    _writer(who)
    props, point = _properties(body)
    _only(props, {"kind", "grid", "summary", "category", "reported_at", "id", "reporter"},
          "event")
    kind = _text(props, "kind", required=True)
    if kind not in EVENT_KINDS:
        raise Unprocessable(f"kind {kind!r}: one of {', '.join(EVENT_KINDS)}")
    reporter = await _acting_person(request, who, props, "reporter", "reports")
    grid = _text(props, "grid")
    summary = _text(props, "summary")
    category = _text(props, "category")
    at = _text(props, "reported_at")
    ident = _text(props, "id")
    names = namespace(who, EVENTS)
    if ident is not None and names is not None and names.outside(
            pd.Series([ident]), names.required(pd.DataFrame({"reporter": [reporter]})))[0]:
        # the same answer whether or not someone else's event has this id (issue 18, M4)
        raise Unprocessable(f"id {ident!r}: a new event's id begins with "
                            f"{names.describe()} ({reporter}-…), or is left out for the "
                            "service to choose")
    store = request.app.state.provider.store

    def write():
        located = _event_grid(store, who, grid, point, at, category)
        try:
            event = report_event(store, kind, reporter, grid=located, point=point,
                                 summary=summary, at=at, event_id=ident, category=category)
        except StoreError as exc:
            if "events adopt" in str(exc):
                raise Conflict("the events layer was stored without the workflow's columns; "
                               "the operator runs `gisgrid events adopt` once") from None
            raise
        except InputError as exc:
            if any(p.kind == "duplicate id" for p in exc.problems):
                raise Conflict(exc.problems[0].message) from None
            raise _refused(exc) from None
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        return event

    event = await anyio.to_thread.run_sync(_as(who, "POST /collections/events/items", write))
    row = event.iloc[0]
    base = str(request.base_url).rstrip("/")
    body_out = {"type": "Feature", "id": str(row["id"]),
                "geometry": None if point is None else {"type": "Point",
                                                        "coordinates": [point.x, point.y]},
                "properties": {"kind": kind, "grid": row["grid"] if isinstance(row["grid"], str)
                               else None, "reporter": reporter, "state": "reported",
                               "version": 1, "category": category, "summary": summary}}
    return JSONResponse(body_out, status_code=201, headers={
        "Location": f"{base}/collections/{EVENTS}/items/{row['id']}", "ETag": _etag(1)})


@router.patch("/collections/events/items/{featureId}",
              summary="Move an event along its path (a JSON merge patch of its state)")
async def patch_event(request: Request, featureId: str, who: Caller,
                      body: Annotated[Any, Body()] = None,
                      if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    from gis_grid.events import EVENTS, STATE_LABELS, move_event

    _writer(who)
    _move_patch(body, "state", ("note", "owner", "at"), "an event",
                "; other properties of an event change only by its moves")
    expected = _if_match(if_match)
    store = request.app.state.provider.store
    staff = await _own_staff(request, who) if who.role == "admin" else set()

    def write():
        rows = store.read(EVENTS, where={"id": [featureId]}) if store.has(EVENTS) \
            else pd.DataFrame()
        if not len(rows):
            raise NotFound(f"no event {featureId!r}")
        row = rows.iloc[0]
        reporter = str(row["reporter"])
        mine = _is_mine(reporter, who, staff)
        if not mine:
            raise NotFound(f"no event {featureId!r}")  # another bank's: as if absent
        if pd.isna(row.get("version")):
            raise Conflict(f"event {featureId} was stored without the workflow's columns; "
                           "the operator runs `gisgrid events adopt` once")
        if int(row["version"]) != expected:
            raise PreconditionFailed(f"event {featureId} is at version {int(row['version'])}, "
                                     f"not {expected}: read it again")
        actor = _mover(who)
        try:
            move = move_event(store, featureId, body["state"], actor=actor,
                              at=body.get("at"), note=body.get("note"),
                              owner=body.get("owner"), expected_version=expected, retries=0)
        except TransitionRefused as exc:
            raise Conflict(str(exc)) from None
        except ConflictError:
            raise PreconditionFailed(f"event {featureId} changed meanwhile: read it "
                                     "again") from None
        except InputError as exc:
            raise _refused(exc) from None
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        return move

    move = await anyio.to_thread.run_sync(
        _as(who, f"PATCH /collections/events/items/{featureId}", write))
    state = move.step.target
    return JSONResponse({"id": featureId, "state": state, "state_zh": STATE_LABELS[state],
                         "version": move.version},
                        headers={"ETag": _etag(move.version)})


@router.post("/collections/patrols/items", status_code=201,
             summary="Record a day's patrol of a grid (每天巡查, plan C2)")
async def create_patrol(request: Request, who: Caller,
                        body: Annotated[Any, Body()] = None) -> JSONResponse:
    from gis_grid.events import LOCAL_TZ, PATROLS, check_day, check_grid, record_patrol

    _writer(who)
    props, _ = _properties(body)
    _only(props, {"grid", "date", "note", "worker"}, "patrol")
    grid = _text(props, "grid", required=True)
    worker = await _acting_person(request, who, props, "worker", "patrols")
    day_text = _text(props, "date")
    note = _text(props, "note")
    store = request.app.state.provider.store

    def write():
        try:
            day = check_day(day_text, source=PATROLS, field="date") if day_text else \
                pd.Timestamp.now(tz=LOCAL_TZ).date()
            areas = _areas(store, who)
            held = _held_grids(areas, who)
            if held is not None and grid not in held:
                raise Forbidden(f"grid {grid}: not a grid you may patrol")
            check_grid(grid, areas, source=PATROLS, layer="grids")
            record_patrol(store, worker, grid, day, note)
        except InputError as exc:
            if any(p.kind == "duplicate patrol" for p in exc.problems):
                raise Conflict(exc.problems[0].message) from None
            raise _refused(exc) from None
        return day

    day = await anyio.to_thread.run_sync(_as(who, "POST /collections/patrols/items", write))
    return JSONResponse({"worker": worker, "grid": grid, "date": day.isoformat(),
                         "note": note}, status_code=201)


@router.post("/collections/inspections/items", status_code=201,
             summary="Record an inspection of a market entity (plan A3); a finding makes a "
                     "routed risk report")
async def create_inspection(request: Request, who: Caller,
                            body: Annotated[Any, Body()] = None) -> JSONResponse:
    """``{"entity": …, "date": "YYYY-MM-DD", "found": [5, "gifts_rebates"], "detail": …}``
    — the command line's ``gisgrid inspect`` (``gis_grid.riskflow.record_inspection``):
    the entity must lie in a grid the caller may write in."""
    from gis_grid.events import LOCAL_TZ, check_day
    from gis_grid.riskflow import record_inspection

    _writer(who)
    props, _ = _properties(body)
    _only(props, {"entity", "date", "found", "detail", "inspector"}, "inspection")
    entity = _text(props, "entity", required=True)
    inspector = await _acting_person(request, who, props, "inspector", "inspects")
    found = props.get("found") or []
    if not isinstance(found, list) or not all(isinstance(f, (int, str)) for f in found):
        raise Unprocessable("found must be a list of check numbers (1–9) or names")
    day_text = _text(props, "date")
    detail = _text(props, "detail")
    store = request.app.state.provider.store

    def write():
        from gis_grid.screening import locate

        areas = _areas(store, who)
        held = _held_grids(areas, who)
        there = store.read("entities", where={"id": [entity]}) if store.has("entities") \
            else pd.DataFrame()
        where = None
        if len(there) and areas is not None:
            where = locate(there.iloc[:1], areas).iloc[0]
        if held is not None and (where is None or pd.isna(where) or str(where) not in held):
            raise Forbidden(f"entity {entity}: not in a grid you may inspect")
        try:
            day = check_day(day_text, source="inspections", field="date") if day_text else \
                pd.Timestamp.now(tz=LOCAL_TZ).date()
            return record_inspection(store, entity, day, inspector, found, detail=detail,
                                     areas=areas, source="inspections")
        except InputError as exc:
            if any(p.kind == "duplicate inspection" for p in exc.problems):
                raise Conflict(exc.problems[0].message) from None
            raise _refused(exc) from None

    rows, reports = await anyio.to_thread.run_sync(
        _as(who, "POST /collections/inspections/items", write))
    out = {"entity": entity, "date": str(rows["date"].iloc[0]), "inspector": inspector,
           "found": rows.loc[rows["finding"], "check"].tolist(), "report": None}
    headers = {}
    if len(reports):
        r = reports.iloc[0]
        out["report"] = {"id": r["id"], "route": r["route"], "handler": r["handler"],
                         "reason": r["reason"], "status": r["status"], "version": 1}
        base = str(request.base_url).rstrip("/")
        headers = {"Location": f"{base}/collections/risk_reports/items/{r['id']}",
                   "ETag": _etag(1)}
    return JSONResponse(out, status_code=201, headers=headers)


@router.patch("/collections/risk_reports/items/{featureId}",
              summary="Move a risk report along its path (受理, 处置/转办, 反馈, 办结)")
async def patch_report(request: Request, featureId: str, who: Caller,
                       body: Annotated[Any, Body()] = None,
                       if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    """``{"status": "accepted" | "transferred" …, "department": …, "note": …}`` with
    ``If-Match`` (the report's version): ``gis_grid.riskflow.move``. A report is moved by
    its inspector (a worker) or its inspector's institution's administrator (else 404,
    as for a report that does not exist)."""
    from gis_grid.riskflow import REPORT_LABELS, REPORTS, move

    _writer(who)
    _move_patch(body, "status", ("note", "department", "at"), "a risk report")
    expected = _if_match(if_match)
    store = request.app.state.provider.store
    actor = _mover(who)
    staff = await _own_staff(request, who) if who.role == "admin" else set()

    def write():
        rows = store.read(REPORTS, where={"id": [featureId]}) if store.has(REPORTS) \
            else pd.DataFrame()
        # A report is its inspector's institution's to move (a worker: its own).
        inspector = str(rows["inspector"].iloc[0]) if len(rows) else None
        mine = _is_mine(inspector, who, staff)
        if not len(rows) or not mine:
            raise NotFound(f"no risk report {featureId!r}")
        try:
            return move(store, REPORTS, featureId, body["status"], actor=actor,
                        at=body.get("at"), note=body.get("note"),
                        department=body.get("department"), expected_version=expected)
        except TransitionRefused as exc:
            raise Conflict(str(exc)) from None
        except ConflictError as exc:
            raise PreconditionFailed(f"{exc}: read it again") from None
        except InputError as exc:
            raise _refused(exc) from None

    state, version = await anyio.to_thread.run_sync(
        _as(who, f"PATCH /collections/risk_reports/items/{featureId}", write))
    return JSONResponse({"id": featureId, "status": state,
                         "status_zh": REPORT_LABELS[state], "version": version},
                        headers={"ETag": _etag(version)})


def _own_reported_event(store, featureId: str, who: Principal, staff: set[str],
                        expected: int) -> pd.DataFrame:
    """The event as stored, if the caller may replace or delete it: its own (a worker's
    report, or one of an admin's staff's), still ``reported`` (a record that has moved
    is kept; it is corrected by its moves), at the version the caller saw."""
    from gis_grid.events import EVENTS

    rows = store.read(EVENTS, where={"id": [featureId]}) if store.has(EVENTS) \
        else pd.DataFrame()
    reporter = str(rows["reporter"].iloc[0]) if len(rows) else None
    mine = _is_mine(reporter, who, staff)
    if not len(rows) or not mine:
        raise NotFound(f"no event {featureId!r}")
    if "version" not in rows.columns or pd.isna(rows["version"].iloc[0]):
        raise Conflict(f"event {featureId} was stored without the workflow's columns; "
                       "the operator runs `gisgrid events adopt` once")
    version = rows["version"].iloc[0]
    if int(version) != expected:
        raise PreconditionFailed(f"event {featureId} is at version {int(version)}, not "
                                 f"{expected}: read it again")
    if rows["state"].iloc[0] != "reported":
        raise Conflict(f"event {featureId} is {rows['state'].iloc[0]}: a record that has moved "
                       "is kept and changes only by its moves (PATCH state)")
    return rows


@router.put("/collections/events/items/{featureId}",
            summary="Replace an event just reported (while it is still reported)")
async def replace_event(request: Request, featureId: str, who: Caller,
                        body: Annotated[Any, Body()] = None,
                        if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    """A GeoJSON Feature as for creating one (``kind``, ``grid``, ``summary``,
    ``category``; Point): the same checks, the report's time and reporter kept, the
    version bumped. Only while the event is ``reported`` (409 after), with ``If-Match``."""
    from gis_grid.events import EVENT_KINDS, EVENTS

    _writer(who)
    expected = _if_match(if_match)
    props, point = _properties(body)
    _only(props, {"kind", "grid", "summary", "category", "id", "reporter"}, "event")
    if props.get("id") not in (None, featureId):
        raise Unprocessable("id: the URL names the event; it cannot change")
    kind = _text(props, "kind", required=True)
    if kind not in EVENT_KINDS:
        raise Unprocessable(f"kind {kind!r}: one of {', '.join(EVENT_KINDS)}")
    grid, summary, category = (_text(props, n) for n in ("grid", "summary", "category"))
    store = request.app.state.provider.store
    staff = await _own_staff(request, who) if who.role == "admin" else set()

    def write():
        rows = _own_reported_event(store, featureId, who, staff, expected)
        if props.get("reporter") not in (None, rows["reporter"].iloc[0]):
            raise Unprocessable("reporter: an event keeps who reported it")
        located = _event_grid(store, who, grid, point, None, category)
        row = rows.iloc[[0]].copy()
        row["kind"], row["grid"], row["summary"] = kind, located, summary
        if "category" in row:
            row["category"] = category
        row["version"] = expected + 1
        row["updated_at"] = pd.Timestamp.now(tz="UTC")
        row = row.set_geometry(gpd.GeoSeries([point], crs=rows.crs, index=row.index)) \
            if isinstance(row, gpd.GeoDataFrame) else row
        store.change(EVENTS, row, "upsert")
        return located

    located = await anyio.to_thread.run_sync(
        _as(who, f"PUT /collections/events/items/{featureId}", write))
    return JSONResponse({"id": featureId, "kind": kind, "grid": located,
                         "version": expected + 1}, headers={"ETag": _etag(expected + 1)})


@router.delete("/collections/events/items/{featureId}", status_code=204,
               summary="Withdraw an event just reported (while it is still reported)")
async def delete_event(request: Request, featureId: str, who: Caller,
                       if_match: Annotated[str | None, Header()] = None) -> Response:
    """Only while the event is ``reported``, by its reporter or its institution's admin,
    with ``If-Match``; the change log keeps the withdrawn row (``gisgrid history events``)."""
    from gis_grid.events import EVENTS

    _writer(who)
    expected = _if_match(if_match)
    store = request.app.state.provider.store
    staff = await _own_staff(request, who) if who.role == "admin" else set()

    def write():
        rows = _own_reported_event(store, featureId, who, staff, expected)
        store.change(EVENTS, pd.DataFrame({"id": rows["id"].to_numpy()}), "delete")

    await anyio.to_thread.run_sync(
        _as(who, f"DELETE /collections/events/items/{featureId}", write))
    return Response(status_code=204)
