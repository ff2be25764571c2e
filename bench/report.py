#!/usr/bin/env python3
"""Turn a bench/compare.sh result directory into the BENCHMARKS.md tables.

Knee: the highest rate step with no timeouts, no retransmissions, under 0.1%
errors and at least 95% of the offered rate achieved; median over rounds.
CPU per 100k REGISTERs: server CPU seconds over answered requests, median over
the clean runs at the steps both servers passed in every round they ran.
Latency: p99 at the paced step nearest half of regmesh's knee (with the
generator's own p99 against the trivial responder at that rate beside it),
and the closed-loop probe (`--rate 0 --window W`: no pacing), medians over
rounds.
"""
import json, os, statistics, sys

out = sys.argv[1]
runs = []
runs_path = os.path.join(out, "runs.jsonl")
with open(runs_path if os.path.exists(runs_path) else os.devnull) as fh:
    for line in fh:
        r = json.loads(line)
        r.setdefault("kind", "step")
        with open(r["file"]) as f:
            r["d"] = json.load(f)
        runs.append(r)


def clean(r):
    d = r["d"]
    return (d["timeouts"] == 0 and d["retransmissions"] == 0
            and d["errors"] / max(d["answered"], 1) < 0.001
            and d["rate_achieved"] >= 0.95 * r["rate"])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def f0(v):
    return "n/a" if v is None else f"{v:,.0f}"


def f2(v):
    return "n/a" if v is None else f"{v:.2f}"


def ms(us):
    return "n/a" if us is None else f"{us / 1000:.2f}"


SERVERS = ("kamailio", "regmesh")
steps_all = [r for r in runs if r["kind"] == "step"]
closed_all = [r for r in runs if r["kind"] == "closed"]

# The generator's ceiling against the trivial responder.
ceiling = {}
ceil_steps = [r for r in steps_all if r["scenario"] == "ceiling"]
if ceil_steps:
    ok = [r["rate"] for r in ceil_steps if clean(r)]
    ceiling["paced_knee"] = max(ok) if ok else 0
    ceiling["p99_at"] = {r["rate"]: r["d"]["latency_us"]["p99"] for r in ceil_steps}
    ceiling["gen_cpu_at"] = {r["rate"]: r["d"]["generator_cpu_s"]["user"]
                             + r["d"]["generator_cpu_s"]["system"] for r in ceil_steps}
    ceiling["elapsed_at"] = {r["rate"]: r["d"]["elapsed_s"] for r in ceil_steps}
ceil_closed = [r for r in closed_all if r["scenario"] == "ceiling"]

