"""Moving layers between files and a store: ``import_file`` and ``export_layer``.

An import reads the file (``layers.files``), checks it against the layer's schema
(``layers.checks``), and applies it to the layer in a write mode (``Store.change``:
replace, append, upsert or delete by the layer's key), which checks the references
against the store's current state (``layers.integrity``) and logs the change
(``layers.history``). It stores only when nothing is wrong: every problem is reported at
once in an ``InputError`` and the store is left as it was. A layer the store already
holds is never replaced by surprise: without a mode its import is refused
(``ModeRequired``, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gis_grid.errors import GisGridError, InputError, Problem
from gis_grid.model import LAT_ZH, LON_ZH, field_titles_zh, schema_for
from layers.checks import (
    MAX_OUTSIDE_M,
    check_layer,
    field_columns,
    sort_problems,
    store_problems,
)
from layers.files import read_file, shapefile_names, write_file
from layers.history import Actor, Change, key_columns
from layers.store import MODES, Store, check_layer_name


class ModeRequired(GisGridError):
    """An import into a layer the store holds, without a write mode: refused, so that
    nothing is replaced by surprise (exit 2, a usage error)."""

    exit_code = 2

    def __init__(self, layer: str, count: int):
        self.layer = layer
        super().__init__(
            f"layer {layer} exists ({count} rows): choose how to apply the file with "
            f"--mode {'|'.join(MODES)} (replace: the file becomes the layer; append: add "
            "rows with new keys; upsert: add or change rows by key; delete: remove the "
            "rows with the file's keys)")


@dataclass(frozen=True)
class ImportReport:
    layer: str
    source: str
    count: int
    repaired: int
    mode: str = "replace"
    change: Change | None = None
    #: What the user should know though nothing was wrong (a check skipped, and why).
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int | None:
        return None if self.change is None else self.change.rows_after


def require_mode(store: Store, layer: str, mode: str | None) -> str:
    """``mode``, or ``replace`` for a layer the store does not hold yet; ``ModeRequired``
    for a layer it holds."""
    if mode is not None:
        if mode not in MODES:
            raise GisGridError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        return mode
    held = {info.name: info.count for info in store.layers()}
    if layer in held:
        raise ModeRequired(layer, held[layer])
    return "replace"


def _restore_shapefile_names(raw, layer: str):
    """The layer's field names as a Shapefile may hold them given back: shortened to a
    dBASE name's 10 bytes (``institution`` → ``institutio``, by the rule ``write_file``
    shortens with, which is GDAL's) and in capitals as ArcGIS writes them (``INSTITUTIO``,
    ``ID``). A field already present under its own name is left alone."""
    schema = schema_for(layer)
    if schema is None:
        return raw
    names = [f.name for f in schema.fields]
    shortened = shapefile_names(names)
    present = {str(c).lower(): c for c in raw.frame.columns}
    back = {}
    for full in names:
        if full in raw.frame.columns:
            continue
        found = present.get(full.lower())
        if found is None and full in shortened:
            found = present.get(shortened[full].lower())
        if found is not None and found not in names:
            back[found] = full
    if not back:
        return raw
    return replace(raw, frame=raw.frame.rename(columns=back))


def _drop_optional_missing(problems: list[Problem], layer: str, lon: str, lat: str):
    """Staff and events may have no location: a row with neither coordinate (or a feature
    with no geometry) is fine for them. Half a coordinate pair is still a problem."""
    schema = schema_for(layer)
    if schema is None or not schema.geometry_optional:
        return problems
    missing: dict[str | None, set[str | None]] = {}
    for p in problems:
        if p.message == "is missing":
            missing.setdefault(p.where, set()).add(p.field)
    absent = {w for w, fields in missing.items() if {lon, lat} <= fields or "geometry" in fields}
    return [p for p in problems if not (p.message == "is missing" and p.where in absent)]


def import_file(
    store: Store,
    path: str | Path,
    layer: str,
    *,
    mode: str | None = None,
    actor: Actor | None = None,
    crs: str | None = None,
    lon: str = "lon",
    lat: str = "lat",
    encoding: str | None = None,
    source_layer: str | None = None,
    fix_geometry: bool = False,
    max_outside: float | None = MAX_OUTSIDE_M,
) -> ImportReport:
    """Read ``path``, check it as layer ``layer`` and apply it in ``mode`` (see
    ``layers.store.MODES``; None: only for a layer the store does not hold), all or
    nothing, the change logged as ``actor``'s.

    Raises ``InputError`` with every problem found (the schema's, the keys', the
    references'), ``ModeRequired`` without a mode for an existing layer; the store is
    then unchanged. A file of rows to delete needs only the layer's key column(s).
    Columns may carry the schema's Chinese titles (``gis_grid.model.field_titles_zh``).
    Points and shapes farther than ``max_outside`` metres outside the store's territory
    are refused by row (None: not checked), and ledger rows must name a finest grid of
    their institution's grid layer (``layers.checks.store_problems``).

    Examples
    --------
    >>> from layers.store import open_store
    >>> with open_store("county.gpkg") as store:             # doctest: +SKIP
    ...     import_file(store, "outlets.csv", "outlets", mode="upsert", crs="gcj02")
    """
    check_layer_name(layer)
    mode = require_mode(store, layer, mode)
    raw = read_file(path, layer=source_layer, crs=crs, lon=lon, lat=lat, encoding=encoding)
    if Path(path).suffix.lower() in (".zip", ".shp"):
        raw = _restore_shapefile_names(raw, layer)
    labels = raw.labels or [f"feature {i + 1}" for i in range(len(raw.frame))]
    titled = field_columns(list(raw.frame.columns), layer)
    if titled:
        raw = replace(raw, frame=raw.frame.rename(columns=titled))
    if mode == "delete":
        frame = _keys_only(raw, layer, labels)
        change = store.change(layer, frame, mode, actor=actor, source=raw.source,
                              labels=labels)
        return ImportReport(layer, raw.source, len(frame), 0, mode, change)
    frame, problems = check_layer(raw.frame, layer, source=raw.source, labels=labels,
                                  fix_geometry=fix_geometry)
    # A row whose coordinates could not be read is already reported by the reader; the
    # schema check's "geometry is missing" for it would only repeat that.
    raw_problems = _drop_optional_missing(raw.problems, layer, *(raw.coordinates or (lon, lat)))
    unreadable = {p.where for p in raw_problems}
    problems = [p for p in problems if not (p.field == "geometry" and p.where in unreadable
                                            and "missing" in p.message)]
    placed, notes = store_problems(store, layer, frame, source=raw.source, labels=labels,
                                   max_outside=max_outside, crs=raw.crs, datum=raw.datum)
    problems = sort_problems(raw_problems + problems + placed, labels)
    if problems:
        raise InputError(problems, source=raw.source)
    repaired = 0
    if fix_geometry and hasattr(raw.frame, "geometry"):
        repaired = int((~raw.frame.geometry.geom_equals_exact(frame.geometry, 0)).sum())
    frame = keep_stored_shapes(store, layer, frame)
    change = store.change(layer, frame, mode, actor=actor, source=raw.source, labels=labels)
    return ImportReport(layer, raw.source, len(frame), repaired, mode, change, tuple(notes))


def keep_stored_shapes(store: Store, layer: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the stored geometry put back where a row's polygon is the stored
    row's (same key) written another way: rings turned (RFC 7946 GeoJSON and Shapefile
    each fix an orientation), started elsewhere, or a one-part MultiPolygon read back as
    its Polygon (a Shapefile cannot tell them apart). So an exported layer imported back
    changes nothing, the change log included. Points need none of this."""
    import geopandas as gpd
    import shapely

    if not isinstance(frame, gpd.GeoDataFrame) or not len(frame):
        return frame
    geoms = np.asarray(frame.geometry.values, dtype=object)
    kinds = shapely.get_type_id(geoms)
    areal = (kinds == shapely.GeometryType.POLYGON) | (kinds == shapely.GeometryType.MULTIPOLYGON)
    keys = key_columns(layer, list(frame.columns))
    if not areal.any() or not keys or layer not in {i.name for i in store.layers()}:
        return frame
    try:
        stored = store.read(layer, columns=list(keys))
    except GisGridError:
        return frame
    if not isinstance(stored, gpd.GeoDataFrame) or not len(stored):
        return frame

    def key_of(table: pd.DataFrame) -> pd.Index:
        parts = [table[k].astype("string").fillna("") for k in keys]
        return pd.MultiIndex.from_arrays(parts) if len(parts) > 1 else pd.Index(parts[0])

    at = key_of(stored).get_indexer(key_of(frame))
    found = (at >= 0) & areal
    if not found.any():
        return frame
    old = np.asarray(stored.geometry.values, dtype=object)[at[found]]
    same = shapely.equals_exact(_canonical(geoms[found]), _canonical(old), tolerance=0.0)
    if not same.any():
        return frame
    geoms = geoms.copy()
    geoms[np.flatnonzero(found)[same]] = old[same]
    return frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs))


