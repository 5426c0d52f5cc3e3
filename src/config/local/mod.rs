//! `[local_zones]` and `[[records]]`: the names embargo answers itself,
//! never forwarding them. A home lab's `nas.home.arpa`, the reverse zones of
//! private addresses, `.local`, `.onion`: none of them means anything to a
//! public resolver, and every query for one that leaves the network says
//! something about it.
//!
//! ```toml
//! [local_zones]
//! defaults = true                 # the RFC 6303/6761/6762/7686/8375 zones
//! zones = ["lan"]                 # the operator's own: nothing below is forwarded
//! hosts_files = ["hosts"]         # "192.168.1.10 nas nas.home.arpa" lines
//! domain = "home.arpa"            # what a bare name ("nas") is under
//! ptr = true                      # a PTR for each hosts-file address
//!
//! [[records]]
//! name = "nas.home.arpa"
//! a = "192.168.1.10"              # or a list; aaaa, cname, txt, mx, srv, ptr alike
//! ```
//!
//! Everything is read and checked here, the hosts files included (as
//! `ca_file` is, so `validate`, the start and a reload all refuse a bad
//! record with its file, line and key, and a reload that refuses keeps the
//! records in force). Checked: each value (an address that is an address, a
//! name that is a name), a CNAME beside other data at its name (RFC 1034
//! 3.6.2) or at a zone's apex, a CNAME loop, and two PTRs for one address
//! from different places (one address, one name: set `ptr = false` on one).
//! What comes out, [`LocalConfig`], is plain data; `crate::local` freezes
//! it into answers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::forward::{ForwardSpec, ZoneName, zone_name};
use super::raw::{Container, Raw, Section, Shaped, Value};
use super::{Checker, Location};
use crate::matcher::{NameError, NameKey};

/// `[local_zones]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LocalZonesSpec {
    pub(super) defaults: Option<Value>,
    pub(super) zones: Option<Value>,
    pub(super) hosts_files: Option<Value>,
    pub(super) domain: Option<Value>,
    pub(super) ptr: Option<Value>,
}

/// One `[[records]]` table, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordFileSpec {
    pub(super) name: Option<Value>,
    pub(super) ttl: Option<Value>,
    pub(super) a: Option<Value>,
    pub(super) aaaa: Option<Value>,
    pub(super) cname: Option<Value>,
    pub(super) txt: Option<Value>,
    pub(super) mx: Option<Value>,
    pub(super) srv: Option<Value>,
    /// `false`: no PTR for this table's addresses; a name or names: PTR
    /// records of this name.
    pub(super) ptr: Option<Value>,
}

impl Section for LocalZonesSpec {
    const CONTAINER: Container = Container::Table;
}

impl Section for RecordFileSpec {
    const CONTAINER: Container = Container::Table;
}

/// The `[[records]]` tables, each of which may turn out not to be a table.
pub(super) type RecordTables = Vec<Spanned<Shaped<RecordFileSpec>>>;

/// The TTL of a record whose table sets none: an hour, as Unbound's
/// `local-data` and Blocky's `customTTL` have it.
pub const DEFAULT_RECORD_TTL: u32 = 3600;

/// Where bare hosts-file names go by default: the zone RFC 8375 sets aside
/// for home networks.
pub const DEFAULT_DOMAIN: &str = "home.arpa";

/// The validated `[local_zones]` and `[[records]]`, hosts files read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Whether the zones of [`default_zones`] are served.
    pub defaults: bool,
    /// The operator's own zones (`zones`), each once.
    pub zones: Vec<ZoneName>,
    /// What a bare name of a hosts file (`nas`) is under. A `[[records]]`
    /// name is taken as written.
    pub domain: String,
    /// Whether hosts-file addresses get PTRs.
    pub ptr: bool,
    /// The hosts files, resolved against the config's directory (read
    /// already: their records are in `records`; kept so that a reload
    /// watches them).
    pub hosts_files: Vec<PathBuf>,
    /// Every record, from `[[records]]` then the hosts files, in the order
    /// written, generated PTRs after the address they come from. A record
    /// written twice is here once.
    pub records: Vec<Record>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            defaults: true,
            zones: Vec::new(),
            domain: DEFAULT_DOMAIN.into(),
            ptr: true,
            hosts_files: Vec::new(),
            records: Vec::new(),
        }
    }
}

