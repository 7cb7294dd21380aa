"""Risk watch (plan A): screening names, attaching to grids, inspections and routing.

Names are built from the plan's watch-list words (A2), their normalised variants
(full-width, case, spaces, punctuation, traditional characters, 投(融)资) and near misses
that must not be flagged, each with the keywords expected; microloan companies and the
names that only look like one. Then the nine checks (A3) and the routing rule (A4).
"""

from __future__ import annotations

import functools
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis_grid.model import RISK_CHECKS
from gis_grid.screening import (
    KEYWORDS,
    Check,
    Routing,
    check_labels,
    inspection_rows,
    keyword_hits,
    locate,
    normalise_names,
    parse_check,
    risk_reports,
    screen,
    township_of,
    watch_counts,
)
from layers.synthetic import RISK_WORDS, build_sample

CRS = "EPSG:4326"


@functools.cache
def zigui() -> dict:
    """The Zigui sample, built once for the module (callers do not modify it)."""
    return build_sample("420527", households=3_000)


def screened(names: list[str]) -> pd.DataFrame:
    return screen(pd.DataFrame({"name": names}))


def keywords_of(name: str) -> list[str]:
    value = screened([name])["keywords"].iloc[0]
    return [] if pd.isna(value) else value.split(";")


# --- A2: the words -----------------------------------------------------------------

def test_the_plans_words_are_all_on_the_list():
    """投(融)资 is spelt out as 投资, 融资 and 投融资; the sample uses the same words."""
    assert set(KEYWORDS) == {
        "交易所", "交易中心", "金融", "资产", "理财", "基金", "投资", "财富", "网贷",
        "网络借贷", "P2P", "众筹", "互联网保险", "支付", "贷款", "融资", "投融资"}
    assert set(RISK_WORDS) <= set(KEYWORDS)


# A typical business phrase for each word: the word and nothing else is expected.
PHRASES = {
    "交易所": "农产品交易所", "交易中心": "产权交易中心", "金融": "金融信息服务",
    "资产": "资产管理", "理财": "理财咨询", "基金": "基金管理", "投资": "投资管理",
    "财富": "财富管理", "网贷": "网贷信息咨询", "网络借贷": "网络借贷信息中介",
    "P2P": "P2P信息服务", "众筹": "众筹科技", "互联网保险": "互联网保险代理",
    "支付": "支付科技", "贷款": "贷款咨询服务", "融资": "融资担保咨询",
    "投融资": "投融资服务",
}


@pytest.mark.parametrize("word", KEYWORDS)
def test_each_word_is_flagged_and_named(word):
    name = f"秭归县鑫盛{PHRASES[word]}有限公司"
    result = screened([name]).iloc[0]
    assert result["flagged"] and not result["microloan"]
    assert keywords_of(name) == [word]
    assert result["hits"] == 1


@pytest.mark.parametrize("name, expected", [
    # full-width letters and digits, case, spaces and punctuation
    ("秭归Ｐ２Ｐ信息服务有限公司", ["P2P"]),
    ("秭归p2p信息服务有限公司", ["P2P"]),
    ("秭归 P 2 P 信息服务有限公司", ["P2P"]),
    ("秭归P-2-P网络科技有限公司", ["P2P"]),
    ("秭归鑫盛 金 融 信息服务有限公司", ["金融"]),
    ("秭归鑫盛金　融信息服务有限公司", ["金融"]),  # ideographic space
    ("秭归鑫盛互联网·保险代理有限公司", ["互联网保险"]),
    ("秭归鑫盛“理财”咨询有限公司", ["理财"]),
    # 投(融)资, with half- or full-width brackets, means 投资, 融资 and 投融资
    ("秭归鑫盛投(融)资咨询有限公司", ["投融资"]),
    ("秭归鑫盛投（融）资咨询有限公司", ["投融资"]),
    ("秭归鑫盛投融资服务有限公司", ["投融资"]),
    ("秭归鑫盛投资融资服务有限公司", ["投资", "融资"]),
    ("秭归鑫盛融资租赁有限公司", ["融资"]),
    # traditional characters
    ("秭归鑫盛資產管理有限公司", ["资产"]),
    ("秭归鑫盛網絡借貸信息中介有限公司", ["网络借贷"]),
    ("秭归鑫盛眾籌科技有限公司", ["众筹"]),
    ("秭归鑫盛財富管理有限公司", ["财富"]),
    # several words, in the list's order; read as a reader segments the name
    ("秭归鑫盛金融资产管理有限公司", ["金融", "资产"]),  # not 融资, which straddles
    ("秭归鑫盛金融资讯有限公司", ["金融"]),
    ("秭归鑫盛基金投资管理有限公司", ["基金", "投资"]),
    ("秭归鑫盛网贷P2P支付有限公司", ["网贷", "P2P", "支付"]),
])
def test_normalised_variants(name, expected):
    assert keywords_of(name) == expected
    assert screened([name])["flagged"].iloc[0]


