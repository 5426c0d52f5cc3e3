//! Client groups: which lists apply to which clients, and how they answer.
//!
//! ```text
//!  client address ─► PrefixMap (most specific network wins) ─► Group ─┐
//!  query name ─► DomainSet::lookup_with(id ─► group.answer(id) is some) ┴─► the policy that answers
//! ```
//!
//! A group names the networks of its clients and the lists it applies;
//! clients in no group's networks belong to the `default` group (every list
//! unless configured otherwise). Everything is decided when the snapshot is
//! built: each group holds a table from matcher id to the policy that
//! answers for it (or none), so a query costs one longest-prefix search of
//! the client's address and one table read per listed suffix. The matcher
//! stays one table with one id per name: a name listed by several lists is
//! stored once, under an id that stands for that set of lists (see
//! `state`), and each group's table already says which of them it applies
//! and which answers first (config order), with the group's own `action`
//! when it has one.
//!
//! The address search: the networks of every group, nested or disjoint as
//! networks are, are flattened into sorted, disjoint ranges of addresses,
//! each carrying the group of the most specific network that covers it. A
//! client is one binary search over the range starts (4 steps for 8
//! groups, 11 for a thousand networks) in a few cache lines shared
//! read-only by every worker, with no allocation. A per-worker cache of
//! address → group (as the issue first sketched) would cost a hash and a
//! compare per query too, and would miss for a flood of distinct sources
//! (65,536 addresses), so there is none. Without `[[groups]]` nothing is
//! searched: [`Groups::of`] is one branch.
//!
//! Client IDs (AdGuard Home's): a client of an encrypted listener may name
//! itself, by the first label of the name it asked the TLS handshake for
//! (`laptop-7.dns.example.com`) or by the last segment of its DoH path
//! (`/dns-query/laptop-7`). The listener turns the name into a
//! [`ClientId`], a number from a process-wide table (once per connection,
//! or per new DoH path), and a group with `client_ids` claims it whatever
//! the client's address: [`Groups::of_client`] is one array read before
//! the address search. So a roaming laptop keeps its policy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::access::Cidr;
use crate::lists::ListSlot;
use crate::matcher::PolicyId;
use crate::policy::Action;

/// The index of a group in [`Groups`].
pub type GroupIndex = u16;

/// No group's network holds the address (searches return the default group).
const NONE: GroupIndex = GroupIndex::MAX;
/// No policy answers this id for the group.
const NO_ANSWER: u32 = u32::MAX;

/// A set of addresses split into sorted, disjoint ranges, each with a
/// value: the longest-prefix match of a set of networks, flattened.
#[derive(Debug, Clone, Default)]
pub struct PrefixMap {
    v4_starts: Box<[u32]>,
    v4_groups: Box<[GroupIndex]>,
    v6_starts: Box<[u128]>,
    v6_groups: Box<[GroupIndex]>,
}

/// An address family's numbers, for the flattening.
trait Addr: Copy + Ord + Default {
    const MAX: Self;
    fn succ(self) -> Self;
}

impl Addr for u32 {
    const MAX: Self = Self::MAX;
    fn succ(self) -> Self {
        self.saturating_add(1)
    }
}

impl Addr for u128 {
    const MAX: Self = Self::MAX;
    fn succ(self) -> Self {
        self.saturating_add(1)
    }
}

impl PrefixMap {
    /// The map of `networks` (network, group). A network listed twice
    /// keeps its last group; the config refuses that before it gets here.
    pub fn new(networks: &[(Cidr, GroupIndex)]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(net, group) in networks {
            match net.addr() {
                IpAddr::V4(a) => {
                    let lo = u32::from(a);
                    let host = u32::MAX.checked_shr(u32::from(net.prefix())).unwrap_or(0);
                    v4.push((lo, lo | host, net.prefix(), group));
                }
                IpAddr::V6(a) => {
                    let lo = u128::from(a);
                    let host = u128::MAX.checked_shr(u32::from(net.prefix())).unwrap_or(0);
                    v6.push((lo, lo | host, net.prefix(), group));
                }
            }
        }
        let (v4_starts, v4_groups) = flatten(v4);
        let (v6_starts, v6_groups) = flatten(v6);
        Self {
            v4_starts,
            v4_groups,
            v6_starts,
            v6_groups,
        }
    }

