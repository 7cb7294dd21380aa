"""Feature schemas (OGC API – Features Part 5, Schemas): ``/collections/{id}/schema``.

A JSON Schema (2020-12, ``application/schema+json``) of the features of a collection as
the caller sees them: the key column marked ``x-ogc-role: id``, the geometry marked
``x-ogc-role: primary-geometry`` with its type as ``format`` (``geometry-point``,
``geometry-polygon`` … ``geometry-any``), every visible property with its JSON type,
format (``date``, ``date-time``), enumeration, pattern and range from the data model
(``gis_grid.model``) and a ``title``. A column the caller may not read (a regulator and
the staff's ``phone``) is absent: the schema shows the view, never more.

The geometry type is the model's (staff are ``Point``, also when no stored feature has a
location yet), else what the store reports; a layer whose features may lack a geometry
(staff, events) says so with ``x-gisgrid-geometry-optional``.
"""

from __future__ import annotations

from api.catalog import JSON_TYPES, CollectionInfo, View
from gis_grid.model import schema_for

#: Part 5's ``format`` values of a geometry property, by GeoJSON type.
GEOMETRY_FORMATS = {
    "Point": "geometry-point", "MultiPoint": "geometry-multipoint",
    "LineString": "geometry-linestring", "MultiLineString": "geometry-multilinestring",
    "Polygon": "geometry-polygon", "MultiPolygon": "geometry-multipolygon",
    "GeometryCollection": "geometry-geometrycollection",
}
_EITHER = {frozenset({"Point", "MultiPoint"}): "geometry-point-or-multipoint",
           frozenset({"LineString", "MultiLineString"}): "geometry-linestring-or-multilinestring",
           frozenset({"Polygon", "MultiPolygon"}): "geometry-polygon-or-multipolygon"}
SCHEMA_MEDIA = "application/schema+json"
REL_SCHEMA = "http://www.opengis.net/def/rel/ogc/1.0/schema"


def geometry_format(info: CollectionInfo) -> str | None:
    """The Part 5 ``format`` of the collection's geometry; None without geometry.

    The stored type when the store knows one, else the data model's (a layer declared
    ``Polygon`` or ``MultiPolygon`` is ``geometry-polygon-or-multipolygon``)."""
    if info.geometry_type in GEOMETRY_FORMATS:
        return GEOMETRY_FORMATS[info.geometry_type]
    model = schema_for(info.name)
    declared = frozenset(model.geometry) if model is not None else frozenset()
    if not declared:
        return "geometry-any" if info.spatial else None
    if len(declared) == 1:
        return GEOMETRY_FORMATS.get(next(iter(declared)), "geometry-any")
    return _EITHER.get(declared, "geometry-any")


def geometry_type(info: CollectionInfo) -> str | None:
    """The one GeoJSON geometry type of the collection, when it has one."""
    fmt = geometry_format(info)
    for kind, value in GEOMETRY_FORMATS.items():
        if value == fmt:
            return kind
    return None


def feature_schema(info: CollectionInfo, view: View, url: str) -> dict:
    """The Part 5 schema of ``info`` in the caller's ``view``, identified by ``url``."""
    model = schema_for(info.name)
    fields = {f.name: f for f in model.fields} if model is not None else {}
    properties: dict[str, dict] = {}
    if info.key is None:
        properties["fid"] = {"title": "feature number", "type": "integer",
                             "x-ogc-role": "id", "readOnly": True}
    fmt = geometry_format(info)
    if fmt is not None:
        geometry = {"title": "geometry", "format": fmt, "x-ogc-role": "primary-geometry"}
        if model is not None and model.geometry_optional:
            geometry["x-gisgrid-geometry-optional"] = True
        properties["geometry"] = geometry
    for column in view.columns:
        spec = fields.get(column.name)
        prop: dict = {"title": (spec.description if spec is not None and spec.description
                                else column.name),
                      "type": JSON_TYPES[column.type]}
        if column.type == "date":
            prop["format"] = "date"
        elif column.type == "datetime":
            prop["format"] = "date-time"
        if spec is not None:
            if spec.enum:
                prop["enum"] = list(spec.enum)
            if spec.pattern:
                prop["pattern"] = spec.pattern
            if spec.minimum is not None:
                prop["minimum"] = spec.minimum
            if spec.maximum is not None:
                prop["maximum"] = spec.maximum
        if column.name == info.key:
            prop["x-ogc-role"] = "id"
        properties[column.name] = prop
    required = [c.name for c in view.columns
                if c.name in fields and fields[c.name].required]
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url,
        "type": "object",
        "title": info.title,
        "description": info.description or f"layer {info.name}",
        "properties": properties,
    }
    if required:
        doc["required"] = required
    return doc
