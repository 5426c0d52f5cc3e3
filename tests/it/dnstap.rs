//! dnstap (`[dnstap]`) against the running server: what reaches a
//! collector on a unix socket, frame by frame (a collector the test runs
//! itself, so plain `cargo test` covers the handshake, the messages and
//! the reconnection), and what Debian's own readers make of it:
//! `fstrm_capture` (fstrm-bin) receives, `dnstap-ldns` (dnstap-ldns)
//! decodes. That last test is ignored unless asked for; `.ci/run` installs
//! both packages and runs it with `--ignored dnstap::`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use embargo::observe::dnstap::{CONTENT_TYPE, Control, ControlFrame, push_control, read_control};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::harness::{Embargo, Upstream, config, query};

/// The config of these tests: the usual one, dnstap to `sock`.
fn dnstap_config(upstream: SocketAddr, sock: &Path) -> String {
    format!(
        "{}\n[dnstap]\nsocket = \"{}\"\nidentity = \"it-identity\"\nversion = \"it-version\"\n",
        config(upstream, ""),
        sock.display()
    )
}

/// One query over UDP from a fresh socket; the reply and the client's address.
async fn udp(addr: SocketAddr, name: &str, rtype: RecordType) -> (Message, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = sock.local_addr().expect("addr");
    let msg = query(name, rtype, true);
    sock.send_to(&msg.to_vec().expect("encode"), addr)
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a reply in time")
        .expect("recv");
    (Message::from_vec(&buf[..n]).expect("reply"), me)
}

/// One query over TCP; the reply and the client's address.
async fn tcp(addr: SocketAddr, name: &str, rtype: RecordType) -> (Message, SocketAddr) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let me = s.local_addr().expect("addr");
    let b = query(name, rtype, false).to_vec().expect("encode");
    let mut framed = (b.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&b);
    s.write_all(&framed).await.expect("write");
    let len = tokio::time::timeout(Duration::from_secs(3), s.read_u16())
        .await
        .expect("reply in time")
        .expect("length");
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.expect("body");
    (Message::from_vec(&buf).expect("reply"), me)
}

// ---- a collector the test runs ------------------------------------------

/// A protobuf field value, as this test reads it (independently of the
/// encoder under test).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pb {
    Int(u64),
    Bytes(Vec<u8>),
}

fn varint(b: &mut &[u8]) -> u64 {
    let (mut n, mut shift) = (0u64, 0);
    loop {
        let (&byte, rest) = b.split_first().expect("varint");
        *b = rest;
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return n;
        }
        shift += 7;
    }
}

fn protobuf(mut b: &[u8]) -> Vec<(u64, Pb)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let value = match key & 7 {
            0 => Pb::Int(varint(&mut b)),
            5 => {
                let v = u32::from_le_bytes(b[..4].try_into().expect("fixed32"));
                b = &b[4..];
                Pb::Int(u64::from(v))
            }
            2 => {
                let n = varint(&mut b) as usize;
                let v = b[..n].to_vec();
                b = &b[n..];
                Pb::Bytes(v)
            }
            w => panic!("wire type {w}"),
        };
        out.push((key >> 3, value));
    }
    out
}

/// One decoded dnstap message.
#[derive(Debug)]
struct Tapped {
    identity: Vec<u8>,
    version: Vec<u8>,
    /// 5 CLIENT_QUERY, 6 CLIENT_RESPONSE.
    kind: u64,
    family: u64,
    protocol: u64,
    address: IpAddr,
    port: u16,
    /// The address and port the client sent to (the server's).
    response_address: Option<IpAddr>,
    response_port: Option<u16>,
    query_time: Option<(u64, u64)>,
    response_time: Option<(u64, u64)>,
    /// The DNS message (the query for 5, the answer for 6).
    dns: Message,
}

