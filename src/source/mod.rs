//! Everything that brings a list's bytes from elsewhere: HTTP(S) downloads
//! ([`http`]), RPZ zone transfers with NOTIFY and TSIG ([`xfr`]), and the
//! state directory that keeps the last good copy of each ([`store`]).
//!
//! ```text
//!  config::ListSpec ──► source::{http, xfr} ──► store (atomic copy + meta) ──► reload ──► lists (parse)
//! ```
//!
//! This module sits above `config` (it reads the list descriptions) and
//! `lists` (it parses a download before adopting it); `reload` drives it on
//! timers, NOTIFYs and `embargo fetch`. Nothing below imports it.

pub mod http;
pub mod store;
pub mod xfr;

pub use store::{FetchMeta, read_meta, write_atomic};

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
}
