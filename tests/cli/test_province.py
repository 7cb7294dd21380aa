"""The plain commands with ``--scheduler``, and ``gisgrid province clean``.

``gisgrid partition``, ``validate``, ``coverage`` and ``atlas`` fan out county by county
on a real Dask LocalCluster (the shared ``cluster`` fixture) against real PostGIS
databases of their own: the Zigui sample (one county, no ``county`` column, 3,000
households) and a synthetic province of 3 counties × 600 households. The in-process run
of the same command is the reference. GeoPackage stores are refused with a scheduler.
"""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from gis_grid.cli import main
from gis_grid.errors import StoreError
from gis_grid.jobs import COVERAGE, PARTITION, VALIDATE
from gis_grid.naming import LEDGER, stage_layer
from layers.fanout import clean_runs, run_province
from layers.store import open_store
from layers.synthetic import build_province, build_sample
from maps.jobs import ATLAS

#: Every job a province run may have run (as `gisgrid province clean` passes them).
JOBS = [PARTITION, VALIDATE, COVERAGE, ATLAS]

pytestmark = [pytest.mark.postgis, pytest.mark.slow]

#: Two levels keep the province runs short.
LEVELS = ["--level1", "units:townships", "--level2", "balanced", "--level3", "none"]
CODES = ["990101", "990102", "990103"]


def _store(url: str, frames: dict) -> str:
    with open_store(url) as store:
        for name, frame in frames.items():
            store.write(name, frame)
    return url


@pytest.fixture(scope="module")
def zigui_url(fresh_database) -> str:
    return _store(fresh_database(), build_sample("420527", households=3_000))


@pytest.fixture(scope="module")
def province_url(fresh_database) -> str:
    return _store(fresh_database(), build_province("示范省", counties=3,
                                                   households_per_county=600))


def _run(args: list[str], url: str | None = None, scheduler: str | None = None):
    """``gisgrid ARGS`` with GISGRID_SCHEDULER unset (or set to ``scheduler``)."""
    env = {"GISGRID_SCHEDULER": scheduler, "GISGRID_STORE": None}
    return CliRunner().invoke(main, [*args, *(["--store", url] if url else [])], env=env)


def _read(url: str, name: str, where: dict | None = None):
    with open_store(url) as store:
        return store.read(name, where=where)


def _sorted(frame):
    return frame.sort_values("code").reset_index(drop=True)


def _wkb(frame) -> list[bytes]:
    return list(shapely.to_wkb(frame.geometry.to_numpy()))


def _layer_names(url: str) -> set[str]:
    with open_store(url) as store:
        return {info.name for info in store.layers()}


# ------------------------------------------------------------------ one county, read whole


def test_single_county_partition_is_one_task_and_the_in_process_grids(zigui_url, cluster,
                                                                       tmp_path):
    address = cluster.scheduler.address
    local = _run(["partition", "--institution", "NSH", "--layer", "grids_local"], zigui_url)
    assert local.exit_code == 0, local.output
    ref, staff_ref = _sorted(_read(zigui_url, "grids_local")), _read(zigui_url, "staff")
    assert staff_ref["grids"].notna().sum() > 100  # the in-process run gave staff grids
    # Take the grids back from the staff, so the fanned-out run must give them again.
    _store(zigui_url, {"staff": staff_ref.assign(grids=None)})

    out = tmp_path / "part"
    result = _run(["partition", "--institution", "NSH", "--layer", "grids_dask",
                   "--scheduler", address, "--out", str(out)], zigui_url)
    assert result.exit_code == 0, result.output
    assert "partition: 1 county" in result.output and "1 done" in result.output
    grids = _sorted(_read(zigui_url, "grids_dask"))
    # The same layer, column for column and byte for byte (no county column added).
    assert list(grids.columns) == list(ref.columns)
    assert grids.drop(columns="geometry").equals(ref.drop(columns="geometry"))
    assert _wkb(grids) == _wkb(ref)
    staff = _read(zigui_url, "staff")
    assert staff["grids"].tolist() == staff_ref["grids"].tolist()
    # One task, under the territory's own code, and its outputs.
    ledger = _read(zigui_url, LEDGER, where={"layer": "grids_dask"})
    assert ledger[["job", "county", "status"]].values.tolist() == [
        ["partition", "420527", "done"]]
    assert stage_layer("grids_dask", "420527") in _layer_names(zigui_url)
    report = json.loads((out / "420527" / "report.json").read_text(encoding="utf-8"))
    assert [lv["grids"] for lv in report["levels"]] == ref["level"].value_counts(
        sort=False).sort_index().tolist()
    assert len(gpd.read_file(out / "grids.geojson")) == len(ref)

    again = _run(["partition", "--institution", "NSH", "--layer", "grids_dask",
                  "--scheduler", address, "--out", str(out)], zigui_url)
    assert again.exit_code == 0 and "1 skipped" in again.output, again.output


