//! Keeping the rules current while serving: every trigger (SIGHUP, a change
//! to a watched file, a remote list refreshed, `embargo reload`) pokes one
//! reload loop, which re-reads the config and lists off the serving path,
//! builds a new snapshot (on a thread of its own at the lowest CPU
//! priority: [`source::background`]) and publishes it with one atomic swap.
//! Queries in flight keep the snapshot they loaded; none waits, none is
//! dropped.
//!
//! The triggers are armed before anything they watch is read ([`Control::arm`],
//! at start): the file watcher before the lists load, SIGHUP before the pid
//! file tells `embargo reload` where to send it. An edit made at any time
//! after the server started reading is reloaded, including one made while
//! a reload runs (that reload may have read the file before it: another
//! follows) and one the kernel's event queue lost (overflow: reload).
//!
//! A reload that fails (bad config, unreadable list) keeps the rules in
//! force and says why. Settings that live in sockets, the handler or the
//! observer (`[server]`, `upstream`, `cache`, `log`, `hits`, `[http]`) need
//! a restart; a reload that sees them changed says so. `[[forward]]` does
//! not: its zones swap with the snapshot, and the first forward under the
//! new one builds the sets it names (`upstream::Sets`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
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
    if !snap.local.is_empty() || !snap.forward_zones.is_empty() {
        tracing::info!(
            local_names = snap.local.len(),
            forwarded_zones = snap.forward_zones.len(),
            "local zones, records and forwarded zones loaded"
        );
    }
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
    swap_in(config, state, started)
}

/// [`reload`] for the reload loop: the watch is widened to the files the
/// new config names before they are read, so that an edit of a list it
/// adds is seen even if it comes before the reload is done.
fn reload_watched(
    config_path: &Path,
    state: &ArcSwap<Snapshot>,
    control: &Control,
) -> Result<Config, String> {
    let started = Instant::now();
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    control.cover(&config);
    swap_in(config, state, started)
}

/// Builds the snapshot of `config` and swaps it in.
fn swap_in(config: Config, state: &ArcSwap<Snapshot>, started: Instant) -> Result<Config, String> {
    // Lists that stay keep their slots, so events recorded before the swap
    // still name the right list after it; the rate limiter keeps what it
    // counted if its settings stay.
    let snap = Snapshot::rebuild(&config, &state.load()).map_err(|e| e.to_string())?;
    log_loaded(&snap, started.elapsed());
    log_warnings(&config);
    let snap = Arc::new(snap);
    state.store(snap.clone());
    // What the swap changed in each list, on this (background) thread.
    crate::observe::history::record(&config.history, &snap);
    Ok(config)
}

/// The pid file `embargo reload` signals.
pub fn pid_file(config: &Config) -> PathBuf {
    config.state_dir.join("embargo.pid")
}

/// The reload loop's handle for those outside it: a way to ask for a
/// reload and wait for it (`POST /api/reload`), the count of reloads by
/// result (the metrics), and the triggers, armed before the loop runs
/// ([`Control::arm`]).
#[derive(Debug)]
pub struct Control {
    poke: Arc<Notify>,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Reloads started and finished, and how the last one ended.
    progress: watch::Sender<Progress>,
    /// Whether [`Control::arm`] ran.
    armed: AtomicBool,
    /// The file watcher, from [`Control::arm`] on (`None` if it could not
    /// start: SIGHUP still reloads).
    watch: Mutex<Option<Watch>>,
    /// SIGHUP, listened for from [`Control::arm`] on; [`maintain`] takes it.
    #[cfg(unix)]
    sighup: Mutex<Option<tokio::signal::unix::Signal>>,
    /// Where the lists' history of the config in force is kept
    /// (`/api/history` reads it); set by [`maintain`].
    history: RwLock<Option<crate::config::HistoryConfig>>,
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
            armed: AtomicBool::new(false),
            watch: Mutex::new(None),
            #[cfg(unix)]
            sighup: Mutex::new(None),
            history: RwLock::new(None),
        }
    }
}