@pytest.mark.parametrize("name", [
    "秭归鑫盛农贸交易市场有限公司",  # 交易市场 is neither 交易所 nor 交易中心
    "秭归鑫盛保险代理有限公司",  # 保险 without 互联网
    "秭归鑫盛网络科技有限公司",
    "秭归鑫盛借贷信息服务部",  # 借贷, not 网络借贷 / 贷款
    "秭归鑫盛小贷咨询有限公司",  # 小贷, not 贷款
    "秭归鑫盛资讯服务有限公司",  # 资讯, not 资产
    "秭归鑫盛投递服务站",
    "秭归鑫盛付款码印刷厂",
    "茅坪镇李记餐馆",
    "",
])
def test_near_misses_are_not_flagged(name):
    result = screened([name]).iloc[0]
    assert not result["flagged"] and result["hits"] == 0 and pd.isna(result["keywords"])


@pytest.mark.parametrize("name", [
    "秭归县鑫盛小额贷款有限公司",
    "秭归县鑫盛小额贷款股份有限公司",
    "秭归县鑫盛小额贷款有限责任公司",
    "秭归县鑫盛小额贷款公司",
    "宜昌鑫盛小额贷款有限公司秭归分公司",
    "湖北鑫盛网络小额贷款有限公司",
    "秭归县鑫盛 小额 贷款 有限公司",
    "秭归县鑫盛小額貸款有限公司",
    "秭归县鑫盛投资小额贷款股份有限公司",  # a microloan company, whatever else it says
])
def test_microloan_companies_are_excluded(name):
    result = screened([name]).iloc[0]
    assert result["microloan"] and not result["flagged"]
    assert "贷款" in keywords_of(name)  # the word is still named, the flag is not raised


@pytest.mark.parametrize("name, expected", [
    ("秭归县鑫盛小额贷款咨询服务有限公司", ["贷款"]),  # a consultancy, not a lender
    ("秭归县鑫盛小额贷款服务中心", ["贷款"]),
    ("秭归县鑫盛小额贷款中介部", ["贷款"]),
    ("秭归县鑫盛贷款有限公司", ["贷款"]),
    ("秭归县鑫盛小额贷款信息服务有限公司", ["贷款"]),
])
def test_names_that_only_look_like_a_microloan_company_are_flagged(name, expected):
    result = screened([name]).iloc[0]
    assert result["flagged"] and not result["microloan"]
    assert keywords_of(name) == expected


def test_normalise_names():
    assert normalise_names(["ＡＢＣ１２３ 投（融）资", None, "P·2·P"]).tolist() == [
        "abc123投融资", "", "p2p"]


def test_keyword_hits_is_a_matrix_in_list_order():
    hits = keyword_hits(normalise_names(["金融投资", "茶叶"]))
    assert list(hits.columns) == list(KEYWORDS)
    assert hits.sum(axis=1).tolist() == [2, 0]
    assert hits.loc[0, "金融"] and hits.loc[0, "投资"]


def test_screen_keeps_columns_and_index_and_checks_its_input():
    frame = pd.DataFrame({"id": ["a", "b"], "name": ["金融", "茶叶"]}, index=[10, 20])
    out = screen(frame)
    assert list(out.index) == [10, 20] and list(out["id"]) == ["a", "b"]
    assert out["flagged"].tolist() == [True, False]
    with pytest.raises(ValueError, match="no 'title' column"):
        screen(frame, name="title")
    custom = screen(frame, keywords=["茶叶"])
    assert custom["keywords"].tolist()[1] == "茶叶"


