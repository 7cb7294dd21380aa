"""The atlas job (plan code B5; ARCHITECTURE.md, "The job model").

Reads the grid layer (required), the divisions, touch points, staff, households, ledger
and institutions, and the analysis layers (service blanks, coverage gaps, overlaps)
around the territory; prints the urban and rural volumes (``maps.atlas.build_atlas``)
into the output folder. ``gisgrid atlas`` runs it on the whole territory; the fan-out
runs it per county, each county's volumes in ``<out>/<county>/``.
"""

from __future__ import annotations

from pathlib import Path

from gis_grid.jobs import Job, Outcome, Read, Rendered
from gis_grid.naming import target_layer
from maps.data import MAP_LAYERS
from maps.symbology import area_style


def _reads(params, available) -> list[Read]:
    return [Read(target_layer(params), required=True, key="grids"),
            *(Read(name, scope="all" if name == "institutions" else "county")
              for name in MAP_LAYERS),
            # Analysis layers carry no county column: those around the county.
            *(Read(name, scope="near") for name in sorted(available)
              if area_style(name) is not None)]


def _compute(inputs, params) -> Outcome:
    from maps.atlas import VOLUMES, build_atlas

    layers = {k: v for k, v in inputs.items() if v is not None}
    pages: dict[str, int] = {}

    def render(folder: Path) -> list[Path]:
        result = build_atlas(layers, folder, progress=bool(params.get("progress", False)),
                             limit=params.get("limit"), level=int(params.get("level", 2)),
                             volumes=params.get("volumes") or VOLUMES,
                             show_phones=bool(params.get("show_phones", True)),
                             date=params.get("date"))
        pages.update({k: int(v) for k, v in result.pages.items()})
        summary.update(out=str(folder), pages=dict(pages), seconds=result.seconds)
        return [Path(p) for p in result.paths.values()]

    summary: dict = {}
    return Outcome(files={"atlas": Rendered(render)}, summary=summary)


ATLAS = Job("atlas", reads=_reads, compute=_compute)
