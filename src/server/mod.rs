//! Sockets in, answers out.
//!
//! ```text
//!  UDP sockets (N per address, SO_REUSEPORT)
//!   └─► worker thread each: recv ─► Handler::handle ─┬─► send (blocked, cached, errors)
//!                                                     └─► Handler::forward_udp: query sent from here;
//!                                                         whoever has the upstream's answer (the upstream
//!                                                         socket's reader task, mostly) ─► sink.rs ─► send
//!  TCP listener ─► task per connection: read frames ─► same Handler ─► writer task (any order, RFC 7766)
//!                                                     └─► Handler::forward: a task awaits the answer
//!  DoT listener ─► TLS handshake ─► the TCP connection code over the TLS stream (tls.rs)
//!  DoH listener ─► TLS ─► HTTP/2 or HTTP/1.1 (hyper) ─► a request each ─► same Handler (https.rs)
//!  DoQ endpoint ─► QUIC (quinn) ─► a stream per query ─► same Handler (quic.rs)
//! ```
//!
//! The encrypted listeners are ways in, never a second decision path:
//! each hands the query's bytes, the client's address and its transport
//! (and the client ID it named itself by) to `Handler::handle_as`, and
//! sends back the bytes it writes.
//!
//! UDP runs on plain OS threads with blocking sockets: the blocked and cached
//! paths never wait, so an async reactor would only add a wake-up per packet.
//! Forwarded queries are the only ones that wait, and they go to tokio: the
//! upstream module calls back with the answer (`upstream::Reply`), and the
//! client sink (`sink`) sends it, gathering the answers of one read pass.
//! [`Server::bind`] takes the addresses and [`Server::run`] a shutdown future,
//! so tests bind `127.0.0.1:0` and stop the server when they are done;
//! `embargo run` binds [`Listeners`] first, drops its privileges, then serves
//! them with [`Server::new`].
//!
//! Everything a client can make the server hold is bounded: TCP connections,
//! their idle time, the time a message may take to arrive and the queries in
//! flight on each (`tcp`), and the forwards waiting upstream (`handler`).
//! The manual's "Bounded resources" says how much memory each can take.

mod batch;
mod handler;
mod https;
mod log_gate;
mod quic;
mod sink;
mod tcp;
mod tls;
mod udp;

pub use crate::observe::metrics::{ServerStats, WorkerStats};
pub use handler::{Forward, Handler, Outcome, Proto};
pub(crate) use log_gate::LogGate;
pub use tls::Certs;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{CertError, ServerConfig, TcpLimits, TlsConfig};

