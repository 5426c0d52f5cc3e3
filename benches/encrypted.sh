#!/usr/bin/env bash
# DoT, DoH and DoQ queries per second: embargo against dnsdist 1.7 and
# knot-resolver 5.6 (kresd), with the same certificate, the same list and
# the same upstream, as issue 19's "Speed" asks. Neither peer speaks DoQ
# (dnsdist has it from 1.9, kresd 5.6 not at all): their DoQ rows say so.
# Needs a quiet machine for real figures; run it short anywhere to check
# that it works.
#
#   benches/encrypted.sh [SIZE]          # SIZE listed domains (default 1000000)
#
# Env: LAB (the bench lab, default ../shared/bench beside the repo),
#   SYSTEMS (default "embargo dnsdist knot-resolver"), MODES (default "dot doh doq"),
#   SETS (default "blocked cached"), DURATION seconds per run (default 30),
#   CLIENTS connections (default 16), OUTSTANDING queries in flight over
#   them (default 256 for DoT and DoQ; DoH always one per connection: dnsperf 2.10 loses
#   answers it received when a connection has several streams open,
#   DNS-OARC/dnsperf#240), SERVER_CPU / LOAD_CPU (taskset lists, default 0 / 1),
#   DOH_METHOD (GET or POST, default GET: dnsperf 2.10's POSTs here took
#   40 ms each against every server, embargo, dnsdist and kresd alike, a
#   delayed-ACK stall of its own), P99_RATE (queries a second of
#   the latency run, default 5000), LATENCY_DURATION (its seconds, default 5),
#   EMBARGO (the binary, default target/release/embargo, built if absent),
#   KEEP=1 keeps the work directory.
#
# Uses the lab's list generator (gen/blocklist.py: domains, q-blocked.txt
# random names under listed domains, q-hot.txt ~1000 allowed names repeated)
# and its upstream (upstream/start: knotd on loopback). The peers' configs
# are the lab adaptors' (systems/dnsdist/start, systems/knot-resolver/start)
# plus their DoT and DoH listeners. Prints a markdown table: QPS, queries
# lost and average latency at full speed, p99 latency at P99_RATE (dnsperf
# -v per-query latencies), and new DoT connections per second (openssl
# s_time, 10 s, a full handshake each; DoT's, so not in the DoQ rows).
# DoQ has no dnsperf mode: its load is tools/loadgen's `-m doq` (QUIC
# connections, a stream per query, RFC 9250), with the same connections,
# queries in flight and files, its p99 from its own percentiles at
# `-Q P99_RATE`, and `--insecure` as dnsperf checks no certificate either.
# The issue's rule: a peer losing more than 1 % is reported but does not
# count as the best.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LAB="${LAB:-$ROOT/../shared/bench}"
[ -x "$LAB/upstream/start" ] || { echo "encrypted.sh: no lab at $LAB (set LAB)" >&2; exit 1; }
SIZE="${1:-1000000}"
SYSTEMS="${SYSTEMS:-embargo dnsdist knot-resolver}"
MODES="${MODES:-dot doh doq}"
SETS="${SETS:-blocked cached}"
DURATION="${DURATION:-30}"
CLIENTS="${CLIENTS:-16}"
OUTSTANDING="${OUTSTANDING:-256}"
DOH_METHOD="${DOH_METHOD:-GET}"
P99_RATE="${P99_RATE:-5000}"
LATENCY_DURATION="${LATENCY_DURATION:-5}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
EMBARGO="${EMBARGO:-$ROOT/target/release/embargo}"
for tool in openssl kdig python3; do
  command -v "$tool" >/dev/null || { echo "encrypted.sh: $tool not installed" >&2; exit 1; }
done
case " $MODES " in
  *" dot "*|*" doh "*) command -v dnsperf >/dev/null || { echo "encrypted.sh: dnsperf not installed" >&2; exit 1; } ;;
esac
LOADGEN="$ROOT/target/release/embargo-loadgen"
case " $MODES " in
  *" doq "*) (cd "$ROOT" && cargo build --release --locked --quiet -p embargo-loadgen) ;;
esac

WORK="$(mktemp -d /tmp/embargo-encrypted.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "$LAB/upstream/stop" "$WORK" >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

UPORT=15353 PLAIN=15354 DOT=15853 DOH=15443 DOQ=15854

echo "# lists: $SIZE domains" >&2
Q_BLOCKED=200000 Q_ALLOWED=1000 python3 "$LAB/gen/blocklist.py" "$SIZE" 1 "$WORK/lists" >/dev/null
"$LAB/upstream/start" "$WORK" "$UPORT" >/dev/null

# One certificate for all: a P-256 key, self-signed for dns.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=dns.test -addext subjectAltName=DNS:dns.test,IP:127.0.0.1 \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

