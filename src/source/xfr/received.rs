//! A zone transfer's reply as it arrives: each record kept as the line it
//! will be in the copy, counted against `max_size` as it comes, and whether
//! the reply is whole known from counts, never by going back over it.
//!
//! ```text
//!  message ──► records ──► Received::push ── text > max_size ──► TooLarge (the transfer is cut off)
//!                               │ closing SOA? (AXFR: the 2nd SOA; IXFR: see Reply)
//!                               ▼
//!                          complete() after each message ──► into_zone / the IXFR's differences
//! ```

use std::fmt::Write as _;

use hickory_proto::rr::{RData, Record};

use super::Error;

/// The serial of an SOA record; `None` for any other record.
pub(super) fn soa_serial_of(r: &Record) -> Option<u32> {
    match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

/// The reply a query gets, which says which record closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// A single message (the SOA query).
    Message,
    /// AXFR (RFC 5936 2.2): the SOA, the zone, the SOA again.
    Axfr,
    /// IXFR (RFC 1995 4): a single SOA (up to date), an AXFR-style zone, or
    /// runs of differences closed by the new SOA a third time.
    Ixfr,
}

/// A reply's records as they arrive, each kept as the zone-file line it
/// will be in the copy, all in one string: what is held is what would be
/// written, and it is counted against the limit record by record, so a
/// primary that never closes its zone costs at most `max_size` (plus 8
/// bytes of offset a record, and one message) before it is cut off.
/// Whether the reply is whole is counted as records arrive too, never by
/// going back over those received (which made a long transfer quadratic).
#[derive(Debug)]
pub(super) struct Received {
    reply: Reply,
    limit: u64,
    /// `$ORIGIN zone.`, then every record's line, each ending in `\n`.
    text: String,
    /// Where each record's line starts in `text`.
    starts: Vec<usize>,
    /// The records that are SOAs: their index and serial, in order.
    pub(super) soas: Vec<(usize, u32)>,
    /// SOAs with the first record's serial (an IXFR's new serial).
    with_first_serial: usize,
    /// The closing SOA arrived (it is not kept: the copy has one SOA).
    closed: bool,
}

impl Received {
    pub(super) fn new(reply: Reply, zone: &str, limit: u64) -> Self {
        Self {
            reply,
            limit,
            text: format!("$ORIGIN {zone}.\n"),
            starts: Vec::new(),
            soas: Vec::new(),
            with_first_serial: 0,
            closed: false,
        }
    }

    /// Records kept.
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Takes the next record of the reply; an error ends the transfer.
    pub(super) fn push(&mut self, r: &Record) -> Result<(), Error> {
        if self.closed {
            // After the closing SOA, in the same message: not the zone's.
            return Ok(());
        }
        let index = self.len();
        let serial = soa_serial_of(r);
        if self.reply != Reply::Message && index == 0 && serial.is_none() {
            return Err("the transfer did not start with an SOA".into());
        }
        let first = self.first_serial();
        // Record 1 is an SOA: an IXFR of differences, not AXFR-style.
        let differences = self.soas.get(1).is_some_and(|&(i, _)| i == 1);
        self.closed = match (self.reply, serial) {
            (Reply::Message, _) | (_, None) => false,
            _ if index == 0 => false,
            (Reply::Axfr, Some(_)) => true,
            (Reply::Ixfr, Some(_)) if index == 1 => false,
            (Reply::Ixfr, Some(s)) if differences => {
                Some(s) == first && self.with_first_serial >= 2
            }
            (Reply::Ixfr, Some(_)) => true,
        };
        if self.closed {
            return Ok(());
        }
        self.starts.push(self.text.len());
        let _ = writeln!(self.text, "{r}");
        if self.text.len() as u64 > self.limit {
            return Err(Error::TooLarge(self.limit));
        }
        if let Some(s) = serial {
            self.soas.push((index, s));
            if index == 0 || Some(s) == first {
                self.with_first_serial += 1;
            }
        }
        Ok(())
    }

    /// Whether the records so far make a whole reply (asked after each
    /// message: an IXFR reply of one SOA is whole only once its message is).
    pub(super) fn complete(&self) -> bool {
        match self.reply {
            Reply::Message => true,
            Reply::Axfr => self.closed,
            // One SOA: up to date. Nothing: malformed, refused by the caller.
            Reply::Ixfr => self.closed || self.len() <= 1,
        }
    }

    /// The serial of the first record, when it is an SOA.
    pub(super) fn first_serial(&self) -> Option<u32> {
        self.soas
            .first()
            .filter(|&&(i, _)| i == 0)
            .map(|&(_, serial)| serial)
    }

