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
/// Hosts-file problems shown per file; the rest are counted.
const MAX_HOSTS_PROBLEMS: usize = 20;

/// Names every stock hosts file carries for the machine itself: served
/// from a copy of `/etc/hosts`, they would give the resolver's loopback to
/// every client.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
];

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

    /// Reads one hosts file: `IP name [alias...] [# comment]` lines.
    fn hosts_file(
        &mut self,
        path: &Path,
        text: &str,
        key: &str,
        domain: &str,
        ptr: bool,
        out: &mut Collected,
    ) {
        let mut shown = 0usize;
        let mut hidden = 0usize;
        let mut report = |checker: &mut Self, line: usize, col: usize, message: String| {
            if shown < MAX_HOSTS_PROBLEMS {
                shown += 1;
                checker.problem_at(
                    &Location {
                        file: path.to_path_buf(),
                        line,
                        col,
                    },
                    format!("{key}: {message}"),
                );
            } else {
                hidden += 1;
            }
        };
        for (n, raw_line) in text.lines().enumerate() {
            let line = n + 1;
            let content = raw_line.split_once('#').map_or(raw_line, |(c, _)| c);
            let mut tokens = tokens_with_columns(content);
            let Some((addr_col, addr_text)) = tokens.next() else {
                continue;
            };
            let addr_only = addr_text.split_once('%').map_or(addr_text, |(a, _)| a);
            let Ok(addr) = addr_only.parse::<IpAddr>() else {
                report(
                    self,
                    line,
                    addr_col,
                    format!(
                        "{addr_text:?} is not an IP address (a hosts line is \"address name [alias...]\")"
                    ),
                );
                continue;
            };
            let mut names: Vec<(String, usize)> = Vec::new();
            let mut any = false;
            for (col, token) in tokens {
                any = true;
                if HOSTS_BOILERPLATE
                    .iter()
                    .any(|b| token.eq_ignore_ascii_case(b))
                {
                    continue;
                }
                match owner_name(token, domain) {
                    Ok(name) => names.push((name, col)),
                    Err(why) => report(self, line, col, why),
                }
            }
            if !any {
                report(
                    self,
                    line,
                    addr_col,
                    format!("{addr_text} has no name after it"),
                );
                continue;
            }
            let source = out.source();
            for (i, (name, col)) in names.iter().enumerate() {
                let origin = Origin {
                    location: Location {
                        file: path.to_path_buf(),
                        line,
                        col: *col,
                    },
                    key: key.to_owned(),
                    generated: false,
                    source,
                };
                let data = match addr {
                    IpAddr::V4(a) => RecordData::A(a),
                    IpAddr::V6(a) => RecordData::Aaaa(a),
                };
                out.push(Record {
                    name: name.clone(),
                    ttl: DEFAULT_RECORD_TTL,
                    data,
                    origin: origin.clone(),
                });
                // The first name is the host's; the others are aliases.
                if ptr && i == 0 {
                    out.push(Record {
                        name: reverse_name(addr),
                        ttl: DEFAULT_RECORD_TTL,
                        data: RecordData::Ptr(name.clone()),
                        origin: Origin {
                            generated: true,
                            ..origin
                        },
                    });
                }
            }
        }
        if hidden > 0 {
            self.problem_at(
                &Location {
                    file: path.to_path_buf(),
                    line: 1,
                    col: 1,
                },
                format!("{key}: {hidden} more problems in this file not shown"),
            );
        }
    }

    /// The checks across records: a CNAME alone at its name and not at a
    /// zone's apex, no CNAME loop, one PTR target per address.
    fn check_records(&mut self, records: &[Record], zones: &[LocalZone]) {
        let mut by_name: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for r in records {
            by_name.entry(r.name.as_str()).or_default().push(r);
        }
        let apexes: HashMap<&str, &LocalZone> =
            zones.iter().map(|z| (z.name.as_str(), z)).collect();
        let mut cnames: HashMap<&str, &str> = HashMap::new();
        // In the order written, so that a problem is reported at the later
        // of the two records (the one that broke the rule).
        let mut problems: Vec<(&Origin, String)> = Vec::new();
        for (name, rs) in &by_name {
            let first_cname = rs.iter().find(|r| matches!(r.data, RecordData::Cname(_)));
            if let Some(c) = first_cname {
                let RecordData::Cname(target) = &c.data else {
                    continue;
                };
                cnames.insert(name, target);
                if let Some(other) = rs.iter().find(|r| r.data != c.data) {
                    let (later, earlier) = later_of(c, other);
                    let what = if matches!(other.data, RecordData::Cname(_)) {
                        "a second CNAME".to_string()
                    } else {
                        format!("other records ({})", other.data.type_name())
                    };
                    problems.push((
                        &later.origin,
                        format!(
                            "{}: {name} has a CNAME and {what} (at {}, {}): a CNAME stands alone at its name (RFC 1034 3.6.2)",
                            later.origin.key, earlier.origin.location, earlier.origin.key
                        ),
                    ));
                }
                if let Some(zone) = apexes.get(name) {
                    let why = match &zone.origin {
                        ZoneOrigin::Default(rfc) => format!("a zone served by default ({rfc})"),
                        ZoneOrigin::Configured(at) => format!("a local zone (at {at})"),
                    };
                    problems.push((
                        &c.origin,
                        format!(
                            "{}: {name} is {why}: its apex has an SOA, and a CNAME stands alone at its name",
                            c.origin.key
                        ),
                    ));
                }
            }
            let ptrs: Vec<&&Record> = rs
                .iter()
                .filter(|r| matches!(r.data, RecordData::Ptr(_)))
                .collect();
            if let Some(first) = ptrs.first()
                && let Some(other) = ptrs
                    .iter()
                    .find(|r| r.data != first.data && r.origin.source != first.origin.source)
            {
                let (later, earlier) = later_of(first, other);
                let (RecordData::Ptr(a), RecordData::Ptr(b)) = (&earlier.data, &later.data) else {
                    continue;
                };
                let address =
                    address_of(name).map_or_else(|| (*name).to_string(), |a| a.to_string());
                problems.push((
                    &later.origin,
                    format!(
                        "{}: {address} would have a PTR to {b} and one to {a} (at {}, {}): one address, one name; set ptr = false on one (a hosts line: give both names on one line, the first gets the PTR)",
                        later.origin.key, earlier.origin.location, earlier.origin.key
                    ),
                ));
            }
        }
        // CNAME loops, each reported once, at its first CNAME in the file.
        let mut in_loop: HashSet<&str> = HashSet::new();
        for r in records {
            let RecordData::Cname(_) = r.data else {
                continue;
            };
            if in_loop.contains(r.name.as_str()) {
                continue;
            }
            let mut seen: Vec<&str> = vec![r.name.as_str()];
            let mut at = r.name.as_str();
            while let Some(next) = cnames.get(at) {
                if let Some(i) = seen.iter().position(|s| s == next) {
                    let chain = &seen[i..];
                    if chain.contains(&r.name.as_str()) {
                        in_loop.extend(chain.iter().copied());
                        let mut shown = chain.join(" -> ");
                        shown.push_str(" -> ");
                        shown.push_str(next);
                        problems.push((
                            &r.origin,
                            format!("{}: a CNAME loop: {shown}", r.origin.key),
                        ));
                    }
                    break;
                }
                seen.push(next);
                at = next;
            }
        }
        // In the order written: config tables, then hosts lines.
        problems.sort_by_key(|(o, _)| (o.source, o.location.line, o.location.col));
        for (origin, message) in problems {
            self.problem_at(&origin.location, message);
        }
    }
}

