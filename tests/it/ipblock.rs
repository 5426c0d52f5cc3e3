//! Response-IP blocking (issue 20): a forwarded answer whose A or AAAA
//! records fall in a listed network (an `ips` list, an RPZ `rpz-ip`
//! trigger) gets that list's block, as if the name were listed, directly
//! and behind a CNAME; the EDE names the list and the address; the verdict
//! is cached and checked again after a reload; the query log and the hit
//! report name the list, the network and the name asked. The upstream is
//! the harness's real hickory server with the records of [`ZONE`].

use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;

use crate::harness::{Embargo, Upstream, config, ede, query, udp};

/// Names whose addresses are, or are not, in the listed networks.
const ZONE: &[&str] = &[
    "moved    IN A 198.51.100.7",
    "moved    IN AAAA 2001:db8:bad::7",
    "front2   IN CNAME moved",
    "fine     IN A 100.64.1.1",
    "fine     IN AAAA 2001:db8:600d::1",
    "vendorhit IN A 203.0.113.9",
    "later    IN A 100.64.0.9",
];

/// A DROP-style list and a policy zone with an rpz-ip trigger.
const DROP: &str =
    "; Spamhaus DROP List\n198.51.100.0/24 ; SBL1\n2001:db8:bad::/48\nnot an address\n";
const VENDOR: &str = "$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\n24.0.113.0.203.rpz-ip CNAME *.\n";

const LISTS: &str = r#"
[[lists]]
name = "drop"
source = "drop.txt"
authority = "Spamhaus"
reason = "hijacked netblock"

[[lists]]
name = "vendor"
source = "vendor.rpz"
"#;

async fn start() -> (Upstream, Embargo) {
    let zone: Vec<String> = ZONE.iter().map(ToString::to_string).collect();
    let up = Upstream::start_with(&zone).await;
    let e = Embargo::start(
        &config(up.addr, LISTS),
        &[("drop.txt", DROP), ("vendor.rpz", VENDOR)],
    )
    .await;
    (up, e)
}

fn soa_owner(r: &Message) -> Option<String> {
    r.authorities.iter().find_map(|rec| match &rec.data {
        RData::SOA(_) => Some(rec.name.to_string()),
        _ => None,
    })
}

/// Asserts `r` is `list`'s NXDOMAIN for `addr` in `net`, the SOA owned by `owner`.
fn assert_blocked_by_address(r: &Message, list: &str, addr: &str, net: &str, owner: &str) {
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{r:?}");
    assert!(r.answers.is_empty(), "no address is passed on: {r:?}");
    assert_eq!(soa_owner(r).as_deref(), Some(owner), "{r:?}");
    let (code, text) = ede(r).expect("an EDE");
    assert_eq!(code, 15, "{text}");
    assert!(text.starts_with(&format!("blocked by {list}")), "{text}");
    assert!(
        text.ends_with(&format!("; answer address {addr} in {net}")),
        "{text}"
    );
}

