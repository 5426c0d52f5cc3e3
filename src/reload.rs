//! Keeping the rules current while serving: every trigger (SIGHUP, a change
//! to a watched file, a remote list refreshed, `embargo reload`) pokes one
//! reload loop, which re-reads the config and lists off the serving path,
//! builds a new snapshot (on a thread of its own at the lowest CPU
//! priority: [`source::background`]) and publishes it with one atomic swap.
//! Queries in flight keep the snapshot they loaded; none waits, none is
//! dropped.
//!
//! A reload that fails (bad config, unreadable list) keeps the rules in
//! force and says why. Settings that live in sockets, the handler or the
//! observer (`[server]`, `upstream`, `cache`, `log`, `hits`, `[http]`) need
//! a restart; a reload that sees them changed says so.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, ListSpec, Source, XfrSource};
use crate::source::xfr::{self, NotifyTargets};
use crate::source::{self, http};
use crate::state::Snapshot;

/// Triggers closer together than this are one reload.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Logs what a snapshot holds: one line per list, its bad lines as warnings.
pub fn log_loaded(snap: &Snapshot, took: Duration) {
    for l in &snap.lists {
        let s = &l.stats;
        tracing::info!(
            list = %l.spec.name,
            source = %l.spec.source,
            format = s.format.map_or("?", |f| f.as_str()),
            entries = s.entries(),
            duplicates = s.duplicates,
            invalid = s.invalid,
            unsupported = s.unsupported,
            "list loaded"
        );
        for w in &s.warnings {
            tracing::warn!(list = %l.spec.name, "{}:{}: {}", l.spec.path.display(), w.line, w.message);
        }
        let hidden = (s.invalid + s.unsupported).saturating_sub(s.warnings.len() as u64);
        if hidden > 0 {
            tracing::warn!(list = %l.spec.name, "{hidden} more bad lines not shown");
        }
    }
    for a in &snap.allow {
        for w in &a.stats.warnings {
            tracing::warn!("allow {}:{}: {}", a.source, w.line, w.message);
        }
    }
    tracing::info!(
        names = snap.set.len(),
        bytes = snap.set.heap_bytes(),
        ms = took.as_millis() as u64,
        "rules loaded"
    );
    if let Some(l) = &snap.limiter {
        let s = l.settings();
        tracing::info!(
            responses_per_second = s.responses_per_second,
            window = s.window,
            slip = s.slip,
            ipv4_prefix = s.ipv4_prefix,
            ipv6_prefix = s.ipv6_prefix,
            prefixes = l.slots(),
            bytes = l.heap_bytes(),
            "rate limit on (UDP, per client prefix)"
        );
    }
}

/// Logs the config's warnings (a public `allow` with no rate limit...).
pub fn log_warnings(config: &Config) {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
}

/// Re-reads the config and its lists; on success swaps them in and returns
/// the new config.
pub fn reload(config_path: &Path, state: &ArcSwap<Snapshot>) -> Result<Config, String> {
    let started = Instant::now();
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    // Lists that stay keep their slots, so events recorded before the swap
    // still name the right list after it; the rate limiter keeps what it
    // counted if its settings stay.
    let snap = Snapshot::rebuild(&config, &state.load()).map_err(|e| e.to_string())?;
    log_loaded(&snap, started.elapsed());
    log_warnings(&config);
    state.store(Arc::new(snap));
    Ok(config)
}

/// The pid file `embargo reload` signals.
pub fn pid_file(config: &Config) -> PathBuf {
    config.state_dir.join("embargo.pid")
}

/// The reload loop's handle for those outside it: a way to ask for a
/// reload and wait for it (`POST /api/reload`), and the count of reloads
/// by result (the metrics).
#[derive(Debug)]
pub struct Control {
    poke: Arc<Notify>,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Reloads started and finished, and how the last one ended.
    progress: watch::Sender<Progress>,
}

/// Where the reload loop is: reloads are numbered from 1 as they start,
/// and `finished` is the number of the last one done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub started: u64,
    pub finished: u64,
    /// `Err(why)` when the last finished reload failed.
    pub last: Result<(), String>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            poke: Arc::new(Notify::new()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            progress: watch::Sender::new(Progress {
                started: 0,
                finished: 0,
                last: Ok(()),
            }),
        }
    }
}

impl Control {
    /// Asks for a reload; returns at once.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Asks for a reload and waits, at most `limit`, for one that started
    /// after the request to finish; `None` if it did not finish in time.
    pub async fn reload(&self, limit: Duration) -> Option<Result<(), String>> {
        let mut rx = self.progress.subscribe();
        // A reload already under way may have read the files before this
        // request: wait for the next one, which the poke makes happen.
        let after = rx.borrow_and_update().started;
        self.poke();
        let done = rx.wait_for(|p| p.finished > after);
        match tokio::time::timeout(limit, done).await {
            Ok(Ok(p)) => Some(p.last.clone()),
            _ => None,
        }
    }

