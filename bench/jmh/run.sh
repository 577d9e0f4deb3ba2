#!/usr/bin/env bash
# Hot-path microbenchmarks (JMH). Builds the jar if needed; extra arguments go to JMH,
# e.g. bench/jmh/run.sh ClassifyBenchmark -f 1 -wi 2 -i 3
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
jar="$here/target/benchmarks.jar"
if [[ ! -f "$jar" ]]; then
  (cd "$here/../.." && mvn -q -B -DskipTests -Djacoco.skip=true package -pl bench/jmh -am)
fi
exec java -jar "$jar" "$@"
