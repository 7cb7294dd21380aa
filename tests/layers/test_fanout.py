"""Province fan-out: per-county tasks in-process and on a Dask LocalCluster (2 workers).

One synthetic province of 20 counties × 2,000 households in a fresh PostGIS database.
The in-process run is the reference; the cluster run must give the same grids, byte for
byte (WKB), also when a worker is killed in the middle; re-runs skip done counties; a
county that always fails is reported by name while the others complete.
"""

from __future__ import annotations

import pytest
import shapely
from click.testing import CliRunner

from gis_grid.jobs import PARTITION, VALIDATE
from gis_grid.naming import LEDGER, stage_layer
from layers.fanout import run_province
from layers.store import open_store
from layers.synthetic import build_province
from tests.layers.faults import faulty

pytestmark = [pytest.mark.postgis, pytest.mark.slow]

COUNTIES = 20
PARAMS = {"institution": "NSH", "levels": ["units:townships", "balanced"]}


@pytest.fixture(scope="module")
def province_url(postgis_url: str) -> str:
    layers = build_province("示范省", counties=COUNTIES, households_per_county=2_000)
    with open_store(postgis_url) as store:
        for name, frame in layers.items():
            store.write(name, frame)
    return postgis_url


def _grids(url: str, layer: str):
    with open_store(url) as store:
        grids = store.read(layer)
    grids = grids.sort_values("code").reset_index(drop=True)
    return grids, shapely.to_wkb(grids.geometry.to_numpy())


@pytest.fixture(scope="module")
def reference(province_url: str):
    run = run_province(province_url, PARTITION, {**PARAMS, "layer": "grids_ref"},
                       progress=False)
    assert not run.failed
    return _grids(province_url, "grids_ref")


def test_province_tiles_without_gap_or_overlap(province_url: str) -> None:
    with open_store(province_url) as store:
        territory = store.read("territory")
        units = store.read("units")
    assert len(territory) == COUNTIES
    assert shapely.coverage_is_valid(territory.geometry.to_numpy())
    assert shapely.coverage_is_valid(units.geometry.to_numpy())
    assert set(units["county"]) == set(territory["code"])


def test_in_process_partition_respects_county_borders_and_seams(province_url, reference):
    grids, _ = reference
    assert set(grids["county"]) == {f"9901{k:02d}" for k in range(1, COUNTIES + 1)}
    assert grids["code"].is_unique
    # Every grid lies in its own county (never crosses a border).
    assert (grids["code"].str[:6] == grids["county"]).all()
    run = run_province(province_url, VALIDATE, {"layer": "grids_ref"}, progress=False)
    assert run.seams["ok"], run.seams
    assert run.seams["counties"] == COUNTIES


def test_dask_run_is_identical_even_when_a_worker_dies(province_url, reference, cluster,
                                                       tmp_path) -> None:
    marker = tmp_path / "killed"
    params = {**PARAMS, "layer": "grids_dask"}
    job = faulty(PARTITION, kill_once=("990104", str(marker)))
    run = run_province(province_url, job, params, scheduler=cluster, progress=False)
    assert marker.exists()  # a worker really died in the middle
    assert not run.failed, run.text()
    assert run.dashboard
    grids, wkb = _grids(province_url, "grids_dask")
    ref, ref_wkb = reference
    assert grids["code"].tolist() == ref["code"].tolist()  # nothing lost or duplicated
    assert list(wkb) == list(ref_wkb)
    assert grids.drop(columns="geometry").equals(ref.drop(columns="geometry"))

    # Resume: nothing changed, so every county is skipped and the layer is the same.
    again = run_province(province_url, job, params, scheduler=cluster, progress=False)
    assert {c.status for c in again.counties} == {"skipped"}
    assert list(_grids(province_url, "grids_dask")[1]) == list(ref_wkb)


def test_failing_county_is_reported_and_the_rest_completes(province_url, cluster) -> None:
    params = {**PARAMS, "layer": "grids_fail"}
    run = run_province(province_url, faulty(PARTITION, fail=["990107"]), params,
                       scheduler=cluster, retries=1,
                       progress=False)
    assert [(c.county, c.name) for c in run.failed] == [("990107", run.failed[0].name)]
    assert run.failed[0].name.endswith("县")
    assert "injected failure" in run.failed[0].error
    assert "FAILED 990107" in run.text()
    grids, _ = _grids(province_url, "grids_fail")
    assert set(grids["county"]) == {f"9901{k:02d}" for k in range(1, COUNTIES + 1)} - {"990107"}
    with open_store(province_url) as store:
        ledger = store.read(LEDGER, where={"layer": "grids_fail", "county": "990107"})
        assert not store.has(stage_layer("grids_fail", "990107"))
    assert ledger["status"].tolist() == ["failed"]


def test_validate_on_the_cluster_matches_in_process(province_url, reference, cluster) -> None:
    local = run_province(province_url, VALIDATE, {"layer": "grids_ref"}, progress=False)
    remote = run_province(province_url, VALIDATE, {"layer": "grids_ref", "resume": False},
                          scheduler=cluster, progress=False)
    assert [c.summary for c in remote.counties] == [c.summary for c in local.counties]
    assert remote.seams == local.seams


def test_geopackage_store_refuses_a_scheduler(tmp_path) -> None:
    from gis_grid.errors import StoreError

    with pytest.raises(StoreError, match="PostGIS"):
        run_province(str(tmp_path / "p.gpkg"), PARTITION, {}, scheduler="tcp://10.1.2.3:8786")


