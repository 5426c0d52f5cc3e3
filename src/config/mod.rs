//! Configuration: the TOML file (`file::FileSpec`, serde, spans kept) is
//! parsed, then converted into the typed [`Config`] the rest of embargo uses.
//! Conversion collects every problem with its file, line and column before
//! failing, so an operator fixes a config in one pass.
//!
//! Relative paths (list sources, allow files) are resolved against the
//! directory of the config file, not the working directory, so a config
//! works wherever the server is started from.

mod access;
mod alerts;
mod anchors;
mod cache;
mod dnstap;
mod error;
mod file;
mod forward;
mod groups;
mod history;
mod http;
mod list;
mod local;
mod observe;
mod raw;
mod run_as;
mod server;
mod tls;
mod unknown;
mod upstream;

pub use alerts::{AlertsConfig, FIRST_BACKOFF, MAX_BACKOFF, NamedFile};
pub use anchors::{
    AnchorError, AnchorKey, DEFAULT_BOGUS_TTL, Dnssec, DnssecConfig, TrustAnchor, parse_anchors,
};
pub use cache::CacheConfig;
pub use dnstap::{DnstapConfig, DnstapTarget};
pub use error::{Error, Location, Problem};
pub use file::FileSpec;
pub use forward::{ForwardSpec, ZoneName};
pub use groups::{GroupSpec, MAX_GROUPS};
pub use history::HistoryConfig;
pub use http::{DEFAULT_HTTP_LISTEN, HttpConfig, TokenSource};
pub use list::{Fetch, ListSpec, Provenance, Signed, Source, Tsig, XfrSource};
pub use local::{
    DEFAULT_DOMAIN, DEFAULT_RECORD_TTL, LocalConfig, LocalZone, Origin, Record, RecordData,
    ZoneOrigin, address_of, default_zones, reverse_name,
};
pub use observe::{ClientIp, HitsConfig, LogConfig, LogFormat, LogPath, LogQueries};
pub use run_as::{Account, RunAs};
pub use server::{ServerConfig, TcpLimits};
pub use tls::{
    CertError, Certificate, DEFAULT_HTTPS_PATH, EncryptedLimits, TlsConfig, is_client_id,
    load_certificate,
};
pub use upstream::{Strategy, Transport, UpstreamConfig, UpstreamServer};

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use toml::Spanned;

use raw::{Container, Raw, Section, Shaped, Value};

use crate::lists::Format;
use crate::policy::{Action, EdeCode};

/// What a block looks like by default; each list may override it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    pub action: Action,
    pub sinkhole_ipv4: Ipv4Addr,
    pub sinkhole_ipv6: Ipv6Addr,
    /// TTL of synthesized records and the SOA negative TTL.
    pub ttl: u32,
    pub ede: EdeCode,
    /// How often the running server asks itself for each list's canary
    /// (`canary_interval`; `crate::canary`). Read at start.
    pub canary_interval: std::time::Duration,
}

/// How often the canaries are asked by default: a lost canary shows
/// within a minute, for one query a minute per list.
pub const DEFAULT_CANARY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            action: Action::Nxdomain,
            sinkhole_ipv4: Ipv4Addr::UNSPECIFIED,
            sinkhole_ipv6: Ipv6Addr::UNSPECIFIED,
            ttl: 300,
            ede: EdeCode::Blocked,
            canary_interval: DEFAULT_CANARY_INTERVAL,
        }
    }
}

