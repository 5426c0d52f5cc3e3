//! DNS over TLS and over HTTPS to a real hickory-server on loopback, with a
//! private CA made for the test and trusted through `ca_file`: answers come
//! through, one connection carries every query, and a certificate for
//! another name is refused (SERVFAIL, and a log line that says why).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{Embargo, TestCert, Upstream, config, ede, query, tcp, udp};

/// The harness config forwarding to `server` (as written), trusting `ca.pem`.
fn secure_config(server: &str) -> String {
    let any: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    config(any, "").replace(
        "servers = [\"127.0.0.1:9\"]",
        &format!("servers = [\"{server}\"]\nca_file = \"ca.pem\""),
    )
}

/// Answers through `server`, several at once, then checks one handshake
/// served them all.
async fn answers_over_one_connection(up: &Upstream, server: &str) {
    let cert_pem = ca_pem_of(up);
    let e = Embargo::start(&secure_config(server), &[("ca.pem", &cert_pem)]).await;
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        r.answers[0].data,
        RData::A("192.0.2.10".parse().expect("ip"))
    );
    let r = tcp(e.addr, &query("nope.up.test.", RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // Twenty at once: pipelined (DoT) or multiplexed (DoH) on the same connection.
    let mut clients = Vec::new();
    for i in 0..20 {
        let msg = query(&format!("p{i}.up.test."), RecordType::A, false);
        let addr = e.addr;
        clients.push(tokio::spawn(async move { udp(addr, &msg).await }));
    }
    for c in clients {
        let r = c.await.expect("client");
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(up.count("www.up.test"), 1);
    assert_eq!(up.count("p19.up.test"), 1);
    assert_eq!(
        up.handshakes.load(Ordering::SeqCst),
        1,
        "22 queries, one TLS handshake"
    );
    e.stop().await;
}

/// Each test makes its own CA; the upstream keeps the PEM for the config.
fn ca_pem_of(up: &Upstream) -> String {
    up.ca_pem.clone().expect("a secure upstream")
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_over_tls_answers_through_one_reused_connection() {
    let cert = TestCert::new("dns.test");
    let up = Upstream::start_secure(&cert).await;
    let tls = up.tls_addr.expect("DoT listener");
    answers_over_one_connection(&up, &format!("tls://{tls}#dns.test")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_over_https_answers_through_one_reused_connection() {
    let cert = TestCert::new("dns.test");
    let up = Upstream::start_secure(&cert).await;
    let https = up.https_addr.expect("DoH listener");
    answers_over_one_connection(&up, &format!("https://{https}/dns-query#dns.test")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_certificate_is_refused() {
    // Without ca_file the private CA is unknown: no answer gets through.
    let cert = TestCert::new("dns.test");
    let up = Upstream::start_secure(&cert).await;
    let tls = up.tls_addr.expect("DoT listener");
    let text =
        secure_config(&format!("tls://{tls}#dns.test")).replace("ca_file = \"ca.pem\"\n", "");
    let e = Embargo::start(&text, &[]).await;
    let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&r).map(|(c, _)| c), Some(22));
    assert_eq!(up.count("www.up.test"), 0);
    e.stop().await;
}

/// The real binary, so that its log can be read: a certificate for another
/// name gives SERVFAIL and a warning naming the upstream and the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_server_name_gives_servfail_and_says_why() {
    let cert = TestCert::new("dns.test");
    let up = Upstream::start_secure(&cert).await;
    let (tls, https) = (
        up.tls_addr.expect("DoT listener"),
        up.https_addr.expect("DoH listener"),
    );
    for server in [
        format!("tls://{tls}#wrong.test"),
        format!("https://{https}/dns-query#wrong.test"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("seized.txt"), crate::harness::SEIZED_LIST).expect("list");
        std::fs::write(dir.path().join("ca.pem"), ca_pem_of(&up)).expect("ca");
        let path = dir.path().join("embargo.toml");
        std::fs::write(&path, secure_config(&server)).expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_embargo"))
            .args(["run", "-c", path.to_str().expect("utf8")])
            .env("RUST_LOG", "warn,embargo::server=info")
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
        let addr = wait_for_listen(&rx);
        let r = udp(addr, &query("www.up.test.", RecordType::A, true)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{server}");
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && !log
                .iter()
                .any(|l: &String| l.contains("not valid for name"))
        {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                log.push(line);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let line = log
            .iter()
            .find(|l| l.contains("upstream connection failed"))
            .unwrap_or_else(|| panic!("no connection warning for {server} in {log:#?}"));
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains(&server), "names the upstream: {line}");
        assert!(
            line.contains("not valid for name") && line.contains("wrong.test"),
            "says why: {line}"
        );
        assert!(
            line.contains("certificate rejected: not valid for the server name"),
            "in words the client's EDE text also has: {line}"
        );
    }
    assert_eq!(up.count("www.up.test"), 0);
}

/// Issue 16 finding 14: `openssl req -x509`, the way most home labs make
/// a certificate, marks it CA:TRUE, and WebPKI refuses a CA certificate as
/// a server's own even when `ca_file` holds it. The very certificate in
/// `ca_file` is a pin: DoT and DoH answer through it.
#[tokio::test(flavor = "multi_thread")]
async fn a_self_signed_ca_certificate_in_ca_file_is_pinned() {
    let cert = TestCert::self_signed_ca("dns.test");
    let up = Upstream::start_secure(&cert).await;
    let tls = up.tls_addr.expect("DoT listener");
    answers_over_one_connection(&up, &format!("tls://{tls}#dns.test")).await;
    let up = Upstream::start_secure(&cert).await;
    let https = up.https_addr.expect("DoH listener");
    answers_over_one_connection(&up, &format!("https://{https}/dns-query#dns.test")).await;
}

/// A refused certificate says why in the EDE 22 text the client gets, in
/// words that name neither the upstream nor its address.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_certificate_is_named_in_the_ede_text() {
    let pinned = TestCert::self_signed_ca("dns.test");
    let signed = TestCert::new("dns.test");
    let other_ca = TestCert::new("other.test").ca_pem;
    // The server's certificate, what ca_file holds, the name asked for.
    let cases = [
        (
            &pinned,
            Some(&other_ca),
            "dns.test",
            "certificate rejected: CA certificate used as a server certificate",
        ),
        (
            &pinned,
            Some(&pinned.ca_pem),
            "wrong.test",
            "certificate rejected: not valid for the server name",
        ),
        (
            &signed,
            None,
            "dns.test",
            "certificate rejected: unknown issuer",
        ),
        (
            &signed,
            Some(&signed.ca_pem),
            "wrong.test",
            "certificate rejected: not valid for the server name",
        ),
    ];
    for (cert, ca, name, reason) in cases {
        let up = Upstream::start_secure(cert).await;
        let (tls, https) = (
            up.tls_addr.expect("DoT listener"),
            up.https_addr.expect("DoH listener"),
        );
        for server in [
            format!("tls://{tls}#{name}"),
            format!("https://{https}/dns-query#{name}"),
        ] {
            let mut text = secure_config(&server);
            let mut files = Vec::new();
            match ca {
                Some(pem) => files.push(("ca.pem", pem.as_str())),
                None => text = text.replace("ca_file = \"ca.pem\"\n", ""),
            }
            let e = Embargo::start(&text, &files).await;
            let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
            assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{server}");
            assert_eq!(ede(&r), Some((22, reason.to_string())), "{server}");
            e.stop().await;
        }
        assert_eq!(up.count("www.up.test"), 0);
    }
}

/// Reads the log until the "listening on udp" line and returns its address.
fn wait_for_listen(rx: &std::sync::mpsc::Receiver<String>) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("listening on udp")
                && let Some(addr) = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|s| s.parse().ok())
            {
                return addr;
            }
            seen.push(line);
        }
    }
    panic!("embargo did not start: {seen:#?}");
}
