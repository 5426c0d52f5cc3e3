//! The query log: one record per query, as JSON or as a line of text,
//! formatted on the observer's thread and written in batches to a file that
//! is rotated by size (or to standard output).
//!
//! ```text
//! {"time":"2026-11-29T21:30:31.123Z","client":"127.0.0.1","port":53124,"proto":"udp","name":"www.seized.example","type":"A","decision":"blocked","stale":false,"list":"seized","entry":"seized.example","action":"nxdomain","rcode":"NXDOMAIN","upstream":null,"latency_us":3}
//! 2026-11-29T21:30:31.123Z 127.0.0.1#53124 udp www.seized.example A blocked list=seized entry=seized.example action=nxdomain rcode=NXDOMAIN latency_us=3
//! ```
//!
//! Every JSON record has every key (`null` where a key does not apply), so
//! a log shipper can give it one schema. Formatting is by hand into one
//! reused buffer: no allocation per record.

use std::fmt;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::{ClientIp, LogFormat};
use crate::source::store;
use crate::state::{ListSlot, ListSlots};
use crate::wire::TypeName;

use super::event::{NO_RCODE, NO_UPSTREAM, QueryEvent, ServerNames, push_name, rcode_name};

/// A client as the log and the hit report show it, after `client_ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// The address, whole or truncated.
    Addr(IpAddr),
    /// A keyed hash of the address.
    Hash(u64),
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(ip) => ip.fmt(f),
            Self::Hash(h) => write!(f, "{h:016x}"),
        }
    }
}

impl std::str::FromStr for ClientId {
    type Err = ();

    /// Reads back what `Display` wrote (an address, or 16 hex digits).
    fn from_str(s: &str) -> Result<Self, ()> {
        if let Ok(ip) = s.parse() {
            return Ok(Self::Addr(ip));
        }
        if s.len() == 16 {
            return u64::from_str_radix(s, 16).map(Self::Hash).map_err(|_| ());
        }
        Err(())
    }
}

/// Applies `client_ip` to addresses. The hash key is drawn once per
/// process (SipHash with a random key, as std's `RandomState`): the same
/// client gets the same hash while the process lives, and nobody without
/// the key can tell which address a hash stands for.
#[derive(Debug, Clone)]
pub struct ClientView {
    mode: ClientIp,
    key: std::collections::hash_map::RandomState,
}

impl ClientView {
    pub fn new(mode: ClientIp) -> Self {
        Self {
            mode,
            key: std::collections::hash_map::RandomState::new(),
        }
    }

    /// How `ip` is shown. An IPv4-mapped IPv6 address counts as its IPv4
    /// address, so a dual-stack socket does not make one client two.
    pub fn id(&self, ip: IpAddr) -> ClientId {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match self.mode {
            ClientIp::Full => ClientId::Addr(ip),
            ClientIp::Truncate => ClientId::Addr(match ip {
                IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & 0xffff_ff00)),
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & !((1u128 << 72) - 1))),
            }),
            ClientIp::Hash => ClientId::Hash(self.key.hash_one(ip)),
        }
    }
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
    scratch: Vec<u8>,
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
            scratch: Vec::with_capacity(512),
        }
    }

    /// Appends one record, ending in a newline, to `out`.
    pub fn write(&mut self, ev: &QueryEvent, out: &mut Vec<u8>) {
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

/// Where records go.
#[derive(Debug)]
pub enum LogOut {
    Stdout,
    File(RotatingFile),
}

impl LogOut {
    /// Writes a batch of whole records.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Self::File(f) => f.write(buf),
        }
    }
}

