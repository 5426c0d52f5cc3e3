//! The log of refused clients, rate-limited: one line a minute per /24
//! (/56) with a count, at most 100 such lines a minute across threads, and
//! a summary for the rest, so a spoofed scan cannot flood the log. Each
//! serving thread keeps its own table; only the line budget is shared.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::prefix::PrefixKey;
use super::rules::Cidr;

/// The refused-client log counts per /24 (IPv4) and /56 (IPv6).
const LOG_V4_PREFIX: u8 = 24;
const LOG_V6_PREFIX: u8 = 56;
/// Seconds between two lines about the same prefix.
const LOG_INTERVAL: u32 = 60;
/// Prefixes whose counts each thread keeps (a direct-mapped table: 1024 x
/// 32 bytes, made at the thread's first refusal).
const LOG_SLOTS: usize = 1024;
/// Lines about single prefixes per minute, all threads together, whatever
/// the number of prefixes: past this a scan from many networks is summed
/// into one line a minute per thread.
const LOG_LINES_PER_MINUTE: u32 = 100;

#[derive(Debug, Clone, Copy, Default)]
struct LogSlot {
    key: PrefixKey,
    /// Queries refused since this prefix's last line.
    pending: u64,
    /// When its last line was written (seconds); `None`: no line yet.
    last_line: Option<u32>,
}

/// What the refused log has to say after one refused query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefusedReport {
    /// A line for this prefix: the queries refused from it since its last line.
    pub line: Option<(Cidr, u64)>,
    /// Queries refused from prefixes not itemised (the table was full, or
    /// the lines for the minute were spent), since the last such summary.
    pub unitemised: Option<u64>,
}

/// Counts refused queries per /24 (/56) and says when a line is due: at the
/// first refusal from a prefix, then at most once a minute per prefix, and
/// at most 100 such lines a minute (a [`LineBudget`]), with one summary
/// line a minute for the rest. Memory is fixed (1024 slots); a
/// prefix that loses its slot to another has its pending count summed into
/// the summary, so every refused query is counted in some line.
///
/// Each serving thread keeps its own ([`RefusedLog::record_here`]): a
/// spoofed flood from outside `allow`, the very traffic `[access]` is there
/// to stop, reaches every UDP worker at once, and one log behind a lock
/// made them take turns. So a prefix that reaches several threads gets a
/// line from each, each with the queries that thread refused; only the
/// per-minute line budget is shared, an atomic touched when a line is due.
#[derive(Debug)]
pub struct RefusedLog {
    slots: Box<[LogSlot]>,
    seed: u64,
    unitemised: u64,
    last_summary: Option<u32>,
}

/// The lines about single prefixes that every thread's [`RefusedLog`]
/// together may write in a minute: the minute (seconds / 60) in the high
/// 32 bits, the lines spent in it in the low 32.
#[derive(Debug, Default)]
pub struct LineBudget(AtomicU64);

impl LineBudget {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Takes one line from the budget of the minute holding `now` (seconds).
    fn take(&self, now: u32) -> bool {
        let minute = u64::from(now / LOG_INTERVAL) + 1;
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                if v >> 32 != minute {
                    Some(minute << 32 | 1)
                } else if v & 0xffff_ffff < u64::from(LOG_LINES_PER_MINUTE) {
                    Some(v + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }
}

thread_local! {
    /// This thread's refused log, made at its first refusal.
    static HERE: RefCell<Option<RefusedLog>> = const { RefCell::new(None) };
}

/// The clock of [`RefusedLog::record_here`]: one for every thread, so that
/// "a minute" means the same in each log and in the budget.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Default for RefusedLog {
    fn default() -> Self {
        Self::with_seed(fastrand::u64(..))
    }
}

impl RefusedLog {
    /// A log whose slots are placed by `seed` (random by default, so no one
    /// can aim a scan at one slot).
    pub fn with_seed(seed: u64) -> Self {
        Self {
            slots: vec![LogSlot::default(); LOG_SLOTS].into_boxed_slice(),
            seed,
            unitemised: 0,
            last_summary: None,
        }
    }

    /// Counts one refused query from `ip` in this thread's own log (made
    /// now if this is its first): no lock, nothing shared but `budget`.
    pub fn record_here(ip: IpAddr, budget: &LineBudget) -> RefusedReport {
        let now = u32::try_from(EPOCH.elapsed().as_secs()).unwrap_or(u32::MAX);
        HERE.with_borrow_mut(|log| {
            log.get_or_insert_with(Self::default)
                .record(ip, now, budget)
        })
    }

