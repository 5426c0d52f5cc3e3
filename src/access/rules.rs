//! Networks and the allow/deny rules built from them: a [`Cidr`] parsed
//! strictly (no bits past the prefix), a [`CidrSet`] searched by bisection
//! over merged ranges, and [`Access`], which judges a client's address
//! (deny wins over allow; the default allows private networks only).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address and a prefix length, with no bits set past the
/// prefix (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or network such as \"10.0.0.0/8\" or \"2001:db8::/32\"")]
    Address(String),
    #[error("{text:?}: the prefix length must be a number from 0 to {max}")]
    Prefix { text: String, max: u8 },
    /// Bits set past the prefix are most likely a typo for a different
    /// network, so they are refused rather than silently masked off.
    #[error(
        "{text:?} has bits set past the /{prefix} prefix: write {network} for the network, or {addr}/{max} for the one address"
    )]
    HostBits {
        text: String,
        prefix: u8,
        network: Cidr,
        addr: IpAddr,
        max: u8,
    },
}

impl Cidr {
    /// The network with `prefix` bits of `addr`, the rest masked off.
    /// An IPv4-mapped IPv6 network of /96 or longer becomes its IPv4 network.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        match addr {
            IpAddr::V4(a) => {
                let prefix = prefix.min(32);
                Self {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
                    prefix,
                }
            }
            IpAddr::V6(a) => {
                let prefix = prefix.min(128);
                if prefix >= 96
                    && let Some(v4) = a.to_ipv4_mapped()
                {
                    return Self::new(IpAddr::V4(v4), prefix - 96);
                }
                Self {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
                    prefix,
                }
            }
        }
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` (canonical: IPv4-mapped already turned into IPv4) is in this network.
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask32(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask128(self.prefix) == u128::from(n),
            _ => false,
        }
    }

    /// The first and last address, as numbers of the family's width.
    fn range(&self) -> Range {
        match self.addr {
            IpAddr::V4(n) => {
                let lo = u32::from(n);
                Range::V4(lo, lo | !mask32(self.prefix))
            }
            IpAddr::V6(n) => {
                let lo = u128::from(n);
                Range::V6(lo, lo | !mask128(self.prefix))
            }
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (`/32` or `/128`).
    fn from_str(text: &str) -> Result<Self, CidrError> {
        let s = text.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| CidrError::Prefix {
                        text: text.to_owned(),
                        max,
                    })?
            }
        };
        let network = Self::new(addr, prefix);
        // The address as the network's family writes it (an IPv4-mapped
        // network became IPv4), to see whether bits past the prefix are set.
        let exact = match (network.addr, addr) {
            (IpAddr::V4(_), IpAddr::V6(a)) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            _ => addr,
        };
        if exact != network.addr {
            return Err(CidrError::HostBits {
                text: text.to_owned(),
                prefix: network.prefix,
                network,
                addr: exact,
                max: if exact.is_ipv4() { 32 } else { 128 },
            });
        }
        Ok(network)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    V4(u32, u32),
    V6(u128, u128),
}

#[inline]
pub(super) fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

#[inline]
fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

#[inline]
pub(super) fn mask64(prefix: u8) -> u64 {
    u64::MAX
        .checked_shl(64 - u32::from(prefix.min(64)))
        .unwrap_or(0)
}

/// A set of networks with a fast membership test: the networks as written
/// (for `embargo check` and messages), and their address ranges sorted and
/// merged, searched by bisection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    entries: Vec<Cidr>,
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

impl CidrSet {
    /// The set of `entries`.
    pub fn new(entries: Vec<Cidr>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in &entries {
            match c.range() {
                Range::V4(lo, hi) => v4.push((lo, hi)),
                Range::V6(lo, hi) => v6.push((lo, hi)),
            }
        }
        Self {
            entries,
            v4: merge(v4).into(),
            v6: merge(v6).into(),
        }
    }

    /// Parses each string as a [`Cidr`]; for fixed sets known to be valid.
    pub(super) fn of(texts: &[&str]) -> Self {
        Self::new(texts.iter().filter_map(|t| t.parse().ok()).collect())
    }

    /// The networks as given.
    pub fn entries(&self) -> &[Cidr] {
        &self.entries
    }

    /// No network at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `ip` is in one of the networks.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => in_ranges(&self.v4, u32::from(a)),
            IpAddr::V6(a) => in_ranges(&self.v6, u128::from(a)),
        }
    }

    /// The most specific network that holds `ip` (what `embargo check` names).
    pub fn find(&self, ip: IpAddr) -> Option<Cidr> {
        let ip = ip.to_canonical();
        self.entries
            .iter()
            .filter(|c| c.contains(ip))
            .max_by_key(|c| c.prefix)
            .copied()
    }

    /// Whether every address of `net` is in the set.
    pub fn covers(&self, net: &Cidr) -> bool {
        match net.range() {
            Range::V4(lo, hi) => covered(&self.v4, lo, hi),
            Range::V6(lo, hi) => covered(&self.v6, lo, hi),
        }
    }
}

/// Sorts ranges and joins those that overlap or touch.
fn merge<T: Copy + Ord + Successor>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.succ() => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// `x + 1`, saturating: what "touching" means for address ranges.
trait Successor {
    fn succ(self) -> Self;
}

impl Successor for u32 {
    fn succ(self) -> Self {
        self.saturating_add(1)
    }
}

impl Successor for u128 {
    fn succ(self) -> Self {
        self.saturating_add(1)
    }
}

#[inline]
fn in_ranges<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The last range that starts at or before x is the only one that can hold it.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

fn covered<T: Copy + Ord>(ranges: &[(T, T)], lo: T, hi: T) -> bool {
    let i = ranges.partition_point(|r| r.0 <= lo);
    i > 0 && ranges[i - 1].1 >= hi
}

/// The networks the default `allow` admits: those that cannot be reached
/// from the internet, so a server on 0.0.0.0 is not an open resolver.
pub const PRIVATE_NETWORKS: [&str; 9] = [
    "127.0.0.0/8",    // loopback
    "10.0.0.0/8",     // RFC 1918
    "172.16.0.0/12",  // RFC 1918
    "192.168.0.0/16", // RFC 1918
    "100.64.0.0/10",  // CGNAT shared address space (RFC 6598)
    "169.254.0.0/16", // IPv4 link-local
    "::1/128",        // IPv6 loopback
    "fc00::/7",       // IPv6 unique local (RFC 4193)
    "fe80::/10",      // IPv6 link-local
];

/// What happens to a query from a client that may not ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessAction {
    /// REFUSED, with EDE 18 (Prohibited) when the query has EDNS.
    Refuse,
    /// No answer at all.
    Drop,
}

impl AccessAction {
    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refuse" => Some(Self::Refuse),
            "drop" => Some(Self::Drop),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Drop => "drop",
        }
    }
}

/// Who may ask: `allow`, minus `deny` (deny wins), and what everyone else gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub allow: CidrSet,
    pub deny: CidrSet,
    pub action: AccessAction,
}

impl Default for Access {
    fn default() -> Self {
        Self {
            allow: Self::default_allow(),
            deny: CidrSet::default(),
            action: AccessAction::Refuse,
        }
    }
}

/// Why a client may or may not ask (for `embargo check --client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// In this `allow` network and in no `deny` network.
    Allowed(Cidr),
    /// In this `deny` network.
    Denied(Cidr),
    /// In no `allow` network.
    NotAllowed,
}

