"""The event statistics job: the periodic assessment (定期考核) per grid or worker (plan
code C4; ARCHITECTURE.md).

Reads layers ``events`` (required) and ``patrols``; computes
``gis_grid.events.assessment`` (events by kind and state, hours to resolve, overdue
events, events with all five haves, patrol days) for the ``by``, ``start``, ``end`` and
``now`` parameters; stores nothing; with the ``out`` parameter, writes the table for
people (Chinese headers) to that file, .xlsx or .csv.
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
                 "five_haves": "五有齐全数", "patrol_days": "巡查天数"}


def _reads(params, available) -> list[Read]:
    from gis_grid.events import EVENTS, PATROLS

    return [Read(EVENTS, required=True), Read(PATROLS)]


def _compute(inputs, params) -> Outcome:
    import pandas as pd

    from gis_grid.events import EVENTS, PATROLS, assessment

    by = params.get("by", "grid")
    table = assessment(inputs[EVENTS], inputs.get(PATROLS), by=by, start=params.get("start"),
                       end=params.get("end"), now=params.get("now"))
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        text = table.to_string(index=False)
    files = {params["out"]: Sheets({"考核": (table, STATS_HEADERS)})} if params.get("out") \
        else {}
    return Outcome(result=table, files=files, summary={"by": by, "rows": len(table)},
                   text=text)


#: Parameters: ``by`` (``grid`` or ``worker``), ``start`` and ``end`` (the period's first
#: and last China days), ``now`` (when overdue is judged, default now), ``out`` (the file
#: to write for people, a path relative to the folder the files are written into).
EVENT_STATS = Job("event_stats", reads=_reads, compute=_compute)
