//! What DNS over TLS (`tls.rs`) and DNS over HTTPS (`https.rs`) share: the
//! trust store and the client configs built on it, and one connection per
//! upstream, kept open and shared by every query (pipelined, answers in any
//! order: hickory matches them by ID), made again when it fails. How a
//! connection is opened is each protocol's own ([`Protocol`]): both import
//! this module, and neither imports the other.
//!
//! Why hickory-net's exchange rather than hickory-resolver's name-server
//! pool: the pool brings its own server selection, retries and caching,
//! which would sit under ours (strategy, health, coalescing, the answer
//! cache) and decide things twice. The exchange is just the transport: TLS
//! from rustls (ring, no OpenSSL), framing and pipelining from hickory.
//!
//! Trust: the Mozilla roots compiled in (`webpki-roots`), so DoT works in a
//! container without `ca-certificates` and trusts what the list downloads
//! trust, plus the certificates of `ca_file`, which are also pins: a server
//! may present one of them as its own certificate (`trust.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::{DnsExchange, DnsHandle, FirstAnswer};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::time::{Instant, timeout_at};

use super::{Error, same_question};

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

pub(super) type Exchange = DnsExchange<TokioRuntimeProvider>;

/// Where a connection goes and what it is verified with: what opening one
/// takes, whatever the protocol.
pub(super) struct Target {
    pub(super) addr: SocketAddr,
    /// As written, for DoH's `:authority`.
    pub(super) host: Arc<str>,
    /// The name the server's certificate must be valid for (sent as SNI).
    pub(super) name: ServerName<'static>,
    pub(super) config: Arc<ClientConfig>,
    pub(super) timeout: Duration,
}

/// What a [`Connection`] speaks: how it opens a connection. DNS over TLS
/// (`tls::Dot`) and DNS over HTTPS (`https::Doh`).
pub(super) trait Protocol: Send + Sync {
    /// Opens a connection to `to`, the handshake done.
    fn connect(
        &self,
        to: Target,
    ) -> impl Future<Output = Result<Exchange, hickory_net::NetError>> + Send;
}

/// One DoT or DoH upstream and its connection, if open.
pub(super) struct Connection<P> {
    addr: SocketAddr,
    protocol: P,
    /// As written, for DoH's `:authority`.
    host: Arc<str>,
    name: Result<ServerName<'static>, String>,
    config: Result<Arc<ClientConfig>, String>,
    timeout: Duration,
    /// The open connection, with a generation number so that a failed query
    /// only closes the connection it failed on. The lock is held while
    /// connecting: queries arriving meanwhile wait for that one handshake
    /// instead of starting their own.
    open: tokio::sync::Mutex<(u64, Option<Exchange>)>,
}

impl<P: Protocol> Connection<P> {
    pub(super) fn new(
        addr: SocketAddr,
        protocol: P,
        name: &str,
        config: Result<Arc<ClientConfig>, String>,
        timeout: Duration,
    ) -> Self {
        Self {
            addr,
            protocol,
            host: name.into(),
            name: server_name(name),
            config,
            timeout,
            open: tokio::sync::Mutex::new((0, None)),
        }
    }

    pub(super) async fn exchange(
        &self,
        query: &mut [u8],
        deadline: Instant,
        label: &Arc<str>,
    ) -> Result<Vec<u8>, Error> {
        let mut used = None;
        let attempt = async {
            let (generation, exchange, reused) = self.connection(label).await?;
            used = Some(generation);
            let first = send(&exchange, query, label).await;
            if first.is_ok() || !reused {
                return first;
            }
            // A reused connection may have been closed by the server (idle
            // timeout) since its last query: once more, on a new one.
            if let Err(e) = &first {
                tracing::debug!(upstream = %label, error = %e, "connection lost: reconnecting");
            }
            self.forget(generation).await;
            let (generation, exchange, _) = self.connection(label).await?;
            used = Some(generation);
            send(&exchange, query, label).await
        };
        let result = match timeout_at(deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                server: label.clone(),
            }),
        };
        if result.is_err()
            && let Some(generation) = used
        {
            self.forget(generation).await;
        }
        result
    }

    /// The open connection (reused: true), or a new one.
    async fn connection(&self, label: &Arc<str>) -> Result<(u64, Exchange, bool), Error> {
        let mut open = self.open.lock().await;
        if let Some(e) = open.1.as_ref() {
            return Ok((open.0, e.clone(), true));
        }
        let secure = |reason: String| Error::Secure {
            server: label.clone(),
            reason,
        };
        let name = self.name.clone().map_err(secure)?;
        let config = self.config.clone().map_err(secure)?;
        let exchange = self
            .protocol
            .connect(Target {
                addr: self.addr,
                host: self.host.clone(),
                name,
                config,
                timeout: self.timeout,
            })
            .await
        .map_err(|e| {
            // The handshake is where a wrong name or an unknown CA shows:
            // say so where the operator looks, once per attempt to connect,
            // and, in words naming no server, to the client (EDE text).
            match refused_certificate(&e) {
                Some(reason) => {
                    tracing::warn!(upstream = %label, reason, error = %e, "upstream connection failed");
                    Error::Certificate {
                        server: label.clone(),
                        reason,
                    }
                }
                None => {
                    tracing::warn!(upstream = %label, error = %e, "upstream connection failed");
                    secure(format!("connection failed: {e}"))
                }
            }
        })?;
        tracing::debug!(upstream = %label, "upstream connection open");
        open.0 += 1;
        open.1 = Some(exchange.clone());
        Ok((open.0, exchange, false))
    }

    /// Closes the connection of `generation`, if it is still the open one.
    async fn forget(&self, generation: u64) {
        let mut open = self.open.lock().await;
        if open.0 == generation {
            open.1 = None;
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

/// Sends `query` on a hickory exchange and returns the answer's bytes with
/// our query's ID (hickory picks its own on the wire), after checking that
/// it answers our question.
pub(super) async fn send(
    exchange: &Exchange,
    query: &[u8],
    label: &Arc<str>,
) -> Result<Vec<u8>, Error> {
    let message = Message::from_vec(query).map_err(|_| Error::Unparsable)?;
    let request = DnsRequest::new(message, DnsRequestOptions::default());
    let response = exchange
        .send(request)
        .first_answer()
        .await
        .map_err(|e| Error::Secure {
            server: label.clone(),
            reason: e.to_string(),
        })?;
    let mut resp = response.into_buffer();
    if let (Some(id), Some(dst)) = (query.get(..2), resp.get_mut(..2)) {
        dst.copy_from_slice(id);
    }
    if same_question(query, &resp) {
        Ok(resp)
    } else {
        Err(Error::Malformed {
            server: label.clone(),
        })
    }
}
