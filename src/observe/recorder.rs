//! The recorder: each serving thread's or task's way into the observer.
//! It counts every query into the caller's [`WorkerStats`] block, keeps
//! the events of one batch (or one TCP message) and, once the answers are
//! sent, stamps their latency and pushes them into a bounded ring, never
//! waiting: what does not fit is dropped and counted. With dnstap on, it
//! copies the message bytes for the tap's recorder too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    Decision, Decisions, NO_RCODE, QueryEvent, Shared, Transport, WorkerStats, dnstap, now_us,
};

/// One recorder's counters, written by that recorder only, on their own
/// cache lines (x86 fetches lines in pairs), so counting costs no
/// contention: records dropped (ring full), and answers the rate limiter
/// dropped or sent truncated.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct Counts {
    pub(super) dropped: AtomicU64,
    pub(super) limited: AtomicU64,
    pub(super) slipped: AtomicU64,
}

impl Counts {
    /// For the single writer: a plain load and store, no locked instruction.
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// Where a recorder's events go.
pub(super) enum Sink {
    Off,
    /// A ring of its own (one UDP worker).
    Own {
        ring: rtrb::Producer<QueryEvent>,
        counts: Arc<Counts>,
        /// The observer's thread, woken when the ring is half full.
        wake: Option<std::thread::Thread>,
    },
    /// The shared ring (tasks).
    Tasks(Arc<Shared>),
}

/// One serving thread's or task's way in: [`begin`](Self::begin) when
/// queries arrive, [`record`](Self::record) at each decision,
/// [`flush`](Self::flush) once the answers are sent. Never blocks; the
/// events of a batch wait in a small buffer of its own. Its
/// [`stats`](Self::stats) are the caller's counter block, which every
/// query is counted in whatever is recorded.
pub struct Recorder {
    /// Decisions recorded at all (every one when dnstap is on).
    wants: Decisions,
    /// Decisions whose events go to the ring.
    keeps: Decisions,
    sink: Sink,
    tap: Option<dnstap::TapRecorder>,
    pending: Vec<QueryEvent>,
    /// When the current batch (or message) arrived, µs since the epoch.
    stamp_us: u64,
    /// Rate-limited answers (dropped, truncated) since the last flush.
    limited: u32,
    slipped: u32,
    stats: Arc<WorkerStats>,
    /// The address its clients send to (dnstap's `response_address`): the
    /// listener's, or for a wildcard bind the query's own
    /// ([`set_local`](Self::set_local)).
    local: Option<std::net::SocketAddr>,
}

impl Recorder {
    pub(super) fn new(
        wants: Decisions,
        keeps: Decisions,
        sink: Sink,
        stats: Arc<WorkerStats>,
    ) -> Self {
        Self {
            wants,
            keeps,
            sink,
            stats,
            tap: None,
            // One recvmmsg batch; grows once if a caller records more.
            pending: Vec::with_capacity(32),
            stamp_us: 0,
            limited: 0,
            slipped: 0,
            local: None,
        }
    }

    /// Its clients send to `local` (the listener's bound address, or the
    /// connection's for a wildcard bind): what dnstap names as the
    /// server's address.
    pub fn with_local(mut self, local: Option<std::net::SocketAddr>) -> Self {
        self.local = local;
        self
    }

    /// The next queries were sent to `local` (a wildcard-bound UDP
    /// socket's IP_PKTINFO): a store, done only when [`taps`](Self::taps).
    #[inline]
    pub fn set_local(&mut self, local: std::net::SocketAddr) {
        self.local = Some(local);
    }

    /// The address its clients send to, as last set.
    #[inline]
    pub fn local(&self) -> Option<std::net::SocketAddr> {
        self.local
    }

    /// Whether dnstap is on (and wants the server's address per query).
    #[inline]
    pub fn taps(&self) -> bool {
        self.tap.is_some()
    }

    pub(super) fn with_tap(mut self, tap: Option<dnstap::TapRecorder>) -> Self {
        self.tap = tap;
        self
    }

    /// Records nothing, and counts into a block of its own that nobody
    /// reads (tools, benches, fuzzing).
    pub fn off() -> Self {
        Self::counting(Arc::new(WorkerStats::new(false)))
    }

    /// Records nothing; counts into `stats`.
    pub fn counting(stats: Arc<WorkerStats>) -> Self {
        Self::new(Decisions::NONE, Decisions::NONE, Sink::Off, stats)
    }

    /// A recorder whose ring the caller drains itself (benches, tests).
    #[doc(hidden)]
    pub fn detached(wants: Decisions, capacity: usize) -> (Self, rtrb::Consumer<QueryEvent>) {
        let (ring, events) = rtrb::RingBuffer::new(capacity.max(1));
        let counts = Arc::new(Counts::default());
        let stats = Arc::new(WorkerStats::new(false));
        (
            Self::new(
                wants,
                wants,
                Sink::Own {
                    ring,
                    counts,
                    wake: None,
                },
                stats,
            ),
            events,
        )
    }

    /// The caller's counter block (`/metrics`).
    #[inline]
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Queries arrived: stamps them with the time (one clock read per batch).
    #[inline]
    pub fn begin(&mut self) {
        if !self.wants.is_empty() {
            self.stamp_us = now_us();
        }
    }

    /// When the current batch arrived (µs since the epoch; 0 if nothing is recorded).
    #[inline]
    pub fn stamp_us(&self) -> u64 {
        self.stamp_us
    }

