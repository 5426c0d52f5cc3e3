//! The encrypted listeners' settings in `[server]` (DoT, DoH, DoQ), their
//! bounds, and the certificate they present, read from PEM files.
//!
//! ```toml
//! [server]
//! tls_listen = ["0.0.0.0:853"]          # DNS over TLS (RFC 7858)
//! https_listen = ["0.0.0.0:443"]        # DNS over HTTPS (RFC 8484)
//! quic_listen = ["0.0.0.0:853"]         # DNS over QUIC (RFC 9250)
//! certificate = "/etc/embargo/tls/fullchain.pem"
//! private_key = "/etc/embargo/tls/key.pem"
//! ```
//!
//! The listen addresses and bounds are startup settings, as the rest of
//! `[server]`. The certificate's *contents* are not: the server reads the
//! two files again on every reload and on a change to either (see
//! `server::tls`), so a renewed certificate is served without a restart;
//! a file that does not load keeps the certificate in force.
//!
//! Reading the files lives here, not in `server`, because it is
//! synchronous work on the config's paths: `embargo validate` loads the
//! certificate too, and says what is wrong with it before a server starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::Checker;
use super::raw::Value;
use super::server::ServerSpec;

/// The bounds on the clients of one encrypted listener (each address of
/// `tls_listen`, `https_listen` and `quic_listen` has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptedLimits {
    /// Connections served at once, handshakes included. One more closes the
    /// connection idle for longest (nothing in flight), or is itself closed
    /// when every connection is busy, as for TCP.
    pub max_connections: usize,
    /// The TLS (or QUIC) handshake must be done within this from the
    /// connection's first byte: a client that sends nothing, or trickles
    /// its hello, is closed then.
    pub handshake_timeout: Duration,
    /// A connection with nothing in flight and no query for this long is
    /// closed. Longer than TCP's: a phone keeps its DoT connection open
    /// between queries to spare the handshake (RFC 7858 3.4).
    pub idle_timeout: Duration,
    /// Queries of one connection answered at once: DoT's pipelined queries,
    /// HTTP/2 streams, QUIC bidirectional streams.
    pub max_streams: usize,
    /// The largest DoH request body, and DoQ message, in bytes.
    pub max_body: usize,
}

impl Default for EncryptedLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_streams: 100,
            max_body: 65_535,
        }
    }
}

/// The DoH path when none is configured (RFC 8484's example, and what
/// browsers and `kdig +https` ask by default).
pub const DEFAULT_HTTPS_PATH: &str = "/dns-query";

/// DoT, DoH and DoQ: where, with which certificate, within which bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub tls_listen: Vec<SocketAddr>,
    pub https_listen: Vec<SocketAddr>,
    pub quic_listen: Vec<SocketAddr>,
    /// PEM: the server's certificate first, then its chain.
    pub certificate: Option<PathBuf>,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: Option<PathBuf>,
    /// Where DoH answers; `path/<client id>` names the client.
    pub https_path: String,
    pub limits: EncryptedLimits,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            tls_listen: Vec::new(),
            https_listen: Vec::new(),
            quic_listen: Vec::new(),
            certificate: None,
            private_key: None,
            https_path: DEFAULT_HTTPS_PATH.into(),
            limits: EncryptedLimits::default(),
        }
    }
}

impl TlsConfig {
    /// Whether any encrypted listener is configured.
    pub fn enabled(&self) -> bool {
        !(self.tls_listen.is_empty() && self.https_listen.is_empty() && self.quic_listen.is_empty())
    }

    /// The certificate and key files, when both are set.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.certificate.as_deref()?, self.private_key.as_deref()?))
    }
}

/// A loaded certificate: what rustls presents, and the names it covers by
/// wildcard (`*.dns.example.com` → `dns.example.com`), below which the
/// first label of a client's SNI is its client ID.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// Lowercase, without the `*.`.
    pub wildcards: Vec<String>,
}

impl Certificate {
    /// The client ID an SNI name carries: its first label, when the rest
    /// is a name the certificate covers by wildcard (the certificate has
    /// to: a client checks it against the very name it sent). The bare
    /// server name, or any other name, carries none.
    pub fn client_id<'a>(&self, sni: &'a str) -> Option<&'a str> {
        let (label, rest) = sni.trim_end_matches('.').split_once('.')?;
        self.wildcards
            .iter()
            .any(|w| w.eq_ignore_ascii_case(rest))
            .then_some(label)
            .filter(|l| is_client_id(l))
    }
}

