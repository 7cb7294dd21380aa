"""Input checking: every layer that enters the system is checked against its schema.

``check_layer`` converts each field to its schema type and collects every problem at
once — missing fields, values that are not numbers or dates, values outside their
enumeration, code formats, ranges, duplicate keys, missing or wrong geometry, invalid
polygons — each named by the row or feature a user can find. Nothing is stored unless the
report is empty (see ``layers.transfer``). Columns may be named by the schema's Chinese
titles (``field_columns``); a missing column is named with its title and the closest
header present. Every problem carries a kind (``Problem.kind``) for the summary by field
and kind.

``store_problems`` checks a layer against the store as it is: ``place_problems`` refuses
points and shapes farther than ``max_outside`` outside the territory (``find_territory``)
and names the likely cause; ``ledger_problems`` refuses ledger rows that are not on a
finest grid of their institution's grid layer. The import (``layers.transfer``) runs both,
so ``gisgrid import`` and ``POST /imports/{layer}`` refuse the same rows.

All checks are column-wise (pandas / shapely / pyproj vectorised); Python only formats
the messages of rows already found bad.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gis_grid.errors import Problem, StoreError
from gis_grid.geometry import MULTIPOLYGON, polygonal, type_names
from gis_grid.model import STORAGE_CRS, Field, LayerSchema, field_titles_zh, schema_for
from gis_grid.naming import layer_kind

_TRUE = {"true", "1", "yes", "y", "t", "是", "真"}
_FALSE = {"false", "0", "no", "n", "f", "否", "假"}


def _labels(frame: pd.DataFrame, schema: LayerSchema | None, labels: Sequence[str] | None):
    if labels is not None:
        return list(labels)
    key = schema.key if schema is not None else None
    if key and key in frame.columns:
        return [f"feature {i + 1} ({key}={v})" for i, v in enumerate(frame[key].astype(str))]
    return [f"feature {i + 1}" for i in range(len(frame))]


def field_columns(columns: Sequence, layer: str) -> dict[str, str]:
    """Input column → field name for the columns of a file that name a field of
    ``layer``'s schema other than by its exact name: by its Chinese title (主体编号,
    名称, 网点层级 …, see ``gisgrid schema``) or its name in other capitals (``ID``). A
    field already present under its own name keeps it; every field is taken once."""
    schema = schema_for(layer)
    if schema is None:
        return {}
    names = set(schema.field_names)
    by_title = {title: name for name, title in field_titles_zh(layer).items()}
    by_lower = {name.lower(): name for name in names}
    taken = {c for c in columns if c in names}
    renamed: dict[str, str] = {}
    for column in columns:  # the header: a handful of names
        if column in names:
            continue
        text = str(column).strip()
        name = by_title.get(text) or by_lower.get(text.lower())
        if name is not None and name not in taken:
            renamed[column] = name
            taken.add(name)
    return renamed


def _closest(name: str, title: str, unused: list[str]) -> str:
    """`` (closest header: 'tire')`` when a header not taken by any field looks like the
    missing field's name or title; "" when none does."""
    near = (difflib.get_close_matches(name, unused, n=1, cutoff=0.6)
            or difflib.get_close_matches(title, unused, n=1, cutoff=0.5))
    return f" (closest header: {near[0]!r})" if near else ""


def _is_blank(values: pd.Series) -> np.ndarray:
    as_text = values.astype("string")
    return (values.isna() | as_text.str.strip().eq("")).to_numpy(dtype=bool, na_value=True)


