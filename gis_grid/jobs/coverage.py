"""The coverage job: access, shares, blanks, gaps, indicators, across-bank tables, files,
staffing and assessment (plan codes B2, B4, B7, B8; ARCHITECTURE.md).

Reads the territory and households (required), outlets, devices, units, townships,
ledger, staff, institutions, entities and the grid layers; computes
``gis_grid.coverage.coverage_report``; stores ``coverage_gaps``, ``service_blanks`` and
``units_without_service_point`` (with the institution's suffix, ``coverage_gaps__nsh``)
and writes ``report.json``, a CSV per table with ``coverage.xlsx``, and a GeoJSON file
per layer. Run county by county, each county's report is its own and the three layers
are merged.
"""

from __future__ import annotations

from gis_grid.jobs.base import GeoJSON, Job, Outcome, Read, Tables
from gis_grid.naming import institution_suffix, target_layer

#: The layers the report reads besides the grids, in the order the report lists them.
LAYERS = ("territory", "households", "outlets", "devices", "units", "townships",
          "institutions", "ledger", "staff", "entities")
#: Outcome layer role → the layer of the coverage report it is.
STORED = {"gaps": "coverage_gaps", "blanks": "service_blanks",
          "no_point": "units_without_service_point"}


def grid_names(params) -> list[str]:
    """The grid layers the job reads: its ``grids`` parameter, else its target layer."""
    return list(params["grids"]) if params.get("grids") is not None \
        else [target_layer(params)]


def _reads(params, available) -> list[Read]:
    chosen = params.get("grids") is not None
    return [*(Read(name, required=name in ("territory", "households"),
                   scope="all" if name == "institutions" else "county") for name in LAYERS),
            *(Read(name, required=chosen, key=f"grids:{name}") for name in grid_names(params))]


def _compute(inputs, params) -> Outcome:
    from gis_grid.coverage import Radii, coverage_report

    frames = {name: inputs.get(name) for name in LAYERS}
    grids = {name: inputs[f"grids:{name}"] for name in grid_names(params)
             if inputs.get(f"grids:{name}") is not None and len(inputs[f"grids:{name}"])}
    source = params.get("source", "store")
    used = [*(n for n in LAYERS if frames[n] is not None), *grids]
    options = {k: params[k] for k in ("period", "data_date") if params.get(k) is not None}
    if params.get("weights") is not None:
        # The assessment's weights (checked by the engine; a bad table is an InputError).
        options["weights"] = dict(params["weights"])
        options["weights_source"] = params.get("weights_source")
    radii = params.get("radii")
    if radii:
        options["radii"] = Radii(urban=float(radii["urban"]), rural=float(radii["rural"]))
    report = coverage_report(**frames, grids=grids or None,
                             institution=params.get("institution"),
                             max_institutions=int(params.get("max_institutions", 3)),
                             year=int(params.get("year", 1)),
                             include_households=bool(params.get("include_households", False)),
                             layers_used={n: f"{source}:{n}" for n in used},
                             strict=bool(params.get("strict", False)), **options)
    layers = {}
    if params.get("store_layers", True):
        layers = {role: report.layers[name] for role, name in STORED.items()
                  if name in report.layers}
    files = {"report.json": report.to_dict(),
             "tables": Tables(report.tables, report.meta, stem="coverage")}
    files.update({f"{name}.geojson": GeoJSON(layer) for name, layer in report.layers.items()})
    return Outcome(result=report, layers=layers, files=files,
                   summary={"tables": sorted(report.tables)}, text=report.summary())


def _store_as(role: str, params) -> str:
    return STORED[role] + institution_suffix(params.get("institution"))


COVERAGE = Job("coverage", reads=_reads, compute=_compute, store_as=_store_as,
               stages=("gaps", "blanks", "no_point"))
