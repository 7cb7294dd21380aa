"""The atlas of a province, county by county: the ``atlas`` job of ``layers.fanout``.

``gisgrid province atlas`` runs it once per county (in-process or one Dask task per
county); each county's volumes go to ``<out>/<county>/``.
"""

from __future__ import annotations

from pathlib import Path

from layers.fanout import read_county, target_layer
from layers.store import Store


def _atlas_inputs(store: Store, county: str, params: dict) -> dict:
    inputs = {name: read_county(store, name, county, required=False)
              for name in ("territory", "townships", "units", "outlets", "devices", "staff",
                           "households")}
    inputs["grids"] = read_county(store, target_layer("atlas", params), county)
    inputs["institutions"] = store.read("institutions") if store.has("institutions") else None
    return {k: v for k, v in inputs.items() if v is not None}


def _atlas(county: str, inputs: dict, params: dict) -> tuple[None, dict]:
    from maps.atlas import build_atlas

    out = Path(params.get("out") or "atlas") / county
    result = build_atlas(inputs, out, progress=False, limit=params.get("limit"))
    return None, {"out": str(out), "pages": {k: int(v) for k, v in result.pages.items()}}


#: (read the county's inputs, compute) for ``layers.fanout.run_county``.
ATLAS_JOB = (_atlas_inputs, _atlas)