/// The guarded value, even if a thread panicked holding it: what is kept
/// here (a watcher, a signal stream) stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Control {
    /// Arms what makes the reload loop run, before it runs: the file
    /// watcher, on the config file and every local list and allow file of
    /// `config`, and the SIGHUP handler. Call it from within the runtime,
    /// before the lists are read and before the pid file is written, as
    /// [`crate::serve`] does; [`maintain`] calls it if no one did, and a
    /// second call does nothing.
    ///
    /// From here on an edit wakes the reload loop, even one made before
    /// the loop first runs (the wake-up waits for it), and `embargo reload`
    /// finds a server that handles SIGHUP (whose default ends a process).
    /// The config file itself was read earlier (`embargo run` reads it,
    /// then drops its privileges, and only then may a thread start, the
    /// watcher's): it is read again now, and if it changed meanwhile, a
    /// reload is asked for.
    pub fn arm(&self, config: &Config) {
        if self.armed.swap(true, Ordering::SeqCst) {
            return;
        }
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(hup) => *lock(&self.sighup) = Some(hup),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGHUP; reload needs a file change or POST /api/reload")
                }
            }
        }
        match Watch::start(self.poke.clone()) {
            Ok(mut w) => {
                w.cover(config);
                *lock(&self.watch) = Some(w);
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch list files; reload with SIGHUP"),
        }
        if edited_since(config) {
            tracing::info!(path = %config.path.display(), "the config changed as the server started: reloading");
            self.poke();
        }
    }

    /// Widens the watch to the files `config` reads: call it before they
    /// are read.
    fn cover(&self, config: &Config) {
        if let Some(w) = lock(&self.watch).as_mut() {
            w.cover(config);
        }
    }

    /// Narrows the watch to the files of `config`, now in force.
    fn narrow(&self, config: &Config) {
        if let Some(w) = lock(&self.watch).as_mut() {
            w.narrow(config);
        }
    }

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

    /// Where the reload loop is, to wait on: a reload's number once it
    /// starts, and its result once it finishes. A reload reads the files
    /// after its start, so one that started after an edit was seen by the
    /// watcher has read that edit.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Where the lists' history of the config in force is kept; `None`
    /// before the reload loop runs.
    pub fn history(&self) -> Option<crate::config::HistoryConfig> {
        self.history
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_history(&self, config: &Config) {
        *self.history.write().unwrap_or_else(PoisonError::into_inner) =
            Some(config.history.clone());
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
/// `control` is how others ask for a reload and count them.
pub async fn maintain(
    config: Config,
    state: Arc<ArcSwap<Snapshot>>,
    notify: Arc<NotifyTargets>,
    control: Arc<Control>,
) {
    control.arm(&config);
    let poke = control.poke.clone();
    #[cfg(unix)]
    let _sighup = lock(&control.sighup)
        .take()
        .map(|hup| Aborting(tokio::spawn(on_sighup(hup, poke.clone()))));
    let mut helpers = Helpers::start(&config, &poke, &notify);
    // The lists loaded at start, into the lists' history (a restart with
    // the same content records nothing), off the serving threads.
    control.set_history(&config);
    let (history, snap) = (config.history.clone(), state.load_full());
    let _ = source::background::run("embargo-history", move || {
        crate::observe::history::record(&history, &snap);
    })
    .await;
    let mut current = config;
    loop {
        poke.notified().await;
        // Let a burst of triggers (an editor's save, SIGHUP after an mv,
        // several lists) settle, then take any poke that came meanwhile.
        tokio::time::sleep(DEBOUNCE).await;
        let _ = tokio::time::timeout(Duration::ZERO, poke.notified()).await;
        let path = current.path.clone();
        let st = state.clone();
        let ctl = control.clone();
        let number = control.progress.borrow().started + 1;
        control.progress.send_modify(|p| p.started = number);
        // Reading the lists and building the matcher takes a second or more
        // for a million names: on a thread of its own at the lowest
        // priority, so that neither a runtime worker (forwarded answers)
        // nor, on a busy core, the UDP workers wait for it.
        let result =
            source::background::run("embargo-reload", move || reload_watched(&path, &st, &ctl))
                .await;
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
                control.narrow(&config);
                control.set_history(&config);
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
    if old.block.canary_interval != new.block.canary_interval {
        tracing::warn!("[block] canary_interval changes take effect after a restart");
    }
    if old.dnstap != new.dnstap {
        tracing::warn!("[dnstap] changes take effect after a restart");
    }
    if old.alerts != new.alerts {
        tracing::warn!("[alerts] changes take effect after a restart");
    }
}

/// A task that ends when this is dropped (when the reload loop is aborted).
struct Aborting(JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The remote-list refreshers of one config.
struct Helpers {
    inputs: Vec<String>,
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
            .map(|l| {
                format!(
                    "{}|{}|{:?}|{:?}|{:?}",
                    l.name, l.source, l.fetch, l.signature, l.expires
                )
            })
            .collect()
    }

    fn start(config: &Config, poke: &Arc<Notify>, notify: &NotifyTargets) -> Self {
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
        // Each list's expiry: a rebuild without it at that moment.
        if config.lists.iter().any(|l| l.expires.is_some()) {
            fetchers.push(tokio::spawn(crate::expiry::watch(
                config.lists.clone(),
                poke.clone(),
            )));
        }
        Self {
            inputs: Self::inputs(config),
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
            source::Outcome::BadSignature(why) => {
                tracing::error!(list = %spec.name, "new version not loaded, its signature is missing or wrong; keeping the last good copy: {why}");
                wait = retry_soon(&spec);
            }
            source::Outcome::Failed(why) => {
                tracing::error!(list = %spec.name, "refresh failed, keeping the last good copy: {why}");
                wait = retry_soon(&spec);
            }
        }
    }
}

/// When to try a failed refresh again: sooner than a full period, but not
/// in a tight loop.
fn retry_soon(spec: &ListSpec) -> Duration {
    (spec.fetch.refresh / 8)
        .max(Duration::from_secs(30))
        .min(spec.fetch.refresh)
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
            source::Outcome::Failed(why) | source::Outcome::BadSignature(why) => {
                tracing::error!(list = %spec.name, "zone refresh failed, keeping the last good copy: {why}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(spec.fetch.refresh) => {}
            _ = wake.notified() => tracing::info!(list = %spec.name, zone = %src.zone, "NOTIFY from the primary"),
        }
    }
}

/// The file watcher. It watches directories, not files, so that editors
/// and `mv` that replace a file are seen, and wakes the reload loop for a
/// change to one of the files it was given: the config file, the local
/// lists, the allow files and the hosts files. Those of a new config are added before the
/// reload reads them ([`Watch::cover`]), those it dropped removed after
/// ([`Watch::narrow`]); the watcher itself lives as long as the server, so
/// no change falls between an old watcher and a new one.
#[derive(Debug)]
struct Watch {
    watcher: notify::RecommendedWatcher,
    /// The directories watched.
    dirs: HashSet<PathBuf>,
    /// The files whose changes count (see [`absolute`]), read by the
    /// watcher's thread at each event. Never held while waiting for that
    /// thread (`watch`, `unwatch`), which may be waiting for it.
    files: Arc<RwLock<HashSet<PathBuf>>>,
}

impl Watch {
    fn start(poke: Arc<Notify>) -> notify::Result<Self> {
        let files: Arc<RwLock<HashSet<PathBuf>>> = Arc::default();
        let watched = files.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let watched = watched.read().unwrap_or_else(PoisonError::into_inner);
            if wants_reload(&res, &watched) {
                poke.notify_one();
            }
        })?;
        Ok(Self {
            watcher,
            dirs: HashSet::new(),
            files,
        })
    }

    /// Adds the files `config` reads, and their directories.
    fn cover(&mut self, config: &Config) {
        use notify::Watcher;
        let files = watched_files(config);
        let dirs = parents(&files);
        self.files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(files);
        for d in dirs {
            if self.dirs.contains(&d) {
                continue;
            }
            match self.watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(d);
                }
                Err(e) => tracing::warn!(dir = %d.display(), error = %e, "cannot watch"),
            }
        }
    }

    /// Keeps only the files `config` reads, and their directories.
    fn narrow(&mut self, config: &Config) {
        use notify::Watcher;
        let files = watched_files(config);
        let dirs = parents(&files);
        *self.files.write().unwrap_or_else(PoisonError::into_inner) = files;
        for d in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(d);
        }
        self.dirs.retain(|d| dirs.contains(d));
    }
}