/// An allowlist entry written inline in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowDomain {
    pub name: String,
    pub location: Location,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (lists are resolved relative to it).
    pub path: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// Whom to serve as once the sockets are bound (`[server] user`, `group`).
    pub run_as: RunAs,
    /// Workers and bounds (`[server]` keys other than `listen`).
    pub server: ServerConfig,
    /// DoT, DoH and DoQ listeners and their certificate (`[server]`).
    pub tls: TlsConfig,
    pub upstream: UpstreamConfig,
    /// The answer cache's bounds and TTL rules (`[cache]`).
    pub cache: CacheConfig,
    pub block: BlockConfig,
    pub lists: Vec<ListSpec>,
    pub allow_domains: Vec<AllowDomain>,
    pub allow_files: Vec<PathBuf>,
    /// Where downloaded lists, their metadata and the pid file live.
    pub state_dir: PathBuf,
    /// The query log (`[log]`).
    pub log: LogConfig,
    /// The hit report (`[hits]`).
    pub hits: HitsConfig,
    /// What each reload changed in each list, and how much of it is kept
    /// (`[history]`).
    pub history: HistoryConfig,
    /// dnstap output (`[dnstap]`), off when absent.
    pub dnstap: Option<DnstapConfig>,
    /// First-hit alerts to a webhook (`[alerts]`), off when absent.
    pub alerts: Option<AlertsConfig>,
    /// Who may ask (`[access]`).
    pub access: crate::access::Access,
    /// How fast (`[rate_limit]`).
    pub rate_limit: crate::access::RateLimit,
    /// Which lists apply to which clients (`[[groups]]`), in config order.
    pub groups: Vec<GroupSpec>,
    /// Metrics, health checks and the JSON API (`[http]`).
    pub http: HttpConfig,
    /// Conditional forwarding (`[[forward]]`), in config order: a zone's
    /// names go to its table's servers instead of `[upstream]`'s.
    pub forward: Vec<ForwardSpec>,
    /// The names answered locally (`[local_zones]`, `[[records]]` and the
    /// hosts files, read).
    pub local: LocalConfig,
    /// Valid settings that deserve a word (`validate` prints them, `run` logs them).
    pub warnings: Vec<Problem>,
}

/// Default listen addresses: loopback only, an unprivileged port.
pub const DEFAULT_LISTEN: [&str; 2] = ["127.0.0.1:5353", "[::1]:5353"];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let source = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &source)
    }

    /// Parses and validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, source: &str) -> Result<Self, Error> {
        // What serde still rejects is the file's shape: TOML syntax and
        // unknown keys, whose messages name the key. Values of the wrong
        // type are left to the checker (see `file`).
        let shape = |e: toml::de::Error| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = if e.message().contains(TOML_DATETIME_KEY) {
                misplaced_datetime(source)
            } else {
                None
            };
            Error::Invalid(vec![Problem {
                location: Location::from_offset(path, source, offset),
                message: message.unwrap_or_else(|| e.message().trim().to_string()),
            }])
        };
        // An unknown key is one problem among the others: it is noted and
        // taken out, and the rest of the file read on (see `unknown`).
        let mut root = toml::de::DeTable::parse(source).map_err(shape)?;
        let mut problems = Vec::new();
        let spec: FileSpec =
            unknown::read(&mut root, path, source, &mut problems).map_err(shape)?;
        let zones: ZoneSpec =
            unknown::read(&mut root, path, source, &mut problems).map_err(shape)?;
        // In the file's order, before the problems with values.
        problems.sort_by_key(|p| (p.location.line, p.location.col));
        Checker {
            path,
            source,
            base: path.parent().unwrap_or(Path::new(".")),
            problems,
        }
        .convert(spec, zones)
    }
}

/// The sections read from the text on their own, in a second pass: the
/// first (`FileSpec`) knows their keys but not their types, so that
/// `file.rs` imports no section (see its `forward` field). Keys of other
/// sections are ignored here; `FileSpec` has checked them.
#[derive(Debug, Default, serde::Deserialize)]
struct ZoneSpec {
    forward: Option<Spanned<Shaped<forward::ForwardTables>>>,
    local_zones: Option<Spanned<Shaped<local::LocalZonesSpec>>>,
    records: Option<Spanned<Shaped<local::RecordTables>>>,
}

/// The key under which toml hands a date-time to serde, as a one-entry map.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

