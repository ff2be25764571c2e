#!/usr/bin/env bash
# regmesh beside Kamailio, in one run, on loopback.
#
#   bench/compare.sh                 # full run (about 20-30 minutes on 2 cores)
#   QUICK=1 bench/compare.sh         # a few minutes, smaller steps
#
# Installs Kamailio from Debian if missing, builds regmesh (release), then:
#  1. the generator's own ceiling against `regmesh bench-responder` (a trivial
#     UDP 200 responder), paced at every rate step and closed-loop;
#  2. for each scenario (no auth, digest auth) and each round, steps the
#     offered rate, driving Kamailio (memory-only registrar,
#     bench/kamailio-registrar.cfg) and regmesh (production defaults: durable,
#     fsync before 200 OK) alternately with the same generator (`regmesh
#     bench`) and the same AoR set; then a closed-loop latency probe
#     (`--rate 0 --window W`, no pacing) at a few windows;
#  3. resident memory (PSS) per binding at $MILLION bindings for both, and
#     regmesh's restart-to-serving time with those bindings on disk;
#  4. the machine's own noise before the first step and after the last:
#     `cyclictest` (rt-tests) at SCHED_FIFO 99 on each core, idle, NOISE_S
#     seconds. A vCPU the hypervisor stops for milliseconds delays every
#     answer queued meanwhile, whatever the server; this says how often it
#     happened around the run, so the tails of runs on different days can
#     be told apart.
# Reports medians over rounds and regmesh/Kamailio ratios as markdown on
# stdout (bench/report.py); raw JSON lands in $OUT.
# Every address used is on 127.0.0.1.
#
# Knobs (environment): QUICK, ROUNDS, RATES, RATES_AUTH, DUR, AORS, MILLION,
# FILL_RATE, WINDOWS, SCENARIOS ("0 1"; 0 = no auth, 1 = digest auth),
# CEILING (1), MEMORY (1), KWORKERS (2), GEN_NICE (19), NOISE_S (10; 0 = no
# noise probe), OUT.
#
# The generator shares the 2 cores with the server under test. It paces in
# 1 ms ticks with batched socket I/O (bench/README.md: ~0.1 core at
# 10,000/s, ~0.45 core at 150,000/s), and still runs at `nice 19` so the
# server always gets the CPU first (GEN_NICE=0 to disable). Its sockets ask
# for 8 MB receive buffers themselves; net.core.rmem_default is still raised
# to 8 MB for the run (restored at exit) for `bench-responder`. Both
# servers set their own buffers (Kamailio maxbuffer, regmesh 8 MB).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}; RATES=${RATES:-"10000 30000 50000"}; RATES_AUTH=${RATES_AUTH:-"5000 10000 20000"}
  DUR=${DUR:-3s}; AORS=${AORS:-10000}; MILLION=${MILLION:-100000}; WINDOWS=${WINDOWS:-"8 64"}
else
  ROUNDS=${ROUNDS:-3}
  RATES=${RATES:-"10000 20000 30000 40000 50000 60000 70000 80000 90000 100000"}
  RATES_AUTH=${RATES_AUTH:-"10000 15000 20000 25000 30000 35000 40000 50000 60000"}
  DUR=${DUR:-5s}; AORS=${AORS:-50000}; MILLION=${MILLION:-1000000}; WINDOWS=${WINDOWS:-"2 8 32 128"}
fi
SCENARIOS=${SCENARIOS:-"0 1"}; CEILING=${CEILING:-1}; MEMORY=${MEMORY:-1}
NOISE_S=${NOISE_S:-10}
KWORKERS=${KWORKERS:-2}; GEN_NICE=${GEN_NICE:-19}; FILL_RATE=${FILL_RATE:-10000}
PASSWORD=bench-password
KPORT=5070; RPORT=5080; XPORT=5099; RPC=127.0.0.1:9080
OUT=${OUT:-$(mktemp -d /tmp/regmesh-compare.XXXX)}
mkdir -p "$OUT"
echo "compare: results in $OUT" >&2

command -v kamailio >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio
}
if [ "$NOISE_S" != 0 ] && ! command -v cyclictest >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rt-tests >&2 ||
    echo "compare: rt-tests not installed; no noise probe" >&2
