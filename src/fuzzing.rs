//! What the fuzz targets run, and the invariants they check, in one place:
//! the targets in `fuzz/fuzz_targets/` (coverage-guided, see README
//! "Fuzzing") and `tests/corpus.rs` (which replays the committed corpus and
//! every crash reproducer on the stable toolchain, in `cargo test`) call the
//! same function per target, so a replayed input goes through exactly the
//! code and the checks the fuzzer ran.
//!
//! Every function takes arbitrary bytes and panics only when an invariant
//! breaks (a panic is what the fuzzer reports as a crash). Nothing here is
//! on the serving path.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RData;

use arc_swap::ArcSwap;

use crate::cache::Cache;
use crate::config::{self, Config};
use crate::lists::{self, Format, MAX_WARNINGS, ofac};
use crate::observe::{Decision, Decisions, NO_RCODE, QueryEvent, Recorder, rcode_of};
use crate::server::{Handler, Outcome, Proto};
use crate::source::xfr::{self, Ixfr};
use crate::upstream::{self, Upstream};
use crate::{Snapshot, wire};

/// The fuzz targets, by the name of their corpus directory.
pub const TARGETS: [&str; 9] = [
    "request", "response", "domains", "hosts", "adblock", "rpz", "config", "xfr", "ofac",
];

/// Runs `data` through target `name` (one of [`TARGETS`]).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "request" => request(data),
        "response" => response(data),
        "domains" => list(Format::Domains, data),
        "hosts" => list(Format::Hosts, data),
        "adblock" => list(Format::Adblock, data),
        "rpz" => list(Format::Rpz, data),
        "config" => config(data),
        "xfr" => transfer(data),
        "ofac" => ofac(data),
        _ => panic!("no fuzz target {name:?}"),
    }
}

// ---- request: bytes in, answer bytes out, through the real handler ----

/// The primary of `rpz.test`, whose NOTIFYs are accepted; any other client's are refused.
const PRIMARY: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// A client outside `[access] allow`: everything it asks is refused.
const OUTSIDER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));

/// Names the fixture's upstream answered once, so that they are in the cache.
/// `big.test` has more records than 512 bytes hold (a UDP answer truncates).
const CACHED: [&str; 2] = ["cached.test", "big.test"];

/// One handler for the whole run: lists with every action, an allow entry
/// under a blocked name, an RPZ zone with per-record actions, NOTIFY
/// accepted from [`PRIMARY`] for `rpz.test`, answers in the cache, and
/// the local names (the default zones, records of every type, CNAMEs to a
/// local name, to a cached one and to a listed one, a zone of our own);
/// `test` is forwarded (a `[[forward]]` set taking a default zone over),
/// so the cached names come from a forward set.
fn handler() -> &'static Arc<Handler> {
    static HANDLER: OnceLock<Arc<Handler>> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("embargo-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files = [
            ("seized.txt", "seized.example\n*.wild.example\n"),
            ("refused.txt", "refused.example\n"),
            ("nodata.txt", "nodata.example\n"),
            ("sinkhole.txt", "0.0.0.0 sink.example\n"),
            (
                "rpz.zone",
                "$ORIGIN rpz.test.\n@ SOA ns.rpz.test. h.rpz.test. 1 3600 600 86400 60\n\
                 nx.example CNAME .\nnod.example CNAME *.\npass.seized.example CNAME rpz-passthru.\n",
            ),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("list file");
        }
        let upstream = cache_filler();
        let text = format!(
            r#"
[upstream]
servers = ["{upstream}"]
[block]
ede = "censored"
[[lists]]
name = "seized"
source = "seized.txt"
[[lists]]
name = "refused"
source = "refused.txt"
action = "refused"
ede = "blocked"
[[lists]]
name = "nodata"
source = "nodata.txt"
action = "nodata"
[[lists]]
name = "sinkhole"
source = "sinkhole.txt"
action = "sinkhole"
sinkhole_ipv4 = "192.0.2.99"
[[lists]]
name = "rpz"
source = "rpz.zone"
format = "rpz"
[allow]
domains = ["allowed.seized.example"]
[access]
allow = ["127.0.0.0/8", "192.0.2.0/24"]
[local_zones]
zones = ["lan"]
[[records]]
name = "nas.home.arpa"
a = ["192.168.1.10", "192.168.1.11"]
aaaa = "fd00::10"
txt = "the nas"
mx = "10 mail.lan"
srv = "0 100 445 nas.home.arpa"
[[records]]
name = "media.home.arpa"
cname = "nas.home.arpa"
[[records]]
name = "ext.home.arpa"
cname = "cached.test"
[[records]]
name = "bad.home.arpa"
cname = "www.seized.example"
[[records]]
name = "mail.lan"
a = "10.20.0.25"
[[forward]]
zones = ["test"]
servers = ["{upstream}"]
# No observer thread or file: `request` records into a ring of its own.
[log]
queries = "off"
[hits]
max_clients = 0
"#
        );
        let config = Config::parse(&dir.join("fuzz.toml"), &text).expect("fixture config");
        let snapshot = Snapshot::build(&config).expect("fixture snapshot");
        let _ = std::fs::remove_dir_all(&dir);
        let handler = crate::handler(&config, snapshot).expect("fixture handler");
        handler.notify_targets().register(
            "rpz.test",
            PRIMARY,
            Arc::new(tokio::sync::Notify::new()),
        );
        fill_cache(&handler);
        check_local(&handler);
        handler
    })
}

