//! The canaries: a name per list that must stay blocked (`[[lists]]
//! canary`), asked of the running server every `[block] canary_interval`
//! over its own UDP listener, as a client would ask it.
//!
//! ```text
//!  watch (a runtime task, off the serving path)
//!    every interval, and after each reload ─► snapshot: the lists with a canary
//!      ─► UDP socket on 127.0.0.1:0 (or [::1]:0) ─► the first listener ─► Handler (as any client)
//!      ◄─ the answer: a block whose EDE names the list? ─► Canaries (per list: ok or why not)
//!                                                           ├─ /readyz 503, naming list and reason
//!                                                           ├─ embargo_canary_ok{list}, _checks_total
//!                                                           └─ /api/lists "canary"; the log, once per change
//! ```
//!
//! Why over the wire and not a matcher lookup: a lookup proves the
//! snapshot, the wire proves what clients get (the swap happened, the
//! listener answers, the policy writes its block). A reload that loaded a
//! copy that lost the canary is applied (a copy that loads is the copy in
//! force; "last good copy" is about copies that fail to load): this is
//! what catches it.
//!
//! Noise: the socket is bound once, and the observer leaves its queries
//! out of the hit report, the latest records and the query log
//! ([`crate::observe::Observer::ignore`]); the counters (`embargo_queries_total`,
//! `embargo_blocked_total`) and dnstap still count them, one query per
//! canary per interval. Nothing is added to the query path.

mod probe;

pub use probe::Outcome;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::check;
use crate::config::Config;
use crate::observe::metrics::Text;
use crate::reload::Progress;
use crate::server::Handler;
use crate::state::Snapshot;

/// How one list's canary stands.
#[derive(Debug, Clone)]
struct Watched {
    canary: String,
    /// The last check's outcome; `None` before the first.
    last: Option<Outcome>,
    /// When the last check ran, seconds since the epoch.
    checked_at: u64,
    ok: u64,
    failed: u64,
}

/// Every canary's state, shared by the watch task (which writes it) and
/// the HTTP side (`/readyz`, `/metrics`, `/api/lists`).
#[derive(Debug, Default)]
pub struct Canaries {
    lists: Mutex<BTreeMap<String, Watched>>,
}

impl Canaries {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Watched>> {
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the lists of `wanted` (list, canary), forgetting the others
    /// and any whose canary changed.
    fn keep(&self, wanted: &[(String, String)]) {
        let mut lists = self.lock();
        lists.retain(|name, w| wanted.iter().any(|(n, c)| n == name && *c == w.canary));
        for (name, canary) in wanted {
            lists.entry(name.clone()).or_insert_with(|| Watched {
                canary: canary.clone(),
                last: None,
                checked_at: 0,
                ok: 0,
                failed: 0,
            });
        }
    }

    /// Records a check of `list`'s canary; logs a change of state (an
    /// error when it fails, whatever it was before; info when it passes
    /// again or for the first time), never the same state twice.
    fn record(&self, list: &str, outcome: Outcome) {
        let mut lists = self.lock();
        let Some(w) = lists.get_mut(list) else {
            return;
        };
        let was_ok = w
            .last
            .as_ref()
            .map(|o| matches!(o, Outcome::Blocked { .. }));
        match &outcome {
            Outcome::Blocked { by } => {
                w.ok += 1;
                if was_ok != Some(true) {
                    let by = by.as_deref().unwrap_or(list);
                    tracing::info!(list, canary = %w.canary, blocked_by = by, "canary blocked, as it must be");
                }
            }
            Outcome::Failed(why) => {
                w.failed += 1;
                if was_ok != Some(false) {
                    tracing::error!(list, canary = %w.canary, reason = %why, "canary NOT blocked: the list does not block its canary");
                }
            }
        }
        w.last = Some(outcome);
        w.checked_at = crate::source::store::now();
    }

    /// Why the server is not ready, one line per failing canary: what
    /// `/readyz` adds to its reasons.
    pub fn failures(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|(list, w)| match &w.last {
                Some(Outcome::Failed(why)) => Some(format!(
                    "list {list}: canary {} not blocked: {why}",
                    w.canary
                )),
                _ => None,
            })
            .collect()
    }