/// The files a reload reads from disk besides remote copies: the config
/// file, the local lists, the allow files and the hosts files (see
/// [`absolute`]).
fn watched_files(config: &Config) -> HashSet<PathBuf> {
    let mut files: HashSet<PathBuf> = HashSet::new();
    files.insert(config.path.clone());
    for l in &config.lists {
        if let Source::File(p) = &l.source {
            files.insert(p.clone());
        }
    }
    files.extend(config.allow_files.iter().cloned());
    // The hosts files of [local_zones]: their records reload with the rest.
    files.extend(config.local.hosts_files.iter().cloned());
    // The encrypted listeners' certificate: renewed files are served without a restart.
    files.extend(
        [&config.tls.certificate, &config.tls.private_key]
            .into_iter()
            .flatten()
            .cloned(),
    );
    files.iter().map(|p| absolute(p)).collect()
}

fn parents(files: &HashSet<PathBuf>) -> HashSet<PathBuf> {
    files
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect()
}

/// Whether the config file now says otherwise than `config`, which was
/// read from it before the watcher was armed: an edit in between, which
/// no file event reports.
fn edited_since(config: &Config) -> bool {
    match Config::load(&config.path) {
        // `Config` has no `PartialEq` (not all its parts have one); its
        // `Debug` form shows every field, so comparing that needs no list
        // of fields kept in step with it.
        Ok(now) => format!("{now:?}") != format!("{config:?}"),
        // Gone or broken since: the reload says why.
        Err(_) => true,
    }
}

