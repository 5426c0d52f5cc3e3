//! `[alerts]`: where a client's first hit on a list is posted (a SIEM's
//! webhook), and the bounds that keep a flood of first hits from becoming
//! a flood of posts: the queue, the posts per list per window, the timeout
//! and the retries (`observe::alerts` sends them).
//!
//! Off unless the section names a `webhook`. It takes effect at start, like
//! `[log]` and `[hits]`: the poster and its queue are set up once, and a
//! reload that sees the section changed says a restart is needed. The
//! token and CA files are only named here; they are read at start (and by
//! `embargo validate`), as the serving user, with this file's line in the
//! error when they cannot be.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::raw::{Container, Raw, Section, Shaped, Value};
use super::{Checker, Location};

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSpec {
    pub webhook: Option<Value>,
    pub ca_file: Option<Value>,
    pub token_file: Option<Value>,
    pub queue: Option<Value>,
    pub per_list: Option<Value>,
    pub window: Option<Value>,
    pub timeout: Option<Value>,
    pub retries: Option<Value>,
}

impl Section for AlertsSpec {
    const CONTAINER: Container = Container::Table;
}

/// A file the config names, with where it names it: an error reading it
/// later (at start, in `validate`) points at the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    pub path: PathBuf,
    pub location: Location,
}

/// `[alerts]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// The `http://` or `https://` URL each alert is POSTed to.
    pub webhook: String,
    /// PEM certificates trusted as roots besides the built-in ones (a
    /// private SIEM's CA).
    pub ca_file: Option<NamedFile>,
    /// The bearer token (`Authorization: Bearer …`), one line.
    pub token_file: Option<NamedFile>,
    /// Alerts waiting to be posted; one more is dropped and counted
    /// (`reason="queue_full"`), never waited for.
    pub queue: usize,
    /// First-hit posts per list per `window`; past it, the first hits are
    /// counted and one summary per list is posted when the window ends.
    pub per_list: u32,
    pub window: Duration,
    /// How long one POST may take, connection included.
    pub timeout: Duration,
    /// Attempts after the first when the receiver is unreachable, times
    /// out, or answers 408, 429 or 5xx; the waits double from
    /// [`FIRST_BACKOFF`].
    pub retries: u32,
}

/// The wait before the first retry; each next one waits twice as long, at
/// most [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl AlertsConfig {
    /// The defaults for a webhook at `url`.
    pub fn new(webhook: String) -> Self {
        Self {
            webhook,
            ca_file: None,
            token_file: None,
            queue: 1000,
            per_list: 10,
            window: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            retries: 3,
        }
    }
}

const WANT_WEBHOOK: &str = r#"an http:// or https:// URL such as "https://siem.example/hook""#;

/// Whether `s` is an absolute `http://` or `https://` URL with a host.
fn is_webhook(s: &str) -> bool {
    let Ok(uri) = s.parse::<hyper::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.host().is_some_and(|h| !h.is_empty())
        && !s.contains(char::is_whitespace)
}

