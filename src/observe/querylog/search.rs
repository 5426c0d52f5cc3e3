//! Searching the query log: which records of the live file and the
//! rotated ones (plain or zstd) a [`Filter`] keeps. `embargo log` and
//! `GET /api/log?client=…` are this; the analyst's question is "what else
//! did 10.1.2.3 ask for?".
//!
//! ```text
//!  queries.log.40.zst … queries.log.2.zst  queries.log.1  queries.log    (oldest … newest)
//!        │  zstd stream decoder, line by line (a line is at most MAX_LINE)
//!        ▼
//!  record::parse_line ─► Filter::matches ─► each(record)         every match, oldest first (scan)
//!                                        └► the newest N          newest file first, stops early (latest)
//! ```
//!
//! Nothing is loaded whole: each file is read through a buffer, and a
//! search for the newest N keeps N records. A line that is no record (a
//! corrupt one, or the live file's last line caught half written) is
//! skipped and counted in [`Stats`], never fatal; a file that cannot be
//! read (a corrupt `.zst`) is named in the stats and the search goes on.
//!
//! The files are read as they are when the search reaches them: a rotation
//! meanwhile moves them up one number, so a search during one may read a
//! file twice or miss one. Records are in time order within a file and
//! from file to file, but for the few milliseconds by which the serving
//! threads' events can overtake each other; the time filters skip whole
//! files only with [`MARGIN_MS`] to spare.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::ClientId;
use super::record::{self, Record};
use crate::config::ClientIp;

/// The longest line read as a record; a longer one is skipped (a file of
/// garbage without newlines must not fill the memory).
pub const MAX_LINE: usize = 64 * 1024;
/// How far out of time order records may be where the time filters skip
/// a whole file.
const MARGIN_MS: u64 = 60_000;
/// Lines read between two looks at the deadline.
const CHECK_EVERY: u64 = 4096;

/// Why a filter could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "client: not an IP address, a network (10.1.2.0/24) or a hashed client (16 hex digits): {0:?}"
    )]
    Client(String),
    #[error("name: {why}: {text:?}")]
    Name { text: String, why: &'static str },
    #[error(
        "{key}: not a time: {text:?} (RFC 3339, such as 2026-11-29T21:30:00Z, or a time ago, such as 1h or 30m)"
    )]
    Time { key: &'static str, text: String },
    #[error("until ({until}) is not after since ({since})")]
    Empty { since: String, until: String },
    #[error("no list {list:?}; the lists are: {}", if known.is_empty() { "(none)".to_owned() } else { known.join(", ") })]
    List { list: String, known: Vec<String> },
}

/// A search as asked for, in words (`embargo log`'s flags, `/api/log`'s
/// parameters); an empty word counts as not given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    pub client: Option<&'a str>,
    pub list: Option<&'a str>,
    pub name: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
}

impl<'a> Asked<'a> {
    /// Whether any filter was given.
    pub fn any(&self) -> bool {
        [self.client, self.list, self.name, self.since, self.until]
            .iter()
            .any(|w| w.is_some_and(|w| !w.trim().is_empty()))
    }

