//! RPZ lists received by zone transfer, the way enterprises take threat
//! feeds: embargo is a secondary of the feed's primary.
//!
//! ```text
//!  NOTIFY from the primary ─┐
//!  refresh timer ───────────┴─► SOA query (UDP) ── serial unchanged ──► done
//!                                   │ newer, or no copy yet
//!                                   ▼
//!                           IXFR, else AXFR (TCP) ──► zone text, counted against max_size as it streams
//!                                   │                     (cut off beyond it)
//!                                   ▼ background thread
//!                               RPZ parser: names ── none left, or fewer than max_shrink allows ──► refused
//!                                   │ fsync, rename          (last good copy stays)
//!                                   ▼
//!                               STATE/lists/NAME.list + serial in NAME.meta.json ──► reload
//! ```
//!
//! The copy is plain zone-file text, so a restart without the primary
//! loads the last good transfer like any list. Serials compare with RFC 1982
//! arithmetic. A transfer is complete only when the closing SOA arrives; a
//! cut or malformed transfer keeps the last good copy. A transfer passes
//! the guards a download does (see [`super::vet`]): at most `max_size`
//! bytes of zone text, held as text as the records arrive (never the
//! messages), and no more than `max_shrink` of the names lost, nor all of
//! them. The zone is parsed and written off the runtime ([`background`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigVerifier, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::store::{self, FetchMeta};
use super::{Outcome, background};
use crate::config::{Fetch, ListSpec, Tsig, XfrSource};
use crate::lists::{self, Format};

mod received;
use received::{Received, Reply};

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

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The zone passed `max_size` as it streamed in, or once IXFR
    /// differences were applied to the copy: an AXFR after it would be as
    /// big, so none is tried.
    #[error("zone larger than the {0}-byte limit (max_size_mb)")]
    TooLarge(u64),
    /// Anything else: cut, malformed, refused, timed out, not signed.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for Error {
    fn from(why: String) -> Self {
        Self::Failed(why)
    }
}

impl From<&str> for Error {
    fn from(why: &str) -> Self {
        Self::Failed(why.to_string())
    }
}

/// The primary's current SOA serial (over TCP, which a primary always serves).
pub async fn soa_serial(src: &XfrSource, timeout: Duration) -> Result<u32, String> {
    let (q, verifier) = message(&src.zone, RecordType::SOA, None, src.tsig.as_ref())?;
    let mut reply = Received::new(Reply::Message, &src.zone, u64::MAX);
    tokio::time::timeout(timeout, exchange(src.primary, &q, verifier, &mut reply))
        .await
        .map_err(|_| format!("{}: SOA query timed out", src.primary))?
        .map_err(|e| e.to_string())?;
    reply
        .soas
        .first()
        .map(|&(_, serial)| serial)
        .ok_or_else(|| "no SOA in the answer".to_string())
}

/// Sends `query` over TCP and reads messages into `received` until it
/// says the reply is whole.
async fn exchange(
    server: SocketAddr,
    query: &[u8],
    mut verifier: Option<TSigVerifier>,
    received: &mut Received,
) -> Result<(), Error> {
    let fail = |why: String| Error::Failed(format!("{server}: {why}"));
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let id = u16::from_be_bytes([query[0], query[1]]);
    // One message at a time, in one buffer: what is kept of it is its
    // records' text, which `received` counts.
    let mut buf = Vec::new();
    for _ in 0..MAX_MESSAGES {
        let len = s
            .read_u16()
            .await
            .map_err(|e| fail(format!("transfer cut: {e}")))?;
        buf.clear();
        buf.resize(usize::from(len), 0);
        s.read_exact(&mut buf)
            .await
            .map_err(|e| fail(format!("transfer cut: {e}")))?;
        read_message(&buf, id, verifier.as_mut(), received).map_err(|e| match e {
            Error::Failed(why) => fail(why),
            too_large => too_large,
        })?;
        if received.complete() {
            return Ok(());
        }
        // A primary faster than we decode would keep the reads ready and
        // this task running for up to tokio's budget (128 reads, 64
        // messages): give the thread back after each message instead, so
        // forwarded answers wait for one message's work at most.
        tokio::task::yield_now().await;
    }
    Err(fail("transfer never ended".into()))
}

/// Messages of one reply read at most: a primary that never closes its
/// transfer must not keep us reading forever (messages without records
/// add nothing to the zone's size; the refresh's timeout also ends it).
const MAX_MESSAGES: usize = 1_000_000;

