//! `[history]`: how much of what each reload changed in each list is kept
//! (`STATE/history/LIST.jsonl`, written by `observe::history`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Checker;
use super::raw::{Container, Section, Value};

/// `[history]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySpec {
    pub max_mb: Option<Value>,
}

impl Section for HistorySpec {
    const CONTAINER: Container = Container::Table;
}

/// Where list history is kept and how much of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// `STATE/history`: one `LIST.jsonl` per list, and what the last
    /// recorded version held.
    pub dir: PathBuf,
    /// The most bytes one list's history file may hold; the oldest records
    /// are dropped (and counted) to stay within it. 0 keeps no history.
    pub max_bytes: u64,
}

impl HistoryConfig {
    /// The default: 16 MB per list under `state_dir/history`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("history"),
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Checker<'_> {
    /// Converts `[history]`.
    pub(super) fn history(&mut self, spec: &HistorySpec, state_dir: &Path) -> HistoryConfig {
        let d = HistoryConfig::new(state_dir);
        HistoryConfig {
            max_bytes: spec
                .max_mb
                .as_ref()
                .and_then(|v| self.whole::<u64>("history.max_mb", v, "megabytes", 0..=1_000_000))
                .map_or(d.max_bytes, |mb| mb * 1024 * 1024),
            dir: d.dir,
        }
    }
}
