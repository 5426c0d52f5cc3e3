//! Why an answer is bogus, as an RFC 8914 Extended DNS Error.
//!
//! hickory's validator marks each RRset Secure, Insecure or Bogus but keeps
//! its reason to itself (a debug log line). The client is owed the reason
//! (RFC 8914 4: 6 DNSSEC Bogus, 7 Signature Expired, 8 Signature Not Yet
//! Valid, 9 DNSKEY Missing, 10 RRSIGs Missing), so for a bogus RRset the
//! evidence is read again here, from the records hickory judged: its
//! RRSIGs, their validity window, and the signer's DNSKEY RRset. The
//! first reason that explains the failure wins; a signature that simply
//! does not verify is 6.

use hickory_net::proto::dnssec::rdata::{DNSKEY, DNSSECRData, RRSIG};
use hickory_net::proto::op::Query;
use hickory_net::proto::rr::{Name, RData, Record, RecordType};
use hickory_net::xfer::{DnsHandle, FirstAnswer};

use super::handle::UpstreamHandle;

/// An Extended DNS Error: its INFO-CODE and EXTRA-TEXT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ede {
    pub code: u16,
    pub text: String,
}

pub(super) const BOGUS: u16 = 6;
pub(super) const SIGNATURE_EXPIRED: u16 = 7;
pub(super) const SIGNATURE_NOT_YET_VALID: u16 = 8;
pub(super) const DNSKEY_MISSING: u16 = 9;
pub(super) const RRSIGS_MISSING: u16 = 10;

impl Ede {
    pub(super) fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

/// The RRSIGs in `records` that cover `name`/`rtype`.
fn covering<'a>(
    records: &'a [Record],
    name: &'a Name,
    rtype: RecordType,
) -> impl Iterator<Item = &'a RRSIG> + 'a {
    records.iter().filter_map(move |r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig))
            if r.name == *name && sig.input().type_covered == rtype =>
        {
            Some(sig)
        }
        _ => None,
    })
}

/// Why the RRset `name`/`rtype` of `records` failed, at `now` (seconds
/// since the epoch): asks `handle` for the signer's DNSKEY when the
/// signatures themselves are in date.
pub(super) async fn explain(
    records: &[Record],
    name: &Name,
    rtype: RecordType,
    now: u32,
    handle: &UpstreamHandle,
) -> Ede {
    let sigs: Vec<&RRSIG> = covering(records, name, rtype).collect();
    if sigs.is_empty() {
        return Ede::new(RRSIGS_MISSING, format!("no RRSIG for {name} {rtype}"));
    }
    // Serial number arithmetic (RFC 4034 3.1.5): the window may wrap.
    let after = |t: u32| (now.wrapping_sub(t) as i32) > 0;
    if sigs.iter().all(|s| after(s.input().sig_expiration.get())) {
        return Ede::new(
            SIGNATURE_EXPIRED,
            format!("the RRSIGs of {name} {rtype} have expired"),
        );
    }
    if sigs.iter().all(|s| !after(s.input().sig_inception.get())) {
        return Ede::new(
            SIGNATURE_NOT_YET_VALID,
            format!("the RRSIGs of {name} {rtype} are not yet valid"),
        );
    }
    let signer = sigs[0].input().signer_name.clone();
    let keys = handle
        .lookup(
            Query::query(signer.clone(), RecordType::DNSKEY),
            Default::default(),
        )
        .first_answer()
        .await;
    let keys: Vec<DNSKEY> = match &keys {
        Ok(answer) => answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k.clone()),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if keys.is_empty() {
        return Ede::new(DNSKEY_MISSING, format!("no DNSKEY for {signer}"));
    }
    let tags: Vec<u16> = keys
        .iter()
        .filter_map(|k| k.calculate_key_tag().ok())
        .collect();
    if !sigs.iter().any(|s| tags.contains(&s.input().key_tag)) {
        return Ede::new(
            DNSKEY_MISSING,
            format!("no DNSKEY of {signer} made the RRSIGs of {name} {rtype}"),
        );
    }
    Ede::new(BOGUS, format!("no valid signature for {name} {rtype}"))
}