def _convert(field: Field, values: pd.Series, blank: np.ndarray):
    """Convert one column to the field's type. Returns (converted, bad-mask, message)."""
    if field.dtype == "str":
        text = values.astype("string").str.strip()
        # Codes read from spreadsheets or Shapefiles may come back as floats ("4205.0");
        # numbers that are whole are written without the ".0".
        if pd.api.types.is_float_dtype(values):
            whole = values.notna() & (values % 1 == 0)
            text = text.where(~whole, values.astype("Int64").astype("string"))
        return text.where(~blank, pd.NA), np.zeros(len(values), bool), ""
    if field.dtype in ("int", "float"):
        numbers = pd.to_numeric(values, errors="coerce")
        bad = ~blank & numbers.isna().to_numpy()
        if field.dtype == "int":
            frac = (numbers % 1 != 0).to_numpy(dtype=bool, na_value=False)
            bad |= frac
            out = numbers.where(~pd.Series(bad, index=values.index)).round().astype("Int64")
            return out, bad, "is not a whole number"
        return numbers.astype("Float64"), bad, "is not a number"
    if field.dtype == "bool":
        text = values.astype("string").str.strip().str.lower()
        is_true = text.isin(_TRUE).to_numpy(dtype=bool, na_value=False)
        is_false = text.isin(_FALSE).to_numpy(dtype=bool, na_value=False)
        if pd.api.types.is_bool_dtype(values):
            is_true, is_false = values.to_numpy(bool), ~values.to_numpy(bool)
        bad = ~blank & ~is_true & ~is_false
        out = pd.Series(pd.array(np.where(is_true, True, False), dtype="boolean"),
                        index=values.index).where(~pd.Series(blank | bad, index=values.index))
        return out, bad, "is not true/false (是/否)"
    # date / datetime
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        parsed = pd.to_datetime(values.astype("string"), errors="coerce", format="ISO8601")
    bad = ~blank & parsed.isna().to_numpy()
    if field.dtype == "date":
        return parsed.dt.date.where(parsed.notna(), None), bad, "is not a date (YYYY-MM-DD)"
    return parsed, bad, "is not a date-time (ISO 8601)"


