"""Run a job over a province county by county, in-process or on a Dask cluster.

A province (DESIGN.md §5: ~10⁴ villages, ~10⁷ households) is many counties whose work is
independent. ``run_province`` makes each county one task of ``run_county``: the task opens
the store by its address, reads *its county only* (``store.read(name, where={"county":
code})``), computes, and writes its result back. Without a scheduler the tasks run one
after another in this process; with one (``tcp://host:port`` or a
``dask.distributed.Client``) they are mapped on the cluster — an existing engine, Dask
distributed, not a home-made pool — with retries, so a failed or killed worker's county is
run again on another worker.

Results, all-or-nothing and never duplicated
    A county's grids go to its own staging layer ``<layer>__c<code>``, replaced whole by
    every attempt, so a retried or re-run county can never leave two copies. When every
    county has finished, the client merges the staging layers of the counties that
    succeeded into ``<layer>`` in one all-or-nothing write.

Resume ledger
    Each finished county appends a row to the table ``fanout_runs`` (job, layer, county,
    fingerprint, status, error, summary, finished_at). The fingerprint is a SHA-256 of the
    job, its parameters and the county's inputs as read; a re-run skips a county whose
    latest ``done`` row has the same fingerprint (and whose staging layer is there), so
    only changed or failed counties are redone. Rows are only appended, so concurrent
    tasks never contend for one row.

One county without a ``county`` column
    A territory layer without a ``county`` column and with one row (a single county, as
    ``gisgrid sample --county 420527`` builds it) is run as one county, one task, whose
    code is the territory's: the task reads every layer whole, and the merged grids carry
    no ``county`` column, exactly as an in-process ``gisgrid partition`` writes them. A
    territory of several rows without a ``county`` column is refused (``InputError``).

Cleaning up
    Staging layers and ledger rows stay after a run (they are what a re-run resumes
    from). ``clean_runs`` removes those of a layer (or of every run), in one transaction
    on PostGIS; afterwards a re-run recomputes every county.

Failures
    A county that still fails after the retries is reported by code and name with its
    error (and recorded as ``failed``); the other counties complete and are merged.

Stores
    Workers on other machines must reach the store: use PostGIS. The GeoPackage store is a
    file on this machine and SQLite allows one writer at a time, so it is refused with any
    scheduler (in-process runs use it as before).

Jobs: ``partition`` (grids, level 1 = the county's townships so no grid crosses a county
border), ``validate`` (per county, plus the province-wide check of the seams between
counties, ``validate_seams``), ``coverage`` (per-county coverage report, JSON; with
``report_files`` the whole report set, and with ``store_suffix`` the layers
``coverage_gaps``/``service_blanks`` staged per county and merged) and ``atlas``
(per-county PDF volumes, ``maps.province``).

Example
-------
>>> run = run_province("postgresql://postgres@127.0.0.1/gis", "partition",
...                    {"institution": "NSH"}, scheduler="tcp://10.0.0.5:8786")
... # doctest: +SKIP
>>> run.failed  # doctest: +SKIP
[]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.errors import InputError, LayerNotFound, Problem, StoreError
from gis_grid.model import STORAGE_CRS
from layers.store import Store, open_store, resolve_store_url

__all__ = ["JOBS", "LEDGER", "STAGED", "WHOLE", "Cleaned", "CountyResult", "ProvinceRun",
           "check_scheduler_store", "clean_runs", "is_staging", "read_county", "run_county",
           "run_province", "stage_layer", "staging_layers", "stitch_seams", "target_layer",
           "validate_seams"]

#: The resume ledger table.
LEDGER = "fanout_runs"
#: Jobs ``run_county`` knows.
JOBS = ("partition", "validate", "coverage", "atlas")
#: The parameter ``run_province`` sets when the territory is one county without a
#: ``county`` column: the task then reads every layer whole.
WHOLE = "whole_territory"
#: Parameters that steer tests and runs but not results: left out of the fingerprint.
_CONTROL = ("fail_counties", "kill_once", "resume", WHOLE)
#: The frames each job stages per county (``run_county``): ``grids`` as
#: ``<layer>__c<code>``, any other as ``<name>__<layer>__c<code>``. The coverage layers
#: are staged as ``gaps``/``blanks`` (not ``coverage_gaps``…) so that maps and analyses,
#: which draw every layer named like an analysis layer, never pick up a staging layer.
STAGED = {"partition": ("grids", "staff"), "coverage": ("gaps", "blanks")}
_COVERAGE_STAGED = {"coverage_gaps": "gaps", "service_blanks": "blanks"}
_COUNTY_CODE = r"\d{6}(?:\d{6})?"


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


@dataclass
class ProvinceRun:
    """What ``run_province`` did: one ``CountyResult`` per county, in code order."""

    job: str
    layer: str
    counties: list[CountyResult]
    seconds: float
    dashboard: str | None = None
    merged: int | None = None  # rows in the merged layer, for partition
    stored: dict | None = None  # layer → rows, for coverage storing its layers
    seams: dict | None = None  # the province-wide seam check, for validate
    finish_seconds: float = 0.0  # of ``seconds``: the client's merge or seam check

    @property
    def failed(self) -> list[CountyResult]:
        return [c for c in self.counties if c.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and (self.seams is None or self.seams.get("ok", True)) and all(
            c.summary.get("ok", True) for c in self.counties)

    def text(self) -> str:
        """A short report for people."""
        count: dict[str, int] = {}
        for c in self.counties:
            count[c.status] = count.get(c.status, 0) + 1
        n = len(self.counties)
        lines = [f"{self.job}: {n} count{'y' if n == 1 else 'ies'} in {self.seconds:.1f} s — "
                 + ", ".join(f"{n} {s}" for s, n in sorted(count.items()))]
        if self.merged is not None:
            lines.append(f"stored {self.merged} rows as layer {self.layer}")
        for name, rows in (self.stored or {}).items():
            lines.append(f"stored {rows} rows as layer {name}")
        if self.seams is not None:
            lines.append("seams between counties: " + (
                "no gap, no overlap" if self.seams["ok"] else
                f"{self.seams['problems']} problems ({self.seams['kinds']})"))
        for c in self.counties:
            if self.job == "validate" and c.status != "failed" and not c.summary.get("ok"):
                lines.append(f"  {c.county} {c.name}: {c.summary.get('problems')} problems")
        for c in self.failed:
            lines.append(f"  FAILED {c.county} {c.name}: {c.error}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- one county


def stage_layer(layer: str, county: str) -> str:
    """The staging layer of one county's result: ``grids__nsh__c420527``."""
    return f"{layer}__c{county}"


