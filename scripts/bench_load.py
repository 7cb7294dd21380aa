"""Benchmark: bulk-load household points through each store, against ogr2ogr.

    .venv/bin/python scripts/bench_load.py [--n 1000000] [--pg postgresql://...]

Generates ``--n`` households (schema ``households``: id, count, unit, source; random
points in a ~50 km box around 110.8°E 30.9°N, seeded), saves them as a GeoPackage with
GDAL, then loads that file in separate processes:

- ours: read the file (pyogrio) and ``store.write("households", frame)``, once per store;
- ogr2ogr: the same file into a new GeoPackage, and into PostGIS with COPY.

Each load runs in a child process so that its peak RSS (from ``os.wait4``) is its own.
Prints wall time, time of the write itself, peak memory and the ratio ours/ogr2ogr.
Targets: GeoPackage < 20 s and < 1.5 GB; PostGIS within 2× of ogr2ogr. Without
``--pg`` a temporary database is created on 127.0.0.1:5432 (as user postgres, or at
``GISGRID_TEST_PG``) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

GPKG_SECONDS, GPKG_BYTES, PG_RATIO = 20.0, 1.5e9, 2.0
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def make_households(n: int, seed: int = 42):
    """``n`` households in a ~50 km box around Zigui county (秭归县)."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import shapely

    rng = np.random.default_rng(seed)
    units = pd.Series(rng.integers(0, 400, n)).map("420527{:06d}".format)
    return gpd.GeoDataFrame(
        {"id": np.arange(n, dtype="int64"), "count": rng.integers(1, 8, n),
         "unit": units.astype("str"), "source": pd.Series(["synthetic"] * n, dtype="str")},
        geometry=shapely.points(rng.uniform(110.55, 111.05, n), rng.uniform(30.675, 31.125, n)),
        crs="EPSG:4326",
    )


def child(kind: str, source: str, target: str, schema: str = "public") -> None:
    """Load ``source`` into the store at ``target``; print timings as JSON."""
    import pyogrio

    if kind == "make":
        started = time.perf_counter()
        make_households(int(target)).to_file(source, layer="households", engine="pyogrio")
        print(json.dumps({"make": time.perf_counter() - started}))
        return
    started = time.perf_counter()
    frame = pyogrio.read_dataframe(source, layer="households")
    read = time.perf_counter() - started
    write = 0.0
    if kind != "read-only":
        from layers.gpkg import GeoPackageStore
        from layers.postgis import PostGISStore

        store = (GeoPackageStore(target) if kind == "gpkg"
                 else PostGISStore(target, schema=schema))
        started = time.perf_counter()
        store.write("households", frame)
        write = time.perf_counter() - started
        assert store.layers()[0].count == len(frame)
        store.close()
    print(json.dumps({"read": read, "write": write}))


def run(args: list[str]) -> dict:
    """Run a child process; its wall time, peak RSS and (for ours) JSON report."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors)
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            errors.seek(0)
            sys.exit(f"{' '.join(args[:3])} … failed:\n{errors.read().decode(errors='replace')}")
    report = json.loads(out.decode().strip().splitlines()[-1]) if args[0] == sys.executable \
        else {}
    return {"wall": wall, "rss": usage.ru_maxrss * 1024, **report}


def ours(kind: str, source: Path, target: str, *more: str) -> dict:
    return run([sys.executable, __file__, "--child", kind, str(source), target, *more])


def temporary_database(base: str):
    """A throw-away database on ``base`` and the function that drops it. Made here, not by
    tests.api.server.database: importing the test helpers would load geopandas and the
    service into the parent, whose memory the children's peak RSS counts."""
    import psycopg
    from psycopg import sql

    name = f"gisgrid_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(base, autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))

    def drop() -> None:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        admin.close()

    return url, drop


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def line(label: str, result: dict) -> str:
    read, write = (f"{result[k]:8.2f}" if result.get(k) else f"{'':8}" for k in ("read", "write"))
    return f"  {label:<34}{result['wall']:8.2f}{read}{write}{result['rss'] / 2**20:10.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="households (10^6)")
    parser.add_argument("--pg", help="PostgreSQL URL of a PostGIS database to load into "
                        "(default: a temporary database, dropped afterwards)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    # The parent stays small (no geopandas, no data): a child's peak RSS counts the
    # parent's memory it was forked from.
    base = os.environ.get("GISGRID_TEST_PG") or DEFAULT_PG
    pg_url, drop = (args.pg, None) if args.pg else temporary_database(base)
    # A schema of its own, so that loading into an existing database touches nothing else.
    schema = f"gisgrid_bench_{secrets.token_hex(4)}"
    try:
        with tempfile.TemporaryDirectory(prefix="gisgrid-bench-") as tmp:
            work = Path(tmp)
            source = work / "source.gpkg"
            made = ours("make", source, str(args.n))
            where = urlsplit(pg_url)
            print(f"gis-grid store load benchmark: {args.n:,} household points "
                  f"(source {source.stat().st_size / 2**20:.0f} MB, made in "
                  f"{made['make']:.1f} s); PostGIS at {where.hostname}:{where.port or 5432}"
                  f"{where.path}")
            print(f"  {'':<34}{'wall s':>8}{'read s':>8}{'write s':>8}{'peak MB':>10}")
            baseline = ours("read-only", source, "")
            print(line("read the source only (pyogrio)", baseline))

            gpkg = ours("gpkg", source, str(work / "ours.gpkg"))
            gpkg_ogr = run(["ogr2ogr", "-f", "GPKG", str(work / "ogr.gpkg"), str(source),
                            "households"])
            print(line("GeoPackageStore", gpkg))
            print(line("ogr2ogr → GPKG", gpkg_ogr))

            pg = ours("postgis", source, pg_url, schema)
            pg_ogr = run(["ogr2ogr", "-f", "PostgreSQL", f"PG:{pg_url}", str(source),
                          "households", "-nln", "households_ogr2ogr", "-lco", f"SCHEMA={schema}",
                          "-lco", "GEOMETRY_NAME=geom", "--config", "PG_USE_COPY", "YES"])
            print(line("PostGISStore", pg))
            print(line("ogr2ogr → PostGIS (COPY)", pg_ogr))
    finally:
        if drop is not None:
            drop()
        else:
            drop_schema(pg_url, schema)

    print("\nratios ours/ogr2ogr (write alone; whole process incl. reading the source)")
    for label, mine, theirs in (("GeoPackage", gpkg, gpkg_ogr), ("PostGIS", pg, pg_ogr)):
        print(f"  {label:<12}{mine['write'] / theirs['wall']:6.2f}"
              f"{mine['wall'] / theirs['wall']:8.2f}")
    checks = [
        (f"GeoPackage write < {GPKG_SECONDS:.0f} s", gpkg["write"] < GPKG_SECONDS),
        (f"GeoPackage load peak < {GPKG_BYTES / 1e9:.1f} GB", gpkg["rss"] < GPKG_BYTES),
        (f"PostGIS load within {PG_RATIO:.0f}× of ogr2ogr", pg["wall"] < PG_RATIO * pg_ogr["wall"]),
    ]
    print("\ntargets")
    for label, ok in checks:
        print(f"  {'ok  ' if ok else 'MISS'} {label}")


if __name__ == "__main__":
    main()
