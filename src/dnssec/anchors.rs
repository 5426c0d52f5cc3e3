//! The trust anchors hickory's validator starts from: the root's built-in
//! keys (hickory's, IANA's KSK-2017 and KSK-2024) unless a configured file
//! anchors the root itself, every configured DNSKEY, and for each
//! configured DS the zone's DNSKEYs that match it.
//!
//! hickory's `TrustAnchors` holds keys, not digests, so a DS anchor is
//! turned into its key by asking the zone's DNSKEY RRset (through the
//! upstream) and keeping the keys whose digest is the DS. That needs the
//! network, so it is done at the first validation, not at load time; a
//! DS that matched nothing yet (the upstream did not answer) is tried
//! again at the next one, and the set is kept once every DS matched.

use std::sync::{Arc, Mutex};

use hickory_net::proto::dnssec::TrustAnchors;
use hickory_net::proto::dnssec::rdata::{DNSKEY, DNSSECRData};
use hickory_net::proto::op::Query;
use hickory_net::proto::rr::{LowerName, RData, RecordType};
use hickory_net::xfer::{DnsHandle, FirstAnswer};

use super::handle::UpstreamHandle;
use crate::config::{AnchorKey, TrustAnchor};

pub(super) struct Anchors {
    configured: Vec<TrustAnchor>,
    /// The full set, once every DS anchor matched a key.
    complete: Mutex<Option<Arc<TrustAnchors>>>,
}

impl std::fmt::Debug for Anchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchors")
            .field("configured", &self.configured)
            .finish_non_exhaustive()
    }
}

impl Anchors {
    pub(super) fn new(configured: &[TrustAnchor]) -> Self {
        Self {
            configured: configured.to_vec(),
            complete: Mutex::new(None),
        }
    }

    /// The anchors, asking `handle` for the DNSKEYs of DS anchors until
    /// they have all matched.
    pub(super) async fn get(&self, handle: &UpstreamHandle) -> Arc<TrustAnchors> {
        if let Ok(done) = self.complete.lock()
            && let Some(anchors) = done.as_ref()
        {
            return anchors.clone();
        }
        let mut anchors = if self.configured.iter().any(|a| a.zone.is_root()) {
            TrustAnchors::empty()
        } else {
            TrustAnchors::default()
        };
        let mut complete = true;
        for anchor in &self.configured {
            let zone = LowerName::from(&anchor.zone);
            match &anchor.key {
                AnchorKey::Dnskey(key) => add(&mut anchors, key, &zone),
                AnchorKey::Ds(ds) => {
                    let keys = handle
                        .lookup(
                            Query::query(anchor.zone.clone(), RecordType::DNSKEY),
                            Default::default(),
                        )
                        .first_answer()
                        .await;
                    let mut matched = false;
                    for record in keys.iter().flat_map(|m| m.answers.iter()) {
                        if let RData::DNSSEC(DNSSECRData::DNSKEY(key)) = &record.data
                            && ds.covers(&anchor.zone, key).unwrap_or(false)
                        {
                            add(&mut anchors, key, &zone);
                            matched = true;
                        }
                    }
                    if !matched {
                        tracing::warn!(zone = %anchor.zone, key_tag = ds.key_tag(), "no DNSKEY matches the DS trust anchor (yet): its zone will be bogus");
                        complete = false;
                    }
                }
            }
        }
        let anchors = Arc::new(anchors);
        if complete && let Ok(mut done) = self.complete.lock() {
            *done = Some(anchors.clone());
        }
        anchors
    }
}

/// Adds `key` as an anchor of `zone` (the root's keys are hickory's
/// unnamed ones).
fn add(anchors: &mut TrustAnchors, key: &DNSKEY, zone: &LowerName) {
    if zone.is_root() {
        anchors.insert(key.public_key());
    } else {
        anchors.insert_with_name(key.public_key(), zone.clone());
    }
}
