//! The per-list rate limit on first-hit posts, as plain values and a clock
//! passed in (milliseconds since the epoch), so that it is tested without
//! waiting.
//!
//! Each list has a window of its own, opened by its first alert and
//! `window` long. The first `per_list` first hits in it are posted; the rest
//! are counted, with their distinct clients and the first few as examples,
//! and when the window ends the list gets one summary instead of the posts.
//! A window with nothing held back ends quietly. A flood of ten thousand
//! new clients on one list is therefore `per_list` posts and one summary a
//! window, and never touches another list's allowance.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::FirstHit;

/// Examples a summary carries: enough to start an investigation from.
pub(super) const EXAMPLES: usize = 5;
/// Distinct clients counted per summary, at most: the set's memory is
/// bounded whatever the flood (past it, `clients` says "at least").
pub(super) const MAX_DISTINCT: usize = 10_000;

/// The first hits one list held back in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    pub list: Arc<str>,
    pub count: u64,
    /// Distinct clients among them (at most [`MAX_DISTINCT`]).
    pub clients: usize,
    /// The first [`EXAMPLES`] of them.
    pub examples: Vec<FirstHit>,
    /// When the window opened and when it ended, ms since the epoch.
    pub since_ms: u64,
    pub until_ms: u64,
}

#[derive(Debug)]
struct Window {
    opened_ms: u64,
    posted: u32,
    held: u64,
    clients: HashSet<String>,
    examples: Vec<FirstHit>,
}

/// Every list's current window.
#[derive(Debug)]
pub(super) struct Limiter {
    per_list: u32,
    window_ms: u64,
    lists: HashMap<Arc<str>, Window>,
}

impl Limiter {
    pub(super) fn new(per_list: u32, window: std::time::Duration) -> Self {
        Self {
            per_list,
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1),
            lists: HashMap::new(),
        }
    }

    /// Whether `hit`, arriving at `now_ms`, is posted (true) or held back
    /// for its list's summary (false). A window that has ended is closed
    /// by [`Self::due`], which the caller runs first.
    pub(super) fn admit(&mut self, hit: &FirstHit, now_ms: u64) -> bool {
        let w = self
            .lists
            .entry(hit.list.clone())
            .or_insert_with(|| Window {
                opened_ms: now_ms,
                posted: 0,
                held: 0,
                clients: HashSet::new(),
                examples: Vec::new(),
            });
        if w.posted < self.per_list {
            w.posted += 1;
            return true;
        }
        w.held += 1;
        if w.clients.len() < MAX_DISTINCT && !w.clients.contains(&hit.client) {
            w.clients.insert(hit.client.clone());
        }
        if w.examples.len() < EXAMPLES {
            w.examples.push(hit.clone());
        }
        false
    }

    /// Closes every window that has ended by `now_ms`: the summaries of
    /// those that held first hits back, oldest window first.
    pub(super) fn due(&mut self, now_ms: u64) -> Vec<Summary> {
        let window_ms = self.window_ms;
        let ended = |w: &Window| now_ms.saturating_sub(w.opened_ms) >= window_ms;
        if !self.lists.values().any(ended) {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.lists.retain(|list, w| {
            if !ended(w) {
                return true;
            }
            if w.held > 0 {
                out.push(Summary {
                    list: list.clone(),
                    count: w.held,
                    clients: w.clients.len(),
                    examples: std::mem::take(&mut w.examples),
                    since_ms: w.opened_ms,
                    until_ms: w.opened_ms.saturating_add(window_ms),
                });
            }
            false
        });
        out.sort_by(|a, b| (a.since_ms, &a.list).cmp(&(b.since_ms, &b.list)));
        out
    }

    /// Closes every window now, whatever its age (at shutdown): what was
    /// held back is summarised rather than lost.
    pub(super) fn flush(&mut self, now_ms: u64) -> Vec<Summary> {
        let mut out: Vec<Summary> = self
            .lists
            .drain()
            .filter(|(_, w)| w.held > 0)
            .map(|(list, w)| Summary {
                list,
                count: w.held,
                clients: w.clients.len(),
                examples: w.examples,
                since_ms: w.opened_ms,
                until_ms: now_ms,
            })
            .collect();
        out.sort_by(|a, b| (a.since_ms, &a.list).cmp(&(b.since_ms, &b.list)));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn hit(list: &str, client: &str) -> FirstHit {
        FirstHit {
            time_ms: 0,
            list: list.into(),
            client: client.into(),
            client_id: None,
            group: None,
            name: "www.seized.example".into(),
            qtype: "A".into(),
            entry: Some("seized.example".into()),
            net: None,
            action: Some("nxdomain"),
        }
    }

    #[test]
    fn a_flood_is_per_list_posts_then_one_summary_when_the_window_ends() {
        let mut l = Limiter::new(3, Duration::from_secs(60));
        let posted: Vec<bool> = (0..1000)
            .map(|i| {
                l.admit(
                    &hit("dprk", &format!("10.0.{}.{}", i / 250, i % 250)),
                    1_000 + i,
                )
            })
            .collect();
        assert_eq!(posted.iter().filter(|p| **p).count(), 3);
        assert!(posted[..3].iter().all(|p| *p), "the first three go out");
        // Another list has its own allowance.
        assert!(l.admit(&hit("ofac", "10.9.9.9"), 2_000));
        assert!(l.due(60_999).is_empty(), "the window is still open");
        let s = l.due(61_000);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(&*s[0].list, "dprk");
        assert_eq!(s[0].count, 997);
        assert_eq!(s[0].clients, 997);
        assert_eq!(s[0].examples.len(), EXAMPLES);
        assert_eq!(s[0].examples[0].client, "10.0.0.3");
        assert_eq!((s[0].since_ms, s[0].until_ms), (1_000, 61_000));
        // ofac's window (opened at 2 s) held nothing back: it ends quietly.
        assert!(l.due(62_000).is_empty());
        // A new window opens with a full allowance.
        assert!(l.admit(&hit("dprk", "10.1.0.1"), 70_000));
        assert!(l.due(200_000).is_empty());
    }

    #[test]
    fn distinct_clients_are_counted_once_and_bounded() {
        let mut l = Limiter::new(1, Duration::from_secs(1));
        for i in 0..(MAX_DISTINCT + 500) {
            // Each client twice (an evicted client seen again).
            l.admit(&hit("x", &format!("c{i}")), 0);
            l.admit(&hit("x", &format!("c{i}")), 0);
        }
        let s = l.due(1_000);
        assert_eq!(s[0].count, 2 * (MAX_DISTINCT as u64 + 500) - 1);
        assert_eq!(s[0].clients, MAX_DISTINCT);
    }

    #[test]
    fn a_flush_summarises_open_windows() {
        let mut l = Limiter::new(1, Duration::from_secs(60));
        assert!(l.admit(&hit("a", "1"), 10));
        assert!(!l.admit(&hit("a", "2"), 20));
        assert!(l.admit(&hit("b", "1"), 30));
        let s = l.flush(40);
        assert_eq!(s.len(), 1);
        assert_eq!((&*s[0].list, s[0].count, s[0].until_ms), ("a", 1, 40));
        assert!(l.flush(50).is_empty());
    }
}
