//! The query log's records and files (run with `cargo test --lib querylog`).

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::LogFormat;
use crate::matcher::NameKey;
use crate::observe::event::{Decision, Transport};
use crate::observe::event::{NO_RCODE, QueryEvent, ServerNames};
use crate::policy::Action;
use crate::state::{ListSlot, ListSlots};

fn formatter(format: LogFormat, mode: ClientIp) -> Formatter {
    let slots = Arc::new(ListSlots::default());
    assert_eq!(slots.slot("doj-dprk"), ListSlot(0));
    let servers = Arc::new(ServerNames::default());
    assert_eq!(servers.id("192.0.2.53:53"), 0);
    Formatter::new(format, ClientView::new(mode), slots, servers)
}

fn blocked() -> QueryEvent {
    let key = NameKey::from_text("www.seized.example", false).expect("name");
    let mut ev = QueryEvent::new(
        Decision::Blocked,
        "127.0.0.1:53124".parse().expect("addr"),
        Transport::Udp,
        Some(&key),
        16,
    )
    .with_block(ListSlot(0), 4, Action::Nxdomain)
    .with_rcode(3);
    // 2026-11-29T21:30:31.123Z
    ev.time_us = 1_795_987_831_123_456;
    ev.latency_us = 3;
    ev
}

#[test]
fn a_block_as_json_has_every_field() {
    let mut f = formatter(LogFormat::Json, ClientIp::Full);
    let mut out = Vec::new();
    f.write_vec(&blocked(), &mut out);
    assert_eq!(out.last(), Some(&b'\n'));
    let text = String::from_utf8(out).expect("utf8");
    assert_eq!(
        text.trim_end(),
        r#"{"time":"2026-11-29T21:30:31.123Z","client":"127.0.0.1","port":53124,"proto":"udp","name":"www.seized.example","type":"TXT","decision":"blocked","stale":false,"list":"doj-dprk","entry":"seized.example","action":"nxdomain","rcode":"NXDOMAIN","upstream":null,"latency_us":3}"#
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v.as_object().map(|o| o.len()), Some(14));
}

/// Issue 12: with `[[groups]]` a record names the client's group.
#[test]
fn a_record_names_the_group_when_there_are_groups() {
    let mut f = formatter(LogFormat::Json, ClientIp::Full);
    let lab = slots(&f).slot("lab");
    let mut out = Vec::new();
    f.write_vec(&blocked().with_group(lab), &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["group"], "lab");
    assert_eq!(v.as_object().map(|o| o.len()), Some(15));
    let mut f = formatter(LogFormat::Text, ClientIp::Full);
    let lab = slots(&f).slot("lab");
    let mut out = Vec::new();
    f.write_vec(&blocked().with_group(lab), &mut out);
    let text = String::from_utf8(out).expect("utf8");
    assert!(
        text.contains(" TXT blocked group=lab list=doj-dprk "),
        "{text}"
    );
}

