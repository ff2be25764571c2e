#!/usr/bin/env python3
"""Turn a bench/compare.sh result directory into the BENCHMARKS.md table.

Knee: the highest rate step with no timeouts, no retransmissions, under 0.1%
errors and at least 95% of the offered rate achieved; median over rounds.
CPU per 100k REGISTERs: server CPU seconds over answered requests, median over
the clean runs at steps both servers passed. Latency: p99 at the step nearest
half of regmesh's knee.
"""
import json, statistics, sys, os

out = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
for r in runs:
    r["d"] = json.load(open(r["file"]))

def clean(r):
    d = r["d"]
    return (d["timeouts"] == 0 and d["retransmissions"] == 0
            and d["errors"] / max(d["answered"], 1) < 0.001
            and d["rate_achieved"] >= 0.95 * r["rate"])

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

rows = []
for scen in ("auth=0", "auth=1"):
    sr = [r for r in runs if r["scenario"] == scen]
    if not sr:
        continue
    rounds = sorted({r["round"] for r in sr})
    knee = {}
    for srv in ("kamailio", "regmesh"):
        per_round = []
        for rd in rounds:
            ok = [r["rate"] for r in sr if r["server"] == srv and r["round"] == rd and clean(r)]
            per_round.append(max(ok) if ok else 0)
        knee[srv] = med(per_round)
    both = {r["rate"] for r in sr if clean(r) and r["server"] == "kamailio"} & \
           {r["rate"] for r in sr if clean(r) and r["server"] == "regmesh"}
    cpu = {}
    for srv in ("kamailio", "regmesh"):
        cpu[srv] = med([r["d"]["server_cpu_s"] / max(r["d"]["answered"], 1) * 1e5
                        for r in sr if r["server"] == srv and r["rate"] in both and clean(r)])
    half = (knee["regmesh"] or 0) / 2
    steps = sorted({r["rate"] for r in sr})
    near = min(steps, key=lambda s: abs(s - half)) if steps else None
    lat = {}
    for srv in ("kamailio", "regmesh"):
        lat[srv] = med([r["d"]["latency_us"]["p99"] for r in sr if r["server"] == srv and r["rate"] == near])
    rows.append((scen, knee, cpu, near, lat))

def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"

print("| scenario | metric | Kamailio | regmesh | regmesh/Kamailio |")
print("|---|---|---|---|---|")
for scen, knee, cpu, near, lat in rows:
    name = "no auth" if scen == "auth=0" else "digest auth"
    print(f"| {name} | REGISTER knee (req/s, median) | {knee['kamailio']} | {knee['regmesh']} | {ratio(knee['regmesh'], knee['kamailio'])} |")
    f = lambda v: f"{v:.2f}" if v is not None else "n/a"
    print(f"| {name} | server CPU s per 100k REGISTERs | {f(cpu['kamailio'])} | {f(cpu['regmesh'])} | {ratio(cpu['regmesh'], cpu['kamailio'])} |")
    print(f"| {name} | p99 latency at {near}/s (µs) | {lat['kamailio']} | {lat['regmesh']} | {ratio(lat['regmesh'], lat['kamailio'])} |")
mem_path = os.path.join(out, "memory.json")
if os.path.exists(mem_path):
    m = json.load(open(mem_path))
    n = m["bindings"]
    k = (m["kamailio_pss_kib"][1] - m["kamailio_pss_kib"][0]) * 1024 / n
    r = (m["regmesh_pss_kib"][1] - m["regmesh_pss_kib"][0]) * 1024 / n
    print(f"| {n} bindings | memory per binding (bytes, PSS delta) | {k:.0f} | {r:.0f} | {ratio(r, k)} |")
    print(f"| {n} bindings | restart to serving (s) | n/a (memory-only) | {m['regmesh_restart_s']:.2f} | |")
