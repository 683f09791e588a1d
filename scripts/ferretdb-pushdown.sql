-- Installed by scripts/services.sh into the `ferretdb` database of the
-- stand-in's PostgreSQL, each time it starts (idempotent).
--
-- Why: FerretDB 1.24's PostgreSQL backend pushes every equality filter down
-- as `_jsonb->'key' @> value` (containment, so that an array holding the
-- value matches too), but it builds a MongoDB index as a btree on
-- `(_jsonb->'key')`, and a btree cannot answer `@>`. So every lookup by
-- `_id`, by conversation or by any indexed field read the whole table: at
-- 2,000 inbox entries one upsert's lookup took 3.2 ms (a sequential scan)
-- against 0.06 ms through an index, and a history page at 110,000 messages
-- 83 ms against 1.8. A real mongod serves those lookups from the index the
-- application declared; this makes the stand-in do the same, which is more
-- faithful, not less.
--
-- How: an event trigger that gives every btree index FerretDB creates a GIN
-- twin on the same leading expression (`jsonb_path_ops`, which answers
-- `@>`), when that expression is one top-level key. Dropping the
-- collection drops the twin with its table; dropping only the MongoDB
-- index leaves the twin, which then costs writes and nothing else.
--
-- Only keys that a pushed-down filter can use get a twin. FerretDB pushes
-- down a top-level `key: value` (or `$eq`), never `$and`, `$or` or `$ne`, so
-- of the messages' indexed keys only `_id` and `conversation_id` are ever
-- looked up this way. `search_words`, `sender_id` and `recipient_id` serve
-- message search, whose filter is an `$and` (a real mongod uses their
-- indexes; FerretDB scans either way), and `send_key` is only ever written
-- (its uniqueness is the btree's). Twins on them cost every stored message
-- GIN inserts into huge posting lists (one entry per search word) and served
-- nothing: without them PostgreSQL spent 37 % less CPU per stored message
-- and the worker stored 17 % more a second (item 12 of
-- BENCHMARKS.md). `charcha_twin_wanted` says which keys are left out.
--
-- `fastupdate` is off: with GIN's pending list, the insert that fills it
-- merges it into the index on the spot, and the history worker's lag p99
-- at 5,000 msg/s was 0.9-1.7 s; without it, 0.23-0.67 s (BENCHMARKS.md,
-- item 11).

-- The key of an index expression of FerretDB's form for a top-level key,
-- `((_jsonb -> 'key'::text))`; NULL for any other expression.
CREATE OR REPLACE FUNCTION charcha_top_level_key(index_expr text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT substring(index_expr FROM '^\(\(_jsonb -> ''([^'']+)''::text\)\)$')
$fn$;

-- Whether the btree on `key` of FerretDB's table `table_name` (named
-- `<collection>_<8 hex digits>`) gets a GIN twin.
CREATE OR REPLACE FUNCTION charcha_twin_wanted(table_name name, key text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $fn$
  SELECT NOT (substring(table_name FROM '^(.*)_[0-9a-f]{8}$') = 'messages'
              AND key IN ('send_key', 'sender_id', 'recipient_id', 'search_words'))
$fn$;

CREATE OR REPLACE FUNCTION charcha_containment_index() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  created record;
  target regclass;
  schema_name name;
  table_name name;
  method name;
  key_expr text;
  top_key text;
  twin name;
BEGIN
  FOR created IN
    SELECT objid FROM pg_event_trigger_ddl_commands()
    WHERE command_tag = 'CREATE INDEX' AND object_type = 'index'
  LOOP
    SELECT i.indrelid::regclass, n.nspname, t.relname, am.amname
      INTO target, schema_name, table_name, method
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_class t ON t.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
      JOIN pg_am am ON am.oid = c.relam
     WHERE i.indexrelid = created.objid;
    -- Our own GIN indexes fire this trigger too: only btrees get a twin.
    CONTINUE WHEN method IS DISTINCT FROM 'btree';
    key_expr := pg_get_indexdef(created.objid, 1, false);
    top_key := charcha_top_level_key(key_expr);
    CONTINUE WHEN top_key IS NULL OR NOT charcha_twin_wanted(table_name, top_key);
    -- One twin per (table, expression): a compound index and a single-key
    -- one that lead with the same key share it.
    twin := left(table_name, 40) || '_' || left(md5(key_expr), 12) || '_contains';
    CONTINUE WHEN to_regclass(format('%I.%I', schema_name, twin)) IS NOT NULL;
    EXECUTE format('CREATE INDEX %I ON %s USING gin (%s jsonb_path_ops) WITH (fastupdate = off)', twin, target, key_expr);
  END LOOP;
END
$fn$;

-- Twins an earlier version of this file made on keys now left out.
DO $do$
DECLARE
  unwanted record;
BEGIN
  FOR unwanted IN
    SELECT n.nspname AS schema_name, c.relname AS twin
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_class t ON t.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
      JOIN pg_am am ON am.oid = c.relam
     WHERE am.amname = 'gin' AND c.relname LIKE '%\_contains'
       AND NOT charcha_twin_wanted(t.relname, charcha_top_level_key(pg_get_indexdef(i.indexrelid, 1, false)))
  LOOP
    EXECUTE format('DROP INDEX %I.%I', unwanted.schema_name, unwanted.twin);
  END LOOP;
END
$do$;

-- Created once (no drop and re-create, which would leave a moment without
-- it while FerretDB may be creating a collection).
DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'charcha_containment_index') THEN
    CREATE EVENT TRIGGER charcha_containment_index ON ddl_command_end
      WHEN TAG IN ('CREATE INDEX')
      EXECUTE FUNCTION charcha_containment_index();
  END IF;
END
$do$;

-- FerretDB passes the field name as a parameter (`_jsonb->$1 @> $2`), so a
-- generic plan, which PostgreSQL may cache for a prepared statement, can
-- never use an index on one field: plan each execution with its values.
ALTER DATABASE ferretdb SET plan_cache_mode = force_custom_plan;
