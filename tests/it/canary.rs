//! The canary (issue 20): a name per list that must stay blocked. The real
//! binary asks itself for it over its own UDP listener every
//! `[block] canary_interval`; a copy of the list that lost it still loads,
//! and `/readyz`, `embargo_canary_ok` and the log say so; the next good
//! answer clears it. The canary's own queries are not hits.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::cli::{Running, embargo, run_server, terminate, write_config};
use crate::harness::{RELOAD_WAIT, Upstream, config, ede, query, udp, with_http};

/// The list the canary watches, with and without its canary.
const WATCHED: &str = "canary.watched.example\nmalware.example\n";
const LOST: &str = "malware.example\n";

/// How often the test server asks for its canaries.
const INTERVAL: Duration = Duration::from_secs(1);

fn canary_config(upstream: SocketAddr) -> String {
    let lists = "[[lists]]\nname = \"watched\"\nsource = \"watched.txt\"\ncanary = \"canary.watched.example\"\n";
    with_http(&config(upstream, lists), "listen = [\"127.0.0.1:0\"]").replacen(
        "[block]\n",
        "[block]\ncanary_interval = \"1s\"\n",
        1,
    )
}

async fn get(url: String) -> (u16, String) {
    let r = reqwest::get(&url).await.expect("GET");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// Polls `url` until `ok` holds of its answer, for at most `limit`;
/// returns the answer and how long it took.
async fn until(
    url: &str,
    limit: Duration,
    ok: impl Fn(u16, &str) -> bool,
) -> ((u16, String), Duration) {
    let started = Instant::now();
    loop {
        let got = get(url.to_owned()).await;
        if ok(got.0, &got.1) {
            return (got, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "{url}: not so after {limit:?}: {} {}",
            got.0,
            got.1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the server's log until a line holding every one of `words`
/// (for at most `limit`); returns the lines read, that one last.
fn log_until(server: &Running, words: &[&str], limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = server.stderr.recv_timeout(Duration::from_millis(100)) {
            let found = words.iter().all(|w| line.contains(w));
            lines.push(line);
            if found {
                return lines;
            }
        }
    }
    panic!("no log line with {words:?} in {limit:?}: {lines:#?}")
}

/// Replaces `path` as an operator's deploy does: a new file renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread")]
async fn r20_a_list_that_lost_its_canary_fails_readyz_within_one_interval() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("watched.txt");
    std::fs::write(&list, WATCHED).expect("list");
    let path = write_config(dir.path(), &canary_config(up.addr));
    let mut server = run_server(&path, false);
    let http = server.http_addr();
    let (readyz, metrics) = (
        format!("http://{http}/readyz"),
        format!("http://{http}/metrics"),
    );
    let gauge = |v: u8| format!("embargo_canary_ok{{list=\"watched\"}} {v}\n");

    // In force, and asked: ready, gauge 1, and only lists with a canary
    // have one.
    let ((_, text), _) = until(&metrics, RELOAD_WAIT, |_, t| t.contains(&gauge(1))).await;
    assert!(
        !text.contains("embargo_canary_ok{list=\"seized\""),
        "{text}"
    );
    until(&readyz, RELOAD_WAIT, |s, _| s == 200).await;
    // A client's own block of the list: a hit, to tell from the canary's.
    let r = udp(server.addr, &query("malware.example.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(ede(&r).is_some_and(|(_, t)| t.starts_with("blocked by watched")));
    let lists = format!("http://{http}/api/lists");
    let (_, body) = get(lists.clone()).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let watched = v["lists"]
        .as_array()
        .expect("lists")
        .iter()
        .find(|l| l["name"] == "watched")
        .expect("watched")
        .clone();
    assert_eq!(
        watched["canary"]["name"], "canary.watched.example",
        "{watched}"
    );
    assert_eq!(watched["canary"]["listed"], true, "{watched}");
    assert_eq!(watched["canary"]["ok"], true, "{watched}");

    // The copy loses its canary. It loads (it is a good copy as far as
    // loading goes), and the canary says what it lost.
    replace(&list, LOST);
    log_until(&server, &["reload done"], RELOAD_WAIT);
    let reloaded = Instant::now();
    let ((status, body), _) = until(&readyz, RELOAD_WAIT, |s, _| s == 503).await;
    let within = reloaded.elapsed();
    assert_eq!(status, 503);
    assert!(
        body.contains("list watched: canary canary.watched.example not blocked"),
        "{body}"
    );
    // One interval, and some room for a machine busy with other builds.
    assert!(
        within < INTERVAL + Duration::from_secs(2),
        "503 only {within:?} after the reload"
    );
    let lines = log_until(
        &server,
        &["ERROR", "canary NOT blocked", "watched"],
        Duration::from_secs(10),
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("answered unblocked")),
        "{lines:#?}"
    );
    until(&metrics, Duration::from_secs(10), |_, t| {
        t.contains(&gauge(0))
    })
    .await;
    // The next checks fail too, and say nothing new.
    until(&metrics, Duration::from_secs(10), |_, t| {
        t.contains("embargo_canary_checks_total{list=\"watched\",result=\"failed\"} 3\n")
    })
    .await;

    // Put back: cleared at the next good answer, said once.
    replace(&list, WATCHED);
    until(&readyz, RELOAD_WAIT, |s, _| s == 200).await;
    until(&metrics, Duration::from_secs(10), |_, t| {
        t.contains(&gauge(1))
    })
    .await;
    let lines = log_until(
        &server,
        &["canary blocked, as it must be", "watched"],
        Duration::from_secs(10),
    );
    let errors = lines
        .iter()
        .filter(|l| l.contains("canary NOT blocked"))
        .count();
    assert_eq!(
        errors, 0,
        "one error per failure, not per check: {lines:#?}"
    );

    // Many canary questions later, the hit report holds the one real
    // query of the list, and the query log no canary.
    let ok = |t: &str| -> u64 {
        let series = "embargo_canary_checks_total{list=\"watched\",result=\"ok\"} ";
        t.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let now = ok(&get(metrics.clone()).await.1);
    until(&metrics, Duration::from_secs(10), |_, t| ok(t) >= now + 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, hits) = get(format!("http://{http}/api/hits?list=watched")).await;
    let hits: serde_json::Value = serde_json::from_str(&hits).expect("json");
    let rows = hits["hits"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{hits}");
    assert_eq!(rows[0]["count"], 1, "the canary is not a hit: {hits}");
    assert_eq!(rows[0]["last_name"], "malware.example", "{hits}");
    let log =
        std::fs::read_to_string(dir.path().join("embargo-state/queries.log")).expect("query log");
    assert!(log.contains("malware.example"), "{log}");
    assert!(!log.contains("canary.watched.example"), "{log}");
    assert_eq!(terminate(&mut server.child).code(), Some(0));
}

#[test]
fn r20_validate_fails_for_a_canary_its_list_does_not_cover() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An upstream nobody asks: validate sends nothing.
    let text = canary_config("127.0.0.1:9".parse().expect("addr")).replace(
        "canary = \"canary.watched.example\"",
        "canary = \"canary.elsewhere.example\"",
    );
    std::fs::write(dir.path().join("watched.txt"), WATCHED).expect("list");
    let path = write_config(dir.path(), &text);
    let p = path.to_str().expect("utf8");
    let (code, out, err) = embargo(&["validate", "-c", p]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("list watched: canary canary.elsewhere.example is not on the list"),
        "{err}"
    );
    assert!(err.contains("watched.txt"), "the file is named: {err}");
    assert!(
        err.contains("embargo.toml:"),
        "where the list is declared: {err}"
    );

    // Covered as a subdomain of a listed name (the list's own matching):
    // fine; and `embargo lists` says it is on the copy.
    let text = text.replace("canary.elsewhere.example", "www.canary.watched.example");
    std::fs::write(&path, text).expect("config");
    let (code, out, err) = embargo(&["validate", "-c", p]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = embargo(&["lists", "-c", p]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("watched: canary www.canary.watched.example: on this copy"),
        "{out}"
    );

    // On the list, but allowlisted: never blocked, so validate says so.
    let text = std::fs::read_to_string(&path).expect("config").replace(
        "domains = [\"allowed.seized.example\"]",
        "domains = [\"canary.watched.example\"]",
    );
    std::fs::write(&path, text).expect("config");
    let (code, out, err) = embargo(&["validate", "-c", p]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("is on the list but would be answered allowed") && err.contains("allowlist"),
        "{err}"
    );
}

/// The security-team guide's canary example: its config (the worked
/// example's, with the section's `[block]` and `canary` lines) with a
/// `doj.txt` that lost the name gives what the guide shows `validate`
/// and `lists` print.
#[test]
fn r20_the_guides_canary_example_is_what_the_program_says() {
    let md = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/security-team.md"),
    )
    .expect("guide");
    let block = |marker: &str| -> Vec<String> {
        let mut blocks = md.split("```").skip(1).step_by(2);
        blocks
            .find(|b| b.starts_with("toml") && b.contains(marker))
            .unwrap_or_else(|| panic!("no toml block with {marker}"))
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect()
    };
    let worked = block("name = \"ofac-sdn\"");
    let section = block("canary_interval");
    let value = |key: &str| {
        section
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .map(|v| v.split("  #").next().unwrap_or(v).trim().to_owned())
            .unwrap_or_else(|| panic!("no {key} in {section:?}"))
    };
    let ofac_canary = "\"www.volasys-example.ru\"";
    assert!(md.contains(&format!("`canary = {ofac_canary}`")));
    let mut config = String::new();
    let mut lists = 0;
    for l in &worked {
        if l == "[[lists]]" && lists == 0 {
            config.push_str(&format!(
                "[block]\ncanary_interval = {}\n",
                value("canary_interval")
            ));
        }
        if l == "[[lists]]" {
            lists += 1;
        }
        if l == "[http]" {
            config.push_str(&format!("canary = {ofac_canary}\n"));
        }
        config.push_str(l.split("  #").next().unwrap_or(l).trim_end());
        config.push('\n');
        if l.starts_with("ede = ") && lists == 1 {
            config.push_str(&format!("canary = {}\n", value("canary")));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("embargo.toml"), &config).expect("config");
    std::fs::write(dir.path().join("doj.txt"), "other-seized.example\n").expect("list");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ofac/SDN.XML"),
        dir.path().join("SDN.XML"),
    )
    .expect("fixture");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_embargo"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let shown = |command: &str| -> String {
        let at = md
            .find(&format!("$ {command}"))
            .expect("the command in the guide");
        md[at..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("$ ") && !l.starts_with("```"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let (code, out, err) = run(&["validate", "-c", "embargo.toml"]);
    assert_eq!(code, Some(1), "{config}\n{out}{err}");
    assert_eq!(err, shown("embargo validate -c embargo.toml"), "{config}");
    let (code, out, err) = run(&["lists", "-c", "embargo.toml"]);
    assert_eq!(code, Some(0), "{err}");
    let canaries: String = out
        .lines()
        .filter(|l| l.contains("canary"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        canaries,
        shown("embargo lists -c embargo.toml | grep canary")
    );
}
