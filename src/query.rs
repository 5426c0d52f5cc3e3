//! Turns the bytes of a request into the facts the handler decides on, or
//! into the protocol error the RFCs prescribe for it.
//!
//! One pass, no allocation: the header, the question (lowercased into a
//! stack `NameKey` on the way), then every remaining record is walked so
//! that malformed packets are caught here and only here.

use crate::matcher::NameKey;
use crate::policy::QueryFacts;
use crate::wire::{self, Edns, Header, Rcode};

/// Why a request is not answered normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not worth an answer: shorter than a header, or a response (QR=1),
    /// which must never be answered (that is how reflection loops start).
    Drop,
    /// Answer with this RCODE. `question_end` is set when the question could
    /// be read and is echoed; `edns` when an OPT record was read.
    Error {
        rcode: Rcode,
        question_end: Option<usize>,
        edns: Option<Edns>,
    },
    /// EDNS version above 0 (RFC 6891 section 6.1.3): extended RCODE 16.
    BadVers { question_end: usize, edns: Edns },
}

/// Parses a request.
pub fn parse(pkt: &[u8]) -> Result<(QueryFacts, NameKey), Reject> {
    let hdr = Header::parse(pkt).ok_or(Reject::Drop)?;
    if hdr.is_response() {
        return Err(Reject::Drop);
    }
    let formerr = |question_end| Reject::Error {
        rcode: Rcode::FormErr,
        question_end,
        edns: None,
    };
    if hdr.qdcount != 1 {
        // RFC 9619: a QUERY carries exactly one question. Other opcodes
        // are not implemented whatever they carry.
        return Err(if hdr.opcode() != 0 {
            Reject::Error {
                rcode: Rcode::NotImp,
                question_end: None,
                edns: None,
            }
        } else {
            formerr(None)
        });
    }

    // Question: uncompressed (a pointer could only point into the header).
    let mut name = NameKey::new();
    let mut at = wire::HEADER_LEN;
    loop {
        let len = *pkt.get(at).ok_or(formerr(None))? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return Err(formerr(None));
        }
        let label = pkt.get(at + 1..at + 1 + len).ok_or(formerr(None))?;
        if !name.push_label(label) {
            return Err(formerr(None));
        }
        at += 1 + len;
    }
    let qtype = wire::u16_at(pkt, at).ok_or(formerr(None))?;
    let qclass = wire::u16_at(pkt, at + 2).ok_or(formerr(None))?;
    let question_end = at + 4;
    let walked = walk_records(pkt, &hdr, question_end);
    if hdr.opcode() != 0 {
        // Not implemented, but answered with an OPT if the request had one.
        return Err(Reject::Error {
            rcode: Rcode::NotImp,
            question_end: Some(question_end),
            edns: walked.unwrap_or_else(|e| (e, 0)).0,
        });
    }
    let (edns, version) = walked.map_err(|edns| Reject::Error {
        rcode: Rcode::FormErr,
        question_end: Some(question_end),
        edns,
    })?;
    if let (Some(e), true) = (edns, version != 0) {
        return Err(Reject::BadVers {
            question_end,
            edns: e,
        });
    }
    if qtype == wire::TYPE_OPT {
        return Err(Reject::Error {
            rcode: Rcode::FormErr,
            question_end: Some(question_end),
            edns,
        });
    }
    Ok((
        QueryFacts {
            id: hdr.id,
            flags: hdr.flags,
            qtype,
            qclass,
            question_end,
            edns,
        },
        name,
    ))
}

