#!/usr/bin/env bash
# CryoProxy vs PgBouncer vs direct PostgreSQL, in one run on this machine. See bench/README.md.
#
# Starts a throwaway PostgreSQL, PgBouncer and CryoProxy on free ports in a temporary folder, runs
# the same pgbench workloads against all three, then the connection-scale and acquisition
# scenarios against CryoProxy, then pgbench through a JWT login against the same through a password
# login, then cached point reads against a second CryoProxy with the result cache on, then 2,000
# active clients and a TLS client leg through both proxies, and prints a markdown report (stdout)
# and writes a JSON file.
# Progress goes to stderr. Everything it started is stopped on exit, whatever the exit.
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

usage() {
  cat <<'EOF'
usage: bench/run.sh [--quick] [options]

  --quick              smoke run of about two minutes: 2 s runs, 1 repetition, no per-scenario
                       warm-up, pgbench scale 1; every scenario, 10,000 idle clients
  --duration S         seconds per measured pgbench run            (BENCH_DURATION, 10)
  --reps N             repetitions per scenario and target         (BENCH_REPS, 3)
  --warmup S           warm-up seconds per scenario and target     (BENCH_WARMUP, 3)
                       (plus one first warm-up per target of max(2 x warmup, 3) s,
                        BENCH_FIRST_WARMUP)
  --scale N            pgbench -i scale                            (BENCH_SCALE, 10)
  --pool-size N        PgBouncer and CryoProxy pool size           (BENCH_POOL_SIZE, 20)
  --clients N          clients of the throughput scenarios         (BENCH_CLIENTS, 32)
  --idle-clients N     idle connections of the scale scenario      (BENCH_IDLE_CLIENTS, 10000)
  --scale-active N     active clients of the scale scenario        (BENCH_SCALE_ACTIVE, = clients)
  --many-clients N     active clients of the many part             (BENCH_MANY_CLIENTS, 2000)
  --parts LIST         any of pgbench,scale,acquire,jwt,cache,     (BENCH_PARTS, all seven;
                       many,tls                                     PgBouncer for pgbench, many
                                                                    and tls)
  --json PATH          JSON output                                 (BENCH_JSON, OUT/results.json)
  --out DIR            folder for raw outputs and logs             (BENCH_OUT_DIR,
                                                                    bench/results/YYYYmmdd-HHMMSS)
  --build              rebuild the jar in the work tree first (otherwise only when missing)
  --build-ref REF      build the jar from a clean export of git REF (e.g. HEAD) and measure
                       that: uncommitted edits in a shared work tree stay out
  --keep               keep the temporary folder (data dir, configs, logs) for inspection
Environment: PG_BIN (/usr/lib/postgresql/15/bin), CRYOPROXY_JAR (proxy/target/cryoproxy.jar),
CRYOPROXY_JAVA_OPTS (see README), BENCH_IDLE_INTERVAL (60: mean seconds between an idle client's
queries, 0 = never), BENCH_LAT_SAMPLING (0.1: share of transactions pgbench logs for p50/p99).
EOF
}

# ---- parameters -----------------------------------------------------------------------------
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DURATION=${BENCH_DURATION:-10}
REPS=${BENCH_REPS:-3}
WARMUP=${BENCH_WARMUP:-3}
SCALE=${BENCH_SCALE:-10}
POOL_SIZE=${BENCH_POOL_SIZE:-20}
CLIENTS=${BENCH_CLIENTS:-32}
IDLE_CLIENTS=${BENCH_IDLE_CLIENTS:-10000}
IDLE_INTERVAL=${BENCH_IDLE_INTERVAL:-60}
SCALE_ACTIVE=${BENCH_SCALE_ACTIVE:-} # default: CLIENTS, after the flags
MANY_CLIENTS=${BENCH_MANY_CLIENTS:-2000}
LAT_SAMPLING=${BENCH_LAT_SAMPLING:-0.1}
PARTS=${BENCH_PARTS:-pgbench,scale,acquire,jwt,cache,many,tls}
OUT_DIR=${BENCH_OUT_DIR:-}
JSON=${BENCH_JSON:-}
JAR=${CRYOPROXY_JAR:-$ROOT/proxy/target/cryoproxy.jar}
# Why each flag: bench/README.md, "CryoProxy's JVM flags".
JAVA_OPTS=${CRYOPROXY_JAVA_OPTS:--XX:+UseParallelGC -Xms256m -Xmx256m -XX:+AlwaysPreTouch -Dio.netty.leakDetection.level=disabled}
# The caching proxy holds a 256 MB cache (cache.max_size): a heap of its own size, after JAVA_OPTS
CACHE_HEAP=${CRYOPROXY_CACHE_HEAP:--Xms512m -Xmx512m}
FIRST_WARMUP=${BENCH_FIRST_WARMUP:-}
BUILD=0
BUILD_REF=""
KEEP=${BENCH_KEEP:-0}
QUICK=0

for arg in "$@"; do [[ $arg == --quick ]] && QUICK=1; done
# 2 s, not 1: pgbench counts its connection time against -T, and 32 new backends can take a second
if ((QUICK)); then DURATION=2 REPS=1 WARMUP=0 SCALE=1; fi
while (($#)); do
  case $1 in
    --quick) ;;
    --duration) DURATION=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --pool-size) POOL_SIZE=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --idle-clients) IDLE_CLIENTS=$2; shift ;;
    --scale-active) SCALE_ACTIVE=$2; shift ;;
    --many-clients) MANY_CLIENTS=$2; shift ;;
    --parts) PARTS=$2; shift ;;
    --json) JSON=$2; shift ;;
    --out) OUT_DIR=$2; shift ;;
    --build) BUILD=1 ;;
    --build-ref) BUILD_REF=$2; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
SCALE_ACTIVE=${SCALE_ACTIVE:-$CLIENTS}
for v in DURATION REPS WARMUP SCALE POOL_SIZE CLIENTS IDLE_CLIENTS SCALE_ACTIVE MANY_CLIENTS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench/run.sh: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
((DURATION > 0 && REPS > 0 && SCALE > 0 && POOL_SIZE > 0 && CLIENTS > 0 && SCALE_ACTIVE > 0 \
  && MANY_CLIENTS > 0)) \
  || { echo "bench/run.sh: duration, reps, scale, pool size and the client counts must be > 0" >&2; exit 2; }
