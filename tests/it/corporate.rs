//! Issue 18, conditional forwarding: a corporate network's own names go to
//! its own DNS server, never to the public upstream. The "domain
//! controller" is a real authoritative server the test starts (hickory,
//! with `corp.example` and `10.in-addr.arpa`), beside the harness's public
//! upstream; both count every query they receive. The default local zones
//! are on, as they are out of the box.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{Embargo, Outage, Upstream, config, ede, query, tcp, udp, with_http};

/// The domain controller's zones: Active Directory's locator records, a
/// host, a name a list has, a CNAME into a listed public name, a record
/// with a 1 s TTL (for serve-stale), and the reverse zone of 10/8.
const DC_ZONES: &[(&str, &str)] = &[
    (
        "corp.example.",
        r#"$ORIGIN corp.example.
$TTL 300
@                       IN SOA dc1.corp.example. hostmaster.corp.example. 7 3600 600 86400 60
@                       IN NS dc1
dc1                     IN A 10.0.0.10
_ldap._tcp.dc._msdcs    IN SRV 0 100 389 dc1.corp.example.
blocked                 IN A 10.0.0.66
tracker                 IN CNAME www.seized.example.
coalesced               IN A 10.0.0.20
short 1                 IN A 10.0.0.31
"#,
    ),
    (
        "10.in-addr.arpa.",
        r#"$ORIGIN 10.in-addr.arpa.
$TTL 300
@                       IN SOA dc1.corp.example. hostmaster.corp.example. 7 3600 600 86400 60
@                       IN NS dc1.corp.example.
10.0.0                  IN PTR dc1.corp.example.
"#,
    ),
];

/// A list that holds a name under the forwarded zone.
const CORP_LIST: &str = "blocked.corp.example\n";

/// The harness config with the default local zones on (as shipped), a
/// list `corp`, `[[forward]]` for the DC's zones to `dc`, and `extra`
/// (more `[[forward]]` keys, `[log]`...) after it.
fn corporate(public: &Upstream, dc: &Upstream, forward_keys: &str, extra: &str) -> String {
    let tables = format!(
        "[[lists]]\nname = \"corp\"\nsource = \"corp.txt\"\n\n\
         [[forward]]\nzones = [\"corp.example\", \"10.in-addr.arpa\"]\nservers = [\"{}\"]\n{forward_keys}\n",
        dc.addr
    );
    let text = config(public.addr, &tables);
    assert!(text.contains("[local_zones]\ndefaults = false\n"));
    text.replace("[local_zones]\ndefaults = false\n", "[local_zones]\n")
        .replace("timeout_ms = 1000", "timeout_ms = 3000")
        + extra
}

fn a_of(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The authority section's SOA: (owner, MNAME).
fn soa_of(msg: &Message) -> Option<(String, String)> {
    msg.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some((r.name.to_string(), soa.mname.to_string())),
        _ => None,
    })
}

/// Every name the public upstream was asked that belongs to the network.
fn leaked(public: &Upstream) -> Vec<String> {
    public
        .seen()
        .into_iter()
        .filter(|n| n.ends_with("corp.example") || n.ends_with("in-addr.arpa"))
        .collect()
}

/// The query log's records, once it has at least `n` (waits up to 5 s).
async fn log_records(e: &Embargo, n: usize) -> Vec<serde_json::Value> {
    let path = e.dir().join("embargo-state/queries.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= n || Instant::now() > deadline {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}")))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The domain controller answers the AD locator, hosts and reverse names,
