//! DNS over TLS (RFC 7858) through hickory: a TLS connection with
//! hickory's multiplexer over it, queries pipelined on it. Trust, and the
//! connection kept and renewed, are shared with DoH (`secure.rs`).

use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tls::tls_client_connect_with_bind_addr;
use hickory_net::xfer::DnsMultiplexer;

use super::secure::{Exchange, Protocol, Target};

/// Queries in flight on one connection at most (hickory's default is 32).
const MAX_PIPELINED: usize = 1024;

/// DNS over TLS.
pub(super) struct Dot;

impl Protocol for Dot {
    /// A TLS connection with hickory's multiplexer over it. SNI is sent
    /// (the name given after `#`): hickory's own `tls_exchange` turns it
    /// off, but providers that serve several names on one address pick the
    /// certificate by it.
    async fn connect(&self, to: Target) -> Result<Exchange, hickory_net::NetError> {
        let (stream, sender) = tls_client_connect_with_bind_addr(
            to.addr,
            None,
            to.name,
            to.config,
            TokioRuntimeProvider::new(),
        );
        let multiplexer = DnsMultiplexer::new(stream.await?, sender)
            .with_timeout(to.timeout)
            .with_max_active_requests(MAX_PIPELINED);
        let (exchange, background) = Exchange::from_stream(multiplexer);
        tokio::spawn(background);
        Ok(exchange)
    }
}
