#!/usr/bin/env bash
# What client groups cost at full speed (issue 12): blocked QPS from 65,536
# distinct client addresses (tools/loadgen, one source address per
# query from 127.1.0.0 upwards) against the lab's floor (limit), embargo
# without groups, and embargo with 8 groups that split those addresses
# (eight /19s, each also holding a /24 nested in the next one's /19, so
# the address search has 24 ranges), every group applying the list (a name
# on it is answered through the group's table), g7 with its own action
# (refused).
#
#   benches/groups.sh [SECONDS]          (default 10 per run)
#   env: EXTRA_CONFIG (TOML appended to embargo's config, e.g. a [log]
#        table), ADDRESSES (65536), ROUNDS (2), PORT (15341), LAB (../shared/bench),
#        LAB_STATE (~/.cache/embargo-bench), SERVER_CPU (1), CLIENT_CPU (0)
#
# Pinned as the lab pins: the server on CPU 1, the load generator on CPU 0.
# Rounds alternate the systems, so a noisy moment hurts them alike; the
# ratio to the floor of the same round is the figure to read.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
LAB="${LAB:-$REPO/../shared/bench}"
STATE="${LAB_STATE:-$HOME/.cache/embargo-bench}"
SECS="${1:-10}"
ADDRESSES="${ADDRESSES:-65536}"
ROUNDS="${ROUNDS:-2}"
PORT="${PORT:-15341}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
WORK="$STATE/work/groups"
LISTS="$STATE/work/groups/lists"
mkdir -p "$WORK"

(cd "$REPO" && cargo build --release --locked --quiet && cargo build --release --locked --quiet -p embargo-loadgen)
LOADGEN="$REPO/target/release/embargo-loadgen"
[ -x "$LOADGEN" ] || { echo "groups: no loadgen binary at $LOADGEN (cargo build --release -p embargo-loadgen)" >&2; exit 1; }
(cd "$LAB/limit" && CARGO_TARGET_DIR="$STATE/.tools/limit-target" cargo build --release --quiet)
LIMIT="$STATE/.tools/limit-target/release/limit"
[ -f "$LISTS/q-blocked.txt" ] || python3 "$LAB/gen/blocklist.py" 1000000 1 "$LISTS"

config() { # $1 = extra TOML
  cat > "$WORK/embargo.toml" <<C
[server]
listen = ["127.0.0.1:$PORT"]
[upstream]
servers = ["127.0.0.1:9"]
[cache]
size = 100000
[block]
ede = "censored"
[[lists]]
name = "lab-list"
source = "$LISTS/domains.txt"
format = "domains"
authority = "lab"
reason = "lab test list"
$1
${EXTRA_CONFIG:-}
C
}

groups() { # 8 groups: eight /19s of 127.1.0.0/16, each also holding a /24 inside the next one's /19
  for g in 0 1 2 3 4 5 6 7; do
    printf '[[groups]]\nname = "g%s"\nclients = ["127.1.%s.0/19", "127.1.%s.0/24"]\nlists = ["lab-list"]\n' \
      "$g" "$((g * 32))" "$(((g + 1) % 8 * 32 + 5))"
    if [ "$g" = 7 ]; then printf 'action = "refused"\n'; fi
  done
}

start() { # $1 = system
  case "$1" in
    limit) taskset -c "$SERVER_CPU" "$LIMIT" "$PORT" "$LISTS/domains.txt" 32 2>"$WORK/server.log" & ;;
    embargo-off) config ""
      RUST_LOG=warn taskset -c "$SERVER_CPU" "$REPO/target/release/embargo" run -c "$WORK/embargo.toml" 2>"$WORK/server.log" & ;;
    embargo-groups) config "$(groups)"
      RUST_LOG=warn taskset -c "$SERVER_CPU" "$REPO/target/release/embargo" run -c "$WORK/embargo.toml" 2>"$WORK/server.log" & ;;
  esac
  SERVER=$!
  for _ in $(seq 1 600); do
    if dig +tries=1 +time=1 @127.0.0.1 -p "$PORT" seized-example.com 2>/dev/null | grep -q NXDOMAIN; then
      return 0
    fi
    sleep 0.2
  done
  echo "groups: $1 did not answer" >&2; cat "$WORK/server.log" >&2; exit 1
}

stop() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap stop EXIT

declare -A QPS
echo "| round | system | QPS | x floor | lost | truncated | source addresses | rcodes |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for sys in limit embargo-off embargo-groups; do
    start "$sys"
    out="$(taskset -c "$CLIENT_CPU" "$LOADGEN" -s "127.0.0.1:$PORT" -d "$LISTS/q-blocked.txt" -l "$SECS" -a "$ADDRESSES" -c 8 -q 128 -b 32 -t 2)"
    stop
    qps="$(sed -n 's/.*Queries per second: *\([0-9.]*\).*/\1/p' <<<"$out")"
    lost="$(sed -n 's/.*Queries lost: *\([0-9]*\).*/\1/p' <<<"$out")"
    tc="$(sed -n 's/.*Truncated answers: *\([0-9]*\).*/\1/p' <<<"$out")"
    src="$(sed -n 's/.*Source addresses: *\([0-9]*\).*/\1/p' <<<"$out")"
    rc="$(sed -n 's/^Rcodes: //p' <<<"$out")"
    QPS[$sys]="$qps"
    floor="${QPS[limit]}"
    ratio="$(python3 -c "print(f'{$qps / $floor:.2f}')")"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$round" "$sys" "$(printf "%'.0f" "$qps")" "$ratio" "$lost" "$tc" "$src" "$rc"
  done
done
