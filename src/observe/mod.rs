//! What each query became, recorded without slowing the query down: the
//! counters behind `/metrics` ([`metrics`]), and the query log and hit
//! report (this module, [`querylog`], [`hits`]).
//!
//! ```text
//!  UDP worker N ──► WorkerStats[N]  (plain load + store: one writer)  ┐
//!  TCP tasks    ──► WorkerStats tcp (fetch_add: many writers)         ├─ summed only when
//!  upstream     ──► its own stats per server (fetch_add)              ┘  /metrics is scraped
//!  series::keep, once a second ──► the last hour per second (the dashboard's chart)
//! ```
//!
//! Every query is counted ([`WorkerStats`], reached through the caller's
//! [`Recorder`]); the records below are kept only as `[log]` and `[hits]`
//! say.
//!
//! ```text
//!  UDP worker ──► Recorder ─► its own SPSC ring ───────────┐
//!  TCP task, forward ──► Recorder ─► one shared ring (lock) ┤  never waits: a full ring drops
//!                                                           │  the record and counts it
//!                                                           ▼
//!              observer thread (drains every few ms, at a lower CPU priority):
//!                ├─ hit report (blocks: per list, per client)  ─► STATE/hits.json every 5 s
//!                │    └─ a client's first hit on a list ─► [alerts] webhook (alerts/, a tokio task)
//!                ├─ the latest records (for the HTTP API)
//!                └─ query log: format, write in batches ─► STATE/queries.log (rotated) or stdout
//! ```
//!
//! The serving side builds a fixed-size [`QueryEvent`] (no formatting, no
//! allocation) at each decision point of the handler and hands it to its
//! [`Recorder`], which keeps the events of one UDP batch (or one TCP
//! message) and pushes them into a bounded ring when the answers are sent,
//! stamping each with the latency. The observer's thread does the rest.
//! When the thread falls behind, rings fill and records are dropped and
//! counted (`log_dropped`): a query is never delayed or lost for its
//! record.
//!
//! What is recorded: with `[log] queries = "all"` every query; with
//! `"blocked"` the blocks; with `"off"` the blocks only if the hit report
//! is on (`[hits] max_clients > 0`); nothing at all, and no thread, when
//! both are off. Answers the rate limiter (`[rate_limit]`) dropped or
//! truncated are never recorded one by one, which would fill the log with
//! the very flood the limiter keeps quiet: each recorder counts them, and
//! the counts go to `hits.json` ([`Observer::rate_limited`]).
//!
//! dnstap (`[dnstap]`) needs each query's and answer's bytes: they reach
//! [`Recorder::record`], which copies them into a byte ring of its own
//! when (and only when) dnstap is on; a writer thread of its own sends
//! them ([`dnstap`]). With dnstap on, every decision is recorded for it,
//! and the query log and hit report still keep only what they want.
//!
//! The rooms: [`event`] is the fixed-size record; [`metrics`] and
//! [`series`] the counters and their history; [`querylog`] and [`hits`]
//! what the thread makes of the records; [`dnstap`] its own output. Here:
//! the [`Observer`], which starts and stops it all and answers the HTTP
//! API; `recorder.rs`, the [`Recorder`] each serving thread or task holds;
//! `worker.rs`, the observer thread that drains the rings.

pub mod alerts;
pub mod dnstap;
pub mod event;
pub mod history;
pub mod hits;
pub mod metrics;
pub mod querylog;
mod recorder;
pub mod series;
mod worker;

pub use event::{Decision, Decisions, NO_RCODE, QueryEvent, ServerNames, Transport, rcode_of};
pub use hits::{HitRow, HitsFile, ListSummary};
pub use metrics::WorkerStats;
pub use recorder::Recorder;

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Config, LogFormat, LogPath, LogQueries};
use crate::state::ListSlots;

use hits::HitReport;
use querylog::{ClientView, Formatter, LogOut, RotatingFile};
use recorder::{Counts, Sink};
use worker::Worker;