    /// The filter, checked against the config's `lists` and `[log]
    /// client_ip` (`mode`), with notes for the asker on what the log can
    /// answer (a client address widened to what the log keeps of it).
    pub fn filter(
        &self,
        lists: &[&str],
        mode: ClientIp,
        now: SystemTime,
    ) -> Result<(Filter, Vec<String>), Error> {
        let given = |w: Option<&'a str>| w.map(str::trim).filter(|w| !w.is_empty());
        let mut notes = Vec::new();
        let client = match given(self.client) {
            None => None,
            Some(c) => {
                let asked: ClientMatch = c.parse()?;
                match (asked.as_logged(mode), asked, mode) {
                    (Some(wide), _, _) => {
                        notes.push(format!(
                            "[log] client_ip = \"truncate\": the log keeps {wide}, not {asked}: every client of {wide} is shown"
                        ));
                        Some(wide)
                    }
                    (None, ClientMatch::Net { .. }, ClientIp::Hash) => {
                        notes.push("[log] client_ip = \"hash\": the log keeps a keyed hash per client, not its address (an address matches only records written when the log kept addresses); give the hash the log shows".to_owned());
                        Some(asked)
                    }
                    _ => Some(asked),
                }
            }
        };
        let list = match given(self.list) {
            Some(l) if !lists.contains(&l) => {
                return Err(Error::List {
                    list: l.to_owned(),
                    known: lists.iter().map(|s| (*s).to_owned()).collect(),
                });
            }
            l => l.map(str::to_owned),
        };
        let filter = Filter {
            client,
            list,
            name: given(self.name).map(parse_name).transpose()?,
            since_ms: given(self.since)
                .map(|t| parse_time("since", t, now))
                .transpose()?,
            until_ms: given(self.until)
                .map(|t| parse_time("until", t, now))
                .transpose()?,
        };
        filter.check()?;
        Ok((filter, notes))
    }
}

/// Which clients a search keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMatch {
    /// Addresses in this network (a single address is a /32 or /128).
    Net { addr: IpAddr, len: u8 },
    /// A hashed client (`[log] client_ip = "hash"`), as the log shows it.
    Hash(u64),
}

impl std::str::FromStr for ClientMatch {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || Error::Client(text.to_owned());
        let t = text.trim();
        let (ip, len) = match t.split_once('/') {
            Some((ip, len)) => (ip, Some(len.parse::<u8>().map_err(|_| bad())?)),
            None => (t, None),
        };
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return match (len, t.parse::<ClientId>()) {
                (None, Ok(ClientId::Hash(h))) => Ok(Self::Hash(h)),
                _ => Err(bad()),
            };
        };
        let ip = canonical(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        Ok(Self::Net {
            addr: mask(ip, len),
            len,
        })
    }
}

impl std::fmt::Display for ClientMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Net { addr, len } if u32::from(*len) == max_len(*addr) => addr.fmt(f),
            Self::Net { addr, len } => write!(f, "{addr}/{len}"),
            Self::Hash(h) => write!(f, "{h:016x}"),
        }
    }
}

impl ClientMatch {
    /// What the log holds of this client under `mode`: with `"truncate"`
    /// the log has each address cut to its /24 (IPv6: /56), so a single
    /// address or a narrower network is widened to that. `None` when
    /// nothing changes.
    pub fn as_logged(self, mode: ClientIp) -> Option<Self> {
        let Self::Net { addr, len } = self else {
            return None;
        };
        let wide = if addr.is_ipv4() { 24 } else { 56 };
        (mode == ClientIp::Truncate && len > wide).then(|| Self::Net {
            addr: mask(addr, wide),
            len: wide,
        })
    }