start_embargo() {
  local bin="$EMBARGO"
  [ -x "$bin" ] || (cd "$ROOT" && cargo build --release --quiet)
  cat > "$WORK/embargo.toml" <<C
[server]
listen = ["127.0.0.1:$PLAIN"]
workers = 1
tls_listen = ["127.0.0.1:$DOT"]
https_listen = ["127.0.0.1:$DOH"]
quic_listen = ["127.0.0.1:$DOQ"]
certificate = "cert.pem"
private_key = "key.pem"
tls_max_connections = 4096
[upstream]
servers = ["127.0.0.1:$UPORT"]
[cache]
size = 100000
[block]
ede = "censored"
[[lists]]
name = "bench"
source = "lists/domains.txt"
format = "domains"
[log]
queries = "off"
[hits]
max_clients = 0
[http]
listen = []
C
  taskset -c "$SERVER_CPU" "$bin" run -c "$WORK/embargo.toml" >"$WORK/embargo.log" 2>&1 &
  PIDS+=($!)
}

start_dnsdist() {
  cat > "$WORK/dnsdist.conf" <<C
setSecurityPollSuffix("")
setLocal("127.0.0.1:$PLAIN")
addTLSLocal("127.0.0.1:$DOT", "$WORK/cert.pem", "$WORK/key.pem", { provider = "openssl" })
addDOHLocal("127.0.0.1:$DOH", "$WORK/cert.pem", "$WORK/key.pem", "/dns-query")
setMaxUDPOutstanding(65535)
setRingBuffersSize(1000)
newServer({address="127.0.0.1:$UPORT", name="upstream", checkInterval=5})
local pc = newPacketCache(500000, {maxTTL=86400, minTTL=0, temporaryFailureTTL=60, staleTTL=60, dontAge=false})
getPool(""):setCache(pc)
local block = newSuffixMatchNode()
for line in io.lines("$WORK/lists/domains.txt") do block:add(line) end
addAction(SuffixMatchNodeRule(block, true), RCodeAction(DNSRCode.NXDOMAIN))
C
  taskset -c "$SERVER_CPU" dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf" >"$WORK/dnsdist.log" 2>&1 &
  PIDS+=($!)
}

start_kresd() {
  mkdir -p "$WORK/kresd"
  # The lab's RPZ body, under a zone of its own.
  { echo '$TTL 300'; echo '@ SOA localhost. root.localhost. 1 3600 600 86400 300'; echo '@ NS localhost.'
    sed 's/^\$ORIGIN.*//' "$WORK/lists/rpz.zone" | grep -v ' SOA \| NS '; } > "$WORK/kresd/rpz.zone"
  cat > "$WORK/kresd/kresd.conf" <<C
log_level('warning')
net.listen('127.0.0.1', $PLAIN, { kind = 'dns' })
net.listen('127.0.0.1', $DOT, { kind = 'tls' })
net.listen('127.0.0.1', $DOH, { kind = 'doh2' })
net.tls('$WORK/cert.pem', '$WORK/key.pem')
trust_anchors.remove('.')
for _, m in ipairs({'priming', 'detect_time_skew', 'detect_time_jump', 'ta_signal_query', 'ta_sentinel', 'ta_update'}) do
  pcall(modules.unload, m)
end
cache.open(256 * MB, 'lmdb://$WORK/kresd/cache')
cache.clear()
policy.add(policy.rpz(policy.DENY, '$WORK/kresd/rpz.zone', false))
policy.add(policy.all(policy.STUB({'127.0.0.1@$UPORT'})))
C
  taskset -c "$SERVER_CPU" kresd -n -c "$WORK/kresd/kresd.conf" "$WORK/kresd" >"$WORK/kresd.log" 2>&1 &
  PIDS+=($!)
}

# Waits until a listed name is blocked over DoT (the list is in force).
wait_ready() {
  local probe
  probe="x.$(head -1 "$WORK/lists/domains.txt")"
  for _ in $(seq 1 600); do
    if kdig @127.0.0.1 -p "$DOT" +tls +timeout=1 +retry=0 "$probe" 2>/dev/null | grep -q NXDOMAIN; then
      return 0
    fi
    sleep 1
  done
  echo "encrypted.sh: $1 not ready after 600 s" >&2
  return 1
}

