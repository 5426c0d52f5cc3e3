//! First-hit alerts (`[alerts]`): when the hit report sees a client on a
//! list for the first time, one JSON object is POSTed to the security
//! team's webhook (a SIEM, a SOAR, a chat bridge).
//!
//! ```text
//!  observer thread: HitReport::record says "first" ─► FirstHit ─► try_send ─┐  full: dropped,
//!                                                                           │  counted, never waited for
//!                                                                           ▼
//!  poster task (tokio): per-list Limiter ─► outbox (bounded) ─► one POST at a time,
//!                       held back: counted,                     retried with backoff;
//!                       one summary per list per window         failed: counted, logged once a minute
//! ```
//!
//! Nothing here runs on the serving path: a first hit is decided on the
//! observer's thread, which already keeps the hit report (`hits.rs`), and
//! the only new work there is building a [`FirstHit`] and one `try_send`
//! when a client is new to a list. "First" is the hit report's: a client
//! it holds, restored from `STATE/hits.json` at start, is not new after a
//! restart; one it evicted (`[hits] max_clients`) is new again.
//!
//! The field names are the query log's (`client`, `client_id`, `group`,
//! `list`, `name`, `type`, `entry`, `net`, `action`) and `/api/lists`'
//! (`provenance` with `authority`, `reason`, `reference`), so a SIEM parses
//! alerts and log records with one mapping.

mod limit;

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{AlertsConfig, FIRST_BACKOFF, Location, MAX_BACKOFF, NamedFile};
use crate::state::{ListSlot, ListSlots, Snapshot};
use crate::wire::TypeName;

use super::event::{QueryEvent, name_text};
use super::hits::rfc3339_ms;
use super::querylog::ClientId;
use limit::{Limiter, Summary};

/// How often the poster looks for windows that have ended.
const TICK: Duration = Duration::from_millis(200);
/// At most one "alerts failed" warning per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why alerts cannot start. Each names the config key's place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{location}: alerts.token_file {}: {source}", path.display())]
    Token {
        location: Location,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: alerts.token_file {}: empty (the file holds the bearer token)", path.display())]
    EmptyToken {
        location: Location,
        path: std::path::PathBuf,
    },
    #[error("{location}: alerts.ca_file {}: {source}", path.display())]
    Ca {
        location: Location,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: alerts.ca_file {}: no PEM certificate in it{why}", path.display())]
    CaPem {
        location: Location,
        path: std::path::PathBuf,
        why: String,
    },
    #[error("alerts: cannot make the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("alerts: the poster needs the tokio runtime, and there is none here")]
    NoRuntime,
}

/// A client's first hit on a list, as the observer thread hands it over:
/// text already, so the poster never needs the observer's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstHit {
    pub time_ms: u64,
    pub list: Arc<str>,
    /// As the query log shows it (`[log] client_ip`).
    pub client: String,
    /// The ID the client named itself by (DoT SNI, DoH path).
    pub client_id: Option<Arc<str>>,
    pub group: Option<Arc<str>>,
    pub name: String,
    pub qtype: String,
    /// The listed entry that matched (a suffix of `name`).
    pub entry: Option<String>,
    /// The listed network an answer's address fell in (response-IP blocking).
    pub net: Option<String>,
    pub action: Option<&'static str>,
}

impl FirstHit {
    /// The first hit `ev` is, for `client` (as the hit report keys it).
    pub(super) fn of(ev: &QueryEvent, client: ClientId, slots: &ListSlots) -> Option<Self> {
        Some(Self {
            time_ms: ev.time_us / 1000,
            list: slots.name(ev.list)?,
            client: client.to_string(),
            client_id: ev.client_id.name(),
            group: (ev.group != ListSlot::NONE)
                .then(|| slots.name(ev.group))
                .flatten(),
            name: name_text(ev.name().unwrap_or_default()),
            qtype: TypeName(ev.qtype).to_string(),
            entry: ev.entry().map(name_text),
            net: ev.net().map(|n| n.to_string()),
            action: ev.action.map(crate::policy::Action::as_str),
        })
    }
}

/// What is read from the files `[alerts]` names.
pub struct Secrets {
    token: Option<String>,
    roots: Vec<reqwest::Certificate>,
}

