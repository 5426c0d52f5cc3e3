//! The last hour, second by second: blocked, allowed and refused queries
//! per second, for the dashboard's chart. A background task samples the summed worker
//! counters once a second ([`keep`]) and keeps the differences in a ring
//! of [`Series::SECONDS`] entries; nothing on the query path knows of it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::metrics::{Decision, ServerStats};

/// Blocked, allowed and refused queries per second over the last hour.
#[derive(Debug, Default)]
pub struct Series {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// The totals at the last sample, to take differences from.
    last: Option<Totals>,
    /// The second (since the epoch) of the newest entry.
    end: u64,
    blocked: VecDeque<u64>,
    allowed: VecDeque<u64>,
    refused: VecDeque<u64>,
}

/// Running totals of what the chart draws, as the counters have them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub blocked: u64,
    /// Answered from the cache, forwarded upstream, or a local name.
    pub allowed: u64,
    /// Turned away: a client outside `[access]` (refused or dropped), or a
    /// zone transfer, which embargo refuses (issue 21: the dashboard
    /// showed none of them).
    pub refused: u64,
}

/// What the dashboard draws: one entry per second, oldest first, the last
/// one for the second `end` (seconds since the epoch).
#[derive(Debug, Clone, Serialize)]
pub struct SeriesView {
    pub end: u64,
    pub blocked: Vec<u64>,
    pub allowed: Vec<u64>,
    pub refused: Vec<u64>,
}

impl Series {
    /// Seconds kept: one hour.
    pub const SECONDS: usize = 3600;

    /// Records the running totals at second `now`; the first call only
    /// sets the starting point. A second skipped (a late tick) counts as
    /// zero, so each entry stays one second wide.
    pub fn sample(&self, now: u64, totals: Totals) {
        let mut r = match self.ring.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(last) = r.last {
            let gap = now.saturating_sub(r.end).clamp(1, Self::SECONDS as u64);
            for _ in 1..gap {
                r.blocked.push_back(0);
                r.allowed.push_back(0);
                r.refused.push_back(0);
            }
            r.blocked
                .push_back(totals.blocked.saturating_sub(last.blocked));
            r.allowed
                .push_back(totals.allowed.saturating_sub(last.allowed));
            r.refused
                .push_back(totals.refused.saturating_sub(last.refused));
            while r.blocked.len() > Self::SECONDS {
                r.blocked.pop_front();
                r.allowed.pop_front();
                r.refused.pop_front();
            }
        }
        r.last = Some(totals);
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
            refused: r.refused.iter().copied().collect(),
        }
    }
}

/// Samples `stats` into `series` every second, until aborted.
pub async fn keep(series: Arc<Series>, stats: ServerStats) {
    // The counters start at zero with the server: the first difference
    // takes everything since then, so what came before this task's first
    // tick (a busy start) is drawn, not folded into the starting point.
    let start = (super::metrics::now_ms() / 1000).saturating_sub(1);
    series.sample(start, Totals::default());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let totals = Totals {
            blocked: stats.decided(Decision::Blocked),
            allowed: stats.decided(Decision::Forwarded)
                + stats.decided(Decision::Cached)
                + stats.decided(Decision::Local),
            refused: stats.decided(Decision::Refused) + stats.refused_clients_total(),
        };
        series.sample(super::metrics::now_ms() / 1000, totals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI's flake in `http::r21_the_series_counts_refused_outsiders`: on a
    /// busy machine the sampler's first tick came after the test's three
    /// refusals, which then became its starting point and were never drawn.
    #[tokio::test]
    async fn what_came_before_the_first_tick_is_drawn() {
        let stats = ServerStats::new(1);
        for _ in 0..3 {
            stats
                .tcp
                .count_refused_client(crate::access::AccessAction::Refuse);
        }
        let series = Arc::new(Series::default());
        let task = tokio::spawn(keep(series.clone(), stats));
        tokio::time::sleep(Duration::from_millis(300)).await;
        task.abort();
        let refused: u64 = series.view().refused.iter().sum();
        assert_eq!(refused, 3, "{:?}", series.view());
    }

    fn totals(blocked: u64, allowed: u64, refused: u64) -> Totals {
        Totals {
            blocked,
            allowed,
            refused,
        }
    }

    #[test]
    fn differences_per_second_with_gaps_as_zeros_and_an_hour_kept() {
        let s = Series::default();
        s.sample(100, totals(10, 5, 1));
        assert!(s.view().blocked.is_empty(), "the first sample is the start");
        s.sample(101, totals(13, 5, 3));
        s.sample(104, totals(14, 9, 3));
        let v = s.view();
        assert_eq!(v.end, 104);
        assert_eq!(v.blocked, [3, 0, 0, 1]);
        assert_eq!(v.allowed, [0, 0, 0, 4]);
        assert_eq!(v.refused, [2, 0, 0, 0]);
        for t in 105..105 + Series::SECONDS as u64 {
            s.sample(t, totals(20, 9, 3));
        }
        let v = s.view();
        assert_eq!(v.blocked.len(), Series::SECONDS);
        assert_eq!(v.refused.len(), Series::SECONDS);
        assert_eq!(v.blocked[0], 6, "the oldest kept is the hour's first");
    }
}
