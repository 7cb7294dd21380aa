"""Run a job against a store (ARCHITECTURE.md, "The job model").

A job (``gis_grid.jobs``) says what it reads, computes and writes; this module does the
reading and the writing: the layers from the store (the whole territory, or one county's
rows), the outcome's layers back into the store (each all-or-nothing) and its files into
a folder (JSON, CSV + XLSX with Chinese headers, GeoJSON, rendered files, a workbook or
CSV under headers the job gives). The command line runs every job through
:func:`run_job`; the fan-out (``layers.fanout``) runs :func:`read_inputs` per county and
stages the layers itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gis_grid.errors import LayerNotFound
from gis_grid.jobs import GeoJSON, Job, Outcome, Read, Rendered, Sheets, Tables
from layers.store import Store

__all__ = ["Ran", "available_layers", "read_inputs", "run_job", "store_outcome",
           "write_files"]


@dataclass
class Ran:
    """One run of a job: its outcome, the files written and the layers stored."""

    outcome: Outcome
    written: list[Path] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)


def available_layers(store: Store) -> set[str]:
    """The names of the layers the store holds."""
    return {info.name for info in store.layers()}


def read_inputs(store: Store, reads: list[Read], *, available: Collection[str],
                county: str | None = None,
                bbox: tuple[float, float, float, float] | None = None) -> dict:
    """The frames ``reads`` names, by their keys: the whole layers, or with ``county``
    the county's rows (``scope="county"``) and the features in ``bbox``
    (``scope="near"``). A missing optional layer is None; a missing required one raises
    ``LayerNotFound``."""
    inputs = {}
    for read in reads:
        if read.name not in available:
            if read.required:
                raise LayerNotFound(read.name, store.url)
            inputs[read.as_key] = None
            continue
        where = dict(read.where or {})
        options = {}
        if county is not None and read.scope == "county":
            where["county"] = county
        if read.scope == "near" and bbox is not None:
            options["bbox"] = bbox
        inputs[read.as_key] = store.read(read.name, where=where or None, **options)
    return inputs


def write_files(outcome: Outcome, folder: str | Path) -> list[Path]:
    """Write the outcome's files into ``folder`` (made if missing), in their order;
    returns the paths written."""
    from layers.reports import write_geojson, write_json, write_sheets, write_tables

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, output in outcome.files.items():
        path = folder / name
        if isinstance(output, str):
            path.write_text(output, encoding="utf-8")
            written.append(path)
        elif isinstance(output, Mapping):
            written.append(write_json(output, path))
        elif isinstance(output, Tables):
            written += write_tables(folder, output.tables, meta=output.meta,
                                    stem=output.stem)
        elif isinstance(output, GeoJSON):
            if output.engine == "ogr":
                output.frame.to_file(path, driver="GeoJSON")
                written.append(path)
            else:
                written.append(write_geojson(output.frame, path))
        elif isinstance(output, Rendered):
            written += output.render(folder)
        elif isinstance(output, Sheets):
            written.append(write_sheets(output.sheets, path))
        else:
            raise TypeError(f"{name}: no writer for {type(output).__name__}")
    return written


def store_outcome(store: Store, job: Job, outcome: Outcome, params: Mapping) -> list[str]:
    """Store the outcome's layers where the job says (each all-or-nothing); returns the
    layers written."""
    stored = []
    for role, frame in outcome.layers.items():
        name = job.layer_for(role, params)
        store.write(name, frame)
        stored.append(name)
    return stored


def run_job(store: Store, job: Job, params: Mapping, *, out: str | Path | None = None,
            extra: Mapping | None = None, store_layers: bool = True) -> Ran:
    """Run ``job`` on the whole territory of ``store``: read, compute, store its layers
    (unless ``store_layers`` is false) and, with ``out``, write its files there.
    ``extra``: inputs the caller read itself (a file of candidate sites)."""
    reads = job.reads(params, available := available_layers(store))
    inputs = read_inputs(store, reads, available=available)
    inputs.update(extra or {})
    outcome = job.compute(inputs, params)
    ran = Ran(outcome)
    if store_layers:
        ran.stored = store_outcome(store, job, outcome, params)
    if out is not None:
        ran.written = write_files(outcome, out)
    return ran
