//! Everything that brings a list's bytes from elsewhere: HTTP(S) downloads
//! ([`http`]), RPZ zone transfers with NOTIFY and TSIG ([`xfr`]), and the
//! state directory that keeps the last good copy of each ([`store`]).
//!
//! ```text
//!  config::ListSpec ──► source::{http, xfr} ──► store (atomic copy + meta) ──► reload ──► lists (parse)
//! ```
//!
//! Whatever brings a version, it replaces the copy in use only through the
//! same guards ([`vet`]): it must fit `max_size` (counted as it streams in,
//! so a source that never stops costs at most that much memory), must not
//! have lost more than `max_shrink` of the names, nor all of them, and must
//! parse. Parsing, writing and fsyncing run in [`background`], off the
//! runtime that carries forwarded answers. A list that must be signed must
//! first carry its publisher's signature ([`signature`]).
//!
//! This module sits above `config` (it reads the list descriptions) and
//! `lists` (it parses a download before adopting it); `reload` drives it on
//! timers, NOTIFYs and `embargo fetch`. Nothing below imports it.

pub mod background;
pub mod http;
pub mod signature;
pub mod store;
pub mod xfr;

pub use store::{FetchMeta, read_meta, write_atomic};

use crate::config::ListSpec;
use crate::lists::ListStats;

/// The result of one refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new version replaced the copy: reload.
    Updated { entries: u64 },
    /// 304 Not Modified, or the same bytes.
    NotModified,
    /// Downloaded but refused; the last good copy stays.
    Refused(String),
    /// Could not download or parse; the last good copy stays.
    Failed(String),
    /// The list must be signed (`signature`), and its signature is missing
    /// or does not verify: not loaded; the last good copy stays.
    BadSignature(String),
}

/// Whether a new version with `names` names (parsed with `stats`) may
/// replace a copy in use that has `previous`: `None` when it may, else the
/// outcome that turns it down. `force` (`embargo fetch --force`, an
/// operator's explicit decision) skips the shrink checks only.
pub(crate) fn vet(
    spec: &ListSpec,
    names: u64,
    stats: &ListStats,
    previous: u64,
    force: bool,
) -> Option<Outcome> {
    if !force && previous > 0 {
        // An empty version is how a broken feed looks far more often than a
        // cleared one (a primary serving a stub zone after a failed load, a
        // CDN's empty 200), so it is refused even where `max_shrink = 100%`
        // lets a list shrink as it will.
        if names == 0 {
            return Some(Outcome::Refused(format!(
                "new version has no names, the copy in use {previous}: an empty version never replaces one with names"
            )));
        }
        let floor = (previous as f64 * (1.0 - spec.fetch.max_shrink)).ceil() as u64;
        if names < floor {
            return Some(Outcome::Refused(format!(
                "new version has {names} names, the copy in use {previous}: more than {:.0}% fewer (max_shrink)",
                spec.fetch.max_shrink * 100.0
            )));
        }
    }
    if stats.lines > 0 && names == 0 && stats.invalid == stats.lines {
        return Some(Outcome::Failed(
            "no line of the new version is a valid entry".into(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Fetch, Location, Provenance, Source};
    use crate::policy::{Action, EdeCode};

    fn spec(max_shrink: f64) -> ListSpec {
        ListSpec {
            name: "feed".into(),
            source: Source::Http("http://127.0.0.1/feed".into()),
            path: "feed.list".into(),
            fetch: Fetch {
                max_shrink,
                ..Fetch::default()
            },
            format: None,
            provenance: Provenance::default(),
            action: Action::Nxdomain,
            sinkhole_ipv4: std::net::Ipv4Addr::UNSPECIFIED,
            sinkhole_ipv6: std::net::Ipv6Addr::UNSPECIFIED,
            ttl: 60,
            ede: EdeCode::Blocked,
            inspect_cname: false,
            inspect_answers: true,
            signature: None,
            expires: None,
            canary: None,
            location: Location {
                file: "embargo.toml".into(),
                line: 1,
                col: 1,
            },
        }
    }

    fn lines(lines: u64, invalid: u64) -> ListStats {
        ListStats {
            lines,
            invalid,
            ..ListStats::default()
        }
    }

    /// Issue 16 (6): the guards every new version passes, downloaded or
    /// transferred.
    #[test]
    fn r16_new_versions_are_vetted_for_shrinking_emptiness_and_sense() {
        let refused = |o: Option<Outcome>| matches!(o, Some(Outcome::Refused(_)));
        let half = spec(0.5);
        assert_eq!(vet(&half, 50, &lines(50, 0), 100, false), None);
        assert!(refused(vet(&half, 49, &lines(49, 0), 100, false)));
        assert_eq!(vet(&half, 49, &lines(49, 0), 100, true), None, "forced");
        assert_eq!(vet(&half, 3, &lines(3, 0), 0, false), None, "no copy yet");
        // Empty: refused even where the list may shrink as it will.
        let any = spec(1.0);
        assert_eq!(vet(&any, 1, &lines(1, 0), 100, false), None);
        let empty = vet(&any, 0, &lines(2, 0), 100, false);
        assert!(
            matches!(&empty, Some(Outcome::Refused(why)) if why.contains("no names")),
            "{empty:?}"
        );
        assert_eq!(vet(&any, 0, &lines(2, 0), 100, true), None, "forced");
        // Not one valid line: a failure, forced or not.
        assert!(matches!(
            vet(&half, 0, &lines(5, 5), 0, true),
            Some(Outcome::Failed(_))
        ));
    }
}
