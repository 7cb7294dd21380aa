"""The path of a risk report and of a task from above (plan A5–A7, see ARCHITECTURE.md).

A risk report is made and routed once, when its inspection is recorded
(``gis_grid.screening.risk_reports``): its ``route``, ``handler`` and ``reason`` never
change. It then moves along one path, each move logged (layer ``report_log``: from, to,
action, who, when, note) with the report's update in one transaction, under an
optimistic version check (``Store.update``)::

    routed ─accept 受理→ accepted ─dispose 处置→ disposed ─┐
                                  └transfer 转办→ transferred ─feedback 反馈→ fed_back
    fed_back ─close 办结→ closed;   fed_back ─reopen 退回重办→ accepted

``transfer`` names the department it goes to (公安局, 人民银行 …); ``feedback`` and
``reopen`` need a note. Each step has a time limit (:class:`Limits`; defaults: accepted
within 1 day of routing, fed back within 15 days of acceptance, closed within 5 days of
the feedback), kept on the report as ``due``; a report past its ``due`` is overdue.

A task handed down from above (交办, A7; layer ``tasks``) has a deadline for its
feedback and the path ``issued → accepted → fed_back → closed`` (``fed_back → accepted``
to send it back), logged the same way.

This module works on frames and on any object with the store's ``read`` / ``has`` /
``append`` / ``update`` (``gis_grid.events.EventStore``); it does not import ``layers``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gis_grid.errors import ConflictError, InputError, Problem, TransitionRefused
from gis_grid.events import EventStore, check_time, to_utc
from gis_grid.model import LAYERS, REPORT_STATES, TASK_STATES
from gis_grid.screening import Routing, township_of

REPORTS, TASKS, LOG = "risk_reports", "tasks", "report_log"

REPORT_LABELS = {"routed": "已分流", "accepted": "已受理", "disposed": "已处置",
                 "transferred": "已转办", "fed_back": "已反馈", "closed": "已办结"}
TASK_LABELS = {"issued": "已交办", "accepted": "已受理", "fed_back": "已反馈",
               "closed": "已办结"}
#: Where nothing is due any more.
DONE = ("closed",)


@dataclass(frozen=True)
class Move:
    """One allowed transition: ``action`` takes ``source`` to ``target``."""

    source: str
    target: str
    action: str
    label_zh: str
    note_required: bool = False
    department_required: bool = False

    def describe(self) -> str:
        return f"{self.action} → {self.target} ({self.label_zh})"


REPORT_PATH: tuple[Move, ...] = (
    Move("routed", "accepted", "accept", "受理"),
    Move("accepted", "disposed", "dispose", "处置"),
    Move("accepted", "transferred", "transfer", "转办相关部门", department_required=True),
    Move("disposed", "fed_back", "feedback", "反馈处置结果", note_required=True),
    Move("transferred", "fed_back", "feedback", "部门反馈", note_required=True),
    Move("fed_back", "closed", "close", "办结"),
    Move("fed_back", "accepted", "reopen", "退回重办", note_required=True),
)
TASK_PATH: tuple[Move, ...] = (
    Move("issued", "accepted", "accept", "受理"),
    Move("accepted", "fed_back", "feedback", "反馈", note_required=True),
    Move("fed_back", "closed", "close", "办结"),
    Move("fed_back", "accepted", "reopen", "退回重办", note_required=True),
)


@dataclass(frozen=True)
class Limits:
    """Time limits of a risk report's steps: to be accepted after it is routed, fed back
    after it is accepted, closed after the feedback."""

    accept: pd.Timedelta = pd.Timedelta(days=1)
    feedback: pd.Timedelta = pd.Timedelta(days=15)
    close: pd.Timedelta = pd.Timedelta(days=5)

    def due(self, state: str, since: pd.Timestamp) -> pd.Timestamp | None:
        """When the step that starts in ``state`` at ``since`` is due (None when done)."""
        limit = {"routed": self.accept, "accepted": self.feedback,
                 "disposed": self.feedback, "transferred": self.feedback,
                 "fed_back": self.close}.get(state)
        return None if limit is None else since + limit


DEFAULT_LIMITS = Limits()


def start_reports(reports: pd.DataFrame, at: object | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> pd.DataFrame:
    """New reports (``gis_grid.screening.risk_reports``) set on their path: ``routed``
    at ``at`` (default now), due to be accepted by ``at + limits.accept``, version 1."""
    when = to_utc(at)
    out = reports.copy()
    out["status"] = "routed"
    out["routed_at"] = pd.Series([when] * len(out), index=out.index,
                                 dtype="datetime64[us, UTC]")
    out["department"] = pd.Series([None] * len(out), index=out.index, dtype="string")
    out["due"] = pd.Series([limits.due("routed", when)] * len(out), index=out.index,
                           dtype="datetime64[us, UTC]")
    out["updated_at"] = out["routed_at"]
    out["version"] = np.ones(len(out), dtype=np.int64)
    return out


def new_task(subject: str, issued_by: str, assignee: str, deadline: object, *,
             at: object | None = None, task_id: str | None = None) -> pd.DataFrame:
    """A task handed down (交办): ``issued`` at ``at`` (default now), feedback due by
    ``deadline`` (not before it is issued)."""
    def refuse(field: str, message: str) -> None:
        raise InputError([Problem("tasks", None, field, message)], source="tasks")

    for name, value in (("subject", subject), ("issued_by", issued_by),
                        ("assignee", assignee)):
        if not str(value or "").strip():
            refuse(name, f"任务缺少{name} (a task needs its {name})")
    when = to_utc(at)
    try:
        due = to_utc(deadline)
    except (ValueError, TypeError, OverflowError):
        refuse("deadline", f"{deadline!r} 不是时间 (is not a time)")
    if due <= when:
        refuse("deadline", f"反馈时限 {due.isoformat()} 不晚于交办时间 (the deadline is not "
                           f"after the task is issued, {when.isoformat()})")
    ident = task_id or f"TK-{when.tz_convert('Asia/Shanghai'):%Y%m%d%H%M%S}-" \
                       f"{secrets.token_hex(3)}"
    stamp = "datetime64[us, UTC]"
    return pd.DataFrame({
        "id": [ident], "subject": [subject], "issued_by": [issued_by],
        "assignee": [assignee], "issued_at": pd.Series([when], dtype=stamp),
        "deadline": pd.Series([due], dtype=stamp), "status": ["issued"],
        "feedback": pd.Series([None], dtype="string"),
        "updated_at": pd.Series([when], dtype=stamp), "version": [1]})


def _plan(layer: str, row: Mapping[str, object], to: str, *, actor: str, at: object,
          note: str | None, department: str | None, limits: Limits
          ) -> tuple[dict[str, object], pd.DataFrame, int]:
    path, labels = (REPORT_PATH, REPORT_LABELS) if layer == REPORTS else \
        (TASK_PATH, TASK_LABELS)
    ident, state = str(row["id"]), str(row.get("status") or "")
    options = [m for m in path if m.source == state]
    where = f"{ident} is {state} ({labels.get(state, '?')})"
    matches = [m for m in options if to in (m.action, m.target)]
    if not matches:
        raise TransitionRefused(f"{where}: cannot go to {to!r}",
                                [m.describe() for m in options])
    move = matches[0]
    def blank(v):
        return (v is None or (isinstance(v, float) and np.isnan(v))
                 or not str(v).strip())
    if blank(actor):
        raise TransitionRefused(f"{where}: {move.action} needs who acts (actor)",
                                [m.describe() for m in options])
    if move.note_required and blank(note):
        raise TransitionRefused(f"{where}: {move.action} ({move.label_zh}) needs a note",
                                [m.describe() for m in options])
    if move.department_required and blank(department):
        raise TransitionRefused(f"{where}: {move.action} ({move.label_zh}) needs the "
                                "department it goes to", [m.describe() for m in options])
    when = check_time(at, source=layer, field="at") if at is not None else to_utc(None)
    last = row.get("updated_at")
    if last is not None and not pd.isna(last) and when < pd.Timestamp(last):
        raise TransitionRefused(f"{where}: {when.isoformat()} is before its last change "
                                f"({pd.Timestamp(last).isoformat()})",
                                [m.describe() for m in options])
    changes: dict[str, object] = {"status": move.target, "updated_at": when}
    if layer == REPORTS:
        changes["due"] = limits.due(move.target, when)
        if move.department_required:
            changes["department"] = str(department)
    elif move.action == "feedback":
        changes["feedback"] = str(note)
    version = int(row.get("version") or 1) + 1
    log = pd.DataFrame({
        "id": [f"{layer}:{ident}/{version}"], "layer": [layer], "record": [ident],
        "version": [version], "from_state": [state], "to_state": [move.target],
        "action": [move.action], "actor": [actor],
        "at": pd.Series([when], dtype="datetime64[us, UTC]"),
        "note": pd.Series([None if blank(note) else str(note)], dtype="string")})
    return changes, log, version


def move(store: EventStore, layer: str, ident: str, to: str, *, actor: str,
         at: object | None = None, note: str | None = None, department: str | None = None,
         limits: Limits = DEFAULT_LIMITS, expected_version: int | None = None
         ) -> tuple[str, int]:
    """Move report or task ``ident`` of ``layer`` (``risk_reports`` or ``tasks``) to
    ``to`` (a state or an action): its row and its log entry in one transaction, only if
    nobody changed it since it was read (else ``ConflictError``). Returns the new state
    and version.

    Raises
    ------
    TransitionRefused
        The path does not allow it, a note or department is missing, or the time is
        before the last change (exit 1, naming the allowed moves).
    """
    if layer not in (REPORTS, TASKS):
        raise ValueError(f"riskflow.move: layer must be {REPORTS} or {TASKS}")
    rows = store.read(layer, where={"id": [ident]}) if store.has(layer) else pd.DataFrame()
    if not len(rows):
        raise TransitionRefused(f"no {'risk report' if layer == REPORTS else 'task'} "
                                f"{ident!r}", [])
    row = rows.iloc[0].to_dict()
    current = int(row.get("version") or 1)
    if expected_version is not None and current != expected_version:
        raise ConflictError(layer, "id", ident, expected_version, current)
    changes, log, version = _plan(layer, row, to, actor=actor, at=at, note=note,
                                  department=department, limits=limits)
    store.update(layer, "id", ident, changes, expected_version=version - 1,
                 append=(LOG, log))
    return str(changes["status"]), version


def adopt_reports(store) -> None:
    """Give a ``risk_reports`` layer made before reports had a path (status, due, version
    …) those columns, once: its reports ``routed`` at 18:00 of their inspection day,
    version 1. Nothing to do for a layer that has them."""
    wanted = [f.name for f in LAYERS[REPORTS].fields]
    if not store.has(REPORTS):
        return
    have = store.read(REPORTS, where={"id": []}).columns
    if all(c in have for c in wanted):
        return

    def add(current):
        out = start_reports(current[[c for c in current.columns if c in wanted]])
        routed = pd.to_datetime(out["date"].astype(str) + " 18:00").dt.tz_localize(
            "Asia/Shanghai").dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        out["routed_at"] = out["updated_at"] = routed
        out["due"] = routed + DEFAULT_LIMITS.accept
        return out

    store.modify(REPORTS, add)


def record_inspection(store, entity: str, day: dt.date, inspector: str, found, *,
                      detail: str | None = None, routing: Routing | None = None,
                      areas=None, source: str = "inspect", limits: Limits = DEFAULT_LIMITS
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Record one inspection visit (A3) and, with a finding, its risk report routed now
    (A4) and set on its path: the same for the command line and the service.

    Refused (``InputError``, nothing stored): an entity not in layer ``entities``; the same
    visit (entity, inspector, day) again; a ``routing.street`` that is not a township of
    the store. The entity's grid is the area of ``areas`` holding it; its township its
    unit's, else the township holding its point. Earlier reports are never re-routed.
    Returns the inspection rows and the new report (empty without a finding)."""
    from gis_grid.screening import inspection_rows, locate, risk_reports

    def refuse(field: str, message: str, kind: str) -> None:
        raise InputError([Problem(source, None, field, message, kind)], source=source)

    routing = routing or Routing()
    try:
        rows = inspection_rows(entity, day, inspector, found, detail=detail)
    except ValueError as exc:
        refuse("found", str(exc), "bad check")
    entities = store.read("entities", where={"id": [entity]}) if store.has("entities") \
        else pd.DataFrame()
    if not len(entities):
        refuse("entity", f"主体 {entity} 不在主体图层中 (no entity {entity!r} in layer "
                         "entities)", "unknown entity")
    if store.has("inspections"):
        done = store.read("inspections", where={"entity": [entity]})
        same = done["inspector"].astype(str).eq(inspector) & \
            pd.to_datetime(done["date"]).dt.date.eq(day)
        if same.any():
            refuse("date", f"{inspector} 对 {entity} 在 {day} 的检查已记录 ({inspector}'s "
                           f"inspection of {entity} on {day} is already recorded)",
                   "duplicate inspection")
    townships = store.read("townships") if store.has("townships") else None
    if routing.street is not None and townships is not None and \
            routing.street not in set(townships["code"].astype(str)):
        refuse("street", f"{routing.street} 不是本辖区的乡镇街道代码 (is not a township of "
                         f"layer townships: "
                         f"{', '.join(sorted(townships['code'].astype(str))[:5])} …)",
               "unknown township")
    involved = entities.copy()
    if areas is not None:
        involved["grid"] = locate(involved, areas)
    if townships is not None:
        involved["township"] = locate(involved, townships, leaves=False)
    # Routed once, now: earlier reports keep the route they were given.
    reports = start_reports(risk_reports(rows, involved, routing), limits=limits)
    if len(reports) and store.has(REPORTS):
        adopt_reports(store)
        used = set(store.read(REPORTS, where={"entity": [entity]})["id"])
        clash = reports["id"].isin(used)
        reports.loc[clash, "id"] = reports.loc[clash, "id"] + "-" + inspector
    store.append("inspections", rows)
    if len(reports):
        store.append(REPORTS, reports)
    return rows, reports


