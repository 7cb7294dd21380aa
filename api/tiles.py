"""Vector tiles: ``/tiles/{collection}/{z}/{x}/{y}.mvt`` in Web Mercator (WebMercatorQuad).

On PostGIS the tile is one ``ST_AsMVT`` over ``ST_AsMVTGeom`` of the features whose
bounding box meets the tile (``ST_TileEnvelope``, with a 64/4096 margin for the
buffer), within the caller's view (``api.auth``): the same rows and columns as the
collection's items. The maps use them for layers too big to embed. A TileJSON document
per collection gives the URL template, the extent and the fields.

Tiles are kept in memory per server process, exact to the layer's generation
(``api.tilecache``); the ``X-Cache`` header says whether a tile came from there (``hit``)
or was made for this request (``miss``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from api.catalog import JSON_TYPES
from api.dependencies import Target, check_tile, get_provider
from api.errors import NotFound
from api.providers import Provider

router = APIRouter(tags=["vector tiles"])
MVT = "application/vnd.mapbox-vector-tile"


@router.get("/tiles/{collectionId}/{z}/{x}/{y}.mvt", summary="A vector tile",
            response_class=Response, responses={200: {"content": {MVT: {}}}})
async def tile(
    target: Target,
    provider: Annotated[Provider, Depends(get_provider)],
    z: Annotated[int, Path(ge=0, le=24, description="Zoom level.", examples=[12])],
    x: Annotated[int, Path(ge=0, description="Column, 0 … 2^z − 1.", examples=[3310])],
    y: Annotated[int, Path(ge=0, description="Row from the top, 0 … 2^z − 1.",
                           examples=[1678])],
) -> Response:
    """The features of the collection in your view meeting tile z/x/y, as a Mapbox
    vector tile with one layer named after the collection."""
    check_tile(z, x, y)
    data, cached = await provider.tile(target.info, target.view, z, x, y)
    return Response(data, media_type=MVT, headers={"Cache-Control": "private, max-age=60",
                                                   "X-Cache": "hit" if cached else "miss"})


@router.get("/tiles/{collectionId}/tilejson.json", summary="TileJSON of a collection")
async def tilejson(request: Request, target: Target) -> dict:
    """TileJSON 3.0: the tile URL template, bounds and the fields of the layer."""
    info = target.info
    if not info.spatial:
        raise NotFound(f"collection {info.name!r} has no geometry, so no tiles")
    base = str(request.base_url).rstrip("/")
    doc = {
        "tilejson": "3.0.0", "name": info.name, "description": info.title,
        "tiles": [f"{base}/tiles/{info.name}/{{z}}/{{x}}/{{y}}.mvt"],
        "minzoom": 0, "maxzoom": 22,
        "vector_layers": [{"id": info.name, "fields": {
            c.name: JSON_TYPES[c.type] for c in target.view.columns}}],
    }
    if info.bbox is not None:
        doc["bounds"] = list(info.bbox)
    return doc
