//! Bad packets get the answer the RFCs prescribe (or none), never a panic,
//! and the server keeps answering good queries afterwards.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Embargo, Upstream, config, query, udp_raw};

fn raw(name: &str, rtype: RecordType, edns: bool) -> Vec<u8> {
    query(name, rtype, edns).to_vec().expect("encode")
}

/// A good query still gets its answer. Retried like a stub resolver does:
/// a flood of junk may have filled the socket buffer when the first try arrived.
async fn still_serving(e: &Embargo) {
    let q = query("seized.example.", RecordType::A, false);
    for _ in 0..5 {
        if let Some(reply) =
            udp_raw(e.addr, &q.to_vec().expect("encode"), Duration::from_secs(1)).await
        {
            let m = Message::from_vec(&reply).expect("decodes");
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            return;
        }
    }
    panic!("no answer to a good query after the bad ones");
}

async fn reply_code(e: &Embargo, bytes: &[u8]) -> Option<(Message, ResponseCode)> {
    let reply = udp_raw(e.addr, bytes, Duration::from_millis(500)).await?;
    let m = Message::from_vec(&reply).expect("reply decodes");
    let code = m.metadata.response_code;
    Some((m, code))
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_never_stops_the_server() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let good = raw("www.seized.example.", RecordType::A, true);
    for i in 0..2000 {
        let pkt: Vec<u8> = match i % 3 {
            0 => (0..rng.usize(0..600)).map(|_| rng.u8(..)).collect(),
            // Mutate a valid query: flip bytes, cut it short, or extend it.
            1 => {
                let mut p = good.clone();
                for _ in 0..rng.usize(1..6) {
                    let at = rng.usize(..p.len());
                    p[at] = rng.u8(..);
                }
                p
            }
            _ => good[..rng.usize(..good.len())].to_vec(),
        };
        // Clear QR so most reach the parser rather than being dropped.
        let mut pkt = pkt;
        if pkt.len() > 2 {
            pkt[2] &= 0x7f;
        }
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let _ = sock.send_to(&pkt, e.addr);
    }
    still_serving(&e).await;
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_errors_get_the_rfc_answers() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;

    // A response sent to the server is ignored (no reflection).
    let mut resp = raw("www.up.test.", RecordType::A, false);
    resp[2] |= 0x80;
    assert!(reply_code(&e, &resp).await.is_none());
    // Too short for a header: dropped.
    assert!(reply_code(&e, &[1, 2, 3]).await.is_none());

    // NOTIFY for a zone we are not a secondary of: REFUSED, opcode echoed.
    let mut p = raw("www.up.test.", RecordType::SOA, false);
    p[2] = (p[2] & 0x87) | (4 << 3);
    let (m, code) = reply_code(&e, &p).await.expect("reply");
    assert_eq!(code, ResponseCode::Refused);
    assert_eq!(u8::from(m.metadata.op_code), 4);

    // Unknown opcodes (IQUERY 1, STATUS 2, UPDATE 5, 15): NOTIMP, ID and opcode echoed.
    for opcode in [1u8, 2, 5, 15] {
        let mut p = raw("www.up.test.", RecordType::SOA, false);
        p[2] = (p[2] & 0x87) | (opcode << 3);
        let (m, code) = reply_code(&e, &p).await.expect("reply");
        assert_eq!(code, ResponseCode::NotImp, "opcode {opcode}");
        assert_eq!(m.metadata.id, u16::from_be_bytes([p[0], p[1]]));
        assert_eq!(u8::from(m.metadata.op_code), opcode);
    }

    // genreport's `opcodeflg`: opcode 15, every flag set, a bare header.
    // NOTIMP, opcode echoed, every flag but QR clear (as BIND answers).
    let mut p = raw("www.up.test.", RecordType::SOA, false);
    p.truncate(12);
    p[2] = (15 << 3) | 0x07; // opcode 15, AA, TC, RD
    p[3] = 0xf0; // RA, Z, AD, CD
    p[4] = 0;
    p[5] = 0;
    let reply = udp_raw(e.addr, &p, Duration::from_millis(500))
        .await
        .expect("reply");
    assert_eq!(reply.len(), 12, "header only");
    assert_eq!(
        u16::from_be_bytes([reply[2], reply[3]]),
        0x8000 | (15 << 11) | 4
    );

    // An unknown opcode with EDNS still gets an OPT back (RFC 6891 6.1.1).
    let mut p = raw("www.up.test.", RecordType::A, true);
    p[2] = (p[2] & 0x87) | (5 << 3);
    let (m, code) = reply_code(&e, &p).await.expect("reply");
    assert_eq!(code, ResponseCode::NotImp);
    assert!(m.edns.is_some(), "OPT in the NOTIMP answer");

    // FORMERR echoes CD (RFC 4035 3.1.6) as well as RD.
    let mut p = raw("www.up.test.", RecordType::A, false);
    p[3] |= 0x10;
    p.extend_from_slice(b"junk");
    let (m, code) = reply_code(&e, &p).await.expect("reply");
    assert_eq!(code, ResponseCode::FormErr);
    assert!(m.metadata.checking_disabled && m.metadata.recursion_desired);

    // QDCOUNT 0 and 2: FORMERR.
    let mut p = raw("www.up.test.", RecordType::A, false);
    p[5] = 0;
    p.truncate(12);
    assert_eq!(
        reply_code(&e, &p).await.expect("reply").1,
        ResponseCode::FormErr
    );
    let mut p = raw("www.up.test.", RecordType::A, false);
    let question = p[12..].to_vec();
    p[5] = 2;
    p.extend_from_slice(&question);
    assert_eq!(
        reply_code(&e, &p).await.expect("reply").1,
        ResponseCode::FormErr
    );

    // Question cut in the middle: FORMERR.
    let p = raw("www.up.test.", RecordType::A, false);
    assert_eq!(
        reply_code(&e, &p[..p.len() - 3]).await.expect("reply").1,
        ResponseCode::FormErr
    );

    // EDNS version 1: BADVERS with an OPT of version 0.
    let mut p = raw("www.up.test.", RecordType::A, true);
    let n = p.len();
    p[n - 5] = 1; // OPT TTL: ext-rcode, VERSION, flags
    let (m, code) = reply_code(&e, &p).await.expect("reply");
    // 16 is BADVERS in an OPT context (hickory names it BADSIG, the TSIG meaning).
    assert_eq!(u16::from(code), 16);
    assert_eq!(m.edns.as_ref().expect("opt").version(), 0);
    assert_eq!(up.count("www.up.test"), 0, "none of this went upstream");

    still_serving(&e).await;
    e.stop().await;
}

