"""The analysis commands of ``gisgrid``: ``coverage`` and ``place``.

Each runs its job (``gis_grid.jobs.COVERAGE``, ``PLACEMENT``) through ``layers.runner``
on the whole territory (``coverage`` county by county with ``--scheduler``), and prints
what it found and wrote.
"""

from __future__ import annotations

from pathlib import Path

import click

from gis_grid.cli.common import (
    assessment_options,
    check_store,
    display,
    fanout_options,
    out_folder,
    radius_options,
    refuse_fanout_only,
    resolve_weights,
    run_fanout,
    store_option,
)

_STRICT_HELP = ("Refuse (exit 3) household, outlet and device points (and candidates) with "
                "broken coordinates (missing, non-finite, not a longitude/latitude) or "
                "beyond the largest radius of the territory, naming each by layer and id. "
                "Default: leave them out, with a warning on stderr and in the report.")


def _warn(meta) -> None:
    """The analysis' warnings (points left out), on stderr."""
    for line in (meta or {}).get("warnings") or []:
        click.echo(f"gisgrid: warning: {line}", err=True)



def _period(ctx, param, value):
    """A ledger period is checked by its form before any work, ledger or not."""
    import re

    from gis_grid.model import PERIOD

    if value is not None and not re.fullmatch(PERIOD, value):
        raise click.BadParameter(f"{value!r} is not a period: YYYY-MM or YYYY-Qn (2026-06, "
                                 "2026-Q2)")
    return value

@click.command()
@store_option
@click.option("--institution", default=None, metavar="ID",
              help="Measure access through this institution's outlets and devices only, "
                   "and restrict grids, ledger and staff to it (a bank's own view). The "
                   "across-bank tables still use every bank.")
@radius_options
@click.option("--grids", "grid_layers", multiple=True, metavar="LAYER",
              help="Grid layer(s) to use, repeatable. Default: every layer named grids or "
                   "grids__NAME in the store.")
@click.option("--max-institutions", type=click.IntRange(min=0), default=3,
              show_default=True,
              help="Urban units covered by more institutions' grids than this are flagged "
                   "over-concentrated.")
@click.option("--year", type=click.Choice(["1", "2", "3"]), default="1", show_default=True,
              help="Phase year whose targets the files are measured against (year 1: "
                   "villages 40 %, urban residents 40 %, merchants/parks/firms 50 %, rural "
                   "households 70 %; year 2 and 3: 100 %).")
@click.option("--period", default=None, metavar="YYYY-MM", callback=_period,
              help="Ledger period to use (YYYY-MM or YYYY-Qn). Default: the latest.")
@click.option("--data-date", default=None,
              help="The date the data describe, stated in the report. Default: the ledger "
                   "period.")
@click.option("--households-geojson", is_flag=True,
              help="Also write households_access.geojson: every household point with its "
                   "distances (large: about 1 KB per point).")
@click.option("--no-store-layers", is_flag=True,
              help="Do not store the coverage_gaps, service_blanks and "
                   "units_without_service_point layers.")
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
@click.option("--out", type=click.Path(file_okay=False), default="coverage-report",
              show_default=True, help="Folder for the report files.")
