//! RPZ lists received by zone transfer, the way enterprises take threat
//! feeds: embargo is a secondary of the feed's primary.
//!
//! ```text
//!  NOTIFY from the primary ─┐
//!  refresh timer ───────────┴─► SOA query (UDP) ── serial unchanged ──► done
//!                                   │ newer, or no copy yet
//!                                   ▼
//!                               AXFR (TCP) ──► zone text, atomically, to STATE/lists/NAME.list
//!                                   │            + serial in NAME.meta.json
//!                                   ▼
//!                               reload (the RPZ parser reads the copy)
//! ```
//!
//! The copy is plain zone-file text, so a restart without the primary
//! loads the last good transfer like any list. Serials compare with RFC 1982
//! arithmetic. A transfer is complete only when the closing SOA arrives; a
//! cut or malformed transfer keeps the last good copy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigVerifier, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::Outcome;
use super::store;
use crate::config::{ListSpec, Tsig, XfrSource};

/// The signer for a TSIG key (RFC 8945): signs our queries and gives the
/// verifier that every message of the reply must satisfy.
fn signer(key: &Tsig) -> Result<TSigner, String> {
    let algorithm = match key.algorithm.as_str() {
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        _ => TsigAlgorithm::HmacSha256,
    };
    let name =
        Name::from_str(&format!("{}.", key.name)).map_err(|e| format!("TSIG key name: {e}"))?;
    TSigner::new(key.secret().to_vec(), algorithm, name, 300).map_err(|e| format!("TSIG: {e}"))
}

/// Zones whose primaries may NOTIFY us, and whom to wake when they do.
#[derive(Debug, Default)]
pub struct NotifyTargets {
    zones: Mutex<HashMap<String, (IpAddr, Arc<Notify>)>>,
}

impl NotifyTargets {
    /// Registers a zone's primary; its NOTIFY wakes `wake`.
    pub fn register(&self, zone: &str, primary: IpAddr, wake: Arc<Notify>) {
        if let Ok(mut z) = self.zones.lock() {
            z.insert(zone.to_string(), (primary, wake));
        }
    }

    /// Forgets every zone (before the helpers restart on a config change).
    pub fn clear(&self) {
        if let Ok(mut z) = self.zones.lock() {
            z.clear();
        }
    }

    /// Whether `from` is the primary of one of our zones: its NOTIFYs are
    /// heard even when `[access]` does not let it ask queries.
    pub fn is_primary(&self, from: IpAddr) -> bool {
        self.zones.lock().is_ok_and(|z| {
            z.values()
                .any(|(primary, _)| *primary == from.to_canonical())
        })
    }

    /// A NOTIFY for `zone` from `from`: true (and the refresher woken) when
    /// it is one of our zones and comes from its primary (RFC 1996 3.10).
    pub fn notified(&self, zone: &str, from: IpAddr) -> bool {
        let Ok(z) = self.zones.lock() else {
            return false;
        };
        match z.get(zone) {
            Some((primary, wake)) if *primary == from => {
                wake.notify_one();
                true
            }
            _ => false,
        }
    }
}

/// RFC 1982: is `a` newer than `b`?
pub fn serial_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// A query, TSIG-signed when a key is given (then with the verifier for
/// the reply: every message of a transfer must carry a valid signature).
fn message(
    zone: &str,
    rtype: RecordType,
    authority: Option<Record>,
    tsig: Option<&Tsig>,
) -> Result<(Vec<u8>, Option<TSigVerifier>), String> {
    let name = Name::from_str(&format!("{zone}.")).map_err(|e| format!("zone name: {e}"))?;
    let mut m = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name, rtype));
    if let Some(soa) = authority {
        m.add_authority(soa);
    }
    let mut verifier = None;
    if let Some(key) = tsig {
        let signer = signer(key)?;
        let (record, v) = signer
            .sign_message(&m, store::now())
            .map_err(|e| format!("TSIG signing: {e}"))?;
        m.set_signature(record);
        verifier = v;
    }
    let bytes = m.to_vec().map_err(|e| format!("encode: {e}"))?;
    Ok((bytes, verifier))
}

