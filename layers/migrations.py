"""Versioned migrations of a PostGIS store's own tables.

Each migration runs once per store schema and is recorded in ``gisgrid_migrations``;
``migrate`` applies the pending ones in one transaction under an advisory lock, so it is
safe to run on every start, from several processes at once, on an existing database:
nothing already there is dropped or rewritten.

Migration 1 creates the PostGIS extension if missing and the layer catalog
``gisgrid_layers``: one row per layer with its geometry type, key, feature count,
bounding box and column types, kept in the same transaction as the layer's table.

Migration 2 creates the functions enforcing the grid invariants in a table of kind grids
(ARCHITECTURE.md §5): no two grids of one institution and level overlap by more than
``GRID_TOLERANCE_M2``, a grid of level 2 or 3 has its parent (``parent``, else its code
without the last ``-`` segment) in the same table and lies inside it (same tolerance),
every geometry is valid. ``gisgrid_check_grids(regclass)`` returns the violations as rows
(kind, code, other code, institution, level, area m², detail);
``gisgrid_assert_grids(regclass, layer)`` raises ``check_violation`` (23514) naming the
first one; ``gisgrid_grid_row_check()`` is the deferred constraint trigger the store puts
on each grids table, so that appends, updates and any other client's SQL are checked too.

Migration 3 gives every layer a *generation*: the catalog column ``generation`` takes a
new value of the sequence ``gisgrid_generation`` whenever the layer's rows change, in
the same transaction as the change — by the store (a write's swap, an append, an update)
or by any other client's SQL (the statement trigger ``gisgrid_touch`` that the store puts
on each layer table: INSERT, UPDATE, DELETE, TRUNCATE). A reader that saw generation G
knows that the rows are the same as in any snapshot showing G, which is what lets the
service cache vector tiles exactly (``api.providers.TileCache``). A sequence rather than
a counter per row, so a layer deleted and written again never repeats an old value.
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


#: The tolerance, in m², below which an overlap or a part outside the parent is float noise
#: along shared edges rather than a broken grid.
GRID_TOLERANCE_M2 = 0.01
GRID_TRIGGER = "gisgrid_grid_check"


def _v2_grid_invariants(schema: str) -> list[sql.Composable]:
    """The grid invariants as functions of the schema (see the module doc)."""
    s = sql.Identifier(schema)
    tol = sql.Literal(GRID_TOLERANCE_M2)
    return [
        # The violations in a grids table: all of them (fid and parent_code null), those
        # of one row (fid), or those of the children of one code (parent_code).
        sql.SQL("""
CREATE OR REPLACE FUNCTION {s}.gisgrid_grid_violations(
    tbl regclass, only_fid bigint DEFAULT NULL, parent_code text DEFAULT NULL)
RETURNS TABLE (kind text, code text, other text, institution text, level integer,
               area double precision, detail text)
LANGUAGE plpgsql STABLE SET jit = off AS $fn$
DECLARE
    cols text[];
    inst text;
    par text;
    a_inst text; b_inst text; a_par text;
    only_row text := '';
    -- not "a.fid < b.fid": the planner would AND the fid index (half the table) with
    -- the GiST index, once per row
    pair text := 'a.fid - b.fid < 0';
    invalid_found boolean := false;
