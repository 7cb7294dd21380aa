"""The PostGIS store: the system of record for many users (``GISGRID_DATABASE_URL``).

A layer is a table ``<schema>.<name>`` (``fid`` primary key, typed columns, ``geom``
``geometry(<type>, 4326)`` with a GiST index, a unique index on the schema's key) listed
in the catalog table ``gisgrid_layers`` (see ``layers.migrations``). A write builds the
new table beside the old one and swaps them in one transaction, so a failed or killed
write leaves the previous layer intact and readers are blocked only for the swap.

``append`` copies rows (binary ``COPY``) into the live table and ``update`` changes one
row with ``UPDATE … WHERE version = expected``, each in one transaction holding the
layer's advisory lock, the catalog row kept in step. Under that lock a second writer
waits for the first to commit, then finds the version moved and gets ``ConflictError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import shapely
from psycopg import sql
from psycopg.types.json import Jsonb

from gis_grid.errors import LayerNotFound, StoreError
from gis_grid.model import STORAGE_CRS, schema_for
from layers import history, integrity
from layers._tables import (
    LAYER_NAME,
    STORED_GEOMETRY,
    VERSION,
    Table,
    check_bbox,
    check_columns,
    check_layer_name,
    check_update,
    conform,
    prepare,
    refuse_update,
    restore,
    table_frame,
    where_items,
)
from layers.history import Actor, Change, logged
from layers.migrations import (
    CATALOG_TABLE,
    GENERATION_SEQUENCE,
    GRID_TRIGGER,
    HISTORY_TABLE,
    TOUCH_FUNCTION,
    TOUCH_TRIGGER,
    migrate,
)
from layers.store import LayerInfo, Store

#: Rows turned into COPY text at a time: bounds the memory a big write needs.
CHUNK_ROWS = 100_000
SRID = 4326
_PG_TYPES = {"str": "text", "int": "bigint", "float": "double precision",
             "bool": "boolean", "date": "date", "datetime": "timestamptz"}
_TYPMODS = {"Point": "Point", "LineString": "LineString", "Polygon": "Polygon",
            "MultiPoint": "MultiPoint", "MultiLineString": "MultiLineString",
            "MultiPolygon": "MultiPolygon", "GeometryCollection": "GeometryCollection",
            "Geometry": "Geometry"}


class PostGISStore(Store):
    """Layers as tables in one schema of a PostGIS database.

    Opening the store connects and applies any pending migrations
    (``layers.migrations``). Every write replaces a layer in one transaction: the new
    table is bulk-loaded with ``COPY`` into a staging table, indexed, then swapped for
    the old one together with its catalog row. ``layers()`` reads counts and extents
    from that catalog (no scan of big tables), so it reflects the store's own writes.

    Parameters
    ----------
    url : str
        A ``postgresql://`` URL (``postgresql+psycopg://`` and ``postgres://`` too).
    schema : str, default "public"
        The schema holding the layers and the catalog; created if missing.

    Raises
    ------
    StoreError
        If the database cannot be reached or migrated; the message names the URL
        (without its password) and the cause.

    Examples
    --------
    >>> store = PostGISStore("postgresql://gisgrid@db/gisgrid")  # doctest: +SKIP
    >>> store.write("grids__nsh", grids)                           # doctest: +SKIP
    >>> store.read("grids__nsh", bbox=(110.6, 30.8, 110.9, 31.0))  # doctest: +SKIP
    """

    def __init__(self, url: str, *, schema: str = "public") -> None:
        self.url = redact_url(url)
        if not LAYER_NAME.match(schema) or len(schema) > 63:
            raise StoreError(f"{self.url}: schema name {schema!r}: use lower-case letters, "
                             "digits and '_', starting with a letter")
        self.schema = schema
        self._lock = threading.RLock()
        try:
            params = psycopg.conninfo.conninfo_to_dict(
                re.sub(r"^postgresql\+psycopg://", "postgresql://", url))
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"{self.url}: not a PostgreSQL URL: {exc}") from None
        params.setdefault("connect_timeout", 10)
        params.setdefault("application_name", "gis-grid")
        self._params = params
        self._raw = self._connect()
        try:
            migrate(self._raw, schema)
        except psycopg.Error as exc:
            self._raw.close()
            raise StoreError(f"{self.url}: cannot prepare schema {schema!r}: {_cause(exc)}"
                             ) from exc

    #: A connection idle this long is checked (``SELECT 1``) before it is used again.
    PING_AFTER_S = 5.0
    _tx_depth = 0

    @contextlib.contextmanager
    def _transaction(self):
        """``conn.transaction()`` of the current connection, during which a lost
        connection is an error, not replaced (its statements must not run on another)."""
        with self._conn.transaction() as tx:
            self._tx_depth += 1
            try:
                yield tx
            finally:
                self._tx_depth -= 1

    def connection_params(self) -> dict:
        """The connection parameters (a copy, with the password): for a pool of the
        service's own, such as its job records' (``api.jobs``)."""
        return {**self._params, "client_encoding": "utf8"}

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection of its own to the store's database, in UTC (the
        caller closes it): for the service's job records (``api.jobs``), which are
        written from worker threads beside the store's own connection."""
        return self._connect(keep=False)

    def _connect(self, keep: bool = True) -> psycopg.Connection:
        try:
            conn = psycopg.connect(**self._params, autocommit=True, client_encoding="utf8")
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            raise StoreError(f"{self.url}: cannot connect: {_cause(exc)}") from exc
        if keep:
            self._used = time.monotonic()
        return conn

    @property
    def _conn(self) -> psycopg.Connection:
        """The store's connection, replaced when it is broken: the server restarted, or an
        administrator ended its backend (``pg_terminate_backend``). A connection idle for
        :attr:`PING_AFTER_S` is checked first, so a long-lived process (the service's key
        ring) recovers on its next use instead of failing once; a statement that fails on
        a connection dying under it fails, and the next one reconnects."""
        conn = self._raw
        if not conn.closed and conn.info.transaction_status == \
                psycopg.pq.TransactionStatus.IDLE and \
                time.monotonic() - self._used > self.PING_AFTER_S:
            try:
                conn.execute("SELECT 1")
            except psycopg.OperationalError:
                conn.close()
        if conn.closed or conn.broken:
            if self._tx_depth:  # never finish a change on another connection
                raise StoreError(f"{self.url}: the connection was lost during a change; "
                                 "nothing of it was committed — try again")
            with contextlib.suppress(psycopg.Error):
                conn.close()
            conn = self._raw = self._connect()
        self._used = time.monotonic()
        return conn

    def __repr__(self) -> str:
        return f"PostGISStore({self.url!r}, schema={self.schema!r})"

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def close(self) -> None:
        self._raw.close()

    def layers(self) -> list[LayerInfo]:
        query = sql.SQL("SELECT name, feature_count, geometry_type, min_x, min_y, max_x, max_y"
                        " FROM {} ORDER BY name").format(self._table(CATALOG_TABLE))
        with self._lock:
            try:
                rows = self._conn.execute(query).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"{self.url}: cannot list layers: {_cause(exc)}") from exc
        return [LayerInfo(name, count, kind, None if None in bounds else tuple(bounds))
                for name, count, kind, *bounds in rows]

    def read(
        self,
        name: str,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        where: dict[str, object] | None = None,
        columns: list[str] | None = None,
    ) -> gpd.GeoDataFrame | pd.DataFrame:
        check_layer_name(name)
        with self._lock:
            try:
                meta = self._meta(name)
                if meta is None:
                    raise LayerNotFound(name, self.url)
                geometry_type, fields = meta
                selected = check_columns(name, columns, list(fields))
                items = where_items(name, where, list(fields))
                query, params = self._select(name, geometry_type is not None, selected,
                                             bbox, items)
                with self._conn.cursor(binary=True) as cur:
                    rows = cur.execute(query, params).fetchall()
            except psycopg.errors.UndefinedTable:
                raise LayerNotFound(name, self.url) from None
            except psycopg.Error as exc:
                raise StoreError(f"{self.url}: cannot read {name}: {_cause(exc)}") from exc
        values = list(zip(*rows, strict=True)) if rows else [()] * (
            len(selected) + (geometry_type is not None))
        data = {col: restore(values[i], fields[col]) for i, col in enumerate(selected)}
        index = pd.RangeIndex(len(rows))
        if geometry_type is None:
            return pd.DataFrame(data, index=index)
        geometry = shapely.from_wkb(np.array(values[-1], dtype=object))
        return gpd.GeoDataFrame(data, index=index,
                                geometry=gpd.GeoSeries(geometry, crs=STORAGE_CRS),
                                crs=STORAGE_CRS)

    def _meta(self, name: str) -> tuple[str | None, dict[str, str]] | None:
        row = self._conn.execute(
            sql.SQL("SELECT geometry_type, columns FROM {} WHERE name = %s").format(
                self._table(CATALOG_TABLE)), [name]).fetchone()
        if row is None:
            return None
        geometry_type, columns = row
        return geometry_type, {c["name"]: c["type"] for c in columns}

    def _select(self, name: str, spatial: bool, selected: list[str],
                bbox: tuple[float, float, float, float] | None,
                items: list[tuple[str, list[object] | None]]
                ) -> tuple[sql.Composed, list[object]]:
        targets = [sql.Identifier(c) for c in selected]
        if spatial:
            targets.append(sql.SQL("ST_AsBinary({})").format(sql.Identifier(STORED_GEOMETRY)))
        if not targets:
            targets = [sql.SQL("fid")]
        conditions: list[sql.Composable] = []
        params: list[object] = []
        if bbox is not None:
            if not spatial:
                raise StoreError(f"{name}: a bbox needs a layer with geometry")
            bbox = check_bbox(bbox)
            # && uses the GiST index; ST_Intersects keeps only true intersections.
            conditions.append(sql.SQL(
                "{g} && ST_MakeEnvelope(%s, %s, %s, %s, {srid}) AND "
                "ST_Intersects({g}, ST_MakeEnvelope(%s, %s, %s, %s, {srid}))"
            ).format(g=sql.Identifier(STORED_GEOMETRY), srid=sql.Literal(SRID)))
            params += [*bbox, *bbox]
        for col, values in items:
            if values is None:
                conditions.append(sql.SQL("{} IS NULL").format(sql.Identifier(col)))
            elif not values:
                conditions.append(sql.SQL("false"))
            else:
                marks = sql.SQL(", ").join(sql.Placeholder() * len(values))
                conditions.append(sql.SQL("{} IN ({})").format(sql.Identifier(col), marks))
                params += values
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(targets),
                                                    self._table(name))
        if conditions:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
        return query + sql.SQL(" ORDER BY fid"), params

    def write(self, name: str, frame: gpd.GeoDataFrame | pd.DataFrame) -> None:
        table = prepare(name, frame)
        self._change(name, lambda current, present, read: table,
                     history.default_actor("write"), checked=False)

    def modify(self, name: str, change) -> None:
        check_layer_name(name)
        self._change(name, lambda current, present, read: prepare(name, change(current)),
                     history.default_actor("modify"), checked=False)

    def _field_types(self, name: str) -> dict[str, str | None]:
        with self._lock:
            meta = self._meta(name)
        if meta is None:
            raise LayerNotFound(name, self.url)
        return dict(meta[1])

    def _change(self, name: str, make, actor: Actor, *, checked: bool) -> Change:
        """Replace layer ``name`` by what ``make`` gives (see ``Store._change``), in one
        transaction that holds the layer's lock — and, for a checked change, the locks
        of the layers it refers to or that refer to it, taken in name order — from
        before ``make`` reads: every writer of a layer takes its lock first, so what
        ``make`` reads stays as it is until the swap. The log entry goes in the same
        transaction."""
        stage = f"gisgrid_stage_{secrets.token_hex(6)}"
        change = None
        with self._lock:
            try:
                with self._transaction():
                    self._act(actor)
                    present = {info.name for info in self.layers()}
                    locked = {name} | (integrity.related(name, present) if checked else set())
                    for layer in sorted(locked):
                        self._lock_layer(layer)
                    if checked:  # a layer made meanwhile is checked too
                        present = {info.name for info in self.layers()}
                        for layer in sorted(integrity.related(name, present) - locked):
                            self._lock_layer(layer)
                    meta = self._meta(name)
                    keep_log = logged(name)
                    current = (self.read(name) if meta is not None and (keep_log or checked)
                               else None)

                    def read(layer: str, columns: list[str] | None = None):
                        return self.read(layer, columns=columns)

                    after = make(current, present, read)
                    table = (after if isinstance(after, Table) or after is None
                             else prepare(name, after))
                    if keep_log:
                        change = history.diff(name, current, None if table is None
                                              else table_frame(table), actor)
                    if table is not None:
                        self._replace(name, table, stage)
                    elif meta is not None:
                        self._drop(name)
                    if change is not None and not change.empty:
                        self._log(change)
            except psycopg.errors.CheckViolation as exc:
                raise _refused(self.url, "write", name, exc) from None
            except psycopg.errors.ForeignKeyViolation as exc:
                raise _refused(self.url, "write", name, exc) from None
            except psycopg.Error as exc:
                raise StoreError(f"{self.url}: cannot write {name}: {_cause(exc)}") from exc
        return change or Change(name, actor.who, actor.how)

    def _act(self, actor: Actor) -> None:
        """Tell the row triggers (``layers.migrations``, migration 4) who writes, how, and
        that the store's own writes are checked before they reach the database."""
        self._conn.execute("SELECT set_config('gisgrid.who', %s, true), "
                           "set_config('gisgrid.how', %s, true), "
                           "set_config('gisgrid.trusted', 'on', true)",
                           [actor.who, actor.how])

    def _log(self, change: Change) -> None:
        row = history.encode(change)
        columns = list(row)
        jsonish = {"added", "changed", "removed", "old"}
        values = sql.SQL(", ").join(
            sql.SQL("%s::jsonb") if c in jsonish else sql.Placeholder() for c in columns)
        change.id, change.at = self._conn.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id, at").format(
                self._table(HISTORY_TABLE), sql.SQL(", ").join(map(sql.Identifier, columns)),
                values), list(row.values())).fetchone()

    def _drop(self, name: str) -> None:
        self._conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(name)))
        self._conn.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(
            self._table(CATALOG_TABLE)), [name])

    def history(self, name: str | None = None, *, since=None, since_id: int | None = None,
                with_old: bool = False) -> list[Change]:
        if name is not None:
            check_layer_name(name)
        columns = ["id", "layer", "at", "who", "how", "added", "changed", "removed",
                   "rows_before", "rows_after"] + ["old"] * with_old
        conditions, params = [], []
        for column, op, value in (("layer", "=", name), ("at", ">=", since),
                                  ("id", ">=", since_id)):
            if value is not None:
                conditions.append(sql.SQL("{} " + op + " %s").format(sql.Identifier(column)))
                params.append(value)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), self._table(HISTORY_TABLE))
        if conditions:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
        with self._lock:
            try:
                rows = self._conn.execute(query + sql.SQL(" ORDER BY id"), params).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"{self.url}: cannot read the change log: {_cause(exc)}"
                                 ) from exc
        return [history.decode(dict(zip(columns, row, strict=True)), with_old=with_old)
                for row in rows]

    def _replace(self, name: str, table: Table, stage: str) -> None:
        """Build ``table`` as ``stage`` and swap it in for layer ``name`` (inside the
        caller's transaction, with the layer locked)."""
        exists = self._meta(name) is not None
        if not exists and self._table_exists(name):
            raise StoreError(f"{self.url}: a table {self.schema}.{name} that is "
                             "not a layer is in the way")
        self._create(stage, table)
        self._copy(stage, table)
        self._index(stage, table)
        self._conn.execute(sql.SQL("ANALYZE {}").format(self._table(stage)))
        if _is_grids(table):
            # One set-based check of the whole new layer (much faster than a deferred
            # row trigger firing per row), then the trigger guards later changes.
            self._conn.execute(sql.SQL("SELECT {}(%s::regclass, %s)").format(
                sql.Identifier(self.schema, "gisgrid_assert_grids")),
                [f'"{self.schema}"."{stage}"', name])
            self._guard_grids(stage)
        if exists:
            self._conn.execute(sql.SQL("DROP TABLE {}").format(self._table(name)))
        self._rename(stage, table)
        _record_layer(self._conn, self.schema, table)

    def append(self, name: str, frame: gpd.GeoDataFrame | pd.DataFrame) -> None:
        check_layer_name(name)
        with self._lock:
            try:
                with self._transaction():
                    self._act(history.default_actor("append"))
                    self._append(name, frame)
            except psycopg.errors.CheckViolation as exc:
                raise _refused(self.url, "append to", name, exc) from None
            except psycopg.Error as exc:
                raise StoreError(f"{self.url}: cannot append to {name}: {_cause(exc)}"
                                 ) from exc

    def _append(self, name: str, frame: gpd.GeoDataFrame | pd.DataFrame) -> None:
        """Copy the rows of ``frame`` into layer ``name``, created if missing (inside the
        caller's transaction)."""
        self._lock_layer(name)
        meta = self._meta(name)
        if meta is None:
            table = prepare(name, frame)
            self._replace(name, table, f"gisgrid_stage_{secrets.token_hex(6)}")
            if logged(name):
                self._log(history.diff(name, None, table_frame(table),
                                       history.default_actor("append")))
            return
        geometry_type, fields = meta
        table = conform(prepare(name, frame, types=fields), fields, geometry_type)
        if table.rows == 0:
            return
        if _is_grids(table):
            self._guard_grids(name)
        # Under the layer lock nobody else adds rows: the next fids are ours.
        last = self._conn.execute(sql.SQL("SELECT coalesce(max(fid), 0) FROM {}").format(
            self._table(name))).fetchone()[0]
        self._copy(name, table, first_fid=last + 1)
        bbox = table.bbox or (None,) * 4
        # LEAST / GREATEST ignore nulls: an empty layer's extent becomes the rows'.
        self._conn.execute(sql.SQL(
            "UPDATE {} SET feature_count = feature_count + %s, min_x = LEAST(min_x, %s),"
            " min_y = LEAST(min_y, %s), max_x = GREATEST(max_x, %s),"
            " max_y = GREATEST(max_y, %s), updated_at = now() WHERE name = %s"
        ).format(self._table(CATALOG_TABLE)), [table.rows, *bbox, name])

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
        check_layer_name(name)
        with self._lock:
            try:
                with self._transaction():
                    self._act(history.default_actor("update"))
                    self._lock_layer(name)
                    meta = self._meta(name)
                    if meta is None:
                        raise LayerNotFound(name, self.url)
                    (key_type, key), typed = check_update(name, key_field, key_value, changes,
                                                          expected_version, meta[1])
                    if _is_grid_layer(name, meta[0], meta[1]):
                        self._guard_grids(name)
                    new_version = int(expected_version) + 1
                    assignments = sql.SQL(", ").join(
                        sql.SQL("{} = %s").format(sql.Identifier(c)) for c in [*typed, VERSION])
                    key_param = _parameter(key, key_type)
                    rows = self._conn.execute(sql.SQL(
                        "UPDATE {} SET {} WHERE {} = %s AND {} = %s RETURNING fid"
                    ).format(self._table(name), assignments, sql.Identifier(key_field),
                             sql.Identifier(VERSION)),
                        [*(_parameter(v, t) for t, v in typed.values()), new_version,
                         key_param, int(expected_version)]).fetchall()
                    if len(rows) != 1:
                        found = self._conn.execute(sql.SQL(
                            "SELECT {} FROM {} WHERE {} = %s").format(
                            sql.Identifier(VERSION), self._table(name),
                            sql.Identifier(key_field)), [key_param]).fetchall()
                        refuse_update(self.url, name, key_field, key_value, expected_version,
                                       [v for (v,) in found])
                    if append is not None:
                        self._append(*append)
                    self._conn.execute(sql.SQL("UPDATE {} SET updated_at = now() WHERE name = %s"
                                               ).format(self._table(CATALOG_TABLE)), [name])
            except psycopg.errors.CheckViolation as exc:
                raise _refused(self.url, "update", name, exc) from None
            except psycopg.Error as exc:
                raise StoreError(f"{self.url}: cannot update {name}: {_cause(exc)}") from exc
        return new_version

    def delete(self, name: str) -> None:
        check_layer_name(name)
        with self._lock:
            try:
                with self._transaction():
                    self._lock_layer(name)
                    if self._meta(name) is None:
                        raise LayerNotFound(name, self.url)
                    before = self.read(name) if logged(name) else None
                    self._drop(name)
                    if before is not None:
                        change = history.diff(name, before, None,
                                              history.default_actor("delete"))
                        if not change.empty:
                            self._log(change)
            except psycopg.Error as exc:
                raise StoreError(f"{self.url}: cannot delete {name}: {_cause(exc)}") from exc

    def _lock_layer(self, name: str) -> None:
        """Serialise writers of one layer until the transaction ends."""
        self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                           [f"gisgrid layer {self.schema}.{name}"])

    def _guard_grids(self, name: str) -> None:
        """Put the grid invariants' deferred row trigger on table ``name`` if missing
        (a table written before migration 2 gets it on its first append or update)."""
        found = self._conn.execute(
            "SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s",
            [f'"{self.schema}"."{name}"', GRID_TRIGGER]).fetchone()
        if found is None:
            self._conn.execute(sql.SQL(
                "CREATE CONSTRAINT TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {}"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {}()").format(
                sql.Identifier(GRID_TRIGGER), self._table(name),
                sql.Identifier(self.schema, "gisgrid_grid_row_check")))

    def _table_exists(self, name: str) -> bool:
        return self._conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                  [f'"{self.schema}"."{name}"']).fetchone()[0]

    def _create(self, stage: str, table: Table) -> None:
        columns = [sql.SQL("fid bigint NOT NULL")]
        columns += [sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(_PG_TYPES[c.type]))
                    for c in table.columns]
        if table.spatial:
            columns.append(sql.SQL("{} geometry({}, {}){}").format(
                sql.Identifier(STORED_GEOMETRY), sql.SQL(_TYPMODS[table.geometry_type]),
                sql.Literal(SRID), sql.SQL(" NOT NULL" if table.geometry_required else "")))
        self._conn.execute(sql.SQL("CREATE TABLE {} ({})").format(
            self._table(stage), sql.SQL(", ").join(columns)))

    def _copy(self, stage: str, table: Table, first_fid: int = 1) -> None:
        names = ["fid", *(c.name for c in table.columns)]
        if table.spatial:
            names.append(STORED_GEOMETRY)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            self._table(stage), sql.SQL(", ").join(map(sql.Identifier, names)))
        order = _spatial_order(table)
        with self._conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(_COPY_HEADER)
            for start in range(0, table.rows, CHUNK_ROWS):
                _copy_chunk(copy, table, order[start:start + CHUNK_ROWS], first_fid)
            copy.write(_COPY_TRAILER)

    def _index(self, stage: str, table: Table) -> None:
        self._conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (fid)").format(
            self._table(stage), sql.Identifier(_index_name(stage, "fid"))))
        if table.spatial:
            self._conn.execute(sql.SQL("CREATE INDEX {} ON {} USING GIST ({})").format(
                sql.Identifier(_index_name(stage, "geom")), self._table(stage),
                sql.Identifier(STORED_GEOMETRY)))
        if table.key is not None:
            self._conn.execute(sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
                sql.Identifier(_index_name(stage, "key")), self._table(stage),
                sql.Identifier(table.key)))
        if _has_county_index(table):
            # A province's layers are read one county at a time (layers.fanout): without
            # it each county's read scans the whole province's table.
            self._conn.execute(sql.SQL("CREATE INDEX {} ON {} (county)").format(
                sql.Identifier(_index_name(stage, "county")), self._table(stage)))
        # Any later change of the rows, by us or another client, moves the layer's
        # generation (layers.migrations, migration 3).
        self._conn.execute(sql.SQL(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {}"
            " FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
            sql.Identifier(TOUCH_TRIGGER), self._table(stage),
            sql.Identifier(self.schema, TOUCH_FUNCTION)))
        # Other clients' SQL is logged and its references checked (migration 4).
        self._conn.execute(sql.SQL("SELECT {}(%s::regclass)").format(
            sql.Identifier(self.schema, "gisgrid_guard")), [f'"{self.schema}"."{stage}"'])

    def _rename(self, stage: str, table: Table) -> None:
        self._conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            self._table(stage), sql.Identifier(table.name)))
        suffixes = (["fid"] + ["geom"] * table.spatial + ["key"] * (table.key is not None)
                    + ["county"] * _has_county_index(table))
        for suffix in suffixes:
            self._conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(self.schema, _index_name(stage, suffix)),
                sql.Identifier(_index_name(table.name, suffix))))


