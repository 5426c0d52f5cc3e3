//! The few pieces of the DNS wire format that the per-query path reads and
//! writes itself.
//!
//! Why not decode every packet into a `hickory_proto::op::Message`? Because the
//! blocked and cached paths only need the header, the question and the OPT
//! record, and a full decode plus re-encode costs several times more than the
//! whole blocked answer (hickory-dns answers 96k blocked QPS on the lab machine
//! where a bare responder answers 293k). Everything here is bounds-checked and
//! returns `None`/`Err` on short or malformed input; nothing panics on bytes
//! from the network.
//!
//! `wire` sits at the bottom beside `matcher`: it deals in bytes and
//! imports nothing from the crate. A name comes out label by label
//! ([`read_labels`]); `query::read_name` makes the matcher's key of it.

/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// RR type of the EDNS(0) pseudo-record.
pub const TYPE_OPT: u16 = 41;
/// RR type SOA.
pub const TYPE_SOA: u16 = 6;
/// RR type TSIG (RFC 8945).
pub const TYPE_TSIG: u16 = 250;
/// RR type A.
pub const TYPE_A: u16 = 1;
/// RR type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// The UDP payload size embargo advertises and uses as its ceiling (DNS Flag Day 2020).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// EDNS option code of an Extended DNS Error (RFC 8914).
pub const OPTION_EDE: u16 = 15;

/// Response codes embargo produces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// A record type as people read it: its mnemonic (`TXT`), or `TYPE65534`
/// for one without (RFC 3597 section 5). Formats without allocating, so the
/// log and `check` can show types the same way dig does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeName(pub u16);

impl TypeName {
    /// The mnemonic, if the type has one (IANA "Resource Record (RR) TYPEs").
    pub fn mnemonic(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "A",
            2 => "NS",
            3 => "MD",
            4 => "MF",
            5 => "CNAME",
            6 => "SOA",
            7 => "MB",
            8 => "MG",
            9 => "MR",
            10 => "NULL",
            11 => "WKS",
            12 => "PTR",
            13 => "HINFO",
            14 => "MINFO",
            15 => "MX",
            16 => "TXT",
            17 => "RP",
            18 => "AFSDB",
            19 => "X25",
            20 => "ISDN",
            21 => "RT",
            22 => "NSAP",
            23 => "NSAP-PTR",
            24 => "SIG",
            25 => "KEY",
            26 => "PX",
            27 => "GPOS",
            28 => "AAAA",
            29 => "LOC",
            30 => "NXT",
            31 => "EID",
            32 => "NIMLOC",
            33 => "SRV",
            34 => "ATMA",
            35 => "NAPTR",
            36 => "KX",
            37 => "CERT",
            38 => "A6",
            39 => "DNAME",
            40 => "SINK",
            41 => "OPT",
            42 => "APL",
            43 => "DS",
            44 => "SSHFP",
            45 => "IPSECKEY",
            46 => "RRSIG",
            47 => "NSEC",
            48 => "DNSKEY",
            49 => "DHCID",
            50 => "NSEC3",
            51 => "NSEC3PARAM",
            52 => "TLSA",
            53 => "SMIMEA",
            55 => "HIP",
            56 => "NINFO",
            57 => "RKEY",
            58 => "TALINK",
            59 => "CDS",
            60 => "CDNSKEY",
            61 => "OPENPGPKEY",
            62 => "CSYNC",
            63 => "ZONEMD",
            64 => "SVCB",
            65 => "HTTPS",
            66 => "DSYNC",
            99 => "SPF",
            100 => "UINFO",
            101 => "UID",
            102 => "GID",
            103 => "UNSPEC",
            104 => "NID",
            105 => "L32",
            106 => "L64",
            107 => "LP",
            108 => "EUI48",
            109 => "EUI64",
            128 => "NXNAME",
            249 => "TKEY",
            250 => "TSIG",
            251 => "IXFR",
            252 => "AXFR",
            253 => "MAILB",
            254 => "MAILA",
            255 => "ANY",
            256 => "URI",
            257 => "CAA",
            258 => "AVC",
            259 => "DOA",
            260 => "AMTRELAY",
            261 => "RESINFO",
            262 => "WALLET",
            263 => "CLA",
            264 => "IPN",
            32768 => "TA",
            32769 => "DLV",
            _ => return None,
        })
    }
}

