"""Run a job over a province: one task per county, in this process or on Dask.

Without a scheduler the tasks run one after another in this process; with one
(``tcp://host:port`` or a ``dask.distributed.Client``) they are mapped on the cluster —
an existing engine, Dask distributed, not a home-made pool — with retries, so a failed
or killed worker's county is run again on another worker. The client then merges the
staging layers (``layers.fanout.merge``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from gis_grid.errors import InputError, LayerNotFound, Problem, StoreError
from gis_grid.jobs import Job
from gis_grid.naming import LEDGER, target_layer
from layers.fanout.county import WHOLE, CountyResult, run_county
from layers.fanout.ledger import ledger_row
from layers.fanout.merge import finish, merge, read_staged
from layers.runner import available_layers
from layers.store import Store, open_store, resolve_store_url


@dataclass
class ProvinceRun:
    """What ``run_province`` did: one ``CountyResult`` per county, in code order."""

    job: str
    layer: str
    counties: list[CountyResult]
    seconds: float
    dashboard: str | None = None
    merged: int | None = None  # rows in the merged target layer (partition)
    stored: dict | None = None  # other layers merged: layer → rows
    seams: dict | None = None  # the whole territory's check (validate: the seams)
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
            if c.status != "failed" and not c.summary.get("ok", True):
                lines.append(f"  {c.county} {c.name}: {c.summary.get('problems')} problems")
        for c in self.failed:
            lines.append(f"  FAILED {c.county} {c.name}: {c.error}")
        return "\n".join(lines)


def is_postgis(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def check_scheduler_store(url: str, scheduler) -> None:
    """Refuse a scheduler with a store its workers cannot share (``StoreError``)."""
    if scheduler is not None and scheduler != "" and not is_postgis(url):
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


def county_table(store: Store, counties: Sequence[str] | None) -> tuple[pd.DataFrame, bool]:
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


def _check_layers(store: Store, job: Job, params: dict, whole: bool) -> None:
    """Before any task starts: the layers the job cannot run without are there, and
    (county by county) every layer it reads by county has a ``county`` column."""
    available = available_layers(store)
    reads = job.reads(params, available)
    for read in reads:
        if read.required and read.name not in available:
            raise LayerNotFound(read.name, store.url)
    if whole:
        return
    names = [r.name for r in reads if r.scope == "county" and r.name in available]
    lacking = [n for n in dict.fromkeys(names) if not _has_county(store, n)]
    if lacking:
        raise InputError([Problem(
            name, None, None,
            "has no county column: the territory has a county column, so every layer is read "
            "county by county and needs one (`gisgrid partition --scheduler` and `gisgrid "
            "province partition` write it on the grids they make)") for name in lacking])


def describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_province(
    store: str | None,
    job: Job,
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
        The job (``gis_grid.jobs.PARTITION``, ``VALIDATE``, ``COVERAGE``,
        ``maps.jobs.ATLAS`` …).
    params
        The job's parameters, plus ``layer`` (the grids layer, default
        ``grids__<institution>``), ``out`` (a folder, per county ``<out>/<county>/``)
        and ``resume`` (default True).
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
        Per county: done, skipped or failed (with the error); the merged layers' sizes;
        the whole territory's check (validate's seams).
    """
    from tqdm import tqdm

    # One thread per task: the work is GEOS-bound and a worker runs one task per core.
    params = {**(params or {}), "threads": 1}
    echo = echo or (lambda text: print(text, file=sys.stderr))
    url = resolve_store_url(store)
    check_scheduler_store(url, scheduler)
    started = time.perf_counter()
    with open_store(url) as source:
        table, whole = county_table(source, counties)
        _check_layers(source, job, params, whole)
    if whole:
        params[WHOLE] = True
    codes, names = table["code"].tolist(), dict(zip(table["code"], table["name"], strict=True))
    layer = target_layer(params)
    results: dict[str, CountyResult] = {}
    staged: dict[str, dict] = {}
    bar = tqdm(total=len(codes), desc=f"{job.name} counties", unit="county", file=sys.stderr,
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
                record(CountyResult(code, job.name, "failed", error=describe(exc)))
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
                                 [params] * len(codes),
                                 key=[f"{job.name}-{c}-{token}" for c in codes],
                                 retries=retries, pure=False)
            county_of = {f.key: c for f, c in zip(futures, codes, strict=True)}
            with open_store(url) as reader:
                for future in as_completed(futures):
                    code = county_of[future.key]
                    if future.status == "finished":
                        record(future.result())
                        if job.stages and results[code].status != "failed":
                            # Read now, while the other counties run: the merge after
                            # the last one is serial, the waiting here is not.
                            try:
                                staged[code] = read_staged(reader, job, layer, code)
                            except (StoreError, OSError):
                                pass  # the merge reads it again, and reports it
                    else:
                        record(CountyResult(code, job.name, "failed",
                                            error=describe(future.exception())))
                    future.release()
        finally:
            if own:
                client.close()
    bar.close()

    ordered = [results[c] for c in codes]
    failed = [r for r in ordered if r.status == "failed"]
    run = ProvinceRun(job.name, layer, ordered, 0.0, dashboard=dashboard)
    finishing = time.perf_counter()
    with open_store(url) as target:
        if failed:
            target.append(LEDGER, pd.concat([ledger_row(job.name, layer, r.county, "",
                                                        "failed", r.error) for r in failed],
                                            ignore_index=True))
        done = [r.county for r in ordered if r.status != "failed"]
        if job.stages:
            stored = merge(target, job, params, layer, done, staged=staged)
            if "grids" in job.stages:
                run.merged = stored.pop(layer, 0)
            run.stored = stored or None
        if job.finish is not None and not failed and not whole:
            # One county alone has no seams: its own check covered its border.
            run.seams = finish(target, job, params, params.get("out")).summary
    run.finish_seconds = time.perf_counter() - finishing
    run.seconds = time.perf_counter() - started
    return run


def results_frame(run: ProvinceRun) -> pd.DataFrame:
    """The run's county results as a table (for JSON output and tests)."""
    from dataclasses import asdict

    return pd.DataFrame([asdict(r) for r in run.counties])