rows = []
detail = []
for scen in ("auth=0", "auth=1"):
    sr = [r for r in steps_all if r["scenario"] == scen]
    if not sr:
        continue
    rounds = sorted({r["round"] for r in sr})
    knee = {}
    per_round = {}
    for srv in SERVERS:
        per_round[srv] = []
        for rd in rounds:
            ok = [r["rate"] for r in sr if r["server"] == srv and r["round"] == rd and clean(r)]
            per_round[srv].append(max(ok) if ok else 0)
        knee[srv] = med(per_round[srv])
    # Steps every round of both servers passed.
    both = None
    for srv in SERVERS:
        for rd in rounds:
            s = {r["rate"] for r in sr if r["server"] == srv and r["round"] == rd and clean(r)}
            both = s if both is None else both & s
    both = both or set()
    cpu = {srv: med([r["d"]["server_cpu_s"] / max(r["d"]["answered"], 1) * 1e5
                     for r in sr if r["server"] == srv and r["rate"] in both and clean(r)])
           for srv in SERVERS}
    # The same per step: fixed costs per wake-up and per fsync weigh more
    # at low rates, so one median hides where the ratio changes.
    cpu_by_rate = {rate: {srv: med([r["d"]["server_cpu_s"] / max(r["d"]["answered"], 1) * 1e6
                                    for r in sr if r["server"] == srv and r["rate"] == rate and clean(r)])
                          for srv in SERVERS}
                   for rate in sorted(both)}
    half = (knee["regmesh"] or 0) / 2
    steps = sorted({r["rate"] for r in sr})
    near = min(steps, key=lambda s: abs(s - half)) if steps and half else None
    lat = {srv: {q: med([r["d"]["latency_us"][q] for r in sr
                         if r["server"] == srv and r["rate"] == near])
                 for q in ("p50", "p99", "p999")} for srv in SERVERS}
    # As the generator's threads saw it (runs before the kernel-stamped
    # latency have no such field: their latency_us was this one).
    client_p99 = {srv: med([r["d"].get("client_latency_us", r["d"]["latency_us"])["p99"] for r in sr
                            if r["server"] == srv and r["rate"] == near]) for srv in SERVERS}
    # regmesh's own histogram of each answer's time in the node (runs
    # before it existed have none): answers that waited for a commit.
    own = {q: med([r["d"]["server_answer_us"]["commit"][q] for r in sr
                   if r["server"] == "regmesh" and r["rate"] == near
                   and "commit" in r["d"].get("server_answer_us", {})])
           for q in ("p50", "p99")}
    # The first part of every answer's time: its datagram's wait in the
    # socket buffer (runs before the histogram existed have none).
    queue = {q: med([r["d"]["server_queue_us"][q] for r in sr
                     if r["server"] == "regmesh" and r["rate"] == near and "server_queue_us" in r["d"]])
             for q in ("p50", "p99")}
    cl = [r for r in closed_all if r["scenario"] == scen]
    windows = sorted({r["rate"] for r in cl})
    closed = {srv: {w: (med([r["d"]["rate_achieved"] for r in cl if r["server"] == srv and r["rate"] == w]),
                        med([r["d"]["latency_us"]["p50"] for r in cl if r["server"] == srv and r["rate"] == w]),
                        med([r["d"]["latency_us"]["p99"] for r in cl if r["server"] == srv and r["rate"] == w]))
                    for w in windows} for srv in SERVERS}
    rows.append(dict(scen=scen, knee=knee, per_round=per_round, cpu=cpu, cpu_by_rate=cpu_by_rate, both=sorted(both),
                     near=near, lat=lat, client_p99=client_p99, own=own, queue=queue, windows=windows, closed=closed))

print("| scenario | metric | Kamailio | regmesh | regmesh/Kamailio |")
print("|---|---|---|---|---|")
for row in rows:
    name = "no auth" if row["scen"] == "auth=0" else "digest auth"
    k, c, l, near = row["knee"], row["cpu"], row["lat"], row["near"]
    print(f"| {name} | REGISTER knee, req/s (median; per round {row['per_round']['kamailio']} / {row['per_round']['regmesh']}) "
          f"| {f0(k['kamailio'])} | {f0(k['regmesh'])} | {ratio(k['regmesh'], k['kamailio'])} |")
    print(f"| {name} | server CPU s per 100k REGISTERs (clean steps both passed: {row['both']}) "
          f"| {f2(c['kamailio'])} | {f2(c['regmesh'])} | {ratio(c['regmesh'], c['kamailio'])} |")
    floor = ceiling.get("p99_at", {}).get(near)
    print(f"| {name} | paced p50 / p99 at {f0(near)}/s, ms (generator's own p99 there: {ms(floor)}) "
          f"| {ms(l['kamailio']['p50'])} / {ms(l['kamailio']['p99'])} | {ms(l['regmesh']['p50'])} / {ms(l['regmesh']['p99'])} "
          f"| {ratio(l['regmesh']['p99'], l['kamailio']['p99'])} (p99) |")
    cp = row["client_p99"]
    print(f"| {name} | p99 there as the generator's threads saw it (its own waits included), ms "
          f"| {ms(cp['kamailio'])} | {ms(cp['regmesh'])} | {ratio(cp['regmesh'], cp['kamailio'])} |")
    if row["own"]["p99"] is not None:
        print(f"| {name} | regmesh's own p50 / p99 there per durable answer, from its receive stamp to its send "
              f"(`regmesh_sip_udp_answer_seconds`, wait=commit), ms | n/a | {ms(row['own']['p50'])} / {ms(row['own']['p99'])} | |")
    if row["queue"]["p99"] is not None:
        print(f"| {name} | of which each datagram's wait in the socket buffer, p50 / p99 "
              f"(`regmesh_sip_udp_queue_seconds`), ms | n/a | {ms(row['queue']['p50'])} / {ms(row['queue']['p99'])} | |")
    for w in row["windows"]:
        kr, kp50, kp99 = row["closed"]["kamailio"][w]
        rr, rp50, rp99 = row["closed"]["regmesh"][w]
        print(f"| {name} | closed loop, {w} in flight per socket x2: req/s; p50 / p99 ms "
              f"| {f0(kr)}; {ms(kp50)} / {ms(kp99)} | {f0(rr)}; {ms(rp50)} / {ms(rp99)} | {ratio(rr, kr)} (req/s) |")

