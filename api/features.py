"""OGC API – Features endpoints (Part 1 Core, Part 2 CRS by reference), JSON and HTML.

``/``, ``/conformance`` and the OpenAPI definition (``/openapi.json``, ``/docs``) need no
key: they describe the service, not data. ``/collections…`` need one, and show the
caller's view only (``api.auth``): the collections it may read, the rows and columns it
may see. A page of items is a ``FeatureCollection`` whose ``numberMatched``,
``numberReturned`` and links are written first and whose features are streamed as the
provider produces them (on PostGIS: text chunks built by PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api import html, processes, tiles
from api.auth import read_rule
from api.catalog import CRS84, JSON_TYPES, STORAGE, SUPPORTED_CRS, CollectionInfo
from api.dependencies import (
    Caller,
    Format,
    Items,
    Target,
    get_provider,
    parse_crs,
)
from api.errors import ApiError, NotFound
from api.openapi30 import OPENAPI_30, OPENAPI_31, enrich, to_openapi30
from api.providers import Provider
from api.schemas import REL_SCHEMA, SCHEMA_MEDIA, feature_schema
from gis_grid.model import schema_for

router = APIRouter(tags=["OGC API - Features"])

#: The temporal reference system of OGC API – Features' temporal extents.
TRS_GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    # OpenAPI 3.0 at /api (api.openapi30).
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    # Part 3 (Filtering) and CQL2: api.filtering.
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
    # sortby, as pygeoapi declares it (Features has no sorting class of its own yet).
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/sorting",
    # Part 5 (Schemas): /collections/{collectionId}/schema, api.schemas.
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/schemas",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/core-roles-features",
    # Part 4 (Create, Replace, Update, Delete) on the field records: api.records — events
    # created, replaced and withdrawn while just reported, their state updated (PATCH)
    # with ETag / If-Match; patrols and inspections created, risk reports updated.
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
    # OGC API – Tiles and the tile matrix set: api.tiles.
    *tiles.CONFORMANCE,
    # OGC API – Processes: api.processes.
    *processes.CONFORMANCE,
]
GEOJSON = "application/geo+json"
ProviderDep = Annotated[Provider, Depends(get_provider)]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _link(href: str, rel: str, type_: str, title: str | None = None) -> dict:
    link = {"href": href, "rel": rel, "type": type_}
    if title:
        link["title"] = title
    return link


def _json(doc: dict, media: str = "application/json", headers: dict | None = None
          ) -> Response:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return Response(body.encode(), media_type=media, headers=headers)


@router.get("/", summary="Landing page")
async def landing(request: Request, fmt: Format) -> Response:
    """Links to the API definition, the conformance declaration and the collections."""
    base = base_url(request)
    doc = {
        "title": request.app.state.settings.title,
        "description": "金融服务网格 financial service grids: grids, outlets, devices, staff, "
                       "units, gaps and overlaps as OGC API – Features collections, vector "
                       "tiles, analyses and uploads. Send an API key (Authorization: Bearer "
                       "or X-API-Key) for everything under /collections.",
        "links": [
            _link(f"{base}/", "self", "application/json", "this document"),
            _link(f"{base}/?f=html", "alternate", "text/html", "this document as HTML"),
            _link(f"{base}/api", "service-desc", OPENAPI_30,
                  "the API definition (OpenAPI 3.0)"),
            _link(f"{base}/openapi.json", "alternate", OPENAPI_31,
                  "the API definition (OpenAPI 3.1)"),
            _link(f"{base}/docs", "service-doc", "text/html", "the API documentation"),
            _link(f"{base}/conformance", "conformance", "application/json",
                  "OGC API conformance classes implemented"),
            _link(f"{base}/collections", "data", "application/json",
                  "the feature collections"),
            *tiles.landing_links(base),
            *processes.landing_links(base),
        ],
    }
    if fmt == "html":
        return html.render("landing", title=doc["title"], base=base, doc=doc,
                           query=request.url.query)
    return _json(doc)


@router.get("/conformance", summary="Conformance declaration")
async def conformance(request: Request, fmt: Format) -> Response:
    doc = {"conformsTo": CONFORMANCE}
    if fmt == "html":
        return html.render("conformance", title="标准 Conformance", base=base_url(request),
                           doc=doc, query=request.url.query)
    return _json(doc)


def collection_doc(info: CollectionInfo, base: str) -> dict:
    """The OGC description of one collection (Part 2: ``crs``, ``storageCrs``)."""
    url = f"{base}/collections/{info.name}"
    doc = {
        "id": info.name,
        "title": info.title,
        "description": info.description or f"layer {info.name}",
        "itemType": "feature",
        "crs": [c.uri for c in SUPPORTED_CRS],
        "storageCrs": STORAGE.uri,
        "links": [
            _link(url, "self", "application/json"),
            _link(f"{url}?f=html", "alternate", "text/html"),
            _link(f"{url}/items", "items", GEOJSON, "features as GeoJSON"),
            _link(f"{url}/items?f=html", "items", "text/html", "features as HTML"),
            # Part 3; GDAL before 3.7 looks for the short relation name.
            _link(f"{url}/queryables", "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                  "application/schema+json", "properties to filter and sort on"),
            _link(f"{url}/queryables", "queryables", "application/schema+json",
                  "properties to filter and sort on"),
            # Part 5: the features' schema (roles, geometry type, property types).
            _link(f"{url}/schema", REL_SCHEMA, SCHEMA_MEDIA, "schema of the features"),
        ],
    }
    if info.spatial:
        doc["links"].extend(tiles.tile_links(info, base))
        if info.bbox is not None:
            doc["extent"] = {"spatial": {"bbox": [list(info.bbox)], "crs": CRS84.uri}}
    schema = schema_for(info.name)
    if schema is not None and schema.temporal and info.column(schema.temporal):
        # placed in time (the items' datetime parameter selects on this property); the
        # bounds are not kept in the catalog, so the interval is left open
        doc.setdefault("extent", {})["temporal"] = {
            "interval": [[None, None]], "trs": TRS_GREGORIAN, "property": schema.temporal}
    return doc


def _visible(who, catalog: dict[str, CollectionInfo]) -> list[CollectionInfo]:
    shown = []
    for info in catalog.values():
        try:
            read_rule(who, info.name, info.column_names)
        except ApiError:
            continue
        shown.append(info)
    return shown


@router.get("/collections", summary="The feature collections you may read")
async def collections(request: Request, who: Caller, fmt: Format,
                      provider: ProviderDep) -> Response:
    base = base_url(request)
    infos = _visible(who, await provider.catalog())
    doc = {
        "links": [_link(f"{base}/collections", "self", "application/json"),
                  _link(f"{base}/collections?f=html", "alternate", "text/html")],
        "collections": [collection_doc(info, base) for info in infos],
        "crs": [c.uri for c in SUPPORTED_CRS],
    }
    if fmt == "html":
        return html.render("collections", title="数据集 Collections", base=base, doc=doc,
                           query=request.url.query)
    return _json(doc)


@router.get("/collections/{collectionId}", summary="One collection")
async def collection(request: Request, target: Target, fmt: Format) -> Response:
    base = base_url(request)
    doc = collection_doc(target.info, base)
    if fmt == "html":
        return html.render("collection", title=target.info.title, base=base, doc=doc,
                           query=request.url.query)
    return _json(doc)


#: GeoJSON geometry types as Part 3's queryable formats and geojson.org schemas.
_GEOMETRY_FORMATS = {"Point": "point", "MultiPoint": "multipoint",
                     "LineString": "linestring", "MultiLineString": "multilinestring",
                     "Polygon": "polygon", "MultiPolygon": "multipolygon"}


@router.get("/collections/{collectionId}/queryables", summary="Properties to filter on")
async def queryables(request: Request, target: Target) -> Response:
    """The properties you may filter and sort items on (CQL2 ``filter``, ``sortby`` and
    ``?name=value``), as JSON Schema: only the columns your role may read."""
    url = f"{base_url(request)}/collections/{target.info.name}/queryables"
    properties: dict[str, dict] = {}
    if target.info.spatial:
        kind = _GEOMETRY_FORMATS.get(target.info.geometry_type or "")
        properties["geometry"] = {
            "title": "geometry",
            "format": f"geometry-{kind}" if kind else "geometry-any",
            "$ref": (f"https://geojson.org/schema/{target.info.geometry_type}.json" if kind
                     else "https://geojson.org/schema/Geometry.json"),
        }
    for c in target.view.columns:
        properties[c.name] = {"title": c.name, "type": JSON_TYPES[c.type],
                              **({"format": "date"} if c.type == "date" else {}),
                              **({"format": "date-time"} if c.type == "datetime" else {})}
    doc = {
        "$schema": "https://json-schema.org/draft/2019-09/schema", "$id": url,
        "type": "object", "title": target.info.title,
        "properties": properties,
        "additionalProperties": False,
        # The list of the draft GDAL 3.6 (Debian 12) reads before it sends a filter to
        # the server instead of downloading every feature to test it.
        "queryables": [{"id": name} for name in properties if name != "geometry"],
    }
    # JSON Schema's media type, unless the client accepts only plain JSON (GDAL 3.6).
    accept = request.headers.get("accept", "").lower()
    plain = "application/json" in accept and "schema+json" not in accept
    return _json(doc, "application/json" if plain else "application/schema+json")


def next_limit(request: Request, limit: int) -> int:
    """The page size a ``next`` link asks for: twice this page's, up to the maximum.

    Clients that copy a whole layer follow ``next`` links to the end, and some ask for
    small pages: GDAL before 3.8 always sends ``limit=10`` (10,821 requests for the
    Zigui sample). Doubling gets them to the maximum page in a few steps (a layer of
    10⁵ features in about 20 requests) while each response still holds no more than
    its own request's ``limit``. Pages for people (HTML) keep their size.
    """
    if _wants_html(request):
        return limit
    return max(limit, min(2 * limit, request.app.state.settings.max_limit))


def _wants_html(request: Request) -> bool:
    f = request.query_params.get("f")
    if f is not None:
        return f == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "json" not in accept


@router.get("/collections/{collectionId}/schema", summary="Schema of the features",
            responses={200: {"content": {SCHEMA_MEDIA: {}}}})
async def schema(request: Request, target: Target) -> Response:
    """The features' schema (OGC API – Features Part 5) as JSON Schema: the id and the
    primary geometry with its type, and the properties your role may read, typed."""
    url = f"{base_url(request)}/collections/{target.info.name}/schema"
    doc = feature_schema(target.info, target.view, url)
    accept = request.headers.get("accept", "").lower()
    plain = "application/json" in accept and "schema+json" not in accept
    return _json(doc, "application/json" if plain else SCHEMA_MEDIA)


def _page_links(request: Request, name: str, query, matched: int, returned: int) -> list:
    url = request.url
    base = base_url(request)
    links = [_link(str(url), "self", GEOJSON),
             _link(str(url.include_query_params(f="html")), "alternate", "text/html"),
             _link(f"{base}/collections/{name}", "collection", "application/json")]
    if returned and query.offset + returned < matched:
        links.append(_link(str(url.include_query_params(
            offset=query.offset + returned, limit=next_limit(request, query.limit))),
            "next", GEOJSON, "next page"))
    if query.offset > 0:
        links.append(_link(str(url.include_query_params(
            offset=max(0, query.offset - query.limit), limit=query.limit)), "prev", GEOJSON,
            "previous page"))
    return links


@router.get("/collections/{collectionId}/items", summary="Features (GeoJSON), paged",
            response_class=StreamingResponse,
            responses={200: {"content": {GEOJSON: {}, "text/html": {}}}})
async def items(request: Request, target: Target, query: Items, fmt: Format,
                provider: ProviderDep) -> Response:
    """Features of a collection in your view, filtered by ``bbox``, properties
    (``?kind=rural``) and a CQL2 ``filter``, in ``sortby`` order, ``limit`` per page
    with ``next`` links (which keep the filter), in ``crs``."""
    info, view = target.info, target.view
    stream = provider.items(info, view, query)
    try:
        head = await anext(stream)
        links = _page_links(request, info.name, query, head.matched, head.returned)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        opening = (
            '{"type":"FeatureCollection",'
            f'"numberMatched":{head.matched},"numberReturned":{head.returned},'
            f'"timeStamp":"{stamp}","links":{json.dumps(links, ensure_ascii=False)},'
            '"features":[')
        headers = {"Content-Crs": query.crs.header}
        if fmt == "html":
            text = opening + ",".join([chunk async for chunk in stream]) + "]}"
            return html.render("items", title=f"{info.title} 要素 items", base=base_url(request),
                               doc=json.loads(text), query=request.url.query,
                               columns=view.names, collection=info.name)
    except BaseException:
        await stream.aclose()
        raise

    async def body():
        try:
            yield opening.encode()
            first = True
            async for chunk in stream:
                yield (chunk if first else "," + chunk).encode()
                first = False
            yield b"]}"
        finally:
            # Shielded: a client that went away cancels the response, and the provider
            # must still give its connection back.
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    return StreamingResponse(body(), media_type=GEOJSON, headers=headers)


@router.get("/collections/{collectionId}/items/{featureId}", summary="One feature",
            responses={200: {"content": {GEOJSON: {}, "text/html": {}}}})
async def item(
    request: Request, target: Target, fmt: Format, provider: ProviderDep,
    featureId: Annotated[str, Path(max_length=200, description="The feature's id: its key "
                                   "(a grid's code, an outlet's id …) or number.",
                                   examples=["420527101001"])],
    crs: str | None = None,
) -> Response:
    """One feature by id; 404 when it does not exist *or* is outside your view."""
    output = parse_crs(crs)
    text = await provider.item(target.info, target.view, featureId, output)
    if text is None:
        raise NotFound(f"no feature {featureId!r} in {target.info.name}")
    base = base_url(request)
    url = f"{base}/collections/{target.info.name}"
    links = [_link(str(request.url), "self", GEOJSON),
             _link(str(request.url.include_query_params(f="html")), "alternate", "text/html"),
             _link(url, "collection", "application/json")]
    body = text[:-1] + ',"links":' + json.dumps(links, ensure_ascii=False) + "}"
    if fmt == "html":
        doc = json.loads(body)
        return html.render("item", title=f"{target.info.title} {featureId}", base=base,
                           doc=doc, query=request.url.query)
    headers = {"Content-Crs": output.header}
    version = json.loads(text).get("properties", {}).get("version") \
        if '"version"' in text else None
    if isinstance(version, int):  # records moved under If-Match (api.records): their ETag
        headers["ETag"] = f'"{version}"'
    return Response(body.encode(), media_type=GEOJSON, headers=headers)


def install_openapi(app) -> None:
    """Serve the API definition as OpenAPI 3.0 at ``/api`` (the landing page's
    ``service-desc``, which OWSLib, QGIS and GDAL read) and as FastAPI's 3.1 at
    ``/openapi.json`` (``/docs``); both declare the page size and Basic sign-in
    (``api.openapi30``)."""
    settings = app.state.settings
    generate = app.openapi

    def described() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = enrich(generate(), default_limit=settings.default_limit,
                                        max_limit=settings.max_limit)
        return app.openapi_schema

    app.openapi = described
    converted: list[dict] = []

    @app.get("/api", include_in_schema=False)
    async def api_definition() -> JSONResponse:
        if not converted:
            converted.append(to_openapi30(described()))
        return JSONResponse(converted[0], media_type=OPENAPI_30)