/// The fixture answers its local names here (AA), a local CNAME to a
/// cached name with both joined, and a local CNAME to a listed name with
/// the list's answer: else the run would not reach those paths.
fn check_local(handler: &Arc<Handler>) {
    let mut out = Vec::new();
    let mut rec = Recorder::off();
    for (name, qtype, rcode, ancount) in [
        ("nas.home.arpa", 1, 0, 2),
        ("10.1.168.192.in-addr.arpa", 12, 0, 1),
        ("x.local", 1, 3, 0),
        ("ext.home.arpa", 1, 0, 2),
        ("bad.home.arpa", 1, 3, 1),
    ] {
        let query = dns_query(name, qtype, true);
        let client = SocketAddr::new(STRANGER, 5353);
        let outcome = handler.handle(&query, client, Proto::Udp, &mut out, &mut rec);
        assert!(
            matches!(outcome, Outcome::Reply)
                && out.get(3).map(|b| b & 0x0f) == Some(rcode)
                && wire::u16_at(&out, 6) == Some(ancount),
            "the fixture does not answer {name} locally: {out:02x?}"
        );
    }
}

/// An upstream on loopback that answers every query with an A record
/// (`big.test`: 40 of them), for [`fill_cache`]; it stops after a few.
fn cache_filler() -> SocketAddr {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the fixture upstream");
    let addr = sock.local_addr().expect("local addr");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..2 * CACHED.len() {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.recursion_available = true;
            for q in &query.queries {
                answer.add_query(q.clone());
                let count = if q.name().to_ascii().starts_with("big") {
                    40
                } else {
                    1
                };
                for i in 0..count {
                    answer.add_answer(hickory_proto::rr::Record::from_rdata(
                        q.name().clone(),
                        300,
                        RData::A(Ipv4Addr::new(192, 0, 2, i).into()),
                    ));
                }
            }
            if let Some(edns) = query.edns {
                answer.set_edns(edns);
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
    addr
}

/// Forwards a query for each of [`CACHED`], with and without EDNS, through
/// the real path (`Handler::forward` caches what the upstream answered).
fn fill_cache(handler: &Arc<Handler>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = Vec::new();
    let mut rec = Recorder::off();
    for name in CACHED {
        for edns in [false, true] {
            let query = dns_query(name, 1, edns);
            let client = SocketAddr::new(STRANGER, 5353);
            if let Outcome::Forward(job) =
                handler.handle(&query, client, Proto::Udp, &mut out, &mut rec)
            {
                runtime.block_on(handler.forward(job, &mut out));
            }
            assert!(
                matches!(
                    handler.handle(&query, client, Proto::Tcp, &mut out, &mut rec),
                    Outcome::Reply
                ),
                "the fixture did not cache {name}"
            );
        }
    }
}

/// A query for `name` (plain labels), type `qtype`, class IN, RD set.
fn dns_query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

/// A request's question when it has one that must be echoed: one entry, a
/// name of plain labels (no compression) within 255 bytes, type and class.
/// Returns the offset just past it.
fn plain_question(pkt: &[u8]) -> Option<usize> {
    if wire::u16_at(pkt, 4)? != 1 {
        return None;
    }
    let mut at = wire::HEADER_LEN;
    loop {
        let len = usize::from(*pkt.get(at)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    let end = at + 1 + 4;
    (at + 1 - wire::HEADER_LEN <= 255 && end <= pkt.len()).then_some(end)
}

thread_local! {
    /// A recorder that keeps every decision, and its ring, drained by `request`.
    static RECORDER: RefCell<(Recorder, rtrb::Consumer<QueryEvent>)> =
        RefCell::new(Recorder::detached(Decisions::ALL, 16));
}

/// `data` is one request, sent by the primary, by a stranger and by a
/// client outside `[access] allow`, over UDP and TCP. Whenever the handler
/// answers, the answer is a DNS message that hickory parses, with the
/// request's ID and QR set; it echoes a plain question byte for byte; over
/// UDP it fits 512 bytes, or what the request's EDNS allows (1232 at most).
/// What it records for the query log agrees with what it did: at most one
/// record, with the answer's RCODE (none when nothing was sent).
pub fn request(data: &[u8]) {
    let handler = handler();
    let mut out = Vec::with_capacity(512);
    RECORDER.with_borrow_mut(|(rec, ring)| {
        for ip in [PRIMARY, STRANGER, OUTSIDER] {
            for proto in [Proto::Udp, Proto::Tcp] {
                let client = SocketAddr::new(ip, 5353);
                rec.begin();
                let outcome = handler.handle(data, client, proto, &mut out, rec);
                rec.flush();
                let events: Vec<QueryEvent> = match ring.read_chunk(ring.slots()) {
                    Ok(chunk) => chunk.into_iter().collect(),
                    Err(_) => Vec::new(),
                };
                check_events(&events, &outcome, &out);
                if let Outcome::Reply = outcome {
                    check_answer(data, proto, &out);
                }
            }
        }
    });
}

/// One decision, one record at most, and its RCODE is the answer's.
fn check_events(events: &[QueryEvent], outcome: &Outcome, out: &[u8]) {
    assert!(events.len() <= 1, "{} records for one query", events.len());
    let Some(ev) = events.first() else {
        return;
    };
    match outcome {
        Outcome::Reply => {
            // BADVERS is an extended RCODE: 0 in the header, 16 in the record.
            let extended = ev.decision == Decision::Error && ev.rcode == 16;
            assert!(
                ev.rcode == rcode_of(out) || extended,
                "recorded rcode {} for an answer with rcode {}",
                ev.rcode,
                rcode_of(out)
            );
        }
        Outcome::Drop => assert!(
            ev.decision == Decision::Refused && ev.rcode == NO_RCODE,
            "a dropped query recorded as {:?} with rcode {}",
            ev.decision,
            ev.rcode
        ),
        Outcome::Forward(_) => panic!("a forwarded query is recorded when it is answered"),
    }
}

fn check_answer(pkt: &[u8], proto: Proto, out: &[u8]) {
    let answer = Message::from_vec(out).unwrap_or_else(|e| {
        panic!("the answer does not parse ({e}):\nrequest {pkt:02x?}\nanswer {out:02x?}")
    });
    assert!(
        pkt.len() >= 2 && out[..2] == pkt[..2],
        "the answer's ID is not the request's"
    );
    assert_eq!(
        answer.metadata.message_type,
        MessageType::Response,
        "QR clear"
    );
    // Only a non-empty question needs echoing: its bytes are what makes it.
    if let Some(end) = plain_question(pkt) {
        assert_eq!(
            wire::u16_at(out, 4),
            Some(1),
            "the question is not echoed: request {pkt:02x?}, answer {out:02x?}"
        );
        assert_eq!(
            out.get(wire::HEADER_LEN..end),
            pkt.get(wire::HEADER_LEN..end),
            "the question is not echoed byte for byte"
        );
    }
    if proto == Proto::Udp {
        let limit = match answer.edns.as_ref() {
            None => 512,
            Some(_) => match crate::query::parse(pkt) {
                Ok((facts, _)) => facts
                    .edns
                    .map_or(512, |e| e.udp_size.clamp(512, wire::EDNS_UDP_SIZE)),
                Err(_) => wire::EDNS_UDP_SIZE,
            },
        };
        assert!(
            out.len() <= usize::from(limit),
            "a UDP answer of {} bytes exceeds {limit}",
            out.len()
        );
    }
}

// ---- response: an upstream's answer through the forward path ----

/// A client of group `strict` (every list), and one of the default group
/// (only `seized`): a chain blocked for one is inspected again for the
/// other when it comes from the cache. Both private, as `[access]` wants
/// by default.
const STRICT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7));
const LAX: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 7));

