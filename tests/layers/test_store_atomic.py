"""A write that fails half-way leaves the previous layer intact, in both stores.

Two kinds of failure: (a) in-process — the write raises in the middle (an injected
failure while rows are going in, after the old layer is already dropped inside the
transaction, or a constraint the database itself rejects at the end); (b) a real kill —
a child process replacing a layer with 10⁶ points is killed with SIGKILL while its
transaction is open. Then the store is opened again: the old layer must be exactly as it
was, the store usable, and a GeoPackage still a file GDAL opens.

The child announces the point it reached by wrapping one of the store's internal steps
(in the child only; the store has no test hooks): it prints a line, the parent kills.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pyogrio
import pytest
import shapely

import layers.gpkg
import layers.postgis
from gis_grid.errors import StoreError
from tests.layers.test_store_contract import assert_same, households, outlets

OLD_ROWS = 3_000


def _snapshot(store) -> tuple:
    return store.layers(), store.read("households"), store.read("outlets")


def _assert_intact(store, before: tuple) -> None:
    layers_before, households_before, outlets_before = before
    assert store.layers() == layers_before
    assert_same(store.read("households"), households_before)
    assert_same(store.read("outlets"), outlets_before)
    window = (110.75, 30.85, 110.85, 30.95)
    expected = households_before[households_before.intersects(shapely.box(*window))]
    assert store.read("households", bbox=window)["id"].tolist() == expected["id"].tolist()


def _assert_clean(store_location) -> None:
    """No half-built table left behind; a GeoPackage's indexes are consistent."""
    if store_location.kind == "gpkg":
        with sqlite3.connect(store_location.path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT rtreecheck('rtree_households_geom')").fetchone()[0] \
                == "ok"
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                "'gpkg%' AND name NOT LIKE 'rtree%' AND name NOT LIKE 'sqlite%'")}
        assert tables == {"households", "outlets", "gisgrid_history"}
    else:
        with psycopg.connect(store_location.url, autocommit=True) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s",
                [store_location.schema])}
        assert tables == {"households", "outlets", "gisgrid_layers", "gisgrid_migrations",
                          "gisgrid_history", "gisgrid_jobs"}


@pytest.fixture
def filled(store):
    store.write("households", households(OLD_ROWS))
    store.write("outlets", outlets())
    return store


def _step(kind: str, point: str) -> tuple[object, str]:
    """The store module and the internal step at which a write is interrupted."""
    module = layers.gpkg if kind == "gpkg" else layers.postgis
    if point == "loading":
        return module, "_insert_chunk" if kind == "gpkg" else "_copy_chunk"
    return module, "_create_layer" if kind == "gpkg" else "_record_layer"


# --- (a) failures inside the process ----------------------------------------------------

