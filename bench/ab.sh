#!/usr/bin/env bash
# Paired A/B of two CryoProxy set-ups: the same pgbench runs through both, against one throwaway
# PostgreSQL, AB_REPS repetitions per scenario with the order of the two alternating, so that a
# change can be checked with the machine's drift paired out (bench/README.md).
#   bench/ab.sh BEFORE.jar AFTER.jar    (PG_BIN: /usr/lib/postgresql/15/bin; run as root)
# The two sides may be the same jar run differently (a lever of issue 17):
#   AB_JAVA_BEFORE / AB_JAVA_AFTER   java binary of each side               (java)
#   AB_OPTS_BEFORE / AB_OPTS_AFTER   JVM options of each side, replacing the default AB_OPTS
#   AB_OPTS                          (-XX:+UseParallelGC -Xms512m -Xmx512m -XX:+AlwaysPreTouch
#                                     -Dio.netty.leakDetection.level=disabled)
#   AB_SCENARIOS                     pgbench arguments, ';'-separated        (seven scenarios)
#   AB_REPS, AB_SECONDS              repetitions (4) and seconds per run (5)
#   AB_TLS=1                         TLS on the client leg of both (a self-signed EC certificate)
# Prints one line per scenario: median TPS of each side, after/before, the range of the
# per-repetition ratios, and each side's proxy CPU per transaction (user + system, µs).
set -euo pipefail
[[ $# -eq 2 && -f $1 && -f $2 ]] || { echo "usage: bench/ab.sh BEFORE.jar AFTER.jar" >&2; exit 2; }
BEFORE=$1
AFTER=$2
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
AB_OPTS=${AB_OPTS:--XX:+UseParallelGC -Xms512m -Xmx512m -XX:+AlwaysPreTouch -Dio.netty.leakDetection.level=disabled}
OPTS_A=${AB_OPTS_BEFORE:-$AB_OPTS}
OPTS_B=${AB_OPTS_AFTER:-$AB_OPTS}
JAVA_A=${AB_JAVA_BEFORE:-java}
JAVA_B=${AB_JAVA_AFTER:-java}
REPS=${AB_REPS:-4}
SECONDS_PER_RUN=${AB_SECONDS:-5}
SCENARIOS=${AB_SCENARIOS:-"-S -M simple -c 1 -j 1;-S -M extended -c 1 -j 1;-S -M simple -c 32 -j 2;-S -M extended -c 32 -j 2;-S -M prepared -c 32 -j 2;-M simple -c 32 -j 2;-S -C -c 8 -j 2"}
T=$(mktemp -d /tmp/cryoproxy-ab.XXXX); chown postgres: $T
read -r PG A B AA BA < <(python3 -c '
import socket
s=[socket.socket() for _ in range(5)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*(x.getsockname()[1] for x in s))')
runuser -u postgres -- $PG_BIN/initdb -D $T/data -U postgres -A trust --no-sync >/dev/null
cat >> $T/data/postgresql.conf <<C
listen_addresses='127.0.0.1'
port=$PG
unix_socket_directories='$T'
max_connections=300
shared_buffers=256MB
synchronous_commit=off
C
runuser -u postgres -- $PG_BIN/postgres -D $T/data > $T/pg.log 2>&1 &
PGPID=$!
trap 'kill $APID $BPID 2>/dev/null; kill -INT $PGPID; sleep 1; rm -rf $T' EXIT
until $PG_BIN/pg_isready -q -h 127.0.0.1 -p $PG; do sleep 0.2; done
PGSSLMODE=disable $PG_BIN/psql -q -h 127.0.0.1 -p $PG -U postgres -c "CREATE DATABASE bench" >/dev/null
PGSSLMODE=disable $PG_BIN/pgbench -i -q -s 10 -h 127.0.0.1 -p $PG -U postgres bench >/dev/null 2>&1
TLS_YAML=""
export PGSSLMODE=disable
if [[ ${AB_TLS:-0} == 1 ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout $T/server.key -out $T/server.crt 2>/dev/null
  TLS_YAML="tls: { client: { mode: require, cert_file: $T/server.crt, key_file: $T/server.key } }"
  export PGSSLMODE=require
fi
for side in A B; do
  port=$([ $side = A ] && echo $A || echo $B); admin=$([ $side = A ] && echo $AA || echo $BA)
  cat > $T/$side.yaml <<C
listen: { host: 127.0.0.1, port: $port }
admin: { host: 127.0.0.1, port: $admin }
pool: { mode: transaction, size: 20 }
$TLS_YAML
databases:
  bench: { primary: { host: 127.0.0.1, port: $PG } }
C
done
# shellcheck disable=SC2086
$JAVA_A $OPTS_A -jar "$BEFORE" run --config $T/A.yaml > $T/A.log 2>&1 & APID=$!
# shellcheck disable=SC2086
$JAVA_B $OPTS_B -jar "$AFTER" run --config $T/B.yaml > $T/B.log 2>&1 & BPID=$!
until $PG_BIN/pg_isready -q -h 127.0.0.1 -p $A && $PG_BIN/pg_isready -q -h 127.0.0.1 -p $B; do sleep 0.2; done
echo "before: $JAVA_A $OPTS_A $(basename "$BEFORE"); $(grep -o 'listening.*' $T/A.log)"
echo "after:  $JAVA_B $OPTS_B $(basename "$AFTER"); $(grep -o 'listening.*' $T/B.log)"
# JIT warm-up of both, every protocol
for port in $A $B; do
  for m in simple prepared; do
    $PG_BIN/pgbench -n -S -M $m -c 32 -j 2 -T 4 -h 127.0.0.1 -p $port -U postgres bench >/dev/null 2>&1
  done
done
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
IFS=';' read -ra SCENS <<<"$SCENARIOS"
for scen in "${SCENS[@]}"; do
  for ((rep = 1; rep <= REPS; rep++)); do
    order="A B"; [ $((rep % 2)) = 0 ] && order="B A"   # who goes first alternates
    for side in $order; do
      port=$([ $side = A ] && echo $A || echo $B); pid=$([ $side = A ] && echo $APID || echo $BPID)
      t0=$(ticks $pid)
      # shellcheck disable=SC2086
      out=$($PG_BIN/pgbench -n $scen -T $SECONDS_PER_RUN -h 127.0.0.1 -p $port -U postgres bench 2>/dev/null || true)
      t1=$(ticks $pid)
      tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
      n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
      echo "$scen|$side|$tps|${n:-0}|$((t1 - t0))"
    done
  done
done > $T/runs.txt
python3 - $T/runs.txt "$(getconf CLK_TCK)" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(list))
cpu = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
tick_us = 1e6 / int(sys.argv[2])
for line in open(sys.argv[1]):
    scenario, side, tps, n, ticks = line.strip().split("|")
    if tps:
        runs[scenario][side].append(float(tps))
        cpu[scenario][side][0] += int(ticks)
        cpu[scenario][side][1] += int(n)
def us(c):
    return f"{c[0] * tick_us / c[1]:.1f}" if c[1] else "—"
print("| pgbench | before tps | after tps | after/before | per repetition | CPU µs/tx before | after |")
print("|---|---:|---:|---:|---:|---:|---:|")
for scenario, by in runs.items():
    if not by["A"] or not by["B"]:
        print(f"| {scenario} | failed runs: before {len(by['A'])}, after {len(by['B'])} |")
        continue
    a, b = statistics.median(by["A"]), statistics.median(by["B"])
    pairs = [y / x for x, y in zip(by["A"], by["B"])]
    print(f"| {scenario} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x | {min(pairs):.2f}-{max(pairs):.2f} "
          f"| {us(cpu[scenario]['A'])} | {us(cpu[scenario]['B'])} |")
PY