/// Bound sockets and the handler that answers on them.
pub struct Server {
    udp: Vec<udp::Socket>,
    tcp: Vec<std::net::TcpListener>,
    tcp_limits: TcpLimits,
    encrypted: Option<Encrypted>,
    /// One block per UDP socket, in the order of `udp`, and one for TCP.
    stats: ServerStats,
    handler: Arc<Handler>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

/// UDP sockets and TCP listeners bound to the configured addresses and not
/// yet served. Binding is split from serving so that `embargo run` can bind
/// with the privileges it was started with (port 53), give them up, and
/// only then start its threads (see [`crate::privileges`]).
pub struct Listeners {
    udp: Vec<udp::Socket>,
    tcp: Vec<std::net::TcpListener>,
    encrypted: Option<Encrypted>,
}

/// The encrypted listeners, bound, and the certificate they present.
struct Encrypted {
    config: TlsConfig,
    certs: Arc<Certs>,
    tls: Vec<std::net::TcpListener>,
    https: Vec<std::net::TcpListener>,
    quic: Vec<std::net::UdpSocket>,
}

/// Why the encrypted listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Certificate(#[from] CertError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("tls settings: {0}")]
    Settings(#[from] rustls::Error),
    #[error("encrypted listener: {0}")]
    Io(#[from] io::Error),
}

impl Listeners {
    /// Binds, on each address, one TCP listener and `settings.udp_workers()`
    /// UDP sockets (the same port for all, also when the port is 0). An
    /// IPv6 address that the host does not have is skipped with a warning,
    /// so the default `[::1]` does not stop a host without IPv6; every
    /// other failure is an error.
    pub fn bind(listen: &[SocketAddr], settings: &ServerConfig) -> Result<Self, BindError> {
        let workers = settings.udp_workers();
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in listen {
            match bind_group(addr, workers) {
                Ok((u, t)) => {
                    let pktinfo = batch::is_wildcard(addr);
                    for sock in u {
                        if pktinfo {
                            batch::enable_pktinfo(&sock)
                                .map_err(|source| BindError { addr, source })?;
                        }
                        udp.push(udp::Socket { sock, pktinfo });
                    }
                    tcp.push(t);
                }
                Err(e) if addr.is_ipv6() && e.kind() == io::ErrorKind::AddrNotAvailable => {
                    tracing::warn!(%addr, error = %e, "IPv6 address not available here; not listening on it");
                }
                Err(source) => return Err(BindError { addr, source }),
            }
        }
        warn_if_too_few_files(settings, udp.len() + tcp.len());
        Ok(Self {
            udp,
            tcp,
            encrypted: None,
        })
    }

    /// Also binds the DoT, DoH and DoQ addresses of `config`, and reads
    /// its certificate and key: both while the process may still bind
    /// port 853 and read a key only root may (see [`crate::privileges`]).
    /// Nothing when no encrypted listener is configured.
    pub fn with_encrypted(mut self, config: &TlsConfig) -> Result<Self, TlsError> {
        if !config.enabled() {
            return Ok(self);
        }
        let Some((cert, key)) = config.files() else {
            // The config refuses listeners without both; stay off.
            return Ok(self);
        };
        let certs = Arc::new(Certs::load(cert.to_path_buf(), key.to_path_buf())?);
        let stream = |addrs: &[SocketAddr]| -> Result<Vec<std::net::TcpListener>, BindError> {
            let mut out = Vec::new();
            for &addr in addrs {
                let bound = new_socket(addr, Type::STREAM, Protocol::TCP).and_then(|s| {
                    s.bind(&addr.into())?;
                    s.listen(1024)?;
                    Ok(std::net::TcpListener::from(s))
                });
                match bound {
                    Ok(l) => out.push(l),
                    Err(e) if addr.is_ipv6() && e.kind() == io::ErrorKind::AddrNotAvailable => {
                        tracing::warn!(%addr, error = %e, "IPv6 address not available here; not listening on it");
                    }
                    Err(source) => return Err(BindError { addr, source }),
                }
            }
            Ok(out)
        };
        let tls = stream(&config.tls_listen)?;
        let https = stream(&config.https_listen)?;
        let mut quic = Vec::new();
        for &addr in &config.quic_listen {
            let bound = new_socket(addr, Type::DGRAM, Protocol::UDP).and_then(|s| {
                s.bind(&addr.into())?;
                Ok(std::net::UdpSocket::from(s))
            });
            match bound {
                Ok(s) => quic.push(s),
                Err(e) if addr.is_ipv6() && e.kind() == io::ErrorKind::AddrNotAvailable => {
                    tracing::warn!(%addr, error = %e, "IPv6 address not available here; not listening on it");
                }
                Err(source) => return Err(BindError { addr, source }.into()),
            }
        }
        self.encrypted = Some(Encrypted {
            config: config.clone(),
            certs,
            tls,
            https,
            quic,
        });
        Ok(self)
    }

    /// The addresses actually bound (with the real port when 0 was asked),
    /// one per listen address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

impl Server {
    /// Binds `listen` (see [`Listeners::bind`]) for `handler`.
    pub fn bind(
        listen: &[SocketAddr],
        settings: &ServerConfig,
        handler: Arc<Handler>,
    ) -> Result<Self, BindError> {
        Ok(Self::new(
            Listeners::bind(listen, settings)?,
            settings,
            handler,
        ))
    }

    /// Serves sockets bound earlier with `handler`.
    pub fn new(listeners: Listeners, settings: &ServerConfig, handler: Arc<Handler>) -> Self {
        let stats =
            ServerStats::new(listeners.udp.len()).with_answers(handler.answer_stats().clone());
        Self {
            udp: listeners.udp,
            tcp: listeners.tcp,
            tcp_limits: settings.tcp,
            encrypted: listeners.encrypted,
            stats,
            handler,
        }
    }

    /// The addresses actually bound (with the real port when 0 was asked),
    /// one per listen address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The DoT, DoH and DoQ addresses actually bound, in that order.
    pub fn encrypted_addrs(&self) -> [Vec<SocketAddr>; 3] {
        let Some(e) = &self.encrypted else {
            return Default::default();
        };
        let tcp =
            |l: &[std::net::TcpListener]| l.iter().filter_map(|s| s.local_addr().ok()).collect();
        [
            tcp(&e.tls),
            tcp(&e.https),
            e.quic.iter().filter_map(|s| s.local_addr().ok()).collect(),
        ]
    }

    /// The certificate the encrypted listeners present, to reload it.
    pub fn certificates(&self) -> Option<Arc<Certs>> {
        self.encrypted.as_ref().map(|e| e.certs.clone())
    }

    /// Each UDP worker's counters, in the order the workers are numbered
    /// (thread `embargo-udp-N` counts into entry N): every worker of the
    /// first address, then of the next. Readable while the server runs.
    pub fn worker_stats(&self) -> Arc<[Arc<WorkerStats>]> {
        self.stats.udp.clone()
    }

    /// Every counter block: the UDP workers' and the TCP tasks'.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
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
        let udp_addrs = self
            .udp
            .iter()
            .map(|s| s.sock.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        for (i, addr) in udp_addrs.iter().enumerate() {
            if udp_addrs[..i].contains(addr) {
                continue;
            }
            let workers = udp_addrs.iter().filter(|a| *a == addr).count();
            tracing::info!(%addr, workers, "listening on udp");
        }
        for (index, socket) in self.udp.into_iter().enumerate() {
            threads.push(udp::spawn(
                socket,
                index,
                self.stats.udp.clone(),
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
                self.tcp_limits,
                self.handler.clone(),
                self.stats.tcp.clone(),
                stop_rx.clone(),
            )));
        }
        if let Some(e) = self.encrypted {
            tasks.extend(
                e.start(&self.tcp_limits, &self.handler, &self.stats.tcp, &stop_rx)
                    .map_err(io::Error::other)?,
            );
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
        // Every query is answered: write the last records and the hit report.
        let observer = self.handler.observer().clone();
        let _ = tokio::task::spawn_blocking(move || observer.stop()).await;
        Ok(())
    }
}

impl Encrypted {
    /// Starts a task per listener; they end when `stop` turns true.
    fn start(
        self,
        tcp: &TcpLimits,
        handler: &Arc<Handler>,
        stats: &Arc<WorkerStats>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, TlsError> {
        let limits = self.config.limits;
        // TCP's bounds, with the encrypted listeners' numbers; a message
        // must still arrive whole within TCP's message timeout.
        let stream_limits = TcpLimits {
            max_connections: limits.max_connections,
            idle_timeout: limits.idle_timeout,
            message_timeout: tcp.message_timeout,
            max_inflight: limits.max_streams,
        };
        let mut tasks = Vec::new();
        if !self.tls.is_empty() {
            let config = tls::server_config(self.certs.clone(), &[b"dot"], false)?;
            let dot = Arc::new(tls::Dot {
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                certs: self.certs.clone(),
                limits: stream_limits,
                handshake_timeout: limits.handshake_timeout,
            });
            for l in self.tls {
                tracing::info!(addr = %l.local_addr()?, "listening on tls (DoT)");
                l.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(l)?;
                tasks.push(tokio::spawn(tls::serve(
                    listener,
                    dot.clone(),
                    handler.clone(),
                    stats.clone(),
                    stop.clone(),
                )));
            }
        }
        if !self.https.is_empty() {
            let config = tls::server_config(self.certs.clone(), &[b"h2", b"http/1.1"], false)?;
            let doh = Arc::new(https::Doh {
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                certs: self.certs.clone(),
                limits: stream_limits,
                handshake_timeout: limits.handshake_timeout,
                path: self.config.https_path.clone(),
                max_body: limits.max_body,
            });
            for l in self.https {
                tracing::info!(addr = %l.local_addr()?, path = %doh.path, "listening on https (DoH)");
                l.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(l)?;
                tasks.push(tokio::spawn(https::serve(
                    listener,
                    doh.clone(),
                    handler.clone(),
                    stats.clone(),
                    stop.clone(),
                )));
            }
        }
        if !self.quic.is_empty() {
            let config = tls::server_config(self.certs.clone(), &[b"doq"], true)?;
            let doq = Arc::new(quic::Doq {
                certs: self.certs.clone(),
                limits: stream_limits,
                handshake_timeout: limits.handshake_timeout,
                max_body: limits.max_body,
            });
            for s in self.quic {
                let addr = s.local_addr()?;
                let endpoint = quic::endpoint(s, config.clone(), &limits)?;
                tracing::info!(%addr, "listening on quic (DoQ)");
                tasks.push(tokio::spawn(quic::serve(
                    endpoint,
                    doq.clone(),
                    handler.clone(),
                    stats.clone(),
                    stop.clone(),
                )));
            }
        }
        Ok(tasks)
    }
}

/// Says so when the open-file limit is below what the configured bounds
/// may take: every TCP connection is a descriptor, and so may be every
/// forward in flight (a TCP upstream, or the TCP retry of a truncated
/// answer, takes a connection each; plain UDP ones share each upstream's
/// `udp_sockets`), so with a soft limit of 1024 (a common default) the
/// default bounds could fail as "upstream unreachable" and refused accepts
/// long before they are reached.
fn warn_if_too_few_files(settings: &ServerConfig, sockets: usize) {
    // Files, the watcher, the runtime's own descriptors, downloads.
    const SPARE: usize = 64;
    let need = settings.max_forwards + settings.tcp.max_connections + sockets + SPARE;
    let Some(limit) = open_file_limit() else {
        return;
    };
    if limit < need {
        tracing::warn!(
            limit,
            need,
            "the open-file limit is below what max_forwards + tcp_max_connections may take: \
             raise it (ulimit -n, systemd LimitNOFILE=) or lower them"
        );
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(usize::MAX);
    }
    soft.parse().ok()
}

/// One TCP listener and `workers` UDP sockets on `addr`, all on one port.
///
/// TCP is bound first, without SO_REUSEPORT: it claims the port, so a
/// second server on the same port fails here instead of silently sharing
/// the UDP sockets' reuseport group. With port 0 the kernel picks TCP's
/// port, which no other of our servers can hold (they all hold TCP on
/// their UDP port); if something else holds that port for UDP, try again.
fn bind_group(
    addr: SocketAddr,
    workers: usize,
) -> io::Result<(Vec<std::net::UdpSocket>, std::net::TcpListener)> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let tcp = new_socket(addr, Type::STREAM, Protocol::TCP)?;
        tcp.bind(&addr.into())?;
        let bound = tcp.local_addr()?.as_socket().unwrap_or(addr);
        let mut udp = Vec::with_capacity(workers);
        for _ in 0..workers {
            let sock = new_socket(bound, Type::DGRAM, Protocol::UDP)?;
            // Best effort: the kernel caps it at net.core.rmem_max.
            let _ = sock.set_recv_buffer_size(UDP_RECV_BUFFER);
            if workers > 1 {
                sock.set_reuse_port(true)?;
            }
            match sock.bind(&bound.into()) {
                Ok(()) => udp.push(sock.into()),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        if udp.len() == workers {
            tcp.listen(1024)?;
            return Ok((udp, tcp.into()));
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("bind failed")))
}

/// The receive buffer each UDP socket asks for (SO_RCVBUF; the kernel caps
/// it at `net.core.rmem_max` and doubles it for its bookkeeping). The
/// default, about 208 KiB, holds some 200 small datagrams once the kernel
/// has charged each its overhead: 1.5 ms at 130,000 queries a second, so
/// any pause of the serving thread that long (a reload or the observer
/// taking the core) dropped queries. In the soak (`benches/soak.sh`, 80 %
/// of the peak on one core) the default lost 1.35 % of the UDP queries
/// with a p99 of 2.5 ms, 4 MiB lost 0.59 % but queued them for a p99 of
/// 75 ms, 1 MiB lost 0.34 % with a p99 of 19 ms: a lost query costs its
/// client a retry after a second or more. The memory is only taken while
/// datagrams wait.
pub const UDP_RECV_BUFFER: usize = 1 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_sockets_ask_for_a_large_receive_buffer() {
        let (udp, _tcp) = bind_group("127.0.0.1:0".parse().expect("addr"), 2).expect("bind");
        // What the kernel grants: the request, capped at rmem_max, doubled.
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(UDP_RECV_BUFFER);
        for sock in &udp {
            let got = socket2::SockRef::from(sock)
                .recv_buffer_size()
                .expect("SO_RCVBUF");
            assert!(
                got >= UDP_RECV_BUFFER.min(cap),
                "{got} < min({UDP_RECV_BUFFER}, {cap})"
            );
        }
    }

    #[test]
    fn reads_the_open_file_limit() {
        // This process has one; whatever it is, it is a number or unlimited.
        assert!(open_file_limit().is_some_and(|n| n > 0));
    }
}
