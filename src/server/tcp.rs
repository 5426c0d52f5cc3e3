//! DNS over TCP (RFC 7766): length-prefixed messages, several in flight on
//! one connection, answered in whatever order they complete.
//!
//! Every way a client can hold the server's resources is bounded
//! ([`TcpLimits`]):
//!
//! - connections: at most `max_connections`. One more closes the connection
//!   that has been idle longest (nothing in flight) to make room, as RFC
//!   7766 6.2.3 allows a server under pressure; when every connection has
//!   queries in flight, the new one is closed at once. Either way the client
//!   hears at once, instead of waiting unseen in the listen backlog, and idle
//!   connections held open by one client cannot lock out the next;
//! - idle time: a connection with nothing in flight and no new query for
//!   `idle_timeout` is closed (RFC 7766 6.2.3; 10 s by default);
//! - slow messages: once the first byte of a message has arrived, the whole
//!   message must within `message_timeout` (a client that sends a length
//!   and then trickles, or nothing, loses its connection);
//! - pipelining: at most `max_inflight` queries of one connection are being
//!   answered at once; then the connection is not read until one answer has
//!   been written (backpressure: the client's own socket buffer fills);
//! - a client that stops reading its answers: a write that cannot finish
//!   within `idle_timeout` closes the connection, and so do more than
//!   [`MAX_QUEUED`] bytes of answers waiting to be written (the kernel's
//!   send buffer is full by then).
//!
//! So one connection holds at most a message being read (64 KiB), the
//! answer being built (4 KiB), the write buffer and `MAX_QUEUED` bytes
//! of answers (plus the last one, at most 64 KiB), whatever the client
//! does: the manual's "Bounded resources" adds it up.
//!
//! DNS over TLS is this protocol inside a TLS stream (RFC 7858 3.3), so
//! `tls.rs` hands its streams, once the handshake is done, to the same
//! [`connection`], with the same bounds taken from its own settings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};

use super::handler::{Handler, Outcome, Proto};
use crate::config::TcpLimits;
use crate::groups::ClientId;
use crate::observe::WorkerStats;

/// A read buffer grown past this by a rare big query is given back after it.
const KEEP_BUFFER: usize = 4096;
/// Bytes of answers waiting to be written beyond which the connection is
/// closed: its client has stopped reading (the kernel's send buffer, which
/// grows to megabytes for a reader, is already full).
pub(super) const MAX_QUEUED: usize = 128 * 1024;
/// Room to gather pipelined answers into segments.
const WRITE_BUFFER: usize = 4096;

/// The connections of one listener, for making room when a new one arrives.
pub(super) struct Connections {
    /// Which listener, in log lines ("tcp", "tls", "https", "quic").
    kind: &'static str,
    pub(super) limits: TcpLimits,
    /// Activity times are milliseconds since this.
    epoch: Instant,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Connections closed to make room for a new one.
    evicted: AtomicU64,
    /// New connections closed at once because every connection was busy.
    refused: AtomicU64,
}

/// What the listener knows of one connection.
pub(super) struct Conn {
    /// When a query was last read or an answer written (ms since `epoch`).
    last_active: AtomicU64,
    /// Queries being answered; all permits back means nothing in flight.
    pub(super) inflight: Arc<Semaphore>,
    /// Bytes of answers handed to the writer and not yet written.
    queued: AtomicUsize,
    /// Told to close at once: to make room for a newer connection, or
    /// because its client does not read its answers.
    pub(super) close: Notify,
}

impl Connections {
    pub(super) fn new(kind: &'static str, limits: TcpLimits) -> Self {
        Self {
            kind,
            limits,
            epoch: Instant::now(),
            open: Mutex::new(HashMap::new()),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn touch(&self, conn: &Conn) {
        conn.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    pub(super) fn is_idle(&self, conn: &Conn) -> bool {
        conn.inflight.available_permits() == self.limits.max_inflight
    }

    /// When `conn` will have been idle for `idle_timeout`, if nothing happens.
    pub(super) fn idle_deadline(&self, conn: &Conn) -> Instant {
        let last = Duration::from_millis(conn.last_active.load(Ordering::Relaxed));
        self.epoch + last + self.limits.idle_timeout
    }

    /// Registers a new connection, making room if the limit is reached.
    /// `None` when every connection is busy: the new one must be closed.
    pub(super) fn admit(&self, id: u64, peer: SocketAddr) -> Option<Arc<Conn>> {
        let conn = Arc::new(Conn {
            last_active: AtomicU64::new(self.now_ms()),
            inflight: Arc::new(Semaphore::new(self.limits.max_inflight)),
            queued: AtomicUsize::new(0),
            close: Notify::new(),
        });
        let Ok(mut open) = self.open.lock() else {
            return None;
        };
        if open.len() >= self.limits.max_connections {
            let victim = open
                .iter()
                .filter(|(_, c)| self.is_idle(c))
                .min_by_key(|(_, c)| c.last_active.load(Ordering::Relaxed))
                .map(|(&id, _)| id);
            let Some(victim) = victim.and_then(|v| open.remove(&v)) else {
                drop(open);
                let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        listener = self.kind,
                        client = %peer,
                        limit = self.limits.max_connections,
                        times = n,
                        "connection limit reached and every connection busy: closed the new one"
                    );
                }
                return None;
            };
            victim.close.notify_one();
            let n = self.evicted.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    listener = self.kind,
                    limit = self.limits.max_connections,
                    times = n,
                    "connection limit reached: closed the longest-idle connection to make room"
                );
            }
        }
        open.insert(id, conn.clone());
        Some(conn)
    }

    pub(super) fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }
}

