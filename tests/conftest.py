"""Fixtures for the store tests: a real GeoPackage file and a real PostGIS database.

The PostGIS tests run against a throw-away database ``gisgrid_test_<random>`` created on
the server at ``GISGRID_TEST_PG`` (a base URL such as
``postgresql://postgres@127.0.0.1:5432/postgres``, or just ``host[:port]``; default
127.0.0.1:5432 as user postgres). If that server cannot be reached the PostGIS tests fail:
they prove the real thing, so they are never skipped.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from layers.gpkg import GeoPackageStore
from layers.postgis import PostGISStore, redact_url
from layers.store import Store

PG_ENV = "GISGRID_TEST_PG"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
STORE_KINDS = ("gpkg", "postgis")


def _base_url() -> str:
    value = os.environ.get(PG_ENV) or DEFAULT_PG
    if "://" not in value:
        value = f"postgresql://postgres@{value}/postgres"
    return value


@pytest.fixture(scope="session")
def postgis_url() -> Iterator[str]:
    """A fresh PostGIS database for the session, dropped afterwards."""
    base = _base_url()
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        admin, reason = None, " ".join(str(exc).split())
    if admin is None:
        pytest.fail(
            f"PostgreSQL is not reachable at {redact_url(base)}: {reason}\nThe PostGIS "
            f"store tests need a running PostgreSQL with PostGIS; start one or set {PG_ENV} "
            "to its URL (they are not skipped on purpose).",
            pytrace=False,
        )
    name = f"gisgrid_test_{secrets.token_hex(4)}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        yield url
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        admin.close()


@pytest.fixture(scope="session")
def fresh_database(postgis_url: str) -> Iterator[Callable[[], str]]:
    """Make another fresh PostGIS database on the same server (for a test module whose
    layers must not meet another module's, e.g. its own ``territory``); each is dropped
    at the end of the session."""
    made: list[str] = []
    base = _base_url()

    def _make() -> str:
        name = f"gisgrid_test_{secrets.token_hex(4)}"
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return url

    yield _make
    with psycopg.connect(base, autocommit=True) as admin:
        for name in made:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@pytest.fixture(scope="session")
def cluster():
    """A Dask LocalCluster of 2 single-threaded worker processes, and a client on it,
    shared by the tests of the province fan-out."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local, \
            distributed.Client(local) as client:
        yield client


@pytest.fixture
def gpkg_path(tmp_path: Path) -> Path:
    return tmp_path / "store.gpkg"


@dataclass
class StoreLocation:
    """Where a test's store lives, so that a test can open it again (or a child
    process can open it)."""

    kind: str
    path: Path | None = None
    url: str | None = None
    schema: str | None = None

    def open(self) -> Store:
        if self.kind == "gpkg":
            return GeoPackageStore(self.path)
        return PostGISStore(self.url, schema=self.schema)


@pytest.fixture(params=STORE_KINDS)
def store_location(request: pytest.FixtureRequest, gpkg_path: Path
                   ) -> Iterator[StoreLocation]:
    """Each store kind in turn; a PostGIS test gets a schema of its own, dropped after."""
    if request.param == "gpkg":
        yield StoreLocation("gpkg", path=gpkg_path)
        return
    url = request.getfixturevalue("postgis_url")
    location = StoreLocation("postgis", url=url, schema=f"t_{secrets.token_hex(5)}")
    try:
        yield location
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(location.schema)))


@pytest.fixture
def open_again(store_location: StoreLocation) -> Iterator[Callable[[], Store]]:
    """Open (another) store on the test's location; all are closed afterwards."""
    opened: list[Store] = []

    def _open() -> Store:
        opened.append(store_location.open())
        return opened[-1]

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_again: Callable[[], Store]) -> Store:
    """An opened store of each kind ("gpkg", "postgis"), empty."""
    return open_again()
