"""How a frame becomes a stored table and back: the rules both stores share.

Private to ``layers.gpkg`` and ``layers.postgis``, so that the two stores agree on layer
names, column types, geometry types and on the dtypes a read returns:

===========  ==============  =====================  ====================================
field type   GeoPackage      PostGIS                read back as
===========  ==============  =====================  ====================================
str          TEXT            text                   pandas ``str``
int          INTEGER         bigint                 ``int64`` (``Int64`` with nulls)
float        REAL            double precision       ``float64``
bool         BOOLEAN         boolean                ``bool`` (``boolean`` with nulls)
date         DATE            date                   ``datetime.date`` objects (``object``)
datetime     DATETIME (UTC)  timestamptz            ``datetime64[us, UTC]``
===========  ==============  =====================  ====================================

A column's type is the schema's (``gis_grid.model.schema_for``) when the layer and field
are known, else it follows the frame's dtype. Naive datetimes are taken as UTC. Geometry
is stored 2D in ``STORAGE_CRS``; a layer mixing a type and its multi-part type (Polygon
and MultiPolygon) is stored as the multi-part type, so the layer has one declared type.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pandas.api import types as ptypes
from pyproj import CRS

from gis_grid.errors import ConflictError, StoreError
from gis_grid.model import STORAGE_CRS, LayerSchema, schema_for

LAYER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_LAYER_NAME = 60
#: Names the stores or the tools around them (GDAL, PostGIS, QGIS) use for themselves.
RESERVED_PREFIXES = ("gpkg_", "rtree_", "sqlite_", "gisgrid_", "pg_")
RESERVED_NAMES = frozenset(
    {"spatial_ref_sys", "geometry_columns", "geography_columns", "raster_columns",
     "raster_overviews", "layer_styles"}
)
#: Column names the stored tables use themselves (case-insensitive).
RESERVED_COLUMNS = frozenset({"fid", "geom", "geometry"})

STORED_GEOMETRY = "geom"  # the name of the frames' geometry column in the stored tables
FIELD_TYPES = ("str", "int", "float", "bool", "date", "datetime")

#: shapely type id → the type name (as shapely's ``geom_type`` spells it).
_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LineString", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}
#: single-part type id → (multi-part type id, shapely constructor of the multi-part type).
_PROMOTE = {0: (4, shapely.multipoints), 1: (5, shapely.multilinestrings),
            2: (5, shapely.multilinestrings), 3: (6, shapely.multipolygons)}
_STORAGE_CRS = CRS.from_user_input(STORAGE_CRS)


@dataclass(frozen=True)
class Column:
    """One stored attribute column: its name and field type (one of ``FIELD_TYPES``)."""

    name: str
    type: str


@dataclass
class Table:
    """A frame made ready for storing: typed columns, geometry prepared, checks done."""

    name: str
    columns: list[Column]
    #: column name → values in the canonical dtype of its field type (see module doc).
    data: dict[str, pd.Series]
    #: shapely geometries (object array), None for a table without geometry.
    geometry: np.ndarray | None
    #: 'Point', 'MultiPolygon', … or 'Geometry' for mixed types; None without geometry.
    geometry_type: str | None
    geometry_required: bool
    key: str | None
    rows: int

    @property
    def spatial(self) -> bool:
        return self.geometry is not None

    @property
    def bbox(self) -> tuple[float, float, float, float] | None:
        if self.geometry is None or len(self.geometry) == 0:
            return None
        bounds = shapely.total_bounds(self.geometry)
        if np.isnan(bounds).any():
            return None
        return tuple(float(v) for v in bounds)


def table_frame(table: Table) -> gpd.GeoDataFrame | pd.DataFrame:
    """``table``'s rows as a frame, typed as a store reads them back."""
    data = {c.name: table.data[c.name].reset_index(drop=True) for c in table.columns}
    if table.geometry is None:
        return pd.DataFrame(data, index=pd.RangeIndex(table.rows))
    return gpd.GeoDataFrame(data, index=pd.RangeIndex(table.rows),
                            geometry=gpd.GeoSeries(table.geometry, crs=STORAGE_CRS),
                            crs=STORAGE_CRS)


