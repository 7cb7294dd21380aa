"""Reading CQL2 (OGC API – Features Part 3) into pygeofilter's AST: the text encoding by
pygeofilter's own grammar with the rules it lacks from the published standard added
(``_text_grammar``), the JSON encoding by its parser with a few shapes normalised
(``_normalise_json``); limits on size and depth; syntax errors named by position.
``api.filtering`` checks the tree against the caller's view and has each store run it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from functools import lru_cache

import shapely
from lark import Lark, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken
from pygeofilter import ast, values
from pygeofilter.cql2 import TEMPORAL_PREDICATES_MAP
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json
from pygeofilter.parsers.cql2_text import parser as cql2_text_module

from api.errors import InvalidParameter

#: ``filter-lang`` values: the two CQL2 encodings, and the draft name GDAL 3.6 sends.
FILTER_LANGS = ("cql2-text", "cql2-json")
LEGACY_LANGS = {"cql-text": "cql2-text", "cql-json": "cql2-json"}
#: Limits that keep a filter's statement small (PostgreSQL's stack, the parser's time).
MAX_FILTER_CHARS = 20_000
MAX_DEPTH = 40
MAX_TERMS = 500

class InvalidFilter(InvalidParameter):
    """A ``filter``, ``filter-lang``, ``filter-crs`` or ``sortby`` the service cannot run."""

    code = "InvalidFilter"




def _text_grammar() -> str:
    """pygeofilter's CQL2-text grammar with the standard's rules it lacks (module doc)."""
    path = os.path.join(os.path.dirname(cql2_text_module.__file__), "grammar.lark")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    edits = [
        # AND binds tighter than OR (pygeofilter reads `a OR b AND c` as `(a OR b) AND c`)
        ('?condition: condition_1\n'
         '          | condition "AND"i condition_1                                 -> and_\n'
         '          | condition "OR"i condition_1                                   -> or_',
         '?condition: conjunction\n'
         '          | condition "OR"i conjunction -> or_\n'
         '?conjunction: condition_1\n'
         '          | conjunction "AND"i condition_1 -> and_'),
        ('| "NOT"i "(" predicate ")"', '| "NOT"i "(" condition ")"'),
        ('?temporal_predicate: expression _binary_temporal_predicate_func expression'
         ' -> binary_temporal_predicate',
         '?temporal_predicate: _binary_temporal_predicate_func "(" expression "," expression'
         ' ")" -> temporal_call'),
        ('?interval: "INTERVAL" "("  "\'" DATETIME "\'" "," "\'" DATETIME "\'" ")"',
         '?interval: "INTERVAL"i "(" _bound "," _bound ")"\n'
         '_bound: "\'" DATETIME "\'" | "\'" DATE "\'" | OPEN_END | attribute\n'
         'OPEN_END: "\'..\'"'),
        ('SINGLE_QUOTED: "\'" /.*?/ "\'"', "SINGLE_QUOTED: /'(?:[^']|'')*'/"),
        ('!_binary_temporal_predicate_func: "T_BEFORE"i',
         '!_binary_temporal_predicate_func: "T_BEFORE"i | "T_DISJOINT"i'),
        # TRUE and FALSE are conditions of their own (CQL2's booleanLiteral): a terminal
        # of their own where a condition may begin, which the contextual lexer prefers
        # there (after an operator they are values, as before); defined below
        ('| "INCLUDE"i                                                       -> include',
         '| "INCLUDE"i                                                       -> include\n'
         '          | BOOLEAN_CONDITION -> boolean_condition'),
        # a name that begins with true/false (trueish) is a name, not TRUE then "ish"
        ('BOOLEAN.2: ( "TRUE"i | "FALSE"i)', 'BOOLEAN.2: /(?i:true|false)(?![A-Za-z0-9_])/'),
        ('?timestamp: "TIMESTAMP"', '?timestamp: "TIMESTAMP"i'),
        ('?date: "DATE"', '?date: "DATE"i'),
        ('%import .wkt.ewkt_geometry', '%import wkt.ewkt_geometry'),
    ]
    for old, new in edits:
        if text.count(old) != 1:  # pragma: no cover — a pygeofilter release changed it
            raise RuntimeError(f"pygeofilter's CQL2 grammar changed; cannot patch {old!r}")
        text = text.replace(old, new)
    return text + '\nBOOLEAN_CONDITION.3: /(?i:true|false)(?![A-Za-z0-9_])/\n'


def _temporal_node(op: str, lhs, rhs) -> ast.Node:
    # pygeofilter maps T_INTERSECTS to its T_OVERLAPS node; the standard defines it as
    # NOT T_DISJOINT, which is how it is kept here, so T_OVERLAPS keeps its own meaning.
    # pygeofilter's grammar and map lack T_DISJOINT.
    if op == "t_intersects":
        return ast.Not(ast.TimeDisjoint(lhs, rhs))
    if op == "t_disjoint":
        return ast.TimeDisjoint(lhs, rhs)
    return TEMPORAL_PREDICATES_MAP[op](lhs, rhs)


@v_args(meta=False, inline=True)
class _Transformer(cql2_text_module.CQLTransformer):
    def temporal_call(self, op, lhs, rhs):
        return _temporal_node(str(op).lower(), lhs, rhs)

    def boolean_condition(self, token):  # TRUE: every row (INCLUDE); FALSE: none (EXCLUDE)
        return ast.Include(str(token).lower() != "true")

    def OPEN_END(self, _token):  # noqa: N802 — lark names callbacks after terminals
        return None

    def SINGLE_QUOTED(self, token):  # noqa: N802
        return token[1:-1].replace("''", "'")


@lru_cache(maxsize=1)
def _text_parser() -> Lark:
    return Lark(_text_grammar(), parser="lalr", maybe_placeholders=False,
                transformer=_Transformer(),
                import_paths=[os.path.dirname(os.path.dirname(cql2_text_module.__file__))])


def _syntax_message(full: str, exc: LarkError) -> str:
    # The filter is echoed, up to 200 characters of it.
    text = full if len(full) <= 200 else full[:200] + "…"
    if isinstance(exc, UnexpectedEOF | UnexpectedToken) and getattr(
            exc, "token", None) is not None and exc.token.type == "$END":
        return f"filter {text!r}: the filter ends too early"
    if isinstance(exc, UnexpectedCharacters | UnexpectedToken):
        column = getattr(exc, "column", None)
        pos = getattr(exc, "pos_in_stream", None)
        if pos is None:
            pos = (column or 1) - 1
        near = full[max(0, pos):pos + 20]
        return (f"filter {text!r}: syntax error at character {pos + 1}"
                f" (near {near!r})")
    if isinstance(exc, UnexpectedEOF):
        return f"filter {text!r}: the filter ends too early"
    cause = getattr(exc, "orig_exc", None) or exc
    return f"filter {text!r}: {cause}"


def _normalise_json(node):
    """CQL2-JSON as published, in the shape pygeofilter's JSON parser reads: ``between``
    with three arguments (pygeofilter expects the bounds as one list), ``not`` and
    ``isNull`` with their argument list, ``casei`` objects."""
    if isinstance(node, list):
        return [_normalise_json(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "bbox" in node and isinstance(node["bbox"], list) and len(node) == 1:
        # pygeofilter reads a bbox's numbers in the wrong order; as a polygon instead.
        numbers = node["bbox"]
        if len(numbers) == 6:
            numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
        if len(numbers) != 4 or not all(isinstance(v, int | float) for v in numbers):
            raise InvalidFilter("filter (cql2-json): a bbox is 4 or 6 numbers")
        return shapely.geometry.mapping(shapely.box(*numbers))
    if isinstance(node.get("interval"), list) and len(node) == 1 and any(
            isinstance(v, dict) for v in node["interval"]):
        # An interval with a property end, which pygeofilter's JSON parser cannot read.
        ends = node["interval"]
        if len(ends) != 2:
            raise InvalidFilter("filter (cql2-json): an interval has two ends")
        parsed = []
        for end in ends:
            if isinstance(end, dict) and isinstance(end.get("property"), str):
                parsed.append(ast.Attribute(end["property"]))
            elif end == "..":
                parsed.append(None)
            elif isinstance(end, str):
                parsed.append(_instant(end, "datetime" if "T" in end else "date"))
            else:
                raise InvalidFilter(f"filter (cql2-json): {end!r} cannot end an interval")
        return values.Interval(*parsed)
    if "op" in node and isinstance(node.get("args"), list):
        args = [_normalise_json(a) for a in node["args"]]
        op = node["op"]
        if isinstance(op, str) and op.lower() in ("t_intersects", "t_disjoint"):
            # pygeofilter's JSON parser has no t_disjoint and reads t_intersects as
            # T_OVERLAPS; both are built here (as _temporal_node), their arguments by it.
            if len(args) != 2:
                raise InvalidFilter(f"filter (cql2-json): {op} takes two arguments")
            node = ast.TimeDisjoint(*(parse_cql2_json(a) for a in args))
            return node if op.lower() == "t_disjoint" else ast.Not(node)
        if op == "between" and len(args) == 3:
            args = [args[0], [args[1], args[2]]]
        return {**node, "args": args}
    return {k: _normalise_json(v) for k, v in node.items()}


def parse_filter(text: str, lang: str | None) -> ast.Node:
    """The pygeofilter AST of ``filter`` in ``filter-lang`` (400 on any problem)."""
    lang = (lang or "cql2-text").strip().lower()
    lang = LEGACY_LANGS.get(lang, lang)
    if lang not in FILTER_LANGS:
        raise InvalidFilter(f"filter-lang {lang!r} is not offered; use cql2-text or cql2-json")
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidFilter(f"filter: longer than {MAX_FILTER_CHARS} characters")
    if "\x00" in text:
        raise InvalidFilter("filter: NUL characters are not allowed")
    if not text.strip():
        raise InvalidFilter("filter: empty")
    try:
        if lang == "cql2-json":
            try:
                doc = json.loads(text)
            except ValueError as exc:
                raise InvalidFilter(f"filter is not JSON (cql2-json): {exc}") from None
            if isinstance(doc, bool):  # a booleanLiteral is a whole filter too
                return ast.Include(not doc)
            if not isinstance(doc, dict):
                raise InvalidFilter("filter (cql2-json): expected a JSON object such as "
                                    '{"op": "=", "args": [{"property": "tier"}, "助农点"]}')
            return parse_cql2_json(_normalise_json(doc))
        return _text_parser().parse(text)
    except InvalidFilter:
        raise
    except LarkError as exc:
        raise InvalidFilter(_syntax_message(text, exc)) from None
    except RecursionError:
        raise InvalidFilter("filter: nested too deeply") from None
    except Exception as exc:  # pygeofilter raises plain KeyError/TypeError/ValueError
        detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InvalidFilter(f"filter ({lang}): cannot read it ({detail})") from None


def _instant(value, want: str):
    """A date or timestamp literal as the column's type: a date for ``date`` columns, an
    aware UTC datetime for ``datetime`` ones (None: not a date or time)."""
    if isinstance(value, str):
        try:
            value = (dt.date.fromisoformat(value) if len(value) == 10 else
                     dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        stamp = stamp.astimezone(dt.UTC)
        return stamp.date() if want == "date" else stamp
    if isinstance(value, dt.date):
        return value if want == "date" else dt.datetime(value.year, value.month, value.day,
                                                        tzinfo=dt.UTC)
    return None