fi
cargo build --release -p regmesh >&2
BIN=$PWD/target/release/regmesh
. bench/lib.sh

# Large UDP buffers (best effort; see the header).
RMEM_DEFAULT0=$(sysctl -n net.core.rmem_default 2>/dev/null || echo)
sysctl -qw net.core.rmem_max=16777216 net.core.wmem_max=16777216 2>/dev/null || true
sysctl -qw net.core.rmem_default=8388608 2>/dev/null ||
  echo "compare: could not raise net.core.rmem_default; the generator may drop answers" >&2

KPID=; RPID=; XPID=
cleanup() {
  [ -n "$KPID" ] && kill "$KPID" 2>/dev/null || true
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null || true
  [ -n "$XPID" ] && kill "$XPID" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$RMEM_DEFAULT0" ] && sysctl -qw net.core.rmem_default="$RMEM_DEFAULT0" 2>/dev/null || true
}
trap cleanup EXIT

wait_udp() { # port
  for _ in $(seq 1 100); do
    ss -lun | grep -q "127.0.0.1:$1 " && return 0
    sleep 0.1
  done
  echo "compare: nothing listens on udp $1" >&2; return 1
}

# utime+stime ticks of a process, its threads and its child processes.
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
  # TLSF for shared and private memory: Kamailio's default allocator (qm)
  # took 41% of its CPU here (perf), and TLSF halves its CPU per REGISTER
  # (BENCHMARKS.md, "Kamailio's allocator").
  local args=(-DD -E -f bench/kamailio-registrar.cfg -A "LISTEN=udp:127.0.0.1:$KPORT" -A "WORKERS=$KWORKERS" -m 4096 -M 64 -x tlsf -X tlsf)
  [ "$1" = 1 ] && args+=(-A WITH_AUTH)
  kamailio "${args[@]}" >>"$OUT/kamailio.log" 2>&1 &
  KPID=$!
  wait_udp $KPORT
  sleep 0.5
  # Main process + UDP workers + timers: fail loudly if the workers are missing.
  local n; n=$(pgrep -c -P "$KPID" || true)
  [ "${n:-0}" -ge "$KWORKERS" ] || { echo "compare: kamailio has $n children, expected >= $KWORKERS workers" >&2; return 1; }
}
stop_kamailio() { kill "$KPID" 2>/dev/null || true; wait "$KPID" 2>/dev/null || true; KPID=; }

start_regmesh() { # auth(0|1) [keep]
  [ "${2:-}" = keep ] || rm -rf "$OUT/rm-data"
  regmesh_config "$OUT/regmesh.toml" "$OUT/rm-data" "$RPORT" "$1" "$RPC"
  local t0; t0=$(date +%s.%N)
  regmesh_serve "$BIN" "$OUT/regmesh.toml" "$OUT" || { echo "compare: regmesh did not start" >&2; return 1; }
  RPID=$PID
  STARTUP_S=$(echo "$(date +%s.%N) - $t0" | bc)
}
stop_regmesh() { kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; RPID=; }

provision_regmesh() { regmesh_provision "$1" "$RPC" "$PASSWORD"; } # n

rpc_stats() { # -> JSON string of usrloc statistics (regmesh)
  curl -s -m 30 -d '{"jsonrpc":"2.0","id":1,"method":"stats.fetch","params":["usrloc:"]}' "http://$RPC/RPC" || echo null
}

