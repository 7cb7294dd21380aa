"""Issue 15's done-when checks of part 1 through the real CLI, on both stores, on the
Zigui sample (the demo's first step): an upsert of one changed and one new outlet leaves
188 and shows in ``gisgrid history outlets``; ``--restore`` brings back the 187;
replacing ``institutions`` without one that outlets, devices and staff use is exit 3
naming them; an existing layer needs ``--mode`` (exit 2)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from gis_grid.cli import main
from layers.store import open_store


@pytest.fixture(params=["gpkg", "postgis"])
def zigui(request, tmp_path):
    if request.param == "gpkg":
        url = str(tmp_path / "zigui.gpkg")
    else:
        url = request.getfixturevalue("postgis_url")
    run("sample", "--county", "420527", "--households", "5000", "--store", url)
    yield url
    if request.param == "postgis":
        with open_store(url) as store:
            for info in store.layers():
                store.delete(info.name)


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result.output


def outlet_count(url: str) -> int:
    with open_store(url) as store:
        return len(store.read("outlets"))


def test_upsert_history_and_restore(zigui, tmp_path):
    url = zigui
    run("export", "outlets", str(tmp_path / "outlets.csv"), "--store", url)
    table = pd.read_csv(tmp_path / "outlets.csv", dtype=str, encoding="utf-8-sig")
    assert len(table) == 187
    first = table.iloc[0]["id"]
    changed = table.iloc[:1].assign(name="秭归农商行营业部（新址）")
    new = table.iloc[1:2].assign(id="NSH-O-999", name="新设助农点")
    pd.concat([changed, new]).to_csv(tmp_path / "update.csv", index=False)

    out = run("import", str(tmp_path / "update.csv"), "--layer", "outlets", "--store", url,
              code=2)
    assert "--mode replace|append|upsert|delete" in out and outlet_count(url) == 187
    out = run("import", str(tmp_path / "update.csv"), "--layer", "outlets", "--mode",
              "upsert", "--store", url)
    assert "1 added, 1 changed, 0 removed, 188 rows now" in out
    with open_store(url) as store:
        outlets = store.read("outlets").set_index("id")
    assert len(outlets) == 188 and outlets.loc[first, "name"] == "秭归农商行营业部（新址）"

    out = run("history", "outlets", "--store", url)
    assert "+ NSH-O-999" in out and f"~ {first}" in out and "187→188" in out
    log = json.loads(run("history", "outlets", "--json", "--store", url))
    upsert = log[-1]
    assert (upsert["added"], upsert["changed"]) == (["NSH-O-999"], [first])
    assert "import --mode upsert" in upsert["how"] and upsert["who"]
    assert log[-2]["rows_after"] == 187 and "sample" in log[-2]["how"]  # the sample

    shown = json.loads(run("history", "outlets", "--show", str(upsert["id"]), "--store", url))
    assert [row["name"] for row in shown["old"]] == [table.iloc[0]["name"]]
    out = run("history", "outlets", "--restore", str(upsert["id"]), "--store", url)
    assert "187 rows now" in out
    with open_store(url) as store:
        outlets = store.read("outlets").set_index("id")
    assert len(outlets) == 187 and outlets.loc[first, "name"] == table.iloc[0]["name"]
    # undone once; undoing it again would undo the restore too: refused
    out = run("history", "outlets", "--restore", str(upsert["id"]), "--store", url, code=3)
    assert "later touched keys" in out
    assert "no changes logged since 2999-01-01" in run(
        "history", "outlets", "--since", "2999-01-01", "--store", url)


def test_replacing_institutions_without_one_in_use_names_the_layers(zigui, tmp_path):
    url = zigui
    with open_store(url) as store:
        logged = len(store.history("institutions"))
    run("export", "institutions", str(tmp_path / "institutions.csv"), "--store", url)
    table = pd.read_csv(tmp_path / "institutions.csv", dtype=str, encoding="utf-8-sig")
    table[table["id"] != "NSH"].to_csv(tmp_path / "fewer.csv", index=False)
    out = run("import", str(tmp_path / "fewer.csv"), "--layer", "institutions", "--mode",
              "replace", "--store", url, code=3)
    for layer, example in (("outlets", "NSH-O-001"), ("devices", "NSH-D-0001"),
                           ("staff", "NSH-S-0001")):
        assert f"of layer {layer} refer through 'institution' to institutions id NSH" in out
        assert example in out, (layer, out)
    assert "nothing was stored" in out and "Traceback" not in out
    with open_store(url) as store:
        assert len(store.read("institutions")) == len(table)
        assert len(store.history("institutions")) == logged


def test_delete_is_refused_while_referenced_and_logged(zigui):
    url = zigui
    out = run("delete", "outlets", "--yes", "--store", url, code=3)
    assert "of layer devices refer through 'outlet' to outlets id" in out
    assert outlet_count(url) == 187
    with open_store(url) as store:
        entities = store.read("entities")
    out = run("delete", "entities", "--yes", "--store", url)  # nothing refers to entities
    change = int(out.rsplit("change ", 1)[1].rstrip(")\n"))
    run("history", "entities", "--restore", str(change), "--store", url)
    with open_store(url) as store:
        back = store.read("entities")
    assert back["id"].tolist() == entities["id"].tolist() and len(back) > 100
