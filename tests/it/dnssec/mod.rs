//! DNSSEC validation (`[upstream] dnssec = "validate"`, issue 19): each
//! outcome against the running server, over UDP, from a zone signed here
//! ([`signed`]) and, with knotd installed, from one knotd signs itself
//! ([`knot`], ignored unless `--ignored`).

mod knot;
mod signed;

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{Embargo, config, ede, query, udp};
use signed::SignedUpstream;

/// The harness config forwarding to `upstream`, validating from the
/// anchors in `anchors.key`, with `blocked.signed.test` listed and the
/// query log on.
fn validating(upstream: std::net::SocketAddr) -> String {
    config(
        upstream,
        "[[lists]]\nname = \"zone\"\nsource = \"zone.txt\"\n",
    )
    .replacen(
        "timeout_ms = 1000\n",
        "timeout_ms = 1000\ndnssec = \"validate\"\ntrust_anchors = [\"anchors.key\"]\n",
        1,
    ) + "\n[log]\nqueries = \"all\"\n"
}

/// `name`'s A query with EDNS, DO as given.
fn ask(name: &str, dnssec_ok: bool) -> Message {
    let mut q = query(name, RecordType::A, true);
    if let Some(e) = q.edns.as_mut() {
        e.set_dnssec_ok(dnssec_ok);
    }
    q
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

fn has_rrsig(m: &Message) -> bool {
    m.answers
        .iter()
        .any(|r| r.record_type() == RecordType::RRSIG)
}

/// The SERVFAIL a bogus answer gets, and its EDE.
#[track_caller]
fn assert_bogus(m: &Message, code: u16, words: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    assert!(m.answers.is_empty(), "{m:?}");
    assert!(!m.metadata.authentic_data, "{m:?}");
    let (got, text) = ede(m).unwrap_or_else(|| panic!("no EDE in {m:?}"));
    assert_eq!(got, code, "EDE {got} {text:?}");
    assert!(text.contains(words), "EDE {got} {text:?}, want {words:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_outcome_of_validation_against_a_zone_signed_in_process() {
    let up = SignedUpstream::start().await;
    let e = Embargo::start(
        &validating(up.addr),
        &[
            ("anchors.key", &up.anchors),
            ("zone.txt", "blocked.signed.test\n"),
        ],
    )
    .await;

    // Secure: AD, and the RRSIG for a client that set DO.
    let r = udp(e.addr, &ask("www.signed.test.", true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(addresses(&r), ["192.0.2.1"]);
    assert!(r.metadata.authentic_data, "secure: AD {r:?}");
    assert!(has_rrsig(&r), "DO: the RRSIG too {r:?}");
    // Without DO, AD asked for (as dig and kdig ask): AD, no RRSIG
    // (RFC 4035 3.2.1, RFC 6840 5.7).
    let mut q = ask("www.signed.test.", false);
    q.metadata.authentic_data = true;
    let r = udp(e.addr, &q).await;
    assert!(r.metadata.authentic_data, "{r:?}");
    assert!(!has_rrsig(&r), "no DO: no RRSIG {r:?}");
    assert_eq!(addresses(&r), ["192.0.2.1"]);
    // From the cache, still AD; without AD or DO asked, none (RFC 6840 5.8).
    let asked = up.asked("www.signed.test. A");
    let r = udp(e.addr, &q).await;
    assert!(r.metadata.authentic_data, "{r:?}");
    let r = udp(e.addr, &ask("www.signed.test.", false)).await;
    assert!(!r.metadata.authentic_data, "{r:?}");
    assert_eq!(addresses(&r), ["192.0.2.1"]);
    assert_eq!(up.asked("www.signed.test. A"), asked, "cache hits");

    // The first, forwarded answer to a client that asked for neither AD
    // nor DO carries no AD either (RFC 6840 5.8); the cache keeps it
    // secure for the next client, which asks for it (below).
    let r = udp(e.addr, &ask("soon.signed.test.", false)).await;
    assert_eq!(addresses(&r), ["192.0.2.8"]);
    assert!(!r.metadata.authentic_data, "neither AD nor DO asked: {r:?}");

    // Kept no longer than its signatures last (RFC 4035 5.3.3).
    let r = udp(e.addr, &ask("soon.signed.test.", true)).await;
    assert!(r.metadata.authentic_data, "{r:?}");
    assert!(
        r.answers.iter().all(|a| a.ttl <= 100) && !r.answers.is_empty(),
        "TTL past the RRSIG's expiration: {r:?}"
    );

    // Bogus, each with its reason.
    let r = udp(e.addr, &ask("broken.signed.test.", true)).await;
    assert_bogus(&r, 6, "broken.signed.test");
    let r = udp(e.addr, &ask("expired.signed.test.", true)).await;
    assert_bogus(&r, 7, "expired");
    let r = udp(e.addr, &ask("nosig.signed.test.", true)).await;
    assert_bogus(&r, 10, "no RRSIG");
    let r = udp(e.addr, &ask("www.nokey.test.", true)).await;
    assert_bogus(&r, 9, "nokey.test");

    // Remembered as bogus: the upstream is not asked again.
    let asked = up.asked("broken.signed.test. A");
    assert!(asked >= 1);
    let r = udp(e.addr, &ask("broken.signed.test.", false)).await;
    assert_bogus(&r, 6, "broken.signed.test");
    assert_eq!(
        up.asked("broken.signed.test. A"),
        asked,
        "bogus is remembered"
    );

    // Insecure delegation: answered, no AD.
    let r = udp(e.addr, &ask("www.plain.signed.test.", true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(addresses(&r), ["192.0.2.5"]);
    assert!(!r.metadata.authentic_data, "insecure: no AD {r:?}");

    // CD: not validated, the bogus data is the client's to judge.
    let mut q = ask("expired.signed.test.", true);
    q.metadata.checking_disabled = true;
    let r = udp(e.addr, &q).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(addresses(&r), ["192.0.2.3"]);
    assert!(!r.metadata.authentic_data, "{r:?}");

    // Blocked: the list's answer, never validated nor forwarded.
    let r = udp(e.addr, &ask("blocked.signed.test.", true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{r:?}");
    assert!(!r.metadata.authentic_data, "{r:?}");
    assert_eq!(up.asked("blocked.signed.test. A"), 0);

    // The log says bogus.
    let log = e.dir().join("embargo-state/queries.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let bogus = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let n = text
            .lines()
            .filter(|l| l.contains("\"decision\":\"bogus\""))
            .count();
        if n >= 5 || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let line = bogus
        .lines()
        .find(|l| l.contains("expired.signed.test") && l.contains("\"decision\":\"bogus\""))
        .unwrap_or_else(|| panic!("no bogus record in\n{bogus}"));
    assert!(line.contains("\"rcode\":\"SERVFAIL\""), "{line}");
    e.stop().await;
}

/// The same zone with `dnssec` left at its default ("off"): the answers
/// pass as the upstream gives them, bogus or not, and only the client's
/// question is asked (no DNSKEY, no DS).
#[tokio::test(flavor = "multi_thread")]
async fn off_by_default_answers_pass_unvalidated() {
    let up = SignedUpstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    for name in [
        "broken.signed.test.",
        "expired.signed.test.",
        "www.signed.test.",
    ] {
        let r = udp(e.addr, &ask(name, true)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
        assert!(!r.metadata.authentic_data, "{r:?}");
    }
    assert_eq!(up.received(), 3, "nothing but the three questions");
    e.stop().await;
}
