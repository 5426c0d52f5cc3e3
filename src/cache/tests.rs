//! The cache's tests, through its API: what is kept and for how long, what a
//! hit writes, stale answers, prefetch, admission under a flood, bounds.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::wire::{self, Header};

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

/// Issue 21: a note is kept beside the answer, never served, handed back
/// for the entry it was stored with (its tag), TTLs counted down as ever.
#[test]
fn notes_are_kept_beside_the_answer_and_never_served() {
    let cache = Cache::new(&CacheConfig::default());
    let q = query();
    let (key, f) = key_of(&q);
    let (mut plain, mut noted) = (Vec::new(), Vec::new());
    cache.insert_tagged(&key, &mut answer(300), Tag(7));
    assert_eq!(cache.get(&key, &q, &f, &mut plain), (Found::Fresh, Tag(7)));
    assert_eq!(cache.note(&key, Tag(7), <[u8]>::to_vec), None, "no note");
    cache.insert_noted(&key, &mut answer(300), Tag(7), b"\x01note");
    assert_eq!(cache.get(&key, &q, &f, &mut noted), (Found::Fresh, Tag(7)));
    assert_eq!(noted, plain, "the note is not served");
    assert_eq!(ttls(&noted), [300]);
    assert_eq!(
        cache.note(&key, Tag(7), <[u8]>::to_vec),
        Some(b"\x01note".to_vec())
    );
    assert_eq!(
        cache.note(&key, Tag(8), <[u8]>::to_vec),
        None,
        "another tag"
    );
    cache.insert_noted(&key, &mut answer(300), Tag(7), &[1; 256]);
    assert_eq!(cache.note(&key, Tag(7), <[u8]>::to_vec), None, "too long");
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
