//! How an answer is fitted to its client, below every step that writes
//! one: the plain answers written here (header and question, plus OPT if
//! asked: REFUSED, SERVFAIL, an empty TC=1), an upstream's flags made ours,
//! the OPT a client without EDNS must not get, and the cut to what a UDP
//! client can take. Byte work on the caller's buffer, no allocation but an
//! upstream answer's copy.

use crate::policy::{QueryFacts, start_response};
use crate::wire::{self, Rcode};

use super::Proto;

/// An upstream's answer as the cache keeps it and clients get it: its OPT
/// replaced by ours (`wire::replace_opt`; DO as asked), which a client
/// without EDNS does not get ([`strip_opt`]); RA set and AA clear, since we
/// are the client's recursive resolver even when the upstream is
/// authoritative (as unbound and BIND do); RD as the client asked (upstream
/// was asked with RD whatever the client said). `None` when it cannot be
/// walked.
pub(super) fn for_the_client(resp: &[u8], facts: &QueryFacts) -> Option<Vec<u8>> {
    let mut resp = wire::replace_opt(resp, Some(facts.edns.is_some_and(|e| e.dnssec_ok)))?;
    if let Some(flags) = resp.get_mut(2..4) {
        flags[0] = (flags[0] & !0x05) | ((facts.flags >> 8) as u8 & 0x01);
        flags[1] |= 0x80;
    }
    Some(resp)
}

/// The query facts of `facts` as if the client had used EDNS (DO as it
/// asked): how an answer kept for every client is written.
pub(super) fn with_edns(facts: &QueryFacts) -> QueryFacts {
    let edns = facts.edns.unwrap_or(wire::Edns {
        udp_size: wire::EDNS_UDP_SIZE,
        dnssec_ok: false,
        class_at: 0,
    });
    QueryFacts {
        edns: Some(edns),
        ..*facts
    }
}

/// Takes the OPT record out of an answer in `out` for a client that did
/// not use EDNS (RFC 6891 7: no OPT in the answer to a query without one).
pub(super) fn strip_opt(facts: &QueryFacts, out: &mut Vec<u8>) {
    if facts.edns.is_some() {
        return;
    }
    if let Some(Sections {
        opt: Some((start, end)),
        ..
    }) = sections(out)
    {
        out.drain(start..end);
        let arcount = wire::u16_at(out, 10).unwrap_or(1);
        wire::put_u16(out, 10, arcount.saturating_sub(1));
    }
}

/// An empty answer with TC=1 (header, question, OPT if asked): what a rate
/// limited client gets every `slip`th time, so a real one retries over TCP.
pub(super) fn write_truncated(pkt: &[u8], facts: &QueryFacts, out: &mut Vec<u8>) {
    start_response(pkt, facts, Rcode::NoError, out);
    if let Some(b) = out.get_mut(2) {
        *b |= 0x02;
    }
    finish_plain(facts, out);
}

/// Adds the OPT record to a header-and-question answer if the query had EDNS.
pub(super) fn finish_plain(facts: &QueryFacts, out: &mut Vec<u8>) {
    if let Some(e) = facts.edns {
        wire::push_opt(out, 0, e.dnssec_ok, &[]);
    }
}

/// Where an answer's additional section starts, and its OPT record's
/// bytes if it has one.
struct Sections {
    additional: usize,
    opt: Option<(usize, usize)>,
}

/// Walks the records of the answer in `msg`; `None` when it cannot be walked.
fn sections(msg: &[u8]) -> Option<Sections> {
    let hdr = wire::Header::parse(msg)?;
    let mut at = hdr.records_start(msg)?;
    for _ in 0..u32::from(hdr.ancount) + u32::from(hdr.nscount) {
        at = wire::read_rr(msg, at)?.1;
    }
    let additional = at;
    let mut opt = None;
    for _ in 0..hdr.arcount {
        let (rr, next) = wire::read_rr(msg, at)?;
        if rr.rtype == wire::TYPE_OPT {
            opt = Some((at, next));
        }
        at = next;
    }
    Some(Sections { additional, opt })
}

