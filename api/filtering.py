"""OGC API – Features Part 3: CQL2 filters and ``sortby``, checked once and run by both stores.

Parsing (``api.cql2``) is pygeofilter's (the CQL2 parser pygeoapi uses): its CQL2-JSON parser, with
three-argument ``between``, ``bbox`` literals, ``t_intersects`` and ``t_disjoint`` put in
the shape it reads (``_normalise_json``), and its CQL2-text grammar with the few rules it
lacks from the published standard added by ``_text_grammar`` — temporal predicates as
functions (``T_AFTER(reported_at, TIMESTAMP('…'))``; pygeofilter writes them infix) and
``T_DISJOINT``, ``INTERVAL`` with dates, properties and open ends (``'..'``), ``NOT (a AND b)``,
``''`` inside strings (as GDAL escapes a quote), ``AND`` binding tighter than ``OR``,
case-insensitive ``DATE``/``TIMESTAMP``/``INTERVAL``, and ``TRUE``/``FALSE`` as whole
conditions (``filter=TRUE``; a boolean is then a value only after an operator).
``T_INTERSECTS`` is kept as ``NOT T_DISJOINT`` (pygeofilter reads it as ``T_OVERLAPS``).

The AST is then checked against the caller's view (``compile_filter``) into this module's
own small tree (``Expr``): every property must be a column the caller may read — an unknown
and a hidden column get the same 400, so a filter cannot probe for hidden columns — and
every literal is typed as its column. Temporal functions become comparisons of interval
ends (``_ALLEN``; an instant is an interval with equal ends, an open end the type's first
or last value). The two providers translate that tree themselves:
``to_sql`` composes PostgreSQL with ``psycopg.sql`` (identifiers only from the view's
columns, every value a bound parameter) and ``to_mask`` evaluates it on the GeoPackage
provider's cached frame with pandas/shapely under SQL's three-valued logic, so both
stores give the same rows. pygeofilter's own back ends do not fit: they target
SQLAlchemy, Django, Elasticsearch or plain Python objects, while the PostGIS provider
builds its statements with ``psycopg.sql`` and the GeoPackage provider filters frames.

The caller's row scope is applied outside the filter by the providers
(``scope AND (filter)``), so no filter — ``institution='YCB' OR 1=1``, ``NOT (…)`` —
reaches rows outside it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyproj
import shapely
from psycopg import sql
from pygeofilter import ast, values

from api.catalog import CRS84, Column, ItemsQuery, OutputCRS, View, find_crs
from api.cql2 import (  # noqa: F401 — parse_filter is this module's too
    FILTER_LANGS,
    MAX_DEPTH,
    MAX_TERMS,
    InvalidFilter,
    _instant,
    parse_filter,
)
from api.errors import InvalidParameter

#: The geometry's queryable name (``geom`` is accepted too: the stored column's name).
GEOMETRY = "geometry"
_GEOMETRY_NAMES = frozenset({GEOMETRY, "geom"})
_PG_TYPES = {"str": "text", "int": "bigint", "float": "double precision",
             "bool": "boolean", "date": "date", "datetime": "timestamptz"}


# ---------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Const:
    """A condition known without reading a row (``1 = 1``, ``INCLUDE``)."""

    value: bool


@dataclass(frozen=True)
class Compare:
    """``column op value``: op one of = <> < <= > >=."""

    column: Column
    op: str
    value: object


@dataclass(frozen=True)
class Like:
    """``column LIKE pattern``; ``parts`` is the pattern as (kind, text) runs, kind one of
    ``lit``, ``any`` (%) and ``one`` (_)."""

    column: Column
    parts: tuple[tuple[str, str], ...]
    nocase: bool
    negate: bool


@dataclass(frozen=True)
class In:
    column: Column
    values: tuple
    negate: bool


@dataclass(frozen=True)
class Between:
    column: Column
    low: object
    high: object
    negate: bool


@dataclass(frozen=True)
class IsNull:
    column: Column | None  # None: the geometry
    negate: bool


@dataclass(frozen=True)
class Spatial:
    """``S_<op>(geometry, literal)``; ``wkb`` is the literal in longitude/latitude."""

    op: str
    wkb: bytes


@dataclass(frozen=True)
class CompareColumns:
    """``left op right``, two columns of one type (ends of temporal intervals)."""

    left: Column
    op: str
    right: Column


@dataclass(frozen=True)
class Not:
    term: Expr


@dataclass(frozen=True)
class Both:
    terms: tuple[Expr, ...]


@dataclass(frozen=True)
class Either:
    terms: tuple[Expr, ...]


Expr = (Const | Compare | CompareColumns | Like | In | Between | IsNull | Spatial | Not | Both
        | Either)


@dataclass(frozen=True)
class SortKey:
    column: Column
    descending: bool


@dataclass(frozen=True)
class FilteredQuery(ItemsQuery):
    """An ``/items`` query with a checked CQL2 filter and a sort order."""

    where: Expr | None = None
    sortby: tuple[SortKey, ...] = ()


# ---------------------------------------------------------------------------- checking


def parse_filter_crs(value: str | None) -> OutputCRS:
    """The CRS of a filter's geometry literals (CRS84 unless ``filter-crs`` says)."""
    if value is None:
        return CRS84
    crs = find_crs(value)
    if crs is None:
        raise InvalidFilter(f"filter-crs {value!r} is not offered; use one of CRS84, "
                            "EPSG:4326, EPSG:4490, EPSG:3857")
    return crs


