"""Benchmark grid-layer validation against its peers, on one Voronoi tiling.

    .venv/bin/python scripts/bench_validate.py            # 10^5 grids
    .venv/bin/python scripts/bench_validate.py --n 20000 --no-postgis

The layer: a Voronoi tiling of ``--n`` random points in a 100 km square near Zigui
(110.8°E 30.9°N), built in metres (EPSG:4546), stored in EPSG:4326 like every layer, with
a few grids deleted (gaps) and a few grown by 20 m (overlaps). Timed on the same layer:

* ``gis_grid.topology.validate_grids`` — the full check: gap polygons, overlap pairs with
  their polygons and areas, slivers, validity, pieces, codes, staffing … in metres.
* (a) ``shapely.coverage_invalid_edges`` alone (GEOS 3.14) on the same geometries: it
  only flags invalid edges. Target: validate_grids within 2× of it.
* (b) the straightforward PostGIS SQL in a fresh temporary database: overlaps by a
  self-join with ``&&`` and ``ST_Overlaps``; gaps by ``ST_Difference(territory,
  ST_Union(geom))``. Target: validate_grids at least 5× faster.

Times are the best of ``--repeat`` runs (PostGIS: one run). Ratios are printed.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely import box

# The repository root, on the path for ``tests``: the PostGIS peer's throw-away database
# is the test server's helper (tests/api/server.py), which is not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gis_grid.topology import validate_grids  # noqa: E402

METRIC_EPSG = 4546  # CGCS2000 3-degree GK CM 111°E: metric_crs of the area
SIDE = 100_000.0  # metres
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def build_layer(n: int, seed: int, gaps: int, overlaps: int):
    """The tiling in EPSG:4326, its territory, and the injected rows (metric geometry)."""
    rng = np.random.default_rng(seed)
    x0, y0 = (round(v) for v in pyproj.Transformer.from_crs(
        "EPSG:4326", f"EPSG:{METRIC_EPSG}", always_xy=True).transform(110.8, 30.4))
    square = box(x0, y0, x0 + SIDE, y0 + SIDE)
    points = rng.uniform(0, SIDE, (n, 2)) + (x0, y0)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points),
                                                       extend_to=square, ordered=True))
    cells = shapely.intersection(cells, square)
    chosen = rng.choice(n, gaps + overlaps, replace=False)
    deleted, grown = chosen[:gaps], chosen[gaps:]
    cells[grown] = shapely.buffer(cells[grown], 20.0)
    keep = np.ones(n, dtype=bool)
    keep[deleted] = False
    codes = np.array([f"420527-{i:06d}" for i in range(n)], dtype=object)
    grids = gpd.GeoDataFrame(
        {"code": codes[keep], "level": 1, "kind": "rural", "institution": "NSH",
         "worker": [f"W{i:06d}" for i in np.flatnonzero(keep)]},
        geometry=cells[keep], crs=f"EPSG:{METRIC_EPSG}").to_crs("EPSG:4326")
    territory = gpd.GeoSeries([square], crs=f"EPSG:{METRIC_EPSG}").to_crs("EPSG:4326")
    return grids, territory, square


def best_of(repeat: int, **contenders):
    """Best time and last result of each contender, run in turn ``repeat`` times (taking
    turns, so that a busy spell of a shared machine hits all of them alike)."""
    best = dict.fromkeys(contenders, np.inf)
    result = {}
    for _ in range(repeat):
        for name, fn in contenders.items():
            start = time.perf_counter()
            result[name] = fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, result


def postgis(url: str, grids: gpd.GeoDataFrame, square, timeout_s: int) -> dict:
    """Load the layer into a fresh temporary database and time the SQL checks."""
    import psycopg

    from tests.api.server import database

    out: dict = {}
    with database(url, prefix="gisgrid_bench", connect_timeout=5) as db_url:
        with psycopg.connect(db_url, autocommit=True) as db:
            db.execute("CREATE EXTENSION postgis")
            out["version"] = db.execute("SELECT postgis_lib_version()").fetchone()[0]
            db.execute(f"SET statement_timeout = '{timeout_s}s'")
            db.execute(f"CREATE TABLE grids (id int PRIMARY KEY, code text, "
                       f"geom geometry(Polygon, {METRIC_EPSG}))")
            metric = shapely.set_srid(grids.geometry.to_crs(METRIC_EPSG).to_numpy(), METRIC_EPSG)
            rows = pd.DataFrame({"id": np.arange(len(grids)), "code": grids["code"],
                                 "geom": shapely.to_wkb(metric, hex=True, include_srid=True)})
            buffer = io.StringIO()
            rows.to_csv(buffer, sep="\t", header=False, index=False)
            start = time.perf_counter()
            with db.cursor() as cur, cur.copy("COPY grids (id, code, geom) FROM STDIN") as copy:
                copy.write(buffer.getvalue())
            out["load"] = time.perf_counter() - start
            start = time.perf_counter()
            db.execute("CREATE INDEX ON grids USING gist (geom)")
            db.execute("ANALYZE grids")
            out["index"] = time.perf_counter() - start

            start = time.perf_counter()
            out["overlaps"] = db.execute("""
                SELECT a.code, b.code, ST_Area(i.geom), ST_AsBinary(i.geom)
                FROM grids a
                JOIN grids b ON a.geom && b.geom AND a.id < b.id AND ST_Overlaps(a.geom, b.geom)
                CROSS JOIN LATERAL (SELECT ST_Intersection(a.geom, b.geom) AS geom) i
            """).fetchall()
            out["overlaps_s"] = time.perf_counter() - start

            start = time.perf_counter()
            out["gaps"] = db.execute("""
                SELECT ST_Area(d.geom), ST_AsBinary(d.geom)
                FROM (SELECT (ST_Dump(ST_Difference(ST_GeomFromWKB(%s, %s), ST_Union(geom)))).geom
                      FROM grids) d
            """, (shapely.to_wkb(square), METRIC_EPSG)).fetchall()
            out["gaps_s"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of grids (default 10^5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gaps", type=int, default=5, help="grids deleted (default 5)")
    parser.add_argument("--overlaps", type=int, default=5, help="grids grown by 20 m (5)")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs (5)")
    parser.add_argument("--pg", default=os.environ.get("GISGRID_BENCH_PG")
                        or os.environ.get("GISGRID_TEST_PG") or DEFAULT_PG,
                        help="PostgreSQL server to create the temporary database on")
    parser.add_argument("--pg-timeout", type=int, default=1800, help="seconds per SQL query")
    parser.add_argument("--no-postgis", action="store_true", help="skip the PostGIS peer")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    grids, territory, square = build_layer(args.n, args.seed, args.gaps, args.overlaps)
    print(f"layer: {len(grids):,} grids, Voronoi tiling of a 100 km square, "
          f"{args.gaps} deleted (gaps), {args.overlaps} grown by 20 m (overlaps); "
          f"built in {time.perf_counter() - start:.1f} s")
    print(f"shapely {shapely.__version__}, GEOS {'.'.join(map(str, shapely.geos_version))}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} "
          f"(times are only comparable within one run)\n")

    geoms = grids.geometry.to_numpy()
    times, results = best_of(
        args.repeat,
        edges=lambda: shapely.coverage_invalid_edges(geoms),
        ours=lambda: validate_grids(grids, territory=territory),
        one=lambda: validate_grids(grids, territory=territory, threads=1),
    )
    t_edges, t_ours, t_one = times["edges"], times["ours"], times["one"]
    edges, report = results["edges"], results["ours"]
    flagged = int((~shapely.is_empty(edges)).sum())
    found = report.problems
    overlaps = found[found.kind.eq("overlap") | found.sliver_of.eq("overlap")]
    gaps = found[found.kind.eq("gap") | found.sliver_of.eq("gap")]
    counts = ", ".join(f"{k} {v}" for k, v in report.summary.items() if v)

    w = 52
    print(f"{'(a) shapely.coverage_invalid_edges alone':<{w}} {t_edges:8.2f} s   "
          f"({flagged} grids with invalid edges, nothing else)")
    print(f"{'validate_grids, full check (default threads)':<{w}} {t_ours:8.2f} s   "
          f"{t_ours / t_edges:5.2f}× (a)  [target ≤ 2×]")
    print(f"{'validate_grids, full check (threads=1)':<{w}} {t_one:8.2f} s   "
          f"{t_one / t_edges:5.2f}× (a)")
    print(f"{'':<{w}}            found {len(overlaps)} overlap pairs "
          f"({overlaps.area_m2.sum():,.0f} m²), {len(gaps)} gaps "
          f"({gaps.area_m2.sum():,.0f} m²); {counts}")

    if args.no_postgis:
        return 0
    try:
        pg = postgis(args.pg, grids, square, args.pg_timeout)
    except Exception as exc:  # the peer is optional: say why it did not run
        print(f"\n(b) PostGIS: not run ({type(exc).__name__}: {exc})")
        return 0
    t_sql = pg["overlaps_s"] + pg["gaps_s"]
    real_gaps = [a for a, _ in pg["gaps"] if a >= 1.0]
    print(f"\n(b) PostGIS {pg['version']} (same layer in EPSG:{METRIC_EPSG}; load by COPY "
          f"{pg['load']:.1f} s, GiST index + ANALYZE {pg['index']:.1f} s, not counted)")
    print(f"{'    overlaps: self-join && + ST_Overlaps':<{w}} {pg['overlaps_s']:8.2f} s   "
          f"{len(pg['overlaps'])} pairs ({sum(r[2] for r in pg['overlaps']):,.0f} m²)")
    print(f"{'    gaps: ST_Difference(territory, ST_Union(geom))':<{w}} {pg['gaps_s']:8.2f} s   "
          f"{len(pg['gaps'])} pieces, {len(real_gaps)} of ≥ 1 m² "
          f"({sum(real_gaps):,.0f} m²)")
    print(f"{'    PostGIS SQL total':<{w}} {t_sql:8.2f} s   "
          f"validate_grids is {t_sql / t_ours:5.1f}× faster (threads=1: {t_sql / t_one:.1f}×) "
          f"[target ≥ 5×]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
