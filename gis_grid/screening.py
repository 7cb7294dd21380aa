"""Risk watch (plan A, 城东街道地方金融风险防范): screening, inspections and routing.

A1–A4 (ARCHITECTURE.md §7), as functions over frames (the CLI reads and writes the store):

``screen``
    A2 — flags the market entities (市场主体) whose names hold one of the plan's
    watch-list words (``KEYWORDS``), except microloan companies (小额贷款公司), and says
    which words matched. Names are normalised first (``normalise_names``).
``locate``
    A1 — the grid (or unit) holding each entity: one ``STRtree`` query for all points.
``watch_counts``
    Each grid's watch list in numbers: entities, flagged, microloans, hits per word.
``Check``, ``inspection_rows``
    A3 — the nine behaviour checks and the record of one inspection visit.
``risk_reports``
    A3/A4 — every visit with a finding becomes a risk report (风险信息报告), routed to
    the street's disposal office (街道处置办) when within its remit, else back through
    the command platform (综合指挥平台) to the city financial office (市金融办) to be
    re-routed, with the reason.

Normalisation
-------------
Registered names are written inconsistently, so both names and words are normalised
the same way before matching: Unicode NFKC (full-width ``Ｐ２Ｐ`` and ``（）`` become
``P2P`` and ``()``), the traditional forms of the words' characters mapped to the
simplified ones (``資產`` → ``资产``), case folded (``p2p``), then every space and
punctuation mark removed (``P 2 P``, ``互联网·保险``). The plan's ``投(融)资`` means
投资, 融资 and 投融资: removing the brackets turns ``投(融)资`` in a name into 投融资,
and the three are all on the list.

Words are read off a name from left to right, the longest word at each place, as a
reader segments it: ``投融资服务`` holds 投融资 (not also 融资), ``金融资产管理`` holds
金融 and 资产 (not 融资, which only straddles the two), ``金融资讯`` holds 金融 alone.

Microloan exclusion
-------------------
A name is a microloan company's when, normalised, it holds 小额贷款 followed at once by
a company form: 公司, 有限公司, 有限责任公司, 股份有限公司 (a branch, ``…小额贷款有限公司
秭归分公司``, and an online microloan company, ``…网络小额贷款有限公司``, are included).
A name where anything comes between — ``小额贷款咨询服务有限公司``, ``小额贷款服务中心`` —
is not a licensed microloan company and is screened like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.model import RISK_CHECKS

#: Plan A2's watch-list words, in the plan's order; 投(融)资 is spelt out as 投资, 融资
#: and 投融资.
KEYWORDS: tuple[str, ...] = (
    "交易所", "交易中心", "金融", "资产", "理财", "基金", "投资", "财富", "网贷", "网络借贷",
    "P2P", "众筹", "互联网保险", "支付", "贷款", "融资", "投融资",
)
#: Separator of several values in one text field (keywords, checks).
SEPARATOR = ";"

# Traditional forms of the characters in the words (and in 小额贷款), to simplified.
_TRADITIONAL = str.maketrans("資產財網貸絡眾衆籌聯險額", "资产财网贷络众众筹联险额")
_MICROLOAN = re.compile(r"小额贷款(?:股份)?(?:有限)?(?:责任)?公司")
_NOT_WORD = r"[\W_]+"  # spaces, punctuation and symbols in any script


class Check(StrEnum):
    """The nine behaviour checks of plan A3 (行为方面), each asked as 有无 (any or none)."""

    GUARANTEED_RETURNS = "guaranteed_returns"
    GIFTS_REBATES = "gifts_rebates"
    PUBLIC_PROMOTION = "public_promotion"
    DISGUISED_LENDING = "disguised_lending"
    ILLEGAL_FUNDRAISING = "illegal_fundraising"
    E_TRADING = "e_trading"
    MUTUAL_AID_PLATFORM = "mutual_aid_platform"
    SHOP_CROWDFUNDING = "shop_crowdfunding"
    OTHER = "other"

    @property
    def number(self) -> int:
        """1 to 9, the item's number in the plan."""
        return RISK_CHECKS.index(self.value) + 1

    @property
    def label_zh(self) -> str:
        return CHECK_LABELS[self]


