//! `[http]`: where the metrics, health checks and JSON API listen, and the
//! token that guards them.
//!
//! A startup setting, like `[server]`: the listener is bound before the
//! privileges are dropped and the token file read then, so a reload that
//! sees `[http]` changed says a restart is needed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::raw::{Container, Raw, Section, Shaped, Value};
use super::{Checker, Problem};

/// `[http]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub listen: Option<Value>,
    pub token: Option<Value>,
    pub token_file: Option<Value>,
    pub max_connections: Option<Value>,
    pub timeout: Option<Value>,
}

impl Section for HttpSpec {
    const CONTAINER: Container = Container::Table;
}

/// Where the bearer token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Written in the config (`token`).
    Inline(String),
    /// A file holding it (`token_file`), read at start; surrounding
    /// whitespace (the final newline) is not part of it.
    File(PathBuf),
}

impl fmt::Debug for TokenSource {
    /// Never prints the token itself: configs end up in logs and bug reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

/// The HTTP listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Addresses to serve HTTP on; empty: no HTTP at all.
    pub listen: Vec<SocketAddr>,
    /// The bearer token `POST`s need, and every request but `/healthz` and
    /// `/metrics` on a listener outside loopback.
    pub token: Option<TokenSource>,
    /// Connections open at once, all listeners together; one more is
    /// closed at once. Each is a file descriptor, which DNS needs too.
    pub max_connections: usize,
    /// How long a client may keep a connection waiting on it: to send a
    /// whole request head (counted from the connection's start or from the
    /// previous answer, so an idle keep-alive connection goes too), or to
    /// take the bytes of an answer.
    pub timeout: Duration,
}

/// HTTP connections open at once unless configured: the dashboard, a
/// Prometheus and a few scripts need a handful.
const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 64;
/// How long a client may keep an HTTP connection waiting, unless configured.
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The built-in listen address: loopback only, so the API is on for the
/// host's own tools and Prometheus agent and for no one else.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8053";

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_HTTP_LISTEN.parse().into_iter().collect(),
            token: None,
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            timeout: DEFAULT_HTTP_TIMEOUT,
        }
    }
}

const WANT_LISTEN: &str =
    r#"an address to listen on, such as "127.0.0.1:8053", or a list of them ([] for none)"#;
const WANT_ADDR: &str =
    r#"an address to listen on, ip:port or [ipv6]:port, such as "127.0.0.1:8053""#;

