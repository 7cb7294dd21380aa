"""What the command tests share: a Zigui sample GeoPackage built once per module (the
module sets its size with ``SAMPLE_HOUSEHOLDS``), a fresh copy of it for each test, and
running a command as a user does."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from gis_grid.cli import main
from layers.gpkg import GeoPackageStore
from layers.synthetic import build_sample


@pytest.fixture(scope="module")
def sample_store(request, tmp_path_factory) -> str:
    households = getattr(request.module, "SAMPLE_HOUSEHOLDS", 2_000)
    path = tmp_path_factory.mktemp("zigui") / "zigui.gpkg"
    store = GeoPackageStore(path)
    for name, frame in build_sample("420527", households=households).items():
        store.write(name, frame)
    return str(path)


@pytest.fixture
def store(sample_store, tmp_path) -> str:
    """A fresh copy of the sample store for each test."""
    path = tmp_path / "store.gpkg"
    shutil.copy(sample_store, path)
    return str(path)


def run_command(*args: str, code: int = 0) -> str:
    """``gisgrid ARGS``, which must end with exit code ``code``; its output."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result.output
