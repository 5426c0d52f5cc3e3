//! Real parts on loopback: an authoritative upstream (hickory-server with an
//! in-memory zone, counting every query it receives) and embargo itself,
//! both bound to 127.0.0.1:0, spoken to over real UDP and TCP sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The upstream's zones. `seized.example` is here too, so that a blocked name
/// that leaked upstream would get a real answer and be counted.
const ZONES: &[(&str, &str)] = &[
    (
        "up.test.",
        r#"$ORIGIN up.test.
$TTL 300
@        IN SOA ns.up.test. admin.up.test. 1 3600 600 86400 60
@        IN NS ns
ns       IN A 192.0.2.53
www      IN A 192.0.2.10
www      IN AAAA 2001:db8::10
alias    IN CNAME www
chain    IN CNAME alias
txt      IN TXT "hello"
nodata   IN TXT "only txt"
mx       IN MX 10 mail
mail     IN A 192.0.2.25
short 5  IN A 192.0.2.5
"#,
    ),
    (
        "example.",
        r#"$ORIGIN example.
$TTL 300
@                    IN SOA ns.example. admin.example. 1 3600 600 86400 60
@                    IN NS ns
ns                   IN A 192.0.2.53
seized               IN A 192.0.2.66
www.seized           IN A 192.0.2.66
allowed.seized       IN A 192.0.2.77
"#,
    ),
];

/// How a harness upstream behaves now (see [`Upstream::set_outage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outage {
    /// Answers from its zones.
    None,
    /// Counts each query and answers nothing (in time): a dead server.
    Silent,
    /// Answers SERVFAIL to everything: a resolver that cannot resolve.
    ServFail,
    /// Answers REFUSED to everything: a resolver that will not serve us.
    Refused,
    /// Answers from its zones, this long after each query: an overloaded server.
    Late(Duration),
}

/// How a query reached the upstream: its name and what its header, OPT
/// and transport said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asked {
    pub(crate) name: String,
    pub(crate) edns: bool,
    pub(crate) rd: bool,
    pub(crate) tcp: bool,
}

/// Counts queries per name and delegates to the catalog, after `delay`
/// (an upstream that answers slowly), unless an outage is staged.
struct Counting {
    catalog: Catalog,
    seen: Arc<Mutex<Vec<String>>>,
    asked: Arc<Mutex<Vec<Asked>>>,
    delay: Duration,
    outage: Arc<Mutex<Outage>>,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response: R,
    ) -> ResponseInfo {
        if let (Ok(info), Ok(mut seen)) = (request.request_info(), self.seen.lock()) {
            let name = info.query.name().to_string();
            seen.push(name.trim_end_matches('.').to_ascii_lowercase());
            if let Ok(mut asked) = self.asked.lock() {
                asked.push(Asked {
                    name: name.trim_end_matches('.').to_ascii_lowercase(),
                    edns: request.edns.is_some(),
                    rd: request.metadata.recursion_desired,
                    tcp: request.protocol().is_stream(),
                });
            }
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let outage = self.outage.lock().map_or(Outage::None, |o| *o);
        match outage {
            Outage::None => {}
            // Far longer than any test's upstream timeout; the answer that
            // comes after it is for a query long given up on.
            Outage::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
            Outage::Late(wait) => tokio::time::sleep(wait).await,
            Outage::ServFail | Outage::Refused => {
                use hickory_proto::op::ResponseCode;
                use hickory_server::zone_handler::MessageResponseBuilder;
                let rcode = if outage == Outage::Refused {
                    ResponseCode::Refused
                } else {
                    ResponseCode::ServFail
                };
                let msg = MessageResponseBuilder::from_message_request(request)
                    .error_msg(&request.metadata, rcode);
                let mut response = response;
                return match response.send_response(msg).await {
                    Ok(info) => info,
                    Err(e) => panic!("the upstream could not send {rcode:?}: {e}"),
                };
            }
        }
        self.catalog.handle_request::<R, T>(request, response).await
    }
}

