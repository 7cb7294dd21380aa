"""The grid worker's phone page: ``GET /field`` (issue 16).

One page, in Chinese, usable at 360 px: the worker signs in with its key, sees its grids
on a map, records today's patrol in one tap, reports an event where it stands (the
phone's location) or where it taps on the map, with a kind, a subject category and a
note, and moves its open events along their path. Its script and stylesheet are the
service's own (``/static/maps/field/``, Leaflet beside them), so it works on an intranet
with no internet; every record goes through the service's API
(``api.records``) with the key in a header — the page itself needs no key and holds no
data. The kinds, paths and categories it offers are the engine's
(``gis_grid.events``), embedded as JSON.
"""

from __future__ import annotations

import html
import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from maps.web import STATIC_URL

router = APIRouter(tags=["Field"])

_PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>网格员工作台</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{static}leaflet/leaflet.css">
<link rel="stylesheet" href="{static}field/field.css">
<script id="field-config" type="application/json">{config}</script>
<script src="{static}leaflet/leaflet.js"></script>
<script src="{static}field/field.js"></script>
</head><body>
<header>网格员工作台<small>金融服务网格化 · 巡查、上报、办理</small></header>
<div id="status" role="status"></div>
<main>
<section id="signin"><h2>登录</h2>
<label for="key">密钥（API key）</label>
<input id="key" type="password" autocomplete="off" placeholder="gg_…">
<button id="signin-button">登录</button></section>
<div id="work" class="hidden">
<section><h2 id="grid-count">我的网格</h2><div id="map"></div>
<div id="where" class="where">位置：未取得（使用当前位置，或在地图上点选）</div></section>
<section><h2>今日巡查</h2><label for="patrol-grid">网格</label>
<select id="patrol-grid"></select>
<button id="patrol-button">记录今日巡查</button></section>
<section><h2>上报事件</h2>
<label for="kind">事件类型</label><select id="kind"></select>
<label for="category">定责分类</label><select id="category"></select>
<label for="summary">情况说明</label><textarea id="summary" maxlength="500"></textarea>
<button id="locate-button" class="secondary">使用当前位置</button>
<button id="report-button">上报</button></section>
<section><h2 id="event-count">我的事件</h2><div id="events"></div>
<button id="refresh-button" class="secondary">刷新</button></section>
</div></main></body></html>
"""


def _config() -> str:
    from gis_grid.events import (
        DONE,
        KIND_LABELS,
        STATE_LABELS,
        SUBJECT_CATEGORIES,
        TRANSITIONS,
    )

    config = {
        "kinds": KIND_LABELS, "states": STATE_LABELS, "done": list(DONE),
        "categories": list(SUBJECT_CATEGORIES),
        "paths": [{"kind": s.kind, "from": s.source, "to": s.target, "action": s.action,
                   "label_zh": s.label_zh, "note_required": s.note_required}
                  for s in TRANSITIONS],
    }
    # JSON inside <script>: no "</" can close the element early.
    return json.dumps(config, ensure_ascii=False).replace("</", "<\\/")


@router.get("/field", response_class=HTMLResponse, include_in_schema=True,
            summary="The grid worker's phone page (巡查、上报、办理)")
async def field_page() -> HTMLResponse:
    return HTMLResponse(_PAGE.format(static=html.escape(STATIC_URL), config=_config()))