    /// Whether a record's client (as the log writes it) is this one.
    pub fn matches(&self, client: &str) -> bool {
        match (self, client.parse::<ClientId>()) {
            (Self::Net { addr, len }, Ok(ClientId::Addr(ip))) => {
                let ip = canonical(ip);
                ip.is_ipv4() == addr.is_ipv4() && mask(ip, *len) == *addr
            }
            (Self::Hash(h), Ok(ClientId::Hash(x))) => *h == x,
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address, as the log writes it.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn max_len(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// `ip` with all but its first `len` bits cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// A name as the log writes names: lowercase ASCII (IDNA for the rest),
/// no trailing dot. The root (`.`) is the empty string, which every name
/// is under.
pub fn parse_name(text: &str) -> Result<String, Error> {
    let bad = |why| Error::Name {
        text: text.to_owned(),
        why,
    };
    let t = text.trim();
    if t == "." {
        return Ok(String::new());
    }
    let t = t.strip_suffix('.').unwrap_or(t);
    if t.is_empty() {
        return Err(bad("empty"));
    }
    let ascii = if t.is_ascii() {
        t.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(t).map_err(|_| bad("not a valid international name"))?
    };
    if ascii.contains(char::is_whitespace) {
        return Err(bad("a name has no spaces"));
    }
    if ascii.split('.').any(str::is_empty) {
        return Err(bad("empty label"));
    }
    Ok(ascii)
}

/// Whether `name` (as the log writes it) is `under` or below it; ASCII
/// case does not count, and a dot the log escaped (`\.`, inside a label)
/// is no label boundary.
pub fn name_under(name: &str, under: &str) -> bool {
    if under.is_empty() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() < under.len() {
        return false;
    }
    let split = name.len() - under.len();
    if !name.is_char_boundary(split) || !name[split..].eq_ignore_ascii_case(under) {
        return false;
    }
    if split == 0 {
        return true;
    }
    let head = &name.as_bytes()[..split];
    // The byte before is a dot, and not one escaped by an odd run of
    // backslashes.
    head.last() == Some(&b'.')
        && head[..split - 1]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count()
            % 2
            == 0
}

/// A point in time as `--since` and `--until` take it: RFC 3339 (`Z`, an
/// offset such as `+02:00`, or none: UTC), a date (its midnight, UTC), or
/// a time ago (`1h`, `30m`, `2days`). In milliseconds since the epoch.
pub fn parse_time(key: &'static str, text: &str, now: SystemTime) -> Result<u64, Error> {
    let bad = || Error::Time {
        key,
        text: text.to_owned(),
    };
    let t = text.trim();
    if let Ok(ago) = humantime::parse_duration(t) {
        return now
            .checked_sub(ago)
            .and_then(record::millis)
            .ok_or_else(bad);
    }
    // An offset: `+HH:MM` or `-HH:MM` at the end, after a time of day.
    let (local, offset) = match t
        .len()
        .checked_sub(6)
        .and_then(|i| t.get(i..).zip(t.get(..i)))
    {
        Some((tail, head))
            if head.contains(['T', 't', ' '])
                && tail.len() == 6
                && matches!(tail.as_bytes()[0], b'+' | b'-')
                && tail.as_bytes()[3] == b':' =>
        {
            let hours: u64 = tail[1..3].parse().map_err(|_| bad())?;
            let minutes: u64 = tail[4..6].parse().map_err(|_| bad())?;
            let secs = (hours * 60 + minutes) * 60;
            (head, Some((tail.as_bytes()[0] == b'+', secs)))
        }
        _ => (t, None),
    };
    let local = local.strip_suffix(['Z', 'z']).unwrap_or(local);
    let at = if local.len() == 10 {
        humantime::parse_rfc3339_weak(&format!("{local}T00:00:00"))
    } else {
        humantime::parse_rfc3339_weak(local)
    }
    .map_err(|_| bad())?;
    // 10:00+02:00 is 08:00 UTC.
    let at = match offset {
        Some((true, secs)) => at.checked_sub(Duration::from_secs(secs)),
        Some((false, secs)) => at.checked_add(Duration::from_secs(secs)),
        None => Some(at),
    };
    at.and_then(record::millis).ok_or_else(bad)
}

/// What a search keeps: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub client: Option<ClientMatch>,
    /// The list that blocked the query.
    pub list: Option<String>,
    /// The name or a name under it ([`parse_name`]'s form).
    pub name: Option<String>,
    /// From this time on (milliseconds since the epoch)...
    pub since_ms: Option<u64>,
    /// ... and before this one.
    pub until_ms: Option<u64>,
}

impl Filter {
    /// Whether `r` is kept.
    pub fn matches(&self, r: &Record) -> bool {
        self.since_ms.is_none_or(|s| r.time_ms >= s)
            && self.until_ms.is_none_or(|u| r.time_ms < u)
            && self
                .list
                .as_ref()
                .is_none_or(|l| r.list.as_deref() == Some(l.as_str()))
            && self.client.is_none_or(|c| c.matches(&r.client))
            && self.name.as_ref().is_none_or(|under| {
                r.name
                    .as_deref()
                    .is_some_and(|name| name_under(name, under))
            })
    }

    /// An error when `until` is not after `since` (nothing could match).
    pub fn check(&self) -> Result<(), Error> {
        match (self.since_ms, self.until_ms) {
            (Some(s), Some(u)) if u <= s => Err(Error::Empty {
                since: show_ms(s),
                until: show_ms(u),
            }),
            _ => Ok(()),
        }
    }
}

/// Milliseconds since the epoch as RFC 3339.
fn show_ms(ms: u64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One of the log's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// Read through the zstd decoder.
    pub compressed: bool,
}

/// The log's files, oldest first: `path.N[.zst]` from the highest number
/// down, then `path` itself (those that exist). Where the compressor has
/// just written `path.N.zst` and not yet removed `path.N`, the plain one
/// is read (the same records).
pub fn files(path: &Path) -> io::Result<Vec<LogFile>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let mut numbered: Vec<(u32, bool)> = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(base))
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        let (number, compressed) = match rest.strip_suffix(".zst") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        if let Ok(n) = number.parse::<u32>()
            && number.bytes().all(|b| b.is_ascii_digit())
            && n > 0
        {
            numbered.push((n, compressed));
        }
    }
    // Highest number first; for one number, the plain file first.
    numbered.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    numbered.dedup_by_key(|(n, _)| *n);
    let mut out: Vec<LogFile> = numbered
        .into_iter()
        .map(|(n, compressed)| {
            let mut p = path.as_os_str().to_owned();
            p.push(if compressed {
                format!(".{n}.zst")
            } else {
                format!(".{n}")
            });
            LogFile {
                path: PathBuf::from(p),
                compressed,
            }
        })
        .collect();
    if path.is_file() {
        out.push(LogFile {
            path: path.to_path_buf(),
            compressed: false,
        });
    }
    Ok(out)
}

