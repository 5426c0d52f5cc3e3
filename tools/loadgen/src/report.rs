//! What the run did, printed as blast prints it: the lab's parsers and the
//! scripts in benches/ read these lines (`Queries per second:`, `Queries
//! lost:`, `Truncated answers:`, `Source addresses:`, `Rcodes:`, and the
//! percentiles), so their wording is an interface. The DoQ mode adds a
//! `Connections:` line.

use std::fmt;
use std::net::Ipv4Addr;

const RCODES: [&str; 16] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "R11", "R12", "R13", "R14", "R15",
];

/// Latencies by the microsecond, up to 2 s (later ones in the last bucket).
pub(crate) struct Latency {
    hist: Vec<u64>,
    sum_us: u64,
    max_us: u64,
}

impl Latency {
    const MAX_US: u64 = 2_000_000;

    pub(crate) fn new() -> Self {
        Self {
            hist: vec![0; Self::MAX_US as usize + 1],
            sum_us: 0,
            max_us: 0,
        }
    }

    pub(crate) fn add(&mut self, us: u64) {
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
        self.hist[us.min(Self::MAX_US) as usize] += 1;
    }

    /// The `p` quantile of `n` latencies, in ms (NaN when there are none).
    fn quantile(&self, p: f64, n: u64) -> f64 {
        let goal = ((p * n as f64).ceil() as u64).max(1);
        let mut acc = 0u64;
        for (us, &c) in self.hist.iter().enumerate() {
            acc += c;
            if acc >= goal {
                return us as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

/// The counts of one run.
pub(crate) struct Summary {
    /// How long it sent, in seconds: the rate is per this, as blast's is.
    pub(crate) secs: f64,
    pub(crate) sent: u64,
    pub(crate) done: u64,
    pub(crate) lost: u64,
    pub(crate) unexpected: u64,
    pub(crate) truncated: u64,
    pub(crate) rcodes: [u64; 16],
    pub(crate) latency: Latency,
    pub(crate) sources_used: usize,
    pub(crate) first: Ipv4Addr,
    /// The DoQ mode's connections (none for UDP).
    pub(crate) connections: Option<Connections>,
}

/// The QUIC connections of a DoQ run: opened before the clock started,
/// and opened again after the server closed one.
pub(crate) struct Connections {
    pub(crate) opened: usize,
    pub(crate) reopened: u64,
}

impl Summary {
    /// Nothing done yet, for a run of `secs` from addresses from `first` on.
    pub(crate) fn new(secs: f64, first: Ipv4Addr) -> Self {
        Self {
            secs,
            sent: 0,
            done: 0,
            lost: 0,
            unexpected: 0,
            truncated: 0,
            rcodes: [0; 16],
            latency: Latency::new(),
            sources_used: 0,
            first,
            connections: None,
        }
    }

    pub(crate) fn print(&self) {
        print!("{self}");
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct_of = |n: u64| 100.0 * n as f64 / self.sent.max(1) as f64;
        let rc: Vec<String> = self
            .rcodes
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| format!("{}={}", RCODES[i], c))
            .collect();
        let l = &self.latency;
        writeln!(f, "  Queries sent:         {}", self.sent)?;
        writeln!(
            f,
            "  Queries completed:    {} ({:.2}%)",
            self.done,
            pct_of(self.done)
        )?;
        writeln!(
            f,
            "  Queries lost:         {} ({:.2}%)",
            self.lost,
            pct_of(self.lost)
        )?;
        writeln!(f, "  Unexpected answers:   {}", self.unexpected)?;
        writeln!(f, "  Truncated answers:    {}", self.truncated)?;
        writeln!(
            f,
            "  Source addresses:     {} (from {})",
            self.sources_used, self.first
        )?;
        if let Some(c) = &self.connections {
            writeln!(
                f,
                "  Connections:          {} (reopened {})",
                c.opened, c.reopened
            )?;
        }
        writeln!(f, "  Run time (s):         {:.6}", self.secs)?;
        writeln!(
            f,
            "  Queries per second:   {:.6}",
            self.done as f64 / self.secs
        )?;
        writeln!(
            f,
            "  Average Latency (s):  {:.6} (min 0.000000, max {:.6})",
            l.sum_us as f64 / self.done.max(1) as f64 / 1e6,
            l.max_us as f64 / 1e6
        )?;
        writeln!(
            f,
            "Latency percentiles (ms): p50 {:.3} p99 {:.3} p999 {:.3}",
            l.quantile(0.5, self.done),
            l.quantile(0.99, self.done),
            l.quantile(0.999, self.done)
        )?;
        writeln!(f, "Rcodes: {}", rc.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value after `key` on the line that has it, as the scripts' sed
    /// expressions take it (`s/.*Queries lost: *\([0-9]*\).*/\1/p`).
    fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        let line = text.lines().find(|l| l.contains(key))?;
        let rest = line.split_once(key)?.1.trim_start();
        Some(rest.split([' ', '(']).next().unwrap_or(rest))
    }

    #[test]
    fn prints_the_lines_the_scripts_read() {
        let mut latency = Latency::new();
        for us in [100, 200, 300, 4000] {
            latency.add(us);
        }
        let mut rcodes = [0; 16];
        rcodes[3] = 3;
        rcodes[5] = 1;
        let s = Summary {
            secs: 2.0,
            sent: 5,
            done: 4,
            lost: 1,
            unexpected: 0,
            truncated: 2,
            rcodes,
            latency,
            sources_used: 4,
            first: Ipv4Addr::new(127, 1, 0, 0),
            connections: None,
        };
        let text = s.to_string();
        assert_eq!(field(&text, "Queries per second:"), Some("2.000000"));
        assert_eq!(field(&text, "Queries lost:"), Some("1"));
        assert_eq!(field(&text, "Truncated answers:"), Some("2"));
        assert_eq!(field(&text, "Source addresses:"), Some("4"));
        assert!(text.contains("\nRcodes: NXDOMAIN=3 REFUSED=1\n"), "{text}");
        assert!(text.contains("p50 0.200 p99 4.000 p999 4.000"), "{text}");
        assert!(text.contains("(min 0.000000, max 0.004000)"), "{text}");
        assert!(!text.contains("Connections:"), "UDP has none: {text}");
    }

    #[test]
    fn a_doq_run_says_how_many_connections() {
        let mut s = Summary::new(1.0, Ipv4Addr::new(127, 1, 0, 0));
        s.connections = Some(Connections {
            opened: 16,
            reopened: 1,
        });
        let text = s.to_string();
        assert_eq!(field(&text, "Connections:"), Some("16"));
        assert!(text.contains("(reopened 1)"), "{text}");
        assert_eq!(field(&text, "Queries per second:"), Some("0.000000"));
    }

    #[test]
    fn no_answers_no_percentiles() {
        assert!(Latency::new().quantile(0.5, 0).is_nan());
    }
}