@assessment_options
@fanout_options
def coverage(store, institution, urban_radius, rural_radius, grid_layers, max_institutions,
             year, period, data_date, households_geojson, no_store_layers, strict, out,
             assessment_file, weight_options, scheduler, counties, no_resume, retries):
    """Coverage and gap analysis: who is within reach of a bank, where the blanks are, and
    how each bank's grid work measures up.

    \b
    Reads from the store: territory, households, outlets and/or devices (required);
    units, townships, institutions, ledger, staff and grid layers (where present).

    \b
    Measures, in the territory's metric CRS (never in degrees):
      access     distance from every household point and unit to the nearest touch
                 point of each kind (outlet by tier, device by type, any); covered
                 when within the radius of its kind of area
      shares     households covered per territory, urban/rural, township, unit, grid
                 and institution
      no point   villages / communities with no outlet or device inside them
                 (无网点无机具的村/社区), whether or not a point outside reaches them
      blanks     villages / communities with no touch point within the radius of any
                 of their households (服务空白), with households and distance to the
                 nearest one
      gaps       the territory beyond the radius of every touch point, as polygons
                 with area and the households inside
      FAS        outlets and devices per 10,000 households / residents and per
                 1,000 km², per township and territory (IMF Financial Access Survey)
      banks      institutions whose grids cover each unit, over-concentration, rural
                 units in no bank's grid, HHI of outlets per township
      files      ledger files against the phase targets, what is behind and by how much;
                 the county-wide (全辖) row over the households layer by kind, each
                 household counted once (per unit the most files of any one bank);
                 a unit takes part for a bank when its ledger records files or visits
      staffing   one person per grid: a finest grid is staffed when a worker or
                 part-time worker (not a manager) is assigned to it, the rule of
                 gisgrid validate's no_worker
      ranking    an assessment score per institution and its rank: Σ weight ×
                 criterion score × 100 (--assessment / --weight); a bank with no
                 figure for a criterion scores 0 on it, with a note

    \b
    Writes to --out: report.json (machines), a CSV per table and coverage.xlsx (people:
    Chinese headers, a 说明 sheet stating radius, data date, counts and layers used),
    and GeoJSON layers units_without_service_point, service_blanks, coverage_gaps,
    units_access (and grid_overlap). Stores the layers coverage_gaps, service_blanks and
    units_without_service_point (suffixed __ID for --institution) for maps and the API.

    County by county on a Dask cluster (--scheduler ADDRESS or $GISGRID_SCHEDULER): each
    county's report is made by one task from that county's layers, with the options
    above, and written by the worker to OUT/<county>/ (the same files as above; every
    worker must reach OUT at the same path). Touch points across a county border do not
    count for the county's households, and the across-bank tables, ranking and HHI are
    the county's own. The layers coverage_gaps, service_blanks and
    units_without_service_point are the counties' merged, stored all-or-nothing. The
    default grid layers are those named grids or grids__NAME, without the counties'
    staging layers (…__c<code>). A territory without
    a county column (one sample county) is one task, whose report is the in-process
    one. A task that fails is retried (--retries); a county that keeps failing is
    printed by code and name, the others complete, and the exit code is 1. Re-running
    skips the counties whose inputs and options are unchanged (--no-resume redoes all);
    --county CODE runs only some (the stored layers then hold those counties alone). The
    store must be PostGIS (a GeoPackage is refused, exit 4).

    \b
    Example:
      gisgrid coverage --store zigui.gpkg --out report/
      gisgrid coverage --store zigui.gpkg --institution NSH --rural-radius 3000
      gisgrid coverage --store zigui.gpkg --weight coverage=0.5 --weight files=0.5
      gisgrid coverage --store postgresql://… --out /shared/report --scheduler tcp://A:8786
    """
    from gis_grid.jobs import COVERAGE
    from gis_grid.naming import grid_layers as grid_layers_in
    from layers.runner import available_layers, run_job
    from layers.store import open_store, resolve_store_url

    refuse_fanout_only(scheduler)
    weights, weights_source = resolve_weights(assessment_file, weight_options)
    url = resolve_store_url(store)
    if scheduler:
        check_store(store, scheduler)
    with open_store(store) as source:
        # The grid layers, not a province run's county staging layers (grids__nsh__c420527).
        chosen = list(grid_layers) or grid_layers_in(available_layers(source))
        params = {"institution": institution, "grids": chosen,
                  "radii": {"urban": urban_radius, "rural": rural_radius},
                  "max_institutions": max_institutions, "year": int(year), "period": period,
                  "data_date": data_date, "include_households": households_geojson,
                  "store_layers": not no_store_layers, "source": display(url),
                  "weights": weights, "weights_source": weights_source, "strict": strict}
    if scheduler:
        run_fanout(COVERAGE, {**params, "out": out_folder(out)}, store, scheduler, counties,
                   no_resume, retries, after=lambda run: [
                       f"wrote the report files of "
                       f"{sum(c.status != 'failed' for c in run.counties)} counties to "
                       f"{out}/<county>/ (report.json, coverage.xlsx, CSV tables, "
                       "GeoJSON layers)"])
        return
    with open_store(store) as source:
        ran = run_job(source, COVERAGE, params, out=out)
    report = ran.outcome.result
    _warn(report.meta)
    click.echo(ran.outcome.text)
    click.echo(f"wrote {len(ran.written)} files to {Path(out)}/ (report.json, coverage.xlsx, "
               f"{len(report.tables)} CSV tables, {len(report.layers)} GeoJSON layers)")
    if ran.stored:
        click.echo(f"stored layers {', '.join(ran.stored)} in {display(url)}")


