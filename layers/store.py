"""The store contract: one narrow interface, two real implementations.

``open_store`` picks the implementation from the address: a path ending in ``.gpkg``
(the embedded default, no server) or a ``postgresql://`` URL (the system of record for
many users). Both hold geometry in ``gis_grid.model.STORAGE_CRS`` and both replace a
layer all-or-nothing: a write that fails half-way, or is killed, leaves the previous
layer as it was. Rows can also be appended (``append``) and one row changed under an
optimistic version check (``update``), for layers that grow and change row by row, such
as events and their log. One contract test module (``tests/layers/test_store_contract.py``)
runs against both.

People's data goes through ``change`` (a frame applied in a write mode by the layer's key,
references checked against the store's current state, all or nothing), ``remove`` and
``restore``; every change of a layer, by any method, is logged (``history``; see
``layers.history`` and ``layers.integrity``, tested in ``tests/layers/test_modes.py`` and
``tests/layers/test_history.py``).
"""

from __future__ import annotations

import datetime as dt
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from gis_grid.errors import InputError, LayerNotFound, Problem, StoreError
from layers import history, integrity
from layers._tables import check_layer_name
from layers.history import Actor, Change

__all__ = ["DEFAULT_STORE", "MODES", "Actor", "Change", "LayerInfo", "Store",
           "check_layer_name", "combine", "open_store", "resolve_store_url"]

