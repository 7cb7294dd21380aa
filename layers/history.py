"""The change log of a store's layers: what changed, when, by whom and how, with the old
values, so that a change can be listed and undone (``gisgrid history``).

Every change of a layer's rows appends one entry to the store's own table
``gisgrid_history`` in the same transaction as the change (``layers.gpkg``,
``layers.postgis``; on PostGIS a trigger also records other clients' SQL). An entry holds:

- ``id`` (increasing), ``layer``, ``at`` (UTC), ``who`` (the OS user for the CLI, the API
  key's role and institution for the service, ``session_user (application_name)``
  for other SQL clients) and ``how`` (the mode and the command or endpoint);
- the keys ``added``, ``changed`` and ``removed``, by the layer's key (``key_columns``);
- ``old``: the rows as they were before the change, for the changed and removed keys
  (geometry as hex WKB, dates and datetimes as ISO text);
- ``rows_before`` (None when the change created the layer) and ``rows_after`` (None when
  it deleted the layer).

The old rows of a change of more than ``max_old_rows()`` changed and removed rows
(``GISGRID_HISTORY_MAX_OLD_ROWS``, default 100,000: a province's re-partition or a
re-generated sample) are not kept — only their keys, and ``old`` is null — so that the
log does not grow by the size of the layer each time; such a change cannot be restored.

Keys are text: the key field's value; for the ledger ``grid|institution|period``; for a
layer without a key a digest of the whole row (with ``#n`` for its n-th repeat).

Staging layers of a fan-out (``<layer>__c<code>``) are bookkeeping and are not logged.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import getpass
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pandas.api import types as ptypes

from gis_grid.errors import InputError, Problem, StoreError
from gis_grid.model import schema_for
from gis_grid.naming import is_staging
from layers._tables import restore as restore_values

HISTORY_TABLE = "gisgrid_history"
#: The separator of the parts of a key made of several fields (the ledger's).
KEY_JOIN = "|"
#: The column the old rows hold their geometry in (hex WKB).
GEOMETRY_FIELD = "geom"
MAX_OLD_ROWS = 100_000


def max_old_rows() -> int:
    """The most changed and removed rows a change keeps the old values of."""
    try:
        return int(os.environ.get("GISGRID_HISTORY_MAX_OLD_ROWS", MAX_OLD_ROWS))
    except ValueError:
        return MAX_OLD_ROWS


@dataclass(frozen=True)
class Actor:
    """Who makes a change and how: ``who`` (a person or a key), ``how`` (the mode and
    the command or endpoint)."""

    who: str
    how: str


#: The command line of the CLI command running in this process (``set_command``).
_COMMAND: list[str | None] = [None]


def set_command(command: str | None) -> None:
    """Name the command whose changes follow (the CLI's root sets it): the log's ``how``
    of the store's own writes then says which command made them."""
    _COMMAND[0] = command[:500] if command else None


_ACTING: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("gisgrid_acting",
                                                                      default=None)


@contextlib.contextmanager
def acting(actor: Actor):
    """Within the block (this thread or task), the store's own writes are logged as
    ``actor``'s: e.g. a service request's key for the event updates it makes."""
    token = _ACTING.set(actor)
    try:
        yield actor
    finally:
        _ACTING.reset(token)


def default_actor(how: str) -> Actor:
    """Who writes when nobody says: the actor of ``acting`` if any, else the OS user;
    ``how`` with the command line of the running CLI command."""
    current = _ACTING.get()
    if current is not None:
        return Actor(current.who, f"{how}: {current.how}")
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # no name for the uid (a container)
        who = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    command = _COMMAND[0]
    if command is None:
        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        if program == "gisgrid" and len(sys.argv) > 1:
            command = f"gisgrid {' '.join(sys.argv[1:])}"
    return Actor(who, f"{how}: {command}"[:600] if command else how)


@dataclass
class Change:
    """One entry of the log (see the module doc)."""

    layer: str
    who: str
    how: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    old: list[dict] | None = field(default_factory=list)  # None: not kept (too many)
    rows_before: int | None = None
    rows_after: int | None = None
    id: int | None = None
    at: dt.datetime | None = None

    @property
    def empty(self) -> bool:
        return (not self.added and not self.changed and not self.removed
                and (self.rows_before is None) == (self.rows_after is None))

    @property
    def keys(self) -> set[str]:
        return set(self.added) | set(self.changed) | set(self.removed)

    def summary(self) -> dict:
        """What ``gisgrid history --json`` prints of one entry (without the old rows)."""
        return {"id": self.id, "layer": self.layer,
                "at": self.at.isoformat() if self.at else None, "who": self.who,
                "how": self.how, "added": self.added, "changed": self.changed,
                "removed": self.removed, "rows_before": self.rows_before,
                "rows_after": self.rows_after}


def logged(name: str) -> bool:
    """Whether changes of layer ``name`` go into the log (not a fan-out's staging)."""
    return not is_staging(name)


def key_columns(name: str, columns: Sequence[str]) -> tuple[str, ...]:
    """The fields identifying a row of layer ``name``: the schema's key, the ledger's
    unique fields, else none (rows are then identified by their whole content)."""
    schema = schema_for(name)
    if schema is None:
        return ()
    if schema.key:
        return (schema.key,) if schema.key in columns else ()
    unique = tuple(schema.extra.get("unique", ()))
    return unique if unique and all(c in columns for c in unique) else ()


def key_text(values: pd.Series) -> pd.Series:
    """Values as text for keys and comparisons: numbers without a trailing ``.0``
    difference between int and float, null as ``None``."""
    dtype = values.dtype
    if ptypes.is_integer_dtype(dtype) and not ptypes.is_extension_array_dtype(dtype):
        return values.astype(str).astype(object)
    if (ptypes.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype)) and \
            ptypes.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values.astype(object).where(values.notna().to_numpy(), None)
    out = values.astype(object).map(_plain, na_action="ignore")
    return out.astype(object).where(values.notna().to_numpy(), None)


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


