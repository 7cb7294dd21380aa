"""The interactive map page: offline (no CDN), its layers, its size, and phones only for
viewers allowed to see them."""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner

from gis_grid.errors import GisGridError
from maps import data as mapdata
from maps.interactive import STATIC_DIR, build_map, render_map_html, write_map
from maps.web import STATIC_URL, map_page_html
from tests.maps.fixtures import analysis_layers, township, zigui

ROOT = Path(__file__).resolve().parents[2]
BASEMAP = "http://tiles.intranet.example/{z}/{x}/{y}.png"
URL = re.compile(r"""(?:https?:)?//[^\s"'<>)\\]+""", re.IGNORECASE)
#: Protocol-relative or absolute URLs an HTML attribute or CSS url() could load.
LOADED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""",
                    re.IGNORECASE)


@pytest.fixture(scope="module")
def zigui_page() -> tuple[str, float]:
    started = time.perf_counter()
    page = render_map_html(zigui(), basemap_url=BASEMAP)
    return page, time.perf_counter() - started


def _external(page: str, allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted({u for u in URL.findall(page) if not any(u in a or a.startswith(u)
                                                             for a in allowed)})


def test_page_references_nothing_but_its_own_files(zigui_page):
    page, _ = zigui_page
    # The only absolute URL is the configured basemap; no CDN, no web font, no tracker.
    assert _external(page, (BASEMAP,)) == []
    assert "cdn" not in page.lower() and "googleapis" not in page
    loaded = [a or b for a, b in LOADED.findall(page)]
    assert loaded, "the page loads no script or stylesheet at all"
    for ref in loaded:
        if ref.startswith("data:"):
            continue
        assert ref.startswith("static/"), ref
        assert (STATIC_DIR / ref.removeprefix("static/")).is_file(), f"{ref} is not shipped"


def test_page_without_basemap_has_no_absolute_url_and_draws_boundaries():
    page = render_map_html(township("420527-102"))
    assert _external(page) == []
    assert "L.tileLayer" not in page
    for overlay in ("县界", "乡镇（街道）界", "村（社区）界"):
        assert f'"name":"{overlay}"' in page


def test_basemap_is_the_configured_tile_url(zigui_page):
    page, _ = zigui_page
    assert "L.tileLayer" in page and json.dumps(BASEMAP) in page


def test_vendored_files_have_licences_and_versions():
    versions = (STATIC_DIR / "VERSIONS.md").read_text(encoding="utf-8")
    assert "leaflet@1.9.4" in versions and "leaflet.markercluster@1.5.3" in versions
    assert (STATIC_DIR / "leaflet" / "LICENSE").is_file()
    assert (STATIC_DIR / "leaflet.markercluster" / "MIT-LICENCE.txt").is_file()
    # The static files of the vendored libraries reference no CDN either (source-map
    # comments aside), so nothing in the page reaches out.
    for path in STATIC_DIR.rglob("*.css"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"url\(\s*[\"']?(https?:)?//", text), path


def test_package_data_ships_the_static_files():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["maps"]
    assert any(p.startswith("static/") and "**" in p for p in patterns)


def test_every_layer_is_an_overlay(zigui_page):
    page, _ = zigui_page
    for overlay in ("一级网格", "二级网格", "三级网格", "物理网点",
                    "电子机具", "网格人员", "已覆盖住户", "未覆盖住户", "县界"):
        assert f'"name":"{overlay}"' in page, overlay
    assert "L.control.layers" in page
    assert "gg-legend" in page and "政府网格" in page
    # Chinese popups: the fields people ask about.
    for label in ("网格编码", "网格员", "住户（户）", "网点数", "机具数", "建档率"):
        assert label in page


def test_analysis_layers_are_drawn():
    layers = township("420527-102")
    layers.update(analysis_layers(layers))
    page = render_map_html(layers)
    for overlay in ("服务空白区", "网格缺口", "跨行重叠"):
        assert f'"name":"{overlay}"' in page
    # grid_overlap lists every unit; only those of two or more banks are overlaps.
    start = page.index('"name":"跨行重叠"')
    data = page[start:page.index("gisgrid.", start)]
    assert data.count('"Feature"') == 2 and "NSH;YCB;ABC" in data and '"NSH"' not in data


def test_grids_coloured_by_institution_and_kind_styles():
    layers = township("420527-102")
    grids = layers["grids"].copy()
    grids["institution"] = np.where(grids["kind"] == "urban", "NSH", "YCB")
    layers["grids"] = grids
    page = render_map_html(layers)
    assert "秭归农商行" in page and "邮储银行秭归县支行" in page
    assert '"dashArray":"6 4"' in page  # rural grids dashed
    assert '"dashArray":null' in page  # urban grids solid


def test_grid_layers_of_several_banks_are_separate_overlays():
    layers = township("420527-102")
    nsh = layers["grids"].copy()
    nsh["institution"] = "NSH"
    ycb = nsh.copy()
    ycb["institution"] = "YCB"
    page = render_map_html({**layers, "grids": nsh, "grids__ycb": ycb})
    assert '"name":"二级网格（秭归农商行）"' in page
    assert '"name":"二级网格（邮储银行秭归县支行）"' in page


def test_zigui_page_is_small_and_quick(zigui_page):
    page, seconds = zigui_page
    size = len(page.encode("utf-8"))
    assert size < 10_000_000, f"{size / 1e6:.1f} MB"
    assert seconds < 20, f"built in {seconds:.1f} s"


def test_phones_only_for_viewers_allowed(zigui_page):
    staff = zigui()["staff"]
    phones = [p for p in staff["phone"].dropna().astype(str) if p]
    page, _ = zigui_page
    assert not any(p in page for p in phones)
    assert "联系电话" not in page
    layers = township("420527-102")
    allowed = render_map_html(layers, viewer_may_see_phones=True)
    shown = [p for p in phones if p in allowed]
    assert shown and "联系电话" in allowed


def test_polygons_are_simplified_as_a_coverage():
    layers = township("420527-102")
    fmap = build_map(layers, simplify_m=50.0)
    page = fmap.get_root().render()
    coarse = page.count("[")
    fine = render_map_html(layers, simplify_m=0).count("[")
    assert coarse < fine


def test_write_map_makes_a_standalone_folder(tmp_path):
    path = write_map(township("420527-102"), tmp_path / "out")
    assert path == tmp_path / "out" / "map.html"
    page = path.read_text(encoding="utf-8")
    for ref in re.findall(r'(?:src|href)="(static/[^"]+)"', page):
        assert (tmp_path / "out" / ref).is_file(), ref


def test_api_page_uses_the_mount_point():
    page = map_page_html(township("420527-102"))
    assert STATIC_URL == "/static/maps/"
    assert 'src="/static/maps/leaflet/leaflet.js"' in page
    assert _external(page) == []


def test_bad_static_base_and_missing_grids_are_refused():
    layers = township("420527-102")
    with pytest.raises(GisGridError, match="must end with '/'"):
        build_map(layers, static_base="/static/maps")
    without = {k: v for k, v in layers.items() if k != "grids"}
    with pytest.raises(GisGridError, match="no grids layer"):
        build_map(without)
    broken = layers["grids"].drop(columns=["kind"])
    with pytest.raises(GisGridError, match="kind"):
        build_map({**layers, "grids": broken})


def test_grid_facts():
    layers = zigui()
    facts = mapdata.grid_facts(layers)
    assert len(facts) == len(layers["grids"])
    by_code = facts.set_index("code")
    village = by_code.loc["420527-101-001"]
    assert village["name"] == "滨湖居委会" and village["level"] == 2
    # Files % of a village comes from the ledger rows of its unit; its small grids
    # inherit it; a township's sums its villages'.
    ledger = layers["ledger"]
    rows = ledger[ledger["grid"] == "420527101001"]
    expected = 100 * rows["households_files"].sum() / rows["households_total"].sum()
    assert village["files_pct"] == pytest.approx(expected)
    assert by_code.loc["420527-101-001-001", "files_pct"] == pytest.approx(expected)
    assert not np.isnan(by_code.loc["420527-101", "files_pct"])
    # Outlets and devices are counted inside; level-1 counts add up to the county's.
    level1 = facts[facts["level"] == 1]
    assert level1["outlets"].sum() == len(layers["outlets"])
    # A worker's name and phone come from the staff layer.
    staffed = facts[facts["worker"].notna()].iloc[0]
    person = layers["staff"].set_index("name").loc[staffed["worker"]]
    assert staffed["phone"] == person["phone"]


def test_household_cells_add_up():
    layers = zigui()
    cells = mapdata.household_cells(layers)
    assert isinstance(cells, gpd.GeoDataFrame)
    assert cells["households"].sum() == pytest.approx(layers["households"]["count"].sum(),
                                                      abs=len(cells))
    assert cells["covered"].any() and (~cells["covered"]).any()
    assert len(cells) < len(layers["households"]) / 10


def test_map_command_writes_the_page(tmp_path):
    from gis_grid.cli.maps import map_command
    from layers.store import open_store

    store = tmp_path / "s.gpkg"
    layers = township("420527-102")
    with open_store(str(store)) as target:
        for name in ("territory", "townships", "units", "institutions", "outlets", "devices",
                     "grids"):
            target.write(name, layers[name])
    out = tmp_path / "map"
    result = CliRunner().invoke(map_command, ["--store", str(store), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "map.html").is_file() and (out / "static" / "leaflet" / "leaflet.js").is_file()
    assert "map.html" in result.output
    missing = CliRunner().invoke(map_command, ["--store", str(store), "--grids", "grids__x",
                                               "--out", str(out)])
    assert missing.exit_code != 0
    assert "no grid layer 'grids__x'" in str(missing.exception or missing.output)


def test_commands_read_like_a_manual():
    import click

    from gis_grid.cli.maps import atlas_command, map_command

    group = click.Group(commands={"map": map_command, "atlas": atlas_command})
    for name, words in (("map", ("--basemap", "--phones", "no internet")),
                        ("atlas", ("--level", "物理网点分布图", "byte for byte"))):
        result = CliRunner().invoke(group, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "--store" in result.output and "Exit codes" in result.output
        for word in words:
            assert word in result.output, (name, word)


def test_gisgrid_map_and_atlas_through_the_root_command(tmp_path):
    from gis_grid import cli
    from layers.store import open_store

    store = tmp_path / "s.gpkg"
    with open_store(str(store)) as target:
        target.write("territory", township("420527-102")["territory"])
    for name in ("map", "atlas"):
        result = CliRunner().invoke(cli.main, [name, "--store", str(store), "--out",
                                               str(tmp_path / name)])
        assert result.exit_code == 4, result.output  # a store error: no grid layer
        assert "no grid layer 'grids'" in result.output
