//! One cached answer: the entry's layout (key, answer and the offsets of
//! its TTL fields in one allocation), what of an upstream answer may be
//! kept and for how long ([`cacheable`]: RFC 1035, 2181 and 2308), and how
//! a kept answer is written back for a client (TTLs counted down, our OPT
//! left out for a client without EDNS, the client's ID and question).

use super::{Rules, STALE_TTL, Tag};
use crate::policy::QueryFacts;
use crate::wire::{self, Header};

/// The allocator's bookkeeping per allocation, charged with each entry's
/// bytes (glibc: an 8-byte header, the chunk rounded up to 16 bytes).
const ALLOC_OVERHEAD: usize = 24;

/// One cached answer.
pub(super) struct Entry {
    pub(super) hash: u64,
    /// The caller's, as stored (or as [`Cache::retag`] replaced it).
    pub(super) tag: Tag,
    /// One allocation: the key, the answer (TTLs clamped), then the answer's
    /// TTL field offsets as native-endian `u16`s, then the caller's note
    /// ([`Cache::insert_noted`](super::Cache::insert_noted)), never served.
    pub(super) data: Box<[u8]>,
    /// Milliseconds since the cache's epoch.
    pub(super) stored: u64,
    pub(super) expires: u64,
    /// Until then an expired entry is served stale without forwarding.
    pub(super) recheck: u64,
    /// The TTL it was stored for, in seconds (after clamping).
    pub(super) ttl: u32,
    /// Hits since it was stored.
    pub(super) hits: u32,
    pub(super) key_len: u16,
    pub(super) answer_len: u16,
    /// Offset of the RDLENGTH of the OPT record that ends the answer, or 0.
    pub(super) opt_rdlen_at: u16,
    /// A background refresh was started for it.
    pub(super) prefetching: bool,
    /// The length of the note that ends `data` (most entries: 0).
    pub(super) note_len: u8,
}

impl Entry {
    pub(super) fn key(&self) -> &[u8] {
        self.data.get(..usize::from(self.key_len)).unwrap_or(&[])
    }

    pub(super) fn answer(&self) -> &[u8] {
        let start = usize::from(self.key_len);
        self.data
            .get(start..start + usize::from(self.answer_len))
            .unwrap_or(&[])
    }

    /// The caller's note (empty without one).
    pub(super) fn note(&self) -> &[u8] {
        let start = self.data.len().saturating_sub(usize::from(self.note_len));
        self.data.get(start..).unwrap_or(&[])
    }

    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        let start = usize::from(self.key_len) + usize::from(self.answer_len);
        let end = self.data.len().saturating_sub(usize::from(self.note_len));
        self.data
            .get(start..end)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_ne_bytes([c[0], c[1]])))
    }

    pub(super) fn charge(&self) -> usize {
        self.data.len() + ALLOC_OVERHEAD
    }

    /// Writes the stored answer into `out` with its TTLs counted down to
    /// `now`, or all set to [`STALE_TTL`] and an EDE 3 "Stale Answer"
    /// added to its OPT record (when it has one) if `stale` says why. For
    /// a client without EDNS (`edns` false) the OPT record, which ends the
    /// answer, is left out.
    pub(super) fn write(&self, now: u64, stale: Option<&str>, edns: bool, out: &mut Vec<u8>) {
        out.clear();
        let answer = self.answer();
        // The OPT's owner (the root), type, class and TTL come before its RDLENGTH.
        let opt_at = usize::from(self.opt_rdlen_at).saturating_sub(9);
        if edns || self.opt_rdlen_at == 0 {
            out.extend_from_slice(answer);
        } else {
            out.extend_from_slice(answer.get(..opt_at).unwrap_or(answer));
            let arcount = wire::u16_at(out, 10).unwrap_or(1);
            wire::put_u16(out, 10, arcount.saturating_sub(1));
        }
        let elapsed = u32::try_from(now.saturating_sub(self.stored) / 1000).unwrap_or(u32::MAX);
        for at in self.ttl_offsets() {
            if let Some(ttl) = wire::u32_at(out, at) {
                let ttl = match stale {
                    Some(_) => STALE_TTL,
                    None => ttl.saturating_sub(elapsed),
                };
                out[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
            }
        }
        if let Some(why) = stale
            && self.opt_rdlen_at != 0
            && edns
        {
            let at = usize::from(self.opt_rdlen_at);
            let text = &why.as_bytes()[..why.len().min(64)];
            if let Some(rdlen) = wire::u16_at(out, at) {
                // EDE 3, "Stale Answer" (RFC 8914 4.4), after the options
                // the OPT already carries: it ends the answer.
                wire::put_u16(out, at, rdlen + 6 + text.len() as u16);
                out.extend_from_slice(&wire::OPTION_EDE.to_be_bytes());
                out.extend_from_slice(&(2 + text.len() as u16).to_be_bytes());
                out.extend_from_slice(&3u16.to_be_bytes());
                out.extend_from_slice(text);
            }
        }
    }
}