# One generator run; prints the JSON file. The server's CPU ticks over the
# run are added as server_cpu_s.
bench() { # name port rate auth extra...
  local name=$1 port=$2 rate=$3 auth=$4; shift 4
  local pid
  case $name in kamailio) pid=$KPID ;; regmesh) pid=$RPID ;; *) pid=$XPID ;; esac
  local c0 c1 file="$OUT/$name-$rate-$RANDOM$RANDOM.json"
  local a=(); [ "$auth" = 1 ] && a=(--password "$PASSWORD")
  # Defaults unless the caller passes its own (clap refuses a flag twice).
  [[ " $* " == *" --aors "* ]] || a+=(--aors "$AORS")
  [[ " $* " == *" --duration "* ]] || a+=(--duration "$DUR")
  # One Contact per (AoR, n) whatever the run's ports: every step after the
  # seeding refreshes the same bindings (a storm over known phones), rather
  # than adding a contact per AoR per step.
  a+=(--contact-port 5060)
  # regmesh's own answer-time histogram around the run (outside the CPU
  # window): its share of each answer's latency, without the generator's.
  local m0="$OUT/metrics-before" m1="$OUT/metrics-after"
  : >"$m0"; : >"$m1"
  # (A failed scrape leaves the file empty and the run without it; it must
  # not stop the script, which runs under `set -e`.)
  if [ "$name" = regmesh ]; then curl -s -m 5 "http://$RPC/metrics" >"$m0" || true; fi
  c0=$(cpu_ticks "$pid")
  nice -n "$GEN_NICE" "$BIN" bench --target 127.0.0.1:$port --rate "$rate" \
    --sockets 2 --quiet --json "$file" "${a[@]}" "$@" 2>>"$OUT/bench.log" || true
  c1=$(cpu_ticks "$pid")
  if [ "$name" = regmesh ]; then curl -s -m 5 "http://$RPC/metrics" >"$m1" || true; fi
  [ -s "$file" ] || { echo "compare: the generator wrote no report (see $OUT/bench.log)" >&2; return 1; }
  python3 - "$file" "$((c1 - c0))" "$m0" "$m1" <<'PY'
import json, sys
f, ticks = sys.argv[1], int(sys.argv[2])
d = json.load(open(f)); d["server_cpu_s"] = ticks / 100.0

def buckets(path, pre):
    """le (s) -> cumulative count of the histogram whose bucket lines start with `pre`."""
    out = {}
    for line in open(path):
        if line.startswith(pre):
            le, n = line[len(pre):].split('"}')
            out[float("inf") if le == "+Inf" else float(le)] = float(n)
    return out

def quantile(cum, p):
    """Linear interpolation inside the bucket, as Prometheus does; µs."""
    total = cum[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in cum:
        if n >= p * total:
            if le == float("inf"):
                return round(prev_le * 1e6)
            return round((prev_le + (le - prev_le) * (p * total - prev_n) / max(n - prev_n, 1)) * 1e6)
        prev_le, prev_n = le, n

def summary(pre):
    """count and p50/p99/p99.9 (µs) of one histogram over the run, or None."""
    try:
        a, b = buckets(sys.argv[3], pre), buckets(sys.argv[4], pre)
    except OSError:
        return None
    cum = sorted((le, b[le] - a.get(le, 0)) for le in b)
    if not cum or cum[-1][1] <= 0:
        return None
    return {"answers": int(cum[-1][1]),
            **{k: quantile(cum, q) for k, q in (("p50", .5), ("p99", .99), ("p999", .999))}}

server = {}
for wait in ("commit", "none"):
    s = summary('regmesh_sip_udp_answer_seconds_bucket{wait="%s",le="' % wait)
    if s:
        server[wait] = s
if server:
    d["server_answer_us"] = server
# The first part of those times: each datagram's wait in the socket buffer.
queue = summary('regmesh_sip_udp_queue_seconds_bucket{le="')
if queue:
    d["server_queue_us"] = queue
json.dump(d, open(f, "w"))
PY
  echo "$file"
}

record() { # scenario round server rate kind file
  echo "{\"scenario\":\"$1\",\"round\":$2,\"server\":\"$3\",\"rate\":$4,\"kind\":\"$5\",\"file\":\"$6\"}" >>"$OUT/runs.jsonl"
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

summary() { # json -> one line
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['rate_achieved']:.0f}/s status {d['status']} retx {d['retransmissions']} "
      f"tmo {d['timeouts']} p50 {d['latency_us']['p50']}us p99 {d['latency_us']['p99']}us "
      f"(client p99 {d.get('client_latency_us', {}).get('p99')}us) "
      f"server_cpu {d.get('server_cpu_s')}s"
      + (f" own p99 {d['server_answer_us']['commit']['p99']}us" if "commit" in d.get("server_answer_us", {}) else ""))
PY
}

closed_loop() { # scenario round name port auth
  local w f
  for w in $WINDOWS; do
    f=$(bench "$3" "$4" 0 "$5" --window "$w")
    record "$1" "$2" "$3" "$w" closed "$f"
    echo "compare: $1 round $2 $3 closed-loop window $w: $(summary "$f")" >&2
    sleep 1
  done
}

