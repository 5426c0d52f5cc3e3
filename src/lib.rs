//! Embargo: a forwarding DNS resolver that refuses seized, sanctioned and
//! threat domains, and says which list refused them.
//!
//! ```text
//!            config (TOML) ──► lists (parse, normalise, count) ──► matcher (DomainSet)
//!                                                                  policy  (pre-built answers)
//!                        access (allow/deny), limiter ──► state::Snapshot ◄──┘  (ArcSwap; reload swaps it)
//!                                                                │
//!  client ─► server (UDP/TCP) ─► Handler: access ─► query::parse ─► rate limit ─► local ─► lookup   ┤
//!                                           │                           │             │             ├─ blocked ─► policy.respond ─► client
//!                       REFUSED + EDE 18 ◄──┘ (or nothing)    nothing ◄─┘ (or TC=1)   └─► AA answer ├─ cached  ─► cache ─────────► client
//!                                                                                                   └─ else ────► upstream set ─► cname ─► cache ─► client
//!            local: [local_zones], [[records]] and hosts files, frozen with their answers (asked before the lists);
//!            zones: which [[forward]] set a forwarded name goes to (the most specific zone); upstream::Sets binds it to servers
//!            server: DoT, DoH and DoQ too (server::tls, https, quic): other ways in to the same Handler
//!            lookup: with [[groups]], the client's group (groups: one search of its address, or its client ID) masks the lists
//!            cname: a CNAME/DNAME chain through a listed name gets that list's block (as if asked)
//!            response_ip: then an A/AAAA in a listed network (state::Snapshot::nets) gets its list's block
//!            each decision ─► observe: a fixed-size QueryEvent on a bounded ring ─► thread ─► query log, hit report
//!            each query   ─► observe::metrics: the worker's own counter block ─► summed when http asks (/metrics, /api/*)
//!            canary: every [block] canary_interval, a task asks the first listener for each list's canary, as a client ─► /readyz
//! ```
//!
//! A query flows one way. `config`, `lists`, `matcher`, `policy`, `groups`,
//! `local`, `zones`, `access` and `query` are synchronous and know nothing of sockets; `server`, `upstream`,
//! `source`, `observe`, `http` and `reload` are the async edges. Start reading at [`matcher`],
//! then [`server`]'s handler.
//!
//! How lists arrive, also one way (an arrow reads "imports"):
//!
//! ```text
//!  reload ──► source {http, xfr, store} ──► config (ListSpec: a plain description) ──► lists (bytes → names)
//!    │                                   └────────────────────────────────────────────► lists
//!    └──► state (Snapshot::build) ──► config, lists, matcher, policy, local, zones
//! ```
//!
//! `config` says what a list is (name, source, format, provenance, action,
//! refresh, TSIG key); `lists` turns bytes into names and imports nothing
//! above `matcher`; `source` brings a remote list's bytes into the state
//! directory; `reload` drives it and swaps the rebuilt snapshot in.
//!
//! A room that holds more than one concept is a directory with one file
//! per concept, each opening with what it is for; no two files import
//! each other (`house` checks):
//!
//! ```text
//!  access/    rules.rs (CIDR allow/deny) · limiter.rs (RRL) · refusals.rs (the refused-client log) · prefix.rs
//!  server/handler/  mod.rs (Handler: steps 1-8 in one line, the hot path) · refusal.rs · notify.rs · local.rs (CNAME chase)
//!             cached.rs (step 7's check) · forward.rs (step 8) · response.rs (step 9: the upstream's answer) ─► shape.rs
//!  cache/     entry.rs · shard.rs · admission.rs (TinyLFU) · stale.rs (serve-stale, prefetch)
//!  matcher/   key.rs (the name) · build.rs (build, freeze) · mod.rs (DomainSet: the lookup)
//!  lists/     load.rs · ofac.rs · slot.rs (a list's number) · format/{domains,hosts,adblock}.rs, rpz/{zonefile}.rs
//!  upstream/  flights.rs · forward.rs · udp.rs · tcp.rs · tls.rs (DoT), https.rs (DoH) ─► secure.rs (trust, the kept connection)
//!  observe/   event.rs · recorder.rs · worker.rs (the observer thread) · querylog.rs · hits.rs · metrics.rs · series.rs
//!             dnstap/{framing, record, message, writer}.rs · alerts/{mod, limit}.rs (first hits to a webhook)
//! ```
//!
//! How `embargo run` starts: [`prepare`] binds every address and gives up
//! the privileges that took ([`privileges`]) while the process still has one
//! thread; then the runtime starts and [`serve`] loads the lists and serves,
//! as the unprivileged user.

