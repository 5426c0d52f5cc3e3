//! Configuration: the TOML file (`file::FileSpec`, serde, spans kept) is
//! parsed, then converted into the typed [`Config`] the rest of embargo uses.
//! Conversion collects every problem with its file, line and column before
//! failing, so an operator fixes a config in one pass.
//!
//! Relative paths (list sources, allow files) are resolved against the
//! directory of the config file, not the working directory, so a config
//! works wherever the server is started from.

mod access;
mod cache;
mod dnstap;
mod error;
mod file;
mod groups;
mod http;
mod list;
mod observe;
mod run_as;
mod server;
mod tls;
mod upstream;

pub use cache::CacheConfig;
pub use dnstap::{DnstapConfig, DnstapTarget};
pub use error::{Error, Location, Problem};
pub use file::FileSpec;
pub use groups::{GroupSpec, MAX_GROUPS};
pub use http::{DEFAULT_HTTP_LISTEN, HttpConfig, TokenSource};
pub use list::{Fetch, ListSpec, Provenance, Signed, Source, Tsig, XfrSource};
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

use file::{Container, Raw, Section, Shaped, Value};

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
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            action: Action::Nxdomain,
            sinkhole_ipv4: Ipv4Addr::UNSPECIFIED,
            sinkhole_ipv6: Ipv6Addr::UNSPECIFIED,
            ttl: 300,
            ede: EdeCode::Blocked,
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
    /// dnstap output (`[dnstap]`), off when absent.
    pub dnstap: Option<DnstapConfig>,
    /// Who may ask (`[access]`).
    pub access: crate::access::Access,
    /// How fast (`[rate_limit]`).
    pub rate_limit: crate::access::RateLimit,
    /// Which lists apply to which clients (`[[groups]]`), in config order.
    pub groups: Vec<GroupSpec>,
    /// Metrics, health checks and the JSON API (`[http]`).
    pub http: HttpConfig,
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
        let spec: FileSpec = toml::from_str(source).map_err(|e| {
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
        })?;
        Checker {
            path,
            source,
            base: path.parent().unwrap_or(Path::new(".")),
            problems: Vec::new(),
        }
        .convert(spec)
    }
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
        toml::Value::Array(items) if key == "lists" => {
            items.iter().enumerate().find_map(|(i, item)| {
                item.as_datetime().map(|d| {
                    format!(
                        "lists[{}]: expected a table of list settings ([[lists]]), got the date-time {d}",
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

    fn convert(mut self, spec: FileSpec) -> Result<Config, Error> {
        let server = self.section("server", spec.server);
        let upstream = self.section("upstream", spec.upstream);
        let cache = self.section("cache", spec.cache);
        let b = self.section("block", spec.block);
        let list_specs = self.section("lists", spec.lists);
        let allow = self.section("allow", spec.allow);
        let state = self.section("state", spec.state);
        let log = self.section("log", spec.log);
        let hits = self.section("hits", spec.hits);

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
        let dnstap = self.dnstap(spec.dnstap);

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
            dnstap,
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
                r#"one of "auto", "domains", "hosts", "adblock", "rpz" or "ofac-sdn""#,
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
        let guards = self.list_guards(index, l, &source);
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
            signature: guards.signature,
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
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(Path::new("/etc/embargo/test.toml"), text)
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("config dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let c = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!c.listen.is_empty());
                for l in &c.lists {
                    if let Source::File(p) = &l.source {
                        assert!(
                            p.exists(),
                            "{} names missing {}",
                            path.display(),
                            p.display()
                        );
                    }
                }
                seen += 1;
            }
        }
        assert!(
            seen >= 2,
            "expected the shipped configs in {}",
            dir.display()
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let err =
            parse("[server]\nlisten = [\"127.0.0.1:53\"]\n\n[block]\nactoin = \"nxdomain\"\n")
                .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("/etc/embargo/test.toml:5:"), "{text}");
        assert!(text.contains("actoin"), "{text}");
        let err = parse("[[lists]]\nname = \"a\"\nsource = \"a.txt\"\nbogus = 1\n")
            .expect_err("unknown list key");
        assert!(err.to_string().contains(":4:"), "{err}");
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_location() {
        let err = parse(
            "[server]\nlisten = [\"nonsense\"]\n[upstream]\nservers = [\"dns.example:53\"]\n[block]\naction = \"drop\"\nede = \"angry\"\n",
        )
        .expect_err("invalid");
        let Error::Invalid(problems) = err else {
            panic!("not Invalid")
        };
        let lines: Vec<usize> = problems.iter().map(|p| p.location.line).collect();
        assert_eq!(lines, vec![2, 4, 6, 7], "{problems:?}");
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse(
            "[upstream]\nservers = [\"127.0.0.1:5300\", \"tcp://[::1]:53\", \"10.0.0.1\"]\n[block]\naction = \"sinkhole\"\nttl = 60\n[[lists]]\nname = \"l\"\nsource = \"lists/l.txt\"\nede = \"censored\"\naction = \"refused\"\n[[lists]]\nname = \"m\"\nsource = \"/abs/m.txt\"\nformat = \"hosts\"\n",
        )
        .expect("valid");
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.upstream.servers[1].transport, Transport::Tcp);
        assert_eq!(c.upstream.servers[2].addr.port(), 53);
        assert_eq!(c.upstream.strategy, Strategy::Failover);
        assert_eq!(c.cache, CacheConfig::default());
        assert_eq!(
            c.lists[0].source,
            Source::File("/etc/embargo/lists/l.txt".into())
        );
        assert_eq!(c.state_dir, Path::new("/etc/embargo/embargo-state"));
        assert_eq!(c.lists[0].action, Action::Refused);
        assert_eq!(c.lists[0].ede, EdeCode::Censored);
        assert_eq!(c.lists[0].ttl, 60);
        assert_eq!(c.lists[1].action, Action::Sinkhole);
        assert_eq!(c.lists[1].format, Some(Format::Hosts));
    }

    #[test]
    fn remote_lists_live_in_the_state_dir_with_their_fetch_settings() {
        let c = parse(
            "[state]\ndir = \"/var/lib/embargo\"\n[[lists]]\nname = \"ofac/sdn\"\nsource = \"https://example.org/sdn.xml\"\nrefresh = \"1h 30m\"\nmax_size_mb = 8\nmax_shrink = \"20%\"\n",
        )
        .expect("valid");
        let l = &c.lists[0];
        assert_eq!(l.source, Source::Http("https://example.org/sdn.xml".into()));
        assert_eq!(l.path, Path::new("/var/lib/embargo/lists/ofac_sdn.list"));
        assert_eq!(l.fetch.refresh, Duration::from_secs(5400));
        assert_eq!(l.fetch.max_size, 8 * 1024 * 1024);
        assert!((l.fetch.max_shrink - 0.2).abs() < 1e-9);
        let err = parse("[[lists]]\nname = \"a\"\nsource = \"ftp://x/y\"\nrefresh = \"soon\"\nmax_shrink = \"150%\"\n")
            .expect_err("invalid");
        let Error::Invalid(problems) = err else {
            panic!("not Invalid")
        };
        assert_eq!(
            problems.iter().map(|p| p.location.line).collect::<Vec<_>>(),
            [3, 4, 5],
            "{problems:?}"
        );
    }

    #[test]
    fn zone_transfer_sources_take_a_tsig_key_and_need_rpz() {
        let c = parse("[[lists]]\nname = \"feed\"\nsource = \"axfr://127.0.0.1:5300/rpz.test\"\nformat = \"rpz\"\ntsig = \"hmac-sha256:k:c2VjcmV0\"\n")
            .expect("valid");
        let Source::Axfr(x) = &c.lists[0].source else {
            panic!("axfr")
        };
        assert_eq!(x.tsig.as_ref().map(|t| t.name.as_str()), Some("k"));
        assert_eq!(
            c.lists[0].path,
            Path::new("/etc/embargo/embargo-state/lists/feed.list")
        );
        let err = parse("[[lists]]\nname = \"a\"\nsource = \"axfr://127.0.0.1/z\"\ntsig = \"md5:k:x\"\n[[lists]]\nname = \"b\"\nsource = \"b.txt\"\ntsig = \"k:c2VjcmV0\"\n")
            .expect_err("invalid");
        let Error::Invalid(problems) = err else {
            panic!("not Invalid")
        };
        assert_eq!(
            problems.iter().map(|p| p.location.line).collect::<Vec<_>>(),
            [4, 3, 8],
            "{problems:?}"
        );
    }

    #[test]
    fn duplicate_list_names_are_an_error() {
        let err = parse(
            "[[lists]]\nname = \"a\"\nsource = \"x\"\n[[lists]]\nname = \"a\"\nsource = \"y\"\n",
        )
        .expect_err("dup");
        assert!(err.to_string().contains(":5:"), "{err}");
    }

    /// The problems in `text`, read as `bad.toml`.
    fn problems(text: &str) -> Vec<Problem> {
        match Config::parse(Path::new("bad.toml"), text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(Error::Invalid(p)) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// Issue 9: a value of the wrong type names the key, says what is
    /// wanted in words and what was found, and points at the value.
    #[test]
    fn r9_wrong_type_names_the_key_in_the_users_words() {
        let err = Config::parse(
            Path::new("bad.toml"),
            "[upstream]\nservers = [\"127.0.0.1:53\"]\ntimeout_ms = \"soon\"\n",
        )
        .expect_err("wrong type");
        assert_eq!(
            err.to_string(),
            "bad.toml:3:14: upstream.timeout_ms: expected a whole number of milliseconds, got the string \"soon\""
        );
    }

    /// Every key the file accepts: its section (`lists` for a `[[lists]]`
    /// key), its name, a value of the wrong type, what the message says was
    /// found, and words from what it says the key wants.
    #[rustfmt::skip]
    const KEYS: &[(&str, &str, &str, &str, &str)] = &[
        ("server",   "listen",        r#""127.0.0.1:53""#,     r#"the string "127.0.0.1:53""#, "a list of addresses"),
        ("server",   "user",          "65534",                 "the number 65534",             "a user name"),
        ("server",   "group",         "[]",                    "an empty array",               "a group name"),
        ("server",   "workers",       r#""auto""#,             r#"the string "auto""#,         "a whole number of UDP worker threads"),
        ("server",   "tcp_max_connections", "1.5",             "the number 1.5",               "a whole number of connections"),
        ("server",   "tcp_idle_timeout", "10",                 "the number 10",                r#"a duration such as "10s""#),
        ("server",   "tcp_message_timeout", "true",            "true",                         r#"a duration such as "10s""#),
        ("server",   "tcp_max_inflight", r#""32""#,            r#"the string "32""#,           "a whole number of queries in flight per connection"),
        ("server",   "max_forwards",  "[10000]",               "an array",                     "a whole number of forwarded queries in flight"),
        ("server",   "tls_listen",    r#""0.0.0.0:853""#,      r#"the string "0.0.0.0:853""#,  "a list of addresses to listen on"),
        ("server",   "https_listen",  "443",                   "the number 443",               "a list of addresses to listen on"),
        ("server",   "quic_listen",   "true",                  "true",                         "a list of addresses to listen on"),
        ("server",   "certificate",   "[]",                    "an empty array",               "a PEM file path"),
        ("server",   "private_key",   "1",                     "the number 1",                 "a PEM file path"),
        ("server",   "https_path",    "[\"/dns-query\"]",       "an array",                     "an absolute URL path"),
        ("server",   "tls_max_connections", r#""1k""#,         r#"the string "1k""#,           "a whole number of connections"),
        ("server",   "tls_handshake_timeout", "5",             "the number 5",                 r#"a duration such as "10s""#),
        ("server",   "tls_idle_timeout", "30.0",               "the number 30.0",              r#"a duration such as "10s""#),
        ("server",   "tls_max_streams", "false",               "false",                        "a whole number of queries in flight per connection"),
        ("server",   "https_max_body", r#""64KiB""#,           r#"the string "64KiB""#,        "a whole number of bytes"),
        ("upstream", "servers",       r#""9.9.9.9:53""#,       r#"the string "9.9.9.9:53""#,   "a list of resolver addresses"),
        ("upstream", "timeout_ms",    r#""soon""#,             r#"the string "soon""#,         "a whole number of milliseconds"),
        ("upstream", "strategy",      "1",                     "the number 1",                 r#"one of "failover", "fastest" or "round_robin""#),
        ("upstream", "ca_file",       "[]",                    "an empty array",               "a PEM file path"),
        ("upstream", "udp_sockets",   r#""many""#,             r#"the string "many""#,         "a whole number of sockets"),
        ("cache",    "size",          r#""big""#,              r#"the string "big""#,          "a whole number of answers to cache"),
        ("cache",    "max_bytes",     r#""64MiB""#,            r#"the string "64MiB""#,        "a whole number of bytes"),
        ("cache",    "min_ttl",       r#""1m""#,               r#"the string "1m""#,           "a whole number of seconds"),
        ("cache",    "max_ttl",       "86400.0",               "the number 86400.0",           "a whole number of seconds"),
        ("cache",    "negative_ttl_max", "[3600]",             "an array",                     "a whole number of seconds"),
        ("cache",    "stale_max",     "86400",                 "the number 86400",             r#"a duration such as "1d""#),
        ("cache",    "stale_client_timeout_ms", r#""400ms""#,   r#"the string "400ms""#,        "a whole number of milliseconds"),
        ("cache",    "servfail_ttl",  r#""5s""#,               r#"the string "5s""#,           "a whole number of seconds"),
        ("cache",    "prefetch",      r#""yes""#,              r#"the string "yes""#,          "true or false"),
        ("block",    "action",        "5",                     "the number 5",                 r#"one of "nxdomain", "nodata", "refused" or "sinkhole""#),
        ("block",    "sinkhole_ipv4", "0",                     "the number 0",                 "an IPv4 address"),
        ("block",    "sinkhole_ipv6", r#"["::"]"#,             "an array",                     "an IPv6 address"),
        ("block",    "ttl",           r#""5m""#,               r#"the string "5m""#,           "a whole number of seconds"),
        ("block",    "ede",           "16",                    "the number 16",                r#"one of "blocked", "censored" or "filtered""#),
        ("state",    "dir",           "true",                  "true",                         "a directory path"),
        ("lists",    "name",          "7",                     "the number 7",                 "a list name"),
        ("lists",    "source",        r#"{ path = "a.txt" }"#, "a table",                      "a file path or URL"),
        ("lists",    "format",        "false",                 "false",                        r#"one of "auto", "domains""#),
        ("lists",    "authority",     "1",                     "the number 1",                 "who ordered or publishes the block"),
        ("lists",    "reason",        "[]",                    "an empty array",               "why the names are blocked"),
        ("lists",    "reference",     "2023-10-18",            "the date-time 2023-10-18",     "a URL or citation"),
        ("lists",    "action",        "1.5",                   "the number 1.5",               r#"one of "nxdomain""#),
        ("lists",    "sinkhole_ipv4", "127",                   "the number 127",               "an IPv4 address"),
        ("lists",    "sinkhole_ipv6", "true",                  "true",                         "an IPv6 address"),
        ("lists",    "ede",           "15",                    "the number 15",                r#"one of "blocked""#),
        ("lists",    "refresh",       "3600",                  "the number 3600",              r#"a duration such as "6h""#),
        ("lists",    "timeout",       "60",                    "the number 60",                r#"a duration such as "60s""#),
        ("lists",    "max_size_mb",   r#""8MB""#,              r#"the string "8MB""#,          "a whole number of megabytes"),
        ("lists",    "max_shrink",    "true",                  "true",                         r#"a percentage such as "50%""#),
        ("lists",    "tsig",          "42",                    "the number 42",                "a TSIG key"),
        ("lists",    "inspect_cname", r#""yes""#,              r#"the string "yes""#,          "true or false"),
        ("groups",   "name",          "1",                     "the number 1",                 "a group name"),
        ("groups",   "clients",       r#""10.0.0.0/8""#,       r#"the string "10.0.0.0/8""#,   "a list of networks"),
        ("groups",   "client_ids",    r#""laptop-7""#,         r#"the string "laptop-7""#,     "a list of client IDs"),
        ("groups",   "lists",         r#""seized""#,           r#"the string "seized""#,       "a list of list names"),
        ("groups",   "action",        "true",                  "true",                         r#"one of "nxdomain""#),
        ("allow",    "domains",       r#""example.org""#,      r#"the string "example.org""#,  "a list of domain names"),
        ("allow",    "files",         r#""allow.txt""#,        r#"the string "allow.txt""#,    "a list of file paths"),
        ("log",      "queries",       "true",                  "true",                         r#"one of "off", "blocked" or "all""#),
        ("log",      "format",        r#""yaml""#,             r#"the string "yaml""#,         r#"one of "json" or "text""#),
        ("log",      "path",          "1",                     "the number 1",                 r#"a file path such as "/var/log/embargo/queries.log", or "-""#),
        ("log",      "max_size_mb",   r#""64MB""#,             r#"the string "64MB""#,         "a whole number of megabytes"),
        ("log",      "keep",          "2.5",                   "the number 2.5",               "a whole number of rotated files to keep"),
        ("log",      "client_ip",     r#""anonymous""#,        r#"the string "anonymous""#,    r#"one of "full", "truncate" or "hash""#),
        ("log",      "queue",         r#"["big"]"#,            "an array",                     "a whole number of records"),
        ("dnstap",   "socket",        "true",                  "true",                         "a unix socket path"),
        ("dnstap",   "tcp",           "6000",                  "the number 6000",              "a collector address"),
        ("dnstap",   "identity",      "1",                     "the number 1",                 "the identity to send"),
        ("dnstap",   "version",       "[]",                    "an empty array",               "the version to send"),
        ("dnstap",   "queue_kb",      r#""1MB""#,              r#"the string "1MB""#,          "a whole number of KiB"),
        ("hits",     "max_clients",   r#""all""#,              r#"the string "all""#,          "a whole number of clients per list"),
        ("access",   "allow",         r#""10.0.0.0/8""#,       r#"the string "10.0.0.0/8""#,   "a list of networks"),
        ("access",   "deny",          "true",                  "true",                         "a list of networks"),
        ("access",   "action",        "1",                     "the number 1",                 r#"one of "refuse" or "drop""#),
        ("rate_limit", "responses_per_second", r#""10/s""#,    r#"the string "10/s""#,         "a whole number of answers per second"),
        ("rate_limit", "window",      r#""15s""#,              r#"the string "15s""#,          "a whole number of seconds"),
        ("rate_limit", "slip",        "true",                  "true",                         "a whole number of limited answers per truncated one"),
        ("rate_limit", "ipv4_prefix", r#""/24""#,              r#"the string "/24""#,          "a whole number of bits"),
        ("rate_limit", "ipv6_prefix", "56.0",                  "the number 56.0",              "a whole number of bits"),
        ("rate_limit", "exempt",      r#""127.0.0.1""#,        r#"the string "127.0.0.1""#,    "a list of networks"),
        ("rate_limit", "table_size",  r#""64k""#,              r#"the string "64k""#,          "a whole number of client prefixes to track"),
        ("http",     "listen",        "8053",                  "the number 8053",              "an address to listen on"),
        ("http",     "token",         "12345",                 "the number 12345",             "a secret of at least 16 characters"),
        ("http",     "token_file",    "true",                  "true",                         "a file path"),
        ("http",     "max_connections", r#""64""#,             r#"the string "64""#,           "a whole number of connections"),
        ("http",     "timeout",       "10",                    "the number 10",                r#"a duration such as "10s""#),
    ];

    /// Serde's words, which the operator never wrote and should never read.
    const SERDE_WORDS: &[&str] = &[
        "u64",
        "u32",
        "usize",
        "i64",
        "sequence",
        "invalid type",
        "struct",
        "Spec",
        "map",
    ];

    #[test]
    fn every_key_reports_a_wrong_type_with_its_path_and_place() {
        for &(section, key, value, found, want) in KEYS {
            let path = if matches!(section, "lists" | "groups") {
                format!("{section}[1].{key}")
            } else {
                format!("{section}.{key}")
            };
            // Each key sits on line 4, after lines that set other keys, so
            // the line number proves the problem points at the key's own line.
            let text = if section == "lists" {
                let (a, b) = match key {
                    "name" => ("source = \"a.txt\"", "format = \"auto\""),
                    "source" => ("name = \"a\"", "format = \"auto\""),
                    _ => ("name = \"a\"", "source = \"a.txt\""),
                };
                format!("[[lists]]\n{a}\n{b}\n{key} = {value}\n")
            } else if section == "groups" {
                let (a, b) = match key {
                    "name" => ("clients = [\"10.0.0.0/8\"]", "action = \"nxdomain\""),
                    "clients" => ("name = \"g\"", "action = \"nxdomain\""),
                    _ => ("name = \"g\"", "clients = [\"10.0.0.0/8\"]"),
                };
                format!("[[groups]]\n{a}\n{b}\n{key} = {value}\n")
            } else {
                format!("# a config\n\n[{section}]\n{key} = {value}\n")
            };
            let line = 4;
            let col = key.len() + " = ".len() + 1;
            let problems = problems(&text);
            let p = problems
                .iter()
                .find(|p| p.message.starts_with(&format!("{path}: ")))
                .unwrap_or_else(|| panic!("{path}: no problem names it in {problems:#?}"));
            let shown = p.to_string();
            let expected_start = format!("bad.toml:{line}:{col}: {path}: expected ");
            assert!(
                shown.starts_with(&expected_start),
                "{shown}\nwant {expected_start}…"
            );
            assert!(shown.contains(want), "{shown}\nwant words {want:?}");
            assert!(
                shown.ends_with(&format!(", got {found}")),
                "{shown}\nwant found {found}"
            );
            for word in SERDE_WORDS {
                assert!(!shown.contains(word), "{shown} speaks serde: {word}");
            }
        }
    }

    /// The table above covers every key the shipped configs use, so a key
    /// added to them cannot escape the wrong-type test.
    #[test]
    fn every_shipped_key_is_in_the_wrong_type_table() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("config dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).expect("read");
                let table: toml::Table = toml::from_str(&text).expect("toml");
                for (section, value) in &table {
                    let tables = match value {
                        toml::Value::Table(t) => vec![t],
                        toml::Value::Array(a) => a.iter().filter_map(|v| v.as_table()).collect(),
                        other => panic!("{}: {section} = {other}", path.display()),
                    };
                    for t in tables {
                        for key in t.keys() {
                            paths.push((section.clone(), key.clone()));
                        }
                    }
                }
            }
        }
        assert!(paths.len() > 20, "{paths:?}");
        for (section, key) in paths {
            assert!(
                KEYS.iter().any(|k| k.0 == section && k.1 == key),
                "{section}.{key} is shipped but not in KEYS"
            );
        }
    }

    #[test]
    fn array_elements_of_the_wrong_type_name_their_position() {
        let p = problems(
            "[server]\nlisten = [\"127.0.0.1:53\", 53]\n[upstream]\nservers = [\n  \"9.9.9.9:53\",\n  true,\n]\n[allow]\ndomains = [\"ok.example\", [\"nested.example\"]]\nfiles = [{ path = \"a\" }]\n",
        );
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "bad.toml:2:27: server.listen[2]: expected an address to listen on, ip:port or [ipv6]:port, such as \"127.0.0.1:5353\", got the number 53",
                "bad.toml:6:3: upstream.servers[2]: expected a resolver address: ip:port, [ipv6]:port, tcp://ip:port, tls://ip:port#server.name or https://ip:port/dns-query#server.name (hostnames need a bootstrap resolver and are not supported), got true",
                "bad.toml:9:26: allow.domains[2]: expected a domain name such as \"example.org\", got an array",
                "bad.toml:10:10: allow.files[1]: expected a file path such as \"allow.txt\", got a table",
            ]
        );
    }

    /// Issue 16: RFC 2181 section 8 reads a TTL of 2^31 or more as zero, so a
    /// `[block] ttl` that large would tell resolvers not to cache the block.
    #[test]
    fn r16_block_ttl_stops_below_2_to_the_31() {
        let p = problems("[upstream]\nservers = [\"127.0.0.1:53\"]\n[block]\nttl = 2147483648\n");
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "bad.toml:4:7: block.ttl: expected a whole number of seconds (0 to 2147483647), got the number 2147483648"
            ]
        );
        let ok = Config::parse(Path::new("ok.toml"), "[block]\nttl = 2147483647\n").expect("valid");
        assert_eq!(ok.block.ttl, 2_147_483_647);
    }

    #[test]
    fn numbers_out_of_range_say_the_range() {
        let p = problems(
            "[upstream]\ntimeout_ms = 0\n[cache]\nsize = -5\n[block]\nttl = -1\n[[lists]]\nname = \"a\"\nsource = \"a.txt\"\nmax_size_mb = 0\n[[lists]]\nname = \"b\"\nsource = \"b.txt\"\nmax_size_mb = -1\n[[lists]]\nname = \"c\"\nsource = \"c.txt\"\nmax_shrink = -10\n",
        );
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "bad.toml:2:14: upstream.timeout_ms: expected a whole number of milliseconds (1 to 60000), got the number 0",
                "bad.toml:4:8: cache.size: expected a whole number of answers to cache (0 to 10000000), got the number -5",
                "bad.toml:6:7: block.ttl: expected a whole number of seconds (0 to 2147483647), got the number -1",
                "bad.toml:10:15: lists[1].max_size_mb: expected a whole number of megabytes (1 or more), got the number 0",
                "bad.toml:14:15: lists[2].max_size_mb: expected a whole number of megabytes (1 or more), got the number -1",
                "bad.toml:18:14: lists[3].max_shrink: expected a percentage such as \"50%\" (or a fraction from 0.0 to 1.0), got the number -10",
            ]
        );
        let p = problems("[upstream]\ntimeout_ms = 60001\n[block]\nttl = 4294967296\n");
        assert_eq!(
            p[1].message,
            "block.ttl: expected a whole number of seconds (0 to 2147483647), got the number 4294967296"
        );
        assert_eq!(
            p[0].message,
            "upstream.timeout_ms: expected a whole number of milliseconds (1 to 60000), got the number 60001"
        );
    }

    #[test]
    fn sections_of_the_wrong_shape_are_named() {
        let p = problems("server = 5\nblock = \"nxdomain\"\nlists = \"x\"\n");
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "bad.toml:1:10: server: expected a table of settings ([server]), got the number 5",
                "bad.toml:2:9: block: expected a table of settings ([block]), got the string \"nxdomain\"",
                "bad.toml:3:9: lists: expected [[lists]] tables, got the string \"x\"",
            ]
        );
        let p = problems("lists = [\"a.txt\", { name = \"b\", source = \"b.txt\" }]\n");
        assert_eq!(
            p[0].to_string(),
            "bad.toml:1:10: lists[1]: expected a table of list settings ([[lists]]), got the string \"a.txt\""
        );
        assert_eq!(p.len(), 1, "{p:?}");
    }

    #[test]
    fn all_wrong_types_are_reported_at_once() {
        let p = problems(
            "[upstream]\ntimeout_ms = \"soon\"\n[cache]\nsize = true\n[[lists]]\nname = \"a\"\nsource = 1\nrefresh = 60\n[[lists]]\nsource = \"b.txt\"\n",
        );
        let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "bad.toml:2:14: upstream.timeout_ms: expected a whole number of milliseconds, got the string \"soon\"",
                "bad.toml:4:8: cache.size: expected a whole number of answers to cache, got true",
                "bad.toml:7:10: lists[1].source: expected a file path or URL, such as \"lists/seized.txt\" or \"https://example.org/list.txt\", got the number 1",
                "bad.toml:8:11: lists[1].refresh: expected a duration such as \"6h\" or \"30m\", got the number 60",
                "bad.toml:9:1: lists[2]: missing name: every list needs a name and a source",
            ]
        );
    }

    #[test]
    fn a_date_time_where_a_section_belongs_is_named() {
        let p = problems("server = 1979-05-27\n");
        assert_eq!(
            p[0].to_string(),
            "bad.toml:1:10: server: expected a table of settings ([server]), got the date-time 1979-05-27"
        );
        let p = problems("lists = [1979-05-27T07:32:00Z]\n");
        assert_eq!(
            p[0].to_string(),
            "bad.toml:1:10: lists[1]: expected a table of list settings ([[lists]]), got the date-time 1979-05-27T07:32:00Z"
        );
    }
}
