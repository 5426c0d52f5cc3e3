//! List history: what each load and reload changed in each list, kept so
//! that a security team can answer "since when have we blocked this name,
//! and from which version of which list?".
//!
//! ```text
//!  reload (background thread, after the swap) ──► record(config, snapshot)
//!     per list in force: hash the copy ── same as last time? ── nothing (a restart is not a change)
//!                            │ changed
//!                            ▼
//!     parse its entries, diff against STATE/history/LIST.entries (the last recorded version)
//!        ── entries added or removed ──► append one line to STATE/history/LIST.jsonl
//!                                        (oldest lines dropped, and counted, past [history] max_mb)
//!  embargo history NAME | --list LIST, /api/history ──► search (reads the .jsonl files)
//! ```
//!
//! The diff runs on the reload's own thread (lowest priority), never on the
//! serving path; a list whose copy did not change since the last record
//! costs one read to hash it. Files, per list (its name made file-safe):
//!
//! ```text
//!  STATE/history/LIST.jsonl       one JSON record per change: time, version, added, removed
//!  STATE/history/LIST.entries     the entries of the last recorded version, sorted
//!  STATE/history/LIST.state.json  its content hash and version, and how many records were dropped
//! ```
//!
//! A version is the list's ETag (HTTP), its SOA serial (zone transfer), or
//! else the hash of its content. An entry is written as the list means it:
//! `name` (the name and below), `=name` (the name alone: an RPZ trigger),
//! `*.name` (below the name only).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{HistoryConfig, ListSpec, file_safe};
use crate::lists::{self, Format};
use crate::matcher::Scope;
use crate::state::Snapshot;

/// Why history could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("list {list}: {source}")]
    List {
        list: String,
        source: lists::LoadError,
    },
}

/// One change of one list: a line of `LIST.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// When it was loaded, RFC 3339.
    pub time: String,
    pub list: String,
    /// `etag "…"`, `serial N` or `sha xxh3:…`.
    pub version: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Set when the record alone was larger than `max_mb`: `added` and
    /// `removed` are then cut, and these are the whole counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<(u64, u64)>,
}

/// What the last recorded version of a list was.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Last {
    hash: String,
    version: String,
    /// Records dropped from the front of the file to keep it within max_mb.
    dropped: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn paths(dir: &Path, list: &str) -> (PathBuf, PathBuf, PathBuf) {
    let base = file_safe(list);
    (
        dir.join(format!("{base}.jsonl")),
        dir.join(format!("{base}.entries")),
        dir.join(format!("{base}.state.json")),
    )
}

