//! `embargo log`: the query log searched from the command line, read from
//! the files `[log] path` names (rotated and compressed ones included), so
//! it works whether or not the server runs. Part of the `embargo` binary;
//! the search itself is the library's (`observe::querylog::search`).
//!
//! ```text
//!  flags ─► Asked::filter (config's lists, [log] client_ip) ─► scan (oldest first)     ─► table or JSON lines
//!                                                          └► latest (--limit N)    ─┘
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use embargo::config::{Config, LogPath, LogQueries};
use embargo::observe::querylog::Record;
use embargo::observe::querylog::search::{self, Asked, End, Next, Stats};

/// Rows of the table laid out together: the columns are as wide as the
/// widest cell so far, so a long search prints as it reads.
const BLOCK: usize = 1000;

#[derive(Debug, clap::Args)]
pub(crate) struct LogArgs {
    /// Only this client: an address, a network (10.1.2.0/24) or, with
    /// [log] client_ip = "hash", the hash the log shows.
    #[arg(long, value_name = "IP")]
    client: Option<String>,
    /// Only the queries this list blocked.
    #[arg(long, value_name = "LIST")]
    list: Option<String>,
    /// Only this name and the names under it (case and a trailing dot do
    /// not count).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// From this time on: RFC 3339 (2026-11-29T21:30:00Z, or with an
    /// offset) or a time ago (1h, 30m, 2days).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before this time (the same forms).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only the newest N records (default: every one).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// One JSON record per line, as the log's JSON form (whatever
    /// [log] format the files were written in).
    #[arg(long)]
    json: bool,
}

/// Searches the log; exit 2 for a bad filter or an unknown list, 1 when
/// there is no log to read or a file could not be read (what was read
/// is printed all the same).
pub(crate) fn run(config: &Config, args: &LogArgs) -> ExitCode {
    let asked = Asked {
        client: args.client.as_deref(),
        list: args.list.as_deref(),
        name: args.name.as_deref(),
        since: args.since.as_deref(),
        until: args.until.as_deref(),
    };
    if let Some(l) = asked.list.map(str::trim).filter(|l| !l.is_empty())
        && !config.lists.iter().any(|s| s.name == l)
    {
        eprintln!("{}", super::no_such_list(config, l));
        return ExitCode::from(2);
    }
    let lists: Vec<&str> = config.lists.iter().map(|l| l.name.as_str()).collect();
    let (filter, notes) = match asked.filter(&lists, config.log.client_ip, SystemTime::now()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("embargo log: {e}");
            return ExitCode::from(2);
        }
    };
    for n in &notes {
        eprintln!("note: {n}");
    }
    let path = match &config.log.path {
        LogPath::File(p) => p,
        LogPath::Stdout => {
            eprintln!(
                "{}: [log] path = \"-\": the query log goes to standard output (to the service's journal), not to files this can search",
                config.path.display()
            );
            return ExitCode::from(1);
        }
    };
    let files = match search::files(path) {
        Ok(f) if f.is_empty() => {
            eprintln!(
                "{}: no query log there yet: `embargo run -c {}` writes it ([log] path)",
                path.display(),
                config.path.display()
            );
            return ExitCode::from(1);
        }
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let mut out = Output::new(args.json);
    let mut stats = Stats::default();
    let mut more = false;
    match args.limit {
        None => {
            let end = search::scan(&files, &filter, None, &mut stats, &mut |r| {
                if out.push(r) {
                    Next::Continue
                } else {
                    Next::Stop
                }
            });
            // Stopped: standard output was closed (`| head`).
            if end == End::Stopped {
                return ExitCode::SUCCESS;
            }
        }
        Some(n) => {
            let found = search::latest(&files, &filter, n, None);
            more = found.more;
            stats = found.stats;
            for r in found.records {
                if !out.push(r) {
                    return ExitCode::SUCCESS;
                }
            }
        }
    }
    out.finish();
    if !args.json {
        let shown = out.shown;
        println!(
            "({shown} record{} of {} read in {} file{}{})",
            if shown == 1 { "" } else { "s" },
            stats.records,
            stats.files,
            if stats.files == 1 { "" } else { "s" },
            if more {
                "; older ones match too: raise --limit"
            } else {
                ""
            },
        );
        if config.log.queries != LogQueries::All {
            eprintln!(
                "note: [log] queries = \"{}\": the log holds {}; queries = \"all\" keeps every query",
                if config.log.queries == LogQueries::Off {
                    "off"
                } else {
                    "blocked"
                },
                if config.log.queries == LogQueries::Off {
                    "no new query"
                } else {
                    "blocked queries only"
                },
            );
        }
    }
    if stats.skipped > 0 {
        eprintln!(
            "{} line{} skipped: not a query-log record (first: {})",
            stats.skipped,
            if stats.skipped == 1 { "" } else { "s" },
            stats.first_skipped.as_deref().unwrap_or("?")
        );
    }
    for u in &stats.unreadable {
        eprintln!("cannot read {u}");
    }
    if stats.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Where records go: JSON lines, or the table in blocks.
struct Output {
    json: bool,
    out: std::io::BufWriter<std::io::Stdout>,
    block: Vec<[String; 7]>,
    widths: [usize; 7],
    header: bool,
    shown: u64,
    /// Standard output was closed: stop.
    closed: bool,
}

const HEADER: [&str; 7] = [
    "time", "client", "type", "decision", "rcode", "list", "name",
];

impl Output {
    fn new(json: bool) -> Self {
        Self {
            json,
            out: std::io::BufWriter::new(std::io::stdout()),
            block: Vec::new(),
            widths: HEADER.map(str::len),
            header: false,
            shown: 0,
            closed: false,
        }
    }

    /// Writes (or keeps for its block) one record; false once standard
    /// output is closed.
    fn push(&mut self, r: Record) -> bool {
        self.shown += 1;
        if self.json {
            let ok = serde_json::to_writer(&mut self.out, &r).is_ok()
                && self.out.write_all(b"\n").is_ok();
            self.closed |= !ok;
            return ok;
        }
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let row = [
            r.time,
            r.client,
            dash(r.qtype),
            r.decision,
            dash(r.rcode),
            dash(r.list),
            dash(r.name),
        ];
        for (w, cell) in self.widths.iter_mut().zip(&row) {
            *w = (*w).max(cell.len());
        }
        self.block.push(row);
        if self.block.len() >= BLOCK {
            self.flush_block();
        }
        !self.closed
    }

    fn flush_block(&mut self) {
        let mut text = String::new();
        let line = |text: &mut String, cells: [&str; 7], widths: [usize; 7]| {
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i == 6 {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<w$}  "));
                }
            }
            text.push('\n');
        };
        if !self.header {
            line(&mut text, HEADER, self.widths);
            self.header = true;
        }
        for row in self.block.drain(..) {
            line(&mut text, row.each_ref().map(String::as_str), self.widths);
        }
        self.closed |= self.out.write_all(text.as_bytes()).is_err();
    }

    fn finish(&mut self) {
        if !self.json && (!self.block.is_empty() || !self.header) && self.shown > 0 {
            self.flush_block();
        }
        let _ = self.out.flush();
    }
}
