//! Issue 20: "what else did 10.1.2.3 ask for?" answered from the query
//! log, rotated and compressed files included: `embargo log` with each
//! filter (server stopped and running) and `GET /api/log?client=…`, both
//! against the real binary, whose log rotates at `max_size_mb = 1`.
//!
//! ```text
//!  queries.log.2.zst  an earlier run's records, in the text format (and one bad line)
//!  queries.log.1.zst  run 1: three queries (JSON), then text padding to the size limit
//!  queries.log        run 2: three queries (JSON)
//! ```

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::cli::{run_server, terminate, write_config};
use crate::harness::{Upstream, config, query, udp_from, with_http};

const BIN: &str = env!("CARGO_BIN_EXE_embargo");
/// `[log] max_size_mb = 1`.
const MIB: u64 = 1024 * 1024;

/// `embargo log -c CONFIG ARGS...`: exit code, stdout, stderr.
fn log(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("log")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run embargo log");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A record as the test compares it: client, name, type, decision, list.
fn brief(v: &Value) -> String {
    format!(
        "{} {} {} {} {}",
        v["client"].as_str().unwrap_or("?"),
        v["name"].as_str().unwrap_or("-"),
        v["type"].as_str().unwrap_or("-"),
        v["decision"].as_str().unwrap_or("?"),
        v["list"].as_str().unwrap_or("-"),
    )
}

/// `embargo log --json ARGS` as brief records, oldest first.
fn found(config: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = log(config, &all);
    assert_eq!(code, 0, "embargo log {args:?}: {err}");
    out.lines()
        .map(|l| brief(&serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))))
        .collect()
}

fn text_line(time: &str, client: &str, rest: &str) -> String {
    format!("{time} {client}#5300 udp {rest} latency_us=5\n")
}

/// Text records of client 10.9.9.9 at `time` appended to `path` until it
/// holds at least 1 MiB.
fn pad(path: &Path, time: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    let mut size = f.metadata().expect("size").len();
    let mut i = 0;
    while size < MIB {
        let l = text_line(
            time,
            "10.9.9.9",
            &format!("pad{i}.up.test A forwarded rcode=NOERROR upstream=192.0.2.53:53"),
        );
        f.write_all(l.as_bytes()).expect("write");
        size += l.len() as u64;
        i += 1;
    }
}