def check_layer(
    frame: pd.DataFrame,
    layer: str,
    *,
    source: str,
    labels: Sequence[str] | None = None,
    fix_geometry: bool = False,
) -> tuple[pd.DataFrame, list[Problem]]:
    """Check ``frame`` against the schema of ``layer`` and convert its fields' types.

    Parameters
    ----------
    frame : GeoDataFrame or DataFrame
        The layer as read (strings are fine: they are converted). Must be in the storage
        CRS (EPSG:4326) if it has geometry.
    layer : str
        The layer name; its kind (the part before ``__``) picks the schema. A name with no
        schema is free-form and only its geometry is checked.
    source : str
        How the user names the input in messages (a file name, ``upload``).
    labels : sequence of str, optional
        Per row, how a user finds it (``row 17``); default ``feature N (key=…)``.
    fix_geometry : bool
        Repair invalid polygons with ``shapely.make_valid`` instead of reporting them.

    Returns
    -------
    (frame, problems)
        The converted frame (schema fields typed, extra columns kept) and every problem
        found; the frame is only fit to store when ``problems`` is empty.

    Examples
    --------
    >>> import pandas as pd
    >>> _, problems = check_layer(pd.DataFrame({"id": ["A"], "name": ["x"],
    ...     "type": ["bank"]}), "institutions", source="inst.csv", labels=["row 2"])
    >>> print(problems[0])
    inst.csv row 2: type 'bank' is not one of 国有大型商业银行, 股份制商业银行, ...
    """
    schema = schema_for(layer)
    frame = frame.copy()
    rows = _labels(frame, schema, labels)
    problems: list[Problem] = []

    def report(mask: np.ndarray, field: str | None, message, kind: str | None = None,
               values: pd.Series | None = None, quoted: bool = True) -> None:
        """One problem per row of ``mask``: ``message`` as is, or after the row's value
        (from ``values``, quoted or not). Only the rows found bad are formatted."""
        at = np.flatnonzero(mask)
        if not len(at):
            return
        if values is None:
            texts = [message] * len(at)
        else:
            shown = values.to_numpy(dtype=object, na_value=None)[at]
            texts = ([f"{v!r} {message}" for v in shown] if quoted
                     else [f"{v} {message}" for v in shown])
        problems.extend(Problem(source, rows[i], field, text, kind)
                        for i, text in zip(at, texts, strict=True))

    if schema is not None:
        renamed = field_columns(list(frame.columns), layer)
        if renamed:
            frame = frame.rename(columns=renamed)
        titles = field_titles_zh(layer)
        geometry_name = frame.geometry.name if isinstance(frame, gpd.GeoDataFrame) else None
        unused = [str(c) for c in frame.columns
                  if c not in schema.field_names and c != geometry_name]
        for f in schema.fields:
            if f.name not in frame.columns:
                if f.required:
                    problems.append(Problem(
                        source, None, f.name,
                        f"is required but the input has no {f.name!r} column (or "
                        f"{titles[f.name]}){_closest(f.name, titles[f.name], unused)}",
                        "column is missing"))
                continue
            raw = frame[f.name]
            blank = _is_blank(raw)
            if f.required:
                report(blank, f.name, "is empty but required")
            values, bad, why = _convert(f, raw, blank)
            if bad.any():
                report(bad, f.name, why, why, values=raw.astype("string"))
            ok = ~blank & ~bad
            if f.enum is not None:
                outside = ok & ~values.isin(f.enum).to_numpy(dtype=bool, na_value=False)
                allowed = f"is not one of {', '.join(f.enum)}"
                report(outside, f.name, allowed, allowed, values=values)
            if f.pattern is not None:
                mismatch = ok & ~values.astype("string").str.fullmatch(f.pattern).to_numpy(
                    dtype=bool, na_value=False)
                expected = f"does not match {f.pattern}"
                report(mismatch, f.name, expected, expected, values=values)
            if f.minimum is not None:
                low = ok & (values < f.minimum).to_numpy(dtype=bool, na_value=False)
                below = f"is below {f.minimum:g}"
                report(low, f.name, below, below, values=values, quoted=False)
            if f.maximum is not None:
                high = ok & (values > f.maximum).to_numpy(dtype=bool, na_value=False)
                above = f"is above {f.maximum:g}"
                report(high, f.name, above, above, values=values, quoted=False)
            frame[f.name] = values
        key = schema.key
        if key and key in frame.columns:
            _check_unique(frame, [key], rows, source, problems)
        unique = schema.extra.get("unique")
        if unique and all(c in frame.columns for c in unique):
            _check_unique(frame, list(unique), rows, source, problems)
        for part, whole in schema.extra.get("not_above", ()):
            if part in frame.columns and whole in frame.columns:
                above = (frame[part] > frame[whole]).to_numpy(dtype=bool, na_value=False)
                at = np.flatnonzero(above)
                parts = frame[part].to_numpy(dtype=object, na_value=None)[at]
                wholes = frame[whole].to_numpy(dtype=object, na_value=None)[at]
                problems.extend(
                    Problem(source, rows[i], part, f"{a} is more than {whole} {b}",
                            f"is more than {whole}")
                    for i, a, b in zip(at, parts, wholes, strict=True))
        # Columns beyond the schema are kept as they come, but an empty text cell is a
        # missing value, as in the schema's own fields (CSV and XLSX cannot tell them apart).
        for column in frame.columns:
            if column in schema.field_names or column == geometry_name:
                continue
            values = frame[column]
            if pd.api.types.is_string_dtype(values) or values.dtype == object:
                blank = _is_blank(values)
                if blank.any():
                    frame[column] = values.where(~blank, None)

    if schema is not None and schema.spatial and not isinstance(frame, gpd.GeoDataFrame):
        problems.append(Problem(source, None, "geometry",
                                f"layer {layer} needs {'/'.join(schema.geometry)} geometry "
                                "but the input has none (for CSV: lon/lat columns)"))
    if isinstance(frame, gpd.GeoDataFrame):
        frame = _check_geometry(frame, schema, rows, source, problems, fix_geometry)
    return frame, sort_problems(problems, rows)


def sort_problems(problems: list[Problem], labels: Sequence[str]) -> list[Problem]:
    """Problems in the order of the input, whole-file problems first, as a user reads it
    (stable: within a row, in field order)."""
    order = {label: i for i, label in enumerate(labels)}
    return sorted(problems, key=lambda p: -1 if p.where is None else order.get(p.where, -1))


