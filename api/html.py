"""HTML pages of the OGC API (conformance class ``html``): plain, server-rendered,
offline (no script or stylesheet from elsewhere), Chinese titles with English after.

Pages are rendered from the same JSON documents the API returns, with Jinja2 templates
(autoescaped: property values are never taken as markup).
"""

from __future__ import annotations

from fastapi.responses import HTMLResponse
from jinja2 import DictLoader, Environment, select_autoescape

_BASE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em auto;
max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}a{color:#05a}
nav a{margin-right:1em}.muted{color:#777}
</style></head><body>
<nav><a href="{{ base }}/?f=html">首页 Home</a><a href="{{ base }}/collections?f=html">
数据集 Collections</a><a href="{{ base }}/conformance?f=html">标准 Conformance</a>
<a href="{{ base }}/docs">API</a></nav>
<h1>{{ title }}</h1>
{% block body %}{% endblock %}
<p class="muted"><a href="?{{ json_query }}">JSON</a></p>
</body></html>"""

_LANDING = """{% extends "base" %}{% block body %}
<p>{{ doc.description }}</p>
<ul>{% for link in doc.links %}<li><a href="{{ link.href }}">{{ link.title or link.rel }}</a>
<span class="muted">({{ link.rel }}, {{ link.type }})</span></li>{% endfor %}</ul>
{% endblock %}"""

_CONFORMANCE = """{% extends "base" %}{% block body %}
<ul>{% for c in doc.conformsTo %}<li>{{ c }}</li>{% endfor %}</ul>
{% endblock %}"""

_COLLECTIONS = """{% extends "base" %}{% block body %}
<table><tr><th>数据集 Collection</th><th>名称 Title</th><th>要素 Items</th></tr>
{% for c in doc.collections %}<tr><td><a href="{{ base }}/collections/{{ c.id }}?f=html">
{{ c.id }}</a></td><td>{{ c.title }}</td>
<td><a href="{{ base }}/collections/{{ c.id }}/items?f=html">items</a></td></tr>
{% endfor %}</table>
{% endblock %}"""

_COLLECTION = """{% extends "base" %}{% block body %}
<p>{{ doc.description }}</p>
<table>
<tr><th>id</th><td>{{ doc.id }}</td></tr>
<tr><th>范围 Extent</th><td>{{ doc.extent.spatial.bbox[0] if doc.extent else "-" }}</td></tr>
<tr><th>坐标系 CRS</th><td>{{ doc.crs | join(", ") }}</td></tr>
</table>
<p><a href="{{ base }}/collections/{{ doc.id }}/items?f=html">要素 Items</a></p>
{% endblock %}"""

_ITEMS = """{% extends "base" %}{% block body %}
<p>{{ doc.numberReturned }} / {{ doc.numberMatched }}
{% for link in doc.links if link.rel in ("prev", "next") %}
<a href="{{ link.href }}">{{ "上一页 previous" if link.rel == "prev" else "下一页 next" }}</a>
{% endfor %}</p>
<table><tr><th>id</th>{% for k in columns %}<th>{{ k }}</th>{% endfor %}
<th>几何 geometry</th></tr>
{% for f in doc.features %}<tr>
<td><a href="{{ base }}/collections/{{ collection }}/items/{{ f.id }}?f=html">{{ f.id }}</a></td>
{% for k in columns %}{% set v = f.properties.get(k) %}
<td>{{ v if v is not none else "" }}</td>{% endfor %}
<td>{{ f.geometry.type if f.geometry else "" }}</td></tr>{% endfor %}</table>
{% endblock %}"""

_ITEM = """{% extends "base" %}{% block body %}
<table>{% for k, v in doc.properties.items() %}
<tr><th>{{ k }}</th><td>{{ v if v is not none else "" }}</td></tr>{% endfor %}
<tr><th>几何 geometry</th><td>{{ doc.geometry.type if doc.geometry else "" }}
{% if doc.geometry and doc.geometry.type == "Point" %}{{ doc.geometry.coordinates }}{% endif %}
</td></tr></table>
{% endblock %}"""

_ENV = Environment(
    loader=DictLoader({"base": _BASE, "landing": _LANDING, "conformance": _CONFORMANCE,
                       "collections": _COLLECTIONS, "collection": _COLLECTION,
                       "items": _ITEMS, "item": _ITEM}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def render(template: str, *, title: str, base: str, doc: dict, query: str = "",
           **context) -> HTMLResponse:
    """An HTML page from template ``template`` over the JSON document ``doc``."""
    json_query = "&".join(p for p in query.split("&") if p and not p.startswith("f="))
    json_query = (json_query + "&" if json_query else "") + "f=json"
    page = _ENV.get_template(template).render(title=title, base=base, doc=doc,
                                              json_query=json_query, **context)
    return HTMLResponse(page)
