//! DNSSEC validation against zones that knotd (Debian package `knot`)
//! signs itself (`dnssec-signing: on`): what the in-process zone of
//! [`super::signed`] cannot prove, that embargo validates a real signer's
//! output (its KSK and ZSK, its NSEC denial of a DS).
//!
//! Two knotd instances. The first signs `broken.test`, `expired.test`
//! (signatures valid for 4 s) and `nokey.test`; the test transfers them
//! (kdig AXFR) and spoils each copy: one signature's bytes changed, the
//! signatures left to expire, the DNSKEY RRset taken out. The second
//! serves those copies as they are (signing off) beside `signed.test`,
//! which it signs itself, and `plain.signed.test`, an unsigned child
//! delegated from it without a DS. Embargo forwards to the second, with
//! the KSKs of the first's zones and of `signed.test` as its trust anchors.
//!
//! Ignored by default, so that `cargo test` needs only Rust; `.ci/run`
//! installs knot and runs `cargo test --test it -- --ignored dnssec::knot`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;

use super::{addresses, ask, assert_bogus};
use crate::harness::{Embargo, config, udp};

fn bin(name: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/sbin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: this test needs knotd and kdig (Debian packages knot, knot-dnsutils; .ci/run installs them)"
            )
        })
}

/// One knotd on 127.0.0.1, serving `zones` (origin, file text, extra
/// zone settings), stopped when dropped.
struct Knot {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Knot {
    fn start(zones: &[(&str, &str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let d = dir.path().display();
        let mut list = String::new();
        for (origin, text, settings) in zones {
            let file = format!("{origin}zone");
            std::fs::write(dir.path().join(&file), text).expect("zone file");
            list.push_str(&format!(
                "  - domain: {origin}\n    file: {file}\n    acl: xfr\n{settings}"
            ));
        }
        std::fs::create_dir_all(dir.path().join("db")).expect("db dir");
        let conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    background-workers: 1\n\
database:\n    storage: \"{d}/db\"\n\
control:\n    listen: \"{d}/knot.sock\"\n\
log:\n  - target: \"{d}/knot.log\"\n    any: info\n\
acl:\n  - id: xfr\n    address: 127.0.0.0/8\n    action: transfer\n\
policy:\n  - id: short\n    rrsig-lifetime: 4s\n    rrsig-refresh: 1s\n    rrsig-pre-refresh: 0\n    propagation-delay: 0\n    zone-max-ttl: 1\n\
template:\n  - id: default\n    storage: \"{d}\"\n    semantic-checks: off\n    zonefile-sync: -1\n\
zone:\n{list}"
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
        let knot = Self {
            addr,
            _dir: dir,
            child,
        };
        // Up, and every zone loaded (signed where it is to be).
        let deadline = Instant::now() + Duration::from_secs(20);
        for (origin, _, _) in zones {
            while !knot.axfr(origin).contains("\tSOA\t") {
                assert!(Instant::now() < deadline, "knotd did not serve {origin}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        knot
    }

    /// The zone `origin` as kdig prints its transfer: one record a line.
    fn axfr(&self, origin: &str) -> String {
        let out = Command::new(bin("kdig"))
            .arg(format!("@{}", self.addr.ip()))
            .arg("-p")
            .arg(self.addr.port().to_string())
            .args(["AXFR", origin, "+nocomments", "+nostats"])
            .output()
            .expect("run kdig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `zone`'s records but those that `drop` says no to, and the last field
/// of the line that `spoil` picks changed (a signature's base64).
fn edited(zone: &str, drop: impl Fn(&str) -> bool, spoil: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for line in zone.lines() {
        if drop(line) {
            continue;
        }
        if spoil(line) {
            let (head, sig) = line.rsplit_once('\t').expect("an RRSIG line");
            // Another base64 letter in the middle: a valid encoding of
            // a signature that no longer verifies.
            let mut sig: Vec<char> = sig.chars().collect();
            let at = sig.len() / 2;
            sig[at] = if sig[at] == 'A' { 'B' } else { 'A' };
            out.push_str(head);
            out.push('\t');
            out.extend(sig);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The KSK lines (flags 257) of a transferred zone: its trust anchor.
fn ksks(zone: &str) -> String {
    zone.lines()
        .filter(|l| l.contains("\tDNSKEY\t257 "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn zone_text(origin: &str, extra: &str) -> String {
    format!(
        "$ORIGIN {origin}\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs knotd and kdig (Debian packages knot, knot-dnsutils): .ci/run runs it with --ignored"]
async fn knotd_signed_zones_validate_and_their_spoiled_copies_are_bogus() {
    let signing = "    dnssec-signing: on\n";
    let short = "    dnssec-signing: on\n    dnssec-policy: short\n";
    let signer = Knot::start(&[
        (
            "broken.test.",
            &zone_text("broken.test.", "www A 192.0.2.2\n"),
            signing,
        ),
        (
            "expired.test.",
            &zone_text("expired.test.", "www A 192.0.2.3\n"),
            short,
        ),
        (
            "nokey.test.",
            &zone_text("nokey.test.", "www A 192.0.2.4\n"),
            signing,
        ),
    ]);
    let broken = signer.axfr("broken.test.");
    let expired = signer.axfr("expired.test.");
    let transferred = Instant::now();
    let nokey = signer.axfr("nokey.test.");
    drop(signer);
    for zone in [&broken, &expired, &nokey] {
        assert!(zone.contains("\tRRSIG\tA "), "signed by knotd:\n{zone}");
    }
    let is_key = |l: &str| {
        [
            "\tDNSKEY\t",
            "\tRRSIG\tDNSKEY ",
            "\tCDNSKEY\t",
            "\tCDS\t",
            "\tRRSIG\tCDNSKEY ",
            "\tRRSIG\tCDS ",
        ]
        .iter()
        .any(|t| l.contains(t))
    };
    let broken_copy = edited(
        &broken,
        |_| false,
        |l| l.starts_with("www.broken.test.") && l.contains("\tRRSIG\tA "),
    );
    let nokey_copy = edited(&nokey, is_key, |_| false);
    assert!(!nokey_copy.contains("\tDNSKEY\t"), "{nokey_copy}");

    let server = Knot::start(&[
        (
            "signed.test.",
            &zone_text(
                "signed.test.",
                "www A 192.0.2.1\nplain NS ns.plain\nns.plain A 127.0.0.1\n",
            ),
            signing,
        ),
        (
            "plain.signed.test.",
            &zone_text("plain.signed.test.", "www A 192.0.2.5\n"),
            "",
        ),
        ("broken.test.", &broken_copy, ""),
        ("expired.test.", &expired, ""),
        ("nokey.test.", &nokey_copy, ""),
    ]);
    let signed = server.axfr("signed.test.");
    assert!(signed.contains("\tRRSIG\tA "), "signed by knotd:\n{signed}");
    let anchors = [&signed, &broken, &expired, &nokey]
        .into_iter()
        .map(|z| ksks(z))
        .collect::<String>();
    assert_eq!(anchors.lines().count(), 4, "{anchors}");

    let cfg = config(server.addr, "").replacen(
        "timeout_ms = 1000\n",
        "timeout_ms = 1000\ndnssec = \"validate\"\ntrust_anchors = [\"anchors.key\"]\n",
        1,
    );
    let e = Embargo::start(&cfg, &[("anchors.key", &anchors)]).await;

    let r = udp(e.addr, &ask("www.signed.test.", true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(addresses(&r), ["192.0.2.1"]);
    assert!(r.metadata.authentic_data, "secure: AD {r:?}");

    let r = udp(e.addr, &ask("www.plain.signed.test.", true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(addresses(&r), ["192.0.2.5"]);
    assert!(
        !r.metadata.authentic_data,
        "insecure delegation: no AD {r:?}"
    );

    let r = udp(e.addr, &ask("www.broken.test.", true)).await;
    assert_bogus(&r, 6, "www.broken.test");
    let r = udp(e.addr, &ask("www.nokey.test.", true)).await;
    assert_bogus(&r, 9, "nokey.test");

    // The copy's signatures lived 4 s from their signing (knot's policy
    // "short"), and no signer refreshes them now.
    let left = Duration::from_secs(6).saturating_sub(transferred.elapsed());
    tokio::time::sleep(left).await;
    let r = udp(e.addr, &ask("www.expired.test.", true)).await;
    assert_bogus(&r, 7, "expired");

    // CD: the client validates; the spoiled copy is handed over as it is.
    let mut q = ask("www.broken.test.", true);
    q.metadata.checking_disabled = true;
    let r = udp(e.addr, &q).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    assert_eq!(addresses(&r), ["192.0.2.2"]);
    assert!(!r.metadata.authentic_data, "{r:?}");
    e.stop().await;
}