# The machine's noise, idle (see the header, 4.): how late a SCHED_FIFO 99
# thread on each core wakes from a 500 µs sleep. Nothing in the guest but
# interrupts can delay it; what is left is the hypervisor.
noise_probe() { # when
  { [ "$NOISE_S" != 0 ] && command -v cyclictest >/dev/null; } || return 0
  local f="$OUT/noise-$1.txt"
  cyclictest -m -t "$(nproc)" -a -p 99 -i 500 -D "$NOISE_S" -q -h 50000 >"$f" 2>&1 || {
    echo "compare: cyclictest failed (SCHED_FIFO needs root); no noise probe" >&2
    return 0
  }
  python3 - "$f" "$1" "$NOISE_S" >>"$OUT/noise.jsonl" <<'PY'
import json, sys
samples = late1 = late5 = worst = 0
for line in open(sys.argv[1]):
    cols = line.split()
    if line.startswith("#") or len(cols) < 2 or not cols[0].isdigit():
        continue
    us, n = int(cols[0]), sum(int(c) for c in cols[1:])
    samples += n
    late1 += n if us >= 1000 else 0
    late5 += n if us >= 5000 else 0
    worst = max(worst, us) if n else worst
print(json.dumps({"when": sys.argv[2], "seconds": int(sys.argv[3]), "samples": samples,
                  "late_1ms": late1, "late_5ms": late5, "max_us": worst}))
PY
}

noise_probe before

# 1. The generator's ceiling against a trivial responder.
if [ "$CEILING" = 1 ]; then
  "$BIN" bench-responder --listen 127.0.0.1:$XPORT --threads 2 2>>"$OUT/responder.log" &
  XPID=$!
  wait_udp $XPORT
  for rate in $RATES 100000 150000; do
    f=$(bench responder $XPORT "$rate" 0)
    record ceiling 1 responder "$rate" step "$f"
    echo "compare: ceiling $rate/s: $(summary "$f")" >&2
  done
  closed_loop ceiling 1 responder $XPORT 0
  kill "$XPID" 2>/dev/null || true; wait "$XPID" 2>/dev/null || true; XPID=
fi

# 2. Knees, CPU, latency.
declare -A KNEE FAILS
scenario() { # auth
  local auth=$1 round rate name port rates f
  [ "$auth" = 1 ] && rates=$RATES_AUTH || rates=$RATES
  start_kamailio "$auth"; start_regmesh "$auth"
  if [ "$auth" = 1 ]; then
    local t0=$SECONDS
    provision_regmesh "$AORS"
    echo "compare: provisioned $AORS regmesh subscribers in $((SECONDS - t0))s" >&2
  fi
  # Seed both with the AoR set once so every step is a refresh storm.
  f=$(bench kamailio $KPORT 5000 "$auth" --mix 1:0:0 --duration 600s --count "$AORS")
  echo "compare: auth=$auth seed kamailio: $(summary "$f")" >&2
  f=$(bench regmesh $RPORT 5000 "$auth" --mix 1:0:0 --duration 600s --count "$AORS")
  echo "compare: auth=$auth seed regmesh: $(summary "$f")" >&2
  if [ "$auth" = 1 ]; then
    # Auth really challenges: a wrong password must never get a 200.
    for name in kamailio regmesh; do
      [ "$name" = kamailio ] && port=$KPORT || port=$RPORT
      f=$(bench "$name" "$port" 1000 0 --password wrong-password --count 200 --duration 10s)
      echo "compare: auth check, $name with a wrong password: $(summary "$f")" >&2
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(1 if d["status"].get("200") else 0)' "$f" ||
        { echo "compare: $name accepted a wrong password: auth is not on" >&2; return 1; }
    done
  fi
  for round in $(seq 1 "$ROUNDS"); do
    for name in kamailio regmesh; do KNEE[$name]=0; FAILS[$name]=0; done
    for rate in $rates; do
      for name in kamailio regmesh; do
        # Two failed steps in a row: this server's knee is behind us.
        [ "${FAILS[$name]}" -ge 2 ] && continue
        [ "$name" = kamailio ] && port=$KPORT || port=$RPORT
        f=$(bench "$name" "$port" "$rate" "$auth")
        record "auth=$auth" "$round" "$name" "$rate" step "$f"
        if ok_run "$f" "$rate"; then KNEE[$name]=$rate; FAILS[$name]=0; else FAILS[$name]=$((FAILS[$name] + 1)); fi
        echo "compare: auth=$auth round $round $name $rate/s: $(summary "$f")" >&2
        sleep 1 # let a backlog drain before the other server's turn
      done
    done
    echo "compare: auth=$auth round $round knees: kamailio ${KNEE[kamailio]} regmesh ${KNEE[regmesh]}" >&2
    closed_loop "auth=$auth" "$round" kamailio $KPORT "$auth"
    closed_loop "auth=$auth" "$round" regmesh $RPORT "$auth"
    # The store file after this round (it grows under refresh load).
    echo "{\"scenario\":\"auth=$auth\",\"round\":$round,\"bytes\":$(du -sb "$OUT/rm-data" | cut -f1),\"rss_kib\":$(awk '/^VmRSS/{print $2}' /proc/$RPID/status)}" >>"$OUT/store-size.jsonl"
  done
  stop_kamailio; stop_regmesh
}