/// One local record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner, normalised (`nas.home.arpa`).
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
    pub origin: Origin,
}

/// Where a record was written, for messages and `embargo check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The value in the config (`a = "…"`) or the hosts-file line.
    pub location: Location,
    /// The key: `records[2].a[1]`, or `local_zones.hosts_files[1]`.
    pub key: String,
    /// Generated (a PTR for an address), not written.
    pub generated: bool,
    /// The table or hosts line it came from: records of one source may
    /// share an owner in ways that records of two may not.
    source: u32,
}

/// The data of a record. Names are normalised; `.` (`""` here) is the
/// root, for a null MX (RFC 7505) or an SRV that says "no service".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// One TXT record: its character-strings, each at most 255 bytes.
    Txt(Vec<Vec<u8>>),
    Mx {
        preference: u16,
        exchange: String,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Ptr(String),
}

impl RecordData {
    /// The RR type number.
    pub fn rtype(&self) -> u16 {
        match self {
            Self::A(_) => 1,
            Self::Cname(_) => 5,
            Self::Ptr(_) => 12,
            Self::Mx { .. } => 15,
            Self::Txt(_) => 16,
            Self::Aaaa(_) => 28,
            Self::Srv { .. } => 33,
        }
    }

    /// The type's mnemonic.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::A(_) => "A",
            Self::Cname(_) => "CNAME",
            Self::Ptr(_) => "PTR",
            Self::Mx { .. } => "MX",
            Self::Txt(_) => "TXT",
            Self::Aaaa(_) => "AAAA",
            Self::Srv { .. } => "SRV",
        }
    }
}

/// Why a zone is served locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneOrigin {
    /// One of [`default_zones`]: the RFC that sets it aside.
    Default(&'static str),
    /// `[local_zones] zones`, written here.
    Configured(Location),
}

/// A zone answered locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalZone {
    pub name: String,
    pub origin: ZoneOrigin,
}

/// The zones no query should ever take out of the network, answered
/// locally by default, with the RFC that says so: RFC 6303's reverse zones
/// (with RFC 7793's 100.64/10 and RFC 6303's documentation prefixes),
/// RFC 6761's `invalid`, `test` and `localhost`, RFC 6762's `local`,
/// RFC 8375's `home.arpa` and RFC 7686's `onion`.
pub fn default_zones() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    let mut add = |name: String, rfc| out.push((name, rfc));
    for z in ["0", "10", "127", "254.169", "168.192", "255.255.255.255"] {
        add(format!("{z}.in-addr.arpa"), "RFC 6303");
    }
    for n in 16..=31 {
        add(format!("{n}.172.in-addr.arpa"), "RFC 6303");
    }
    for n in 64..=127 {
        add(format!("{n}.100.in-addr.arpa"), "RFC 7793");
    }
    // The TEST-NETs: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24.
    for z in ["2.0.192", "100.51.198", "113.0.203"] {
        add(format!("{z}.in-addr.arpa"), "RFC 6303");
    }
    let zeros = "0.".repeat(32);
    add(format!("{zeros}ip6.arpa"), "RFC 6303");
    add(format!("1.{}ip6.arpa", "0.".repeat(31)), "RFC 6303");
    // fd00::/8, fe80::/10, 2001:db8::/32.
    for z in ["d.f", "8.e.f", "9.e.f", "a.e.f", "b.e.f", "8.b.d.0.1.0.0.2"] {
        add(format!("{z}.ip6.arpa"), "RFC 6303");
    }
    add("invalid".into(), "RFC 6761");
    add("test".into(), "RFC 6761");
    add("localhost".into(), "RFC 6761");
    add("local".into(), "RFC 6762");
    add("home.arpa".into(), "RFC 8375");
    add("onion".into(), "RFC 7686");
    out
}

