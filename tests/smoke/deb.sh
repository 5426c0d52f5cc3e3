#!/usr/bin/env bash
# The Debian package, end to end, on this machine (CI runs it as root):
# build it (dist/debian/build, reusing the release build), install it with
# dpkg -i, check what it installed (binary, conffiles, unit and drop-in,
# man pages, completions, the system user and state directory), validate
# the installed config as the service user, serve with the installed
# binary and config as systemd would start it (user embargo with only
# CAP_NET_BIND_SERVICE) inside a network namespace of its own (the config
# listens on port 53 of every address and forwards to Quad9, 9.9.9.9: the
# namespace's only link is a veth pair to a second namespace, made here,
# where a small responder holds 9.9.9.9, so nothing leaves the machine),
# ask it a listed and an allowed name, then purge the package and check
# that nothing it installed or made is left.
#
# It does not start the service through systemd: CI has no systemd as
# PID 1. `systemd-analyze verify` checks the installed unit with its drop-in.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "deb: needs root (dpkg -i)"; exit 1; }
for tool in cargo-deb dpkg unshare setpriv runuser dig man ip python3; do
  command -v "$tool" >/dev/null || { echo "deb: $tool not found"; exit 1; }
done
fail=0
ok() { echo "deb: ok   $*"; }
bad() { echo "deb: FAIL $*"; fail=1; }

if dpkg -s embargo >/dev/null 2>&1; then
  echo "deb: embargo is installed already (an earlier run?): purging it first"
  dpkg --purge embargo
fi

# EMBARGO_DEB names a package built already (to rerun the checks alone).
if [ -n "${EMBARGO_DEB:-}" ]; then
  deb="$EMBARGO_DEB"
else
  start=$SECONDS
  bash dist/debian/build
  deb="$(ls -t target/debian/embargo_*.deb | head -1)"
  echo "deb: built $deb ($(du -h "$deb" | cut -f1)) in $((SECONDS - start)) s"
fi
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg -i "$deb"
# From here on the package is installed: purge it on the way out whatever
# happens, so that a failed run leaves no user, conffile or state behind.
trap 'dpkg --purge embargo >/dev/null 2>&1 || true' EXIT

# What it installed.
[ "$(command -v embargo)" = /usr/bin/embargo ] && ok "embargo is /usr/bin/embargo" \
  || bad "embargo is $(command -v embargo || echo missing), not /usr/bin/embargo"
want="embargo $(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
got="$(embargo --version)"
[ "$got" = "$want" ] && ok "embargo --version: $got" || bad "embargo --version: $got, not $want"
conffiles="$(dpkg-query --showformat='${Conffiles}\n' --show embargo)"
for f in /etc/embargo/embargo.toml /etc/embargo/blocklists/allow.txt \
         /etc/embargo/blocklists/example-reserved.txt; do
  grep -q " $f " <<<"$conffiles" && ok "conffile $f" || bad "$f is not a conffile"
done
for f in /usr/lib/systemd/system/embargo.service \
         /usr/lib/systemd/system/embargo.service.d/debian.conf \
         /usr/share/bash-completion/completions/embargo \
         /usr/share/zsh/vendor-completions/_embargo \
         /usr/share/fish/vendor_completions.d/embargo.fish; do
  [ -s "$f" ] && ok "$f" || bad "no $f"
done
for page in "8 embargo" "8 embargo-check" "5 embargo.toml"; do
  # shellcheck disable=SC2086 # section and name, two words
  if path="$(man -w $page 2>&1)"; then ok "man $page: $path"; else bad "man $page: $path"; fi
done
man 5 embargo.toml 2>/dev/null | grep -q "tcp_idle_timeout" \
  && ok "man 5 embargo.toml shows the keys" || bad "man 5 embargo.toml does not open"
getent passwd embargo >/dev/null && ok "system user embargo" || bad "no user embargo"
[ "$(stat -c '%U %a' /var/lib/embargo 2>/dev/null)" = "embargo 750" ] \
  && ok "/var/lib/embargo is embargo's, 0750" \
  || bad "/var/lib/embargo: $(stat -c '%U %a' /var/lib/embargo 2>&1)"
grep -q '^listen = \["0.0.0.0:53", "\[::\]:53"\]' /etc/embargo/embargo.toml \
  && grep -q '^dir = "/var/lib/embargo"' /etc/embargo/embargo.toml \
  && ok "the config is set for the service (port 53, /var/lib/embargo)" \
  || bad "/etc/embargo/embargo.toml is not set for the service"

# The unit as installed, drop-in included; verify warns about anything off.
if command -v systemd-analyze >/dev/null; then
  if out="$(systemd-analyze verify /usr/lib/systemd/system/embargo.service 2>&1)" && [ -z "$out" ]; then
    ok "systemd-analyze verify embargo.service"
  else
    bad "systemd-analyze verify embargo.service: $out"
  fi
  shown="$(systemd-analyze cat-config systemd/system/embargo.service 2>/dev/null || true)"
  grep -q '^User=embargo' <<<"$shown" && grep -q '^ExecStart=/usr/bin/embargo run' <<<"$shown" \
    && ok "the drop-in runs /usr/bin/embargo as embargo" || bad "the drop-in is not in force: $shown"
else
  echo "deb: systemd-analyze not found: the unit is not verified"
