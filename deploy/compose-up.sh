#!/usr/bin/env bash
# Brings the compose stack (docker-compose.yml) up under podman-compose and demonstrates that it
# works, then tears it down:
#   1. the replica streams from the primary (pg_stat_replication on the primary);
#   2. the one-shot migrate service completed with exit status 0;
#   3. the proxy is healthy (its container health check, and /health/ready on the published
#      admin port answers 200);
#   4. a JDBC query through the proxy's published port works, and reads reach the replica
#      (inet_server_addr() of routed reads against the containers' addresses; psql as well);
#   5. Prometheus scrapes the proxy (target up, through its HTTP API) with the alert rules loaded
#      (/api/v1/rules), and the proxy's per-route query counters are in Prometheus.
#
# Usage: deploy/compose-up.sh [options]
#   --keep              leave the stack running (tear it down later with: deploy/compose-up.sh --down)
#   --down              only tear down a stack left by --keep (containers, network, volumes)
#   --grafana           also start Grafana (needs a Grafana image; none can be built here)
#   --seed              run the seed profile (SELECT cryoprotect.generate(100000)) before the proxy
#   --load SECONDS      run the load profile (pgbench through the proxy) for SECONDS and show the
#                       per-route query rates in Prometheus afterwards
#   --rebuild-standins  build the stand-in images again even if they exist
#   --pull              try to pull missing registry images before falling back to stand-ins
#
# Images. Every image of the stack is read from the environment or .env (POSTGRES_IMAGE,
# PROMETHEUS_IMAGE, GRAFANA_IMAGE, MAVEN_IMAGE, JRE_IMAGE, CRYOPROXY_IMAGE), with the compose
# file's defaults. When an image is not in local storage (and --pull did not bring it), this
# script builds a stand-in from Debian bookworm packages with debootstrap and `podman import`,
# and points the variable at it:
#   postgres    postgresql-15 + gosu, with deploy/standins/postgres-entrypoint.sh as the official
#               image's docker-entrypoint.sh (POSTGRES_* variables, initdb on first start,
#               /docker-entrypoint-initdb.d, postgres run as the postgres user)
#   maven       openjdk-17-jdk-headless + maven (the Dockerfile's build stage)
#   jre         openjdk-17-jre-headless (the Dockerfile's runtime stage)
#   prometheus  Debian's prometheus + wget, run as nobody like prom/prometheus
# A variable set in .env wins over this script (podman-compose 1.0 reads .env last), so an image
# named in .env must exist locally. No stand-in is built for Grafana.
#
# The proxy's image is built from the Dockerfile with podman build, reusing ~/.m2 as the Maven
# repository (mounted, -Dmaven.repo.local) and the host network for anything missing from it.
# The build runs Maven, so it holds the lock /tmp/mvn.lock (MVN_LOCK) like every Maven run here.
#
# Credentials: .env. When it is missing, this script writes one from .env.example with random
# passwords (mode 600) and says so.
#
# Machine set-up (Debian bookworm): apt-get install podman podman-compose runc debootstrap, and in
# /etc/containers/containers.conf
#   [containers]
#   default_ulimits = []       # this sandbox refuses raising the open-files limit
#   [engine]
#   runtime = "runc"
# The script checks both and says what is missing.
#
# Environment: PROJECT (cryoproxy), STANDIN_CACHE (/var/tmp/cryoproxy-standins),
# DEBIAN_MIRROR (http://deb.debian.org/debian), MVN_LOCK (/tmp/mvn.lock), WAIT_SECONDS (180).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROJECT="${PROJECT:-cryoproxy}"
STANDIN_CACHE="${STANDIN_CACHE:-/var/tmp/cryoproxy-standins}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
MVN_LOCK="${MVN_LOCK:-/tmp/mvn.lock}"
WAIT_SECONDS="${WAIT_SECONDS:-180}"
STANDIN_PREFIX="localhost/cryoproxy-standin"

