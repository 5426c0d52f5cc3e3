//! DNS over TLS, HTTPS and QUIC to clients (issue 19): the real server on
//! loopback with a certificate from a CA each test makes, spoken to by
//! rustls, reqwest and quinn clients that check it against that CA. Every
//! rule that applies to UDP applies here: the lists and their EDE, the
//! query log (proto `dot`/`doh`/`doq`), `[access]` (before the handshake),
//! client groups, by address or by client ID (SNI, DoH path). And every
//! bound holds against a client that misbehaves.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::harness::{Embargo, TestCert, Upstream, config, ede, query, with_server};

/// The name the test certificates are for; `*.dns.test` names clients.
const SERVER: &str = "dns.test";

/// A certificate for `dns.test` and `*.dns.test`.
fn cert() -> TestCert {
    TestCert::with_names(&[SERVER, "*.dns.test"])
}

/// `config(upstream)` with the encrypted listeners on loopback and `extra`
/// `[server]` lines, and the files it names.
fn encrypted(upstream: SocketAddr, extra: &str, rest: &str) -> String {
    with_server(
        &(config(upstream, "") + rest),
        &format!(
            "tls_listen = [\"127.0.0.1:0\"]\nhttps_listen = [\"127.0.0.1:0\"]\nquic_listen = [\"127.0.0.1:0\"]\n\
             certificate = \"cert.pem\"\nprivate_key = \"key.pem\"\n{extra}"
        ),
    )
}

async fn start(cert: &TestCert, cfg: &str) -> Embargo {
    let e = Embargo::start(
        cfg,
        &[("cert.pem", &cert.cert_pem()), ("key.pem", &cert.key_pem())],
    )
    .await;
    assert_eq!((e.tls.len(), e.https.len(), e.quic.len()), (1, 1, 1));
    e
}

async fn dot_connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("name");
    tokio::time::timeout(
        Duration::from_secs(5),
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

async fn dot_send(s: &mut TlsStream<TcpStream>, msg: &Message) {
    let bytes = msg.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).await.expect("write");
    s.flush().await.expect("flush");
}

async fn dot_read(s: &mut TlsStream<TcpStream>) -> Message {
    let len = tokio::time::timeout(Duration::from_secs(5), s.read_u16())
        .await
        .expect("answer in time")
        .expect("length");
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.expect("answer");
    Message::from_vec(&buf).expect("decodes")
}

fn q(name: &str, id: u16) -> Message {
    let mut m = query(name, RecordType::A, true);
    m.metadata.id = id;
    m
}