@pytest.mark.parametrize("point", ["loading", "before-commit"])
def test_failure_half_way_keeps_the_old_layer(filled, store_location, monkeypatch, point):
    before = _snapshot(filled)
    module, step = _step(store_location.kind, point)
    original = getattr(module, step)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if point == "loading" and len(calls) == 3:  # two chunks in, the old layer dropped
            raise RuntimeError("injected failure")
        result = original(*args, **kwargs)
        if point == "before-commit":  # everything done but COMMIT
            raise RuntimeError("injected failure")
        return result

    monkeypatch.setattr(module, "CHUNK_ROWS", 1_000)
    monkeypatch.setattr(module, step, failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        filled.write("households", households(10_000, seed=1))
    assert calls
    monkeypatch.undo()
    _assert_intact(filled, before)
    _assert_clean(store_location)
    filled.write("households", households(500, seed=2))  # still usable
    assert_same(filled.read("households"), households(500, seed=2))


def test_database_rejecting_the_data_keeps_the_old_layer(filled, store_location):
    """Duplicate keys break the unique index built after all rows are in."""
    before = _snapshot(filled)
    duplicated = households(5_000, seed=3)
    duplicated.loc[4_999, "id"] = 17
    with pytest.raises(StoreError, match="households"):
        filled.write("households", duplicated)
    _assert_intact(filled, before)
    _assert_clean(store_location)


def test_unstorable_values_keep_the_old_layer(filled, store_location):
    before = _snapshot(filled)
    bad = households(5_000, seed=4).astype({"source": object})
    bad.loc[4_000, "source"] = object()
    with pytest.raises(StoreError, match="source"):
        filled.write("households", bad)
    _assert_intact(filled, before)
    _assert_clean(store_location)


# --- (b) a real kill --------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    kind, address, schema, rows, point = sys.argv[1:6]
    sys.path.insert(0, sys.argv[6])
    from test_store_contract import households
    import layers.gpkg, layers.postgis
    from layers.gpkg import GeoPackageStore
    from layers.postgis import PostGISStore

    store = GeoPackageStore(address) if kind == "gpkg" else PostGISStore(address, schema=schema)
    # A small page cache makes SQLite spill changed pages into the file itself before the
    # kill, so that the recovery (rolling the journal back) has real work to do.
    layers.gpkg.CACHE_KIB = 2_000
    frame = households(int(rows), seed=5)
    module = layers.gpkg if kind == "gpkg" else layers.postgis
    if point == "loading":
        step = "_insert_chunk" if kind == "gpkg" else "_copy_chunk"
    else:
        step = "_create_layer" if kind == "gpkg" else "_record_layer"
    original = getattr(module, step)
    calls = []

    def announcing(*args, **kwargs):
        calls.append(1)
        if point == "loading":
            if len(calls) == 3:  # two chunks of 10^5 rows in, eight to go
                print("WRITING", flush=True)
            return original(*args, **kwargs)
        result = original(*args, **kwargs)
        print("WRITING", flush=True)  # all done but COMMIT
        time.sleep(120)
        return result

    setattr(module, step, announcing)
    store.write("households", frame)
    print("COMMITTED", flush=True)
""")


def _wait_for(process: subprocess.Popen, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            got = process.stdout.readline()
            if got.strip() == line:
                return
            if not got and process.poll() is not None:
                break
    process.kill()
    raise AssertionError(f"the writer never said {line!r}: {process.stderr.read()}")


@pytest.mark.parametrize("point,rows", [("loading", 1_000_000), ("before-commit", 200_000)])
def test_killed_writer_leaves_the_old_layer(filled, store_location, open_again, point, rows):
    before = _snapshot(filled)
    filled.close()
    address = str(store_location.path) if store_location.kind == "gpkg" else store_location.url
    tests_dir = str(Path(__file__).parent)
    size_before = store_location.path.stat().st_size if store_location.kind == "gpkg" else 0
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, store_location.kind, address,
         store_location.schema or "", str(rows), point, tests_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": tests_dir},
    )
    try:
        _wait_for(child, "WRITING", timeout=60)
        if store_location.kind == "gpkg":
            journal = Path(f"{store_location.path}-journal")
            assert journal.exists()  # the transaction has written to the file
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert "COMMITTED" not in child.stdout.read()

    if store_location.kind == "gpkg":
        # The killed transaction had changed the file; its hot journal undoes that.
        assert journal.exists()
        assert store_location.path.stat().st_size > size_before
    again = open_again()
    _assert_intact(again, before)
    _assert_clean(store_location)
    if store_location.kind == "gpkg":
        _assert_gdal_opens(store_location.path)
    again.write("households", households(1_000, seed=6))  # and the store goes on
    assert_same(again.read("households"), households(1_000, seed=6))
    if store_location.kind == "postgis":
        _assert_no_lingering_writer(store_location)


def _assert_gdal_opens(path: Path) -> None:
    info = pyogrio.read_info(path, layer="households")
    assert info["features"] == OLD_ROWS
    if shutil.which("ogrinfo"):
        done = subprocess.run(["ogrinfo", "-so", str(path), "households"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"Feature Count: {OLD_ROWS}" in done.stdout


def _assert_no_lingering_writer(store_location) -> None:
    """The killed client's server session has ended (its transaction rolled back)."""
    query = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
             " AND application_name = 'gis-grid' AND state <> 'idle'"
             " AND pid <> pg_backend_pid()")
    with psycopg.connect(store_location.url, autocommit=True) as conn:
        for _ in range(50):
            if conn.execute(query).fetchone()[0] == 0:
                return
            time.sleep(0.1)
    raise AssertionError("the killed writer's session is still open")
