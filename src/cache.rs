//! The answer cache: upstream responses kept as bytes, served with the
//! client's ID and question and with TTLs counted down.
//!
//! Keeping wire bytes (plus the offsets of their TTL fields) means a hit is a
//! copy and a few in-place patches; nothing is decoded or re-encoded. Keys are
//! the lowercase question plus the EDNS facts that change an answer (OPT
//! present, DO, CD). Sharded mutexes keep workers from queueing on one lock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::matcher::{MAX_KEY, NameKey};
use crate::policy::{Action, QueryFacts};
use crate::state::ListSlot;
use crate::wire::{self, Header};

const SHARDS: usize = 16;
/// Longest time an answer is kept, whatever its TTL says (one day, as unbound's cache-max-ttl).
const MAX_TTL: u32 = 86_400;
/// Largest answer kept, in bytes: what one UDP answer from the upstream can
/// be (`upstream` reads 4096). Bigger ones come only over TCP and are rare
/// (long TXT sets, DNSSEC keys); they are forwarded each time rather than
/// let one name pin 64 KiB. With it the cache's memory has a real ceiling:
/// `size` × (4096 + the per-entry overhead), see the README's "Bounded
/// resources".
pub const MAX_ENTRY_BYTES: usize = 4096;

/// Lookup key: wire name, type, class and a flags byte.
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
        let flags = u8::from(q.edns.is_some())
            | (u8::from(q.edns.is_some_and(|e| e.dnssec_ok)) << 1)
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

struct Entry {
    bytes: Box<[u8]>,
    /// What kind of answer it is: how a hit is served and recorded.
    kind: Hit,
    stored: Instant,
    expires: Instant,
    ttl_offsets: Box<[u16]>,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Entry>,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<Box<[u8]>>,
    /// Bytes of the answers in `map`, for the metrics.
    bytes: usize,
}

impl Shard {
    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= e.bytes.len();
        }
    }
}

/// A cached answer was written out; what kind of answer it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The upstream's answer, as it is, for any client.
    Plain,
    /// The upstream's answer, whose CNAME chain passes through a name that
    /// some client groups block and others do not: inspect it again for
    /// the client's group ([`Cache::insert_marked`]).
    Inspect,
    /// Not the upstream's answer but the block its CNAME chain led to
    /// (without client groups every client gets the same one): `list`
    /// blocked it with `action` ([`Cache::insert_verdict`]).
    Verdict { list: ListSlot, action: Action },
}

/// A bounded cache of upstream answers.
pub struct Cache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

impl Cache {
    /// A cache of at most `size` answers; 0 disables it.
    pub fn new(size: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: size.div_ceil(SHARDS),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &[u8]) -> Option<&Mutex<Shard>> {
        if self.per_shard == 0 {
            return None;
        }
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards.get(i)
    }

    /// The answers held and their bytes (each shard locked in turn).
    pub fn usage(&self) -> crate::observe::metrics::CacheUsage {
        let mut usage = crate::observe::metrics::CacheUsage::default();
        for shard in &self.shards {
            if let Ok(s) = shard.lock() {
                usage.entries += s.map.len() as u64;
                usage.bytes += s.bytes as u64;
            }
        }
        usage
    }

    /// Writes the cached answer for `key` into `out`, with the ID and question
    /// of `query` and TTLs reduced by the time spent in the cache.
    pub fn get(
        &self,
        key: &CacheKey,
        query: &[u8],
        q: &QueryFacts,
        out: &mut Vec<u8>,
    ) -> Option<Hit> {
        let shard = self.shard(key.as_bytes())?;
        let now = Instant::now();
        let mut shard = shard.lock().ok()?;
        let entry = shard.map.get(key.as_bytes())?;
        if entry.expires <= now {
            shard.remove(key.as_bytes());
            return None;
        }
        let hit = entry.kind;
        out.clear();
        out.extend_from_slice(&entry.bytes);
        let elapsed = now.duration_since(entry.stored).as_secs() as u32;
        for &at in entry.ttl_offsets.iter() {
            let at = usize::from(at);
            if let Some(ttl) = wire::u32_at(out, at) {
                out[at..at + 4].copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
            }
        }
        drop(shard);
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
        Some(hit)
    }

