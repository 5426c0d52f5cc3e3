//! Issue 16 (9, 12): what a forwarded query looks like upstream and what
//! the client gets back. Upstream always gets EDNS and RD=1, whatever the
//! client sent; an answer too big for the client loses its additional
//! section before it is truncated (RFC 2181 9).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, query, tcp, udp};

/// `many.up.test` has 40 A records (about 670 bytes: over 512, under
/// 1232); `bigmx.up.test` one MX whose exchange is `many`, so its answer
/// is small and its additional section is not.
fn zone() -> Vec<String> {
    let mut z: Vec<String> = (1..=40).map(|i| format!("many IN A 192.0.2.{i}")).collect();
    z.push("bigmx IN MX 10 many".into());
    z
}

/// A client without EDNS gets TC for an answer over 512 bytes; upstream
/// was asked once, with EDNS over UDP, so the client's TCP retry is a
/// cache hit: no second exchange, over TCP, with the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_client_without_edns_gets_tc_and_its_tcp_retry_comes_from_the_cache() {
    let up = Upstream::start_with(&zone()).await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let r = udp(e.addr, &query("many.up.test.", RecordType::A, false)).await;
    assert!(r.metadata.truncation, "{r:?}");
    assert!(r.answers.is_empty() && r.edns.is_none(), "{r:?}");
    let asked = up.asked("many.up.test");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].edns && !asked[0].tcp, "{asked:?}");
    let r = tcp(e.addr, &query("many.up.test.", RecordType::A, false)).await;
    assert_eq!(r.answers.len(), 40);
    assert!(!r.metadata.truncation && r.edns.is_none(), "{r:?}");
    assert_eq!(up.asked("many.up.test").len(), 1, "the retry was a hit");
    e.stop().await;
}

/// An answer whose answer section fits the client's 512 bytes but whose
/// additional section does not: the additional records go, TC stays clear.
#[tokio::test(flavor = "multi_thread")]
async fn r16_an_overflowing_additional_section_is_dropped_not_truncated() {
    let up = Upstream::start_with(&zone()).await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    // With EDNS (1232 bytes) the whole answer fits: the glue is there.
    let full = udp(e.addr, &query("bigmx.up.test.", RecordType::MX, true)).await;
    assert_eq!(full.answers.len(), 1, "{full:?}");
    assert!(full.additionals.len() >= 40, "{full:?}");
    // Fresh from upstream and from the cache: the same.
    for round in 0..2 {
        let r = if round == 0 {
            udp(e.addr, &query("bigmx.up.test.", RecordType::MX, false)).await
        } else {
            let mut q = query("bigmx.up.test.", RecordType::MX, true);
            if let Some(edns) = q.edns.as_mut() {
                edns.set_max_payload(512);
            }
            udp(e.addr, &q).await
        };
        assert!(!r.metadata.truncation, "round {round}: {r:?}");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1, "round {round}: {r:?}");
        assert!(r.additionals.is_empty(), "round {round}: {r:?}");
        assert_eq!(r.edns.is_some(), round == 1, "the OPT as asked: {r:?}");
    }
    e.stop().await;
}

/// A client with RD=0 does not make the upstream get RD=0 (as unbound's
/// forward-zone does), so what is cached was fetched with RD=1 for every
/// client after it; each client sees its own RD echoed.
#[tokio::test(flavor = "multi_thread")]
async fn r16_upstream_always_gets_rd_and_the_client_sees_its_own() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    for rd in [false, true] {
        for edns in [true, false] {
            let mut q = query("www.up.test.", RecordType::A, edns);
            q.metadata.recursion_desired = rd;
            let r = udp(e.addr, &q).await;
            assert_eq!(r.answers.len(), 1, "{r:?}");
            assert_eq!(r.metadata.recursion_desired, rd, "RD as asked: {r:?}");
            let r = tcp(e.addr, &q).await;
            assert_eq!(r.metadata.recursion_desired, rd, "RD as asked: {r:?}");
        }
    }
    let asked = up.asked("www.up.test");
    assert_eq!(asked.len(), 1, "one fetch, then hits: {asked:?}");
    assert!(asked[0].rd && asked[0].edns, "{asked:?}");
    e.stop().await;
}
