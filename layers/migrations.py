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

Migration 4 adds the change log and the references (issue 15). ``gisgrid_history`` holds
one row per change of a layer (``layers.history``): the store writes it in the
transaction of its own replacing writes; for rows inserted, updated or deleted by SQL —
the store's appends and row updates, and any other client's — the statement triggers
``gisgrid_rows_insert`` / ``_update`` / ``_delete`` (function ``gisgrid_after_rows``,
transition tables ``gisgrid_new`` / ``gisgrid_old``) write it, with ``who`` from the
setting ``gisgrid.who`` (the store sets it) else ``session_user (application_name)``.
The same triggers refuse (``foreign_key_violation``) other clients' SQL that leaves a
reference of ``gis_grid.model.REFERENCES`` pointing at a missing key: new rows whose
reference is not in the target layer, and updated or deleted keys that rows of a
referencing layer still point at. The store's own appends and updates set
``gisgrid.trusted`` and are not checked there (the checked path is ``Store.change``,
which checks in Python before it writes). The reference table and the keys of the
layer kinds are the SQL functions ``gisgrid_references()`` and ``gisgrid_layer_keys()``,
made from the model and brought up to date by every ``migrate`` when the model changed.

Migration 5 does the same for ``TRUNCATE`` (a statement trigger ``gisgrid_rows_truncate``
BEFORE it): refused while rows of a referencing layer point at the table's keys, else
logged with every row it removes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from gis_grid.model import LAYERS, REFERENCES

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


HISTORY_TABLE = "gisgrid_history"
ROW_TRIGGERS = ("gisgrid_rows_insert", "gisgrid_rows_update", "gisgrid_rows_delete")
_STAGING = r"__c[0-9]{6}([0-9]{6})?$"


def _model_functions(schema: str) -> list[sql.Composable]:
    """``gisgrid_references()`` and ``gisgrid_layer_keys()`` from the model."""
    s = sql.Identifier(schema)
    refs = [sql.SQL("({}, {}, {}, {})").format(*map(sql.Literal, (kind, field, target, key)))
            for kind, fields in sorted(REFERENCES.items())
            for field, (target, key) in sorted(fields.items())]
    keys = []
    for kind, layer in sorted(LAYERS.items()):
        columns = (layer.key,) if layer.key else tuple(layer.extra.get("unique", ()))
        if columns:
            keys.append(sql.SQL("({}, {}::text[])").format(sql.Literal(kind),
                                                          sql.Literal(list(columns))))
    return [
        sql.SQL("CREATE OR REPLACE FUNCTION {s}.gisgrid_references() RETURNS TABLE "
                "(kind text, field text, target text, target_key text) LANGUAGE sql "
                "IMMUTABLE AS $fn$ VALUES {v} $fn$").format(s=s, v=sql.SQL(", ").join(refs)),
        sql.SQL("CREATE OR REPLACE FUNCTION {s}.gisgrid_layer_keys() RETURNS TABLE "
                "(kind text, columns text[]) LANGUAGE sql IMMUTABLE AS $fn$ VALUES {v} $fn$"
                ).format(s=s, v=sql.SQL(", ").join(keys)),
    ]


_KEY_EXPR = """
CREATE OR REPLACE FUNCTION {s}.gisgrid_key_expr(tbl regclass, v_kind text, alias text)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    keys text[];
    cols text[];
    k text;
    parts text[] := '{{}}';
BEGIN
    SELECT array_agg(attname::text) INTO cols FROM pg_attribute
     WHERE attrelid = tbl AND attnum > 0 AND NOT attisdropped;
    SELECT lk.columns INTO keys FROM {s}.gisgrid_layer_keys() lk WHERE lk.kind = v_kind;
    IF keys IS NULL OR NOT keys <@ cols THEN
        RETURN format('md5((to_jsonb(%s) - ''fid'')::text)', alias);
    END IF;
    FOREACH k IN ARRAY keys LOOP
        parts := parts || format('coalesce(%s.%I::text, '''')', alias, k);
    END LOOP;
    RETURN 'concat_ws(''|'', ' || array_to_string(parts, ', ') || ')';
END
$fn$"""

