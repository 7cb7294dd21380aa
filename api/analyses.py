"""Analysis endpoints: validate, coverage, gaps, across-bank overlap, assessment,
placement — each a background job (``api.jobs``) taking the CLI's parameters and
returning the CLI's report — and the ledger aggregates.

Every layer an analysis reads is read with the caller's scope (``api.auth``): an
institution administrator's run sees its own grids, outlets, devices, staff and ledger
only (so the report cannot reveal another bank's), a regulator's sees every bank's. The
across-bank overlap and the assessment ranking compare banks, so they are the
regulator's; grid workers run no analyses.

=================================  ===================  =====================================
endpoint                           engine               CLI
=================================  ===================  =====================================
POST /analyses/validate            topology.validate_   (``validate_grids`` report, as JSON)
                                   grids
POST /analyses/coverage            coverage.coverage_   ``gisgrid coverage`` report.json
                                   report
POST /analyses/gaps                coverage_report →    blanks and gaps tables, layers
                                   blanks, gaps
POST /analyses/overlap             coverage_report →    overlap and concentration tables
                                   overlap
POST /analyses/assessment          coverage_report →    files, staffing, assessment tables
                                   assessment
POST /analyses/placement           placement.maximal_   ``gisgrid place`` placement.json
                                   covering / set_
                                   covering
GET  /ledger/summary               pandas over the      —
                                   scoped ledger
=================================  ===================  =====================================
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, Rule, layer_kind, read_rule
from api.catalog import View
from api.dependencies import Caller, get_provider
from api.errors import Conflict, Forbidden, Unprocessable
from api.jobs import JobManager, Progress, status
from api.providers import Provider
from gis_grid.errors import InputError
from gis_grid.jobs.coverage import LAYERS as COVERAGE_LAYERS
from gis_grid.jsonable import plain
from gis_grid.naming import grid_layers

router = APIRouter(tags=["analyses"])

LAYER = r"^[a-z][a-z0-9_]{0,59}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidateParameters(_Body):
    """Parameters of ``validate_grids`` (``gis_grid.topology``)."""

    grids: str = Field("grids", pattern=LAYER, description="Grid layer to check.")
    territory: str | None = Field("territory", pattern=LAYER,
                                  description="Layer the top level must cover; null: none.")
    households: str | None = Field("households", pattern=LAYER,
                                   description="Household points (for households in no "
                                               "grid); null: none.")
    staff: str | None = Field("staff", pattern=LAYER, description="Staff layer (one person "
                              "per grid); null: none.")
    gap_width: float = Field(1.0, gt=0, le=1e5, description="Metres.")
    sliver_area: float = Field(1.0, gt=0, le=1e9, description="Square metres.")
    snap_tolerance: float = Field(0.01, gt=0, le=100, description="Metres.")


class CoverageParameters(_Body):
    """The options of ``gisgrid coverage``."""

    institution: str | None = Field(None, max_length=64, description="Measure access "
                                    "through this institution's outlets and devices only "
                                    "(an administrator's runs are always its own).")
    urban_radius: float = Field(2000.0, gt=0, le=1e5, description="Metres.")
    rural_radius: float = Field(5000.0, gt=0, le=1e5, description="Metres.")
    grids: list[Annotated[str, Field(pattern=LAYER)]] | None = Field(
        None, max_length=50, description="Grid layers; default every grids / grids__*.")
    max_institutions: int = Field(3, ge=0, le=100)
    year: Literal[1, 2, 3] = 1
    period: str | None = Field(None, pattern=r"^\d{4}-(0[1-9]|1[0-2]|Q[1-4])$")
    data_date: str | None = Field(None, max_length=40)
    households_geojson: bool = Field(False, description="Include the per-household layer "
                                     "(large).")
    weights: dict[str, float] | None = Field(
        None, max_length=10, description="The assessment's criteria and weights, as "
        "``gisgrid coverage --assessment``: coverage, files, staffing, blanks_closed, each "
        "≥ 0, summing to 1 (a criterion not named weighs 0); default 0.3/0.3/0.2/0.2.")


class PlacementParameters(_Body):
    """The options of ``gisgrid place`` (candidates inline as a GeoJSON
    FeatureCollection of points instead of a file)."""

    kind: Literal["outlet", "device", "any"] = "outlet"
    k: int = Field(5, ge=1, le=500)
    candidates: dict | None = Field(None, description="GeoJSON FeatureCollection of "
                                    "candidate points; default the unit and town centres.")
    candidates_crs: str | None = Field(None, max_length=40,
                                       description="gcj02, bd09 or an EPSG code.")
    radius: float | None = Field(None, gt=0, le=1e5)
    urban_radius: float = Field(2000.0, gt=0, le=1e5)
    rural_radius: float = Field(5000.0, gt=0, le=1e5)
    institution: str | None = Field(None, max_length=64)
    problem: Literal["mclp", "lscp", "both"] = "both"
    method: Literal["auto", "exact", "greedy"] = "auto"
    time_limit: float = Field(60.0, ge=1, le=600)


async def _jobs(request: Request) -> JobManager:
    return request.app.state.jobs


Jobs = Annotated[JobManager, Depends(_jobs)]
ProviderDep = Annotated[Provider, Depends(get_provider)]


def _geojson(layer) -> dict:
    text = layer.to_crs("EPSG:4326").to_json(na="null", drop_id=True, ensure_ascii=False,
                                             default=str)
    return json.loads(text)


# ---------------------------------------------------------------------- scoped reads


async def _views(provider: Provider, who: Principal, names: list[str],
                 *, aggregate: bool) -> dict[str, View]:
    """The caller's view of each layer present among ``names``. ``aggregate``: the
    result is an aggregate (the regulator reads the ledger whole anyway since issue 18,
    M5: ``read_rule`` gives it every row, as ``/collections/ledger`` does)."""
    from api.dependencies import view_for

    catalog = await provider.catalog()
    views = {}
    for name in names:
        info = catalog.get(name)
        if info is None:
            continue
        if aggregate and who.role == "regulator" and layer_kind(name) == "ledger":
            views[name] = View(info.columns)
            continue
        views[name] = await view_for(provider, who, info)
    return views


def _read(store, name: str, view: View | None):
    """Layer ``name`` as the caller may see it (None when absent)."""
    if view is None:
        return None
    present = {c.name for c in view.columns}
    if any(column not in present and column not in ("fid",) for column, _ in view.scope):
        frame = store.read(name, columns=list(view.names))
        return frame.iloc[:0]
    where = {column: list(values) for column, values in view.scope}
    return store.read(name, where=where or None, columns=list(view.names))


def _forbid_worker(who: Principal) -> None:
    if who.role == "worker":
        raise Forbidden("grid workers run no analyses; ask the institution's administrator")


def _own_institution(who: Principal, asked: str | None) -> str | None:
    if who.role == "admin":
        if asked not in (None, who.institution):
            raise Forbidden(f"institution {asked!r}: you ({who}) analyse "
                            f"{who.institution} only")
        return who.institution
    return asked


def _submitted(request: Request, job) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    return JSONResponse(status(job, base), status_code=202,
                        headers={"Location": f"{base}/jobs/{job['jobID']}"})


# ---------------------------------------------------------------------------- validate


@router.post("/analyses/validate", status_code=202, summary="Check a grid layer (井田制)")
async def validate(request: Request, params: ValidateParameters, who: Caller, jobs: Jobs,
                   provider: ProviderDep) -> JSONResponse:
    """Check a grid layer against the well-field rule (no gap, no overlap, nesting,
    one person per grid) as ``validate_grids`` does; a job whose result is the
    validation report (problems with WKT geometries in EPSG:4326)."""
    return _submitted(request, await start_validate(params, who, jobs, provider))


async def start_validate(params: ValidateParameters, who: Principal, jobs: JobManager,
                         provider: Provider) -> dict:
    """Queue the validate job for ``who`` (the /analyses and /processes way in)."""
    _forbid_worker(who)
    names = [n for n in (params.grids, params.territory, params.households, params.staff) if n]
    views = await _views(provider, who, names, aggregate=False)
    if params.grids not in views:
        raise Unprocessable(f"no grid layer {params.grids!r} in the store")
    store = provider.store

    def run(progress: Progress):
        from gis_grid.jobs import VALIDATE

        progress(0.05, "reading layers")
        # The job's inputs by its keys, from the layers the request names.
        inputs = {key: _read(store, name, views.get(name)) if name else None
                  for key, name in (("grids", params.grids), ("territory", params.territory),
                                    ("households", params.households),
                                    ("staff", params.staff))}
        progress(0.3, f"checking {len(inputs['grids'])} grids")
        outcome = VALIDATE.compute(inputs, params.model_dump())
        progress(0.95, "writing the report")
        return plain(outcome.result.as_dict())

    # the job records are files or rows of the store: kept off the event loop
    return await anyio.to_thread.run_sync(jobs.submit, "validate", who.key_id,
                                          params.model_dump(), run)


# ------------------------------------------------------------------ coverage and parts

#: What each endpoint returns of the coverage report: tables and layers.
PARTS = {
    "coverage": (None, None),
    "gaps": (("no_point", "blanks", "gaps"),
             ("units_without_service_point", "service_blanks", "coverage_gaps")),
    "overlap": (("overlap", "concentration"), ("grid_overlap",)),
    "assessment": (("files", "files_grids", "staffing", "staffing_grids", "assessment"), ()),
}


async def start_coverage(part: str, params: CoverageParameters, who: Principal,
                         jobs: JobManager, provider: Provider) -> dict:
    """Queue the coverage job for ``who``, answering with the ``part`` of its report
    (``PARTS``): coverage (all), gaps, overlap or assessment."""
    _forbid_worker(who)
    if part in ("overlap", "assessment") and who.role != "regulator":
        raise Forbidden(f"the {part} compares institutions: it is the regulator's")
    institution = _own_institution(who, params.institution)
    catalog = await provider.catalog()
    grid_names = params.grids or grid_layers(catalog)
    missing = [n for n in grid_names if n not in catalog]
    if missing:
        raise Unprocessable(f"no grid layer(s) {', '.join(missing)} in the store")
    views = await _views(provider, who, [*COVERAGE_LAYERS, *grid_names], aggregate=True)
    for required in ("territory", "households"):
        if required not in views:
            raise Unprocessable(f"the store has no {required} layer; coverage needs it")
    from gis_grid.coverage.ranking import assessment_weights

    try:
        weights = assessment_weights(params.weights, source="weights")
    except InputError as err:
        raise Unprocessable(err.report()) from None
    store = provider.store
    tables, layers = PARTS[part]

    def run(progress: Progress):
        from gis_grid.jobs import COVERAGE

        progress(0.05, "reading layers")
        job_params = {"grids": grid_names, "institution": institution,
                      "radii": {"urban": params.urban_radius, "rural": params.rural_radius},
                      "max_institutions": params.max_institutions, "year": params.year,
                      "period": params.period, "data_date": params.data_date,
                      "include_households": params.households_geojson, "source": "api",
                      "weights": weights,
                      "weights_source": "default" if params.weights is None else "api"}
        inputs = {read.as_key: _read(store, read.name, views.get(read.name))
                  for read in COVERAGE.reads(job_params, views)}
        progress(0.25, "measuring access, gaps and files")
        report = COVERAGE.compute(inputs, job_params).result
        progress(0.9, "writing the report")
        result = report.to_dict()
        if tables is not None:
            result["tables"] = {k: v for k, v in result["tables"].items() if k in tables}
        chosen = report.layers if layers is None else {
            k: v for k, v in report.layers.items() if k in layers}
        result["layers"] = {k: _geojson(v) for k, v in chosen.items()}
        result["summary"] = report.summary()
        return plain(result)

    return await anyio.to_thread.run_sync(
        jobs.submit, part, who.key_id, {**params.model_dump(), "institution": institution},
        run)


async def _coverage_job(request: Request, part: str, params: CoverageParameters,
                        who: Principal, jobs: JobManager, provider: Provider) -> JSONResponse:
    return _submitted(request, await start_coverage(part, params, who, jobs, provider))


@router.post("/analyses/coverage", status_code=202, summary="Coverage and gap analysis")
async def coverage(request: Request, params: CoverageParameters, who: Caller, jobs: Jobs,
                   provider: ProviderDep) -> JSONResponse:
    """``gisgrid coverage``: access, shares, blanks, gaps, FAS indicators, across-bank
    tables, files against targets, staffing and ranking (those the caller may see)."""
    return await _coverage_job(request, "coverage", params, who, jobs, provider)


@router.post("/analyses/gaps", status_code=202, summary="Service blanks and gap areas")
async def gaps(request: Request, params: CoverageParameters, who: Caller, jobs: Jobs,
               provider: ProviderDep) -> JSONResponse:
    """The blanks and gaps of the coverage report, with their layers as GeoJSON."""
    return await _coverage_job(request, "gaps", params, who, jobs, provider)


@router.post("/analyses/overlap", status_code=202, summary="Across-bank grid overlap")
async def overlap(request: Request, params: CoverageParameters, who: Caller, jobs: Jobs,
                  provider: ProviderDep) -> JSONResponse:
    """Institutions whose grids cover each unit, over-concentration and outlet HHI
    (regulators only)."""
    return await _coverage_job(request, "overlap", params, who, jobs, provider)


@router.post("/analyses/assessment", status_code=202, summary="Assessment table (B8)")
async def assessment(request: Request, params: CoverageParameters, who: Caller, jobs: Jobs,
                     provider: ProviderDep) -> JSONResponse:
    """Files against the phase targets, staffing and each institution's score and rank
    (regulators only)."""
    return await _coverage_job(request, "assessment", params, who, jobs, provider)


# --------------------------------------------------------------------------- placement


@router.post("/analyses/placement", status_code=202, summary="Where new outlets/devices go")
async def placement(request: Request, params: PlacementParameters, who: Caller, jobs: Jobs,
                    provider: ProviderDep) -> JSONResponse:
    """``gisgrid place``: maximal covering (k sites) and set covering."""
    return _submitted(request, await start_placement(params, who, jobs, provider))


async def start_placement(params: PlacementParameters, who: Principal, jobs: JobManager,
                          provider: Provider) -> dict:
    """Queue the placement job for ``who``."""
    _forbid_worker(who)
    institution = _own_institution(who, params.institution)
    names = ["households", "units", "townships", "outlets", "devices"]
    views = await _views(provider, who, names, aggregate=False)
    if "households" not in views:
        raise Unprocessable("the store has no households layer; placement needs it")
    if params.candidates is None and "units" not in views:
        raise Unprocessable("the store has no units layer to take unit centres from; "
                            "give candidates")
    store = provider.store

    def run(progress: Progress):
        from gis_grid.jobs.placement import PLACEMENT

        progress(0.05, "reading layers")
        job_params = {**params.model_dump(exclude={"candidates"}), "institution": institution,
                      "source": "api", "candidates_source": "request candidates"}
        inputs = {read.as_key: _read(store, read.name, views.get(read.name))
                  for read in PLACEMENT.reads(job_params, views)}
        if params.candidates is not None:
            inputs["candidates"] = _candidates(params.candidates, params.candidates_crs)
        progress(0.2, "covering")
        result = PLACEMENT.compute(inputs, job_params).result
        return plain({"meta": result["meta"], **{
            name: {"method": r.method, "report": r.report, "summary": r.summary(),
                   "sites": _geojson(r.sites)}
            for name, r in result["results"].items()}})

    return await anyio.to_thread.run_sync(
        jobs.submit, "placement", who.key_id,
        {**params.model_dump(exclude={"candidates"}), "institution": institution,
         "candidates": None if params.candidates is None else "inline"}, run)


def _candidates(collection: dict, crs: str | None):
    """Candidate points from inline GeoJSON, read like ``--candidates FILE``."""
    from layers.files import read_file

    with tempfile.TemporaryDirectory(prefix="gisgrid-candidates-") as folder:
        path = Path(folder) / "candidates.geojson"
        path.write_text(json.dumps(collection, ensure_ascii=False), encoding="utf-8")
        raw = read_file(path, crs=crs)
    if raw.problems:
        raise InputError(raw.problems, source="candidates")
    return raw.frame


# -------------------------------------------------------------------------------- jobs


@router.get("/jobs", tags=["jobs"], summary="Your jobs (OGC API – Processes job list)")
async def list_jobs(request: Request, who: Caller, jobs: Jobs) -> dict:
    base = str(request.base_url).rstrip("/")
    owned = await anyio.to_thread.run_sync(jobs.owned, who.key_id)
    return {"jobs": [status(j, base) for j in owned],
            "links": [{"href": f"{base}/jobs", "rel": "self", "type": "application/json"}]}


@router.get("/jobs/{jobId}", tags=["jobs"], summary="Status and progress of a job")
async def job_status(request: Request, jobId: str, who: Caller, jobs: Jobs) -> dict:
    """The job's status as OGC API – Processes' statusInfo (``status``: accepted,
    running, successful, failed; ``progress`` in %) with the fields the /analyses
    clients read (``state``: queued, running, done, failed; ``step``, ``error``)."""
    job = await anyio.to_thread.run_sync(jobs.get, jobId, who.key_id)
    return status(job, str(request.base_url).rstrip("/"))


@router.delete("/jobs/{jobId}", tags=["jobs"], summary="Dismiss a job (and its result)")
async def dismiss_job(request: Request, jobId: str, who: Caller, jobs: Jobs) -> dict:
    """OGC API – Processes' dismiss: the job is forgotten with its result (its status is
    404 afterwards) and no longer counts in your key's quota. One still running finishes
    in the background, but nothing of it is kept. Answers its status, ``dismissed``."""
    job = await anyio.to_thread.run_sync(jobs.dismiss, jobId, who.key_id)
    return status(job, str(request.base_url).rstrip("/"))


@router.get("/jobs/{jobId}/result", tags=["jobs"], summary="The report of a finished job")
async def job_result(jobId: str, who: Caller, jobs: Jobs) -> Response:
    job = await anyio.to_thread.run_sync(jobs.get, jobId, who.key_id)
    if job["state"] == "failed":
        raise Conflict(f"job {jobId} failed: {job['error']}", extra={"state": "failed"})
    if job["state"] != "done":
        raise Conflict(f"job {jobId} is {job['state']} ({100 * job['progress']:.0f} %); "
                       f"poll /jobs/{jobId}", extra={"state": job["state"]})
    text = await anyio.to_thread.run_sync(jobs.result_text, jobId)
    return Response(text.encode(), media_type="application/json")


# ------------------------------------------------------------------------------ ledger

LEDGER_SUMS = ("households_total", "households_files", "merchants_total", "merchants_files",
               "firms_total", "firms_files", "surveys", "checks")


def summary_rule(who: Principal, name: str, columns) -> Rule:
    """Aggregates of the ledger: a regulator sees every institution's, others their own
    rows' (as ``read_rule``)."""
    if who.role == "regulator":
        return Rule()
    return read_rule(who, name, columns)


