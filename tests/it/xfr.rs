//! RPZ by zone transfer: embargo as the secondary of a feed's primary.
//!
//! By default the primary is hickory-server, in process on 127.0.0.1, so the
//! tests need nothing beside the repository. It serves AXFR but has no IXFR
//! and sends no NOTIFY of its own: the test sends the NOTIFY as a primary
//! would, from the primary's address, and embargo's IXFR attempt falls back
//! to AXFR. [`knot`] runs the same story against a real knotd for the parts
//! hickory cannot play (IXFR, knot's own NOTIFY, TSIG); it is ignored unless
//! asked for, and `.ci/run` installs knot and asks for it.

mod knot;
mod raw;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::UdpSocket;

use crate::harness::{Embargo, Upstream, bind_pair, config, ede, query, udp, with_http};
use raw::{RawPrimary, Zone as RawZone};

/// The RPZ zone `rpz.test.` at `serial`: NXDOMAIN for each of `names` and
/// every name below it.
fn rpz(serial: u32, names: &[&str]) -> String {
    let mut z = format!(
        "$ORIGIN rpz.test.\n$TTL 60\n@ SOA ns.rpz.test. hostmaster.rpz.test. {serial} 3600 600 86400 60\n@ NS ns.rpz.test.\nns A 127.0.0.1\n"
    );
    for n in names {
        z.push_str(&format!("{n} CNAME .\n*.{n} CNAME .\n"));
    }
    z
}

/// A `[[lists]]` entry taking `rpz.test` from `primary`, refreshed every
/// `refresh` (plus `extra` lines, such as a TSIG key).
fn feed(primary: SocketAddr, refresh: &str, extra: &str) -> String {
    format!(
        "[[lists]]\nname = \"feed\"\nsource = \"axfr://{primary}/rpz.test\"\nformat = \"rpz\"\nrefresh = \"{refresh}\"\nauthority = \"threat-intel vendor\"\n{extra}"
    )
}

async fn blocked(e: &Embargo, name: &str) -> bool {
    let r = udp(e.addr, &query(name, RecordType::A, true)).await;
    r.metadata.response_code == ResponseCode::NXDomain && ede(&r).is_some()
}

/// Waits until `name` is blocked (or not, `want`): checked after each
/// reload the server finishes (a transfer, then its reload), for at most
/// [`crate::harness::RELOAD_WAIT`]. Returns how long it took.
async fn until(e: &Embargo, name: &str, want: bool) -> Duration {
    e.until_reloaded(&format!("{name}: blocked == {want}"), async || {
        blocked(e, name).await == want
    })
    .await
}

/// What the state directory says of the feed's copy.
fn meta(e: &Embargo) -> embargo::source::FetchMeta {
    embargo::source::read_meta(&e.dir().join("embargo-state/lists/feed.list"))
}

/// A NOTIFY for `zone` (RFC 1996), sent from `from` to `to`; the reply.
async fn notify(from: IpAddr, to: SocketAddr, zone: &str) -> Message {
    let mut m = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Notify);
    m.metadata.authoritative = true;
    m.add_query(Query::query(
        Name::from_ascii(zone).expect("zone"),
        RecordType::SOA,
    ));
    let sock = UdpSocket::bind((from, 0)).await.expect("bind");
    sock.send_to(&m.to_vec().expect("encode"), to)
        .await
        .expect("send");
    let mut buf = vec![0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a reply to the NOTIFY")
        .expect("recv");
    let reply = Message::from_vec(&buf[..n]).expect("reply decodes");
    assert_eq!(reply.metadata.id, m.metadata.id, "reply ID");
    assert_eq!(reply.metadata.op_code, OpCode::Notify);
    reply
}

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

