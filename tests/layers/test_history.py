"""The change log and restores (issue 15, part 1), on both stores; on PostGIS also other
clients' SQL: logged by the row triggers, refused when it breaks a reference."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from gis_grid.errors import InputError
from layers.history import Actor
from tests.layers.test_modes import devices, outlets
from tests.layers.test_store_contract import assert_same, institutions

ME = Actor("张伟", "test")


@pytest.fixture
def filled(store):
    store.change("institutions", institutions(), "replace", actor=ME)
    store.change("outlets", outlets(), "replace", actor=ME)
    store.change("devices", devices(), "replace", actor=ME)
    return store


def test_every_kind_of_write_is_logged_with_old_values(filled):
    store = filled
    first = store.history("outlets")
    assert len(first) == 1
    assert (first[0].who, first[0].how, first[0].added) == ("张伟", "test",
                                                            ["O-1", "O-2", "O-3"])
    assert first[0].rows_before is None and first[0].rows_after == 3
    # the store's plain operations are logged too: write, append, update, delete
    store.write("outlets", outlets(("O-1", "O-2", "O-3"), names=("一", "二", "三")))
    store.append("outlets", outlets(("O-4",)))
    events = outlets(("E-1",)).drop(columns=["institution", "tier"]).assign(
        kind="general", reporter="李娜", state="reported",
        reported_at=pd.Timestamp("2026-05-01T08:00Z"), version=1)
    store.write("events", events)
    store.update("events", "id", "E-1", {"state": "accepted"}, expected_version=1)
    store.write("scratch", pd.DataFrame({"a": [1, 2]}))
    store.delete("scratch")
    log = store.history("outlets", with_old=True)
    assert [len(c.changed) for c in log] == [0, 3, 0]
    assert log[1].old[0]["name"] == "网点O-1" and log[1].old[0]["geom"]
    assert log[2].added == ["O-4"] and (log[2].rows_before, log[2].rows_after) == (3, 4)
    update = store.history("events", with_old=True)[-1]
    assert update.changed == ["E-1"] and update.old[0]["state"] == "reported"
    gone = store.history("scratch", with_old=True)[-1]
    assert gone.rows_after is None and gone.removed and len(gone.old) == 2
    assert all(c.at is not None for c in store.history())
    assert store.history("outlets", since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                         ) == []


def test_restore_puts_the_layer_back_as_one_more_change(filled):
    store = filled
    before = store.read("outlets")
    change = store.change("outlets", outlets(("O-2", "O-4"), names=("改名", "新点")),
                          "upsert", actor=ME)
    assert len(store.read("outlets")) == 4
    undo = store.restore("outlets", change.id, actor=Actor("李娜", "restore"))
    assert (undo.removed, undo.changed) == (["O-4"], ["O-2"])
    after = store.read("outlets").sort_values("id").reset_index(drop=True)
    assert_same(after, before.sort_values("id").reset_index(drop=True))
    assert store.history("outlets")[-1].who == "李娜"
    # the change cannot be undone twice: the restore touched the same keys since
    with pytest.raises(InputError, match=f"change {undo.id}.*later touched keys O-2, O-4"):
        store.restore("outlets", change.id)
    with pytest.raises(InputError, match="no change 999 of layer outlets"):
        store.restore("outlets", 999)


def test_a_restore_is_checked_like_any_change(filled):
    """Undoing the creation of an outlet devices now use is refused, naming them."""
    store = filled
    added = store.change("outlets", outlets(("O-5",)), "append")
    store.change("devices", devices((("D-5", "O-5"),)), "append")
    with pytest.raises(InputError, match="layer devices refer through 'outlet'.*D-5"):
        store.restore("outlets", added.id)
    assert "O-5" in store.read("outlets")["id"].tolist()


def test_restoring_a_removal_brings_the_rows_back(filled):
    store = filled
    before = store.read("devices")
    removed = store.change("devices", pd.DataFrame({"id": ["D-2", "D-3"]}), "delete")
    store.restore("devices", removed.id)
    assert_same(store.read("devices").sort_values("id").reset_index(drop=True),
                before.sort_values("id").reset_index(drop=True))


# --- PostGIS: other clients' SQL ------------------------------------------------------

@pytest.fixture
def pg(filled, store_location):
    if store_location.kind != "postgis":
        pytest.skip("other clients' SQL: PostGIS only")
    return filled, store_location


def test_other_clients_sql_breaking_a_reference_is_refused(pg):
    store, location = pg
    table = sql.Identifier(location.schema, "outlets")
    institutions_table = sql.Identifier(location.schema, "institutions")
    with psycopg.connect(location.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation,
                           match="outlets.institution: 1 value.*not in layer institutions: XYZ"):
            conn.execute(sql.SQL("INSERT INTO {} (fid, id, institution, tier, name, geom)"
                                 " VALUES (99, 'O-9', 'XYZ', '分理处', 'x',"
                                 " ST_SetSRID(ST_Point(110.8, 30.9), 4326))").format(table))
        with pytest.raises(psycopg.errors.ForeignKeyViolation,
                           match="3 row\\(s\\) of layer devices refer through institution.*"
                                 "D-1, D-2, D-3"):
            conn.execute(sql.SQL("DELETE FROM {} WHERE id = 'NSH'").format(institutions_table))
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="layer devices.*D-3"):
            conn.execute(sql.SQL("UPDATE {} SET id = 'O-33' WHERE id = 'O-3'").format(table))
        # an update that brings no new reference passes, and is logged
        conn.execute("SET application_name = 'qgis'")
        conn.execute(sql.SQL("UPDATE {} SET name = '茅坪' WHERE id = 'O-1'").format(table))
    assert store.read("outlets")["id"].tolist() == ["O-1", "O-2", "O-3"]
    assert len(store.read("institutions")) == 3
    entry = store.history("outlets", with_old=True)[-1]
    assert entry.who == "postgres (qgis)" and entry.how == "SQL UPDATE"
    assert entry.changed == ["O-1"] and entry.old[0]["name"] == "网点O-1"
    # and it is undone like any other change
    store.restore("outlets", entry.id)
    assert store.read("outlets").set_index("id").loc["O-1", "name"] == "网点O-1"


def test_sql_inserts_and_deletes_are_logged(pg):
    store, location = pg
    table = sql.Identifier(location.schema, "devices")
    with psycopg.connect(location.url, autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} (fid, id, institution, type, outlet, geom)"
                             " VALUES (50, 'D-9', 'NSH', 'ATM', 'O-2',"
                             " ST_SetSRID(ST_Point(110.8, 30.9), 4326))").format(table))
        conn.execute(sql.SQL("DELETE FROM {} WHERE id IN ('D-1', 'D-9')").format(table))
    inserted, deleted = store.history("devices", with_old=True)[-2:]
    assert inserted.added == ["D-9"] and (inserted.rows_before, inserted.rows_after) == (3, 4)
    assert sorted(deleted.removed) == ["D-1", "D-9"] and deleted.rows_after == 2
    assert {row["id"] for row in deleted.old} == {"D-1", "D-9"}
    store.restore("devices", deleted.id)
    assert sorted(store.read("devices")["id"]) == ["D-1", "D-2", "D-3", "D-9"]


def test_deleting_a_layer_is_checked_logged_and_undone(filled):
    store = filled
    with pytest.raises(InputError, match="layer outlets refer through 'institution'"):
        store.remove("institutions")
    assert len(store.read("institutions")) == 3
    before = store.read("devices")
    gone = store.remove("devices", actor=ME)
    assert not store.has("devices") and gone.rows_after is None
    assert sorted(gone.removed) == ["D-1", "D-2", "D-3"]
    store.restore("devices", gone.id)
    assert_same(store.read("devices"), before)


def test_other_clients_truncate_is_refused_while_referenced_and_logged(pg):
    store, location = pg
    with psycopg.connect(location.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation,
                           match="layer devices refer through outlet.*D-1, D-2, D-3"):
            conn.execute(sql.SQL("TRUNCATE {}").format(
                sql.Identifier(location.schema, "outlets")))
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.Identifier(location.schema, "devices")))
    assert len(store.read("outlets")) == 3 and len(store.read("devices")) == 0
    entry = store.history("devices", with_old=True)[-1]
    assert entry.how == "SQL TRUNCATE" and sorted(entry.removed) == ["D-1", "D-2", "D-3"]
    store.restore("devices", entry.id)
    assert sorted(store.read("devices")["id"]) == ["D-1", "D-2", "D-3"]


def test_big_changes_keep_their_keys_but_not_their_old_rows(filled, monkeypatch):
    monkeypatch.setenv("GISGRID_HISTORY_MAX_OLD_ROWS", "2")
    store = filled
    small = store.change("outlets", outlets(("O-1",), names=("改",)), "upsert")
    big = store.change("outlets", outlets(names=("一", "二", "三")), "replace")
    entries = {c.id: c for c in store.history("outlets", with_old=True)}
    assert len(entries[small.id].old) == 1
    assert entries[big.id].old is None and entries[big.id].changed == ["O-1", "O-2", "O-3"]
    with pytest.raises(InputError, match="more than the 2 whose old values the log keeps"):
        store.restore("outlets", big.id)


def test_sql_changes_of_a_layer_without_a_key_are_logged_but_not_restored(pg):
    store, location = pg
    patrols = pd.DataFrame({"worker": ["S-1"], "grid": ["420527-1"],
                            "date": [dt.date(2026, 5, 1)]})
    store.change("patrols", patrols, "replace")
    with psycopg.connect(location.url, autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} (fid, worker, grid, date) VALUES"
                             " (2, 'S-2', '420527-2', '2026-05-02')").format(
            sql.Identifier(location.schema, "patrols")))
    entry = store.history("patrols")[-1]
    assert len(entry.added) == 1 and entry.how == "SQL INSERT"
    with pytest.raises(InputError, match="cannot be matched"):
        store.restore("patrols", entry.id)
    assert len(store.read("patrols")) == 2
    # the store's own change of it is restored by its row digests
    first = store.history("patrols")[0]
    appended = store.change("patrols", patrols.assign(worker="S-3"), "append")
    store.restore("patrols", appended.id)
    assert sorted(store.read("patrols")["worker"]) == ["S-1", "S-2"]
    assert first.added and len(first.added[0]) == 16


def test_writes_in_an_acting_block_are_logged_as_the_actor(filled):
    from layers.history import acting

    with acting(Actor("api key k1: admin of NSH", "POST /events/E-1/accept")):
        filled.append("outlets", outlets(("O-6",)))
    entry = filled.history("outlets")[-1]
    assert entry.who == "api key k1: admin of NSH"
    assert entry.how == "append: POST /events/E-1/accept"
    filled.append("outlets", outlets(("O-7",)))
    assert filled.history("outlets")[-1].who != "api key k1: admin of NSH"
