//! The records in the rings: one query and/or answer as the serving side
//! hands it to the writer thread, a 60-byte header (lengths, family,
//! transport, port, address, the two times, the server's address and
//! port) and the two messages as the client sent and got them. Records
//! are pushed whole, so a reader never sees half of one.

use std::net::{IpAddr, SocketAddr};

use crate::observe::Transport;

/// Bytes before a record's messages: lengths, family, transport, port,
/// address, the two times, then the server's family, port and address.
pub(super) const HEADER: usize = 60;

/// One query and/or answer as the rings carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub client: SocketAddr,
    /// The address and port the client sent to (the server's), if known:
    /// dnstap's `response_address` and `response_port`.
    pub server: Option<SocketAddr>,
    pub transport: Transport,
    /// When the query arrived, µs since the Unix epoch.
    pub query_us: u64,
    /// When the answer was sent (0 for a query whose answer comes later).
    pub response_us: u64,
    /// The query as the client sent it (empty: no CLIENT_QUERY message).
    pub query: &'a [u8],
    /// The answer as the client got it (empty: no CLIENT_RESPONSE message).
    pub response: &'a [u8],
}

impl Entry<'_> {
    /// dnstap messages this record becomes.
    pub(super) fn messages(&self) -> u64 {
        u64::from(!self.query.is_empty()) + u64::from(!self.response.is_empty())
    }
}

/// The longest message a record keeps (a TCP message's limit).
pub(super) const MAX_MESSAGE: usize = u16::MAX as usize;

/// Writes `e`'s header into `h`.
pub(super) fn header(e: &Entry<'_>) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    let q = e.query.len().min(MAX_MESSAGE) as u16;
    let r = e.response.len().min(MAX_MESSAGE) as u16;
    h[0..2].copy_from_slice(&q.to_le_bytes());
    h[2..4].copy_from_slice(&r.to_le_bytes());
    match e.client.ip().to_canonical() {
        IpAddr::V4(a) => {
            h[4] = 4;
            h[8..12].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            h[4] = 6;
            h[8..24].copy_from_slice(&a.octets());
        }
    }
    h[5] = e.transport as u8;
    h[6..8].copy_from_slice(&e.client.port().to_le_bytes());
    h[24..32].copy_from_slice(&e.query_us.to_le_bytes());
    h[32..40].copy_from_slice(&e.response_us.to_le_bytes());
    if let Some(server) = e.server {
        match server.ip().to_canonical() {
            IpAddr::V4(a) => {
                h[40] = 4;
                h[44..48].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                h[40] = 6;
                h[44..60].copy_from_slice(&a.octets());
            }
        }
        h[42..44].copy_from_slice(&server.port().to_le_bytes());
    }
    h
}

/// Appends `e` as a record.
pub fn push_record(out: &mut Vec<u8>, e: &Entry<'_>) {
    out.extend_from_slice(&header(e));
    out.extend_from_slice(&e.query[..e.query.len().min(MAX_MESSAGE)]);
    out.extend_from_slice(&e.response[..e.response.len().min(MAX_MESSAGE)]);
}

/// The length of the record at the start of `buf`, if a whole one is there.
fn record_len(buf: &[u8]) -> Option<usize> {
    let q = u16::from_le_bytes(buf.get(0..2)?.try_into().ok()?);
    let r = u16::from_le_bytes(buf.get(2..4)?.try_into().ok()?);
    let len = HEADER + usize::from(q) + usize::from(r);
    (buf.len() >= len).then_some(len)
}

/// Reads the record at the start of `buf`; returns it and the rest.
pub fn read_record(buf: &[u8]) -> Option<(Entry<'_>, &[u8])> {
    let len = record_len(buf)?;
    let (rec, rest) = buf.split_at(len);
    let h = &rec[..HEADER];
    let q = usize::from(u16::from_le_bytes([h[0], h[1]]));
    let ip = match h[4] {
        4 => IpAddr::from(<[u8; 4]>::try_from(&h[8..12]).ok()?),
        _ => IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?),
    };
    let port = u16::from_le_bytes([h[6], h[7]]);
    let server = match h[40] {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(&h[44..48]).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(&h[44..60]).ok()?)),
        _ => None,
    }
    .map(|ip| SocketAddr::new(ip, u16::from_le_bytes([h[42], h[43]])));
    let time = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or_default());
    Some((
        Entry {
            client: SocketAddr::new(ip, port),
            server,
            transport: Transport::from_u8(h[5]),
            query_us: time(24),
            response_us: time(32),
            query: &rec[HEADER..HEADER + q],
            response: &rec[HEADER + q..],
        },
        rest,
    ))
}

/// Sets the answer time of every record in `buf` that carries an answer;
/// returns how many bytes of whole records fit in `room`, and the dnstap
/// messages of the records that do not.
pub(super) fn stamp_and_fit(buf: &mut [u8], response_us: u64, room: usize) -> (usize, u64) {
    let (mut at, mut fit, mut dropped) = (0, 0, 0);
    while let Some(len) = buf.get(at..).and_then(record_len) {
        let rec = &mut buf[at..at + len];
        let (q, r) = (
            u16::from_le_bytes([rec[0], rec[1]]),
            u16::from_le_bytes([rec[2], rec[3]]),
        );
        if r != 0 {
            rec[32..40].copy_from_slice(&response_us.to_le_bytes());
        }
        if fit == at && at + len <= room {
            fit = at + len;
        } else {
            dropped += u64::from(q != 0) + u64::from(r != 0);
        }
        at += len;
    }
    (fit, dropped)
}

/// Pushes `parts` into `ring` as one chunk (a reader sees all or nothing);
/// false when they do not fit.
pub(super) fn push_whole(ring: &mut rtrb::Producer<u8>, parts: &[&[u8]]) -> bool {
    let total = parts.iter().map(|p| p.len()).sum();
    if total == 0 {
        return true;
    }
    let Ok(mut chunk) = ring.write_chunk(total) else {
        return false;
    };
    let (a, b) = chunk.as_mut_slices();
    let mut dst = a.iter_mut().chain(b.iter_mut());
    for part in parts {
        // The part first: `zip` takes from its left side first, and a
        // destination slot taken after the part ran out would be skipped.
        for (s, d) in part.iter().zip(dst.by_ref()) {
            *d = *s;
        }
    }
    chunk.commit_all();
    true
}