fn a_records(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// The query log's JSON records, once there are at least `n` (5 s at most).
async fn records(dir: &Path, n: usize) -> Vec<Value> {
    let path = dir.join("embargo-state/queries.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const LOG_ALL: &str = "\n[log]\nqueries = \"all\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn dot_answers_blocked_and_forwarded_names_pipelined_with_ede_and_logs_dot() {
    let up = Upstream::start().await;
    let cert = cert();
    let e = start(&cert, &encrypted(up.addr, "", LOG_ALL)).await;
    let mut s = dot_connect(e.tls[0], SERVER, cert.client_config(&[b"dot"]))
        .await
        .expect("handshake against the test's CA");
    // Pipelined: three queries before any answer is read.
    for (name, id) in [
        ("www.seized.example.", 1),
        ("www.up.test.", 2),
        ("sanctioned.example.", 3),
    ] {
        dot_send(&mut s, &q(name, id)).await;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(dot_read(&mut s).await);
    }
    got.sort_by_key(|m| m.metadata.id);
    assert_eq!(got[0].metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        ede(&got[0]).map(|(c, _)| c),
        Some(16),
        "the list's EDE (censored)"
    );
    assert_eq!(got[1].metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&got[1]), ["192.0.2.10"]);
    assert_eq!(got[2].metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        up.count("www.seized.example"),
        0,
        "a blocked name never goes upstream"
    );
    let log = records(e.dir(), 3).await;
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|r| r["proto"] == "dot"), "{log:?}");
    // The forwarded one is counted when its answer comes, in the
    // handler's block for forwarded queries.
    assert_eq!(
        e.stats.tcp.queries(2) + e.stats.answers.queries(2),
        3,
        "counted under proto=\"dot\" in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_answers_out_of_order_a_blocked_name_before_a_slow_forward() {
    let up = Upstream::start_slow(Duration::from_millis(400)).await;
    let cert = cert();
    let e = start(&cert, &encrypted(up.addr, "", "")).await;
    let mut s = dot_connect(e.tls[0], SERVER, cert.client_config(&[b"dot"]))
        .await
        .expect("handshake");
    dot_send(&mut s, &q("www.up.test.", 7)).await;
    dot_send(&mut s, &q("www.seized.example.", 8)).await;
    let first = dot_read(&mut s).await;
    let second = dot_read(&mut s).await;
    assert_eq!(
        first.metadata.id, 8,
        "the blocked answer did not wait for the forward"
    );
    assert_eq!(second.metadata.id, 7);
    assert_eq!(a_records(&second), ["192.0.2.10"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_access_refuses_gets_no_handshake() {
    let up = Upstream::start().await;
    let cert = cert();
    let cfg = encrypted(up.addr, "", "\n[access]\nallow = [\"192.0.2.0/24\"]\n");
    let e = start(&cert, &cfg).await;
    let refused = dot_connect(e.tls[0], SERVER, cert.client_config(&[b"dot"])).await;
    assert!(refused.is_err(), "the handshake was not refused");
    let doh = doh_client(&cert, false)
        .get(format!(
            "https://{SERVER}:{}/dns-query?dns={}",
            e.https[0].port(),
            b64(&q("www.up.test.", 0))
        ))
        .send()
        .await;
    assert!(doh.is_err(), "DoH answered a refused client: {doh:?}");
    assert!(doq(&e, &cert, SERVER, &q("www.up.test.", 0)).await.is_err());
    assert_eq!(up.count("www.up.test"), 0);
    assert!(
        e.stats
            .tcp
            .refused_clients(embargo::access::AccessAction::Refuse)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_or_trickling_client_is_closed_within_the_handshake_timeout() {
    let up = Upstream::start().await;
    let cert = cert();
    let e = start(
        &cert,
        &encrypted(up.addr, "tls_handshake_timeout = \"300ms\"\n", ""),
    )
    .await;
    for addr in [e.tls[0], e.https[0]] {
        // Sends nothing at all.
        let started = Instant::now();
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
            .await
            .expect("closed within the timeout");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Trickles a ClientHello, a byte every 100 ms.
        let started = Instant::now();
        let mut trickle = TcpStream::connect(addr).await.expect("connect");
        let hello = [
            0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        let mut closed = false;
        for b in hello.iter().cycle().take(40) {
            if trickle.write_all(&[*b]).await.is_err() {
                closed = true;
                break;
            }
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(100), trickle.read(&mut buf)).await
            {
                closed = true;
                break;
            }
        }
        assert!(closed, "a trickled handshake kept its connection");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_idle_timeout_on_every_transport() {
    let up = Upstream::start().await;
    let cert = cert();
    let e = start(
        &cert,
        &encrypted(up.addr, "tls_idle_timeout = \"400ms\"\n", ""),
    )
    .await;
    // DoT: one answer, then nothing: closed.
    let mut dot = dot_connect(e.tls[0], SERVER, cert.client_config(&[b"dot"]))
        .await
        .expect("dot");
    dot_send(&mut dot, &q("www.seized.example.", 1)).await;
    let _ = dot_read(&mut dot).await;
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), dot.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // DoH over HTTP/1.1 by hand: one request kept alive, then nothing.
    let tcp = TcpStream::connect(e.https[0]).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(SERVER).expect("name");
    let mut doh = TlsConnector::from(cert.client_config(&[b"http/1.1"]))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let get = format!(
        "GET /dns-query?dns={} HTTP/1.1\r\nHost: {SERVER}\r\n\r\n",
        b64(&q("www.seized.example.", 0))
    );
    doh.write_all(get.as_bytes()).await.expect("request");
    let mut head = vec![0u8; 4096];
    let n = doh.read(&mut head).await.expect("response");
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    let n = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match doh.read(&mut buf).await {
                Ok(0) | Err(_) => return 0,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(n, Ok(0), "the idle DoH connection was not closed");
    // DoQ: a connection with no stream for the idle timeout is closed.
    let client = doq_endpoint(&cert);
    let conn = client
        .connect(e.quic[0], SERVER)
        .expect("connect")
        .await
        .expect("handshake");
    doq_ask(&conn, &q("www.seized.example.", 0))
        .await
        .expect("answer");
    let closed = tokio::time::timeout(Duration::from_secs(3), conn.closed()).await;
    assert!(closed.is_ok(), "the idle DoQ connection was not closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_cap_the_longest_idle_connection_is_closed() {
    let up = Upstream::start().await;
    let cert = cert();
    let e = start(&cert, &encrypted(up.addr, "tls_max_connections = 2\n", "")).await;
    let config = cert.client_config(&[b"dot"]);
    let mut first = dot_connect(e.tls[0], SERVER, config.clone())
        .await
        .expect("1");
    dot_send(&mut first, &q("www.seized.example.", 1)).await;
    let _ = dot_read(&mut first).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = dot_connect(e.tls[0], SERVER, config.clone())
        .await
        .expect("2");
    dot_send(&mut second, &q("www.seized.example.", 2)).await;
    let _ = dot_read(&mut second).await;
    let mut third = dot_connect(e.tls[0], SERVER, config).await.expect("3");
    dot_send(&mut third, &q("www.seized.example.", 3)).await;
    assert_eq!(dot_read(&mut third).await.metadata.id, 3);
    // The first, idle longest, made room.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), first.read(&mut buf))
        .await
        .expect("the first connection closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    dot_send(&mut second, &q("www.seized.example.", 4)).await;
    assert_eq!(
        dot_read(&mut second).await.metadata.id,
        4,
        "the second still served"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_client_resumes_its_tls_session() {
    let up = Upstream::start().await;
    let cert = cert();
    let e = start(&cert, &encrypted(up.addr, "", "")).await;
    // One client config: its session cache carries the ticket across connections.
    let config = cert.client_config(&[b"dot"]);
    let mut s = dot_connect(e.tls[0], SERVER, config.clone())
        .await
        .expect("first");
    assert_eq!(
        s.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    // An answer read means the tickets sent after the handshake were read too.
    dot_send(&mut s, &q("www.seized.example.", 1)).await;
    let _ = dot_read(&mut s).await;
    drop(s);
    let mut again = dot_connect(e.tls[0], SERVER, config).await.expect("second");
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "no full handshake on reconnect"
    );
    dot_send(&mut again, &q("www.seized.example.", 2)).await;
    assert_eq!(
        dot_read(&mut again).await.metadata.response_code,
        ResponseCode::NXDomain
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_is_served_without_closing_open_connections_and_a_bad_one_is_not() {
    let up = Upstream::start().await;
    let old = cert();
    let e = start(&old, &encrypted(up.addr, "", "")).await;
    let mut open = dot_connect(e.tls[0], SERVER, old.client_config(&[b"dot"]))
        .await
        .expect("handshake");
    dot_send(&mut open, &q("www.seized.example.", 1)).await;
    let _ = dot_read(&mut open).await;
    // A broken key first: the certificate in force stays.
    std::fs::write(e.dir().join("key.pem"), "not a key\n").expect("write");
    tokio::time::sleep(Duration::from_millis(800)).await;
    dot_connect(e.tls[0], SERVER, old.client_config(&[b"dot"]))
        .await
        .expect("the old certificate is still served");
    // Then a renewal from another CA (written as a deploy hook would: key, then chain).
    let new = cert();
    std::fs::write(e.dir().join("key.pem"), new.key_pem()).expect("write");
    std::fs::write(e.dir().join("cert.pem"), new.cert_pem()).expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if dot_connect(e.tls[0], SERVER, new.client_config(&[b"dot"]))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened under the old certificate is still served.
    dot_send(&mut open, &q("www.seized.example.", 2)).await;
    assert_eq!(dot_read(&mut open).await.metadata.id, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sni_names_the_client_and_its_group_decides_wherever_it_is() {
    let up = Upstream::start().await;
    let cert = cert();
    // laptop-7 applies no list; everyone else (default) every list.
    let groups = "\n[[groups]]\nname = \"roaming\"\nclient_ids = [\"laptop-7\"]\nlists = []\n";
    let e = start(
        &cert,
        &encrypted(up.addr, "", &format!("{groups}{LOG_ALL}")),
    )
    .await;
    let mut plain = dot_connect(e.tls[0], SERVER, cert.client_config(&[b"dot"]))
        .await
        .expect("plain");
    dot_send(&mut plain, &q("seized.example.", 1)).await;
    assert_eq!(
        dot_read(&mut plain).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    let mut laptop = dot_connect(e.tls[0], "laptop-7.dns.test", cert.client_config(&[b"dot"]))
        .await
        .expect("laptop");
    dot_send(&mut laptop, &q("seized.example.", 2)).await;
    let r = dot_read(&mut laptop).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        a_records(&r),
        ["192.0.2.66"],
        "the roaming group applies no list"
    );
    // DoH: the path's last segment names the client.
    let client = doh_client(&cert, false);
    let url = |path: &str| {
        format!(
            "https://{SERVER}:{}{path}?dns={}",
            e.https[0].port(),
            b64(&q("seized.example.", 0))
        )
    };
    let by_path = doh_answer(
        client
            .get(url("/dns-query/laptop-7"))
            .send()
            .await
            .expect("doh"),
    )
    .await;
    assert_eq!(by_path.metadata.response_code, ResponseCode::NoError);
    let plain = doh_answer(client.get(url("/dns-query")).send().await.expect("doh")).await;
    assert_eq!(plain.metadata.response_code, ResponseCode::NXDomain);
    // DoQ: the SNI, as DoT.
    let r = doq(&e, &cert, "laptop-7.dns.test", &q("seized.example.", 0))
        .await
        .expect("doq");
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let log = records(e.dir(), 5).await;
    let ids: Vec<(&str, &str)> = log
        .iter()
        .map(|r| {
            (
                r["proto"].as_str().unwrap_or("?"),
                r["client_id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("dot", "-"),
            ("dot", "laptop-7"),
            ("doh", "laptop-7"),
            ("doh", "-"),
            ("doq", "laptop-7")
        ],
        "{log:?}"
    );
    assert_eq!(log[1]["group"], "roaming");
}

// ---- DoH -----------------------------------------------------------------

fn b64(m: &Message) -> String {
    data_encoding::BASE64URL_NOPAD.encode(&m.to_vec().expect("encode"))
}

/// A reqwest client trusting the test CA, resolving `dns.test` to loopback,
/// over HTTP/2 (ALPN) or HTTP/1.1 only.
fn doh_client(cert: &TestCert, http1: bool) -> reqwest::Client {
    let alpn: &[&[u8]] = if http1 {
        &[b"http/1.1"]
    } else {
        &[b"h2", b"http/1.1"]
    };
    let tls = Arc::try_unwrap(cert.client_config(alpn)).unwrap_or_else(|a| (*a).clone());
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .resolve(SERVER, "127.0.0.1:0".parse().expect("addr"))
        .resolve("laptop-7.dns.test", "127.0.0.1:0".parse().expect("addr"))
        .timeout(Duration::from_secs(5));
    if http1 {
        b = b.http1_only();
    }
    b.build().expect("client")
}

async fn doh_answer(r: reqwest::Response) -> Message {
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.headers()["content-type"], "application/dns-message");
    Message::from_vec(&r.bytes().await.expect("body")).expect("decodes")
}

#[tokio::test(flavor = "multi_thread")]
async fn doh_answers_get_and_post_over_http2_and_http1_with_cache_control() {
    let up = Upstream::start().await;
    let cert = cert();
    let e = start(&cert, &encrypted(up.addr, "", LOG_ALL)).await;
    let base = format!("https://{SERVER}:{}/dns-query", e.https[0].port());
    for http1 in [false, true] {
        let client = doh_client(&cert, http1);
        let want = if http1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        // GET, blocked: the list's answer and EDE, cacheable for the block TTL.
        let r = client
            .get(format!("{base}?dns={}", b64(&q("www.seized.example.", 0))))
            .send()
            .await
            .expect("get");
        assert_eq!(r.version(), want);
        assert_eq!(r.headers()["cache-control"], "max-age=300");
        let m = doh_answer(r).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(ede(&m).map(|(c, _)| c), Some(16));
        // POST, forwarded: the upstream's answer, cacheable for its least TTL.
        let r = client
            .post(&base)
            .header("content-type", "application/dns-message")
            .body(q("short.up.test.", 0).to_vec().expect("encode"))
            .send()
            .await
            .expect("post");
        assert_eq!(r.version(), want);
        let ttl: u32 = r.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .strip_prefix("max-age=")
            .and_then(|t| t.parse().ok())
            .expect("max-age");
        assert!(ttl <= 5, "short.up.test has TTL 5: max-age={ttl}");
        let m = doh_answer(r).await;
        assert_eq!(a_records(&m), ["192.0.2.5"]);
        // A wrong content type is 415; no message, or a broken one, 400.
        let r = client
            .post(&base)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 415);
        let r = client
            .get(format!("{base}?name=x"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 400);
        let r = client
            .get(format!("{base}?dns=AAAB"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 400);
        let r = client
            .post(&base)
            .header("content-type", "application/dns-message")
            .body(vec![0u8; 70_000])
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 413);
        let r = client
            .get(format!("https://{SERVER}:{}/other", e.https[0].port()))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 404);
    }
    assert_eq!(up.count("www.seized.example"), 0);
    let log = records(e.dir(), 4).await;
    assert!(
        log.len() >= 4 && log.iter().all(|r| r["proto"] == "doh"),
        "{log:?}"
    );
}

// ---- DoQ -----------------------------------------------------------------

/// One DoQ query on a new connection (ALPN doq, `sni`), as RFC 9250 frames it.
async fn doq(e: &Embargo, cert: &TestCert, sni: &str, msg: &Message) -> Result<Message, String> {
    let client = doq_endpoint(cert);
    let conn = client.connect(e.quic[0], sni).map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    doq_ask(&conn, msg).await
}

fn doq_endpoint(cert: &TestCert) -> quinn::Endpoint {
    let tls = Arc::try_unwrap(cert.client_config(&[b"doq"])).unwrap_or_else(|a| (*a).clone());
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut client =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    client
}

async fn doq_ask(conn: &quinn::Connection, msg: &Message) -> Result<Message, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let bytes = msg.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    send.write_all(&framed).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let got = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(65_537))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    let len = usize::from(u16::from_be_bytes([got[0], got[1]]));
    assert_eq!(len + 2, got.len(), "length-prefixed");
    Message::from_vec(&got[2..]).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn doq_answers_a_stream_per_query_with_id_0_and_logs_doq() {
    let up = Upstream::start().await;
    let cert = cert();
    let e = start(&cert, &encrypted(up.addr, "", LOG_ALL)).await;
    let client = doq_endpoint(&cert);
    let conn = client
        .connect(e.quic[0], SERVER)
        .expect("connect")
        .await
        .expect("handshake");
    let (b, a) = (q("www.seized.example.", 0), q("www.up.test.", 0));
    let (blocked, allowed) = tokio::join!(doq_ask(&conn, &b), doq_ask(&conn, &a));
    let blocked = blocked.expect("blocked");
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(blocked.metadata.id, 0);
    assert_eq!(ede(&blocked).map(|(c, _)| c), Some(16));
    assert_eq!(a_records(&allowed.expect("allowed")), ["192.0.2.10"]);
    // A message ID other than 0 is a protocol error: the connection ends.
    let bad = doq_ask(&conn, &q("www.up.test.", 9)).await;
    assert!(bad.is_err(), "{bad:?}");
    let log = records(e.dir(), 2).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|r| r["proto"] == "doq"), "{log:?}");
}

// ---- real clients (ignored: they need knot-dnsutils, bind9-dnsutils,
// curl and dnsperf; .ci/run installs them and runs these) --------------

/// Embargo with a certificate for `dns.test` and 127.0.0.1, and the CA's
/// PEM written beside its config; the upstream also has `loop.up.test`
/// at 127.0.0.1 (for curl, which connects to what it resolved), and
/// `[http]` on loopback (what curl connects to).
async fn for_real_clients() -> (Upstream, Embargo, std::path::PathBuf) {
    let up = Upstream::start_with(&["loop IN A 127.0.0.1".to_string()]).await;
    let cert = TestCert::with_names(&[SERVER, "*.dns.test", "127.0.0.1"]);
    let cfg = crate::harness::with_http(
        &encrypted(up.addr, "", LOG_ALL),
        "listen = [\"127.0.0.1:0\"]",
    );
    let e = start(&cert, &cfg).await;
    let ca = e.dir().join("ca.pem");
    std::fs::write(&ca, &cert.ca_pem).expect("write ca");
    (up, e, ca)
}

/// Runs `cmd` (off the runtime's threads), returning its stdout and
/// stderr together; panics if it cannot start.
async fn run(cmd: &str, args: Vec<String>) -> (bool, String) {
    let shown = format!("{cmd} {}", args.join(" "));
    let cmd = cmd.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&cmd)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e} (is it installed?)"))
    })
    .await
    .expect("join");
    let text = format!(
        "{shown}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A dig-like tool's answers for a blocked and an allowed name: the first
/// says NXDOMAIN, the second has www.up.test's address.
async fn blocked_and_allowed(tool: &str, base: &[String]) {
    let mut blocked = base.to_vec();
    blocked.push("www.seized.example".into());
    let (_, out) = run(tool, blocked).await;
    assert!(out.contains("NXDOMAIN"), "{out}");
    let mut allowed = base.to_vec();
    allowed.push("www.up.test".into());
    let (ok, out) = run(tool, allowed).await;
    assert!(
        ok && out.contains("192.0.2.10") && out.contains("NOERROR"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs kdig (knot-dnsutils); run by .ci/run"]
async fn kdig_over_tls_and_https_checking_the_certificate() {
    let (_up, e, ca) = for_real_clients().await;
    let ca = ca.display().to_string();
    // Debian 12's kdig is built without QUIC (its +quic falls back to TCP):
    // DoQ's real client is aioquic's (the next test).
    for (transport, port) in [("+tls", e.tls[0].port()), ("+https", e.https[0].port())] {
        let base = strings(&[
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            transport,
            &format!("+tls-ca={ca}"),
            "+tls-hostname=dns.test",
            "+timeout=3",
            "+retry=0",
        ]);
        blocked_and_allowed("kdig", &base).await;
    }
    // Against a CA it does not know, kdig refuses the certificate.
    let (_, out) = run(
        "kdig",
        strings(&[
            "@127.0.0.1",
            "-p",
            &e.tls[0].port().to_string(),
            "+tls-ca=/etc/ssl/certs/ca-certificates.crt",
            "+tls-hostname=dns.test",
            "+timeout=2",
            "+retry=0",
            "www.up.test",
        ]),
    )
    .await;
    assert!(!out.contains("192.0.2.10"), "{out}");
    let log = records(e.dir(), 4).await;
    for proto in ["dot", "doh"] {
        assert!(log.iter().any(|r| r["proto"] == proto), "{proto}: {log:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs dig 9.18 (bind9-dnsutils); run by .ci/run"]
async fn dig_over_tls_and_https_checking_the_certificate() {
    let (_up, e, ca) = for_real_clients().await;
    let ca = ca.display().to_string();
    for (transport, port) in [("+tls", e.tls[0].port()), ("+https", e.https[0].port())] {
        let base = strings(&[
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            transport,
            &format!("+tls-ca={ca}"),
            "+tls-hostname=dns.test",
            "+timeout=3",
            "+tries=1",
        ]);
        blocked_and_allowed("dig", &base).await;
    }
    // dig's DoH over GET too.
    let base = strings(&[
        "@127.0.0.1",
        "-p",
        &e.https[0].port().to_string(),
        "+https-get",
        &format!("+tls-ca={ca}"),
        "+tls-hostname=dns.test",
        "+timeout=3",
        "+tries=1",
    ]);
    blocked_and_allowed("dig", &base).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs curl; run by .ci/run"]
async fn curl_resolves_through_doh() {
    let (_up, e, ca) = for_real_clients().await;
    let doh = format!("https://127.0.0.1:{}/dns-query", e.https[0].port());
    let http = e.http[0].port();
    // An allowed name (loop.up.test, 127.0.0.1): curl resolves it over DoH
    // and reaches embargo's own health check on loopback.
    let (ok, out) = run(
        "curl",
        strings(&[
            "-sS",
            "--max-time",
            "5",
            "--doh-url",
            &doh,
            "--cacert",
            &ca.display().to_string(),
            &format!("http://loop.up.test:{http}/healthz"),
        ]),
    )
    .await;
    assert!(ok, "{out}");
    // A blocked name does not resolve (NXDOMAIN): exit 6, never a connection.
    let (ok, out) = run(
        "curl",
        strings(&[
            "-sS",
            "--max-time",
            "5",
            "--doh-url",
            &doh,
            "--cacert",
            &ca.display().to_string(),
            &format!("http://seized.example:{http}/"),
        ]),
    )
    .await;
    assert!(!ok && out.contains("resolve"), "{out}");
    // Without the test's CA curl refuses the DoH server.
    let (ok, out) = run(
        "curl",
        strings(&[
            "-sS",
            "--max-time",
            "5",
            "--doh-url",
            &doh,
            &format!("http://loop.up.test:{http}/healthz"),
        ]),
    )
    .await;
    assert!(!ok, "{out}");
    let log = records(e.dir(), 2).await;
    assert!(
        log.iter()
            .any(|r| r["proto"] == "doh" && r["decision"] == "blocked"),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs dnsperf; run by .ci/run"]
async fn dnsperf_over_dot_and_doh() {
    let (_up, e, _ca) = for_real_clients().await;
    let queries = e.dir().join("queries.txt");
    std::fs::write(&queries, "www.seized.example A\nwww.up.test A\n").expect("write");
    // One query outstanding over DoH: dnsperf 2.10 loses answers it got
    // when several streams are open (its "HTTP/2 return codes" count them
    // all 200; DNS-OARC/dnsperf#240), whichever server answers.
    for (mode, port, outstanding) in [
        ("dot", e.tls[0].port(), "20"),
        ("doh", e.https[0].port(), "1"),
    ] {
        let (ok, out) = run(
            "dnsperf",
            strings(&[
                "-q",
                outstanding,
                "-m",
                mode,
                "-s",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-d",
                &queries.display().to_string(),
                "-n",
                "50",
                "-c",
                "2",
            ]),
        )
        .await;
        assert!(ok, "{out}");
        let completed = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Queries completed:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok());
        assert_eq!(completed, Some(100), "{out}");
        assert!(
            out.contains("NOERROR 50") && out.contains("NXDOMAIN 50"),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs python3 with aioquic (pip install aioquic); run by .ci/run"]
async fn aioquic_over_quic_checking_the_certificate() {
    let (_up, e, ca) = for_real_clients().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/doq_client.py");
    let ask = |name: &str, ca: &str| {
        strings(&[
            script,
            "127.0.0.1",
            &e.quic[0].port().to_string(),
            ca,
            SERVER,
            name,
        ])
    };
    let ca = ca.display().to_string();
    let (_, out) = run("python3", ask("www.seized.example", &ca)).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let (ok, out) = run("python3", ask("www.up.test", &ca)).await;
    assert!(
        ok && out.contains("status: NOERROR") && out.contains("192.0.2.10"),
        "{out}"
    );
    // Against a CA it does not know, the handshake fails.
    let (ok, out) = run(
        "python3",
        ask("www.up.test", "/etc/ssl/certs/ca-certificates.crt"),
    )
    .await;
    assert!(!ok && !out.contains("192.0.2.10"), "{out}");
    let log = records(e.dir(), 2).await;
    assert!(log.iter().all(|r| r["proto"] == "doq"), "{log:?}");
}