@click.command()
@store_option
@click.option("--kind", type=click.Choice(["outlet", "device", "any"]), default="outlet",
              show_default=True,
              help="What to place. A household counts as already covered when an existing "
                   "touch point of this kind (outlets, devices, or either) is within its "
                   "radius.")
@click.option("--k", "k", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many new sites to recommend (maximal covering).")
@click.option("--candidates", type=click.Path(dir_okay=False, exists=True), default=None,
              metavar="FILE",
              help="Candidate sites: points in a GeoJSON, GeoPackage, zipped Shapefile or "
                   "CSV with lon/lat columns. Default: the centre of every unit and town.")
@click.option("--candidates-crs", default=None, metavar="CRS",
              help="Coordinates of --candidates: an EPSG code, or gcj02 / bd09.")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="METRES", help="One radius for urban and rural areas alike; overrides "
                                     "--urban-radius and --rural-radius.")
@radius_options
@click.option("--institution", default=None, metavar="ID",
              help="Count only this institution's touch points as existing (a bank planning "
                   "its own network). Default: every bank's.")
@click.option("--problem", type=click.Choice(["mclp", "lscp", "both"]), default="both",
              show_default=True,
              help="mclp: the k sites covering the most uncovered households; lscp: the "
                   "fewest sites covering all that any candidate can reach.")
@click.option("--method", type=click.Choice(["auto", "exact", "greedy"]), default="auto",
              show_default=True,
              help="auto: exact (PySAL spopt with CBC) where the problem is small enough, "
                   "greedy always, both reported; exact: always try spopt; greedy: only the "
                   "heuristic.")
@click.option("--time-limit", type=click.FloatRange(min=1), default=60.0, show_default=True,
              metavar="SECONDS", help="Time the exact solver may take per problem.")
@click.option("--data-date", default=None,
              help="The date the data describe, stated in the report.")
@click.option("--out", type=click.Path(file_okay=False), default="placement-report",
              show_default=True, help="Folder for the report files.")
@click.option("--strict", is_flag=True, help=_STRICT_HELP)
def place(store, kind, k, candidates, candidates_crs, radius, urban_radius, rural_radius,
          institution, problem, method, time_limit, data_date, out, strict):
    """Recommend where new outlets or devices should go.

    \b
    From candidate sites (a file, or the unit and town centres), finds
      mclp   the k sites that cover the most households no existing touch point
             covers (maximal covering), with the households each site newly covers
      lscp   the fewest sites that cover all of them (set covering)
    exactly with PySAL spopt where it finishes in time, and always with a fast greedy
    heuristic (within 1 − 1/e of the optimum for mclp) whose result is reported next to
    the optimum, or next to an upper / lower bound where the exact model is too big.

    \b
    Writes to --out: placement.json, a CSV per table and placement.xlsx (Chinese
    headers, 说明 sheet), and sites_mclp.geojson / sites_lscp.geojson.

    \b
    Example:
      gisgrid place --store zigui.gpkg --kind device --k 5
      gisgrid place --store zigui.gpkg --kind outlet --candidates sites.csv --radius 3000
    """
    from gis_grid.errors import InputError
    from gis_grid.jobs.placement import PLACEMENT
    from layers.runner import run_job
    from layers.store import open_store, resolve_store_url

    params = {"kind": kind, "k": k, "radius": radius, "urban_radius": urban_radius,
              "rural_radius": rural_radius, "institution": institution, "problem": problem,
              "method": method, "time_limit": time_limit, "data_date": data_date,
              "source": display(resolve_store_url(store)), "strict": strict}
    extra = {}
    if candidates:
        from layers.files import read_file

        raw = read_file(candidates, crs=candidates_crs)
        if raw.problems:
            raise InputError(raw.problems, source=raw.source)
        extra["candidates"] = raw.frame
        params["candidates_source"] = str(candidates)
    with open_store(store) as source:
        ran = run_job(source, PLACEMENT, params, extra=extra, out=out)
    _warn(ran.outcome.result["meta"])
    click.echo(ran.outcome.text)
    click.echo(f"wrote {len(ran.written)} files to {Path(out)}/")
