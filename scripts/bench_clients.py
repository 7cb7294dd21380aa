"""How long GDAL takes to copy every layer of the Zigui sample from the service.

One command::

    .venv/bin/python scripts/bench_clients.py                 # GeoPackage store
    .venv/bin/python scripts/bench_clients.py --postgis       # and a PostGIS copy of it

It builds the 秭归县 Zigui sample as ``gisgrid demo`` does (sample, the two banks'
grids, validation, coverage; the atlas pages are skipped) into a temporary folder, or
takes ``--store PATH`` of an existing demo store; creates a regulator key; serves the
store with ``gisgrid serve`` (one worker process, as it ships) on a free localhost port;
and copies every collection the regulator may read with

* the system ``ogr2ogr`` (GDAL 3.6 on Debian 12) with its default options, signed in as
  the README says (``GDAL_HTTP_AUTH=BASIC``, ``GDAL_HTTP_USERPWD=any:KEY``), into a
  GeoPackage: wall time, and the HTTP requests it made (counted from GDAL's debug log in
  a second, untimed run);
* pyogrio's bundled GDAL (≥ 3.7), default options, with ``GDAL_HTTP_AUTH=BEARER``: every
  layer read whole (``read_dataframe``);
* QGIS 3.22 (Debian's ``python3-qgis``, offscreen, when installed), a Basic
  authentication configuration: the households layer loaded and every feature read.

Every copied layer's feature count is compared with the store's (exit 1 on a mismatch).
With ``--postgis`` (URL, default ``$GISGRID_TEST_PG`` or postgres@127.0.0.1) the same
layers are written into a throw-away PostGIS database and measured again. The target
(issue 17): a full copy with GDAL's default options in under 20 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.auth import create_key  # noqa: E402
from layers.store import open_store  # noqa: E402
from tests.api.server import database, free_port, serve_process  # noqa: E402

TARGET_S = 20.0
GISGRID = str(Path(sys.executable).with_name("gisgrid"))

_PYOGRIO = """
import json, sys, time, pyogrio
url, names = sys.argv[1], json.loads(sys.argv[2])
start = time.perf_counter()
counts = {name: len(pyogrio.read_dataframe(url, layer=name)) for name in names}
print(json.dumps({"seconds": time.perf_counter() - start, "counts": counts,
                  "gdal": pyogrio.__gdal_version_string__}))