def is_staging(name: str) -> bool:
    """Whether ``name`` is a county's staging layer (``…__c420527``)."""
    return re.search(rf"__c{_COUNTY_CODE}$", name) is not None


def read_county(store: Store, name: str, county: str, required: bool = True, *,
                whole: bool = False):
    """Layer ``name``, the rows of ``county`` only; None if the layer is missing and not
    ``required``. ``whole``: the territory is this one county and its layers have no
    ``county`` column, so the whole layer is read."""
    if not store.has(name):
        if required:
            raise StoreError(f"layer {name!r} is missing from the store")
        return None
    if whole:
        return store.read(name)
    return store.read(name, where={"county": county})


def _whole(params: dict) -> bool:
    return bool(params.get(WHOLE))


def _frame_digest(frame: pd.DataFrame | None) -> str:
    """A digest of a frame's values and geometry (WKB), independent of its index."""
    if frame is None:
        return "none"
    h = hashlib.sha256()
    data = frame.drop(columns=[frame.geometry.name]) if isinstance(frame, gpd.GeoDataFrame) \
        else frame
    data = data.reindex(sorted(data.columns), axis=1).reset_index(drop=True)
    h.update(",".join(data.columns).encode())
    if len(data):
        h.update(pd.util.hash_pandas_object(data.astype(str), index=False).to_numpy().tobytes())
    if isinstance(frame, gpd.GeoDataFrame):
        for wkb in shapely.to_wkb(frame.geometry.to_numpy()):
            h.update(wkb or b"\0")
    return h.hexdigest()


def _input_digest(value) -> str:
    """A digest of one input: a frame (or None), a dict of inputs, or plain values."""
    if value is None or isinstance(value, pd.DataFrame):
        return _frame_digest(value)
    if isinstance(value, dict):
        h = hashlib.sha256()
        for name in sorted(value):
            h.update(str(name).encode())
            h.update(_input_digest(value[name]).encode())
        return h.hexdigest()
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _fingerprint(job: str, county: str, params: dict, inputs: dict) -> str:
    h = hashlib.sha256()
    kept = {k: v for k, v in sorted(params.items()) if k not in _CONTROL}
    h.update(json.dumps([job, county, kept], sort_keys=True, default=str).encode())
    for name in sorted(inputs):
        h.update(name.encode())
        h.update(_input_digest(inputs[name]).encode())
    return h.hexdigest()


def target_layer(job: str, params: dict) -> str:
    """The layer a job writes or reads: the grids layer (``grids__nsh`` for NSH)."""
    if params.get("layer"):
        return str(params["layer"])
    institution = params.get("institution")
    return f"grids__{institution.lower()}" if institution else "grids"


def _partition_inputs(store: Store, county: str, params: dict) -> dict:
    inputs = {name: read_county(store, name, county, required=name == "territory",
                                whole=_whole(params))
              for name in ("territory", "townships", "units", "households", "outlets",
                           "staff")}
    if inputs["staff"] is not None:
        # The grids staff hold are this job's own output (merged back), not an input.
        inputs["staff"] = inputs["staff"].drop(columns="grids", errors="ignore")
    return inputs


def _partition(county: str, inputs: dict, params: dict) -> tuple[dict, dict]:
    from gis_grid.partition import LevelSpec, partition
    from gis_grid.staffing import assign_staff

    capacity = bool(params.get("capacity", False))
    levels = []
    for text in params.get("levels", ("units:townships", "units:units", "balanced")):
        method, _, source = text.partition(":")
        levels.append(LevelSpec(method.strip(), source=source.strip() or None,
                                capacity=capacity and method.strip() == "outlets"))
    min_area = params.get("min_area")
    result = partition(
        inputs["territory"], inputs["households"], levels=levels,
        institution=params.get("institution"), units=inputs["units"],
        townships=inputs["townships"], outlets=inputs["outlets"],
        target_households=int(params.get("target_households", 300)),
        tolerance=float(params.get("tolerance", 0.2)),
        cell_size=float(params.get("cell_size", 1000.0)),
        min_area=None if min_area is None else float(min_area),
        shape=str(params.get("shape", "square")), seed=int(params.get("seed", 0)))
    if params.get("out"):
        folder = Path(params["out"]) / county
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(result.to_json(), encoding="utf-8")
    grids = result.grids.copy()
    staged = {}
    staff, institution = inputs["staff"], params.get("institution")
    if params.get("assign_staff", True) and institution and staff is not None and len(staff):
        # The county's own workers (一人一格), as ``gisgrid partition`` does for a county.
        grids, staff = assign_staff(grids, staff, institution=institution)
        staged["staff"] = staff
    grids["county"] = county
    staged["grids"] = grids
    levels_report = [{"level": lv["level"], "grids": lv["grids"]}
                     for lv in result.report.get("levels", [])]
    return staged, {"grids": len(grids), "levels": levels_report}


def _validate_inputs(store: Store, county: str, params: dict) -> dict:
    whole = _whole(params)
    return {"grids": read_county(store, target_layer("validate", params), county, whole=whole),
            "territory": read_county(store, "territory", county, whole=whole),
            "households": read_county(store, "households", county, required=False,
                                      whole=whole),
            "staff": read_county(store, "staff", county, required=False, whole=whole)}


def _tolerances(params: dict) -> dict:
    """The validation tolerances given in ``params`` (``gap_width``, ``sliver_area``,
    ``snap_tolerance``); the others keep ``validate_grids``' defaults."""
    return {k: float(params[k]) for k in ("gap_width", "sliver_area", "snap_tolerance")
            if params.get(k) is not None}