/// What a search read and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Files read (wholly or in part).
    pub files: u64,
    /// Lines read as records.
    pub records: u64,
    /// Lines that were no record, skipped.
    pub skipped: u64,
    /// The first of them: file, line number, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_skipped: Option<String>,
    /// Files that could not be read (whole or to their end), and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

impl Stats {
    fn skip(&mut self, file: &Path, line: u64, why: &dyn std::fmt::Display) {
        self.skipped += 1;
        if self.first_skipped.is_none() {
            self.first_skipped = Some(format!("{}:{line}: {why}", file.display()));
        }
    }
}

/// Whether a search goes on after a record or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    Stop,
}

/// How a search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every file read.
    Done,
    /// The caller said stop.
    Stopped,
    /// The deadline passed.
    TimedOut,
}

/// One line, read up to [`MAX_LINE`].
enum Line {
    /// A whole line (its newline removed).
    Whole,
    /// The end of the file came before a newline: a line cut short.
    Cut,
    /// Longer than [`MAX_LINE`]: skipped to its newline.
    TooLong,
    Eof,
}

/// Reads the next line into `buf`, never more than [`MAX_LINE`] of it.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let mut long = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (buf.is_empty() && !long, long) {
                (true, _) => Line::Eof,
                (false, true) => Line::TooLong,
                (false, false) => Line::Cut,
            });
        }
        let (take, found) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let body = &chunk[..if found { take - 1 } else { take }];
        if !long && buf.len() + body.len() <= MAX_LINE {
            buf.extend_from_slice(body);
        } else {
            long = true;
            buf.clear();
        }
        r.consume(take);
        if found {
            return Ok(if long { Line::TooLong } else { Line::Whole });
        }
    }
}

/// Opens a file of the log for reading, through zstd when compressed.
fn open(file: &LogFile) -> io::Result<Box<dyn BufRead>> {
    let f = File::open(&file.path)?;
    Ok(if file.compressed {
        Box::new(BufReader::with_capacity(
            1 << 16,
            zstd::stream::read::Decoder::new(f)?,
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, f))
    })
}

