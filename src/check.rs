//! What the rules in force say about a name, and about a client: the
//! answer of `embargo check` and of `GET /api/check`, worked out once here
//! so that the command line and the API never disagree.

use std::net::IpAddr;

use serde::Serialize;

use crate::access::{AccessAction, Judgement};
use crate::matcher::{Lookup, NameKey};
use crate::state::Snapshot;

/// What `[access]` and `[rate_limit]` make of a client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientCheck {
    pub client: IpAddr,
    /// `"allowed"`, or what its queries get instead: `"refused"`, `"dropped"`.
    pub verdict: &'static str,
    /// The whole story in one line, as `embargo check --client` prints it.
    pub detail: String,
}

impl ClientCheck {
    /// Whether the client's queries are answered at all.
    pub fn answered(&self) -> bool {
        self.verdict == "allowed"
    }
}

/// Judges `client` against the snapshot's access rules and rate limiter.
pub fn client(snap: &Snapshot, client: IpAddr) -> ClientCheck {
    let not_answered = snap.access.refuses(client).map(|a| match a {
        AccessAction::Refuse => "refused",
        AccessAction::Drop => "dropped",
    });
    let detail = match (snap.access.judge(client), not_answered) {
        (Judgement::Denied(net), Some(word)) => {
            format!("client {client}: {word} (denied by {net})")
        }
        (Judgement::NotAllowed, Some(word)) => {
            format!("client {client}: {word} (not in [access] allow)")
        }
        (Judgement::Allowed(net), None) => {
            let limit = match &snap.limiter {
                None => String::new(),
                Some(l) => {
                    let s = l.settings();
                    match s.exempt.find(client) {
                        Some(net) => format!("; not rate limited (exempt by {net})"),
                        None => format!(
                            "; rate limited over UDP to {} answers a second per /{} (IPv4) or /{} (IPv6)",
                            s.responses_per_second, s.ipv4_prefix, s.ipv6_prefix
                        ),
                    }
                }
            };
            format!("client {client}: allowed by {net}{limit}")
        }
        // judge and refuses read the same rules; they cannot disagree.
        (_, word) => format!("client {client}: {}", word.unwrap_or("allowed")),
    };
    ClientCheck {
        client,
        verdict: not_answered.unwrap_or("allowed"),
        detail,
    }
}

/// Which list blocks a name, and on whose authority.
#[derive(Debug, Clone, Serialize)]
pub struct BlockDetail {
    pub list: String,
    /// The list entry that matched (the name itself or a parent).
    pub entry: String,
    pub action: &'static str,
    /// The RFC 8914 INFO-CODE and its meaning.
    pub ede: u16,
    pub ede_meaning: &'static str,
    /// The EDE text the client gets.
    pub why: String,
    pub authority: String,
    pub reason: String,
    pub reference: String,
}

/// What the rules say about one name.
#[derive(Debug, Clone, Serialize)]
pub struct NameCheck {
    /// The name as normalised (lowercase, no final dot), or as given when
    /// it is not a valid name.
    pub name: String,
    /// `"blocked"`, `"allowed"`, `"invalid"`, or `"refused"`/`"dropped"`
    /// when the client asking may not ask.
    pub verdict: &'static str,
    /// Why it is invalid, the allowlist entry that allows it, or that the
    /// client may not ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<BlockDetail>,
}

/// Checks `text` against the snapshot, as asked by `asker` if known:
/// nothing about the name is said to a client that may not ask.
pub fn name(snap: &Snapshot, text: &str, asker: Option<&ClientCheck>) -> NameCheck {
    let key = match NameKey::from_text(text, true) {
        Ok(k) => k,
        Err(e) => {
            return NameCheck {
                name: text.to_owned(),
                verdict: "invalid",
                detail: Some(e.to_string()),
                block: None,
            };
        }
    };
    let name = key.to_string();
    if let Some(c) = asker.filter(|c| !c.answered()) {
        return NameCheck {
            name,
            verdict: c.verdict,
            detail: Some("client not allowed".into()),
            block: None,
        };
    }
    let allowed = |detail| NameCheck {
        name: name.clone(),
        verdict: "allowed",
        detail,
        block: None,
    };
    match snap.set.lookup(&key) {
        Lookup::Miss => allowed(None),
        Lookup::Allowed { suffix } => {
            allowed(Some(format!("allowlist entry {}", key.suffix(suffix))))
        }
        Lookup::Blocked(hit) => {
            let found = snap
                .policy(hit.policy)
                .and_then(|p| Some((p, snap.lists.get(p.list)?)));
            let Some((policy, list)) = found else {
                // A policy id from this snapshot's own matcher always resolves.
                return allowed(None);
            };
            let p = &list.spec.provenance;
            NameCheck {
                name: name.clone(),
                verdict: "blocked",
                detail: None,
                block: Some(BlockDetail {
                    list: list.spec.name.clone(),
                    entry: key.suffix(hit.suffix).to_string(),
                    action: policy.action.as_str(),
                    ede: policy.ede.code(),
                    ede_meaning: policy.ede.as_str(),
                    why: policy.ede_text.to_string(),
                    authority: p.authority.clone(),
                    reason: p.reason.clone(),
                    reference: p.reference.clone(),
                }),
            }
        }
    }
}