_AFTER_ROWS = """
CREATE OR REPLACE FUNCTION {s}.gisgrid_after_rows()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    layer text := TG_TABLE_NAME;
    v_kind text := split_part(TG_TABLE_NAME, '__', 1);
    trusted boolean := coalesce(current_setting('gisgrid.trusted', true), '') = 'on';
    cols text[];
    ref record;
    referrer text;
    target regclass;
    found bigint;
    sample text;
    unchanged text;
    key_expr text;
    row_expr text;
    v_added jsonb := '[]';
    v_changed jsonb := '[]';
    v_removed jsonb := '[]';
    v_old jsonb := '[]';
    n_delta bigint := 0;
    n_after bigint;
BEGIN
    IF layer ~ {staging} THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(attname::text) INTO cols FROM pg_attribute
     WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped;
    -- 1. the new rows' references
    IF NOT trusted AND TG_OP IN ('INSERT', 'UPDATE') THEN
        FOR ref IN SELECT r.field, r.target, r.target_key FROM {s}.gisgrid_references() r
                    WHERE r.kind = v_kind ORDER BY r.field LOOP
            CONTINUE WHEN NOT ref.field = ANY(cols);
            target := to_regclass(format('%I.%I', TG_TABLE_SCHEMA, ref.target));
            -- an UPDATE is checked for values it brings, not for those already there
            unchanged := CASE WHEN TG_OP = 'UPDATE' THEN format(
                ' AND n.%1$I::text NOT IN (SELECT o.%1$I::text FROM gisgrid_old o'
                ' WHERE o.%1$I IS NOT NULL)', ref.field) ELSE '' END;
            IF target IS NULL OR NOT EXISTS (
                    SELECT 1 FROM pg_attribute a WHERE a.attrelid = target
                       AND a.attname = ref.target_key AND NOT a.attisdropped) THEN
                EXECUTE format('SELECT count(*), array_to_string((array_agg(v ORDER BY v))'
                               '[1:10], '', '') FROM (SELECT DISTINCT n.%1$I::text v'
                               ' FROM gisgrid_new n WHERE nullif(n.%1$I::text, '''')'
                               ' IS NOT NULL %2$s) x', ref.field, unchanged)
                    INTO found, sample;
            ELSE
                EXECUTE format('SELECT count(*), array_to_string((array_agg(v ORDER BY v))'
                               '[1:10], '', '') FROM (SELECT DISTINCT n.%1$I::text v'
                               ' FROM gisgrid_new n WHERE nullif(n.%1$I::text, '''')'
                               ' IS NOT NULL AND NOT EXISTS (SELECT 1 FROM %2$s t'
                               ' WHERE t.%3$I::text = n.%1$I::text) %4$s) x',
                               ref.field, target, ref.target_key, unchanged)
                    INTO found, sample;
            END IF;
            IF found > 0 THEN
                RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                    MESSAGE = format('%s.%s: %s value(s) not in layer %s: %s%s', layer,
                                     ref.field, found, ref.target, sample,
                                     CASE WHEN found > 10 THEN ' …' ELSE '' END),
                    HINT = 'add them to the referenced layer first';
            END IF;
        END LOOP;
    END IF;
    -- 2. rows of other layers pointing at keys that are gone
    IF NOT trusted AND TG_OP IN ('UPDATE', 'DELETE') THEN
        FOR ref IN SELECT r.kind AS rkind, r.field, r.target_key
                     FROM {s}.gisgrid_references() r
                    WHERE r.target = layer ORDER BY r.kind, r.field LOOP
            CONTINUE WHEN NOT ref.target_key = ANY(cols);
            FOR referrer IN SELECT c.name FROM {catalog} c
                             WHERE split_part(c.name, '__', 1) = ref.rkind
                               AND c.name !~ {staging}
                               AND to_regclass(format('%I.%I', TG_TABLE_SCHEMA, c.name))
                                   IS NOT NULL
                             ORDER BY c.name LOOP
                target := to_regclass(format('%I.%I', TG_TABLE_SCHEMA, referrer));
                CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = target AND a.attname = ref.field AND NOT a.attisdropped);
                EXECUTE format('SELECT count(*), array_to_string((array_agg(id ORDER BY id))'
                               '[1:10], '', '') FROM (SELECT %5$s id FROM %1$s x'
                               ' WHERE x.%2$I::text IN (SELECT o.%3$I::text FROM gisgrid_old o)'
                               ' AND NOT EXISTS (SELECT 1 FROM %4$s t'
                               ' WHERE t.%3$I::text = x.%2$I::text)) y',
                               target, ref.field, ref.target_key, TG_RELID::regclass,
                               {s}.gisgrid_key_expr(target, ref.rkind, 'x'))
                    INTO found, sample;
                IF found > 0 THEN
                    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                        MESSAGE = format('%s: %s row(s) of layer %s refer through %s to'
                                         ' keys this change removes: %s%s', layer, found,
                                         referrer, ref.field, sample,
                                         CASE WHEN found > 10
                                              THEN format(' … (%s in all)', found)
                                              ELSE '' END),
                        HINT = 'change or remove those rows first';
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    -- 3. the change log
    key_expr := {s}.gisgrid_key_expr(TG_RELID, v_kind, 'x');
    row_expr := '(to_jsonb(x) - ''fid'' - ''geom'')' || CASE WHEN 'geom' = ANY(cols)
        THEN ' || jsonb_build_object(''geom'', encode(ST_AsBinary(x.geom), ''hex''))'
        ELSE '' END;
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('SELECT coalesce(jsonb_agg(%s), ''[]''), count(*)'
                       ' FROM gisgrid_new x', key_expr) INTO v_added, n_delta;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('SELECT coalesce(jsonb_agg(%s), ''[]''), coalesce(jsonb_agg(%s),'
                       ' ''[]''), -count(*) FROM gisgrid_old x', key_expr, row_expr)
            INTO v_removed, v_old, n_delta;
    ELSE
        EXECUTE format(
            'WITH o AS (SELECT %1$s k, %2$s r FROM gisgrid_old x),'
            ' n AS (SELECT %1$s k, %2$s r FROM gisgrid_new x)'
            ' SELECT coalesce((SELECT jsonb_agg(n.k) FROM n WHERE n.k NOT IN'
            '   (SELECT k FROM o)), ''[]''),'
            ' coalesce((SELECT jsonb_agg(o.k) FROM o WHERE o.k NOT IN (SELECT k FROM n)),'
            '   ''[]''),'
            ' coalesce((SELECT jsonb_agg(o.k) FROM o JOIN n USING (k)'
            '   WHERE o.r IS DISTINCT FROM n.r), ''[]''),'
            ' coalesce((SELECT jsonb_agg(o.r) FROM o WHERE o.k NOT IN (SELECT k FROM n)'
            '   OR EXISTS (SELECT 1 FROM n WHERE n.k = o.k AND n.r IS DISTINCT FROM o.r)),'
            '   ''[]''),'
            ' (SELECT count(*) FROM n) - (SELECT count(*) FROM o)', key_expr, row_expr)
            INTO v_added, v_removed, v_changed, v_old, n_delta;
    END IF;
    IF v_added = '[]' AND v_removed = '[]' AND v_changed = '[]' THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', TG_RELID::regclass) INTO n_after;
    INSERT INTO {history} (layer, who, how, added, changed, removed, old, rows_before,
                           rows_after)
    VALUES (layer,
            coalesce(nullif(current_setting('gisgrid.who', true), ''),
                     session_user || ' (' || coalesce(nullif(current_setting(
                         'application_name', true), ''), 'SQL') || ')'),
            coalesce(nullif(current_setting('gisgrid.how', true), ''), 'SQL ' || TG_OP),
            v_added, v_changed, v_removed, v_old, n_after - n_delta, n_after);
    RETURN NULL;
END
$fn$"""

