"""Benchmark the HTTP service against tipg and pygeoapi on the same PostGIS table.

One command::

    .venv/bin/python scripts/bench_api.py            # 10^5 grids, 10 s per measurement

It creates a throw-away PostGIS database on ``$GISGRID_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), loads a layer of 10^5 grids (a
Voronoi tiling of 10^5 random points over 秭归县 Zigui, clipped to the county, with grid
attributes) through the PostGIS store, and serves that one table in turn with

* gis-grid (this repository, ``uvicorn --factory api.app:app_from_env``), twice: with
  its tile cache off (``gis-grid``: items, and every tile made by PostGIS for its
  request, as the peers do) and on, as served by default (``gis-grid+cache``: tiles only;
  once made, a tile is served from memory while its layer's generation is unchanged),
* tipg and pygeoapi (each installed from PyPI into its own throw-away virtualenv under
  ``/tmp/gisgrid-bench``, created on first use so their pins do not touch ours;
  pygeoapi's config YAML points at the same table, its PostgreSQL provider),

each under uvicorn (with uvloop and httptools) with the same number of worker
processes: one round with 1 worker each (as ``gisgrid serve`` ships: on a small machine
PostgreSQL does the work, and one process balances the connections), one with 2
(``--workers 1 2``; uvicorn's workers share one listening socket, and 16 connections may
split 3/13 between two of them, so the busier one queues). ``wrk`` (Debian package
``wrk``) then drives, with 16 concurrent connections to 127.0.0.1 only, for a bounded
time each: ``items?bbox=…&limit=1000`` over 16 boxes holding more than 1,000 grids each,
and z12 vector tiles over the tiles covering the county (tipg's ``/tiles/WebMercatorQuad``,
ours ``/tiles/…mvt``; pygeoapi has no PostGIS tile provider, so its tile row is empty).
The same 16 boxes, each with an attribute test, are then sent as CQL2-text filters
(``items?filter=kind = 'urban' AND households > 100 AND S_INTERSECTS(geom, POLYGON(…))``)
to gis-grid and to tipg (target: at least tipg's throughput; pygeoapi's PostgreSQL
provider takes no CQL2 here). Every server's answers are checked first (1,000 features,
a non-empty tile). It prints
requests/s, p50 and p99 latency, and the ratios against tipg and pygeoapi, with the
targets: ≥ 1.0× tipg and ≥ 3× pygeoapi in requests/s, p99 < 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import geopandas as gpd
import numpy as np
import shapely

# The repository root, on the path for ``tests``: the bench serves and loads through the
# test server's helpers (tests/api/server.py), which are not an installed package.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.auth import create_key  # noqa: E402
from gis_grid.crs import metric_crs  # noqa: E402
from layers.postgis import PostGISStore  # noqa: E402
from layers.synthetic import build_sample  # noqa: E402
from tests.api.server import database, free_port, serve_process, tile_of  # noqa: E402

PEERS = Path(os.environ.get("GISGRID_BENCH_VENVS", "/tmp/gisgrid-bench"))
# Every server runs under uvicorn with uvloop and httptools, as ours does (uvicorn[standard]).
PEER_PACKAGES = {"tipg": ["tipg", "uvicorn[standard]"],
                 "pygeoapi": ["pygeoapi", "uvicorn[standard]", "starlette", "psycopg2-binary",
                              "geoalchemy2"]}
CONNECTIONS = 16


# --------------------------------------------------------------------------- data


def voronoi_grids(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    """``n`` grids tiling the Zigui county: Voronoi cells of random points, clipped."""
    territory = build_sample("420527", households=1000)["territory"]
    crs = metric_crs(territory)
    land = shapely.union_all(territory.to_crs(crs).geometry.to_numpy())
    shapely.prepare(land)
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = land.bounds
    points = np.empty((0, 2))
    while len(points) < n:
        xy = rng.uniform((minx, miny), (maxx, maxy), size=(2 * n, 2))
        points = np.vstack([points, xy[shapely.contains_xy(land, xy[:, 0], xy[:, 1])]])
    points = points[:n]
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points),
                                                       extend_to=land))
    inside = shapely.contains(land, cells)
    cells[~inside] = shapely.intersection(cells[~inside], land)
    cells = cells[~shapely.is_empty(cells)]
    m = len(cells)
    kinds = np.where(rng.random(m) < 0.2, "urban", "rural")
    banks = rng.choice(["NSH", "YCB", "ABC"], size=m)
    frame = gpd.GeoDataFrame({
        "code": [f"G{i:06d}" for i in range(m)], "level": 1, "kind": kinds,
        "institution": banks, "worker": [f"{b}-S-{i % 500:04d}" for i, b in enumerate(banks)],
        "households": rng.integers(20, 600, size=m), "source": "synthetic",
    }, geometry=cells, crs=crs).to_crs("EPSG:4326")
    return frame


def pick_bboxes(grids: gpd.GeoDataFrame, count: int, seed: int = 1) -> list[tuple]:
    """Boxes (lon/lat) each intersecting 2,000–4,000 grids, so limit=1000 is a full page."""
    rng = np.random.default_rng(seed)
    tree = shapely.STRtree(grids.geometry.to_numpy())
    minx, miny, maxx, maxy = grids.total_bounds
    boxes = []
    for _ in range(10_000):
        if len(boxes) == count:
            break
        cx, cy = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        box = (cx - 0.045, cy - 0.035, cx + 0.045, cy + 0.035)
        hits = len(tree.query(shapely.box(*box), predicate="intersects"))
        if 2000 <= hits <= 4000:
            boxes.append(tuple(round(v, 5) for v in box))
    return boxes


def pick_tiles(grids: gpd.GeoDataFrame, z: int, count: int) -> list[tuple[int, int, int]]:
    """z-level tiles whose centre lies on a grid (full tiles, not the county's edge)."""
    minx, miny, maxx, maxy = grids.total_bounds
    x0, y1 = tile_of(minx, miny, z)
    x1, y0 = tile_of(maxx, maxy, z)
    tree = shapely.STRtree(grids.geometry.to_numpy())
    tiles = []
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            lon, lat = _tile_centre(x, y, z)
            if len(tree.query(shapely.Point(lon, lat), predicate="intersects")):
                tiles.append((z, x, y))
    rng = np.random.default_rng(2)
    rng.shuffle(tiles)
    return tiles[:count]


def _tile_centre(x: int, y: int, z: int) -> tuple[float, float]:
    n = 2**z
    lon = (x + 0.5) / n * 360 - 180
    lat = np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * (y + 0.5) / n))))
    return lon, lat


