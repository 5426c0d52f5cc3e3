//! The set of listed networks, and the one question a forwarded answer asks
//! it: does this address fall in a listed network, and whose?
//!
//! ```text
//!  A / AAAA rdata ──► u32 / u128 ──► binary search in the family's sorted,
//!                                     disjoint ranges [start, end]
//!                                            │ leaf: the most specific network
//!                                            ▼
//!                    node (network, policy) ─parent─► the next less specific one ─► …
//! ```
//!
//! Listed networks nest or are disjoint (CIDR blocks never overlap
//! partially), so at build time they are cut into disjoint ranges, each
//! labelled with the most specific network covering it. A lookup is one
//! binary search (about 17 steps for 100,000 prefixes) and no allocation.
//! Each network is a node that points at the next network covering it (a
//! network listed by two lists is two nodes, the first list's first): the
//! plain lookup takes the leaf, and a lookup for a client group walks the
//! parents until a list the group applies, as [`super::DomainSet`]'s
//! lookup walks suffixes.
//!
//! A prefix trie would cost a pointer per bit level; the sorted ranges are
//! three flat arrays per family and one node per network (about 50 bytes
//! per IPv4 prefix in all; see the README for the measured figure).
//!
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) is looked up as the
//! IPv4 address it carries when no IPv6 network covers it, so an AAAA
//! record cannot carry a listed IPv4 address past the check.
//!
//! This module depends on std only, like the rest of `matcher`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::PolicyId;

/// No parent: the least specific network covering a range.
const ROOT: u32 = u32::MAX;

/// An IP network: an address with its host bits zero and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    /// IPv4 networks sort before IPv6 ones.
    v6: bool,
    /// The address as a number (an IPv4 address in the low 32 bits).
    bits: u128,
    len: u8,
}

/// Why a text or an address and length is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("{0:?} is not an IP address or network (address or address/length)")]
    Syntax(String),
    #[error("prefix length {len} is longer than {max}")]
    TooLong { len: u8, max: u8 },
    #[error("{written} has bits set past its prefix length: the network is {network}")]
    HostBits { written: String, network: String },
}

impl Net {
    /// The network `addr/len`; host bits must be zero, because a list that
    /// writes `192.0.2.7/24` may mean the address or the network, and
    /// guessing either blocks what nobody asked for.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, NetError> {
        let (v6, bits) = match addr {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        let max = if v6 { 128 } else { 32 };
        if len > max {
            return Err(NetError::TooLong { len, max });
        }
        let net = Self { v6, bits, len };
        if net.start() != bits {
            let masked = Self {
                bits: net.start(),
                ..net
            };
            return Err(NetError::HostBits {
                written: format!("{addr}/{len}"),
                network: masked.to_string(),
            });
        }
        Ok(net)
    }

    /// The host network of one address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        let (v6, bits, len) = match addr {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        Self { v6, bits, len }
    }

    /// Parses `192.0.2.0/24`, `2001:db8::/32` or a bare address.
    pub fn parse(text: &str) -> Result<Self, NetError> {
        let syntax = || NetError::Syntax(text.to_owned());
        match text.split_once('/') {
            None => text.parse().map(Self::host).map_err(|_| syntax()),
            Some((addr, len)) => {
                let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
                // u8 parsing takes "+24"; a length is digits alone.
                if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let len: u8 = len.parse().map_err(|_| syntax())?;
                Self::new(addr, len)
            }
        }
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.bits as u32))
        }
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is in this network (an IPv4 network never holds an
    /// IPv6 address, mapped or not: [`NetSet::lookup`] does the mapping).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, bits) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        v6 == self.v6 && (self.start()..=self.end()).contains(&bits)
    }

    fn width(&self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    /// The host bits' mask.
    fn host_mask(&self) -> u128 {
        let host = u32::from(self.width() - self.len);
        1u128.checked_shl(host).map_or(u128::MAX, |b| b - 1)
    }

    fn start(&self) -> u128 {
        self.bits & !self.host_mask()
    }

    fn end(&self) -> u128 {
        self.start() | self.host_mask()
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.len)
    }
}

/// A listed network matched: which one, and the policy that listed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetHit {
    pub net: Net,
    pub policy: PolicyId,
}

/// One listed network and the next one covering it.
#[derive(Debug, Clone, Copy)]
struct Node {
    net: Net,
    policy: PolicyId,
    parent: u32,
}

/// One address family's disjoint ranges, sorted by start.
#[derive(Debug, Default)]
struct Ranges<T> {
    starts: Box<[T]>,
    ends: Box<[T]>,
    /// The most specific node covering each range.
    leaf: Box<[u32]>,
}

impl<T: Copy + Ord> Ranges<T> {
    #[inline]
    fn find(&self, x: T) -> Option<u32> {
        let i = self.starts.partition_point(|&s| s <= x).checked_sub(1)?;
        (x <= *self.ends.get(i)?)
            .then(|| self.leaf.get(i).copied())
            .flatten()
    }