impl LocalConfig {
    /// The zones answered locally: the defaults (unless `defaults =
    /// false`) that no `[[forward]]` zone names (a forwarded zone takes its
    /// default over: `10.in-addr.arpa` to the domain controllers), then the
    /// operator's own. A forward zone below a local zone is carved out of
    /// it by the lookup (the most specific name wins), not here.
    pub fn zones_in_force(&self, forward: &[ForwardSpec]) -> Vec<LocalZone> {
        let forwarded: HashSet<&str> = forward
            .iter()
            .flat_map(|f| f.zones.iter().map(|z| z.name.as_str()))
            .collect();
        let configured: HashSet<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
        let mut out = Vec::new();
        if self.defaults {
            for (name, rfc) in default_zones() {
                if !forwarded.contains(name.as_str()) && !configured.contains(name.as_str()) {
                    out.push(LocalZone {
                        name,
                        origin: ZoneOrigin::Default(rfc),
                    });
                }
            }
        }
        out.extend(self.zones.iter().map(|z| LocalZone {
            name: z.name.clone(),
            origin: ZoneOrigin::Configured(z.location.clone()),
        }));
        out
    }

    /// Whether nothing at all is answered locally.
    pub fn is_empty(&self) -> bool {
        !self.defaults && self.zones.is_empty() && self.records.is_empty()
    }
}

const WANT_BOOL: &str = "true or false";
const WANT_PATHS: &str = r#"a list of hosts file paths, such as ["hosts"]"#;
const WANT_PATH: &str = r#"a hosts file path such as "hosts""#;
const WANT_NAME: &str = r#"a domain name such as "nas.home.arpa""#;

/// Records as they are collected, before the checks across them.
struct Collected {
    records: Vec<Record>,
    /// (owner, data) of every record in `records`.
    seen: HashSet<(String, RecordData)>,
    next_source: u32,
}

impl Collected {
    fn source(&mut self) -> u32 {
        self.next_source += 1;
        self.next_source
    }

    /// Adds a record unless the same one (owner, data) is there already.
    fn push(&mut self, record: Record) {
        if self.seen.insert((record.name.clone(), record.data.clone())) {
            self.records.push(record);
        }
    }
}

/// Warnings for forwarded zones that hold zones served locally by
/// default (`in-addr.arpa` forwarded, `10.in-addr.arpa` still local): the
/// most specific name wins, so those stay local, which an operator who
/// forwards a whole tree may not expect.
pub(super) fn shadowed_defaults(
    local: &LocalConfig,
    forward: &[ForwardSpec],
) -> Vec<super::Problem> {
    if !local.defaults {
        return Vec::new();
    }
    let defaults = default_zones();
    let mut out = Vec::new();
    for (i, f) in forward.iter().enumerate() {
        for (j, z) in f.zones.iter().enumerate() {
            let inside: Vec<&str> = defaults
                .iter()
                .map(|(d, _)| d.as_str())
                .filter(|d| d.ends_with(&format!(".{}", z.name)))
                .filter(|d| !forward.iter().any(|f| f.zones.iter().any(|z| z.name == *d)))
                .collect();
            if let Some(first) = inside.first() {
                out.push(super::Problem {
                    location: z.location.clone(),
                    message: format!(
                        "forward[{}].zones[{}]: {} holds {} zone{} served locally by default ({first}{}): {} local; forward {} by name, or set [local_zones] defaults = false",
                        i + 1,
                        j + 1,
                        z.name,
                        inside.len(),
                        if inside.len() == 1 { "" } else { "s" },
                        if inside.len() > 1 { ", ..." } else { "" },
                        if inside.len() == 1 { "it stays" } else { "they stay" },
                        if inside.len() == 1 { "it" } else { "them" },
                    ),
                });
            }
        }
    }
    out
}

