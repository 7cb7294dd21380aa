"""The risk-watch and event commands as a user meets them, on a GeoPackage store holding
the Zigui sample (a small household count): screen, inspect, events …"""

from __future__ import annotations

import json

import geopandas as gpd
import openpyxl
import pandas as pd
import pytest

from gis_grid.cli import main
from gis_grid.cli.watch import events, inspect, screen
from layers.gpkg import GeoPackageStore
from tests.cli.conftest import run_command

for command in (screen, inspect, events):  # as the lead registers them
    main.add_command(command)


SAMPLE_HOUSEHOLDS = 3000  # the sample store of tests/cli/conftest.py
run = run_command


def test_help_reads_like_a_manual():
    assert "screen" in run("--help") and "inspect" in run("--help")
    text = run("screen", "--help")
    assert "小额贷款公司" in text and "--store" in text and "watch_counts" in text
    assert "illegal_fundraising" in run("inspect", "--help")
    text = run("events", "--help")
    for sub in ("report", "move", "list", "show", "patrol", "stats", "paths"):
        assert sub in text
        assert "--help" in run("events", sub, "--help")
    assert "督查办结" in run("events", "paths")


def test_screen_the_sample(store, tmp_path):
    out = run("screen", "--store", store, "--out", str(tmp_path / "watch.xlsx"))
    assert "microloan companies excluded" in out and "attached to units" in out
    source = GeoPackageStore(store)
    entities, watch = source.read("entities"), source.read("watch_list")
    assert 0 < len(watch) < len(entities)
    assert watch["keywords"].notna().all() and (watch["grid"] == watch["unit"]).all()
    assert not watch["name"].str.contains("小额贷款有限公司").any()
    counts = source.read("watch_counts")
    assert counts["flagged"].sum() == len(watch) and counts["entities"].sum() == len(entities)
    book = openpyxl.load_workbook(tmp_path / "watch.xlsx")
    assert book.sheetnames == ["重点关注名单", "网格统计"]
    assert [c.value for c in book["重点关注名单"][1]][:3] == ["主体编号", "名称", "登记类型"]
    assert book["重点关注名单"].max_row == len(watch) + 1
    assert book["网格统计"]["A1"].value == "村/社区"
    run("screen", "--store", store, "--out", str(tmp_path / "watch.txt"), code=2)


def test_screen_a_file_onto_grids(store, tmp_path):
    source = GeoPackageStore(store)
    townships = source.read("townships")
    source.write("grids", gpd.GeoDataFrame(
        {"code": townships["code"], "level": 1, "kind": "rural"},
        geometry=townships.geometry.array, crs=townships.crs))
    point = townships.geometry.iloc[0].representative_point()
    csv = tmp_path / "entities.csv"
    pd.DataFrame({
        "id": ["E1", "E2", "E3", "E4"],
        "name": ["秭归鑫盛Ｐ２Ｐ信息服务有限公司", "秭归县鑫盛小额贷款有限公司",
                 "秭归鑫盛投（融）资咨询有限公司", "茅坪镇李记餐馆"],
        "registered_type": ["有限责任公司", "有限责任公司", "有限责任公司", "个体工商户"],
        "lon": point.x, "lat": point.y,
    }).to_csv(csv, index=False)
    # the store holds the sample's entities: a file replaces them only when asked to
    out = run("screen", "--store", store, "--file", str(csv), code=2)
    assert "--mode replace|append|upsert|delete" in out
    assert len(GeoPackageStore(store).read("entities")) > 4
    out = run("screen", "--store", store, "--file", str(csv), "--mode", "replace", "--out",
              str(tmp_path / "w.csv"))
    assert "replace of 4 entities" in out and "2 flagged, 1 microloan" in out
    watch = GeoPackageStore(store).read("watch_list")
    assert watch[["id", "keywords"]].values.tolist() == [["E1", "P2P"], ["E3", "投融资"]]
    assert set(watch["grid"]) == {townships["code"].iloc[0]}
    written = pd.read_csv(tmp_path / "w.csv", encoding="utf-8-sig")
    assert list(written.columns)[:2] == ["主体编号", "名称"] and len(written) == 2