keep=false
down_only=false
with_grafana=false
seed=false
load_seconds=0
rebuild_standins=false
pull=false
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=true ;;
    --down) down_only=true ;;
    --grafana) with_grafana=true ;;
    --seed) seed=true ;;
    --load) load_seconds="${2:?--load needs seconds}"; shift ;;
    --rebuild-standins) rebuild_standins=true ;;
    --pull) pull=true ;;
    -h|--help) sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

# ---------------------------------------------------------------------------------------------
# Output helpers: every stage is timed.
script_start=$(date +%s.%N)
stage_name=""
stage_start=""
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
stage() {
  stage_end
  stage_name="$1"
  stage_start=$(date +%s.%N)
  printf '\n=== %s\n' "$stage_name"
}
stage_end() {
  if [ -n "$stage_name" ]; then
    printf -- '--- %s: %s s\n' "$stage_name" "$(elapsed "$stage_start")"
    stage_name=""
  fi
}
run() {
  printf '+ %s\n' "$*"
  "$@"
}
die() {
  echo "compose-up.sh: $*" >&2
  exit 1
}
compose() {
  podman-compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" "$@"
}

# ---------------------------------------------------------------------------------------------
preflight() {
  stage "preflight"
  local missing=()
  for c in podman podman-compose debootstrap runc curl psql; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing commands: ${missing[*]}"
    echo "install: apt-get install podman podman-compose runc debootstrap curl postgresql-client"
    exit 1
  fi
  if ! command -v jshell >/dev/null 2>&1; then
    echo "note: no jshell (a JDK 17+): the JDBC demonstration is skipped, psql is used instead"
  fi
  local conf="${CONTAINERS_CONF:-/etc/containers/containers.conf}" ok=true
  if ! grep -Eqs '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$conf"; then
    echo "missing in $conf: runtime = \"runc\" under [engine]"
    ok=false
  fi
  if ! grep -Eqs '^[[:space:]]*default_ulimits[[:space:]]*=[[:space:]]*\[[[:space:]]*\]' "$conf"; then
    echo "missing in $conf: default_ulimits = [] under [containers]"
    ok=false
  fi
  if $ok; then
    echo "$conf: runtime = \"runc\", default_ulimits = [] (set)"
  else
    echo "(on this sandbox containers fail to start without both; elsewhere they may not be needed)"
  fi
  echo "podman $(podman version --format '{{.Client.Version}}'), runtime" \
    "$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null),"\
    "$(podman-compose version 2>/dev/null | grep -m1 -i 'podman-compose' || echo 'podman-compose')"
}

