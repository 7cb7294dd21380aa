"""Report files: JSON for machines, CSV and XLSX for people, GeoJSON for maps.

The analyses (``gis_grid.coverage``, ``gis_grid.placement``) return tables with English
column names and values; this module is the one place that knows how a person reads them:
Chinese headers (``COLUMNS_ZH``), Chinese sheet names (``TABLES_ZH``), Chinese words for
coded values (urban → 城镇, True → 是), percentages shown as percentages, codes kept as
text so that Excel does not turn ``420527101001`` into ``4.20527E+11``, and a notes sheet
(说明) stating the radius, the data date, the counts, the layers used, the definition of
every measure and the English field name behind every Chinese header, so that every
figure can be traced.

Every file is written atomically (to a temporary name beside it, then renamed), but for
:func:`write_sheets`, which writes the tables of the risk watch and the event assessment
under the headers their jobs give, in place, where the person asked.

Example
-------
>>> import pandas as pd, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> t = {"territory": pd.DataFrame({"households": [10], "covered": [9], "share": [0.9]})}
>>> paths = write_tables(folder, t, meta={"radii": {"urban_m": 2000, "rural_m": 5000}},
...                      stem="coverage")
>>> sorted(p.name for p in paths)
['coverage.xlsx', 'territory.csv']
"""

from __future__ import annotations

import json
import os
import tempfile
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path

import geopandas as gpd
import pandas as pd

from gis_grid.errors import StoreError
from gis_grid.jsonable import plain

__all__ = [
    "COLUMNS_ZH",
    "TABLES_ZH",
    "notes_rows",
    "people_table",
    "write_csv",
    "write_geojson",
    "write_json",
    "write_sheets",
    "write_tables",
    "write_xlsx",
]

#: Sheet / file titles of the tables, in Chinese.
TABLES_ZH: dict[str, str] = {
    "territory": "全辖覆盖",
    "kinds": "城乡覆盖",
    "townships": "乡镇覆盖",
    "units": "村社区覆盖",
    "grids": "网格覆盖",
    "institutions": "机构覆盖",
    "no_point": "无网点无机具村社区",
    "blanks": "服务空白",
    "gaps": "覆盖缺口",
    "indicators": "金融服务可得性指标",
    "overlap": "跨机构网格重叠",
    "concentration": "网点集中度",
    "files_grids": "网格建档",
    "files": "建档目标进度",
    "staffing": "人员配置",
    "staffing_grids": "网格人员",
    "assessment": "考核排名",
    "sites_mclp": "最大覆盖选址",
    "sites_lscp": "集合覆盖选址",
}