/// Records kept for `/api/log`.
pub const LATEST: usize = 1000;
/// The observer thread's nice value: under a saturated core it yields to
/// the serving threads, so records are dropped and counted rather than
/// queries slowed (see the manual's performance chapter).
const NICE: i32 = 10;

/// Why the observer could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the query log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the observer thread: {0}")]
    Spawn(std::io::Error),
    #[error("cannot start the dnstap writer thread: {0}")]
    Dnstap(std::io::Error),
    #[error(transparent)]
    Alerts(#[from] alerts::Error),
}

/// The current time in microseconds since the Unix epoch.
#[inline]
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Answers the rate limiter kept from their clients since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimited {
    /// Not answered at all.
    pub dropped: u64,
    /// Answered empty with TC=1 (`slip`), so a real client retries over TCP.
    pub truncated: u64,
}

/// A recorder's ring, as the observer thread holds it.
struct Ring {
    events: rtrb::Consumer<QueryEvent>,
}

/// What the observer keeps for readers (the HTTP API, `hits.json`).
struct View {
    hits: Option<HitReport>,
    latest: VecDeque<QueryEvent>,
}

/// What the serving side and the observer thread share.
struct Shared {
    /// Decisions recorded at all (every one when dnstap is on).
    wants: Decisions,
    /// Decisions the event ring keeps (for the log and the hit report).
    keeps: Decisions,
    /// The dnstap output, when `[dnstap]` is on.
    tap: Option<dnstap::Tap>,
    /// Decisions written to the query log.
    logs: Decisions,
    capacity: usize,
    /// Rings of recorders made since the thread last looked.
    new_rings: Mutex<Vec<Ring>>,
    /// Every own-ring recorder's counters (never removed: a handful).
    counts: Mutex<Vec<Arc<Counts>>>,
    /// The ring for tasks (TCP, forwards): one producer behind a lock.
    tasks: Mutex<rtrb::Producer<QueryEvent>>,
    tasks_dropped: AtomicU64,
    /// Rate-limited answers counted by task recorders (none today: TCP is
    /// not limited).
    tasks_limited: AtomicU64,
    tasks_slipped: AtomicU64,
    /// Records lost because the log could not be written.
    failed: AtomicU64,
    written: AtomicU64,
    stop: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    view: Mutex<View>,
    clients: ClientView,
    slots: Arc<ListSlots>,
    upstreams: Arc<ServerNames>,
    max_clients: usize,
    hits_path: PathBuf,
    /// The server's own client socket (the canary's: `crate::canary`),
    /// whose queries the hit report, the latest records and the query log
    /// leave out: one query a minute per list from 127.0.0.1 is not a hit.
    ignored: OnceLock<std::net::SocketAddr>,
    /// Where a client's first hit on a list goes (`[alerts]`).
    alerts: Option<alerts::Alerts>,
}

/// Stops the thread when the last handle goes.
struct Owner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Owner {
    fn stop(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            self.shared.stop.store(true, Ordering::SeqCst);
            handle.thread().unpark();
            let _ = handle.join();
        }
        if let Some(tap) = &self.shared.tap {
            tap.stop();
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The observation side: hands out recorders, runs the thread that drains
/// them, answers for the hit report. Cheap to clone.
#[derive(Clone)]
pub struct Observer {
    shared: Option<Arc<Shared>>,
    owner: Option<Arc<Owner>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("on", &self.shared.is_some())
            .finish()
    }
}

impl Observer {
    /// Records nothing (a handler without observation: tools, benches).
    pub fn off() -> Self {
        Self {
            shared: None,
            owner: None,
        }
    }

