#!/usr/bin/env bash
# Validated cold forwarding: embargo (`[upstream] dnssec = "validate"`)
# against unbound with validation on (`module-config: "validator
# iterator"`), both forwarding to one knotd that serves a zone it signs
# itself, as issue 19's "Speed" asks (at or above 1.0x unbound). Needs a
# quiet machine for real figures; run it short anywhere to check it works.
#
#   benches/dnssec.sh [N]          # N distinct A names in the zone (default 100000)
#
# Env: LAB (the bench lab, default ../shared/bench beside the repo: only its
#   blast is used, with LOADGEN=blast), SYSTEMS (default "embargo unbound"),
#   LOADGEN (dnsperf, default, or blast), DURATION seconds at most per run
#   (default 30; a run also ends when every name was sent once),
#   CLIENTS / OUTSTANDING (dnsperf -c / -q, default 8 / 200, the lab's),
#   DO=1 (queries with the DO bit: the clients get the RRSIGs too),
#   SERVER_CPU / LOAD_CPU (taskset lists, default 1 / 0: knotd shares the
#   load's core, as in the lab), EMBARGO_BIN (default target/release/embargo,
#   built if missing), KEEP=1 keeps the work directory.
#
# What it does: writes zone bench.test. (N names n1..nN, A 192.0.2.x, plus
# www) and has knotd sign it (`dnssec-signing: on`, its default policy:
# ECDSA P-256 KSK + ZSK, NSEC); a first, small knotd signs spoiled.test.,
# whose copy is transferred and one signature changed, then served
# unsigned beside bench.test. The trust anchors of both systems are the
# two zones' KSKs (one file: DNSKEY lines as dig prints them). Each system
# is started alone on SERVER_CPU with one thread and a cache that keeps
# every answer (embargo: N + 1000 entries; unbound: 256 MB of messages and
# 512 MB of RRsets), then checked (www.bench.test gets AD; a spoiled
# signature gets SERVFAIL), which also primes the zone's DNSKEY, and then
# every name of the query file is sent once (cold: every query is a cache
# miss, validated) at full speed. Prints a markdown table: QPS, lost, p50
# and p99 latency (dnsperf -v per-query lines, or blast's), the server's
# CPU (share of one core over the run), and the checks. With blast, a run
# that went through the file more than once is marked (the second pass is
# answered from the cache).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LAB="${LAB:-$ROOT/../shared/bench}"
N="${1:-100000}"
SYSTEMS="${SYSTEMS:-embargo unbound}"
LOADGEN="${LOADGEN:-dnsperf}"
DURATION="${DURATION:-30}"
CLIENTS="${CLIENTS:-8}"
OUTSTANDING="${OUTSTANDING:-200}"
SERVER_CPU="${SERVER_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"

missing=()
for tool in knotd:knot knotc:knot unbound:unbound dnsperf:dnsperf dig:bind9-dnsutils python3:python3 taskset:util-linux; do
  bin="${tool%%:*}"
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || missing+=("$bin (Debian package ${tool#*:})")
done
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'dnssec.sh: not installed: %s\n' "${missing[@]}" >&2
  exit 1
fi
KNOTD="$(command -v knotd || echo /usr/sbin/knotd)"
UNBOUND="$(command -v unbound || echo /usr/sbin/unbound)"

WORK="$(mktemp -d /tmp/embargo-dnssec.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

KPORT=15360 SIGNPORT=15361 EPORT=15362 UPORT=15363