# COPY's binary format (PostgreSQL docs, "COPY", Binary Format): a signature, flags and
# header extension length, then per row a field count and each field as its byte length
# (-1 for NULL) and the value in the type's binary form, then -1 to end. Built with numpy
# for a whole chunk at once, it costs the client a third of what CSV text does (no
# number or hex formatting) and the server less parsing: see scripts/bench_load.py.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000


def _spatial_order(table: Table) -> np.ndarray:
    """The order in which to store the rows: along a Hilbert curve through their bounding
    boxes' centres, so that neighbours on the map are neighbours on disk.

    A bbox query (an items page, a vector tile) then reads a few heap pages instead of one
    page per feature: on 10⁵ grids written in random order, a 2,300-feature box touched
    688 pages and took 6.5 ms; written along the curve, 99 pages and 0.9 ms
    (``scripts/bench_api.py``). It is what ``CLUSTER … USING <gist index>`` gives, without
    rewriting the table afterwards. The fids keep the caller's order (row i is fid
    ``first_fid + i`` wherever it lies on disk), and every read orders by fid.
    """
    if not table.spatial or table.rows < 2:
        return np.arange(table.rows)
    bounds = shapely.bounds(table.geometry)  # NaN for missing or empty geometries
    x = (bounds[:, 0] + bounds[:, 2]) / 2
    y = (bounds[:, 1] + bounds[:, 3]) / 2
    known = np.isfinite(x) & np.isfinite(y)
    if not known.any():
        return np.arange(table.rows)
    distance = np.full(table.rows, np.iinfo(np.int64).max, dtype=np.int64)
    distance[known] = _hilbert(x[known], y[known])
    return np.argsort(distance, kind="stable")


