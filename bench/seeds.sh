#!/usr/bin/env bash
# The CryoProtect seeds' database targets, side by side in one run (bench/README.md, "The seeds'
# targets"). Starts `cryoproxy demo` (embedded PostgreSQL 18 primary and replica, the V5 schema
# with generated data, the proxy with routing and JWT logins; the result cache off so every query
# reaches PostgreSQL), adds a naive copy of the RLS tables, and runs the same pgbench scripts
# through the proxy with JWT logins:
#   1. RLS policy overhead per standard query: the V5 tables against copies with the same indexes
#      and RLS off, the same query as the same `authenticated` subject;
#   2. optimized policies and indexes (V5) against naive per-row policies (auth.uid() per row, no
#      SECURITY DEFINER helpers, no created_by/GIN/partial indexes) on copies of the same rows;
#   3. toxicity summaries from the materialized view against the same aggregate on the base tables
#      (the copies without RLS, so only the aggregation is compared);
#   4. every standard query's latency (mean and p99) against 100 ms, the complex ones against 500.
# Prints a markdown report and writes results.json. Everything it started is stopped on exit.
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
MOLECULES=${SEEDS_MOLECULES:-100000}
DURATION=${SEEDS_DURATION:-10}
CLIENTS=${SEEDS_CLIENTS:-4}
REPS=${SEEDS_REPS:-3}
JAR=${CRYOPROXY_DEMO_JAR:-$ROOT/demo/target/cryoproxy-demo.jar}
while (($#)); do
  case $1 in
    --molecules) MOLECULES=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --quick) MOLECULES=10000 DURATION=2 REPS=1 ;;
    -h | --help)
      echo "usage: bench/seeds.sh [--quick] [--molecules N (100000)] [--duration S (10)] [--clients N (4)] [--reps N (3)]"
      exit 0 ;;
    *) echo "bench/seeds.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
