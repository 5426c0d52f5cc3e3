//! Answer inspection: what the rules make of a forwarded answer, beyond its
//! question. Its CNAME chain first ([`crate::cname`]: a chain through a
//! listed name is that name's block), then its addresses
//! ([`crate::response_ip`]: an A or AAAA in a listed network is its list's
//! block). The handler's forward step and a cached answer marked for
//! inspection per group both ask here, so the two never disagree on the
//! order.

use std::net::IpAddr;

use crate::cname::{self, Through, Via};
use crate::groups::Group;
use crate::matcher::{MAX_KEY, Net};
use crate::observe::QueryEvent;
use crate::policy::{Policy, QueryFacts};
use crate::response_ip::{self, AddressHit};
use crate::state::Snapshot;

/// What answer inspection found: a chain through a listed name, or an
/// address in a listed network.
// Both variants live on the stack for one answer, as `cname::inspect`'s
// `Through` always has: boxing the larger would allocate on every block.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Found<'a> {
    Chain(Through<'a>),
    Address(AddressHit<'a>),
}

impl<'a> Found<'a> {
    /// The policy that answers.
    pub fn policy(&self) -> &'a Policy {
        match self {
            Self::Chain(t) => t.policy,
            Self::Address(a) => a.policy,
        }
    }

    /// What matched, for the record and a cached verdict: the chain's
    /// name that a list holds, or the listed network.
    pub fn matched(&self) -> Matched {
        match self {
            Self::Chain(t) => Matched::chain(t.name.as_bytes()),
            Self::Address(a) => Matched::net(a.net),
        }
    }

    /// Writes the client's answer (see [`Through::respond`],
    /// [`AddressHit::respond`]).
    pub fn respond(&self, query: &[u8], facts: &QueryFacts, out: &mut Vec<u8>) {
        match self {
            Self::Chain(t) => t.respond(query, facts, out),
            Self::Address(a) => a.respond(query, facts, out),
        }
    }
}

/// What the rules make of a forwarded answer for `group`: its CNAME chain
/// first, then (with networks loaded) its addresses.
pub fn inspect_answer<'a>(resp: &[u8], snap: &'a Snapshot, group: &Group) -> Option<Found<'a>> {
    if let Some(through) = cname::inspect(resp, snap, group) {
        return Some(Found::Chain(through));
    }
    if !snap.inspects_answers() {
        return None;
    }
    response_ip::inspect(resp, snap, group).map(Found::Address)
}

/// What answer inspection matched in an answer it blocked, as a record
/// names it: the name of the CNAME chain that a list holds (wire form, no
/// root byte), or the listed network an address fell in. Its bytes are
/// what a verdict cached without its chain keeps beside the answer
/// ([`crate::cache::Cache::insert_noted`]), so that an answer from the
/// cache is recorded as the first one was. Fixed size, on the stack.
#[derive(Clone, Copy)]
pub struct Matched {
    /// A kind byte (1 a chain, 2 a network), then the name's bytes, or
    /// the network's address (IPv4 mapped into IPv6) and prefix length.
    bytes: [u8; 1 + MAX_KEY],
    len: u8,
}

/// [`Matched`]'s kind byte for a chain's name, and for a network.
const CHAIN: u8 = 1;
const NET: u8 = 2;

impl Matched {
    /// The chain's listed name, `name` in wire form without the root byte
    /// (at most [`MAX_KEY`] bytes: a `NameKey`'s).
    pub fn chain(name: &[u8]) -> Self {
        let mut m = Self {
            bytes: [0; 1 + MAX_KEY],
            len: 1,
        };
        m.bytes[0] = CHAIN;
        let n = name.len().min(MAX_KEY);
        m.bytes[1..=n].copy_from_slice(&name[..n]);
        m.len = (1 + n) as u8;
        m
    }

    /// A listed network.
    pub fn net(net: Net) -> Self {
        let (addr, len) = match net.addr() {
            IpAddr::V4(a) => (a.to_ipv6_mapped(), net.prefix_len() + 96),
            IpAddr::V6(a) => (a, net.prefix_len()),
        };
        let mut m = Self {
            bytes: [0; 1 + MAX_KEY],
            len: 18,
        };
        m.bytes[0] = NET;
        m.bytes[1..17].copy_from_slice(&addr.octets());
        m.bytes[17] = len;
        m
    }

    /// Reads back [`Matched::as_note`]'s bytes; None for bytes it did not write.
    pub fn from_note(note: &[u8]) -> Option<Self> {
        match note.split_first()? {
            (&CHAIN, name) if !name.is_empty() && name.len() <= MAX_KEY => Some(Self::chain(name)),
            (&NET, rest) if rest.len() == 17 => {
                let mut m = Self {
                    bytes: [0; 1 + MAX_KEY],
                    len: 18,
                };
                m.bytes[..18].copy_from_slice(note);
                m.to_net().is_some().then_some(m)
            }
            _ => None,
        }
    }

    /// The bytes kept beside a cached verdict.
    pub fn as_note(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether a chain's name or an address matched.
    pub fn via(&self) -> Via {
        if self.bytes[0] == CHAIN {
            Via::Chain
        } else {
            Via::Address
        }
    }

    /// `ev` naming what matched: `cname` or `net` in the query log.
    #[inline]
    pub fn record(&self, ev: QueryEvent) -> QueryEvent {
        match self.via() {
            Via::Chain => ev.with_chain(&self.bytes[1..usize::from(self.len)]),
            Via::Address => ev.with_net(self.to_net()),
        }
    }

    /// The network, for a network's match.
    fn to_net(self) -> Option<Net> {
        let [NET, addr @ .., len] = self.as_note() else {
            return None;
        };
        let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?);
        match v6.to_ipv4_mapped() {
            Some(v4) if *len >= 96 => Net::new(v4.into(), len - 96).ok(),
            _ => Net::new(v6.into(), *len).ok(),
        }
    }
}

impl std::fmt::Debug for Matched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.via() {
            Via::Chain => f
                .debug_tuple("Chain")
                .field(&crate::observe::event::name_text(
                    &self.bytes[1..usize::from(self.len)],
                ))
                .finish(),
            Via::Address => f.debug_tuple("Net").field(&self.to_net()).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_matched_round_trips_through_its_note() {
        let name = crate::matcher::NameKey::from_text("ads.tracker.example", false).expect("name");
        for net in ["198.51.100.0/24", "2001:db8:bad::/48", "0.0.0.0/0", "::/0"] {
            let net = Net::parse(net).expect("net");
            let m = Matched::from_note(Matched::net(net).as_note()).expect("a net");
            assert_eq!(m.via(), Via::Address);
            assert_eq!(m.to_net(), Some(net));
        }
        let m = Matched::from_note(Matched::chain(name.as_bytes()).as_note()).expect("a chain");
        assert_eq!(m.via(), Via::Chain);
        assert_eq!(m.as_note()[1..], *name.as_bytes());
        for bad in [&[][..], &[CHAIN], &[NET, 1, 2], &[9, 1, 2, 3], &[NET; 18]] {
            assert!(Matched::from_note(bad).is_none(), "{bad:?}");
        }
    }
}