/// The question asked when the upstream's answer carries no plain one.
const DEFAULT_QUESTION: &[u8] = b"\x03www\x02up\x04test\x00\x00\x01\x00\x01";

/// The rules every [`response`] input is answered under: lists with every
/// action (CNAME inspection on), an allow entry under a listed name, two
/// client groups; and the configuration its handlers are built from.
fn response_fixture() -> &'static (Arc<ArcSwap<Snapshot>>, Config) {
    static FIXTURE: OnceLock<(Arc<ArcSwap<Snapshot>>, Config)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("embargo-fuzz-response-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files = [
            ("seized.txt", "seized.example\n*.wild.example\n"),
            ("tracker.txt", "tracker.example\n"),
            ("nodata.txt", "nodata.example\n"),
            ("sinkhole.txt", "0.0.0.0 sink.example\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("list file");
        }
        // The answers' names are under `test` (the corpus's): not served
        // locally here, this target is the forward path's.
        let text = r#"
[upstream]
# Never asked: what the upstreams answer is the fuzz input.
servers = ["127.0.0.1:9"]
[local_zones]
defaults = false
[cache]
size = 64
[[lists]]
name = "seized"
source = "seized.txt"
[[lists]]
name = "tracker"
source = "tracker.txt"
action = "refused"
ede = "blocked"
[[lists]]
name = "nodata"
source = "nodata.txt"
action = "nodata"
[[lists]]
name = "sinkhole"
source = "sinkhole.txt"
action = "sinkhole"
[allow]
domains = ["allowed.seized.example"]
[[groups]]
name = "strict"
clients = ["10.1.0.0/16"]
[[groups]]
name = "default"
lists = ["seized"]
"#;
        let config = Config::parse(&dir.join("fuzz.toml"), text).expect("fixture config");
        let snapshot = Snapshot::build(&config).expect("fixture snapshot");
        let _ = std::fs::remove_dir_all(&dir);
        let state = Arc::new(ArcSwap::from_pointee(snapshot));
        // Were both clients refused, or the default question blocked,
        // nothing would reach the forward path: the run would test nothing.
        let handler = Handler::new(
            state.clone(),
            Cache::new(&config.cache),
            Upstream::new(&config.upstream),
        );
        for ip in [STRICT, LAX] {
            let outcome = handler.handle(
                &client_query(DEFAULT_QUESTION, None),
                SocketAddr::new(ip, 5353),
                Proto::Udp,
                &mut Vec::new(),
                &mut Recorder::off(),
            );
            assert!(
                matches!(outcome, Outcome::Forward(_)),
                "the fixture does not forward for {ip}"
            );
        }
        (state, config)
    })
}