    /// The group of the most specific network holding `ip`, if any.
    #[inline]
    pub fn find(&self, ip: IpAddr) -> Option<GroupIndex> {
        let g = match ip.to_canonical() {
            IpAddr::V4(a) => search(&self.v4_starts, &self.v4_groups, u32::from(a)),
            IpAddr::V6(a) => search(&self.v6_starts, &self.v6_groups, u128::from(a)),
        };
        (g != NONE).then_some(g)
    }

    /// Ranges held (both families), for tests and sizing.
    pub fn ranges(&self) -> usize {
        self.v4_starts.len() + self.v6_starts.len()
    }
}

#[inline]
fn search<T: Copy + Ord>(starts: &[T], groups: &[GroupIndex], x: T) -> GroupIndex {
    // The last range starting at or before x holds it (the first starts at 0).
    let i = starts.partition_point(|s| *s <= x);
    i.checked_sub(1)
        .and_then(|i| groups.get(i))
        .copied()
        .unwrap_or(NONE)
}

/// Networks (first, last, prefix, group) → range starts and their groups.
/// Networks are nested or disjoint, so a sweep in order of first address
/// (wider first on a tie) with a stack of the enclosing ones gives each
/// range the innermost network's group.
fn flatten<T: Addr>(mut nets: Vec<(T, T, u8, GroupIndex)>) -> (Box<[T]>, Box<[GroupIndex]>) {
    if nets.is_empty() {
        return (Box::new([]), Box::new([]));
    }
    nets.sort_by_key(|n| (n.0, n.2));
    let mut out: Vec<(T, GroupIndex)> = vec![(T::default(), NONE)];
    let mut stack: Vec<(T, GroupIndex)> = Vec::new();
    for (lo, hi, _, group) in nets {
        close(&mut stack, &mut out, Some(lo));
        out.push((lo, group));
        stack.push((hi, group));
    }
    close(&mut stack, &mut out, None);
    // Equal starts: the later push is the more specific (or the resumption
    // was overtaken by a sibling); then join neighbours of the same group.
    let mut ranges: Vec<(T, GroupIndex)> = Vec::with_capacity(out.len());
    for (start, group) in out {
        match ranges.last_mut() {
            Some(last) if last.0 == start => last.1 = group,
            _ => ranges.push((start, group)),
        }
    }
    ranges.dedup_by(|next, prev| next.1 == prev.1);
    let (starts, groups): (Vec<T>, Vec<GroupIndex>) = ranges.into_iter().unzip();
    (starts.into_boxed_slice(), groups.into_boxed_slice())
}

/// Pops the networks of `stack` that end before `upto` (all of them for
/// `None`), marking where each enclosing network's group resumes.
fn close<T: Addr>(
    stack: &mut Vec<(T, GroupIndex)>,
    out: &mut Vec<(T, GroupIndex)>,
    upto: Option<T>,
) {
    while let Some(&(last, _)) = stack.last() {
        if upto.is_some_and(|lo| last >= lo) {
            break;
        }
        stack.pop();
        if last != T::MAX {
            let resume = stack.last().map_or(NONE, |s| s.1);
            out.push((last.succ(), resume));
        }
    }
}

/// A client ID's number, the same for the life of the process (records
/// carry it in a fixed-size event; the log writes the name back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ClientId(pub u16);

/// Client IDs that clients may add to the table beyond those configured:
/// names are the client's to choose, so the table would otherwise grow
/// with every name a client sends. Past it, a new name is not recorded
/// (and places the client in no group by ID); configured IDs always are.
pub const MAX_CLIENT_IDS: usize = 4096;

/// Every client ID seen, by name and by number (number 0 is none).
struct IdTable {
    by_name: HashMap<Box<str>, u16>,
    names: Vec<Arc<str>>,
    /// Names added from clients (not from the config).
    from_clients: usize,
}

static CLIENT_IDS: Mutex<Option<IdTable>> = Mutex::new(None);

impl ClientId {
    /// No client ID.
    pub const NONE: Self = Self(0);

    /// The number of a client's ID `name` (ASCII letters are compared
    /// without case), numbered now if new and the table has room.
    pub fn of(name: &str) -> Self {
        Self::intern(name, false)
    }

    /// The number of a configured ID, numbered now if new (always).
    pub fn configured(name: &str) -> Self {
        Self::intern(name, true)
    }

