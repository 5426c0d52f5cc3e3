//! Listed names and every name below them are answered locally, as each
//! action says, with an EDE naming the list, and never reach the upstream.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{Embargo, Upstream, config, ede, query, tcp, udp};

fn soa_of(msg: &hickory_proto::op::Message) -> (String, u32, u32) {
    let rec = msg.authorities.first().expect("an SOA in authority");
    let RData::SOA(soa) = &rec.data else {
        panic!("authority is not an SOA: {rec:?}")
    };
    (rec.name.to_string(), rec.ttl, soa.minimum)
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_name_and_subdomains_get_nxdomain_with_soa_and_ede_never_upstream() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    for name in [
        "seized.example.",
        "www.seized.example.",
        "a.b.c.Seized.Example.",
    ] {
        for rtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::MX,
            RecordType::TXT,
            RecordType::HTTPS,
            RecordType::ANY,
        ] {
            let q = query(name, rtype, true);
            let r = udp(e.addr, &q).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::NXDomain,
                "{name} {rtype}"
            );
            assert!(r.answers.is_empty());
            let (owner, ttl, min) = soa_of(&r);
            assert_eq!(
                owner.to_ascii_lowercase(),
                "seized.example.",
                "SOA owner is the listed domain"
            );
            assert_eq!((ttl, min), (300, 300));
            let (code, text) = ede(&r).expect("EDE present with EDNS");
            assert_eq!(code, 16);
            assert!(
                text.contains("seized")
                    && text.contains("Test Court")
                    && text.contains("court order"),
                "{text}"
            );
            // Header: AA and AD clear, RA set, RD echoed, question echoed with its case.
            assert!(!r.metadata.authoritative && !r.metadata.authentic_data);
            assert!(r.metadata.recursion_available && r.metadata.recursion_desired);
            assert_eq!(r.queries[0].name().to_string(), name);
            assert_eq!(r.queries[0].query_type(), rtype);
        }
    }
    // Over TCP too.
    let r = tcp(
        e.addr,
        &query("deep.www.seized.example.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        r.edns.is_none() && ede(&r).is_none(),
        "no OPT without EDNS in the query"
    );
    assert_eq!(
        up.count("seized.example")
            + up.count("www.seized.example")
            + up.count("a.b.c.seized.example"),
        0
    );
    assert!(
        up.seen().iter().all(|n| !n.ends_with("seized.example")),
        "{:?}",
        up.seen()
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parents_and_siblings_are_forwarded_and_allow_wins() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let r = udp(
        e.addr,
        &query("allowed.seized.example.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.answers.len(),
        1,
        "allowlisted subdomain of a listed name resolves"
    );
    assert_eq!(up.count("allowed.seized.example"), 1);
    let r = udp(e.addr, &query("example.", RecordType::SOA, false)).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NoError,
        "the parent is not blocked"
    );
    let r = udp(e.addr, &query("notseized.example.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(ede(&r).is_none());
    assert_eq!(up.count("notseized.example"), 1, "a sibling goes upstream");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_action_answers_as_configured() {
    let up = Upstream::start().await;
    let lists = r#"
[[lists]]
name = "sink"
source = "sink.txt"
action = "sinkhole"
sinkhole_ipv4 = "192.0.2.99"
sinkhole_ipv6 = "2001:db8::99"

[[lists]]
name = "nodata"
source = "nodata.txt"
action = "nodata"
ede = "filtered"

[[lists]]
name = "refused"
source = "refused.txt"
action = "refused"
"#;
    let e = Embargo::start(
        &config(up.addr, lists),
        &[
            ("sink.txt", "sink.example\n"),
            ("nodata.txt", "nodata.example\n"),
            ("refused.txt", "refused.example\n"),
        ],
    )
    .await;

    let r = udp(e.addr, &query("x.sink.example.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(
        r.answers[0].data,
        RData::A("192.0.2.99".parse().expect("ip"))
    );
    assert_eq!(r.answers[0].ttl, 300);
    assert_eq!(r.answers[0].name.to_string(), "x.sink.example.");
    assert_eq!(ede(&r).map(|(c, _)| c), Some(15));
    let r = udp(e.addr, &query("sink.example.", RecordType::AAAA, false)).await;
    assert_eq!(
        r.answers[0].data,
        RData::AAAA("2001:db8::99".parse().expect("ip"))
    );
    let r = udp(e.addr, &query("sink.example.", RecordType::MX, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(soa_of(&r).0, "sink.example.");

    let r = udp(e.addr, &query("a.nodata.example.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert_eq!(soa_of(&r).0, "nodata.example.");
    assert_eq!(ede(&r).map(|(c, _)| c), Some(17));

    let r = tcp(e.addr, &query("refused.example.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(r.answers.is_empty() && r.authorities.is_empty());
    assert!(ede(&r).expect("ede").1.contains("refused"));
    assert!(
        up.seen()
            .iter()
            .all(|n| !n.contains("sink") && !n.contains("nodata") && !n.contains("refused"))
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn class_any_queries_get_records_of_class_in() {
    use hickory_proto::rr::DNSClass;
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let mut q = query("seized.example.", RecordType::A, false);
    q.queries[0].set_query_class(DNSClass::ANY);
    let r = udp(e.addr, &q).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        r.queries[0].query_class(),
        DNSClass::ANY,
        "question echoed as asked"
    );
    assert_eq!(r.authorities[0].dns_class, DNSClass::IN);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blocking_works_with_the_upstream_down() {
    let dead = crate::harness::dead_addr().await;
    let e = Embargo::start(&config(dead, ""), &[]).await;
    let r = udp(e.addr, &query("www.seized.example.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dnssec_ok_is_echoed_and_ad_never_set() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let mut q = query("seized.example.", RecordType::A, true);
    q.metadata.authentic_data = true;
    if let Some(edns) = q.edns.as_mut() {
        edns.set_dnssec_ok(true);
    }
    let r = udp(e.addr, &q).await;
    assert!(!r.metadata.authentic_data);
    assert!(r.edns.as_ref().expect("opt").flags().dnssec_ok);
    assert_eq!(r.edns.as_ref().expect("opt").max_payload(), 1232);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blocks_are_counted_per_list() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    for _ in 0..3 {
        udp(e.addr, &query("a.wild.example.", RecordType::A, false)).await;
    }
    let snap = e.handler.state().load();
    let list = snap
        .lists
        .iter()
        .find(|l| l.spec.name == "seized")
        .expect("list");
    assert_eq!(e.stats.blocked(list.slot), Some(3));
    e.stop().await;
}
