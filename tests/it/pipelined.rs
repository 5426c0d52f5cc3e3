//! Issue 21: a `tcp://` upstream is spoken to as DoT is (RFC 7766): a few
//! connections kept open, queries pipelined on them, answers matched by ID
//! and question in whatever order they come, a connection the upstream
//! closed reopened and the queries lost with it asked again, a stalled one
//! timed out and failed over. The upstream here is a small TCP DNS server
//! of the test's own that counts the connections it accepted.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use crate::harness::{Embargo, config, query, udp};

/// What the test upstream does with the queries of each connection.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Answers each query after this delay, queries in flight at once.
    Answer(Duration),
    /// Holds the queries until this many came (or none came for 300 ms),
    /// then answers them last first.
    Reverse(usize),
    /// Answers this many queries, waits 50 ms and closes the connection,
    /// leaving the queries that came after unanswered.
    CloseAfter(usize),
    /// Reads every query, answers none.
    Stall,
}

/// A TCP-only DNS upstream on loopback: `qN.up.test.` is answered with
/// `A 10.0.N/256.N%256`, so a client can tell its answer from another's.
struct TcpUpstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    /// The most answers one connection sent last first in one go.
    reversed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Counters {
    received: Arc<AtomicUsize>,
    reversed: Arc<AtomicUsize>,
}

impl TcpUpstream {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counters = Counters {
            received: Arc::new(AtomicUsize::new(0)),
            reversed: Arc::new(AtomicUsize::new(0)),
        };
        let (a, c) = (accepted.clone(), counters.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (rd, wr) = conn.into_split();
                tokio::spawn(serve(rd, Arc::new(Mutex::new(wr)), mode, c.clone()));
            }
        });
        Self {
            addr,
            accepted,
            received: counters.received,
            reversed: counters.reversed,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for TcpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_frame(rd: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let len = rd.read_u16().await.ok()?;
    let mut buf = vec![0u8; usize::from(len)];
    rd.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

async fn write_answer(wr: &Mutex<OwnedWriteHalf>, query: &[u8]) {
    let bytes = answer(query);
    let mut frame = u16::try_from(bytes.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&bytes);
    let _ = wr.lock().await.write_all(&frame).await;
}

async fn serve(mut rd: OwnedReadHalf, wr: Arc<Mutex<OwnedWriteHalf>>, mode: Mode, c: Counters) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut answered = 0;
    loop {
        let next = match mode {
            Mode::Reverse(_) if !held.is_empty() => {
                tokio::time::timeout(Duration::from_millis(300), read_frame(&mut rd))
                    .await
                    .ok()
            }
            _ => Some(read_frame(&mut rd).await),
        };
        let Some(next) = next else {
            // No more for now: answer what is held, last first.
            c.reversed.fetch_max(held.len(), Ordering::SeqCst);
            for q in held.drain(..).rev() {
                write_answer(&wr, &q).await;
            }
            continue;
        };
        let Some(q) = next else {
            return;
        };
        c.received.fetch_add(1, Ordering::SeqCst);
        match mode {
            Mode::Answer(delay) => {
                let wr = wr.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    write_answer(&wr, &q).await;
                });
            }
            Mode::Reverse(n) => {
                held.push(q);
                if held.len() == n {
                    c.reversed.fetch_max(held.len(), Ordering::SeqCst);
                    for q in held.drain(..).rev() {
                        write_answer(&wr, &q).await;
                    }
                }
            }
            Mode::CloseAfter(n) => {
                write_answer(&wr, &q).await;
                answered += 1;
                if answered == n {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    // Both halves dropped: closed, with what came after
                    // the last answer unread (a reset, as a server's
                    // close on a busy connection often is).
                    return;
                }
            }
            Mode::Stall => {}
        }
    }
}

/// The address `qN.up.test.` is answered with.
fn address_of(n: usize) -> Ipv4Addr {
    let n = u16::try_from(n).expect("small");
    let [hi, lo] = n.to_be_bytes();
    Ipv4Addr::new(10, 0, hi, lo)
}

