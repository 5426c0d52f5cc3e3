//! The HTTP side: Prometheus metrics, health checks and a small JSON API,
//! served by axum on the same tokio runtime as the forwards (never on a UDP
//! worker thread).
//!
//! ```text
//!  GET  /               the dashboard: one page, embedded         no token (the data it reads needs one)
//!  GET  /healthz        200 "ok" while serving                      no token
//!  GET  /metrics        Prometheus text (observe::metrics::render)  no token
//!  GET  /readyz         200 when every list is in force and an upstream answered in the last minute
//!  GET  /api/lists      every list: source, format, entries, provenance, last refresh, blocks
//!  GET  /api/check      ?name=&client=: what `embargo check` says, as JSON
//!  GET  /api/hits       ?list=&limit=: the hit report, live (`embargo hits --json`), most recent first
//!  GET  /api/log        ?limit=: the latest query-log records, newest first (the observer keeps 1000)
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

mod api;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::{HttpConfig, TokenSource};
use crate::observe::metrics::ServerStats;
use crate::observe::series::{self, Series};
use crate::reload;
use crate::server::Handler;

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
}

impl Listeners {
    /// Binds every `[http] listen` address and reads the token.
    pub fn bind(config: &HttpConfig) -> Result<Self, Error> {
        let token = match &config.token {
            None => None,
            Some(TokenSource::Inline(t)) => Some(t.trim().to_owned()),
            Some(TokenSource::File(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
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
            let l =
                std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
            l.set_nonblocking(true)
                .map_err(|source| Error::Bind { addr, source })?;
            listeners.push(l);
        }
        Ok(Self { listeners, token })
    }

    /// The addresses bound (with the real port when 0 was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves every listener until the task is dropped or aborted.
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
        let mut tasks = Vec::new();
        for l in self.listeners {
            let addr = l.local_addr()?;
            let listener = tokio::net::TcpListener::from_std(l)?;
            let guard = Arc::new(Guard {
                token: self.token.clone(),
                loopback: addr.ip().is_loopback(),
            });
            let app = router(api.clone(), guard);
            tracing::info!(%addr, "http listening on {addr}");
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(%addr, error = %e, "http server stopped");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        drop(sampler);
        Ok(())
    }
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
        }
    }
}

/// One listener's rule for who may ask.
struct Guard {
    token: Option<String>,
    /// The listener is on a loopback address: reading needs no token.
    loopback: bool,
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
        .route("/api/log", get(api::log))
        .route("/api/series", get(api::series))
        .route("/api/reload", post(api::reload))
        .layer(middleware::from_fn_with_state(guard, auth))
        .with_state(api)
}

/// Paths anyone who can reach the listener may read. The dashboard page
/// holds no data: it asks for the token when the API answers 401.
const OPEN: [&str; 3] = ["/", "/healthz", "/metrics"];

/// Lets a request through, or answers 401 (see the module doc).
async fn auth(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    let open = reading && (guard.loopback || OPEN.contains(&req.uri().path()));
    if open {
        return next.run(req).await;
    }
    let Some(token) = &guard.token else {
        return unauthorized(
            "this request needs a bearer token, and none is configured: set [http] token or token_file",
        );
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same_secret(g, token) => next.run(req).await,
        Some(_) => unauthorized("wrong bearer token"),
        None => unauthorized("this request needs Authorization: Bearer TOKEN"),
    }
}

/// Compares a token in time that does not depend on where it differs.
fn same_secret(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

fn unauthorized(why: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response();
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
}