/// The primary's current SOA serial (over TCP, which a primary always serves).
pub async fn soa_serial(src: &XfrSource, timeout: Duration) -> Result<u32, String> {
    let (q, verifier) = message(&src.zone, RecordType::SOA, None, src.tsig.as_ref())?;
    let answers = tokio::time::timeout(timeout, exchange(src.primary, &q, verifier, |_| true))
        .await
        .map_err(|_| format!("{}: SOA query timed out", src.primary))??;
    answers
        .iter()
        .find_map(soa_serial_of)
        .ok_or_else(|| "no SOA in the answer".to_string())
}

/// Sends `query` over TCP and reads messages until `complete` says the
/// records received so far (all answers, in order) make a whole reply.
async fn exchange(
    server: SocketAddr,
    query: &[u8],
    mut verifier: Option<TSigVerifier>,
    complete: impl Fn(&[Record]) -> bool,
) -> Result<Vec<Record>, String> {
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut records = Vec::new();
    for _ in 0..MAX_MESSAGES {
        let len = s
            .read_u16()
            .await
            .map_err(|e| format!("{server}: transfer cut: {e}"))?;
        let mut buf = vec![0u8; usize::from(len)];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| format!("{server}: transfer cut: {e}"))?;
        read_message(&buf, id, verifier.as_mut(), &mut records)
            .map_err(|e| format!("{server}: {e}"))?;
        if complete(&records) {
            return Ok(records);
        }
    }
    Err(format!("{server}: transfer never ended"))
}

/// Messages of one reply read at most: a primary that never closes its
/// transfer must not keep us reading forever.
const MAX_MESSAGES: usize = 1_000_000;

/// One message of a reply: checks its TSIG (when the query was signed), its
/// ID and its RCODE, and appends its answers to `records`.
fn read_message(
    buf: &[u8],
    id: u16,
    verifier: Option<&mut TSigVerifier>,
    records: &mut Vec<Record>,
) -> Result<(), String> {
    if let Some(v) = verifier {
        v.verify(buf)
            .map_err(|e| format!("TSIG verification failed: {e}"))?;
    }
    let m = Message::from_vec(buf).map_err(|e| format!("malformed message: {e}"))?;
    if m.metadata.id != id {
        return Err("answer with a wrong ID".into());
    }
    if m.metadata.response_code != ResponseCode::NoError {
        return Err(m.metadata.response_code.to_string());
    }
    records.extend(m.answers);
    Ok(())
}

fn soa_serial_of(r: &Record) -> Option<u32> {
    match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}

/// An AXFR-style reply is complete at the second SOA.
fn axfr_complete(records: &[Record]) -> bool {
    records
        .iter()
        .filter(|r| soa_serial_of(r).is_some())
        .count()
        >= 2
}

/// An IXFR reply (RFC 1995 4) is complete when it is a single SOA (up to
/// date), an AXFR-style zone closed by its SOA, or a run of differences
/// closed by the new SOA a third time.
fn ixfr_complete(records: &[Record]) -> bool {
    let Some(new) = records.first().and_then(soa_serial_of) else {
        return true; // not an SOA: malformed, let the caller refuse it
    };
    match records.get(1) {
        None => true,
        Some(r) if soa_serial_of(r).is_some() => {
            records.len() > 2
                && records
                    .iter()
                    .filter(|r| soa_serial_of(r) == Some(new))
                    .count()
                    >= 3
        }
        Some(_) => axfr_complete(records),
    }
}

/// Zone-file text of a transfer's records (the closing SOA left out).
fn zone_text(zone: &str, records: &[Record]) -> (u32, String, usize) {
    let mut text = format!("$ORIGIN {zone}.\n");
    let mut serial = None;
    let mut count = 0usize;
    for r in records {
        if let Some(s) = soa_serial_of(r) {
            if serial.is_some() {
                continue;
            }
            serial = Some(s);
        }
        text.push_str(&r.to_string());
        text.push('\n');
        count += 1;
    }
    (serial.unwrap_or(0), text, count)
}

