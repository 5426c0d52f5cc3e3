//! The HTTP side: Prometheus metrics, health checks and a small JSON API,
//! served by axum on the same tokio runtime as the forwards (never on a UDP
//! worker thread).
//!
//! ```text
//!  GET  /               the dashboard: one page, embedded         no token (the data it reads needs one)
//!  GET  /healthz        200 "ok" while serving                      no token
//!  GET  /metrics        Prometheus text (observe::metrics::render)  no token
//!  GET  /readyz         200 when every list is in force, every canary blocked and an upstream answered in the last minute
//!  GET  /api/lists      every list: source, format, entries, provenance, last refresh, blocks
//!  GET  /api/check      ?name=&client=: what `embargo check` says, as JSON
//!  GET  /api/hits       ?list=&limit=: the hit report, live (`embargo hits --json`), most recent first
//!  GET  /api/log        ?limit=: the latest query-log records, newest first (the observer keeps 1000);
//!                       ?client=&list=&name=&since=&until=: the log's files searched (search.rs)
//!  GET  /api/series     blocked and allowed per second over the last hour (the chart)
//!  POST /api/reload     reload now; 200 when done, 202 if it takes longer than 30 s
//! ```
//!
//! Who may ask ([`auth`]): on a loopback listener anyone on the host may
//! read; on any other listener every request but `/healthz`, `/metrics`
//! and the dashboard page itself (which holds no data) needs `Authorization: Bearer TOKEN` (`[http] token` or `token_file`);
//! and a `POST` always needs it, on loopback too, so that a page open in a
//! local browser cannot make the server reload. Without a configured token
//! those requests are refused (401), never let through.
//!
//! A page in a local browser can also point a name of its own at 127.0.0.1
//! (DNS rebinding) and read a loopback listener as its own origin. Its
//! requests carry that name in `Host`, so on a loopback listener a request
//! without the token must name `localhost` or a loopback address (any
//! port); anything else is 403. A request with no `Host` at all (HTTP/1.0)
//! is answered: browsers always send one.
//!
//! What a client can hold ([`serve`](Listeners::serve)): at most
//! `[http] max_connections` connections, all listeners together (one more
//! is closed at once: each is a file descriptor, which DNS needs too), each
//! for as long as it keeps to `[http] timeout`: a request head must arrive
//! whole within it, from the connection's start or the previous answer
//! (hyper's header timer: silent, trickling and idle keep-alive connections
//! go), and an answer's bytes must keep moving ([`Stall`]).

mod api;
mod search;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::{HttpConfig, TokenSource};
use crate::observe::metrics::ServerStats;
use crate::observe::series::{self, Series};
use crate::reload;
use crate::server::{Handler, LogGate};

/// Why the HTTP listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("http: cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("http.token_file {path}: {source}")]
    TokenFile {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("http.token_file {path}: empty")]
    EmptyToken { path: std::path::PathBuf },
}

/// The HTTP listeners, bound, and the token read: done before the
/// privileges are dropped, so a token file may be readable by root alone.
#[derive(Debug, Default)]
pub struct Listeners {
    listeners: Vec<std::net::TcpListener>,
    token: Option<String>,
    /// `[http] max_connections`.
    max_connections: usize,
    /// `[http] timeout`.
    timeout: Duration,
}

impl Listeners {
    /// Binds every `[http] listen` address and reads the token.
    pub fn bind(config: &HttpConfig) -> Result<Self, Error> {
        let token = match &config.token {
            None => None,
            Some(TokenSource::Inline(t)) => Some(t.trim().to_owned()),
            Some(TokenSource::File(path)) => {
                let text = read_token(path).map_err(|source| Error::TokenFile {
                    path: path.clone(),
                    source,
                })?;
                let t = text.trim();
                if t.is_empty() {
                    return Err(Error::EmptyToken { path: path.clone() });
                }
                Some(t.to_owned())
            }
        };
        let mut listeners = Vec::new();
        for &addr in &config.listen {
            let l = match std::net::TcpListener::bind(addr) {
                Ok(l) => l,
                // An address the config never named (a second instance
                // on the host has it) must not keep DNS from starting.
                Err(error) if config.implied => {
                    tracing::warn!(%addr, %error, "http: cannot listen on the built-in address (the config has no [http] listen): serving DNS without HTTP; set [http] listen to a free address, or [] for none");
                    continue;
                }
                Err(source) => return Err(Error::Bind { addr, source }),
            };
            l.set_nonblocking(true)
                .map_err(|source| Error::Bind { addr, source })?;
            listeners.push(l);
        }
        Ok(Self {
            listeners,
            token,
            max_connections: config.max_connections,
            timeout: config.timeout,
        })
    }

