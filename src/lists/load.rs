//! Reads a list file line by line through its format's parser, normalises
//! each name, and hands it to a sink. Bad lines are counted; the first
//! [`MAX_WARNINGS`] are kept with their line numbers for the operator.
//!
//! The file is streamed (a reused line buffer), never read whole, so loading a
//! million-line list peaks at the size of the matcher, not of the file.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::format::{Format, NetEntry, Outcome, Rule};
use crate::matcher::{NameError, NameKey};

/// How many bad lines are kept with their text; the rest are only counted.
pub const MAX_WARNINGS: usize = 20;

/// A list line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineWarning {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What loading one list found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListStats {
    /// The format used (detected or configured).
    pub format: Option<Format>,
    pub lines: u64,
    /// Names accepted (before removing duplicates).
    pub names: u64,
    /// Networks accepted (an `ips` list's lines, RPZ `rpz-ip` triggers).
    pub nets: u64,
    /// Names already given by this or an earlier list (filled in after the build).
    pub duplicates: u64,
    /// Lines or names that are not valid in the format or not domain names.
    pub invalid: u64,
    /// Valid syntax that embargo does not implement (adblock exceptions, RPZ IP triggers...).
    pub unsupported: u64,
    /// The first bad lines, with their numbers.
    pub warnings: Vec<LineWarning>,
}

impl ListStats {
    /// Unique entries this list contributes (networks included).
    pub fn entries(&self) -> u64 {
        self.names.saturating_sub(self.duplicates) + self.nets
    }

    fn warn(&mut self, line: usize, message: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(LineWarning { line, message });
        }
    }
}

/// A list file that could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct LoadError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Loads `path`, calling `sink` for every valid name with what the list
/// says about it. Networks are counted (`ListStats::nets`) and left out:
/// [`load_file_with_nets`] hands them over too.
pub fn load_file(
    path: &Path,
    format: Option<Format>,
    sink: &mut dyn FnMut(&NameKey, Rule),
) -> Result<ListStats, LoadError> {
    load_file_with_nets(path, format, sink, &mut |_| {})
}

/// [`load_file`], handing every network the list names to `nets`.
pub fn load_file_with_nets(
    path: &Path,
    format: Option<Format>,
    sink: &mut dyn FnMut(&NameKey, Rule),
    nets: &mut dyn FnMut(NetEntry),
) -> Result<ListStats, LoadError> {
    let err = |source| LoadError {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let format = match format {
        Some(f) => f,
        None => {
            let sample = reader.fill_buf().map_err(err)?;
            Format::detect(&String::from_utf8_lossy(sample))
        }
    };
    if format == Format::OfacSdn {
        drop(reader);
        return load_ofac(path, &mut |key, _, _| sink(key, Rule::BLOCK));
    }
    load_lines_with_nets(&mut reader, format, sink, nets).map_err(err)
}

/// Reads a list's lines from `reader` through `format`'s parser (an OFAC SDN
/// file is read whole by [`load_ofac`] instead): what [`load_file`] does
/// once the file is open and its format known.
pub fn load_lines(
    reader: &mut dyn BufRead,
    format: Format,
    sink: &mut dyn FnMut(&NameKey, Rule),
) -> std::io::Result<ListStats> {
    load_lines_with_nets(reader, format, sink, &mut |_| {})
}

/// [`load_lines`], handing every network the list names to `nets`.
pub fn load_lines_with_nets(
    reader: &mut dyn BufRead,
    format: Format,
    sink: &mut dyn FnMut(&NameKey, Rule),
    nets: &mut dyn FnMut(NetEntry),
) -> std::io::Result<ListStats> {
    let mut stats = ListStats {
        format: Some(format),
        ..ListStats::default()
    };
    let mut parser = format.parser();
    let mut buf = Vec::with_capacity(256);
    let mut lineno = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lineno += 1;
        stats.lines += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            stats.invalid += 1;
            stats.warn(lineno, "not valid UTF-8".into());
            continue;
        };
        let mut bad_names: Vec<(String, NameError)> = Vec::new();
        let mut net_count = 0u64;
        let mut net_sink = |entry: NetEntry| {
            net_count += 1;
            nets(entry);
        };
        let outcome = parser.parse_line_with_nets(
            line,
            &mut |entry| match NameKey::from_text(&entry.name, entry.wildcard) {
                Ok(key) => {
                    stats.names += 1;
                    sink(
                        &key,
                        Rule {
                            kind: entry.kind,
                            scope: format.scope(entry.wildcard),
                        },
                    );
                }
                Err(e) => bad_names.push((entry.name.to_string(), e)),
            },
            &mut net_sink,
        );
        stats.nets += net_count;
        match outcome {
            Outcome::Entries | Outcome::Skip => {}
            Outcome::Unsupported(what) => {
                stats.unsupported += 1;
                stats.warn(lineno, format!("unsupported: {what}"));
            }
            Outcome::Invalid(why) => {
                stats.invalid += 1;
                stats.warn(lineno, why);
            }
        }
        for (name, e) in bad_names {
            stats.invalid += 1;
            stats.warn(lineno, format!("{name:?}: {e}"));
        }
    }
    Ok(stats)
}