/// Walks every record after the question. Returns the OPT facts and EDNS
/// version, or, when something is malformed, the OPT facts found so far
/// (so even a FORMERR carries an OPT when the request had a good one).
fn walk_records(
    pkt: &[u8],
    hdr: &Header,
    question_end: usize,
) -> Result<(Option<Edns>, u8), Option<Edns>> {
    // Answer and authority of a query are normally empty; walk them anyway.
    let mut at = question_end;
    for _ in 0..u32::from(hdr.ancount) + u32::from(hdr.nscount) {
        let (rr, next) = wire::read_rr(pkt, at).ok_or(None)?;
        if rr.rtype == wire::TYPE_OPT {
            return Err(None);
        }
        at = next;
    }
    let mut edns: Option<Edns> = None;
    let mut version = 0u8;
    for _ in 0..hdr.arcount {
        let (rr, next) = wire::read_rr(pkt, at).ok_or(edns)?;
        if rr.rtype == wire::TYPE_OPT {
            // One OPT, owned by the root (RFC 6891 section 6.1.1).
            if edns.is_some() || pkt.get(rr.name_at) != Some(&0) {
                return Err(None);
            }
            let options = pkt.get(rr.rdata_at..rr.rdata_at + rr.rdlen).ok_or(None)?;
            if !options_well_formed(options) {
                return Err(None);
            }
            version = (rr.ttl >> 16) as u8;
            edns = Some(Edns {
                udp_size: rr.class.max(512),
                dnssec_ok: rr.ttl & 0x8000 != 0,
                class_at: rr.ttl_at - 2,
            });
        }
        at = next;
    }
    if at != pkt.len() {
        return Err(edns);
    }
    Ok((edns, version))
}

/// Every option's length fits inside the OPT RDATA, and a COOKIE option
/// has a length RFC 7873 5.2.2 allows (8, or 16 to 40).
fn options_well_formed(mut opts: &[u8]) -> bool {
    while !opts.is_empty() {
        let (Some(code), Some(len)) = (wire::u16_at(opts, 0), wire::u16_at(opts, 2)) else {
            return false;
        };
        if code == 10 && !(len == 8 || (16..=40).contains(&len)) {
            return false;
        }
        let end = 4 + len as usize;
        if end > opts.len() {
            return false;
        }
        opts = &opts[end..];
    }
    true
}

/// The possibly compressed name at `at` (in a request or an answer) as
/// the matcher's lowercase key, and the offset just after it; `None` when
/// it cannot be read or is no name the matcher takes (over 255 bytes).
pub fn read_name(buf: &[u8], at: usize) -> Option<(NameKey, usize)> {
    let mut key = NameKey::new();
    let end = wire::read_labels(buf, at, |label| key.push_label(label))?;
    Some((key, end))
}

/// Writes the answer for a rejected request; false when nothing is sent.
pub fn write_reject(pkt: &[u8], reject: Reject, out: &mut Vec<u8>) -> bool {
    let (rcode, ext, question_end, edns) = match reject {
        Reject::Drop => return false,
        Reject::Error {
            rcode,
            question_end,
            edns,
        } => (rcode as u16, 0u8, question_end, edns),
        Reject::BadVers { question_end, edns } => (0, 1, Some(question_end), Some(edns)),
    };
    write_error(pkt, rcode, ext, question_end, edns, &[], out)
}

/// The EDNS option of Extended DNS Error 18, Prohibited (RFC 8914 4.19),
/// with no extra text: a refused outsider learns nothing more, and the
/// answer stays about the size of the query.
const EDE_PROHIBITED: [u8; 6] = [0, 15, 0, 2, 0, 18];

/// Writes REFUSED for a client that may not ask (`[access]`): the question
/// echoed when it can be read, and EDE 18 when the query has EDNS. Nothing
/// else is reported, not even what is wrong with a malformed query. False
/// when nothing is sent (shorter than a header, or a response).
pub fn write_refused(pkt: &[u8], out: &mut Vec<u8>) -> bool {
    let (question_end, edns) = match parse(pkt) {
        Ok((facts, _)) => (Some(facts.question_end), facts.edns),
        Err(Reject::Drop) => return false,
        Err(Reject::Error {
            question_end, edns, ..
        }) => (question_end, edns),
        Err(Reject::BadVers { question_end, edns }) => (Some(question_end), Some(edns)),
    };
    write_error(
        pkt,
        Rcode::Refused as u16,
        0,
        question_end,
        edns,
        &EDE_PROHIBITED,
        out,
    )
}

