//! The answer cache: upstream responses kept as bytes, served with the
//! client's ID and question and with TTLs counted down; kept past their
//! expiry for when every upstream fails (RFC 8767), refreshed before they
//! expire when popular, and bounded in entries and in bytes by a policy
//! that a flood of one-off names cannot flush.
//!
//! ```text
//!  get(key) ─► hash (xxh3, random seed) ─► shard (mutex) ─► sketch.touch: the key was asked once more
//!               └► table ─► fresh   → copy + patches              Fresh (or Refresh: popular, ≤10 % of its TTL left)
//!                         ├► expired, upstream failing recently → TTL 30 + EDE 3     Stale
//!                         └► missing, or expired                                    Miss → forward
//!  insert(key, answer) ─► TTLs clamped ─► full? sample 5 entries, the least useful is the victim:
//!                          expired ones first, then the least frequent; a new key gets in only if
//!                          the sketch says it is asked more often than a fresh victim
//!  stale(key)  (every upstream failed) ─► expired within stale_max → TTL 30 + EDE 3
//! ```
//!
//! Keeping wire bytes (plus the offsets of their TTL fields) means a hit is a
//! copy and a few in-place patches; nothing is decoded or re-encoded, nothing
//! allocated. Keys are the lowercase question plus the flags that change
//! what the upstream sends (DO, CD): upstream is always asked with EDNS, so
//! one entry serves clients with and without it, and an answer is kept
//! with our OPT record last, which a client without EDNS does not get.
//!
//! Each entry carries a [`Tag`] from whoever stored it, handed back with
//! every hit and never read here: the server keeps in it what its rules
//! made of the answer, and under which rules (`server::handler`). The cache
//! knows nothing of lists or blocking. Sixteen mutex shards, each on its own
//! cache lines, keep workers from queueing on one lock; everything a hit
//! writes (the frequency sketch, the entry's hit count, the counters) lives
//! under the shard's lock, so a hit writes no cache line that the lock did
//! not already take.
//!
//! **Admission (TinyLFU).** Each shard keeps a count-min sketch of how often
//! each key was asked lately (4-bit counters, halved every 10 × the shard's
//! entries so the past fades), behind a doorkeeper bit set that takes a key's
//! first sighting, so that one-off names never reach the counters. When the
//! shard is full, a few entries are sampled and the least useful one is the
//! victim; a new answer replaces a fresh victim only if its key is asked
//! more often. A flood of random names is asked once each: it loses to every
//! entry asked twice, and the popular answers stay.
//!
//! **Memory.** Everything the cache holds is counted against `max_bytes`:
//! the slots, hash table and sketch allocated up front for `size` entries
//! (at most [`CacheConfig::fixed_bytes_max`]) and, for each
//! entry, one allocation holding key, answer and TTL offsets plus the
//! allocator's header. An answer over [`MAX_ENTRY_BYTES`] is not kept.
//!
//! The rooms: `entry.rs` is one cached answer (its layout, what of an
//! upstream answer may be kept and for how long, and how it is written
//! back for a client); `shard.rs` holds entries under one lock;
//! `admission.rs` decides which entry leaves and whether a new one gets in
//! (the sketch); `stale.rs` serves expired answers and starts the
//! refreshes of popular ones. This file is the cache itself, its key and
//! what it reports.

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use crate::config::CacheConfig;
use crate::matcher::{MAX_KEY, NameKey};
use crate::policy::QueryFacts;

mod admission;
mod entry;
mod shard;
mod stale;
#[cfg(test)]
mod tests;

use entry::{Entry, answer_as_asked, cacheable};
use shard::{Padded, Shard};

const SHARDS: usize = 16;
/// Largest answer kept, in bytes: what one UDP answer from the upstream can
/// be (`upstream` reads 4096). Bigger ones come only over TCP and are rare
/// (long TXT sets, DNSSEC keys); they are forwarded each time rather than
/// let one name pin 64 KiB.
pub const MAX_ENTRY_BYTES: usize = 4096;
/// The TTL of every record in a stale answer (RFC 8767 section 4 suggests 30 s):
/// long enough to spare the failing upstreams, short enough to pick up the
/// fresh answer soon after they come back.
pub const STALE_TTL: u32 = 30;

/// Lookup key: wire name, type, class and a flags byte (DO, CD), and for
/// a name of a `[[forward]]` zone, its set's key ([`CacheKey::with_set`]).
pub struct CacheKey {
    buf: [u8; MAX_KEY + 9],
    len: usize,
}