def _check_unique(frame, columns, rows, source, problems) -> None:
    keys = frame[columns]
    present = keys.notna().all(axis=1).to_numpy()
    dup = keys.duplicated(keep=False).to_numpy() & present
    if not dup.any():
        return
    first = {}
    idx = np.flatnonzero(dup)
    tuples = list(keys.iloc[idx].itertuples(index=False, name=None))
    for i, k in zip(idx, tuples, strict=True):
        if k in first:
            shown = "/".join(map(str, k))
            problems.append(Problem(source, rows[i], "/".join(columns),
                                    f"{shown!r} is a duplicate (also {rows[first[k]]})",
                                    "is a duplicate"))
        else:
            first[k] = i


def _check_geometry(frame, schema, rows, source, problems, fix_geometry):
    if frame.crs is not None and not frame.crs.equals(STORAGE_CRS):
        problems.append(Problem(source, None, "geometry",
                                f"is in {frame.crs.to_string()}, expected {STORAGE_CRS}"))
        return frame
    geoms = frame.geometry.to_numpy()
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    optional = schema is None or schema.geometry_optional
    if not optional:
        for i in np.flatnonzero(missing):
            problems.append(Problem(source, rows[i], "geometry", "is missing or empty"))
    present = ~missing
    if schema is not None and schema.geometry:
        allowed = set(schema.geometry)
        types = type_names(geoms)
        wrong = present & ~np.isin(types, list(allowed))
        for i in np.flatnonzero(wrong):
            expected = " or ".join(schema.geometry)
            problems.append(Problem(source, rows[i], "geometry",
                                    f"is a {types[i]}, expected {expected}"))
    else:
        wrong = np.zeros(len(frame), bool)
    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        outside = present & ((bounds[:, 0] < -180) | (bounds[:, 2] > 180)
                             | (bounds[:, 1] < -90) | (bounds[:, 3] > 90))
    for i in np.flatnonzero(outside):
        problems.append(Problem(source, rows[i], "geometry",
                                "has coordinates outside lon [-180, 180] / lat [-90, 90] "
                                "(is the CRS right?)"))
    check = present & ~wrong & ~outside
    valid = shapely.is_valid(geoms)
    invalid = check & ~valid
    if invalid.any():
        if fix_geometry:
            fixed = geoms.copy()
            repaired = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
            if schema is not None and set(schema.geometry) <= {"Polygon", "MultiPolygon"}:
                repaired = polygonal(repaired)
            fixed[invalid] = repaired
            still = np.zeros(len(frame), bool)
            still[invalid] = ~shapely.is_valid(repaired) | shapely.is_empty(repaired)
            if schema is not None and "MultiPolygon" not in schema.geometry:
                still[invalid] |= shapely.get_type_id(repaired) == MULTIPOLYGON
            for i in np.flatnonzero(still):
                problems.append(Problem(source, rows[i], "geometry",
                                        "could not be repaired into a single valid polygon: "
                                        f"{shapely.is_valid_reason(geoms[i])}"))
            frame = frame.set_geometry(gpd.GeoSeries(fixed, index=frame.index, crs=frame.crs))
        else:
            reasons = shapely.is_valid_reason(geoms[invalid])
            for i, why in zip(np.flatnonzero(invalid), reasons, strict=True):
                problems.append(Problem(source, rows[i], "geometry",
                                        f"is invalid: {why} (use --fix-geometry to repair)"))
    return frame


# --------------------------------------------------------------------------- place checks

#: How far outside the territory a point or shape may lie before it is refused (metres).
MAX_OUTSIDE_M = 20_000.0

#: How far outside an offset datum (GCJ-02, BD-09) can put a point (metres, generous).
DATUM_REACH_M = 2_000.0

#: Layers the place check leaves alone: the territory itself and the fan-out's books.
_NOT_PLACED = ("territory",)


@dataclass(frozen=True)
class Territory:
    """What the place check measures against: polygons in EPSG:4326 and how they were
    found (``territory`` layer, or the extent of the divisions when it is missing)."""

    area: object  # one shapely (Multi)Polygon
    what: str


