//! Serving past expiry and refreshing before it: an expired answer kept
//! within `stale_max` is served (TTL 30, EDE 3) when every upstream fails,
//! and then for 30 s without asking them (RFC 8767); a popular answer
//! near its expiry is handed out as [`Found::Refresh`](super::Found::Refresh)
//! so that the server fetches it again in the background (as unbound's
//! `prefetch`).

use std::sync::atomic::Ordering;

use super::entry::{Entry, answer_as_asked};
use super::shard::Counters;
use super::{Cache, CacheKey, Tag};
use crate::policy::QueryFacts;

/// After every upstream failed for a key, its stale answer is served at once
/// for this long, without asking them again (RFC 8767 section 5's "failure
/// recheck timer", 30 s as suggested there): a client during an outage gets
/// its answer now rather than after the whole upstream timeout.
const STALE_RECHECK_MS: u64 = 30_000;
/// A hit prefetches only when the entry was hit at least this often since it
/// was stored: the names worth an upstream query before anyone needs it.
const PREFETCH_HITS: u32 = 3;
/// ... and when less than 1/10 of its TTL is left (as unbound's `prefetch`).
const PREFETCH_FRACTION: u64 = 10;
/// Prefetches in flight at most, cache-wide: a burst of popular names
/// expiring at once must not become a burst upstream.
const MAX_PREFETCHES: usize = 64;

impl Cache {
    /// Whether a fresh hit on `e` at `now` starts a background refresh: the
    /// entry is popular (hit [`PREFETCH_HITS`] times) and less than
    /// 1/[`PREFETCH_FRACTION`] of its TTL is left, none is running for it,
    /// and fewer than [`MAX_PREFETCHES`] run cache-wide. If so, it is
    /// marked and counted, and [`Cache::prefetch_done`] must follow.
    #[inline]
    pub(super) fn start_prefetch(&self, e: &mut Entry, counters: &mut Counters, now: u64) -> bool {
        if self.rules.prefetch
            && !e.prefetching
            && e.hits >= PREFETCH_HITS
            && (e.expires - now) * PREFETCH_FRACTION < u64::from(e.ttl) * 1000
            && self.prefetching.load(Ordering::Relaxed) < MAX_PREFETCHES
        {
            e.prefetching = true;
            counters.prefetches += 1;
            self.prefetching.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Every upstream failed for `key`, or answered SERVFAIL (`why`): writes
    /// its expired answer into `out` if one is kept within `stale_max`
    /// (RFC 8767), with TTLs of [`STALE_TTL`](super::STALE_TTL) and an EDE 3 when the query
    /// has EDNS, and serves it without forwarding for the next 30 s. A
    /// fresh entry (another query refreshed it meanwhile) is served as a
    /// hit. The entry's tag, or None when there is nothing to serve.
    pub fn stale(
        &self,
        key: &CacheKey,
        query: &[u8],
        q: &QueryFacts,
        why: &str,
        out: &mut Vec<u8>,
    ) -> Option<Tag> {
        self.stale_kind_at(key, query, q, why, self.now(), out)
    }

    fn stale_kind_at(
        &self,
        key: &CacheKey,
        query: &[u8],
        q: &QueryFacts,
        why: &str,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Option<Tag> {
        if self.rules.stale_max_ms == 0 {
            return None;
        }
        let (hash, shard) = self.locate(key)?;
        let mut guard = shard.lock().ok()?;
        let s = &mut *guard;
        let i = s.find(hash, key.as_bytes())?;
        let e = &mut s.slots[i];
        let (tag, edns) = (e.tag, q.edns.is_some());
        if now < e.expires {
            e.write(now, None, edns, out);
        } else if now - e.expires < self.rules.stale_max_ms {
            e.write(now, Some(why), edns, out);
            e.recheck = now + STALE_RECHECK_MS;
            s.counters.stale += 1;
        } else {
            return None;
        }
        drop(guard);
        answer_as_asked(query, q, out);
        Some(tag)
    }

    /// A background refresh that [`Found::Refresh`](super::Found::Refresh)
    /// started has ended (its answer inserted, or not).
    pub fn prefetch_done(&self) {
        self.prefetching.fetch_sub(1, Ordering::Relaxed);
    }

    /// [`Cache::stale`] at `now`: whether something was served (tests).
    #[cfg(test)]
    pub(super) fn stale_at(
        &self,
        key: &CacheKey,
        query: &[u8],
        q: &QueryFacts,
        why: &str,
        now: u64,
        out: &mut Vec<u8>,
    ) -> bool {
        self.stale_kind_at(key, query, q, why, now, out).is_some()
    }
}