    /// The addresses bound (with the real port when 0 was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves every listener until the task is dropped or aborted (which
    /// ends every connection too: they are this future's own tasks).
    pub async fn serve(self, api: Api) -> io::Result<()> {
        if self.listeners.is_empty() {
            return Ok(());
        }
        let api = Arc::new(api);
        // Stops with this future: the sampler lives as long as the listeners.
        let sampler = AbortOnDrop(tokio::spawn(series::keep(
            api.series.clone(),
            api.stats.clone(),
        )));
        let bounds = Bounds {
            slots: Arc::new(Semaphore::new(self.max_connections)),
            max_connections: self.max_connections,
            timeout: self.timeout,
        };
        let mut tasks = JoinSet::new();
        for l in self.listeners {
            let addr = l.local_addr()?;
            let listener = tokio::net::TcpListener::from_std(l)?;
            let guard = Arc::new(Guard {
                token: self.token.clone(),
                loopback: addr.ip().is_loopback(),
                own: addr.ip(),
            });
            let app = router(api.clone(), guard);
            tracing::info!(%addr, "http listening on {addr}");
            tasks.spawn(accept(listener, addr, app, bounds.clone()));
        }
        while tasks.join_next().await.is_some() {}
        drop(sampler);
        Ok(())
    }
}

/// How many connections, and how long each may keep the server waiting.
#[derive(Clone)]
struct Bounds {
    /// One permit per connection, shared by every listener.
    slots: Arc<Semaphore>,
    max_connections: usize,
    timeout: Duration,
}

/// How long the accept loop waits after a failed accept: out of
/// descriptors, the connection stays in the backlog and fails again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// The most a connection buffers of a request (hyper's floor is 8 KiB):
/// request heads here are small, and a bigger one gets 431.
const MAX_BUFFER: usize = 64 * 1024;

/// Accepts connections on one listener and serves each in a task of its
/// own, while a slot is free; otherwise the new connection is closed at
/// once (the client hears it, rather than waiting in the backlog).
async fn accept(listener: tokio::net::TcpListener, addr: SocketAddr, app: Router, bounds: Bounds) {
    let mut conns = JoinSet::new();
    let failed = LogGate::new();
    let full = LogGate::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let Ok(slot) = bounds.slots.clone().try_acquire_owned() else {
                        drop(stream);
                        if let Some(more) = full.pass(crate::observe::now_us()) {
                            tracing::warn!(
                                %addr,
                                limit = bounds.max_connections,
                                closed = more + 1,
                                "http connection limit reached: new connections closed at once (one line per 10 s; closed: since the last)"
                            );
                        }
                        continue;
                    };
                    conns.spawn(connection(stream, app.clone(), bounds.timeout, slot));
                }
                Err(e) => {
                    if let Some(more) = failed.pass(crate::observe::now_us()) {
                        tracing::warn!(%addr, error = %e, suppressed = more, "http accept failed (one line per 10 s; suppressed: failures since the last)");
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            Some(_) = conns.join_next() => {}
        }
    }
}

/// Serves one connection with HTTP/1.1 until either side closes it or the
/// client keeps it waiting longer than `timeout`; `_slot` frees its place
/// when it ends.
async fn connection(
    stream: TcpStream,
    app: Router,
    timeout: Duration,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Stall::new(stream, timeout));
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_BUFFER)
        .serve_connection(io, TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "http connection closed");
    }
}

