#!/usr/bin/env bash
# Side-by-side benchmark: embargo against the floor (limit) and the peers,
# with the shared lab (LAB, default ../shared/bench; see its README).
#
#   benches/compare.sh [SIZE] [SYSTEM...]
#     SIZE     listed domains (default 1000000)
#     SYSTEM   default: limit embargo unbound dnsdist pdns-recursor knot-resolver hickory-dns
#   env: LOADGEN=blast (default; saturates one server core) or dnsperf (latency below saturation)
#        SETUP=1 runs the lab's setup first (installs the peers; idempotent)
#        DURATION seconds per run (default 10), LAB_STATE (default ~/.cache/embargo-bench)
#
# Builds embargo in release mode, runs each system through the lab's bench
# (server pinned to CPU 1, load generator and upstream to CPU 0), then prints
# one markdown table of this run's rows with ratios to the floor and to the
# best peer. Ratios inside one run are what count: absolute figures move a
# few percent between runs.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
# The peer lab (load generators, upstream, list generator, one adaptor per
# system) is not in this repository: it lives in the team's shared
# workbench, checked out as ../shared/bench beside the checkout. Set LAB
# to use one elsewhere.
LAB="${LAB:-$REPO/../shared/bench}"
[ -d "$LAB" ] || {
  echo "compare.sh: the peer lab is not at $LAB (it lives in the team's shared workbench, ../shared/bench beside the checkout; set LAB=...)" >&2
  exit 2
}
SIZE="${1:-1000000}"
shift || true
SYSTEMS="${*:-limit embargo unbound dnsdist pdns-recursor knot-resolver hickory-dns}"
export EMBARGO_REPO="$REPO" LAB_STATE="${LAB_STATE:-$HOME/.cache/embargo-bench}"
export LOADGEN="${LOADGEN:-blast}" DURATION="${DURATION:-10}"
mkdir -p "$LAB_STATE"
[ -z "${SETUP:-}" ] || "$LAB/setup"
(cd "$REPO" && cargo build --release --locked)
suffix=""; [ "$LOADGEN" = blast ] && suffix="-blast"
results="$LAB_STATE/results/peers-$SIZE$suffix.jsonl"
since="$(date '+%Y-%m-%d %H:%M')"
for s in $SYSTEMS; do
  "$LAB/bench" "$s" "$SIZE" || echo "compare: $s failed or its checks failed (see above)" >&2
done
python3 - "$results" "$since" "$SYSTEMS" <<'PY'
import json, sys
path, since, systems = sys.argv[1], sys.argv[2], sys.argv[3].split()
rows = {}
for line in open(path):
    d = json.loads(line)
    if d.get("date", "") >= since:
        rows[d["system"]] = d
def qps(d, run):
    return d.get("runs", {}).get(run, {}).get("qps") or 0.0
floor = rows.get("limit")
peers = [d for s, d in rows.items() if s not in ("limit", "embargo")]
best_b = max((qps(d, "blocked") for d in peers), default=0)
best_h = max((qps(d, "hot") for d in peers), default=0)
print(f"| system | blocked QPS | x floor | x best peer | blocked p99 ms | lost | hot QPS | x best peer | fwd QPS | load s | B/domain | status |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in systems:
    d = rows.get(s)
    if not d:
        continue
    b, h, f = qps(d, "blocked"), qps(d, "hot"), qps(d, "fwd")
    xf = f"{b / qps(floor, 'blocked'):.2f}" if floor and qps(floor, "blocked") else "-"
    xb = f"{b / best_b:.2f}" if best_b else "-"
    xh = f"{h / best_h:.2f}" if best_h else "-"
    run = d["runs"].get("blocked", {})
    print(f"| {d['version']} | {b:,.0f} | {xf} | {xb} | {run.get('p99_ms', '-')} | {run.get('lost', '-'):.0f} | {h:,.0f} | {xh} | {f:,.0f} | {d['load_s']:.2f} | {d['bytes_per_domain']:.0f} | {d['status']} |")
PY