BEGIN
    SELECT array_agg(attname::text) INTO cols FROM pg_attribute
     WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped;
    inst := CASE WHEN 'institution' = ANY(cols)
                 THEN 'coalesce(X.institution::text, '''')' ELSE '''''' END;
    par := CASE WHEN 'parent' = ANY(cols) THEN 'nullif(X.parent::text, '''')'
                ELSE 'NULL::text' END;
    -- the parent's code: the parent field, else the code without its last segment when
    -- that is still a grid code (a code's first segment is the territory or unit it sits
    -- in, not a grid: 420527-101-001 → 420527-101, but 420527-101 → none)
    par := format('CASE WHEN X.level > 1 THEN coalesce(%s, CASE WHEN X.code ~ ''-.*-'''
                  ' THEN regexp_replace(X.code, ''-[^-]*$'', '''') END) END', par);
    a_inst := replace(inst, 'X.', 'a.');
    b_inst := replace(inst, 'X.', 'b.');
    a_par := replace(par, 'X.', 'a.');
    IF only_fid IS NOT NULL THEN
        only_row := 'AND a.fid = $1';
        pair := 'b.fid <> a.fid';
    END IF;
    IF parent_code IS NULL THEN
        FOR kind, code, other, institution, level, area, detail IN EXECUTE format(
            'SELECT ''invalid'', a.code::text, NULL, %s, a.level::int, NULL::float8,'
            ' ST_IsValidReason(a.geom) FROM %s a WHERE NOT ST_IsValid(a.geom) %s'
            ' ORDER BY a.fid', a_inst, tbl, only_row) USING only_fid
        LOOP
            invalid_found := true;
            RETURN NEXT;
        END LOOP;
        IF invalid_found THEN
            RETURN;  -- the other checks need valid geometries
        END IF;
        RETURN QUERY EXECUTE format(
            'SELECT ''overlap'', a.code::text, b.code::text, %1$s, a.level::int, x.area, NULL'
            ' FROM %2$s a JOIN %2$s b ON b.geom && a.geom AND %3$s AND b.level = a.level'
            '  AND %4$s = %1$s AND ST_Relate(a.geom, b.geom, ''2********'')'
            ' CROSS JOIN LATERAL (SELECT ST_Area(ST_CollectionExtract('
            '  ST_Intersection(a.geom, b.geom), 3)::geography)) x(area)'
            ' WHERE x.area > %5$s %6$s ORDER BY a.fid, b.fid',
            a_inst, tbl, pair, b_inst, {tol}, only_row) USING only_fid;
    ELSE
        only_row := format('AND (%s) = $2', a_par);
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT CASE WHEN p.fid IS NULL THEN ''no_parent'' ELSE ''outside'' END,'
        '  a.code::text, x.parent, %1$s,'
        '  a.level::int, y.area, NULL'
        ' FROM %2$s a CROSS JOIN LATERAL (SELECT %3$s) x(parent)'
        ' LEFT JOIN %2$s p ON p.code = x.parent'
        ' CROSS JOIN LATERAL (SELECT CASE WHEN p.fid IS NULL OR ST_CoveredBy(a.geom, p.geom)'
        '  THEN 0 ELSE ST_Area(ST_CollectionExtract(ST_Difference(a.geom, p.geom), 3)'
        '  ::geography) END) y(area)'
        ' WHERE x.parent IS NOT NULL AND (p.fid IS NULL OR y.area > %4$s) %5$s'
        ' ORDER BY a.fid',
        a_inst, tbl, a_par, {tol}, only_row) USING only_fid, parent_code;
END
$fn$""").format(s=s, tol=tol),
        # The violations of a whole grids table (the set-based check of a write).
        sql.SQL("""
CREATE OR REPLACE FUNCTION {s}.gisgrid_check_grids(tbl regclass)
RETURNS TABLE (kind text, code text, other text, institution text, level integer,
               area double precision, detail text)
LANGUAGE sql STABLE AS $fn$ SELECT * FROM {s}.gisgrid_grid_violations(tbl) $fn$
""").format(s=s),
        # One violation as a sentence.
        sql.SQL("""
CREATE OR REPLACE FUNCTION {s}.gisgrid_grid_message(
    layer text, kind text, code text, other text, institution text, level integer,
    area double precision, detail text)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
SELECT format('%s: grid %s (%s, level %s) ', layer, code,
              coalesce(nullif(institution, ''), 'no institution'), level)
    || CASE kind
       WHEN 'invalid' THEN format('has an invalid geometry (%s)', detail)
       WHEN 'overlap' THEN format('overlaps %s by %s m²', other,
                                  to_char(area, 'FM999999999990.0'))
       WHEN 'outside' THEN format('lies %s m² outside its parent %s',
                                  to_char(area, 'FM999999999990.0'), other)
       ELSE format('has no parent %s in the layer', other) END
$fn$""").format(s=s),
        # Raise check_violation naming the first violation (and how many there are).
        sql.SQL("""
CREATE OR REPLACE FUNCTION {s}.gisgrid_assert_grids(
    tbl regclass, layer text, only_fid bigint DEFAULT NULL, parent_code text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v record;
    n bigint := 0;
    first text;
BEGIN
    FOR v IN SELECT * FROM {s}.gisgrid_grid_violations(tbl, only_fid, parent_code) LOOP
        n := n + 1;
        IF n = 1 THEN
            first := {s}.gisgrid_grid_message(layer, v.kind, v.code, v.other,
                                              v.institution, v.level, v.area, v.detail);
        END IF;
    END LOOP;
    IF n > 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = first || CASE WHEN n > 1
                               THEN format(' (and %s more violation%s)', n - 1,
                                           CASE WHEN n > 2 THEN 's' ELSE '' END)
                               ELSE '' END,
            DETAIL = format('%s violation(s) of the grid invariants', n),
            HINT = 'grids of one institution and level must not overlap, a child must lie'
                   ' inside its parent, geometries must be valid';
    END IF;
END
$fn$""").format(s=s),
        # The row trigger: CREATE CONSTRAINT TRIGGER gisgrid_grid_check AFTER INSERT OR
        # UPDATE OR DELETE ON <grids table> DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        # EXECUTE FUNCTION gisgrid_grid_row_check(). Deferred, it sees the rows as they
        # are at commit, so a transaction may pass through broken states.
        sql.SQL("""
CREATE OR REPLACE FUNCTION {s}.gisgrid_grid_row_check()
RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM {s}.gisgrid_assert_grids(TG_RELID, TG_TABLE_NAME::text, NEW.fid);
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.geom IS DISTINCT FROM OLD.geom
                             OR NEW.code IS DISTINCT FROM OLD.code) THEN
        PERFORM {s}.gisgrid_assert_grids(TG_RELID, TG_TABLE_NAME::text, NULL, NEW.code);
    END IF;
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.code IS DISTINCT FROM OLD.code) THEN
        PERFORM {s}.gisgrid_assert_grids(TG_RELID, TG_TABLE_NAME::text, NULL, OLD.code);
    END IF;
    RETURN NULL;
END
$fn$""").format(s=s),
    ]


GENERATION_SEQUENCE = "gisgrid_generation"
TOUCH_TRIGGER = "gisgrid_touch"
TOUCH_FUNCTION = "gisgrid_touch_layer"


def _v3_generation(schema: str) -> list[sql.Composable]:
    """Layer generations: the sequence, the catalog column, the statement trigger's
    function, and the trigger on every layer table already there."""
    s = sql.Identifier(schema)
    catalog = sql.Identifier(schema, CATALOG_TABLE)
    sequence = sql.Identifier(schema, GENERATION_SEQUENCE)
    return [
        sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(sequence),
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS generation bigint NOT NULL"
                " DEFAULT nextval({})").format(
            catalog, sql.Literal(f'"{schema}"."{GENERATION_SEQUENCE}"')),
        sql.SQL("""
CREATE OR REPLACE FUNCTION {s}.{fn}()
RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE {catalog} SET generation = nextval({seq}), updated_at = now()
     WHERE name = TG_TABLE_NAME;
    RETURN NULL;
END
$fn$""").format(s=s, fn=sql.Identifier(TOUCH_FUNCTION), catalog=catalog,
                seq=sql.Literal(f'"{schema}"."{GENERATION_SEQUENCE}"')),
        sql.SQL("""
DO $do$
DECLARE layer text;
BEGIN
    FOR layer IN SELECT c.name FROM {catalog} c
                  WHERE to_regclass(format('%I.%I', {schema}, c.name)) IS NOT NULL LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE'
                       ' ON %I.%I FOR EACH STATEMENT EXECUTE FUNCTION %I.%I()',
                       {trigger}, {schema}, layer, {schema}, {fn});
    END LOOP;
END
$do$""").format(catalog=catalog, schema=sql.Literal(schema),
                trigger=sql.Literal(TOUCH_TRIGGER), fn=sql.Literal(TOUCH_FUNCTION)),
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "postgis extension and layer catalog", _v1_catalog),
    Migration(2, "grid invariants: check functions and row trigger", _v2_grid_invariants),
    Migration(3, "layer generations: sequence, catalog column, statement trigger",
              _v3_generation),
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
