//! Open-loop pacing: with `-r RATE` queries are due on a fixed schedule
//! (query n at n / RATE seconds), whether or not earlier ones were
//! answered, so a server that slows down meets the same load and not a
//! politely waiting client.
//!
//! When the generator itself was not scheduled (a busy machine), it falls
//! behind. It then catches up at no more than [`CATCH_UP`] times the rate
//! (at 80 % of the peak, 1.25 x is the peak), and a backlog over
//! [`MAX_BEHIND`] is skipped and counted, so that its own pauses never
//! reach the server as bursts.

use std::time::Duration;

/// How far behind its schedule the paced generator may fall before it
/// drops the oldest due queries (counted as skipped), in seconds.
const MAX_BEHIND: f64 = 0.1;
/// The paced generator's fastest rate, as a multiple of `-r`, while it
/// catches up.
const CATCH_UP: f64 = 1.25;
/// The longest sleep between batches: the answers wait in the socket
/// buffers with their receive timestamps, but TCP's are timed at the read.
const MAX_SLEEP_NS: u64 = 200_000;

/// The schedule and how far along it the generator is.
pub(crate) struct Pacer {
    rate: f64,
    /// Queries issued (sent, or skipped) so far.
    issued: u64,
    /// The catch-up bucket: at most 2 ms of sending at CATCH_UP x rate.
    tokens: f64,
    last: u64,
}

/// What is due at one moment.
pub(crate) struct Due {
    /// Queries to send now.
    pub(crate) count: u64,
    /// How far behind the schedule the generator is (µs), when it is.
    pub(crate) lag_us: Option<u64>,
    /// Queries given up on: the backlog beyond MAX_BEHIND.
    pub(crate) skipped: u64,
}

impl Pacer {
    /// A pacer for `rate` queries a second (> 0).
    pub(crate) fn new(rate: f64) -> Self {
        Self {
            rate,
            issued: 0,
            tokens: 0.0,
            last: 0,
        }
    }

    /// What is due at `now` (ns since the start); `batch` is the smallest
    /// burst worth a system call.
    pub(crate) fn due(&mut self, now: u64, batch: usize) -> Due {
        let rate = self.rate;
        let target = (rate * now as f64 / 1e9) as u64;
        let behind = target.saturating_sub(self.issued);
        let lag_us = (behind > 0).then(|| {
            let due_at = (self.issued as f64 / rate * 1e9) as u64;
            now.saturating_sub(due_at) / 1000
        });
        let keep = (rate * MAX_BEHIND) as u64;
        let skipped = behind.saturating_sub(keep);
        self.issued += skipped;
        let dt = now.saturating_sub(self.last) as f64 / 1e9;
        self.last = now;
        let depth = (rate * CATCH_UP * 0.002).max(batch as f64);
        self.tokens = (self.tokens + rate * CATCH_UP * dt).min(depth);
        let count = target.saturating_sub(self.issued).min(self.tokens as u64);
        self.tokens -= count as f64;
        Due {
            count,
            lag_us,
            skipped,
        }
    }

    /// `n` queries went out (or were given up on by the sender).
    pub(crate) fn issued(&mut self, n: u64) {
        self.issued += n;
    }

    /// How long to sleep until the next batch is due (at most 200 µs).
    pub(crate) fn wait(&self, now: u64, batch: usize) -> Duration {
        let next = ((self.issued + batch as u64) as f64 / self.rate * 1e9) as u64;
        Duration::from_nanos(next.saturating_sub(now).min(MAX_SLEEP_NS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Steps of 100 µs from `from` to `to`; returns what was sent.
    fn drive(p: &mut Pacer, from: u64, to: u64) -> u64 {
        let mut sent = 0;
        let mut now = from;
        while now <= to {
            let d = p.due(now, 32);
            p.issued(d.count);
            sent += d.count;
            now += MS / 10;
        }
        sent
    }

    #[test]
    fn keeps_to_the_rate() {
        let mut p = Pacer::new(100_000.0);
        let sent = drive(&mut p, 0, 1000 * MS);
        assert!((99_700..=100_000).contains(&sent), "{sent} in 1 s");
        assert!(p.wait(1000 * MS, 32) <= Duration::from_micros(320));
    }

    #[test]
    fn a_pause_is_skipped_beyond_100_ms_and_caught_up_at_1_25_x() {
        let mut p = Pacer::new(100_000.0);
        drive(&mut p, 0, 1000 * MS);
        // The generator was not scheduled for a second.
        let d = p.due(2000 * MS, 32);
        assert!(d.lag_us.is_some_and(|l| l >= 999_000), "{:?}", d.lag_us);
        assert!((89_900..=90_100).contains(&d.skipped), "{}", d.skipped);
        assert!(d.count <= 250, "a burst of {} after the pause", d.count);
        p.issued(d.count);
        let sent = drive(&mut p, 2000 * MS + MS / 10, 2200 * MS);
        // 0.2 s at 1.25 x the rate, no faster.
        assert!((24_500..=25_300).contains(&sent), "{sent} in 0.2 s");
        let later = p.due(2200 * MS, 32);
        assert!(later.lag_us.is_some(), "still catching up");
        assert_eq!(later.skipped, 0);
    }
}
