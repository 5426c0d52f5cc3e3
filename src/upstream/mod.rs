//! Sends a query to the upstream resolvers and brings back their answer,
//! bytes untouched, so rcodes, sections, CNAME chains and EDNS options pass
//! through faithfully.
//!
//! ```text
//!  forward(query) ─► coalesce: the same question already in flight? wait for its answer
//!                 └► order the servers (strategy, health) ─► try each until one answers
//!                        udp.rs   pooled sockets, random ports and IDs (RFC 5452); TC → tcp.rs
//!                        tcp.rs   one connection per query
//!                        tls.rs   DNS over TLS (RFC 7858), one pipelined connection, reused
//!                        https.rs DNS over HTTPS (RFC 8484), HTTP/2, one connection, reused
//! ```
//!
//! Two ways in: [`Upstream::forward`], awaited by a task (TCP clients, and
//! upstreams other than plain UDP), and [`Upstream::send`], the UDP fast
//! path: the server's UDP worker thread sends the query itself and the
//! upstream socket's reader task answers the client, so a forwarded query
//! costs no task, no wake-up of one, and no hop between threads. A first
//! attempt that fails (timeout, error, truncation) carries on in a task with
//! the same deadline, so both ways behave alike.
//!
//! Every answer is checked against the question asked (ID, QR, question
//! compared case-insensitively) before it is believed. Servers are tried
//! within one overall deadline (`timeout_ms`), each attempt getting its share
//! of what is left, so the client always hears back (SERVFAIL at worst) in
//! time. A server that fails [`FAILS_TO_DOWN`] times in a row is skipped for
//! a backoff (1 s, doubling to 60 s); the first query after the backoff
//! probes it. When every server is down they are all tried anyway: a
//! SERVFAIL is never given without asking.

mod https;
mod mmsg;
mod tcp;
mod tls;
mod udp;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::{Strategy, Transport, UpstreamConfig};
use crate::observe::metrics::{UpstreamRow, UpstreamStats};
use crate::wire::{self, Header};
pub use mmsg::send_answer;

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
    #[error("upstream {server}: {reason}")]
    Secure { server: Arc<str>, reason: String },
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
            Self::Malformed { .. } | Self::Unparsable => "upstream answer malformed",
            Self::Busy => "too many queries in flight",
        }
    }

    fn io(server: &Arc<str>, source: std::io::Error) -> Self {
        Self::Io {
            server: server.clone(),
            source: Arc::new(source),
        }
    }
}

/// An upstream's answer with the index of the server that gave it (in
/// `[upstream] servers`, for the query log), or why none came. A query that
/// waited for an identical one in flight gets that one's answer, and its
/// server.
pub type Answered = Result<(usize, Vec<u8>), Error>;

/// The task-free path's caller: the query to send, and what to do with
/// the answer (or the error) when it comes, on whichever task has it.
pub trait Reply: Send + 'static {
    /// The query, ready to go upstream; its ID is ours to set.
    fn query(&mut self) -> &mut [u8];
    /// Called once, with the answer (its ID is the one we set) or why none came.
    fn answer(self: Box<Self>, answer: Answered);
}

/// Consecutive failures after which a server is skipped for a backoff.
pub const FAILS_TO_DOWN: u32 = 3;
/// The first backoff; each failed probe doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Under `fastest`, one query in this many goes first to another healthy
/// server, so that a server that got faster is noticed.
const EXPLORE_ONE_IN: u32 = 16;

/// The upstream resolvers, how to pick among them, and the queries in flight.
pub struct Upstream {
    servers: Box<[Server]>,
    strategy: Strategy,
    timeout: Duration,
    /// Round-robin turn.
    turn: AtomicUsize,
    /// Health times are milliseconds since this instant.
    epoch: Instant,
    flights: Flights,
    /// Every server is plain UDP: [`Upstream::send`] can take every query.
    udp_only: bool,
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
    Tcp(SocketAddr),
    /// DoT or DoH: one reused connection.
    Secure(tls::Connection),
}