/// Whether `s` may be a client ID: 1 to 64 letters, digits and hyphens, as
/// AdGuard Home's (a DNS label, and a path segment that needs no escaping).
pub fn is_client_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Why a certificate or key did not load.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate {}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("certificate {}: no CERTIFICATE block in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("private key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("private key {}: {source}", path.display())]
    Unusable {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("private key {} does not belong to certificate {}: {source}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Reads `cert` (PEM, the server's certificate first, then its chain) and
/// `key`, and checks that the key is the certificate's.
pub fn load_certificate(cert: &Path, key: &Path) -> Result<Certificate, CertError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| CertError::Certificate {
            path: cert.to_path_buf(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: cert.to_path_buf(),
        });
    };
    let wildcards = webpki::EndEntityCert::try_from(leaf)
        .map(|ee| {
            ee.valid_dns_names()
                .filter_map(|n| n.strip_prefix("*."))
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let der = PrivateKeyDer::from_pem_file(key).map_err(|source| CertError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|source| CertError::Unusable {
            path: key.to_path_buf(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|source| CertError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    Ok(Certificate {
        key: Arc::new(certified),
        wildcards,
    })
}

const WANT_DURATION: &str = r#"a duration such as "10s" or "500ms""#;
const WANT_ADDRS: &str = r#"a list of addresses to listen on, such as ["0.0.0.0:853"]"#;
const WANT_ADDR: &str = r#"an address to listen on, ip:port or [ipv6]:port, such as "0.0.0.0:853""#;

impl Checker<'_> {
    /// The encrypted listeners' keys of `[server]`.
    pub(super) fn tls_settings(&mut self, s: &ServerSpec) -> TlsConfig {
        let d = TlsConfig::default();
        let dl = d.limits;
        let addrs = |this: &mut Self, key: &str, v: &Option<Value>| match v {
            Some(v) => this
                .each(key, v, WANT_ADDRS, WANT_ADDR, |s| s.parse().ok())
                .into_iter()
                .map(|(a, _)| a)
                .collect(),
            None => Vec::new(),
        };
        let tls_listen = addrs(self, "server.tls_listen", &s.tls_listen);
        let https_listen = addrs(self, "server.https_listen", &s.https_listen);
        let quic_listen = addrs(self, "server.quic_listen", &s.quic_listen);
        let path = |this: &mut Self, key: &str, v: &Option<Value>| {
            this.text(
                key,
                v,
                r#"a PEM file path such as "/etc/embargo/tls/fullchain.pem""#,
            )
            .map(|p| this.resolve(&p))
        };
        let certificate = path(self, "server.certificate", &s.certificate);
        let private_key = path(self, "server.private_key", &s.private_key);
        let https_path = self
            .opt_parse(
                "server.https_path",
                &s.https_path,
                r#"an absolute URL path such as "/dns-query""#,
                |p| {
                    let p = p.trim_end_matches('/');
                    (p.starts_with('/')
                        && p.len() > 1
                        && !p.contains(['?', '#', ' ', '%'])
                        && !p.split('/').any(|seg| seg == ".." || seg == "."))
                    .then(|| p.to_owned())
                },
            )
            .unwrap_or(d.https_path);
        let duration = |t: &str| humantime::parse_duration(t).ok().filter(|d| !d.is_zero());
        let count = |this: &mut Self, key: &str, v: &Option<Value>, unit: &str, max: i128| {
            v.as_ref()
                .and_then(|v| this.whole::<usize>(key, v, unit, 1..=max))
        };
        let limits = EncryptedLimits {
            max_connections: count(
                self,
                "server.tls_max_connections",
                &s.tls_max_connections,
                "connections",
                1_000_000,
            )
            .unwrap_or(dl.max_connections),
            handshake_timeout: self
                .opt_parse(
                    "server.tls_handshake_timeout",
                    &s.tls_handshake_timeout,
                    WANT_DURATION,
                    duration,
                )
                .unwrap_or(dl.handshake_timeout),
            idle_timeout: self
                .opt_parse(
                    "server.tls_idle_timeout",
                    &s.tls_idle_timeout,
                    WANT_DURATION,
                    duration,
                )
                .unwrap_or(dl.idle_timeout),
            max_streams: count(
                self,
                "server.tls_max_streams",
                &s.tls_max_streams,
                "queries in flight per connection",
                65_535,
            )
            .unwrap_or(dl.max_streams),
            max_body: s
                .https_max_body
                .as_ref()
                .and_then(|v| self.whole::<usize>("server.https_max_body", v, "bytes", 12..=65_535))
                .unwrap_or(dl.max_body),
        };
        let config = TlsConfig {
            tls_listen,
            https_listen,
            quic_listen,
            certificate,
            private_key,
            https_path,
            limits,
        };
        if config.enabled() {
            // Where to point: the first encrypted listen key in the file.
            let at = [&s.tls_listen, &s.https_listen, &s.quic_listen]
                .into_iter()
                .flatten()
                .next()
                .cloned();
            for (key, value) in [
                ("certificate", &config.certificate),
                ("private_key", &config.private_key),
            ] {
                if value.is_none()
                    && let Some(at) = &at
                {
                    self.problem(
                        at,
                        format!(
                            "server.{key}: missing: tls_listen, https_listen and quic_listen need a certificate and a private_key (PEM files)"
                        ),
                    );
                }
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, crate::config::Error> {
        Config::parse(Path::new("/etc/embargo/embargo.toml"), text)
    }

    #[test]
    fn off_unless_a_listener_is_configured() {
        let c = parse("").expect("empty");
        assert_eq!(c.tls, TlsConfig::default());
        assert!(!c.tls.enabled());
        assert_eq!(c.tls.https_path, "/dns-query");
    }

    #[test]
    fn every_key_is_read_and_paths_are_relative_to_the_config() {
        let c = parse(
            "[server]\ntls_listen = [\"0.0.0.0:853\"]\nhttps_listen = [\"[::]:443\"]\n\
             quic_listen = [\"127.0.0.1:853\"]\ncertificate = \"tls/chain.pem\"\n\
             private_key = \"/k/key.pem\"\nhttps_path = \"/resolve/\"\n\
             tls_max_connections = 7\ntls_handshake_timeout = \"2s\"\n\
             tls_idle_timeout = \"1m\"\ntls_max_streams = 9\nhttps_max_body = 4096\n",
        )
        .expect("valid");
        let t = &c.tls;
        assert_eq!(t.tls_listen, ["0.0.0.0:853".parse().expect("addr")]);
        assert_eq!(t.https_listen, ["[::]:443".parse().expect("addr")]);
        assert_eq!(t.quic_listen, ["127.0.0.1:853".parse().expect("addr")]);
        assert_eq!(
            t.files(),
            Some((
                Path::new("/etc/embargo/tls/chain.pem"),
                Path::new("/k/key.pem")
            ))
        );
        assert_eq!(t.https_path, "/resolve");
        assert_eq!(
            t.limits,
            EncryptedLimits {
                max_connections: 7,
                handshake_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(60),
                max_streams: 9,
                max_body: 4096,
            }
        );
    }

    #[test]
    fn a_listener_without_a_certificate_is_an_error_at_its_line() {
        let Err(crate::config::Error::Invalid(p)) =
            parse("[server]\nworkers = 1\nhttps_listen = [\"0.0.0.0:443\"]\n")
        else {
            panic!("accepted")
        };
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("/etc/embargo/embargo.toml:3:16: server.certificate: missing"),
            "{shown:?}"
        );
        assert!(
            shown[1].contains("server.private_key: missing"),
            "{shown:?}"
        );
    }

    #[test]
    fn bad_paths_and_bounds_say_what_they_want() {
        let Err(crate::config::Error::Invalid(p)) = parse(
            "[server]\nhttps_path = \"dns-query\"\nhttps_max_body = 5\ntls_listen = [\"853\"]\n",
        ) else {
            panic!("accepted")
        };
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(
            shown[0].contains("server.tls_listen[1]: expected an address"),
            "{shown:?}"
        );
        assert!(
            shown[1].contains("server.https_path: expected an absolute URL path"),
            "{shown:?}"
        );
        assert!(
            shown[2]
                .contains("server.https_max_body: expected a whole number of bytes (12 to 65535)"),
            "{shown:?}"
        );
    }

    #[test]
    fn client_ids_are_first_labels_below_a_wildcard_name() {
        let (cert, key) = test_files("*.dns.example.com");
        let c = load_certificate(cert.path(), key.path()).expect("loads");
        assert_eq!(c.wildcards, ["dns.example.com"]);
        assert_eq!(c.client_id("laptop-7.dns.example.com"), Some("laptop-7"));
        assert_eq!(c.client_id("Laptop-7.DNS.example.com."), Some("Laptop-7"));
        assert_eq!(c.client_id("dns.example.com"), None);
        assert_eq!(c.client_id("a.b.dns.example.com"), None);
        assert_eq!(c.client_id("laptop.other.example"), None);
        assert!(is_client_id("laptop-7"));
        assert!(!is_client_id("laptop_7"));
        assert!(!is_client_id(""));
        assert!(!is_client_id(&"a".repeat(65)));
    }

    #[test]
    fn a_key_of_another_certificate_or_no_pem_says_so() {
        let (cert, _) = test_files("dns.example.com");
        let (_, other_key) = test_files("dns.example.com");
        let e = load_certificate(cert.path(), other_key.path()).expect_err("mismatch");
        assert!(
            e.to_string().contains("does not belong to certificate"),
            "{e}"
        );
        let empty = tempfile::NamedTempFile::new().expect("tmp");
        let e = load_certificate(empty.path(), other_key.path()).expect_err("empty");
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
        let e = load_certificate(Path::new("/nonexistent/cert.pem"), other_key.path())
            .expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("certificate /nonexistent/cert.pem:"),
            "{e}"
        );
    }

    /// A self-signed certificate for `name` and its key, as PEM files.
    fn test_files(name: &str) -> (tempfile::NamedTempFile, tempfile::NamedTempFile) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string(), "dns.example.com".into()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let c = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(c.path(), cert.pem()).expect("write");
        let k = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(k.path(), key.serialize_pem()).expect("write");
        (c, k)
    }
}
