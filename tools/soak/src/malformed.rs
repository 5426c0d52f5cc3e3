//! Packets no server should answer normally, sent in turn as the
//! `malformed` class, and the rcode of what comes back (which may be
//! BADVERS, whose upper bits sit in the answer's OPT record).
//!
//! No answer is owed to any of them: one that does not come is counted as
//! "unanswered", never as lost.

use crate::stats::RCODES;

/// Kinds of malformed packet, sent in turn.
pub(crate) const KINDS: [&str; 8] = [
    "short-header",
    "garbage",
    "cut-question",
    "opt-overrun",
    "two-opt",
    "edns-version-1",
    "no-question",
    "pointer-loop",
];

/// A malformed packet of `kind` (see [`KINDS`]) with `id`, into `out`.
pub(crate) fn malformed(kind: usize, id: u16, rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
    const NAME: &[u8] = b"\x0eseized-example\x03com\x00";
    let header = |out: &mut Vec<u8>, qd: u16, ar: u16| {
        out.extend_from_slice(&[0, 0, 0x01, 0]);
        out.extend_from_slice(&qd.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&ar.to_be_bytes());
    };
    let opt = |out: &mut Vec<u8>, version: u8, rdlen: u16| {
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, version, 0, 0]);
        out.extend_from_slice(&rdlen.to_be_bytes());
    };
    out.clear();
    match kind {
        0 => out.extend((0..rng.usize(2..12)).map(|_| rng.u8(..))),
        1 => out.extend((0..rng.usize(12..80)).map(|_| rng.u8(..))),
        2 => {
            header(out, 1, 0);
            out.extend_from_slice(&NAME[..rng.usize(1..NAME.len() - 1)]);
        }
        3 => {
            header(out, 1, 1);
            out.extend_from_slice(NAME);
            out.extend_from_slice(&[0, 1, 0, 1]);
            opt(out, 0, 40);
        }
        4 => {
            header(out, 1, 2);
            out.extend_from_slice(NAME);
            out.extend_from_slice(&[0, 1, 0, 1]);
            opt(out, 0, 0);
            opt(out, 0, 0);
        }
        5 => {
            header(out, 1, 1);
            out.extend_from_slice(NAME);
            out.extend_from_slice(&[0, 1, 0, 1]);
            opt(out, 1, 0);
        }
        6 => header(out, 0, 0),
        _ => {
            header(out, 1, 0);
            out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        }
    }
    out[..2].copy_from_slice(&id.to_be_bytes());
}

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
    fn each_kind_is_what_its_name_says() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut out = Vec::new();
        for _ in 0..50 {
            malformed(0, 0x1234, &mut rng, &mut out);
            assert!(out.len() < 12, "short-header: {out:?}");
            malformed(2, 0x1234, &mut rng, &mut out);
            assert!(
                out.len() > 12 && out.len() < 12 + 20,
                "cut-question: {out:?}"
            );
        }
        malformed(3, 9, &mut rng, &mut out);
        let rdlen = u16::from_be_bytes([out[out.len() - 2], out[out.len() - 1]]);
        assert_eq!(
            rdlen, 40,
            "opt-overrun: the OPT claims 40 bytes it does not have"
        );
        malformed(4, 9, &mut rng, &mut out);
        assert_eq!(&out[10..12], [0, 2], "two-opt: ARCOUNT 2");
        malformed(5, 9, &mut rng, &mut out);
        assert_eq!(out[out.len() - 5], 1, "edns-version-1");
        malformed(6, 9, &mut rng, &mut out);
        assert_eq!(out, [0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], "no-question");
        malformed(7, 9, &mut rng, &mut out);
        assert_eq!(
            &out[12..14],
            [0xc0, 12],
            "pointer-loop: the name points at itself"
        );
    }

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