/// A connection whose writes may not stall for longer than its limit: a
/// client that stops reading its answers loses the connection once the
/// socket buffers are full and nothing moves for that long. (Hyper's own
/// timer covers only the wait for a request head.)
struct Stall {
    io: TcpStream,
    limit: Duration,
    /// Armed when a write could not proceed; disarmed when one does.
    since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    fn new(io: TcpStream, limit: Duration) -> Self {
        Self {
            io,
            limit,
            since: None,
        }
    }

    /// A write that made progress (or failed) disarms the timer; one that
    /// could not proceed arms it, and fails once it fires.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.since = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no bytes of its answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Stall {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stall {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

/// Reads the token file, and warns when users other than its owner's group
/// may read it: they know the token then.
fn read_token(path: &std::path::Path) -> io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o004 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:04o}", mode & 0o7777),
            "http.token_file is readable by every user on this host, who can then use the token: chmod o-r it (0600, or 0640 for a group)"
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// Aborts a task when dropped (when the future that owns it is aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the endpoints read: the server's parts, shared with the DNS side.
pub struct Api {
    handler: Arc<Handler>,
    stats: ServerStats,
    reload: Arc<reload::Control>,
    /// When serving started, seconds since the epoch.
    started: u64,
    /// The last hour per second, for the dashboard.
    series: Arc<Series>,
    /// What the canaries' last checks said (`crate::canary`).
    canaries: Arc<crate::canary::Canaries>,
    /// `[log]`, for searching its files (`/api/log?client=`).
    log: Option<crate::config::LogConfig>,
}

impl Api {
    /// The API over a server's handler, counters and reload loop.
    pub fn new(handler: Arc<Handler>, stats: ServerStats, reload: Arc<reload::Control>) -> Self {
        Self {
            handler,
            stats,
            reload,
            started: crate::source::store::now(),
            series: Arc::default(),
            canaries: Arc::default(),
            log: None,
        }
    }

    /// The canaries' state that `/readyz`, `/metrics` and `/api/lists` report.
    pub fn with_canaries(mut self, canaries: Arc<crate::canary::Canaries>) -> Self {
        self.canaries = canaries;
        self
    }

    /// Where the query log is, for `/api/log`'s search (without it, a
    /// search is answered 404).
    pub fn with_log(mut self, log: &crate::config::LogConfig) -> Self {
        self.log = Some(log.clone());
        self
    }
}

/// One listener's rule for who may ask.
struct Guard {
    token: Option<String>,
    /// The listener is on a loopback address: reading needs no token, if
    /// the request names this host as a local client would.
    loopback: bool,
    /// The address the listener is bound to.
    own: IpAddr,
}

fn router(api: Arc<Api>, guard: Arc<Guard>) -> Router {
    Router::new()
        .route("/", get(api::dashboard))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/lists", get(api::lists))
        .route("/api/check", get(api::check))
        .route("/api/hits", get(api::hits))
        .route("/api/history", get(api::history))
        .route("/api/log", get(api::log))
        .route("/api/series", get(api::series))
        .route("/api/reload", post(api::reload))
        .layer(middleware::from_fn_with_state(guard, auth))
        .layer(middleware::map_response(nosniff))
        .with_state(api)
}

