"""What every command shares: the store option, exit codes, printing a store's address,
and the fan-out options (``--scheduler``, ``--county``, ``--no-resume``, ``--retries``).

``scheduler_option`` adds the fan-out options to a province command; ``fanout_options``
adds the same options to a plain command, where they only apply with ``--scheduler``
(without one the plain command runs on the whole territory in this process).
``run_fanout`` runs a job county by county (``layers.fanout``), prints the report and
exits 1 when a county failed or a check found problems.
"""

from __future__ import annotations

import json
import sys

import click

EXIT_CODES = """\b
Exit codes:
  0  success
  1  the work ran and found problems (e.g. an invalid grid layer)
  2  wrong usage (unknown option, missing argument)
  3  input rejected: the file or layer failed its checks; nothing was stored
  4  store error: the store could not be opened, read or written"""

STORE_HELP = (
    "Where layers live: a GeoPackage file (*.gpkg, no server needed) or a PostGIS URL "
    "(postgresql://user@host:5432/db). Default: $GISGRID_STORE, else ./gisgrid.gpkg."
)


def store_option(f):
    """``--store`` (``GISGRID_STORE``): a GeoPackage file or a PostGIS URL."""
    return click.option("--store", envvar="GISGRID_STORE", metavar="PATH|URL",
                        help=STORE_HELP)(f)


def display(url: str) -> str:
    """A store address fit to print: the password of a URL is hidden."""
    from sqlalchemy.engine import make_url

    if "://" in url:
        return make_url(url).render_as_string(hide_password=True)
    return url


SCHEDULER_HELP = (
    "Dask scheduler address (tcp://host:8786): each county becomes one task on that "
    "cluster; the store must then be PostGIS. Default: $GISGRID_SCHEDULER, else run "
    "in this process.")

PLAIN_SCHEDULER_HELP = (
    "Run county by county on the Dask cluster of this scheduler (tcp://host:8786): each "
    "county of layer territory becomes one task that reads its county from the store and "
    "writes its result back, so the store must be PostGIS (a GeoPackage is refused, "
    "exit 4). A territory without a county column (one sample county) is one task. "
    "Default: $GISGRID_SCHEDULER; unset, the whole territory runs in this process.")

#: The options that only mean something with a scheduler (on the plain commands).
FANOUT_ONLY = {"counties": "--county", "no_resume": "--no-resume", "retries": "--retries"}


def _fanout_options(f, *, scheduler_help: str, prefix: str, every: str):
    def text(sentence: str) -> str:
        return prefix + (sentence[0].lower() + sentence[1:] if prefix else sentence)

    f = click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
                     metavar="N",
                     help=text("Times a county is re-run after its task failed or its "
                               "worker died."))(f)
    f = click.option("--county", "counties", multiple=True, metavar="CODE",
                     help=text(f"Only this county (repeatable). Default: {every}."))(f)
    f = click.option("--no-resume", is_flag=True,
                     help=text("Redo every county, even those already done with the same "
                               "inputs and options (by default they are skipped)."))(f)
    return click.option("--scheduler", envvar="GISGRID_SCHEDULER", metavar="ADDRESS",
                        default=None, help=scheduler_help)(f)


def scheduler_option(f):
    """``--scheduler``, ``--county``, ``--no-resume``, ``--retries`` of a province command."""
    return _fanout_options(f, scheduler_help=SCHEDULER_HELP, prefix="",
                           every="every county of layer territory")


def fanout_options(f):
    """The same options on a plain command: they apply with ``--scheduler`` only."""
    return _fanout_options(f, scheduler_help=PLAIN_SCHEDULER_HELP,
                           prefix="With --scheduler: ", every="every county")


def refuse_fanout_only(scheduler: str | None) -> None:
    """Without a scheduler, refuse the options that only apply with one (a plain command
    then works on the whole territory in this process, exactly as before)."""
    if scheduler:
        return
    ctx = click.get_current_context()
    for name, option in FANOUT_ONLY.items():
        if ctx.get_parameter_source(name) in (click.core.ParameterSource.COMMANDLINE,
                                              click.core.ParameterSource.ENVIRONMENT):
            raise click.UsageError(
                f"{option} only applies with --scheduler (county by county on a Dask "
                f"cluster); without it `gisgrid {ctx.info_name}` works on the whole "
                f"territory in this process. To run county by county in this process, "
                f"use `gisgrid province {ctx.info_name}`.", ctx=ctx)


def check_store(store: str | None, scheduler: str | None) -> str:
    """The store's address; refuses a GeoPackage with a scheduler before anything is
    opened (``StoreError``, exit 4)."""
    from layers.fanout import check_scheduler_store
    from layers.store import resolve_store_url

    url = resolve_store_url(store)
    check_scheduler_store(url, scheduler)
    return url


