"""Layer files: GeoJSON, GeoPackage, Shapefile (zipped or bare), CSV and XLSX, in and out.

This module is the one place that knows file formats. ``read_file`` turns a file into a
frame in the storage CRS (EPSG:4326) plus every parsing-level problem found in it (bad
coordinates, unclosed rings, missing geometries), each naming the row or feature; the
schema checks (``layers.checks``) then judge the frame's fields. ``write_file`` writes a
frame back out, atomically.

Reading is vectorised: pyogrio (GDAL) for the vector formats, pandas for CSV, calamine
for XLSX (openpyxl writes it). Chinese offices export GBK, so CSV (and a Shapefile whose
.dbf names no encoding) falls back from UTF-8 to GB18030, a superset of GBK. Every CSV and
XLSX value is read as text so codes keep their leading zeros; the checks convert types.
CSV and XLSX hold points as longitude/latitude columns (``lon``/``lat``, or the Chinese
``经度``/``纬度`` found when the default names are absent) or a table; written with
``titles``, their headers are the schema's Chinese titles, which the checks accept back.

Unclosed rings: GDAL's GeoJSON reader (GDAL 3.12 as bundled with pyogrio) accepts a ring
whose last position differs from its first, warns "Non closed ring detected", and hands
the ring on unclosed in the WKB; GEOS then refuses to build it, which would fail the
whole read. ``read_file`` therefore parses with ``on_invalid="ignore"``, re-reads the raw
WKB of just the features that came back without geometry, reports each unclosed ring by
feature and ring number, and keeps the ring closed (shapely's ``on_invalid="fix"``) so
the checks still see a polygon.

Example
-------
>>> layer = read_file("outlets.csv", crs="gcj02", encoding="gbk")  # doctest: +SKIP
>>> for problem in layer.problems:                                  # doctest: +SKIP
...     print(problem)
outlets.csv row 17: lon 1130.2 out of range [-180, 180]
"""

from __future__ import annotations

import codecs
import importlib.util
import io
import os
import shutil
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyogrio.raw
import pyproj
import shapely
from pyogrio.errors import (
    CRSError,
    DataLayerError,
    DataSourceError,
    FeatureError,
    FieldError,
    GeometryError,
)

from gis_grid.errors import InputError, Problem, StoreError
from gis_grid.model import STORAGE_CRS
from layers.datum import OFFSET_DATUMS, to_wgs84

#: File formats by extension, for the CLI's help text.
FORMATS: dict[str, str] = {
    ".geojson": "GeoJSON (RFC 7946: WGS84 longitude/latitude, UTF-8)",
    ".json": "GeoJSON, as .geojson",
    ".gpkg": "GeoPackage (pick the layer when the file holds several)",
    ".zip": "zipped Shapefile (.shp, .shx, .dbf, .prj, .cpg)",
    ".shp": "Shapefile beside its .shx, .dbf, .prj (read only; write .zip)",
    ".csv": "CSV: points from longitude/latitude columns, or a table; UTF-8 or GBK/GB18030",
    ".xlsx": "Excel workbook (first sheet, or the one named by the layer option): points "
             "from longitude/latitude columns, or a table",
}

_WRITABLE = (".geojson", ".json", ".gpkg", ".zip", ".csv", ".xlsx")

#: Coordinate column names tried, in order, when the default ``lon``/``lat`` are absent.
_COORDINATE_NAMES = (("lon", "lat"), ("经度", "纬度"), ("longitude", "latitude"))

#: Fields that identify a feature, tried in order, to label it "feature 3 (id=O-17)".
_ID_FIELDS = ("id", "code")

_USE_ARROW = importlib.util.find_spec("pyarrow") is not None

_GDAL_ERRORS = (
    DataSourceError, DataLayerError, FieldError, FeatureError, GeometryError, CRSError,
)

#: Dimension flags of WKB geometry types (ISO: +1000 Z, +2000 M; EWKB: high bits).
_WKB_Z, _WKB_M, _WKB_SRID = 0x80000000, 0x40000000, 0x20000000


@dataclass
class RawLayer:
    """A file as read: its frame in EPSG:4326 and the parsing problems found in it.

    Attributes
    ----------
    frame
        A GeoDataFrame (points, polygons …) or a DataFrame (a table such as a ledger).
        Every row of the file is kept, even those with problems, so the checks can report
        their other fields too; rows whose coordinates are unusable have a None geometry.
    labels
        Per row of ``frame``, how a user finds it: ``"row 17"`` for a CSV (the
        spreadsheet's row number, the header being row 1) or ``"feature 3 (id=O-17)"``
        for a GeoJSON / GeoPackage / Shapefile feature, counted from 1.
    problems
        Parsing-level problems, in file order.
    source
        The file's name as given, the ``source`` of every problem.
    """

    frame: gpd.GeoDataFrame | pd.DataFrame
    labels: list[str] | None
    problems: list[Problem] = field(default_factory=list)
    source: str = ""
    #: The CSV / XLSX columns the coordinates were read from, when they were.
    coordinates: tuple[str, str] | None = None
    #: What the coordinates were read as: the source CRS (None: WGS84) and the offset
    #: datum undone (gcj02 / bd09), for the place checks' hints (``layers.checks``).
    crs: pyproj.CRS | None = None
    datum: str | None = None


# --------------------------------------------------------------------------- reading


