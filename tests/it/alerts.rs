//! Issue 20, first-hit alerts (`[alerts]`): the real embargo posts to an
//! HTTP(S) receiver the test starts on loopback, and the clients are
//! addresses of 127.0.0.0/8 (all local on Linux loopback).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::harness::{Embargo, TestCert, Upstream, config, query, udp_from, with_http};

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Post {
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// A webhook on loopback that keeps what it is sent and answers with the
/// statuses it is told (200 when told nothing).
struct Receiver {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<Post>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Over plain HTTP, or over HTTPS with `cert`.
    async fn start(cert: Option<&TestCert>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let posts = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let tls = cert.map(|c| tokio_rustls::TlsAcceptor::from(server_config(c)));
        let (p, s) = (posts.clone(), statuses.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (p, s, tls) = (p.clone(), s.clone(), tls.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| take(req, p.clone(), s.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            posts,
            statuses,
            task,
        }
    }

    /// Takes connections and never answers: a SIEM that hangs.
    async fn hanging() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self {
            addr,
            posts: Arc::default(),
            statuses: Arc::default(),
            task,
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/hook", self.addr)
    }

    /// The next answers, in order (then 200 again).
    fn answer(&self, statuses: &[u16]) {
        self.statuses
            .lock()
            .expect("statuses")
            .extend(statuses.iter().copied());
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().expect("posts").clone()
    }

    /// The posts once there are at least `n` (waits up to `within`).
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Post> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.posts();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn take(
    req: Request<Incoming>,
    posts: Arc<Mutex<Vec<Post>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (authorization, content_type) = (header("authorization"), header("content-type"));
    let path = req.uri().path().to_owned();
    let bytes = req.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    posts.lock().expect("posts").push(Post {
        path,
        authorization,
        content_type,
        body,
    });
    let status = statuses
        .lock()
        .expect("statuses")
        .pop_front()
        .unwrap_or(200);
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    Ok(resp)
}

fn server_config(cert: &TestCert) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem().as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem().as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    Arc::new(config)
}

/// The harness config with HTTP on a free port and `[alerts]` as `alerts`.
fn alerts_config(upstream: SocketAddr, alerts: &str) -> String {
    let text = with_http(&config(upstream, ""), "listen = [\"127.0.0.1:0\"]");
    format!("{text}\n[alerts]\n{alerts}\n")
}

/// A blocked query for `name` from `client` (an address of 127.0.0.0/8).
async fn blocked_from(e: &Embargo, client: &str, name: &str) {
    let ip: IpAddr = client.parse().expect("ip");
    let r = udp_from(ip, e.addr, &query(name, RecordType::A, false)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
}

async fn metrics(e: &Embargo) -> String {
    let url = format!("http://{}/metrics", e.http[0]);
    reqwest::get(url)
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body")
}

/// The value of the series written exactly as `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Polls /metrics until `series` satisfies `ok` (up to 10 s); its value.
async fn metric_until(e: &Embargo, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(e).await;
        let v = sample(&text, series);
        if let Some(v) = v.filter(|v| ok(*v)) {
            return v;
        }
        assert!(Instant::now() < deadline, "{series} is {v:?} in\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The guide's example of the event `event` (docs/src/security-team.md,
/// a ```json block).
fn guide_example(event: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/security-team.md");
    let md = std::fs::read_to_string(path).expect("guide");
    md.split("```json\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter_map(|b| serde_json::from_str::<Value>(b.trim()).ok())
        .find(|v| v["event"] == event)
        .unwrap_or_else(|| panic!("the guide shows no {event}"))
}

/// The keys of an object (and of its `provenance` and first `examples`).
fn keys(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (k, inner) in v.as_object().expect("object") {
        out.push(k.clone());
        let inner = if k == "examples" { &inner[0] } else { inner };
        if let Some(o) = inner.as_object() {
            out.extend(o.keys().map(|i| format!("{k}.{i}")));
        }
    }
    out.sort();
    out
}

fn first_hits(posts: &[Post]) -> Vec<&Value> {
    posts
        .iter()
        .map(|p| &p.body)
        .filter(|b| b["event"] == "first_hit")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn r20_a_first_hit_is_posted_once_with_its_fields_and_the_token_even_after_a_restart() {
    let up = Upstream::start().await;
    let hook = Receiver::start(None).await;
    let text = alerts_config(
        up.addr,
        &format!(
            "webhook = \"{}\"\ntoken_file = \"siem-token\"\n",
            hook.url("http")
        ),
    );
    let e = Embargo::start(&text, &[("siem-token", "s3cret-token-20\n")]).await;

    blocked_from(&e, "127.0.0.1", "www.seized.example.").await;
    let posts = hook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let p = &posts[0];
    assert_eq!(p.path, "/hook");
    assert_eq!(p.authorization.as_deref(), Some("Bearer s3cret-token-20"));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    let b = &p.body;
    assert_eq!(b["event"], "first_hit", "{b}");
    assert_eq!(b["client"], "127.0.0.1");
    assert_eq!(b["list"], "seized");
    assert_eq!(b["name"], "www.seized.example");
    assert_eq!(b["type"], "A");
    assert_eq!(b["entry"], "seized.example");
    assert_eq!(b["action"], "nxdomain");
    assert_eq!(b["provenance"]["authority"], "Test Court");
    assert_eq!(b["provenance"]["reason"], "Seized by court order");
    assert_eq!(b["provenance"]["reference"], "case 1");
    let t = humantime::parse_rfc3339(b["time"].as_str().expect("time")).expect("RFC 3339");
    let age = std::time::SystemTime::now()
        .duration_since(t)
        .expect("in the past");
    assert!(age < Duration::from_secs(60), "{b}");
    assert_eq!(
        keys(b),
        keys(&guide_example("first_hit")),
        "the guide shows other fields"
    );

    // The same client again, by the same name and by another of the list:
    // not a first hit. A second client is.
    blocked_from(&e, "127.0.0.1", "www.seized.example.").await;
    blocked_from(&e, "127.0.0.1", "sanctioned.example.").await;
    blocked_from(&e, "127.0.0.2", "sanctioned.example.").await;
    let posts = hook.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts_now = hook.posts();
    assert_eq!(posts_now.len(), 2, "{posts_now:#?}");
    assert_eq!(posts[1].body["client"], "127.0.0.2");
    assert_eq!(posts[1].body["name"], "sanctioned.example");
    metric_until(&e, "embargo_alerts_sent_total", |v| v == 2.0).await;

    // A restart keeps the hit report (STATE/hits.json): the clients it
    // holds are not new; a third one is.
    let dir = e.stop_keep_dir().await;
    let e = Embargo::start_in(dir).await;
    blocked_from(&e, "127.0.0.1", "www.seized.example.").await;
    blocked_from(&e, "127.0.0.2", "www.seized.example.").await;
    blocked_from(&e, "127.0.0.3", "www.seized.example.").await;
    let posts = hook.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.posts().len(), 3, "{posts:#?}");
    assert_eq!(posts[2].body["client"], "127.0.0.3");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn r20_a_flood_of_first_hits_is_a_few_posts_and_one_summary() {
    let up = Upstream::start().await;
    let hook = Receiver::start(None).await;
    let text = alerts_config(
        up.addr,
        &format!(
            "webhook = \"{}\"\nper_list = 3\nwindow = \"3s\"\n",
            hook.url("http")
        ),
    );
    let e = Embargo::start(&text, &[]).await;
    let clients: Vec<String> = (1..=40).map(|i| format!("127.0.1.{i}")).collect();
    for c in &clients {
        blocked_from(&e, c, "www.seized.example.").await;
    }
    let posts = hook.wait_for(4, Duration::from_secs(15)).await;
    // Nothing more comes after the summary.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let posts_now = hook.posts();
    assert_eq!(posts_now.len(), 4, "{posts_now:#?}");
    assert_eq!(first_hits(&posts).len(), 3, "{posts:#?}");
    let summary = &posts[3].body;
    assert_eq!(summary["event"], "first_hits_suppressed", "{summary}");
    assert_eq!(summary["list"], "seized");
    assert_eq!(summary["count"], 37);
    assert_eq!(summary["clients"], 37);
    assert_eq!(summary["examples"].as_array().map(Vec::len), Some(5));
    assert_eq!(summary["examples"][0]["name"], "www.seized.example");
    assert_eq!(summary["provenance"]["authority"], "Test Court");
    assert_eq!(
        keys(summary),
        keys(&guide_example("first_hits_suppressed")),
        "the guide shows other fields"
    );
    let since = humantime::parse_rfc3339(summary["since"].as_str().expect("since")).expect("since");
    let until = humantime::parse_rfc3339(summary["until"].as_str().expect("until")).expect("until");
    assert_eq!(
        until.duration_since(since).ok(),
        Some(Duration::from_secs(3))
    );
    let text = metrics(&e).await;
    assert_eq!(
        sample(&text, "embargo_alerts_suppressed_total{list=\"seized\"}"),
        Some(37.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "embargo_alerts_sent_total"),
        Some(4.0),
        "{text}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn r20_a_receiver_that_answers_500_is_asked_again() {
    let up = Upstream::start().await;
    let hook = Receiver::start(None).await;
    hook.answer(&[500, 503]);
    let text = alerts_config(
        up.addr,
        &format!("webhook = \"{}\"\nretries = 2\n", hook.url("http")),
    );
    let e = Embargo::start(&text, &[]).await;
    blocked_from(&e, "127.0.0.1", "www.seized.example.").await;
    // Two refusals, then the third attempt (after 1 s, then 2 s) is taken.
    let posts = hook.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(posts.len(), 3, "{posts:#?}");
    assert!(posts.iter().all(|p| p.body == posts[0].body), "{posts:#?}");
    metric_until(&e, "embargo_alerts_sent_total", |v| v == 1.0).await;
    let text = metrics(&e).await;
    assert_eq!(
        sample(&text, "embargo_alerts_dropped_total{reason=\"failed\"}"),
        Some(0.0),
        "{text}"
    );
    // A refusal that another try cannot mend (401: a wrong token) is final.
    hook.answer(&[401]);
    blocked_from(&e, "127.0.0.2", "www.seized.example.").await;
    metric_until(&e, "embargo_alerts_dropped_total{reason=\"failed\"}", |v| {
        v == 1.0
    })
    .await;
    assert_eq!(hook.posts().len(), 4);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn r20_a_receiver_that_hangs_slows_no_answer_and_drops_are_counted() {
    let up = Upstream::start().await;
    let hook = Receiver::hanging().await;
    let text = alerts_config(
        up.addr,
        &format!(
            "webhook = \"{}\"\nqueue = 2\nper_list = 1000\ntimeout = \"1s\"\nretries = 0\n",
            hook.url("http")
        ),
    );
    let e = Embargo::start(&text, &[]).await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 1..=200 {
        let asked = Instant::now();
        blocked_from(&e, &format!("127.0.2.{i}"), "www.seized.example.").await;
        slowest = slowest.max(asked.elapsed());
    }
    let took = started.elapsed();
    // An answer waits for no post: a hanging webhook with a 1 s timeout
    // would make these seconds each. (A busy machine is slow, not that slow.)
    assert!(
        slowest < Duration::from_millis(900),
        "slowest answer {slowest:?}"
    );
    assert!(took < Duration::from_secs(20), "200 answers took {took:?}");
    metric_until(
        &e,
        "embargo_alerts_dropped_total{reason=\"queue_full\"}",
        |v| v > 0.0,
    )
    .await;
    // The post in flight times out and is given up.
    metric_until(&e, "embargo_alerts_dropped_total{reason=\"failed\"}", |v| {
        v >= 1.0
    })
    .await;
    let text = metrics(&e).await;
    assert_eq!(
        sample(&text, "embargo_alerts_sent_total"),
        Some(0.0),
        "{text}"
    );
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn r20_an_https_webhook_signed_by_a_private_ca_is_trusted_through_ca_file() {
    let up = Upstream::start().await;
    let cert = TestCert::new("127.0.0.1");
    let hook = Receiver::start(Some(&cert)).await;
    let text = alerts_config(
        up.addr,
        &format!(
            "webhook = \"{}\"\nca_file = \"siem-ca.pem\"\n",
            hook.url("https")
        ),
    );
    let e = Embargo::start(&text, &[("siem-ca.pem", &cert.ca_pem)]).await;
    blocked_from(&e, "127.0.0.1", "www.seized.example.").await;
    let posts = hook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(posts[0].body["event"], "first_hit");
    assert_eq!(posts[0].authorization, None, "no token_file, no token");
    e.stop().await;

    // Without ca_file the receiver's certificate is not trusted: the post fails.
    let text = alerts_config(
        up.addr,
        &format!("webhook = \"{}\"\nretries = 0\n", hook.url("https")),
    );
    let e = Embargo::start(&text, &[]).await;
    blocked_from(&e, "127.0.0.1", "www.seized.example.").await;
    metric_until(&e, "embargo_alerts_dropped_total{reason=\"failed\"}", |v| {
        v == 1.0
    })
    .await;
    assert_eq!(hook.posts().len(), 1);
    e.stop().await;
}

/// An unreadable token file stops the start, and `validate`, with the
/// config's file and line.
#[tokio::test(flavor = "multi_thread")]
async fn r20_an_unreadable_token_file_is_named_at_start_and_by_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = alerts_config(
        "127.0.0.1:9".parse().expect("addr"),
        "webhook = \"https://siem.example/hook\"\ntoken_file = \"missing-token\"\n",
    );
    let path = crate::cli::write_config(dir.path(), &text);
    let line = text
        .lines()
        .position(|l| l.starts_with("token_file"))
        .expect("line")
        + 1;
    let at = format!("embargo.toml:{line}:14: alerts.token_file ");
    let config = embargo::Config::load(&path).expect("the config itself is valid");
    let snapshot = embargo::Snapshot::build(&config).expect("lists");
    let err = embargo::handler(&config, snapshot)
        .err()
        .expect("no start without the token")
        .to_string();
    assert!(err.contains(&at) && err.contains("missing-token"), "{err}");
    let (code, _out, err) = crate::cli::embargo(&["validate", "-c", path.to_str().expect("utf8")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&at), "{err}");
}