/// Puts the client's ID, flags and question into a cached answer.
pub(super) fn answer_as_asked(query: &[u8], q: &QueryFacts, out: &mut [u8]) {
    wire::put_u16(out, 0, q.id);
    if let Some(f) = out.get_mut(2..4) {
        // RD and CD as this client asked (RFC 1035 4.1.1, RFC 4035
        // 3.1.6); AD only for a client that asked for it (RFC 6840 5.8).
        f[0] = (f[0] & !0x01) | ((q.flags >> 8) as u8 & 0x01);
        f[1] = (f[1] & !0x10) | (q.flags as u8 & 0x10);
        if q.flags & 0x0020 == 0 && !q.edns.is_some_and(|e| e.dnssec_ok) {
            f[1] &= !0x20;
        }
    }
    // The client's question, byte for byte (same length: same name).
    if let (Some(dst), Some(src)) = (
        out.get_mut(wire::HEADER_LEN..q.question_end),
        query.get(wire::HEADER_LEN..q.question_end),
    ) {
        dst.copy_from_slice(src);
    }
}

/// What may be cached of an answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Cacheable {
    /// Seconds to keep it.
    pub(super) ttl: u32,
    /// Each TTL field's offset and the TTL to store there.
    pub(super) ttl_offsets: Vec<(u16, u32)>,
    /// See [`Entry::opt_rdlen_at`].
    pub(super) opt_rdlen_at: u16,
}

/// How long an answer may be cached under `rules`, and its TTLs as stored;
/// `None` when it must not be cached.
pub(super) fn cacheable(resp: &[u8], rules: &Rules) -> Option<Cacheable> {
    let hdr = Header::parse(resp)?;
    if hdr.truncated() || hdr.qdcount != 1 || !matches!(hdr.rcode(), 0 | 3) {
        return None;
    }
    let mut at = wire::skip_name(resp, wire::HEADER_LEN)? + 4;
    let mut smallest = u32::MAX;
    let mut fields = Vec::new();
    let mut soa_ttl = None;
    let mut opt_rdlen_at = 0;
    let counts = [hdr.ancount, hdr.nscount, hdr.arcount];
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let (rr, next) = wire::read_rr(resp, at)?;
            at = next;
            if rr.rtype == wire::TYPE_OPT {
                // Ours, written last by `wire::replace_opt`: a stale answer
                // adds its EDE there.
                opt_rdlen_at = if next == resp.len() {
                    u16::try_from(rr.rdata_at - 2).ok()?
                } else {
                    0
                };
                continue;
            }
            // RFC 2181 8: a TTL with the top bit set is to be read as zero.
            if rr.ttl & 0x8000_0000 != 0 {
                return None;
            }
            fields.push((u16::try_from(rr.ttl_at).ok()?, rr.ttl));
            if section < 2 {
                smallest = smallest.min(rr.ttl);
            }
            if section == 1 && rr.rtype == wire::TYPE_SOA && rr.rdlen >= 4 {
                let minimum = wire::u32_at(resp, rr.rdata_at + rr.rdlen - 4)?;
                soa_ttl = Some(rr.ttl.min(minimum));
            }
        }
    }
    // A TTL of 0 says "use once, do not cache" (RFC 1035 3.2.1): min_ttl
    // does not override it.
    if smallest == 0 {
        return None;
    }
    let negative = hdr.rcode() == 3 || hdr.ancount == 0;
    let (ttl, floor) = if negative {
        // NXDOMAIN or NODATA: cacheable only with an SOA (RFC 2308 5), for
        // its negative TTL (and no longer than a CNAME leading to it).
        let ttl = soa_ttl?
            .min(smallest)
            .min(rules.negative_ttl_max)
            .min(rules.max_ttl);
        (ttl, 0)
    } else {
        (smallest.clamp(rules.min_ttl, rules.max_ttl), rules.min_ttl)
    };
    if ttl == 0 {
        return None;
    }
    let ttl_offsets = fields
        .into_iter()
        .map(|(at, t)| (at, t.max(floor).min(ttl)))
        .collect();
    Some(Cacheable {
        ttl,
        ttl_offsets,
        opt_rdlen_at,
    })
}