# .env: podman-compose reads it from the project folder; write one with random passwords if none.
ensure_env() {
  stage "credentials (.env)"
  if [ -f "$ROOT/.env" ]; then
    echo ".env exists: using it"
  else
    umask 077
    local tmp
    tmp="$(mktemp "$ROOT/.env.XXXXXX")"
    cp "$ROOT/.env.example" "$tmp"
    for v in POSTGRES_PASSWORD REPLICATION_PASSWORD CRYOPROXY_AUTH_PASSWORD APP_PASSWORD \
      GRAFANA_ADMIN_PASSWORD; do
      sed -i "s/^$v=.*/$v=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')/" "$tmp"
    done
    chmod 600 "$tmp"
    mv "$tmp" "$ROOT/.env"
    umask 022
    echo "wrote .env from .env.example with random passwords (mode 600)"
  fi
  # The values this script needs itself (ports, the app password, image overrides).
  env_value() {
    local name="$1" default="$2" line
    if [ -n "${!name:-}" ]; then
      echo "${!name}"
      return
    fi
    line="$(grep -E "^[[:space:]]*$name=" "$ROOT/.env" | tail -1 || true)"
    if [ -n "$line" ]; then
      echo "${line#*=}"
    else
      echo "$default"
    fi
  }
  in_env_file() { grep -Eq "^[[:space:]]*$1=" "$ROOT/.env"; }
  PROXY_PORT="$(env_value PROXY_PORT 6432)"
  PROXY_ADMIN_PORT="$(env_value PROXY_ADMIN_PORT 9187)"
  PROMETHEUS_PORT="$(env_value PROMETHEUS_PORT 9090)"
  GRAFANA_PORT="$(env_value GRAFANA_PORT 3000)"
  PUBLISH_ADDRESS="$(env_value PUBLISH_ADDRESS 127.0.0.1)"
  APP_PASSWORD="$(env_value APP_PASSWORD '')"
  [ -n "$APP_PASSWORD" ] || die "APP_PASSWORD is empty in .env"
  [ "$PUBLISH_ADDRESS" = 0.0.0.0 ] && CHECK_ADDRESS=127.0.0.1 || CHECK_ADDRESS="$PUBLISH_ADDRESS"
  echo "published: proxy $PUBLISH_ADDRESS:$PROXY_PORT, admin :$PROXY_ADMIN_PORT," \
    "prometheus :$PROMETHEUS_PORT, grafana :$GRAFANA_PORT"
  for p in "$PROXY_PORT" "$PROXY_ADMIN_PORT" "$PROMETHEUS_PORT"; do
    if (exec 3<>"/dev/tcp/$CHECK_ADDRESS/$p") 2>/dev/null; then
      die "port $p on $CHECK_ADDRESS is taken: set another in .env"
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# Stand-in images from Debian packages.
debootstrap_image() { # NAME PACKAGES [customise-function]
  local name="$1" packages="$2" customise="${3:-}" dir
  dir="$STANDIN_CACHE/rootfs-${name##*/}"
  dir="${dir%%:*}"
  mkdir -p "$STANDIN_CACHE"
  rm -rf "$dir"
  echo "debootstrap --variant=minbase --include=$packages bookworm $dir"
  debootstrap --variant=minbase --include="$packages" bookworm "$dir" "$DEBIAN_MIRROR" \
    > "$dir.log" 2>&1 || { tail -20 "$dir.log"; die "debootstrap of $name failed (log: $dir.log)"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  if [ -n "$customise" ]; then
    "$customise" "$dir"
  fi
  shift 3
  echo "tar -C $dir -c . | podman import ${*} - $name"
  tar -C "$dir" -c . | podman import "$@" - "$name" > /dev/null
  rm -rf "$dir"
}

customise_postgres() {
  local dir="$1"
  # The package's postinst made a cluster "main": the image starts from an empty PGDATA instead.
  rm -rf "$dir/var/lib/postgresql/15" "$dir/etc/postgresql/15"
  install -m 0755 "$ROOT/deploy/standins/postgres-entrypoint.sh" "$dir/usr/local/bin/docker-entrypoint.sh"
  mkdir -p "$dir/docker-entrypoint-initdb.d" "$dir/var/run/postgresql"
}

customise_prometheus() {
  local dir="$1"
  mkdir -p "$dir/prometheus" "$dir/etc/prometheus"
  chown 65534:65534 "$dir/prometheus"
}

build_standin() { # KIND -> prints the image name
  local kind="$1" name
  case "$kind" in
    postgres)
      name="$STANDIN_PREFIX/postgres:15-bookworm"
      if $rebuild_standins || ! podman image exists "$name"; then
        debootstrap_image "$name" postgresql-15,postgresql-client-15,gosu customise_postgres \
          --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
          --change 'ENV PGDATA=/var/lib/postgresql/data' --change 'ENV LANG=C.UTF-8' \
          --change 'ENTRYPOINT ["docker-entrypoint.sh"]' --change 'CMD ["postgres"]' \
          --change 'STOPSIGNAL SIGINT' --change 'EXPOSE 5432'
      fi ;;
    maven)
      name="$STANDIN_PREFIX/maven:3.8-openjdk-17"
      if $rebuild_standins || ! podman image exists "$name"; then
        debootstrap_image "$name" openjdk-17-jdk-headless,maven "" \
          --change 'ENV LANG=C.UTF-8' --change 'CMD ["mvn", "--version"]'
      fi ;;
    jre)
      name="$STANDIN_PREFIX/jre:17"
      if $rebuild_standins || ! podman image exists "$name"; then
        debootstrap_image "$name" openjdk-17-jre-headless "" \
          --change 'ENV LANG=C.UTF-8' --change 'CMD ["java", "-version"]'
      fi ;;
    prometheus)
      name="$STANDIN_PREFIX/prometheus:bookworm"
      if $rebuild_standins || ! podman image exists "$name"; then
        debootstrap_image "$name" prometheus,wget customise_prometheus \
          --change 'USER nobody' --change 'WORKDIR /prometheus' --change 'EXPOSE 9090' \
          --change 'ENTRYPOINT ["/usr/bin/prometheus"]' \
          --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
      fi ;;
  esac
  STANDIN_NAME="$name"
}