/// Whether the watcher's report `res` calls for a reload: a change to one
/// of the `watched` files, or a report that changes may have been lost
/// (the kernel's event queue overflowed, or the watcher failed), which
/// names no file.
fn wants_reload(res: &notify::Result<notify::Event>, watched: &HashSet<PathBuf>) -> bool {
    match res {
        Err(_) => true,
        Ok(event) if event.need_rescan() => true,
        Ok(event) => {
            !matches!(event.kind, notify::EventKind::Access(_))
                && event.paths.iter().any(|p| watched.contains(&absolute(p)))
        }
    }
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

/// Pokes the reload loop on every SIGHUP (listened for since [`Control::arm`]).
#[cfg(unix)]
async fn on_sighup(mut hup: tokio::signal::unix::Signal, poke: Arc<Notify>) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        poke.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, Event, EventKind, Flag, ModifyKind};

    /// Issue 21: when the kernel's queue of file events overflows, which
    /// files changed is lost and the watcher reports a rescan that names no
    /// path; a watcher error may have lost events too. Either may hide an
    /// edit, so either reloads: a reload too many costs a rebuild, one too
    /// few keeps stale rules until the next edit.
    #[test]
    fn r21_an_overflowed_event_queue_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("embargo.toml");
        let watched: HashSet<PathBuf> = [absolute(&config)].into();
        let event = |kind, path: &Path| Ok(Event::new(kind).add_path(path.to_path_buf()));

        let overflow = Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan));
        assert!(wants_reload(&overflow, &watched), "a rescan");
        let error = Err(notify::Error::generic("inotify read failed"));
        assert!(wants_reload(&error, &watched), "a watcher error");

        // The rest as before: an edit of a watched file, not a read of it
        // nor an edit of another file in its directory.
        let edit = event(EventKind::Modify(ModifyKind::Any), &config);
        assert!(wants_reload(&edit, &watched));
        let read = event(EventKind::Access(AccessKind::Any), &config);
        assert!(!wants_reload(&read, &watched));
        let other = event(
            EventKind::Modify(ModifyKind::Any),
            &dir.path().join("queries.log"),
        );
        assert!(!wants_reload(&other, &watched));
    }
}