def row_keys(name: str, frame: pd.DataFrame) -> pd.Series:
    """The key of each row of ``frame`` as text (see the module doc)."""
    frame = frame.reset_index(drop=True)
    key = key_columns(name, [c for c in frame.columns])
    if key:
        parts = [key_text(frame[c]).fillna("") for c in key]
        out = parts[0].astype(str)
        for part in parts[1:]:
            out = out + KEY_JOIN + part.astype(str)
        return out.reset_index(drop=True)
    digests = row_digests(frame)
    repeat = digests.groupby(digests).cumcount()
    return digests.where(repeat == 0, digests + "#" + repeat.astype(str))


def row_digests(frame: pd.DataFrame) -> pd.Series:
    """A 64-bit digest of each row's content as 16 hex digits (see ``_hashes``): what
    names a row of a layer without a key."""
    hashes = _hashes(frame)
    if not len(hashes):
        return pd.Series([], dtype=object)
    return pd.Series(np.char.mod("%016x", hashes).astype(object))


def _hashes(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's content (columns by name, geometry as WKB),
    vectorised (``pandas.util.hash_pandas_object``): what tells a changed row from an
    unchanged one."""
    frame = frame.reset_index(drop=True)
    if len(frame) == 0:
        return np.zeros(0, dtype=np.uint64)
    geometry = _geometry_name(frame)
    data = {}
    for col in sorted(c for c in frame.columns if c != geometry):
        values = frame[col]
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            values = values.astype(object).where(values.notna(), None)
        data[col] = values
    if geometry is not None:
        data["\x00geometry"] = pd.Series(shapely.to_wkb(
            np.asarray(frame.geometry.array, dtype=object), output_dimension=2),
            dtype=object)
    table = pd.DataFrame(data, index=pd.RangeIndex(len(frame)))
    return pd.util.hash_pandas_object(table, index=False).to_numpy(dtype=np.uint64)


def _geometry_name(frame: pd.DataFrame) -> str | None:
    if isinstance(frame, gpd.GeoDataFrame) and frame.active_geometry_name in frame.columns:
        return frame.active_geometry_name
    return None


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts: plain values, geometry as hex WKB under ``geom``."""
    frame = frame.reset_index(drop=True)
    geometry = _geometry_name(frame)
    columns = {}
    for col in frame.columns:
        if col == geometry:
            continue
        columns[col] = [_json_value(v) for v in frame[col].astype(object).tolist()]
    if geometry is not None:
        geoms = np.asarray(frame.geometry.array, dtype=object)
        wkb = shapely.to_wkb(geoms, hex=True, output_dimension=2)
        columns[GEOMETRY_FIELD] = [None if g is None else str(g) for g in wkb]
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(),
                                                                        strict=True)] \
        if columns else [{} for _ in range(len(frame))]


