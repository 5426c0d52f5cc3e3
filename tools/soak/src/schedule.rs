//! The run's timetable, fixed before it starts: the rows (a warm-up, if
//! any, then one per interval) and the two events at fixed offsets in each
//! row that has room for them, the upstream's stall and the reload.

/// Seconds to ns.
pub(crate) fn ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

/// What happens when, in ns since the start.
pub(crate) struct Schedule {
    /// Each row's label: "warm-up", then "1", "2", ...
    pub(crate) labels: Vec<String>,
    /// Each row's (start, end).
    pub(crate) bounds: Vec<(u64, u64)>,
    /// The upstream's stalls, (start, end).
    pub(crate) stalls: Vec<(u64, u64)>,
    /// The reloads: (row, when).
    pub(crate) reloads: Vec<(usize, u64)>,
    /// When sending stops.
    pub(crate) end: u64,
}

/// When each event happens in a row, in seconds from the row's start.
pub(crate) struct Events {
    pub(crate) stall_at: f64,
    /// 0: no stall.
    pub(crate) stall_for: f64,
    /// None: no reload.
    pub(crate) reload_at: Option<f64>,
}

impl Schedule {
    /// `warmup` seconds, then `secs` in rows of `interval` (the last one
    /// shorter if need be).
    pub(crate) fn new(warmup: f64, secs: f64, interval: f64, ev: &Events) -> Self {
        let mut bounds = Vec::new();
        let mut labels = Vec::new();
        if warmup > 0.0 {
            bounds.push((0, ns(warmup)));
            labels.push("warm-up".to_string());
        }
        let end = warmup + secs;
        let mut t = warmup;
        while t < end - 1e-9 {
            let e = (t + interval).min(end);
            bounds.push((ns(t), ns(e)));
            labels.push(
                bounds
                    .len()
                    .saturating_sub(usize::from(warmup > 0.0))
                    .to_string(),
            );
            t = e;
        }
        let stalls = bounds
            .iter()
            .filter(|(s, e)| ev.stall_for > 0.0 && s + ns(ev.stall_at + ev.stall_for) <= *e)
            .map(|(s, _)| (s + ns(ev.stall_at), s + ns(ev.stall_at + ev.stall_for)))
            .collect();
        let reloads = ev.reload_at.map_or_else(Vec::new, |at| {
            bounds
                .iter()
                .enumerate()
                .filter(|(_, (s, e))| s + ns(at) < *e)
                .map(|(i, (s, _))| (i, s + ns(at)))
                .collect()
        });
        Self {
            labels,
            bounds,
            stalls,
            reloads,
            end: ns(end),
        }
    }

    /// The stall inside row `i`, if any.
    pub(crate) fn stall_in(&self, i: usize) -> Option<(u64, u64)> {
        let (s, e) = self.bounds[i];
        self.stalls
            .iter()
            .copied()
            .find(|(a, _)| (s..e).contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_soaks_timetable() {
        // benches/soak.sh: 40 s warm-up, 2 minutes, a stall at 30 s for 3 s
        // and a reload at 10 s in every row.
        let ev = Events {
            stall_at: 30.0,
            stall_for: 3.0,
            reload_at: Some(10.0),
        };
        let s = Schedule::new(40.0, 120.0, 60.0, &ev);
        assert_eq!(s.labels, ["warm-up", "1", "2"]);
        assert_eq!(
            s.bounds,
            [(0, 40 * S), (40 * S, 100 * S), (100 * S, 160 * S)]
        );
        assert_eq!(
            s.stalls,
            [(30 * S, 33 * S), (70 * S, 73 * S), (130 * S, 133 * S)]
        );
        assert_eq!(s.reloads, [(0, 10 * S), (1, 50 * S), (2, 110 * S)]);
        assert_eq!(s.stall_in(1), Some((70 * S, 73 * S)));
        assert_eq!(s.end, 160 * S);
    }

    #[test]
    fn events_only_where_they_fit() {
        // The peak run: 3 s warm-up, 15 s, no stall, no reload command.
        let ev = Events {
            stall_at: 30.0,
            stall_for: 0.0,
            reload_at: None,
        };
        let s = Schedule::new(3.0, 15.0, 15.0, &ev);
        assert_eq!(s.labels, ["warm-up", "1"]);
        assert!(s.stalls.is_empty() && s.reloads.is_empty());
        // A short last row has no room for a stall at 30 s.
        let ev = Events {
            stall_at: 30.0,
            stall_for: 3.0,
            reload_at: Some(10.0),
        };
        let s = Schedule::new(0.0, 90.0, 60.0, &ev);
        assert_eq!(s.labels, ["1", "2"]);
        assert_eq!(s.bounds[1], (60 * S, 90 * S));
        assert_eq!(s.stalls, [(30 * S, 33 * S)]);
        assert_eq!(s.stall_in(1), None);
        assert_eq!(s.reloads.len(), 2);
    }
}
