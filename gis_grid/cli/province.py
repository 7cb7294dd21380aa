"""``gisgrid province …``: territories above county level, county by county.

A province (or prefecture) is many counties; each county is one unit of work. The
commands here run ``partition``, ``validate``, ``coverage`` and ``atlas`` per county
through ``layers.fanout``: in this process by default, or on a Dask distributed cluster
with ``--scheduler tcp://host:8786`` (or ``GISGRID_SCHEDULER``), one task per county;
``clean`` removes the staging layers and ledger rows finished runs leave. The options
shared with the plain commands live in ``gis_grid.cli.common``.
"""

from __future__ import annotations

import sys

import click

from gis_grid.cli.common import display, out_folder, run_fanout, scheduler_option, store_option


def _jobs() -> dict:
    """Every job a province run may have run, by name (imported when a command runs)."""
    from gis_grid.jobs import COVERAGE, PARTITION, VALIDATE
    from maps.jobs import ATLAS

    return {job.name: job for job in (PARTITION, VALIDATE, COVERAGE, ATLAS)}


def _run(name: str, params: dict, *args) -> None:
    run_fanout(_jobs()[name], params, *args)


@click.group()
def province() -> None:
    """Provinces and prefectures: many counties, one task per county (Dask optional).

    \b
    Typical session:
      gisgrid province sample --counties 20 --store postgresql://…
      gisgrid province partition --institution NSH --scheduler tcp://10.0.0.5:8786
      gisgrid province validate --institution NSH --scheduler tcp://10.0.0.5:8786

    Re-running resumes: counties already done with the same inputs are skipped. A county
    that keeps failing is reported by code and name; the others complete (exit code 1).
    `gisgrid province clean` removes what a finished run leaves behind for resuming (its
    staging layers and fanout_runs rows).

    The plain `gisgrid partition`, `validate`, `coverage` and `atlas` take the same
    --scheduler (and --county, --no-resume, --retries) and then run the same way.
    """


@province.command()
@click.option("--name", default="示范省", show_default=True, help="The province's name.")
@click.option("--counties", type=click.IntRange(1, 9999), default=20, show_default=True)
@click.option("--households-per-county", type=click.IntRange(min=1), default=50_000,
              show_default=True)
@click.option("--townships-per-county", type=click.IntRange(1, 999), default=8,
              show_default=True)
@click.option("--units-per-township", type=click.IntRange(1, 999), default=12,
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@store_option
def sample(name, counties, households_per_county, townships_per_county, units_per_township,
           seed, store):
    """Build a synthetic province of generated counties and store its layers.

    Everything is synthetic (codes start with 99, which no real province has): the
    outline, county and township seats, names, households, outlets, staff. Counties tile
    the province with no gap and no overlap; every layer has a ``county`` column. The
    ledger (台账) belongs to the grids: after `gisgrid province partition`, `gisgrid
    sample --ledger` stores one row per finest grid, with its grid's county.
    """
    from tqdm import tqdm

    from layers.store import open_store, resolve_store_url
    from layers.synthetic import build_province

    click.echo(f"building province {name}: {counties} counties …", err=True)
    frames = build_province(name, counties=counties, seed=seed,
                            households_per_county=households_per_county,
                            townships_per_county=townships_per_county,
                            units_per_township=units_per_township)
    # Ledger rows belong to finest grids, which only a partition makes: `gisgrid sample
    # --ledger` builds them after `gisgrid province partition`, as for one county.
    frames.pop("ledger", None)
    with open_store(store) as target:
        for layer, frame in tqdm(frames.items(), desc="writing layers", unit="layer",
                                 file=sys.stderr, disable=None):
            target.write(layer, frame)
    click.echo(f"stored in {display(resolve_store_url(store))}: "
               + ", ".join(f"{len(f)} {n}" for n, f in frames.items())
               + "; the ledger comes after a partition: gisgrid province partition "
               "--institution ID, then gisgrid sample --ledger")


@province.command()
@click.option("--institution", default=None, metavar="ID",
              help="The institution whose grids these are. Default: the government grid.")
@click.option("--level", "levels", multiple=True, metavar="METHOD[:SOURCE]",
              help="One per level, coarsest first (default: units:townships, units:units, "
                   "balanced). Level 1 should be units:townships so no grid crosses a "
                   "county border.")
@click.option("--target-households", type=click.IntRange(min=1), default=300,
              show_default=True)
@click.option("--tolerance", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True)
@click.option("--cell-size", type=click.FloatRange(min=1), default=1000.0, show_default=True)
@click.option("--layer", default=None, help="Layer to write (default grids__<institution>).")
@click.option("--seed", type=int, default=0, show_default=True)
@scheduler_option
@store_option
def partition(institution, levels, target_households, tolerance, cell_size, layer, seed,
              scheduler, counties, no_resume, retries, store):
    """Partition every county into grids and merge them into one province layer.

    Each county is cut inside its own border; the seams between counties are then made
    to share every vertex, and the merged layer is written all-or-nothing.
    """
    params = {"institution": institution, "target_households": target_households,
              "tolerance": tolerance, "cell_size": cell_size, "seed": seed, "layer": layer}
    if levels:
        params["levels"] = list(levels)
    _run("partition", params, store, scheduler, counties, no_resume, retries)


def _layer_options(f):
    f = click.option("--layer", default=None,
                     help="The grids layer (default grids__<institution>).")(f)
    return click.option("--institution", default=None, metavar="ID")(f)


@province.command()
@_layer_options
@scheduler_option
@store_option
def validate(institution, layer, scheduler, counties, no_resume, retries, store):
    """Validate each county's grids, then the seams between counties (no gap, no
    overlap across the whole province). Exit code 1 when anything is wrong."""
    _run("validate", {"institution": institution, "layer": layer}, store, scheduler,
         counties, no_resume, retries)


@province.command()
@_layer_options
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for each county's report: <county>/report.json, coverage.xlsx, "
                   "a CSV per table and the GeoJSON layers.")