def test_sample_entities_are_screened_as_built():
    """The sample names a share of companies with the plan's phrases and a few
    microloan companies: exactly those are flagged and excluded."""
    entities = zigui()["entities"]
    out = screen(entities)
    microloan = entities["name"].str.contains("小额贷款有限公司").to_numpy()
    worded = entities["name"].str.contains("|".join(RISK_WORDS)).to_numpy()
    assert (out["microloan"].to_numpy() == microloan).all() and microloan.sum() >= 2
    assert (out["flagged"].to_numpy() == (worded & ~microloan)).all()
    assert out["flagged"].sum() > 5
    assert out.loc[out["flagged"], "keywords"].notna().all()


def test_screening_is_vectorised():
    names = pd.DataFrame({"name": np.resize(np.array(
        [f"秭归鑫盛{p}有限公司" for p in PHRASES.values()] + ["秭归汇通商贸有限公司"] * 20,
        dtype=object), 100_000)})
    started = time.perf_counter()
    out = screen(names)
    assert time.perf_counter() - started < 10
    assert out["flagged"].sum() == 100_000 // 37 * 17 + min(100_000 % 37, 17)


# --- A1: attaching to grids ----------------------------------------------------------

def grids() -> gpd.GeoDataFrame:
    """Two level-1 grids, the first split in two level-2 grids."""
    return gpd.GeoDataFrame({
        "code": ["G-1", "G-2", "G-1-01", "G-1-02"], "level": [1, 1, 2, 2],
        "parent": [None, None, "G-1", "G-1"]}, crs=CRS, geometry=[
        shapely.box(0, 0, 2, 1), shapely.box(2, 0, 4, 1), shapely.box(0, 0, 1, 1),
        shapely.box(1, 0, 2, 1)])


def test_locate_picks_the_finest_grid():
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(
        [0.5, 1.5, 3.0, 9.0, 1.0, 2.0], [0.5, 0.5, 0.5, 9.0, 0.5, 0.5]), crs=CRS,
        index=[7, 8, 9, 10, 11, 12])
    located = locate(points, grids())
    # on a shared border: the smaller code, whatever the row order
    assert located.tolist() == ["G-1-01", "G-1-02", "G-2", pd.NA, "G-1-01", "G-1-02"]
    assert list(located.index) == [7, 8, 9, 10, 11, 12]
    assert locate(points, grids().iloc[::-1]).tolist() == located.tolist()
    assert locate(points, grids(), leaves=False).tolist()[:3] == ["G-1", "G-1", "G-2"]


def test_locate_checks_its_inputs():
    points = gpd.GeoDataFrame(geometry=[shapely.Point(0.5, 0.5), None], crs=CRS)
    assert locate(points, grids()).tolist() == ["G-1-01", pd.NA]
    with pytest.raises(ValueError, match="CRS mismatch"):
        locate(points.to_crs("EPSG:3857"), grids())
    with pytest.raises(ValueError, match="no 'name' column"):
        locate(points, grids(), key="name")
    assert locate(points.iloc[:0], grids()).empty


def test_watch_counts_per_grid():
    entities = gpd.GeoDataFrame({
        "id": list("abcde"), "name": ["鑫盛金融", "汇通投资基金", "鑫盛小额贷款有限公司",
                                      "李记餐馆", "恒信P2P"]},
        geometry=gpd.points_from_xy([0.5, 0.5, 1.5, 1.5, 3], [0.5] * 5), crs=CRS)
    out = screen(entities)
    out["grid"] = locate(out, grids())
    counts = watch_counts(out).set_index("grid")
    assert counts.loc["G-1-01", ["entities", "flagged", "microloan"]].tolist() == [2, 2, 0]
    assert counts.loc["G-1-02", ["entities", "flagged", "microloan"]].tolist() == [2, 0, 1]
    assert counts.loc["G-1-01", ["金融", "投资", "基金"]].tolist() == [1, 1, 1]
    assert counts.loc["G-2", "P2P"] == 1
    assert list(counts.index[:2]) == ["G-1-01", "G-2"]  # most flagged first
    with pytest.raises(ValueError, match="attach a grid first"):
        watch_counts(out.drop(columns="grid"))


