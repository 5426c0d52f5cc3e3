//! The record a serving thread hands to the observer for one query: plain
//! values of a fixed size, `Copy`, with the name as the matcher's lowercase
//! wire-form bytes. Nothing is formatted or allocated to make one; the
//! observer's thread turns it into text later.
//!
//! ```text
//!  Handler::handle / forward ─► QueryEvent (320 bytes) ─► Recorder ─► bounded ring ─► observer thread
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::groups::ClientId;
use crate::matcher::{MAX_KEY, NameKey, Net};
use crate::policy::Action;
use crate::state::ListSlot;

/// What became of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Decision {
    /// A list matched: answered from the list's policy, never sent upstream.
    Blocked,
    /// Not listed (or allowlisted): forwarded, and the upstream answered.
    /// The same word as `embargo_queries_total{decision="forwarded"}`.
    Forwarded,
    /// Not listed: answered from the cache.
    Cached,
    /// Embargo would not serve it: a zone transfer request, or (with
    /// `[access]`) a client outside the networks it serves.
    Refused,
    /// Could not be answered as asked: malformed (FORMERR), an opcode or
    /// EDNS version we do not serve (NOTIMP, BADVERS), or no upstream
    /// answered in time (SERVFAIL).
    Error,
    /// One of the network's own names (`[[records]]`, hosts files, a local
    /// zone): answered here, before the lists, never sent upstream (a
    /// CNAME's target that is not local is, and the event names its server).
    Local,
    /// Forwarded, and the answer failed DNSSEC validation
    /// (`[upstream] dnssec = "validate"`): answered SERVFAIL with the EDE
    /// that says why.
    Bogus,
}

impl Decision {
    /// Every decision, in the order of their bits.
    pub const ALL: [Self; 7] = [
        Self::Blocked,
        Self::Forwarded,
        Self::Cached,
        Self::Refused,
        Self::Error,
        Self::Local,
        Self::Bogus,
    ];

    /// The word the query log uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Forwarded => "forwarded",
            Self::Cached => "cached",
            Self::Refused => "refused",
            Self::Error => "error",
            Self::Local => "local",
            Self::Bogus => "bogus",
        }
    }

    /// This decision's bit in a [`Decisions`] set.
    #[inline]
    pub const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of decisions: which ones a recorder keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decisions(pub u8);

impl Decisions {
    pub const NONE: Self = Self(0);
    pub const BLOCKED: Self = Self(Decision::Blocked.bit());
    pub const ALL: Self = Self(0x7f);

    #[inline]
    pub fn contains(self, d: Decision) -> bool {
        self.0 & d.bit() != 0
    }

    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The transport a query came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Dot,
    /// DNS over HTTPS (RFC 8484).
    Doh,
    /// DNS over QUIC (RFC 9250).
    Doq,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Dot => "dot",
            Self::Doh => "doh",
            Self::Doq => "doq",
        }
    }

    /// The transport a record's byte says ([`Transport`] `as u8`); UDP
    /// for anything else.
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => Self::Tcp,
            2 => Self::Dot,
            3 => Self::Doh,
            4 => Self::Doq,
            _ => Self::Udp,
        }
    }
}

/// No upstream was involved.
pub const NO_UPSTREAM: u16 = u16::MAX;

/// Every upstream server the process has sent to, numbered once for its
/// life: what a [`QueryEvent`] carries instead of the server's label. The
/// servers of `[upstream]` come first (0, 1...), then those of each
/// `[[forward]]` set as it is first built; a reload that changes a set
/// numbers its new servers, and an event recorded before it still names
/// the server it went to. Labels are never forgotten (a few per reload
/// that changes servers, at most [`NO_UPSTREAM`] of them).
#[derive(Debug, Default)]
pub struct ServerNames {
    labels: std::sync::RwLock<Vec<std::sync::Arc<str>>>,
}

