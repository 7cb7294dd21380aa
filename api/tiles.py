"""Vector tiles (OGC API – Tiles, Mapbox Vector Tiles) and their tile matrix sets.

``/collections/{collectionId}/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}``
(OGC API – Tiles) and ``/tiles/{collection}/{z}/{x}/{y}.mvt`` (the same tile, the
shorter address the maps and the README use) in Web Mercator (WebMercatorQuad, the one
tile matrix set served; its definition at ``/tileMatrixSets/WebMercatorQuad`` comes from
morecantile, as in tipg). On PostGIS the tile is one ``ST_AsMVT`` over ``ST_AsMVTGeom``
of the features whose bounding box meets the tile (``ST_TileEnvelope``, with a 64/4096
margin for the buffer), within the caller's view (``api.auth``): the same rows and
columns as the collection's items. The maps use them for layers too big to embed.
``/collections/{id}/tiles`` lists the collection's tileset, whose metadata links the tile
template, the tiling scheme and a TileJSON 3.0 document.

Tiles are kept in memory per server process, exact to the layer's generation
(``api.tilecache``); the ``X-Cache`` header says whether a tile came from there (``hit``)
or was made for this request (``miss``).
"""

from __future__ import annotations

from typing import Annotated

import morecantile
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from api.catalog import JSON_TYPES, CollectionInfo
from api.dependencies import Target, check_tile, get_provider
from api.errors import NotFound
from api.providers import Provider
from api.schemas import geometry_type

router = APIRouter(tags=["OGC API - Tiles"])
MVT = "application/vnd.mapbox-vector-tile"
TMS_ID = "WebMercatorQuad"
#: The tile matrix set of every tile served (OGC TMS 2.0, from morecantile).
WEB_MERCATOR = morecantile.tms.get(TMS_ID)
REL_TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
REL_TILING_SCHEMES = "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes"
REL_TILESETS_VECTOR = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
#: OGC API – Tiles and Tile Matrix Set classes implemented (api.features lists them).
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/tms/2.0/conf/tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
]
MAX_ZOOM = 22


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _link(href: str, rel: str, type_: str, title: str | None = None, **extra) -> dict:
    link = {"href": href, "rel": rel, "type": type_, **extra}
    if title:
        link["title"] = title
    return link


def tile_links(info: CollectionInfo, base: str) -> list[dict]:
    """The tiles links of a collection document (api.features)."""
    url = f"{base}/collections/{info.name}/tiles"
    return [
        _link(url, REL_TILESETS_VECTOR, "application/json", "vector tilesets"),
        _link(f"{base}/tiles/{info.name}/tilejson.json", "describedby", "application/json",
              "TileJSON 3.0 of the vector tiles"),
        _link(f"{url}/{TMS_ID}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}", "item", MVT,
              "vector tiles (WebMercatorQuad)", templated=True),
    ]


def landing_links(base: str) -> list[dict]:
    """The tiles links of the landing page (templates: the collections need a key)."""
    return [
        _link(f"{base}/tileMatrixSets", REL_TILING_SCHEMES, "application/json",
              "tile matrix sets (WebMercatorQuad)"),
        _link(f"{base}/collections/{{collectionId}}/tiles", REL_TILESETS_VECTOR,
              "application/json", "vector tilesets of a collection", templated=True),
        _link(f"{base}/tiles/{{collectionId}}/tilejson.json", "describedby",
              "application/json", "TileJSON 3.0 of a collection's vector tiles",
              templated=True),
    ]


def _tms_summary(base: str) -> dict:
    return {"id": TMS_ID, "title": WEB_MERCATOR.title, "uri": WEB_MERCATOR.uri,
            "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
            "links": [_link(f"{base}/tileMatrixSets/{TMS_ID}", "self", "application/json",
                            WEB_MERCATOR.title),
                      _link(f"{base}/tileMatrixSets/{TMS_ID}", REL_TILING_SCHEME,
                            "application/json", WEB_MERCATOR.title)]}


@router.get("/tileMatrixSets", summary="Tile matrix sets")
async def tile_matrix_sets(request: Request) -> dict:
    """The tiling schemes the tiles are served in: WebMercatorQuad."""
    base = _base(request)
    return {"tileMatrixSets": [_tms_summary(base)],
            "links": [_link(f"{base}/tileMatrixSets", "self", "application/json")]}


@router.get("/tileMatrixSets/{tileMatrixSetId}", summary="One tile matrix set")
async def tile_matrix_set(
    tileMatrixSetId: Annotated[str, Path(max_length=64, examples=[TMS_ID])],
) -> JSONResponse:
    """The OGC Two Dimensional Tile Matrix Set 2.0 definition (JSON)."""
    if tileMatrixSetId != TMS_ID:
        raise NotFound(f"no tile matrix set {tileMatrixSetId!r}; served: {TMS_ID}")
    return JSONResponse(WEB_MERCATOR.model_dump(mode="json", exclude_none=True,
                                                by_alias=True))


