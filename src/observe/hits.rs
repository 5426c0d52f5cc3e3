//! The hit report: for each list, which clients asked for its names, when
//! first and last, how often, and what they asked last. It answers "which
//! machines still talk to the DPRK IT-worker domains?" without a log search.
//!
//! Memory is bounded: at most `max_clients` clients per list, the least
//! recently seen evicted first (and counted). Lists are kept by their slot,
//! which names the same list for the life of the process, so the report
//! runs on through reloads; it is shown and saved by list name.
//!
//! The report is written to `STATE/hits.json` now and then and at
//! shutdown, read back at start (so a restart keeps it), and read by
//! `embargo hits`; the HTTP API serves the same [`HitsFile`].

use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::state::{ListSlot, ListSlots};
use crate::wire::TypeName;

use super::event::name_text;
use super::querylog::ClientId;

/// One client of one list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitRow {
    pub list: String,
    /// As `[log] client_ip` shows it: an address, its /24 or /56, or a hash.
    pub client: String,
    pub count: u64,
    /// RFC 3339, milliseconds, UTC.
    pub first_seen: String,
    pub last_seen: String,
    pub last_name: String,
    pub last_type: String,
    /// When the last block was by an answer's address (response-IP
    /// blocking): the listed network it fell in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_net: Option<String>,
}

/// One list's part of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListSummary {
    pub list: String,
    /// Clients in the report now.
    pub clients: usize,
    /// Clients dropped to make room (least recently seen first).
    pub evicted: u64,
}

/// The report as saved to `STATE/hits.json` and served: rows most recent first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitsFile {
    /// When this was written (RFC 3339).
    pub written: String,
    /// The server that wrote it.
    pub pid: u32,
    pub max_clients: usize,
    /// Query log records written and dropped since that server started.
    pub log_written: u64,
    pub log_dropped: u64,
    /// Answers the rate limiter (`[rate_limit]`) dropped, or sent empty
    /// with TC=1, since that server started (absent in older files).
    #[serde(default)]
    pub rate_limited_dropped: u64,
    #[serde(default)]
    pub rate_limited_truncated: u64,
    pub lists: Vec<ListSummary>,
    pub hits: Vec<HitRow>,
}

impl HitsFile {
    /// Only `list`'s rows and summary.
    pub fn only(mut self, list: &str) -> Self {
        self.lists.retain(|l| l.list == list);
        self.hits.retain(|h| h.list == list);
        self
    }

    /// How long ago it was written (`None` if the time cannot be read).
    pub fn age(&self) -> Option<Duration> {
        humantime::parse_rfc3339(&self.written)
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
    }
}

#[derive(Debug)]
struct ClientHit {
    first_ms: u64,
    last_ms: u64,
    count: u64,
    /// Wire form, reused in place so an update allocates nothing once warm.
    last_name: Vec<u8>,
    last_type: u16,
    last_net: Option<crate::matcher::Net>,
}

#[derive(Debug)]
struct ListHits {
    clients: LruCache<ClientId, ClientHit>,
    evicted: u64,
}

/// Clients per list, bounded.
#[derive(Debug)]
pub struct HitReport {
    max_clients: NonZeroUsize,
    /// Indexed by list slot.
    lists: Vec<Option<ListHits>>,
}

impl HitReport {
    pub fn new(max_clients: NonZeroUsize) -> Self {
        Self {
            max_clients,
            lists: Vec::new(),
        }
    }

    /// Counts a block of `name` (wire form) / `qtype` for `client` by `list` at `time_ms`.
    /// Returns whether this is the client's first hit on the list, as far
    /// as the report knows (it holds no row for them): what `[alerts]`
    /// posts.
    pub fn record(
        &mut self,
        list: ListSlot,
        client: ClientId,
        time_ms: u64,
        name: &[u8],
        qtype: u16,
    ) -> bool {
        if list == ListSlot::NONE {
            return false;
        }
        let i = usize::from(list.0);
        if self.lists.len() <= i {
            self.lists.resize_with(i + 1, || None);
        }
        let max = self.max_clients;
        let hits = self.lists[i].get_or_insert_with(|| ListHits {
            clients: LruCache::new(max),
            evicted: 0,
        });
        if let Some(c) = hits.clients.get_mut(&client) {
            c.count += 1;
            // Events from several workers can arrive slightly out of order.
            if time_ms >= c.last_ms {
                c.last_ms = time_ms;
                c.last_name.clear();
                c.last_name.extend_from_slice(name);
                c.last_type = qtype;
                c.last_net = None;
            }
            c.first_ms = c.first_ms.min(time_ms);
            return false;
        }
        let hit = ClientHit {
            first_ms: time_ms,
            last_ms: time_ms,
            count: 1,
            last_name: name.to_vec(),
            last_type: qtype,
            last_net: None,
        };
        if let Some((old, _)) = hits.clients.push(client, hit)
            && old != client
        {
            hits.evicted += 1;
        }
        true
    }