def read_file(
    path: str | os.PathLike,
    *,
    layer: str | None = None,
    crs: str | None = None,
    lon: str = "lon",
    lat: str = "lat",
    encoding: str | None = None,
) -> RawLayer:
    """Read a layer file into EPSG:4326, with every parsing problem named by row or feature.

    Parameters
    ----------
    path
        A ``.geojson`` / ``.json``, ``.gpkg``, ``.zip`` (a zipped Shapefile), ``.shp`` or
        ``.csv`` file.
    layer
        The GeoPackage layer to read (needed when it holds several), or the Shapefile to
        read in a zip holding several.
    crs
        What the coordinates are in: any code pyproj understands (``"EPSG:4490"``,
        ``"4547"``), or the offset datums ``"gcj02"`` (Amap, Tencent) and ``"bd09"``
        (Baidu), case and dashes ignored. Default: the file's declared CRS; GeoJSON and
        CSV default to WGS84. A file that declares a CRS different from ``crs`` is an
        error, except a WGS84 file given an offset datum (GCJ-02 data is routinely
        labelled WGS84); for a CSV, which declares nothing, ``crs`` always wins.
    lon, lat
        The CSV columns holding the coordinates (``"经度"``, ``"纬度"``, ``"x"`` …), matched
        case-insensitively. A CSV without them is read as a table without geometry.
    encoding
        CSV or Shapefile text encoding (ignored for GeoJSON and GeoPackage, which are
        UTF-8). Default for CSV: UTF-8 (with or without BOM), falling back to GB18030
        (which covers GBK); for a Shapefile, what its ``.cpg`` or language driver id
        says, and when it says nothing, UTF-8 falling back to GB18030 as for CSV.

    Returns
    -------
    RawLayer
        The frame (GeoDataFrame in EPSG:4326, or DataFrame for a table), a label per
        row, the problems found and the source name.

    Raises
    ------
    InputError
        When the file cannot be read at all (missing, corrupt, unknown extension, several
        layers and none chosen, a CRS that conflicts with the file's), or ``crs`` is not
        understood. Problems with single rows or features do not raise; they are in
        ``RawLayer.problems``.

    Examples
    --------
    >>> layer = read_file("outlets.csv", crs="gcj02")          # doctest: +SKIP
    >>> layer.frame.crs.to_epsg(), layer.labels[0]             # doctest: +SKIP
    (4326, 'row 2')
    """
    source = os.fspath(path)
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        known = ", ".join(FORMATS)
        _fail(source, f"unknown file type {ext or '(no extension)'!r}; use one of {known}")
    if not path.is_file():
        _fail(source, "file not found" if not path.exists() else "is not a file")
    given = _parse_crs(crs, source)
    if ext == ".csv":
        return _read_csv(path, source, given, crs, lon, lat, encoding)
    if ext == ".xlsx":
        return _read_xlsx(path, source, layer, given, crs, lon, lat)
    return _read_vector(path, ext, source, layer, given, crs, encoding)


def _fail(source: str, message: str, where: str | None = None) -> NoReturn:
    raise InputError([Problem(source, where, None, message)])


# --- CRS


@dataclass(frozen=True)
class _GivenCRS:
    """What ``crs=`` said: an offset datum of WGS84 lon/lat, or a pyproj CRS."""

    datum: str | None
    crs: pyproj.CRS


_WGS84 = pyproj.CRS.from_user_input(STORAGE_CRS)


def _parse_crs(crs: str | None, source: str) -> _GivenCRS | None:
    if crs is None:
        return None
    key = "".join(ch for ch in str(crs).lower() if ch not in "-_ ")
    if key in OFFSET_DATUMS:
        return _GivenCRS(key, _WGS84)
    try:
        return _GivenCRS(None, pyproj.CRS.from_user_input(crs))
    except pyproj.exceptions.CRSError:
        _fail(source, f"unknown CRS {crs!r}: give an EPSG code such as EPSG:4490, "
                      "or gcj02 / bd09")


def _is_wgs84(crs: pyproj.CRS) -> bool:
    # EPSG:4326 and OGC:CRS84 differ only in axis order, which geopandas ignores.
    return crs.equals(_WGS84, ignore_axis_order=True)


def _crs_name(crs: pyproj.CRS) -> str:
    authority = crs.to_authority()
    return ":".join(authority) if authority else crs.name


def _source_crs(
    declared: pyproj.CRS | None, given: _GivenCRS | None, crs_text: str | None, source: str,
) -> tuple[pyproj.CRS, str | None]:
    """The CRS the coordinates are in, and the offset datum to undo (if any)."""
    if given is None:
        return (declared if declared is not None else _WGS84), None
    if declared is None:
        return given.crs, given.datum
    if given.datum is not None and _is_wgs84(declared):
        return _WGS84, given.datum
    if given.datum is None and declared.equals(given.crs, ignore_axis_order=True):
        return declared, None
    _fail(source, f"file declares {_crs_name(declared)} but --crs {crs_text} was given")


def _to_storage(
    frame: gpd.GeoDataFrame, src: pyproj.CRS, datum: str | None,
) -> gpd.GeoDataFrame:
    if _is_wgs84(src):
        frame = frame.set_crs(STORAGE_CRS, allow_override=True)
    else:
        frame = frame.set_crs(src, allow_override=True).to_crs(STORAGE_CRS)
    if datum is not None:
        frame = frame.set_geometry(
            gpd.GeoSeries(to_wgs84(frame.geometry.values, datum), index=frame.index,
                          crs=STORAGE_CRS))
    return frame


