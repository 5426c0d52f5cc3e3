//! RPZ by zone transfer from a real primary (knotd, installed by .ci/run):
//! two embargo instances, secondaries of the same primary, both apply a
//! serial bump that adds and removes names within seconds of the NOTIFY.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::{Embargo, Upstream, config, ede, query, udp};

fn bin(name: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| panic!("{name} is not installed (.ci/run installs the knot package)"))
}

/// The TSIG secret the primary requires for transfers (base64).
const SECRET: &str = "ZW1iYXJnby10ZXN0LXRzaWctc2VjcmV0LWtleS0zMmJ5";

fn rpz(serial: u32, names: &[&str]) -> String {
    let mut z = format!(
        "$ORIGIN rpz.test.\n$TTL 60\n@ SOA ns.rpz.test. hostmaster.rpz.test. {serial} 3600 600 86400 60\n@ NS ns.rpz.test.\nns A 127.0.0.1\n"
    );
    for n in names {
        z.push_str(&format!("{n} CNAME .\n*.{n} CNAME .\n"));
    }
    z
}

/// knotd serving rpz.test on 127.0.0.1, NOTIFYing `secondaries`.
struct Primary {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

impl Primary {
    fn start(zone: &str, secondaries: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        std::fs::write(dir.path().join("rpz.test.zone"), zone).expect("zone");
        std::fs::create_dir_all(dir.path().join("db")).expect("journal dir");
        let d = dir.path().display();
        let remotes: String = secondaries
            .iter()
            .enumerate()
            .map(|(i, a)| format!("  - id: s{i}\n    address: {}@{}\n", a.ip(), a.port()))
            .collect();
        let ids: Vec<String> = (0..secondaries.len()).map(|i| format!("s{i}")).collect();
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    background-workers: 1\n\
database:\n    storage: \"{d}/db\"\n\
control:\n    listen: \"{d}/knot.sock\"\n\
log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
remote:\n{remotes}\
key:\n  - id: xfr-key\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    key: xfr-key\n    action: transfer\n\
template:\n  - id: default\n    storage: \"{d}\"\n    semantic-checks: off\n    zonefile-sync: -1\n    zonefile-load: difference\n    journal-content: changes\n\
zone:\n  - domain: rpz.test.\n    file: rpz.test.zone\n    acl: xfr\n    notify: [{}]\n",
            ids.join(", ")
        );
        std::fs::write(dir.path().join("knot.conf"), conf).expect("conf");
        let child = Command::new(bin("knotd"))
            .arg("--config")
            .arg(dir.path().join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start knotd");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "knotd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { addr, dir, child }
    }

    /// New zone content, then `knotc zone-reload`: knot bumps, then NOTIFYs.
    fn publish(&self, zone: &str) {
        std::fs::write(self.dir.path().join("rpz.test.zone"), zone).expect("zone");
        let status = Command::new(bin("knotc"))
            .arg("--config")
            .arg(self.dir.path().join("knot.conf"))
            .args(["zone-reload", "rpz.test."])
            .stdout(Stdio::null())
            .status()
            .expect("knotc");
        assert!(status.success(), "knotc zone-reload failed");
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn blocked(e: &Embargo, name: &str) -> bool {
    let r = udp(e.addr, &query(name, RecordType::A, true)).await;
    r.metadata.response_code == ResponseCode::NXDomain && ede(&r).is_some()
}

async fn until(e: &Embargo, name: &str, want: bool, within: Duration) -> Duration {
    let started = Instant::now();
    while blocked(e, name).await != want {
        assert!(
            started.elapsed() < within,
            "{name}: blocked != {want} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_secondaries_apply_a_serial_bump_within_seconds_of_the_notify() {
    let up = Upstream::start().await;
    // The primary must know the secondaries' ports before they know its
    // address: reserve two, start knot, then the instances on them.
    let ports: Vec<SocketAddr> = (0..2)
        .map(|_| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr")
        })
        .collect();
    let primary = Primary::start(&rpz(1, &["feed-a.example", "feed-b.example"]), &ports);
    let cfg = |listen: SocketAddr| {
        let feed = format!(
            "[[lists]]\nname = \"feed\"\nsource = \"axfr://{}/rpz.test\"\nformat = \"rpz\"\ntsig = \"hmac-sha256:xfr-key:{SECRET}\"\nrefresh = \"1h\"\nauthority = \"threat-intel vendor\"\n",
            primary.addr
        );
        config(up.addr, &feed).replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"{listen}\"]"),
        )
    };
    let a = Embargo::start(&cfg(ports[0]), &[]).await;
    let b = Embargo::start(&cfg(ports[1]), &[]).await;
    for e in [&a, &b] {
        until(e, "x.feed-a.example.", true, Duration::from_secs(10)).await;
        assert!(blocked(e, "feed-b.example.").await);
        assert!(!blocked(e, "feed-c.example.").await);
    }

    // Without the key, or with a wrong one, the primary refuses the transfer.
    let config = embargo::Config::load(&a.dir().join("embargo.toml")).expect("config");
    let spec = config
        .lists
        .iter()
        .find(|l| l.name == "feed")
        .expect("feed list");
    let embargo::config::Source::Axfr(src) = &spec.source else {
        panic!("axfr source")
    };
    for tsig in [
        None,
        embargo::config::Tsig::parse("hmac-sha256:xfr-key:d3Jvbmcta2V5"),
    ] {
        let src = embargo::config::XfrSource {
            tsig,
            ..src.clone()
        };
        let err = embargo::source::xfr::axfr(&src, Duration::from_secs(5))
            .await
            .expect_err("refused");
        let lower = err.to_ascii_lowercase();
        assert!(
            lower.contains("not authorized") || lower.contains("refused") || lower.contains("tsig"),
            "{err}"
        );
    }

    // Serial bump: feed-b removed, feed-c added; the refresh timer is an
    // hour away, so only the NOTIFY can make this happen in seconds.
    primary.publish(&rpz(2, &["feed-a.example", "feed-c.example"]));
    for e in [&a, &b] {
        let took = until(e, "www.feed-c.example.", true, Duration::from_secs(5)).await;
        until(e, "feed-b.example.", false, Duration::from_secs(5)).await;
        assert!(blocked(e, "feed-a.example.").await);
        eprintln!("applied within {took:?} of the zone reload");
        // knot keeps the difference in its journal: it went by IXFR.
        let meta = embargo::source::read_meta(&e.dir().join("embargo-state/lists/feed.list"));
        assert_eq!(meta.serial, Some(2));
        assert_eq!(
            meta.last_transfer.as_deref(),
            Some("IXFR: 2 records removed, 2 added"),
            "{meta:?}"
        );
    }

    // The copy survives a restart with the primary gone.
    drop(primary);
    let dir = a.stop_keep_dir().await;
    let a = Embargo::start_in(dir).await;
    assert!(blocked(&a, "feed-c.example.").await);
    assert!(!blocked(&a, "feed-b.example.").await);
    a.stop().await;
    b.stop().await;
}
