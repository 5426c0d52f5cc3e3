//! Hosts files (`[local_zones] hosts_files`): `IP name [alias...]` lines
//! read as A and AAAA records, the first name of a line taking the PTR.
//! The stock names every hosts file carries for the machine itself are
//! skipped, and a bad line is counted and reported with its line and column
//! while the rest load.

use super::*;

/// Hosts-file problems shown per file; the rest are counted.
const MAX_HOSTS_PROBLEMS: usize = 20;

/// Names every stock hosts file carries for the machine itself: served
/// from a copy of `/etc/hosts`, they would give the resolver's loopback to
/// every client.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
];

impl Checker<'_> {
    /// Reads one hosts file: `IP name [alias...] [# comment]` lines.
    pub(super) fn hosts_file(
        &mut self,
        path: &Path,
        text: &str,
        key: &str,
        domain: &str,
        ptr: bool,
        out: &mut Collected,
    ) {
        let mut shown = 0usize;
        let mut hidden = 0usize;
        let mut report = |checker: &mut Self, line: usize, col: usize, message: String| {
            if shown < MAX_HOSTS_PROBLEMS {
                shown += 1;
                checker.problem_at(
                    &Location {
                        file: path.to_path_buf(),
                        line,
                        col,
                    },
                    format!("{key}: {message}"),
                );
            } else {
                hidden += 1;
            }
        };
        for (n, raw_line) in text.lines().enumerate() {
            let line = n + 1;
            let content = raw_line.split_once('#').map_or(raw_line, |(c, _)| c);
            let mut tokens = tokens_with_columns(content);
            let Some((addr_col, addr_text)) = tokens.next() else {
                continue;
            };
            let addr_only = addr_text.split_once('%').map_or(addr_text, |(a, _)| a);
            let Ok(addr) = addr_only.parse::<IpAddr>() else {
                report(
                    self,
                    line,
                    addr_col,
                    format!(
                        "{addr_text:?} is not an IP address (a hosts line is \"address name [alias...]\")"
                    ),
                );
                continue;
            };
            let mut names: Vec<(String, usize)> = Vec::new();
            let mut any = false;
            for (col, token) in tokens {
                any = true;
                if HOSTS_BOILERPLATE
                    .iter()
                    .any(|b| token.eq_ignore_ascii_case(b))
                {
                    continue;
                }
                match owner_name(token, domain) {
                    Ok(name) => names.push((name, col)),
                    Err(why) => report(self, line, col, why),
                }
            }
            if !any {
                report(
                    self,
                    line,
                    addr_col,
                    format!("{addr_text} has no name after it"),
                );
                continue;
            }
            let source = out.source();
            for (i, (name, col)) in names.iter().enumerate() {
                let origin = Origin {
                    location: Location {
                        file: path.to_path_buf(),
                        line,
                        col: *col,
                    },
                    key: key.to_owned(),
                    generated: false,
                    source,
                };
                let data = match addr {
                    IpAddr::V4(a) => RecordData::A(a),
                    IpAddr::V6(a) => RecordData::Aaaa(a),
                };
                out.push(Record {
                    name: name.clone(),
                    ttl: DEFAULT_RECORD_TTL,
                    data,
                    origin: origin.clone(),
                });
                // The first name is the host's; the others are aliases.
                if ptr && i == 0 {
                    out.push(Record {
                        name: reverse_name(addr),
                        ttl: DEFAULT_RECORD_TTL,
                        data: RecordData::Ptr(name.clone()),
                        origin: Origin {
                            generated: true,
                            ..origin
                        },
                    });
                }
            }
        }
        if hidden > 0 {
            self.problem_at(
                &Location {
                    file: path.to_path_buf(),
                    line: 1,
                    col: 1,
                },
                format!("{key}: {hidden} more problems in this file not shown"),
            );
        }
    }
}

/// The whitespace-separated words of a line, each with its 1-based column.
fn tokens_with_columns(line: &str) -> impl Iterator<Item = (usize, &str)> {
    line.split_ascii_whitespace().map(move |t| {
        let col = t.as_ptr() as usize - line.as_ptr() as usize + 1;
        (col, t)
    })
}