def _range_problems(
    frame: gpd.GeoDataFrame, labels: np.ndarray, source: str, hint: str,
) -> tuple[gpd.GeoDataFrame, list[tuple[int, Problem]]]:
    """Flag (and blank) geometries whose lon/lat fall outside the globe: projected
    coordinates taken as degrees, or points a transformation could not map. Problems
    come with the position of their row."""
    geoms = np.asarray(frame.geometry.values, dtype=object)
    bounds = shapely.bounds(geoms)
    present = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    # NaN and inf compare False, so coordinates PROJ could not map count as outside too.
    inside = ((bounds[:, 0] >= -180) & (bounds[:, 2] <= 180)
              & (bounds[:, 1] >= -90) & (bounds[:, 3] <= 90))
    bad = np.flatnonzero(present & ~inside)
    if not len(bad):
        return frame, []
    problems = [
        (i, Problem(source, labels[i], "geometry",
                    f"coordinates out of lon/lat range (x {bounds[i, 0]:.10g}, "
                    f"y {bounds[i, 1]:.10g}){hint}"))
        for i in bad
    ]
    frame = frame.copy()
    frame.loc[frame.index[bad], frame.geometry.name] = None
    return frame, problems


# --- CSV


def _decode(data: bytes, encoding: str | None, source: str) -> str:
    if encoding is not None:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            _fail(source, f"unknown encoding {encoding!r}")
        try:
            # A BOM is noise to every reader, whichever UTF-8 the user named.
            return data.decode("utf-8-sig" if codec == "utf-8" else codec)
        except UnicodeDecodeError as err:
            _fail(source, f"is not valid {encoding} text (byte {err.start}); "
                          "give the right encoding")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        _fail(source, "is neither UTF-8 nor GB18030/GBK text; give its encoding")


def _find_column(columns: pd.Index, name: str) -> str | None:
    if name in columns:
        return name
    matches = [c for c in columns if c.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _read_csv(
    path: Path, source: str, given: _GivenCRS | None, crs_text: str | None,
    lon: str, lat: str, encoding: str | None,
) -> RawLayer:
    text = _decode(path.read_bytes(), encoding, source)
    try:
        # Text only, and "" stays "": codes keep their leading zeros, the checks convert.
        # Blank lines are kept so that positions stay spreadsheet rows; dropped below.
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                            skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        _fail(source, "is empty: no header row")
    except pd.errors.ParserError as err:
        _fail(source, f"is not well-formed CSV: {_parser_message(err)}")
    return _text_table(frame, source, given, crs_text, lon, lat)


def _read_xlsx(
    path: Path, source: str, sheet: str | None, given: _GivenCRS | None,
    crs_text: str | None, lon: str, lat: str,
) -> RawLayer:
    # calamine (Rust) reads a 10⁵-row sheet in ~1.4 s where openpyxl takes ~17 s.
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        book = CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError) as err:
        _fail(source, f"is not a readable .xlsx workbook: {type(err).__name__}: {err}")
    try:
        names = book.sheet_names
        if not names:
            _fail(source, "holds no sheet")
        if sheet is not None and sheet not in names:
            _fail(source, f"has no sheet {sheet!r}; it holds {', '.join(names)}")
        rows = book.get_sheet_by_name(sheet or names[0]).to_python(skip_empty_area=False)
    except CalamineError as err:
        _fail(source, f"is not a readable .xlsx workbook: {err}")
    finally:
        book.close()
    if not rows or all(v in (None, "") for v in rows[0]):
        _fail(source, "is empty: no header row")
    header = ["" if v is None else str(v) for v in rows[0]]
    while header and header[-1] == "":  # formatting may widen the sheet with blank columns
        header.pop()
    width = len(header)
    body = [tuple(row[:width]) + ("",) * (width - len(row)) for row in rows[1:]]
    frame = pd.DataFrame(body, columns=header, dtype=object)
    frame = frame.apply(_cell_text)
    return _text_table(frame, source, given, crs_text, lon, lat)


def _cell_text(column: pd.Series) -> pd.Series:
    """Excel cells as the text a CSV would hold: numbers whole without ".0", floats as
    their shortest round-tripping form, dates ISO, blanks "" (as a CSV read here)."""
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        # Text cells only (the usual sheet column): one pass in C, no per-cell types.
        return column.where(column.notna(), "").astype(str)
    values = column.to_numpy(dtype=object)
    out = np.full(len(values), "", dtype=object)
    present = ~pd.isna(column).to_numpy()
    kinds = np.array([type(v).__name__ for v in values[present]], dtype=object)
    picked = values[present]
    text = np.empty(len(picked), dtype=object)
    for kind in np.unique(kinds):  # a handful of cell types, not a loop over cells
        at = kinds == kind
        chunk = picked[at]
        if kind == "float":
            numbers = chunk.astype(float)
            whole = np.isfinite(numbers) & (numbers % 1 == 0) & (np.abs(numbers) < 2**53)
            shown = np.array([repr(v) for v in numbers.tolist()], dtype=object)
            shown[whole] = numbers[whole].astype(np.int64).astype(str)
            text[at] = shown
        elif kind in ("datetime", "Timestamp"):
            stamps = pd.to_datetime(pd.Series(chunk))
            midnight = (stamps == stamps.dt.normalize()).to_numpy()
            shown = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy(dtype=object)
            shown[midnight] = stamps[midnight].dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
            text[at] = shown
        elif kind == "bool":
            text[at] = np.where(chunk.astype(bool), "true", "false")
        else:
            text[at] = [str(v) for v in chunk]
    out[present] = text
    return pd.Series(out, index=column.index, dtype=str)


