"""Market entities (市场主体) of a synthetic territory, some carrying watch-list words.

A few hundred entities where households are, named from the place and the trade; a
seeded share carries the watch-list words of plan A2 (``RISK_WORDS``) and a few are
microloan companies (小额贷款有限公司, exempt from that list).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_grid.model import STORAGE_CRS
from layers.synthetic.cells import _Geo, _points
from layers.synthetic.names import _SURNAMES, _place_name, _town_name_array, _town_short

if TYPE_CHECKING:
    from layers.synthetic.county import County

__all__ = ["RISK_WORDS"]

_BRANDS = ("鑫盛", "汇通", "恒信", "聚源", "金鼎", "天利", "宏达", "盛世", "瑞丰", "万通", "嘉和",
           "富民", "百川", "安泰", "德润", "同创", "正元", "中和", "永兴", "华泰", "新源", "长江",
           "兴旺", "福源", "顺达")
_TRADES = ("商贸", "农业开发", "茶叶", "果业", "建材", "物流", "餐饮管理", "电子商务", "旅游开发",
           "食品", "服装", "五金机电", "汽车服务", "文化传媒", "建筑工程", "生态养殖", "家电",
           "印刷", "机械制造", "新能源", "环保科技", "水产", "医药", "装饰工程", "劳务服务")
_SHOPS = ("餐馆", "超市", "便利店", "五金店", "药房", "理发店", "农资店", "副食店", "建材店",
          "服装店", "手机店", "烟酒店", "小吃店", "早餐店", "修车铺")
#: Plan A2's watch-list words and a business phrase carrying each (market entities
#: named so are screened, 涉嫌非法金融活动排查).
_RISK_PHRASES = (
    ("交易所", "农产品交易所"), ("交易中心", "产权交易中心"), ("金融", "金融信息服务"),
    ("资产", "资产管理"), ("理财", "理财咨询"), ("基金", "基金管理"), ("投资", "投资管理"),
    ("财富", "财富管理"), ("网贷", "网贷信息咨询"), ("网络借贷", "网络借贷信息中介"),
    ("P2P", "P2P信息服务"), ("众筹", "众筹科技"), ("互联网保险", "互联网保险代理"),
    ("支付", "支付科技"), ("贷款", "贷款咨询服务"), ("投融资", "投融资服务"),
)
#: The watch-list words of plan A2, for tests and screening demos.
RISK_WORDS = tuple(word for word, _ in _RISK_PHRASES)
_ROADS = ("人民路", "建设路", "解放路", "新华路", "中山路", "长江路", "滨江路", "文化路", "胜利路",
          "和平路", "迎宾路", "府前街")


def _entities(
    rng: np.random.Generator, info: County, towns: pd.DataFrame, units: pd.DataFrame,
    house: gpd.GeoDataFrame, geo: _Geo, total: int,
) -> gpd.GeoDataFrame:
    """A few hundred market entities (市场主体) where households are, urban units three
    times as likely; names from the place and the trade, a seeded one in eight with
    watch-list words (plan A2), two to four microloan companies."""
    n = int(np.clip(round(total / 500), 150, 800))
    urban = units["kind"].to_numpy() == "urban"
    w = units["households"].to_numpy(float) * np.where(urban, 3.0, 1.0)
    if w.sum() == 0:
        w = np.ones(len(units))
    unit = np.sort(rng.choice(len(units), n, p=w / w.sum()))
    # At one of the unit's household points (households are sorted by unit), or at its
    # seed when it has none; then a few metres off.
    points = np.bincount(pd.Index(units["code"]).get_indexer(house["unit"]),
                         minlength=len(units))
    first = np.concatenate([[0], np.cumsum(points)[:-1]])
    at = first[unit] + np.floor(rng.random(n) * points[unit]).astype(np.int64)
    hx, hy = geo.seeds[unit, 0].copy(), geo.seeds[unit, 1].copy()
    has = points[unit] > 0
    hx[has], hy[has] = geo.frame.from_lonlat_xy(house.geometry.x.to_numpy()[at[has]],
                                                house.geometry.y.to_numpy()[at[has]])
    _, _, lon, lat = geo.scatter(rng, hx, hy, np.full(n, 15.0), unit)

    town_name = towns["name"].to_numpy()[units["town"].to_numpy()[unit]]
    place = np.array([_place_name(v) for v in units["name"].to_numpy()], dtype=object)[unit]
    brand = rng.choice(np.array(_BRANDS, dtype=object), n)
    trade = rng.choice(np.array(_TRADES, dtype=object), n)
    prefix = np.where(rng.random(n) < 0.5, info.short,
                      np.array([_town_short(t) for t in town_name], dtype=object))
    form = rng.choice(np.array(["有限责任公司", "个体工商户", "股份有限公司", "农民专业合作社"],
                               dtype=object), n, p=[0.55, 0.35, 0.04, 0.06])
    # Companies only (about three in five entities), so one entity in eight in all.
    risky = (rng.random(n) < 0.2) & (form != "个体工商户") & (form != "农民专业合作社")
    risk_phrase = np.array([p for _, p in _RISK_PHRASES], dtype=object)[
        rng.integers(0, len(_RISK_PHRASES), n)]
    microloan = np.zeros(n, bool)
    microloan[rng.choice(np.flatnonzero(~risky & (form == "有限责任公司")),
                         int(rng.integers(2, 5)), replace=False)] = True
    shop = rng.choice(np.array(_SHOPS, dtype=object), n)
    surname = rng.choice(np.array(_SURNAMES, dtype=object), n)

    business = np.where(risky, risk_phrase, trade)
    name = np.select(
        [microloan, form == "个体工商户", form == "农民专业合作社", form == "股份有限公司"],
        [info.name + brand + "小额贷款有限公司",
         _town_name_array(town_name) + surname + "记" + shop,
         place + brand + trade + "专业合作社",
         prefix + brand + business + "股份有限公司"],
        default=prefix + brand + business + "有限公司",
    )
    road = rng.choice(np.array(_ROADS, dtype=object), n)
    number = rng.integers(1, 300, n).astype(str).astype(object)
    group = rng.integers(1, 12, n).astype(str).astype(object)
    street = np.where(urban[unit], road + number + "号", group + "组" + number + "号")
    address = (info.province + info.name + _town_name_array(town_name) + place + street)
    return gpd.GeoDataFrame(
        {"id": [f"ENT-{k + 1:05d}" for k in range(n)], "name": name.astype(object),
         "registered_type": form, "address": address.astype(object),
         "unit": units["code"].to_numpy()[unit], "source": "synthetic"},
        geometry=_points(lon, lat), crs=STORAGE_CRS,
    )