#: Chinese headers of the columns of every table the analyses produce.
COLUMNS_ZH: dict[str, str] = {
    "scope": "范围", "kind": "城乡类型", "code": "代码", "name": "名称",
    "township": "乡镇街道", "unit": "村社区", "level": "层级", "institution": "机构",
    "households": "住户数", "covered": "覆盖住户数", "covered_outlet": "网点覆盖住户数",
    "covered_device": "机具覆盖住户数", "points": "住户点数", "uncovered": "未覆盖住户数",
    "share": "覆盖率", "share_outlet": "网点覆盖率", "share_device": "机具覆盖率",
    "covered_own": "本机构覆盖住户数", "share_own": "本机构覆盖率",
    "covered_any": "任一机构覆盖住户数", "share_any": "任一机构覆盖率",
    "area": "服务范围依据", "outlets": "网点数", "devices": "机具数", "atms": "ATM/CRS数",
    "radius": "服务半径(米)", "d_nearest": "最近触点距离(米)", "nearest": "最近触点",
    "nearest_institution": "最近触点机构", "nearest_kind": "最近触点类别",
    "d_any": "最近触点距离(米)", "d_outlet": "最近网点距离(米)", "d_device": "最近机具距离(米)",
    "d_outlet_tier1": "最近一级支行距离(米)", "d_outlet_tier2": "最近二级支行距离(米)",
    "d_outlet_office": "最近分理处距离(米)", "d_outlet_assisted": "最近助农点距离(米)",
    "d_device_atm": "最近ATM距离(米)", "d_device_crs": "最近CRS距离(米)",
    "d_device_pos": "最近助农取款POS距离(米)", "d_device_terminal": "最近智能终端距离(米)",
    "blank": "服务空白", "gap": "缺口编号", "area_km2": "面积(平方公里)", "units": "涉及村社区",
    "residents": "常住人口", "adults": "成年人口",
    "outlets_per_10k_households": "每万户网点数", "devices_per_10k_households": "每万户机具数",
    "atms_per_10k_households": "每万户ATM数",
    "outlets_per_10k_residents": "每万人网点数", "devices_per_10k_residents": "每万人机具数",
    "atms_per_10k_residents": "每万人ATM数",
    "outlets_per_10k_adults": "每万名成年人网点数", "devices_per_10k_adults": "每万名成年人机具数",
    "atms_per_10k_adults": "每万名成年人ATM数",
    "outlets_per_1000km2": "每千平方公里网点数", "devices_per_1000km2": "每千平方公里机具数",
    "atms_per_1000km2": "每千平方公里ATM数",
    "institutions": "机构数", "institution_ids": "覆盖机构", "over_concentrated": "过度集中",
    "hhi": "HHI指数", "top_institution": "最大机构", "top_share": "最大机构份额",
    "grid": "网格", "households_total": "住户总数", "households_files": "已建档住户",
    "households_share": "住户建档率", "households_target": "住户建档目标",
    "households_needed": "住户尚需建档", "merchants_firms_total": "商户企业总数",
    "merchants_firms_files": "已建档商户企业", "merchants_firms_share": "商户企业建档率",
    "merchants_firms_target": "商户企业建档目标", "merchants_firms_needed": "商户企业尚需建档",
    "behind": "未达目标", "metric": "指标", "total": "总数", "achieved": "已完成",
    "achieved_share": "完成率",
    "target": "目标", "shortfall_pp": "差距(百分点)", "needed": "尚需",
    "grids": "网格数", "workers": "网格员", "managers": "网格管理员",
    "grids_staffed": "有人网格数", "unstaffed": "无人网格数",
    "multi_grid_workers": "一人多格人数", "trained_share": "培训率", "compliance": "一人一格达标率",
    "basis": "判定依据", "staff": "人员数", "staffed": "有人",
    "participating": "参与(有建档或走访)",
    "note": "备注",
    "rank": "排名", "coverage": "覆盖得分", "files": "建档得分", "staffing": "人员得分",
    "blanks_closed": "填补空白村社区数", "blanks_closed_score": "填补空白得分", "score": "总分",
    "order": "顺序", "site": "候选点", "source": "来源", "newly_covered": "新增覆盖住户",
    "cumulative": "累计新增覆盖", "cumulative_share": "累计覆盖未覆盖住户比例",
    "size": "规模", "demand": "需求点", "candidates": "候选点数", "k": "新增点数",
    "greedy_covered": "贪心覆盖住户", "optimum_covered": "最优覆盖住户",
    "greedy_sites": "贪心点数", "optimum_sites": "最优点数", "ratio": "贪心/最优",
    "bound": "界", "status": "求解状态", "greedy_seconds": "贪心用时(秒)",
    "optimum_seconds": "最优用时(秒)", "id": "编号", "count": "住户数",
    "lon": "经度", "lat": "纬度",
}

#: Coded values in words, for people.
VALUES_ZH: dict[str, str] = {
    "urban": "城镇", "rural": "农村", "territory": "全辖", "township": "乡镇",
    "institution": "机构", "grids": "网格", "ledger": "台账", "outlet": "网点",
    "device": "机具", "assigned": "按指派", "headcount": "按人数",
    "participation": "参与村社区比例", "urban_households": "城镇居民建档率",
    "rural_households": "农户建档率", "merchants_firms": "商户园区小微企业建档率",
    "unit centre": "村社区中心", "town centre": "乡镇中心",
}

#: The names of the report's counts (``meta["counts"]``) on the notes sheet.
COUNTS_ZH: dict[str, str] = {
    "household_points": "住户点数", "households": "住户数", "touch_points": "服务触点数",
    "outlets": "营业网点数", "devices": "电子机具数", "by_category": "按类别触点数",
    "units": "村社区数", "townships": "乡镇街道数", "grids": "网格数",
    "ledger_rows": "台账行数", "staff": "人员数",
}