impl std::fmt::Display for TypeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "TYPE{}", self.0),
        }
    }
}

/// Reads a big-endian u16 at `at`.
#[inline]
pub fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads a big-endian u32 at `at`.
#[inline]
pub fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Writes a big-endian u16 at `at` (the caller owns a buffer long enough).
#[inline]
pub fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(b) = buf.get_mut(at..at + 2) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// Header fields of a message, decoded from the first 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    /// Decodes the header, or `None` for a packet shorter than 12 bytes.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        Some(Self {
            id: u16_at(buf, 0)?,
            flags: u16_at(buf, 2)?,
            qdcount: u16_at(buf, 4)?,
            ancount: u16_at(buf, 6)?,
            nscount: u16_at(buf, 8)?,
            arcount: u16_at(buf, 10)?,
        })
    }

    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The 4-bit OPCODE.
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    /// The 4-bit header RCODE.
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }

    /// TC: the message was truncated.
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// Where the records of `buf` (this header's message) start: just
    /// after its `qdcount` questions; `None` when they cannot be skipped.
    pub fn records_start(&self, buf: &[u8]) -> Option<usize> {
        let mut at = HEADER_LEN;
        for _ in 0..self.qdcount {
            at = skip_name(buf, at)? + 4;
        }
        Some(at)
    }
}

/// Skips a possibly compressed name starting at `at`; returns the offset just
/// after it. Pointers are not followed (their target is irrelevant for skipping).
pub fn skip_name(buf: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *buf.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => {
                at += 1 + len as usize;
                if at > buf.len() {
                    return None;
                }
            }
            0xc0 => {
                buf.get(at + 1)?;
                return Some(at + 2);
            }
            // 0x40 and 0x80 are the obsolete/unassigned label types.
            _ => return None,
        }
    }
}

/// Reads a possibly compressed name at `at`, handing its labels to
/// `label` in order and following compression pointers (at most 128
/// jumps, so loops terminate). Returns the offset just after the name
/// where it stands; `None` when it cannot be read or `label` refuses one.
pub fn read_labels<'a>(
    buf: &'a [u8],
    at: usize,
    mut label: impl FnMut(&'a [u8]) -> bool,
) -> Option<usize> {
    let mut pos = at;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *buf.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(end.unwrap_or(pos + 1)),
            0x00 => {
                if !label(buf.get(pos + 1..pos + 1 + len as usize)?) {
                    return None;
                }
                pos += 1 + len as usize;
            }
            0xc0 => {
                let target = (u16_at(buf, pos)? & 0x3fff) as usize;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                jumps += 1;
                if jumps > 128 {
                    return None;
                }
                pos = target;
            }
            _ => return None,
        }
    }
}

/// A resource record's fixed fields, as found while walking a section.
#[derive(Debug, Clone, Copy)]
pub struct RrRef {
    /// Offset of the owner name.
    pub name_at: usize,
    pub rtype: u16,
    pub class: u16,
    /// Offset of the 32-bit TTL field (patched by the cache).
    pub ttl_at: usize,
    pub ttl: u32,
    /// Offset and length of RDATA.
    pub rdata_at: usize,
    pub rdlen: usize,
}