/// Reads `token_file` and `ca_file` (at start, and for `embargo validate`).
pub fn read_secrets(config: &AlertsConfig) -> Result<Secrets, Error> {
    let token = match &config.token_file {
        None => None,
        Some(NamedFile { path, location }) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Token {
                location: location.clone(),
                path: path.clone(),
                source,
            })?;
            let t = text.trim();
            if t.is_empty() {
                return Err(Error::EmptyToken {
                    location: location.clone(),
                    path: path.clone(),
                });
            }
            Some(t.to_owned())
        }
    };
    let roots = match &config.ca_file {
        None => Vec::new(),
        Some(NamedFile { path, location }) => read_roots(path, location)?,
    };
    Ok(Secrets { token, roots })
}

fn read_roots(path: &Path, location: &Location) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem = std::fs::read(path).map_err(|source| Error::Ca {
        location: location.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    let no_pem = |why: String| Error::CaPem {
        location: location.clone(),
        path: path.to_path_buf(),
        why,
    };
    let roots =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| no_pem(format!(": {e}")))?;
    if roots.is_empty() {
        return Err(no_pem(String::new()));
    }
    Ok(roots)
}

/// The poster's counters, read by `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    queue_full: AtomicU64,
    failed: AtomicU64,
    /// First hits held back for a summary, by list.
    suppressed: Mutex<BTreeMap<Arc<str>, u64>>,
}

/// What the alerts have done since the server started (`/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertCounts {
    /// Posts the receiver took (2xx): first hits and summaries.
    pub sent: u64,
    /// Alerts dropped because a queue was full.
    pub queue_full: u64,
    /// Posts given up after their retries, or refused by the receiver.
    pub failed: u64,
    /// First hits held back by the per-list rate, by list (each was in a
    /// summary).
    pub suppressed: Vec<(String, u64)>,
}

/// The observer's end of the alerts: hands first hits to the poster.
#[derive(Debug, Clone)]
pub struct Alerts {
    tx: mpsc::Sender<FirstHit>,
    counters: Arc<Counters>,
}

impl Alerts {
    /// Reads the token and CA files and starts the poster on the current
    /// tokio runtime. `state` gives each list's provenance as it is when
    /// the alert is posted.
    pub fn start(config: &AlertsConfig, state: Arc<ArcSwap<Snapshot>>) -> Result<Self, Error> {
        let secrets = read_secrets(config)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("embargo/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.timeout);
        for root in secrets.roots {
            builder = builder.add_root_certificate(root);
        }
        let client = builder.build().map_err(Error::Client)?;
        let url: Arc<str> = config.webhook.as_str().into();
        tracing::info!(
            webhook = %shown(&url),
            per_list = config.per_list,
            window = %humantime::format_duration(config.window),
            "alerts: posting first hits"
        );
        // (The config allows no 0, which tokio's channel would panic on.)
        let queue = config.queue.max(1);
        let (tx, rx) = mpsc::channel(queue);
        let counters = Arc::new(Counters::default());
        let poster = Poster {
            client,
            url,
            token: secrets.token.map(Into::into),
            retries: config.retries,
            queue,
            limiter: Limiter::new(config.per_list, config.window),
            counters: counters.clone(),
            state,
            outbox: VecDeque::new(),
            failures: FailureLog::default(),
        };
        runtime.spawn(poster.run(rx));
        Ok(Self { tx, counters })
    }

    /// Hands `hit` to the poster; a full queue drops it and counts it.
    pub fn send(&self, hit: FirstHit) {
        if self.tx.try_send(hit).is_err() {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> AlertCounts {
        let c = &self.counters;
        AlertCounts {
            sent: c.sent.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            suppressed: c
                .suppressed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(l, n)| (l.to_string(), *n))
                .collect(),
        }
    }
}

/// Failed posts, logged at most once a [`WARN_EVERY`].
#[derive(Debug, Default)]
struct FailureLog {
    since_warned: u64,
    last: String,
    warned: Option<Instant>,
}

impl FailureLog {
    fn note(&mut self, why: String) {
        self.since_warned += 1;
        self.last = why;
        self.warn();
    }

    fn warn(&mut self) {
        if self.since_warned > 0 && self.warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                failed = self.since_warned,
                last_error = %self.last,
                "alerts: posts to the webhook failed and were dropped (queries are not affected)"
            );
            self.since_warned = 0;
            self.warned = Some(Instant::now());
        }
    }
}

/// The task that rate-limits and posts.
struct Poster {
    client: reqwest::Client,
    url: Arc<str>,
    token: Option<Arc<str>>,
    retries: u32,
    queue: usize,
    limiter: Limiter,
    counters: Arc<Counters>,
    state: Arc<ArcSwap<Snapshot>>,
    /// Bodies waiting for the post in flight to finish.
    outbox: VecDeque<Vec<u8>>,
    failures: FailureLog,
}

fn now_ms() -> u64 {
    super::now_us() / 1000
}