def _coordinate_columns(columns: pd.Index, lon: str, lat: str) -> tuple[str | None, str | None]:
    lon_col, lat_col = _find_column(columns, lon), _find_column(columns, lat)
    if lon_col is None and lat_col is None and (lon, lat) == _COORDINATE_NAMES[0]:
        for x, y in _COORDINATE_NAMES[1:]:
            lon_col, lat_col = _find_column(columns, x), _find_column(columns, y)
            if lon_col is not None or lat_col is not None:
                break
    return lon_col, lat_col


def _text_table(
    frame: pd.DataFrame, source: str, given: _GivenCRS | None, crs_text: str | None,
    lon: str, lat: str,
) -> RawLayer:
    """A CSV or a sheet read as text: points from its coordinate columns, or a table."""
    frame.columns = frame.columns.astype(str).str.strip()
    rows = np.arange(len(frame)) + 2  # the header is row 1
    blank = (frame.apply(lambda column: column.str.strip()) == "").all(axis=1).to_numpy()
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        rows = rows[~blank]
    labels = ("row " + pd.Series(rows, dtype=str)).to_numpy(dtype=object)

    lon_col, lat_col = _coordinate_columns(frame.columns, lon, lat)
    if lon_col is None and lat_col is None:
        return RawLayer(frame, labels.tolist(), [], source)
    if lon_col is None or lat_col is None:
        pair = next(((x, y) for x, y in _COORDINATE_NAMES if lon_col in (x, None)
                     and lat_col in (y, None)), (lon, lat))
        have, lack = (lat_col, pair[0]) if lon_col is None else (lon_col, pair[1])
        problem = Problem(source, None, None,
                          f"has a {have!r} column but no {lack!r} column; both are needed "
                          "for points")
        return RawLayer(frame, labels.tolist(), [problem], source)

    src, datum = _source_crs(None, given, crs_text, source)  # a CSV declares none
    geographic = src.is_geographic
    x, x_ok, x_bad = _coordinate_problems(frame[lon_col], lon_col, 180.0 if geographic else None)
    y, y_ok, y_bad = _coordinate_problems(frame[lat_col], lat_col, 90.0 if geographic else None)
    ok = x_ok & y_ok
    geoms = np.full(len(frame), None, dtype=object)
    geoms[ok] = shapely.points(x[ok], y[ok])
    points = gpd.GeoDataFrame(frame.drop(columns=[lon_col, lat_col]), geometry=geoms)
    points = _to_storage(points, src, datum)

    if geographic and len(y_bad):
        # A latitude beyond ±90 beside a longitude within ±90 (China lies at 73–135°E):
        # the columns are most likely exchanged.
        pos = y_bad["position"].to_numpy()
        with np.errstate(invalid="ignore"):
            swapped = ((np.abs(y[pos]) > 90) & (np.abs(y[pos]) <= 180)
                       & (np.abs(x[pos]) <= 90))
        y_bad.loc[swapped, "message"] += (f"; {lon_col} and {lat_col} look swapped: check "
                                          "which column is which")
        y_bad.loc[swapped, "kind"] += " (lon/lat swapped?)"
    # One problem per bad value, row by row, lon before lat: the order a user fixes them.
    bad = pd.concat([x_bad.assign(order=0), y_bad.assign(order=1)])
    bad = bad.sort_values(["position", "order"], kind="stable")
    problems = [Problem(source, labels[pos], column, message, kind)
                for pos, column, message, kind in zip(bad["position"], bad["field"],
                                                      bad["message"], bad["kind"], strict=True)]
    if not geographic:
        # Rows with unparsable values have no geometry, so these never repeat a problem.
        points, more = _range_problems(
            points, labels, source, f"; check that the coordinates are in {_crs_name(src)}")
        problems += [problem for _, problem in more]
    return RawLayer(points, labels.tolist(), problems, source, (lon_col, lat_col),
                    None if _is_wgs84(src) else src, datum)


def _parser_message(err: Exception) -> str:
    # pandas: "Error tokenizing data. C error: Expected 5 fields in line 7, saw 6"
    text = str(err).strip()
    return text.split("C error: ", 1)[-1]