/// An authoritative upstream on 127.0.0.1 (UDP and TCP on one port; DoT
/// and DoH on ports of their own when started with [`Upstream::start_secure`]).
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    /// DNS over TLS, when started with a certificate.
    pub(crate) tls_addr: Option<SocketAddr>,
    /// DNS over HTTPS (`/dns-query`), when started with a certificate.
    pub(crate) https_addr: Option<SocketAddr>,
    /// Full TLS handshakes the DoT and DoH listeners made (no resumption).
    pub(crate) handshakes: Arc<AtomicUsize>,
    /// The CA that signed the DoT/DoH certificate, PEM (for `ca_file`).
    pub(crate) ca_pem: Option<String>,
    seen: Arc<Mutex<Vec<String>>>,
    asked: Arc<Mutex<Vec<Asked>>>,
    outage: Arc<Mutex<Outage>>,
    _server: Server<Counting>,
}

impl Upstream {
    pub(crate) async fn start() -> Self {
        Self::start_full(&[], Duration::ZERO, None).await
    }

    /// Starts with extra zone text appended to `up.test.` (e.g. many TXT records).
    pub(crate) async fn start_with(extra_up_test: &[String]) -> Self {
        Self::start_full(extra_up_test, Duration::ZERO, None).await
    }

    /// An upstream that waits `delay` before each answer.
    pub(crate) async fn start_slow(delay: Duration) -> Self {
        Self::start_full(&[], delay, None).await
    }

    /// Also serving DoT and DoH with `cert`.
    pub(crate) async fn start_secure(cert: &TestCert) -> Self {
        Self::start_full(&[], Duration::ZERO, Some(cert)).await
    }

    /// Serving `zones` (origin, zone text) instead of the usual ones, each
    /// answer after `delay`: another authoritative server (an internal one,
    /// in the tests of conditional forwarding).
    pub(crate) async fn start_zones(zones: &[(&str, &str)], delay: Duration) -> Self {
        Self::start_from(zones, &[], delay, None).await
    }

    async fn start_full(
        extra_up_test: &[String],
        delay: Duration,
        cert: Option<&TestCert>,
    ) -> Self {
        Self::start_from(ZONES, extra_up_test, delay, cert).await
    }

    async fn start_from(
        zones: &[(&str, &str)],
        extra_up_test: &[String],
        delay: Duration,
        cert: Option<&TestCert>,
    ) -> Self {
        let mut catalog = Catalog::new();
        for (origin, text) in zones {
            let mut text = text.to_string();
            if *origin == "up.test." {
                for line in extra_up_test {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            let origin_name = Name::from_str(origin).expect("origin");
            let (name, records) = Parser::new(text, None, Some(origin_name))
                .parse()
                .expect("zone parses");
            let records: BTreeMap<_, _> = records.into_iter().collect();
            let zone = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
                name.clone(),
                records,
                ZoneType::Primary,
                AxfrPolicy::Deny,
            )
            .expect("zone");
            catalog.upsert(name.into(), vec![Arc::new(zone)]);
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let outage = Arc::new(Mutex::new(Outage::None));
        let mut server = Server::new(Counting {
            catalog,
            seen: seen.clone(),
            asked: asked.clone(),
            delay,
            outage: outage.clone(),
        });
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("addr");
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let (mut tls_addr, mut https_addr) = (None, None);
        if let Some(cert) = cert {
            let tls = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind tls");
            tls_addr = Some(tls.local_addr().expect("addr"));
            server
                .register_tls_listener_with_tls_config(
                    tls,
                    Duration::from_secs(5),
                    cert.server_config(b"dot", &handshakes),
                )
                .expect("tls listener");
            let https = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind https");
            https_addr = Some(https.local_addr().expect("addr"));
            server
                .register_https_listener_with_tls_config(
                    https,
                    Duration::from_secs(5),
                    cert.server_config(b"h2", &handshakes),
                    Some(cert.name.clone()),
                    "/dns-query".into(),
                )
                .expect("https listener");
        }
        Self {
            addr,
            tls_addr,
            https_addr,
            handshakes,
            ca_pem: cert.map(|c| c.ca_pem.clone()),
            seen,
            asked,
            outage,
            _server: server,
        }
    }

    /// How many queries for `name` (lowercase, no trailing dot) reached the upstream.
    pub(crate) fn count(&self, name: &str) -> usize {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|n| *n == name).count())
            .unwrap_or(0)
    }

    /// Stages an outage (or ends it): queries are still counted.
    pub(crate) fn set_outage(&self, outage: Outage) {
        if let Ok(mut o) = self.outage.lock() {
            *o = outage;
        }
    }