impl CacheKey {
    /// The key of a query.
    pub fn new(name: &NameKey, q: &QueryFacts) -> Self {
        let mut buf = [0u8; MAX_KEY + 9];
        let n = name.as_bytes();
        buf[..n.len()].copy_from_slice(n);
        buf[n.len()..n.len() + 2].copy_from_slice(&q.qtype.to_be_bytes());
        buf[n.len() + 2..n.len() + 4].copy_from_slice(&q.qclass.to_be_bytes());
        // Not whether the client used EDNS: upstream is asked with it either
        // way, and the answer's OPT is left out for a client without.
        let flags = (u8::from(q.edns.is_some_and(|e| e.dnssec_ok)) << 1)
            | (u8::from(q.flags & 0x0010 != 0) << 2);
        buf[n.len() + 4] = flags;
        Self {
            buf,
            len: n.len() + 5,
        }
    }

    /// The key of an answer from the upstream set keyed `set` (0, for
    /// `[upstream]`, changes nothing): answers are kept per set of servers,
    /// so that a reload moving a zone to other servers serves nothing the
    /// old ones said.
    #[inline]
    pub fn with_set(mut self, set: u32) -> Self {
        if set != 0 {
            self.buf[self.len..self.len + 4].copy_from_slice(&set.to_be_bytes());
            self.len += 4;
        }
        self
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What [`Cache::get`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing to serve: forward the query.
    Miss,
    /// A fresh answer is in `out`.
    Fresh,
    /// A fresh answer is in `out`, and the entry is popular and about to
    /// expire: refresh it in the background, then call
    /// [`Cache::prefetch_done`].
    Refresh,
    /// An expired answer is in `out` (TTL 30, EDE 3 with EDNS): the
    /// upstreams failed for it moments ago.
    Stale,
}

/// What the cache holds and has done, summed over its shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from a fresh entry.
    pub hits: u64,
    /// Lookups that found nothing to serve (forwarded).
    pub misses: u64,
    /// Answers stored (new keys and refreshes).
    pub inserts: u64,
    /// Entries removed to make room for another.
    pub evictions: u64,
    /// New answers not admitted: each key sampled for eviction was asked
    /// more often than theirs.
    pub rejected: u64,
    /// Stale answers served (RFC 8767).
    pub stale: u64,
    /// Background refreshes started.
    pub prefetches: u64,
    /// Entries held now, expired ones kept for serve-stale included.
    pub entries: usize,
    /// Bytes held now: the fixed tables plus every entry's allocation.
    pub bytes: usize,
    /// `size`, as the shards round it.
    pub max_entries: usize,
    /// `max_bytes`.
    pub max_bytes: usize,
}

/// How TTLs are clamped and how long expired answers live.
#[derive(Debug, Clone, Copy)]
struct Rules {
    min_ttl: u32,
    max_ttl: u32,
    negative_ttl_max: u32,
    stale_max_ms: u64,
    prefetch: bool,
}

/// What the caller stored with an answer ([`Cache::insert_tagged`]), handed
/// back with every hit ([`Cache::get`], [`Cache::stale`]). The cache keeps
/// it and never reads it: what it means (here, what the rules made of the
/// answer and under which rules) is the caller's business.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tag(pub u64);

/// A bounded cache of upstream answers.
pub struct Cache {
    shards: Box<[Padded]>,
    seed: u64,
    epoch: Instant,
    rules: Rules,
    /// Bytes allocated up front (slots, tables, sketches).
    fixed_bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// Background refreshes in flight.
    prefetching: AtomicUsize,
}

impl Cache {
    /// A cache bounded as `config` says; `size = 0` disables it.
    pub fn new(config: &CacheConfig) -> Self {
        Self::with_seed(config, rand::random())
    }