    /// Opens the query log, reads back `STATE/hits.json`, and starts the
    /// thread, as `[log]` and `[hits]` say. List names come from `slots`
    /// (the snapshot's, shared by every reload), upstream servers' from
    /// `upstreams` (the upstream sets', which number them). First hits go
    /// to `alerts` (`[alerts]`, which needs the hit report).
    pub fn start(
        config: &Config,
        slots: Arc<ListSlots>,
        upstreams: Arc<ServerNames>,
        alerts: Option<alerts::Alerts>,
    ) -> Result<Self, Error> {
        let log = &config.log;
        let logs = match log.queries {
            LogQueries::Off => Decisions::NONE,
            LogQueries::Blocked => Decisions::BLOCKED,
            LogQueries::All => Decisions::ALL,
        };
        let hits_on = config.hits.max_clients > 0;
        let keeps = Decisions(logs.0 | if hits_on { Decisions::BLOCKED.0 } else { 0 });
        let wants = if config.dnstap.is_some() {
            Decisions::ALL
        } else {
            keeps
        };
        if wants.is_empty() {
            return Ok(Self::off());
        }
        let out = if logs.is_empty() {
            None
        } else {
            Some(match &log.path {
                LogPath::Stdout => LogOut::Stdout,
                LogPath::File(path) => LogOut::File(
                    RotatingFile::open(path, log.max_size, log.keep, log.compress).map_err(
                        |source| Error::Open {
                            path: path.clone(),
                            source,
                        },
                    )?,
                ),
            })
        };
        let hits_path = config.state_dir.join("hits.json");
        let hits = NonZeroUsize::new(config.hits.max_clients).map(|max| {
            let mut report = HitReport::new(max);
            match std::fs::read(&hits_path) {
                Ok(bytes) => match serde_json::from_slice::<HitsFile>(&bytes) {
                    Ok(saved) => report.restore(&saved, &slots),
                    Err(e) => {
                        tracing::warn!(path = %hits_path.display(), error = %e, "hit report not read back: starting a new one");
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %hits_path.display(), error = %e, "hit report not read back: starting a new one");
                }
            }
            report
        });
        // Last of what may fail but the observer's own thread, which stops it if it fails.
        let tap = config
            .dnstap
            .as_ref()
            .map(dnstap::Tap::start)
            .transpose()
            .map_err(Error::Dnstap)?;
        let capacity = log.queue.max(1);
        let (tasks, tasks_events) = rtrb::RingBuffer::new(capacity);
        let shared = Arc::new(Shared {
            wants,
            keeps,
            tap,
            logs,
            capacity,
            new_rings: Mutex::new(vec![Ring {
                events: tasks_events,
            }]),
            counts: Mutex::new(Vec::new()),
            tasks: Mutex::new(tasks),
            tasks_dropped: AtomicU64::new(0),
            tasks_limited: AtomicU64::new(0),
            tasks_slipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
            view: Mutex::new(View {
                hits,
                latest: VecDeque::with_capacity(LATEST),
            }),
            clients: ClientView::new(log.client_ip),
            slots,
            upstreams,
            max_clients: config.hits.max_clients,
            hits_path,
            ignored: OnceLock::new(),
            alerts,
        });
        let formatter = Formatter::new(
            log.format,
            shared.clients.clone(),
            shared.slots.clone(),
            shared.upstreams.clone(),
        );
        let worker = Worker::new(shared.clone(), formatter, out);
        let handle = std::thread::Builder::new()
            .name("embargo-observe".into())
            .spawn(move || worker.run())
            .map_err(|e| {
                if let Some(tap) = &shared.tap {
                    tap.stop();
                }
                Error::Spawn(e)
            })?;
        let _ = shared.thread.set(handle.thread().clone());
        Ok(Self {
            owner: Some(Arc::new(Owner {
                shared: shared.clone(),
                thread: Mutex::new(Some(handle)),
            })),
            shared: Some(shared),
        })
    }