_GUARD = """
CREATE OR REPLACE FUNCTION {s}.gisgrid_guard(tbl regclass)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl
                   AND tgname = 'gisgrid_rows_insert') THEN
        EXECUTE format('CREATE TRIGGER gisgrid_rows_insert AFTER INSERT ON %s REFERENCING'
                       ' NEW TABLE AS gisgrid_new FOR EACH STATEMENT EXECUTE FUNCTION'
                       ' %I.gisgrid_after_rows()', tbl, {schema});
        EXECUTE format('CREATE TRIGGER gisgrid_rows_update AFTER UPDATE ON %s REFERENCING'
                       ' OLD TABLE AS gisgrid_old NEW TABLE AS gisgrid_new FOR EACH'
                       ' STATEMENT EXECUTE FUNCTION %I.gisgrid_after_rows()', tbl, {schema});
        EXECUTE format('CREATE TRIGGER gisgrid_rows_delete AFTER DELETE ON %s REFERENCING'
                       ' OLD TABLE AS gisgrid_old FOR EACH STATEMENT EXECUTE FUNCTION'
                       ' %I.gisgrid_after_rows()', tbl, {schema});
    END IF;
END
$fn$"""

_GUARD_ALL = """
DO $do$
DECLARE layer text;
BEGIN
    FOR layer IN SELECT c.name FROM {catalog} c
                  WHERE to_regclass(format('%I.%I', {schema}, c.name)) IS NOT NULL LOOP
        PERFORM {s}.gisgrid_guard(format('%I.%I', {schema}, layer)::regclass);
    END LOOP;
END
$do$"""


