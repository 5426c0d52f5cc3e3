//! Interop with a real resolver serving DNS over TLS and over HTTPS:
//! knot-resolver's kresd (Debian package `knot-resolver`), with a
//! certificate made the way most home labs make one, `openssl req -x509`:
//! self-signed and marked CA:TRUE, trusted by naming it in `ca_file`
//! (issue 16, finding 14). Before the fix rustls refused it
//! (`CaUsedAsEndEntity`) and the client saw SERVFAIL "upstream connection
//! failed"; the refusals that remain say why in the EDE text.
//!
//! kresd forwards everything (`policy.STUB`) to the test's hickory upstream
//! on loopback, and the test runs in a network namespace of its own
//! (`netns.rs`), so nothing kresd might do by itself (root priming, trust
//! anchor updates) can leave the machine.
//!
//! Ignored by default, so that `cargo test` needs only Rust; `.ci/run`
//! installs knot-resolver and openssl and runs
//! `cargo test --test it -- --ignored kresd::`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::{Embargo, Upstream, config, ede, query, tcp, udp};
use crate::netns;

/// The full path of a system tool, or a panic saying which package has it.
fn bin(name: &str, package: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: this test needs Debian package {package} (.ci/run installs it)")
        })
}

/// A free TCP port on loopback (kresd is told it before it binds).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `openssl req -x509` as a home lab runs it: a new key, no passphrase,
/// the name in the subject and as a subjectAltName. Returns the
/// certificate's PEM; the key is `key.pem` beside it.
fn openssl_self_signed(dir: &Path, name: &str) -> String {
    let status = Command::new(bin("openssl", "openssl"))
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req -x509 failed");
    // The case of the finding: openssl's default extensions make a CA.
    let text = Command::new(bin("openssl", "openssl"))
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.join("cert.pem"))
        .output()
        .expect("run openssl x509");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl req -x509 no longer makes a CA:TRUE certificate: this test no longer covers finding 14"
    );
    std::fs::read_to_string(dir.join("cert.pem")).expect("cert.pem")
}

/// kresd serving DoT and DoH with the certificate of `dir`, forwarding
/// every question to `upstream`.
struct Kresd {
    dot: SocketAddr,
    doh: SocketAddr,
    log: std::path::PathBuf,
    child: Child,
}

impl Kresd {
    fn start(dir: &Path, upstream: SocketAddr) -> Self {
        let (dot, doh) = (free_port(), free_port());
        let d = dir.display();
        // Validation off (the upstream's zones are unsigned) and the modules
        // that would ask the root by themselves unloaded: kresd only
        // forwards what it is asked, each time (no cache), so the upstream
        // counts every query that went through it.
        let conf = format!(
            "modules.unload('priming')\n\
             modules.unload('ta_signal_query')\n\
             modules.unload('ta_sentinel')\n\
             trust_anchors.remove('.')\n\
             net.listen('127.0.0.1', {dot}, {{ kind = 'tls' }})\n\
             net.listen('127.0.0.1', {doh}, {{ kind = 'doh2' }})\n\
             net.tls('{d}/cert.pem', '{d}/key.pem')\n\
             policy.add(policy.all(policy.FLAGS({{'NO_CACHE'}})))\n\
             policy.add(policy.all(policy.STUB('{}@{}')))\n",
            upstream.ip(),
            upstream.port()
        );
        std::fs::write(dir.join("kresd.conf"), conf).expect("conf");
        let rundir = dir.join("run");
        std::fs::create_dir_all(&rundir).expect("rundir");
        let log = dir.join("kresd.log");
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(bin("kresd", "knot-resolver"))
            .arg("-n")
            .arg("-c")
            .arg(dir.join("kresd.conf"))
            .arg(&rundir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start kresd");
        let kresd = Self {
            dot: SocketAddr::from(([127, 0, 0, 1], dot)),
            doh: SocketAddr::from(([127, 0, 0, 1], doh)),
            log,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while [kresd.dot, kresd.doh]
            .iter()
            .any(|a| std::net::TcpStream::connect(a).is_err())
        {
            assert!(
                Instant::now() < deadline,
                "kresd did not start: {}",
                kresd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        kresd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kresd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The harness config forwarding to `server` only, trusting `ca.pem`.
fn forwarding_to(server: &str, up: SocketAddr) -> String {
    config(up, "").replace(
        &format!("servers = [\"{up}\"]"),
        &format!("servers = [\"{server}\"]\nca_file = \"ca.pem\""),
    )
}

#[test]
#[ignore = "needs kresd and openssl (Debian packages knot-resolver, openssl) and root for a network namespace: .ci/run runs it with --ignored"]
fn kresd_over_dot_and_doh_with_an_openssl_self_signed_certificate_in_ca_file() {
    netns::run(
        concat!(
            module_path!(),
            "::kresd_over_dot_and_doh_with_an_openssl_self_signed_certificate_in_ca_file"
        ),
        || async {
            let up = Upstream::start().await;
            let dir = tempfile::tempdir().expect("tempdir");
            let pem = openssl_self_signed(dir.path(), "kresd.test");
            let kresd = Kresd::start(dir.path(), up.addr);
            let other = crate::harness::TestCert::new("other.test").ca_pem;
            for server in [
                format!("tls://{}#kresd.test", kresd.dot),
                format!("https://{}/dns-query#kresd.test", kresd.doh),
            ] {
                // Pinned: answers come through kresd from the upstream.
                let e = Embargo::start(&forwarding_to(&server, up.addr), &[("ca.pem", &pem)]).await;
                let before = up.count("www.up.test");
                let r = udp(e.addr, &query("www.up.test.", RecordType::A, true)).await;
                assert_eq!(
                    r.metadata.response_code,
                    ResponseCode::NoError,
                    "{server}: {r:?}\nkresd: {}",
                    kresd.log()
                );
                assert_eq!(
                    r.answers.first().map(|a| a.data.clone()),
                    Some(RData::A("192.0.2.10".parse().expect("ip"))),
                    "{server}"
                );
                assert_eq!(up.count("www.up.test"), before + 1, "{server}: via kresd");
                let r = tcp(e.addr, &query("nope.up.test.", RecordType::A, false)).await;
                assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{server}");
                e.stop().await;

                // Not pinned, or pinned for another name: refused, and the
                // client is told why.
                let refusals = [
                    (
                        server.clone(),
                        other.as_str(),
                        "certificate rejected: CA certificate used as a server certificate",
                    ),
                    (
                        server.replace("#kresd.test", "#wrong.test"),
                        pem.as_str(),
                        "certificate rejected: not valid for the server name",
                    ),
                ];
                for (server, ca, reason) in refusals {
                    let e =
                        Embargo::start(&forwarding_to(&server, up.addr), &[("ca.pem", ca)]).await;
                    let r = udp(e.addr, &query("mail.up.test.", RecordType::A, true)).await;
                    assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "{server}");
                    assert_eq!(ede(&r), Some((22, reason.to_string())), "{server}");
                    e.stop().await;
                }
            }
            assert_eq!(
                up.count("mail.up.test"),
                0,
                "no refused connection carried a query"
            );
        },
    );
}
