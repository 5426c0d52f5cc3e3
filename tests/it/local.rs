//! Issue 18, local names: the zones served here by default (RFC 6303's
//! private reverse zones, `local`, `home.arpa`, `onion`, `localhost`...),
//! the operator's `[[records]]` and hosts files, answered by the running
//! server over UDP and TCP without a query to the upstream; CNAMEs whose
//! targets are resolved in the same answer (locally, or upstream through
//! the lists); reloads under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{Embargo, Upstream, config, ede, query, tcp, udp, with_http};

/// The harness config with the default local zones on (as shipped), and
/// `tables` (records, `[[forward]]`...) after its lists. `[local_zones]`
/// keys go in `local_keys`.
fn home(up: &Upstream, local_keys: &str, tables: &str) -> String {
    let text = config(up.addr, tables);
    assert!(text.contains("[local_zones]\ndefaults = false\n"));
    text.replace(
        "[local_zones]\ndefaults = false\n",
        &format!("[local_zones]\n{local_keys}\n"),
    )
    .replace("timeout_ms = 1000", "timeout_ms = 3000")
}

/// The records of a home lab: a host file, records, CNAMEs to a local
/// name, to an upstream name (through `up.test`, forwarded to the test
/// upstream, which takes that default zone over) and to a listed one.
const HOME_RECORDS: &str = r#"[[records]]
name = "nas.home.arpa"
a = "192.168.1.10"
aaaa = "fd00::10"
txt = "the nas"

[[records]]
name = "media.home.arpa"
cname = "nas.home.arpa"

[[records]]
name = "ext.home.arpa"
cname = "alias.up.test"

[[records]]
name = "bad.home.arpa"
cname = "www.seized.example"

[[records]]
name = "seized.example"
txt = "mine"

[[records]]
name = "box.lan"
a = "10.20.0.1"
ptr = false

[[forward]]
zones = ["up.test"]
servers = ["UPSTREAM"]
"#;

const HOSTS: &str = "# the lab\n192.168.1.20 printer print\n";

fn answers(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .map(|r| {
            let data = match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                RData::CNAME(c) => c.0.to_string(),
                RData::PTR(p) => p.0.to_string(),
                RData::TXT(t) => t.to_string(),
                other => format!("{other:?}"),
            };
            format!("{} {} {data}", r.name, r.record_type())
        })
        .collect()
}

fn soa_owner(msg: &Message) -> Option<String> {
    msg.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(_) => Some(r.name.to_string()),
        _ => None,
    })
}

async fn ask(e: &Embargo, over_tcp: bool, name: &str, rtype: RecordType) -> Message {
    let q = query(name, rtype, true);
    if over_tcp {
        tcp(e.addr, &q).await
    } else {
        udp(e.addr, &q).await
    }
}

/// Out of the box: the special-use names and private reverse zones are
/// answered here with NXDOMAIN and the zone's SOA (AA), `localhost` with
/// loopback addresses, and none of them reaches the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn r18_default_local_zones_are_answered_here_and_never_forwarded() {
    let up = Upstream::start().await;
    let e = Embargo::start(&home(&up, "", ""), &[]).await;
    for over_tcp in [false, true] {
        for (name, rtype, zone) in [
            // `dig -x 192.168.1.10`
            (
                "10.1.168.192.in-addr.arpa.",
                RecordType::PTR,
                "168.192.in-addr.arpa.",
            ),
            (
                "5.0.0.10.in-addr.arpa.",
                RecordType::PTR,
                "10.in-addr.arpa.",
            ),
            (
                "1.0.16.172.in-addr.arpa.",
                RecordType::PTR,
                "16.172.in-addr.arpa.",
            ),
            ("nas.local.", RecordType::A, "local."),
            ("printer.home.arpa.", RecordType::AAAA, "home.arpa."),
            ("facebookcorewwwi.onion.", RecordType::A, "onion."),
            ("x.invalid.", RecordType::A, "invalid."),
            ("www.up.test.", RecordType::A, "test."),
        ] {
            let r = ask(&e, over_tcp, name, rtype).await;
            assert_eq!(
                r.metadata.response_code,
                ResponseCode::NXDomain,
                "{name} tcp={over_tcp}: {r:?}"
            );
            assert!(r.metadata.authoritative, "{name}: AA");
            assert!(r.metadata.recursion_available, "{name}: RA");
            assert_eq!(soa_owner(&r).as_deref(), Some(zone), "{name}");
            assert!(r.answers.is_empty());
        }
        let r = ask(&e, over_tcp, "localhost.", RecordType::A).await;
        assert_eq!(answers(&r), ["localhost. A 127.0.0.1"]);
        let r = ask(&e, over_tcp, "db.localhost.", RecordType::AAAA).await;
        assert_eq!(answers(&r), ["db.localhost. AAAA ::1"]);
        // The apex of a local zone has its SOA.
        let r = ask(&e, over_tcp, "home.arpa.", RecordType::SOA).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
    }
    assert_eq!(up.seen(), Vec::<String>::new(), "nothing went upstream");
    // Not a local name: forwarded as ever.
    let r = ask(&e, false, "ns.example.", RecordType::A).await;
    assert_eq!(answers(&r), ["ns.example. A 192.0.2.53"]);
    assert!(!r.metadata.authoritative);
    e.stop().await;
}