/// One framed message on an open TCP connection; the reply's RCODE.
async fn tcp_exchange(s: &mut tokio::net::TcpStream, msg: &[u8]) -> ResponseCode {
    s.write_all(&(msg.len() as u16).to_be_bytes())
        .await
        .expect("write");
    s.write_all(msg).await.expect("write");
    let len = s.read_u16().await.expect("reply length") as usize;
    let mut buf = vec![0; len];
    s.read_exact(&mut buf).await.expect("reply");
    Message::from_vec(&buf)
        .expect("decodes")
        .metadata
        .response_code
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tcp_frames_close_only_their_connection() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    // A frame longer than what follows, then EOF.
    let mut s = tokio::net::TcpStream::connect(e.addr)
        .await
        .expect("connect");
    s.write_all(&[0x01, 0x00, 1, 2, 3]).await.expect("write");
    drop(s);
    // Garbage in a well-formed frame gets FORMERR (or nothing), then the connection still works.
    let mut s = tokio::net::TcpStream::connect(e.addr)
        .await
        .expect("connect");
    let junk = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f];
    assert_eq!(tcp_exchange(&mut s, &junk).await, ResponseCode::FormErr);
    let q = raw("seized.example.", RecordType::A, false);
    assert_eq!(tcp_exchange(&mut s, &q).await, ResponseCode::NXDomain);
    still_serving(&e).await;
    e.stop().await;
}

/// A UDP upstream that answers every query with `A 192.0.2.1` and, after
/// it, additional records that hickory reads but that embargo must not pass
/// on as they came, chosen by the first label of the question:
/// - `overrun`: an OPT whose last option (an EDE) states 10 bytes where 4 are left;
/// - `after`: an OPT, then an A record whose owner points at bytes after the OPT;
/// - `tsig`: an OPT, then a TSIG (last, as RFC 8945 wants it).
///
/// Returns its address and how many queries it received.
async fn crafted_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = sock.local_addr().expect("addr");
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            seen.fetch_add(1, Ordering::SeqCst);
            if let Some(answer) = crafted_answer(&buf[..n]) {
                let _ = sock.send_to(&answer, peer).await;
            }
        }
    });
    (addr, count)
}