def test_single_county_validate_coverage_atlas_match_in_process(zigui_url, cluster,
                                                                tmp_path):
    address = cluster.scheduler.address
    grids = _read(zigui_url, "grids_dask")
    # A broken copy: one level-3 grid gone leaves a gap, so both runs must find it.
    hole = grids.index[grids["level"] == 3][5]
    _store(zigui_url, {"grids_broken": grids.drop(index=hole).reset_index(drop=True)})

    local = _run(["validate", "--grids", "grids_broken", "--json",
                  "--out", str(tmp_path / "v-local")], zigui_url)
    fanned = _run(["validate", "--grids", "grids_broken", "--json", "--scheduler", address,
                   "--out", str(tmp_path / "v-dask")], zigui_url)
    assert local.exit_code == fanned.exit_code == 1, fanned.output
    expected = json.loads(local.stdout)
    run = json.loads(fanned.stdout)
    assert not expected["ok"] and expected["counts"], expected["counts"]
    assert [c["county"] for c in run["counties"]] == ["420527"]
    assert run["counties"][0]["summary"]["kinds"] == expected["counts"]
    assert run["seams"] is None  # one county has no seams
    written = json.loads((tmp_path / "v-dask" / "420527" / "validation.json").read_text())
    assert written["problems"] == expected["problems"]

    local = _run(["coverage", "--institution", "NSH", "--out", str(tmp_path / "c-local")],
                 zigui_url)
    assert local.exit_code == 0, local.output
    gaps_local = _read(zigui_url, "coverage_gaps__nsh")
    _store(zigui_url, {"coverage_gaps__nsh": gaps_local.iloc[:1]})  # must be replaced
    fanned = _run(["coverage", "--institution", "NSH", "--out", str(tmp_path / "c-dask"),
                   "--scheduler", address], zigui_url)
    assert fanned.exit_code == 0, fanned.output
    a = json.loads((tmp_path / "c-local" / "report.json").read_text(encoding="utf-8"))
    b = json.loads((tmp_path / "c-dask" / "420527" / "report.json").read_text(encoding="utf-8"))
    assert a["tables"] and a["tables"] == b["tables"]
    assert {k: v for k, v in a["meta"].items() if k != "generated_at"} == {
        k: v for k, v in b["meta"].items() if k != "generated_at"}
    for name in ("blanks.csv", "files.csv", "coverage_gaps.geojson"):
        assert (tmp_path / "c-local" / name).read_bytes() == \
            (tmp_path / "c-dask" / "420527" / name).read_bytes(), name
    gaps = _read(zigui_url, "coverage_gaps__nsh")
    assert len(gaps) == len(gaps_local) > 1
    assert _wkb(gaps) == _wkb(gaps_local)

    args = ["atlas", "--grids", "grids_dask", "--volume", "rural", "--limit", "1"]
    local = _run([*args, "--out", str(tmp_path / "a-local")], zigui_url)
    fanned = _run([*args, "--out", str(tmp_path / "a-dask"), "--scheduler", address],
                  zigui_url)
    assert local.exit_code == 0 and fanned.exit_code == 0, fanned.output
    pdf = (tmp_path / "a-local" / "atlas-rural.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-"
    assert (tmp_path / "a-dask" / "420527" / "atlas-rural.pdf").read_bytes() == pdf


# ------------------------------------------------------------------ a province of 3 counties


def test_province_partition_through_the_env_var_gives_the_in_process_grids(province_url,
                                                                           cluster):
    local = _run(["partition", "--institution", "NSH", "--layer", "grids_local", *LEVELS],
                 province_url)
    assert local.exit_code == 0, local.output
    fanned = _run(["partition", "--institution", "NSH", "--layer", "grids_dask", *LEVELS],
                  province_url, scheduler=cluster.scheduler.address)
    assert fanned.exit_code == 0, fanned.output
    assert "3 counties" in fanned.output and "3 done" in fanned.output
    assert "Dask dashboard" in fanned.output  # it really went to the cluster
    ref, grids = _sorted(_read(province_url, "grids_local")), \
        _sorted(_read(province_url, "grids_dask"))
    assert grids["code"].tolist() == ref["code"].tolist()
    # The same polygons (the seams' shared vertices may be listed differently).
    assert shapely.equals(grids.geometry.to_numpy(), ref.geometry.to_numpy()).all()
    assert grids[["level", "parent", "kind", "households"]].equals(
        ref[["level", "parent", "kind", "households"]])
    assert (grids["county"] == grids["code"].str[:6]).all()
    assert sorted(grids["county"].unique()) == CODES
    # Each county's grids are held by that county's own staff.
    workers = grids["worker"].dropna()
    assert len(workers) and (workers.str[:6] == grids.loc[workers.index, "county"]).all()


def test_province_validate_with_scheduler_checks_counties_and_seams(province_url, cluster):
    address = cluster.scheduler.address
    result = _run(["validate", "--grids", "grids_dask", "--scheduler", address], province_url)
    assert result.exit_code == 0, result.output
    assert "3 done" in result.output and "no gap, no overlap" in result.output
    one = _run(["validate", "--grids", "grids_dask", "--scheduler", address,
                "--county", "990102", "--json"], province_url)
    assert one.exit_code == 0, one.output
    assert [c["county"] for c in json.loads(one.stdout)["counties"]] == ["990102"]
    # A layer without a county column cannot be read county by county: refused at once.
    lacking = _run(["validate", "--grids", "grids_local", "--scheduler", address],
                   province_url)
    assert lacking.exit_code == 3
    assert "grids_local: has no county column" in lacking.output


def test_geopackage_store_with_a_scheduler_is_refused(tmp_path) -> None:
    store = tmp_path / "p.gpkg"
    for command in (["partition"], ["validate"], ["coverage", "--out", str(tmp_path / "c")],
                    ["atlas", "--out", str(tmp_path / "a")]):
        result = _run([*command, "--scheduler", "tcp://127.0.0.1:9"], str(store))
        assert result.exit_code == 4, (command, result.output)
        assert "--scheduler needs the PostGIS store" in result.output
        by_env = _run(command, str(store), scheduler="tcp://127.0.0.1:9")
        assert by_env.exit_code == 4 and "PostGIS" in by_env.output, by_env.output
    assert not store.exists()  # refused before anything was opened


def test_fanout_options_need_a_scheduler(tmp_path) -> None:
    store = str(tmp_path / "p.gpkg")
    for command, option in ((["partition"], ["--county", "420527"]),
                            (["validate"], ["--no-resume"]),
                            (["atlas"], ["--retries", "0"])):
        result = _run([*command, *option], store)
        assert result.exit_code == 2, result.output
        assert f"{option[0]} only applies with --scheduler" in result.output


def test_several_counties_without_a_county_column_are_refused(tmp_path) -> None:
    frames = build_province("示范省", counties=2, households_per_county=200)
    frames = {"territory": frames["territory"].drop(columns="county"),
              "households": frames["households"]}
    store = _store(str(tmp_path / "p.gpkg"), frames)
    result = _run(["province", "partition"], store)
    assert result.exit_code == 3, result.output
    assert "territory: has 2 rows and no county column" in result.output


# ------------------------------------------------------------------ province clean


def test_province_clean_removes_exactly_a_runs_staging_layers_and_rows(province_url, cluster,
                                                                       tmp_path):
    address = cluster.scheduler.address
    for args in (["partition", "--institution", "NSH", "--layer", "grids_clean", *LEVELS],
                 ["partition", "--layer", "grids_keep", "--county", "990101", *LEVELS],
                 ["validate", "--grids", "grids_clean"],
                 ["coverage", "--institution", "NSH", "--grids", "grids_clean",
                  "--out", str(tmp_path / "cov")]):
        result = _run([*args, "--scheduler", address], province_url)
        assert result.exit_code == 0, (args, result.output)
    names, ledger = _layer_names(province_url), _read(province_url, LEDGER)
    live = _sorted(_read(province_url, "grids_clean"))
    staged = {f"{kind}grids_clean__c{code}" for kind in ("", "staff__") for code in CODES}
    assert staged <= names
    assert {f"gaps__grids__nsh__c{c}" for c in CODES} <= names

    dry = _run(["province", "clean", "--layer", "grids_clean", "--dry-run"], province_url)
    assert dry.exit_code == 0 and "would remove 6 staging layers" in dry.output, dry.output
    assert _layer_names(province_url) == names
    assert len(_read(province_url, LEDGER)) == len(ledger)

    result = _run(["province", "clean", "--layer", "grids_clean"], province_url)
    assert result.exit_code == 0, result.output
    assert "removed 6 staging layers" in result.output
    assert all(f"  {name}" in result.output for name in staged)
    assert "partition grids_clean: 3" in result.output
    assert "validate grids_clean: 3" in result.output
    assert _layer_names(province_url) == names - staged
    after = _read(province_url, LEDGER)
    mine = ledger["layer"] == "grids_clean"
    assert mine.sum() == 6
    order = ["finished_at", "job", "layer", "county"]
    pd.testing.assert_frame_equal(after.sort_values(order).reset_index(drop=True),
                                  ledger[~mine].sort_values(order).reset_index(drop=True))
    kept = _sorted(_read(province_url, "grids_clean"))  # the live layer stays
    assert kept["code"].tolist() == live["code"].tolist() and _wkb(kept) == _wkb(live)

    coverage = _run(["province", "clean", "--institution", "NSH", "--job", "coverage"],
                    province_url)
    assert coverage.exit_code == 0, coverage.output
    gone = {f"{kind}__grids__nsh__c{c}" for kind in ("gaps", "blanks", "no_point")
            for c in CODES}
    assert _layer_names(province_url) == names - staged - (gone & names)
    assert "coverage_gaps__nsh" in _layer_names(province_url)

    # Nothing is left to resume from: the next run recomputes every county.
    rerun = _run(["partition", "--institution", "NSH", "--layer", "grids_clean", *LEVELS,
                  "--scheduler", address], province_url)
    assert rerun.exit_code == 0 and "3 done" in rerun.output, rerun.output


def _clean_failing_at_third_delete(url: str, monkeypatch, **which) -> list[str]:
    """Run ``clean_runs`` with the store's third ``delete`` failing; the names it tried."""
    with open_store(url) as store:
        real_delete, calls = store.delete, []

        def failing_delete(name: str) -> None:
            calls.append(name)
            if len(calls) == 3:
                raise StoreError(f"injected failure deleting {name}")
            real_delete(name)

        monkeypatch.setattr(store, "delete", failing_delete)
        with pytest.raises(StoreError, match="injected"):
            clean_runs(store, JOBS, **which)
    return calls


def test_province_clean_is_all_or_nothing_on_postgis(province_url, monkeypatch) -> None:
    run = run_province(province_url, PARTITION,
                       {"institution": "NSH", "layer": "grids_atomic",
                        "levels": ["units:townships", "balanced"]},
                       counties=CODES[:2], progress=False)
    assert not run.failed, run.text()
    names, rows = _layer_names(province_url), len(_read(province_url, LEDGER))
    calls = _clean_failing_at_third_delete(province_url, monkeypatch, layer="grids_atomic")
    assert len(calls) == 3  # two staging layers were deleted before the failure …
    assert _layer_names(province_url) == names  # … and are back with the rollback
    assert len(_read(province_url, LEDGER)) == rows
    with open_store(province_url) as store:
        cleaned = clean_runs(store, JOBS, layer="grids_atomic")
    assert cleaned.atomic
    assert cleaned.layers == sorted(f"{kind}grids_atomic__c{c}" for kind in ("", "staff__")
                                    for c in CODES[:2])
    assert _layer_names(province_url) == names - set(cleaned.layers)


def test_an_interrupted_clean_on_a_geopackage_is_finished_by_cleaning_again(tmp_path,
                                                                           monkeypatch):
    url = _store(str(tmp_path / "p.gpkg"), build_province("示范省", counties=2,
                                                          households_per_county=200))
    run = run_province(url, PARTITION, {"institution": "NSH",
                                          "levels": ["units:townships", "balanced"]},
                       progress=False)
    assert not run.failed, run.text()
    names = _layer_names(url)
    staged = {f"{kind}grids__nsh__c{c}" for kind in ("", "staff__") for c in CODES[:2]}
    assert staged | {LEDGER} <= names
    calls = _clean_failing_at_third_delete(url, monkeypatch, layer="grids__nsh")
    # No transaction spans a GeoPackage's writes: the ledger (every row was this run's)
    # and the first staging layer went before the failure; the rest is still there.
    assert calls[0] == LEDGER
    left = _layer_names(url)
    assert left == names - {LEDGER, calls[1]}
    with open_store(url) as store:
        cleaned = clean_runs(store, JOBS)  # every staging layer, though no ledger row names it
    assert not cleaned.atomic
    assert set(cleaned.layers) == staged - {calls[1]}
    assert _layer_names(url) == names - staged - {LEDGER}
    assert "grids__nsh" in _layer_names(url)


def test_a_provinces_ledger_belongs_to_its_finest_grids(tmp_path):
    """`province sample` stored a ledger per village, which no grid layer holds; now the
    ledger comes after the partition, one row per finest grid with that grid's county, so
    a county's coverage reads its own grids' files (on GeoPackage, in process)."""
    from gis_grid.staffing import finest_grids

    url = str(tmp_path / "province.gpkg")
    made = _run(["province", "sample", "--counties", "2", "--households-per-county", "800",
                 "--townships-per-county", "3", "--units-per-township", "4"], url)
    assert made.exit_code == 0, made.output
    assert "ledger" not in _layer_names(url) and "gisgrid sample --ledger" in made.output
    parted = _run(["province", "partition", "--institution", "NSH"], url)
    assert parted.exit_code == 0, parted.output
    built = _run(["sample", "--ledger"], url)
    assert built.exit_code == 0, built.output
    grids, ledger = _read(url, "grids__nsh"), _read(url, "ledger")
    leaf = grids.loc[finest_grids(grids)]
    assert sorted(ledger["grid"]) == sorted(leaf["code"].astype(str))
    county_of = dict(zip(leaf["code"].astype(str), leaf["county"].astype(str), strict=True))
    assert (ledger["county"].astype(str) == ledger["grid"].map(county_of)).all()
    out = tmp_path / "coverage"
    covered = _run(["province", "coverage", "--institution", "NSH", "--out", str(out)], url)
    assert covered.exit_code == 0, covered.output
    for county in ("990101", "990102"):
        table = pd.read_csv(out / county / "files_grids.csv", dtype=str)
        assert set(table.iloc[:, 0]) == {g for g, c in county_of.items() if c == county}
    # a county sample still needs its county
    assert _run(["sample"], url).exit_code == 2