fn addresses(r: &Message) -> Vec<String> {
    r.answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_in_a_listed_network_gets_the_lists_block() {
    let (up, e) = start().await;

    // Directly, for A and AAAA.
    let r = udp(e.addr, &query("moved.up.test.", RecordType::A, true)).await;
    assert_blocked_by_address(
        &r,
        "drop (Spamhaus): hijacked netblock",
        "198.51.100.7",
        "198.51.100.0/24",
        "moved.up.test.",
    );
    let r = udp(e.addr, &query("moved.up.test.", RecordType::AAAA, true)).await;
    assert_blocked_by_address(
        &r,
        "drop",
        "2001:db8:bad::7",
        "2001:db8:bad::/48",
        "moved.up.test.",
    );

    // Behind a CNAME: the chain's end holds the address.
    let r = udp(e.addr, &query("front2.up.test.", RecordType::A, true)).await;
    assert_blocked_by_address(
        &r,
        "drop",
        "198.51.100.7",
        "198.51.100.0/24",
        "moved.up.test.",
    );

    // An RPZ rpz-ip trigger, with its own action (CNAME *. : NODATA).
    let r = udp(e.addr, &query("vendorhit.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert!(r.answers.is_empty(), "{r:?}");
    let (_, text) = ede(&r).expect("an EDE");
    assert!(
        text.starts_with("blocked by vendor")
            && text.ends_with("answer address 203.0.113.9 in 203.0.113.0/24"),
        "{text}"
    );

    // Addresses outside every listed network pass.
    let r = udp(e.addr, &query("fine.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&r), ["100.64.1.1"]);
    assert!(ede(&r).is_none());
    let r = udp(e.addr, &query("fine.up.test.", RecordType::AAAA, true)).await;
    assert_eq!(addresses(&r), ["2001:db8:600d::1"]);

    // The verdict is cached: asked again, the same block, nothing upstream.
    for _ in 0..3 {
        let r = udp(e.addr, &query("moved.up.test.", RecordType::A, true)).await;
        assert_blocked_by_address(
            &r,
            "drop",
            "198.51.100.7",
            "198.51.100.0/24",
            "moved.up.test.",
        );
    }
    assert_eq!(
        up.count("moved.up.test"),
        2,
        "A and AAAA once each: {:?}",
        up.seen()
    );

    // The bad line is counted, the rest loaded.
    let snap = e.handler.state().load_full();
    let drop = snap
        .lists
        .iter()
        .find(|l| l.spec.name == "drop")
        .expect("drop");
    assert_eq!((drop.stats.nets, drop.stats.invalid), (2, 1));
    assert_eq!(drop.stats.warnings[0].line, 4);
    e.stop().await;
}

/// A reload that lists a network re-checks an answer cached before it
/// (its generation is older), without asking the upstream again: also
/// when no list had any network when the answer was cached.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_lists_a_network_blocks_a_cached_answer() {
    let zone: Vec<String> = ZONE.iter().map(ToString::to_string).collect();
    let up = Upstream::start_with(&zone).await;
    let lists = "\n[[lists]]\nname = \"drop\"\nsource = \"drop.txt\"\nformat = \"ips\"\n";
    let e = Embargo::start(&config(up.addr, lists), &[("drop.txt", "; nothing yet\n")]).await;
    assert!(e.handler.state().load().nets.is_empty());
    let r = udp(e.addr, &query("later.up.test.", RecordType::A, true)).await;
    assert_eq!(addresses(&r), ["100.64.0.9"]);
    let r = udp(e.addr, &query("later.up.test.", RecordType::A, true)).await;
    assert_eq!(addresses(&r), ["100.64.0.9"], "served from the cache");

    let list = e.dir().join("drop.txt");
    let tmp = e.dir().join("drop.txt.new");
    std::fs::write(&tmp, "100.64.0.0/24\n").expect("write");
    std::fs::rename(&tmp, &list).expect("rename");
    e.until_reloaded(
        "the cached answer for later.up.test is blocked",
        async || {
            let r = udp(e.addr, &query("later.up.test.", RecordType::A, true)).await;
            r.metadata.response_code == ResponseCode::NXDomain
        },
    )
    .await;
    let r = udp(e.addr, &query("later.up.test.", RecordType::A, true)).await;
    assert_blocked_by_address(&r, "drop", "100.64.0.9", "100.64.0.0/24", "later.up.test.");
    assert_eq!(
        up.count("later.up.test"),
        1,
        "re-checked in the cache: {:?}",
        up.seen()
    );
    e.stop().await;
}

/// The file's JSON records once one names `name` (waits up to 5 s).
async fn record_of(path: &Path, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(v) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["name"] == name)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "no record for {name}: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_and_the_hit_report_name_the_list_network_and_name() {
    let (_up, e) = start().await;
    let r = udp(e.addr, &query("front2.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let rec = record_of(&e.dir().join("embargo-state/queries.log"), "front2.up.test").await;
    assert_eq!(rec["decision"], "blocked", "{rec}");
    assert_eq!(rec["list"], "drop", "{rec}");
    assert_eq!(rec["net"], "198.51.100.0/24", "{rec}");
    assert_eq!(rec["action"], "nxdomain", "{rec}");
    assert!(
        rec["entry"].is_null(),
        "no entry of the name matched: {rec}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let row = loop {
        let report = e.handler.observer().hits(None);
        if let Some(row) = report.hits.into_iter().find(|h| h.list == "drop") {
            break row;
        }
        assert!(Instant::now() < deadline, "no hit for drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(row.last_name, "front2.up.test");
    assert_eq!(row.last_net.as_deref(), Some("198.51.100.0/24"));
    e.stop().await;
}

/// Issue 21: a response-IP block answered from the cache logged no `net`
/// (the first answer did). Both records of a name asked twice name the
/// network, without groups (the verdict cached as such).
#[tokio::test(flavor = "multi_thread")]
async fn r21_a_cached_ip_block_logs_its_network() {
    let (up, e) = start().await;
    for _ in 0..2 {
        let r = udp(e.addr, &query("moved.up.test.", RecordType::AAAA, true)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{r:?}");
    }
    assert_eq!(up.count("moved.up.test"), 1, "the second from the cache");
    let path = e.dir().join("embargo-state/queries.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let recs = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let recs: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["name"] == "moved.up.test")
            .collect();
        if recs.len() == 2 {
            break recs;
        }
        assert!(Instant::now() < deadline, "two records for moved: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for rec in &recs {
        assert_eq!(rec["decision"], "blocked", "{rec}");
        assert_eq!(rec["list"], "drop", "{rec}");
        assert_eq!(rec["net"], "2001:db8:bad::/48", "{rec}");
    }
    e.stop().await;
}
