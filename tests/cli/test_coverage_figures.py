"""The figures of issue 14 part B, read back from every output of ``gisgrid coverage`` on
the three sample counties and compared: the county-wide (全辖) files rows against the
county's own households by kind, and both kinds of blank (无网点无机具的村/社区, 服务空白)
in report.json, the CSV files, the xlsx workbook, the GeoJSON layers, the stored layers
and the CLI summary."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import geopandas as gpd
import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner

from gis_grid.cli import main
from gis_grid.cli.analysis import coverage
from gis_grid.coverage import touch_points
from layers.gpkg import GeoPackageStore
from layers.synthetic import build_sample

if coverage.name not in main.commands:
    main.add_command(coverage)

HOUSEHOLDS = 20_000

pytestmark = pytest.mark.slow  # a sample county built and reported: ~8 s each


@pytest.fixture(scope="module", params=["420527", "330382", "371328"])
def run(request, tmp_path_factory):
    """A sample county in a GeoPackage, its layers, and one ``gisgrid coverage`` run."""
    layers = build_sample(request.param, seed=0, households=HOUSEHOLDS)
    folder = tmp_path_factory.mktemp(f"c{request.param}")
    path = folder / "sample.gpkg"
    with GeoPackageStore(path) as store:
        for name, frame in layers.items():
            store.write(name, frame)
    out = folder / "report"
    result = CliRunner().invoke(main, ["coverage", "--store", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return layers, path, out, report, result.output


def _csv(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{name}.csv", encoding="utf-8-sig", dtype={"代码": str})


def _sheet(out: Path, title: str) -> pd.DataFrame:
    rows = list(openpyxl.load_workbook(out / "coverage.xlsx")[title].values)
    return pd.DataFrame(rows[1:], columns=rows[0])


def _codes(frame: pd.DataFrame) -> list[str]:
    return frame["code"].astype(str).tolist() if "code" in frame else []


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def test_county_wide_files_use_the_county_households_by_kind(run):
    layers, _, out, report, summary = run
    homes = layers["households"].merge(
        pd.DataFrame(layers["units"][["code", "kind"]]).rename(columns={"code": "unit"}),
        on="unit", how="left")
    by_kind = homes.groupby("kind")["count"].sum()
    assert by_kind.sum() == HOUSEHOLDS
    files = pd.DataFrame(report["tables"]["files"])
    county = files.loc[files["scope"] == "territory"].set_index("metric")
    assert county.loc["urban_households", "total"] == by_kind["urban"]
    assert county.loc["rural_households", "total"] == by_kind["rural"]
    kinds = pd.DataFrame(report["tables"]["kinds"]).set_index("kind")
    assert county.loc["urban_households", "total"] == kinds.loc["urban", "households"]
    assert county.loc["participation", "total"] == len(layers["units"])
    banks = files.loc[files["scope"] == "institution"]
    for metric in ("urban_households", "rural_households", "merchants_firms"):
        mine = banks.loc[banks["metric"] == metric, "achieved"]
        assert mine.max() <= county.loc[metric, "achieved"] <= county.loc[metric, "total"]
    # Participation counts units where the ledger records files or visits, over every unit.
    ledger = layers["ledger"]
    for bank, part in banks.loc[banks["metric"] == "participation"].groupby("institution"):
        rows = ledger.loc[ledger["institution"] == bank]
        active = rows.loc[rows[["households_files", "merchants_files", "firms_files",
                                "surveys", "checks"]].sum(axis=1) > 0, "grid"]
        assert part["total"].item() == len(layers["units"])
        assert part["achieved"].item() == active.str[:12].nunique()

    # The same figures in the CSV, the workbook and the CLI summary.
    for table in (_csv(out, "files"), _sheet(out, "建档目标进度")):
        rows = table.loc[table["范围"] == "全辖"].set_index("指标")
        for metric, zh in (("participation", "参与村社区比例"),
                           ("urban_households", "城镇居民建档率"),
                           ("rural_households", "农户建档率"),
                           ("merchants_firms", "商户园区小微企业建档率")):
            assert rows.loc[zh, "总数"] == county.loc[metric, "total"]
            assert rows.loc[zh, "已完成"] == county.loc[metric, "achieved"]
    line = next(x for x in summary.splitlines() if "全辖建档" in x)
    said = [(_count(a), _count(b)) for a, b in re.findall(r"([\d,]+) / ([\d,]+)", line)]
    assert said == [(county.loc[m, "achieved"], county.loc[m, "total"])
                    for m in ("participation", "urban_households", "rural_households",
                              "merchants_firms")]


def test_both_kinds_of_blank_agree_across_outputs(run):
    layers, path, out, report, summary = run
    units = layers["units"]
    touch = touch_points(layers["outlets"], layers["devices"])
    inside = gpd.sjoin(units[["code", "geometry"]], touch[["geometry"]], predicate="intersects")
    expected = set(units["code"]) - set(inside["code"])
    with GeoPackageStore(path) as store:
        stored = {name: store.read(name) for name in ("units_without_service_point",
                                                      "service_blanks")}
    for name, layer, label in (("no_point", "units_without_service_point", "无网点无机具村社区"),
                               ("blanks", "service_blanks", "服务空白")):
        table = pd.DataFrame(report["tables"][name], columns=["code", "kind", "households"])
        codes = table["code"].tolist()
        if name == "no_point":
            assert set(codes) == expected
        assert _csv(out, name)["代码"].tolist() == codes
        sheet = _sheet(out, {"no_point": "无网点无机具村社区", "blanks": "服务空白"}[name])
        assert [str(c) for c in sheet["代码"]] == codes
        assert _codes(gpd.read_file(out / f"{layer}.geojson")) == codes
        assert _codes(stored[layer]) == codes
        line = next(x for x in summary.splitlines() if x.strip().startswith(label))
        n, villages, homes = (_count(v) for v in
                              re.search(r": ([\d,]+) units \(([\d,]+) villages\), ([\d,]+) "
                                        "households", line).groups())
        assert (n, villages, homes) == (len(table), int((table["kind"] == "rural").sum()),
                                        int(table["households"].sum()))
    # A service blank has no point inside either.
    assert {r["code"] for r in report["tables"]["blanks"]} <= expected


def _cjk(text: str) -> bool:
    return any(unicodedata.east_asian_width(ch) == "W" for ch in text)


def test_every_definition_is_explained_in_chinese(run):
    _, _, out, report, _ = run
    definitions = report["meta"]["definitions"]
    for key in ("no_point", "service_blank", "participation", "county_households",
                "county_merchants_firms"):
        assert key in definitions
    for key, text in definitions.items():
        assert _cjk(text.split("(")[0]), f"{key}: not explained in Chinese first: {text}"
    notes = {row[0]: row[1] for row in openpyxl.load_workbook(out / "coverage.xlsx")["说明"]
             .iter_rows(values_only=True) if row[0]}
    shown = {k: v for k, v in notes.items() if str(k).startswith("定义 ")}
    assert len(shown) == len(definitions)
    assert all(_cjk(label.split("(")[0][3:]) for label in shown)
    assert sorted(shown.values()) == sorted(definitions.values())
