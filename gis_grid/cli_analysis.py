"""The analysis commands of ``gisgrid``: ``coverage`` and ``place``.

Loaded by ``gis_grid.cli`` on demand (its ``LAZY_COMMANDS``:
``"coverage": "gis_grid.cli_analysis:coverage"``, ``"place": "gis_grid.cli_analysis:place"``).
Like the rest of the CLI this is composition: it reads
layers from the store (``layers``), runs the engine (``gis_grid.coverage``,
``gis_grid.placement``) and writes the report files (``layers.reports``); the store and
file modules are imported inside the commands so that ``gisgrid --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import click

from gis_grid.cli import _display, store_option
from gis_grid.cli_fanout import (
    check_store,
    fanout_options,
    out_folder,
    refuse_fanout_only,
    run_fanout,
)


def _radius_options(f):
    f = click.option("--rural-radius", type=click.FloatRange(min=0, min_open=True),
                     default=5000.0, show_default=True, metavar="METRES",
                     help="Service radius in rural units (villages); 5 km is the threshold "
                          "India's regulator uses for villages.")(f)
    f = click.option("--urban-radius", type=click.FloatRange(min=0, min_open=True),
                     default=2000.0, show_default=True, metavar="METRES",
                     help="Service radius in urban units (communities, business areas, "
                          "parks, campuses).")(f)
    return f


def _read_optional(store, name: str):
    return store.read(name) if store.has(name) else None


def _suffix(institution: str | None) -> str:
    """Layer-name suffix of an institution's own analysis (``NSH`` → ``__nsh``)."""
    if not institution:
        return ""
    clean = "".join(ch if ch.isalnum() else "_" for ch in institution.lower())
    return f"__{clean}" if clean and clean[0].isalpha() and clean.isascii() else ""


@click.command()
@store_option
@click.option("--institution", default=None, metavar="ID",
              help="Measure access through this institution's outlets and devices only, "
                   "and restrict grids, ledger and staff to it (a bank's own view). The "
                   "across-bank tables still use every bank.")
@_radius_options
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
@click.option("--period", default=None, metavar="YYYY-MM",
              help="Ledger period to use. Default: the latest.")
@click.option("--data-date", default=None,
              help="The date the data describe, stated in the report. Default: the ledger "
                   "period.")
@click.option("--households-geojson", is_flag=True,
              help="Also write households_access.geojson: every household point with its "
                   "distances (large: about 1 KB per point).")
@click.option("--no-store-layers", is_flag=True,
              help="Do not store the coverage_gaps and service_blanks layers.")
@click.option("--out", type=click.Path(file_okay=False), default="coverage-report",
              show_default=True, help="Folder for the report files.")
