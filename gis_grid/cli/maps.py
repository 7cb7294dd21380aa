"""The ``gisgrid map`` and ``gisgrid atlas`` commands.

``atlas`` runs the atlas job (``maps.jobs.ATLAS``) through ``layers.runner``, or county
by county with ``--scheduler``. Heavy imports (folium, matplotlib) happen inside the
commands, so ``gisgrid --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import click

from gis_grid.cli.common import (
    EXIT_CODES,
    assessment_options,
    check_store,
    fanout_options,
    out_folder,
    radius_options,
    refuse_fanout_only,
    resolve_weights,
    run_fanout,
    store_option,
)

GRIDS_HELP = "Grid layer to draw: grids, or grids__NAME when the store keeps several."


@click.command(name="map", epilog=EXIT_CODES)
@click.option("--grids", "grids_layers", multiple=True, metavar="LAYER",
              help=GRIDS_HELP + " Repeat to draw several banks' grid layers, each its own "
                   "overlays. Default: grids.")
@click.option("--basemap", metavar="URL", default=None,
              help="Tile URL template of the office's own tile server, e.g. "
                   "http://tiles.intranet/{z}/{x}/{y}.png. Default: no basemap; the county, "
                   "township and village boundaries orient the reader.")
@click.option("--basemap-attribution", default="本单位瓦片服务", show_default=True,
              metavar="TEXT", help="Credit shown for the basemap.")
@click.option("--phones/--no-phones", default=False, show_default=True,
              help="Put staff phone numbers in the page. Only for readers allowed to see "
                   "them: without this flag the page holds no phone number at all.")
@click.option("--title", default=None, metavar="TEXT",
              help="Page title (default: <territory>金融服务网格图).")
@click.option("--out", type=click.Path(file_okay=False), default="gisgrid-map",
              show_default=True, metavar="DIR",
              help="Folder to write map.html and its static/ files into.")
@store_option
def map_command(grids_layers: tuple[str, ...], basemap: str | None, basemap_attribution: str,
                phones: bool, title: str | None, out: str, store: str | None) -> None:
    """Write an interactive map of the territory: DIR/map.html and DIR/static/.

    \b
    Layers, each switched on and off in the page:
      grids by level (一级/二级/三级网格), filled in their institution's colour —
        urban grids solid and darker, rural grids dashed and lighter;
      county, township and village boundaries;
      outlets by tier, devices by type (clustered), staff by role (clustered);
      covered and uncovered households (summed per 400 m cell);
      service blanks, coverage gaps and across-bank overlaps, when the store has them.
    Tooltips and popups are in Chinese: grid code, name, level, institution, outlet,
    manager, worker, phone (with --phones), households, outlets, devices, files %.

    The page works with no internet: every script, stylesheet and image is in DIR/static
    (no CDN). Open DIR/map.html in a browser, or serve DIR with any web server.
    """
    from maps.data import load_layers
    from maps.interactive import write_map

    layers = load_layers(store, grids=list(grids_layers) or "grids")
    path = write_map(layers, out, basemap_url=basemap, basemap_attribution=basemap_attribution,
                     viewer_may_see_phones=phones, title=title)
    size = path.stat().st_size / 1e6
    click.echo(f"wrote {path} ({size:.1f} MB) and {Path(out) / 'static'}/")


@click.command(name="atlas", epilog=EXIT_CODES)
@click.option("--grids", "grids_layer", default="grids", show_default=True, metavar="LAYER",
              help=GRIDS_HELP)
@click.option("--level", type=click.IntRange(1, 3), default=2, show_default=True,
              help="Level of the big grids that get a page each: 2 = villages and "
                   "communities (plan B1), 1 = townships, 3 = the smallest grids.")
@click.option("--volume", "volumes", type=click.Choice(["urban", "rural"]), multiple=True,
              help="Volume to write (repeatable). Default: both.")
@click.option("--mask-phones", is_flag=True,
              help="Print contact phones masked (138****1234) instead of in full.")
@click.option("--date", default=None, metavar="TEXT",
              help="Data date printed on each page. Default: the ledger's latest period.")
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N",
              help="At most N grid pages per volume (a quick proof). Default: all.")
@click.option("--out", type=click.Path(file_okay=False), default="gisgrid-atlas",
              show_default=True, metavar="DIR",
              help="Folder to write atlas-urban.pdf and atlas-rural.pdf into.")
@radius_options
@assessment_options
@fanout_options
@store_option
def atlas_command(grids_layer: str, level: int, volumes: tuple[str, ...], mask_phones: bool,
                  date: str | None, limit: int | None, out: str, urban_radius: float,
                  rural_radius: float, assessment_file: str | None,
                  weight_options: tuple[tuple[str, float], ...], scheduler: str | None,
                  counties: tuple[str, ...], no_resume: bool, retries: int,
                  store: str | None) -> None:
    """Print the atlas (图集): PDF volumes on B5 paper, urban (城区卷) and rural (农村卷).

    \b
    Each volume opens with the three maps of plan B5 over its grids:
      物理网点分布图        outlets by tier
      电子机具分布图        devices by type
      网格人员及服务分布图  staff by role, grids shaded by files % (建档率)
    then the assessment table (考核评分表, plan B8) of every institution: the coverage
    report's table (`gisgrid coverage`), the same figures with the same radii and weights
    (--urban-radius, --rural-radius, --assessment, --weight), computed from the same
    layers; it is left out, with a
    warning, when the store lacks what the assessment needs (households, outlets or
    devices). Then one page per big grid (default level 2: a village or a community) with
    its children, outlets, devices, staff and households.

    Every page has a title, the map fitted to its grids, an inset locating it in the
    county, a legend, a scale bar, a north arrow, the page number, a table (grid code,
    level, institution, manager, worker, contact, households, outlets, devices, files %)
    and the data sources and date. Pages are portrait or landscape, whichever prints the
    grid larger. Chinese is printed in Noto Sans CJK SC, embedded: without it (Debian
    package fonts-noto-cjk) the command stops with an error rather than print boxes.

    The same input gives the same PDF, byte for byte.

    County by county on a Dask cluster (--scheduler ADDRESS or $GISGRID_SCHEDULER): each
    county's volumes are printed by one task, with the options above, from the county's
    grids, divisions, touch points, staff, households and ledger and the analysis layers
    around it, and written by the worker as DIR/<county>/atlas-urban.pdf and
    atlas-rural.pdf (every worker must reach DIR at the same path). A territory without
    a county column (one sample county) is one task, whose PDFs are the in-process ones.
    A task that fails is retried (--retries); a county that keeps failing is printed by
    code and name, the others complete, and the exit code is 1. Re-running skips the
    counties whose inputs and options are unchanged (--no-resume redoes all); --county
    CODE prints only some. The store must be PostGIS (a GeoPackage is refused, exit 4).
    """
    from gis_grid.errors import StoreError
    from layers.runner import available_layers, run_job
    from layers.store import open_store
    from maps.jobs import ATLAS

    refuse_fanout_only(scheduler)
    weights, weights_source = resolve_weights(assessment_file, weight_options)
    params = {"layer": grids_layer, "level": level, "volumes": list(volumes) or None,
              "show_phones": not mask_phones, "date": date, "limit": limit,
              "weights": weights, "weights_source": weights_source,
              "radii": {"urban": urban_radius, "rural": rural_radius}}
    if scheduler:
        check_store(store, scheduler)
        run_fanout(ATLAS, {**params, "out": out_folder(out)}, store, scheduler, counties,
                   no_resume, retries, after=lambda run: [
                       f"{c.county} {c.name}: " + ", ".join(
                           f"{Path(c.summary['out']) / f'atlas-{v}.pdf'} ({n} pages)"
                           for v, n in c.summary.get("pages", {}).items())
                       for c in run.counties if c.status != "failed"])
        return
    with open_store(store) as source:
        if grids_layer not in available_layers(source):
            raise StoreError(
                f"{source.url}: no grid layer {grids_layer!r}; make one with `gisgrid "
                f"partition` or import one with `gisgrid import FILE --layer {grids_layer}`")
        ran = run_job(source, ATLAS, {**params, "progress": True}, out=out)
    summary = ran.outcome.summary
    for warning in summary.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    for volume, path in zip(summary["pages"], ran.written, strict=True):
        click.echo(f"wrote {path} ({summary['pages'][volume]} pages)")
    click.echo(f"atlas done in {summary['seconds']:.1f} s")
