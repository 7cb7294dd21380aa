"""Moving layers between files and a store: ``import_file`` and ``export_layer``.

An import reads the file (``layers.files``), checks it against the layer's schema
(``layers.checks``) and against the layers it refers to that the store already holds
(an outlet's institution must exist), and stores it only when nothing is wrong: every
problem is reported at once in an ``InputError`` and the store is left as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gis_grid.errors import InputError, Problem
from gis_grid.model import REFERENCES, schema_for
from gis_grid.naming import layer_kind
from layers.checks import check_layer, sort_problems
from layers.files import read_file, shapefile_names, write_file
from layers.store import Store, check_layer_name


@dataclass(frozen=True)
class ImportReport:
    layer: str
    source: str
    count: int
    repaired: int


def reference_problems(
    store: Store, layer: str, frame: pd.DataFrame, source: str, labels: list[str]
) -> list[Problem]:
    """Values that point at features the store does not hold (e.g. an outlet of an
    institution not in ``institutions``). Only checked when the referenced layer exists."""
    problems: list[Problem] = []
    refs = REFERENCES.get(layer_kind(layer), {})
    present = {info.name for info in store.layers()}
    for field, (target, key) in refs.items():
        if field not in frame.columns or target not in present:
            continue
        known = store.read(target, columns=[key])[key].astype("string")
        values = frame[field].astype("string")
        missing = values.notna().to_numpy() & ~values.isin(known).to_numpy(
            dtype=bool, na_value=False)
        for i in np.flatnonzero(missing):
            problems.append(Problem(source, labels[i], field,
                                    f"{values.iloc[i]!r} is not in layer {target}"))
    return problems


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
    crs: str | None = None,
    lon: str = "lon",
    lat: str = "lat",
    encoding: str | None = None,
    source_layer: str | None = None,
    fix_geometry: bool = False,
) -> ImportReport:
    """Read ``path``, check it as layer ``layer`` and store it, all or nothing.

    Raises ``InputError`` with every problem found; the store is then unchanged.

    Examples
    --------
    >>> from layers.store import open_store
    >>> with open_store("county.gpkg") as store:             # doctest: +SKIP
    ...     import_file(store, "outlets.csv", "outlets", crs="gcj02", encoding="gbk")
    """
    check_layer_name(layer)
    raw = read_file(path, layer=source_layer, crs=crs, lon=lon, lat=lat, encoding=encoding)
    if Path(path).suffix.lower() in (".zip", ".shp"):
        raw = _restore_shapefile_names(raw, layer)
    labels = raw.labels or [f"feature {i + 1}" for i in range(len(raw.frame))]
    frame, problems = check_layer(raw.frame, layer, source=raw.source, labels=labels,
                                  fix_geometry=fix_geometry)
    # A row whose coordinates could not be read is already reported by the reader; the
    # schema check's "geometry is missing" for it would only repeat that.
    raw_problems = _drop_optional_missing(raw.problems, layer, lon, lat)
    unreadable = {p.where for p in raw_problems}
    problems = [p for p in problems if not (p.field == "geometry" and p.where in unreadable
                                            and "missing" in p.message)]
    problems = sort_problems(raw_problems + problems, labels)
    if not problems:
        problems = reference_problems(store, layer, frame, raw.source, labels)
    if problems:
        raise InputError(problems, source=raw.source)
    repaired = 0
    if fix_geometry and hasattr(raw.frame, "geometry"):
        repaired = int((~raw.frame.geometry.geom_equals_exact(frame.geometry, 0)).sum())
    store.write(layer, frame)
    return ImportReport(layer, raw.source, len(frame), repaired)


def export_layer(
    store: Store,
    layer: str,
    path: str | Path,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    where: dict[str, object] | None = None,
    encoding: str = "utf-8",
) -> int:
    """Write a stored layer (or the part of it in ``bbox`` / matching ``where``) to a file
    whose format follows its extension. Returns the number of features written."""
    frame = store.read(layer, bbox=bbox, where=where)
    write_file(frame, path, layer=layer, encoding=encoding)
    return len(frame)