CHECK_LABELS: dict[Check, str] = {
    Check.GUARANTEED_RETURNS: "承诺保本保息、夸大收益误导投资人",
    Check.GIFTS_REBATES: "购买理财产品赠送礼品、预先返利",
    Check.PUBLIC_PROMOTION: "通过媒体、讲座、传单、短信向不特定对象宣传推介",
    Check.DISGUISED_LENDING: "违规或变相发放贷款（首付贷、配资、转贷、套现等）",
    Check.ILLEGAL_FUNDRAISING: "非法吸收或变相吸收公众资金",
    Check.E_TRADING: "原油、贵金属、邮币卡等电子盘交易",
    Check.MUTUAL_AID_PLATFORM: "MMM等金融互助平台理财推介",
    Check.SHOP_CROWDFUNDING: "股权众筹或集资合伙开设实体店",
    Check.OTHER: "其他违法违规或风险隐患",
}


def parse_check(value: str | int | Check) -> Check:
    """A check from its number (1–9), its English name or its Chinese label.

    >>> parse_check("5").label_zh
    '非法吸收或变相吸收公众资金'
    """
    if isinstance(value, Check):
        return value
    text = str(value).strip()
    if text.isdigit() and 1 <= int(text) <= len(RISK_CHECKS):
        return Check(RISK_CHECKS[int(text) - 1])
    for check in Check:
        if text in (check.value, check.name.lower(), check.label_zh):
            return check
    raise ValueError(f"check {value!r}: give 1–9 or one of {', '.join(RISK_CHECKS)}")


# --------------------------------------------------------------------------- screening

def normalise_names(names: pd.Series | Iterable[str]) -> pd.Series:
    """Names made comparable: NFKC, simplified characters, case folded, no spaces or
    punctuation (see the module notes). Missing names become empty text.

    >>> normalise_names(["鑫盛Ｐ２Ｐ 信息（服务）", "恒信投(融)资"]).tolist()
    ['鑫盛p2p信息服务', '恒信投融资']
    """
    text = pd.Series(names, dtype="string").fillna("")
    return (text.str.normalize("NFKC").str.translate(_TRADITIONAL).str.casefold()
            .str.replace(_NOT_WORD, "", regex=True))


def is_microloan(normalised: pd.Series) -> np.ndarray:
    """Whether each normalised name is a microloan company's (see the module notes)."""
    return normalised.str.contains(_MICROLOAN, regex=True).to_numpy(dtype=bool)


def keyword_hits(normalised: pd.Series, keywords: Iterable[str] = KEYWORDS) -> pd.DataFrame:
    """Which words each normalised name holds: a boolean frame, one column per word.

    One ``str.findall`` of the words' alternation, longest first, over all names: the
    regular expression engine reads each name left to right taking the longest word at
    each place (see the module notes); then a cross-tabulation of the words found.
    """
    words = list(dict.fromkeys(keywords))
    keys = normalise_names(words).tolist()
    positions = pd.RangeIndex(len(normalised))
    if not words:
        return pd.DataFrame(index=normalised.index)
    pattern = "|".join(re.escape(k) for k in sorted(set(keys), key=len, reverse=True))
    found = pd.Series(normalised.to_numpy(dtype=object), index=positions,
                      dtype="string").str.findall(pattern).explode().dropna()
    table = pd.crosstab(found.index, found.to_numpy()) if len(found) else pd.DataFrame()
    table = table.reindex(index=positions, columns=keys, fill_value=0).fillna(0)
    return pd.DataFrame(table.to_numpy() > 0, columns=words, index=normalised.index)


