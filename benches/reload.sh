#!/usr/bin/env bash
# Zero-loss reload under load: embargo blocks a SIZE-domain list (default
# 1,000,000) while dnsperf sends blocked queries at a fixed rate below
# saturation; first a baseline run, then the same run with a full reload
# (SIGHUP, the whole list re-read and the matcher rebuilt and swapped) every
# 4 s. Prints queries lost, SERVFAILs, p99 latency of both runs, each reload's
# time and peak memory against steady state.
#
#   benches/reload.sh [SIZE]      env: RATE (qps, default 50000), SECS (default 20)
#
# MODE=refresh (issue 16): forwarding during remote-list refreshes. The
# SIZE-domain list is a remote list, served over HTTP on loopback and
# refreshed by embargo every 4 s; dnsperf sends forwarded queries
# (q-allowed.txt, distinct names, mostly cache misses) at RATE (default
# 10000). The baseline run leaves the served file alone (each refresh is a
# 304); the second touches it every 2 s, so every refresh downloads,
# parses, fsyncs and reloads the whole list. Compares forwarding p99 of the
# two runs. Run it from two checkouts (before and after a change) on a
# quiet machine.
#
#   MODE=refresh benches/reload.sh [SIZE]
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
MODE="${MODE:-sighup}"
SIZE="${1:-1000000}"; SECS="${SECS:-20}"
if [ "$MODE" = refresh ]; then RATE="${RATE:-10000}"; else RATE="${RATE:-50000}"; fi
export EMBARGO_REPO="$REPO" LAB_STATE="${LAB_STATE:-$HOME/.cache/embargo-bench}"
export RUST_LOG="info,embargo::blocked=warn" SERVER_CPU=1
LISTS="$LAB_STATE/work/lists/n$SIZE-s1"
[ -f "$LISTS/q-blocked.txt" ] || python3 "$LAB/gen/blocklist.py" "$SIZE" 1 "$LISTS"
(cd "$REPO" && cargo build --release --locked --quiet)
WD="$(mktemp -d)"
trap '"$LAB/systems/embargo/stop" "$WD/e" >/dev/null 2>&1 || true; "$LAB/upstream/stop" "$WD/up" >/dev/null 2>&1 || true; [ -n "${web:-}" ] && kill "$web" 2>/dev/null; rm -rf "$WD"' EXIT
"$LAB/upstream/start" "$WD/up" 15340 >/dev/null
if [ "$MODE" = refresh ]; then
  # The list over HTTP (python's server answers If-Modified-Since with 304),
  # the adaptor's own list one name: only the remote list is big.
  mkdir -p "$WD/www"
  cp "$LISTS/domains.txt" "$WD/www/domains.txt"
  printf 'one.example\n' > "$WD/one.txt"
  taskset -c 0 python3 -m http.server --bind 127.0.0.1 --directory "$WD/www" 15342 >/dev/null 2>&1 &
  web=$!
  export EMBARGO_EXTRA_CONFIG="[[lists]]
name = \"remote\"
source = \"http://127.0.0.1:15342/domains.txt\"
refresh = \"4s\"
[state]
dir = \"$WD/state\""
  "$LAB/systems/embargo/start" "$WD/e" 15341 15340 "$WD/one.txt" >/dev/null
  # Wait until the first download is in force: the list's last name is blocked.
  probe="$(tail -n 1 "$LISTS/domains.txt")"
  for _ in $(seq 1 300); do
    dig @127.0.0.1 -p 15341 +time=1 +tries=1 "$probe" A | grep -q 'EDE: 1[56]\|status: NXDOMAIN' && break
    sleep 1
  done
  # Distinct names in each run, so that the second does not hit the cache
  # the first filled.
  half=$(( $(wc -l < "$LISTS/q-allowed.txt") / 2 ))
  head -n "$half" "$LISTS/q-allowed.txt" > "$WD/q1.txt"
  tail -n +"$((half + 1))" "$LISTS/q-allowed.txt" > "$WD/q2.txt"
  Q1="$WD/q1.txt" Q2="$WD/q2.txt"
else
  "$LAB/systems/embargo/start" "$WD/e" 15341 15340 "$LISTS/domains.txt" >/dev/null
  Q1="$LISTS/q-blocked.txt" Q2="$LISTS/q-blocked.txt"
fi
pid="$(cat "$WD/e/server.pid")"
sleep 1
steady_kb="$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)"
perf() {  # perf QUERIES OUT
  taskset -c 0 dnsperf -s 127.0.0.1 -p 15341 -d "$1" -l "$SECS" -Q "$RATE" \
    -c 8 -q 200 -T 1 -t 2 -v > "$2" 2>&1
}
perf "$Q1" "$WD/base.out"
perf "$Q2" "$WD/reload.out" &
dp=$!
n=0
sleep 2
if [ "$MODE" = refresh ]; then
  # A new Last-Modified every 2 s: each 4-s refresh downloads it all.
  while kill -0 "$dp" 2>/dev/null; do
    touch "$WD/www/domains.txt"
    sleep 2
  done
  n="$(grep -c 'list downloaded' "$WD/e/server.log" || true)"
else
  while kill -0 "$dp" 2>/dev/null && [ $n -lt $(( (SECS - 4) / 4 )) ]; do
    "$LAB/systems/embargo/reload" "$WD/e" "$LISTS/domains.txt"
    n=$((n + 1))
    sleep 4
  done
fi
wait "$dp"
sleep 1
peak_kb="$(awk '/VmHWM/ {print $2}' /proc/"$pid"/status)"
python3 - "$WD/base.out" "$WD/reload.out" "$WD/e/server.log" "$steady_kb" "$peak_kb" "$n" "$SIZE" "$RATE" "$MODE" <<'PY'
import re, sys
base, rel, log, steady, peak, n, size, rate, mode = sys.argv[1:]
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
if mode == "refresh":
    # The log counts every download since start, the first one included.
    print(f"{size} domains over HTTP, {rate} qps of forwarded queries, {int(n) - 1} downloads (parse, fsync, reload) during the second run")
    first, second = "refreshes: 304 only", f"{int(n) - 1} full refreshes"
else:
    print(f"{size} domains, {rate} qps of blocked queries, {n} full reloads during the second run")
    first, second = "no reload", f"{n} reloads"
print(f"| run | sent | lost | SERVFAIL | p99 ms | rcodes |")
print(f"|---|---|---|---|---|---|")
print(f"| {first} | {b[0]} | {b[1]} | {b[2]} | {b[3]:.3f} | {b[4]} |")
print(f"| {second} | {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]} |")
print(f"reload times (ms, first is the start-up load): {loads}")
print(f"memory: steady RSS {int(steady)/1024:.1f} MiB, peak (VmHWM) {int(peak)/1024:.1f} MiB = {int(peak)/int(steady):.2f}x")
PY
