//! Answer inspection: what the rules make of a forwarded answer, beyond its
//! question. Its CNAME chain first ([`crate::cname`]: a chain through a
//! listed name is that name's block), then its addresses
//! ([`crate::response_ip`]: an A or AAAA in a listed network is its list's
//! block). The handler's forward step and a cached answer marked for
//! inspection per group both ask here, so the two never disagree on the
//! order.

use crate::cname::{self, Through};
use crate::groups::Group;
use crate::matcher::Net;
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

    /// The listed network that matched, for the query log and hit report.
    pub fn net(&self) -> Option<Net> {
        match self {
            Self::Chain(_) => None,
            Self::Address(a) => Some(a.net),
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
