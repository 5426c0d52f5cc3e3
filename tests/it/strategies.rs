//! Several upstreams: which one gets a query (failover, fastest,
//! round_robin), a failing one skipped and probed again after its backoff,
//! every one tried when all are down, and identical questions in flight at
//! once sent upstream once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{
    BlackHole, Embargo, Lossy, Outage, Truncating, Upstream, config, query, tcp, udp,
};

/// The harness config with `servers` (as written) and `[upstream]` extras.
fn config_with(servers: &[String], upstream_extra: &str) -> String {
    let any: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    config(any, "")
        .replace(
            "servers = [\"127.0.0.1:9\"]",
            &format!("servers = [{}]", list.join(", ")),
        )
        .replace("timeout_ms = 1000", upstream_extra)
}

/// How many of the names `upstream` was asked start with `prefix`.
fn asked(upstream: &Upstream, prefix: &str) -> usize {
    upstream
        .seen()
        .iter()
        .filter(|n| n.starts_with(prefix))
        .count()
}

/// Asks `name` and returns the rcode and how long it took.
async fn ask(e: &Embargo, name: &str) -> (ResponseCode, Duration) {
    let started = Instant::now();
    let r = udp(e.addr, &query(name, RecordType::A, false)).await;
    (r.metadata.response_code, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_goes_in_order_and_skips_a_failing_server_until_its_backoff_ends() {
    let hole = BlackHole::start().await;
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let servers = [
        hole.addr.to_string(),
        a.addr.to_string(),
        b.addr.to_string(),
    ];
    let e = Embargo::start(&config_with(&servers, "timeout_ms = 900"), &[]).await;

    // The first server never answers: each query waits out its share of the
    // deadline there (900 ms / 3), then the second answers.
    for i in 0..3 {
        let (rcode, took) = ask(&e, &format!("f{i}.up.test.")).await;
        assert_eq!(rcode, ResponseCode::NXDomain, "answered by the second");
        assert!(took >= Duration::from_millis(250), "{took:?}");
    }
    assert_eq!(hole.count(), 3);
    // Three failures in a row: skipped now, so answers come at once.
    for i in 3..8 {
        let (rcode, took) = ask(&e, &format!("f{i}.up.test.")).await;
        assert_eq!(rcode, ResponseCode::NXDomain);
        assert!(took < Duration::from_millis(200), "not skipped: {took:?}");
    }
    assert_eq!(hole.count(), 3, "a down server gets no queries");
    assert_eq!(
        asked(&a, "f"),
        8,
        "the second in config order took them all"
    );
    assert_eq!(asked(&b, "f"), 0, "the third was never needed");

    // After the 1 s backoff the next query probes it, fails, and the
    // backoff doubles: the query after that skips it again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (rcode, took) = ask(&e, "f8.up.test.").await;
    assert_eq!(rcode, ResponseCode::NXDomain);
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert_eq!(hole.count(), 4, "probed with a real query");
    let (_, took) = ask(&e, "f9.up.test.").await;
    assert!(took < Duration::from_millis(200), "{took:?}");
    assert_eq!(hole.count(), 4);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ask(&e, "f10.up.test.").await;
    assert_eq!(hole.count(), 4, "the second backoff is 2 s");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_server_is_tried_when_all_are_down() {
    let (h1, h2) = (BlackHole::start().await, BlackHole::start().await);
    let servers = [h1.addr.to_string(), h2.addr.to_string()];
    let e = Embargo::start(&config_with(&servers, "timeout_ms = 400"), &[]).await;
    for i in 0..3 {
        let (rcode, _) = ask(&e, &format!("d{i}.up.test.")).await;
        assert_eq!(rcode, ResponseCode::ServFail);
    }
    assert_eq!((h1.count(), h2.count()), (3, 3));
    // Both are down now; a SERVFAIL still comes only after asking both.
    let (rcode, took) = ask(&e, "d3.up.test.").await;
    assert_eq!(rcode, ResponseCode::ServFail);
    assert_eq!((h1.count(), h2.count()), (4, 4), "both asked anyway");
    assert!(took >= Duration::from_millis(350), "{took:?}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_takes_each_server_in_turn() {
    let ups = [
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    ];
    let servers: Vec<String> = ups.iter().map(|u| u.addr.to_string()).collect();
    let extra = "timeout_ms = 1000\nstrategy = \"round_robin\"";
    let e = Embargo::start(&config_with(&servers, extra), &[]).await;
    for i in 0..30 {
        let (rcode, _) = ask(&e, &format!("rr{i}.up.test.")).await;
        assert_eq!(rcode, ResponseCode::NXDomain);
    }
    let counts: Vec<usize> = ups.iter().map(|u| asked(u, "rr")).collect();
    assert_eq!(counts, [10, 10, 10]);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fastest_sends_most_queries_to_the_quickest_server() {
    let slow = Upstream::start_slow(Duration::from_millis(100)).await;
    let fast = Upstream::start().await;
    let servers = [slow.addr.to_string(), fast.addr.to_string()];
    let extra = "timeout_ms = 1000\nstrategy = \"fastest\"";
    let e = Embargo::start(&config_with(&servers, extra), &[]).await;
    for i in 0..64 {
        let (rcode, _) = ask(&e, &format!("q{i}.up.test.")).await;
        assert_eq!(rcode, ResponseCode::NXDomain);
    }
    let (s, f) = (asked(&slow, "q"), asked(&fast, "q"));
    assert_eq!(s + f, 64);
    assert!(s >= 1, "the slow one was measured");
    assert!(f >= 50, "the fast one took most: slow {s}, fast {f}");

    // Under failover the same pair sends everything to the first, slow or not.
    let e2 = Embargo::start(
        &config_with(&servers, "timeout_ms = 1000\nstrategy = \"failover\""),
        &[],
    )
    .await;
    for i in 0..5 {
        ask(&e2, &format!("o{i}.up.test.")).await;
    }
    assert_eq!((asked(&slow, "o"), asked(&fast, "o")), (5, 0));
    e.stop().await;
    e2.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_questions_in_flight_go_upstream_once() {
    let up = Upstream::start_slow(Duration::from_millis(300)).await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let mut clients = Vec::new();
    for i in 0..50 {
        // Any case: the name is the same question.
        let name = if i % 2 == 0 {
            "www.up.test."
        } else {
            "WWW.Up.Test."
        };
        let msg = query(name, RecordType::A, false);
        let addr = e.addr;
        clients.push(tokio::spawn(async move {
            let r = udp(addr, &msg).await; // checks the reply carries msg's ID
            (msg, r)
        }));
    }
    // Another type of the same name is another question.
    let aaaa = udp(e.addr, &query("www.up.test.", RecordType::AAAA, false)).await;
    assert_eq!(aaaa.answers.len(), 1);
    for c in clients {
        let (msg, r) = c.await.expect("client");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            r.queries[0].name().to_string(),
            msg.queries[0].name().to_string(),
            "each client gets its own question back"
        );
    }
    assert_eq!(
        up.count("www.up.test"),
        2,
        "one A and one AAAA query upstream"
    );
    e.stop().await;
}

/// Issue 16 (13): the UDP client's forward (sent from the worker, answered
/// by the upstream socket's reader) and the TCP client's (awaited by a
/// task) go through one state machine: both send an unanswered query again
/// halfway through its attempt.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_lost_datagram_is_sent_again_on_both_forward_paths() {
    let up = Upstream::start().await;
    let lossy = Lossy::start(up.addr).await;
    let e = Embargo::start(
        &config_with(&[lossy.addr.to_string()], "timeout_ms = 1000"),
        &[],
    )
    .await;
    // The first datagram is lost; halfway through the attempt it goes again.
    for (name, over_tcp) in [("www.up.test.", false), ("mail.up.test.", true)] {
        let started = Instant::now();
        let (rcode, _) = ask_over(&e, name, over_tcp).await;
        let took = started.elapsed();
        assert_eq!(
            rcode,
            ResponseCode::NoError,
            "{name}: answered, not SERVFAIL"
        );
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_millis(900),
            "{name}: {took:?}"
        );
        assert_eq!(up.count(name.trim_end_matches('.')), 1);
    }
    e.stop().await;
}

/// Asks `name` over UDP or TCP; the rcode and the number of answers.
async fn ask_over(e: &Embargo, name: &str, over_tcp: bool) -> (ResponseCode, usize) {
    let msg = query(name, RecordType::A, false);
    let r = if over_tcp {
        tcp(e.addr, &msg).await
    } else {
        udp(e.addr, &msg).await
    };
    (r.metadata.response_code, r.answers.len())
}

/// Issue 16 (13): a truncated answer is retried over TCP with a share of
/// the deadline, not all of it, and when that fails the next server is
/// asked: on both forward paths.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_truncated_answer_whose_tcp_retry_fails_fails_over_on_both_paths() {
    let trunc = Truncating::start().await;
    let good = Upstream::start().await;
    let servers = [trunc.addr.to_string(), good.addr.to_string()];
    let e = Embargo::start(&config_with(&servers, "timeout_ms = 1000"), &[]).await;
    for (name, over_tcp) in [("www.up.test.", false), ("mail.up.test.", true)] {
        let started = Instant::now();
        let (rcode, answers) = ask_over(&e, name, over_tcp).await;
        let took = started.elapsed();
        assert_eq!(
            rcode,
            ResponseCode::NoError,
            "{name}: the second server's answer"
        );
        assert_eq!(answers, 1, "{name}");
        // The TCP retry waited half the deadline (two servers), then the
        // second server answered at once.
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(900),
            "{name}: {took:?}"
        );
        assert_eq!(good.count(name.trim_end_matches('.')), 1);
    }
    assert_eq!(trunc.received(), (2, 2), "each asked over UDP, then TCP");
    // A truncated answer credits nothing until the whole answer is in: the
    // third failed retry takes the server out, and the next query goes
    // straight to the second.
    let (rcode, _) = ask_over(&e, "ns.up.test.", false).await;
    assert_eq!(rcode, ResponseCode::NoError);
    let started = Instant::now();
    let (rcode, _) = ask_over(&e, "txt.up.test.", false).await;
    assert_eq!(rcode, ResponseCode::NoError, "TXT asked as A: NODATA");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(trunc.received(), (3, 3), "skipped once down");
    e.stop().await;
}

/// Issue 16 (8): an upstream that answers SERVFAIL at once is a failure,
/// not a fast answer: the next server is asked within the deadline, and
/// neither strategy keeps sending queries to the broken one first.
#[tokio::test(flavor = "multi_thread")]
async fn r16_an_upstream_answering_servfail_is_failed_over_and_not_preferred() {
    for strategy in ["failover", "fastest"] {
        let (broken, good) = (Upstream::start().await, Upstream::start().await);
        broken.set_outage(Outage::ServFail);
        let servers = [broken.addr.to_string(), good.addr.to_string()];
        let extra = format!("timeout_ms = 1000\nstrategy = \"{strategy}\"");
        let e = Embargo::start(&config_with(&servers, &extra), &[]).await;
        for i in 0..20 {
            let (rcode, _) = ask(&e, &format!("s{i}.up.test.")).await;
            assert_eq!(rcode, ResponseCode::NXDomain, "{strategy}: query {i}");
        }
        let (b, g) = (asked(&broken, "s"), asked(&good, "s"));
        assert_eq!(g, 20, "{strategy}: the good server answered every query");
        // Three failures in a row take it out for a second.
        assert!(
            b <= 4,
            "{strategy}: the broken server was asked first {b} times"
        );
        e.stop().await;
    }
}

/// Issue 16 (8): when every upstream fails softly the client gets SERVFAIL:
/// an upstream's SERVFAIL as it came (its EDE may say why), and for
/// REFUSED our own, with EDE 22: REFUSED is the upstream refusing us, and
/// passed on it would tell the client that we refuse it.
#[tokio::test(flavor = "multi_thread")]
async fn r16_when_every_upstream_fails_softly_the_client_gets_servfail() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    a.set_outage(Outage::Refused);
    b.set_outage(Outage::Refused);
    let servers = [a.addr.to_string(), b.addr.to_string()];
    let e = Embargo::start(&config_with(&servers, "timeout_ms = 1000"), &[]).await;
    let r = udp(e.addr, &query("r.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        crate::harness::ede(&r),
        Some((22, "upstream refused the query".into()))
    );
    assert_eq!((asked(&a, "r"), asked(&b, "r")), (1, 1), "both asked");
    b.set_outage(Outage::ServFail);
    let r = tcp(e.addr, &query("s.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!((asked(&a, "s"), asked(&b, "s")), (1, 1), "both asked");
    e.stop().await;
}