/// Records what changed in every list of `snap` in force since its last
/// record. Called after each load that was swapped in, off the serving
/// path. A failure is logged per list and does not stop the others.
pub fn record(config: &HistoryConfig, snap: &Snapshot) {
    if config.max_bytes == 0 {
        return;
    }
    if let Err(e) = crate::source::store::create_dir(&config.dir) {
        tracing::error!(dir = %config.dir.display(), error = %e, "cannot create the list history directory");
        return;
    }
    for l in snap.lists.iter().filter(|l| l.note.is_none()) {
        match record_list(config, &l.spec) {
            Ok(Some(c)) => tracing::info!(
                list = %l.spec.name,
                version = %c.version,
                added = c.counts.map_or(c.added.len() as u64, |n| n.0),
                removed = c.counts.map_or(c.removed.len() as u64, |n| n.1),
                "list history: recorded a change"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(list = %l.spec.name, error = %e, "list history not recorded"),
        }
    }
}

/// Records one list's change, if its entries changed; returns it.
pub fn record_list(config: &HistoryConfig, spec: &ListSpec) -> Result<Option<Change>, Error> {
    let bytes = std::fs::read(&spec.path).map_err(io(&spec.path))?;
    let hash = format!("xxh3:{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
    drop(bytes);
    let (log, entries_path, last_path) = paths(&config.dir, &spec.name);
    let mut last: Last = std::fs::read(&last_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if last.hash == hash {
        return Ok(None);
    }
    let now_entries = entries(spec)?;
    let before = match std::fs::read_to_string(&entries_path) {
        Ok(text) => Entries::from_text(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Entries::default(),
        Err(e) => return Err(io(&entries_path)(e)),
    };
    let version = version(spec, &hash);
    let (added, removed) = before.diff(&now_entries);
    let change = (!added.is_empty() || !removed.is_empty()).then(|| Change {
        time: crate::expiry::format(std::time::SystemTime::now()),
        list: spec.name.clone(),
        version: version.clone(),
        added,
        removed,
        counts: None,
    });
    if let Some(change) = &change {
        last.dropped += append(&log, change, config.max_bytes)?;
        crate::source::write_atomic(&entries_path, now_entries.sorted_text().as_bytes())
            .map_err(io(&entries_path))?;
    }
    last.hash = hash;
    last.version = version;
    let json = serde_json::to_vec(&last).unwrap_or_default();
    crate::source::write_atomic(&last_path, &json).map_err(io(&last_path))?;
    Ok(change)
}

/// The list's version: its ETag, its SOA serial, or its content hash.
fn version(spec: &ListSpec, hash: &str) -> String {
    if spec.source.is_remote() {
        let meta = crate::source::read_meta(&spec.path);
        if let Some(etag) = meta.etag {
            return format!("etag {etag}");
        }
        if let Some(serial) = meta.serial {
            return format!("serial {serial}");
        }
    }
    format!("sha {hash}")
}

/// The list's entries as it means them (see the module docs).
fn entries(spec: &ListSpec) -> Result<Entries, Error> {
    use std::fmt::Write as _;
    let err = |source| Error::List {
        list: spec.name.clone(),
        source,
    };
    let mut text = String::new();
    let format = lists::detect_file(&spec.path, spec.format).map_err(err)?;
    if format == Format::OfacSdn {
        lists::load_ofac(&spec.path, &mut |key, _, _| {
            let _ = writeln!(text, "{key}");
        })
        .map_err(err)?;
    } else {
        lists::load_file(&spec.path, Some(format), &mut |key, rule| {
            text.push_str(match rule.scope {
                Scope::Subtree => "",
                Scope::Exact => "=",
                Scope::Below => "*.",
            });
            let _ = writeln!(text, "{key}");
        })
        .map_err(err)?;
    }
    Ok(Entries::from_text(text))
}

/// A list's entries, sorted and without duplicates, as lines of one
/// buffer: a million entries take two allocations, not a million. The
/// diff runs at every reload that changed a list, on a thread that shares
/// the serving core: as a `BTreeSet<String>` of each version it took
/// seconds and about 100 MB of small blocks, which malloc kept.
#[derive(Debug, Default)]
struct Entries {
    text: String,
    /// Byte ranges of the lines in `text`, in sorted order.
    lines: Vec<(usize, usize)>,
}

impl Entries {
    fn from_text(text: String) -> Self {
        let mut lines = Vec::new();
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            let entry = line.trim_end_matches(['\n', '\r']);
            if !entry.is_empty() {
                lines.push((at, at + entry.len()));
            }
            at += line.len();
        }
        let key = |&(a, b): &(usize, usize)| text.as_bytes().get(a..b).unwrap_or_default();
        if !lines.is_sorted_by(|x, y| key(x) <= key(y)) {
            lines.sort_unstable_by(|x, y| key(x).cmp(key(y)));
        }
        lines.dedup_by(|x, y| key(x) == key(y));
        Self { text, lines }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .map(|&(a, b)| self.text.get(a..b).unwrap_or_default())
    }

    /// What `now` added to `self`, and what it removed: one merge walk
    /// over the two sorted runs.
    fn diff(&self, now: &Self) -> (Vec<String>, Vec<String>) {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let (mut old, mut new) = (self.iter().peekable(), now.iter().peekable());
        loop {
            match (old.peek(), new.peek()) {
                (Some(o), Some(n)) if o == n => {
                    old.next();
                    new.next();
                }
                (Some(o), Some(n)) if o < n => {
                    removed.push((*o).to_owned());
                    old.next();
                }
                (_, Some(n)) => {
                    added.push((*n).to_owned());
                    new.next();
                }
                (Some(o), None) => {
                    removed.push((*o).to_owned());
                    old.next();
                }
                (None, None) => break,
            }
        }
        (added, removed)
    }

    /// The entries, one a line, sorted: the `LIST.entries` file.
    fn sorted_text(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1);
        for e in self.iter() {
            out.push_str(e);
            out.push('\n');
        }
        out
    }
}

/// Appends `change` to `log`, dropping the oldest records first to stay
/// within `max` bytes; returns how many were dropped.
fn append(log: &Path, change: &Change, max: u64) -> Result<u64, Error> {
    let mut line = serde_json::to_string(change).unwrap_or_default();
    if line.len() as u64 + 1 > max {
        // One record larger than the whole budget: keep the counts, and as
        // many entries as fit.
        let mut cut = change.clone();
        cut.counts = Some((change.added.len() as u64, change.removed.len() as u64));
        while serde_json::to_string(&cut).map_or(0, |s| s.len()) as u64 + 1 > max
            && !(cut.added.is_empty() && cut.removed.is_empty())
        {
            let half = |v: &mut Vec<String>| v.truncate(v.len() / 2);
            half(&mut cut.added);
            half(&mut cut.removed);
        }
        line = serde_json::to_string(&cut).unwrap_or_default();
    }
    line.push('\n');
    let size = std::fs::metadata(log).map_or(0, |m| m.len());
    if size + line.len() as u64 <= max {
        let mut f = crate::source::store::private_file()
            .append(true)
            .create(true)
            .open(log)
            .map_err(io(log))?;
        f.write_all(line.as_bytes()).map_err(io(log))?;
        return Ok(0);
    }
    // Too big: keep the newest records that fit beside the new one.
    let text = std::fs::read_to_string(log).map_err(io(log))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut keep = lines.len();
    let mut used = line.len() as u64;
    while keep > 0 && used + (lines[keep - 1].len() as u64) < max {
        used += lines[keep - 1].len() as u64 + 1;
        keep -= 1;
    }
    let dropped = keep as u64;
    let mut out = String::with_capacity(used as usize);
    for l in &lines[keep..] {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&line);
    crate::source::write_atomic(log, out.as_bytes()).map_err(io(log))?;
    Ok(dropped)
}

/// One list's history as recorded: its changes, oldest first, and how many
/// older ones were dropped.
#[derive(Debug, Clone, Serialize)]
pub struct ListHistory {
    pub list: String,
    pub dropped: u64,
    pub changes: Vec<Change>,
}

/// Reads the history of `list` (empty when none was recorded).
pub fn read(config: &HistoryConfig, list: &str) -> Result<ListHistory, Error> {
    let (log, _, last_path) = paths(&config.dir, list);
    let dropped = std::fs::read(&last_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Last>(&b).ok())
        .map_or(0, |l| l.dropped);
    let changes = match std::fs::read_to_string(&log) {
        Ok(text) => text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&log)(e)),
    };
    Ok(ListHistory {
        list: list.to_owned(),
        dropped,
        changes,
    })
}

