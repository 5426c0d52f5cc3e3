#!/usr/bin/env bash
# `systemd-analyze verify` on dist/embargo.service exactly as shipped. The
# unit names /usr/local/bin/embargo and /bin/kill, which verify requires to
# exist, so the check runs in a scratch root (--root) holding the built
# binary at that path, this system's kill, and a copy of this system's units
# (for the targets the unit names); nothing is installed on the machine. verify only warns about an unknown
# or misspelt key, so any output at all fails the check.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${EMBARGO_BIN:-target/release/embargo}"
UNIT=dist/embargo.service
[ -x "$BIN" ] || { echo "systemd-unit: build first (cargo build --release)"; exit 1; }
command -v systemd-analyze >/dev/null \
  || { echo "systemd-unit: systemd-analyze not found (apt-get install systemd)"; exit 1; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
install -m 0755 "$BIN" "$root/usr/local/bin/embargo"
[ -x /bin/kill ] || { echo "systemd-unit: /bin/kill not found (apt-get install procps)"; exit 1; }
install -D -m 0755 "$(readlink -f /bin/kill)" "$root/usr/bin/kill"
ln -s usr/bin "$root/bin"
install -m 0644 "$UNIT" "$root/etc/systemd/system/embargo.service"
if ! out="$(systemd-analyze verify --root="$root" embargo.service 2>&1)"; then
  echo "$out"; echo "systemd-unit: FAIL: systemd-analyze verify $UNIT"; exit 1
fi
if [ -n "$out" ]; then
  echo "$out"; echo "systemd-unit: FAIL: systemd-analyze verify warned about $UNIT"; exit 1
fi
# The unit's promises, which verify does not check: who it runs as and
# what it keeps (see the comments in the unit and the manual, "Running as a service").
for line in 'DynamicUser=yes' 'AmbientCapabilities=CAP_NET_BIND_SERVICE' \
            'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' 'NoNewPrivileges=yes' \
            'StateDirectory=embargo' 'ProtectSystem=strict' \
            'ExecReload=/bin/kill -HUP $MAINPID'; do
  grep -qxF "$line" "$UNIT" || { echo "systemd-unit: FAIL: $UNIT lacks $line"; exit 1; }
done
echo "systemd-unit: ok: systemd-analyze verify $UNIT ($(systemd-analyze --version | head -1))"