    fn heap_bytes(&self) -> usize {
        self.starts.len() * (2 * size_of::<T>() + size_of::<u32>())
    }
}

/// A frozen set of listed networks (see the module doc).
#[derive(Debug, Default)]
pub struct NetSet {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    nodes: Box<[Node]>,
}

impl NetSet {
    /// The networks stored (one per network and list).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no network is listed: the forward path's one check.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes() + self.nodes.len() * size_of::<Node>()
    }

    /// The most specific listed network holding `ip`, and its first list's
    /// policy.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<NetHit> {
        self.lookup_with(ip, Some)
    }

    /// The most specific listed network holding `ip` whose policy `accept`
    /// takes, walking from the most specific network out; `accept` gives
    /// the policy to report (or `None` to look further out).
    #[inline]
    pub fn lookup_with(
        &self,
        ip: IpAddr,
        mut accept: impl FnMut(PolicyId) -> Option<PolicyId>,
    ) -> Option<NetHit> {
        let mut found = None;
        self.each_match(ip, |net, policy| {
            if found.is_none() {
                found = accept(policy).map(|policy| NetHit { net, policy });
            }
            found.is_none()
        });
        found
    }

    /// Calls `f` with every listed network holding `ip` and its policy,
    /// most specific first, while `f` returns true.
    pub fn each_match(&self, ip: IpAddr, mut f: impl FnMut(Net, PolicyId) -> bool) {
        let mut at = match ip {
            IpAddr::V4(a) => self.v4.find(u32::from(a)),
            IpAddr::V6(a) => self.v6.find(u128::from(a)).or_else(|| {
                a.to_ipv4_mapped()
                    .and_then(|v4| self.v4.find(u32::from(v4)))
            }),
        };
        while let Some(node) = at.and_then(|i| self.nodes.get(i as usize)) {
            if !f(node.net, node.policy) {
                return;
            }
            at = (node.parent != ROOT).then_some(node.parent);
        }
    }
}

/// Collects networks, then freezes them into a [`NetSet`].
#[derive(Debug, Default)]
pub struct NetSetBuilder {
    entries: Vec<(Net, PolicyId)>,
}

impl NetSetBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists `net` with `policy`.
    pub fn insert(&mut self, net: Net, policy: PolicyId) {
        self.entries.push((net, policy));
    }

    /// Networks inserted so far (duplicates included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Freezes the set. The same network with the same policy is stored
    /// once; the same network from two policies is two nodes, the lower
    /// policy (the earlier list) the more specific.
    pub fn build(mut self) -> NetSet {
        // By start, wider first, and for one network the higher policy
        // first, so that the lower one becomes its child (met first).
        self.entries.sort_unstable_by(|(a, pa), (b, pb)| {
            (a.v6, a.start(), a.len, std::cmp::Reverse(*pa)).cmp(&(
                b.v6,
                b.start(),
                b.len,
                std::cmp::Reverse(*pb),
            ))
        });
        self.entries.dedup();
        let mut nodes: Vec<Node> = self
            .entries
            .iter()
            .map(|&(net, policy)| Node {
                net,
                policy,
                parent: ROOT,
            })
            .collect();
        let split = nodes.partition_point(|n| !n.net.v6);
        let v4 = sweep(&mut nodes, 0, split);
        let total = nodes.len();
        let v6 = sweep(&mut nodes, split, total);
        NetSet {
            v4: Ranges {
                // IPv4 values fit 32 bits by construction.
                starts: v4.0.iter().map(|&s| s as u32).collect(),
                ends: v4.1.iter().map(|&e| e as u32).collect(),
                leaf: v4.2.into_boxed_slice(),
            },
            v6: Ranges {
                starts: v6.0.into_boxed_slice(),
                ends: v6.1.into_boxed_slice(),
                leaf: v6.2.into_boxed_slice(),
            },
            nodes: nodes.into_boxed_slice(),
        }
    }
}

/// Cuts the sorted nodes `from..to` (one family) into disjoint ranges,
/// each labelled with its most specific node, and links every node to its
/// parent. Networks nest or are disjoint, so a stack of the networks open
/// at the current position is all it takes.
fn sweep(nodes: &mut [Node], from: usize, to: usize) -> (Vec<u128>, Vec<u128>, Vec<u32>) {
    let mut out = Sweep::default();
    let mut stack: Vec<(usize, u128)> = Vec::new();
    for i in from..to {
        let Some(net) = nodes.get(i).map(|n| n.net) else {
            break;
        };
        let start = net.start();
        while let Some(&(t, end)) = stack.last() {
            if end >= start {
                break;
            }
            stack.pop();
            out.close(t, end);
        }
        if let Some(&(t, _)) = stack.last() {
            if let Some(c) = out.cur
                && c < start
            {
                out.emit(c, start - 1, t);
            }
            if let Some(n) = nodes.get_mut(i) {
                n.parent = t as u32;
            }
        }
        out.cur = Some(start);
        stack.push((i, net.end()));
    }
    while let Some((t, end)) = stack.pop() {
        out.close(t, end);
    }
    (out.starts, out.ends, out.leaf)
}