pub mod access;
pub mod cache;
pub mod canary;
pub mod check;
pub mod cname;
pub mod config;
pub mod dnssec;
pub mod expiry;
#[doc(hidden)]
pub mod fuzzing;
pub mod groups;
pub mod http;
pub mod inspect;
pub mod lists;
pub mod local;
pub mod matcher;
pub mod observe;
pub mod policy;
pub mod privileges;
pub mod query;
pub mod reload;
pub mod response_ip;
pub mod server;
pub mod source;
pub mod state;
pub mod upstream;
pub mod wire;
pub mod zones;

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
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    #[error(transparent)]
    Observe(#[from] observe::Error),
    #[error(transparent)]
    Privileges(#[from] privileges::Error),
    #[error(transparent)]
    Http(#[from] http::Error),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the handler for `config` around an already-built snapshot, with
/// the observer (query log, hit report) that `[log]` and `[hits]` ask for.
pub fn handler(config: &Config, snapshot: Snapshot) -> Result<Arc<server::Handler>, RunError> {
    let slots = snapshot.slots.clone();
    let state = Arc::new(ArcSwap::from_pointee(snapshot));
    // `[upstream]`'s set; each `[[forward]]` set is built like it, from the
    // snapshot's table, and rebuilt when a reload changes it.
    let handler = server::Handler::new(
        state.clone(),
        cache::Cache::new(&config.cache),
        upstream::Upstream::new(&config.upstream)
            .with_failure_ttl(config.cache.servfail_ttl)
            .with_overdue(config.cache.stale_client_timeout),
    )
    .with_max_forwards(config.server.max_forwards)
    .with_dnssec(&config.upstream.dnssec);
    let servers = handler.upstreams().names().clone();
    let alerts = config
        .alerts
        .as_ref()
        .map(|a| observe::alerts::Alerts::start(a, state))
        .transpose()
        .map_err(observe::Error::from)?;
    let observer = observe::Observer::start(config, slots, servers, alerts)?;
    Ok(Arc::new(handler.with_observer(observer)))
}

/// Every socket `embargo run` serves, bound: DNS and HTTP.
pub struct Listeners {
    pub dns: server::Listeners,
    pub http: http::Listeners,
}

/// Everything `embargo run` does before it starts a thread: looks up
/// `[server] user`, binds every configured address (DNS and `[http]`, whose
/// token file is read now), then becomes that user and keeps no capability
/// (see [`privileges`]). Call it while the process has one thread, before
/// the tokio runtime: capabilities and `no_new_privs` are per thread, and
/// the threads started afterwards inherit them.
pub fn prepare(config: &Config) -> Result<Listeners, RunError> {
    let identity = privileges::resolve(&config.run_as)?;
    // The certificate and key are read here too, as whoever may read them
    // (root, for a key only root reads); a reload reads them as the
    // serving user, who needs read access to renew without a restart.
    let dns =
        server::Listeners::bind(&config.listen, &config.server)?.with_encrypted(&config.tls)?;
    let http = http::Listeners::bind(&config.http)?;
    privileges::drop(config, identity.as_ref())?;
    Ok(Listeners { dns, http })
}

/// [`prepare`], then [`serve`]. Changing user needs a single-threaded
/// process, so a program that starts threads first (any tokio runtime but
/// the current-thread one) calls the two itself, as `embargo run` does.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let listeners = prepare(&config)?;
    serve(config, listeners, shutdown).await
}

/// Loads the lists, serves `listeners` until `shutdown` completes, keeping
/// the lists current meanwhile (SIGHUP, file changes, remote refreshes: see
/// [`reload`]). Everything here runs as whoever [`prepare`] left: the lists
/// are read, and the pid file written, as the serving user.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // Whatever wakes the reload loop (a file changed, SIGHUP) is armed
    // before the lists are read and before the pid file says where to send
    // SIGHUP: a change from now on is never missed (see `reload`).
    let control = Arc::new(reload::Control::default());
    control.arm(&config);
    let started = std::time::Instant::now();
    let cfg = config.clone();
    let snapshot = tokio::task::spawn_blocking(move || Snapshot::build(&cfg))
        .await
        .map_err(std::io::Error::other)??;
    reload::log_loaded(&snapshot, started.elapsed());
    reload::log_warnings(&config);
    let handler = handler(&config, snapshot)?;
    let server = server::Server::new(listeners.dns, &config.server, handler.clone());
    let pid_file = reload::pid_file(&config);
    let wrote_pid = source::store::create_dir(&config.state_dir)
        .and_then(|()| source::write_atomic(&pid_file, std::process::id().to_string().as_bytes()));
    if let Err(e) = &wrote_pid {
        tracing::warn!(path = %pid_file.display(), error = %e, "cannot write the pid file: `embargo reload` will not find this server");
    }
    if let Some(certs) = server.certificates() {
        tokio::spawn(certs.follow(control.progress()));
    }
    // The canaries ask the first listener, as a client would (`canary`).
    let canaries = Arc::new(canary::Canaries::default());
    let canary = server.local_addrs().first().map(|&to| {
        tokio::spawn(canary::watch(
            config.block.canary_interval,
            config.upstream.timeout + std::time::Duration::from_secs(1),
            to,
            handler.clone(),
            canaries.clone(),
            Some(control.progress()),
        ))
    });
    let api = http::Api::new(handler.clone(), server.stats(), control.clone())
        .with_canaries(canaries)
        .with_log(&config.log);
    let http = tokio::spawn(listeners.http.serve(api));
    let reloader = tokio::spawn(reload::maintain(
        config,
        handler.state().clone(),
        handler.notify_targets().clone(),
        control,
    ));
    let result = server.run(shutdown).await;
    reloader.abort();
    http.abort();
    if let Some(c) = canary {
        c.abort();
    }
    if wrote_pid.is_ok() {
        let _ = std::fs::remove_file(&pid_file);
    }
    Ok(result?)
}
