//! What a block looks like on the wire, decided and pre-built at load time.
//!
//! A [`Policy`] is one list plus the action it takes (an RPZ list may use
//! several actions, hence several policies). Everything that does not depend
//! on the query (the SOA RDATA, the sinkhole RDATA, the EDE option naming the
//! list) is encoded once here, so answering a blocked query is a header
//! rewrite and a few `extend_from_slice` calls into a reused buffer.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire;

/// How a blocked name is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// NXDOMAIN with an SOA in the authority section (RFC 2308 negative caching).
    Nxdomain,
    /// NOERROR, empty answer, the same SOA.
    Nodata,
    /// REFUSED, nothing else.
    Refused,
    /// A and AAAA answered with the sinkhole addresses, other types NODATA.
    Sinkhole,
}

impl Action {
    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "nxdomain" => Self::Nxdomain,
            "nodata" => Self::Nodata,
            "refused" => Self::Refused,
            "sinkhole" => Self::Sinkhole,
            _ => return None,
        })
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nxdomain => "nxdomain",
            Self::Nodata => "nodata",
            Self::Refused => "refused",
            Self::Sinkhole => "sinkhole",
        }
    }
}

/// The RFC 8914 INFO-CODE a list's blocks carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdeCode {
    /// 15: blocked by the operator's own policy.
    Blocked,
    /// 16: blocked because of an external requirement (court order, sanctions).
    Censored,
    /// 17: filtered at the client's request.
    Filtered,
}

impl EdeCode {
    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "blocked" => Self::Blocked,
            "censored" => Self::Censored,
            "filtered" => Self::Filtered,
            _ => return None,
        })
    }

    /// The INFO-CODE value.
    pub fn code(self) -> u16 {
        match self {
            Self::Blocked => 15,
            Self::Censored => 16,
            Self::Filtered => 17,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Censored => "censored",
            Self::Filtered => "filtered",
        }
    }
}

/// A list's block, ready to be written into answers.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Index of the list in the snapshot.
    pub list: usize,
    pub action: Action,
    pub ttl: u32,
    pub sinkhole_ipv4: Ipv4Addr,
    pub sinkhole_ipv6: Ipv6Addr,
    pub ede: EdeCode,
    /// The EDE extra text: who blocked the name and why.
    pub ede_text: String,
    /// The encoded EDE option (code, length, info-code, extra text).
    ede_option: Vec<u8>,
    /// SOA RDATA after MNAME: RNAME, serial, refresh, retry, expire, minimum.
    soa_tail: Vec<u8>,
}

/// The RNAME of synthesized SOAs: a reserved name nobody can mail.
const SOA_RNAME: &[u8] = b"\x06nobody\x07invalid\x00";

impl Policy {
    /// Pre-builds the answer parts. `ede_text` names the list, its authority
    /// and reason, so the EDE alone tells a user why the name is blocked.
    pub fn new(
        list: usize,
        action: Action,
        ttl: u32,
        sinkhole_ipv4: Ipv4Addr,
        sinkhole_ipv6: Ipv6Addr,
        ede: EdeCode,
        ede_text: &str,
    ) -> Self {
        let mut soa_tail = SOA_RNAME.to_vec();
        for v in [1u32, 3600, 600, 86400, ttl] {
            soa_tail.extend_from_slice(&v.to_be_bytes());
        }
        Self {
            list,
            action,
            ttl,
            sinkhole_ipv4,
            sinkhole_ipv6,
            ede,
            ede_text: ede_text.to_string(),
            ede_option: wire::ede_option(ede.code(), ede_text),
            soa_tail,
        }
    }

    /// The EDE option bytes (for tests and the check command).
    pub fn ede_option(&self) -> &[u8] {
        &self.ede_option
    }

    /// The same block answered with `action` instead (a client group's own
    /// action): prebuilt when the snapshot is, never per query.
    pub fn with_action(&self, action: Action) -> Self {
        Self {
            action,
            ..self.clone()
        }
    }

    /// Writes the complete answer to a blocked query into `out` (cleared first).
    ///
    /// `query` is the raw query; `q` its parsed facts; `suffix_at` the offset
    /// in the packet where the listed suffix of the qname starts, so the SOA
    /// owner is a compression pointer into the echoed question.
    #[inline]
    pub fn respond(&self, query: &[u8], q: &QueryFacts, suffix_at: usize, out: &mut Vec<u8>) {
        let ptr = [0xc0 | (suffix_at >> 8) as u8, suffix_at as u8];
        self.write(query, q, &ptr, self.ttl, &self.ede_option, out);
    }