def _json_value(value: object) -> object:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def frame_from_records(rows: list[dict], spatial: bool) -> pd.DataFrame:
    """``records`` back as a frame (values still plain; the store types them)."""
    data = pd.DataFrame(rows)
    if not spatial:
        return data.drop(columns=[GEOMETRY_FIELD], errors="ignore")
    wkb = data.pop(GEOMETRY_FIELD) if GEOMETRY_FIELD in data.columns else pd.Series(
        [None] * len(data))
    geometry = shapely.from_wkb(wkb.to_numpy(dtype=object))
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geometry, crs="EPSG:4326"),
                            crs="EPSG:4326")


def diff(name: str, before: pd.DataFrame | None, after: pd.DataFrame | None,
         actor: Actor) -> Change:
    """The change that turns layer ``before`` into ``after`` (None: no layer), both as
    a store reads them (typed alike)."""
    change = Change(name, actor.who, actor.how,
                    rows_before=None if before is None else len(before),
                    rows_after=None if after is None else len(after))
    old_keys = row_keys(name, before) if before is not None else pd.Series([], dtype=object)
    new_keys = row_keys(name, after) if after is not None else pd.Series([], dtype=object)
    # the same keys in the same order (a layer rewritten with its values changed, or not)
    same = len(old_keys) == len(new_keys) and np.array_equal(
        old_keys.to_numpy(dtype=object), new_keys.to_numpy(dtype=object))
    if same:
        removed = np.zeros(len(old_keys), dtype=bool)
    else:
        change.added = new_keys[~new_keys.isin(old_keys).to_numpy(dtype=bool)].tolist()
        removed = ~old_keys.isin(new_keys).to_numpy(dtype=bool)
        change.removed = old_keys[removed].tolist()
    changed = np.zeros(len(old_keys), dtype=bool)
    if before is not None and after is not None and len(before) and len(after):
        both = ~removed
        if both.any():
            old_hashes, new_hashes = _hashes(before), _hashes(after)
            if same:
                changed = old_hashes != new_hashes
            else:
                new_digest = pd.Series(new_hashes, index=new_keys.to_numpy())
                new_digest = new_digest[~new_digest.index.duplicated()]
                common = old_keys[both]
                differs = (old_hashes[both]
                           != new_digest.reindex(common.to_numpy()).to_numpy())
                changed[np.flatnonzero(both)[differs]] = True
    change.changed = old_keys[changed].tolist()
    if before is not None and (removed.any() or changed.any()):
        if int((removed | changed).sum()) > max_old_rows():
            change.old = None
        else:
            change.old = records(before.reset_index(drop=True)[removed | changed])
    return change


def appended(name: str, frame: pd.DataFrame, rows_before: int | None, actor: Actor
             ) -> Change:
    """The change of appending ``frame``'s rows (keys by ``row_keys``)."""
    return Change(name, actor.who, actor.how, added=row_keys(name, frame).tolist(),
                  rows_before=rows_before, rows_after=(rows_before or 0) + len(frame))


def encode(change: Change) -> dict[str, object]:
    """The entry's columns for a store's history table (lists and rows as JSON text)."""
    return {"layer": change.layer, "who": change.who, "how": change.how,
            "added": json.dumps(change.added, ensure_ascii=False),
            "changed": json.dumps(change.changed, ensure_ascii=False),
            "removed": json.dumps(change.removed, ensure_ascii=False),
            "old": json.dumps(change.old, ensure_ascii=False),  # null when not kept
            "rows_before": change.rows_before, "rows_after": change.rows_after}


def decode(row: Mapping[str, object], *, with_old: bool = True) -> Change:
    """An entry as a store's history table gives it back."""

    def listed(value):
        if value is None:
            return []
        return json.loads(value) if isinstance(value, str | bytes) else list(value)

    at = row.get("at")
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    return Change(str(row["layer"]), str(row["who"]), str(row["how"]),
                  added=listed(row.get("added")), changed=listed(row.get("changed")),
                  removed=listed(row.get("removed")),
                  old=_old(row.get("old")) if with_old else [],
                  rows_before=row.get("rows_before"), rows_after=row.get("rows_after"),
                  id=int(row["id"]), at=at)


