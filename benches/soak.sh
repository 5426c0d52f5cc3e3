#!/usr/bin/env bash
# Soak: embargo (the release build of this checkout) under mixed load for
# SOAK_MINUTES (default 10) at 80 % of the peak it reached on the same mix,
# with the list reloaded and the upstream stalling once a minute. Reports,
# per minute: queries sent, answered, lost, SERVFAIL, what the malformed
# packets got, p50/p99 latency (overall and per class), the reload's time,
# what the stalled upstream dropped, the server's RSS and CPU, the CPU the
# rest of the machine used and the load average; at the end, RSS at the
# start (after the warm-up) and at the end, and whether it stayed flat
# within 10 %.
#
#   benches/soak.sh [PEAK_QPS]      (PEAK_QPS given: skip measuring it)
#   SOAK_MINUTES=1 benches/soak.sh  (a quick try: about 2 minutes in all)
#
# env: SOAK_MINUTES (10), SOAK_PCT (80: % of the peak), SOAK_WARMUP (40 s,
#      with one reload and one stall, not counted), SOAK_PEAK_SECS (15),
#      SOAK_MIX (blocked=70,cached=20,forwarded=5,tcp=3,malformed=2),
#      SOAK_SIZE (1000000 listed names), SOAK_CHANGED (5000 names that
#      differ between the two list versions), SOAK_TIMEOUT_MS (1000: the
#      server's upstream timeout_ms), SOAK_CACHE (100000: [cache] size),
#      SOAK_STALL (3 s: how long the upstream stops answering, at 30 s of
#      each minute; the reload is at 10 s), SOAK_LOG (the server's log
#      filter, default "info,embargo::blocked=warn"), PORT (15375: the
#      server; the upstream is PORT-1, the stalling proxy PORT+1),
#      SERVER_CPU (1), CLIENT_CPU (0), LAB, LAB_STATE, SOAK_BIN (an embargo
#      binary to soak instead of this checkout's release build, for A/B runs).
#
# The mix (embargo-soak, tools/soak, built with cargo build -p embargo-soak): blocked
# names (the lab's q-blocked.txt), a hot cached set (q-hot.txt), distinct
# forwarded names (q-allowed.txt), malformed packets (answered FORMERR or
# BADVERS or not at all: counted apart, never as lost), and TCP (4
# persistent pipelining connections plus a new one every second). Lost = no
# answer within 3 s to a query that is owed one; an upstream that does not
# answer shows as SERVFAIL after timeout_ms, not as loss.
#
# Pinned as the lab pins: the server on CPU 1; the load generator, the
# stalling proxy (a thread of it) and the upstream (knotd) on CPU 0.
# Results: a markdown report and the per-minute rows as JSON in
# $LAB_STATE/results/soak-DATE-COMMIT.{md,json}.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
# The lab (upstream, list generator) is not in this repository: it lives in
# the team's shared workbench, checked out as ../shared/bench beside the
# checkout. Set LAB to use one elsewhere.
LAB="${LAB:-$REPO/../shared/bench}"
[ -d "$LAB" ] && [ -x "$LAB/upstream/start" ] && [ -f "$LAB/gen/blocklist.py" ] || {
  echo "soak.sh: the bench lab is not at $LAB (it lives in the team's shared workbench, ../shared/bench beside the checkout; set LAB=...)" >&2
  exit 2
}
for tool in knotd:knot dig:bind9-dnsutils taskset:util-linux python3:python3 ss:iproute2; do
  cmd="${tool%%:*}"
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || {
    echo "soak.sh: $cmd is not installed (Debian package ${tool#*:}); $LAB/setup installs the lab's tools" >&2
    exit 2
  }
done
[ "$(nproc)" -ge 2 ] || { echo "soak.sh: needs 2 CPUs (server on one, load on the other)" >&2; exit 2; }

MINUTES="${SOAK_MINUTES:-10}"
PCT="${SOAK_PCT:-80}"
WARMUP="${SOAK_WARMUP:-40}"
PEAK_SECS="${SOAK_PEAK_SECS:-15}"
MIX="${SOAK_MIX:-blocked=70,cached=20,forwarded=5,tcp=3,malformed=2}"
SIZE="${SOAK_SIZE:-1000000}"
CHANGED="${SOAK_CHANGED:-5000}"
TIMEOUT_MS="${SOAK_TIMEOUT_MS:-1000}"
CACHE="${SOAK_CACHE:-100000}"
STALL="${SOAK_STALL:-3}"
LOG="${SOAK_LOG:-info,embargo::blocked=warn}"
PORT="${PORT:-15375}"
UPORT=$((PORT - 1))
PPORT=$((PORT + 1))
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
STATE="${LAB_STATE:-$HOME/.cache/embargo-bench}"
PEAK="${1:-}"