    fn intern(name: &str, configured: bool) -> Self {
        let lower = name.to_ascii_lowercase();
        let mut table = CLIENT_IDS.lock().unwrap_or_else(PoisonError::into_inner);
        let t = table.get_or_insert_with(|| IdTable {
            by_name: HashMap::new(),
            names: vec![Arc::from("")],
            from_clients: 0,
        });
        if let Some(&n) = t.by_name.get(lower.as_str()) {
            return Self(n);
        }
        if !configured && t.from_clients >= MAX_CLIENT_IDS {
            return Self::NONE;
        }
        let Ok(n) = u16::try_from(t.names.len()) else {
            return Self::NONE;
        };
        t.from_clients += usize::from(!configured);
        t.names.push(Arc::from(lower.as_str()));
        t.by_name.insert(lower.into_boxed_str(), n);
        Self(n)
    }

    /// The name behind a number (`None` for [`ClientId::NONE`]).
    pub fn name(self) -> Option<Arc<str>> {
        if self == Self::NONE {
            return None;
        }
        let table = CLIENT_IDS.lock().unwrap_or_else(PoisonError::into_inner);
        table.as_ref()?.names.get(usize::from(self.0)).cloned()
    }
}

/// One group: who is in it, which lists it applies, and, for every
/// matcher id, the policy (an index into the snapshot's policies) that
/// answers its clients.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// The name's slot, as query-log records carry it ([`ListSlot::NONE`]
    /// without `[[groups]]`: records then name no group).
    pub slot: ListSlot,
    /// Its networks as configured (none for the default group).
    pub clients: Vec<Cidr>,
    /// The client IDs it claims, whatever their address.
    pub client_ids: Vec<String>,
    /// The lists it applies, by index, in config order.
    pub lists: Vec<usize>,
    /// Its own action, replacing the lists' for its clients.
    pub action: Option<Action>,
    /// Matcher id → policy index, [`NO_ANSWER`] where the group applies
    /// none of the id's lists.
    answer: Box<[u32]>,
    /// The same for a name reached through a CNAME or DNAME: only lists
    /// with `inspect_cname`.
    cname: Box<[u32]>,
}

impl Group {
    /// A group; its tables are filled by [`Group::set_answers`].
    pub fn new(
        name: String,
        clients: Vec<Cidr>,
        lists: Vec<usize>,
        action: Option<Action>,
    ) -> Self {
        Self {
            name,
            slot: ListSlot::NONE,
            clients,
            client_ids: Vec::new(),
            lists,
            action,
            answer: Box::new([]),
            cname: Box::new([]),
        }
    }

    /// Claims the clients that name themselves `ids` (see [`ClientId`]).
    pub fn with_client_ids(mut self, ids: Vec<String>) -> Self {
        self.client_ids = ids;
        self
    }

    /// Fills the tables: `answer(id, through_cname)` is the policy index
    /// that answers matcher id `id` for this group, if any.
    pub fn set_answers(&mut self, ids: usize, mut answer: impl FnMut(usize, bool) -> Option<u32>) {
        let table = |answer: &mut dyn FnMut(usize, bool) -> Option<u32>, cname| {
            (0..ids)
                .map(|id| answer(id, cname).unwrap_or(NO_ANSWER))
                .collect::<Box<[u32]>>()
        };
        self.answer = table(&mut answer, false);
        self.cname = table(&mut answer, true);
    }

    /// The policy index answering matcher id `id` for this group.
    #[inline]
    pub fn answer(&self, id: PolicyId) -> Option<u32> {
        self.answer
            .get(usize::from(id.0))
            .copied()
            .filter(|p| *p != NO_ANSWER)
    }

    /// The same for a name reached through a CNAME or DNAME.
    #[inline]
    pub fn cname_answer(&self, id: PolicyId) -> Option<u32> {
        self.cname
            .get(usize::from(id.0))
            .copied()
            .filter(|p| *p != NO_ANSWER)
    }

    /// Whether the group applies list `list`.
    pub fn applies(&self, list: usize) -> bool {
        self.lists.binary_search(&list).is_ok()
    }
}

/// Every group and the map from client address to group.
#[derive(Debug, Clone)]
pub struct Groups {
    groups: Vec<Group>,
    default: GroupIndex,
    clients: PrefixMap,
    /// Client ID number → the group claiming it, or `NONE`; empty when no
    /// group claims any.
    by_id: Box<[GroupIndex]>,
    /// `[[groups]]` were configured; without them every client is in the
    /// default group and no address is searched.
    configured: bool,
}

