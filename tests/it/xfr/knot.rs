//! Interop with a real primary, knotd (Debian package `knot`): what the
//! in-process primary cannot do. Two embargo instances, secondaries of the
//! same knotd, both apply a serial bump that adds and removes names within
//! seconds of knot's own NOTIFY, by IXFR, with every transfer TSIG-signed;
//! without the key, or with a wrong one, knot refuses.
//!
//! Ignored by default, so that `cargo test` needs only Rust; `.ci/run`
//! installs knot and runs `cargo test --test it -- --ignored xfr::`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{blocked, feed, meta, rpz, until};
use crate::harness::{Embargo, Upstream, config};

fn bin(name: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: this test needs knotd (Debian package knot; .ci/run installs it)"
            )
        })
}

/// The TSIG secret the primary requires for transfers (base64).
const SECRET: &str = "ZW1iYXJnby10ZXN0LXRzaWctc2VjcmV0LWtleS0zMmJ5";

/// knotd serving rpz.test on 127.0.0.1, NOTIFYing `secondaries`.
struct Knot {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
}

impl Knot {
    fn start(zone: &str, secondaries: &[SocketAddr]) -> Self {
        let knotd = bin("knotd");
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
        let child = Command::new(knotd)
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

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs knotd (Debian package knot): .ci/run runs it with --ignored"]
async fn two_secondaries_of_knotd_apply_a_serial_bump_by_ixfr_within_seconds_of_its_notify() {
    let up = Upstream::start().await;
    // The primary must know the secondaries' ports before they know its
    // address: reserve two, start knot, then the instances on them.
    let ports: Vec<SocketAddr> = (0..2)
        .map(|_| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr")
        })
        .collect();
    let primary = Knot::start(&rpz(1, &["feed-a.example", "feed-b.example"]), &ports);
    let cfg = |listen: SocketAddr| {
        let tsig = format!("tsig = \"hmac-sha256:xfr-key:{SECRET}\"\n");
        config(up.addr, &feed(primary.addr, "1h", &tsig)).replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"{listen}\"]"),
        )
    };
    let a = Embargo::start(&cfg(ports[0]), &[]).await;
    let b = Embargo::start(&cfg(ports[1]), &[]).await;
    for e in [&a, &b] {
        until(e, "x.feed-a.example.", true).await;
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
        let fetch = embargo::config::Fetch {
            timeout: Duration::from_secs(5),
            ..embargo::config::Fetch::default()
        };
        let err = embargo::source::xfr::axfr(&src, &fetch)
            .await
            .expect_err("refused")
            .to_string();
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
        let took = until(e, "www.feed-c.example.", true).await;
        until(e, "feed-b.example.", false).await;
        assert!(blocked(e, "feed-a.example.").await);
        eprintln!("applied within {took:?} of the zone reload");
        // knot keeps the difference in its journal: it went by IXFR.
        let m = meta(e);
        assert_eq!(m.serial, Some(2));
        assert_eq!(
            m.last_transfer.as_deref(),
            Some("IXFR: 2 records removed, 2 added"),
            "{m:?}"
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