"""


def build_demo(folder: Path) -> Path:
    """The Zigui demo store (no atlas pages), as `gisgrid demo` builds it."""
    done = subprocess.run([GISGRID, "demo", "--out", str(folder), "--atlas-pages", "0"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"gisgrid demo failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return folder / "gisgrid.gpkg"


def expected_counts(store_url: str, names: list[str]) -> dict[str, int]:
    with open_store(store_url) as store:
        return {layer.name: layer.count for layer in store.layers() if layer.name in names}


def visible(url: str, key: str) -> list[str]:
    import httpx

    r = httpx.get(f"{url}/collections", auth=("bench", key), timeout=60)
    r.raise_for_status()
    return [c["id"] for c in r.json()["collections"]]


def ogr2ogr(url: str, key: str, out: Path, debug: bool) -> tuple[float, int, str]:
    """Copy every layer with the system ogr2ogr (default options); seconds, requests."""
    out.unlink(missing_ok=True)
    env = {**os.environ, "GDAL_HTTP_AUTH": "BASIC", "GDAL_HTTP_USERPWD": f"bench:{key}"}
    command = ["ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{url}/"]
    if debug:
        command += ["--debug", "on"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ogr2ogr failed:\n{done.stderr[-3000:]}")
    requests = len(re.findall(r"HTTP: Fetch\(", done.stderr)) if debug else 0
    version = subprocess.run(["ogr2ogr", "--version"], capture_output=True,
                             text=True).stdout.strip()
    return seconds, requests, version


def copied_counts(path: Path) -> dict[str, int]:
    import pyogrio

    return {str(name): int(pyogrio.read_info(path, layer=str(name))["features"])
            for name, _ in pyogrio.list_layers(path)}


def pyogrio_copy(url: str, key: str, names: list[str]) -> dict:
    env = {**os.environ, "GDAL_HTTP_AUTH": "BEARER", "GDAL_HTTP_BEARER": key}
    done = subprocess.run([sys.executable, "-c", _PYOGRIO, f"OAPIF:{url}/",
                           json.dumps(names)], capture_output=True, text=True, env=env,
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"pyogrio failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def qgis_households(url: str, key: str) -> tuple[float, int] | None:
    """Seconds and features for QGIS 3.22 to load the households; None without QGIS."""
    from tests.api.test_qgis import SCRIPT, SYSTEM_PYTHON, _has_qgis

    if not _has_qgis():
        return None
    start = time.perf_counter()
    done = subprocess.run([str(SYSTEM_PYTHON), "-c", SCRIPT, url, key,
                           json.dumps([["households", None]])], capture_output=True,
                          text=True, timeout=1800,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin",
                               "HOME": "/tmp"})
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"QGIS failed:\n{done.stderr[-3000:]}")
    [layer] = json.loads(lines[-1][len("RESULT "):])["layers"]
    return seconds, layer.get("count", 0)


def measure(label: str, store_url: str, folder: Path) -> bool:
    with open_store(store_url) as store:
        _, key = create_key(store, "regulator")
    port = free_port()
    command = [GISGRID, "serve", "--store", store_url, "--host", "127.0.0.1",
               "--port", str(port)]
    with serve_process(command, port, "/conformance") as url:
        names = visible(url, key)
        want = expected_counts(store_url, names)
        out = folder / f"copy-{label}.gpkg"
        ogr2ogr(url, key, out, debug=False)  # warm: the server's caches, the page cache
        seconds, _, version = ogr2ogr(url, key, out, debug=False)
        _, requests, _ = ogr2ogr(url, key, out, debug=True)
        got = copied_counts(out)
        py = pyogrio_copy(url, key, names)
        qgis = qgis_households(url, key) if "households" in names else None
    total = sum(want.values())
    print(f"\n[{label}] {len(names)} collections, {total:,} features; {version}")
    print(f"  ogr2ogr, default options : {seconds:6.2f} s, {requests} HTTP requests "
          f"(target < {TARGET_S:.0f} s: {'met' if seconds < TARGET_S else 'NOT met'})")
    print(f"  pyogrio (GDAL {py['gdal']}), default options: {py['seconds']:6.2f} s")
    ok = True
    if qgis is not None:
        print(f"  QGIS 3.22, households ({qgis[1]:,} features, start-up included): "
              f"{qgis[0]:6.2f} s")
        ok = qgis[1] == want.get("households")
    for name in names:
        copied = got.get(name, 0)
        if copied != want.get(name) or py["counts"].get(name) != want.get(name):
            print(f"  MISMATCH {name}: store {want.get(name)}, ogr2ogr {copied}, "
                  f"pyogrio {py['counts'].get(name)}")
            ok = False
    print("  every layer's count equals the store's" if ok else "  counts differ")
    return ok and seconds < TARGET_S


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="an existing `gisgrid demo` GeoPackage")
    parser.add_argument("--postgis", nargs="?", const=os.environ.get(
        "GISGRID_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="also measure a PostGIS copy (a throw-away database on this server)")
    args = parser.parse_args(argv)
    if shutil.which("ogr2ogr") is None:
        raise SystemExit("needs ogr2ogr (Debian package gdal-bin; scripts/setup.sh --test)")
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="gisgrid-bench-clients-") as tmp:
        folder = Path(tmp)
        if args.store:
            gpkg = folder / "demo.gpkg"
            shutil.copy(args.store, gpkg)
        else:
            print("building the Zigui demo store (gisgrid demo, no atlas pages) …")
            gpkg = build_demo(folder / "demo")
        ok = measure("GeoPackage", str(gpkg), folder)
        if args.postgis:
            with database(args.postgis, prefix="gisgrid_bench_clients") as url:
                with open_store(str(gpkg)) as source, open_store(url) as target:
                    for layer in source.layers():
                        if layer.name != "api_keys":
                            target.write(layer.name, source.read(layer.name))
                ok = measure("PostGIS", url, folder) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
