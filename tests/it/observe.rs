//! The observation side, end to end: real queries over UDP and TCP from
//! known client sockets, and what the query log file, the hit report and
//! `embargo hits` then say about them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::harness::{Embargo, Upstream, config, dead_addr, query, udp_raw};

/// Sends `msg` over UDP from a socket bound to `from` (`127.0.0.2:0` for a
/// second client); returns the reply and the client's address.
async fn udp_from(from: &str, addr: SocketAddr, msg: &Message) -> (Message, SocketAddr) {
    let sock = UdpSocket::bind(from).await.expect("bind client");
    let me = sock.local_addr().expect("addr");
    sock.send_to(&msg.to_vec().expect("encode"), addr)
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a reply in time")
        .expect("recv");
    (Message::from_vec(&buf[..n]).expect("reply decodes"), me)
}

/// One query over TCP; returns the reply and the client's address.
async fn tcp_from(addr: SocketAddr, msg: &Message) -> (Message, SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let me = stream.local_addr().expect("addr");
    let b = msg.to_vec().expect("encode");
    let mut framed = (b.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&b);
    stream.write_all(&framed).await.expect("write");
    let len = tokio::time::timeout(Duration::from_secs(3), stream.read_u16())
        .await
        .expect("reply in time")
        .expect("length");
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("body");
    (Message::from_vec(&buf).expect("reply decodes"), me)
}

fn log_path(e: &Embargo) -> PathBuf {
    e.dir().join("embargo-state/queries.log")
}

/// The file's lines once it has at least `n` (waits up to 5 s).
async fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON records of the query log, once there are at least `n`.
async fn records(path: &Path, n: usize) -> Vec<Value> {
    lines(path, n)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn find<'a>(records: &'a [Value], name: &str, decision: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["name"] == name && r["decision"] == decision)
        .unwrap_or_else(|| panic!("no {decision} record for {name} in {records:#?}"))
}

