//! Response-IP blocking: a forwarded answer whose A or AAAA records (at
//! the end of a CNAME chain or not) fall in a listed network is blocked
//! as if the client had asked for a listed name (issue 20).
//!
//! ```text
//!  upstream answer ─► answer section: each A / AAAA record ─► its address
//!                        │ Snapshot::verdict_for_ip (the client's group; lists with inspect_answers)
//!                        └─ in a listed network ─► the list's answer, SOA of the record's owner,
//!                                                 EDE "…; answer address 192.0.2.7 in 192.0.2.0/24"
//! ```
//!
//! This is how a seized service that moved to a fresh domain on the same
//! hosting is still blocked: the name is new, the addresses are not. BIND
//! and PowerDNS do it with RPZ `rpz-ip` triggers, Blocky with IP lists.
//!
//! It runs beside CNAME inspection ([`crate::cname`]), after it: a chain
//! through a listed name is that name's block, and only an answer no name
//! blocks has its addresses looked at. [`crate::inspect::inspect_answer`]
//! asks both, and the verdict is cached the same way ([`crate::cname::Checked`], stamped
//! with the snapshot's generation). Without networks loaded
//! ([`Snapshot::inspects_answers`] false) a forwarded answer pays that one
//! check and nothing more.
//!
//! Every read is bounds-checked: an answer that cannot be walked is
//! passed on as it is, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::groups::Group;
use crate::matcher::{NameKey, Net};
use crate::policy::{Policy, QueryFacts};
use crate::query;
use crate::state::Snapshot;
use crate::wire::{self, Header};

/// An answer's address in a listed network.
#[derive(Debug)]
pub struct AddressHit<'a> {
    /// The policy that answers (the client group's, for the listing list).
    pub policy: &'a Policy,
    /// The owner of the A or AAAA record (the question's name, or the end
    /// of its CNAME chain).
    pub owner: NameKey,
    pub addr: IpAddr,
    /// The most specific listed network holding `addr`.
    pub net: Net,
    /// The lowest TTL of the answer's records up to this one, and the
    /// list's.
    pub ttl: u32,
}

impl AddressHit<'_> {
    /// The EDE extra text: the list's own, then the address and network.
    /// The answer keeps 160 bytes of it ([`wire::ede_option`]): a long
    /// provenance is cut, never the address (the list's name comes first).
    pub fn ede_text(&self) -> String {
        let tail = format!("; answer address {} in {}", self.addr, self.net);
        let text: &str = &self.policy.ede_text;
        let mut end = text.len().min(160usize.saturating_sub(tail.len()));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{tail}", text.get(..end).unwrap_or_default())
    }

    /// Writes the client's answer: the block of the list, as for a query
    /// for a listed name, the SOA owned by the record's owner.
    pub fn respond(&self, query: &[u8], facts: &QueryFacts, out: &mut Vec<u8>) {
        let ede = wire::ede_option(self.policy.ede.code(), &self.ede_text());
        let mut owner = self.owner.as_bytes().to_vec();
        owner.push(0);
        self.policy
            .respond_through(query, facts, &owner, self.ttl, &ede, out);
    }
}

/// The A and AAAA records of `resp`'s answer section, in order: (owner
/// offset, address, TTL of the lowest record so far). Stops at the first
/// record it cannot read.
fn addresses(resp: &[u8]) -> impl Iterator<Item = (usize, IpAddr, u32)> + '_ {
    let hdr = Header::parse(resp);
    let mut at = hdr.and_then(|h| h.records_start(resp));
    let mut left = hdr.map_or(0, |h| h.ancount);
    let mut ttl = u32::MAX;
    std::iter::from_fn(move || {
        while left > 0 {
            left -= 1;
            let (rr, next) = wire::read_rr(resp, at?)?;
            at = Some(next);
            ttl = ttl.min(rr.ttl);
            let rdata = resp.get(rr.rdata_at..rr.rdata_at + rr.rdlen)?;
            let addr = match (rr.rtype, rr.class) {
                (wire::TYPE_A, 1) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(rdata).ok()?)),
                (wire::TYPE_AAAA, 1) => {
                    IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?))
                }
                _ => continue,
            };
            return Some((rr.name_at, addr, ttl));
        }
        None
    })
}

