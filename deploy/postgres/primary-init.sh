#!/usr/bin/env bash
# First start of the primary (docker-compose.yml mounts this file into /docker-entrypoint-initdb.d,
# which the postgres image runs once, on an empty data directory, after creating POSTGRES_DB):
#   - replicator: the streaming replica's login (REPLICATION, nothing else), and a pg_hba line
#     letting it stream from the compose network;
#   - cryoproxy_auth: the proxy's auth_query and health-probe login, allowed only to call
#     cryoproxy_auth.lookup(name), a SECURITY DEFINER look-up of a role's SCRAM verifier that
#     answers nothing for superusers and replication roles;
#   - app: the login the demo clients and the load generator use through the proxy.
# The roles of sql/migrations (authenticator, anon, ...) come later, from `cryoproxy migrate`.
# Passwords come from the container's environment (.env), never from this file. The script is run
# or sourced by the image's entrypoint, so it neither exits nor changes shell options.

# "return" when sourced, "exit" when run: either way the entrypoint stops on a failure.
for cryoproxy_var in REPLICATION_PASSWORD CRYOPROXY_AUTH_PASSWORD APP_PASSWORD; do
  if [ -z "${!cryoproxy_var:-}" ]; then
    echo "primary-init.sh: $cryoproxy_var is not set (see .env.example)" >&2
    return 1 2>/dev/null || exit 1
  fi
done

if ! psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
  --dbname "${POSTGRES_DB:-postgres}" \
  --set=replication_password="$REPLICATION_PASSWORD" \
  --set=auth_password="$CRYOPROXY_AUTH_PASSWORD" \
  --set=app_password="$APP_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD :'replication_password';
CREATE ROLE cryoproxy_auth WITH LOGIN PASSWORD :'auth_password';
CREATE ROLE app WITH LOGIN PASSWORD :'app_password';

-- The load profile's pgbench creates its tables in public.
GRANT USAGE, CREATE ON SCHEMA public TO app;

CREATE SCHEMA cryoproxy_auth;
REVOKE ALL ON SCHEMA cryoproxy_auth FROM PUBLIC;
GRANT USAGE ON SCHEMA cryoproxy_auth TO cryoproxy_auth;

CREATE FUNCTION cryoproxy_auth.lookup(p_usename text, OUT usename name, OUT passwd text)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT s.usename, s.passwd
  FROM pg_catalog.pg_shadow s
  WHERE s.usename = p_usename AND NOT s.usesuper AND NOT s.userepl
$$;
REVOKE ALL ON FUNCTION cryoproxy_auth.lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cryoproxy_auth.lookup(text) TO cryoproxy_auth;
SQL
then
  echo "primary-init.sh: creating the roles failed" >&2
  return 1 2>/dev/null || exit 1
fi

# Streaming replication from other containers (the image's own line, "host all all all ...",
# does not cover the replication pseudo-database).
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
unset cryoproxy_var
