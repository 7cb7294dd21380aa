"""Benchmark: a province partitioned in-process versus on 2 local Dask workers.

Builds a synthetic province (default 20 counties × 50,000 = 10⁶ households) in a fresh
PostGIS schema-less database, partitions it county by county in this process, then again
(``--no-resume``) on a ``LocalCluster`` of 2 single-threaded worker processes — the two
alternating ``--repeat`` times (default 3), medians compared — checks the two results are
identical, and prints wall times, the peak memory (RSS) of each worker
and of this process, and the speed-up.

Both sides start warm, as on a cluster that is already up: the job's modules are
imported in this process and in each worker before the clock starts (a fresh worker
spends about 0.5 s importing them on its first county). The workers run with Dask's
statistical profiler off (``distributed.worker.profile.enabled: false``, as the README
advises for ``dask worker``): sampling every task's stack every 10 ms costs the
GEOS-bound county tasks about 4 %.

Usage::

    .venv/bin/python scripts/bench_fanout.py [--counties 20] [--households 50000]
        [--repeat 3] [--url postgresql://postgres@127.0.0.1:5432/postgres] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import statistics
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import shapely
from psycopg import sql


def _warm() -> None:
    """Import what a county task imports on first use; done before timing on both sides."""
    import gis_grid.partition  # noqa: F401
    import gis_grid.staffing  # noqa: F401
    import layers.fanout  # noqa: F401


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counties", type=int, default=20)
    parser.add_argument("--households", type=int, default=50_000,
                        help="households per county")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternating in-process / cluster runs; medians are compared")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    import dask
    from dask.distributed import Client, LocalCluster

    from gis_grid.jobs import PARTITION
    from layers.fanout import run_province
    from layers.store import open_store
    from layers.synthetic import build_province

    # The cluster starts before the data is built: its worker processes then begin small,
    # and their peak RSS is their own work's.
    dask.config.set({"distributed.worker.profile.enabled": False})
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    _warm()
    client.run(_warm)
    # A throw-away database made here, not by tests.api.server.database: importing the
    # test helpers (the service, uvicorn, pytest) would add ~70 MB to this process's
    # peak RSS, which is measured.
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
        # In-process and cluster runs alternate, and the medians are compared: on a
        # shared VM one run of either can be 10 % off, and drift hits both alike.
        runs: dict[str, list] = {"local": [], "dask": []}
        for i in range(args.repeat):
            local = run_province(url, PARTITION, {**params, "layer": "grids_local"},
                                 progress=False)
            remote = run_province(url, PARTITION, {**params, "layer": "grids_dask"},
                                  scheduler=client, progress=False)
            runs["local"].append(local)
            runs["dask"].append(remote)
            print(f"run {i + 1}: in-process {local.seconds:.1f} s (merge "
                  f"{local.finish_seconds:.1f} s), dask {remote.seconds:.1f} s (merge "
                  f"{remote.finish_seconds:.1f} s): {local.seconds / remote.seconds:.2f}x")
        local_rss = _peak_rss_mb()
        worker_rss = client.run(_peak_rss_mb)

        def median(values) -> float:
            return float(statistics.median(values))

        local_s = median(r.seconds for r in runs["local"])
        remote_s = median(r.seconds for r in runs["dask"])
        # The county tasks alone, without the client's serial merge (seams, one write).
        local_tasks = median(r.seconds - r.finish_seconds for r in runs["local"])
        remote_tasks = median(r.seconds - r.finish_seconds for r in runs["dask"])
        local_merge = median(r.finish_seconds for r in runs["local"])
        remote_merge = median(r.finish_seconds for r in runs["dask"])
        speedup = local_s / remote_s
        print(f"in-process: {local_s:.1f} s (median of {args.repeat}), peak RSS "
              f"{local_rss:.0f} MB")
        print(f"dask ({args.workers} workers): {remote_s:.1f} s (median of {args.repeat}), "
              "peak RSS per worker " + ", ".join(f"{v:.0f} MB" for v in worker_rss.values()))
        print(f"speed-up: {speedup:.2f}x overall (target ≥ 1.7x on 2 cores); county tasks "
              f"{local_tasks:.1f} s → {remote_tasks:.1f} s = {local_tasks / remote_tasks:.2f}x; "
              f"serial merge {local_merge:.1f} s / {remote_merge:.1f} s")

        with open_store(url) as store:
            a = store.read("grids_local").sort_values("code")
            b = store.read("grids_dask").sort_values("code")
        same = (a["code"].tolist() == b["code"].tolist() and
                list(shapely.to_wkb(a.geometry.to_numpy()))
                == list(shapely.to_wkb(b.geometry.to_numpy())))
        print(f"identical results: {same} ({len(a):,} grids)")
        figures = {"counties": args.counties, "households": households, "points": points,
                   "grids": len(a), "in_process_s": round(local_s, 2),
                   "dask_s": round(remote_s, 2), "workers": args.workers,
                   "repeat": args.repeat,
                   "in_process_runs_s": [round(r.seconds, 2) for r in runs["local"]],
                   "dask_runs_s": [round(r.seconds, 2) for r in runs["dask"]],
                   "speedup": round(speedup, 3),
                   "task_speedup": round(local_tasks / remote_tasks, 3),
                   "merge_s": [round(local_merge, 2), round(remote_merge, 2)],
                   "in_process_peak_rss_mb": round(local_rss),
                   "worker_peak_rss_mb": [round(v) for v in worker_rss.values()],
                   "identical": same,
                   "failed": sum(len(r.failed) for rs in runs.values() for r in rs)}
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
