//! Who may ask, and how fast: the CIDR allow/deny rules, the log of refused
//! clients, and the response rate limiter.
//!
//! ```text
//!  client address ─► Access::refuses ─┬─ outside allow, or in deny ─► REFUSED + EDE 18 (or nothing)
//!                                     │                              └─► RefusedLog (one line a minute per /24, per thread)
//!                                     └─ allowed ─► (UDP) RateLimiter::check ─┬─ Answer ─► the normal path
//!                                                                             ├─ Slip   ─► empty TC=1 answer
//!                                                                             └─ Drop   ─► nothing
//! ```
//!
//! Why here, first: a resolver that answers anyone can be used to reflect
//! and amplify traffic at a spoofed victim, and blocked or cached answers
//! cost it nothing to give. So the client's address is judged before the
//! query is looked at, and the default admits only the networks that cannot
//! be reached from the internet (loopback, RFC 1918, CGNAT, link-local,
//! IPv6 ULA and link-local).
//!
//! Everything here is synchronous and knows nothing of sockets: the handler
//! passes in an address (and the limiter a clock reading) and gets a value.
//! An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack socket
//! reports) is judged as the IPv4 address it carries.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

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
fn mask32(prefix: u8) -> u32 {
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
fn mask64(prefix: u8) -> u64 {
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
    fn of(texts: &[&str]) -> Self {
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

/// A client's network as the limiter and the refused log count it: the
/// address cut to a prefix, with its family, as one comparable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct PrefixKey {
    /// 0 = empty slot, 4 or 6 = family.
    family: u8,
    /// The prefix's bits: IPv4 in the low 32 bits, IPv6 its top 64 bits.
    bits: u64,
}

impl PrefixKey {
    fn of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => Self {
                family: 4,
                bits: u64::from(u32::from(a) & mask32(v4_prefix)),
            },
            IpAddr::V6(a) => Self {
                family: 6,
                bits: ((u128::from(a) >> 64) as u64) & mask64(v6_prefix),
            },
        }
    }

    fn hash(self, seed: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(
            &self.bits.to_le_bytes(),
            seed ^ u64::from(self.family),
        )
    }

    fn to_cidr(self, v4_prefix: u8, v6_prefix: u8) -> Cidr {
        if self.family == 4 {
            Cidr::new(IpAddr::V4(Ipv4Addr::from(self.bits as u32)), v4_prefix)
        } else {
            Cidr::new(
                IpAddr::V6(Ipv6Addr::from(u128::from(self.bits) << 64)),
                v6_prefix,
            )
        }
    }
}

/// The refused-client log counts per /24 (IPv4) and /56 (IPv6).
const LOG_V4_PREFIX: u8 = 24;
const LOG_V6_PREFIX: u8 = 56;
/// Seconds between two lines about the same prefix.
const LOG_INTERVAL: u32 = 60;
/// Prefixes whose counts each thread keeps (a direct-mapped table: 1024 x
/// 32 bytes, made at the thread's first refusal).
const LOG_SLOTS: usize = 1024;
/// Lines about single prefixes per minute, all threads together, whatever
/// the number of prefixes: past this a scan from many networks is summed
/// into one line a minute per thread.
const LOG_LINES_PER_MINUTE: u32 = 100;

#[derive(Debug, Clone, Copy, Default)]
struct LogSlot {
    key: PrefixKey,
    /// Queries refused since this prefix's last line.
    pending: u64,
    /// When its last line was written (seconds); `None`: no line yet.
    last_line: Option<u32>,
}

/// What the refused log has to say after one refused query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefusedReport {
    /// A line for this prefix: the queries refused from it since its last line.
    pub line: Option<(Cidr, u64)>,
    /// Queries refused from prefixes not itemised (the table was full, or
    /// the lines for the minute were spent), since the last such summary.
    pub unitemised: Option<u64>,
}