def find_territory(store) -> tuple[Territory | None, str | None]:
    """The store's territory for the place check, and a note to show when there is none
    (the check is then skipped) or only the divisions' extent stands in for it."""
    present = {info.name: info for info in store.layers()}
    if "territory" in present and present["territory"].count:
        frame = store.read("territory")
        geoms = np.asarray(frame.geometry.values, dtype=object)
        geoms = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
        if len(geoms):
            area = shapely.union_all(shapely.make_valid(geoms))
            return Territory(area, "the territory (layer territory)"), None
    for layer in ("units", "townships"):
        info = present.get(layer)
        if info is not None and info.count and info.bbox:
            note = (f"no territory layer in the store: places are checked against the "
                    f"extent of layer {layer} instead")
            return Territory(shapely.box(*info.bbox), f"the extent of layer {layer}"), note
    return None, ("no territory layer in the store: places were not checked against one "
                  "(import the county boundary as layer territory first)")


def place_problems(
    frame: pd.DataFrame,
    layer: str,
    territory: Territory,
    *,
    source: str,
    labels: Sequence[str],
    max_outside: float = MAX_OUTSIDE_M,
    crs=None,
    datum: str | None = None,
) -> list[Problem]:
    """Points or shapes of ``frame`` farther than ``max_outside`` metres outside
    ``territory``, one problem per row, each with the likely cause when one fits:

    - at (0, 0): the coordinates are missing and were written as zeros;
    - swapped: with longitude and latitude exchanged it lies inside;
    - a wrong CRS: the file was read in a projected ``crs`` but its numbers are degrees
      that lie inside (EPSG:3857 given to longitude/latitude);
    - an offset datum: read as GCJ-02 / BD-09 (or as WGS84) it would lie inside — the
      Amap/Tencent/Baidu offsets are 100–700 m, so this shows with a small ``--max-outside``.

    Inside or not is decided in longitude/latitude (prepared polygon, vectorised); the
    distance of the few rows outside is measured in metres, in the territory's metric CRS.
    """
    from gis_grid.crs import metric_crs
    from layers.datum import from_wgs84, to_wgs84

    if not isinstance(frame, gpd.GeoDataFrame) or layer_kind(layer) in _NOT_PLACED:
        return []
    geoms = np.asarray(frame.geometry.values, dtype=object)
    present = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        sane = present & (np.abs(bounds[:, [0, 2]]) <= 180).all(axis=1) & (
            np.abs(bounds[:, [1, 3]]) <= 90).all(axis=1)
    area = territory.area
    shapely.prepare(area)
    outside = np.zeros(len(geoms), bool)
    outside[sane] = ~shapely.intersects(area, geoms[sane])
    at = np.flatnonzero(outside)
    if not len(at):
        return []
    metric = metric_crs(area)
    area_m = _to_metric(np.array([area], dtype=object), metric)[0]
    far_m = shapely.distance(area_m, _to_metric(geoms[at], metric))
    far_m = np.where(np.isfinite(far_m), far_m, np.inf)
    refused = far_m > max_outside
    at, far_m = at[refused], far_m[refused]
    if not len(at):
        return []
    near = shapely.buffer(area_m, max_outside, quad_segs=4)
    shapely.prepare(near)

    def inside(candidates: np.ndarray) -> np.ndarray:
        ok = np.zeros(len(candidates), bool)
        valid = ~shapely.is_missing(candidates)
        b = shapely.bounds(candidates)
        with np.errstate(invalid="ignore"):
            valid &= (np.abs(b[:, [0, 2]]) <= 180).all(axis=1) & (
                np.abs(b[:, [1, 3]]) <= 90).all(axis=1)
        if valid.any():
            moved = _to_metric(candidates[valid], metric)
            ok[valid] = shapely.intersects(near, moved)
        return ok

    chosen = geoms[at]
    causes = np.full(len(at), "", dtype=object)
    kinds = np.full(len(at), "", dtype=object)
    x0, y0 = shapely.get_x(chosen), shapely.get_y(chosen)
    points = shapely.get_type_id(chosen) == shapely.GeometryType.POINT
    zero = points & (np.abs(x0) < 1e-9) & (np.abs(y0) < 1e-9)
    causes[zero] = "; it is at (0, 0): are the coordinates missing (written as 0)?"
    kinds[zero] = " at (0, 0)"

    def suggest(mask: np.ndarray, cause: str, kind: str) -> None:
        todo = (causes == "") & mask
        causes[todo], kinds[todo] = cause, kind

    swapped = shapely.transform(chosen, lambda xy: xy[:, ::-1])
    suggest(inside(swapped), "; longitude and latitude look swapped (exchanged, it lies "
            "inside): check which column is which", " (lon/lat swapped?)")
    if crs is not None and not pyproj.CRS.from_user_input(crs).is_geographic:
        src = pyproj.CRS.from_user_input(crs)
        raw = _transform(chosen, pyproj.CRS.from_user_input(STORAGE_CRS), src)
        name = ":".join(src.to_authority()) if src.to_authority() else src.name
        suggest(inside(raw), f"; its numbers are longitude/latitude degrees but were read as "
                f"{name}: give --crs EPSG:4326 (or leave --crs out)",
                f" (degrees read as {name}?)")
    # The offset datums move a point by 100 m to about 1 km: only rows that close to the
    # territory can be explained by one.
    close = np.flatnonzero((causes == "") & (far_m < DATUM_REACH_M))

    def datum_hint(moved: np.ndarray, cause: str, kind: str) -> None:
        mask = np.zeros(len(at), bool)
        mask[close] = inside(moved)
        suggest(mask, cause, kind)

    if len(close) and datum is None:
        for offset, who in (("gcj02", "GCJ-02 (Amap, Tencent)"), ("bd09", "BD-09 (Baidu)")):
            datum_hint(to_wgs84(chosen[close], offset),
                       f"; it looks like {who} coordinates read as WGS84: give --crs {offset}",
                       f" ({offset} read as WGS84?)")
    elif len(close):
        datum_hint(from_wgs84(chosen[close], datum),
                   f"; it looks like WGS84 already, shifted again by --crs {datum}: leave "
                   "--crs out", f" (WGS84 shifted as {datum}?)")
    limit = f"{max_outside / 1000:g} km"
    problems = []
    for i, d, cause, kind in zip(at, far_m, causes, kinds, strict=True):
        distance = "far" if not np.isfinite(d) else f"{d / 1000:,.1f} km"
        problems.append(Problem(
            source, labels[i], "geometry",
            f"lies {distance} outside {territory.what} (more than {limit}){cause}",
            f"lies more than {limit} outside the territory{kind}"))
    return problems


