//! Where every query's fate is counted: by the row (interval) and by the
//! second in which it was sent, never by when its answer came, so that a
//! stall shows in the minute that suffered it.

use crate::malformed::KINDS;
use crate::mix::{CLASSES, MALFORMED};
use crate::rcode::RCODES;
use crate::reload::Reload;
use crate::sample::Sample;
use crate::table::Slot;

/// A log-linear latency histogram in microseconds: exact below 256 µs,
/// then 32 buckets per power of two (3 %).
#[derive(Clone)]
pub(crate) struct Hist(Vec<u64>);

impl Hist {
    const SIZE: usize = 256 + 32 * 32;

    pub(crate) fn new() -> Self {
        Self(vec![0; Self::SIZE])
    }

    fn bucket(us: u64) -> usize {
        if us < 256 {
            return us as usize;
        }
        let e = 63 - us.leading_zeros() as usize; // >= 8
        (256 + (e - 8) * 32 + ((us >> (e - 5)) & 31) as usize).min(Self::SIZE - 1)
    }

    /// The upper bound of a bucket, in µs.
    fn bound(b: usize) -> u64 {
        if b < 256 {
            return b as u64;
        }
        let e = (b - 256) / 32 + 8;
        let m = ((b - 256) % 32) as u64;
        ((32 + m + 1) << (e - 5)) - 1
    }

    pub(crate) fn add(&mut self, us: u64) {
        self.0[Self::bucket(us)] += 1;
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a += b;
        }
    }

    /// The `p` quantile in ms, or None when empty.
    pub(crate) fn quantile(&self, p: f64) -> Option<f64> {
        let n: u64 = self.0.iter().sum();
        if n == 0 {
            return None;
        }
        let goal = ((p * n as f64).ceil() as u64).max(1);
        let mut acc = 0;
        for (b, c) in self.0.iter().enumerate() {
            acc += c;
            if acc >= goal {
                return Some(Self::bound(b) as f64 / 1000.0);
            }
        }
        None
    }
}

/// One class's queries in one row (or in the total).
#[derive(Clone)]
pub(crate) struct ClassStats {
    pub(crate) sent: u64,
    pub(crate) answered: u64,
    /// No answer within the timeout to a query that is owed one.
    pub(crate) lost: u64,
    /// Malformed packets with no answer (none is owed).
    pub(crate) unanswered: u64,
    pub(crate) truncated: u64,
    pub(crate) rcodes: [u64; RCODES.len()],
    pub(crate) hist: Hist,
}

impl ClassStats {
    pub(crate) fn new() -> Self {
        Self {
            sent: 0,
            answered: 0,
            lost: 0,
            unanswered: 0,
            truncated: 0,
            rcodes: [0; RCODES.len()],
            hist: Hist::new(),
        }
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.lost += o.lost;
        self.unanswered += o.unanswered;
        self.truncated += o.truncated;
        for (a, b) in self.rcodes.iter_mut().zip(&o.rcodes) {
            *a += b;
        }
        self.hist.merge(&o.hist);
    }
}

/// One interval: its queries' fates, the events in it, the machine at its end.
pub(crate) struct Row {
    pub(crate) label: String,
    /// Seconds since the start.
    pub(crate) start: f64,
    pub(crate) len: f64,
    pub(crate) classes: Vec<ClassStats>,
    /// Per malformed kind: sent, answered, and the answers by rcode.
    pub(crate) kinds: Vec<(u64, u64, [u64; RCODES.len()])>,
    /// Queries due that could not be sent (no free ID, send buffer full,
    /// TCP backlog): the generator, not the server, fell behind.
    pub(crate) skipped: u64,
    /// How far behind its schedule the generator was at worst, in µs.
    pub(crate) lag_max_us: u64,
    pub(crate) tcp_connects: u64,
    pub(crate) tcp_connect_failures: u64,
    /// Connections closed by the server with queries in flight.
    pub(crate) tcp_closed: u64,
    pub(crate) proxy_forwarded: u64,
    pub(crate) proxy_dropped: u64,
    /// The upstream's stall in this row, seconds since the start.
    pub(crate) stall: Option<(f64, f64)>,
    pub(crate) reload: Option<Reload>,
    pub(crate) end: Sample,
}

impl Row {
    /// An empty row from `start` to `end` (ns since the start).
    pub(crate) fn new(label: String, start: u64, end: u64, stall: Option<(u64, u64)>) -> Self {
        Self {
            label,
            start: start as f64 / 1e9,
            len: (end - start) as f64 / 1e9,
            classes: vec![ClassStats::new(); CLASSES.len()],
            kinds: vec![(0, 0, [0; RCODES.len()]); KINDS.len()],
            skipped: 0,
            lag_max_us: 0,
            tcp_connects: 0,
            tcp_connect_failures: 0,
            tcp_closed: 0,
            proxy_forwarded: 0,
            proxy_dropped: 0,
            stall: stall.map(|(a, b)| (a as f64 / 1e9, b as f64 / 1e9)),
            reload: None,
            end: Sample::default(),
        }
    }
}