impl ServerNames {
    /// The number of `label` (a server as the config writes it), given now
    /// if it has none; [`NO_UPSTREAM`] past 65,535 labels.
    pub fn id(&self, label: &str) -> u16 {
        use std::sync::PoisonError;
        let find = |labels: &[std::sync::Arc<str>]| {
            labels
                .iter()
                .position(|l| **l == *label)
                .and_then(|i| u16::try_from(i).ok())
        };
        if let Some(id) = find(&self.labels.read().unwrap_or_else(PoisonError::into_inner)) {
            return id;
        }
        let mut labels = self.labels.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = find(&labels) {
            return id;
        }
        match u16::try_from(labels.len()) {
            Ok(id) if id != NO_UPSTREAM => {
                labels.push(label.into());
                id
            }
            _ => NO_UPSTREAM,
        }
    }

    /// The label numbered `id`.
    pub fn label(&self, id: u16) -> Option<std::sync::Arc<str>> {
        self.labels
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(usize::from(id))
            .cloned()
    }
}
/// No answer was sent (`rcode` of a query refused by `[access] action =
/// "drop"`): the log writes `null` (JSON) or `-` (text).
pub const NO_RCODE: u16 = u16::MAX;
/// No question could be read (`name_len` of an event without one).
const NO_NAME: u8 = u8::MAX;
/// No block matched (`entry` of an event that is not a block).
const NO_ENTRY: u8 = u8::MAX;
/// No network in a [`QueryEvent`].
const NO_NET: u8 = u8::MAX;
/// `net_len` of an event whose `name` holds, after the question, the name
/// of the CNAME chain that led to its block (its length in `net_addr[0]`).
const CHAIN: u8 = u8::MAX - 1;

/// One query, as the observer receives it. Fixed size (see the test
/// `an_event_is_small_and_fixed`): the serving thread copies it into a
/// ring, never into the heap.
///
/// Later fields (a dnstap flag) fit in the padding before `name`.
#[derive(Clone, Copy)]
pub struct QueryEvent {
    /// When the query arrived, microseconds since the Unix epoch.
    pub time_us: u64,
    /// Arrival to answer, in microseconds. On a UDP worker, the whole batch
    /// the query came in (from `recvmmsg` returning to `sendmmsg` done).
    pub latency_us: u32,
    pub client: IpAddr,
    pub port: u16,
    pub qtype: u16,
    /// The answer's RCODE (with the EDNS extended bits: BADVERS is 16), or
    /// [`NO_RCODE`] when none was sent.
    pub rcode: u16,
    /// The list that blocked it, or [`ListSlot::NONE`].
    pub list: ListSlot,
    pub transport: Transport,
    pub decision: Decision,
    /// A [`Decision::Cached`] answer served past its expiry because every
    /// upstream failed (RFC 8767 serve-stale, TTL 30, EDE 3).
    pub stale: bool,
    /// The blocking policy's action.
    pub action: Option<Action>,
    /// The server that answered (its number in [`ServerNames`]), or
    /// [`NO_UPSTREAM`].
    pub upstream: u16,
    /// The client's group (its name's slot), or [`ListSlot::NONE`]
    /// without `[[groups]]`.
    pub group: ListSlot,
    /// The ID the client named itself by (SNI, DoH path), or
    /// [`ClientId::NONE`].
    pub client_id: ClientId,
    /// Where the listed entry starts in `name` (a byte offset, as
    /// `Lookup::Blocked(hit).suffix`), or `NO_ENTRY`.
    entry: u8,
    /// What answer inspection matched: the listed network an answer's
    /// address fell in (response-IP blocking): its address, an IPv4 one
    /// mapped into IPv6 with its length + 96, and its length; or
    /// (`net_len` [`CHAIN`]) the length of the chain's listed name, in
    /// `net_addr[0]`, kept in `name` after the question; or `NO_NET`.
    net_addr: [u8; 16],
    net_len: u8,
    name_len: u8,
    /// The lowercase wire-form name without the root byte (a `NameKey`'s
    /// bytes); for a block through a CNAME chain, the chain's listed name
    /// follows it, when the two fit (the event keeps its fixed size).
    name: [u8; MAX_KEY],
}

