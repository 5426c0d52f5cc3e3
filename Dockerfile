# syntax=docker/dockerfile:1
#
# embargo container image.
#
#   docker build -t embargo .
#   docker run -d --name embargo --network host embargo
#   dig @127.0.0.1 seized.example        # -> NXDOMAIN
#
# The shipped [access] allow answers private networks only (loopback,
# RFC 1918, CGNAT, link-local, ULA). With -p 53:53, Docker's userland proxy
# relays some clients (IPv6 ones when the container has no IPv6, local ones,
# every one with iptables off or rootless) from the bridge gateway, e.g.
# 172.17.0.1, which that allow admits: read "Exposing embargo" in the
# manual (docs/src/exposing.md) before publishing the port.
#
# Config and lists live in /etc/embargo/; mount your own over them, e.g.
#   -v ./my-embargo.toml:/etc/embargo/embargo.toml:ro
#   -v ./blocklists:/etc/embargo/blocklists:ro
# They must be readable by the user embargo (uid 10053), e.g. mode 0644.
# The state directory (downloaded lists, pid file) is /var/lib/embargo; a
# volume keeps the last good copies of remote lists across containers:
#   -v embargo-state:/var/lib/embargo
#
# Privileges: the container runs as the unprivileged user embargo from the
# start (USER below), never as root. The binary carries one file capability,
# cap_net_bind_service, to bind port 53; embargo clears it, and sets
# no_new_privs, as soon as its sockets are bound, before it starts a thread.
# So the image's config leaves [server] user unset: that setting is for
# starting embargo as root and having it switch user after binding, which
# would need root in the container (and CAP_SETUID/CAP_SETGID) for nothing.
#
# Who may ask: the image listens on every interface, port 53; which clients
# are answered is the config's access control, which refuses outside
# clients unless the config allows them (see the manual, docs/src/exposing.md): mount a config that
# names your networks.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# libcap2-bin provides setcap (used below); only this stage needs it.
# Not pinned to a version (hadolint DL3008): Debian replaces a package's
# version in the archive with each security update, so a pin would break
# the build rather than keep it reproducible; the base image's tag fixes
# the release (bookworm).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Cargo parses the whole manifest, including the [[bench]] target and the
# integration tests, and every workspace member's (the load generators in
# tools/), so benches/, tests/ and tools/ must be present even though only
# the binary is built.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
COPY tools ./tools

# The registry and target directories are BuildKit cache mounts (faster
# rebuilds), so the binary is copied out of target/ within the same RUN.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --profile dist --locked \
 && install -D -m 0755 target/dist/embargo /out/embargo

# Binding port 53 needs privilege and the image runs as a non-root user.
# Two ways to allow it:
#   1. (used here) a file capability on the binary: cap_net_bind_service
#      lets it bind ports below 1024 and nothing else. This also works with
#      --network host.
#   2. the namespaced sysctl, at run time:
#        docker run --sysctl net.ipv4.ip_unprivileged_port_start=53 ...
#      (Docker 20.10+ already sets it to 0 for containers with their own
#      network namespace, but not with --network host.)
# Notes on 1: the capability is kept by COPY --from with BuildKit (the default
# builder); if your builder drops extended attributes, use way 2. If you run
# with --cap-drop ALL, add --cap-add NET_BIND_SERVICE, or the kernel refuses
# to execute a binary whose file capability is outside the bounding set.
RUN setcap cap_net_bind_service=+ep /out/embargo \
 && getcap /out/embargo

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates only; nothing else is needed at run time. Not pinned,
# as in the build stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged user; uid/gid 10053 avoid clashing with host users.
RUN groupadd --system --gid 10053 embargo \
 && useradd --system --uid 10053 --gid 10053 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin embargo

COPY --from=builder /out/embargo /usr/local/bin/embargo

# Shipped config and lists, owned by root and read-only to the service.
COPY blocklists/ /etc/embargo/blocklists/

# The shipped config sits in config/ and names its lists "../blocklists/...",
# relative to itself; here the lists sit next to the config. The Debian
# package's rewrite (dist/service-config.sh) sets it for a service: lists in
# "blocklists/...", every interface, port 53, over IPv4 and IPv6 (only
# [server]'s listen: [http] stays on the container's loopback), state in
# /var/lib/embargo, the one directory the user embargo may write. It fails
# the build if the shipped config changed shape, or sets a [server] user
# that the unprivileged container could not switch to.
COPY config/embargo.toml dist/service-config.sh /tmp/
RUN sh /tmp/service-config.sh /tmp/embargo.toml > /etc/embargo/embargo.toml \
 && rm /tmp/embargo.toml /tmp/service-config.sh \
 && install -d -m 0750 -o embargo -g embargo /var/lib/embargo

# Numeric, so that a runtime that must know the user is not root before
# starting the container (Kubernetes' runAsNonRoot) can tell (hadolint
# DL3066); 10053 is the user embargo made above.
USER 10053:10053

# The config parses and every list loads, read as the user that will serve.
RUN ["embargo", "validate", "-c", "/etc/embargo/embargo.toml"]

EXPOSE 53/udp 53/tcp

ENTRYPOINT ["embargo"]
CMD ["run", "-c", "/etc/embargo/embargo.toml"]
