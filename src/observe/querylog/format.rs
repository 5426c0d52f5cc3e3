//! Turning an event into a record, at the floor's rate: the observer's
//! thread formats every logged query here, so its cost per record is the
//! rate the log can sustain (README, "Who asked").
//!
//! ```text
//!  QueryEvent ─► Formatter::write ─► Cursor over LogBuf's free bytes ─► LogBuf (one write per batch)
//! ```
//!
//! What makes it cheap (criterion's `observe/format-json`, see the README):
//! - The batch is a buffer of fixed length, written through a [`Cursor`]
//!   that keeps its position in a register: no capacity check, length
//!   update or growth per byte, as `Vec::push` has. A record that would
//!   not fit makes the cursor stop writing, and is formatted again after
//!   the buffer grew (never the case with the worker's slack).
//! - Names are copied as they are, one copy per name, the length bytes
//!   then turned into dots; only a label holding a byte to escape takes
//!   the byte-by-byte way.
//! - The date and time of day are built once per second; each record
//!   adds its milliseconds.
//! - List, group and server names are quoted once, on first use.
//!
//! The output is byte for byte what the formatter before it wrote (the
//! test `the_fast_formatter_writes_what_the_old_one_wrote` holds it to the
//! old one, kept in `reference.rs`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::LogFormat;
use crate::state::{ListSlot, ListSlots};
use crate::wire::TypeName;

use super::super::event::{NO_RCODE, NO_UPSTREAM, QueryEvent, ServerNames, rcode_name};
use super::{ClientId, ClientView};

/// Free bytes the formatter wants before a record: more than any record
/// but one with very long names of escaped bytes, lists or servers needs
/// (and those are formatted again after the buffer grew).
const ROOM: usize = 2048;

/// The batch of formatted records: bytes of a fixed length, zeroed once,
/// of which the first [`len`](Self::len) are records.
#[derive(Debug)]
pub struct LogBuf {
    bytes: Vec<u8>,
    len: usize,
}

impl LogBuf {
    /// A batch of `capacity` bytes (it grows if a record needs it).
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: vec![0; capacity.max(ROOM)],
            len: 0,
        }
    }

    /// The records formatted so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The free bytes, at least `n` of them.
    fn spare(&mut self, n: usize) -> &mut [u8] {
        if self.bytes.len() - self.len < n {
            self.bytes.resize(self.len + n, 0);
        }
        &mut self.bytes[self.len..]
    }
}

/// Writes into a slice of free bytes. Every write is checked (no panic,
/// no unsafe): one that does not fit sets `full` and writes nothing, and
/// the record is written again with more room.
struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
    full: bool,
}