def _old(value: object) -> list[dict] | None:
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return None if value is None else list(value)


def restored(name: str, change: Change, current: pd.DataFrame | None,
             later: list[Change], spatial: bool, types: Mapping[str, str | None]
             ) -> pd.DataFrame | None:
    """Layer ``name`` as it was before ``change``, made from the layer as it is now
    (``current``; None when there is none) and the change's old rows, typed as the
    stored columns (``types``: column → field type). None means no layer (the change
    created it).

    Refused (``InputError``, exit 3) when a later change (``later``) touched a key the
    change touched: undoing it would silently undo those too; restore those first,
    newest first.
    """
    clashes = [c for c in later if c.keys & change.keys or
               (c.rows_after is None or c.rows_before is None)]
    if clashes:
        problems = []
        for c in clashes:
            keys = sorted(c.keys & change.keys)
            what = (f"keys {_first(keys)}" if keys else
                    "the whole layer (created or deleted)")
            problems.append(Problem(f"history {name}", f"change {c.id}", None,
                                    f"({c.at:%Y-%m-%d %H:%M} by {c.who}, {c.how}) later "
                                    f"touched {what}"))
        raise InputError(problems, source=f"restore of change {change.id} of {name}")
    if change.rows_before is None:
        return None
    if not key_columns(name, list(current.columns) if current is not None else
                       [k for row in (change.old or [])[:1] for k in row]) and any(
            len(k.split("#")[0]) != 16 for k in change.keys):
        # rows of a layer without a key that other SQL changed are named by an md5 of
        # the row, which is not how the store names them: they cannot be matched
        raise InputError([Problem(f"history {name}", f"change {change.id}", None,
                                  "was made by SQL on a layer without a key; its rows "
                                  "cannot be matched to restore it")],
                         source=f"restore of change {change.id} of {name}")
    if change.old is None:
        raise InputError([Problem(f"history {name}", f"change {change.id}", None,
                                  f"changed or removed {len(change.changed) + len(change.removed)}"
                                  f" rows, more than the {max_old_rows()} whose old values "
                                  "the log keeps (GISGRID_HISTORY_MAX_OLD_ROWS): it cannot be "
                                  "restored")], source=f"restore of change {change.id} of {name}")
    if current is None:
        if change.rows_after is None:  # the change deleted the layer: all of it comes back
            return _in_schema_order(name, frame_from_records(change.old, spatial))
        raise StoreError(f"{name}: the layer no longer exists; cannot restore change "
                         f"{change.id}")
    current = current.reset_index(drop=True)
    keys = row_keys(name, current)
    drop = keys.isin(set(change.added) | set(change.changed)).to_numpy()
    kept = current[~drop]
    old = frame_from_records(change.old, spatial) if change.old else None
    if old is None or not len(old):
        return kept.reset_index(drop=True)
    for col in old.columns:
        if col in types and types[col] is not None and col != _geometry_name(old):
            old[col] = _typed(old[col], types[col])
    if isinstance(kept, gpd.GeoDataFrame) and not isinstance(old, gpd.GeoDataFrame):
        old = gpd.GeoDataFrame(old, geometry=gpd.GeoSeries([None] * len(old),
                                                            crs="EPSG:4326"))
    merged = pd.concat([kept, old], ignore_index=True)
    if isinstance(kept, gpd.GeoDataFrame):
        merged = gpd.GeoDataFrame(merged, geometry=kept.active_geometry_name, crs="EPSG:4326")
    return merged


def _in_schema_order(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The columns in the schema's order, the others after them as they come (a log
    kept as jsonb on PostGIS does not keep the order of a row's fields)."""
    schema = schema_for(name)
    if schema is None:
        return frame
    first = [f for f in schema.field_names if f in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def _typed(values: pd.Series, ftype: str) -> pd.Series:
    """Plain values from the log in the dtype a read of a ``ftype`` column gives."""
    if ftype == "date":
        stamps = pd.to_datetime(values, format="ISO8601")
        out = pd.Series(stamps.dt.date, dtype=object)
        return out.where(stamps.notna(), None)
    return restore_values(values, ftype)


def _first(keys: list[str], n: int = 10) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" … ({len(keys)} in all)" if len(keys) > n else "")
