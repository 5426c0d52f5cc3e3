//! Issue 12: the cache against the running server and a real upstream:
//! TTL clamps as clients see them, serve-stale through a staged outage
//! (silent upstream, SERVFAIL upstream; UDP fast path and the TCP path),
//! prefetch of popular names, admission under a flood of random names, and
//! the byte bound.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{Embargo, Outage, Upstream, config, ede, query, tcp, udp};

/// The harness config with its `[cache]` section replaced by `cache`.
fn with_cache(up: &Upstream, cache: &str) -> String {
    let c = config(up.addr, "");
    assert!(c.contains("[cache]\nsize = 1000\n"));
    // A loaded machine must not turn a slow answer into SERVFAIL.
    c.replace("[cache]\nsize = 1000\n", &format!("[cache]\n{cache}\n"))
        .replace("timeout_ms = 1000", "timeout_ms = 3000")
}

/// [`with_cache`] with a short upstream timeout, for the outage tests.
fn with_cache_outage(up: &Upstream, cache: &str) -> String {
    with_cache(up, cache).replace("timeout_ms = 3000", "timeout_ms = 400")
}

/// The query log's records, once it has at least `n` (waits up to 5 s).
async fn log_records(e: &Embargo, n: usize) -> Vec<serde_json::Value> {
    let path = e.dir().join("embargo-state/queries.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() > deadline {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}")))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn a_record(msg: &hickory_proto::op::Message) -> Option<std::net::Ipv4Addr> {
    msg.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn ttls_are_clamped_as_configured() {
    let up = Upstream::start_with(&[
        "tiny 2 IN A 192.0.2.20".into(),
        "long 604800 IN A 192.0.2.21".into(),
    ])
    .await;
    let e = Embargo::start(
        &with_cache(
            &up,
            "size = 1000\nmin_ttl = 60\nmax_ttl = 3600\nnegative_ttl_max = 2",
        ),
        &[],
    )
    .await;
    // Raised to min_ttl, on the answer that fills the cache and on hits.
    let first = udp(e.addr, &query("tiny.up.test.", RecordType::A, false)).await;
    assert_eq!(first.answers[0].ttl, 60);
    // Lowered to max_ttl.
    let long = udp(e.addr, &query("long.up.test.", RecordType::A, true)).await;
    assert_eq!(long.answers[0].ttl, 3600);
    let long = udp(e.addr, &query("long.up.test.", RecordType::A, true)).await;
    assert!((3599..=3600).contains(&long.answers[0].ttl));
    // The zone's negative TTL is min(SOA TTL 300, MINIMUM 60) = 60: capped at 2.
    let nx = udp(e.addr, &query("nope.up.test.", RecordType::A, false)).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].ttl, 2);
    let nx = udp(e.addr, &query("nope.up.test.", RecordType::A, false)).await;
    assert!(nx.authorities[0].ttl <= 2);
    assert_eq!(
        up.count("nope.up.test"),
        1,
        "the second NXDOMAIN was cached"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Past the record's own TTL of 2 s, min_ttl keeps it; the negative
    // answer is gone after its 2 s.
    let again = udp(e.addr, &query("tiny.up.test.", RecordType::A, false)).await;
    assert!((57..=58).contains(&again.answers[0].ttl), "{again:?}");
    assert_eq!(up.count("tiny.up.test"), 1, "kept for min_ttl");
    udp(e.addr, &query("nope.up.test.", RecordType::A, false)).await;
    assert_eq!(up.count("nope.up.test"), 2, "negative answer expired");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_answers_when_the_upstream_is_silent_then_servfail_past_stale_max() {
    let up = Upstream::start_with(&[
        "stale-a 1 IN A 192.0.2.31".into(),
        "stale-b 1 IN A 192.0.2.32".into(),
    ])
    .await;
    let cfg =
        with_cache_outage(&up, "size = 1000\nstale_max = \"4s\"") + "\n[log]\nqueries = \"all\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    let cached = Instant::now();
    let a = udp(e.addr, &query("stale-a.up.test.", RecordType::A, true)).await;
    assert_eq!(a.answers[0].ttl, 1);
    // Without EDNS: the same entry (upstream is asked with EDNS either way).
    udp(e.addr, &query("stale-a.up.test.", RecordType::A, false)).await;
    tcp(e.addr, &query("stale-b.up.test.", RecordType::A, true)).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    up.set_outage(Outage::Silent);
    // UDP (the upstream module's fast path): asked, timed out, stale.
    let started = Instant::now();
    let stale = udp(e.addr, &query("stale-a.up.test.", RecordType::A, true)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited for the upstream"
    );
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_record(&stale), Some("192.0.2.31".parse().expect("ip")));
    assert_eq!(stale.answers[0].ttl, 30, "RFC 8767 TTL");
    let (code, text) = ede(&stale).expect("an EDE");
    assert_eq!(code, 3, "Stale Answer");
    assert_eq!(text, "upstream timed out");
    // Asked (the UDP path sends an unanswered query once more).
    let asked = up.count("stale-a.up.test");
    assert!((2..=3).contains(&asked), "the upstream was asked: {asked}");
    // For a while now it is served at once, without asking again.
    let again = udp(e.addr, &query("stale-a.up.test.", RecordType::A, true)).await;
    assert_eq!(ede(&again).map(|e| e.0), Some(3));
    assert_eq!(again.answers[0].ttl, 30);
    assert_eq!(up.count("stale-a.up.test"), asked, "not forwarded again");
    // The query log says so: both stale answers (after the failed forward,
    // and at once) are `cached` and `stale`; the fresh ones (forwarded,
    // then a hit) are not stale.
    let log = log_records(&e, 5).await;
    let of_a: Vec<(&str, bool)> = log
        .iter()
        .filter(|r| r["name"] == "stale-a.up.test")
        .map(|r| (r["decision"].as_str().unwrap_or(""), r["stale"] == true))
        .collect();
    assert_eq!(
        of_a,
        [
            ("forwarded", false),
            ("cached", false),
            ("cached", true),
            ("cached", true)
        ],
        "{log:#?}"
    );
    // Without EDNS: the stale answer and no OPT.
    let plain = udp(e.addr, &query("stale-a.up.test.", RecordType::A, false)).await;
    assert_eq!(a_record(&plain), Some("192.0.2.31".parse().expect("ip")));
    assert_eq!(plain.answers[0].ttl, 30);
    assert!(plain.edns.is_none());
    // TCP (`Handler::forward`): the same.
    let b = tcp(e.addr, &query("stale-b.up.test.", RecordType::A, true)).await;
    assert_eq!(a_record(&b), Some("192.0.2.32".parse().expect("ip")));
    assert_eq!(b.answers[0].ttl, 30);
    assert_eq!(ede(&b).map(|e| e.0), Some(3));
    assert!(e.handler.cache().stats().stale >= 4);

    // stale_max (4 s) past the expiry (1 s): nothing to serve any more.
    let past = Duration::from_millis(5300).saturating_sub(cached.elapsed());
    tokio::time::sleep(past).await;
    let servfail = udp(e.addr, &query("stale-a.up.test.", RecordType::A, true)).await;
    assert_eq!(servfail.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&servfail).map(|e| e.0), Some(22));
    assert!(servfail.answers.is_empty());
    e.stop().await;
}

