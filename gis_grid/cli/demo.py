"""``gisgrid demo``: the whole job end to end on the embedded GeoPackage store."""

from __future__ import annotations

from pathlib import Path

import click

from gis_grid.cli.data import build_sample_ledger, build_sample_store
from gis_grid.errors import GisGridError
from gis_grid.naming import grid_layer


@click.command()
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
                 and the postal bank (YCB: outlet service areas, ~300 households); then
                 the ledger (台账), one row per finest grid of each bank
    3. validate   check the lead bank's grids are a well-field partition
    4. coverage   access, shares, service blanks, gaps, files, staffing, ranking
    5. map        the interactive offline map
    6. atlas      the printable urban and rural volumes (PDF)
    """
    from gis_grid.cli.analysis import coverage
    from gis_grid.cli.grids import partition, validate
    from gis_grid.cli.maps import atlas_command, map_command

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    store = str(folder / "gisgrid.gpkg")
    outputs = {"store (opens in QGIS)": store}

    def step(title: str) -> None:
        click.echo(click.style(f"== {title}", bold=True), err=True)

    step("1/6 sample")
    build_sample_store(county, seed, households, store)
    step("2/6 partition")
    # The lead bank grids by township, village / community and ~300 households; the
    # postal bank by its outlets' service areas (B3), then ~300 households.
    schemes = {"NSH": ("units:townships", "units:units", "balanced"),
               "YCB": ("outlets", "balanced", "none")}
    for bank, (one, two, three) in schemes.items():
        ctx.invoke(partition, institution=bank, level1=one, level2=two, level3=three,
                   store=store, out=str(folder / f"partition-{bank}"))
        outputs[f"grids of {bank}"] = f"layer {grid_layer(bank)}, {folder / f'partition-{bank}'}"
    # The ledger belongs to the grids: built once they exist, checked as an import.
    build_sample_ledger(seed, store)
    step("3/6 validate")
    try:
        ctx.invoke(validate, layer=grid_layer("NSH"), store=store, out=str(folder / "validation"))
    except SystemExit as done:
        if done.code:
            raise GisGridError("the demo's own grids failed validation (see above)") from None
    outputs["validation report"] = str(folder / "validation" / "validation.json")
    step("4/6 coverage")
    ctx.invoke(coverage, store=store, out=str(folder / "coverage"))
    outputs["coverage report (Excel)"] = str(folder / "coverage" / "coverage.xlsx")
    step("5/6 map")
    ctx.invoke(map_command, store=store, grids_layers=(grid_layer("NSH"), grid_layer("YCB")),
               out=str(folder / "map"))
    outputs["interactive map"] = str(folder / "map" / "map.html")
    step("6/6 atlas")
    ctx.invoke(atlas_command, store=store, grids_layer=grid_layer("NSH"),
               out=str(folder / "atlas"), limit=atlas_pages)
    outputs["atlas, urban volume"] = str(folder / "atlas" / "atlas-urban.pdf")
    outputs["atlas, rural volume"] = str(folder / "atlas" / "atlas-rural.pdf")
    click.echo("outputs:")
    for what, where in outputs.items():
        click.echo(f"  {what:<26} {where}")
