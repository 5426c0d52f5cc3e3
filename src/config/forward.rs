//! `[[forward]]`: conditional forwarding. The names of a zone, and every name
//! below it, go to the zone's own servers instead of `[upstream]`'s: a
//! corporate network's `corp.example` and its reverse zones to the domain
//! controllers, whatever the public upstream is.
//!
//! ```toml
//! [[forward]]
//! zones = ["corp.example", "10.in-addr.arpa"]
//! servers = ["10.0.0.10", "tls://10.0.0.11#dc2.corp.example"]
//! strategy = "failover"       # optional, as [upstream]'s
//! timeout_ms = 2000           # optional, as [upstream]'s
//! udp_sockets = 32            # optional, as [upstream]'s
//! ```
//!
//! Servers are written as in `[upstream] servers` and parsed by the same
//! function; `strategy`, `timeout_ms` and `udp_sockets` default to
//! `[upstream]`'s values, and `[upstream] ca_file` is trusted for every set
//! (one trust store per process). So each table becomes a whole
//! [`UpstreamConfig`], and the upstream layer builds a forward set exactly
//! as it builds the default one.
//!
//! A zone is normalised as a list entry is (lowercase, no final dot,
//! punycode). `.` is refused: every name is `[upstream]`'s already. A zone
//! may be named by one table only: two sets for one zone would leave the
//! choice to the order of the file.

use serde::Deserialize;
use toml::Spanned;

use super::raw::{Container, Raw, Section, Shaped, Value};
use super::upstream::{Strategy, UpstreamConfig, WANT_SERVER, WANT_STRATEGY, parse_upstream};
use super::{Checker, Location};
use crate::matcher::{NameError, NameKey};

/// One `[[forward]]` table, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForwardFileSpec {
    pub(super) zones: Option<Value>,
    pub(super) servers: Option<Value>,
    pub(super) strategy: Option<Value>,
    pub(super) timeout_ms: Option<Value>,
    pub(super) udp_sockets: Option<Value>,
}

impl Section for ForwardFileSpec {
    const CONTAINER: Container = Container::Table;
}

/// The `[[forward]]` tables, each of which may turn out not to be a table.
pub(super) type ForwardTables = Vec<Spanned<Shaped<ForwardFileSpec>>>;

/// A zone of a `[[forward]]` table or of `[local_zones] zones`, normalised,
/// with the place it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneName {
    /// Lowercase, no final dot, punycode: `corp.example`.
    pub name: String,
    pub location: Location,
}

/// One `[[forward]]` table, validated: its zones and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// The zones, in the order written, each once.
    pub zones: Vec<ZoneName>,
    /// The set's servers, strategy, timeout and sockets (`ca_file` and its
    /// certificates are `[upstream]`'s).
    pub upstream: UpstreamConfig,
    /// Where the table starts.
    pub location: Location,
}

/// Why `[[forward]] zones` may not hold `.`.
const ROOT_FORWARDED: &str =
    "that is [upstream]'s; a forwarded zone is a domain such as \"corp.example\"";

const WANT_ZONE: &str = r#"a domain name such as "corp.example" or "10.in-addr.arpa""#;