    /// [`Cache::new`] with a chosen hash seed, for reproducible tests. The
    /// seed keys the hash of every key: nobody who cannot read it can craft
    /// names that collide in the table or the sketch.
    fn with_seed(config: &CacheConfig, seed: u64) -> Self {
        let cap = config.size.div_ceil(SHARDS);
        let mut shards: Vec<Shard> = (0..SHARDS as u64)
            .map(|i| Shard::new(cap, seed ^ i))
            .collect();
        let fixed_bytes: usize = shards.iter().map(Shard::fixed_bytes).sum();
        let budget = config.max_bytes.saturating_sub(fixed_bytes) / SHARDS;
        for s in &mut shards {
            s.budget = budget;
        }
        Self {
            shards: shards.into_iter().map(|s| Padded(Mutex::new(s))).collect(),
            seed,
            epoch: Instant::now(),
            rules: Rules {
                min_ttl: config.min_ttl,
                max_ttl: config.max_ttl,
                negative_ttl_max: config.negative_ttl_max,
                stale_max_ms: u64::try_from(config.stale_max.as_millis()).unwrap_or(u64::MAX),
                prefetch: config.prefetch,
            },
            fixed_bytes,
            max_entries: cap * SHARDS,
            max_bytes: config.max_bytes,
            prefetching: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The key's hash and shard; `None` when the cache is off.
    fn locate(&self, key: &CacheKey) -> Option<(u64, &Mutex<Shard>)> {
        if self.max_entries == 0 {
            return None;
        }
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), self.seed);
        // Bits the table does not use for its own placement (low bits) or
        // tags (top 7): each shard's table gets evenly spread hashes.
        let shard = (hash >> 40) as usize % SHARDS;
        self.shards.get(shard).map(|p| (hash, &p.0))
    }

    /// Writes the cached answer for `key` into `out`, with the ID and question
    /// of `query` and TTLs reduced by the time spent in the cache.
    /// What was found, and (when something was written) the entry's tag.
    pub fn get(
        &self,
        key: &CacheKey,
        query: &[u8],
        q: &QueryFacts,
        out: &mut Vec<u8>,
    ) -> (Found, Tag) {
        self.get_kind_at(key, query, q, self.now(), out)
    }

    fn get_kind_at(
        &self,
        key: &CacheKey,
        query: &[u8],
        q: &QueryFacts,
        now: u64,
        out: &mut Vec<u8>,
    ) -> (Found, Tag) {
        let Some((hash, shard)) = self.locate(key) else {
            return (Found::Miss, Tag::default());
        };
        let Ok(mut guard) = shard.lock() else {
            return (Found::Miss, Tag::default());
        };
        let s = &mut *guard;
        s.sketch.touch(hash);
        let Some(i) = s.find(hash, key.as_bytes()) else {
            s.counters.misses += 1;
            return (Found::Miss, Tag::default());
        };
        let e = &mut s.slots[i];
        let (tag, edns) = (e.tag, q.edns.is_some());
        let found = if now < e.expires {
            e.hits = e.hits.saturating_add(1);
            e.write(now, None, edns, out);
            s.counters.hits += 1;
            if self.start_prefetch(e, &mut s.counters, now) {
                Found::Refresh
            } else {
                Found::Fresh
            }
        } else if now < e.recheck && now - e.expires < self.rules.stale_max_ms {
            e.write(now, Some("upstream failing: stale answer"), edns, out);
            s.counters.stale += 1;
            Found::Stale
        } else {
            if now - e.expires >= self.rules.stale_max_ms {
                s.remove(i);
            }
            s.counters.misses += 1;
            Found::Miss
        };
        drop(guard);
        if found != Found::Miss {
            answer_as_asked(query, q, out);
        }
        (found, tag)
    }

    /// Replaces the tag of `key`'s entry with `to` if it is still `from`
    /// (an answer stored meanwhile keeps its own): the caller re-read a
    /// hit and has a newer word on it.
    pub fn retag(&self, key: &CacheKey, from: Tag, to: Tag) {
        let Some((hash, shard)) = self.locate(key) else {
            return;
        };
        let Ok(mut s) = shard.lock() else {
            return;
        };
        if let Some(i) = s.find(hash, key.as_bytes())
            && let Some(e) = s.slots.get_mut(i)
            && e.tag == from
        {
            e.tag = to;
        }
    }

    /// Stores an upstream answer if it may be cached: NOERROR or NXDOMAIN,
    /// not truncated, every TTL above 0; positive answers for their
    /// smallest TTL clamped to `[min_ttl, max_ttl]`, negative ones (RFC
    /// 2308: only with an SOA) for min(SOA TTL, SOA MINIMUM,
    /// `negative_ttl_max`). Each TTL in `response` is clamped the same
    /// way, in place, so that the client of this answer sees what the
    /// next ones will, and none served outlives the entry. The answer
    /// should end with an OPT record: the one EDNS clients get (a client
    /// without EDNS gets the answer without it). Tagged with the default
    /// [`Tag`].
    pub fn insert(&self, key: &CacheKey, response: &mut [u8]) {
        self.insert_tagged(key, response, Tag::default());
    }

