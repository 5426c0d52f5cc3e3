//! Counters, and the Prometheus text they become at scrape time.
//!
//! The hot path writes only its own [`WorkerStats`] block, which it reaches
//! through its [`Recorder`](super::Recorder): a UDP worker owns one (plain
//! load + store, no locked instruction, no cache line shared with another
//! core), the TCP tasks share one (`fetch_add`: TCP is a slower path).
//! Nothing is summed until `/metrics` is scraped, when [`render`] adds the
//! blocks up and reads what else is known (the snapshot's lists, the cache,
//! the upstreams' own counters, the reloads, the observer's drops and the
//! hit report's evictions).
//!
//! Blocks per list are counted by the list's [`ListSlot`], the number the
//! process gives each list name the first time it sees it and never
//! changes: a reload builds new `ListInfo`s but the same names keep their
//! slots, so their counts go on. The first [`MAX_LIST_SLOTS`] slots are
//! counted; a process that has seen more list names than that (renamed
//! lists, reload after reload) leaves the newer ones uncounted until a
//! restart, and says so once.
//!
//! The text format is written here by hand (Prometheus text exposition
//! 0.0.4): the `prometheus-client` crate writes OpenMetrics only, which
//! `promtool check metrics` reads as a different format, and its collector
//! API would still leave the summing to us. [`Text`] is the few lines the
//! format needs: HELP, TYPE, samples with escaped label values.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::hits::ListSummary;
use crate::access::AccessAction;
use crate::state::{ListSlot, Snapshot};

/// What became of a query, for `embargo_queries_total{decision}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answered from a list's policy.
    Blocked,
    /// Sent upstream (a cache miss).
    Forwarded,
    /// Answered from the cache.
    Cached,
    /// Answered REFUSED by the server's own rule (zone transfers).
    Refused,
    /// Dropped or truncated by the rate limiter.
    Limited,
    /// Malformed or unsupported: FORMERR, NOTIMP, BADVERS, or dropped.
    Error,
    /// Answered from the local names (records, hosts files, local zones).
    Local,
}

/// The label values of [`Decision`], in its order.
pub const DECISIONS: [&str; 7] = [
    "blocked",
    "forwarded",
    "cached",
    "refused",
    "limited",
    "error",
    "local",
];

/// What answer inspection matched in a block it found, for
/// `embargo_blocked_answers_total{via}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A listed name in the answer's CNAME (or DNAME) chain.
    Cname,
    /// An answer's address in a listed network (response-IP blocking).
    Ip,
}

/// The label values of [`Via`], in its order.
pub const VIAS: [&str; 2] = ["cname", "ip"];

/// The label values of the transport, in `server::Proto`'s order.
pub const PROTOS: [&str; 5] = ["udp", "tcp", "dot", "doh", "doq"];

/// Query types counted by name; every other one is `other`.
pub const TYPES: [(&str, u16); 12] = [
    ("A", 1),
    ("AAAA", 28),
    ("CNAME", 5),
    ("MX", 15),
    ("TXT", 16),
    ("PTR", 12),
    ("SRV", 33),
    ("SOA", 6),
    ("NS", 2),
    ("HTTPS", 65),
    ("SVCB", 64),
    ("ANY", 255),
];
const OTHER_TYPE: usize = TYPES.len();

/// The index of a query type in [`TYPES`], or [`OTHER_TYPE`].
#[inline]
fn type_index(qtype: u16) -> usize {
    match qtype {
        1 => 0,
        28 => 1,
        5 => 2,
        15 => 3,
        16 => 4,
        12 => 5,
        33 => 6,
        6 => 7,
        2 => 8,
        65 => 9,
        64 => 10,
        255 => 11,
        _ => OTHER_TYPE,
    }
}

/// List slots counted per worker. The config allows 1000 lists; a
/// long-lived process whose lists are renamed now and then has room for as
/// many names again.
pub const MAX_LIST_SLOTS: usize = 2048;

/// Whether the "more list names than counters" warning was given.
static WARNED_SLOTS: AtomicBool = AtomicBool::new(false);