    /// Notes the listed network of the block just recorded for `client`
    /// by `list` ([`Self::record`]): an answer's address fell in it.
    pub fn record_net(&mut self, list: ListSlot, client: ClientId, net: crate::matcher::Net) {
        if let Some(c) = self
            .lists
            .get_mut(usize::from(list.0))
            .and_then(Option::as_mut)
            .and_then(|hits| hits.clients.peek_mut(&client))
        {
            c.last_net = Some(net);
        }
    }

    /// Every client of every list (or of `list` alone), most recently seen first.
    pub fn rows(&self, slots: &ListSlots, list: Option<&str>) -> Vec<HitRow> {
        let mut rows: Vec<(u64, HitRow)> = Vec::new();
        for (i, hits) in self.lists.iter().enumerate() {
            let Some(hits) = hits else { continue };
            let Some(name) = u16::try_from(i).ok().and_then(|s| slots.name(ListSlot(s))) else {
                continue;
            };
            if list.is_some_and(|l| l != &*name) {
                continue;
            }
            for (client, c) in hits.clients.iter() {
                rows.push((
                    c.last_ms,
                    HitRow {
                        list: name.to_string(),
                        client: client.to_string(),
                        count: c.count,
                        first_seen: rfc3339_ms(c.first_ms),
                        last_seen: rfc3339_ms(c.last_ms),
                        last_name: name_text(&c.last_name),
                        last_type: TypeName(c.last_type).to_string(),
                        last_net: c.last_net.map(|n| n.to_string()),
                    },
                ));
            }
        }
        // Stable: within one list, ties keep the LRU's most-recent-first order.
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        rows.into_iter().map(|(_, r)| r).collect()
    }

    /// Per list: clients held and clients evicted.
    pub fn summary(&self, slots: &ListSlots) -> Vec<ListSummary> {
        let mut out: Vec<ListSummary> = self
            .lists
            .iter()
            .enumerate()
            .filter_map(|(i, hits)| {
                let hits = hits.as_ref()?;
                let name = slots.name(ListSlot(u16::try_from(i).ok()?))?;
                Some(ListSummary {
                    list: name.to_string(),
                    clients: hits.clients.len(),
                    evicted: hits.evicted,
                })
            })
            .collect();
        out.sort_by(|a, b| a.list.cmp(&b.list));
        out
    }