/// Counts refused queries per /24 (/56) and says when a line is due: at the
/// first refusal from a prefix, then at most once a minute per prefix, and
/// at most 100 such lines a minute (a [`LineBudget`]), with one summary
/// line a minute for the rest. Memory is fixed (1024 slots); a
/// prefix that loses its slot to another has its pending count summed into
/// the summary, so every refused query is counted in some line.
///
/// Each serving thread keeps its own ([`RefusedLog::record_here`]): a
/// spoofed flood from outside `allow`, the very traffic `[access]` is there
/// to stop, reaches every UDP worker at once, and one log behind a lock
/// made them take turns. So a prefix that reaches several threads gets a
/// line from each, each with the queries that thread refused; only the
/// per-minute line budget is shared, an atomic touched when a line is due.
#[derive(Debug)]
pub struct RefusedLog {
    slots: Box<[LogSlot]>,
    seed: u64,
    unitemised: u64,
    last_summary: Option<u32>,
}

/// The lines about single prefixes that every thread's [`RefusedLog`]
/// together may write in a minute: the minute (seconds / 60) in the high
/// 32 bits, the lines spent in it in the low 32.
#[derive(Debug, Default)]
pub struct LineBudget(AtomicU64);

impl LineBudget {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Takes one line from the budget of the minute holding `now` (seconds).
    fn take(&self, now: u32) -> bool {
        let minute = u64::from(now / LOG_INTERVAL) + 1;
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                if v >> 32 != minute {
                    Some(minute << 32 | 1)
                } else if v & 0xffff_ffff < u64::from(LOG_LINES_PER_MINUTE) {
                    Some(v + 1)
                } else {
                    None
                }
            })
            .is_ok()
    }
}

thread_local! {
    /// This thread's refused log, made at its first refusal.
    static HERE: RefCell<Option<RefusedLog>> = const { RefCell::new(None) };
}

/// The clock of [`RefusedLog::record_here`]: one for every thread, so that
/// "a minute" means the same in each log and in the budget.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Default for RefusedLog {
    fn default() -> Self {
        Self::with_seed(fastrand::u64(..))
    }
}

impl RefusedLog {
    /// A log whose slots are placed by `seed` (random by default, so no one
    /// can aim a scan at one slot).
    pub fn with_seed(seed: u64) -> Self {
        Self {
            slots: vec![LogSlot::default(); LOG_SLOTS].into_boxed_slice(),
            seed,
            unitemised: 0,
            last_summary: None,
        }
    }

    /// Counts one refused query from `ip` in this thread's own log (made
    /// now if this is its first): no lock, nothing shared but `budget`.
    pub fn record_here(ip: IpAddr, budget: &LineBudget) -> RefusedReport {
        let now = u32::try_from(EPOCH.elapsed().as_secs()).unwrap_or(u32::MAX);
        HERE.with_borrow_mut(|log| {
            log.get_or_insert_with(Self::default)
                .record(ip, now, budget)
        })
    }

    /// Counts one refused query from `ip` at `now` (seconds, any epoch; the
    /// same clock as every other log sharing `budget`).
    pub fn record(&mut self, ip: IpAddr, now: u32, budget: &LineBudget) -> RefusedReport {
        let key = PrefixKey::of(ip, LOG_V4_PREFIX, LOG_V6_PREFIX);
        let i = (key.hash(self.seed) as usize) & (LOG_SLOTS - 1);
        let slot = &mut self.slots[i];
        if slot.key != key {
            self.unitemised += slot.pending;
            *slot = LogSlot {
                key,
                pending: 0,
                last_line: None,
            };
        }
        slot.pending += 1;
        let due = slot
            .last_line
            .is_none_or(|t| now.wrapping_sub(t) >= LOG_INTERVAL);
        let mut report = RefusedReport::default();
        if due && budget.take(now) {
            report.line = Some((key.to_cidr(LOG_V4_PREFIX, LOG_V6_PREFIX), slot.pending));
            slot.pending = 0;
            slot.last_line = Some(now);
        }
        if self.unitemised > 0
            && self
                .last_summary
                .is_none_or(|t| now.wrapping_sub(t) >= LOG_INTERVAL)
        {
            report.unitemised = Some(self.unitemised);
            self.unitemised = 0;
            self.last_summary = Some(now);
        }
        report
    }
}

