"""The validate job: lint a grid layer against the well-field rule (plan codes B2, B4;
ARCHITECTURE.md).

Reads the grid layer (required), the territory, households and staff; checks them with
``gis_grid.topology.validate_grids``; writes ``validation.json`` and
``validation-problems.geojson``. Run county by county, each county is checked on its
own, and then the whole layer's level-1 grids against every county (``finish``): the
gaps and overlaps along the seams between counties, which no county's own check sees.
"""

from __future__ import annotations

from gis_grid.jobs.base import Job, Outcome, Read
from gis_grid.naming import target_layer

TOLERANCES = ("gap_width", "sliver_area", "snap_tolerance")


def tolerances(params) -> dict:
    """The validation tolerances given in ``params``; the others keep
    ``validate_grids``' defaults."""
    return {k: float(params[k]) for k in TOLERANCES if params.get(k) is not None}


def report_outcome(report, stem: str, extra: dict | None = None) -> Outcome:
    """A validation report as an outcome: ``<stem>.json`` and
    ``<stem>-problems.geojson``, a summary of its problems by kind."""
    kinds = report.problems["kind"].value_counts().to_dict() if len(report.problems) else {}
    summary = {"ok": bool(report.ok), "problems": int(len(report.problems)),
               "kinds": {str(k): int(v) for k, v in kinds.items()}, **(extra or {})}
    return Outcome(
        result=report, ok=bool(report.ok), summary=summary, text=report.human(),
        files={f"{stem}.json": report.to_json(),
               f"{stem}-problems.geojson": report.geojson()})


def _reads(params, available) -> list[Read]:
    return [Read(target_layer(params), required=True, key="grids"),
            Read("territory"), Read("households"), Read("staff")]


def _compute(inputs, params) -> Outcome:
    from gis_grid.topology import validate_grids

    territory = None if params.get("no_territory") else inputs.get("territory")
    report = validate_grids(inputs["grids"], territory=territory,
                            households=inputs.get("households"), staff=inputs.get("staff"),
                            threads=params.get("threads"), **tolerances(params))
    return report_outcome(report, "validation")


def _finish_reads(params) -> list[Read]:
    return [Read(target_layer(params), key="grids", scope="all", where={"level": 1}),
            Read("territory", required=True, scope="all")]


def _finish(inputs, params) -> Outcome:
    """The whole layer's level-1 grids against every county: no gap and no overlap
    anywhere, in particular along the seams between counties."""
    from gis_grid.topology import validate_grids

    grids, counties = inputs.get("grids"), inputs["territory"]
    if grids is None or not len(grids):
        return Outcome(ok=False, summary={"ok": False, "problems": 1, "kinds": {"missing": 1}})
    # Geometry only: staffing is checked per county.
    grids = grids.drop(columns=["worker", "manager"], errors="ignore")
    report = validate_grids(grids, territory=None if params.get("no_territory") else counties,
                            **tolerances(params))
    return report_outcome(report, "seams",
                          {"grids": int(len(grids)), "counties": int(len(counties))})


VALIDATE = Job("validate", reads=_reads, compute=_compute, finish=_finish,
               finish_reads=_finish_reads)