def test_inspect_and_route(store):
    entities = GeoPackageStore(store).read("entities")
    entity, unit = entities.loc[0, "id"], entities.loc[0, "unit"]
    street = unit[:9] + "000"
    out = run("inspect", entity, "--inspector", "王伟", "--date", "2026-05-01",
              "--found", "1", "--found", "public_promotion", "--store", store)
    assert "2 of 9 checks found" in out and "→ 街道处置办" in out
    out = run("inspect", entity, "--inspector", "王伟", "--date", "2026-05-02",
              "--found", "5", "--detail", "承诺年化12%", "--street", street,
              "--street-name", "茅坪镇", "--store", store)
    assert "→ 市金融办" in out and "检查项5（非法吸收或变相吸收公众资金）不属于茅坪镇" in out
    out = run("inspect", entity, "--inspector", "王伟", "--date", "2026-05-03",
              "--store", store)
    assert "0 of 9 checks found" in out and "risk_reports: 2 reports" in out
    source = GeoPackageStore(store)
    assert len(source.read("inspections")) == 27
    reports = source.read("risk_reports")
    assert reports["route"].tolist() == ["street", "city"]
    assert reports["grid"].tolist() == [unit, unit]
    run("inspect", "ENT-99999", "--inspector", "王伟", "--store", store, code=3)
    run("inspect", entity, "--inspector", "王伟", "--found", "12", "--store", store, code=2)
    run("inspect", entity, "--inspector", "王伟", "--remit", "1,x", "--store", store, code=2)


def test_events_from_report_to_assessment(store, tmp_path):
    units = GeoPackageStore(store).read("units")
    unit = units.iloc[0]
    spot = unit.geometry.representative_point()
    out = run("events", "report", "--kind", "emergency", "--reporter", "王伟",
              "--lon", str(spot.x), "--lat", str(spot.y), "--at", "2026-05-01 08:00",
              "--id", "EV-1", "--summary", "井盖缺失", "--store", store)
    assert f"in grid {unit['code']}" in out and "due 2026-05-02 08:00" in out
    run("events", "report", "--kind", "general", "--reporter", "王伟", "--grid",
        unit["code"], "--at", "2026-05-01 09:00", "--id", "EV-2", "--store", store)
    out = run("events", "move", "EV-1", "accept", "--actor", "王伟", "--store", store, code=1)
    assert "cannot go to 'accept'" in out and "allowed: escalate → escalated" in out
    run("events", "move", "EV-1", "escalate", "--actor", "王伟", "--owner", "街道应急办",
        "--at", "2026-05-01 08:30", "--store", store)
    out = run("events", "move", "EV-1", "track", "--actor", "王伟", "--at",
              "2026-05-01 09:00", "--store", store, code=1)
    assert "needs a note" in out
    run("events", "move", "EV-1", "track", "--actor", "王伟", "--note", "现场跟踪",
        "--at", "2026-05-01 09:00", "--version", "2", "--store", store)
    out = run("events", "move", "EV-1", "resolve", "--actor", "应急办", "--version", "2",
              "--store", store, code=4)
    assert "changed by someone else" in out
    run("events", "move", "EV-1", "resolved", "--actor", "应急办", "--at", "2026-05-01 12:00",
        "--store", store)
    run("events", "move", "EV-1", "close", "--actor", "张督查", "--at", "2026-05-01 13:00",
        "--store", store)
    run("events", "patrol", "--worker", "王伟", "--grid", unit["code"], "--date",
        "2026-05-01", "--store", store)

    out = run("events", "list", "--now", "2026-05-03", "--store", store)
    assert "2 events" in out and "巡报责解督" in out and "巡报···" in out
    out = run("events", "list", "--overdue", "--now", "2026-05-03", "--store", store)
    assert "0 events overdue" in out
    records = json.loads(run("events", "list", "--json", "--store", store))
    assert {r["id"]: r["state"] for r in records} == {"EV-1": "closed", "EV-2": "reported"}
    assert records[0]["five_haves"] == {"patrolled": True, "reported": True, "owned": True,
                                        "resolved": True, "supervised": True}
    out = run("events", "show", "EV-1", "--store", store)
    assert "escalate" in out and "现场跟踪" in out and "by 张督查" in out
    run("events", "show", "EV-9", "--store", store, code=3)
    out = run("events", "stats", "--now", "2026-05-03", "--out", str(tmp_path / "s.xlsx"),
              "--store", store)
    assert unit["code"] in out
    sheet = openpyxl.load_workbook(tmp_path / "s.xlsx")["考核"]
    header = [c.value for c in sheet[1]]
    assert header[:2] == ["网格", "事件数"] and "巡查天数" in header
    row = dict(zip(header, [c.value for c in sheet[2]], strict=True))
    assert (row["事件数"], row["突发性"], row["督查办结"], row["巡查天数"]) == (2, 1, 1, 1)
    assert row["办结时长中位数（小时）"] == 4.0
    out = run("events", "stats", "--by", "worker", "--store", store)
    assert "王伟" in out