def screen(entities: pd.DataFrame, *, keywords: Iterable[str] = KEYWORDS,
           name: str = "name") -> pd.DataFrame:
    """Flag the entities whose names hold a watch-list word, microloan companies apart.

    Parameters
    ----------
    entities
        Market entities (市场主体) with a ``name`` column; any other columns are kept.
    keywords
        The watch-list words (default plan A2's).
    name
        The column holding the registered name.

    Returns
    -------
    A copy of ``entities`` with ``keywords`` (the words matched, in list order,
    ``;``-separated; missing when none), ``hits`` (how many), ``microloan`` (excluded as
    a microloan company) and ``flagged`` (hits and not a microloan company).

    Examples
    --------
    >>> names = pd.DataFrame({"name": ["秭归鑫盛金融信息服务有限公司",
    ...                                "秭归鑫盛小额贷款有限公司", "茅坪镇李记餐馆"]})
    >>> screen(names)[["keywords", "microloan", "flagged"]].values.tolist()
    [['金融', False, True], ['贷款', True, False], [<NA>, False, False]]
    """
    if name not in entities.columns:
        raise ValueError(f"screen: entities have no {name!r} column (columns: "
                         f"{', '.join(map(str, entities.columns))})")
    normalised = normalise_names(entities[name].to_numpy(dtype=object))
    hits = keyword_hits(normalised, keywords)
    out = entities.copy()
    matrix = hits.to_numpy()
    # The matched words joined per name: one vectorised concatenation per word.
    joined = np.full(len(out), "", dtype=object)
    for j, word in enumerate(hits.columns):
        joined = joined + np.where(matrix[:, j], word + SEPARATOR, "")
    out["keywords"] = pd.Series(joined, index=out.index, dtype="string").str.rstrip(
        SEPARATOR).replace("", pd.NA)
    out["hits"] = matrix.sum(axis=1).astype(np.int64)
    out["microloan"] = is_microloan(normalised)
    out["flagged"] = (out["hits"].to_numpy() > 0) & ~out["microloan"].to_numpy()
    return out


def locate(points: gpd.GeoDataFrame, areas: gpd.GeoDataFrame, *, key: str = "code",
           leaves: bool = True) -> pd.Series:
    """The ``key`` of the area holding each point (missing when none does).

    Parameters
    ----------
    points
        Points (entities, events), in the CRS of ``areas``.
    areas
        Polygons: grids, or villages / communities (units) when there are no grids.
    key
        The areas' identifying column.
    leaves
        Use only the finest areas: those no other area names as its ``parent`` (when
        the layer has a ``parent`` column), so a point gets its smallest grid.

    Returns
    -------
    A text Series aligned with ``points``. A point on a border shared by two areas goes
    to the one with the smaller key, so the answer does not depend on row order.

    Examples
    --------
    >>> areas = gpd.GeoDataFrame({"code": ["A", "B"]}, crs="EPSG:4326",
    ...     geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)])
    >>> pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy([0.5, 1.0, 5], [0.5, 0.5, 5]),
    ...                        crs="EPSG:4326")
    >>> locate(pts, areas).tolist()
    ['A', 'A', <NA>]
    """
    if key not in areas.columns:
        raise ValueError(f"locate: areas have no {key!r} column")
    if points.crs is not None and areas.crs is not None and not points.crs.equals(areas.crs):
        raise ValueError(f"locate: CRS mismatch between the points ({points.crs.to_string()}) "
                         f"and the areas ({areas.crs.to_string()}); reproject one first")
    if leaves and "parent" in areas.columns:
        areas = areas[~areas[key].isin(areas["parent"].dropna())]
    codes = areas[key].astype("string").to_numpy(dtype=object)
    out = pd.Series(pd.NA, index=points.index, dtype="string")
    if len(areas) == 0 or len(points) == 0:
        return out
    tree = shapely.STRtree(np.asarray(areas.geometry.array, dtype=object))
    # intersects, not within: a point on a shared border still lands in a grid.
    pi, ai = tree.query(np.asarray(points.geometry.array, dtype=object),
                        predicate="intersects")
    rank = np.argsort(np.argsort(codes.astype(str), kind="stable"), kind="stable")
    order = np.lexsort((rank[ai], pi))
    pi, ai = pi[order], ai[order]
    first = np.unique(pi, return_index=True)[1]
    values = out.to_numpy(dtype=object)
    values[pi[first]] = codes[ai[first]]
    return pd.Series(values, index=points.index, dtype="string")