/// The rate limiter's settings (`[rate_limit]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Answers per second per client prefix over UDP; 0 turns the limiter off.
    pub responses_per_second: u32,
    /// Seconds over which a flood keeps counting against its prefix.
    pub window: u32,
    /// Every `slip`th limited answer goes out empty with TC=1; 0 = none.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Clients never limited.
    pub exempt: CidrSet,
    /// Client prefixes tracked at once.
    pub table_size: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            responses_per_second: 0,
            window: 15,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: CidrSet::of(&["127.0.0.0/8", "::1/128"]),
            table_size: 65_536,
        }
    }
}

/// What the limiter says about one UDP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Answer as usual.
    Answer,
    /// Send an empty answer with TC=1: a real client retries over TCP, a
    /// spoofed victim gets no more bytes than were sent in its name.
    Slip,
    /// Send nothing.
    Drop,
}

/// Ways per bucket: a prefix lives in one of the 4 slots its hash names,
/// and a new prefix takes the stalest of them.
const WAYS: usize = 4;
/// Credit is counted in thousandths of an answer, so that refill per
/// millisecond is exactly `responses_per_second` units.
const UNIT: i64 = 1000;

/// One client prefix in the limiter's table: 24 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RateSlot {
    /// The prefix's bits (see [`PrefixKey`]).
    bits: u64,
    /// Answers this prefix may still get, in thousandths; negative while limited.
    credit: i64,
    /// When it last asked, in milliseconds since the limiter started
    /// (wraps after 49 days; an idle prefix then looks recently seen, which
    /// costs it at most the refill of that one gap).
    last: u32,
    /// Limited answers since the last slip.
    since_slip: u16,
    /// 0 = empty slot, else 4 or 6.
    family: u8,
}

impl RateSlot {
    fn holds(&self, key: PrefixKey) -> bool {
        self.family == key.family && self.bits == key.bits
    }
}

/// Response rate limiting in the spirit of BIND's RRL, per client prefix
/// (`ipv4_prefix`, `ipv6_prefix`): each prefix has a credit of answers,
/// refilled at `responses_per_second` and capped at one second's worth; each
/// answer takes one. Below zero the prefix is limited, and its credit keeps
/// falling with every query down to `-window x rate`, so a flood stays
/// limited until it has been quiet for as long as the window says.
///
/// The table has a fixed number of slots (`table_size`, rounded up to a
/// power of two), in buckets of 4 behind one mutex each: a spoofed
/// flood from random sources costs [`RateLimiter::heap_bytes`] and no more,
/// and evicts only the stalest prefixes, never one that keeps asking. It is
/// shared by every UDP worker: a stub's queries come from random source
/// ports, which the kernel may spread over workers, and a table per worker
/// would multiply the limit.
#[derive(Debug)]
pub struct RateLimiter {
    settings: RateLimit,
    buckets: Box<[Mutex<[RateSlot; WAYS]>]>,
    seed: u64,
    epoch: Instant,
    cap: i64,
    floor: i64,
}

impl RateLimiter {
    /// The limiter for `settings`, or `None` when it is off (rate 0): then
    /// no table is allocated and the handler pays one branch.
    pub fn new(settings: &RateLimit) -> Option<Self> {
        Self::with_seed(settings, fastrand::u64(..))
    }

    /// As [`Self::new`], with the slots placed by `seed` (random by default,
    /// so no one can aim a flood at a victim's bucket).
    pub fn with_seed(settings: &RateLimit, seed: u64) -> Option<Self> {
        if settings.responses_per_second == 0 {
            return None;
        }
        let slots = settings.table_size.max(WAYS).next_power_of_two();
        let buckets = (0..slots / WAYS)
            .map(|_| Mutex::new([RateSlot::default(); WAYS]))
            .collect();
        let rate = i64::from(settings.responses_per_second);
        Some(Self {
            settings: settings.clone(),
            buckets,
            seed,
            epoch: Instant::now(),
            cap: rate * UNIT,
            floor: -(i64::from(settings.window) * rate * UNIT),
        })
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &RateLimit {
        &self.settings
    }

    /// Client prefixes it can track at once.
    pub fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// The table's memory, fixed from the start.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.len() * size_of::<Mutex<[RateSlot; WAYS]>>()
    }

