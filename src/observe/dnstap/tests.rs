//! The dnstap tests that need no collector: the control frames, the
//! messages field by field, the records and the rings.

use super::message::push_frames;
use super::*;

/// A protobuf field as a test reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Varint(u64),
    Fixed32(u32),
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

/// Decodes a message into (field number, value) in order.
fn fields(mut b: &[u8]) -> Vec<(u32, Field)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let field = (key >> 3) as u32;
        let value = match key & 7 {
            0 => Field::Varint(varint(&mut b)),
            5 => {
                let v = u32::from_le_bytes(b[..4].try_into().expect("fixed32"));
                b = &b[4..];
                Field::Fixed32(v)
            }
            2 => {
                let n = varint(&mut b) as usize;
                let v = b[..n].to_vec();
                b = &b[n..];
                Field::Bytes(v)
            }
            w => panic!("wire type {w}"),
        };
        out.push((field, value));
    }
    out
}

fn get(fields: &[(u32, Field)], n: u32) -> Option<&Field> {
    fields.iter().find(|(f, _)| *f == n).map(|(_, v)| v)
}

const QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x06seized\x07example\x00\x00\x01\x00\x01";

fn entry<'a>(query: &'a [u8], response: &'a [u8]) -> Entry<'a> {
    Entry {
        client: "192.0.2.7:53124".parse().expect("addr"),
        server: None,
        transport: Transport::Udp,
        query_us: 1_700_000_000_123_456,
        response_us: 1_700_000_000_124_000,
        query,
        response,
    }
}

#[test]
fn control_frames_have_the_frame_streams_layout() {
    let mut f = Vec::new();
    push_control(&mut f, Control::Ready, true);
    let mut want = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 22];
    want.extend_from_slice(b"protobuf:dnstap.Dnstap");
    assert_eq!(f, want);
    let back = read_control(&mut &f[..]).expect("reads");
    assert_eq!(back.kind, Control::Ready);
    assert_eq!(back.content_types, [CONTENT_TYPE.to_vec()]);

    f.clear();
    push_control(&mut f, Control::Stop, false);
    assert_eq!(f, [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]);
    assert_eq!(
        read_control(&mut &f[..]).expect("reads").kind,
        Control::Stop
    );
}

#[test]
fn bad_control_frames_are_errors_not_panics() {
    for bad in [
        &b"\0\0\0\x05abcd"[..],                              // a data frame
        b"\0\0\0\0\0\0\x10\0",                               // too long
        b"\0\0\0\0\0\0\0\x04\0\0\0\x09",                     // unknown type
        b"\0\0\0\0\0\0\0\x0c\0\0\0\x01\0\0\0\x01\0\0\x01\0", // field past the end
        b"\0\0\0\0\0\0\0\x04\0\0",                           // short
    ] {
        assert!(read_control(&mut &bad[..]).is_err(), "{bad:?}");
    }
}

#[test]
fn a_client_query_frame_carries_every_field() {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let e = entry(QUERY, b"answer");
    push_frame(
        &mut out,
        &mut scratch,
        b"host-1",
        b"embargo 1.0",
        MessageType::ClientQuery,
        &e,
    );
    let len = u32::from_be_bytes(out[..4].try_into().expect("len")) as usize;
    assert_eq!(len, out.len() - 4, "one data frame, its length first");
    let top = fields(&out[4..]);
    assert_eq!(
        top.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 14, 15]
    );
    assert_eq!(get(&top, 1), Some(&Field::Bytes(b"host-1".to_vec())));
    assert_eq!(get(&top, 2), Some(&Field::Bytes(b"embargo 1.0".to_vec())));
    assert_eq!(get(&top, 15), Some(&Field::Varint(1)));
    let Some(Field::Bytes(m)) = get(&top, 14) else {
        panic!("no message in {top:?}");
    };
    let m = fields(m);
    assert_eq!(
        m,
        [
            (1, Field::Varint(5)),
            (2, Field::Varint(1)),
            (3, Field::Varint(1)),
            (4, Field::Bytes(vec![192, 0, 2, 7])),
            (6, Field::Varint(53124)),
            (8, Field::Varint(1_700_000_000)),
            (9, Field::Fixed32(123_456_000)),
            (10, Field::Bytes(QUERY.to_vec())),
        ]
    );
}