def _write_validation(report, folder: Path, stem: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(report.to_json(), encoding="utf-8")
    report.to_geojson(folder / f"{stem}-problems.geojson")


def _validate(county: str, inputs: dict, params: dict) -> tuple[None, dict]:
    from gis_grid.topology import validate_grids

    territory = None if params.get("no_territory") else inputs["territory"]
    report = validate_grids(inputs["grids"], territory=territory,
                            households=inputs["households"], staff=inputs["staff"], threads=1,
                            **_tolerances(params))
    if params.get("out"):
        _write_validation(report, Path(params["out"]) / county, "validation")
    kinds = report.problems["kind"].value_counts().to_dict() if len(report.problems) else {}
    return None, {"ok": bool(report.ok), "problems": int(len(report.problems)),
                  "kinds": {str(k): int(v) for k, v in kinds.items()}}


def _coverage_inputs(store: Store, county: str, params: dict) -> dict:
    whole = _whole(params)
    inputs = {name: read_county(store, name, county, whole=whole,
                                required=name in ("territory", "households"))
              for name in ("territory", "households", "outlets", "devices", "units",
                           "townships", "staff", "ledger")}
    # ``grids``: the grid layers to use (the plain ``gisgrid coverage --grids``), else the
    # job's one layer; a layer named in ``grids`` must be there.
    chosen = "grids" in params
    names = params["grids"] if chosen else [target_layer("coverage", params)]
    inputs["grids"] = {name: read_county(store, name, county, required=chosen, whole=whole)
                       for name in names}
    inputs["institutions"] = store.read("institutions") if store.has("institutions") else None
    inputs["layers_used"] = {name: f"{store.url}:{name}" for name in
                             [*(k for k, v in inputs.items()
                                if k != "grids" and v is not None),
                              *(k for k, v in inputs["grids"].items() if v is not None)]}
    return inputs


def _coverage(county: str, inputs: dict, params: dict) -> tuple[dict | None, dict]:
    from gis_grid.coverage import Radii, coverage_report

    inputs = dict(inputs)
    grids = {name: frame for name, frame in inputs.pop("grids").items()
             if frame is not None and len(frame)}
    options = {k: params[k] for k in ("period", "data_date") if params.get(k) is not None}
    radii = params.get("radii")
    if radii:
        options["radii"] = Radii(urban=float(radii["urban"]), rural=float(radii["rural"]))
    report = coverage_report(**inputs, grids=grids or None,
                             institution=params.get("institution"),
                             max_institutions=int(params.get("max_institutions", 3)),
                             year=int(params.get("year", 1)),
                             include_households=bool(params.get("include_households", False)),
                             **options)
    if params.get("out"):
        folder = Path(params["out"]) / county
        folder.mkdir(parents=True, exist_ok=True)
        if params.get("report_files"):
            # The files ``gisgrid coverage --out`` writes, for this county.
            from layers.reports import write_geojson, write_json, write_tables

            write_json(report.to_dict(), folder / "report.json")
            write_tables(folder, report.tables, meta=report.meta, stem="coverage")
            for name, layer in report.layers.items():
                write_geojson(layer, folder / f"{name}.geojson")
        else:
            (folder / "coverage.json").write_text(
                json.dumps(report.to_dict(), ensure_ascii=False, default=str),
                encoding="utf-8")
    staged = None
    if params.get("store_suffix") is not None:
        staged = {_COVERAGE_STAGED[name]: layer for name, layer in report.layers.items()
                  if name in _COVERAGE_STAGED}
    return staged, {"tables": sorted(report.tables)}


#: job → (read the county's inputs, compute: returns the staged frames or None, summary).
#: A "module:name" entry is a (read, compute) pair in a room that may use ``layers``
#: (DESIGN §2: ``maps`` uses ``layers``, not the reverse), imported when the job runs.
_JOB_FUNCTIONS: dict[str, tuple[Callable, Callable] | str] = {
    "partition": (_partition_inputs, _partition),
    "validate": (_validate_inputs, _validate),
    "coverage": (_coverage_inputs, _coverage),
    "atlas": "maps.province:ATLAS_JOB",
}


def _job(job: str) -> tuple[Callable, Callable]:
    entry = _JOB_FUNCTIONS[job]
    if isinstance(entry, str):
        import importlib

        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry


def _staged_name(name: str, layer: str, county: str) -> str:
    """The staging layer of a job's staged frame ``name`` (see ``STAGED``)."""
    return stage_layer(layer if name == "grids" else f"{name}__{layer}", county)


def _already_done(store: Store, job: str, layer: str, county: str,
                  fingerprint: str) -> dict | None:
    """The summary of the county's last ``done`` run with this fingerprint, if any, and
    only if every staging layer it wrote is still there."""
    if not store.has(LEDGER):
        return None
    rows = store.read(LEDGER, where={"job": job, "layer": layer, "county": county})
    if not len(rows):
        return None
    last = rows.sort_values("finished_at", kind="stable").iloc[-1]
    if last["status"] != "done" or last["fingerprint"] != fingerprint:
        return None
    summary = json.loads(last["summary"] or "{}")
    # Rows written before the summary listed its staging layers: partition's grids.
    staged = summary.get("staged", ["grids"] if job == "partition" else [])
    if any(not store.has(_staged_name(name, layer, county)) for name in staged):
        return None
    return summary


def _ledger_row(job: str, layer: str, county: str, fingerprint: str, status: str,
                error: str = "", summary: dict | None = None) -> pd.DataFrame:
    return pd.DataFrame({
        "job": [job], "layer": [layer], "county": [county], "fingerprint": [fingerprint],
        "status": [status], "error": [error[:2000]],
        "summary": [json.dumps(summary or {}, ensure_ascii=False, default=str)],
        "finished_at": [dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")],
    })


def _injected_faults(params: dict, county: str) -> None:
    """Test hooks: a county that always fails, and a worker killed once mid-task."""
    if county in params.get("fail_counties", ()):
        raise RuntimeError(f"injected failure for county {county}")
    kill = params.get("kill_once")
    if kill and county == kill["county"]:
        marker = Path(kill["marker"])
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL)  # only the first attempt
        except FileExistsError:
            return
        os.close(fd)
        os._exit(1)  # the worker process dies, as on a lost machine


def run_county(store_url: str, job: str, county: str, params: dict) -> CountyResult:
    """Run ``job`` for one county: read its inputs from the store, compute, write back.

    Parameters
    ----------
    store_url
        The store's address (a PostGIS URL when workers are on several machines).
    job
        One of ``JOBS``.
    county
        The county's 6-digit code (the ``county`` column of every layer).
    params
        The job's parameters (JSON-like), each optional:

        * every job: ``institution``, ``layer`` (the grids layer, default
          ``grids__<institution>``), ``out`` (a folder, per county ``<out>/<county>/``),
          ``resume`` (default True);
        * partition: ``levels`` (``METHOD[:SOURCE]`` each), ``target_households``,
          ``tolerance``, ``cell_size``, ``shape``, ``min_area``, ``capacity``,
          ``assign_staff`` (default True), ``seed``; with ``out``, ``report.json``;
        * validate: ``no_territory``, ``gap_width``, ``sliver_area``, ``snap_tolerance``;
          with ``out``, ``validation.json`` and ``validation-problems.geojson``;
        * coverage: ``grids`` (grid layers), ``radii`` (``{"urban": m, "rural": m}``),
          ``max_institutions``, ``year``, ``period``, ``data_date``,
          ``include_households``, ``report_files`` (with ``out``: the whole report set
          instead of ``coverage.json``), ``store_suffix`` (store ``coverage_gaps`` and
          ``service_blanks`` + suffix, merged over the counties);
        * atlas: ``level``, ``volumes``, ``show_phones``, ``date``, ``limit``.

    Returns
    -------
    CountyResult
        ``done`` or ``skipped`` (same fingerprint done before); errors are raised, so the
        engine can retry them.
    """
    started = time.perf_counter()
    read, compute = _job(job)
    layer = target_layer(job, params)
    with open_store(store_url) as store:
        inputs = read(store, county, params)
        fingerprint = _fingerprint(job, county, params, inputs)
        if params.get("resume", True):
            summary = _already_done(store, job, layer, county, fingerprint)
            if summary is not None:
                return CountyResult(county, job, "skipped", time.perf_counter() - started,
                                    fingerprint, summary=summary)
        _injected_faults(params, county)
        frame, summary = compute(county, inputs, params)
        if frame is not None:
            summary = {**summary, "staged": sorted(frame)}
        # Staging layers first: a ledger row is appended only once they are all there. A
        # staging layer this attempt does not write (none of its kind this time) goes, so
        # that the merge never takes an older attempt's.
        for name in STAGED.get(job, ()):
            stage = _staged_name(name, layer, county)
            if name in (frame or {}):
                store.write(stage, frame[name])
            elif store.has(stage):
                store.delete(stage)
        # Appended after the result is written: a ledger row always has its result.
        store.append(LEDGER, _ledger_row(job, layer, county, fingerprint, "done",
                                         summary=summary))
    return CountyResult(county, job, "done", time.perf_counter() - started, fingerprint,
                        summary=summary)


# ----------------------------------------------------------------------------- province


def _is_postgis(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def check_scheduler_store(url: str, scheduler) -> None:
    """Refuse a scheduler with a store its workers cannot share (``StoreError``)."""
    if scheduler is not None and scheduler != "" and not _is_postgis(url):
        raise StoreError(
            f"--scheduler needs the PostGIS store: {url} is a GeoPackage file on this "
            "machine, which workers elsewhere cannot reach and SQLite lets only one "
            "process write at a time. Copy the layers to PostGIS (gisgrid export/import "
            "or `--store postgresql://…`) and run again.")


def _client(scheduler):
    """A ``dask.distributed.Client`` for an address, or the client given."""
    from dask.distributed import Client

    if isinstance(scheduler, Client):
        return scheduler, False
    return Client(scheduler, timeout="30s"), True


def _county_table(store: Store, counties: Sequence[str] | None
                  ) -> tuple[pd.DataFrame, bool]:
    """The counties to run (code, name) and whether the territory is one county without
    a ``county`` column (read whole, see ``WHOLE``)."""
    territory = store.read("territory")
    whole = "county" not in territory.columns
    if whole and len(territory) != 1:
        raise InputError([Problem(
            "territory", None, None,
            f"has {len(territory)} rows and no county column: running county by "
            "county needs every layer's county code in a county column (as `gisgrid "
            "province sample` writes them; a territory of one row is run as one county). "
            "Without --scheduler the plain commands work on the whole territory in this "
            "process")])
    territory = pd.DataFrame(territory[["code", "name"]])
    territory["code"] = territory["code"].astype(str)
    if counties:
        unknown = sorted(set(counties) - set(territory["code"]))
        if unknown:
            raise StoreError(f"counties {unknown} are not in layer territory")
        territory = territory[territory["code"].isin(counties)]
    return territory.sort_values("code").reset_index(drop=True), whole


#: The layers each job reads county by county (besides its grids layers).
_COUNTY_INPUTS = {
    "partition": ("territory", "townships", "units", "households", "outlets", "staff"),
    "validate": ("territory", "households", "staff"),
    "coverage": ("territory", "households", "outlets", "devices", "units", "townships",
                 "staff", "ledger"),
    "atlas": ("territory", "townships", "units", "outlets", "devices", "staff", "households",
              "ledger"),
}


def _grid_inputs(job: str, params: dict) -> list[str]:
    if job == "partition":
        return []
    if job == "coverage" and "grids" in params:
        return list(params["grids"])
    return [target_layer(job, params)]


def _has_county(store: Store, name: str) -> bool:
    """Whether layer ``name`` has a ``county`` column (probed with a filter that matches
    no row: a missing column is the store's "no column 'county' to filter on")."""
    try:
        store.read(name, where={"county": ""}, columns=[])
    except StoreError as exc:
        if "no column 'county'" in str(exc):
            return False
        raise
    return True


def _check_county_columns(store: Store, job: str, params: dict) -> None:
    """Refuse, before any task starts, a layer the job would read county by county
    but which has no ``county`` column (every task would fail on it)."""
    names = [n for n in (*_COUNTY_INPUTS[job], *_grid_inputs(job, params)) if store.has(n)]
    lacking = [n for n in dict.fromkeys(names) if not _has_county(store, n)]
    if lacking:
        raise InputError([Problem(
            name, None, None,
            "has no county column: the territory has a county column, so every layer is read "
            "county by county and needs one (`gisgrid partition --scheduler` and `gisgrid "
            "province partition` write it on the grids they make)") for name in lacking])


def _required_layers(job: str, params: dict) -> list[str]:
    """The layers a job cannot run without (checked once, before any task starts)."""
    if job == "partition":
        return ["territory"]
    if job == "coverage":
        return ["territory", "households", *(params.get("grids") or [])]
    return ["territory", *_grid_inputs(job, params)]


def run_province(
    store: str | None,
    job: str,
    params: dict | None = None,
    *,
    scheduler=None,
    counties: Sequence[str] | None = None,
    retries: int = 2,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> ProvinceRun:
    """Run ``job`` for every county of the store's territory, one task per county.

    Parameters
    ----------
    store
        The store address (see ``layers.store.resolve_store_url``).
    job
        ``partition``, ``validate``, ``coverage`` or ``atlas``.
    params
        The job's parameters (see ``run_county``).
    scheduler
        None: run in this process. An address (``tcp://host:8786``) or a
        ``dask.distributed.Client``: one task per county on that cluster (PostGIS only).
    counties
        Only these county codes (default: every row of ``territory``).
    retries
        How many times the cluster re-runs a county whose task failed or whose worker died.
    progress
        Show a terminal progress bar (tqdm, on stderr).
    echo
        Where to print the dashboard link (default: stderr).

    Returns
    -------
    ProvinceRun
        Per county: done, skipped or failed (with the error); for ``partition`` the
        merged layer's size, for ``validate`` the seam check.
    """
    from tqdm import tqdm

    if job not in JOBS:
        raise ValueError(f"run_province: job {job!r} is not one of {JOBS}")
    params = dict(params or {})
    echo = echo or (lambda text: print(text, file=sys.stderr))
    url = resolve_store_url(store)
    check_scheduler_store(url, scheduler)
    started = time.perf_counter()
    with open_store(url) as source:
        table, whole = _county_table(source, counties)
        for name in _required_layers(job, params):
            if not source.has(name):
                raise LayerNotFound(name, source.url)
        if not whole:
            _check_county_columns(source, job, params)
    if whole:
        params[WHOLE] = True
    codes, names = table["code"].tolist(), dict(zip(table["code"], table["name"], strict=True))
    layer = target_layer(job, params)
    results: dict[str, CountyResult] = {}
    staged: dict[str, tuple] = {}
    bar = tqdm(total=len(codes), desc=f"{job} counties", unit="county", file=sys.stderr,
               disable=not progress)
    dashboard = None

    def record(result: CountyResult) -> None:
        result.name = names.get(result.county, "")
        results[result.county] = result
        bar.set_postfix_str(f"{result.county} {result.status}")
        bar.update(1)

    if scheduler is None:
        for code in codes:
            try:
                record(run_county(url, job, code, params))
            except Exception as exc:  # one county's failure must not stop the province
                record(CountyResult(code, job, "failed", error=_describe(exc)))
    else:
        from dask.distributed import as_completed

        client, own = _client(scheduler)
        try:
            dashboard = client.dashboard_link
            echo(f"Dask dashboard: {dashboard}")
            # pure=False: a re-run must run again (resume is decided by the ledger, which
            # sees the inputs); keys name the county so the dashboard shows which is which.
            token = f"{time.time_ns():x}"
            futures = client.map(run_county, [url] * len(codes), [job] * len(codes), codes,
                                 [params] * len(codes), key=[f"{job}-{c}-{token}" for c in codes],
                                 retries=retries, pure=False)
            county_of = {f.key: c for f, c in zip(futures, codes, strict=True)}
            with open_store(url) as reader:
                for future in as_completed(futures):
                    code = county_of[future.key]
                    if future.status == "finished":
                        record(future.result())
                        if job == "partition" and results[code].status != "failed":
                            # Read now, while the other counties run: the merge after
                            # the last one is serial, the waiting here is not.
                            try:
                                staged[code] = _read_staged(reader, layer, code)
                            except (StoreError, OSError):
                                pass  # the merge reads it again, and reports it
                    else:
                        record(CountyResult(code, job, "failed",
                                            error=_describe(future.exception())))
                    future.release()
        finally:
            if own:
                client.close()
    bar.close()

    ordered = [results[c] for c in codes]
    failed = [r for r in ordered if r.status == "failed"]
    run = ProvinceRun(job, layer, ordered, 0.0, dashboard=dashboard)
    finishing = time.perf_counter()
    with open_store(url) as target:
        if failed:
            target.append(LEDGER, pd.concat([_ledger_row(job, layer, r.county, "", "failed",
                                                         r.error) for r in failed],
                                            ignore_index=True))
        done = [r.county for r in ordered if r.status != "failed"]
        if job == "partition":
            run.merged = _merge(target, layer, done, keep_county=not whole, staged=staged)
        if job == "coverage" and params.get("store_suffix") is not None:
            run.stored = _merge_coverage(target, layer, done, str(params["store_suffix"]))
        if job == "validate" and not failed and not whole:
            # One county alone has no seams: its own check covered its border.
            run.seams = validate_seams(
                target, layer, territory=not params.get("no_territory"),
                out=Path(params["out"]) if params.get("out") else None,
                **_tolerances(params))
    run.finish_seconds = time.perf_counter() - finishing
    run.seconds = time.perf_counter() - started
    return run


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _merge_coverage(store: Store, layer: str, counties: list[str], suffix: str) -> dict:
    """Store ``coverage_gaps<suffix>`` and ``service_blanks<suffix>``, each the staging
    layers of ``counties`` (code order) in one write; a layer no county has is left as
    it was, as ``gisgrid coverage`` does."""
    stored = {}
    for name, staged in _COVERAGE_STAGED.items():
        stages = [_staged_name(staged, layer, c) for c in counties]
        frames = [store.read(n) for n in stages if store.has(n)]
        if frames:
            merged = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True),
                                      geometry="geometry", crs=STORAGE_CRS)
            store.write(name + suffix, merged)
            stored[name + suffix] = len(merged)
    return stored


def _read_staged(store: Store, layer: str, county: str) -> tuple:
    """A county's staged grids and (if staged) its staff's grids, as ``_merge`` uses them."""
    staff = stage_layer(f"staff__{layer}", county)
    return (store.read(stage_layer(layer, county)),
            pd.DataFrame(store.read(staff, columns=["id", "grids"]))
            if store.has(staff) else None)


def _merge(store: Store, layer: str, counties: list[str], keep_county: bool = True,
           staged: dict | None = None) -> int:
    """Replace ``layer`` by the staging layers of ``counties`` (code order), at once.
    ``keep_county=False`` (one county read whole) leaves out the ``county`` column.
    ``staged``: counties' staging layers already read (``_read_staged``) while the other
    counties were still running, so that the serial merge does not wait for them."""
    staged = dict(staged or {})
    for county in counties:
        if county not in staged:
            staged[county] = _read_staged(store, layer, county)
    frames = [staged[c][0] for c in counties if len(staged[c][0])]
    if not frames:
        return 0
    staff_frames = [staged[c][1] for c in counties if staged[c][1] is not None]
    merged = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry",
                              crs=STORAGE_CRS)
    territory = store.read("territory", columns=["code"])
    merged["geometry"] = stitch_seams(merged.geometry.to_numpy(),
                                      merged["county"].astype(str).to_numpy(),
                                      territory.geometry.to_numpy(),
                                      territory["code"].astype(str).to_numpy(),
                                      merged["level"].to_numpy())
    if not keep_county:
        merged = merged.drop(columns="county")
    store.write(layer, merged)
    if staff_frames and store.has("staff"):
        # The grids each of the counties' staff now holds (assign_staff changes nothing
        # else); rows stay in place, so the staff layer is otherwise as it was.
        assigned = pd.concat(staff_frames, ignore_index=True)
        held = pd.Series(assigned["grids"].to_numpy(), index=assigned["id"].to_numpy())
        staff = store.read("staff")
        mine = staff["id"].isin(held.index)
        staff["grids"] = staff["grids"].astype(object)
        staff.loc[mine, "grids"] = held.reindex(staff.loc[mine, "id"]).to_numpy()
        store.write("staff", staff)
    return len(merged)


