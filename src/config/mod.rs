//! Configuration: the TOML file (`file::FileSpec`, serde, spans kept) is
//! parsed, then converted into the typed [`Config`] the rest of embargo uses.
//! Conversion collects every problem with its file, line and column before
//! failing, so an operator fixes a config in one pass.
//!
//! Relative paths (list sources, allow files) are resolved against the
//! directory of the config file, not the working directory, so a config
//! works wherever the server is started from.

mod error;
mod file;
mod list;

pub use error::{Error, Location, Problem};
pub use file::FileSpec;
pub use list::{Fetch, ListSpec, Provenance, Source, Tsig, XfrSource};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::lists::Format;
use crate::policy::{Action, EdeCode};

/// How embargo talks to one upstream resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP, retried over TCP when the answer is truncated.
    Udp,
    /// TCP only.
    Tcp,
}

/// One upstream resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamServer {
    pub addr: SocketAddr,
    pub transport: Transport,
}

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
    pub upstreams: Vec<UpstreamServer>,
    pub upstream_timeout: Duration,
    /// Answers cached; 0 disables the cache.
    pub cache_size: usize,
    pub block: BlockConfig,
    pub lists: Vec<ListSpec>,
    pub allow_domains: Vec<AllowDomain>,
    pub allow_files: Vec<PathBuf>,
    /// Where downloaded lists, their metadata and the pid file live.
    pub state_dir: PathBuf,
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
        let spec: FileSpec = toml::from_str(source).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            Error::Invalid(vec![Problem {
                location: Location::from_offset(path, source, offset),
                message: e.message().trim().to_string(),
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

/// Turns a `FileSpec` into a `Config`, collecting problems as it goes.
struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    base: &'a Path,
    problems: Vec<Problem>,
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

    /// Parses a spanned string with `parse`, recording a problem on failure.
    fn parse_with<T>(
        &mut self,
        value: &Spanned<String>,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let parsed = parse(value.get_ref());
        if parsed.is_none() {
            self.problem(value, format!("invalid {what}: {:?}", value.get_ref()));
        }
        parsed
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
        let listen = match &spec.server.listen {
            Some(addrs) => {
                let mut out = Vec::new();
                for a in addrs {
                    if let Some(addr) =
                        self.parse_with(a, "listen address (want ip:port, [ipv6]:port)", |s| {
                            s.parse::<SocketAddr>().ok()
                        })
                    {
                        out.push(addr);
                    }
                }
                if addrs.is_empty() {
                    self.problems.push(Problem {
                        location: Location::from_offset(self.path, self.source, 0),
                        message: "[server] listen is empty: embargo would serve nothing".into(),
                    });
                }
                out
            }
            None => DEFAULT_LISTEN
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
        };

        let mut upstreams = Vec::new();
        for s in spec.upstream.servers.iter().flatten() {
            if let Some(u) = self.parse_with(
                s,
                "upstream (want ip:port, [ipv6]:port, or tcp://ip:port; hostnames need a bootstrap resolver and are not supported)",
                parse_upstream,
            ) {
                upstreams.push(u);
            }
        }
        let upstream_timeout = match &spec.upstream.timeout_ms {
            Some(t) if *t.get_ref() == 0 || *t.get_ref() > 60_000 => {
                self.problem(t, "timeout_ms must be between 1 and 60000");
                Duration::from_millis(2000)
            }
            Some(t) => Duration::from_millis(*t.get_ref()),
            None => Duration::from_millis(2000),
        };

        let defaults = BlockConfig::default();
        let b = &spec.block;
        let block = BlockConfig {
            action: self
                .opt_parse(
                    &b.action,
                    "action (nxdomain | nodata | refused | sinkhole)",
                    Action::parse,
                )
                .unwrap_or(defaults.action),
            sinkhole_ipv4: self
                .opt_parse(&b.sinkhole_ipv4, "sinkhole_ipv4", |s| s.parse().ok())
                .unwrap_or(defaults.sinkhole_ipv4),
            sinkhole_ipv6: self
                .opt_parse(&b.sinkhole_ipv6, "sinkhole_ipv6", |s| s.parse().ok())
                .unwrap_or(defaults.sinkhole_ipv6),
            ttl: b.ttl.as_ref().map_or(defaults.ttl, |t| *t.get_ref()),
            ede: self
                .opt_parse(
                    &b.ede,
                    "ede (blocked | censored | filtered)",
                    EdeCode::parse,
                )
                .unwrap_or(defaults.ede),
        };

        let state_dir = match &spec.state.dir {
            Some(d) => self.resolve(d),
            None => self.base.join("embargo-state"),
        };
        let mut lists: Vec<ListSpec> = Vec::new();
        for l in &spec.lists {
            let name = l.name.get_ref().trim().to_string();
            if name.is_empty() || name.contains(char::is_whitespace) {
                self.problem(&l.name, "list name must be non-empty and without spaces");
            } else if lists.iter().any(|o| o.name == name) {
                self.problem(&l.name, format!("duplicate list name {name:?}"));
            }
            let format = match &l.format {
                None => None,
                Some(f) if f.get_ref() == "auto" => None,
                Some(f) => self.parse_with(
                    f,
                    "format (auto | domains | hosts | adblock | rpz)",
                    Format::parse,
                ),
            };
            let raw = l.source.get_ref();
            let source = if raw.starts_with("http://") || raw.starts_with("https://") {
                Source::Http(raw.clone())
            } else if raw.starts_with("axfr://") {
                match XfrSource::parse(raw) {
                    Some(mut x) => {
                        if let Some(t) = &l.tsig {
                            x.tsig = self.parse_with(
                                t,
                                "tsig key (want [hmac-sha256|hmac-sha384|hmac-sha512:]name:base64-secret)",
                                Tsig::parse,
                            );
                        }
                        if format != Some(Format::Rpz) {
                            self.problem(
                                &l.source,
                                "a zone transfer source needs format = \"rpz\"",
                            );
                        }
                        Source::Axfr(x)
                    }
                    None => {
                        self.problem(
                            &l.source,
                            "invalid zone transfer source (want axfr://ip:port/zone.name)",
                        );
                        Source::File(PathBuf::new())
                    }
                }
            } else if raw.contains("://") {
                self.problem(
                    &l.source,
                    "unsupported source scheme (want a file path, http://, https:// or axfr://)",
                );
                Source::File(PathBuf::new())
            } else {
                Source::File(self.resolve(raw))
            };
            if let Some(t) = &l.tsig
                && !matches!(source, Source::Axfr(_))
            {
                self.problem(t, "tsig applies only to axfr:// sources");
            }
            let path = match &source {
                Source::File(p) => p.clone(),
                Source::Http(_) | Source::Axfr(_) => state_dir
                    .join("lists")
                    .join(format!("{}.list", file_safe(&name))),
            };
            let fetch = self.fetch_settings(l);
            lists.push(ListSpec {
                name,
                source,
                path,
                fetch,
                format,
                provenance: Provenance {
                    authority: l.authority.clone().unwrap_or_default(),
                    reason: l.reason.clone().unwrap_or_default(),
                    reference: l.reference.clone().unwrap_or_default(),
                },
                action: self
                    .opt_parse(
                        &l.action,
                        "action (nxdomain | nodata | refused | sinkhole)",
                        Action::parse,
                    )
                    .unwrap_or(block.action),
                sinkhole_ipv4: self
                    .opt_parse(&l.sinkhole_ipv4, "sinkhole_ipv4", |s| s.parse().ok())
                    .unwrap_or(block.sinkhole_ipv4),
                sinkhole_ipv6: self
                    .opt_parse(&l.sinkhole_ipv6, "sinkhole_ipv6", |s| s.parse().ok())
                    .unwrap_or(block.sinkhole_ipv6),
                ttl: block.ttl,
                ede: self
                    .opt_parse(
                        &l.ede,
                        "ede (blocked | censored | filtered)",
                        EdeCode::parse,
                    )
                    .unwrap_or(block.ede),
                location: self.location(&l.name),
            });
        }
        if lists.len() > 1000 {
            self.problems.push(Problem {
                location: Location::from_offset(self.path, self.source, 0),
                message: "more than 1000 lists".into(),
            });
        }

        let allow_domains = spec
            .allow
            .domains
            .iter()
            .map(|d| AllowDomain {
                name: d.get_ref().clone(),
                location: self.location(d),
            })
            .collect();
        let allow_files = spec
            .allow
            .files
            .iter()
            .map(|f| self.resolve(f.get_ref()))
            .collect();

        if !self.problems.is_empty() {
            return Err(Error::Invalid(self.problems));
        }
        Ok(Config {
            path: self.path.to_path_buf(),
            state_dir,
            listen,
            upstreams,
            upstream_timeout,
            cache_size: spec.cache.size.unwrap_or(10_000),
            block,
            lists,
            allow_domains,
            allow_files,
        })
    }

    /// `refresh`, `timeout`, `max_size_mb` and `max_shrink` of a list.
    fn fetch_settings(&mut self, l: &file::ListFileSpec) -> Fetch {
        let d = Fetch::default();
        let duration = |this: &mut Self, v: &Option<Spanned<String>>, what: &str, default| {
            this.opt_parse(v, what, |s| {
                humantime::parse_duration(s).ok().filter(|d| !d.is_zero())
            })
            .unwrap_or(default)
        };
        let refresh = duration(
            self,
            &l.refresh,
            "refresh (a duration such as \"6h\" or \"30m\")",
            d.refresh,
        );
        let timeout = duration(
            self,
            &l.timeout,
            "timeout (a duration such as \"60s\")",
            d.timeout,
        );
        let max_size = match &l.max_size_mb {
            Some(v) if *v.get_ref() == 0 => {
                self.problem(v, "max_size_mb must be at least 1");
                d.max_size
            }
            Some(v) => v.get_ref().saturating_mul(1024 * 1024),
            None => d.max_size,
        };
        let max_shrink = match &l.max_shrink {
            None => d.max_shrink,
            Some(v) => {
                let parsed = match v.get_ref() {
                    toml::Value::Float(f) => Some(*f),
                    toml::Value::Integer(i) => Some(*i as f64 / 100.0),
                    toml::Value::String(s) => s
                        .trim()
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse::<f64>().ok())
                        .map(|p| p / 100.0),
                    _ => None,
                };
                match parsed.filter(|f| (0.0..=1.0).contains(f)) {
                    Some(f) => f,
                    None => {
                        self.problem(v, "max_shrink must be a percentage such as \"50%\" (or a fraction 0.0-1.0)");
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

    fn opt_parse<T>(
        &mut self,
        value: &Option<Spanned<String>>,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        value.as_ref().and_then(|v| self.parse_with(v, what, parse))
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

/// `ip:port`, `[ipv6]:port`, a bare IP (port 53), `udp://…` or `tcp://…`.
fn parse_upstream(s: &str) -> Option<UpstreamServer> {
    let (transport, rest) = if let Some(r) = s.strip_prefix("tcp://") {
        (Transport::Tcp, r)
    } else if let Some(r) = s.strip_prefix("udp://") {
        (Transport::Udp, r)
    } else {
        (Transport::Udp, s)
    };
    let addr = rest.parse::<SocketAddr>().ok().or_else(|| {
        rest.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })?;
    Some(UpstreamServer { addr, transport })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.upstreams[1].transport, Transport::Tcp);
        assert_eq!(c.upstreams[2].addr.port(), 53);
        assert_eq!(c.cache_size, 10_000);
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
}
