//! The observer thread: drains every recorder's ring every few
//! milliseconds, at a lower CPU priority than the serving threads; feeds
//! the hit report and the latest records; formats the query log and writes
//! it in batches; saves the hit report every few seconds; and warns, at
//! most once a minute, when records were dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::querylog::{Formatter, LogBuf, LogOut};
use super::{Decision, LATEST, RateLimited, Ring, Shared, View, lower_priority};

/// How long the thread sleeps when there was nothing to do, at first and at most.
const NAP: Duration = Duration::from_millis(5);
const NAP_MAX: Duration = Duration::from_millis(40);
/// A batch of formatted records is written once it is this big (one
/// large sequential write: at the floor's rate, about a hundred a
/// second)...
const WRITE_AT: usize = 1 << 20;
/// ...in a buffer with room for the records of a ring's drain past it.
const BATCH: usize = WRITE_AT + 64 * 1024;
/// ...or this old, so `tail -f` sees records promptly.
const WRITE_EVERY: Duration = Duration::from_millis(200);
/// How often the hit report is saved (when it changed).
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// At most one "records dropped" warning per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The observer thread's own state.
pub(super) struct Worker {
    shared: Arc<Shared>,
    rings: Vec<Ring>,
    formatter: Formatter,
    out: Option<LogOut>,
    buf: LogBuf,
    /// Records in `buf`.
    buffered: u64,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>, formatter: Formatter, out: Option<LogOut>) -> Self {
        Self {
            shared,
            rings: Vec::new(),
            formatter,
            out,
            buf: LogBuf::new(BATCH),
            buffered: 0,
        }
    }

    /// Runs until [`super::Observer::stop`], then drains, writes and saves
    /// what is left.
    pub(super) fn run(mut self) {
        lower_priority();
        let mut nap = NAP;
        let mut last_write = Instant::now();
        let mut last_save = Instant::now();
        let mut dirty = false;
        // The log's and the rate limiter's counts at the last save:
        // `embargo hits` shows them, so they are kept fresh even when no
        // block changes the report.
        let mut counts_saved = (0, 0, RateLimited::default());
        let mut warned: Option<Instant> = None;
        let mut dropped_seen = 0;
        loop {
            let stopping = self.shared.stop.load(Ordering::SeqCst);
            self.adopt();
            let (drained, blocks) = self.drain();
            dirty |= blocks;
            if self.buf.len() >= WRITE_AT
                || (!self.buf.is_empty() && (stopping || last_write.elapsed() >= WRITE_EVERY))
            {
                self.write();
                last_write = Instant::now();
            }
            let dropped = self.shared.dropped();
            let counts = (
                self.shared.written.load(Ordering::Relaxed),
                dropped,
                self.shared.rate_limited(),
            );
            dirty |= counts != counts_saved;
            if dirty && (stopping || last_save.elapsed() >= SAVE_EVERY) {
                self.save();
                dirty = false;
                counts_saved = counts;
                last_save = Instant::now();
            }
            if dropped > dropped_seen && warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    dropped = dropped - dropped_seen,
                    total = dropped,
                    "query records dropped: the observer cannot keep up (queries are not affected)"
                );
                dropped_seen = dropped;
                warned = Some(Instant::now());
            }
            if stopping && drained == 0 {
                if dirty {
                    self.save();
                }
                tracing::info!(
                    written = self.shared.written.load(Ordering::Relaxed),
                    log_dropped = dropped,
                    rate_limited_dropped = counts.2.dropped,
                    rate_limited_truncated = counts.2.truncated,
                    "observer stopped"
                );
                return;
            }
            if drained == 0 {
                std::thread::park_timeout(nap);
                nap = (nap * 2).min(NAP_MAX);
            } else if drained < self.shared.capacity / 4 {
                nap = NAP;
                std::thread::park_timeout(nap);
            }
            // Else go round at once: there is more waiting.
        }
    }

    /// Takes on the rings of recorders made since the last look.
    fn adopt(&mut self) {
        if let Ok(mut new) = self.shared.new_rings.try_lock() {
            self.rings.append(&mut new);
        }
    }

    /// Takes what every ring holds, in one go per ring. Returns how many
    /// events, and whether any was a block (the hit report changed).
    fn drain(&mut self) -> (usize, bool) {
        let mut total = 0;
        let mut blocks = false;
        let shared = self.shared.clone();
        let mut view = shared.view();
        let View { hits, latest } = &mut *view;
        let logs = shared.logs;
        let ignored = shared.ignored.get().copied();
        let mut rings = std::mem::take(&mut self.rings);
        for ring in &mut rings {
            let n = ring.events.slots();
            if n == 0 {
                continue;
            }
            let Ok(chunk) = ring.events.read_chunk(n) else {
                continue;
            };
            let (a, b) = chunk.as_slices();
            for ev in a.iter().chain(b) {
                if ignored.is_some_and(|own| own.port() == ev.port && own.ip() == ev.client) {
                    continue;
                }
                if ev.decision == Decision::Blocked
                    && let Some(report) = hits.as_mut()
                {
                    let client = shared.clients.id(ev.client);
                    let first = report.record(
                        ev.list,
                        client,
                        ev.time_us / 1000,
                        ev.name().unwrap_or_default(),
                        ev.qtype,
                    );
                    // `[alerts]`: a client new to the list is posted, off
                    // this thread (a try_send; a full queue is counted).
                    if first
                        && let Some(alerts) = &shared.alerts
                        && let Some(hit) = super::alerts::FirstHit::of(ev, client, &shared.slots)
                    {
                        alerts.send(hit);
                    }
                    if let Some(net) = ev.net() {
                        report.record_net(ev.list, client, net);
                    }
                    blocks = true;
                }
                if logs.contains(ev.decision) {
                    if latest.len() == LATEST {
                        latest.pop_front();
                    }
                    latest.push_back(*ev);
                    if self.out.is_some() {
                        self.formatter.write(ev, &mut self.buf);
                        self.buffered += 1;
                        if self.buf.len() >= WRITE_AT {
                            self.write();
                        }
                    }
                }
            }
            chunk.commit_all();
            total += n;
        }
        // Rings whose recorder is gone and that are empty are done with.
        rings.retain(|r| !(r.events.is_abandoned() && r.events.is_empty()));
        self.rings = rings;
        (total, blocks)
    }

    /// Writes the buffered records; on failure they are counted as dropped.
    fn write(&mut self) {
        let Some(out) = self.out.as_mut() else {
            self.buf.clear();
            self.buffered = 0;
            return;
        };
        match out.write(self.buf.as_bytes()) {
            Ok(()) => {
                self.shared
                    .written
                    .fetch_add(self.buffered, Ordering::Relaxed);
            }
            Err(e) => {
                self.shared
                    .failed
                    .fetch_add(self.buffered, Ordering::Relaxed);
                tracing::error!(error = %e, records = self.buffered, "cannot write the query log: records dropped");
            }
        }
        self.buf.clear();
        self.buffered = 0;
    }

    /// Saves the hit report where `embargo hits` reads it.
    fn save(&self) {
        if self.shared.max_clients == 0 {
            return;
        }
        let file = self.shared.hits_file();
        let saved = serde_json::to_vec_pretty(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = self.shared.hits_path.parent() {
                    crate::source::store::create_dir(dir)?;
                }
                crate::source::write_atomic(&self.shared.hits_path, &bytes)
            });
        if let Err(e) = saved {
            tracing::warn!(path = %self.shared.hits_path.display(), error = %e, "cannot save the hit report");
        }
    }
}