/// The one of two records written later (config order, then hosts files).
fn later_of<'r>(a: &'r Record, b: &'r Record) -> (&'r Record, &'r Record) {
    if a.origin.source > b.origin.source
        || (a.origin.source == b.origin.source && a.origin.location.line > b.origin.location.line)
    {
        (a, b)
    } else {
        (b, a)
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

/// The whitespace-separated words of a line, each with its 1-based column.
fn tokens_with_columns(line: &str) -> impl Iterator<Item = (usize, &str)> {
    line.split_ascii_whitespace().map(move |t| {
        let col = t.as_ptr() as usize - line.as_ptr() as usize + 1;
        (col, t)
    })
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::config::{Config, Error};

    fn parse_in(dir: &Path, text: &str) -> Result<Config, Error> {
        Config::parse(&dir.join("local.toml"), text)
    }

    fn problems_in(dir: &Path, text: &str) -> Vec<String> {
        match parse_in(dir, text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(Error::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    /// The records of `name`, as (type, data) in the order written.
    fn at<'c>(c: &'c Config, name: &str) -> Vec<&'c RecordData> {
        c.local
            .records
            .iter()
            .filter(|r| r.name == name)
            .map(|r| &r.data)
            .collect()
    }

    #[test]
    fn records_and_hosts_files_become_records_with_ptrs() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("hosts"),
            "# the lab\n127.0.0.1 localhost\n192.168.1.10 nas files.home.arpa  # aliases share it\n\nfd00::20%eth0 printer\n",
        )
        .expect("hosts");
        let long = "k".repeat(300);
        let c = parse_in(
            dir.path(),
            &format!(
                "[local_zones]\nhosts_files = [\"hosts\"]\nzones = [\"LAN.\"]\n\
                 [[records]]\nname = \"router.home.arpa\"\nttl = 60\na = [\"192.168.1.1\"]\naaaa = \"fd00::1\"\ntxt = [\"hello\", \"{long}\"]\n\
                 [[records]]\nname = \"mail.lan\"\nmx = \"10 mx.lan\"\nsrv = [\"0 100 389 dc1.lan\", \"0 0 0 .\"]\nptr = false\na = \"192.168.1.2\"\n\
                 [[records]]\nname = \"www.lan\"\ncname = \"router.home.arpa\"\n\
                 [[records]]\nname = \"5.1.168.192.in-addr.arpa\"\nptr = \"five.lan\"\n"
            ),
        )
        .expect("valid");
        let l = &c.local;
        assert!(l.defaults && l.ptr);
        assert_eq!(l.domain, "home.arpa");
        assert_eq!(l.zones.len(), 1);
        assert_eq!(l.zones[0].name, "lan");
        assert_eq!(l.hosts_files, [dir.path().join("hosts")]);
        // ttl applies to the table's records.
        assert_eq!(
            at(&c, "router.home.arpa"),
            [
                &RecordData::A("192.168.1.1".parse().expect("v4")),
                &RecordData::Aaaa("fd00::1".parse().expect("v6")),
                &RecordData::Txt(vec![b"hello".to_vec()]),
                &RecordData::Txt(vec![vec![b'k'; 255], vec![b'k'; 45]]),
            ]
        );
        assert!(
            l.records
                .iter()
                .filter(|r| r.name == "router.home.arpa")
                .all(|r| r.ttl == 60)
        );
        let router_ptr = &at(&c, "1.1.168.192.in-addr.arpa");
        assert_eq!(router_ptr, &[&RecordData::Ptr("router.home.arpa".into())]);
        let v6 = reverse_name("fd00::1".parse().expect("v6"));
        assert!(
            v6.starts_with("1.0.0.0.") && v6.ends_with(".d.f.ip6.arpa"),
            "{v6}"
        );
        assert_eq!(at(&c, &v6), [&RecordData::Ptr("router.home.arpa".into())]);
        // ptr = false: no PTR for this table's address.
        assert!(at(&c, "2.1.168.192.in-addr.arpa").is_empty());
        assert_eq!(
            at(&c, "mail.lan"),
            [
                &RecordData::A("192.168.1.2".parse().expect("v4")),
                &RecordData::Mx {
                    preference: 10,
                    exchange: "mx.lan".into()
                },
                &RecordData::Srv {
                    priority: 0,
                    weight: 100,
                    port: 389,
                    target: "dc1.lan".into()
                },
                &RecordData::Srv {
                    priority: 0,
                    weight: 0,
                    port: 0,
                    target: String::new()
                },
            ]
        );
        assert_eq!(
            at(&c, "www.lan"),
            [&RecordData::Cname("router.home.arpa".into())]
        );
        assert_eq!(
            at(&c, "5.1.168.192.in-addr.arpa"),
            [&RecordData::Ptr("five.lan".into())]
        );
        // The hosts file: localhost skipped, aliases share the address,
        // the first name gets the PTR, an IPv6 zone index is dropped.
        assert!(at(&c, "localhost.home.arpa").is_empty());
        assert!(at(&c, "1.0.0.127.in-addr.arpa").is_empty());
        let nas = RecordData::A("192.168.1.10".parse().expect("v4"));
        assert_eq!(at(&c, "nas.home.arpa"), [&nas]);
        assert_eq!(at(&c, "files.home.arpa"), [&nas]);
        assert_eq!(
            at(&c, "10.1.168.192.in-addr.arpa"),
            [&RecordData::Ptr("nas.home.arpa".into())]
        );
        let printer = reverse_name("fd00::20".parse().expect("v6"));
        assert_eq!(
            at(&c, &printer),
            [&RecordData::Ptr("printer.home.arpa".into())]
        );
        let nas_record = l
            .records
            .iter()
            .find(|r| r.name == "files.home.arpa")
            .expect("alias");
        assert_eq!(nas_record.origin.key, "local_zones.hosts_files[1]");
        assert_eq!(
            (
                nas_record.origin.location.line,
                nas_record.origin.location.col
            ),
            (3, 18)
        );
        assert_eq!(nas_record.ttl, DEFAULT_RECORD_TTL);
    }

    #[test]
    fn hosts_ptrs_follow_local_zones_ptr_and_domain() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("h"), "10.0.0.5 box\n").expect("hosts");
        let c = parse_in(
            dir.path(),
            "[local_zones]\nhosts_files = [\"h\"]\nptr = false\ndomain = \"Lab.Example\"\ndefaults = false\n",
        )
        .expect("valid");
        assert!(!c.local.defaults);
        assert_eq!(
            c.local
                .records
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["box.lab.example"]
        );
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("hosts"),
            "192.168.1.300 nas\n10.0.0.1\n10.0.0.2 good bad_name! \n",
        )
        .expect("hosts");
        let p = problems_in(
            dir.path(),
            "[local_zones]\nhosts_files = [\"hosts\", \"missing\"]\nzones = [\".\"]\ndefaults = \"yes\"\n\
             [[records]]\nname = \"nas.home.arpa\"\na = [\"192.168.1.10\", \"fd00::1\"]\naaaa = \"nas\"\nmx = \"mail.lan\"\nttl = -5\n\
             [[records]]\na = \"10.0.0.1\"\n[[records]]\nname = \"empty.lan\"\nptr = false\n",
        );
        let hosts = dir.path().join("hosts").display().to_string();
        let file = dir.path().join("local.toml").display().to_string();
        let missing = dir.path().join("missing").display().to_string();
        let want = [
            format!(
                "{file}:4:12: local_zones.defaults: expected true or false, got the string \"yes\""
            ),
            format!(
                "{file}:3:10: local_zones.zones[1]: \".\" is every name: nothing would be forwarded; a local zone is a domain such as \"lan\""
            ),
            format!(
                "{file}:10:7: records[1].ttl: expected a whole number of seconds (0 to 2147483647), got the number -5"
            ),
            format!(
                "{file}:7:22: records[1].a[2]: expected an IPv4 address such as \"192.168.1.10\", got the string \"fd00::1\""
            ),
            format!(
                "{file}:8:8: records[1].aaaa: expected an IPv6 address such as \"fd00::10\", got the string \"nas\""
            ),
            format!(
                "{file}:9:6: records[1].mx: expected a preference and a mail server, such as \"10 mail.home.arpa\", got the string \"mail.lan\""
            ),
            format!(
                "{file}:11:1: records[2]: missing name: every [[records]] table needs the name its records are for"
            ),
            format!(
                "{file}:13:1: records[3]: no records: give one or more of a, aaaa, cname, txt, mx, srv or ptr"
            ),
            format!(
                "{hosts}:1:1: local_zones.hosts_files[1]: \"192.168.1.300\" is not an IP address (a hosts line is \"address name [alias...]\")"
            ),
            format!("{hosts}:2:1: local_zones.hosts_files[1]: 10.0.0.1 has no name after it"),
            format!(
                "{hosts}:3:15: local_zones.hosts_files[1]: \"bad_name!\" is not a domain name (invalid character '!' in name)"
            ),
        ];
        for w in &want {
            assert!(p.contains(w), "missing {w}\nin {p:#?}");
        }
        assert!(
            p.iter().any(|m| m.starts_with(&format!(
                "{file}:2:25: local_zones.hosts_files[2]: {missing}: "
            ))),
            "{p:#?}"
        );
        assert_eq!(p.len(), want.len() + 1, "{p:#?}");
    }

    #[test]
    fn a_cname_stands_alone_and_not_at_an_apex_nor_in_a_loop() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hosts"), "192.168.1.20 www.lan\n").expect("hosts");
        let p = problems_in(
            dir.path(),
            "[local_zones]\nzones = [\"lan\"]\nhosts_files = [\"hosts\"]\n\
             [[records]]\nname = \"www.lan\"\ncname = \"nas.lan\"\n\
             [[records]]\nname = \"home.arpa\"\ncname = \"lan\"\n\
             [[records]]\nname = \"lan\"\ncname = \"x.lan\"\n\
             [[records]]\nname = \"a.lan\"\ncname = \"b.lan\"\n\
             [[records]]\nname = \"b.lan\"\ncname = \"a.lan\"\n\
             [[records]]\nname = \"c.lan\"\ncname = \"d.lan\"\n[[records]]\nname = \"c.lan\"\ncname = \"e.lan\"\n",
        );
        let hosts = dir.path().join("hosts").display().to_string();
        let file = dir.path().join("local.toml").display().to_string();
        assert_eq!(
            p,
            [
                format!(
                    "{file}:9:9: records[2].cname: home.arpa is a zone served by default (RFC 8375): its apex has an SOA, and a CNAME stands alone at its name"
                ),
                format!(
                    "{file}:12:9: records[3].cname: lan is a local zone (at {file}:2:10): its apex has an SOA, and a CNAME stands alone at its name"
                ),
                format!("{file}:15:9: records[4].cname: a CNAME loop: a.lan -> b.lan -> a.lan"),
                format!(
                    "{file}:24:9: records[7].cname: c.lan has a CNAME and a second CNAME (at {file}:21:9, records[6].cname): a CNAME stands alone at its name (RFC 1034 3.6.2)"
                ),
                format!(
                    "{hosts}:1:14: local_zones.hosts_files[1]: www.lan has a CNAME and other records (A) (at {file}:6:9, records[1].cname): a CNAME stands alone at its name (RFC 1034 3.6.2)"
                ),
            ]
        );
    }

    #[test]
    fn one_address_gets_one_ptr_across_records_and_hosts_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("hosts"),
            "192.168.1.10 nas.home.arpa\n192.168.1.11 one\n192.168.1.11 two\n192.168.1.12 same\n192.168.1.12 same\n",
        )
        .expect("hosts");
        let p = problems_in(
            dir.path(),
            "[local_zones]\nhosts_files = [\"hosts\"]\n\
             [[records]]\nname = \"files.home.arpa\"\na = \"192.168.1.10\"\n\
             [[records]]\nname = \"13.1.168.192.in-addr.arpa\"\nptr = [\"x.lan\", \"y.lan\"]\n\
             [[records]]\nname = \"ok.home.arpa\"\na = \"192.168.1.13\"\n",
        );
        let hosts = dir.path().join("hosts").display().to_string();
        let file = dir.path().join("local.toml").display().to_string();
        assert_eq!(
            p,
            [
                format!(
                    "{file}:11:5: records[3].a: 192.168.1.13 would have a PTR to ok.home.arpa and one to x.lan (at {file}:8:8, records[2].ptr[1]): one address, one name; set ptr = false on one (a hosts line: give both names on one line, the first gets the PTR)"
                ),
                format!(
                    "{hosts}:1:14: local_zones.hosts_files[1]: 192.168.1.10 would have a PTR to nas.home.arpa and one to files.home.arpa (at {file}:5:5, records[1].a): one address, one name; set ptr = false on one (a hosts line: give both names on one line, the first gets the PTR)"
                ),
                format!(
                    "{hosts}:3:14: local_zones.hosts_files[1]: 192.168.1.11 would have a PTR to two.home.arpa and one to one.home.arpa (at {hosts}:2:14, local_zones.hosts_files[1]): one address, one name; set ptr = false on one (a hosts line: give both names on one line, the first gets the PTR)"
                ),
            ]
        );
        // The same with ptr = false where the second name is written: valid.
        let c = parse_in(
            dir.path(),
            "[local_zones]\nhosts_files = [\"hosts\"]\nptr = false\n[[records]]\nname = \"files.home.arpa\"\na = \"192.168.1.10\"\n",
        )
        .expect("valid");
        assert_eq!(
            at(&c, "10.1.168.192.in-addr.arpa"),
            [&RecordData::Ptr("files.home.arpa".into())]
        );
    }

    #[test]
    fn a_forwarded_zone_takes_its_default_over_and_cannot_also_be_local() {
        let c = Config::parse(
            Path::new("z.toml"),
            "[[forward]]\nzones = [\"10.in-addr.arpa\", \"home.arpa\"]\nservers = [\"10.0.0.10\"]\n[local_zones]\nzones = [\"lan\", \"local\"]\n",
        )
        .expect("valid");
        let zones = c.local.zones_in_force(&c.forward);
        let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
        assert!(!names.contains(&"10.in-addr.arpa") && !names.contains(&"home.arpa"));
        assert!(names.contains(&"168.192.in-addr.arpa") && names.contains(&"onion"));
        // `local` is both a default and the operator's: once, as theirs.
        assert_eq!(names.iter().filter(|n| **n == "local").count(), 1);
        let local = zones.iter().find(|z| z.name == "local").expect("local");
        assert!(matches!(local.origin, ZoneOrigin::Configured(_)));
        assert_eq!(default_zones().len(), names.len() + 2 - 1);
        let err = Config::parse(
            Path::new("z.toml"),
            "[[forward]]\nzones = [\"corp.example\"]\nservers = [\"10.0.0.10\"]\n[local_zones]\nzones = [\"corp.example\"]\n",
        )
        .expect_err("both");
        assert_eq!(
            err.to_string(),
            "z.toml:5:10: local_zones.zones[1]: corp.example is forwarded by forward[1] (at z.toml:2:10): a zone is either answered here or forwarded"
        );
    }

    #[test]
    fn a_forwarded_tree_holding_default_zones_is_warned_about() {
        let c = Config::parse(
            Path::new("w.toml"),
            "[[forward]]\nzones = [\"in-addr.arpa\", \"10.in-addr.arpa\", \"corp.example\", \"onion.example\"]\nservers = [\"10.0.0.10\"]\n",
        )
        .expect("valid");
        let shown: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("w.toml:2:10: forward[1].zones[1]: in-addr.arpa holds 88 zones served locally by default (0.in-addr.arpa, ...): they stay local"),
            "{}",
            shown[0]
        );
        let c = Config::parse(
            Path::new("w.toml"),
            "[local_zones]\ndefaults = false\n[[forward]]\nzones = [\"arpa\"]\nservers = [\"10.0.0.10\"]\n",
        )
        .expect("valid");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn the_default_zones_are_names_and_each_is_there_once() {
        let zones = default_zones();
        let unique: HashSet<&str> = zones.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(unique.len(), zones.len());
        // 6 + 16 (172.16/12) + 64 (100.64/10) + 3 TEST-NETs + 8 IPv6 + 6 names.
        assert_eq!(zones.len(), 6 + 16 + 64 + 3 + 8 + 6);
        for (name, _) in &zones {
            assert_eq!(zone_name(name, "").as_deref(), Ok(name.as_str()));
        }
        for name in [
            "10.in-addr.arpa",
            "31.172.in-addr.arpa",
            "127.100.in-addr.arpa",
            "113.0.203.in-addr.arpa",
            "b.e.f.ip6.arpa",
            "home.arpa",
            "onion",
        ] {
            assert!(unique.contains(name), "{name}");
        }
        assert!(!unique.contains("32.172.in-addr.arpa") && !unique.contains("63.100.in-addr.arpa"));
    }

    /// The shipped config carries the new sections as comments: each
    /// `# key = value` line of them, uncommented, is a key its section
    /// takes, with a value it accepts.
    #[test]
    fn the_commented_sections_of_the_shipped_config_parse() {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/embargo.toml"),
        )
        .expect("shipped config");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hosts"), "192.168.1.30 tv\n").expect("hosts");
        let mut text = String::new();
        let mut cname = String::new();
        for header in ["# [[forward]]", "# [local_zones]", "# [[records]]"] {
            let start = shipped.find(&format!("\n{header}\n")).expect(header);
            text.push_str(&header[2..]);
            text.push('\n');
            let mut keys = 0;
            for line in shipped[start + header.len() + 2..].lines() {
                if line.is_empty() {
                    break;
                }
                let Some(rest) = line.strip_prefix("# ") else {
                    continue;
                };
                let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                });
                if !is_key {
                    continue;
                }
                keys += 1;
                // A CNAME stands alone: it goes in a table of its own.
                if rest.starts_with("cname = ") {
                    cname = format!("[[records]]\nname = \"alias.home.arpa\"\n{rest}\n");
                } else {
                    text.push_str(rest);
                    text.push('\n');
                }
            }
            assert!(keys >= 5, "{header}: {keys} keys");
        }
        text.push_str(&cname);
        let c = parse_in(dir.path(), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.forward.len(), 1);
        assert!(c.local.records.iter().any(|r| r.name == "tv.home.arpa"));
        assert!(c.local.records.iter().any(|r| r.name == "alias.home.arpa"));
        assert!(
            c.local
                .records
                .iter()
                .any(|r| matches!(r.data, RecordData::Srv { .. }))
        );
    }

    #[test]
    fn unknown_keys_in_the_new_sections_are_named_with_their_line() {
        for (text, key) in [
            ("[local_zones]\ndefaults = true\nzone = [\"lan\"]\n", "zone"),
            ("[[records]]\nname = \"a.lan\"\nAAAA = \"::1\"\n", "AAAA"),
        ] {
            let err = Config::parse(Path::new("u.toml"), text).expect_err("unknown key");
            let shown = err.to_string();
            assert!(shown.starts_with("u.toml:3:1: unknown field"), "{shown}");
            assert!(shown.contains(key), "{shown}");
        }
    }

    proptest! {
        #[test]
        fn reverse_names_round_trip(v4 in any::<u32>(), v6 in any::<u128>()) {
            for addr in [IpAddr::V4(Ipv4Addr::from(v4)), IpAddr::V6(Ipv6Addr::from(v6))] {
                let name = reverse_name(addr);
                prop_assert_eq!(address_of(&name), Some(addr));
                prop_assert!(NameKey::from_text(&name, false).is_ok());
            }
        }
    }
}
