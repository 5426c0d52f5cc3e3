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

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hashbrown::HashTable;

use crate::config::CacheConfig;
use crate::matcher::{MAX_KEY, NameKey};
use crate::policy::QueryFacts;
use crate::wire::{self, Header};

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
/// Entries sampled to choose an eviction victim (as Redis does): enough to
/// find an unpopular or expired one, cheap enough to do under the lock.
const SAMPLE: usize = 5;
/// The allocator's bookkeeping per allocation, charged with each entry's
/// bytes (glibc: an 8-byte header, the chunk rounded up to 16 bytes).
const ALLOC_OVERHEAD: usize = 24;

/// Lookup key: wire name, type, class and a flags byte (DO, CD).
pub struct CacheKey {
    buf: [u8; MAX_KEY + 5],
    len: usize,
}

impl CacheKey {
    /// The key of a query.
    pub fn new(name: &NameKey, q: &QueryFacts) -> Self {
        let mut buf = [0u8; MAX_KEY + 5];
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

/// Counters of one shard, written under its lock.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
    rejected: u64,
    stale: u64,
    prefetches: u64,
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

/// One cached answer.
struct Entry {
    hash: u64,
    /// The caller's, as stored (or as [`Cache::retag`] replaced it).
    tag: Tag,
    /// One allocation: the key, the answer (TTLs clamped), then the answer's
    /// TTL field offsets as native-endian `u16`s.
    data: Box<[u8]>,
    /// Milliseconds since the cache's epoch.
    stored: u64,
    expires: u64,
    /// Until then an expired entry is served stale without forwarding.
    recheck: u64,
    /// The TTL it was stored for, in seconds (after clamping).
    ttl: u32,
    /// Hits since it was stored.
    hits: u32,
    key_len: u16,
    answer_len: u16,
    /// Offset of the RDLENGTH of the OPT record that ends the answer, or 0.
    opt_rdlen_at: u16,
    /// A background refresh was started for it.
    prefetching: bool,
}

impl Entry {
    fn key(&self) -> &[u8] {
        self.data.get(..usize::from(self.key_len)).unwrap_or(&[])
    }

    fn answer(&self) -> &[u8] {
        let start = usize::from(self.key_len);
        self.data
            .get(start..start + usize::from(self.answer_len))
            .unwrap_or(&[])
    }

    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let start = usize::from(self.key_len) + usize::from(self.answer_len);
        self.data
            .get(start..)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_ne_bytes([c[0], c[1]])))
    }

    fn charge(&self) -> usize {
        self.data.len() + ALLOC_OVERHEAD
    }

    /// Writes the stored answer into `out` with its TTLs counted down to
    /// `now`, or all set to [`STALE_TTL`] and an EDE 3 "Stale Answer"
    /// added to its OPT record (when it has one) if `stale` says why. For
    /// a client without EDNS (`edns` false) the OPT record, which ends the
    /// answer, is left out.
    fn write(&self, now: u64, stale: Option<&str>, edns: bool, out: &mut Vec<u8>) {
        out.clear();
        let answer = self.answer();
        // The OPT's owner (the root), type, class and TTL come before its RDLENGTH.
        let opt_at = usize::from(self.opt_rdlen_at).saturating_sub(9);
        if edns || self.opt_rdlen_at == 0 {
            out.extend_from_slice(answer);
        } else {
            out.extend_from_slice(answer.get(..opt_at).unwrap_or(answer));
            let arcount = wire::u16_at(out, 10).unwrap_or(1);
            wire::put_u16(out, 10, arcount.saturating_sub(1));
        }
        let elapsed = u32::try_from(now.saturating_sub(self.stored) / 1000).unwrap_or(u32::MAX);
        for at in self.ttl_offsets() {
            if let Some(ttl) = wire::u32_at(out, at) {
                let ttl = match stale {
                    Some(_) => STALE_TTL,
                    None => ttl.saturating_sub(elapsed),
                };
                out[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
            }
        }
        if let Some(why) = stale
            && self.opt_rdlen_at != 0
            && edns
        {
            let at = usize::from(self.opt_rdlen_at);
            let text = &why.as_bytes()[..why.len().min(64)];
            if let Some(rdlen) = wire::u16_at(out, at) {
                // EDE 3, "Stale Answer" (RFC 8914 4.4), after the options
                // the OPT already carries: it ends the answer.
                wire::put_u16(out, at, rdlen + 6 + text.len() as u16);
                out.extend_from_slice(&wire::OPTION_EDE.to_be_bytes());
                out.extend_from_slice(&(2 + text.len() as u16).to_be_bytes());
                out.extend_from_slice(&3u16.to_be_bytes());
                out.extend_from_slice(text);
            }
        }
    }
}

/// A count-min sketch of 4-bit counters behind a doorkeeper (TinyLFU): how
/// often each key was asked lately, up to 15 plus one.
struct Sketch {
    /// 16 counters per word.
    counters: Box<[u64]>,
    /// A Bloom filter of keys seen once since the last halving.
    door: Box<[u64]>,
    /// `log2` of the bits in `door`.
    door_bits: u32,
    /// Touches since the last halving, and how many call for the next.
    touches: usize,
    period: usize,
}

/// Odd multipliers that derive the counters' and doorkeeper's positions
/// from the key's hash.
const SEEDS: [u64; 6] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0xd6e8_feb8_6659_fd93,
    0xa076_1d64_78bd_642f,
    0xe703_7ed1_a0b4_28db,
];

impl Sketch {
    /// For a shard of `cap` entries: about 8 counters and 32 doorkeeper
    /// bits an entry, halved every `10 × cap` touches (as Caffeine does).
    fn new(cap: usize) -> Self {
        let words = (cap / 2).next_power_of_two().max(8);
        let door_bits = (cap * 32).next_power_of_two().max(512);
        Self {
            counters: vec![0; words].into_boxed_slice(),
            door: vec![0; door_bits / 64].into_boxed_slice(),
            door_bits: door_bits.trailing_zeros(),
            touches: 0,
            period: (cap * 10).max(64),
        }
    }

