"""PostGIS enforces the grid invariants itself (ARCHITECTURE.md §5): no two grids of one
institution and level overlap, a child lies inside its parent, geometries are valid. A
violating write, append, update or another client's plain SQL is refused with a message
naming the grids, and nothing is stored."""

from __future__ import annotations

import secrets

import geopandas as gpd
import pandas as pd
import psycopg
import pytest
import shapely
from psycopg import sql

from gis_grid.errors import StoreError
from layers.postgis import PostGISStore
from layers.store import open_store

X0, Y0 = 110.80, 30.90
D = 0.02  # about 2 km


def _box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(X0 + x0 * D, Y0 + y0 * D, X0 + x1 * D, Y0 + y1 * D)


def _grids(rows: list[tuple], institution: str | None = "NSH") -> gpd.GeoDataFrame:
    """rows: (code, level, parent, geometry[, institution])."""
    return gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "level": [r[1] for r in rows],
         "parent": [r[2] for r in rows], "kind": "rural",
         "institution": [r[4] if len(r) > 4 else institution for r in rows]},
        geometry=[r[3] for r in rows], crs="EPSG:4326")


#: A 2×2 km square: two level-1 halves, each split in two, one of them split again.
VALID = [
    ("420527-1", 1, None, _box(0, 0, 0.5, 1)),
    ("420527-2", 1, None, _box(0.5, 0, 1, 1)),
    ("420527-1-1", 2, "420527-1", _box(0, 0, 0.5, 0.5)),
    ("420527-1-2", 2, None, _box(0, 0.5, 0.5, 1)),  # parent from the code
    ("420527-2-1", 2, "420527-2", _box(0.5, 0, 1, 0.5)),
    ("420527-2-2", 2, "420527-2", _box(0.5, 0.5, 1, 1)),
    ("420527-1-1-1", 3, None, _box(0, 0, 0.25, 0.5)),
    ("420527-1-1-2", 3, None, _box(0.25, 0, 0.5, 0.5)),
]


@pytest.fixture
def pg(postgis_url):
    """A PostGIS store in a schema of its own, dropped after the test."""
    schema = f"t_{secrets.token_hex(5)}"
    store = PostGISStore(postgis_url, schema=schema)
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


def _refused(store, frame, *words: str, name: str = "grids__nsh") -> None:
    before = store.read(name) if name in {i.name for i in store.layers()} else None
    with pytest.raises(StoreError) as caught:
        store.write(name, frame)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert "nothing was stored" in message
    if before is not None:
        after = store.read(name)
        assert after.drop(columns="geometry").equals(before.drop(columns="geometry"))
        assert after.geometry.geom_equals_exact(before.geometry, 0).all()


def test_open_store_url_gives_checked_layers(postgis_url):
    store = open_store(postgis_url)
    try:
        store.write("grids__open", _grids(VALID))
        with pytest.raises(StoreError, match="overlaps"):
            store.write("grids__open", _grids([*VALID, ("420527-3", 1, None,
                                                        _box(0.9, 0, 1.2, 1))]))
        assert len(store.read("grids__open")) == len(VALID)
    finally:
        store.delete("grids__open")
        store.close()


def test_valid_layer_with_shared_edges_is_stored(pg):
    pg.write("grids__nsh", _grids(VALID))
    assert pg.read("grids__nsh")["code"].tolist() == [r[0] for r in VALID]
    assert pg._conn.execute(sql.SQL("SELECT count(*) FROM {}.gisgrid_check_grids(%s)").format(
        sql.Identifier(pg.schema)), [f"{pg.schema}.grids__nsh"]).fetchone()[0] == 0


def test_overlap_in_one_institution_and_level_is_refused(pg):
    pg.write("grids__nsh", _grids(VALID))
    bad = _grids([*VALID, ("420527-3", 1, None, _box(0.9, 0, 1.5, 1))])
    _refused(pg, bad, "grid 420527-2 (NSH, level 1) overlaps 420527-3 by", "m²")


def test_overlap_across_institutions_or_levels_is_accepted(pg):
    other_bank = [(c, lv, p, g, "ABC") for c, lv, p, g in VALID[:2]]
    renamed = [(c.replace("420527", "B"), lv, p and p.replace("420527", "B"), g, "ABC")
               for c, lv, p, g, _ in other_bank]
    pg.write("grids__all", _grids([*VALID, *renamed]))
    # the same overlap between two levels (a level-2 grid over another level-1 grid)
    pg.write("grids__lv", _grids([*VALID[:4], ("420527-2-1", 2, "420527-2",
                                               _box(0.5, 0, 1, 1))]))
    assert len(pg.read("grids__lv")) == 5


def test_child_outside_parent_is_refused(pg):
    bad = _grids([*VALID[:2], ("420527-1-1", 2, "420527-1", _box(0, 0, 0.6, 0.5))])
    _refused(pg, bad, "grid 420527-1-1 (NSH, level 2) lies", "m² outside its parent 420527-1")