@router.get("/ledger/summary", tags=["ledger"],
            summary="Ledger aggregates per institution and period (台账汇总)")
async def ledger_summary(
    who: Caller, provider: ProviderDep,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2]|Q[1-4])$",
                                        description="Only this period.")] = None,
) -> dict:
    """Totals and files of households, merchants and firms, surveys and checks, summed
    per institution and period over the ledger rows the caller may see, with the share
    of each that has files. No grid-level rows: this is what regulators read."""
    catalog = await provider.catalog()
    info = catalog.get("ledger")
    if info is None:
        return {"period": period, "rows": []}
    rule = summary_rule(who, "ledger", info.column_names)
    scope = [(c, tuple(v)) for c, v in rule.fixed.items()]
    for column, lookup in rule.lookups.items():
        scope.append((column, await provider.lookup(lookup, who)))
    view = View(info.columns, tuple(scope))

    def run():
        frame = _read(provider.store, "ledger", view)
        if period is not None:
            frame = frame[frame["period"] == period]
        sums = [c for c in LEDGER_SUMS if c in frame.columns]
        table = frame.groupby(["institution", "period"], as_index=False)[sums].sum()
        table.insert(2, "grids", frame.groupby(["institution", "period"]).size().to_numpy()
                     if len(frame) else [])
        for kind in ("households", "merchants", "firms"):
            total, files = table[f"{kind}_total"], table[f"{kind}_files"]
            table[f"{kind}_share"] = (files / total.where(total > 0)).round(4)
        return plain(table)

    return {"period": period, "rows": await anyio.to_thread.run_sync(run)}
