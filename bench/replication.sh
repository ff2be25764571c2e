#!/usr/bin/env bash
# Replication lag of a Kamailio dmq_usrloc pair on loopback, measured with
# `regmesh bench-lag` (register on one node, poll the other with query
# REGISTERs until it lists the binding). Both directions, ROUNDS times,
# median of the rounds' p50/p99. regmesh does not replicate yet: when it
# does, its pair goes beside this one.
#
#   bench/replication.sh                  # COUNT=2000 RATE=500 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-2000}
RATE=${RATE:-500}
ROUNDS=${ROUNDS:-3}
POLL=${POLL:-1ms}
OUT=${OUT:-$(mktemp -d /tmp/regmesh-replication.XXXX)}
A=5071; B=5072
mkdir -p "$OUT"
command -v kamailio >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio
}
cargo build --release -p regmesh >&2
BIN=$PWD/target/release/regmesh

node() { # own-port peer-port
  kamailio -DD -E -f bench/kamailio-dmq.cfg -x tlsf -X tlsf -A "LISTEN=udp:127.0.0.1:$1" \
    -A "SELF=\"sip:127.0.0.1:$1\"" -A "PEER=\"sip:127.0.0.1:$2\"" >>"$OUT/kamailio-$1.log" 2>&1 &
  echo $!
}
PA=$(node $A $B); PB=$(node $B $A)
trap 'kill $PA $PB 2>/dev/null || true' EXIT
# The pair is ready once a binding registered on A shows up on B.
for _ in $(seq 1 30); do
  if "$BIN" bench-lag --primary 127.0.0.1:$A --replica 127.0.0.1:$B --count 1 --timeout 1s --quiet \
      --user-prefix warmup --json - | grep -q '"seen":1'; then
    break
  fi
  sleep 1
done

for r in $(seq 1 "$ROUNDS"); do
  for dir in "$A $B" "$B $A"; do
    set -- $dir
    "$BIN" bench-lag --primary 127.0.0.1:$1 --replica 127.0.0.1:$2 --count "$COUNT" --rate "$RATE" \
      --poll "$POLL" --user-prefix "r$r-$1-" --json "$OUT/lag-r$r-$1-$2.json"
  done
done
python3 - "$OUT" <<'PY'
import glob, json, statistics, sys
runs = [json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/lag-*.json"))]
seen = sum(r["seen"] for r in runs); total = sum(r["count"] for r in runs)
p50 = statistics.median(r["lag_us"]["p50"] for r in runs if r["lag_us"]["p50"] is not None)
p99 = statistics.median(r["lag_us"]["p99"] for r in runs if r["lag_us"]["p99"] is not None)
mx = max((r["lag_us"]["max"] or 0) for r in runs)
print(f"kamailio dmq_usrloc pair: {seen} of {total} bindings listed by the other node; "
      f"lag (A's 200 OK to B listing it) median of {len(runs)} runs: p50 {p50/1000:.2f} ms, "
      f"p99 {p99/1000:.2f} ms; max {mx/1000:.2f} ms")
PY