    /// Whether events with decision `d` are kept: check before building one.
    #[inline]
    pub fn wants(&self, d: Decision) -> bool {
        self.wants.contains(d)
    }

    /// Keeps `ev` for [`flush`](Self::flush). `query` and `response` are
    /// the message bytes, which dnstap (when on) copies; `response` is
    /// ignored when `ev` says none was sent ([`NO_RCODE`]).
    #[inline]
    pub fn record(&mut self, mut ev: QueryEvent, query: &[u8], response: &[u8]) {
        if !self.wants.contains(ev.decision) {
            return;
        }
        ev.time_us = self.stamp_us;
        if let Some(tap) = &mut self.tap {
            let response = if ev.rcode == NO_RCODE {
                &[][..]
            } else {
                response
            };
            let client = std::net::SocketAddr::new(ev.client, ev.port);
            tap.record(
                client,
                self.local,
                ev.transport,
                ev.time_us,
                query,
                response,
            );
        }
        if self.keeps.contains(ev.decision) {
            self.pending.push(ev);
        }
    }

    /// A query goes upstream: dnstap (when on) gets its CLIENT_QUERY now,
    /// and its CLIENT_RESPONSE with the answer, from
    /// [`Observer::record`](super::Observer::record).
    #[inline]
    pub fn forwarded(&mut self, query: &[u8], client: std::net::SocketAddr, transport: Transport) {
        if let Some(tap) = &mut self.tap {
            tap.record(client, self.local, transport, self.stamp_us, query, &[]);
        }
    }

    /// The rate limiter kept an answer from its client: sent empty with
    /// TC=1 (`truncated`) or not at all. Counted, never recorded one by one.
    #[inline]
    pub fn limited(&mut self, truncated: bool) {
        self.stats.count_limited(truncated);
        if truncated {
            self.slipped += 1;
        } else {
            self.limited += 1;
        }
    }

    /// The answers are sent: stamps the latency and hands the events on.
    /// What does not fit in the ring is dropped and counted.
    #[inline]
    pub fn flush(&mut self) {
        if self.limited != 0 || self.slipped != 0 {
            self.count_limited();
        }
        if let Some(tap) = &mut self.tap {
            tap.flush();
        }
        if self.pending.is_empty() {
            return;
        }
        let now = now_us();
        for ev in &mut self.pending {
            ev.latency_us = u32::try_from(now.saturating_sub(ev.time_us)).unwrap_or(u32::MAX);
        }
        match &mut self.sink {
            Sink::Off => {}
            Sink::Own { ring, counts, wake } => {
                let (_, rest) = ring.push_partial_slice(&self.pending);
                if !rest.is_empty() {
                    Counts::add(&counts.dropped, rest.len() as u64);
                }
                // Half full: a burst. Wake the observer now rather than
                // when its nap (up to 40 ms idle) ends, so the other half
                // absorbs the burst. The cached count costs no atomic
                // load; only a ring that looks half full reads the real one.
                let half = ring.buffer().capacity() / 2;
                if ring.cached_slots() < half
                    && ring.slots() < half
                    && let Some(thread) = wake
                {
                    thread.unpark();
                }
            }
            Sink::Tasks(shared) => shared.push(&self.pending),
        }
        self.pending.clear();
    }

    /// Hands the rate-limit counts of this batch on (only when there are
    /// any: a flood's batches, not ordinary ones).
    #[cold]
    fn count_limited(&mut self) {
        let (limited, slipped) = (
            u64::from(std::mem::take(&mut self.limited)),
            u64::from(std::mem::take(&mut self.slipped)),
        );
        match &self.sink {
            Sink::Off => {}
            Sink::Own { counts, .. } => {
                Counts::add(&counts.limited, limited);
                Counts::add(&counts.slipped, slipped);
            }
            Sink::Tasks(shared) => {
                shared.tasks_limited.fetch_add(limited, Ordering::Relaxed);
                shared.tasks_slipped.fetch_add(slipped, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Issue 21: a ring past half full wakes the observer at once, so a
    /// burst after an idle spell (the observer napping up to 40 ms) fills
    /// the other half rather than overflowing; below half it is left to
    /// nap.
    #[test]
    fn a_ring_past_half_full_wakes_the_observer() {
        let (ring, mut events) = rtrb::RingBuffer::new(64);
        let mut rec = Recorder::new(
            Decisions::ALL,
            Decisions::ALL,
            Sink::Own {
                ring,
                counts: Arc::new(Counts::default()),
                wake: Some(std::thread::current()),
            },
            Arc::new(WorkerStats::new(false)),
        );
        let ev = QueryEvent::example("www.seized.example");
        let batch = |rec: &mut Recorder, n: usize| {
            rec.begin();
            for _ in 0..n {
                rec.record(ev, &[], &[]);
            }
            rec.flush();
        };
        // Below half: no wake (the park runs its time out).
        batch(&mut rec, 20);
        let t = Instant::now();
        std::thread::park_timeout(Duration::from_millis(300));
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "woken below half"
        );
        // Past half: woken at once.
        batch(&mut rec, 20);
        let t = Instant::now();
        std::thread::park_timeout(Duration::from_secs(20));
        assert!(t.elapsed() < Duration::from_secs(10), "not woken past half");
        assert_eq!(events.slots(), 40);
        let chunk = events.read_chunk(40).expect("40 events");
        chunk.commit_all();
    }
}