impl Default for Groups {
    fn default() -> Self {
        Self::new(
            vec![Group::new(DEFAULT.into(), Vec::new(), Vec::new(), None)],
            0,
            false,
        )
    }
}

/// The name of the group of clients in no other group.
pub const DEFAULT: &str = "default";

impl Groups {
    /// `groups`, of which `default` is the default; `configured` when they
    /// come from `[[groups]]`.
    pub fn new(groups: Vec<Group>, default: GroupIndex, configured: bool) -> Self {
        let networks: Vec<(Cidr, GroupIndex)> = groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| {
                let i = GroupIndex::try_from(i).unwrap_or(NONE);
                g.clients.iter().map(move |c| (*c, i))
            })
            .collect();
        let mut by_id: Vec<GroupIndex> = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            for id in &g.client_ids {
                let n = usize::from(ClientId::configured(id).0);
                if n == 0 {
                    continue;
                }
                if by_id.len() <= n {
                    by_id.resize(n + 1, NONE);
                }
                by_id[n] = GroupIndex::try_from(i).unwrap_or(NONE);
            }
        }
        Self {
            clients: PrefixMap::new(&networks),
            by_id: by_id.into_boxed_slice(),
            groups,
            default,
            configured,
        }
    }

    /// Whether `[[groups]]` were configured.
    #[inline]
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// The group of a client, and its index.
    #[inline]
    pub fn of(&self, ip: IpAddr) -> (GroupIndex, &Group) {
        let i = if self.configured {
            self.clients.find(ip).unwrap_or(self.default)
        } else {
            self.default
        };
        (i, self.get(i))
    }

    /// The group of a client that named itself `id` (a group claiming the
    /// ID wins over the address), and its index.
    #[inline]
    pub fn of_client(&self, ip: IpAddr, id: ClientId) -> (GroupIndex, &Group) {
        if let Some(&g) = self.by_id.get(usize::from(id.0))
            && g != NONE
            && id != ClientId::NONE
        {
            return (g, self.get(g));
        }
        self.of(ip)
    }

    /// Group `i` (the default group for an index out of range).
    #[inline]
    pub fn get(&self, i: GroupIndex) -> &Group {
        let i = usize::from(i);
        match self.groups.get(i) {
            Some(g) => g,
            None => &self.groups[usize::from(self.default)],
        }
    }

    /// The default group.
    pub fn default_group(&self) -> &Group {
        self.get(self.default)
    }

    /// Every group, in config order (the default group where it was
    /// configured, or last).
    pub fn iter(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter()
    }

    /// Mutable access for the snapshot's build, which fills the tables.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.groups.iter_mut()
    }

    /// The network that puts `ip` in its group (`None`: the default group).
    pub fn network_of(&self, ip: IpAddr) -> Option<Cidr> {
        let ip = ip.to_canonical();
        let (_, group) = self.of(ip);
        group
            .clients
            .iter()
            .filter(|c| Cidr::new(ip, c.prefix()) == **c)
            .max_by_key(|c| c.prefix())
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_most_specific_network_wins_and_others_find_nothing() {
        let m = PrefixMap::new(&[
            (net("10.0.0.0/8"), 0),
            (net("10.1.0.0/16"), 1),
            (net("10.1.2.0/24"), 2),
            (net("10.1.3.7"), 3),
            (net("2001:db8:1::/48"), 4),
            (net("::/0"), 5),
            (net("0.0.0.0/1"), 6),
        ]);
        for (addr, want) in [
            ("10.9.9.9", Some(0)),
            ("10.1.0.1", Some(1)),
            ("10.1.2.255", Some(2)),
            ("10.1.3.7", Some(3)),
            ("10.1.3.8", Some(1)),
            ("10.2.0.0", Some(0)),
            ("11.0.0.0", Some(6)),
            ("127.0.0.1", Some(6)),
            ("128.0.0.0", None),
            ("255.255.255.255", None),
            ("2001:db8:1:ffff::1", Some(4)),
            ("2001:db8:2::1", Some(5)),
            ("::ffff:10.1.2.3", Some(2)),
        ] {
            assert_eq!(m.find(ip(addr)), want, "{addr}");
        }
        assert_eq!(PrefixMap::new(&[]).find(ip("10.0.0.1")), None);
        let all = PrefixMap::new(&[(net("0.0.0.0/0"), 7), (net("255.255.255.255/32"), 8)]);
        assert_eq!(all.find(ip("255.255.255.255")), Some(8));
        assert_eq!(all.find(ip("255.255.255.254")), Some(7));
        assert_eq!(all.find(ip("0.0.0.0")), Some(7));
    }

    #[test]
    fn clients_in_no_network_are_in_the_default_group_and_unconfigured_groups_search_nothing() {
        let g = |name: &str, clients: &[&str]| {
            Group::new(
                name.into(),
                clients.iter().map(|c| net(c)).collect(),
                vec![0],
                None,
            )
        };
        let groups = Groups::new(
            vec![
                g("servers", &["10.1.0.0/16"]),
                g(DEFAULT, &[]),
                g("lab", &["10.1.9.0/24"]),
            ],
            1,
            true,
        );
        assert_eq!(groups.of(ip("10.1.2.3")).1.name, "servers");
        assert_eq!(groups.of(ip("10.1.9.3")).1.name, "lab");
        assert_eq!(groups.of(ip("192.0.2.1")).1.name, DEFAULT);
        assert_eq!(groups.network_of(ip("10.1.9.3")), Some(net("10.1.9.0/24")));
        assert_eq!(groups.network_of(ip("192.0.2.1")), None);
        let off = Groups::new(vec![g(DEFAULT, &[]), g("x", &["0.0.0.0/0"])], 0, false);
        assert_eq!(off.of(ip("10.1.2.3")).0, 0);
    }

    #[test]
    fn a_client_id_claims_its_group_whatever_the_address() {
        let servers = Group::new("servers".into(), vec![net("10.1.0.0/16")], vec![0], None);
        let roaming = Group::new("roaming".into(), Vec::new(), vec![], None)
            .with_client_ids(vec!["laptop-7".into()]);
        let groups = Groups::new(
            vec![
                servers,
                roaming,
                Group::new(DEFAULT.into(), Vec::new(), vec![0], None),
            ],
            2,
            true,
        );
        let laptop = ClientId::of("Laptop-7");
        assert_ne!(laptop, ClientId::NONE);
        assert_eq!(
            laptop,
            ClientId::configured("laptop-7"),
            "one number, any case"
        );
        assert_eq!(laptop.name().as_deref(), Some("laptop-7"));
        assert_eq!(groups.of_client(ip("10.1.2.3"), laptop).1.name, "roaming");
        assert_eq!(groups.of_client(ip("192.0.2.1"), laptop).1.name, "roaming");
        assert_eq!(
            groups.of_client(ip("10.1.2.3"), ClientId::NONE).1.name,
            "servers"
        );
        let stranger = ClientId::of("phone-3");
        assert_eq!(groups.of_client(ip("10.1.2.3"), stranger).1.name, "servers");
        assert_eq!(ClientId::NONE.name(), None);
    }

    /// A network as (first address, prefix) over a small IPv4 corner, so
    /// that random networks nest and touch often.
    fn small_net() -> impl Strategy<Value = Cidr> {
        (0u32..256, 24u8..=32).prop_map(|(host, prefix)| {
            Cidr::new(
                IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | host)),
                prefix,
            )
        })
    }

    proptest! {
        /// The flattened map agrees with "the longest network holding the
        /// address" computed by brute force.
        #[test]
        fn agrees_with_a_brute_force_longest_prefix_match(
            nets in prop::collection::vec(small_net(), 0..24),
            probes in prop::collection::vec(0u32..300, 1..64),
        ) {
            let mut unique: Vec<Cidr> = Vec::new();
            for n in nets {
                if !unique.contains(&n) {
                    unique.push(n);
                }
            }
            let entries: Vec<(Cidr, GroupIndex)> = unique
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, GroupIndex::try_from(i).expect("few")))
                .collect();
            let m = PrefixMap::new(&entries);
            prop_assert!(m.ranges() <= 2 * entries.len() + 1);
            for p in probes {
                let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + p));
                let want = entries
                    .iter()
                    .filter(|(c, _)| Cidr::new(addr, c.prefix()) == *c)
                    .max_by_key(|(c, _)| c.prefix())
                    .map(|(_, g)| *g);
                prop_assert_eq!(m.find(addr), want, "{}", addr);
            }
        }
    }
}