impl Checker<'_> {
    /// Converts `[alerts]`: `None` when the section is absent (alerts off).
    /// `hits_on` says whether the hit report, which decides what is a
    /// first hit, is kept (`[hits] max_clients > 0`).
    pub(super) fn alerts(
        &mut self,
        section: Option<Spanned<Shaped<AlertsSpec>>>,
        hits_on: bool,
    ) -> Option<AlertsConfig> {
        let span = section.as_ref()?.span();
        let spec = self.section("alerts", section);
        let table: Value = Spanned::new(span, Raw::Table);
        // About the whole table: first, where the table starts.
        if spec.webhook.is_none() {
            self.problem(
                &table,
                r#"alerts: expected webhook = "https://..." (where first hits are posted), got none"#,
            );
        }
        if !hits_on {
            self.problem(
                &table,
                "alerts: a first hit is the hit report's first sight of a client on a list, and [hits] max_clients = 0 turns the report off: keep it on, or remove [alerts]",
            );
        }
        let webhook = self.opt_parse("alerts.webhook", &spec.webhook, WANT_WEBHOOK, |s| {
            is_webhook(s).then(|| s.to_owned())
        });
        let file = |this: &mut Self, key: &str, value: &Option<Value>, want: &str| {
            let path = this.text(key, value, want)?;
            let at = value.as_ref()?;
            if path.trim().is_empty() {
                this.wrong(key, at, want);
                return None;
            }
            Some(NamedFile {
                path: this.resolve(&path),
                location: this.location(at),
            })
        };
        let ca_file = file(
            self,
            "alerts.ca_file",
            &spec.ca_file,
            r#"a PEM file of CA certificates such as "/etc/embargo/siem-ca.pem""#,
        );
        let token_file = file(
            self,
            "alerts.token_file",
            &spec.token_file,
            r#"a file path such as "/etc/embargo/siem-token""#,
        );
        let d = AlertsConfig::new(String::new());
        let queue = spec
            .queue
            .as_ref()
            .and_then(|v| self.whole("alerts.queue", v, "alerts", 1..=100_000))
            .unwrap_or(d.queue);
        let per_list = spec
            .per_list
            .as_ref()
            .and_then(|v| {
                self.whole(
                    "alerts.per_list",
                    v,
                    "posts per list per window",
                    1..=10_000,
                )
            })
            .unwrap_or(d.per_list);
        let duration = |want_min: Duration, want_max: Duration| {
            move |s: &str| {
                humantime::parse_duration(s)
                    .ok()
                    .filter(|d| (want_min..=want_max).contains(d))
            }
        };
        let window = self
            .opt_parse(
                "alerts.window",
                &spec.window,
                r#"a duration from 1s to 1d, such as "1m""#,
                duration(Duration::from_secs(1), Duration::from_secs(86_400)),
            )
            .unwrap_or(d.window);
        let timeout = self
            .opt_parse(
                "alerts.timeout",
                &spec.timeout,
                r#"a duration from 100ms to 5m, such as "5s""#,
                duration(Duration::from_millis(100), Duration::from_secs(300)),
            )
            .unwrap_or(d.timeout);
        let retries = spec
            .retries
            .as_ref()
            .and_then(|v| self.whole("alerts.retries", v, "retries", 0..=10))
            .unwrap_or(d.retries);
        Some(AlertsConfig {
            webhook: webhook?,
            ca_file,
            token_file,
            queue,
            per_list,
            window,
            timeout,
            retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::tests::section as parse;

    #[test]
    fn alerts_are_off_without_the_section() {
        assert_eq!(parse("").expect("valid").alerts, None);
    }

    #[test]
    fn a_webhook_with_defaults_and_every_key() {
        let c = parse("[alerts]\nwebhook = \"https://siem.example/hook\"\n")
            .expect("valid")
            .alerts
            .expect("on");
        assert_eq!(c, AlertsConfig::new("https://siem.example/hook".into()));
        let c = parse(
            "[alerts]\nwebhook = \"http://10.0.0.9:8080/in?src=dns\"\nca_file = \"siem-ca.pem\"\n\
             token_file = \"/run/secrets/siem\"\nqueue = 50\nper_list = 3\nwindow = \"5m\"\n\
             timeout = \"2s\"\nretries = 0\n",
        )
        .expect("valid")
        .alerts
        .expect("on");
        assert_eq!(c.webhook, "http://10.0.0.9:8080/in?src=dns");
        let ca = c.ca_file.expect("ca");
        assert_eq!(ca.path, Path::new("/etc/embargo/siem-ca.pem"));
        assert_eq!((ca.location.line, ca.location.col), (5, 11));
        assert_eq!(
            c.token_file.expect("token").path,
            Path::new("/run/secrets/siem")
        );
        assert_eq!(
            (c.queue, c.per_list, c.window, c.timeout, c.retries),
            (50, 3, Duration::from_secs(300), Duration::from_secs(2), 0)
        );
    }

    #[test]
    fn anything_but_an_http_url_is_refused_with_its_line() {
        for bad in [
            "ftp://siem.example/hook",
            "siem.example/hook",
            "https://",
            "http://siem example/",
            "",
        ] {
            let p = parse(&format!("[alerts]\nwebhook = {bad:?}\n")).expect_err(bad);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(
                p[0].starts_with(
                    "/etc/embargo/embargo.toml:4:11: alerts.webhook: expected an http:// or https:// URL"
                ),
                "{bad}: {p:?}"
            );
        }
        let p = parse("[alerts]\nwebhook = 5\n").expect_err("number");
        assert!(p[0].ends_with("got the number 5"), "{p:?}");
    }

    #[test]
    fn missing_webhook_bad_bounds_and_no_hit_report_are_each_named() {
        let p = parse("[alerts]\nqueue = 0\n").expect_err("no webhook");
        assert_eq!(
            p,
            [
                "/etc/embargo/embargo.toml:3:1: alerts: expected webhook = \"https://...\" (where first hits are posted), got none",
                "/etc/embargo/embargo.toml:4:9: alerts.queue: expected a whole number of alerts (1 to 100000), got the number 0",
            ]
        );
        let p = parse(
            "[alerts]\nwebhook = \"https://s.example/\"\nper_list = 0\nwindow = \"0s\"\n\
             timeout = \"1h\"\nretries = 11\ntoken_file = \"\"\n",
        )
        .expect_err("bounds");
        assert_eq!(p.len(), 5, "{p:?}");
        for want in [
            ":5:12: alerts.per_list: expected a whole number of posts per list per window (1 to 10000)",
            ":6:10: alerts.window: expected a duration from 1s to 1d",
            ":7:11: alerts.timeout: expected a duration from 100ms to 5m",
            ":8:11: alerts.retries: expected a whole number of retries (0 to 10)",
            ":9:14: alerts.token_file: expected a file path",
        ] {
            assert!(p.iter().any(|m| m.contains(want)), "{want}: {p:?}");
        }
        let p = parse("[hits]\nmax_clients = 0\n[alerts]\nwebhook = \"https://s.example/\"\n")
            .expect_err("hits off");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "/etc/embargo/embargo.toml:5:1: alerts: a first hit is the hit report's first sight"
            ),
            "{p:?}"
        );
    }
}
