"""Soak the HTTP service: many concurrent clients for a bounded time, memory watched.

One command::

    .venv/bin/python scripts/soak_api.py                  # 200 clients, 60 s
    .venv/bin/python scripts/soak_api.py --clients 50 --seconds 20 --store postgresql://…

It loads the Zigui test sample (5,000 households, two banks' grids, events) into a
throw-away GeoPackage (or the store given, which it writes the sample into: give an empty
database), creates a regulator, an administrator and a worker key, and starts
``gisgrid serve`` on 127.0.0.1 only (a free port; never another host). Then ``--clients``
concurrent clients (asyncio + httpx, one connection each) loop for ``--seconds`` over a
mix of what the service is asked in a day, each with one of the three keys:

* the landing page, collections, pages of outlets, grids and staff (``limit=100``, with a
  bbox), single features, vector tiles of the grids, queryables, the map page (cached);
* hostile requests, which must be answered 4xx: a NUL byte in a feature id, a 30-digit
  level, an unknown collection, a malformed bbox, a wrong key, a non-grid layer on the map.

The server's resident memory (its process and children, from /proc) is sampled every
second. It prints the requests made, requests/s, p50 and p99 latency, the answers by
status, the 5xx count (must be 0), and the memory at start, peak and end with the growth
over the second half of the run (flat: under 10 %). Exit 0 when there is no 5xx and the
memory is flat, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import numpy as np

# The repository root, on the path for ``tests``: the sample and keys come from the test
# server's helpers (tests/api/server.py), which are not an installed package.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from layers.postgis import redact_url  # noqa: E402
from layers.store import open_store  # noqa: E402
from tests.api.server import (  # noqa: E402
    SERVE,
    database,
    free_port,
    load_sample,
    make_keys,
    served,
    tile_of,
)


def _rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children (KiB), from /proc."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _requests(sample, keys, tiles: bool
              ) -> tuple[list[tuple[str, dict, str]], list[tuple[str, dict, str]]]:
    """(path, params, key) of the everyday requests and of the hostile ones; vector tiles
    when the store makes them (PostGIS)."""
    outlets = sample.layers["outlets"]
    grids = sample.layers["grids"]
    lon, lat = outlets.geometry.x.median(), outlets.geometry.y.median()
    bbox = f"{lon - 0.05},{lat - 0.05},{lon + 0.05},{lat + 0.05}"
    x, y = tile_of(lon, lat, 12)
    daily = []
    for key in (keys.regulator, keys.admin_a, keys.worker_a):
        daily += [
            ("/", {}, key), ("/collections", {}, key),
            ("/collections/outlets/items", {"limit": "100", "bbox": bbox}, key),
            ("/collections/grids/items", {"limit": "100"}, key),
            ("/collections/staff/items", {"limit": "100"}, key),
            (f"/collections/outlets/items/{outlets['id'].iloc[0]}", {}, key),
            (f"/collections/grids/items/{grids['code'].iloc[0]}", {}, key),
            ("/collections/grids/queryables", {}, key),
            ("/map", {}, key),
        ]
        if tiles:
            daily.append((f"/tiles/grids/12/{x}/{y}.mvt", {}, key))
    hostile = [
        ("/collections/staff/items/%00", {}, keys.regulator),
        ("/collections/grids/items", {"level": "9" * 30}, keys.regulator),
        ("/collections/no_such_layer/items", {}, keys.regulator),
        ("/collections/outlets/items", {"bbox": "1,2,x,4"}, keys.regulator),
        ("/collections/outlets/items", {}, "gg_000000000000.notarealkeynotarealkey"),
        ("/map", {"grids": "staff"}, keys.regulator),
    ]
    return daily, hostile


async def _client(base: str, plan: list, until: float, seed: int, out: dict) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while time.monotonic() < until:
            path, params, key = rng.choice(plan)
            started = time.perf_counter()
            try:
                answer = await client.get(path, params=params,
                                          headers={"Authorization": f"Bearer {key}"})
                status = answer.status_code
            except httpx.HTTPError as exc:
                status = 0  # the connection failed: counted apart from the answers
                path = f"{path} ({type(exc).__name__})"
            out["latency"].append(time.perf_counter() - started)
            out["status"][status] = out["status"].get(status, 0) + 1
            if status >= 500 or status == 0:
                out["errors"].append((status, path))


async def _load(base: str, plan: list, clients: int, seconds: float, pid: int) -> dict:
    out: dict = {"latency": [], "status": {}, "errors": [], "rss": []}
    until = time.monotonic() + seconds

    async def watch() -> None:
        while time.monotonic() < until:
            out["rss"].append((time.monotonic(), _rss_kib(pid)))
            await asyncio.sleep(1.0)

    await asyncio.gather(watch(), *(_client(base, plan, until, n, out)
                                    for n in range(clients)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--store", default=None,
                        help="an empty store to load the sample into (default: a temporary "
                             "GeoPackage, or with --pg a temporary PostGIS database)")
    parser.add_argument("--pg", default=None, metavar="URL",
                        help="PostgreSQL server to create the temporary database on "
                             "(e.g. $GISGRID_TEST_PG); dropped at the end")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 1000 and 1 <= args.seconds <= 600):
        parser.error("--clients 1–1000 and --seconds 1–600: the soak is bounded")
    folder = Path(tempfile.mkdtemp(prefix="gisgrid-soak-"))
    if args.pg and not args.store:
        with database(args.pg, prefix="gisgrid_soak") as url:
            return _soak(args, url, folder)
    return _soak(args, args.store or str(folder / "soak.gpkg"), folder)


def _soak(args, store: str, folder: Path) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_store(store) as target:
            sample = load_sample(target)
            keys = make_keys(target, sample)
    port = free_port()
    command = [*SERVE, "--store", store, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    try:
        with served(command, port, "/conformance", log=folder / "serve.log",
                    env={"GISGRID_API_JOBS_DIR": str(folder / "jobs")}) as (base, server):
            daily, hostile = _requests(sample, keys, tiles=store.startswith("postgresql"))
            plan = daily * 4 + hostile  # about one request in seven is hostile
            print(f"soak: {args.clients} clients for {args.seconds:g} s against {base} "
                  f"(store {redact_url(store)}); {len(daily)} everyday and {len(hostile)} "
                  "hostile requests")
            out = asyncio.run(_load(base, plan, args.clients, args.seconds, server.pid))
    except RuntimeError as exc:  # the server did not start: its log's tail
        print(exc, file=sys.stderr)
        return 1
    latency = np.array(out["latency"]) * 1000
    rss = np.array([r for _, r in out["rss"]], float) / 1024
    half = rss[len(rss) // 2:] if len(rss) >= 4 else rss
    growth = (half[-1] - half[0]) / half[0] if len(half) >= 2 and half[0] > 0 else 0.0
    server_errors = sum(n for s, n in out["status"].items() if s >= 500 or s == 0)
    print(f"requests {len(latency):,}  ({len(latency) / args.seconds:,.0f}/s)  "
          f"p50 {np.percentile(latency, 50):.0f} ms  p99 {np.percentile(latency, 99):.0f} ms")
    print("answers by status: " + ", ".join(f"{s}: {n:,}" for s, n in
                                             sorted(out["status"].items())))
    print(f"5xx or failed connections: {server_errors}"
          + (f"  e.g. {out['errors'][:5]}" if out["errors"] else ""))
    print(f"server memory (RSS): start {rss[0]:.0f} MB, peak {rss.max():.0f} MB, end "
          f"{rss[-1]:.0f} MB; second half {100 * growth:+.1f} %")
    flat = growth < 0.10
    print("result: " + ("ok" if server_errors == 0 and flat else "FAILED") +
          f" (no 5xx: {server_errors == 0}, memory flat: {flat})")
    return 0 if server_errors == 0 and flat else 1


if __name__ == "__main__":
    sys.exit(main())