def test_cli_province_group(tmp_path) -> None:
    from gis_grid.cli import main

    store = str(tmp_path / "p.gpkg")
    runner = CliRunner()
    result = runner.invoke(main, ["province", "sample", "--counties", "3",
                                  "--households-per-county", "600", "--store", store])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["province", "partition", "--institution", "NSH",
                                  "--level", "units:townships", "--level", "balanced",
                                  "--store", store])
    assert "3 done" in result.output, result.output
    result = runner.invoke(main, ["province", "partition", "--institution", "NSH",
                                  "--level", "units:townships", "--level", "balanced",
                                  "--store", store])
    assert "3 skipped" in result.output, result.output
    result = runner.invoke(main, ["province", "validate", "--institution", "NSH",
                                  "--store", store])
    assert result.exit_code == 0 and "no gap, no overlap" in result.output, result.output
    out = tmp_path / "out"
    result = runner.invoke(main, ["province", "coverage", "--institution", "NSH",
                                  "--out", str(out), "--store", store])
    assert result.exit_code == 0, result.output
    # Each county's report is the whole set `gisgrid coverage` writes.
    for name in ("report.json", "coverage.xlsx", "service_blanks.geojson"):
        assert sorted(p.parent.name for p in out.glob(f"*/{name}")) == [
            "990101", "990102", "990103"], name
    result = runner.invoke(main, ["province", "atlas", "--institution", "NSH", "--limit", "1",
                                  "--county", "990102", "--out", str(out), "--store", store])
    assert result.exit_code == 0 and "1 done" in result.output, result.output
    assert list((out / "990102").glob("atlas-*.pdf"))
    result = runner.invoke(main, ["province", "partition", "--store", store,
                                  "--scheduler", "tcp://10.1.2.3:8786"])
    assert result.exit_code == 4 and "PostGIS" in result.output
    # Cleaning the GeoPackage store: every staging layer and ledger row of grids__nsh.
    with open_store(store) as target:
        before = {info.name for info in target.layers()}
    staged = {f"{kind}grids__nsh__c{code}" for kind in ("", "staff__")
              for code in ("990101", "990102", "990103")}
    assert staged <= before
    result = runner.invoke(main, ["province", "clean", "--institution", "NSH",
                                  "--store", store])
    assert result.exit_code == 0 and "removed 6 staging layers" in result.output, result.output
    assert "partition grids__nsh: 3" in result.output
    with open_store(store) as target:
        assert {info.name for info in target.layers()} == before - staged - {LEDGER}
    result = runner.invoke(main, ["province", "partition", "--institution", "NSH",
                                  "--level", "units:townships", "--level", "balanced",
                                  "--store", store])
    assert "3 done" in result.output, result.output


def test_a_province_partition_leaves_other_banks_staff_as_they_were(tmp_path) -> None:
    """Partitioning NSH county by county gives NSH's staff their grids and leaves every
    other bank's staff rows — their grids included — as they were."""
    layers = build_province("示范省", counties=2, households_per_county=300)
    staff = layers["staff"].copy()
    others = staff["institution"] != "NSH"
    staff.loc[others, "grids"] = [f"THEIRS-{k}" for k in range(int(others.sum()))]
    layers["staff"] = staff
    url = str(tmp_path / "p.gpkg")
    with open_store(url) as store:
        for name, frame in layers.items():
            store.write(name, frame)
    run = run_province(url, PARTITION, PARAMS, progress=False)
    assert not run.failed, run.text()
    with open_store(url) as store:
        after = store.read("staff").set_index("id")
        grids = store.read("grids__nsh")
    before = staff.set_index("id")
    theirs = before.index[others.to_numpy()]
    assert after.loc[theirs, "grids"].tolist() == before.loc[theirs, "grids"].tolist()
    held = {code for value in after.loc[~after.index.isin(theirs), "grids"].dropna()
            for code in str(value).split(";")}
    assert held and held <= set(grids["code"])


def test_province_coverage_strict_names_a_county_s_far_points(tmp_path) -> None:
    """`province coverage --strict`: a county with an outlet at (0, 0) fails, naming the
    outlet; the other county is done. Without --strict the outlet is left out with a
    warning in that county's report."""
    import json

    from gis_grid.cli import main

    layers = build_province("示范省", counties=2, households_per_county=300)
    outlets = layers["outlets"].copy()
    far = outlets.index[outlets["county"] == "990101"][0]
    outlets.loc[far, "geometry"] = shapely.Point(0, 0)
    layers["outlets"] = outlets
    store = str(tmp_path / "p.gpkg")
    with open_store(store) as target:
        for name, frame in layers.items():
            target.write(name, frame)
    runner = CliRunner()
    result = runner.invoke(main, ["province", "partition", "--institution", "NSH",
                                  "--level", "units:townships", "--level", "balanced",
                                  "--store", store])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    result = runner.invoke(main, ["province", "coverage", "--institution", "NSH", "--strict",
                                  "--retries", "0", "--out", str(out), "--store", store])
    assert result.exit_code == 1, result.output
    assert "FAILED 990101" in result.output and str(outlets.loc[far, "id"]) in result.output
    assert "1 done" in result.output and (out / "990102" / "report.json").exists()
    result = runner.invoke(main, ["province", "coverage", "--institution", "NSH",
                                  "--out", str(out), "--store", store])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "990101" / "report.json").read_text(encoding="utf-8"))["meta"]
    assert str(outlets.loc[far, "id"]) in json.dumps(meta, ensure_ascii=False)