impl Poster {
    /// Takes first hits until every sender is gone, posting one at a
    /// time; what is held back when it ends is summarised and posted.
    async fn run(mut self, mut rx: mpsc::Receiver<FirstHit>) {
        let mut inflight: Option<JoinHandle<Result<(), String>>> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        loop {
            tokio::select! {
                done = finished(&mut inflight) => {
                    inflight = None;
                    match done {
                        Ok(()) => {
                            self.counters.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => {
                            self.counters.failed.fetch_add(1, Ordering::Relaxed);
                            self.failures.note(why);
                        }
                    }
                }
                hit = rx.recv(), if open => match hit {
                    Some(hit) => self.take(&hit),
                    None => {
                        open = false;
                        for s in self.limiter.flush(now_ms()) {
                            self.summarise(&s);
                        }
                    }
                },
                _ = tick.tick() => {
                    for s in self.limiter.due(now_ms()) {
                        self.summarise(&s);
                    }
                    self.failures.warn();
                }
            }
            if inflight.is_none()
                && let Some(body) = self.outbox.pop_front()
            {
                inflight = Some(tokio::spawn(post(
                    self.client.clone(),
                    self.url.clone(),
                    self.token.clone(),
                    body,
                    self.retries,
                )));
            }
            if !open && inflight.is_none() && self.outbox.is_empty() {
                return;
            }
        }
    }

    /// A first hit: posted, or held back for its list's summary.
    fn take(&mut self, hit: &FirstHit) {
        let now = now_ms();
        for s in self.limiter.due(now) {
            self.summarise(&s);
        }
        if self.limiter.admit(hit, now) {
            let body = self.first_hit(hit);
            self.queue_body(&body);
        } else {
            *self
                .counters
                .suppressed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(hit.list.clone())
                .or_default() += 1;
        }
    }

    fn summarise(&mut self, s: &Summary) {
        let body = summary_body(s, self.provenance(&s.list));
        self.queue_body(&body);
    }

    fn queue_body(&mut self, body: &Value) {
        if self.outbox.len() >= self.queue {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.outbox.push_back(body.to_string().into_bytes());
    }

    fn first_hit(&self, hit: &FirstHit) -> Value {
        first_hit_body(hit, self.provenance(&hit.list))
    }

    /// The list's provenance in the snapshot in force (empty strings for
    /// a list a reload has just removed).
    fn provenance(&self, list: &str) -> Value {
        let snap = self.state.load();
        let p = snap
            .lists
            .iter()
            .find(|l| l.spec.name == list)
            .map(|l| l.spec.provenance.clone())
            .unwrap_or_default();
        json!({
            "authority": p.authority,
            "reason": p.reason,
            "reference": p.reference,
        })
    }
}

/// The post in flight's outcome, or never when there is none.
async fn finished(inflight: &mut Option<JoinHandle<Result<(), String>>>) -> Result<(), String> {
    match inflight {
        Some(h) => h.await.unwrap_or_else(|e| Err(e.to_string())),
        None => std::future::pending().await,
    }
}

/// `{"event":"first_hit", ...}`: the fields the query log names alike.
fn first_hit_body(hit: &FirstHit, provenance: Value) -> Value {
    let mut v = json!({
        "event": "first_hit",
        "time": rfc3339_ms(hit.time_ms),
        "client": hit.client,
        "list": &*hit.list,
        "name": hit.name,
        "type": hit.qtype,
        "entry": hit.entry,
        "action": hit.action,
        "provenance": provenance,
    });
    if let Some(o) = v.as_object_mut() {
        if let Some(id) = &hit.client_id {
            o.insert("client_id".into(), json!(&**id));
        }
        if let Some(g) = &hit.group {
            o.insert("group".into(), json!(&**g));
        }
        if let Some(n) = &hit.net {
            o.insert("net".into(), json!(n));
        }
    }
    v
}

/// `{"event":"first_hits_suppressed", ...}`: what one list's window held back.
fn summary_body(s: &Summary, provenance: Value) -> Value {
    let examples: Vec<Value> = s
        .examples
        .iter()
        .map(|h| {
            json!({
                "time": rfc3339_ms(h.time_ms),
                "client": h.client,
                "name": h.name,
                "type": h.qtype,
            })
        })
        .collect();
    json!({
        "event": "first_hits_suppressed",
        "list": &*s.list,
        "count": s.count,
        "clients": s.clients,
        "since": rfc3339_ms(s.since_ms),
        "until": rfc3339_ms(s.until_ms),
        "examples": examples,
        "provenance": provenance,
    })
}

/// The wait before retry `n` (1-based): doubling from [`FIRST_BACKOFF`].
fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// POSTs `body`, retrying what may pass on a second try (no answer, a
/// timeout, 408, 429, 5xx); another answer is final. `Err` says why the
/// last attempt failed.
async fn post(
    client: reqwest::Client,
    url: Arc<str>,
    token: Option<Arc<str>>,
    body: Vec<u8>,
    retries: u32,
) -> Result<(), String> {
    let mut why = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let mut req = client
            .post(&*url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let s = r.status();
                why = format!("{} answered {s}", shown(&url));
                let again = s.is_server_error()
                    || s == reqwest::StatusCode::REQUEST_TIMEOUT
                    || s == reqwest::StatusCode::TOO_MANY_REQUESTS;
                if !again {
                    return Err(why);
                }
            }
            // Without the URL: a webhook's may hold a secret (Slack's do).
            Err(e) => why = error_chain(&e.without_url()),
        }
    }
    Err(why)
}