# ------------------------------------------------------------------------ servers


def peer_venv(name: str) -> Path:
    """The peer's own virtualenv, created and filled from PyPI on first use."""
    venv = PEERS / f"{name}-venv"
    marker = venv / ".installed"
    wanted = " ".join(PEER_PACKAGES[name])
    if not marker.exists() or marker.read_text() != wanted:
        print(f"installing {name} into {venv} (once) …", flush=True)
        PEERS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PEER_PACKAGES[name]],
                       check=True)
        marker.write_text(wanted)
    return venv


def version_of(python: Path, package: str) -> str:
    done = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                           f"print(m.version({package!r}))"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def ours(url: str, workers: int, key: str, tile_cache_mb: float):
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "api.app:app_from_env",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--log-level", "warning", "--no-access-log"]
    env = {"GISGRID_STORE": url, "GISGRID_API_JOBS_DIR": tempfile.mkdtemp(),
           "GISGRID_API_TILE_CACHE_MB": str(tile_cache_mb)}
    return serve_process(command, port, "/collections/grids", env=env,
                         headers={"X-API-Key": key}, cwd=str(ROOT))


def tipg(url: str, workers: int):
    venv = peer_venv("tipg")
    port = free_port()
    command = [str(venv / "bin" / "uvicorn"), "tipg.main:app", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--log-level", "warning",
               "--no-access-log"]
    env = {"DATABASE_URL": url, "TIPG_DB_SCHEMAS": '["public"]',
           "TIPG_DB_TABLES": '["public.grids"]', "TIPG_MAX_FEATURES_PER_QUERY": "10000"}
    return serve_process(command, port, "/collections/public.grids", env=env,
                         cwd=tempfile.mkdtemp())


def pygeoapi(url: str, workers: int):
    venv = peer_venv("pygeoapi")
    port = free_port()
    parts = urlsplit(url)
    folder = Path(tempfile.mkdtemp(prefix="gisgrid-pygeoapi-"))
    config = folder / "pygeoapi.yml"
    config.write_text(textwrap.dedent(f"""\
        server:
          bind: {{host: 127.0.0.1, port: {port}}}
          url: http://127.0.0.1:{port}
          mimetype: application/json; charset=UTF-8
          encoding: utf-8
          languages: [en-US]
          limit: 10000
          limits: {{default_items: 10, max_items: 10000}}
          map: {{url: "https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png",
                attribution: "OSM"}}
        logging: {{level: ERROR}}
        metadata:
          identification: {{title: bench, description: bench, keywords: [grids],
                           keywords_type: theme, terms_of_service: none,
                           url: http://127.0.0.1}}
          license: {{name: CC-BY 4.0, url: https://creativecommons.org/licenses/by/4.0/}}
          provider: {{name: bench, url: http://127.0.0.1}}
          contact: {{name: bench, position: bench, address: x, city: x, stateorprovince: x,
                    postalcode: x, country: x, phone: x, fax: x, email: x@example.org,
                    url: http://127.0.0.1, hours: x, instructions: x, role: pointOfContact}}
        resources:
          grids:
            type: collection
            title: grids
            description: 10^5 grids
            keywords: [grids]
            extents:
              spatial: {{bbox: [110.0, 30.5, 111.2, 31.3],
                        crs: "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}}
            providers:
              - type: feature
                name: PostgreSQL
                data:
                  host: {parts.hostname}
                  port: {parts.port or 5432}
                  dbname: {parts.path.lstrip('/')}
                  user: {parts.username or 'postgres'}
                  password: "{parts.password or ''}"
                  search_path: [public]
                id_field: fid
                table: grids
                geom_field: geom
        """))
    openapi = folder / "openapi.yml"
    env = {"PYGEOAPI_CONFIG": str(config), "PYGEOAPI_OPENAPI": str(openapi)}
    subprocess.run([str(venv / "bin" / "pygeoapi"), "openapi", "generate", str(config),
                    "--output-file", str(openapi)], check=True, env={**os.environ, **env},
                   capture_output=True)
    command = [str(venv / "bin" / "uvicorn"), "pygeoapi.starlette_app:APP", "--host",
               "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--log-level", "warning", "--no-access-log"]
    return serve_process(command, port, "/collections/grids?f=json", env=env, cwd=str(folder))