def check_layer_name(name: object) -> str:
    """Return ``name`` if it is a safe layer name, else raise ``StoreError``."""
    if not isinstance(name, str) or not LAYER_NAME.match(name) or len(name) > MAX_LAYER_NAME:
        raise StoreError(
            f"layer name {name!r}: use lower-case letters, digits and '_', starting with a "
            f"letter, at most {MAX_LAYER_NAME} characters"
        )
    if name.startswith(RESERVED_PREFIXES) or name in RESERVED_NAMES:
        raise StoreError(f"layer name {name!r} is reserved for the store's own tables")
    return name


def check_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """``bbox`` as four floats (min lon, min lat, max lon, max lat), or ``StoreError``."""
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise StoreError(f"bbox {bbox!r}: expected four numbers") from None
    if len(values) != 4 or not all(np.isfinite(values)):
        raise StoreError(f"bbox {bbox!r}: expected four finite numbers")
    minx, miny, maxx, maxy = values
    if minx > maxx or miny > maxy:
        raise StoreError(f"bbox {bbox!r}: expected (min lon, min lat, max lon, max lat)")
    return values


def prepare(name: str, frame: gpd.GeoDataFrame | pd.DataFrame, *,
            types: Mapping[str, str | None] | None = None) -> Table:
    """Check ``frame`` and type its columns for storing as layer ``name``.

    What can be found wrong with the input without the database (names, types, CRS,
    missing geometry) is found here, before a store touches its data. ``types`` (column
    → field type) are those of a layer already stored, for appending to it: they take
    precedence over the schema, since the rows must fit the table as it is.
    """
    check_layer_name(name)
    if not isinstance(frame, pd.DataFrame):
        raise StoreError(f"{name}: expected a DataFrame or GeoDataFrame, got "
                         f"{type(frame).__name__}")
    schema = schema_for(name)
    geometry = None
    geometry_column = None
    if isinstance(frame, gpd.GeoDataFrame) and frame.active_geometry_name in frame.columns:
        geometry_column = frame.active_geometry_name
        _check_crs(name, frame.crs)
        geometry = np.asarray(frame.geometry.array, dtype=object)
    attributes = [c for c in frame.columns if c != geometry_column]
    _check_column_names(name, attributes)
    columns: list[Column] = []
    data: dict[str, pd.Series] = {}
    for col in attributes:
        values = frame[col].reset_index(drop=True)
        if isinstance(values.dtype, gpd.array.GeometryDtype):
            raise StoreError(f"{name}.{col}: a layer holds one geometry column, "
                             f"{geometry_column!r}")
        wanted, said_by = _schema_type(schema, col), None
        if types is not None and types.get(col) is not None:
            wanted, said_by = types[col], f"the stored layer {name}"
        ftype, converted = _convert(name, col, values, wanted, said_by)
        columns.append(Column(col, ftype))
        data[col] = converted
    geometry_type = None
    required = False
    if geometry is not None:
        geometry, geometry_type = _prepare_geometry(geometry, schema)
        required = schema is not None and not schema.geometry_optional
        if required and shapely.is_missing(geometry).any():
            missing = int(shapely.is_missing(geometry).sum())
            raise StoreError(f"{name}: {missing} feature(s) without geometry; the "
                             f"{schema.name} schema requires one")
    key = schema.key if schema is not None and schema.key in data else None
    return Table(name, columns, data, geometry, geometry_type, required, key, len(frame))


def _check_crs(name: str, crs: CRS | None) -> None:
    if crs is not None and not _STORAGE_CRS.equals(crs, ignore_axis_order=True):
        raise StoreError(f"{name}: geometry is in {crs.to_string()}, the store holds "
                         f"{STORAGE_CRS}; reproject first (frame.to_crs({STORAGE_CRS!r}))")


def _check_column_names(name: str, columns: list) -> None:
    seen: set[str] = set()
    for col in columns:
        if (not isinstance(col, str) or not col or len(col.encode()) > 63
                or any(ord(ch) < 32 for ch in col)):
            raise StoreError(f"{name}: column name {col!r} must be a non-empty text of at "
                             "most 63 bytes without control characters")
        if col.lower() in RESERVED_COLUMNS:
            raise StoreError(f"{name}: column name {col!r} is reserved for the store "
                             f"({', '.join(sorted(RESERVED_COLUMNS))})")
        if col.lower() in seen:
            raise StoreError(f"{name}: column {col!r} appears twice (names are compared "
                             "without case)")
        seen.add(col.lower())