_FROM_3857 = pyproj.Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
_COMPARE = {ast.Equal: "=", ast.NotEqual: "<>", ast.LessThan: "<", ast.LessEqual: "<=",
            ast.GreaterThan: ">", ast.GreaterEqual: ">="}
_MIRROR = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SPATIAL = {ast.GeometryIntersects: "intersects", ast.GeometryDisjoint: "disjoint",
            ast.GeometryContains: "contains", ast.GeometryWithin: "within",
            ast.GeometryTouches: "touches", ast.GeometryCrosses: "crosses",
            ast.GeometryOverlaps: "overlaps", ast.GeometryEquals: "equals"}
_TEMPORAL = {ast.TimeAfter: "after", ast.TimeBefore: "before", ast.TimeBegins: "begins",
             ast.TimeBegunBy: "begunby", ast.TimeContains: "contains",
             ast.TimeDuring: "during", ast.TimeEndedBy: "endedby", ast.TimeEnds: "ends",
             ast.TimeEquals: "equals", ast.TimeMeets: "meets", ast.TimeMetBy: "metby",
             ast.TimeOverlappedBy: "overlappedby", ast.TimeOverlaps: "overlaps",
             ast.TimeDisjoint: "disjoint"}
#: CQL2's temporal functions as comparisons of the ends of two intervals a and b (an
#: instant is an interval whose ends are equal): (a end, comparison, b end), 0 the start,
#: 1 the end. T_DISJOINT is NOT T_INTERSECTS.
_ALLEN = {
    "after": [(0, ">", 1)], "before": [(1, "<", 0)],
    "begins": [(0, "=", 0), (1, "<", 1)], "begunby": [(0, "=", 0), (1, ">", 1)],
    "contains": [(0, "<", 0), (1, ">", 1)], "during": [(0, ">", 0), (1, "<", 1)],
    "endedby": [(0, "<", 0), (1, "=", 1)], "ends": [(0, ">", 0), (1, "=", 1)],
    "equals": [(0, "=", 0), (1, "=", 1)], "intersects": [(0, "<=", 1), (1, ">=", 0)],
    "meets": [(1, "=", 0)], "metby": [(0, "=", 1)],
    "overlappedby": [(0, ">", 0), (0, "<", 1), (1, ">", 1)],
    "overlaps": [(0, "<", 0), (1, ">", 0), (1, "<", 1)],
}
#: An open end ('..') as the earliest or latest value of the type (both stores hold it).
_OPEN = {"date": (dt.date.min, dt.date.max),
         "datetime": (dt.datetime.min.replace(tzinfo=dt.UTC),
                      dt.datetime.max.replace(tzinfo=dt.UTC))}
_TYPE_WORDS = {"str": "text", "int": "an integer", "float": "a number", "bool": "a boolean",
               "date": "a date", "datetime": "a timestamp"}