impl Checker<'_> {
    /// Converts `[[forward]]`; `default` is the validated `[upstream]`,
    /// whose settings a table does not set are its own.
    pub(super) fn forward(
        &mut self,
        tables: Option<Spanned<Shaped<ForwardTables>>>,
        default: &UpstreamConfig,
    ) -> Vec<ForwardSpec> {
        let tables = self.section("forward", tables);
        let mut out: Vec<ForwardSpec> = Vec::new();
        for (i, t) in tables.into_iter().enumerate() {
            let key = |field: &str| format!("forward[{}].{field}", i + 1);
            let span = t.span();
            let t = match t.into_inner() {
                Shaped::Right(t) => t,
                Shaped::Wrong(raw) => {
                    self.wrong(
                        &format!("forward[{}]", i + 1),
                        &Spanned::new(span, raw),
                        "a table of forwarding settings ([[forward]])",
                    );
                    continue;
                }
            };
            let table: Value = Spanned::new(span, Raw::Table);
            let missing: Vec<&str> = [("zones", &t.zones), ("servers", &t.servers)]
                .into_iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k)
                .collect();
            if !missing.is_empty() {
                self.problem(
                    &table,
                    format!(
                        "forward[{}]: missing {}: every [[forward]] table needs the zones it forwards and the servers they go to",
                        i + 1,
                        missing.join(" and ")
                    ),
                );
            }
            let mut zones: Vec<ZoneName> = Vec::new();
            if let Some(v) = &t.zones {
                for (j, zone) in self
                    .zones(&key("zones"), v, ROOT_FORWARDED)
                    .into_iter()
                    .enumerate()
                {
                    let at = format!("{}[{}]", key("zones"), j + 1);
                    if let Some(same) = zones.iter().find(|z| z.name == zone.name) {
                        self.problem_at(
                            &zone.location,
                            format!(
                                "{at}: {} is already in this table (at {})",
                                zone.name, same.location
                            ),
                        );
                        continue;
                    }
                    let earlier = out.iter().enumerate().find_map(|(k, f)| {
                        f.zones
                            .iter()
                            .find(|z| z.name == zone.name)
                            .map(|z| (k, z.location.clone()))
                    });
                    if let Some((k, there)) = earlier {
                        self.problem_at(
                            &zone.location,
                            format!(
                                "{at}: {} is already forwarded by forward[{}] (at {there}): a zone goes to one set of servers",
                                zone.name,
                                k + 1
                            ),
                        );
                        continue;
                    }
                    zones.push(zone);
                }
                if matches!(v.get_ref(), Raw::Array(a) if a.is_empty()) {
                    self.wrong(&key("zones"), v, "at least one zone");
                }
            }
            let servers = match &t.servers {
                Some(v) => {
                    let servers: Vec<_> = self
                        .each(
                            &key("servers"),
                            v,
                            r#"a list of resolver addresses, such as ["10.0.0.10"]"#,
                            WANT_SERVER,
                            parse_upstream,
                        )
                        .into_iter()
                        .map(|(u, _)| u)
                        .collect();
                    if matches!(v.get_ref(), Raw::Array(a) if a.is_empty()) {
                        self.wrong(&key("servers"), v, "at least one server");
                    }
                    servers
                }
                None => Vec::new(),
            };
            let timeout = t
                .timeout_ms
                .as_ref()
                .and_then(|v| self.whole(&key("timeout_ms"), v, "milliseconds", 1..=60_000))
                .map_or(default.timeout, std::time::Duration::from_millis);
            let strategy = self
                .opt_parse(
                    &key("strategy"),
                    &t.strategy,
                    WANT_STRATEGY,
                    Strategy::parse,
                )
                .unwrap_or(default.strategy);
            let udp_sockets = t
                .udp_sockets
                .as_ref()
                .and_then(|v| self.whole(&key("udp_sockets"), v, "sockets", 1..=1024))
                .unwrap_or(default.udp_sockets);
            out.push(ForwardSpec {
                zones,
                upstream: UpstreamConfig {
                    servers,
                    timeout,
                    strategy,
                    ca_file: default.ca_file.clone(),
                    ca_certs: default.ca_certs.clone(),
                    udp_sockets,
                },
                location: self.location(&table),
            });
        }
        out
    }

    /// An array of zone names, each normalised as a list entry is, each
    /// with its place. `.` and what is not a domain name are problems.
    /// `root` says why `.` will not do here.
    pub(super) fn zones(&mut self, key: &str, value: &Value, root: &str) -> Vec<ZoneName> {
        let Raw::Array(items) = value.get_ref() else {
            self.wrong(
                key,
                value,
                r#"a list of domain names, such as ["corp.example"]"#,
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{key}[{}]", i + 1);
            let Raw::String(text) = item.get_ref() else {
                self.wrong(&at, item, WANT_ZONE);
                continue;
            };
            match zone_name(text, root) {
                Ok(name) => out.push(ZoneName {
                    name,
                    location: self.location(item),
                }),
                Err(why) => self.problem(item, format!("{at}: {why}")),
            }
        }
        out
    }

    /// A problem at a place already worked out.
    pub(super) fn problem_at(&mut self, location: &Location, message: String) {
        self.problems.push(super::Problem {
            location: location.clone(),
            message,
        });
    }
}

