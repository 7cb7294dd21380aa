"""The risk-watch and event commands of ``gisgrid``: ``screen``, ``inspect``, ``events``.

The command line of plans A and C. ``screen`` and ``events stats`` run their jobs
(``gis_grid.jobs.SCREENING``, ``EVENT_STATS``) through ``layers.runner``; the others
record one inspection, event move or patrol at a time through ``gis_grid.screening`` /
``gis_grid.events``. ``layers`` is imported inside the commands so that ``gisgrid
--help`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from gis_grid.cli.common import local_time, store_option
from gis_grid.model import EVENT_KINDS, EVENT_STATES, RISK_CHECKS

#: The five haves in one glance: a character each, "·" where missing.
HAVES_GLYPHS = {"patrolled": "巡", "reported": "报", "owned": "责", "resolved": "解",
                "supervised": "督"}


def _when(ctx, param, value):
    """A date or time option checked as it is read: a bad one is a usage error (exit 2)
    naming the option, not a traceback later. The value itself passes on unchanged."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise click.BadParameter(f"{value!r} is not a date or time ({exc})", ctx,
                                 param) from None
    if pd.isna(stamp):
        raise click.BadParameter(f"{value!r} is not a date or time", ctx, param)
    return value


def _degrees(limit: float):
    def check(ctx, param, value):
        if value is not None and not (-limit <= value <= limit):
            raise click.BadParameter(f"{value} is not a WGS84 coordinate "
                                     f"(-{limit:g}..{limit:g})", ctx, param)
        return value
    return check


def _write_out(outcome, out: str) -> None:
    """Write the file for people a job's outcome holds to ``out`` (.xlsx or .csv, as
    the job's ``out`` parameter named it), then say so."""
    from layers.runner import write_files

    if Path(out).suffix.lower() not in (".xlsx", ".csv"):
        raise click.BadParameter(f"{out}: write .xlsx or .csv", param_hint="--out")
    write_files(outcome, ".")
    click.echo(f"wrote {out}")


def _areas(source, grids: str | None):
    """The polygons entities and events are attached to, and the column they give, by
    the screening job's rule (``gis_grid.jobs.screening.areas_of``)."""
    from gis_grid.jobs.screening import area_reads, areas_of
    from layers.runner import available_layers, read_inputs

    return areas_of(read_inputs(source, area_reads(grids),
                                available=available_layers(source)))


def _routing(street: str | None, street_name: str | None, remit: str | None):
    from gis_grid.screening import Routing, parse_check

    kwargs: dict = {"street": street, "street_name": street_name or ""}
    if remit is not None:
        try:
            kwargs["street_checks"] = frozenset(parse_check(c) for c in remit.split(",")
                                                if c.strip())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--remit") from None
    return Routing(**kwargs)


ROUTING_HELP = {
    "street": "12-digit code of the street (township) whose disposal office (处置办) handles "
              "reports within its remit; reports on entities elsewhere go to the city. "
              "Default: each township handles its own.",
    "street_name": "The street's name, for the handler and the reasons (e.g. 城东街道).",
    "remit": "Checks within the street's remit, by number (1–9), comma-separated. "
             "Default 1,2,3,8,9; the others go to the city financial office (市金融办).",
}


@click.command()
@click.option("--entities", "entities_layer", default="entities", show_default=True,
              help="Layer of market entities (市场主体) to screen.")
@click.option("--file", "file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Import this file (CSV with lon/lat, GeoJSON, GeoPackage, zipped "
                   "Shapefile) into the entities layer first, checked as `gisgrid import` "
                   "checks it.")
@click.option("--crs", default=None, help="Coordinates of --file (e.g. gcj02, EPSG:4490).")
@click.option("--encoding", default=None, help="Text encoding of a CSV --file.")
@click.option("--mode", type=click.Choice(["replace", "append", "upsert", "delete"]),
              default=None,
              help="How --file changes an entities layer the store holds, as `gisgrid "
                   "import --mode` (required then: nothing is replaced by surprise).")
@click.option("--grids", default=None, metavar="LAYER",
              help="Grid layer to attach entities to (its finest grids). Default: layer "
                   "grids if it has features, else the units (villages / communities).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Also write the watch list for people: .xlsx (with per-grid counts) or "
                   ".csv, Chinese headers.")
