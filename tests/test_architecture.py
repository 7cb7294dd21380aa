"""The layout's rules (ARCHITECTURE.md, "Packages"), checked on the real tree.

* The one-way import rule holds (import-linter's contracts in pyproject.toml), and a
  module that breaks it makes ``lint-imports`` fail — proven on a copy of the tree with
  one forbidden import added.
* No module of the four packages is over 1,000 lines.
* No code cites a design document outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gis_grid", "layers", "maps", "api")
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache"], cwd=where, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(where)}, timeout=300)


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__", "data", "static"))
    return tree


def test_the_import_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_forbidden_import_breaks_the_contracts(tmp_path) -> None:
    tree = _copy(tmp_path)
    assert _lint(tree).returncode == 0  # the copy is as good as the tree …
    with open(tree / "gis_grid" / "jobs" / "base.py", "a", encoding="utf-8") as module:
        module.write("\nimport layers.store  # the engine reaching out to the stores\n")
    with open(tree / "maps" / "jobs.py", "a", encoding="utf-8") as module:
        module.write("\nimport gis_grid.cli.common  # maps reaching up to the CLI\n")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout  # … until it breaks the rule
    assert "gis_grid.jobs.base -> layers.store" in result.stdout
    assert "maps.jobs -> gis_grid.cli.common" in result.stdout


def test_no_module_is_over_a_thousand_lines() -> None:
    long = {str(path.relative_to(ROOT)): n for package in PACKAGES
            for path in (ROOT / package).rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 1000}
    assert not long, long


def test_code_cites_no_document_outside_the_repository() -> None:
    citing = [str(path.relative_to(ROOT)) for folder in (*PACKAGES, "scripts", "tests")
              for path in (ROOT / folder).rglob("*.py")
              if "DESIGN.md" in path.read_text(encoding="utf-8") and path.name != __file__]
    citing = [p for p in citing if not p.endswith("test_architecture.py")]
    assert not citing, citing
    assert (ROOT / "ARCHITECTURE.md").is_file()
