"""The geometry the synthetic territories are made of: a metric frame, Voronoi cells.

``_Frame`` is a territory's metric frame (``gis_grid.crs.MetricFrame``). ``_cells`` cuts
regions into the Voronoi cells of their sites as faces of one noding, so every union of
faces (``_dissolve``) is a valid coverage; ``_connect`` mends labels whose faces fall
apart. ``_sample_in`` draws random points in a polygon and ``_Geo.scatter`` places points
inside their unit as stored (EPSG:4326). Shared by the real-county sample
(``layers.synthetic.county``) and the synthetic province (``layers.synthetic.province``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from gis_grid.crs import MetricFrame

#: Where borders are clipped past their township, so every Voronoi edge crosses the border
#: it ends on instead of stopping a rounding error short of it (metres).
_CLIP_MARGIN = 1.0


#: The county's metric CRS and the transforms in and out of it.
_Frame = MetricFrame


# --------------------------------------------------------------------------- cells


def _cells(
    regions: list[shapely.Geometry],
    region_sites: list[np.ndarray],
    region_site_ids: list[np.ndarray],
    *,
    site_labels: np.ndarray,
    anchors: np.ndarray,
    label_groups: np.ndarray,
    segment_length: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells of sites within regions, as faces of one noding, and their labels.

    Each region (the territory, or each township) gets the Voronoi diagram of its sites
    (``shapely.voronoi_polygons``, extended to the region). The region borders and all the
    diagrams' edges, each clipped just past its region, are noded together once and
    polygonized: the faces share every vertex, so any union of them is a valid coverage.
    A face belongs to the region containing it and to the label of its nearest site in
    that region; labels whose faces fall apart are mended by ``_connect``. With
    ``segment_length`` (metres) the noded edges are densified to at most that length.

    Returns the faces inside the territory and the label of each.
    """
    # The regions' borders only: at the unit level the townships' borders already carry the
    # territory's outline, with the vertices where township borders meet it; adding the
    # original outline again would lay a second line a rounding error off the first.
    lines = [shapely.boundary(r) for r in regions]
    for region, sites in zip(regions, region_sites, strict=True):
        if len(sites) < 2:
            continue
        edges = shapely.voronoi_polygons(shapely.multipoints(sites), extend_to=region,
                                         only_edges=True)
        lines.append(shapely.intersection(edges, shapely.buffer(region, _CLIP_MARGIN)))
    noded = shapely.union_all(np.array(lines, dtype=object))
    if segment_length:
        # Long straight edges (generated territories) get vertices every segment_length
        # metres, so they stay the same line in any other metric CRS; done on the noded
        # linework, each edge is densified once and both faces share the new vertices.
        noded = shapely.segmentize(noded, segment_length)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    points = shapely.point_on_surface(faces)

    region_tree = shapely.STRtree(np.array(regions, dtype=object))
    face_idx, region_idx = region_tree.query(points, predicate="within")
    face_region = np.full(len(faces), -1)
    face_region[face_idx] = region_idx
    labels = np.full(len(faces), -1)
    for r, (sites, ids) in enumerate(zip(region_sites, region_site_ids, strict=True)):
        mine = np.flatnonzero(face_region == r)
        if not len(mine):
            continue
        if len(sites) == 1:
            labels[mine] = site_labels[ids[0]]
            continue
        src, nearest = shapely.STRtree(shapely.points(sites)).query_nearest(
            points[mine], all_matches=False
        )
        labels[mine[src]] = site_labels[ids[nearest]]
    keep = labels >= 0
    faces, labels = faces[keep], labels[keep]
    return faces, _connect(faces, labels, anchors, label_groups)