/// The answer to `query`: its question, and for `qN.up.test.` the address of N.
fn answer(query: &[u8]) -> Vec<u8> {
    let q = Message::from_vec(query).expect("a query embargo sent decodes");
    let question = q.queries.first().cloned().expect("a question");
    let label = question.name().to_ascii();
    let n: usize = label
        .strip_prefix('q')
        .and_then(|s| s.split('.').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_answer(Record::from_rdata(
        question.name().clone(),
        60,
        RData::A(A(address_of(n))),
    ));
    m.add_query(question);
    m.to_vec().expect("encode")
}

fn tcp_config(servers: &[SocketAddr]) -> String {
    let placeholder: SocketAddr = ([127, 0, 0, 1], 9).into();
    let list: Vec<String> = servers.iter().map(|s| format!("\"tcp://{s}\"")).collect();
    config(placeholder, "").replace(
        &format!("servers = [\"{placeholder}\"]"),
        &format!("servers = [{}]", list.join(", ")),
    )
}

/// Asks `qN.up.test.` for every N in `names` at once, over UDP, and checks
/// that each got its own address.
async fn ask_all(e: &Embargo, names: std::ops::Range<usize>) {
    let addr = e.addr;
    let asked: Vec<_> = names
        .map(|n| {
            tokio::spawn(async move {
                let r = udp(
                    addr,
                    &query(&format!("q{n}.up.test."), RecordType::A, false),
                )
                .await;
                (n, r)
            })
        })
        .collect();
    for a in asked {
        let (n, r) = a.await.expect("task");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "q{n}");
        assert_eq!(r.answers.len(), 1, "q{n}: {r:?}");
        assert_eq!(r.answers[0].data, RData::A(A(address_of(n))), "q{n}");
    }
}

/// Issue 21: a hundred queries at once over one `tcp://` upstream share a
/// few connections (before: a hundred, one per query).
#[tokio::test(flavor = "multi_thread")]
async fn r21_many_queries_at_once_share_a_few_tcp_connections() {
    let up = TcpUpstream::start(Mode::Answer(Duration::from_millis(50))).await;
    let e = Embargo::start(&tcp_config(&[up.addr]), &[]).await;
    ask_all(&e, 0..100).await;
    assert_eq!(up.received(), 100);
    assert!(up.accepted() <= 4, "{} connections", up.accepted());
    // And they stay open: the next queries open none.
    let before = up.accepted();
    ask_all(&e, 100..120).await;
    assert_eq!(up.accepted(), before, "the open connection was reused");
    e.stop().await;
}

/// Issue 21: answers that come in another order than their queries were
/// sent on one connection each reach the client that asked.
#[tokio::test(flavor = "multi_thread")]
async fn r21_answers_out_of_order_on_one_connection_reach_the_right_client() {
    let up = TcpUpstream::start(Mode::Reverse(10)).await;
    let e = Embargo::start(&tcp_config(&[up.addr]), &[]).await;
    ask_all(&e, 0..10).await;
    let reversed = up.reversed.load(Ordering::SeqCst);
    assert!(
        reversed > 1,
        "at most {reversed} answer(s) at a time were sent last first: not pipelined"
    );
    e.stop().await;
}

/// Issue 21: an upstream that closes the connection with queries still in
/// flight on it (as servers that cap the queries per connection do) loses
/// none of them: they are asked again on a new connection. A connection
/// closed while idle is not used again either.
#[tokio::test(flavor = "multi_thread")]
async fn r21_a_connection_the_upstream_closes_loses_no_query() {
    let up = TcpUpstream::start(Mode::CloseAfter(25)).await;
    let e = Embargo::start(&tcp_config(&[up.addr]), &[]).await;
    ask_all(&e, 0..40).await;
    let accepted = up.accepted();
    assert!(
        (2..=4).contains(&accepted),
        "{accepted} connections: one closed, a new one for the rest"
    );
    e.stop().await;

    // Closed after each answer, while idle: the next query opens another.
    let up = TcpUpstream::start(Mode::CloseAfter(1)).await;
    let e = Embargo::start(&tcp_config(&[up.addr]), &[]).await;
    for n in 0..3 {
        ask_all(&e, n..n + 1).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(up.accepted(), 3);
    e.stop().await;
}

/// Issue 21: a connection that stops answering times the query out within
/// its share of `timeout_ms`, and the next server answers, as before; the
/// queries stuck on it do not each open a connection of their own.
#[tokio::test(flavor = "multi_thread")]
async fn r21_a_stalled_connection_times_out_and_fails_over() {
    let stalled = TcpUpstream::start(Mode::Stall).await;
    let good = TcpUpstream::start(Mode::Answer(Duration::ZERO)).await;
    let e = Embargo::start(&tcp_config(&[stalled.addr, good.addr]), &[]).await;
    let started = Instant::now();
    ask_all(&e, 0..20).await;
    let took = started.elapsed();
    // Two servers in 1000 ms: the first gets half.
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(
        stalled.received(),
        20,
        "each was asked of the stalled one first"
    );
    assert!(
        stalled.accepted() <= 4,
        "{} connections",
        stalled.accepted()
    );
    assert_eq!(good.received(), 20);
    e.stop().await;
}
