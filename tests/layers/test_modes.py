"""Write modes and references (issue 15, part 1): ``Store.change`` on both stores.

Every mode by the layer's key; every mode all or nothing (a failure injected inside the
store's transaction, or a row the database refuses, leaves the layer and the log as they
were); references checked against the store's current state whatever it holds, both
ways, naming the rows.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import Point

import layers.gpkg
import layers.postgis
from gis_grid.errors import InputError
from layers.integrity import IntegrityError
from tests.layers.test_store_contract import assert_same, institutions, ledger

CRS = "EPSG:4326"


def outlets(ids=("O-1", "O-2", "O-3"), banks=None, names=None) -> gpd.GeoDataFrame:
    n = len(ids)
    banks = banks or ["PSBC" if i == "O-2" else "NSH" for i in ids]
    return gpd.GeoDataFrame({
        "id": list(ids), "institution": list(banks), "tier": ["分理处"] * n,
        "name": list(names or [f"网点{i}" for i in ids]),
    }, geometry=[Point(110.8 + i * 0.01, 30.9) for i in range(n)], crs=CRS)


def devices(pairs=(("D-1", "O-1"), ("D-2", "O-1"), ("D-3", "O-3"))) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({
        "id": [d for d, _ in pairs], "institution": ["NSH"] * len(pairs),
        "type": ["ATM"] * len(pairs), "outlet": [o for _, o in pairs],
    }, geometry=[Point(110.8, 30.9)] * len(pairs), crs=CRS)


@pytest.fixture
def filled(store):
    store.change("institutions", institutions(), "replace")
    store.change("outlets", outlets(), "replace")
    store.change("devices", devices(), "replace")
    return store


def ids(store, layer="outlets") -> list[str]:
    return store.read(layer)["id"].tolist()


def test_each_mode_by_key(filled):
    store = filled
    change = store.change("outlets", outlets(("O-2", "O-4"), ("NSH", "NSH"), ("改名", "新点")),
                          "upsert")
    assert (change.added, change.changed, change.removed) == (["O-4"], ["O-2"], [])
    assert ids(store) == ["O-1", "O-2", "O-3", "O-4"]  # a changed row keeps its place
    assert store.read("outlets").set_index("id").loc["O-2", "name"] == "改名"
    change = store.change("outlets", outlets(("O-5",)), "append")
    assert change.added == ["O-5"] and len(store.read("outlets")) == 5
    change = store.change("outlets", pd.DataFrame({"id": ["O-4", "O-5"]}), "delete")
    assert change.removed == ["O-4", "O-5"] and ids(store) == ["O-1", "O-2", "O-3"]
    change = store.change("outlets", outlets(("O-1", "O-3")), "replace")
    assert change.removed == ["O-2"] and ids(store) == ["O-1", "O-3"]
    # the same rows again change nothing and log nothing
    again = store.change("outlets", outlets(("O-1", "O-3")), "replace")
    assert again.id is None and not again.keys


def test_a_key_already_there_or_missing_is_named_by_row(filled):
    before = filled.read("outlets")
    with pytest.raises(InputError) as caught:
        filled.change("outlets", outlets(("O-9", "O-2")), "append", source="new.csv",
                      labels=["row 2", "row 3"])
    assert "new.csv row 3: id 'O-2' is already in layer outlets" in str(caught.value)
    with pytest.raises(InputError, match="row 2: id 'O-8' is not in layer outlets"):
        filled.change("outlets", pd.DataFrame({"id": ["O-8"]}), "delete",
                      labels=["row 2"])
    assert_same(filled.read("outlets"), before)


def test_upsert_and_delete_need_a_key(store):
    patrols = pd.DataFrame({"worker": ["S-1"], "grid": ["420527-1"],
                            "date": [pd.Timestamp("2026-05-01").date()]})
    store.change("patrols", patrols, "replace")
    with pytest.raises(InputError, match="patrols has no key; use --mode replace or append"):
        store.change("patrols", patrols, "upsert")
    assert store.change("patrols", patrols, "append").rows_after == 2


def test_the_ledger_is_keyed_by_grid_institution_and_period(store):
    store.change("institutions", institutions(), "replace")
    store.change("ledger", ledger(), "replace")
    row = ledger().iloc[:1].assign(households_files=260)
    change = store.change("ledger", row, "upsert")
    assert change.changed == ["420527100001-1|NSH|2024-06"] and not change.added
    assert len(store.read("ledger")) == 3


def test_an_unknown_reference_is_refused_even_in_an_empty_store(store):
    with pytest.raises(IntegrityError) as caught:
        store.change("outlets", outlets(), "replace", source="o.csv",
                     labels=["row 2", "row 3", "row 4"])
    text = str(caught.value)
    assert "o.csv row 2: institution 'NSH' is not in layer institutions (the store has no " \
           "layer institutions yet)" in text
    assert store.layers() == [] and store.history() == []
    # the institutions first, then the outlets pass; an unknown one is named
    store.change("institutions", institutions(), "replace")
    store.change("outlets", outlets(), "replace")
    with pytest.raises(IntegrityError, match="row 1: institution 'XYZ' is not in layer "
                                             "institutions"):
        store.change("outlets", outlets(("O-7",), ("XYZ",)), "upsert")


def test_removing_keys_in_use_names_the_referencing_layers_and_ids(filled):
    store = filled
    before = store.read("institutions")
    staff = pd.DataFrame({"id": [f"S-{i:02d}" for i in range(12)], "institution": "NSH",
                          "name": "张伟", "role": "worker"})
    store.change("staff", gpd.GeoDataFrame(staff, geometry=[None] * 12, crs=CRS), "replace")
    with pytest.raises(IntegrityError) as caught:
        store.change("institutions", institutions().iloc[1:], "replace", source="inst.csv")
    text = str(caught.value)
    assert "3 row(s) of layer devices refer through 'institution' to institutions id NSH" \
        in text and "devices id D-1, D-2, D-3" in text
    assert "2 row(s) of layer outlets" in text and "outlets id O-1, O-3" in text
    assert "12 row(s) of layer staff" in text and "… (12 in all)" in text
    assert_same(store.read("institutions"), before)
    # deleting an outlet devices use is refused the same way; a device first, then it
    with pytest.raises(IntegrityError, match="layer devices refer through 'outlet'.*D-3"):
        store.change("outlets", pd.DataFrame({"id": ["O-3"]}), "delete")
    store.change("devices", pd.DataFrame({"id": ["D-3"]}), "delete")
    assert store.change("outlets", pd.DataFrame({"id": ["O-3"]}), "delete").removed == ["O-3"]


def test_rows_that_already_pointed_nowhere_do_not_block_a_change(filled):
    store = filled
    store.write("devices", devices((("D-1", "O-1"), ("D-9", "O-404"))))  # unchecked write
    change = store.change("outlets", outlets(("O-1", "O-2")), "replace")
    assert change.removed == ["O-3"]


def _failing_step(kind: str):
    return (layers.gpkg, "_create_layer") if kind == "gpkg" else (layers.postgis,
                                                                  "_record_layer")


@pytest.mark.parametrize("mode", ["replace", "append", "upsert", "delete"])
def test_every_mode_is_all_or_nothing(filled, store_location, monkeypatch, mode):
    """A failure inside the store's transaction, after the old layer was dropped
    (GeoPackage) or the new one built (PostGIS), leaves the layer and the log as they
    were."""
    store = filled
    before, log = store.read("outlets"), store.history()
    module, step = _failing_step(store_location.kind)

    def failing(*args, **kwargs):
        raise RuntimeError("injected failure")

    frame = {"replace": outlets(("O-1", "O-3")), "append": outlets(("O-7",)),
             "upsert": outlets(("O-2", "O-7"), names=("改", "新")),
             "delete": pd.DataFrame({"id": ["O-2"]})}[mode]
    monkeypatch.setattr(module, step, failing)
    with pytest.raises(RuntimeError, match="injected"):
        store.change("outlets", frame, mode)
    monkeypatch.undo()
    assert_same(store.read("outlets"), before)
    assert [c.id for c in store.history()] == [c.id for c in log]
    assert store.change("outlets", frame, mode).id is not None  # and then it goes in


def test_a_row_the_store_refuses_leaves_everything(filled):
    """A failing row: a value the layer's column cannot hold (checked inside the
    transaction), all or nothing."""
    before, log = filled.read("outlets"), filled.history()
    bad = outlets(("O-7", "O-8")).assign(name=["好", {"not": "text"}])
    with pytest.raises(Exception, match="name"):
        filled.change("outlets", bad, "append")
    assert_same(filled.read("outlets"), before)
    assert len(filled.history()) == len(log)
