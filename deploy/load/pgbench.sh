#!/usr/bin/env bash
# The "load" profile's generator: pgbench through the proxy (PGHOST/PGPORT/PGUSER/PGDATABASE/
# PGPASSWORD from the compose file), so that the dashboards move. Two runs side by side for
# LOAD_SECONDS:
#   - select-only transactions (-S), which the proxy routes to the replica;
#   - TPC-B-like write transactions, which go to the primary.
# Both are rate-limited (LOAD_READ_TPS, LOAD_WRITE_TPS) and bounded in time, so the stack stays
# usable on a small machine. LOAD_SCALE sets the size of pgbench's tables (-i -s), created once.
set -Eeuo pipefail

seconds="${LOAD_SECONDS:-300}"
scale="${LOAD_SCALE:-5}"
read_tps="${LOAD_READ_TPS:-200}"
write_tps="${LOAD_WRITE_TPS:-50}"
clients="${LOAD_CLIENTS:-4}"

until pg_isready -q; do sleep 1; done
if ! psql --no-psqlrc -tAc "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = 'pgbench_accounts'" | grep -q 1; then
  echo "load: pgbench -i -s ${scale}"
  pgbench -i -s "$scale" --quiet
fi

echo "load: ${seconds}s of reads (${read_tps} tps) and writes (${write_tps} tps), ${clients} clients each"
pgbench -n -S -c "$clients" -j 1 -R "$read_tps" -T "$seconds" -P 30 &
reads=$!
pgbench -n -c "$clients" -j 1 -R "$write_tps" -T "$seconds" -P 30 &
writes=$!
status=0
wait "$reads" || status=$?
wait "$writes" || status=$?
exit "$status"