def test_imported_events_are_adopted(store, tmp_path):
    unit = GeoPackageStore(store).read("units").iloc[0]
    spot = unit.geometry.representative_point()
    csv = tmp_path / "events.csv"
    pd.DataFrame({"id": ["EV-7"], "kind": ["general"], "grid": [unit["code"]],
                  "reporter": ["王伟"], "state": ["reported"],
                  "reported_at": ["2026-05-01T08:00:00+08:00"], "lon": [spot.x],
                  "lat": [spot.y]}).to_csv(csv, index=False)
    run("import", str(csv), "--layer", "events", "--store", store)
    out = run("events", "move", "EV-7", "accept", "--actor", "王伟", "--store", store, code=4)
    assert "gisgrid events adopt" in out
    adopted = run("events", "adopt", "--store", store)
    assert "added columns summary, category, owner" in adopted
    assert "version 2" in run("events", "move", "EV-7", "accept", "--actor", "王伟",
                              "--store", store)


@pytest.mark.parametrize("lon, lat", [(0.0, 0.0), (116.4, 39.9)])  # the Gulf of Guinea, Beijing
def test_an_event_far_outside_the_territory_is_refused(store, lon, lat):
    """An event point beyond the largest service radius outside the territory is named
    and refused (exit 3), as coverage leaves such points out; nothing is stored."""
    gpkg = GeoPackageStore(store)
    before = len(gpkg.read("events")) if gpkg.has("events") else 0
    out = run("events", "report", "--kind", "general", "--reporter", "王伟", "--lon",
              str(lon), "--lat", str(lat), "--summary", "x", "--store", store, code=3)
    assert "lon/lat" in out and "outside the territory" in out
    assert "Traceback" not in out
    assert (len(gpkg.read("events")) if gpkg.has("events") else 0) == before
    edge = gpkg.read("territory").geometry.iloc[0].representative_point()
    run("events", "report", "--kind", "general", "--reporter", "王伟", "--lon",
        str(edge.x), "--lat", str(edge.y), "--summary", "x", "--store", store)
    assert len(gpkg.read("events")) == before + 1


def _first_grid(store: str) -> gpd.GeoDataFrame:
    gpkg = GeoPackageStore(store)
    grids = gpkg.read("grids") if gpkg.has("grids") and len(gpkg.read("grids")) else \
        gpkg.read("units")
    return grids.iloc[[0]]


@pytest.mark.parametrize("args, words", [
    (["--date", "2025-02-30"], "不是存在的日期"),
    (["--date", "10/03/2025"], "YYYY-MM-DD"),
    (["--date", "2999-01-01"], "晚于今天"),
])
def test_a_patrol_needs_a_real_past_day(store, args, words):
    """Issue 16: dates are YYYY-MM-DD, real and not in the future; exit 3, nothing stored,
    no traceback."""
    code = str(_first_grid(store)["code"].iloc[0])
    out = run("events", "patrol", "--worker", "W-1", "--grid", code, *args, "--store", store,
              code=3)
    assert words in out and "Traceback" not in out
    gpkg = GeoPackageStore(store)
    assert not gpkg.has("patrols") or len(gpkg.read("patrols")) == 0


def test_patrols_and_events_need_a_grid_that_exists_and_count_once(store):
    code = str(_first_grid(store)["code"].iloc[0])
    out = run("events", "patrol", "--worker", "W-1", "--grid", "NOPE-GRID", "--store", store,
              code=3)
    assert "NOPE-GRID" in out and "不在图层" in out
    out = run("events", "report", "--kind", "general", "--reporter", "W", "--grid",
              "NOPE-GRID", "--summary", "x", "--store", store, code=3)
    assert "NOPE-GRID" in out
    run("events", "patrol", "--worker", "W-1", "--grid", code, "--date", "2026-03-02",
        "--store", store)
    out = run("events", "patrol", "--worker", "W-1", "--grid", code, "--date", "2026-03-02",
              "--store", store, code=3)
    assert "已记录" in out
    assert len(GeoPackageStore(store).read("patrols")) == 1
    run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
        "--summary", "x", "--id", "EV-DUP", "--store", store)
    out = run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
              "--summary", "y", "--id", "EV-DUP", "--store", store, code=3)
    assert "事件编号 EV-DUP 已存在" in out and "UNIQUE" not in out
    out = run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
              "--summary", "x", "--at", "2999-01-01 08:00", "--store", store, code=3)
    assert "晚于现在" in out


