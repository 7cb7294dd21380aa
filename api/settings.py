"""Settings of the HTTP service, read from the environment (``GISGRID_API_*``).

Plain environment variables, parsed once when the app is built, as tipg's pydantic
settings are; a test or the ``gisgrid serve`` command passes a ``Settings`` directly.

=================================  =========  =============================================
variable                           default    meaning
=================================  =========  =============================================
GISGRID_API_TITLE                  …          the landing page's title
GISGRID_API_DEFAULT_LIMIT          10         features per page when ``limit`` is absent
GISGRID_API_MAX_LIMIT              10000      the largest ``limit`` accepted (both declared
                                              in the API definition; ``next`` links double
                                              the page up to it)
GISGRID_API_MAX_UPLOAD_MB          50         uploads above this get 413
GISGRID_API_POOL_SIZE              8          PostGIS connections of one server process
GISGRID_API_STATEMENT_TIMEOUT_S    30         a read query running longer is cancelled
GISGRID_API_JOB_WORKERS            1          analyses run at once (the rest queue)
GISGRID_API_CATALOG_TTL_S          5          how long the list of layers is cached
GISGRID_API_KEYS_TTL_S             30         how long API keys are cached (revocation lag)
GISGRID_API_JOBS_DIR               (temp)     GeoPackage store: the folder of job records
                                              and results, shared by workers (default: one
                                              named after the store in the temp folder,
                                              kept across restarts). A PostGIS store keeps
                                              them in its table gisgrid_jobs instead.
GISGRID_API_MAX_JOBS_PER_KEY       4          analyses one API key may have queued or
                                              running at once (the next gets 429)
GISGRID_API_PUBLIC_URL             (none)     the service's public address (e.g.
                                              ``https://grid.example.org``): redirects are
                                              built from it, never from the Host header;
                                              without it they are relative (``/map``)
GISGRID_API_SESSION_HOURS          8          how long the map page's session cookie lasts
GISGRID_API_TILE_CACHE_MB          256        vector tiles kept in memory per server process
                                              (0: none); a tile is served from it only while
                                              its layer's generation is unchanged
=================================  =========  =============================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

PREFIX = "GISGRID_API_"


def _env(name: str, default, cast):
    raw = os.environ.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name}={raw!r}: expected {cast.__name__}") from None


@dataclass(frozen=True)
class Settings:
    """What the service may be tuned by; see the module docstring for the variables."""

    title: str = "gis-grid 金融服务网格 OGC API"
    default_limit: int = 10
    max_limit: int = 10_000
    max_upload_bytes: int = 50 * 1024 * 1024
    #: An upload's size unpacked (a zipped Shapefile's files) and its rows, checked before
    #: it is read: a 15 MB zip of 2·10^6 rows took 4.3 GB of memory.
    max_upload_unpacked_bytes: int = 200 * 1024 * 1024
    max_upload_rows: int = 200_000
    pool_size: int = 8
    statement_timeout_s: float = 30.0
    job_workers: int = 1
    catalog_ttl_s: float = 5.0
    keys_ttl_s: float = 30.0
    jobs_dir: str | None = None
    max_jobs_per_key: int = 4
    public_url: str | None = None
    session_hours: float = 8.0
    #: Decimal places of longitude/latitude in GeoJSON (7 ≈ 1 cm) and of metres (3857).
    degree_digits: int = 7
    metre_digits: int = 2
    #: Features per chunk of a streamed GeoJSON page (one row from PostgreSQL each).
    stream_chunk: int = 500
    #: Memory for cached vector tiles, per server process (0 turns the cache off).
    tile_cache_mb: float = 256.0

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Settings from ``GISGRID_API_*`` variables, then ``overrides`` on top."""
        values = {
            "title": _env("TITLE", cls.title, str),
            "default_limit": _env("DEFAULT_LIMIT", cls.default_limit, int),
            "max_limit": _env("MAX_LIMIT", cls.max_limit, int),
            "max_upload_bytes": int(_env("MAX_UPLOAD_MB", cls.max_upload_bytes / 2**20,
                                         float) * 2**20),
            "max_upload_unpacked_bytes": int(_env(
                "MAX_UPLOAD_UNPACKED_MB", cls.max_upload_unpacked_bytes / 2**20, float)
                * 2**20),
            "max_upload_rows": _env("MAX_UPLOAD_ROWS", cls.max_upload_rows, int),
            "pool_size": _env("POOL_SIZE", cls.pool_size, int),
            "statement_timeout_s": _env("STATEMENT_TIMEOUT_S", cls.statement_timeout_s, float),
            "job_workers": _env("JOB_WORKERS", cls.job_workers, int),
            "catalog_ttl_s": _env("CATALOG_TTL_S", cls.catalog_ttl_s, float),
            "keys_ttl_s": _env("KEYS_TTL_S", cls.keys_ttl_s, float),
            "jobs_dir": _env("JOBS_DIR", None, str),
            "max_jobs_per_key": _env("MAX_JOBS_PER_KEY", cls.max_jobs_per_key, int),
            "public_url": _env("PUBLIC_URL", None, str),
            "session_hours": _env("SESSION_HOURS", cls.session_hours, float),
            "tile_cache_mb": _env("TILE_CACHE_MB", cls.tile_cache_mb, float),
        }
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update(overrides)
        settings = cls(**values)
        if not 1 <= settings.default_limit <= settings.max_limit:
            raise ValueError("default_limit must lie between 1 and max_limit")
        return settings