/// A date-time where a section's table belongs (`server = 1979-05-27`)
/// reaches the section's struct as a map with toml's private key, so serde
/// calls it an unknown field. This finds the section and says what it is.
fn misplaced_datetime(source: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(source).ok()?;
    table.iter().find_map(|(key, value)| match value {
        toml::Value::Datetime(d) => Some(format!(
            "{key}: expected a table of settings ([{key}]), got the date-time {d}"
        )),
        toml::Value::Array(items) => {
            let what = match key.as_str() {
                "lists" => "list settings",
                "forward" => "forwarding settings",
                "records" => "records",
                _ => return None,
            };
            items.iter().enumerate().find_map(|(i, item)| {
                item.as_datetime().map(|d| {
                    format!(
                        "{key}[{}]: expected a table of {what} ([[{key}]]), got the date-time {d}",
                        i + 1
                    )
                })
            })
        }
        _ => None,
    })
}

/// Turns a `FileSpec` into a `Config`, collecting problems as it goes.
///
/// Every problem about a value starts with the key's dotted path as the
/// operator would look for it in the file: `upstream.timeout_ms`,
/// `lists[2].refresh`, `server.listen[1]`. A position in an array counts
/// from 1, as one counts the `[[lists]]` tables or the entries of a list, so
/// `lists[2]` is the second `[[lists]]` table. Then comes what the key
/// wants, in words, and what the file has there:
/// `upstream.timeout_ms: expected a whole number of milliseconds, got the string "soon"`.
struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    base: &'a Path,
    problems: Vec<Problem>,
}

/// What an action key accepts, shared by `[block]` and `[[lists]]`.
/// The largest TTL a setting may give: RFC 2181 section 8 reads one of
/// 2^31 or more as zero ("do not cache"), the opposite of what was meant.
const MAX_TTL: i128 = i32::MAX as i128;

const WANT_ACTION: &str = r#"one of "nxdomain", "nodata", "refused" or "sinkhole""#;
const WANT_IPV4: &str = r#"an IPv4 address such as "0.0.0.0""#;
const WANT_IPV6: &str = r#"an IPv6 address such as "::""#;
const WANT_EDE: &str = r#"one of "blocked", "censored" or "filtered""#;

/// The path of key `field` in the `index`th (0-based) `[[lists]]` table.
fn list_key(index: usize, field: &str) -> String {
    format!("lists[{}].{field}", index + 1)
}