# ---------------------------------------------------------------------------- load

LUA = """
local paths = {%(paths)s}
local n = 0
wrk.headers["Accept"] = "%(accept)s"
%(headers)s
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99), summary.bytes,
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout, latency.max))
end
"""


def drive(base: str, paths: list[str], seconds: float, headers: dict, accept: str) -> dict:
    """``wrk`` with CONNECTIONS connections cycling over ``paths``, after a warm-up."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(LUA % {
        "paths": ", ".join(json.dumps(p) for p in paths), "accept": accept,
        "headers": "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())})
    script.close()

    def run(duration: float) -> dict:
        done = subprocess.run(
            ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
             "-s", script.name, base], capture_output=True, text=True, timeout=duration + 60)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")), None)
        if line is None:
            raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
        requests, micros, p50, p99, size, errors, worst = map(int, line.split()[1:])
        return {"rps": requests / (micros / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
                "mb_s": size / (micros / 1e6) / 2**20, "errors": errors, "requests": requests,
                "max_ms": worst / 1000}

    run(2)  # warm-up: connections, caches, prepared statements
    return run(seconds)


def fetch(url: str, headers: dict) -> bytes:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured time per server and endpoint (after 2 s warm-up)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="uvicorn worker processes, each server; one round per count "
                             "(default: 1, as `gisgrid serve` ships, then 2)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tipg", "pygeoapi"])
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_api: needs wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    base = os.environ.get("GISGRID_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grids = voronoi_grids(args.grids)
    boxes = pick_bboxes(grids, 16)
    tiles = pick_tiles(grids, 12, 16)
    print(f"{len(grids):,} grids (Voronoi over Zigui) in {time.perf_counter() - t0:.1f} s; "
          f"{len(boxes)} bboxes with 2,000–4,000 grids each; {len(tiles)} z12 tiles",
          flush=True)
    with database(base, prefix="gisgrid_bench") as url:
        store = PostGISStore(url)
        t0 = time.perf_counter()
        store.write("grids", grids)
        _, key = create_key(store, "regulator")
        store.close()
        print(f"loaded through the PostGIS store in {time.perf_counter() - t0:.1f} s",
              flush=True)
        bbox_q = ["bbox=" + ",".join(map(str, b)) for b in boxes]
        our_tiles = [f"/tiles/grids/{z}/{x}/{y}.mvt" for z, x, y in tiles]
        results: dict[tuple[int, str, str], dict] = {}
        versions = {"gis-grid": "this tree"}
        for workers in args.workers:
            print(f"-- {workers} uvicorn worker{'s' if workers > 1 else ''} each", flush=True)
            run_round(url, key, workers, bbox_q, our_tiles, tiles, args, results, versions,
                      cql2_queries(boxes))
    report(results, versions, args)
    return 0


def cql2_queries(boxes: list[tuple]) -> list[str]:
    """One CQL2-text filter per box: an attribute test and the box (2,000–4,000 grids in
    it, ~400 matching), ``limit=1000`` — the same for gis-grid and tipg."""
    filters = [f"kind = 'urban' AND households > 100 AND S_INTERSECTS(geom, "
               f"{shapely.box(*b).wkt})" for b in boxes]
    return [f"filter={urllib.parse.quote(f)}&filter-lang=cql2-text&limit=1000"
            for f in filters]


def run_round(url: str, key: str, workers: int, bbox_q: list[str], our_tiles: list[str],
              tiles: list[tuple], args, results: dict, versions: dict,
              filter_q: list[str] = ()) -> None:
    """Every server with ``workers`` uvicorn workers: items, tiles, then CQL2 filters."""
    servers = {
        # Cold: every tile made by PostGIS for its request, like the peers'.
        "gis-grid": (lambda: ours(url, workers, key, 0), {"X-API-Key": key},
                     [f"/collections/grids/items?{q}&limit=1000" for q in bbox_q],
                     our_tiles, [f"/collections/grids/items?{q}" for q in filter_q]),
        # As served by default: tiles from the generation-exact cache once made.
        "gis-grid+cache": (lambda: ours(url, workers, key, 256), {"X-API-Key": key},
                           [], our_tiles, []),
        "tipg": (lambda: tipg(url, workers), {},
                 [f"/collections/public.grids/items?{q}&limit=1000" for q in bbox_q],
                 [f"/collections/public.grids/tiles/WebMercatorQuad/{z}/{x}/{y}"
                  for z, x, y in tiles],
                 [f"/collections/public.grids/items?{q}" for q in filter_q]),
        "pygeoapi": (lambda: pygeoapi(url, workers), {},
                     [f"/collections/grids/items?{q}&limit=1000&f=json" for q in bbox_q],
                     [], []),
    }
    for name, (start, headers, items, tile_paths, filtered) in servers.items():
        if name in args.skip:
            continue
        if not name.startswith("gis-grid"):
            versions[name] = version_of(peer_venv(name) / "bin" / "python", name)
        with start() as server:
            if items:
                page = json.loads(fetch(server + items[0],
                                        {**headers, "Accept": "application/geo+json"}))
                assert len(page["features"]) == 1000, (name, len(page["features"]))
                results[(workers, name, "items")] = drive(server, items, args.seconds, headers,
                                                 "application/geo+json")
            if tile_paths:
                tile = fetch(server + tile_paths[0], headers)
                assert len(tile) > 1000, (name, len(tile))
                results[(workers, name, "tile")] = drive(server, tile_paths, args.seconds, headers,
                                                "application/vnd.mapbox-vector-tile")
            if filtered:
                page = json.loads(fetch(server + filtered[0],
                                        {**headers, "Accept": "application/geo+json"}))
                results[(workers, name, "filter")] = drive(server, filtered, args.seconds,
                                                           headers, "application/geo+json")
                results[(workers, name, "filter")]["features"] = len(page["features"])
        for endpoint in ("items", "tile", "filter"):
            r = results.get((workers, name, endpoint))
            if r:
                print(f"  {name:<15} {endpoint:<6} {r['rps']:8.1f} req/s  p50 "
                      f"{r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                      f"{r['mb_s']:6.1f} MiB/s  errors {r['errors']}", flush=True)


def report(results: dict, versions: dict, args) -> None:
    print(f"\nitems?bbox&limit=1000, z12 tiles and items?filter=<CQL2>&limit=1000 on "
          f"{args.grids:,} grids, {CONNECTIONS} "
          f"concurrent connections, {args.seconds:g} s each, same machine "
          f"({os.cpu_count()} cores), same table")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"{'workers':<9}{'server':<16}{'endpoint':<9}{'req/s':>9}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'MiB/s':>8}{'errors':>8}")
    for (workers, name, endpoint), r in results.items():
        print(f"{workers:<9}{name:<16}{endpoint:<9}{r['rps']:>9.1f}{r['p50_ms']:>9.1f}"
              f"{r['p99_ms']:>9.1f}{r['mb_s']:>8.1f}{r['errors']:>8}")
    for workers in args.workers:
        print(f"\nratios with {workers} uvicorn worker{'s' if workers > 1 else ''} each "
              "(gis-grid requests/s ÷ peer's) and targets; gis-grid's tiles cold (made for "
              "each request) and from its tile cache (gis-grid+cache, as served):")
        for ours_name, endpoint in (("gis-grid", "items"), ("gis-grid", "tile"),
                                    ("gis-grid+cache", "tile"), ("gis-grid", "filter")):
            mine = results.get((workers, ours_name, endpoint))
            if mine is None:
                continue
            label = f"{endpoint} (cached)" if ours_name != "gis-grid" else endpoint
            for peer, target in (("tipg", 1.0), ("pygeoapi", 3.0)):
                other = results.get((workers, peer, endpoint))
                if other is None:
                    print(f"  {label:<14} vs {peer:<9} n/a (not served by {peer})")
                    continue
                ratio = mine["rps"] / other["rps"]
                verdict = "met" if ratio >= target else "NOT met"
                print(f"  {label:<14} vs {peer:<9} {ratio:6.2f}×  (target ≥ {target:g}×: "
                      f"{verdict})")
            verdict = "met" if mine["p99_ms"] < 200 else "NOT met"
            print(f"  {label:<14} p99 {mine['p99_ms']:.1f} ms (target < 200 ms: {verdict})")


if __name__ == "__main__":
    sys.exit(main())
