//! What DNS over TLS (`tls.rs`) and DNS over HTTPS (`https.rs`) share: the
//! trust store and the client configs built on it, what a connection to
//! one server is verified with ([`Tls`]), and why connecting failed (a
//! refused certificate, named). Both import this module, and neither
//! imports the other; keeping their connections is `connections.rs`, as
//! for plain TCP. TLS is rustls with ring (no OpenSSL).
//!
//! Trust: the Mozilla roots compiled in (`webpki-roots`), so DoT works in a
//! container without `ca-certificates` and trusts what the list downloads
//! trust, plus the certificates of `ca_file`, which are also pins: a server
//! may present one of them as its own certificate (`trust.rs`).

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};

use super::Error;

mod trust;

/// The client configurations, one per ALPN protocol.
pub(super) struct ClientConfigs {
    pub(super) dot: Result<Arc<ClientConfig>, String>,
    pub(super) doh: Result<Arc<ClientConfig>, String>,
}

/// Builds the trust store (public roots + `ca_certs`, which are pins too)
/// and the two client configs that share it. A bad certificate in
/// `ca_file` is logged and left out; the servers it was meant for then
/// fail verification, loudly.
pub(super) fn client_configs(ca_certs: &[Vec<u8>]) -> ClientConfigs {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut pins = Vec::new();
    for der in ca_certs {
        let der = CertificateDer::from(der.clone());
        match roots.add(der.clone()) {
            Ok(()) => pins.push(der),
            Err(e) => {
                tracing::error!(error = %e, "upstream.ca_file: a certificate cannot be used as a trust anchor");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = trust::Verifier::new(Arc::new(roots), pins, provider.clone()).map(Arc::new);
    let build = |alpn: &[u8]| {
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone()?)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    };
    ClientConfigs {
        dot: build(b"dot"),
        doh: build(b"h2"),
    }
}

/// The server name to verify: a DNS name, or the IP address itself.
pub(super) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|e| format!("bad TLS server name {name:?}: {e}"))
}

/// What a TLS connection to one server is verified with: the name its
/// certificate must carry (sent as SNI) and the client config, or why
/// there are none (told to each query, which then fails over).
pub(super) struct Tls {
    /// As written, for DoH's `:authority`.
    pub(super) host: Arc<str>,
    name: Result<ServerName<'static>, String>,
    config: Result<Arc<ClientConfig>, String>,
}

impl Tls {
    pub(super) fn new(name: &str, config: Result<Arc<ClientConfig>, String>) -> Self {
        Self {
            host: name.into(),
            name: server_name(name),
            config,
        }
    }

    /// The name and the config to connect with.
    pub(super) fn target(
        &self,
        label: &Arc<str>,
    ) -> Result<(ServerName<'static>, Arc<ClientConfig>), Error> {
        let secure = |reason: String| Error::Secure {
            server: label.clone(),
            reason,
        };
        Ok((
            self.name.clone().map_err(secure)?,
            self.config.clone().map_err(secure)?,
        ))
    }
}

/// Why connecting failed, for the query. The handshake is where a wrong
/// name or an unknown CA shows: said where the operator looks, once per
/// attempt to connect, and, in words naming no server, to the client (EDE
/// text).
pub(super) fn connect_failed(label: &Arc<str>, e: &hickory_net::NetError) -> Error {
    match refused_certificate(e) {
        Some(reason) => {
            tracing::warn!(upstream = %label, reason, error = %e, "upstream connection failed");
            Error::Certificate {
                server: label.clone(),
                reason,
            }
        }
        None => {
            tracing::warn!(upstream = %label, error = %e, "upstream connection failed");
            Error::Secure {
                server: label.clone(),
                reason: format!("connection failed: {e}"),
            }
        }
    }
}

/// Why the server's certificate was refused, when that is why connecting
/// failed: hickory hands on tokio-rustls's I/O error, which carries the
/// rustls error.
fn refused_certificate(e: &hickory_net::NetError) -> Option<&'static str> {
    let hickory_net::NetError::Io(io) = e else {
        return None;
    };
    trust::refusal(io.get_ref()?.downcast_ref::<rustls::Error>()?)
}