def watch_counts(screened: pd.DataFrame, *, by: str = "grid") -> pd.DataFrame:
    """Each grid's watch list in numbers (A1/A2).

    Parameters
    ----------
    screened
        The output of ``screen`` with a ``by`` column (from ``locate``).
    by
        The column to count by: ``grid``, or ``unit`` when there are no grids.

    Returns
    -------
    One row per grid, most flagged first: ``entities``, ``flagged``, ``microloan`` and
    one column per watch-list word counting the flagged entities matching it.
    """
    if by not in screened.columns:
        raise ValueError(f"watch_counts: no {by!r} column; attach a grid first (locate)")
    grid = screened[by].astype("string").fillna("(none)")
    counts = pd.DataFrame({
        "entities": grid.value_counts(),
        "flagged": grid[screened["flagged"].to_numpy()].value_counts(),
        "microloan": grid[screened["microloan"].to_numpy()].value_counts(),
    }).fillna(0).astype(np.int64)
    words = screened.loc[screened["flagged"].to_numpy(), "keywords"].str.split(SEPARATOR)
    exploded = pd.DataFrame({"grid": grid[words.index], "word": words}).explode("word")
    per_word = pd.crosstab(exploded["grid"], exploded["word"]) if len(exploded) else (
        pd.DataFrame(index=counts.index))
    known = [w for w in KEYWORDS if w in per_word.columns]
    per_word = per_word[known + [w for w in per_word.columns if w not in known]]
    counts = counts.join(per_word).fillna(0).astype(np.int64)
    counts.index.name = by
    return counts.sort_values(["flagged", "entities"], ascending=False, kind="stable"
                              ).reset_index()


# --------------------------------------------------------------------------- inspections

def inspection_rows(entity: str, date: object, inspector: str,
                    found: Iterable[str | int | Check] = (), *,
                    detail: str | None = None) -> pd.DataFrame:
    """The record of one inspection visit (A3): one row per behaviour check, each with
    the visit's date and inspector and whether it was found (``finding``); ``detail``
    goes with the checks found (or, when none is, with "other").

    >>> rows = inspection_rows("ENT-00001", "2026-05-01", "王伟", found=[5])
    >>> rows.loc[rows["finding"], "check"].tolist()
    ['illegal_fundraising']
    """
    if not str(entity).strip() or not str(inspector).strip():
        raise ValueError("inspection: entity and inspector are required")
    checks = {parse_check(c) for c in found}
    day = pd.Timestamp(date).date()
    finding = np.array([Check(c) in checks for c in RISK_CHECKS])
    notes = np.full(len(RISK_CHECKS), None, dtype=object)
    if detail:
        notes[finding if finding.any() else np.array(RISK_CHECKS) == Check.OTHER] = detail
    return pd.DataFrame({"entity": entity, "date": [day] * len(RISK_CHECKS),
                         "inspector": inspector, "check": list(RISK_CHECKS),
                         "finding": finding, "detail": notes})


@dataclass(frozen=True)
class Routing:
    """Where risk reports go (A4).

    A report is within the street's remit (本街道职责范围) when every check found is one
    the street's disposal office handles (``street_checks``) and the entity lies in
    the street's territory: in the township ``street`` (12-digit code) if given, else in
    any township (each street then handles its own). Otherwise it goes back through the
    command platform to the city financial office, which re-routes it to the department
    concerned. The default remit is what a street office can settle on the spot —
    misleading promises, gifts and rebates, public promotion, crowdfunding for a shop
    and other irregularities; lending without a licence, illegal fund-raising,
    electronic trading platforms and mutual-aid schemes are for the city and the
    regulators or police it forwards them to.
    """

    street_checks: frozenset[Check] = field(default_factory=lambda: frozenset({
        Check.GUARANTEED_RETURNS, Check.GIFTS_REBATES, Check.PUBLIC_PROMOTION,
        Check.SHOP_CROWDFUNDING, Check.OTHER}))
    street: str | None = None
    street_name: str = ""
    #: Default: the street's name + 处置办, or 街道处置办 without a name.
    street_office: str | None = None
    city_office: str = "市金融办"

    @property
    def office(self) -> str:
        return self.street_office or f"{self.street_name or '街道'}处置办"


def township_of(units: pd.Series) -> pd.Series:
    """The township (乡镇/街道) code of each 12-digit village / community code: its first
    nine digits then ``000`` (division codes nest)."""
    codes = units.astype("string")
    valid = codes.str.fullmatch(r"\d{12}").fillna(False)
    return (codes.str[:9] + "000").where(valid, pd.NA)


