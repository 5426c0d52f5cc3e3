//! Names that are not listed go upstream and come back faithfully; the
//! cache serves repeats; big answers truncate over UDP and come whole over
//! TCP; a dead upstream gives SERVFAIL in time.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{
    Embargo, Outage, Upstream, config, dead_addr, ede, query, tcp, tcp_many, udp,
};

#[tokio::test(flavor = "multi_thread")]
async fn answers_pass_through_faithfully() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;

    let r = udp(e.addr, &query("WWW.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(
        r.answers[0].data,
        RData::A("192.0.2.10".parse().expect("ip"))
    );
    assert_eq!(
        r.queries[0].name().to_string(),
        "WWW.up.test.",
        "question case preserved"
    );
    assert!(r.metadata.recursion_available);

    let r = udp(e.addr, &query("chain.up.test.", RecordType::A, true)).await;
    let types: Vec<RecordType> = r.answers.iter().map(|a| a.record_type()).collect();
    assert_eq!(
        types,
        [RecordType::CNAME, RecordType::CNAME, RecordType::A],
        "CNAME chain kept"
    );

    let r = udp(e.addr, &query("nope.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        r.authorities.first().map(|a| a.record_type()),
        Some(RecordType::SOA)
    );

    let r = tcp(e.addr, &query("nodata.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(
        r.authorities.first().map(|a| a.record_type()),
        Some(RecordType::SOA)
    );

    let r = udp(e.addr, &query("mx.up.test.", RecordType::MX, false)).await;
    assert_eq!(r.answers[0].record_type(), RecordType::MX);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_serves_repeats_with_ttls_counting_down() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let first = udp(e.addr, &query("www.up.test.", RecordType::AAAA, false)).await;
    assert_eq!(first.answers[0].ttl, 300);
    let second = udp(e.addr, &query("Www.Up.Test.", RecordType::AAAA, false)).await;
    assert_eq!(
        second.answers,
        first
            .answers
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.name = second.answers[0].name.clone();
                a
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(second.queries[0].name().to_string(), "Www.Up.Test.");
    assert_eq!(
        up.count("www.up.test"),
        1,
        "second answer came from the cache"
    );

    let short = udp(e.addr, &query("short.up.test.", RecordType::A, false)).await;
    assert_eq!(short.answers[0].ttl, 5);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let again = udp(e.addr, &query("short.up.test.", RecordType::A, false)).await;
    assert!(
        again.answers[0].ttl <= 3,
        "TTL counts down in the cache: {}",
        again.answers[0].ttl
    );
    assert_eq!(up.count("short.up.test"), 1);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn big_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let txt: Vec<String> = (0..30)
        .map(|i| format!("big IN TXT \"record {i:02} {}\"", "x".repeat(60)))
        .collect();
    let up = Upstream::start_with(&txt).await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let r = udp(e.addr, &query("big.up.test.", RecordType::TXT, true)).await;
    assert!(r.metadata.truncation, "TC set over UDP");
    assert!(r.answers.is_empty());
    assert_eq!(r.queries.len(), 1);
    let r = udp(e.addr, &query("big.up.test.", RecordType::TXT, false)).await;
    assert!(r.metadata.truncation, "TC set without EDNS too");
    let r = tcp(e.addr, &query("big.up.test.", RecordType::TXT, true)).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 30, "TCP carries the whole answer");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_tcp_queries_are_all_answered() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let msgs = vec![
        query("www.up.test.", RecordType::A, false),
        query("seized.example.", RecordType::A, true),
        query("mx.up.test.", RecordType::MX, false),
        query("a.sanctioned.example.", RecordType::AAAA, false),
        query("nope.up.test.", RecordType::A, false),
    ];
    let replies = tcp_many(e.addr, &msgs).await;
    for m in &msgs {
        let r = replies
            .iter()
            .find(|r| r.metadata.id == m.metadata.id)
            .expect("every query answered");
        assert_eq!(r.queries[0].name(), m.queries[0].name());
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_upstream_gives_servfail_in_time_and_serving_goes_on() {
    let dead = dead_addr().await;
    let e = Embargo::start(&config(dead, ""), &[]).await;
    let started = Instant::now();
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ede(&r).map(|(c, _)| c), Some(22));
    let r = tcp(e.addr, &query("www.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let r = udp(e.addr, &query("seized.example.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_upstream_times_out_within_timeout_ms() {
    // A socket that receives but never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let e = Embargo::start(&config(silent.local_addr().expect("addr"), ""), &[]).await;
    let started = Instant::now();
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, false)).await;
    let took = started.elapsed();
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_upstream_is_used_when_the_first_is_down_and_tcp_only_works() {
    let up = Upstream::start().await;
    let dead = dead_addr().await;
    let cfg = config(up.addr, "").replace(
        &format!("servers = [\"{}\"]", up.addr),
        &format!("servers = [\"{dead}\", \"tcp://{}\"]", up.addr),
    );
    let e = Embargo::start(&cfg, &[]).await;
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edns_is_hop_by_hop_and_cache_hits_take_the_clients_flags() {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    // A client cookie and an unknown option: neither comes back, nor reaches
    // the next client through the cache; our payload size is 1232.
    let mut q = query("www.up.test.", RecordType::A, true);
    if let Some(edns) = q.edns.as_mut() {
        edns.options_mut()
            .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
        edns.options_mut()
            .insert(EdnsOption::Unknown(65001, vec![9, 9]));
        edns.set_max_payload(4096);
    }
    for _ in 0..2 {
        let r = udp(e.addr, &q).await;
        let opt = r.edns.as_ref().expect("OPT echoed");
        assert_eq!(opt.max_payload(), 1232);
        assert!(
            opt.option(EdnsCode::Cookie).is_none(),
            "no cookie of anyone's"
        );
        assert!(opt.option(EdnsCode::Unknown(65001)).is_none());
        assert_eq!(r.answers.len(), 1);
    }
    assert_eq!(up.count("www.up.test"), 1, "second answer from the cache");
    // Same name from the cache for a client that did not ask for recursion:
    // RD as it asked (RFC 1035 4.1.1), RA still set.
    let mut norec = query("www.up.test.", RecordType::A, true);
    norec.metadata.recursion_desired = false;
    let r = udp(e.addr, &norec).await;
    assert!(!r.metadata.recursion_desired && r.metadata.recursion_available);
    let mut cd = query("www.up.test.", RecordType::A, true);
    cd.metadata.checking_disabled = true;
    let r = udp(e.addr, &cd).await;
    assert!(r.metadata.checking_disabled, "CD echoed");
    e.stop().await;
}

/// The harness config with `timeout_ms` and extra `[cache]` lines.
fn with_timeout_and_cache(up: &Upstream, timeout_ms: u64, cache: &str) -> String {
    let c = config(up.addr, "");
    assert!(c.contains("[cache]\nsize = 1000\n") && c.contains("timeout_ms = 1000"));
    c.replace("timeout_ms = 1000", &format!("timeout_ms = {timeout_ms}"))
        .replace(
            "[cache]\nsize = 1000\n",
            &format!("[cache]\nsize = 1000\n{cache}\n"),
        )
}

/// Issue 16 (11), RFC 9520 section 3.2: a question whose forward failed is
/// answered SERVFAIL at once for `servfail_ttl`, over UDP and TCP, without
/// asking the upstream again; then it is asked again.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_failed_question_is_answered_servfail_at_once_for_servfail_ttl() {
    let up = Upstream::start().await;
    up.set_outage(Outage::Silent);
    let e = Embargo::start(&with_timeout_and_cache(&up, 400, "servfail_ttl = 2"), &[]).await;
    let failed = Instant::now();
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(
        failed.elapsed() >= Duration::from_millis(350),
        "waited for the upstream"
    );
    let asked = up.count("www.up.test");
    assert!(asked >= 1);
    for over_tcp in [false, true] {
        let msg = query("www.up.test.", RecordType::A, true);
        let started = Instant::now();
        let r = if over_tcp {
            tcp(e.addr, &msg).await
        } else {
            udp(e.addr, &msg).await
        };
        let took = started.elapsed();
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::ServFail,
            "tcp: {over_tcp}"
        );
        assert_eq!(ede(&r).map(|(c, _)| c), Some(22), "tcp: {over_tcp}");
        assert!(
            took < Duration::from_millis(150),
            "tcp: {over_tcp}: {took:?}"
        );
        assert_eq!(
            up.count("www.up.test"),
            asked,
            "tcp: {over_tcp}: not asked again"
        );
    }
    // Another question is asked as usual.
    let started = Instant::now();
    let r = udp(e.addr, &query("mail.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() >= Duration::from_millis(350));
    // Past servfail_ttl (from the failure, 400 ms in) it goes upstream again.
    up.set_outage(Outage::None);
    tokio::time::sleep(Duration::from_millis(2600).saturating_sub(failed.elapsed())).await;
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(up.count("www.up.test"), asked + 1);
    e.stop().await;
}

/// Issue 16 (11), RFC 8767's client response timer: with a stale copy
/// kept, a client whose forward is not answered within
/// `stale_client_timeout_ms` (400 by default) gets that copy then, not at
/// the end of `timeout_ms`; the forward carries on and its late answer
/// refreshes the cache. Over UDP and TCP.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_stale_answer_comes_at_the_client_timer_and_the_late_answer_refreshes_the_cache() {
    let up = Upstream::start_with(&[
        "slow-a 1 IN A 192.0.2.51".into(),
        "slow-b 1 IN A 192.0.2.52".into(),
    ])
    .await;
    let e = Embargo::start(&with_timeout_and_cache(&up, 3000, ""), &[]).await;
    for name in ["slow-a.up.test.", "slow-b.up.test."] {
        udp(e.addr, &query(name, RecordType::A, true)).await;
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Answers come 1.2 s late: within timeout_ms, past the client timer.
    up.set_outage(Outage::Late(Duration::from_millis(1200)));
    for (name, over_tcp) in [("slow-a.up.test.", false), ("slow-b.up.test.", true)] {
        let msg = query(name, RecordType::A, true);
        let started = Instant::now();
        let r = if over_tcp {
            tcp(e.addr, &msg).await
        } else {
            udp(e.addr, &msg).await
        };
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_millis(900),
            "{name}: {took:?}"
        );
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(r.answers.len(), 1, "{name}");
        assert_eq!(r.answers[0].ttl, 30, "{name}: stale (RFC 8767)");
        assert_eq!(
            ede(&r).map(|(c, _)| c),
            Some(3),
            "{name}: EDE 3 Stale Answer"
        );
        // The upstream's late answer is cached fresh: the next client gets
        // it at once, and nobody asks the (still slow) upstream again.
        let asked = up.count(name.trim_end_matches('.'));
        tokio::time::sleep(Duration::from_millis(1450).saturating_sub(started.elapsed())).await;
        let started = Instant::now();
        let r = udp(e.addr, &query(name, RecordType::A, true)).await;
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "{name}: a hit"
        );
        assert!(r.answers[0].ttl <= 1 && ede(&r).is_none(), "{name}: {r:?}");
        assert_eq!(up.count(name.trim_end_matches('.')), asked, "{name}");
    }
    e.stop().await;
}
