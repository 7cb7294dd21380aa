"""The grid layer as validation and repair read it, and their tolerances (plan code B2,
see ARCHITECTURE.md).

``_prepare`` turns a ``grids`` GeoDataFrame, with an optional territory and household
points, into a ``_Layer``: geometries in the layer's metric CRS
(``gis_grid.crs.metric_crs``), carried there with their edges densified
(``gis_grid.crs.to_crs``, as the territory), made valid and polygonal where they are not
(GEOS's reason kept for the report), and the parsed codes, levels, institutions, parents and
(institution, level) groups. ``_Tolerances`` holds the three tolerances in metres / m²
(defaults ``DEFAULT_*``, explained in ``gis_grid.topology``). Shared by
``gis_grid.topology.validate`` and ``gis_grid.topology.repair``.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.crs import metric_crs, to_crs
from gis_grid.errors import InputError, Problem
from gis_grid.geometry import MULTIPOLYGON, POLYGON, polygonal, type_names
from gis_grid.model import STORAGE_CRS

DEFAULT_GAP_WIDTH = 1.0
DEFAULT_SLIVER_AREA = 1.0
#: 10 cm: grids and territory are densified every 500 m before they are projected
#: (``gis_grid.crs.EDGE_STEP``), so one stored boundary, split at different nodes, differs
#: from itself in metres by millimetres at most; no county boundary is surveyed finer than
#: this.
DEFAULT_SNAP_TOLERANCE = 0.1


@dataclass(frozen=True)
class _Tolerances:
    gap_width: float
    sliver_area: float
    snap_tolerance: float

    def __post_init__(self) -> None:
        for name in ("gap_width", "sliver_area", "snap_tolerance"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a number ≥ 0 (metres / m²), got {value!r}")

    @property
    def mic_tolerance(self) -> float:
        # Precision of the inscribed-circle width: well below both thresholds it decides.
        positive = [v for v in (self.snap_tolerance, self.gap_width) if v > 0]
        return max(min(positive, default=0.01) / 100.0, 1e-9)

    @property
    def thresholds(self) -> tuple[float, float]:
        """The widths a decision turns on: noise below snap, sliver below gap_width."""
        return (self.snap_tolerance, self.gap_width)

    @property
    def border_tolerance(self) -> float:
        # Distance within which a piece's edge counts as shared with a grid.
        return max(self.snap_tolerance, 1e-6)


@dataclass
class _Layer:
    """The grid layer prepared for measuring: metric geometries and parsed attributes."""

    frame: gpd.GeoDataFrame
    crs: pyproj.CRS
    raw: np.ndarray  # metric geometry as given
    geoms: np.ndarray  # metric, valid and polygonal (empty where nothing is left)
    empty: np.ndarray
    fixed: np.ndarray  # made valid here
    reasons: np.ndarray  # invalidity reason per row ("" if valid)
    code: np.ndarray
    level: np.ndarray
    institution: np.ndarray  # object: str or None
    parent_code: np.ndarray
    parent_idx: np.ndarray  # row of the parent grid or -1
    has_children: np.ndarray
    group: np.ndarray  # group id per row, groups sorted by (level, institution)
    groups: list[tuple[str | None, int]]
    territory: BaseGeometry | None
    points: np.ndarray | None
    counts: np.ndarray | None


def _as_territory(territory, crs: pyproj.CRS) -> BaseGeometry | None:
    if territory is None:
        return None
    if isinstance(territory, BaseGeometry):
        series = gpd.GeoSeries([territory], crs=STORAGE_CRS)
    elif isinstance(territory, gpd.GeoDataFrame | gpd.GeoSeries):
        series = territory.geometry if isinstance(territory, gpd.GeoDataFrame) else territory
        if series.crs is None:
            raise InputError([Problem("territory", None, None,
                                      "has no CRS; set it (e.g. EPSG:4326) before checking")])
    else:
        raise TypeError("territory must be a GeoDataFrame, GeoSeries or shapely geometry")
    geoms = polygonal(shapely.make_valid(to_crs(series, crs).to_numpy()))
    return shapely.union_all(geoms)


def _as_households(households, crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray] | None:
    if households is None:
        return None
    if isinstance(households, gpd.GeoSeries):
        households = gpd.GeoDataFrame(geometry=households)
    if not isinstance(households, gpd.GeoDataFrame):
        raise TypeError("households must be a GeoDataFrame of points (with a count column)")
    if households.crs is None:
        raise InputError([Problem("households", None, None,
                                  "has no CRS; set it (e.g. EPSG:4326) before checking")])
    points = households.geometry.to_crs(crs).to_numpy()
    if "count" in households.columns:
        counts = pd.to_numeric(households["count"], errors="coerce").fillna(1).to_numpy(float)
    else:
        counts = np.ones(len(points))
    keep = (shapely.get_type_id(points) == 0) & ~shapely.is_empty(points)
    return points[keep], counts[keep]


def _text(frame: pd.DataFrame, name: str) -> pd.Series:
    """A string column with blanks as NA (absent columns are all NA)."""
    if name not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    values = frame[name].astype("string").str.strip()
    return values.where(values != "", pd.NA)


def _prepare(grids: gpd.GeoDataFrame, territory, households) -> _Layer:
    if not isinstance(grids, gpd.GeoDataFrame):
        raise TypeError("grids must be a GeoDataFrame (see gis_grid.model.LAYERS['grids'])")
    problems = []
    if grids.crs is None:
        problems.append(Problem("grids", None, None,
                                "has no CRS; set it (e.g. EPSG:4326) before checking"))
    if "code" not in grids.columns:
        problems.append(Problem("grids", None, "code", "is missing; every grid needs a code"))
    if problems:
        raise InputError(problems)

    frame = grids.reset_index(drop=True)
    n = len(frame)
    where = territory if territory is not None and n == 0 else frame
    if isinstance(where, BaseGeometry):
        where = gpd.GeoSeries([where], crs=STORAGE_CRS)
    crs = metric_crs(where) if n or territory is not None else pyproj.CRS.from_epsg(4546)

    original = frame.geometry.to_numpy()
    raw = to_crs(frame.geometry, crs).to_numpy() if n else np.empty(0, dtype=object)
    missing = shapely.is_missing(raw) | shapely.is_empty(raw)
    is_polygonal = np.isin(shapely.get_type_id(raw), (POLYGON, MULTIPOLYGON))
    # Validity is checked once, in metres (projection keeps topology; where it matters,
    # the reason below is told from the stored geometry).
    valid = shapely.is_valid(raw)
    bad = ~missing & (~is_polygonal | ~valid)

    reasons = np.full(n, "", dtype=object)
    reasons[missing] = "empty or missing geometry"
    not_polygon = ~missing & ~is_polygonal
    if not_polygon.any():
        reasons[not_polygon] = [f"a {t}, not a polygon" for t in type_names(raw[not_polygon])]
    invalid = ~missing & is_polygonal & ~valid
    if invalid.any():
        # The reason is told in the coordinates a user sees (longitude/latitude).
        orig_reason = shapely.is_valid_reason(original[invalid])
        metric_reason = shapely.is_valid_reason(raw[invalid])
        projected = "invalid once projected to metres: " + metric_reason.astype(str)
        reasons[invalid] = np.where(orig_reason == "Valid Geometry", projected, orig_reason)

    geoms = raw.copy()
    geoms[missing] = shapely.Polygon()
    if bad.any():
        geoms[bad] = polygonal(shapely.make_valid(raw[bad], method="structure",
                                                   keep_collapsed=False))
    empty = shapely.is_empty(geoms)

    code = _text(frame, "code").fillna("").to_numpy(dtype=object)
    if "level" in frame.columns:
        level = pd.to_numeric(frame["level"], errors="coerce").fillna(1).astype(int).to_numpy()
    else:
        level = np.ones(n, dtype=int)
    inst = _text(frame, "institution")
    institution = inst.astype(object).where(inst.notna(), None).to_numpy(dtype=object)

    # The parent is the ``parent`` field, else the code less its last "-" segment.
    nested = level > 1
    parent_code = _text(frame, "parent").where(nested, pd.NA)
    if nested.any():
        codes = pd.Series(code[nested], index=frame.index[nested], dtype="string")
        derived = codes.str.rsplit("-", n=1).str[0].where(codes.str.contains("-"), pd.NA)
        parent_code = parent_code.fillna(derived)
    first_row = pd.Series(np.arange(n), index=code)
    first_row = first_row[~first_row.index.duplicated()]
    parent_idx = first_row.index.get_indexer(parent_code.fillna("\0").to_numpy(dtype=object))
    parent_idx = np.where(parent_idx >= 0, first_row.to_numpy()[np.maximum(parent_idx, 0)], -1)
    parent_idx[parent_idx == np.arange(n)] = -1
    has_children = np.zeros(n, dtype=bool)
    has_children[parent_idx[parent_idx >= 0]] = True

    inst_key = inst.fillna("").to_numpy(dtype=object)
    keys = pd.DataFrame({"level": level, "institution": inst_key})
    uniq = keys.drop_duplicates().sort_values(["level", "institution"]).reset_index(drop=True)
    group = pd.MultiIndex.from_frame(uniq).get_indexer(pd.MultiIndex.from_frame(keys))
    groups = [(i or None, int(lv)) for lv, i in zip(uniq["level"], uniq["institution"],
                                                   strict=True)]

    hh = _as_households(households, crs)
    return _Layer(
        frame=frame, crs=crs, raw=raw, geoms=geoms, empty=empty, fixed=bad,
        reasons=reasons, code=code, level=level, institution=institution,
        parent_code=parent_code.astype(object).where(parent_code.notna(), None).to_numpy(),
        parent_idx=parent_idx, has_children=has_children, group=group, groups=groups,
        territory=_as_territory(territory, crs),
        points=None if hh is None else hh[0], counts=None if hh is None else hh[1],
    )