    /// `list`'s canary for `/api/lists`: the name, whether the copy in
    /// force covers it, and the last check (`null` before the first).
    pub fn json(&self, list: &str, canary: &str, listed: bool) -> Value {
        let lists = self.lock();
        let w = lists.get(list).filter(|w| w.canary == canary);
        let last = w.and_then(|w| w.last.as_ref().map(|o| (w, o)));
        json!({
            "name": canary,
            "listed": listed,
            "ok": last.map(|(_, o)| matches!(o, Outcome::Blocked { .. })),
            "blocked_by": last.and_then(|(_, o)| match o {
                Outcome::Blocked { by } => Some(by.clone().unwrap_or_else(|| list.to_owned())),
                Outcome::Failed(_) => None,
            }),
            "reason": last.and_then(|(_, o)| match o {
                Outcome::Failed(why) => Some(why.clone()),
                Outcome::Blocked { .. } => None,
            }),
            "last_checked": last.map(|(w, _)| w.checked_at),
        })
    }

    /// The canaries' families, as Prometheus text: a gauge per list with
    /// a canary, once checked, and the checks by result.
    pub fn render(&self) -> String {
        let lists = self.lock();
        let mut t = Text::new();
        if lists.is_empty() {
            return t.finish();
        }
        t.family(
            "embargo_canary_ok",
            "gauge",
            "1 while the list's canary is answered blocked, 0 once it is not (lists with a canary, once checked).",
        );
        for (list, w) in lists.iter() {
            if let Some(o) = &w.last {
                let ok = u8::from(matches!(o, Outcome::Blocked { .. }));
                t.sample("embargo_canary_ok", &[("list", list)], ok);
            }
        }
        t.family(
            "embargo_canary_checks_total",
            "counter",
            "Canary questions the server asked itself, by list and result.",
        );
        for (list, w) in lists.iter() {
            t.sample(
                "embargo_canary_checks_total",
                &[("list", list), ("result", "ok")],
                w.ok,
            );
            t.sample(
                "embargo_canary_checks_total",
                &[("list", list), ("result", "failed")],
                w.failed,
            );
        }
        t.finish()
    }
}

/// The address a client on this host reaches `listener` at: a wildcard
/// address is reached on loopback (0.0.0.0 at 127.0.0.1, [::] at ::1).
pub fn reach(listener: SocketAddr) -> SocketAddr {
    match listener.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listener.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listener.port())
        }
        _ => listener,
    }
}

/// The address the canary asks from, for a server whose first listener is
/// `to`: loopback of its family (the source address of the query).
fn source_for(to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
    }
}

/// What `validate` says of the canaries in `snap` (built from `config`):
/// one line per list whose canary would not be blocked when the server
/// asks for it, none when all would. A list that was not loaded (not yet
/// downloaded, expired) is not judged: there is no copy to look at.
pub fn problems(config: &Config, snap: &Snapshot) -> Vec<String> {
    // The canary asks from loopback, as the running server will.
    let client = config
        .listen
        .first()
        .map_or(Ipv4Addr::LOCALHOST.into(), |&a| source_for(reach(a)).ip());
    let asker = check::client(snap, client);
    let mut out = Vec::new();
    for l in &snap.lists {
        let Some(canary) = &l.spec.canary else {
            continue;
        };
        if l.note.is_some() {
            continue;
        }
        let (name, at) = (&l.spec.name, &l.spec.location);
        if !l.canary_listed {
            out.push(format!(
                "{at}: list {name}: canary {canary} is not on the list: no entry of {} covers it",
                l.spec.path.display()
            ));
            continue;
        }
        let c = check::name(snap, canary, Some(&asker));
        if c.verdict != "blocked" {
            out.push(format!(
                "{at}: list {name}: canary {canary} is on the list but would be answered {} to the canary's own query from {client}{}",
                c.verdict,
                c.detail.map_or(String::new(), |d| format!(" ({d})")),
            ));
        }
    }
    out
}