def _dissolve(faces: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The union of each label's faces (a coverage union: exact, vertex-preserving)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n + 1))
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = shapely.coverage_union_all(faces[order[bounds[i]:bounds[i + 1]]])
    return out


def _connect(
    faces: np.ndarray, labels: np.ndarray, anchors: np.ndarray, groups: np.ndarray,
    rounds: int = 10,
) -> np.ndarray:
    """Relabel faces so each label's faces form one polygon.

    A label whose faces form several pieces keeps the piece holding its anchor point;
    each other piece goes to the label of the same group sharing the longest border with
    it (the rule of ``shapely.coverage_clean``, applied to pieces instead of gaps). A
    piece with no such neighbour stays.
    """
    labels = labels.copy()
    n = len(anchors)
    for _ in range(rounds):
        merged = _dissolve(faces, labels, n)
        split = np.flatnonzero(shapely.get_num_geometries(merged) > 1)
        if not len(split):
            break
        tree = shapely.STRtree(merged)
        changed = False
        for lab in split:
            pieces = shapely.get_parts(merged[lab])
            holds = shapely.contains_xy(pieces, anchors[lab, 0], anchors[lab, 1])
            main = int(np.argmax(holds)) if holds.any() else int(np.argmax(shapely.area(pieces)))
            own = np.flatnonzero(labels == lab)
            for k, piece in enumerate(pieces):
                if k == main:
                    continue
                near = tree.query(piece, predicate="intersects")
                near = near[(near != lab) & (groups[near] == groups[lab])]
                if not len(near):
                    continue
                shared = shapely.length(shapely.intersection(
                    shapely.boundary(piece), shapely.boundary(merged[near])))
                if shared.max() <= 0.0:
                    continue
                target = near[np.lexsort((near, -shared))[0]]
                inside = own[shapely.covered_by(faces[own], piece)]
                labels[inside] = target
                changed = True
        if not changed:
            break
    return labels


def _as_multipolygon(geom: shapely.Geometry) -> shapely.MultiPolygon:
    if geom.geom_type == "MultiPolygon":
        return geom
    return shapely.MultiPolygon([geom])


def _sample_in(
    rng: np.random.Generator, polygon: shapely.Geometry, n: int,
    centre: np.ndarray | None, spread: float, max_rounds: int = 200,
) -> np.ndarray:
    """``n`` random points (n, 2) inside ``polygon``: normal around ``centre`` with standard
    deviation ``spread``, or uniform when ``centre`` is None. Rejection sampling."""
    if n == 0:
        return np.empty((0, 2))
    minx, miny, maxx, maxy = shapely.bounds(polygon)
    got: list[np.ndarray] = []
    have = 0
    for _ in range(max_rounds):
        m = max(2 * (n - have), 64)
        if centre is None:
            xy = rng.uniform((minx, miny), (maxx, maxy), size=(m, 2))
        else:
            xy = centre + spread * rng.standard_normal((m, 2))
        xy = xy[shapely.contains_xy(polygon, xy[:, 0], xy[:, 1])]
        got.append(xy)
        have += len(xy)
        if have >= n:
            return np.vstack(got)[:n]
        if centre is not None:
            spread *= 0.9  # a centre near a narrow neck: draw closer in
    raise RuntimeError("sample territory: could not place points in a township")


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class _Geo:
    """The geometry every synthetic layer places its points in."""

    frame: _Frame
    units_m: np.ndarray
    units_ll: np.ndarray  # prepared
    seeds: np.ndarray  # (U, 2) metres
    fallback_ll: np.ndarray  # a point surely inside each unit (EPSG:4326)

    @property
    def radius(self) -> np.ndarray:
        return np.sqrt(shapely.area(self.units_m) / np.pi)

    def scatter(
        self, rng: np.random.Generator, cx: np.ndarray, cy: np.ndarray, spread: np.ndarray,
        unit: np.ndarray, rounds: int = 40,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Points normal around (cx, cy) metres with standard deviation ``spread``, each
        inside its ``unit`` as stored (EPSG:4326). Rejected points are drawn again, closer
        in after a while; the few left go to a point inside the unit.

        Returns ``(x, y, lon, lat)``.
        """
        n = len(cx)
        x, y, lon, lat = (np.empty(n) for _ in range(4))
        spread = np.asarray(spread, float).copy()
        todo = np.arange(n)
        for r in range(rounds):
            if not len(todo):
                break
            tx = cx[todo] + spread[todo] * rng.standard_normal(len(todo))
            ty = cy[todo] + spread[todo] * rng.standard_normal(len(todo))
            tlon, tlat = self.frame.to_lonlat_xy(tx, ty)
            ok = shapely.contains_xy(self.units_ll[unit[todo]], tlon, tlat)
            done = todo[ok]
            x[done], y[done], lon[done], lat[done] = tx[ok], ty[ok], tlon[ok], tlat[ok]
            todo = todo[~ok]
            if r >= rounds // 4:
                spread[todo] *= 0.8
        if len(todo):
            fallback = self.fallback_ll[unit[todo]]
            lon[todo], lat[todo] = shapely.get_x(fallback), shapely.get_y(fallback)
            x[todo], y[todo] = self.frame.from_lonlat_xy(lon[todo], lat[todo])
        return x, y, lon, lat


def _points(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return shapely.points(np.column_stack([lon, lat]))