/// Issue 21: the address the client sent to, the server's, is dnstap's
/// `response_address` and `response_port` (fields 5 and 7), in both
/// messages, through the ring's record and back; a mapped IPv4 one as
/// IPv4.
#[test]
fn the_servers_address_is_the_response_address() {
    let mut e = entry(QUERY, b"the answer");
    e.server = Some("[::ffff:192.0.2.53]:5353".parse().expect("addr"));
    let mut rec = Vec::new();
    push_record(&mut rec, &e);
    assert_eq!(rec.len(), HEADER + QUERY.len() + 10);
    let (back, rest) = read_record(&rec).expect("a record");
    assert!(rest.is_empty());
    assert_eq!(back.server, Some("192.0.2.53:5353".parse().expect("addr")));
    assert_eq!(back.client, e.client);
    for kind in [MessageType::ClientQuery, MessageType::ClientResponse] {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        push_frame(&mut out, &mut scratch, b"", b"", kind, &back);
        let top = fields(&out[4..]);
        let Some(Field::Bytes(m)) = get(&top, 14) else {
            panic!("no message");
        };
        let m = fields(m);
        assert_eq!(
            get(&m, 5),
            Some(&Field::Bytes(vec![192, 0, 2, 53])),
            "{kind:?}"
        );
        assert_eq!(get(&m, 7), Some(&Field::Varint(5353)), "{kind:?}");
        let order: Vec<u32> = m.iter().map(|(n, _)| *n).collect();
        assert!(order.is_sorted(), "{order:?}");
    }
    let v6 = Entry {
        server: Some("[2001:db8::53]:53".parse().expect("addr")),
        client: "[2001:db8::5]:4000".parse().expect("addr"),
        ..e
    };
    let mut rec = Vec::new();
    push_record(&mut rec, &v6);
    assert_eq!(read_record(&rec).expect("a record").0.server, v6.server);
}

#[test]
fn a_client_response_frame_over_tcp_from_ipv6() {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut e = entry(QUERY, b"the answer");
    e.client = "[2001:db8::5]:4000".parse().expect("addr");
    e.transport = Transport::Tcp;
    push_frame(
        &mut out,
        &mut scratch,
        b"",
        b"",
        MessageType::ClientResponse,
        &e,
    );
    let top = fields(&out[4..]);
    assert_eq!(
        top.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [14, 15],
        "empty identity and version are left out"
    );
    let Some(Field::Bytes(m)) = get(&top, 14) else {
        panic!("no message");
    };
    let m = fields(m);
    assert_eq!(get(&m, 1), Some(&Field::Varint(6)));
    assert_eq!(get(&m, 2), Some(&Field::Varint(2)));
    assert_eq!(get(&m, 3), Some(&Field::Varint(2)));
    assert_eq!(
        get(&m, 4),
        Some(&Field::Bytes(
            "2001:db8::5"
                .parse::<std::net::Ipv6Addr>()
                .expect("ip")
                .octets()
                .to_vec()
        ))
    );
    assert_eq!(get(&m, 6), Some(&Field::Varint(4000)));
    assert_eq!(get(&m, 12), Some(&Field::Varint(1_700_000_000)));
    assert_eq!(get(&m, 13), Some(&Field::Fixed32(124_000_000)));
    assert_eq!(get(&m, 14), Some(&Field::Bytes(b"the answer".to_vec())));
    assert_eq!(get(&m, 10), None, "the query is in its own CLIENT_QUERY");
}

#[test]
fn mapped_ipv4_clients_are_sent_as_ipv4() {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut e = entry(QUERY, b"");
    e.client = "[::ffff:198.51.100.1]:53".parse().expect("addr");
    push_frame(
        &mut out,
        &mut scratch,
        b"",
        b"",
        MessageType::ClientQuery,
        &e,
    );
    let top = fields(&out[4..]);
    let Some(Field::Bytes(m)) = get(&top, 14) else {
        panic!("no message");
    };
    let m = fields(m);
    assert_eq!(get(&m, 2), Some(&Field::Varint(1)));
    assert_eq!(get(&m, 4), Some(&Field::Bytes(vec![198, 51, 100, 1])));
}

/// Issue 19: the encrypted transports keep their name through the
/// ring and reach dnstap.proto's SocketProtocol (DOT 3, DOH 4, DOQ 7).
#[test]
fn encrypted_transports_are_dnstap_socket_protocols() {
    for (transport, protocol) in [
        (Transport::Udp, 1),
        (Transport::Tcp, 2),
        (Transport::Dot, 3),
        (Transport::Doh, 4),
        (Transport::Doq, 7),
    ] {
        let mut e = entry(QUERY, b"answer");
        e.transport = transport;
        let mut buf = Vec::new();
        push_record(&mut buf, &e);
        let (back, _) = read_record(&buf).expect("record");
        assert_eq!(back.transport, transport);
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        push_frame(
            &mut out,
            &mut scratch,
            b"",
            b"",
            MessageType::ClientQuery,
            &back,
        );
        let top = fields(&out[4..]);
        let Some(Field::Bytes(m)) = get(&top, 14) else {
            panic!("no message");
        };
        assert_eq!(
            get(&fields(m), 3),
            Some(&Field::Varint(protocol)),
            "{transport:?}"
        );
    }
}

