-- Result cache invalidation (DESIGN §7). CryoProxy keeps read replies of the tables its cache rules
-- name; writes through CryoProxy invalidate them at commit, and writes from anywhere else arrive as a
-- NOTIFY from the statement-level trigger these functions install. Call
--   SELECT cryoproxy.enable_cache_invalidation('public.molecules');
-- for every table a cache rule names (and the tables behind a cached view). The payload is
-- "schema.table <statement time in microseconds since the epoch>"; NOTIFY is delivered at commit,
-- so a rolled-back write invalidates nothing.
CREATE SCHEMA IF NOT EXISTS cryoproxy;
REVOKE ALL ON SCHEMA cryoproxy FROM PUBLIC;

CREATE OR REPLACE FUNCTION cryoproxy.notify_invalidation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_notify(
    TG_ARGV[0],
    TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME || ' '
      || (extract(epoch FROM pg_catalog.clock_timestamp()) * 1000000)::bigint);
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION cryoproxy.enable_cache_invalidation(
    target regclass, channel text DEFAULT 'cryoproxy_invalidate') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS cryoproxy_invalidate ON %s', target);
  EXECUTE format(
    'CREATE TRIGGER cryoproxy_invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s'
      || ' FOR EACH STATEMENT EXECUTE FUNCTION cryoproxy.notify_invalidation(%L)',
    target, channel);
END
$$;

CREATE OR REPLACE FUNCTION cryoproxy.disable_cache_invalidation(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP TRIGGER IF EXISTS cryoproxy_invalidate ON %s', target);
END
$$;

REVOKE ALL ON FUNCTION cryoproxy.enable_cache_invalidation(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cryoproxy.disable_cache_invalidation(regclass) FROM PUBLIC;
-- The trigger function runs as whoever writes: it must stay callable by every writer.
GRANT USAGE ON SCHEMA cryoproxy TO PUBLIC;