for p in "$UPORT" "$PORT" "$PPORT"; do
  if ss -Hlnu "sport = :$p" | grep -q . || ss -Hlnt "sport = :$p" | grep -q .; then
    echo "soak.sh: port $p is in use (set PORT=...; the soak uses PORT-1, PORT, PORT+1)" >&2
    exit 2
  fi
done

echo "soak: building (release)" >&2
if [ -n "${SOAK_BIN:-}" ]; then
  BIN="$(cd "$(dirname "$SOAK_BIN")" && pwd)/$(basename "$SOAK_BIN")"
  [ -x "$BIN" ] || { echo "soak.sh: SOAK_BIN=$SOAK_BIN is not an executable" >&2; exit 2; }
else
  (cd "$REPO" && cargo build --release --locked --quiet)
  BIN="$REPO/target/release/embargo"
fi
(cd "$REPO" && cargo build --release --locked --quiet -p embargo-soak)
GEN="$REPO/target/release/embargo-soak"
[ -x "$GEN" ] || { echo "soak.sh: no soak generator at $GEN (cargo build --release -p embargo-soak)" >&2; exit 1; }

LISTS="$STATE/work/lists/n$SIZE-s1"
if [ ! -f "$LISTS/q-allowed.txt" ]; then
  echo "soak: generating the $SIZE-name list into $LISTS (about 15 s a million)" >&2
  python3 "$LAB/gen/blocklist.py" "$SIZE" 1 "$LISTS" >/dev/null
fi

STAMP="$(date +%Y%m%d-%H%M%S)"
COMMIT="$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null)" ]; then COMMIT="$COMMIT+dirty"; fi
[ -z "${SOAK_BIN:-}" ] || COMMIT="$(basename "$SOAK_BIN")"
WD="$STATE/work/soak/$STAMP"
RESULTS="$STATE/results"
mkdir -p "$WD" "$RESULTS"
OUT="$RESULTS/soak-$STAMP-$COMMIT"

SERVER=""
cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  "$LAB/upstream/stop" "$WD" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Two versions of the list: the same SIZE names plus CHANGED names of their
# own, so that each reload removes CHANGED names and adds CHANGED others.
# The first name of each version is its marker: the reload command waits
# until the new version's marker is blocked and the old one's is not.
for v in a b; do
  { cat "$LISTS/domains.txt"; seq -f "soak-$v-%06g-reload.com" 1 "$CHANGED"; } > "$WD/list-$v.txt"
done
cp "$WD/list-a.txt" "$WD/list.txt"
echo a > "$WD/version"
cat > "$WD/reload.sh" <<R
#!/usr/bin/env bash
# Replaces the list with the other version (a rename, as an editor or a
# fetch would; the server's file watcher reloads), waits for the server's
# "reload done" log line, checks that the new version's marker is blocked
# and the old one's is not, and prints how many ms after the rename the
# server logged the reload done.
set -u
LOG="$WD/server.log"
cur="\$(cat "$WD/version")"
if [ "\$cur" = a ]; then next=b; else next=a; fi
cp "$WD/list-\$next.txt" "$WD/list.tmp"
size0=\$(stat -c %s "\$LOG")
t0=\$(date +%s%N)
mv "$WD/list.tmp" "$WD/list.txt"
echo "\$next" > "$WD/version"
ms=""
for _ in \$(seq 1 1500); do
  new="\$(tail -c +\$((size0 + 1)) "\$LOG" | grep -m1 -e 'reload done' -e 'reload failed')"
  case "\$new" in
    *'reload failed'*) echo "\$new"; exit 1 ;;
    *'reload done'*) ms=\$(( (\$(date -d "\${new%% *}" +%s%N) - t0) / 1000000 )); break ;;
  esac
  sleep 0.02