impl Checker<'_> {
    /// Converts `[local_zones]` and `[[records]]`, reading the hosts files,
    /// then checks the records against each other and the zones.
    pub(super) fn local(
        &mut self,
        zones: Option<Spanned<Shaped<LocalZonesSpec>>>,
        records: Option<Spanned<Shaped<RecordTables>>>,
        forward: &[ForwardSpec],
    ) -> LocalConfig {
        let z = self.section("local_zones", zones);
        let d = LocalConfig::default();
        let defaults = self
            .flag("local_zones.defaults", &z.defaults)
            .unwrap_or(d.defaults);
        let ptr = self.flag("local_zones.ptr", &z.ptr).unwrap_or(d.ptr);
        let domain = self
            .opt_parse(
                "local_zones.domain",
                &z.domain,
                r#"a domain name such as "home.arpa""#,
                |s| zone_name(s, "").ok(),
            )
            .unwrap_or(d.domain);
        let mut own: Vec<ZoneName> = Vec::new();
        if let Some(v) = &z.zones {
            for (j, zone) in self
                .zones(
                    "local_zones.zones",
                    v,
                    "nothing would be forwarded; a local zone is a domain such as \"lan\"",
                )
                .into_iter()
                .enumerate()
            {
                let forwarded = forward.iter().enumerate().find_map(|(k, f)| {
                    f.zones
                        .iter()
                        .find(|z| z.name == zone.name)
                        .map(|z| (k, z.location.clone()))
                });
                if let Some((k, there)) = forwarded {
                    self.problem_at(
                        &zone.location,
                        format!(
                            "local_zones.zones[{}]: {} is forwarded by forward[{}] (at {there}): a zone is either answered here or forwarded",
                            j + 1,
                            zone.name,
                            k + 1
                        ),
                    );
                } else if !own.iter().any(|o| o.name == zone.name) {
                    own.push(zone);
                }
            }
        }
        let mut collected = Collected {
            records: Vec::new(),
            seen: HashSet::new(),
            next_source: 0,
        };
        for (i, t) in self.section("records", records).into_iter().enumerate() {
            self.record_table(i, t, &mut collected);
        }
        let mut hosts_files: Vec<PathBuf> = Vec::new();
        match z.hosts_files.as_ref().map(|v| (v, v.get_ref())) {
            None => {}
            Some((_, Raw::Array(items))) => {
                for (i, item) in items.iter().enumerate() {
                    let key = format!("local_zones.hosts_files[{}]", i + 1);
                    let Raw::String(p) = item.get_ref() else {
                        self.wrong(&key, item, WANT_PATH);
                        continue;
                    };
                    let path = self.resolve(p);
                    match std::fs::read_to_string(&path) {
                        Ok(text) => {
                            self.hosts_file(&path, &text, &key, &domain, ptr, &mut collected);
                        }
                        Err(e) => self.problem(item, format!("{key}: {}: {e}", path.display())),
                    }
                    hosts_files.push(path);
                }
            }
            Some((v, _)) => self.wrong("local_zones.hosts_files", v, WANT_PATHS),
        }
        let config = LocalConfig {
            defaults,
            zones: own,
            domain,
            ptr,
            hosts_files,
            records: collected.records,
        };
        let zones = config.zones_in_force(forward);
        self.check_records(&config.records, &zones);
        config
    }

    /// `true` or `false`.
    fn flag(&mut self, key: &str, value: &Option<Value>) -> Option<bool> {
        match value.as_ref().map(|v| (v, v.get_ref())) {
            None => None,
            Some((_, Raw::Boolean(b))) => Some(*b),
            Some((v, _)) => {
                self.wrong(key, v, WANT_BOOL);
                None
            }
        }
    }

    /// One `[[records]]` table (`index` from 0).
    fn record_table(
        &mut self,
        index: usize,
        t: Spanned<Shaped<RecordFileSpec>>,
        out: &mut Collected,
    ) {
        let table_key = format!("records[{}]", index + 1);
        let key = |field: &str| format!("{table_key}.{field}");
        let span = t.span();
        let t = match t.into_inner() {
            Shaped::Right(t) => t,
            Shaped::Wrong(raw) => {
                self.wrong(
                    &table_key,
                    &Spanned::new(span, raw),
                    "a table of records ([[records]])",
                );
                return;
            }
        };
        let table: Value = Spanned::new(span, Raw::Table);
        let Some(name_value) = &t.name else {
            self.problem(
                &table,
                format!("{table_key}: missing name: every [[records]] table needs the name its records are for"),
            );
            return;
        };
        let Some(name) = self.parse_with(&key("name"), name_value, WANT_NAME, |s| {
            target_name(s, false).ok()
        }) else {
            return;
        };
        let ttl = t
            .ttl
            .as_ref()
            .and_then(|v| self.whole(&key("ttl"), v, "seconds", 0..=i128::from(i32::MAX)))
            .unwrap_or(DEFAULT_RECORD_TTL);
        let source = out.source();
        let mut generate_ptr = true;
        let mut data: Vec<(RecordData, Origin)> = Vec::new();
        let origin = |checker: &Self, at: &Value, key: String| Origin {
            location: checker.location(at),
            key,
            generated: false,
            source,
        };
        type Parse = fn(&str) -> Result<RecordData, String>;
        let fields: [(&str, &Option<Value>, &str, Parse); 6] = [
            (
                "a",
                &t.a,
                r#"an IPv4 address such as "192.168.1.10""#,
                |s| {
                    s.parse::<Ipv4Addr>()
                        .map(RecordData::A)
                        .map_err(|_| String::new())
                },
            ),
            (
                "aaaa",
                &t.aaaa,
                r#"an IPv6 address such as "fd00::10""#,
                |s| {
                    s.parse::<Ipv6Addr>()
                        .map(RecordData::Aaaa)
                        .map_err(|_| String::new())
                },
            ),
            (
                "cname",
                &t.cname,
                r#"the name it is an alias for, such as "nas.home.arpa""#,
                |s| target_name(s, false).map(RecordData::Cname),
            ),
            ("txt", &t.txt, r#"a text such as "v=spf1 -all""#, |s| {
                Ok(RecordData::Txt(txt_strings(s)))
            }),
            (
                "mx",
                &t.mx,
                r#"a preference and a mail server, such as "10 mail.home.arpa""#,
                parse_mx,
            ),
            (
                "srv",
                &t.srv,
                r#"priority, weight, port and target, such as "0 100 389 dc1.corp.example""#,
                parse_srv,
            ),
        ];
        for (field, value, want, parse) in fields {
            let Some(v) = value else { continue };
            if field == "cname" && matches!(v.get_ref(), Raw::Array(_)) {
                self.wrong(&key(field), v, want);
                continue;
            }
            for (item, at) in self.one_or_many(&key(field), v, want) {
                match parse(&item) {
                    Ok(d) => data.push((d, origin(self, at, at_key(&key(field), v, at)))),
                    Err(why) if why.is_empty() => self.wrong(&at_key(&key(field), v, at), at, want),
                    Err(why) => {
                        let k = at_key(&key(field), v, at);
                        self.problem(at, format!("{k}: {why}"));
                    }
                }
            }
        }
        if let Some(v) = &t.ptr {
            match v.get_ref() {
                Raw::Boolean(b) => generate_ptr = *b,
                _ => {
                    let want = r#"false (no PTR for this table's addresses), or the name a PTR points to, such as "nas.home.arpa""#;
                    for (item, at) in self.one_or_many(&key("ptr"), v, want) {
                        match target_name(&item, false) {
                            Ok(n) => data.push((
                                RecordData::Ptr(n),
                                origin(self, at, at_key(&key("ptr"), v, at)),
                            )),
                            Err(why) => {
                                let k = at_key(&key("ptr"), v, at);
                                self.problem(at, format!("{k}: {why}"));
                            }
                        }
                    }
                }
            }
        }
        let ptr_records = t
            .ptr
            .as_ref()
            .is_some_and(|p| !matches!(p.get_ref(), Raw::Boolean(_)));
        if !ptr_records
            && [&t.a, &t.aaaa, &t.cname, &t.txt, &t.mx, &t.srv]
                .iter()
                .all(|v| v.is_none())
        {
            self.problem(
                &table,
                format!("{table_key}: no records: give one or more of a, aaaa, cname, txt, mx, srv or ptr"),
            );
        }
        for (d, o) in data {
            let reverse = match &d {
                RecordData::A(a) if generate_ptr => Some(reverse_name(IpAddr::V4(*a))),
                RecordData::Aaaa(a) if generate_ptr => Some(reverse_name(IpAddr::V6(*a))),
                _ => None,
            };
            let generated = reverse.map(|r| Record {
                name: r,
                ttl,
                data: RecordData::Ptr(name.clone()),
                origin: Origin {
                    generated: true,
                    ..o.clone()
                },
            });
            out.push(Record {
                name: name.clone(),
                ttl,
                data: d,
                origin: o,
            });
            if let Some(g) = generated {
                out.push(g);
            }
        }
    }

    /// A string, or an array of strings, each with its value (for its place).
    fn one_or_many<'v>(
        &mut self,
        key: &str,
        value: &'v Value,
        want: &str,
    ) -> Vec<(String, &'v Value)> {
        match value.get_ref() {
            Raw::String(s) => vec![(s.clone(), value)],
            Raw::Array(items) if !items.is_empty() => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.get_ref() {
                        Raw::String(s) => out.push((s.clone(), item)),
                        _ => self.wrong(&format!("{key}[{}]", i + 1), item, want),
                    }
                }
                out
            }
            _ => {
                self.wrong(key, value, &format!("{want}, or a list of them"));
                Vec::new()
            }
        }
    }
}

