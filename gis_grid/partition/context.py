"""The state of one partition run (``_Context``) and the grids it makes (``_Grid``): input
checks and loading, the top parents, the atoms of a region and the children of labelled
atoms — what every splitting method shares (see ARCHITECTURE.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from gis_grid.errors import InputError, Problem
from gis_grid.model import STORAGE_CRS
from gis_grid.partition.atoms import _arrange, _Atoms, _atoms
from gis_grid.partition.frame import _Frame, _metric_region, _reading_key
from gis_grid.partition.points import _pip
from gis_grid.partition.seeds import _household_seeds

#: Outlet statuses that serve a grid; closed (停业) and planned (筹建) outlets do not.
_SERVING = ("营业",)


def _check_polygons(frame: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    if not isinstance(frame, gpd.GeoDataFrame):
        raise TypeError(f"partition: {name} must be a GeoDataFrame, got {type(frame).__name__}")
    problems: list[Problem] = []
    if frame.crs is None:
        problems.append(Problem(name, None, None, "has no CRS; set it (e.g. EPSG:4326)"))
    if len(frame) == 0:
        problems.append(Problem(name, None, None, "is empty; there is nothing to cut"))
    geoms = frame.geometry.values
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))  # Polygon, MultiPolygon
    for i in np.flatnonzero(~polygonal)[:20]:
        problems.append(Problem(name, f"feature {i + 1}", "geometry",
                                "is not a polygon or multipolygon"))
    for i in np.flatnonzero(polygonal & ~shapely.is_valid(geoms))[:20]:
        problems.append(Problem(name, f"feature {i + 1}", "geometry",
                                f"is invalid ({shapely.is_valid_reason(geoms[i])}); repair "
                                "it first (gis_grid.topology)"))
    if problems:
        raise InputError(problems, source=name)
    return frame if frame.crs.equals(STORAGE_CRS) else frame.to_crs(STORAGE_CRS)


def _check_points(frame: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    if not isinstance(frame, gpd.GeoDataFrame):
        raise TypeError(f"partition: {name} must be a GeoDataFrame, got {type(frame).__name__}")
    if frame.crs is None:
        raise InputError([Problem(name, None, None, "has no CRS; set it (e.g. EPSG:4326)")],
                         source=name)
    types = shapely.get_type_id(frame.geometry.values)
    bad = np.flatnonzero((types != 0) & (types != -1))
    if len(bad):
        raise InputError([Problem(name, f"feature {i + 1}", "geometry", "is not a point")
                          for i in bad[:20]], source=name)
    frame = frame[(types == 0) & ~shapely.is_empty(frame.geometry.values)]
    return frame if frame.crs.equals(STORAGE_CRS) else frame.to_crs(STORAGE_CRS)


@dataclass
class _Grid:
    """One grid while the partition is made (geometry in EPSG:4326)."""

    code: str
    geom: BaseGeometry
    pts: np.ndarray  # indices of the household points inside
    level: int = 0
    parent: str | None = None
    method: str = ""
    outlet: str | None = None
    unit: int | None = None  # row of the ``units`` layer it follows
    kind: str | None = None
    zone: str | None = None
    children: list = field(default_factory=list)

    def weight(self, ctx: _Context) -> float:
        return float(ctx.hw[self.pts].sum())


@dataclass
class _Context:
    """The state of one run: the frame and defaults, the inputs (household points, units
    and townships, outlets) and what the run notes on the way (unmet parents, notes,
    households outside). The splitting methods (``units``, ``balanced``, ``tiles``,
    ``outlets``) and ``finish`` are functions of it."""

    frame: _Frame
    seed: int
    target: int
    tolerance: float
    cell_size: float
    shape: str
    min_area: float | None
    institution: str | None
    unmet: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    outside: int = 0

    # -- inputs

    def load_households(self, households: gpd.GeoDataFrame | None) -> None:
        if households is None:
            self.hlonlat = np.zeros((0, 2))
            self.hw = np.zeros(0)
        else:
            frame = _check_points(households, "households")
            w = np.ones(len(frame))
            if "count" in frame.columns:
                counts = pd.to_numeric(frame["count"], errors="coerce")
                bad = np.flatnonzero((counts.isna() | (counts < 0)).to_numpy())
                if len(bad):
                    raise InputError([Problem("households", f"feature {i + 1}", "count",
                                              "is not a number of households ≥ 0")
                                      for i in bad[:20]], source="households")
                w = counts.to_numpy(dtype=float)
            self.hlonlat = shapely.get_coordinates(frame.geometry.values)
            self.hw = w
        self.hxy = self.frame.xy(self.hlonlat)
        self.hpoints = shapely.points(self.hlonlat)

    def load_units(self, units, townships) -> None:
        self.layers: dict[str, gpd.GeoDataFrame] = {}
        self.trees: dict[str, shapely.STRtree] = {}
        self.inner: dict[str, np.ndarray] = {}
        for name, layer in (("units", units), ("townships", townships)):
            if layer is None:
                continue
            layer = _check_polygons(layer, name)
            if "code" not in layer.columns:
                raise InputError([Problem(name, None, "code", "is missing")], source=name)
            layer = layer.reset_index(drop=True)
            self.layers[name] = layer
            self.trees[name] = shapely.STRtree(layer.geometry.values)
            # A point inside each unit decides which parent owns it.
            self.inner[name] = shapely.get_coordinates(
                shapely.point_on_surface(layer.geometry.values))
        # The unit of each household, for each grid's kind and zone.
        self.hunit = np.full(len(self.hw), -1)
        if "units" in self.layers and len(self.hw):
            self.hunit = _pip(self.layers["units"].geometry.values, self.hlonlat, self.hpoints)

    def load_outlets(self, outlets, institution) -> None:
        self.outlets = None
        if outlets is None:
            return
        layer = _check_points(outlets, "outlets")
        missing = [c for c in ("id", "tier") if c not in layer.columns]
        if missing:
            raise InputError([Problem("outlets", None, c, "is missing") for c in missing],
                             source="outlets")
        if institution is not None and "institution" in layer.columns:
            layer = layer[layer["institution"].astype(str) == str(institution)]
        if "status" in layer.columns:
            layer = layer[layer["status"].isna() | layer["status"].isin(_SERVING)]
        self.outlets = layer.sort_values("id", kind="stable").reset_index(drop=True)
        self.oxy = self.frame.xy(shapely.get_coordinates(self.outlets.geometry.values))
        self.oids = self.outlets["id"].astype(str).to_numpy()
        self.otier = self.outlets["tier"].astype(str).to_numpy()

    def top_parents(self, roots: gpd.GeoDataFrame, start_level: int) -> list[_Grid]:
        geoms = shapely.set_precision(roots.geometry.values, self.frame.grid)
        codes = (roots["code"].astype(str).tolist() if "code" in roots.columns
                 else ["T"] * len(roots))
        parents: list[_Grid] = []
        for row, (code, geom) in enumerate(zip(codes, geoms, strict=True)):
            code = re.sub(r"[^0-9A-Za-z-]", "", code) or "T"
            parts = [p for p in shapely.get_parts(geom) if p.area > 0]
            # Parts of a multipart territory in reading order.
            parts.sort(key=lambda p: _reading_key(self.frame.xy(
                shapely.get_coordinates(p.centroid))[0]))
            for part in parts:
                grid = _Grid(code=code, geom=part, pts=np.zeros(0, dtype=np.int64),
                             level=start_level - 1)
                if start_level > 1:
                    for attr in ("kind", "zone", "outlet"):
                        if attr in roots.columns and pd.notna(roots[attr].iloc[row]):
                            setattr(grid, attr, str(roots[attr].iloc[row]))
                parents.append(grid)
        if len(self.hw):
            where = _pip([p.geom for p in parents], self.hlonlat, self.hpoints)
            for n_p, p in enumerate(parents):
                p.pts = np.flatnonzero(where == n_p)
            out = where < 0
            self.outside = int(self.hw[out].sum())
            if out.any():
                self.notes.append(f"{int(out.sum())} household points ({self.outside} "
                                  "households) lie outside the territory and are in no grid")
        return parents

    # -- one parent (used by every splitting method)

    def single(self, parent: _Grid) -> list[_Grid]:
        """The parent kept whole: its one child."""
        return [_Grid(code="#", geom=parent.geom, pts=parent.pts)]

    def locate(self, pts: np.ndarray, atoms: _Atoms) -> None:
        """The atom of each household point of a region, and households per atom."""
        if len(pts) == 0:
            atoms.point_atom = np.zeros(0, dtype=np.int64)
            atoms.weight = np.zeros(atoms.n)
            return
        atom = _pip(atoms.faces, self.hlonlat[pts], self.hpoints[pts])
        lost = np.flatnonzero(atom < 0)
        if len(lost):
            # A point on the region's outline that snapping left outside: nearest atom.
            tree = shapely.STRtree(atoms.faces)
            li, lf = tree.query_nearest(self.hpoints[pts[lost]], all_matches=False)
            atom[lost[li]] = lf
        atoms.point_atom = atom
        atoms.weight = np.bincount(atom, self.hw[pts], minlength=atoms.n)

    def make_children(self, pts: np.ndarray, atoms: _Atoms, labels: np.ndarray,
                      order: Sequence[int] | None = None) -> list[_Grid]:
        """One child per label (taken in ``order``): the coverage union of its atoms."""
        k = int(labels.max()) + 1
        by = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[by], np.arange(k + 1))
        p_lab = labels[atoms.point_atom]
        p_by = np.argsort(p_lab, kind="stable")
        p_bounds = np.searchsorted(p_lab[p_by], np.arange(k + 1))
        out = []
        for lab in (order if order is not None else range(k)):
            idx = by[bounds[lab]:bounds[lab + 1]]
            if len(idx) == 0:
                continue
            geom = (atoms.faces[idx[0]] if len(idx) == 1
                    else shapely.coverage_union_all(atoms.faces[idx]))
            out.append(_Grid(code="#", geom=geom,
                             pts=pts[p_by[p_bounds[lab]:p_bounds[lab + 1]]]))
        return out

    def household_atoms(self, geom: BaseGeometry, pts: np.ndarray, k: int, w_max: float,
                        extra_lines: Sequence[BaseGeometry] = ()) -> _Atoms:
        """Atoms of a region for balancing: Voronoi cells (in the metric CRS) of household
        clusters of at most ``w_max`` and of empty lattice cells, cut out of the region."""
        geom_m = _metric_region(self.frame, geom)
        # Lattice side about a third of a child's side, rounded to a power of two metres
        # so that small changes of the inputs keep the same lattice.
        cell = 2.0 ** round(math.log2(max(math.sqrt(geom_m.area / max(k, 1)) / 3, 1e-2)))
        offset = ((0.0, 0.0) if not self.seed
                  else tuple(np.random.default_rng([self.seed, 7]).uniform(0, cell, 2)))
        b = geom_m.bounds
        hh, filler = _household_seeds(self.hxy[pts], self.hw[pts], b, cell, w_max, offset)
        if len(filler):
            half = cell / 2
            boxes = shapely.box(filler[:, 0] - half, filler[:, 1] - half,
                                filler[:, 0] + half, filler[:, 1] + half)
            shapely.prepare(geom_m)
            filler = filler[shapely.intersects(geom_m, boxes)]
        seeds = np.unique(np.round(np.concatenate([hh, filler]), 4), axis=0)
        lines = list(extra_lines)
        if len(seeds) >= 2:
            pad = 2 * cell + 0.1 * max(b[2] - b[0], b[3] - b[1])
            edges = shapely.voronoi_polygons(
                shapely.multipoints(seeds), only_edges=True,
                extend_to=shapely.box(b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad))
            lines.append(self.frame.to_storage(edges, step=max(cell, 100.0))[0])
        faces = _arrange(geom, lines, self.frame.grid) if lines else np.array([geom])
        atoms = _atoms(faces, self.frame)
        self.locate(pts, atoms)
        return atoms