def out_folder(out: str | None) -> str | None:
    """``--out`` as an absolute path: the workers write there (a folder every worker
    reaches at the same path when they are on other machines)."""
    import os

    return os.path.abspath(out) if out else None


def run_json(run) -> dict:
    """A fan-out run as JSON-ready data (for ``--json``)."""
    from dataclasses import asdict

    from gis_grid.jsonable import plain

    return plain({"job": run.job, "layer": run.layer, "ok": run.ok,
                  "seconds": round(run.seconds, 3), "counties": [asdict(c) for c in run.counties],
                  "merged": run.merged, "stored": run.stored, "seams": run.seams,
                  "dashboard": run.dashboard})


def run_fanout(job, params: dict, store, scheduler, counties, no_resume, retries, *,
               as_json: bool = False, after=None) -> None:
    """Run ``job`` (a ``gis_grid.jobs.Job``) county by county
    (``layers.fanout.run_province``), print its report (or its JSON), and exit 1 when a
    county failed or a check found problems.

    ``after(run)``, if given, runs before the report is printed (e.g. to write files of
    the merged result) and may return lines to print after it.
    """
    from layers.fanout import run_province

    params["resume"] = not no_resume
    run = run_province(store, job, params, scheduler=scheduler, counties=counties or None,
                       retries=retries, echo=lambda text: click.echo(text, err=True))
    lines = after(run) if after is not None else None
    if as_json:
        click.echo(json.dumps(run_json(run), ensure_ascii=False, indent=2))
    else:
        click.echo(run.text())
    for line in lines or ():
        click.echo(line, err=as_json)
    if not run.ok:
        sys.exit(1)


def _weight_pairs(ctx, param, values) -> tuple[tuple[str, float], ...]:
    """``--weight CRITERION=W`` as (criterion, weight) pairs; the values are checked with
    the other weights (``gis_grid.coverage.ranking.assessment_weights``)."""
    pairs = []
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r}: write CRITERION=WEIGHT, e.g. files=0.3",
                                     ctx, param)
        try:
            pairs.append((name.strip(), float(number)))
        except ValueError:
            raise click.BadParameter(f"{value!r}: {number!r} is not a number", ctx,
                                     param) from None
    return tuple(pairs)


def assessment_options(f):
    """``--assessment FILE`` and ``--weight CRITERION=W``: the assessment's criteria and
    weights, the same options wherever the assessment table is printed (coverage, atlas)."""
    f = click.option("--weight", "weight_options", multiple=True, metavar="CRITERION=W",
                     callback=_weight_pairs,
                     help="Weight of one criterion (repeatable). Over --assessment's "
                          "weights when both are given; alone, the criteria named are the "
                          "assessment's. Default coverage=0.3 files=0.3 staffing=0.2 "
                          "blanks_closed=0.2.")(f)
    return click.option("--assessment", "assessment_file", type=click.Path(dir_okay=False),
                        default=None, metavar="FILE",
                        help="The assessment's criteria and weights, TOML (*.toml) or "
                             "JSON: criterion = weight, at the top level or under "
                             "[weights]. Criteria: coverage, files, staffing, "
                             "blanks_closed; weights ≥ 0 summing to 1; a criterion not "
                             "named weighs 0.")(f)


def resolve_weights(assessment_file: str | None,
                    weight_options: tuple[tuple[str, float], ...]) -> tuple[dict, str]:
    """The weights of :func:`assessment_options` and where they came from (the file, the
    options, or ``default``); bad weights are an ``InputError`` (exit 3)."""
    from gis_grid.coverage.ranking import assessment_weights, read_assessment

    if assessment_file:
        return (read_assessment(assessment_file, overrides=weight_options),
                str(assessment_file) + (" + --weight" if weight_options else ""))
    if weight_options:
        return assessment_weights(dict(weight_options), source="--weight"), "--weight"
    return assessment_weights(), "default"


def radius_options(f):
    """``--urban-radius`` and ``--rural-radius``: the service radii of the coverage figures
    (coverage, place, and the atlas's assessment table)."""
    f = click.option("--rural-radius", type=click.FloatRange(min=0, min_open=True),
                     default=5000.0, show_default=True, metavar="METRES",
                     help="Service radius in rural units (villages); 5 km is the threshold "
                          "India's regulator uses for villages.")(f)
    f = click.option("--urban-radius", type=click.FloatRange(min=0, min_open=True),
                     default=2000.0, show_default=True, metavar="METRES",
                     help="Service radius in urban units (communities, business areas, "
                          "parks, campuses).")(f)
    return f


def local_time(stamp) -> str:
    """A stored (UTC) time as China time to the minute, for people; ``-`` when missing."""
    import pandas as pd

    from gis_grid.events import LOCAL_TZ

    if stamp is None or pd.isna(stamp):
        return "-"
    return pd.Timestamp(stamp).tz_convert(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
