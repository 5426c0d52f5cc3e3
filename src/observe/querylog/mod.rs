//! The query log: one record per query, as JSON or as a line of text,
//! formatted on the observer's thread and written in batches to a file that
//! is rotated by size (or to standard output).
//!
//! ```text
//! {"time":"2026-11-29T21:30:31.123Z","client":"127.0.0.1","port":53124,"proto":"udp","name":"www.seized.example","type":"A","decision":"blocked","stale":false,"list":"seized","entry":"seized.example","action":"nxdomain","rcode":"NXDOMAIN","upstream":null,"latency_us":3}
//! 2026-11-29T21:30:31.123Z 127.0.0.1#53124 udp www.seized.example A blocked list=seized entry=seized.example action=nxdomain rcode=NXDOMAIN latency_us=3
//! ```
//!
//! Every JSON record has every key (`null` where a key does not apply), so
//! a log shipper can give it one schema. Formatting is by hand into one
//! reused buffer of fixed length: no allocation per record, names copied
//! as they are ([`format`]). Rotated files are compressed off the
//! observer's thread ([`rotate`]).

mod format;
mod record;
#[cfg(test)]
mod reference;
mod rotate;
pub mod search;
#[cfg(test)]
mod search_tests;
#[cfg(test)]
mod tests;

pub use format::{Formatter, LogBuf};
pub use record::{LineError, Record, parse_line};
pub use rotate::RotatingFile;

use std::fmt;
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::ClientIp;

/// A client as the log and the hit report show it, after `client_ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// The address, whole or truncated.
    Addr(IpAddr),
    /// A keyed hash of the address.
    Hash(u64),
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(ip) => ip.fmt(f),
            Self::Hash(h) => write!(f, "{h:016x}"),
        }
    }
}

impl std::str::FromStr for ClientId {
    type Err = ();

    /// Reads back what `Display` wrote (an address, or 16 hex digits).
    fn from_str(s: &str) -> Result<Self, ()> {
        if let Ok(ip) = s.parse() {
            return Ok(Self::Addr(ip));
        }
        if s.len() == 16 {
            return u64::from_str_radix(s, 16).map(Self::Hash).map_err(|_| ());
        }
        Err(())
    }
}

/// Applies `client_ip` to addresses. The hash key is drawn once per
/// process (SipHash with a random key, as std's `RandomState`): the same
/// client gets the same hash while the process lives, and nobody without
/// the key can tell which address a hash stands for.
#[derive(Debug, Clone)]
pub struct ClientView {
    mode: ClientIp,
    key: std::collections::hash_map::RandomState,
}

impl ClientView {
    pub fn new(mode: ClientIp) -> Self {
        Self {
            mode,
            key: std::collections::hash_map::RandomState::new(),
        }
    }

    /// How `ip` is shown. An IPv4-mapped IPv6 address counts as its IPv4
    /// address, so a dual-stack socket does not make one client two.
    pub fn id(&self, ip: IpAddr) -> ClientId {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match self.mode {
            ClientIp::Full => ClientId::Addr(ip),
            ClientIp::Truncate => ClientId::Addr(match ip {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & 0xffff_ff00)),
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !((1u128 << 72) - 1))),
            }),
            ClientIp::Hash => ClientId::Hash(self.key.hash_one(ip)),
        }
    }
}

/// Where records go.
#[derive(Debug)]
pub enum LogOut {
    Stdout,
    File(RotatingFile),
}

impl LogOut {
    /// Writes a batch of whole records.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Self::File(f) => f.write(buf),
        }
    }
}