#[test]
fn a_forward_names_its_upstream_and_an_error_without_a_question_is_null() {
    let mut f = formatter(LogFormat::Json, ClientIp::Full);
    let key = NameKey::from_text("www.up.test", false).expect("name");
    let mut ev = QueryEvent::new(
        Decision::Forwarded,
        "[2001:db8::1]:5000".parse().expect("addr"),
        Transport::Tcp,
        Some(&key),
        65534,
    )
    .with_upstream(0);
    ev.latency_us = 1234;
    let mut out = Vec::new();
    f.write_vec(&ev, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["client"], "2001:db8::1");
    assert_eq!(v["proto"], "tcp");
    assert_eq!(v["type"], "TYPE65534");
    assert_eq!(v["decision"], "forwarded");
    assert_eq!(v["upstream"], "192.0.2.53:53");
    assert_eq!(v["rcode"], "NOERROR");
    assert_eq!(v["latency_us"], 1234);
    assert!(v["list"].is_null() && v["entry"].is_null() && v["action"].is_null());

    let ev = QueryEvent::new(
        Decision::Error,
        "127.0.0.1:1".parse().expect("addr"),
        Transport::Udp,
        None,
        0,
    )
    .with_rcode(16);
    out.clear();
    f.write_vec(&ev, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert!(v["name"].is_null() && v["type"].is_null());
    assert_eq!(v["rcode"], "BADVERS");
}

#[test]
fn odd_names_stay_valid_json() {
    let mut f = formatter(LogFormat::Json, ClientIp::Full);
    let mut key = NameKey::new();
    for label in [
        &b"q\"uote"[..],
        b"back\\slash",
        b"dot.ted",
        b"\x00",
        b"example",
    ] {
        assert!(key.push_label(label));
    }
    let ev = QueryEvent::new(
        Decision::Cached,
        "127.0.0.1:1".parse().expect("addr"),
        Transport::Udp,
        Some(&key),
        1,
    );
    let mut out = Vec::new();
    f.write_vec(&ev, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["name"], key.to_string());
}

#[test]
fn a_dropped_refusal_has_no_rcode_and_an_upstream_label_stays_valid_json() {
    let key = NameKey::from_text("www.seized.example", false).expect("name");
    let ev = QueryEvent::new(
        Decision::Refused,
        "198.51.100.7:53".parse().expect("addr"),
        Transport::Udp,
        Some(&key),
        1,
    )
    .with_rcode(NO_RCODE);
    let mut out = Vec::new();
    formatter(LogFormat::Json, ClientIp::Full).write_vec(&ev, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["decision"], "refused");
    assert!(v["rcode"].is_null(), "{v}");
    out.clear();
    formatter(LogFormat::Text, ClientIp::Full).write_vec(&ev, &mut out);
    let text = String::from_utf8(out.clone()).expect("utf8");
    assert!(text.contains(" refused rcode=- latency_us="), "{text}");

    // A DoH server as the config writes it, with what JSON must escape.
    let label = "https://192.0.2.53:443/dns-\"q\\\u{1}#dns.example";
    let servers = Arc::new(ServerNames::default());
    let mut f = Formatter::new(
        LogFormat::Json,
        ClientView::new(ClientIp::Full),
        Arc::new(ListSlots::default()),
        servers.clone(),
    );
    let id = servers.id(label);
    let ev = QueryEvent::new(
        Decision::Forwarded,
        "127.0.0.1:1".parse().expect("addr"),
        Transport::Udp,
        Some(&key),
        1,
    )
    .with_upstream(id);
    out.clear();
    f.write_vec(&ev, &mut out);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["upstream"], label);
}

#[test]
fn a_block_as_text_reads_as_one_line() {
    let mut f = formatter(LogFormat::Text, ClientIp::Full);
    let mut out = Vec::new();
    f.write_vec(&blocked(), &mut out);
    assert_eq!(
        String::from_utf8(out).expect("utf8"),
        "2026-11-29T21:30:31.123Z 127.0.0.1#53124 udp www.seized.example TXT blocked list=doj-dprk entry=seized.example action=nxdomain rcode=NXDOMAIN latency_us=3\n"
    );
}

#[test]
fn client_addresses_are_truncated_or_hashed() {
    let t = ClientView::new(ClientIp::Truncate);
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    assert_eq!(t.id(ip("192.0.2.77")).to_string(), "192.0.2.0");
    assert_eq!(
        t.id(ip("2001:db8:aa:bbcc:dd::1")).to_string(),
        "2001:db8:aa:bb00::"
    );
    assert_eq!(t.id(ip("::ffff:192.0.2.77")).to_string(), "192.0.2.0");

    let h = ClientView::new(ClientIp::Hash);
    let a = h.id(ip("192.0.2.77"));
    assert_eq!(a, h.id(ip("192.0.2.77")), "stable within the process");
    assert_eq!(a, h.id(ip("::ffff:192.0.2.77")));
    assert_ne!(a, h.id(ip("192.0.2.78")));
    let shown = a.to_string();
    assert_eq!(shown.len(), 16);
    assert!(!shown.contains("192"), "{shown}");
    assert_eq!(shown.parse::<ClientId>(), Ok(a));
    // Another process (another key) hashes the same address differently.
    assert_ne!(a, ClientView::new(ClientIp::Hash).id(ip("192.0.2.77")));
}