    fn bytes(&self) -> usize {
        (self.counters.len() + self.door.len()) * 8
    }

    /// Positions of the key's two doorkeeper bits.
    fn door_at(&self, hash: u64) -> [usize; 2] {
        [SEEDS[4], SEEDS[5]].map(|s| (hash.wrapping_mul(s) >> (64 - self.door_bits)) as usize)
    }

    /// Word and shift of the key's four counters.
    fn counters_at(&self, hash: u64) -> [(usize, u32); 4] {
        let mask = self.counters.len() - 1;
        let mut at = [(0, 0); 4];
        for (i, slot) in at.iter_mut().enumerate() {
            let h = hash.wrapping_mul(SEEDS[i]);
            *slot = (((h >> 32) as usize) & mask, ((h >> 60) as u32) * 4);
        }
        at
    }

    fn in_door(&self, hash: u64) -> bool {
        self.door_at(hash)
            .iter()
            .all(|&b| self.door[b / 64] & (1 << (b % 64)) != 0)
    }

    /// The key was asked once more.
    fn touch(&mut self, hash: u64) {
        if self.in_door(hash) {
            for (w, shift) in self.counters_at(hash) {
                if (self.counters[w] >> shift) & 0xf != 0xf {
                    self.counters[w] += 1 << shift;
                }
            }
        } else {
            for b in self.door_at(hash) {
                self.door[b / 64] |= 1 << (b % 64);
            }
        }
        self.touches += 1;
        if self.touches >= self.period {
            self.age();
        }
    }

    /// How often the key was asked lately (0 to 16).
    fn estimate(&self, hash: u64) -> u8 {
        let count = self
            .counters_at(hash)
            .iter()
            .map(|&(w, shift)| ((self.counters[w] >> shift) & 0xf) as u8)
            .min()
            .unwrap_or(0);
        count + u8::from(self.in_door(hash))
    }

    /// Halves every counter and empties the doorkeeper: what was popular a
    /// while ago counts for less than what is popular now.
    fn age(&mut self) {
        for w in self.counters.iter_mut() {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.door.fill(0);
        self.touches = 0;
    }
}

/// One shard: its entries in a dense vector (so that sampling a victim is
/// an index draw), a table from key hash to position, and the sketch.
struct Shard {
    table: HashTable<u32>,
    slots: Vec<Entry>,
    /// Entries at most.
    cap: usize,
    /// Bytes of entry allocations held, and at most.
    bytes: usize,
    budget: usize,
    sketch: Sketch,
    rng: fastrand::Rng,
    counters: Counters,
}

/// A shard on cache lines of its own, so that workers locking two
/// neighbouring shards do not contend for one line.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

impl Shard {
    fn new(cap: usize, seed: u64) -> Self {
        Self {
            // Twice the entries: removals leave tombstones, and with the
            // table at most half full hashbrown cleans them in place rather
            // than growing; the table never reallocates.
            table: HashTable::with_capacity(cap * 2),
            slots: Vec::with_capacity(cap),
            cap,
            bytes: 0,
            budget: 0,
            sketch: Sketch::new(cap),
            rng: fastrand::Rng::with_seed(seed),
            counters: Counters::default(),
        }
    }

