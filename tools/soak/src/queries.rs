//! The names the mix sends: each query file turned into wire-format queries
//! once, before the clock starts, packed in one buffer per class and taken
//! in turn; [`compose`] puts the ID and, for some, an OPT record on each.

use std::collections::HashSet;
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

/// Wire-format queries (ID 0, RD set, no EDNS) packed in one buffer.
pub(crate) struct Pool {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    next: usize,
}

impl Pool {
    /// From a dnsperf query file ("name TYPE" a line); `dedup` keeps each
    /// (name, type) once (the lab's hot file repeats its names). Taking
    /// starts at query `start` (modulo their number), so that runs with
    /// different seeds do not send the same names first.
    pub(crate) fn load(path: &Path, dedup: bool, start: u64) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut p = Self::parse(&text, dedup);
        if p.ends.is_empty() {
            return Err(Error::Empty {
                path: path.to_owned(),
            });
        }
        p.next = (start % p.ends.len() as u64) as usize;
        Ok(p)
    }

    fn parse(text: &str, dedup: bool) -> Self {
        let mut seen = HashSet::new();
        let mut p = Self::empty();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let Some(name) = it.next() else { continue };
            if name.starts_with('#') {
                continue;
            }
            let t = it.next().unwrap_or("A");
            if dedup && !seen.insert((name.to_ascii_lowercase(), t.to_ascii_uppercase())) {
                continue;
            }
            let begin = p.bytes.len();
            p.bytes
                .extend_from_slice(&[0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            for label in name
                .trim_end_matches('.')
                .split('.')
                .filter(|l| !l.is_empty())
            {
                let l = &label.as_bytes()[..label.len().min(63)];
                p.bytes.push(l.len() as u8);
                p.bytes.extend_from_slice(l);
            }
            p.bytes.push(0);
            p.bytes.extend_from_slice(&qtype(t).to_be_bytes());
            p.bytes.extend_from_slice(&[0, 1]);
            // Room left in a 512-byte buffer for the OPT record.
            if p.bytes.len() - begin > 400 {
                p.bytes.truncate(begin);
                continue;
            }
            p.ends.push(p.bytes.len() as u32);
        }
        p
    }

    /// A pool for a class the mix does not send.
    pub(crate) fn empty() -> Self {
        Self {
            bytes: Vec::new(),
            ends: Vec::new(),
            next: 0,
        }
    }

    /// The next query, cycling.
    pub(crate) fn take(&mut self) -> &[u8] {
        let i = self.next;
        self.next = if i + 1 == self.ends.len() { 0 } else { i + 1 };
        let begin = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[begin..self.ends[i] as usize]
    }
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

/// Writes `q` into `out` with `id`, and with an OPT record (1232) if `edns`;
/// returns the length written.
pub(crate) fn compose(q: &[u8], id: u16, edns: bool, out: &mut [u8]) -> usize {
    out[..q.len()].copy_from_slice(q);
    out[..2].copy_from_slice(&id.to_be_bytes());
    if !edns {
        return q.len();
    }
    out[11] = 1;
    let opt = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];
    out[q.len()..q.len() + opt.len()].copy_from_slice(&opt);
    q.len() + opt.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_cycles_through_its_queries_from_its_start() {
        let mut p = Pool::parse(
            "# hot names\na.example\nb.example AAAA\n\nc.example TYPE65\n",
            false,
        );
        p.next = 2;
        let mut third = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        third.extend_from_slice(b"\x01c\x07example\x00\x00\x41\x00\x01");
        assert_eq!(p.take(), third.as_slice());
        assert_eq!(&p.take()[12..15], b"\x01a\x07");
        let b = p.take().to_vec();
        assert_eq!(&b[12..15], b"\x01b\x07");
        assert_eq!(&b[b.len() - 4..], [0, 28, 0, 1], "AAAA, IN");
    }

    #[test]
    fn a_hot_file_is_deduplicated_by_name_and_type() {
        let p = Pool::parse("A.example\na.example A\na.example AAAA\nb.example\n", true);
        assert_eq!(p.ends.len(), 3);
        let p = Pool::parse("a.example\na.example\n", false);
        assert_eq!(p.ends.len(), 2);
    }

    #[test]
    fn a_query_too_long_for_an_opt_record_is_left_out() {
        let long = vec!["a".repeat(63); 7].join(".");
        assert_eq!(Pool::parse(&long, false).ends.len(), 0, "7 x 64 bytes");
        let dir = std::env::temp_dir().join(format!("soak-q-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.txt");
        std::fs::write(&path, format!("{long}\n")).unwrap();
        assert!(matches!(
            Pool::load(&path, false, 0),
            Err(Error::Empty { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            Pool::load(&path, false, 0),
            Err(Error::Read { .. })
        ));
    }

    #[test]
    fn compose_sets_the_id_and_the_opt_record() {
        let mut p = Pool::parse("example.com\n", false);
        let q = p.take().to_vec();
        let mut out = [0u8; 512];
        let n = compose(&q, 0xabcd, false, &mut out);
        assert_eq!(&out[..2], [0xab, 0xcd]);
        assert_eq!(&out[2..n], &q[2..]);
        let n = compose(&q, 7, true, &mut out);
        assert_eq!(n, q.len() + 11);
        assert_eq!(out[11], 1, "ARCOUNT");
        assert_eq!(&out[q.len()..n], [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
}