/// Fits a UDP answer to what the client can take (RFC 1035 4.2.1, RFC 6891
/// 7; our own ceiling is 1232 bytes whatever the client offers): first
/// without its additional section (its OPT kept), which RFC 2181 9 says
/// is no reason for TC, as unbound and Knot do; when the answer and
/// authority sections still do not fit, cut down to header + question
/// (+ OPT) with TC set, so that the client retries over TCP.
pub(super) fn truncate_for(facts: &QueryFacts, proto: Proto, out: &mut Vec<u8>) {
    if proto != Proto::Udp {
        return;
    }
    let limit = match facts.edns {
        Some(e) => usize::from(e.udp_size.clamp(512, wire::EDNS_UDP_SIZE)),
        None => 512,
    };
    if out.len() <= limit {
        return;
    }
    if let Some(s) = sections(out) {
        let opt_len = s.opt.map_or(0, |(start, end)| end - start);
        if s.additional + opt_len <= limit {
            if let Some((start, _)) = s.opt {
                out.copy_within(start..start + opt_len, s.additional);
            }
            out.truncate(s.additional + opt_len);
            wire::put_u16(out, 10, u16::from(s.opt.is_some()));
            return;
        }
    }
    out.truncate(facts.question_end);
    if let Some(b) = out.get_mut(2) {
        *b |= 0x02;
    }
    for at in [6, 8, 10] {
        wire::put_u16(out, at, 0);
    }
    finish_plain(facts, out);
}

#[cfg(test)]
mod tests {
    use super::{Proto, strip_opt, truncate_for};
    use crate::wire;

    /// A query for `a.test` A (EDNS with `udp_size` if given) and an
    /// answer to it: one A record, `extra` A records in the additional
    /// section, then our OPT with an EDE.
    fn query_and_answer(udp_size: Option<u16>, extra: usize) -> (Vec<u8>, Vec<u8>) {
        let mut q = vec![
            0,
            7,
            1,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(udp_size.is_some()),
        ];
        q.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
        let question_end = q.len();
        if let Some(size) = udp_size {
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&size.to_be_bytes());
            q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        let mut a = q[..question_end].to_vec();
        a[2] = 0x81;
        a[3] = 0x80;
        a[6..12].copy_from_slice(&[0, 1, 0, 0, 0, extra as u8]);
        for _ in 0..=extra {
            a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        }
        wire::push_opt(&mut a, 0, false, &wire::ede_option(15, "why"));
        (q, a)
    }

    #[test]
    fn an_overflowing_additional_section_goes_before_tc_and_the_opt_stays() {
        let (q, mut a) = query_and_answer(Some(512), 40);
        let (facts, _) = crate::query::parse(&q).expect("query");
        let opt = a[a.len() - 11 - 9..].to_vec();
        assert!(a.len() > 512);
        truncate_for(&facts, Proto::Udp, &mut a);
        assert_eq!(a[2] & 0x02, 0, "no TC");
        assert_eq!(&a[6..12], &[0, 1, 0, 0, 0, 1], "the answer and the OPT");
        assert_eq!(a.len(), facts.question_end + 16 + opt.len());
        assert!(a.ends_with(&opt), "the OPT and its EDE kept");
        // Over TCP nothing is cut.
        let (_, mut whole) = query_and_answer(Some(512), 40);
        let len = whole.len();
        truncate_for(&facts, Proto::Tcp, &mut whole);
        assert_eq!(whole.len(), len);
        // An answer section that does not fit still gets TC.
        let (_, mut big) = query_and_answer(Some(512), 0);
        big[7] = 41;
        for _ in 0..40 {
            let at = facts.question_end;
            big.splice(
                at..at,
                [0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1],
            );
        }
        truncate_for(&facts, Proto::Udp, &mut big);
        assert_eq!(big[2] & 0x02, 0x02, "TC");
        assert_eq!(&big[6..12], &[0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn a_client_without_edns_gets_no_opt() {
        let (q, mut a) = query_and_answer(None, 2);
        let (facts, _) = crate::query::parse(&q).expect("query");
        let len = a.len();
        strip_opt(&facts, &mut a);
        assert_eq!(a.len(), len - 11 - 9);
        assert_eq!(&a[6..12], &[0, 1, 0, 0, 0, 2]);
        let (q, mut a) = query_and_answer(Some(1232), 2);
        let (facts, _) = crate::query::parse(&q).expect("query");
        strip_opt(&facts, &mut a);
        assert_eq!(a.len(), len, "kept for a client with EDNS");
    }
}
