//! RFC 9250 4.2's framing: each query goes on a bidirectional stream of its
//! own as a 2-byte length and the message, whose ID MUST be 0 (the stream,
//! not the ID, pairs the answer with its query); the answer comes back the
//! same way, and each side ends the stream (FIN) after its one message.

/// What is wrong with what a stream brought back (counted as an
/// unexpected answer, as a UDP answer with a foreign ID is).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0} bytes: no room for the 2-byte length")]
    NoLength(usize),
    #[error("the length says {said} bytes, the stream held {held} after it")]
    Length { said: usize, held: usize },
    #[error("a message of {0} bytes is shorter than a DNS header")]
    Short(usize),
    #[error("message ID {0}, where DoQ's is always 0")]
    Id(u16),
}

/// `query` as it goes on its stream: its length, then the message with its
/// ID set to 0. Queries are at most 512 bytes here (`queries::load`), far
/// below the 65,535 a length can say.
pub(crate) fn frame(query: &[u8]) -> Vec<u8> {
    let len = u16::try_from(query.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + query.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&query[..usize::from(len)]);
    if let Some(id) = out.get_mut(2..4) {
        id.copy_from_slice(&[0, 0]);
    }
    out
}

/// The answer in everything a stream carried up to its FIN: the length
/// must say exactly what follows, a whole header, and ID 0.
pub(crate) fn answer(stream: &[u8]) -> Result<&[u8], Error> {
    let [hi, lo, rest @ ..] = stream else {
        return Err(Error::NoLength(stream.len()));
    };
    let said = usize::from(u16::from_be_bytes([*hi, *lo]));
    if said != rest.len() {
        return Err(Error::Length {
            said,
            held: rest.len(),
        });
    }
    if rest.len() < 12 {
        return Err(Error::Short(rest.len()));
    }
    match u16::from_be_bytes([rest[0], rest[1]]) {
        0 => Ok(rest),
        id => Err(Error::Id(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &[u8] = b"\x12\x34\x01\0\0\x01\0\0\0\0\0\0\x07example\x03com\0\0\x01\0\x01";

    #[test]
    fn a_query_is_its_length_then_the_message_with_id_0() {
        let f = frame(QUERY);
        assert_eq!(f.len(), 2 + QUERY.len());
        assert_eq!(f[..2], (QUERY.len() as u16).to_be_bytes());
        assert_eq!(f[2..4], [0, 0], "ID 0 whatever the file's query had");
        assert_eq!(f[4..], QUERY[2..]);
    }

    #[test]
    fn an_answer_is_read_back_from_its_frame() {
        let mut stream = frame(QUERY);
        stream[4] |= 0x80; // QR
        stream[5] = 0x03; // NXDOMAIN
        let msg = answer(&stream).expect("well framed");
        assert_eq!(msg.len(), QUERY.len());
        assert_eq!(msg[3] & 0x0f, 3);
    }

    #[test]
    fn a_bad_frame_is_an_error_never_a_panic() {
        assert_eq!(answer(b""), Err(Error::NoLength(0)));
        assert_eq!(answer(b"\0"), Err(Error::NoLength(1)));
        let f = frame(QUERY);
        let n = QUERY.len();
        // Cut short, or more after the message: the length must be exact.
        assert_eq!(
            answer(&f[..f.len() - 1]),
            Err(Error::Length {
                said: n,
                held: n - 1
            })
        );
        let mut long = f.clone();
        long.push(0);
        assert_eq!(
            answer(&long),
            Err(Error::Length {
                said: n,
                held: n + 1
            })
        );
        assert_eq!(answer(b"\0\x03abc"), Err(Error::Short(3)));
        let mut id = f;
        id[3] = 7;
        assert_eq!(answer(&id), Err(Error::Id(7)));
        // Any bytes at all: an answer or an error.
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let _ = answer(&bytes);
        }
    }
}
