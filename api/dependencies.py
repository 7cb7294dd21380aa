"""Typed dependencies: every request parameter is parsed once, at the edge (tipg's habit).

Each dependency turns raw query text into a typed value or raises a named error
(``InvalidBBox``, ``InvalidCRS``, ``InvalidProperty`` … → 400; ``NotAuthenticated`` →
401; ``Forbidden`` → 403). Handlers receive a ``Principal``, a collection with the
caller's ``View`` and an ``ItemsQuery`` whose every value is checked and typed against
the collection's columns, so nothing downstream sees request text as SQL.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Annotated

import anyio
import pyproj
from fastapi import Depends, Path, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pygeofilter import ast

from api.auth import Principal, read_rule, split_token, token_from_headers
from api.catalog import CRS84, CollectionInfo, ItemsQuery, OutputCRS, View, find_crs
from api.errors import (
    Forbidden,
    InvalidBBox,
    InvalidCRS,
    InvalidLimit,
    InvalidParameter,
    InvalidProperty,
    NotAcceptable,
)
from api.filtering import (
    FilteredQuery,
    compile_filter,
    datetime_condition,
    parse_filter,
    parse_filter_crs,
    parse_sortby,
)
from api.providers import Provider
from api.settings import Settings
from gis_grid.model import schema_for

#: Query parameters of /items that are not property filters.
ITEMS_PARAMETERS = frozenset({"f", "limit", "offset", "bbox", "bbox-crs", "crs", "datetime",
                              "filter", "filter-lang", "filter-crs", "sortby"})
MAX_LIMIT = 10_000
_FROM_3857 = pyproj.Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="`X-API-Key: <token>`")


# Dependencies are coroutines even when they do not await: FastAPI runs plain functions
# in a thread pool, a hop that costs more than they do.
async def get_provider(request: Request) -> Provider:
    return request.app.state.provider


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)],
) -> Principal:
    """The authenticated caller (401 without a valid key)."""
    token = token_from_headers(
        f"{credentials.scheme} {credentials.credentials}" if credentials else
        request.headers.get("authorization"), api_key)
    ring = request.app.state.keyring
    key_id, _ = split_token(token)
    if ring.needs_refresh(key_id):
        await anyio.to_thread.run_sync(ring.refresh, key_id)
    return ring.verify(token)


Caller = Annotated[Principal, Depends(principal)]


async def output_format(
    request: Request,
    f: Annotated[str | None, Query(description="Output format: `json` (GeoJSON for "
                                   "features) or `html`. Default: from the Accept header, "
                                   "else JSON.", pattern="^(json|geojson|html)$")] = None,
) -> str:
    """``json`` or ``html``, from ``f`` or the ``Accept`` header."""
    if f is not None:
        return "html" if f == "html" else "json"
    accept = request.headers.get("accept", "")
    if not accept:
        return "json"
    best = None
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.strip().lower()
        kind = ("html" if media == "text/html" else
                "json" if media in ("application/json", "application/geo+json",
                                    "application/schema+json", "*/*", "application/*")
                or media.endswith("+json") else None)
        if kind and q > 0 and (best is None or q > best[0]):
            best = (q, kind)
    if best is None:
        raise NotAcceptable(f"cannot answer in {accept!r}: JSON, GeoJSON or HTML only")
    return best[1]


Format = Annotated[str, Depends(output_format)]


@dataclass(frozen=True)
class Collection:
    """A collection with the caller's view of it."""

    info: CollectionInfo
    view: View
    principal: Principal


async def view_for(provider: Provider, who: Principal, info: CollectionInfo) -> View:
    """The caller's view of a collection: its rule's columns and resolved row scope."""
    rule = read_rule(who, info.name, info.column_names)
    scope = [(column, tuple(values)) for column, values in rule.fixed.items()]
    for column, lookup in rule.lookups.items():
        scope.append((column, await provider.lookup(lookup, who)))
    columns = tuple(c for c in info.columns if c.name not in rule.hidden)
    return View(columns, tuple(scope))


async def collection(
    collectionId: Annotated[str, Path(description="Collection (layer) name, as listed "
                                      "at /collections", pattern=r"^[a-z][a-z0-9_]{0,62}$",
                                      examples=["grids", "outlets", "units"])],
    who: Caller,
    provider: Annotated[Provider, Depends(get_provider)],
) -> Collection:
    info = await provider.collection(collectionId)
    return Collection(info, await view_for(provider, who, info), who)