def _v4_history_and_references(schema: str) -> list[sql.Composable]:
    """The change log table, the row triggers' functions, and the triggers on every
    layer table already there (see the module doc)."""
    s = sql.Identifier(schema)
    history = sql.Identifier(schema, HISTORY_TABLE)
    catalog = sql.Identifier(schema, CATALOG_TABLE)
    return [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, layer text NOT NULL,"
            " at timestamptz NOT NULL DEFAULT clock_timestamp(), who text NOT NULL,"
            " how text NOT NULL, added jsonb NOT NULL, changed jsonb NOT NULL,"
            " removed jsonb NOT NULL, old jsonb NOT NULL, rows_before bigint,"
            " rows_after bigint)").format(history),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (layer, id)").format(
            sql.Identifier(f"{HISTORY_TABLE}_layer"), history),
        *_model_functions(schema),
        # The SQL expression of a row's key (as layers.history.row_keys makes it) for a
        # table of a kind, the row being `alias`.
        sql.SQL(_KEY_EXPR).format(s=s),
        sql.SQL(_AFTER_ROWS).format(s=s, catalog=catalog, history=history,
                                    staging=sql.Literal(_STAGING)),
        sql.SQL(_GUARD).format(s=s, schema=sql.Literal(schema)),
        sql.SQL(_GUARD_ALL).format(s=s, catalog=catalog, schema=sql.Literal(schema)),
    ]


_BEFORE_TRUNCATE = """
CREATE OR REPLACE FUNCTION {s}.gisgrid_before_truncate()
RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    layer text := TG_TABLE_NAME;
    v_kind text := split_part(TG_TABLE_NAME, '__', 1);
    trusted boolean := coalesce(current_setting('gisgrid.trusted', true), '') = 'on';
    cols text[];
    ref record;
    referrer text;
    target regclass;
    found bigint;
    sample text;
    v_removed jsonb;
    v_old jsonb;
    n_before bigint;
BEGIN
    IF layer ~ {staging} THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(attname::text) INTO cols FROM pg_attribute
     WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped;
    IF NOT trusted THEN
        FOR ref IN SELECT r.kind AS rkind, r.field, r.target_key
                     FROM {s}.gisgrid_references() r
                    WHERE r.target = layer ORDER BY r.kind, r.field LOOP
            CONTINUE WHEN NOT ref.target_key = ANY(cols);
            FOR referrer IN SELECT c.name FROM {catalog} c
                             WHERE split_part(c.name, '__', 1) = ref.rkind
                               AND c.name !~ {staging}
                               AND to_regclass(format('%I.%I', TG_TABLE_SCHEMA, c.name))
                                   IS NOT NULL
                             ORDER BY c.name LOOP
                target := to_regclass(format('%I.%I', TG_TABLE_SCHEMA, referrer));
                CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = target AND a.attname = ref.field AND NOT a.attisdropped);
                EXECUTE format('SELECT count(*), array_to_string((array_agg(id ORDER BY id))'
                               '[1:10], '', '') FROM (SELECT %4$s id FROM %1$s x'
                               ' WHERE x.%2$I::text IN (SELECT t.%3$I::text FROM %5$s t)) y',
                               target, ref.field, ref.target_key,
                               {s}.gisgrid_key_expr(target, ref.rkind, 'x'),
                               TG_RELID::regclass)
                    INTO found, sample;
                IF found > 0 THEN
                    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
                        MESSAGE = format('%s: %s row(s) of layer %s refer through %s to'
                                         ' keys this change removes: %s%s', layer, found,
                                         referrer, ref.field, sample,
                                         CASE WHEN found > 10
                                              THEN format(' … (%s in all)', found)
                                              ELSE '' END),
                        HINT = 'change or remove those rows first';
                END IF;
            END LOOP;
        END LOOP;
    END IF;
    EXECUTE format('SELECT coalesce(jsonb_agg(%s), ''[]''), coalesce(jsonb_agg(%s), ''[]''),'
                   ' count(*) FROM %s x', {s}.gisgrid_key_expr(TG_RELID, v_kind, 'x'),
                   '(to_jsonb(x) - ''fid'' - ''geom'')' || CASE WHEN 'geom' = ANY(cols)
                   THEN ' || jsonb_build_object(''geom'', encode(ST_AsBinary(x.geom), ''hex''))'
                   ELSE '' END, TG_RELID::regclass)
        INTO v_removed, v_old, n_before;
    IF n_before > 0 THEN
        INSERT INTO {history} (layer, who, how, added, changed, removed, old, rows_before,
                               rows_after)
        VALUES (layer,
                coalesce(nullif(current_setting('gisgrid.who', true), ''),
                         session_user || ' (' || coalesce(nullif(current_setting(
                             'application_name', true), ''), 'SQL') || ')'),
                coalesce(nullif(current_setting('gisgrid.how', true), ''), 'SQL TRUNCATE'),
                '[]', '[]', v_removed, v_old, n_before, 0);
    END IF;
    RETURN NULL;
END
$fn$"""

