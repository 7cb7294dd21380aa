"""The map page: ``GET /map`` and the map's own scripts at ``/static/maps/``.

The page is ``maps.web.map_page_html`` over the layers the caller may read — the same
rules as the collections (``api.auth.read_rule``): an institution's admin sees its own
grids, outlets, devices and staff, a regulator every institution's with no staff phone.
Every script and stylesheet is the service's own, so the page works on an intranet with
no internet.

A browser cannot send an API key header when it follows a link, so ``/map?key=TOKEN``
checks the key, sets a session cookie for this path and redirects to ``/map`` (the key
then stays out of the address bar and history). The cookie holds no key: it is
``key_id.expiry.signature``, HMAC-signed with the key's stored hash
(``KeyRing.session``), so every worker process can check it and revoking the key ends
it; HttpOnly, ``SameSite=Strict``, ``Path=/map``, ``Max-Age`` of
``GISGRID_API_SESSION_HOURS`` (8 h), and ``Secure`` when the request came over HTTPS
(directly, or ``X-Forwarded-Proto: https`` from a trusted proxy) or the public URL is
HTTPS. The redirect is built from the setting ``public_url`` (relative ``/map`` without
it), never from the Host header. Scripts may send the key header as everywhere else.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Annotated

import anyio
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.auth import (
    OWN_GRIDS,
    OWN_STAFF,
    Principal,
    layer_kind,
    read_rule,
    split_token,
    token_from_headers,
)
from api.errors import Forbidden, InvalidParameter, NotFound
from gis_grid.naming import drawn_grid_key, grid_layers
from maps.web import STATIC_DIR, STATIC_URL, map_page_html

COOKIE = "gisgrid_session"
#: Seconds a built page is reused for the same caller and layers: building the Zigui page
#: takes about a second, and a map is opened far more often than its layers change.
CACHE_SECONDS = 60.0
#: Bounds of the built pages kept: a caller choosing a new ``basemap`` per request must
#: not grow the server without end (the Zigui page is about 4 MB of text).
CACHE_ENTRIES = 32
CACHE_BYTES = 128 * 2**20


class PageCache:
    """Built map pages by (store, caller's scope, layers, basemap): least recently used
    first out, bounded in entries and in characters, each entry kept ``ttl`` seconds.

    Written here rather than taken from ``cachetools`` because it needs the three bounds at
    once (cachetools' caches bound one size measure; the TTL one drops expired entries only
    when it is touched, which is what this one does too, on every ``put``)."""

    def __init__(self, entries: int = CACHE_ENTRIES, size: int = CACHE_BYTES,
                 ttl: float = CACHE_SECONDS) -> None:
        self.entries, self.size, self.ttl = entries, size, ttl
        self._pages: OrderedDict[tuple, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: tuple, now: float) -> str | None:
        with self._lock:
            found = self._pages.get(key)
            if found is None:
                return None
            if now - found[0] >= self.ttl:
                self._drop(key)
                return None
            self._pages.move_to_end(key)
            return found[1]

    def put(self, key: tuple, page: str, now: float) -> None:
        with self._lock:
            if key in self._pages:
                self._drop(key)
            for old in [k for k, (at, _) in self._pages.items() if now - at >= self.ttl]:
                self._drop(old)
            if len(page) > self.size:
                return  # bigger than the whole cache: served, not kept
            self._pages[key] = (now, page)
            self.bytes += len(page)
            while len(self._pages) > self.entries or self.bytes > self.size:
                self._drop(next(iter(self._pages)))

    def _drop(self, key: tuple) -> None:
        _, page = self._pages.pop(key)
        self.bytes -= len(page)

router = APIRouter(tags=["Map"])


def install(app) -> None:
    """Mount the map's static files (Leaflet and the product's own scripts); give the app
    its bounded cache of built pages."""
    app.mount(STATIC_URL.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="maps-static")
    app.state.map_pages = PageCache()


async def _caller(request: Request, key: str | None) -> Principal:
    # A key in the link is the one checked (it is about to become the session), so a
    # malformed one is refused before it reaches a header.
    ring = request.app.state.keyring
    headers = request.headers
    session = request.cookies.get(COOKIE)
    if not key and session and not (headers.get("authorization") or headers.get("x-api-key")):
        key_id = session.split(".", 1)[0]
        if ring.needs_refresh(key_id):
            await anyio.to_thread.run_sync(ring.refresh, key_id)
        return ring.verify_session(session)
    token = key or token_from_headers(headers.get("authorization"), headers.get("x-api-key"))
    key_id, _ = split_token(token)
    if ring.needs_refresh(key_id):
        await anyio.to_thread.run_sync(ring.refresh, key_id)
    return ring.verify(token)


def _scoped(frame: pd.DataFrame, name: str, principal: Principal, lookups: dict) -> tuple:
    """The rows and columns of one layer the caller may see, and whether phones show."""
    rule = read_rule(principal, name, frozenset(frame.columns))
    keep = pd.Series(True, index=frame.index)
    for column, values in rule.fixed.items():
        if column in frame.columns:
            keep &= frame[column].astype("string").isin([str(v) for v in values]).fillna(False)
    for column, what in rule.lookups.items():
        if column in frame.columns:
            keep &= frame[column].astype("string").isin(lookups[what]).fillna(False)
    scoped = frame[keep.to_numpy()].drop(columns=[c for c in rule.hidden if c in frame])
    return scoped, "phone" not in rule.hidden


def _visible_layers(layers: dict[str, pd.DataFrame], principal: Principal
                    ) -> tuple[dict[str, pd.DataFrame], bool]:
    grids = [f for n, f in layers.items() if layer_kind(n) == "grids"]
    staff = layers.get("staff")
    lookups = {OWN_GRIDS: [], OWN_STAFF: []}
    if principal.institution:
        for frame in grids:
            mine = frame.get("institution", pd.Series(dtype=str)).astype(str) == \
                principal.institution
            if principal.worker:
                mine &= frame.get("worker", pd.Series(dtype=str)).astype(str) == \
                    principal.worker
            lookups[OWN_GRIDS] += frame.loc[mine, "code"].astype(str).tolist()
        if staff is not None:
            own = staff["institution"].astype(str) == principal.institution
            lookups[OWN_STAFF] = staff.loc[own, "id"].astype(str).tolist()
    visible: dict[str, pd.DataFrame] = {}
    phones = True
    for name, frame in layers.items():
        try:
            scoped, may_see_phones = _scoped(frame, name, principal, lookups)
        except (Forbidden, NotFound):
            if layer_kind(name) == "ledger":
                # The page shows only each grid's files % (an aggregate a regulator may
                # read); the ledger rows themselves never reach the page.
                visible[name] = frame[[c for c in frame.columns
                                       if c in ("grid", "institution", "period")
                                       or c.endswith(("_total", "_files"))]]
            continue
        if layer_kind(name) == "staff":
            phones = may_see_phones
        visible[name] = scoped
    return visible, phones


@router.get("/map", response_class=HTMLResponse, summary="The interactive map (HTML)",
            responses={303: {"description": "Key accepted: redirect to /map"}})
async def map_page(
    request: Request,
    grids: Annotated[list[str] | None, Query(description="Grid layers to draw (repeatable); "
                                             "default: every grid layer the caller may read")]
    = None,
    key: Annotated[str | None, Query(description="An API key, kept in a cookie for the "
                                     "map page; the browser is sent on to /map")] = None,
    basemap: Annotated[str | None, Query(description="Tile URL template of the office's "
                                         "own tile server")] = None,
):
    principal = await _caller(request, key)
    if key:
        settings = request.app.state.settings
        public = (settings.public_url or "").rstrip("/")
        query = request.url.remove_query_params("key").query
        answer = RedirectResponse(f"{public}/map" + (f"?{query}" if query else ""),
                                  status_code=303)
        seconds = settings.session_hours * 3600
        secure = request.url.scheme == "https" or public.startswith("https://")
        answer.set_cookie(COOKIE, request.app.state.keyring.session(principal, seconds),
                          max_age=int(seconds), httponly=True, samesite="strict",
                          path="/map", secure=secure)
        return answer
    provider = request.app.state.provider
    catalog = await provider.catalog()
    names = grid_layers(catalog)
    if grids:
        # Only grid layers are drawn as grids; any other name is a bad parameter, named
        # the same whether or not such a layer exists (no oracle).
        other = [n for n in grids if n not in names]
        if other:
            raise InvalidParameter(f"grids: {', '.join(sorted(set(other)))} is not a grid "
                                   "layer; give grid layers (grids, grids__<institution>)")
    wanted = list(dict.fromkeys(grids)) if grids else names
    if not wanted:
        raise NotFound("no grid layer to draw: make one with `gisgrid partition`")
    store_url = request.app.state.store_url
    scope = (principal.role, principal.institution, principal.worker)
    cache_key = (store_url, scope, tuple(wanted), basemap)
    pages: PageCache = request.app.state.map_pages
    cached = pages.get(cache_key, time.monotonic())
    if cached is not None:
        return HTMLResponse(cached)

    def build() -> str:
        from maps.data import load_layers

        layers = load_layers(store_url, grids=wanted)
        visible, phones = _visible_layers(layers, principal)
        # Grid layers left empty by the caller's scope are not drawn; the first that is
        # not becomes the main one.
        grid_names = grid_layers(visible)
        drawn = [n for n in grid_names if not visible[n].empty]
        if not drawn:
            raise Forbidden("none of these grid layers holds grids you may see")
        frames = {n: visible.pop(n) for n in grid_names}
        visible["grids"] = frames[drawn[0]]
        for k, name in enumerate(drawn[1:], start=1):
            visible[drawn_grid_key(name, k)] = frames[name]
        return map_page_html(visible, static_base=STATIC_URL, basemap_url=basemap,
                             viewer_may_see_phones=phones)

    page = await anyio.to_thread.run_sync(build)
    pages.put(cache_key, page, time.monotonic())
    return HTMLResponse(page)
