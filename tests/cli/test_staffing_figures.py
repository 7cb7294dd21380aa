"""Staffing and the assessment, read from every output on the three sample counties.

One rule (B4, ``gis_grid.staffing.grid_staffing``): a finest grid is staffed when a
worker or part-time worker (not a manager) is assigned to it. For every bank, the
staffing figure of the coverage report (report.json, staffing.csv, the xlsx sheet, the
assessment's staffing score) equals 1 − (``gisgrid validate``'s no_worker ÷ finest
grids), and the maps name a worker on exactly the staffed finest grids. The assessment's
weights come from a file and are printed in report.json and the xlsx 说明 sheet.
"""

from __future__ import annotations

import json

import numpy as np
import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner

from gis_grid.cli import main
from layers.store import open_store
from maps.data import grid_facts, load_layers

pytestmark = pytest.mark.slow

COUNTIES = ("420527", "330382", "371328")
#: Banks partitioned in each sample; YCB's managers hold dozens of grids each.
BANKS = {"420527": ("YCB",), "330382": ("YCB",), "371328": ("YCB", "NSH")}
WEIGHTS_TOML = """# the regulator's weights for this year
[weights]
coverage = 0.4
files = 0.2
staffing = 0.3
blanks_closed = 0.1
"""


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code in (0, 1), result.output + repr(result.exception)
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module", params=COUNTIES)
def county(request, tmp_path_factory) -> dict:
    code = request.param
    folder = tmp_path_factory.mktemp(f"staffing{code}")
    store = str(folder / "s.gpkg")
    _run("sample", "--county", code, "--store", store)
    validated = {}
    for bank in BANKS[code]:
        _run("partition", "--institution", bank, "--level1", "outlets", "--level2",
             "balanced", "--level3", "none", "--store", store)
        layer = f"grids__{bank.lower()}"
        _run("validate", "--grids", layer, "--store", store, "--out", str(folder / layer))
        validated[bank] = json.loads((folder / layer / "validation.json").read_text())
    (folder / "weights.toml").write_text(WEIGHTS_TOML, encoding="utf-8")
    _run("coverage", "--store", store, "--out", str(folder / "report"),
         "--assessment", str(folder / "weights.toml"))
    with open_store(store) as s:
        grids = {bank: s.read(f"grids__{bank.lower()}") for bank in BANKS[code]}
    return {"code": code, "store": store, "folder": folder, "validated": validated,
            "grids": grids,
            "report": json.loads((folder / "report" / "report.json").read_text())}


def _finest(grids: pd.DataFrame) -> int:
    """Grids no other grid names as its parent (counted here, not by the engine)."""
    parents = set(grids["parent"].dropna().astype(str))
    return int((~grids["code"].astype(str).isin(parents)).sum())


def _expected(county: dict) -> dict[str, float]:
    """1 − no_worker ÷ finest grids, per partitioned bank, from validate's report."""
    return {bank: 1 - report["counts"].get("no_worker", 0) / _finest(county["grids"][bank])
            for bank, report in county["validated"].items()}


def test_staffing_equals_one_minus_validates_no_worker(county):
    expected = _expected(county)
    assert min(expected.values()) < 1      # the samples have unstaffed grids: a real test
    table = pd.DataFrame(county["report"]["tables"]["staffing"]).set_index("institution")
    scores = pd.DataFrame(county["report"]["tables"]["assessment"]).set_index("institution")
    csv = pd.read_csv(county["folder"] / "report" / "staffing.csv",
                      encoding="utf-8-sig").set_index("机构")
    book = openpyxl.load_workbook(county["folder"] / "report" / "coverage.xlsx")
    rows = list(book["人员配置"].iter_rows(values_only=True))
    sheet = pd.DataFrame(rows[1:], columns=rows[0]).set_index("机构")
    for bank in table.index:
        figure = expected.get(bank)
        if figure is None:       # no grids: no staffing figure, scored 0 with a note
            assert table.loc[bank, "grids"] == 0 and pd.isna(table.loc[bank, "compliance"])
            assert scores.loc[bank, "staffing"] == 0
            assert "无网格" in scores.loc[bank, "note"]
            continue
        assert table.loc[bank, "grids"] == _finest(county["grids"][bank]), bank
        assert table.loc[bank, "compliance"] == pytest.approx(figure), bank
        assert table.loc[bank, "grids_staffed"] == round(figure * table.loc[bank, "grids"])
        assert csv.loc[bank, "一人一格达标率"] == pytest.approx(figure), bank
        assert float(sheet.loc[bank, "一人一格达标率"]) == pytest.approx(figure), bank
        assert scores.loc[bank, "staffing"] == pytest.approx(figure), bank


def test_maps_name_a_worker_on_exactly_the_staffed_finest_grids(county):
    for bank in county["grids"]:
        layer = f"grids__{bank.lower()}"
        facts = grid_facts(load_layers(county["store"], grids=layer))   # popups, atlas
        parents = set(facts["parent"].dropna().astype(str))
        finest = ~facts["code"].astype(str).isin(parents)
        with_worker = int((finest & facts["worker"].notna()).sum())
        no_worker = county["validated"][bank]["counts"].get("no_worker", 0)
        assert with_worker == int(finest.sum()) - no_worker, bank


def test_weights_from_the_file_are_printed_and_used(county):
    meta = county["report"]["meta"]["assessment"]
    assert meta["weights"] == {"coverage": 0.4, "files": 0.2, "staffing": 0.3,
                               "blanks_closed": 0.1}
    assert meta["source"].endswith("weights.toml")
    scores = pd.DataFrame(county["report"]["tables"]["assessment"])
    parts = scores[["coverage", "files", "staffing", "blanks_closed_score"]].to_numpy(float)
    assert np.allclose(scores["score"], 100 * parts @ np.array([0.4, 0.2, 0.3, 0.1]))
    book = openpyxl.load_workbook(county["folder"] / "report" / "coverage.xlsx")
    notes = {r[0]: r[1] for r in book["说明"].iter_rows(values_only=True)}
    assert str(notes["考核权重 人员得分 (staffing)"]).startswith("0.3")
    assert notes["考核权重来源"].endswith("weights.toml")


def test_the_atlas_prints_the_reports_assessment_table(county, tmp_path):
    """The atlas's 考核评分表 page is the coverage report's assessment (same weights from
    the same file): rank, criteria and score of every bank read back from the PDF's text
    equal report.json's, printed as the xlsx formats them (0.0 % and one decimal)."""
    import subprocess

    from maps.atlas.painter import assessment_cell

    bank = BANKS[county["code"]][0]
    out = tmp_path / "atlas"
    output = _run("atlas", "--store", county["store"], "--grids", f"grids__{bank.lower()}",
                  "--limit", "0", "--volume", "rural", "--out", str(out),
                  "--assessment", str(county["folder"] / "weights.toml"))
    assert "warning" not in output
    text = subprocess.run(["pdftotext", "-layout", "-f", "4", "-l", "4",
                           str(out / "atlas-rural.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "考核评分表" in text and "人员 0.3" in text and "weights.toml" in text
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) > 2 and cells[0].isdigit():
            rows[cells[1]] = cells
    scores = county["report"]["tables"]["assessment"]
    assert len(rows) == len(scores) > 1
    for record in scores:
        printed = rows[record["institution"]]
        for col in ("rank", "coverage", "files", "staffing", "blanks_closed",
                    "blanks_closed_score", "score"):
            assert assessment_cell(col, record[col]) in printed, (record, col, printed)
        assert printed[0] == str(record["rank"])
