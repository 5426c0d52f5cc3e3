//! The log file, rotated by size, and the compressor of rotated files.
//!
//! ```text
//!  observer thread: write a batch ─► queries.log ── full? rename ─► queries.log.1 ─┐ wake
//!  compressor thread (SCHED_IDLE): queries.log.N ─► zstd ─► queries.log.N.zst      ◄────┘
//! ```
//!
//! The writer only renames (a rotation costs the observer a few system
//! calls, never the compression); the compressor, a thread of its own at
//! the lowest CPU priority, compresses each rotated file and removes it.
//! The two share a lock held only around renames: the writer never waits
//! for it (a rotation that finds it held is tried again at the next
//! batch, the live file a batch longer), and the compressor finds the
//! file it compressed by its inode, wherever rotations moved it meanwhile.
//! A file the compressor has not reached yet is rotated on as it is;
//! files left uncompressed at exit are compressed at the next start.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use crate::source::store;

/// zstd's level: its fastest but for the negative ones. On flood records
/// it packs as well as its default (3) and gzip -6, about 12 times
/// (README), at several times gzip's speed.
const LEVEL: i32 = 1;
/// Rotated files waiting for the compressor, at most: past that (the
/// compressor starved on a saturated machine), the oldest waiting are
/// removed, so the log never takes more disk than uncompressed rotation
/// with the old default (`keep = 5`) took.
const MAX_WAITING: u32 = 5;

/// A log file that is renamed aside once it would grow past `max_size`:
/// `queries.log` → `queries.log.1` → … → `queries.log.KEEP` (the oldest,
/// then removed), as logrotate names them; with compression, each
/// becomes `queries.log.N.zst` once compressed. A batch of records is
/// never split between two files.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
    compressor: Option<Compressor>,
}

/// The writer's handle on the compressor thread.
#[derive(Debug)]
struct Compressor {
    /// Held around renames, by either side.
    lock: Arc<Mutex<()>>,
    /// Wakes the thread; dropped, it ends it (after the file in hand).
    wake: mpsc::SyncSender<()>,
}

impl RotatingFile {
    /// Opens (creating it and its directory) `path` for appending. With
    /// `compress`, starts the compressor, which first compresses what an
    /// earlier run left.
    pub fn open(path: &Path, max_size: u64, keep: u32, compress: bool) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            store::create_dir(dir)?;
        }
        let mut f = Self {
            path: path.to_path_buf(),
            max_size,
            keep,
            file: None,
            size: 0,
            compressor: None,
        };
        f.reopen()?;
        if compress && keep > 0 {
            let lock = Arc::new(Mutex::new(()));
            let (wake, woken) = mpsc::sync_channel(1);
            let names = Names {
                path: f.path.clone(),
                keep,
            };
            let held = lock.clone();
            std::thread::Builder::new()
                .name("embargo-compress".into())
                .spawn(move || compress_loop(&names, &held, &woken))?;
            let _ = wake.try_send(());
            f.compressor = Some(Compressor { lock, wake });
        }
        Ok(f)
    }

    /// Opens the log as [`store::private_file`] does (0640, never through
    /// a symlink: `[log] path` may be in a directory others can write).
    /// The log says who asked for what: a file an older version left
    /// readable by everyone loses the world's bits (rotated files keep the
    /// mode they had).
    fn reopen(&mut self) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let file = store::private_file()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(store::not_followed)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            // Only its owner (or root) may: else the log stays as it is.
            let _ = file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7770));
        }
        self.size = meta.len();
        self.file = Some(file);
        Ok(())
    }

    /// Appends `buf`, whole records, in one write when it fits in the
    /// file; else the records that fit, then (rotated) the rest, so no
    /// file grows past its size for a large batch and no record is split.
    /// A file gets at least one record, however long.
    pub fn write(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let room =
                usize::try_from(self.max_size.saturating_sub(self.size)).unwrap_or(usize::MAX);
            let take = if buf.len() <= room {
                buf.len()
            } else {
                let fits = buf[..room]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                if fits == 0 && self.size == 0 {
                    buf.iter()
                        .position(|&b| b == b'\n')
                        .map_or(buf.len(), |i| i + 1)
                } else {
                    fits
                }
            };
            if take == 0 && self.rotate()? {
                continue;
            }
            // A rotation put off (the compressor renaming): the rest goes
            // to the live file, a batch over its size.
            let take = if take == 0 { buf.len() } else { take };
            if self.file.is_none() {
                self.reopen()?;
            }
            let Some(file) = self.file.as_mut() else {
                return Err(io::Error::other("log file not open"));
            };
            file.write_all(&buf[..take])?;
            self.size += take as u64;
            buf = &buf[take..];
        }
        Ok(())
    }

    /// Rotates; returns false when the rotation was put off.
    fn rotate(&mut self) -> io::Result<bool> {
        let names = Names {
            path: self.path.clone(),
            keep: self.keep,
        };
        if self.keep == 0 {
            self.file = None;
            std::fs::remove_file(&self.path)?;
            self.reopen()?;
            return Ok(true);
        }
        let Some(compressor) = &self.compressor else {
            self.file = None;
            names.shift(false)?;
            self.reopen()?;
            return Ok(true);
        };
        let (lock, wake) = (compressor.lock.clone(), compressor.wake.clone());
        let _held = match lock.try_lock() {
            Ok(held) => held,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // The compressor is renaming: rotate at the next batch.
            Err(TryLockError::WouldBlock) => return Ok(false),
        };
        self.file = None;
        names.shift(true)?;
        let opened = self.reopen();
        let _ = wake.try_send(());
        opened.map(|()| true)
    }
}

