"""Grid events (plan C): every kind through every allowed and refused transition, time
limits, the five haves, the assessment, and — in both stores — the event and its log
written together under an optimistic version check, with two writers racing.
"""

from __future__ import annotations

import threading
from collections import Counter

import pandas as pd
import pytest
import shapely

from gis_grid import events as ev
from gis_grid.errors import ConflictError, StoreError, TransitionRefused
from gis_grid.events import (
    DEFAULT_LIMITS,
    EVENT_LOG,
    EVENTS,
    TRANSITIONS,
    TimeLimit,
    allowed,
    assessment,
    five_haves,
    move_event,
    new_event,
    overdue,
    paths,
    plan_move,
    report_event,
    timeline,
)
from gis_grid.model import EVENT_KINDS, EVENT_STATES

T0 = "2026-05-01 08:00"  # China time
ACTIONS = sorted({s.action for s in TRANSITIONS})


def at(hours: float) -> pd.Timestamp:
    return ev.to_utc(T0) + pd.Timedelta(hours=hours)


def event_in(kind: str, state: str, **extra) -> pd.Series:
    row = new_event(kind, "王伟", grid="G-1", at=T0, event_id=f"EV-{kind}").iloc[0].copy()
    row["state"] = state
    for key, value in extra.items():
        row[key] = value
    return row


# --- the table --------------------------------------------------------------------------

def test_the_state_machine_is_a_table():
    table = paths()
    assert len(table) == len(TRANSITIONS) and set(table["kind"]) == set(EVENT_KINDS)
    assert set(table["from"]) | set(table["to"]) == set(EVENT_STATES)
    # no two steps of one kind leave a state by the same action or for the same state
    assert not table.duplicated(["kind", "from", "action"]).any()
    assert not table.duplicated(["kind", "from", "to"]).any()
    # every kind's path runs from reported to closed, and closed is final
    for kind in EVENT_KINDS:
        seen, frontier = {"reported"}, ["reported"]
        while frontier:
            for step in allowed(kind, frontier.pop()):
                if step.target not in seen:
                    seen.add(step.target)
                    frontier.append(step.target)
        assert "closed" in seen
        assert allowed(kind, "closed") == []


HAPPY_PATHS = {
    "general": ["accept", "handle", "resolve", "reopen", "resolve", "close"],
    "coordination": ["accept", "take_back", "resolve", "reopen", "resolve", "close"],
    "emergency": ["escalate", "track", "track", "resolve", "reopen", "resolve", "close"],
    "approval": ["accept", "resolve", "reopen", "resolve", "close"],
}


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_every_allowed_transition_and_every_refused_one(kind):
    """From every state, every action and every state name is tried: those in the
    kind's table are allowed, all others refused with the allowed ones named."""
    for state in EVENT_STATES:
        options = allowed(kind, state)
        for to in ACTIONS + list(EVENT_STATES):
            event = event_in(kind, state, resolved_by="李娜")
            matching = [s for s in options if to in (s.action, s.target)]
            if matching:
                move = plan_move(event, to, actor="赵敏", at=at(1), note="说明")
                assert move.step == matching[0] and move.changes["state"] == move.step.target
            else:
                with pytest.raises(TransitionRefused) as refused:
                    plan_move(event, to, actor="赵敏", at=at(1), note="说明")
                assert refused.value.allowed == [s.describe() for s in options]
                if options:
                    assert options[0].action in str(refused.value)
                else:
                    assert "no transition is allowed" in str(refused.value)


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_each_kind_walks_its_path(kind):
    event = event_in(kind, "reported")
    actors = {"close": "张督查", "reopen": "张督查"}
    for hour, action in enumerate(HAPPY_PATHS[kind], start=1):
        move = plan_move(event, action, actor=actors.get(action, "王伟"), at=at(hour),
                         note="说明")
        for key, value in move.changes.items():
            event[key] = value
        event["version"] = move.version
        assert move.log.loc[0, "id"] == f"EV-{kind}/{move.version}"
    assert event["state"] == "closed" and event["version"] == len(HAPPY_PATHS[kind]) + 1
    assert event["owner"] == "王伟" and event["closed_by"] == "张督查"
    assert event["accepted_at"] == at(1) and event["closed_at"] == at(len(HAPPY_PATHS[kind]))


