//! `[log]` and `[hits]`: what the observer records about each query, where
//! the query log goes, and how much of the hit report is kept.
//!
//! Both sections take effect at start (the observer's thread and files are
//! set up once); a reload that sees them changed says a restart is needed.

use std::path::PathBuf;

use serde::Deserialize;

use super::Checker;
use super::raw::{Container, Raw, Section, Value};

/// Which queries are written to the query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogQueries {
    /// None (blocks are still counted in the hit report when it is on).
    Off,
    /// Blocked queries only: the default, what a security team audits.
    Blocked,
    /// Every query: blocked, forwarded, cached, refused, error.
    All,
}

/// How a query log record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// One line of `key=value` words, as a person reads it.
    Text,
}

/// How the client address appears in the query log and the hit report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// As it is.
    Full,
    /// IPv4 to its /24, IPv6 to its /56.
    Truncate,
    /// A keyed hash (key drawn at start): stable for the process, not
    /// reversible without the key.
    Hash,
}

/// Where the query log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPath {
    /// Standard output (`path = "-"`), for a supervisor that collects it.
    Stdout,
    /// A file, rotated by size.
    File(PathBuf),
}

/// Rotated files kept by default: with compression (a rotated file
/// takes about a tenth of its size, README), 40 of them take less disk
/// than the 5 plain ones kept before compression did, and hold about 7 times
/// the history.
const KEEP: u32 = 40;
/// ... and without it, as before.
const KEEP_PLAIN: u32 = 5;

/// `[log]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub queries: LogQueries,
    pub format: LogFormat,
    pub path: LogPath,
    /// Rotate the file once it reaches this many bytes.
    pub max_size: u64,
    /// Rotated files kept (`queries.log.1` … `queries.log.KEEP`).
    pub keep: u32,
    /// Rotated files are compressed (zstd, `queries.log.N.zst`) by a
    /// thread at the lowest priority.
    pub compress: bool,
    pub client_ip: ClientIp,
    /// Records each serving thread may have waiting for the writer; past
    /// that, records are dropped and counted, never queries.
    pub queue: usize,
}

impl LogConfig {
    /// The defaults, with the log in `state_dir`.
    pub fn new(state_dir: &std::path::Path) -> Self {
        Self {
            queries: LogQueries::Blocked,
            format: LogFormat::Json,
            path: LogPath::File(state_dir.join("queries.log")),
            max_size: 64 * 1024 * 1024,
            keep: KEEP,
            compress: true,
            client_ip: ClientIp::Full,
            queue: 32_768,
        }
    }
}

/// `[hits]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HitsConfig {
    /// Clients remembered per list (least recently seen evicted first);
    /// 0 turns the hit report off.
    pub max_clients: usize,
}

impl Default for HitsConfig {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
        }
    }
}

/// `[log]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    pub queries: Option<Value>,
    pub format: Option<Value>,
    pub path: Option<Value>,
    pub max_size_mb: Option<Value>,
    pub keep: Option<Value>,
    pub compress: Option<Value>,
    pub client_ip: Option<Value>,
    pub queue: Option<Value>,
}

/// `[hits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HitsSpec {
    pub max_clients: Option<Value>,
}

impl Section for LogSpec {
    const CONTAINER: Container = Container::Table;
}

impl Section for HitsSpec {
    const CONTAINER: Container = Container::Table;
}

impl Checker<'_> {
    /// Converts `[log]`; relative paths are resolved against the config's
    /// directory, like every other path in the file.
    pub(super) fn log(&mut self, spec: &LogSpec, state_dir: &std::path::Path) -> LogConfig {
        let d = LogConfig::new(state_dir);
        let queries = self
            .opt_parse(
                "log.queries",
                &spec.queries,
                r#"one of "off", "blocked" or "all""#,
                |s| match s {
                    "off" => Some(LogQueries::Off),
                    "blocked" => Some(LogQueries::Blocked),
                    "all" => Some(LogQueries::All),
                    _ => None,
                },
            )
            .unwrap_or(d.queries);
        let format = self
            .opt_parse(
                "log.format",
                &spec.format,
                r#"one of "json" or "text""#,
                |s| match s {
                    "json" => Some(LogFormat::Json),
                    "text" => Some(LogFormat::Text),
                    _ => None,
                },
            )
            .unwrap_or(d.format);
        let path = self
            .opt_parse(
                "log.path",
                &spec.path,
                r#"a file path such as "/var/log/embargo/queries.log", or "-" for standard output"#,
                |s| (!s.trim().is_empty()).then(|| s.to_owned()),
            )
            .map_or(d.path, |p| {
                if p == "-" {
                    LogPath::Stdout
                } else {
                    LogPath::File(self.resolve(&p))
                }
            });
        let max_size = spec
            .max_size_mb
            .as_ref()
            .and_then(|v| self.whole::<u64>("log.max_size_mb", v, "megabytes", 1..=1024 * 1024))
            .map_or(d.max_size, |mb| mb * 1024 * 1024);
        let compress = match &spec.compress {
            None => d.compress,
            Some(v) => match v.get_ref() {
                Raw::Boolean(b) => *b,
                _ => {
                    self.wrong("log.compress", v, "true or false");
                    d.compress
                }
            },
        };
        let keep = spec
            .keep
            .as_ref()
            .and_then(|v| self.whole("log.keep", v, "rotated files to keep", 0..=1000))
            .unwrap_or(if compress { KEEP } else { KEEP_PLAIN });
        let client_ip = self
            .opt_parse(
                "log.client_ip",
                &spec.client_ip,
                r#"one of "full", "truncate" or "hash""#,
                |s| match s {
                    "full" => Some(ClientIp::Full),
                    "truncate" => Some(ClientIp::Truncate),
                    "hash" => Some(ClientIp::Hash),
                    _ => None,
                },
            )
            .unwrap_or(d.client_ip);
        let queue = spec
            .queue
            .as_ref()
            .and_then(|v| self.whole("log.queue", v, "records", 1..=1 << 22))
            .unwrap_or(d.queue);
        LogConfig {
            queries,
            format,
            path,
            max_size,
            keep,
            compress,
            client_ip,
            queue,
        }
    }

    /// Converts `[hits]`.
    pub(super) fn hits(&mut self, spec: &HitsSpec) -> HitsConfig {
        let d = HitsConfig::default();
        HitsConfig {
            max_clients: spec
                .max_clients
                .as_ref()
                .and_then(|v| self.whole("hits.max_clients", v, "clients per list", 0..=10_000_000))
                .unwrap_or(d.max_clients),
        }
    }
}