class _Checker:
    def __init__(self, view: View, collection: str, spatial: bool, crs: OutputCRS) -> None:
        self.columns = {c.name: c for c in view.columns}
        self.collection = collection
        self.spatial = spatial
        self.crs = crs
        self.terms = 0

    def unknown(self, name: str) -> InvalidFilter:
        # The same words for a hidden column as for one that does not exist.
        return InvalidFilter(f"filter: {name!r} is not a queryable of {self.collection} "
                             f"(see /collections/{self.collection}/queryables)")

    def column(self, node) -> Column:
        if isinstance(node, ast.Attribute):
            column = self.columns.get(node.name)
            if column is None:
                raise self.unknown(node.name)
            return column
        raise InvalidFilter(f"filter: expected a property, found {_show(node)}")

    def condition(self, node, depth: int = 0) -> Expr:
        if depth > MAX_DEPTH:
            raise InvalidFilter(f"filter: nested more than {MAX_DEPTH} levels deep")
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise InvalidFilter(f"filter: more than {MAX_TERMS} terms")
        if isinstance(node, ast.And | ast.Or):
            # A chain of one operator (`a AND b AND …`, nested left-deep by the parser) is
            # one flat term list: its length is limited by MAX_TERMS, not by MAX_DEPTH.
            same = type(node)
            operands, stack = [], [node]
            while stack:
                item = stack.pop()
                if type(item) is same:
                    stack.extend((item.rhs, item.lhs))
                else:
                    operands.append(item)
            kind = Both if same is ast.And else Either
            return kind(tuple(self.condition(o, depth + 1) for o in operands))
        if isinstance(node, ast.Not):
            return Not(self.condition(node.sub_node, depth + 1))
        if isinstance(node, ast.Include):
            return Const(not node.not_)
        if isinstance(node, bool):
            return Const(node)
        if type(node) in _COMPARE:
            return self.compare(node)
        if isinstance(node, ast.Like):
            return self.like(node)
        if isinstance(node, ast.In):
            column = self.column(node.lhs)
            if not isinstance(node.sub_nodes, list) or not node.sub_nodes:
                raise InvalidFilter(f"filter: IN on {column.name} needs a list of values")
            return In(column, tuple(self.value(v, column) for v in node.sub_nodes), node.not_)
        if isinstance(node, ast.Between):
            column = self.column(node.lhs)
            if column.type not in ("int", "float", "date", "datetime"):
                raise InvalidFilter(f"filter: BETWEEN needs a number, date or timestamp "
                                    f"property; {column.name} is {_TYPE_WORDS[column.type]}")
            return Between(column, self.value(node.low, column), self.value(node.high, column),
                           node.not_)
        if isinstance(node, ast.IsNull):
            if isinstance(node.lhs, ast.Attribute) and node.lhs.name in _GEOMETRY_NAMES \
                    and node.lhs.name not in self.columns:
                return IsNull(None, node.not_)
            return IsNull(self.column(node.lhs), node.not_)
        if type(node) in _SPATIAL:
            return self.spatial_predicate(node)
        if type(node) in _TEMPORAL:
            return self.temporal(node)
        if isinstance(node, ast.BBox):
            return self.spatial_predicate(ast.GeometryIntersects(node.lhs, ast.Function(
                "bbox", [node.minx, node.miny, node.maxx, node.maxy])))
        name = type(node).__name__
        raise InvalidFilter(f"filter: {name} is not supported here (supported: comparisons, "
                            "LIKE, IN, BETWEEN, IS NULL, AND/OR/NOT, S_INTERSECTS, S_WITHIN, "
                            "S_CONTAINS, S_DISJOINT, S_TOUCHES, S_CROSSES, S_OVERLAPS, "
                            "S_EQUALS, T_AFTER, T_BEFORE, T_DURING, T_INTERSECTS, T_EQUALS, "
                            "T_DISJOINT)")

    def compare(self, node) -> Expr:
        op = _COMPARE[type(node)]
        lhs, rhs = node.lhs, node.rhs
        if _is_literal(lhs) and _is_literal(rhs):
            return Const(_constant(op, lhs, rhs))
        if not isinstance(lhs, ast.Attribute | ast.Function) and isinstance(
                rhs, ast.Attribute | ast.Function):
            lhs, rhs, op = rhs, lhs, _MIRROR[op]
        nocase = False
        if isinstance(lhs, ast.Function) and lhs.name == "lower" and len(lhs.arguments) == 1:
            lhs, nocase = lhs.arguments[0], True
            if isinstance(rhs, ast.Function) and rhs.name == "lower" and len(rhs.arguments) == 1:
                rhs = rhs.arguments[0]
        column = self.column(lhs)
        if isinstance(rhs, ast.Attribute) and not nocase:
            # Two properties (basic CQL2): of one type, or both numbers.
            other = self.column(rhs)
            if column.type != other.type and not {column.type, other.type} <= {"int", "float"}:
                raise InvalidFilter(f"filter: {column.name} {op} {other.name}: {column.name} "
                                    f"is {_TYPE_WORDS[column.type]}, {other.name} "
                                    f"{_TYPE_WORDS[other.type]} (text literals take single "
                                    "quotes)")
            return CompareColumns(column, op, other)
        if isinstance(rhs, ast.Node):
            raise InvalidFilter(f"filter: {column.name} {op} {_show(rhs)}: compare a property "
                                f"with a literal value or another property")
        value = self.value(rhs, column)
        if nocase:
            if column.type != "str":
                raise InvalidFilter(f"filter: CASEI needs a text property; {column.name} is "
                                    f"{_TYPE_WORDS[column.type]}")
            if op != "=":
                raise InvalidFilter("filter: CASEI is supported with = and LIKE")
            return Like(column, tuple(("lit", ch) for ch in str(value)), True, False)
        return Compare(column, op, value)

    def like(self, node) -> Expr:
        lhs, pattern, nocase = node.lhs, node.pattern, node.nocase
        if isinstance(lhs, ast.Function) and lhs.name == "lower" and len(lhs.arguments) == 1:
            lhs, nocase = lhs.arguments[0], True
        if isinstance(pattern, ast.Function) and pattern.name == "lower" and len(
                pattern.arguments) == 1:
            pattern, nocase = pattern.arguments[0], True
        column = self.column(lhs)
        if column.type != "str":
            raise InvalidFilter(f"filter: LIKE needs a text property; {column.name} is "
                                f"{_TYPE_WORDS[column.type]}")
        if not isinstance(pattern, str):
            raise InvalidFilter(f"filter: LIKE on {column.name} needs a text pattern")
        _check_text(pattern)
        parts: list[tuple[str, str]] = []
        chars = iter(pattern)
        for ch in chars:
            if ch == "\\":
                nxt = next(chars, None)
                if nxt is None:
                    raise InvalidFilter(f"filter: LIKE pattern {pattern!r} ends with the "
                                        "escape character \\")
                parts.append(("lit", nxt))
            elif ch == "%":
                parts.append(("any", ""))
            elif ch == "_":
                parts.append(("one", ""))
            else:
                parts.append(("lit", ch))
        return Like(column, tuple(parts), nocase, node.not_)

    def value(self, value, column: Column):
        """A literal as the column's type (400 if it is not one)."""
        want = column.type
        bad = InvalidFilter(f"filter: {column.name} is {_TYPE_WORDS[want]}; "
                            f"{_show(value)} is not")
        if isinstance(value, ast.Node | values.Geometry | values.Envelope | list):
            raise bad
        if want == "str":
            if not isinstance(value, str):
                raise bad
            _check_text(value)
            return value
        if want == "bool":
            if not isinstance(value, bool):
                raise bad
            return value
        if want in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad
            if isinstance(value, float) and not math.isfinite(value):
                raise bad
            if want == "int" and isinstance(value, int) and not -(2**63) <= value < 2**63:
                raise InvalidFilter(f"filter: {value} is out of range for {column.name}")
            return value
        if want in ("date", "datetime"):
            instant = _instant(value, want)
            if instant is None:
                raise bad
            return instant
        raise bad  # pragma: no cover

    def spatial_predicate(self, node) -> Expr:
        op = _SPATIAL[type(node)]
        lhs, rhs = node.lhs, node.rhs
        if _is_geometry_ref(rhs) and not _is_geometry_ref(lhs):
            lhs, rhs = rhs, lhs
            op = {"within": "contains", "contains": "within"}.get(op, op)
        if not _is_geometry_ref(lhs):
            raise InvalidFilter(f"filter: S_{op.upper()} compares the property 'geometry' "
                                "with a geometry literal")
        if not self.spatial:
            raise InvalidFilter(f"filter: {self.collection} has no geometry")
        return Spatial(op, shapely.to_wkb(self.geometry(rhs)))

    def geometry(self, literal) -> shapely.Geometry:
        try:
            if isinstance(literal, ast.Function) and literal.name.lower() == "bbox":
                numbers = [float(v) for v in literal.arguments]
                if len(numbers) == 6:
                    numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
                if len(numbers) != 4:
                    raise ValueError("BBOX needs 4 or 6 numbers")
                geom = shapely.box(*numbers)
            elif isinstance(literal, values.Envelope):
                geom = shapely.box(min(literal.x1, literal.x2), min(literal.y1, literal.y2),
                                   max(literal.x1, literal.x2), max(literal.y1, literal.y2))
            elif isinstance(literal, values.Geometry):
                geom = shapely.geometry.shape(literal.geometry)
            else:
                raise ValueError(f"{_show(literal)} is not a geometry")
        except InvalidFilter:
            raise
        except Exception as exc:
            raise InvalidFilter(f"filter: bad geometry literal: {exc}") from None
        coords = shapely.get_coordinates(geom)
        if geom.is_empty or not np.isfinite(coords).all():
            raise InvalidFilter("filter: the geometry literal is empty or not finite")
        if self.crs.flip:
            geom = shapely.transform(geom, lambda xy: xy[:, ::-1])
        elif self.crs.srid == 3857:
            geom = shapely.transform(geom, lambda xy: np.column_stack(
                _FROM_3857.transform(xy[:, 0], xy[:, 1])))
        coords = shapely.get_coordinates(geom)
        if not np.isfinite(coords).all() or (np.abs(coords[:, 0]) > 180).any() or (
                np.abs(coords[:, 1]) > 90).any():
            raise InvalidFilter(f"filter: the geometry literal lies outside longitude "
                                f"[-180, 180] / latitude [-90, 90] in filter-crs "
                                f"{self.crs.label}")
        if not geom.is_valid:
            raise InvalidFilter(f"filter: the geometry literal is invalid "
                                f"({shapely.is_valid_reason(geom)})")
        return geom

    def temporal(self, node) -> Expr:
        op = _TEMPORAL[type(node)]
        name = f"T_{op.upper()}"
        a, b = self.interval(node.lhs, name), self.interval(node.rhs, name)
        columns = [e for e in (*a, *b) if isinstance(e, Column)]
        if not columns:
            raise InvalidFilter(f"filter: {name} compares a date or timestamp property "
                                "(or an INTERVAL of them) with a DATE, TIMESTAMP or INTERVAL")
        for column in columns:
            if column.type not in ("date", "datetime"):
                raise InvalidFilter(f"filter: {name} needs date or timestamp properties; "
                                    f"{column.name} is {_TYPE_WORDS[column.type]}")
        if len({c.type for c in columns}) > 1:
            raise InvalidFilter(f"filter: {name} compares properties of one type (dates "
                                "with dates, timestamps with timestamps)")
        kind = columns[0]

        def typed(end, index: int):
            if isinstance(end, Column):
                return end
            if end is None:
                return _OPEN[kind.type][index]
            return self.value(end, kind)

        a = (typed(a[0], 0), typed(a[1], 1))
        b = (typed(b[0], 0), typed(b[1], 1))
        for lo, hi in (a, b):
            if not isinstance(lo, Column) and not isinstance(hi, Column) and lo > hi:
                raise InvalidFilter("filter: the interval ends before it starts")
        terms = tuple(self.ends(a[i], cmp, b[j])
                      for i, cmp, j in _ALLEN["intersects" if op == "disjoint" else op])
        expr = terms[0] if len(terms) == 1 else Both(terms)
        return Not(expr) if op == "disjoint" else expr

    def interval(self, node, name: str) -> tuple:
        """One side of a temporal function as (start, end): a column, a literal, or None
        for an open end."""
        if isinstance(node, ast.Attribute):
            column = self.column(node)
            return column, column
        if isinstance(node, values.Interval):
            ends = []
            for end in (node.start, node.end):
                if isinstance(end, ast.Attribute):
                    ends.append(self.column(end))
                elif end is None or isinstance(end, dt.date):
                    ends.append(end)
                else:
                    raise InvalidFilter(f"filter: {name}: an INTERVAL holds dates, "
                                        f"timestamps, properties or '..', not {_show(end)}")
            return tuple(ends)
        if isinstance(node, dt.date):
            return node, node
        raise InvalidFilter(f"filter: {name} takes properties, DATE, TIMESTAMP or INTERVAL "
                            f"values, not {_show(node)}")

    @staticmethod
    def ends(x, cmp: str, y) -> Expr:
        if isinstance(x, Column) and isinstance(y, Column):
            return CompareColumns(x, cmp, y)
        if isinstance(x, Column):
            return Compare(x, cmp, y)
        if isinstance(y, Column):
            return Compare(y, _MIRROR[cmp], x)
        return Const(_constant(cmp, x, y))