/// Reads the RR at `at`; returns it and the offset after it.
pub fn read_rr(buf: &[u8], at: usize) -> Option<(RrRef, usize)> {
    let after_name = skip_name(buf, at)?;
    let rtype = u16_at(buf, after_name)?;
    let class = u16_at(buf, after_name + 2)?;
    let ttl = u32_at(buf, after_name + 4)?;
    let rdlen = u16_at(buf, after_name + 8)? as usize;
    let rdata_at = after_name + 10;
    if rdata_at + rdlen > buf.len() {
        return None;
    }
    Some((
        RrRef {
            name_at: at,
            rtype,
            class,
            ttl_at: after_name + 4,
            ttl,
            rdata_at,
            rdlen,
        },
        rdata_at + rdlen,
    ))
}

/// The EDNS(0) facts of a query that shape the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size (values below 512 count as 512).
    pub udp_size: u16,
    /// The DO bit, echoed in answers (RFC 3225).
    pub dnssec_ok: bool,
    /// Offset of the OPT record's CLASS field, so the forwarder can clamp it in place.
    pub class_at: usize,
}

/// Appends an OPT record (root owner, our payload size, version 0) with the
/// given options and counts it in the header's ARCOUNT; `ext_rcode` is the
/// upper 8 bits of a 12-bit RCODE. `out` must start with a header.
pub fn push_opt(out: &mut Vec<u8>, ext_rcode: u8, dnssec_ok: bool, options: &[u8]) {
    let arcount = u16_at(out, 10).unwrap_or(0);
    put_u16(out, 10, arcount.saturating_add(1));
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
    out.push(ext_rcode);
    out.push(0); // version
    out.push(if dnssec_ok { 0x80 } else { 0 });
    out.push(0);
    out.extend_from_slice(&(options.len() as u16).to_be_bytes());
    out.extend_from_slice(options);
}

/// Rewrites a response's EDNS: drops the OPT record it came with (OPT is
/// hop-by-hop, RFC 6891 6.1.1: the upstream's payload size, cookies and
/// client-subnet answers are not the client's business and must not be
/// cached) and, when the client used EDNS (`dnssec_ok` is `Some`), appends
/// embargo's own: payload 1232, the upstream's extended RCODE, DO echoed,
/// and the upstream's Extended DNS Errors, which are meant for the client.
/// `None` when the response cannot be walked.
///
/// What else goes, so that what the client gets (and the cache keeps) is
/// a message whenever the upstream's was:
/// - every option of an OPT whose RDATA does not split into whole options
///   ([`opt_options`]): its boundaries cannot be trusted, so neither can an
///   EDE read from it. The answer itself is kept (hickory and BIND read
///   such an OPT the same way): the options are hop-by-hop, and an EDE is
///   information only (RFC 8914 3), not worth a SERVFAIL;
/// - an EDE too short for its INFO-CODE (RFC 8914 2);
/// - a TSIG in the additional section: it signs the upstream's message, not
///   ours, and must be its last record (RFC 8945 5.1), where our OPT goes;
/// - the records after the first OPT or TSIG dropped: they would move, and
///   a compression pointer among them may point into what moved. Servers
///   write their OPT last but for a TSIG (RFC 6891 6.1.1 allows it
///   anywhere in the section), so in practice nothing follows it; a second
///   OPT (RFC 6891 6.1.1 allows one) goes with them.
pub fn replace_opt(resp: &[u8], dnssec_ok: Option<bool>) -> Option<Vec<u8>> {
    let hdr = Header::parse(resp)?;
    let mut at = hdr.records_start(resp)?;
    let mut out = Vec::with_capacity(resp.len() + 16);
    out.extend_from_slice(resp.get(..at)?);
    let (mut ext_rcode, mut ede) = (0u8, Vec::new());
    let mut arcount = 0u16;
    // From the first OPT or TSIG on, nothing more is copied.
    let mut cut = false;
    let before_additional = u32::from(hdr.ancount) + u32::from(hdr.nscount);
    for i in 0..before_additional + u32::from(hdr.arcount) {
        let (rr, next) = read_rr(resp, at)?;
        let in_additional = i >= before_additional;
        if in_additional && !cut && rr.rtype == TYPE_OPT {
            ext_rcode = (rr.ttl >> 24) as u8;
            let rdata = resp.get(rr.rdata_at..rr.rdata_at + rr.rdlen)?;
            for (code, data) in opt_options(rdata).into_iter().flatten() {
                if code == OPTION_EDE && data.len() >= 2 {
                    ede.extend_from_slice(&code.to_be_bytes());
                    ede.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    ede.extend_from_slice(data);
                }
            }
        }
        cut |= in_additional && matches!(rr.rtype, TYPE_OPT | TYPE_TSIG);
        if !cut {
            out.extend_from_slice(resp.get(at..next)?);
            arcount += u16::from(in_additional);
        }
        at = next;
    }
    put_u16(&mut out, 10, arcount);
    if let Some(dnssec_ok) = dnssec_ok {
        push_opt(&mut out, ext_rcode, dnssec_ok, &ede);
    }
    Some(out)
}