mem_path = os.path.join(out, "memory.json")
if os.path.exists(mem_path):
    with open(mem_path) as fh:
        m = json.load(fh)
    n = m["bindings"]
    # Divide by the bindings each server really holds: Kamailio's 200s to
    # the fill (each a new binding), regmesh's own count.
    with open(m["kamailio_fill"]) as fh:
        kn = json.load(fh)["status"].get("200", 0) or n
    try:
        rn = int(m["stats_before_restart"]["result"]["usrloc.location-contacts"])
    except (KeyError, TypeError, ValueError):
        rn = n
    k = (m["kamailio_pss_kib"][1] - m["kamailio_pss_kib"][0]) * 1024 / kn
    r = (m["regmesh_pss_kib"][1] - m["regmesh_pss_kib"][0]) * 1024 / rn
    if kn != n or rn != n:
        print(f"| {n:,} bindings | bindings actually held (Kamailio 200s / regmesh count) | {kn:,} | {rn:,} | |")
    print(f"| {n:,} bindings | resident memory per binding, bytes (PSS delta) | {k:.0f} | {r:.0f} | {ratio(r, k)} |")
    print(f"| {n:,} bindings | total PSS after fill, MiB | {m['kamailio_pss_kib'][1] / 1024:.0f} "
          f"| {m['regmesh_pss_kib'][1] / 1024:.0f} | |")
    print(f"| {n:,} bindings | on-disk store per binding, bytes | n/a (memory-only) | {m['regmesh_db_bytes'] / rn:.0f} | |")
    print(f"| {n:,} bindings | restart to serving, s (warm page cache) | n/a (memory-only) | {m['regmesh_restart_s']:.2f} | |")
    if "regmesh_cold_restart_s" in m:
        print(f"| {n:,} bindings | restart to serving, s (store file evicted from the page cache) | n/a (memory-only) | {m['regmesh_cold_restart_s']:.2f} | |")

noise_path = os.path.join(out, "noise.jsonl")
if os.path.exists(noise_path):
    print()
    print("The machine's noise, idle (`cyclictest -p 99 -i 500` on each core: how late a real-time thread "
          "woke from a 500 µs sleep; nothing in the guest but interrupts can delay it, so what is left is the hypervisor):")
    print()
    print("| when | seconds | wake-ups | later than 1 ms | later than 5 ms | latest, ms |")
    print("|---|---|---|---|---|---|")
    with open(noise_path) as fh:
        for line in fh:
            n = json.loads(line)
            print(f"| {n['when']} the run | {n['seconds']} | {n['samples']:,} | {n['late_1ms']:,} | {n['late_5ms']:,} "
                  f"| {n['max_us'] / 1000:.2f} |")

