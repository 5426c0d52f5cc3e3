//! Packets no server should answer normally, sent in turn as the
//! `malformed` class (what their answers say is read by
//! [`crate::rcode::full_rcode`]).
//!
//! No answer is owed to any of them: one that does not come is counted as
//! "unanswered", never as lost.

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
}