/// The ranges [`sweep`] has cut so far.
#[derive(Default)]
struct Sweep {
    starts: Vec<u128>,
    ends: Vec<u128>,
    leaf: Vec<u32>,
    /// The first address not yet in a range; `None` past the last address.
    cur: Option<u128>,
}

impl Sweep {
    fn emit(&mut self, start: u128, end: u128, leaf: usize) {
        self.starts.push(start);
        self.ends.push(end);
        self.leaf.push(leaf as u32);
    }

    /// Node `t`, ending at `end`, is left: what remains of it up to its
    /// end is its own.
    fn close(&mut self, t: usize, end: u128) {
        if let Some(c) = self.cur
            && c <= end
        {
            self.emit(c, end, t);
        }
        self.cur = end.checked_add(1);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Net {
        Net::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(entries: &[(&str, u16)]) -> NetSet {
        let mut b = NetSetBuilder::new();
        for (n, p) in entries {
            b.insert(net(n), PolicyId(*p));
        }
        b.build()
    }

    fn hit(s: &NetSet, a: &str) -> Option<(String, u16)> {
        s.lookup(ip(a)).map(|h| (h.net.to_string(), h.policy.0))
    }

    #[test]
    fn parses_networks_and_says_what_is_wrong() {
        assert_eq!(net("192.0.2.0/24").to_string(), "192.0.2.0/24");
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::/0").to_string(), "::/0");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(
            Net::parse("192.0.2.7/24").unwrap_err().to_string(),
            "192.0.2.7/24 has bits set past its prefix length: the network is 192.0.2.0/24"
        );
        assert_eq!(
            Net::parse("10.0.0.0/33"),
            Err(NetError::TooLong { len: 33, max: 32 })
        );
        for bad in [
            "",
            "x",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "10.0.0.0/8/8",
            "1.2.3.4/1234",
        ] {
            assert!(matches!(Net::parse(bad), Err(NetError::Syntax(_))), "{bad}");
        }
        assert!(net("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
    }

    #[test]
    fn the_most_specific_network_wins_and_the_first_list_on_a_tie() {
        let s = set(&[
            ("10.0.0.0/8", 3),
            ("10.1.0.0/16", 4),
            ("10.1.2.3", 5),
            ("10.1.0.0/16", 2),
            ("2001:db8::/32", 6),
            ("192.0.2.0/24", 7),
            ("192.0.2.0/24", 7),
        ]);
        assert_eq!(s.len(), 6);
        assert_eq!(hit(&s, "10.9.9.9"), Some(("10.0.0.0/8".into(), 3)));
        assert_eq!(hit(&s, "10.1.9.9"), Some(("10.1.0.0/16".into(), 2)));
        assert_eq!(hit(&s, "10.1.2.3"), Some(("10.1.2.3/32".into(), 5)));
        assert_eq!(hit(&s, "10.1.2.4"), Some(("10.1.0.0/16".into(), 2)));
        assert_eq!(hit(&s, "10.2.0.0"), Some(("10.0.0.0/8".into(), 3)));
        assert_eq!(hit(&s, "11.0.0.0"), None);
        assert_eq!(hit(&s, "9.255.255.255"), None);
        assert_eq!(hit(&s, "2001:db8:1::9"), Some(("2001:db8::/32".into(), 6)));
        assert_eq!(hit(&s, "2001:db9::"), None);
        // An IPv4-mapped address is the IPv4 address it carries.
        assert_eq!(
            hit(&s, "::ffff:192.0.2.9"),
            Some(("192.0.2.0/24".into(), 7))
        );
        // The chain: most specific first, each list of one network in order.
        let mut all = Vec::new();
        s.each_match(ip("10.1.2.3"), |n, p| {
            all.push(format!("{n}:{}", p.0));
            true
        });
        assert_eq!(
            all,
            [
                "10.1.2.3/32:5",
                "10.1.0.0/16:2",
                "10.1.0.0/16:4",
                "10.0.0.0/8:3"
            ]
        );
        // A group that applies only policy 3 finds the /8.
        let only3 = s.lookup_with(ip("10.1.2.3"), |p| (p.0 == 3).then_some(p));
        assert_eq!(only3.map(|h| h.net.to_string()), Some("10.0.0.0/8".into()));
    }

    #[test]
    fn the_edges_of_the_address_space() {
        let s = set(&[
            ("0.0.0.0/0", 1),
            ("255.255.255.255", 2),
            ("::/0", 3),
            ("ffff::/16", 4),
        ]);
        assert_eq!(hit(&s, "0.0.0.0"), Some(("0.0.0.0/0".into(), 1)));
        assert_eq!(hit(&s, "255.255.255.254"), Some(("0.0.0.0/0".into(), 1)));
        assert_eq!(
            hit(&s, "255.255.255.255"),
            Some(("255.255.255.255/32".into(), 2))
        );
        assert_eq!(
            hit(&s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some(("ffff::/16".into(), 4))
        );
        assert_eq!(hit(&s, "::"), Some(("::/0".into(), 3)));
        assert!(NetSet::default().lookup(ip("1.2.3.4")).is_none());
        assert!(NetSet::default().is_empty());
    }

    /// The README's memory figure: 100,000 IPv4 prefixes (disjoint and
    /// nested, as DROP-style lists have them) and as many IPv6 ones.
    #[test]
    fn memory_per_100k_prefixes() {
        let mut rng = fastrand::Rng::with_seed(7);
        for v6 in [false, true] {
            let mut b = NetSetBuilder::new();
            while b.len() < 100_000 {
                let net = if v6 {
                    let len = rng.u8(29..=48);
                    let bits =
                        (u128::from(rng.u64(..)) << 64) & (u128::MAX << (128 - u32::from(len)));
                    Net::new(IpAddr::V6(Ipv6Addr::from(bits)), len)
                } else {
                    let len = rng.u8(16..=24);
                    let bits = rng.u32(..) & (u32::MAX << (32 - u32::from(len)));
                    Net::new(IpAddr::V4(Ipv4Addr::from(bits)), len)
                };
                b.insert(net.unwrap(), PolicyId(1));
            }
            let s = b.build();
            let per = s.heap_bytes() / s.len();
            eprintln!(
                "v6={v6}: {} nets, {} heap bytes, {per} per net",
                s.len(),
                s.heap_bytes()
            );
            assert!(per <= if v6 { 100 } else { 70 }, "{per} bytes per network");
        }
    }

    /// A network: a random address masked to a random length, mostly in
    /// a small space so that networks nest and collide.
    fn any_net() -> impl Strategy<Value = Net> {
        prop_oneof![
            (any::<u8>(), 0u8..=32).prop_map(|(a, len)| {
                let bits = u32::from_be_bytes([10, a & 7, a >> 3, a]);
                let n = Net::host(IpAddr::V4(Ipv4Addr::from(bits)));
                Net {
                    len,
                    bits: n.bits,
                    ..n
                }
                .masked()
            }),
            (any::<u16>(), 0u8..=128).prop_map(|(a, len)| {
                let bits = (0x2001_0db8u128 << 96) | (u128::from(a) << 64) | u128::from(a);
                Net {
                    v6: true,
                    bits,
                    len,
                }
                .masked()
            }),
        ]
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u8>().prop_map(|a| IpAddr::V4(Ipv4Addr::new(10, a & 7, a >> 3, a))),
            any::<u8>().prop_map(|a| IpAddr::V4(Ipv4Addr::new(10, a & 7, a >> 3, a ^ 1))),
            any::<u16>().prop_map(|a| {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8u128 << 96) | (u128::from(a) << 64) | u128::from(a),
                ))
            }),
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        ]
    }