/// `key[i]` for an element of an array value, `key` for a single value.
fn at_key(key: &str, whole: &Value, at: &Value) -> String {
    match whole.get_ref() {
        Raw::Array(items) => items
            .iter()
            .position(|i| std::ptr::eq(i, at))
            .map_or_else(|| key.to_owned(), |i| format!("{key}[{}]", i + 1)),
        _ => key.to_owned(),
    }
}

/// An owner name: normalised as a list entry is; a bare name (`nas`) is
/// under `domain`.
fn owner_name(text: &str, domain: &str) -> Result<String, String> {
    let text = text.trim();
    match NameKey::from_text(text, false) {
        Ok(key) => Ok(key.to_string()),
        Err(NameError::BareTld(bare)) => {
            match NameKey::from_text(&format!("{bare}.{domain}"), false) {
                Ok(key) => Ok(key.to_string()),
                Err(e) => Err(format!(
                    "{text:?} under {domain} is not a domain name ({e})"
                )),
            }
        }
        Err(e) => Err(format!("{text:?} is not a domain name ({e})")),
    }
}

/// A name a record points to, written in full. `root_ok`: `.` is allowed
/// (and is `""`).
fn target_name(text: &str, root_ok: bool) -> Result<String, String> {
    let text = text.trim();
    if root_ok && text == "." {
        return Ok(String::new());
    }
    NameKey::from_text(text, true)
        .map(|k| k.to_string())
        .map_err(|e| format!("{text:?} is not a domain name ({e})"))
}

