//! DNS over HTTPS (RFC 8484) through hickory: HTTP/2 over TLS, each query a
//! POST of the wire message (`application/dns-message`) on its own stream
//! of one shared connection. Trust, and the connection kept and renewed,
//! are shared with DoT (`secure.rs`).
//!
//! hickory sends ID 0 (RFC 8484 section 4.1, for HTTP caches); the answer
//! gets our query's ID back before it is checked and returned.

use std::sync::Arc;

use hickory_net::h2::HttpsClientStream;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::DnsExchange;

use super::secure::{Exchange, Protocol, Target};

/// DNS over HTTPS, POSTing to `path`.
pub(super) struct Doh {
    pub(super) path: Arc<str>,
}

impl Protocol for Doh {
    /// Opens the HTTP/2 connection, verifying the server name (also sent
    /// as the `:authority`), for queries to `path`.
    async fn connect(&self, to: Target) -> Result<Exchange, hickory_net::NetError> {
        let mut builder = HttpsClientStream::builder(to.config, TokioRuntimeProvider::new());
        builder.request_timeout(to.timeout);
        let stream = builder.build(to.addr, to.host, self.path.clone()).await?;
        let (exchange, background) = DnsExchange::from_stream(stream);
        tokio::spawn(background);
        Ok(exchange)
    }
}
