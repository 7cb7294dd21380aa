"""Providers: one interface, two back ends (pygeoapi's habit), serving collections.

``PostGISProvider`` builds every GeoJSON page, feature and vector tile in SQL
(``ST_AsGeoJSON`` and ``json_build_object`` per feature, ``string_agg`` into chunks of a
few hundred features, ``ST_AsMVT`` for tiles) and streams the chunks as PostgreSQL hands
them over: no Python loop touches a feature. Queries are composed with
``psycopg.sql`` (identifiers from the store's own catalog, never from request text) and
every value is a bound parameter. A page's count and its features come from one
statement (one snapshot), so ``numberMatched``/``numberReturned`` and ``next`` agree
with what is returned even while a layer is being replaced.

``GeoPackageProvider`` serves the embedded store: a layer is read whole through the
store (cached until the file changes), filtered with pandas/shapely (vectorised) and
written out as GeoJSON; its vector tiles are the same as PostGIS' (clipped, buffered,
dates as text), encoded by mapbox-vector-tile and not cached.

Both apply the caller's ``View`` (``api.auth``): the scope conditions are part of every
query, so no filter, bbox, page, id or tile reaches rows outside it. A CQL2 ``filter``
(``api.filtering``) is ANDed inside that scope in its own parentheses — as SQL with bound
values on PostGIS, as a mask of the scoped rows on GeoPackage — and ``sortby`` orders the
page by code point with NULLs last on both.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import numpy as np
import pandas as pd
import psycopg
import pyogrio
import pyproj
import shapely
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from api.auth import OWN_GRIDS, OWN_STAFF, Principal, layer_kind
from api.catalog import CollectionInfo, Column, ItemsQuery, OutputCRS, PageHead, View
from api.errors import NotFound, ServiceUnavailable
from api.filtering import order_sql, sort_frame, to_mask, to_sql
from api.settings import Settings
from api.tilecache import TileCache
from gis_grid.model import schema_for
from gis_grid.naming import LEDGER, is_staging
from layers.migrations import CATALOG_TABLE
from layers.store import Store


def located_first(info: CollectionInfo) -> bool:
    """Whether the default order of ``info``'s items puts features with a geometry
    first: layers whose geometry is optional (staff, events). QGIS 3.22 and GDAL 3.6
    take a layer's geometry type from its first page, so a first page of unlocated
    staff made the whole layer a table for them (issue 17)."""
    model = schema_for(info.name)
    return info.spatial and model is not None and model.geometry_optional

#: Layers never served as collections (the store's own bookkeeping); nor are a province
#: run's per-county staging layers (``gis_grid.naming.is_staging``).
HIDDEN_LAYERS = frozenset({"api_keys", LEDGER})
_PG_TYPES = {"str": "text", "int": "bigint", "float": "double precision",
             "bool": "boolean", "date": "date", "datetime": "timestamptz"}
MVT_EXTENT = 4096
MVT_BUFFER = 64


class Provider(ABC):
    """Reads collections for the service; ``store`` is the same store, for writes and
    for the analyses (which read whole layers)."""

    kind: str

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._catalog: dict[str, CollectionInfo] | None = None
        self._catalog_at = 0.0
        self._catalog_lock = asyncio.Lock()

    async def open(self) -> None:  # noqa: B027 — optional
        """Connect (called once at start-up)."""

    async def close(self) -> None:  # noqa: B027 — optional
        """Disconnect."""

    async def catalog(self) -> dict[str, CollectionInfo]:
        """Every servable layer by name, cached for ``settings.catalog_ttl_s``."""
        if self._catalog is not None and self.catalog_age < self.settings.catalog_ttl_s:
            return self._catalog
        async with self._catalog_lock:
            if self._catalog is None or self.catalog_age >= self.settings.catalog_ttl_s:
                self._keep_catalog(await self._load_catalog())
        return self._catalog

    def _keep_catalog(self, infos: list[CollectionInfo]) -> None:
        self._catalog = {i.name: i for i in infos
                         if i.name not in HIDDEN_LAYERS and not is_staging(i.name)}
        self._catalog_at = time.monotonic()

    def invalidate(self) -> None:
        """Forget the cached catalog (after this service wrote a layer)."""
        self._catalog_at = 0.0

    @property
    def catalog_age(self) -> float:
        """Seconds since the catalog was last loaded."""
        return time.monotonic() - self._catalog_at

    async def reload_catalog(self) -> None:
        """Load the catalog now (the app's background refresher calls this before it is
        stale, so that requests do not wait for it)."""
        infos = await self._load_catalog()
        async with self._catalog_lock:
            self._keep_catalog(infos)

    async def collection(self, name: str) -> CollectionInfo:
        info = (await self.catalog()).get(name)
        if info is None:
            raise NotFound(f"no collection {name!r}")
        return info

    @abstractmethod
    async def _load_catalog(self) -> list[CollectionInfo]:
        """Read the layers' metadata from the store."""

    @abstractmethod
    def items(self, info: CollectionInfo, view: View, query: ItemsQuery
              ) -> AsyncIterator[PageHead | str]:
        """An async generator: first a ``PageHead``, then the page's features as JSON
        text chunks, each a comma-separated run of features."""

    @abstractmethod
    async def item(self, info: CollectionInfo, view: View, feature_id: str,
                   crs: OutputCRS) -> str | None:
        """One feature as GeoJSON text, or None when it is not in the caller's view."""

    @abstractmethod
    async def tile(self, info: CollectionInfo, view: View, z: int, x: int, y: int
                   ) -> tuple[bytes, bool]:
        """A Mapbox vector tile (Web Mercator) of the features in the view, and whether
        it came from the tile cache."""

    @abstractmethod
    async def distinct(self, name: str, column: str, where: dict[str, tuple]) -> list:
        """The distinct values of ``column`` in the rows of ``name`` matching ``where``."""

    async def lookup(self, what: str, principal: Principal) -> tuple:
        """Values an authorization rule refers to (``OWN_GRIDS``, ``OWN_STAFF``)."""
        catalog = await self.catalog()
        if what == OWN_GRIDS:
            kind, column = "grids", "code"
            where = {"institution": (principal.institution,), "worker": (principal.worker,)}
        elif what == OWN_STAFF:
            kind, column = "staff", "id"
            where = {"institution": (principal.institution,)}
        else:  # pragma: no cover — the rules name only these
            raise ValueError(what)
        values: set = set()
        for name, info in catalog.items():
            if layer_kind(name) == kind and {column, *where} <= info.column_names:
                values.update(await self.distinct(name, column, where))
        return tuple(sorted(values))