/// The format of a file: `configured`, or detected from its first 64 KiB.
pub fn detect_file(path: &Path, configured: Option<Format>) -> Result<Format, LoadError> {
    if let Some(f) = configured {
        return Ok(f);
    }
    let err = |source| LoadError {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let sample = reader.fill_buf().map_err(err)?;
    Ok(Format::detect(&String::from_utf8_lossy(sample)))
}

/// Loads an OFAC SDN file (XML or CSV): `sink` gets each website's domain
/// with the index and record of its entity, for per-entry provenance.
pub fn load_ofac(
    path: &Path,
    sink: &mut dyn FnMut(&NameKey, usize, &super::ofac::Entity),
) -> Result<ListStats, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(load_ofac_text(&text, sink))
}

/// What [`load_ofac`] does with the file's text.
pub fn load_ofac_text(
    text: &str,
    sink: &mut dyn FnMut(&NameKey, usize, &super::ofac::Entity),
) -> ListStats {
    let mut stats = ListStats {
        format: Some(Format::OfacSdn),
        ..ListStats::default()
    };
    let sdn = match super::ofac::parse(text) {
        Ok(sdn) => sdn,
        Err(e) => {
            // A broken file loads nothing, and says where it broke.
            stats.invalid += 1;
            stats.warn(1, e);
            return stats;
        }
    };
    stats.lines = sdn.records as u64;
    for w in &sdn.websites {
        let Some(entity) = sdn.entities.get(w.entity) else {
            continue;
        };
        let parsed = super::ofac::website_domain(&w.address)
            .ok_or(NameError::Empty)
            .and_then(|d| NameKey::from_text(d, false));
        match parsed {
            Ok(key) => {
                stats.names += 1;
                sink(&key, w.entity, entity);
            }
            Err(e) => {
                stats.invalid += 1;
                stats.warn(
                    w.line,
                    format!("website {:?} of {}: {e}", w.address, entity.name),
                );
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::EntryKind;
    use std::io::Write;

    fn load_rules(text: &str, format: Option<Format>) -> (Vec<(String, Rule)>, ListStats) {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        f.write_all(text.as_bytes()).expect("write");
        let mut names = Vec::new();
        let stats = load_file(f.path(), format, &mut |k, rule| {
            names.push((k.to_string(), rule))
        })
        .expect("load");
        (names, stats)
    }

    fn load(text: &str, format: Option<Format>) -> (Vec<(String, EntryKind)>, ListStats) {
        let (names, stats) = load_rules(text, format);
        (names.into_iter().map(|(n, r)| (n, r.kind)).collect(), stats)
    }

    /// Issue 16 (2): an RPZ trigger `x` covers x alone and `*.x` the names
    /// below x; in a plain list both cover the subtree, as they always did.
    #[test]
    fn r16_rpz_triggers_carry_their_scope_and_plain_entries_the_subtree() {
        use crate::matcher::Scope;
        let (names, _) = load_rules(
            "$ORIGIN rpz.test.\n@ SOA ns. h. 1 2 3 4 5\nx.example CNAME .\n*.y.example CNAME *.\n*.z.example CNAME rpz-passthru.\n*.com CNAME .\n",
            None,
        );
        let rule = |kind, scope| Rule { kind, scope };
        assert_eq!(
            names,
            [
                ("x.example".into(), rule(EntryKind::Nxdomain, Scope::Exact)),
                ("y.example".into(), rule(EntryKind::Nodata, Scope::Below)),
                ("z.example".into(), rule(EntryKind::Passthru, Scope::Below)),
                ("com".into(), rule(EntryKind::Nxdomain, Scope::Below)),
            ]
        );
        for format in [Format::Domains, Format::Hosts, Format::Adblock] {
            let text = match format {
                Format::Hosts => "0.0.0.0 x.example\n",
                Format::Adblock => "||x.example^\n",
                _ => "x.example\n*.y.example\n",
            };
            let (names, _) = load_rules(text, Some(format));
            assert!(!names.is_empty());
            assert!(
                names.iter().all(|(_, r)| *r == Rule::BLOCK),
                "{format:?}: {names:?}"
            );
        }
    }

    /// Issue 9 (1): the vendor's zone with a second $ORIGIN blocks the
    /// qualified names, and an owner outside the zone is reported with its line.
    #[test]
    fn r9_rpz_second_origin_blocks_qualified_names() {
        let (names, stats) = load(
            "$TTL 300\n$ORIGIN rpz.vendor.test.\n@ SOA ns.vendor.test. h.vendor.test. 1 3600 600 86400 60\n  NS ns.vendor.test.\n$ORIGIN sub.example.rpz.vendor.test.\nwww CNAME .\nstray.other.test. CNAME .\n",
            None,
        );
        assert_eq!(
            names,
            [("www.sub.example".to_string(), EntryKind::Nxdomain)]
        );
        assert_eq!(stats.format, Some(Format::Rpz));
        assert_eq!(stats.invalid, 1);
        assert_eq!(stats.warnings[0].line, 7);
        assert!(
            stats.warnings[0].message.contains("stray.other.test.")
                && stats.warnings[0]
                    .message
                    .contains("outside the policy zone"),
            "{:?}",
            stats.warnings
        );
    }

    /// Issue 20: an `ips` list (Spamhaus DROP style) loads its networks;
    /// a bad line is counted with its number and the rest loads.
    #[test]
    fn r20_ip_list_loads_networks_and_counts_bad_lines() {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        f.write_all(
            b"; Spamhaus DROP List\n1.10.16.0/20 ; SBL256894\n192.0.2.7/24\n2001:db8::/32\nnot-an-ip\n198.51.100.7\n",
        )
        .expect("write");
        let mut nets = Vec::new();
        let mut names = 0;
        let stats = load_file_with_nets(f.path(), None, &mut |_, _| names += 1, &mut |n| {
            nets.push(n.net.to_string())
        })
        .expect("load");
        assert_eq!(stats.format, Some(Format::Ips));
        assert_eq!(nets, ["1.10.16.0/20", "2001:db8::/32", "198.51.100.7/32"]);
        assert_eq!((names, stats.nets, stats.entries()), (0, 3, 3));
        assert_eq!(stats.invalid, 2);
        let lines: Vec<usize> = stats.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [3, 5]);
        assert!(
            stats.warnings[0].message.contains("192.0.2.0/24"),
            "{:?}",
            stats.warnings
        );
        // The names-only loader counts the networks and hands over none.
        let stats = load_file(f.path(), None, &mut |_, _| names += 1).expect("load");
        assert_eq!((names, stats.nets), (0, 3));
    }

    #[test]
    fn bad_lines_are_counted_with_numbers_and_the_rest_loads() {
        let (names, stats) = load(
            "# header\nGood.Example\n1.2.3.4\nbad name.example\n*.wild.example\ncom\nlast.example.\r\n",
            Some(Format::Domains),
        );
        let names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["good.example", "wild.example", "last.example"]);
        assert_eq!(stats.lines, 7);
        assert_eq!(stats.names, 3);
        assert_eq!(stats.invalid, 3);
        let lines: Vec<usize> = stats.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [3, 4, 6]);
        assert!(
            stats.warnings[2].message.contains("top-level"),
            "{:?}",
            stats.warnings
        );
    }

    #[test]
    fn detects_hosts_and_keeps_every_name_on_a_line() {
        let (names, stats) = load(
            "0.0.0.0 a.example b.example # two\n127.0.0.1 localhost\n",
            None,
        );
        assert_eq!(stats.format, Some(Format::Hosts));
        assert_eq!(names.len(), 2);
    }

    /// Found by fuzzing: the warning for "*." named an empty name, not the line's token.
    #[test]
    fn fuzz_bare_wildcard_is_warned_about_by_its_text() {
        let (names, stats) = load("a.example\n*.\n", Some(Format::Domains));
        assert_eq!(names.len(), 1);
        assert_eq!(stats.invalid, 1);
        assert!(
            stats.warnings[0].message.starts_with("\"*.\": "),
            "{:?}",
            stats.warnings
        );
    }

    #[test]
    fn invalid_utf8_is_one_bad_line() {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        f.write_all(b"ok.example\n\xff\xfe.example\nok2.example\n")
            .expect("write");
        let mut n = 0;
        let stats = load_file(f.path(), Some(Format::Domains), &mut |_, _| n += 1).expect("load");
        assert_eq!((n, stats.invalid), (2, 1));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load_file(Path::new("/nonexistent/list.txt"), None, &mut |_, _| {})
            .expect_err("missing");
        assert!(
            err.to_string().starts_with("/nonexistent/list.txt:"),
            "{err}"
        );
    }
}