fn assert_time_is_rfc3339_ms(v: &Value) {
    let t = v["time"].as_str().expect("time");
    assert_eq!(t.len(), "2026-11-29T21:30:31.123Z".len(), "{t}");
    let when = humantime::parse_rfc3339(t).expect("RFC 3339");
    let age = std::time::SystemTime::now()
        .duration_since(when)
        .expect("in the past");
    assert!(age < Duration::from_secs(60), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn blocked_queries_over_udp_and_tcp_are_logged_as_json_with_every_field() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    // An allowed query first: with the default `queries = "blocked"` it is not logged.
    let (r, _) = udp_from(
        "127.0.0.1:0",
        e.addr,
        &query("www.up.test.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let (r, udp_client) = udp_from(
        "127.0.0.1:0",
        e.addr,
        &query("www.Seized.example.", RecordType::TXT, true),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let (r, tcp_client) = tcp_from(
        e.addr,
        &query("a.b.sanctioned.example.", RecordType::AAAA, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let recs = records(&log_path(&e), 2).await;
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let u = find(&recs, "www.seized.example", "blocked");
    assert_time_is_rfc3339_ms(u);
    assert_eq!(u["client"], "127.0.0.1");
    assert_eq!(u["port"], udp_client.port());
    assert_eq!(u["proto"], "udp");
    assert_eq!(u["type"], "TXT");
    assert_eq!(u["list"], "seized");
    assert_eq!(u["entry"], "seized.example");
    assert_eq!(u["action"], "nxdomain");
    assert_eq!(u["rcode"], "NXDOMAIN");
    assert!(u["upstream"].is_null());
    assert!(u["latency_us"].as_u64().is_some());
    assert_eq!(u.as_object().map(|o| o.len()), Some(14), "{u}");

    let t = find(&recs, "a.b.sanctioned.example", "blocked");
    assert_time_is_rfc3339_ms(t);
    assert_eq!(t["client"], "127.0.0.1");
    assert_eq!(t["port"], tcp_client.port());
    assert_eq!(t["proto"], "tcp");
    assert_eq!(t["type"], "AAAA");
    assert_eq!(t["list"], "seized");
    assert_eq!(t["entry"], "sanctioned.example");
    assert_eq!(t["action"], "nxdomain");
    assert_eq!(t["rcode"], "NXDOMAIN");
    let path = log_path(&e);
    let _dir = e.stop_keep_dir().await;
    assert_eq!(lines(&path, 0).await.len(), 2, "only the blocks are logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn all_queries_are_logged_with_decision_upstream_and_latency() {
    let up = Upstream::start().await;
    let cfg = config(up.addr, "") + "\n[log]\nqueries = \"all\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    let q = query("www.up.test.", RecordType::A, false);
    let (r, _) = udp_from("127.0.0.1:0", e.addr, &q).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let (r, _) = tcp_from(e.addr, &q).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let (r, _) = udp_from(
        "127.0.0.1:0",
        e.addr,
        &query("up.test.", RecordType::AXFR, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    // No question at all: FORMERR.
    let formerr = udp_raw(
        e.addr,
        &[0xab, 0xcd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        Duration::from_secs(3),
    )
    .await
    .expect("a reply");
    assert_eq!(formerr[3] & 0x0f, 1);
    let (r, _) = udp_from(
        "127.0.0.1:0",
        e.addr,
        &query("seized.example.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let recs = records(&log_path(&e), 5).await;
    assert_eq!(recs.len(), 5, "{recs:#?}");
    let allowed = find(&recs, "www.up.test", "forwarded");
    assert_eq!(allowed["proto"], "udp");
    assert_eq!(allowed["upstream"], up.addr.to_string());
    assert_eq!(allowed["rcode"], "NOERROR");
    assert!(
        allowed["latency_us"].as_u64().is_some_and(|l| l > 0),
        "{allowed}"
    );
    assert!(allowed["list"].is_null() && allowed["entry"].is_null() && allowed["action"].is_null());
    assert_time_is_rfc3339_ms(allowed);
    let cached = find(&recs, "www.up.test", "cached");
    assert_eq!(cached["proto"], "tcp");
    assert_eq!(cached["rcode"], "NOERROR");
    assert!(cached["upstream"].is_null());
    let refused = find(&recs, "up.test", "refused");
    assert_eq!(refused["type"], "AXFR");
    assert_eq!(refused["rcode"], "REFUSED");
    let error = recs
        .iter()
        .find(|r| r["decision"] == "error")
        .expect("an error record");
    assert!(
        error["name"].is_null() && error["type"].is_null(),
        "{error}"
    );
    assert_eq!(error["rcode"], "FORMERR");
    let blocked = find(&recs, "seized.example", "blocked");
    assert_eq!(blocked["entry"], "seized.example");
    e.stop().await;

    // No upstream answers (nothing listens there): SERVFAIL, an error naming no upstream.
    let dead = dead_addr().await;
    let cfg = config(dead, "") + "\n[log]\nqueries = \"all\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    let (r, _) = udp_from(
        "127.0.0.1:0",
        e.addr,
        &query("www.up.test.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let recs = records(&log_path(&e), 1).await;
    let failed = find(&recs, "www.up.test", "error");
    assert_eq!(failed["rcode"], "SERVFAIL");
    assert!(failed["upstream"].is_null());
    assert!(
        failed["latency_us"].as_u64().is_some_and(|l| l > 0),
        "{failed}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_records_with_truncated_clients() {
    let up = Upstream::start().await;
    let cfg = config(up.addr, "") + "\n[log]\nformat = \"text\"\nclient_ip = \"truncate\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    let (_, me) = udp_from(
        "127.0.0.2:0",
        e.addr,
        &query("www.seized.example.", RecordType::A, false),
    )
    .await;
    let got = lines(&log_path(&e), 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let (time, rest) = got[0].split_once(' ').expect("a time, then the rest");
    assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    assert!(time.ends_with('Z') && time.len() == 24, "{time}");
    let (rest, latency) = rest.rsplit_once(" latency_us=").expect("latency last");
    assert!(latency.parse::<u32>().is_ok(), "{latency}");
    assert_eq!(
        rest,
        format!(
            "127.0.0.0#{} udp www.seized.example A blocked list=seized entry=seized.example action=nxdomain rcode=NXDOMAIN",
            me.port()
        )
    );
    // The hit report shows the client as the log does.
    let report = wait_for_hits(&e, 1).await;
    assert_eq!(report.hits[0].client, "127.0.0.0");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hashed_clients_are_stable_and_distinct() {
    let up = Upstream::start().await;
    let cfg = config(up.addr, "") + "\n[log]\nclient_ip = \"hash\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    let mut ports = Vec::new();
    for from in ["127.0.0.1:0", "127.0.0.1:0", "127.0.0.2:0"] {
        let (_, me) = udp_from(
            from,
            e.addr,
            &query("www.seized.example.", RecordType::A, false),
        )
        .await;
        ports.push(me.port());
    }
    let recs = records(&log_path(&e), 3).await;
    // Each client by its port: with several UDP workers (SO_REUSEPORT),
    // records of different workers need not be written in arrival order.
    let clients: Vec<&str> = ports
        .iter()
        .filter_map(|p| {
            recs.iter()
                .find(|r| r["port"] == *p)
                .and_then(|r| r["client"].as_str())
        })
        .collect();
    assert_eq!(clients.len(), 3, "{recs:#?}");
    for c in &clients {
        assert_eq!(c.len(), 16, "{c}");
        assert!(c.bytes().all(|b| b.is_ascii_hexdigit()), "{c}");
    }
    assert_eq!(clients[0], clients[1], "the same client, the same hash");
    assert_ne!(clients[0], clients[2], "another client, another hash");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_rotates_by_size_keeping_at_most_keep_files() {
    let up = Upstream::start().await;
    let cfg = config(up.addr, "") + "\n[log]\nmax_size_mb = 1\nkeep = 2\n";
    let e = Embargo::start(&cfg, &[]).await;
    // About 440 bytes a record: 8,000 records are 3.5 MB, three rotations.
    let label = "x".repeat(63);
    let name = format!("{label}.{label}.{label}.seized.example.");
    let socks: Vec<UdpSocket> = client_socks(8).await;
    let wire = query(&name, RecordType::A, false).to_vec().expect("encode");
    let mut buf = vec![0u8; 4096];
    for _ in 0..1000 {
        for s in &socks {
            s.send_to(&wire, e.addr).await.expect("send");
        }
        for s in &socks {
            tokio::time::timeout(Duration::from_secs(3), s.recv_from(&mut buf))
                .await
                .expect("reply in time")
                .expect("recv");
        }
    }
    let path = log_path(&e);
    let _dir = e.stop_keep_dir().await;
    // Rotated files are compressed (the default) by a thread of their own,
    // which goes on after the stop until none is left plain.
    let numbered = |i: u32, ext: &str| PathBuf::from(format!("{}.{i}{ext}", path.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while numbered(1, "").exists() || numbered(2, "").exists() {
        assert!(Instant::now() < deadline, "rotated files never compressed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut total = 0;
    for p in [path.clone(), numbered(1, ".zst"), numbered(2, ".zst")] {
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let bytes = if p.extension().is_some_and(|x| x == "zst") {
            assert!(
                bytes.len() < 1024 * 1024 / 4,
                "{}: {} bytes",
                p.display(),
                bytes.len()
            );
            zstd::decode_all(&bytes[..]).expect("zstd")
        } else {
            bytes
        };
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(
            text.len() <= 1024 * 1024,
            "{}: {} bytes",
            p.display(),
            text.len()
        );
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(v["decision"], "blocked");
            total += 1;
        }
        assert!(text.ends_with('\n'), "{} ends mid-record", p.display());
    }
    assert!(
        !numbered(3, "").exists() && !numbered(3, ".zst").exists(),
        "at most keep = 2 rotated files"
    );
    assert!(total > 2000, "{total} records in the three files");
}

async fn client_socks(n: usize) -> Vec<UdpSocket> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    }
    v
}

/// The hit report once it has counted at least `n` blocks (waits up to 5 s).
async fn wait_for_hits(e: &Embargo, n: u64) -> embargo::observe::HitsFile {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let report = e.handler.observer().hits(None);
        if report.hits.iter().map(|h| h.count).sum::<u64>() >= n || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (list, client, count, last name) of each row, in the report's order.
fn rows(report: &embargo::observe::HitsFile) -> Vec<(String, String, u64, String)> {
    report
        .hits
        .iter()
        .map(|h| {
            (
                h.list.clone(),
                h.client.clone(),
                h.count,
                h.last_name.clone(),
            )
        })
        .collect()
}

fn row(list: &str, client: &str, count: u64, last: &str) -> (String, String, u64, String) {
    (list.into(), client.into(), count, last.into())
}

const OFAC_LIST: &str = "[[lists]]\nname = \"ofac\"\nsource = \"ofac.txt\"\n";
const NEW_LIST: &str = "[[lists]]\nname = \"new\"\nsource = \"new.txt\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_hit_report_counts_per_list_and_client_across_a_reload_and_a_restart() {
    let up = Upstream::start().await;
    let files = [
        ("ofac.txt", "sanctioned-co.example\n"),
        ("new.txt", "fresh.example\n"),
    ];
    let e = Embargo::start(&config(up.addr, OFAC_LIST), &files).await;
    let ask = |from: &'static str, name: &'static str| {
        let addr = e.addr;
        async move {
            let (r, _) = udp_from(from, addr, &query(name, RecordType::A, false)).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
        }
    };
    // A few milliseconds apart, so that "most recent first" has one answer.
    let gap = || tokio::time::sleep(Duration::from_millis(5));
    ask("127.0.0.1:0", "a.seized.example.").await;
    gap().await;
    ask("127.0.0.2:0", "b.seized.example.").await;
    gap().await;
    ask("127.0.0.1:0", "www.sanctioned-co.example.").await;
    gap().await;
    ask("127.0.0.1:0", "c.seized.example.").await;
    let report = wait_for_hits(&e, 4).await;
    let seized_last = report.hits[0].last_seen.clone();
    assert_eq!(
        rows(&report),
        [
            row("seized", "127.0.0.1", 2, "c.seized.example"),
            row("ofac", "127.0.0.1", 1, "www.sanctioned-co.example"),
            row("seized", "127.0.0.2", 1, "b.seized.example"),
        ]
    );
    assert!(report.hits[0].first_seen < seized_last, "{report:#?}");

    // A reload that puts a new list first: every list moves in the
    // snapshot, but records still name the list that blocked.
    let cfg = config(up.addr, OFAC_LIST).replace(
        "[[lists]]\nname = \"seized\"",
        &format!("{NEW_LIST}\n[[lists]]\nname = \"seized\""),
    );
    std::fs::write(e.dir().join("embargo.toml"), cfg).expect("config");
    embargo::reload::reload(&e.dir().join("embargo.toml"), e.handler.state()).expect("reload");
    assert_eq!(e.handler.state().load().lists[0].spec.name, "new");
    ask("127.0.0.2:0", "d.seized.example.").await;
    gap().await;
    ask("127.0.0.2:0", "fresh.example.").await;
    let report = wait_for_hits(&e, 6).await;
    let mut got = rows(&report);
    got.sort();
    assert_eq!(
        got,
        [
            row("new", "127.0.0.2", 1, "fresh.example"),
            row("ofac", "127.0.0.1", 1, "www.sanctioned-co.example"),
            row("seized", "127.0.0.1", 2, "c.seized.example"),
            row("seized", "127.0.0.2", 2, "d.seized.example"),
        ]
    );
    let recs = records(&log_path(&e), 6).await;
    assert_eq!(find(&recs, "d.seized.example", "blocked")["list"], "seized");
    assert_eq!(find(&recs, "fresh.example", "blocked")["list"], "new");

    // Stopping saves the report; `embargo hits` prints it.
    let dir = e.stop_keep_dir().await;
    let conf = dir.path().join("embargo.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_embargo"))
        .args(["hits", "-c", conf.to_str().expect("utf8")])
        .output()
        .expect("run embargo hits");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table: Vec<&str> = text.lines().collect();
    assert!(table[0].starts_with("hit report of pid "), "{text}");
    assert!(table[0].contains("6 records written, 0 dropped"), "{text}");
    let header: Vec<&str> = table[1]
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "list",
            "client",
            "count",
            "first seen",
            "last seen",
            "last name",
            "type"
        ]
    );
    // Most recent first: the last two asks came from 127.0.0.2.
    let first: Vec<&str> = table[2].split_whitespace().collect();
    assert_eq!(first[..3], ["new", "127.0.0.2", "1"], "{text}");
    assert_eq!(first[5..], ["fresh.example", "A"], "{text}");
    assert_eq!(table.len(), 6, "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_embargo"))
        .args([
            "hits",
            "-c",
            conf.to_str().expect("utf8"),
            "--list",
            "seized",
            "--json",
        ])
        .output()
        .expect("run embargo hits");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let clients: Vec<(&str, u64)> = v["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| {
            (
                h["client"].as_str().unwrap_or(""),
                h["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(clients, [("127.0.0.2", 2), ("127.0.0.1", 2)]);
    assert_eq!(v["lists"][0]["list"], "seized");

    // A restart reads the report back and goes on counting.
    let e = Embargo::start_in(dir).await;
    assert_eq!(e.handler.observer().hits(Some("seized")).hits.len(), 2);
    let addr = e.addr;
    let (r, _) = udp_from(
        "127.0.0.1:0",
        addr,
        &query("e.seized.example.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seized = e.handler.observer().hits(Some("seized"));
        if seized.hits[0].count == 3 {
            assert_eq!(seized.hits[0].client, "127.0.0.1");
            assert_eq!(seized.hits[0].last_name, "e.seized.example");
            break;
        }
        assert!(Instant::now() < deadline, "{seized:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_least_recently_seen_client_is_evicted_and_counted() {
    let up = Upstream::start().await;
    let cfg = config(up.addr, "") + "\n[hits]\nmax_clients = 1\n";
    let e = Embargo::start(&cfg, &[]).await;
    udp_from(
        "127.0.0.1:0",
        e.addr,
        &query("a.seized.example.", RecordType::A, false),
    )
    .await;
    wait_for_hits(&e, 1).await;
    udp_from(
        "127.0.0.2:0",
        e.addr,
        &query("b.seized.example.", RecordType::A, false),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let report = e.handler.observer().hits(None);
        if report.lists.first().is_some_and(|l| l.evicted == 1) {
            assert_eq!(
                rows(&report),
                [row("seized", "127.0.0.2", 1, "b.seized.example")]
            );
            assert_eq!(report.lists[0].clients, 1);
            break;
        }
        assert!(Instant::now() < deadline, "{report:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_are_dropped_and_counted_when_the_writer_falls_behind_never_queries() {
    let up = Upstream::start().await;
    // One record may wait per serving thread: a burst must overflow it.
    let cfg = config(up.addr, "") + "\n[log]\nqueue = 1\n";
    let e = Embargo::start(&cfg, &[]).await;
    let socks = client_socks(4).await;
    // Bursts of 48 (a recvmmsg batch and more), each answered before the
    // next, so that the kernel's socket buffers never overflow.
    let (bursts, burst) = (8, 48);
    let sent = bursts * burst;
    let mut ids = std::collections::HashSet::new();
    let mut buf = vec![0u8; 4096];
    for b in 0..bursts {
        for i in b * burst..(b + 1) * burst {
            let mut q = query(&format!("q{i}.seized.example."), RecordType::A, false);
            q.metadata.id = i as u16;
            ids.insert(i as u16);
            socks[i % socks.len()]
                .send_to(&q.to_vec().expect("encode"), e.addr)
                .await
                .expect("send");
        }
        for s in &socks {
            for _ in 0..burst / socks.len() {
                let (n, _) = tokio::time::timeout(Duration::from_secs(3), s.recv_from(&mut buf))
                    .await
                    .expect("every query answered in time")
                    .expect("recv");
                let r = Message::from_vec(&buf[..n]).expect("reply");
                assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
                ids.remove(&r.metadata.id);
            }
        }
    }
    assert!(ids.is_empty(), "{} queries unanswered", ids.len());
    let observer = e.handler.observer().clone();
    let path = log_path(&e);
    let _dir = e.stop_keep_dir().await;
    let (written, dropped) = (observer.written(), observer.dropped());
    assert!(dropped > 0, "nothing dropped ({written} written)");
    assert_eq!(
        written + dropped,
        sent as u64,
        "every record written or counted"
    );
    assert_eq!(lines(&path, 0).await.len() as u64, written);
    // The count is in the saved report too, for `embargo hits`.
    let saved: Value = serde_json::from_slice(
        &std::fs::read(path.with_file_name("hits.json")).expect("hits.json"),
    )
    .expect("JSON");
    assert_eq!(saved["log_dropped"], dropped);
}

// ---- the paths main grew after issue 11: [access], [rate_limit], the
// upstream module's two forward paths, wildcard sockets ----

/// Waits until the log has `n` records and then a moment more, so that a
/// record that should not be there would have arrived too.
async fn settled_records(path: &Path, n: usize) -> Vec<Value> {
    let recs = records(path, n).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = records(path, n).await;
    assert_eq!(later.len(), recs.len(), "more records came: {later:#?}");
    later
}

#[test]
fn refused_clients_are_recorded_with_their_question() {
    crate::netns::run(
        concat!(
            module_path!(),
            "::refused_clients_are_recorded_with_their_question"
        ),
        || async {
            use crate::netns::{OUTSIDER, ip, tcp_from, udp_from};
            let outsider = ip(OUTSIDER);
            let wait = Duration::from_secs(3);
            let up = Upstream::start().await;
            let cfg = config(up.addr, "") + "\n[log]\nqueries = \"all\"\n";
            let e = Embargo::start(&cfg, &[]).await;
            let blocked = query("www.seized.example.", RecordType::A, true);
            let r = udp_from(outsider, e.addr, &blocked.to_vec().expect("encode"), wait)
                .await
                .expect("a UDP answer");
            assert_eq!(r[3] & 0x0f, 5, "REFUSED");
            let fwd = query("www.up.test.", RecordType::AAAA, false);
            let r = tcp_from(outsider, e.addr, &fwd.to_vec().expect("encode"), wait)
                .await
                .expect("a TCP answer");
            assert_eq!(r[3] & 0x0f, 5, "REFUSED");
            // No question at all: refused all the same, recorded without a name.
            let r = udp_from(
                outsider,
                e.addr,
                &[0xab, 0xcd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                wait,
            )
            .await
            .expect("a UDP answer");
            assert_eq!(r[3] & 0x0f, 5, "REFUSED");
            let recs = settled_records(&log_path(&e), 3).await;
            assert_eq!(recs.len(), 3, "{recs:#?}");
            for r in &recs {
                assert_eq!(r["decision"], "refused", "{r}");
                assert_eq!(r["client"], OUTSIDER, "{r}");
                assert_eq!(r["rcode"], "REFUSED", "{r}");
                assert!(r["list"].is_null() && r["upstream"].is_null(), "{r}");
            }
            let udp = find(&recs, "www.seized.example", "refused");
            assert_eq!((&udp["type"], &udp["proto"]), (&"A".into(), &"udp".into()));
            let tcp = find(&recs, "www.up.test", "refused");
            assert_eq!(
                (&tcp["type"], &tcp["proto"]),
                (&"AAAA".into(), &"tcp".into())
            );
            assert!(
                recs.iter()
                    .any(|r| r["name"].is_null() && r["type"].is_null()),
                "{recs:#?}"
            );
            // A refusal is not a block: the outsider is in no hit report.
            assert!(e.handler.observer().hits(None).hits.is_empty());
            assert_eq!(up.count("www.up.test"), 0);
            e.stop().await;

            // `action = "drop"`: recorded, with no RCODE, since nothing was sent.
            let cfg = config(up.addr, "[access]\naction = \"drop\"\n")
                + "\n[log]\nqueries = \"all\"\nformat = \"text\"\n";
            let e = Embargo::start(&cfg, &[]).await;
            let silence = Duration::from_millis(600);
            let q = blocked.to_vec().expect("encode");
            assert_eq!(udp_from(outsider, e.addr, &q, silence).await, None);
            let got = lines(&log_path(&e), 1).await;
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(
                got[0].contains(&format!(" {OUTSIDER}#"))
                    && got[0].contains(" udp www.seized.example A refused rcode=- "),
                "{got:?}"
            );
            e.stop().await;
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_answers_are_counted_not_logged() {
    let up = Upstream::start().await;
    let cfg = config(
        up.addr,
        "[rate_limit]\nresponses_per_second = 2\nslip = 2\nexempt = []\n",
    ) + "\n[log]\nqueries = \"all\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    // A burst from one client: a few answered, then every 2nd limited
    // answer truncated and the rest dropped.
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let sent = 40u16;
    for id in 0..sent {
        let mut q = query("www.seized.example.", RecordType::A, false);
        q.metadata.id = id;
        sock.send_to(&q.to_vec().expect("encode"), e.addr)
            .await
            .expect("send");
    }
    let (mut answered, mut truncated) = (0u64, 0u64);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
    {
        let r = Message::from_vec(&buf[..n]).expect("decodes");
        if r.metadata.truncation {
            truncated += 1;
        } else {
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
            answered += 1;
        }
    }
    let dropped = u64::from(sent) - answered - truncated;
    assert!(
        answered > 0 && truncated > 0 && dropped > 0,
        "{answered} {truncated} {dropped}"
    );
    // Only what was answered is in the log (and the hit report)...
    let recs = settled_records(&log_path(&e), answered as usize).await;
    assert_eq!(recs.len() as u64, answered, "{recs:#?}");
    assert!(recs.iter().all(|r| r["decision"] == "blocked"));
    assert_eq!(wait_for_hits(&e, answered).await.hits[0].count, answered);
    // ...and the limited answers are counted.
    let limited = e.handler.observer().rate_limited();
    assert_eq!((limited.dropped, limited.truncated), (dropped, truncated));
    let dir = e.stop_keep_dir().await;
    let saved: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("embargo-state/hits.json")).expect("hits.json"),
    )
    .expect("json");
    assert_eq!(saved["rate_limited_dropped"], dropped);
    assert_eq!(saved["rate_limited_truncated"], truncated);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_embargo"))
        .arg("hits")
        .arg("-c")
        .arg(dir.path().join("embargo.toml"))
        .output()
        .expect("embargo hits runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "rate limiter: {dropped} answers dropped, {truncated} sent truncated"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_answers_name_the_upstream_that_gave_them_on_either_path() {
    let up = Upstream::start().await;
    let dead = dead_addr().await;
    // Failover: the dead server first, so the answer comes from the second.
    let cfg = config(up.addr, "").replace(
        &format!("servers = [\"{}\"]", up.addr),
        &format!("servers = [\"{dead}\", \"{}\"]", up.addr),
    ) + "\n[log]\nqueries = \"all\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    // UDP with plain UDP upstreams: the fast path (the worker sends, the
    // upstream socket's reader answers); TCP: a task.
    let (r, _) = udp_from(
        "127.0.0.1:0",
        e.addr,
        &query("www.up.test.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let (r, _) = tcp_from(e.addr, &query("mail.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let recs = settled_records(&log_path(&e), 2).await;
    let fast = find(&recs, "www.up.test", "forwarded");
    assert_eq!(fast["proto"], "udp");
    assert_eq!(fast["upstream"], up.addr.to_string(), "{fast}");
    assert!(fast["latency_us"].as_u64().is_some_and(|l| l > 0), "{fast}");
    let task = find(&recs, "mail.up.test", "forwarded");
    assert_eq!(task["proto"], "tcp");
    assert_eq!(task["upstream"], up.addr.to_string(), "{task}");
    e.stop().await;

    // An upstream over TCP: UDP clients' forwards take a task too, and the
    // record names the server as the config writes it.
    let cfg = config(up.addr, "").replace(
        &format!("servers = [\"{}\"]", up.addr),
        &format!("servers = [\"tcp://{}\"]", up.addr),
    ) + "\n[log]\nqueries = \"all\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    let (r, _) = udp_from(
        "127.0.0.1:0",
        e.addr,
        &query("ns.up.test.", RecordType::A, false),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let recs = settled_records(&log_path(&e), 1).await;
    let allowed = find(&recs, "ns.up.test", "forwarded");
    assert_eq!(allowed["upstream"], format!("tcp://{}", up.addr));
    e.stop().await;

    // Two live servers in turn: each record names the one that was asked,
    // the second as well as the first, on the fast path's first attempt.
    let up2 = Upstream::start().await;
    let cfg = config(up.addr, "").replace(
        &format!("servers = [\"{}\"]", up.addr),
        &format!(
            "servers = [\"{}\", \"{}\"]\nstrategy = \"round_robin\"",
            up.addr, up2.addr
        ),
    ) + "\n[log]\nqueries = \"all\"\n";
    let e = Embargo::start(&cfg, &[]).await;
    let names = ["www.up.test", "mail.up.test", "txt.up.test", "mx.up.test"];
    // `up` answered some of these names above.
    let before: Vec<usize> = names.iter().map(|n| up.count(n)).collect();
    for name in names {
        let (r, _) = udp_from(
            "127.0.0.1:0",
            e.addr,
            &query(&format!("{name}."), RecordType::A, false),
        )
        .await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    }
    let recs = settled_records(&log_path(&e), names.len()).await;
    let mut seen = std::collections::HashSet::new();
    for (name, before) in names.into_iter().zip(before) {
        let asked = match (up.count(name) - before, up2.count(name)) {
            (1, 0) => up.addr,
            (0, 1) => up2.addr,
            counts => panic!("{name} asked {counts:?} times"),
        };
        let rec = find(&recs, name, "forwarded");
        assert_eq!(rec["upstream"], asked.to_string(), "{rec}");
        seen.insert(asked);
    }
    assert_eq!(seen.len(), 2, "round robin asked both");
    e.stop().await;
}

#[test]
fn a_wildcard_socket_records_its_forwards_and_answers_from_the_address_asked() {
    crate::netns::run(
        concat!(
            module_path!(),
            "::a_wildcard_socket_records_its_forwards_and_answers_from_the_address_asked"
        ),
        || async {
            use crate::netns::{NEIGHBOUR, OUTSIDER};
            let up = Upstream::start().await;
            let cfg = config(up.addr, "[access]\nallow = [\"198.51.100.0/24\"]\n")
                .replace(r#"listen = ["127.0.0.1:0"]"#, r#"listen = ["0.0.0.0:0"]"#)
                + "\n[log]\nqueries = \"all\"\n";
            let e = Embargo::start(&cfg, &[]).await;
            // Asked on one of the host's addresses from another: the
            // forwarded answer (a task, for a wildcard socket) must come
            // from the address asked.
            let to = SocketAddr::new(NEIGHBOUR.parse().expect("ip"), e.addr.port());
            let sock = UdpSocket::bind((OUTSIDER.parse::<std::net::IpAddr>().expect("ip"), 0))
                .await
                .expect("bind");
            let q = query("www.up.test.", RecordType::A, false);
            sock.send_to(&q.to_vec().expect("encode"), to)
                .await
                .expect("send");
            let mut buf = vec![0u8; 4096];
            let (n, from) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
                .await
                .expect("an answer in time")
                .expect("recv");
            assert_eq!(from, to, "answered from the address asked");
            let r = Message::from_vec(&buf[..n]).expect("decodes");
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            let recs = settled_records(&log_path(&e), 1).await;
            let allowed = find(&recs, "www.up.test", "forwarded");
            assert_eq!(allowed["client"], OUTSIDER);
            assert_eq!(allowed["upstream"], up.addr.to_string());
            e.stop().await;
        },
    );
}

/// Issue 12: with `[[groups]]` each record names the client's group, and a
/// block found in a CNAME chain is recorded as a block of its list (with
/// no entry: the listed name is in the chain, not the question), whether
/// it came from the upstream or from the cache.
#[tokio::test(flavor = "multi_thread")]
async fn records_name_the_group_and_cname_blocks_their_list() {
    let up = Upstream::start_with(&crate::groups::zone()).await;
    let groups = "[[groups]]\nname = \"servers\"\nclients = [\"127.0.0.2\"]\nlists = [\"malware\"]\n\n[log]\nqueries = \"all\"\n";
    let e = crate::groups::start(&up, groups).await;
    for (from, name) in [
        ("127.0.0.1:0", "seized.example."),
        ("127.0.0.2:0", "seized.example."),
        ("127.0.0.1:0", "cdn.up.test."),
        ("127.0.0.1:0", "cdn.up.test."),
        ("127.0.0.2:0", "cdn.up.test."),
    ] {
        udp_from(from, e.addr, &query(name, RecordType::A, false)).await;
    }
    let recs = records(&log_path(&e), 5).await;
    let blocked = find(&recs, "seized.example", "blocked");
    assert_eq!(blocked["group"], "default", "{blocked}");
    assert_eq!(blocked["client"], "127.0.0.1");
    let allowed = find(&recs, "seized.example", "forwarded");
    assert_eq!(allowed["group"], "servers", "{allowed}");
    let through: Vec<&Value> = recs
        .iter()
        .filter(|r| r["name"] == "cdn.up.test" && r["decision"] == "blocked")
        .collect();
    assert_eq!(
        through.len(),
        2,
        "forwarded, then from the cache: {recs:#?}"
    );
    for r in through {
        assert_eq!(r["list"], "trackers", "{r}");
        assert_eq!(r["action"], "nxdomain", "{r}");
        assert_eq!(r["rcode"], "NXDOMAIN", "{r}");
        assert!(r["entry"].is_null(), "{r}");
        assert_eq!(r["group"], "default", "{r}");
    }
    let cached = find(&recs, "cdn.up.test", "cached");
    assert_eq!(cached["group"], "servers", "{cached}");
    assert!(cached["list"].is_null(), "{cached}");
    e.stop().await;
}

/// Without groups a record has no `group` field (as before issue 12), and
/// a cached CNAME verdict is still recorded as the list's block.
#[tokio::test(flavor = "multi_thread")]
async fn without_groups_records_have_no_group_and_cached_cname_verdicts_are_blocks() {
    let up = Upstream::start_with(&crate::groups::zone()).await;
    let e = crate::groups::start(&up, "\n[log]\nqueries = \"all\"\n").await;
    for _ in 0..2 {
        udp_from(
            "127.0.0.1:0",
            e.addr,
            &query("cdn.up.test.", RecordType::A, false),
        )
        .await;
    }
    let recs = records(&log_path(&e), 2).await;
    assert_eq!(recs.len(), 2, "{recs:#?}");
    for r in &recs {
        assert_eq!(r["decision"], "blocked", "{r}");
        assert_eq!(r["list"], "trackers", "{r}");
        assert!(r.get("group").is_none(), "{r}");
    }
    assert!(
        recs[0]["upstream"].is_string() && recs[1]["upstream"].is_null(),
        "{recs:#?}"
    );
    assert_eq!(up.count("cdn.up.test"), 1);
    e.stop().await;
}