    /// Whether an answer may go to `ip` now.
    #[inline]
    pub fn check(&self, ip: IpAddr) -> Limit {
        let now = u32::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u32::MAX);
        self.check_at(ip, now)
    }

    /// [`Self::check`] at `now` milliseconds since the limiter started.
    pub fn check_at(&self, ip: IpAddr, now: u32) -> Limit {
        if self.settings.exempt.contains(ip) {
            return Limit::Answer;
        }
        let key = PrefixKey::of(ip, self.settings.ipv4_prefix, self.settings.ipv6_prefix);
        let b = (key.hash(self.seed) as usize) & (self.buckets.len() - 1);
        let mut bucket = match self.buckets[b].lock() {
            Ok(g) => g,
            // Nothing panics while holding it; if something did, the counts are still counts.
            Err(poisoned) => poisoned.into_inner(),
        };
        let slot = match bucket.iter().position(|s| s.holds(key)) {
            Some(i) => {
                let s = &mut bucket[i];
                // Refill for the time since it last asked, up to one second's worth.
                let elapsed = i64::from(now.wrapping_sub(s.last));
                s.credit = s
                    .credit
                    .saturating_add(elapsed.saturating_mul(self.cap / UNIT))
                    .min(self.cap);
                s
            }
            None => {
                // An empty slot, else the prefix that asked longest ago.
                let i = bucket
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, s)| {
                        if s.family == 0 {
                            u64::MAX
                        } else {
                            u64::from(now.wrapping_sub(s.last))
                        }
                    })
                    .map_or(0, |(i, _)| i);
                bucket[i] = RateSlot {
                    bits: key.bits,
                    credit: self.cap,
                    last: now,
                    since_slip: 0,
                    family: key.family,
                };
                &mut bucket[i]
            }
        };
        slot.last = now;
        slot.credit = (slot.credit - UNIT).max(self.floor);
        if slot.credit >= 0 {
            return Limit::Answer;
        }
        let slip = self.settings.slip;
        if slip == 0 {
            return Limit::Drop;
        }
        slot.since_slip += 1;
        if u32::from(slot.since_slip) >= slip {
            slot.since_slip = 0;
            Limit::Slip
        } else {
            Limit::Drop
        }
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

    #[test]
    fn refused_log_says_once_a_minute_per_24_with_a_count() {
        let mut log = RefusedLog::with_seed(1);
        let budget = LineBudget::new();
        let first = log.record(ip("198.51.100.7"), 1000, &budget);
        assert_eq!(first.line, Some((cidr("198.51.100.0/24"), 1)));
        // The same /24, within the minute: counted, not logged.
        for i in 0..9 {
            let r = log.record(ip(&format!("198.51.100.{}", 10 + i)), 1000 + i, &budget);
            assert_eq!(r, RefusedReport::default());
        }
        // Another /24 gets its own first line.
        assert_eq!(
            log.record(ip("198.51.101.1"), 1010, &budget).line,
            Some((cidr("198.51.101.0/24"), 1))
        );
        // A minute after the first line: the count since then (9 + this one).
        assert_eq!(
            log.record(ip("198.51.100.200"), 1060, &budget).line,
            Some((cidr("198.51.100.0/24"), 10))
        );
        // IPv6 counts per /56.
        assert_eq!(
            log.record(ip("2001:db8:0:1::1"), 1060, &budget).line,
            Some((cidr("2001:db8::/56"), 1))
        );
        assert_eq!(log.record(ip("2001:db8:0:ff::9"), 1061, &budget).line, None);
        assert_eq!(
            log.record(ip("2001:db8:0:100::1"), 1061, &budget).line,
            Some((cidr("2001:db8:0:100::/56"), 1))
        );
    }

    #[test]
    fn a_scan_from_everywhere_is_summed_not_itemised() {
        let mut log = RefusedLog::with_seed(7);
        let budget = LineBudget::new();
        let (mut lines, mut counted) = (0u64, 0u64);
        let queries = 50_000u32;
        for i in 0..queries {
            // A different /24 every query, all within one minute.
            let r = log.record(
                IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i << 8))),
                5,
                &budget,
            );
            if let Some((_, n)) = r.line {
                lines += 1;
                counted += n;
            }
            counted += r.unitemised.unwrap_or(0);
            lines += u64::from(r.unitemised.is_some());
        }
        assert_eq!(
            lines,
            u64::from(LOG_LINES_PER_MINUTE) + 1,
            "itemised lines + one summary"
        );
        // The next minute's summary accounts for the rest, or they still wait in the table.
        let r = log.record(ip("192.0.2.1"), 70, &budget);
        counted += r.unitemised.unwrap_or(0) + r.line.map_or(0, |l| l.1);
        let waiting: u64 = log.slots.iter().map(|s| s.pending).sum();
        assert_eq!(
            counted + waiting,
            u64::from(queries) + 1,
            "every query counted once"
        );
    }

    /// Issue 16 (5): a refused query takes no lock. Each thread counts in
    /// its own log, so a flood that reaches every worker makes none wait
    /// for another; only the line budget is shared.
    #[test]
    fn r16_each_thread_counts_refusals_in_its_own_log() {
        let budget = LineBudget::new();
        let first = RefusedLog::record_here(ip("198.51.100.7"), &budget);
        assert_eq!(first.line, Some((cidr("198.51.100.0/24"), 1)));
        assert_eq!(
            RefusedLog::record_here(ip("198.51.100.8"), &budget),
            RefusedReport::default(),
            "counted in this thread's log, no line yet"
        );
        // Another thread has a log of its own: its first query from the
        // same /24 gets its own first line.
        let other = std::thread::scope(|s| {
            s.spawn(|| RefusedLog::record_here(ip("198.51.100.9"), &budget))
                .join()
                .expect("thread")
        });
        assert_eq!(other.line, Some((cidr("198.51.100.0/24"), 1)));
    }

    /// The lines of every thread's log come from one budget a minute.
    #[test]
    fn r16_the_line_budget_is_shared_by_every_log() {
        let budget = LineBudget::new();
        let mut a = RefusedLog::with_seed(1);
        let mut b = RefusedLog::with_seed(2);
        let mut lines = 0;
        for i in 0..LOG_LINES_PER_MINUTE {
            let r = a.record(
                IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i << 8))),
                120,
                &budget,
            );
            lines += u32::from(r.line.is_some());
        }
        assert_eq!(lines, LOG_LINES_PER_MINUTE);
        // The minute's lines are spent: the other log counts, and waits.
        assert_eq!(b.record(ip("192.0.2.1"), 130, &budget).line, None);
        assert_eq!(
            b.record(ip("192.0.2.2"), 180, &budget).line,
            Some((cidr("192.0.2.0/24"), 2)),
            "next minute"
        );
    }

    fn limiter(rate: u32, window: u32, slip: u32) -> RateLimiter {
        RateLimiter::with_seed(
            &RateLimit {
                responses_per_second: rate,
                window,
                slip,
                exempt: CidrSet::default(),
                ..RateLimit::default()
            },
            3,
        )
        .expect("on")
    }

    fn tally(l: &RateLimiter, who: &str, n: u32, now: u32) -> [u32; 3] {
        let mut t = [0; 3];
        for _ in 0..n {
            match l.check_at(ip(who), now) {
                Limit::Answer => t[0] += 1,
                Limit::Slip => t[1] += 1,
                Limit::Drop => t[2] += 1,
            }
        }
        t
    }

    #[test]
    fn rate_zero_allocates_nothing() {
        assert!(RateLimiter::new(&RateLimit::default()).is_none());
    }

    #[test]
    fn a_burst_gets_one_seconds_worth_then_slips_every_second() {
        let l = limiter(10, 15, 2);
        assert_eq!(tally(&l, "192.0.2.1", 30, 0), [10, 10, 10]);
        // Another address in the same /24 shares the limit.
        assert_eq!(tally(&l, "192.0.2.99", 2, 0), [0, 1, 1]);
        // Another /24 has its own.
        assert_eq!(tally(&l, "192.0.3.1", 10, 0), [10, 0, 0]);
    }

    #[test]
    fn slip_zero_drops_all_slip_one_truncates_all() {
        assert_eq!(tally(&limiter(5, 15, 0), "192.0.2.1", 20, 0), [5, 0, 15]);
        assert_eq!(tally(&limiter(5, 15, 1), "192.0.2.1", 20, 0), [5, 15, 0]);
        assert_eq!(tally(&limiter(5, 15, 3), "192.0.2.1", 20, 0), [5, 5, 10]);
    }

    #[test]
    fn a_flood_stays_limited_for_the_window() {
        let l = limiter(10, 5, 2);
        // 1000 queries in a second: credit falls to the floor, -5 s worth.
        assert_eq!(tally(&l, "192.0.2.1", 1000, 0)[0], 10);
        // Two seconds of quiet is not enough to answer again...
        assert_eq!(tally(&l, "192.0.2.1", 1, 2000)[0], 0);
        // ...six seconds after the flood it is (refilled past zero).
        assert_eq!(tally(&l, "192.0.2.1", 1, 8000)[0], 1);
        // A client that keeps to the rate is never limited.
        let l = limiter(10, 5, 2);
        for s in 0..100u32 {
            assert_eq!(tally(&l, "192.0.2.1", 10, s * 1000)[0], 10, "second {s}");
        }
    }

    #[test]
    fn exempt_clients_are_never_limited() {
        let l = RateLimiter::with_seed(
            &RateLimit {
                responses_per_second: 1,
                ..RateLimit::default()
            },
            3,
        )
        .expect("on");
        assert_eq!(tally(&l, "127.0.0.1", 100, 0), [100, 0, 0]);
        assert_eq!(tally(&l, "::1", 100, 0), [100, 0, 0]);
        assert_eq!(tally(&l, "::ffff:127.0.0.1", 100, 0), [100, 0, 0]);
        assert_eq!(tally(&l, "10.0.0.1", 3, 0), [1, 1, 1]);
    }

    #[test]
    fn ipv6_clients_are_limited_per_56() {
        let l = limiter(2, 15, 2);
        assert_eq!(tally(&l, "2001:db8:0:1::1", 2, 0), [2, 0, 0]);
        assert_eq!(tally(&l, "2001:db8:0:2::9", 2, 0), [0, 1, 1], "same /56");
        assert_eq!(tally(&l, "2001:db8:0:100::1", 2, 0), [2, 0, 0], "next /56");
    }

    #[test]
    fn the_table_is_fixed_and_a_spoofed_flood_evicts_only_the_stale() {
        let l = RateLimiter::with_seed(
            &RateLimit {
                responses_per_second: 5,
                exempt: CidrSet::default(),
                ipv4_prefix: 32,
                table_size: 4000,
                ..RateLimit::default()
            },
            9,
        )
        .expect("on");
        assert_eq!(l.slots(), 4096);
        assert_eq!(size_of::<RateSlot>(), 24);
        let bytes = l.heap_bytes();
        assert!(bytes <= 4096 * 26, "{bytes} bytes");
        // An attacker floods from one address, interleaved with a spoofed
        // flood from 180,000 random sources, over ten seconds.
        let mut rng = fastrand::Rng::with_seed(5);
        let mut attacker = [0u32; 3];
        for i in 0..200_000u32 {
            let now = i / 20;
            l.check_at(IpAddr::V4(Ipv4Addr::from(rng.u32(..))), now);
            if i % 10 == 0 {
                let t = tally(&l, "203.0.113.5", 1, now);
                for k in 0..3 {
                    attacker[k] += t[k];
                }
            }
        }
        assert_eq!(l.heap_bytes(), bytes, "no growth");
        // The attacker's prefix, always the freshest in its bucket, kept its
        // limit: its first second's five answers over the whole flood, not
        // five more at every eviction.
        assert_eq!(attacker[0], 5, "{attacker:?}");
        assert_eq!(attacker[1] + attacker[2], 19_995);
    }
}