log() { printf '[seeds %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_tool() { # name: PG_BIN, then PATH, then the Debian client
  local t
  for t in "${PG_BIN:+$PG_BIN/$1}" "$(command -v "$1" || true)" /usr/lib/postgresql/*/bin/"$1"; do
    [[ -n $t && -x $t ]] && { echo "$t"; return 0; }
  done
  die "$1 not found (Debian: postgresql-client)"
}
PGBENCH=$(find_tool pgbench)
PSQL=$(find_tool psql)
if [[ ! -f $JAR ]]; then
  log "building $JAR"
  (cd "$ROOT" && mvn -B -q package -DskipTests -Dspotless.check.skip=true -pl demo -am) >&2
fi

OUT=$BENCH_DIR/results/seeds-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/scripts" "$OUT/runs"
DEMO_PID=""
cleanup() {
  local rc=$?
  if [[ -n $DEMO_PID ]] && kill -0 "$DEMO_PID" 2>/dev/null; then
    # SIGTERM, not SIGINT: a background job of a script starts with SIGINT ignored. Either way the
    # demo stops its servers and removes its files.
    kill -TERM "$DEMO_PID" 2>/dev/null || true
    wait "$DEMO_PID" 2>/dev/null || true
  fi
  exit $rc
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN=$(free_port)
log "cryoproxy demo with $MOLECULES molecules (cache off)"
java -jar "$JAR" demo --port "$PORT" --admin-port "$ADMIN" --molecules "$MOLECULES" --no-cache \
  >"$OUT/demo.out" 2>"$OUT/demo.err" &
DEMO_PID=$!
for ((i = 0; i < 1200; i++)); do
  grep -q '^Ctrl-C' "$OUT/demo.out" && break
  kill -0 "$DEMO_PID" 2>/dev/null || die "the demo ended: $(tail -5 "$OUT/demo.err")"
  sleep 0.5
done
grep -q '^Ctrl-C' "$OUT/demo.out" || die "the demo did not start in 10 minutes; see $OUT/demo.err"
PRIMARY=$(sed -nE 's/.*primary 127\.0\.0\.1:([0-9]+),.*/\1/p' "$OUT/demo.out")
REPLICA=$(sed -nE 's/.*replica 127\.0\.0\.1:([0-9]+) .*/\1/p' "$OUT/demo.out")
WORK=$(sed -nE 's/^Files: ([^ ]+) and .*/\1/p' "$OUT/demo.out")
PG_VERSION=$(sed -nE 's/.*PostgreSQL ([0-9.]+):.*/\1/p' "$OUT/demo.out")
export PGPASSWORD_SU=postgres
su_sql() { PGPASSWORD=postgres "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${2:-$PRIMARY}" -U postgres -d cryoprotect -Atc "$1"; }
OWNER=$(su_sql "SELECT md5('cryoprotect-user-1')::uuid")
token() { java -jar "$JAR" token issue --key "$WORK/demo.jwk.json" --iss cryoproxy --aud cryoprotect --ttl 4h "$@"; }
TOKEN_AUTH=$(token --role authenticated --sub "$OWNER")

log "naive copies of the RLS tables (per-row auth.uid(), no helpers, no created_by/GIN/partial indexes)"
su_sql "$(cat <<'EOF'
DROP SCHEMA IF EXISTS naive CASCADE;
CREATE SCHEMA naive;
GRANT USAGE ON SCHEMA naive TO authenticated, service_read;
CREATE TABLE naive.molecules AS
  SELECT id, name, smiles, inchi_key, formula, molecular_weight, is_public, data, created_by,
         created_at, name_search FROM public.molecules;
ALTER TABLE naive.molecules ADD PRIMARY KEY (id);
CREATE TABLE naive.molecular_properties AS SELECT * FROM public.molecular_properties;
ALTER TABLE naive.molecular_properties ADD PRIMARY KEY (id);
CREATE INDEX ON naive.molecular_properties (molecule_id);
CREATE TABLE naive.toxicity_results AS SELECT * FROM public.toxicity_results;
ALTER TABLE naive.toxicity_results ADD PRIMARY KEY (id);
CREATE INDEX ON naive.toxicity_results (molecule_id);
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['molecules', 'molecular_properties', 'toxicity_results'] LOOP
    EXECUTE format('ALTER TABLE naive.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('GRANT SELECT ON naive.%I TO authenticated, service_read', t);
    EXECUTE format('CREATE POLICY %I ON naive.%I FOR SELECT TO service_read USING (true)',
                   t || '_service_read', t);
  END LOOP;
END $$;
-- What RLS tutorials start with: the function called on every row, the parent looked up per row.
CREATE POLICY molecules_visible ON naive.molecules FOR SELECT TO authenticated
  USING (is_public OR created_by = auth.uid());
CREATE POLICY molecular_properties_visible ON naive.molecular_properties FOR SELECT
  TO authenticated
  USING (created_by = auth.uid() OR EXISTS (SELECT 1 FROM naive.molecules m WHERE
         m.id = molecule_id AND (m.is_public OR m.created_by = auth.uid())));
CREATE POLICY toxicity_results_visible ON naive.toxicity_results FOR SELECT TO authenticated
  USING (created_by = auth.uid() OR EXISTS (SELECT 1 FROM naive.molecules m WHERE
         m.id = molecule_id AND (m.is_public OR m.created_by = auth.uid())));
-- The same tables, indexes included, without RLS: what the policies cost.
DROP SCHEMA IF EXISTS norls CASCADE;
CREATE SCHEMA norls;
GRANT USAGE ON SCHEMA norls TO authenticated;
DO $$
DECLARE t text; cols text;
BEGIN
  FOREACH t IN ARRAY ARRAY['molecules', 'molecular_properties', 'toxicity_results',
                           'toxicity_endpoints'] LOOP
    EXECUTE format('CREATE TABLE norls.%I (LIKE public.%I INCLUDING ALL)', t, t);
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols FROM pg_attribute
    WHERE attrelid = format('public.%I', t)::regclass AND attnum > 0 AND NOT attisdropped
      AND attgenerated = '';
    EXECUTE format('INSERT INTO norls.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM public.%I',
                   t, cols, cols, t);
    EXECUTE format('GRANT SELECT ON norls.%I TO authenticated', t);
  END LOOP;
END $$;
ANALYZE naive.molecules, naive.molecular_properties, naive.toxicity_results;
ANALYZE;
EOF
)"
WANT=$(su_sql "SELECT count(*) FROM norls.toxicity_endpoints")
for ((i = 0; i < 600; i++)); do
  [[ $(su_sql "SELECT count(*) FROM norls.toxicity_endpoints" "$REPLICA" 2>/dev/null) == "$WANT" ]] && break
  sleep 0.5
done

# ---- the queries ---------------------------------------------------------------------------
# name | schema-free SQL with :i (a molecule number) and :k (a name word); {s} is public or naive
N=$MOLECULES
write_script() { # file sql
  printf '\\set i random(1, %d)\n\\set j random(1, %d)\n\\set k random(1, 8)\n%s;\n' \
    "$N" "$((N / 3))" "$2" >"$OUT/scripts/$1.sql"
}
WORDS="(ARRAY['glycerol','trehalose','dimethyl','ethylene','sucrose','propanediol','proline','betaine'])[:k]"
declare -A STANDARD=(
  [molecule]="SELECT id, name, formula, molecular_weight, data FROM {s}.molecules WHERE id = md5('molecule-' || :i)::uuid"
  [properties]="SELECT property_name, numeric_value, unit FROM {s}.molecular_properties WHERE molecule_id = md5('molecule-' || :i)::uuid"
  [toxicity]="SELECT endpoint_id, value, active FROM {s}.toxicity_results WHERE molecule_id = md5('molecule-' || :i)::uuid"
  [search]="SELECT id, name FROM {s}.molecules WHERE name_search @@ to_tsquery('simple', $WORDS) ORDER BY name LIMIT 20"
  [mine]="SELECT id, name FROM {s}.molecules WHERE created_by = (SELECT auth.uid()) ORDER BY name LIMIT 50"
  [count]="SELECT count(*) FROM {s}.molecules"
)
# search is the complex one: under RLS it cannot use the GIN index (sql/ V7 says why); searching
# the public catalogue (public_molecules, V7) is the standard form.
ORDER="molecule properties toxicity mine count search"
write_script catalogue "SELECT id, name FROM public.public_molecules WHERE name_search @@ to_tsquery('simple', $WORDS) ORDER BY name LIMIT 20"
for q in $ORDER; do
  write_script "$q.public" "${STANDARD[$q]//\{s\}/public}"
  write_script "$q.naive" "${STANDARD[$q]//\{s\}/naive}"
  write_script "$q.norls" "${STANDARD[$q]//\{s\}/norls}"
done
TOX_BASE="SELECT r.molecule_id, count(DISTINCT e.assay_id) AS assays_tested, count(*) FILTER (WHERE r.active) AS active_results, count(*) AS results, max(r.value) AS max_value, min(r.value) FILTER (WHERE r.active) AS min_active_value FROM norls.toxicity_results r JOIN norls.toxicity_endpoints e ON e.id = r.endpoint_id JOIN norls.molecules m ON m.id = r.molecule_id AND m.is_public"
write_script tox_one.base "$TOX_BASE WHERE r.molecule_id = md5('molecule-' || :j * 3)::uuid GROUP BY r.molecule_id"
write_script tox_one.view "SELECT * FROM public.toxicity_summary WHERE molecule_id = md5('molecule-' || :j * 3)::uuid"
write_script tox_top.base "$TOX_BASE GROUP BY r.molecule_id ORDER BY active_results DESC, max_value DESC LIMIT 20"
write_script tox_top.view "SELECT * FROM public.toxicity_summary ORDER BY active_results DESC, max_value DESC LIMIT 20"
write_script tox_assay.base "SELECT e.assay_id, count(*) FILTER (WHERE r.active) AS active, count(*) AS results FROM norls.toxicity_results r JOIN norls.toxicity_endpoints e ON e.id = r.endpoint_id JOIN norls.molecules m ON m.id = r.molecule_id AND m.is_public GROUP BY e.assay_id ORDER BY e.assay_id"
write_script tox_assay.view "SELECT count(*) FILTER (WHERE active_results > 0) AS with_active, sum(results) AS results, sum(assays_tested) AS assays FROM public.toxicity_summary"
chmod 644 "$OUT"/scripts/*.sql

# Every run logs in with the same `authenticated` token: service_read's statements are audited
# (fsync'd before their answers), which would measure the audit journal, not the database.
run() { # label script rep
  local label=$1 script=$2 rep=$3 user=authenticator
  local prefix="$OUT/runs/$label.$rep"
  (cd "$OUT/runs" && PGPASSWORD=$TOKEN_AUTH timeout $((DURATION + 120)) "$PGBENCH" -n -M simple \
    -h 127.0.0.1 -p "$PORT" -U "$user" -T "$DURATION" -c "$CLIENTS" -j "$CLIENTS" \
    -f "$OUT/scripts/$script.sql" --log --log-prefix="$prefix" cryoprotect >"$prefix.txt" 2>&1) \
    || die "pgbench $label failed: $(tail -3 "$prefix.txt")"
  printf '{"label":"%s","script":"%s","rep":%d,"prefix":"%s"}\n' \
    "$label" "$script" "$rep" "$prefix" >>"$OUT/runs.jsonl"
  log "  $label #$rep: $(awk '/^latency average/{print $4 " ms"}' "$prefix.txt")"
}

log "warm-up"
for q in $ORDER; do
  for s in public naive norls; do
    (cd "$OUT/runs" && PGPASSWORD=$TOKEN_AUTH "$PGBENCH" -n -M simple -h 127.0.0.1 -p "$PORT" \
      -U authenticator -T 1 -c "$CLIENTS" -j "$CLIENTS" -f "$OUT/scripts/$q.$s.sql" cryoprotect \
      >/dev/null 2>&1) || true
  done
done
for ((rep = 1; rep <= REPS; rep++)); do
  log "repetition $rep of $REPS"
  for q in $ORDER; do
    run "$q" "$q.public" "$rep"
    run "$q.norls" "$q.norls" "$rep"
    run "$q.naive" "$q.naive" "$rep"
  done
  run catalogue catalogue "$rep"
  for t in tox_one tox_top tox_assay; do
    run "$t.base" "$t.base" "$rep"
    run "$t.view" "$t.view" "$rep"
  done
done

export OUT MOLECULES DURATION CLIENTS REPS PG_VERSION ORDER
python3 "$BENCH_DIR/lib/seeds_report.py" "$OUT" >"$OUT/report.md" || die "report failed"
cat "$OUT/report.md"
log "report: $OUT/report.md, JSON: $OUT/results.json"
