"""The ``gisgrid`` command line: the composition root.

This is the one module of ``gis_grid`` that reaches out to ``layers`` (and, as they land,
``maps`` and ``api``): it wires files and stores to the engine. It imports them inside the
commands so that ``gisgrid --help`` stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gis_grid.errors import GisGridError

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
    return click.option("--store", envvar="GISGRID_STORE", metavar="PATH|URL",
                        help=STORE_HELP)(f)


#: Commands that live beside their room (analysis, maps, service), loaded only when run or
#: listed, so `gisgrid --help` does not import the whole stack.
LAZY_COMMANDS = {
    "screen": "gis_grid.cli_watch:screen",
    "inspect": "gis_grid.cli_watch:inspect",
    "events": "gis_grid.cli_watch:events",
    "partition": "gis_grid.cli_grids:partition",
    "validate": "gis_grid.cli_grids:validate",
    "repair": "gis_grid.cli_grids:repair",
    "coverage": "gis_grid.cli_analysis:coverage",
    "place": "gis_grid.cli_analysis:place",
    "map": "maps.cli:map_command",
    "atlas": "maps.cli:atlas_command",
    "serve": "api.cli:serve",
    "keys": "api.cli:keys",
    "province": "gis_grid.cli_province:province",
}


class _Root(click.Group):
    """Turns the product's own errors into a plain message and its exit code, and loads
    the commands of ``LAZY_COMMANDS`` on demand."""

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            module, attr = LAZY_COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GisGridError as exc:
            click.echo(f"gisgrid: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Root, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"],
                                                             "max_content_width": 100})
@click.version_option(package_name="gis-grid")
def main() -> None:
    """gis-grid — financial service grids (金融服务网格化) for county offices, banks and
    regulators.

    Divides a territory into nested grids with no gap and no overlap (井田制), maps bank
    outlets, devices and grid staff on them, and answers coverage questions.

    \b
    Typical session:
      gisgrid sample --county 420527           build the Zigui sample territory
      gisgrid layers                           see what the store holds
      gisgrid import outlets.csv --layer outlets --crs gcj02 --encoding gbk
      gisgrid export outlets outlets.geojson
      gisgrid demo                             all of the above, end to end

    Every command takes --store (a .gpkg file or a postgresql:// URL); see
    `gisgrid COMMAND --help` for each.
    """


@main.command()
@click.option("--county", type=click.Choice(["420527", "330382", "371328"]), required=True,
              help="Division code: 420527 秭归县 Zigui, 330382 乐清市 Yueqing, "
                   "371328 蒙阴县 Mengyin.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the generated (synthetic) parts; same seed, same output.")
@click.option("--households", type=click.IntRange(min=1), default=None,
              help="Total households to generate (default: a realistic total for the county, "
                   "Zigui ≈ 130,000).")
@store_option
def sample(county: str, seed: int, households: int | None, store: str | None) -> None:
    """Build a sample territory from real county data and store its layers.

    \b
    Real:      the county boundary (converted from GCJ-02 to WGS84), the names, 12-digit
               codes and urban/rural codes of its townships and villages.
    Derived:   township and village polygons (Voronoi cells of the seats, clipped).
    Synthetic: households, institutions, outlets, devices, staff, ledger rows and market
               entities — seeded, and labelled in each layer's `source` field.

    Writes the layers territory, townships, units, households, institutions, outlets,
    devices, staff, ledger and entities, each replaced all-or-nothing.
    """
    _build_sample(county, seed, households, store)


def _build_sample(county: str, seed: int, households: int | None, store: str | None) -> dict:
    from tqdm import tqdm

    from layers.store import open_store, resolve_store_url
    from layers.synthetic import build_sample

    click.echo(f"building sample {county} (seed {seed}) …", err=True)
    frames = build_sample(county, seed=seed, households=households)
    with open_store(store) as target:
        for name, frame in tqdm(frames.items(), desc="writing layers", unit="layer",
                                file=sys.stderr, disable=None):
            target.write(name, frame)
    url = resolve_store_url(store)
    counts = {name: len(frame) for name, frame in frames.items()}
    click.echo(f"stored in {_display(url)}: "
               + ", ".join(f"{n} {name}" for name, n in counts.items())
               + f" (holding {int(frames['households']['count'].sum())} households)")
    return counts


def _display(url: str) -> str:
    """A store address fit to print: the password of a URL is hidden."""
    from sqlalchemy.engine import make_url

    if "://" in url:
        return make_url(url).render_as_string(hide_password=True)
    return url


@main.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--layer", required=True,
              help="Layer to replace: territory, townships, units, households, institutions, "
                   "outlets, devices, staff, grids, ledger, entities, events — or grids__NAME "
                   "etc. to keep several of a kind.")
@click.option("--crs", default=None, metavar="CRS",
              help="Coordinates of the file: an EPSG code (EPSG:4490, 4547 …), or gcj02 "
                   "(Amap, Tencent) / bd09 (Baidu). Default: the file's own, else WGS84.")
@click.option("--lon-col", default="lon", show_default=True, help="CSV column of longitudes.")
@click.option("--lat-col", default="lat", show_default=True, help="CSV column of latitudes.")
@click.option("--encoding", default=None,
              help="CSV text encoding. Default: UTF-8, falling back to GB18030 (covers GBK).")
@click.option("--source-layer", default=None,
              help="Layer inside a GeoPackage holding several.")
@click.option("--fix-geometry", is_flag=True,
              help="Repair invalid polygons (self-intersections) instead of rejecting them.")
@store_option
def import_(file, layer, crs, lon_col, lat_col, encoding, source_layer, fix_geometry, store):
    """Check FILE and store it as a layer, all or nothing.

    FILE may be GeoJSON, GeoPackage, a zipped Shapefile (.zip) or CSV with longitude and
    latitude columns. Every value is checked against the layer's schema (fields, types,
    enumerations, code formats, geometry type and validity) and against the layers it
    refers to. Problems are listed all at once, each with its row or feature, field and
    what is wrong — e.g. `outlets.csv row 17: lon 1130.2 out of range` — and then nothing
    is stored (exit code 3).
    """
    from layers.store import open_store
    from layers.transfer import import_file

    with open_store(store) as target:
        report = import_file(target, file, layer, crs=crs, lon=lon_col, lat=lat_col,
                             encoding=encoding, source_layer=source_layer,
                             fix_geometry=fix_geometry)
    fixed = f" ({report.repaired} geometries repaired)" if report.repaired else ""
    click.echo(f"{report.source}: stored {report.count} features as layer {layer}{fixed}")


def _parse_where(pairs: tuple[str, ...]) -> dict[str, object] | None:
    where: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r}: expected FIELD=VALUE", param_hint="--where")
        key, value = pair.split("=", 1)
        values = value.split(",")
        where[key.strip()] = values if len(values) > 1 else value
    return where or None


@main.command(name="export")
@click.argument("layer")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--bbox", nargs=4, type=float, default=None, metavar="W S E N",
              help="Only features intersecting this lon/lat box.")
@click.option("--where", multiple=True, metavar="FIELD=VALUE[,VALUE…]",
              help="Only features whose FIELD equals VALUE (or any of several); repeatable.")
@click.option("--encoding", default="utf-8", show_default=True,
              help="CSV encoding: utf-8 (written with a BOM so Excel shows Chinese) or gb18030.")
@store_option
def export(layer, file, bbox, where, encoding, store):
    """Write LAYER to FILE; the format follows the extension (.geojson, .gpkg, .zip for a
    zipped Shapefile, .csv with lon/lat columns)."""
    from layers.store import open_store
    from layers.transfer import export_layer

    with open_store(store) as source:
        n = export_layer(source, layer, file, bbox=tuple(bbox) if bbox else None,
                         where=_parse_where(where), encoding=encoding)
    click.echo(f"wrote {n} features of {layer} to {file}")


@main.command(name="layers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@store_option
def layers_(as_json: bool, store: str | None) -> None:
    """List the layers in the store: name, feature count, geometry type and extent."""
    from layers.store import open_store, resolve_store_url

    with open_store(store) as source:
        infos = source.layers()
    if as_json:
        click.echo(json.dumps([info.__dict__ for info in infos], ensure_ascii=False, indent=2))
        return
    click.echo(f"{_display(resolve_store_url(store))}: {len(infos)} layers")
    for info in infos:
        bbox = " ".join(f"{v:.4f}" for v in info.bbox) if info.bbox else "-"
        click.echo(f"  {info.name:<24} {info.count:>9}  {info.geometry_type or 'table':<13} {bbox}")


@main.command()
@click.argument("layer")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@store_option
def delete(layer: str, yes: bool, store: str | None) -> None:
    """Remove LAYER from the store."""
    from layers.store import open_store

    if not yes:
        click.confirm(f"delete layer {layer}?", abort=True)
    with open_store(store) as target:
        target.delete(layer)
    click.echo(f"deleted {layer}")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="gisgrid-demo",
              show_default=True, help="Folder for the store and every output.")
@click.option("--county", type=click.Choice(["420527", "330382", "371328"]), default="420527",
              show_default=True, help="Sample county (default 秭归县 Zigui).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--households", type=click.IntRange(min=1), default=None,
              help="Total households (default: the county's realistic total).")
@click.option("--atlas-pages", type=click.IntRange(min=0), default=None,
              help="At most this many grid pages per atlas volume (default: all).")
@click.pass_context
def demo(ctx, out: str, county: str, seed: int, households: int | None,
         atlas_pages: int | None) -> None:
    """Run the whole job end to end on the embedded GeoPackage store (no server) and print
    where each output is.

    \b
    1. sample     build the sample territory (real boundary and divisions, synthetic demand)
    2. partition  nested grids for the lead bank (NSH: township, village, ~300 households)
                 and the postal bank (YCB: outlet service areas, ~300 households)
    3. validate   check the lead bank's grids are a well-field partition
    4. coverage   access, shares, service blanks, gaps, files, staffing, ranking
    5. map        the interactive offline map
    6. atlas      the printable urban and rural volumes (PDF)
    """
    from gis_grid.cli_grids import partition, validate

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    store = str(folder / "gisgrid.gpkg")
    outputs = {"store (opens in QGIS)": store}

    def step(title: str) -> None:
        click.echo(click.style(f"== {title}", bold=True), err=True)

    step("1/6 sample")
    _build_sample(county, seed, households, store)
    step("2/6 partition")
    # The lead bank grids by township, village / community and ~300 households; the
    # postal bank by its outlets' service areas (B3), then ~300 households.
    schemes = {"NSH": ("units:townships", "units:units", "balanced"),
               "YCB": ("outlets", "balanced", "none")}
    for bank, (one, two, three) in schemes.items():
        ctx.invoke(partition, institution=bank, level1=one, level2=two, level3=three,
                   store=store, out=str(folder / f"partition-{bank}"))
        outputs[f"grids of {bank}"] = f"layer grids__{bank.lower()}, {folder / f'partition-{bank}'}"
    step("3/6 validate")
    try:
        ctx.invoke(validate, layer="grids__nsh", store=store, out=str(folder / "validation"))
    except SystemExit as done:
        if done.code:
            raise GisGridError("the demo's own grids failed validation (see above)") from None
    outputs["validation report"] = str(folder / "validation" / "validation.json")
    step("4/6 coverage")
    coverage = main.get_command(ctx, "coverage")
    ctx.invoke(coverage, store=store, out=str(folder / "coverage"))
    outputs["coverage report (Excel)"] = str(folder / "coverage" / "coverage.xlsx")
    step("5/6 map")
    ctx.invoke(main.get_command(ctx, "map"), store=store, grids_layers=("grids__nsh", "grids__ycb"),
               out=str(folder / "map"))
    outputs["interactive map"] = str(folder / "map" / "map.html")
    step("6/6 atlas")
    ctx.invoke(main.get_command(ctx, "atlas"), store=store, grids_layer="grids__nsh",
               out=str(folder / "atlas"), limit=atlas_pages)
    outputs["atlas, urban volume"] = str(folder / "atlas" / "atlas-urban.pdf")
    outputs["atlas, rural volume"] = str(folder / "atlas" / "atlas-rural.pdf")
    click.echo("outputs:")
    for what, where in outputs.items():
        click.echo(f"  {what:<26} {where}")


if __name__ == "__main__":
    main()
