//! Sockets in, answers out.
//!
//! ```text
//!  UDP socket ──► worker thread: recv ─► Handler::handle ─┬─► send (blocked, cached, errors)
//!                                                          ├─► Handler::forward_udp: query sent from here;
//!                                                          │   the upstream socket's reader task answers ─► send
//!                                                          └─► tokio task: Handler::forward ─► send (DoT, DoH, TCP)
//!  TCP listener ─► task per connection: read frames ─► same Handler ─► writer task (any order, RFC 7766)
//! ```
//!
//! UDP runs on plain OS threads with blocking sockets: the blocked and cached
//! paths never wait, so an async reactor would only add a wake-up per packet.
//! Forwarded queries are the only ones that wait, and they go to tokio.
//! [`Server::bind`] takes the addresses and [`Server::run`] a shutdown future,
//! so tests bind `127.0.0.1:0` and stop the server when they are done.

mod batch;
mod handler;
mod tcp;
mod udp;

pub use handler::{Forward, Handler, Outcome, Proto};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Bound sockets and the handler that answers on them.
pub struct Server {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
    handler: Arc<Handler>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl Server {
    /// Binds UDP and TCP on each address (the same port for both, also when
    /// the port is 0). An IPv6 address that the host does not have is
    /// skipped with a warning, so the default `[::1]` does not stop a host
    /// without IPv6; every other failure is an error.
    pub fn bind(listen: &[SocketAddr], handler: Arc<Handler>) -> Result<Self, BindError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in listen {
            match bind_pair(addr) {
                Ok((u, t)) => {
                    udp.push(u);
                    tcp.push(t);
                }
                Err(e) if addr.is_ipv6() && e.kind() == io::ErrorKind::AddrNotAvailable => {
                    tracing::warn!(%addr, error = %e, "IPv6 address not available here; not listening on it");
                }
                Err(source) => return Err(BindError { addr, source }),
            }
        }
        Ok(Self { udp, tcp, handler })
    }

    /// The addresses actually bound (with the real port when 0 was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The shared handler (rules, cache, upstream).
    pub fn handler(&self) -> &Arc<Handler> {
        &self.handler
    }

    /// Serves until `shutdown` completes, then stops accepting, lets queries
    /// in flight finish (at most the upstream timeout) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let rt = tokio::runtime::Handle::current();
        let mut threads = Vec::new();
        for sock in self.udp {
            tracing::info!(addr = %sock.local_addr()?, "listening on udp");
            threads.push(udp::spawn(
                sock,
                self.handler.clone(),
                rt.clone(),
                stop.clone(),
            )?);
        }
        let mut tasks = Vec::new();
        for l in self.tcp {
            tracing::info!(addr = %l.local_addr()?, "listening on tcp");
            l.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(l)?;
            tasks.push(tokio::spawn(tcp::serve(
                listener,
                self.handler.clone(),
                stop_rx.clone(),
            )));
        }
        shutdown.await;
        tracing::info!("shutting down: draining queries in flight");
        stop.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let drain = self.handler.upstream_timeout() + Duration::from_millis(200);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let _ = tokio::time::timeout(drain, joined).await;
        // Forwards still waiting for the upstream end within its timeout.
        self.handler.drain(drain).await;
        // Their answers are sent right after; give those sends a moment.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

fn bind_pair(addr: SocketAddr) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    // With port 0 the kernel picks the UDP port; TCP may find it taken, so retry.
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
        udp.bind(&addr.into())?;
        let udp: std::net::UdpSocket = udp.into();
        let bound = udp.local_addr()?;
        let tcp = new_socket(bound, Type::STREAM, Protocol::TCP)?;
        match tcp.bind(&bound.into()) {
            Ok(()) => {
                tcp.listen(1024)?;
                return Ok((udp, tcp.into()));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("bind failed")))
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        // So that 0.0.0.0:53 and [::]:53 can both be configured.
        s.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        s.set_reuse_address(true)?;
    }
    Ok(s)
}