Target = Annotated[Collection, Depends(collection)]


def parse_crs(value: str | None, name: str = "crs") -> OutputCRS:
    if value is None:
        return CRS84
    crs = find_crs(value)
    if crs is None:
        raise InvalidCRS(f"{name} {value!r} is not offered; use one of CRS84, EPSG:4326, "
                         "EPSG:4490, EPSG:3857 (or their "
                         "http://www.opengis.net/def/crs/… URIs)")
    return crs


def parse_bbox(value: str | None, crs: OutputCRS) -> tuple[float, float, float, float] | None:
    """A ``bbox`` as (min lon, min lat, max lon, max lat) in the storage CRS."""
    if value is None:
        return None
    parts = value.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InvalidBBox(f"bbox {value!r}: expected 4 or 6 comma-separated numbers") from None
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise InvalidBBox(f"bbox {value!r}: expected 4 or 6 finite numbers")
    if len(numbers) == 6:  # minx, miny, minz, maxx, maxy, maxz: heights are not stored
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    a, b, c, d = numbers
    if crs.flip:  # latitude first
        a, b, c, d = b, a, d, c
    if crs.srid == 3857:
        if a > c or b > d:
            raise InvalidBBox(f"bbox {value!r}: minimum above maximum")
        lon, lat = _FROM_3857.transform([a, c], [b, d])
        a, c, b, d = lon[0], lon[1], lat[0], lat[1]
    if not (-180 <= a <= 180 and -180 <= c <= 180 and -90 <= b <= 90 and -90 <= d <= 90):
        raise InvalidBBox(f"bbox {value!r}: outside longitude [-180, 180] / latitude "
                          "[-90, 90]")
    if b > d:
        raise InvalidBBox(f"bbox {value!r}: the lower latitude is above the upper one")
    if a > c:
        raise InvalidBBox(f"bbox {value!r}: crossing the antimeridian is not supported")
    return (a, b, c, d)


def _typed(value: str, ftype: str, name: str) -> object:
    """A filter value as its column's type (400 if it cannot be, or if the store could
    not take it: a NUL character, an integer beyond 64 bits)."""
    if "\x00" in value:
        raise InvalidProperty(f"{name}: NUL characters are not allowed")
    try:
        if ftype == "int":
            number = int(value)
            if not -(2**63) <= number < 2**63:
                raise InvalidProperty(f"{name}={value!r}: out of range for a 64-bit integer")
            return number
        if ftype == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if ftype == "bool":
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if ftype == "date":
            return dt.date.fromisoformat(value)
        if ftype == "datetime":
            stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidProperty(f"{name}={value!r}: expected a value of type {ftype}") from None
    return value


def property_filters(request: Request, target: Collection) -> tuple[tuple[str, tuple], ...]:
    """Property filters (``?kind=rural&institution=NSH``), typed and checked against the
    columns the caller may see; a value outside the caller's scope is 403."""
    filters = []
    visible = {c.name: c for c in target.view.columns}
    names = [k for k in dict.fromkeys(request.query_params.keys()) if k not in ITEMS_PARAMETERS]
    for name in names:
        column = visible.get(name)
        if column is None:
            known = ", ".join(sorted(visible)) or "none"
            raise InvalidProperty(f"unknown parameter {name!r}: not a query parameter "
                                  f"nor a property of {target.info.name} ({known})")
        values = tuple(_typed(v, column.type, name) for v in request.query_params.getlist(name))
        allowed = target.view.allowed(name)
        if allowed is not None and any(v not in allowed for v in values):
            raise Forbidden(f"{name}: you ({target.principal}) may read only "
                            f"{name} in {', '.join(map(str, allowed)) or 'nothing'}")
        filters.append((name, values))
    return tuple(filters)


