//! The trust anchors hickory's validator starts from: the root's built-in
//! keys (hickory's, IANA's KSK-2017 and KSK-2024) unless a configured file
//! anchors the root itself, and for each configured zone the keys of its
//! DNSKEY RRset, once that RRset is proven by a configured key.
//!
//! Configured anchors are most often a zone's KSK (or its DS, a digest),
//! but the zone's data is signed by its ZSK. hickory trusts a DNSKEY RRset
//! only when every key in it is an anchor or matches a DS it fetches from
//! the parent, and a private zone has no signed parent to fetch from. So
//! the anchor is primed, as a validating resolver primes its root anchor
//! (RFC 5011 2.1, RFC 9718): the zone's DNSKEY RRset is asked (through the
//! upstream), and when one of its RRSIGs, in date, verifies with a
//! configured key (a DNSKEY given, or one whose digest is a DS given),
//! every key of the RRset is trusted. That needs the network, so it is done
//! at the first validation, and again after [`PRIMED_FOR`] (a ZSK rollover
//! is seen); an anchor that could not be primed yet (the upstream did not
//! answer) leaves only its own keys trusted and is tried at the next query.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_net::proto::dnssec::rdata::{DNSKEY, DNSSECRData, RRSIG};
use hickory_net::proto::dnssec::{TrustAnchors, Verifier};
use hickory_net::proto::op::{DnsRequestOptions, Query};
use hickory_net::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_net::xfer::{DnsHandle, FirstAnswer};

use super::handle::UpstreamHandle;
use crate::config::{AnchorKey, TrustAnchor};

pub(super) struct Anchors {
    configured: Vec<TrustAnchor>,
    /// The full set, once every anchor was primed, and when.
    primed: Mutex<Option<(Instant, Arc<TrustAnchors>)>>,
}

/// How long a primed set of anchors is used before it is primed again.
pub(super) const PRIMED_FOR: Duration = Duration::from_secs(3600);

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
            primed: Mutex::new(None),
        }
    }

    /// The anchors, priming the configured ones through `handle` when
    /// they were not primed lately.
    pub(super) async fn get(&self, handle: &UpstreamHandle) -> Arc<TrustAnchors> {
        if let Ok(primed) = self.primed.lock()
            && let Some((at, anchors)) = primed.as_ref()
            && at.elapsed() < PRIMED_FOR
        {
            return anchors.clone();
        }
        let mut anchors = if self.configured.iter().any(|a| a.zone.is_root()) {
            TrustAnchors::empty()
        } else {
            TrustAnchors::default()
        };
        let mut complete = true;
        let mut zones: Vec<&Name> = self.configured.iter().map(|a| &a.zone).collect();
        zones.dedup();
        for zone in zones {
            let given: Vec<&TrustAnchor> =
                self.configured.iter().filter(|a| a.zone == *zone).collect();
            let rrset = dnskeys(handle, zone).await;
            let keys = prime(zone, &given, &rrset);
            if keys.is_empty() {
                tracing::warn!(%zone, "no DNSKEY of the zone is proven by its trust anchor (yet): only the anchor's own keys are trusted");
                complete = false;
            }
            let lower = LowerName::from(zone);
            for key in keys.iter().chain(given.iter().filter_map(|a| match &a.key {
                AnchorKey::Dnskey(k) => Some(k),
                AnchorKey::Ds(_) => None,
            })) {
                add(&mut anchors, key, &lower);
            }
        }
        let anchors = Arc::new(anchors);
        if complete && let Ok(mut primed) = self.primed.lock() {
            *primed = Some((Instant::now(), anchors.clone()));
        }
        anchors
    }
}

/// `zone`'s DNSKEY RRset and its RRSIGs, as the upstream gives them.
async fn dnskeys(handle: &UpstreamHandle, zone: &Name) -> Vec<Record> {
    let mut options = DnsRequestOptions::default();
    options.edns_set_dnssec_ok = true;
    handle
        .lookup(Query::query(zone.clone(), RecordType::DNSKEY), options)
        .first_answer()
        .await
        .map(|m| m.answers.clone())
        .unwrap_or_default()
}

/// The keys of `zone`'s DNSKEY RRset (`rrset`, its RRSIGs with it) when an
/// RRSIG over it, in date, verifies with a key the `given` anchors name
/// (a DNSKEY, or one whose digest is a DS); none otherwise.
fn prime(zone: &Name, given: &[&TrustAnchor], rrset: &[Record]) -> Vec<DNSKEY> {
    let keys: Vec<&Record> = rrset
        .iter()
        .filter(|r| r.name == *zone && r.record_type() == RecordType::DNSKEY)
        .collect();
    let anchored = |key: &DNSKEY| {
        given.iter().any(|a| match &a.key {
            AnchorKey::Dnskey(k) => k.public_key() == key.public_key(),
            AnchorKey::Ds(ds) => ds.covers(zone, key).unwrap_or(false),
        })
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let in_date = |sig: &RRSIG| {
        let (from, to) = (
            sig.input().sig_inception.get(),
            sig.input().sig_expiration.get(),
        );
        (now.wrapping_sub(from) as i32) >= 0 && (to.wrapping_sub(now) as i32) >= 0
    };
    let proven = rrset.iter().any(|r| {
        let RData::DNSSEC(DNSSECRData::RRSIG(sig)) = &r.data else {
            return false;
        };
        sig.input().type_covered == RecordType::DNSKEY
            && in_date(sig)
            && keys.iter().any(|k| {
                let RData::DNSSEC(DNSSECRData::DNSKEY(key)) = &k.data else {
                    return false;
                };
                anchored(key)
                    && key.calculate_key_tag().ok() == Some(sig.input().key_tag)
                    && key
                        .verify_rrsig(zone, DNSClass::IN, sig, keys.iter().copied())
                        .is_ok()
            })
    });
    if !proven {
        return Vec::new();
    }
    keys.iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k.clone()),
            _ => None,
        })
        .collect()
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