done
[ -n "\$ms" ] || { echo "no 'reload done' in the server log 30 s after the rename (SOAK_LOG must keep embargo::reload at info)"; exit 1; }
rcode() { dig +tries=3 +time=1 @127.0.0.1 -p $PORT "\$1" A 2>/dev/null | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
if [ "\$(rcode soak-\$next-000001-reload.com)" = NXDOMAIN ] && [ "\$(rcode soak-\$cur-000001-reload.com)" != NXDOMAIN ]; then
  echo "\$ms"
  exit 0
fi
echo "reloaded after \$ms ms, but soak-\$next-000001-reload.com is not blocked or soak-\$cur-000001-reload.com still is"
exit 1
R
chmod +x "$WD/reload.sh"

cat > "$WD/embargo.toml" <<C
# The soak's server: the lab's list plus the soak's own names, a cache, and
# the stalling proxy as the only upstream. Everything else is a default.
[server]
listen = ["127.0.0.1:$PORT"]

[upstream]
servers = ["127.0.0.1:$PPORT"]
timeout_ms = $TIMEOUT_MS

[cache]
size = $CACHE

[[lists]]
name = "soak"
source = "list.txt"
format = "domains"
authority = "lab"
reason = "soak test list"
C

echo "soak: starting the upstream (knotd) on CPU $CLIENT_CPU and embargo on CPU $SERVER_CPU" >&2
UPSTREAM_CPU="$CLIENT_CPU" "$LAB/upstream/start" "$WD" "$UPORT" >/dev/null
KNOTD="$(cat "$WD/upstream.pid")"
# Every forward waiting for the stalled upstream holds a socket.
ulimit -n 65536 2>/dev/null || true
RUST_LOG="$LOG" taskset -c "$SERVER_CPU" "$BIN" run -c "$WD/embargo.toml" 2>"$WD/server.log" &
SERVER=$!
for _ in $(seq 1 300); do
  if dig +tries=1 +time=1 @127.0.0.1 -p "$PORT" seized-example.com 2>/dev/null | grep -q NXDOMAIN; then break; fi
  kill -0 "$SERVER" 2>/dev/null || { echo "soak.sh: embargo exited:" >&2; tail -20 "$WD/server.log" >&2; exit 1; }
  sleep 0.2
done
dig +tries=1 +time=1 @127.0.0.1 -p "$PORT" seized-example.com 2>/dev/null | grep -q NXDOMAIN ||
  { echo "soak.sh: embargo does not block seized-example.com after 60 s" >&2; tail -20 "$WD/server.log" >&2; exit 1; }
launch_kb="$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status")"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

gen() {
  taskset -c "$CLIENT_CPU" "$GEN" -s "127.0.0.1:$PORT" \
    --blocked "$LISTS/q-blocked.txt" --cached "$LISTS/q-hot.txt" --forwarded "$LISTS/q-allowed.txt" \
    --mix "$MIX" --proxy "127.0.0.1:$PPORT,127.0.0.1:$UPORT" --pid "$SERVER" --watch "$KNOTD" "$@"
}

if [ -z "$PEAK" ]; then
  echo "soak: measuring the peak: ${PEAK_SECS} s closed loop (at most 256 UDP queries in flight), no stall, no reload" >&2
  gen -q 256 -c 8 -w 3 -l "$PEAK_SECS" -i "$PEAK_SECS" --stall-for 0 --seed 2 --json "$OUT-peak.json" > "$WD/peak.md"
  PEAK="$(sed -n 's/^Sent QPS: *//p' "$WD/peak.md")"
  [ -n "$PEAK" ] || { echo "soak.sh: the peak run reported no rate" >&2; cat "$WD/peak.md" >&2; exit 1; }
fi
RATE=$((PEAK * PCT / 100))
echo "soak: peak $PEAK QPS; soaking at $RATE QPS ($PCT %) for $MINUTES min after ${WARMUP} s of warm-up" >&2
gen -r "$RATE" -w "$WARMUP" -l $((MINUTES * 60)) -i 60 --stall-at 30 --stall-for "$STALL" \
  --reload-cmd "$WD/reload.sh" --reload-at 10 --seed 3 --json "$OUT.json" > "$WD/soak.md"

alive="yes"
kill -0 "$SERVER" 2>/dev/null || alive="NO: it exited (see $WD/server.log)"
count() { grep -c "$1" "$WD/server.log" || true; }
{
  echo "## Soak of embargo $COMMIT, $(date '+%Y-%m-%d %H:%M %Z')"
  echo
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)."
  echo "Load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "$SIZE listed names (+$CHANGED that change at each reload), cache $CACHE, upstream timeout_ms $TIMEOUT_MS; mix $MIX."
  echo "Peak of the mix: $PEAK QPS; soak at $RATE QPS ($PCT %) for $MINUTES min after a ${WARMUP} s warm-up (row \"warm-up\", not in the total)."
  echo "Each minute: the list replaced at 10 s (the reload column: ms from the rename until the server logged the reload done; the new list's marker was then checked to be blocked and the old one's not), the upstream silent from 30 s for $STALL s."
  echo
  if [ -f "$WD/peak.md" ]; then
    echo "Peak run (closed loop):"
    echo
    cat "$WD/peak.md"
    echo
  fi
  echo "Soak:"
  echo
  cat "$WD/soak.md"
  echo
  echo "- server after the soak: alive $alive; RSS at launch (lists loaded, no load) $((launch_kb / 1024)) MiB"
  echo "- reload build times in the server log (ms; the first is the start-up load): $(grep -o 'rules loaded.* ms=[0-9]*' "$WD/server.log" | sed 's/.*ms=//' | tr '\n' ' ')"
  echo "- server log: $(count 'reload done') reloads done, $(count 'reload failed') failed, $(count 'upstream failed') 'upstream failed: SERVFAIL' warnings, $(count ' ERROR ') errors, $(count panicked) panics"
} > "$OUT.md"
cat "$OUT.md"
echo >&2
echo "soak: report $OUT.md, rows $OUT.json, server log $WD/server.log" >&2
[ "$alive" = yes ]