/// The first question of `answer` when it is plain (labels, no
/// compression, within 255 bytes, type and class after it): its bytes.
fn answered_question(answer: &[u8]) -> Option<&[u8]> {
    if wire::u16_at(answer, 4)? == 0 {
        return None;
    }
    let mut at = wire::HEADER_LEN;
    loop {
        let len = usize::from(*answer.get(at)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    let end = at + 1 + 4;
    (at + 1 - wire::HEADER_LEN <= 255)
        .then(|| answer.get(wire::HEADER_LEN..end))
        .flatten()
}

/// A client's query for `question` (ID 0xbeef, RD), with an OPT (payload
/// 1232, DO as given) when `edns` is `Some`.
fn client_query(question: &[u8], edns: Option<bool>) -> Vec<u8> {
    let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(question);
    if let Some(dnssec_ok) = edns {
        wire::push_opt(&mut q, 0, dnssec_ok, &[]);
    }
    q
}

/// `data` is what the upstreams answered. A client asks the question it
/// carries (`www.up.test A` when it has no plain one) without EDNS, with
/// it, and with DO; over UDP from a client of group `strict`, then over
/// TCP from one of the default group. Each query that is not blocked or
/// cached is forwarded, and `data` is the upstreams' answer when it
/// answers the query as the upstream module checks answers (the upstream
/// timed out otherwise); then a client of the other group asks again, and
/// gets the cached answer when one was kept. Every answer carries the
/// client's ID and QR; echoes the question unless the upstream's answer
/// had none (FORMERR, NOTIMP); over UDP fits what the query allows; and
/// parses with hickory whenever `data` did.
pub fn response(data: &[u8]) {
    let (state, config) = response_fixture();
    // A cache per input: one kept from an earlier input would answer in
    // its place, and this input would never reach the forward path.
    let handler = Handler::new(
        state.clone(),
        Cache::new(&config.cache),
        Upstream::new(&config.upstream),
    );
    let parses = Message::from_vec(data).is_ok();
    let question = answered_question(data).unwrap_or(DEFAULT_QUESTION);
    let mut out = Vec::with_capacity(512);
    let mut rec = Recorder::off();
    for edns in [None, Some(false), Some(true)] {
        let query = client_query(question, edns);
        for (proto, first, again) in [(Proto::Udp, STRICT, LAX), (Proto::Tcp, LAX, STRICT)] {
            let client = SocketAddr::new(first, 5353);
            match handler.handle(&query, client, proto, &mut out, &mut rec) {
                Outcome::Forward(job) => {
                    let answer = if upstream::same_question(&query, data) {
                        Ok((0, data.to_vec()))
                    } else {
                        Err(upstream::Error::Timeout {
                            server: "fuzz".into(),
                        })
                    };
                    handler.forward_answered(job, answer, &mut out);
                }
                // Blocked by a list, or cached in the UDP round.
                Outcome::Reply => {}
                Outcome::Drop => panic!("a query was dropped"),
            }
            check_response(data, parses, (&query, question.len()), proto, &out);
            let client = SocketAddr::new(again, 5353);
            match handler.handle(&query, client, proto, &mut out, &mut rec) {
                Outcome::Reply => {
                    check_response(data, parses, (&query, question.len()), proto, &out)
                }
                Outcome::Forward(_) => {} // not kept
                Outcome::Drop => panic!("a query was dropped"),
            }
        }
    }
}

/// See [`response`]: `query` is the client's, its question `question_len` bytes long.
fn check_response(
    data: &[u8],
    parses: bool,
    (query, question_len): (&[u8], usize),
    proto: Proto,
    out: &[u8],
) {
    if parses && let Err(e) = Message::from_vec(out) {
        panic!(
            "the answer does not parse ({e}):\nupstream {data:02x?}\nquery {query:02x?}\nanswer {out:02x?}"
        );
    }
    assert_eq!(
        out.get(..2),
        query.get(..2),
        "the answer's ID is not the query's"
    );
    assert!(
        out.get(2).is_some_and(|f| f & 0x80 != 0),
        "QR clear: {out:02x?}"
    );
    if wire::u16_at(data, 4) != Some(0) {
        let end = wire::HEADER_LEN + question_len;
        assert!(
            wire::u16_at(out, 4).is_some_and(|n| n >= 1),
            "no question: {out:02x?}"
        );
        assert_eq!(
            out.get(wire::HEADER_LEN..end),
            query.get(wire::HEADER_LEN..end),
            "the question is not echoed byte for byte:\nupstream {data:02x?}\nanswer {out:02x?}"
        );
    }
    if proto == Proto::Udp {
        let limit = if wire::u16_at(query, 10) == Some(1) {
            usize::from(wire::EDNS_UDP_SIZE)
        } else {
            512
        };
        assert!(
            out.len() <= limit,
            "a UDP answer of {} bytes exceeds {limit}",
            out.len()
        );
    }
}

// ---- list parsers ----

/// `data` as a list in `format`: every line through the format's parser
/// (one parser for the file, so RPZ state carries over), then the bytes
/// through the loader, then format detection. A parser emits only non-empty
/// names and says `Entries` exactly when it emitted some; the loader's
/// counts agree with what it handed over.
pub fn list(format: Format, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parser = format.parser();
    for line in text.split('\n') {
        let mut emitted = 0usize;
        let outcome = parser.parse_line(line, &mut |e| {
            assert!(!e.name.is_empty(), "empty name emitted for {line:?}");
            emitted += 1;
        });
        assert_eq!(
            emitted > 0,
            outcome == lists::format::Outcome::Entries,
            "{format:?} line {line:?}: {outcome:?} after {emitted} entries"
        );
    }

    let mut names = 0u64;
    let stats = lists::load_lines(&mut &data[..], format, &mut |key, _| {
        assert!(
            !key.as_bytes().is_empty(),
            "the loader handed over the root"
        );
        names += 1;
    })
    .expect("reading memory cannot fail");
    let lines = if data.is_empty() {
        0
    } else {
        data.split(|b| *b == b'\n').count() as u64 - u64::from(data.ends_with(b"\n"))
    };
    assert_eq!(stats.lines, lines, "line count");
    assert_eq!(stats.names, names, "names counted and handed over differ");
    assert!(stats.warnings.len() <= MAX_WARNINGS);
    assert!(stats.invalid + stats.unsupported >= stats.warnings.len() as u64);
    for w in &stats.warnings {
        assert!(
            (1..=lines as usize).contains(&w.line),
            "warning {w} out of range"
        );
    }
    let _ = Format::detect(&text);
}

// ---- config ----

/// `data` as a configuration file: it loads or is refused with problems,
/// each at a place inside the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // `Config::load` refuses it before parsing
    };
    let path = Path::new("/nonexistent/fuzz.toml");
    match Config::parse(path, text) {
        Ok(_) => {}
        Err(config::Error::Read { .. }) => panic!("parse read a file"),
        Err(config::Error::Invalid(problems)) => {
            assert!(!problems.is_empty(), "refused without a problem");
            let lines: Vec<&str> = text.split('\n').collect();
            for p in &problems {
                let at = &p.location;
                assert_eq!(at.file, path, "{p}");
                assert!((1..=lines.len()).contains(&at.line), "{p}: no such line");
                assert!(
                    (1..=lines[at.line - 1].len() + 1).contains(&at.col),
                    "{p}: no such column"
                );
                assert!(!p.message.is_empty(), "{p}: no message");
            }
        }
    }
}

