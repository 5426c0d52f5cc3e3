//! The queries to send: a dnsperf query file ("name TYPE" a line, `#` for
//! a comment) turned into wire-format queries once, before the clock starts.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no queries in it", path.display())]
    Empty { path: PathBuf },
}

/// Wire-format queries (ID 0, RD set, with an OPT record of 1232 bytes if
/// `edns`); a query longer than 512 bytes is left out.
pub(crate) fn load(path: &Path, edns: bool) -> Result<Vec<Vec<u8>>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let out: Vec<Vec<u8>> = text.lines().filter_map(|l| query(l, edns)).collect();
    if out.is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

/// One line's query, or None for a blank line, a comment, or a query too
/// long for 512 bytes.
fn query(line: &str, edns: bool) -> Option<Vec<u8>> {
    let mut it = line.split_whitespace();
    let name = it.next()?;
    if name.starts_with('#') {
        return None;
    }
    let t = qtype(it.next().unwrap_or("A"));
    let mut p = vec![0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        let l = &label.as_bytes()[..label.len().min(63)];
        p.push(l.len() as u8);
        p.extend_from_slice(l);
    }
    p.push(0);
    p.extend_from_slice(&t.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    if edns {
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    (p.len() <= 512).then_some(p)
}

/// A query type by mnemonic or `TYPEn`; anything else is A.
fn qtype(t: &str) -> u16 {
    match t.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "HTTPS" => 65,
        "ANY" => 255,
        t => t.trim_start_matches("TYPE").parse().unwrap_or(1),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_its_wire_query() {
        let q = query("Example.COM. AAAA", false).unwrap();
        let mut want = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x07Example\x03COM\x00\x00\x1c\x00\x01");
        assert_eq!(q, want);
        let e = query("example.com", true).unwrap();
        assert_eq!(e[11], 1, "ARCOUNT 1 with EDNS");
        assert_eq!(&e[e.len() - 11..], [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&e[e.len() - 15..e.len() - 11], [0, 1, 0, 1], "A, IN");
    }

    #[test]
    fn comments_blank_lines_and_oversize_queries_are_left_out() {
        assert!(query("# a comment", false).is_none());
        assert!(query("   ", false).is_none());
        let long = vec!["a".repeat(63); 8].join(".");
        assert!(query(&long, false).is_none(), "8 x 64 bytes of labels");
        let q = query(&"b".repeat(70), false).unwrap();
        assert_eq!(q[12], 63, "a label is cut at 63 bytes");
    }

    #[test]
    fn types_by_name_or_number() {
        assert_eq!(qtype("https"), 65);
        assert_eq!(qtype("TYPE257"), 257);
        assert_eq!(qtype("bogus"), 1);
    }

    #[test]
    fn a_file_without_queries_is_an_error() {
        let dir = std::env::temp_dir().join(format!("loadgen-q-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.txt");
        std::fs::write(&path, "# nothing\n\n").unwrap();
        assert!(matches!(load(&path, false), Err(Error::Empty { .. })));
        std::fs::write(&path, "a.example A\nb.example\n").unwrap();
        assert_eq!(load(&path, false).unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(load(&path, false), Err(Error::Read { .. })));
    }
}
