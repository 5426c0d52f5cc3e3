//! A NOTIFY (RFC 1996), the one opcode besides QUERY that the handler
//! takes: the primary of one of our zone-transfer lists says its zone
//! changed, and the list is fetched again. Heard from that primary even
//! when `[access]` keeps it from asking anything else.

use std::net::SocketAddr;

use crate::query;
use crate::wire::{self, Rcode};

use super::{Handler, Outcome};

impl Handler {
    /// A NOTIFY (RFC 1996): NOERROR and a refresh when it comes from the
    /// primary of one of our zone-transfer lists, REFUSED otherwise.
    pub(super) fn notify(&self, pkt: &[u8], client: SocketAddr, out: &mut Vec<u8>) -> Outcome {
        let Some(hdr) = wire::Header::parse(pkt) else {
            return Outcome::Drop;
        };
        // The question must be plain labels: it is echoed byte for byte, and
        // a compression pointer would point at nothing in our answer.
        let question = (hdr.qdcount == 1)
            .then(|| query::read_name(pkt, wire::HEADER_LEN))
            .flatten()
            .filter(|(name, end)| {
                *end == wire::HEADER_LEN + name.as_bytes().len() + 1 && *end + 4 <= pkt.len()
            });
        let (rcode, question_end) = match &question {
            None => (Rcode::FormErr, None),
            Some((zone, end)) => {
                let accepted = self.notify.notified(&zone.to_string(), client.ip());
                if accepted {
                    tracing::info!(zone = %zone, %client, "NOTIFY from the primary");
                } else {
                    // Anyone can send these (spoofed too): keep them out of the default log.
                    tracing::debug!(zone = %zone, %client, "NOTIFY refused");
                }
                (
                    if accepted {
                        Rcode::NoError
                    } else {
                        Rcode::Refused
                    },
                    Some(end + 4),
                )
            }
        };
        out.clear();
        // QR, the NOTIFY opcode and RD echoed; AA when we accept it for our copy of the zone.
        let aa = if rcode == Rcode::NoError { 0x0400 } else { 0 };
        let flags = 0x8000 | (hdr.flags & (0x7800 | 0x0100)) | aa | rcode as u16;
        out.extend_from_slice(&hdr.id.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&[0, u8::from(question_end.is_some()), 0, 0, 0, 0, 0, 0]);
        if let Some(end) = question_end {
            out.extend_from_slice(pkt.get(wire::HEADER_LEN..end).unwrap_or(&[]));
        }
        Outcome::Reply
    }
}

/// Whether the message is a NOTIFY request (QR clear, OPCODE 4).
pub(super) fn is_notify(pkt: &[u8]) -> bool {
    pkt.len() >= 4 && pkt[2] & 0xf8 == 4 << 3
}