# --- A3: the nine checks --------------------------------------------------------------

def test_the_nine_checks():
    assert [c.value for c in Check] == list(RISK_CHECKS) and len(Check) == 9
    assert [c.number for c in Check] == list(range(1, 10))
    assert Check.ILLEGAL_FUNDRAISING.label_zh == "非法吸收或变相吸收公众资金"
    assert parse_check(5) is parse_check("5") is parse_check("illegal_fundraising") \
        is parse_check("非法吸收或变相吸收公众资金") is Check.ILLEGAL_FUNDRAISING
    for bad in ("0", "10", "fraud", ""):
        with pytest.raises(ValueError, match="1–9"):
            parse_check(bad)


def test_an_inspection_is_nine_rows():
    rows = inspection_rows("ENT-1", "2026-05-01", "王伟", found=[5, "e_trading"],
                           detail="承诺年化12%")
    assert len(rows) == 9 and rows["check"].tolist() == list(RISK_CHECKS)
    assert rows.loc[rows["finding"], "check"].tolist() == ["illegal_fundraising", "e_trading"]
    assert rows.loc[rows["finding"], "detail"].tolist() == ["承诺年化12%"] * 2
    assert rows.loc[~rows["finding"], "detail"].isna().all()
    assert set(rows["date"]) == {pd.Timestamp("2026-05-01").date()}
    clean = inspection_rows("ENT-1", "2026-05-01", "王伟", detail="经营正常")
    assert not clean["finding"].any() and clean["detail"].notna().sum() == 1
    with pytest.raises(ValueError):
        inspection_rows("ENT-1", "2026-05-01", " ")


# --- A4: risk reports and routing ------------------------------------------------------

STREET = "330382004000"  # a street (township) code


def entities_for_routing() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["E1", "E2", "E3", "E4"],
        "name": ["城东鑫盛理财咨询有限公司", "城东汇通投资有限公司", "外街恒信基金有限公司",
                 "无址金融有限公司"],
        "unit": ["330382004001", "330382004002", "330382005001", None],
        "grid": ["G-1", "G-2", "G-9", None],
    })


def inspections_for_routing() -> pd.DataFrame:
    return pd.concat([
        inspection_rows("E1", "2026-05-01", "王伟", found=[1, 3]),  # in remit, in street
        inspection_rows("E2", "2026-05-01", "王伟", found=[3, 5]),  # 5 is not in remit
        inspection_rows("E3", "2026-05-02", "李娜", found=[2]),  # in remit, other street
        inspection_rows("E4", "2026-05-02", "李娜", found=[9]),  # township unknown
        inspection_rows("E1", "2026-05-03", "王伟"),  # a clean visit: no report
        inspection_rows("E1", "2026-05-04", "王伟", found=[6]),  # a second report
    ], ignore_index=True)


def test_visits_with_findings_become_routed_reports():
    routing = Routing(street=STREET, street_name="城东街道")
    reports = risk_reports(inspections_for_routing(), entities_for_routing(), routing)
    assert reports["id"].tolist() == ["RR-E1-20260501", "RR-E1-20260504", "RR-E2-20260501",
                                      "RR-E3-20260502", "RR-E4-20260502"]
    by_id = reports.set_index("id")
    first = by_id.loc["RR-E1-20260501"]
    assert first["checks"] == "guaranteed_returns;public_promotion"
    assert (first["route"], first["handler"]) == ("street", "城东街道处置办")
    assert first["reason"] == "属城东街道职责范围：检查项1、3由城东街道处置办依法处置"
    assert first["grid"] == "G-1" and first["township"] == STREET
    e_trading = by_id.loc["RR-E1-20260504"]
    assert e_trading["route"] == "city" and e_trading["handler"] == "市金融办"
    assert e_trading["reason"].startswith(
        "检查项6（原油、贵金属、邮币卡等电子盘交易）不属于城东街道职责范围")
    assert e_trading["reason"].endswith("经综合指挥平台转回市金融办重新分流")
    fundraising = by_id.loc["RR-E2-20260501"]
    assert fundraising["route"] == "city" and "检查项5（" in fundraising["reason"]
    assert "检查项3" not in fundraising["reason"]  # only the checks outside the remit
    elsewhere = by_id.loc["RR-E3-20260502"]
    assert elsewhere["route"] == "city"
    assert "主体不在城东街道辖区（所在乡镇街道 330382005000）" in elsewhere["reason"]
    unknown = by_id.loc["RR-E4-20260502"]
    assert unknown["route"] == "city" and "主体所在乡镇街道不明" in unknown["reason"]


