//! Embargo: a forwarding DNS resolver that refuses seized, sanctioned and
//! threat domains, and says which list refused them.
//!
//! ```text
//!            config (TOML) ──► lists (parse, normalise, count) ──► matcher (DomainSet)
//!                                                                  policy  (pre-built answers)
//!                                                       state::Snapshot ◄──┘  (ArcSwap; reload swaps it)
//!                                                                │
//!  client ─► server (UDP/TCP) ─► query::parse ─► Handler ─ lookup ┤
//!                                                                 ├─ blocked ─► policy.respond ─► client
//!                                                                 ├─ cached  ─► cache ─────────► client
//!                                                                 └─ else ────► upstream ─► cache ─► client
//! ```
//!
//! A query flows one way. `config`, `lists`, `matcher`, `policy` and `query`
//! are synchronous and know nothing of sockets; `server`, `upstream`,
//! `source` and `reload` are the async edges. Start reading at [`matcher`],
//! then [`server`]'s handler.
//!
//! How lists arrive, also one way (an arrow reads "imports"):
//!
//! ```text
//!  reload ──► source {http, xfr, store} ──► config (ListSpec: a plain description) ──► lists (bytes → names)
//!    │                                   └────────────────────────────────────────────► lists
//!    └──► state (Snapshot::build) ──► config, lists, matcher, policy
//! ```
//!
//! `config` says what a list is (name, source, format, provenance, action,
//! refresh, TSIG key); `lists` turns bytes into names and imports nothing
//! above `matcher`; `source` brings a remote list's bytes into the state
//! directory; `reload` drives it and swaps the rebuilt snapshot in.

pub mod cache;
pub mod config;
pub mod lists;
pub mod matcher;
pub mod policy;
pub mod query;
pub mod reload;
pub mod server;
pub mod source;
pub mod state;
pub mod upstream;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use config::Config;
pub use state::Snapshot;

/// Everything that can stop `embargo run` from serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Build(#[from] state::BuildError),
    #[error(transparent)]
    Bind(#[from] server::BindError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the handler for `config` around an already-built snapshot.
pub fn handler(config: &Config, snapshot: Snapshot) -> Arc<server::Handler> {
    Arc::new(server::Handler::new(
        Arc::new(ArcSwap::from_pointee(snapshot)),
        cache::Cache::new(config.cache_size),
        upstream::Upstream::new(&config.upstream),
    ))
}

/// Loads the lists, binds the configured addresses and serves until
/// `shutdown` completes, keeping the lists current meanwhile (SIGHUP, file
/// changes, remote refreshes: see [`reload`]).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let started = std::time::Instant::now();
    let cfg = config.clone();
    let snapshot = tokio::task::spawn_blocking(move || Snapshot::build(&cfg))
        .await
        .map_err(std::io::Error::other)??;
    reload::log_loaded(&snapshot, started.elapsed());
    let handler = handler(&config, snapshot);
    let server = server::Server::bind(&config.listen, handler.clone())?;
    let pid_file = reload::pid_file(&config);
    let wrote_pid = std::fs::create_dir_all(&config.state_dir)
        .and_then(|()| source::write_atomic(&pid_file, std::process::id().to_string().as_bytes()));
    if let Err(e) = &wrote_pid {
        tracing::warn!(path = %pid_file.display(), error = %e, "cannot write the pid file: `embargo reload` will not find this server");
    }
    let reloader = tokio::spawn(reload::maintain(
        config,
        handler.state().clone(),
        handler.notify_targets().clone(),
    ));
    let result = server.run(shutdown).await;
    reloader.abort();
    if wrote_pid.is_ok() {
        let _ = std::fs::remove_file(&pid_file);
    }
    Ok(result?)
}