# One knotd on 127.0.0.1:PORT in DIR serving ZONE_LINES (its `zone:` list).
knot_start() {
  local dir="$1" port="$2" zones="$3"
  mkdir -p "$dir/db"
  cat > "$dir/knot.conf" <<C
server:
    rundir: "$dir"
    listen: 127.0.0.1@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    udp-max-payload: 1232
database:
    storage: "$dir/db"
control:
    listen: "$dir/knot.sock"
log:
  - target: "$dir/knot.log"
    any: warning
acl:
  - id: xfr
    address: 127.0.0.0/8
    action: transfer
template:
  - id: default
    storage: "$dir"
    semantic-checks: off
    zonefile-sync: -1
zone:
$zones
C
  taskset -c "$LOAD_CPU" "$KNOTD" --config "$dir/knot.conf" >"$dir/knotd.out" 2>&1 &
  PIDS+=($!)
}

# Waits until NAME (at PORT) has an RRSIG: its zone is signed.
wait_signed() {
  local port="$1" name="$2"
  for _ in $(seq 1 1200); do
    if dig @127.0.0.1 -p "$port" +time=1 +tries=1 +dnssec +noall +answer "$name" A 2>/dev/null | grep -q RRSIG; then
      return 0
    fi
    sleep 0.5
  done
  echo "dnssec.sh: knotd did not sign $name within 600 s" >&2
  exit 1
}

echo "# zone: bench.test. with $N names" >&2
{
  printf '$ORIGIN bench.test.\n$TTL 3600\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\nwww A 192.0.2.10\n'
  awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "n%d A 192.0.2.%d\n", i, i % 250 + 1 }'
} > "$WORK/bench.test.zone"
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "n%d.bench.test A\n", i }' > "$WORK/queries.txt"
printf '$ORIGIN spoiled.test.\n$TTL 3600\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\nwww A 192.0.2.20\n' \
  > "$WORK/spoiled.test.zone"

# spoiled.test: signed by a first knotd, transferred, one signature spoiled.
knot_start "$WORK/signer" "$SIGNPORT" "  - domain: spoiled.test.
    file: $WORK/spoiled.test.zone
    acl: xfr
    dnssec-signing: on"
wait_signed "$SIGNPORT" www.spoiled.test
dig @127.0.0.1 -p "$SIGNPORT" +nocmd +nocomments +nostats +onesoa AXFR spoiled.test > "$WORK/spoiled.axfr"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
# The www A record's RRSIG: one base64 letter in its middle changed.
awk '$1 == "www.spoiled.test." && $4 == "RRSIG" && $5 == "A" {
       s = $NF; at = int(length(s) / 2); c = substr(s, at, 1) == "A" ? "B" : "A"
       $NF = substr(s, 1, at - 1) c substr(s, at + 1) }
     { print }' "$WORK/spoiled.axfr" > "$WORK/spoiled.copy.zone"
cmp -s "$WORK/spoiled.axfr" "$WORK/spoiled.copy.zone" && { echo "dnssec.sh: no RRSIG spoiled" >&2; exit 1; }

echo "# knotd signs bench.test." >&2
knot_start "$WORK/knot" "$KPORT" "  - domain: bench.test.
    file: $WORK/bench.test.zone
    dnssec-signing: on
  - domain: spoiled.test.
    file: $WORK/spoiled.copy.zone"
wait_signed "$KPORT" "n$N.bench.test"
KNOT_PID="${PIDS[-1]}"
{
  dig @127.0.0.1 -p "$KPORT" +noall +answer bench.test DNSKEY
  grep -P '\tDNSKEY\t' "$WORK/spoiled.axfr"
} | awk '$4 == "DNSKEY" && $5 == 257' > "$WORK/anchors.key"
[ "$(wc -l < "$WORK/anchors.key")" = 2 ] || { echo "dnssec.sh: want two KSKs, got:" >&2; cat "$WORK/anchors.key" >&2; exit 1; }