/// The webhook as logs show it: scheme, host and port, never the path or
/// query, where many receivers keep a secret.
fn shown(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => format!(
            "{}://{}",
            u.scheme_str().unwrap_or("?"),
            u.authority()
                .map_or("?", |a| a.as_str().rsplit('@').next().unwrap_or("?"))
        ),
        Err(_) => "the webhook".into(),
    }
}

/// An error with its causes (reqwest's own says only "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit() -> FirstHit {
        FirstHit {
            time_ms: 1_000,
            list: "seized".into(),
            client: "10.0.0.7".into(),
            client_id: Some("laptop-7".into()),
            group: None,
            name: "www.seized.example".into(),
            qtype: "AAAA".into(),
            entry: Some("seized.example".into()),
            net: None,
            action: Some("nxdomain"),
        }
    }

    #[test]
    fn a_first_hit_uses_the_query_logs_field_names() {
        let v = first_hit_body(&hit(), json!({"authority": "Court"}));
        assert_eq!(v["event"], "first_hit");
        assert_eq!(v["time"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["client"], "10.0.0.7");
        assert_eq!(v["client_id"], "laptop-7");
        assert_eq!(v["type"], "AAAA");
        assert_eq!(v["entry"], "seized.example");
        assert_eq!(v["provenance"]["authority"], "Court");
        assert!(v.get("group").is_none() && v.get("net").is_none(), "{v}");
    }

    #[test]
    fn a_summary_counts_and_shows_examples() {
        let s = Summary {
            list: "seized".into(),
            count: 42,
            clients: 40,
            examples: vec![hit()],
            since_ms: 0,
            until_ms: 60_000,
        };
        let v = summary_body(&s, json!({}));
        assert_eq!(v["event"], "first_hits_suppressed");
        assert_eq!(
            (v["count"].as_u64(), v["clients"].as_u64()),
            (Some(42), Some(40))
        );
        assert_eq!(v["until"], "1970-01-01T00:01:00.000Z");
        assert_eq!(v["examples"][0]["name"], "www.seized.example");
    }

    #[test]
    fn logs_show_no_secret_of_the_url() {
        assert_eq!(
            shown("https://user:pw@hooks.example:8443/services/T0/B0/secret?k=v"),
            "https://hooks.example:8443"
        );
        assert_eq!(shown("http://10.0.0.9/in"), "http://10.0.0.9");
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(10), MAX_BACKOFF);
    }

    #[test]
    fn unreadable_or_empty_secrets_name_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let at = Location {
            file: "/etc/embargo/embargo.toml".into(),
            line: 7,
            col: 14,
        };
        let mut c = AlertsConfig::new("https://s.example/".into());
        c.token_file = Some(NamedFile {
            path: dir.path().join("missing"),
            location: at.clone(),
        });
        let e = read_secrets(&c).err().expect("missing").to_string();
        assert!(
            e.starts_with("/etc/embargo/embargo.toml:7:14: alerts.token_file "),
            "{e}"
        );
        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        c.token_file = Some(NamedFile {
            path: dir.path().join("empty"),
            location: at.clone(),
        });
        let e = read_secrets(&c).err().expect("empty").to_string();
        assert!(
            e.ends_with("empty (the file holds the bearer token)"),
            "{e}"
        );
        c.token_file = None;
        std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").expect("write");
        c.ca_file = Some(NamedFile {
            path: dir.path().join("ca.pem"),
            location: at,
        });
        let e = read_secrets(&c).err().expect("no pem").to_string();
        assert!(
            e.contains("alerts.ca_file") && e.contains("no PEM certificate"),
            "{e}"
        );
    }
}
