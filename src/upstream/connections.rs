//! The connections kept open to one stream upstream, whatever it speaks:
//! plain TCP (`tcp.rs`), DNS over TLS (`tls.rs`), DNS over HTTPS
//! (`https.rs`). Each opens its connection its own way ([`Protocol`]);
//! keeping, sharing, renewing and closing them is done once, here.
//!
//! ```text
//!  exchange(query) ─► a connection with room: fewer than `in_flight` queries on it
//!                     │  none: open one (at most `connections`; the lock is held
//!                     │  meanwhile, so queries arriving wait for that handshake)
//!                     ▼
//!                   hickory's exchange: an ID of its own, unique on the connection
//!                   (RFC 7766 6.2.1.1: pipelined, answers in any order, matched by ID);
//!                   then ours: the question must be the one asked (`same_question`)
//!                     │  failed (closed by the server, reset, a wrong answer):
//!                     │  that connection takes no more queries; once more on another
//!                     ▼
//!  the answer, with the query's own ID
//!
//!  each connection's task: hickory's reader and writer, until the server
//!  closes it (EOF, RST: marked closed at once, so no query picks it), or
//!  nothing was in flight for `idle` (RFC 7766 6.2.3: the client closes it)
//! ```
//!
//! Why hickory-net's exchange rather than hickory-resolver's name-server
//! pool: the pool brings its own server selection, retries and caching,
//! which would sit under ours (strategy, health, coalescing, the answer
//! cache) and decide things twice. The exchange is just the transport:
//! framing, IDs and pipelining from hickory, TLS from rustls.
//!
//! The state a connection's queries share with its task ([`State`]) is
//! one counter, so that picking a connection, closing it when idle and
//! marking it closed race safely without a lock: queries in flight, or
//! [`CLOSED`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::xfer::{DnsExchange, DnsHandle, FirstAnswer};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Message};
use tokio::time::{Instant, timeout_at};

use super::{Error, same_question};

/// One connection's hickory handle: queries go in, answers come out.
pub(super) type Exchange = DnsExchange<TokioRuntimeProvider>;

/// What reads and writes one connection (hickory's background future): it
/// ends when the server closes the connection or every handle is dropped.
pub(super) type Background = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a transport opens a connection: TCP (`tcp::Plain`), DNS over TLS
/// (`tls::Dot`), DNS over HTTPS (`https::Doh`).
pub(super) trait Protocol: Send + Sync {
    /// Opens a connection to `addr`, any handshake done; a failure is
    /// logged (if worth it) and told as the error for the query.
    fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        label: &Arc<str>,
    ) -> impl Future<Output = Result<(Exchange, Background), Error>> + Send;
}

/// How many connections, how full, how long kept idle.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Connections open at once; with every one full, the query fails
    /// over to the next server ([`Error::Busy`]).
    pub(super) connections: usize,
    /// Queries in flight on one connection.
    pub(super) in_flight: usize,
    /// A connection with nothing in flight for this long is closed; none:
    /// kept until the server closes it.
    pub(super) idle: Option<Duration>,
}

/// One upstream's connections.
pub(super) struct Connections<P> {
    addr: SocketAddr,
    protocol: P,
    /// Connecting, and each query on hickory's side (ours is the deadline).
    timeout: Duration,
    limits: Limits,
    /// The open connections, oldest first: a query takes the first with
    /// room, so a second one opens only when the first is full, and idles
    /// out when the burst is over.
    open: tokio::sync::Mutex<Vec<Arc<Conn>>>,
}

/// One open connection.
struct Conn {
    exchange: Exchange,
    state: Arc<State>,
}

/// What a connection's queries and its task share.
#[derive(Debug)]
struct State {
    /// Queries in flight, or [`CLOSED`]: no more queries go on it.
    load: AtomicUsize,
    opened: Instant,
    /// When the last query on it ended, in ms since `opened`.
    last_used: AtomicU64,
    /// Answers received on it so far: a query that timed out blames the
    /// connection only if none came after it was sent.
    answers: AtomicU64,
}

/// The `load` of a connection that takes no more queries.
const CLOSED: usize = usize::MAX;

impl State {
    /// A new connection, with the query that opened it in flight.
    fn opened() -> Self {
        Self {
            load: AtomicUsize::new(1),
            opened: Instant::now(),
            last_used: AtomicU64::new(0),
            answers: AtomicU64::new(0),
        }
    }