/// Asks `name` from `source`, expecting `rcode`.
async fn ask(
    server: std::net::SocketAddr,
    source: &str,
    name: &str,
    qtype: RecordType,
    rcode: ResponseCode,
) {
    let ip: IpAddr = source.parse().expect("ip");
    let r = udp_from(ip, server, &query(name, qtype, false)).await;
    assert_eq!(r.metadata.response_code, rcode, "{name} from {source}");
    // The log's times are in milliseconds, and records of one millisecond
    // keep the order the writer drained its rings in (a forwarded answer's
    // ring before the UDP worker's): a few milliseconds apart, the queries
    // asked one after the other are in the log's time order.
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// Waits up to 20 s for `done`.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "waited 20 s for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let resp = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn r20_the_query_log_is_searched_rotated_files_included() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = with_http(
        &(config(up.addr, "") + "\n[log]\nqueries = \"all\"\nmax_size_mb = 1\n"),
        "listen = [\"127.0.0.1:0\"]",
    );
    let path = write_config(dir.path(), &cfg);
    let state = dir.path().join("embargo-state");
    let live = state.join("queries.log");
    let zst = |n: u32| state.join(format!("queries.log.{n}.zst"));
    let plain = |n: u32| state.join(format!("queries.log.{n}"));

    // An earlier run's log, in the text format, full: the first record
    // run 1 writes rotates it away.
    std::fs::create_dir_all(&state).expect("state dir");
    let old = "2026-01-01T00:00:00.000Z";
    let mut earlier = String::new();
    earlier += &text_line(
        old,
        "10.1.2.3",
        "seized.example A blocked list=seized entry=seized.example action=nxdomain rcode=NXDOMAIN",
    );
    earlier += &text_line(
        old,
        "10.1.2.4",
        "www.up.test A forwarded rcode=NOERROR upstream=192.0.2.53:53",
    );
    earlier += "this line is no record\n";
    earlier += &text_line(
        old,
        "10.1.2.3",
        "notseized.example A forwarded rcode=NOERROR upstream=192.0.2.53:53",
    );
    std::fs::write(&live, earlier).expect("earlier log");
    pad(&live, old);

    // Run 1: three queries, blocked and allowed, from two clients.
    let mut server = run_server(&path, false);
    let dns = server.addr;
    ask(
        dns,
        "127.0.0.1",
        "www.seized.example",
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    ask(
        dns,
        "127.0.0.1",
        "www.up.test",
        RecordType::A,
        ResponseCode::NoError,
    )
    .await;
    ask(
        dns,
        "127.0.0.2",
        "sanctioned.example",
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    wait_for("run 1's three records", || lines(&live) == 3).await;
    assert_eq!(terminate(&mut server.child).code(), Some(0));

    // Server stopped: the earlier log (rotated) and run 1's records.
    let run1 = [
        "127.0.0.1 www.seized.example A blocked seized",
        "127.0.0.1 www.up.test A forwarded -",
        "127.0.0.2 sanctioned.example A blocked seized",
    ];
    assert_eq!(found(&path, &["--since", "1h"]), run1);
    assert_eq!(
        found(&path, &["--client", "10.1.2.0/24"]),
        [
            "10.1.2.3 seized.example A blocked seized",
            "10.1.2.4 www.up.test A forwarded -",
            "10.1.2.3 notseized.example A forwarded -",
        ]
    );

    // Run 1's file filled up, so that run 2's first record rotates it.
    pad(&live, &now_rfc3339());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = now_rfc3339();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let mut server = run_server(&path, false);
    let (dns, http) = (server.addr, server.http_addr());
    ask(
        dns,
        "127.0.0.1",
        "seized.example",
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    ask(
        dns,
        "127.0.0.1",
        "mail.up.test",
        RecordType::A,
        ResponseCode::NoError,
    )
    .await;
    ask(
        dns,
        "127.0.0.2",
        "www.seized.example",
        RecordType::AAAA,
        ResponseCode::NXDomain,
    )
    .await;
    wait_for("run 2's three records", || lines(&live) == 3).await;
    wait_for("both rotated files compressed", || {
        zst(1).exists() && zst(2).exists() && !plain(1).exists() && !plain(2).exists()
    })
    .await;
    let run2 = [
        "127.0.0.1 seized.example A blocked seized",
        "127.0.0.1 mail.up.test A forwarded -",
        "127.0.0.2 www.seized.example AAAA blocked seized",
    ];

    // Each filter, the server running.
    assert_eq!(
        found(&path, &["--client", "127.0.0.2"]),
        [run1[2], run2[2]],
        "a client's records from the compressed file and the live one"
    );
    assert_eq!(
        found(&path, &["--client", "127.0.0.1"]),
        [run1[0], run1[1], run2[0], run2[1]]
    );
    assert_eq!(
        found(&path, &["--list", "seized"]),
        [
            "10.1.2.3 seized.example A blocked seized",
            run1[0],
            run1[2],
            run2[0],
            run2[2]
        ]
    );
    assert_eq!(
        found(&path, &["--name", "SEIZED.example."]),
        [
            "10.1.2.3 seized.example A blocked seized",
            run1[0],
            run2[0],
            run2[2]
        ],
        "the name and the names under it, not notseized.example"
    );
    assert_eq!(found(&path, &["--since", &between]), run2);
    assert_eq!(
        found(&path, &["--until", &between, "--client", "127.0.0.1"]),
        [run1[0], run1[1]]
    );
    assert_eq!(
        found(
            &path,
            &[
                "--since",
                "1h",
                "--client",
                "127.0.0.1",
                "--list",
                "seized",
                "--name",
                "example"
            ]
        ),
        [run1[0], run2[0]],
        "filters combine with AND"
    );
    assert_eq!(
        found(&path, &["--client", "127.0.0.1", "--limit", "2"]),
        [run2[0], run2[1]],
        "--limit keeps the newest"
    );

    // The table, and what was skipped.
    let (code, out, err) = log(&path, &["--client", "127.0.0.2"]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(
        rows[0].starts_with("time ") && rows[0].ends_with("  name"),
        "{out}"
    );
    assert!(
        rows[1].contains(" 127.0.0.2 ") && rows[1].ends_with("  seized  sanctioned.example"),
        "{out}"
    );
    assert!(
        rows[2].contains(" AAAA ") && rows[2].ends_with("www.seized.example"),
        "{out}"
    );
    assert!(
        rows[3].starts_with("(2 records of ") && rows[3].contains(" in 3 files"),
        "{out}"
    );
    assert!(
        err.contains("1 line skipped: not a query-log record (first: ")
            && err.contains("queries.log.2.zst:3: "),
        "{err}"
    );

    // Bad filters: exit 2, saying why.
    let (code, _, err) = log(&path, &["--list", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no list \"nope\"") && err.contains("its lists are: seized"),
        "{err}"
    );
    for bad in [
        ["--since", "soon"],
        ["--client", "host.example"],
        ["--name", "a..b"],
    ] {
        let (code, _, err) = log(&path, &bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains(&bad[0][2..]), "{bad:?}: {err}");
    }

    // The same search over HTTP: newest first.
    let (status, body) = get(http, "/api/log?client=127.0.0.2").await;
    assert_eq!(status, 200, "{body}");
    let records: Vec<String> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(brief)
        .collect();
    assert_eq!(records, [run2[2], run1[2]], "{body}");
    assert_eq!(body["searched"]["files"], 3, "{body}");
    assert_eq!(body["searched"]["skipped"], 1, "{body}");
    assert_eq!(body["more"], false, "{body}");
    assert_eq!(body["logged"].as_array().map(Vec::len), Some(7), "{body}");

    let (status, body) = get(http, "/api/log?client=127.0.0.1&name=up.test&limit=1").await;
    assert_eq!(status, 200, "{body}");
    let records: Vec<String> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(brief)
        .collect();
    assert_eq!(records, [run2[1]], "{body}");
    assert_eq!(body["more"], true, "{body}");
    assert_eq!(
        body["records"][0]["upstream"],
        up.addr.to_string(),
        "{body}"
    );

    let (status, body) = get(http, &format!("/api/log?list=seized&since={between}")).await;
    assert_eq!(status, 200, "{body}");
    let records: Vec<String> = body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(brief)
        .collect();
    assert_eq!(records, [run2[2], run2[0]], "{body}");

    for (query, why) in [
        ("list=nope", "no list \"nope\"; the lists are: seized"),
        ("since=soon", "since: not a time"),
        ("client=host.example", "client: not an IP address"),
        ("client=127.0.0.1&limit=100000", "limit: from 1 to 10000"),
    ] {
        let (status, body) = get(http, &format!("/api/log?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(why)),
            "{query}: {body}"
        );
    }
    // Without a filter, the latest records from memory, as before.
    let (status, body) = get(http, "/api/log?limit=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["records"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(body.get("searched").is_none(), "{body}");

    assert_eq!(terminate(&mut server.child).code(), Some(0));
}

/// The security team's guide shows `embargo log`'s table: given the
/// records it shows, the program prints that table, line for line (the
/// last line, which counts the files of the guide's log, aside).
#[test]
fn r20_the_guides_table_is_what_embargo_log_prints() {
    let md = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/security-team.md"),
    )
    .expect("guide");
    let command = "$ embargo log -c embargo.toml --client 10.1.2.3";
    let shown: Vec<&str> = md
        .lines()
        .skip_while(|l| !l.starts_with(command))
        .skip(1)
        .take_while(|l| !l.starts_with("$ ") && !l.starts_with("```"))
        .collect();
    assert!(
        shown.len() >= 3,
        "the guide's `{command}` example: {shown:?}"
    );
    let (table, footer) = shown.split_at(shown.len() - 1);
    assert!(footer[0].starts_with('('), "{footer:?}");
    let mut log = String::new();
    for row in &table[1..] {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let [time, client, qtype, decision, rcode, list, name] = cells[..] else {
            panic!("a row of seven cells: {row}");
        };
        let list = if list == "-" {
            "null".to_owned()
        } else {
            format!("\"{list}\"")
        };
        log += &format!(
            r#"{{"time":"{time}","client":"{client}","port":5300,"proto":"udp","name":"{name}","type":"{qtype}","decision":"{decision}","stale":false,"list":{list},"entry":null,"action":null,"rcode":"{rcode}","upstream":null,"latency_us":1}}"#
        );
        log.push('\n');
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        &config("127.0.0.1:9".parse().expect("addr"), ""),
    );
    std::fs::create_dir_all(dir.path().join("embargo-state")).expect("state");
    std::fs::write(dir.path().join("embargo-state/queries.log"), log).expect("log");
    let (code, out, err) = crate::logsearch::log(&path, &["--client", "10.1.2.3"]);
    assert_eq!(code, 0, "{err}");
    let printed: Vec<&str> = out.lines().collect();
    assert_eq!(
        printed[..printed.len() - 1],
        *table,
        "docs/src/security-team.md shows another table"
    );
    assert!(
        err.contains("[log] queries = \"blocked\": the log holds blocked queries only"),
        "{err}"
    );
}
