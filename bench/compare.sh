#!/usr/bin/env bash
# regmesh beside Kamailio, in one run, on loopback.
#
#   bench/compare.sh                 # full run (about 15-25 minutes)
#   QUICK=1 bench/compare.sh         # a few minutes, smaller steps
#
# Installs Kamailio from Debian if missing, builds regmesh (release), then
# for each round and each rate step drives Kamailio (memory-only registrar,
# bench/kamailio-registrar.cfg) and regmesh (production defaults: durable,
# fsync before 200 OK) alternately with the same generator (`regmesh bench`)
# and the same AoR set. Reports medians over rounds and regmesh/Kamailio
# ratios as a markdown table on stdout; raw JSON lands in $OUT.
# Every address used is on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}; RATES=${RATES:-"5000 10000 20000"}; DUR=${DUR:-3s}
  AORS=${AORS:-10000}; MILLION=${MILLION:-100000}
else
  ROUNDS=${ROUNDS:-3}; RATES=${RATES:-"5000 10000 15000 20000 30000 40000 60000"}; DUR=${DUR:-5s}
  AORS=${AORS:-50000}; MILLION=${MILLION:-1000000}
fi
PASSWORD=bench-password
KPORT=5070; RPORT=5080; RPC=127.0.0.1:9080
OUT=${OUT:-$(mktemp -d /tmp/regmesh-compare.XXXX)}
echo "compare: results in $OUT" >&2

command -v kamailio >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio
}
cargo build --release -p regmesh >&2
BIN=$PWD/target/release/regmesh
# Both servers may ask for large UDP receive buffers (best effort).
sysctl -qw net.core.rmem_max=16777216 net.core.wmem_max=16777216 2>/dev/null || true

KPID=; RPID=
cleanup() {
  [ -n "$KPID" ] && kill "$KPID" 2>/dev/null || true
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_udp() { # port
  for _ in $(seq 1 100); do
    ss -lun | grep -q ":$1 " && return 0
    sleep 0.1
  done
  echo "compare: nothing listens on udp $1" >&2; return 1
}

# utime+stime ticks of a process and all its children.
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [ -r /proc/$p/stat ] || continue
    total=$((total + $(awk '{sub(/.*\) /,""); print $12 + $13}' /proc/$p/stat)))
  done
  echo $total
}

# Proportional set size (KiB) of a process tree (shared memory counted once).
pss_kib() {
  local total=0 p v
  for p in $1 $(pgrep -P "$1" || true); do
    v=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo $total
}

start_kamailio() { # auth(0|1)
  local args=(-DD -E -f bench/kamailio-registrar.cfg -A "LISTEN=udp:127.0.0.1:$KPORT" -A WORKERS=2 -m 4096 -M 64)
  [ "$1" = 1 ] && args+=(-A WITH_AUTH)
  kamailio "${args[@]}" >"$OUT/kamailio.log" 2>&1 &
  KPID=$!
  wait_udp $KPORT
}
stop_kamailio() { kill "$KPID" 2>/dev/null || true; wait "$KPID" 2>/dev/null || true; KPID=; }

start_regmesh() { # auth(0|1) [keep-data]
  [ "${2:-}" = keep ] || rm -rf "$OUT/rm-data"
  cat >"$OUT/regmesh.toml" <<CFG
[node]
id = 1
data_dir = "$OUT/rm-data"
[sip]
listen = ["udp:127.0.0.1:$RPORT"]
[registrar]
default_expires = 3600
min_expires = 60
max_expires = 86400
[auth]
enabled = $([ "$1" = 1 ] && echo true || echo false)
secret = "bench-secret-0123456789abcdef"
[rpc]
listen = "$RPC"
[log]
level = "warn"
CFG
  rm -f "$OUT/ready.json"
  local t0; t0=$(date +%s.%N)
  "$BIN" serve --config "$OUT/regmesh.toml" --ready-file "$OUT/ready.json" >>"$OUT/regmesh.log" 2>&1 &
  RPID=$!
  for _ in $(seq 1 600); do [ -f "$OUT/ready.json" ] && break; sleep 0.05; done
  [ -f "$OUT/ready.json" ] || { echo "compare: regmesh did not start" >&2; tail "$OUT/regmesh.log" >&2; return 1; }
  STARTUP_S=$(echo "$(date +%s.%N) - $t0" | bc)
}
stop_regmesh() { kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; RPID=; }