/// A TXT value as character-strings of at most 255 bytes (a longer text,
/// an SPF or DKIM record, is split as a zone file would have it).
fn txt_strings(text: &str) -> Vec<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return vec![Vec::new()];
    }
    bytes.chunks(255).map(<[u8]>::to_vec).collect()
}

fn parse_mx(text: &str) -> Result<RecordData, String> {
    let mut words = text.split_ascii_whitespace();
    let (Some(pref), Some(exchange), None) = (words.next(), words.next(), words.next()) else {
        return Err(String::new());
    };
    let preference = pref.parse::<u16>().map_err(|_| String::new())?;
    Ok(RecordData::Mx {
        preference,
        exchange: target_name(exchange, true)?,
    })
}

fn parse_srv(text: &str) -> Result<RecordData, String> {
    let w: Vec<&str> = text.split_ascii_whitespace().collect();
    let [priority, weight, port, target] = w.as_slice() else {
        return Err(String::new());
    };
    let n = |s: &str| s.parse::<u16>().map_err(|_| String::new());
    Ok(RecordData::Srv {
        priority: n(priority)?,
        weight: n(weight)?,
        port: n(port)?,
        target: target_name(target, true)?,
    })
}

/// The reverse name of an address: `10.1.168.192.in-addr.arpa`, or the
/// 32 nibbles of an IPv6 address under `ip6.arpa`.
pub fn reverse_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let [a, b, c, d] = a.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(72);
            for byte in a.octets().iter().rev() {
                for nibble in [byte & 0xf, byte >> 4] {
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    s.push('.');
                }
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// The address a reverse name stands for, if it is a whole one.
pub fn address_of(name: &str) -> Option<IpAddr> {
    if let Some(v4) = name.strip_suffix(".in-addr.arpa") {
        let parts: Vec<u8> = v4
            .split('.')
            .map(|p| p.parse::<u8>().ok())
            .collect::<Option<Vec<u8>>>()?;
        let [d, c, b, a] = parts.as_slice() else {
            return None;
        };
        return Some(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)));
    }
    let v6 = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 1))
        .collect::<Option<Vec<u8>>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut octets = [0u8; 16];
    for (i, pair) in nibbles.chunks(2).enumerate() {
        octets[15 - i] = pair[0] | (pair[1] << 4);
    }
    Some(IpAddr::V6(Ipv6Addr::from(octets)))
}

mod check;
mod hosts;

#[cfg(test)]
mod tests;