def feature_id_value(info: CollectionInfo, feature_id: str) -> object | None:
    """The feature id from a URL, typed as the key column (None: cannot exist — a NUL
    character, which no stored text holds and PostgreSQL refuses, included)."""
    if "\x00" in feature_id:
        return None
    if info.key_type == "int":
        try:
            value = int(feature_id)
        except ValueError:
            return None
        return value if -(2**63) <= value < 2**63 else None
    if info.key_type == "float":
        try:
            return float(feature_id)
        except ValueError:
            return None
    return feature_id


# ---------------------------------------------------------------------------- PostGIS


class PostGISProvider(Provider):
    """Serves the tables of a ``PostGISStore`` from an async connection pool."""

    kind = "postgis"

    def __init__(self, conninfo: str, store: Store, settings: Settings) -> None:
        super().__init__(store, settings)
        self.schema = getattr(store, "schema", "public")
        self._conninfo = conninfo
        self.pool: AsyncConnectionPool | None = None
        self.tiles = TileCache(int(settings.tile_cache_mb * 2**20))

    async def open(self) -> None:
        timeout_ms = int(self.settings.statement_timeout_s * 1000)

        async def configure(conn: psycopg.AsyncConnection) -> None:
            await conn.set_read_only(True)

        self.pool = AsyncConnectionPool(
            self._conninfo, min_size=min(2, self.settings.pool_size),
            max_size=self.settings.pool_size, open=False, configure=configure,
            # A connection is checked as it is handed out: one whose backend was ended
            # (pg_terminate_backend, a server restart) is replaced, not given to a request.
            check=AsyncConnectionPool.check_connection, reconnect_timeout=60,
            kwargs={"autocommit": True, "application_name": "gis-grid api",
                    # Many small concurrent queries: a parallel plan or a JIT compile
                    # costs more than it saves (scripts/bench_api.py).
                    "options": f"-c statement_timeout={timeout_ms} -c TimeZone=UTC"
                               " -c max_parallel_workers_per_gather=0 -c jit=off"},
        )
        try:
            await self.pool.open(wait=True, timeout=15)
        except psycopg.Error as exc:
            raise ServiceUnavailable(f"cannot connect to PostGIS: {exc}") from exc

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    async def _load_catalog(self) -> list[CollectionInfo]:
        query = sql.SQL(
            "SELECT name, geometry_type, key, feature_count, min_x, min_y, max_x, max_y,"
            " columns FROM {} ORDER BY name").format(self._table(CATALOG_TABLE))
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(query)).fetchall()
        infos = []
        for name, geometry_type, key, count, *bounds, columns in rows:
            cols = tuple(Column(c["name"], c["type"]) for c in columns)
            bbox = None if None in bounds else tuple(float(v) for v in bounds)
            infos.append(CollectionInfo(name, cols, geometry_type, bbox, int(count),
                                        key if key in {c.name for c in cols} else None))
        return infos

    # -- SQL pieces

    def _conditions(self, info: CollectionInfo, terms, bbox, where=None
                    ) -> tuple[sql.Composable, list]:
        """The row conditions: the caller's scope and property filters (``terms``), the
        box and a CQL2 filter (``where``, ``api.filtering``), all ANDed, the filter in its
        own parentheses, so it cannot widen the scope."""
        parts: list[sql.Composable] = []
        params: list = []
        for column, values in terms:
            col = info.column(column)
            if col is None or not values:
                parts.append(sql.SQL("false"))
                continue
            parts.append(sql.SQL("{} = ANY(%s::{}[])").format(
                sql.Identifier(column), sql.SQL(_PG_TYPES[col.type])))
            params.append(list(values))
        if bbox is not None:
            # && finds candidates with the GiST index; a feature whose own box lies
            # inside the query box (@) intersects it for sure, so only the ones crossing
            # the box's edge pay for the exact ST_Intersects (a third of the scan's time
            # on a 2,300-grid box, scripts/bench_api.py).
            parts.append(sql.SQL(
                "geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
                " AND (geom @ ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
                " OR ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326)))"))
            params += [*bbox, *bbox, *bbox]
        if where is not None:
            parts.append(sql.SQL("({})").format(to_sql(where, params)))
        if not parts:
            return sql.SQL("true"), params
        return sql.SQL(" AND ").join(parts), params

    def _geometry_json(self, info: CollectionInfo, crs: OutputCRS) -> sql.Composable:
        if not info.spatial:
            return sql.Literal("null")
        geom: sql.Composable = sql.Identifier("s", "geom")
        if crs.srid is not None:
            geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(crs.srid))
        elif crs.flip:
            geom = sql.SQL("ST_FlipCoordinates({})").format(geom)
        digits = self.settings.metre_digits if crs.metric else self.settings.degree_digits
        # options 0: no legacy "crs" member in the geometry (Content-Crs says it).
        return sql.SQL("COALESCE(ST_AsGeoJSON({}, {}, 0), 'null')").format(
            geom, sql.Literal(digits))

    @staticmethod
    def _properties_json(view: View) -> sql.Composable:
        if not view.columns:
            return sql.Literal("{}")
        # Concatenated text, each value by to_json (integers by their text, the same):
        # json_build_object's variadic "any" call cost 30 % of a 1,000-feature page and
        # this a third of that (pgbench, scripts/bench_api.py's query).
        parts = []
        for i, col in enumerate(view.columns):
            value = sql.Identifier("s", col.name)
            text = (sql.SQL("{}::text").format(value) if col.type == "int" else
                    sql.SQL("to_json({})::text").format(value))
            parts.append(sql.SQL("{} || COALESCE({}, 'null')").format(
                sql.Literal(("{" if i == 0 else ",") + json.dumps(col.name, ensure_ascii=False)
                            + ":"), text))
        return sql.SQL("({} || '}}')").format(sql.SQL(" || ").join(parts))

    def _feature_json(self, info: CollectionInfo, view: View, crs: OutputCRS
                      ) -> sql.Composable:
        if info.key is None:
            ident = sql.SQL("{}::text").format(sql.Identifier("s", "fid"))
        else:
            ident = sql.SQL("COALESCE(to_json({})::text, 'null')").format(
                sql.Identifier("s", info.key))
        return sql.SQL(
            "{} || {} || {} || {} || {} || {} || '}}'").format(
            sql.Literal('{"type":"Feature","id":'), ident,
            sql.Literal(',"geometry":'), self._geometry_json(info, crs),
            sql.Literal(',"properties":'), self._properties_json(view))

    # -- reads

    async def items(self, info: CollectionInfo, view: View, query: ItemsQuery
                    ) -> AsyncIterator[PageHead | str]:
        cql = getattr(query, "where", None)
        sortby = getattr(query, "sortby", ())
        where, params = self._conditions(info, (*view.scope, *query.filters), query.bbox,
                                         cql)
        table = self._table(info.name)
        feature = self._feature_json(info, view, query.crs)
        chunk = self.settings.stream_chunk
        order = sql.SQL("s.fid")
        # The default order: stored (fid), with located features first where a geometry
        # is optional (small layers: staff, events).
        fids = sql.SQL("fid")
        if located_first(info):
            order = sql.SQL("s.geom IS NULL, s.fid")
            fids = sql.SQL("geom IS NULL, fid")
        # One statement, so one snapshot: numberMatched, then the page's features as
        # text made by PostgreSQL, sent on as it produces them.
        if sortby:
            # The matching rows with their sort keys; the page is numbered in that order.
            keys = sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(k.column.name))
                                    for k in sortby)
            prefix = sql.SQL("WITH m AS MATERIALIZED (SELECT fid{} FROM {} WHERE {})").format(
                keys, table, where)
            rows_from = sql.SQL(
                "FROM (SELECT t.*, k.page_n FROM {} t JOIN (SELECT fid, row_number() OVER"
                " (ORDER BY {}) AS page_n FROM m ORDER BY {} LIMIT %s OFFSET %s) k USING (fid)) s"
            ).format(table, order_sql(sortby), order_sql(sortby))
            matched = sql.SQL("(SELECT count(*) FROM m)")
            page_params = [*params, query.limit, query.offset]
            order = sql.SQL("s.page_n")
        elif view.scope or query.filters or query.bbox is not None or cql is not None:
            # The conditions are evaluated once: the matching fids are kept, counted,
            # and the page's rows fetched by fid (pgbench: 5 % more pages per second
            # than a count beside the page).
            prefix = sql.SQL("WITH m AS MATERIALIZED (SELECT {} FROM {} WHERE {})").format(
                sql.SQL("fid, geom IS NULL AS nogeom") if located_first(info) else
                sql.SQL("fid"), table, where)
            rows_from = sql.SQL(
                "FROM (SELECT t.* FROM {} t JOIN (SELECT fid FROM m ORDER BY {}"
                " LIMIT %s OFFSET %s) k USING (fid)) s").format(
                table, sql.SQL("nogeom, fid") if located_first(info) else fids)
            matched = sql.SQL("(SELECT count(*) FROM m)")
            page_params = [*params, query.limit, query.offset]
        else:
            # Without any condition the count is the catalog's, kept exact in the
            # transaction that writes the layer.
            prefix = sql.SQL("")
            rows_from = sql.SQL(
                "FROM (SELECT * FROM {} ORDER BY {} LIMIT %s OFFSET %s) s").format(table, fids)
            matched = sql.SQL("(SELECT feature_count FROM {} WHERE name = %s)").format(
                self._table(CATALOG_TABLE))
            page_params = [info.name, query.limit, query.offset]
        if query.limit <= chunk:
            # The page in one aggregate (5 % faster than numbered chunks); it always
            # gives one row, also for an empty page.
            page = sql.SQL("{} SELECT {}, string_agg({}, ',' ORDER BY {}) {}").format(
                prefix, matched, feature, order, rows_from)
        else:
            # Chunks of `stream_chunk` features, each one row, so that a big page is sent
            # while PostgreSQL makes the rest.
            page = sql.SQL(
                "{prefix} SELECT max(p.matched), string_agg(p.f, ',' ORDER BY p.n) FROM ("
                " SELECT {matched} AS matched, {feature} AS f,"
                " row_number() OVER (ORDER BY {order}) AS n {rows_from}"
                ") p GROUP BY (p.n - 1) / {chunk} ORDER BY (p.n - 1) / {chunk}"
            ).format(prefix=prefix, matched=matched, feature=feature, rows_from=rows_from,
                     chunk=sql.Literal(chunk), order=order)
        async with self.pool.connection() as conn:
            async with conn.cursor() as cur:
                rows = cur.stream(page, page_params)
                first = await anext(rows, None)
                if first is None or first[1] is None:  # an empty page
                    await rows.aclose()
                    if first is None:  # no chunk at all: the count still has to be told
                        count = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                            table, where)
                        first = await (await conn.execute(count, params)).fetchone()
                    yield PageHead(int(first[0] or 0), 0)
                    return
                total = int(first[0])
                yield PageHead(total, max(0, min(query.limit, total - query.offset)))
                yield first[1]
                async for _, text in rows:
                    yield text

    async def item(self, info: CollectionInfo, view: View, feature_id: str,
                   crs: OutputCRS) -> str | None:
        value = feature_id_value(info, feature_id)
        if value is None:
            return None
        key = info.key or "fid"
        key_type = _PG_TYPES[info.key_type]
        where, params = self._conditions(info, view.scope, None)
        query = sql.SQL("SELECT {} FROM {} s WHERE {} AND {} = %s::{} LIMIT 1").format(
            self._feature_json(info, view, crs), self._table(info.name), where,
            sql.Identifier(key), sql.SQL(key_type))
        async with self.pool.connection() as conn:
            row = await (await conn.execute(query, [*params, value])).fetchone()
        return None if row is None else row[0]

    async def tile(self, info: CollectionInfo, view: View, z: int, x: int, y: int
                   ) -> tuple[bytes, bool]:
        if not info.spatial:
            raise NotFound(f"collection {info.name!r} has no geometry, so no tiles")
        catalog = self._table(CATALOG_TABLE)

        async def make() -> tuple[int, bytes]:
            # Composed only when the tile is made, not for a cache hit.
            query, params = self._tile_query(info, view, z, x, y)
            with_generation = sql.SQL("SELECT (SELECT generation FROM {} WHERE name = %s),"
                                      " ({})").format(catalog, query)
            async with self.pool.connection() as conn:
                row = await (await conn.execute(with_generation,
                                                [info.name, *params])).fetchone()
            return row[0], bytes(row[1]) if row[1] is not None else b""

        if not self.tiles.enabled:
            return (await make())[1], False
        async with self.pool.connection() as conn:
            row = await (await conn.execute(
                sql.SQL("SELECT generation FROM {} WHERE name = %s").format(catalog),
                [info.name])).fetchone()
        if row is None:  # the layer went away since the catalog was read
            raise NotFound(f"no collection {info.name!r}")
        key = (info.name, view.columns, view.scope, z, x, y)
        return await self.tiles.fetch(key, row[0], make)

    def _tile_query(self, info: CollectionInfo, view: View, z: int, x: int, y: int
                    ) -> tuple[sql.Composable, list]:
        where, params = self._conditions(info, view.scope, None)
        # Dates and times go as text: MVT values are strings, numbers and booleans.
        # Features clipped away (ST_AsMVTGeom gives NULL) are skipped by ST_AsMVT; a
        # WHERE on that NULL would compute ST_AsMVTGeom twice.
        props = [sql.SQL("{}::text AS {}").format(sql.Identifier("t", c.name),
                                                  sql.Identifier(c.name))
                 if c.type in ("date", "datetime") else sql.Identifier("t", c.name)
                 for c in view.columns]
        query = sql.SQL(
            "SELECT ST_AsMVT(q, %s, {extent}, 'geom', 'fid') FROM ("
            " SELECT t.fid, {props}ST_AsMVTGeom(ST_Transform(t.geom, 3857),"
            "  ST_TileEnvelope(%s, %s, %s), {extent}, {buffer}, true) AS geom"
            " FROM {table} t WHERE t.geom && ST_Transform(ST_TileEnvelope(%s, %s, %s,"
            "  margin => {margin}), 4326) AND {where}"
            ") q"
        ).format(extent=sql.Literal(MVT_EXTENT), buffer=sql.Literal(MVT_BUFFER),
                 props=sql.SQL("").join(sql.SQL("{}, ").format(p) for p in props),
                 table=self._table(info.name), where=where,
                 margin=sql.Literal(MVT_BUFFER / MVT_EXTENT))
        return query, [info.name, z, x, y, z, x, y, *params]

    async def distinct(self, name: str, column: str, where: dict[str, tuple]) -> list:
        info = (await self.catalog())[name]
        cond, params = self._conditions(info, tuple(where.items()), None)
        query = sql.SQL("SELECT DISTINCT {} FROM {} WHERE {}").format(
            sql.Identifier(column), self._table(name), cond)
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        return [r[0] for r in rows if r[0] is not None]