#[test]
fn the_file_rotates_by_size_and_keeps_at_most_keep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logs/queries.log");
    let mut f = RotatingFile::open(&path, 100, 2, false).expect("open");
    for i in 0..7u8 {
        f.write(&[b'a' + i; 60]).expect("write");
    }
    // Each 60-byte batch fills a file: 7 batches, the newest in the log.
    let read = |p: &Path| std::fs::read(p).expect("read");
    assert_eq!(read(&path), vec![b'g'; 60]);
    assert_eq!(read(&dir.path().join("logs/queries.log.1")), vec![b'f'; 60]);
    assert_eq!(read(&dir.path().join("logs/queries.log.2")), vec![b'e'; 60]);
    assert!(!dir.path().join("logs/queries.log.3").exists());
    // Reopening appends to what is there.
    let mut f = RotatingFile::open(&path, 1000, 2, false).expect("open");
    f.write(b"h").expect("write");
    assert_eq!(read(&path).len(), 61);
    // keep = 0: the full file is simply started again.
    let mut f = RotatingFile::open(&path, 100, 0, false).expect("open");
    f.write(&[b'i'; 50]).expect("write");
    assert_eq!(read(&path), vec![b'i'; 50]);
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Issue 16 (4): the log says who asked for what. Whatever the umask
/// leaves, group members may read it and no one else may; rotated
/// files keep that, and so does the directory made for them. A file
/// left world-readable by an older version loses the world's bits.
#[test]
fn r16_the_log_and_its_rotations_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logs/queries.log");
    let mut f = RotatingFile::open(&path, 100, 2, false).expect("open");
    for i in 0..3u8 {
        f.write(&[b'a' + i; 60]).expect("write");
    }
    for p in [
        "logs/queries.log",
        "logs/queries.log.1",
        "logs/queries.log.2",
    ] {
        let m = mode(&dir.path().join(p));
        assert_eq!(m & 0o027, 0, "{p}: {m:o}");
        assert_eq!(m & 0o600, 0o600, "{p}: {m:o}");
    }
    let m = mode(&dir.path().join("logs"));
    assert_eq!(m & 0o027, 0, "logs/: {m:o}");
    let old = dir.path().join("old.log");
    std::fs::write(&old, "x\n").expect("write");
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(RotatingFile::open(&old, 100, 2, false).expect("open"));
    assert_eq!(mode(&old), 0o640);
}

/// Issue 16 (17): a symlink at the log's path (planted in a directory
/// others can write) is never followed: the open fails, says so, and
/// the file it names is untouched.
#[test]
fn r16_the_log_is_never_opened_through_a_symlink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("precious");
    std::fs::write(&target, "mine\n").expect("write");
    let path = dir.path().join("queries.log");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let e = RotatingFile::open(&path, 100, 2, false).expect_err("opened through a symlink");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "mine\n");
}

/// The list names a formatter reads.
fn slots(f: &Formatter) -> &ListSlots {
    f.slots()
}

impl Formatter {
    /// One record into a vector, as the tests read it.
    fn write_vec(&mut self, ev: &QueryEvent, out: &mut Vec<u8>) {
        let mut buf = LogBuf::new(0);
        self.write(ev, &mut buf);
        out.extend_from_slice(buf.as_bytes());
    }
}