/// Transfers the whole zone: its serial and its records as zone-file text.
pub async fn axfr(src: &XfrSource, timeout: Duration) -> Result<(u32, String, usize), String> {
    let (q, verifier) = message(&src.zone, RecordType::AXFR, None, src.tsig.as_ref())?;
    let records = tokio::time::timeout(timeout, exchange(src.primary, &q, verifier, axfr_complete))
        .await
        .map_err(|_| format!("{}: AXFR timed out", src.primary))??;
    axfr_zone(&src.zone, &records)
}

/// The zone an AXFR reply's records make.
fn axfr_zone(zone: &str, records: &[Record]) -> Result<(u32, String, usize), String> {
    if records.first().and_then(soa_serial_of).is_none() {
        return Err("the transfer did not start with an SOA".into());
    }
    Ok(zone_text(zone, records))
}

/// The identity of a record in a zone-file line: everything but its TTL
/// (RFC 2181 5.2: TTL is not part of what makes two records the same).
fn record_key(line: &str) -> String {
    let mut tokens = line.split_whitespace();
    let owner = tokens.next().unwrap_or("").to_ascii_lowercase();
    let _ttl = tokens.next();
    let rest: Vec<&str> = tokens.collect();
    format!("{owner} {}", rest.join(" "))
}

/// What an IXFR brought.
#[doc(hidden)]
#[derive(Debug, PartialEq, Eq)]
pub enum Ixfr {
    /// The primary has nothing newer.
    UpToDate,
    /// A full zone (the primary chose AXFR-style): its text.
    Full(u32, String, usize),
    /// Differences applied to our copy: the new text, and counts.
    Applied(u32, String, usize, usize, usize),
}

/// Asks for the differences since `have` (our copy's serial, whose SOA is
/// the first line of the copy) and applies them to `copy_text`.
async fn ixfr(
    src: &XfrSource,
    have: u32,
    copy_text: &str,
    timeout: Duration,
) -> Result<Ixfr, String> {
    // Our SOA, from the copy, goes in the authority section (RFC 1995 3).
    let ours = copy_soa(&src.zone, copy_text)?;
    let (q, verifier) = message(&src.zone, RecordType::IXFR, Some(ours), src.tsig.as_ref())?;
    let records = tokio::time::timeout(timeout, exchange(src.primary, &q, verifier, ixfr_complete))
        .await
        .map_err(|_| format!("{}: IXFR timed out", src.primary))??;
    apply_ixfr(&src.zone, have, copy_text, &records)
}

/// Applies an IXFR reply's records to our copy (`copy_text`, at serial `have`).
fn apply_ixfr(zone: &str, have: u32, copy_text: &str, records: &[Record]) -> Result<Ixfr, String> {
    let new = records
        .first()
        .and_then(soa_serial_of)
        .ok_or("IXFR answer without an SOA")?;
    if records.len() == 1 {
        return Ok(Ixfr::UpToDate);
    }
    if records.get(1).and_then(soa_serial_of).is_none() {
        let (serial, text, n) = zone_text(zone, records);
        return Ok(Ixfr::Full(serial, text, n));
    }
    // Differences: [SOA old, deleted..., SOA next, added...]... then SOA new.
    let mut lines: Vec<String> = copy_text.lines().skip(1).map(str::to_string).collect();
    let mut expect = have;
    let (mut deleted, mut added) = (0usize, 0usize);
    let body = &records[1..records.len() - 1];
    let mut i = 0;
    while i < body.len() {
        let from =
            soa_serial_of(&body[i]).ok_or("IXFR: a difference does not start with an SOA")?;
        if from != expect {
            return Err(format!(
                "IXFR: difference from serial {from}, our copy is at {expect}"
            ));
        }
        i += 1;
        let mut gone = std::collections::HashSet::new();
        while i < body.len() && soa_serial_of(&body[i]).is_none() {
            gone.insert(record_key(&body[i].to_string()));
            i += 1;
        }
        let to_soa = body.get(i).ok_or("IXFR: a difference has no new SOA")?;
        let to = soa_serial_of(to_soa).ok_or("IXFR: a difference has no new SOA")?;
        i += 1;
        let before = lines.len();
        lines.retain(|l| !gone.contains(&record_key(l)) && !is_soa_line(l));
        deleted += (before - lines.len()).saturating_sub(1);
        lines.insert(0, to_soa.to_string());
        while i < body.len() && soa_serial_of(&body[i]).is_none() {
            lines.push(body[i].to_string());
            added += 1;
            i += 1;
        }
        expect = to;
    }
    if expect != new {
        return Err(format!(
            "IXFR: differences end at serial {expect}, not {new}"
        ));
    }
    let n = lines.len();
    let text = format!("$ORIGIN {zone}.\n{}\n", lines.join("\n"));
    Ok(Ixfr::Applied(new, text, n, deleted, added))
}