    /// How each query for `name` (lowercase, no trailing dot) reached the upstream.
    pub(crate) fn asked(&self, name: &str) -> Vec<Asked> {
        self.asked
            .lock()
            .map(|a| a.iter().filter(|q| q.name == name).cloned().collect())
            .unwrap_or_default()
    }

    /// Every name the upstream was asked.
    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A UDP socket and a TCP listener on the same free loopback port.
pub(crate) async fn bind_pair() -> (UdpSocket, tokio::net::TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("udp bind");
        let addr = udp.local_addr().expect("addr");
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            return (udp, tcp);
        }
    }
    panic!("no free port pair");
}

/// A private CA and a server certificate it signed, made for one test.
pub(crate) struct TestCert {
    /// The name the server certificate is for.
    pub(crate) name: String,
    /// The CA certificate, PEM: what `ca_file` holds.
    pub(crate) ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: Vec<u8>,
}

impl TestCert {
    pub(crate) fn new(name: &str) -> Self {
        Self::with_names(&[name])
    }

    /// A certificate for every name in `names` (the first is `name`).
    pub(crate) fn with_names(names: &[&str]) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let name = names[0];
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "embargo test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("ca key"))
            .expect("ca cert");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params")
            .signed_by(&key, &ca)
            .expect("cert");
        Self {
            name: name.into(),
            ca_pem: ca.pem(),
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    /// One self-signed certificate for `name` that says it is a CA (basic
    /// constraints CA:TRUE), as `openssl req -x509` makes them: the server's
    /// certificate is also what `ca_file` holds (issue 16, finding 14).
    pub(crate) fn self_signed_ca(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        Self {
            name: name.into(),
            ca_pem: cert.pem(),
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    /// The server certificate, PEM (what `[server] certificate` reads).
    pub(crate) fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    /// The server's private key, PEM (PKCS#8; `[server] private_key`).
    pub(crate) fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key)
    }

    /// A client config that trusts this CA alone, offering `alpn`.
    pub(crate) fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .expect("ca pem");
        roots.add(ca).expect("ca");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A server config for `alpn` that counts its full handshakes: no
    /// tickets and no session cache, so every new connection is one.
    fn server_config(
        &self,
        alpn: &[u8],
        handshakes: &Arc<AtomicUsize>,
    ) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::try_from(self.key.clone()).expect("key der");
        let signer = provider
            .key_provider
            .load_private_key(key)
            .expect("signing key");
        let certified = Arc::new(rustls::sign::CertifiedKey::new(
            vec![self.cert.clone()],
            signer,
        ));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(CountingCert {
                certified,
                handshakes: handshakes.clone(),
            }));
        config.alpn_protocols = vec![alpn.to_vec()];
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Arc::new(config)
    }
}

/// DER as PEM, 64 columns.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Hands out the one certificate and counts how often (once per handshake).
#[derive(Debug)]
struct CountingCert {
    certified: Arc<rustls::sign::CertifiedKey>,
    handshakes: Arc<AtomicUsize>,
}

impl rustls::server::ResolvesServerCert for CountingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.handshakes.fetch_add(1, Ordering::SeqCst);
        Some(self.certified.clone())
    }
}