# Sets VAR to an image that exists locally: the configured one, pulled, or a stand-in.
resolve_image() { # VAR DEFAULT KIND
  local var="$1" default="$2" kind="$3" image
  image="$(env_value "$var" "$default")"
  if podman image exists "$image"; then
    echo "$var=$image (local)"
    export "$var=$image"
    return
  fi
  if $pull && timeout 120 podman pull -q "$image" >/dev/null 2>&1; then
    echo "$var=$image (pulled)"
    export "$var=$image"
    return
  fi
  if in_env_file "$var"; then
    die "$var=$image is set in .env but not in local storage (podman pull it, or remove it from .env)"
  fi
  if [ "$kind" = none ]; then
    die "$var=$image is not in local storage and has no stand-in"
  fi
  local t0
  t0=$(date +%s.%N)
  build_standin "$kind"
  export "$var=$STANDIN_NAME"
  printf '%s=%s (stand-in for %s, %s s)\n' "$var" "$STANDIN_NAME" "$image" "$(elapsed "$t0")"
}

images() {
  stage "images (registry images or stand-ins from Debian packages)"
  resolve_image POSTGRES_IMAGE postgres:18 postgres
  resolve_image MAVEN_IMAGE maven:3.9-eclipse-temurin-17 maven
  resolve_image JRE_IMAGE eclipse-temurin:17-jre jre
  resolve_image PROMETHEUS_IMAGE prom/prometheus:v3.5.0 prometheus
  if $with_grafana; then
    resolve_image GRAFANA_IMAGE grafana/grafana:12.1.0 none
  fi
  # A container must start: this is where a missing containers.conf setting shows.
  if ! podman run --rm "$JRE_IMAGE" true 2>/tmp/compose-up-smoke.$$; then
    grep -v systemd /tmp/compose-up-smoke.$$ >&2 || true
    rm -f /tmp/compose-up-smoke.$$
    die "a container cannot start here: see the containers.conf settings above"
  fi
  rm -f /tmp/compose-up-smoke.$$
}

build_proxy_image() {
  stage "cryoproxy image (Dockerfile: Maven build stage, JRE runtime stage)"
  CRYOPROXY_IMAGE="$(env_value CRYOPROXY_IMAGE cryoproxy:local)"
  export CRYOPROXY_IMAGE
  local args=(build --format docker --network host
    --build-arg "BUILD_IMAGE=$MAVEN_IMAGE" --build-arg "RUNTIME_IMAGE=$JRE_IMAGE"
    -t "$CRYOPROXY_IMAGE" -f "$ROOT/Dockerfile")
  if [ -d "$HOME/.m2" ]; then
    args+=(-v "$HOME/.m2:/host-m2" --build-arg "MAVEN_ARGS=-Dmaven.repo.local=/host-m2/repository")
  fi
  echo "+ flock $MVN_LOCK podman ${args[*]} $ROOT"
  flock "$MVN_LOCK" podman "${args[@]}" "$ROOT" > /tmp/compose-up-build.log 2>&1 \
    || { tail -40 /tmp/compose-up-build.log; die "podman build failed (log: /tmp/compose-up-build.log)"; }
  grep -E '^\[[0-9]/[0-9]\] STEP|^Successfully tagged' /tmp/compose-up-build.log | cut -c1-110
  podman run --rm --entrypoint id "$CRYOPROXY_IMAGE" 2>/dev/null | sed 's/^/runs as: /'
  echo "HEALTHCHECK: $(podman image inspect "$CRYOPROXY_IMAGE" --format '{{json .HealthCheck.Test}}')"
}