def _is_literal(value) -> bool:
    return isinstance(value, str | int | float | bool | dt.date)


def _constant(op: str, a, b) -> bool:
    try:
        return {"=": a == b, "<>": a != b, "<": a < b, "<=": a <= b, ">": a > b,
                ">=": a >= b}[op]
    except TypeError:
        raise InvalidFilter(f"filter: cannot compare {_show(a)} with {_show(b)}") from None


def _is_geometry_ref(node) -> bool:
    return isinstance(node, ast.Attribute) and node.name in _GEOMETRY_NAMES


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise InvalidFilter("filter: NUL characters are not allowed")


def _show(value) -> str:
    if isinstance(value, ast.Attribute):
        return f"property {value.name!r}"
    if isinstance(value, ast.Node):
        return type(value).__name__
    if isinstance(value, values.Geometry | values.Envelope):
        return "a geometry"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP('{value.isoformat()}')"
    if isinstance(value, dt.date):
        return f"DATE('{value.isoformat()}')"
    return repr(value)


def datetime_condition(text: str, prop: str | None) -> ast.Node | None:
    """OGC API – Features Part 1's ``datetime`` as a CQL2 condition on the collection's
    temporal property ``prop`` (``LayerSchema.temporal``): ``T_INTERSECTS(prop, …)`` with
    an instant or an interval ``start/end`` whose ends are RFC 3339 dates or timestamps,
    ``..`` or empty for an open end. A day alone (``2026-06-02``) is the whole UTC day,
    as a DATE is in filters. None when the collection has no temporal property: it is
    not placed in time, and every feature is selected. Raises ``InvalidParameter``
    naming the parameter for a value that is not a date, a timestamp or an interval."""
    raw = text.strip()
    parts = raw.split("/")
    if not raw or len(parts) > 2:
        raise InvalidParameter(f"datetime {text[:80]!r}: an RFC 3339 date or timestamp, or "
                               "an interval start/end with '..' for an open end")

    def end(part: str, index: int):
        part = part.strip()
        if part in ("", ".."):
            if len(parts) == 1:
                raise InvalidParameter(f"datetime {text[:80]!r}: an instant cannot be open")
            return None
        value = _instant(part, "datetime" if "T" in part.upper() else "date")
        if value is None:
            raise InvalidParameter(f"datetime {text[:80]!r}: {part[:40]!r} is not an RFC 3339 "
                                   "date (2026-06-02) or timestamp (2026-06-02T08:00:00Z)")
        if not isinstance(value, dt.datetime):  # a day: from its start to its end
            value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
            if index == 1:
                value += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
        return value

    start = end(parts[0], 0)
    stop = end(parts[-1], 1)
    if start is not None and stop is not None and start > stop:
        raise InvalidParameter(f"datetime {text[:80]!r}: the interval ends before it starts")
    if prop is None:
        return None
    return ast.Not(ast.TimeDisjoint(ast.Attribute(prop), values.Interval(start, stop)))