impl Checker<'_> {
    /// Converts `[http]`; valid but unguarded settings become warnings.
    pub(super) fn http_settings(
        &mut self,
        http: Option<Spanned<Shaped<HttpSpec>>>,
        warnings: &mut Vec<Problem>,
    ) -> HttpConfig {
        let h = self.section("http", http);
        let mut config = HttpConfig::default();
        if let Some(v) = &h.listen {
            config.listen = match v.get_ref() {
                Raw::String(s) => match s.parse() {
                    Ok(a) => vec![a],
                    Err(_) => {
                        self.wrong("http.listen", v, WANT_LISTEN);
                        Vec::new()
                    }
                },
                Raw::Array(_) => self
                    .each("http.listen", v, WANT_LISTEN, WANT_ADDR, |s| s.parse().ok())
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect(),
                _ => {
                    self.wrong("http.listen", v, WANT_LISTEN);
                    Vec::new()
                }
            };
        }
        let token = self.opt_parse(
            "http.token",
            &h.token,
            "a secret of at least 16 characters, without spaces (or use token_file)",
            |s| (s.trim().len() >= 16 && !s.contains(char::is_whitespace)).then(|| s.to_owned()),
        );
        let token_file = self.text(
            "http.token_file",
            &h.token_file,
            r#"a file path such as "/etc/embargo/http-token""#,
        );
        if let Some(v) = &h.max_connections
            && let Some(n) =
                self.whole::<usize>("http.max_connections", v, "connections", 1..=65_536)
        {
            config.max_connections = n;
        }
        if let Some(t) = self.opt_parse(
            "http.timeout",
            &h.timeout,
            r#"a duration such as "10s" or "500ms""#,
            |t| humantime::parse_duration(t).ok().filter(|d| !d.is_zero()),
        ) {
            config.timeout = t;
        }
        config.token = match (token, token_file, &h.token_file) {
            (Some(_), Some(_), Some(at)) => {
                self.problem(at, "http.token_file: set token or token_file, not both");
                None
            }
            (Some(t), _, _) => Some(TokenSource::Inline(t)),
            (None, Some(f), _) => Some(TokenSource::File(self.resolve(&f))),
            (None, None, _) => None,
        };
        if config.token.is_none() {
            for addr in config.listen.iter().filter(|a| !a.ip().is_loopback()) {
                let at = h.listen.as_ref().map(|v| self.location(v));
                warnings.push(Problem {
                    location: at.unwrap_or_else(|| {
                        super::Location::from_offset(self.path, self.source, 0)
                    }),
                    message: format!(
                        "http.listen has {addr}, outside loopback, and no http.token: there only /healthz and /metrics answer, everything else is 401"
                    ),
                });
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Error};

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("/etc/embargo/e.toml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(Path::new("e.toml"), text) {
            Err(Error::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn on_by_default_on_loopback_and_off_with_an_empty_list() {
        let c = parse("");
        assert_eq!(c.http.listen, vec!["127.0.0.1:8053".parse().expect("addr")]);
        assert_eq!(c.http.token, None);
        assert_eq!(c.http.max_connections, 64);
        assert_eq!(c.http.timeout, Duration::from_secs(10));
        assert!(parse("[http]\nlisten = []\n").http.listen.is_empty());
    }

    #[test]
    fn listen_is_a_string_or_a_list_and_the_token_file_is_resolved() {
        let c = parse("[http]\nlisten = \"127.0.0.1:9000\"\ntoken_file = \"token\"\n");
        assert_eq!(c.http.listen, vec!["127.0.0.1:9000".parse().expect("addr")]);
        assert_eq!(
            c.http.token,
            Some(TokenSource::File("/etc/embargo/token".into()))
        );
        let c = parse(
            "[http]\nlisten = [\"127.0.0.1:9000\", \"[::1]:9000\"]\ntoken = \"0123456789abcdef\"\n",
        );
        assert_eq!(c.http.listen.len(), 2);
        assert_eq!(
            c.http.token,
            Some(TokenSource::Inline("0123456789abcdef".into()))
        );
        assert_eq!(
            format!("{:?}", c.http.token),
            "Some(Inline(<redacted>))",
            "the token never reaches a log"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let p = problems(
            "[http]\nlisten = [\"localhost:80\"]\ntoken = \"short\"\ntoken_file = \"t\"\n",
        );
        assert_eq!(
            p,
            [
                "e.toml:2:11: http.listen[1]: expected an address to listen on, ip:port or [ipv6]:port, such as \"127.0.0.1:8053\", got the string \"localhost:80\"",
                "e.toml:3:9: http.token: expected a secret of at least 16 characters, without spaces (or use token_file), got the string \"short\"",
            ]
        );
        let p = problems("[http]\ntoken = \"0123456789abcdef\"\ntoken_file = \"t\"\n");
        assert_eq!(
            p,
            ["e.toml:3:14: http.token_file: set token or token_file, not both"]
        );
    }

    #[test]
    fn an_unguarded_listener_outside_loopback_is_warned_about() {
        let c = parse("[http]\nlisten = [\"0.0.0.0:8053\"]\n");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0]
                .message
                .contains("0.0.0.0:8053, outside loopback, and no http.token"),
            "{}",
            c.warnings[0]
        );
        let c = parse("[http]\nlisten = [\"0.0.0.0:8053\"]\ntoken = \"0123456789abcdef\"\n");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn the_connection_bounds_are_read_and_checked() {
        let c = parse("[http]\nmax_connections = 3\ntimeout = \"1s 500ms\"\n");
        assert_eq!(c.http.max_connections, 3);
        assert_eq!(c.http.timeout, Duration::from_millis(1500));
        let p = problems("[http]\nmax_connections = 0\ntimeout = \"0s\"\n");
        assert_eq!(
            p,
            [
                "e.toml:2:19: http.max_connections: expected a whole number of connections (1 to 65536), got the number 0",
                "e.toml:3:11: http.timeout: expected a duration such as \"10s\" or \"500ms\", got the string \"0s\"",
            ]
        );
    }
}