/// The SOA record of our copy (its first SOA line), for the authority
/// section of an IXFR query.
///
/// hickory writes some names it cannot read back (a label with a control
/// byte becomes `\010`, which its zone parser refuses: found by fuzzing), so
/// a line that does not parse is rebuilt around its serial, the one field
/// of that SOA a primary reads (RFC 1995 3), rather than costing every
/// later refresh a full AXFR.
#[doc(hidden)]
pub fn copy_soa(zone: &str, copy_text: &str) -> Result<Record, String> {
    let soa_line = copy_text
        .lines()
        .find(|l| is_soa_line(l))
        .ok_or("the copy has no SOA")?;
    parse_record(zone, soa_line).or_else(|e| {
        // Our copy's lines are hickory's: owner TTL class SOA mname rname serial ...
        let serial = soa_line
            .split_whitespace()
            .nth(6)
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or(e)?;
        let apex = Name::from_str(&format!("{zone}.")).map_err(|e| format!("zone name: {e}"))?;
        let soa = SOA::new(apex.clone(), apex.clone(), serial, 0, 0, 0, 0);
        Ok(Record::from_rdata(apex, 0, RData::SOA(soa)))
    })
}

/// The pure half of a transfer, which the fuzzer drives (`fuzz/`, replayed
/// by `tests/corpus.rs`): reads a reply's `messages` (each as it arrives
/// after its TCP length prefix) to a query with ID `id`, as `exchange` does,
/// and makes of them what `axfr` (`have` is `None`) or `ixfr` (our copy,
/// `copy_text`, is at serial `have`) would.
#[doc(hidden)]
pub fn read_transfer<'a>(
    zone: &str,
    have: Option<u32>,
    copy_text: &str,
    id: u16,
    messages: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Ixfr, String> {
    if have.is_some() {
        copy_soa(zone, copy_text)?;
    }
    let complete: fn(&[Record]) -> bool = if have.is_some() {
        ixfr_complete
    } else {
        axfr_complete
    };
    let mut records = Vec::new();
    for m in messages.into_iter().take(MAX_MESSAGES) {
        read_message(m, id, None, &mut records)?;
        if complete(&records) {
            return match have {
                Some(have) => apply_ixfr(zone, have, copy_text, &records),
                None => {
                    axfr_zone(zone, &records).map(|(serial, text, n)| Ixfr::Full(serial, text, n))
                }
            };
        }
    }
    Err("transfer cut".into())
}

fn is_soa_line(l: &str) -> bool {
    l.split_whitespace()
        .nth(3)
        .is_some_and(|t| t.eq_ignore_ascii_case("SOA"))
}

/// One record from a zone-file line of our copy.
fn parse_record(zone: &str, line: &str) -> Result<Record, String> {
    let origin = Name::from_str(&format!("{zone}.")).map_err(|e| e.to_string())?;
    let (_, sets) =
        hickory_proto::serialize::txt::Parser::new(line.to_string(), None, Some(origin))
            .parse()
            .map_err(|e| format!("our copy's SOA does not parse: {e}"))?;
    sets.into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .next()
        .ok_or_else(|| "our copy's SOA does not parse".to_string())
}

