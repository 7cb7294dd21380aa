"""Benchmark: a province partitioned in-process versus on 2 local Dask workers.

Builds a synthetic province (default 20 counties × 50,000 = 10⁶ households) in a fresh
PostGIS schema-less database, partitions it county by county in this process, then again
(``--no-resume``) on a ``LocalCluster`` of 2 single-threaded worker processes, checks the
two results are identical, and prints wall times, the peak memory (RSS) of each worker
and of this process, and the speed-up.

Usage::

    .venv/bin/python scripts/bench_fanout.py [--counties 20] [--households 50000]
        [--url postgresql://postgres@127.0.0.1:5432/postgres] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import shapely
from psycopg import sql


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counties", type=int, default=20)
    parser.add_argument("--households", type=int, default=50_000,
                        help="households per county")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    from dask.distributed import Client, LocalCluster

    from layers.fanout import run_province
    from layers.province import build_province
    from layers.store import open_store

    # The cluster starts before the data is built: its worker processes then begin small,
    # and their peak RSS is their own work's.
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    name = f"gisgrid_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(args.url, autocommit=True)
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(args.url)._replace(path=f"/{name}"))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        started = time.perf_counter()
        layers = build_province("示范省", counties=args.counties,
                                households_per_county=args.households)
        with open_store(url) as store:
            for layer, frame in layers.items():
                store.write(layer, frame)
        households = int(layers["households"]["count"].sum())
        points = len(layers["households"])
        del layers
        setup = time.perf_counter() - started
        print(f"province: {args.counties} counties, {households:,} households "
              f"({points:,} points), built and stored in {setup:.1f} s")

        params = {"institution": "NSH", "resume": False}
        local = run_province(url, "partition", {**params, "layer": "grids_local"},
                             progress=False)
        local_rss = _peak_rss_mb()
        print(f"in-process: {local.seconds:.1f} s, peak RSS {local_rss:.0f} MB")

        remote = run_province(url, "partition", {**params, "layer": "grids_dask"},
                              scheduler=client, progress=False)
        worker_rss = client.run(_peak_rss_mb)
        print(f"dask ({args.workers} workers): {remote.seconds:.1f} s, peak RSS per worker "
              + ", ".join(f"{v:.0f} MB" for v in worker_rss.values()))
        speedup = local.seconds / remote.seconds
        # The county tasks alone, without the client's serial merge (seams, one write).
        local_tasks = local.seconds - local.finish_seconds
        remote_tasks = remote.seconds - remote.finish_seconds
        print(f"speed-up: {speedup:.2f}x overall (target ≥ 1.7x on 2 cores); county tasks "
              f"{local_tasks:.1f} s → {remote_tasks:.1f} s = {local_tasks / remote_tasks:.2f}x; "
              f"serial merge {local.finish_seconds:.1f} s / {remote.finish_seconds:.1f} s")

        with open_store(url) as store:
            a = store.read("grids_local").sort_values("code")
            b = store.read("grids_dask").sort_values("code")
        same = (a["code"].tolist() == b["code"].tolist() and
                list(shapely.to_wkb(a.geometry.to_numpy()))
                == list(shapely.to_wkb(b.geometry.to_numpy())))
        print(f"identical results: {same} ({len(a):,} grids)")
        figures = {"counties": args.counties, "households": households, "points": points,
                   "grids": len(a), "in_process_s": round(local.seconds, 2),
                   "dask_s": round(remote.seconds, 2), "workers": args.workers,
                   "speedup": round(speedup, 3),
                   "task_speedup": round(local_tasks / remote_tasks, 3),
                   "merge_s": [round(local.finish_seconds, 2), round(remote.finish_seconds, 2)],
                   "in_process_peak_rss_mb": round(local_rss),
                   "worker_peak_rss_mb": [round(v) for v in worker_rss.values()],
                   "identical": same, "failed": len(local.failed) + len(remote.failed)}
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(figures, fh, indent=2)
    finally:
        client.close()
        cluster.close()
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        admin.close()


if __name__ == "__main__":
    main()
