"""The two kinds of blank on the map: units without outlet or device
(``units_without_service_point``) are drawn with their own area style, beside the service
blanks, with their Chinese labels in the popups."""

from __future__ import annotations

import geopandas as gpd

from maps.interactive import render_map_html
from maps.symbology import AREA_STYLES, area_style
from tests.maps.fixtures import analysis_layers, township


def test_units_without_service_point_have_their_own_style():
    style = area_style("units_without_service_point__nsh")
    assert style is AREA_STYLES["units_without_service_point"]
    assert style.label == "无网点无机具村社区"
    assert style.colour != AREA_STYLES["service_blanks"].colour


def test_units_without_service_point_are_drawn_beside_the_blanks():
    layers = township("420527-102")
    layers.update(analysis_layers(layers))
    units = layers["units"].iloc[6:9]
    layers["units_without_service_point"] = gpd.GeoDataFrame(
        {"code": units["code"].to_numpy(), "name": units["name"].to_numpy(),
         "kind": ["rural"] * 3, "households": [310, 200, 95], "covered": [310, 0, 95],
         "d_nearest": [1200.0, 5600.0, 800.0]},
        geometry=units.geometry.to_numpy(), crs=units.crs)
    page = render_map_html(layers)
    for overlay in ("无网点无机具村社区", "服务空白区"):
        assert f'"name":"{overlay}"' in page
    start = page.index('"name":"无网点无机具村社区"')
    data = page[start:page.index("gisgrid.", start)]
    assert data.count('"Feature"') == 3
    assert "覆盖住户（户）" in page
