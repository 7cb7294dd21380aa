"""The FastAPI application: ``create_app(store_url, settings)``.

Groups the endpoints by standard as tipg's factory does — OGC API – Features
(``api.features``), vector tiles (``api.tiles``), analyses and jobs (``api.analyses``),
uploads (``api.uploads``) — over one provider (``api.providers``) chosen by the store's
kind. The store is opened when the app starts (lifespan) and closed when it stops.

Example
-------
>>> import uvicorn                                                     # doctest: +SKIP
>>> uvicorn.run(create_app("postgresql://gisgrid@db/gisgrid"), port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from api import analyses, errors, features, mappage, tiles, uploads
from api.auth import KeyRing, read_keys
from api.jobs import JobManager
from api.providers import open_provider
from api.settings import Settings
from layers.store import open_store, resolve_store_url


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
        try:
            await provider.open()
            app.state.provider = provider
            app.state.keyring = KeyRing(lambda: read_keys(store), ttl=settings.keys_ttl_s)
            app.state.jobs = JobManager(settings.jobs_dir, settings.job_workers)
            yield
        finally:
            if hasattr(app.state, "jobs"):
                app.state.jobs.shutdown()
            await provider.close()
            store.close()

    app = FastAPI(
        title=settings.title, version=_version(), lifespan=lifespan,
        description="OGC API – Features (Part 1, Part 2 CRS), vector tiles, analyses and "
                    "uploads for financial service grids (金融服务网格化). Authenticate "
                    "with an API key: `Authorization: Bearer <token>` or `X-API-Key`.",
        docs_url="/docs", redoc_url=None, openapi_url="/openapi.json",
    )
    app.state.settings = settings
    errors.install(app)
    app.state.store_url = url
    mappage.install(app)
    for module in (features, tiles, analyses, uploads, mappage):
        app.include_router(module.router)
    features.install_openapi(app)
    app.add_middleware(uploads.BodySizeLimit, limit=settings.max_upload_bytes)
    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory api.app:app_from_env`` (each worker process)."""
    return create_app()