/// IXFR from our copy's serial when we have one, AXFR when not or when the
/// IXFR fails (a primary without IXFR answers NOTIMP or a full zone).
/// `None` when the primary has nothing newer.
async fn transfer(
    src: &XfrSource,
    copy: &std::path::Path,
    have: Option<u32>,
    timeout: Duration,
) -> Result<Option<(u32, String, usize, String)>, String> {
    if let (Some(have), Ok(text)) = (have, std::fs::read_to_string(copy)) {
        match ixfr(src, have, &text, timeout).await {
            Ok(Ixfr::UpToDate) => return Ok(None),
            Ok(Ixfr::Full(serial, text, n)) => {
                return Ok(Some((
                    serial,
                    text,
                    n,
                    "IXFR answered with the full zone".into(),
                )));
            }
            Ok(Ixfr::Applied(serial, text, n, del, add)) => {
                return Ok(Some((
                    serial,
                    text,
                    n,
                    format!("IXFR: {del} records removed, {add} added"),
                )));
            }
            Err(e) => {
                tracing::info!(zone = %src.zone, "IXFR not usable ({e}); falling back to AXFR")
            }
        }
    }
    let (serial, text, n) = axfr(src, timeout).await?;
    Ok(Some((serial, text, n, "AXFR".into())))
}

