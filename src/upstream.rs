//! Sends a query to the upstream resolvers and brings back their answer,
//! bytes untouched, so rcodes, sections, CNAME chains and EDNS options pass
//! through faithfully.
//!
//! UDP first on a fresh connected socket (a random source port per query,
//! and the kernel drops datagrams from anyone but the upstream), TCP when the
//! answer is truncated or the server is configured `tcp://`. Servers are
//! tried in order within one overall deadline, so the client always hears
//! back (SERVFAIL at worst) within `timeout_ms`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::config::{Transport, UpstreamServer};
use crate::observe::metrics::UpstreamStats;
use crate::wire::{self, Header};

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no upstream servers configured")]
    NoServers,
    #[error("upstream {server} timed out")]
    Timeout { server: SocketAddr },
    #[error("upstream {server}: {source}")]
    Io {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream {server} sent a malformed answer")]
    Malformed { server: SocketAddr },
    #[error("upstream answer could not be walked")]
    Unparsable,
    #[error("too many queries waiting for the upstream")]
    Busy,
}

impl Error {
    /// What went wrong, without addresses: safe to tell any client.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoServers => "no upstream configured",
            Self::Timeout { .. } => "upstream timed out",
            Self::Io { .. } => "upstream unreachable",
            Self::Malformed { .. } | Self::Unparsable => "upstream answer malformed",
            Self::Busy => "too many queries in flight",
        }
    }
}

/// The upstream resolvers and the time allowed for one query.
#[derive(Debug, Clone)]
pub struct Upstream {
    servers: Vec<UpstreamServer>,
    timeout: Duration,
    /// One per server, in the order of `servers`.
    stats: Arc<[UpstreamStats]>,
}

impl Upstream {
    pub fn new(servers: Vec<UpstreamServer>, timeout: Duration) -> Self {
        let stats = servers
            .iter()
            .map(|s| {
                UpstreamStats::new(match s.transport {
                    Transport::Udp => s.addr.to_string(),
                    Transport::Tcp => format!("tcp://{}", s.addr),
                })
            })
            .collect();
        Self {
            servers,
            timeout,
            stats,
        }
    }

    /// Each server's counters, in the configured order.
    pub fn stats(&self) -> &Arc<[UpstreamStats]> {
        &self.stats
    }

    /// The overall deadline per query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Forwards `query` (ID already chosen by the caller) and returns the
    /// first valid answer, trying each server in turn before the deadline.
    pub async fn forward(&self, query: &[u8]) -> Result<Vec<u8>, Error> {
        let deadline = Instant::now() + self.timeout;
        let mut last = Error::NoServers;
        let n = self.servers.len();
        for (i, server) in self.servers.iter().enumerate() {
            // Share what is left of the deadline among the servers not yet tried.
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt_deadline = Instant::now() + left / (n - i) as u32;
            let stats = self.stats.get(i);
            if let Some(s) = stats {
                s.record_query();
            }
            let sent = Instant::now();
            let result = match server.transport {
                Transport::Udp => match udp_exchange(server.addr, query, attempt_deadline).await {
                    Ok(resp) if Header::parse(&resp).is_some_and(|h| h.truncated()) => {
                        tcp_exchange(server.addr, query, deadline).await
                    }
                    other => other,
                },
                Transport::Tcp => tcp_exchange(server.addr, query, attempt_deadline).await,
            };
            match result {
                Ok(resp) => {
                    if let Some(s) = stats {
                        s.record_answer(sent.elapsed());
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    if let Some(s) = stats {
                        s.record_error();
                    }
                    tracing::debug!(error = %e, "upstream attempt failed");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// True when `resp` answers `query`: same ID, QR set, same question (names
/// compared case-insensitively, since some servers change case).
fn answers(query: &[u8], resp: &[u8]) -> bool {
    let (Some(q), Some(r)) = (Header::parse(query), Header::parse(resp)) else {
        return false;
    };
    if q.id != r.id || !r.is_response() {
        return false;
    }
    if r.qdcount == 0 {
        // FORMERR/NOTIMP answers may omit the question.
        return r.rcode() != 0;
    }
    let Some(end) = wire::skip_name(query, wire::HEADER_LEN).map(|e| e + 4) else {
        return false;
    };
    match (
        resp.get(wire::HEADER_LEN..end),
        query.get(wire::HEADER_LEN..end),
    ) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io { server, source };
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(query).await.map_err(io)?;
    loop {
        timeout_at(deadline, sock.readable())
            .await
            .map_err(|_| Error::Timeout { server })?
            .map_err(io)?;
        // The buffer exists only once something has arrived: a forward
        // waiting for its answer holds no receive buffer (4 KiB each, times
        // max_forwards). We ask with a 1232-byte EDNS size or none (512), so
        // a compliant answer fits with room to spare; a longer one is cut
        // and fails to parse.
        let mut buf = vec![0u8; 4096];
        let n = match sock.try_recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(io(e)),
        };
        if answers(query, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
        // Anything else (a late answer to someone else's ID) is ignored.
    }
}

async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io { server, source };
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut msg = Vec::with_capacity(query.len() + 2);
        msg.extend_from_slice(&(query.len() as u16).to_be_bytes());
        msg.extend_from_slice(query);
        stream.write_all(&msg).await.map_err(io)?;
        let len = stream.read_u16().await.map_err(io)? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.map_err(io)?;
        if answers(query, &buf) {
            Ok(buf)
        } else {
            Err(Error::Malformed { server })
        }
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| Error::Timeout { server })?
}
