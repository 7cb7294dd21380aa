"""No command ends in a traceback (issue 14): every command and subcommand `gisgrid --help`
lists, run through the real CLI on broken inputs — a missing store, a file that is not a
store, an empty store, a store without the layers the command needs, layers with the
wrong geometry type, points at (0, 0) or without coordinates, bad option values and bad
dates — ends with a plain message and an exit code the README documents (1 problems
found, 2 usage, 3 input rejected, 4 store error)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from gis_grid.cli import main
from layers.store import open_store

DOCUMENTED = {1, 2, 3, 4}


def run(*args: str):
    """The command as a user runs it; the root turns product errors into exit codes, and
    anything else would escape as an exception (click prints it as a traceback)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def _crash(result, args, allowed=DOCUMENTED) -> str | None:
    """What is wrong with how the command ended, or None."""
    shown = " ".join(str(a) for a in args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"`gisgrid {shown}` raised {result.exception!r}"
    if "Traceback" in result.output:
        return f"`gisgrid {shown}` printed a traceback:\n{result.output}"
    if result.exit_code not in allowed:
        return f"`gisgrid {shown}` exited {result.exit_code}:\n{result.output[-500:]}"
    return None


def _no_traceback(result, args, allowed=DOCUMENTED):
    problem = _crash(result, args, allowed)
    assert problem is None, problem


def _replace(path: Path, layer: str, frame) -> None:
    with open_store(str(path)) as store:
        store.write(layer, frame)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """The broken stores, built once from one small sample (Mengyin, 20,000 households)."""
    root = tmp_path_factory.mktemp("broken")
    base = root / "base.gpkg"
    made = CliRunner().invoke(main, ["sample", "--county", "371328", "--households", "20000",
                                     "--store", str(base)])
    assert made.exit_code == 0, made.output
    out = {"missing": root / "no-such-folder" / "absent.gpkg",
           "not_a_store": root / "junk.gpkg", "empty": root / "empty.gpkg",
           "territory_only": root / "territory-only.gpkg"}
    out["not_a_store"].write_bytes(b"this is not a GeoPackage\n" * 50)
    sqlite3.connect(out["empty"]).close()
    with open_store(str(base)) as store:
        territory = store.read("territory")
        outlets, households = store.read("outlets"), store.read("households")
    _replace(out["territory_only"], "territory", territory)

    # Wrong geometry types: the territory as points, outlets as polygons, grids as
    # points; in another store households as lines.
    out["wrong_geometry"] = root / "wrong-geometry.gpkg"
    shutil.copy(base, out["wrong_geometry"])
    _replace(out["wrong_geometry"], "territory", territory.assign(
        geometry=territory.geometry.representative_point()))
    _replace(out["wrong_geometry"], "outlets", outlets.assign(
        geometry=shapely.buffer(outlets.geometry.array, 0.001)))
    point_grids = gpd.GeoDataFrame(
        {"code": ["1", "2"], "level": [1, 1], "parent": [None, None],
         "kind": ["rural", "rural"], "households": [1, 2]},
        geometry=[shapely.Point(118.0, 35.7), shapely.Point(118.1, 35.8)], crs=4326)
    _replace(out["wrong_geometry"], "grids", point_grids)
    out["lines"] = root / "lines.gpkg"
    shutil.copy(base, out["lines"])
    _replace(out["lines"], "grids", point_grids)
    xy = shapely.get_coordinates(households.geometry.array)
    _replace(out["lines"], "households", households.assign(
        geometry=shapely.linestrings([[(x, y), (x + 0.001, y)] for x, y in xy])))

    # Far and broken points: outlets at (0, 0) and 163° E, an outlet without
    # coordinates, a household at (0, 0).
    out["far"] = root / "far.gpkg"
    shutil.copy(base, out["far"])
    extra = outlets.iloc[:3].copy()
    extra["id"] = ["FAR-0", "FAR-163", "NAN-1"]
    extra["geometry"] = [shapely.Point(0, 0), shapely.Point(163, 31), shapely.Point()]
    _replace(out["far"], "outlets", gpd.GeoDataFrame(pd.concat([outlets, extra],
                                                               ignore_index=True),
                                                     crs=outlets.crs))
    home = households.iloc[:1].copy()
    home["id"] = households["id"].max() + 1
    home["geometry"] = [shapely.Point(0, 0)]
    _replace(out["far"], "households", gpd.GeoDataFrame(
        pd.concat([households, home], ignore_index=True), crs=households.crs))
    out["base"] = base
    return out


#: Every command and subcommand with arguments that make it read the store (TMP is the
#: test's folder). Commands that start a server or the whole demo are run with bad
#: values only (below).
COMMANDS = [
    ["layers"], ["layers", "--json"],
    ["export", "outlets", "TMP/out.geojson"], ["export", "households", "TMP/out.csv"],
    ["import", "TMP/outlets.csv", "--layer", "outlets"],
    ["partition", "--level1", "units", "--level2", "none", "--layer", "grids__new"],
    ["validate"], ["validate", "--grids", "grids__new"], ["repair", "--to", "grids_fixed"],
    ["map", "--grids", "grids__new", "--out", "TMP/map2"],
    ["coverage", "--out", "TMP/cov"], ["coverage", "--strict", "--out", "TMP/cov"],
    ["place", "--k", "2", "--method", "greedy", "--out", "TMP/place"],
    ["place", "--k", "2", "--method", "greedy", "--strict", "--out", "TMP/place"],
    ["map", "--out", "TMP/map"], ["atlas", "--limit", "1", "--out", "TMP/atlas"],
    ["screen"], ["inspect", "E-1", "--inspector", "张三", "--found", "1"],
    ["events", "adopt"], ["events", "list"],
    ["events", "move", "EV-1", "accept", "--actor", "张三"],
    ["events", "patrol", "--worker", "W-1", "--grid", "G-1"],
    ["events", "report", "--kind", "general", "--reporter", "W-1", "--lon", "0",
     "--lat", "0", "--summary", "x"],
    ["events", "show", "EV-1"], ["events", "stats"],
    ["events", "stats", "--month", "2026-05", "--out", "TMP/m.xlsx"],
    ["reports", "list"], ["reports", "show", "RR-1"], ["reports", "export", "--out",
                                                          "TMP/r.xlsx"],
    ["reports", "move", "RR-1", "accept", "--actor", "张三"],
    ["tasks", "list"], ["tasks", "move", "TK-1", "accept", "--actor", "张三"],
    ["tasks", "create", "--subject", "x", "--issued-by", "市金融办", "--assignee", "y",
     "--deadline", "2099-01-01"],
    ["training"], ["training", "--out", "TMP/t.xlsx"],
    ["keys", "create", "--role", "admin", "--institution", "NOBODY"],
    ["keys", "create", "--role", "worker", "--institution", "NSH", "--worker", "W-X"],
    ["keys", "list"],
    ["keys", "revoke", "K-1"],
    ["province", "clean", "--all", "--dry-run"],
    ["province", "partition", "--institution", "NSH"],
    ["province", "validate", "--institution", "NSH"],
    ["province", "coverage", "--institution", "NSH", "--out", "TMP/pc"],
    ["province", "atlas", "--institution", "NSH", "--out", "TMP/pa"],
    ["delete", "grids_fixed", "--yes"], ["delete", "no_such_layer", "--yes"],
]

#: Bad option values and dates: usage errors (2) or rejected input (3), never a traceback.
BAD_VALUES = [
    ["coverage", "--urban-radius", "-5"], ["coverage", "--period", "2024-13"],
    ["coverage", "--period", "not-a-period"], ["coverage", "--year", "7"],
    ["coverage", "--institution", "NOBODY"], ["coverage", "--grids", "no_such_layer"],
    ["coverage", "--weight", "files=x"], ["coverage", "--weight", "nothing=1"],
    ["coverage", "--assessment", "TMP/missing.toml"],
    ["place", "--radius", "0"], ["place", "--candidates", "TMP/missing.csv"],
    ["place", "--k", "0"],
    ["partition", "--level1", "tiles", "--cell-size", "-1"],
    ["partition", "--level1", "nonsense"], ["validate", "--grids", "no_such_layer"],
    ["validate", "--gap-width", "-1"], ["repair", "--grids", "no_such_layer"],
    ["export", "outlets", "TMP/out.unknown"], ["export", "outlets", "TMP/o.geojson",
                                              "--bbox", "1", "2", "x", "4"],
    ["export", "outlets", "TMP/o.geojson", "--where", "nonsense"],
    ["export", "outlets", "TMP/o.geojson", "--where", "nofield=1"],
    ["import", "TMP/missing.csv", "--layer", "outlets"],
    ["import", "TMP/outlets.csv", "--layer", "no_such_kind"],
    ["import", "TMP/outlets.csv", "--layer", "outlets", "--crs", "EPSG:999999"],
    ["inspect", "E-1", "--inspector", "x", "--date", "2024-02-30"],
    ["inspect", "E-1", "--inspector", "x", "--found", "12"],
    ["events", "list", "--now", "yesterday-ish"],
    ["events", "stats", "--from", "2024-13-01"], ["events", "stats", "--to", "soon"],
    ["events", "report", "--kind", "general", "--reporter", "W", "--summary", "x",
     "--at", "the 31st"],
    ["events", "report", "--kind", "general", "--reporter", "W", "--summary", "x",
     "--lon", "nan", "--lat", "nan"],
    ["events", "move", "EV-1", "fly", "--actor", "x", "--at", "not a time"],
    ["events", "patrol", "--worker", "W", "--grid", "G", "--date", "2024-00-10"],
    ["keys", "create", "--role", "admin"], ["keys", "create", "--role", "worker"],
    ["events", "paths", "--kind", "nonsense"], ["events", "show"],
    ["events", "patrol", "--worker", "W", "--grid", "G", "--date", "10/03/2025"],
    ["events", "stats", "--month", "2026-13"], ["events", "stats", "--month", "soon"],
    ["events", "report", "--kind", "general", "--reporter", "W", "--summary", "x",
     "--category", "nonsense"],
    ["events", "report", "--kind", "general", "--reporter", "W", "--summary", "x",
     "--categories", "TMP/missing.txt"],
    ["inspect", "E-1", "--inspector", "x", "--found", "1", "--street", "999"],
    ["reports", "move", "RR-1", "fly", "--actor", "x"],
    ["reports", "export", "--out", "TMP/r.pdf"],
    ["tasks", "create", "--subject", "x", "--issued-by", "y", "--assignee", "z",
     "--deadline", "never"],
    ["tasks", "create", "--subject", "x", "--issued-by", "y", "--assignee", "z",
     "--deadline", "2020-01-01", "--at", "2021-01-01"],
    ["training", "--at", "2031-02-30"], ["training", "--at", "tomorrow"],
    ["map", "--grids", "no_such_layer", "--out", "TMP/map"],
    ["atlas", "--date", "x", "--level", "9", "--out", "TMP/atlas"],
    ["screen", "--file", "TMP/missing.csv"], ["screen", "--entities", "no_such_layer"],
    ["province", "sample", "--counties", "0"],
    ["province", "clean", "--job", "nonsense"],
    ["sample", "--county", "999999"], ["sample", "--county", "371328", "--households", "0"],
    ["serve", "--port", "0"], ["serve", "--workers", "-1"],
    ["demo", "--households", "0"], ["demo", "--county", "000000"],
]


def _args(command: list[str], tmp: Path) -> list[str]:
    return [a.replace("TMP", str(tmp)) for a in command]


@pytest.fixture
def outlets_csv(tmp_path) -> Path:
    path = tmp_path / "outlets.csv"
    path.write_text("id,institution,tier,name,status,unit,lon,lat\n"
                    "O-1,NSH,助农点,甲,营业,371328100201,nan,inf\n"
                    "O-2,NSH,助农点,乙,营业,371328100201,0,0\n", encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["missing", "not_a_store", "empty", "territory_only",
                                  "wrong_geometry", "lines", "far"])
def test_every_command_on_a_broken_store(stores, kind, tmp_path, outlets_csv, monkeypatch):
    path = tmp_path / "store.gpkg"
    if stores[kind].exists():
        shutil.copy(stores[kind], path)
    else:
        path = stores[kind]
    monkeypatch.chdir(tmp_path)
    crashes = []
    for command in COMMANDS:
        args = [*_args(command, tmp_path), "--store", str(path)]
        # A command that succeeds in spite of the damage (coverage leaves far points
        # out; layers lists an empty store) is fine; what it must never do is crash.
        crashes.append(_crash(run(*args), args, DOCUMENTED | {0}))
    crashes = [c for c in crashes if c]
    assert not crashes, "\n\n".join(crashes)


def test_bad_values_are_refused_plainly(stores, tmp_path, outlets_csv, monkeypatch):
    path = tmp_path / "store.gpkg"
    shutil.copy(stores["base"], path)
    monkeypatch.chdir(tmp_path)
    crashes = []
    for command in BAD_VALUES:
        args = _args(command, tmp_path)
        if command[0] not in ("serve", "demo", "sample", "province") or \
                command[:2] in (["province", "clean"],):
            args = [*args, "--store", str(path)]
        crashes.append(_crash(run(*args), args))
    crashes = [c for c in crashes if c]
    assert not crashes, "\n\n".join(crashes)


def test_far_and_broken_points_leave_coverage_unchanged(stores, tmp_path):
    """An outlet at (0, 0), one at 163° E, one without coordinates and a household at
    (0, 0): the same covered share and metric CRS as without them, each named in a
    warning (stderr, report.json, the 说明 sheet); with --strict, refused (exit 3)."""
    import json

    import openpyxl

    clean = run("coverage", "--store", str(stores["base"]), "--out", tmp_path / "clean",
                "--no-store-layers")
    assert clean.exit_code == 0, clean.output
    far = tmp_path / "far.gpkg"
    shutil.copy(stores["far"], far)
    result = CliRunner().invoke(main, ["coverage", "--store", str(far), "--out",
                                       str(tmp_path / "far"), "--no-store-layers"])
    _no_traceback(result, ["coverage"], {0})
    a = json.loads((tmp_path / "clean" / "report.json").read_text(encoding="utf-8"))
    b = json.loads((tmp_path / "far" / "report.json").read_text(encoding="utf-8"))
    assert b["meta"]["metric_crs"] == a["meta"]["metric_crs"] == "EPSG:4548"
    assert b["tables"]["territory"] == a["tables"]["territory"]
    assert b["meta"]["counts"]["households"] == a["meta"]["counts"]["households"]
    left = {(layer, row["id"], row["reason"])
            for layer, rows in b["meta"]["left_out"]["layers"].items() for row in rows}
    assert {("outlets", "FAR-0", "far"), ("outlets", "FAR-163", "far"),
            ("outlets", "NAN-1", "broken")} <= left
    assert any(layer == "households" and reason == "far" for layer, _, reason in left)
    assert "FAR-0" in result.stderr and "warning" in result.stderr
    book = openpyxl.load_workbook(tmp_path / "far" / "coverage.xlsx", read_only=True)
    notes = " ".join(str(c) for row in book["说明"].iter_rows(values_only=True)
                     for c in row if c)
    assert "FAR-163" in notes and "已排除" in notes

    strict = run("coverage", "--store", str(far), "--out", tmp_path / "strict",
                 "--no-store-layers", "--strict")
    assert strict.exit_code == 3, strict.output
    assert "FAR-0" in strict.output and "NAN-1" in strict.output

    placed = run("place", "--store", str(far), "--k", "2", "--method", "greedy",
                 "--out", tmp_path / "place")
    _no_traceback(placed, ["place"], {0})
    assert "FAR-0" in placed.stderr
    assert run("place", "--store", str(far), "--k", "2", "--method", "greedy", "--strict",
               "--out", tmp_path / "place2").exit_code == 3
