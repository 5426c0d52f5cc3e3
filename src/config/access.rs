//! `[access]` (who may ask) and `[rate_limit]` (how fast): the sections as
//! written, and their conversion into [`Access`] and [`RateLimit`].
//!
//! Both apply on reload. A config that lets the internet in with no rate
//! limit is valid, but it earns a warning that `run` logs and `validate`
//! prints: such a server is an amplifier for anyone who can spoof a source.

use serde::Deserialize;
use toml::Spanned;

use super::raw::{Container, Raw, Section, Shaped, Value};
use super::{Checker, Problem};
use crate::access::{Access, AccessAction, Cidr, CidrError, CidrSet, RateLimit};

/// `[access]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    pub allow: Option<Value>,
    pub deny: Option<Value>,
    pub action: Option<Value>,
}

/// `[rate_limit]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub responses_per_second: Option<Value>,
    pub window: Option<Value>,
    pub slip: Option<Value>,
    pub ipv4_prefix: Option<Value>,
    pub ipv6_prefix: Option<Value>,
    pub exempt: Option<Value>,
    pub table_size: Option<Value>,
}

impl Section for AccessSpec {
    const CONTAINER: Container = Container::Table;
}

impl Section for RateLimitSpec {
    const CONTAINER: Container = Container::Table;
}

/// What the two sections come to.
pub(super) struct AccessSettings {
    pub(super) access: Access,
    pub(super) rate_limit: RateLimit,
    /// Valid but dangerous or surprising settings, with their place.
    pub(super) warnings: Vec<Problem>,
}

const WANT_NETWORKS: &str = r#"a list of networks, such as ["10.0.0.0/8", "192.168.0.0/16"]"#;
const WANT_NETWORK: &str =
    r#"a network or address such as "10.0.0.0/8", "2001:db8::/32" or "192.0.2.7""#;