impl Upstream {
    /// Sockets and connections are made on first use, inside the runtime,
    /// so this can be called anywhere (tests build handlers without one).
    pub fn new(config: &UpstreamConfig) -> Self {
        let tls = tls::client_configs(&config.ca_certs);
        let servers = config
            .servers
            .iter()
            .map(|s| {
                let label: Arc<str> = s.to_string().into();
                let link = match &s.transport {
                    Transport::Udp => {
                        Link::Udp(udp::Pool::new(s.addr, config.udp_sockets, label.clone()))
                    }
                    Transport::Tcp => Link::Tcp(s.addr),
                    Transport::Tls { server_name } => Link::Secure(tls::Connection::new(
                        s.addr,
                        tls::Protocol::Dot,
                        server_name,
                        tls.dot.clone(),
                        config.timeout,
                    )),
                    Transport::Https { path, server_name } => Link::Secure(tls::Connection::new(
                        s.addr,
                        tls::Protocol::Doh {
                            path: path.as_str().into(),
                        },
                        server_name,
                        tls.doh.clone(),
                        config.timeout,
                    )),
                };
                Server {
                    label,
                    link,
                    health: Health::default(),
                }
            })
            .collect();
        let udp_only = !config.servers.is_empty()
            && config.servers.iter().all(|s| s.transport == Transport::Udp);
        Self {
            udp_only,
            servers,
            strategy: config.strategy,
            timeout: config.timeout,
            turn: AtomicUsize::new(0),
            epoch: Instant::now(),
            flights: Flights::new(),
        }
    }