def compile_filter(node: ast.Node, view: View, collection: str, spatial: bool,
                   crs: OutputCRS = CRS84) -> Expr:
    """The filter checked against the caller's view of a collection (400 if it names a
    property the caller may not read, or a value of the wrong type)."""
    try:
        return _Checker(view, collection, spatial, crs).condition(node)
    except RecursionError:
        raise InvalidFilter("filter: nested too deeply") from None


def parse_sortby(text: str | None, view: View, collection: str) -> tuple[SortKey, ...]:
    """``sortby=+name,-reported_at`` (``+`` or no sign: ascending), checked against the
    columns the caller may read."""
    if text is None:
        return ()
    columns = {c.name: c for c in view.columns}
    keys: list[SortKey] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise InvalidFilter(f"sortby {text!r}: an empty item")
        descending = item.startswith("-")
        name = item.lstrip("+-").strip()
        if " " in name:  # "name A" / "name D", an older draft's form
            name, _, direction = name.partition(" ")
            if direction.strip().upper() not in ("A", "ASC", "D", "DESC"):
                raise InvalidFilter(f"sortby {text!r}: {raw!r} is not +name or -name")
            descending = direction.strip().upper() in ("D", "DESC")
        column = columns.get(name)
        if column is None:
            raise InvalidFilter(f"sortby: {name!r} is not a queryable of {collection} "
                                f"(see /collections/{collection}/queryables)")
        if any(k.column.name == name for k in keys):
            raise InvalidFilter(f"sortby {text!r}: {name!r} appears twice")
        keys.append(SortKey(column, descending))
    return tuple(keys)


