"""The printed atlas: volumes and page counts, Chinese text that extracts, pages that
render, the same bytes for the same input, and a clear error without a CJK font."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from maps.atlas import OVERVIEW_TITLES, build_atlas
from maps.atlas import scene as atlas_module
from maps.atlas.layout import _orientation
from maps.fonts import FontMissing, cjk_font
from tests.maps.fixtures import analysis_layers, township

TOWNSHIP = "420527-102"  # 归州镇: 2 urban and 10 rural villages / communities

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None,
                                reason="poppler-utils missing (scripts/setup.sh --test)")


def _pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    return int(next(line.split()[-1] for line in info.stdout.splitlines()
                    if line.startswith("Pages:")))


def _text(path: Path, first: int | None = None, last: int | None = None) -> str:
    args = ["pdftotext", "-layout"]
    if first:
        args += ["-f", str(first), "-l", str(last or first)]
    done = subprocess.run([*args, str(path), "-"], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def layers():
    layers = township(TOWNSHIP)
    layers.update(analysis_layers(layers, prefix=TOWNSHIP.replace("-", "")))
    return layers


@pytest.fixture(scope="module")
def atlas(layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    return build_atlas(layers, out, progress=False), out


def _big_grids(layers, kind: str) -> list[str]:
    grids = layers["grids"]
    chosen = grids[(grids["level"] == 2) & (grids["kind"] == kind)]
    return sorted(chosen["code"].tolist())


def test_two_volumes_with_overviews_then_a_page_per_big_grid(atlas, layers):
    result, out = atlas
    assert set(result.paths) == {"urban", "rural"}
    for volume in ("urban", "rural"):
        path = out / f"atlas-{volume}.pdf"
        assert result.paths[volume] == path
        expected = len(OVERVIEW_TITLES) + len(_big_grids(layers, volume))
        assert result.pages[volume] == expected == _pages(path)


def test_text_has_the_three_maps_and_the_grid_codes(atlas, layers):
    _, out = atlas
    for volume in ("urban", "rural"):
        path = out / f"atlas-{volume}.pdf"
        text = _text(path)
        for title in ("物理网点分布图", "电子机具分布图", "网格人员及服务分布图"):
            assert title in _text(path, 1, 3), title
        for code in _big_grids(layers, volume):
            assert code in text, code
        # Every page: the table header, the page number, sources and the data date.
        assert text.count("网格编码") == _pages(path)
        assert f"第1页/共{_pages(path)}页" in "".join(text.split())
        assert "Vonng/adcode" in text and "合成样例数据" in text and "2026-06" in text
    urban = _text(out / "atlas-urban.pdf", 4)
    assert "城区卷" in urban and "网格员" in urban and "建档率" in urban
    # The analysis layers are in the legend where they are drawn.
    rural = "".join(_text(out / "atlas-rural.pdf").split())
    assert "服务空白区" in rural and "跨行重叠" in rural


def test_chinese_is_an_embedded_font_not_boxes(atlas):
    _, out = atlas
    fonts = subprocess.run(["pdffonts", str(out / "atlas-urban.pdf")], capture_output=True,
                           text=True, check=True)
    cjk = [line for line in fonts.stdout.splitlines() if "NotoSansCJK" in line]
    assert cjk, fonts.stdout
    for line in cjk:
        emb, _sub, uni = line.split()[-5:-2]
        assert emb == "yes" and uni == "yes", line  # embedded, with a ToUnicode map


def test_pages_render_to_png(atlas, tmp_path):
    _, out = atlas
    for page in (1, 4):
        done = subprocess.run(
            ["pdftoppm", "-r", "40", "-png", "-f", str(page), "-l", str(page),
             str(out / "atlas-urban.pdf"), str(tmp_path / "page")],
            capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "Error" not in done.stderr and "Mismatch" not in done.stderr, done.stderr
    rendered = sorted(tmp_path.glob("page-*.png"))
    assert len(rendered) == 2 and all(p.stat().st_size > 2000 for p in rendered)


def test_same_input_same_bytes(layers, tmp_path):
    first = build_atlas(layers, tmp_path / "a", volumes=["urban"], limit=1, progress=False)
    second = build_atlas(layers, tmp_path / "b", volumes=["urban"], limit=1, progress=False)
    a = first.paths["urban"].read_bytes()
    b = second.paths["urban"].read_bytes()
    assert a == b
    assert b"CreationDate" not in a and b"/Producer (gis-grid" in a


def test_a_missing_font_is_a_clear_error(layers, tmp_path, monkeypatch):
    with pytest.raises(FontMissing, match="fonts-noto-cjk"):
        build_atlas(layers, tmp_path / "x", font_families=["No Such CJK Font"],
                    progress=False)
    assert not (tmp_path / "x").exists()
    # The default list too: with no family installed the run stops before any page.
    monkeypatch.setattr("maps.fonts.CJK_FAMILIES", ("No Such CJK Font",))
    with pytest.raises(FontMissing):
        build_atlas(layers, tmp_path / "y", progress=False)
    monkeypatch.undo()
    assert cjk_font().family == "Noto Sans CJK SC"


def test_a_character_the_font_lacks_is_an_error_not_a_box(layers, tmp_path):
    odd = dict(layers)
    territory = odd["territory"].copy()
    territory["name"] = "秭归县\U0001F9ED"  # a compass emoji: no CJK font has it
    odd["territory"] = territory
    with pytest.raises(FontMissing, match="cannot print a character"):
        build_atlas(odd, tmp_path, volumes=["urban"], limit=0, progress=False)


def test_orientation_follows_the_grid_shape():
    assert _orientation((0, 0, 1000, 3000), 5)[0] == "portrait"
    assert _orientation((0, 0, 3000, 1000), 5)[0] == "landscape"


def test_level_and_volume_errors(layers, tmp_path):
    from gis_grid.errors import GisGridError

    with pytest.raises(GisGridError, match="unknown volume"):
        build_atlas(layers, tmp_path, volumes=["suburban"], progress=False)
    only_rural = dict(layers)
    grids = layers["grids"]
    only_rural["grids"] = grids[grids["kind"] == "rural"]
    result = build_atlas(only_rural, tmp_path, level=2, limit=0, progress=False)
    assert set(result.paths) == {"rural"}  # a volume without grids is skipped
    no_level3 = dict(layers)
    no_level3["grids"] = grids[grids["level"] < 3]
    with pytest.raises(GisGridError, match="no grid at level 3"):
        build_atlas(no_level3, tmp_path, level=3, progress=False)


def test_masked_phones(layers, tmp_path):
    result = build_atlas(layers, tmp_path, volumes=["urban"], limit=1, show_phones=False,
                         progress=False)
    text = _text(result.paths["urban"], 4)
    phones = [p for p in layers["staff"]["phone"].dropna() if str(p)[:3] + "****" in text]
    assert phones and not any(p in text for p in phones)


def test_atlas_command(layers, tmp_path):
    from gis_grid.cli.maps import atlas_command
    from layers.store import open_store

    store = tmp_path / "s.gpkg"
    with open_store(str(store)) as target:
        for name in ("territory", "townships", "units", "institutions", "outlets", "devices",
                     "grids", "ledger"):
            target.write(name, layers[name])
    result = CliRunner().invoke(atlas_command, ["--store", str(store), "--out",
                                                str(tmp_path / "out"), "--limit", "1",
                                                "--volume", "rural"])
    assert result.exit_code == 0, result.output
    assert "atlas-rural.pdf (4 pages)" in result.output
    assert _pages(tmp_path / "out" / "atlas-rural.pdf") == 4


def test_paths_of_multipolygons_keep_every_part():
    import shapely

    geoms = np.array([shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 0, 3, 1)]),
                      shapely.Polygon(shapely.box(0, 0, 4, 4).exterior.coords,
                                      [shapely.box(1, 1, 2, 2).exterior.coords])],
                     dtype=object)
    paths = atlas_module._paths(geoms)
    assert [len(p.vertices) for p in paths] == [10, 10]
    # Drawn, the second part of the multipolygon is filled and the hole is not.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=25)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 4)
    ax.axis("off")
    atlas_module._add_paths(ax, paths, facecolors="black", edgecolors="none")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[::-1, :, 0]  # row 0 at y = 0

    def pixel(x: float, y: float) -> int:
        return int(image[int(y * 25), int(x * 25)])

    assert pixel(2.5, 0.5) == 0 and pixel(3.5, 3.5) == 0
    assert pixel(1.5, 1.5) == 255
