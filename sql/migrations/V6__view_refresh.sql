-- Materialized-view refresh by CryoProxy's control plane (refresh_views in its config). Every
-- proxy instance calls cryoproxy.refresh_view on the schedule; the advisory lock lets one at a
-- time in, and the bookkeeping row makes the others skip a view refreshed less than half an
-- interval ago: each view is refreshed once per interval, never concurrently, however many
-- instances run. The function is SECURITY DEFINER (REFRESH needs the view's owner): grant it to
-- the login the proxy's control plane uses, e.g.
--   GRANT EXECUTE ON FUNCTION cryoproxy.refresh_view(regclass, interval, text) TO monitor;
CREATE TABLE IF NOT EXISTS cryoproxy.view_refresh (
  view_name text PRIMARY KEY,
  refreshed_at timestamptz NOT NULL,
  duration_ms double precision NOT NULL,
  refreshed_by text
);
REVOKE ALL ON cryoproxy.view_refresh FROM PUBLIC;

-- 'refreshed', 'busy' (another instance holds the view's lock) or 'fresh' (refreshed less than
-- min_interval ago); a failing REFRESH raises, and the view keeps its old rows.
CREATE OR REPLACE FUNCTION cryoproxy.refresh_view(
    target regclass, min_interval interval, instance text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  started timestamptz := clock_timestamp();
  last timestamptz;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('cryoproxy.refresh_view'), hashtext(target::text)) THEN
    RETURN 'busy';
  END IF;
  SELECT refreshed_at INTO last FROM cryoproxy.view_refresh WHERE view_name = target::text;
  IF last IS NOT NULL AND last > started - min_interval THEN
    RETURN 'fresh';
  END IF;
  EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %s', target);
  INSERT INTO cryoproxy.view_refresh AS r (view_name, refreshed_at, duration_ms, refreshed_by)
  VALUES (target::text, clock_timestamp(),
          extract(epoch FROM clock_timestamp() - started) * 1000, instance)
  ON CONFLICT (view_name) DO UPDATE
    SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms,
        refreshed_by = EXCLUDED.refreshed_by;
  RETURN 'refreshed';
END
$$;

-- When the view was last refreshed by any instance (NULL: never), for the age metric.
CREATE OR REPLACE FUNCTION cryoproxy.view_refreshed_at(target regclass) RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT refreshed_at FROM cryoproxy.view_refresh WHERE view_name = target::text
$$;

REVOKE ALL ON FUNCTION cryoproxy.refresh_view(regclass, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cryoproxy.view_refreshed_at(regclass) FROM PUBLIC;