impl QueryEvent {
    /// An event for a query from `client` whose question is `name`/`qtype`
    /// (`None` when the question could not be read). The recorder sets
    /// the time and latency.
    #[inline]
    pub fn new(
        decision: Decision,
        client: SocketAddr,
        transport: Transport,
        name: Option<&NameKey>,
        qtype: u16,
    ) -> Self {
        let mut ev = Self {
            time_us: 0,
            latency_us: 0,
            client: client.ip(),
            port: client.port(),
            qtype,
            rcode: 0,
            list: ListSlot::NONE,
            transport,
            decision,
            stale: false,
            action: None,
            upstream: NO_UPSTREAM,
            group: ListSlot::NONE,
            client_id: ClientId::NONE,
            entry: NO_ENTRY,
            net_addr: [0; 16],
            net_len: NO_NET,
            name_len: NO_NAME,
            name: [0; MAX_KEY],
        };
        if let Some(key) = name {
            let bytes = key.as_bytes();
            let n = bytes.len().min(MAX_KEY);
            ev.name[..n].copy_from_slice(&bytes[..n]);
            ev.name_len = n as u8;
        }
        ev
    }

    /// The block: which list, where the listed entry starts in the name, the action.
    #[inline]
    pub fn with_block(mut self, list: ListSlot, entry: usize, action: Action) -> Self {
        self.list = list;
        self.entry = u8::try_from(entry).unwrap_or(NO_ENTRY);
        self.action = Some(action);
        self
    }

    /// The listed network an answer's address fell in, if that is what
    /// blocked it.
    #[inline]
    pub fn with_net(mut self, net: Option<Net>) -> Self {
        if let Some(net) = net {
            let (addr, len) = match net.addr() {
                IpAddr::V4(a) => (a.to_ipv6_mapped(), net.prefix_len() + 96),
                IpAddr::V6(a) => (a, net.prefix_len()),
            };
            self.net_addr = addr.octets();
            self.net_len = len;
        }
        self
    }

    /// The name in the answer's CNAME chain that a list holds (wire form,
    /// no root byte), for a block through the chain. Kept after the
    /// question's name in the one buffer of a fixed-size event: left out
    /// when the two together pass [`MAX_KEY`] bytes (names near DNS's
    /// 255-byte limit), rather than cut.
    #[inline]
    pub fn with_chain(mut self, chain: &[u8]) -> Self {
        let start = usize::from(self.name_len);
        if self.name_len != NO_NAME
            && !chain.is_empty()
            && let Some(dst) = self.name.get_mut(start..start + chain.len())
        {
            dst.copy_from_slice(chain);
            self.net_addr[0] = chain.len() as u8;
            self.net_len = CHAIN;
        }
        self
    }

    /// The chain's listed name (see [`QueryEvent::with_chain`]).
    pub fn cname(&self) -> Option<&[u8]> {
        if self.net_len != CHAIN {
            return None;
        }
        let start = usize::from(self.name_len);
        self.name.get(start..start + usize::from(self.net_addr[0]))
    }