# ---------------------------------------------------------------------------- PostGIS


def _pg_type(column: Column, *values) -> str:
    """The parameter's SQL type: the column's, but a fraction compared with an integer
    column stays a fraction (``households > 25.5``; a bigint cast would round it)."""
    if column.type == "int" and any(isinstance(v, float) for v in values):
        return "double precision"
    return _PG_TYPES[column.type]


def _param(column: Column, *values) -> sql.Composable:
    return sql.SQL("%s::{}").format(sql.SQL(_pg_type(column, *values)))


def _like_pattern(parts) -> str:
    out = []
    for kind, text in parts:
        if kind == "any":
            out.append("%")
        elif kind == "one":
            out.append("_")
        else:
            out.append("\\" + text if text in "%_\\" else text)
    return "".join(out)


_PG_SPATIAL = {"intersects": "ST_Intersects", "disjoint": "ST_Disjoint",
               "contains": "ST_Contains", "within": "ST_Within", "touches": "ST_Touches",
               "crosses": "ST_Crosses", "overlaps": "ST_Overlaps", "equals": "ST_Equals"}


def to_sql(expr: Expr, params: list, alias: str | None = None) -> sql.Composable:
    """The condition as PostgreSQL; values are appended to ``params`` (bound, never
    written into the statement)."""
    def ident(name: str) -> sql.Identifier:
        return sql.Identifier(alias, name) if alias else sql.Identifier(name)

    def walk(e: Expr) -> sql.Composable:
        if isinstance(e, Const):
            return sql.SQL("true" if e.value else "false")
        if isinstance(e, Both | Either):
            joiner = sql.SQL(" AND " if isinstance(e, Both) else " OR ")
            return sql.SQL("({})").format(joiner.join(walk(t) for t in e.terms))
        if isinstance(e, Not):
            return sql.SQL("(NOT {})").format(walk(e.term))
        if isinstance(e, Compare):
            params.append(e.value)
            target: sql.Composable = ident(e.column.name)
            if e.column.type == "str" and e.op not in ("=", "<>"):
                # Text order by code point, as Python orders it on GeoPackage; the
                # database's locale collation could order it otherwise.
                target = sql.SQL('{} COLLATE "C"').format(target)
            return sql.SQL("({} {} {})").format(target, sql.SQL(e.op),
                                                _param(e.column, e.value))
        if isinstance(e, Like):
            params.append(_like_pattern(e.parts))
            return sql.SQL("({} {}{} %s)").format(
                ident(e.column.name), sql.SQL("NOT " if e.negate else ""),
                sql.SQL("ILIKE" if e.nocase else "LIKE"))
        if isinstance(e, In):
            fractions = _pg_type(e.column, *e.values) == "double precision"
            params.append([float(v) for v in e.values] if fractions else list(e.values))
            return sql.SQL("({}{} = ANY(%s::{}[]))").format(
                sql.SQL("NOT " if e.negate else ""), ident(e.column.name),
                sql.SQL(_pg_type(e.column, *e.values)))
        if isinstance(e, Between):
            params.extend([e.low, e.high])
            return sql.SQL("({} {}BETWEEN {} AND {})").format(
                ident(e.column.name), sql.SQL("NOT " if e.negate else ""),
                _param(e.column, e.low), _param(e.column, e.high))
        if isinstance(e, IsNull):
            target = ident("geom") if e.column is None else ident(e.column.name)
            return sql.SQL("({} IS {}NULL)").format(target, sql.SQL("NOT " if e.negate else ""))
        if isinstance(e, Spatial):
            params.append(e.wkb)
            return sql.SQL("{}({}, ST_GeomFromWKB(%s, 4326))").format(
                sql.SQL(_PG_SPATIAL[e.op]), ident("geom"))
        if isinstance(e, CompareColumns):
            left: sql.Composable = ident(e.left.name)
            if e.left.type == "str" and e.op not in ("=", "<>"):
                left = sql.SQL('{} COLLATE "C"').format(left)  # as Compare
            return sql.SQL("({} {} {})").format(left, sql.SQL(e.op), ident(e.right.name))
        raise TypeError(e)  # pragma: no cover

    return walk(expr)