    /// Writes the answer to a query whose name was not listed but whose
    /// answer led through a listed one (a CNAME or DNAME target): the same
    /// block, with the SOA owned by `listed` (a wire-form name with its
    /// root byte), `ttl` for the records and the negative TTL, and
    /// `ede_option` (which says how the listed name was reached).
    pub fn respond_through(
        &self,
        query: &[u8],
        q: &QueryFacts,
        listed: &[u8],
        ttl: u32,
        ede_option: &[u8],
        out: &mut Vec<u8>,
    ) {
        self.write(query, q, listed, ttl, ede_option, out);
    }

    /// The answer: `owner` is the SOA's owner as written into the packet
    /// (a compression pointer, or a whole wire-form name).
    #[inline]
    fn write(
        &self,
        query: &[u8],
        q: &QueryFacts,
        owner: &[u8],
        ttl: u32,
        ede_option: &[u8],
        out: &mut Vec<u8>,
    ) {
        let rcode = match self.action {
            Action::Nxdomain => wire::Rcode::NxDomain,
            Action::Refused => wire::Rcode::Refused,
            Action::Nodata | Action::Sinkhole => wire::Rcode::NoError,
        };
        let sinkhole_answer = self.action == Action::Sinkhole
            && (q.qtype == wire::TYPE_A || q.qtype == wire::TYPE_AAAA);
        start_response(query, q, rcode, out);
        // Records carry a real class: a query for class ANY or NONE gets IN ones.
        let class = if matches!(q.qclass, 254 | 255) {
            1
        } else {
            q.qclass
        };
        let mut ancount = 0u16;
        let mut nscount = 0u16;
        if sinkhole_answer {
            // Owner: pointer to the qname at offset 12.
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&q.qtype.to_be_bytes());
            out.extend_from_slice(&class.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            if q.qtype == wire::TYPE_A {
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&self.sinkhole_ipv4.octets());
            } else {
                out.extend_from_slice(&16u16.to_be_bytes());
                out.extend_from_slice(&self.sinkhole_ipv6.octets());
            }
            ancount = 1;
        } else if self.action != Action::Refused {
            // SOA owned by the listed name; MNAME the same, as a pointer.
            let owner_at = out.len();
            let mname = if owner.len() == 2 {
                [owner[0], owner[1]]
            } else {
                [0xc0 | (owner_at >> 8) as u8, owner_at as u8]
            };
            out.extend_from_slice(owner);
            out.extend_from_slice(&wire::TYPE_SOA.to_be_bytes());
            out.extend_from_slice(&class.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&((2 + self.soa_tail.len()) as u16).to_be_bytes());
            out.extend_from_slice(&mname);
            // The tail ends with MINIMUM, the negative TTL: `ttl` too.
            let tail = self.soa_tail.len().saturating_sub(4);
            out.extend_from_slice(self.soa_tail.get(..tail).unwrap_or(&[]));
            out.extend_from_slice(&ttl.to_be_bytes());
            nscount = 1;
        }
        wire::put_u16(out, 6, ancount);
        wire::put_u16(out, 8, nscount);
        if let Some(edns) = q.edns {
            wire::push_opt(out, 0, edns.dnssec_ok, ede_option);
        }
    }
}

/// The parsed facts of a query that answers are built from.
#[derive(Debug, Clone, Copy)]
pub struct QueryFacts {
    pub id: u16,
    /// Request flags (RD and CD are echoed).
    pub flags: u16,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just after the question section.
    pub question_end: usize,
    pub edns: Option<wire::Edns>,
}

/// Writes a response header (QR, RA, RD and CD echoed, AA/AD clear) and the
/// question copied byte for byte from the query, so its case is preserved.
pub fn start_response(query: &[u8], q: &QueryFacts, rcode: wire::Rcode, out: &mut Vec<u8>) {
    out.clear();
    let flags = 0x8000 | 0x0080 | (q.flags & (0x0100 | 0x0010)) | rcode as u16;
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(query.get(wire::HEADER_LEN..q.question_end).unwrap_or(&[]));
}