    /// The listed network an answer's address fell in, for blocks by
    /// address.
    pub fn net(&self) -> Option<Net> {
        if self.net_len == NO_NET || self.net_len == CHAIN {
            return None;
        }
        let v6 = std::net::Ipv6Addr::from(self.net_addr);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.net_len >= 96 => Net::new(v4.into(), self.net_len - 96).ok(),
            _ => Net::new(v6.into(), self.net_len).ok(),
        }
    }

    /// The client's group (its slot; [`ListSlot::NONE`] for none).
    #[inline]
    pub fn with_group(mut self, group: ListSlot) -> Self {
        self.group = group;
        self
    }

    /// The ID the client named itself by.
    #[inline]
    pub fn with_client_id(mut self, id: ClientId) -> Self {
        self.client_id = id;
        self
    }

    #[inline]
    pub fn with_rcode(mut self, rcode: u16) -> Self {
        self.rcode = rcode;
        self
    }

    /// Marks a cached answer as stale (see [`QueryEvent::stale`]).
    #[inline]
    pub fn with_stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }

    /// The server that answered: its number in [`ServerNames`].
    #[inline]
    pub fn with_upstream(mut self, id: u16) -> Self {
        self.upstream = id;
        self
    }

    /// The question's name in wire form, if the query had a readable one.
    pub fn name(&self) -> Option<&[u8]> {
        (self.name_len != NO_NAME).then(|| &self.name[..usize::from(self.name_len)])
    }

    /// The listed entry that matched (a suffix of the name), for blocks.
    pub fn entry(&self) -> Option<&[u8]> {
        let name = self.name()?;
        (self.entry != NO_ENTRY)
            .then(|| name.get(usize::from(self.entry)..))
            .flatten()
    }

    /// An event for tests and benches: a block of `name` from 127.0.0.1.
    #[doc(hidden)]
    pub fn example(name: &str) -> Self {
        let key = NameKey::from_text(name, true).unwrap_or_default();
        Self::new(
            Decision::Blocked,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53124),
            Transport::Udp,
            Some(&key),
            1,
        )
        .with_block(ListSlot(0), 0, Action::Nxdomain)
        .with_rcode(3)
    }
}

/// The RCODE of the answer in `out` (header bits only; 0 if too short).
#[inline]
pub fn rcode_of(out: &[u8]) -> u16 {
    out.get(3).map_or(0, |b| u16::from(b & 0x0f))
}

/// An RCODE as dig prints it (RFC 6895 names), or `RCODE<n>`.
pub fn rcode_name(rcode: u16) -> Option<&'static str> {
    Some(match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADVERS",
        _ => return None,
    })
}

/// Appends a wire-form name as dotted text, escaped as RFC 1035 master files
/// (and `NameKey`'s Display) write it: `.` and `\` inside a label get a
/// backslash, bytes outside `!`..`~` become `\DDD`. The root is `.`.
pub fn push_name(out: &mut Vec<u8>, wire: &[u8]) {
    if wire.is_empty() {
        out.push(b'.');
        return;
    }
    let mut rest = wire;
    let mut first = true;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        if !first {
            out.push(b'.');
        }
        first = false;
        for &b in &tail[..n] {
            match b {
                b'.' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                0x21..=0x7e => out.push(b),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'0' + b / 100,
                    b'0' + b / 10 % 10,
                    b'0' + b % 10,
                ]),
            }
        }
        rest = &tail[n..];
    }
}

