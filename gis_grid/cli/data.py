"""Getting layers in and out: ``sample``, ``import``, ``export``, ``layers``, ``delete``."""

from __future__ import annotations

import json
import sys

import click

from gis_grid.cli.common import display, store_option


@click.command()
@click.option("--county", type=click.Choice(["420527", "330382", "371328"]), default=None,
              help="Division code: 420527 秭归县 Zigui, 330382 乐清市 Yueqing, "
                   "371328 蒙阴县 Mengyin. Required, except with --ledger.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the generated (synthetic) parts; same seed, same output.")
@click.option("--households", type=click.IntRange(min=1), default=None,
              help="Total households to generate (default: a realistic total for the county, "
                   "Zigui ≈ 130,000).")
@click.option("--ledger", "ledger_only", is_flag=True,
              help="Only build the ledger (台账): one row per finest grid of each "
                   "institution's grid layer in the store (run after gisgrid partition); "
                   "replaces layer ledger.")
@store_option
def sample(county: str, seed: int, households: int | None, ledger_only: bool,
           store: str | None) -> None:
    """Build a sample territory from real county data and store its layers.

    \b
    Real:      the county boundary (converted from GCJ-02 to WGS84), the names, 12-digit
               codes and urban/rural codes of its townships and villages.
    Derived:   township and village polygons (Voronoi cells of the seats, clipped).
    Synthetic: households, institutions, outlets, devices, staff, ledger rows and market
               entities — seeded, and labelled in each layer's `source` field.

    Writes the layers territory, townships, units, households, institutions, outlets,
    devices, staff and entities, each replaced all-or-nothing. The ledger belongs to the
    grids (a row per finest grid of its institution's grid layer), so it comes after the
    partition: `gisgrid sample --ledger` builds it for the grid layers the store holds,
    of a sample county or a province (`gisgrid demo` does so on its own).
    """
    if ledger_only:
        build_sample_ledger(seed, store)
        return
    if county is None:
        raise click.UsageError("Missing option '--county' (420527, 330382 or 371328); "
                               "only --ledger works on the store's own territory")
    build_sample_store(county, seed, households, store)


def build_sample_ledger(seed: int, store: str | None) -> int:
    """Store the sample's ledger per finest grid of the store's grid layers."""
    from layers.store import open_store
    from layers.synthetic.ledger import store_grid_ledger

    with open_store(store) as target:
        ledger = store_grid_ledger(target, seed=seed)
    counts = ledger.groupby("institution").size()
    click.echo(f"stored {len(ledger)} ledger rows (one per finest grid): "
               + ", ".join(f"{n} {bank}" for bank, n in counts.items()))
    return len(ledger)


def build_sample_store(county: str, seed: int, households: int | None, store: str | None) -> dict:
    from tqdm import tqdm

    from layers.store import open_store, resolve_store_url
    from layers.synthetic import build_sample

    click.echo(f"building sample {county} (seed {seed}) …", err=True)
    frames = build_sample(county, seed=seed, households=households)
    # Ledger rows belong to finest grids, which only a partition makes (--ledger).
    frames.pop("ledger", None)
    with open_store(store) as target:
        for name, frame in tqdm(frames.items(), desc="writing layers", unit="layer",
                                file=sys.stderr, disable=None):
            target.write(name, frame)
    url = resolve_store_url(store)
    counts = {name: len(frame) for name, frame in frames.items()}
    click.echo(f"stored in {display(url)}: "
               + ", ".join(f"{n} {name}" for name, n in counts.items())
               + f" (holding {int(frames['households']['count'].sum())} households); "
               "the ledger comes after a partition: gisgrid sample --ledger")
    return counts


@click.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--layer", required=True,
              help="Layer to replace: territory, townships, units, households, institutions, "
                   "outlets, devices, staff, grids, ledger, entities, events — or grids__NAME "
                   "etc. to keep several of a kind.")