/// `rpz.test.` from zone text, open to AXFR from anyone.
fn zone(text: &str) -> Zone {
    let origin = Name::from_str("rpz.test.").expect("origin");
    let (name, records) = Parser::new(text, None, Some(origin))
        .parse()
        .expect("zone parses");
    let records: BTreeMap<_, _> = records.into_iter().collect();
    Zone::new(name, records, ZoneType::Primary, AxfrPolicy::AllowAll).expect("zone")
}

/// The primary's catalog, noting the type of every query it receives.
struct Logged {
    catalog: Catalog,
    received: Arc<Mutex<Vec<RecordType>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Logged {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        if let (Ok(info), Ok(mut received)) = (request.request_info(), self.received.lock()) {
            received.push(info.query.query_type());
        }
        self.catalog.handle_request::<R, T>(request, response).await
    }
}

/// An RPZ primary in process: hickory-server with `rpz.test.` in memory on
/// 127.0.0.1 (UDP and TCP on one port).
struct Primary {
    addr: SocketAddr,
    zone: Arc<Zone>,
    received: Arc<Mutex<Vec<RecordType>>>,
    server: Server<Logged>,
}

impl Primary {
    async fn start(text: &str) -> Self {
        let zone = Arc::new(zone(text));
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = zone.clone();
        catalog.upsert(zone.origin().clone(), vec![handler]);
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut server = Server::new(Logged {
            catalog,
            received: received.clone(),
        });
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("addr");
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Self {
            addr,
            zone,
            received,
            server,
        }
    }

    /// Serves `text` from now on: the records are replaced in one step, the
    /// way a primary loads a new version of the zone (its SOA says which).
    async fn publish(&self, text: &str) {
        let records = zone(text).records().await.clone();
        *self.zone.records_mut().await = records;
    }

    /// How many queries of type `rtype` have reached the primary.
    fn received(&self, rtype: RecordType) -> usize {
        self.received
            .lock()
            .map(|r| r.iter().filter(|t| **t == rtype).count())
            .unwrap_or(0)
    }

