//! Blocks found by answer inspection (issues 20 and 21): a forwarded
//! answer whose CNAME chain reaches a listed name, or whose address is in
//! a listed network, is a block like any other in `/metrics` (counted as
//! `blocked`, by its list, and by what matched in
//! `embargo_blocked_answers_total`), and its query-log record names the
//! chain's listed name (`cname`), on the first answer and on answers from
//! the cache alike, with and without `[[groups]]` (two cache paths: a
//! verdict kept as such, and a chain walked again per group). Real
//! sockets: the harness's hickory upstream, queries over UDP, `/metrics`
//! over HTTP, the log file as written.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::{Embargo, Upstream, config, query, udp, with_http};

/// A chain to a listed name (one hop, two hops), an address in a listed
/// network, and a name nothing blocks.
const ZONE: &[&str] = &[
    "ads      IN A 192.0.2.40",
    "cdn      IN CNAME ads",
    "deep     IN CNAME cdn",
    "moved    IN A 198.51.100.7",
    "fine     IN A 192.0.2.50",
];

const LISTS: &str = r#"
[[lists]]
name = "trackers"
source = "trackers.txt"
reason = "Tracking"

[[lists]]
name = "drop"
source = "drop.txt"
"#;

const FILES: &[(&str, &str)] = &[
    ("trackers.txt", "ads.up.test\n"),
    ("drop.txt", "198.51.100.0/24\n"),
];

/// Groups that differ: the cache keeps chains, walked again for each
/// client's group (every client here is in `default`).
const GROUPS: &str = r#"
[[groups]]
name = "elsewhere"
clients = ["10.9.0.0/16"]
lists = ["seized"]

[[groups]]
name = "default"
lists = ["seized", "trackers", "drop"]
"#;

async fn start(extra: &str) -> (Upstream, Embargo) {
    let zone: Vec<String> = ZONE.iter().map(ToString::to_string).collect();
    let up = Upstream::start_with(&zone).await;
    let cfg = with_http(
        &config(up.addr, &format!("{LISTS}{extra}")),
        "listen = \"127.0.0.1:0\"",
    );
    let e = Embargo::start(&cfg, FILES).await;
    (up, e)
}

async fn metrics(addr: SocketAddr) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body")
}

/// The value of the series written exactly as `series`, 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

/// Asks `name` (A) twice: the first answer forwarded, the second cached.
async fn twice(e: &Embargo, name: &str, rcode: ResponseCode) {
    for i in 0..2 {
        let r = udp(e.addr, &query(name, RecordType::A, true)).await;
        assert_eq!(r.metadata.response_code, rcode, "{name} #{i}: {r:?}");
    }
}

/// Issue 20/21: a block through a CNAME (or by an answer's address) was
/// counted as `forwarded` in `/metrics`, and not under its list.
#[tokio::test(flavor = "multi_thread")]
async fn r21_a_block_found_in_the_answer_is_counted_as_blocked_by_its_list() {
    for groups in ["", GROUPS] {
        let (up, e) = start(groups).await;
        twice(&e, "cdn.up.test.", ResponseCode::NXDomain).await;
        twice(&e, "moved.up.test.", ResponseCode::NXDomain).await;
        twice(&e, "fine.up.test.", ResponseCode::NoError).await;
        assert_eq!(up.count("cdn.up.test"), 1, "the block is cached");

        let text = metrics(e.http[0]).await;
        let w = if groups.is_empty() { "" } else { " (groups)" };
        let q =
            |d: &str| format!("embargo_queries_total{{proto=\"udp\",type=\"A\",decision=\"{d}\"}}");
        assert_eq!(sample(&text, &q("blocked")), 4.0, "{w}\n{text}");
        assert_eq!(sample(&text, &q("forwarded")), 1.0, "only fine{w}\n{text}");
        assert_eq!(sample(&text, &q("cached")), 1.0, "{w}\n{text}");
        for (list, via) in [("trackers", "cname"), ("drop", "ip")] {
            assert_eq!(
                sample(&text, &format!("embargo_blocked_total{{list=\"{list}\"}}")),
                2.0,
                "{list}{w}\n{text}"
            );
            assert_eq!(
                sample(
                    &text,
                    &format!("embargo_blocked_answers_total{{list=\"{list}\",via=\"{via}\"}}")
                ),
                2.0,
                "{list}{w}\n{text}"
            );
        }
        // Three went upstream, one answer each: the upstream's side of it.
        assert_eq!(sample(&text, "embargo_cache_misses_total"), 3.0, "{text}");
        assert_eq!(sample(&text, "embargo_cache_hits_total"), 1.0, "{text}");
        e.stop().await;
    }
}

/// The records of `path` that name `name`, once there are `n` (5 s at most).
async fn records(path: &Path, name: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<String> = text
            .lines()
            .filter(|l| {
                l.contains(&format!("\"name\":\"{name}\"")) || l.contains(&format!(" {name} A "))
            })
            .map(str::to_string)
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{n} records for {name} not in {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 21: the query log did not say which CNAME led to a block. JSON,
/// without groups (the cached verdict) and with them (the chain walked
/// again); text; first and cached answers alike.
#[tokio::test(flavor = "multi_thread")]
async fn r21_the_log_names_the_chains_listed_name_first_and_cached() {
    for (groups, format) in [
        ("", "json"),
        (GROUPS, "json"),
        ("", "text"),
        (GROUPS, "text"),
    ] {
        let (_up, e) = start(&format!("{groups}\n[log]\nformat = \"{format}\"\n")).await;
        twice(&e, "deep.up.test.", ResponseCode::NXDomain).await;
        twice(&e, "moved.up.test.", ResponseCode::NXDomain).await;
        let log = e.dir().join("embargo-state/queries.log");
        let w = format!("{format}, groups: {}", !groups.is_empty());
        let deep = records(&log, "deep.up.test", 2).await;
        let moved = records(&log, "moved.up.test", 2).await;
        for line in &deep {
            if format == "json" {
                let rec: Value = serde_json::from_str(line).expect("json");
                assert_eq!(rec["decision"], "blocked", "{w}: {rec}");
                assert_eq!(rec["list"], "trackers", "{w}: {rec}");
                assert_eq!(rec["cname"], "ads.up.test", "{w}: {rec}");
                assert!(rec["net"].is_null(), "{w}: {rec}");
            } else {
                assert!(line.contains(" blocked "), "{w}: {line}");
                assert!(line.contains(" list=trackers "), "{w}: {line}");
                assert!(line.contains(" cname=ads.up.test "), "{w}: {line}");
            }
        }
        for line in &moved {
            if format == "json" {
                let rec: Value = serde_json::from_str(line).expect("json");
                assert!(rec["cname"].is_null(), "no chain: {w}: {rec}");
                assert_eq!(rec["net"], "198.51.100.0/24", "{w}: {rec}");
            } else {
                assert!(!line.contains("cname="), "{w}: {line}");
                assert!(line.contains(" net=198.51.100.0/24 "), "{w}: {line}");
            }
        }
        e.stop().await;
    }
}