def test_what_each_step_records():
    event = event_in("emergency", "reported")
    move = plan_move(event, "escalated", actor="王伟", owner="街道应急办", at=at(0.5))
    assert move.changes == {"state": "escalated", "updated_at": at(0.5),
                            "accepted_at": at(0.5), "owner": "街道应急办"}
    log = move.log.iloc[0]
    assert (log["event"], log["version"], log["from_state"], log["to_state"],
            log["action"], log["actor"], log["at"]) == (
        "EV-emergency", 2, "reported", "escalated", "escalate", "王伟", at(0.5))
    resolved = event_in("emergency", "escalated", version=3)
    move = plan_move(resolved, "resolve", actor="应急办", at=at(3))
    assert move.changes["resolved_by"] == "应急办" and move.changes["resolved_at"] == at(3)
    reopened = plan_move(event_in("general", "resolved", resolved_by="王伟"), "reopen",
                         actor="张督查", note="未彻底处理", at=at(4))
    assert reopened.changes["resolved_at"] is None and reopened.changes["resolved_by"] is None
    assert reopened.log.loc[0, "note"] == "未彻底处理"


def test_refusals_that_are_not_about_the_path():
    with pytest.raises(TransitionRefused, match="needs a note"):
        plan_move(event_in("coordination", "taken_back"), "resolve", actor="王伟", at=at(1))
    with pytest.raises(TransitionRefused, match="needs a note"):
        plan_move(event_in("emergency", "escalated"), "track", actor="王伟", note="  ",
                  at=at(1))
    with pytest.raises(TransitionRefused, match="needs who acts"):
        plan_move(event_in("general", "reported"), "accept", actor="", at=at(1))
    with pytest.raises(TransitionRefused, match="someone else must supervise"):
        plan_move(event_in("general", "resolved", resolved_by="王伟"), "close", actor="王伟",
                  at=at(1))
    with pytest.raises(TransitionRefused, match="before its last change"):
        plan_move(event_in("general", "reported"), "accept", actor="王伟", at=at(-1))
    with pytest.raises(ValueError, match="event kind"):
        new_event("urgent", "王伟")
    with pytest.raises(ValueError, match="reporter"):
        new_event("general", " ")


# --- time limits ----------------------------------------------------------------------

