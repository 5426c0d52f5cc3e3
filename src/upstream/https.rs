//! DNS over HTTPS (RFC 8484) through hickory: HTTP/2 over TLS, each query a
//! POST of the wire message (`application/dns-message`) on its own stream
//! of one shared connection. Trust is shared with DoT (`secure.rs`); the
//! connection kept and renewed, with plain TCP and DoT (`connections.rs`).
//!
//! hickory sends ID 0 (RFC 8484 section 4.1, for HTTP caches); the answer
//! gets our query's ID back before it is checked and returned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::h2::HttpsClientStream;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::DnsExchange;

use super::Error;
use super::connections::{Background, Exchange, Limits, Protocol};
use super::secure::{Tls, connect_failed};

/// One connection, kept until the server closes it; HTTP/2 bounds the
/// streams on it (the server's SETTINGS), so no bound of ours.
pub(super) const LIMITS: Limits = Limits {
    connections: 1,
    in_flight: usize::MAX - 1,
    idle: None,
};

/// DNS over HTTPS, POSTing to `path`.
pub(super) struct Doh {
    pub(super) path: Arc<str>,
    pub(super) tls: Tls,
}

impl Protocol for Doh {
    /// Opens the HTTP/2 connection, verifying the server name (also sent
    /// as the `:authority`), for queries to `path`.
    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        label: &Arc<str>,
    ) -> Result<(Exchange, Background), Error> {
        let (_, config) = self.tls.target(label)?;
        let mut builder = HttpsClientStream::builder(config, TokioRuntimeProvider::new());
        builder.request_timeout(timeout);
        let stream = builder
            .build(addr, self.tls.host.clone(), self.path.clone())
            .await
            .map_err(|e| connect_failed(label, &e))?;
        let (exchange, background) = DnsExchange::from_stream(stream);
        Ok((exchange, Box::pin(background)))
    }
}
