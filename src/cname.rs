//! CNAME inspection: a forwarded answer whose CNAME (or DNAME) chain passes
//! through a listed name is blocked as if the client had asked for that
//! name.
//!
//! ```text
//!  upstream answer ─► answer section: each CNAME/DNAME record ─► target, then owner
//!                        │ Snapshot::verdict_through_cname (the client's group, lists with inspect_cname)
//!                        ├─ allowed ─► not blocked: the walk goes on
//!                        └─ blocked ─► Through: the list's answer, SOA of the listed entry,
//!                                      EDE "…; reached through CNAME a -> b"
//! ```
//!
//! This is how trackers and seized services hide behind a first-party name
//! (`metrics.shop.example CNAME shop.tracker.example`): the client asks a
//! name no list has, and the upstream's answer leads to one a list does.
//! Pi-hole, AdGuard Home, Blocky, Technitium, BIND (RPZ) and PowerDNS
//! (RPZ) all look at the chain.
//!
//! Names in an answer are compressed; [`query::read_name`] follows the
//! pointers (a bounded number of them) into a lowercase [`NameKey`]. Every
//! read is bounds-checked: an answer that cannot be walked is passed on as
//! it is, never a panic.
//!
//! What an inspection found is kept with the cached answer as a
//! [`Checked`], stamped with the [`Snapshot::generation`] it was made
//! under: a hit from before a reload is inspected again (once; the entry
//! is then stamped anew), so that a name listed today is not reached
//! through a chain cached yesterday.

use crate::cache::Tag;
use crate::groups::Group;
use crate::matcher::NameKey;
use crate::policy::{Action, Policy, QueryFacts};
use crate::query;
use crate::state::{ListSlot, Snapshot, Verdict};
use crate::wire::{self, Header};

/// RR type CNAME.
const TYPE_CNAME: u16 = 5;
/// RR type DNAME (RFC 6672).
const TYPE_DNAME: u16 = 39;

/// A listed name found in an answer's chain, and how it was reached.
#[derive(Debug)]
pub struct Through<'a> {
    /// The policy that answers (the client group's, for the listing list).
    pub policy: &'a Policy,
    /// The record's kind: `"CNAME"` or `"DNAME"`.
    pub kind: &'static str,
    /// The record's owner and target.
    pub owner: NameKey,
    pub target: NameKey,
    /// The name that matched (`target`, or `owner` for an owner listed),
    /// and where its listed suffix starts.
    pub name: NameKey,
    pub suffix: usize,
    /// The lowest TTL of the chain up to this record, and the list's:
    /// the block lasts no longer than the chain that led to it.
    pub ttl: u32,
}

impl Through<'_> {
    /// The EDE extra text: the list's own, then how the name was reached.
    pub fn ede_text(&self) -> String {
        format!(
            "{}; reached through {} {} -> {}",
            self.policy.ede_text, self.kind, self.owner, self.target
        )
    }

    /// The listed entry as a wire-form name with its root byte: the owner
    /// of the SOA in the answer.
    pub fn listed_wire(&self) -> Vec<u8> {
        let bytes = self.name.as_bytes();
        let mut out = bytes.get(self.suffix..).unwrap_or(&[]).to_vec();
        out.push(0);
        out
    }

    /// Writes the client's answer: the block of the list, as for a query
    /// for the listed name (clears `out` first). `query` holds the
    /// client's header and question.
    pub fn respond(&self, query: &[u8], facts: &QueryFacts, out: &mut Vec<u8>) {
        let ede = wire::ede_option(self.policy.ede.code(), &self.ede_text());
        self.policy
            .respond_through(query, facts, &self.listed_wire(), self.ttl, &ede, out);
    }
}

