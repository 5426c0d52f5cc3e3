//! DNS over HTTPS (RFC 8484) through hickory: HTTP/2 over TLS, each query a
//! POST of the wire message (`application/dns-message`) on its own stream
//! of one shared connection. The connection itself is kept and renewed by
//! [`super::secure::Connection`], as for DoT.
//!
//! hickory sends ID 0 (RFC 8484 section 4.1, for HTTP caches); the answer
//! gets our query's ID back before it is checked and returned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::h2::HttpsClientStream;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::DnsExchange;
use rustls::ClientConfig;

use super::secure::Exchange;

/// Opens the HTTP/2 connection to `addr`, verifying `host` (also sent as
/// the `:authority`), for queries to `path`.
pub(super) async fn connect(
    addr: SocketAddr,
    host: Arc<str>,
    path: Arc<str>,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Exchange, hickory_net::NetError> {
    let mut builder = HttpsClientStream::builder(config, TokioRuntimeProvider::new());
    builder.request_timeout(timeout);
    let stream = builder.build(addr, host, path).await?;
    let (exchange, background) = DnsExchange::from_stream(stream);
    tokio::spawn(background);
    Ok(exchange)
}