/// Reads `file`, handing each record `filter` keeps to `each`; `Stop`
/// ends the search. Lines that are no record are counted in `stats`; a
/// read error ends the file (named in `stats`), not the search.
pub fn scan_file(
    file: &LogFile,
    filter: &Filter,
    deadline: Option<Instant>,
    stats: &mut Stats,
    each: &mut dyn FnMut(Record) -> Next,
) -> End {
    let mut reader = match open(file) {
        Ok(r) => r,
        // Rotated away or compressed meanwhile: nothing to read.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return End::Done,
        Err(e) => {
            stats
                .unreadable
                .push(format!("{}: {e}", file.path.display()));
            return End::Done;
        }
    };
    stats.files += 1;
    let mut buf = Vec::with_capacity(512);
    let mut number = 0u64;
    loop {
        number += 1;
        if number.is_multiple_of(CHECK_EVERY) && deadline.is_some_and(|d| Instant::now() >= d) {
            return End::TimedOut;
        }
        match read_line(&mut reader, &mut buf) {
            Ok(Line::Eof) => return End::Done,
            Ok(Line::Whole) if buf.is_empty() => {}
            Ok(Line::Whole) => match record::parse_line(&buf) {
                Ok(r) => {
                    stats.records += 1;
                    if filter.matches(&r) && each(r) == Next::Stop {
                        return End::Stopped;
                    }
                }
                Err(e) => stats.skip(&file.path, number, &e),
            },
            Ok(Line::Cut) => stats.skip(&file.path, number, &"cut short (no newline)"),
            Ok(Line::TooLong) => stats.skip(
                &file.path,
                number,
                &format_args!("longer than {MAX_LINE} bytes"),
            ),
            Err(e) => {
                stats
                    .unreadable
                    .push(format!("{}: line {number}: {e}", file.path.display()));
                return End::Done;
            }
        }
    }
}

/// The time of the first record of `file`, if it has one in its first lines.
fn first_time(file: &LogFile) -> Option<u64> {
    let mut reader = open(file).ok()?;
    let mut buf = Vec::new();
    for _ in 0..16 {
        match read_line(&mut reader, &mut buf).ok()? {
            Line::Whole => {
                if let Ok(r) = record::parse_line(&buf) {
                    return Some(r.time_ms);
                }
            }
            Line::Eof => return None,
            Line::Cut | Line::TooLong => {}
        }
    }
    None
}

/// Every record `filter` keeps, oldest first, to `each`. With a time
/// filter, a file is skipped without reading it when the first record of
/// the next newer file is older than `since` (so is all of it), and the
/// search ends at the first file whose first record is past `until`.
///
/// The log is in the order the observer drained its rings, which is not
/// quite time order (a forward's record can be written before a block
/// asked a moment earlier): records are handed on in time order through
/// a window of [`REORDER_MS`] (at most [`REORDER_MAX`] records held).
pub fn scan(
    files: &[LogFile],
    filter: &Filter,
    deadline: Option<Instant>,
    stats: &mut Stats,
    each: &mut dyn FnMut(Record) -> Next,
) -> End {
    let mut window = Reorder::default();
    let mut pass = |r: Record| {
        for r in window.push(r) {
            if each(r) == Next::Stop {
                return Next::Stop;
            }
        }
        Next::Continue
    };
    let end = scan_files(files, filter, deadline, stats, &mut pass);
    if end == End::Stopped {
        return end;
    }
    for r in window.drain() {
        if each(r) == Next::Stop {
            return End::Stopped;
        }
    }
    end
}

fn scan_files(
    files: &[LogFile],
    filter: &Filter,
    deadline: Option<Instant>,
    stats: &mut Stats,
    each: &mut dyn FnMut(Record) -> Next,
) -> End {
    for (i, file) in files.iter().enumerate() {
        if let Some(since) = filter.since_ms
            && let Some(newer) = files.get(i + 1)
            && first_time(newer).is_some_and(|t| t.saturating_add(MARGIN_MS) < since)
        {
            continue;
        }
        if let Some(until) = filter.until_ms
            && first_time(file).is_some_and(|t| t > until.saturating_add(MARGIN_MS))
        {
            return End::Done;
        }
        match scan_file(file, filter, deadline, stats, each) {
            End::Done => {}
            end => return end,
        }
    }
    End::Done
}

