#!/usr/bin/env bash
# CPU profile of regmesh and Kamailio under the same paced load, as flame
# graphs, plus each server's CPU per thread (or process) and context
# switches over the profiled window. Without auth unless AUTH=1 (digest
# auth on both, 50,000 subscribers provisioned); both as in bench/compare.sh
# (regmesh durable with production defaults, Kamailio memory-only, 2 UDP
# workers). Needs `perf` (Debian: linux-perf) and inferno (installed with
# `cargo install inferno` when missing).
#
#   RATE=40000 SECONDS_=10 bench/profile.sh            # both, SVGs in $OUT
#   SERVERS=regmesh BIN=/tmp/other/regmesh bench/profile.sh
#   AUTH=1 RATE=30000 PERF=0 bench/profile.sh          # digest auth, no profile
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-40000}
SECONDS_=${SECONDS_:-10}
AORS=${AORS:-50000}
FREQ=${FREQ:-999}
PERF=${PERF:-1}   # 0: only the CPU and switch counts, no profile
SERVERS=${SERVERS:-"kamailio regmesh"}
AUTH=${AUTH:-0}
PASSWORD=bench-password
OUT=${OUT:-$(mktemp -d /tmp/regmesh-profile.XXXX)}
BIN=${BIN:-$PWD/target/release/regmesh}
PORT=5091
RPC=127.0.0.1:9191
mkdir -p "$OUT"
. bench/lib.sh
command -v perf >/dev/null || { echo "profile: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || cargo install inferno --locked >&2
PATH=$HOME/.cargo/bin:$PATH
[ -x "$BIN" ] || cargo build --release -p regmesh >&2

# Per thread name: CPU seconds (utime+stime) and voluntary/involuntary
# context switches, summed over every task of the process tree.
tasks() {
  local p t
  for p in $1 $(pgrep -P "$1" || true); do
    for t in /proc/"$p"/task/*; do
      awk -v n="$(cat "$t/comm")" '{sub(/.*\) /, ""); printf "%s %d ", n, $12 + $13}' "$t/stat" 2>/dev/null || continue
      awk '/^voluntary_ctxt_switches/{v=$2} /^nonvoluntary_ctxt_switches/{n=$2} END {print v, n}' "$t/status"
    done
  done | awk '{c[$1]+=$2; v[$1]+=$3; n[$1]+=$4} END {for (k in c) print k, c[k], v[k], n[k]}' | sort
}

for server in $SERVERS; do
  case $server in
    regmesh)
      rm -rf "$OUT/rm-data"
      regmesh_config "$OUT/regmesh.toml" "$OUT/rm-data" "$PORT" "$AUTH" "$([ "$AUTH" = 1 ] && echo "$RPC")"
      regmesh_serve "$BIN" "$OUT/regmesh.toml" "$OUT"
      if [ "$AUTH" = 1 ]; then regmesh_provision "$AORS" "$RPC" "$PASSWORD"; fi
      ;;
    kamailio)
      kamailio -DD -E -f bench/kamailio-registrar.cfg -A "LISTEN=udp:127.0.0.1:$PORT" -A WORKERS=2 -m 4096 -M 64 ${KAMAILIO_ARGS:--x tlsf -X tlsf} \
        $([ "$AUTH" = 1 ] && echo -A WITH_AUTH) \
        >>"$OUT/kamailio.log" 2>&1 &
      PID=$!
      sleep 2
      ;;
    *) echo "profile: unknown server $server" >&2; exit 1 ;;
  esac
  # Seed, then profile the middle of a run over the same bindings.
  auth_args=()
  if [ "$AUTH" = 1 ]; then auth_args=(--password "$PASSWORD"); fi
  nice -n 19 "$BIN" bench --target 127.0.0.1:$PORT --rate 10000 --aors "$AORS" --count "$AORS" --mix 1:0:0 \
    --contact-port 5060 --quiet --timeout 30s --json "$OUT/$server-seed.json" "${auth_args[@]}" >/dev/null 2>&1
  # First window: CPU and switches without perf (sampling adds its own
  # cost); second window: the profile.
  nice -n 19 "$BIN" bench --target 127.0.0.1:$PORT --rate "$RATE" --aors "$AORS" --duration $(((PERF + 1) * SECONDS_ + 3))s \
    --contact-port 5060 --quiet --json "$OUT/$server-run.json" "${auth_args[@]}" >/dev/null 2>&1 &
  GEN=$!
  sleep 2
  tasks "$PID" >"$OUT/$server-tasks0"
  sleep "$SECONDS_"
  tasks "$PID" >"$OUT/$server-tasks1"
  if [ "$PERF" = 1 ]; then
    perf record -F "$FREQ" -g -o "$OUT/$server.perf" -p "$(echo "$PID" $(pgrep -P "$PID" || true) | tr ' ' ,)" \
      -- sleep "$SECONDS_" 2>>"$OUT/perf.log"
  fi
  wait "$GEN"
  kill "$PID"; wait "$PID" 2>/dev/null || true
  if [ "$PERF" = 1 ]; then
    perf script -i "$OUT/$server.perf" 2>/dev/null | inferno-collapse-perf >"$OUT/$server.folded"
    inferno-flamegraph --title "$server, $RATE REGISTER/s paced$([ "$AUTH" = 1 ] && echo ", digest auth"), $SECONDS_ s" <"$OUT/$server.folded" >"$OUT/$server.svg"
  fi
  python3 - "$OUT/$server-run.json" "$OUT/$server-tasks0" "$OUT/$server-tasks1" "$server" "$SECONDS_" "$(getconf CLK_TCK)" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
def load(f):
    return {l.split()[0]: list(map(int, l.split()[1:])) for l in open(f) if l.strip()}
a, b, name, secs, tck = load(sys.argv[2]), load(sys.argv[3]), sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
reqs = run["rate_achieved"] * secs  # paced: the rate held over the window
lat = run["latency_us"]
print(f"{name}: {run['rate_achieved']:.0f}/s achieved, status {run['status']}, retrans {run['retransmissions']}, "
      f"p50 {lat['p50'] / 1000:.2f} ms, p99 {lat['p99'] / 1000:.2f} ms")
total = 0
for k in sorted(b):
    d = [y - x for x, y in zip(a.get(k, [0, 0, 0]), b[k])]
    if d[0] == 0 and d[1] == 0:
        continue
    total += d[0]
    print(f"  {k:18s} CPU {d[0] / tck:6.2f} s = {d[0] / tck / reqs * 1e6:5.1f} us/REGISTER; "
          f"switches {d[1] / reqs:.2f} voluntary + {d[2] / reqs:.2f} involuntary per REGISTER")
print(f"  {'total':18s} CPU {total / tck:6.2f} s = {total / tck / reqs * 1e6:5.1f} us/REGISTER")
PY
done
echo "profile: flame graphs in $OUT/*.svg" >&2