def test_child_without_parent_is_refused(pg):
    bad = _grids([VALID[0], ("420527-9-1", 2, None, _box(0.5, 0, 1, 0.5))])
    _refused(pg, bad, "grid 420527-9-1 (NSH, level 2) has no parent 420527-9 in the layer")


def test_invalid_geometry_is_refused(pg):
    bowtie = shapely.Polygon([(X0, Y0), (X0 + D, Y0 + D), (X0 + D, Y0), (X0, Y0 + D)])
    _refused(pg, _grids([("420527-1", 1, None, bowtie)]),
             "grid 420527-1 (NSH, level 1) has an invalid geometry")


def test_refused_write_keeps_the_old_layer(pg):
    pg.write("grids__nsh", _grids(VALID))
    _refused(pg, _grids([*VALID[:2], ("420527-1-1", 2, None, _box(0, 0, 0.7, 0.5))]),
             "outside its parent")
    assert len(pg.read("grids__nsh")) == len(VALID)


def test_direct_sql_is_refused(pg, postgis_url):
    # the grids' institution must exist (issue 15: references are checked on SQL too)
    pg.write("institutions", pd.DataFrame({"id": ["NSH"], "name": ["秭归农商行"],
                                           "type": ["农村商业银行"]}))
    pg.write("grids__nsh", _grids(VALID))
    table = sql.Identifier(pg.schema, "grids__nsh")
    with psycopg.connect(postgis_url) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="overlaps 420527-1-1"):
            with conn.transaction():
                conn.execute(sql.SQL(
                    "INSERT INTO {} (fid, code, level, kind, institution, geom) VALUES"
                    " (100, '420527-1-9', 2, 'rural', 'NSH', ST_GeomFromText(%s, 4326))"
                ).format(table), [_box(0, 0, 0.5, 0.3).wkt])
        with pytest.raises(psycopg.errors.CheckViolation, match="outside its parent"):
            with conn.transaction():
                conn.execute(sql.SQL("UPDATE {} SET geom = ST_GeomFromText(%s, 4326)"
                                     " WHERE code = '420527-1'").format(table),
                             [_box(0, 0.1, 0.5, 1).wkt])
        with pytest.raises(psycopg.errors.CheckViolation, match="no parent 420527-2"):
            with conn.transaction():
                conn.execute(sql.SQL("DELETE FROM {} WHERE code = '420527-2'").format(table))
        # a shared-edge neighbour is fine
        with conn.transaction():
            conn.execute(sql.SQL(
                "INSERT INTO {} (fid, code, level, kind, institution, geom) VALUES"
                " (101, '420527-3', 1, 'rural', 'NSH', ST_GeomFromText(%s, 4326))"
            ).format(table), [_box(1, 0, 1.5, 1).wkt])
    assert len(pg.read("grids__nsh")) == len(VALID) + 1


def test_append_and_update_are_checked(pg):
    frame = _grids(VALID)
    frame["version"] = 1
    pg.write("grids__nsh", frame)
    with pytest.raises(StoreError, match="overlaps 420527-2-2 by .*nothing was stored"):
        pg.append("grids__nsh", _grids([("420527-2-3", 2, "420527-2", _box(0.6, 0.6, 1, 1))]))
    pg.append("grids__nsh", _grids([("420527-3", 1, None, _box(1, 0, 1.5, 1))]))
    assert len(pg.read("grids__nsh")) == len(VALID) + 1
    with pytest.raises(StoreError, match="420527-1-2 .* outside its parent 420527-2"):
        pg.update("grids__nsh", "code", "420527-1-2", {"parent": "420527-2"},
                  expected_version=1)
    with pytest.raises(StoreError, match="420527-1-2 .* has no parent 420527-7"):
        pg.update("grids__nsh", "code", "420527-1-2", {"parent": "420527-7"},
                  expected_version=1)
    # another institution's grid may overlap: the same rows, moved to another bank
    assert pg.update("grids__nsh", "code", "420527-2-2", {"institution": "ABC"},
                     expected_version=1) == 2
    row = pg.read("grids__nsh", where={"code": "420527-1-2"}).iloc[0]
    assert (row["parent"], row["version"]) == ("", 1) or pd.isna(row["parent"])


def test_zigui_partition_is_stored(pg):
    from gis_grid.partition import LevelSpec, partition
    from layers.synthetic import build_sample

    sample = build_sample("420527", households=20000)
    grids = partition(sample["territory"], sample["households"],
                      levels=[LevelSpec("units", source="townships"),
                              LevelSpec("units", source="units"), LevelSpec("balanced")],
                      units=sample["units"], townships=sample["townships"],
                      institution="NSH").grids
    assert set(grids["level"]) == {1, 2, 3}
    pg.write("grids__nsh", grids)
    assert len(pg.read("grids__nsh")) == len(grids)