provision_regmesh() { # n
  python3 - "$1" "$RPC" "$PASSWORD" <<'PY'
import json, sys, urllib.request
n, rpc, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for start in range(0, n, 2000):
    batch = [{"jsonrpc": "2.0", "id": i, "method": "subscriber.add",
              "params": [f"user{i}@example.com", pw]} for i in range(start, min(n, start + 2000))]
    req = urllib.request.Request(f"http://{rpc}/RPC", json.dumps(batch).encode(),
                                 {"Content-Type": "application/json"})
    out = json.load(urllib.request.urlopen(req, timeout=120))
    bad = [r for r in out if "error" in r]
    if bad:
        sys.exit(f"provisioning failed: {bad[0]}")
PY
}

bench() { # name port rate auth extra...
  local name=$1 port=$2 rate=$3 auth=$4; shift 4
  local pid; [ "$name" = kamailio ] && pid=$KPID || pid=$RPID
  local c0 c1 file="$OUT/$name-$rate-$RANDOM.json"
  local a=(); [ "$auth" = 1 ] && a=(--password "$PASSWORD")
  c0=$(cpu_ticks "$pid")
  "$BIN" bench --target 127.0.0.1:$port --aors "$AORS" --rate "$rate" --duration "$DUR" \
    --sockets 2 --quiet --json "$file" "${a[@]}" "$@" 2>>"$OUT/bench.log" || true
  c1=$(cpu_ticks "$pid")
  python3 - "$file" "$((c1 - c0))" <<'PY'
import json, sys
f, ticks = sys.argv[1], int(sys.argv[2])
d = json.load(open(f)); d["server_cpu_s"] = ticks / 100.0
json.dump(d, open(f, "w"))
PY
  echo "$file"
}

ok_run() { # json rate -> exit 0 when clean at that rate
  python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); rate = float(sys.argv[2])
ans = max(d["answered"], 1)
clean = d["timeouts"] == 0 and d["retransmissions"] == 0 and d["errors"] / ans < 0.001 \
        and d["rate_achieved"] >= 0.95 * rate
sys.exit(0 if clean else 1)
PY
}

declare -A KNEE
scenario() { # auth
  local auth=$1 round rate name port
  start_kamailio "$auth"; start_regmesh "$auth"
  [ "$auth" = 1 ] && provision_regmesh "$AORS"
  # Seed both with the AoR set once so every step is a refresh storm.
  bench kamailio $KPORT 5000 "$auth" --mix 1:0:0 --duration 600s --count "$AORS" >/dev/null
  bench regmesh $RPORT 5000 "$auth" --mix 1:0:0 --duration 600s --count "$AORS" >/dev/null
  for round in $(seq 1 "$ROUNDS"); do
    for name in kamailio regmesh; do KNEE[$name-$auth-$round]=0; done
    for rate in $RATES; do
      for name in kamailio regmesh; do
        [ "$name" = kamailio ] && port=$KPORT || port=$RPORT
        f=$(bench "$name" "$port" "$rate" "$auth")
        echo "{\"scenario\":\"auth=$auth\",\"round\":$round,\"server\":\"$name\",\"rate\":$rate,\"file\":\"$f\"}" >>"$OUT/runs.jsonl"
        ok_run "$f" "$rate" && KNEE[$name-$auth-$round]=$rate
      done
    done
    echo "compare: auth=$auth round $round knees: kamailio ${KNEE[kamailio-$auth-$round]} regmesh ${KNEE[regmesh-$auth-$round]}" >&2
  done
  stop_kamailio; stop_regmesh
}

scenario 0
scenario 1

# Memory per binding at $MILLION bindings, and regmesh restart time.
start_kamailio 0; start_regmesh 0
kb0=$(pss_kib "$KPID"); rb0=$(pss_kib "$RPID")
bench kamailio $KPORT 10000 0 --aors "$MILLION" --count "$MILLION" --duration 3600s --timeout 30s >/dev/null
bench regmesh $RPORT 10000 0 --aors "$MILLION" --count "$MILLION" --duration 3600s --timeout 30s >/dev/null
sleep 1
kb1=$(pss_kib "$KPID"); rb1=$(pss_kib "$RPID")
bindings=$(curl -s -d '{"jsonrpc":"2.0","id":1,"method":"stats.get_statistics","params":["usrloc:registered_users"]}' "http://$RPC/RPC" || true)
stop_regmesh
start_regmesh 0 keep
restart_s=$STARTUP_S
stop_kamailio; stop_regmesh
echo "{\"kamailio_pss_kib\":[$kb0,$kb1],\"regmesh_pss_kib\":[$rb0,$rb1],\"bindings\":$MILLION,\"regmesh_restart_s\":$restart_s,\"stats\":$(printf '%s' "${bindings:-null}" | python3 -c 'import sys,json; print(json.dumps(sys.stdin.read()))')}" >"$OUT/memory.json"

python3 bench/report.py "$OUT"
