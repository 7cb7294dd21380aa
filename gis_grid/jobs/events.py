"""The event statistics job: the periodic assessment (定期考核) per grid or worker (plan
code C4; ARCHITECTURE.md).

Reads layers ``events`` (required), ``patrols`` and the grid layer (``grids`` parameter,
default layer ``grids``); computes ``gis_grid.events.assessment`` (events by kind and
state, hours to resolve, overdue events, events with all five haves, patrol days and
rate against the daily requirement, score and rank; every finest grid, zeros included)
for the ``by``, ``start``, ``end`` and ``now`` parameters; stores nothing; with the
``out`` parameter, writes the scored table (考核) and, by grid, the ranked notice (通报,
``gis_grid.events.notice``) for people (Chinese headers), .xlsx or .csv.
"""

from __future__ import annotations

from gis_grid.jobs.base import Job, Outcome, Read, Sheets

#: Chinese column headers of the assessment written for people.
STATS_HEADERS = {"grid": "网格", "worker": "网格员", "events": "事件数",
                 "kind_general": "一般性", "kind_coordination": "协调性",
                 "kind_emergency": "突发性", "kind_approval": "审批性",
                 "state_reported": "已上报", "state_accepted": "已受理",
                 "state_handled_on_site": "现场处理", "state_taken_back": "带回社区",
                 "state_escalated": "上报街道", "state_resolved": "已解决",
                 "state_closed": "督查办结", "resolve_hours_median": "办结时长中位数（小时）",
                 "resolve_hours_mean": "办结时长平均（小时）", "overdue": "超时数",
                 "five_haves": "五有齐全数", "patrol_days": "巡查天数", "days": "考核天数",
                 "patrol_rate": "巡查率", "on_time": "按时办结率",
                 "five_haves_share": "五有齐全率", "score": "得分", "rank": "排名",
                 "verdict": "通报结果", "reason": "通报原因"}


def _grid_layer(params, available) -> str | None:
    """The grid layer whose finest grids are assessed (zeros included): the ``grids``
    parameter, else layer ``grids`` when the store has it."""
    name = params.get("grids") or "grids"
    return name if name in available else None


def _reads(params, available) -> list[Read]:
    from gis_grid.events import EVENTS, PATROLS

    layer = _grid_layer(params, available)
    return [Read(EVENTS, required=True), Read(PATROLS),
            *([Read(layer, key="grids")] if layer else [])]


def _compute(inputs, params) -> Outcome:
    import pandas as pd

    from gis_grid.events import (
        EVENTS,
        PATROLS,
        SUBJECT_CATEGORIES,
        assessment,
        by_category,
        local_days,
        notice,
    )
    from gis_grid.staffing import finest_grids

    by = params.get("by", "grid")
    grids = inputs.get("grids")
    codes = (grids.loc[finest_grids(grids), "code"].astype(str).tolist()
             if grids is not None and len(grids) else None)
    table = assessment(inputs[EVENTS], inputs.get(PATROLS), by=by, start=params.get("start"),
                       end=params.get("end"), now=params.get("now"), grids=codes)
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        text = table.to_string(index=False)
    sheets = {"考核": (table, STATS_HEADERS)}
    if by == "grid":
        sheets["通报"] = (notice(table), STATS_HEADERS)
    events = inputs[EVENTS]
    days = local_days(events["reported_at"]) if len(events) else pd.Series(dtype=object)
    first, last = params.get("start"), params.get("end")
    inside = pd.Series(True, index=events.index)
    if first:
        inside &= (days >= pd.Timestamp(first).date()).to_numpy()
    if last:
        inside &= (days <= pd.Timestamp(last).date()).to_numpy()
    categories = tuple(params.get("categories") or SUBJECT_CATEGORIES)
    sheets["定责分类"] = (by_category(events[inside.to_numpy()], categories, by=by),
                      STATS_HEADERS)
    files = {params["out"]: Sheets(sheets)} if params.get("out") else {}
    return Outcome(result=table, files=files, summary={"by": by, "rows": len(table)},
                   text=text)


#: Parameters: ``by`` (``grid`` or ``worker``), ``start`` and ``end`` (the period's first
#: and last China days), ``now`` (when overdue is judged, default now), ``out`` (the file
#: to write for people, a path relative to the folder the files are written into).
EVENT_STATS = Job("event_stats", reads=_reads, compute=_compute)