    /// A recorder with a ring of its own, for one UDP worker thread,
    /// counting into `stats` (that worker's own block).
    pub fn recorder(&self, stats: Arc<WorkerStats>) -> Recorder {
        let Some(shared) = &self.shared else {
            return Recorder::counting(stats);
        };
        let (ring, events) = rtrb::RingBuffer::new(shared.capacity);
        let counts = Arc::new(Counts::default());
        shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(counts.clone());
        shared
            .new_rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Ring { events });
        Recorder::new(
            shared.wants,
            shared.keeps,
            Sink::Own {
                ring,
                counts,
                wake: shared.thread.get().cloned(),
            },
            stats,
        )
        .with_tap(shared.tap.as_ref().map(dnstap::Tap::recorder))
    }

    /// A recorder on the shared ring, for a task (a TCP connection),
    /// counting into `stats` (the block the TCP tasks share).
    pub fn task_recorder(&self, stats: Arc<WorkerStats>) -> Recorder {
        match &self.shared {
            Some(shared) => Recorder::new(
                shared.wants,
                shared.keeps,
                Sink::Tasks(shared.clone()),
                stats,
            )
            .with_tap(shared.tap.as_ref().map(dnstap::Tap::task_recorder)),
            None => Recorder::counting(stats),
        }
    }

    /// Whether events with decision `d` are recorded.
    #[inline]
    pub fn wants(&self, d: Decision) -> bool {
        self.shared.as_ref().is_some_and(|s| s.wants.contains(d))
    }

    /// Whether dnstap is on.
    pub fn taps(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.tap.is_some())
    }

    /// Records one event from a task (a forwarded query's answer, whose
    /// query [`Recorder::forwarded`] recorded): its time and latency
    /// already set; `response` is the answer the client got, from
    /// `server` (the address the client sent to, for dnstap).
    pub fn record(&self, ev: QueryEvent, server: Option<std::net::SocketAddr>, response: &[u8]) {
        if let Some(shared) = &self.shared {
            if let Some(tap) = &shared.tap {
                let client = std::net::SocketAddr::new(ev.client, ev.port);
                tap.answered(client, server, ev.transport, ev.time_us, response);
            }
            if shared.keeps.contains(ev.decision) {
                shared.push(std::slice::from_ref(&ev));
            }
        }
    }

    /// dnstap messages dropped so far: rings full, or no collector
    /// (`dnstap_dropped`).
    pub fn dnstap_dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .and_then(|s| s.tap.as_ref())
            .map_or(0, dnstap::Tap::dropped)
    }

    /// dnstap messages written to the collector so far.
    pub fn dnstap_sent(&self) -> u64 {
        self.shared
            .as_ref()
            .and_then(|s| s.tap.as_ref())
            .map_or(0, dnstap::Tap::sent)
    }

    /// The hit report, rows most recent first (`list` alone if given).
    pub fn hits(&self, list: Option<&str>) -> HitsFile {
        let file = match &self.shared {
            Some(shared) => shared.hits_file(),
            None => HitsFile {
                written: hits::rfc3339_ms(now_us() / 1000),
                pid: std::process::id(),
                max_clients: 0,
                log_written: 0,
                log_dropped: 0,
                rate_limited_dropped: 0,
                rate_limited_truncated: 0,
                lists: Vec::new(),
                hits: Vec::new(),
            },
        };
        match list {
            Some(l) => file.only(l),
            None => file,
        }
    }

    /// The hit report's lists, with the clients each holds and evicted:
    /// the report's summary without its rows (`/metrics`).
    pub fn hit_summary(&self) -> Vec<ListSummary> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        let view = shared.view();
        view.hits
            .as_ref()
            .map_or_else(Vec::new, |h| h.summary(&shared.slots))
    }

    /// Leaves the queries from `client` (an address and port: the server's
    /// own canary socket) out of the hit report, the latest records and the
    /// query log. Counters and dnstap still see them. The first call wins.
    pub fn ignore(&self, client: std::net::SocketAddr) {
        if let Some(s) = &self.shared {
            let _ = s.ignored.set(client);
        }
    }

    /// What the first-hit alerts have done (`None` without `[alerts]`).
    pub fn alert_counts(&self) -> Option<alerts::AlertCounts> {
        self.shared
            .as_ref()?
            .alerts
            .as_ref()
            .map(alerts::Alerts::counts)
    }

    /// The decisions whose records reach the query log and [`latest`](Self::latest)
    /// (`[log] queries`).
    pub fn logged(&self) -> Decisions {
        self.shared.as_ref().map_or(Decisions::NONE, |s| s.logs)
    }

    /// The latest query log records (at most `limit`, newest first), as JSON:
    /// the last [`LATEST`] the observer kept, whether or not the log is
    /// written to a file.
    pub fn latest(&self, limit: usize) -> Vec<String> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        let mut events: Vec<QueryEvent> = shared.view().latest.iter().rev().copied().collect();
        // Kept in the order the rings were drained, one worker's ring after
        // another: newest first means by arrival (a stable sort keeps the
        // order within a batch, which shares its stamp).
        events.sort_by_key(|e| std::cmp::Reverse(e.time_us));
        events.truncate(limit);
        let mut f = Formatter::new(
            LogFormat::Json,
            shared.clients.clone(),
            shared.slots.clone(),
            shared.upstreams.clone(),
        );
        let mut buf = querylog::LogBuf::new(0);
        events
            .iter()
            .map(|ev| {
                buf.clear();
                f.write(ev, &mut buf);
                String::from_utf8_lossy(buf.as_bytes().trim_ascii_end()).into_owned()
            })
            .collect()
    }

    /// Records dropped so far: rings full, or the log not writable (`log_dropped`).
    pub fn dropped(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.dropped())
    }

    /// Answers the rate limiter dropped or truncated so far.
    pub fn rate_limited(&self) -> RateLimited {
        self.shared
            .as_ref()
            .map_or_else(RateLimited::default, |s| s.rate_limited())
    }

    /// Query log records written so far.
    pub fn written(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.written.load(Ordering::Relaxed))
    }

    /// Drains what is recorded, writes it and the hit report, and stops the
    /// thread. Call once every recorder is done (the server's last step).
    pub fn stop(&self) {
        if let Some(owner) = &self.owner {
            owner.stop();
        }
    }
}