def test_routing_without_a_street_lets_each_township_handle_its_own():
    reports = risk_reports(inspections_for_routing(), entities_for_routing()).set_index("id")
    assert reports.loc["RR-E3-20260502", "route"] == "street"
    assert reports.loc["RR-E3-20260502", "handler"] == "街道处置办"
    assert reports.loc["RR-E4-20260502", "route"] == "city"


def test_the_remit_is_configurable():
    routing = Routing(street=STREET, street_checks=frozenset({Check.ILLEGAL_FUNDRAISING,
                                                             Check.PUBLIC_PROMOTION}),
                      street_office="城东处非办", city_office="乐清市金融办")
    reports = risk_reports(inspections_for_routing(), entities_for_routing(), routing)
    by_id = reports.set_index("id")
    assert by_id.loc["RR-E2-20260501", "handler"] == "城东处非办"
    assert by_id.loc["RR-E1-20260501", "handler"] == "乐清市金融办"
    assert "检查项1（" in by_id.loc["RR-E1-20260501", "reason"]


def test_no_findings_no_reports():
    clean = inspection_rows("E1", "2026-05-01", "王伟")
    reports = risk_reports(clean, entities_for_routing())
    assert reports.empty and "route" in reports.columns


def test_helpers_for_people():
    assert township_of(pd.Series(["420527101001", None, "4205"])).tolist() == [
        "420527101000", pd.NA, pd.NA]
    assert check_labels(pd.Series(["illegal_fundraising;other"])).iloc[0] == (
        "5.非法吸收或变相吸收公众资金；9.其他违法违规或风险隐患")


# --- in the stores --------------------------------------------------------------------

def test_the_watch_lives_in_either_store(store):
    """Entities in, watch list and counts out, inspections appended visit by visit and
    the reports derived from them: the same in the GeoPackage and the PostGIS store."""
    layers = zigui()
    store.write("entities", layers["entities"])
    store.write("units", layers["units"])
    entities = store.read("entities")
    out = screen(entities)
    out["grid"] = locate(out, store.read("units"))
    assert (out["grid"] == out["unit"]).all()
    watch = out.loc[out["flagged"], ["id", "name", "registered_type", "address", "unit",
                                     "grid", "keywords", "geometry"]]
    store.write("watch_list", watch)
    store.write("watch_counts", watch_counts(out))
    back = store.read("watch_list")
    assert back["id"].tolist() == watch["id"].tolist()
    assert back["keywords"].tolist() == watch["keywords"].tolist()
    assert store.read("watch_counts")["flagged"].sum() == len(watch)
    first, second = watch["id"].iloc[0], watch["id"].iloc[1]
    store.append("inspections", inspection_rows(first, "2026-05-01", "王伟", found=[3]))
    store.append("inspections", inspection_rows(second, "2026-05-01", "王伟", found=[5]))
    store.append("inspections", inspection_rows(first, "2026-05-02", "李娜"))
    inspections = store.read("inspections")
    assert len(inspections) == 27 and inspections["finding"].sum() == 2
    reports = risk_reports(inspections, out)
    store.write("risk_reports", reports)
    stored = store.read("risk_reports").set_index("entity")
    assert stored.loc[first, "route"] == "street" and stored.loc[second, "route"] == "city"
    assert stored.loc[first, "date"] == pd.Timestamp("2026-05-01").date()
