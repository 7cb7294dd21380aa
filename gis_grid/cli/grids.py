"""``gisgrid partition``, ``validate`` and ``repair``: the well-field grid commands.

``partition`` and ``validate`` run their jobs (``gis_grid.jobs.PARTITION``,
``VALIDATE``) through ``layers.runner`` on the whole territory, or county by county
through ``layers.fanout`` with ``--scheduler``; ``repair`` reads, repairs
(``gis_grid.topology``) and writes the layer back.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gis_grid.cli.common import (
    check_store,
    display,
    fanout_options,
    out_folder,
    refuse_fanout_only,
    run_fanout,
    store_option,
)
from gis_grid.naming import grid_layer

LEVEL_HELP = (
    "METHOD[:SOURCE]: units:townships, units:units (villages / communities), balanced "
    "(about --target-households each), tiles (squares or hexagons of --cell-size m), "
    "outlets (service areas of the level's outlet tiers). Give 'none' to stop before it."
)


def _read_optional(store, name: str):
    return store.read(name) if store.has(name) else None


@click.command()
@click.option("--institution", default=None, metavar="ID",
              help="The institution whose grids these are (its outlets and staff are used). "
                   "Default: the government grid, over every institution's outlets.")
@click.option("--level1", default="units:townships", show_default=True, help=LEVEL_HELP)
@click.option("--level2", default="units:units", show_default=True, help=LEVEL_HELP)
@click.option("--level3", default="balanced", show_default=True, help=LEVEL_HELP)
@click.option("--target-households", type=click.IntRange(min=1), default=300,
              show_default=True, help="balanced: households per grid (plan C1: about 300).")
@click.option("--tolerance", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True, help="balanced: allowed deviation (0.2 = ±20 %).")
@click.option("--cell-size", type=click.FloatRange(min=1), default=1000.0, show_default=True,
              help="tiles: side of a square tile in metres (a hexagon has the same area).")
@click.option("--shape", type=click.Choice(["square", "hexagon"]), default="square",
              show_default=True, help="tiles: the cell shape.")
@click.option("--min-area", type=click.FloatRange(min=0), default=None,
              help="tiles: pieces below this many m² merge into a neighbour "
                   "(default a tenth of a tile).")
@click.option("--capacity", is_flag=True,
              help="outlets: balance service areas by households.")
@click.option("--assign-staff/--no-assign-staff", default=True, show_default=True,
              help="Give each finest grid one of the institution's workers (一人一格) and "
                   "each level-2 grid a manager, in code order, and record it in staff.")
@click.option("--layer", default=None,
              help="Layer to write. Default: grids__<institution> (lower case), or grids for "
                   "the government grid.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Also write report.json and grids.geojson to this folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@fanout_options
@store_option
def partition(institution, level1, level2, level3, target_households, tolerance, cell_size,
              shape, min_area, capacity, assign_staff, layer, out, seed, scheduler, counties,
              no_resume, retries, store):
    """Divide the territory into nested grids, well-field style (井田制), and store them.

    Each level is cut out of its parent's own geometry, so every result is a partition
    of its parent: union equals the parent, no overlap, no gap, each grid one connected
    polygon. Codes are hierarchical (the parent's code is the child's prefix) and stable
    under small changes of input.

    \b
    Reads:  territory, townships, units, households, outlets, staff (from --store)
    Writes: the grids layer (all or nothing), staff.grids when --assign-staff
    Prints: grid count, household balance (min / max / CV) and compactness per level,
            and every parent that could not meet the tolerance, with why.

    County by county on a Dask cluster (--scheduler ADDRESS or $GISGRID_SCHEDULER): each
    county of layer territory is partitioned by one task, inside its own border (so
    level 1 should be units:townships), with every option above, and the county's grid
    staff are given its grids; the grids on both sides of each county seam are then
    made to share every vertex and merged into the grids layer all-or-nothing. A
    territory without a county column (one sample county) is one task and gives the
    grids the in-process run gives. With --out, each county's report is
    OUT/<county>/report.json and grids.geojson (written by the workers) and the merged grids
    OUT/grids.geojson. A task that fails is retried (--retries); a county that keeps
    failing is printed by code and name, the others are merged, and the exit code is 1.
    Re-running skips the counties whose inputs and options are unchanged (--no-resume
    redoes all); --county CODE runs only some, and the grids layer then holds those
    counties alone. The store must be PostGIS (a GeoPackage is refused, exit 4);
    `gisgrid province clean` removes the staging layers and ledger rows kept for
    resuming.

    \b
    Examples:
      gisgrid partition --institution NSH
      gisgrid partition --level1 units:townships --level2 tiles --level3 none --cell-size 2000
      gisgrid partition --institution YCB --level1 outlets --level2 outlets --capacity
      gisgrid partition --institution NSH --scheduler tcp://10.0.0.5:8786 --store postgresql://…
    """
    from gis_grid.jobs import PARTITION
    from gis_grid.jobs.partition import level_specs
    from layers.runner import run_job
    from layers.store import check_layer_name, open_store

    refuse_fanout_only(scheduler)
    texts = [t for t in (level1, level2, level3) if t.strip().lower() != "none"]
    try:
        level_specs(texts, capacity=capacity)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("LevelSpec: ")) from None
    target = check_layer_name(layer or grid_layer(institution))
    params = {"institution": institution, "layer": target, "levels": texts,
              "target_households": target_households, "tolerance": tolerance,
              "cell_size": cell_size, "shape": shape, "min_area": min_area,
              "capacity": capacity, "assign_staff": assign_staff, "seed": seed}
    if scheduler:
        check_store(store, scheduler)
        with open_store(store) as source:
            _check_institution(source, institution)
        run_fanout(PARTITION, {**params, "out": out_folder(out)}, store, scheduler, counties,
                   no_resume, retries, after=lambda run: _write_merged_grids(run, store, out))
        return
    with open_store(store) as source:
        _check_institution(source, institution)
        click.echo(f"partitioning {display(source.url)} …", err=True)
        try:
            ran = run_job(source, PARTITION, params, out=out)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    grids = ran.outcome.layers["grids"]
    click.echo(ran.outcome.text)
    click.echo(f"stored {len(grids)} grids as layer {target}")
    if out:
        folder = Path(out)
        click.echo(f"report: {folder / 'report.json'}, grids: {folder / 'grids.geojson'}")


def _check_institution(source, institution: str | None) -> None:
    if institution is not None:
        known = _read_optional(source, "institutions")
        if known is not None and institution not in set(known["id"].astype(str)):
            raise click.BadParameter(
                f"{institution!r} is not in layer institutions "
                f"({', '.join(sorted(known['id'].astype(str)))})", param_hint="--institution")


def _write_merged_grids(run, store, out: str | None) -> list[str]:
    """After a fanned-out partition with --out: the merged layer as OUT/grids.geojson."""
    from layers.store import open_store

    if not out or not run.merged:
        return []
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with open_store(store) as source:
        grids = source.read(run.layer)
    grids.to_file(folder / "grids.geojson", driver="GeoJSON")
    return [f"reports: {folder}/<county>/report.json, grids: {folder / 'grids.geojson'}"]


def _tolerance_options(f):
    from gis_grid.topology import (
        DEFAULT_GAP_WIDTH,
        DEFAULT_SLIVER_AREA,
        DEFAULT_SNAP_TOLERANCE,
    )

    f = click.option("--snap-tolerance", type=float, default=DEFAULT_SNAP_TOLERANCE,
                     show_default=True, help="Metres within which vertices count as the same "
                                             "point.")(f)
    f = click.option("--sliver-area", type=float, default=DEFAULT_SLIVER_AREA,
                     show_default=True, help="m²: pieces smaller than this are slivers.")(f)
    f = click.option("--gap-width", type=float, default=DEFAULT_GAP_WIDTH, show_default=True,
                     help="Metres: gaps narrower than this are flagged as near-miss edges.")(f)
    return f


def _layers_for_check(source, name: str):
    grids = source.read(name)
    territory = _read_optional(source, "territory")
    households = _read_optional(source, "households")
    staff = _read_optional(source, "staff")
    return grids, territory, households, staff


@click.command()
@click.option("--grids", "layer", default="grids", show_default=True,
              help="The grid layer to check (ours, or one uploaded by a bank).")
@click.option("--no-territory", is_flag=True,
              help="Do not check the top level against the territory layer (gaps are then "
                   "the holes inside the grids' union).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write validation.json (the machine report) and validation-problems.geojson "
                   "(every problem geometry) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead.")
@_tolerance_options
@fanout_options
@store_option
def validate(layer, no_territory, out, as_json, gap_width, sliver_area, snap_tolerance,
             scheduler, counties, no_resume, retries, store):
    """Check a grid layer like a linter: exit 0 when it is a valid well-field partition,
    1 when not.

    \b
    Finds, per institution and level: gaps inside the territory (with area and the
    households inside), overlaps (pairs and area), slivers, invalid geometry, grids in
    several pieces, edges that do not match their neighbour's, children outside their
    parent and parents not covered by their children, codes not prefixed by the parent's,
    duplicate codes, households in no grid, and staffing breaches (a grid with no worker,
    a worker holding several grids — B4).

    County by county on a Dask cluster (--scheduler ADDRESS or $GISGRID_SCHEDULER): each
    county's grids are checked by one task against its territory, households and staff,
    with the options above; then, on this machine, the whole layer's level-1 grids are
    checked against all the counties, which finds the gaps and overlaps along the seams
    between counties that no county's own check sees (a territory without a county column
    — one sample county — is one task, and has no seams). It prints one line per county
    with problems and the seams' result; --json prints that run as JSON (each county's
    problem counts by kind, the seams), and --out writes each county's report as
    OUT/<county>/validation.json and validation-problems.geojson (written by the workers)
    and the seams' as OUT/seams.json and seams-problems.geojson. Exit 1 when a county
    has problems, the seams do, or a county's task kept failing (--retries); re-running
    skips the counties already checked with the same inputs (--no-resume redoes all);
    --county CODE checks only some. The store must be PostGIS (a GeoPackage is refused,
    exit 4).
    """
    from gis_grid.jobs import VALIDATE
    from layers.runner import run_job
    from layers.store import open_store

    refuse_fanout_only(scheduler)
    params = {"layer": layer, "no_territory": no_territory, "gap_width": gap_width,
              "sliver_area": sliver_area, "snap_tolerance": snap_tolerance}
    if scheduler:
        check_store(store, scheduler)
        run_fanout(VALIDATE, {**params, "out": out_folder(out)}, store, scheduler, counties,
                   no_resume, retries, as_json=as_json, after=lambda run: [
                       f"wrote {out}/<county>/validation.json and "
                       "validation-problems.geojson" + (
                           ", seams.json and seams-problems.geojson" if run.seams else "")
                   ] if out else [])
        return
    with open_store(store) as source:
        ran = run_job(source, VALIDATE, params, out=out)
    report = ran.outcome.result
    click.echo(report.to_json() if as_json else ran.outcome.text)
    for path in ran.written:
        click.echo(f"wrote {path}", err=True)
    sys.exit(0 if ran.outcome.ok else 1)


@click.command()
@click.option("--grids", "layer", default="grids", show_default=True,
              help="The grid layer to repair.")
@click.option("--to", "target", default=None,
              help="Write the repaired layer here instead of replacing --grids.")
@click.option("--priority", default="longest_border", show_default=True,
              metavar="RULE|COLUMN",
              help="Who keeps an overlap: longest_border (the neighbour sharing the longest "
                   "border, as GEOS's coverage cleaner), max_area, min_area, min_index (the "
                   "earlier row), or a column whose lower value wins (e.g. code).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write repair-changes.csv (every change: grid, m² and households gained or "
                   "lost) and the remaining validation report here.")
@_tolerance_options
@store_option
def repair(layer, target, priority, out, gap_width, sliver_area, snap_tolerance, store):
    """Repair a grid layer: snap within the tolerance, give each gap or sliver to the
    neighbour sharing the longest border, resolve overlaps by the stated priority, fix
    invalid rings — and list every change.

    It never loses area silently: afterwards the layer validates, or the report says what
    is left and why (exit 1).
    """
    from gis_grid.jobs.validate import report_outcome
    from gis_grid.topology import repair_grids
    from layers.runner import write_files
    from layers.store import check_layer_name, open_store

    destination = check_layer_name(target or layer)
    with open_store(store) as source:
        grids, territory, households, _ = _layers_for_check(source, layer)
        try:
            result = repair_grids(grids, territory=territory, households=households,
                                  gap_width=gap_width, sliver_area=sliver_area,
                                  snap_tolerance=snap_tolerance, priority=priority)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        source.write(destination, result.grids)
    changes = result.changes
    click.echo(f"{len(changes)} changes; repaired layer stored as {destination}")
    if len(changes):
        click.echo(changes.head(20).to_string(index=False))
    click.echo(result.remaining.human())
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        changes.to_csv(folder / "repair-changes.csv", index=False, encoding="utf-8-sig")
        for path in write_files(report_outcome(result.remaining, "after-repair"), folder):
            click.echo(f"wrote {path}", err=True)
    sys.exit(0 if result.remaining.ok else 1)

