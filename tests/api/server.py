"""Helpers of the HTTP service tests: a sample store with grids of two banks, API keys of
every role, and the real app served by uvicorn on a free localhost port in a thread.

The benchmarks in scripts/ import them too (a throw-away database, a free port, a server
command run as a process until it answers, the tile of a point).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import geopandas as gpd
import httpx
import pandas as pd
import psycopg
import pytest
import shapely
import uvicorn
from psycopg import sql

from api.app import create_app
from api.auth import create_key
from api.settings import Settings
from layers.store import Store, open_store
from layers.synthetic import build_sample

HOUSEHOLDS = 5000
BANK_A, BANK_B = "NSH", "YCB"


def _grids(units: gpd.GeoDataFrame, staff: pd.DataFrame, bank: str) -> gpd.GeoDataFrame:
    """Every unit as a level-1 grid of ``bank``, its workers assigned in turn."""
    workers = staff.loc[(staff["institution"] == bank) & (staff["role"] != "manager"), "id"]
    workers = workers.tolist() or [None]
    return gpd.GeoDataFrame({
        "code": units["code"].to_numpy(), "level": 1, "kind": units["kind"].to_numpy(),
        "zone": units["zone"].to_numpy(), "institution": bank,
        "worker": [workers[i % len(workers)] for i in range(len(units))],
        "households": units["households"].to_numpy(), "source": "synthetic",
    }, geometry=units.geometry.to_numpy(), crs=units.crs)


@dataclass
class Sample:
    layers: dict[str, pd.DataFrame]
    worker_a: str  # a grid worker of bank A holding grids
    worker_b: str


def load_sample(store: Store) -> Sample:
    """Write the Zigui sample (5,000 households), grids of NSH (``grids``) and YCB
    (``grids__ycb``), a few events and an across-bank overlap layer into ``store``."""
    layers = build_sample("420527", households=HOUSEHOLDS)
    layers["grids"] = _grids(layers["units"], layers["staff"], BANK_A)
    layers["grids__ycb"] = _grids(layers["units"], layers["staff"], BANK_B)
    worker_a = layers["grids"]["worker"].iloc[0]
    worker_b = layers["grids__ycb"]["worker"].iloc[0]
    units = layers["units"]
    now = pd.Timestamp(dt.datetime(2026, 6, 1, 8, 0, tzinfo=dt.UTC))
    layers["events"] = gpd.GeoDataFrame({
        "id": ["E-1", "E-2", "E-3"], "kind": ["general", "coordination", "general"],
        "grid": units["code"].iloc[:3].to_numpy(),
        "reporter": [worker_a, worker_a, worker_b], "state": "reported",
        "reported_at": [now] * 3,
    }, geometry=shapely.point_on_surface(units.geometry.iloc[:3].to_numpy()), crs=units.crs)
    layers["overlaps"] = gpd.GeoDataFrame({
        "unit": units["code"].iloc[:2].to_numpy(), "institutions": ["NSH;YCB"] * 2,
        "count": [2, 2]}, geometry=units.geometry.iloc[:2].to_numpy(), crs=units.crs)
    for name, frame in layers.items():
        store.write(name, frame)
    return Sample(layers, worker_a, worker_b)


@dataclass
class Keys:
    regulator: str
    admin_a: str
    admin_b: str
    worker_a: str
    worker_b: str
    ids: dict[str, str] = field(default_factory=dict)


def make_keys(store: Store, sample: Sample) -> Keys:
    made = {
        "regulator": create_key(store, "regulator"),
        "admin_a": create_key(store, "admin", BANK_A),
        "admin_b": create_key(store, "admin", BANK_B),
        "worker_a": create_key(store, "worker", BANK_A, sample.worker_a),
        "worker_b": create_key(store, "worker", BANK_B, sample.worker_b),
    }
    return Keys(**{k: token for k, (_, token) in made.items()},
                ids={k: key_id for k, (key_id, _) in made.items()})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The app served by uvicorn in a thread, on 127.0.0.1."""

    def __init__(self, store_url: str, settings: Settings | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(store_url, settings), host="127.0.0.1",
                                port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@contextmanager
def served(command: list[str], port: int, probe: str, *, env: dict | None = None,
           headers: dict | None = None, cwd: str | None = None,
           log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run a server command (its own process group, e.g. uvicorn with several workers) on
    127.0.0.1:``port`` until the block ends; yield its base URL and process once
    ``probe`` answers 200.

    ``env`` is added to this process's environment. The output goes to ``log`` (default:
    a temporary file), whose tail is raised if the server exits or does not answer
    within 90 s.
    """
    if log is None:
        log = Path(tempfile.NamedTemporaryFile(prefix="gisgrid-server-", suffix=".log",
                                               delete=False).name)
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}{probe}",
                                                 headers=headers or {})
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start; see {log}:\n"
                                   + log.read_text()[-3000:])
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def serve_process(command: list[str], port: int, probe: str, **options) -> Iterator[str]:
    """``served``, yielding the base URL alone."""
    with served(command, port, probe, **options) as (url, _):
        yield url


#: ``gisgrid serve`` as a subprocess (the service as an operator starts it).
SERVE = [sys.executable, "-c", "from gis_grid.cli.service import serve; serve()"]


def bbox_of(frame: gpd.GeoDataFrame, n: int) -> tuple[float, float, float, float]:
    """A box around the first ``n`` features."""
    return tuple(shapely.total_bounds(frame.geometry.iloc[:n].to_numpy()))


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The WebMercatorQuad tile (x, y) holding a point."""
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    rad = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(rad)) / math.pi) / 2.0 * n)
    return x, y


#: Settings of the test servers: a small upload limit (413 is tested) and keys reloaded
#: quickly (revocation is tested).
TEST_SETTINGS = Settings(max_upload_bytes=256 * 1024, keys_ttl_s=0.5, catalog_ttl_s=0.5)


@contextmanager
def database(base_url: str, prefix: str = "gisgrid_api",
             connect_timeout: int | None = None) -> Iterator[str]:
    """A throw-away PostGIS database ``<prefix>_<random>`` on the server at ``base_url``,
    dropped afterwards (the benchmarks in scripts/ use it too, with their own prefix and,
    for an optional peer, a ``connect_timeout`` in seconds on the creating connection)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    timeout = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    with psycopg.connect(base_url, autocommit=True, **timeout) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@dataclass
class Service:
    """A running service over a loaded store, with a client and keys of every role."""

    kind: str
    store_url: str
    url: str
    keys: Keys
    sample: Sample
    client: httpx.Client

    def get(self, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers = {"X-API-Key": key, **headers}
        return self.client.get(path, headers=headers, **kwargs)

    def post(self, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers = {"X-API-Key": key, **headers}
        return self.client.post(path, headers=headers, **kwargs)

    def store(self) -> Store:
        return open_store(self.store_url)


@contextmanager
def running_service(kind: str, request: pytest.FixtureRequest, folder: Path,
                    settings: Settings = TEST_SETTINGS) -> Iterator[Service]:
    """Load the sample into a fresh store of ``kind`` and serve it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "gpkg":
            stack = _nothing(str(folder / "api.gpkg"))
        else:
            stack = database(request.getfixturevalue("postgis_url"))
        with stack as url:
            with open_store(url) as store:
                sample = load_sample(store)
                keys = make_keys(store, sample)
            with Server(url, settings) as server, httpx.Client(
                    base_url=server.url, timeout=60) as client:
                yield Service(kind, url, server.url, keys, sample, client)


@contextmanager
def _nothing(value: str) -> Iterator[str]:
    yield value