/// and its own NXDOMAIN; the public upstream never hears of them; a
/// listed name below the zone is blocked; private reverse zones that are
/// not forwarded stay local. Over UDP and TCP.
#[tokio::test(flavor = "multi_thread")]
async fn r18_forwarded_zones_go_to_the_domain_controller_only() {
    let public = Upstream::start().await;
    let dc = Upstream::start_zones(DC_ZONES, Duration::ZERO).await;
    let cfg = corporate(&public, &dc, "", "\n[log]\nqueries = \"all\"\n");
    let e = Embargo::start(&cfg, &[("corp.txt", CORP_LIST)]).await;
    for over_tcp in [false, true] {
        let ask = async |name: &str, rtype: RecordType| {
            let q = query(name, rtype, true);
            if over_tcp {
                tcp(e.addr, &q).await
            } else {
                udp(e.addr, &q).await
            }
        };
        let how = if over_tcp { "tcp" } else { "udp" };

        let r = ask("dc1.corp.example.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{how}");
        assert_eq!(a_of(&r), ["10.0.0.10"], "{how}: {r:?}");

        let r = ask("_ldap._tcp.dc._msdcs.corp.example.", RecordType::SRV).await;
        let srv: Vec<String> = r
            .answers
            .iter()
            .filter_map(|rr| match &rr.data {
                RData::SRV(s) => Some(format!(
                    "{} {} {} {}",
                    s.priority, s.weight, s.port, s.target
                )),
                _ => None,
            })
            .collect();
        assert_eq!(srv, ["0 100 389 dc1.corp.example."], "{how}: {r:?}");

        let r = ask("10.0.0.10.in-addr.arpa.", RecordType::PTR).await;
        let ptr: Vec<String> = r
            .answers
            .iter()
            .filter_map(|rr| match &rr.data {
                RData::PTR(p) => Some(p.0.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(ptr, ["dc1.corp.example."], "{how}: {r:?}");

        // A name the DC does not have: its NXDOMAIN and its SOA.
        let r = ask("nosuch.corp.example.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        assert_eq!(
            soa_of(&r),
            Some(("corp.example.".into(), "dc1.corp.example.".into())),
            "{how}: {r:?}"
        );
        assert!(ede(&r).is_none(), "the DC's answer, not a block: {r:?}");
        let r = ask("1.0.0.10.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        assert_eq!(
            soa_of(&r).map(|s| s.0),
            Some("10.in-addr.arpa.".into()),
            "the DC's reverse zone, not the local default one: {r:?}"
        );

        // Listed below a forwarded zone: blocked, never forwarded.
        let r = ask("blocked.corp.example.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        assert!(ede(&r).is_some(), "{how}: {r:?}");
        // A chain from the DC into a listed public name: blocked too.
        let r = ask("tracker.corp.example.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        let (_, text) = ede(&r).expect("an EDE");
        assert!(text.contains("reached through CNAME"), "{text}");

        // Another private reverse zone, not forwarded: answered here.
        let r = ask("10.1.168.192.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{how}");
        assert!(r.metadata.authoritative, "{how}");
        assert_eq!(
            soa_of(&r).map(|s| s.0),
            Some("168.192.in-addr.arpa.".into())
        );

        // The rest of the world still goes to the public upstream.
        let r = ask("ns.example.", RecordType::A).await;
        assert_eq!(a_of(&r), ["192.0.2.53"], "{how}");
    }
    assert_eq!(dc.count("blocked.corp.example"), 0, "a listed name leaked");
    assert_eq!(dc.count("10.1.168.192.in-addr.arpa"), 0);
    // The second round (TCP) was answered from the cache.
    assert_eq!(dc.count("dc1.corp.example"), 1, "cached");
    assert_eq!(dc.count("_ldap._tcp.dc._msdcs.corp.example"), 1);
    assert_eq!(
        leaked(&public),
        Vec::<String>::new(),
        "the public upstream heard of them"
    );
    assert_eq!(public.count("ns.example"), 1);

    // The query log names the server each answer came from.
    let log = log_records(&e, 20).await;
    let upstream_of = |name: &str| -> Vec<serde_json::Value> {
        log.iter()
            .filter(|r| r["name"] == name && r["decision"] == "forwarded")
            .map(|r| r["upstream"].clone())
            .collect()
    };
    assert_eq!(
        upstream_of("dc1.corp.example"),
        [serde_json::json!(dc.addr.to_string())],
        "{log:#?}"
    );
    assert_eq!(
        upstream_of("ns.example"),
        [serde_json::json!(public.addr.to_string())]
    );
    let local: Vec<&serde_json::Value> = log
        .iter()
        .filter(|r| r["name"] == "10.1.168.192.in-addr.arpa")
        .collect();
    assert_eq!(local.len(), 2, "{log:#?}");
    assert!(
        local.iter().all(|r| r["decision"] == "local"
            && r["upstream"].is_null()
            && r["rcode"] == "NXDOMAIN"),
        "{local:#?}"
    );
    e.stop().await;
}

/// The cache's siblings work for a forwarded zone as for the rest:
/// identical questions in flight share one query to the DC, and when the
/// DC goes silent an expired answer is served stale (RFC 8767).
#[tokio::test(flavor = "multi_thread")]
async fn r18_coalescing_and_serve_stale_for_a_forwarded_zone() {
    let public = Upstream::start().await;
    let dc = Upstream::start_zones(DC_ZONES, Duration::from_millis(300)).await;
    let cfg = corporate(&public, &dc, "timeout_ms = 1500\n", "").replace(
        "[cache]\nsize = 1000\n",
        "[cache]\nsize = 1000\nstale_max = \"30s\"\n",
    );
    let e = Embargo::start(&cfg, &[("corp.txt", CORP_LIST)]).await;
    let addr = e.addr;
    let asks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                udp(
                    addr,
                    &query("coalesced.corp.example.", RecordType::A, false),
                )
                .await
            })
        })
        .collect();
    for a in asks {
        let r = a.await.expect("task");
        assert_eq!(a_of(&r), ["10.0.0.20"]);
    }
    assert_eq!(dc.count("coalesced.corp.example"), 1, "one query to the DC");

    let r = udp(e.addr, &query("short.corp.example.", RecordType::A, true)).await;
    assert_eq!(a_of(&r), ["10.0.0.31"]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    dc.set_outage(Outage::Silent);
    for over_tcp in [false, true] {
        let q = query("short.corp.example.", RecordType::A, true);
        let r = if over_tcp {
            tcp(e.addr, &q).await
        } else {
            udp(e.addr, &q).await
        };
        assert_eq!(a_of(&r), ["10.0.0.31"], "stale over tcp {over_tcp}: {r:?}");
        assert_eq!(ede(&r).map(|e| e.0), Some(3), "Stale Answer");
    }
    assert_eq!(leaked(&public), Vec::<String>::new());
    e.stop().await;
}

/// `/api/check` names the upstream set a name goes to, and the local zone
/// a private reverse name falls in.
#[tokio::test(flavor = "multi_thread")]
async fn r18_the_api_names_the_upstream_set() {
    let public = Upstream::start().await;
    let dc = Upstream::start_zones(DC_ZONES, Duration::ZERO).await;
    let cfg = with_http(
        &corporate(&public, &dc, "", ""),
        "listen = \"127.0.0.1:0\"\n",
    );
    let e = Embargo::start(&cfg, &[("corp.txt", CORP_LIST)]).await;
    let http = e.http[0];
    let get = async |path: &str| -> serde_json::Value {
        let body = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!("http://{http}{path}"))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"))
    };
    let c = get("/api/check?name=_ldap._tcp.dc._msdcs.corp.example").await;
    assert_eq!(c["name"]["verdict"], "allowed", "{c}");
    assert_eq!(
        c["name"]["upstream"],
        format!("forward[1] ({}) for zone corp.example", dc.addr),
        "{c}"
    );
    let c = get("/api/check?name=ns.example").await;
    assert_eq!(c["name"]["upstream"], "[upstream]", "{c}");
    let c = get("/api/check?name=10.1.168.192.in-addr.arpa").await;
    assert_eq!(c["name"]["verdict"], "local", "{c}");
    let c = get("/api/check?name=blocked.corp.example").await;
    assert_eq!(c["name"]["verdict"], "blocked", "{c}");
    e.stop().await;
}

/// A reload that moves a zone to other servers takes effect at once: the
/// new servers answer, and nothing cached from the old ones is served (the
/// cache keeps answers per upstream set). A `[[forward]]` table added by a
/// reload needs no restart.
#[tokio::test(flavor = "multi_thread")]
async fn r18_a_reload_moves_a_zone_to_its_new_servers() {
    let public = Upstream::start().await;
    let dc = Upstream::start_zones(DC_ZONES, Duration::ZERO).await;
    const NEW_DC: &[(&str, &str)] = &[(
        "corp.example.",
        "$ORIGIN corp.example.\n$TTL 300\n@ IN SOA dc2.corp.example. h.corp.example. 8 3600 600 86400 60\n@ IN NS dc2\ndc1 IN A 10.9.0.10\n",
    )];
    let dc2 = Upstream::start_zones(NEW_DC, Duration::ZERO).await;
    // No [[forward]] at first: the public upstream is asked (and says no).
    let plain = config(public.addr, "").replace("timeout_ms = 1000", "timeout_ms = 3000");
    let e = Embargo::start(&plain, &[("corp.txt", CORP_LIST)]).await;
    let r = udp(e.addr, &query("dc1.corp.example.", RecordType::A, false)).await;
    assert_ne!(a_of(&r), ["10.0.0.10"]);
    assert_eq!(public.count("dc1.corp.example"), 1);
    // The file watcher starts beside the sockets: let it watch.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let write = |text: &str| {
        let path = e.dir().join("embargo.toml");
        let tmp = e.dir().join("embargo.toml.new");
        std::fs::write(&tmp, text).expect("config");
        std::fs::rename(&tmp, &path).expect("rename");
    };
    let until = async |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = udp(e.addr, &query("dc1.corp.example.", RecordType::A, false)).await;
            if a_of(&r) == [want] {
                return;
            }
            assert!(Instant::now() < deadline, "still {r:?}, want {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // Added by a reload: the DC answers, though the public NXDOMAIN is cached.
    let with_dc = config(
        public.addr,
        &format!(
            "[[forward]]\nzones = [\"corp.example\"]\nservers = [\"{}\"]\n",
            dc.addr
        ),
    )
    .replace("timeout_ms = 1000", "timeout_ms = 3000");
    write(&with_dc);
    until("10.0.0.10").await;
    // Moved to the new DC: its answer, not the old one's cached answer.
    write(&with_dc.replace(&dc.addr.to_string(), &dc2.addr.to_string()));
    until("10.9.0.10").await;
    assert_eq!(dc.count("dc1.corp.example"), 1);
    assert_eq!(dc2.count("dc1.corp.example"), 1);
    assert_eq!(
        public.count("dc1.corp.example"),
        1,
        "only before the forward"
    );
    e.stop().await;
}

/// knotd (Debian package `knot`) as the domain controller, serving the
/// zones of [`DC_ZONES`] on 127.0.0.1.
struct KnotDc {
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

impl KnotDc {
    fn start() -> Self {
        use std::process::{Command, Stdio};
        let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd", "/sbin/knotd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect(
                "knotd is not installed: this test needs Debian package knot (.ci/run installs it)",
            );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let d = dir.path().display();
        let mut zones = String::new();
        for (origin, text) in DC_ZONES {
            let file = format!("{}zone", origin);
            std::fs::write(dir.path().join(&file), text).expect("zone file");
            zones.push_str(&format!("  - domain: {origin}\n    file: {file}\n"));
        }
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    background-workers: 1\n\
database:\n    storage: \"{d}/db\"\n\
control:\n    listen: \"{d}/knot.sock\"\n\
log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
template:\n  - id: default\n    storage: \"{d}\"\n    semantic-checks: off\n    zonefile-sync: -1\n\
zone:\n{zones}"
        );
        std::fs::create_dir_all(dir.path().join("db")).expect("db dir");
        std::fs::write(dir.path().join("knot.conf"), conf).expect("conf");
        let child = Command::new(knotd)
            .arg("--config")
            .arg(dir.path().join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start knotd");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "knotd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            addr,
            _dir: dir,
            child,
        }
    }
}

impl Drop for KnotDc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same story against a real authoritative server, knotd, as the
/// domain controller: its answers, its NXDOMAIN and SOA, and nothing to
/// the public upstream.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs knotd (Debian package knot): .ci/run runs it with --ignored"]
async fn r18_knotd_as_the_domain_controller() {
    let public = Upstream::start().await;
    let knot = KnotDc::start();
    let tables = format!(
        "[[lists]]\nname = \"corp\"\nsource = \"corp.txt\"\n\n\
         [[forward]]\nzones = [\"corp.example\", \"10.in-addr.arpa\"]\nservers = [\"{}\"]\n",
        knot.addr
    );
    let cfg = config(public.addr, &tables)
        .replace("[local_zones]\ndefaults = false\n", "[local_zones]\n")
        .replace("timeout_ms = 1000", "timeout_ms = 3000");
    let e = Embargo::start(&cfg, &[("corp.txt", CORP_LIST)]).await;
    for over_tcp in [false, true] {
        let ask = async |name: &str, rtype: RecordType| {
            let q = query(name, rtype, true);
            if over_tcp {
                tcp(e.addr, &q).await
            } else {
                udp(e.addr, &q).await
            }
        };
        let r = ask("dc1.corp.example.", RecordType::A).await;
        assert_eq!(a_of(&r), ["10.0.0.10"], "{r:?}");
        let r = ask("_ldap._tcp.dc._msdcs.corp.example.", RecordType::SRV).await;
        assert!(
            r.answers.iter().any(|rr| matches!(&rr.data,
                RData::SRV(s) if s.port == 389 && s.target.to_string() == "dc1.corp.example.")),
            "{r:?}"
        );
        let r = ask("10.0.0.10.in-addr.arpa.", RecordType::PTR).await;
        assert!(
            r.answers.iter().any(|rr| matches!(&rr.data,
                RData::PTR(p) if p.0.to_string() == "dc1.corp.example.")),
            "{r:?}"
        );
        let r = ask("nosuch.corp.example.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            soa_of(&r),
            Some(("corp.example.".into(), "dc1.corp.example.".into()))
        );
        let r = ask("blocked.corp.example.", RecordType::A).await;
        assert!(ede(&r).is_some(), "{r:?}");
    }
    assert_eq!(leaked(&public), Vec::<String>::new());
    e.stop().await;
}