@click.option("--strict", is_flag=True,
              help="A county whose household, outlet or device points have broken "
                   "coordinates or lie beyond the largest radius of the county fails, naming "
                   "each point by layer and id (exit 1 with the others done). Default: leave "
                   "them out, with a warning in the county's report.")
@scheduler_option
@store_option
def coverage(institution, layer, out, strict, scheduler, counties, no_resume, retries, store):
    """Coverage report per county, written to OUT/<county>/ (report.json, coverage.xlsx,
    CSV tables, GeoJSON layers), as `gisgrid coverage` writes it for a territory."""
    _run("coverage", {"institution": institution, "layer": layer, "out": out_folder(out),
                      "store_layers": False, "strict": strict}, store, scheduler, counties,
         no_resume, retries)


@province.command()
@_layer_options
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for <county>/atlas-urban.pdf and atlas-rural.pdf.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many pages per volume (for a quick look).")
@scheduler_option
@store_option
def atlas(institution, layer, out, limit, scheduler, counties, no_resume, retries, store):
    """Atlas volumes per county, written to OUT/<county>/."""
    _run("atlas", {"institution": institution, "layer": layer, "out": out_folder(out),
                   "limit": limit},
         store, scheduler, counties, no_resume, retries)



@province.command()
@click.option("--layer", default=None, metavar="LAYER",
              help="The runs of this grids layer (as the other province commands' --layer).")
@click.option("--institution", default=None, metavar="ID",
              help="The runs of this institution's grids layer, grids__<id>.")
@click.option("--all", "every", is_flag=True,
              help="Every run: all the ledger's rows and every staging layer "
                   "(…__c<code>) in the store.")
@click.option("--job", type=click.Choice(["partition", "validate", "coverage", "atlas"]),
              default=None, help="Only this job's runs. Default: every job of the layer.")
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@store_option
def clean(layer, institution, every, job, dry_run, store):
    """Remove the staging layers and fanout_runs rows of finished runs.

    \b
    Every county's task leaves behind, for a re-run to resume from:
      <layer>__c<code>, staff__<layer>__c<code>   partition's staging layers
      gaps__<layer>__c<code>, blanks__<layer>__c<code>
                                                 coverage's, when it stored its layers
      rows of the table fanout_runs               one per county and run, every job

    Name the runs by --layer, --institution or --all (one of them), optionally one --job.
    Every staging layer and ledger row of those runs is removed and listed; the merged
    layers (<layer>, staff, coverage_gaps…) and the report files stay as they are.

    On PostGIS all of it is removed in one transaction, or nothing is. On a GeoPackage
    the ledger rows go first in one write, then the staging layers one by one; if that
    is interrupted, cleaning again removes the rest.

    After cleaning, nothing is left to resume from: the next run of these jobs
    recomputes every county. Do not clean a layer while a run of it is going.

    \b
    Examples:
      gisgrid province clean --institution NSH --dry-run
      gisgrid province clean --layer grids__nsh --job partition
      gisgrid province clean --all
    """
    from gis_grid.naming import grid_layer
    from layers.fanout import clean_runs
    from layers.store import open_store

    chosen = [name for name, value in (("--layer", layer), ("--institution", institution),
                                       ("--all", every)) if value]
    if len(chosen) != 1:
        raise click.UsageError("name the runs to clean with one of --layer, --institution "
                               "or --all" + (f" (not {' and '.join(chosen)})" if chosen else ""))
    name = None if every else layer or grid_layer(institution)
    with open_store(store) as target:
        cleaned = clean_runs(target, list(_jobs().values()), layer=name, job=job,
                             dry_run=dry_run)
    click.echo(cleaned.text())
