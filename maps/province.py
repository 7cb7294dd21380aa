"""The atlas of a province, county by county: the ``atlas`` job of ``layers.fanout``.

``gisgrid province atlas`` (and ``gisgrid atlas --scheduler``) runs it once per county
(in-process or one Dask task per county); each county's volumes go to ``<out>/<county>/``.
A county's atlas draws what ``gisgrid atlas`` draws: its grids, divisions, outlets,
devices, staff, households, ledger (files %) and the analysis layers (service blanks,
coverage gaps, overlaps) where they fall on its pages.
"""

from __future__ import annotations

from pathlib import Path

from layers.fanout import WHOLE, read_county, target_layer
from layers.store import Store


def _atlas_inputs(store: Store, county: str, params: dict) -> dict:
    from maps.symbology import area_style

    whole = bool(params.get(WHOLE))
    inputs = {name: read_county(store, name, county, required=False, whole=whole)
              for name in ("territory", "townships", "units", "outlets", "devices", "staff",
                           "households", "ledger")}
    inputs["grids"] = read_county(store, target_layer("atlas", params), county, whole=whole)
    inputs["institutions"] = store.read("institutions") if store.has("institutions") else None
    # Analysis layers need no county column: those near the county (its bounding box).
    territory = inputs["territory"]
    bbox = None if whole or territory is None or not len(territory) else \
        tuple(float(v) for v in territory.total_bounds)
    for name in sorted(info.name for info in store.layers()):
        if area_style(name) is not None:
            inputs[name] = store.read(name) if bbox is None else store.read(name, bbox=bbox)
    return {k: v for k, v in inputs.items() if v is not None}


def _atlas(county: str, inputs: dict, params: dict) -> tuple[None, dict]:
    from maps.atlas import VOLUMES, build_atlas

    out = Path(params.get("out") or "atlas") / county
    result = build_atlas(inputs, out, progress=False, limit=params.get("limit"),
                         level=int(params.get("level", 2)),
                         volumes=params.get("volumes") or VOLUMES,
                         show_phones=bool(params.get("show_phones", True)),
                         date=params.get("date"))
    return None, {"out": str(out), "pages": {k: int(v) for k, v in result.pages.items()}}


#: (read the county's inputs, compute) for ``layers.fanout.run_county``.
ATLAS_JOB = (_atlas_inputs, _atlas)
