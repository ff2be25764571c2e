#!/usr/bin/env bash
# Resident memory per binding of one or more regmesh builds (not Kamailio:
# bench/compare.sh measures both side by side). For each build in BINS:
# start `serve` durable on loopback, take the PSS, register N AoRs with one
# contact each, take the PSS again, restart on the same data dir and time
# it to ready, and print one line. Builds alternate ROUNDS times.
#
#   BINS="/tmp/regmesh-old target/release/regmesh" N=1000000 bench/memory.sh
set -euo pipefail
BINS=${BINS:-target/release/regmesh}
N=${N:-1000000}
RATE=${RATE:-40000}
ROUNDS=${ROUNDS:-1}
OUT=${OUT:-$(mktemp -d /tmp/regmesh-memory.XXXXXX)}
PORT=${PORT:-5098}
GEN=${GEN:-$(set -- $BINS; echo "$1")}

pss_kib() { awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup"; }

. "$(dirname "$0")/lib.sh"
start() { # bin dir -> PID
  regmesh_config "$2/regmesh.toml" "$2/data" "$PORT" 0 ""
  regmesh_serve "$1" "$2/regmesh.toml" "$2"
}

stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
trap 'kill $PID 2>/dev/null || true' EXIT

for r in $(seq 1 "$ROUNDS"); do
  i=0
  for bin in $BINS; do
    i=$((i + 1))
    dir="$OUT/r$r-b$i"
    mkdir -p "$dir"
    start "$bin" "$dir"
    sleep 1
    before=$(pss_kib "$PID")
    nice -n 19 "$GEN" bench --target "127.0.0.1:$PORT" --rate "$RATE" --aors "$N" --count "$N" \
      --mix 1:0:0 --duration 3600s --timeout 30s --quiet --json "$dir/fill.json"
    sleep 2
    after=$(pss_kib "$PID")
    stop
    t0=$(date +%s.%N)
    start "$bin" "$dir"
    t1=$(date +%s.%N)
    restarted=$(pss_kib "$PID")
    stop
    python3 - "$dir/fill.json" "$before" "$after" "$restarted" "$t0" "$t1" "$bin" "$r" "$N" "$(du -sb "$dir/data" | cut -f1)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
before, after, restarted = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0, t1, bin_, r, n, disk = float(sys.argv[5]), float(sys.argv[6]), sys.argv[7], sys.argv[8], int(sys.argv[9]), int(sys.argv[10])
ok = j["status"].get("200", 0)
print(f"round {r} {bin_}: 200s {ok}/{n}; PSS {before} -> {after} KiB = {(after - before) * 1024 / n:.0f} B/binding; "
      f"after restart {restarted} KiB ({(restarted - before) * 1024 / n:.0f} B/binding); restart {t1 - t0:.2f} s; "
      f"store {disk / n:.0f} B/binding")
PY
  done
done