    /// The overall deadline per query.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Each server's counters and state, in config order (`/metrics`).
    pub fn stats(&self) -> Vec<UpstreamRow<'_>> {
        let now = self.now_ms();
        self.servers
            .iter()
            .map(|s| UpstreamRow {
                name: &s.label,
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
    /// of the server that gave it. The ID is ours
    /// to set (each transport picks its own); the answer carries the ID that
    /// was sent, and the caller puts back its client's.
    ///
    /// Identical questions in flight at once (same name in any case, type,
    /// class, flags and OPT, which the handler sets from DO and CD) share one
    /// upstream query: the first asks, the others wait for its answer.
    pub async fn forward(&self, query: &mut [u8]) -> Answered {
        let Some(key) = FlightKey::of(query) else {
            return self.resolve(query).await;
        };
        let follower = match self.flights.join(&key) {
            Joined::Leader(guard) => {
                let result = self.resolve(query).await;
                guard.land(&result);
                return result;
            }
            Joined::Follower(rx) => rx,
        };
        // A little longer than the leader's own deadline, which always
        // answers or fails by then; if the leader vanished, ask ourselves.
        match tokio::time::timeout(self.timeout + Duration::from_millis(50), follower).await {
            Ok(Ok(result)) => result,
            _ => self.resolve(query).await,
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

    /// True when [`Upstream::send`] may be used: every server is plain UDP.
    pub fn udp_only(&self) -> bool {
        self.udp_only
    }

    /// Forwards without a task of its own (the caller's thread sends, the
    /// socket's reader task answers): the UDP fast path. Same behaviour as
    /// [`Upstream::forward`]: coalescing, strategy, health, failover (the
    /// first attempt goes out from here; if it fails, a task tries the
    /// others within what is left of the deadline), TCP on truncation.
    /// Only for [`Upstream::udp_only`] upstreams; must run inside the
    /// runtime's context.
    pub fn send(self: &Arc<Self>, mut reply: Box<dyn Reply>) {
        let mut flight = None;
        if let Some(key) = FlightKey::of(reply.query()) {
            match self.flights.join_reply(&key, reply) {
                Some(r) => {
                    reply = r;
                    flight = Some(key);
                }
                None => return,
            }
        }
        let started = Instant::now();
        let deadline = started + self.timeout;
        let order = self.order();
        let fast = Box::new(Fast {
            upstream: self.clone(),
            reply,
            flight,
            deadline,
            server: order.first().copied().unwrap_or(0),
            started,
            attempt: started + self.timeout / u32::try_from(order.len().max(1)).unwrap_or(1),
            resend: Some(
                started + self.timeout / u32::try_from(2 * order.len().max(1)).unwrap_or(2),
            ),
        });
        match self.servers.get(fast.server).map(|s| &s.link) {
            Some(Link::Udp(pool)) => pool.start(fast),
            Some(_) => fast.retry(),
            None => fast.finish(Err(Error::NoServers)),
        }
    }

    /// Tries the servers in the order the strategy and health give, each
    /// attempt with a share of the time left.
    async fn resolve(&self, query: &mut [u8]) -> Answered {
        self.resolve_until(query, Instant::now() + self.timeout, None, Error::NoServers)
            .await
    }

    /// [`Upstream::resolve`] until `deadline`, leaving out server `skip`
    /// (just tried), with `last` as the error if nothing is left to try.
    async fn resolve_until(
        &self,
        query: &mut [u8],
        deadline: Instant,
        skip: Option<usize>,
        mut last: Error,
    ) -> Answered {
        let mut order = self.order();
        if let Some(skip) = skip {
            order.retain(|&s| s != skip);
        }
        let n = order.len();
        for (i, &s) in order.iter().enumerate() {
            let Some(server) = self.servers.get(s) else {
                continue;
            };
            let start = Instant::now();
            let left = deadline.saturating_duration_since(start);
            if left.is_zero() {
                break;
            }
            // Share what is left among the servers not yet tried.
            let attempt = start + left / u32::try_from(n - i).unwrap_or(1);
            match server.exchange(query, attempt, deadline).await {
                Ok(resp) => {
                    server
                        .health
                        .success(start.elapsed(), self.now_ms(), &server.label);
                    return Ok((s, resp));
                }
                Err(e) => {
                    tracing::debug!(upstream = %server.label, error = %e, "upstream attempt failed");
                    server
                        .health
                        .failure(start.elapsed(), self.now_ms(), &server.label);
                    last = e;
                }
            }
        }
        Err(last)
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

impl Server {
    /// One attempt: `attempt` bounds this server's share, `overall` the
    /// whole query (a TCP retry after a truncated UDP answer may use it).
    async fn exchange(
        &self,
        query: &mut [u8],
        attempt: Instant,
        overall: Instant,
    ) -> Result<Vec<u8>, Error> {
        match &self.link {
            Link::Udp(pool) => {
                let resp = pool.exchange(query, attempt, &self.label).await?;
                if Header::parse(&resp).is_some_and(|h| h.truncated()) {
                    tcp::exchange(pool.server(), query, overall, &self.label).await
                } else {
                    Ok(resp)
                }
            }
            Link::Tcp(addr) => tcp::exchange(*addr, query, attempt, &self.label).await,
            Link::Secure(conn) => conn.exchange(query, attempt, &self.label).await,
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
        let new = if old == 0 { rtt } else { (old * 7 + rtt) / 8 };
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
        self.srtt_us
            .store(old.max(spent).saturating_mul(2), Ordering::Relaxed);
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

/// Identical questions in flight, each with the clients waiting for it.
/// Sharded so that concurrent forwards rarely meet on one lock.
struct Flights {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

/// A query waiting for another's answer: a task, or a fast-path reply.
enum Waiter {
    Task(oneshot::Sender<Answered>),
    Reply(Box<dyn Reply>),
}

impl Waiter {
    fn land(self, result: &Answered) {
        match self {
            Self::Task(tx) => {
                let _ = tx.send(result.clone());
            }
            Self::Reply(r) => r.answer(result.clone()),
        }
    }
}
type Shard = Mutex<HashMap<Box<[u8]>, Vec<Waiter>>>;

const FLIGHT_SHARDS: usize = 16;

/// Up to 255 bytes of name, type, class, two flag bytes and our OPT record.
const MAX_FLIGHT_KEY: usize = 255 + 4 + 2 + 11;

/// The coalescing key of a query: the question with its name lowercased,
/// the opcode, RD, AD and CD bits, and the rest of the query verbatim (the
/// handler's own OPT record, which carries DO).
struct FlightKey {
    buf: [u8; MAX_FLIGHT_KEY],
    len: usize,
}

impl FlightKey {
    fn of(query: &[u8]) -> Option<Self> {
        let name_end = wire::skip_name(query, wire::HEADER_LEN)?;
        let rest = query.get(name_end..)?;
        let name = query.get(wire::HEADER_LEN..name_end)?;
        let len = name.len() + rest.len() + 2;
        if len > MAX_FLIGHT_KEY || rest.len() < 4 {
            return None;
        }
        let mut buf = [0u8; MAX_FLIGHT_KEY];
        // Length bytes are below 64, so lowercasing only touches letters.
        for (d, s) in buf.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        buf[name.len()..name.len() + rest.len()].copy_from_slice(rest);
        let flags = [query.get(2)? & 0x79, query.get(3)? & 0x30];
        buf[len - 2..len].copy_from_slice(&flags);
        Some(Self { buf, len })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

enum Joined<'a> {
    /// Ask upstream, then [`FlightGuard::land`] the answer for the others.
    Leader(FlightGuard<'a>),
    /// Another query asks: wait for its answer.
    Follower(oneshot::Receiver<Answered>),
}

impl Flights {
    fn new() -> Self {
        Self {
            shards: (0..FLIGHT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &[u8]) -> &Shard {
        let i = usize::try_from(self.hasher.hash_one(key)).unwrap_or(0) % self.shards.len();
        &self.shards[i]
    }

    fn join<'a>(&'a self, key: &'a FlightKey) -> Joined<'a> {
        let shard = self.shard(key.as_bytes());
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(waiters) = map.get_mut(key.as_bytes()) {
            let (tx, rx) = oneshot::channel();
            waiters.push(Waiter::Task(tx));
            return Joined::Follower(rx);
        }
        map.insert(key.as_bytes().into(), Vec::new());
        drop(map);
        Joined::Leader(FlightGuard {
            shard,
            key,
            landed: false,
        })
    }
}

impl Flights {
    /// [`Flights::join`] for the fast path: `reply` waits in the flight
    /// (None), or comes back to lead it (the caller then owes a
    /// [`Flights::land`] with the same key).
    fn join_reply(&self, key: &FlightKey, reply: Box<dyn Reply>) -> Option<Box<dyn Reply>> {
        let mut map = self
            .shard(key.as_bytes())
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(waiters) = map.get_mut(key.as_bytes()) {
            waiters.push(Waiter::Reply(reply));
            return None;
        }
        map.insert(key.as_bytes().into(), Vec::new());
        Some(reply)
    }

    /// Ends the flight of `key`, handing a copy of `result` to every waiter.
    fn land(&self, key: &FlightKey, result: &Answered) {
        let waiters = self
            .shard(key.as_bytes())
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key.as_bytes())
            .unwrap_or_default();
        for w in waiters {
            w.land(result);
        }
    }
}

/// A query on the fast path: sent from the caller's thread, answered by the
/// socket's reader task, or carried on by a task of its own when the first
/// attempt fails.
pub(crate) struct Fast {
    upstream: Arc<Upstream>,
    reply: Box<dyn Reply>,
    /// The flight this query leads, if it was coalescable.
    flight: Option<FlightKey>,
    deadline: Instant,
    /// The server of the first attempt, and when it started and ends.
    server: usize,
    started: Instant,
    attempt: Instant,
    /// When to send the query once more if no answer came (then None).
    resend: Option<Instant>,
}

impl Fast {
    fn label(&self) -> Arc<str> {
        self.upstream
            .servers
            .get(self.server)
            .map_or_else(|| "?".into(), |s| s.label.clone())
    }

    /// Answers the client and every follower.
    fn finish(self: Box<Self>, result: Answered) {
        let Self {
            upstream,
            reply,
            flight,
            ..
        } = *self;
        if let Some(key) = &flight {
            upstream.flights.land(key, &result);
        }
        reply.answer(result);
    }

    /// The first attempt got `resp`.
    fn answered(self: Box<Self>, resp: Vec<u8>) {
        let upstream = self.upstream.clone();
        if let Some(s) = upstream.servers.get(self.server) {
            s.health
                .success(self.started.elapsed(), upstream.now_ms(), &s.label);
        }
        let server = self.server;
        if !Header::parse(&resp).is_some_and(|h| h.truncated()) {
            return self.finish(Ok((server, resp)));
        }
        // Truncated: the whole answer over TCP, from a task.
        let Some(Link::Udp(pool)) = upstream.servers.get(server).map(|s| &s.link) else {
            return self.finish(Ok((server, resp)));
        };
        let addr = pool.server();
        let label = self.label();
        let mut fast = self;
        tokio::spawn(async move {
            let deadline = fast.deadline;
            let result = tcp::exchange(addr, fast.reply.query(), deadline, &label).await;
            fast.finish(result.map(|resp| (server, resp)));
        });
    }

    /// The first attempt failed (timeout, unreachable): counts against the
    /// server, then a task tries the others within what is left.
    fn failed(self: Box<Self>, error: Error) {
        if let Some(s) = self.upstream.servers.get(self.server) {
            tracing::debug!(upstream = %s.label, error = %error, "upstream attempt failed");
            s.health
                .failure(self.started.elapsed(), self.upstream.now_ms(), &s.label);
        }
        let skip = Some(self.server);
        self.carry_on(skip, error);
    }

    /// The first attempt could not be sent from here (a full socket
    /// buffer): a task does it all, this server included.
    fn retry(self: Box<Self>) {
        self.carry_on(None, Error::Busy);
    }

    fn carry_on(self: Box<Self>, skip: Option<usize>, last: Error) {
        let mut fast = self;
        tokio::spawn(async move {
            let upstream = fast.upstream.clone();
            let deadline = fast.deadline;
            let result = upstream
                .resolve_until(fast.reply.query(), deadline, skip, last)
                .await;
            fast.finish(result);
        });
    }
}

/// The leader's claim on a flight. Dropped without landing (the leader's
/// future was cancelled), it still removes the flight; the followers then see
/// their channel close and ask upstream themselves.
struct FlightGuard<'a> {
    shard: &'a Shard,
    key: &'a FlightKey,
    landed: bool,
}

impl FlightGuard<'_> {
    fn take(&self) -> Vec<Waiter> {
        let mut map = self.shard.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(self.key.as_bytes()).unwrap_or_default()
    }

    /// Hands a copy of the result to every follower.
    fn land(mut self, result: &Answered) {
        self.landed = true;
        for w in self.take() {
            w.land(result);
        }
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if !self.landed {
            // Waiting tasks see their channel close and ask upstream
            // themselves; a fast-path reply cannot wait, so it is told.
            for w in self.take() {
                if let Waiter::Reply(r) = w {
                    r.answer(Err(Error::Busy));
                }
            }
        }
    }
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
    fn flight_keys_ignore_case_and_id_but_not_type_do_or_cd() {
        let a = query(b"\x03www\x07example\x00", 1, [1, 0], Some(false));
        let b = query(b"\x03WwW\x07EXAMPLE\x00", 2, [1, 0], Some(false));
        let key = |q: &[u8]| FlightKey::of(q).expect("key").as_bytes().to_vec();
        assert_eq!(key(&a), key(&b));
        assert_ne!(
            key(&a),
            key(&query(b"\x03www\x07example\x00", 1, [1, 0], Some(true))),
            "DO"
        );
        assert_ne!(
            key(&a),
            key(&query(b"\x03www\x07example\x00", 1, [1, 0x10], Some(false))),
            "CD"
        );
        assert_ne!(
            key(&a),
            key(&query(b"\x03www\x07example\x00", 1, [1, 0], None)),
            "EDNS"
        );
        let mut aaaa = a.clone();
        let t = aaaa.len() - 11 - 3;
        aaaa[t] = 28;
        assert_ne!(key(&a), key(&aaaa), "type");
        // Type 65 (HTTPS) is an 'A' byte: only the name is lowercased.
        let mut t65 = a.clone();
        t65[t] = 65;
        let mut t97 = a.clone();
        t97[t] = 97;
        assert_ne!(key(&t65), key(&t97));
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
                addr: SocketAddr::from(([127, 0, 0, 1], 5300 + u16::try_from(i).expect("small"))),
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
}
