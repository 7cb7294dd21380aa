"""Plan A's records that hold (issue 16): a risk report's path with time limits and a
log (受理 → 处置/转办 → 反馈 → 办结), tasks from above (交办) with a deadline and feedback,
the A9 assessment and the Chinese workbook, on a real GeoPackage sample."""

from __future__ import annotations

import openpyxl
import pandas as pd
import pytest

from layers.gpkg import GeoPackageStore
from tests.cli.conftest import run_command

SAMPLE_HOUSEHOLDS = 2000  # the sample store of tests/cli/conftest.py


def run(*args: str, code: int = 0) -> str:
    output = run_command(*args, code=code)
    assert "Traceback" not in output
    return output


def _report(store: str, check: str = "5") -> str:
    entity = GeoPackageStore(store).read("entities")["id"].iloc[0]
    run("inspect", entity, "--inspector", "王伟", "--found", check, "--date", "2026-11-20",
        "--store", store)
    return GeoPackageStore(store).read("risk_reports")["id"].iloc[-1]


def test_a_report_walks_its_path_and_every_move_is_logged(store):
    report = _report(store)
    row = GeoPackageStore(store).read("risk_reports").iloc[-1]
    assert row["status"] == "routed" and int(row["version"]) == 1
    assert pd.Timestamp(row["due"]) - pd.Timestamp(row["routed_at"]) == pd.Timedelta(days=1)
    out = run("reports", "move", report, "close", "--actor", "张", "--store", store, code=1)
    assert "allowed: accept → accepted (受理)" in out
    run("reports", "move", report, "accept", "--actor", "市金融办张", "--store", store)
    out = run("reports", "move", report, "transfer", "--actor", "市金融办张", "--store", store,
              code=1)
    assert "needs the department" in out
    run("reports", "move", report, "transfer", "--actor", "市金融办张", "--department",
        "县公安局", "--store", store)
    out = run("reports", "move", report, "feedback", "--actor", "县公安局李", "--store", store,
              code=1)
    assert "needs a note" in out
    run("reports", "move", report, "feedback", "--actor", "县公安局李", "--note", "已立案侦查",
        "--store", store)
    run("reports", "move", report, "close", "--actor", "市金融办张", "--store", store)
    gpkg = GeoPackageStore(store)
    final = gpkg.read("risk_reports").set_index("id").loc[report]
    assert final["status"] == "closed" and final["department"] == "县公安局"
    assert int(final["version"]) == 5 and pd.isna(final["due"])
    log = gpkg.read("report_log").sort_values("version")
    assert log["action"].tolist() == ["accept", "transfer", "feedback", "close"]
    assert log["actor"].tolist() == ["市金融办张", "市金融办张", "县公安局李", "市金融办张"]
    assert log["note"].iloc[2] == "已立案侦查"
    shown = run("reports", "show", report, "--store", store)
    assert "transfer" in shown and "已立案侦查" in shown and "市金融办" in shown


def test_an_unanswered_report_is_overdue(store):
    report = _report(store)
    out = run("reports", "list", "--overdue", "--now", "2099-01-01", "--store", store)
    assert report in out and "超时" in out
    assert report not in run("reports", "list", "--overdue", "--store", store)


def test_a_task_from_above_has_a_deadline_and_feedback(store):
    run("tasks", "create", "--subject", "开展防范非法集资宣传月排查", "--issued-by", "市金融办",
        "--assignee", "茅坪镇处置办", "--deadline", "2026-11-30 17:00", "--at",
        "2026-11-01 09:00", "--id", "TK-1", "--store", store)
    out = run("tasks", "create", "--subject", "x", "--issued-by", "市金融办", "--assignee", "y",
              "--deadline", "2026-11-30", "--at", "2026-11-01", "--id", "TK-1", "--store",
              store, code=3)
    assert "任务编号 TK-1 已存在" in out
    assert "TK-1" in run("tasks", "list", "--overdue", "--store", store)  # past its deadline
    run("tasks", "move", "TK-1", "accept", "--actor", "茅坪镇王", "--store", store)
    run("tasks", "move", "TK-1", "feedback", "--actor", "茅坪镇王", "--note",
        "已排查 42 家，发现 1 家", "--store", store)
    assert "TK-1" not in run("tasks", "list", "--overdue", "--store", store)  # answered
    task = GeoPackageStore(store).read("tasks").iloc[0]
    assert task["status"] == "fed_back" and task["feedback"] == "已排查 42 家，发现 1 家"
    out = run("tasks", "create", "--subject", "x", "--issued-by", "市金融办", "--assignee", "y",
              "--deadline", "2026-10-01", "--at", "2026-11-01", "--store", store, code=3)
    assert "不晚于交办时间" in out


