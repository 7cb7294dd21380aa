"""``gisgrid coverage --assessment FILE`` / ``--weight``: bad weights are refused before
any work with a clear message naming the problem (exit 2 for a malformed option, 3 for
weights that break the rule), never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gis_grid.cli import main


def _coverage(tmp_path, *args):
    result = CliRunner().invoke(main, ["coverage", "--store", str(tmp_path / "s.gpkg"),
                                       "--out", str(tmp_path / "r"), *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result


@pytest.mark.parametrize("args, code, words", [
    (["--weight", "files"], 2, "write CRITERION=WEIGHT"),
    (["--weight", "files=much"], 2, "is not a number"),
    (["--weight", "files=0.5", "--weight", "speed=0.5"], 3, "speed is not a criterion"),
    (["--weight", "coverage=1.5", "--weight", "files=-0.5"], 3, "files is -0.5, negative"),
    (["--weight", "coverage=0.5"], 3, "must sum to 1, not 0.5"),
])
def test_bad_weight_options(tmp_path, args, code, words):
    result = _coverage(tmp_path, *args)
    assert result.exit_code == code, result.output
    assert words in result.output


@pytest.mark.parametrize("name, text, words", [
    ("w.json", '{"weights": {"coverage": 0.7, "files": 0.2}}', "must sum to 1, not 0.9"),
    ("w.json", '{"coverage": 0.5, "files": ', "is not valid JSON"),
    ("w.toml", "coverage = [", "is not valid TOML"),
    ("w.toml", "[weights]\ncoverage = 1\nrank = 0\n", "rank is not a criterion"),
    ("w.json", "[0.3, 0.7]", "holds no table of criterion = weight"),
])
def test_bad_assessment_files(tmp_path, name, text, words):
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = _coverage(tmp_path, "--assessment", str(tmp_path / name))
    assert result.exit_code == 3, result.output
    assert name in result.output and words in result.output


def test_a_missing_file_is_named(tmp_path):
    result = _coverage(tmp_path, "--assessment", str(tmp_path / "none.toml"))
    assert result.exit_code == 3 and "none.toml: cannot be read" in result.output