/// The counters of one UDP worker (or of all TCP tasks together).
///
/// The block is aligned to 128 bytes (x86 prefetches lines in pairs), so
/// no other block's counters share its cache lines, and every counter is
/// an array slot, so counting is an add at a fixed offset.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Answers the worker sent from its own batches: blocked, cached, errors.
    pub answered: AtomicU64,
    /// Queries it handed to the runtime to forward upstream (each of which
    /// is answered from there, SERVFAIL at worst).
    pub forwarded: AtomicU64,
    /// Written by many threads (`fetch_add`) rather than by its owner alone.
    shared: bool,
    /// By transport, query type and decision.
    queries: [[[AtomicU64; DECISIONS.len()]; TYPES.len() + 1]; PROTOS.len()],
    /// Clients outside `[access]`, by action (refuse, drop).
    refused_clients: [AtomicU64; 2],
    /// Rate-limited answers, by what was done (dropped, slipped).
    limited: [AtomicU64; 2],
    /// Blocks, by list slot.
    blocked: [AtomicU64; MAX_LIST_SLOTS],
    /// Of those, the blocks answer inspection found, by [`Via`] and list slot.
    inspected: [[AtomicU64; MAX_LIST_SLOTS]; VIAS.len()],
}

impl Default for WorkerStats {
    fn default() -> Self {
        Self::new(false)
    }
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl WorkerStats {
    /// A block for one writer (`shared = false`: a UDP worker) or for many
    /// (`shared = true`: the TCP tasks).
    pub fn new(shared: bool) -> Self {
        Self {
            answered: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            shared,
            queries: std::array::from_fn(|_| std::array::from_fn(|_| zeros())),
            refused_clients: zeros(),
            limited: zeros(),
            blocked: zeros(),
            inspected: std::array::from_fn(|_| zeros()),
        }
    }

    /// Adds `n`. A block with one writer does a plain load and store: no
    /// locked instruction, and readers still see whole values.
    #[inline]
    fn add(&self, counter: &AtomicU64, n: u64) {
        if self.shared {
            counter.fetch_add(n, Ordering::Relaxed);
        } else {
            counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }

    /// Answers sent from a batch.
    #[inline]
    pub fn add_answered(&self, n: u64) {
        self.add(&self.answered, n);
    }

    /// Queries handed to the runtime to forward.
    #[inline]
    pub fn add_forwarded(&self, n: u64) {
        self.add(&self.forwarded, n);
    }

    /// A query over `proto` (an index into [`PROTOS`]) of type `qtype`.
    #[inline]
    pub fn count_query(&self, proto: usize, qtype: u16, decision: Decision) {
        if let Some(c) = self
            .queries
            .get(proto)
            .and_then(|p| p.get(type_index(qtype)))
            .and_then(|t| t.get(decision as usize))
        {
            self.add(c, 1);
        }
    }

    /// Queries counted over `proto` (an index into [`PROTOS`]), every
    /// type and decision together.
    pub fn queries(&self, proto: usize) -> u64 {
        self.queries.get(proto).map_or(0, |p| {
            p.iter()
                .flat_map(|t| t.iter())
                .map(|c| c.load(Ordering::Relaxed))
                .sum()
        })
    }

    /// Queries (or connections) from clients that may not ask, by `action`.
    pub fn refused_clients(&self, action: AccessAction) -> u64 {
        let i = match action {
            AccessAction::Refuse => 0,
            AccessAction::Drop => 1,
        };
        self.refused_clients[i].load(Ordering::Relaxed)
    }

    /// A block by the list in `slot`.
    #[inline]
    pub fn count_block(&self, slot: ListSlot) {
        if let Some(c) = self.blocked.get(usize::from(slot.0)) {
            self.add(c, 1);
        }
    }

    /// A block by the list in `slot` that answer inspection found (a
    /// forwarded or cached answer's CNAME chain or address): counted with
    /// the list's other blocks, and by what matched.
    #[inline]
    pub fn count_answer_block(&self, slot: ListSlot, via: Via) {
        self.count_block(slot);
        if let Some(c) = self
            .inspected
            .get(via as usize)
            .and_then(|v| v.get(usize::from(slot.0)))
        {
            self.add(c, 1);
        }
    }

    /// Blocks by the list in `slot` that answer inspection found, by
    /// `via`, in this block (0 past the slots counted).
    pub fn answer_blocks(&self, slot: ListSlot, via: Via) -> u64 {
        self.inspected
            .get(via as usize)
            .and_then(|v| v.get(usize::from(slot.0)))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A query (or TCP connection) from a client that may not ask.
    #[inline]
    pub fn count_refused_client(&self, action: AccessAction) {
        let i = match action {
            AccessAction::Refuse => 0,
            AccessAction::Drop => 1,
        };
        self.add(&self.refused_clients[i], 1);
    }

    /// An answer the rate limiter dropped (`slipped = false`) or truncated.
    #[inline]
    pub fn count_limited(&self, slipped: bool) {
        self.add(&self.limited[usize::from(slipped)], 1);
    }
}

/// Every counter block of a server: one per UDP worker, one for TCP, and
/// the handler's for forwarded queries.
#[derive(Debug, Clone)]
pub struct ServerStats {
    /// One per UDP worker, which its [`Recorder`](super::Recorder) holds.
    pub udp: Arc<[Arc<WorkerStats>]>,
    pub tcp: Arc<WorkerStats>,
    /// Forwarded queries, counted once their answer says what they
    /// became (forwarded, or blocked by what the answer held), on
    /// whichever thread has it: the handler's block (`fetch_add`).
    pub answers: Arc<WorkerStats>,
}

impl ServerStats {
    /// Blocks for `udp_workers` workers and the TCP tasks (and a block of
    /// its own for forwarded queries, until [`ServerStats::with_answers`]).
    pub fn new(udp_workers: usize) -> Self {
        Self {
            udp: (0..udp_workers)
                .map(|_| Arc::new(WorkerStats::new(false)))
                .collect(),
            tcp: Arc::new(WorkerStats::new(true)),
            answers: Arc::new(WorkerStats::new(true)),
        }
    }

    /// Forwarded queries are counted in `answers` (the handler's block).
    pub fn with_answers(mut self, answers: Arc<WorkerStats>) -> Self {
        self.answers = answers;
        self
    }

    fn blocks(&self) -> impl Iterator<Item = &WorkerStats> {
        self.udp
            .iter()
            .map(|b| &**b)
            .chain([&*self.tcp, &*self.answers])
    }

    fn sum(&self, f: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
        self.blocks().map(|b| f(b).load(Ordering::Relaxed)).sum()
    }

    /// Queries from clients outside `[access]`, refused or dropped, all
    /// blocks together.
    pub fn refused_clients_total(&self) -> u64 {
        (0..2).map(|i| self.sum(|b| &b.refused_clients[i])).sum()
    }

    /// Blocks by the list in `slot`, all blocks together; `None` for a
    /// slot past those counted.
    pub fn blocked(&self, slot: ListSlot) -> Option<u64> {
        let i = usize::from(slot.0);
        if i >= MAX_LIST_SLOTS {
            return None;
        }
        Some(self.sum(|b| &b.blocked[i]))
    }

    /// Queries with `decision`, every transport and type together.
    pub fn decided(&self, decision: Decision) -> u64 {
        self.blocks().map(|b| b.decided(decision)).sum()
    }

    /// Blocks by the list in `slot` that answer inspection found, by
    /// `via`, all blocks together; `None` for a slot past those counted.
    pub fn answer_blocks(&self, slot: ListSlot, via: Via) -> Option<u64> {
        if usize::from(slot.0) >= MAX_LIST_SLOTS {
            return None;
        }
        Some(self.blocks().map(|b| b.answer_blocks(slot, via)).sum())
    }
}

impl WorkerStats {
    /// Queries with `decision` in this block, every transport and type.
    fn decided(&self, decision: Decision) -> u64 {
        self.queries
            .iter()
            .flat_map(|p| p.iter())
            .map(|t| t[decision as usize].load(Ordering::Relaxed))
            .sum()
    }
}

/// Upper bounds of the upstream latency histogram, in microseconds.
const LATENCY_BOUNDS_US: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000,
];

/// How one upstream's attempts ended, kept by the upstream module next to
/// its health (`upstream::Health`), where every attempt ends on either
/// forward path. Forwards end on many threads, so these are `fetch_add`s:
/// the forward path already waits for a network round trip.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    errors: AtomicU64,
    /// Answers by latency bucket (not cumulative; the last is +Inf).
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl UpstreamStats {
    /// A valid answer after `took`.
    pub fn record_answer(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// No valid answer (timeout, network error, malformed answer).
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Valid answers so far.
    pub fn answers(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// One upstream as a scrape sees it.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamRow<'a> {
    /// As written in the config (`tls://9.9.9.9:853#dns.quad9.net`).
    pub name: &'a str,
    /// The `[[forward]]` set it serves (`forward[1]`), a label of its own
    /// (one server may serve two sets); `None` for `[upstream]`'s.
    pub set: Option<&'a str>,
    pub stats: &'a UpstreamStats,
    /// Not skipped for failing (see `upstream::FAILS_TO_DOWN`).
    pub up: bool,
    /// How long ago it last answered, if it has.
    pub last_answer: Option<Duration>,
}

impl<'a> UpstreamRow<'a> {
    /// `upstream`, and `set` for a `[[forward]]` server.
    fn labels(&self) -> Vec<(&'static str, &'a str)> {
        let mut labels = vec![("upstream", self.name)];
        if let Some(set) = self.set {
            labels.push(("set", set));
        }
        labels
    }

    /// [`UpstreamRow::labels`] and one more.
    fn labels_with<'b>(&self, more: (&'static str, &'b str)) -> Vec<(&'static str, &'b str)>
    where
        'a: 'b,
    {
        let mut labels: Vec<(&'static str, &'b str)> = self.labels();
        labels.push(more);
        labels
    }
}

/// Answers to forwarded UDP queries that the kernel would not take (a
/// full send buffer): dropped rather than waited for, since the thread
/// that sends them answers many clients. Process-wide, like the sockets'
/// buffers.
static UDP_ANSWERS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// One answer to a UDP client dropped (`server::sink`).
pub fn count_udp_answer_dropped() {
    UDP_ANSWERS_DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// Answers to UDP clients dropped so far.
pub fn udp_answers_dropped() -> u64 {
    UDP_ANSWERS_DROPPED.load(Ordering::Relaxed)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the cache holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheUsage {
    pub entries: u64,
    pub bytes: u64,
}

/// Reloads since start, by result.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReloadCounts {
    pub ok: u64,
    pub failed: u64,
}

/// What one list's refreshes have come to, for the per-list metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refresh {
    /// When the copy in force was fetched (remote) or loaded (file),
    /// seconds since the epoch.
    pub last_success: Option<u64>,
    /// Failed refreshes recorded in the state directory.
    pub errors: u64,
    /// Downloads turned down for a missing or wrong signature (lists with
    /// `signature`), recorded in the state directory.
    pub signature_failures: u64,
}

/// What the observer (query log, hit report) has kept and lost.
#[derive(Debug, Clone, Default)]
pub struct ObserverCounts {
    /// Query-log records written.
    pub log_written: u64,
    /// Records dropped: a ring full, or the log not writable.
    pub log_dropped: u64,
    /// dnstap messages sent to the collector, and dropped (a ring full or
    /// no collector connected); both 0 without `[dnstap]`.
    pub dnstap_sent: u64,
    pub dnstap_dropped: u64,
    /// The hit report's lists, with the clients each evicted.
    pub hit_lists: Vec<ListSummary>,
    /// First-hit alerts posted, dropped and held back (`[alerts]`).
    pub alerts: Option<super::alerts::AlertCounts>,
}

/// Everything a scrape reads.
pub struct Scrape<'a> {
    pub stats: &'a ServerStats,
    pub snapshot: &'a Snapshot,
    /// One per list of the snapshot, in its order.
    pub refresh: &'a [Refresh],
    pub cache: CacheUsage,
    pub upstreams: &'a [UpstreamRow<'a>],
    pub reloads: ReloadCounts,
    pub observer: ObserverCounts,
    /// When the process started serving, seconds since the epoch.
    pub started: u64,
}

/// Prometheus text (exposition format 0.0.4) being written.
pub struct Text {
    out: String,
}

impl Text {
    pub(crate) fn new() -> Self {
        Self {
            out: String::with_capacity(16 * 1024),
        }
    }

    /// The text written (for families rendered outside [`render`]: the canaries').
    pub(crate) fn finish(self) -> String {
        self.out
    }

    /// Starts a family: its HELP and TYPE lines.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample.
    pub(crate) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric, as Prometheus text.
pub fn render(s: &Scrape<'_>) -> String {
    let mut t = Text::new();
    let stats = s.stats;

    t.family(
        "embargo_queries_total",
        "counter",
        "Queries from clients that may ask, by transport, query type and decision.",
    );
    for (p, proto) in PROTOS.iter().enumerate() {
        for ti in 0..=TYPES.len() {
            let ty = TYPES.get(ti).map_or("other", |(name, _)| name);
            for (d, decision) in DECISIONS.iter().enumerate() {
                let n = stats.sum(|b| &b.queries[p][ti][d]);
                // Every combination would be 156 lines of zeros; a
                // family's series appear once counted, and the common
                // ones always, so that rate() has a starting point.
                if n > 0 || ti < 2 {
                    t.sample(
                        "embargo_queries_total",
                        &[("proto", proto), ("type", ty), ("decision", decision)],
                        n,
                    );
                }
            }
        }
    }

    t.family(
        "embargo_blocked_total",
        "counter",
        "Queries blocked, by the list that blocked them (counts go on across reloads).",
    );
    for l in &s.snapshot.lists {
        match stats.blocked(l.slot) {
            Some(n) => t.sample("embargo_blocked_total", &[("list", &l.spec.name)], n),
            None => {
                if !WARNED_SLOTS.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        list = %l.spec.name,
                        "more list names than block counters since start: blocks by the newer lists are not counted until a restart"
                    );
                }
            }
        }
    }

    t.family(
        "embargo_blocked_answers_total",
        "counter",
        "Of embargo_blocked_total, the blocks found in a forwarded or cached answer, by list and what matched: a listed name in its CNAME chain (via=\"cname\") or an address in a listed network (via=\"ip\").",
    );
    for l in &s.snapshot.lists {
        for (v, via) in [Via::Cname, Via::Ip].into_iter().zip(VIAS) {
            if let Some(n) = stats.answer_blocks(l.slot, v) {
                // The series that can count always (rate() needs a
                // starting point): a list's names that chains may reach,
                // its networks that addresses may fall in.
                let can = match v {
                    Via::Cname => l.spec.inspect_cname && l.stats.names > 0,
                    Via::Ip => l.spec.inspect_answers && l.stats.nets > 0,
                };
                if n > 0 || can {
                    t.sample(
                        "embargo_blocked_answers_total",
                        &[("list", &l.spec.name), ("via", via)],
                        n,
                    );
                }
            }
        }
    }

    t.family(
        "embargo_clients_refused_total",
        "counter",
        "Queries and TCP connections from clients outside [access] allow (or inside deny), by action.",
    );
    for (i, action) in ["refuse", "drop"].iter().enumerate() {
        t.sample(
            "embargo_clients_refused_total",
            &[("action", action)],
            stats.sum(|b| &b.refused_clients[i]),
        );
    }
    t.family(
        "embargo_rate_limited_total",
        "counter",
        "UDP answers the rate limiter dropped or sent truncated (slip), by action.",
    );
    for (i, action) in ["drop", "slip"].iter().enumerate() {
        t.sample(
            "embargo_rate_limited_total",
            &[("action", action)],
            stats.sum(|b| &b.limited[i]),
        );
    }

    t.family(
        "embargo_cache_hits_total",
        "counter",
        "Queries answered from the cache.",
    );
    t.sample(
        "embargo_cache_hits_total",
        &[],
        stats.decided(Decision::Cached),
    );
    t.family(
        "embargo_cache_misses_total",
        "counter",
        "Queries not in the cache, forwarded upstream.",
    );
    // Forwarded queries whose answer was blocked (a listed name in its
    // chain, an address in a listed network) count as blocked, and went
    // upstream all the same.
    t.sample(
        "embargo_cache_misses_total",
        &[],
        stats.decided(Decision::Forwarded) + stats.answers.decided(Decision::Blocked),
    );
    t.family("embargo_cache_entries", "gauge", "Answers in the cache.");
    t.sample("embargo_cache_entries", &[], s.cache.entries);
    t.family(
        "embargo_cache_bytes",
        "gauge",
        "Bytes the cache holds, as counted against cache.max_bytes: its fixed tables and every entry.",
    );
    t.sample("embargo_cache_bytes", &[], s.cache.bytes);

    t.family(
        "embargo_upstream_queries_total",
        "counter",
        "Attempts at each upstream that have ended (answered or failed).",
    );
    for u in s.upstreams {
        t.sample(
            "embargo_upstream_queries_total",
            &u.labels(),
            u.stats.answers() + u.stats.errors.load(Ordering::Relaxed),
        );
    }
    t.family(
        "embargo_upstream_errors_total",
        "counter",
        "Attempts at each upstream that brought no valid answer (timeout, network error, malformed).",
    );
    for u in s.upstreams {
        t.sample(
            "embargo_upstream_errors_total",
            &u.labels(),
            u.stats.errors.load(Ordering::Relaxed),
        );
    }
    t.family(
        "embargo_upstream_latency_seconds",
        "histogram",
        "Time from sending a query to each upstream to its valid answer.",
    );
    for u in s.upstreams {
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += u.stats.buckets[i].load(Ordering::Relaxed);
            let le = format!("{}", *bound as f64 / 1e6);
            t.sample(
                "embargo_upstream_latency_seconds_bucket",
                &u.labels_with(("le", &le)),
                cumulative,
            );
        }
        cumulative += u.stats.buckets[LATENCY_BOUNDS_US.len()].load(Ordering::Relaxed);
        t.sample(
            "embargo_upstream_latency_seconds_bucket",
            &u.labels_with(("le", "+Inf")),
            cumulative,
        );
        t.sample(
            "embargo_upstream_latency_seconds_sum",
            &u.labels(),
            u.stats.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
        t.sample(
            "embargo_upstream_latency_seconds_count",
            &u.labels(),
            cumulative,
        );
    }
    t.family(
        "embargo_upstream_up",
        "gauge",
        "1 while an upstream is tried, 0 while it is skipped for failing (until a probe answers).",
    );
    for u in s.upstreams {
        t.sample("embargo_upstream_up", &u.labels(), u8::from(u.up));
    }
    t.family(
        "embargo_upstream_last_answer_timestamp_seconds",
        "gauge",
        "When each upstream last gave a valid answer (0: never).",
    );
    let now = now_ms();
    for u in s.upstreams {
        let at = u.last_answer.map_or(0, |ago| {
            now.saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX)) / 1000
        });
        t.sample(
            "embargo_upstream_last_answer_timestamp_seconds",
            &u.labels(),
            at,
        );
    }

    t.family(
        "embargo_list_entries",
        "gauge",
        "Unique names each list contributes to the rules in force.",
    );
    for l in &s.snapshot.lists {
        t.sample(
            "embargo_list_entries",
            &[("list", &l.spec.name)],
            l.stats.entries(),
        );
    }
    t.family(
        "embargo_list_in_force",
        "gauge",
        "1 when the list is enforced, 0 when it is not (a remote list never downloaded).",
    );
    for l in &s.snapshot.lists {
        t.sample(
            "embargo_list_in_force",
            &[("list", &l.spec.name)],
            u8::from(l.note.is_none()),
        );
    }
    t.family(
        "embargo_list_last_refresh_timestamp_seconds",
        "gauge",
        "When the copy of each list in force was downloaded (remote) or loaded (file); 0: never.",
    );
    for (l, r) in s.snapshot.lists.iter().zip(s.refresh) {
        t.sample(
            "embargo_list_last_refresh_timestamp_seconds",
            &[("list", &l.spec.name)],
            r.last_success.unwrap_or(0),
        );
    }
    t.family(
        "embargo_list_refresh_errors_total",
        "counter",
        "Failed refreshes of each remote list (download or parse), as kept in the state directory.",
    );
    for (l, r) in s.snapshot.lists.iter().zip(s.refresh) {
        t.sample(
            "embargo_list_refresh_errors_total",
            &[("list", &l.spec.name)],
            r.errors,
        );
    }
    t.family(
        "embargo_list_signature_failures_total",
        "counter",
        "Downloads of each signed list not loaded because their signature was missing or wrong.",
    );
    for (l, r) in s.snapshot.lists.iter().zip(s.refresh) {
        if l.spec.signature.is_some() {
            t.sample(
                "embargo_list_signature_failures_total",
                &[("list", &l.spec.name)],
                r.signature_failures,
            );
        }
    }

    t.family(
        "embargo_reloads_total",
        "counter",
        "Reloads since start, by result (a failed one keeps the rules in force).",
    );
    t.sample("embargo_reloads_total", &[("result", "ok")], s.reloads.ok);
    t.sample(
        "embargo_reloads_total",
        &[("result", "failed")],
        s.reloads.failed,
    );

    t.family(
        "embargo_log_written_total",
        "counter",
        "Query-log records written ([log] queries).",
    );
    t.sample("embargo_log_written_total", &[], s.observer.log_written);
    t.family(
        "embargo_log_dropped_total",
        "counter",
        "Query records dropped, never the queries: a ring to the observer was full, or the log could not be written.",
    );
    t.sample("embargo_log_dropped_total", &[], s.observer.log_dropped);
    t.family(
        "embargo_udp_answers_dropped_total",
        "counter",
        "Answers to forwarded UDP queries dropped because the socket's send buffer was full (the client asks again).",
    );
    t.sample(
        "embargo_udp_answers_dropped_total",
        &[],
        udp_answers_dropped(),
    );
    t.family(
        "embargo_dnstap_sent_total",
        "counter",
        "dnstap messages (CLIENT_QUERY, CLIENT_RESPONSE) written to the collector ([dnstap]).",
    );
    t.sample("embargo_dnstap_sent_total", &[], s.observer.dnstap_sent);
    t.family(
        "embargo_dnstap_dropped_total",
        "counter",
        "dnstap messages dropped, never the queries: the ring to the writer was full, or no collector was connected.",
    );
    t.sample(
        "embargo_dnstap_dropped_total",
        &[],
        s.observer.dnstap_dropped,
    );
    t.family(
        "embargo_hits_evicted_total",
        "counter",
        "Clients the hit report forgot to make room ([hits] max_clients per list), by list.",
    );
    for l in &s.observer.hit_lists {
        t.sample(
            "embargo_hits_evicted_total",
            &[("list", &l.list)],
            l.evicted,
        );
    }
    t.family(
        "embargo_hits_clients",
        "gauge",
        "Clients the hit report holds, by list.",
    );
    for l in &s.observer.hit_lists {
        t.sample("embargo_hits_clients", &[("list", &l.list)], l.clients);
    }

    if let Some(a) = &s.observer.alerts {
        alerts(&mut t, a);
    }

    t.family(
        "embargo_start_time_seconds",
        "gauge",
        "When the server started, seconds since the epoch.",
    );
    t.sample("embargo_start_time_seconds", &[], s.started);
    t.out
}

/// The `[alerts]` families, present only when alerts are on.
fn alerts(t: &mut Text, a: &super::alerts::AlertCounts) {
    t.family(
        "embargo_alerts_sent_total",
        "counter",
        "First-hit alerts and summaries the webhook took ([alerts]).",
    );
    t.sample("embargo_alerts_sent_total", &[], a.sent);
    t.family(
        "embargo_alerts_dropped_total",
        "counter",
        "Alerts dropped, never the queries: a queue was full, or the post failed after its retries.",
    );
    t.sample(
        "embargo_alerts_dropped_total",
        &[("reason", "queue_full")],
        a.queue_full,
    );
    t.sample(
        "embargo_alerts_dropped_total",
        &[("reason", "failed")],
        a.failed,
    );
    t.family(
        "embargo_alerts_suppressed_total",
        "counter",
        "First hits held back by the per-list rate ([alerts] per_list) and counted in a summary, by list.",
    );
    for (list, n) in &a.suppressed {
        t.sample("embargo_alerts_suppressed_total", &[("list", list)], n);
    }
}

#[cfg(test)]
mod tests;
