"""``gisgrid reports`` and ``gisgrid tasks``: plan A's risk reports along their path
(受理 → 处置 / 转办 → 反馈 → 办结), tasks handed down from above (交办), the plan-A
assessment (A9) and the Chinese workbook of reports, inspections and assessment.

The path and its time limits are ``gis_grid.riskflow``'s; ``layers`` is imported inside
the commands.
"""

from __future__ import annotations

import click
import pandas as pd

from gis_grid.cli.common import local_time, store_option

#: Chinese headers of the plan-A workbook.
HEADERS_ZH = {
    "id": "编号", "entity": "主体编号", "name": "主体名称", "grid": "所在网格",
    "township": "所在乡镇街道", "date": "检查日期", "inspector": "检查人",
    "checks": "发现问题", "route": "分流", "handler": "承办单位", "reason": "分流理由",
    "status": "办理状态", "routed_at": "分流时间", "department": "转办部门",
    "due": "办理时限", "updated_at": "最近办理时间", "version": "版本", "overdue": "是否超时",
    "check": "检查项", "finding": "有无", "detail": "情况说明",
    "screened": "重点关注主体数", "inspections": "检查次数", "reports": "风险报告数",
    "accepted_on_time": "按时受理数", "transferred": "转办数",
    "transfers_answered": "转办已反馈数", "on_time_share": "按时受理率",
    "answered_share": "转办反馈率",
    "subject": "交办事项", "issued_by": "交办单位", "assignee": "承办方",
    "issued_at": "交办时间", "deadline": "反馈时限", "feedback": "反馈情况",
    "layer": "类别", "record": "报告或任务编号", "from_state": "原状态", "to_state": "新状态",
    "action": "操作", "actor": "操作人", "at": "时间", "note": "说明",
}


def _for_people(frame: pd.DataFrame) -> pd.DataFrame:
    """Times in China time without a zone (what a spreadsheet can hold)."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype):
            out[col] = out[col].dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    return out


@click.group()
def reports() -> None:
    """Risk reports (plan A4–A6) along their path, with time limits and a log.

    \b
    A report is made and routed once, when `gisgrid inspect` records a visit with a
    finding; its route never changes. Then:
      routed ─accept 受理→ accepted ─dispose 处置→ disposed ─feedback 反馈→ fed_back
                                    └transfer 转办 (--department)→ transferred ─feedback→
      fed_back ─close 办结→ closed;  fed_back ─reopen 退回重办 (--note)→ accepted
    Time limits: accepted within 1 day of routing, fed back within 15 days of
    acceptance, closed within 5 days of the feedback; a report past its limit is overdue.
    Every move is logged (layer report_log) with who and when.
    """


def limit_options(f):
    """The time limits of a report's steps (``gis_grid.riskflow.Limits``), in days."""
    for name, default, what in (("close", 5, "closed after its feedback"),
                                ("feedback", 15, "fed back after it is accepted"),
                                ("accept", 1, "accepted after it is routed")):
        f = click.option(f"--{name}-days", f"{name}_days", type=click.FloatRange(min=0,
                         min_open=True), default=default, show_default=True, metavar="DAYS",
                         help=f"Time limit: a report is to be {what}.")(f)
    return f


def limits_of(accept_days: float, feedback_days: float, close_days: float):
    from gis_grid.riskflow import Limits

    return Limits(accept=pd.Timedelta(days=accept_days),
                  feedback=pd.Timedelta(days=feedback_days),
                  close=pd.Timedelta(days=close_days))


@reports.command("move")
@click.argument("report")
@click.argument("to")
@click.option("--actor", required=True, help="Who acts (recorded in the log).")
@click.option("--department", default=None, help="With transfer: the department (转办部门).")
@click.option("--note", default=None, help="What was done or why (feedback, reopen).")
@click.option("--at", default=None, metavar="TIME", help="When (default now; China time).")
@limit_options
@store_option
def move_report(report, to, actor, department, note, at, accept_days, feedback_days,
                close_days, store):
    """Move REPORT to TO (an action: accept, dispose, transfer, feedback, close, reopen;
    or a state). A move the path does not allow exits 1 naming the allowed moves. The
    time limit of the step it starts is set from the --*-days limits."""
    from gis_grid.riskflow import REPORT_LABELS, REPORTS, move
    from layers.store import open_store

    with open_store(store) as target:
        state, version = move(target, REPORTS, report, to, actor=actor, at=at, note=note,
                              department=department,
                              limits=limits_of(accept_days, feedback_days, close_days))
    click.echo(f"{report} → {state} ({REPORT_LABELS[state]}), version {version}")


