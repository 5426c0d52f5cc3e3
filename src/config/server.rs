//! `[server]` beyond `listen`: how many UDP workers serve, and the bounds
//! that keep clients from taking more than their share (TCP connections,
//! their idle and partial-message timeouts, queries in flight per
//! connection, forwards in flight).
//!
//! These are startup settings: a reload that sees them changed keeps the
//! running values (see `reload`).

use std::time::Duration;

use serde::Deserialize;

use super::Checker;
use super::raw::{Container, Section, Value};

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub listen: Option<Value>,
    pub user: Option<Value>,
    pub group: Option<Value>,
    pub workers: Option<Value>,
    pub tcp_max_connections: Option<Value>,
    pub tcp_idle_timeout: Option<Value>,
    pub tcp_message_timeout: Option<Value>,
    pub tcp_max_inflight: Option<Value>,
    pub max_forwards: Option<Value>,
    // The encrypted listeners (config/tls.rs).
    pub tls_listen: Option<Value>,
    pub https_listen: Option<Value>,
    pub quic_listen: Option<Value>,
    pub certificate: Option<Value>,
    pub private_key: Option<Value>,
    pub https_path: Option<Value>,
    pub tls_max_connections: Option<Value>,
    pub tls_handshake_timeout: Option<Value>,
    pub tls_idle_timeout: Option<Value>,
    pub tls_max_streams: Option<Value>,
    pub https_max_body: Option<Value>,
}

impl Section for ServerSpec {
    const CONTAINER: Container = Container::Table;
}

/// The bounds on TCP clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections served at once. When one more arrives, the connection
    /// idle for longest (nothing in flight) is closed to make room; when
    /// every connection is busy, the new one is closed at once.
    pub max_connections: usize,
    /// A connection with nothing in flight and no new query for this long
    /// is closed (RFC 7766 6.2.3).
    pub idle_timeout: Duration,
    /// Once the first byte of a message has arrived, the rest of it must
    /// arrive within this, or the connection is closed (slowloris).
    pub message_timeout: Duration,
    /// Queries of one connection being answered at once (RFC 7766 6.2.1.1
    /// pipelining). When reached, the connection is not read until one of
    /// them has been answered: backpressure, never an error.
    pub max_inflight: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(2),
            max_inflight: 32,
        }
    }
}

/// How the server serves: workers and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// UDP worker threads per listen address, each with its own socket
    /// (SO_REUSEPORT); 0 means one per CPU this process may run on.
    pub workers: usize,
    pub tcp: TcpLimits,
    /// Forwarded queries waiting for the upstream at once; one more is
    /// answered SERVFAIL at once (EDE 22, "too many queries in flight").
    pub max_forwards: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            tcp: TcpLimits::default(),
            max_forwards: 10_000,
        }
    }
}

impl ServerConfig {
    /// The number of UDP workers per address: `workers`, or when 0 the CPUs
    /// this process may run on (`sched_getaffinity`, so a server started
    /// under `taskset -c 1` gets one).
    pub fn udp_workers(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

const WANT_DURATION: &str = r#"a duration such as "10s" or "500ms""#;

impl Checker<'_> {
    /// Every `[server]` key but `listen`, which the parent converts.
    pub(super) fn server_settings(&mut self, s: &ServerSpec) -> ServerConfig {
        let d = ServerConfig::default();
        let count = |this: &mut Self, key: &str, v: &Option<Value>, unit: &str, max: i128| {
            v.as_ref()
                .and_then(|v| this.whole::<usize>(key, v, unit, 1..=max))
        };
        let workers = s
            .workers
            .as_ref()
            .and_then(|v| {
                self.whole::<usize>(
                    "server.workers",
                    v,
                    "UDP worker threads (0: one per CPU)",
                    0..=1024,
                )
            })
            .unwrap_or(d.workers);
        let duration = |t: &str| humantime::parse_duration(t).ok().filter(|d| !d.is_zero());
        ServerConfig {
            workers,
            tcp: TcpLimits {
                max_connections: count(
                    self,
                    "server.tcp_max_connections",
                    &s.tcp_max_connections,
                    "connections",
                    1_000_000,
                )
                .unwrap_or(d.tcp.max_connections),
                idle_timeout: self
                    .opt_parse(
                        "server.tcp_idle_timeout",
                        &s.tcp_idle_timeout,
                        WANT_DURATION,
                        duration,
                    )
                    .unwrap_or(d.tcp.idle_timeout),
                message_timeout: self
                    .opt_parse(
                        "server.tcp_message_timeout",
                        &s.tcp_message_timeout,
                        WANT_DURATION,
                        duration,
                    )
                    .unwrap_or(d.tcp.message_timeout),
                max_inflight: count(
                    self,
                    "server.tcp_max_inflight",
                    &s.tcp_max_inflight,
                    "queries in flight per connection",
                    65_535,
                )
                .unwrap_or(d.tcp.max_inflight),
            },
            max_forwards: count(
                self,
                "server.max_forwards",
                &s.max_forwards,
                "forwarded queries in flight",
                1_000_000,
            )
            .unwrap_or(d.max_forwards),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, crate::config::Error> {
        Config::parse(Path::new("bad.toml"), text)
    }

    #[test]
    fn defaults_when_absent() {
        let c = parse("").expect("empty config");
        assert_eq!(c.server, ServerConfig::default());
        assert_eq!(c.server.tcp.idle_timeout, Duration::from_secs(10));
        assert!(c.server.udp_workers() >= 1);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "[server]\nworkers = 3\ntcp_max_connections = 5\ntcp_idle_timeout = \"500ms\"\n\
             tcp_message_timeout = \"1s 500ms\"\ntcp_max_inflight = 7\nmax_forwards = 11\n",
        )
        .expect("valid");
        assert_eq!(
            c.server,
            ServerConfig {
                workers: 3,
                tcp: TcpLimits {
                    max_connections: 5,
                    idle_timeout: Duration::from_millis(500),
                    message_timeout: Duration::from_millis(1500),
                    max_inflight: 7,
                },
                max_forwards: 11,
            }
        );
        assert_eq!(c.server.udp_workers(), 3);
    }

    #[test]
    fn out_of_range_values_say_the_range() {
        let Err(crate::config::Error::Invalid(p)) = parse(
            "[server]\nworkers = 2000\ntcp_max_connections = 0\ntcp_idle_timeout = \"0s\"\n\
             tcp_max_inflight = 70000\nmax_forwards = -1\n",
        ) else {
            panic!("accepted")
        };
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "bad.toml:2:11: server.workers: expected a whole number of UDP worker threads (0: one per CPU) (0 to 1024), got the number 2000",
                "bad.toml:3:23: server.tcp_max_connections: expected a whole number of connections (1 to 1000000), got the number 0",
                "bad.toml:4:20: server.tcp_idle_timeout: expected a duration such as \"10s\" or \"500ms\", got the string \"0s\"",
                "bad.toml:5:20: server.tcp_max_inflight: expected a whole number of queries in flight per connection (1 to 65535), got the number 70000",
                "bad.toml:6:16: server.max_forwards: expected a whole number of forwarded queries in flight (1 to 1000000), got the number -1",
            ]
        );
    }
}
