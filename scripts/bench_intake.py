"""Benchmark: a 10⁵-row outlets file with realistic faults, fully reported in one pass.

    .venv/bin/python scripts/bench_intake.py [--rows 100000] [--share 0.01] [--format csv|xlsx]
                                             [--problems FILE]

Builds the Zigui sample store (territory, townships, units, institutions; a GeoPackage in
a temporary folder), then writes ``--rows`` outlets as a GBK-encoded CSV (as Chinese
offices export it) with faults mixed in at about 1 % each: points at (0, 0), longitude
and latitude swapped, duplicate ids, missing required names, a tier that is not one of
the four, a status outside its enumeration, 11-digit village codes, and points on
another continent (``--share`` sets the 1 %). It then times
``layers.transfer.import_file`` — read (GBK detected), schema checks, place checks
against the territory — until it refuses the file with every problem, and the writing
of the full problem list (``--problems``, .csv or .xlsx).

Prints the seconds of each part, the problem count, and the summary by field and kind.
Target (issue 15): the whole report in under 10 s. The peer is the product itself
before issue 15 (no place checks, no summary), which is not kept; the number to watch
is the absolute time on this 2-core machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 10.0


def make_outlets(rows: int, units, territory, seed: int, share: float = 0.01):
    """``rows`` outlets inside the territory, with faults; returns (table, faults)."""
    import numpy as np
    import pandas as pd
    import shapely

    from gis_grid.model import OUTLET_STATUSES, OUTLET_TIERS

    rng = np.random.default_rng(seed)
    area = shapely.union_all(territory.geometry.values)
    # Points inside the territory: random points of its box, kept when inside (vectorised).
    w, s, e, n = area.bounds
    xs, ys = np.empty(0), np.empty(0)
    shapely.prepare(area)
    while len(xs) < rows:
        x, y = rng.uniform(w, e, rows * 2), rng.uniform(s, n, rows * 2)
        inside = shapely.contains_xy(area, x, y)
        xs, ys = np.concatenate([xs, x[inside]]), np.concatenate([ys, y[inside]])
    xs, ys = xs[:rows], ys[:rows]
    table = pd.DataFrame({
        "id": [f"B-{i:06d}" for i in range(rows)],
        "institution": rng.choice(["NSH", "YCB", "ABC", "CCB", "BOC", "CZB"], rows),
        "tier": rng.choice(OUTLET_TIERS, rows),
        "name": [f"第{i}号助农服务点" for i in range(rows)],
        "status": rng.choice(OUTLET_STATUSES, rows),
        "unit": rng.choice(units["code"].astype(str).to_numpy(), rows),
        "lon": np.round(xs, 7).astype(str), "lat": np.round(ys, 7).astype(str),
    })
    picks = rng.permutation(rows)
    share = max(1, int(rows * share))
    faults = {}

    def take(name: str, k: int = share):
        nonlocal picks
        chosen, picks = picks[:k], picks[k:]
        faults[name] = len(chosen)
        return chosen

    at = take("(0, 0) points")
    table.loc[at, ["lon", "lat"]] = "0"
    at = take("lon/lat swapped")
    table.loc[at, ["lon", "lat"]] = table.loc[at, ["lat", "lon"]].to_numpy()
    at = take("another continent", share // 2)
    table.loc[at, "lon"], table.loc[at, "lat"] = "-73.9857", "40.7484"
    at = take("duplicate ids")
    table.loc[at, "id"] = table["id"].iloc[picks[:len(at)]].to_numpy()
    at = take("missing names")
    table.loc[at, "name"] = ""
    at = take("bad tiers")
    table.loc[at, "tier"] = "支行"
    at = take("bad statuses", share // 2)
    table.loc[at, "status"] = "关门"
    at = take("11-digit village codes", share // 2)
    table.loc[at, "unit"] = table.loc[at, "unit"].str[:11]
    return table, faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--share", type=float, default=0.01,
                        help="Share of rows for each kind of fault (0.1: 65 %% of rows bad).")
    parser.add_argument("--format", choices=["csv", "xlsx"], default="csv",
                        help="The file imported: GBK CSV (default) or an Excel sheet.")
    parser.add_argument("--problems", default=None,
                        help="Problem list to write (default: problems.csv in the temp folder).")
    args = parser.parse_args()

    from gis_grid.errors import InputError, summarize
    from layers.gpkg import GeoPackageStore
    from layers.reports import write_problems
    from layers.synthetic import build_sample
    from layers.transfer import import_file

    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        folder = Path(tmp)
        sample = build_sample("420527", households=5_000)
        store = GeoPackageStore(folder / "store.gpkg")
        for name in ("territory", "townships", "units", "institutions"):
            store.write(name, sample[name])
        table, faults = make_outlets(args.rows, sample["units"], sample["territory"],
                                     args.seed, args.share)
        if args.format == "csv":
            path = folder / "outlets.csv"
            path.write_bytes(table.to_csv(index=False).encode("gbk"))
        else:
            from layers.files import write_file

            path = folder / "outlets.xlsx"
            write_file(table, path, layer="outlets")
        kind = "GBK CSV" if args.format == "csv" else "XLSX"
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB of {kind}; faults: "
              + ", ".join(f"{n:,} {what}" for what, n in faults.items()))

        start = time.perf_counter()
        try:
            import_file(store, path, "outlets")
        except InputError as refused:
            problems = refused.problems
            report = refused.report()
        else:
            raise SystemExit("the faulty file was stored: the checks missed every fault")
        checked = time.perf_counter() - start
        listing = Path(args.problems) if args.problems else folder / "problems.csv"
        start = time.perf_counter()
        write_problems(problems, listing)
        listed = time.perf_counter() - start
        stored = {i.name for i in store.layers()}
        store.close()

        print(f"import refused with {len(problems):,} problems in {checked:.2f} s "
              f"(read, schema and place checks, report); problem list {listing.suffix} "
              f"written in {listed:.2f} s; total {checked + listed:.2f} s "
              f"(target < {TARGET_SECONDS:g} s: "
              f"{'met' if checked + listed < TARGET_SECONDS else 'NOT met'})")
        print("outlets stored:", "yes (wrong!)" if "outlets" in stored else "no")
        print("by field and kind:")
        for field, kind, count in summarize(problems):
            print(f"  {field}: {kind} × {count:,}")
        print(report.splitlines()[0])


if __name__ == "__main__":
    main()
