# Shared by the bench scripts (source it): regmesh's benchmark config and
# start-up. The config is the production defaults except what a benchmark
# must set: the data dir, one UDP listener, Kamailio-like expiry limits
# (bench/kamailio-registrar.cfg), auth, and the RPC listener ("" = none).

# regmesh_config FILE DATA_DIR PORT AUTH(0|1) RPC_LISTEN
# RECEIVE_PAUSE (environment), when set, is sip.udp_receive_pause (left
# out otherwise, so builds before it still start).
# EXTRA_CONFIG (environment), when set, is appended as is, e.g.
#   EXTRA_CONFIG=$'[store]\ncommit_interval = "500us"' bench/quick.sh
regmesh_config() {
  local pause=""
  if [ -n "${RECEIVE_PAUSE:-}" ]; then pause="udp_receive_pause = \"$RECEIVE_PAUSE\""; fi
  cat >"$1" <<CFG
[node]
id = 1
data_dir = "$2"
[sip]
listen = ["udp:127.0.0.1:$3"]
udp_threads = ${UDP_THREADS:-0}
udp_standby_threads = ${UDP_STANDBY:-1}
overload_queue_delay = "${OVERLOAD_DELAY:-50ms}"
$pause
[registrar]
default_expires = 3600
min_expires = 60
max_expires = 86400
[auth]
enabled = $([ "$4" = 1 ] && echo true || echo false)
secret = "bench-secret-0123456789abcdef"
[rpc]
listen = "$5"
socket = ""
[log]
level = "warn"
CFG
  if [ -n "${EXTRA_CONFIG:-}" ]; then printf '%s\n' "$EXTRA_CONFIG" >>"$1"; fi
}

# regmesh_serve BIN CONFIG DIR: start `BIN serve` in the background, wait
# until it is ready (DIR/ready.json), set PID; on failure print its log and
# return 1.
regmesh_serve() {
  rm -f "$3/ready.json"
  "$1" serve --config "$2" --ready-file "$3/ready.json" >>"$3/regmesh.log" 2>&1 &
  PID=$!
  local _
  for _ in $(seq 1 6000); do [ -f "$3/ready.json" ] && return 0; sleep 0.01; done
  echo "bench: $1 did not start" >&2
  tail -20 "$3/regmesh.log" >&2
  return 1
}

# regmesh_provision N RPC PASSWORD: add subscribers user0..user(N-1)@example.com
# with PASSWORD through JSON-RPC at RPC (host:port); exit on any error.
regmesh_provision() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys, urllib.request
n, rpc, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for start in range(0, n, 1000):  # the RPC's batch limit is 1000
    batch = [{"jsonrpc": "2.0", "id": i, "method": "subscriber.add",
              "params": [f"user{i}@example.com", pw]} for i in range(start, min(n, start + 1000))]
    req = urllib.request.Request(f"http://{rpc}/RPC", json.dumps(batch).encode(),
                                 {"Content-Type": "application/json"})
    out = json.load(urllib.request.urlopen(req, timeout=120))
    if not isinstance(out, list):
        sys.exit(f"provisioning failed: {out}")
    bad = [r for r in out if "error" in r]
    if bad:
        sys.exit(f"provisioning failed: {bad[0]}")
PY
}