/// Header, question (if known) and OPT (if the request had one, with
/// `options`) of an error answer.
fn write_error(
    pkt: &[u8],
    rcode: u16,
    ext: u8,
    question_end: Option<usize>,
    edns: Option<Edns>,
    options: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let Some(hdr) = Header::parse(pkt) else {
        return false;
    };
    out.clear();
    let flags = if rcode == Rcode::NotImp as u16 {
        // An opcode we do not implement: RD, RA, AD, CD and AA are defined
        // for QUERY only, so none is echoed or set; QR and the opcode are
        // (as BIND answers, and as ISC's genreport `opcode`/`opcodeflg` check).
        0x8000 | (hdr.flags & 0x7800) | rcode
    } else {
        // Echo ID, OPCODE, RD and CD; QR and RA set.
        0x8000 | 0x0080 | (hdr.flags & (0x7800 | 0x0100 | 0x0010)) | rcode
    };
    out.extend_from_slice(&hdr.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    let qd = u16::from(question_end.is_some());
    out.extend_from_slice(&qd.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let Some(end) = question_end {
        out.extend_from_slice(pkt.get(wire::HEADER_LEN..end).unwrap_or(&[]));
    }
    if let Some(e) = edns {
        wire::push_opt(out, ext, e.dnssec_ok, options);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_through_pointers_into_lowercase_keys() {
        // www.Example.com. then a pointer back to "Example.com".
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(b"\x03www\x07Example\x03com\x00");
        buf.extend_from_slice(&[0xc0, 16]);
        let (k, end) = read_name(&buf, 29).expect("pointer name");
        assert_eq!((k.to_string(), end), ("example.com".to_string(), 31));
        let (k, end) = read_name(&buf, 12).expect("name");
        assert_eq!((k.to_string(), end), ("www.example.com".to_string(), 29));
        // Past 255 bytes through pointers: no key.
        let mut long = vec![0u8; 12];
        long.extend_from_slice(&[63; 64]);
        long.extend_from_slice(&[0xc0, 12]);
        assert!(read_name(&long, 12).is_none());
    }

    fn query(name: &[u8], qtype: u16, extra: &[u8], arcount: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&arcount.to_be_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p.extend_from_slice(extra);
        p
    }

    const OPT_V0: &[u8] = &[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn parses_a_plain_query_and_lowercases_the_name() {
        let p = query(b"\x03WWW\x07example\x03com\x00", 1, &[], 0);
        let (q, name) = parse(&p).expect("valid");
        assert_eq!(name.to_string(), "www.example.com");
        assert_eq!(
            (q.id, q.qtype, q.qclass, q.question_end),
            (0x1234, 1, 1, p.len())
        );
        assert!(q.edns.is_none());
    }

    #[test]
    fn reads_edns_size_and_do_bit() {
        let p = query(b"\x01a\x00", 1, OPT_V0, 1);
        let (q, _) = parse(&p).expect("valid");
        let e = q.edns.expect("edns");
        assert_eq!((e.udp_size, e.dnssec_ok), (4096, true));
    }

    #[test]
    fn rejects_as_the_rfcs_say() {
        assert!(matches!(parse(&[0; 5]), Err(Reject::Drop)));
        let mut resp = query(b"\x01a\x00", 1, &[], 0);
        resp[2] |= 0x80;
        assert!(matches!(parse(&resp), Err(Reject::Drop)));
        let mut notify = query(b"\x01a\x00", 6, &[], 0);
        notify[2] = 0x20; // opcode 4
        assert!(matches!(
            parse(&notify),
            Err(Reject::Error {
                rcode: Rcode::NotImp,
                ..
            })
        ));
        let mut two = query(b"\x01a\x00", 1, &[], 0);
        two[5] = 2;
        assert!(matches!(
            parse(&two),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                question_end: None,
                ..
            })
        ));
        let cut = &query(b"\x01a\x00", 1, &[], 0)[..15];
        assert!(matches!(
            parse(cut),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        let ptr = query(b"\xc0\x0c", 1, &[], 0);
        assert!(matches!(
            parse(&ptr),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        let mut v1 = OPT_V0.to_vec();
        v1[6] = 1;
        assert!(matches!(
            parse(&query(b"\x01a\x00", 1, &v1, 1)),
            Err(Reject::BadVers { .. })
        ));
        let two_opts = [OPT_V0, OPT_V0].concat();
        assert!(matches!(
            parse(&query(b"\x01a\x00", 1, &two_opts, 2)),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        let trailing = query(b"\x01a\x00", 1, b"junk", 0);
        assert!(matches!(
            parse(&trailing),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        let bad_opt = query(
            b"\x01a\x00",
            1,
            &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 0, 15, 0, 9],
            1,
        );
        assert!(matches!(
            parse(&bad_opt),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        assert!(matches!(
            parse(&query(b"\x01a\x00", 41, &[], 0)),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                ..
            })
        ));
    }

    /// Issue 9 (3): genreport's `opcode` and `opcodeflg` probes: opcode 15,
    /// a bare header, with no flag or with every flag set. The answer is
    /// NOTIMP with the opcode echoed and every flag but QR clear.
    #[test]
    fn r9_unknown_opcode_notimp_clears_every_flag_but_qr() {
        for request_flags in [0x7800u16, 0x7800 | 0x07b0 | 0x0040] {
            let mut p = vec![0xab, 0xcd];
            p.extend_from_slice(&request_flags.to_be_bytes());
            p.extend_from_slice(&[0; 8]);
            let reject = parse(&p).expect_err("opcode 15");
            let mut out = Vec::new();
            assert!(write_reject(&p, reject, &mut out));
            let flags = u16::from_be_bytes([out[2], out[3]]);
            assert_eq!(
                flags,
                0x8000 | 0x7800 | Rcode::NotImp as u16,
                "{flags:#06x}"
            );
            assert_eq!(&out[..2], &[0xab, 0xcd]);
            assert_eq!(out.len(), wire::HEADER_LEN);
        }
    }

    #[test]
    fn cookie_lengths_follow_rfc_7873() {
        // A 5-byte COOKIE is too short for a client cookie: FORMERR.
        let bad = query(
            b"\x01a\x00",
            1,
            &[
                0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 9, 0, 10, 0, 5, 1, 2, 3, 4, 5,
            ],
            1,
        );
        assert!(matches!(
            parse(&bad),
            Err(Reject::Error {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        let good = query(
            b"\x01a\x00",
            1,
            &[
                0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
            ],
            1,
        );
        assert!(parse(&good).is_ok());
    }

    #[test]
    fn refused_outsiders_get_ede_18_and_nothing_else() {
        use hickory_proto::op::{Message, ResponseCode};
        use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
        let mut out = Vec::new();
        // With EDNS: REFUSED, question echoed, EDE 18 without text.
        let p = query(b"\x06Seized\x07example\x00", 1, OPT_V0, 1);
        assert!(write_refused(&p, &mut out));
        let msg = Message::from_vec(&out).expect("decodes");
        assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
        assert_eq!(msg.queries[0].name().to_string(), "Seized.example.");
        assert!(msg.metadata.recursion_available);
        let edns = msg.edns.as_ref().expect("edns");
        assert!(edns.flags().dnssec_ok, "DO echoed");
        assert_eq!(
            edns.option(EdnsCode::Unknown(15)),
            Some(&EdnsOption::Unknown(15, vec![0, 18]))
        );
        // Without EDNS: no OPT at all.
        let p = query(b"\x01a\x00", 1, &[], 0);
        assert!(write_refused(&p, &mut out));
        assert_eq!(out.len(), p.len());
        assert_eq!(wire::u16_at(&out, 10), Some(0));
        // A malformed query is refused too, never FORMERR'd to an outsider.
        let mut two = query(b"\x01a\x00", 1, &[], 0);
        two[5] = 2;
        assert!(write_refused(&two, &mut out));
        assert_eq!(out[3] & 0x0f, Rcode::Refused as u8);
        // Responses and runts get nothing.
        let mut resp = query(b"\x01a\x00", 1, &[], 0);
        resp[2] |= 0x80;
        assert!(!write_refused(&resp, &mut out));
        assert!(!write_refused(&[0; 5], &mut out));
    }

    #[test]
    fn badvers_answer_carries_extended_rcode_16() {
        let mut v1 = OPT_V0.to_vec();
        v1[6] = 1;
        let p = query(b"\x01a\x00", 1, &v1, 1);
        let reject = parse(&p).expect_err("badvers");
        let mut out = Vec::new();
        assert!(write_reject(&p, reject, &mut out));
        let msg = hickory_proto::op::Message::from_vec(&out).expect("decodes");
        assert_eq!(u16::from(msg.response_code), 16);
        assert_eq!(msg.queries.len(), 1);
    }
}
