//! Reloading lists while serving: build a new snapshot off the serving path,
//! then publish it with one atomic swap. A reload that fails (bad config,
//! unreadable list) keeps the rules in force and says why in the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::state::Snapshot;

/// Logs what a snapshot holds: one line per list, its bad lines as warnings.
pub fn log_loaded(snap: &Snapshot, took: Duration) {
    for l in &snap.lists {
        let s = &l.stats;
        tracing::info!(
            list = %l.spec.name,
            source = %l.spec.source.display(),
            format = s.format.map_or("?", |f| f.as_str()),
            entries = s.entries(),
            duplicates = s.duplicates,
            invalid = s.invalid,
            unsupported = s.unsupported,
            "list loaded"
        );
        for w in &s.warnings {
            tracing::warn!(list = %l.spec.name, "{}:{}: {}", l.spec.source.display(), w.line, w.message);
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
}

/// Re-reads the config and its lists; on success swaps them in.
pub fn reload(config_path: &Path, state: &ArcSwap<Snapshot>) -> Result<(), String> {
    let started = Instant::now();
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let snap = Snapshot::build(&config).map_err(|e| e.to_string())?;
    log_loaded(&snap, started.elapsed());
    state.store(Arc::new(snap));
    Ok(())
}

/// Reloads on every SIGHUP until the task is aborted.
pub async fn on_sighup(config_path: PathBuf, state: Arc<ArcSwap<Snapshot>>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload needs a restart");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading lists");
            let path = config_path.clone();
            let st = state.clone();
            let result = tokio::task::spawn_blocking(move || reload(&path, &st)).await;
            match result {
                Ok(Ok(())) => tracing::info!("reload done"),
                Ok(Err(e)) => tracing::error!("reload failed, keeping the lists in force: {e}"),
                Err(e) => tracing::error!("reload task failed, keeping the lists in force: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (config_path, state);
        std::future::pending::<()>().await;
    }
}