def _schema_type(schema: LayerSchema | None, col: str) -> str | None:
    if schema is None or col not in schema.field_names:
        return None
    return schema.field(col).dtype


def _kind(values: pd.Series) -> str:
    """What the column holds, as ``pandas.api.types.infer_dtype`` names it."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _kind(values.astype(dtype.categories.dtype))
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_integer_dtype(dtype):
        return "integer"
    if ptypes.is_float_dtype(dtype):
        return "empty" if values.isna().all() else "floating"
    if ptypes.is_datetime64_any_dtype(dtype):
        return "datetime"
    return ptypes.infer_dtype(values, skipna=True)


_KIND_TYPES = {"string": "str", "integer": "int", "floating": "float", "decimal": "float",
               "mixed-integer-float": "float", "boolean": "bool", "date": "date",
               "datetime": "datetime", "datetime64": "datetime"}
#: which kinds of values each field type accepts (besides a column of nothing but nulls).
_ACCEPTS = {
    "str": {"string"},
    "int": {"integer", "floating", "mixed-integer-float"},
    "float": {"integer", "floating", "mixed-integer-float", "decimal"},
    "bool": {"boolean"},
    "date": {"date", "datetime", "datetime64", "string"},
    "datetime": {"datetime", "datetime64", "date", "string"},
}


def _convert(name: str, col: str, values: pd.Series, wanted: str | None,
             said_by: str | None = None) -> tuple[str, pd.Series]:
    kind = _kind(values)
    if wanted is None:
        if kind == "empty":
            wanted = "str"
        elif kind in _KIND_TYPES:
            wanted = _KIND_TYPES[kind]
        else:
            raise StoreError(f"{name}.{col}: cannot store values of kind {kind!r} "
                             "(expected text, numbers, booleans, dates or datetimes)")
    elif kind != "empty" and kind not in _ACCEPTS[wanted]:
        said_by = said_by or f"the {name.split('__')[0]} schema"
        raise StoreError(f"{name}.{col}: {said_by} says {wanted}, the frame holds {kind} "
                         "values")
    try:
        return wanted, _CONVERTERS[wanted](values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise StoreError(f"{name}.{col}: cannot store as {wanted}: {exc}") from None


def _as_str(values: pd.Series) -> pd.Series:
    return values.astype("str") if len(values) else pd.Series([], dtype="str")


def _as_int(values: pd.Series) -> pd.Series:
    if values.dtype == object and ptypes.infer_dtype(values, skipna=True) == "integer":
        # Straight from the Python ints: through float64 they would round beyond 2⁵³.
        values = pd.Series(pd.array(values.tolist(), dtype="Int64"))
    elif not ptypes.is_integer_dtype(values.dtype):
        numbers = pd.to_numeric(values)
        finite = numbers.dropna()
        if (finite != np.floor(finite)).any():
            raise ValueError("some values are not whole numbers")
        values = numbers
    out = values.astype("Int64")
    return out if out.hasnans else out.astype("int64")


def _as_float(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values).astype("float64")


def _as_bool(values: pd.Series) -> pd.Series:
    out = values.astype("boolean")
    return out if out.hasnans else out.astype("bool")


def _as_date(values: pd.Series) -> pd.Series:
    stamps = _to_datetime(values, utc=False)
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    if (stamps.dropna() != stamps.dropna().dt.normalize()).any():
        raise ValueError("some values have a time of day; use a datetime field")
    return restore(stamps.dt.date, "date")


def _as_datetime(values: pd.Series) -> pd.Series:
    return _to_datetime(values, utc=True).astype("datetime64[us, UTC]")


def _to_datetime(values: pd.Series, *, utc: bool) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(values.dtype):
        stamps = values
        if utc:
            stamps = (stamps.dt.tz_localize("UTC") if stamps.dt.tz is None
                      else stamps.dt.tz_convert("UTC"))
        return stamps
    return pd.to_datetime(values, utc=utc, format="ISO8601")


_CONVERTERS = {"str": _as_str, "int": _as_int, "float": _as_float, "bool": _as_bool,
               "date": _as_date, "datetime": _as_datetime}


def restore(values: Sequence | np.ndarray | pd.Series, ftype: str | None) -> pd.Series:
    """A column read from a store, in the dtype of its field type (see module doc)."""
    if ftype == "str":
        return pd.Series(values, dtype="str")
    if ftype == "int":
        out = (values.astype("Int64") if isinstance(values, pd.Series)
               else pd.Series(pd.array(list(values), dtype="Int64")))
        return out if out.hasnans else out.astype("int64")
    if ftype == "float":
        return pd.Series(values, dtype="float64")
    if ftype == "bool":
        out = pd.Series(values).astype("boolean")
        return out if out.hasnans else out.astype("bool")
    if ftype == "date":
        series = pd.Series(values)
        if ptypes.is_datetime64_any_dtype(series.dtype):
            series = pd.Series(series.dt.date, dtype=object)
        elif ptypes.is_string_dtype(series.dtype) and series.dtype != object:
            series = pd.Series(pd.to_datetime(series, format="ISO8601").dt.date,
                               dtype=object)
        series = series.astype(object)
        return series.where(series.notna(), None)
    if ftype == "datetime":
        if len(values) == 0:
            return pd.Series([], dtype="datetime64[us, UTC]")
        return pd.Series(pd.to_datetime(values, utc=True, format="ISO8601")
                         ).astype("datetime64[us, UTC]")
    return pd.Series(values)


def _prepare_geometry(geometry: np.ndarray, schema: LayerSchema | None
                      ) -> tuple[np.ndarray, str]:
    type_ids = shapely.get_type_id(geometry)
    present = set(np.unique(type_ids[type_ids >= 0]).tolist())
    if len(present) == 2:
        single, multi = sorted(present)
        if single in _PROMOTE and _PROMOTE[single][0] == multi:
            # One declared type per layer, as GIS clients expect: promote the single
            # parts (as ogr2ogr -nlt PROMOTE_TO_MULTI does), vectorised.
            geometry = _promote(geometry, type_ids, single)
            present = {multi}
    names = {_TYPE_NAMES[t] for t in present}
    if len(names) == 1:
        return geometry, names.pop()
    if not names and schema is not None and len(schema.geometry) == 1:
        return geometry, schema.geometry[0]
    return geometry, "Geometry"


def _promote(geometry: np.ndarray, type_ids: np.ndarray, single: int) -> np.ndarray:
    """``geometry`` with its ``single``-part geometries made multi-part, vectorised."""
    multi, constructor = _PROMOTE[single]
    geometry = geometry.copy()
    parts = (type_ids == single) & ~shapely.is_empty(geometry)
    geometry[parts] = constructor(geometry[parts], indices=np.arange(parts.sum()))
    empties = (type_ids == single) & shapely.is_empty(geometry)
    geometry[empties] = shapely.from_wkt(f"{_TYPE_NAMES[multi].upper()} EMPTY")
    return geometry


def conform(table: Table, fields: Mapping[str, str | None], geometry_type: str | None
            ) -> Table:
    """``table`` (from ``prepare(..., types=fields)``) made to fit a stored layer for
    appending: its columns must be among the layer's (appending never adds a column;
    those it lacks stay null), and its geometry of the layer's declared type — single
    parts are promoted when the layer holds multi-part geometries."""
    name = table.name
    unknown = [c.name for c in table.columns if c.name not in fields]
    if unknown:
        raise StoreError(f"{name}: no column(s) {', '.join(map(repr, unknown))} to append "
                         f"to (columns: {', '.join(fields)}); appending never adds columns")
    schema = schema_for(name)
    if geometry_type is None:
        if table.spatial and not shapely.is_missing(table.geometry).all():
            raise StoreError(f"{name}: the layer has no geometry; cannot append features "
                             "with geometry")
        table.geometry, table.geometry_type = None, None
        return table
    if not table.spatial:
        if schema is not None and schema.spatial and not schema.geometry_optional:
            raise StoreError(f"{name}: features without geometry; the {schema.name} "
                             "schema requires one")
        return table
    type_ids = shapely.get_type_id(table.geometry)
    present = {_TYPE_NAMES[t] for t in np.unique(type_ids[type_ids >= 0]).tolist()}
    if geometry_type != "Geometry" and present - {geometry_type}:
        singles = [t for t, (m, _) in _PROMOTE.items() if _TYPE_NAMES[m] == geometry_type]
        if not present <= {geometry_type, *(_TYPE_NAMES[t] for t in singles)}:
            raise StoreError(f"{name}: the layer holds {geometry_type}, the frame "
                             f"{', '.join(sorted(present))}")
        for single in singles:
            table.geometry = _promote(table.geometry, type_ids, single)
    table.geometry_type = geometry_type
    return table


def typed_changes(name: str, changes: Mapping[str, object],
                  fields: Mapping[str, str | None]) -> dict[str, tuple[str, pd.Series]]:
    """``changes`` (column → one new value) for a row of a stored layer: each column
    checked to exist and its value converted to the column's field type, as
    ``(field type, value)`` with the value a one-row Series in the canonical dtype."""
    unknown = [c for c in changes if c not in fields]
    if unknown:
        raise StoreError(f"{name}: no column(s) {', '.join(map(repr, unknown))} to update "
                         f"(columns: {', '.join(fields)})")
    typed = {}
    for col, value in changes.items():
        values = pd.Series([value.item() if isinstance(value, np.generic) else value],
                           dtype=object)
        ftype, converted = _convert(name, col, values, fields[col] or None,
                                    f"the stored layer {name}")
        typed[col] = (ftype, converted)
    return typed


#: The column ``Store.update`` checks and bumps.
VERSION = "version"


def check_update(name: str, key_field: str, key_value: object, changes: Mapping[str, object],
                 expected_version: int, fields: Mapping[str, str | None]
                 ) -> tuple[tuple[str, pd.Series], dict[str, tuple[str, pd.Series]]]:
    """What ``Store.update`` needs, checked: the key and the changes typed for the layer's
    columns (see ``typed_changes``)."""
    if VERSION not in fields:
        raise StoreError(f"{name}: no {VERSION!r} column; a layer updated row by row needs "
                         "one (an integer, 1 for a new row)")
    if VERSION in changes:
        raise StoreError(f"{name}: {VERSION!r} is set by the store (expected_version + 1), "
                         "not by the changes")
    if key_field in changes:
        raise StoreError(f"{name}: {key_field!r} identifies the row and cannot change here")
    if isinstance(expected_version, bool) or not isinstance(expected_version, int | np.integer):
        raise StoreError(f"{name}: expected_version must be an integer, got "
                         f"{expected_version!r}")
    typed = typed_changes(name, {key_field: key_value, **changes}, fields)
    key = typed.pop(key_field)
    if key[1].isna().all():
        raise StoreError(f"{name}: the key value of an update cannot be null")
    return key, typed


def refuse_update(url: str, name: str, key_field: str, key_value: object, expected: int,
                   found: list) -> None:
    """Raise why ``Store.update`` changed no row, or more than one (``found``: the
    versions of the rows holding the key)."""
    if not found:
        raise StoreError(f"{url}: {name} has no row with {key_field}={key_value!r}")
    if len(found) > 1:
        raise StoreError(f"{url}: {name} has {len(found)} rows with {key_field}={key_value!r};"
                         " update needs a unique key")
    if found[0] is None:
        raise StoreError(f"{url}: {name} {key_field}={key_value!r} has no version; give it "
                         "one (1) before updating it")
    raise ConflictError(name, key_field, key_value, int(expected), int(found[0]))


def where_items(name: str, where: dict[str, object] | None, columns: Sequence[str]
                ) -> list[tuple[str, list[object] | None]]:
    """``where`` checked against the layer's columns, as (column, values) pairs.

    ``values`` is a list of the accepted values, or None for "is null" (a ``None``
    value); each value is text, a number, a boolean, a date or a datetime.
    """
    if not where:
        return []
    items = []
    for col, value in where.items():
        if col not in columns:
            raise StoreError(f"{name}: no column {col!r} to filter on (columns: "
                             f"{', '.join(columns)})")
        if value is None:
            items.append((col, None))
            continue
        raw = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        values = [v.item() if isinstance(v, np.generic) else v for v in raw]
        for v in values:
            if not isinstance(v, str | int | float | bool | dt.date) or (
                    isinstance(v, str) and "\x00" in v):
                raise StoreError(f"{name}: cannot filter {col!r} on {v!r}")
        items.append((col, values))
    return items


def check_columns(name: str, requested: Sequence[str] | None, columns: Sequence[str]
                  ) -> list[str]:
    """The attribute columns to read: all of them, or the requested ones if they exist."""
    if requested is None:
        return list(columns)
    unknown = [c for c in requested if c not in columns]
    if unknown:
        raise StoreError(f"{name}: no column(s) {', '.join(map(repr, unknown))} (columns: "
                         f"{', '.join(columns)})")
    return list(dict.fromkeys(requested))
