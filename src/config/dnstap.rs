//! `[dnstap]`: where the dnstap messages (CLIENT_QUERY, CLIENT_RESPONSE)
//! go, as a Frame Streams writer on a unix socket or over TCP, and what
//! identity and version they carry.
//!
//! Off unless the section names a collector. Like `[log]`, it takes effect
//! at start: the writer's thread and its rings are set up once, and a
//! reload that sees the section changed says a restart is needed.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::Checker;
use super::raw::{Container, Raw, Section, Shaped, Value};

/// Where the dnstap collector listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnstapTarget {
    /// A unix stream socket (`socket = "/run/embargo/dnstap.sock"`), as
    /// `fstrm_capture -u`, `dnstap -u` or a local vector/dnscollector read.
    Unix(PathBuf),
    /// A TCP address (`tcp = "192.0.2.9:6000"`).
    Tcp(SocketAddr),
}

impl std::fmt::Display for DnstapTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// `[dnstap]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnstapConfig {
    pub target: DnstapTarget,
    /// The `identity` field of every message (empty: left out). Defaults
    /// to the host name, as Unbound and BIND do.
    pub identity: String,
    /// The `version` field (empty: left out). Defaults to `embargo X.Y.Z`.
    pub version: String,
    /// Bytes of messages each serving thread may have waiting for the
    /// writer; past that they are dropped and counted (`dnstap_dropped`),
    /// never the queries.
    pub queue_bytes: usize,
}

impl DnstapConfig {
    /// The defaults for a collector at `target`.
    pub fn new(target: DnstapTarget) -> Self {
        Self {
            target,
            identity: host_name(),
            version: format!("embargo {}", env!("CARGO_PKG_VERSION")),
            queue_bytes: 1024 * 1024,
        }
    }
}

/// This machine's host name ("" if it has none worth the name).
fn host_name() -> String {
    let uts = rustix::system::uname();
    String::from_utf8_lossy(uts.nodename().to_bytes()).into_owned()
}

/// `[dnstap]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnstapSpec {
    pub socket: Option<Value>,
    pub tcp: Option<Value>,
    pub identity: Option<Value>,
    pub version: Option<Value>,
    pub queue_kb: Option<Value>,
}

impl Section for DnstapSpec {
    const CONTAINER: Container = Container::Table;
}

impl Checker<'_> {
    /// Converts `[dnstap]`: `None` when the section is absent (dnstap off).
    pub(super) fn dnstap(
        &mut self,
        section: Option<Spanned<Shaped<DnstapSpec>>>,
    ) -> Option<DnstapConfig> {
        let span = section.as_ref()?.span();
        let spec = self.section("dnstap", section);
        let socket = self
            .opt_parse(
                "dnstap.socket",
                &spec.socket,
                r#"a unix socket path such as "/run/embargo/dnstap.sock""#,
                |s| (!s.trim().is_empty()).then(|| s.to_owned()),
            )
            .map(|p| DnstapTarget::Unix(self.resolve(&p)));
        let tcp = self
            .opt_parse(
                "dnstap.tcp",
                &spec.tcp,
                r#"a collector address, ip:port or [ipv6]:port, such as "127.0.0.1:6000""#,
                |s| s.parse().ok(),
            )
            .map(DnstapTarget::Tcp);
        let identity = self.text(
            "dnstap.identity",
            &spec.identity,
            r#"the identity to send, such as "resolver-1" ("" for none)"#,
        );
        let version = self.text(
            "dnstap.version",
            &spec.version,
            r#"the version to send, such as "embargo" ("" for none)"#,
        );
        let queue_kb = spec
            .queue_kb
            .as_ref()
            .and_then(|v| self.whole::<usize>("dnstap.queue_kb", v, "KiB", 256..=65_536));
        let table: Value = Spanned::new(span, Raw::Table);
        let target = match (socket, tcp, &spec.socket, &spec.tcp) {
            (Some(t), None, _, None) | (None, Some(t), None, _) => t,
            (_, _, Some(_), Some(_)) => {
                self.problem(
                    &table,
                    "dnstap: expected one of socket or tcp, got both (one collector per server)",
                );
                return None;
            }
            (None, None, None, None) => {
                self.problem(
                    &table,
                    r#"dnstap: expected socket = "/path/to.sock" or tcp = "ip:port" (where the collector listens), got neither"#,
                );
                return None;
            }
            // A key of the wrong type, already reported.
            _ => return None,
        };
        let mut config = DnstapConfig::new(target);
        if let Some(identity) = identity {
            config.identity = identity;
        }
        if let Some(version) = version {
            config.version = version;
        }
        if let Some(kb) = queue_kb {
            config.queue_bytes = kb * 1024;
        }
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::section as parse;

    #[test]
    fn dnstap_is_off_without_the_section() {
        assert_eq!(parse("").expect("valid").dnstap, None);
    }

    #[test]
    fn a_socket_or_a_tcp_collector_with_defaults() {
        let c = parse("[dnstap]\nsocket = \"run/dnstap.sock\"\n")
            .expect("valid")
            .dnstap
            .expect("on");
        assert_eq!(
            c.target,
            DnstapTarget::Unix("/etc/embargo/run/dnstap.sock".into())
        );
        assert_eq!(c.identity, host_name());
        assert!(c.version.starts_with("embargo "), "{}", c.version);
        assert_eq!(c.queue_bytes, 1 << 20);
        let c = parse(
            "[dnstap]\ntcp = \"[::1]:6000\"\nidentity = \"\"\nversion = \"v9\"\nqueue_kb = 512\n",
        )
        .expect("valid")
        .dnstap
        .expect("on");
        assert_eq!(
            c.target,
            DnstapTarget::Tcp("[::1]:6000".parse().expect("addr"))
        );
        assert_eq!(c.identity, "");
        assert_eq!(c.version, "v9");
        assert_eq!(c.queue_bytes, 512 * 1024);
    }

    #[test]
    fn one_collector_must_be_named() {
        let p = parse("[dnstap]\nidentity = \"x\"\n").expect_err("no target");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("/etc/embargo/embargo.toml:3:1: dnstap: expected socket"),
            "{p:?}"
        );
        let p = parse("[dnstap]\nsocket = \"a.sock\"\ntcp = \"127.0.0.1:6000\"\n")
            .expect_err("two targets");
        assert!(p[0].contains("got both"), "{p:?}");
        let p = parse("[dnstap]\ntcp = \"localhost\"\n").expect_err("bad address");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("dnstap.tcp: expected a collector address"),
            "{p:?}"
        );
        let p = parse("[dnstap]\nsocket = \"a.sock\"\nqueue_kb = 1\n").expect_err("too small");
        assert!(
            p[0].contains("dnstap.queue_kb: expected a whole number of KiB (256 to 65536)"),
            "{p:?}"
        );
    }
}