@store_option
def screen(entities_layer, file, crs, encoding, mode, grids, out, store):
    """Screen market entities for the risk watch list (plan A2) and count it per grid.

    Flags every entity whose name holds one of the plan's words — 交易所, 交易中心, 金融,
    资产, 理财, 基金, 投资, 财富, 网贷, 网络借贷, P2P, 众筹, 互联网保险, 支付, 贷款,
    投(融)资 — except microloan companies (小额贷款公司). Names are normalised first:
    full-width letters and digits, upper/lower case, spaces and punctuation, traditional
    characters, 投(融)资 meaning 投资, 融资 and 投融资. Each flag names the words matched.

    \b
    Stores:  watch_list    the flagged entities, with their grid and words (points)
             watch_counts  per grid: entities, flagged, microloans, hits per word
    Example: gisgrid screen --file entities.csv --crs gcj02 --out 重点关注名单.xlsx
    """
    from gis_grid.jobs import SCREENING
    from layers.runner import run_job
    from layers.store import open_store

    with open_store(store) as target:
        if file is not None:
            from layers.history import default_actor
            from layers.transfer import import_file

            report = import_file(target, file, entities_layer, mode=mode, crs=crs,
                                 encoding=encoding,
                                 actor=default_actor(f"screen --mode {mode or 'replace'}"))
            click.echo(f"{report.source}: {report.mode} of {report.count} entities into layer "
                       f"{entities_layer} ({report.total} rows now)")
        ran = run_job(target, SCREENING, {"entities": entities_layer, "grids": grids,
                                          "out": out})
    click.echo(ran.outcome.text)
    click.echo(f"stored layers {' and '.join(ran.stored)}")
    if out:
        _write_out(ran.outcome, out)


@click.command()
@click.argument("entity")
@click.option("--inspector", required=True, help="Who inspected (排查人).")
@click.option("--date", "day", default=None, metavar="YYYY-MM-DD", callback=_when,
              help="Day of the visit. Default: today (China time).")
@click.option("--found", multiple=True, metavar="CHECK",
              help="A behaviour found: 1–9 or its name (repeatable). None given: the visit "
                   "found nothing.")
@click.option("--detail", default=None, help="What was found (or seen).")
@click.option("--grids", default=None, metavar="LAYER", help="Grid layer, as for screen.")
@click.option("--street", default=None, metavar="CODE", help=ROUTING_HELP["street"])
@click.option("--street-name", default=None, help=ROUTING_HELP["street_name"])
@click.option("--remit", default=None, metavar="N,N,…", help=ROUTING_HELP["remit"])
@click.option("--accept-days", type=click.FloatRange(min=0, min_open=True), default=1,
              show_default=True, metavar="DAYS",
              help="Time limit: a new report is to be accepted (受理) within this.")