def _coordinate_problems(
    values: pd.Series, column: str, limit: float | None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Parse one coordinate column: (numbers, ok mask, problems as position/field/message).

    ``limit`` is the absolute bound (180 for longitude, 90 for latitude) or None for a
    projected CRS, where only finiteness is checked here.
    """
    raw = values.to_numpy(dtype=object)
    stripped = values.str.strip()
    numbers = pd.to_numeric(stripped, errors="coerce").to_numpy(dtype=float)
    missing = (stripped == "").to_numpy()
    not_number = np.isnan(numbers) & ~missing
    if limit is None:
        out_of_range = np.isinf(numbers)
        why = "is not a finite number"
    else:
        out_of_range = ~np.isnan(numbers) & ~(np.abs(numbers) <= limit)
        why = f"out of range [-{limit:g}, {limit:g}]"
    messages = np.full(len(values), "", dtype=object)
    messages[missing] = "is missing"
    messages[not_number] = [f'"{v.strip()}" is not a number' for v in raw[not_number]]
    messages[out_of_range] = [f"{v.strip()} {why}" for v in raw[out_of_range]]
    kinds = np.full(len(values), "", dtype=object)
    kinds[missing], kinds[not_number], kinds[out_of_range] = "is missing", "is not a number", why
    bad = missing | not_number | out_of_range
    positions = np.flatnonzero(bad)
    problems = pd.DataFrame({"position": positions, "field": column,
                             "message": messages[positions], "kind": kinds[positions]})
    return numbers, ~bad, problems


# --- vector files


def _zip_member(path: Path, layer: str | None, source: str) -> str:
    """The name of the one Shapefile inside a zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        _fail(source, f"is not a readable zip file: {err}")
    shapefiles = sorted(
        name for name in map(_gdal_zip_name, infos)
        if name.lower().endswith(".shp") and not name.startswith("__MACOSX/")
    )
    if layer is not None:
        chosen = [n for n in shapefiles if Path(n).stem == layer or n == layer]
        if not chosen:
            _fail(source, f"holds no Shapefile named {layer!r}; it holds "
                          f"{', '.join(shapefiles) or 'none'}")
        shapefiles = chosen[:1]
    if not shapefiles:
        _fail(source, "holds no Shapefile (.shp)")
    if len(shapefiles) > 1:
        _fail(source, f"holds {len(shapefiles)} Shapefiles: {', '.join(shapefiles)}; "
                      "choose one with the layer option")
    return shapefiles[0]


def _gdal_zip_name(info: zipfile.ZipInfo) -> str:
    # Without the UTF-8 flag Python decodes names as CP437; GDAL keeps names that are
    # valid UTF-8 as such (zip tools that omit the flag), so do the same to match it.
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return info.filename


def _sidecars(shp: Path) -> tuple[bytes | None, bool]:
    """A bare Shapefile's .dbf bytes (None if absent) and whether it has a .cpg."""

    def sibling(ext: str) -> Path | None:
        found = [p for p in (shp.with_suffix(ext), shp.with_suffix(ext.upper())) if p.is_file()]
        return found[0] if found else None

    dbf = sibling(".dbf")
    return (dbf.read_bytes() if dbf else None), sibling(".cpg") is not None


def _zipped_sidecars(path: Path, member: str) -> tuple[bytes | None, bool]:
    """As ``_sidecars``, for a Shapefile inside a zip."""
    stem = member[:-4]
    with zipfile.ZipFile(path) as archive:
        parts = {name[-4:].lower(): info for info in archive.infolist()
                 if (name := _gdal_zip_name(info))[:-4] == stem}
        dbf = archive.read(parts[".dbf"]) if ".dbf" in parts else None
    return dbf, ".cpg" in parts


def _dbf_encoding(sidecars: tuple[bytes | None, bool]) -> str | None:
    """The encoding of a .dbf that names none, guessed as CSV's is; None to let GDAL decide.

    Without a .cpg or a language driver id (byte 29), GDAL assumes ISO-8859-1 and turns
    the GBK text of Chinese desktop GIS exports into mojibake without a word. So, as for
    CSV: UTF-8 if the records decode as UTF-8, else GB18030 (a superset of GBK).
    """
    dbf, has_cpg = sidecars
    if dbf is None or has_cpg or len(dbf) < 32 or dbf[29] != 0:
        return None
    header_size = struct.unpack_from("<H", dbf, 8)[0]
    # Field names (11 bytes at the head of each 32-byte descriptor) take the records'
    # encoding; the rest of a descriptor is binary.
    names = []
    for at in range(32, header_size - 1, 32):
        if dbf[at] == 0x0D:  # the descriptors' terminator
            break
        names.append(dbf[at:at + 11].split(b"\0", 1)[0])
    text = b"".join(names) + dbf[header_size:]
    if text.isascii():
        return None
    for candidate in ("UTF-8", "GB18030"):
        try:
            text.decode(candidate)
        except UnicodeDecodeError:
            continue
        return candidate
    return None


def _gpkg_layer(path: Path, layer: str | None, source: str) -> str:
    names = [str(name) for name in pyogrio.list_layers(path)[:, 0]]
    if layer is not None:
        if layer not in names:
            _fail(source, f"has no layer {layer!r}; it holds {', '.join(names) or 'none'}")
        return layer
    if not names:
        _fail(source, "holds no layer")
    if len(names) > 1:
        _fail(source, f"holds {len(names)} layers: {', '.join(names)}; choose one with the "
                      "layer option")
    return names[0]


def _feature_labels(frame: pd.DataFrame) -> np.ndarray:
    numbers = pd.Series(np.arange(1, len(frame) + 1), dtype=str)
    labels = "feature " + numbers
    key = next((f for f in _ID_FIELDS if f in frame.columns), None)
    if key is not None:
        values = frame[key].reset_index(drop=True)
        has = values.notna() & (values.astype(str).str.strip() != "")
        labels = labels.where(~has, labels + f" ({key}=" + values.astype(str) + ")")
    return labels.to_numpy(dtype=object)


def _read_vector(
    path: Path, ext: str, source: str, layer: str | None, given: _GivenCRS | None,
    crs_text: str | None, encoding: str | None,
) -> RawLayer:
    shapefile = ext in (".zip", ".shp")
    try:
        if ext == ".zip":
            member = _zip_member(path, layer, source)
            target, layer = f"/vsizip/{path.resolve()}/{member}", None
            if encoding is None:
                encoding = _dbf_encoding(_zipped_sidecars(path, member))
        elif ext == ".shp":
            target, layer = str(path), None
            if encoding is None:
                encoding = _dbf_encoding(_sidecars(path))
        elif ext == ".gpkg":
            target, layer = str(path), _gpkg_layer(path, layer, source)
        else:
            target, layer = str(path), None
        with warnings.catch_warnings():
            # Reported below, feature by feature, rather than as GDAL's one warning.
            warnings.filterwarnings("ignore", message="Non closed ring", category=RuntimeWarning)
            frame = pyogrio.read_dataframe(
                target, layer=layer, encoding=encoding if shapefile else None,
                use_arrow=_USE_ARROW, on_invalid="ignore", fid_as_index=True)
    except (*_GDAL_ERRORS, OSError, zipfile.BadZipFile) as err:
        _fail(source, f"cannot be read: {err}")
    fids = frame.index.to_numpy()
    frame = frame.reset_index(drop=True)
    labels = _feature_labels(frame)
    if not isinstance(frame, gpd.GeoDataFrame):
        return RawLayer(frame, labels.tolist(), [], source)

    geoms, problems = _geometry_problems(
        frame, fids, labels, source, target, layer, encoding if shapefile else None)
    if geoms is None:  # no feature has a geometry: a table written as GeoJSON, say
        table = pd.DataFrame(frame.drop(columns=frame.geometry.name))
        return RawLayer(table, labels.tolist(), [], source)
    frame = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs))

    declared = frame.crs
    if ext in (".geojson", ".json") and declared is not None and _is_wgs84(declared):
        # GDAL reports RFC 7946's WGS84 whether or not the file says so; a crs given for
        # a GeoJSON written in another CRS without saying so must win over that default.
        declared = None
    src, datum = _source_crs(declared, given, crs_text, source)
    frame = _to_storage(frame, src, datum)
    if _is_wgs84(src):
        hint = "; the file is read as WGS84 longitude/latitude: if it is projected, give its CRS"
    else:
        hint = f"; they do not transform from {_crs_name(src)}"
    frame, more = _range_problems(frame, labels, source, hint)
    problems += more
    problems.sort(key=lambda item: item[0])
    return RawLayer(frame, labels.tolist(), [p for _, p in problems], source,
                    crs=None if _is_wgs84(src) else src, datum=datum)


