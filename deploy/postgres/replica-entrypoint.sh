#!/usr/bin/env bash
# Entrypoint of the postgres-replica service: on an empty data directory, clone the primary with
# pg_basebackup (streaming the WAL it needs, through a physical replication slot, and writing
# standby.signal and primary_conninfo with -R); then hand over to the postgres image's own
# entrypoint, which finds a data directory and starts the server as a hot standby.
#
# Environment: PGDATA, REPLICATION_PASSWORD (required), PRIMARY_HOST (postgres-primary),
# PRIMARY_PORT (5432), REPLICATION_USER (replicator), REPLICATION_SLOT (replica1),
# PRIMARY_WAIT_SECONDS (180).
set -Eeuo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set (see .env.example)}"
primary_host="${PRIMARY_HOST:-postgres-primary}"
primary_port="${PRIMARY_PORT:-5432}"
replication_user="${REPLICATION_USER:-replicator}"
slot="${REPLICATION_SLOT:-replica1}"
wait_seconds="${PRIMARY_WAIT_SECONDS:-180}"

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  exec gosu postgres bash "${BASH_SOURCE[0]}" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  export PGPASSWORD="$REPLICATION_PASSWORD"
  echo "replica: waiting for the primary ${primary_host}:${primary_port}"
  deadline=$((SECONDS + wait_seconds))
  until pg_isready -q -h "$primary_host" -p "$primary_port" -U "$replication_user" -d postgres; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "replica: the primary did not answer within ${wait_seconds}s" >&2
      exit 1
    fi
    sleep 1
  done
  # The slot survives a replica whose volume was removed: create it only when it is missing.
  slot_args=(--slot="$slot")
  if [ -z "$(echo "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = :'slot'" \
      | psql -h "$primary_host" -p "$primary_port" -U "$replication_user" -d postgres \
        --no-psqlrc -tA -v ON_ERROR_STOP=1 -v slot="$slot")" ]; then
    slot_args+=(--create-slot)
  fi
  # A clone interrupted earlier leaves files behind, which pg_basebackup refuses.
  find "$PGDATA" -mindepth 1 -delete
  echo "replica: pg_basebackup from ${primary_host}:${primary_port} (slot ${slot})"
  pg_basebackup -h "$primary_host" -p "$primary_port" -U "$replication_user" -D "$PGDATA" \
    --wal-method=stream --write-recovery-conf --checkpoint=fast "${slot_args[@]}"
  chmod 0700 "$PGDATA"
  unset PGPASSWORD
fi

# The data directory exists now: the image's entrypoint skips initdb and runs postgres.
exec docker-entrypoint.sh "$@"