/// The first address of `resp`'s answer section in a network the lists
/// `group` applies block.
pub fn inspect<'a>(resp: &[u8], snap: &'a Snapshot, group: &Group) -> Option<AddressHit<'a>> {
    addresses(resp).find_map(|(owner_at, addr, ttl)| {
        let v = snap.verdict_for_ip(addr, group)?;
        let (owner, _) = query::read_name(resp, owner_at)?;
        Some(AddressHit {
            policy: v.policy,
            owner,
            addr,
            net: v.net,
            ttl: ttl.min(v.policy.ttl),
        })
    })
}

/// Whether some client group would block `resp` for one of its addresses:
/// such an answer is cached as it came, inspected again on each hit for
/// the asking client's group.
pub fn blocked_for_some_group(resp: &[u8], snap: &Snapshot) -> bool {
    snap.inspects_answers() && addresses(resp).any(|(_, addr, _)| snap.any_group_blocks_ip(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer for `a.up.test`: a CNAME to b.up.test, then the records
    /// `rrs` (type, rdata) owned by b.up.test.
    fn answer(rrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = vec![0, 1, 0x81, 0x80, 0, 1];
        p.extend_from_slice(&(rrs.len() as u16 + 1).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(b"\x01a\x02up\x04test\x00\x00\x01\x00\x01");
        p.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 90, 0, 4]);
        p.extend_from_slice(b"\x01b\xc0\x0e");
        let b_at = p.len() - 4;
        for (i, (rtype, rdata)) in rrs.iter().enumerate() {
            p.extend_from_slice(&[0xc0, b_at as u8]);
            p.extend_from_slice(&rtype.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 0, 0, 60 - i as u8]);
            p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            p.extend_from_slice(rdata);
        }
        p
    }

    #[test]
    fn a_long_provenance_is_cut_not_the_address() {
        let policy = Policy::new(
            1,
            crate::policy::Action::Nxdomain,
            60,
            Ipv4Addr::UNSPECIFIED,
            Ipv6Addr::UNSPECIFIED,
            crate::policy::EdeCode::Blocked,
            &format!("blocked by drop: {}", "é".repeat(100)),
        );
        let hit = AddressHit {
            policy: &policy,
            owner: NameKey::from_text("a.example", false).expect("name"),
            addr: "2001:db8:bad::7".parse().expect("ip"),
            net: Net::parse("2001:db8:bad::/48").expect("net"),
            ttl: 60,
        };
        let text = hit.ede_text();
        assert!(text.len() <= 160, "{}", text.len());
        assert!(text.starts_with("blocked by drop: é"), "{text}");
        assert!(
            text.ends_with("; answer address 2001:db8:bad::7 in 2001:db8:bad::/48"),
            "{text}"
        );
    }

    #[test]
    fn addresses_are_read_behind_a_chain_and_garbage_stops_the_walk() {
        let a = answer(&[
            (wire::TYPE_A, &[192, 0, 2, 7]),
            (16, b"\x02hi"),
            (
                wire::TYPE_AAAA,
                &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            (wire::TYPE_A, &[1, 2, 3]),
        ]);
        let got: Vec<String> = addresses(&a)
            .map(|(at, ip, ttl)| {
                let (owner, _) = query::read_name(&a, at).expect("owner");
                format!("{owner} {ip} {ttl}")
            })
            .collect();
        assert_eq!(got, ["b.up.test 192.0.2.7 60", "b.up.test 2001:db8::1 58"]);
        for cut in 0..a.len() {
            let _ = addresses(&a[..cut]).count();
        }
    }
}