impl Checker<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.problems.push(Problem {
            location: Location::from_offset(self.path, self.source, at.span().start),
            message: message.into(),
        });
    }

    fn location<T>(&self, at: &Spanned<T>) -> Location {
        Location::from_offset(self.path, self.source, at.span().start)
    }

    /// Records that `key` holds something other than what it wants.
    fn wrong(&mut self, key: &str, value: &Value, want: &str) {
        let found = value.get_ref().found();
        self.problem(value, format!("{key}: expected {want}, got {found}"));
    }

    /// A string that `parse` understands; anything else, of any type, is
    /// reported as `key: expected WANT, got …`.
    fn parse_with<T>(
        &mut self,
        key: &str,
        value: &Value,
        want: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = match value.get_ref() {
            Raw::String(s) => parse(s),
            _ => None,
        };
        if parsed.is_none() {
            self.wrong(key, value, want);
        }
        parsed
    }

    /// [`Self::parse_with`] for a key that may be absent.
    fn opt_parse<T>(
        &mut self,
        key: &str,
        value: &Option<Value>,
        want: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        value
            .as_ref()
            .and_then(|v| self.parse_with(key, v, want, parse))
    }

    /// Free text: any string.
    fn text(&mut self, key: &str, value: &Option<Value>, want: &str) -> Option<String> {
        self.opt_parse(key, value, want, |s| Some(s.to_owned()))
    }

    /// A whole number of `unit` within `range`, converted to the type the
    /// config holds. `range` must lie within that type's own range.
    fn whole<T: TryFrom<i128>>(
        &mut self,
        key: &str,
        value: &Value,
        unit: &str,
        range: RangeInclusive<i128>,
    ) -> Option<T> {
        let Raw::Integer(n) = *value.get_ref() else {
            self.wrong(key, value, &format!("a whole number of {unit}"));
            return None;
        };
        let converted = T::try_from(n).ok().filter(|_| range.contains(&n));
        if converted.is_none() {
            // TOML integers are 64-bit: a range that reaches that far has no
            // upper bound worth printing.
            let bounds = if *range.end() >= i128::from(i64::MAX) {
                format!("{} or more", range.start())
            } else {
                format!("{} to {}", range.start(), range.end())
            };
            self.problem(
                value,
                format!("{key}: expected a whole number of {unit} ({bounds}), got the number {n}"),
            );
        }
        converted
    }

    /// An array of strings that `parse` understands, each with its place.
    /// A value that is not an array is one problem; each bad element is its
    /// own (`key[2]: …`), and the good ones are still returned.
    fn each<T>(
        &mut self,
        key: &str,
        value: &Value,
        want_array: &str,
        want_item: &str,
        mut parse: impl FnMut(&str) -> Option<T>,
    ) -> Vec<(T, Location)> {
        let Raw::Array(items) = value.get_ref() else {
            self.wrong(key, value, want_array);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(t) =
                self.parse_with(&format!("{key}[{}]", i + 1), item, want_item, &mut parse)
            {
                out.push((t, self.location(item)));
            }
        }
        out
    }

    /// The contents of a section, or its defaults when it is absent or is
    /// not the table (or array of tables) it should be.
    fn section<T: Default + Section>(
        &mut self,
        key: &str,
        section: Option<Spanned<Shaped<T>>>,
    ) -> T {
        let Some(section) = section else {
            return T::default();
        };
        let span = section.span();
        match section.into_inner() {
            Shaped::Right(t) => t,
            Shaped::Wrong(raw) => {
                let want = match T::CONTAINER {
                    Container::Table => format!("a table of settings ([{key}])"),
                    Container::Array => format!("[[{key}]] tables"),
                };
                self.wrong(key, &Spanned::new(span, raw), &want);
                T::default()
            }
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn convert(mut self, spec: FileSpec, zones: ZoneSpec) -> Result<Config, Error> {
        let server = self.section("server", spec.server);
        let upstream = self.section("upstream", spec.upstream);
        let cache = self.section("cache", spec.cache);
        let b = self.section("block", spec.block);
        let list_specs = self.section("lists", spec.lists);
        let allow = self.section("allow", spec.allow);
        let state = self.section("state", spec.state);
        let log = self.section("log", spec.log);
        let hits = self.section("hits", spec.hits);
        let history = self.section("history", spec.history);

        let listen = match &server.listen {
            Some(addrs) => {
                let out: Vec<SocketAddr> = self
                    .each(
                        "server.listen",
                        addrs,
                        r#"a list of addresses to listen on, such as ["127.0.0.1:5353"]"#,
                        r#"an address to listen on, ip:port or [ipv6]:port, such as "127.0.0.1:5353""#,
                        |s| s.parse().ok(),
                    )
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect();
                if matches!(addrs.get_ref(), Raw::Array(a) if a.is_empty()) {
                    self.wrong("server.listen", addrs, "at least one address to listen on");
                }
                out
            }
            None => DEFAULT_LISTEN
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };
        let server_config = self.server_settings(&server);
        let tls = self.tls_settings(&server);

        let run_as = self.run_as(&server.user, &server.group);

        let upstream = self.upstream(&upstream);
        let forward = self.forward(zones.forward, &upstream);
        let local = self.local(zones.local_zones, zones.records, &forward);

        let cache = self.cache_settings(&cache);

        let defaults = BlockConfig::default();
        let block = BlockConfig {
            action: self
                .opt_parse("block.action", &b.action, WANT_ACTION, Action::parse)
                .unwrap_or(defaults.action),
            sinkhole_ipv4: self
                .opt_parse("block.sinkhole_ipv4", &b.sinkhole_ipv4, WANT_IPV4, |s| {
                    s.parse().ok()
                })
                .unwrap_or(defaults.sinkhole_ipv4),
            sinkhole_ipv6: self
                .opt_parse("block.sinkhole_ipv6", &b.sinkhole_ipv6, WANT_IPV6, |s| {
                    s.parse().ok()
                })
                .unwrap_or(defaults.sinkhole_ipv6),
            ttl: b
                .ttl
                .as_ref()
                .and_then(|t| self.whole("block.ttl", t, "seconds", 0..=MAX_TTL))
                .unwrap_or(defaults.ttl),
            ede: self
                .opt_parse("block.ede", &b.ede, WANT_EDE, EdeCode::parse)
                .unwrap_or(defaults.ede),
            canary_interval: self
                .opt_parse(
                    "block.canary_interval",
                    &b.canary_interval,
                    r#"a duration such as "60s" or "5m" (not zero)"#,
                    |s| {
                        humantime::parse_duration(s.trim())
                            .ok()
                            .filter(|d| !d.is_zero())
                    },
                )
                .unwrap_or(defaults.canary_interval),
        };

        let state_dir = match self.text(
            "state.dir",
            &state.dir,
            r#"a directory path such as "/var/lib/embargo""#,
        ) {
            Some(d) => self.resolve(&d),
            None => self.base.join("embargo-state"),
        };
        let log = self.log(&log, &state_dir);
        let hits = self.hits(&hits);
        let history = self.history(&history, &state_dir);
        let dnstap = self.dnstap(spec.dnstap);
        let alerts = self.alerts(spec.alerts, hits.max_clients > 0);

        let mut lists: Vec<ListSpec> = Vec::new();
        for (i, l) in list_specs.into_iter().enumerate() {
            let span = l.span();
            let l = match l.into_inner() {
                Shaped::Right(l) => l,
                Shaped::Wrong(raw) => {
                    self.wrong(
                        &format!("lists[{}]", i + 1),
                        &Spanned::new(span, raw),
                        "a table of list settings ([[lists]])",
                    );
                    continue;
                }
            };
            let list = self.list(i, span, &l, &state_dir, &block, &lists);
            lists.push(list);
        }
        if lists.len() > 1000 {
            self.problems.push(Problem {
                location: Location::from_offset(self.path, self.source, 0),
                message: "more than 1000 lists".into(),
            });
        }

        let allow_domains = match &allow.domains {
            Some(d) => self
                .each(
                    "allow.domains",
                    d,
                    r#"a list of domain names, such as ["example.org"]"#,
                    r#"a domain name such as "example.org""#,
                    |s| Some(s.to_owned()),
                )
                .into_iter()
                .map(|(name, location)| AllowDomain { name, location })
                .collect(),
            None => Vec::new(),
        };
        let allow_files = match &allow.files {
            Some(f) => self
                .each(
                    "allow.files",
                    f,
                    r#"a list of file paths, such as ["allow.txt"]"#,
                    r#"a file path such as "allow.txt""#,
                    |s| Some(s.to_owned()),
                )
                .into_iter()
                .map(|(f, _)| self.resolve(&f))
                .collect(),
            None => Vec::new(),
        };

        let mut access = self.access_settings(spec.access, spec.rate_limit);
        let http = self.http_settings(spec.http, &mut access.warnings);
        access
            .warnings
            .extend(local::shadowed_defaults(&local, &forward));
        let groups = self.groups(spec.groups, &lists);

        if !self.problems.is_empty() {
            return Err(Error::Invalid(self.problems));
        }
        Ok(Config {
            access: access.access,
            rate_limit: access.rate_limit,
            warnings: access.warnings,
            groups,
            http,
            forward,
            local,
            path: self.path.to_path_buf(),
            state_dir,
            listen,
            run_as,
            server: server_config,
            tls,
            upstream,
            cache,
            block,
            lists,
            allow_domains,
            allow_files,
            log,
            hits,
            history,
            dnstap,
            alerts,
        })
    }

    /// The `index`th (0-based) `[[lists]]` table, whose span is `span`.
    /// Every key is checked even when another is missing or wrong, so one
    /// pass reports them all; `earlier` are the lists before it, for the
    /// duplicate-name check.
    fn list(
        &mut self,
        index: usize,
        span: std::ops::Range<usize>,
        l: &file::ListFileSpec,
        state_dir: &Path,
        block: &BlockConfig,
        earlier: &[ListSpec],
    ) -> ListSpec {
        let key = |field| list_key(index, field);
        let table: Value = Spanned::new(span, Raw::Table);
        let missing: Vec<&str> = [("name", &l.name), ("source", &l.source)]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        if !missing.is_empty() {
            self.problem(
                &table,
                format!(
                    "lists[{}]: missing {}: every list needs a name and a source",
                    index + 1,
                    missing.join(" and ")
                ),
            );
        }
        let name = l
            .name
            .as_ref()
            .and_then(|v| {
                self.parse_with(
                    &key("name"),
                    v,
                    r#"a list name without spaces, such as "seized-domains""#,
                    |s| {
                        let s = s.trim();
                        (!s.is_empty() && !s.contains(char::is_whitespace)).then(|| s.to_owned())
                    },
                )
            })
            .unwrap_or_default();
        if let Some(v) = &l.name
            && !name.is_empty()
            && earlier.iter().any(|o| o.name == name)
        {
            self.problem(v, format!("{}: duplicate list name {name:?}", key("name")));
        }
        let format = match &l.format {
            Some(f) if f.get_ref() == &Raw::String("auto".into()) => None,
            f => self.opt_parse(
                &key("format"),
                f,
                r#"one of "auto", "domains", "hosts", "adblock", "rpz", "ips" or "ofac-sdn""#,
                Format::parse,
            ),
        };
        let mut tsig = self.opt_parse(
            &key("tsig"),
            &l.tsig,
            "a TSIG key, [hmac-sha256|hmac-sha384|hmac-sha512:]name:base64-secret",
            Tsig::parse,
        );
        let source_value = l.source.as_ref().unwrap_or(&table);
        let raw = self
            .text(
                &key("source"),
                &l.source,
                r#"a file path or URL, such as "lists/seized.txt" or "https://example.org/list.txt""#,
            )
            .unwrap_or_default();
        let source = if raw.is_empty() {
            // Missing or not a string: already reported.
            Source::File(PathBuf::new())
        } else if raw.starts_with("http://") || raw.starts_with("https://") {
            Source::Http(raw)
        } else if raw.starts_with("axfr://") {
            match XfrSource::parse(&raw) {
                Some(mut x) => {
                    x.tsig = tsig.take();
                    if format != Some(Format::Rpz) {
                        self.problem(
                            source_value,
                            format!(
                                "{}: a zone transfer source needs format = \"rpz\"",
                                key("source")
                            ),
                        );
                    }
                    Source::Axfr(x)
                }
                None => {
                    self.wrong(
                        &key("source"),
                        source_value,
                        "a zone transfer source such as \"axfr://ip:port/zone.name\"",
                    );
                    Source::File(PathBuf::new())
                }
            }
        } else if raw.contains("://") {
            self.wrong(
                &key("source"),
                source_value,
                "a file path, or a source starting http://, https:// or axfr://",
            );
            Source::File(PathBuf::new())
        } else {
            Source::File(self.resolve(&raw))
        };
        if let Some(t) = &l.tsig
            && !matches!(source, Source::Axfr(_))
        {
            self.problem(
                t,
                format!("{}: tsig applies only to axfr:// sources", key("tsig")),
            );
        }
        let path = match &source {
            Source::File(p) => p.clone(),
            Source::Http(_) | Source::Axfr(_) => state_dir
                .join("lists")
                .join(format!("{}.list", file_safe(&name))),
        };
        let fetch = self.fetch_settings(index, l);
        let guards = self.list_guards(
            index,
            &list::GuardKeys {
                signature: &l.signature,
                public_key: &l.public_key,
                signature_url: &l.signature_url,
                expires: &l.expires,
                canary: &l.canary,
            },
            &source,
        );
        let provenance = Provenance {
            authority: self
                .text(
                    &key("authority"),
                    &l.authority,
                    r#"who ordered or publishes the block, such as "US Department of Justice""#,
                )
                .unwrap_or_default(),
            reason: self
                .text(
                    &key("reason"),
                    &l.reason,
                    r#"why the names are blocked, such as "Seized by court order""#,
                )
                .unwrap_or_default(),
            reference: self
                .text(
                    &key("reference"),
                    &l.reference,
                    r#"a URL or citation such as "https://example.org/press-release""#,
                )
                .unwrap_or_default(),
        };
        ListSpec {
            name,
            source,
            path,
            fetch,
            format,
            provenance,
            action: self
                .opt_parse(&key("action"), &l.action, WANT_ACTION, Action::parse)
                .unwrap_or(block.action),
            sinkhole_ipv4: self
                .opt_parse(&key("sinkhole_ipv4"), &l.sinkhole_ipv4, WANT_IPV4, |s| {
                    s.parse().ok()
                })
                .unwrap_or(block.sinkhole_ipv4),
            sinkhole_ipv6: self
                .opt_parse(&key("sinkhole_ipv6"), &l.sinkhole_ipv6, WANT_IPV6, |s| {
                    s.parse().ok()
                })
                .unwrap_or(block.sinkhole_ipv6),
            ttl: block.ttl,
            ede: self
                .opt_parse(&key("ede"), &l.ede, WANT_EDE, EdeCode::parse)
                .unwrap_or(block.ede),
            inspect_cname: match l.inspect_cname.as_ref().map(|v| (v, v.get_ref())) {
                None => true,
                Some((_, Raw::Boolean(b))) => *b,
                Some((v, _)) => {
                    self.wrong(&key("inspect_cname"), v, "true or false");
                    true
                }
            },
            inspect_answers: match l.inspect_answers.as_ref().map(|v| (v, v.get_ref())) {
                None => true,
                Some((_, Raw::Boolean(b))) => *b,
                Some((v, _)) => {
                    self.wrong(&key("inspect_answers"), v, "true or false");
                    true
                }
            },
            signature: guards.signature,
            expires: guards.expires,
            canary: guards.canary,
            location: self.location(l.name.as_ref().unwrap_or(&table)),
        }
    }

    /// `refresh`, `timeout`, `max_size_mb` and `max_shrink` of the `index`th list.
    fn fetch_settings(&mut self, index: usize, l: &file::ListFileSpec) -> Fetch {
        let key = |field| list_key(index, field);
        let d = Fetch::default();
        let duration = |s: &str| humantime::parse_duration(s).ok().filter(|d| !d.is_zero());
        let refresh = self
            .opt_parse(
                &key("refresh"),
                &l.refresh,
                r#"a duration such as "6h" or "30m""#,
                duration,
            )
            .unwrap_or(d.refresh);
        let timeout = self
            .opt_parse(
                &key("timeout"),
                &l.timeout,
                r#"a duration such as "60s""#,
                duration,
            )
            .unwrap_or(d.timeout);
        let max_size = l
            .max_size_mb
            .as_ref()
            .and_then(|v| {
                self.whole::<u64>(
                    &key("max_size_mb"),
                    v,
                    "megabytes",
                    1..=i128::from(u64::MAX),
                )
            })
            .map_or(d.max_size, |mb| mb.saturating_mul(1024 * 1024));
        let max_shrink = match &l.max_shrink {
            None => d.max_shrink,
            Some(v) => {
                let parsed = match v.get_ref() {
                    Raw::Float(f) => Some(*f),
                    Raw::Integer(i) => Some(*i as f64 / 100.0),
                    Raw::String(s) => s
                        .trim()
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse::<f64>().ok())
                        .map(|p| p / 100.0),
                    _ => None,
                };
                match parsed.filter(|f| (0.0..=1.0).contains(f)) {
                    Some(f) => f,
                    None => {
                        self.wrong(
                            &key("max_shrink"),
                            v,
                            r#"a percentage such as "50%" (or a fraction from 0.0 to 1.0)"#,
                        );
                        d.max_shrink
                    }
                }
            }
        };
        Fetch {
            refresh,
            timeout,
            max_size,
            max_shrink,
        }
    }
}

/// A list name made safe as a file name in the state directory.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
