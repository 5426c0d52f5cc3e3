//! A UDP socket whose send buffer is full must not stall forwarding.
//!
//! Forwarded answers over a wildcard-bound socket, or from an upstream that
//! is not plain UDP, are sent from runtime tasks. On a blocking socket with
//! a full send buffer, each of those sends held a runtime worker until the
//! kernel made room; with one worker per core, every forward on every
//! transport waited. The test fills the buffer for real: in a network
//! namespace, a traffic-control class lets the server's UDP answers leave
//! at 8 kbit/s (the datagrams wait in the qdisc and stay charged to the
//! socket), and a burst of forwarded queries arrives.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, query, with_http};
use crate::netns;

/// In the test's namespace: UDP datagrams from `port` leave loopback at
/// 8 kbit/s, everything else at full speed.
fn throttle_udp_from(port: u16) {
    let port = port.to_string();
    for args in [
        vec![
            "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10",
        ],
        vec![
            "class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit",
        ],
        vec![
            "class", "add", "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate", "8kbit",
            "ceil", "8kbit",
        ],
        // Room for far more than a socket's send buffer: the datagrams wait
        // here, charged to the socket, rather than being dropped.
        vec![
            "qdisc",
            "add",
            "dev",
            "lo",
            "parent",
            "1:20",
            "handle",
            "20:",
            "bfifo",
            "limit",
            "100000000",
        ],
        vec![
            "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "ip", "protocol", "17", "0xff", "match", "ip", "sport", &port, "0xffff",
            "flowid", "1:20",
        ],
    ] {
        let out = Command::new("tc")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `tc` (iproute2): {e}"));
        assert!(
            out.status.success(),
            "tc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One query over TCP with plain blocking I/O, so that it does not depend
/// on the runtime under test: the answer, or None after `wait`.
fn tcp_blocking(addr: SocketAddr, msg: &Message, wait: Duration) -> Option<Message> {
    let mut s = TcpStream::connect_timeout(&addr, wait).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    let bytes = msg.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Message::from_vec(&buf).ok()
}

/// `GET /metrics` with plain blocking I/O; None after `wait`.
fn metrics_blocking(addr: SocketAddr, wait: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, wait).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Issue 16 (7): forwarded answers that meet a full send buffer are
/// dropped and counted (`embargo_udp_answers_dropped_total`), and forwarding
/// goes on meanwhile.
#[test]
fn r16_forwarded_answers_to_a_full_send_buffer_are_dropped_and_counted() {
    netns::run(
        concat!(
            module_path!(),
            "::r16_forwarded_answers_to_a_full_send_buffer_are_dropped_and_counted"
        ),
        || async {
            let up = Upstream::start().await;
            // A TCP upstream: every answer to a UDP client is sent from a task.
            let cfg = config(up.addr, "").replace(
                &format!("servers = [\"{}\"]", up.addr),
                &format!("servers = [\"tcp://{}\"]", up.addr),
            );
            let e = Embargo::start(&with_http(&cfg, "listen = [\"127.0.0.1:0\"]"), &[]).await;
            let http = e.http[0];
            throttle_udp_from(e.addr.port());

            // A burst of distinct names, every one forwarded; nobody reads the answers.
            let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            for i in 0..500 {
                let q = query(&format!("n{i}.example."), RecordType::A, false);
                client
                    .send_to(&q.to_vec().expect("encode"), e.addr)
                    .expect("send");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;

            // Meanwhile a TCP client's forwarded query is answered at once.
            let started = Instant::now();
            let r = tcp_blocking(
                e.addr,
                &query("over-tcp.example.", RecordType::A, false),
                Duration::from_secs(5),
            );
            assert!(
                r.is_some(),
                "a forwarded query over TCP got no answer within {:?}: the runtime is stuck behind the full UDP send buffer",
                started.elapsed()
            );

            // The answers that found no room were dropped and counted.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let text = metrics_blocking(http, Duration::from_secs(3))
                    .expect("/metrics answers while the UDP send buffer is full");
                let dropped = sample(&text, "embargo_udp_answers_dropped_total").unwrap_or(0.0);
                if dropped >= 50.0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{dropped} answers counted as dropped"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            e.stop().await;
        },
    );
}