def order_sql(keys: tuple[SortKey, ...], alias: str | None = None) -> sql.Composable:
    """``ORDER BY`` terms of ``sortby`` then ``fid``; text sorts by code point (``COLLATE
    "C"``) and NULLs come last either way, as the GeoPackage provider sorts."""
    parts = []
    for k in keys:
        col: sql.Composable = sql.Identifier(alias, k.column.name) if alias else \
            sql.Identifier(k.column.name)
        if k.column.type == "str":
            col = sql.SQL('{} COLLATE "C"').format(col)
        parts.append(sql.SQL("{} {} NULLS LAST").format(
            col, sql.SQL("DESC" if k.descending else "ASC")))
    parts.append(sql.Identifier(alias, "fid") if alias else sql.Identifier("fid"))
    return sql.SQL(", ").join(parts)


# ---------------------------------------------------------------------------- GeoPackage


def _series(frame: pd.DataFrame, column: Column) -> pd.Series:
    s = frame[column.name]
    if column.type in ("date", "datetime"):
        s = pd.to_datetime(s, utc=True, errors="coerce")
        if column.type == "date":
            s = s.dt.tz_localize(None).dt.normalize()
    return s


def _scalar(value, column: Column):
    if column.type in ("date", "datetime"):
        try:
            stamp = pd.Timestamp(value)
        except (OverflowError, ValueError):  # beyond pandas' years 1677–2262: an open end
            stamp = pd.Timestamp.min if value.year < 2000 else pd.Timestamp.max
            stamp = stamp.tz_localize("UTC") if column.type == "datetime" else stamp
        if column.type == "date":
            return stamp.tz_localize(None) if stamp.tzinfo else stamp
        return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")
    return value