/// The options of an OPT record's RDATA, as (code, data), or `None` when
/// the RDATA does not split into whole options: one states a length past
/// the end, or fewer bytes than an option's code and length are left.
pub fn opt_options(rdata: &[u8]) -> Option<impl Iterator<Item = (u16, &[u8])>> {
    let mut rest = rdata;
    while !rest.is_empty() {
        rest = rest.get(4 + usize::from(u16_at(rest, 2)?)..)?;
    }
    let mut rest = rdata;
    Some(std::iter::from_fn(move || {
        let code = u16_at(rest, 0)?;
        let end = 4 + usize::from(u16_at(rest, 2)?);
        let data = rest.get(4..end)?;
        rest = rest.get(end..)?;
        Some((code, data))
    }))
}

/// Encodes an Extended DNS Error option (RFC 8914 section 2).
pub fn ede_option(info_code: u16, text: &str) -> Vec<u8> {
    // Keep the whole answer well under 512 bytes even with a 255-byte qname.
    let text = truncate_utf8(text, 160);
    let mut opt = Vec::with_capacity(6 + text.len());
    opt.extend_from_slice(&OPTION_EDE.to_be_bytes());
    opt.extend_from_slice(&((2 + text.len()) as u16).to_be_bytes());
    opt.extend_from_slice(&info_code.to_be_bytes());
    opt.extend_from_slice(text.as_bytes());
    opt
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: `wire` sits at the bottom, beside `matcher`: it takes and
    /// gives bytes and imports nothing from the crate, so that either can
    /// become a crate of its own.
    #[test]
    fn r16_wire_imports_nothing_from_the_crate() {
        let source = include_str!("wire.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        for word in ["crate::", "super::"] {
            assert!(!code.contains(word), "wire.rs uses {word}");
        }
    }

    /// Issue 9 (4): types are shown by mnemonic, RFC 3597 style otherwise.
    #[test]
    fn r9_type_names_are_mnemonics() {
        assert_eq!(TypeName(16).to_string(), "TXT");
        assert_eq!(TypeName(1).to_string(), "A");
        assert_eq!(TypeName(65).to_string(), "HTTPS");
        assert_eq!(TypeName(255).to_string(), "ANY");
        assert_eq!(TypeName(65534).to_string(), "TYPE65534");
        assert_eq!(TypeName(54).to_string(), "TYPE54");
    }

    /// The labels of the name at `at`, and the offset after it.
    fn labels(buf: &[u8], at: usize) -> Option<(Vec<&[u8]>, usize)> {
        let mut labels = Vec::new();
        let end = read_labels(buf, at, |l| {
            labels.push(l);
            true
        })?;
        Some((labels, end))
    }

    #[test]
    fn skip_and_read_names() {
        // www.Example.com. then a pointer back to "Example.com".
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(b"\x03www\x07Example\x03com\x00");
        buf.extend_from_slice(&[0xc0, 16]);
        assert_eq!(skip_name(&buf, 12), Some(29));
        assert_eq!(skip_name(&buf, 29), Some(31));
        let (l, end) = labels(&buf, 29).expect("pointer name");
        assert_eq!(end, 31);
        assert_eq!(l, [&b"Example"[..], b"com"]);
        let (l, end) = labels(&buf, 12).expect("name");
        assert_eq!((l.len(), end), (3, 29));
        assert!(
            read_labels(&buf, 12, |l| l != b"com").is_none(),
            "a label refused"
        );
    }

    #[test]
    fn pointer_loops_and_short_input_are_rejected() {
        let buf = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 12];
        assert!(labels(&buf, 12).is_none());
        assert!(skip_name(&[3, b'a'], 0).is_none());
        assert!(read_rr(&[0, 0, 1], 0).is_none());
        assert!(Header::parse(&[0; 11]).is_none());
    }

    #[test]
    fn replace_opt_keeps_ede_and_extended_rcode_drops_the_rest() {
        // Header (1 question, 1 answer, 0, 1 additional) + question + A + OPT(cookie, EDE).
        let mut r = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1];
        r.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let mut opts = vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        opts.extend_from_slice(&ede_option(18, "x"));
        r.extend_from_slice(&[0, 0, 41, 0x10, 0, 1, 0, 0, 0]);
        r.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        r.extend_from_slice(&opts);
        let out = replace_opt(&r, Some(true)).expect("walks");
        let end = 12 + 7 + 16;
        assert_eq!(&out[..end], &r[..end], "everything but the OPT kept");
        assert_eq!(&out[end..end + 3], &[0, 0, 41]);
        assert_eq!(u16_at(&out, end + 3), Some(EDNS_UDP_SIZE));
        assert_eq!(out[end + 5], 1, "extended RCODE kept");
        assert_eq!(out[end + 7], 0x80, "DO echoed");
        assert_eq!(
            &out[end + 11..],
            &ede_option(18, "x")[..],
            "only the EDE option kept"
        );
        let plain = replace_opt(&r, None).expect("walks");
        assert_eq!(plain.len(), end);
        assert_eq!(u16_at(&plain, 10), Some(0));
        assert!(replace_opt(&r[..20], None).is_none());
    }

    /// A response: header (ID 1, QR RD RA, the given counts), the question
    /// `www.up.test. A IN`, then `records` as they are.
    fn response(ancount: u16, arcount: u16, records: &[u8]) -> Vec<u8> {
        let mut r = vec![0, 1, 0x81, 0x80, 0, 1];
        for n in [ancount, 0, arcount] {
            r.extend_from_slice(&n.to_be_bytes());
        }
        r.extend_from_slice(b"\x03www\x02up\x04test\x00\x00\x01\x00\x01");
        r.extend_from_slice(records);
        r
    }

    /// An OPT record (root owner, payload 1232, extended RCODE `ext`) with `rdata`.
    fn opt(ext: u8, rdata: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x04, 0xd0, ext, 0, 0, 0];
        o.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        o.extend_from_slice(rdata);
        o
    }

    /// `www.up.test. 60 A 192.0.2.<i>`, its owner a pointer to the question.
    fn a_record(i: u8) -> Vec<u8> {
        vec![0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, i]
    }

    /// What hickory makes of `bytes`, or why it cannot.
    fn decode(bytes: &[u8]) -> Result<hickory_proto::op::Message, String> {
        hickory_proto::op::Message::from_vec(bytes).map_err(|e| format!("{e}: {bytes:02x?}"))
    }

    /// Issue 16 (10): an option whose length runs past the end of the OPT
    /// was copied cut short with its old length, and the client's answer
    /// (and the cached one) no longer parsed. A malformed OPT's options are
    /// all dropped (as hickory reads one); its extended RCODE stays.
    #[test]
    fn r16_an_option_that_overruns_the_opt_is_dropped() {
        // A cookie, then an EDE claiming 10 bytes where 4 are left.
        let mut rdata = vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        rdata.extend_from_slice(&[0, 15, 0, 10, 0, 18, b'x', b'y']);
        let mut records = a_record(1);
        records.extend_from_slice(&opt(0, &rdata));
        let r = response(1, 1, &records);
        decode(&r).expect("hickory reads the upstream's answer (and ignores its options)");
        let out = replace_opt(&r, Some(false)).expect("walks");
        let m = decode(&out).expect("the client's answer parses");
        let edns = m.edns.expect("our OPT");
        assert_eq!(
            edns.options().as_ref().len(),
            0,
            "no option of a malformed OPT"
        );
        // Bytes after the last whole option that cannot hold one: malformed too.
        let mut rdata = ede_option(18, "x");
        rdata.extend_from_slice(&[0, 15, 0]);
        let r = response(1, 1, &[a_record(1), opt(1, &rdata)].concat());
        let out = replace_opt(&r, Some(true)).expect("walks");
        let m = decode(&out).expect("parses");
        assert_eq!(m.edns.as_ref().map(|e| e.options().as_ref().len()), Some(0));
        assert_eq!(out[out.len() - 6], 1, "the extended RCODE is kept");
        // An EDE too short for its INFO-CODE is no EDE (RFC 8914 2): dropped alone.
        let mut rdata = vec![0, 15, 0, 1, 7];
        rdata.extend_from_slice(&ede_option(18, "kept"));
        let r = response(1, 1, &[a_record(1), opt(0, &rdata)].concat());
        let out = replace_opt(&r, Some(false)).expect("walks");
        decode(&out).expect("parses");
        assert!(out.ends_with(&ede_option(18, "kept")));
        assert_eq!(
            u16_at(&out, out.len() - ede_option(18, "kept").len() - 2),
            Some(ede_option(18, "kept").len() as u16),
            "the OPT holds the good EDE alone"
        );
    }

    /// Issue 16 (10): records after the upstream's OPT would move when it is
    /// dropped, and a compression pointer among them into what moved would
    /// point at other bytes; a TSIG (hop-by-hop, RFC 8945 5.1: the last
    /// record) would come before our OPT. Both go with the OPT.
    #[test]
    fn r16_what_follows_the_opt_and_a_tsig_are_dropped() {
        // OPT, then `mail.up.test. A` (owner: "mail" + pointer to "up.test"
        // in the question), then `mail.up.test. AAAA` pointing at the A's owner.
        let mut records = a_record(1);
        records.extend_from_slice(&opt(0, &ede_option(18, "x")));
        let mail_at = response(1, 3, &records).len();
        records.extend_from_slice(
            b"\x04mail\xc0\x10\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x02",
        );
        let ptr = [0xc0 | (mail_at >> 8) as u8, mail_at as u8];
        records.extend_from_slice(&ptr);
        records.extend_from_slice(&[0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        records.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let r = response(1, 3, &records);
        decode(&r).expect("the upstream's answer parses");
        for dnssec_ok in [None, Some(false)] {
            let out = replace_opt(&r, dnssec_ok).expect("walks");
            let m = decode(&out).expect("the client's answer parses");
            assert_eq!(m.answers.len(), 1);
            assert!(m.additionals.is_empty(), "{:?}", m.additionals);
        }
        // A TSIG, last as it must be.
        let mut tsig = b"\x03key\x00\x00\xfa\x00\xff\x00\x00\x00\x00".to_vec();
        let mut rdata = b"\x0bhmac-sha256\x00".to_vec();
        rdata.extend_from_slice(&[0, 0, 0, 0, 0, 1, 1, 44, 0, 0, 0, 1, 0, 0, 0, 0]);
        tsig.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        tsig.extend_from_slice(&rdata);
        let r = response(1, 2, &[a_record(1), opt(0, &[]), tsig].concat());
        decode(&r).expect("the upstream's answer parses");
        let out = replace_opt(&r, Some(false)).expect("walks");
        let m = decode(&out).expect("the client's answer parses");
        assert!(m.additionals.is_empty() && m.edns.is_some());
    }

    /// A record for the additional section of [`r16_replace_opt_keeps_what_hickory_reads`].
    #[derive(Debug, Clone)]
    enum Extra {
        /// An A record whose owner is a pointer to the owner of extra `n`
        /// before it (or to the question).
        A(usize),
        /// An OPT whose RDATA is options of these codes, stated lengths and data.
        Opt(u8, Vec<(u16, u16, Vec<u8>)>, Vec<u8>),
    }

    fn extra() -> impl proptest::strategy::Strategy<Value = Extra> {
        use proptest::prelude::*;
        let option = (
            prop_oneof![Just(15u16), Just(10), Just(12), any::<u16>()],
            0u16..24,
            proptest::collection::vec(any::<u8>(), 0..20),
        );
        prop_oneof![
            (0usize..4).prop_map(Extra::A),
            (
                any::<u8>(),
                proptest::collection::vec(option, 0..4),
                proptest::collection::vec(any::<u8>(), 0..4)
            )
                .prop_map(|(ext, opts, tail)| Extra::Opt(ext, opts, tail)),
        ]
    }

    proptest::proptest! {
        /// Issue 16 (10): whatever OPT records (well-formed or not) and
        /// records around them an upstream sends, when hickory reads its
        /// answer it reads the client's too.
        #[test]
        fn r16_replace_opt_keeps_what_hickory_reads(
            extras in proptest::collection::vec(extra(), 0..5),
            dnssec_ok in proptest::option::of(proptest::bool::ANY),
        ) {
            let mut records = a_record(1);
            let mut owners = vec![12usize];
            let base = response(1, 0, &[]).len() + records.len();
            for e in &extras {
                let at = base + records.len() - a_record(1).len();
                match e {
                    Extra::A(n) => {
                        let to = owners[owners.len().saturating_sub(1 + n)];
                        records.extend_from_slice(&[0xc0 | (to >> 8) as u8, to as u8]);
                        records.extend_from_slice(&a_record(2)[2..]);
                        owners.push(at);
                    }
                    Extra::Opt(ext, opts, tail) => {
                        let mut rdata = Vec::new();
                        for (code, len, data) in opts {
                            rdata.extend_from_slice(&code.to_be_bytes());
                            rdata.extend_from_slice(&len.to_be_bytes());
                            rdata.extend_from_slice(data);
                        }
                        rdata.extend_from_slice(tail);
                        records.extend_from_slice(&opt(*ext, &rdata));
                    }
                }
            }
            let r = response(1, extras.len() as u16, &records);
            if decode(&r).is_ok() {
                let out = replace_opt(&r, dnssec_ok).expect("walks what hickory reads");
                let m = decode(&out);
                proptest::prop_assert!(m.is_ok(), "{:?}", m.err());
            }
        }

        /// Any bytes at all: no panic, and what hickory reads stays readable.
        #[test]
        fn r16_replace_opt_on_any_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            dnssec_ok in proptest::option::of(proptest::bool::ANY),
        ) {
            let out = replace_opt(&bytes, dnssec_ok);
            if let (Ok(_), Some(out)) = (decode(&bytes), out) {
                let m = decode(&out);
                proptest::prop_assert!(m.is_ok(), "{:?}", m.err());
            }
        }
    }

    #[test]
    fn ede_option_layout() {
        let o = ede_option(16, "hi");
        assert_eq!(o, vec![0, 15, 0, 4, 0, 16, b'h', b'i']);
        let long = "é".repeat(200);
        let o = ede_option(15, &long);
        assert!(o.len() <= 6 + 160);
        assert!(std::str::from_utf8(&o[6..]).is_ok());
    }
}