def _transform(geoms: np.ndarray, source, target) -> np.ndarray:
    from gis_grid.crs import transform_points

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = transform_points(source, target, xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    with np.errstate(all="ignore"):
        return shapely.transform(geoms, fn)


def _to_metric(geoms: np.ndarray, metric) -> np.ndarray:
    # Straight from degrees, vertex by vertex: a measure of kilometres outside, not the
    # territory's area, so the 500 m densified edges of gis_grid.crs.reproject are moot.
    return _transform(geoms, pyproj.CRS.from_user_input(STORAGE_CRS), metric)


# --------------------------------------------------------------------------- the ledger


def ledger_problems(store, frame: pd.DataFrame, *, source: str,
                    labels: Sequence[str]) -> list[Problem]:
    """A ledger row (台账) belongs to a finest grid of its institution's grid layer
    (``grids__<institution>``, ``gis_grid.naming.grid_layer``; failing that, the grids of
    the institution in the store's other grid layers, so a store keeping a bank's grids
    as plain ``grids`` works too). Rows of an institution with no grids yet are refused
    with that reason; a grid code not among its grids, or of a grid that has sub-grids,
    is refused by row."""
    from gis_grid.naming import grid_layer, is_staging
    from gis_grid.staffing import finest_grids

    if "grid" not in frame.columns or "institution" not in frame.columns:
        return []
    present = {info.name for info in store.layers()}
    others = sorted(n for n in present if layer_kind(n) == "grids" and not is_staging(n))
    institution = frame["institution"].astype("string")
    grid = frame["grid"].astype("string")
    problems: list[Problem] = []
    for bank in institution.dropna().unique():  # a few institutions per ledger
        rows = (institution == bank).to_numpy(dtype=bool, na_value=False)
        idx = np.flatnonzero(rows)
        layer = grid_layer(str(bank))
        if layer in present:
            grids, where = _read_grids(store, layer), layer
        else:
            found = [f for f in (_grids_of(store, n, str(bank)) for n in others) if len(f)]
            grids = pd.concat(found, ignore_index=True) if found else None
            where = f"the grids of {bank} in layer {' / '.join(others)}"
        if grids is None or not len(grids):
            why = (f"institution {bank!r} has no grids yet (no layer {layer}): partition "
                   f"first (gisgrid partition --institution {bank}); ledger rows belong to "
                   "its finest grids")
            problems += [Problem(source, labels[i], "grid", why, "grid layer not partitioned")
                         for i in idx]
            continue
        codes = grids["code"].astype("string")
        leaf = set(codes[finest_grids(grids)])
        have = grid[rows]
        named = have.notna().to_numpy()
        unknown = named & ~have.isin(set(codes)).to_numpy(dtype=bool, na_value=False)
        coarse = named & ~unknown & ~have.isin(leaf).to_numpy(dtype=bool, na_value=False)
        for i in idx[unknown]:
            problems.append(Problem(source, labels[i], "grid",
                                    f"{grid.iloc[i]!r} is not a grid of {where}",
                                    "is not a grid of the institution's layer"))
        for i in idx[coarse]:
            problems.append(Problem(source, labels[i], "grid",
                                    f"{grid.iloc[i]!r} has sub-grids in {where}; ledger rows "
                                    "belong to its finest grids", "is not a finest grid"))
    return problems


def _read_grids(store, layer: str, *more: str) -> pd.DataFrame | None:
    """``layer``'s code, level and parent (and ``more``) columns; parent and level are
    optional in the schema, so they are left out when the layer lacks them. None when it
    has no code (or lacks one of ``more``)."""
    for columns in (["code", "level", "parent"], ["code", "level"], ["code"]):
        try:
            return store.read(layer, columns=[*columns, *more])
        except (StoreError, KeyError, ValueError):
            continue
    return None


def _grids_of(store, layer: str, institution: str) -> pd.DataFrame:
    """The code, level and parent of ``institution``'s grids in ``layer`` (none when the
    layer has no institution column)."""
    grids = _read_grids(store, layer, "institution")
    if grids is None:
        return pd.DataFrame()
    mine = (grids["institution"].astype("string") == institution).to_numpy(
        dtype=bool, na_value=False)
    return grids.loc[mine].reset_index(drop=True)


def store_problems(
    store, layer: str, frame: pd.DataFrame, *, source: str, labels: Sequence[str],
    max_outside: float | None = MAX_OUTSIDE_M, crs=None, datum: str | None = None,
) -> tuple[list[Problem], list[str]]:
    """The checks that need the store as it is: places against its territory
    (``max_outside`` metres; None skips them) and the ledger against its grid layers.
    Returns the problems and notes to show (a check skipped, and why). The import
    (``layers.transfer.import_file``, hence ``gisgrid import`` and uploads) runs these."""
    problems: list[Problem] = []
    notes: list[str] = []
    schema = schema_for(layer)
    if (max_outside is not None and isinstance(frame, gpd.GeoDataFrame)
            and layer_kind(layer) not in _NOT_PLACED and (schema is None or schema.spatial)):
        territory, note = find_territory(store)
        if note:
            notes.append(note)
        if territory is not None:
            problems += place_problems(frame, layer, territory, source=source, labels=labels,
                                       max_outside=max_outside, crs=crs, datum=datum)
    if layer_kind(layer) == "ledger":
        problems += ledger_problems(store, frame, source=source, labels=labels)
    return problems, notes