# One run as fast as it goes (QPS, lost, average latency), then one at
# P99_RATE queries a second for the p99 (dnsperf -v prints each query's
# latency, which costs it time, so not in the first; the load generator's
# DoQ mode prints its percentiles): prints "qps lost% avg_ms p99_ms".
perf() {
  local mode="$1" file="$2" port outstanding out doh=()
  out="$WORK/perf-$mode-$(basename "$file" .txt)"
  if [ "$mode" = doq ]; then
    local doq=(-m doq -s "127.0.0.1:$DOQ" --insecure --sni dns.test -d "$file" -c "$CLIENTS" -q "$OUTSTANDING" -t 2)
    taskset -c "$LOAD_CPU" "$LOADGEN" "${doq[@]}" -l "$DURATION" >"$out.txt" 2>&1 || true
    taskset -c "$LOAD_CPU" "$LOADGEN" "${doq[@]}" -l "$LATENCY_DURATION" -Q "$P99_RATE" >"$out-latency.txt" 2>&1 || true
  else
    if [ "$mode" = dot ]; then port=$DOT; outstanding=$OUTSTANDING; else port=$DOH; outstanding=$CLIENTS; doh=(-O "doh-method=$DOH_METHOD"); fi
    taskset -c "$LOAD_CPU" dnsperf -m "$mode" "${doh[@]}" -s 127.0.0.1 -p "$port" -d "$file" -l "$DURATION" \
      -c "$CLIENTS" -q "$outstanding" >"$out.txt" 2>&1 || true
    taskset -c "$LOAD_CPU" dnsperf -m "$mode" "${doh[@]}" -s 127.0.0.1 -p "$port" -d "$file" -l "$LATENCY_DURATION" \
      -c "$CLIENTS" -q "$outstanding" -Q "$P99_RATE" -v >"$out-latency.txt" 2>&1 || true
  fi
  python3 - "$out.txt" "$out-latency.txt" <<'P'
import re, sys
text = open(sys.argv[1]).read()
def num(pat):
    m = re.search(pat, text)
    return float(m.group(1)) if m else float("nan")
latency = open(sys.argv[2]).read()
lat = sorted(float(m.group(1)) for m in re.finditer(r"^> \S+ \S+ \S+ ([0-9.]+)$", latency, re.M))
p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
m = re.search(r"^Latency percentiles \(ms\): p50 [0-9.]+ p99 ([0-9.]+)", latency, re.M)
if m:  # the load generator's own (DoQ)
    p99 = float(m.group(1))
qps = num(r"Queries per second:\s+([0-9.]+)")
lost = num(r"Queries lost:\s+\d+ \(([0-9.]+)%\)")
avg = num(r"Average Latency \(s\):\s+([0-9.]+)") * 1000
print(f"{qps:.0f} {lost:.2f} {avg:.3f} {p99:.3f}")
P
}

# New TLS connections per second, each a full handshake (openssl s_time -new).
handshakes() {
  local out
  out="$(taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$DOT" -new -time 10 2>/dev/null || true)"
  echo "$out" | awk '/connections in [0-9.]+ real seconds/ { n=$1; t=$4 } END { if (t > 0) printf "%.0f", n / t; else print "nan" }'
}

echo "| system | transport | names | QPS | lost % | avg ms | p99 ms | new TLS conn/s |"
echo "|---|---|---|---|---|---|---|---|"
for sys in $SYSTEMS; do
  case "$sys" in
    embargo) start_embargo ;;
    dnsdist) start_dnsdist ;;
    knot-resolver) start_kresd ;;
    *) echo "encrypted.sh: unknown system $sys" >&2; continue ;;
  esac
  wait_ready "$sys" || { kill "${PIDS[-1]}" 2>/dev/null || true; continue; }
  case " $MODES " in
    *" dot "*|*" doh "*) conns="$(handshakes)" ;;
    *) conns="-" ;;
  esac
  for mode in $MODES; do
    if [ "$mode" = doq ] && [ "$sys" != embargo ]; then
      case "$sys" in
        dnsdist) why="no DoQ in dnsdist 1.7 (from 1.9)" ;;
        knot-resolver) why="no DoQ in kresd 5.6" ;;
        *) why="no DoQ" ;;
      esac
      for set in $SETS; do echo "| $sys | doq | $set | $why | - | - | - | - |"; done
      continue
    fi
    for set in $SETS; do
      case "$set" in
        blocked) file="$WORK/lists/q-blocked.txt" ;;
        cached)
          file="$WORK/lists/q-hot.txt"
          # Fill the cache first: one pass of the hot names.
          DURATION=2 LATENCY_DURATION=1 perf "$mode" "$file" >/dev/null ;;
      esac
      read -r qps lost avg p99 < <(perf "$mode" "$file")
      # openssl s_time measured DoT's handshakes; QUIC's are not measured.
      if [ "$mode" = doq ]; then c="-"; else c="$conns"; fi
      echo "| $sys | $mode | $set | $qps | $lost | $avg | $p99 | $c |"
    done
  done
  kill "${PIDS[-1]}" 2>/dev/null || true
  wait "${PIDS[-1]}" 2>/dev/null || true
  sleep 1
done