def risk_reports(inspections: pd.DataFrame, entities: pd.DataFrame,
                 routing: Routing | None = None) -> pd.DataFrame:
    """Every inspection visit with a finding, as a routed risk report (A3, A4).

    Parameters
    ----------
    inspections
        Rows of ``inspection_rows`` (layer ``inspections``).
    entities
        Entities with ``id`` and, as available, ``name``, ``grid``, ``unit`` (the
        township is taken from the unit code) and ``township`` (the township holding the
        entity's point, used where the unit is missing).
    routing
        The remit of the street's disposal office; default ``Routing()``.

    Returns
    -------
    One row per (entity, date, inspector) with any finding (layer ``risk_reports``):
    ``checks`` found (``;``-separated, in the plan's order), ``route`` (``street`` or
    ``city``), ``handler`` and ``reason``.
    """
    routing = routing or Routing()
    columns = ["id", "entity", "name", "grid", "township", "date", "inspector", "checks",
               "route", "handler", "reason"]
    found = inspections[inspections["finding"].astype(bool).to_numpy()]
    if found.empty:
        return pd.DataFrame({c: pd.Series(dtype="string") for c in columns})
    found = found.assign(number=found["check"].map({c: i for i, c in enumerate(RISK_CHECKS)}))
    found = found.sort_values(["entity", "date", "inspector", "number"], kind="stable")
    in_remit = found["check"].isin([c.value for c in routing.street_checks])
    outside = found["check"].where(~in_remit)
    keys = ["entity", "date", "inspector"]
    groups = found.assign(outside=outside).groupby(keys, sort=True, dropna=False)
    reports = groups.agg(checks=("check", SEPARATOR.join),
                         numbers=("number", lambda n: "、".join(str(i + 1) for i in n)),
                         outside=("outside", lambda s: "、".join(
                             f"{RISK_CHECKS.index(c) + 1}（{Check(c).label_zh}）"
                             for c in s.dropna()))).reset_index()
    info = entities.drop_duplicates("id").set_index("id")
    ids = reports["entity"]
    reports["name"] = ids.map(info["name"]) if "name" in info else pd.NA
    reports["grid"] = ids.map(info["grid"]) if "grid" in info else pd.NA
    units = ids.map(info["unit"]) if "unit" in info else pd.Series(pd.NA, index=ids.index)
    reports["township"] = township_of(units)
    if "township" in info:  # where the unit is missing: the township holding the point
        located = ids.map(info["township"]).astype("string")
        reports["township"] = reports["township"].astype("string").fillna(located)
    if routing.street is not None:
        territory = reports["township"].eq(routing.street).fillna(False)
    else:
        territory = reports["township"].notna()
    checks_ok = reports["outside"].eq("")
    street = checks_ok & territory
    reports["route"] = np.where(street, "street", "city")
    reports["handler"] = np.where(street, routing.office, routing.city_office)
    where = routing.street_name or "本街道"
    reason_checks = ("检查项" + reports["outside"] + "不属于" + where + "职责范围").where(
        ~checks_ok, "")
    reason_place = pd.Series(np.where(
        reports["township"].isna(), "主体所在乡镇街道不明",
        "主体不在" + where + "辖区（所在乡镇街道 " + reports["township"].fillna("") + "）"),
        index=reports.index).where(~territory, "")
    city_reason = (reason_checks + np.where((reason_checks != "") & (reason_place != ""),
                                            "；", "") + reason_place
                   + "，经综合指挥平台转回" + routing.city_office + "重新分流")
    street_reason = ("属" + where + "职责范围：检查项" + reports["numbers"] + "由"
                     + routing.office + "依法处置")
    reports["reason"] = np.where(street, street_reason, city_reason)
    reports["id"] = ("RR-" + reports["entity"].astype(str) + "-"
                     + pd.to_datetime(reports["date"]).dt.strftime("%Y%m%d"))
    dup = reports["id"].duplicated(keep=False)
    reports.loc[dup, "id"] = reports.loc[dup, "id"] + "-" + reports.loc[dup, "inspector"]
    return reports[columns].reset_index(drop=True)


def check_labels(checks: pd.Series) -> pd.Series:
    """``;``-separated check names as their numbers and Chinese labels, for people."""
    labels: Mapping[str, str] = {c.value: f"{c.number}.{c.label_zh}" for c in Check}
    return checks.str.split(SEPARATOR).map(
        lambda names: "；".join(labels.get(n, n) for n in names), na_action="ignore")