    /// Follows the reloads as they finish (the certificate reloads with them).
    pub fn finished(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Reloads that succeeded and that failed since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Runs the reload loop and everything that triggers it, until aborted.
/// `control` is how others ask for a reload and count them; `sighup` is
/// the signal's stream, made before the pid file was written.
pub async fn maintain(
    config: Config,
    state: Arc<ArcSwap<Snapshot>>,
    notify: Arc<NotifyTargets>,
    control: Arc<Control>,
    sighup: Sighup,
) {
    let poke = control.poke.clone();
    let _sighup = tokio::spawn(on_sighup(sighup, poke.clone()));
    let mut helpers = Helpers::start(&config, &poke, &notify);
    let mut current = config;
    loop {
        poke.notified().await;
        // Let a burst of triggers (an editor's save, SIGHUP after an mv,
        // several lists) settle, then take any poke that came meanwhile.
        tokio::time::sleep(DEBOUNCE).await;
        let _ = tokio::time::timeout(Duration::ZERO, poke.notified()).await;
        let path = current.path.clone();
        let st = state.clone();
        let number = control.progress.borrow().started + 1;
        control.progress.send_modify(|p| p.started = number);
        // Reading the lists and building the matcher takes a second or more
        // for a million names: on a thread of its own at the lowest
        // priority, so that neither a runtime worker (forwarded answers)
        // nor, on a busy core, the UDP workers wait for it.
        let result = source::background::run("embargo-reload", move || reload(&path, &st)).await;
        let last = match &result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.clone()),
            Err(e) => Err(e.to_string()),
        };
        let counter = if last.is_ok() {
            &control.ok
        } else {
            &control.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        control.progress.send_modify(|p| {
            p.finished = number;
            p.last = last;
        });
        match result {
            Ok(Ok(config)) => {
                tracing::info!("reload done");
                warn_restart_needed(&current, &config);
                if helpers.inputs != Helpers::inputs(&config) {
                    drop(helpers);
                    notify.clear();
                    helpers = Helpers::start(&config, &poke, &notify);
                }
                current = config;
            }
            Ok(Err(e)) => tracing::error!("reload failed, keeping the lists in force: {e}"),
            Err(e) => tracing::error!("reload task failed, keeping the lists in force: {e}"),
        }
    }
}

fn warn_restart_needed(old: &Config, new: &Config) {
    if old.listen != new.listen
        || old.run_as.names() != new.run_as.names()
        || old.server != new.server
        || old.upstream != new.upstream
        || old.cache != new.cache
        || old.http != new.http
    {
        tracing::warn!(
            "[server], [upstream], [cache] and [http] changes take effect after a restart"
        );
    }
    if old.log != new.log || old.hits != new.hits {
        tracing::warn!("[log] and [hits] changes take effect after a restart");
    }
    if old.dnstap != new.dnstap {
        tracing::warn!("[dnstap] changes take effect after a restart");
    }
}

/// The file watcher and the remote-list refreshers of one config.
struct Helpers {
    inputs: Vec<String>,
    _watcher: Option<notify::RecommendedWatcher>,
    fetchers: Vec<JoinHandle<()>>,
}

impl Drop for Helpers {
    fn drop(&mut self) {
        for f in &self.fetchers {
            f.abort();
        }
    }
}

impl Helpers {
    /// What the helpers depend on: when this changes, they are restarted.
    fn inputs(config: &Config) -> Vec<String> {
        config
            .lists
            .iter()
            .map(|l| format!("{}|{}|{:?}", l.name, l.source, l.fetch))
            .chain(config.allow_files.iter().map(|p| p.display().to_string()))
            .collect()
    }