@click.option("--crs", default=None, metavar="CRS",
              help="Coordinates of the file: an EPSG code (EPSG:4490, 4547 …), or gcj02 "
                   "(Amap, Tencent) / bd09 (Baidu). Default: the file's own, else WGS84.")
@click.option("--lon-col", default="lon", show_default=True,
              help="CSV / XLSX column of longitudes (经度 is found too when lon is absent).")
@click.option("--lat-col", default="lat", show_default=True,
              help="CSV / XLSX column of latitudes (纬度 is found too when lat is absent).")
@click.option("--encoding", default=None,
              help="CSV text encoding. Default: UTF-8, falling back to GB18030 (covers GBK).")
@click.option("--source-layer", default=None,
              help="Layer inside a GeoPackage holding several (the sheet of an .xlsx).")
@click.option("--fix-geometry", is_flag=True,
              help="Repair invalid polygons (self-intersections) instead of rejecting them.")
@click.option("--max-outside", type=click.FloatRange(min=0), default=20.0, show_default=True,
              metavar="KM",
              help="Refuse points and shapes farther than this outside the territory (layer "
                   "territory; without it the extent of units or townships, and with "
                   "neither the check is skipped, as the output says).")
@click.option("--problems", "problems_file", type=click.Path(dir_okay=False), default=None,
              metavar="FILE",
              help="When the file is refused, list every problem by row in FILE (.csv, or "
                   ".xlsx with a sheet of counts by field and kind first).")
@click.option("--mode", type=click.Choice(["replace", "append", "upsert", "delete"]),
              default=None,
              help="How the file changes a layer the store holds, by the layer's key: "
                   "replace (the file becomes the layer), append (add rows with new keys), "
                   "upsert (add or change rows by key), delete (remove the rows with the "
                   "file's keys; the key column is enough). Required when the layer "
                   "exists; every mode is all or nothing and logged (gisgrid history).")
@store_option
def import_(file, layer, crs, lon_col, lat_col, encoding, source_layer, fix_geometry,
            max_outside, problems_file, mode, store):
    """Check FILE and store it as a layer, all or nothing.

    FILE may be GeoJSON, GeoPackage, a zipped Shapefile (.zip), CSV or an Excel workbook
    (.xlsx) with longitude and latitude columns. Columns may be named by the field names
    or by the schema's Chinese titles (主体编号, 名称, 经度, 纬度 …: see gisgrid schema).
    Every value is checked against the layer's schema (fields, types, enumerations, code
    formats, geometry type and validity), against the layers it refers to, and every
    point or shape against the territory (--max-outside); a ledger row must name a finest
    grid of its institution's grid layer (grids__nsh …). Problems are listed all at once,
    first counted by field and kind, then each with its row or feature, field and what is
    wrong — e.g. `outlets.csv row 17: lon 1130.2 out of range` — and then nothing is
    stored (exit code 3); --problems FILE lists every one of them.

    A layer the store already holds needs --mode (else exit 2). References are checked
    against what the store holds now, both ways: a row pointing at an unknown key
    (an outlet's institution) and a change leaving rows of another layer pointing at a
    key it removes (devices at a deleted outlet) are refused, exit 3, naming them.
    """
    from gis_grid.errors import InputError
    from layers.history import default_actor
    from layers.reports import write_problems
    from layers.store import open_store
    from layers.transfer import import_file

    with open_store(store) as target:
        try:
            report = import_file(target, file, layer, mode=mode,
                                 actor=default_actor(f"import --mode {mode or 'replace'}"),
                                 crs=crs, lon=lon_col, lat=lat_col,
                                 encoding=encoding, source_layer=source_layer,
                                 fix_geometry=fix_geometry, max_outside=max_outside * 1000)
        except InputError as refused:
            if problems_file:
                write_problems(refused.problems, problems_file)
                click.echo(f"every problem: {problems_file}", err=True)
            raise
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    fixed = f" ({report.repaired} geometries repaired)" if report.repaired else ""
    change = report.change
    counts = "" if change is None else (
        f": {len(change.added)} added, {len(change.changed)} changed, "
        f"{len(change.removed)} removed, {change.rows_after} rows now"
        + (f" (change {change.id})" if change.id is not None else " (no change)"))
    click.echo(f"{report.source}: {report.mode} of {report.count} rows into layer "
               f"{layer}{counts}{fixed}")


