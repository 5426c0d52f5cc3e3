//! DNSSEC validation of forwarded answers (`[upstream] dnssec = "validate"`),
//! built on hickory's validator (`hickory_net::dnssec::DnssecDnsHandle`).
//!
//! ```text
//!  Handler: a forward to [upstream], CD clear ─► Validator::resolve(query)
//!    bogus.rs   judged bogus lately? SERVFAIL + the same EDE, nobody asked
//!    ask the upstream with DO set (the client's question, as any forward)
//!    handle.rs  hickory's validator, over embargo's upstream: it is handed
//!               that answer, then asks the chain (DNSKEY, DS, NS), kept here
//!    anchors.rs  from the trust anchors: the root's (built in) and the
//!               configured DNSKEYs, and the DNSKEYs the configured DS match
//!    verdict.rs secure: the answer with AD · insecure: without
//!               bogus: SERVFAIL with the EDE that says why (reason.rs)
//!  ─► Handler::answer, as any upstream answer (cached, logged; bogus as `bogus`)
//! ```
//!
//! Why here, after the lists and the cache (STYLE.md's order): a blocked
//! name is answered from its list and never validated; a cached answer was
//! validated before it was kept (under its own key: a CD query's answer,
//! unvalidated, is kept apart, the CD bit being part of the key). With
//! `dnssec = "off"` nothing here exists and the handler's forward path
//! pays one `Option` check.
//!
//! Only `[upstream]`'s answers are validated: a `[[forward]]` zone is most
//! often a private, unsigned one that no public chain of trust reaches.

mod anchors;
mod bogus;
mod handle;
mod reason;
mod verdict;

pub use reason::Ede;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_net::dnssec::DnssecDnsHandle;
use hickory_net::proto::dnssec::TrustAnchors;
use hickory_net::proto::op::{DnsRequestOptions, DnsResponse, Edns, Message, Query};
use hickory_net::xfer::{DnsHandle, FirstAnswer};

use crate::config::{Dnssec, DnssecConfig};
use crate::upstream::{self, Answered, Upstream};
use handle::{Shared, UpstreamHandle};
use verdict::Verdict;

/// The EDNS payload size asked for with DO: the DNS flag day's, as the
/// handler's own forwards use.
const PAYLOAD: u16 = 1232;

/// How deep hickory's validator may nest its lookups (a DNSKEY lookup
/// validates the DS above it, which validates the parent's DNSKEY…): two
/// per zone cut between the anchor and the answer, so 16 reaches a name
/// seven zones below the root. hickory's own default, 26, lets a zone
/// whose DNSKEY is missing cost seconds: each level validates the SOA and
/// the NSEC of the denial apart, so the work doubles with depth (knotd's
/// zone in `tests/it/dnssec/knot.rs`: 9.8 s at 26, 0.44 s at 16).
const MAX_DEPTH: usize = 16;

/// RRsets hickory's validator keeps judged (its LRU cache: the zones'
/// DNSKEY RRsets, used by every query, stay; the answers' own RRsets,
/// which the main cache keeps, come and go). hickory's default, a
/// million, would be a second cache of every answer.
const JUDGED_KEPT: usize = 10_000;

/// The longest hickory's validator trusts an RRset it judged secure
/// without verifying its signature again (a DNSKEY RRset, most often):
/// short, so that a signature that expired, or a key withdrawn, is seen
/// within a minute, as a bogus one is (`bogus_ttl`'s default); long
/// enough that a busy zone's keys are verified once a minute, not once a
/// query.
const SECURE_KEPT_FOR: Duration = Duration::from_secs(60);

/// Validates the answers of one upstream set.
#[derive(Debug)]
pub struct Validator {
    shared: Arc<Shared>,
    handle: UpstreamHandle,
    anchors: anchors::Anchors,
    bogus: bogus::Bogus,
    checker: Mutex<Option<Checker>>,
}

/// hickory's validator over the shared handle, kept while the trust
/// anchors it was given are the ones in force: with it, what it judged.
#[derive(Clone)]
struct Checker {
    anchors: Arc<TrustAnchors>,
    validator: DnssecDnsHandle<UpstreamHandle>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").finish_non_exhaustive()
    }
}

/// What [`Validator::resolve`] found: the answer for the client (as the
/// upstream module would give it), and whether it is a bogus one.
#[derive(Debug)]
pub struct Validated {
    pub answer: Answered,
    pub bogus: bool,
}

impl Validator {
    /// A validator for `upstream`'s answers, or `None` with `dnssec = "off"`.
    pub fn new(upstream: Arc<Upstream>, config: &DnssecConfig) -> Option<Arc<Self>> {
        (config.mode == Dnssec::Validate).then(|| {
            let shared = Shared::new(upstream);
            Arc::new(Self {
                handle: UpstreamHandle::new(shared.clone()),
                shared,
                anchors: anchors::Anchors::new(&config.anchors),
                bogus: bogus::Bogus::new(config.bogus_ttl),
                checker: Mutex::new(None),
            })
        })
    }

