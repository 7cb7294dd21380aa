"""The partition job: nested well-field grids (plan codes B2, B3, C1; ARCHITECTURE.md).

Reads the territory (required), townships, units, households, outlets and staff; makes
the grids (``gis_grid.partition``) and, for an institution, gives each finest grid one
of its workers (``gis_grid.staffing``, B4). Stores the grids layer and the staff's
grids; writes ``report.json`` and ``grids.geojson``. Run county by county, each county's
grids and staff are staged and then combined: the grids on both sides of every county
seam are made to share every vertex (``gis_grid.topology.stitch_seams``) and the
counties' staff rows get their grids.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from gis_grid.jobs.base import GeoJSON, Job, Outcome, Read
from gis_grid.model import STORAGE_CRS
from gis_grid.naming import target_layer

#: The levels a partition makes when none are given: township → village → ~300 households.
DEFAULT_LEVELS = ("units:townships", "units:units", "balanced")


def level_specs(texts, *, capacity: bool = False) -> list:
    """``METHOD[:SOURCE]`` texts as ``LevelSpec``s (``ValueError`` for a bad one); a
    text ``none`` ends the list."""
    from gis_grid.partition import LevelSpec

    specs = []
    for text in texts:
        if text.strip().lower() == "none":
            continue
        method, _, source = text.partition(":")
        specs.append(LevelSpec(method.strip(), source=source.strip() or None,
                               capacity=capacity and method.strip() == "outlets"))
    return specs


def _reads(params, available) -> list[Read]:
    return [Read("territory", required=True),
            *(Read(name) for name in ("townships", "units", "households", "outlets")),
            Read("staff", volatile=("grids",))]


def _compute(inputs, params) -> Outcome:
    from gis_grid.partition import partition
    from gis_grid.staffing import assign_staff

    min_area = params.get("min_area")
    institution = params.get("institution")
    result = partition(
        inputs["territory"], inputs.get("households"),
        levels=level_specs(params.get("levels") or DEFAULT_LEVELS,
                           capacity=bool(params.get("capacity", False))),
        institution=institution, units=inputs.get("units"),
        townships=inputs.get("townships"), outlets=inputs.get("outlets"),
        target_households=int(params.get("target_households", 300)),
        tolerance=float(params.get("tolerance", 0.2)),
        cell_size=float(params.get("cell_size", 1000.0)),
        min_area=None if min_area is None else float(min_area),
        shape=str(params.get("shape", "square")), seed=int(params.get("seed", 0)))
    grids, staff = result.grids, inputs.get("staff")
    assigned = bool(params.get("assign_staff", True) and institution and staff is not None)
    if assigned:
        # The institution's own workers (一人一格), in code order.
        grids, staff = assign_staff(grids, staff, institution=institution)
    if params.get("county"):
        grids = grids.copy()
        grids["county"] = params["county"]
    layers = {"grids": grids, **({"staff": staff} if assigned else {})}
    levels = [{"level": lv["level"], "grids": lv["grids"]}
              for lv in result.report.get("levels", [])]
    return Outcome(result=result, layers=layers,
                   files={"report.json": result.to_json(),
                          "grids.geojson": GeoJSON(grids, engine="ogr")},
                   summary={"grids": len(grids), "levels": levels}, text=result.summary())


def _store_as(role: str, params) -> str:
    return target_layer(params) if role == "grids" else role


def _combine(staged: dict, context: dict, params) -> dict:
    """The counties' grids as one layer, seams stitched; the staff layer with the grids
    each county's staff now holds (assign_staff changes nothing else)."""
    from gis_grid.topology import stitch_seams

    frames = [f for f in staged.get("grids", []) if len(f)]
    if not frames:
        return {}
    merged = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry",
                              crs=STORAGE_CRS)
    territory = context["territory"]
    merged["geometry"] = stitch_seams(merged.geometry.to_numpy(),
                                      merged["county"].astype(str).to_numpy(),
                                      territory.geometry.to_numpy(),
                                      territory["code"].astype(str).to_numpy(),
                                      merged["level"].to_numpy())
    if params.get("whole_territory"):
        merged = merged.drop(columns="county")
    combined = {"grids": merged}
    staff_frames = [f for f in staged.get("staff", []) if f is not None]
    staff = context.get("staff")
    if staff_frames and staff is not None:
        assigned = pd.concat(staff_frames, ignore_index=True)
        # Only the institution's rows: assign_staff leaves the others as they were.
        assigned = assigned[assigned["institution"].astype(str) == params["institution"]]
        held = pd.Series(assigned["grids"].to_numpy(), index=assigned["id"].to_numpy())
        staff = staff.copy()
        mine = staff["id"].isin(held.index)
        staff["grids"] = staff["grids"].astype(object)
        staff.loc[mine, "grids"] = held.reindex(staff.loc[mine, "id"]).to_numpy()
        combined["staff"] = staff
    return combined


PARTITION = Job("partition", reads=_reads, compute=_compute, store_as=_store_as,
                stages=("grids", "staff"), combine=_combine,
                combine_reads=("territory", "staff"))