    fn start(config: &Config, poke: &Arc<Notify>, notify: &NotifyTargets) -> Self {
        let watcher = watch_files(config, poke.clone())
            .map_err(|e| tracing::warn!(error = %e, "cannot watch list files; reload with SIGHUP"))
            .ok();
        let mut fetchers = Vec::new();
        for spec in &config.lists {
            if let Source::Axfr(src) = &spec.source {
                let wake = Arc::new(Notify::new());
                notify.register(&src.zone, src.primary.ip(), wake.clone());
                fetchers.push(tokio::spawn(keep_transferred(
                    spec.clone(),
                    src.clone(),
                    wake,
                    poke.clone(),
                )));
            }
        }
        if config
            .lists
            .iter()
            .any(|l| matches!(l.source, Source::Http(_)))
        {
            match http::client() {
                Ok(client) => {
                    for spec in &config.lists {
                        if let Source::Http(url) = &spec.source {
                            fetchers.push(tokio::spawn(keep_fresh(
                                client.clone(),
                                spec.clone(),
                                url.clone(),
                                poke.clone(),
                            )));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot create the HTTP client: remote lists stay as they are")
                }
            }
        }
        Self {
            inputs: Self::inputs(config),
            _watcher: watcher,
            fetchers,
        }
    }
}

/// Refreshes one remote list on its timer, reloading when it changed.
async fn keep_fresh(client: reqwest::Client, spec: ListSpec, url: String, poke: Arc<Notify>) {
    // First refresh at once unless the copy on disk is recent enough.
    let meta = source::read_meta(&spec.path);
    let age = meta
        .checked_at
        .and_then(|t| std::time::SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(t)))
        .and_then(|t| t.elapsed().ok());
    let mut wait = match age {
        Some(age) if spec.path.exists() && meta.url == url => {
            spec.fetch.refresh.saturating_sub(age)
        }
        _ => Duration::ZERO,
    };
    loop {
        tokio::time::sleep(wait).await;
        wait = spec.fetch.refresh;
        match http::refresh(&client, &spec, &url, false).await {
            source::Outcome::Updated { entries } => {
                tracing::info!(list = %spec.name, entries, "list downloaded");
                poke.notify_one();
            }
            source::Outcome::NotModified => tracing::debug!(list = %spec.name, "list not modified"),
            source::Outcome::Refused(why) => {
                tracing::error!(list = %spec.name, "new version refused, keeping the last good copy: {why}")
            }
            source::Outcome::Failed(why) => {
                tracing::error!(list = %spec.name, "refresh failed, keeping the last good copy: {why}");
                // Try again sooner than a full period, but not in a tight loop.
                wait = (spec.fetch.refresh / 8)
                    .max(Duration::from_secs(30))
                    .min(spec.fetch.refresh);
            }
        }
    }
}

/// Keeps a zone-transfer list current: at start, on its refresh timer, and
/// whenever its primary sends a NOTIFY.
async fn keep_transferred(spec: ListSpec, src: XfrSource, wake: Arc<Notify>, poke: Arc<Notify>) {
    loop {
        match xfr::refresh(&spec, &src, false).await {
            source::Outcome::Updated { entries } => {
                tracing::info!(list = %spec.name, entries, "zone transferred");
                poke.notify_one();
            }
            source::Outcome::NotModified => {
                tracing::debug!(list = %spec.name, "zone serial unchanged")
            }
            source::Outcome::Refused(why) => {
                tracing::error!(list = %spec.name, "new version of the zone refused, keeping the last good copy: {why}")
            }
            source::Outcome::Failed(why) => {
                tracing::error!(list = %spec.name, "zone refresh failed, keeping the last good copy: {why}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(spec.fetch.refresh) => {}
            _ = wake.notified() => tracing::info!(list = %spec.name, zone = %src.zone, "NOTIFY from the primary"),
        }
    }
}

/// Watches the config file and every local list and allow file. Watching
/// their directories catches editors and `mv` that replace the file.
fn watch_files(config: &Config, poke: Arc<Notify>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut files: HashSet<PathBuf> = HashSet::new();
    files.insert(config.path.clone());
    for l in &config.lists {
        if let Source::File(p) = &l.source {
            files.insert(p.clone());
        }
    }
    files.extend(config.allow_files.iter().cloned());
    // The encrypted listeners' certificate: renewed files are served without a restart.
    files.extend(
        [&config.tls.certificate, &config.tls.private_key]
            .into_iter()
            .flatten()
            .cloned(),
    );
    let files: HashSet<PathBuf> = files.iter().map(|p| absolute(p)).collect();
    let dirs: HashSet<PathBuf> = files
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let watched = files.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event.paths.iter().any(|p| watched.contains(&absolute(p)))
        {
            poke.notify_one();
        }
    })?;
    for d in dirs {
        if let Err(e) = watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch");
        }
    }
    Ok(watcher)
}

/// The path with its directory resolved (`..`, symlinks), so that a list
/// named `config/../lists/x.txt` and the watcher's event for it compare equal.
fn absolute(p: &Path) -> PathBuf {
    let canonical_dir = p
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .and_then(|d| d.canonicalize().ok());
    match (canonical_dir, p.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
    }
}

/// SIGHUP, listened for from the moment this is made. [`crate::serve`]
/// makes it before it writes the pid file: until a handler is installed, a
/// SIGHUP (what `embargo reload` and systemd's `ExecReload=` send once the
/// pid file is there) ends the process, and one that comes before the
/// stream exists is not seen by it.
pub struct Sighup {
    #[cfg(unix)]
    stream: Option<tokio::signal::unix::Signal>,
}

impl Sighup {
    /// Installs the handler now. Must run inside the runtime.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let stream = signal(SignalKind::hangup())
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; reload needs a restart");
                })
                .ok();
            Self { stream }
        }
        #[cfg(not(unix))]
        Self {}
    }
}

/// Pokes the reload loop on every SIGHUP.
async fn on_sighup(sighup: Sighup, poke: Arc<Notify>) {
    #[cfg(unix)]
    {
        let Some(mut hup) = sighup.stream else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            poke.notify_one();
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (sighup, poke);
        std::future::pending::<()>().await;
    }
}
