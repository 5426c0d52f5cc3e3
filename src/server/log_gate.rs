//! One log line per interval for an event that can repeat on every query
//! or every accept (an upstream down, a listener out of descriptors): the
//! rest are counted and the count goes out with the next line, so a storm
//! neither floods the log nor costs the thread that hit it more than two
//! atomics.

/// Lets one event through per interval and counts the ones it held back.
/// Atomics, not a lock: it sits on the error path of every worker (and on
/// the accept loops: a listener out of descriptors fails every accept).
pub(crate) struct LogGate {
    /// When the last event went through (µs since the epoch), 0 = never.
    last_us: std::sync::atomic::AtomicU64,
    /// Events held back since then.
    held: std::sync::atomic::AtomicU64,
}

impl LogGate {
    pub(crate) const EVERY_US: u64 = 10_000_000;

    pub(crate) const fn new() -> Self {
        Self {
            last_us: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when this event may be logged.
    pub(crate) fn pass(&self, now_us: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_us.load(Relaxed);
        if last != 0 && now_us.saturating_sub(last) < Self::EVERY_US
            || self
                .last_us
                .compare_exchange(last, now_us, Relaxed, Relaxed)
                .is_err()
        {
            self.held.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.held.swap(0, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::LogGate;

    #[test]
    fn the_gate_lets_one_event_through_per_interval_and_counts_the_rest() {
        let gate = LogGate::new();
        let t0 = 1_000_000_000;
        assert_eq!(gate.pass(t0), Some(0));
        assert_eq!(gate.pass(t0 + 1), None);
        assert_eq!(gate.pass(t0 + LogGate::EVERY_US - 1), None);
        assert_eq!(gate.pass(t0 + LogGate::EVERY_US), Some(2));
        assert_eq!(gate.pass(t0 + LogGate::EVERY_US + 5), None);
        assert_eq!(gate.pass(t0 + 3 * LogGate::EVERY_US), Some(1));
    }
}