    /// Waits until the primary has received `n` queries of type `rtype`.
    async fn until_received(&self, rtype: RecordType, n: usize, within: Duration) {
        let started = Instant::now();
        while self.received(rtype) < n {
            assert!(
                started.elapsed() < within,
                "{} {rtype} queries after {within:?}, not {n}",
                self.received(rtype)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving; nothing listens on its address afterwards.
    async fn stop(mut self) {
        self.server
            .shutdown_gracefully()
            .await
            .expect("primary stops");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_secondaries_transfer_the_zone_and_apply_a_serial_bump_on_notify() {
    let up = Upstream::start().await;
    let primary = Primary::start(&rpz(1, &["feed-a.example", "feed-b.example"])).await;
    // The refresh timer is an hour away: after the first transfer, only a
    // NOTIFY makes the instances ask again.
    let cfg = config(up.addr, &feed(primary.addr, "1h", ""));
    let a = Embargo::start(&cfg, &[]).await;
    let b = Embargo::start(&cfg, &[]).await;
    for e in [&a, &b] {
        until(e, "x.feed-a.example.", true).await;
        assert!(blocked(e, "feed-b.example.").await);
        assert!(blocked(e, "deep.www.feed-b.example.").await);
        assert!(!blocked(e, "feed-c.example.").await);
        assert!(!blocked(e, "example.").await, "the parent is not listed");
        let m = meta(e);
        assert_eq!(m.serial, Some(1));
        assert_eq!(m.last_transfer.as_deref(), Some("AXFR"), "{m:?}");
    }
    assert_eq!(primary.received(RecordType::AXFR), 2);
    assert_eq!(primary.received(RecordType::IXFR), 0, "no copy, no IXFR");

    // NOTIFYs that are not for us, or not from the primary, change nothing.
    let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
    let other: IpAddr = "127.0.0.2".parse().expect("ip");
    let r = notify(loopback, a.addr, "other.test.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let r = notify(other, a.addr, "rpz.test.").await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(!r.metadata.authoritative);

    // Serial bump: feed-b removed, feed-c added, then the NOTIFY.
    primary
        .publish(&rpz(2, &["feed-a.example", "feed-c.example"]))
        .await;
    for e in [&a, &b] {
        let r = notify(loopback, e.addr, "rpz.test.").await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(
            r.metadata.authoritative,
            "accepted for our copy of the zone"
        );
        let took = until(e, "www.feed-c.example.", true).await;
        until(e, "feed-b.example.", false).await;
        assert!(blocked(e, "feed-a.example.").await);
        eprintln!("applied within {took:?} of the NOTIFY");
        // The primary has no IXFR: embargo asked for one, then took the zone by AXFR.
        let m = meta(e);
        assert_eq!(m.serial, Some(2));
        assert_eq!(m.last_transfer.as_deref(), Some("AXFR"), "{m:?}");
    }
    assert_eq!(primary.received(RecordType::IXFR), 2);
    assert_eq!(primary.received(RecordType::AXFR), 4);

    // The copy survives a restart with the primary gone.
    let gone = primary.addr;
    primary.stop().await;
    assert!(
        tokio::net::TcpStream::connect(gone).await.is_err(),
        "the primary is still listening"
    );
    let dir = a.stop_keep_dir().await;
    let a = Embargo::start_in(dir).await;
    assert!(blocked(&a, "feed-c.example.").await);
    assert!(blocked(&a, "feed-a.example.").await);
    assert!(!blocked(&a, "feed-b.example.").await);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_refresh_timer_follows_the_serial_not_the_content() {
    let up = Upstream::start().await;
    let primary = Primary::start(&rpz(7, &["feed-a.example"])).await;
    let e = Embargo::start(&config(up.addr, &feed(primary.addr, "1s", "")), &[]).await;
    until(&e, "feed-a.example.", true).await;
    assert_eq!(primary.received(RecordType::AXFR), 1);

    // New content under the same serial: a secondary must not take it. Two
    // more SOA checks mean at least one whole refresh saw it.
    primary
        .publish(&rpz(7, &["feed-a.example", "feed-b.example"]))
        .await;
    let soa = primary.received(RecordType::SOA);
    primary
        .until_received(RecordType::SOA, soa + 2, crate::harness::RELOAD_WAIT)
        .await;
    assert_eq!(primary.received(RecordType::AXFR), 1, "unchanged serial");
    assert!(!blocked(&e, "feed-b.example.").await);
    assert_eq!(meta(&e).last_result, "not modified");

    // The serial moves: the next timer refresh transfers, no NOTIFY needed.
    primary.publish(&rpz(8, &["feed-b.example"])).await;
    until(&e, "feed-b.example.", true).await;
    until(&e, "feed-a.example.", false).await;
    assert_eq!(meta(&e).serial, Some(8));
    assert_eq!(primary.received(RecordType::AXFR), 2);
    assert_eq!(primary.received(RecordType::IXFR), 1);
    e.stop().await;
    primary.stop().await;
}

/// Waits until the feed's copy has been refused (or failed, `failed`) once
/// more than `before` times; its metadata then.
async fn until_turned_down(
    e: &Embargo,
    failed: bool,
    before: u64,
    within: Duration,
) -> embargo::source::FetchMeta {
    let started = Instant::now();
    loop {
        let m = meta(e);
        if (if failed { m.failures } else { m.refused }) > before {
            return m;
        }
        assert!(
            started.elapsed() < within,
            "no {} transfer after {within:?}: {m:?}",
            if failed { "failed" } else { "refused" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The feed's entry in `/api/lists`.
async fn api_list(http: SocketAddr) -> serde_json::Value {
    let body = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
        .get(format!("http://{http}/api/lists"))
        .send()
        .await
        .expect("GET /api/lists")
        .text()
        .await
        .expect("body");
    let lists: serde_json::Value = serde_json::from_str(&body).expect("json");
    lists["lists"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == "feed").cloned())
        .unwrap_or_else(|| panic!("no feed in {body}"))
}

/// Issue 16 (6): a transfer goes through the guards a download does. A
/// zone that lost more than `max_shrink` of its names, or all of them, is
/// refused, the last good copy stays in force, and `/api/lists` says why.
#[tokio::test(flavor = "multi_thread")]
async fn r16_a_transfer_that_shrinks_or_empties_the_feed_is_refused_and_the_copy_stays() {
    let up = Upstream::start().await;
    let names = [
        "feed-a.example",
        "feed-b.example",
        "feed-c.example",
        "feed-d.example",
    ];
    let primary = Primary::start(&rpz(1, &names)).await;
    // The default max_shrink (50%), and one that lets the list shrink as it will.
    let strict = Embargo::start(&config(up.addr, &feed(primary.addr, "1h", "")), &[]).await;
    let lenient = Embargo::start(
        &with_http(
            &config(
                up.addr,
                &feed(primary.addr, "1h", "max_shrink = \"100%\"\n"),
            ),
            "listen = [\"127.0.0.1:0\"]",
        ),
        &[],
    )
    .await;
    for e in [&strict, &lenient] {
        until(e, "www.feed-d.example.", true).await;
    }
    let loopback: IpAddr = "127.0.0.1".parse().expect("ip");

    // Three names of four gone: more than 50% fewer.
    primary.publish(&rpz(2, &["feed-a.example"])).await;
    for e in [&strict, &lenient] {
        notify(loopback, e.addr, "rpz.test.").await;
    }
    until(&lenient, "feed-d.example.", false).await;
    let m = until_turned_down(&strict, false, 0, crate::harness::RELOAD_WAIT).await;
    assert!(
        m.last_result.starts_with("refused") && m.last_result.contains("max_shrink"),
        "{m:?}"
    );
    assert_eq!(m.serial, Some(1), "the copy in use stays at its serial");
    assert!(
        blocked(&strict, "www.feed-d.example.").await,
        "the last good copy stays"
    );

    // No names left at all (SOA and NS only): refused whatever max_shrink says.
    primary.publish(&rpz(3, &[])).await;
    notify(loopback, lenient.addr, "rpz.test.").await;
    let m = until_turned_down(&lenient, false, 0, crate::harness::RELOAD_WAIT).await;
    assert!(
        m.last_result.starts_with("refused") && m.last_result.contains("no names"),
        "{m:?}"
    );
    assert_eq!(m.serial, Some(2));
    assert!(
        blocked(&lenient, "feed-a.example.").await,
        "the last good copy stays"
    );
    let api = api_list(lenient.http[0]).await;
    assert_eq!(api["last_result"], m.last_result.as_str(), "{api}");
    assert_eq!(api["in_force"], true, "{api}");

    // An operator can take the empty zone on purpose (`embargo fetch --force`).
    let config = embargo::Config::load(&lenient.dir().join("embargo.toml")).expect("config");
    let spec = config
        .lists
        .iter()
        .find(|l| l.name == "feed")
        .expect("feed list");
    let embargo::config::Source::Axfr(src) = &spec.source else {
        panic!("axfr source")
    };
    assert_eq!(
        embargo::source::xfr::refresh(spec, src, true).await,
        embargo::source::Outcome::Updated { entries: 0 }
    );
    assert_eq!(meta(&lenient).serial, Some(3));

    strict.stop().await;
    lenient.stop().await;
    primary.stop().await;
}

/// Issue 16 (6): a primary that never closes its zone (or sends a huge
/// one) is cut off once the zone passes `max_size_mb`, as a download is,
/// not after a million messages held in memory; the IXFR that hit the
/// limit is not tried again as an AXFR, and the last good copy stays.
#[tokio::test(flavor = "multi_thread")]
async fn r16_an_endless_zone_is_cut_at_max_size_as_it_streams_and_the_copy_stays() {
    const MIB: u64 = 1024 * 1024;
    let up = Upstream::start().await;
    let primary = RawPrimary::start(RawZone::Names {
        serial: 1,
        count: 50,
    })
    .await;
    let e = Embargo::start(
        &config(
            up.addr,
            &feed(primary.addr, "1h", "max_size_mb = 1\ntimeout = \"30s\"\n"),
        ),
        &[],
    )
    .await;
    until(&e, "www.n7.example.", true).await;
    assert_eq!(primary.transfers(), 1);
    let before = primary.sent();

    primary.publish(RawZone::Endless {
        serial: 2,
        cap: 32 * MIB,
    });
    let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
    notify(loopback, e.addr, "rpz.test.").await;
    let m = until_turned_down(&e, true, 0, Duration::from_secs(60)).await;
    assert!(
        m.last_result.contains("1048576-byte limit"),
        "cut at max_size: {m:?}"
    );
    assert_eq!(m.serial, Some(1), "the copy in use stays at its serial");
    assert!(blocked(&e, "n7.example.").await, "the last good copy stays");
    let streamed = primary.sent() - before;
    // 1 MiB of zone text is about 0.4 MiB on the wire; the rest is what the
    // kernel's socket buffers took before embargo hung up.
    assert!(
        streamed < 16 * MIB,
        "{streamed} bytes streamed before the transfer was cut"
    );
    assert_eq!(
        primary.transfers(),
        2,
        "one IXFR, cut, and no AXFR after it"
    );
    assert_eq!(primary.hung_up(), 1, "embargo hung up on the endless zone");
    e.stop().await;
}

/// Issue 16 (7): a transferred zone is converted as its messages arrive,
/// and parsed, written and fsynced off the runtime that carries forwarded
/// answers. On a one-thread runtime, a task beside the refresh keeps
/// running: the runtime's thread is never held, between two of its
/// wake-ups, for anything like the CPU time that parsing the zone takes.
#[test]
fn r16_a_large_zone_is_parsed_and_written_off_the_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    const NAMES: usize = 40_000;
    // The primary builds and encodes its zone on a runtime of its own.
    let primary_rt = tokio::runtime::Runtime::new().expect("runtime");
    let primary = primary_rt.block_on(RawPrimary::start(RawZone::Names {
        serial: 1,
        count: NAMES,
    }));
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("embargo.toml");
        std::fs::write(dir.path().join("seized.txt"), "seized.example\n").expect("list");
        std::fs::write(
            &path,
            config(
                "127.0.0.1:9".parse().expect("addr"),
                &feed(primary.addr, "1h", ""),
            ),
        )
        .expect("config");
        let config = embargo::Config::load(&path).expect("config");
        let spec = &config.lists[1];
        let embargo::config::Source::Axfr(src) = &spec.source else {
            panic!("axfr source")
        };

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = tokio::spawn(crate::reload::worst_stall(stop.clone()));
        let outcome = embargo::source::xfr::refresh(spec, src, false).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let stalled = ticker.await.expect("ticker");
        // Each name and its wildcard.
        let names = 2 * NAMES as u64;
        assert_eq!(
            outcome,
            embargo::source::Outcome::Updated { entries: names }
        );

        // What parsing the copy costs, in CPU time on this thread.
        let started = crate::reload::thread_cpu();
        let mut parsed = 0u64;
        embargo::lists::load_file(&spec.path, spec.format, &mut |_, _| parsed += 1).expect("parse");
        let parse = crate::reload::thread_cpu() - started;
        assert_eq!(parsed, names);
        eprintln!(
            "parsing the zone takes {parse:?} of CPU; the runtime was held {stalled:?} at most"
        );
        assert!(
            stalled < parse / 3,
            "the runtime's thread was held for {stalled:?} of CPU; parsing the zone takes {parse:?}"
        );
    });
}
