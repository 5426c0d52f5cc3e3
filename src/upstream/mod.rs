//! Sends a query to the upstream resolvers and brings back their answer,
//! bytes untouched, so rcodes, sections, CNAME chains and EDNS options pass
//! through faithfully.
//!
//! ```text
//!  send(reply) ─► flights.rs: failed lately? that answer at once (RFC 9520)
//!               │             the same question in flight? wait for its answer
//!               └► forward.rs: order the servers (strategy, health) ─► try each until one answers
//!                        udp.rs   pooled sockets, random ports and IDs (RFC 5452); TC → tcp.rs
//!                        tcp.rs   a few connections, kept and pipelined (RFC 7766); one per TC retry
//!                        tls.rs   DNS over TLS (RFC 7858), one pipelined connection, reused
//!                        https.rs DNS over HTTPS (RFC 8484), HTTP/2, one connection, reused
//!                        secure.rs what those two share: trust (secure/trust.rs)
//!                        connections.rs what those three share: the kept connections
//!  the answer (or why none came) ─► the caller's Reply, and every query that waited
//! ```
//!
//! One way through ([`forward::Query`], a state machine), two ways in that
//! differ only in how the answer reaches the caller: [`Upstream::send`]
//! takes a [`Reply`] that is called back with it, and [`Upstream::forward`]
//! is that with a reply that hands it to an awaiting task. The server's
//! UDP workers use `send`: the worker thread sends the query itself and the
//! upstream socket's reader task answers the client, so a forwarded query
//! over plain UDP costs no task, no wake-up of one, and no hop between
//! threads. TCP, DoT and DoH exchanges, and the TCP retry after a truncated
//! answer, run in a task of their own.
//!
//! Every answer is checked against the question asked (ID, QR, question
//! compared case-insensitively) before it is believed. Servers are tried
//! within one overall deadline (`timeout_ms`), each attempt getting its share
//! of what is left, so the client always hears back (SERVFAIL at worst) in
//! time; an unanswered UDP query is sent once more halfway through its
//! attempt. An answer with SERVFAIL, REFUSED or NOTIMP is a failure of that
//! server, as a timeout is: the next server is asked. A server that fails
//! [`FAILS_TO_DOWN`] times in a row is skipped for a backoff (1 s, doubling
//! to 60 s); the first query after the backoff probes it. When every server
//! is down they are all tried anyway: a SERVFAIL is never given without
//! asking (or, for `[cache] servfail_ttl`, without having asked lately).

mod connections;
mod flights;
mod forward;
mod https;
mod mmsg;
mod secure;
mod sets;
mod tcp;
mod tls;
mod udp;

pub use sets::{Sets, server_rows};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::{Strategy, Transport, UpstreamConfig};
use crate::observe::ServerNames;
use crate::observe::metrics::{UpstreamRow, UpstreamStats};
use crate::wire::{self, Header};
use flights::{FlightKey, Flights, Joined};
use forward::Query;

/// Why no upstream answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("no upstream servers configured")]
    NoServers,
    #[error("upstream {server} timed out")]
    Timeout { server: Arc<str> },
    #[error("upstream {server}: {source}")]
    Io {
        server: Arc<str>,
        source: Arc<std::io::Error>,
    },
    #[error("upstream {server} sent a malformed answer")]
    Malformed { server: Arc<str> },
    /// A kept connection (TCP, DoT, DoH) could not be opened or failed
    /// under the query (`connections.rs`).
    #[error("upstream {server}: {reason}")]
    Secure { server: Arc<str>, reason: String },
    /// The server's TLS certificate was refused; `reason` is a few fixed
    /// words (`secure/trust.rs`), told to the client as they are.
    #[error("upstream {server}: {reason}")]
    Certificate {
        server: Arc<str>,
        reason: &'static str,
    },
    /// REFUSED (5) or NOTIMP (4): not passed on as it came, since to the
    /// client it would say that we refuse it.
    #[error("upstream {server} answered with rcode {rcode}")]
    Rejected { server: Arc<str>, rcode: u8 },
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
            Self::Secure { .. } => "upstream connection failed",
            Self::Certificate { reason, .. } => reason,
            Self::Rejected { rcode: 5, .. } => "upstream refused the query",
            Self::Rejected { .. } => "upstream does not implement the query",
            Self::Malformed { .. } | Self::Unparsable => "upstream answer malformed",
            Self::Busy => "too many queries in flight",
        }
    }

    /// An upstream answered, just not with an answer to pass on (REFUSED,
    /// NOTIMP): it is reachable.
    pub fn answered(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }

    fn io(server: &Arc<str>, source: std::io::Error) -> Self {
        Self::Io {
            server: server.clone(),
            source: Arc::new(source),
        }
    }
}

