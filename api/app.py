"""The FastAPI application: ``create_app(store_url, settings)``.

Groups the endpoints by standard as tipg's factory does — OGC API – Features
(``api.features``, with Part 5 schemas from ``api.schemas``), OGC API – Tiles
(``api.tiles``), analyses and jobs (``api.analyses``) and the same analyses as OGC API –
Processes (``api.processes``), uploads (``api.uploads``) — over one provider
(``api.providers``) chosen by the store's kind. The store is opened when the app starts
(lifespan) and closed when it stops.

Example
-------
>>> import uvicorn                                                     # doctest: +SKIP
>>> uvicorn.run(create_app("postgresql://gisgrid@db/gisgrid"), port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from functools import partial
from importlib.metadata import PackageNotFoundError, version

import anyio
from fastapi import FastAPI

from api import (
    analyses,
    errors,
    features,
    field,
    mappage,
    processes,
    records,
    security,
    tiles,
    uploads,
)
from api.auth import KeyRing, read_keys
from api.jobs import JobManager, default_folder
from api.providers import open_provider
from api.settings import Settings
from layers.store import open_store, resolve_store_url

log = logging.getLogger("gisgrid.api")


def _version() -> str:
    try:
        return version("gis-grid")
    except PackageNotFoundError:  # pragma: no cover — running from a bare checkout
        return "0"


def create_app(store_url: str | None = None, settings: Settings | None = None) -> FastAPI:
    """The service over the store at ``store_url`` (default ``$GISGRID_STORE``).

    Parameters
    ----------
    store_url : str, optional
        A ``.gpkg`` path or a ``postgresql://`` URL, as ``gisgrid --store`` takes.
    settings : Settings, optional
        Default: ``Settings.from_env()`` (``GISGRID_API_*`` variables).
    """
    settings = settings or Settings.from_env()
    url = resolve_store_url(store_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = open_store(url)
        provider = open_provider(url, store, settings)
        refresher = None
        try:
            await provider.open()
            app.state.provider = provider
            app.state.keyring = KeyRing(lambda: read_keys(store), ttl=settings.keys_ttl_s)
            # PostGIS keeps the jobs in the store (every process on every machine polls
            # them, and they outlive each); the embedded GeoPackage store, in a folder.
            app.state.jobs = JobManager(store if provider.kind == "postgis" else
                                        settings.jobs_dir or default_folder(url),
                                        settings.job_workers,
                                        max_per_key=settings.max_jobs_per_key)
            refresher = asyncio.create_task(_keep_fresh(app.state.keyring, provider, settings))
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            if hasattr(app.state, "jobs"):
                app.state.jobs.shutdown()
            await provider.close()
            store.close()

    app = FastAPI(
        title=settings.title, version=_version(), lifespan=lifespan,
        description="OGC API – Features (Part 1, Part 2 CRS, Part 3 filtering, Part 5 "
                    "schemas), OGC API – Tiles, OGC API – Processes (the analyses) and "
                    "uploads for financial service grids (金融服务网格化). Authenticate "
                    "with an API key: `Authorization: Bearer <token>`, `X-API-Key`, or "
                    "HTTP Basic with any user name and the key as the password.",
        docs_url="/docs", redoc_url=None, openapi_url="/openapi.json",
    )
    app.state.settings = settings
    errors.install(app)
    app.state.store_url = url
    mappage.install(app)
    for module in (features, tiles, analyses, processes, uploads, mappage, records, field):
        app.include_router(module.router)
    features.install_openapi(app)
    app.add_middleware(uploads.BodySizeLimit, limit=settings.max_upload_bytes)
    security.install(app)
    return app


async def _keep_fresh(keyring: KeyRing, provider, settings: Settings) -> None:
    """Reload the API keys and the catalog in the background at half their time to live.

    A request finding either stale waits for the reload, and so do all the requests in
    flight with it: with 16 clients that stalled a few dozen requests by tens of ms every
    30 s, which set the p99 latency (scripts/bench_api.py). Reloaded ahead of time, they
    never are stale while the service runs; the time-to-live guarantees stay as they were
    (a request still waits when a reload is late). Not more often than once a second.
    """
    keys_every = max(1.0, settings.keys_ttl_s / 2)
    catalog_every = max(1.0, settings.catalog_ttl_s / 2)
    while True:
        await asyncio.sleep(min(keys_every, catalog_every))
        try:
            if keyring.age >= keys_every:
                await anyio.to_thread.run_sync(partial(keyring.refresh, None, force=True))
            if provider.catalog_age >= catalog_every:
                await provider.reload_catalog()
        except Exception as exc:  # the requests' own reload reports it; keep going
            log.warning("background refresh failed: %s", exc)


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory api.app:app_from_env`` (each worker process)."""
    return create_app()