    /// The fixed bytes of this shard: slots, table, sketch.
    fn fixed_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Entry>()
            + self.table.allocation_size()
            + self.sketch.bytes()
            + size_of::<Padded>()
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                slots
                    .get(i as usize)
                    .is_some_and(|e| e.hash == hash && e.key() == key)
            })
            .map(|&i| i as usize)
    }

    /// Removes the entry at `i`; the last entry takes its place.
    fn remove(&mut self, i: usize) {
        let Some(e) = self.slots.get(i) else {
            return;
        };
        let hash = e.hash;
        if let Ok(found) = self.table.find_entry(hash, |&j| j as usize == i) {
            found.remove();
        }
        let last = self.slots.len() - 1;
        if i != last {
            let moved = self.slots[last].hash;
            if let Some(j) = self.table.find_mut(moved, |&j| j as usize == last) {
                *j = i as u32;
            }
        }
        let gone = self.slots.swap_remove(i);
        self.bytes -= gone.charge();
    }

    /// A sampled entry to evict: an expired one (the longest expired) if the
    /// sample has one, otherwise the least frequently asked. With whether it
    /// is fresh and its frequency.
    fn victim(&mut self, now: u64) -> Option<(usize, bool, u8)> {
        let n = self.slots.len();
        let mut best: Option<(usize, bool, u64)> = None;
        for _ in 0..SAMPLE.min(n) {
            let i = self.rng.usize(..n);
            let e = &self.slots[i];
            let fresh = now < e.expires;
            let rank = if fresh {
                u64::from(self.sketch.estimate(e.hash))
            } else {
                e.expires
            };
            if best.is_none_or(|(_, f, r)| (fresh, rank) < (f, r)) {
                best = Some((i, fresh, rank));
            }
        }
        best.map(|(i, fresh, rank)| (i, fresh, rank.min(255) as u8))
    }

    /// Stores `entry`, making room by eviction; a key not already cached
    /// must be asked more often than each fresh entry it would evict.
    fn insert(&mut self, entry: Entry, now: u64) -> bool {
        let charge = entry.charge();
        if charge > self.budget || self.cap == 0 {
            return false;
        }
        let resident = self.find(entry.hash, entry.key());
        if let Some(i) = resident {
            self.remove(i);
        }
        let freq = self.sketch.estimate(entry.hash);
        while self.slots.len() >= self.cap || self.bytes + charge > self.budget {
            let Some((v, fresh, victim_freq)) = self.victim(now) else {
                break;
            };
            if fresh && resident.is_none() && freq <= victim_freq {
                self.counters.rejected += 1;
                return false;
            }
            self.remove(v);
            self.counters.evictions += 1;
        }
        let Ok(index) = u32::try_from(self.slots.len()) else {
            return false;
        };
        let hash = entry.hash;
        self.slots.push(entry);
        let slots = &self.slots;
        self.table.insert_unique(hash, index, |&i| {
            slots.get(i as usize).map_or(0, |e| e.hash)
        });
        self.bytes += charge;
        self.counters.inserts += 1;
        true
    }
}

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
            if self.rules.prefetch
                && !e.prefetching
                && e.hits >= PREFETCH_HITS
                && (e.expires - now) * PREFETCH_FRACTION < u64::from(e.ttl) * 1000
                && self.prefetching.load(Ordering::Relaxed) < MAX_PREFETCHES
            {
                e.prefetching = true;
                s.counters.prefetches += 1;
                self.prefetching.fetch_add(1, Ordering::Relaxed);
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

    /// Every upstream failed for `key`, or answered SERVFAIL (`why`): writes
    /// its expired answer into `out` if one is kept within `stale_max`
    /// (RFC 8767), with TTLs of [`STALE_TTL`] and an EDE 3 when the query
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

    /// A background refresh that [`Found::Refresh`] started has ended
    /// (its answer inserted, or not).
    pub fn prefetch_done(&self) {
        self.prefetching.fetch_sub(1, Ordering::Relaxed);
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
        self.insert_tag_at(key, response, tag, self.now());
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

    /// [`Cache::stale`] at `now`: whether something was served (tests).
    #[cfg(test)]
    fn stale_at(
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

    /// [`Cache::insert`] at `now` (tests).
    #[cfg(test)]
    fn insert_at(&self, key: &CacheKey, response: &mut [u8], now: u64) -> bool {
        self.insert_tag_at(key, response, Tag::default(), now)
    }

    fn insert_tag_at(&self, key: &CacheKey, response: &mut [u8], tag: Tag, now: u64) -> bool {
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
        let mut data = Vec::with_capacity(k.len() + response.len() + 2 * c.ttl_offsets.len());
        data.extend_from_slice(k);
        data.extend_from_slice(response);
        for &(at, _) in &c.ttl_offsets {
            data.extend_from_slice(&at.to_ne_bytes());
        }
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

/// Puts the client's ID, flags and question into a cached answer.
fn answer_as_asked(query: &[u8], q: &QueryFacts, out: &mut [u8]) {
    wire::put_u16(out, 0, q.id);
    if let Some(f) = out.get_mut(2..4) {
        // RD and CD as this client asked (RFC 1035 4.1.1, RFC 4035
        // 3.1.6); AD only for a client that asked for it (RFC 6840 5.8).
        f[0] = (f[0] & !0x01) | ((q.flags >> 8) as u8 & 0x01);
        f[1] = (f[1] & !0x10) | (q.flags as u8 & 0x10);
        if q.flags & 0x0020 == 0 && !q.edns.is_some_and(|e| e.dnssec_ok) {
            f[1] &= !0x20;
        }
    }
    // The client's question, byte for byte (same length: same name).
    if let (Some(dst), Some(src)) = (
        out.get_mut(wire::HEADER_LEN..q.question_end),
        query.get(wire::HEADER_LEN..q.question_end),
    ) {
        dst.copy_from_slice(src);
    }
}

/// What may be cached of an answer.
#[derive(Debug, PartialEq, Eq)]
struct Cacheable {
    /// Seconds to keep it.
    ttl: u32,
    /// Each TTL field's offset and the TTL to store there.
    ttl_offsets: Vec<(u16, u32)>,
    /// See [`Entry::opt_rdlen_at`].
    opt_rdlen_at: u16,
}

/// How long an answer may be cached under `rules`, and its TTLs as stored;
/// `None` when it must not be cached.
fn cacheable(resp: &[u8], rules: &Rules) -> Option<Cacheable> {
    let hdr = Header::parse(resp)?;
    if hdr.truncated() || hdr.qdcount != 1 || !matches!(hdr.rcode(), 0 | 3) {
        return None;
    }
    let mut at = wire::skip_name(resp, wire::HEADER_LEN)? + 4;
    let mut smallest = u32::MAX;
    let mut fields = Vec::new();
    let mut soa_ttl = None;
    let mut opt_rdlen_at = 0;
    let counts = [hdr.ancount, hdr.nscount, hdr.arcount];
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let (rr, next) = wire::read_rr(resp, at)?;
            at = next;
            if rr.rtype == wire::TYPE_OPT {
                // Ours, written last by `wire::replace_opt`: a stale answer
                // adds its EDE there.
                opt_rdlen_at = if next == resp.len() {
                    u16::try_from(rr.rdata_at - 2).ok()?
                } else {
                    0
                };
                continue;
            }
            // RFC 2181 8: a TTL with the top bit set is to be read as zero.
            if rr.ttl & 0x8000_0000 != 0 {
                return None;
            }
            fields.push((u16::try_from(rr.ttl_at).ok()?, rr.ttl));
            if section < 2 {
                smallest = smallest.min(rr.ttl);
            }
            if section == 1 && rr.rtype == wire::TYPE_SOA && rr.rdlen >= 4 {
                let minimum = wire::u32_at(resp, rr.rdata_at + rr.rdlen - 4)?;
                soa_ttl = Some(rr.ttl.min(minimum));
            }
        }
    }
    // A TTL of 0 says "use once, do not cache" (RFC 1035 3.2.1): min_ttl
    // does not override it.
    if smallest == 0 {
        return None;
    }
    let negative = hdr.rcode() == 3 || hdr.ancount == 0;
    let (ttl, floor) = if negative {
        // NXDOMAIN or NODATA: cacheable only with an SOA (RFC 2308 5), for
        // its negative TTL (and no longer than a CNAME leading to it).
        let ttl = soa_ttl?
            .min(smallest)
            .min(rules.negative_ttl_max)
            .min(rules.max_ttl);
        (ttl, 0)
    } else {
        (smallest.clamp(rules.min_ttl, rules.max_ttl), rules.min_ttl)
    };
    if ttl == 0 {
        return None;
    }
    let ttl_offsets = fields
        .into_iter()
        .map(|(at, t)| (at, t.max(floor).min(ttl)))
        .collect();
    Some(Cacheable {
        ttl,
        ttl_offsets,
        opt_rdlen_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const RULES: Rules = Rules {
        min_ttl: 0,
        max_ttl: 86_400,
        negative_ttl_max: 3_600,
        stale_max_ms: 86_400_000,
        prefetch: true,
    };

    fn config(size: usize) -> CacheConfig {
        CacheConfig {
            size,
            ..CacheConfig::default()
        }
    }

    /// `name` A answer with TTL `ttl`, ID 0; `edns` adds our OPT.
    fn answer_for(name: &str, ttl: u32, edns: bool) -> Vec<u8> {
        let mut p = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        push_name(&mut p, name);
        p.extend_from_slice(&[0, 1, 0, 1]);
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        p.extend_from_slice(&ttl.to_be_bytes());
        p.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        if edns {
            wire::push_opt(&mut p, 0, false, &[]);
        }
        p
    }

    fn answer(ttl: u32) -> Vec<u8> {
        answer_for("www.example.com", ttl, false)
    }

    fn push_name(p: &mut Vec<u8>, name: &str) {
        for label in name.split('.') {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
    }

    /// A negative answer for www.example.com: NXDOMAIN (or NODATA) with an
    /// SOA whose TTL and MINIMUM are given.
    fn negative(nxdomain: bool, soa_ttl: u32, minimum: u32) -> Vec<u8> {
        let mut p = vec![
            0,
            0,
            0x81,
            0x80 | (u8::from(nxdomain) * 3),
            0,
            1,
            0,
            0,
            0,
            1,
            0,
            0,
        ];
        p.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        p.extend_from_slice(&[0xc0, 16, 0, 6, 0, 1]);
        p.extend_from_slice(&soa_ttl.to_be_bytes());
        let mut rdata = Vec::new();
        rdata.extend_from_slice(b"\x02ns\xc0\x10\x05admin\xc0\x10");
        for v in [1u32, 3600, 600, 86400, minimum] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        p.extend_from_slice(&rdata);
        p
    }

    fn facts(query: &[u8]) -> (QueryFacts, NameKey) {
        crate::query::parse(query).expect("query")
    }

    fn query_for(name: &str, edns: bool) -> Vec<u8> {
        let mut p = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        push_name(&mut p, name);
        p.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        p
    }

    fn query() -> Vec<u8> {
        query_for("WWW.example.com", false)
    }

    fn key_of(q: &[u8]) -> (CacheKey, QueryFacts) {
        let (f, name) = facts(q);
        (CacheKey::new(&name, &f), f)
    }

    /// The TTLs of an answer's records, in order (OPT left out).
    fn ttls(resp: &[u8]) -> Vec<u32> {
        let hdr = Header::parse(resp).expect("header");
        let mut at = wire::skip_name(resp, 12).expect("question") + 4;
        let mut out = Vec::new();
        for _ in 0..u32::from(hdr.ancount) + u32::from(hdr.nscount) + u32::from(hdr.arcount) {
            let (rr, next) = wire::read_rr(resp, at).expect("rr");
            if rr.rtype != wire::TYPE_OPT {
                out.push(rr.ttl);
            }
            at = next;
        }
        out
    }

    #[test]
    fn hit_carries_client_id_and_case() {
        let cache = Cache::new(&config(10));
        let q = query();
        let (key, f) = key_of(&q);
        let mut out = Vec::new();
        assert_eq!(cache.get(&key, &q, &f, &mut out).0, Found::Miss);
        cache.insert(&key, &mut answer(300));
        assert_eq!(cache.get(&key, &q, &f, &mut out).0, Found::Fresh);
        assert_eq!(&out[..2], &[0xab, 0xcd]);
        assert_eq!(&out[13..16], b"WWW");
        assert_eq!(wire::u32_at(&out, out.len() - 10), Some(300));
    }

    #[test]
    fn ttls_count_down_and_the_entry_expires() {
        let cache = Cache::new(&config(10));
        let q = query();
        let (key, f) = key_of(&q);
        let mut out = Vec::new();
        assert!(cache.insert_at(&key, &mut answer(300), 1_000));
        assert_eq!(cache.get_at(&key, &q, &f, 1_999, &mut out), Found::Fresh);
        assert_eq!(ttls(&out), [300]);
        assert_eq!(cache.get_at(&key, &q, &f, 121_000, &mut out), Found::Fresh);
        assert_eq!(ttls(&out), [180]);
        assert_eq!(cache.get_at(&key, &q, &f, 301_000, &mut out), Found::Miss);
    }

    #[test]
    fn zero_ttl_servfail_and_negative_without_soa_are_not_cached() {
        assert!(cacheable(&answer(0), &RULES).is_none());
        let floor = Rules {
            min_ttl: 60,
            ..RULES
        };
        assert!(
            cacheable(&answer(0), &floor).is_none(),
            "min_ttl keeps TTL 0"
        );
        let mut sf = answer(300);
        sf[3] = 0x82;
        assert!(cacheable(&sf, &RULES).is_none());
        let mut nx = answer(300)[..33].to_vec();
        nx[3] = 0x83;
        nx[7] = 0;
        assert!(cacheable(&nx, &RULES).is_none());
    }

    #[test]
    fn positive_ttls_are_clamped_into_min_and_max() {
        let rules = Rules {
            min_ttl: 60,
            max_ttl: 3600,
            ..RULES
        };
        assert_eq!(cacheable(&answer(5), &rules).map(|c| c.ttl), Some(60));
        assert_eq!(cacheable(&answer(300), &rules).map(|c| c.ttl), Some(300));
        assert_eq!(
            cacheable(&answer(100_000), &rules).map(|c| c.ttl),
            Some(3600)
        );
        // And served so.
        let cache = Cache::new(&CacheConfig {
            min_ttl: 60,
            max_ttl: 3600,
            ..config(10)
        });
        let q = query();
        let (key, f) = key_of(&q);
        let mut out = Vec::new();
        cache.insert_at(&key, &mut answer(5), 0);
        cache.get_at(&key, &q, &f, 0, &mut out);
        assert_eq!(ttls(&out), [60]);
        cache.insert_at(&key, &mut answer(100_000), 0);
        cache.get_at(&key, &q, &f, 0, &mut out);
        assert_eq!(ttls(&out), [3600]);
    }

    #[test]
    fn negative_ttls_follow_the_soa_and_are_capped() {
        // min(SOA TTL, MINIMUM) (RFC 2308 5) ...
        let c = cacheable(&negative(true, 900, 300), &RULES).expect("cacheable");
        assert_eq!(c.ttl, 300);
        assert_eq!(c.ttl_offsets.iter().map(|t| t.1).collect::<Vec<_>>(), [300]);
        assert_eq!(
            cacheable(&negative(false, 120, 600), &RULES).map(|c| c.ttl),
            Some(120)
        );
        // ... at most negative_ttl_max, and min_ttl does not raise it.
        let rules = Rules {
            min_ttl: 600,
            negative_ttl_max: 30,
            ..RULES
        };
        assert_eq!(
            cacheable(&negative(true, 900, 300), &rules).map(|c| c.ttl),
            Some(30)
        );
        let rules = Rules {
            min_ttl: 600,
            ..RULES
        };
        assert_eq!(
            cacheable(&negative(true, 900, 5), &rules).map(|c| c.ttl),
            Some(5)
        );
        let none = Rules {
            negative_ttl_max: 0,
            ..RULES
        };
        assert!(cacheable(&negative(true, 900, 300), &none).is_none());
    }

    #[test]
    fn size_zero_disables_and_size_bounds_entries() {
        let q = query();
        let (key, f) = key_of(&q);
        let off = Cache::new(&config(0));
        off.insert(&key, &mut answer(300));
        assert_eq!(off.get(&key, &q, &f, &mut Vec::new()).0, Found::Miss);
        assert_eq!(off.stats().entries, 0);
        let cache = Cache::new(&config(64));
        for i in 0..1000 {
            let q = query_for(&format!("n{i}.example.com"), false);
            let (key, _) = key_of(&q);
            cache.insert(
                &key,
                &mut answer_for(&format!("n{i}.example.com"), 300, false),
            );
        }
        let st = cache.stats();
        assert_eq!(st.max_entries, 64);
        assert!(st.entries <= 64 && st.entries >= 32, "{st:?}");
    }

    #[test]
    fn answers_over_max_entry_bytes_are_not_kept() {
        let q = query();
        let (key, f) = key_of(&q);
        let cache = Cache::new(&config(10));
        // The same answer padded with a big additional record (type 65280).
        let big = |rdlen: usize| {
            let mut a = answer(300);
            a[11] = 1;
            a.extend_from_slice(&[0, 0xff, 0, 0, 1, 0, 0, 0, 60]);
            a.extend_from_slice(&(rdlen as u16).to_be_bytes());
            a.extend(std::iter::repeat_n(0u8, rdlen));
            a
        };
        let mut fits = big(MAX_ENTRY_BYTES - answer(300).len() - 11);
        assert_eq!(fits.len(), MAX_ENTRY_BYTES);
        cache.insert(&key, &mut fits);
        assert_eq!(cache.get(&key, &q, &f, &mut Vec::new()).0, Found::Fresh);
        let other = Cache::new(&config(10));
        other.insert(&key, &mut big(MAX_ENTRY_BYTES));
        assert_eq!(other.get(&key, &q, &f, &mut Vec::new()).0, Found::Miss);
    }

    /// Issue 16 (10): an upstream OPT whose last option overran it reached
    /// the cache cut short, and the stale answer's EDE 3, appended after
    /// it, was swallowed: neither parsed. What `wire::replace_opt` makes of
    /// it now (no option of that OPT) is served fresh, and stale with its
    /// EDE 3, as a message.
    #[test]
    fn r16_a_stale_answer_parses_after_the_upstreams_bad_opt() {
        let cache = Cache::new(&CacheConfig {
            stale_max: Duration::from_secs(100),
            ..config(10)
        });
        let q = query_for("www.example.com", true);
        let (key, f) = key_of(&q);
        let mut upstream = answer_for("www.example.com", 10, false);
        let mut rdata = wire::ede_option(18, "kept");
        // An EDE stating 10 bytes where 4 are left.
        rdata.extend_from_slice(&[0, 15, 0, 10, 0, 18, b'x', b'y']);
        upstream[11] = 1;
        upstream.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        upstream.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        upstream.extend_from_slice(&rdata);
        let mut resp = wire::replace_opt(&upstream, Some(false)).expect("walks");
        assert!(cache.insert_at(&key, &mut resp, 0));
        let mut out = Vec::new();
        for (now, stale) in [(5_000, false), (20_000, true)] {
            assert!(cache.stale_at(&key, &q, &f, "upstream timed out", now, &mut out));
            let m = hickory_proto::op::Message::from_vec(&out)
                .unwrap_or_else(|e| panic!("stale {stale}: {e}: {out:02x?}"));
            let options = m.edns.map(|e| e.options().as_ref().len());
            assert_eq!(
                options,
                Some(usize::from(stale)),
                "stale {stale}: EDE 3 alone"
            );
        }
    }

    #[test]
    fn stale_answers_have_ttl_30_and_ede_3_within_stale_max() {
        let cache = Cache::new(&CacheConfig {
            stale_max: Duration::from_secs(100),
            ..config(10)
        });
        let q = query_for("www.example.com", true);
        let (key, f) = key_of(&q);
        let mut out = Vec::new();
        cache.insert_at(&key, &mut answer_for("www.example.com", 10, true), 0);
        // Fresh: no stale needed, served as a hit.
        assert!(cache.stale_at(&key, &q, &f, "x", 5_000, &mut out));
        assert_eq!(ttls(&out), [5]);
        // Expired: a miss (forward first), then stale when the forward fails.
        assert_eq!(cache.get_at(&key, &q, &f, 20_000, &mut out), Found::Miss);
        assert!(cache.stale_at(&key, &q, &f, "upstream timed out", 20_000, &mut out));
        assert_eq!(ttls(&out), [STALE_TTL]);
        let opt = out.len() - (11 + 6 + "upstream timed out".len());
        assert_eq!(wire::u16_at(&out, opt + 1), Some(wire::TYPE_OPT));
        assert_eq!(wire::u16_at(&out, opt + 9), Some(6 + 18));
        assert_eq!(wire::u16_at(&out, opt + 11), Some(wire::OPTION_EDE));
        assert_eq!(wire::u16_at(&out, opt + 15), Some(3));
        assert!(out.ends_with(b"upstream timed out"));
        assert_eq!(&out[..2], &[0xab, 0xcd]);
        // For 30 s it is served stale at once, without forwarding.
        assert_eq!(cache.get_at(&key, &q, &f, 49_000, &mut out), Found::Stale);
        assert_eq!(ttls(&out), [STALE_TTL]);
        assert_eq!(cache.get_at(&key, &q, &f, 50_001, &mut out), Found::Miss);
        // Until stale_max past its expiry; then it is gone.
        assert!(cache.stale_at(&key, &q, &f, "x", 109_999, &mut out));
        assert!(!cache.stale_at(&key, &q, &f, "x", 110_000, &mut out));
        assert_eq!(cache.get_at(&key, &q, &f, 110_000, &mut out), Found::Miss);
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(cache.stats().stale, 3);
    }

    #[test]
    fn stale_without_edns_has_no_opt_and_zero_stale_max_serves_none() {
        let cache = Cache::new(&config(10));
        let q = query();
        let (key, f) = key_of(&q);
        let mut out = Vec::new();
        let mut a = answer(10);
        cache.insert_at(&key, &mut a, 0);
        assert!(cache.stale_at(&key, &q, &f, "why", 60_000, &mut out));
        assert_eq!(out.len(), a.len(), "nothing added without EDNS");
        assert_eq!(ttls(&out), [STALE_TTL]);
        let off = Cache::new(&CacheConfig {
            stale_max: Duration::ZERO,
            ..config(10)
        });
        off.insert_at(&key, &mut a, 0);
        assert!(!off.stale_at(&key, &q, &f, "why", 10_000, &mut out));
        assert_eq!(off.get_at(&key, &q, &f, 10_000, &mut out), Found::Miss);
        assert_eq!(off.stats().entries, 0, "removed at expiry");
    }

    #[test]
    fn popular_entries_near_expiry_are_prefetched_once() {
        let cache = Cache::new(&config(10));
        let q = query();
        let (key, f) = key_of(&q);
        let mut out = Vec::new();
        cache.insert_at(&key, &mut answer(100), 0);
        // Near expiry but not popular yet: hits 1 and 2.
        assert_eq!(cache.get_at(&key, &q, &f, 95_000, &mut out), Found::Fresh);
        assert_eq!(cache.get_at(&key, &q, &f, 95_000, &mut out), Found::Fresh);
        // Popular, but 10 % of the TTL is 10 s: not yet at 89 s.
        cache.insert_at(&key, &mut answer(100), 0);
        for _ in 0..5 {
            assert_eq!(cache.get_at(&key, &q, &f, 89_000, &mut out), Found::Fresh);
        }
        assert_eq!(cache.get_at(&key, &q, &f, 90_001, &mut out), Found::Refresh);
        // Once in flight, no second one.
        assert_eq!(cache.get_at(&key, &q, &f, 95_000, &mut out), Found::Fresh);
        cache.prefetch_done();
        // The refresh replaces the entry; the prefetch can happen again later.
        cache.insert_at(&key, &mut answer(100), 95_000);
        assert_eq!(cache.get_at(&key, &q, &f, 96_000, &mut out), Found::Fresh);
        assert_eq!(ttls(&out), [99]);
        assert_eq!(cache.stats().prefetches, 1);
        let off = Cache::new(&CacheConfig {
            prefetch: false,
            ..config(10)
        });
        off.insert_at(&key, &mut answer(100), 0);
        for _ in 0..5 {
            assert_eq!(off.get_at(&key, &q, &f, 99_000, &mut out), Found::Fresh);
        }
    }

    #[test]
    fn sketch_counts_repeats_and_forgets_with_age() {
        let mut s = Sketch::new(1000);
        let (a, b) = (0x1234_5678_9abc_def0_u64, 0x0fed_cba9_8765_4321_u64);
        assert_eq!(s.estimate(a), 0);
        s.touch(a);
        assert_eq!(s.estimate(a), 1, "the doorkeeper holds a first sighting");
        for _ in 0..5 {
            s.touch(a);
        }
        assert_eq!(s.estimate(a), 6);
        for _ in 0..100 {
            s.touch(a);
        }
        assert_eq!(s.estimate(a), 16, "counters saturate at 15");
        assert!(s.estimate(b) <= 1);
        s.age();
        assert_eq!(s.estimate(a), 7, "halved, the doorkeeper emptied");
    }

    #[test]
    fn the_sketch_halves_itself_every_period() {
        let mut s = Sketch::new(100);
        let a = 42u64.wrapping_mul(SEEDS[0]);
        for _ in 0..10 {
            s.touch(a);
        }
        assert_eq!(s.estimate(a), 10);
        // 10 × 100 touches of other keys later, the counts have halved.
        for i in 0..(s.period - 10) as u64 {
            s.touch(i.wrapping_mul(SEEDS[1]) ^ 0x5555);
        }
        assert!(s.estimate(a) <= 5, "{}", s.estimate(a));
    }

    #[test]
    fn a_flood_of_one_off_names_does_not_evict_popular_ones() {
        let cache = Cache::with_seed(&config(160), 7);
        let mut out = Vec::new();
        let popular: Vec<String> = (0..100).map(|i| format!("p{i}.example.com")).collect();
        let ask = |name: &str, out: &mut Vec<u8>| {
            let q = query_for(name, false);
            let (key, f) = key_of(&q);
            if cache.get_at(&key, &q, &f, 1_000, out) == Found::Miss {
                cache.insert_at(&key, &mut answer_for(name, 300, false), 1_000);
                false
            } else {
                true
            }
        };
        for _ in 0..3 {
            for n in &popular {
                ask(n, &mut out);
            }
        }
        let cached = popular.iter().filter(|n| ask(n, &mut out)).count();
        // 125 times the cache's size in names asked once each, 70 % of the
        // traffic, while the popular names are still asked (each once per
        // 250 flood names): popular is what is asked *lately*, since the
        // sketch halves its counts every 10 x the shard's entries. FIFO or
        // LRU would have lost every popular name to every round of the
        // flood (250 new names for 160 places).
        let mut missed = 0;
        for round in 0..80 {
            for i in 0..250 {
                ask(&format!("r{round}-{i}.flood.example"), &mut out);
            }
            missed += popular.iter().filter(|n| !ask(n, &mut out)).count();
        }
        let kept = popular.iter().filter(|n| ask(n, &mut out)).count();
        let st = cache.stats();
        // The few misses are the popular names of the shards that got more
        // of them than their 10 places, pushing each other out.
        assert!(
            cached >= 95,
            "{cached} of 100 popular names cached at first"
        );
        assert!(kept + 2 >= cached, "{kept} of {cached} popular names kept");
        assert!(
            missed <= 8000 / 20,
            "{missed} misses of 8,000 popular queries"
        );
        assert!(
            st.rejected >= 18_000,
            "most of the flood turned away: {st:?}"
        );
    }

    #[test]
    fn eviction_prefers_expired_entries_and_admits_frequent_keys() {
        let cache = Cache::with_seed(&config(16), 1);
        // One entry per shard at most: find two keys of one shard.
        let names: Vec<String> = (0..200).map(|i| format!("k{i}.example.com")).collect();
        let shard_of = |n: &str| {
            let q = query_for(n, false);
            let (key, _) = key_of(&q);
            cache.locate(&key).map(|(h, _)| (h >> 40) as usize % SHARDS)
        };
        let a = &names[0];
        let b = names[1..]
            .iter()
            .find(|n| shard_of(n) == shard_of(a))
            .expect("two names in one shard");
        let (qa, qb) = (query_for(a, false), query_for(b, false));
        let ((ka, fa), (kb, fb)) = (key_of(&qa), key_of(&qb));
        let mut out = Vec::new();
        cache.get_at(&ka, &qa, &fa, 0, &mut out);
        cache.get_at(&ka, &qa, &fa, 0, &mut out);
        assert!(cache.insert_at(&ka, &mut answer_for(a, 10, false), 0));
        // b, asked once, loses to a fresh a asked twice ...
        cache.get_at(&kb, &qb, &fb, 0, &mut out);
        assert!(!cache.insert_at(&kb, &mut answer_for(b, 10, false), 0));
        // ... wins once asked three times ...
        cache.get_at(&kb, &qb, &fb, 0, &mut out);
        cache.get_at(&kb, &qb, &fb, 0, &mut out);
        assert!(cache.insert_at(&kb, &mut answer_for(b, 10, false), 0));
        assert_eq!(cache.get_at(&ka, &qa, &fa, 0, &mut out), Found::Miss);
        // ... and an expired entry makes way for anything.
        assert!(cache.insert_at(&ka, &mut answer_for(a, 10, false), 20_000));
        assert_eq!(cache.get_at(&ka, &qa, &fa, 20_000, &mut out), Found::Fresh);
    }

    #[test]
    fn bytes_stay_within_max_bytes_and_refreshes_replace() {
        let max_bytes = 2 * CacheConfig::fixed_bytes_max(100) + 64 * 1024;
        let cache = Cache::new(&CacheConfig {
            size: 100,
            max_bytes,
            ..CacheConfig::default()
        });
        let fixed = cache.stats().bytes;
        assert!(fixed <= CacheConfig::fixed_bytes_max(100), "{fixed}");
        let big = |name: &str| {
            let mut a = answer_for(name, 300, false);
            a[11] = 1;
            a.extend_from_slice(&[0, 0xff, 0, 0, 1, 0, 0, 0, 60, 0x0f, 0xa0]);
            a.extend(std::iter::repeat_n(0u8, 4000));
            a
        };
        for i in 0..200 {
            let name = format!("big{i}.example.com");
            let q = query_for(&name, false);
            let (key, _) = key_of(&q);
            cache.insert(&key, &mut big(&name));
            let st = cache.stats();
            assert!(st.bytes <= max_bytes, "{st:?}");
        }
        let st = cache.stats();
        assert!(st.entries >= 8, "{st:?}");
        // Storing the same key again replaces its entry.
        let q = query_for("big1.example.com", false);
        let (key, _) = key_of(&q);
        let before = cache.stats().entries;
        cache.insert(&key, &mut answer_for("big1.example.com", 300, false));
        cache.insert(&key, &mut answer_for("big1.example.com", 300, false));
        assert!(cache.stats().entries <= before + 1);
    }

    #[test]
    fn fixed_tables_stay_under_the_configs_slot_bytes() {
        for size in [1, 15, 16, 17, 100, 1000, 10_000, 100_000, 1_000_000] {
            let cache = Cache::new(&CacheConfig {
                size,
                max_bytes: usize::MAX,
                ..CacheConfig::default()
            });
            let fixed = cache.stats().bytes;
            assert!(
                fixed <= CacheConfig::fixed_bytes_max(size),
                "size {size}: {fixed} bytes fixed, {} per entry",
                fixed / size
            );
        }
    }

    proptest! {
        /// Whatever the TTLs, the stored ones lie within the entry's TTL,
        /// which lies within the rules.
        #[test]
        fn stored_ttls_never_outlive_the_entry(
            ttl in 1u32..200_000,
            min_ttl in 0u32..1000,
            span in 1u32..100_000,
        ) {
            let rules = Rules { min_ttl, max_ttl: min_ttl + span, ..RULES };
            let c = cacheable(&answer(ttl), &rules).expect("cacheable");
            prop_assert!(c.ttl >= rules.min_ttl && c.ttl <= rules.max_ttl);
            for (_, t) in &c.ttl_offsets {
                prop_assert!(*t <= c.ttl && *t >= rules.min_ttl.min(c.ttl));
            }
        }

        /// The cache agrees with a naive model on which keys it holds and
        /// never exceeds its bounds, whatever the mix of inserts and gets.
        #[test]
        fn entries_and_bytes_stay_bounded_and_hits_are_what_was_stored(
            ops in proptest::collection::vec((0u16..300, any::<bool>()), 1..400),
        ) {
            let cache = Cache::with_seed(&config(32), 3);
            let mut out = Vec::new();
            for (n, insert) in ops {
                let name = format!("n{n}.example.com");
                let q = query_for(&name, false);
                let (key, f) = key_of(&q);
                if insert {
                    cache.insert_at(&key, &mut answer_for(&name, 300, false), 0);
                } else if cache.get_at(&key, &q, &f, 0, &mut out) == Found::Fresh {
                    // What comes back is that name's answer, nobody else's.
                    prop_assert_eq!(&out[12..12 + name.len() + 2], &q[12..12 + name.len() + 2]);
                    prop_assert_eq!(out.len(), answer_for(&name, 300, false).len());
                }
                let st = cache.stats();
                prop_assert!(st.entries <= st.max_entries);
                prop_assert!(st.bytes <= st.max_bytes);
            }
            // The table and the slots agree.
            for shard in cache.shards.iter() {
                let s = shard.0.lock().expect("lock");
                prop_assert_eq!(s.table.len(), s.slots.len());
                for (i, e) in s.slots.iter().enumerate() {
                    prop_assert_eq!(s.find(e.hash, e.key()), Some(i));
                }
            }
        }
    }

    #[test]
    fn entries_keep_their_tag_until_retagged_from_it() {
        let cache = Cache::new(&CacheConfig::default());
        let q = query();
        let (key, f) = key_of(&q);
        let mut out = Vec::new();
        assert_eq!(cache.get(&key, &q, &f, &mut out).0, Found::Miss);
        cache.insert(&key, &mut answer(300));
        assert_eq!(
            cache.get(&key, &q, &f, &mut out),
            (Found::Fresh, Tag::default())
        );
        cache.insert_tagged(&key, &mut answer(300), Tag(7));
        assert_eq!(cache.get(&key, &q, &f, &mut out), (Found::Fresh, Tag(7)));
        // Only from the tag the caller saw: a newer one stays.
        cache.retag(&key, Tag(6), Tag(8));
        assert_eq!(cache.get(&key, &q, &f, &mut out).1, Tag(7));
        cache.retag(&key, Tag(7), Tag(8));
        assert_eq!(cache.get(&key, &q, &f, &mut out).1, Tag(8));
        assert_eq!(cache.stale(&key, &q, &f, "x", &mut out), Some(Tag(8)));
    }

    /// Issue 16 (9): upstream is asked with EDNS for every client, so one
    /// entry (kept with our OPT) serves both kinds; a client without EDNS
    /// gets it without the OPT, stale or not.
    #[test]
    fn one_entry_serves_clients_with_and_without_edns() {
        let cache = Cache::new(&config(10));
        let (with, without) = (
            query_for("www.example.com", true),
            query_for("www.example.com", false),
        );
        let ((key, fw), (key2, fo)) = (key_of(&with), key_of(&without));
        assert_eq!(key.as_bytes(), key2.as_bytes(), "one key");
        let stored = answer_for("www.example.com", 10, true);
        cache.insert_at(&key, &mut stored.clone(), 0);
        let mut out = Vec::new();
        assert_eq!(
            cache.get_at(&key, &with, &fw, 1_000, &mut out),
            Found::Fresh
        );
        assert_eq!(out.len(), stored.len());
        assert_eq!(wire::u16_at(&out, 10), Some(1));
        assert_eq!(
            cache.get_at(&key, &without, &fo, 1_000, &mut out),
            Found::Fresh
        );
        assert_eq!(out.len(), stored.len() - 11, "no OPT");
        assert_eq!(wire::u16_at(&out, 10), Some(0), "ARCOUNT");
        assert_eq!(ttls(&out), [9]);
        assert!(cache.stale_at(&key, &without, &fo, "why", 20_000, &mut out));
        assert_eq!(out.len(), stored.len() - 11, "no OPT, no EDE");
        assert_eq!(ttls(&out), [STALE_TTL]);
        assert!(cache.stale_at(&key, &with, &fw, "why", 20_000, &mut out));
        assert!(out.ends_with(b"why"), "EDE 3 for the EDNS client");
        // DO is still part of the key: a DNSSEC answer is another entry.
        let mut dnssec = with.clone();
        let at = dnssec.len() - 4;
        dnssec[at] = 0x80;
        let (key3, _) = key_of(&dnssec);
        assert_ne!(key.as_bytes(), key3.as_bytes());
    }
}