def _parse_where(pairs: tuple[str, ...]) -> dict[str, object] | None:
    where: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r}: expected FIELD=VALUE", param_hint="--where")
        key, value = pair.split("=", 1)
        values = value.split(",")
        where[key.strip()] = values if len(values) > 1 else value
    return where or None


#: ``export --format`` → the file extension that selects it.
_EXPORT_FORMATS = {"geojson": ".geojson", "gpkg": ".gpkg", "shp": ".zip", "csv": ".csv",
                   "xlsx": ".xlsx"}


@click.command(name="export")
@click.argument("layer")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--bbox", nargs=4, type=float, default=None, metavar="W S E N",
              help="Only features intersecting this lon/lat box.")
@click.option("--where", multiple=True, metavar="FIELD=VALUE[,VALUE…]",
              help="Only features whose FIELD equals VALUE (or any of several); repeatable.")
@click.option("--encoding", default="utf-8", show_default=True,
              help="CSV encoding: utf-8 (written with a BOM so Excel shows Chinese) or gb18030.")
@click.option("--headers", type=click.Choice(["zh", "en"]), default=None,
              help="CSV / XLSX column headers: zh, the schema's Chinese titles and 经度/纬度 "
                   "(default for .xlsx); en, the field names and lon/lat (default for .csv). "
                   "import reads both back.")
@click.option("--format", "file_format", type=click.Choice(sorted(_EXPORT_FORMATS)),
              default=None,
              help="The format, when FILE's extension does not say it (the extension is "
                   "then added): geojson, gpkg, shp (a zipped Shapefile), csv, xlsx.")
@store_option
def export(layer, file, bbox, where, encoding, headers, file_format, store):
    """Write LAYER to FILE; the format follows the extension (.geojson, .gpkg, .zip for a
    zipped Shapefile, .csv or .xlsx with lon/lat columns for points, or a table), or
    --format. Every format imports back unchanged with `gisgrid import`."""
    from pathlib import Path

    from layers.store import open_store
    from layers.transfer import export_layer

    if file_format is not None:
        suffix = _EXPORT_FORMATS[file_format]
        allowed = {suffix, ".json"} if suffix == ".geojson" else {suffix}
        if Path(file).suffix.lower() not in allowed:
            file = f"{file}{suffix}"

    with open_store(store) as source:
        n = export_layer(source, layer, file, bbox=tuple(bbox) if bbox else None,
                         where=_parse_where(where), encoding=encoding, headers=headers)
    click.echo(f"wrote {n} features of {layer} to {file}")


@click.command(name="layers")
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
    click.echo(f"{display(resolve_store_url(store))}: {len(infos)} layers")
    for info in infos:
        bbox = " ".join(f"{v:.4f}" for v in info.bbox) if info.bbox else "-"
        click.echo(f"  {info.name:<24} {info.count:>9}  {info.geometry_type or 'table':<13} {bbox}")


@click.command()
@click.argument("layer")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@store_option
def delete(layer: str, yes: bool, store: str | None) -> None:
    """Remove LAYER from the store (logged: `gisgrid history LAYER --restore ID` brings it
    back). Refused, exit 3, while rows of another layer refer to its keys (outlets to
    institutions, devices to outlets), naming them."""
    from layers.history import default_actor
    from layers.store import open_store

    if not yes:
        click.confirm(f"delete layer {layer}?", abort=True)
    with open_store(store) as target:
        change = target.remove(layer, actor=default_actor("delete"))
    logged = f" (change {change.id})" if change.id is not None else ""
    click.echo(f"deleted {layer}{logged}")