/// Issue 21: the fast formatter writes what the old one (`reference.rs`)
/// wrote, byte for byte and so as the same JSON, for names with quotes,
/// backslashes, dots inside labels, non-ASCII and control bytes, every
/// decision's fields, and both formats and every client view.
#[test]
fn the_fast_formatter_writes_what_the_old_one_wrote() {
    let tricky: [&[&[u8]]; 7] = [
        &[b"www", b"seized", b"example"],
        &[b"q\"uote", b"back\\slash", b"example"],
        &[b"dot.ted", b"\x00\x01\x1f", b"test"],
        &[b"caf\xc3\xa9", b"\xff\x80\x7f", b"example"],
        &[b"\"", b"\\"],
        &[b"a", b" sp ace", b"x"],
        &[b"_dmarc", b"x-y", b"z"],
    ];
    let slots = Arc::new(ListSlots::default());
    let list = slots.slot("doj-dprk \"seized\"");
    let group = slots.slot("lab");
    let servers = Arc::new(ServerNames::default());
    let plain = servers.id("192.0.2.53:53");
    let odd = servers.id("https://192.0.2.53:443/dns-\"q\\\u{1}#dns.example");
    for labels in tricky {
        let mut key = NameKey::new();
        for label in labels {
            assert!(key.push_label(label));
        }
        let entry = key.as_bytes().len() - 1 - labels.last().map_or(0, |l| l.len());
        let events = [
            QueryEvent::new(
                Decision::Blocked,
                "127.0.0.1:53124".parse().expect("addr"),
                Transport::Udp,
                Some(&key),
                16,
            )
            .with_block(list, entry, Action::Nxdomain)
            .with_rcode(3),
            // Issue 21: a block through a CNAME chain, the chain's name
            // (the same tricky bytes) after the question's.
            QueryEvent::new(
                Decision::Blocked,
                "127.0.0.1:53124".parse().expect("addr"),
                Transport::Udp,
                Some(&NameKey::from_text("cdn.shop.example", false).expect("name")),
                1,
            )
            .with_block(list, usize::MAX, Action::Sinkhole)
            .with_chain(key.as_bytes())
            .with_group(group)
            .with_rcode(0),
            QueryEvent::new(
                Decision::Blocked,
                "127.0.0.1:53124".parse().expect("addr"),
                Transport::Udp,
                Some(&key),
                28,
            )
            .with_block(list, usize::MAX, Action::Nxdomain)
            .with_net(Some(
                crate::matcher::Net::parse("2001:db8:bad::/48").expect("net"),
            )),
            QueryEvent::new(
                Decision::Forwarded,
                "[2001:db8::1]:5000".parse().expect("addr"),
                Transport::Tcp,
                Some(&key),
                65534,
            )
            .with_upstream(odd)
            .with_group(group),
            QueryEvent::new(
                Decision::Cached,
                "10.0.100.9:1".parse().expect("addr"),
                Transport::Doh,
                Some(&key),
                1,
            )
            .with_stale(true)
            .with_upstream(plain)
            .with_rcode(4095),
            QueryEvent::new(
                Decision::Refused,
                "198.51.100.7:53".parse().expect("addr"),
                Transport::Udp,
                None,
                0,
            )
            .with_rcode(NO_RCODE),
        ];
        for format in [LogFormat::Json, LogFormat::Text] {
            for mode in [ClientIp::Full, ClientIp::Truncate, ClientIp::Hash] {
                let view = ClientView::new(mode);
                let mut old =
                    reference::Formatter::new(format, view.clone(), slots.clone(), servers.clone());
                let mut new = Formatter::new(format, view, slots.clone(), servers.clone());
                for (i, ev) in events.iter().enumerate() {
                    let mut ev = *ev;
                    ev.time_us = 1_795_987_831_000_000 + i as u64 * 999_999;
                    ev.latency_us = 7 * i as u32;
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    old.write(&ev, &mut a);
                    new.write_vec(&ev, &mut b);
                    assert_eq!(
                        String::from_utf8_lossy(&b),
                        String::from_utf8_lossy(&a),
                        "{labels:?} {format:?} {mode:?} event {i}"
                    );
                    if format == LogFormat::Json {
                        let a: serde_json::Value = serde_json::from_slice(&a).expect("old json");
                        let b: serde_json::Value = serde_json::from_slice(&b).expect("new json");
                        assert_eq!(a, b);
                        if let Some(name) = ev.name() {
                            assert_eq!(b["name"], crate::observe::event::name_text(name));
                        }
                        if let Some(chain) = ev.cname() {
                            assert_eq!(b["cname"], crate::observe::event::name_text(chain));
                        }
                    }
                }
            }
        }
    }
}