impl Checker<'_> {
    /// Converts `[access]` and `[rate_limit]`.
    pub(super) fn access_settings(
        &mut self,
        access: Option<Spanned<Shaped<AccessSpec>>>,
        rate_limit: Option<Spanned<Shaped<RateLimitSpec>>>,
    ) -> AccessSettings {
        let a = self.section("access", access);
        let r = self.section("rate_limit", rate_limit);
        let mut warnings = Vec::new();

        let defaults = Access::default();
        let allow = match &a.allow {
            Some(v) => {
                let set = CidrSet::new(self.networks("access.allow", v));
                if matches!(v.get_ref(), Raw::Array(items) if items.is_empty()) {
                    warnings.push(Problem {
                        location: self.location(v),
                        message: "access.allow is empty: every query will be refused".into(),
                    });
                }
                set
            }
            None => defaults.allow,
        };
        let deny = match &a.deny {
            Some(v) => CidrSet::new(self.networks("access.deny", v)),
            None => CidrSet::default(),
        };
        let action = self
            .opt_parse(
                "access.action",
                &a.action,
                r#"one of "refuse" or "drop""#,
                AccessAction::parse,
            )
            .unwrap_or(defaults.action);
        let access = Access {
            allow,
            deny,
            action,
        };

        let d = RateLimit::default();
        let responses_per_second = r
            .responses_per_second
            .as_ref()
            .and_then(|v| {
                self.whole(
                    "rate_limit.responses_per_second",
                    v,
                    "answers per second",
                    0..=1_000_000,
                )
            })
            .unwrap_or(d.responses_per_second);
        let window = r
            .window
            .as_ref()
            .and_then(|v| self.whole("rate_limit.window", v, "seconds", 1..=3600))
            .unwrap_or(d.window);
        let slip = r
            .slip
            .as_ref()
            .and_then(|v| {
                self.whole(
                    "rate_limit.slip",
                    v,
                    "limited answers per truncated one",
                    0..=10,
                )
            })
            .unwrap_or(d.slip);
        let ipv4_prefix = r
            .ipv4_prefix
            .as_ref()
            .and_then(|v| self.whole("rate_limit.ipv4_prefix", v, "bits", 0..=32))
            .unwrap_or(d.ipv4_prefix);
        // Beyond /64 an IPv6 host picks a new address per query for free.
        let ipv6_prefix = r
            .ipv6_prefix
            .as_ref()
            .and_then(|v| self.whole("rate_limit.ipv6_prefix", v, "bits", 0..=64))
            .unwrap_or(d.ipv6_prefix);
        let exempt = match &r.exempt {
            Some(v) => CidrSet::new(self.networks("rate_limit.exempt", v)),
            None => d.exempt,
        };
        let table_size = r
            .table_size
            .as_ref()
            .and_then(|v| {
                self.whole(
                    "rate_limit.table_size",
                    v,
                    "client prefixes to track",
                    64..=16_777_216,
                )
            })
            .unwrap_or(d.table_size);
        let rate_limit = RateLimit {
            responses_per_second,
            window,
            slip,
            ipv4_prefix,
            ipv6_prefix,
            exempt,
            table_size,
        };

        if let (Some(public), 0) = (access.public_network(), responses_per_second) {
            let at = a.allow.as_ref().map(|v| self.location(v));
            warnings.push(Problem {
                location: at.unwrap_or_else(|| super::Location::from_offset(self.path, self.source, 0)),
                message: format!(
                    "access.allow admits public addresses ({public}) and rate_limit.responses_per_second = 0: anyone there can use this server to amplify"
                ),
            });
        }
        AccessSettings {
            access,
            rate_limit,
            warnings,
        }
    }

    /// A list of networks; each bad one is its own problem (`key[2]: …`).
    pub(super) fn networks(&mut self, key: &str, value: &Value) -> Vec<Cidr> {
        let Raw::Array(items) = value.get_ref() else {
            self.wrong(key, value, WANT_NETWORKS);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{key}[{}]", i + 1);
            let Raw::String(text) = item.get_ref() else {
                self.wrong(&at, item, WANT_NETWORK);
                continue;
            };
            match text.parse::<Cidr>() {
                Ok(c) => out.push(c),
                Err(CidrError::Address(_)) => self.wrong(&at, item, WANT_NETWORK),
                Err(CidrError::Prefix { max, .. }) => self.wrong(
                    &at,
                    item,
                    &format!("{WANT_NETWORK}, with a prefix length from 0 to {max}"),
                ),
                Err(e @ CidrError::HostBits { .. }) => self.problem(item, format!("{at}: {e}")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use crate::access::AccessAction;
    use crate::config::{Config, Error};

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("a.toml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(Path::new("a.toml"), text) {
            Err(Error::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn defaults_admit_private_networks_and_limit_nothing() {
        let c = parse("");
        assert_eq!(c.access.refuses(ip("192.168.1.1")), None);
        assert_eq!(
            c.access.refuses(ip("203.0.113.7")),
            Some(AccessAction::Refuse)
        );
        assert_eq!(c.rate_limit.responses_per_second, 0);
        assert_eq!(
            (c.rate_limit.window, c.rate_limit.slip),
            (15, 2),
            "BIND's defaults"
        );
        assert_eq!(
            (c.rate_limit.ipv4_prefix, c.rate_limit.ipv6_prefix),
            (24, 56)
        );
        assert!(c.rate_limit.exempt.contains(ip("127.0.0.1")));
        assert!(c.rate_limit.exempt.contains(ip("::1")));
        assert_eq!(c.rate_limit.table_size, 65_536);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "[access]\nallow = [\"0.0.0.0/0\", \"::/0\"]\ndeny = [\"192.0.2.0/24\"]\naction = \"drop\"\n[rate_limit]\nresponses_per_second = 20\nwindow = 5\nslip = 3\nipv4_prefix = 32\nipv6_prefix = 64\nexempt = []\ntable_size = 1024\n",
        );
        assert_eq!(c.access.refuses(ip("203.0.113.7")), None);
        assert_eq!(c.access.refuses(ip("2001:db8::1")), None);
        assert_eq!(c.access.refuses(ip("192.0.2.9")), Some(AccessAction::Drop));
        let r = &c.rate_limit;
        assert_eq!(
            (
                r.responses_per_second,
                r.window,
                r.slip,
                r.ipv4_prefix,
                r.ipv6_prefix,
                r.table_size
            ),
            (20, 5, 3, 32, 64, 1024)
        );
        assert!(r.exempt.is_empty());
        assert!(c.warnings.is_empty(), "limited: {:?}", c.warnings);
    }

    #[test]
    fn a_public_allow_without_a_rate_limit_is_warned_about() {
        let c = parse("[access]\nallow = [\"10.0.0.0/8\", \"203.0.113.0/24\"]\n");
        let shown: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "a.toml:2:9: access.allow admits public addresses (203.0.113.0/24) and rate_limit.responses_per_second = 0: anyone there can use this server to amplify"
            ]
        );
        let c = parse("[access]\nallow = []\n");
        assert_eq!(
            c.warnings[0].to_string(),
            "a.toml:2:9: access.allow is empty: every query will be refused"
        );
    }

    #[test]
    fn bad_networks_say_what_is_wrong_with_each() {
        let p = problems(
            "[access]\nallow = [\"10.0.0.1/8\", \"ten\", \"10.0.0.0/40\", 7]\ndeny = \"192.0.2.1\"\n[rate_limit]\nslip = 11\nipv6_prefix = 96\nexempt = [\"::1/129\"]\n",
        );
        assert_eq!(
            p,
            [
                "a.toml:2:10: access.allow[1]: \"10.0.0.1/8\" has bits set past the /8 prefix: write 10.0.0.0/8 for the network, or 10.0.0.1/32 for the one address",
                "a.toml:2:24: access.allow[2]: expected a network or address such as \"10.0.0.0/8\", \"2001:db8::/32\" or \"192.0.2.7\", got the string \"ten\"",
                "a.toml:2:31: access.allow[3]: expected a network or address such as \"10.0.0.0/8\", \"2001:db8::/32\" or \"192.0.2.7\", with a prefix length from 0 to 32, got the string \"10.0.0.0/40\"",
                "a.toml:2:46: access.allow[4]: expected a network or address such as \"10.0.0.0/8\", \"2001:db8::/32\" or \"192.0.2.7\", got the number 7",
                "a.toml:3:8: access.deny: expected a list of networks, such as [\"10.0.0.0/8\", \"192.168.0.0/16\"], got the string \"192.0.2.1\"",
                "a.toml:5:8: rate_limit.slip: expected a whole number of limited answers per truncated one (0 to 10), got the number 11",
                "a.toml:6:15: rate_limit.ipv6_prefix: expected a whole number of bits (0 to 64), got the number 96",
                "a.toml:7:11: rate_limit.exempt[1]: expected a network or address such as \"10.0.0.0/8\", \"2001:db8::/32\" or \"192.0.2.7\", with a prefix length from 0 to 128, got the string \"::1/129\"",
            ]
        );
    }
}
