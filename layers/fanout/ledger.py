"""The fan-out's resume ledger: the table ``fanout_runs`` and the fingerprints it keeps.

Each finished county appends a row (job, layer, county, fingerprint, status, error,
summary, finished_at). The fingerprint is a SHA-256 of the job, its parameters and the
county's inputs as read; a re-run skips a county whose latest ``done`` row has the same
fingerprint (and whose staging layers are all there). Rows are only appended, so
concurrent tasks never contend for one row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import geopandas as gpd
import pandas as pd
import shapely

from gis_grid.naming import LEDGER, staged_layer
from layers.store import Store

#: Parameters that steer a run but not its results: left out of the fingerprint.
CONTROL = ("resume", "whole_territory", "threads", "county")


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


def fingerprint(job: str, county: str, params: dict, inputs: dict) -> str:
    """The SHA-256 of a county's run: the job, its parameters (less ``CONTROL``) and
    every input frame's values and geometry."""
    h = hashlib.sha256()
    kept = {k: v for k, v in sorted(params.items()) if k not in CONTROL}
    h.update(json.dumps([job, county, kept], sort_keys=True, default=str).encode())
    for name in sorted(inputs):
        h.update(name.encode())
        h.update(_frame_digest(inputs[name]).encode())
    return h.hexdigest()


def already_done(store: Store, job: str, layer: str, county: str,
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
    if any(not store.has(staged_layer(role, layer, county))
           for role in summary.get("staged", [])):
        return None
    return summary


def ledger_row(job: str, layer: str, county: str, fingerprint: str, status: str,
               error: str = "", summary: dict | None = None) -> pd.DataFrame:
    """One row of ``fanout_runs``."""
    return pd.DataFrame({
        "job": [job], "layer": [layer], "county": [county], "fingerprint": [fingerprint],
        "status": [status], "error": [error[:2000]],
        "summary": [json.dumps(summary or {}, ensure_ascii=False, default=str)],
        "finished_at": [dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")],
    })