def _geometry_problems(
    frame: gpd.GeoDataFrame, fids: np.ndarray, labels: np.ndarray, source: str,
    target: str, layer: str | None, encoding: str | None,
) -> tuple[np.ndarray | None, list[tuple[int, Problem]]]:
    """Missing, empty and unclosed geometries, by feature position; and the geometries
    with unclosed rings closed. None instead of geometries when no feature has one."""
    geoms = np.asarray(frame.geometry.values, dtype=object)
    missing = np.flatnonzero(shapely.is_missing(geoms))
    problems: list[tuple[int, Problem]] = []
    if len(missing):
        # Re-read the raw WKB of the few features GEOS returned nothing for: either the
        # file has no geometry there, or GEOS refused it (an unclosed ring, say).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Non closed ring", category=RuntimeWarning)
            _, _, wkb, _ = pyogrio.raw.read(target, layer=layer, fids=fids[missing],
                                            columns=[], encoding=encoding)
        if len(missing) == len(geoms) and all(blob is None for blob in wkb):
            return None, []
        fixed = shapely.from_wkb(np.asarray(wkb, dtype=object), on_invalid="fix")
        for position, blob, geometry in zip(missing, wkb, fixed, strict=True):
            if blob is None:
                messages = ["is missing"]
            else:
                messages = _wkb_ring_faults(blob) or ["could not be read (malformed)"]
                geoms[position] = geometry
            problems += [(position, Problem(source, labels[position], "geometry", m))
                         for m in messages]
    empty = np.flatnonzero(shapely.is_empty(geoms))
    problems += [(i, Problem(source, labels[i], "geometry", "is empty")) for i in empty]
    return geoms, problems