/// How far out of time order [`scan`] puts records right.
pub const REORDER_MS: u64 = 10_000;
/// Records [`scan`] holds at most to put them in order.
const REORDER_MAX: usize = 100_000;

/// Records held until none older can come (module doc of [`scan`]).
#[derive(Default)]
struct Reorder {
    held: std::collections::BinaryHeap<std::cmp::Reverse<Held>>,
    newest: u64,
    seq: u64,
}

/// A held record, ordered by time, then by the order it was read in.
struct Held(u64, u64, Record);

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

impl Reorder {
    /// Takes `r`; gives back the records no later one can precede.
    fn push(&mut self, r: Record) -> Vec<Record> {
        self.newest = self.newest.max(r.time_ms);
        self.seq += 1;
        self.held
            .push(std::cmp::Reverse(Held(r.time_ms, self.seq, r)));
        let mut out = Vec::new();
        while let Some(std::cmp::Reverse(h)) = self.held.peek() {
            if h.0.saturating_add(REORDER_MS) > self.newest && self.held.len() <= REORDER_MAX {
                break;
            }
            if let Some(std::cmp::Reverse(Held(_, _, r))) = self.held.pop() {
                out.push(r);
            }
        }
        out
    }

    /// Everything held, in order.
    fn drain(&mut self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.held.len());
        while let Some(std::cmp::Reverse(Held(_, _, r))) = self.held.pop() {
            out.push(r);
        }
        out
    }
}

/// The newest records a search found.
#[derive(Debug, Clone, Default)]
pub struct Latest {
    /// Oldest first.
    pub records: Vec<Record>,
    /// Older records may match too: the limit or the deadline left them.
    pub more: bool,
    pub timed_out: bool,
    pub stats: Stats,
}

/// The newest `limit` records `filter` keeps, read newest file first: the
/// search stops at the first file that completes them (or past `since`),
/// so asking for the latest few is quick however long the log is kept.
pub fn latest(
    files: &[LogFile],
    filter: &Filter,
    limit: usize,
    deadline: Option<Instant>,
) -> Latest {
    let mut found = Latest::default();
    // Newest first: each file's matches go before those of newer files.
    let mut newest_first: Vec<Vec<Record>> = Vec::new();
    let mut have = 0usize;
    for file in files.iter().rev() {
        if have >= limit {
            found.more = true;
            break;
        }
        let first = first_time(file);
        if let Some(until) = filter.until_ms
            && first.is_some_and(|t| t > until.saturating_add(MARGIN_MS))
        {
            continue;
        }
        // The last `room` matches of this file.
        let room = limit - have;
        let mut ring = std::collections::VecDeque::with_capacity(room.min(1024));
        let mut dropped = false;
        let end = scan_file(file, filter, deadline, &mut found.stats, &mut |r| {
            if ring.len() == room {
                ring.pop_front();
                dropped = true;
            }
            ring.push_back(r);
            Next::Continue
        });
        if end == End::TimedOut {
            // This file's newest lines are unread: its matches so far
            // would leave a gap, so none of them is given.
            found.timed_out = true;
            found.more = true;
            break;
        }
        have += ring.len();
        found.more |= dropped;
        newest_first.push(ring.into());
        if let Some(since) = filter.since_ms
            && first.is_some_and(|t| t.saturating_add(MARGIN_MS) < since)
        {
            break;
        }
    }
    found.records = newest_first.into_iter().rev().flatten().collect();
    // In time order (stable: equal times stay in the log's order), as
    // `scan` gives them.
    found.records.sort_by_key(|r| r.time_ms);
    found
}
