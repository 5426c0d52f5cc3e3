//! Plain DNS over TCP (RFC 7766), two ways:
//!
//! - a `tcp://` server: connections kept open and queries pipelined on
//!   them, answers in any order, as for DoT (the connection code is the
//!   same, `connections.rs`; [`Plain`] is how one is opened): a few
//!   connections per server rather than one per query, as Unbound's
//!   `tcp-upstream` and dnsdist's TCP pools keep them;
//! - the retry of an answer that came truncated over UDP ([`exchange`]):
//!   one connection for the one query, since such retries are rare and
//!   spread over the servers of plain UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{DnsExchange, DnsMultiplexer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::connections::{Background, Exchange, Limits, Protocol};
use super::{Error, answers};

/// A `tcp://` server's connections: up to 8, each with up to 128 queries
/// in flight (1,024 at once, then the next server), closed after 10 s with
/// nothing in flight: under the idle timeouts servers keep (BIND and
/// Unbound 30 s, embargo's own `tcp_idle_timeout` 10 s), so that we close
/// rather than find it closed.
pub(super) const LIMITS: Limits = Limits {
    connections: 8,
    in_flight: 128,
    idle: Some(Duration::from_secs(10)),
};

/// Plain TCP, for a `tcp://` server.
pub(super) struct Plain;

impl Protocol for Plain {
    /// A TCP connection (`TCP_NODELAY`) with hickory's multiplexer over it:
    /// the same framing and ID matching as DoT's, without the TLS.
    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        label: &Arc<str>,
    ) -> Result<(Exchange, Background), Error> {
        let (stream, sender) =
            TcpClientStream::new(addr, None, Some(timeout), TokioRuntimeProvider::new());
        let stream = stream.await.map_err(|e| match e {
            hickory_net::NetError::Io(source) => Error::Io {
                server: label.clone(),
                source,
            },
            e => Error::Secure {
                server: label.clone(),
                reason: format!("connection failed: {e}"),
            },
        })?;
        // hickory's own bound above ours (`connections.rs` counts), which
        // it may reach later: it forgets an answered query at its next poll.
        let multiplexer = DnsMultiplexer::new(stream, sender)
            .with_timeout(timeout)
            .with_max_active_requests(LIMITS.in_flight * 2);
        let (exchange, background) = DnsExchange::from_stream(multiplexer);
        Ok((exchange, Box::pin(background)))
    }
}

/// Sends `query` with a fresh random ID and reads one answer to it.
pub(super) async fn exchange(
    server: SocketAddr,
    query: &mut [u8],
    deadline: Instant,
    label: &Arc<str>,
) -> Result<Vec<u8>, Error> {
    crate::wire::put_u16(query, 0, fastrand::u16(..));
    let query = &*query;
    let io = |source| Error::io(label, source);
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let len = u16::try_from(query.len()).map_err(|_| Error::Unparsable)?;
        let mut msg = Vec::with_capacity(query.len() + 2);
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(query);
        stream.write_all(&msg).await.map_err(io)?;
        let len = usize::from(stream.read_u16().await.map_err(io)?);
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.map_err(io)?;
        if answers(query, &buf) {
            Ok(buf)
        } else {
            Err(Error::Malformed {
                server: label.clone(),
            })
        }
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| Error::Timeout {
            server: label.clone(),
        })?
}
