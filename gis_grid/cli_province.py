"""``gisgrid province …``: territories above county level, county by county.

A province (or prefecture) is many counties; each county is one unit of work. The
commands here run ``partition``, ``validate``, ``coverage`` and ``atlas`` per county
through ``layers.fanout``: in this process by default, or on a Dask distributed cluster
with ``--scheduler tcp://host:8786`` (or ``GISGRID_SCHEDULER``), one task per county.
"""

from __future__ import annotations

import sys

import click

from gis_grid.cli import _display, store_option

SCHEDULER_HELP = (
    "Dask scheduler address (tcp://host:8786): each county becomes one task on that "
    "cluster; the store must then be PostGIS. Default: $GISGRID_SCHEDULER, else run "
    "in this process.")


def scheduler_option(f):
    f = click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
                     help="Times a county is re-run after its task failed or its worker "
                          "died.")(f)
    f = click.option("--county", "counties", multiple=True, metavar="CODE",
                     help="Only these counties (repeatable). Default: every county of "
                          "layer territory.")(f)
    f = click.option("--no-resume", is_flag=True,
                     help="Redo every county, even those already done with the same "
                          "inputs.")(f)
    return click.option("--scheduler", envvar="GISGRID_SCHEDULER", metavar="ADDRESS",
                        default=None, help=SCHEDULER_HELP)(f)


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
    the province with no gap and no overlap; every layer has a ``county`` column.
    """
    from tqdm import tqdm

    from layers.province import build_province
    from layers.store import open_store, resolve_store_url

    click.echo(f"building province {name}: {counties} counties …", err=True)
    frames = build_province(name, counties=counties, seed=seed,
                            households_per_county=households_per_county,
                            townships_per_county=townships_per_county,
                            units_per_township=units_per_township)
    with open_store(store) as target:
        for layer, frame in tqdm(frames.items(), desc="writing layers", unit="layer",
                                 file=sys.stderr, disable=None):
            target.write(layer, frame)
    click.echo(f"stored in {_display(resolve_store_url(store))}: "
               + ", ".join(f"{len(f)} {n}" for n, f in frames.items()))


def _run(job: str, params: dict, store, scheduler, counties, no_resume, retries) -> None:
    from layers.fanout import run_province

    params["resume"] = not no_resume
    run = run_province(store, job, params, scheduler=scheduler, counties=counties or None,
                       retries=retries, echo=lambda text: click.echo(text, err=True))
    click.echo(run.text())
    if not run.ok:
        sys.exit(1)


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
              help="Folder for <county>/coverage.json.")
@scheduler_option
@store_option
def coverage(institution, layer, out, scheduler, counties, no_resume, retries, store):
    """Coverage report per county, written to OUT/<county>/coverage.json."""
    _run("coverage", {"institution": institution, "layer": layer, "out": out}, store,
         scheduler, counties, no_resume, retries)


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
    _run("atlas", {"institution": institution, "layer": layer, "out": out, "limit": limit},
         store, scheduler, counties, no_resume, retries)

