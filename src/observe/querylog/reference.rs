//! The formatter as it was before the fast one (`format.rs`), kept for
//! tests only: the fast one must write what this one wrote, byte for
//! byte, for every event (`the_fast_formatter_writes_what_the_old_one_wrote`),
//! since log shippers and the `embargo` readers rely on the records'
//! fields and their meaning.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::LogFormat;
use crate::state::{ListSlot, ListSlots};
use crate::wire::TypeName;

use super::super::event::{NO_RCODE, NO_UPSTREAM, QueryEvent, ServerNames, push_name, rcode_name};
use super::{ClientId, ClientView};

/// A list's name, plain and as a JSON string.
type ListName = (Arc<str>, Box<[u8]>);

/// Turns events into records.
pub(super) struct Formatter {
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
    scratch: Vec<u8>,
}

impl Formatter {
    /// `upstreams` turn an event's server number into the server as the
    /// config writes it.
    pub(super) fn new(
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
            scratch: Vec::with_capacity(512),
        }
    }

    /// Appends one record, ending in a newline, to `out`.
    pub(super) fn write(&mut self, ev: &QueryEvent, out: &mut Vec<u8>) {
        match self.format {
            LogFormat::Json => self.json(ev, out),
            LogFormat::Text => self.text(ev, out),
        }
    }

    fn json(&mut self, ev: &QueryEvent, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        self.time(ev.time_us, out);
        out.extend_from_slice(b"\",\"client\":\"");
        push_client(out, self.clients.id(ev.client));
        out.extend_from_slice(b"\",\"port\":");
        push_u64(out, u64::from(ev.port));
        out.extend_from_slice(b",\"proto\":\"");
        out.extend_from_slice(ev.transport.as_str().as_bytes());
        out.push(b'"');
        // Only for a client that named itself (letters, digits, hyphens:
        // nothing to escape).
        if let Some(id) = ev.client_id.name() {
            out.extend_from_slice(b",\"client_id\":\"");
            out.extend_from_slice(id.as_bytes());
            out.push(b'"');
        }
        // Only with [[groups]]: a record without them is as it always was.
        if ev.group != ListSlot::NONE {
            out.extend_from_slice(b",\"group\":");
            match self.list(ev.group) {
                Some((_, json)) => out.extend_from_slice(json),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b",\"name\":");
        match ev.name() {
            Some(name) => self.json_name(name, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"type\":");
        if ev.name().is_some() {
            out.push(b'"');
            push_type(out, ev.qtype);
            out.push(b'"');
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"decision\":\"");
        out.extend_from_slice(ev.decision.as_str().as_bytes());
        out.extend_from_slice(if ev.stale {
            b"\",\"stale\":true"
        } else {
            b"\",\"stale\":false"
        });
        out.extend_from_slice(b",\"list\":");
        match self.list(ev.list) {
            Some((_, json)) => out.extend_from_slice(json),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"entry\":");
        match ev.entry() {
            Some(entry) => self.json_name(entry, out),
            None => out.extend_from_slice(b"null"),
        }
        if let Some(chain) = ev.cname() {
            out.extend_from_slice(b",\"cname\":");
            self.json_name(chain, out);
        }
        if let Some(net) = ev.net() {
            out.extend_from_slice(b",\"net\":\"");
            out.extend_from_slice(net.to_string().as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"action\":");
        match ev.action {
            Some(a) => {
                out.push(b'"');
                out.extend_from_slice(a.as_str().as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"rcode\":");
        if ev.rcode == NO_RCODE {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'"');
            push_rcode(out, ev.rcode);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"upstream\":");
        match self.upstream(ev.upstream) {
            Some(u) => {
                out.push(b'"');
                // An address needs no escaping; a DoH path might.
                for &b in u.as_bytes() {
                    match b {
                        b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                        0..0x20 => {
                            out.extend_from_slice(b"\\u00");
                            out.extend_from_slice(&[
                                HEX[usize::from(b >> 4)],
                                HEX[usize::from(b & 15)],
                            ]);
                        }
                        _ => out.push(b),
                    }
                }
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"latency_us\":");
        push_u64(out, u64::from(ev.latency_us));
        out.extend_from_slice(b"}\n");
    }

    fn text(&mut self, ev: &QueryEvent, out: &mut Vec<u8>) {
        self.time(ev.time_us, out);
        out.push(b' ');
        push_client(out, self.clients.id(ev.client));
        out.push(b'#');
        push_u64(out, u64::from(ev.port));
        out.push(b' ');
        out.extend_from_slice(ev.transport.as_str().as_bytes());
        if let Some(id) = ev.client_id.name() {
            out.extend_from_slice(b" id=");
            out.extend_from_slice(id.as_bytes());
        }
        out.push(b' ');
        match ev.name() {
            Some(name) => {
                push_name(out, name);
                out.push(b' ');
                push_type(out, ev.qtype);
            }
            None => out.extend_from_slice(b"- -"),
        }
        out.push(b' ');
        out.extend_from_slice(ev.decision.as_str().as_bytes());
        if ev.stale {
            out.extend_from_slice(b" stale");
        }
        if ev.group != ListSlot::NONE {
            out.extend_from_slice(b" group=");
            match self.list(ev.group) {
                Some((name, _)) => out.extend_from_slice(name.as_bytes()),
                None => out.push(b'?'),
            }
        }
        if ev.list != ListSlot::NONE {
            out.extend_from_slice(b" list=");
            match self.list(ev.list) {
                Some((name, _)) => out.extend_from_slice(name.as_bytes()),
                None => out.push(b'?'),
            }
        }
        if let Some(entry) = ev.entry() {
            out.extend_from_slice(b" entry=");
            push_name(out, entry);
        }
        if let Some(chain) = ev.cname() {
            out.extend_from_slice(b" cname=");
            push_name(out, chain);
        }
        if let Some(net) = ev.net() {
            out.extend_from_slice(b" net=");
            out.extend_from_slice(net.to_string().as_bytes());
        }
        if let Some(a) = ev.action {
            out.extend_from_slice(b" action=");
            out.extend_from_slice(a.as_str().as_bytes());
        }
        out.extend_from_slice(b" rcode=");
        if ev.rcode == NO_RCODE {
            out.push(b'-');
        } else {
            push_rcode(out, ev.rcode);
        }
        if let Some(u) = self.upstream(ev.upstream) {
            out.extend_from_slice(b" upstream=");
            out.extend_from_slice(u.as_bytes());
        }
        out.extend_from_slice(b" latency_us=");
        push_u64(out, u64::from(ev.latency_us));
        out.push(b'\n');
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC, milliseconds). The date
    /// and time of day are worked out once per second.
    fn time(&mut self, time_us: u64, out: &mut Vec<u8>) {
        let second = time_us / 1_000_000;
        if second != self.second {
            self.second = second;
            let t = UNIX_EPOCH + Duration::from_secs(second);
            let text = humantime::format_rfc3339_seconds(t).to_string();
            if let Some(head) = text.as_bytes().get(..19) {
                self.stamp.copy_from_slice(head);
            }
        }
        out.extend_from_slice(&self.stamp);
        let ms = (time_us / 1000 % 1000) as u16;
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }

    /// A name as a JSON string: the escaped dotted text, with `"` and `\`
    /// escaped again for JSON.
    fn json_name(&mut self, wire: &[u8], out: &mut Vec<u8>) {
        self.scratch.clear();
        push_name(&mut self.scratch, wire);
        out.push(b'"');
        for &b in &self.scratch {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    }

    /// A list's (or a client group's) name, plain and as a JSON string.
    fn list(&mut self, slot: ListSlot) -> Option<&ListName> {
        if slot == ListSlot::NONE {
            return None;
        }
        let i = usize::from(slot.0);
        if self.lists.len() <= i {
            self.lists.resize(i + 1, None);
        }
        if self.lists[i].is_none() {
            let name = self.slots.name(slot)?;
            let quoted = serde_json::to_vec(&*name).ok()?;
            self.lists[i] = Some((name, quoted.into_boxed_slice()));
        }
        self.lists[i].as_ref()
    }

    /// The label of server `id` (read once from the shared table: a
    /// number never changes its label).
    fn upstream(&mut self, id: u16) -> Option<&str> {
        if id == NO_UPSTREAM {
            return None;
        }
        let i = usize::from(id);
        if self.labels.len() <= i {
            self.labels.resize(i + 1, None);
        }
        if self.labels[i].is_none() {
            self.labels[i] = Some(self.upstreams.label(id)?);
        }
        self.labels[i].as_deref()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `n` in decimal.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
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
    out.extend_from_slice(&digits[i..]);
}

/// Appends a client as [`ClientId`]'s Display shows it, IPv4 without
/// going through `fmt` (the common case, and the costly part of a record).
fn push_client(out: &mut Vec<u8>, id: ClientId) {
    match id {
        ClientId::Addr(IpAddr::V4(a)) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(octet));
            }
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// Appends a type's mnemonic, or `TYPEn`.
fn push_type(out: &mut Vec<u8>, qtype: u16) {
    match TypeName(qtype).mnemonic() {
        Some(m) => out.extend_from_slice(m.as_bytes()),
        None => {
            out.extend_from_slice(b"TYPE");
            push_u64(out, u64::from(qtype));
        }
    }
}

/// Appends an RCODE's name, or `RCODEn`.
fn push_rcode(out: &mut Vec<u8>, rcode: u16) {
    match rcode_name(rcode) {
        Some(r) => out.extend_from_slice(r.as_bytes()),
        None => {
            out.extend_from_slice(b"RCODE");
            push_u64(out, u64::from(rcode));
        }
    }
}