def _wkb_ring_faults(wkb: bytes) -> list[str]:
    """Which rings of one WKB geometry are unclosed or too short, as messages.

    Runs only on the rare features GEOS refused, one at a time, so plain Python is fine.
    Rings are numbered from 0 (the exterior ring), polygons of a multipolygon likewise.
    Returns [] when the WKB cannot be walked (a type this walker does not know).
    """
    faults: list[str] = []

    def walk(offset: int, prefix: str) -> int:
        order = "<" if wkb[offset] == 1 else ">"
        (code,) = struct.unpack_from(order + "I", wkb, offset + 1)
        offset += 5
        if code & _WKB_SRID:
            offset += 4
        dims = 2 + bool(code & _WKB_Z) + bool(code & _WKB_M)
        code &= 0x0FFFFFFF
        kind, iso = code % 1000, code // 1000
        dims += (iso in (1, 3)) + (iso in (2, 3))
        if kind == 1:
            return offset + 8 * dims
        (count,) = struct.unpack_from(order + "I", wkb, offset)
        offset += 4
        if kind == 2:
            return offset + 8 * dims * count
        if kind == 3:
            for ring in range(count):
                (n,) = struct.unpack_from(order + "I", wkb, offset)
                xy = np.frombuffer(wkb, dtype=order + "f8", count=n * dims,
                                   offset=offset + 4).reshape(n, dims)[:, :2]
                if n and not np.array_equal(xy[0], xy[-1]):
                    faults.append(f"{prefix}ring {ring} is not closed")
                elif 0 < n < 4:
                    faults.append(f"{prefix}ring {ring} has {n} points; a ring needs 4 or more")
                offset += 4 + 8 * dims * n
            return offset
        if kind in (4, 5, 6, 7):
            for part in range(count):
                offset = walk(offset, f"{prefix}polygon {part} " if kind == 6
                              else f"{prefix}part {part} ")
            return offset
        raise ValueError(f"WKB type {code}")

    try:
        walk(0, "")
    except (ValueError, struct.error, IndexError):
        return []
    return faults


# --------------------------------------------------------------------------- writing


def write_file(
    frame: gpd.GeoDataFrame | pd.DataFrame,
    path: str | os.PathLike,
    *,
    layer: str | None = None,
    encoding: str = "utf-8",
    lon: str = "lon",
    lat: str = "lat",
    titles: Mapping[str, str] | None = None,
) -> None:
    """Write a layer to a file, atomically: a failed export leaves no half-written file.

    Parameters
    ----------
    frame
        A GeoDataFrame (reprojected to EPSG:4326 if it is in another CRS; taken as
        EPSG:4326 if it has none) or a DataFrame (a table).
    path
        ``.geojson`` / ``.json`` (RFC 7946, UTF-8, Chinese written as is), ``.gpkg``
        (other layers already in the file are kept; ``layer`` replaces its namesake),
        ``.zip`` (a zipped Shapefile in UTF-8 with a ``.cpg``; field names longer than
        Shapefile's 10 bytes are shortened, with a warning listing the new names) or
        ``.csv`` (points as ``lon`` / ``lat`` columns, a table as is) or ``.xlsx`` (one
        sheet named ``layer``, as CSV; codes stay text cells, numbers number cells).
    layer
        Layer name inside a GeoPackage, or the Shapefile's name inside the zip.
        Default: the file's stem.
    encoding
        CSV only. ``"utf-8"`` (the default) writes UTF-8 *with* a BOM, so that Excel
        shows Chinese rather than mojibake; every reader here skips the BOM. Use
        ``"gb18030"`` or ``"gbk"`` for older Excel set-ups that expect the ANSI code page.
    lon, lat
        CSV / XLSX column names for the point coordinates.
    titles
        CSV / XLSX only: column → header (the schema's Chinese titles,
        ``gis_grid.model.field_titles_zh``); columns not in it keep their names.

    Raises
    ------
    InputError
        Unknown extension or encoding, a frame a format cannot hold (polygons to CSV, a
        table to a Shapefile), or text the encoding cannot represent.
    StoreError
        The file could not be written (permissions, disk full, GDAL failure).

    Examples
    --------
    >>> write_file(layer.frame, "outlets.csv", encoding="gb18030")    # doctest: +SKIP
    >>> write_file(grids, "grids.zip")                                 # doctest: +SKIP
    """
    target = os.fspath(path)
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _WRITABLE:
        _fail(target, f"cannot write {ext or '(no extension)'!r} files; use one of "
                      f"{', '.join(_WRITABLE)}")
    if isinstance(frame, gpd.GeoDataFrame):
        if frame.crs is None:
            frame = frame.set_crs(STORAGE_CRS)
        elif not _is_wgs84(frame.crs):
            frame = frame.to_crs(STORAGE_CRS)
    name = layer or path.stem
    try:
        # Beside the target, so os.replace is a rename on one file system.
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            staged = Path(tmp) / path.name
            if ext in (".geojson", ".json"):
                _write_geojson(frame, staged, name)
            elif ext == ".gpkg":
                if path.exists():
                    shutil.copy2(path, staged)
                # Not promoted to Multi*: a Polygon layer must read back as Polygons.
                _write_ogr(frame, staged, name, driver="GPKG", promote_to_multi=False)
            elif ext == ".zip":
                _write_zipped_shapefile(frame, staged, name, target)
            elif ext == ".xlsx":
                _write_xlsx(_text_columns(frame, target, lon, lat, titles), staged, name)
            else:
                table = _text_columns(frame, target, lon, lat, titles)
                staged.write_bytes(_csv_bytes(table, target, encoding))
            os.replace(staged, path)
    except InputError:
        raise
    except (*_GDAL_ERRORS, OSError) as err:
        raise StoreError(f"{target}: cannot be written: {err}") from err


def _write_ogr(frame: pd.DataFrame, path: Path, name: str, driver: str, **options) -> None:
    pyogrio.write_dataframe(frame, path, layer=name, driver=driver, **options)


