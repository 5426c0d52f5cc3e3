//! Signed lists (issue 20): a remote list with `signature = "minisign"`
//! over real HTTP on loopback, signed with a key the test makes. A good
//! signature loads; a tampered list, another key's signature or no
//! signature at all keeps the last good copy, and `/api/lists`, `/metrics`
//! and the list's metadata say why. A copy tampered with on disk is not
//! loaded at start either.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{Embargo, RELOAD_WAIT, Upstream, config, ede, query, udp, with_http};

/// A real HTTP/1.1 server on 127.0.0.1 serving files by path (404 for a
/// path it has not got), as a list's publisher or mirror would.
pub(crate) struct Files {
    addr: SocketAddr,
    files: Arc<Mutex<HashMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Files {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let files: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let f = files.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&req);
                    let path = req.split(' ').nth(1).unwrap_or("").to_owned();
                    let body = f.lock().expect("files").get(&path).cloned();
                    let resp = match body {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { addr, files, task }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves `body` at `path`, or nothing (404) for `None`.
    pub(crate) fn set(&self, path: &str, body: Option<&str>) {
        let mut files = self.files.lock().expect("files");
        match body {
            Some(b) => files.insert(path.to_owned(), b.to_owned()),
            None => files.remove(path),
        };
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A publisher's key pair.
struct Publisher(minisign::KeyPair);

impl Publisher {
    fn new() -> Self {
        Self(minisign::KeyPair::generate_unencrypted_keypair().expect("keypair"))
    }

    /// The public key as `public_key` takes it (`RW...`).
    fn public_key(&self) -> String {
        self.0.pk.to_base64()
    }

    /// The `.minisig` text of `data`, as `minisign -S` writes it.
    fn sign(&self, data: &str) -> String {
        minisign::sign(
            Some(&self.0.pk),
            &self.0.sk,
            std::io::Cursor::new(data.as_bytes()),
            Some("timestamp:1790000000\tfile:feed.txt"),
            None,
        )
        .expect("sign")
        .to_string()
    }
}

fn names(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix}{i}.example\n")).collect()
}

/// Blocked by embargo (its EDE is there), not just NXDOMAIN upstream.
async fn blocked(e: &Embargo, name: &str) -> bool {
    let r = udp(e.addr, &query(name, RecordType::A, true)).await;
    r.metadata.response_code == ResponseCode::NXDomain && ede(&r).is_some()
}

fn meta(e: &Embargo) -> embargo::source::FetchMeta {
    embargo::source::read_meta(&e.dir().join("embargo-state/lists/feed.list"))
}

/// Waits until the feed's refresher turned down one more download for its
/// signature than `before`.
async fn until_refused(e: &Embargo, before: u64) -> embargo::source::FetchMeta {
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let m = meta(e);
        if m.signature_failures > before {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no signature refusal recorded: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(addr: SocketAddr, path: &str) -> String {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

fn signed_config(up: SocketAddr, url: &str, key: &str) -> String {
    with_http(
        &config(
            up,
            &format!(
                "[[lists]]\nname = \"feed\"\nsource = \"{url}\"\nrefresh = \"1s\"\nsignature = \"minisign\"\npublic_key = \"{key}\"\n"
            ),
        ),
        "listen = [\"127.0.0.1:0\"]",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_list_loads_only_with_its_publishers_signature() {
    let up = Upstream::start().await;
    let http = Files::start().await;
    let publisher = Publisher::new();
    let v1 = names("a", 5);
    // At start the list is there, its signature not yet: never loaded unsigned.
    http.set("/feed.txt", Some(&v1));
    let e = Embargo::start(
        &signed_config(up.addr, &http.url("/feed.txt"), &publisher.public_key()),
        &[],
    )
    .await;
    let m = until_refused(&e, 0).await;
    assert!(
        m.last_result
            .starts_with("refused: signature: no signature at"),
        "{m:?}"
    );
    assert!(!blocked(&e, "a1.example.").await, "loaded unsigned");

    // Signed: loaded (default signature URL: the list's + ".minisig").
    http.set("/feed.txt.minisig", Some(&publisher.sign(&v1)));
    e.until_reloaded("a1 blocked", async || blocked(&e, "a1.example.").await)
        .await;
    let m = meta(&e);
    assert_eq!(
        m.signed.as_deref(),
        Some("timestamp:1790000000\tfile:feed.txt")
    );

    // A tampered list (v1's signature over other names): refused, v1 stays.
    let v2 = names("b", 5);
    http.set("/feed.txt", Some(&v2));
    let m = until_refused(&e, m.signature_failures).await;
    assert!(m.last_result.contains("does not verify"), "tampered: {m:?}");
    assert!(blocked(&e, "a1.example.").await, "the last good copy stays");
    assert!(!blocked(&e, "b1.example.").await, "a tampered list loaded");

    // Signed, but by another key: refused.
    http.set("/feed.txt.minisig", Some(&Publisher::new().sign(&v2)));
    let m = until_refused(&e, m.signature_failures).await;
    assert!(m.last_result.contains("another key"), "other key: {m:?}");
    assert!(!blocked(&e, "b1.example.").await);

    // No signature: refused.
    http.set("/feed.txt.minisig", None);
    let m = until_refused(&e, m.signature_failures).await;
    assert!(m.last_result.contains("HTTP 404"), "missing: {m:?}");
    assert!(blocked(&e, "a1.example.").await);

    // /api/lists and /metrics say why.
    let api = get(e.http[0], "/api/lists").await;
    let lists: serde_json::Value = serde_json::from_str(&api).expect("json");
    let feed = lists["lists"]
        .as_array()
        .expect("lists")
        .iter()
        .find(|l| l["name"] == "feed")
        .expect("feed")
        .clone();
    assert_eq!(feed["signature"]["required"], true, "{feed}");
    assert!(
        feed["signature"]["failures"].as_u64().expect("failures") >= 3,
        "{feed}"
    );
    assert!(
        feed["last_result"]
            .as_str()
            .expect("last_result")
            .starts_with("refused: signature:"),
        "{feed}"
    );
    let metrics = get(e.http[0], "/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("embargo_list_signature_failures_total{list=\"feed\"}"))
        .unwrap_or_else(|| panic!("no signature metric in {metrics}"));
    let n: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(n >= 3, "{line}");

    // The publisher's signed v2: adopted.
    http.set("/feed.txt.minisig", Some(&publisher.sign(&v2)));
    e.until_reloaded("b1 blocked", async || blocked(&e, "b1.example.").await)
        .await;
    assert!(!blocked(&e, "a1.example.").await);

    // Restart with the source gone and the copy tampered with on disk: not
    // loaded, not even at start; the reason is in /api/lists.
    let dir = e.stop_keep_dir().await;
    drop(http);
    let copy = dir.path().join("embargo-state/lists/feed.list");
    std::fs::write(&copy, names("c", 5)).expect("tamper");
    let e = Embargo::start_in(dir).await;
    assert!(!blocked(&e, "c1.example.").await, "a tampered copy loaded");
    assert!(!blocked(&e, "b1.example.").await);
    assert!(blocked(&e, "seized.example.").await, "the other lists load");
    let api = get(e.http[0], "/api/lists").await;
    assert!(
        api.contains("signature: the signature does not verify"),
        "{api}"
    );
    e.stop().await;
}
