"""One county's task: read its inputs, skip it if unchanged, compute, stage the result.

A county's outcome layers go to its own staging layers (``<layer>__c<code>``,
``<role>__<layer>__c<code>``), replaced whole by every attempt, so a retried or re-run
county can never leave two copies; its files go to ``<out>/<county>/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from gis_grid.jobs import Job
from gis_grid.naming import LEDGER, staged_layer, target_layer
from layers.fanout.ledger import already_done, fingerprint, ledger_row
from layers.runner import available_layers, read_inputs, write_files
from layers.store import open_store

#: The parameter ``run_province`` sets when the territory is one county without a
#: ``county`` column: the task then reads every layer whole.
WHOLE = "whole_territory"


@dataclass
class CountyResult:
    """What one county's task did: ``done``, ``skipped`` (resumed) or ``failed``."""

    county: str
    job: str
    status: str
    seconds: float = 0.0
    fingerprint: str = ""
    error: str = ""
    summary: dict = field(default_factory=dict)
    name: str = ""


def county_inputs(store, job: Job, county: str, params: dict) -> dict:
    """The county's inputs as ``job`` reads them: its rows of each layer (every layer
    whole when the territory is this one county), and the layers it reads ``near`` the
    county within the county's bounding box."""
    whole = bool(params.get(WHOLE))
    available = available_layers(store)
    reads = job.reads(params, available)
    inputs = read_inputs(store, [r for r in reads if r.scope != "near"], available=available,
                         county=None if whole else county)
    near = [r for r in reads if r.scope == "near"]
    if near:
        bbox = None
        territory = inputs.get("territory")
        if not whole and territory is not None and len(territory):
            bbox = tuple(float(v) for v in territory.total_bounds)
        inputs.update(read_inputs(store, near, available=available, bbox=bbox))
    # Columns the job writes itself are not inputs (else a run never matches its last).
    volatile = {r.as_key: r.volatile for r in reads if r.volatile}
    digestible = {k: (v.drop(columns=list(volatile[k]), errors="ignore")
                      if k in volatile and v is not None else v) for k, v in inputs.items()}
    return inputs, digestible


def run_county(store_url: str, job: Job, county: str, params: dict) -> CountyResult:
    """Run ``job`` for one county: read its inputs from the store, compute, stage back.

    ``params`` are the job's own (see its module in ``gis_grid.jobs``), plus ``out`` (a
    folder: the county's files go to ``<out>/<county>/``) and ``resume`` (default True).

    Returns ``done`` or ``skipped`` (same fingerprint done before); errors are raised, so
    the engine can retry them.
    """
    started = time.perf_counter()
    layer = target_layer(params)
    with open_store(store_url) as store:
        inputs, digestible = county_inputs(store, job, county, params)
        print_ = fingerprint(job.name, county, params, digestible)
        if params.get("resume", True):
            summary = already_done(store, job.name, layer, county, print_)
            if summary is not None:
                return CountyResult(county, job.name, "skipped",
                                    time.perf_counter() - started, print_, summary=summary)
        outcome = job.compute(inputs, {**params, "county": county})
        if params.get("out"):
            write_files(outcome, Path(params["out"]) / county)
        summary = dict(outcome.summary)  # after the files: a renderer completes it
        if "ok" not in summary and not outcome.ok:
            summary["ok"] = False
        staged = [role for role in job.stages if role in outcome.layers]
        if staged:
            summary["staged"] = sorted(staged)
        # Staging layers first: a ledger row is appended only once they are all there. A
        # staging layer this attempt does not write (none of its kind this time) goes, so
        # that the merge never takes an older attempt's.
        for role in job.stages:
            stage = staged_layer(role, layer, county)
            if role in outcome.layers:
                store.write(stage, outcome.layers[role])
            elif store.has(stage):
                store.delete(stage)
        # Appended after the result is written: a ledger row always has its result.
        store.append(LEDGER, ledger_row(job.name, layer, county, print_, "done",
                                        summary=summary))
    return CountyResult(county, job.name, "done", time.perf_counter() - started, print_,
                        summary=summary)