def _canonical(geoms: np.ndarray) -> np.ndarray:
    """Polygons up to ring orientation and start, repeated vertices and one-part
    MultiPolygons, for ``keep_stored_shapes``."""
    import shapely

    geoms = shapely.remove_repeated_points(geoms, 0.0)
    single = (shapely.get_type_id(geoms) == shapely.GeometryType.MULTIPOLYGON) & (
        shapely.get_num_geometries(geoms) == 1)
    geoms = geoms.copy()
    geoms[single] = shapely.get_geometry(geoms[single], 0)
    return shapely.normalize(geoms)


def _keys_only(raw, layer: str, labels: list[str]) -> pd.DataFrame:
    """The key columns of a file of rows to delete, checked to be there and filled."""
    frame = raw.frame
    keys = key_columns(layer, list(frame.columns))
    if not keys:
        schema = schema_for(layer)
        wanted = (schema.key if schema is not None and schema.key else
                  " + ".join(schema.extra.get("unique", ())) if schema is not None else "")
        raise InputError([Problem(raw.source, None, wanted or None,
                                  "is missing: rows to delete are named by the layer's key"
                                  if wanted else f"layer {layer} has no key to delete by; "
                                  "use --mode replace")], source=raw.source)
    problems = []
    for key in keys:
        empty = frame[key].isna().to_numpy() | (frame[key].astype(str).str.strip() == ""
                                                ).to_numpy()
        problems += [Problem(raw.source, labels[i], key, "is missing")
                     for i in np.flatnonzero(empty)]
    if problems:
        raise InputError(problems, source=raw.source)
    out = pd.DataFrame({k: frame[k].reset_index(drop=True) for k in keys})
    schema = schema_for(layer)
    for k in keys:
        if schema is not None and k in schema.field_names and \
                schema.field(k).dtype == "int":
            out[k] = pd.to_numeric(out[k], errors="coerce")
        elif schema is not None and k in schema.field_names:
            out[k] = out[k].astype(str).str.strip()
    return out


def export_layer(
    store: Store,
    layer: str,
    path: str | Path,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    where: dict[str, object] | None = None,
    encoding: str = "utf-8",
    headers: str | None = None,
) -> int:
    """Write a stored layer (or the part of it in ``bbox`` / matching ``where``) to a file
    whose format follows its extension. Returns the number of features written.

    ``headers`` (CSV and XLSX): ``zh`` names the columns by the schema's Chinese titles
    and the coordinates 经度/纬度, ``en`` by the field names; default ``zh`` for .xlsx
    (a sheet for people), ``en`` for .csv. ``import`` reads either back."""
    frame = store.read(layer, bbox=bbox, where=where)
    suffix = Path(path).suffix.lower()
    if headers is None:
        headers = "zh" if suffix == ".xlsx" else "en"
    options: dict = {}
    if headers == "zh" and suffix in (".csv", ".xlsx"):
        options = {"titles": field_titles_zh(layer), "lon": LON_ZH, "lat": LAT_ZH}
    write_file(frame, path, layer=layer, encoding=encoding, **options)
    return len(frame)




