//! Who may ask and how fast (issue 10): clients outside `[access] allow`
//! get REFUSED with EDE 18 (or nothing), whatever they ask and over either
//! transport, and their queries never reach the upstream; the rate limiter
//! answers a burst, then slips every `slip`th limited answer with TC=1 and
//! drops the rest, never limits exempt clients or TCP.
//!
//! Outside clients are real addresses on the loopback device of a network
//! namespace the test creates for itself (see `netns`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, SEIZED_LIST, Upstream, config, ede, query, tcp_many, udp, udp_raw};
use crate::netns::{self, NEIGHBOUR, OUTSIDER, ip, tcp_from, udp_from};

const WAIT: Duration = Duration::from_secs(3);
/// How long "no answer" is waited for.
const SILENCE: Duration = Duration::from_millis(600);

fn decode(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).expect("reply decodes")
}

/// Asserts that `reply` refuses `q` as an outsider is refused: REFUSED, the
/// question echoed, no records, EDE 18 exactly when the query had EDNS.
fn assert_refused(reply: &Message, q: &Message, edns: bool, what: &str) {
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::Refused,
        "{what}"
    );
    assert_eq!(reply.metadata.id, q.metadata.id, "{what}");
    assert_eq!(reply.queries, q.queries, "{what}: question echoed");
    assert!(reply.metadata.recursion_available, "{what}: RA");
    assert!(
        reply.answers.is_empty() && reply.authorities.is_empty(),
        "{what}: nothing but the refusal"
    );
    if edns {
        assert_eq!(ede(reply), Some((18, String::new())), "{what}: EDE 18");
    } else {
        assert!(reply.edns.is_none(), "{what}: no OPT without EDNS");
    }
}

#[test]
fn outsiders_are_refused_with_ede_18_over_udp_and_tcp() {
    netns::run(
        concat!(
            module_path!(),
            "::outsiders_are_refused_with_ede_18_over_udp_and_tcp"
        ),
        || async {
            let up = Upstream::start().await;
            let e = Embargo::start(&config(up.addr, ""), &[]).await;
            // An insider (loopback, in the default allow) fills the cache...
            let cached = query("www.up.test.", RecordType::A, false);
            assert_eq!(
                udp(e.addr, &cached).await.metadata.response_code,
                ResponseCode::NoError
            );
            assert_eq!(up.count("www.up.test"), 1);
            let outsider = ip(OUTSIDER);
            // ...and an outsider gets nothing of it, nor of a block, nor a forward.
            for name in ["www.up.test.", "www.seized.example.", "txt.up.test."] {
                for edns in [false, true] {
                    let q = query(name, RecordType::A, edns);
                    let bytes = q.to_vec().expect("encode");
                    let what = format!("{name} edns={edns}");
                    let r = udp_from(outsider, e.addr, &bytes, WAIT)
                        .await
                        .unwrap_or_else(|| panic!("{what}: a UDP answer"));
                    assert_refused(&decode(&r), &q, edns, &format!("udp {what}"));
                    let r = tcp_from(outsider, e.addr, &bytes, WAIT)
                        .await
                        .unwrap_or_else(|| panic!("{what}: a TCP answer"));
                    assert_refused(&decode(&r), &q, edns, &format!("tcp {what}"));
                }
            }
            // The forward that would have been: never sent upstream.
            assert_eq!(up.count("txt.up.test"), 0, "{:?}", up.seen());
            assert_eq!(up.count("www.up.test"), 1);
            // The insider is still served in full.
            let r = udp(e.addr, &query("www.seized.example.", RecordType::A, true)).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
            let r = udp(e.addr, &query("txt.up.test.", RecordType::TXT, false)).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert_eq!(up.count("txt.up.test"), 1);
            e.stop().await;
        },
    );
}

#[test]
fn drop_action_answers_outsiders_nothing() {
    netns::run(
        concat!(module_path!(), "::drop_action_answers_outsiders_nothing"),
        || async {
            let up = Upstream::start().await;
            let cfg = config(up.addr, "[access]\naction = \"drop\"\n");
            let e = Embargo::start(&cfg, &[]).await;
            let outsider = ip(OUTSIDER);
            for name in ["www.seized.example.", "www.up.test."] {
                let q = query(name, RecordType::A, true).to_vec().expect("encode");
                assert_eq!(
                    udp_from(outsider, e.addr, &q, SILENCE).await,
                    None,
                    "{name}"
                );
                // Over TCP the connection is closed at once, not left to idle.
                let started = Instant::now();
                assert_eq!(
                    tcp_from(outsider, e.addr, &q, SILENCE).await,
                    None,
                    "{name}"
                );
                assert!(started.elapsed() < SILENCE / 2, "closed, not ignored");
            }
            assert_eq!(up.count("www.up.test"), 0);
            // Insiders are answered as ever.
            let r = udp(e.addr, &query("www.seized.example.", RecordType::A, true)).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
            e.stop().await;
        },
    );
}