@reports.command("list")
@click.option("--status", default=None, help="Only reports in this state.")
@click.option("--overdue", "only_overdue", is_flag=True, help="Only overdue reports.")
@click.option("--now", default=None, metavar="TIME", help="Judge overdue at this time.")
@store_option
def list_reports(status, only_overdue, now, store):
    """The risk reports: id, entity, handler, state, time limit, overdue."""
    from gis_grid.riskflow import REPORT_LABELS, REPORTS, overdue
    from layers.store import open_store

    with open_store(store) as source:
        frame = source.read(REPORTS) if source.has(REPORTS) else pd.DataFrame()
    if not len(frame):
        click.echo("no risk reports")
        return
    frame = frame.assign(overdue=overdue(frame, now) if "due" in frame else False)
    if status:
        frame = frame[frame["status"] == status]
    if only_overdue:
        frame = frame[frame["overdue"]]
    for r in frame.itertuples(index=False):
        state = getattr(r, "status", None) or "routed"
        late = "  超时 overdue" if r.overdue else ""
        click.echo(f"{r.id}  {r.entity}  → {r.handler}  {state} ({REPORT_LABELS.get(state)})"
                   f"  due {local_time(getattr(r, 'due', None))}{late}")
    click.echo(f"{len(frame)} report(s)")


@reports.command("show")
@click.argument("report")
@store_option
def show_report(report, store):
    """One report, its route and every move."""
    from gis_grid.riskflow import LOG, REPORTS
    from gis_grid.screening import check_labels
    from layers.store import open_store

    with open_store(store) as source:
        rows = source.read(REPORTS, where={"id": [report]}) if source.has(REPORTS) \
            else pd.DataFrame()
        log = source.read(LOG, where={"record": [report]}) if source.has(LOG) \
            else pd.DataFrame()
    if not len(rows):
        raise click.BadParameter(f"no risk report {report!r}", param_hint="REPORT")
    r = rows.iloc[0]
    click.echo(f"{r['id']}  {r['entity']} {r.get('name') or ''}")
    click.echo(f"  发现问题: {check_labels(pd.Series([r['checks']])).iloc[0]}")
    click.echo(f"  分流 route: {r['route']} → {r['handler']}  ({r['reason']})")
    click.echo(f"  状态 status: {r.get('status')}  时限 due: {local_time(r.get('due'))}")
    for step in log.sort_values("version").itertuples(index=False) if len(log) else []:
        note = f" — {step.note}" if isinstance(step.note, str) and step.note else ""
        click.echo(f"  v{step.version:<3} {local_time(step.at)}  {step.action:<9} → "
                   f"{step.to_state} by {step.actor}{note}")


@reports.command("export")
@click.option("--by", type=click.Choice(["township", "grid"]), default="township",
              show_default=True, help="The assessment per street (township) or grid.")
@click.option("--now", default=None, metavar="TIME", help="Judge overdue at this time.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The workbook (.xlsx).")
@store_option
def export_reports(by, now, out, store):
    """Write the plan-A workbook (.xlsx, Chinese): 风险报告 (every report, its route,
    state, time limit and whether overdue), 排查记录 (every inspection), 考核 (A9: per
    street or grid, entities screened, inspections, reports, accepted on time, overdue,
    transferred and answered), 流转记录 (every move)."""
    from pathlib import Path

    from gis_grid.riskflow import LOG, REPORTS, assessment, overdue
    from gis_grid.screening import check_labels
    from layers.reports import write_sheets
    from layers.store import open_store

    if Path(out).suffix.lower() != ".xlsx":
        raise click.BadParameter(f"{out}: write .xlsx", param_hint="--out")
    with open_store(store) as source:
        def layer(name):
            return source.read(name) if source.has(name) else pd.DataFrame()
        frames = {n: layer(n) for n in (REPORTS, "inspections", "watch_list", LOG)}
    rep = frames[REPORTS]
    if len(rep):
        rep = rep.drop(columns=[c for c in ("geometry",) if c in rep])
        rep = rep.assign(checks=check_labels(rep["checks"]),
                         overdue=overdue(rep, now) if "due" in rep else False)
    table = assessment(frames[REPORTS], frames["inspections"], frames["watch_list"],
                       frames[LOG], by=by, now=now)
    sheets = {"风险报告": (_for_people(rep), HEADERS_ZH),
              "排查记录": (_for_people(frames["inspections"]), HEADERS_ZH),
              "考核": (table, {**HEADERS_ZH, "overdue": "超时数"}),
              "流转记录": (_for_people(frames[LOG]), HEADERS_ZH)}
    write_sheets(sheets, out)
    click.echo(f"wrote {out} ({len(rep)} reports, {len(table)} rows of assessment)")


@click.group()
def tasks() -> None:
    """Tasks handed down from above (上级交办, plan A7): a deadline and feedback.

    \b
    issued ─accept 受理→ accepted ─feedback 反馈 (--note)→ fed_back ─close 办结→ closed
    fed_back ─reopen 退回重办 (--note)→ accepted
    A task not fed back by its deadline is overdue. Every move is logged (report_log).
    """


@tasks.command("create")
@click.option("--subject", required=True, help="What is asked (交办事项).")
@click.option("--issued-by", required=True, help="Who hands it down, e.g. 市金融办.")
@click.option("--assignee", required=True, help="Street office, grid or worker.")
@click.option("--deadline", required=True, metavar="TIME",
              help="Feedback due by (China time when no zone is given).")
