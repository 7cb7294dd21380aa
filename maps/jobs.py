"""The atlas job (plan code B5; ARCHITECTURE.md, "The job model").

Reads the grid layer (required), the divisions, touch points, staff, households, ledger
and institutions, and the analysis layers (service blanks, coverage gaps, overlaps)
around the territory; prints the urban and rural volumes (``maps.atlas.build_atlas``)
into the output folder. ``gisgrid atlas`` runs it on the whole territory; the fan-out
runs it per county, each county's volumes in ``<out>/<county>/``.

The volumes print the assessment table (B8) of the coverage job, computed here by that
job from the same layers (every grid layer, the entities) with the same weights
(``weights`` parameter): one rule for the figures the regulator reads in the report and
in the atlas.
"""

from __future__ import annotations

from pathlib import Path

from gis_grid.errors import InputError
from gis_grid.jobs import COVERAGE, Job, Outcome, Read, Rendered
from gis_grid.jobs.coverage import LAYERS as COVERAGE_LAYERS
from gis_grid.naming import grid_layers, target_layer
from maps.data import MAP_LAYERS
from maps.symbology import area_style

#: The coverage job's layers the atlas does not read for its maps.
_ASSESSMENT_ONLY = tuple(n for n in COVERAGE_LAYERS if n not in MAP_LAYERS)


def _coverage_params(params, available) -> dict:
    """The coverage job's parameters for the assessment: every grid layer, every
    institution (the table compares them), the atlas's weights."""
    return {"grids": grid_layers(available), "institution": None, "store_layers": False,
            "weights": params.get("weights"), "weights_source": params.get("weights_source"),
            "radii": params.get("radii"), "source": params.get("source", "store")}


def _reads(params, available) -> list[Read]:
    maps_reads = [Read(target_layer(params), required=True, key="grids"),
                  *(Read(name, scope="all" if name == "institutions" else "county")
                    for name in MAP_LAYERS),
                  # Analysis layers carry no county column: those around the county.
                  *(Read(name, scope="near") for name in sorted(available)
                    if area_style(name) is not None)]
    have = {read.as_key for read in maps_reads}
    # What the assessment reads besides: the coverage job's own reads, keyed as it keys
    # them, less those the maps read already (the same layer is read once).
    target = f"grids:{target_layer(params)}"  # read already, as "grids"
    cov = [read for read in COVERAGE.reads(_coverage_params(params, available), available)
           if read.as_key not in have and read.as_key != target]
    return maps_reads + [Read(r.name, required=False, scope=r.scope, key=r.as_key)
                         for r in cov]


def _assessment(inputs, params, available) -> tuple[object, dict, list[str]]:
    """The coverage job's assessment table and its meta, or None and why not."""
    cov_params = _coverage_params(params, available)
    cov_inputs = {name: inputs.get(name) for name in COVERAGE_LAYERS}
    for name in cov_params["grids"]:
        cov_inputs[f"grids:{name}"] = (inputs.get("grids") if name == target_layer(params)
                                       else inputs.get(f"grids:{name}"))
    if cov_inputs.get("households") is None or cov_inputs.get("territory") is None:
        return None, {}, ["assessment table (考核评分表) not printed: the store has no "
                          "territory or households layer"]
    try:
        report = COVERAGE.compute(cov_inputs, cov_params).result
    except InputError as err:
        return None, {}, ["assessment table (考核评分表) not printed: " + err.report()]
    table = report.tables.get("assessment")
    if table is None or not len(table):
        return None, {}, ["assessment table (考核评分表) not printed: no institution to "
                          "assess"]
    return table, report.meta.get("assessment", {}), []


def _compute(inputs, params) -> Outcome:
    from maps.atlas import VOLUMES, build_atlas

    layers = {k: v for k, v in inputs.items()
              if v is not None and not k.startswith("grids:") and k not in _ASSESSMENT_ONLY}
    available = [k.split(":", 1)[1] for k in inputs if k.startswith("grids:")]
    available.append(target_layer(params))
    table, meta, warnings = _assessment(inputs, params, available)
    pages: dict[str, int] = {}

    def render(folder: Path) -> list[Path]:
        result = build_atlas(layers, folder, progress=bool(params.get("progress", False)),
                             limit=params.get("limit"), level=int(params.get("level", 2)),
                             volumes=params.get("volumes") or VOLUMES,
                             show_phones=bool(params.get("show_phones", True)),
                             date=params.get("date"), assessment=table,
                             assessment_meta=meta)
        pages.update({k: int(v) for k, v in result.pages.items()})
        summary.update(out=str(folder), pages=dict(pages), seconds=result.seconds)
        return [Path(p) for p in result.paths.values()]

    summary: dict = {"warnings": warnings}
    return Outcome(files={"atlas": Rendered(render)}, summary=summary)


ATLAS = Job("atlas", reads=_reads, compute=_compute)