/// The CNAME and DNAME records of `resp`'s answer section, in order:
/// (kind, owner, target, TTL). Stops at the first record it cannot read.
fn chain(resp: &[u8]) -> impl Iterator<Item = (&'static str, NameKey, NameKey, u32)> + '_ {
    let hdr = Header::parse(resp);
    let mut at = hdr.and_then(|h| h.records_start(resp));
    let mut left = hdr.map_or(0, |h| h.ancount);
    std::iter::from_fn(move || {
        while left > 0 {
            left -= 1;
            let (rr, next) = wire::read_rr(resp, at?)?;
            at = Some(next);
            let kind = match rr.rtype {
                TYPE_CNAME => "CNAME",
                TYPE_DNAME => "DNAME",
                _ => continue,
            };
            let (owner, _) = query::read_name(resp, rr.name_at)?;
            let (target, end) = query::read_name(resp, rr.rdata_at)?;
            if end > rr.rdata_at + rr.rdlen {
                return None;
            }
            return Some((kind, owner, target, rr.ttl));
        }
        None
    })
}

/// The first name in `resp`'s CNAME/DNAME chain (each record's target,
/// then its owner) that the lists `group` applies block through a CNAME.
/// An allowlisted name is not blocked, and the walk goes on past it.
pub fn inspect<'a>(resp: &[u8], snap: &'a Snapshot, group: &Group) -> Option<Through<'a>> {
    let mut ttl = u32::MAX;
    for (kind, owner, target, rr_ttl) in chain(resp) {
        ttl = ttl.min(rr_ttl);
        for is_target in [true, false] {
            let name = if is_target { &target } else { &owner };
            if let Verdict::Blocked { policy, suffix } = snap.verdict_through_cname(name, group) {
                let name = name.clone();
                return Some(Through {
                    policy,
                    kind,
                    owner,
                    target,
                    name,
                    suffix,
                    ttl: ttl.min(policy.ttl),
                });
            }
        }
    }
    None
}

/// Whether some client group would block `resp` through its chain: such an
/// answer is cached as it came, marked to be inspected again on each hit
/// for the asking client's group.
pub fn blocked_for_some_group(resp: &[u8], snap: &Snapshot) -> bool {
    chain(resp).any(|(_, owner, target, _)| {
        snap.any_group_blocks_through_cname(&target) || snap.any_group_blocks_through_cname(&owner)
    })
}

/// What the rules made of a cached answer, and under which of them (a
/// [`Snapshot::generation`]): kept as the entry's [`Tag`], which the cache
/// holds without reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// No CNAME or DNAME in the answer section: nothing a reload changes
    /// (the question's own name is looked up on every query).
    Unchained,
    /// A chain that no group blocks (or an allowlisted name's, which is
    /// not inspected).
    Passed { generation: u32 },
    /// A chain that some groups block: inspected again on each hit, for
    /// the client's group.
    PerGroup { generation: u32 },
    /// Not the chain but the block it led to, the same for every client
    /// (no groups): `list` blocked it with `action`, for what `via` says
    /// answer inspection matched (what it matched is kept beside the
    /// answer, for the record: [`crate::inspect::Matched`]).
    Blocked {
        generation: u32,
        list: ListSlot,
        action: Action,
        via: Via,
    },
}

/// What answer inspection matched in an answer it blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A listed name in the CNAME (or DNAME) chain.
    Chain,
    /// An address in a listed network ([`crate::response_ip`]).
    Address,
}

impl Checked {
    /// What an answer that was not blocked for its client is, under
    /// `snap`'s rules: the chain and addresses of an `allowed` name are
    /// not inspected. Never [`Checked::Unchained`]: an answer without a
    /// chain still holds addresses that a reload may list (response-IP
    /// blocking, [`crate::response_ip`]), so every answer is stamped with
    /// the generation and inspected again, once, after a reload.
    pub fn of(resp: &[u8], snap: &Snapshot, allowed: bool) -> Self {
        let generation = snap.generation;
        if !allowed
            && (blocked_for_some_group(resp, snap)
                || crate::response_ip::blocked_for_some_group(resp, snap))
        {
            Self::PerGroup { generation }
        } else {
            Self::Passed { generation }
        }
    }

    /// Whether this was made under the rules of `generation` (or needs no
    /// rules): the one compare a hit costs.
    #[inline]
    pub fn current(self, generation: u32) -> bool {
        match self {
            Self::Unchained => true,
            Self::Passed { generation: g }
            | Self::PerGroup { generation: g }
            | Self::Blocked { generation: g, .. } => g == generation,
        }
    }