DEFAULT_STORE = "gisgrid.gpkg"
#: How ``Store.change`` applies a frame to a layer, by the layer's key
#: (``layers.history.key_columns``): replace the layer (or the caller's rows of it); add
#: rows with new keys; add or replace by key; remove the rows with these keys.
MODES = ("replace", "append", "upsert", "delete")


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

    # --- checked, logged changes ------------------------------------------------------

    def change(
        self,
        name: str,
        frame: gpd.GeoDataFrame | pd.DataFrame,
        mode: str,
        *,
        actor: Actor | None = None,
        source: str | None = None,
        labels: list[str] | None = None,
        mine: Callable[[pd.DataFrame], np.ndarray] | None = None,
    ) -> Change:
        """Apply ``frame`` to layer ``name`` in ``mode`` (one of ``MODES``), all or
        nothing, with its references checked and the change logged.

        In one transaction holding the layer (and the layers it refers to or that refer
        to it) against other writers: read the layer as it is, ``combine`` it with
        ``frame``, check the references against the store's current state
        (``layers.integrity``), replace the layer and append the change to the log
        (``layers.history``). ``mine`` (rows → mask) marks the rows of the layer the
        caller may change; the others are kept and their keys are not the caller's to
        use. Problems raise ``InputError`` (``IntegrityError`` for references) naming
        ``source``'s rows by ``labels``; the store is then unchanged.

        Returns the logged change (its ``id`` None when nothing changed).
        """
        check_layer_name(name)
        if mode not in MODES:
            raise StoreError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        actor = actor or history.default_actor(f"{mode}")
        source = source or name
        frame = frame.reset_index(drop=True)
        labels = labels or [f"row {i + 1}" for i in range(len(frame))]

        def make(current, present, read):
            after = combine(name, current, frame, mode, source=source, labels=labels,
                            mine=mine)
            problems = integrity.check(
                name, frame if mode != "delete" else frame.iloc[:0], current, after,
                present=present, read=read, source=source, labels=labels)
            if problems:
                raise integrity.IntegrityError(problems, source=source)
            return after

        return self._change(name, make, actor, checked=True)

    def remove(self, name: str, *, actor: Actor | None = None) -> Change:
        """Delete layer ``name`` as a checked, logged change: refused
        (``IntegrityError``) while rows of another layer refer to its keys."""
        check_layer_name(name)
        actor = actor or history.default_actor("delete")

        def make(current, present, read):
            if current is None:
                raise LayerNotFound(name, self.url)
            problems = integrity.check(name, current.iloc[:0], current, None,
                                       present=present, read=read, source=f"delete {name}")
            if problems:
                raise integrity.IntegrityError(problems, source=f"delete {name}")
            return None

        return self._change(name, make, actor, checked=True)

    def restore(self, name: str, change_id: int, *, actor: Actor | None = None) -> Change:
        """Put layer ``name`` back as it was before change ``change_id``, all or nothing,
        as one more logged change. Refused (``InputError``) when a later change touched
        the same keys (see ``layers.history.restored``)."""
        check_layer_name(name)
        entries = self.history(name, with_old=True, since_id=change_id)
        target = next((c for c in entries if c.id == change_id), None)
        if target is None:
            raise InputError([Problem(f"history {name}", None, None,
                                      f"no change {change_id} of layer {name}")],
                             source=f"history {name}")
        later = [c for c in entries if c.id > change_id]
        actor = actor or history.default_actor(f"restore {change_id}")

        def make(current, present, read):
            spatial = self._is_spatial(name, current, target)
            types = self._field_types(name) if current is not None else {}
            after = history.restored(name, target, current, later, spatial, types)
            problems = integrity.check(
                name, after if after is not None else pd.DataFrame(), current, after,
                present=present, read=read, source=f"restore of change {change_id}")
            if problems:
                raise integrity.IntegrityError(problems,
                                               source=f"restore of change {change_id}")
            return after

        return self._change(name, make, actor, checked=True)

    def _is_spatial(self, name: str, current, change: Change) -> bool:
        if current is not None:
            return isinstance(current, gpd.GeoDataFrame)
        return any(history.GEOMETRY_FIELD in row for row in change.old or [])

    @abstractmethod
    def _field_types(self, name: str) -> dict[str, str | None]:
        """Column → field type of a stored layer."""

    @abstractmethod
    def _change(self, name: str, make, actor: Actor, *, checked: bool) -> Change:
        """Replace layer ``name`` by ``make(current, present, read)`` (a frame, or None to
        remove the layer) in one transaction that holds the layer and the layers
        ``make`` reads, and log the change in it. ``current`` is the layer as it is
        (None if missing), ``present`` the names of the store's layers, ``read(layer,
        columns)`` reads another layer as it is inside the transaction."""

    @abstractmethod
    def history(self, name: str | None = None, *, since: dt.datetime | None = None,
                since_id: int | None = None, with_old: bool = False) -> list[Change]:
        """The logged changes, oldest first: of layer ``name`` (all layers if None), at
        or after ``since`` and from id ``since_id`` on; the old rows only if
        ``with_old``."""

    def close(self) -> None:  # noqa: B027 — optional for implementations
        """Release connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def combine(
    name: str,
    current: pd.DataFrame | None,
    frame: pd.DataFrame,
    mode: str,
    *,
    source: str,
    labels: list[str],
    mine: Callable[[pd.DataFrame], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Layer ``name`` after applying ``frame`` to ``current`` in ``mode`` (see
    ``MODES``), by the layer's key. Raises ``InputError`` naming ``frame``'s rows whose
    key is already in the layer (append), not in it (delete) or held by a row the
    caller may not change (``mine``)."""
    frame = frame.reset_index(drop=True)
    if current is None:
        if mode == "delete":
            raise InputError([Problem(source, None, None, f"layer {name} does not exist; "
                                      "nothing to delete")], source=source)
        return frame
    current = current.reset_index(drop=True)
    keys = history.key_columns(name, list(frame.columns) if mode != "delete"
                               else list(current.columns))
    if mode in ("upsert", "delete") and not keys:
        raise InputError([Problem(source, None, None, f"layer {name} has no key; use "
                                  "--mode replace or append")], source=source)
    if mode == "delete" and any(k not in frame.columns for k in keys):
        raise InputError([Problem(source, None, ", ".join(keys), "is missing: a file of "
                                  "rows to delete names them by the layer's key")],
                         source=source)
    old_keys = history.row_keys(name, current)
    new_keys = (history.row_keys(name, frame[list(keys)]) if mode == "delete"
                else history.row_keys(name, frame))
    ours = np.ones(len(current), dtype=bool) if mine is None else np.asarray(
        mine(current), dtype=bool)
    problems = []
    theirs = set(old_keys[~ours])
    held = set(old_keys)

    def refuse(mask, message):
        for i in np.flatnonzero(mask):
            problems.append(Problem(source, labels[i] if i < len(labels) else f"row {i + 1}",
                                    "+".join(keys) or None,
                                    f"{new_keys.iloc[i]!r} {message}"))

    if mode == "delete":
        # A row the caller may not change is named exactly as one that does not exist,
        # so that deleting cannot tell whose keys are in use (issue 18, M4).
        refuse(~new_keys.isin(held - theirs).to_numpy(),
               f"is not in layer {name}" if mine is None
               else f"is not among your rows of layer {name}")
    elif theirs:
        refuse(new_keys.isin(theirs).to_numpy(), "is already used by a row you may not "
               "change")
    if mode == "append" and keys:  # rows of a layer without a key may repeat
        refuse(new_keys.isin(held - theirs).to_numpy(),
               f"is already in layer {name}; use --mode upsert to change it")
    if problems:
        raise InputError(problems, source=source)
    if mode == "replace":
        kept = current[~ours]
        return _concat(kept, frame) if len(kept) else frame
    if mode == "append":
        return _concat(current, frame)
    if mode == "delete":
        return current[~old_keys.isin(set(new_keys)).to_numpy()].reset_index(drop=True)
    # upsert: a row with a known key takes its place, the others go at the end
    position = pd.Series(np.arange(len(current)), index=old_keys.to_numpy())
    position = position[~position.index.duplicated()]
    at = new_keys.map(position).to_numpy(dtype=float, copy=True)
    at[np.isnan(at)] = len(current) + np.arange(int(np.isnan(at).sum()))
    replaced = old_keys.isin(set(new_keys)).to_numpy()
    order = np.concatenate([np.flatnonzero(~replaced).astype(float), at])
    merged = _concat(current[~replaced], frame)
    return merged.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


def _concat(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    first, second = first.reset_index(drop=True), second.reset_index(drop=True)
    if not len(first):
        return second.reset_index(drop=True)
    if not len(second):
        return first.reset_index(drop=True)
    spatial = [f for f in (first, second) if isinstance(f, gpd.GeoDataFrame)]
    if spatial:
        first, second = (_as_geo(f, spatial[0]) for f in (first, second))
    merged = pd.concat([first, second], ignore_index=True)
    if spatial:
        merged = gpd.GeoDataFrame(merged, geometry=spatial[0].active_geometry_name,
                                  crs=spatial[0].crs)
    return merged


def _as_geo(frame: pd.DataFrame, like: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    name = like.active_geometry_name
    if isinstance(frame, gpd.GeoDataFrame):
        if frame.active_geometry_name != name:
            frame = frame.rename_geometry(name)
        return frame
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([None] * len(frame), crs=like.crs,
                                                          name=name), crs=like.crs)


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
