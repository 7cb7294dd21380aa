"""Grid events (plan C, 蒙阴街道网格化管理): the workflow of each kind and its assessment.

C2–C4 (ARCHITECTURE.md §7). An event (事件) is reported by a grid worker and moves through the
states of its kind's path — a table (``TRANSITIONS``), not code branches:

=============  ============================================================================
kind           path (reopen: the supervisor sends a resolved event back, with a note)
=============  ============================================================================
general        reported → accepted → handled_on_site → resolved → closed
一般性工作      网格责任人现场处理，登记备案
coordination   reported → accepted → taken_back → resolved (note: the result reported up
协调性工作      and back to the resident) → closed
emergency      reported → escalated (⟲ track, note) → resolved → closed
突发性工作      立即上报，街道、社区紧急处理，网格责任人现场跟踪
approval       reported → accepted → resolved → closed
审批性工作      网格责任人掌握信息，社区受理中心受理界定
=============  ============================================================================

An emergency skips ``accepted``: the plan has it reported to the street at once, and
whoever it is escalated to owns it. ``closed`` means supervised and closed (督查办结)
and must be done by someone other than who resolved it. A transition the path does not
allow raises ``TransitionRefused`` naming the allowed ones.

Storage: the ``events`` layer holds each event's current state, the time of each
milestone, who owns / resolved / closed it, and a ``version``; the ``event_log`` layer
holds every transition (from, to, action, actor, time, note). ``move_event`` writes both
in one transaction (``Store.update(..., append=("event_log", row))``) under an
optimistic version check, so two people moving one event at once cannot both succeed:
the second gets ``ConflictError``, re-reads and is judged against the new state. The
log's key is ``<event>/<version>``, unique in both stores, so a transition cannot be
logged twice either. The report itself is the event row (reporter, reported_at), not a
log entry: the log holds transitions only. Events stored by other means (``gisgrid
import``, an API upload) lack the workflow's columns until ``adopt_events`` adds them.

Times are stored in UTC; a time given without a zone is taken as China time
(``LOCAL_TZ``), and days (patrol days, "patrolled that day") are China days.

This module works on frames and on any object with the store's ``read`` / ``append`` /
``update`` (``EventStore``); it does not import ``layers``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.errors import ConflictError, InputError, Problem, StoreError, TransitionRefused
from gis_grid.model import EVENT_KINDS, EVENT_STATES, LAYERS, STORAGE_CRS

LOCAL_TZ = "Asia/Shanghai"
EVENTS, EVENT_LOG, PATROLS = "events", "event_log", "patrols"

KIND_LABELS = {"general": "一般性工作", "coordination": "协调性工作",
               "emergency": "突发性工作", "approval": "审批性工作"}
STATE_LABELS = {"reported": "已上报", "accepted": "已受理", "handled_on_site": "现场处理",
                "taken_back": "带回社区商处", "escalated": "上报街道紧急处置",
                "resolved": "已解决", "closed": "督查办结"}
#: States in which an event is done with (time limits no longer run).
DONE = ("resolved", "closed")
#: The "five haves" (五有, C2) and their Chinese names.
FIVE_HAVES = {"patrolled": "有人巡查", "reported": "有人报告", "owned": "有人负责",
              "resolved": "有人解决", "supervised": "有人督查"}


@dataclass(frozen=True)
class Step:
    """One allowed transition of one kind: ``action`` takes ``source`` to ``target``."""

    kind: str
    source: str
    target: str
    action: str
    label_zh: str
    note_required: bool = False

    def describe(self) -> str:
        return f"{self.action} → {self.target} ({self.label_zh})"


_S = Step
#: Every allowed transition; anything else is refused.
TRANSITIONS: tuple[Step, ...] = (
    _S("general", "reported", "accepted", "accept", "网格责任人受理"),
    _S("general", "accepted", "handled_on_site", "handle", "现场处理"),
    _S("general", "handled_on_site", "resolved", "resolve", "处理完毕，登记备案"),
    _S("general", "resolved", "closed", "close", "督查办结"),
    _S("general", "resolved", "handled_on_site", "reopen", "督查退回重办", True),
    _S("coordination", "reported", "accepted", "accept", "网格责任人现场受理"),
    _S("coordination", "accepted", "taken_back", "take_back", "带回社区商处"),
    _S("coordination", "taken_back", "resolved", "resolve", "结果报街道科室并反馈居民", True),
    _S("coordination", "resolved", "closed", "close", "督查办结"),
    _S("coordination", "resolved", "taken_back", "reopen", "督查退回重办", True),
    _S("emergency", "reported", "escalated", "escalate", "立即上报，街道社区紧急处理"),
    _S("emergency", "escalated", "escalated", "track", "网格责任人现场跟踪", True),
    _S("emergency", "escalated", "resolved", "resolve", "紧急处置完毕"),
    _S("emergency", "resolved", "closed", "close", "督查办结"),
    _S("emergency", "resolved", "escalated", "reopen", "督查退回重办", True),
    _S("approval", "reported", "accepted", "accept", "社区受理中心受理界定"),
    _S("approval", "accepted", "resolved", "resolve", "审批办结"),
    _S("approval", "resolved", "closed", "close", "督查办结"),
    _S("approval", "resolved", "accepted", "reopen", "督查退回重办", True),
)


@dataclass(frozen=True)
class TimeLimit:
    """How long an event of a kind may take: to leave ``reported`` (``respond``) and to
    be resolved (``resolve``, stored on the event as its ``deadline``)."""

    respond: pd.Timedelta | None = None
    resolve: pd.Timedelta | None = None


#: Emergencies: escalated within 2 hours, resolved within 24. Other kinds have none
#: unless given.
DEFAULT_LIMITS: dict[str, TimeLimit] = {
    "emergency": TimeLimit(respond=pd.Timedelta(hours=2), resolve=pd.Timedelta(hours=24)),
}


class EventStore(Protocol):
    """What the workflow needs of a store (``layers.store.Store`` has it)."""

    def read(self, name: str, *, where: dict[str, object] | None = None
             ) -> pd.DataFrame: ...

    def has(self, name: str) -> bool: ...

    def append(self, name: str, frame: pd.DataFrame) -> None: ...

    def update(self, name: str, key_field: str, key_value: object,
               changes: dict[str, object], *, expected_version: int,
               append: tuple[str, pd.DataFrame] | None = None) -> int: ...


def allowed(kind: str, state: str) -> list[Step]:
    """The transitions an event of ``kind`` may take from ``state``."""
    return [s for s in TRANSITIONS if s.kind == kind and s.source == state]


def paths() -> pd.DataFrame:
    """The state machine as a table: kind, from, action, to, labels, note required."""
    rows = [(s.kind, KIND_LABELS[s.kind], s.source, s.action, s.target, s.label_zh,
             s.note_required) for s in TRANSITIONS]
    return pd.DataFrame(rows, columns=["kind", "kind_zh", "from", "action", "to",
                                       "label_zh", "note_required"])


def to_utc(when: object | None = None) -> pd.Timestamp:
    """``when`` (default now) as a UTC timestamp; without a zone it is China time."""
    stamp = pd.Timestamp.now(tz="UTC") if when is None else pd.Timestamp(when)
    if stamp is pd.NaT:
        raise ValueError(f"not a time: {when!r}")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(LOCAL_TZ)
    return stamp.tz_convert("UTC").as_unit("us")


def local_days(stamps: pd.Series) -> pd.Series:
    """The China-time calendar day of each UTC timestamp, as ``datetime.date``."""
    return pd.Series(stamps.dt.tz_convert(LOCAL_TZ).dt.date, index=stamps.index,
                     dtype=object)


# --------------------------------------------------------------------------- one event

def _typed_nulls(dtype: str, n: int) -> pd.Series:
    if dtype == "datetime":
        return pd.Series([pd.NaT] * n, dtype="datetime64[us, UTC]")
    if dtype == "int":
        return pd.Series([pd.NA] * n, dtype="Int64")
    return pd.Series([None] * n, dtype="string")


def new_event(kind: str, reporter: str, *, grid: str | None = None,
              point: shapely.Point | None = None, summary: str | None = None,
              at: object | None = None, event_id: str | None = None,
              limits: Mapping[str, TimeLimit] | None = None,
              category: str | None = None) -> gpd.GeoDataFrame:
    """A newly reported event (state ``reported``, version 1) as a one-row frame of the
    ``events`` schema, its deadline set by the kind's time limit.

    >>> e = new_event("emergency", "王伟", grid="420527101001-01", at="2026-05-01 08:00",
    ...               event_id="EV-1")
    >>> e.loc[0, "state"], int(e.loc[0, "version"]), str(e.loc[0, "deadline"])
    ('reported', 1, '2026-05-02 00:00:00+00:00')
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"event kind {kind!r}: expected one of {', '.join(EVENT_KINDS)}")
    if not str(reporter or "").strip():
        raise ValueError("an event needs its reporter (有人报告)")
    reported_at = to_utc(at)
    limit = (DEFAULT_LIMITS if limits is None else limits).get(kind, TimeLimit())
    deadline = reported_at + limit.resolve if limit.resolve is not None else pd.NaT
    event_id = event_id or f"EV-{reported_at.tz_convert(LOCAL_TZ):%Y%m%d%H%M%S}-" \
                           f"{secrets.token_hex(3)}"
    values: dict[str, object] = {
        "id": event_id, "kind": kind, "grid": grid, "reporter": reporter,
        "state": "reported", "reported_at": reported_at, "summary": summary,
        "category": category,
        "deadline": deadline, "updated_at": reported_at, "version": 1,
    }
    data = {}
    for f in LAYERS[EVENTS].fields:
        data[f.name] = _typed_nulls(f.dtype, 1)
        if values.get(f.name) is not None and values.get(f.name) is not pd.NaT:
            data[f.name].iloc[0] = values[f.name]
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([point], crs=STORAGE_CRS),
                            crs=STORAGE_CRS)