impl Access {
    /// The default `allow`: [`PRIVATE_NETWORKS`].
    pub fn default_allow() -> CidrSet {
        CidrSet::of(&PRIVATE_NETWORKS)
    }

    /// `None` when `ip` may ask, else what its queries get. One or two
    /// bisections over a few ranges: the cost of every allowed query.
    #[inline]
    pub fn refuses(&self, ip: IpAddr) -> Option<AccessAction> {
        let ip = ip.to_canonical();
        if self.allow.contains(ip) && (self.deny.is_empty() || !self.deny.contains(ip)) {
            None
        } else {
            Some(self.action)
        }
    }

    /// Which rule decides for `ip`.
    pub fn judge(&self, ip: IpAddr) -> Judgement {
        if let Some(d) = self.deny.find(ip) {
            return Judgement::Denied(d);
        }
        match self.allow.find(ip) {
            Some(a) => Judgement::Allowed(a),
            None => Judgement::NotAllowed,
        }
    }

    /// The first `allow` network that reaches beyond [`PRIVATE_NETWORKS`]:
    /// clients there can reach this server from the internet.
    pub fn public_network(&self) -> Option<Cidr> {
        let private = Self::default_allow();
        self.allow
            .entries()
            .iter()
            .find(|c| !private.covers(c))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn parses_networks_and_bare_addresses() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr(" 10.1.0.0/16 ").to_string(), "10.1.0.0/16");
        // IPv4-mapped networks are IPv4 networks.
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("::ffff:192.0.2.1").to_string(), "192.0.2.1/32");
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        assert!(matches!("ten".parse::<Cidr>(), Err(CidrError::Address(_))));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 32, .. })
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 128, .. })
        ));
        assert!(matches!(
            "10.0.0.0/".parse::<Cidr>(),
            Err(CidrError::Prefix { .. })
        ));
        let e = "10.0.0.1/8".parse::<Cidr>().expect_err("host bits");
        assert_eq!(
            e.to_string(),
            "\"10.0.0.1/8\" has bits set past the /8 prefix: write 10.0.0.0/8 for the network, or 10.0.0.1/32 for the one address"
        );
        assert!(matches!(
            "2001:db8::1/32".parse::<Cidr>(),
            Err(CidrError::HostBits { .. })
        ));
    }

    #[test]
    fn the_default_allow_is_private_networks_only() {
        let a = Access::default();
        for inside in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(a.refuses(ip(inside)), None, "{inside}");
        }
        for outside in [
            "203.0.113.7",
            "198.51.100.7",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "11.0.0.1",
            "2001:db8::1",
            "::ffff:203.0.113.7",
            "::2",
            "fec0::1",
            "0.0.0.0",
        ] {
            assert_eq!(
                a.refuses(ip(outside)),
                Some(AccessAction::Refuse),
                "{outside}"
            );
        }
        assert_eq!(a.public_network(), None);
    }

    #[test]
    fn deny_wins_over_allow_and_judge_names_the_rule() {
        let a = Access {
            allow: CidrSet::new(vec![cidr("10.0.0.0/8"), cidr("10.1.0.0/16")]),
            deny: CidrSet::new(vec![cidr("10.1.2.0/24")]),
            action: AccessAction::Drop,
        };
        assert_eq!(a.refuses(ip("10.1.2.3")), Some(AccessAction::Drop));
        assert_eq!(a.refuses(ip("10.1.3.3")), None);
        assert_eq!(
            a.judge(ip("10.1.2.3")),
            Judgement::Denied(cidr("10.1.2.0/24"))
        );
        assert_eq!(
            a.judge(ip("10.1.3.3")),
            Judgement::Allowed(cidr("10.1.0.0/16")),
            "the most specific allow network"
        );
        assert_eq!(
            a.judge(ip("10.9.3.3")),
            Judgement::Allowed(cidr("10.0.0.0/8"))
        );
        assert_eq!(a.judge(ip("192.0.2.1")), Judgement::NotAllowed);
    }

    #[test]
    fn public_networks_in_allow_are_found() {
        let mut a = Access {
            allow: CidrSet::new(vec![cidr("10.0.0.0/8"), cidr("192.168.0.0/15")]),
            ..Access::default()
        };
        assert_eq!(a.public_network(), Some(cidr("192.168.0.0/15")));
        a.allow = CidrSet::new(vec![cidr("::/0")]);
        assert_eq!(a.public_network(), Some(cidr("::/0")));
        a.allow = CidrSet::new(vec![cidr("fd12:3456::/32"), cidr("172.20.0.0/16")]);
        assert_eq!(a.public_network(), None);
    }

    #[test]
    fn merged_ranges_cover_and_contain() {
        // Adjacent /25s merge into one range that covers the /24.
        let s = CidrSet::new(vec![cidr("192.0.2.0/25"), cidr("192.0.2.128/25")]);
        assert!(s.covers(&cidr("192.0.2.0/24")));
        assert!(!s.covers(&cidr("192.0.0.0/16")));
        assert!(s.contains(ip("192.0.2.255")));
        assert!(!s.contains(ip("192.0.3.0")));
        let all = CidrSet::new(vec![cidr("0.0.0.0/0"), cidr("::/0")]);
        assert!(all.contains(ip("255.255.255.255")));
        assert!(all.contains(ip("ffff::1")));
        assert!(!CidrSet::default().contains(ip("127.0.0.1")));
    }

    fn arb_cidr() -> impl Strategy<Value = Cidr> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), p)),
            // Few distinct high bits, so that networks and addresses meet.
            (0u128..4, any::<u64>(), 0u8..=128).prop_map(|(hi, lo, p)| Cidr::new(
                IpAddr::V6(Ipv6Addr::from((hi << 126) | u128::from(lo))),
                p
            )),
        ]
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            (0u128..4, any::<u64>())
                .prop_map(|(hi, lo)| IpAddr::V6(Ipv6Addr::from((hi << 126) | u128::from(lo)))),
            any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
        ]
    }

    proptest! {
        /// The bisection over merged ranges agrees with checking every network.
        #[test]
        fn contains_agrees_with_a_naive_check(
            nets in proptest::collection::vec(arb_cidr(), 0..12),
            probes in proptest::collection::vec(arb_ip(), 1..32),
        ) {
            let set = CidrSet::new(nets.clone());
            for p in probes {
                let canon = p.to_canonical();
                let naive = nets.iter().any(|n| n.contains(canon));
                prop_assert_eq!(set.contains(p), naive, "{} in {:?}", p, nets);
                prop_assert_eq!(set.find(p).is_some(), naive);
            }
            // An address inside a network's bounds, picked from its own bounds.
            for n in &nets {
                prop_assert!(set.contains(n.addr()));
                prop_assert!(set.covers(n));
            }
        }

        /// Every network prints as something that parses back to it.
        #[test]
        fn cidrs_round_trip(n in arb_cidr()) {
            prop_assert_eq!(n.to_string().parse::<Cidr>(), Ok(n));
        }
    }
}
