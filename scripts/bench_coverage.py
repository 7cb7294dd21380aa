"""Benchmark: nearest touch-point distances and covered shares, against the obvious peers.

One command::

    .venv/bin/python scripts/bench_coverage.py                 # 10^6 households × 2×10^4
    .venv/bin/python scripts/bench_coverage.py --n 100000 --m 5000 --pg-sample 20000

A synthetic county (the extent of 秭归县, in its metric CRS EPSG:4546) gets ``--n``
household points clustered in settlements (a tenth of them urban) and ``--m`` touch
points (outlets of four tiers and devices of four types, of six banks), mostly near the
settlements. Everything starts in EPSG:4326, as layers leave the store. Timed, in one run:

ours, full
    ``gis_grid.coverage.access`` — distances to the nearest touch point of every kind
    (four tiers, four device types, any outlet, any device, any), coverage within the
    urban / rural radius, which of the six banks cover each household — then
    ``coverage_shares`` per unit. Strictly more work than either peer does.
ours, one kind
    the same call when every touch point is of one kind and without the per-bank flags:
    one nearest distance per household and the shares, which is exactly the peers' work.
geopandas
    ``to_crs`` to the metric CRS, ``sjoin_nearest(..., distance_col=...)`` (shapely's
    STRtree), coverage and a ``groupby`` per unit.
PostGIS KNN
    households and touch points are loaded by ``COPY`` into a temporary database (created
    and dropped here), already in the metric CRS and GiST-indexed (load time printed,
    not counted); then ``CROSS JOIN LATERAL (… ORDER BY t.geom <-> h.geom LIMIT 1)`` for
    the nearest distance and the covered share per unit in one query. On big ``--n`` a
    subset of ``--pg-sample`` households is timed and the time extrapolated linearly (the
    query is one index probe per household); the output says so.

Ratios are peer time ÷ our time (above 1: we are faster).
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

# The repository root, on the path for ``tests``: the PostGIS peer's throw-away database
# is the test server's helper (tests/api/server.py), which is not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gis_grid.coverage import Radii, access, coverage_shares, touch_points  # noqa: E402

METRIC_EPSG = 4546  # 秭归县's CGCS2000 Gauss-Krüger zone (gis_grid.crs.metric_crs)
CENTRE = (110.75, 30.9)
WIDTH, HEIGHT = 80_000.0, 60_000.0
TIERS = ("一级支行", "二级支行", "分理处", "助农点")
DEVICES = ("ATM", "CRS", "助农取款POS", "智能终端")
BANKS = ("NSH", "YCB", "ABC", "CCB", "BOC", "CZB")


def make_data(n: int, m: int, seed: int) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame,
                                                   gpd.GeoDataFrame]:
    """Households, outlets and devices in EPSG:4326."""
    rng = np.random.default_rng(seed)
    to_metric = pyproj.Transformer.from_crs(4326, METRIC_EPSG, always_xy=True)
    to_lonlat = pyproj.Transformer.from_crs(METRIC_EPSG, 4326, always_xy=True)
    cx, cy = to_metric.transform(*CENTRE)
    settlements = max(100, n // 250)
    sx = cx + rng.uniform(-WIDTH / 2, WIDTH / 2, settlements)
    sy = cy + rng.uniform(-HEIGHT / 2, HEIGHT / 2, settlements)
    urban = rng.random(settlements) < 0.1
    weight = rng.lognormal(0, 1, settlements) * np.where(urban, 8.0, 1.0)
    home = rng.choice(settlements, n, p=weight / weight.sum())
    spread = np.where(urban, 900.0, 300.0)[home]
    hx = sx[home] + rng.normal(0, 1, n) * spread
    hy = sy[home] + rng.normal(0, 1, n) * spread
    lon, lat = to_lonlat.transform(hx, hy)
    # A unit is three neighbouring settlements (about 750 households), urban if its
    # settlements are.
    households = gpd.GeoDataFrame({
        "id": np.arange(n), "count": np.where(urban[home], rng.integers(1, 6, n), 1),
        "unit": (home // 3).astype(str).astype(object),
        "kind": np.where(urban[home], "urban", "rural").astype(object),
    }, geometry=gpd.points_from_xy(lon, lat), crs=4326)

    near = rng.random(m) < 0.7
    at = rng.choice(settlements, m, p=weight / weight.sum())
    tx = np.where(near, sx[at] + rng.normal(0, 200, m), cx + rng.uniform(-WIDTH / 2,
                                                                        WIDTH / 2, m))
    ty = np.where(near, sy[at] + rng.normal(0, 200, m), cy + rng.uniform(-HEIGHT / 2,
                                                                        HEIGHT / 2, m))
    tlon, tlat = to_lonlat.transform(tx, ty)
    is_outlet = rng.random(m) < 0.4
    bank = rng.choice(np.array(BANKS, dtype=object), m)
    ids = np.array([f"T{i}" for i in range(m)], dtype=object)
    geometry = gpd.points_from_xy(tlon, tlat)
    outlets = gpd.GeoDataFrame({
        "id": ids[is_outlet], "institution": bank[is_outlet],
        "tier": rng.choice(np.array(TIERS, dtype=object), int(is_outlet.sum()),
                           p=[0.05, 0.15, 0.2, 0.6]),
        "name": ids[is_outlet], "status": "营业"}, geometry=geometry[is_outlet], crs=4326)
    devices = gpd.GeoDataFrame({
        "id": ids[~is_outlet], "institution": bank[~is_outlet],
        "type": rng.choice(np.array(DEVICES, dtype=object), int((~is_outlet).sum()),
                           p=[0.4, 0.15, 0.35, 0.1])}, geometry=geometry[~is_outlet], crs=4326)
    return households, outlets, devices


def timed(fn, repeat: int = 1):
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def ours(households, touch, radii, by_institution=True):
    acc = access(households, touch, radii=radii, by_institution=by_institution)
    return acc, coverage_shares(acc, "unit")


def geopandas_peer(households, touch, radii):
    h = households.to_crs(METRIC_EPSG)
    t = touch[["id", "geometry"]].to_crs(METRIC_EPSG)
    joined = gpd.sjoin_nearest(h, t, how="left", distance_col="d")
    joined = joined[~joined.index.duplicated()]  # ties give several rows per household
    radius = np.where(joined["kind"].to_numpy() == "urban", radii.urban, radii.rural)
    covered = joined["d"].to_numpy() <= radius
    w = joined["count"].to_numpy()
    shares = pd.DataFrame({"unit": joined["unit"].to_numpy(), "households": w,
                           "covered": w * covered}).groupby("unit").sum()
    return joined["d"].to_numpy(), shares


def _admin_url(url: str | None) -> str:
    value = url or os.environ.get("GISGRID_TEST_PG") or \
        "postgresql://postgres@127.0.0.1:5432/postgres"
    return value if "://" in value else f"postgresql://postgres@{value}/postgres"


def postgis_peer(households, touch, radii, sample: int, url: str | None):
    """(seconds for the sample, load seconds, sample size, distances of the sample,
    shares of the sample)."""
    import psycopg
    from psycopg import sql

    from tests.api.server import database

    with database(_admin_url(url), prefix="gisgrid_bench") as db_url:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
            t0 = time.perf_counter()
            h = households.to_crs(METRIC_EPSG)
            t = touch.to_crs(METRIC_EPSG)
            conn.execute("CREATE TABLE hh (id bigint, unit text, count int, r float8, "
                         "x float8, y float8)")
            conn.execute("CREATE TABLE tp (id text, x float8, y float8)")
            radius = np.where(h["kind"].to_numpy() == "urban", radii.urban, radii.rural)
            _copy(conn, "COPY hh FROM STDIN (FORMAT csv)", pd.DataFrame({
                "id": h["id"], "unit": h["unit"], "count": h["count"], "r": radius,
                "x": h.geometry.x, "y": h.geometry.y}))
            _copy(conn, "COPY tp FROM STDIN (FORMAT csv)", pd.DataFrame({
                "id": t["id"], "x": t.geometry.x, "y": t.geometry.y}))
            srid = sql.Literal(METRIC_EPSG)
            for statement in (
                    "ALTER TABLE hh ADD COLUMN geom geometry(Point, {s})",
                    "UPDATE hh SET geom = ST_SetSRID(ST_MakePoint(x, y), {s})",
                    "ALTER TABLE tp ADD COLUMN geom geometry(Point, {s})",
                    "UPDATE tp SET geom = ST_SetSRID(ST_MakePoint(x, y), {s})",
                    "CREATE INDEX ON tp USING gist (geom)", "CREATE INDEX ON hh (id)",
                    "VACUUM ANALYZE hh", "VACUUM ANALYZE tp"):
                conn.execute(sql.SQL(statement).format(s=srid))
            load = time.perf_counter() - t0
            query = """
                WITH near AS (
                  SELECT h.id, h.unit, h.count, h.r, k.d
                  FROM hh h CROSS JOIN LATERAL (
                    SELECT h.geom <-> t.geom AS d FROM tp t ORDER BY h.geom <-> t.geom LIMIT 1
                  ) k WHERE h.id < %s)
                SELECT id, d, unit, count, d <= r AS covered FROM near ORDER BY id"""
            t0 = time.perf_counter()
            rows = conn.execute(query, [sample]).fetchall()
            seconds = time.perf_counter() - t0
    frame = pd.DataFrame(rows, columns=["id", "d", "unit", "count", "covered"])
    return seconds, load, len(frame), frame


def _copy(conn, statement: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, header=False, index=False)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="household points")
    parser.add_argument("--m", type=int, default=20_000, help="touch points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of ours and geopandas; the best is kept")
    parser.add_argument("--pg-sample", type=int, default=100_000,
                        help="households PostGIS is timed on (then extrapolated to --n)")
    parser.add_argument("--pg-url", default=None,
                        help="server to create the temporary database on (default "
                             "$GISGRID_TEST_PG, else postgres@127.0.0.1:5432)")
    parser.add_argument("--skip-postgis", action="store_true")
    parser.add_argument("--skip-geopandas", action="store_true")
    args = parser.parse_args()

    radii = Radii()
    t0 = time.perf_counter()
    households, outlets, devices = make_data(args.n, args.m, args.seed)
    touch = touch_points(outlets, devices)
    one_kind = touch.assign(kind="device", category="ATM", key="device_atm")
    print(f"data: {len(households):,} household points ({int(households['count'].sum()):,} "
          f"households, {households['unit'].nunique():,} units), {len(touch):,} touch points "
          f"({len(outlets):,} outlets, {len(devices):,} devices, {len(set(touch['key']))} "
          f"kinds, {len(BANKS)} banks); made in {time.perf_counter() - t0:.1f} s")
    print(f"radius: urban {radii.urban:g} m, rural {radii.rural:g} m; "
          f"metric CRS EPSG:{METRIC_EPSG}; best of {args.repeat} runs; 2 cores\n")

    full_s, (acc, unit_shares) = timed(lambda: ours(households, touch, radii), args.repeat)
    one_s, _ = timed(lambda: ours(households, one_kind, radii, False), args.repeat)
    share = acc.households["covered"].to_numpy() @ acc.households["count"].to_numpy() / \
        acc.households["count"].sum()
    rows = [("ours, full (11 distances, 6 banks, shares)", full_s, None),
            ("ours, one kind (1 distance, shares)", one_s, None)]
    print(f"covered share {100 * share:.2f} % ({len(unit_shares):,} units)")

    if not args.skip_geopandas:
        gp_s, (gp_d, gp_shares) = timed(lambda: geopandas_peer(households, touch, radii),
                                        args.repeat)
        np.testing.assert_allclose(gp_d, acc.households["d_any"].to_numpy(), atol=1e-6)
        ours_shares = unit_shares.set_index("code")["covered"]
        assert (gp_shares["covered"].reindex(ours_shares.index).to_numpy()
                == ours_shares.to_numpy()).all(), "geopandas shares differ"
        rows.append(("geopandas sjoin_nearest", gp_s, None))
        print("geopandas: same distances (to 1 µm) and the same covered households per unit")

    if not args.skip_postgis:
        sample = min(args.pg_sample, args.n)
        pg_s, load_s, got, frame = postgis_peer(households, touch, radii, sample, args.pg_url)
        scaled = pg_s * args.n / got
        ours_d = acc.households["d_any"].to_numpy()[frame["id"].to_numpy()]
        np.testing.assert_allclose(frame["d"].to_numpy(), ours_d, atol=1e-6)
        assert (frame["covered"].to_numpy()
                == acc.households["covered"].to_numpy()[frame["id"].to_numpy()]).all()
        note = (f"timed on {got:,} households ({pg_s:.2f} s), extrapolated ×{args.n / got:g}"
                if got < args.n else "timed on all households")
        rows.append(("PostGIS KNN <-> (LATERAL … LIMIT 1)", scaled, note))
        print(f"PostGIS: same distances and coverage on the sample; load (COPY, geometry, "
              f"GiST) {load_s:.1f} s, not counted")

    print(f"\n{'':<46}{'seconds':>10}{'vs ours full':>14}{'vs ours one kind':>18}")
    for name, seconds, note in rows:
        print(f"{name:<46}{seconds:>10.2f}{seconds / full_s:>13.1f}×{seconds / one_s:>17.1f}×"
              + (f"   ({note})" if note else ""))


if __name__ == "__main__":
    main()