/// One message of a reply: checks its TSIG (when the query was signed), its
/// ID and its RCODE, and hands its answers to `received`.
fn read_message(
    buf: &[u8],
    id: u16,
    verifier: Option<&mut TSigVerifier>,
    received: &mut Received,
) -> Result<(), Error> {
    if let Some(v) = verifier {
        v.verify(buf)
            .map_err(|e| format!("TSIG verification failed: {e}"))?;
    }
    let m = Message::from_vec(buf).map_err(|e| format!("malformed message: {e}"))?;
    if m.metadata.id != id {
        return Err("answer with a wrong ID".into());
    }
    if m.metadata.response_code != ResponseCode::NoError {
        return Err(m.metadata.response_code.to_string().into());
    }
    for r in &m.answers {
        received.push(r)?;
    }
    Ok(())
}

/// Transfers the whole zone: its serial, its records as zone-file text,
/// and how many there are. The zone may be at most `fetch.max_size` bytes
/// of text; the transfer is cut off as soon as it is more.
pub async fn axfr(src: &XfrSource, fetch: &Fetch) -> Result<(u32, String, usize), Error> {
    let (q, verifier) = message(&src.zone, RecordType::AXFR, None, src.tsig.as_ref())?;
    let mut received = Received::new(Reply::Axfr, &src.zone, fetch.max_size);
    tokio::time::timeout(
        fetch.timeout,
        exchange(src.primary, &q, verifier, &mut received),
    )
    .await
    .map_err(|_| format!("{}: AXFR timed out", src.primary))??;
    received.into_zone()
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
/// the first line of the copy) and applies them to `copy_text`, off the
/// runtime (a copy of a million lines is rewritten).
async fn ixfr(src: &XfrSource, have: u32, copy_text: String, fetch: &Fetch) -> Result<Ixfr, Error> {
    // Our SOA, from the copy, goes in the authority section (RFC 1995 3).
    let ours = copy_soa(&src.zone, &copy_text)?;
    let (q, verifier) = message(&src.zone, RecordType::IXFR, Some(ours), src.tsig.as_ref())?;
    let mut received = Received::new(Reply::Ixfr, &src.zone, fetch.max_size);
    tokio::time::timeout(
        fetch.timeout,
        exchange(src.primary, &q, verifier, &mut received),
    )
    .await
    .map_err(|_| format!("{}: IXFR timed out", src.primary))??;
    let (zone, limit) = (src.zone.clone(), fetch.max_size);
    background::run("embargo-ixfr", move || {
        apply_ixfr(&zone, have, &copy_text, received, limit)
    })
    .await
    .map_err(|e| Error::Failed(e.to_string()))?
}

/// Applies an IXFR reply to our copy (`copy_text`, at serial `have`); the
/// result may be at most `limit` bytes.
fn apply_ixfr(
    zone: &str,
    have: u32,
    copy_text: &str,
    received: Received,
    limit: u64,
) -> Result<Ixfr, Error> {
    let new = received
        .first_serial()
        .ok_or("IXFR answer without an SOA")?;
    if received.len() == 1 {
        return Ok(Ixfr::UpToDate);
    }
    if received.serial(1).is_none() {
        let (serial, text, n) = received.into_zone()?;
        return Ok(Ixfr::Full(serial, text, n));
    }
    // Differences: [SOA new] then [SOA old, deleted..., SOA next, added...]...
    // (the closing SOA new is not kept).
    let mut lines: Vec<String> = copy_text.lines().skip(1).map(str::to_string).collect();
    let mut expect = have;
    let (mut deleted, mut added) = (0usize, 0usize);
    let end = received.len();
    let mut i = 1;
    while i < end {
        let from = received
            .serial(i)
            .ok_or("IXFR: a difference does not start with an SOA")?;
        if from != expect {
            return Err(
                format!("IXFR: difference from serial {from}, our copy is at {expect}").into(),
            );
        }
        i += 1;
        let mut gone = std::collections::HashSet::new();
        while i < end && received.serial(i).is_none() {
            gone.insert(record_key(received.line(i)));
            i += 1;
        }
        let to = received
            .serial(i)
            .ok_or("IXFR: a difference has no new SOA")?;
        let to_soa = received.line(i).to_string();
        i += 1;
        let before = lines.len();
        lines.retain(|l| !gone.contains(&record_key(l)) && !is_soa_line(l));
        deleted += (before - lines.len()).saturating_sub(1);
        lines.insert(0, to_soa);
        while i < end && received.serial(i).is_none() {
            lines.push(received.line(i).to_string());
            added += 1;
            i += 1;
        }
        expect = to;
    }
    if expect != new {
        return Err(format!("IXFR: differences end at serial {expect}, not {new}").into());
    }
    let n = lines.len();
    let text = format!("$ORIGIN {zone}.\n{}\n", lines.join("\n"));
    if text.len() as u64 > limit {
        return Err(Error::TooLarge(limit));
    }
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
/// `copy_text`, is at serial `have`) would, with the default `max_size`.
#[doc(hidden)]
pub fn read_transfer<'a>(
    zone: &str,
    have: Option<u32>,
    copy_text: &str,
    id: u16,
    messages: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Ixfr, String> {
    read_transfer_within(
        zone,
        have,
        copy_text,
        id,
        messages,
        Fetch::default().max_size,
    )
    .map_err(|e| e.to_string())
}

/// [`read_transfer`] with a zone of at most `limit` bytes.
fn read_transfer_within<'a>(
    zone: &str,
    have: Option<u32>,
    copy_text: &str,
    id: u16,
    messages: impl IntoIterator<Item = &'a [u8]>,
    limit: u64,
) -> Result<Ixfr, Error> {
    if have.is_some() {
        copy_soa(zone, copy_text)?;
    }
    let reply = if have.is_some() {
        Reply::Ixfr
    } else {
        Reply::Axfr
    };
    let mut received = Received::new(reply, zone, limit);
    for m in messages.into_iter().take(MAX_MESSAGES) {
        read_message(m, id, None, &mut received)?;
        if received.complete() {
            return match have {
                Some(have) => apply_ixfr(zone, have, copy_text, received, limit),
                None => received
                    .into_zone()
                    .map(|(serial, text, n)| Ixfr::Full(serial, text, n)),
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

/// A transfer's zone, before it is vetted and written.
#[derive(Debug)]
struct Transferred {
    serial: u32,
    text: String,
    records: usize,
    /// How it came: `AXFR`, or the IXFR's counts.
    how: String,
}

/// IXFR from our copy's serial when we have one, AXFR when not or when the
/// IXFR fails (a primary without IXFR answers NOTIMP or a full zone), but
/// not when it failed for being too large. `None` when the primary has
/// nothing newer.
async fn transfer(
    src: &XfrSource,
    copy: &Path,
    have: Option<u32>,
    fetch: &Fetch,
) -> Result<Option<Transferred>, Error> {
    if let Some(have) = have {
        let path = copy.to_path_buf();
        if let Ok(Ok(text)) =
            background::run("embargo-xfr", move || std::fs::read_to_string(path)).await
        {
            let transferred = |serial, text, records, how| {
                Ok(Some(Transferred {
                    serial,
                    text,
                    records,
                    how,
                }))
            };
            match ixfr(src, have, text, fetch).await {
                Ok(Ixfr::UpToDate) => return Ok(None),
                Ok(Ixfr::Full(serial, text, n)) => {
                    return transferred(serial, text, n, "IXFR answered with the full zone".into());
                }
                Ok(Ixfr::Applied(serial, text, n, del, add)) => {
                    return transferred(
                        serial,
                        text,
                        n,
                        format!("IXFR: {del} records removed, {add} added"),
                    );
                }
                Err(e @ Error::TooLarge(_)) => return Err(e),
                Err(e) => {
                    tracing::info!(zone = %src.zone, "IXFR not usable ({e}); falling back to AXFR")
                }
            }
        }
    }
    let (serial, text, records) = axfr(src, fetch).await?;
    Ok(Some(Transferred {
        serial,
        text,
        records,
        how: "AXFR".into(),
    }))
}

/// One refresh of a zone-transfer list (see the module doc). `force`
/// accepts a zone that the shrink checks would refuse.
pub async fn refresh(spec: &ListSpec, src: &XfrSource, force: bool) -> Outcome {
    let copy = &spec.path;
    let meta = store::meta_for(copy, &src.to_string());
    // Err: the outcome already, with nothing to adopt.
    let transferred = match soa_serial(src, spec.fetch.timeout).await {
        Err(e) => Err(Outcome::Failed(e)),
        Ok(serial)
            if copy.exists() && meta.serial.is_some_and(|have| !serial_newer(serial, have)) =>
        {
            Err(Outcome::NotModified)
        }
        Ok(_) => match transfer(src, copy, meta.serial, &spec.fetch).await {
            Err(e) => Err(Outcome::Failed(e.to_string())),
            Ok(None) => Err(Outcome::NotModified),
            Ok(Some(t)) => Ok(t),
        },
    };
    // Parsing the zone, writing and fsyncing the copy and its metadata:
    // all off the runtime that carries forwarded answers.
    let spec = spec.clone();
    background::run("embargo-xfr", move || {
        let mut meta = meta;
        let outcome = match transferred {
            Ok(t) => adopt(&spec, t, &mut meta, force),
            Err(outcome) => outcome,
        };
        store::record_outcome(&spec.path, &mut meta, &outcome, &spec.name);
        outcome
    })
    .await
    .unwrap_or_else(|e| Outcome::Failed(e.to_string()))
}

/// Vets a transferred zone as a download is vetted ([`super::vet`]: its
/// names counted by the RPZ parser, as the reload will read them) and, if
/// it passes, makes it the copy in use.
fn adopt(spec: &ListSpec, t: Transferred, meta: &mut FetchMeta, force: bool) -> Outcome {
    let mut names = 0u64;
    let format = spec.format.unwrap_or(Format::Rpz);
    let stats = match lists::load_lines(&mut t.text.as_bytes(), format, &mut |_, _| names += 1) {
        Ok(stats) => stats,
        Err(e) => return Outcome::Failed(format!("cannot read the zone: {e}")),
    };
    // An `ips` list's or a zone's networks are entries as much as names.
    let names = names + stats.nets;
    if let Some(turned_down) = super::vet(spec, names, &stats, meta.entries, force) {
        return turned_down;
    }
    let copy = &spec.path;
    let written = copy
        .parent()
        .map_or(Ok(()), store::create_dir)
        .and_then(|()| store::write_atomic(copy, t.text.as_bytes()));
    if let Err(e) = written {
        return Outcome::Failed(format!("cannot write {}: {e}", copy.display()));
    }
    tracing::info!(list = %spec.name, serial = t.serial, records = t.records, names, "{}", t.how);
    meta.serial = Some(t.serial);
    meta.entries = names;
    meta.fetched_at = Some(store::now());
    meta.last_transfer = Some(t.how);
    Outcome::Updated { entries: names }
}

#[cfg(test)]
mod tests {
    use super::received::soa_serial_of;
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

    fn soa(n: u32) -> Record {
        rec(&format!(
            "@ 60 IN SOA ns.rpz.test. h.rpz.test. {n} 3600 600 86400 60"
        ))
    }

    #[test]
    fn records_are_the_same_whatever_their_ttl() {
        assert_eq!(
            record_key("A.rpz.test. 60 IN CNAME ."),
            record_key("a.rpz.test. 300 IN CNAME .")
        );
    }

    /// Issue 16 (6): a zone is cut off as soon as its text passes the
    /// limit, however many messages the primary would still send: the
    /// messages are read one at a time and only their records' text is
    /// kept, so a zone that never ends costs at most the limit.
    #[test]
    fn r16_a_zone_is_cut_off_as_it_passes_the_limit() {
        let records: Vec<Record> = (0..100)
            .map(|i| rec(&format!("n{i} 60 IN CNAME .")))
            .collect();
        let opening = reply(7, &[soa(9)]);
        let more = reply(7, &records);
        let mut read = 0usize;
        // A primary that never sends the closing SOA.
        let endless = std::iter::once(opening.as_slice())
            .chain(std::iter::repeat(more.as_slice()).inspect(|_| read += 1));
        let limit = 64 * 1024;
        let got = read_transfer_within("rpz.test", None, "", 7, endless, limit);
        assert_eq!(got, Err(Error::TooLarge(limit)));
        // About 30 bytes of text a record, 100 records a message.
        assert!(read <= 25, "{read} messages read for {limit} bytes");
        assert_eq!(
            Error::TooLarge(limit).to_string(),
            "zone larger than the 65536-byte limit (max_size_mb)"
        );

        // The same for IXFR differences applied to a copy: the result counts.
        let copy =
            "$ORIGIN rpz.test.\nrpz.test. 60 IN SOA ns.rpz.test. h.rpz.test. 5 3600 600 86400 60\n";
        let diff = reply(
            7,
            &[&[soa(6), soa(5), soa(6)][..], &records[..], &[soa(6)][..]].concat(),
        );
        let small = read_transfer_within("rpz.test", Some(5), copy, 7, [diff.as_slice()], 2048);
        assert_eq!(small, Err(Error::TooLarge(2048)));
        assert!(matches!(
            read_transfer_within("rpz.test", Some(5), copy, 7, [diff.as_slice()], 64 * 1024),
            Ok(Ixfr::Applied(6, _, 101, 0, 100))
        ));
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
        let mut received = Received::new(Reply::Axfr, "rpz.test", u64::MAX);
        received.push(&soa).expect("SOA");
        let (serial, copy, _) = received.into_zone().expect("zone");
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