proptest::proptest! {
    /// Any name, any label bytes: the fast formatter agrees with the old
    /// one, and a long name of escaped bytes (past the first try's room)
    /// is written whole.
    #[test]
    fn any_name_is_written_as_the_old_formatter_wrote_it(
        labels in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..63), 1..8),
        entry in 0usize..64,
    ) {
        let mut key = NameKey::new();
        for label in &labels {
            if !key.push_label(label) {
                break;
            }
        }
        let slots = Arc::new(ListSlots::default());
        let list = slots.slot("l");
        let servers = Arc::new(ServerNames::default());
        let ev = QueryEvent::new(
            Decision::Blocked,
            "127.0.0.1:53".parse().expect("addr"),
            Transport::Udp,
            Some(&key),
            1,
        )
        .with_block(list, entry.min(key.as_bytes().len()), Action::Nodata);
        for format in [LogFormat::Json, LogFormat::Text] {
            let view = ClientView::new(ClientIp::Full);
            let mut old = reference::Formatter::new(format, view.clone(), slots.clone(), servers.clone());
            let mut new = Formatter::new(format, view, slots.clone(), servers.clone());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            old.write(&ev, &mut a);
            new.write_vec(&ev, &mut b);
            proptest::prop_assert_eq!(&a, &b);
        }
    }
}

/// A batch grows for a record longer than its room, and keeps what it held.
#[test]
fn a_record_past_the_room_grows_the_batch() {
    let mut key = NameKey::new();
    for _ in 0..4 {
        assert!(key.push_label(&[0xff; 60]));
    }
    let mut f = formatter(LogFormat::Json, ClientIp::Full);
    let ev = QueryEvent::new(
        Decision::Cached,
        "127.0.0.1:1".parse().expect("addr"),
        Transport::Udp,
        Some(&key),
        1,
    );
    let mut buf = LogBuf::new(0);
    f.write(&blocked(), &mut buf);
    let first = buf.len();
    for _ in 0..3 {
        f.write(&ev, &mut buf);
    }
    let text = std::str::from_utf8(buf.as_bytes()).expect("ascii");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0].len() + 1, first);
    for line in &lines[1..] {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["name"], key.to_string());
        assert!(line.len() > 4 * 60 * 5, "{}", line.len());
    }
}

#[test]
fn numbers_and_clients_are_written_as_display_writes_them() {
    let view = ClientView::new(ClientIp::Full);
    for ip in [
        "0.0.0.0",
        "255.255.255.255",
        "10.0.100.9",
        "100.20.3.199",
        "::1",
        "2001:db8::7",
    ] {
        let mut f = Formatter::new(
            LogFormat::Text,
            view.clone(),
            Arc::new(ListSlots::default()),
            Arc::new(ServerNames::default()),
        );
        for (port, latency) in [(0, 0), (7, 10), (99, 65_535), (65_535, u32::MAX)] {
            let mut ev = QueryEvent::new(
                Decision::Cached,
                std::net::SocketAddr::new(ip.parse().expect("ip"), port),
                Transport::Udp,
                None,
                0,
            );
            ev.latency_us = latency;
            let mut out = Vec::new();
            f.write_vec(&ev, &mut out);
            let text = String::from_utf8(out).expect("utf8");
            let id = ClientId::Addr(ip.parse().expect("ip"));
            assert!(text.contains(&format!(" {id}#{port} udp ")), "{text}");
            assert!(
                text.ends_with(&format!(" latency_us={latency}\n")),
                "{text}"
            );
        }
    }
}