def test_the_plan_a_workbook_is_chinese(store, tmp_path):
    report = _report(store)
    run("reports", "move", report, "accept", "--actor", "市金融办张", "--store", store)
    out = tmp_path / "风险监测.xlsx"
    run("reports", "export", "--out", str(out), "--store", store)
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["风险报告", "排查记录", "考核", "流转记录"]
    header = [c.value for c in next(book["风险报告"].iter_rows(max_row=1))]
    assert {"编号", "主体编号", "发现问题", "承办单位", "办理状态", "办理时限",
            "是否超时"} <= set(header)
    row = dict(zip(header, [c.value for c in list(book["风险报告"].iter_rows())[1]],
                   strict=True))
    assert row["发现问题"] == "5.非法吸收或变相吸收公众资金" and row["办理状态"] == "accepted"
    assess = [c.value for c in next(book["考核"].iter_rows(max_row=1))]
    assert {"所在乡镇街道", "检查次数", "风险报告数", "按时受理数", "超时数",
            "转办反馈率"} <= set(assess)
    values = dict(zip(assess, [c.value for c in list(book["考核"].iter_rows())[1]],
                      strict=True))
    assert values["检查次数"] == 1 and values["风险报告数"] == 1 and values["按时受理数"] == 1


def test_reports_made_before_the_path_existed_are_adopted(store):
    """A risk_reports layer written by an earlier version (no status, due, version) gets
    those columns on the next inspection; its reports keep their route."""
    gpkg = GeoPackageStore(store)
    report = _report(store)
    old = gpkg.read("risk_reports").drop(columns=["status", "routed_at", "department", "due",
                                                  "updated_at", "version"])
    gpkg.delete("risk_reports")
    gpkg.write("risk_reports", old)
    entity = gpkg.read("entities")["id"].iloc[1]
    run("inspect", entity, "--inspector", "王伟", "--found", "1", "--date", "2026-11-21",
        "--store", store)
    after = gpkg.read("risk_reports").set_index("id")
    assert len(after) == 2 and after.loc[report, "status"] == "routed"
    assert after.loc[report, "route"] == old.set_index("id").loc[report, "route"]
    run("reports", "move", report, "accept", "--actor", "张", "--store", store)


def test_training_is_due_every_six_months(store, tmp_path):
    """A8: trained means trained within six months; who is due is listed, and the coverage
    report's 培训率 counts the same rule."""
    from gis_grid.coverage.staff import staffing
    from gis_grid.staffing import training_due

    gpkg = GeoPackageStore(store)
    staff = gpkg.read("staff")
    due = training_due(staff, "2026-06-30")
    expected = int((due["status"] != "current").sum())
    assert 0 < expected < len(staff)
    out = run("training", "--at", "2026-06-30", "--out", str(tmp_path / "培训.xlsx"),
              "--store", store)
    assert f"{expected} of {len(staff)} staff due for training" in out
    sheet = list(openpyxl.load_workbook(tmp_path / "培训.xlsx")["培训"].values)
    assert sheet[0][:2] == ("人员编号", "姓名") and len(sheet) == expected + 1
    assert {row[6] for row in sheet[1:]} <= {"逾期", "从未培训"}
    # the coverage figure: the share of each institution's staff with status current
    shares = staffing(staff, at="2026-06-30").institutions.set_index("institution")
    for inst, group in due.groupby("institution"):
        assert shares.loc[inst, "trained_share"] == pytest.approx(
            (group["status"] == "current").mean())
    out = run("training", "--at", "2031-01-01", "--store", store, code=3)
    assert "晚于今天" in out


def test_the_time_limits_are_configurable(store):
    entity = GeoPackageStore(store).read("entities")["id"].iloc[2]
    run("inspect", entity, "--inspector", "王伟", "--found", "5", "--date", "2026-11-20",
        "--accept-days", "3", "--store", store)
    report = GeoPackageStore(store).read("risk_reports").iloc[-1]
    assert pd.Timestamp(report["due"]) - pd.Timestamp(report["routed_at"]) == \
        pd.Timedelta(days=3)
    run("reports", "move", report["id"], "accept", "--actor", "张", "--feedback-days", "30",
        "--store", store)
    moved = GeoPackageStore(store).read("risk_reports").set_index("id").loc[report["id"]]
    assert pd.Timestamp(moved["due"]) - pd.Timestamp(moved["updated_at"]) == \
        pd.Timedelta(days=30)
    assert "--feedback-days" in run("reports", "move", "--help")