async def items_query(
    request: Request,
    target: Target,
    settings: Annotated[Settings, Depends(get_settings)],
    limit: Annotated[int | None, Query(
        ge=1, le=MAX_LIMIT, description="Features per page, 1–10000 (default 10).")] = None,
    offset: Annotated[int, Query(ge=0, le=2**62, description="Features to skip; the "
                                 "`next` link sets it.")] = 0,
    bbox: Annotated[str | None, Query(
        description="Only features intersecting this box: `minx,miny,maxx,maxy` (or 6 "
                    "numbers with heights) in `bbox-crs`, CRS84 longitude/latitude by "
                    "default.", examples=["110.6,30.8,110.9,31.0"])] = None,
    bbox_crs: Annotated[str | None, Query(
        alias="bbox-crs", description="CRS of `bbox` (EPSG:4326 is latitude first).")] = None,
    crs: Annotated[str | None, Query(
        description="CRS of the answer: CRS84 (default), EPSG:4326, EPSG:4490 (latitude "
                    "first) or EPSG:3857 (metres); echoed in `Content-Crs`.")] = None,
    datetime: Annotated[str | None, Query(
        max_length=100,
        description="Features placed in this time (OGC API – Features Part 1): an RFC 3339 "
                    "date or timestamp, or an interval `start/end` with `..` for an open "
                    "end, on the collection's temporal property (events: reported_at; "
                    "patrols, inspections, risk reports: date; tasks: issued_at; the logs: "
                    "at). A day alone is the whole UTC day. Collections not placed in time "
                    "(grids, outlets …) select every feature.",
        examples=["2026-06-01/2026-06-30", "2026-06-02T08:00:00Z/.."])] = None,
    filter: Annotated[str | None, Query(
        description="A CQL2 filter (OGC API – Features Part 3) on the collection's "
                    "queryables (`/collections/{collectionId}/queryables`), in "
                    "`filter-lang`; your role's row scope applies outside it.",
        examples=["tier = '助农点' AND S_INTERSECTS(geometry, BBOX(110.6,30.8,110.9,31.0))"],
    )] = None,
    filter_lang: Annotated[str | None, Query(
        alias="filter-lang", description="The encoding of `filter`: `cql2-text` (default) "
        "or `cql2-json` (`cql-text` is read as cql2-text).",
        json_schema_extra={"enum": ["cql2-text", "cql2-json", "cql-text"]})] = None,
    filter_crs: Annotated[str | None, Query(
        alias="filter-crs", description="CRS of the geometries in `filter`: CRS84 "
        "(default), EPSG:4326 or EPSG:4490 (latitude first), EPSG:3857.")] = None,
    sortby: Annotated[str | None, Query(
        description="Sort order: queryables separated by commas, each `+name` or `name` "
                    "ascending, `-name` descending (`sortby=-households,code`).")] = None,
) -> ItemsQuery:
    if limit is None:
        limit = settings.default_limit
    if limit > settings.max_limit:
        raise InvalidLimit(f"limit {limit}: at most {settings.max_limit}")
    box = parse_bbox(bbox, parse_crs(bbox_crs, "bbox-crs"))
    if box is not None and not target.info.spatial:
        raise InvalidBBox(f"collection {target.info.name!r} has no geometry to filter by bbox")
    filters = property_filters(request, target)
    where = None
    when = None
    if datetime is not None:
        schema = schema_for(target.info.name)
        when = datetime_condition(datetime, schema.temporal if schema is not None and
                                  target.info.column(schema.temporal or "") is not None
                                  else None)
    if filter is not None or when is not None:
        node = parse_filter(filter, filter_lang) if filter is not None else None
        node = when if node is None else node if when is None else ast.And(node, when)
        where = compile_filter(node, target.view, target.info.name, target.info.spatial,
                               parse_filter_crs(filter_crs))
    elif filter_lang is not None or filter_crs is not None:
        parse_filter_crs(filter_crs)
    order = parse_sortby(sortby, target.view, target.info.name)
    return FilteredQuery(box, filters, limit, offset, parse_crs(crs), where, order)


Items = Annotated[ItemsQuery, Depends(items_query)]


def check_tile(z: int, x: int, y: int) -> None:
    if not 0 <= z <= 24:
        raise InvalidParameter(f"zoom {z}: expected 0–24")
    if not (0 <= x < 2**z and 0 <= y < 2**z):
        raise InvalidParameter(f"tile {z}/{x}/{y}: x and y must lie in 0–{2**z - 1}")
