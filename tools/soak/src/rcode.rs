//! What an answer says: its rcode by number, including the extended bits
//! an OPT record carries (BADVERS, the answer to EDNS version 1, is 16: 1
//! in the OPT, 0 in the header).

/// Rcodes by number; 16 is BADVERS (an OPT record's extended rcode).
pub(crate) const RCODES: [&str; 17] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "R11", "R12", "R13", "R14", "R15", "BADVERS",
];

/// The rcode of an answer (at least 12 bytes) including the extended bits
/// of its OPT record (BADVERS is 16: 1 in the OPT, 0 in the header).
pub(crate) fn full_rcode(p: &[u8]) -> usize {
    let low = usize::from(p[3] & 0x0f);
    let count = |at: usize| usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let l = *p.get(at)?;
            if l & 0xc0 == 0xc0 {
                return Some(at + 2);
            }
            if l == 0 {
                return Some(at + 1);
            }
            at += 1 + usize::from(l);
        }
    };
    let walk = || -> Option<usize> {
        let mut at = 12;
        for _ in 0..count(4) {
            at = skip_name(at)? + 4;
        }
        for i in 0..count(6) + count(8) + count(10) {
            let name = skip_name(at)?;
            let rr = p.get(name..name + 10)?;
            if i >= count(6) + count(8) && rr[0..2] == [0, 41] {
                return Some(usize::from(rr[4]) << 4 | low);
            }
            at = name + 10 + usize::from(u16::from_be_bytes([rr[8], rr[9]]));
        }
        None
    };
    walk().unwrap_or(low).min(RCODES.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badvers_is_read_from_the_opt_record() {
        // A FORMERR-less answer to edns-version-1: header rcode 0, OPT
        // extended rcode 1, with the question echoed.
        let mut p = vec![0, 9, 0x81, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(b"\x0eseized-example\x03com\x00\x00\x01\x00\x01");
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(RCODES[full_rcode(&p)], "BADVERS");
        p[11] = 0;
        assert_eq!(full_rcode(&p), 0, "no OPT counted: the header's rcode");
        let formerr = [0, 9, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(RCODES[full_rcode(&formerr)], "FORMERR");
    }

    #[test]
    fn any_answer_gives_an_rcode_without_panicking() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let p: Vec<u8> = (0..rng.usize(12..64)).map(|_| rng.u8(..)).collect();
            assert!(full_rcode(&p) < RCODES.len());
        }
    }
}