#: The names of the report's definitions (``meta["definitions"]``) on the notes sheet.
DEFINITIONS_ZH: dict[str, str] = {
    "covered": "已覆盖", "share": "覆盖率", "no_point": "无网点无机具的村/社区",
    "service_blank": "服务空白", "d_nearest": "最近触点距离", "gap_area": "覆盖缺口",
    "indicators": "金融服务可得性指标", "overlap": "跨机构重叠", "hhi": "网点集中度",
    "files": "建档率", "participation": "参与村社区比例", "county_households": "全辖住户建档",
    "county_merchants_firms": "全辖商户企业建档", "staffing": "一人一格",
    "blanks_closed": "填补空白", "score": "考核总分", "trained_share": "培训率",
}

_PERCENT = ("share", "achieved_share", "share_outlet", "share_device", "share_own", "share_any",
            "top_share", "households_share", "merchants_firms_share", "households_target",
            "merchants_firms_target", "target", "trained_share", "compliance", "coverage",
            "files", "staffing", "blanks_closed_score", "cumulative_share")
_TEXT = ("code", "township", "unit", "grid", "units", "institution_ids", "site", "id",
         "nearest")


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as err:
        raise StoreError(f"{path}: cannot be written: {err}") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(data: Mapping, path: str | os.PathLike) -> Path:
    """Write ``data`` as UTF-8 JSON (Chinese as is, NaN and infinities as null).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_json({"share": float("nan"), "名称": "秭归"},
    ...                pathlib.Path(tempfile.mkdtemp()) / "r.json")
    >>> p.read_text(encoding="utf-8")
    '{\\n  "share": null,\\n  "名称": "秭归"\\n}'
    """
    text = json.dumps(plain(dict(data)), ensure_ascii=False, indent=2, allow_nan=False)
    _atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return Path(path)


