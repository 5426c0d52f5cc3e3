#!/bin/sh
# Writes config/embargo.toml (the annotated default, set for a first try on
# port 5353 with paths relative to config/) as the configuration of a system
# service, for the Debian package and the Docker image:
#   - lists from /etc/embargo/blocklists/ ("blocklists/..." next to it),
#   - [server] listen on port 53 of every address, IPv4 and IPv6 ([http]
#     stays on loopback),
#   - state (downloaded lists, pid file, query log, hit report) in
#     /var/lib/embargo, the one directory the service may write.
# Fails if the shipped config has changed shape, so that a new key or a
# moved line cannot slip through unrewritten, or if it sets a [server]
# user (the service starts unprivileged and has no user to switch to).
#
#   sh dist/service-config.sh config/embargo.toml > embargo.toml
set -eu
in="${1:?usage: service-config.sh config/embargo.toml > out.toml}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
sed -e 's#\.\./blocklists/#blocklists/#g' \
    -e '0,/^listen = /s#^listen = .*#listen = ["0.0.0.0:53", "[::]:53"]#' \
    "$in" > "$out"
printf '\n[state]\n# Set for the system service (dist/service-config.sh).\ndir = "/var/lib/embargo"\n' >> "$out"
fail() { echo "service-config.sh: $in: $1" >&2; exit 1; }
grep -q '^listen = \["0.0.0.0:53", "\[::\]:53"\]' "$out" || fail "no [server] listen line to set"
grep -q '^listen = "127.0.0.1:8053"' "$out" || fail "[http] listen is not on loopback"
! grep -q '\.\./blocklists/' "$out" || fail "a list path outside ../blocklists/ is left"
! grep -Eq '^user *=' "$out" || fail "sets a [server] user"
[ "$(grep -c '^\[state\]' "$out")" = 1 ] || fail "has a [state] section already"
cat "$out"
