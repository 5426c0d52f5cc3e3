#!/usr/bin/env bash
# End-to-end check of the README's first command: the release binary serves
# the shipped config/embargo.toml, and dig sees a listed name, a subdomain
# of it and an allowlisted name answered as documented, and /metrics on the
# shipped [http] listener counts the blocks.
#
# The shipped config forwards to public resolvers, so this runs inside a
# loopback-only network namespace (unshare -n): nothing can leave the machine.
# Only listed names are asked; the one forwarded query fails inside the
# namespace and must come back SERVFAIL within timeout_ms.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${EMBARGO_BIN:-target/release/embargo}"
[ -x "$BIN" ] || { echo "smoke: build first (cargo build --release)"; exit 1; }
if [ -z "${EMBARGO_SMOKE_INNER:-}" ]; then
  exec unshare -n env EMBARGO_SMOKE_INNER=1 EMBARGO_BIN="$BIN" bash "$0"
fi
ip link set lo up
log="$(mktemp)"
# The query log of the shipped config: JSON, blocked queries, in the state
# directory next to the config. Earlier runs may have left records in it.
qlog=config/embargo-state/queries.log
before=0
if [ -f "$qlog" ]; then before="$(wc -l < "$qlog")"; fi
"$BIN" run -c config/embargo.toml >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  grep -q "listening on udp" "$log" && break
  sleep 0.1
done
fail=0
expect() {  # expect NAME TYPE STATUS [EXTRA dig args]
  local name=$1 type=$2 want=$3; shift 3
  local out
  out="$(dig @127.0.0.1 -p 5353 +time=3 +tries=1 "$@" "$name" "$type")"
  if grep -q "status: $want" <<<"$out"; then
    echo "smoke: ok   $name $type -> $want"
  else
    echo "smoke: FAIL $name $type: wanted $want"; echo "$out"; fail=1
  fi
  LAST="$out"
}
expect seized.example A NXDOMAIN
grep -q "EDE: 15 (Blocked)" <<<"$LAST" || { echo "smoke: FAIL no EDE 15 in"; echo "$LAST"; fail=1; }
grep -q "seized.example.*SOA" <<<"$LAST" || { echo "smoke: FAIL no SOA"; fail=1; }
expect www.seized.example AAAA NXDOMAIN +tcp
expect deep.a.tracker.example MX NXDOMAIN
expect allowed.seized.example A SERVFAIL   # allowlisted: forwarded, and the namespace has no route out
# The shipped config serves HTTP on loopback: the three blocks above are counted.
if metrics="$(curl -sf http://127.0.0.1:8053/metrics)"; then
  blocked="$(awk '/^embargo_blocked_total\{/ { n += $2 } END { print n + 0 }' <<<"$metrics")"
  if [ "$blocked" = 3 ]; then echo "smoke: ok   /metrics counts 3 blocks"
  else echo "smoke: FAIL /metrics counts $blocked blocks, not 3"; fail=1; fi
else
  echo "smoke: FAIL no /metrics on 127.0.0.1:8053"; fail=1
fi
# The query log's latest records and the live hit report, on the same listener.
if latest="$(curl -sf 'http://127.0.0.1:8053/api/log?limit=10')" \
  && grep -q '"name":"seized.example","type":"A","decision":"blocked","list":"example-reserved"' <<<"$latest"; then
  echo "smoke: ok   /api/log has the block"
else
  echo "smoke: FAIL /api/log has no record of the block: $latest"; fail=1
fi
if hits="$(curl -sf 'http://127.0.0.1:8053/api/hits?list=example-reserved')" \
  && grep -q '"client":"127.0.0.1","count":' <<<"$hits"; then
  echo "smoke: ok   /api/hits has the client"
else
  echo "smoke: FAIL /api/hits has no client of example-reserved: $hits"; fail=1
fi
# Captured first: grep -q closing the pipe early would fail `check` (pipefail).
checked="$("$BIN" check -c config/embargo.toml www.seized.example)"
grep -q "blocked.*list=example-reserved entry=seized.example" <<<"$checked" \
  || { echo "smoke: FAIL check"; fail=1; }
kill -TERM $pid
wait $pid || { echo "smoke: FAIL exit status $? after SIGTERM"; fail=1; }
tail -n +"$((before + 1))" "$qlog" 2>/dev/null \
  | grep '"name":"seized.example","type":"A","decision":"blocked","list":"example-reserved","entry":"seized.example","action":"nxdomain","rcode":"NXDOMAIN"' >/dev/null \
  || { echo "smoke: FAIL no query log record for the block in $qlog"; fail=1; }
"$BIN" hits -c config/embargo.toml | grep "^example-reserved  *127.0.0.1 " >/dev/null \
  || { echo "smoke: FAIL embargo hits shows no client of example-reserved"; fail=1; }
[ $fail -eq 0 ] && echo "smoke: passed"
exit $fail