def people_table(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as a person reads it: Chinese headers, coded values in words, True / False
    as 是 / 否. Columns without a Chinese name keep theirs; geometry is dropped.

    Examples
    --------
    >>> people_table(pd.DataFrame({"kind": ["urban"], "blank": [True]})).to_dict("records")
    [{'城乡类型': '城镇', '服务空白': '是'}]
    """
    out = pd.DataFrame(index=table.index)
    for col in table.columns:
        if col == "geometry" or isinstance(table[col].dtype, gpd.array.GeometryDtype):
            continue
        values = table[col]
        if values.dtype == bool or str(values.dtype) == "boolean":
            values = values.map({True: "是", False: "否"})
        elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            values = values.map(lambda v: VALUES_ZH.get(v, v) if isinstance(v, str) else v)
        header = COLUMNS_ZH.get(col, col)
        if header in out.columns:  # two English names, one Chinese: keep both apart
            header = f"{header}({col})"
        out[header] = values.to_numpy()
    return out


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table for people as CSV: UTF-8 with a BOM (so Excel shows Chinese),
    Chinese headers (:func:`people_table`)."""
    frame = people_table(table)
    _atomic(Path(path), lambda tmp: frame.to_csv(tmp, index=False, encoding="utf-8-sig"))
    return Path(path)


def _width(value) -> int:
    """Display width of a cell: CJK characters take two columns."""
    text = "" if value is None else str(value)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def notes_rows(meta: Mapping) -> list[tuple[str, str]]:
    """The rows of the notes sheet (说明): parameters, data date, counts, layers used,
    definitions and notes, from an analysis' ``meta``."""
    rows: list[tuple[str, str]] = []
    labels = {"territory_name": "辖区", "territory_code": "辖区代码",
              "generated_at": "生成时间 (UTC)", "data_date": "数据日期",
              "metric_crs": "距离计算坐标系", "institution": "机构", "year": "考核年度",
              "period": "台账期间", "max_institutions": "城区网格机构数上限",
              "problem": "选址问题", "method": "求解方法", "kind": "新增类型",
              "k": "新增点数"}
    for key, label in labels.items():
        if meta.get(key) is not None:
            rows.append((label, str(meta[key])))
    radii = meta.get("radii") or {}
    if radii:
        rows.append(("城镇服务半径 (米)", f"{radii.get('urban_m'):g}"))
        rows.append(("农村服务半径 (米)", f"{radii.get('rural_m'):g}"))
    for key, value in (meta.get("targets") or {}).items():
        rows.append((f"目标 {VALUES_ZH.get(key, key)}", f"{100 * value:g} %"))
    assessment = meta.get("assessment") or {}
    for key, value in (assessment.get("weights") or {}).items():
        what = (assessment.get("criteria") or {}).get(key, "")
        rows.append((f"考核权重 {COLUMNS_ZH.get(key, key)} ({key})",
                     f"{value:g}" + (f"：{what}" if what else "")))
    if assessment.get("source"):
        rows.append(("考核权重来源", "默认 (default)" if assessment["source"] == "default"
                     else str(assessment["source"])))
    for key, value in _flatten(meta.get("counts") or {}):
        head, _, rest = key.partition(".")
        label = COUNTS_ZH.get(head, head) + (f" {rest}" if rest else "")
        rows.append((f"数量 {label} ({key})", str(value)))
    for key, value in (meta.get("layers_used") or {}).items():
        rows.append((f"使用图层 {key}", str(value)))
    for key, value in (meta.get("definitions") or {}).items():
        rows.append((f"定义 {DEFINITIONS_ZH.get(key, key)} ({key})", str(value)))
    for note in meta.get("notes") or []:
        rows.append(("注意", str(note)))
    return rows


def _flatten(data: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flatten(value, f"{name}.")
        else:
            out.append((name, value))
    return out


def write_xlsx(tables: Mapping[str, pd.DataFrame], path: str | os.PathLike,
               meta: Mapping | None = None) -> Path:
    """One workbook: the notes sheet (说明) first, then a sheet per table with Chinese
    headers, a frozen header row, filters, column widths fitted to the content,
    percentages as percentages and codes as text.

    Examples
    --------
    >>> import tempfile, pathlib, openpyxl
    >>> p = write_xlsx({"units": pd.DataFrame({"code": ["420527101001"], "share": [0.5]})},
    ...                pathlib.Path(tempfile.mkdtemp()) / "r.xlsx", meta={"data_date": "2026-06"})
    >>> book = openpyxl.load_workbook(p)
    >>> book.sheetnames, book["村社区覆盖"]["A2"].value, book["村社区覆盖"]["B2"].number_format
    (['说明', '村社区覆盖'], '420527101001', '0.0%')
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook()
    notes = book.active
    notes.title = "说明"
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDEBF7")
    notes.append(["项目", "内容"])
    for row in notes_rows(meta or {}):
        notes.append(list(row))
    notes.append([])
    notes.append(["表", "字段", "英文字段名 (JSON)"])
    for name, table in tables.items():
        for col in table.columns:
            if col != "geometry":
                notes.append([TABLES_ZH.get(name, name), COLUMNS_ZH.get(col, col), col])
    for cell in notes[1]:
        cell.font, cell.fill = bold, fill
    notes.column_dimensions["A"].width = 36
    notes.column_dimensions["B"].width = 90
    notes.column_dimensions["C"].width = 30
    for row in notes.iter_rows(min_row=2):
        row[1].alignment = Alignment(wrap_text=True, vertical="top")

    used: set[str] = {"说明"}
    for name, table in tables.items():
        title = _sheet_title(TABLES_ZH.get(name, name), used)
        sheet = book.create_sheet(title)
        frame = people_table(table)
        english = [c for c in table.columns if c != "geometry"
                   and not isinstance(table[c].dtype, gpd.array.GeometryDtype)]
        sheet.append(list(frame.columns))
        for cell in sheet[1]:
            cell.font, cell.fill = bold, fill
            cell.alignment = Alignment(wrap_text=True, vertical="center")
        for record in frame.itertuples(index=False):
            sheet.append([_cell(v) for v in record])
        for j, col in enumerate(english, start=1):
            letter = get_column_letter(j)
            fmt = ("0.0%" if col in _PERCENT else "@" if col in _TEXT
                   else "#,##0" if col.startswith("d_") or col in ("d_nearest", "radius")
                   else "0.00" if table[col].dtype.kind == "f" else None)
            if fmt:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=j, max_col=j):
                    cell.number_format = fmt
                    if fmt == "@" and cell.value is not None:
                        cell.value = str(cell.value)
            sample = [frame.columns[j - 1], *frame.iloc[:200, j - 1].tolist()]
            sheet.column_dimensions[letter].width = min(50, max(8, max(map(_width, sample)) + 2))
        sheet.freeze_panes = "A2"
        if len(frame):
            sheet.auto_filter.ref = sheet.dimensions
    _atomic(Path(path), lambda tmp: book.save(tmp))
    return Path(path)


def _sheet_title(title: str, used: set[str]) -> str:
    # Excel: at most 31 characters, none of []:*?/\ and unique in the workbook.
    clean = "".join(ch for ch in title if ch not in "[]:*?/\\")[:31] or "表"
    name, n = clean, 2
    while name in used:
        suffix = f"_{n}"
        name, n = clean[:31 - len(suffix)] + suffix, n + 1
    used.add(name)
    return name


def _cell(value):
    value = plain(value)
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def write_geojson(layer: gpd.GeoDataFrame, path: str | os.PathLike) -> Path:
    """Write a layer as RFC 7946 GeoJSON (WGS84), atomically, with English field names
    (as the API and QGIS use them)."""
    from layers.files import write_file

    write_file(layer, path)
    return Path(path)


def write_tables(folder: str | os.PathLike, tables: Mapping[str, pd.DataFrame], *,
                 meta: Mapping, stem: str) -> list[Path]:
    """Write every table as ``<name>.csv`` and all of them as ``<stem>.xlsx`` in
    ``folder``; returns the paths written."""
    folder = Path(folder)
    paths = [write_csv(table, folder / f"{name}.csv") for name, table in tables.items()]
    paths.append(write_xlsx(tables, folder / f"{stem}.xlsx", meta))
    return paths


def write_sheets(sheets: Mapping[str, tuple[pd.DataFrame, Mapping[str, str]]],
                 path: str | os.PathLike) -> Path:
    """Write tables with the Chinese headers given (title → (table, column → header)) to
    ``path``: .xlsx (one sheet each) or .csv (the first, UTF-8 with a BOM so that Excel
    shows the Chinese); geometry is dropped. Any other suffix raises ``ValueError``.

    Examples
    --------
    >>> import tempfile, pathlib, openpyxl
    >>> p = write_sheets({"考核": (pd.DataFrame({"grid": ["G1"]}), {"grid": "网格"})},
    ...                  pathlib.Path(tempfile.mkdtemp()) / "s.xlsx")
    >>> [list(row) for row in openpyxl.load_workbook(p)["考核"].values]
    [['网格'], ['G1']]
    """
    suffix = Path(path).suffix.lower()
    renamed = {title: frame.drop(columns="geometry", errors="ignore").rename(columns=headers)
               for title, (frame, headers) in sheets.items()}
    if suffix == ".xlsx":
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            for title, frame in renamed.items():
                frame.to_excel(writer, sheet_name=title, index=False)
    elif suffix == ".csv":
        next(iter(renamed.values())).to_csv(path, index=False, encoding="utf-8-sig")
    else:
        raise ValueError(f"{path}: write .xlsx or .csv")
    return Path(path)


#: Headers of the problem list (``gisgrid import --problems FILE``).
PROBLEM_HEADERS = {"source": "文件", "where": "位置", "field": "字段", "kind": "问题类型",
                   "message": "说明", "count": "数量"}


def write_problems(problems, path: str | os.PathLike) -> Path:
    """Every problem of a refused input, one row each, to ``path``: .csv (UTF-8 with a
    BOM, for Excel) lists them; .xlsx adds a first sheet with the counts by field and
    kind (问题汇总) before the list (问题明细). Headers in Chinese. Any other suffix is an
    ``InputError``.

    ``problems`` are ``gis_grid.errors.Problem`` objects."""
    from gis_grid.errors import InputError, Problem, summarize

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise InputError([Problem(str(path), None, None,
                                  "the problem list is written as .csv or .xlsx")])
    rows = pd.DataFrame({
        "source": [p.source for p in problems], "where": [p.where for p in problems],
        "field": [p.field for p in problems], "kind": [p.kind_text for p in problems],
        "message": [p.message for p in problems]})
    if suffix == ".csv":
        _atomic(path, lambda tmp: write_sheets({"问题明细": (rows, PROBLEM_HEADERS)}, tmp))
        return path
    summary = pd.DataFrame(summarize(list(problems)), columns=["field", "kind", "count"])

    def write(tmp: Path) -> None:
        # openpyxl's streaming mode: ~5× faster than a worksheet held whole, which
        # matters for the 10⁵ rows of a badly broken file.
        import openpyxl

        book = openpyxl.Workbook(write_only=True)
        for title, table in (("问题汇总", summary), ("问题明细", rows)):
            sheet = book.create_sheet(title)
            sheet.append([PROBLEM_HEADERS[c] for c in table.columns])
            for record in table.itertuples(index=False, name=None):
                sheet.append(record)
        book.save(tmp)

    _atomic(path, write)
    return path