/// When a name, or an entry covering it, entered or left a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameEvent {
    pub time: String,
    pub list: String,
    /// `"entered"` or `"left"`.
    pub event: &'static str,
    /// The entry, as the list means it (the name, a parent, `*.parent`).
    pub entry: String,
    pub version: String,
}

/// The entries that would cover `name`: itself (`name`, `=name`) and each
/// parent (`parent`, `*.parent`).
fn covering(name: &str) -> Vec<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let mut out = vec![name.clone(), format!("={name}")];
    let mut rest = name.as_str();
    while let Some((_, parent)) = rest.split_once('.') {
        out.push(parent.to_owned());
        out.push(format!("*.{parent}"));
        rest = parent;
    }
    out
}

/// Every time `name` (or an entry covering it) entered or left one of
/// `lists`, oldest first per list.
pub fn search_name(
    config: &HistoryConfig,
    lists: &[&str],
    name: &str,
) -> Result<Vec<NameEvent>, Error> {
    let covers = covering(name);
    let mut out = Vec::new();
    for list in lists {
        for c in read(config, list)?.changes {
            for (event, entries) in [("entered", &c.added), ("left", &c.removed)] {
                for e in entries.iter().filter(|e| covers.contains(e)) {
                    out.push(NameEvent {
                        time: c.time.clone(),
                        list: c.list.clone(),
                        event,
                        entry: e.clone(),
                        version: c.version.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// The merge walk over the flat runs says what the sets say, in
        /// order, whatever the order and the repeats of the lines read.
        #[test]
        fn entries_diff_as_the_sets_do(
            old in proptest::collection::vec("[a-c=*.]{1,4}", 0..40),
            new in proptest::collection::vec("[a-c=*.]{1,4}", 0..40),
        ) {
            let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
            let (o, n) = (set(&old), set(&new));
            let flat = |v: &[String]| Entries::from_text(v.iter().map(|e| format!("{e}\n")).collect());
            let (added, removed) = flat(&old).diff(&flat(&new));
            prop_assert_eq!(added, n.difference(&o).cloned().collect::<Vec<_>>());
            prop_assert_eq!(removed, o.difference(&n).cloned().collect::<Vec<_>>());
            let text: String = n.iter().map(|e| format!("{e}\n")).collect();
            prop_assert_eq!(flat(&new).sorted_text(), text);
        }
    }

    fn change(n: usize) -> Change {
        Change {
            time: "2026-12-06T00:00:00Z".into(),
            list: "l".into(),
            version: format!("sha {n}"),
            added: vec![format!("n{n}.example")],
            removed: vec![],
            counts: None,
        }
    }

    #[test]
    fn the_oldest_records_are_dropped_and_counted_to_stay_within_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("l.jsonl");
        let one = serde_json::to_string(&change(0)).expect("json").len() as u64 + 1;
        let max = one * 3 + 2;
        let mut dropped = 0;
        for n in 0..5 {
            dropped += append(&log, &change(n), max).expect("append");
        }
        assert_eq!(dropped, 2);
        let text = std::fs::read_to_string(&log).expect("read");
        assert!(text.len() as u64 <= max);
        let versions: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Change>(l).expect("json").version)
            .collect();
        assert_eq!(versions, ["sha 2", "sha 3", "sha 4"]);
        // A record larger than the whole budget keeps its counts.
        let mut big = change(9);
        big.added = (0..100).map(|i| format!("big{i}.example")).collect();
        let dropped = append(&log, &big, 400).expect("append");
        let text = std::fs::read_to_string(&log).expect("read");
        assert!(dropped >= 1);
        assert_eq!(dropped + text.lines().count() as u64, 4, "{text}");
        let kept: Change =
            serde_json::from_str(text.lines().last().expect("a line")).expect("json");
        assert_eq!(kept.counts, Some((100, 0)));
        assert!(kept.added.len() < 100);
        assert!(text.len() <= 400, "{}", text.len());
    }

    #[test]
    fn a_name_is_covered_by_itself_and_its_parents() {
        assert_eq!(
            covering("www.Seized.example."),
            [
                "www.seized.example",
                "=www.seized.example",
                "seized.example",
                "*.seized.example",
                "example",
                "*.example"
            ]
        );
    }
}
