-- The audit log (DESIGN §6): one row per statement run under an audited role, written by
-- CryoProxy's audit writer from its local journal. (journal, seq) identifies a journal record, so
-- a batch written twice after an outage is not duplicated. Partitioned by month; the control plane
-- calls audit.create_partitions() to keep partitions ahead of time. No application role can read
-- or change it.
CREATE SCHEMA IF NOT EXISTS audit;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;

CREATE TABLE IF NOT EXISTS audit.service_role_log (
  logged_at timestamptz NOT NULL,      -- when the statement completed
  journal text NOT NULL,               -- the proxy instance's journal
  seq bigint NOT NULL,                 -- the record's position in that journal
  sub text,
  jti text,
  role text NOT NULL,
  scopes text[],
  client_addr inet,
  database text NOT NULL,
  statement text NOT NULL,
  parameters text,                     -- only when audit.parameters is on
  duration_ms double precision,
  row_count bigint,
  sqlstate text,                       -- NULL when it succeeded
  PRIMARY KEY (logged_at, journal, seq)
) PARTITION BY RANGE (logged_at);
REVOKE ALL ON audit.service_role_log FROM PUBLIC;

CREATE INDEX IF NOT EXISTS service_role_log_sub ON audit.service_role_log (sub, logged_at);
CREATE INDEX IF NOT EXISTS service_role_log_jti ON audit.service_role_log (jti);

-- Monthly partitions from this month to months_ahead months from now; returns how many it made.
CREATE OR REPLACE FUNCTION audit.create_partitions(months_ahead integer DEFAULT 2) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
  first date := date_trunc('month', now())::date;
  m date;
  name text;
  made integer := 0;
BEGIN
  IF months_ahead < 0 OR months_ahead > 120 THEN
    RAISE EXCEPTION 'months_ahead must be between 0 and 120, not %', months_ahead
      USING ERRCODE = '22023';
  END IF;
  FOR i IN 0 .. months_ahead LOOP
    m := (first + make_interval(months => i))::date;
    name := 'service_role_log_' || to_char(m, 'YYYY_MM');
    IF to_regclass('audit.' || quote_ident(name)) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE audit.%I PARTITION OF audit.service_role_log FOR VALUES FROM (%L) TO (%L)',
        name, m, (m + interval '1 month')::date);
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END
$$;
REVOKE ALL ON FUNCTION audit.create_partitions(integer) FROM PUBLIC;

SELECT audit.create_partitions(2);