/// An upstream that answers SERVFAIL counts as failing too; once it is
/// back and the 30 s recheck is over, the fresh answer replaces the stale.
#[tokio::test(flavor = "multi_thread")]
async fn stale_answers_on_upstream_servfail_and_fresh_ones_once_it_is_back() {
    let up = Upstream::start_with(&["flaky 1 IN A 192.0.2.33".into()]).await;
    let e = Embargo::start(&with_cache_outage(&up, "size = 1000"), &[]).await;
    udp(e.addr, &query("flaky.up.test.", RecordType::A, true)).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    up.set_outage(Outage::ServFail);
    let stale = udp(e.addr, &query("flaky.up.test.", RecordType::A, true)).await;
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(stale.answers[0].ttl, 30);
    assert_eq!(
        ede(&stale),
        Some((3, "upstream answered SERVFAIL".to_string()))
    );
    let recheck = Instant::now();
    up.set_outage(Outage::None);
    assert_eq!(up.count("flaky.up.test"), 2);
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(recheck.elapsed())).await;
    let fresh = udp(e.addr, &query("flaky.up.test.", RecordType::A, true)).await;
    assert_eq!(fresh.answers[0].ttl, 1);
    assert!(ede(&fresh).is_none(), "{fresh:?}");
    assert_eq!(
        up.count("flaky.up.test"),
        3,
        "asked again after the recheck"
    );
    let hit = udp(e.addr, &query("flaky.up.test.", RecordType::A, true)).await;
    assert!(hit.answers[0].ttl <= 1 && ede(&hit).is_none());
    assert_eq!(up.count("flaky.up.test"), 3, "the fresh answer is cached");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn popular_answers_are_refreshed_before_they_expire() {
    let up = Upstream::start_with(&[
        "popular 10 IN A 192.0.2.41".into(),
        "once 10 IN A 192.0.2.42".into(),
    ])
    .await;
    let e = Embargo::start(&with_cache(&up, "size = 1000"), &[]).await;
    udp(e.addr, &query("popular.up.test.", RecordType::A, false)).await;
    let stored = Instant::now();
    udp(e.addr, &query("once.up.test.", RecordType::A, false)).await;
    for _ in 0..3 {
        udp(e.addr, &query("popular.up.test.", RecordType::A, false)).await;
    }
    // In the last tenth of its TTL, a hit on a popular entry refreshes it.
    tokio::time::sleep(Duration::from_millis(9300).saturating_sub(stored.elapsed())).await;
    let late = udp(e.addr, &query("popular.up.test.", RecordType::A, false)).await;
    assert!(late.answers[0].ttl <= 1, "{late:?}");
    udp(e.addr, &query("once.up.test.", RecordType::A, false)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(up.count("popular.up.test"), 2, "refreshed before expiry");
    assert_eq!(up.count("once.up.test"), 1, "not popular: not refreshed");
    assert_eq!(e.handler.cache().stats().prefetches, 1);
    // After the first answer's expiry the next client still gets a hit.
    tokio::time::sleep(Duration::from_millis(10_500).saturating_sub(stored.elapsed())).await;
    let after = udp(e.addr, &query("popular.up.test.", RecordType::A, false)).await;
    assert!(after.answers[0].ttl >= 8, "{after:?}");
    assert_eq!(
        up.count("popular.up.test"),
        2,
        "a hit, from the refreshed entry"
    );
    udp(e.addr, &query("once.up.test.", RecordType::A, false)).await;
    assert_eq!(up.count("once.up.test"), 2, "expired: asked again");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_random_names_does_not_flush_the_popular_ones() {
    let up = Upstream::start().await;
    let e = Embargo::start(&with_cache(&up, "size = 160"), &[]).await;
    let popular: Vec<String> = (0..40).map(|i| format!("p{i}.up.test.")).collect();
    for _ in 0..3 {
        for name in &popular {
            udp(e.addr, &query(name, RecordType::A, false)).await;
        }
    }
    // Six times the cache's size in names asked once each (NXDOMAIN with
    // an SOA: cacheable, so each one asks for a place), in rounds of 250
    // (more than the cache holds: FIFO or LRU would lose every popular
    // name in each round), the popular names still asked between rounds.
    for round in 0..4 {
        for i in 0..250 {
            let r = udp(
                e.addr,
                &query(
                    &format!("r{round}-{i}.flood.up.test."),
                    RecordType::A,
                    false,
                ),
            )
            .await;
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        }
        for name in &popular {
            udp(e.addr, &query(name, RecordType::A, false)).await;
        }
    }
    assert_eq!(up.count("r3-249.flood.up.test"), 1);
    let asked_again: Vec<&String> = popular
        .iter()
        .filter(|n| up.count(n.trim_end_matches('.')) > 1)
        .collect();
    // A flood name whose sketch counters collide with a popular one's can
    // win a place now and then; wholesale eviction would be all 40.
    assert!(
        asked_again.len() <= 2,
        "evicted by the flood: {asked_again:?}"
    );
    let st = e.handler.cache().stats();
    assert!(st.rejected >= 800, "{st:?}");
    assert!(st.entries <= st.max_entries, "{st:?}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_large_answers_stay_under_max_bytes() {
    let text = format!("\"{}\"", "x".repeat(250));
    let records: Vec<String> = (0..300)
        .map(|i| format!("big{i} IN TXT {text} {text} {text} {text}"))
        .collect();
    let up = Upstream::start_with(&records).await;
    // Size 1000 would take 1 MB of these; 400 KB is the bound.
    let max_bytes = 400_000;
    let cfg = with_cache(&up, &format!("size = 1000\nmax_bytes = {max_bytes}"));
    let e = Embargo::start(&cfg, &[]).await;
    for i in 0..300 {
        let r = tcp(
            e.addr,
            &query(&format!("big{i}.up.test."), RecordType::TXT, true),
        )
        .await;
        assert_eq!(r.answers.len(), 1);
        let st = e.handler.cache().stats();
        assert!(st.bytes <= max_bytes, "{st:?}");
    }
    let st = e.handler.cache().stats();
    assert!(st.entries >= 100 && st.entries < 300, "{st:?}");
    assert!(st.evictions + st.rejected > 0, "{st:?}");
    // What is kept is served.
    let before = up.count("big0.up.test");
    tcp(e.addr, &query("big0.up.test.", RecordType::TXT, true)).await;
    assert_eq!(
        up.count("big0.up.test"),
        before,
        "the first big answer is kept"
    );
    e.stop().await;
}

/// Issue 16 (1): serve-stale re-checks a cached chain too. During an
/// outage, a reload lists the target of two expired chains: the client
/// gets the list's block, not the chain as it was, both from an entry
/// already served stale (served at once during the 30 s recheck) and from
/// one served after the failed forward.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_stale_chain_is_blocked_when_a_reload_lists_its_target() {
    let up = Upstream::start_with(&[
        "stale-c 1 IN CNAME www".into(),
        "stale-d 1 IN CNAME www".into(),
    ])
    .await;
    let e = Embargo::start(&with_cache_outage(&up, "size = 1000"), &[]).await;
    for name in ["stale-c.up.test.", "stale-d.up.test."] {
        let r = udp(e.addr, &query(name, RecordType::A, true)).await;
        assert_eq!(a_record(&r), Some("192.0.2.10".parse().expect("ip")));
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    up.set_outage(Outage::Silent);
    let stale = udp(e.addr, &query("stale-c.up.test.", RecordType::A, true)).await;
    assert_eq!(ede(&stale).map(|e| e.0), Some(3), "stale: {stale:?}");
    std::fs::write(
        e.dir().join("seized.txt"),
        format!("{}www.up.test\n", crate::harness::SEIZED_LIST),
    )
    .expect("list");
    embargo::reload::reload(&e.dir().join("embargo.toml"), e.handler.state()).expect("reload");
    for name in ["stale-c", "stale-d", "stale-d"] {
        let r = udp(
            e.addr,
            &query(&format!("{name}.up.test."), RecordType::A, true),
        )
        .await;
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}: {r:?}"
        );
        let (code, text) = ede(&r).expect("an EDE");
        assert_eq!(code, 16, "the list's EDE: {text}");
        assert!(
            text.contains(&format!(
                "reached through CNAME {name}.up.test -> www.up.test"
            )),
            "{text}"
        );
    }
    e.stop().await;
}