    /// The serial of record `i`, when it is an SOA.
    pub(super) fn serial(&self, i: usize) -> Option<u32> {
        self.soas
            .binary_search_by_key(&i, |&(j, _)| j)
            .ok()
            .and_then(|k| self.soas.get(k))
            .map(|&(_, serial)| serial)
    }

    /// Record `i`'s zone-file line.
    pub(super) fn line(&self, i: usize) -> &str {
        let start = self.starts.get(i).copied().unwrap_or(self.text.len());
        let end = self.starts.get(i + 1).copied().unwrap_or(self.text.len());
        self.text
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches('\n')
    }

    /// An AXFR-style reply as the zone it makes: its serial, its text
    /// (the closing SOA left out) and how many records it holds.
    pub(super) fn into_zone(self) -> Result<(u32, String, usize), Error> {
        let serial = self
            .first_serial()
            .ok_or("the transfer did not start with an SOA")?;
        let n = self.len();
        Ok((serial, self.text, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &str) -> Record {
        crate::source::xfr::parse_record("rpz.test", line).expect("record")
    }

    fn soa(n: u32) -> Record {
        rec(&format!(
            "@ 60 IN SOA ns.rpz.test. h.rpz.test. {n} 3600 600 86400 60"
        ))
    }

    /// Whether `records`, arriving in one message, make a whole `reply`.
    fn complete(reply: Reply, records: &[Record]) -> bool {
        let mut received = Received::new(reply, "rpz.test", u64::MAX);
        for r in records {
            received.push(r).expect("record");
        }
        received.complete()
    }

    #[test]
    fn knows_when_a_transfer_is_complete() {
        let a = rec("a 60 IN CNAME .");
        assert!(complete(Reply::Ixfr, &[soa(5)]), "up to date: one SOA");
        assert!(!complete(Reply::Ixfr, &[soa(5), a.clone()]));
        assert!(
            complete(Reply::Ixfr, &[soa(5), a.clone(), soa(5)]),
            "AXFR-style"
        );
        let diff = [soa(5), soa(4), a.clone(), soa(5), a.clone()];
        assert!(!complete(Reply::Ixfr, &diff));
        assert!(
            complete(Reply::Ixfr, &[&diff[..], &[soa(5)]].concat()),
            "differences closed by the new SOA"
        );
        assert!(complete(Reply::Axfr, &[soa(1), a.clone(), soa(1)]));
        assert!(!complete(Reply::Axfr, &[soa(1), a.clone(), a]));
    }

    /// Issue 16 (6): whether a transfer is whole is counted as records
    /// arrive. Each record is looked at once when it arrives, whatever
    /// came before it; the closing SOA is known as such on arrival, and
    /// what follows it in its message is not part of the zone.
    #[test]
    fn r16_completion_is_counted_as_records_arrive() {
        let a = rec("a 60 IN CNAME .");
        let mut axfr = Received::new(Reply::Axfr, "rpz.test", u64::MAX);
        axfr.push(&soa(3)).expect("SOA");
        for _ in 0..10_000 {
            axfr.push(&a).expect("record");
            assert!(!axfr.complete());
        }
        assert_eq!((axfr.soas.len(), axfr.with_first_serial), (1, 1));
        axfr.push(&soa(3)).expect("closing SOA");
        assert!(axfr.complete() && axfr.closed);
        axfr.push(&rec("late 60 IN CNAME .")).expect("ignored");
        let (serial, text, n) = axfr.into_zone().expect("zone");
        assert_eq!((serial, n), (3, 10_001), "the closing SOA is not kept");
        assert!(!text.contains("late.rpz.test."));

        // IXFR differences: the new serial's third SOA closes the reply.
        let mut ixfr = Received::new(Reply::Ixfr, "rpz.test", u64::MAX);
        for r in [soa(6), soa(5), a.clone(), soa(6), a.clone()] {
            ixfr.push(&r).expect("record");
        }
        assert_eq!(ixfr.with_first_serial, 2);
        assert!(!ixfr.complete());
        ixfr.push(&soa(6)).expect("closing SOA");
        assert!(ixfr.complete());
        assert_eq!(ixfr.len(), 5);
        assert_eq!(
            (ixfr.serial(1), ixfr.serial(2), ixfr.serial(3)),
            (Some(5), None, Some(6))
        );
        assert_eq!(ixfr.line(2), "a.rpz.test. 60 IN CNAME .");

        let mut headless = Received::new(Reply::Axfr, "rpz.test", u64::MAX);
        assert_eq!(
            headless.push(&a),
            Err(Error::Failed(
                "the transfer did not start with an SOA".into()
            ))
        );
    }
}