def overdue(frame: pd.DataFrame, now: object | None = None, *, due: str = "due"
            ) -> pd.Series:
    """Which reports (``due``) or tasks (``deadline``, until fed back) are past their time
    limit at ``now``."""
    if not len(frame) or due not in frame:
        return pd.Series(False, index=frame.index)
    when = to_utc(now)
    limit = pd.to_datetime(frame[due], utc=True)
    open_ = ~frame["status"].astype("string").isin(
        DONE + (("fed_back",) if due == "deadline" else ())).fillna(False)
    return (open_ & (limit < when)).fillna(False).astype(bool)


def assessment(reports: pd.DataFrame, inspections: pd.DataFrame,
               watch: pd.DataFrame | None = None, log: pd.DataFrame | None = None, *,
               by: str = "township", now: object | None = None) -> pd.DataFrame:
    """Plan A's assessment (A9) per street (township) or grid: ``screened`` (entities on
    the watch list), ``inspections`` (visits), ``reports``, ``accepted_on_time``
    (accepted within the limit), ``overdue`` (open reports past their limit now),
    ``transferred`` and ``transfers_answered`` (transferred reports fed back), and the
    shares ``on_time_share`` and ``answered_share`` (1 where there is nothing to
    answer)."""
    if by not in ("township", "grid"):
        raise ValueError("riskflow.assessment: by must be 'township' or 'grid'")
    def key_of(f):
        return (f[by].astype("string").fillna("(未知)") if by in f
                  else pd.Series("(未知)", index=f.index, dtype="string"))
    table = pd.DataFrame(index=pd.Index([], dtype="string", name=by))
    if watch is not None and len(watch):
        wkey = (township_of(watch["unit"]).fillna("(未知)")
                if by == "township" and "unit" in watch else key_of(watch))
        table = table.reindex(table.index.union(wkey.unique()))
        table["screened"] = wkey.value_counts()
    visits = inspections.drop_duplicates(["entity", "date", "inspector"]) \
        if len(inspections) else inspections
    if len(visits):
        entity_key = reports.drop_duplicates("entity").set_index("entity")[by] \
            if len(reports) and by in reports else pd.Series(dtype="string")
        vkey = visits["entity"].map(entity_key).astype("string").fillna("(未知)")
        table = table.reindex(table.index.union(vkey.unique()))
        table["inspections"] = vkey.value_counts()
    if len(reports):
        rkey = key_of(reports)
        table = table.reindex(table.index.union(rkey.unique()))
        table["reports"] = rkey.value_counts()
        late = overdue(reports, now)
        table["overdue"] = late.groupby(rkey).sum()
        table["transferred"] = reports["department"].notna().groupby(rkey).sum() \
            if "department" in reports else 0
        accepted = pd.Series(False, index=reports.index)
        answered = pd.Series(False, index=reports.index)
        if log is not None and len(log):
            mine = log[log["layer"] == REPORTS]
            first_accept = mine[mine["action"] == "accept"].groupby("record")["at"].min()
            at = reports["id"].map(first_accept)
            limit = pd.to_datetime(reports["routed_at"], utc=True) + DEFAULT_LIMITS.accept
            accepted = (pd.to_datetime(at, utc=True) <= limit).fillna(False)
            fed = set(mine.loc[mine["action"] == "feedback", "record"])
            answered = reports["department"].notna() & reports["id"].isin(fed)
        table["accepted_on_time"] = accepted.groupby(rkey).sum()
        table["transfers_answered"] = answered.groupby(rkey).sum()
    for col in ("screened", "inspections", "reports", "accepted_on_time", "overdue",
                "transferred", "transfers_answered"):
        table[col] = (table[col] if col in table else 0)
        table[col] = table[col].fillna(0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = table["reports"].to_numpy(float)
        table["on_time_share"] = np.round(np.where(
            n > 0, table["accepted_on_time"] / n, 1.0), 4)
        t = table["transferred"].to_numpy(float)
        table["answered_share"] = np.round(np.where(
            t > 0, table["transfers_answered"] / t, 1.0), 4)
    table.index.name = by
    return table.sort_index().reset_index()


__all__ = ["DEFAULT_LIMITS", "LOG", "REPORTS", "REPORT_LABELS", "REPORT_PATH",
           "REPORT_STATES", "TASKS", "TASK_LABELS", "TASK_PATH", "TASK_STATES", "Limits",
           "Move", "assessment", "move", "new_task", "overdue", "start_reports"]