// ---- zone transfers ----

/// The zone every transfer input is for.
pub const XFR_ZONE: &str = "rpz.test";

/// `data` is a transfer: a mode byte (bit 0: IXFR, else AXFR), our copy's
/// serial (u32), the query ID (u16), our copy's length (u16) and text, then
/// the primary's TCP stream (each message after its u16 length), as
/// [`xfr_input`] writes it. A new copy always starts with its `$ORIGIN`,
/// holds an SOA that reads back with the new serial (the next IXFR asks
/// with it), and loads through the RPZ parser as the reload will.
pub fn transfer(data: &[u8]) {
    let Some(input) = XfrInput::split(data) else {
        return;
    };
    let copy = String::from_utf8_lossy(input.copy);
    let mut messages = Vec::new();
    let mut rest = input.stream;
    while let Some(len) = wire::u16_at(rest, 0) {
        let Some(m) = rest.get(2..2 + usize::from(len)) else {
            break;
        };
        messages.push(m);
        rest = &rest[2 + usize::from(len)..];
    }
    let (serial, text) = match xfr::read_transfer(XFR_ZONE, input.have, &copy, input.id, messages) {
        Ok(Ixfr::UpToDate) | Err(_) => return,
        Ok(Ixfr::Full(serial, text, _) | Ixfr::Applied(serial, text, ..)) => (serial, text),
    };
    let origin = format!("$ORIGIN {XFR_ZONE}.\n");
    assert!(text.starts_with(&origin), "{text:?}");
    match xfr::copy_soa(XFR_ZONE, &text) {
        Ok(soa) => assert!(
            matches!(&soa.data, RData::SOA(s) if s.serial == serial),
            "the next IXFR would ask from {soa}, not serial {serial}"
        ),
        Err(e) => panic!("the new copy's SOA does not parse back: {e}\n{text}"),
    }
    list(Format::Rpz, text.as_bytes());
}