@fanout_options
def coverage(store, institution, urban_radius, rural_radius, grid_layers, max_institutions,
             year, period, data_date, households_geojson, no_store_layers, out, scheduler,
             counties, no_resume, retries):
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
      blanks     villages / communities with no touch point within the radius of any
                 of their households, with households and distance to the nearest one
      gaps       the territory beyond the radius of every touch point, as polygons
                 with area and the households inside
      FAS        outlets and devices per 10,000 households / residents and per
                 1,000 km², per township and territory (IMF Financial Access Survey)
      banks      institutions whose grids cover each unit, over-concentration, rural
                 units in no bank's grid, HHI of outlets per township
      files      ledger files against the phase targets, what is behind and by how much
      staffing   one person per grid
      ranking    an assessment score per institution and its rank

    \b
    Writes to --out: report.json (machines), a CSV per table and coverage.xlsx (people:
    Chinese headers, a 说明 sheet stating radius, data date, counts and layers used),
    and GeoJSON layers service_blanks, coverage_gaps, units_access (and grid_overlap).
    Stores the layers coverage_gaps and service_blanks (suffixed __ID for --institution)
    for maps and the API.

    County by county on a Dask cluster (--scheduler ADDRESS or $GISGRID_SCHEDULER): each
    county's report is made by one task from that county's layers, with the options
    above, and written by the worker to OUT/<county>/ (the same files as above; every
    worker must reach OUT at the same path). Touch points across a county border do not
    count for the county's households, and the across-bank tables, ranking and HHI are
    the county's own. The layers coverage_gaps and service_blanks are the counties'
    merged, stored all-or-nothing. The default grid layers are those named grids or
    grids__NAME, without the counties' staging layers (…__c<code>). A territory without
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
      gisgrid coverage --store postgresql://… --out /shared/report --scheduler tcp://A:8786
    """
    from gis_grid.coverage import Radii, coverage_report
    from layers.fanout import is_staging
    from layers.reports import write_geojson, write_json, write_tables
    from layers.store import open_store, resolve_store_url

    refuse_fanout_only(scheduler)
    if scheduler:
        _coverage_fanout(store, institution, urban_radius, rural_radius, grid_layers,
                         max_institutions, year, period, data_date, households_geojson,
                         no_store_layers, out, scheduler, counties, no_resume, retries)
        return
    url = resolve_store_url(store)
    with open_store(store) as source:
        names = {info.name for info in source.layers()}
        read = {name: source.read(name) for name in ("territory", "households")}
        optional = {name: _read_optional(source, name)
                    for name in ("outlets", "devices", "units", "townships", "institutions",
                                 "ledger", "staff")}
        # Not a province run's county staging layers (grids__nsh__c420527).
        chosen = list(grid_layers) or sorted(
            n for n in names if (n == "grids" or n.startswith("grids__"))
            and not is_staging(n))
        grids = {name: source.read(name) for name in chosen}
        report = coverage_report(
            **read, **optional, grids=grids,
            radii=Radii(urban=urban_radius, rural=rural_radius), institution=institution,
            max_institutions=max_institutions, year=int(year), period=period,
            data_date=data_date, include_households=households_geojson,
            layers_used={name: f"{_display(url)}:{name}"
                         for name in [*read, *(k for k, v in optional.items() if v is not None),
                                      *grids]},
        )
        stored = []
        if not no_store_layers:
            suffix = _suffix(institution)
            for name in ("coverage_gaps", "service_blanks"):
                if name in report.layers:
                    source.write(name + suffix, report.layers[name])
                    stored.append(name + suffix)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [write_json(report.to_dict(), folder / "report.json")]
    written += write_tables(folder, report.tables, meta=report.meta, stem="coverage")
    for name, layer in report.layers.items():
        written.append(write_geojson(layer, folder / f"{name}.geojson"))
    click.echo(report.summary())
    click.echo(f"wrote {len(written)} files to {folder}/ (report.json, coverage.xlsx, "
               f"{len(report.tables)} CSV tables, {len(report.layers)} GeoJSON layers)")
    if stored:
        click.echo(f"stored layers {', '.join(stored)} in {_display(url)}")


def _coverage_fanout(store, institution, urban_radius, rural_radius, grid_layers,
                     max_institutions, year, period, data_date, households_geojson,
                     no_store_layers, out, scheduler, counties, no_resume, retries) -> None:
    """``gisgrid coverage --scheduler``: the coverage job of ``layers.fanout``, county by
    county, with the command's options."""
    from layers.fanout import is_staging
    from layers.store import open_store

    check_store(store, scheduler)
    chosen = list(grid_layers)
    if not chosen:
        with open_store(store) as source:
            chosen = sorted(info.name for info in source.layers()
                            if (info.name == "grids" or info.name.startswith("grids__"))
                            and not is_staging(info.name))
    params = {"institution": institution, "grids": chosen,
              "radii": {"urban": urban_radius, "rural": rural_radius},
              "max_institutions": max_institutions, "year": int(year), "period": period,
              "data_date": data_date, "include_households": households_geojson,
              "out": out_folder(out), "report_files": True,
              "store_suffix": None if no_store_layers else _suffix(institution)}

    def after(run) -> list[str]:
        done = sum(c.status != "failed" for c in run.counties)
        return [f"wrote the report files of {done} counties to {out}/<county>/ "
                "(report.json, coverage.xlsx, CSV tables, GeoJSON layers)"]

    run_fanout("coverage", params, store, scheduler, counties, no_resume, retries,
               after=after)


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
@_radius_options
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
def place(store, kind, k, candidates, candidates_crs, radius, urban_radius, rural_radius,
          institution, problem, method, time_limit, data_date, out):
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
    import datetime as dt

    import pandas as pd

    from gis_grid.coverage import Radii, touch_points
    from gis_grid.errors import InputError, Problem
    from gis_grid.placement import candidate_sites, maximal_covering, set_covering
    from layers.reports import write_geojson, write_json, write_tables
    from layers.store import open_store, resolve_store_url

    url = resolve_store_url(store)
    radii = Radii(urban=radius or urban_radius, rural=radius or rural_radius)
    with open_store(store) as source:
        households = source.read("households")
        units = _read_optional(source, "units")
        townships = _read_optional(source, "townships")
        outlets = _read_optional(source, "outlets") if kind in ("outlet", "any") else None
        devices = _read_optional(source, "devices") if kind in ("device", "any") else None
    existing = touch_points(outlets, devices, institution=institution) if (
        outlets is not None or devices is not None) else None
    if candidates:
        from layers.files import read_file

        raw = read_file(candidates, crs=candidates_crs)
        if raw.problems:
            raise InputError(raw.problems, source=raw.source)
        sites = raw.frame
        if "geometry" not in sites or len(sites) == 0:
            raise InputError([Problem(str(candidates), None, None,
                                      "holds no candidate points (a point layer, or a CSV "
                                      "with lon/lat columns)")])
        if "site" not in sites:
            sites.insert(0, "site", [f"C{i + 1:04d}" for i in range(len(sites))])
        source_name = str(candidates)
    else:
        if units is None:
            raise InputError([Problem("place", None, None,
                                      "the store has no units layer to take unit centres "
                                      "from; give --candidates")])
        sites = candidate_sites(units, households, townships)
        source_name = "unit and town centres"
    results = {}
    if problem in ("mclp", "both"):
        results["mclp"] = maximal_covering(households, sites, k=k, existing=existing,
                                           units=units, radii=radii, method=method,
                                           time_limit=time_limit)
    if problem in ("lscp", "both"):
        results["lscp"] = set_covering(households, sites, existing=existing, units=units,
                                       radii=radii, method=method, time_limit=time_limit)
    meta = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_date": data_date, "kind": kind, "k": k, "institution": institution,
        "radii": radii.as_dict(), "method": method,
        "counts": {"household_points": len(households),
                   "existing_touch_points": 0 if existing is None else len(existing),
                   "candidates": len(sites)},
        "layers_used": {**{name: f"{_display(url)}:{name}" for name, v in
                           (("households", households), ("units", units),
                            ("townships", townships), ("outlets", outlets),
                            ("devices", devices)) if v is not None},
                        "candidates": source_name},
    }
    tables = {}
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, result in results.items():
        table = pd.DataFrame(result.sites.drop(columns="geometry"))
        lonlat = result.sites.geometry.to_crs("EPSG:4326")
        table["lon"], table["lat"] = lonlat.x.round(6), lonlat.y.round(6)
        tables[f"sites_{name}"] = table
        written.append(write_geojson(result.sites, folder / f"sites_{name}.geojson"))
    written.insert(0, write_json({"meta": meta, **{
        name: {"method": r.method, "report": r.report,
               "sites": pd.DataFrame(r.sites.drop(columns="geometry")).to_dict("records")}
        for name, r in results.items()}}, folder / "placement.json"))
    written += write_tables(folder, tables, meta=meta, stem="placement")
    for result in results.values():
        click.echo(result.summary())
    click.echo(f"wrote {len(written)} files to {folder}/")
