"""Benchmark the maps on the Zigui sample: the printed atlas and the interactive page.

    .venv/bin/python scripts/bench_maps.py              # everything (about 2 minutes)
    .venv/bin/python scripts/bench_maps.py --no-browser --peer-pages 5

The input: ``layers.synthetic.sample_layers("420527")`` — the 秭归县 sample, 130,000
households, three levels of grids (12 + 193 + 456) staffed synthetically. Measured:

* the atlas (``maps.atlas.build_atlas``), both volumes: wall and CPU seconds, pages,
  seconds per page, PDF sizes. Target: under 2 minutes on the 2-core test machine.
  Peer: the plain way — a new pyplot figure per page, ``GeoDataFrame.plot`` for each
  layer, ``scatter`` for the points, ``ax.table`` — on the first ``--peer-pages`` grid
  pages; the ratio of seconds per page is printed.
* the map page (``maps.interactive.render_map_html``): build seconds and HTML size.
  Target: under 10 MB. Peer: folium's own way for the same grids and points —
  ``folium.GeoJson`` with a ``GeoJsonTooltip`` / ``GeoJsonPopup`` per grid level,
  ``MarkerCluster`` of ``folium.Marker`` for outlets, devices and staff, and every
  household point as a ``CircleMarker`` in a ``FastMarkerCluster`` — size and build
  seconds, ratios printed.
* with Chromium present (``--browser``, the default when it is): the milliseconds from
  navigation until every layer is on the map (``gisgrid.readyAt``). Target: under 3 s.

Outputs are kept in ``bench-results/maps/`` (the PDFs, map.html and its static files).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path

# The repository root, on the path for ``tests``: the page is served on a free port found
# by the test server's helper (tests/api/server.py), which is not an installed package.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from layers.synthetic import sample_layers  # noqa: E402
from maps.atlas import build_atlas  # noqa: E402
from maps.interactive import render_map_html, write_map  # noqa: E402


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def peer_atlas(layers, out: Path, pages: int) -> float:
    """Seconds per page of the plain geopandas + pyplot way, on ``pages`` grid pages."""
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from gis_grid.crs import metric_crs
    from maps.data import grid_facts
    from maps.fonts import cjk_font, rc_params

    font = cjk_font()
    grids = layers["grids"]
    crs = metric_crs(grids)
    facts = grid_facts(layers)
    metric = {name: layers[name].to_crs(crs) for name in
              ("territory", "townships", "units", "outlets", "devices", "households")}
    grids_m = grids.to_crs(crs)
    big = grids_m[grids_m["level"] == 2].head(pages)
    start = time.perf_counter()
    with matplotlib.rc_context(rc_params(font)), PdfPages(out) as pdf:
        for _, grid in big.iterrows():
            fig, (ax, tax) = plt.subplots(2, 1, figsize=(6.93, 9.84),
                                          gridspec_kw={"height_ratios": [3, 1]})
            minx, miny, maxx, maxy = grid.geometry.bounds
            grids_m[grids_m["level"] == 2].plot(ax=ax, color="#eeeeee", edgecolor="#999999")
            gpd_grid = grids_m[grids_m["code"] == grid["code"]]
            gpd_grid.plot(ax=ax, color="#9db4d0", edgecolor="#333333")
            metric["townships"].boundary.plot(ax=ax, color="#555555", linewidth=0.7)
            metric["households"].plot(ax=ax, markersize=1, color="#2e86c1")
            metric["outlets"].plot(ax=ax, markersize=12, color="#c0392b")
            metric["devices"].plot(ax=ax, markersize=8, color="#2c3e50")
            ax.set_xlim(minx, maxx)
            ax.set_ylim(miny, maxy)
            ax.set_title(f"{grid['code']}")
            rows = facts[facts["parent"] == grid["code"]]
            tax.axis("off")
            tax.table(cellText=rows[["code", "level", "worker", "households", "outlets",
                                     "devices"]].astype(str).values.tolist() or [["—"] * 6],
                      colLabels=["网格编码", "层级", "网格员", "住户", "网点", "机具"],
                      loc="upper center")
            pdf.savefig(fig)
            plt.close(fig)
    return (time.perf_counter() - start) / max(len(big), 1)


def peer_map(layers) -> tuple[float, int]:
    """folium's own way: (build seconds, HTML bytes)."""
    import folium
    from folium.plugins import FastMarkerCluster, MarkerCluster

    start = time.perf_counter()
    grids = layers["grids"]
    centre = grids.to_crs(4326).geometry.union_all().centroid
    fmap = folium.Map(location=[centre.y, centre.x], zoom_start=10, prefer_canvas=True)
    fields = ["code", "level", "kind", "worker", "households"]
    for level in sorted(grids["level"].unique()):
        part = grids[grids["level"] == level][[*fields, "geometry"]]
        folium.GeoJson(part, name=f"level {level}",
                       tooltip=folium.GeoJsonTooltip(fields=fields),
                       popup=folium.GeoJsonPopup(fields=fields),
                       style_function=lambda f: {"weight": 1}).add_to(fmap)
    for name in ("outlets", "devices"):
        cluster = MarkerCluster(name=name).add_to(fmap)
        for _, row in layers[name].iterrows():
            folium.Marker([row.geometry.y, row.geometry.x], tooltip=str(row["id"])
                          ).add_to(cluster)
    homes = layers["households"]
    FastMarkerCluster(list(zip(homes.geometry.y, homes.geometry.x, strict=True)),
                      name="households").add_to(fmap)
    folium.LayerControl().add_to(fmap)
    page = fmap.get_root().render()
    return time.perf_counter() - start, len(page.encode("utf-8"))