def _hilbert(x: np.ndarray, y: np.ndarray, level: int = 16) -> np.ndarray:
    """Distance along a Hilbert curve of order ``level`` over the points' extent.

    Written here (vectorised, a few lines) rather than taken from geopandas'
    ``hilbert_distance`` because that needs a GeoSeries of the whole layer, which the
    store does not build for a write.
    """
    side = (1 << level) - 1
    span_x = max(float(x.max() - x.min()), 1e-12)
    span_y = max(float(y.max() - y.min()), 1e-12)
    ix = ((x - x.min()) / span_x * side).astype(np.int64)
    iy = ((y - y.min()) / span_y * side).astype(np.int64)
    d = np.zeros(len(ix), dtype=np.int64)
    s = 1 << (level - 1)
    while s > 0:
        rx = (ix & s) > 0
        ry = (iy & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        # Rotate the quadrant so the curve stays continuous (the classic xy2d step).
        flip = ~ry
        swap_x = np.where(flip & rx, side - ix, ix)
        swap_y = np.where(flip & rx, side - iy, iy)
        ix, iy = np.where(flip, swap_y, swap_x), np.where(flip, swap_x, swap_y)
        s >>= 1
    return d


def _copy_chunk(copy: psycopg.Copy, table: Table, rows_at: np.ndarray,
                first_fid: int = 1) -> None:
    """Send the rows at positions ``rows_at`` of ``table`` in COPY's binary format,
    geometry as EWKB; row i gets fid ``first_fid + i``."""
    rows = len(rows_at)
    fids = (rows_at + first_fid).astype(">i8")
    fields = [_fixed(np.zeros(rows, dtype=bool), fids)]
    for col in table.columns:
        fields.append(_binary_field(table.data[col.name].iloc[rows_at], col.type))
    if table.spatial:
        geometry = table.geometry[rows_at]
        missing = shapely.is_missing(geometry)
        ewkb = shapely.to_wkb(shapely.set_srid(geometry[~missing], SRID), include_srid=True,
                              output_dimension=2)
        fields.append(_ragged(missing, ewkb.tolist()))
    copy.write(_binary_rows(fields, rows))


def _binary_field(values: pd.Series, ftype: str) -> tuple[np.ndarray, np.ndarray]:
    """(byte length of each value, -1 for NULL; the non-null values' bytes, concatenated)."""
    null = values.isna().to_numpy()
    kept = values[~null]
    if ftype == "str":
        return _ragged(null, list(map(str.encode, kept.to_numpy(dtype=object))))
    if ftype == "int":
        return _fixed(null, kept.to_numpy(dtype="int64").astype(">i8"))
    if ftype == "float":
        return _fixed(null, kept.to_numpy(dtype="float64").astype(">f8"))
    if ftype == "bool":
        return _fixed(null, kept.to_numpy(dtype=bool).astype(np.uint8))
    if ftype == "date":  # int32 days since 2000-01-01
        days = np.array(kept.tolist(), dtype="datetime64[D]").astype(np.int64)
        return _fixed(null, (days - _PG_EPOCH_DAYS).astype(">i4"))
    if ftype == "datetime":  # int64 microseconds since 2000-01-01 UTC
        micros = kept.dt.tz_convert(None).to_numpy(dtype="datetime64[us]").astype(np.int64)
        return _fixed(null, (micros - _PG_EPOCH_US).astype(">i8"))
    raise ValueError(f"no binary COPY form for field type {ftype!r}")


def _fixed(null: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.where(null, -1, data.dtype.itemsize).astype(np.int64)
    return lengths, np.ascontiguousarray(data).view(np.uint8)


def _ragged(null: np.ndarray, items: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.full(len(null), -1, dtype=np.int64)
    lengths[~null] = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    return lengths, np.frombuffer(b"".join(items), dtype=np.uint8)


def _binary_rows(fields: list[tuple[np.ndarray, np.ndarray]], rows: int) -> bytes:
    """Interleave the fields into rows: every piece lands at its offset in one buffer."""
    sizes = np.full(rows, 2 + 4 * len(fields), dtype=np.int64)
    for lengths, _ in fields:
        sizes += np.maximum(lengths, 0)
    ends = np.cumsum(sizes)
    out = np.empty(int(ends[-1]) if rows else 0, dtype=np.uint8)
    at = ends - sizes
    _put(out, at, np.full(rows, len(fields), dtype=">i2"))
    at = at + 2
    for lengths, data in fields:
        _put(out, at, lengths.astype(">i4"))
        at = at + 4
        present = np.maximum(lengths, 0)
        if data.size > out.size // 8:
            # A field that is most of the rows (the geometry): its bytes fill, in order,
            # the runs [at, at + present) of each row; a mask of those runs costs one
            # byte per output byte, an index eight.
            runs = np.zeros(out.size + 1, dtype=np.int8)
            some = present > 0
            runs[at[some]] = 1
            runs[(at + present)[some]] = -1
            out[np.cumsum(runs[:-1], dtype=np.int8).view(bool)] = data
        elif data.size:  # byte j of a value goes to its row's offset + j
            source_starts = np.cumsum(present) - present
            out[np.repeat(at - source_starts, present) + np.arange(data.size)] = data
        at = at + present
    return out.tobytes()


def _put(out: np.ndarray, at: np.ndarray, values: np.ndarray) -> None:
    width = values.dtype.itemsize
    out[at[:, None] + np.arange(width)] = values.view(np.uint8).reshape(-1, width)


def _parameter(value: pd.Series, ftype: str) -> object:
    """The one value of ``value`` as the Python object psycopg binds (None for null)."""
    item = value.iloc[0]
    if pd.isna(item):
        return None
    if ftype == "datetime":
        return item.to_pydatetime()
    return item.item() if isinstance(item, np.generic) else item


def _record_layer(conn: psycopg.Connection, schema: str, table: Table) -> None:
    """Insert or update the layer's catalog row (inside the write's transaction)."""
    bbox = table.bbox or (None,) * 4
    conn.execute(sql.SQL(
        "INSERT INTO {} (name, geometry_type, srid, key, feature_count, min_x, min_y, max_x,"
        " max_y, columns, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
        " ON CONFLICT (name) DO UPDATE SET geometry_type = EXCLUDED.geometry_type,"
        " srid = EXCLUDED.srid, key = EXCLUDED.key, feature_count = EXCLUDED.feature_count,"
        " min_x = EXCLUDED.min_x, min_y = EXCLUDED.min_y, max_x = EXCLUDED.max_x,"
        " max_y = EXCLUDED.max_y, columns = EXCLUDED.columns, updated_at = now(),"
        " generation = nextval({})"
    ).format(sql.Identifier(schema, CATALOG_TABLE),
             sql.Literal(f'"{schema}"."{GENERATION_SEQUENCE}"')), [
        table.name, table.geometry_type, SRID if table.spatial else None, table.key,
        table.rows, *bbox, Jsonb([{"name": c.name, "type": c.type} for c in table.columns]),
    ])


_GRID_COLUMNS = {"code", "level"}


def _is_grid_layer(name: str, geometry_type: str | None, fields: dict[str, str]) -> bool:
    """Whether layer ``name`` is of kind grids with what the invariants need (a geometry,
    ``code`` and ``level``)."""
    schema = schema_for(name)
    return (schema is not None and schema.name == "grids" and geometry_type is not None
            and _GRID_COLUMNS <= set(fields))


def _is_grids(table: Table) -> bool:
    return _is_grid_layer(table.name, table.geometry_type,
                          {c.name: c.type for c in table.columns})


def _refused(url: str, action: str, name: str, exc: psycopg.Error) -> StoreError:
    """A write the database refused for breaking an invariant: its message says which
    grid and why; the transaction was rolled back, so nothing was stored."""
    message = exc.diag.message_primary or _cause(exc)
    return StoreError(f"{url}: cannot {action} {name}: {message}; nothing was stored")


def _has_county_index(table: Table) -> bool:
    return table.key != "county" and any(c.name == "county" for c in table.columns)


def _index_name(table: str, suffix: str) -> str:
    """``gisgrid_<table>_<suffix>``: the reserved prefix keeps it clear of layer names;
    a long table name is shortened with a hash to fit PostgreSQL's 63 bytes."""
    name = f"gisgrid_{table}_{suffix}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha1(table.encode()).hexdigest()[:8]
    return f"gisgrid_{table[:63 - len(suffix) - 18]}_{digest}_{suffix}"


def redact_url(url: str) -> str:
    """``url`` without its password, fit for messages and logs."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    query = urlencode([(k, "***" if k == "password" else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _cause(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
