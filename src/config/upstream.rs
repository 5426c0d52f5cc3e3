//! `[upstream]`: where forwarded queries go, how, and in which order.
//!
//! Upstreams are IP addresses: a hostname would need a resolver to find the
//! resolver (a bootstrap), which embargo does not have. For DNS over TLS and
//! HTTPS the name to verify the certificate against follows a `#`
//! (`tls://9.9.9.9#dns.quad9.net`); without one the IP address itself is
//! verified (certificates for 1.1.1.1 or 9.9.9.9 name their address too).
//!
//! `ca_file` is read and decoded here, so a missing or empty file is a
//! config error with its line, reported by `embargo validate` too, and the
//! upstream module only turns DER bytes into a trust store.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::Checker;
use super::raw::{Container, Section, Value};

/// `[upstream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub servers: Option<Value>,
    pub timeout_ms: Option<Value>,
    pub strategy: Option<Value>,
    pub ca_file: Option<Value>,
    pub udp_sockets: Option<Value>,
}

impl Section for UpstreamSpec {
    const CONTAINER: Container = Container::Table;
}

/// How embargo talks to one upstream resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// UDP, retried over TCP when the answer is truncated.
    Udp,
    /// TCP only.
    Tcp,
    /// DNS over TLS (RFC 7858): one connection, reused, queries pipelined.
    Tls { server_name: String },
    /// DNS over HTTPS (RFC 8484) over HTTP/2: POST to `path`.
    Https { path: String, server_name: String },
}

/// One upstream resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    pub addr: SocketAddr,
    pub transport: Transport,
}

impl std::fmt::Display for UpstreamServer {
    /// As written in the config (`tls://9.9.9.9:853#dns.quad9.net`), for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.transport {
            Transport::Udp => write!(f, "{}", self.addr),
            Transport::Tcp => write!(f, "tcp://{}", self.addr),
            Transport::Tls { server_name } => write!(f, "tls://{}#{server_name}", self.addr),
            Transport::Https { path, server_name } => {
                write!(f, "https://{}{path}#{server_name}", self.addr)
            }
        }
    }
}

/// Which healthy server a query goes to first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The first healthy server in config order; the next on failure.
    #[default]
    Failover,
    /// The healthy server with the lowest smoothed round-trip time, with an
    /// occasional query to another so that its time stays known.
    Fastest,
    /// Each healthy server in turn.
    RoundRobin,
}

impl Strategy {
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "failover" => Some(Self::Failover),
            "fastest" => Some(Self::Fastest),
            "round_robin" => Some(Self::RoundRobin),
            _ => None,
        }
    }
}

/// The validated `[upstream]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub servers: Vec<UpstreamServer>,
    /// The overall deadline for one forwarded query, every retry included.
    pub timeout: Duration,
    pub strategy: Strategy,
    /// `ca_file` as written (resolved against the config's directory).
    pub ca_file: Option<PathBuf>,
    /// The certificates in `ca_file`, DER, trusted besides the public roots.
    pub ca_certs: Vec<Vec<u8>>,
    /// UDP sockets per plain-DNS upstream (each on its own random port).
    pub udp_sockets: usize,
}

/// Default UDP sockets per upstream: enough ports that an off-path attacker
/// must guess among 32 x 16-bit IDs x the port range, few enough that the
/// receive side stays one readiness event per busy socket.
pub(super) const DEFAULT_UDP_SOCKETS: usize = 32;

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: Duration::from_millis(2000),
            strategy: Strategy::Failover,
            ca_file: None,
            ca_certs: Vec::new(),
            udp_sockets: DEFAULT_UDP_SOCKETS,
        }
    }
}

pub(super) const WANT_SERVER: &str = "a resolver address: ip:port, [ipv6]:port, tcp://ip:port, tls://ip:port#server.name or https://ip:port/dns-query#server.name (hostnames need a bootstrap resolver and are not supported)";
pub(super) const WANT_STRATEGY: &str = r#"one of "failover", "fastest" or "round_robin""#;

impl Checker<'_> {
    pub(super) fn upstream(&mut self, u: &UpstreamSpec) -> UpstreamConfig {
        let defaults = UpstreamConfig::default();
        let servers = match &u.servers {
            Some(servers) => self
                .each(
                    "upstream.servers",
                    servers,
                    r#"a list of resolver addresses, such as ["9.9.9.9:53"]"#,
                    WANT_SERVER,
                    parse_upstream,
                )
                .into_iter()
                .map(|(u, _)| u)
                .collect(),
            None => Vec::new(),
        };
        let timeout = u
            .timeout_ms
            .as_ref()
            .and_then(|t| self.whole("upstream.timeout_ms", t, "milliseconds", 1..=60_000))
            .map_or(defaults.timeout, Duration::from_millis);
        let strategy = self
            .opt_parse(
                "upstream.strategy",
                &u.strategy,
                WANT_STRATEGY,
                Strategy::parse,
            )
            .unwrap_or_default();
        let udp_sockets = u
            .udp_sockets
            .as_ref()
            .and_then(|n| self.whole("upstream.udp_sockets", n, "sockets", 1..=1024))
            .unwrap_or(defaults.udp_sockets);
        let mut ca_file = None;
        let mut ca_certs = Vec::new();
        let want_ca = r#"a PEM file path such as "private-ca.pem""#;
        if let (Some(p), Some(value)) = (
            self.text("upstream.ca_file", &u.ca_file, want_ca),
            &u.ca_file,
        ) {
            let path = self.resolve(&p);
            match read_certs(&path) {
                Ok(certs) => ca_certs = certs,
                Err(why) => self.problem(
                    value,
                    format!("upstream.ca_file: {}: {why}", path.display()),
                ),
            }
            ca_file = Some(path);
        }
        UpstreamConfig {
            servers,
            timeout,
            strategy,
            ca_file,
            ca_certs,
            udp_sockets,
        }
    }
}