for s in $SCENARIOS; do scenario "$s"; done

# 3. Memory per binding at $MILLION bindings, and regmesh restart time.
if [ "$MEMORY" = 1 ]; then
  start_kamailio 0; start_regmesh 0
  sleep 1
  kb0=$(pss_kib "$KPID"); rb0=$(pss_kib "$RPID")
  f=$(bench kamailio $KPORT "$FILL_RATE" 0 --aors "$MILLION" --count "$MILLION" --mix 1:0:0 --duration 3600s --timeout 30s)
  echo "compare: fill kamailio: $(summary "$f")" >&2; kfill=$f
  f=$(bench regmesh $RPORT "$FILL_RATE" 0 --aors "$MILLION" --count "$MILLION" --mix 1:0:0 --duration 3600s --timeout 30s)
  echo "compare: fill regmesh: $(summary "$f")" >&2; rfill=$f
  # A fill that met overload (503) is topped up once at half the rate: the
  # AoRs already stored are refreshed, the missing ones created.
  if ! python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["status"].get("200",0)==d["sent"] else 1)' "$f"; then
    f=$(bench regmesh $RPORT $((FILL_RATE / 2)) 0 --aors "$MILLION" --count "$MILLION" --mix 1:0:0 --duration 3600s --timeout 30s)
    echo "compare: fill regmesh again: $(summary "$f")" >&2; rfill2=$f
  fi
  sleep 2
  kb1=$(pss_kib "$KPID"); rb1=$(pss_kib "$RPID")
  stats1=$(rpc_stats)
  stop_regmesh
  db_bytes=$(du -sb "$OUT/rm-data" | cut -f1)
  # Warm restart (the store file in the page cache), then a cold one.
  start_regmesh 0 keep
  restart_s=$STARTUP_S
  stop_regmesh
  # Cold restart: evict just the store file from the page cache first.
  for db in "$OUT"/rm-data/location/*; do
    python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$db"
  done
  start_regmesh 0 keep
  cold_s=$STARTUP_S
  stats2=$(rpc_stats)
  # Serving after the restart: 1000 REGISTERs for restored AoRs answer 200.
  f=$(bench regmesh $RPORT 1000 0 --aors "$MILLION" --count 1000 --duration 30s)
  echo "compare: after restart: $(summary "$f")" >&2; rafter=$f
  stop_kamailio; stop_regmesh
  python3 - "$OUT/memory.json" "$stats1" "$stats2" <<PY
import json, sys
def js(s):
    try:
        return json.loads(s)
    except ValueError:
        return s
json.dump({"bindings": $MILLION, "kamailio_pss_kib": [$kb0, $kb1], "regmesh_pss_kib": [$rb0, $rb1],
           "regmesh_db_bytes": $db_bytes, "regmesh_restart_s": $restart_s, "regmesh_cold_restart_s": $cold_s,
           "kamailio_fill": "$kfill", "regmesh_fill": "$rfill", "regmesh_fill2": "${rfill2:-}", "regmesh_after_restart": "$rafter",
           "stats_before_restart": js(sys.argv[2]), "stats_after_restart": js(sys.argv[3])},
          open(sys.argv[1], "w"), indent=1)
PY
fi

noise_probe after

python3 bench/report.py "$OUT"