#: The columns the workflow keeps on every event (all of the ``events`` schema's but
#: ``source`` and the optional ``category``).
WORKFLOW_COLUMNS = tuple(f.name for f in LAYERS[EVENTS].fields
                         if f.name not in ("source", "category"))


def adopt_events(events: pd.DataFrame, limits: Mapping[str, TimeLimit] | None = None
                 ) -> pd.DataFrame:
    """Events stored by other means made fit for the workflow: the missing columns of
    the ``events`` schema added (empty), ``version`` 1 where there is none,
    ``updated_at`` the report time and ``deadline`` the kind's limit where missing.
    Nothing already set is changed.
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    out = events.copy()
    for f in LAYERS[EVENTS].fields:
        if f.name not in out.columns:
            out[f.name] = _typed_nulls(f.dtype, len(out)).set_axis(out.index)
    out["version"] = out["version"].astype("Int64").fillna(1).astype(np.int64)
    reported = pd.to_datetime(out["reported_at"], utc=True)
    out["updated_at"] = pd.to_datetime(out["updated_at"], utc=True).fillna(reported)
    resolve = _limit_series(out, limits, "resolve")
    out["deadline"] = pd.to_datetime(out["deadline"], utc=True).fillna(reported + resolve)
    return out


def _require_workflow(columns: pd.Index, version: object = 1) -> None:
    missing = [c for c in WORKFLOW_COLUMNS if c not in columns]
    if missing or _blank(version):
        what = (f"lacks the workflow's columns ({', '.join(missing)})" if missing
                else "has an event without a version")
        raise StoreError(f"{EVENTS}: the layer {what}: it was stored by other means (import, "
                         "upload); run `gisgrid events adopt` once to add them")


@dataclass(frozen=True)
class Move:
    """A transition worked out for one event: the changes to its row, its log entry."""

    event: str
    step: Step
    changes: dict[str, object]
    log: pd.DataFrame
    version: int  # the event's version after the move


def _blank(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value))) or (
        isinstance(value, str) and not value.strip())


def plan_move(event: Mapping[str, object], to: str, *, actor: str, at: object | None = None,
              note: str | None = None, owner: str | None = None) -> Move:
    """Work out the transition of ``event`` to ``to`` (a target state or an action name),
    or refuse it.

    Parameters
    ----------
    event
        The event's row as read (``id``, ``kind``, ``state``, ``version``, …).
    to
        Where to go: a state (``accepted``) or an action (``accept``).
    actor
        Who acts (recorded in the log; the owner when the event is first taken on).
    at
        When (default now; China time when no zone is given).
    note
        Why or what was done; required by some steps (``note_required``).
    owner
        Who takes responsibility (有人负责), when not the actor — e.g. the street office
        an emergency is escalated to.

    Raises
    ------
    TransitionRefused
        When the kind's path does not allow it from the current state, a note is
        missing, the time is before the event's last change, or whoever resolved the
        event tries to close (supervise) it.
    """
    kind, state = str(event["kind"]), str(event["state"])
    ident = str(event["id"])
    options = allowed(kind, state)
    where = (f"event {ident} ({kind} {KIND_LABELS.get(kind, '?')}) is {state} "
             f"({STATE_LABELS.get(state, '?')})")
    matches = [s for s in options if to in (s.action, s.target)]
    if len(matches) > 1:  # a state reached by two actions (never in TRANSITIONS today)
        matches = [s for s in matches if s.action == to] or matches[:1]
    if not matches:
        raise TransitionRefused(f"{where}: cannot go to {to!r}",
                                [s.describe() for s in options])
    step = matches[0]
    if _blank(actor):
        raise TransitionRefused(f"{where}: {step.action} needs who acts (actor)",
                                [s.describe() for s in options])
    if step.note_required and _blank(note):
        raise TransitionRefused(f"{where}: {step.action} ({step.label_zh}) needs a note",
                                [s.describe() for s in options])
    when = to_utc(at)
    last = event.get("updated_at")
    last = event.get("reported_at") if _blank(last) else last
    if not _blank(last) and when < pd.Timestamp(last):
        raise TransitionRefused(f"{where}: {when.isoformat()} is before its last change "
                                f"({pd.Timestamp(last).isoformat()})",
                                [s.describe() for s in options])
    resolver = event.get("resolved_by")
    if step.target == "closed" and not _blank(resolver) and actor == resolver:
        raise TransitionRefused(f"{where}: {actor} resolved it, so someone else must "
                                "supervise and close it (有人督查)",
                                [s.describe() for s in options])
    changes: dict[str, object] = {"state": step.target, "updated_at": when}
    if state == "reported":
        changes["accepted_at"] = when
        changes["owner"] = owner or actor
    elif owner:
        changes["owner"] = owner
    if step.target == "resolved":
        changes["resolved_at"], changes["resolved_by"] = when, actor
    elif step.action == "reopen":
        changes["resolved_at"], changes["resolved_by"] = None, None
    if step.target == "closed":
        changes["closed_at"], changes["closed_by"] = when, actor
    version = int(event["version"]) + 1
    log = pd.DataFrame({
        "id": [f"{ident}/{version}"], "event": [ident], "version": [version],
        "from_state": [state], "to_state": [step.target], "action": [step.action],
        "actor": [actor], "at": pd.Series([when], dtype="datetime64[us, UTC]"),
        "note": pd.Series([None if _blank(note) else note], dtype="string"),
    })
    return Move(ident, step, changes, log, version)


#: The subject categories of plan C's 定责 (what a grid is responsible for), the default
#: list; an office gives its own with a file (:func:`read_categories`).
SUBJECT_CATEGORIES = ("市容管控", "环境卫生", "民政", "计生", "就业", "社保", "创建", "综治",
                      "党建", "文化", "民生工程", "违建巡查", "医疗", "法律", "家政", "心理咨询",
                      "金融风险", "其他")


def read_categories(path: str | None = None) -> tuple[str, ...]:
    """The subject categories: :data:`SUBJECT_CATEGORIES`, or the office's list from
    ``path`` — a text file with one category per line (``#`` starts a comment), or TOML /
    JSON with a ``categories`` list. A missing or empty file is an ``InputError``."""
    if path is None:
        return SUBJECT_CATEGORIES
    import json
    import tomllib
    from pathlib import Path

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        _refuse(str(path), "categories", f"cannot read the category list: {exc.strerror}")
    try:
        if file.suffix.lower() == ".toml":
            values = tomllib.loads(text).get("categories", [])
        elif file.suffix.lower() == ".json":
            values = json.loads(text)
            values = values.get("categories", []) if isinstance(values, dict) else values
        else:
            values = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        _refuse(str(path), "categories", f"not a category list: {exc}")
    names = tuple(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    if not names:
        _refuse(str(path), "categories", "the category list is empty")
    return names


def check_category(category: str | None, categories: tuple[str, ...], *, source: str
                   ) -> None:
    """Refuse a category not in the list, naming the allowed ones."""
    if category is not None and category not in categories:
        _refuse(source, "category", f"分类 {category!r} 不在定责分类中 (is not a subject "
                                    f"category): {', '.join(categories)}", "unknown category")


def by_category(events: pd.DataFrame, categories: tuple[str, ...] = SUBJECT_CATEGORIES, *,
                by: str = "grid") -> pd.DataFrame:
    """Events per grid (or reporter) and subject category, every category a column (zeros
    included), events without a category under 未分类."""
    key = events["grid" if by == "grid" else "reporter"].astype("string").fillna("(none)")
    cat = (events["category"].astype("string") if "category" in events
           else pd.Series(pd.NA, index=events.index, dtype="string")).fillna("未分类")
    table = pd.crosstab(key, cat).reindex(columns=[*categories, "未分类"], fill_value=0)
    table.index.name = by
    return table.reset_index()


#: How far (metres) a reported point may lie outside the grid it is reported in: a phone's
#: position near a grid's edge is often off by tens of metres.
GRID_TOLERANCE_M = 200.0
#: A time up to this far ahead of the clock is taken as now (clocks differ a little).
CLOCK_SKEW = pd.Timedelta(minutes=5)


def _refuse(source: str, field: str, message: str, kind: str | None = None) -> None:
    raise InputError([Problem(source, None, field, message, kind)], source=source)


def check_day(value: object, *, source: str, field: str = "date",
              today: dt.date | None = None) -> dt.date:
    """A day written ``YYYY-MM-DD`` that exists and is not after today (China time).

    >>> check_day("2025-03-01", source="patrol", today=dt.date(2025, 3, 2))
    datetime.date(2025, 3, 1)
    >>> check_day("10/03/2025", source="patrol")
    Traceback (most recent call last):
    ...
    gis_grid.errors.InputError: patrol: 1 problem; nothing was stored
      patrol: date '10/03/2025' 不是 YYYY-MM-DD 格式的日期 (is not a date written YYYY-MM-DD)
    """
    text = str(value).strip()
    try:
        day = dt.date.fromisoformat(text) if len(text) == 10 and text[4] == text[7] == "-" \
            else None
    except ValueError:
        _refuse(source, field, f"{text!r} 不是存在的日期 (is not a real day)", "not a real day")
    if day is None:
        _refuse(source, field, f"{text!r} 不是 YYYY-MM-DD 格式的日期 (is not a date written "
                               "YYYY-MM-DD)", "not YYYY-MM-DD")
    today = today or pd.Timestamp.now(tz=LOCAL_TZ).date()
    if day > today:
        _refuse(source, field, f"{text} 晚于今天 {today} (is after today)", "in the future")
    return day


def check_time(value: object, *, source: str, field: str = "at",
               now: pd.Timestamp | None = None) -> pd.Timestamp:
    """A time (ISO 8601; without a zone, China time) that is not in the future."""
    try:
        stamp = to_utc(value)
    except (ValueError, TypeError, OverflowError):
        _refuse(source, field, f"{value!r} 不是时间 (is not a time, e.g. 2025-03-01 08:30)",
                "not a time")
    now = now or pd.Timestamp.now(tz="UTC")
    if stamp > now + CLOCK_SKEW:
        _refuse(source, field, f"{value} 晚于现在 (is in the future)", "in the future")
    return stamp


def check_grid(code: str, areas: gpd.GeoDataFrame | None, *, source: str, layer: str
               ) -> None:
    """Refuse a grid code that is not in the grid layer (``areas``; no check without
    one)."""
    if areas is None or not len(areas):
        return
    if str(code) not in set(areas["code"].astype(str)):
        _refuse(source, "grid", f"网格 {code} 不在图层 {layer} 中 (grid {code} is not in "
                                f"layer {layer})", "unknown grid")


def check_in_grid(point: shapely.Point, code: str, areas: gpd.GeoDataFrame, *, source: str,
                  tolerance: float = GRID_TOLERANCE_M) -> None:
    """Refuse a point farther than ``tolerance`` metres outside grid ``code``, measured in
    the grid's metric CRS."""
    from gis_grid.crs import metric_crs, to_crs

    row = areas[areas["code"].astype(str) == str(code)]
    if not len(row):
        return
    crs = metric_crs(row)
    shape = to_crs(row.geometry, crs).iloc[0]
    where = to_crs(gpd.GeoSeries([point], crs=areas.crs), crs).iloc[0]
    distance = float(shape.distance(where))
    if distance > tolerance:
        _refuse(source, "lon/lat", f"位置在网格 {code} 之外 {distance:,.0f} 米，超过容差 "
                                   f"{tolerance:g} 米 (the point lies {distance:,.0f} m outside "
                                   f"grid {code}; tolerance {tolerance:g} m)", "outside its grid")


def check_place(point: shapely.Point, territory: gpd.GeoDataFrame | None, *,
                source: str) -> None:
    """Refuse (InputError) a point with unusable coordinates or farther than the largest
    service radius outside the territory: the rule coverage leaves such points out by
    (``gis_grid.coverage.common.screen_points``), here for one point, so a report at
    (0, 0) is named, not stored without a grid. No check without a territory."""
    from gis_grid.coverage import DEFAULT_RADII
    from gis_grid.coverage.common import screen_points, territory_crs
    from gis_grid.crs import to_crs

    if territory is None or not len(territory):
        return
    crs = territory_crs(territory)
    land = shapely.union_all(np.asarray(to_crs(territory.geometry, crs).array))
    where = gpd.GeoDataFrame({"id": ["lon/lat"]}, geometry=[point], crs=STORAGE_CRS)
    screen_points({"events": where}, land, crs, DEFAULT_RADII.largest, strict=True,
                  source=source)


def place_report(*, grid: str | None, point: shapely.Point | None, at: object | None,
                 category: str | None, categories: tuple[str, ...],
                 areas: gpd.GeoDataFrame | None, territory: gpd.GeoDataFrame | None,
                 layer: str, tolerance: float = GRID_TOLERANCE_M, source: str
                 ) -> str | None:
    """Every check a new event passes, the same for the command line and the service,
    and its grid: the time is not in the future, the category is in the list, the point
    lies within 5 km of the territory and within ``tolerance`` of its grid, the grid is
    in the grid layer (``areas``, named ``layer``). Without a grid, the finest grid (or
    unit) holding the point. Raises ``InputError`` naming the problem."""
    from gis_grid.screening import locate

    if at is not None:
        check_time(at, source=source, field="at")
    check_category(category, categories, source=source)
    if point is not None:
        check_place(point, territory, source=source)
    if grid is not None:
        check_grid(grid, areas, source=source, layer=layer)
        if point is not None and areas is not None:
            check_in_grid(point, grid, areas, source=source, tolerance=tolerance)
        return grid
    if point is not None and areas is not None:
        located = locate(gpd.GeoDataFrame(geometry=[point], crs=areas.crs), areas).iloc[0]
        return None if pd.isna(located) else str(located)
    return None


def report_event(store: EventStore, kind: str, reporter: str, **kwargs) -> gpd.GeoDataFrame:
    """Report a new event into ``store`` (layer ``events``, created if missing); the
    arguments are ``new_event``'s. Returns the stored row."""
    event = new_event(kind, reporter, **kwargs)
    if store.has(EVENTS):
        columns = store.read(EVENTS, where={"id": []}).columns
        _require_workflow(columns)
        if "category" not in columns:  # a layer from before categories
            if kwargs.get("category") is not None:
                raise StoreError(f"{EVENTS}: the layer has no category column yet; run "
                                 "`gisgrid events adopt` once to add it")
            event = event.drop(columns="category")
        ident = str(event["id"].iloc[0])
        if len(store.read(EVENTS, where={"id": [ident]})):
            _refuse("events", "id", f"事件编号 {ident} 已存在 (event id {ident} is already "
                                    "used)", "duplicate id")
    store.append(EVENTS, event)
    return event


def record_patrol(store: EventStore, worker: str, grid: str, day: dt.date,
                  note: str | None = None) -> pd.DataFrame:
    """Record ``worker``'s patrol of ``grid`` on ``day`` (layer ``patrols``); a second
    record of the same worker, grid and day is refused (the day counts once)."""
    row = pd.DataFrame({"worker": [worker], "grid": [grid], "date": [day], "note": [note]})
    if store.has(PATROLS):
        done = store.read(PATROLS, where={"worker": [worker], "grid": [grid]})
        if len(done) and (pd.to_datetime(done["date"]).dt.date == day).any():
            _refuse("patrols", "date", f"{worker} 已记录 {day} 对网格 {grid} 的巡查 ({worker}'s "
                                       f"patrol of {grid} on {day} is already recorded)",
                    "duplicate patrol")
    store.append(PATROLS, row)
    return row


def move_event(store: EventStore, event_id: str, to: str, *, actor: str,
               at: object | None = None, note: str | None = None, owner: str | None = None,
               expected_version: int | None = None, retries: int = 3) -> Move:
    """Move an event along its path in ``store``: its row and its log entry in one
    transaction, under the optimistic version check.

    Parameters
    ----------
    store
        The store (``layers.store.Store``).
    event_id, to, actor, at, note, owner
        As in ``plan_move``.
    expected_version
        The version the caller saw. Given, a change made meanwhile by someone else
        raises ``ConflictError`` at once (the caller decided on what they saw); not
        given, the event is re-read and the move judged again against its new state,
        up to ``retries`` times.

    Returns
    -------
    Move
        What was done, with the event's new ``version``.

    Raises
    ------
    TransitionRefused, ConflictError, StoreError
    """
    for attempt in range(retries + 1):
        rows = store.read(EVENTS, where={"id": event_id})
        if len(rows) == 0:
            raise StoreError(f"{EVENTS}: no event {event_id!r}")
        event = rows.iloc[0]
        _require_workflow(rows.columns, event.get("version"))
        current = int(event["version"])
        if expected_version is not None and current != expected_version:
            raise ConflictError(EVENTS, "id", event_id, expected_version, current)
        move = plan_move(event, to, actor=actor, at=at, note=note, owner=owner)
        try:
            store.update(EVENTS, "id", event_id, move.changes, expected_version=current,
                         append=(EVENT_LOG, move.log))
        except ConflictError:
            if expected_version is not None or attempt == retries:
                raise
            continue
        return move
    raise AssertionError("unreachable")


def timeline(event: Mapping[str, object], log: pd.DataFrame) -> pd.DataFrame:
    """The event's history for people: the report, then every logged transition."""
    first = pd.DataFrame({"version": [1], "from_state": [pd.NA], "to_state": ["reported"],
                          "action": ["report"], "actor": [event["reporter"]],
                          "at": pd.Series([event["reported_at"]], dtype="datetime64[us, UTC]"),
                          "note": [event.get("summary")]})
    rows = log[log["event"] == event["id"]].sort_values("version")
    out = pd.concat([first, rows[first.columns]], ignore_index=True)
    out["to_zh"] = out["to_state"].map(STATE_LABELS)
    return out


# --------------------------------------------------------------------------- many events

def _limit_series(events: pd.DataFrame, limits: Mapping[str, TimeLimit], which: str
                  ) -> pd.Series:
    per_kind = {k: getattr(v, which) for k, v in limits.items()
                if getattr(v, which) is not None}
    return pd.to_timedelta(events["kind"].map(per_kind))


def overdue(events: pd.DataFrame, now: object | None = None,
            limits: Mapping[str, TimeLimit] | None = None) -> pd.DataFrame:
    """The events overdue at ``now``: still ``reported`` past their kind's respond limit,
    or not resolved by their ``deadline``.

    Returns
    -------
    The overdue events' rows with ``due`` (the earliest time missed), ``overdue_hours``
    and ``reason``, most overdue first.
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    now = to_utc(now)
    open_ = ~events["state"].isin(DONE)
    respond_due = events["reported_at"] + _limit_series(events, limits, "respond")
    late_respond = (events["state"] == "reported") & (respond_due < now).fillna(False)
    deadline = pd.to_datetime(events["deadline"], utc=True)
    late_resolve = open_ & (deadline < now).fillna(False)
    late = late_respond | late_resolve
    due = respond_due.where(late_respond, deadline)
    out = events[late].copy()
    out["due"] = due[late]
    out["overdue_hours"] = ((now - out["due"]) / pd.Timedelta(hours=1)).round(1)
    respond_text = "not taken on within the respond limit (未及时响应)"
    resolve_text = "not resolved by the deadline (超时未办结)"
    out["reason"] = np.where(late_respond[late] & late_resolve[late],
                             respond_text + "; " + resolve_text,
                             np.where(late_respond[late], respond_text, resolve_text))
    return out.sort_values("overdue_hours", ascending=False, kind="stable")


def _ever_late(events: pd.DataFrame, now: pd.Timestamp, limits: Mapping[str, TimeLimit]
               ) -> pd.Series:
    """Whether each event is or was overdue: taken on late (or not yet, past the limit),
    resolved after its deadline (or not yet, past it)."""
    respond_due = events["reported_at"] + _limit_series(events, limits, "respond")
    taken = pd.to_datetime(events["accepted_at"], utc=True).fillna(now)
    deadline = pd.to_datetime(events["deadline"], utc=True)
    resolved = pd.to_datetime(events["resolved_at"], utc=True).fillna(now)
    return (taken > respond_due).fillna(False) | (resolved > deadline).fillna(False)


def five_haves(events: pd.DataFrame, patrols: pd.DataFrame | None = None) -> pd.DataFrame:
    """The "five haves" (五有, C2) of each event.

    ``patrolled`` (有人巡查): its grid was patrolled on the (China) day it was reported;
    ``reported`` (有人报告): it has a reporter and a time; ``owned`` (有人负责): someone
    took it on; ``resolved`` (有人解决): it is resolved and by whom is known;
    ``supervised`` (有人督查): a supervisor closed it.

    Returns
    -------
    ``id``, the five flags and ``haves`` (how many of the five).
    """
    out = pd.DataFrame({"id": events["id"]}, index=events.index)
    if patrols is not None and len(patrols) and len(events):
        patrolled_days = pd.MultiIndex.from_arrays(
            [patrols["grid"].astype(str), pd.Series(patrols["date"], dtype=object)])
        days = pd.MultiIndex.from_arrays(
            [events["grid"].astype(str), local_days(events["reported_at"])])
        out["patrolled"] = days.isin(patrolled_days)
    else:
        out["patrolled"] = False
    out["reported"] = (events["reporter"].notna() & events["reported_at"].notna()).to_numpy()
    out["owned"] = events["owner"].notna().to_numpy()
    out["resolved"] = (events["state"].isin(DONE) & events["resolved_by"].notna()).to_numpy()
    out["supervised"] = ((events["state"] == "closed") & events["closed_by"].notna()).to_numpy()
    out["haves"] = out[list(FIVE_HAVES)].sum(axis=1).astype(np.int64)
    return out


#: Patrols each grid needs per day (C2: 坚持每天巡查).
DAILY_PATROLS = 1
#: The monthly score's parts and weights (C4, 定期考核): patrols against the daily
#: requirement, events not overdue, events with all five haves. Events count as met
#: where a grid had none.
SCORE_WEIGHTS = {"patrol_rate": 0.5, "on_time": 0.3, "five_haves_share": 0.2}
#: A grid is named in the notice (通报) below this patrol rate or with an overdue event.
NOTICE_PATROL_RATE = 0.8


def assessment(events: pd.DataFrame, patrols: pd.DataFrame | None = None, *,
               by: str = "grid", start: object | None = None, end: object | None = None,
               now: object | None = None, limits: Mapping[str, TimeLimit] | None = None,
               grids: Iterable[str] | None = None, daily: int = DAILY_PATROLS
               ) -> pd.DataFrame:
    """The periodic assessment (C4) per grid or per worker.

    Parameters
    ----------
    events, patrols
        Layers ``events`` and ``patrols`` (worker, grid, date).
    by
        ``grid``, or ``worker`` (events by their reporter, patrols by their worker).
    start, end
        The period: events reported and patrols made on China days ``start`` to ``end``
        inclusive (default: all).
    now
        When overdue is judged (default now).
    grids
        Every grid assessed (by grid: the finest grids of the grid layer): each gets a
        row, zeros included, even without events or patrols.
    daily
        Patrols required per grid per day (:data:`DAILY_PATROLS`).

    Returns
    -------
    One row per grid or worker: ``events``; ``kind_<kind>`` and ``state_<state>`` counts;
    ``resolve_hours_median`` / ``_mean`` (report to resolution); ``overdue`` (events
    that are or were overdue); ``five_haves`` (events with all five); ``patrol_days``
    (distinct days patrolled); ``days`` (of the period: ``start`` to ``end``, else the
    days from the first to the last event or patrol); ``patrol_rate`` (patrol days ÷
    days × ``daily``, at most 1); ``on_time`` and ``five_haves_share`` (of the events; 1
    without events); ``score`` (:data:`SCORE_WEIGHTS` × 100) and ``rank`` (1 best).
    """
    if by not in ("grid", "worker"):
        raise ValueError("assessment: by must be 'grid' or 'worker'")
    limits = DEFAULT_LIMITS if limits is None else limits
    now = to_utc(now)
    first = pd.Timestamp(start).date() if start is not None else dt.date.min
    last = pd.Timestamp(end).date() if end is not None else dt.date.max
    days = local_days(events["reported_at"])
    events = events[((days >= first) & (days <= last)).to_numpy(dtype=bool)]
    key = events["grid" if by == "grid" else "reporter"].astype("string").fillna("(none)")
    table = pd.DataFrame(index=pd.Index(key.unique(), dtype="string", name=by))
    table["events"] = key.value_counts()
    kinds = pd.crosstab(key, events["kind"]).reindex(columns=list(EVENT_KINDS), fill_value=0)
    states = pd.crosstab(key, events["state"]).reindex(columns=list(EVENT_STATES),
                                                       fill_value=0)
    table = table.join(kinds.add_prefix("kind_")).join(states.add_prefix("state_"))
    hours = (pd.to_datetime(events["resolved_at"], utc=True) - events["reported_at"]
             ) / pd.Timedelta(hours=1)
    grouped = hours.groupby(key)
    table["resolve_hours_median"] = grouped.median().round(2)
    table["resolve_hours_mean"] = grouped.mean().round(2)
    table["overdue"] = _ever_late(events, now, limits).groupby(key).sum()
    table["five_haves"] = (five_haves(events, patrols)["haves"] == len(FIVE_HAVES)
                           ).groupby(key).sum()
    if patrols is not None and len(patrols):
        dates = pd.Series(patrols["date"], dtype=object)
        inside = ((dates >= first) & (dates <= last)).to_numpy(dtype=bool)
        patrolled = patrols[inside]
        pkey = patrolled["grid" if by == "grid" else "worker"].astype("string")
        patrol_days = patrolled.groupby(pkey)["date"].nunique()
        table = table.reindex(table.index.union(patrol_days.index.astype("string")))
        table["patrol_days"] = patrol_days
    else:
        table["patrol_days"] = 0
    if grids is not None and by == "grid":
        table = table.reindex(table.index.union(pd.Index(list(grids), dtype="string")))
    counts = [c for c in table.columns if not c.startswith("resolve_hours")]
    table[counts] = table[counts].fillna(0).astype(np.int64)
    table["days"] = _period_days(first, last, events, patrols)
    with np.errstate(invalid="ignore", divide="ignore"):
        required = table["days"].to_numpy(float) * max(int(daily), 1)
        table["patrol_rate"] = np.round(np.minimum(
            np.where(required > 0, table["patrol_days"] / required, 0.0), 1.0), 4)
        n = table["events"].to_numpy(float)
        table["on_time"] = np.round(np.where(n > 0, 1 - table["overdue"] / n, 1.0), 4)
        table["five_haves_share"] = np.round(np.where(n > 0, table["five_haves"] / n, 1.0),
                                             4)
    table["score"] = np.round(100 * sum(w * table[c] for c, w in SCORE_WEIGHTS.items()), 1)
    table["rank"] = table["score"].rank(ascending=False, method="min").astype(np.int64)
    table.index.name = by
    return table.sort_index().reset_index()


def _period_days(first: dt.date, last: dt.date, events: pd.DataFrame,
                 patrols: pd.DataFrame | None) -> int:
    """Days of the assessed period: ``first`` to ``last`` when both are given, else the
    days the records span (at least 1)."""
    if first != dt.date.min and last != dt.date.max:
        return (last - first).days + 1
    days = list(local_days(events["reported_at"])) if len(events) else []
    if patrols is not None and len(patrols):
        days += [d for d in pd.Series(patrols["date"], dtype=object)
                 if first <= d <= last]
    days = [d for d in days if isinstance(d, dt.date)]
    if not days:
        return 1
    lo = first if first != dt.date.min else min(days)
    hi = last if last != dt.date.max else max(days)
    return max((hi - lo).days + 1, 1)


def notice(table: pd.DataFrame, *, rate: float = NOTICE_PATROL_RATE) -> pd.DataFrame:
    """The ranked notice (通报) of an assessment by grid: every row in rank order, with
    ``verdict`` 表扬 (rank 1–3 with a full patrol record and nothing overdue), 通报 (patrol
    rate below ``rate`` or an overdue event, with the reasons) or 合格."""
    t = table.sort_values(["rank", table.columns[0]]).reset_index(drop=True)
    reasons = []
    for r in t.itertuples(index=False):
        why = []
        if r.patrol_rate < rate:
            why.append(f"巡查率 {r.patrol_rate:.0%} 低于 {rate:.0%}")
        if r.overdue > 0:
            why.append(f"超时事件 {r.overdue} 件")
        reasons.append("；".join(why))
    t["reason"] = reasons
    praised = (t["rank"] <= 3) & (t["reason"] == "") & (t["patrol_rate"] >= 1.0)
    t["verdict"] = np.where(t["reason"] != "", "通报", np.where(praised, "表扬", "合格"))
    return t[[t.columns[0], "rank", "score", "patrol_rate", "on_time", "five_haves_share",
              "events", "overdue", "verdict", "reason"]]