    /// One more query in flight, if it is open and has room.
    fn reserve(&self, in_flight: usize) -> bool {
        self.load
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                if n != CLOSED && n < in_flight {
                    Some(n + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }

    /// A query is over (answered or not).
    fn release(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used.store(now, Ordering::Release);
        let _ = self
            .load
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n != CLOSED && n > 0).then(|| n - 1)
            });
    }

    fn close(&self) {
        self.load.store(CLOSED, Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.load.load(Ordering::Acquire) == CLOSED
    }

    /// Closes it if nothing is in flight and no query ended since
    /// `last_used` read `since`.
    fn close_if_idle(&self, since: u64) -> bool {
        self.last_used.load(Ordering::Acquire) == since
            && self
                .load
                .compare_exchange(0, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Waits until the connection has been idle for `idle`, closes it and
    /// returns; pends forever if something else closed it first (a
    /// forgotten connection ends when its last query lets go of it).
    async fn idle_out(&self, idle: Duration) {
        let mut at = self.opened + idle;
        loop {
            tokio::time::sleep_until(at).await;
            if self.is_closed() {
                return std::future::pending().await;
            }
            let since = self.last_used.load(Ordering::Acquire);
            let idle_at = self.opened + Duration::from_millis(since) + idle;
            let now = Instant::now();
            if idle_at <= now && self.close_if_idle(since) {
                return;
            }
            // In use, or used since: look again once it may be idle.
            at = idle_at.max(now + idle);
        }
    }
}

/// A query's hold on its connection: released when dropped, whether the
/// query was answered, failed or timed out.
struct Lease {
    conn: Arc<Conn>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.conn.state.release();
    }
}

impl<P: Protocol> Connections<P> {
    pub(super) fn new(addr: SocketAddr, protocol: P, timeout: Duration, limits: Limits) -> Self {
        Self {
            addr,
            protocol,
            timeout,
            limits,
            open: tokio::sync::Mutex::new(Vec::new()),
        }
    }

    /// Sends `query` on a kept connection (a new one if none has room) and
    /// returns the answer, with the query's ID. A query whose connection
    /// failed under it (the server closed it, an answer that was not one)
    /// is sent once more, on another.
    pub(super) async fn exchange(
        &self,
        query: &mut [u8],
        deadline: Instant,
        label: &Arc<str>,
    ) -> Result<Vec<u8>, Error> {
        let query = &*query;
        // The connection of the query in flight, and how many answers it
        // had when the query went out.
        let mut used: Option<(Arc<Conn>, u64)> = None;
        let attempt = async {
            let mut retried = false;
            loop {
                let lease = self.lease(label).await?;
                let answers = lease.conn.state.answers.load(Ordering::Acquire);
                used = Some((lease.conn.clone(), answers));
                match send(&lease.conn.exchange, query, label).await {
                    Ok(answer) => {
                        lease.conn.state.answers.fetch_add(1, Ordering::AcqRel);
                        return Ok(answer);
                    }
                    Err(e) => {
                        self.forget(&lease.conn);
                        if retried {
                            return Err(e);
                        }
                        tracing::debug!(upstream = %label, error = %e, "upstream connection lost: once more on another");
                        retried = true;
                    }
                }
            }
        };
        match timeout_at(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => {
                // Nothing came on the connection since this query went
                // out: it is stalled, and takes no more. Answers to
                // others did come: the server is slow on this one name,
                // and the connection stays.
                if let Some((conn, answers)) = used
                    && conn.state.answers.load(Ordering::Acquire) == answers
                {
                    self.forget(&conn);
                }
                Err(Error::Timeout {
                    server: label.clone(),
                })
            }
        }
    }

    /// A place on the first open connection with room, or on a new one.
    async fn lease(&self, label: &Arc<str>) -> Result<Lease, Error> {
        let mut open = self.open.lock().await;
        open.retain(|c| !c.state.is_closed());
        if let Some(conn) = open.iter().find(|c| c.state.reserve(self.limits.in_flight)) {
            return Ok(Lease { conn: conn.clone() });
        }
        if open.len() >= self.limits.connections {
            return Err(Error::Busy);
        }
        let (exchange, background) = self
            .protocol
            .connect(self.addr, self.timeout, label)
            .await?;
        let state = Arc::new(State::opened());
        tokio::spawn(run(
            background,
            state.clone(),
            self.limits.idle,
            label.clone(),
        ));
        let conn = Arc::new(Conn { exchange, state });
        open.push(conn.clone());
        tracing::debug!(upstream = %label, connections = open.len(), "upstream connection open");
        Ok(Lease { conn })
    }

    /// No more queries on `conn`: those in flight finish, and it closes
    /// when the last lets go of it.
    fn forget(&self, conn: &Arc<Conn>) {
        conn.state.close();
        // Out of the list now if no one is connecting; else the next
        // query's `lease` drops it.
        if let Ok(mut open) = self.open.try_lock() {
            open.retain(|c| !Arc::ptr_eq(c, conn));
        }
    }
}

/// A connection's task: hickory's reader and writer until the server
/// closes the connection, or until it has been idle for `idle`; then no
/// query picks it again.
async fn run(background: Background, state: Arc<State>, idle: Option<Duration>, label: Arc<str>) {
    let idle_out = async {
        match idle {
            Some(idle) => state.idle_out(idle).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = background => tracing::debug!(upstream = %label, "upstream connection closed"),
        () = idle_out => tracing::debug!(upstream = %label, "idle upstream connection closed"),
    }
    state.close();
}

/// Sends `query` on a hickory exchange and returns the answer's bytes with
/// our query's ID (hickory picks its own on the wire, DoH sends 0), after
/// checking that it answers our question.
async fn send(exchange: &Exchange, query: &[u8], label: &Arc<str>) -> Result<Vec<u8>, Error> {
    let message = Message::from_vec(query).map_err(|_| Error::Unparsable)?;
    let request = DnsRequest::new(message, DnsRequestOptions::default());
    let response = exchange
        .send(request)
        .first_answer()
        .await
        .map_err(|e| Error::Secure {
            server: label.clone(),
            reason: e.to_string(),
        })?;
    let mut resp = response.into_buffer();
    if let (Some(id), Some(dst)) = (query.get(..2), resp.get_mut(..2)) {
        dst.copy_from_slice(id);
    }
    if same_question(query, &resp) {
        Ok(resp)
    } else {
        Err(Error::Malformed {
            server: label.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_takes_queries_up_to_its_bound() {
        let s = State::opened();
        assert!(s.reserve(3));
        assert!(s.reserve(3));
        assert!(!s.reserve(3), "three in flight: full");
        s.release();
        assert!(s.reserve(3), "one ended: room for one");
        assert_eq!(s.load.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_closed_connection_takes_no_query_and_its_leases_end_quietly() {
        let s = State::opened();
        s.close();
        assert!(!s.reserve(usize::MAX - 1));
        s.release();
        assert!(s.is_closed(), "a lease ending does not reopen it");
    }

    #[test]
    fn only_an_idle_connection_is_closed_for_idleness() {
        let s = State::opened();
        let since = s.last_used.load(Ordering::Relaxed);
        assert!(!s.close_if_idle(since), "a query in flight");
        s.release();
        assert!(
            !s.close_if_idle(since.wrapping_add(1)),
            "a query ended since the idle time was read"
        );
        let since = s.last_used.load(Ordering::Relaxed);
        assert!(s.close_if_idle(since));
        assert!(!s.reserve(10), "closed: no query picks it");
    }

    /// An echoing TCP DNS server on loopback: each query comes back as its
    /// own answer (QR set). Counts connections accepted and closed.
    async fn echo() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    while let Ok(len) = conn.read_u16().await {
                        let mut msg = vec![0u8; usize::from(len)];
                        if conn.read_exact(&mut msg).await.is_err() {
                            break;
                        }
                        msg[2] |= 0x80;
                        let mut frame = len.to_be_bytes().to_vec();
                        frame.extend_from_slice(&msg);
                        if conn.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, accepted, closed)
    }

    fn query(id: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        q
    }

    /// Issue 21: a connection with nothing in flight for the idle time is
    /// closed by us (RFC 7766 6.2.3), and the next query opens another.
    #[tokio::test]
    async fn r21_an_idle_connection_is_closed_and_the_next_query_opens_another() {
        let (addr, accepted, closed) = echo().await;
        let limits = Limits {
            connections: 2,
            in_flight: 8,
            idle: Some(Duration::from_millis(100)),
        };
        let conns = Connections::new(
            addr,
            super::super::tcp::Plain,
            Duration::from_secs(2),
            limits,
        );
        let label: Arc<str> = "tcp://test".into();
        let deadline = || Instant::now() + Duration::from_secs(2);
        for id in [7, 8] {
            let mut q = query(id);
            let answer = conns.exchange(&mut q, deadline(), &label).await;
            assert_eq!(
                answer.expect("answered").get(..2),
                Some(&id.to_be_bytes()[..])
            );
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "kept open between queries"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(closed.load(Ordering::SeqCst), 1, "closed after 100 ms idle");
        let mut q = query(9);
        conns
            .exchange(&mut q, deadline(), &label)
            .await
            .expect("answered on a new connection");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