/// See [`crafted_upstream`].
fn crafted_answer(query: &[u8]) -> Option<Vec<u8>> {
    // The question: plain labels from offset 12, then type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let end = end + 5;
    let first_label = query.get(13..13 + usize::from(*query.get(12)?))?;
    let opt = |rdata: &[u8]| {
        let mut o = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0];
        o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        o.extend_from_slice(rdata);
        o
    };
    let mut a = query.get(..end)?.to_vec();
    a[2] = 0x81;
    a[3] = 0x80;
    a[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    let additional: u16 = match first_label {
        b"overrun" => {
            // A cookie, then an EDE claiming 10 bytes where 4 are left.
            a.extend_from_slice(&opt(&[
                0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 15, 0, 10, 0, 18, b'x', b'y',
            ]));
            1
        }
        b"after" => {
            a.extend_from_slice(&opt(&[]));
            // `glue.<question>` A, then AAAA with its owner a pointer to that.
            let glue = a.len();
            a.extend_from_slice(
                b"\x04glue\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x02",
            );
            a.extend_from_slice(&[0xc0 | (glue >> 8) as u8, glue as u8]);
            a.extend_from_slice(&[0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
            a.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            3
        }
        b"tsig" => {
            a.extend_from_slice(&opt(&[]));
            a.extend_from_slice(b"\x03key\x00\x00\xfa\x00\xff\x00\x00\x00\x00\x00\x1d");
            a.extend_from_slice(b"\x0bhmac-sha256\x00");
            a.extend_from_slice(&[0, 0, 0, 0, 0, 1, 1, 44, 0, 0, 0, 1, 0, 0, 0, 0]);
            2
        }
        _ => 0,
    };
    a[10..12].copy_from_slice(&additional.to_be_bytes());
    Some(a)
}

/// Issue 16 (10): an upstream's OPT whose option overruns it, records after
/// its OPT, and a TSIG after that were passed on as they came, and cached:
/// the client's answer did not parse, or read other records than were
/// sent. Now the client's answer parses, fresh and from the cache, with
/// the answer and embargo's own OPT.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_malformed_opt_from_upstream_reaches_no_client() {
    use std::sync::atomic::Ordering;
    let (up, asked) = crafted_upstream().await;
    let e = Embargo::start(&config(up, ""), &[]).await;
    for (n, name) in ["overrun.up.test.", "after.up.test.", "tsig.up.test."]
        .into_iter()
        .enumerate()
    {
        for (time, proto) in [(0, "udp"), (1, "udp (cached)"), (2, "tcp (cached)")] {
            let q = raw(name, RecordType::A, true);
            let reply = if time < 2 {
                udp_raw(e.addr, &q, Duration::from_secs(3))
                    .await
                    .expect("a reply")
            } else {
                let mut s = tokio::net::TcpStream::connect(e.addr)
                    .await
                    .expect("connect");
                s.write_all(&(q.len() as u16).to_be_bytes())
                    .await
                    .expect("write");
                s.write_all(&q).await.expect("write");
                let len = s.read_u16().await.expect("length");
                let mut buf = vec![0; usize::from(len)];
                s.read_exact(&mut buf).await.expect("reply");
                buf
            };
            let m = Message::from_vec(&reply)
                .unwrap_or_else(|err| panic!("{name} over {proto}: {err}: {reply:02x?}"));
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{name} {proto}"
            );
            assert_eq!(m.answers.len(), 1, "{name} {proto}");
            assert!(
                m.additionals.is_empty(),
                "{name} {proto}: {:?}",
                m.additionals
            );
            let edns = m.edns.as_ref().expect("embargo's OPT");
            assert_eq!(edns.max_payload(), 1232, "{name} {proto}");
            assert!(
                edns.options().as_ref().is_empty(),
                "{name} {proto}: no option of theirs"
            );
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            n + 1,
            "{name}: the second ask is cached"
        );
    }
    still_serving(&e).await;
    e.stop().await;
}