    impl Net {
        fn masked(self) -> Self {
            Self {
                bits: self.start(),
                ..self
            }
        }
    }

    proptest! {
        /// The matcher agrees with a naive scan: every network holding the
        /// address, most specific first, lower policy first on a tie.
        #[test]
        fn agrees_with_a_naive_scan(
            entries in prop::collection::vec((any_net(), 1u16..6), 0..60),
            probes in prop::collection::vec(any_ip(), 1..40),
        ) {
            let mut b = NetSetBuilder::new();
            for (n, p) in &entries {
                b.insert(*n, PolicyId(*p));
            }
            let s = b.build();
            for ip in probes {
                let mut naive: Vec<(u8, u16, Net)> = entries
                    .iter()
                    .filter(|(n, _)| n.contains(ip))
                    .map(|(n, p)| (n.len, *p, *n))
                    .collect();
                naive.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                naive.dedup();
                let mut got = Vec::new();
                s.each_match(ip, |n, p| { got.push((n.len, p.0, n)); true });
                prop_assert_eq!(&got, &naive, "{}", ip);
                let first = s.lookup(ip).map(|h| (h.net, h.policy.0));
                prop_assert_eq!(first, naive.first().map(|(_, p, n)| (*n, *p)));
            }
        }

        #[test]
        fn parse_round_trips(n in any_net()) {
            prop_assert_eq!(Net::parse(&n.to_string()), Ok(n));
        }
    }
}
