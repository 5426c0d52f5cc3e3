//! The state directory: the last good copy of every remote list, its
//! metadata, and the atomic writes that keep both whole through crashes and
//! cut connections.
//!
//! ```text
//!  STATE/lists/NAME.list        the copy in use (plain list text or zone-file text)
//!  STATE/lists/NAME.meta.json   validators (ETag, Last-Modified, SOA serial), counts, last result
//!  STATE/embargo.pid            the running server, for `embargo reload`
//! ```

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Outcome;

/// What is remembered about a list's downloads, next to the copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchMeta {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When the copy in use was downloaded (seconds since the epoch).
    pub fetched_at: Option<u64>,
    /// When the source was last asked.
    pub checked_at: Option<u64>,
    /// What the last attempt gave, for `embargo lists` and the log.
    pub last_result: String,
    /// Names in the copy in use.
    pub entries: u64,
    /// Failed attempts (download or parse) since the start of the state dir.
    pub failures: u64,
    /// Downloads refused because they shrank the list too much.
    pub refused: u64,
    /// SOA serial of the copy (zone-transfer lists).
    #[serde(default)]
    pub serial: Option<u32>,
    /// How the copy was last transferred (AXFR, or IXFR with its counts).
    #[serde(default)]
    pub last_transfer: Option<String>,
}

/// The metadata file of a list copy.
pub fn meta_path(copy: &Path) -> PathBuf {
    copy.with_extension("meta.json")
}

/// Reads a list's metadata (default when absent or unreadable).
pub fn read_meta(copy: &Path) -> FetchMeta {
    std::fs::read(meta_path(copy))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// A list's metadata for `source`: what is on disk, except that when the
/// copy came from another source its validators (ETag, Last-Modified, SOA
/// serial) do not apply; the counts stay, so max_shrink still compares.
pub fn meta_for(copy: &Path, source: &str) -> FetchMeta {
    let meta = read_meta(copy);
    if meta.url == source {
        return meta;
    }
    FetchMeta {
        url: source.to_string(),
        entries: meta.entries,
        failures: meta.failures,
        refused: meta.refused,
        ..FetchMeta::default()
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = Scratch::new(path.with_extension("tmp-write"));
    let mut f = std::fs::File::create(tmp.path())?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    commit(tmp.path(), path)
}

/// A file being written next to a copy, removed when dropped unless it was
/// renamed into place: whatever way an attempt fails (a cut download, a
/// refused version, a full disk, a panic), nothing but the last good copy
/// and its meta stays in the state directory.
#[derive(Debug)]
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new(path: PathBuf) -> Self {
        Self(path)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Gone already when it was committed (renamed over the copy).
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Renames a finished temp file over `path` and makes the rename durable.
pub(super) fn commit(tmp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Notes an attempt's outcome in the metadata next to `copy` and saves it.
pub fn record_outcome(copy: &Path, meta: &mut FetchMeta, outcome: &Outcome, list: &str) {
    meta.checked_at = Some(now());
    meta.last_result = match outcome {
        Outcome::Updated { entries } => format!("updated ({entries} names)"),
        Outcome::NotModified => "not modified".into(),
        Outcome::Refused(why) => {
            meta.refused += 1;
            format!("refused: {why}")
        }
        Outcome::Failed(why) => {
            meta.failures += 1;
            format!("failed: {why}")
        }
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&meta)
        && let Err(e) = write_atomic(&meta_path(copy), &bytes)
    {
        tracing::warn!(list, error = %e, "cannot write list metadata");
    }
}