if ceiling:
    print()
    print("Generator ceiling (`regmesh bench` against `regmesh bench-responder --threads 2`, generator at the same nice level):")
    print()
    print("| offered req/s | clean | achieved req/s | p99 ms | generator CPU s |")
    print("|---|---|---|---|---|")
    for r in sorted(ceil_steps, key=lambda r: r["rate"]):
        d = r["d"]
        print(f"| {r['rate']:,} | {'yes' if clean(r) else 'no'} | {d['rate_achieved']:,.0f} | {ms(d['latency_us']['p99'])} "
              f"| {d['generator_cpu_s']['user'] + d['generator_cpu_s']['system']:.2f} |")
    for r in sorted(ceil_closed, key=lambda r: r["rate"]):
        d = r["d"]
        print(f"| closed loop, window {r['rate']} | {'yes' if d['retransmissions'] == 0 and d['timeouts'] == 0 else 'no'} "
              f"| {d['rate_achieved']:,.0f} | {ms(d['latency_us']['p99'])} "
              f"| {d['generator_cpu_s']['user'] + d['generator_cpu_s']['system']:.2f} |")

size_path = os.path.join(out, "store-size.jsonl")
if os.path.exists(size_path):
    print()
    print("regmesh store file and RSS after each round (AoR set of the scenario, refreshed at every step):")
    print()
    with open(size_path) as fh:
        for line in fh:
            s = json.loads(line)
            print(f"- {s['scenario']} round {s['round']}: store {s['bytes'] / 2**20:.0f} MiB, RSS {s['rss_kib'] / 1024:.0f} MiB")

if os.path.exists(mem_path):
    print()
    print(f"regmesh statistics before / after the restart: {m.get('stats_before_restart')} / {m.get('stats_after_restart')}")
    for key in ("kamailio_fill", "regmesh_fill", "regmesh_fill2", "regmesh_after_restart"):
        p = m.get(key)
        if p and os.path.exists(p):
            with open(p) as fh:
                d = json.load(fh)
            print(f"{key}: {d['answered']} answered, status {d['status']}, {d['rate_achieved']:.0f}/s, "
                  f"retx {d['retransmissions']}, timeouts {d['timeouts']}")

print()
print("Server CPU per REGISTER by offered rate, µs (median of the rounds; steps both passed cleanly in every round):")
print()
print("| scenario | offered rate/s | Kamailio | regmesh | regmesh/Kamailio |")
print("|---|---|---|---|---|")
for row in rows:
    name = "no auth" if row["scen"] == "auth=0" else "digest auth"
    for rate, c in row["cpu_by_rate"].items():
        print(f"| {name} | {f0(rate)} | {c['kamailio']:.1f} | {c['regmesh']:.1f} | {ratio(c['regmesh'], c['kamailio'])} |")
print()

# Past the knee: how many registrations a server still completes per second
# when offered more than it can serve (a re-registration storm), per step it
# failed, median over the rounds that ran the step.
print("Past the knee (steps a server failed in at least one round): 200 OK per second over the run, 503s, retransmissions and timeouts per run, medians of the rounds that ran the step:")
print()
print("| scenario | server | offered rate/s | rounds | 200 OK/s | 503 | retransmissions | timeouts |")
print("|---|---|---|---|---|---|---|---|")
for scen in sorted({r["scenario"] for r in steps_all}):
    name = "no auth" if scen == "auth=0" else "digest auth"
    for srv in SERVERS:
        failed = [r for r in steps_all if r["scenario"] == scen and r["server"] == srv and not clean(r)]
        for rate in sorted({r["rate"] for r in failed}):
            rs = [r for r in steps_all if r["scenario"] == scen and r["server"] == srv and r["rate"] == rate]
            good = med([r["d"]["status"].get("200", 0) / max(r["d"]["elapsed_s"], 1e-6) for r in rs])
            print(f"| {name} | {srv} | {f0(rate)} | {len(rs)} | {f0(good)} "
                  f"| {f0(med([r['d']['status'].get('503', 0) for r in rs]))} "
                  f"| {f0(med([r['d']['retransmissions'] for r in rs]))} | {f0(med([r['d']['timeouts'] for r in rs]))} |")
print()