@click.option("--at", default=None, metavar="TIME", help="Issued at (default now).")
@click.option("--id", "task_id", default=None, help="Task id (default TK-<time>-<random>).")
@store_option
def create_task(subject, issued_by, assignee, deadline, at, task_id, store):
    """Hand a task down (交办)."""
    from gis_grid.errors import InputError, Problem
    from gis_grid.events import check_time
    from gis_grid.riskflow import TASKS, new_task
    from layers.store import open_store

    if at is not None:
        check_time(at, source="tasks create", field="--at")
    task = new_task(subject, issued_by, assignee, deadline, at=at, task_id=task_id)
    ident = str(task["id"].iloc[0])
    with open_store(store) as target:
        if target.has(TASKS) and len(target.read(TASKS, where={"id": [ident]})):
            raise InputError([Problem("tasks", None, "--id", f"任务编号 {ident} 已存在 (task "
                                      f"id {ident} is already used)", "duplicate id")],
                             source="tasks create")
        target.append(TASKS, task)
    click.echo(f"issued {ident} to {assignee}, feedback due "
               f"{local_time(task['deadline'].iloc[0])}")


@tasks.command("move")
@click.argument("task")
@click.argument("to")
@click.option("--actor", required=True)
@click.option("--note", default=None, help="The feedback (反馈), or why it is sent back.")
@click.option("--at", default=None, metavar="TIME")
@store_option
def move_task(task, to, actor, note, at, store):
    """Move TASK to TO (accept, feedback, close, reopen)."""
    from gis_grid.riskflow import TASK_LABELS, TASKS, move
    from layers.store import open_store

    with open_store(store) as target:
        state, version = move(target, TASKS, task, to, actor=actor, at=at, note=note)
    click.echo(f"{task} → {state} ({TASK_LABELS[state]}), version {version}")


@tasks.command("list")
@click.option("--overdue", "only_overdue", is_flag=True, help="Only tasks past their deadline.")
@click.option("--now", default=None, metavar="TIME")
@store_option
def list_tasks(only_overdue, now, store):
    """The tasks: id, assignee, state, deadline, overdue."""
    from gis_grid.riskflow import TASK_LABELS, TASKS, overdue
    from layers.store import open_store

    with open_store(store) as source:
        frame = source.read(TASKS) if source.has(TASKS) else pd.DataFrame()
    if not len(frame):
        click.echo("no tasks")
        return
    frame = frame.assign(overdue=overdue(frame, now, due="deadline"))
    if only_overdue:
        frame = frame[frame["overdue"]]
    for r in frame.itertuples(index=False):
        late = "  超时 overdue" if r.overdue else ""
        click.echo(f"{r.id}  {r.subject}  → {r.assignee}  {r.status} "
                   f"({TASK_LABELS.get(r.status)})  due {local_time(r.deadline)}{late}")
    click.echo(f"{len(frame)} task(s)")


@click.command()
@click.option("--at", "day", default=None, metavar="YYYY-MM-DD",
              help="The day judged on (default today, China time).")
@click.option("--institution", default=None, help="Only this institution's staff.")
@click.option("--all", "show_all", is_flag=True, help="Everyone, not only who is due.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Also write the list: .xlsx or .csv, Chinese headers.")
@store_option
def training(day, institution, show_all, out, store):
    """Who is due for training (A8: grid staff are trained at least every six months,
    原则上每半年培训一次): each person's last training (staff layer, field trained),
    when the next was due, and how many days overdue; never trained counts as due.
    The coverage report's 培训率 counts the same rule (trained within six months)."""
    from gis_grid.events import check_day
    from gis_grid.staffing import training_due
    from layers.reports import write_sheets
    from layers.store import open_store

    at = check_day(day, source="training", field="--at") if day else None
    with open_store(store) as source:
        staff = source.read("staff")
    if institution:
        staff = staff[staff["institution"].astype(str) == institution]
    table = training_due(staff, at)
    shown = table if show_all else table[table["status"] != "current"]
    shown = shown.sort_values(["status", "days_overdue"], ascending=[True, False])
    for r in shown.itertuples(index=False):
        last = "从未" if pd.isna(r.trained) else r.trained
        click.echo(f"{r.id}  {getattr(r, 'name', '')}  {getattr(r, 'institution', '')}  "
                   f"last {last}  {r.status}"
                   + (f"  {r.days_overdue} days overdue" if r.days_overdue else ""))
    due = int((table["status"] != "current").sum())
    click.echo(f"{due} of {len(table)} staff due for training (every "
               f"six months; judged on {at or 'today'})")
    if out:
        headers = {"id": "人员编号", "name": "姓名", "institution": "机构", "role": "角色",
                   "trained": "最近培训日期", "due": "应培训日期", "status": "状态",
                   "days_overdue": "逾期天数"}
        write_sheets({"培训": (shown.assign(status=shown["status"].map(
            {"current": "在期", "overdue": "逾期", "never": "从未培训"})), headers)}, out)
        click.echo(f"wrote {out}")