@store_option
def inspect(entity, inspector, day, found, detail, grids, street, street_name, remit,
            accept_days, store):
    """Record an inspection of ENTITY against the nine behaviour checks (plan A3).

    \b
    The nine checks (有无):
      1 承诺保本保息、夸大收益         guaranteed_returns
      2 赠送礼品、预先返利             gifts_rebates
      3 向不特定对象宣传推介           public_promotion
      4 违规或变相发放贷款（首付贷、配资）disguised_lending
      5 非法吸收或变相吸收公众资金     illegal_fundraising
      6 原油、贵金属、邮币卡电子盘交易 e_trading
      7 MMM等金融互助平台             mutual_aid_platform
      8 股权众筹或集资合伙开店         shop_crowdfunding
      9 其他违法违规或风险隐患         other

    Appends nine rows (one per check, with the date, inspector and finding) to layer
    inspections. A visit with any finding is a risk report, routed once, now (A4), and
    appended to layer risk_reports — to the street's disposal office (街道处置办) when
    every check found is within its remit and the entity is in its territory, else back
    to the city financial office (市金融办) to be re-routed, with the reason. Earlier
    reports keep their route. The entity's township is its unit's, else the township
    its point lies in; --street must be a township of layer townships. The same visit
    (entity, inspector, day) is recorded once.

    Example: gisgrid inspect ENT-00010 --inspector 王伟 --found 5 --detail "承诺年化12%"
    """
    from gis_grid.events import LOCAL_TZ, check_day
    from gis_grid.riskflow import Limits, record_inspection
    from gis_grid.screening import parse_check
    from layers.store import open_store

    routing = _routing(street, street_name, remit)
    for value in found:  # a bad check number is a usage error, as with --remit
        try:
            parse_check(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--found") from None
    day = (check_day(day, source="inspect", field="--date") if day
           else pd.Timestamp.now(tz=LOCAL_TZ).date())
    with open_store(store) as target:
        areas, _ = _areas(target, grids)
        rows, reports = record_inspection(
            target, entity, day, inspector, found, detail=detail, routing=routing,
            areas=areas, limits=Limits(accept=pd.Timedelta(days=accept_days)))
        every = (target.read("risk_reports") if target.has("risk_reports")
                 else reports)
    found_now = rows.loc[rows["finding"], "check"].tolist()
    click.echo(f"recorded the inspection of {entity} on {day} by {inspector}: "
               f"{len(found_now)} of {len(RISK_CHECKS)} checks found")
    if found_now:
        report = reports[(reports["entity"] == entity)
                         & (reports["date"].astype(str) == str(pd.Timestamp(day).date()))
                         & (reports["inspector"] == inspector)].iloc[0]
        click.echo(f"risk report {report['id']} → {report['handler']}: {report['reason']}")
    click.echo(f"risk_reports: {len(every)} reports "
               f"({int((every['route'] == 'street').sum())} to the street, "
               f"{int((every['route'] == 'city').sum())} back to the city)")


@click.group()
def events() -> None:
    """Grid events (plan C): report, move along each kind's path, list, assess.

    \b
    Kinds and paths (see `gisgrid events paths`):
      general       一般性  reported → accepted → handled_on_site → resolved → closed
      coordination  协调性  reported → accepted → taken_back → resolved → closed
      emergency     突发性  reported → escalated (track) → resolved → closed
      approval      审批性  reported → accepted → resolved → closed
    A resolved event may be reopened by its supervisor; closing (督查办结) must be done
    by someone other than who resolved it. Emergencies must be escalated within 2 h and
    resolved within 24 h, else they are overdue.

    Each move updates the event and appends to layer event_log in one transaction,
    checked against the version read: of two people moving one event at once, one
    wins and the other is told (exit 4) or, without --version, judged again on the
    new state.
    """


@events.command()
@click.option("--kind", type=click.Choice(EVENT_KINDS), required=True)
@click.option("--reporter", required=True, help="The grid worker reporting (有人报告).")
@click.option("--grid", default=None,
              help="Grid code; or give --lon/--lat to find it (the finest grid there, or the "
                   "village / community when the store has no grids).")
@click.option("--lon", type=float, default=None, callback=_degrees(180),
              help="Where (WGS84 longitude). A point farther than the largest service "
                   "radius (5 km) outside the territory is refused (exit 3), named.")
@click.option("--lat", type=float, default=None, callback=_degrees(90),
              help="Where (WGS84 latitude).")
@click.option("--grids", default=None, metavar="LAYER",
              help="Grid layer used with --lon/--lat (default as for screen).")
@click.option("--summary", default=None, help="What happened.")
@click.option("--at", default=None, metavar="TIME", callback=_when,
              help="When (ISO 8601; without a zone, China time). Default: now.")
@click.option("--id", "event_id", default=None, help="Event id. Default: EV-<time>-<random>.")
@click.option("--resolve-within", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="HOURS", help="Deadline. Default: 24 for emergencies, none otherwise.")
@click.option("--category", default=None,
              help="Subject category (定责): one of --categories, default 市容管控, 环境卫生, "
                   "民政, 计生, 就业, 社保, 创建, 综治, 党建, 文化, 民生工程, 违建巡查, 医疗, "
                   "法律, 家政, 心理咨询, 金融风险, 其他.")
@click.option("--categories", "categories_file", default=None,
              type=click.Path(dir_okay=False), metavar="FILE",
              help="The office's category list: one per line, or TOML/JSON 'categories'.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=None, metavar="METRES",
              help="How far outside --grid the --lon/--lat point may lie. Default: 200 "
                   "(gis_grid.events.GRID_TOLERANCE_M).")
@store_option
def report(kind, reporter, grid, lon, lat, grids, summary, at, event_id, resolve_within,
           category, categories_file, tolerance, store):
    """Report a new event (state reported).

    Refused (exit 3, nothing stored, the reason in Chinese and English): a --grid that is
    not in the grid layer; a point farther than --tolerance outside --grid, or farther
    than 5 km outside the territory; a time in the future; an --id already used."""
    import shapely

    from gis_grid.events import (
        DEFAULT_LIMITS,
        GRID_TOLERANCE_M,
        TimeLimit,
        place_report,
        read_categories,
        report_event,
    )
    from layers.store import open_store

    if (lon is None) != (lat is None):
        raise click.UsageError("give both --lon and --lat")
    categories = read_categories(categories_file)
    point = shapely.Point(lon, lat) if lon is not None else None
    limits = dict(DEFAULT_LIMITS)
    if resolve_within is not None:
        base = limits.get(kind, TimeLimit())
        limits[kind] = TimeLimit(base.respond, pd.Timedelta(hours=resolve_within))
    with open_store(store) as target:
        areas, _ = _areas(target, grids)
        territory = target.read("territory") if target.has("territory") else None
        grid = place_report(grid=grid, point=point, at=at, category=category,
                            categories=categories, areas=areas, territory=territory,
                            layer=grids or "grids", source="events report",
                            tolerance=GRID_TOLERANCE_M if tolerance is None else tolerance)
        try:
            event = report_event(target, kind, reporter, grid=grid, point=point,
                                 summary=summary, at=at, event_id=event_id, limits=limits,
                                 category=category)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    row = event.iloc[0]
    deadline = "" if pd.isna(row["deadline"]) else f", due {local_time(row['deadline'])}"
    grid = row["grid"] if isinstance(row["grid"], str) else "-"
    click.echo(f"reported {row['id']} ({kind}) in grid {grid}{deadline}")


@events.command()
@click.argument("event")
@click.argument("to")
@click.option("--actor", required=True, help="Who acts.")
@click.option("--note", default=None, help="What was done or why (some steps need one).")
@click.option("--owner", default=None,
              help="Who takes responsibility, when not the actor (e.g. the office an "
                   "emergency is escalated to).")
@click.option("--at", default=None, metavar="TIME", callback=_when,
              help="When (default now, China time).")
@click.option("--version", "version", type=int, default=None,
              help="The version you looked at: refuse if the event changed since.")
@store_option
def move(event, to, actor, note, owner, at, version, store):
    """Move EVENT to TO: a state (accepted) or an action (accept).

    A move the event's path does not allow is refused (exit 1) with the allowed ones
    named. Example: gisgrid events move EV-1 accept --actor 王伟
    """
    from gis_grid.events import STATE_LABELS, move_event
    from layers.store import open_store

    with open_store(store) as target:
        try:
            done = move_event(target, event, to, actor=actor, at=at, note=note, owner=owner,
                              expected_version=version)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--at") from None
    click.echo(f"{event}: {done.step.source} → {done.step.target} "
               f"({STATE_LABELS[done.step.target]}) by {actor}, version {done.version}")


@events.command(name="list")
@click.option("--overdue", "only_overdue", is_flag=True,
              help="Only events past their time limit, most overdue first.")
@click.option("--grid", default=None, help="Only this grid.")
@click.option("--kind", type=click.Choice(EVENT_KINDS), default=None)
@click.option("--state", type=click.Choice(EVENT_STATES), default=None)
@click.option("--now", default=None, metavar="TIME", callback=_when,
              help="Judge overdue at this time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@store_option
def list_(only_overdue, grid, kind, state, now, as_json, store):
    """List events with their state and five haves (五有: 巡 patrolled, 报 reported,
    责 owned, 解 resolved, 督 supervised; · where missing)."""
    from gis_grid.events import PATROLS, STATE_LABELS, five_haves, overdue
    from layers.store import open_store

    where = {k: v for k, v in (("grid", grid), ("kind", kind), ("state", state)) if v}
    with open_store(store) as source:
        if not source.has("events"):
            rows = pd.DataFrame()
        else:
            rows = source.read("events", where=where or None)
        patrols = source.read(PATROLS) if source.has(PATROLS) else None
    if rows.empty:
        click.echo("[]" if as_json else "no events")
        return
    late = overdue(rows, now)
    rows = rows.assign(overdue=rows["id"].isin(late["id"]))
    if only_overdue:
        rows = late.assign(overdue=True)
    haves = five_haves(rows, patrols).set_index("id")
    if as_json:
        records = []
        for row in rows.drop(columns="geometry").itertuples(index=False):
            record = {k: (None if pd.isna(v) else v.isoformat() if hasattr(v, "isoformat")
                          else v) for k, v in row._asdict().items()}
            record["five_haves"] = {h: bool(haves.at[row.id, h]) for h in HAVES_GLYPHS}
            records.append(record)
        click.echo(json.dumps(records, ensure_ascii=False, indent=2, default=str))
        return
    click.echo(f"{len(rows)} events" + (" overdue" if only_overdue else ""))
    for row in rows.itertuples(index=False):
        glyphs = "".join(g if haves.at[row.id, h] else "·" for h, g in HAVES_GLYPHS.items())
        flag = " OVERDUE" if row.overdue else ""
        click.echo(f"  {row.id:<26} {row.kind:<12} {STATE_LABELS[row.state]:<8} "
                   f"{(row.grid if isinstance(row.grid, str) else '-'):<20} "
                   f"{local_time(row.reported_at)}  {glyphs}  v{row.version}{flag}")


@events.command()
@click.argument("event")
@store_option
def show(event, store):
    """Show EVENT's history: the report and every transition, who, when, notes."""
    from gis_grid.errors import InputError, Problem
    from gis_grid.events import EVENT_LOG, timeline
    from layers.store import open_store

    with open_store(store) as source:
        rows = source.read("events", where={"id": event}) if source.has("events") \
            else pd.DataFrame()
        if rows.empty:
            why = "" if source.has("events") else "; the store holds no events yet"
            raise InputError([Problem("events", None, "EVENT", f"没有事件 {event} (no event "
                                      f"{event!r}{why})", "unknown event")],
                             source="events show")
        log = source.read(EVENT_LOG, where={"event": event}) if source.has(EVENT_LOG) \
            else pd.DataFrame(columns=["event", "version"])
    row = rows.iloc[0]
    grid = row["grid"] if isinstance(row["grid"], str) else "-"
    click.echo(f"{event} ({row['kind']}) grid {grid}, now {row['state']}, "
               f"version {row['version']}")
    for step in timeline(row, log).itertuples(index=False):
        note = f"  — {step.note}" if isinstance(step.note, str) and step.note else ""
        click.echo(f"  v{step.version:<3} {local_time(step.at)}  {step.action:<10} → "
                   f"{step.to_state} ({step.to_zh}) by {step.actor}{note}")


@events.command()
@click.option("--worker", required=True, help="Grid worker who patrolled.")
@click.option("--grid", required=True, help="Grid patrolled.")
@click.option("--date", "day", default=None, metavar="YYYY-MM-DD",
              help="Day patrolled. Default: today (China time).")
@click.option("--grids", default=None, metavar="LAYER",
              help="Grid layer --grid must be in (default as for screen).")
@click.option("--note", default=None)
@store_option
def patrol(worker, grid, day, grids, note, store):
    """Record a day's patrol of a grid (每天巡查, C2): feeds 有人巡查 and patrol days.

    Refused (exit 3, nothing stored): a --date not written YYYY-MM-DD, impossible or
    after today; a --grid not in the grid layer; the same worker, grid and day twice."""
    from gis_grid.events import LOCAL_TZ, check_day, check_grid, record_patrol
    from layers.store import open_store

    day = (check_day(day, source="events patrol", field="--date") if day
           else pd.Timestamp.now(tz=LOCAL_TZ).date())
    with open_store(store) as target:
        areas, _ = _areas(target, grids)
        check_grid(grid, areas, source="events patrol", layer=grids or "grids")
        record_patrol(target, worker, grid, day, note)
    click.echo(f"recorded {worker}'s patrol of {grid} on {day}")


@events.command()
@click.option("--by", type=click.Choice(["grid", "worker"]), default="grid", show_default=True)
@click.option("--from", "start", default=None, metavar="YYYY-MM-DD", callback=_when,
              help="First day.")
@click.option("--to", "end", default=None, metavar="YYYY-MM-DD", callback=_when,
              help="Last day.")
@click.option("--month", default=None, metavar="YYYY-MM",
              help="The month assessed (instead of --from/--to): the monthly sheet.")
@click.option("--now", default=None, metavar="TIME", callback=_when,
              help="Judge overdue at this time.")
@click.option("--grids", default=None, metavar="LAYER",
              help="Grid layer whose finest grids are all assessed (default: grids).")
@click.option("--categories", "categories_file", default=None,
              type=click.Path(dir_okay=False), metavar="FILE",
              help="The office's subject categories (as for events report): the 定责分类 "
                   "sheet counts events per grid and category.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Also write the table: .xlsx (sheets 考核 and, by grid, 通报) or .csv, "
                   "Chinese headers.")
@store_option
def stats(by, start, end, month, now, grids, categories_file, out, store):
    """The periodic assessment (定期考核, C4) per grid or worker: events by kind and
    state, hours to resolve, overdue events, events with all five haves, patrol days and
    the patrol rate against the daily requirement (每天巡查: one patrol a day per grid),
    a score and a rank. By grid, every finest grid of the grid layer has a row, zeros
    included.

    
    Score = 100 × (0.5 × patrol rate + 0.3 × share of events on time + 0.2 × share of
    events with all five haves); a grid without events counts as met on both shares.
    The notice (通报) ranks the grids: 表扬 for the first three with a full patrol record
    and nothing overdue; 通报 for a patrol rate under 80 % or an overdue event, with the
    reason; 合格 otherwise.

    Example: gisgrid events stats --month 2026-05 --out 5月网格考核.xlsx
    """
    from gis_grid.events import read_categories
    from gis_grid.jobs import EVENT_STATS
    from layers.runner import run_job
    from layers.store import open_store

    if month is not None:
        if start or end:
            raise click.BadParameter("give --month or --from/--to, not both",
                                     param_hint="--month")
        try:
            first = pd.Period(month, freq="M") if len(month) == 7 and month[4] == "-" \
                else None
        except ValueError:
            first = None
        if first is None:
            raise click.BadParameter(f"{month!r} is not a month written YYYY-MM",
                                     param_hint="--month")
        start, end = str(first.start_time.date()), str(first.end_time.date())
    if start and end and pd.Timestamp(start) > pd.Timestamp(end):
        raise click.BadParameter(f"--from {start} is after --to {end}", param_hint="--from")
    with open_store(store) as source:
        ran = run_job(source, EVENT_STATS, {"by": by, "start": start, "end": end,
                                            "now": now, "out": out, "grids": grids,
                                            "categories": list(read_categories(
                                                categories_file))})
    click.echo(ran.outcome.text)
    if out:
        _write_out(ran.outcome, out)


@events.command()
@store_option
def adopt(store):
    """Make events stored by other means (`gisgrid import`, an API upload) fit for the
    workflow, once: add the missing columns (owner, deadline, version, …), version 1
    and the kind's deadline where missing. Rewrites layer events; run it while nobody
    else reports or moves events."""
    from gis_grid.events import adopt_events
    from layers.store import open_store

    with open_store(store) as target:
        before = target.read("events")
        target.write("events", adopt_events(before))
    added = [c for c in adopt_events(before.iloc[:0]).columns if c not in before.columns]
    click.echo(f"events: {len(before)} events adopted"
               + (f"; added columns {', '.join(added)}" if added else ""))


@events.command(name="paths")
def paths_() -> None:
    """Print every kind's allowed transitions (the state machine)."""
    from gis_grid.events import paths

    table = paths().rename(columns={"from": "source"})
    for kind, steps in table.groupby("kind", sort=False):
        click.echo(f"{kind} ({steps['kind_zh'].iloc[0]})")
        for step in steps.itertuples(index=False):
            note = "  [note required]" if step.note_required else ""
            click.echo(f"  {step.source:<16} --{step.action}--> {step.to:<16} "
                       f"{step.label_zh}{note}")