/// Accepts connections until `stop` turns true.
pub(super) async fn serve(
    listener: TcpListener,
    limits: TcpLimits,
    handler: Arc<Handler>,
    stats: Arc<WorkerStats>,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Connections::new("tcp", limits));
    let bound = listener.local_addr().ok();
    let mut next_id = 0u64;
    // Out of descriptors, every accept fails (the connection waits in the
    // backlog): one line per interval, with a count, not one per retry.
    let failed = super::LogGate::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if handler.drops_connection(peer, &stats) {
                        continue;
                    }
                    next_id += 1;
                    let id = next_id;
                    // Dropping the stream closes it at once.
                    let Some(conn) = conns.admit(id, peer) else {
                        continue;
                    };
                    let (handler, stop, conns) = (handler.clone(), stop.clone(), conns.clone());
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let local = local_addr(bound, &stream, &handler);
                        let (rd, wr) = stream.into_split();
                        let client = Client { addr: peer, local, proto: Proto::Tcp, id: ClientId::NONE };
                        connection(rd, wr, client, handler, stats, &conns, conn, stop).await;
                        conns.remove(id);
                    });
                }
                Err(e) => {
                    if let Some(more) = failed.pass(crate::observe::now_us()) {
                        tracing::warn!(error = %e, suppressed = more, "tcp accept failed (one line per 10 s; suppressed: failures since the last)");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// An answer to write, and the in-flight slot it frees once written.
type Answer = (Vec<u8>, OwnedSemaphorePermit);

/// Hands `answer` to the writer, unless that would leave more than
/// [`MAX_QUEUED`] bytes unwritten: then the connection is told to close.
async fn queue(tx: &mpsc::Sender<Answer>, conn: &Conn, answer: Answer) -> bool {
    let len = answer.0.len();
    if conn.queued.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED {
        conn.close.notify_one();
        return false;
    }
    tx.send(answer).await.is_ok()
}

/// The address a connection's client sent to, for dnstap's
/// `response_address`: the listener's bound address (`bound`, read once),
/// or for a wildcard bind the connection's own, read when it is accepted
/// (one `getsockname`, and only with dnstap on).
pub(super) fn local_addr(
    bound: Option<SocketAddr>,
    stream: &tokio::net::TcpStream,
    handler: &Handler,
) -> Option<SocketAddr> {
    match bound {
        Some(b) if b.ip().is_unspecified() && handler.observer().taps() => {
            stream.local_addr().ok().or(bound)
        }
        _ => bound,
    }
}

/// Who is on the other end of a connection, and over what.
#[derive(Debug, Clone, Copy)]
pub(super) struct Client {
    pub(super) addr: SocketAddr,
    /// The address it sent to (see [`local_addr`]).
    pub(super) local: Option<SocketAddr>,
    pub(super) proto: Proto,
    /// The ID it named itself by (DoT: its SNI).
    pub(super) id: ClientId,
}

/// Serves one connection's length-prefixed messages (TCP, or DoT once its
/// handshake is done) until the client closes, idles out, or `stop`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn connection<R, W>(
    mut rd: R,
    wr: W,
    client: Client,
    handler: Arc<Handler>,
    stats: Arc<WorkerStats>,
    conns: &Connections,
    conn: Arc<Conn>,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let limits = conns.limits;
    let Client {
        addr: peer,
        local,
        proto,
        id,
    } = client;
    // Never full: each answer holds one of `max_inflight` permits.
    let (tx, rx) = mpsc::channel::<Answer>(limits.max_inflight);
    let writer = write_answers(wr, rx, conns, &conn);
    let reader = async {
        let mut buf = Vec::with_capacity(512);
        let mut out = Vec::with_capacity(512);
        let mut rec = handler.observer().task_recorder(stats).with_local(local);
        loop {
            // Backpressure: no free slot, no read. Only this reader takes
            // slots, so the one seen free here is still free below; the
            // connection counts as idle while it waits for the next query.
            if conn.inflight.acquire().await.is_err() {
                break;
            }
            let Some(first) = first_byte(&mut rd, conns, &conn).await else {
                break;
            };
            let whole = timeout(limits.message_timeout, async {
                let second = rd.read_u8().await?;
                buf.resize(usize::from(u16::from_be_bytes([first, second])), 0);
                rd.read_exact(&mut buf).await
            })
            .await;
            match whole {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!(client = %peer, ?proto, "message not complete in time: closing");
                    break;
                }
            }
            conns.touch(&conn);
            let Ok(permit) = conn.inflight.clone().try_acquire_owned() else {
                break;
            };
            rec.begin();
            let outcome = handler.handle_as(&buf, peer, proto, id, &mut out, &mut rec);
            rec.flush();
            match outcome {
                Outcome::Reply => {
                    if !queue(&tx, &conn, (out.clone(), permit)).await {
                        break;
                    }
                }
                Outcome::Drop => drop(permit),
                Outcome::Forward(job) => {
                    let (handler, tx, conn) = (handler.clone(), tx.clone(), conn.clone());
                    tokio::spawn(async move {
                        let mut out = Vec::new();
                        handler.forward(job, &mut out).await;
                        queue(&tx, &conn, (out, permit)).await;
                    });
                }
            }
            if buf.capacity() > KEEP_BUFFER {
                buf = Vec::with_capacity(512);
            }
        }
        // The writer ends once every forward still in flight has sent its
        // answer (each holds a sender).
        drop(tx);
    };
    tokio::pin!(writer);
    tokio::select! {
        // Shutdown: stop reading; answers in flight still go out.
        _ = stop.changed() => {}
        // Evicted (idle: nothing to write) or not reading its answers.
        _ = conn.close.notified() => return,
        // The reader ended (EOF, timeout, bad frame): drain the answers.
        () = reader => {}
        // The writer gave up (the client stopped reading, or reset): close.
        () = &mut writer => return,
    }
    writer.await;
}