/// The names of the log's files.
struct Names {
    path: PathBuf,
    keep: u32,
}

impl Names {
    /// `queries.log.I`, and with `zst`, `queries.log.I.zst`.
    fn numbered(&self, i: u32, zst: bool) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(if zst {
            format!(".{i}.zst")
        } else {
            format!(".{i}")
        });
        PathBuf::from(p)
    }

    /// The oldest goes; the rest move up one, compressed or not (files
    /// compressed before `compress` was turned off age out too); the live
    /// file becomes `.1`. With `compressed`, rotated files past
    /// [`MAX_WAITING`] still uncompressed are removed, oldest first.
    fn shift(&self, compressed: bool) -> io::Result<()> {
        for zst in [false, true] {
            remove_if_there(&self.numbered(self.keep, zst))?;
            for i in (1..self.keep).rev() {
                let from = self.numbered(i, zst);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(i + 1, zst))?;
                }
            }
        }
        std::fs::rename(&self.path, self.numbered(1, false))?;
        if compressed {
            let waiting: Vec<u32> = (1..=self.keep)
                .filter(|&i| self.numbered(i, false).exists())
                .collect();
            for &i in waiting.iter().skip(MAX_WAITING as usize) {
                tracing::warn!(
                    file = %self.numbered(i, false).display(),
                    "the compressor is behind: removing a rotated query log it did not reach"
                );
                remove_if_there(&self.numbered(i, false))?;
            }
        }
        Ok(())
    }
}

/// `input`, compressed, into `output`.
fn encode(input: File, output: &File) -> io::Result<()> {
    let mut input = io::BufReader::with_capacity(1 << 20, input);
    let mut enc = zstd::stream::Encoder::new(io::BufWriter::with_capacity(1 << 20, output), LEVEL)?;
    io::copy(&mut input, &mut enc)?;
    enc.finish()?.flush()
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The compressor thread: at each wake, compresses every rotated file
/// still plain, newest first, until none is left; ends when the writer
/// is gone.
fn compress_loop(names: &Names, lock: &Mutex<()>, woken: &mpsc::Receiver<()>) {
    crate::source::background::lower_priority();
    while woken.recv().is_ok() {
        loop {
            match compress_one(names, lock) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(path = %names.path.display(), error = %e, "cannot compress a rotated query log (kept as it is)");
                    break;
                }
            }
        }
    }
}

/// Compresses the newest rotated file still plain into `.N.zst` and
/// removes it. Returns whether there was one.
fn compress_one(names: &Names, lock: &Mutex<()>) -> io::Result<bool> {
    let held = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(source) = (1..=names.keep)
        .map(|i| names.numbered(i, false))
        .find(|p| p.exists())
    else {
        return Ok(false);
    };
    let input = File::open(&source)?;
    drop(held);
    let meta = input.metadata()?;
    let id = (meta.dev(), meta.ino());
    let mut tmp = names.path.clone().into_os_string();
    tmp.push(".zst-tmp");
    let tmp = PathBuf::from(tmp);
    remove_if_there(&tmp)?;
    let output = store::private_file()
        .create_new(true)
        .write(true)
        .open(&tmp)
        .map_err(store::not_followed)?;
    let written = encode(input, &output).and_then(|()| output.sync_all());
    let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(e) = written {
        remove_if_there(&tmp)?;
        return Err(e);
    }
    // Where rotations moved the source meanwhile (or nowhere: removed as
    // the oldest, and so is its compressed copy).
    let now = (1..=names.keep).find(|&i| {
        std::fs::symlink_metadata(names.numbered(i, false)).is_ok_and(|m| (m.dev(), m.ino()) == id)
    });
    match now {
        Some(i) => {
            std::fs::rename(&tmp, names.numbered(i, true))?;
            remove_if_there(&names.numbered(i, false))?;
        }
        None => remove_if_there(&tmp)?,
    }
    Ok(true)
}
