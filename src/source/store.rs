//! The state directory: the last good copy of every remote list, its
//! metadata, and the atomic writes that keep both whole through crashes and
//! cut connections.
//!
//! ```text
//!  STATE/lists/NAME.list        the copy in use (plain list text or zone-file text)
//!  STATE/lists/NAME.meta.json   validators (ETag, Last-Modified, SOA serial), counts, last result
//!  STATE/lists/NAME.minisig     the publisher's signature of the copy (lists with `signature`)
//!  STATE/embargo.pid            the running server, for `embargo reload`
//! ```
//!
//! The state directory also holds the query log and the hit report (who
//! asked for what), so what is made here is private whatever the umask:
//! directories [`DIR_MODE`] (0750), files [`FILE_MODE`] (0640), and no
//! file is ever opened through a symbolic link (the directory may be
//! writable by the service user, or by others where an operator put it).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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
    /// Downloads turned down because their signature was missing or did
    /// not verify (lists with `signature`).
    #[serde(default)]
    pub signature_failures: u64,
    /// The trusted comment of the signature of the copy in use (minisign
    /// writes the signing time and file name there).
    #[serde(default)]
    pub signed: Option<String>,
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
        signature_failures: meta.signature_failures,
        ..FetchMeta::default()
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The most a file embargo writes may grant (less what the umask takes):
/// its owner reads and writes, its group reads, others nothing.
pub const FILE_MODE: u32 = 0o640;
/// The most a directory embargo makes may grant: the group may list it.
pub const DIR_MODE: u32 = 0o750;

/// Creates `dir` and every missing parent with [`DIR_MODE`]; an existing
/// one is left as it is (the operator's, or systemd's `StateDirectory=`).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// How embargo opens a file it writes: created with [`FILE_MODE`], and
/// never through a symbolic link at its path (`O_NOFOLLOW`), which a user
/// who can write the directory could point at a file of root's.
pub fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW);
    o
}

/// An open error, with `O_NOFOLLOW`'s "too many levels of symbolic links"
/// said as what it means here.
pub fn not_followed(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        io::Error::new(
            e.kind(),
            "a symbolic link, which is never followed here: remove it",
        )
    } else {
        e
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
/// The temp file is made anew ([`FILE_MODE`], exclusive: whatever was left
/// at its path, a symbolic link too, is removed first, never written
/// through); the rename replaces a symbolic link at `path` itself.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = Scratch::new(path.with_extension("tmp-write"));
    match std::fs::remove_file(tmp.path()) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = private_file()
        .write(true)
        .create_new(true)
        .open(tmp.path())
        .map_err(not_followed)?;
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
pub(super) fn commit(tmp: &Path, path: &Path) -> io::Result<()> {
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
        Outcome::BadSignature(why) => {
            meta.signature_failures += 1;
            format!("refused: signature: {why}")
        }
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&meta)
        && let Err(e) = write_atomic(&meta_path(copy), &bytes)
    {
        tracing::warn!(list, error = %e, "cannot write list metadata");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    /// Issue 16 (4): what the server keeps in the state directory (the pid
    /// file, the hit report: who asked for what; list metadata, whose URL
    /// may hold a feed's key) is 0640 at most, whatever the umask leaves.
    #[test]
    fn r16_state_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hits.json");
        write_atomic(&path, b"{}").expect("write");
        assert_eq!(mode(&path) & 0o137, 0, "{:o}", mode(&path));
    }

    /// Issue 16 (17): a symlink where the temporary file goes is not
    /// written through (it is replaced), and one at the file's own path is
    /// replaced, never followed: the file it names is untouched either way.
    #[test]
    fn r16_state_files_are_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("precious");
        std::fs::write(&target, "mine\n").expect("write");
        let path = dir.path().join("embargo.pid");
        std::os::unix::fs::symlink(&target, path.with_extension("tmp-write")).expect("symlink");
        write_atomic(&path, b"42\n").expect("write");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "mine\n");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "42\n");
        assert!(std::fs::symlink_metadata(path.with_extension("tmp-write")).is_err());

        std::fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        write_atomic(&path, b"43\n").expect("write");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "mine\n");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "43\n");
        assert!(!std::fs::symlink_metadata(&path).expect("meta").is_symlink());
    }
}
