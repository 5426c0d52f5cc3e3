#!/usr/bin/env bash
# Do idle TCP connections slow UDP answers? Blocked-query latency with and
# without 1,000 idle TCP connections open, and the server's RSS with them.
#
#   benches/idle-tcp.sh [CONNECTIONS] [ROUNDS]     (default 1000 2)
#   env: DURATION seconds per run (default 10), WORK (default /tmp/embargo-idle-tcp),
#        PORT (default 25353)
#
# The release binary (built if missing), pinned to CPU 1 as in the lab;
# blast (the lab's load generator, built on first use) and the idle
# connections on CPU 0. Each round runs blast twice without and twice with
# the idle connections: saturating (-c 8 -q 128, the lab's setting) and
# light (-c 4 -q 8, latency near the round trip). The server's
# tcp_idle_timeout is set to 600s so the connections stay open and idle.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
LAB="${LAB:-$REPO/../shared/bench}"
CONNS="${1:-1000}"
ROUNDS="${2:-2}"
DURATION="${DURATION:-10}"
WORK="${WORK:-/tmp/embargo-idle-tcp}"
PORT="${PORT:-25353}"
mkdir -p "$WORK"
BIN="$REPO/target/release/embargo"
[ -x "$BIN" ] || (cd "$REPO" && cargo build --release --locked)
BLAST="$WORK/blast-target/release/blast"
[ -x "$BLAST" ] || (cd "$LAB/blast" && CARGO_TARGET_DIR="$WORK/blast-target" cargo build --release --quiet)

python3 - "$WORK" <<'PY'
import random, sys
random.seed(1)
work = sys.argv[1]
names = [f"blocked{i}.test" for i in range(10000)]
open(f"{work}/list.txt", "w").write("\n".join(names) + "\n")
open(f"{work}/q-blocked.txt", "w").write("".join(f"www.{random.choice(names)} A\n" for _ in range(100000)))
PY
cat > "$WORK/embargo.toml" <<C
[server]
listen = ["127.0.0.1:$PORT"]
tcp_idle_timeout = "600s"
tcp_max_connections = $((CONNS + 24))

[upstream]
servers = ["127.0.0.1:9"]

[[lists]]
name = "bench"
source = "list.txt"
C
cat > "$WORK/idle.py" <<'PY'
import resource, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, n + 100))
conns = [socket.create_connection((host, port)) for _ in range(n)]
print(f"open {len(conns)}", flush=True)
time.sleep(3600)
PY

RUST_LOG=warn taskset -c 1 "$BIN" run -c "$WORK/embargo.toml" >"$WORK/server.log" 2>&1 &
SERVER=$!
IDLE=""
cleanup() { [ -z "$IDLE" ] || kill "$IDLE" 2>/dev/null || true; kill "$SERVER" 2>/dev/null || true; }
trap cleanup EXIT
sleep 1
if ! kill -0 "$SERVER" 2>/dev/null; then
  echo "idle-tcp: embargo did not start:" >&2; cat "$WORK/server.log" >&2; exit 1
fi
rss() { awk '/VmRSS/{print $2}' "/proc/$SERVER/status"; }
run() {
  taskset -c 0 "$BLAST" -s "127.0.0.1:$PORT" -d "$WORK/q-blocked.txt" -l "$DURATION" "$@" 2>&1 |
    awk '/Queries per second/{q=$4} /lost/{l=$3} /Latency percentiles/{p50=$5; p99=$7} END{printf "%8.0f QPS  lost %s  p50 %s ms  p99 %s ms\n", q, l, p50, p99}'
}
echo "embargo $(git -C "$REPO" rev-parse --short HEAD), $CONNS idle connections, ${DURATION}s runs, load $(cut -d' ' -f1 /proc/loadavg)"
echo "RSS without: $(rss) kB"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  echo "  none   saturating  $(run -c 8 -q 128 -b 32 -t 2)"
  echo "  none   light       $(run -c 4 -q 8 -b 8 -t 2)"
  taskset -c 0 python3 "$WORK/idle.py" 127.0.0.1 "$PORT" "$CONNS" >"$WORK/idle.log" 2>&1 &
  IDLE=$!
  until grep -q open "$WORK/idle.log" 2>/dev/null; do sleep 0.2; done
  sleep 1
  echo "  open: $(ss -Htn state established "sport = :$PORT" | wc -l) connections, RSS $(rss) kB"
  echo "  $CONNS   saturating  $(run -c 8 -q 128 -b 32 -t 2)"
  echo "  $CONNS   light       $(run -c 4 -q 8 -b 8 -t 2)"
  kill "$IDLE"; IDLE=""
  sleep 1
done
