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
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::fetch::{self, Outcome};
use crate::lists::ListSpec;

/// A zone-transfer source: `axfr://ip:port/zone.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfrSource {
    pub primary: SocketAddr,
    /// Lowercase, without the trailing dot.
    pub zone: String,
}

impl XfrSource {
    /// Parses `axfr://ip:port/zone` (port 53 when omitted).
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("axfr://")?;
        let (host, zone) = rest.split_once('/')?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let primary = host.parse::<SocketAddr>().ok().or_else(|| {
            bare.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })?;
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        if zone.is_empty() || Name::from_ascii(&zone).is_err() {
            return None;
        }
        Some(Self { primary, zone })
    }
}

impl std::fmt::Display for XfrSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "axfr://{}/{}", self.primary, self.zone)
    }
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

fn message(zone: &str, rtype: RecordType) -> Result<Vec<u8>, String> {
    let name = Name::from_str(&format!("{zone}.")).map_err(|e| format!("zone name: {e}"))?;
    let mut m = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name, rtype));
    m.to_vec().map_err(|e| format!("encode: {e}"))
}

/// The primary's current SOA serial (over TCP, which a primary always serves).
pub async fn soa_serial(src: &XfrSource, timeout: Duration) -> Result<u32, String> {
    let q = message(&src.zone, RecordType::SOA)?;
    let replies = tokio::time::timeout(timeout, exchange(src.primary, &q, 1))
        .await
        .map_err(|_| format!("{}: SOA query timed out", src.primary))??;
    let m = replies.first().ok_or("no SOA answer")?;
    if m.metadata.response_code != ResponseCode::NoError {
        return Err(format!("SOA query: {}", m.metadata.response_code));
    }
    m.answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(|| "no SOA in the answer".to_string())
}

/// Sends `query` over TCP and reads messages until `done` says the reply
/// is complete (`want` = 1: one message; 0: an AXFR, until the closing SOA).
async fn exchange(server: SocketAddr, query: &[u8], want: usize) -> Result<Vec<Message>, String> {
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut out = Vec::new();
    let mut soas = 0usize;
    loop {
        let len = s
            .read_u16()
            .await
            .map_err(|e| format!("{server}: transfer cut: {e}"))?;
        let mut buf = vec![0u8; usize::from(len)];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| format!("{server}: transfer cut: {e}"))?;
        let m = Message::from_vec(&buf).map_err(|e| format!("{server}: malformed message: {e}"))?;
        if m.metadata.id != id {
            return Err(format!("{server}: answer with a wrong ID"));
        }
        if m.metadata.response_code != ResponseCode::NoError {
            return Err(format!("{server}: {}", m.metadata.response_code));
        }
        soas += m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        out.push(m);
        if want == 1 || soas >= 2 {
            return Ok(out);
        }
        if out.len() > 100_000 {
            return Err(format!("{server}: transfer never ended"));
        }
    }
}

/// Transfers the whole zone: its serial and its records as zone-file text.
pub async fn axfr(src: &XfrSource, timeout: Duration) -> Result<(u32, String, usize), String> {
    let q = message(&src.zone, RecordType::AXFR)?;
    let replies = tokio::time::timeout(timeout, exchange(src.primary, &q, 0))
        .await
        .map_err(|_| format!("{}: AXFR timed out", src.primary))??;
    let mut text = format!("$ORIGIN {}.\n", src.zone);
    let mut serial = None;
    let mut count = 0usize;
    for r in replies.iter().flat_map(|m| m.answers.iter()) {
        if let RData::SOA(soa) = &r.data {
            if serial.is_some() {
                continue; // the closing SOA
            }
            serial = Some(soa.serial);
        }
        text.push_str(&r.to_string());
        text.push('\n');
        count += 1;
    }
    let serial = serial.ok_or("the transfer did not start with an SOA")?;
    Ok((serial, text, count))
}

/// One refresh of a zone-transfer list (see the module doc).
pub async fn refresh(spec: &ListSpec, src: &XfrSource) -> Outcome {
    let copy = &spec.path;
    let mut meta = fetch::read_meta(copy);
    let source = src.to_string();
    if meta.url != source {
        meta = fetch::FetchMeta {
            url: source,
            ..fetch::FetchMeta::default()
        };
    }
    let outcome = match soa_serial(src, spec.fetch.timeout).await {
        Err(e) => Outcome::Failed(e),
        Ok(serial)
            if copy.exists() && meta.serial.is_some_and(|have| !serial_newer(serial, have)) =>
        {
            Outcome::NotModified
        }
        Ok(_) => match axfr(src, spec.fetch.timeout).await {
            Err(e) => Outcome::Failed(e),
            Ok((serial, text, records)) => {
                let written = copy
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| fetch::write_atomic(copy, text.as_bytes()));
                match written {
                    Ok(()) => {
                        meta.serial = Some(serial);
                        meta.entries = records as u64;
                        meta.fetched_at = Some(fetch::now());
                        Outcome::Updated {
                            entries: records as u64,
                        }
                    }
                    Err(e) => Outcome::Failed(format!("cannot write {}: {e}", copy.display())),
                }
            }
        },
    };
    fetch::record_outcome(copy, &mut meta, &outcome, &spec.name);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources_and_compares_serials() {
        let s = XfrSource::parse("axfr://127.0.0.1:5300/RPZ.Example.").expect("valid");
        assert_eq!(s.primary, "127.0.0.1:5300".parse().expect("addr"));
        assert_eq!(s.zone, "rpz.example");
        assert_eq!(
            XfrSource::parse("axfr://[::1]/feed.test").map(|s| s.primary.port()),
            Some(53)
        );
        assert!(XfrSource::parse("axfr://primary.example/zone").is_none());
        assert!(XfrSource::parse("axfr://127.0.0.1/").is_none());
        assert!(serial_newer(2, 1));
        assert!(!serial_newer(1, 1));
        assert!(serial_newer(1, u32::MAX), "wraps around (RFC 1982)");
        assert!(!serial_newer(u32::MAX, 1));
    }

    #[test]
    fn notify_only_from_the_primary_of_a_known_zone() {
        let t = NotifyTargets::default();
        let wake = Arc::new(Notify::new());
        t.register("rpz.test", "127.0.0.1".parse().expect("ip"), wake);
        assert!(t.notified("rpz.test", "127.0.0.1".parse().expect("ip")));
        assert!(!t.notified("rpz.test", "127.0.0.2".parse().expect("ip")));
        assert!(!t.notified("other.test", "127.0.0.1".parse().expect("ip")));
    }
}