#: How near (degrees, about 1 mm) a neighbour's vertex must be to a seam to be shared.
_SEAM_TOLERANCE = 1e-8


def stitch_seams(geoms: np.ndarray, counties: np.ndarray, borders: np.ndarray,
                 border_counties: np.ndarray, levels: np.ndarray | None = None,
                 tolerance: float = _SEAM_TOLERANCE) -> np.ndarray:
    """Make the grids on both sides of each county seam share every vertex.

    Each county is partitioned on its own, and the engine nodes the county's border with
    its internal lines (and rounds to its precision grid), so a vertex may appear on one
    side of a seam only (a T-junction) or a rounding error away from its twin: no gap, no
    overlap, yet edges that do not match exactly. A *seam vertex* is a grid vertex within
    ``tolerance`` of the border (``borders``, the counties' polygons, of
    ``border_counties``) of a county other than its grid's (``counties``): it lies on
    the neighbour's grids too, since a county's grids cover it. Each seam vertex is
    given one representative — the first, by county code and position, of the seam
    vertices within ``tolerance`` of it — and each grid near a representative of a seam
    vertex of its own level (``levels``; default: all one level) that it does not
    already have as a vertex is snapped to those representatives (GEOS snapping moves
    its vertices onto them and inserts the missing ones into its edges). Each level
    becomes edge-matched across the seams; a location has one representative at every
    level, so children stay inside their parents. Grids that already match are not
    touched.
    """
    geoms = np.asarray(geoms, dtype=object).copy()
    # County codes as integers in code order, shared by grids and borders.
    counties, border_counties = (np.asarray(counties, dtype=str),
                                 np.asarray(border_counties, dtype=str))
    names = np.unique(np.concatenate([counties, border_counties]))
    grid_county = np.searchsorted(names, counties)
    # County borders as short segments (so that each query meets only the few near
    # it), each with its county.
    parts, part_of = shapely.get_parts(borders, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    ring_xy, ring_idx = shapely.get_coordinates(rings, return_index=True)
    same = ring_idx[1:] == ring_idx[:-1]
    segment_county = np.searchsorted(names, border_counties)[
        part_of[ring_part[ring_idx[:-1][same]]]]
    segments = shapely.linestrings(np.stack([ring_xy[:-1][same], ring_xy[1:][same]], axis=1))
    coords, owner = shapely.get_coordinates(geoms, return_index=True)
    # Most vertices lie far from any border; a numpy cell test drops them before GEOS
    # sees a single point (on a 20-county province, 1.0 M vertices → 0.21 M candidates).
    candidates = np.flatnonzero(_near_segments(coords, ring_xy, same))
    if not len(candidates):
        return geoms
    cand_owner, cand_xy = owner[candidates], coords[candidates]
    near_grids = np.unique(cand_owner)
    # Each grid's level as one bit, so that a point can say at which levels it is a
    # vertex.
    level_bit = (np.ones(len(geoms), dtype=np.int64) if levels is None else
                 np.left_shift(1, np.unique(np.asarray(levels), return_inverse=True)[1]
                               ).astype(np.int64))
    # One point per distinct (county, x, y): the levels and neighbouring grids of a
    # county repeat each border vertex (0.21 M → 0.07 M), ordered by county, x, y.
    county, xy, bits = grid_county[cand_owner], cand_xy, level_bit[cand_owner]
    order = np.lexsort((xy[:, 1], xy[:, 0], county))
    county, xy, bits = county[order], xy[order], bits[order]
    first = np.ones(len(xy), dtype=bool)
    first[1:] = (county[1:] != county[:-1]) | (xy[1:] != xy[:-1]).any(axis=1)
    point_of = np.cumsum(first) - 1
    county, xy = county[first], xy[first]
    point_bits = np.zeros(len(xy), dtype=np.int64)
    np.bitwise_or.at(point_bits, point_of, bits)
    point_idx, segment_idx = shapely.STRtree(segments).query(
        shapely.points(xy), predicate="dwithin", distance=tolerance)
    seam = np.unique(point_idx[segment_county[segment_idx] != county[point_idx]])
    if not len(seam):
        return geoms
    # Representatives: in that order, each seam vertex takes the first one near it.
    seam_xy = xy[seam]
    seam_points = shapely.points(seam_xy)
    a, b = shapely.STRtree(seam_points).query(seam_points, predicate="dwithin",
                                              distance=tolerance)
    rep = np.arange(len(seam))
    np.minimum.at(rep, a, b)
    targets, rep = np.unique(rep, return_inverse=True)
    target_xy = seam_xy[targets]
    target_bits = np.zeros(len(targets), dtype=np.int64)
    np.bitwise_or.at(target_bits, rep, point_bits[seam])
    # Each grid near the border with the representatives near it of its level that it
    # does not have as vertices (sorted by grid, then x, then y): snapping to a vertex
    # it already has would change nothing and cost as much. A grid that has them all is
    # left as it is.
    grid_idx, target_idx = shapely.STRtree(shapely.points(target_xy)).query(
        geoms[near_grids], predicate="dwithin", distance=tolerance)
    grid_idx = near_grids[grid_idx]
    level = (target_bits[target_idx] & level_bit[grid_idx]) != 0
    grid_idx, pair_xy = grid_idx[level], target_xy[target_idx[level]]
    order = np.lexsort((pair_xy[:, 1], pair_xy[:, 0], grid_idx))
    grid_idx, pair_xy = grid_idx[order], pair_xy[order]
    missing = ~np.isin(_rows(grid_idx, pair_xy), _rows(cand_owner, cand_xy))
    grid_idx, pair_xy = grid_idx[missing], pair_xy[missing]
    if not len(grid_idx):
        return geoms
    snapped, which = np.unique(grid_idx, return_inverse=True)
    snap_to = shapely.multipoints(shapely.points(pair_xy), indices=which)
    geoms[snapped] = shapely.snap(geoms[snapped], snap_to, tolerance)
    return geoms


def _rows(index: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(index, x, y) rows as single comparable values, for ``np.isin``."""
    rows = np.empty(len(index), dtype=[("i", "<i8"), ("x", "<f8"), ("y", "<f8")])
    rows["i"], rows["x"], rows["y"] = index, xy[:, 0], xy[:, 1]
    return rows.view(np.dtype((np.void, rows.dtype.itemsize)))


#: The cell (degrees, about 200 m) of the test that keeps only the vertices near a border.
_BORDER_CELL = 0.002


def _near_segments(coords: np.ndarray, ring_xy: np.ndarray, same: np.ndarray,
                   cell: float = _BORDER_CELL) -> np.ndarray:
    """Which of ``coords`` lie in a cell a border segment crosses, or next to one (a
    superset of the vertices on a border; exact tests follow). The segments run from
    ``ring_xy[i]`` to ``ring_xy[i + 1]`` where ``same[i]``; they are sampled at half a
    cell, so every cell a segment crosses holds a sample or neighbours one."""
    starts, ends = ring_xy[:-1][same], ring_xy[1:][same]
    steps = np.maximum(1, np.ceil(np.hypot(*(ends - starts).T) / (cell / 2))).astype(np.int64)
    first = np.repeat(np.cumsum(steps) - steps, steps)
    fraction = (np.arange(steps.sum()) - first) / np.repeat(steps, steps)
    samples = np.repeat(starts, steps, axis=0) + (
        np.repeat(ends - starts, steps, axis=0) * fraction[:, None])
    origin = np.minimum(coords.min(axis=0), samples.min(axis=0)) - cell
    width = int(np.ceil((max(coords[:, 0].max(), samples[:, 0].max()) - origin[0]) / cell)) + 2

    def key(xy: np.ndarray) -> np.ndarray:
        ij = np.floor((xy - origin) / cell).astype(np.int64)
        return ij[:, 0] * width + ij[:, 1]

    occupied = np.unique(key(samples))
    around = np.array([dx * width + dy for dx in (-1, 0, 1) for dy in (-1, 0, 1)])
    occupied = np.unique((occupied[:, None] + around[None, :]).ravel())
    keys = key(coords)
    at = np.minimum(np.searchsorted(occupied, keys), len(occupied) - 1)
    return occupied[at] == keys


def validate_seams(store: Store, layer: str, *, territory: bool = True,
                   out: Path | None = None, **tolerances) -> dict:
    """Check the whole province's level-1 grids against its counties: no gap and no
    overlap anywhere, in particular along the seams between counties (which no
    per-county check sees).

    ``territory=False`` checks the grids' union alone (gaps are then its holes);
    ``tolerances`` go to ``validate_grids`` (``gap_width``, ``sliver_area``,
    ``snap_tolerance``); with ``out``, ``seams.json`` and ``seams-problems.geojson`` are
    written there.
    """
    from gis_grid.topology import validate_grids

    grids = store.read(layer, where={"level": 1}) if store.has(layer) else None
    if grids is None or not len(grids):
        return {"ok": False, "problems": 1, "kinds": {"missing": 1}}
    counties = store.read("territory")
    # Geometry only: staffing is checked per county.
    grids = grids.drop(columns=["worker", "manager"], errors="ignore")
    report = validate_grids(grids, territory=counties if territory else None, **tolerances)
    if out is not None:
        _write_validation(report, out, "seams")
    kinds = report.problems["kind"].value_counts().to_dict() if len(report.problems) else {}
    return {"ok": bool(report.ok), "problems": int(len(report.problems)),
            "kinds": {str(k): int(v) for k, v in kinds.items()},
            "grids": int(len(grids)), "counties": int(len(counties))}


def results_frame(run: ProvinceRun) -> pd.DataFrame:
    """The run's county results as a table (for JSON output and tests)."""
    return pd.DataFrame([asdict(r) for r in run.counties])



# ----------------------------------------------------------------------------- cleaning


@dataclass
class Cleaned:
    """What ``clean_runs`` removed (or, with ``dry_run``, would remove)."""

    layers: list[str]  # staging layers
    rows: dict[str, int]  # ledger rows per "job layer"
    atomic: bool = False  # all in one transaction (PostGIS)
    dry_run: bool = False

    @property
    def empty(self) -> bool:
        return not self.layers and not self.rows

    def text(self) -> str:
        """A report for people: every layer and the ledger rows, by job and layer."""
        if self.empty:
            return "nothing to clean: no staging layer and no ledger row matches"
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {len(self.layers)} staging layer{'s' if len(self.layers) != 1 else ''}"
                 + (":" if self.layers else "")]
        lines += [f"  {name}" for name in self.layers]
        total = sum(self.rows.values())
        lines.append(f"{verb} {total} row{'s' if total != 1 else ''} of {LEDGER}"
                     + (":" if self.rows else ""))
        lines += [f"  {key}: {n}" for key, n in self.rows.items()]
        if not self.dry_run:
            lines.append("a re-run of these jobs recomputes every county (nothing is left to "
                         "resume from)")
        return "\n".join(lines)


def staging_layers(names, layer: str, job: str | None = None) -> list[str]:
    """The staging layers of ``layer``'s runs (of ``job``, else of every job) among the
    layer ``names``: ``<layer>__c<code>``, ``staff__<layer>__c<code>`` … (see
    ``STAGED``). The layer itself and every other layer are never among them."""
    jobs = [job] if job else list(STAGED)
    prefixes = sorted({layer if name == "grids" else f"{name}__{layer}"
                       for j in jobs for name in STAGED.get(j, ())})
    if not prefixes:
        return []
    pattern = re.compile("(?:" + "|".join(map(re.escape, prefixes)) + rf")__c{_COUNTY_CODE}")
    return sorted(n for n in names if pattern.fullmatch(n))


@contextmanager
def _one_transaction(store: Store) -> Iterator[bool]:
    """Make the store changes inside one all-or-nothing transaction where the store can.

    On PostGIS every store operation runs in its own transaction on the store's one
    connection; inside an outer transaction on that connection psycopg turns each into
    a savepoint, so the whole block commits or rolls back together (yields True). The
    GeoPackage store opens a connection per operation, so each change stands alone
    (yields False).
    """
    conn, lock = getattr(store, "_conn", None), getattr(store, "_lock", None)
    if conn is None or lock is None or not hasattr(conn, "transaction"):
        yield False
        return
    with lock, conn.transaction():
        yield True


def clean_runs(store: Store, *, layer: str | None = None, job: str | None = None,
               dry_run: bool = False) -> Cleaned:
    """Remove the staging layers and ``fanout_runs`` rows of finished runs.

    Parameters
    ----------
    store
        An open store.
    layer
        The runs' grids layer (``grids__nsh``); None: every layer the ledger names and
        every staging layer (``…__c<code>``) in the store.
    job
        Only this job's rows and staging layers (``partition`` stages grids and staff,
        ``coverage`` its stored layers; ``validate`` and ``atlas`` stage nothing).
    dry_run
        Only say what would be removed.

    Returns
    -------
    Cleaned
        The staging layers and the ledger rows (per job and layer) removed.

    The live layers (``<layer>``, ``staff``, ``coverage_gaps…``) are never touched. On
    PostGIS everything goes in one transaction. On a GeoPackage the ledger rows go first,
    in one write (from then on nothing resumes from the staging layers), then the
    staging layers one by one; if that is interrupted, cleaning again removes the rest.
    Run it when no run of the layer is going: a row a task appends meanwhile may be lost
    (its county is then recomputed next time, nothing worse).
    """
    if job is not None and job not in JOBS:
        raise ValueError(f"clean_runs: job {job!r} is not one of {JOBS}")
    names = [info.name for info in store.layers()]
    ledger = store.read(LEDGER) if LEDGER in names else None
    if layer is not None:
        layers = [layer]
    else:
        # Every layer the ledger names, and those whose staging layers are left without
        # ledger rows (a run killed before its rows, a clean interrupted on a GeoPackage).
        found = set() if ledger is None else set(ledger["layer"].astype(str))
        for name in filter(is_staging, names):
            base = name.rsplit("__c", 1)[0]
            found.add(base)
            for prefix in {n for job_names in STAGED.values() for n in job_names} - {"grids"}:
                found.add(base.removeprefix(f"{prefix}__"))
        layers = sorted(found)
    stages = sorted({name for one in layers for name in staging_layers(names, one, job)})
    rows: dict[str, int] = {}
    mine = None
    if ledger is not None and len(ledger):
        mine = ledger["layer"].astype(str).isin(layers).to_numpy(copy=True)
        if job is not None:
            mine &= (ledger["job"].astype(str) == job).to_numpy()
        counts = ledger[mine].groupby(["job", "layer"], sort=True).size()
        rows = {f"{j} {lay}": int(n) for (j, lay), n in counts.items()}
    cleaned = Cleaned(stages, rows, dry_run=dry_run)
    if dry_run or cleaned.empty:
        return cleaned
    with _one_transaction(store) as atomic:
        if rows:
            if mine.all():
                store.delete(LEDGER)
            else:
                store.write(LEDGER, ledger[~mine].reset_index(drop=True))
        for name in stages:
            store.delete(name)
    cleaned.atomic = atomic
    return cleaned