fi

# validate reads the config and every list as the service user; it sends
# nothing, but runs without a network all the same.
if out="$(unshare -n runuser -u embargo -- embargo validate -c /etc/embargo/embargo.toml 2>&1)"; then
  ok "embargo validate -c /etc/embargo/embargo.toml (as embargo)"
else
  bad "embargo validate: $out"
fi

# The upstream the installed config names, 9.9.9.9:53, in a namespace of
# its own (embargo-q9) joined by a veth pair to the server's (embargo-srv):
# a responder that answers every A question with 192.0.2.53.
upstream_ns() {
  ip netns add embargo-srv
  ip netns add embargo-q9
  trap 'ip netns del embargo-srv 2>/dev/null; ip netns del embargo-q9 2>/dev/null; dpkg --purge embargo >/dev/null 2>&1 || true' EXIT
  ip link add q9 netns embargo-srv type veth peer name srv netns embargo-q9
  ip -n embargo-srv link set lo up
  ip -n embargo-srv addr add 10.53.0.1/24 dev q9
  ip -n embargo-srv link set q9 up
  ip -n embargo-srv route add 9.9.9.9/32 via 10.53.0.2
  ip -n embargo-q9 link set lo up
  ip -n embargo-q9 addr add 10.53.0.2/24 dev srv
  ip -n embargo-q9 addr add 9.9.9.9/32 dev lo
  ip -n embargo-q9 link set srv up
  ip netns exec embargo-q9 python3 -c '
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("9.9.9.9", 53))
while True:
    q, peer = s.recvfrom(4096)
    i = 12
    while i < len(q) and q[i]:
        i += q[i] + 1
    end = i + 5
    if len(q) < end:
        continue
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    ans = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 53]) if qtype == 1 else b""
    hdr = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if ans else 0, 0, 0)
    s.sendto(hdr + q[12:end] + ans, peer)
' &
  Q9_PID=$!
  for _ in $(seq 1 100); do
    ip netns exec embargo-srv dig @9.9.9.9 +time=1 +tries=1 ready.example A 2>/dev/null \
      | grep -q "status: NOERROR" && return 0
    sleep 0.1
  done
  echo "deb: FAIL the namespace's 9.9.9.9 does not answer"; exit 1
}
upstream_ns

# Serve, as the unit does: user embargo, CAP_NET_BIND_SERVICE and nothing
# else, the installed binary and config, in the namespace made above.
serve() {
  local log pid status=0
  log="$(mktemp)"
  setpriv --reuid embargo --regid embargo --init-groups \
    --inh-caps +net_bind_service --ambient-caps +net_bind_service \
    /usr/bin/embargo run -c /etc/embargo/embargo.toml >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do grep -q "listening on udp" "$log" && break; sleep 0.1; done
  local listed allowed
  listed="$(dig @127.0.0.1 -p 53 +time=3 +tries=1 seized.example A || true)"
  allowed="$(dig @127.0.0.1 -p 53 +time=3 +tries=1 allowed.seized.example A || true)"
  kill -TERM "$pid"
  wait "$pid" || status=$?
  if grep -q "status: NXDOMAIN" <<<"$listed" && grep -q "EDE: 15 (Blocked)" <<<"$listed"; then
    echo "deb: ok   seized.example (listed) -> NXDOMAIN, EDE 15"
  else
    echo "deb: FAIL seized.example: $listed"; cat "$log"; status=1
  fi
  # Allowlisted: forwarded to the config's upstream, 9.9.9.9 (the
  # namespace's responder), and its answer passed on.
  if grep -q "status: NOERROR" <<<"$allowed" && grep -q "192.0.2.53" <<<"$allowed"; then
    echo "deb: ok   allowed.seized.example (allowed) -> forwarded to 9.9.9.9: 192.0.2.53"
  else
    echo "deb: FAIL allowed.seized.example: $allowed"; cat "$log"; status=1
  fi
  rm -f "$log"
  return "$status"
}
export -f serve
if ip netns exec embargo-srv bash -c serve; then ok "served as embargo on port 53, stopped by SIGTERM"; else bad "serving"; fi
[ -f /var/lib/embargo/hits.json ] && ok "the server kept its state in /var/lib/embargo" \
  || bad "no hits.json in /var/lib/embargo"

# Purge: nothing the package installed or made may be left.
installed="$(dpkg -L embargo)"
kill "$Q9_PID" 2>/dev/null || true
ip netns del embargo-srv; ip netns del embargo-q9
dpkg --purge embargo
trap - EXIT
left=()
while IFS= read -r f; do
  [ -f "$f" ] || [ -L "$f" ] && left+=("$f")
done <<<"$installed"
for d in /etc/embargo /var/lib/embargo /usr/lib/systemd/system/embargo.service.d; do
  [ -e "$d" ] && left+=("$d")
done
[ ${#left[@]} -eq 0 ] && ok "purge removed every file and directory" || bad "purge left: ${left[*]}"
getent passwd embargo >/dev/null && bad "purge left the user embargo" || ok "purge removed the user"
getent group embargo >/dev/null && bad "purge left the group embargo" || ok "purge removed the group"
if dpkg -s embargo >/dev/null 2>&1; then bad "dpkg still knows embargo"; fi

[ $fail -eq 0 ] && echo "deb: passed"
exit $fail