# ---------------------------------------------------------------------------------------------
container_of() {
  podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" | head -1
}

# The compose health checks run here by `podman healthcheck run` (podman's own timers need
# systemd, which this machine does not run).
wait_healthy() { # SERVICE
  local service="$1" id deadline status
  id="$(container_of "$service")"
  [ -n "$id" ] || die "no container for $service"
  deadline=$((SECONDS + WAIT_SECONDS))
  while :; do
    if podman healthcheck run "$id" >/dev/null 2>&1; then
      echo "$service: healthy after $((SECONDS - (deadline - WAIT_SECONDS))) s ($(podman inspect "$id" --format '{{.State.Health.Status}}'))"
      return 0
    fi
    status="$(podman inspect "$id" --format '{{.State.Status}}')"
    if [ "$status" = exited ] || [ "$SECONDS" -ge "$deadline" ]; then
      podman logs --tail 30 "$id" >&2 || true
      die "$service did not become healthy (state $status)"
    fi
    sleep 2
  done
}

up() { # SERVICE...
  echo "+ podman-compose -p $PROJECT up -d --no-build $*"
  compose up -d --no-build "$@" > "/tmp/compose-up-$1.log" 2>&1 \
    || { cat "/tmp/compose-up-$1.log"; die "podman-compose up $* failed"; }
  # podman-compose prints every podman command; show the one that created the service.
  grep -E "^podman run --name=${PROJECT}_$1_1" "/tmp/compose-up-$1.log" \
    | sed -E 's/ -e ([A-Z_]*PASSWORD)=[^ ]*/ -e \1=***/g; s/ --label [^ ]*//g' | cut -c1-400 || true
}

run_once() { # SERVICE: start a one-shot service and wait for its exit status
  local service="$1" id code
  up "$service"
  id="$(container_of "$service")"
  code="$(podman wait "$id")"
  # Flyway's banner and tables aside: what was applied, and any warning or error.
  podman logs "$id" 2>&1 | grep -v -E 'Picked up JAVA_TOOL_OPTIONS|DefaultSqlScriptExecutor|^[|+]|^$' | sed "s/^/$service| /" | tail -20
  echo "$service: exit status $code"
  [ "$code" = 0 ] || die "$service failed"
}

ip_of() {
  podman inspect "$(container_of "$1")" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'
}

prom_query() { # PROMQL -> JSON
  curl -fsS --get "http://$CHECK_ADDRESS:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$1"
}

# ---------------------------------------------------------------------------------------------
teardown() {
  stage "teardown"
  echo "+ podman-compose -p $PROJECT down -v"
  compose down -v > /tmp/compose-up-down.log 2>&1 || { tail -20 /tmp/compose-up-down.log; }
  podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman volume rm > /dev/null
  podman network rm "${PROJECT}_default" > /dev/null 2>&1 || true
  echo "left: $(podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" | wc -l) containers," \
    "$(podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | wc -l) volumes"
}

if $down_only; then
  # Placeholders only: down interpolates the file, and no container is created.
  for v in POSTGRES_PASSWORD REPLICATION_PASSWORD CRYOPROXY_AUTH_PASSWORD APP_PASSWORD GRAFANA_ADMIN_PASSWORD; do
    export "$v=${!v:-unused}"
  done
  teardown
  stage_end
  exit 0