/// Asks for every canary of the snapshot in force, every `interval` and
/// after each reload (`progress`), over UDP to the server's listener
/// `listener`; records what each answer says in `canaries`. Runs until
/// aborted. Each question waits at most `wait` (more than the upstream
/// timeout: a canary that leaked is forwarded, and its SERVFAIL says more
/// than a timeout).
pub async fn watch(
    interval: Duration,
    wait: Duration,
    listener: SocketAddr,
    handler: Arc<Handler>,
    canaries: Arc<Canaries>,
    mut progress: Option<watch::Receiver<Progress>>,
) {
    let to = reach(listener);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut finished = progress
        .as_mut()
        .map_or(0, |p| p.borrow_and_update().finished);
    let mut sock: Option<UdpSocket> = None;
    let mut bind_failed = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = async {
                match progress.as_mut() {
                    Some(p) => p.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(p) = progress.as_mut() else { continue };
                if changed.is_err() {
                    // The reload loop is gone: the interval alone.
                    progress = None;
                    continue;
                }
                // A reload that only started has changed nothing yet.
                let done = p.borrow_and_update().finished;
                if done == finished {
                    continue;
                }
                finished = done;
            }
        }
        let snap = handler.state().load_full();
        let wanted: Vec<(String, String)> = snap
            .lists
            .iter()
            .filter_map(|l| Some((l.spec.name.clone(), l.spec.canary.clone()?)))
            .collect();
        canaries.keep(&wanted);
        if wanted.is_empty() {
            continue;
        }
        if sock.is_none() {
            match UdpSocket::bind(source_for(to)).await {
                Ok(s) => {
                    if let Ok(own) = s.local_addr() {
                        handler.observer().ignore(own);
                    }
                    sock = Some(s);
                }
                Err(e) => {
                    if !bind_failed {
                        tracing::error!(error = %e, "canary: cannot bind a UDP socket on loopback to ask from");
                        bind_failed = true;
                    }
                    for (list, _) in &wanted {
                        canaries.record(
                            list,
                            Outcome::Failed(format!("cannot bind a socket to ask from: {e}")),
                        );
                    }
                    continue;
                }
            }
        }
        let Some(s) = &sock else { continue };
        let client = s.local_addr().map_or(to.ip(), |a| a.ip());
        let names: Vec<&str> = snap.lists.iter().map(|l| l.spec.name.as_str()).collect();
        for (list, canary) in &wanted {
            let listed = snap
                .lists
                .iter()
                .any(|l| l.spec.name == *list && l.canary_listed);
            let outcome = match probe::ask(s, to, canary, wait).await {
                Ok(answer) => probe::judge(&answer, list, &names, listed, client),
                Err(e) => Outcome::Failed(e.to_string()),
            };
            canaries.record(list, outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let r = |s: &str| reach(s.parse().expect("addr")).to_string();
        assert_eq!(r("0.0.0.0:53"), "127.0.0.1:53");
        assert_eq!(r("[::]:5353"), "[::1]:5353");
        assert_eq!(r("192.0.2.1:53"), "192.0.2.1:53");
        assert_eq!(
            source_for("[::1]:53".parse().expect("addr")).ip(),
            IpAddr::from(Ipv6Addr::LOCALHOST)
        );
    }

    #[test]
    fn a_failure_is_reported_until_a_good_answer_clears_it() {
        let c = Canaries::default();
        c.keep(&[("seized".into(), "canary.example".into())]);
        assert!(c.failures().is_empty(), "not checked yet: not a failure");
        assert!(
            !c.render().contains("embargo_canary_ok{"),
            "no gauge before a check"
        );
        c.record("seized", Outcome::Failed("answered unblocked".into()));
        assert_eq!(
            c.failures(),
            ["list seized: canary canary.example not blocked: answered unblocked"]
        );
        assert!(c.render().contains("embargo_canary_ok{list=\"seized\"} 0"));
        c.record("seized", Outcome::Blocked { by: None });
        assert!(c.failures().is_empty());
        let text = c.render();
        assert!(
            text.contains("embargo_canary_ok{list=\"seized\"} 1"),
            "{text}"
        );
        assert!(text.contains("embargo_canary_checks_total{list=\"seized\",result=\"failed\"} 1"));
        assert_eq!(c.json("seized", "canary.example", true)["ok"], true);
        // A new canary for the list starts over.
        c.keep(&[("seized".into(), "other.example".into())]);
        assert_eq!(c.json("seized", "other.example", true)["ok"], Value::Null);
    }
}