#[test]
fn deny_wins_over_allow() {
    netns::run(
        concat!(module_path!(), "::deny_wins_over_allow"),
        || async {
            let up = Upstream::start().await;
            let cfg = config(
                up.addr,
                &format!(
                    "[access]\nallow = [\"127.0.0.0/8\", \"198.51.100.0/24\"]\ndeny = [\"{OUTSIDER}\"]\n"
                ),
            );
            let e = Embargo::start(&cfg, &[]).await;
            let q = query("www.seized.example.", RecordType::A, true);
            let bytes = q.to_vec().expect("encode");
            // The neighbour is in allow: answered like any insider.
            let r = udp_from(ip(NEIGHBOUR), e.addr, &bytes, WAIT)
                .await
                .expect("answer");
            assert_eq!(decode(&r).metadata.response_code, ResponseCode::NXDomain);
            let r = tcp_from(ip(NEIGHBOUR), e.addr, &bytes, WAIT)
                .await
                .expect("answer");
            assert_eq!(decode(&r).metadata.response_code, ResponseCode::NXDomain);
            // The outsider is in allow too, but also in deny.
            let r = udp_from(ip(OUTSIDER), e.addr, &bytes, WAIT)
                .await
                .expect("answer");
            assert_refused(&decode(&r), &q, true, "denied over udp");
            let r = tcp_from(ip(OUTSIDER), e.addr, &bytes, WAIT)
                .await
                .expect("answer");
            assert_refused(&decode(&r), &q, true, "denied over tcp");
            e.stop().await;
        },
    );
}

/// The binary logs refused clients once per /24, with a count, however
/// many queries they send.
#[test]
fn refused_clients_are_logged_once_per_network() {
    netns::run(
        concat!(
            module_path!(),
            "::refused_clients_are_logged_once_per_network"
        ),
        || async {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("seized.txt"), SEIZED_LIST).expect("list");
            let path = dir.path().join("embargo.toml");
            // One UDP worker: each serving thread keeps its own count (issue
            // 16 (5)), and this test counts the lines of one.
            let text = crate::harness::with_server(
                &config("127.0.0.1:9".parse().expect("addr"), ""),
                "workers = 1",
            );
            std::fs::write(&path, text).expect("config");
            let mut child = Command::new(env!("CARGO_BIN_EXE_embargo"))
                .args(["run", "-c", path.to_str().expect("utf8")])
                .env("RUST_LOG", "info")
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            let stderr = child.stderr.take().expect("stderr");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut addr: Option<SocketAddr> = None;
            while addr.is_none() && Instant::now() < deadline {
                if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
                    && line.contains("listening on udp")
                {
                    addr = line
                        .split("addr=")
                        .nth(1)
                        .and_then(|s| s.split_whitespace().next())
                        .and_then(|s| s.parse().ok());
                }
            }
            let addr = addr.expect("a listening line");
            let q = query("www.seized.example.", RecordType::A, false)
                .to_vec()
                .expect("encode");
            for from in [OUTSIDER, OUTSIDER, OUTSIDER, NEIGHBOUR, NEIGHBOUR] {
                assert!(udp_from(ip(from), addr, &q, WAIT).await.is_some());
            }
            assert!(udp_raw(addr, &q, WAIT).await.is_some(), "loopback answered");
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(child.wait().expect("wait").success());
            // The reader ends at the child's end of stderr.
            let lines: Vec<String> = rx.iter().collect();
            let refused: Vec<&String> = lines
                .iter()
                .filter(|l| l.contains("embargo::access"))
                .collect();
            assert_eq!(refused.len(), 1, "{lines:#?}");
            for field in [
                "WARN",
                "client=198.51.100.0/24",
                "queries=1",
                "action=\"refuse\"",
            ] {
                assert!(refused[0].contains(field), "{field} in {}", refused[0]);
            }
        },
    );
}

/// A rate-limited config for `upstream` with `rate_limit` settings.
fn limited(upstream: SocketAddr, rate_limit: &str) -> String {
    config(upstream, &format!("[rate_limit]\n{rate_limit}\n"))
}