#[test]
fn records_round_trip_and_become_one_frame_per_message() {
    let mut buf = Vec::new();
    push_record(&mut buf, &entry(QUERY, b"answer"));
    push_record(&mut buf, &entry(QUERY, b""));
    let mut e = entry(b"", b"late answer");
    e.client = "[2001:db8::1]:9".parse().expect("addr");
    e.transport = Transport::Tcp;
    push_record(&mut buf, &e);
    let (a, rest) = read_record(&buf).expect("first");
    assert_eq!(a, entry(QUERY, b"answer"));
    let (b, rest) = read_record(rest).expect("second");
    assert_eq!(b, entry(QUERY, b""));
    let (c, rest) = read_record(rest).expect("third");
    assert_eq!(c, e);
    assert!(rest.is_empty());
    assert!(
        read_record(&buf[..HEADER + 3]).is_none(),
        "half a record is not read"
    );

    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    assert_eq!(push_frames(&mut out, &mut scratch, b"", b"", &a), 2);
    assert_eq!(push_frames(&mut out, &mut scratch, b"", b"", &b), 1);
    assert_eq!(push_frames(&mut out, &mut scratch, b"", b"", &c), 1);
}

#[test]
fn a_flush_stamps_answers_and_drops_what_does_not_fit() {
    let mut buf = Vec::new();
    let mut q_only = entry(QUERY, b"");
    q_only.response_us = 0;
    push_record(&mut buf, &q_only);
    push_record(&mut buf, &entry(QUERY, b"answer"));
    push_record(&mut buf, &entry(QUERY, b"answer"));
    let one = HEADER + QUERY.len();
    let two = one + HEADER + QUERY.len() + 6;
    let (fit, dropped) = stamp_and_fit(&mut buf, 42, two + 10);
    assert_eq!((fit, dropped), (two, 2));
    let (a, rest) = read_record(&buf).expect("a");
    assert_eq!(a.response_us, 0, "a query alone gets no answer time");
    let (b, _) = read_record(rest).expect("b");
    assert_eq!(b.response_us, 42);

    let (mut ring, mut reader) = rtrb::RingBuffer::new(two + 10);
    assert!(push_whole(&mut ring, &[&buf[..fit]]));
    assert!(
        !push_whole(&mut ring, &[&buf[fit..]]),
        "no room: nothing is pushed"
    );
    let chunk = reader.read_chunk(reader.slots()).expect("read");
    let (x, y) = chunk.as_slices();
    assert_eq!([x, y].concat(), &buf[..fit]);
}

#[test]
fn parts_are_pushed_back_to_back_across_the_ring_s_end() {
    let (mut ring, mut reader) = rtrb::RingBuffer::new(10);
    assert!(push_whole(&mut ring, &[b"1234567"]));
    reader.read_chunk(7).expect("read").commit_all();
    // Wraps: 3 bytes at the end, 5 at the start.
    assert!(push_whole(&mut ring, &[b"abc", b"", b"de", b"fgh"]));
    let chunk = reader.read_chunk(reader.slots()).expect("read");
    let (x, y) = chunk.as_slices();
    assert_eq!((x.len(), y.len()), (3, 5));
    assert_eq!([x, y].concat(), b"abcdefgh");
}

#[test]
fn a_tap_recorder_pushes_whole_records_and_counts_drops() {
    let (ring, mut reader) = rtrb::RingBuffer::new(2 * HEADER + 2 * QUERY.len() + 20);
    let dropped = Arc::new(Dropped::default());
    let mut rec = TapRecorder {
        sink: TapSink::Own {
            ring,
            dropped: dropped.clone(),
        },
        pending: Vec::new(),
    };
    let e = entry(QUERY, b"0123456789");
    for _ in 0..3 {
        rec.record(
            e.client,
            e.server,
            e.transport,
            e.query_us,
            e.query,
            e.response,
        );
    }
    rec.flush();
    assert_eq!(
        dropped.0.load(Ordering::Relaxed),
        2,
        "the third record's two messages"
    );
    let chunk = reader.read_chunk(reader.slots()).expect("read");
    let (x, y) = chunk.as_slices();
    let bytes = [x, y].concat();
    let (a, rest) = read_record(&bytes).expect("a");
    let (b, rest) = read_record(rest).expect("b");
    assert!(rest.is_empty());
    assert_eq!((a.query, a.response), (QUERY, &b"0123456789"[..]));
    assert!(b.response_us >= a.query_us, "stamped at flush");
}