_GUARD_5 = """
CREATE OR REPLACE FUNCTION {s}.gisgrid_guard(tbl regclass)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl
                   AND tgname = 'gisgrid_rows_insert') THEN
        EXECUTE format('CREATE TRIGGER gisgrid_rows_insert AFTER INSERT ON %s REFERENCING'
                       ' NEW TABLE AS gisgrid_new FOR EACH STATEMENT EXECUTE FUNCTION'
                       ' %I.gisgrid_after_rows()', tbl, {schema});
        EXECUTE format('CREATE TRIGGER gisgrid_rows_update AFTER UPDATE ON %s REFERENCING'
                       ' OLD TABLE AS gisgrid_old NEW TABLE AS gisgrid_new FOR EACH'
                       ' STATEMENT EXECUTE FUNCTION %I.gisgrid_after_rows()', tbl, {schema});
        EXECUTE format('CREATE TRIGGER gisgrid_rows_delete AFTER DELETE ON %s REFERENCING'
                       ' OLD TABLE AS gisgrid_old FOR EACH STATEMENT EXECUTE FUNCTION'
                       ' %I.gisgrid_after_rows()', tbl, {schema});
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl
                   AND tgname = 'gisgrid_rows_truncate') THEN
        EXECUTE format('CREATE TRIGGER gisgrid_rows_truncate BEFORE TRUNCATE ON %s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION %I.gisgrid_before_truncate()',
                       tbl, {schema});
    END IF;
END
$fn$"""


def _v5_truncate(schema: str) -> list[sql.Composable]:
    """TRUNCATE by other clients: refused while referenced, else logged with the rows it
    removes (a statement trigger BEFORE TRUNCATE on every layer table)."""
    s = sql.Identifier(schema)
    catalog = sql.Identifier(schema, CATALOG_TABLE)
    return [
        sql.SQL(_BEFORE_TRUNCATE).format(s=s, catalog=catalog,
                                         history=sql.Identifier(schema, HISTORY_TABLE),
                                         staging=sql.Literal(_STAGING)),
        sql.SQL(_GUARD_5).format(s=s, schema=sql.Literal(schema)),
        sql.SQL(_GUARD_ALL).format(s=s, catalog=catalog, schema=sql.Literal(schema)),
    ]


#: The service's analysis jobs (``api.jobs``): one row each, so that they survive a
#: restart and every server process, on any machine, answers their polls.
JOBS_TABLE = "gisgrid_jobs"


def _v6_jobs(schema: str) -> list[sql.Composable]:
    """The jobs table: the record (JSON) with the fields queries need beside it, and the
    result once done."""
    return [sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (job_id text PRIMARY KEY, owner text NOT NULL,"
        " instance text, state text NOT NULL, record jsonb NOT NULL, result text,"
        " updated timestamptz NOT NULL DEFAULT now())").format(
            sql.Identifier(schema, JOBS_TABLE)),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (owner, state)").format(
            sql.Identifier(f"{JOBS_TABLE}_owner"), sql.Identifier(schema, JOBS_TABLE))]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "postgis extension and layer catalog", _v1_catalog),
    Migration(2, "grid invariants: check functions and row trigger", _v2_grid_invariants),
    Migration(3, "layer generations: sequence, catalog column, statement trigger",
              _v3_generation),
    Migration(4, "change log, references: history table, row triggers",
              _v4_history_and_references),
    Migration(5, "change log, references: TRUNCATE", _v5_truncate),
    Migration(6, "analysis jobs of the service", _v6_jobs),
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
        if 4 not in applied_now and 4 in done | set(applied_now):
            _refresh_model_functions(conn, schema)
    return applied_now


def _refresh_model_functions(conn: psycopg.Connection, schema: str) -> None:
    """Re-create ``gisgrid_references()`` / ``gisgrid_layer_keys()`` when the model's
    tables changed since they were made (inside ``migrate``'s transaction and lock)."""
    wanted = [statement.as_string(conn) for statement in _model_functions(schema)]
    found = dict(conn.execute(
        "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n"
        " ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname IN"
        " ('gisgrid_references', 'gisgrid_layer_keys')", [schema]).fetchall())
    for name, statement in zip(("gisgrid_references", "gisgrid_layer_keys"), wanted,
                               strict=True):
        body = statement.split("$fn$")[1].strip()
        if found.get(name, "").strip() != body:
            conn.execute(statement)
