//! The DoQ mode against the real embargo (issue 19, "DoQ QPS is
//! reported"): embargo in-process with a DoQ listener on 127.0.0.1:0 behind
//! a certificate from a CA each test makes, and the load generator's own
//! binary run against it as benches/encrypted.sh runs it. Every query is
//! for a listed name, so every answer must be NXDOMAIN and none lost; the
//! summary lines checked are the ones the script reads.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use tokio::sync::oneshot;

/// The name the server's certificate is for.
const SERVER: &str = "dns.test";

/// Names under the one listed domain, of several types.
const QUERIES: &str = "# every one blocked\nseized.example A\nwww.seized.example AAAA\n\
                       a.b.seized.example TXT\nSEIZED.example. HTTPS\n";

/// A private CA (PEM) and a certificate and key (PEM) it signed for `name`.
fn certificate(name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "loadgen test CA");
    let ca =
        CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("ca key")).expect("ca cert");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Embargo serving DoQ (and plain UDP, which it always has) from `dir`,
/// blocking `seized.example` with NXDOMAIN; nothing it is asked goes
/// upstream (port 9, discard, is never reached).
struct Embargo {
    quic: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Embargo {
    fn start(dir: &Path) -> Self {
        std::fs::write(dir.join("seized.txt"), "seized.example\n").expect("list");
        std::fs::write(
            dir.join("embargo.toml"),
            "[server]\nlisten = [\"127.0.0.1:0\"]\nquic_listen = [\"127.0.0.1:0\"]\n\
             certificate = \"cert.pem\"\nprivate_key = \"key.pem\"\n\
             [upstream]\nservers = [\"127.0.0.1:9\"]\n\
             [block]\naction = \"nxdomain\"\n\
             [[lists]]\nname = \"seized\"\nsource = \"seized.txt\"\n\
             [log]\nqueries = \"off\"\n[http]\nlisten = []\n",
        )
        .expect("config");
        let config = embargo::Config::load(&dir.join("embargo.toml")).expect("config loads");
        let snapshot = embargo::Snapshot::build(&config).expect("lists load");
        let handler = embargo::handler(&config, snapshot).expect("handler");
        let listeners = embargo::server::Listeners::bind(&config.listen, &config.server)
            .expect("bind")
            .with_encrypted(&config.tls)
            .expect("certificate");
        let server = embargo::server::Server::new(listeners, &config.server, handler);
        let [_, _, quic] = server.encrypted_addrs();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            quic: quic[0],
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A temp dir with the server's certificate and key, the CA's certificate
/// as `ca.pem`, and the query file `q.txt`.
fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificate(SERVER);
    for (name, text) in [
        ("ca.pem", ca.as_str()),
        ("cert.pem", &cert),
        ("key.pem", &key),
        ("q.txt", QUERIES),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

/// Runs the load generator's binary with `args`, off the runtime's threads.
async fn loadgen(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_embargo-loadgen"))
        .current_dir(dir)
        .args(args)
        .output()
        .await
        .expect("runs")
}

/// The number after `key` on the summary line that has it.
fn field(text: &str, key: &str) -> u64 {
    let line = text.lines().find(|l| l.contains(key));
    let line = line.unwrap_or_else(|| panic!("no {key:?} in:\n{text}"));
    let rest = line.split_once(key).map_or("", |(_, r)| r).trim_start();
    let num = rest.split([' ', '(', '.']).next().unwrap_or(rest);
    num.parse()
        .unwrap_or_else(|_| panic!("{key:?} {num:?} in:\n{text}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Checks a run's summary: it sent, every query answered NXDOMAIN, none
/// lost, none malformed; returns how many were sent.
fn all_blocked(o: &Output) -> u64 {
    let text = stdout(o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}\n{text}\n{err}", o.status);
    let sent = field(&text, "Queries sent:");
    assert!(sent > 0, "{text}");
    assert_eq!(field(&text, "Queries completed:"), sent, "{text}");
    assert_eq!(field(&text, "Queries lost:"), 0, "{text}");
    assert_eq!(field(&text, "Unexpected answers:"), 0, "{text}");
    assert!(
        text.contains(&format!("\nRcodes: NXDOMAIN={sent}\n")),
        "every answer NXDOMAIN:\n{text}"
    );
    assert!(field(&text, "Queries per second:") > 0, "{text}");
    sent
}

#[tokio::test(flavor = "multi_thread")]
async fn doq_load_for_a_second_every_blocked_query_answered_none_lost() {
    let dir = files();
    let e = Embargo::start(dir.path());
    let server = e.quic.to_string();
    let o = loadgen(
        dir.path(),
        &[
            "-m", "doq", "-s", &server, "--ca", "ca.pem", "--sni", SERVER, "-d", "q.txt", "-l",
            "1", "-c", "4", "-q", "64", "-t", "5",
        ],
    )
    .await;
    let sent = all_blocked(&o);
    let text = stdout(&o);
    // Four connections, each from its own address, each with 16 in flight:
    // far more than 64 queries in the second.
    assert!(sent > 64, "{text}");
    assert_eq!(field(&text, "Source addresses:"), 4, "{text}");
    assert_eq!(field(&text, "Connections:"), 4, "{text}");
    assert_eq!(field(&text, "Truncated answers:"), 0, "{text}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn another_cas_certificate_is_refused_unless_insecure() {
    let dir = files();
    let e = Embargo::start(dir.path());
    let server = e.quic.to_string();
    let (other_ca, _, _) = certificate(SERVER);
    std::fs::write(dir.path().join("other-ca.pem"), other_ca).expect("write");
    let base = ["-m", "doq", "-s", &server, "--sni", SERVER, "-d", "q.txt"];

    let o = loadgen(
        dir.path(),
        &[&base[..], &["--ca", "other-ca.pem", "-l", "0.3"]].concat(),
    )
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("certificate") && err.contains(&server),
        "{err}"
    );
    assert!(
        !stdout(&o).contains("Queries sent"),
        "no summary of a run that never started"
    );

    let o = loadgen(
        dir.path(),
        &[&base[..], &["--insecure", "-l", "0.3"]].concat(),
    )
    .await;
    all_blocked(&o);

    // DoQ needs one of the two; UDP takes neither.
    let o = loadgen(dir.path(), &[&base[..], &["-l", "0.3"]].concat()).await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--ca") && err.contains("--insecure"), "{err}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_paces_the_queries() {
    let dir = files();
    let e = Embargo::start(dir.path());
    let server = e.quic.to_string();
    let o = loadgen(
        dir.path(),
        &[
            "-m", "doq", "-s", &server, "--ca", "ca.pem", "--sni", SERVER, "-d", "q.txt", "-l",
            "1", "-c", "2", "-q", "64", "-Q", "300",
        ],
    )
    .await;
    let sent = all_blocked(&o);
    assert!((240..=330).contains(&sent), "300 a second for 1 s: {sent}");
    e.stop().await;
}
