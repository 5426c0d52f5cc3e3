//! The last hour, second by second: blocked and allowed answers per second,
//! for the dashboard's chart. A background task samples the summed worker
//! counters once a second ([`keep`]) and keeps the differences in a ring
//! of [`Series::SECONDS`] entries; nothing on the query path knows of it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::metrics::{Decision, ServerStats};

/// Blocked and allowed answers per second over the last hour.
#[derive(Debug, Default)]
pub struct Series {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// The totals at the last sample, to take differences from.
    last: Option<(u64, u64)>,
    /// The second (since the epoch) of the newest entry.
    end: u64,
    blocked: VecDeque<u64>,
    allowed: VecDeque<u64>,
}

/// What the dashboard draws: one entry per second, oldest first, the last
/// one for the second `end` (seconds since the epoch).
#[derive(Debug, Clone, Serialize)]
pub struct SeriesView {
    pub end: u64,
    pub blocked: Vec<u64>,
    pub allowed: Vec<u64>,
}

impl Series {
    /// Seconds kept: one hour.
    pub const SECONDS: usize = 3600;

    /// Records the running totals at second `now`; the first call only
    /// sets the starting point. A second skipped (a late tick) counts as
    /// zero, so each entry stays one second wide.
    pub fn sample(&self, now: u64, blocked: u64, allowed: u64) {
        let mut r = match self.ring.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((b, a)) = r.last {
            let gap = now.saturating_sub(r.end).clamp(1, Self::SECONDS as u64);
            for _ in 1..gap {
                r.blocked.push_back(0);
                r.allowed.push_back(0);
            }
            r.blocked.push_back(blocked.saturating_sub(b));
            r.allowed.push_back(allowed.saturating_sub(a));
            while r.blocked.len() > Self::SECONDS {
                r.blocked.pop_front();
                r.allowed.pop_front();
            }
        }
        r.last = Some((blocked, allowed));
        r.end = now;
    }

    /// A copy of the ring.
    pub fn view(&self) -> SeriesView {
        let r = match self.ring.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        SeriesView {
            end: r.end,
            blocked: r.blocked.iter().copied().collect(),
            allowed: r.allowed.iter().copied().collect(),
        }
    }
}

/// Samples `stats` into `series` every second, until aborted. Allowed
/// means answered from the cache, forwarded upstream, or a local name.
pub async fn keep(series: Arc<Series>, stats: ServerStats) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let blocked = stats.decided(Decision::Blocked);
        let allowed = stats.decided(Decision::Forwarded)
            + stats.decided(Decision::Cached)
            + stats.decided(Decision::Local);
        series.sample(super::metrics::now_ms() / 1000, blocked, allowed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_per_second_with_gaps_as_zeros_and_an_hour_kept() {
        let s = Series::default();
        s.sample(100, 10, 5);
        assert!(s.view().blocked.is_empty(), "the first sample is the start");
        s.sample(101, 13, 5);
        s.sample(104, 14, 9);
        let v = s.view();
        assert_eq!(v.end, 104);
        assert_eq!(v.blocked, [3, 0, 0, 1]);
        assert_eq!(v.allowed, [0, 0, 0, 4]);
        for t in 105..105 + Series::SECONDS as u64 {
            s.sample(t, 20, 9);
        }
        let v = s.view();
        assert_eq!(v.blocked.len(), Series::SECONDS);
        assert_eq!(v.blocked[0], 6, "the oldest kept is the hour's first");
    }
}