/// [`push_name`] into a new string.
pub fn name_text(wire: &[u8]) -> String {
    let mut out = Vec::with_capacity(wire.len() + 1);
    push_name(&mut out, wire);
    // Only ASCII is ever pushed.
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: the query log said `allowed` for what `/metrics` counts as
    /// `decision="forwarded"`. Each decision has one word in both.
    #[test]
    fn r16_the_log_says_what_metrics_say() {
        for d in Decision::ALL {
            // `/metrics` counts a query when it is forwarded, before its
            // answer is validated: a bogus one is in `forwarded` there, and
            // the log, written once the answer is known, refines it.
            if d == Decision::Bogus {
                continue;
            }
            assert!(
                crate::observe::metrics::DECISIONS.contains(&d.as_str()),
                "{d:?} is {:?} in the query log, no decision of /metrics",
                d.as_str()
            );
        }
    }

    #[test]
    fn an_event_is_small_and_fixed() {
        // The name is most of it; what the serving thread copies per query.
        assert!(
            size_of::<QueryEvent>() <= 320,
            "{}",
            size_of::<QueryEvent>()
        );
    }

    #[test]
    fn an_event_keeps_the_name_and_the_entry() {
        let key = NameKey::from_text("www.Seized.example", false).expect("name");
        let ev = QueryEvent::new(
            Decision::Blocked,
            "192.0.2.1:4000".parse().expect("addr"),
            Transport::Tcp,
            Some(&key),
            28,
        )
        .with_block(ListSlot(3), 4, Action::Sinkhole);
        assert_eq!(ev.name(), Some(&b"\x03www\x06seized\x07example"[..]));
        assert_eq!(ev.entry(), Some(&b"\x06seized\x07example"[..]));
        assert_eq!(name_text(ev.entry().expect("entry")), "seized.example");
        assert_eq!(ev.port, 4000);
        assert_eq!(ev.list, ListSlot(3));
        let none = QueryEvent::new(
            Decision::Error,
            "[::1]:53".parse().expect("addr"),
            Transport::Udp,
            None,
            0,
        );
        assert_eq!(none.name(), None);
        assert_eq!(none.entry(), None);
    }

    /// Issue 21: a block through a CNAME chain keeps the chain's listed
    /// name beside the question's, in the same fixed-size event; names
    /// that do not fit together leave the chain's out, never cut.
    #[test]
    fn an_event_keeps_the_chains_name_after_the_question() {
        let asked = NameKey::from_text("cdn.shop.example", false).expect("name");
        let chain = NameKey::from_text("ads.tracker.example", false).expect("name");
        let client = "192.0.2.1:4000".parse().expect("addr");
        let ev = QueryEvent::new(Decision::Blocked, client, Transport::Udp, Some(&asked), 1)
            .with_block(ListSlot(3), usize::MAX, Action::Nxdomain)
            .with_chain(chain.as_bytes());
        assert_eq!(ev.name(), Some(asked.as_bytes()));
        assert_eq!(ev.cname(), Some(chain.as_bytes()));
        assert_eq!(ev.entry(), None);
        assert_eq!(ev.net(), None);
        let plain = QueryEvent::new(Decision::Blocked, client, Transport::Udp, Some(&asked), 1);
        assert_eq!(plain.cname(), None);
        let net = Net::parse("198.51.100.0/24").expect("net");
        assert_eq!(plain.with_net(Some(net)).cname(), None);
        let long = NameKey::from_text(&vec!["a".repeat(60); 2].join("."), false).expect("name");
        let longer = NameKey::from_text(&vec!["b".repeat(60); 3].join("."), false).expect("name");
        let ev = QueryEvent::new(Decision::Blocked, client, Transport::Udp, Some(&long), 1)
            .with_chain(longer.as_bytes());
        assert_eq!(ev.cname(), None, "past {MAX_KEY} bytes together");
        assert_eq!(ev.name(), Some(long.as_bytes()));
        let ev = QueryEvent::new(Decision::Blocked, client, Transport::Udp, Some(&long), 1)
            .with_chain(long.as_bytes());
        assert_eq!(ev.cname(), Some(long.as_bytes()), "244 bytes fit");
    }

    #[test]
    fn names_are_escaped_as_name_key_displays_them() {
        let mut key = NameKey::new();
        for label in [
            &b"a.b"[..],
            b"c\\d",
            b"sp ace",
            b"\x00\xff",
            b"quote\"",
            b"x",
        ] {
            assert!(key.push_label(label));
        }
        assert_eq!(name_text(key.as_bytes()), key.to_string());
        assert_eq!(name_text(b""), ".");
    }

    #[test]
    fn rcodes_have_names() {
        assert_eq!(rcode_name(3), Some("NXDOMAIN"));
        assert_eq!(rcode_name(16), Some("BADVERS"));
        assert_eq!(rcode_name(12), None);
        assert_eq!(rcode_of(&[0, 0, 0x81, 0x83]), 3);
    }
}