/// Normalises a zone name as a list entry is: lowercase, no final dot,
/// punycode; a one-label name (`lan`) is a zone like any other. The root is
/// refused, with `root` saying why.
pub(super) fn zone_name(text: &str, root: &str) -> Result<String, String> {
    match NameKey::from_text(text.trim(), true) {
        Ok(key) => Ok(key.to_string()),
        Err(NameError::Root | NameError::Empty) => Err(format!("{text:?} is every name: {root}")),
        Err(e) => Err(format!("{text:?} is not a domain name ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Config, Error, Strategy, Transport};

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(Path::new("fw.toml"), text)
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(Error::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_forward_table_is_a_whole_upstream_set_with_upstreams_defaults() {
        let c = parse(
            "[upstream]\nservers = [\"9.9.9.9\"]\ntimeout_ms = 1500\nstrategy = \"fastest\"\nudp_sockets = 8\n\
             [[forward]]\nzones = [\"Corp.Example.\", \"10.in-addr.arpa\", \"lan\"]\nservers = [\"10.0.0.10\", \"tls://10.0.0.11#dc2.corp.example\"]\n\
             [[forward]]\nzones = [\"lab.example\"]\nservers = [\"tcp://[fd00::53]:5353\"]\nstrategy = \"round_robin\"\ntimeout_ms = 300\nudp_sockets = 2\n",
        )
        .expect("valid");
        assert_eq!(c.forward.len(), 2);
        let f = &c.forward[0];
        let names: Vec<&str> = f.zones.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(names, ["corp.example", "10.in-addr.arpa", "lan"]);
        assert_eq!(f.zones[0].location.line, 7);
        assert_eq!(f.upstream.servers.len(), 2);
        assert_eq!(
            f.upstream.servers[0].addr,
            "10.0.0.10:53".parse().expect("addr")
        );
        assert!(matches!(
            &f.upstream.servers[1].transport,
            Transport::Tls { server_name } if server_name == "dc2.corp.example"
        ));
        // What the table does not set, [upstream] does.
        assert_eq!(f.upstream.timeout, Duration::from_millis(1500));
        assert_eq!(f.upstream.strategy, Strategy::Fastest);
        assert_eq!(f.upstream.udp_sockets, 8);
        let g = &c.forward[1];
        assert_eq!(g.upstream.timeout, Duration::from_millis(300));
        assert_eq!(g.upstream.strategy, Strategy::RoundRobin);
        assert_eq!(g.upstream.udp_sockets, 2);
        assert_eq!(g.upstream.servers[0].transport, Transport::Tcp);
        assert_eq!(g.location.line, 9);
    }

    #[test]
    fn the_root_and_a_zone_named_twice_are_refused_where_written() {
        let p = problems(
            "[[forward]]\nzones = [\"corp.example\", \".\"]\nservers = [\"10.0.0.10\"]\n\
             [[forward]]\nzones = [\n  \"lab.example\",\n  \"CORP.example.\",\n  \"lab.example\",\n]\nservers = [\"10.0.0.11\"]\n",
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(
            p[0].starts_with(
                "fw.toml:2:26: forward[1].zones[2]: \".\" is every name: that is [upstream]'s"
            ),
            "{}",
            p[0]
        );
        assert_eq!(
            p[1],
            "fw.toml:7:3: forward[2].zones[2]: corp.example is already forwarded by forward[1] (at fw.toml:2:10): a zone goes to one set of servers"
        );
        assert_eq!(
            p[2],
            "fw.toml:8:3: forward[2].zones[3]: lab.example is already in this table (at fw.toml:6:3)"
        );
    }

    #[test]
    fn bad_values_name_their_key_and_missing_keys_their_table() {
        let p = problems(
            "[[forward]]\nzones = [\"a b.example\"]\nservers = [\"dc.corp.example\"]\nstrategy = \"random\"\ntimeout_ms = 0\n\
             [[forward]]\nservers = []\n[[forward]]\nzones = []\nservers = [\"10.0.0.1\"]\n",
        );
        assert_eq!(
            p,
            [
                "fw.toml:2:10: forward[1].zones[1]: \"a b.example\" is not a domain name (invalid character ' ' in name)",
                "fw.toml:3:12: forward[1].servers[1]: expected a resolver address: ip:port, [ipv6]:port, tcp://ip:port, tls://ip:port#server.name or https://ip:port/dns-query#server.name (hostnames need a bootstrap resolver and are not supported), got the string \"dc.corp.example\"",
                "fw.toml:5:14: forward[1].timeout_ms: expected a whole number of milliseconds (1 to 60000), got the number 0",
                "fw.toml:4:12: forward[1].strategy: expected one of \"failover\", \"fastest\" or \"round_robin\", got the string \"random\"",
                "fw.toml:6:1: forward[2]: missing zones: every [[forward]] table needs the zones it forwards and the servers they go to",
                "fw.toml:7:11: forward[2].servers: expected at least one server, got an empty array",
                "fw.toml:9:9: forward[3].zones: expected at least one zone, got an empty array",
            ]
        );
        let p = problems("forward = 3\n");
        assert_eq!(
            p,
            ["fw.toml:1:11: forward: expected [[forward]] tables, got the number 3"]
        );
        let p =
            problems("[[forward]]\nzones = [\"a.example\"]\nservers = [\"10.0.0.1\"]\nport = 53\n");
        assert!(
            p[0].starts_with("fw.toml:4:1: unknown field `port`"),
            "{p:?}"
        );
    }
}