fi

preflight
ensure_env
images
build_proxy_image

if [ -n "$(podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT")" ]; then
  stage "removing a stack left by an earlier run"
  teardown
fi
if ! $keep; then
  trap 'status=$?; teardown; stage_end; printf "\ntotal: %s s\n" "$(elapsed "$script_start")"; exit $status' EXIT
fi

stage "postgres-primary"
up postgres-primary
wait_healthy postgres-primary

stage "postgres-replica (pg_basebackup from the primary)"
up postgres-replica
wait_healthy postgres-replica
podman logs "$(container_of postgres-replica)" 2>&1 | grep -E '^replica:|started streaming|ready to accept' | head -5

stage "demonstration 1: the replica streams from the primary"
primary="$(container_of postgres-primary)"
replica="$(container_of postgres-replica)"
echo "postgres-primary $(ip_of postgres-primary), postgres-replica $(ip_of postgres-replica)"
run podman exec "$primary" psql -U postgres -d app -x -c \
  "SELECT application_name, client_addr, state, sync_state, sent_lsn, replay_lsn, (SELECT slot_name FROM pg_replication_slots WHERE active_pid = pid) AS slot FROM pg_stat_replication"
run podman exec "$replica" psql -U postgres -d app -tA -c \
  "SELECT 'replica: in recovery=' || pg_is_in_recovery() || ', wal receiver ' || status || ' from ' || sender_host FROM pg_stat_wal_receiver"
state="$(podman exec "$primary" psql -U postgres -tA -c "SELECT state FROM pg_stat_replication LIMIT 1")"
[ "$state" = streaming ] || die "the replica is not streaming (state '$state')"

stage "demonstration 2: migrate (one-shot) completes"
run_once migrate

if $seed; then
  stage "seed profile: SELECT cryoprotect.generate(100000)"
  run_once seed
fi

stage "demonstration 3: cryoproxy is healthy"
up cryoproxy
wait_healthy cryoproxy
run curl -sS -w '\nHTTP %{http_code}\n' "http://$CHECK_ADDRESS:$PROXY_ADMIN_PORT/health/ready"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://$CHECK_ADDRESS:$PROXY_ADMIN_PORT/health/ready")"
[ "$code" = 200 ] || die "/health/ready answered $code"