/// One refresh of a zone-transfer list (see the module doc).
pub async fn refresh(spec: &ListSpec, src: &XfrSource) -> Outcome {
    let copy = &spec.path;
    let mut meta = store::meta_for(copy, &src.to_string());
    let outcome = match soa_serial(src, spec.fetch.timeout).await {
        Err(e) => Outcome::Failed(e),
        Ok(serial)
            if copy.exists() && meta.serial.is_some_and(|have| !serial_newer(serial, have)) =>
        {
            Outcome::NotModified
        }
        Ok(_) => match transfer(src, copy, meta.serial, spec.fetch.timeout).await {
            Err(e) => Outcome::Failed(e),
            Ok(None) => Outcome::NotModified,
            Ok(Some((serial, text, records, how))) => {
                let written = copy
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| store::write_atomic(copy, text.as_bytes()));
                match written {
                    Ok(()) => {
                        tracing::info!(list = %spec.name, serial, records, "{how}");
                        meta.serial = Some(serial);
                        meta.entries = records as u64;
                        meta.fetched_at = Some(store::now());
                        meta.last_transfer = Some(how);
                        Outcome::Updated {
                            entries: records as u64,
                        }
                    }
                    Err(e) => Outcome::Failed(format!("cannot write {}: {e}", copy.display())),
                }
            }
        },
    };
    store::record_outcome(copy, &mut meta, &outcome, &spec.name);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_serials_with_rfc_1982() {
        assert!(serial_newer(2, 1));
        assert!(!serial_newer(1, 1));
        assert!(serial_newer(1, u32::MAX), "wraps around (RFC 1982)");
        assert!(!serial_newer(u32::MAX, 1));
    }

    fn rec(line: &str) -> Record {
        parse_record("rpz.test", line).expect("record")
    }

    #[test]
    fn tsig_keys_make_signers() {
        let k = Tsig::parse("hmac-sha512:xfr.Key.:c2VjcmV0").expect("valid");
        assert!(signer(&k).is_ok());
    }

    #[test]
    fn knows_when_a_transfer_is_complete() {
        let soa = |n: u32| {
            rec(&format!(
                "@ 60 IN SOA ns.rpz.test. h.rpz.test. {n} 3600 600 86400 60"
            ))
        };
        let a = rec("a 60 IN CNAME .");
        assert!(ixfr_complete(&[soa(5)]), "up to date: one SOA");
        assert!(!ixfr_complete(&[soa(5), a.clone()]));
        assert!(ixfr_complete(&[soa(5), a.clone(), soa(5)]), "AXFR-style");
        let diff = [soa(5), soa(4), a.clone(), soa(5), a.clone()];
        assert!(!ixfr_complete(&diff));
        assert!(
            ixfr_complete(&[&diff[..], &[soa(5)]].concat()),
            "differences closed by the new SOA"
        );
        assert!(axfr_complete(&[soa(1), a, soa(1)]));
        assert_eq!(
            record_key("A.rpz.test. 60 IN CNAME ."),
            record_key("a.rpz.test. 300 IN CNAME .")
        );
    }

    /// A reply message with ID `id` answering with `records`.
    fn reply(id: u16, records: &[Record]) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        for r in records {
            m.add_answer(r.clone());
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn reads_transfers_from_reply_messages() {
        let soa = |n: u32| {
            rec(&format!(
                "@ 60 IN SOA ns.rpz.test. h.rpz.test. {n} 3600 600 86400 60"
            ))
        };
        let (a, b) = (rec("a 60 IN CNAME ."), rec("b 60 IN CNAME *."));
        let axfr = [
            reply(7, &[soa(5), a.clone()]),
            reply(7, &[b.clone(), soa(5)]),
        ];
        let Ok(Ixfr::Full(5, copy, 3)) =
            read_transfer("rpz.test", None, "", 7, axfr.iter().map(Vec::as_slice))
        else {
            panic!("AXFR in two messages");
        };
        assert!(
            copy.starts_with("$ORIGIN rpz.test.\nrpz.test. 60 IN SOA"),
            "{copy}"
        );
        assert_eq!(
            read_transfer("rpz.test", None, "", 8, axfr.iter().map(Vec::as_slice)),
            Err("answer with a wrong ID".into())
        );
        assert_eq!(
            read_transfer("rpz.test", None, "", 7, [axfr[0].as_slice()]),
            Err("transfer cut".into())
        );

        let ixfr = reply(
            7,
            &[soa(6), soa(5), a, soa(6), rec("c 60 IN CNAME ."), soa(6)],
        );
        let Ok(Ixfr::Applied(6, text, 3, 1, 1)) =
            read_transfer("rpz.test", Some(5), &copy, 7, [ixfr.as_slice()])
        else {
            panic!("IXFR applied");
        };
        assert!(
            !text.contains("a.rpz.test.") && text.contains("c.rpz.test."),
            "{text}"
        );
        assert!(copy_soa("rpz.test", &text).is_ok_and(|r| soa_serial_of(&r) == Some(6)));
        assert_eq!(
            read_transfer(
                "rpz.test",
                Some(5),
                &text,
                7,
                [reply(7, &[soa(6)]).as_slice()]
            ),
            Ok(Ixfr::UpToDate)
        );
    }

    /// Found by fuzzing (`fuzz/regressions/xfr/`): an SOA whose RNAME has a
    /// control byte was written as `\010`, which hickory cannot read back, so
    /// every refresh after it fell back to AXFR.
    #[test]
    fn fuzz_copy_soa_that_does_not_parse_back_keeps_its_serial() {
        let rname = Name::from_labels([&b"hostmaster"[..], b"rpz", b"\x08\0"]).expect("name");
        let apex = Name::from_str("rpz.test.").expect("apex");
        let soa = Record::from_rdata(
            apex.clone(),
            60,
            RData::SOA(SOA::new(apex, rname, 7, 3600, 600, 86400, 60)),
        );
        let (serial, copy, _) = zone_text("rpz.test", &[soa]);
        assert!(copy.contains("\\010\\000"), "{copy}");
        assert!(parse_record("rpz.test", copy.lines().nth(1).expect("SOA line")).is_err());
        let ours = copy_soa("rpz.test", &copy).expect("rebuilt around the serial");
        assert_eq!((serial, soa_serial_of(&ours)), (7, Some(7)));
        assert_eq!(ours.name.to_string(), "rpz.test.");
    }

    #[test]
    fn notify_only_from_the_primary_of_a_known_zone() {
        let t = NotifyTargets::default();
        let wake = Arc::new(Notify::new());
        t.register("rpz.test", "127.0.0.1".parse().expect("ip"), wake);
        assert!(t.notified("rpz.test", "127.0.0.1".parse().expect("ip")));
        assert!(!t.notified("rpz.test", "127.0.0.2".parse().expect("ip")));
        assert!(!t.notified("other.test", "127.0.0.1".parse().expect("ip")));
        assert!(t.is_primary("127.0.0.1".parse().expect("ip")));
        assert!(t.is_primary("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!t.is_primary("127.0.0.2".parse().expect("ip")));
    }
}