/// An upstream's answer with the index of the server that gave it (in
/// its set's `servers`; [`Upstream::server_id`] numbers it for the query
/// log), or why none came. A query that
/// waited for an identical one in flight gets that one's answer, and its
/// server.
pub type Answered = Result<(usize, Vec<u8>), Error>;

/// The caller of [`Upstream::send`]: the query to send, and what to do
/// with the answer (or the error) when it comes, on whichever task or
/// thread has it.
pub trait Reply: Send + 'static {
    /// The query, ready to go upstream; its ID is ours to set.
    fn query(&mut self) -> &mut [u8];
    /// Called once, with the answer (its ID is the one we set) or why none came.
    fn answer(self: Box<Self>, answer: Answered);
    /// Called at most once, when no answer came within
    /// [`Upstream::with_overdue`]'s delay: the caller may answer its client
    /// from elsewhere now (a stale copy: RFC 8767's client response timer).
    /// The query carries on, and [`Reply::answer`] still comes.
    fn overdue(&mut self) {}
}

/// What each reader task calls around one pass over its socket (the
/// answers one wake-up reads), so that the caller can gather the client
/// answers its replies send in the pass and send them together (the
/// server's client sink). Nothing by default.
#[derive(Debug, Clone, Copy)]
pub struct ReadPass {
    pub begin: fn(),
    pub end: fn(),
}

impl ReadPass {
    pub(super) const NONE: Self = Self {
        begin: || {},
        end: || {},
    };
}

/// Consecutive failures after which a server is skipped for a backoff.
pub const FAILS_TO_DOWN: u32 = 3;
/// The first backoff; each failed probe doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The most a server's smoothed round trip may read (µs): what a run of
/// failures pushes it to under `fastest`.
const MAX_SRTT_US: u64 = 60_000_000;
/// Under `fastest`, one query in this many goes first to another healthy
/// server, so that a server that got faster is noticed.
const EXPLORE_ONE_IN: u32 = 16;

/// The upstream resolvers, how to pick among them, and the queries in flight.
pub struct Upstream {
    servers: Box<[Server]>,
    strategy: Strategy,
    timeout: Duration,
    /// When a query's [`Reply::overdue`] is called, if at all.
    overdue: Option<Duration>,
    /// How long a failed question is remembered (`with_failure_ttl`), and
    /// what the reader tasks call around a pass: kept so that the
    /// `[[forward]]` sets ([`Sets`]) are built like this one.
    failure_ttl: Duration,
    pass: ReadPass,
    /// Each server's number in the process's [`ServerNames`] (its index
    /// until [`Upstream::with_names`]).
    ids: Box<[u16]>,
    /// Round-robin turn.
    turn: AtomicUsize,
    /// Health times are milliseconds since this instant.
    epoch: Instant,
    flights: Flights,
}

/// Its servers, as the config writes them.
impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<&str> = self.servers.iter().map(|s| &*s.label).collect();
        f.debug_struct("Upstream")
            .field("servers", &servers)
            .finish_non_exhaustive()
    }
}

/// One upstream and what we know of it.
struct Server {
    /// As written in the config, for logs and errors.
    label: Arc<str>,
    link: Link,
    health: Health,
}

/// The transport to one server, with its reusable state.
enum Link {
    Udp(udp::Pool),
    /// TCP: a few connections, kept and pipelined.
    Tcp(connections::Connections<tcp::Plain>),
    /// DoT: one reused connection.
    Dot(connections::Connections<tls::Dot>),
    /// DoH: one reused connection.
    Doh(connections::Connections<https::Doh>),
}