def test_an_event_point_must_lie_in_its_grid(store):
    grid = _first_grid(store)
    code = str(grid["code"].iloc[0])
    inside = grid.geometry.iloc[0].representative_point()
    run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
        "--lon", str(inside.x), "--lat", str(inside.y), "--summary", "x", "--store", store)
    other = GeoPackageStore(store).read("territory").geometry.iloc[0]
    far = other.difference(grid.geometry.iloc[0].buffer(0.05)).representative_point()
    out = run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
              "--lon", str(far.x), "--lat", str(far.y), "--summary", "x", "--store", store,
              code=3)
    assert "超过容差 200 米" in out
    run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
        "--lon", str(far.x), "--lat", str(far.y), "--summary", "x", "--tolerance", "1e6",
        "--store", store)


def test_stats_refuses_a_period_that_ends_before_it_starts(store):
    out = run("events", "stats", "--from", "2026-05-01", "--to", "2026-04-01", "--store",
              store, code=2)
    assert "--from 2026-05-01 is after --to 2026-04-01" in out


def test_an_inspection_is_recorded_once_and_never_in_the_future(store):
    entity = GeoPackageStore(store).read("entities")["id"].iloc[0]
    out = run("inspect", entity, "--inspector", "王伟", "--found", "1", "--date",
              "2999-01-01", "--store", store, code=3)
    assert "晚于今天" in out
    run("inspect", entity, "--inspector", "王伟", "--found", "1", "--date", "2026-10-01",
        "--store", store)
    out = run("inspect", entity, "--inspector", "王伟", "--found", "1", "--date",
              "2026-10-01", "--store", store, code=3)
    assert "检查已记录" in out
    rows = GeoPackageStore(store).read("inspections")
    assert len(rows[rows["entity"] == entity]) == len(set(rows["check"]))


def test_a_routed_report_keeps_its_route(store):
    """Issue 16 (A4): a report is routed once, when its visit is recorded; a later
    inspection with another street's remit does not rewrite it."""
    gpkg = GeoPackageStore(store)
    entities = gpkg.read("entities")
    entity, unit = entities[["id", "unit"]].dropna().iloc[0]
    street = unit[:9] + "000"
    run("inspect", entity, "--inspector", "王伟", "--date", "2026-05-01", "--found", "1",
        "--street", street, "--street-name", "茅坪镇", "--store", store)
    first = gpkg.read("risk_reports").set_index("id")
    assert (first["route"] == "street").all() and len(first) == 1
    other = next(c for c in gpkg.read("townships")["code"].astype(str) if c != street)
    run("inspect", entity, "--inspector", "王伟", "--date", "2026-05-02", "--found", "1",
        "--street", other, "--store", store)
    after = gpkg.read("risk_reports").set_index("id")
    assert len(after) == 2
    pd.testing.assert_frame_equal(after.loc[first.index], first)   # untouched
    assert (after.drop(first.index)["route"] == "city").all()       # the new one, routed now


def test_a_street_must_be_a_township(store):
    entity = GeoPackageStore(store).read("entities")["id"].iloc[0]
    out = run("inspect", entity, "--inspector", "王伟", "--found", "1", "--date",
              "2026-05-01", "--street", "999", "--store", store, code=3)
    assert "999 不是本辖区的乡镇街道代码" in out
    assert not GeoPackageStore(store).has("inspections") or \
        len(GeoPackageStore(store).read("inspections")) == 0


def test_the_township_comes_from_the_point_when_the_unit_is_missing(store):
    gpkg = GeoPackageStore(store)
    entities = gpkg.read("entities")
    entity, unit = entities[["id", "unit"]].dropna().iloc[0]
    entities.loc[entities["id"] == entity, "unit"] = None
    gpkg.write("entities", entities)
    street = unit[:9] + "000"
    run("inspect", entity, "--inspector", "王伟", "--date", "2026-05-01", "--found", "1",
        "--street", street, "--store", store)
    report = gpkg.read("risk_reports").iloc[0]
    assert report["township"] == street and report["route"] == "street"
    assert "不明" not in report["reason"]