    /// Counts one refused query from `ip` at `now` (seconds, any epoch; the
    /// same clock as every other log sharing `budget`).
    pub fn record(&mut self, ip: IpAddr, now: u32, budget: &LineBudget) -> RefusedReport {
        let key = PrefixKey::of(ip, LOG_V4_PREFIX, LOG_V6_PREFIX);
        let i = (key.hash(self.seed) as usize) & (LOG_SLOTS - 1);
        let slot = &mut self.slots[i];
        if slot.key != key {
            self.unitemised += slot.pending;
            *slot = LogSlot {
                key,
                pending: 0,
                last_line: None,
            };
        }
        slot.pending += 1;
        let due = slot
            .last_line
            .is_none_or(|t| now.wrapping_sub(t) >= LOG_INTERVAL);
        let mut report = RefusedReport::default();
        if due && budget.take(now) {
            report.line = Some((key.to_cidr(LOG_V4_PREFIX, LOG_V6_PREFIX), slot.pending));
            slot.pending = 0;
            slot.last_line = Some(now);
        }
        if self.unitemised > 0
            && self
                .last_summary
                .is_none_or(|t| now.wrapping_sub(t) >= LOG_INTERVAL)
        {
            report.unitemised = Some(self.unitemised);
            self.unitemised = 0;
            self.last_summary = Some(now);
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn refused_log_says_once_a_minute_per_24_with_a_count() {
        let mut log = RefusedLog::with_seed(1);
        let budget = LineBudget::new();
        let first = log.record(ip("198.51.100.7"), 1000, &budget);
        assert_eq!(first.line, Some((cidr("198.51.100.0/24"), 1)));
        // The same /24, within the minute: counted, not logged.
        for i in 0..9 {
            let r = log.record(ip(&format!("198.51.100.{}", 10 + i)), 1000 + i, &budget);
            assert_eq!(r, RefusedReport::default());
        }
        // Another /24 gets its own first line.
        assert_eq!(
            log.record(ip("198.51.101.1"), 1010, &budget).line,
            Some((cidr("198.51.101.0/24"), 1))
        );
        // A minute after the first line: the count since then (9 + this one).
        assert_eq!(
            log.record(ip("198.51.100.200"), 1060, &budget).line,
            Some((cidr("198.51.100.0/24"), 10))
        );
        // IPv6 counts per /56.
        assert_eq!(
            log.record(ip("2001:db8:0:1::1"), 1060, &budget).line,
            Some((cidr("2001:db8::/56"), 1))
        );
        assert_eq!(log.record(ip("2001:db8:0:ff::9"), 1061, &budget).line, None);
        assert_eq!(
            log.record(ip("2001:db8:0:100::1"), 1061, &budget).line,
            Some((cidr("2001:db8:0:100::/56"), 1))
        );
    }

    #[test]
    fn a_scan_from_everywhere_is_summed_not_itemised() {
        let mut log = RefusedLog::with_seed(7);
        let budget = LineBudget::new();
        let (mut lines, mut counted) = (0u64, 0u64);
        let queries = 50_000u32;
        for i in 0..queries {
            // A different /24 every query, all within one minute.
            let r = log.record(
                IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i << 8))),
                5,
                &budget,
            );
            if let Some((_, n)) = r.line {
                lines += 1;
                counted += n;
            }
            counted += r.unitemised.unwrap_or(0);
            lines += u64::from(r.unitemised.is_some());
        }
        assert_eq!(
            lines,
            u64::from(LOG_LINES_PER_MINUTE) + 1,
            "itemised lines + one summary"
        );
        // The next minute's summary accounts for the rest, or they still wait in the table.
        let r = log.record(ip("192.0.2.1"), 70, &budget);
        counted += r.unitemised.unwrap_or(0) + r.line.map_or(0, |l| l.1);
        let waiting: u64 = log.slots.iter().map(|s| s.pending).sum();
        assert_eq!(
            counted + waiting,
            u64::from(queries) + 1,
            "every query counted once"
        );
    }

    /// Issue 16 (5): a refused query takes no lock. Each thread counts in
    /// its own log, so a flood that reaches every worker makes none wait
    /// for another; only the line budget is shared.
    #[test]
    fn r16_each_thread_counts_refusals_in_its_own_log() {
        let budget = LineBudget::new();
        let first = RefusedLog::record_here(ip("198.51.100.7"), &budget);
        assert_eq!(first.line, Some((cidr("198.51.100.0/24"), 1)));
        assert_eq!(
            RefusedLog::record_here(ip("198.51.100.8"), &budget),
            RefusedReport::default(),
            "counted in this thread's log, no line yet"
        );
        // Another thread has a log of its own: its first query from the
        // same /24 gets its own first line.
        let other = std::thread::scope(|s| {
            s.spawn(|| RefusedLog::record_here(ip("198.51.100.9"), &budget))
                .join()
                .expect("thread")
        });
        assert_eq!(other.line, Some((cidr("198.51.100.0/24"), 1)));
    }

    /// The lines of every thread's log come from one budget a minute.
    #[test]
    fn r16_the_line_budget_is_shared_by_every_log() {
        let budget = LineBudget::new();
        let mut a = RefusedLog::with_seed(1);
        let mut b = RefusedLog::with_seed(2);
        let mut lines = 0;
        for i in 0..LOG_LINES_PER_MINUTE {
            let r = a.record(
                IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i << 8))),
                120,
                &budget,
            );
            lines += u32::from(r.line.is_some());
        }
        assert_eq!(lines, LOG_LINES_PER_MINUTE);
        // The minute's lines are spent: the other log counts, and waits.
        assert_eq!(b.record(ip("192.0.2.1"), 130, &budget).line, None);
        assert_eq!(
            b.record(ip("192.0.2.2"), 180, &budget).line,
            Some((cidr("192.0.2.0/24"), 2)),
            "next minute"
        );
    }
}