impl Upstream {
    /// Sockets and connections are made on first use, inside the runtime,
    /// so this can be called anywhere (tests build handlers without one).
    pub fn new(config: &UpstreamConfig) -> Self {
        let configs = secure::client_configs(&config.ca_certs);
        let servers = config
            .servers
            .iter()
            .map(|s| {
                let label: Arc<str> = s.to_string().into();
                let link = match &s.transport {
                    Transport::Udp => Link::Udp(udp::Pool::new(
                        s.addr,
                        config.udp_sockets,
                        label.clone(),
                        ReadPass::NONE,
                    )),
                    Transport::Tcp => Link::Tcp(connections::Connections::new(
                        s.addr,
                        tcp::Plain,
                        config.timeout,
                        tcp::LIMITS,
                    )),
                    Transport::Tls { server_name } => Link::Dot(connections::Connections::new(
                        s.addr,
                        tls::Dot {
                            tls: secure::Tls::new(server_name, configs.dot.clone()),
                        },
                        config.timeout,
                        tls::LIMITS,
                    )),
                    Transport::Https { path, server_name } => {
                        Link::Doh(connections::Connections::new(
                            s.addr,
                            https::Doh {
                                path: path.as_str().into(),
                                tls: secure::Tls::new(server_name, configs.doh.clone()),
                            },
                            config.timeout,
                            https::LIMITS,
                        ))
                    }
                };
                Server {
                    label,
                    link,
                    health: Health::default(),
                }
            })
            .collect();
        let ids = (0..config.servers.len())
            .map(|i| u16::try_from(i).unwrap_or(crate::observe::event::NO_UPSTREAM))
            .collect();
        Self {
            servers,
            strategy: config.strategy,
            timeout: config.timeout,
            overdue: None,
            failure_ttl: Duration::ZERO,
            pass: ReadPass::NONE,
            ids,
            turn: AtomicUsize::new(0),
            epoch: Instant::now(),
            flights: Flights::new(Duration::ZERO),
        }
    }

    /// Remembers a failed question (no answer, or SERVFAIL) for `ttl` and
    /// answers it the same way meanwhile without asking (`[cache]
    /// servfail_ttl`, RFC 9520); zero remembers none.
    pub fn with_failure_ttl(mut self, ttl: Duration) -> Self {
        self.flights = Flights::new(ttl);
        self.failure_ttl = ttl;
        self
    }

    /// Calls a query's [`Reply::overdue`] when no answer came within
    /// `after` (`[cache] stale_client_timeout_ms`); not at all when that
    /// is not before the deadline.
    pub fn with_overdue(mut self, after: Duration) -> Self {
        self.overdue = Some(after);
        self
    }

    /// What the reader tasks call around each pass over their socket.
    pub fn with_read_pass(mut self, pass: ReadPass) -> Self {
        self.pass = pass;
        for s in &mut self.servers {
            if let Link::Udp(pool) = &mut s.link {
                pool.set_read_pass(pass);
            }
        }
        self
    }

    /// Numbers each server in `names` (the query log names a server by
    /// its number).
    pub fn with_names(mut self, names: &ServerNames) -> Self {
        self.ids = self.servers.iter().map(|s| names.id(&s.label)).collect();
        self
    }

    /// The number of the server at `index` (as [`Answered`] gives it) in
    /// the [`ServerNames`] of [`Upstream::with_names`].
    pub fn server_id(&self, index: usize) -> u16 {
        self.ids
            .get(index)
            .copied()
            .unwrap_or(crate::observe::event::NO_UPSTREAM)
    }