/// The certificates of a PEM file, DER-encoded.
fn read_certs(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("not PEM: {e}"))?;
        certs.push(cert.as_ref().to_vec());
    }
    if certs.is_empty() {
        return Err("no certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// `ip:port`, `[ipv6]:port`, a bare IP (port 53), `udp://…`, `tcp://…`,
/// `tls://ip[:port][#name]` (port 853) or `https://ip[:port][/path][#name]`
/// (port 443, path `/dns-query`).
pub(super) fn parse_upstream(s: &str) -> Option<UpstreamServer> {
    if let Some(r) = s.strip_prefix("tls://") {
        let (rest, name) = split_name(r)?;
        let addr = parse_addr(rest, 853)?;
        let server_name = name.map_or_else(|| addr.ip().to_string(), str::to_owned);
        return Some(UpstreamServer {
            addr,
            transport: Transport::Tls { server_name },
        });
    }
    if let Some(r) = s.strip_prefix("https://") {
        let (rest, name) = split_name(r)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/dns-query"),
        };
        // The path goes into an HTTP request line: printable ASCII, no spaces.
        if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains('?') {
            return None;
        }
        let addr = parse_addr(authority, 443)?;
        let server_name = name.map_or_else(|| addr.ip().to_string(), str::to_owned);
        return Some(UpstreamServer {
            addr,
            transport: Transport::Https {
                path: path.to_owned(),
                server_name,
            },
        });
    }
    let (transport, rest) = if let Some(r) = s.strip_prefix("tcp://") {
        (Transport::Tcp, r)
    } else if let Some(r) = s.strip_prefix("udp://") {
        (Transport::Udp, r)
    } else {
        (Transport::Udp, s)
    };
    Some(UpstreamServer {
        addr: parse_addr(rest, 53)?,
        transport,
    })
}

/// Splits `rest#name`; the name, if any, must be a valid host name.
fn split_name(s: &str) -> Option<(&str, Option<&str>)> {
    match s.split_once('#') {
        None => Some((s, None)),
        Some((rest, name)) if is_host_name(name) => Some((rest, Some(name))),
        Some(_) => None,
    }
}

/// `ip:port`, `[ipv6]:port`, or a bare IP with `default_port`.
fn parse_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, default_port))
    })
}

/// A DNS host name as a TLS certificate names it: letters, digits, hyphens
/// (and `_`, which some internal names use), labels of 1-63, at most 253.
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(addr: &str, name: &str) -> UpstreamServer {
        UpstreamServer {
            addr: addr.parse().expect("addr"),
            transport: Transport::Tls {
                server_name: name.into(),
            },
        }
    }

    #[test]
    fn every_transport_parses_with_its_default_port() {
        let udp = parse_upstream("9.9.9.9").expect("bare ip");
        assert_eq!(udp.addr, "9.9.9.9:53".parse().expect("addr"));
        assert_eq!(udp.transport, Transport::Udp);
        assert_eq!(
            parse_upstream("tcp://[2620:fe::fe]:5353").map(|u| u.transport),
            Some(Transport::Tcp)
        );
        assert_eq!(
            parse_upstream("tls://9.9.9.9#dns.quad9.net"),
            Some(tls("9.9.9.9:853", "dns.quad9.net"))
        );
        assert_eq!(
            parse_upstream("tls://127.0.0.1:8853#dns.test"),
            Some(tls("127.0.0.1:8853", "dns.test"))
        );
        assert_eq!(
            parse_upstream("tls://[2620:fe::9]"),
            Some(tls("[2620:fe::9]:853", "2620:fe::9")),
            "without a name the IP is verified"
        );
        let h = parse_upstream("https://9.9.9.9/dns-query#dns.quad9.net").expect("doh");
        assert_eq!(h.addr.port(), 443);
        assert_eq!(
            h.transport,
            Transport::Https {
                path: "/dns-query".into(),
                server_name: "dns.quad9.net".into()
            }
        );
        let h = parse_upstream("https://127.0.0.1:8443#dns.test").expect("doh, no path");
        assert_eq!(h.addr.port(), 8443);
        assert!(matches!(h.transport, Transport::Https { ref path, .. } if path == "/dns-query"));
        assert_eq!(h.to_string(), "https://127.0.0.1:8443/dns-query#dns.test");
    }

    #[test]
    fn hostnames_and_bad_names_are_refused() {
        for bad in [
            "dns.quad9.net",
            "tls://dns.quad9.net",
            "tls://9.9.9.9#",
            "tls://9.9.9.9#bad name",
            "tls://9.9.9.9#-x.example",
            "https://dns.google/dns-query",
            "https://8.8.8.8/dns query#dns.google",
            "https://8.8.8.8/dns-query?dns=x#dns.google",
            "quic://9.9.9.9",
            "9.9.9.9:99999",
        ] {
            assert_eq!(parse_upstream(bad), None, "{bad}");
        }
    }
}