fn decode(frame: &[u8]) -> Tapped {
    let top = protobuf(frame);
    let bytes = |fields: &[(u64, Pb)], n: u64| {
        fields.iter().find_map(|(f, v)| match v {
            Pb::Bytes(b) if *f == n => Some(b.clone()),
            _ => None,
        })
    };
    let int = |fields: &[(u64, Pb)], n: u64| {
        fields.iter().find_map(|(f, v)| match v {
            Pb::Int(i) if *f == n => Some(*i),
            _ => None,
        })
    };
    assert_eq!(int(&top, 15), Some(1), "Dnstap.type MESSAGE");
    let m = protobuf(&bytes(&top, 14).expect("Dnstap.message"));
    let kind = int(&m, 1).expect("Message.type");
    let ip = |addr: Vec<u8>| match addr.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(&addr[..]).expect("v4")),
        _ => IpAddr::from(<[u8; 16]>::try_from(&addr[..]).expect("v6")),
    };
    let address = ip(bytes(&m, 4).expect("query_address"));
    let dns = bytes(&m, if kind == 5 { 10 } else { 14 }).expect("the DNS message");
    Tapped {
        identity: bytes(&top, 1).unwrap_or_default(),
        version: bytes(&top, 2).unwrap_or_default(),
        kind,
        family: int(&m, 2).expect("socket_family"),
        protocol: int(&m, 3).expect("socket_protocol"),
        address,
        port: int(&m, 6).expect("query_port") as u16,
        response_address: bytes(&m, 5).map(ip),
        response_port: int(&m, 7).map(|p| p as u16),
        query_time: int(&m, 8).zip(int(&m, 9)),
        response_time: int(&m, 12).zip(int(&m, 13)),
        dns: Message::from_vec(&dns).expect("a DNS message"),
    }
}

/// What one connection brought: the data frames, and whether it ended
/// with STOP (answered with FINISH) rather than the writer going away.
struct Session {
    frames: Vec<Vec<u8>>,
    stopped: bool,
}

/// Accepts one writer and does the reader's half of the handshake.
fn accept(listener: &UnixListener) -> UnixStream {
    let (mut s, _) = listener.accept().expect("accept");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let ready = read_control(&mut s).expect("READY");
    assert_eq!(
        ready,
        ControlFrame {
            kind: Control::Ready,
            content_types: vec![CONTENT_TYPE.to_vec()]
        }
    );
    let mut accept = Vec::new();
    push_control(&mut accept, Control::Accept, true);
    s.write_all(&accept).expect("ACCEPT");
    let start = read_control(&mut s).expect("START");
    assert_eq!(start.kind, Control::Start);
    assert_eq!(start.content_types, [CONTENT_TYPE.to_vec()]);
    s
}

/// Reads one frame: `Ok(data)` or `Err(control)`.
fn frame(s: &mut UnixStream) -> std::io::Result<Result<Vec<u8>, ControlFrame>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        let mut word = [0u8; 4];
        s.read_exact(&mut word)?;
        let mut body = vec![0u8; u32::from_be_bytes(word) as usize];
        s.read_exact(&mut body)?;
        return Ok(Err(embargo::observe::dnstap::parse_control(&body)?));
    }
    let mut data = vec![0u8; len];
    s.read_exact(&mut data)?;
    Ok(Ok(data))
}

/// Reads data frames until STOP (answered with FINISH) or, after `limit`
/// frames, stops reading.
fn collect(mut s: UnixStream, limit: usize, seen: &mpsc::Sender<usize>) -> Session {
    let mut frames = Vec::new();
    loop {
        match frame(&mut s).expect("a frame") {
            Ok(data) => {
                frames.push(data);
                let _ = seen.send(frames.len());
                if frames.len() >= limit {
                    return Session {
                        frames,
                        stopped: false,
                    };
                }
            }
            Err(control) => {
                assert_eq!(control.kind, Control::Stop, "{control:?}");
                let mut finish = Vec::new();
                push_control(&mut finish, Control::Finish, false);
                s.write_all(&finish).expect("FINISH");
                // The writer closes after FINISH.
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                assert!(rest.is_empty(), "nothing after STOP: {rest:?}");
                return Session {
                    frames,
                    stopped: true,
                };
            }
        }
    }
}

