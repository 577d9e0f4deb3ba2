#!/usr/bin/env bash
# Paired A/B of two CryoProxy jars: the same pgbench runs through both, against one throwaway
# PostgreSQL, four repetitions per scenario with the order of the two alternating, so that a
# change can be checked for a slowdown with the machine's drift paired out (bench/README.md).
#   bench/ab.sh BEFORE.jar AFTER.jar    (PG_BIN: /usr/lib/postgresql/15/bin; run as root)
# Prints one line per scenario: median TPS of each jar, after/before, and the range of the
# per-repetition ratios.
set -euo pipefail
[[ $# -eq 2 && -f $1 && -f $2 ]] || { echo "usage: bench/ab.sh BEFORE.jar AFTER.jar" >&2; exit 2; }
BEFORE=$1
AFTER=$2
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
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
$PG_BIN/psql -q -h 127.0.0.1 -p $PG -U postgres -c "CREATE DATABASE bench" >/dev/null
$PG_BIN/pgbench -i -q -s 10 -h 127.0.0.1 -p $PG -U postgres bench >/dev/null 2>&1
for side in A B; do
  port=$([ $side = A ] && echo $A || echo $B); admin=$([ $side = A ] && echo $AA || echo $BA)
  cat > $T/$side.yaml <<C
listen: { host: 127.0.0.1, port: $port }
admin: { host: 127.0.0.1, port: $admin }
pool: { mode: transaction, size: 20 }
databases:
  bench: { primary: { host: 127.0.0.1, port: $PG } }
C
done
OPTS="-XX:+UseParallelGC -Xms512m -Xmx512m -XX:+AlwaysPreTouch -Dio.netty.leakDetection.level=disabled"
java $OPTS -jar "$BEFORE" run --config $T/A.yaml > $T/A.log 2>&1 & APID=$!
java $OPTS -jar "$AFTER" run --config $T/B.yaml > $T/B.log 2>&1 & BPID=$!
until $PG_BIN/pg_isready -q -h 127.0.0.1 -p $A && $PG_BIN/pg_isready -q -h 127.0.0.1 -p $B; do sleep 0.2; done
for port in $A $B; do $PG_BIN/pgbench -n -S -M prepared -c 32 -j 2 -T 4 -h 127.0.0.1 -p $port -U postgres bench >/dev/null 2>&1; done
for scen in "-S -M simple -c 1 -j 1" "-S -M extended -c 1 -j 1" "-S -M simple -c 32 -j 2" "-S -M extended -c 32 -j 2" "-S -M prepared -c 32 -j 2" "-M simple -c 32 -j 2" "-S -C -c 8 -j 2"; do
  for rep in 1 2 3 4; do
    order="A B"; [ $((rep % 2)) = 0 ] && order="B A"   # who goes first alternates
    for side in $order; do
      port=$([ $side = A ] && echo $A || echo $B)
      tps=$($PG_BIN/pgbench -n $scen -T 5 -h 127.0.0.1 -p $port -U postgres bench 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
      echo "$scen|$side|$tps"
    done
  done
done > $T/runs.txt
python3 - $T/runs.txt <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    scenario, side, tps = line.strip().split("|")
    if tps:
        runs[scenario][side].append(float(tps))
print("| pgbench | before tps | after tps | after/before | per repetition |")
print("|---|---:|---:|---:|---:|")
for scenario, by in runs.items():
    a, b = statistics.median(by["A"]), statistics.median(by["B"])
    pairs = [y / x for x, y in zip(by["A"], by["B"])]
    print(f"| {scenario} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x | {min(pairs):.2f}-{max(pairs):.2f} |")
PY