/// Waits (at most 30 s: the compressor runs at the lowest priority on a
/// busy machine) until `path` exists.
fn wait_for(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Issue 21: a rotated file is compressed (zstd) off the writer's thread,
/// decompresses to the records it held, replaces the plain file, and the
/// live file keeps being written meanwhile; older compressed files move
/// up and the oldest goes, as plain ones did.
#[test]
fn rotated_files_are_compressed_and_decompress_to_their_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queries.log");
    let batch = |i: u32| -> Vec<u8> {
        (0..30)
            .map(|j| format!("{{\"n\":{i:02},\"j\":{j:02},\"name\":\"www.seized.example\"}}\n"))
            .collect::<String>()
            .into_bytes()
    };
    // Two batches fill a file.
    let size = 2 * batch(0).len() as u64;
    let mut f = RotatingFile::open(&path, size, 2, true).expect("open");
    let mut written = Vec::new();
    for i in 0..3 {
        let b = batch(i);
        f.write(&b).expect("write");
        written.push(b);
    }
    let one = dir.path().join("queries.log.1.zst");
    wait_for(&one);
    assert!(!dir.path().join("queries.log.1").exists());
    let plain: Vec<u8> = written[..2].concat();
    let unpacked = zstd::decode_all(std::fs::File::open(&one).expect("open")).expect("zstd");
    assert_eq!(unpacked, plain);
    assert!(std::fs::metadata(&one).expect("meta").len() < plain.len() as u64 / 4);
    assert_eq!(mode(&one) & 0o027, 0, "{:o}", mode(&one));
    // The live file kept being written.
    f.write(&batch(3)).expect("write");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        [batch(2), batch(3)].concat()
    );
    // Two more rotations: .1.zst moves to .2.zst; the oldest goes at keep = 2.
    for i in 4..8 {
        f.write(&batch(i)).expect("write");
    }
    wait_for(&dir.path().join("queries.log.2.zst"));
    let two = dir.path().join("queries.log.2.zst");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dir.path().join("queries.log.1").exists()
        || dir.path().join("queries.log.2").exists()
        || !one.exists()
    {
        assert!(std::time::Instant::now() < deadline, "not compressed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let unpacked = zstd::decode_all(std::fs::File::open(&two).expect("open")).expect("zstd");
    assert_eq!(unpacked, [batch(2), batch(3)].concat());
    assert!(!dir.path().join("queries.log.3.zst").exists());
    assert!(!dir.path().join("queries.log.3").exists());
    drop(f);
    // A plain rotated file left by an earlier run is compressed at start.
    std::fs::rename(&one, dir.path().join("stash")).expect("stash");
    std::fs::write(dir.path().join("queries.log.1"), batch(9)).expect("write");
    let _f = RotatingFile::open(&path, size, 2, true).expect("open");
    wait_for(&one);
    let unpacked = zstd::decode_all(std::fs::File::open(&one).expect("open")).expect("zstd");
    assert_eq!(unpacked, batch(9));
}

/// Issue 21: a batch (a megabyte at the floor's rate) larger than the
/// room left is split between files at a record's end, so no file grows
/// past `max_size` and no record is cut; a record longer than a file
/// gets a file of its own.
#[test]
fn a_batch_past_the_room_is_split_at_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queries.log");
    let mut f = RotatingFile::open(&path, 100, 4, false).expect("open");
    let records: Vec<u8> = (0..10)
        .flat_map(|i| format!("{{\"record\":{i:08},\"pad\":\"x\"}}\n").into_bytes())
        .collect();
    assert_eq!(records.len(), 300);
    f.write(&records).expect("write");
    let read = |i: u32| {
        let p = if i == 0 {
            path.clone()
        } else {
            dir.path().join(format!("queries.log.{i}"))
        };
        std::fs::read(p).expect("read")
    };
    let files: Vec<Vec<u8>> = (0..=3).rev().map(read).collect();
    for file in &files {
        assert!(file.len() <= 100, "{}", file.len());
        assert!(file.ends_with(b"\n"));
    }
    assert_eq!(files.concat(), records);
    let long = [vec![b'y'; 250], vec![b'\n']].concat();
    f.write(&long).expect("write");
    assert_eq!(read(0), long);
    assert_eq!(read(1), files[3]);
}
