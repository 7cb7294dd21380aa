"""Benchmark a CQL2 filter query against tipg's CQL2 on the same PostGIS table.

One command::

    .venv/bin/python scripts/bench_filter.py            # 10^5 grids, 8 s per measurement

It loads the 10^5 grids of ``scripts/bench_api.py`` (a Voronoi tiling of Zigui) into a
throw-away database on ``$GISGRID_BENCH_PG`` and serves that table with gis-grid (one
uvicorn worker, as ``gisgrid serve`` ships) and tipg (its own virtualenv from PyPI, as in
bench_api.py), in turn, ``--rounds`` times. ``wrk`` then drives 16 connections over 16
``items`` requests, each one CQL2-text filter::

    kind = 'urban' AND households > 100 AND S_INTERSECTS(geom, POLYGON((…)))

(an attribute test and a box holding 2,000–4,000 grids, ~400 of which match) with
``limit=1000``. Both servers' first answers are checked to hold the same number of
features. It prints requests/s, p50 and p99 per server and round, and the ratio against
tipg (target: ≥ 1.0×).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import urllib.parse
import warnings
from pathlib import Path

import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.auth import create_key  # noqa: E402
from layers.postgis import PostGISStore  # noqa: E402
from scripts.bench_api import (  # noqa: E402
    CONNECTIONS,
    drive,
    fetch,
    ours,
    peer_venv,
    pick_bboxes,
    tipg,
    version_of,
    voronoi_grids,
)
from tests.api.server import database  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_filter: needs wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    base = os.environ.get("GISGRID_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grids = voronoi_grids(args.grids)
    boxes = pick_bboxes(grids, 16)
    filters = [f"kind = 'urban' AND households > 100 AND S_INTERSECTS(geom, "
               f"{shapely.box(*b).wkt})" for b in boxes]
    queries = [f"filter={urllib.parse.quote(f)}&filter-lang=cql2-text&limit=1000"
               for f in filters]
    rps: dict[str, list[float]] = {}
    with database(base, prefix="gisgrid_bench") as url:
        store = PostGISStore(url)
        store.write("grids", grids)
        _, key = create_key(store, "regulator")
        store.close()
        servers = [
            ("gis-grid", lambda: ours(url, 1, key, 0), "/collections/grids/items?",
             {"X-API-Key": key}),
            ("tipg", lambda: tipg(url, 1), "/collections/public.grids/items?", {}),
        ]
        counts = {}
        for round_ in range(args.rounds):
            for name, start, path, headers in servers:
                with start() as server:
                    page = json.loads(fetch(server + path + queries[0],
                                            {**headers, "Accept": "application/geo+json"}))
                    counts[name] = len(page["features"])
                    r = drive(server, [path + q for q in queries], args.seconds, headers,
                              "application/geo+json")
                rps.setdefault(name, []).append(r["rps"])
                print(f"round {round_ + 1} {name:<9} {r['rps']:7.1f} req/s  p50 "
                      f"{r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  errors "
                      f"{r['errors']}", flush=True)
        if len(set(counts.values())) != 1:
            print(f"bench_filter: the servers disagree on the first page: {counts}",
                  file=sys.stderr)
            return 1
    version = version_of(peer_venv("tipg") / "bin" / "python", "tipg")
    ours_best, tipg_best = max(rps["gis-grid"]), max(rps["tipg"])
    print(f"\nCQL2 filter, {args.grids:,} grids, {counts['gis-grid']} features a page, "
          f"{CONNECTIONS} connections, 1 worker each, tipg {version}: gis-grid "
          f"{ours_best:.1f} req/s, tipg {tipg_best:.1f} req/s, "
          f"{ours_best / tipg_best:.1f}x (target >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
