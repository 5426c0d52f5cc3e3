//! List history (issue 20): three reloads that change a list and a
//! restart that does not, read back through `/api/history` and the
//! `embargo history` command.

use std::process::Command;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, ede, query, udp, with_http};

async fn blocked(e: &Embargo, name: &str) -> bool {
    let r = udp(e.addr, &query(name, RecordType::A, true)).await;
    r.metadata.response_code == ResponseCode::NXDomain && ede(&r).is_some()
}

async fn api(e: &Embargo, query: &str) -> serde_json::Value {
    let body = reqwest::get(format!("http://{}/api/history?{query}", e.http[0]))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// Replaces the list file (atomically: a reload never reads half of it)
/// and waits for a reload after that to finish with `name` blocked or not
/// as `want` says.
async fn change(e: &Embargo, text: &str, name: &str, want: bool) {
    let before = e.reloads.progress().borrow().finished;
    let tmp = e.dir().join("feed.txt.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, e.dir().join("feed.txt")).expect("rename");
    e.until_reloaded(&format!("{name} blocked: {want}"), async || {
        e.reloads.progress().borrow().finished > before && blocked(e, name).await == want
    })
    .await;
}

fn lines(e: &Embargo) -> usize {
    std::fs::read_to_string(e.dir().join("embargo-state/history/feed.jsonl"))
        .map_or(0, |t| t.lines().count())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_reloads_are_recorded_and_a_restart_is_not_a_change() {
    let up = Upstream::start().await;
    let lists = "[[lists]]\nname = \"feed\"\nsource = \"feed.txt\"\n";
    let e = Embargo::start(
        &with_http(&config(up.addr, lists), "listen = [\"127.0.0.1:0\"]"),
        &[("feed.txt", "one.example\ntwo.example\n")],
    )
    .await;
    // The first load: both entries entered (recorded off the serving path,
    // as the reload loop starts).
    let deadline = std::time::Instant::now() + crate::harness::RELOAD_WAIT;
    while lines(&e) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "first load not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let v2 = "one.example\ntwo.example\nthree.example\n";
    change(&e, v2, "three.example.", true).await;
    change(
        &e,
        "two.example\nthree.example\n",
        "www.one.example.",
        false,
    )
    .await;
    // A comment only: the content changed, the entries did not.
    change(
        &e,
        "# v4\ntwo.example\nthree.example\n",
        "two.example.",
        true,
    )
    .await;
    change(&e, v2, "one.example.", true).await;
    assert_eq!(
        lines(&e),
        4,
        "load, +three, -one, +one (the comment is no change)"
    );

    let h = api(&e, "list=feed").await;
    let changes = h["changes"].as_array().expect("changes");
    let summary: Vec<(Vec<String>, Vec<String>)> = changes
        .iter()
        .map(|c| {
            let v = |k: &str| -> Vec<String> {
                c[k].as_array()
                    .expect("array")
                    .iter()
                    .map(|s| s.as_str().expect("str").to_owned())
                    .collect()
            };
            (v("added"), v("removed"))
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            (s(&["one.example", "two.example"]), s(&[])),
            (s(&["three.example"]), s(&[])),
            (s(&[]), s(&["one.example"])),
            (s(&["one.example"]), s(&[])),
        ]
    );
    assert!(
        changes[0]["version"]
            .as_str()
            .expect("version")
            .starts_with("sha xxh3:"),
        "{h}"
    );
    assert_eq!(h["dropped"], 0);

    // A name below an entry: when the entry covering it entered and left.
    let n = api(&e, "name=www.one.example").await;
    let events: Vec<(String, String)> = n["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|ev| {
            (
                ev["event"].as_str().expect("event").to_owned(),
                ev["entry"].as_str().expect("entry").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("entered".to_owned(), "one.example".to_owned()),
            ("left".to_owned(), "one.example".to_owned()),
            ("entered".to_owned(), "one.example".to_owned()),
        ],
        "{n}"
    );

    // A restart with the same content appends nothing.
    let dir = e.stop_keep_dir().await;
    let e = Embargo::start_in(dir).await;
    assert!(blocked(&e, "one.example.").await);
    // Wait for the start's record to have run: a reload (of nothing new)
    // comes after it in the same loop.
    e.reloads.poke();
    e.until_reloaded("a reload after the restart", async || true)
        .await;
    assert_eq!(lines(&e), 4, "a restart is not a change");

    // The command line reads the same files.
    let out = Command::new(env!("CARGO_BIN_EXE_embargo"))
        .args(["-c"])
        .arg(e.dir().join("embargo.toml"))
        .args(["history", "www.one.example"])
        .output()
        .expect("run embargo history");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("feed\tentered\tone.example").count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches("feed\tleft\tone.example").count(), 1, "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_embargo"))
        .args(["-c"])
        .arg(e.dir().join("embargo.toml"))
        .args(["history", "--list", "feed"])
        .output()
        .expect("run embargo history --list");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("+1 -0\tthree.example"), "{text}");
    e.stop().await;
}