def events_frame(*rows: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(list(rows)).reset_index(drop=True)


def test_emergencies_carry_a_time_limit_and_overdue_ones_are_listed():
    fresh = new_event("emergency", "王伟", at=T0, event_id="E-fresh").iloc[0]
    assert fresh["deadline"] == at(24)
    assert pd.isna(new_event("general", "王伟", at=T0).iloc[0]["deadline"])
    not_taken = event_in("emergency", "reported", id="E-not-taken")
    escalated = event_in("emergency", "escalated", id="E-escalated", accepted_at=at(1))
    resolved = event_in("emergency", "resolved", id="E-resolved", accepted_at=at(1),
                        resolved_at=at(5), resolved_by="应急办")
    general = event_in("general", "reported", id="G-old")
    frame = events_frame(not_taken, escalated, resolved, general)

    assert overdue(frame, now=at(1)).empty
    late = overdue(frame, now=at(3))
    assert late["id"].tolist() == ["E-not-taken"]
    assert "respond limit" in late["reason"].iloc[0] and late["overdue_hours"].iloc[0] == 1.0
    late = overdue(frame, now=at(30)).set_index("id")
    assert list(late.index) == ["E-not-taken", "E-escalated"]
    assert "respond limit" in late.loc["E-not-taken", "reason"]
    assert "deadline" in late.loc["E-not-taken", "reason"]
    assert late.loc["E-escalated", "due"] == at(24)
    assert late.loc["E-escalated", "overdue_hours"] == 6.0
    # other kinds get limits only when given
    limits = {**DEFAULT_LIMITS, "general": TimeLimit(respond=pd.Timedelta(days=1))}
    assert "G-old" in overdue(frame, now=at(30), limits=limits)["id"].tolist()
    custom = new_event("general", "王伟", at=T0, limits={"general": TimeLimit(
        resolve=pd.Timedelta(hours=72))}).iloc[0]
    assert custom["deadline"] == at(72)


# --- the five haves ---------------------------------------------------------------------

def test_the_five_haves():
    late_evening = new_event("general", "王伟", grid="G-1", at="2026-05-01 23:30",
                             event_id="late").iloc[0]  # 15:30 UTC, still May 1st in China
    frame = events_frame(
        event_in("general", "reported", id="new"),
        event_in("general", "accepted", id="owned", owner="王伟"),
        event_in("general", "resolved", id="resolved", owner="王伟", resolved_by="王伟"),
        event_in("general", "closed", id="closed", owner="王伟", resolved_by="王伟",
                 closed_by="张督查"),
        event_in("general", "reported", id="other-grid", grid="G-2"),
        late_evening,
    )
    patrols = pd.DataFrame({"worker": ["王伟"], "grid": ["G-1"],
                            "date": [pd.Timestamp("2026-05-01").date()]})
    haves = five_haves(frame, patrols).set_index("id")
    assert haves.loc["new"].tolist() == [True, True, False, False, False, 2]
    assert haves.loc["owned", "owned"] and not haves.loc["owned", "resolved"]
    assert haves.loc["resolved"].tolist() == [True, True, True, True, False, 4]
    assert haves.loc["closed"].tolist() == [True, True, True, True, True, 5]
    assert not haves.loc["other-grid", "patrolled"]
    assert haves.loc["late", "patrolled"]  # the China day, not the UTC one
    assert not five_haves(frame)["patrolled"].any()


# --- the assessment (C4) --------------------------------------------------------------

def test_assessment_per_grid_and_worker():
    frame = events_frame(
        event_in("general", "closed", id="a", owner="王伟", resolved_by="王伟",
                 closed_by="张督查", resolved_at=at(2), accepted_at=at(1)),
        event_in("coordination", "resolved", id="b", owner="王伟", resolved_by="王伟",
                 resolved_at=at(6), accepted_at=at(1)),
        event_in("emergency", "escalated", id="c", accepted_at=at(3), deadline=at(24)),
        event_in("approval", "reported", id="d", grid="G-2", reporter="李娜"),
        event_in("general", "reported", id="old", reported_at=ev.to_utc("2026-04-01 08:00")),
    )
    patrols = pd.DataFrame({
        "worker": ["王伟", "王伟", "王伟", "李娜", "李娜"],
        "grid": ["G-1", "G-1", "G-1", "G-2", "G-3"],
        "date": [pd.Timestamp(d).date() for d in
                 ("2026-05-01", "2026-05-01", "2026-05-02", "2026-05-01", "2026-04-30")]})
    table = assessment(frame, patrols, start="2026-05-01", end="2026-05-31",
                       now=at(48)).set_index("grid")
    g1 = table.loc["G-1"]
    assert g1["events"] == 3
    assert (g1["kind_general"], g1["kind_coordination"], g1["kind_emergency"]) == (1, 1, 1)
    assert (g1["state_closed"], g1["state_resolved"], g1["state_escalated"]) == (1, 1, 1)
    assert g1["resolve_hours_median"] == 4.0 and g1["resolve_hours_mean"] == 4.0
    assert g1["overdue"] == 1  # the emergency: escalated after 3 h, unresolved after 24 h
    assert g1["five_haves"] == 1 and g1["patrol_days"] == 2
    assert table.loc["G-2", "events"] == 1 and table.loc["G-2", "patrol_days"] == 1
    assert "G-3" not in table.index  # patrolled before the period only
    everything = assessment(frame, patrols, now=at(48)).set_index("grid")
    assert everything.loc["G-1", "events"] == 4 and everything.loc["G-3", "patrol_days"] == 1
    workers = assessment(frame, patrols, by="worker", start="2026-05-01",
                         now=at(48)).set_index("worker")
    assert workers.loc["王伟", "events"] == 3 and workers.loc["李娜", "patrol_days"] == 1
    assert workers.loc["王伟", "patrol_days"] == 2
    with pytest.raises(ValueError):
        assessment(frame, by="street")


# --- in the stores ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_each_kind_walks_its_path_in_the_store(store, kind):
    report_event(store, kind, "王伟", grid="G-1", at=T0, event_id="EV-1", summary="路灯坏了",
                 point=shapely.Point(110.97, 30.84))
    actors = {"close": "张督查", "reopen": "张督查"}
    for hour, action in enumerate(HAPPY_PATHS[kind], start=1):
        move = move_event(store, "EV-1", action, actor=actors.get(action, "王伟"),
                          at=at(hour), note=f"第{hour}步")
        assert move.version == hour + 1
    with pytest.raises(TransitionRefused, match="no transition is allowed"):
        move_event(store, "EV-1", "reopen", actor="张督查", at=at(99), note="x")
    row = store.read(EVENTS).iloc[0]
    assert (row["state"], row["version"], row["closed_by"]) == (
        "closed", len(HAPPY_PATHS[kind]) + 1, "张督查")
    log = store.read(EVENT_LOG).sort_values("version")
    assert log["action"].tolist() == HAPPY_PATHS[kind]
    assert log["version"].tolist() == list(range(2, len(HAPPY_PATHS[kind]) + 2))
    assert log["note"].tolist() == [f"第{h}步" for h in range(1, len(HAPPY_PATHS[kind]) + 1)]
    assert (log["from_state"].iloc[1:].to_numpy() == log["to_state"].iloc[:-1].to_numpy()).all()
    history = timeline(row, log)
    assert history["action"].tolist() == ["report", *HAPPY_PATHS[kind]]
    assert store.read(EVENTS, bbox=(110.9, 30.8, 111.0, 30.9))["id"].tolist() == ["EV-1"]


def test_a_refused_move_changes_nothing(store):
    report_event(store, "general", "王伟", at=T0, event_id="EV-1")
    with pytest.raises(TransitionRefused, match="allowed: accept → accepted"):
        move_event(store, "EV-1", "close", actor="张督查", at=at(1))
    assert store.read(EVENTS).iloc[0]["version"] == 1
    assert not store.has(EVENT_LOG)
    with pytest.raises(StoreError, match="no event 'EV-9'"):
        move_event(store, "EV-9", "accept", actor="王伟")


def test_a_stale_writer_never_overwrites(store, open_again):
    report_event(store, "general", "王伟", at=T0, event_id="EV-1")
    other = open_again()
    seen = store.read(EVENTS).iloc[0]  # both look at version 1
    move_event(other, "EV-1", "accept", actor="李娜", at=at(1))
    stale = plan_move(seen, "accept", actor="王伟", at=at(2))
    with pytest.raises(ConflictError, match="version 2"):
        store.update(EVENTS, "id", "EV-1", stale.changes, expected_version=1,
                     append=(EVENT_LOG, stale.log))
    row = store.read(EVENTS).iloc[0]
    assert (row["owner"], row["version"]) == ("李娜", 2)
    assert store.read(EVENT_LOG)["actor"].tolist() == ["李娜"]
    # with the version the caller saw, a move is refused at once ...
    with pytest.raises(ConflictError):
        move_event(store, "EV-1", "handle", actor="王伟", at=at(3), expected_version=1)
    # ... without it, the move is judged again on the new state.
    with pytest.raises(TransitionRefused, match="is accepted"):
        move_event(store, "EV-1", "accept", actor="王伟", at=at(3))
    assert move_event(store, "EV-1", "handle", actor="王伟", at=at(3),
                      expected_version=2).version == 3


ROUNDS_PER_WRITER = 4


def test_two_writers_racing_lose_no_transition(store, open_again):
    """Two writers, each with its own store connection, repeatedly read the same version
    of one emergency and both try to add a tracking note (escalated → escalated). In
    each round exactly one wins; the other gets ConflictError and retries in the next
    round. At the end the log holds every note exactly once, versions without a gap."""
    report_event(store, "emergency", "王伟", at=T0, event_id="EV-1")
    move_event(store, "EV-1", "escalate", actor="王伟", at=at(0.5))
    writers = {"A": open_again(), "B": open_again()}
    pending = {name: [f"{name}{i}" for i in range(ROUNDS_PER_WRITER)] for name in writers}
    rounds = 2 * ROUNDS_PER_WRITER
    read_done, write_done = threading.Barrier(2), threading.Barrier(2)
    outcomes: list[tuple[int, str, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            target = writers[name]
            for r in range(rounds):
                event = target.read(EVENTS, where={"id": "EV-1"}).iloc[0]
                read_done.wait(timeout=30)  # both have read before either writes
                if pending[name]:
                    note = pending[name][0]
                    move = plan_move(event, "track", actor=name, note=note, at=at(1 + r))
                    try:
                        target.update(EVENTS, "id", "EV-1", move.changes,
                                      expected_version=int(event["version"]),
                                      append=(EVENT_LOG, move.log))
                        outcome = "won"
                        pending[name].pop(0)
                    except ConflictError:
                        outcome = "conflict"
                    with lock:
                        outcomes.append((r, name, outcome))
                write_done.wait(timeout=30)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            read_done.abort()
            write_done.abort()

    threads = [threading.Thread(target=writer, args=(name,)) for name in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    per_round = Counter((r, outcome) for r, _, outcome in outcomes)
    attempts = Counter(r for r, _, _ in outcomes)
    for r in range(rounds):
        assert per_round[(r, "won")] == 1, outcomes  # exactly one winner every round
        assert per_round[(r, "conflict")] == attempts[r] - 1
    assert sum(1 for *_, o in outcomes if o == "conflict") >= ROUNDS_PER_WRITER
    assert not pending["A"] and not pending["B"]
    log = store.read(EVENT_LOG).sort_values("version")
    tracks = log[log["action"] == "track"]
    assert sorted(tracks["note"]) == sorted(
        [f"A{i}" for i in range(ROUNDS_PER_WRITER)] + [f"B{i}" for i in range(ROUNDS_PER_WRITER)])
    assert log["version"].tolist() == list(range(2, 3 + rounds))
    assert log["id"].is_unique
    for name in writers:  # each writer's notes in its own order
        assert tracks.loc[tracks["actor"] == name, "note"].tolist() == [
            f"{name}{i}" for i in range(ROUNDS_PER_WRITER)]
    assert store.read(EVENTS).iloc[0]["version"] == 2 + rounds


def test_move_event_retries_after_a_conflict(store, open_again):
    """Unsynchronised writers using move_event (re-read and retry): all moves land."""
    report_event(store, "emergency", "王伟", at=T0, event_id="EV-1")
    move_event(store, "EV-1", "escalate", actor="王伟", at=at(0.5))
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        target = open_again()
        try:
            for i in range(3):
                move_event(target, "EV-1", "track", actor=name, note=f"{name}{i}",
                           retries=20)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    log = store.read(EVENT_LOG)
    assert sorted(log.loc[log["action"] == "track", "note"]) == [
        "A0", "A1", "A2", "B0", "B1", "B2"]
    assert sorted(log["version"]) == list(range(2, 9))


def test_events_stored_by_other_means_are_adopted(store):
    """An events layer imported or uploaded with the base fields only: the workflow says
    what to do, and after adopting it the events move as any other."""
    imported = new_event("emergency", "王伟", at=T0, event_id="EV-1")[
        ["id", "kind", "grid", "reporter", "state", "reported_at", "geometry"]]
    store.write(EVENTS, imported)
    with pytest.raises(StoreError, match="gisgrid events adopt"):
        move_event(store, "EV-1", "escalate", actor="王伟", at=at(1))
    with pytest.raises(StoreError, match="lacks the workflow's columns"):
        report_event(store, "general", "王伟", at=T0, event_id="EV-2")
    adopted = ev.adopt_events(store.read(EVENTS))
    assert adopted.loc[0, "version"] == 1 and adopted.loc[0, "deadline"] == at(24)
    assert adopted.loc[0, "updated_at"] == at(0)
    store.write(EVENTS, adopted)
    assert move_event(store, "EV-1", "escalate", actor="王伟", at=at(1)).version == 2
    report_event(store, "general", "王伟", at=T0, event_id="EV-2")
    assert ev.adopt_events(store.read(EVENTS))["version"].tolist() == [2, 1]  # kept