/// A UDP socket that reads every query and never answers, noting the
/// names asked.
pub(crate) struct BlackHole {
    pub(crate) addr: SocketAddr,
    names: Arc<Mutex<std::collections::BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub(crate) async fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let names = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let seen = names.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                if let (Ok(m), Ok(mut seen)) = (Message::from_vec(&buf[..n]), seen.lock())
                    && let Some(q) = m.queries.first()
                {
                    seen.insert(q.name().to_string().to_ascii_lowercase());
                }
            }
        });
        Self { addr, names, task }
    }

    /// Different questions received so far (a query sent again counts once).
    pub(crate) fn count(&self) -> usize {
        self.names.lock().map(|n| n.len()).unwrap_or(0)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP relay to `upstream` that loses the first datagram of every
/// query (by ID) and passes on every later one: a lossy path.
pub(crate) struct Lossy {
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Lossy {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let addr = sock.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut dropped = std::collections::HashSet::new();
            let mut buf = vec![0u8; 4096];
            while let Ok((n, client)) = sock.recv_from(&mut buf).await {
                let pkt = buf[..n].to_vec();
                if n < 2 || dropped.insert((client, pkt[0], pkt[1])) {
                    continue;
                }
                let sock = sock.clone();
                tokio::spawn(async move {
                    let relay = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
                    relay.send_to(&pkt, upstream).await.expect("relay");
                    let mut answer = vec![0u8; 4096];
                    if let Ok(Ok((n, _))) =
                        tokio::time::timeout(Duration::from_secs(2), relay.recv_from(&mut answer))
                            .await
                    {
                        let _ = sock.send_to(&answer[..n], client).await;
                    }
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upstream whose UDP answers are all truncated (TC=1, no records) and
/// whose TCP listener, on the same port, accepts and never answers: the
/// retry over TCP that a truncated answer calls for fails.
pub(crate) struct Truncating {
    pub(crate) addr: SocketAddr,
    /// UDP queries received.
    udp: Arc<AtomicUsize>,
    /// TCP connections accepted.
    tcp: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Truncating {
    pub(crate) async fn start() -> Self {
        let (sock, listener) = bind_pair().await;
        let addr = sock.local_addr().expect("addr");
        let (udp, tcp) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counted = udp.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
                m.metadata.recursion_desired = q.metadata.recursion_desired;
                m.metadata.recursion_available = true;
                m.metadata.truncation = true;
                if let Some(question) = q.queries.first() {
                    m.add_query(question.clone());
                }
                let _ = sock.send_to(&m.to_vec().expect("encode"), peer).await;
            }
        });
        let accepted = tcp.clone();
        let tcp_task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        Self {
            addr,
            udp,
            tcp,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// UDP queries and TCP connections received so far.
    pub(crate) fn received(&self) -> (usize, usize) {
        (
            self.udp.load(Ordering::SeqCst),
            self.tcp.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Truncating {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A loopback address where nothing listens (for "upstream down" tests).
pub(crate) async fn dead_addr() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    s.local_addr().expect("addr")
}

/// Embargo, in-process, serving a config written to a temp dir.
pub(crate) struct Embargo {
    /// The first listen address (with its real port).
    pub(crate) addr: SocketAddr,
    /// Every listen address, in config order.
    pub(crate) addrs: Vec<SocketAddr>,
    /// Each UDP worker's counters.
    pub(crate) workers: Arc<[Arc<embargo::server::WorkerStats>]>,
    pub(crate) handler: Arc<embargo::server::Handler>,
    /// Every counter block (UDP workers and TCP).
    pub(crate) stats: embargo::server::ServerStats,
    /// The HTTP listen addresses (none unless the config has `[http]`).
    pub(crate) http: Vec<SocketAddr>,
    /// The DoT, DoH and DoQ addresses (none unless configured).
    pub(crate) tls: Vec<SocketAddr>,
    pub(crate) https: Vec<SocketAddr>,
    pub(crate) quic: Vec<SocketAddr>,
    http_task: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    maintainer: tokio::task::JoinHandle<()>,
    /// The reload loop's handle: how far it has got ([`Embargo::until_reloaded`]).
    pub(crate) reloads: Arc<embargo::reload::Control>,
}

/// How long a test waits for a reload (or a download and its reload). The
/// reload builds on a thread at nice 19, to which a machine busy with other
/// builds gives a sliver of a core: seconds, where an idle one takes
/// milliseconds. Tests wait for the server's own signal that a reload
/// finished, never a guessed time, so a generous bound costs nothing when
/// things work and only says when to give up.
pub(crate) const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// The list files most tests use.
pub(crate) const SEIZED_LIST: &str =
    "# test list\nseized.example\n*.wild.example\nsanctioned.example\n";

/// A config forwarding to `upstream`, with the test list "seized" and the
/// `[[lists]]` tables in `lists` after it.
///
/// The test upstream's names are under `test.` (RFC 6761 sets it aside for
/// tests), which embargo answers locally by default: the harness turns the
/// default local zones off. A test of local zones sets them itself.
pub(crate) fn config(upstream: SocketAddr, lists: &str) -> String {
    format!(
        r#"[server]
listen = ["127.0.0.1:0"]

[local_zones]
defaults = false

[upstream]
servers = ["{upstream}"]
timeout_ms = 1000

[cache]
size = 1000

[block]
action = "nxdomain"
ttl = 300
ede = "blocked"

[[lists]]
name = "seized"
source = "seized.txt"
authority = "Test Court"
reason = "Seized by court order"
reference = "case 1"
ede = "censored"

{lists}
[allow]
domains = ["allowed.seized.example"]

[http]
listen = []
"#
    )
}

/// `config` with its `[http]` section (off) replaced by `lines`. HTTP is
/// on by default on 127.0.0.1:8053, which parallel tests cannot all have,
/// so the harness config turns it off and a test that wants it binds port 0.
pub(crate) fn with_http(config: &str, lines: &str) -> String {
    let off = "[http]\nlisten = []\n";
    assert!(config.contains(off));
    config.replacen(off, &format!("[http]\n{lines}\n"), 1)
}

/// `config` with `lines` added to its `[server]` section.
pub(crate) fn with_server(config: &str, lines: &str) -> String {
    config.replacen("[server]\n", &format!("[server]\n{lines}\n"), 1)
}

impl Embargo {
    /// Starts with `config` text and the given files in a fresh temp dir
    /// (`seized.txt` gets [`SEIZED_LIST`] unless given).
    pub(crate) async fn start(config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("seized.txt"), SEIZED_LIST).expect("write list");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write file");
        }
        std::fs::write(dir.path().join("embargo.toml"), config).expect("write config");
        Self::start_in(dir).await
    }

    /// Starts on the `embargo.toml` already in `dir` (a restart keeps its state).
    pub(crate) async fn start_in(dir: tempfile::TempDir) -> Self {
        let path: PathBuf = dir.path().join("embargo.toml");
        let config = embargo::Config::load(&path).expect("config loads");
        // As `embargo::serve` does: the reload triggers armed before the
        // lists are read, so that an edit made from now on is reloaded.
        let reloads = Arc::new(embargo::reload::Control::default());
        reloads.arm(&config);
        let snapshot = embargo::Snapshot::build(&config).expect("lists load");
        let handler = embargo::handler(&config, snapshot).expect("handler");
        let listeners = embargo::server::Listeners::bind(&config.listen, &config.server)
            .expect("bind")
            .with_encrypted(&config.tls)
            .expect("encrypted listeners");
        let server = embargo::server::Server::new(listeners, &config.server, handler.clone());
        let [tls, https, quic] = server.encrypted_addrs();
        let addrs = server.local_addrs();
        let addr = addrs[0];
        let workers = server.worker_stats();
        let stats = server.stats();
        if let Some(certs) = server.certificates() {
            tokio::spawn(certs.follow(reloads.progress()));
        }
        let http = embargo::http::Listeners::bind(&config.http).expect("http bind");
        let http_addrs = http.local_addrs();
        let http_task = tokio::spawn(http.serve(embargo::http::Api::new(
            handler.clone(),
            stats.clone(),
            reloads.clone(),
        )));
        let maintainer = tokio::spawn(embargo::reload::maintain(
            config,
            handler.state().clone(),
            handler.notify_targets().clone(),
            reloads.clone(),
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            addrs,
            workers,
            handler,
            stats,
            http: http_addrs,
            tls,
            https,
            quic,
            http_task,
            dir,
            stop: Some(stop),
            task: Some(task),
            maintainer,
            reloads,
        }
    }

    /// Waits until `check` holds: checks at once, then again each time the
    /// server finishes a reload (its own signal, [`embargo::reload::Progress`]),
    /// for at most [`RELOAD_WAIT`]. For a change whose reload is under way
    /// or still to come: an edit, a download, a transfer. Each reload is
    /// checked, since the watcher may see one edit as two changes (a
    /// truncate, then a write) and the first reload read the half-done file.
    /// Returns how long it took.
    pub(crate) async fn until_reloaded(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> bool,
    ) -> Duration {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
        let mut progress = self.reloads.progress();
        loop {
            // Marked seen before the check: a reload that finishes while it
            // runs is waited for, not missed.
            let seen = progress.borrow_and_update().finished;
            if check().await {
                return started.elapsed();
            }
            let next = progress.wait_for(|p| p.finished > seen);
            let why = match tokio::time::timeout_at(deadline, next).await {
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => "the reload loop ended",
                Err(_) => "timed out",
            };
            let p = progress.borrow().clone();
            panic!(
                "{what}: not so after {RELOAD_WAIT:?} ({why}; {} reloads finished, {} started, the last said {:?})",
                p.finished, p.started, p.last
            );
        }
    }

    /// Answers each UDP worker has sent from its own batches so far.
    pub(crate) fn answered(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| w.answered.load(Ordering::Relaxed))
            .collect()
    }

    /// The directory holding the config, lists and state.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server and waits for it to drain.
    pub(crate) async fn stop(self) {
        self.stop_keep_dir().await;
    }

    /// Stops the server and hands back its directory, for a restart.
    pub(crate) async fn stop_keep_dir(mut self) -> tempfile::TempDir {
        self.maintainer.abort();
        self.http_task.abort();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server ran");
        }
        let empty = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, empty)
    }
}

impl Drop for Embargo {
    fn drop(&mut self) {
        self.maintainer.abort();
        self.http_task.abort();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A recursive query for `name`/`rtype`, optionally with EDNS (payload 1232).
pub(crate) fn query(name: &str, rtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes over UDP and returns the reply, or None after `wait`.
pub(crate) async fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(bytes, addr).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => {
            buf.truncate(n);
            Some(buf)
        }
        _ => None,
    }
}

/// Sends a message over UDP from a socket bound to `source` (any 127.0.0.0/8
/// address is local on Linux loopback, so a test can be several clients
/// without a network namespace) and decodes the reply (panics on no reply).
pub(crate) async fn udp_from(source: std::net::IpAddr, addr: SocketAddr, msg: &Message) -> Message {
    let sock = UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .expect("bind the client address");
    sock.send_to(&msg.to_vec().expect("encode"), addr)
        .await
        .expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a UDP reply in time")
        .expect("recv");
    let resp = Message::from_vec(&buf[..n]).expect("reply decodes");
    assert_eq!(resp.metadata.id, msg.metadata.id, "reply ID");
    resp
}

/// Sends a message over UDP and decodes the reply (panics on no reply).
pub(crate) async fn udp(addr: SocketAddr, msg: &Message) -> Message {
    let bytes = msg.to_vec().expect("encode");
    let reply = udp_raw(addr, &bytes, Duration::from_secs(3))
        .await
        .expect("a UDP reply");
    let resp = Message::from_vec(&reply).expect("reply decodes");
    assert_eq!(resp.metadata.id, msg.metadata.id, "reply ID");
    resp
}

/// Sends messages over one TCP connection (pipelined) and returns the replies in arrival order.
pub(crate) async fn tcp_many(addr: SocketAddr, msgs: &[Message]) -> Vec<Message> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut out = Vec::new();
    for m in msgs {
        let b = m.to_vec().expect("encode");
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(&b);
    }
    stream.write_all(&out).await.expect("write");
    let mut replies = Vec::new();
    for _ in msgs {
        let len = tokio::time::timeout(Duration::from_secs(3), stream.read_u16())
            .await
            .expect("reply in time")
            .expect("length") as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await.expect("body");
        replies.push(Message::from_vec(&buf).expect("reply decodes"));
    }
    replies
}

/// One query over TCP.
pub(crate) async fn tcp(addr: SocketAddr, msg: &Message) -> Message {
    let mut r = tcp_many(addr, std::slice::from_ref(msg)).await;
    let resp = r.remove(0);
    assert_eq!(resp.metadata.id, msg.metadata.id, "reply ID");
    resp
}

/// The Extended DNS Error of a reply: (info code, extra text).
pub(crate) fn ede(msg: &Message) -> Option<(u16, String)> {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let edns = msg.edns.as_ref()?;
    match edns.option(EdnsCode::Unknown(15))? {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8_lossy(&data[2..]).into_owned(),
        )),
        _ => None,
    }
}

/// One thing a [`ScriptedUpstream`] does with each query, in order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// Wait this long.
    Wait(Duration),
    /// The right answer: the question echoed, `A 192.0.2.99`.
    Answer,
    /// The right answer under another ID.
    WrongId,
    /// The right ID, an answer for another name.
    WrongQuestion,
    /// Random bytes.
    Garbage,
    /// The right ID and flags, the message cut inside the question (over
    /// TCP: the length of the whole answer, half of it, then silence).
    Cut,
}

/// The address a scripted upstream answers with.
pub(crate) const SCRIPTED_ANSWER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 99);

/// An upstream that misbehaves on purpose: each query it receives, over
/// UDP or TCP (one port), gets the same script of steps. It counts the
/// queries it has received and the most it was answering at once.
pub(crate) struct ScriptedUpstream {
    pub(crate) addr: SocketAddr,
    received: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Counts a query in flight at a scripted upstream; uncounts it when dropped.
struct InFlight {
    now: Arc<AtomicUsize>,
}

impl InFlight {
    fn start(now: &Arc<AtomicUsize>, peak: &AtomicUsize, received: &AtomicUsize) -> Self {
        use Ordering::SeqCst;
        received.fetch_add(1, SeqCst);
        let n = now.fetch_add(1, SeqCst) + 1;
        peak.fetch_max(n, SeqCst);
        Self { now: now.clone() }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ScriptedUpstream {
    pub(crate) async fn start(script: &[Step]) -> Self {
        use AtomicUsize;
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("addr");
        let udp = Arc::new(udp);
        let received = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let script: Arc<[Step]> = script.into();
        let (s, r, p, n) = (script.clone(), received.clone(), peak.clone(), now.clone());
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((len, peer)) = udp.recv_from(&mut buf).await {
                let query = buf[..len].to_vec();
                let flight = InFlight::start(&n, &p, &r);
                let (udp, s) = (udp.clone(), s.clone());
                tokio::spawn(async move {
                    let mut flight = Some(flight);
                    for (i, step) in s.iter().enumerate() {
                        if i + 1 == s.len() {
                            // Done before the last step goes out: the reply
                            // can start the next query before this task ends.
                            flight.take();
                        }
                        if let Step::Wait(d) = step {
                            tokio::time::sleep(*d).await;
                        } else {
                            let _ = udp.send_to(&scripted(&query, *step), peer).await;
                        }
                    }
                });
            }
        });
        let (s, r, p, n) = (script, received.clone(), peak.clone(), now);
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = tcp.accept().await {
                let (s, r, p, n) = (s.clone(), r.clone(), p.clone(), n.clone());
                tokio::spawn(async move {
                    while let Ok(len) = conn.read_u16().await {
                        let mut query = vec![0u8; usize::from(len)];
                        if conn.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        let mut flight = Some(InFlight::start(&n, &p, &r));
                        for (i, step) in s.iter().enumerate() {
                            if i + 1 == s.len() {
                                flight.take();
                            }
                            let bytes = match step {
                                Step::Wait(d) => {
                                    tokio::time::sleep(*d).await;
                                    continue;
                                }
                                Step::Cut => {
                                    let whole = scripted(&query, Step::Answer);
                                    let mut frame = (whole.len() as u16).to_be_bytes().to_vec();
                                    frame.extend_from_slice(&whole[..whole.len() / 2]);
                                    let _ = conn.write_all(&frame).await;
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                    return;
                                }
                                step => scripted(&query, *step),
                            };
                            let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
                            frame.extend_from_slice(&bytes);
                            if conn.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            received,
            peak,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Queries received so far (UDP and TCP).
    pub(crate) fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// The most queries it was working on at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The bytes a scripted upstream sends for `query` at `step`.
fn scripted(query: &[u8], step: Step) -> Vec<u8> {
    use hickory_proto::rr::{RData, Record, rdata::A};
    let Ok(q) = Message::from_vec(query) else {
        return vec![0xde, 0xad];
    };
    let question = q.queries.first().cloned().unwrap_or_default();
    let id = match step {
        Step::WrongId => q.metadata.id.wrapping_add(1),
        _ => q.metadata.id,
    };
    let question = match step {
        Step::WrongQuestion => Query::query(
            Name::from_ascii("other.up.test.").expect("name"),
            question.query_type(),
        ),
        _ => question,
    };
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_answer(Record::from_rdata(
        question.name().clone(),
        60,
        RData::A(A(SCRIPTED_ANSWER)),
    ));
    m.add_query(question);
    if let Some(e) = &q.edns {
        let mut mine = Edns::new();
        mine.set_max_payload(1232);
        mine.set_dnssec_ok(e.flags().dnssec_ok);
        m.set_edns(mine);
    }
    let bytes = m.to_vec().expect("encode");
    match step {
        Step::Garbage => (0..fastrand::usize(1..200))
            .map(|_| fastrand::u8(..))
            .collect(),
        // The 12-byte header and 3 bytes of the question's name.
        Step::Cut => bytes[..15].to_vec(),
        _ => bytes,
    }
}