impl Shared {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dropped(&self) -> u64 {
        let rings: u64 = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| c.dropped.load(Ordering::Relaxed))
            .sum();
        rings + self.tasks_dropped.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn rate_limited(&self) -> RateLimited {
        let mut sum = RateLimited {
            dropped: self.tasks_limited.load(Ordering::Relaxed),
            truncated: self.tasks_slipped.load(Ordering::Relaxed),
        };
        for c in self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            sum.dropped += c.limited.load(Ordering::Relaxed);
            sum.truncated += c.slipped.load(Ordering::Relaxed);
        }
        sum
    }

    /// Pushes onto the tasks' ring; what does not fit is counted.
    fn push(&self, events: &[QueryEvent]) {
        let (_, rest) = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_partial_slice(events);
        if !rest.is_empty() {
            self.tasks_dropped
                .fetch_add(rest.len() as u64, Ordering::Relaxed);
        }
    }

    fn hits_file(&self) -> HitsFile {
        let view = self.view();
        let (lists, hits) = match &view.hits {
            Some(h) => (h.summary(&self.slots), h.rows(&self.slots, None)),
            None => (Vec::new(), Vec::new()),
        };
        drop(view);
        let limited = self.rate_limited();
        HitsFile {
            written: hits::rfc3339_ms(now_us() / 1000),
            pid: std::process::id(),
            max_clients: self.max_clients,
            log_written: self.written.load(Ordering::Relaxed),
            log_dropped: self.dropped(),
            rate_limited_dropped: limited.dropped,
            rate_limited_truncated: limited.truncated,
            lists,
            hits,
        }
    }
}

/// Lowers this thread's CPU priority (Linux: nice applies per thread).
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::debug!(error = %e, "cannot lower the observer thread's priority");
    }
}