    /// Packed into a tag: kind in bits 0-7 (a block through a chain and
    /// one by an address are two kinds), action 8-15, list 16-31,
    /// generation 32-63. [`Checked::Unchained`] is the default tag, so an
    /// answer stored untagged ([`crate::cache::Cache::insert`]) is served
    /// as it is.
    pub fn tag(self) -> Tag {
        let (kind, generation, list, action): (u64, u32, u16, u8) = match self {
            Self::Unchained => (0, 0, 0, 0),
            Self::Passed { generation } => (1, generation, 0, 0),
            Self::PerGroup { generation } => (2, generation, 0, 0),
            Self::Blocked {
                generation,
                list,
                action,
                via,
            } => {
                let action = match action {
                    Action::Nxdomain => 0,
                    Action::Nodata => 1,
                    Action::Refused => 2,
                    Action::Sinkhole => 3,
                };
                let kind = match via {
                    Via::Chain => 3,
                    Via::Address => 4,
                };
                (kind, generation, list.0, action)
            }
        };
        Tag(kind | u64::from(action) << 8 | u64::from(list) << 16 | u64::from(generation) << 32)
    }

    /// Unpacks [`Checked::tag`]. A tag it did not write reads as a chain
    /// passed under no generation ever built (0): inspected again.
    #[inline]
    pub fn from_tag(tag: Tag) -> Self {
        let generation = (tag.0 >> 32) as u32;
        match tag.0 & 0xff {
            0 => Self::Unchained,
            1 => Self::Passed { generation },
            2 => Self::PerGroup { generation },
            kind @ (3 | 4) => Self::Blocked {
                generation,
                list: ListSlot((tag.0 >> 16) as u16),
                action: match (tag.0 >> 8) as u8 {
                    0 => Action::Nxdomain,
                    1 => Action::Nodata,
                    2 => Action::Refused,
                    _ => Action::Sinkhole,
                },
                via: if kind == 3 { Via::Chain } else { Via::Address },
            },
            _ => Self::Passed { generation: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer for `a.up.test` with the records `rrs` (owner, type, rdata
    /// name), owners and targets written out, the first target compressed
    /// against the question where it can be.
    fn answer(rrs: &[(&str, u16, &str)]) -> Vec<u8> {
        let mut p = vec![0, 1, 0x81, 0x80, 0, 1];
        p.extend_from_slice(&(rrs.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(b"\x01a\x02up\x04test\x00\x00\x01\x00\x01");
        for (i, (owner, rtype, target)) in rrs.iter().enumerate() {
            if i == 0 {
                p.extend_from_slice(&[0xc0, 12]);
            } else {
                p.extend(wire_name(owner));
            }
            p.extend_from_slice(&rtype.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 0, 0, 60 + i as u8]);
            let rdata = wire_name(target);
            p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            p.extend(rdata);
        }
        p
    }

    fn wire_name(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in s.split('.') {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    #[test]
    fn checked_round_trips_through_its_tag() {
        let all = [
            Checked::Unchained,
            Checked::Passed { generation: 7 },
            Checked::PerGroup {
                generation: u32::MAX,
            },
            Checked::Blocked {
                generation: 3,
                list: ListSlot(65_000),
                action: Action::Sinkhole,
                via: Via::Chain,
            },
            Checked::Blocked {
                generation: 1,
                list: ListSlot::NONE,
                action: Action::Refused,
                via: Via::Address,
            },
        ];
        for c in all {
            assert_eq!(Checked::from_tag(c.tag()), c);
        }
        assert_eq!(Checked::from_tag(Tag::default()), Checked::Unchained);
        assert!(!Checked::from_tag(Tag(0xff)).current(1));
        assert!(Checked::Unchained.current(9));
        assert!(Checked::Passed { generation: 9 }.current(9));
        assert!(!Checked::Passed { generation: 8 }.current(9));
    }

    #[test]
    fn the_chain_is_read_with_compression_and_stops_at_garbage() {
        let a = answer(&[
            ("a.up.test", TYPE_CNAME, "b.up.test"),
            ("b.up.test", 1, "ignored.example"),
            ("up.test", TYPE_DNAME, "other.example"),
        ]);
        let got: Vec<String> = chain(&a)
            .map(|(k, o, t, ttl)| format!("{k} {o} {t} {ttl}"))
            .collect();
        assert_eq!(
            got,
            [
                "CNAME a.up.test b.up.test 60",
                "DNAME up.test other.example 62"
            ]
        );
        for cut in 0..a.len() {
            let _ = chain(&a[..cut]).count();
        }
        let mut looped = a.clone();
        let at = looped.len() - 14;
        looped[at..at + 2].copy_from_slice(&[0xc0, at as u8]);
        let _ = chain(&looped).count();
    }
}