def _known(result, missing: np.ndarray) -> pd.arrays.BooleanArray:
    """A boolean result with NULL (unknown) where the row's value is missing."""
    out = pd.array(np.asarray(result, dtype=bool), dtype="boolean")
    out[missing] = pd.NA
    return out


def to_mask(expr: Expr, frame: pd.DataFrame) -> np.ndarray:
    """Which rows of ``frame`` satisfy the condition (SQL's three-valued logic: a NULL
    compared is unknown, and unknown rows are left out, as in PostgreSQL)."""
    n = len(frame)

    def walk(e: Expr) -> pd.arrays.BooleanArray:
        if isinstance(e, Const):
            return pd.array(np.full(n, e.value), dtype="boolean")
        if isinstance(e, Both | Either):
            acc = walk(e.terms[0])
            for t in e.terms[1:]:
                acc = (acc & walk(t)) if isinstance(e, Both) else (acc | walk(t))
            return acc
        if isinstance(e, Not):
            return ~walk(e.term)
        if isinstance(e, IsNull):
            if e.column is None:
                nulls = shapely.is_missing(np.asarray(frame.geometry.array, dtype=object)) \
                    | shapely.is_empty(np.asarray(frame.geometry.array, dtype=object))
            else:
                nulls = frame[e.column.name].isna().to_numpy()
            return pd.array(~nulls if e.negate else nulls, dtype="boolean")
        if isinstance(e, CompareColumns):
            left, right = _series(frame, e.left), _series(frame, e.right)
            missing = (left.isna() | right.isna()).to_numpy()
            ops = {"=": left.__eq__, "<>": left.__ne__, "<": left.__lt__, "<=": left.__le__,
                   ">": left.__gt__, ">=": left.__ge__}
            hits = np.zeros(n, dtype=bool)
            hits[~missing] = np.asarray(ops[e.op](right)[~missing], dtype=bool)
            return _known(hits, missing)
        if isinstance(e, Spatial):
            geoms = np.asarray(frame.geometry.array, dtype=object)
            other = shapely.from_wkb(e.wkb)
            shapely.prepare(other)
            # predicate(feature, literal); the literal is prepared, so the reversed form.
            if e.op == "within":
                hits = shapely.contains(other, geoms)
            elif e.op == "contains":
                hits = shapely.within(other, geoms)
            else:
                hits = getattr(shapely, e.op)(other, geoms)
            return _known(hits, shapely.is_missing(geoms))
        full = _series(frame, e.column)
        missing = full.isna().to_numpy()
        # Each test runs on the rows with a value (None < 'a' is a TypeError in Python);
        # the others stay unknown.
        s = full[~missing]

        def known(hits) -> pd.arrays.BooleanArray:
            out = np.zeros(n, dtype=bool)
            out[~missing] = np.asarray(hits, dtype=bool)
            return _known(out, missing)

        if isinstance(e, Compare):
            v = _scalar(e.value, e.column)
            ops = {"=": s.__eq__, "<>": s.__ne__, "<": s.__lt__, "<=": s.__le__,
                   ">": s.__gt__, ">=": s.__ge__}
            return known(ops[e.op](v))
        if isinstance(e, Like):
            regex = "".join(".*" if k == "any" else "." if k == "one" else re.escape(t)
                            for k, t in e.parts)
            flags = re.IGNORECASE | re.DOTALL if e.nocase else re.DOTALL
            hits = s.astype(str).str.fullmatch(regex, flags=flags).to_numpy(dtype=bool)
            return known(~hits if e.negate else hits)
        if isinstance(e, In):
            hits = s.isin([_scalar(v, e.column) for v in e.values]).to_numpy(dtype=bool)
            return known(~hits if e.negate else hits)
        if isinstance(e, Between):
            lo, hi = _scalar(e.low, e.column), _scalar(e.high, e.column)
            hits = ((s >= lo) & (s <= hi)).to_numpy(dtype=bool)
            return known(~hits if e.negate else hits)
        raise TypeError(e)  # pragma: no cover

    return walk(expr).fillna(False).to_numpy(dtype=bool)


def sort_frame(frame: pd.DataFrame, keys: tuple[SortKey, ...]) -> pd.DataFrame:
    """The rows in ``sortby`` order, then by ``fid`` (NULLs last; text by code point, as
    ``order_sql``)."""
    if not keys:
        return frame
    work = pd.DataFrame({f"k{i}": _series(frame, k.column) for i, k in enumerate(keys)},
                        index=frame.index)
    work["fid"] = frame["fid"]
    order = work.sort_values([*(f"k{i}" for i in range(len(keys))), "fid"],
                             ascending=[*(not k.descending for k in keys), True],
                             na_position="last", kind="mergesort").index
    return frame.loc[order]