    /// Takes back a report saved by an earlier run. Rows that cannot be
    /// read are skipped; a list over `max_clients` keeps its most recent.
    pub fn restore(&mut self, file: &HitsFile, slots: &ListSlots) {
        let types: std::collections::HashMap<&str, u16> = (0..=u16::MAX)
            .filter_map(|t| TypeName(t).mnemonic().map(|m| (m, t)))
            .collect();
        for row in file.hits.iter().rev() {
            let (Ok(client), Some(first), Some(last), Ok(name)) = (
                row.client.parse::<ClientId>(),
                unix_ms(&row.first_seen),
                unix_ms(&row.last_seen),
                crate::matcher::NameKey::from_text(&row.last_name, true),
            ) else {
                continue;
            };
            let qtype = match row.last_type.strip_prefix("TYPE") {
                Some(n) => n.parse().unwrap_or(0),
                None => types.get(row.last_type.as_str()).copied().unwrap_or(0),
            };
            let slot = slots.slot(&row.list);
            // Restored rows are not first hits: they were seen before.
            let _ = self.record(slot, client, last, name.as_bytes(), qtype);
            if let Some(Some(hits)) = self.lists.get_mut(usize::from(slot.0))
                && let Some(c) = hits.clients.get_mut(&client)
            {
                c.count = row.count;
                c.first_ms = first;
            }
        }
        for s in &file.lists {
            let slot = slots.slot(&s.list);
            if let Some(Some(hits)) = self.lists.get_mut(usize::from(slot.0)) {
                hits.evicted += s.evicted;
            }
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 (`2026-11-29T21:30:31.123Z`).
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn unix_ms(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::NameKey;

    fn name(s: &str) -> Vec<u8> {
        NameKey::from_text(s, true)
            .expect("name")
            .as_bytes()
            .to_vec()
    }

    fn ip(s: &str) -> ClientId {
        ClientId::Addr(s.parse().expect("ip"))
    }

    fn report(max: usize) -> (HitReport, ListSlots) {
        let slots = ListSlots::default();
        assert_eq!(slots.slot("dprk"), ListSlot(0));
        assert_eq!(slots.slot("ofac"), ListSlot(1));
        (HitReport::new(NonZeroUsize::new(max).expect("max")), slots)
    }

    #[test]
    fn counts_per_list_per_client_most_recent_first() {
        let (mut r, slots) = report(10);
        r.record(
            ListSlot(0),
            ip("10.0.0.1"),
            1_000,
            &name("a.dprk.example"),
            1,
        );
        r.record(
            ListSlot(0),
            ip("10.0.0.2"),
            2_000,
            &name("b.dprk.example"),
            28,
        );
        r.record(
            ListSlot(0),
            ip("10.0.0.1"),
            3_000,
            &name("c.dprk.example"),
            16,
        );
        r.record(
            ListSlot(1),
            ip("10.0.0.1"),
            2_500,
            &name("x.ofac.example"),
            1,
        );
        let rows = r.rows(&slots, None);
        let seen: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.list.as_str(), r.client.as_str(), r.count))
            .collect();
        assert_eq!(
            seen,
            [
                ("dprk", "10.0.0.1", 2),
                ("ofac", "10.0.0.1", 1),
                ("dprk", "10.0.0.2", 1),
            ]
        );
        assert_eq!(rows[0].first_seen, "1970-01-01T00:00:01.000Z");
        assert_eq!(rows[0].last_seen, "1970-01-01T00:00:03.000Z");
        assert_eq!(rows[0].last_name, "c.dprk.example");
        assert_eq!(rows[0].last_type, "TXT");
        let only = r.rows(&slots, Some("ofac"));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].last_name, "x.ofac.example");
    }

    #[test]
    fn the_least_recently_seen_client_is_evicted_and_counted() {
        let (mut r, slots) = report(2);
        r.record(ListSlot(0), ip("10.0.0.1"), 1, &name("a.example"), 1);
        r.record(ListSlot(0), ip("10.0.0.2"), 2, &name("a.example"), 1);
        r.record(ListSlot(0), ip("10.0.0.1"), 3, &name("a.example"), 1);
        r.record(ListSlot(0), ip("10.0.0.3"), 4, &name("a.example"), 1);
        let clients: Vec<String> = r.rows(&slots, None).into_iter().map(|r| r.client).collect();
        assert_eq!(clients, ["10.0.0.3", "10.0.0.1"]);
        assert_eq!(
            r.summary(&slots),
            [ListSummary {
                list: "dprk".into(),
                clients: 2,
                evicted: 1
            }]
        );
    }

    /// Issue 20: what `[alerts]` posts is the report's first sight of a
    /// client on a list; a restored client is not new, an evicted one is.
    #[test]
    fn r20_the_first_hit_of_a_client_on_a_list_is_told() {
        let (mut r, slots) = report(2);
        assert!(r.record(ListSlot(0), ip("10.0.0.1"), 1, &name("a.example"), 1));
        assert!(!r.record(ListSlot(0), ip("10.0.0.1"), 2, &name("b.example"), 1));
        assert!(r.record(ListSlot(1), ip("10.0.0.1"), 3, &name("a.example"), 1));
        assert!(r.record(ListSlot(0), ip("10.0.0.2"), 4, &name("a.example"), 1));
        assert!(!r.record(ListSlot::NONE, ip("10.0.0.9"), 5, &name("a.example"), 1));
        let file = HitsFile {
            written: rfc3339_ms(6),
            pid: 1,
            max_clients: 2,
            log_written: 0,
            log_dropped: 0,
            rate_limited_dropped: 0,
            rate_limited_truncated: 0,
            lists: r.summary(&slots),
            hits: r.rows(&slots, None),
        };
        let mut again = HitReport::new(NonZeroUsize::new(2).expect("max"));
        again.restore(&file, &slots);
        assert!(!again.record(ListSlot(0), ip("10.0.0.1"), 7, &name("c.example"), 1));
        // A third client evicts the least recently seen (10.0.0.2), who is new again.
        assert!(again.record(ListSlot(0), ip("10.0.0.3"), 8, &name("a.example"), 1));
        assert!(again.record(ListSlot(0), ip("10.0.0.2"), 9, &name("a.example"), 1));
    }

    #[test]
    fn a_saved_report_is_taken_back() {
        let (mut r, slots) = report(10);
        r.record(
            ListSlot(1),
            ip("10.0.0.1"),
            1_000,
            &name("x.ofac.example"),
            1,
        );
        r.record(
            ListSlot(1),
            ip("10.0.0.1"),
            5_000,
            &name("y.ofac.example"),
            65534,
        );
        r.record(
            ListSlot(0),
            ClientId::Hash(0xabc),
            3_000,
            &name("a.dprk.example"),
            28,
        );
        let file = HitsFile {
            written: rfc3339_ms(6_000),
            pid: 1,
            max_clients: 10,
            log_written: 0,
            log_dropped: 0,
            rate_limited_dropped: 0,
            rate_limited_truncated: 0,
            lists: r.summary(&slots),
            hits: r.rows(&slots, None),
        };
        let json = serde_json::to_string(&file).expect("json");
        let back: HitsFile = serde_json::from_str(&json).expect("parse");
        // A new process: other slots for the same names.
        let slots2 = ListSlots::default();
        assert_eq!(slots2.slot("other"), ListSlot(0));
        let mut r2 = HitReport::new(NonZeroUsize::new(10).expect("max"));
        r2.restore(&back, &slots2);
        assert_eq!(r2.rows(&slots2, None), file.hits);
        assert_eq!(back.clone().only("dprk").hits.len(), 1);
    }
}