def test_the_monthly_sheet_covers_every_grid_and_ranks_them(store, tmp_path):
    """Issue 16 (C4): events stats --month covers every finest grid, zeros included, with
    the patrol rate against one patrol a day, a score and a rank; the xlsx has the scored
    sheet (考核) and the ranked notice (通报), in Chinese."""
    from gis_grid.staffing import finest_grids

    gpkg = GeoPackageStore(store)
    layer = "grids" if gpkg.has("grids") and len(gpkg.read("grids")) else "units"
    grids = gpkg.read(layer)
    finest = grids.loc[finest_grids(grids), "code"].astype(str).tolist() \
        if layer == "grids" else grids["code"].astype(str).tolist()
    busy, idle = finest[0], finest[1]
    for day in range(1, 31):  # every day of April: a full patrol record
        run("events", "patrol", "--worker", "W-1", "--grid", busy, "--grids", layer,
            "--date", f"2026-04-{day:02d}", "--store", store)
    run("events", "report", "--kind", "general", "--reporter", "W-1", "--grid", busy,
        "--grids", layer, "--summary", "x", "--at", "2026-04-03 09:00", "--store", store)
    out = tmp_path / "4月考核.xlsx"
    run("events", "stats", "--month", "2026-04", "--grids", layer, "--out", str(out),
        "--store", store)
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["考核", "通报", "定责分类"]
    sheet = pd.DataFrame(list(book["考核"].values)[1:], columns=list(book["考核"].values)[0])
    assert set(sheet["网格"].astype(str)) >= set(finest)
    row = sheet.set_index("网格").loc[busy]
    assert row["巡查天数"] == 30 and row["考核天数"] == 30 and row["巡查率"] == 1
    # one event, on time, not yet with all five haves: 100 × (0.5 + 0.3 × 1 + 0.2 × 0)
    assert row["排名"] == 1 and row["得分"] == 80
    empty = sheet.set_index("网格").loc[idle]
    assert empty["事件数"] == 0 and empty["巡查率"] == 0 and empty["得分"] == 50
    notice = pd.DataFrame(list(book["通报"].values)[1:], columns=list(book["通报"].values)[0])
    assert notice.iloc[0]["网格"] == busy and notice.iloc[0]["通报结果"] == "表扬"
    verdict = notice.set_index("网格").loc[idle]
    assert verdict["通报结果"] == "通报" and "巡查率 0% 低于 80%" in verdict["通报原因"]
    bad = run("events", "stats", "--month", "2026-13", "--store", store, code=2)
    assert "YYYY-MM" in bad


def test_events_carry_a_subject_category_from_the_offices_list(store, tmp_path):
    """Issue 16 (C, 定责): a category is one of the configurable list (default or the
    office's file); stats count events per grid and category, every category a column."""
    code = str(_first_grid(store)["code"].iloc[0])
    run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
        "--category", "市容管控", "--summary", "占道经营", "--at", "2026-04-02 09:00",
        "--store", store)
    out = run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
              "--category", "外星人", "--summary", "x", "--store", store, code=3)
    assert "不在定责分类中" in out and "市容管控" in out
    mine = tmp_path / "分类.txt"
    mine.write_text("# 本街道定责\n市容管控\n防范非法集资\n", encoding="utf-8")
    run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
        "--category", "防范非法集资", "--categories", str(mine), "--summary", "传单",
        "--at", "2026-04-03 09:00", "--store", store)
    out = run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
              "--category", "民政", "--categories", str(mine), "--summary", "x", "--store",
              store, code=3)
    assert "防范非法集资" in out
    book = tmp_path / "s.xlsx"
    run("events", "stats", "--month", "2026-04", "--categories", str(mine), "--out",
        str(book), "--store", store)
    rows = list(openpyxl.load_workbook(book)["定责分类"].values)
    assert rows[0] == ("网格", "市容管控", "防范非法集资", "未分类")
    assert rows[1] == (code, 1, 1, 0)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    out = run("events", "report", "--kind", "general", "--reporter", "W", "--grid", code,
              "--categories", str(empty), "--summary", "x", "--store", store, code=3)
    assert "empty" in out
