"""OGC API – Processes (Part 1: Core): the analyses as processes.

``/processes`` lists validate, coverage, gaps, overlap, assessment and placement;
``/processes/{processId}`` describes one (its inputs are the fields of the same
parameter models as ``/analyses/{name}``, as JSON Schema; one output, ``report``);
``POST /processes/{processId}/execution`` with ``{"inputs": {…}}`` queues the same job
as ``POST /analyses/{name}`` (``api.analyses`` ``start_*``: one implementation, the
same role rules) and answers 201 with ``Location: /jobs/{jobId}`` and the job's
statusInfo. Execution is always asynchronous (``jobControlOptions: async-execute``), so
a ``Prefer: respond-sync`` is not honoured (no ``Preference-Applied``).
``/jobs/{jobId}`` (``api.analyses``) tells its status and ``/jobs/{jobId}/results`` gives
``{"report": …}`` once it succeeded: the report ``/jobs/{jobId}/result`` gives alone.
``DELETE /jobs/{jobId}`` dismisses a job (``jobControlOptions: dismiss``): it is
forgotten with its result and leaves the key's quota.

The descriptions need no key (they describe the service, like ``/conformance``); running
a process and reading jobs do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from api.analyses import (
    CoverageParameters,
    PlacementParameters,
    ValidateParameters,
    start_coverage,
    start_placement,
    start_validate,
)
from api.dependencies import Caller, get_provider
from api.errors import ApiError, InvalidParameter, NotFound
from api.jobs import JobManager, status
from api.openapi30 import schema_30
from api.providers import Provider

router = APIRouter(tags=["OGC API - Processes"])

#: OGC API – Processes classes implemented (api.features lists them).
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
]
REL_PROCESSES = "http://www.opengis.net/def/rel/ogc/1.0/processes"
REL_JOB_LIST = "http://www.opengis.net/def/rel/ogc/1.0/job-list"
REL_EXECUTE = "http://www.opengis.net/def/rel/ogc/1.0/execute"
EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
VERSION = "1.0.0"

Start = Callable[[BaseModel, object, JobManager, Provider], Awaitable[dict]]


@dataclass(frozen=True)
class Process:
    """One analysis offered as a process."""

    id: str
    title: str
    description: str
    who: str
    parameters: type[BaseModel]
    start: Start


PROCESSES = {p.id: p for p in (
    Process("validate", "网格校验 Validate a grid layer",
            "Checks a grid layer against the well-field rule (no gap, no overlap, nesting, "
            "one person per grid), as `gisgrid validate`; the report lists every problem "
            "with its geometry (WKT, EPSG:4326).",
            "regulators and institution administrators (their own grids)",
            ValidateParameters, start_validate),
    Process("coverage", "覆盖分析 Coverage and gaps",
            "`gisgrid coverage`: access to outlets and devices, covered shares, service "
            "blanks and gap areas, FAS indicators, across-bank tables, files against the "
            "phase targets, staffing and ranking (those the caller may see).",
            "regulators and institution administrators (their own institution)",
            CoverageParameters, partial(start_coverage, "coverage")),
    Process("gaps", "服务空白 Service blanks and gap areas",
            "The blanks and gaps of the coverage report, with their layers as GeoJSON.",
            "regulators and institution administrators (their own institution)",
            CoverageParameters, partial(start_coverage, "gaps")),
    Process("overlap", "跨行重叠 Across-bank grid overlap",
            "Institutions whose grids cover each unit, over-concentration and outlet HHI.",
            "regulators", CoverageParameters, partial(start_coverage, "overlap")),
    Process("assessment", "考核 Assessment (B8)",
            "Files against the phase targets, staffing and each institution's score and "
            "rank under the weights given.",
            "regulators", CoverageParameters, partial(start_coverage, "assessment")),
    Process("placement", "选址 Where new outlets or devices go",
            "`gisgrid place`: maximal covering (k sites) and set covering, over the unit "
            "and town centres or the candidate points given.",
            "regulators and institution administrators (their own institution)",
            PlacementParameters, start_placement),
)}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _summary(process: Process, base: str) -> dict:
    url = f"{base}/processes/{process.id}"
    return {
        "id": process.id, "title": process.title, "description": process.description,
        "version": VERSION, "jobControlOptions": ["async-execute", "dismiss"],
        "outputTransmission": ["value"],
        "keywords": ["金融服务网格", process.id],
        "links": [
            {"href": url, "rel": "self", "type": "application/json",
             "title": "process description"},
            {"href": f"{url}/execution", "rel": REL_EXECUTE, "type": "application/json",
             "title": "execute (POST {\"inputs\": {…}})"},
        ],
    }


def _inputs(model: type[BaseModel]) -> dict:
    """The model's fields as process inputs: title, description and schema (in
    OpenAPI 3.0's dialect, as the Processes standard's process description has it)."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    defs = schema.get("$defs", {})
    inputs = {}
    for name, prop in schema.get("properties", {}).items():
        prop = _inline(prop, defs)
        inputs[name] = {
            "title": prop.pop("title", name),
            "description": prop.pop("description", ""),
            "schema": schema_30(prop),
            "minOccurs": 1 if name in required else 0,
            "maxOccurs": 1,
        }
    return inputs