/// One second of the run, for the timeline in the JSON file.
#[derive(Clone, Copy, Default)]
pub(crate) struct Second {
    pub(crate) sent: u64,
    pub(crate) answered: u64,
    pub(crate) lost: u64,
    pub(crate) servfail: u64,
    pub(crate) lag_max_us: u64,
    /// The machine at the end of the second.
    pub(crate) end: Sample,
}

/// Where every query's fate is counted: by interval and by second.
pub(crate) struct Stats {
    pub(crate) rows: Vec<Row>,
    pub(crate) secs: Vec<Second>,
}

impl Stats {
    pub(crate) fn sec(&mut self, sent_ns: u64) -> &mut Second {
        let i = ((sent_ns / 1_000_000_000) as usize).min(self.secs.len() - 1);
        &mut self.secs[i]
    }

    pub(crate) fn sent(&mut self, row: usize, class: usize, now: u64) {
        self.rows[row].classes[class].sent += 1;
        if class != MALFORMED {
            self.sec(now).sent += 1;
        }
    }

    /// An answer to the query in `slot`: its header flags (bytes 2 and 3),
    /// its rcode, and how long it took.
    pub(crate) fn answer(&mut self, slot: Slot, flags: [u8; 2], rcode: usize, latency_ns: u64) {
        let class = usize::from(slot.class);
        let row = &mut self.rows[usize::from(slot.row)];
        let c = &mut row.classes[class];
        c.answered += 1;
        c.truncated += u64::from(flags[0] & 0x02 != 0);
        c.rcodes[rcode] += 1;
        c.hist.add(latency_ns / 1000);
        if class == MALFORMED {
            let k = &mut row.kinds[usize::from(slot.kind)];
            k.1 += 1;
            k.2[rcode] += 1;
        } else {
            let s = self.sec(slot.sent_ns);
            s.answered += 1;
            s.servfail += u64::from(rcode == 2);
        }
    }

    /// No answer to the query in `slot` within the timeout.
    pub(crate) fn expired(&mut self, slot: Slot) {
        let c = &mut self.rows[usize::from(slot.row)].classes[usize::from(slot.class)];
        if usize::from(slot.class) == MALFORMED {
            c.unanswered += 1;
        } else {
            c.lost += 1;
            self.sec(slot.sent_ns).lost += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_bounds_its_latencies_within_3_percent() {
        let mut last = 0;
        for us in (0..5_000_000u64).step_by(97) {
            let b = Hist::bucket(us);
            assert!(b >= last, "buckets grow with the latency");
            last = b;
            let bound = Hist::bound(b);
            assert!(bound >= us, "{us} µs: bound {bound}");
            assert!(
                bound as f64 <= us as f64 * 1.032 + 1.0,
                "{us} µs: bound {bound}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::new();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=100 {
            h.add(us);
        }
        h.add(10_000);
        assert_eq!(h.quantile(0.5), Some(0.051));
        assert_eq!(h.quantile(0.99), Some(0.100));
        let top = h.quantile(1.0).unwrap();
        assert!((10.0..10.4).contains(&top), "{top}");
    }

    #[test]
    fn a_fate_is_charged_to_the_row_and_second_it_was_sent_in() {
        let mut s = Stats {
            rows: vec![Row::new("1".into(), 0, 2_000_000_000, None)],
            secs: vec![Second::default(); 3],
        };
        let slot = |sent_ns, class: usize| {
            let mut t = crate::table::Table::new(4);
            let id = t.take(sent_ns, 0, class, 3).unwrap();
            t.finish(id).unwrap()
        };
        s.sent(0, 0, 1_500_000_000);
        s.answer(slot(1_500_000_000, 0), [0x80, 2], 2, 4_000_000);
        s.expired(slot(200, 1));
        s.expired(slot(200, MALFORMED));
        s.answer(slot(200, MALFORMED), [0x80, 1], 16, 1000);
        assert_eq!(
            (s.secs[1].sent, s.secs[1].answered, s.secs[1].servfail),
            (1, 1, 1)
        );
        assert_eq!((s.secs[0].lost, s.rows[0].classes[1].lost), (1, 1));
        let bad = &s.rows[0].classes[MALFORMED];
        assert_eq!((bad.unanswered, bad.lost, bad.rcodes[16]), (1, 0, 1));
        assert_eq!(s.rows[0].kinds[3].2[16], 1);
    }
}