    /// The overall deadline per query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Each server's counters and state, in config order (`/metrics`).
    pub fn stats(&self) -> Vec<UpstreamRow<'_>> {
        self.stats_of(None)
    }

    /// [`Upstream::stats`], labelled as the servers of `set`.
    pub fn stats_of<'a>(&'a self, set: Option<&'a str>) -> Vec<UpstreamRow<'a>> {
        let now = self.now_ms();
        self.servers
            .iter()
            .map(|s| UpstreamRow {
                name: &s.label,
                set,
                stats: &s.health.stats,
                up: s.health.down_until.load(Ordering::Relaxed) == 0,
                last_answer: s.health.answered_ago(now),
            })
            .collect()
    }

    /// Whether some server gave a valid answer within `window` (`/readyz`).
    pub fn answered_within(&self, window: Duration) -> bool {
        let now = self.now_ms();
        self.servers
            .iter()
            .filter_map(|s| s.health.answered_ago(now))
            .any(|ago| ago <= window)
    }

    /// Forwards `query` and returns the first valid answer, with the index
    /// of the server that gave it: [`Upstream::send`] for a task that
    /// awaits the answer. The ID is ours to set (each transport picks its
    /// own); the answer carries the ID that was sent, and the caller puts
    /// back its client's. Dropping the future does not stop the query: its
    /// answer still lands for the queries that joined it.
    pub async fn forward(self: &Arc<Self>, query: &[u8]) -> Answered {
        let (tx, rx) = oneshot::channel();
        self.send(Box::new(Awaited {
            query: query.to_vec(),
            tx,
        }));
        rx.await.unwrap_or(Err(Error::Busy))
    }

    /// Forwards the query of `reply` and calls it back with the answer, on
    /// whichever thread or task has it: the caller's thread sends the
    /// first attempt over UDP (queued for one `sendmmsg` inside
    /// [`Upstream::queue_on_this_thread`]), the socket's reader task
    /// answers. Must run inside the runtime's context.
    ///
    /// Identical questions in flight at once (same name in any case, type,
    /// class, flags and OPT, which the handler sets from DO and CD) share
    /// one upstream query: the first asks, the others wait for its answer.
    /// A question that failed lately gets that failure at once.
    pub fn send(self: &Arc<Self>, mut reply: Box<dyn Reply>) {
        let flight = FlightKey::of(reply.query());
        if let Some(key) = &flight {
            match self.flights.join(key, reply) {
                Joined::Lead(r) => reply = r,
                Joined::Waiting => return,
                Joined::Failed(r, answer) => return r.answer(answer),
            }
        }
        self.start_next(Box::new(Query::new(self.clone(), reply, flight)));
    }

    /// Starts the next attempt of `q`, or ends it when no server or time
    /// is left.
    fn start_next(&self, mut q: Box<Query>) {
        let Some(server) = q.next_attempt() else {
            return q.give_up();
        };
        match self.servers.get(server).map(|s| &s.link) {
            Some(Link::Udp(pool)) => pool.start(q),
            Some(_) => q.exchange_in_task(),
            None => q.give_up(),
        }
    }

    /// Makes the queries [`Upstream::send`] starts on this thread (a UDP
    /// worker) wait for [`Upstream::flush_queued`], so that those of one
    /// receive batch leave together, one `sendmmsg` per upstream socket.
    pub fn queue_on_this_thread() {
        udp::queue_on_this_thread();
    }

    /// Sends the queries this thread queued.
    pub fn flush_queued() {
        udp::flush_queued();
    }

    /// Milliseconds since `epoch`, never 0 (0 means "up" in [`Health`]).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// The servers to try, in order: the healthy ones (a down server whose
    /// backoff is over counts as healthy for the one query that probes it)
    /// ordered by the strategy; if none is healthy, every server in config
    /// order.
    fn order(&self) -> Vec<usize> {
        let now = self.now_ms();
        let probe_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut healthy: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.servers[i].health.available(now, probe_ms))
            .collect();
        if healthy.is_empty() {
            return (0..self.servers.len()).collect();
        }
        match self.strategy {
            Strategy::Failover => {}
            Strategy::RoundRobin => {
                let turn = self.turn.fetch_add(1, Ordering::Relaxed) % healthy.len();
                healthy.rotate_left(turn);
            }
            Strategy::Fastest => {
                // Unmeasured servers (0) sort first, so each gets measured.
                healthy.sort_by_key(|&i| self.servers[i].health.srtt_us.load(Ordering::Relaxed));
                if healthy.len() > 1 && fastrand::u32(..EXPLORE_ONE_IN) == 0 {
                    let other = fastrand::usize(1..healthy.len());
                    healthy.swap(0, other);
                }
            }
        }
        healthy
    }
}

/// The reply of [`Upstream::forward`]: the answer goes to the awaiting task.
struct Awaited {
    query: Vec<u8>,
    tx: oneshot::Sender<Answered>,
}