/// No answer is to be read as another type than it says (a JSON answer
/// sniffed into a script or a page): every answer says so, refusals too.
async fn nosniff(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Paths anyone who can reach the listener may read. The dashboard page
/// holds no data: it asks for the token when the API answers 401.
const OPEN: [&str; 3] = ["/", "/healthz", "/metrics"];

/// Lets a request through, or answers 401 or 403 (see the module doc).
async fn auth(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let given = bearer(req.headers());
    let authorized = matches!((&guard.token, given), (Some(t), Some(g)) if same_secret(g, t));
    if authorized {
        return next.run(req).await;
    }
    if guard.loopback && !names_this_host(&req, guard.own) {
        return refused(
            StatusCode::FORBIDDEN,
            "the Host of this request is not localhost nor a loopback address: on a loopback \
             listener that needs the bearer token (a web page may have pointed a name of its own here)",
        );
    }
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    let open = reading && (guard.loopback || OPEN.contains(&req.uri().path()));
    if open {
        return next.run(req).await;
    }
    match (&guard.token, given) {
        (None, _) => unauthorized(
            "this request needs a bearer token, and none is configured: set [http] token or token_file",
        ),
        (Some(_), Some(_)) => unauthorized("wrong bearer token"),
        (Some(_), None) => unauthorized("this request needs Authorization: Bearer TOKEN"),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme's
/// name is case-insensitive (RFC 7235 2.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether every name the request gives for the server (its `Host`, and
/// the authority of an absolute URI) is one a client on this host would
/// use: `localhost`, a loopback address, or the listener's own address,
/// with any port. A request that names none is let through.
fn names_this_host(req: &Request, own: IpAddr) -> bool {
    let host = match req.headers().get(header::HOST) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(h) => Some(h),
            Err(_) => return false,
        },
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    host.into_iter()
        .chain(authority)
        .all(|name| is_local_name(name, own))
}

/// `localhost`, a loopback address or `own`, each with an optional port
/// (IPv6 in brackets), as a `Host` header writes them.
fn is_local_name(host: &str, own: IpAddr) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if !(after.is_empty() || is_port(after)) {
            return false;
        }
        return v6
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| is_local_ip(IpAddr::V6(ip), own));
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| is_local_ip(IpAddr::V4(ip), own))
}

/// `:` and 1 to 5 digits.
fn is_port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_local_ip(ip: IpAddr, own: IpAddr) -> bool {
    ip.to_canonical().is_loopback() || ip == own
}

/// Compares a token in time that does not depend on where it differs.
fn same_secret(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

fn unauthorized(why: &str) -> Response {
    let mut r = refused(StatusCode::UNAUTHORIZED, why);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("0123456789abcdef", "0123456789abcdef"));
        assert!(!same_secret("0123456789abcdeX", "0123456789abcdef"));
        assert!(!same_secret("0123456789abcde", "0123456789abcdef"));
        assert!(!same_secret("", "0123456789abcdef"));
    }

    #[test]
    fn the_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-token-of-16+\n").expect("write");
        let config = HttpConfig {
            listen: Vec::new(),
            token: Some(TokenSource::File(path.clone())),
            ..HttpConfig::default()
        };
        let l = Listeners::bind(&config).expect("bind");
        assert_eq!(l.token.as_deref(), Some("s3cret-token-of-16+"));
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            Listeners::bind(&config),
            Err(Error::EmptyToken { .. })
        ));
        std::fs::remove_file(&path).expect("rm");
        assert!(matches!(
            Listeners::bind(&config),
            Err(Error::TokenFile { .. })
        ));
    }

    #[test]
    fn local_names_are_localhost_and_loopback_addresses_with_any_port() {
        let own: IpAddr = "127.0.0.1".parse().expect("ip");
        for local in [
            "localhost",
            "LOCALHOST:8053",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8053",
            "127.200.0.1:1",
            "[::1]",
            "[::1]:8053",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_local_name(local, own), "{local}");
        }
        for foreign in [
            "evil.example",
            "evil.example:8053",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "x.localhost",
            "localhost:",
            "localhost:80:80",
            "localhost:123456",
            "::1",
            "[::1",
            "[::1]x",
            "[::2]:80",
            "10.0.0.1",
            "",
        ] {
            assert!(!is_local_name(foreign, own), "{foreign}");
        }
        // The listener's own address, loopback or not.
        let own: IpAddr = "192.0.2.10".parse().expect("ip");
        assert!(is_local_name("192.0.2.10:8053", own));
        assert!(!is_local_name("192.0.2.11:8053", own));
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("value"),
            );
            h
        };
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with("BEARER abc")), Some("abc"));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&with("Bearerabc")), None);
        assert_eq!(bearer(&with("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
