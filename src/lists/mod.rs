//! Domain lists: where they come from, what they say about themselves
//! (provenance), and how their lines become names for the matcher.
//!
//! `format` holds one parser per syntax (plain domains, hosts, adblock, RPZ),
//! pure functions of a line. `load` drives a parser over a file, normalises
//! every name, and counts what it could not use, so that one bad line never
//! costs the rest of the list.

pub mod format;
mod load;
pub mod ofac;

use std::path::PathBuf;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use format::{EntryKind, Format};
pub use load::{
    LineWarning, ListStats, LoadError, MAX_WARNINGS, detect_file, load_file, load_ofac,
};

use crate::config::Location;
use crate::policy::{Action, EdeCode};

/// Who says a list's names must be blocked, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub authority: String,
    pub reason: String,
    pub reference: String,
}

/// Where a list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file (watched for changes).
    File(PathBuf),
    /// An `http://` or `https://` URL, fetched into the state directory.
    Http(String),
    /// An RPZ zone received by zone transfer into the state directory.
    Axfr(crate::xfr::XfrSource),
}

impl Source {
    /// True when the list is kept in the state directory (downloaded or transferred).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Self::File(_))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Http(u) => f.write_str(u),
            Self::Axfr(x) => x.fmt(f),
        }
    }
}

/// How a remote list is kept current.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    /// Time between refreshes.
    pub refresh: std::time::Duration,
    /// Time allowed for one download.
    pub timeout: std::time::Duration,
    /// Largest body accepted, in bytes.
    pub max_size: u64,
    /// Largest fraction of entries a new version may lose before it is
    /// refused (the last good version stays loaded).
    pub max_shrink: f64,
}

impl Default for Fetch {
    fn default() -> Self {
        Self {
            refresh: std::time::Duration::from_secs(6 * 3600),
            timeout: std::time::Duration::from_secs(60),
            max_size: 256 * 1024 * 1024,
            max_shrink: 0.5,
        }
    }
}

/// One configured list, validated.
#[derive(Debug, Clone)]
pub struct ListSpec {
    pub name: String,
    pub source: Source,
    /// The file the list is loaded from: the source itself, or the last good
    /// download in the state directory.
    pub path: PathBuf,
    /// Refresh settings (remote lists; a local list's `refresh` re-reads it).
    pub fetch: Fetch,
    /// `None` means detect from the content.
    pub format: Option<Format>,
    pub provenance: Provenance,
    pub action: Action,
    pub sinkhole_ipv4: Ipv4Addr,
    pub sinkhole_ipv6: Ipv6Addr,
    pub ttl: u32,
    pub ede: EdeCode,
    /// Where the list is declared in the config.
    pub location: Location,
}

impl ListSpec {
    /// The EDE extra text: list, authority and reason, so that a user who
    /// sees only the DNS answer learns who blocked the name and why.
    pub fn ede_text(&self) -> String {
        let p = &self.provenance;
        let mut text = format!("blocked by {}", self.name);
        if !p.authority.is_empty() {
            text.push_str(&format!(" ({})", p.authority));
        }
        if !p.reason.is_empty() {
            text.push_str(": ");
            text.push_str(&p.reason);
        }
        text
    }
}

impl Format {
    /// Parses the config spelling (`auto` is handled by the config as `None`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "domains" => Self::Domains,
            "hosts" => Self::Hosts,
            "adblock" => Self::Adblock,
            "rpz" => Self::Rpz,
            "ofac-sdn" => Self::OfacSdn,
            _ => return None,
        })
    }
}