/// The parts of a [`transfer`] input.
struct XfrInput<'a> {
    /// Our copy's serial for an IXFR, `None` for an AXFR.
    have: Option<u32>,
    id: u16,
    copy: &'a [u8],
    /// The primary's TCP stream.
    stream: &'a [u8],
}

impl<'a> XfrInput<'a> {
    fn split(data: &'a [u8]) -> Option<Self> {
        let mode = *data.first()?;
        let serial = wire::u32_at(data, 1)?;
        let copy_len = usize::from(wire::u16_at(data, 7)?);
        Some(Self {
            have: (mode & 1 == 1).then_some(serial),
            id: wire::u16_at(data, 5)?,
            copy: data.get(9..9 + copy_len)?,
            stream: &data[9 + copy_len..],
        })
    }
}

/// The input [`transfer`] reads: for seeds and regression tests.
pub fn xfr_input(have: Option<u32>, id: u16, copy: &str, messages: &[Vec<u8>]) -> Vec<u8> {
    let mut data = vec![u8::from(have.is_some())];
    data.extend_from_slice(&have.unwrap_or(0).to_be_bytes());
    data.extend_from_slice(&id.to_be_bytes());
    data.extend_from_slice(&(copy.len() as u16).to_be_bytes());
    data.extend_from_slice(copy.as_bytes());
    for m in messages {
        data.extend_from_slice(&(m.len() as u16).to_be_bytes());
        data.extend_from_slice(m);
    }
    data
}

// ---- OFAC ----

/// `data` as an SDN file (XML or CSV): every website belongs to an entity
/// read, on a line of the file; a website's domain is a non-empty part of
/// its address; the importer hands over only what it counts.
pub fn ofac(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // `load_ofac` refuses it before parsing
    };
    let _ = ofac::looks_like(text);
    let lines = text.split('\n').count();
    if let Ok(sdn) = ofac::parse(text) {
        assert!(
            sdn.records >= sdn.entities.len(),
            "more entities than records"
        );
        for w in &sdn.websites {
            assert!(w.entity < sdn.entities.len(), "website of no entity");
            assert!((1..=lines).contains(&w.line), "website on line {}", w.line);
            if let Some(d) = ofac::website_domain(&w.address) {
                assert!(!d.is_empty() && w.address.contains(d), "{d:?} from {w:?}");
            }
        }
    }
    let mut names = 0u64;
    let stats = lists::load_ofac_text(text, &mut |key, _, _| {
        assert!(!key.as_bytes().is_empty());
        names += 1;
    });
    assert_eq!(stats.names, names);
    assert!(stats.warnings.len() <= MAX_WARNINGS);
}