    /// Stores an upstream answer if it may be cached (RFC 2308 for negative
    /// answers: only with an SOA, for min(SOA TTL, SOA MINIMUM)).
    pub fn insert(&self, key: &CacheKey, response: &[u8]) {
        self.insert_marked(key, response, false);
    }

    /// [`Cache::insert`], marking the entry for inspection on every hit
    /// (`inspect`): its CNAME chain passes through a name that some client
    /// groups block and others do not.
    pub fn insert_marked(&self, key: &CacheKey, response: &[u8], inspect: bool) {
        let kind = if inspect { Hit::Inspect } else { Hit::Plain };
        self.store(key, response, kind);
    }

    /// Stores the block a CNAME chain led to (`response`, as the client
    /// got it) in place of the chain: `list` blocked it with `action`.
    pub fn insert_verdict(&self, key: &CacheKey, response: &[u8], list: ListSlot, action: Action) {
        self.store(key, response, Hit::Verdict { list, action });
    }

    fn store(&self, key: &CacheKey, response: &[u8], kind: Hit) {
        if response.len() > MAX_ENTRY_BYTES {
            return;
        }
        let Some(shard) = self.shard(key.as_bytes()) else {
            return;
        };
        let Some((ttl, ttl_offsets)) = cacheable(response) else {
            return;
        };
        // No TTL served may outlive the entry (RFC 2308 5: the SOA of a
        // negative answer says MINIMUM; our one-day cap applies too).
        let mut bytes: Box<[u8]> = response.into();
        for &at in &ttl_offsets {
            let at = usize::from(at);
            if wire::u32_at(&bytes, at).is_some_and(|t| t > ttl) {
                bytes[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
            }
        }
        let now = Instant::now();
        let entry = Entry {
            bytes,
            kind,
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
            ttl_offsets: ttl_offsets.into(),
        };
        let Ok(mut shard) = shard.lock() else {
            return;
        };
        let k: Box<[u8]> = key.as_bytes().into();
        shard.bytes += entry.bytes.len();
        match shard.map.insert(k.clone(), entry) {
            None => shard.order.push_back(k),
            Some(old) => shard.bytes -= old.bytes.len(),
        }
        while shard.map.len() > self.per_shard {
            let Some(old) = shard.order.pop_front() else {
                break;
            };
            shard.remove(&old);
        }
        // Keys of entries removed on expiry linger in `order`; drop them lazily.
        if shard.order.len() > 2 * self.per_shard.max(16) {
            let Shard { map, order, .. } = &mut *shard;
            order.retain(|k| map.contains_key(k));
        }
    }
}

/// The TTL an answer may be cached for and the offsets of its TTL fields,
/// or `None` when it must not be cached.
fn cacheable(resp: &[u8]) -> Option<(u32, Vec<u16>)> {
    let hdr = Header::parse(resp)?;
    if hdr.truncated() || hdr.qdcount != 1 || !matches!(hdr.rcode(), 0 | 3) {
        return None;
    }
    let mut at = wire::skip_name(resp, wire::HEADER_LEN)? + 4;
    let mut min_ttl = MAX_TTL;
    let mut offsets = Vec::new();
    let mut negative_ttl = None;
    let counts = [hdr.ancount, hdr.nscount, hdr.arcount];
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let (rr, next) = wire::read_rr(resp, at)?;
            at = next;
            if rr.rtype == wire::TYPE_OPT {
                continue;
            }
            // RFC 2181 8: a TTL with the top bit set is to be read as zero.
            if rr.ttl & 0x8000_0000 != 0 {
                return None;
            }
            offsets.push(u16::try_from(rr.ttl_at).ok()?);
            if section < 2 {
                min_ttl = min_ttl.min(rr.ttl);
            }
            if section == 1 && rr.rtype == wire::TYPE_SOA && rr.rdlen >= 4 {
                let minimum = wire::u32_at(resp, rr.rdata_at + rr.rdlen - 4)?;
                negative_ttl = Some(rr.ttl.min(minimum));
            }
        }
    }
    let ttl = if hdr.ancount == 0 {
        // NXDOMAIN or NODATA: cacheable only with an SOA.
        negative_ttl?.min(MAX_TTL)
    } else {
        min_ttl
    };
    (ttl > 0).then_some((ttl, offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// www.example.com A answer with TTL `ttl`, ID 0.
    fn answer(ttl: u32) -> Vec<u8> {
        let mut p = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        p.extend_from_slice(&ttl.to_be_bytes());
        p.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        p
    }

    fn facts(query: &[u8]) -> (QueryFacts, NameKey) {
        crate::query::parse(query).expect("query")
    }

    fn query() -> Vec<u8> {
        let mut p = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(b"\x03WWW\x07example\x03com\x00\x00\x01\x00\x01");
        p
    }

    #[test]
    fn hit_carries_client_id_and_case() {
        let cache = Cache::new(10);
        let q = query();
        let (f, name) = facts(&q);
        let key = CacheKey::new(&name, &f);
        let mut out = Vec::new();
        assert_eq!(cache.get(&key, &q, &f, &mut out), None);
        cache.insert(&key, &answer(300));
        assert_eq!(cache.get(&key, &q, &f, &mut out), Some(Hit::Plain));
        cache.insert_marked(&key, &answer(300), true);
        assert_eq!(cache.get(&key, &q, &f, &mut out), Some(Hit::Inspect));
        let verdict = Hit::Verdict {
            list: ListSlot(3),
            action: Action::Nxdomain,
        };
        cache.insert_verdict(&key, &answer(300), ListSlot(3), Action::Nxdomain);
        assert_eq!(cache.get(&key, &q, &f, &mut out), Some(verdict));
        cache.insert(&key, &answer(300));
        assert_eq!(&out[..2], &[0xab, 0xcd]);
        assert_eq!(&out[13..16], b"WWW");
        assert_eq!(wire::u32_at(&out, out.len() - 10), Some(300));
    }

    #[test]
    fn zero_ttl_servfail_and_negative_without_soa_are_not_cached() {
        assert!(cacheable(&answer(0)).is_none());
        let mut sf = answer(300);
        sf[3] = 0x82;
        assert!(cacheable(&sf).is_none());
        let mut nx = answer(300)[..33].to_vec();
        nx[3] = 0x83;
        nx[7] = 0;
        assert!(cacheable(&nx).is_none());
    }

    #[test]
    fn size_zero_disables_and_size_bounds_entries() {
        let q = query();
        let (f, name) = facts(&q);
        let key = CacheKey::new(&name, &f);
        let off = Cache::new(0);
        off.insert(&key, &answer(300));
        assert!(off.get(&key, &q, &f, &mut Vec::new()).is_none());
        let small = Cache::new(1);
        let total: usize = small
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum();
        assert_eq!(total, 0);
    }

    #[test]
    fn usage_counts_entries_and_bytes_through_replace_and_evict() {
        let q = query();
        let (f, name) = facts(&q);
        let key = CacheKey::new(&name, &f);
        let cache = Cache::new(1);
        cache.insert(&key, &answer(300));
        cache.insert(&key, &answer(300));
        let u = cache.usage();
        assert_eq!((u.entries, u.bytes), (1, answer(300).len() as u64));
        let mut other = q.clone();
        other[13] = b'X';
        let (f2, name2) = facts(&other);
        // Another name, maybe in the same shard (evicting) or another.
        cache.insert(&CacheKey::new(&name2, &f2), &answer(300));
        let u = cache.usage();
        assert_eq!(u.bytes, u.entries * answer(300).len() as u64);
        assert!(u.entries >= 1);
    }

    #[test]
    fn answers_over_max_entry_bytes_are_not_kept() {
        let q = query();
        let (f, name) = facts(&q);
        let key = CacheKey::new(&name, &f);
        let cache = Cache::new(10);
        // The same answer padded with a big additional record (type 65280).
        let big = |rdlen: usize| {
            let mut a = answer(300);
            a[11] = 1;
            a.extend_from_slice(&[0, 0xff, 0, 0, 1, 0, 0, 0, 60]);
            a.extend_from_slice(&(rdlen as u16).to_be_bytes());
            a.extend(std::iter::repeat_n(0u8, rdlen));
            a
        };
        let fits = big(MAX_ENTRY_BYTES - answer(300).len() - 11);
        assert_eq!(fits.len(), MAX_ENTRY_BYTES);
        cache.insert(&key, &fits);
        assert!(cache.get(&key, &q, &f, &mut Vec::new()).is_some());
        let other = Cache::new(10);
        other.insert(&key, &big(MAX_ENTRY_BYTES));
        assert!(other.get(&key, &q, &f, &mut Vec::new()).is_none());
    }
}