/// `[[records]]` and a hosts file: AA answers for their types, NODATA with
/// the zone's SOA for others, PTRs generated, NXDOMAIN for the zone's
/// other names, CNAME targets resolved in the same answer (local, or
/// upstream through the lists), and answered before the lists. The query
/// log says `local`, and `/metrics` counts `decision="local"`.
#[tokio::test(flavor = "multi_thread")]
async fn r18_records_and_hosts_files_answer_with_aa_before_the_lists() {
    let up = Upstream::start().await;
    let tables = HOME_RECORDS.replace("UPSTREAM", &up.addr.to_string());
    let cfg = with_http(
        &home(&up, "hosts_files = [\"hosts\"]\nzones = [\"lan\"]", &tables),
        "listen = \"127.0.0.1:0\"\n",
    ) + "\n[log]\nqueries = \"all\"\n";
    let e = Embargo::start(&cfg, &[("hosts", HOSTS)]).await;
    for over_tcp in [false, true] {
        let how = format!("tcp={over_tcp}");
        let r = ask(&e, over_tcp, "NAS.home.arpa.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{how}");
        assert!(r.metadata.authoritative, "{how}");
        assert_eq!(answers(&r), ["NAS.home.arpa. A 192.168.1.10"], "{how}");
        let r = ask(&e, over_tcp, "nas.home.arpa.", RecordType::AAAA).await;
        assert_eq!(answers(&r), ["nas.home.arpa. AAAA fd00::10"], "{how}");
        // NODATA: no MX, the zone's SOA.
        let r = ask(&e, over_tcp, "nas.home.arpa.", RecordType::MX).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{how}");
        assert!(r.answers.is_empty() && r.metadata.authoritative, "{how}");
        assert_eq!(soa_owner(&r).as_deref(), Some("home.arpa."), "{how}");
        // Other names of the zone: NXDOMAIN.
        let r = ask(&e, over_tcp, "other.home.arpa.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        // PTRs, generated (`dig -x 192.168.1.10`), and from the hosts file.
        let r = ask(&e, over_tcp, "10.1.168.192.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(
            answers(&r),
            ["10.1.168.192.in-addr.arpa. PTR nas.home.arpa."],
            "{how}"
        );
        let r = ask(&e, over_tcp, "20.1.168.192.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(
            answers(&r),
            ["20.1.168.192.in-addr.arpa. PTR printer.home.arpa."],
            "{how}"
        );
        let r = ask(&e, over_tcp, "print.home.arpa.", RecordType::A).await;
        assert_eq!(answers(&r), ["print.home.arpa. A 192.168.1.20"], "{how}");
        // An own zone (`zones = ["lan"]`) with a record, `ptr = false`.
        let r = ask(&e, over_tcp, "box.lan.", RecordType::A).await;
        assert_eq!(answers(&r), ["box.lan. A 10.20.0.1"], "{how}");
        let r = ask(&e, over_tcp, "other.lan.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        let r = ask(&e, over_tcp, "1.0.20.10.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        // A CNAME to a local name: the chain and the target's address.
        let r = ask(&e, over_tcp, "media.home.arpa.", RecordType::A).await;
        assert_eq!(
            answers(&r),
            [
                "media.home.arpa. CNAME nas.home.arpa.",
                "nas.home.arpa. A 192.168.1.10"
            ],
            "{how}"
        );
        // A CNAME to an upstream name: resolved there, in the same answer.
        let r = ask(&e, over_tcp, "ext.home.arpa.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{how}");
        assert_eq!(
            answers(&r),
            [
                "ext.home.arpa. CNAME alias.up.test.",
                "alias.up.test. CNAME www.up.test.",
                "www.up.test. A 192.0.2.10"
            ],
            "{how}: {r:?}"
        );
        // A CNAME to a listed name: the list's answer, nothing upstream.
        let r = ask(&e, over_tcp, "bad.home.arpa.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        assert!(ede(&r).is_some(), "{how}: {r:?}");
        assert!(
            !answers(&r).iter().any(|a| a.contains("192.0.2.66")),
            "{how}: {r:?}"
        );
        // Local records come before the lists: the operator's own names.
        let r = ask(&e, over_tcp, "seized.example.", RecordType::TXT).await;
        assert_eq!(answers(&r), ["seized.example. TXT mine"], "{how}: {r:?}");
    }
    assert_eq!(
        up.count("www.seized.example"),
        0,
        "a listed CNAME target leaked"
    );
    assert_eq!(up.count("alias.up.test"), 1, "the second one was cached");
    let upstream_names: Vec<String> = up.seen();
    assert!(
        upstream_names.iter().all(|n| n == "alias.up.test"),
        "{upstream_names:?}"
    );

    // /metrics counts local answers as such.
    let http = e.http[0];
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    let local: f64 = text
        .lines()
        .filter(|l| l.starts_with("embargo_queries_total{") && l.contains("decision=\"local\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(local >= 20.0, "{local} local answers counted:\n{text}");
    // The query log records them as `local`, with their RCODE.
    let path = e.dir().join("embargo-state/queries.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let records: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}")))
            .collect();
        if records.iter().filter(|r| r["name"] == "other.lan").count() == 2
            || Instant::now() > deadline
        {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let of = |name: &str| -> Vec<(String, String)> {
        records
            .iter()
            .filter(|r| r["name"] == name)
            .map(|r| {
                (
                    r["decision"].as_str().unwrap_or("?").to_string(),
                    r["rcode"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect()
    };
    let local_nx = ("local".to_string(), "NXDOMAIN".to_string());
    assert_eq!(
        of("other.lan"),
        [local_nx.clone(), local_nx],
        "{records:#?}"
    );
    assert_eq!(of("ext.home.arpa")[0].0, "local");
    assert_eq!(of("bad.home.arpa")[0].0, "blocked");
    e.stop().await;
}

/// Records are reloaded with everything else and no query is lost: a
/// steady stream of local queries while the hosts file changes; a bad
/// record in the config keeps the records in force.
#[tokio::test(flavor = "multi_thread")]
async fn r18_records_reload_under_load_and_a_bad_record_keeps_them() {
    let up = Upstream::start().await;
    let cfg = home(&up, "hosts_files = [\"hosts\"]", "");
    let e = Embargo::start(&cfg, &[("hosts", HOSTS)]).await;
    let addr = e.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, wrong) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, wrong) = (stop.clone(), sent.clone(), wrong.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = udp(addr, &query("printer.home.arpa.", RecordType::A, false)).await;
                sent.fetch_add(1, Ordering::SeqCst);
                if answers(&r) != ["printer.home.arpa. A 192.168.1.20"] {
                    wrong.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    // Under load (and the file watcher, which the server starts beside
    // its sockets, watching).
    while sent.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hosts = e.dir().join("hosts");
    let tmp = e.dir().join("hosts.new");
    std::fs::write(&tmp, format!("{HOSTS}192.168.1.30 scanner\n")).expect("hosts");
    std::fs::rename(&tmp, &hosts).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = udp(e.addr, &query("scanner.home.arpa.", RecordType::A, false)).await;
        if answers(&r) == ["scanner.home.arpa. A 192.168.1.30"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hosts file change was not picked up: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bad record: the reload fails and the records stay.
    let path = e.dir().join("embargo.toml");
    let bad = cfg.clone() + "\n[[records]]\nname = \"tv.home.arpa\"\na = \"tv\"\n";
    std::fs::write(&tmp, bad).expect("config");
    std::fs::rename(&tmp, &path).expect("rename");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = udp(e.addr, &query("scanner.home.arpa.", RecordType::A, false)).await;
    assert_eq!(answers(&r), ["scanner.home.arpa. A 192.168.1.30"]);
    let r = udp(e.addr, &query("tv.home.arpa.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    stop.store(true, Ordering::SeqCst);
    load.await.expect("load");
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent > 10, "{sent}");
    assert_eq!(wrong.load(Ordering::SeqCst), 0, "of {sent} answers");
    assert_eq!(up.seen(), Vec::<String>::new());
    e.stop().await;
}