/// Waits for the first byte of the next message. `None` when the client
/// closed, or when the connection has been idle for `idle_timeout`: nothing
/// in flight and no query read or answer written for that long.
async fn first_byte<R: AsyncRead + Unpin>(
    rd: &mut R,
    conns: &Connections,
    conn: &Conn,
) -> Option<u8> {
    let mut deadline = conns.idle_deadline(conn);
    loop {
        // Reading one byte is cancel-safe: a byte is either returned or not read.
        match timeout_at(deadline, rd.read_u8()).await {
            Ok(Ok(b)) => return Some(b),
            Ok(Err(_)) => return None,
            Err(_) => {
                let now = Instant::now();
                let idle_at = conns.idle_deadline(conn);
                if idle_at > now {
                    // An answer went out meanwhile: idle time counts from then.
                    deadline = idle_at;
                } else if conns.is_idle(conn) {
                    return None;
                } else {
                    // Answers still to come; writing them counts as activity.
                    deadline = now + conns.limits.idle_timeout;
                }
            }
        }
    }
}

/// Writes answers in the order they complete. Returns when every sender is
/// gone, or when a write cannot finish within `idle_timeout` (a client that
/// does not read its answers is gone too).
async fn write_answers<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::Receiver<Answer>,
    conns: &Connections,
    conn: &Conn,
) {
    let mut wr = BufWriter::with_capacity(WRITE_BUFFER, wr);
    let stall = conns.limits.idle_timeout;
    while let Some((msg, permit)) = rx.recv().await {
        conn.queued.fetch_sub(msg.len(), Ordering::Relaxed);
        let Ok(len) = u16::try_from(msg.len()) else {
            continue;
        };
        let more = !rx.is_empty();
        let written = timeout(stall, async {
            wr.write_all(&len.to_be_bytes()).await?;
            wr.write_all(&msg).await?;
            // Flush when nothing else is ready, so pipelined answers share a segment.
            if !more {
                wr.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
        conns.touch(conn);
        drop(permit);
    }
    let _ = timeout(stall, async {
        let _ = wr.flush().await;
        let _ = wr.into_inner().shutdown().await;
    })
    .await;
}