start_embargo() {
  local bin="${EMBARGO_BIN:-$ROOT/target/release/embargo}"
  [ -x "$bin" ] || (cd "$ROOT" && cargo build --release --quiet)
  cat > "$WORK/embargo.toml" <<C
[server]
listen = ["127.0.0.1:$EPORT"]
workers = 1
# test. is answered locally by default (RFC 6761); bench.test is forwarded.
[local_zones]
defaults = false
[upstream]
servers = ["127.0.0.1:$KPORT"]
timeout_ms = 2000
dnssec = "validate"
trust_anchors = ["anchors.key"]
[cache]
size = $((N + 1000))
[log]
queries = "off"
[hits]
max_clients = 0
[http]
listen = []
C
  RUST_LOG=warn taskset -c "$SERVER_CPU" "$bin" run -c "$WORK/embargo.toml" >"$WORK/embargo.log" 2>&1 &
  PIDS+=($!)
  PORT=$EPORT
}

start_unbound() {
  mkdir -p "$WORK/unbound"
  cat > "$WORK/unbound/unbound.conf" <<C
server:
    username: ""
    chroot: ""
    directory: "$WORK/unbound"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    interface: 127.0.0.1@$UPORT
    port: $UPORT
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    num-threads: 1
    outgoing-range: 4096
    num-queries-per-thread: 4096
    module-config: "validator iterator"
    trust-anchor-file: "$WORK/anchors.key"
    do-not-query-localhost: no
    qname-minimisation: no
    prefetch: no
    msg-cache-size: 256m
    rrset-cache-size: 512m
    key-cache-size: 16m
    edns-buffer-size: 1232
    local-zone: "test." nodefault
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$KPORT
    forward-first: no
C
  taskset -c "$SERVER_CPU" "$UNBOUND" -d -c "$WORK/unbound/unbound.conf" >"$WORK/unbound.log" 2>&1 &
  PIDS+=($!)
  PORT=$UPORT
}

# The first answer to dig at PORT, or a failure after 60 s.
wait_ready() {
  for _ in $(seq 1 600); do
    dig @127.0.0.1 -p "$PORT" +time=1 +tries=1 ns.bench.test A 2>/dev/null | grep -q 'status: ' && return 0
    sleep 0.1
  done
  echo "dnssec.sh: $1 did not answer within 60 s" >&2
  return 1
}

# "yes"/"NO": www.bench.test gets AD (asked with DO and AD), and the
# spoiled www.spoiled.test gets SERVFAIL.
check_ad() {
  dig @127.0.0.1 -p "$PORT" +time=2 +tries=2 +dnssec +adflag www.bench.test A |
    grep -q 'flags:[a-z ]* ad[ ;]' && echo yes || echo NO
}
check_spoiled() {
  dig @127.0.0.1 -p "$PORT" +time=2 +tries=2 +dnssec www.spoiled.test A |
    grep -q 'status: SERVFAIL' && echo yes || echo NO
}

# The server's CPU ticks (user + system) so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

blast_bin() {
  local state="${LAB_STATE:-}" target
  [ -n "$state" ] || { if [ -w "$LAB" ]; then state="$LAB"; else state="${XDG_CACHE_HOME:-$HOME/.cache}/embargo-bench"; fi; }
  for b in "$LAB/.tools/blast-target/release/blast" "$state/.tools/blast-target/release/blast"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  target="$state/.tools/blast-target"
  (cd "$LAB/blast" && CARGO_TARGET_DIR="$target" cargo build --release --quiet) >&2
  echo "$target/release/blast"
}