impl Cursor<'_> {
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + s.len()) {
            Some(dst) => {
                dst.copy_from_slice(s);
                self.pos += s.len();
            }
            None => self.full = true,
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(dst) => {
                *dst = b;
                self.pos += 1;
            }
            None => self.full = true,
        }
    }

    /// Decimal, without going through `fmt`.
    #[inline]
    fn u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..]);
    }

    /// One to three digits.
    #[inline(always)]
    fn octet(&mut self, o: u8) {
        if o >= 100 {
            self.put(&[b'0' + o / 100, b'0' + o / 10 % 10, b'0' + o % 10]);
        } else if o >= 10 {
            self.put(&[b'0' + o / 10, b'0' + o % 10]);
        } else {
            self.byte(b'0' + o);
        }
    }

    /// A client as [`ClientId`]'s Display shows it, IPv4 by hand (the
    /// common case).
    #[inline]
    fn client(&mut self, id: ClientId) {
        match id {
            ClientId::Addr(IpAddr::V4(a)) => {
                let [a, b, c, d] = a.octets();
                self.octet(a);
                self.byte(b'.');
                self.octet(b);
                self.byte(b'.');
                self.octet(c);
                self.byte(b'.');
                self.octet(d);
            }
            // IPv6 and hashes: rare in a flood, and `fmt` has the
            // canonical IPv6 text (RFC 5952).
            other => self.display(other),
        }
    }

    /// A short value (an address, a network: at most 64 bytes) as its
    /// Display writes it, through a buffer on the stack: no allocation.
    #[inline]
    fn display(&mut self, value: impl std::fmt::Display) {
        let mut text = [0u8; 64];
        let mut w = &mut text[..];
        let before = w.len();
        if std::io::Write::write_fmt(&mut w, format_args!("{value}")).is_ok() {
            let n = before - w.len();
            self.put(&text[..n]);
        }
    }

    /// A type's mnemonic, or `TYPEn`.
    #[inline]
    fn qtype(&mut self, qtype: u16) {
        match TypeName(qtype).mnemonic() {
            Some(m) => self.put(m.as_bytes()),
            None => {
                self.put(b"TYPE");
                self.u64(u64::from(qtype));
            }
        }
    }

    /// An RCODE's name, or `RCODEn`.
    #[inline]
    fn rcode(&mut self, rcode: u16) {
        match rcode_name(rcode) {
            Some(r) => self.put(r.as_bytes()),
            None => {
                self.put(b"RCODE");
                self.u64(u64::from(rcode));
            }
        }
    }

    /// A wire-form name as dotted text, escaped as [`push_name`] writes
    /// it and, with `JSON`, escaped again as a JSON string's inside.
    /// The labels are copied as they are, in one go, and the length
    /// bytes turned into dots; a name with a byte to escape is written
    /// again byte by byte.
    ///
    /// [`push_name`]: super::super::event::push_name
    #[inline]
    fn name<const JSON: bool>(&mut self, wire: &[u8]) {
        let Some((_, labels)) = wire.split_first() else {
            self.byte(b'.');
            return;
        };
        let start = self.pos;
        self.put(labels);
        if self.full {
            return;
        }
        let mut plain = true;
        let mut i = 0;
        while let Some(&n) = wire.get(i) {
            let end = (i + 1 + usize::from(n)).min(wire.len());
            plain &= wire[i + 1..end].iter().all(|&b| is_plain::<JSON>(b));
            if i > 0 {
                // The length byte at wire[i] sits at labels[i - 1].
                self.buf[start + i - 1] = b'.';
            }
            i = end;
        }
        if !plain {
            self.pos = start;
            self.escaped::<JSON>(wire);
        }
    }

    /// [`Cursor::name`]'s way for a name with bytes to escape.
    #[cold]
    fn escaped<const JSON: bool>(&mut self, wire: &[u8]) {
        let text = |c: &mut Self, t: u8| {
            if JSON && (t == b'"' || t == b'\\') {
                c.byte(b'\\');
            }
            c.byte(t);
        };
        let mut rest = wire;
        let mut first = true;
        while let Some((&n, tail)) = rest.split_first() {
            let n = usize::from(n).min(tail.len());
            if !first {
                self.byte(b'.');
            }
            first = false;
            for &b in &tail[..n] {
                match b {
                    b'.' | b'\\' => {
                        text(self, b'\\');
                        text(self, b);
                    }
                    0x21..=0x7e => text(self, b),
                    _ => {
                        text(self, b'\\');
                        self.put(&[b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10]);
                    }
                }
            }
            rest = &tail[n..];
        }
    }

    /// A string as JSON's inside: `"` and `\` escaped, control bytes as `\u00XX`.
    fn json_str(&mut self, s: &[u8]) {
        for &b in s {
            match b {
                b'"' | b'\\' => self.put(&[b'\\', b]),
                0..0x20 => self.put(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]),
                _ => self.byte(b),
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A label byte a name's text and a JSON string both take as it is.
#[inline(always)]
fn is_plain<const JSON: bool>(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && b != b'.' && b != b'\\' && !(JSON && b == b'"')
}

/// A list's name, plain and as a JSON string.
type ListName = (Arc<str>, Box<[u8]>);

/// Turns events into records.
pub struct Formatter {
    format: LogFormat,
    clients: ClientView,
    slots: Arc<ListSlots>,
    /// Slot → the list's name, and the name as a JSON string (filled on first use).
    lists: Vec<Option<ListName>>,
    /// The servers events name, and each label once read from there.
    upstreams: Arc<ServerNames>,
    labels: Vec<Option<Arc<str>>>,
    /// The whole second last formatted, and its `YYYY-MM-DDTHH:MM:SS`.
    second: u64,
    stamp: [u8; 19],
}

impl Formatter {
    /// `upstreams` turn an event's server number into the server as the
    /// config writes it.
    pub fn new(
        format: LogFormat,
        clients: ClientView,
        slots: Arc<ListSlots>,
        upstreams: Arc<ServerNames>,
    ) -> Self {
        Self {
            format,
            clients,
            slots,
            lists: Vec::new(),
            upstreams,
            labels: Vec::new(),
            second: u64::MAX,
            stamp: [b'0'; 19],
        }
    }

    /// The list names it reads (tests name new lists there).
    #[cfg(test)]
    pub(super) fn slots(&self) -> &ListSlots {
        &self.slots
    }

    /// Appends one record, ending in a newline, to `out`.
    pub fn write(&mut self, ev: &QueryEvent, out: &mut LogBuf) {
        self.tick(ev.time_us);
        let mut room = ROOM;
        loop {
            let mut c = Cursor {
                buf: out.spare(room),
                pos: 0,
                full: false,
            };
            match self.format {
                LogFormat::Json => self.json(ev, &mut c),
                LogFormat::Text => self.text(ev, &mut c),
            }
            let (full, written) = (c.full, c.pos);
            if !full {
                out.len += written;
                return;
            }
            room *= 2;
        }
    }

    #[inline]
    fn json(&mut self, ev: &QueryEvent, c: &mut Cursor<'_>) {
        c.put(b"{\"time\":\"");
        self.time(ev.time_us, c);
        c.put(b"\",\"client\":\"");
        c.client(self.clients.id(ev.client));
        c.put(b"\",\"port\":");
        c.u64(u64::from(ev.port));
        c.put(b",\"proto\":\"");
        c.put(ev.transport.as_str().as_bytes());
        c.byte(b'"');
        // Only for a client that named itself (letters, digits, hyphens:
        // nothing to escape).
        if let Some(id) = ev.client_id.name() {
            c.put(b",\"client_id\":\"");
            c.put(id.as_bytes());
            c.byte(b'"');
        }
        // Only with [[groups]]: a record without them is as it always was.
        if ev.group != ListSlot::NONE {
            c.put(b",\"group\":");
            match self.list(ev.group) {
                Some((_, json)) => c.put(json),
                None => c.put(b"null"),
            }
        }
        match ev.name() {
            Some(name) => {
                c.put(b",\"name\":\"");
                c.name::<true>(name);
                c.put(b"\",\"type\":\"");
                c.qtype(ev.qtype);
                c.byte(b'"');
            }
            None => c.put(b",\"name\":null,\"type\":null"),
        }
        c.put(b",\"decision\":\"");
        c.put(ev.decision.as_str().as_bytes());
        c.put(if ev.stale {
            b"\",\"stale\":true,\"list\":"
        } else {
            b"\",\"stale\":false,\"list\":"
        });
        match self.list(ev.list) {
            Some((_, json)) => c.put(json),
            None => c.put(b"null"),
        }
        match ev.entry() {
            Some(entry) => {
                c.put(b",\"entry\":\"");
                c.name::<true>(entry);
                c.byte(b'"');
            }
            None => c.put(b",\"entry\":null"),
        }
        // Only a block through a CNAME chain names the chain's listed
        // name, and only a block by an answer's address has a network.
        if let Some(chain) = ev.cname() {
            c.put(b",\"cname\":\"");
            c.name::<true>(chain);
            c.byte(b'"');
        }
        if let Some(net) = ev.net() {
            c.put(b",\"net\":\"");
            c.display(net);
            c.byte(b'"');
        }
        match ev.action {
            Some(a) => {
                c.put(b",\"action\":\"");
                c.put(a.as_str().as_bytes());
                c.byte(b'"');
            }
            None => c.put(b",\"action\":null"),
        }
        if ev.rcode == NO_RCODE {
            c.put(b",\"rcode\":null");
        } else {
            c.put(b",\"rcode\":\"");
            c.rcode(ev.rcode);
            c.byte(b'"');
        }
        match self.upstream(ev.upstream) {
            Some(u) => {
                c.put(b",\"upstream\":\"");
                // An address needs no escaping; a DoH path might.
                c.json_str(u.as_bytes());
                c.byte(b'"');
            }
            None => c.put(b",\"upstream\":null"),
        }
        c.put(b",\"latency_us\":");
        c.u64(u64::from(ev.latency_us));
        c.put(b"}\n");
    }

    fn text(&mut self, ev: &QueryEvent, c: &mut Cursor<'_>) {
        self.time(ev.time_us, c);
        c.byte(b' ');
        c.client(self.clients.id(ev.client));
        c.byte(b'#');
        c.u64(u64::from(ev.port));
        c.byte(b' ');
        c.put(ev.transport.as_str().as_bytes());
        if let Some(id) = ev.client_id.name() {
            c.put(b" id=");
            c.put(id.as_bytes());
        }
        c.byte(b' ');
        match ev.name() {
            Some(name) => {
                c.name::<false>(name);
                c.byte(b' ');
                c.qtype(ev.qtype);
            }
            None => c.put(b"- -"),
        }
        c.byte(b' ');
        c.put(ev.decision.as_str().as_bytes());
        if ev.stale {
            c.put(b" stale");
        }
        if ev.group != ListSlot::NONE {
            c.put(b" group=");
            match self.list(ev.group) {
                Some((name, _)) => c.put(name.as_bytes()),
                None => c.byte(b'?'),
            }
        }
        if ev.list != ListSlot::NONE {
            c.put(b" list=");
            match self.list(ev.list) {
                Some((name, _)) => c.put(name.as_bytes()),
                None => c.byte(b'?'),
            }
        }
        if let Some(entry) = ev.entry() {
            c.put(b" entry=");
            c.name::<false>(entry);
        }
        if let Some(chain) = ev.cname() {
            c.put(b" cname=");
            c.name::<false>(chain);
        }
        if let Some(net) = ev.net() {
            c.put(b" net=");
            c.display(net);
        }
        if let Some(a) = ev.action {
            c.put(b" action=");
            c.put(a.as_str().as_bytes());
        }
        c.put(b" rcode=");
        if ev.rcode == NO_RCODE {
            c.byte(b'-');
        } else {
            c.rcode(ev.rcode);
        }
        if let Some(u) = self.upstream(ev.upstream) {
            c.put(b" upstream=");
            c.put(u.as_bytes());
        }
        c.put(b" latency_us=");
        c.u64(u64::from(ev.latency_us));
        c.byte(b'\n');
    }

    /// Works out the date and time of day when the second changed.
    #[inline]
    fn tick(&mut self, time_us: u64) {
        let second = time_us / 1_000_000;
        if second != self.second {
            self.new_second(second);
        }
    }

    #[cold]
    fn new_second(&mut self, second: u64) {
        self.second = second;
        let t = UNIX_EPOCH + Duration::from_secs(second);
        let text = humantime::format_rfc3339_seconds(t).to_string();
        if let Some(head) = text.as_bytes().get(..19) {
            self.stamp.copy_from_slice(head);
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC, milliseconds), from
    /// the second's stamp ([`Self::tick`]).
    #[inline]
    fn time(&self, time_us: u64, c: &mut Cursor<'_>) {
        c.put(&self.stamp);
        let ms = (time_us / 1000 % 1000) as u16;
        c.put(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }

    /// A list's (or a client group's) name, plain and as a JSON string.
    #[inline]
    fn list(&mut self, slot: ListSlot) -> Option<&ListName> {
        if slot == ListSlot::NONE {
            return None;
        }
        let i = usize::from(slot.0);
        if self.lists.get(i).is_none_or(Option::is_none) {
            self.learn_list(slot);
        }
        self.lists.get(i)?.as_ref()
    }

    #[cold]
    fn learn_list(&mut self, slot: ListSlot) {
        let i = usize::from(slot.0);
        if self.lists.len() <= i {
            self.lists.resize(i + 1, None);
        }
        if let Some(name) = self.slots.name(slot)
            && let Ok(quoted) = serde_json::to_vec(&*name)
        {
            self.lists[i] = Some((name, quoted.into_boxed_slice()));
        }
    }

    /// The label of server `id` (read once from the shared table: a
    /// number never changes its label).
    #[inline]
    fn upstream(&mut self, id: u16) -> Option<&str> {
        if id == NO_UPSTREAM {
            return None;
        }
        let i = usize::from(id);
        if self.labels.get(i).is_none_or(Option::is_none) {
            if self.labels.len() <= i {
                self.labels.resize(i + 1, None);
            }
            self.labels[i] = self.upstreams.label(id);
        }
        self.labels.get(i)?.as_deref()
    }
}