[[ $LAT_SAMPLING =~ ^(0?\.[0-9]*[1-9][0-9]*|1(\.0*)?)$ ]] \
  || { echo "bench/run.sh: BENCH_LAT_SAMPLING must be in (0, 1], got '$LAT_SAMPLING'" >&2; exit 2; }
FIRST_WARMUP=${FIRST_WARMUP:-$((WARMUP * 2 > 3 ? WARMUP * 2 : 3))}
JWT_PROCS=$((CLIENTS < 8 ? CLIENTS : 8)) # the jwt part's distinct subjects, one pgbench process each
[[ $FIRST_WARMUP =~ ^[0-9]+$ ]] || { echo "bench/run.sh: BENCH_FIRST_WARMUP must be a whole number" >&2; exit 2; }
has_part() { [[ ",$PARTS," == *",$1,"* ]]; }
# the parts that compare with PgBouncer
needs_pgbouncer() { has_part pgbench || has_part many || has_part tls; }
# libpq's default sslmode is prefer: once the proxies offer TLS (the tls part), every other client
# would use it unasked. Plain unless a run says otherwise (pgbench_run's SSLMODE).
export PGSSLMODE=disable

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/$STAMP}
JSON=${JSON:-$OUT_DIR/results.json}
[[ $JSON == /* ]] || JSON=$PWD/$JSON
mkdir -p "$OUT_DIR/pgbench" "$OUT_DIR/acquire" "$OUT_DIR/logs"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
: >"$OUT_DIR/runs.jsonl"

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# ---- processes and clean-up -----------------------------------------------------------------
TMP=""
declare -a STARTED=() # "name pid signal", in start order; stopped in reverse
started() { STARTED+=("$1 $2 $3"); }

stop_one() { # name pid signal
  local name=$1 pid=$2 sig=$3 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name ($pid) did not stop on SIG$sig in 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM ERR # a failing step of the clean-up must not end the clean-up
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    # shellcheck disable=SC2086
    stop_one ${STARTED[i]}
  done
  if [[ -n $TMP && -d $TMP ]]; then
    # keep the servers' logs next to the results before the temporary folder goes
    cp "$TMP"/pg/postgres.log "$TMP"/pgbouncer/pgbouncer.log "$TMP"/cryoproxy/cryoproxy.log \
      "$TMP"/idle.err "$OUT_DIR/logs/" 2>/dev/null
    cp "$TMP"/cryocache/cryoproxy.log "$OUT_DIR/logs/cryocache.log" 2>/dev/null
    if ((KEEP)); then log "kept $TMP"; else rm -rf "$TMP"; fi
  fi
  ((rc == 0)) || log "exit $rc; logs in $OUT_DIR/logs"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

alive() { kill -0 "$1" 2>/dev/null; }
check_alive() {
  alive "$PG_PID" || die "PostgreSQL died; see $OUT_DIR/logs/postgres.log"
  [[ -z ${PGB_PID:-} ]] || alive "$PGB_PID" || die "PgBouncer died; see $OUT_DIR/logs/pgbouncer.log"
  [[ -z ${CP_PID:-} ]] || alive "$CP_PID" || die "CryoProxy died; see $OUT_DIR/logs/cryoproxy.log"
  [[ -z ${CC_PID:-} ]] || alive "$CC_PID" || die "CryoProxy (cache) died; see $OUT_DIR/logs/cryocache.log"
}

# ---- preflight ------------------------------------------------------------------------------
for tool in python3 java timeout setpriv; do
  command -v "$tool" >/dev/null || die "$tool is required and not on PATH"
done
! has_part tls || command -v openssl >/dev/null || die "openssl is required for the tls part and not on PATH"
[[ -x $PG_BIN/initdb && -x $PG_BIN/postgres ]] || die "no PostgreSQL server binaries in PG_BIN=$PG_BIN"
PGBENCH=$PG_BIN/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench) || die "pgbench not found in PG_BIN or PATH"
PSQL=$PG_BIN/psql
[[ -x $PSQL ]] || PSQL=$(command -v psql) || die "psql not found in PG_BIN or PATH"
PG_ISREADY=$PG_BIN/pg_isready
[[ -x $PG_ISREADY ]] || PG_ISREADY=$(command -v pg_isready) || die "pg_isready not found"

# PostgreSQL and PgBouncer refuse to run as root: run them as an unprivileged user.
if (($(id -u) == 0)); then
  RUN_USER=postgres
  id "$RUN_USER" >/dev/null 2>&1 || RUN_USER=nobody
  # setpriv execs, so a background "${AS_USER[@]}" cmd & leaves $! = the server's own pid
  AS_USER=(setpriv --reuid="$RUN_USER" --regid="$(id -g "$RUN_USER")" --init-groups --)
else
  RUN_USER=$(id -un)
  AS_USER=()
fi

# 10,000 client sockets in the idle client and as many in CryoProxy, each in its own process; the
# many part's 2,000 in pgbench and in either proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
declare -a NOTES=()
if has_part scale && [[ $NOFILE != unlimited ]] && ((NOFILE < IDLE_CLIENTS + 1000)); then
  NOTES+=("open-file limit $NOFILE: idle clients lowered from $IDLE_CLIENTS to $((NOFILE - 1000))")
  IDLE_CLIENTS=$((NOFILE - 1000))
  log "WARNING: ${NOTES[-1]}"
fi
if has_part many && [[ $NOFILE != unlimited ]] && ((NOFILE < MANY_CLIENTS + 1000)); then
  NOTES+=("open-file limit $NOFILE: the many part's clients lowered from $MANY_CLIENTS to $((NOFILE - 1000))")
  MANY_CLIENTS=$((NOFILE - 1000))
  log "WARNING: ${NOTES[-1]}"
fi
# both proxies' client limit: the idle crowd or the many part's clients, and room for the rest
MAX_CLIENT_CONN=$(((IDLE_CLIENTS > MANY_CLIENTS ? IDLE_CLIENTS : MANY_CLIENTS) + 1000))

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
python3 "$BENCH_DIR/lib/machine.py" snapshot $$ "$OUT_DIR/logs/cpu-before.json"
ps -eo pid,user,pcpu,rss,etime,args --sort=-pcpu | head -15 >"$OUT_DIR/logs/top-before.txt"
log "load average before: $LOAD_BEFORE (busiest processes in $OUT_DIR/logs/top-before.txt)"

# PgBouncer from the Debian package. Its own service (if the package starts one) listens on the
# packaged port; ours runs from a generated ini on a free port, so the two never meet.
PGB_VERSION="not run"
PGB_PREPARED=0
if needs_pgbouncer && ! command -v pgbouncer >/dev/null; then
  (($(id -u) == 0)) || die "pgbouncer is not installed and installing it needs root"
  log "installing pgbouncer (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; } \
    >"$OUT_DIR/logs/apt.log" 2>&1 || die "apt-get install pgbouncer failed; see $OUT_DIR/logs/apt.log"
fi
version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1) == "$2" ]]; }
if needs_pgbouncer; then
  PGBOUNCER=$(command -v pgbouncer)
  PGB_VERSION=$("$PGBOUNCER" --version | head -1 | awk '{print $2}')
  version_ge "$PGB_VERSION" 1.21 && PGB_PREPARED=1
fi

TMP=$(mktemp -d /tmp/cryobench.XXXXXX)
chmod 755 "$TMP"
cd "$TMP" # a working directory the unprivileged servers can enter

# skipUnitTests: the pom binds surefire's skipTests to it, so -DskipTests alone still runs them
MVN_PACKAGE=(flock /tmp/cryoproxy-mvn.lock mvn -q -B package -DskipTests -DskipUnitTests=true)
if [[ -n $BUILD_REF ]]; then
  # a clean export of one commit: others' uncommitted edits in the work tree stay out of it
  COMMIT=$(git -C "$ROOT" rev-parse --verify --quiet "$BUILD_REF^{commit}") \
    || die "--build-ref: '$BUILD_REF' is not a commit of $ROOT"
  log "building the jar from a clean export of $BUILD_REF (${COMMIT:0:7}), waiting for /tmp/cryoproxy-mvn.lock"
  mkdir -p "$TMP/src"
  git -C "$ROOT" archive "$COMMIT" | tar -x -C "$TMP/src"
  (cd "$TMP/src" && "${MVN_PACKAGE[@]}") >"$OUT_DIR/logs/mvn.log" 2>&1 \
    || die "maven build of $BUILD_REF failed; see $OUT_DIR/logs/mvn.log"
  JAR=$TMP/src/proxy/target/cryoproxy.jar
  GIT_COMMIT="${COMMIT:0:7} (clean export)"
elif ((BUILD)) || [[ ! -f $JAR ]]; then
  [[ $JAR == "$ROOT/proxy/target/cryoproxy.jar" ]] || die "CRYOPROXY_JAR=$JAR does not exist"
  log "building the jar (mvn package, waiting for /tmp/cryoproxy-mvn.lock)"
  (cd "$ROOT" && "${MVN_PACKAGE[@]}") >"$OUT_DIR/logs/mvn.log" 2>&1 \
    || die "maven build failed; see $OUT_DIR/logs/mvn.log"
fi
if [[ -z $BUILD_REF ]]; then
  GIT_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$ROOT" diff --quiet HEAD -- proxy 2>/dev/null || GIT_COMMIT+="+dirty"
fi

# A private copy: another build replacing proxy/target/cryoproxy.jar mid-run must not matter.
cp "$JAR" "$TMP/cryoproxy.jar"
# the jar carries no commit: say when it was built and what the tree was at (or --build-ref)
JAR_BUILT=$(date -r "$JAR" '+%Y-%m-%d %H:%M')
JAR_SHA=$(sha256sum "$TMP/cryoproxy.jar" | cut -c1-12)

read -r PG_PORT PGB_PORT CP_PORT ADMIN_PORT CC_PORT CC_ADMIN_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
log "ports: postgres $PG_PORT, pgbouncer $PGB_PORT, cryoproxy $CP_PORT, cryoproxy admin $ADMIN_PORT"

wait_ready() { # name port pid log
  local i
  for ((i = 0; i < 600; i++)); do
    "$PG_ISREADY" -q -h 127.0.0.1 -p "$2" -t 1 && return 0
    alive "$3" || die "$1 exited during start-up:"$'\n'"$(tail -20 "$4")"
    sleep 0.1
  done
  die "$1 not accepting connections on port $2 after 60 s; see $4"
}

# ---- PostgreSQL -----------------------------------------------------------------------------
mkdir -p "$TMP/pg"
chown "$RUN_USER:" "$TMP/pg"
PGDATA=$TMP/pg/data
log "initdb ($($PG_BIN/postgres --version))"
"${AS_USER[@]}" "$PG_BIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --no-sync \
  >"$OUT_DIR/logs/initdb.log" 2>&1 || die "initdb failed; see $OUT_DIR/logs/initdb.log"
MAX_CONN=$((CLIENTS + 4 * POOL_SIZE + 200))
cat >>"$PGDATA/postgresql.conf" <<EOF
# bench/run.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$TMP/pg'
max_connections = $MAX_CONN
shared_buffers = 256MB
synchronous_commit = off
logging_collector = off
EOF
"${AS_USER[@]}" "$PG_BIN/postgres" -D "$PGDATA" >"$TMP/pg/postgres.log" 2>&1 &
PG_PID=$!
started postgres "$PG_PID" INT
wait_ready PostgreSQL "$PG_PORT" "$PG_PID" "$TMP/pg/postgres.log"
export PGCONNECT_TIMEOUT=10
"$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE bench" \
  >/dev/null || die "CREATE DATABASE failed"
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U postgres bench \
  >"$OUT_DIR/logs/pgbench-init.log" 2>&1 || die "pgbench -i failed; see $OUT_DIR/logs/pgbench-init.log"

# ---- TLS certificate ------------------------------------------------------------------------
# The tls part: a self-signed certificate for both proxies' client leg. PgBouncer runs as RUN_USER
# and must read the key (CryoProxy runs as root); CryoProxy (Netty) reads a PKCS#8 PEM key only,
# which OpenSSL 3 writes by default.
if has_part tls; then
  mkdir -p "$TMP/tls"
  (cd "$TMP/tls" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 2 -subj /CN=localhost -keyout server.key -out server.crt) >"$OUT_DIR/logs/openssl.log" 2>&1 \
    || die "openssl req failed; see $OUT_DIR/logs/openssl.log"
  grep -q -- '-----BEGIN PRIVATE KEY-----' "$TMP/tls/server.key" \
    || die "$TMP/tls/server.key is not a PKCS#8 PEM key (an OpenSSL older than 3?)"
  chown -R "$RUN_USER:" "$TMP/tls"
  chmod 600 "$TMP/tls/server.key"
fi

# ---- PgBouncer ------------------------------------------------------------------------------
# The pgbench, many and tls parts compare with PgBouncer.
if needs_pgbouncer; then
  mkdir -p "$TMP/pgbouncer"
  PGB_PREPARED_LINE="# max_prepared_statements: PgBouncer $PGB_VERSION has no such setting (1.21+)"
  ((PGB_PREPARED)) && PGB_PREPARED_LINE="max_prepared_statements = 1000"
  # TLS when the client asks (allow): plain clients, all but the tls part's, are unaffected
  PGB_TLS_LINES="; client TLS: only for the tls part"
  has_part tls && PGB_TLS_LINES="client_tls_sslmode = allow
client_tls_key_file = $TMP/tls/server.key
client_tls_cert_file = $TMP/tls/server.crt"
  printf '"postgres" ""\n' >"$TMP/pgbouncer/userlist.txt"
  cat >"$TMP/pgbouncer/pgbouncer.ini" <<EOF
; bench/run.sh
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $TMP/pgbouncer/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $MAX_CLIENT_CONN
ignore_startup_parameters = extra_float_digits
$PGB_PREPARED_LINE
$PGB_TLS_LINES
logfile = $TMP/pgbouncer/pgbouncer.log
pidfile = $TMP/pgbouncer/pgbouncer.pid
EOF
  chown -R "$RUN_USER:" "$TMP/pgbouncer"
  "${AS_USER[@]}" "$PGBOUNCER" "$TMP/pgbouncer/pgbouncer.ini" >>"$TMP/pgbouncer/stderr.log" 2>&1 &
  PGB_PID=$!
  started pgbouncer "$PGB_PID" TERM
  wait_ready PgBouncer "$PGB_PORT" "$PGB_PID" "$TMP/pgbouncer/pgbouncer.log"
  log "PgBouncer $PGB_VERSION running (pid $PGB_PID)"
fi

# ---- CryoProxy ------------------------------------------------------------------------------
mkdir -p "$TMP/cryoproxy"
# The jwt part: tokens of role service_role log in as authenticator and run as service_read, the
# same server role (and so the same pool) as the password login they are compared with.
AUTH_YAML="auth: { type: trust }"
if has_part jwt; then
  java -jar "$TMP/cryoproxy.jar" keys generate --alg ES256 --out "$TMP/keys" --kid bench \
    >"$OUT_DIR/logs/keys.log" 2>&1 || die "cryoproxy keys generate failed; see $OUT_DIR/logs/keys.log"
  # the proxy logs in to PostgreSQL as the mapped role with its secret (PostgreSQL trusts anyway)
  printf '"service_read" "bench"\n' >"$TMP/cryoproxy/users.txt"
  AUTH_YAML="auth:
  type: trust
  users_file: $TMP/cryoproxy/users.txt
  jwt:
    users: authenticator
    allow_plaintext: loopback
    jwks_file: $TMP/keys/jwks.json
    algorithms: ES256
    issuer: cryobench
    audience: cryobench
    claims_key_file: $TMP/keys/claims.key
    roles: { service_role: service_read }"
fi
# the tls part: TLS when the client asks (allow), as PgBouncer's client_tls_sslmode
TLS_YAML="# tls: only for the tls part"
has_part tls && TLS_YAML="tls:
  client: { mode: allow, cert_file: $TMP/tls/server.crt, key_file: $TMP/tls/server.key }"
cat >"$TMP/cryoproxy/cryoproxy.yaml" <<EOF
# bench/run.sh
listen: { host: 127.0.0.1, port: $CP_PORT }
admin: { host: 127.0.0.1, port: $ADMIN_PORT }
$AUTH_YAML
migrate: { user: postgres }
pool: { mode: transaction, size: $POOL_SIZE }
limits: { max_client_connections: $MAX_CLIENT_CONN, shutdown_timeout: 2s }
$TLS_YAML
databases:
  bench: { primary: { host: 127.0.0.1, port: $PG_PORT } }
  scale: { dbname: bench, pool_size: 20, primary: { host: 127.0.0.1, port: $PG_PORT } }
  acq_below: { dbname: bench, pool_size: 20, primary: { host: 127.0.0.1, port: $PG_PORT } }
  acq_sat: { dbname: bench, pool_size: 8, primary: { host: 127.0.0.1, port: $PG_PORT } }
EOF
if has_part jwt; then
  # the roles, the auth schema and the claims key, as a user makes them (README, JWT logins)
  java -jar "$TMP/cryoproxy.jar" migrate --config "$TMP/cryoproxy/cryoproxy.yaml" \
    --claims-key "$TMP/keys/claims.key" >"$OUT_DIR/logs/migrate.log" 2>&1 \
    || die "cryoproxy migrate failed; see $OUT_DIR/logs/migrate.log"
  "$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench \
    -c "GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO service_read" >/dev/null \
    || die "GRANT to service_read failed"
  # One token per pgbench process of the split scenario (distinct subjects), the first also for
  # the one-process scenario; they outlive any run.
  declare -a TOKENS=()
  for ((i = 0; i < JWT_PROCS; i++)); do
    TOKENS+=("$(java -jar "$TMP/cryoproxy.jar" token issue --key "$TMP/keys/bench.jwk.json" \
      --role service_role --sub "bench-$i" --ttl 4h --iss cryobench --aud cryobench)") \
      || die "cryoproxy token issue failed"
  done
fi
# shellcheck disable=SC2086
java $JAVA_OPTS -jar "$TMP/cryoproxy.jar" run --config "$TMP/cryoproxy/cryoproxy.yaml" \
  >"$TMP/cryoproxy/cryoproxy.log" 2>&1 &
CP_PID=$!
started cryoproxy "$CP_PID" TERM
wait_ready CryoProxy "$CP_PORT" "$CP_PID" "$TMP/cryoproxy/cryoproxy.log"
log "CryoProxy (jar built $JAR_BUILT, sha256 $JAR_SHA, tree at $GIT_COMMIT) running (pid $CP_PID): $JAVA_OPTS"

# The cache part: a second CryoProxy, the same but for the result cache on pgbench_accounts, whose
# invalidation trigger (sql/ V4) is installed as a user would.
CC_PID=""
if has_part cache; then
  mkdir -p "$TMP/cryocache"
  sed -e "s/port: $CP_PORT }/port: $CC_PORT }/" -e "s/port: $ADMIN_PORT }/port: $CC_ADMIN_PORT }/" \
    "$TMP/cryoproxy/cryoproxy.yaml" >"$TMP/cryocache/cryoproxy.yaml"
  cat >>"$TMP/cryocache/cryoproxy.yaml" <<EOF
cache:
  enabled: true
  max_size: 256mb
  rules:
    - { tables: [public.pgbench_accounts], ttl: 300s }
EOF
  java -jar "$TMP/cryoproxy.jar" migrate --config "$TMP/cryocache/cryoproxy.yaml" \
    >"$OUT_DIR/logs/migrate-cache.log" 2>&1 \
    || die "cryoproxy migrate failed; see $OUT_DIR/logs/migrate-cache.log"
  "$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d bench \
    -c "SELECT cryoproxy.enable_cache_invalidation('pgbench_accounts')" >/dev/null \
    || die "enable_cache_invalidation failed"
  # shellcheck disable=SC2086
  java $JAVA_OPTS $CACHE_HEAP -jar "$TMP/cryoproxy.jar" run --config "$TMP/cryocache/cryoproxy.yaml" \
    >"$TMP/cryocache/cryoproxy.log" 2>&1 &
  CC_PID=$!
  started cryocache "$CC_PID" TERM
  wait_ready "CryoProxy (cache on)" "$CC_PORT" "$CC_PID" "$TMP/cryocache/cryoproxy.log"
  log "CryoProxy with the result cache running (pid $CC_PID)"
fi

scrape() { # file
  curl -fsS --max-time 10 "http://127.0.0.1:$ADMIN_PORT/metrics" -o "$1" \
    || die "could not scrape CryoProxy's /metrics on port $ADMIN_PORT"
}

# ---- pgbench runs ---------------------------------------------------------------------------
cpu_ticks() { # pid -> utime+stime of the whole process, in clock ticks
  [[ -n $1 ]] || return 0
  awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}
NPROC=$(nproc)
threads_for() { echo $(($1 < NPROC ? $1 : NPROC)); }
# password and jwt: CryoProxy, logged in as service_read by password (trust) or by token
port_of() { case $1 in direct) echo "$PG_PORT" ;; pgbouncer) echo "$PGB_PORT" ;; cache) echo "$CC_PORT" ;; *) echo "$CP_PORT" ;; esac; }
pid_of() { case $1 in direct) echo "" ;; pgbouncer) echo "$PGB_PID" ;; cache) echo "$CC_PID" ;; *) echo "$CP_PID" ;; esac; }
user_of() { case $1 in password) echo service_read ;; jwt) echo authenticator ;; *) echo postgres ;; esac; }
token_of() { [[ $1 != jwt ]] || echo "${TOKENS[$2]}"; } # target process-number
FAILED=0

PROCS=1 # pgbench processes a run is split over (the jwt part's distinct subjects)
SSLMODE=disable # libpq's sslmode of the runs: the tls part's require TLS
pgbench_run() { # out seconds target db clients args... ; sets RC
  local out=$1 secs=$2 target=$3 db=$4 clients=$5
  shift 5
  RC=0
  if ((PROCS == 1)); then
    # LATLOG (set by measure): a sample of the transactions' latencies, for p50 and p99
    local latlog=()
    [[ -z ${LATLOG:-} ]] || latlog=(-l --log-prefix "$LATLOG" --sampling-rate "$LAT_SAMPLING")
    PGSSLMODE=$SSLMODE PGPASSWORD=$(token_of "$target" 0) timeout --kill-after=10 $((secs + 120)) \
      "$PGBENCH" -h 127.0.0.1 -p "$(port_of "$target")" -U "$(user_of "$target")" -n -T "$secs" \
      -c "$clients" -j "$(threads_for "$clients")" "${latlog[@]+"${latlog[@]}"}" "$@" "$db" \
      >"$out" 2>&1 || RC=$?
    return 0
  fi
  # PROCS processes side by side, each with its own token; one pgbench-style summary of them all
  local i rc pids=()
  for ((i = 0; i < PROCS; i++)); do
    PGSSLMODE=$SSLMODE PGPASSWORD=$(token_of "$target" "$i") timeout --kill-after=10 $((secs + 120)) \
      "$PGBENCH" -h 127.0.0.1 -p "$(port_of "$target")" -U "$(user_of "$target")" -n -T "$secs" \
      -c $((clients / PROCS)) -j 1 "$@" "$db" >"$out.$i" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do
    rc=0
    wait "$i" || rc=$?
    ((rc == 0)) || RC=$rc
  done
  local parts=()
  for ((i = 0; i < PROCS; i++)); do parts+=("$out.$i"); done
  python3 "$BENCH_DIR/lib/report.py" merge "$out" "${parts[@]}" || RC=1
}

measure() { # scenario label target db clients rep args...
  local scenario=$1 label=$2 target=$3 db=$4 clients=$5 rep=$6
  shift 6
  check_alive
  local file=pgbench/$scenario.$target.$rep.txt pid before after ticks=null
  # the measured run logs its transactions (pgbench_run); warm-ups do not
  local LATLOG=$OUT_DIR/pgbench/$scenario.$target.$rep.lat quantiles
  pid=$(pid_of "$target")
  before=$(cpu_ticks "$pid")
  pgbench_run "$OUT_DIR/$file" "$DURATION" "$target" "$db" "$clients" "$@"
  after=$(cpu_ticks "$pid")
  [[ -z $pid ]] || ticks=$((after - before))
  quantiles=$(python3 "$BENCH_DIR/lib/report.py" latency "$LATLOG") \
    || quantiles='{"p50_ms":null,"p99_ms":null,"lat_samples":0}'
  rm -f -- "$LATLOG".* # megabytes per run: the quantiles are all the report needs
  printf '{"scenario":"%s","label":"%s","target":"%s","rep":%d,"clients":%d,"rc":%d,"file":"%s","cpu_ticks":%s,%s}\n' \
    "$scenario" "$label" "$target" "$rep" "$clients" "$RC" "$file" "$ticks" "${quantiles:1:-1}" >>"$OUT_DIR/runs.jsonl"
  local tps lat p99
  tps=$(awk '/^tps = /{printf "%.0f", $3}' "$OUT_DIR/$file")
  lat=$(awk '/^latency average = /{print $4}' "$OUT_DIR/$file")
  p99=$(sed -n 's/.*"p99_ms":\([0-9.][0-9.]*\).*/, p99 \1 ms/p' <<<"$quantiles")
  if ((RC == 0)) && [[ -n $tps ]]; then
    log "  $scenario #$rep $target: $tps tps, $lat ms$p99"
  else
    FAILED=$((FAILED + 1))
    local why
    why=$(grep -m1 -iE 'error|fatal|abort' "$OUT_DIR/$file") \
      || { ((RC != 0)) && why=$(tail -1 "$OUT_DIR/$file"); } \
      || why="no transaction finished within $DURATION s (slow connections? a longer --duration helps)"
    log "  $scenario #$rep $target: FAILED (exit $RC): $why"
  fi
}

warmup() { # seconds target db clients args...
  local secs=$1 target=$2 db=$3 clients=$4
  shift 4
  ((secs > 0)) || return 0
  check_alive
  pgbench_run "$TMP/warmup.txt" "$secs" "$target" "$db" "$clients" "$@"
  ((RC == 0)) || log "  warm-up via $target failed (exit $RC): $(tail -1 "$TMP/warmup.txt")"
}

declare -A UNSUPPORTED=()
if has_part pgbench; then
  # key | label | clients | pgbench arguments
  SCENARIOS=(
    "select_simple_c1|-S -M simple, 1 client|1|-S -M simple"
    "select_simple_c$CLIENTS|-S -M simple, $CLIENTS clients|$CLIENTS|-S -M simple"
    "select_extended_c1|-S -M extended, 1 client|1|-S -M extended"
    "select_extended_c$CLIENTS|-S -M extended, $CLIENTS clients|$CLIENTS|-S -M extended"
    "select_prepared_c1|-S -M prepared, 1 client|1|-S -M prepared"
    "select_prepared_c$CLIENTS|-S -M prepared, $CLIENTS clients|$CLIENTS|-S -M prepared"
    "tpcb_c1|TPC-B-like, 1 client|1|-M simple"
    "tpcb_c$CLIENTS|TPC-B-like, $CLIENTS clients|$CLIENTS|-M simple"
    "connect_c8|-S -C (connect per transaction), 8 clients|8|-S -M simple -C"
  )
  log "pgbench: ${#SCENARIOS[@]} scenarios x 3 targets x $REPS repetitions of ${DURATION} s (+${WARMUP} s warm-up)"
  # One longer warm-up per target first: JIT-compiles CryoProxy's hot path, fills both pools and
  # PostgreSQL's buffers, whatever the per-scenario warm-up is.
  for target in direct pgbouncer cryoproxy; do
    log "warm-up: $target, ${FIRST_WARMUP} s of -S -M simple -c $CLIENTS"
    warmup "$FIRST_WARMUP" "$target" bench "$CLIENTS" -S -M simple
  done
  for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r key label clients args <<<"$s"
    read -ra argv <<<"$args"
    targets=(direct pgbouncer cryoproxy)
    if [[ $args == *prepared* ]] && ((!PGB_PREPARED)); then
      UNSUPPORTED[$key]="PgBouncer $PGB_VERSION has no prepared-statement support in transaction mode (1.21+)"
      targets=(direct cryoproxy)
    fi
    log "$label"
    for ((rep = 1; rep <= REPS; rep++)); do
      for target in "${targets[@]}"; do
        ((rep > 1)) || warmup "$WARMUP" "$target" bench "$clients" "${argv[@]}"
        measure "$key" "$label" "$target" bench "$clients" "$rep" "${argv[@]}"
      done
    done
  done
fi

rss_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$CP_PID/status"; }
heap_used() { # bytes of Java heap in use, from /metrics
  scrape "$TMP/heap.prom"
  awk '/^jvm_memory_used_bytes\{.*area="heap"/ {s += $2} END {printf "%.0f", s}' "$TMP/heap.prom"
}
settle_memory() { # full GC, so RSS and heap show what is live rather than garbage
  if command -v jcmd >/dev/null; then
    jcmd "$CP_PID" GC.run >/dev/null 2>&1 || log "jcmd GC.run failed; memory includes garbage"
  fi
  sleep 1
}

if has_part scale; then
  log "connection scale: $IDLE_CLIENTS idle clients through CryoProxy (pool 20), $SCALE_ACTIVE clients -S"
  # at least 1 s: opens the scale pool's server connections before anything is measured
  warmup $((WARMUP > 0 ? WARMUP : 1)) cryoproxy scale "$SCALE_ACTIVE" -S -M simple
  for ((rep = 1; rep <= REPS; rep++)); do
    measure scale_baseline "scale: $SCALE_ACTIVE clients -S, no idle clients" cryoproxy scale "$SCALE_ACTIVE" "$rep" \
      -S -M simple
  done
  settle_memory
  RSS_BEFORE=$(rss_kb VmRSS)
  HEAP_BEFORE=$(heap_used)
  python3 "$BENCH_DIR/lib/idle_clients.py" --port "$CP_PORT" --database scale \
    --count "$IDLE_CLIENTS" --interval "$IDLE_INTERVAL" --status "$TMP/idle.status" \
    >"$TMP/idle.out" 2>"$TMP/idle.err" &
  IDLE_PID=$!
  started idle_clients "$IDLE_PID" TERM
  for ((i = 0; i < 3000; i++)); do
    [[ -s $TMP/idle.status ]] && break
    alive "$IDLE_PID" || die "idle client exited early: $(tail -5 "$TMP/idle.err")"
    check_alive
    sleep 0.1
  done
  [[ -s $TMP/idle.status ]] || die "idle clients not all logged in after 300 s: $(tail -1 "$TMP/idle.err")"
  IDLE_STATUS=$(cat "$TMP/idle.status")
  log "idle clients: $IDLE_STATUS"
  sleep 2
  settle_memory
  RSS_WITH=$(rss_kb VmRSS)
  HEAP_WITH=$(heap_used)
  CONNECTED=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connected"])' "$TMP/idle.status")
  warmup "$WARMUP" cryoproxy scale "$SCALE_ACTIVE" -S -M simple
  # the idle client's own CPU competes with the active clients on a small machine: measure it
  IDLE_T0=$(cpu_ticks "$IDLE_PID") CROWD_NS0=$(date +%s%N)
  for ((rep = 1; rep <= REPS; rep++)); do
    measure scale_crowd "scale: $SCALE_ACTIVE clients -S, with idle clients" cryoproxy scale "$SCALE_ACTIVE" "$rep" \
      -S -M simple
  done
  IDLE_TICKS=$(($(cpu_ticks "$IDLE_PID") - IDLE_T0)) CROWD_MS=$((($(date +%s%N) - CROWD_NS0) / 1000000))
  HWM=$(rss_kb VmHWM)
  stop_one idle_clients "$IDLE_PID" TERM
  IDLE_FINAL=$(cat "$TMP/idle.status")
  # the baseline again, after the crowd: with the runs before it, drift on a shared machine
  # lands on both sides of the comparison
  for ((rep = REPS + 1; rep <= 2 * REPS; rep++)); do
    measure scale_baseline "scale: $SCALE_ACTIVE clients -S, no idle clients" cryoproxy scale "$SCALE_ACTIVE" "$rep" \
      -S -M simple
  done
  log "RSS $((RSS_BEFORE / 1024)) MiB -> $((RSS_WITH / 1024)) MiB with $CONNECTED idle clients (peak $((HWM / 1024)) MiB)"
  cat >"$OUT_DIR/scale.json" <<EOF
{"idle_target": $IDLE_CLIENTS, "idle_interval_seconds": $IDLE_INTERVAL, "pool_size": 20,
 "active_clients": $SCALE_ACTIVE, "rss_before_kb": $RSS_BEFORE, "rss_with_kb": $RSS_WITH, "hwm_kb": $HWM,
 "heap_before_bytes": $HEAP_BEFORE, "heap_with_bytes": $HEAP_WITH,
 "rss_per_conn_bytes": $(((CONNECTED > 0) ? (RSS_WITH - RSS_BEFORE) * 1024 / CONNECTED : 0)),
 "heap_per_conn_bytes": $(((CONNECTED > 0) ? (HEAP_WITH - HEAP_BEFORE) / CONNECTED : 0)),
 "idle_client_cpu_ticks": $IDLE_TICKS, "crowd_runs_ms": $CROWD_MS,
 "idle_status": $IDLE_STATUS, "idle_final": $IDLE_FINAL}
EOF
fi

ACQ_RUNS="[]"
if has_part acquire; then
  ACQ_RUNS="["
  # name | database | clients | pool
  for a in "below|acq_below|4|20" "saturated|acq_sat|64|8"; do
    IFS='|' read -r name db clients pool <<<"$a"
    log "acquisition, $name: $clients clients over a pool of $pool"
    # the warm-up opens the pool's connections, so their login is not counted as waiting
    warmup $((WARMUP > 0 ? WARMUP : 1)) cryoproxy "$db" "$clients" -S -M simple
    scrape "$OUT_DIR/acquire/$name.before.prom"
    measure "acquire_$name" "acquisition $name" cryoproxy "$db" "$clients" 1 -S -M simple
    scrape "$OUT_DIR/acquire/$name.after.prom"
    [[ $ACQ_RUNS == "[" ]] || ACQ_RUNS+=","
    ACQ_RUNS+="{\"name\":\"$name\",\"label\":\"$clients clients, pool $pool\",\"database\":\"$db\",\"clients\":$clients,\"pool\":$pool}"
  done
  ACQ_RUNS+="]"
fi

# One scenario through TARGETS, interleaved per repetition, one warm-up per target (at least 1 s:
# it may be the first run through a pool) before the first: key label clients "targets" args...
interleaved() {
  local key=$1 label=$2 clients=$3 targets=$4 rep target
  shift 4
  for ((rep = 1; rep <= REPS; rep++)); do
    for target in $targets; do
      ((rep > 1)) || warmup $((WARMUP > 0 ? WARMUP : 1)) "$target" bench "$clients" "$@"
      measure "$key" "$label" "$target" bench "$clients" "$rep" "$@"
    done
  done
}

if has_part jwt; then
  # Issue #14: -S through a JWT login within 10 % of the same through a password login, same
  # pool. One token: its claims stay applied on the server connections. JWT_PROCS tokens of
  # distinct subjects (and as many processes for the password login, so both runs have the same
  # shape): a checkout often lands where another subject's claims are, and sets the client's.
  JWT_SPLIT_CLIENTS=$((CLIENTS / JWT_PROCS * JWT_PROCS))
  log "jwt: -S -M simple through a JWT login vs a password login (service_read, pool $POOL_SIZE)"
  for j in "jwt_one_c$CLIENTS|-S, $CLIENTS clients, one token|$CLIENTS|1" \
    "jwt_subjects_c$JWT_SPLIT_CLIENTS|-S, $JWT_SPLIT_CLIENTS clients, $JWT_PROCS subjects|$JWT_SPLIT_CLIENTS|$JWT_PROCS"; do
    IFS='|' read -r key label clients PROCS <<<"$j"
    log "$label"
    interleaved "$key" "$label" "$clients" "password jwt" -S -M simple
  done
  PROCS=1
fi

if has_part cache; then
  # Issue #15: point reads of pgbench_accounts, 90 % of them over 1,000 hot keys and 10 % over
  # 9,000 more, through the cache against direct PostgreSQL and the cache-less CryoProxy; and a
  # workload of all misses (every text unique) against the cache-less CryoProxy.
  mkdir -p "$OUT_DIR/cache"
  cat >"$TMP/cache_hot.sql" <<'EOF'
\set r random(1, 100)
\if :r <= 90
\set aid random(1, 1000)
\else
\set aid random(1001, 10000)
\endif
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
EOF
  cat >"$TMP/cache_miss.sql" <<EOF
\\set aid random(1, $((SCALE * 100000)))
\\set n random(1, 2000000000)
SELECT abalance, :n AS n FROM pgbench_accounts WHERE aid = :aid;
EOF
  chmod 644 "$TMP"/cache_*.sql
  for c in "cache_hot_c$CLIENTS|point reads, 90 % on 1,000 hot keys, $CLIENTS clients|hot|direct cryoproxy cache" \
    "cache_miss_c$CLIENTS|point reads, every text unique (all misses), $CLIENTS clients|miss|cryoproxy cache"; do
    IFS='|' read -r key label script targets <<<"$c"
    log "cache: $label"
    for target in $targets; do
      warmup "$WARMUP" "$target" bench "$CLIENTS" -M simple -f "$TMP/cache_$script.sql"
    done
    curl -fsS --max-time 10 "http://127.0.0.1:$CC_ADMIN_PORT/metrics" \
      -o "$OUT_DIR/cache/$key.before.prom" || die "could not scrape the caching CryoProxy"
    for ((rep = 1; rep <= REPS; rep++)); do
      for target in $targets; do
        measure "$key" "$label" "$target" bench "$CLIENTS" "$rep" -M simple -f "$TMP/cache_$script.sql"
      done
    done
    curl -fsS --max-time 10 "http://127.0.0.1:$CC_ADMIN_PORT/metrics" \
      -o "$OUT_DIR/cache/$key.after.prom" || die "could not scrape the caching CryoProxy"
  done
fi

if has_part many; then
  # Issue #17: MANY_CLIENTS active clients on a pool of POOL_SIZE, so nearly all of them wait for
  # a server connection at any moment: p99/p50 shows how evenly the waits are shared out. Not
  # against direct PostgreSQL: its max_connections is far below that many clients.
  key=many_c$MANY_CLIENTS label="-S -M simple, $MANY_CLIENTS clients"
  log "many: $label through PgBouncer and CryoProxy (pool $POOL_SIZE)"
  interleaved "$key" "$label" "$MANY_CLIENTS" "pgbouncer cryoproxy" -S -M simple
fi

if has_part tls; then
  # Issue #17: -S through both proxies with TLS between pgbench and the proxy (the server leg
  # stays plain). sslmode=require: a proxy that did not offer TLS fails the run instead of
  # measuring a plain one.
  key=tls_c$CLIENTS label="-S -M simple, $CLIENTS clients, TLS client leg"
  log "tls: $label"
  SSLMODE=require
  interleaved "$key" "$label" "$CLIENTS" "pgbouncer cryoproxy" -S -M simple
  SSLMODE=disable
fi

check_alive
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
python3 "$BENCH_DIR/lib/machine.py" snapshot $$ "$OUT_DIR/logs/cpu-after.json"
CPU_SHARE=$(python3 "$BENCH_DIR/lib/machine.py" share "$OUT_DIR/logs/cpu-before.json" "$OUT_DIR/logs/cpu-after.json")
log "load average after: $LOAD_AFTER; CPU during the run: $CPU_SHARE"

# ---- report ---------------------------------------------------------------------------------
UNSUP_JSON="{"
for k in "${!UNSUPPORTED[@]}"; do
  [[ $UNSUP_JSON == "{" ]] || UNSUP_JSON+=","
  UNSUP_JSON+="\"$k\":{\"pgbouncer\":\"${UNSUPPORTED[$k]}\"}"
done
UNSUP_JSON+="}"
! has_part pgbench || ((PGB_PREPARED)) || NOTES+=("PgBouncer $PGB_VERSION cannot run -M prepared in transaction mode (needs 1.21+): those cells are 'unsupported'")
export STAMP DURATION REPS WARMUP FIRST_WARMUP SCALE POOL_SIZE CLIENTS IDLE_CLIENTS SCALE_ACTIVE MANY_CLIENTS \
  IDLE_INTERVAL LAT_SAMPLING PARTS JAVA_OPTS LOAD_BEFORE LOAD_AFTER CPU_SHARE GIT_COMMIT JAR_SHA JAR_BUILT \
  PGB_VERSION UNSUP_JSON ACQ_RUNS PG_BIN
NOTES_TEXT=$(printf '%s\n' "${NOTES[@]+"${NOTES[@]}"}")
export NOTES_TEXT
python3 - "$OUT_DIR/meta.json" <<'EOF'
import json, os, platform, subprocess, sys
e = os.environ
def cmd(*a):
    try:
        r = subprocess.run(a, capture_output=True, text=True)
        return r.stdout + r.stderr
    except OSError:
        return ""
mem = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
pg = cmd(os.path.join(e["PG_BIN"], "postgres"), "--version").strip()
java = cmd("java", "-version").splitlines()[0]
meta = {
    "started": e["STAMP"],
    "params": {k.lower(): int(e[k]) for k in ("DURATION", "REPS", "WARMUP", "FIRST_WARMUP", "SCALE", "POOL_SIZE",
                                              "CLIENTS", "IDLE_CLIENTS", "SCALE_ACTIVE", "MANY_CLIENTS")}
              | {"idle_interval": float(e["IDLE_INTERVAL"]), "lat_sampling": float(e["LAT_SAMPLING"]),
                 "parts": e["PARTS"]},
    "machine": f"{os.cpu_count()} vCPU ({cpu}), {int(mem) / 1024 / 1024:.1f} GiB RAM, "
               f"Linux {platform.release()}",
    "versions": f"{pg}; PgBouncer {e['PGB_VERSION']}; {java}; CryoProxy jar built "
                f"{e['JAR_BUILT']} (sha256 {e['JAR_SHA']}…), tree at {e['GIT_COMMIT']}",
    "java_opts": e["JAVA_OPTS"],
    "load_before": e["LOAD_BEFORE"], "load_after": e["LOAD_AFTER"],
    "cpu": json.loads(e["CPU_SHARE"]),
    "notes": [n for n in e["NOTES_TEXT"].splitlines() if n],
    "unsupported": json.loads(e["UNSUP_JSON"]),
    "acquire_runs": json.loads(e["ACQ_RUNS"]),
    "clk_tck": os.sysconf("SC_CLK_TCK"),
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
python3 "$BENCH_DIR/lib/report.py" "$OUT_DIR" "$JSON" >"$OUT_DIR/report.md" \
  || die "report failed"
cat "$OUT_DIR/report.md"
log "report: $OUT_DIR/report.md, JSON: $JSON"
((FAILED == 0)) || die "$FAILED pgbench runs failed (marked FAIL or * in the table); outputs in $OUT_DIR/pgbench"