impl Reply for Awaited {
    fn query(&mut self) -> &mut [u8] {
        &mut self.query
    }

    fn answer(self: Box<Self>, answer: Answered) {
        let _ = self.tx.send(answer);
    }
}

impl Server {
    /// One exchange in a task, until `until`: a TCP, DoT or DoH server, or
    /// a UDP server's TCP retry after a truncated answer.
    async fn exchange(&self, query: &mut [u8], until: Instant) -> Result<Vec<u8>, Error> {
        match &self.link {
            Link::Udp(pool) => tcp::exchange(pool.server(), query, until, &self.label).await,
            Link::Tcp(conns) => conns.exchange(query, until, &self.label).await,
            Link::Dot(conn) => conn.exchange(query, until, &self.label).await,
            Link::Doh(conn) => conn.exchange(query, until, &self.label).await,
        }
    }
}

/// What the recent past says about one server. Atomics, so that choosing a
/// server takes no lock.
struct Health {
    /// Answers, errors and latency, for `/metrics`: counted here because
    /// every attempt on either forward path ends in `success` or `failure`.
    stats: UpstreamStats,
    /// When it last answered (ms since the upstream's epoch); 0: never.
    last_answer: AtomicU64,
    /// Failures in a row.
    fails: AtomicU32,
    /// Skipped until this time (ms since the upstream's epoch); 0 when up.
    down_until: AtomicU64,
    /// The next backoff, in ms.
    backoff_ms: AtomicU64,
    /// Smoothed round-trip time, µs (0: not measured yet).
    srtt_us: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            stats: UpstreamStats::default(),
            last_answer: AtomicU64::new(0),
            fails: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(ms(FIRST_BACKOFF)),
            srtt_us: AtomicU64::new(0),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Health {
    /// How long ago (now: ms since the upstream's epoch) it last answered.
    fn answered_ago(&self, now: u64) -> Option<Duration> {
        let at = self.last_answer.load(Ordering::Relaxed);
        (at != 0).then(|| Duration::from_millis(now.saturating_sub(at)))
    }

    /// Up, or down with its backoff over and this query the one that
    /// probes it: the probe pushes `down_until` on by one query timeout, so
    /// concurrent queries do not all probe a server that may be dead.
    fn available(&self, now: u64, probe_ms: u64) -> bool {
        let until = self.down_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        now >= until
            && self
                .down_until
                .compare_exchange(until, now + probe_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn success(&self, took: Duration, now: u64, label: &str) {
        self.stats.record_answer(took);
        self.last_answer.store(now, Ordering::Relaxed);
        let rtt = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.srtt_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            rtt
        } else {
            old.saturating_mul(7).saturating_add(rtt) / 8
        };
        self.srtt_us.store(new.max(1), Ordering::Relaxed);
        // Write the shared flags only when they change.
        if self.fails.load(Ordering::Relaxed) != 0 {
            self.fails.store(0, Ordering::Relaxed);
        }
        if self.down_until.swap(0, Ordering::Relaxed) != 0 {
            self.backoff_ms.store(ms(FIRST_BACKOFF), Ordering::Relaxed);
            tracing::info!(upstream = %label, "upstream answers again");
        }
    }

    fn failure(&self, spent: Duration, now: u64, label: &str) {
        self.stats.record_error();
        // A failure counts as at least the time it took, so `fastest`
        // moves away from a server that times out before it is marked down.
        let spent = u64::try_from(spent.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.srtt_us.load(Ordering::Relaxed);
        // Doubled per failure, but bounded: a long outage must neither
        // overflow the next success's average nor take hours to forget.
        self.srtt_us.store(
            old.max(spent).saturating_mul(2).min(MAX_SRTT_US),
            Ordering::Relaxed,
        );
        let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
        let was_down = self.down_until.load(Ordering::Relaxed) != 0;
        if was_down || fails >= FAILS_TO_DOWN {
            let backoff = self.backoff_ms.load(Ordering::Relaxed);
            self.down_until.store(now + backoff, Ordering::Relaxed);
            self.backoff_ms
                .store((backoff * 2).min(ms(MAX_BACKOFF)), Ordering::Relaxed);
            if !was_down || fails == FAILS_TO_DOWN {
                tracing::warn!(upstream = %label, fails, backoff_ms = backoff, "upstream failing: skipped until it is probed again");
            }
        }
    }
}

/// True when `resp` answers `query`: same ID, QR set, same question (names
/// compared case-insensitively, since some servers change case). RFC 5452
/// section 9.1: an answer that fails this is ignored, not believed.
fn answers(query: &[u8], resp: &[u8]) -> bool {
    let (Some(q), Some(r)) = (Header::parse(query), Header::parse(resp)) else {
        return false;
    };
    q.id == r.id && r.is_response() && same_question(query, resp)
}

/// [`answers`] without the ID (the transports that pick their own ID
/// check it themselves): QR set, and the same question. The `response`
/// fuzz target takes upstream answers through the same check.
pub(crate) fn same_question(query: &[u8], resp: &[u8]) -> bool {
    let Some(r) = Header::parse(resp) else {
        return false;
    };
    // DoT and DoH match by ID alone: a message with QR clear would reach
    // the client, which would read it as a query.
    if !r.is_response() {
        return false;
    }
    match r.qdcount {
        // Only a server that could not read the question (FORMERR) or does
        // not serve the opcode (NOTIMP) may leave it out; any other RCODE
        // (an NXDOMAIN) without it could answer any query.
        0 => return matches!(r.rcode(), 1 | 4),
        1 => {}
        // RFC 9619: one question, in the answer as in the query (BIND
        // refuses more too); a UDP client would get it cut to the first.
        _ => return false,
    }
    let Some(end) = question_end(query) else {
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

/// Where the (single) question of `query` ends.
fn question_end(query: &[u8]) -> Option<usize> {
    let end = wire::skip_name(query, wire::HEADER_LEN)? + 4;
    (end <= query.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], id: u16, flags: [u8; 2], opt_do: Option<bool>) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&flags);
        q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt_do.is_some())]);
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        if let Some(d) = opt_do {
            wire::push_opt(&mut q, 0, d, &[]);
        }
        q
    }

    #[test]
    fn answers_need_the_id_qr_and_the_same_question() {
        let q = query(b"\x03www\x07example\x00", 7, [1, 0], None);
        let mut r = q.clone();
        r[2] |= 0x80;
        assert!(answers(&q, &r));
        let mut upper = r.clone();
        upper[13] = b'W';
        assert!(answers(&q, &upper), "case may differ");
        let mut other_id = r.clone();
        other_id[1] = 8;
        assert!(!answers(&q, &other_id));
        let mut other_name = r.clone();
        other_name[14] = b'x';
        assert!(!answers(&q, &other_name));
        assert!(!answers(&q, &q), "a query is not an answer");
    }

    /// Issue 16: an answer without a question is believed only when it
    /// says the question could not be read (FORMERR) or the opcode is not
    /// served (NOTIMP); never an NXDOMAIN, SERVFAIL or REFUSED.
    #[test]
    fn r16_only_formerr_and_notimp_may_omit_the_question() {
        let q = query(b"\x03www\x07example\x00", 7, [1, 0], None);
        for rcode in 0..16u8 {
            let mut r = q[..wire::HEADER_LEN].to_vec();
            r[2] |= 0x80;
            r[3] = rcode;
            r[5] = 0;
            assert_eq!(answers(&q, &r), matches!(rcode, 1 | 4), "rcode {rcode}");
        }
    }

    /// Found by the `response` fuzz target: DoT and DoH (hickory's
    /// exchange matches by ID alone) took `same_question` for the whole
    /// check, and an upstream's message with QR clear reached the client,
    /// which reads it as a query.
    #[test]
    fn r16_a_message_with_qr_clear_answers_nothing() {
        let q = query(b"\x03www\x07example\x00", 7, [1, 0], None);
        assert!(!same_question(&q, &q));
        let mut formerr = q[..wire::HEADER_LEN].to_vec();
        formerr[3] = 1;
        formerr[5] = 0;
        assert!(!same_question(&q, &formerr), "FORMERR without QR");
        formerr[2] |= 0x80;
        assert!(same_question(&q, &formerr));
    }

    /// Found by the `response` fuzz target: an answer with a second
    /// question after ours was taken, and cut for a UDP client to the first
    /// one, it still said two: the client could not read it. RFC 9619: a
    /// QUERY and its answer carry one question (BIND refuses more too).
    #[test]
    fn r16_an_answer_with_two_questions_answers_nothing() {
        let q = query(b"\x03www\x07example\x00", 7, [1, 0], None);
        let mut two = q.clone();
        two[2] |= 0x80;
        two[5] = 2;
        two.extend_from_slice(b"\x05other\x07example\x00\x00\x01\x00\x01");
        assert!(!answers(&q, &two));
        two[5] = 1;
        assert!(answers(&q, &two[..q.len()]));
    }

    fn upstream(strategy: Strategy, n: usize) -> Upstream {
        let servers = (0..n)
            .map(|i| crate::config::UpstreamServer {
                addr: std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    5300 + u16::try_from(i).expect("small"),
                )),
                transport: Transport::Udp,
            })
            .collect();
        Upstream::new(&UpstreamConfig {
            servers,
            strategy,
            ..UpstreamConfig::default()
        })
    }

    #[test]
    fn fastest_orders_by_round_trip_and_explores_one_query_in_sixteen() {
        let u = upstream(Strategy::Fastest, 3);
        for (i, rtt) in [(0, 900), (1, 100), (2, 500)] {
            u.servers[i].health.srtt_us.store(rtt, Ordering::Relaxed);
        }
        let mut explored = 0;
        for _ in 0..3200 {
            let order = u.order();
            assert_eq!(order.len(), 3);
            if order[0] == 1 {
                assert_eq!(order, [1, 2, 0], "by round-trip time");
            } else {
                explored += 1;
            }
        }
        // 3200 / 16 = 200 expected.
        assert!((120..300).contains(&explored), "explored {explored} times");
    }

    #[test]
    fn down_servers_are_skipped_unless_all_are_down() {
        let u = upstream(Strategy::RoundRobin, 3);
        let firsts: Vec<usize> = (0..6).map(|_| u.order()[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        let now = u.now_ms();
        u.servers[1]
            .health
            .down_until
            .store(now + 60_000, Ordering::Relaxed);
        for _ in 0..4 {
            assert!(!u.order().contains(&1));
        }
        for s in &u.servers[..] {
            s.health.down_until.store(now + 60_000, Ordering::Relaxed);
        }
        assert_eq!(u.order(), [0, 1, 2], "all down: all tried, in config order");
    }

    #[test]
    fn health_goes_down_after_failures_and_backs_off() {
        let h = Health::default();
        let t = 1000;
        for _ in 0..FAILS_TO_DOWN - 1 {
            h.failure(Duration::from_millis(5), t, "x");
            assert!(h.available(t, 100));
        }
        h.failure(Duration::from_millis(5), t, "x");
        assert!(!h.available(t + 999, 100), "down for 1 s");
        assert!(h.available(t + 1000, 100), "probed after 1 s");
        assert!(!h.available(t + 1001, 100), "one probe at a time");
        h.failure(Duration::from_millis(5), t + 1050, "x");
        assert!(!h.available(t + 1050 + 1999, 100), "backoff doubled");
        assert!(h.available(t + 1050 + 2000, 100));
        h.success(Duration::from_millis(5), t + 3100, "x");
        assert!(h.available(t + 3100, 100));
        assert_eq!(h.backoff_ms.load(Ordering::Relaxed), 1000, "backoff reset");
    }

    /// A long outage doubled the round-trip estimate past what the next
    /// success's average could hold: `old * 7` overflowed (a panic in a
    /// debug build, a garbage order in release).
    #[test]
    fn r16_a_long_outage_neither_overflows_the_estimate_nor_keeps_it_forever() {
        let h = Health::default();
        for i in 0..1000 {
            h.failure(Duration::from_secs(1), 1000 + i, "x");
        }
        assert_eq!(h.srtt_us.load(Ordering::Relaxed), MAX_SRTT_US);
        h.success(Duration::from_millis(5), 5000, "x");
        let after = h.srtt_us.load(Ordering::Relaxed);
        assert!(after < MAX_SRTT_US && after > 0, "{after}");
    }
}
