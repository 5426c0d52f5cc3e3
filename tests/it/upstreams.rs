//! Upstreams that misbehave: slow, silent, answering with the wrong ID or
//! question, sending garbage or half a message. Whatever they do, the
//! client hears within `timeout_ms`: the right answer when one arrives in
//! time (anything that does not answer the query is ignored, RFC 5452
//! 9.1), SERVFAIL with EDE 22 otherwise; and the server keeps serving.
//! (A dead upstream and a silent one: `forwarding.rs`.)

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{
    Embargo, SCRIPTED_ANSWER, ScriptedUpstream, Step, config, ede, query, tcp, udp,
};

/// `timeout_ms` in the harness config.
const TIMEOUT: Duration = Duration::from_millis(1000);

async fn start(script: &[Step], tcp_only: bool) -> (ScriptedUpstream, Embargo) {
    let up = ScriptedUpstream::start(script).await;
    let mut cfg = config(up.addr, "");
    if tcp_only {
        cfg = cfg.replace(
            &format!("servers = [\"{}\"]", up.addr),
            &format!("servers = [\"tcp://{}\"]", up.addr),
        );
    }
    let e = Embargo::start(&cfg, &[]).await;
    (up, e)
}

fn is_scripted_answer(r: &Message) -> bool {
    r.metadata.response_code == ResponseCode::NoError
        && r.answers.len() == 1
        && r.answers[0].data == RData::A(SCRIPTED_ANSWER.into())
}

/// SERVFAIL with EDE 22, between `at_least` and the timeout (plus slack).
fn assert_servfail_in_time(r: &Message, took: Duration, at_least: Duration) {
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        ede(r).map(|(c, _)| c),
        Some(22),
        "EDE 22 No Reachable Authority"
    );
    assert!(
        took >= at_least && took < TIMEOUT + Duration::from_millis(500),
        "{took:?}"
    );
}

/// The server still answers: a blocked name locally, a forwarded one
/// through whatever the upstream does.
async fn still_serving(e: &Embargo) {
    let r = udp(e.addr, &query("seized.example.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_answers_before_the_right_one_are_ignored() {
    // Every kind of wrong reply, then the right one: over UDP each is
    // ignored and the client gets the right answer.
    for bad in [Step::WrongId, Step::WrongQuestion, Step::Garbage, Step::Cut] {
        let (up, e) = start(&[bad, bad, Step::Answer], false).await;
        let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
        assert!(is_scripted_answer(&r), "{bad:?}: {r:?}");
        assert_eq!(r.queries[0].name().to_string(), "www.up.test.");
        assert_eq!(up.received(), 1, "{bad:?}: asked once");
        still_serving(&e).await;
        e.stop().await;
    }
    // All of them in one exchange.
    let script = [
        Step::Garbage,
        Step::WrongId,
        Step::Cut,
        Step::WrongQuestion,
        Step::Wait(Duration::from_millis(100)),
        Step::Answer,
    ];
    let (_up, e) = start(&script, false).await;
    let r = tcp(e.addr, &query("mail.up.test.", RecordType::A, false)).await;
    assert!(is_scripted_answer(&r), "{r:?}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_bad_answers_give_servfail_at_the_timeout() {
    let script = [Step::WrongId, Step::WrongQuestion, Step::Garbage, Step::Cut];
    let (up, e) = start(&script, false).await;
    let started = Instant::now();
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
    // Nothing answered the query, so embargo waited the whole timeout.
    assert_servfail_in_time(&r, started.elapsed(), TIMEOUT - Duration::from_millis(50));
    // Unanswered halfway through its attempt, a UDP query is sent once more
    // (a lost datagram), never more.
    assert_eq!(up.received(), 2);
    still_serving(&e).await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_is_waited_for_until_the_timeout() {
    // Within the timeout: the answer.
    let (_up, e) = start(
        &[Step::Wait(Duration::from_millis(400)), Step::Answer],
        false,
    )
    .await;
    let started = Instant::now();
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, false)).await;
    assert!(is_scripted_answer(&r), "{r:?}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    e.stop().await;

    // Beyond it: SERVFAIL at the timeout; the late answer harms nothing.
    let (_up, e) = start(
        &[Step::Wait(Duration::from_millis(1500)), Step::Answer],
        false,
    )
    .await;
    let started = Instant::now();
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
    assert_servfail_in_time(&r, started.elapsed(), TIMEOUT - Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(700)).await;
    still_serving(&e).await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_upstream_that_misbehaves_gives_servfail_in_time() {
    // A wrong question under our ID on a kept connection (issue 21): that
    // connection takes no more queries, the query is asked once more on a
    // new one, then SERVFAIL at once.
    let (up, e) = start(&[Step::WrongQuestion], true).await;
    let started = Instant::now();
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
    assert_servfail_in_time(&r, started.elapsed(), Duration::ZERO);
    assert!(started.elapsed() < TIMEOUT, "not waiting for more");
    assert_eq!(up.received(), 2, "asked once more, on a new connection");
    still_serving(&e).await;
    e.stop().await;
    // Garbage, or an answer under an ID asked nothing on the connection:
    // an answer to no query in flight there, ignored (RFC 5452 9.1, as
    // over UDP and DoT), the right one may still come: SERVFAIL at the
    // timeout.
    for bad in [Step::Garbage, Step::WrongId] {
        let (up, e) = start(&[bad], true).await;
        let started = Instant::now();
        let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
        assert_servfail_in_time(&r, started.elapsed(), TIMEOUT - Duration::from_millis(50));
        assert_eq!(up.received(), 1, "{bad:?}");
        still_serving(&e).await;
        e.stop().await;
    }
    // Half a message, then silence; or nothing at all: SERVFAIL at the timeout.
    for script in [&[Step::Cut][..], &[Step::Wait(Duration::from_secs(30))][..]] {
        let (_up, e) = start(script, true).await;
        let started = Instant::now();
        let r = tcp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
        assert_servfail_in_time(&r, started.elapsed(), TIMEOUT - Duration::from_millis(50));
        still_serving(&e).await;
        e.stop().await;
    }
    // A slow but correct TCP upstream is waited for.
    let (_up, e) = start(
        &[Step::Wait(Duration::from_millis(300)), Step::Answer],
        true,
    )
    .await;
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, false)).await;
    assert!(is_scripted_answer(&r), "{r:?}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_forwards_answers_the_excess_with_servfail_at_once() {
    // Two forwards may wait; the silent upstream keeps them waiting.
    let up = ScriptedUpstream::start(&[Step::Wait(Duration::from_secs(30))]).await;
    let cfg = crate::harness::with_server(&config(up.addr, ""), "max_forwards = 2");
    let e = Embargo::start(&cfg, &[]).await;
    let addr = e.addr;
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            tokio::spawn(async move {
                let name = format!("w{i}.up.test.");
                udp(addr, &query(&name, RecordType::A, false)).await
            })
        })
        .collect();
    // Both are with the upstream before the third is sent.
    let deadline = Instant::now() + Duration::from_secs(2);
    while up.received() < 2 {
        assert!(Instant::now() < deadline, "forwards did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let r = udp(e.addr, &query("third.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let (code, text) = ede(&r).expect("EDE");
    assert_eq!(code, 22);
    assert_eq!(text, "too many queries in flight");
    assert_eq!(up.received(), 2, "the third never went upstream");
    for w in waiting {
        let r = w.await.expect("task");
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }
    still_serving(&e).await;
    e.stop().await;
}