/// What came back for a burst over UDP: (full answers, TC=1 answers), and
/// how long the sending took (the limiter refills meanwhile).
async fn burst_timed(
    server: SocketAddr,
    names: &[String],
) -> (Vec<Message>, Vec<Message>, Duration) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut asked = std::collections::HashMap::new();
    let started = Instant::now();
    for (i, n) in names.iter().enumerate() {
        let mut q = query(n, RecordType::A, true);
        // IDs distinct within the burst: 60 random ones collide 2.7 % of
        // the time, and the answers would be matched to the wrong question.
        q.metadata.id = u16::try_from(i).expect("a small burst");
        asked.insert(q.metadata.id, q.queries.clone());
        sock.send_to(&q.to_vec().expect("encode"), server)
            .await
            .expect("send");
    }
    let sending = started.elapsed();
    let (mut full, mut truncated) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 65535];
    // Forwards may take a while on a loaded machine: wait for a long quiet.
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(1500), sock.recv_from(&mut buf)).await
    {
        let m = decode(&buf[..n]);
        assert_eq!(
            asked.get(&m.metadata.id),
            Some(&m.queries),
            "question echoed"
        );
        if m.metadata.truncation {
            truncated.push(m);
        } else {
            full.push(m);
        }
    }
    (full, truncated, sending)
}

