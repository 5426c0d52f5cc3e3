//! TCP clients cannot hold more than their share (RFC 7766): the
//! connection over the limit, idle connections, messages that never finish
//! arriving, deep pipelining, zero-length and garbage frames.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{
    Embargo, SCRIPTED_ANSWER, ScriptedUpstream, Step, Upstream, config, query, with_server,
};

fn frame(msg: &Message) -> Vec<u8> {
    let bytes = msg.to_vec().expect("encode");
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads one framed reply within 3 s.
async fn read_reply(s: &mut TcpStream) -> Message {
    let read = async {
        let len = s.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(3), read)
        .await
        .expect("a reply in time")
        .expect("a whole reply");
    Message::from_vec(&buf).expect("reply decodes")
}

/// Asks `name` A on an open connection.
async fn ask(s: &mut TcpStream, name: &str) -> Message {
    let q = query(name, RecordType::A, false);
    s.write_all(&frame(&q)).await.expect("write");
    let r = read_reply(s).await;
    assert_eq!(r.metadata.id, q.metadata.id);
    r
}

/// How long until the server closes `s` (EOF or reset), if within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    closed_since(s, Instant::now(), limit).await
}

/// How long from `started` until the server closes `s`, if within `limit`
/// of it. Timed from before what starts the server's timer (the connect,
/// the query, the write), the lower bound holds on a loaded machine too:
/// timed from after it, a test descheduled in between saw the connection
/// close "early" (112 ms of a 300 ms idle timeout).
async fn closed_since(s: &mut TcpStream, started: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            s.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_over_the_limit_closes_the_longest_idle_one() {
    let up = Upstream::start().await;
    let cfg = with_server(&config(up.addr, ""), "tcp_max_connections = 2");
    let e = Embargo::start(&cfg, &[]).await;
    let mut first = connect(e.addr).await;
    ask(&mut first, "seized.example.").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut second = connect(e.addr).await;
    ask(&mut second, "seized.example.").await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The third is served; the first, idle longest, makes room.
    let mut third = connect(e.addr).await;
    let r = ask(&mut third, "seized.example.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        closed_within(&mut first, Duration::from_secs(1))
            .await
            .is_some(),
        "the longest-idle connection is closed"
    );
    ask(&mut second, "seized.example.").await;
    ask(&mut third, "www.up.test.").await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_connection_is_closed_at_once_when_every_one_is_busy() {
    let up = ScriptedUpstream::start(&[Step::Wait(Duration::from_millis(800)), Step::Answer]).await;
    let cfg = with_server(&config(up.addr, ""), "tcp_max_connections = 1");
    let e = Embargo::start(&cfg, &[]).await;
    let mut busy = connect(e.addr).await;
    let q = query("slow.up.test.", RecordType::A, false);
    busy.write_all(&frame(&q)).await.expect("write");
    let deadline = Instant::now() + Duration::from_secs(2);
    while up.received() < 1 {
        assert!(
            Instant::now() < deadline,
            "query did not reach the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The one connection has a query in flight: the newcomer is closed.
    let mut newcomer = connect(e.addr).await;
    let took = closed_within(&mut newcomer, Duration::from_millis(500)).await;
    assert!(took.is_some(), "closed at once, not left in the backlog");
    // The busy one still gets its answer, then counts as idle and makes room.
    let r = read_reply(&mut busy).await;
    assert_eq!(r.answers[0].data, RData::A(SCRIPTED_ANSWER.into()));
    // (Its slot is freed just after the answer is written.)
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut later = connect(e.addr).await;
    let r = ask(&mut later, "seized.example.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        closed_within(&mut busy, Duration::from_secs(1))
            .await
            .is_some()
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let up = ScriptedUpstream::start(&[Step::Wait(Duration::from_millis(800)), Step::Answer]).await;
    let cfg = with_server(&config(up.addr, ""), r#"tcp_idle_timeout = "300ms""#);
    let e = Embargo::start(&cfg, &[]).await;

    // Silent from the start.
    let started = Instant::now();
    let mut silent = connect(e.addr).await;
    let took = closed_since(&mut silent, started, Duration::from_secs(3))
        .await
        .expect("closed");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
        "{took:?}"
    );

    // After an answer: idle time counts from the answer.
    let mut c = connect(e.addr).await;
    let started = Instant::now();
    ask(&mut c, "seized.example.").await;
    let took = closed_since(&mut c, started, Duration::from_secs(3))
        .await
        .expect("closed");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
        "{took:?}"
    );

    // A query in flight longer than the idle timeout is not idleness: the
    // answer arrives (800 ms), and only then the idle time starts.
    let mut c = connect(e.addr).await;
    let started = Instant::now();
    let r = ask(&mut c, "slow.up.test.").await;
    assert_eq!(r.answers[0].data, RData::A(SCRIPTED_ANSWER.into()));
    assert!(started.elapsed() >= Duration::from_millis(800));
    let took = closed_within(&mut c, Duration::from_secs(3))
        .await
        .expect("closed");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_stops_arriving_closes_its_connection() {
    let up = Upstream::start().await;
    let cfg = with_server(
        &config(up.addr, ""),
        "tcp_idle_timeout = \"5s\"\ntcp_message_timeout = \"300ms\"",
    );
    let e = Embargo::start(&cfg, &[]).await;
    let q = frame(&query("seized.example.", RecordType::A, false));
    // The length and half the message; one byte of the length; then silence.
    for part in [&q[..q.len() / 2], &q[..1]] {
        let mut c = connect(e.addr).await;
        let started = Instant::now();
        c.write_all(part).await.expect("write");
        let took = closed_since(&mut c, started, Duration::from_secs(3))
            .await
            .expect("closed well before the idle timeout");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
            "{took:?}"
        );
    }
    // A message in two writes a moment apart is fine.
    let mut c = connect(e.addr).await;
    c.write_all(&q[..5]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.write_all(&q[5..]).await.expect("write");
    let r = read_reply(&mut c).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    e.stop().await;
}

/// `count` queries for distinct names of one length, framed back to back.
fn pipeline(count: usize) -> (Vec<Message>, Vec<u8>) {
    let msgs: Vec<Message> = (0..count)
        .map(|i| query(&format!("q{i:04}.up.test."), RecordType::A, false))
        .collect();
    let bytes = msgs.iter().flat_map(frame).collect();
    (msgs, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_pipelining_is_all_answered_with_at_most_max_inflight_at_once() {
    let up = ScriptedUpstream::start(&[Step::Wait(Duration::from_millis(20)), Step::Answer]).await;
    let cfg = with_server(&config(up.addr, ""), "tcp_max_inflight = 4");
    let e = Embargo::start(&cfg, &[]).await;
    let (msgs, bytes) = pipeline(200);
    let mut c = connect(e.addr).await;
    c.write_all(&bytes).await.expect("write");
    let mut ids: Vec<u16> = Vec::new();
    for _ in &msgs {
        let r = read_reply(&mut c).await;
        assert_eq!(r.answers[0].data, RData::A(SCRIPTED_ANSWER.into()));
        ids.push(r.metadata.id);
    }
    let mut want: Vec<u16> = msgs.iter().map(|m| m.metadata.id).collect();
    ids.sort_unstable();
    want.sort_unstable();
    assert_eq!(ids, want, "every query answered once");
    assert_eq!(up.received(), 200);
    assert_eq!(
        up.peak(),
        4,
        "never more than tcp_max_inflight at the upstream"
    );
    e.stop().await;
}

/// The server's established TCP sockets on `port`, as `ss` lists them
/// (Recv-Q Send-Q Local Peer).
fn server_sockets(port: u16) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-Htn", "state", "established", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Bytes waiting unread in the kernel for the server's end of the one
/// connection on `port` (`ss`'s Recv-Q).
fn server_recv_queue(port: u16) -> usize {
    let lines = server_sockets(port);
    assert_eq!(lines.len(), 1, "one connection: {lines:?}");
    lines[0]
        .split_whitespace()
        .next()
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("Recv-Q in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_stops_reading_a_connection_with_max_inflight_queries() {
    // The upstream never answers: the first 4 queries stay in flight.
    let up = ScriptedUpstream::start(&[Step::Wait(Duration::from_secs(30))]).await;
    let cfg = with_server(&config(up.addr, ""), "tcp_max_inflight = 4");
    let e = Embargo::start(&cfg, &[]).await;
    let (msgs, bytes) = pipeline(200);
    let framed = bytes.len() / msgs.len();
    let mut c = connect(e.addr).await;
    c.write_all(&bytes).await.expect("write");
    let deadline = Instant::now() + Duration::from_secs(2);
    while up.received() < 4 {
        assert!(
            Instant::now() < deadline,
            "queries did not reach the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.received(), 4, "no more than 4 taken from the connection");
    // The other 196 were not read into the server's memory: they wait in
    // the kernel's receive queue, where TCP flow control holds the client.
    assert_eq!(server_recv_queue(e.addr.port()), 196 * framed);
    // Each answer (SERVFAIL at the 1 s timeout) frees a slot for the next.
    for _ in 0..4 {
        let r = read_reply(&mut c).await;
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while up.received() < 8 {
        assert!(Instant::now() < deadline, "reading did not resume");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_length_and_garbage_frames_leave_the_connection_serving() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let mut c = connect(e.addr).await;
    // A zero-length frame is nothing to answer; the next query is.
    c.write_all(&[0, 0]).await.expect("write");
    let r = ask(&mut c, "seized.example.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    // Random frames (some answered FORMERR, some dropped), then a query:
    // its answer comes on the same connection.
    let mut rng = fastrand::Rng::with_seed(10);
    let mut bytes = Vec::new();
    for _ in 0..300 {
        let mut junk: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
        if junk.len() > 2 {
            junk[2] &= 0x7f;
        }
        bytes.extend_from_slice(&(junk.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&junk);
    }
    let q = query("www.seized.example.", RecordType::A, false);
    bytes.extend_from_slice(&frame(&q));
    c.write_all(&bytes).await.expect("write");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        assert!(Instant::now() < deadline, "the good query was not answered");
        let len = c.read_u16().await.expect("a frame") as usize;
        let mut buf = vec![0u8; len];
        c.read_exact(&mut buf).await.expect("frame body");
        if buf.get(..2) == Some(&q.metadata.id.to_be_bytes()[..])
            && let Ok(r) = Message::from_vec(&buf)
            && r.queries.first().map(|q| q.name().to_string()).as_deref()
                == Some("www.seized.example.")
        {
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
            break;
        }
    }
    let r = ask(&mut c, "seized.example.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_its_answers_is_closed() {
    // 2.3 KB answers, many allowed in flight, a long idle timeout: only the
    // cap on answers waiting to be written (128 KiB) can close it early.
    let txt: Vec<String> = (0..30)
        .map(|i| format!("big IN TXT \"record {i:02} {}\"", "x".repeat(60)))
        .collect();
    let up = Upstream::start_with(&txt).await;
    let cfg = with_server(
        &config(up.addr, ""),
        "tcp_max_inflight = 1000\ntcp_idle_timeout = \"30s\"",
    );
    let e = Embargo::start(&cfg, &[]).await;
    let q = frame(&query("big.up.test.", RecordType::TXT, false));
    let c = connect(e.addr).await;
    // Never read: a task writes 4,000 queries (9 MB of answers) and keeps
    // the connection open from this side.
    let (_rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..4000 {
            if wr.write_all(&q).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let started = Instant::now();
    while !server_sockets(e.addr.port()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still open: {:?}",
            server_sockets(e.addr.port())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.abort();
    let mut other = connect(e.addr).await;
    let r = ask(&mut other, "seized.example.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    e.stop().await;
}