def _inline(node, defs: dict):
    """``node`` with local ``$ref``s to ``$defs`` replaced by their definitions."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/") and ref[8:] in defs:
            return _inline(dict(defs[ref[8:]]), defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _process(process_id: str) -> Process:
    process = PROCESSES.get(process_id)
    if process is None:
        raise NoSuchProcess(f"no process {process_id!r}; offered: {', '.join(PROCESSES)}")
    return process


class NoSuchProcess(NotFound):
    code = "NoSuchProcess"

    def body(self) -> dict:
        return {**super().body(), "type": EXCEPTIONS + "no-such-process",
                "title": "No such process", "detail": self.description}


class NoResults(ApiError):
    """A job that has no results (yet): 404 while it runs, 409 when it failed."""

    status, code = 404, "ResultNotReady"

    def __init__(self, description: str, kind: str, status: int) -> None:
        super().__init__(description)
        self.status = status
        self.kind = kind

    def body(self) -> dict:
        return {**super().body(), "type": EXCEPTIONS + self.kind, "detail": self.description}


ProcessId = Annotated[str, Path(max_length=64, description="The process id, as listed at "
                                "/processes", examples=["coverage"])]


@router.get("/processes", summary="The analyses offered as processes")
async def processes(request: Request) -> dict:
    base = _base(request)
    return {"processes": [_summary(p, base) for p in PROCESSES.values()],
            "links": [{"href": f"{base}/processes", "rel": "self",
                       "type": "application/json"}]}


@router.get("/processes/{processId}", summary="One process: its inputs and outputs")
async def process_description(request: Request, processId: ProcessId) -> dict:
    process = _process(processId)
    doc = _summary(process, _base(request))
    doc["description"] += f" Who may run it: {process.who}; grid workers run none."
    doc["inputs"] = _inputs(process.parameters)
    doc["outputs"] = {"report": {
        "title": "report",
        "description": "The job's report as JSON (what /analyses/" + process.id +
                       " gives at /jobs/{jobId}/result).",
        "schema": {"type": "object", "contentMediaType": "application/json"},
    }}
    return doc


async def _jobs(request: Request) -> JobManager:
    return request.app.state.jobs


@router.post("/processes/{processId}/execution", status_code=201,
             summary="Run a process (asynchronously)",
             responses={201: {"description": "The job was created; its status is at the "
                                             "Location."}})
async def execute(
    request: Request, processId: ProcessId, who: Caller,
    jobs: Annotated[JobManager, Depends(_jobs)],
    provider: Annotated[Provider, Depends(get_provider)],
    body: Annotated[dict, Body(examples=[{"inputs": {"urban_radius": 2000}}])],
) -> JSONResponse:
    """Queue the process with ``{"inputs": {…}}`` (``outputs`` and ``response`` are
    accepted; the one output is the report, given as a value). Answers 201 with
    ``Location: /jobs/{jobId}`` and the job's status."""
    process = _process(processId)
    unknown = set(body) - {"inputs", "outputs", "response", "subscriber"}
    if unknown:
        raise InvalidParameter(f"unknown member(s) {', '.join(sorted(unknown))} of the "
                               "execute request; expected inputs, outputs, response")
    inputs = body.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise InvalidParameter("inputs: expected an object of input id → value")
    if body.get("response", "document") not in ("document", "raw"):
        raise InvalidParameter("response: expected 'document' or 'raw'")
    try:
        params = process.parameters.model_validate(inputs)
    except ValidationError as err:
        text = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'inputs'}: {e['msg']}"
                         for e in err.errors(include_url=False))
        raise InvalidParameter(f"inputs of {process.id}: {text}") from None
    job = await process.start(params, who, jobs, provider)
    base = _base(request)
    return JSONResponse(status(job, base), status_code=201,
                        headers={"Location": f"{base}/jobs/{job['jobID']}"})


@router.get("/jobs/{jobId}/results", tags=["jobs"], summary="The results of a job",
            responses={200: {"content": {"application/json": {}}}})
async def results(jobId: str, who: Caller,
                  jobs: Annotated[JobManager, Depends(_jobs)]) -> Response:
    """``{"report": …}`` once the job succeeded; 404 (result-not-ready) while it runs,
    409 when it failed."""
    job = await anyio.to_thread.run_sync(jobs.get, jobId, who.key_id)
    if job["state"] == "failed":
        raise NoResults(f"job {jobId} failed: {job['error']}", "job-results-failed", 409)
    if job["state"] != "done":
        raise NoResults(f"job {jobId} is {job['state']} ({100 * job['progress']:.0f} %); "
                        f"poll /jobs/{jobId}", "result-not-ready", 404)
    text = await anyio.to_thread.run_sync(jobs.result_text, jobId)
    return Response(('{"report":' + text + "}").encode(), media_type="application/json")


def landing_links(base: str) -> list[dict]:
    """The processes links of the landing page."""
    return [{"href": f"{base}/processes", "rel": REL_PROCESSES, "type": "application/json",
             "title": "the analyses as OGC API processes"},
            {"href": f"{base}/jobs", "rel": REL_JOB_LIST, "type": "application/json",
             "title": "your jobs"}]