/// [`burst_timed`] without the time.
async fn burst(server: SocketAddr, names: &[String]) -> (Vec<Message>, Vec<Message>) {
    let (full, truncated, _) = burst_timed(server, names).await;
    (full, truncated)
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_answers_a_burst_then_slips_every_second_limited_query() {
    let up = Upstream::start().await;
    let cfg = limited(
        up.addr,
        "responses_per_second = 10\nslip = 2\nwindow = 15\nexempt = []",
    );
    let e = Embargo::start(&cfg, &[]).await;
    // Distinct names the upstream does not have: each answered one is a forward.
    let names: Vec<String> = (0..60).map(|i| format!("n{i}.up.test.")).collect();
    let (full, truncated, sending) = burst_timed(e.addr, &names).await;
    // One second's worth, plus what refilled while the burst was sent.
    let refilled = (sending.as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        (10..=10 + refilled).contains(&full.len()),
        "{} answered, {sending:?} sending",
        full.len()
    );
    for m in &full {
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    let limited = names.len() - full.len();
    assert_eq!(
        truncated.len(),
        limited / 2,
        "every second limited answer slips"
    );
    for m in &truncated {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
        assert!(m.edns.is_some(), "OPT kept, as in any truncated answer");
    }
    // Limited queries did no work upstream. Distinct names: on a loaded
    // machine a forward may be sent once more before its answer arrives.
    let forwarded = up
        .seen()
        .iter()
        .filter(|n| n.starts_with('n') && n.ends_with(".up.test"))
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert_eq!(forwarded, full.len(), "{:?}", up.seen());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exempt_clients_and_tcp_are_not_limited() {
    let up = Upstream::start().await;
    let names: Vec<String> = (0..30).map(|_| "www.seized.example.".to_string()).collect();
    // The default exempt list holds loopback.
    let e = Embargo::start(&limited(up.addr, "responses_per_second = 1"), &[]).await;
    let (full, truncated) = burst(e.addr, &names).await;
    assert_eq!((full.len(), truncated.len()), (30, 0));
    e.stop().await;

    // Without the exemption loopback is limited over UDP, never over TCP.
    let e = Embargo::start(
        &limited(up.addr, "responses_per_second = 1\nexempt = []"),
        &[],
    )
    .await;
    let (full, truncated, sending) = burst_timed(e.addr, &names).await;
    let refilled = sending.as_secs_f64().ceil() as usize;
    assert!((1..=1 + refilled).contains(&full.len()), "{}", full.len());
    assert_eq!(truncated.len(), (names.len() - full.len()) / 2);
    let msgs: Vec<Message> = (0..30)
        .map(|_| query("www.seized.example.", RecordType::A, true))
        .collect();
    let replies = tcp_many(e.addr, &msgs).await;
    assert_eq!(replies.len(), 30);
    for r in &replies {
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(!r.metadata.truncation);
    }
    e.stop().await;
}

fn embargo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_embargo"))
        .args(args)
        .output()
        .expect("run embargo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_client_says_whether_the_client_would_be_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("seized.txt"), SEIZED_LIST).expect("list");
    let path = dir.path().join("embargo.toml");
    let cfg = config(
        "127.0.0.1:9".parse().expect("addr"),
        "[access]\nallow = [\"10.0.0.0/8\", \"127.0.0.0/8\"]\ndeny = [\"10.9.0.0/16\"]\n[rate_limit]\nresponses_per_second = 50\n",
    );
    std::fs::write(&path, cfg).expect("config");
    let c = path.to_str().expect("utf8");
    let check = |client: &str| {
        let (code, out, err) = embargo(&[
            "check",
            "-c",
            c,
            "--client",
            client,
            "www.seized.example",
            "example.com",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    let out = check("203.0.113.7");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "client 203.0.113.7: refused (not in [access] allow)",
            "www.seized.example\trefused\tclient not allowed",
            "example.com\trefused\tclient not allowed",
        ]
    );
    let out = check("10.9.1.1");
    assert!(
        out.starts_with("client 10.9.1.1: refused (denied by 10.9.0.0/16)\n"),
        "{out}"
    );
    assert!(
        !out.contains("\tblocked") && !out.contains("\tallowed"),
        "no name answered: {out}"
    );
    let out = check("10.1.2.3");
    assert!(
        out.starts_with("client 10.1.2.3: allowed by 10.0.0.0/8; rate limited over UDP to 50 answers a second per /24 (IPv4) or /56 (IPv6)\nwww.seized.example\tblocked\tlist=seized"),
        "{out}"
    );
    assert!(out.contains("example.com\tallowed"), "{out}");
    let out = check("127.0.0.1");
    assert!(
        out.starts_with(
            "client 127.0.0.1: allowed by 127.0.0.0/8; not rate limited (exempt by 127.0.0.0/8)\n"
        ),
        "{out}"
    );
}

#[test]
fn validate_warns_about_a_public_allow_without_a_rate_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("seized.txt"), SEIZED_LIST).expect("list");
    let path = dir.path().join("embargo.toml");
    let text = config(
        "127.0.0.1:9".parse().expect("addr"),
        "[access]\nallow = [\"0.0.0.0/0\"]\n",
    );
    std::fs::write(&path, &text).expect("config");
    let (code, out, err) = embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 0, "a warning is not fatal: {out}{err}");
    let line = text
        .lines()
        .position(|l| l.starts_with("allow = [\"0.0.0.0/0\"]"))
        .expect("allow line")
        + 1;
    let want = format!(
        "{}:{line}:9: warning: access.allow admits public addresses (0.0.0.0/0) and rate_limit.responses_per_second = 0: anyone there can use this server to amplify",
        path.display()
    );
    assert!(out.lines().any(|l| l == want), "want {want}\nin {out}");
    // With a rate limit the same allow is no longer warned about.
    std::fs::write(
        &path,
        text.replace(
            "[access]",
            "[rate_limit]\nresponses_per_second = 20\n[access]",
        ),
    )
    .expect("config");
    let (_, out, _) = embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert!(!out.contains("warning"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_and_rate_limit_apply_on_reload() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let path = e.dir().join("embargo.toml");
    let q = query("www.seized.example.", RecordType::A, true);
    assert_eq!(
        udp(e.addr, &q).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    // A rate limit without loopback's exemption: the watcher reloads it.
    // (Written in place, truncate then write: the watcher may see two
    // changes, and the first reload may read an empty file.)
    std::fs::write(
        &path,
        config(
            up.addr,
            "[rate_limit]\nresponses_per_second = 1\nexempt = []\n",
        ),
    )
    .expect("config");
    // Issue 21: wait for the server to say the reload is done, then look.
    // (A burst every 1.5 s until the limit showed, with a 30 s deadline,
    // guessed at what an idle machine does.)
    e.until_reloaded("the rate limit is in force", async || {
        e.handler.state().load().limiter.is_some()
    })
    .await;
    let names: Vec<String> = (0..10).map(|_| "www.seized.example.".to_string()).collect();
    let (full, truncated, sending) = burst_timed(e.addr, &names).await;
    // One a second, plus what refilled while a loaded machine sent them.
    let refilled = sending.as_secs_f64().ceil() as usize;
    let limited = names.len() - full.len();
    assert!(
        full.len() <= 2 + refilled && truncated.len() >= limited / 2,
        "{} answered in full, {} truncated, {sending:?} sending",
        full.len(),
        truncated.len()
    );
    // Loopback taken out of allow: refused from the next reload on.
    std::fs::write(
        &path,
        config(up.addr, "[access]\nallow = [\"10.0.0.0/8\"]\n"),
    )
    .expect("config");
    e.until_reloaded("loopback is refused", async || {
        e.handler
            .state()
            .load()
            .access
            .refuses("127.0.0.1".parse().expect("ip"))
            .is_some()
    })
    .await;
    let reply = udp_raw(e.addr, &q.to_vec().expect("encode"), Duration::from_secs(3))
        .await
        .expect("an answer: no rate limit any more");
    assert_refused(&decode(&reply), &q, true, "after reload");
    e.stop().await;
}
