//! Lists that stay current: remote lists over real HTTP on loopback
//! (conditional GET, failures, truncated bodies, a shrinking list), the last
//! good copy surviving a restart with the source gone, and reloads on file
//! change and SIGHUP that lose no query.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{Embargo, RELOAD_WAIT, SEIZED_LIST, Upstream, config, query, udp, with_http};

/// What the test HTTP server does with the next requests.
#[derive(Clone)]
enum Mode {
    /// 200 with this body and ETag (304 when If-None-Match matches).
    Serve(String, String),
    /// 500 Internal Server Error.
    Fail,
    /// Content-Length of the whole body, then only half of it and close.
    Truncate(String),
}

/// A real HTTP/1.1 server on 127.0.0.1 serving one list.
struct ListServer {
    url: String,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ListServer {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/list.txt", listener.local_addr().expect("addr"));
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(AtomicUsize::new(0));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let (m, r, nm) = (mode.clone(), requests.clone(), not_modified.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (m, r, nm) = (m.clone(), r.clone(), nm.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let req = String::from_utf8_lossy(&req).to_ascii_lowercase();
                    let mode = m.lock().expect("mode").clone();
                    let resp = match mode {
                        Mode::Serve(body, etag) => {
                            if req
                                .contains(&format!("if-none-match: {}", etag.to_ascii_lowercase()))
                            {
                                nm.fetch_add(1, Ordering::SeqCst);
                                format!(
                                    "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n"
                                )
                            } else {
                                format!(
                                    "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\n\r\n{body}",
                                    body.len()
                                )
                            }
                        }
                        Mode::Fail => {
                            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".into()
                        }
                        Mode::Truncate(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                            body.len(),
                            &body[..body.len() / 2]
                        ),
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self {
            url,
            mode,
            requests,
            not_modified,
            task,
        }
    }

    /// Waits until `n` more requests arrived (bounded: panics after
    /// [`RELOAD_WAIT`], the refresher being as slow as a reload to get a
    /// core on a busy machine).
    async fn wait_for_requests(&self, n: usize) {
        let target = self.requests.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + RELOAD_WAIT;
        while self.requests.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "the list was not fetched again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the fetcher finish with what it got.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn names(prefix: &str, n: usize) -> String {
    (0..n).map(|i| format!("{prefix}{i}.example\n")).collect()
}

async fn rcode(e: &Embargo, name: &str) -> ResponseCode {
    udp(e.addr, &query(name, RecordType::A, false))
        .await
        .metadata
        .response_code
}

/// Blocked by embargo (its EDE is there), not just NXDOMAIN from the upstream.
async fn blocked(e: &Embargo, name: &str) -> bool {
    let r = udp(e.addr, &query(name, RecordType::A, true)).await;
    r.metadata.response_code == ResponseCode::NXDomain && crate::harness::ede(&r).is_some()
}

/// Waits until `name` is blocked: checked after each reload the server
/// finishes (a download, then its reload), for at most [`RELOAD_WAIT`].
async fn eventually_blocked(e: &Embargo, name: &str) {
    e.until_reloaded(&format!("{name} blocked"), async || blocked(e, name).await)
        .await;
}

fn remote_config(upstream: std::net::SocketAddr, url: &str, refresh: &str) -> String {
    config(
        upstream,
        &format!(
            "[[lists]]\nname = \"remote\"\nsource = \"{url}\"\nrefresh = \"{refresh}\"\nmax_shrink = \"50%\"\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_list_is_fetched_kept_and_survives_failures_and_restart() {
    let up = Upstream::start().await;
    let http = ListServer::start(Mode::Serve(names("r", 10), "\"v1\"".into())).await;
    let e = Embargo::start(&remote_config(up.addr, &http.url, "1s"), &[]).await;
    // Fetched at startup (no copy yet), then enforced.
    eventually_blocked(&e, "www.r3.example.").await;
    let seen = up.count("www.r3.example");
    assert!(blocked(&e, "www.r3.example.").await);
    assert_eq!(
        up.count("www.r3.example"),
        seen,
        "enforced: no longer sent upstream"
    );

    // Refreshes every second: 304 while unchanged.
    let deadline = Instant::now() + RELOAD_WAIT;
    while http.not_modified.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "no conditional GET");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A failing server and a truncated body keep the last good copy.
    http.set(Mode::Fail);
    http.wait_for_requests(2).await;
    assert!(blocked(&e, "r7.example.").await);
    http.set(Mode::Truncate(names("t", 10)));
    http.wait_for_requests(2).await;
    assert!(blocked(&e, "r7.example.").await);
    assert!(
        !blocked(&e, "t1.example.").await,
        "a cut body is never loaded"
    );
    let meta = embargo::source::read_meta(&e.dir().join("embargo-state/lists/remote.list"));
    assert!(meta.failures >= 1, "{meta:?}");
    assert!(meta.last_result.starts_with("failed"), "{meta:?}");
    // Issue 9 (6): the cut download left nothing behind: only the last good
    // copy and its meta are in the state directory.
    let mut files: Vec<String> = std::fs::read_dir(e.dir().join("embargo-state/lists"))
        .expect("lists dir")
        .map(|f| f.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["remote.list", "remote.meta.json"]);

    // A version with more than 50% fewer names is refused...
    http.set(Mode::Serve(names("r", 3), "\"v2\"".into()));
    http.wait_for_requests(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(blocked(&e, "r8.example.").await, "shrunk list refused");
    // ...and a grown one is adopted: new names blocked, the old copy replaced.
    http.set(Mode::Serve(
        format!("{}{}", names("r", 10), names("n", 5)),
        "\"v3\"".into(),
    ));
    eventually_blocked(&e, "n4.example.").await;

    // An operator can force the shrunk version.
    http.set(Mode::Serve(names("r", 3), "\"v4\"".into()));
    let config = embargo::Config::load(&e.dir().join("embargo.toml")).expect("config");
    let client = embargo::source::http::client().expect("client");
    let embargo::config::Source::Http(url) = &config.lists[1].source else {
        panic!("remote list")
    };
    let outcome = embargo::source::http::refresh(&client, &config.lists[1], url, true).await;
    assert_eq!(outcome, embargo::source::Outcome::Updated { entries: 3 });

    // Restart with the source gone: the last good copy is loaded and enforced at once.
    let dir = e.stop_keep_dir().await;
    drop(http);
    let e = Embargo::start_in(dir).await;
    assert!(blocked(&e, "r2.example.").await);
    assert!(blocked(&e, "www.seized.example.").await);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_list_change_reloads_without_losing_a_query() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    // Not listed yet: goes upstream (whose zone does not have it: NXDOMAIN without EDE).
    rcode(&e, "new.example.").await;
    let baseline_new = up.count("new.example");
    assert_eq!(baseline_new, 1);

    // Load: a steady stream of blocked queries while the list is replaced.
    let addr = e.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, answered, servfail) = (
        stop.clone(),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (a2, s2) = (answered.clone(), servfail.clone());
    let load = tokio::spawn(async move {
        let mut sent = 0usize;
        while !stop2.load(Ordering::SeqCst) {
            let r = udp(addr, &query("x.sanctioned.example.", RecordType::A, false)).await;
            sent += 1;
            a2.fetch_add(1, Ordering::SeqCst);
            if r.metadata.response_code == ResponseCode::ServFail {
                s2.fetch_add(1, Ordering::SeqCst);
            }
        }
        sent
    });

    // Replace the list the way tools do (write elsewhere, rename over it).
    let list = e.dir().join("seized.txt");
    let tmp = e.dir().join("seized.txt.new");
    std::fs::write(&tmp, "seized.example\nsanctioned.example\nnew.example\n").expect("write");
    std::fs::rename(&tmp, &list).expect("rename");
    e.until_reloaded("the replaced list blocks www.new.example", async || {
        blocked(&e, "www.new.example.").await
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let sent = load.await.expect("load task");
    assert!(sent > 10);
    assert_eq!(
        answered.load(Ordering::SeqCst),
        sent,
        "every query answered"
    );
    assert_eq!(servfail.load(Ordering::SeqCst), 0);
    assert_eq!(
        up.count("new.example"),
        baseline_new,
        "blocked after the swap"
    );
    let seen = up.count("www.new.example");
    rcode(&e, "www.new.example.").await;
    assert_eq!(
        up.count("www.new.example"),
        seen,
        "enforced: no longer sent upstream"
    );
    e.stop().await;
}

/// Issue 21: an edit made as soon as the server is up is reloaded. The
/// file watcher was armed by the reload loop's task when it first ran: on
/// a busy machine, after a test had already edited the config, and that
/// edit was never seen (`access_and_rate_limit_apply_on_reload`: "the rate
/// limit never applied"). On a current-thread runtime that task has not
/// run when `start` returns, so the edit below lands before it every time.
#[tokio::test]
async fn r21_an_edit_made_as_the_server_starts_is_reloaded() {
    let up = Upstream::start().await;
    let e = Embargo::start(&config(up.addr, ""), &[]).await;
    // No await between the start and the edit.
    std::fs::write(
        e.dir().join("seized.txt"),
        format!("{SEIZED_LIST}fresh.example\n"),
    )
    .expect("list");
    e.until_reloaded("the edit made at start blocks fresh.example", async || {
        blocked(&e, "www.fresh.example.").await
    })
    .await;
    e.stop().await;
}

/// An edit that lands while a reload is under way is reloaded after it:
/// that reload may have read the file before the edit.
#[tokio::test(flavor = "multi_thread")]
async fn r21_an_edit_during_a_reload_is_reloaded_after_it() {
    let up = Upstream::start().await;
    // A list large enough that the reload takes a while to build.
    let bulk = "[[lists]]\nname = \"bulk\"\nsource = \"bulk.txt\"\n";
    let e = Embargo::start(
        &config(up.addr, bulk),
        &[("bulk.txt", &names("bulk", 100_000))],
    )
    .await;
    let mut progress = e.reloads.progress();
    let list = e.dir().join("seized.txt");
    std::fs::write(&list, format!("{SEIZED_LIST}first.example\n")).expect("list");
    tokio::time::timeout(RELOAD_WAIT, progress.wait_for(|p| p.started > p.finished))
        .await
        .expect("a reload starts")
        .expect("the reload loop runs");
    std::fs::write(
        &list,
        format!("{SEIZED_LIST}first.example\nsecond.example\n"),
    )
    .expect("list");
    eprintln!(
        "edited while reload {} was under way: {}",
        progress.borrow().started,
        progress.borrow().finished < progress.borrow().started
    );
    e.until_reloaded(
        "the edit made during a reload blocks second.example",
        async || blocked(&e, "second.example.").await,
    )
    .await;
    assert!(blocked(&e, "first.example.").await);
    e.stop().await;
}

/// `embargo run` in-process, as `main` runs it: the config was read, the
/// sockets bound ([`embargo::prepare`]); now [`embargo::serve`] runs.
struct Served {
    dns: std::net::SocketAddr,
    http: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), embargo::RunError>>,
}

impl Served {
    fn start(config: embargo::Config, listeners: embargo::Listeners) -> Self {
        let dns = listeners.dns.local_addrs()[0];
        let http = listeners.http.local_addrs()[0];
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(embargo::serve(config, listeners, async {
            let _ = stopped.await;
        }));
        Self {
            dns,
            http,
            stop,
            task,
        }
    }

    /// Waits (at most [`RELOAD_WAIT`]) for the server's count of reloads
    /// that succeeded, in `/metrics`, to reach `n`.
    async fn until_reloads(&self, n: u64) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let series = "embargo_reloads_total{result=\"ok\"} ";
        let deadline = Instant::now() + RELOAD_WAIT;
        loop {
            let text = match client
                .get(format!("http://{}/metrics", self.http))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let ok = text
                .lines()
                .find_map(|l| l.strip_prefix(series)?.parse::<u64>().ok());
            if ok.is_some_and(|ok| ok >= n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ok:?} reloads after {RELOAD_WAIT:?}, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("serve task").expect("served");
    }
}

/// Issue 21: `embargo run` reads its config, then binds and drops its
/// privileges, then serves; the watcher cannot be armed before that (it
/// starts a thread, and privileges are dropped while there is one). An
/// edit made in between tells no watcher, yet must be reloaded.
#[tokio::test(flavor = "multi_thread")]
async fn r21_a_config_edited_as_the_server_starts_is_reloaded() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("seized.txt"), SEIZED_LIST).expect("list");
    let path = dir.path().join("embargo.toml");
    let text = with_http(&config(up.addr, ""), "listen = \"127.0.0.1:0\"");
    std::fs::write(&path, &text).expect("config");
    let config = embargo::Config::load(&path).expect("config");
    let listeners = embargo::prepare(&config).expect("bind");
    // After the read, before `serve`: www.seized.example allowlisted.
    let allowed = "domains = [\"allowed.seized.example\", \"www.seized.example\"]";
    std::fs::write(
        &path,
        text.replace("domains = [\"allowed.seized.example\"]", allowed),
    )
    .expect("config");
    let s = Served::start(config, listeners);
    s.until_reloads(1).await;
    let r = udp(s.dns, &query("www.seized.example.", RecordType::A, true)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r:?}");
    s.stop().await;
}

/// Issue 21: a list edited while the server loads its lists at start is
/// reloaded: the watcher is armed before the lists are read. (It was armed
/// after the whole build, a second or more with a million names, and an
/// edit of a list already read went unseen.)
#[tokio::test(flavor = "multi_thread")]
async fn r21_a_list_edited_while_the_server_loads_is_reloaded() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("seized.txt"), SEIZED_LIST).expect("list");
    // Read after seized.txt, and long to load.
    std::fs::write(dir.path().join("bulk.txt"), names("bulk", 150_000)).expect("list");
    let path = dir.path().join("embargo.toml");
    let bulk = "[[lists]]\nname = \"bulk\"\nsource = \"bulk.txt\"\n";
    let text = with_http(&config(up.addr, bulk), "listen = \"127.0.0.1:0\"");
    std::fs::write(&path, &text).expect("config");
    let config = embargo::Config::load(&path).expect("config");
    let listeners = embargo::prepare(&config).expect("bind");
    // The server opens seized.txt twice as it loads (its lines counted to
    // size the set, then read), then loads bulk.txt for a second or more:
    // the edit goes in there, after seized.txt was read.
    let (opened, opens) = std::sync::mpsc::channel();
    let seized = dir.path().join("seized.txt");
    let mut spy = notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
        if let Ok(e) = r
            && matches!(
                e.kind,
                notify::EventKind::Access(notify::event::AccessKind::Open(_))
            )
        {
            let _ = opened.send(());
        }
    })
    .expect("watcher");
    notify::Watcher::watch(&mut spy, &seized, notify::RecursiveMode::NonRecursive).expect("watch");
    let s = Served::start(config, listeners);
    tokio::task::block_in_place(|| {
        for _ in 0..2 {
            // Should that ever change, the edit lands whenever: the test
            // passes or fails as before, it only no longer aims.
            let _ = opens.recv_timeout(Duration::from_secs(10));
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(spy);
    std::fs::write(
        dir.path().join("seized.txt"),
        format!("{SEIZED_LIST}fresh.example\n"),
    )
    .expect("list");
    let started = Instant::now();
    loop {
        let r = udp(s.dns, &query("www.fresh.example.", RecordType::A, true)).await;
        if r.metadata.response_code == ResponseCode::NXDomain && crate::harness::ede(&r).is_some() {
            break;
        }
        // Serving: the load is done. The edit is in force, or a reload
        // follows (two, if the first read the list between the truncate
        // and the write).
        s.until_reloads(1).await;
        assert!(
            started.elapsed() < RELOAD_WAIT,
            "reloaded, but www.fresh.example is not blocked after {RELOAD_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

/// The CPU time this thread has run (Linux: `/proc/thread-self/schedstat`).
/// Unlike the wall clock, it does not count the time the thread waited for
/// a core, which on a busy machine says nothing about the code under test.
pub(crate) fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("CPU time in ns");
    Duration::from_nanos(ns)
}

/// The most CPU time the runtime's one thread spent on other tasks between
/// two wake-ups of this one (which asks to wake every millisecond), until
/// `stop` is set: how long other work held the runtime's thread.
pub(crate) async fn worst_stall(stop: Arc<std::sync::atomic::AtomicBool>) -> Duration {
    let mut worst = Duration::ZERO;
    let mut last = thread_cpu();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = thread_cpu();
        worst = worst.max(now.saturating_sub(last));
        last = now;
    }
    worst
}

/// Issue 16 (7): a downloaded list is parsed, written and fsynced off the
/// runtime that carries forwarded answers. On a one-thread runtime, a task
/// beside the refresh must keep running while a large download is parsed:
/// the runtime's thread is never held, between two of its wake-ups, for
/// anything like the CPU time that parsing that list takes.
#[test]
fn r16_a_large_download_is_parsed_and_written_off_the_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let list = names("big", 200_000);
        // What parsing this list costs, in CPU time on this thread.
        let started = thread_cpu();
        let mut parsed = 0u64;
        embargo::lists::load_lines(
            &mut list.as_bytes(),
            embargo::lists::Format::Domains,
            &mut |_, _| parsed += 1,
        )
        .expect("parse");
        let parse = thread_cpu() - started;
        assert_eq!(parsed, 200_000);

        let http = ListServer::start(Mode::Serve(list, "\"v1\"".into())).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("embargo.toml");
        std::fs::write(dir.path().join("seized.txt"), "seized.example\n").expect("list");
        std::fs::write(
            &path,
            remote_config("127.0.0.1:9".parse().expect("addr"), &http.url, "1h"),
        )
        .expect("config");
        let config = embargo::Config::load(&path).expect("config");
        let spec = &config.lists[1];
        let embargo::config::Source::Http(url) = &spec.source else {
            panic!("remote list")
        };
        let client = embargo::source::http::client().expect("client");

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = tokio::spawn(worst_stall(stop.clone()));
        let outcome = embargo::source::http::refresh(&client, spec, url, false).await;
        stop.store(true, Ordering::SeqCst);
        let stalled = ticker.await.expect("ticker");
        assert_eq!(
            outcome,
            embargo::source::Outcome::Updated { entries: 200_000 }
        );
        eprintln!(
            "parsing the list takes {parse:?} of CPU; the runtime was held {stalled:?} at most"
        );
        assert!(
            stalled < parse / 3,
            "the runtime's thread was held for {stalled:?} of CPU; parsing the list takes {parse:?}"
        );
    });
}

/// Issue 16 (4): `embargo fetch` run before the first `embargo run` makes
/// the state directory and the list copies, under whatever umask: they
/// must be as private as the server's own (0750 and 0640), not 0777 and
/// 0666 under `umask 000`.
#[tokio::test(flavor = "multi_thread")]
async fn r16_fetch_before_the_first_run_keeps_the_state_private() {
    use std::os::unix::fs::PermissionsExt;
    let http = ListServer::start(Mode::Serve(names("f", 5), "\"v1\"".into())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = crate::cli::write_config(
        dir.path(),
        &remote_config("127.0.0.1:9".parse().expect("addr"), &http.url, "1h"),
    );
    let out = tokio::process::Command::new("bash")
        .args([
            "-c",
            "umask 000; exec \"$0\" fetch -c \"$1\"",
            env!("CARGO_BIN_EXE_embargo"),
            cfg.to_str().expect("utf8"),
        ])
        .output()
        .await
        .expect("run embargo fetch");
    assert!(out.status.success(), "{out:?}");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let state = dir.path().join("embargo-state");
    assert_eq!(mode(&state), 0o750, "the state directory");
    assert_eq!(mode(&state.join("lists")), 0o750, "the lists directory");
    assert_eq!(mode(&state.join("lists/remote.list")), 0o640, "the copy");
}