def _write_geojson(frame: pd.DataFrame, path: Path, name: str) -> None:
    # RFC7946=YES: WGS84, counter-clockwise exterior rings, no legacy "crs" member.
    with warnings.catch_warnings():
        # A table has no SRS to set; RFC 7946 fixes it anyway.
        warnings.filterwarnings("ignore", message="No SRS set", category=RuntimeWarning)
        # RFC 7946 mode rounds to 7 decimals (~1 cm) unless told otherwise; 15 keeps every
        # bit of a double, so an export imports back unchanged.
        _write_ogr(frame, path, name, driver="GeoJSON",
                   layer_options={"RFC7946": "YES", "COORDINATE_PRECISION": "15"})


def shapefile_names(columns: list[str]) -> dict[str, str]:
    """New names for the columns that do not fit a dBASE field name (10 bytes)."""

    def clip(name: str, size: int) -> str:
        return name.encode("utf-8")[:size].decode("utf-8", errors="ignore")

    used = {c.lower() for c in columns if len(c.encode("utf-8")) <= 10}
    renamed: dict[str, str] = {}
    for column in columns:  # columns, not features: a handful
        if len(column.encode("utf-8")) <= 10:
            continue
        short, k = clip(column, 10), 0
        while short.lower() in used:
            k += 1
            suffix = f"_{k}"
            short = clip(column, 10 - len(suffix)) + suffix
        used.add(short.lower())
        renamed[column] = short
    return renamed


def _write_zipped_shapefile(frame: pd.DataFrame, path: Path, name: str, target: str) -> None:
    if not isinstance(frame, gpd.GeoDataFrame):
        _fail(target, "a table without geometry cannot be a Shapefile; write .csv instead")
    attributes = [c for c in frame.columns if c != frame.geometry.name]
    renamed = shapefile_names(attributes)
    if renamed:
        listing = ", ".join(f"{old} → {new}" for old, new in renamed.items())
        warnings.warn(f"{target}: Shapefile field names hold 10 bytes at most; renamed "
                      f"{listing}", UserWarning, stacklevel=3)
        frame = frame.rename(columns=renamed)
    folder = path.parent / "shapefile"
    folder.mkdir()
    _write_ogr(frame, folder / f"{name}.shp", name, driver="ESRI Shapefile", encoding="UTF-8")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for part in sorted(folder.iterdir()):
            archive.write(part, arcname=part.name)


def _text_columns(frame: pd.DataFrame, target: str, lon: str, lat: str,
                  titles: Mapping[str, str] | None) -> pd.DataFrame:
    """The plain table a CSV or a sheet holds: points as lon/lat columns, headers titled."""
    table = pd.DataFrame(frame)
    if isinstance(frame, gpd.GeoDataFrame):
        geoms = np.asarray(frame.geometry.values, dtype=object)
        kinds = shapely.get_type_id(geoms)
        others = np.flatnonzero((kinds != shapely.GeometryType.POINT) & (kinds >= 0))
        if len(others):
            _fail(target, f"{Path(target).suffix.upper()[1:]} holds points only, but "
                          f"feature {others[0] + 1} is a {geoms[others[0]].geom_type}; "
                          "write .geojson, .gpkg or .zip instead")
        table = table.drop(columns=[frame.geometry.name, lon, lat], errors="ignore")
        table[lon] = shapely.get_x(geoms)
        table[lat] = shapely.get_y(geoms)
    if titles:
        table = table.rename(columns=dict(titles))
    return table


def _write_xlsx(table: pd.DataFrame, path: Path, name: str) -> None:
    """One sheet, written streaming (openpyxl's write-only mode). Numbers are number
    cells holding every digit: openpyxl writes floats with 16 significant digits, one
    short of a double, so a coordinate would come back a nanometre off and every row of
    an unchanged workbook would count as changed; float cells are therefore given their
    shortest exact text (``repr``) as the cell's number."""
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet(name[:31])
    columns = []
    for column in table.columns:
        values = table[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            # Excel has no time zones: the time in ISO 8601 with its offset, as text.
            text = values.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
            columns.append(text.where(values.notna(), None).tolist())
        elif pd.api.types.is_datetime64_any_dtype(values.dtype):
            columns.append([None if pd.isna(v) else v.to_pydatetime() for v in values])
        elif pd.api.types.is_float_dtype(values.dtype):
            cells = []
            for v in values.to_numpy(dtype=float, na_value=np.nan).tolist():
                if v != v or v in (float("inf"), float("-inf")):  # NaN, inf: empty
                    cells.append(None)
                    continue
                cell = WriteOnlyCell(sheet, value=0)
                cell._value = repr(v)  # the number's exact text, written as is
                cells.append(cell)
            columns.append(cells)
        else:
            plain = values.astype(object).where(values.notna(), None)
            columns.append([v.item() if isinstance(v, np.generic) else v for v in plain])
    sheet.append([str(c) for c in table.columns])
    for row in zip(*columns, strict=True):
        sheet.append(row)
    book.save(path)


def _csv_bytes(table: pd.DataFrame, target: str, encoding: str) -> bytes:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        _fail(target, f"unknown encoding {encoding!r}")
    text = table.to_csv(index=False, lineterminator="\n")
    try:
        return text.encode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeEncodeError as err:
        row = text.count("\n", 0, err.start) + 1
        _fail(target, f"{text[err.start:err.end]!r} cannot be written in {encoding}; "
                      "use utf-8 or gb18030", where=f"row {row}")
