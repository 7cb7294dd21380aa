"""What the service knows of its collections and of the queries made on them.

Plain data shared by the request parsing (``api.dependencies``), the authorization rules
(``api.auth``) and the providers (``api.providers``): a collection's columns and extent,
the coordinate reference systems offered (OGC API – Features Part 2), the caller's view
of a collection (visible columns, row scope) and one items query, already parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

from gis_grid.model import schema_for

#: Field types of stored columns (``layers._tables``), as JSON Schema types.
JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
              "date": "string", "datetime": "string"}


@dataclass(frozen=True)
class Column:
    """One attribute column of a collection: its name and field type
    (``str``, ``int``, ``float``, ``bool``, ``date``, ``datetime``)."""

    name: str
    type: str


@dataclass(frozen=True)
class CollectionInfo:
    """One layer of the store, as served.

    ``key`` is the column whose value is the feature id (the schema's key, e.g. a grid's
    ``code``); a layer without one uses the stored ``fid``.
    """

    name: str
    columns: tuple[Column, ...]
    geometry_type: str | None
    bbox: tuple[float, float, float, float] | None
    count: int
    key: str | None

    @property
    def spatial(self) -> bool:
        return self.geometry_type is not None

    @property
    def column_names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns)

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    @property
    def title(self) -> str:
        schema = schema_for(self.name)
        if schema is None:
            return self.name
        suffix = self.name.partition("__")[2]
        return f"{schema.title_zh} {self.name}" + (f" ({suffix})" if suffix else "")

    @property
    def description(self) -> str:
        schema = schema_for(self.name)
        return schema.description if schema is not None else ""

    @property
    def key_type(self) -> str:
        if self.key is None:
            return "int"
        column = self.column(self.key)
        return column.type if column is not None else "str"


@dataclass(frozen=True)
class OutputCRS:
    """A CRS the service can answer in.

    ``flip``: the CRS's axis order is latitude first (EPSG:4326, EPSG:4490 as OGC API
    Part 2 requires), so the stored longitude/latitude are swapped on output and a
    ``bbox`` given in it is read latitude first. ``srid``: the coordinates are
    transformed to it (None: used as stored; CGCS2000 equals WGS84 to centimetres).
    """

    uri: str
    label: str
    srid: int | None
    flip: bool
    metric: bool

    @property
    def header(self) -> str:
        """The ``Content-Crs`` header value."""
        return f"<{self.uri}>"


CRS84 = OutputCRS("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "CRS84", None, False, False)
EPSG_4326 = OutputCRS("http://www.opengis.net/def/crs/EPSG/0/4326", "EPSG:4326", None, True,
                      False)
EPSG_4490 = OutputCRS("http://www.opengis.net/def/crs/EPSG/0/4490", "EPSG:4490", None, True,
                      False)
EPSG_3857 = OutputCRS("http://www.opengis.net/def/crs/EPSG/0/3857", "EPSG:3857", 3857, False,
                      True)
SUPPORTED_CRS = (CRS84, EPSG_4326, EPSG_4490, EPSG_3857)
STORAGE = CRS84

_ALIASES = {c.uri.lower(): c for c in SUPPORTED_CRS}
_ALIASES.update({c.label.lower(): c for c in SUPPORTED_CRS})
_ALIASES.update({
    "[ogc:crs84]": CRS84, "ogc:crs84": CRS84,
    "https://www.opengis.net/def/crs/ogc/1.3/crs84": CRS84,
    **{f"[{c.label.lower()}]": c for c in SUPPORTED_CRS},
    **{c.uri.lower().replace("http://", "https://"): c for c in SUPPORTED_CRS},
})


def find_crs(text: str) -> OutputCRS | None:
    """The supported CRS named by a URI (``http://www.opengis.net/def/crs/EPSG/0/3857``),
    a safe CURIE (``[EPSG:3857]``) or a short name (``EPSG:3857``, ``CRS84``)."""
    return _ALIASES.get(text.strip().lower())


@dataclass(frozen=True)
class View:
    """What one caller sees of one collection: the visible columns and the row scope.

    ``scope`` holds (column, allowed values) pairs that every row served must satisfy;
    a pair naming a column the layer lacks matches nothing.
    """

    columns: tuple[Column, ...]
    scope: tuple[tuple[str, tuple], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def allowed(self, column: str) -> tuple | None:
        for name, values in self.scope:
            if name == column:
                return values
        return None


@dataclass(frozen=True)
class ItemsQuery:
    """One parsed ``/items`` request: ``bbox`` in longitude/latitude (storage CRS),
    property filters as (column, values) pairs already typed, the page and output CRS."""

    bbox: tuple[float, float, float, float] | None
    filters: tuple[tuple[str, tuple], ...]
    limit: int
    offset: int
    crs: OutputCRS


@dataclass(frozen=True)
class PageHead:
    """What is known of a page before its features are streamed."""

    matched: int
    returned: int