def _spatial(info: CollectionInfo) -> None:
    if not info.spatial:
        raise NotFound(f"collection {info.name!r} has no geometry, so no tiles")


def _limits(info: CollectionInfo) -> list[dict]:
    """The tile rows and columns holding the collection's extent, per zoom."""
    if info.bbox is None:
        return []
    west, south, east, north = info.bbox
    south, north = max(south, -85.05), min(north, 85.05)
    limits = []
    for z in range(MAX_ZOOM + 1):
        top_left = WEB_MERCATOR.tile(west, north, z)
        bottom_right = WEB_MERCATOR.tile(east, south, z)
        limits.append({"tileMatrix": str(z), "minTileRow": top_left.y,
                       "maxTileRow": bottom_right.y, "minTileCol": top_left.x,
                       "maxTileCol": bottom_right.x})
    return limits


def tileset(info: CollectionInfo, view_columns, base: str) -> dict:
    """The tileset metadata of a collection (OGC API – Tiles, vector)."""
    url = f"{base}/collections/{info.name}/tiles/{TMS_ID}"
    layer = {"id": info.name, "title": info.title, "dataType": "vector",
             "minTileMatrix": "0", "maxTileMatrix": str(MAX_ZOOM),
             "propertiesSchema": {"type": "object", "properties": {
                 c.name: {"type": JSON_TYPES[c.type]} for c in view_columns}}}
    kind = geometry_type(info)
    if kind is not None:
        layer["geometryDimension"] = 0 if "Point" in kind else 1 if "Line" in kind else 2
    doc = {
        "title": f"{info.title} ({TMS_ID})", "dataType": "vector",
        "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
        "tileMatrixSetURI": WEB_MERCATOR.uri,
        "links": [
            _link(url, "self", "application/json", "this tileset"),
            _link(f"{base}/tileMatrixSets/{TMS_ID}", REL_TILING_SCHEME, "application/json",
                  WEB_MERCATOR.title),
            _link(f"{url}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}", "item", MVT,
                  "Mapbox vector tile", templated=True),
            _link(f"{base}/tiles/{info.name}/tilejson.json", "describedby",
                  "application/json", "TileJSON 3.0"),
            _link(f"{base}/collections/{info.name}", "collection", "application/json"),
        ],
        "layers": [layer],
    }
    limits = _limits(info)
    if limits:
        doc["tileMatrixSetLimits"] = limits
        doc["boundingBox"] = {"lowerLeft": list(info.bbox[:2]),
                              "upperRight": list(info.bbox[2:]),
                              "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}
    return doc


@router.get("/collections/{collectionId}/tiles", summary="Vector tilesets of a collection")
async def tilesets(request: Request, target: Target) -> dict:
    """The collection's vector tilesets: one, in WebMercatorQuad."""
    _spatial(target.info)
    base = _base(request)
    full = tileset(target.info, target.view.columns, base)
    summary = {k: full[k] for k in ("title", "dataType", "crs", "tileMatrixSetURI", "links")}
    return {"tilesets": [summary],
            "links": [_link(f"{base}/collections/{target.info.name}/tiles", "self",
                            "application/json")]}


@router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}",
            summary="Vector tileset metadata")
async def tileset_metadata(
    request: Request, target: Target,
    tileMatrixSetId: Annotated[str, Path(max_length=64, examples=[TMS_ID])],
) -> dict:
    _spatial(target.info)
    if tileMatrixSetId != TMS_ID:
        raise NotFound(f"no tileset in {tileMatrixSetId!r}; served: {TMS_ID}")
    return tileset(target.info, target.view.columns, _base(request))


@router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/"
            "{tileCol}", summary="A vector tile (OGC API – Tiles)",
            response_class=Response, responses={200: {"content": {MVT: {}}}})
async def ogc_tile(
    target: Target,
    provider: Annotated[Provider, Depends(get_provider)],
    tileMatrixSetId: Annotated[str, Path(max_length=64, examples=[TMS_ID])],
    tileMatrix: Annotated[int, Path(ge=0, le=24, description="Zoom level.", examples=[12])],
    tileRow: Annotated[int, Path(ge=0, description="Row from the top.", examples=[1678])],
    tileCol: Annotated[int, Path(ge=0, description="Column.", examples=[3310])],
) -> Response:
    """The same tile as ``/tiles/{collectionId}/{z}/{x}/{y}.mvt`` (z = tileMatrix,
    x = tileCol, y = tileRow)."""
    if tileMatrixSetId != TMS_ID:
        raise NotFound(f"no tiles in {tileMatrixSetId!r}; served: {TMS_ID}")
    return await tile(target, provider, tileMatrix, tileCol, tileRow)


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