# One run through the query file at PORT: prints
# "qps lost p50_ms p99_ms cpu% completed".
perf() {
  local pid="$1" out="$WORK/perf-$2.txt" t0 t1 c0 c1 hz
  hz="$(getconf CLK_TCK)"
  c0="$(ticks "$pid")"; t0="$(date +%s.%N)"
  if [ "$LOADGEN" = blast ]; then
    taskset -c "$LOAD_CPU" "$BLAST" -s "127.0.0.1:$PORT" -d "$WORK/queries.txt" -l "$DURATION" \
      -c "$CLIENTS" -q "$OUTSTANDING" -b 32 -t 2 -e >"$out" 2>&1 || true
  else
    local dflag=()
    [ -n "${DO:-}" ] && dflag=(-D)
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -n 1 -l "$DURATION" \
      -c "$CLIENTS" -q "$OUTSTANDING" -T 1 -t 2 "${dflag[@]}" -v >"$out" 2>&1 || true
  fi
  c1="$(ticks "$pid")"; t1="$(date +%s.%N)"
  python3 - "$out" "$c0" "$c1" "$t0" "$t1" "$hz" <<'P'
import re, sys
path, c0, c1, t0, t1, hz = sys.argv[1], *map(float, sys.argv[2:])
text = open(path).read()
def num(pat):
    m = re.search(pat, text, re.M)
    return float(m.group(1)) if m else float("nan")
qps = num(r"Queries per second:\s+([0-9.]+)")
lost = num(r"Queries lost:\s+(\d+)")
done = num(r"Queries completed:\s+(\d+)")
lat = sorted(float(m.group(1)) for m in re.finditer(r"^> \S+ \S+ \S+ ([0-9.]+)$", text, re.M))
if lat:
    p50, p99 = (lat[min(len(lat) - 1, int(len(lat) * p))] * 1000 for p in (0.50, 0.99))
else:  # blast: "Latency percentiles (ms): p50 X p90 Y p99 Z ..."
    p50, p99 = num(r"Latency percentiles.*\bp50 ([0-9.]+)"), num(r"Latency percentiles.*\bp99 ([0-9.]+)")
cpu = (c1 - c0) / hz / (t1 - t0) * 100
print(f"{qps:.0f} {lost:.0f} {p50:.2f} {p99:.2f} {cpu:.0f} {done:.0f}")
P
}

BLAST=""
[ "$LOADGEN" = blast ] && BLAST="$(blast_bin)"
echo "# $LOADGEN, at most $DURATION s, each of $N names once; server on CPU $SERVER_CPU, load and knotd on CPU $LOAD_CPU" >&2
echo "| system | validated cold QPS | x unbound | lost | p50 ms | p99 ms | server CPU % | AD on secure | SERVFAIL on spoiled |"
echo "|---|---|---|---|---|---|---|---|---|"
UNBOUND_QPS=""
rows=()
for sys in $SYSTEMS; do
  case "$sys" in
    embargo) start_embargo; version="embargo ${EMBARGO_BIN:-$(cd "$ROOT" && git rev-parse --short HEAD)}" ;;
    unbound) start_unbound; version="$("$UNBOUND" -V | awk 'NR == 1 { print "unbound " $2 }')" ;;
    *) echo "dnssec.sh: unknown system $sys" >&2; continue ;;
  esac
  pid="${PIDS[-1]}"
  wait_ready "$sys" || { kill "$pid" 2>/dev/null || true; continue; }
  ad="$(check_ad)"
  spoiled="$(check_spoiled)"
  read -r qps lost p50 p99 cpu done < <(perf "$pid" "$sys")
  [ "$LOADGEN" = blast ] && [ "${done%.*}" -gt "$N" ] 2>/dev/null && qps="$qps (looped: $done answers for $N names)"
  [ "$sys" = unbound ] && UNBOUND_QPS="${qps%% *}"
  rows+=("$version|$qps|$lost|$p50|$p99|$cpu|$ad|$spoiled")
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  sleep 1
done
kill -0 "$KNOT_PID" 2>/dev/null || echo "dnssec.sh: knotd died during the runs" >&2
for row in "${rows[@]}"; do
  IFS='|' read -r version qps lost p50 p99 cpu ad spoiled <<<"$row"
  x="-"
  [ -n "$UNBOUND_QPS" ] && x="$(python3 -c "print(f'{${qps%% *} / $UNBOUND_QPS:.2f}')" 2>/dev/null || echo -)"
  echo "| $version | $qps | $x | $lost | $p50 | $p99 | $cpu | $ad | $spoiled |"
done