stage "demonstration 4: queries through the proxy's published port; reads reach the replica"
primary_ip="$(ip_of postgres-primary)"
replica_ip="$(ip_of postgres-replica)"
echo "primary is $primary_ip, replica is $replica_ip"
export PGPASSWORD="$APP_PASSWORD"
psql_proxy=(psql "host=$CHECK_ADDRESS port=$PROXY_PORT dbname=app user=app" --no-psqlrc -tA)
# A read may wait for the proxy to learn the replica is up and which functions are volatile.
deadline=$((SECONDS + 60))
until [ "$("${psql_proxy[@]}" -c 'SELECT host(inet_server_addr())')" = "$replica_ip" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "reads through the proxy never reached the replica"
  sleep 2
done
echo "the proxy's view of the replica: $(curl -fsS "http://$CHECK_ADDRESS:$PROXY_ADMIN_PORT/metrics" | grep -E '^cryoproxy_replica_lag' | tr '\n' ' ')"
if command -v jshell >/dev/null 2>&1; then
  jar_dir="$(mktemp -d)"
  cid="$(podman create "$CRYOPROXY_IMAGE")"
  podman cp "$cid:/opt/cryoproxy/cryoproxy.jar" "$jar_dir/cryoproxy.jar"
  podman rm "$cid" > /dev/null 2>&1
  cat > "$jar_dir/jdbc.jsh" <<'JSH'
import java.sql.*;
String url = System.getenv("JDBC_URL");
try (Connection c = DriverManager.getConnection(url, "app", System.getenv("PGPASSWORD"))) {
  System.out.println("JDBC " + c.getMetaData().getDriverVersion() + " -> " + url + ", server "
      + c.getMetaData().getDatabaseProductVersion());
  java.util.Map<String, Integer> reads = new java.util.TreeMap<>();
  try (Statement s = c.createStatement()) {
    for (int i = 0; i < 20; i++) {
      try (ResultSet r = s.executeQuery("SELECT host(inet_server_addr())")) {
        r.next();
        reads.merge(r.getString(1), 1, Integer::sum);
      }
      Thread.sleep(100);
    }
  }
  System.out.println("20 autocommit reads (SELECT host(inet_server_addr())), 100 ms apart, answered by: " + reads);
  c.setAutoCommit(false);
  c.setReadOnly(true); // pgJDBC: BEGIN, SET TRANSACTION READ ONLY
  try (Statement s = c.createStatement();
      ResultSet r = s.executeQuery("SELECT host(inet_server_addr()), pg_is_in_recovery(), to_regclass('public.molecules') IS NOT NULL")) {
    r.next();
    System.out.println("setReadOnly(true) transaction: server " + r.getString(1) + ", in recovery "
        + r.getBoolean(2) + ", migrated table public.molecules there: " + r.getBoolean(3));
  }
  c.commit();
  c.setReadOnly(false);
  try (Statement s = c.createStatement()) {
    s.executeUpdate("CREATE TABLE IF NOT EXISTS compose_demo (id int, at inet)");
    s.executeUpdate("INSERT INTO compose_demo VALUES (1, inet_server_addr())");
    try (ResultSet r = s.executeQuery("SELECT host(inet_server_addr()), pg_is_in_recovery(), count(*) FROM compose_demo")) {
      r.next();
      System.out.println("read-write transaction (INSERT): server " + r.getString(1)
          + ", in recovery " + r.getBoolean(2) + ", compose_demo rows " + r.getLong(3));
    }
  }
  c.commit();
}
/exit
JSH
  echo "+ JDBC_URL=jdbc:postgresql://$CHECK_ADDRESS:$PROXY_PORT/app jshell --class-path cryoproxy.jar jdbc.jsh  (pgJDBC shaded in the proxy's jar)"
  JDBC_URL="jdbc:postgresql://$CHECK_ADDRESS:$PROXY_PORT/app" \
    jshell -J-Xshare:auto -R-Dorg.slf4j.simpleLogger.defaultLogLevel=off \
    --class-path "$jar_dir/cryoproxy.jar" "$jar_dir/jdbc.jsh" 2>&1 | grep -v -E 'SLF4J|^$|FileSystemPreferences|^INFO: Created user preferences'
  rm -rf "$jar_dir"
fi
echo "+ psql \"host=$CHECK_ADDRESS port=$PROXY_PORT dbname=app user=app\" -c ..."
"${psql_proxy[@]}" -F ' | ' -c "SELECT host(inet_server_addr()), 'implicit read (SELECT)'"
"${psql_proxy[@]}" -F ' | ' -c "BEGIN READ ONLY" \
  -c "SELECT host(inet_server_addr()), 'BEGIN READ ONLY, pg_is_in_recovery() = ' || pg_is_in_recovery()" \
  -c "COMMIT" | grep -v -E '^(BEGIN|COMMIT)$'
PGOPTIONS='-c client_min_messages=warning' "${psql_proxy[@]}" -c "CREATE TABLE IF NOT EXISTS compose_demo (id int, at inet)" > /dev/null
"${psql_proxy[@]}" -F ' | ' -c "INSERT INTO compose_demo VALUES (0, inet_server_addr()) RETURNING host(at), 'INSERT (write)'" | grep -v '^INSERT'
"${psql_proxy[@]}" -c "DROP TABLE IF EXISTS compose_demo" > /dev/null
unset PGPASSWORD

stage "demonstration 5: Prometheus scrapes the proxy, with the alert rules loaded"
up prometheus
wait_healthy prometheus
deadline=$((SECONDS + 60))
until prom_query 'up{job="cryoproxy"}' | grep -q '"value":\[[^]]*,"1"\]'; do
  [ "$SECONDS" -lt "$deadline" ] || die "Prometheus does not see the proxy up"
  sleep 3
done
echo "+ curl http://$CHECK_ADDRESS:$PROMETHEUS_PORT/api/v1/targets"
curl -fsS "http://$CHECK_ADDRESS:$PROMETHEUS_PORT/api/v1/targets" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print("target job=%s %s health=%s lastScrape=%s lastError=%r" % (t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastScrape"], t["lastError"]))'
# The rules are evaluated every evaluation_interval (15 s): wait for the first evaluation.
deadline=$((SECONDS + 45))
until curl -fsS "http://$CHECK_ADDRESS:$PROMETHEUS_PORT/api/v1/rules" | grep -q '"health":"ok"'; do
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 3
done
echo "+ curl http://$CHECK_ADDRESS:$PROMETHEUS_PORT/api/v1/rules"
curl -fsS "http://$CHECK_ADDRESS:$PROMETHEUS_PORT/api/v1/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
print("rule groups %d (%s), rules %d: %s" % (len(groups), ", ".join(g["file"] + ":" + g["name"] for g in groups), len(rules), " ".join(r["name"] for r in rules)))
print("health: %s; firing now: %s" % (sorted({r["health"] for r in rules}), [r["name"] for r in rules if r.get("state") == "firing"] or "none"))'
echo "+ query: sum by (route) (cryoproxy_query_seconds_count{job=\"cryoproxy\"})"
prom_query 'sum by (route) (cryoproxy_query_seconds_count{job="cryoproxy"})' | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print("queries through the proxy, route=%s: %s" % (r["metric"].get("route"), r["value"][1]))'
prom_query 'cryoproxy_node_up' | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print("cryoproxy_node_up{node=%s,role=%s} %s" % (r["metric"].get("node"), r["metric"].get("role"), r["value"][1]))'

if $with_grafana; then
  stage "grafana"
  up grafana
  wait_healthy grafana
  curl -fsS "http://$CHECK_ADDRESS:$GRAFANA_PORT/api/health"; echo
fi

if [ "$load_seconds" -gt 0 ]; then
  stage "load profile: pgbench through the proxy for ${load_seconds}s"
  export LOAD_SECONDS="$load_seconds"
  up load
  id="$(container_of load)"
  code="$(podman wait "$id")"
  podman logs "$id" 2>&1 | sed 's/^/load| /' | tail -25
  echo "load: exit status $code"
  sleep 20 # one more scrape after the end
  for q in 'sum by (route) (rate(cryoproxy_query_seconds_count{job="cryoproxy"}[1m]))' \
           'sum by (route) (increase(cryoproxy_query_seconds_count{job="cryoproxy"}[5m]))' \
           'histogram_quantile(0.95, sum by (le) (rate(cryoproxy_query_seconds_bucket{job="cryoproxy"}[5m])))'; do
    echo "+ query: $q"
    prom_query "$q" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    print("  %s %s" % (r["metric"] or "{}", r["value"][1]))'
  done
fi

stage_end
if $keep; then
  echo
  echo "The stack keeps running (project $PROJECT):"
  echo "  proxy      psql \"host=$CHECK_ADDRESS port=$PROXY_PORT dbname=app user=app\"   (APP_PASSWORD in .env)"
  echo "  metrics    http://$CHECK_ADDRESS:$PROXY_ADMIN_PORT/metrics"
  echo "  prometheus http://$CHECK_ADDRESS:$PROMETHEUS_PORT/"
  echo "  stop it:   deploy/compose-up.sh --down"
  printf "total: %s s\n" "$(elapsed "$script_start")"
fi