def browser_ready_ms(folder: Path) -> tuple[float, float] | None:
    """Milliseconds until the page at ``folder/map.html`` has every layer on the map, in
    headless Chromium with no network but localhost: the first load (cold) and the best of
    three; None without Chromium."""
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        return None
    import functools
    import http.server

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.api.server import free_port

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the bench prints its own lines
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--window-size=1400,900",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                 "--proxy-server=http://127.0.0.1:9"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        times = []
        for _ in range(3):
            driver.get(f"http://127.0.0.1:{port}/map.html")
            deadline = time.monotonic() + 30
            while not driver.execute_script("return !!(window.gisgrid && gisgrid.ready)"):
                if time.monotonic() > deadline:
                    return float("inf"), float("inf")
                time.sleep(0.05)
            times.append(driver.execute_script("return gisgrid.readyAt"))
        return times[0], min(times)
    finally:
        driver.quit()
        server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "maps"))
    parser.add_argument("--peer-pages", type=int, default=10,
                        help="grid pages the peer atlas draws (default 10)")
    parser.add_argument("--browser", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the page in headless Chromium (default: yes)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    start = _clock()
    layers = sample_layers("420527")
    wall, _ = _since(start)
    grids = layers["grids"]
    print(f"sample: Zigui 420527, {int(layers['households']['count'].sum()):,} households, "
          f"grids {len(grids)} ({', '.join(f'L{k} {v}' for k, v in grids['level'].value_counts().sort_index().items())}), "  # noqa: E501
          f"built in {wall:.1f} s")

    start = _clock()
    result = build_atlas(layers, out / "atlas", progress=False)
    wall, cpu = _since(start)
    pages = sum(result.pages.values())
    sizes = {v: result.paths[v].stat().st_size / 1e6 for v in result.paths}
    print(f"atlas: {pages} pages ({', '.join(f'{v} {n}' for v, n in result.pages.items())}) "
          f"in {wall:.1f} s wall, {cpu:.1f} s CPU — {wall / pages:.2f} s/page; "
          f"PDFs {', '.join(f'{v} {s:.1f} MB' for v, s in sizes.items())}; "
          f"target < 120 s: {'met' if wall < 120 else 'MISSED'}")
    if args.peer_pages > 0:
        per_page = peer_atlas(layers, out / "peer-atlas.pdf", args.peer_pages)
        print(f"  peer (new pyplot figure + GeoDataFrame.plot + ax.table per page): "
              f"{per_page:.2f} s/page → ours {wall / pages:.2f} s/page, "
              f"{per_page / (wall / pages):.1f}× faster")

    start = _clock()
    page = render_map_html(layers)
    wall, _ = _since(start)
    size = len(page.encode("utf-8"))
    print(f"map: {size / 1e6:.2f} MB built in {wall:.1f} s; target < 10 MB: "
          f"{'met' if size < 10e6 else 'MISSED'}")
    peer_seconds, peer_size = peer_map(layers)
    print(f"  peer (folium GeoJson + popups, MarkerCluster of Markers, FastMarkerCluster of "
          f"households): {peer_size / 1e6:.2f} MB in {peer_seconds:.1f} s → ours "
          f"{peer_size / size:.1f}× smaller")
    folder = out / "map"
    write_map(layers, folder)
    if args.browser:
        measured = browser_ready_ms(folder)
        if measured is None:
            print("browser: Chromium not installed; skipped")
        else:
            cold, best = measured
            print(f"browser: every layer on the map {cold:.0f} ms after navigation on the "
                  f"first load, {best:.0f} ms best of 3 (headless Chromium, no network); "
                  f"target < 3000 ms: {'met' if cold < 3000 else 'MISSED'}")
    print(f"outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
