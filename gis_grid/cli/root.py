"""The ``gisgrid`` root group: every command registered, the product's errors turned
into a plain message and its exit code.

Every command module imports only click at its top and the engine, the stores, the maps
and the service inside its commands, so ``gisgrid --help`` stays quick.
"""

from __future__ import annotations

import click

from gis_grid.cli import (
    analysis,
    data,
    demo,
    grids,
    history,
    maps,
    province,
    reports,
    schema,
    service,
    watch,
)
from gis_grid.cli.common import EXIT_CODES
from gis_grid.errors import GisGridError


class _Root(click.Group):
    """Turns the product's own errors into a plain message and its exit code."""

    def parse_args(self, ctx, args):
        ctx.meta["gisgrid.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        from layers.history import set_command

        # the change log names the command that made a change (layers.history)
        set_command(" ".join(["gisgrid", *ctx.meta.get("gisgrid.argv", [])]))
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
      gisgrid import outlets.csv --layer outlets --mode upsert --crs gcj02
      gisgrid history outlets                  what changed; --restore ID undoes one
      gisgrid export outlets outlets.geojson
      gisgrid demo                             all of the above, end to end

    Every command takes --store (a .gpkg file or a postgresql:// URL); see
    `gisgrid COMMAND --help` for each.
    """


for command in (data.sample, data.import_, data.export, data.layers_, data.delete,
                grids.partition, grids.validate, grids.repair, analysis.coverage,
                analysis.place, maps.map_command, maps.atlas_command, watch.screen,
                watch.inspect, watch.events, service.serve, service.keys, province.province,
                demo.demo, schema.schema, history.history, reports.reports, reports.tasks,
                reports.training):
    main.add_command(command)