# ------------------------------------------------------------------------- GeoPackage

_OGR_TYPES = {"OFTString": "str", "OFTInteger": "int", "OFTInteger64": "int",
              "OFTReal": "float", "OFTDate": "date", "OFTDateTime": "datetime"}
_TO_3857 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)


class GeoPackageProvider(Provider):
    """Serves the layers of a ``GeoPackageStore`` (the embedded, single-analyst store)."""

    kind = "gpkg"

    def __init__(self, store: Store, settings: Settings) -> None:
        super().__init__(store, settings)
        self.path = Path(store.path)
        self._frames: dict[str, tuple[tuple, pd.DataFrame]] = {}
        self._lock = threading.Lock()

    def _stamp(self) -> tuple:
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size)

    async def _load_catalog(self) -> list[CollectionInfo]:
        return await anyio.to_thread.run_sync(self._read_catalog)

    def _read_catalog(self) -> list[CollectionInfo]:
        infos = []
        for layer in self.store.layers():
            meta = pyogrio.read_info(self.path, layer=layer.name)
            columns = []
            for name, ogr_type, subtype in zip(meta["fields"], meta["ogr_types"],
                                               meta["ogr_subtypes"], strict=True):
                ftype = "bool" if subtype == "OFSTBoolean" else _OGR_TYPES.get(ogr_type, "str")
                columns.append(Column(str(name), ftype))
            schema = schema_for(layer.name)
            key = schema.key if schema is not None and schema.key in meta["fields"] else None
            infos.append(CollectionInfo(layer.name, tuple(columns), layer.geometry_type,
                                        layer.bbox, layer.count, key))
        return infos

    def frame(self, name: str) -> pd.DataFrame:
        """Layer ``name`` whole, with its ``fid`` (1, 2, … in stored order), cached
        until the file changes."""
        stamp = self._stamp()
        with self._lock:
            cached = self._frames.get(name)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        frame = self.store.read(name)
        frame.insert(0, "fid", np.arange(1, len(frame) + 1, dtype="int64"))
        with self._lock:
            self._frames[name] = (stamp, frame)
        return frame

    def _select(self, info: CollectionInfo, terms, bbox, where=None, sortby=()
                ) -> pd.DataFrame:
        """The rows in the scope and property filters (``terms``), the box and the CQL2
        filter (``where``, ANDed outside it), in ``sortby`` order (else stored order)."""
        frame = self.frame(info.name)
        mask = np.ones(len(frame), dtype=bool)
        for column, values in terms:
            if column not in frame.columns or not values:
                mask[:] = False
                continue
            mask &= frame[column].isin(list(values)).to_numpy(dtype=bool, na_value=False)
        if bbox is not None and info.spatial:
            hits = np.zeros(len(frame), dtype=bool)
            hits[frame.sindex.query(shapely.box(*bbox), predicate="intersects")] = True
            mask &= hits
        if where is not None and mask.any():
            mask[mask] = to_mask(where, frame[mask])
        if not sortby and located_first(info):
            rows = frame[mask]
            return rows.iloc[np.argsort(rows.geometry.isna().to_numpy(), kind="stable")]
        return sort_frame(frame[mask], sortby)

    def _features(self, rows: pd.DataFrame, info: CollectionInfo, view: View,
                  crs: OutputCRS) -> list[str]:
        if info.spatial:
            geoms = np.asarray(rows.geometry.array, dtype=object)
            if crs.srid == 3857:
                geoms = shapely.transform(geoms, lambda xy: np.column_stack(
                    _TO_3857.transform(xy[:, 0], xy[:, 1])))
            elif crs.flip:
                geoms = shapely.transform(geoms, lambda xy: xy[:, ::-1])
            digits = self.settings.metre_digits if crs.metric else self.settings.degree_digits
            geoms = shapely.transform(geoms, lambda xy: np.round(xy, digits))
            geometry = [g if g is not None else "null" for g in shapely.to_geojson(geoms)]
        else:
            geometry = ["null"] * len(rows)
        props = pd.DataFrame(index=rows.index)
        for c in view.columns:
            values = rows[c.name]
            if c.type == "date":
                values = values.map(lambda d: d.isoformat(), na_action="ignore")
            elif c.type == "datetime":
                values = values.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
            props[c.name] = values
        # double_precision: pandas rounds floats to 10 decimals by default (15 at most).
        records = json.loads(props.to_json(orient="records", force_ascii=False,
                                           double_precision=15)
                             ) if len(props.columns) else [{}] * len(rows)
        ids = rows[info.key].tolist() if info.key else rows["fid"].tolist()
        return [
            f'{{"type":"Feature","id":{json.dumps(i, ensure_ascii=False, default=str)},'
            f'"geometry":{g},"properties":{json.dumps(p, ensure_ascii=False)}}}'
            for i, g, p in zip(ids, geometry, records, strict=True)
        ]

    async def items(self, info: CollectionInfo, view: View, query: ItemsQuery
                    ) -> AsyncIterator[PageHead | str]:
        def run():
            matched = self._select(info, (*view.scope, *query.filters), query.bbox,
                                   getattr(query, "where", None), getattr(query, "sortby", ()))
            page = matched.iloc[query.offset:query.offset + query.limit]
            return len(matched), self._features(page, info, view, query.crs)

        matched, features = await anyio.to_thread.run_sync(run)
        yield PageHead(matched, len(features))
        step = self.settings.stream_chunk
        for start in range(0, len(features), step):
            yield ",".join(features[start:start + step])

    async def item(self, info: CollectionInfo, view: View, feature_id: str,
                   crs: OutputCRS) -> str | None:
        value = feature_id_value(info, feature_id)
        if value is None:
            return None

        def run():
            rows = self._select(info, (*view.scope, (info.key or "fid", (value,))), None)
            return self._features(rows.iloc[:1], info, view, crs)

        features = await anyio.to_thread.run_sync(run)
        return features[0] if features else None

    async def tile(self, info: CollectionInfo, view: View, z: int, x: int, y: int
                   ) -> tuple[bytes, bool]:
        """The tile as PostGIS' ``ST_AsMVT`` makes it — features in the scope, clipped to
        the tile and a buffer of ``MVT_BUFFER`` of ``MVT_EXTENT`` units, dates as text,
        the ``fid`` as feature id — encoded by mapbox-vector-tile (the protobuf encoder
        Mapbox maintained; GEOS has no MVT writer). The embedded store serves one
        analyst, so tiles are made on demand and not cached."""
        if not info.spatial:
            raise NotFound(f"collection {info.name!r} has no geometry, so no tiles")
        return await anyio.to_thread.run_sync(self._make_tile, info, view, z, x, y), False

    def _make_tile(self, info: CollectionInfo, view: View, z: int, x: int, y: int) -> bytes:
        import mapbox_vector_tile
        import morecantile

        bounds = morecantile.tms.get("WebMercatorQuad").xy_bounds(x, y, z)
        left, bottom, right, top = bounds.left, bounds.bottom, bounds.right, bounds.top
        margin = (right - left) * MVT_BUFFER / MVT_EXTENT  # the buffer, in metres
        lons, lats = _TO_3857.transform([left - margin, right + margin],
                                        [bottom - margin, top + margin],
                                        direction="INVERSE")
        rows = self._select(info, view.scope, (lons[0], lats[0], lons[1], lats[1]))
        rows = rows[rows.geometry.notna().to_numpy()]
        scale = MVT_EXTENT / (right - left)

        def to_tile(xy: np.ndarray) -> np.ndarray:  # lon/lat → tile units, y up
            mx, my = _TO_3857.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([(mx - left) * scale, (my - bottom) * scale])

        geoms = shapely.transform(np.asarray(rows.geometry.array, dtype=object), to_tile)
        geoms = shapely.clip_by_rect(geoms, -MVT_BUFFER, -MVT_BUFFER,
                                     MVT_EXTENT + MVT_BUFFER, MVT_EXTENT + MVT_BUFFER)
        kept = ~shapely.is_empty(geoms)
        rows, geoms = rows[kept], geoms[kept]
        columns = {}
        for column in view.columns:  # MVT values are strings, numbers and booleans
            values = rows[column.name]
            if column.type in ("date", "datetime"):
                values = values.astype(str).where(values.notna())
            columns[column.name] = values.astype(object).where(values.notna(), None).tolist()
        names = list(columns)
        features = [
            {"geometry": geometry, "id": int(fid),
             "properties": {n: v for n, v in zip(names, values, strict=True)
                            if v is not None}}
            for geometry, fid, *values in zip(geoms, rows["fid"].to_numpy(),
                                               *columns.values(), strict=True)]
        if not features:
            return b""
        return mapbox_vector_tile.encode({"name": info.name, "features": features},
                                         default_options={"extents": MVT_EXTENT})

    async def distinct(self, name: str, column: str, where: dict[str, tuple]) -> list:
        info = (await self.catalog())[name]

        def run():
            rows = self._select(info, tuple(where.items()), None)
            return rows[column].dropna().unique().tolist()

        return await anyio.to_thread.run_sync(run)


def open_provider(store_url: str, store: Store, settings: Settings) -> Provider:
    """The provider for an open store (its kind follows the store's)."""
    if store.__class__.__name__ == "PostGISStore":
        conninfo = store_url.replace("postgresql+psycopg://", "postgresql://", 1)
        return PostGISProvider(conninfo, store, settings)
    return GeoPackageProvider(store, settings)
