"""Grid-layer validation and repair (gis_grid.topology).

Layers are built as squares in metres (CGCS2000 GK CM 111°E, EPSG:4546, the CRS
``metric_crs`` picks near 110.8°E 30.9°N), stored in EPSG:4326 like every layer, and
measured back in EPSG:4546. One hand-built bad layer per problem kind, its repair, and
property tests over random Voronoi tilings.
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
import shapely.affinity
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from shapely import Polygon, box

from gis_grid.crs import metric_crs, to_crs
from gis_grid.topology import KINDS, repair_grids, validate_grids

METRIC = "EPSG:4546"
_X0, _Y0 = (round(v) for v in pyproj.Transformer.from_crs(
    "EPSG:4326", METRIC, always_xy=True).transform(110.8, 30.9))


def at(geom):
    """A local geometry (metres from the origin near 110.8°E 30.9°N) in EPSG:4546."""
    return shapely.transform(geom, lambda xy: xy + (_X0, _Y0))


def layer(geoms, **columns) -> gpd.GeoDataFrame:
    """Local metric geometries → a grids GeoDataFrame in EPSG:4326."""
    frame = gpd.GeoDataFrame(columns, geometry=[at(g) for g in geoms], crs=METRIC)
    return frame.to_crs("EPSG:4326")


def region(geom) -> gpd.GeoSeries:
    return gpd.GeoSeries([at(geom)], crs=METRIC).to_crs("EPSG:4326")


def points(xy, count=None) -> gpd.GeoDataFrame:
    pts = shapely.points(np.asarray(xy, dtype=float) + (_X0, _Y0))
    cols = {} if count is None else {"count": count}
    return gpd.GeoDataFrame(cols, geometry=pts, crs=METRIC).to_crs("EPSG:4326")


def metric(frame) -> np.ndarray:
    """What is stored, measured in metres: edges densified on the way, as validation and
    repair measure (``gis_grid.crs.to_crs``)."""
    return to_crs(frame.geometry, METRIC).to_numpy()


def same_area(a, b, rel=1e-6) -> bool:
    """``a`` and ``b`` (local metric geometries or in EPSG:4546) cover the same place."""
    return shapely.area(shapely.symmetric_difference(a, b)) <= rel * max(shapely.area(b), 1e-12)


def cell(i, j, size=100.0):
    return box(i * size, j * size, (i + 1) * size, (j + 1) * size)


def cells(**replace):
    """The 3×2 reference layer: grids G00..G21 of 100 m, each with its own worker."""
    out = {f"G{i}{j}": cell(i, j) for j in range(2) for i in range(3)}
    out.update(replace)
    out = {k: v for k, v in out.items() if v is not None}
    return out


def make(grid_cells: dict, **extra) -> gpd.GeoDataFrame:
    codes = list(grid_cells)
    cols = {"code": codes, "level": 1, "kind": "urban", "institution": "NSH",
            "worker": [f"w-{c}" for c in codes]}
    cols.update(extra)
    return layer(list(grid_cells.values()), **cols)


TERRITORY = box(0, 0, 300, 200)


def only(report, kind):
    found = report.problems[report.problems.kind == kind]
    assert len(found) == 1, report.human()
    return found.iloc[0]


def kinds(report) -> set[str]:
    return set(report.problems.kind)


def located(row, expected) -> bool:
    geom = metric(gpd.GeoSeries([row.geometry], crs="EPSG:4326"))[0]
    return same_area(geom, metric(region(expected))[0])


# -- validation: one bad layer per kind -------------------------------------------------


def test_metric_crs_is_the_test_crs():
    assert metric_crs((110.79, 30.89, 110.81, 30.91)).to_epsg() == 4546


def test_clean_layer_is_ok(tmp_path):
    grids = make(cells())
    staff = pd.DataFrame({"id": ["m1"], "role": ["manager"], "grids": [";".join(grids.code)]})
    hh = points([[50, 50], [250, 150]], count=[3, 4])
    report = validate_grids(grids, territory=region(TERRITORY), households=hh, staff=staff)
    assert report.ok, report.human()
    assert report.summary.sum() == 0 and list(report.summary.index) == list(KINDS)
    assert "OK" in report.human()
    machine = json.loads(report.to_json())
    assert machine["ok"] and machine["parameters"]["metric_crs"] == METRIC
    assert json.loads(report.geojson())["features"] == []


def test_gap_in_territory():
    grids = make(cells(G10=None))
    hh = points([[150, 50], [160, 60], [250, 50]], count=[2, 4, 1])
    report = validate_grids(grids, territory=region(TERRITORY), households=hh)
    assert kinds(report) == {"gap"}
    gap = only(report, "gap")
    assert located(gap, cell(1, 0))
    assert gap.area_m2 == pytest.approx(10_000, rel=1e-6)
    assert gap.households == 6
    assert set(gap.codes.split(";")) == {"G00", "G20", "G11"}
    assert report.summary["gap"] == 1
    assert "缺口" in report.human()


def test_gap_as_hole_without_territory(tmp_path):
    hole = box(130, 30, 160, 70)
    grids = make(cells(G10=cell(1, 0).difference(hole)))
    report = validate_grids(grids)
    gap = only(report, "gap")
    assert kinds(report) == {"gap"}
    assert located(gap, hole) and gap.area_m2 == pytest.approx(1200, rel=1e-6)
    machine = json.loads(report.to_json())
    assert machine["counts"] == {"gap": 1}
    assert machine["problems"][0]["wkt"].startswith("POLYGON")
    path = tmp_path / "p.geojson"
    path.write_text(report.geojson(), encoding="utf-8")
    written = gpd.read_file(path)
    assert list(written.kind) == ["gap"]


def test_overlap():
    grids = make(cells(G00=box(0, 0, 110, 100)))
    hh = points([[105, 50]], count=[5])
    report = validate_grids(grids, households=hh)
    assert kinds(report) == {"overlap"}
    overlap = only(report, "overlap")
    assert overlap.codes == "G00;G10"
    assert located(overlap, box(100, 0, 110, 100))
    assert overlap.area_m2 == pytest.approx(1000, rel=1e-6)
    assert overlap.households == 5


def test_sliver_gap():
    grids = make(cells(G10=box(100.5, 0, 200, 100)))
    report = validate_grids(grids, territory=region(TERRITORY))
    sliver = only(report, "sliver")
    assert kinds(report) == {"sliver"} and sliver.sliver_of == "gap"
    assert located(sliver, box(100, 0, 100.5, 100))
    assert sliver.area_m2 == pytest.approx(50, rel=1e-6)
    assert sliver.width_m == pytest.approx(0.5, abs=1e-3)


def test_sliver_grid():
    grids = make(cells(G30=box(300, 0, 300.5, 100)))
    report = validate_grids(grids)
    sliver = only(report, "sliver")
    assert kinds(report) == {"sliver"} and sliver.sliver_of == "grid"
    assert sliver.codes == "G30" and sliver.area_m2 == pytest.approx(50, rel=1e-6)


def test_invalid_geometry():
    spike = Polygon([(100, 100), (200, 100), (200, 200), (230, 230), (200, 200), (100, 200)])
    report = validate_grids(make(cells(G11=spike)))
    assert kinds(report) == {"invalid_geometry"}
    row = only(report, "invalid_geometry")
    assert row.codes == "G11" and "Self-intersection" in row.message


def test_multipart():
    grids = make(cells(G00=shapely.MultiPolygon([cell(0, 0), cell(2, 0)]), G20=None))
    report = validate_grids(grids, territory=region(TERRITORY))
    assert kinds(report) == {"multipart"}
    row = only(report, "multipart")
    assert row.codes == "G00" and "2 pieces" in row.message
    assert row.area_m2 == pytest.approx(20_000, rel=1e-6)


def nested(children: dict, parents=None) -> gpd.GeoDataFrame:
    """Level-1 grids A (west half) and B (east half); level-2 ``children``."""
    parents = parents or {"A": box(0, 0, 150, 200), "B": box(150, 0, 300, 200)}
    codes = list(parents) + list(children)
    parent = [None] * len(parents) + [c.split("-")[0] for c in children]
    return layer(list(parents.values()) + list(children.values()),
                 code=codes, level=[1] * len(parents) + [2] * len(children), parent=parent,
                 kind="rural", institution="NSH", worker=[f"w-{c}" for c in codes])


def test_nested_clean_layer_is_ok():
    grids = nested({"A-1": box(0, 0, 150, 100), "A-2": box(0, 100, 150, 200)})
    assert validate_grids(grids, territory=region(TERRITORY)).ok


def test_child_outside_parent():
    grids = nested({"A-1": box(0, 0, 150, 100), "A-2": box(0, 100, 160, 200)})
    report = validate_grids(grids, territory=region(TERRITORY))
    assert kinds(report) == {"child_outside_parent"}
    row = only(report, "child_outside_parent")
    assert row.codes == "A-2" and row.level == 2
    assert located(row, box(150, 100, 160, 200)) and row.area_m2 == pytest.approx(1000, rel=1e-6)


def test_parent_uncovered():
    grids = nested({"A-1": box(0, 0, 150, 100), "A-2": box(0, 100, 120, 200)})
    report = validate_grids(grids, territory=region(TERRITORY))
    assert kinds(report) == {"parent_uncovered"}
    row = only(report, "parent_uncovered")
    assert row.codes == "A" and row.level == 2
    assert located(row, box(120, 100, 150, 200)) and row.area_m2 == pytest.approx(3000, rel=1e-6)


def test_code_prefix():
    grids = nested({"A-1": box(0, 0, 150, 100), "X-2": box(0, 100, 150, 200)})
    grids.loc[grids.code == "X-2", "parent"] = "A"
    report = validate_grids(grids)
    assert kinds(report) == {"code_prefix"}
    assert only(report, "code_prefix").codes == "X-2"


def test_missing_parent():
    grids = nested({"A-1": box(0, 0, 150, 100), "A-2": box(0, 100, 150, 200),
                    "C-1": box(150, 0, 300, 100)})
    report = validate_grids(grids)
    assert kinds(report) == {"missing_parent"}
    row = only(report, "missing_parent")
    assert row.codes == "C-1" and "'C'" in row.message


def test_duplicate_code():
    grids = make(cells())
    grids.loc[grids.code == "G10", "code"] = "G00"
    report = validate_grids(grids)
    assert kinds(report) == {"duplicate_code"}
    assert list(report.problems.codes) == ["G00", "G00"]


def test_households_outside():
    hh = points([[50, 50], [350, 50], [360, 60]], count=[1, 2, 5])
    report = validate_grids(make(cells()), households=hh)
    assert kinds(report) == {"household_outside"}
    row = only(report, "household_outside")
    assert row.households == 7
    expected = shapely.multipoints(np.array([[350, 50], [360, 60]]) + (_X0, _Y0))
    got = gpd.GeoSeries([row.geometry], crs="EPSG:4326").to_crs(METRIC).iloc[0]
    assert shapely.equals_exact(got.normalize(), expected.normalize(), tolerance=1e-6)


def test_no_worker():
    grids = make(cells())
    grids.loc[grids.code == "G11", "worker"] = None
    report = validate_grids(grids)
    assert kinds(report) == {"no_worker"}
    assert only(report, "no_worker").codes == "G11"


def test_worker_holding_several_grids():
    grids = make(cells())
    grids.loc[grids.code == "G10", "worker"] = "w-G00"
    staff = pd.DataFrame({
        "id": ["s9", "m1"], "role": ["part-time", "manager"],
        "grids": ["G20; G21", "G00;G10;G20;G21"],  # a manager may oversee several grids
    })
    report = validate_grids(grids, staff=staff)
    assert kinds(report) == {"worker_multiple"}
    assert set(report.problems.codes) == {"G00;G10", "G20;G21"}


def test_nested_staffing_checks_leaf_grids_only():
    grids = nested({"A-1": box(0, 0, 150, 100), "A-2": box(0, 100, 150, 200)})
    grids.loc[grids.code == "A", "worker"] = None  # A has children: its worker is optional
    assert validate_grids(grids).ok


def test_coverage_edge_t_junction():
    grids = make({"A": box(0, 0, 100, 200), "B1": cell(1, 0), "B2": cell(1, 1)})
    report = validate_grids(grids, territory=region(box(0, 0, 200, 200)))
    assert kinds(report) == {"coverage_edge"}
    assert set(report.problems.codes) == {"A", "B1", "B2"}


def test_coverage_edge_near_miss():
    grids = make({"A": cell(0, 0), "B": box(100.001, 0, 200, 100)})
    report = validate_grids(grids, territory=region(box(0, 0, 200, 100)))
    assert kinds(report) == {"coverage_edge"}
    assert set(report.problems.codes) == {"A", "B"}


def test_outside_territory():
    grids = make(cells(G20=box(200, 0, 310, 100)))
    report = validate_grids(grids, territory=region(TERRITORY))
    assert kinds(report) == {"outside_territory"}
    row = only(report, "outside_territory")
    assert row.codes == "G20" and located(row, box(300, 0, 310, 100))


def lattice(n, offset=(0.0, 0.0), prefix="L"):
    """An n×n lattice of 100 m cells (a coverage whose inner edges all match)."""
    return {f"{prefix}{i}{j}": shapely.affinity.translate(cell(i, j), *offset)
            for i in range(n) for j in range(n)}


def test_overlapping_tilings_are_found():
    # Two edge-matched tilings laid over each other: their inner cells match all their
    # neighbours exactly, yet overlap cells of the other tiling.
    tiles = lattice(5) | lattice(5, (250.0, 250.0), prefix="M")
    report = validate_grids(make(tiles))
    assert kinds(report) <= {"overlap", "coverage_edge"}
    overlaps = report.problems[report.problems.kind == "overlap"]
    assert overlaps.area_m2.sum() == pytest.approx(250 * 250, rel=1e-9)
    truth = {f"{a};{b}" for a in tiles for b in tiles
             if a < b and tiles[a].intersection(tiles[b]).area > 0}
    assert set(overlaps.codes) == truth  # GEOS's validator alone misses L33;M11


def test_layer_larger_than_territory():
    grids = make(lattice(5))
    report = validate_grids(grids, territory=region(box(0, 0, 250, 250)))
    assert kinds(report) == {"outside_territory"}
    assert report.problems.area_m2.sum() == pytest.approx(500 * 500 - 250 * 250, rel=1e-9)


def test_threads_give_the_same_report(monkeypatch):
    import gis_grid.topology.ops as topology

    tiles = lattice(6) | {"X": box(250, 250, 330, 330), "L55": None}
    grids = make({k: v for k, v in tiles.items() if v is not None})
    serial = validate_grids(grids, threads=1).problems
    # Strips from the first polygon on, as a layer of 10^5 grids would be split.
    monkeypatch.setattr(topology, "_PARALLEL_MIN", 1)
    strips = validate_grids(grids, threads=3).problems
    columns = ["kind", "codes", "area_m2", "households"]
    pd.testing.assert_frame_equal(serial[columns], strips[columns], rtol=1e-9)
    assert set(serial.kind) == {"overlap"}


def test_institutions_may_overlap_each_other():
    a = make(cells())
    b = make(cells(), institution="ABC")
    b["code"] = "ABC-" + b["code"]  # codes are the layer's key, unique across banks
    assert validate_grids(pd.concat([a, b], ignore_index=True)).ok


def test_bad_input_is_refused():
    from gis_grid.errors import InputError

    grids = make(cells()).set_crs(None, allow_override=True)
    with pytest.raises(InputError, match="CRS"):
        validate_grids(grids)
    with pytest.raises(ValueError, match="gap_width"):
        validate_grids(make(cells()), gap_width=-1)


# -- repair ------------------------------------------------------------------------------


def total_area(frame, level=None) -> float:
    if level is not None:
        frame = frame[frame.level == level]
    return float(shapely.area(metric(frame)).sum())


def assert_tiles(frame, expected_local, level=None):
    """The grids of ``frame`` (one level) tile ``expected_local`` exactly."""
    if level is not None:
        frame = frame[frame.level == level]
    geoms = metric(frame)
    # The region as stored (straight edges in longitude/latitude), measured alike.
    expected = metric(region(expected_local))[0]
    assert shapely.coverage_is_valid(geoms)
    assert abs(shapely.area(geoms).sum() - expected.area) <= 1e-9 * expected.area
    assert same_area(shapely.union_all(geoms), expected, rel=1e-9)


REPAIRS = {
    "gap": (make(cells(G10=None)), TERRITORY),
    "hole": (make(cells(G10=cell(1, 0).difference(box(130, 30, 160, 70)))), None),
    "overlap": (make(cells(G00=box(0, 0, 110, 100))), TERRITORY),
    "sliver gap": (make(cells(G10=box(100.5, 0, 200, 100))), TERRITORY),
    "sliver grid": (make(cells(G20=box(200, 0, 299.5, 100), G30=box(299.5, 0, 300, 100))),
                    TERRITORY),
    "invalid": (make(cells(G11=Polygon([(100, 100), (200, 100), (200, 200), (230, 230),
                                        (200, 200), (100, 200)]))), TERRITORY),
    "multipart": (make(cells(G00=shapely.MultiPolygon([cell(0, 0), cell(2, 0)]), G20=None)),
                  TERRITORY),
    "t-junction": (make({"A": box(0, 0, 100, 200), "B1": cell(1, 0), "B2": cell(1, 1)}),
                   box(0, 0, 200, 200)),
    "near-miss": (make({"A": cell(0, 0), "B": box(100.001, 0, 200, 100)}), box(0, 0, 200, 100)),
    "outside": (make(cells(G20=box(200, 0, 310, 100))), TERRITORY),
}


@pytest.mark.parametrize("name", list(REPAIRS))
def test_repair(name):
    grids, territory_local = REPAIRS[name]
    territory = None if territory_local is None else region(territory_local)
    before = validate_grids(grids, territory=territory)
    assert not before.ok
    result = repair_grids(grids, territory=territory)
    assert result.remaining.ok, result.remaining.human()
    assert validate_grids(result.grids, territory=territory).ok
    assert list(result.grids.columns) == list(grids.columns)
    expected = territory_local if territory_local is not None else TERRITORY
    assert_tiles(result.grids, expected)
    assert len(result.changes) >= 1
    assert (shapely.get_num_geometries(metric(result.grids)) == 1).all()


def test_repair_gap_lists_area_and_households():
    grids = make(cells(G10=None))
    hh = points([[150, 50], [160, 60]], count=[2, 4])
    result = repair_grids(grids, territory=region(TERRITORY), households=hh)
    gained = result.changes[result.changes.area_gained_m2 > 1]
    assert len(gained) == 1 and gained.area_gained_m2.iloc[0] == pytest.approx(10_000, rel=1e-9)
    assert gained.households_gained.iloc[0] == 6 and "gap filled" in gained.what.iloc[0]
    assert result.remaining.ok


@pytest.mark.parametrize("priority,keeper,loser", [
    (["G10"], "G10", "G00"), ("code", "G00", "G10"), ("min_index", "G00", "G10"),
])
def test_repair_overlap_priority(priority, keeper, loser):
    grids = make(cells(G00=box(0, 0, 110, 100)))
    result = repair_grids(grids, territory=region(TERRITORY), priority=priority)
    assert result.remaining.ok
    lost = result.changes.set_index("code")["area_lost_m2"]
    geoms = dict(zip(result.grids.code, metric(result.grids), strict=True))
    assert geoms[keeper].covers(at(box(101, 1, 109, 99)))
    assert lost.get(loser, 0) == pytest.approx(1000, rel=1e-6)


def test_repair_sliver_grid_is_dissolved():
    grids, territory = REPAIRS["sliver grid"]
    result = repair_grids(grids, territory=region(territory))
    assert "G30" not in set(result.grids.code)
    row = result.changes.set_index("code").loc["G30"]
    assert row.area_lost_m2 == pytest.approx(50, rel=1e-6) and "removed" in row.what
    assert result.changes.set_index("code").loc["G20"].area_gained_m2 == pytest.approx(50, 1e-6)


def test_repair_invalid_lists_made_valid():
    grids, territory = REPAIRS["invalid"]
    result = repair_grids(grids, territory=region(territory))
    assert "made valid" in result.changes.set_index("code").loc["G11"].what


def test_repair_nested_levels():
    children = {"A-1": box(0, 0, 150, 100), "A-2": box(0, 100, 120, 200),  # A uncovered
                "B-1": box(150, 0, 310, 100), "B-2": box(140, 100, 300, 200)}  # outside
    grids = nested(children, parents={"A": box(0, 0, 150, 200), "B": box(155, 0, 300, 200)})
    report = validate_grids(grids, territory=region(TERRITORY))
    assert {"gap", "parent_uncovered", "child_outside_parent"} <= kinds(report)
    result = repair_grids(grids, territory=region(TERRITORY))
    assert result.remaining.ok, result.remaining.human()
    assert_tiles(result.grids, TERRITORY, level=1)
    assert_tiles(result.grids, TERRITORY, level=2)


def test_gap_across_parents_is_one_per_parent():
    # A-2 and B-2 are missing: one hole in the level-2 layer, two parents uncovered.
    grids = nested({"A-1": box(0, 0, 150, 100), "B-1": box(150, 0, 300, 100)})
    report = validate_grids(grids, territory=region(TERRITORY))
    rows = report.problems.set_index("codes")
    assert kinds(report) == {"parent_uncovered"} and set(rows.index) == {"A", "B"}
    assert located(rows.loc["A"], box(0, 100, 150, 200))
    assert located(rows.loc["B"], box(150, 100, 300, 200))
    result = repair_grids(grids, territory=region(TERRITORY))
    assert result.remaining.ok, result.remaining.human()
    geoms = dict(zip(result.grids.code, metric(result.grids), strict=True))
    assert same_area(geoms["A-1"], at(box(0, 0, 150, 200)), rel=1e-9)
    assert same_area(geoms["B-1"], at(box(150, 0, 300, 200)), rel=1e-9)


def test_repair_leaves_what_it_cannot_fix():
    grids = make(cells(G10=None))
    grids.loc[grids.code == "G11", "worker"] = None
    result = repair_grids(grids, territory=region(TERRITORY))
    assert kinds(result.remaining) == {"no_worker"}


# -- properties over random coverages ----------------------------------------------------


def voronoi_layer(seed: int, n: int, hole: bool, island: bool):
    """Voronoi cells of random points, those whose seed lies in a random polygon (with a
    hole, and an island: a MultiPolygon) forming the territory. Returns (cells, territory),
    local metres."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1000, (n, 2))
    extra = [rng.uniform((1050, 0), (1150, 1000), (8, 2))]  # never selected: a moat
    if island:
        extra.append(rng.uniform((1200, 100), (1600, 500), (max(n // 4, 3), 2)))
    pts = np.concatenate([pts, *extra])
    frame = box(-200, -200, 1800, 1200)
    vor = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame, ordered=True)
    tiles = shapely.intersection(shapely.get_parts(vor), frame)
    shape = shapely.convex_hull(shapely.multipoints(rng.uniform(0, 1000, (7, 2))))
    if hole:
        shape = shape.difference(shapely.Point(shape.centroid).buffer(rng.uniform(80, 200)))
    if island:
        shape = shape.union(box(1200, 100, 1600, 500))
    chosen = shapely.contains(shape, shapely.points(pts))
    tiles = tiles[chosen]
    return tiles, shapely.coverage_union_all(tiles)


coverages = st.tuples(st.integers(0, 2**32 - 1), st.integers(25, 70), st.booleans(),
                      st.booleans())
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])


def as_layer(tiles):
    codes = [f"V{i:03d}" for i in range(len(tiles))]
    return layer(list(tiles), code=codes, level=1, kind="rural", institution="NSH",
                 worker=[f"w{i}" for i in range(len(tiles))])


@PROPERTY
@given(coverages, st.integers(0, 10_000), st.booleans())
def test_property_deleted_cell_is_the_gap(coverage, pick, with_territory):
    tiles, territory = voronoi_layer(*coverage[:2], coverage[2] and with_territory, coverage[3])
    assume(len(tiles) >= 4)
    k = pick % len(tiles)
    if not with_territory:  # without a territory only an enclosed cell leaves a hole
        assume(not shapely.intersects(tiles[k].boundary, territory.boundary))
    terr = region(territory) if with_territory else None
    assume(validate_grids(as_layer(tiles), territory=terr).ok)

    bad = as_layer(np.delete(tiles, k))
    report = validate_grids(bad, territory=terr)
    assert kinds(report) == {"gap"}, report.human()
    assert located(only(report, "gap"), tiles[k])

    result = repair_grids(bad, territory=terr)
    rest = shapely.coverage_union_all(np.delete(tiles, k))
    if shapely.length(shapely.intersection(tiles[k].boundary, rest.boundary)) == 0:
        # A part of the territory whose only cell was deleted: no grid can take it over.
        assert kinds(result.remaining) == {"gap"}
        assert "bordered by no grid" in result.remaining.problems.message.iloc[0]
        return
    assert result.remaining.ok, result.remaining.human()
    assert_tiles(result.grids, territory)
    assert (shapely.get_num_geometries(metric(result.grids)) == 1).all()
    gained = result.changes.area_gained_m2.sum()
    assert gained == pytest.approx(metric(region(tiles[k]))[0].area, rel=1e-6)


@PROPERTY
@given(coverages, st.integers(0, 10_000), st.floats(3.0, 30.0), st.booleans())
def test_property_buffered_cell_is_the_overlap(coverage, pick, distance, with_territory):
    tiles, territory = voronoi_layer(*coverage[:2], coverage[2] and with_territory, coverage[3])
    assume(len(tiles) >= 4)
    k = pick % len(tiles)
    terr = region(territory) if with_territory else None
    assume(validate_grids(as_layer(tiles), territory=terr).ok)

    grown = tiles.copy()
    grown[k] = tiles[k].buffer(distance, quad_segs=4)
    others = shapely.coverage_union_all(np.delete(tiles, k))
    expected = grown[k].intersection(others).area
    bad = as_layer(grown)
    report = validate_grids(bad, territory=terr)
    found = report.problems
    assert kinds(report) <= {"overlap", "sliver", "outside_territory"}, report.human()
    overlaps = found[found.kind.eq("overlap") | found.sliver_of.eq("overlap")]
    assert overlaps.area_m2.sum() == pytest.approx(expected, rel=1e-6, abs=1e-3)
    assert overlaps.codes.str.split(";").map(lambda c: f"V{k:03d}" in c).all()
    if with_territory:
        outside = found[found.kind.eq("outside_territory")
                        | found.sliver_of.eq("outside_territory")]
        assert outside.area_m2.sum() == pytest.approx(grown[k].difference(territory).area,
                                                      rel=1e-6, abs=1e-3)

    result = repair_grids(bad, territory=terr)
    assert result.remaining.ok, result.remaining.human()
    expected_region = territory if with_territory else shapely.union_all(grown)
    assert_tiles(result.grids, expected_region)
    assert (shapely.get_num_geometries(metric(result.grids)) == 1).all()
