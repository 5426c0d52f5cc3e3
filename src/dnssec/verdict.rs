//! What hickory's validator made of an answer, and what the client gets
//! for it.
//!
//! hickory marks every record it judged (`Record::proof`). The answer is
//! secure when every record of its answer and authority sections is
//! secure (for a denial of existence, its NSEC or NSEC3 and SOA: hickory
//! has then checked the proof too); bogus when any is bogus, or was not
//! judged at all; insecure otherwise (an unsigned zone, proven unsigned
//! from a secure parent). A denial hickory could not prove comes back as
//! an error carrying its proof.

use hickory_net::proto::dnssec::Proof;
use hickory_net::proto::dnssec::rdata::DNSSECRData;
use hickory_net::proto::op::{DnsResponse, Message, Query};
use hickory_net::proto::rr::{RData, Record, RecordType};
use hickory_net::{DnsError, NetError};

use super::handle::UpstreamHandle;
use super::reason::{self, Ede};
use crate::wire;

#[derive(Debug)]
pub(super) enum Verdict {
    Secure,
    Insecure,
    Bogus(Ede),
}

/// The verdict on `result`, hickory's validation of the answer to
/// `question`, at `now` (seconds since the epoch).
pub(super) async fn judge(
    result: Result<DnsResponse, NetError>,
    question: &Query,
    now: u32,
    handle: &UpstreamHandle,
) -> Verdict {
    let message = match result {
        Ok(message) => message,
        Err(NetError::Dns(DnsError::Nsec {
            proof, response, ..
        })) => {
            if proof == Proof::Insecure {
                return Verdict::Insecure;
            }
            // A bogus record of the denial says more than "not proven".
            if let Some(v) = bogus_record(&response, now, handle).await {
                return v;
            }
            return Verdict::Bogus(Ede::new(
                reason::BOGUS,
                format!(
                    "the denial of {} {} is not proven",
                    question.name(),
                    question.query_type()
                ),
            ));
        }
        Err(e) => return Verdict::Bogus(Ede::new(reason::BOGUS, e.to_string())),
    };
    if let Some(v) = bogus_record(&message, now, handle).await {
        return v;
    }
    let mut judged = judged(&message).peekable();
    if judged.peek().is_some() && judged.all(|r| r.proof == Proof::Secure) {
        Verdict::Secure
    } else {
        Verdict::Insecure
    }
}

/// The records of the answer and authority sections, RRSIGs aside.
fn judged(message: &Message) -> impl Iterator<Item = &Record> {
    message
        .answers
        .iter()
        .chain(message.authorities.iter())
        .filter(|r| r.record_type() != RecordType::RRSIG)
}

/// Bogus, with why, when a judged record is bogus or was left unjudged.
async fn bogus_record(message: &Message, now: u32, handle: &UpstreamHandle) -> Option<Verdict> {
    let bad = judged(message).find(|r| matches!(r.proof, Proof::Bogus | Proof::Indeterminate))?;
    let records: Vec<Record> = message
        .answers
        .iter()
        .chain(message.authorities.iter())
        .cloned()
        .collect();
    let ede = reason::explain(&records, &bad.name, bad.record_type(), now, handle).await;
    Some(Verdict::Bogus(ede))
}

/// The client's answer from the upstream's `raw` one: AD set when
/// `secure` (cleared otherwise: the upstream's own AD is not believed),
/// a secure answer's TTLs no longer than its signatures last (RFC 4035
/// 5.3.3: it must not be kept, here or by the client, past them), and,
/// for a client that did not set DO (`dnssec_ok`), without the DNSSEC
/// records it did not ask for (RFC 4035 3.2.1).
pub(super) fn passed(
    raw: &[u8],
    dnssec_ok: bool,
    qtype: RecordType,
    secure: bool,
    now: u32,
) -> Vec<u8> {
    let rewrite = |m: &mut Message| {
        if !dnssec_ok {
            strip_dnssec(m, qtype);
        }
        if secure {
            cap_ttls(m, now);
        }
    };
    let mut out = match Message::from_vec(raw) {
        Ok(mut m) if !dnssec_ok || (secure && outlives_signatures(&m, now)) => {
            rewrite(&mut m);
            m.to_vec().unwrap_or_else(|_| raw.to_vec())
        }
        _ => raw.to_vec(),
    };
    if let Some(flags) = out.get_mut(3) {
        *flags = if secure {
            *flags | 0x20
        } else {
            *flags & !0x20
        };
    }
    out
}

/// The seconds left to the soonest-expiring RRSIG of `m`, if any.
fn signatures_left(m: &Message, now: u32) -> Option<u32> {
    m.answers
        .iter()
        .chain(m.authorities.iter())
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => {
                Some(sig.input().sig_expiration.get().wrapping_sub(now))
            }
            _ => None,
        })
        .filter(|left| (*left as i32) >= 0)
        .min()
}

/// Whether a record of `m` would be kept past its signatures.
fn outlives_signatures(m: &Message, now: u32) -> bool {
    signatures_left(m, now).is_some_and(|left| {
        m.answers
            .iter()
            .chain(m.authorities.iter())
            .any(|r| r.ttl > left)
    })
}

fn cap_ttls(m: &mut Message, now: u32) {
    if let Some(left) = signatures_left(m, now) {
        for r in m.answers.iter_mut().chain(m.authorities.iter_mut()) {
            r.ttl = r.ttl.min(left);
        }
    }
}

/// Takes RRSIG, NSEC and NSEC3 records (but those of `qtype`) out of `m`.
fn strip_dnssec(m: &mut Message, qtype: RecordType) {
    let keep = |r: &Record| {
        let t = r.record_type();
        t == qtype || !matches!(t, RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3)
    };
    m.answers.retain(keep);
    m.authorities.retain(keep);
    m.additionals.retain(keep);
}

/// SERVFAIL to `query` (header, question, OPT), with `ede` in its OPT.
pub(super) fn servfail(query: &[u8], ede: &Ede, dnssec_ok: bool) -> Vec<u8> {
    let end = wire::skip_name(query, wire::HEADER_LEN).map_or(query.len(), |n| n + 4);
    let mut out = query.get(..end).unwrap_or(query).to_vec();
    if out.len() < wire::HEADER_LEN {
        return out;
    }
    // QR, RD kept; RA; RCODE 2. One question, nothing else but the OPT.
    out[2] = (out[2] & 0x01) | 0x80;
    out[3] = 0x80 | 2;
    for at in [6, 8, 10] {
        wire::put_u16(&mut out, at, 0);
    }
    wire::push_opt(
        &mut out,
        0,
        dnssec_ok,
        &wire::ede_option(ede.code, &ede.text),
    );
    out
}