/// A log file that is renamed aside once it would grow past `max_size`:
/// `queries.log` → `queries.log.1` → … → `queries.log.KEEP` (the oldest,
/// then removed), as logrotate names them. A batch of records is never
/// split between two files.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    /// Opens (creating it and its directory) `path` for appending.
    pub fn open(path: &Path, max_size: u64, keep: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            store::create_dir(dir)?;
        }
        let mut f = Self {
            path: path.to_path_buf(),
            max_size,
            keep,
            file: None,
            size: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    /// Opens the log as [`store::private_file`] does (0640, never through
    /// a symlink: `[log] path` may be in a directory others can write).
    /// The log says who asked for what: a file an older version left
    /// readable by everyone loses the world's bits (rotated files keep the
    /// mode they had).
    fn reopen(&mut self) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let file = store::private_file()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(store::not_followed)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            // Only its owner (or root) may: else the log stays as it is.
            let _ = file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7770));
        }
        self.size = meta.len();
        self.file = Some(file);
        Ok(())
    }

    /// Appends `buf`, rotating first if it would take the file past its size.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_size {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("log file not open"));
        };
        file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let numbered = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            // The oldest goes; the rest move up one.
            let _ = std::fs::remove_file(numbered(self.keep));
            for i in (1..self.keep).rev() {
                let from = numbered(i);
                if from.exists() {
                    std::fs::rename(&from, numbered(i + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.reopen()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::NameKey;
    use crate::observe::event::{Decision, Transport};
    use crate::policy::Action;

    fn formatter(format: LogFormat, mode: ClientIp) -> Formatter {
        let slots = Arc::new(ListSlots::default());
        assert_eq!(slots.slot("doj-dprk"), ListSlot(0));
        let servers = Arc::new(ServerNames::default());
        assert_eq!(servers.id("192.0.2.53:53"), 0);
        Formatter::new(format, ClientView::new(mode), slots, servers)
    }

    fn blocked() -> QueryEvent {
        let key = NameKey::from_text("www.seized.example", false).expect("name");
        let mut ev = QueryEvent::new(
            Decision::Blocked,
            "127.0.0.1:53124".parse().expect("addr"),
            Transport::Udp,
            Some(&key),
            16,
        )
        .with_block(ListSlot(0), 4, Action::Nxdomain)
        .with_rcode(3);
        // 2026-11-29T21:30:31.123Z
        ev.time_us = 1_795_987_831_123_456;
        ev.latency_us = 3;
        ev
    }

    #[test]
    fn a_block_as_json_has_every_field() {
        let mut f = formatter(LogFormat::Json, ClientIp::Full);
        let mut out = Vec::new();
        f.write(&blocked(), &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text.trim_end(),
            r#"{"time":"2026-11-29T21:30:31.123Z","client":"127.0.0.1","port":53124,"proto":"udp","name":"www.seized.example","type":"TXT","decision":"blocked","stale":false,"list":"doj-dprk","entry":"seized.example","action":"nxdomain","rcode":"NXDOMAIN","upstream":null,"latency_us":3}"#
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v.as_object().map(|o| o.len()), Some(14));
    }

    /// Issue 12: with `[[groups]]` a record names the client's group.
    #[test]
    fn a_record_names_the_group_when_there_are_groups() {
        let mut f = formatter(LogFormat::Json, ClientIp::Full);
        let lab = f.slots.slot("lab");
        let mut out = Vec::new();
        f.write(&blocked().with_group(lab), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["group"], "lab");
        assert_eq!(v.as_object().map(|o| o.len()), Some(15));
        let mut f = formatter(LogFormat::Text, ClientIp::Full);
        let lab = f.slots.slot("lab");
        let mut out = Vec::new();
        f.write(&blocked().with_group(lab), &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains(" TXT blocked group=lab list=doj-dprk "),
            "{text}"
        );
    }

    #[test]
    fn a_forward_names_its_upstream_and_an_error_without_a_question_is_null() {
        let mut f = formatter(LogFormat::Json, ClientIp::Full);
        let key = NameKey::from_text("www.up.test", false).expect("name");
        let mut ev = QueryEvent::new(
            Decision::Forwarded,
            "[2001:db8::1]:5000".parse().expect("addr"),
            Transport::Tcp,
            Some(&key),
            65534,
        )
        .with_upstream(0);
        ev.latency_us = 1234;
        let mut out = Vec::new();
        f.write(&ev, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["client"], "2001:db8::1");
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["type"], "TYPE65534");
        assert_eq!(v["decision"], "forwarded");
        assert_eq!(v["upstream"], "192.0.2.53:53");
        assert_eq!(v["rcode"], "NOERROR");
        assert_eq!(v["latency_us"], 1234);
        assert!(v["list"].is_null() && v["entry"].is_null() && v["action"].is_null());

        let ev = QueryEvent::new(
            Decision::Error,
            "127.0.0.1:1".parse().expect("addr"),
            Transport::Udp,
            None,
            0,
        )
        .with_rcode(16);
        out.clear();
        f.write(&ev, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert!(v["name"].is_null() && v["type"].is_null());
        assert_eq!(v["rcode"], "BADVERS");
    }

    #[test]
    fn odd_names_stay_valid_json() {
        let mut f = formatter(LogFormat::Json, ClientIp::Full);
        let mut key = NameKey::new();
        for label in [
            &b"q\"uote"[..],
            b"back\\slash",
            b"dot.ted",
            b"\x00",
            b"example",
        ] {
            assert!(key.push_label(label));
        }
        let ev = QueryEvent::new(
            Decision::Cached,
            "127.0.0.1:1".parse().expect("addr"),
            Transport::Udp,
            Some(&key),
            1,
        );
        let mut out = Vec::new();
        f.write(&ev, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["name"], key.to_string());
    }

    #[test]
    fn a_dropped_refusal_has_no_rcode_and_an_upstream_label_stays_valid_json() {
        let key = NameKey::from_text("www.seized.example", false).expect("name");
        let ev = QueryEvent::new(
            Decision::Refused,
            "198.51.100.7:53".parse().expect("addr"),
            Transport::Udp,
            Some(&key),
            1,
        )
        .with_rcode(NO_RCODE);
        let mut out = Vec::new();
        formatter(LogFormat::Json, ClientIp::Full).write(&ev, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["decision"], "refused");
        assert!(v["rcode"].is_null(), "{v}");
        out.clear();
        formatter(LogFormat::Text, ClientIp::Full).write(&ev, &mut out);
        let text = String::from_utf8(out.clone()).expect("utf8");
        assert!(text.contains(" refused rcode=- latency_us="), "{text}");

        // A DoH server as the config writes it, with what JSON must escape.
        let label = "https://192.0.2.53:443/dns-\"q\\\u{1}#dns.example";
        let servers = Arc::new(ServerNames::default());
        let mut f = Formatter::new(
            LogFormat::Json,
            ClientView::new(ClientIp::Full),
            Arc::new(ListSlots::default()),
            servers.clone(),
        );
        let id = servers.id(label);
        let ev = QueryEvent::new(
            Decision::Forwarded,
            "127.0.0.1:1".parse().expect("addr"),
            Transport::Udp,
            Some(&key),
            1,
        )
        .with_upstream(id);
        out.clear();
        f.write(&ev, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["upstream"], label);
    }

    #[test]
    fn a_block_as_text_reads_as_one_line() {
        let mut f = formatter(LogFormat::Text, ClientIp::Full);
        let mut out = Vec::new();
        f.write(&blocked(), &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "2026-11-29T21:30:31.123Z 127.0.0.1#53124 udp www.seized.example TXT blocked list=doj-dprk entry=seized.example action=nxdomain rcode=NXDOMAIN latency_us=3\n"
        );
    }

    #[test]
    fn numbers_and_clients_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 99, 65535, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let id = ClientId::Addr(ip.parse().expect("ip"));
            let mut out = Vec::new();
            push_client(&mut out, id);
            assert_eq!(out, id.to_string().as_bytes());
        }
    }

    #[test]
    fn client_addresses_are_truncated_or_hashed() {
        let t = ClientView::new(ClientIp::Truncate);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(t.id(ip("192.0.2.77")).to_string(), "192.0.2.0");
        assert_eq!(
            t.id(ip("2001:db8:aa:bbcc:dd::1")).to_string(),
            "2001:db8:aa:bb00::"
        );
        assert_eq!(t.id(ip("::ffff:192.0.2.77")).to_string(), "192.0.2.0");

        let h = ClientView::new(ClientIp::Hash);
        let a = h.id(ip("192.0.2.77"));
        assert_eq!(a, h.id(ip("192.0.2.77")), "stable within the process");
        assert_eq!(a, h.id(ip("::ffff:192.0.2.77")));
        assert_ne!(a, h.id(ip("192.0.2.78")));
        let shown = a.to_string();
        assert_eq!(shown.len(), 16);
        assert!(!shown.contains("192"), "{shown}");
        assert_eq!(shown.parse::<ClientId>(), Ok(a));
        // Another process (another key) hashes the same address differently.
        assert_ne!(a, ClientView::new(ClientIp::Hash).id(ip("192.0.2.77")));
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_at_most_keep() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/queries.log");
        let mut f = RotatingFile::open(&path, 100, 2).expect("open");
        for i in 0..7u8 {
            f.write(&[b'a' + i; 60]).expect("write");
        }
        // Each 60-byte batch fills a file: 7 batches, the newest in the log.
        let read = |p: &Path| std::fs::read(p).expect("read");
        assert_eq!(read(&path), vec![b'g'; 60]);
        assert_eq!(read(&dir.path().join("logs/queries.log.1")), vec![b'f'; 60]);
        assert_eq!(read(&dir.path().join("logs/queries.log.2")), vec![b'e'; 60]);
        assert!(!dir.path().join("logs/queries.log.3").exists());
        // Reopening appends to what is there.
        let mut f = RotatingFile::open(&path, 1000, 2).expect("open");
        f.write(b"h").expect("write");
        assert_eq!(read(&path).len(), 61);
        // keep = 0: the full file is simply started again.
        let mut f = RotatingFile::open(&path, 100, 0).expect("open");
        f.write(&[b'i'; 50]).expect("write");
        assert_eq!(read(&path), vec![b'i'; 50]);
    }

    /// The permission bits of `path`.
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    /// Issue 16 (4): the log says who asked for what. Whatever the umask
    /// leaves, group members may read it and no one else may; rotated
    /// files keep that, and so does the directory made for them. A file
    /// left world-readable by an older version loses the world's bits.
    #[test]
    fn r16_the_log_and_its_rotations_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/queries.log");
        let mut f = RotatingFile::open(&path, 100, 2).expect("open");
        for i in 0..3u8 {
            f.write(&[b'a' + i; 60]).expect("write");
        }
        for p in [
            "logs/queries.log",
            "logs/queries.log.1",
            "logs/queries.log.2",
        ] {
            let m = mode(&dir.path().join(p));
            assert_eq!(m & 0o027, 0, "{p}: {m:o}");
            assert_eq!(m & 0o600, 0o600, "{p}: {m:o}");
        }
        let m = mode(&dir.path().join("logs"));
        assert_eq!(m & 0o027, 0, "logs/: {m:o}");
        let old = dir.path().join("old.log");
        std::fs::write(&old, "x\n").expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        drop(RotatingFile::open(&old, 100, 2).expect("open"));
        assert_eq!(mode(&old), 0o640);
    }

    /// Issue 16 (17): a symlink at the log's path (planted in a directory
    /// others can write) is never followed: the open fails, says so, and
    /// the file it names is untouched.
    #[test]
    fn r16_the_log_is_never_opened_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("precious");
        std::fs::write(&target, "mine\n").expect("write");
        let path = dir.path().join("queries.log");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let e = RotatingFile::open(&path, 100, 2).expect_err("opened through a symlink");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "mine\n");
    }
}
