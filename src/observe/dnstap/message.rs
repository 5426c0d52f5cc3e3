//! The dnstap message encoding, by hand: a record becomes CLIENT_QUERY
//! and/or CLIENT_RESPONSE `Message`s inside a `Dnstap` (dnstap.proto's
//! field numbers are in the module doc of [`super`]), each in a Frame
//! Streams data frame.

use std::net::IpAddr;

use super::record::Entry;
use crate::observe::Transport;

/// dnstap `Message.type` values embargo sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    ClientQuery = 5,
    ClientResponse = 6,
}

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn push_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    push_varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn push_uint(out: &mut Vec<u8>, field: u32, n: u64) {
    push_key(out, field, 0);
    push_varint(out, n);
}

fn push_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    push_key(out, field, 2);
    push_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn push_fixed32(out: &mut Vec<u8>, field: u32, n: u32) {
    push_key(out, field, 5);
    out.extend_from_slice(&n.to_le_bytes());
}

/// Appends the time fields `sec_field` and `sec_field + 1` for `us`.
fn push_time(out: &mut Vec<u8>, sec_field: u32, us: u64) {
    push_uint(out, sec_field, us / 1_000_000);
    push_fixed32(out, sec_field + 1, (us % 1_000_000) as u32 * 1000);
}

/// Appends one dnstap message about `e` as a Frame Streams data frame;
/// `scratch` holds the inner `Message` while its length is unknown.
pub fn push_frame(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    identity: &[u8],
    version: &[u8],
    kind: MessageType,
    e: &Entry<'_>,
) {
    let m = scratch;
    m.clear();
    push_uint(m, 1, kind as u64);
    let ip = e.client.ip().to_canonical();
    push_uint(m, 2, if ip.is_ipv4() { 1 } else { 2 });
    push_uint(
        m,
        3,
        // dnstap.proto's SocketProtocol.
        match e.transport {
            Transport::Udp => 1,
            Transport::Tcp => 2,
            Transport::Dot => 3,
            Transport::Doh => 4,
            Transport::Doq => 7,
        },
    );
    let push_ip = |m: &mut Vec<u8>, field, ip: IpAddr| match ip {
        IpAddr::V4(a) => push_bytes(m, field, &a.octets()),
        IpAddr::V6(a) => push_bytes(m, field, &a.octets()),
    };
    push_ip(m, 4, ip);
    // The address the client sent to: for CLIENT_QUERY and
    // CLIENT_RESPONSE, dnstap.proto's `response_address` is the server's.
    if let Some(server) = e.server {
        push_ip(m, 5, server.ip().to_canonical());
    }
    push_uint(m, 6, u64::from(e.client.port()));
    if let Some(server) = e.server {
        push_uint(m, 7, u64::from(server.port()));
    }
    if e.query_us != 0 {
        push_time(m, 8, e.query_us);
    }
    match kind {
        MessageType::ClientQuery => push_bytes(m, 10, e.query),
        MessageType::ClientResponse => {
            if e.response_us != 0 {
                push_time(m, 12, e.response_us);
            }
            push_bytes(m, 14, e.response);
        }
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if !identity.is_empty() {
        push_bytes(out, 1, identity);
    }
    if !version.is_empty() {
        push_bytes(out, 2, version);
    }
    push_bytes(out, 14, m);
    // Dnstap.type = MESSAGE
    push_uint(out, 15, 1);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends the frames `e` becomes (CLIENT_QUERY, CLIENT_RESPONSE or both);
/// returns how many.
pub(super) fn push_frames(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    identity: &[u8],
    version: &[u8],
    e: &Entry<'_>,
) -> u64 {
    if !e.query.is_empty() {
        push_frame(out, scratch, identity, version, MessageType::ClientQuery, e);
    }
    if !e.response.is_empty() {
        push_frame(
            out,
            scratch,
            identity,
            version,
            MessageType::ClientResponse,
            e,
        );
    }
    e.messages()
}
