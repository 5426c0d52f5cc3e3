#!/usr/bin/env bash
# Zero-loss reload under load: embargo blocks a SIZE-domain list (default
# 1,000,000) while dnsperf sends blocked queries at a fixed rate below
# saturation; first a baseline run, then the same run with a full reload
# (SIGHUP, the whole list re-read and the matcher rebuilt and swapped) every
# 4 s. Prints queries lost, SERVFAILs, p99 latency of both runs, each reload's
# time and peak memory against steady state.
#
#   benches/reload.sh [SIZE]      env: RATE (qps, default 50000), SECS (default 20)
# Uses the shared lab (LAB, default ../shared/bench: lists, upstream, the
# embargo adaptor); loopback only.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
# The peer lab (load generators, upstream, list generator, one adaptor per
# system) is not in this repository: it lives in the team's shared
# workbench, checked out as ../shared/bench beside the checkout. Set LAB
# to use one elsewhere.
LAB="${LAB:-$REPO/../shared/bench}"
[ -d "$LAB" ] || {
  echo "reload.sh: the peer lab is not at $LAB (it lives in the team's shared workbench, ../shared/bench beside the checkout; set LAB=...)" >&2
  exit 2
}
SIZE="${1:-1000000}"; RATE="${RATE:-50000}"; SECS="${SECS:-20}"
export EMBARGO_REPO="$REPO" LAB_STATE="${LAB_STATE:-$HOME/.cache/embargo-bench}"
export RUST_LOG="info,embargo::blocked=warn" SERVER_CPU=1
LISTS="$LAB_STATE/work/lists/n$SIZE-s1"
[ -f "$LISTS/q-blocked.txt" ] || python3 "$LAB/gen/blocklist.py" "$SIZE" 1 "$LISTS"
(cd "$REPO" && cargo build --release --locked --quiet)
WD="$(mktemp -d)"
trap '"$LAB/systems/embargo/stop" "$WD/e" >/dev/null 2>&1 || true; "$LAB/upstream/stop" "$WD/up" >/dev/null 2>&1 || true; rm -rf "$WD"' EXIT
"$LAB/upstream/start" "$WD/up" 15340 >/dev/null
"$LAB/systems/embargo/start" "$WD/e" 15341 15340 "$LISTS/domains.txt" >/dev/null
pid="$(cat "$WD/e/server.pid")"
sleep 1
steady_kb="$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)"
perf() {  # perf OUT
  taskset -c 0 dnsperf -s 127.0.0.1 -p 15341 -d "$LISTS/q-blocked.txt" -l "$SECS" -Q "$RATE" \
    -c 8 -q 200 -T 1 -t 2 -v > "$1" 2>&1
}
perf "$WD/base.out"
perf "$WD/reload.out" &
dp=$!
n=0
sleep 2
while kill -0 "$dp" 2>/dev/null && [ $n -lt $(( (SECS - 4) / 4 )) ]; do
  "$LAB/systems/embargo/reload" "$WD/e" "$LISTS/domains.txt"
  n=$((n + 1))
  sleep 4
done
wait "$dp"
sleep 1
peak_kb="$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)"
python3 - "$WD/base.out" "$WD/reload.out" "$WD/e/server.log" "$steady_kb" "$peak_kb" "$n" "$SIZE" "$RATE" <<'PY'
import re, sys
base, rel, log, steady, peak, n, size, rate = sys.argv[1:]
def stats(path):
    lat, rc = [], {}
    sent = lost = 0
    for line in open(path):
        if line.startswith("> "):
            f = line.split()
            rc[f[1]] = rc.get(f[1], 0) + 1
            lat.append(float(f[-1]))
        m = re.search(r"Queries sent:\s+(\d+)", line)
        if m: sent = int(m.group(1))
        m = re.search(r"Queries lost:\s+(\d+)", line)
        if m: lost = int(m.group(1))
    lat.sort()
    p99 = lat[int(0.99 * len(lat))] * 1000 if lat else float("nan")
    return sent, lost, rc.get("SERVFAIL", 0), p99, rc
loads = [int(m.group(1)) for m in re.finditer(r"rules loaded.* ms=(\d+)", open(log).read())]
b, r = stats(base), stats(rel)
print(f"{size} domains, {rate} qps of blocked queries, {n} full reloads during the second run")
print(f"| run | sent | lost | SERVFAIL | p99 ms | rcodes |")
print(f"|---|---|---|---|---|---|")
print(f"| no reload | {b[0]} | {b[1]} | {b[2]} | {b[3]:.3f} | {b[4]} |")
print(f"| {n} reloads | {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]} |")
print(f"reload times (ms, first is the start-up load): {loads}")
print(f"memory: steady RSS {int(steady)/1024:.1f} MiB, peak (VmHWM) {int(peak)/1024:.1f} MiB = {int(peak)/int(steady):.2f}x")
PY
