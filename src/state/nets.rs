//! The snapshot's listed networks: what a forwarded answer's addresses are
//! checked against (response-IP blocking, issue 20).
//!
//! ```text
//!  A / AAAA of a forwarded answer ─► Snapshot::verdict_for_ip (the client's group)
//!        │ NetSet: the most specific listed network first, then the ones covering it
//!        ├─ an RPZ rpz-passthru of a feed the group applies ─► that feed's wider networks no longer count
//!        ├─ a list the group does not apply ─► look further out
//!        └─ a list the group applies ─► its policy answers, as if the name were listed
//! ```
//!
//! The networks' ids are policy ids (never policy sets): one network
//! listed by two lists is two nodes of the [`NetSet`], so a group's own
//! table ([`Group::answer`]) says whether and how each answers. Passthrus
//! follow the name lookup's rule (`super`'s module doc): they hide only
//! their own feed's less specific triggers.

use std::net::IpAddr;

use super::{PassedLists, Snapshot};
use crate::groups::Group;
use crate::matcher::{Net, PolicyId};
use crate::policy::Policy;

/// A listed network holding an address, and the policy that answers.
#[derive(Debug, Clone, Copy)]
pub struct NetVerdict<'a> {
    pub policy: &'a Policy,
    pub net: Net,
}

impl Snapshot {
    /// True when some list's networks are loaded: the one check a forwarded
    /// answer pays when none are.
    #[inline]
    pub fn inspects_answers(&self) -> bool {
        !self.nets.is_empty()
    }

    /// The listed network holding `ip` that blocks it for `group`, and the
    /// policy answering.
    pub fn verdict_for_ip(&self, ip: IpAddr, group: &Group) -> Option<NetVerdict<'_>> {
        let mut passed = PassedLists::default();
        let hit = self.nets.lookup_with(ip, |id| {
            let list = self.policy(id)?.list;
            if self.is_passthru(id) {
                if group.applies(list) {
                    passed.insert(list);
                }
                return None;
            }
            if passed.contains(list) {
                return None;
            }
            group
                .answer(id)
                .and_then(|p| u16::try_from(p).ok())
                .map(PolicyId)
        })?;
        Some(NetVerdict {
            policy: self.policies.get(usize::from(hit.policy.0))?,
            net: hit.net,
        })
    }

    /// Whether some client group blocks `ip` (so that a cached answer
    /// holding it is inspected again per group on each hit).
    pub fn any_group_blocks_ip(&self, ip: IpAddr) -> bool {
        self.groups
            .iter()
            .any(|g| self.verdict_for_ip(ip, g).is_some())
    }

    /// Every listed network holding `ip`, most specific first, with the
    /// policy that listed it (for `embargo check`; passthrus included).
    pub fn nets_holding(&self, ip: IpAddr) -> Vec<(Net, &Policy, bool)> {
        let mut out = Vec::new();
        self.nets.each_match(ip, |net, id| {
            if let Some(p) = self.policy(id) {
                out.push((net, p, self.is_passthru(id)));
            }
            true
        });
        out
    }
}