    /// hickory's validator for `anchors`: the one kept, while they are
    /// the anchors it was made with (primed ones last an hour; unprimed
    /// ones are new at each query, and so is their validator).
    fn checker(&self, anchors: Arc<TrustAnchors>) -> DnssecDnsHandle<UpstreamHandle> {
        let mut kept = self.checker.lock().ok();
        if let Some(Some(c)) = kept.as_deref()
            && Arc::ptr_eq(&c.anchors, &anchors)
        {
            return c.validator.clone();
        }
        let validator = DnssecDnsHandle::with_trust_anchor(self.handle.clone(), anchors.clone())
            .validation_cache_size(JUDGED_KEPT)
            .positive_validation_ttl(Duration::ZERO..=SECURE_KEPT_FOR);
        if let Some(kept) = kept.as_deref_mut() {
            *kept = Some(Checker {
                anchors,
                validator: validator.clone(),
            });
        }
        validator
    }

    /// Asks the upstream `query` (the handler's upstream query: header,
    /// question, OPT) with DO set, validates the answer, and returns what
    /// the client gets: the answer with AD when secure, without when
    /// insecure, SERVFAIL with an EDE when bogus.
    pub async fn resolve(&self, query: &[u8]) -> Validated {
        let unparsable = || Validated {
            answer: Err(upstream::Error::Unparsable),
            bogus: false,
        };
        let Some(asked) = Message::from_vec(query).ok() else {
            return unparsable();
        };
        let Some(question) = asked.queries.first().cloned() else {
            return unparsable();
        };
        let dnssec_ok = asked.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        if let Some(ede) = self.bogus.judged(&question) {
            return Validated {
                answer: Ok((0, verdict::servfail(query, &ede, dnssec_ok))),
                bogus: true,
            };
        }
        let (server, raw) = match self.shared.upstream.forward(&with_do(&question)).await {
            Ok(answered) => answered,
            Err(e) => {
                return Validated {
                    answer: Err(e),
                    bogus: false,
                };
            }
        };
        let Ok(first) = DnsResponse::from_buffer(raw.clone()) else {
            return unparsable();
        };
        let handle = &self.handle;
        let anchors = self.anchors.get(handle).await;
        let validator = self.checker(anchors);
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        options.edns_set_dnssec_ok = true;
        options.edns_payload_len = PAYLOAD;
        options.recursion_desired = true;
        options.max_request_depth = MAX_DEPTH;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let verdict = handle::answering(question.clone(), first, async {
            let result = validator
                .lookup(question.clone(), options)
                .first_answer()
                .await;
            verdict::judge(result, &question, now, handle).await
        })
        .await;
        match verdict {
            Verdict::Secure => Validated {
                answer: Ok((
                    server,
                    verdict::passed(&raw, dnssec_ok, question.query_type(), true, now),
                )),
                bogus: false,
            },
            Verdict::Insecure => Validated {
                answer: Ok((
                    server,
                    verdict::passed(&raw, dnssec_ok, question.query_type(), false, now),
                )),
                bogus: false,
            },
            Verdict::Bogus(ede) => {
                tracing::info!(query = %question.name(), qtype = %question.query_type(), ede = ede.code, why = %ede.text, "DNSSEC bogus: SERVFAIL");
                let answer = verdict::servfail(query, &ede, dnssec_ok);
                self.bogus.remember(&question, ede);
                Validated {
                    answer: Ok((server, answer)),
                    bogus: true,
                }
            }
        }
    }
}

/// The upstream query for `question`: RD, and an OPT with DO set, which
/// validation needs whatever the client asked (the RRSIGs are taken out
/// again for a client without DO, in `verdict::passed`).
fn with_do(question: &Query) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(PAYLOAD);
    edns.enable_dnssec();
    m.edns = Some(edns);
    m.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    fn kept(v: &Validator) -> Option<*const TrustAnchors> {
        let kept = v.checker.lock().expect("lock");
        kept.as_ref().map(|c| Arc::as_ptr(&c.anchors))
    }

    /// Issue 19 (speed): one hickory validator, and with it the RRsets it
    /// judged (a zone's DNSKEY RRset, verified once, not once a query),
    /// serves every query while the trust anchors stay the same; primed
    /// again (new anchors), a new one starts.
    #[test]
    fn one_validator_serves_every_query_while_the_anchors_stay() {
        let config = DnssecConfig {
            mode: Dnssec::Validate,
            ..DnssecConfig::default()
        };
        let upstream = Arc::new(Upstream::new(&UpstreamConfig::default()));
        let v = Validator::new(upstream, &config).expect("validate");
        assert_eq!(kept(&v), None);
        let first = Arc::new(TrustAnchors::default());
        let _ = v.checker(first.clone());
        let _ = v.checker(first.clone());
        assert_eq!(kept(&v), Some(Arc::as_ptr(&first)));
        let primed = Arc::new(TrustAnchors::default());
        let _ = v.checker(primed.clone());
        assert_eq!(kept(&v), Some(Arc::as_ptr(&primed)));
    }
}
