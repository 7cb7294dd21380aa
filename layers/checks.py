"""Input checking: every layer that enters the system is checked against its schema.

``check_layer`` converts each field to its schema type and collects every problem at
once — missing fields, values that are not numbers or dates, values outside their
enumeration, code formats, ranges, duplicate keys, missing or wrong geometry, invalid
polygons — each named by the row or feature a user can find. Nothing is stored unless the
report is empty (see ``layers.transfer``). All checks are column-wise (pandas / shapely
vectorised); Python only formats the messages of rows already found bad.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis_grid.errors import Problem
from gis_grid.geometry import MULTIPOLYGON, polygonal, type_names
from gis_grid.model import STORAGE_CRS, Field, LayerSchema, schema_for

_TRUE = {"true", "1", "yes", "y", "t", "是", "真"}
_FALSE = {"false", "0", "no", "n", "f", "否", "假"}


def _labels(frame: pd.DataFrame, schema: LayerSchema | None, labels: Sequence[str] | None):
    if labels is not None:
        return list(labels)
    key = schema.key if schema is not None else None
    if key and key in frame.columns:
        return [f"feature {i + 1} ({key}={v})" for i, v in enumerate(frame[key].astype(str))]
    return [f"feature {i + 1}" for i in range(len(frame))]


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

    def report(mask: np.ndarray, field: str | None, message) -> None:
        for i in np.flatnonzero(mask):
            text = message(i) if callable(message) else message
            problems.append(Problem(source, rows[i], field, text))

    if schema is not None:
        for f in schema.fields:
            if f.name not in frame.columns:
                if f.required:
                    columns = ", ".join(map(str, frame.columns))
                    problems.append(Problem(source, None, f.name,
                                            f"is required but the input has no {f.name!r} "
                                            f"column (columns: {columns})"))
                continue
            raw = frame[f.name]
            blank = _is_blank(raw)
            if f.required:
                report(blank, f.name, "is empty but required")
            values, bad, why = _convert(f, raw, blank)
            if bad.any():
                shown = raw.astype("string")
                report(bad, f.name, lambda i, s=shown, w=why: f"{s.iloc[i]!r} {w}")
            ok = ~blank & ~bad
            if f.enum is not None:
                outside = ok & ~values.isin(f.enum).to_numpy(dtype=bool, na_value=False)
                allowed = ", ".join(f.enum)
                report(outside, f.name,
                       lambda i, v=values, a=allowed: f"{v.iloc[i]!r} is not one of {a}")
            if f.pattern is not None:
                mismatch = ok & ~values.astype("string").str.fullmatch(f.pattern).to_numpy(
                    dtype=bool, na_value=False)
                report(mismatch, f.name,
                       lambda i, v=values, p=f.pattern: f"{v.iloc[i]!r} does not match {p}")
            if f.minimum is not None:
                low = ok & (values < f.minimum).to_numpy(dtype=bool, na_value=False)
                report(low, f.name, lambda i, v=values, m=f.minimum: f"{v.iloc[i]} is below {m:g}")
            if f.maximum is not None:
                high = ok & (values > f.maximum).to_numpy(dtype=bool, na_value=False)
                report(high, f.name, lambda i, v=values, m=f.maximum: f"{v.iloc[i]} is above {m:g}")
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
                report(above, part, lambda i, p=part, w=whole: (
                    f"{frame[p].iloc[i]} is more than {w} {frame[w].iloc[i]}"))

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
                                    f"{shown!r} is a duplicate (also {rows[first[k]]})"))
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
