"""Versioned migrations of a PostGIS store's own tables.

Each migration runs once per store schema and is recorded in ``gisgrid_migrations``;
``migrate`` applies the pending ones in one transaction under an advisory lock, so it is
safe to run on every start, from several processes at once, on an existing database:
nothing already there is dropped or rewritten.

Migration 1 creates the PostGIS extension if missing and the layer catalog
``gisgrid_layers``: one row per layer with its geometry type, key, feature count,
bounding box and column types, kept in the same transaction as the layer's table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

MIGRATIONS_TABLE = "gisgrid_migrations"
CATALOG_TABLE = "gisgrid_layers"


@dataclass(frozen=True)
class Migration:
    """One step: its version, a name for the record, the statements for a schema."""

    version: int
    name: str
    statements: Callable[[str], list[sql.Composable]]


def _v1_catalog(schema: str) -> list[sql.Composable]:
    return [
        sql.SQL("CREATE EXTENSION IF NOT EXISTS postgis"),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " name text PRIMARY KEY,"
            " geometry_type text,"
            " srid integer,"
            " key text,"
            " feature_count bigint NOT NULL,"
            " min_x double precision, min_y double precision,"
            " max_x double precision, max_y double precision,"
            " columns jsonb NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(schema, CATALOG_TABLE)),
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "postgis extension and layer catalog", _v1_catalog),
)


def migrate(conn: psycopg.Connection, schema: str) -> list[int]:
    """Bring ``schema`` up to the latest migration; return the versions applied now.

    ``conn`` must be in autocommit mode (the migrations take their own transaction).
    """
    applied_now = []
    with conn.transaction():
        # Serialise concurrent starts on the same schema.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                     [f"gisgrid migrations {schema}"])
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        if exists.fetchone() is None:  # CREATE SCHEMA IF NOT EXISTS needs the privilege
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(schema, MIGRATIONS_TABLE)))
        done = {row[0] for row in conn.execute(
            sql.SQL("SELECT version FROM {}").format(sql.Identifier(schema, MIGRATIONS_TABLE)))}
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for statement in migration.statements(schema):
                conn.execute(statement)
            conn.execute(
                sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                    sql.Identifier(schema, MIGRATIONS_TABLE)),
                [migration.version, migration.name])
            applied_now.append(migration.version)
    return applied_now