    /// [`Cache::insert`], with the tag every hit on the entry hands back.
    pub fn insert_tagged(&self, key: &CacheKey, response: &mut [u8], tag: Tag) {
        self.insert_tag_at(key, response, tag, &[], self.now());
    }

    /// [`Cache::insert_tagged`], with a note of at most 255 bytes kept in
    /// the entry's one allocation and never served: what the caller wants
    /// to know about the answer on a hit besides its tag ([`Cache::note`];
    /// here, what answer inspection matched in a block kept as such). A
    /// longer note is not kept.
    pub fn insert_noted(&self, key: &CacheKey, response: &mut [u8], tag: Tag, note: &[u8]) {
        let note = if note.len() <= usize::from(u8::MAX) {
            note
        } else {
            &[]
        };
        self.insert_tag_at(key, response, tag, note, self.now());
    }

    /// Calls `f` with the note of `key`'s entry, if it is still the one
    /// tagged `tag` and has a note: a second look-up, for the caller that
    /// needs it (a hit to record), not on every hit.
    pub fn note<R>(&self, key: &CacheKey, tag: Tag, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (hash, shard) = self.locate(key)?;
        let s = shard.lock().ok()?;
        let e = s.slots.get(s.find(hash, key.as_bytes())?)?;
        (e.tag == tag && e.note_len != 0).then(|| f(e.note()))
    }

    /// [`Cache::get`] at `now`, seeing only what was found (tests).
    #[cfg(test)]
    fn get_at(
        &self,
        key: &CacheKey,
        query: &[u8],
        q: &QueryFacts,
        now: u64,
        out: &mut Vec<u8>,
    ) -> Found {
        self.get_kind_at(key, query, q, now, out).0
    }

    /// [`Cache::insert`] at `now` (tests).
    #[cfg(test)]
    fn insert_at(&self, key: &CacheKey, response: &mut [u8], now: u64) -> bool {
        self.insert_tag_at(key, response, Tag::default(), &[], now)
    }

    fn insert_tag_at(
        &self,
        key: &CacheKey,
        response: &mut [u8],
        tag: Tag,
        note: &[u8],
        now: u64,
    ) -> bool {
        if response.len() > MAX_ENTRY_BYTES {
            return false;
        }
        let Some((hash, shard)) = self.locate(key) else {
            return false;
        };
        let Some(c) = cacheable(response, &self.rules) else {
            return false;
        };
        for &(at, ttl) in &c.ttl_offsets {
            let at = usize::from(at);
            if let Some(field) = response.get_mut(at..at + 4) {
                field.copy_from_slice(&ttl.to_be_bytes());
            }
        }
        let k = key.as_bytes();
        let mut data =
            Vec::with_capacity(k.len() + response.len() + 2 * c.ttl_offsets.len() + note.len());
        data.extend_from_slice(k);
        data.extend_from_slice(response);
        for &(at, _) in &c.ttl_offsets {
            data.extend_from_slice(&at.to_ne_bytes());
        }
        data.extend_from_slice(note);
        let (Ok(key_len), Ok(answer_len)) = (u16::try_from(k.len()), u16::try_from(response.len()))
        else {
            return false;
        };
        let entry = Entry {
            hash,
            tag,
            data: data.into_boxed_slice(),
            stored: now,
            expires: now + u64::from(c.ttl) * 1000,
            recheck: 0,
            ttl: c.ttl,
            hits: 0,
            key_len,
            answer_len,
            opt_rdlen_at: c.opt_rdlen_at,
            prefetching: false,
            note_len: note.len() as u8,
        };
        let Ok(mut s) = shard.lock() else {
            return false;
        };
        s.insert(entry, now)
    }

    /// The answers held and the bytes counted against `max_bytes` (fixed
    /// tables included), for the metrics: each shard locked in turn.
    pub fn usage(&self) -> crate::observe::metrics::CacheUsage {
        let st = self.stats();
        crate::observe::metrics::CacheUsage {
            entries: st.entries as u64,
            bytes: st.bytes as u64,
        }
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> CacheStats {
        let mut st = CacheStats {
            bytes: self.fixed_bytes,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            ..CacheStats::default()
        };
        for shard in &self.shards {
            let s = match shard.0.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            let c = s.counters;
            st.hits += c.hits;
            st.misses += c.misses;
            st.inserts += c.inserts;
            st.evictions += c.evictions;
            st.rejected += c.rejected;
            st.stale += c.stale;
            st.prefetches += c.prefetches;
            st.entries += s.slots.len();
            st.bytes += s.bytes;
        }
        st
    }
}
