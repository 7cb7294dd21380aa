"""The store contract: one narrow interface, two real implementations.

``open_store`` picks the implementation from the address: a path ending in ``.gpkg``
(the embedded default, no server) or a ``postgresql://`` URL (the system of record for
many users). Both hold geometry in ``gis_grid.model.STORAGE_CRS`` and both replace a
layer all-or-nothing: a write that fails half-way, or is killed, leaves the previous
layer as it was. Rows can also be appended (``append``) and one row changed under an
optimistic version check (``update``), for layers that grow and change row by row, such
as events and their log. One contract test module (``tests/layers/test_store_contract.py``)
runs against both.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import geopandas as gpd
import pandas as pd

from gis_grid.errors import StoreError
from layers._tables import check_layer_name

__all__ = ["DEFAULT_STORE", "LayerInfo", "Store", "check_layer_name", "open_store",
           "resolve_store_url"]

DEFAULT_STORE = "gisgrid.gpkg"


@dataclass(frozen=True)
class LayerInfo:
    """What ``Store.layers`` tells of one layer."""

    name: str
    count: int
    geometry_type: str | None  # None for a table without geometry
    bbox: tuple[float, float, float, float] | None


class Store(ABC):
    """A place layers live. Subclasses: ``GeoPackageStore``, ``PostGISStore``."""

    url: str

    @abstractmethod
    def layers(self) -> list[LayerInfo]:
        """Every layer in the store, sorted by name."""

    def has(self, name: str) -> bool:
        return any(info.name == name for info in self.layers())

    @abstractmethod
    def read(
        self,
        name: str,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        where: dict[str, object] | None = None,
        columns: list[str] | None = None,
    ) -> gpd.GeoDataFrame | pd.DataFrame:
        """Read a layer whole, or the features intersecting ``bbox`` (lon/lat, storage
        CRS), or those whose attributes equal every value in ``where`` (a value may be a
        list: any of them). Raises ``LayerNotFound`` for an unknown layer. A layer with
        geometry comes back as a GeoDataFrame in the storage CRS, one without as a
        DataFrame."""

    @abstractmethod
    def write(self, name: str, frame: gpd.GeoDataFrame | pd.DataFrame) -> None:
        """Replace layer ``name`` with ``frame``, all or nothing. The frame must already
        be checked (``layers.checks``) and in the storage CRS."""

    @abstractmethod
    def append(self, name: str, frame: gpd.GeoDataFrame | pd.DataFrame) -> None:
        """Add the rows of ``frame`` to layer ``name``, all or nothing; a missing layer is
        created as ``write`` would. The frame's columns must be among the layer's (those
        it lacks stay null) and convert to their stored types; appended features are
        spatially indexed like the others. A duplicate of the schema's key is refused."""

    @abstractmethod
    def update(
        self,
        name: str,
        key_field: str,
        key_value: object,
        changes: dict[str, object],
        *,
        expected_version: int,
        append: tuple[str, gpd.GeoDataFrame | pd.DataFrame] | None = None,
    ) -> int:
        """Change one row, if nobody changed it since it was read (optimistic check).

        In one transaction: set ``changes`` (column → value) on the row whose
        ``key_field`` equals ``key_value`` only if its ``version`` column still equals
        ``expected_version``, set ``version`` to ``expected_version + 1``, and append the
        rows of ``append = (layer, frame)`` if given (e.g. the change's log entry), so
        that both happen or neither. Returns the new version.

        Raises ``ConflictError`` when the row's version moved on (a stale writer never
        overwrites), ``StoreError`` when there is no such row or the key is not unique.
        """

    @abstractmethod
    def modify(self, name: str, change: Callable[[gpd.GeoDataFrame | pd.DataFrame | None],
                                                 gpd.GeoDataFrame | pd.DataFrame]) -> None:
        """Replace layer ``name`` by ``change(current)``, where ``current`` is the layer
        read whole (``None`` if there is none), with no other writer in between: the
        layer (GeoPackage: the file) is locked against writers of every process from the
        read to the write, so a change made meanwhile is never overwritten unseen (two
        uploads merging rows into one layer at once both keep theirs). All or nothing,
        like ``write``; an exception from ``change`` leaves the layer as it was."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove a layer; raises ``LayerNotFound`` if there is none."""

    def close(self) -> None:  # noqa: B027 — optional for implementations
        """Release connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_store_url(store: str | None) -> str:
    """The store address: the argument, else ``GISGRID_STORE``, else ``./gisgrid.gpkg``."""
    return store or os.environ.get("GISGRID_STORE") or DEFAULT_STORE


def open_store(store: str | None = None) -> Store:
    """Open the store at ``store`` (see ``resolve_store_url``)."""
    url = resolve_store_url(store)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from layers.postgis import PostGISStore

        return PostGISStore(url)
    if url.lower().endswith(".gpkg"):
        from layers.gpkg import GeoPackageStore

        return GeoPackageStore(url)
    raise StoreError(
        f"--store {url!r}: expected a path ending in .gpkg or a postgresql:// URL"
    )
