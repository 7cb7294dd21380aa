"""The placement job: where new outlets or devices cover the most uncovered households
(maximal covering) and the fewest sites that cover all (set covering); plan code B3,
ARCHITECTURE.md.

Reads households (required), the territory, units, townships and the existing outlets
and/or devices (by ``kind``); the metric CRS is the territory's, and points with broken
coordinates or beyond the largest radius are refused (``strict``) or left out with a
warning (``gis_grid.placement.screen_inputs``); candidate sites come from the caller
(input ``candidates``: a file the CLI read, the points a service request carried) or,
without them, the unit and town centres. Writes ``placement.json``,
``sites_<problem>.geojson`` and the tables as CSV and ``placement.xlsx``.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from gis_grid.errors import InputError, Problem
from gis_grid.jobs.base import GeoJSON, Job, Outcome, Read, Tables


def _reads(params, available) -> list[Read]:
    kind = params.get("kind", "outlet")
    reads = [Read("households", required=True), Read("territory"), Read("units"),
             Read("townships")]
    if kind in ("outlet", "any"):
        reads.append(Read("outlets"))
    if kind in ("device", "any"):
        reads.append(Read("devices"))
    return reads


def _candidates(sites, source: str):
    """Candidate sites as the models take them: points, each with a ``site`` name."""
    if sites is None or "geometry" not in sites or len(sites) == 0:
        raise InputError([Problem(source, None, None,
                                  "holds no candidate points (a point layer, or a CSV "
                                  "with lon/lat columns)")])
    if "site" not in sites:
        sites = sites.copy()
        sites.insert(0, "site", [f"C{i + 1:04d}" for i in range(len(sites))])
    return sites


def _compute(inputs, params) -> Outcome:
    from gis_grid.coverage import Radii, touch_points
    from gis_grid.placement import (
        candidate_sites,
        maximal_covering,
        screen_inputs,
        set_covering,
    )

    households, units = inputs["households"], inputs.get("units")
    outlets, devices = inputs.get("outlets"), inputs.get("devices")
    institution, method = params.get("institution"), params.get("method", "auto")
    radius = params.get("radius")
    radii = Radii(urban=radius or float(params.get("urban_radius", 2000.0)),
                  rural=radius or float(params.get("rural_radius", 5000.0)))
    time_limit = float(params.get("time_limit", 60.0))
    strict = bool(params.get("strict", False))
    points = {"households": households, "outlets": outlets, "devices": devices}
    if "candidates" in inputs:
        points["candidates"] = inputs["candidates"]
    crs, screened = screen_inputs(points, inputs.get("territory"), units, radii,
                                  strict=strict)
    households, outlets, devices = (screened.frames[n] for n in
                                    ("households", "outlets", "devices"))
    if "candidates" in inputs and len(inputs["candidates"]) and \
            not len(screened.frames["candidates"]):
        raise InputError([p for p in screened.problems if p.source == "candidates"],
                         source=params.get("candidates_source") or "candidates")
    if households is None or not len(households):
        raise InputError([Problem("households", None, None,
                                  "no household point with usable coordinates within the "
                                  "territory: there is no demand to place sites for")])
    existing = touch_points(outlets, devices, institution=institution) if (
        outlets is not None or devices is not None) else None
    if "candidates" in inputs:
        source_name = params.get("candidates_source") or "candidates"
        sites = _candidates(screened.frames["candidates"], source_name)
    else:
        if units is None:
            raise InputError([Problem("place", None, None,
                                      "the store has no units layer to take unit centres "
                                      "from; give candidates")])
        sites = candidate_sites(units, households, inputs.get("townships"))
        source_name = "unit and town centres"
    problem = params.get("problem", "both")
    results = {}
    if problem in ("mclp", "both"):
        results["mclp"] = maximal_covering(households, sites, k=int(params.get("k", 5)),
                                           existing=existing, units=units, radii=radii,
                                           method=method, time_limit=time_limit, crs=crs)
    if problem in ("lscp", "both"):
        results["lscp"] = set_covering(households, sites, existing=existing, units=units,
                                       radii=radii, method=method, time_limit=time_limit,
                                       crs=crs)
    source = params.get("source", "store")
    meta = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_date": params.get("data_date"), "kind": params.get("kind", "outlet"),
        "k": int(params.get("k", 5)), "institution": institution,
        "radii": radii.as_dict(), "method": method,
        "counts": {"household_points": len(households),
                   "existing_touch_points": 0 if existing is None else len(existing),
                   "candidates": len(sites)},
        "layers_used": {**{name: f"{source}:{name}" for name in
                           ("households", "units", "townships", "outlets", "devices")
                           if inputs.get(name) is not None},
                        "candidates": source_name},
        "metric_crs": f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else crs.to_string(),
        "notes": screened.notes(),
        "warnings": screened.notes(),
        "left_out": screened.as_dict(),
    }
    tables, sites_files = {}, {}
    for name, result in results.items():
        table = pd.DataFrame(result.sites.drop(columns="geometry"))
        lonlat = result.sites.geometry.to_crs("EPSG:4326")
        table["lon"], table["lat"] = lonlat.x.round(6), lonlat.y.round(6)
        tables[f"sites_{name}"] = table
        sites_files[f"sites_{name}.geojson"] = GeoJSON(result.sites)
    document = {"meta": meta, **{
        name: {"method": r.method, "report": r.report,
               "sites": pd.DataFrame(r.sites.drop(columns="geometry")).to_dict("records")}
        for name, r in results.items()}}
    return Outcome(result={"meta": meta, "results": results},
                   files={"placement.json": document, **sites_files,
                          "tables": Tables(tables, meta, stem="placement")},
                   summary={"problems": sorted(results)},
                   text="\n".join([*(r.summary() for r in results.values()),
                                    *(f"  note: {n}" for n in screened.notes())]))


PLACEMENT = Job("placement", reads=_reads, compute=_compute)
