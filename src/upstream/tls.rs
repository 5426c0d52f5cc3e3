//! DNS over TLS (RFC 7858) through hickory: a TLS connection with
//! hickory's multiplexer over it, queries pipelined on it. Trust is shared
//! with DoH (`secure.rs`); the connection kept and renewed, with plain TCP
//! and DoH (`connections.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tls::tls_client_connect_with_bind_addr;
use hickory_net::xfer::{DnsExchange, DnsMultiplexer};

use super::Error;
use super::connections::{Background, Exchange, Limits, Protocol};
use super::secure::{Tls, connect_failed};

/// Queries in flight on one connection at most (hickory's default is 32).
const MAX_PIPELINED: usize = 1024;

/// One connection, kept until the server closes it, as before `tcp://`
/// shared this code.
pub(super) const LIMITS: Limits = Limits {
    connections: 1,
    in_flight: MAX_PIPELINED,
    idle: None,
};

/// DNS over TLS.
pub(super) struct Dot {
    pub(super) tls: Tls,
}

impl Protocol for Dot {
    /// A TLS connection with hickory's multiplexer over it. SNI is sent
    /// (the name given after `#`): hickory's own `tls_exchange` turns it
    /// off, but providers that serve several names on one address pick the
    /// certificate by it.
    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        label: &Arc<str>,
    ) -> Result<(Exchange, Background), Error> {
        let (name, config) = self.tls.target(label)?;
        let (stream, sender) = tls_client_connect_with_bind_addr(
            addr,
            None,
            name,
            config,
            TokioRuntimeProvider::new(),
        );
        let stream = stream.await.map_err(|e| connect_failed(label, &e))?;
        // hickory's own bound above ours (`connections.rs` counts), which
        // it may reach later: it forgets an answered query at its next poll.
        let multiplexer = DnsMultiplexer::new(stream, sender)
            .with_timeout(timeout)
            .with_max_active_requests(MAX_PIPELINED * 2);
        let (exchange, background) = DnsExchange::from_stream(multiplexer);
        Ok((exchange, Box::pin(background)))
    }
}