fn find<'a>(tapped: &'a [Tapped], kind: u64, name: &str, port: u16) -> &'a Tapped {
    tapped
        .iter()
        .find(|t| {
            t.kind == kind
                && t.port == port
                && t.dns.queries.first().map(|q| q.name().to_ascii()) == Some(name.into())
        })
        .unwrap_or_else(|| {
            panic!("no message of type {kind} for {name} from port {port} in {tapped:#?}")
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_query_and_answer_reaches_the_collector_as_dnstap_frames() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("dnstap.sock");
    let listener = UnixListener::bind(&sock).expect("listen");
    let (seen, _frames_seen) = mpsc::channel();
    let collector = std::thread::spawn(move || collect(accept(&listener), usize::MAX, &seen));
    let e = Embargo::start(&dnstap_config(up.addr, &sock), &[]).await;
    let e_addr = e.addr;

    let (r, blocked) = udp(e.addr, "www.seized.example.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let (r, forwarded) = udp(e.addr, "www.up.test.", RecordType::AAAA).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let (r, over_tcp) = tcp(e.addr, "sanctioned.example.", RecordType::TXT).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let (r, forwarded_tcp) = tcp(e.addr, "txt.up.test.", RecordType::TXT).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let observer = e.handler.observer().clone();
    e.stop().await;

    let session = collector.join().expect("collector");
    assert!(session.stopped, "the stream ends with STOP on shutdown");
    let tapped: Vec<Tapped> = session.frames.iter().map(|f| decode(f)).collect();
    assert_eq!(tapped.len(), 8, "a query and an answer each: {tapped:#?}");
    assert_eq!(observer.dnstap_sent(), 8);
    assert_eq!(observer.dnstap_dropped(), 0);
    for t in &tapped {
        assert_eq!(t.identity, b"it-identity");
        assert_eq!(t.version, b"it-version");
        assert_eq!(t.address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(t.family, 1, "INET");
        assert!(t.query_time.is_some(), "{t:?}");
        // Issue 21: the address the client sent to, the server's.
        assert_eq!(
            (t.response_address, t.response_port),
            (Some(IpAddr::from([127, 0, 0, 1])), Some(e_addr.port())),
            "response_address and response_port: {t:?}"
        );
    }

    let q = find(&tapped, 5, "www.seized.example.", blocked.port());
    assert_eq!(q.protocol, 1, "UDP");
    assert_eq!(q.dns.queries[0].query_type(), RecordType::A);
    assert!(q.response_time.is_none(), "a query has no answer time");
    let a = find(&tapped, 6, "www.seized.example.", blocked.port());
    assert_eq!(a.dns.metadata.response_code, ResponseCode::NXDomain);
    let (qt, rt) = (
        a.query_time.expect("query time"),
        a.response_time.expect("response time"),
    );
    assert_eq!(
        Some(qt),
        q.query_time,
        "the answer says when its query came"
    );
    assert!(rt >= qt, "{rt:?} before {qt:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    assert!(now.abs_diff(rt.0) < 60, "{rt:?} is not now ({now})");

    let q = find(&tapped, 5, "www.up.test.", forwarded.port());
    assert_eq!(q.dns.queries[0].query_type(), RecordType::AAAA);
    let a = find(&tapped, 6, "www.up.test.", forwarded.port());
    assert_eq!(a.dns.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a.dns.answers.len(), 1, "{:?}", a.dns);
    assert_eq!(a.query_time, q.query_time);
    assert!(a.response_time >= a.query_time);

    for (name, port, rcode) in [
        (
            "sanctioned.example.",
            over_tcp.port(),
            ResponseCode::NXDomain,
        ),
        ("txt.up.test.", forwarded_tcp.port(), ResponseCode::NoError),
    ] {
        let q = find(&tapped, 5, name, port);
        assert_eq!(q.protocol, 2, "TCP");
        let a = find(&tapped, 6, name, port);
        assert_eq!(a.protocol, 2, "TCP");
        assert_eq!(a.dns.metadata.response_code, rcode);
    }
}

/// Issue 21: on a wildcard listener, `response_address` is the address
/// the query arrived on (UDP: its IP_PKTINFO; TCP: the connection's), not
/// `0.0.0.0`. Queries go to 127.0.0.1 only.
#[tokio::test(flavor = "multi_thread")]
async fn r21_a_wildcard_listener_sends_the_address_the_query_arrived_on() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("dnstap.sock");
    let listener = UnixListener::bind(&sock).expect("listen");
    let (seen, _frames_seen) = mpsc::channel();
    let collector = std::thread::spawn(move || collect(accept(&listener), usize::MAX, &seen));
    let text = dnstap_config(up.addr, &sock).replacen(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"0.0.0.0:0\"]",
        1,
    );
    let e = Embargo::start(&text, &[]).await;
    assert!(e.addr.ip().is_unspecified(), "{}", e.addr);
    let to = SocketAddr::from(([127, 0, 0, 1], e.addr.port()));
    let (_, blocked) = udp(to, "www.seized.example.", RecordType::A).await;
    let (_, forwarded) = udp(to, "www.up.test.", RecordType::A).await;
    let (_, over_tcp) = tcp(to, "sanctioned.example.", RecordType::A).await;
    e.stop().await;
    let session = collector.join().expect("collector");
    let tapped: Vec<Tapped> = session.frames.iter().map(|f| decode(f)).collect();
    assert_eq!(tapped.len(), 6, "{tapped:#?}");
    for (name, port) in [
        ("www.seized.example.", blocked.port()),
        ("www.up.test.", forwarded.port()),
        ("sanctioned.example.", over_tcp.port()),
    ] {
        for kind in [5, 6] {
            let t = find(&tapped, kind, name, port);
            assert_eq!(
                (t.response_address, t.response_port),
                (Some(to.ip()), Some(to.port())),
                "{t:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_writer_reconnects_when_the_collector_goes_away_and_counts_what_it_lost() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("dnstap.sock");
    let listener = UnixListener::bind(&sock).expect("listen");
    let (seen, frames_seen) = mpsc::channel();
    let collector = std::thread::spawn(move || {
        // The first collector takes one frame and goes away; the second
        // stays to the end.
        let first = collect(accept(&listener), 1, &seen);
        let second = collect(accept(&listener), usize::MAX, &seen);
        (first, second)
    });
    let e = Embargo::start(&dnstap_config(up.addr, &sock), &[]).await;
    udp(e.addr, "first.seized.example.", RecordType::A).await;
    assert_eq!(
        frames_seen.recv_timeout(Duration::from_secs(5)),
        Ok(1),
        "the first collector got a frame"
    );
    // Queries until the writer has noticed, reconnected and sent to the
    // second collector (bounded: 100 queries, 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reconnected = false;
    for i in 0..100 {
        udp(e.addr, &format!("q{i}.seized.example."), RecordType::A).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if frames_seen.try_iter().count() > 0 {
            reconnected = true;
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    assert!(reconnected, "no frame reached the second collector");
    let (_, after) = udp(e.addr, "after.seized.example.", RecordType::A).await;
    let observer = e.handler.observer().clone();
    e.stop().await;
    let (first, second) = collector.join().expect("collector");
    assert_eq!(first.frames.len(), 1);
    assert!(second.stopped);
    let tapped: Vec<Tapped> = second.frames.iter().map(|f| decode(f)).collect();
    find(&tapped, 6, "after.seized.example.", after.port());
    assert!(
        observer.dnstap_dropped() > 0,
        "the messages written into the closed connection are counted"
    );
}

// ---- Debian's readers ---------------------------------------------------

/// `fstrm_capture` reading `sock` into `file`, killed (SIGTERM, so that it
/// closes the file properly) when dropped.
struct Capture {
    child: Child,
}

impl Capture {
    fn start(sock: &Path, file: &Path) -> Self {
        let child = Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(sock)
            .arg("-w")
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fstrm_capture (Debian package fstrm-bin) runs");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "fstrm_capture made no socket at {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child }
    }

    /// SIGTERM, then wait for it to finish the file.
    fn finish(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "fstrm_capture did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dnstap_ldns(file: &Path) -> String {
    let out = Command::new("dnstap-ldns")
        .arg("-r")
        .arg(file)
        .output()
        .expect("dnstap-ldns (Debian package dnstap-ldns) runs");
    assert!(
        out.status.success(),
        "dnstap-ldns failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs fstrm-bin and dnstap-ldns: .ci/run runs it"]
async fn fstrm_capture_receives_and_dnstap_ldns_decodes_what_embargo_sends() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("dnstap.sock");
    let file: PathBuf = dir.path().join("capture.fstrm");
    let capture = Capture::start(&sock, &file);
    let e = Embargo::start(&dnstap_config(up.addr, &sock), &[]).await;
    let (r, blocked) = udp(e.addr, "www.seized.example.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let (r, forwarded) = udp(e.addr, "mx.up.test.", RecordType::MX).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    e.stop().await;
    capture.finish();

    let text = dnstap_ldns(&file);
    println!("{text}");
    // dnstap-ldns's default (quiet) output: one line per message,
    // `DATE TIME CQ|CR ADDRESS PROTO SIZEb "NAME" CLASS TYPE`; a message
    // it cannot parse shows `? ? ?` there.
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 4, "two queries, two answers:\n{text}");
    let has = |kind: &str, name: &str, rtype: &str, proto: &str| {
        lines.iter().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.contains(&kind)
                && words.contains(&"127.0.0.1")
                && words.contains(&proto)
                && l.contains(&format!("\"{name}\" IN {rtype}"))
        })
    };
    for kind in ["CQ", "CR"] {
        assert!(
            has(kind, "www.seized.example.", "A", "UDP"),
            "{kind} for the block:\n{text}"
        );
        assert!(
            has(kind, "mx.up.test.", "MX", "UDP"),
            "{kind} for the forward:\n{text}"
        );
    }

    // The YAML output (`-y`) has the ports and the whole answers, in dig's words.
    let out = Command::new("dnstap-ldns")
        .args(["-y", "-r"])
        .arg(&file)
        .output()
        .expect("dnstap-ldns -y");
    let yaml = String::from_utf8_lossy(&out.stdout);
    println!("{yaml}");
    for (name, port, rcode) in [
        ("www.seized.example.", blocked.port(), "NXDOMAIN"),
        ("mx.up.test.", forwarded.port(), "NOERROR"),
    ] {
        let doc = yaml
            .split("---")
            .find(|d| {
                d.contains("type: CLIENT_RESPONSE") && d.contains(&format!("query_port: {port}"))
            })
            .unwrap_or_else(|| panic!("no CLIENT_RESPONSE to port {port}:\n{yaml}"));
        assert!(doc.contains("query_address: \"127.0.0.1\""), "{doc}");
        assert!(doc.contains("socket_protocol: UDP"), "{doc}");
        assert!(doc.contains("identity: \"it-identity\""), "{doc}");
        assert!(doc.contains(&format!("rcode: {rcode},")), "{doc}");
        assert!(doc.contains(&format!(";{name}\tIN\t")), "{doc}");
    }
}

/// Issue 21: the `tcp =` target, against a real reader. `fstrm_capture`
/// listens on a loopback TCP port; what embargo sends there is read back
/// by `dnstap-ldns`, query and answer.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs fstrm-bin and dnstap-ldns: .ci/run runs it"]
async fn r21_the_tcp_target_reaches_fstrm_capture() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file: PathBuf = dir.path().join("capture.fstrm");
    // A free port, closed again for the reader to take.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("fstrm_capture")
        .args(["-t", "protobuf:dnstap.Dnstap", "-a", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-w")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fstrm_capture (Debian package fstrm-bin) runs");
    let capture = Capture { child };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "fstrm_capture does not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = format!(
        "{}\n[dnstap]\ntcp = \"127.0.0.1:{port}\"\n",
        config(up.addr, "")
    );
    let e = Embargo::start(&text, &[]).await;
    let (r, _) = udp(e.addr, "www.seized.example.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    e.stop().await;
    capture.finish();
    let text = dnstap_ldns(&file);
    for kind in ["CQ", "CR"] {
        assert!(
            text.lines().any(|l| l.contains(&format!(" {kind} "))
                && l.contains("127.0.0.1")
                && l.contains("\"www.seized.example.\" IN A")),
            "{kind} for the block:\n{text}"
        );
    }
}
