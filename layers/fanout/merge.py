"""After the counties: merge their staging layers, then check the whole territory.

The client merges the staging layers of the counties that succeeded into the job's
layers, each in one all-or-nothing write, through the job's ``combine`` (the partition
job stitches the county seams there); then runs the job's ``finish`` over the whole
territory (the validate job's seam check).
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from gis_grid.jobs import Job, Outcome
from gis_grid.model import STORAGE_CRS
from gis_grid.naming import staged_layer
from layers.runner import available_layers, read_inputs, write_files
from layers.store import Store


def read_staged(store: Store, job: Job, layer: str, county: str) -> dict:
    """A county's staging layers by role (None where the county staged none)."""
    names = available_layers(store)
    return {role: store.read(staged_layer(role, layer, county))
            if staged_layer(role, layer, county) in names else None for role in job.stages}


def _concat(staged: dict, context: dict, params) -> dict:
    """The default combine: each role's county frames, one after the other."""
    merged = {}
    for role, frames in staged.items():
        if frames:
            merged[role] = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True),
                                            geometry="geometry", crs=STORAGE_CRS)
    return merged


def merge(store: Store, job: Job, params: dict, layer: str, counties: list[str],
          staged: dict | None = None) -> dict[str, int]:
    """Replace the job's layers by the staging layers of ``counties`` (code order).

    ``staged``: counties' staging layers already read (``read_staged``) while the other
    counties were still running, so that the serial merge does not wait for them.
    Returns the rows stored per layer.
    """
    staged = dict(staged or {})
    for county in counties:
        if county not in staged:
            staged[county] = read_staged(store, job, layer, county)
    by_role = {role: [staged[c][role] for c in counties if staged[c].get(role) is not None]
               for role in job.stages}
    context = {name: store.read(name) if store.has(name) else None
               for name in job.combine_reads}
    combined = (job.combine or _concat)(by_role, context, params)
    stored = {}
    for role, frame in combined.items():
        name = job.layer_for(role, params)
        store.write(name, frame)
        stored[name] = len(frame)
    return stored


def finish(store: Store, job: Job, params: dict, out: str | None) -> Outcome:
    """The job's check over the whole territory, its files written to ``out``."""
    inputs = read_inputs(store, job.finish_reads(params), available=available_layers(store))
    outcome = job.finish(inputs, params)
    if out:
        write_files(outcome, out)
    return outcome
