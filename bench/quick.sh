#!/usr/bin/env bash
# Quick A/B of one regmesh build (not the comparison with Kamailio: that is
# bench/compare.sh). Starts `$BIN serve` durable on loopback, seeds AORS AoRs,
# then runs ROUNDS closed-loop runs of DURATION with WINDOW in flight per
# socket and prints, per round: achieved REGISTERs/s, p99 ms, server CPU
# seconds per 100k REGISTERs, and the store's size on disk.
#
#   BIN=target/release/regmesh bench/quick.sh
#   AUTH=1 RATE=20000 bench/quick.sh     # paced instead of closed loop, with digest auth
set -euo pipefail
BIN=${BIN:-target/release/regmesh}
OUT=${OUT:-$(mktemp -d /tmp/regmesh-quick.XXXXXX)}
AORS=${AORS:-50000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WINDOW=${WINDOW:-32}
RATE=${RATE:-0}
AUTH=${AUTH:-0}
PORT=${PORT:-5099}
RPC=${RPC:-127.0.0.1:9099}
PASSWORD=bench-password
mkdir -p "$OUT"
. "$(dirname "$0")/lib.sh"
regmesh_config "$OUT/regmesh.toml" "$OUT/data" "$PORT" "$AUTH" "$RPC"
regmesh_serve "$BIN" "$OUT/regmesh.toml" "$OUT"
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
auth_args=()
if [ "$AUTH" = 1 ]; then
  regmesh_provision "$AORS" "$RPC" "$PASSWORD"
  auth_args=(--password "$PASSWORD")
fi
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
nice -n 19 "$BIN" bench --target "127.0.0.1:$PORT" --rate 5000 --aors "$AORS" --count "$AORS" --contact-port 5060 \
  --mix 1:0:0 --quiet --json "$OUT/seed.json" "${auth_args[@]}" --timeout 30s
tck=$(getconf CLK_TCK)
for r in $(seq 1 "$ROUNDS"); do
  c0=$(cpu)
  nice -n 19 "$BIN" bench --target "127.0.0.1:$PORT" --rate "$RATE" --window "$WINDOW" --sockets 2 --contact-port 5060 \
    --aors "$AORS" --duration "$DURATION" --quiet --json "$OUT/r$r.json" "${auth_args[@]}"
  c1=$(cpu)
  python3 - "$OUT/r$r.json" "$c0" "$c1" "$tck" "$(du -sb "$OUT/data" | cut -f1)" "$r" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
c0, c1, tck, size, r = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
ok = j["status"].get("200", 0)
cpu = (c1 - c0) / tck
print(f"round {r}: {j['rate_achieved']:.0f} req/s, p99 {j['latency_us']['p99'] / 1000:.2f} ms, "
      f"200s {ok}, errors {j['errors']}, retrans {j['retransmissions']}, timeouts {j['timeouts']}, "
      f"server CPU {cpu / max(ok, 1) * 1e5:.2f} s/100k, store {size / 1048576:.1f} MiB")
PY
done
