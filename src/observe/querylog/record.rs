//! A query-log line read back: the JSON record or the text line that
//! [`format`](super::format) wrote, parsed into one [`Record`], which is
//! what `embargo log` and `/api/log` filter and print.
//!
//! ```text
//!  {"time":…,"client":…}                 ─┐
//!  2026-…Z 127.0.0.1#53124 udp name A …  ─┴─► parse_line ─► Record ─► serde_json (the JSON record again)
//! ```
//!
//! The format is told line by line (a JSON record starts with `{`), not
//! from `[log] format`: files written before the format was changed still
//! read. Both forms carry the same fields, so a text line turns into the
//! record the JSON form of the same query would have been (the proptest
//! below holds the two to each other through the real formatter).
//!
//! The text line is split at spaces. That is sound because nothing in it
//! holds a space: names are written with RFC 1035 escapes (`\032`), list
//! and group names may not hold whitespace (the config refuses them),
//! client IDs are letters, digits and hyphens, and upstreams are addresses
//! or URLs. Its fields, in order:
//!
//! ```text
//!  TIME CLIENT#PORT PROTO [id=ID] NAME TYPE DECISION [stale] [group=G] [list=L] [entry=E] [net=N] [action=A] rcode=R [upstream=U] latency_us=N
//! ```
//!
//! (`- -` for a query without a question, `rcode=-` for none.)

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::super::event::Decision;

/// One query-log record, with the JSON form's keys in its order (the
/// optional ones left out when absent, as the formatter leaves them out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub time: String,
    pub client: String,
    pub port: u16,
    pub proto: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub qtype: Option<String>,
    pub decision: String,
    pub stale: bool,
    pub list: Option<String>,
    pub entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    pub action: Option<String>,
    pub rcode: Option<String>,
    pub upstream: Option<String>,
    pub latency_us: u64,
    /// `time` in milliseconds since the epoch, for the time filters.
    #[serde(skip)]
    pub time_ms: u64,
}

/// Why a line is no record (counted and skipped by the search, never fatal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not UTF-8")]
    Utf8,
    #[error("not a JSON query-log record: {0}")]
    Json(String),
    #[error("text record: {0}")]
    Text(&'static str),
    #[error("time: not an RFC 3339 UTC time: {0:?}")]
    Time(String),
}

/// Reads one line (without its newline) in either form.
pub fn parse_line(line: &[u8]) -> Result<Record, LineError> {
    let line = std::str::from_utf8(line).map_err(|_| LineError::Utf8)?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut record = if line.starts_with('{') {
        serde_json::from_str::<Record>(line).map_err(|e| LineError::Json(e.to_string()))?
    } else {
        parse_text(line)?
    };
    record.time_ms = time_ms(&record.time).ok_or_else(|| LineError::Time(record.time.clone()))?;
    Ok(record)
}

/// Milliseconds since the epoch of an RFC 3339 time as the log writes it.
pub(super) fn time_ms(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(text).ok()?;
    millis(t)
}

/// `t` in milliseconds since the epoch (`None` before it).
pub(super) fn millis(t: SystemTime) -> Option<u64> {
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(d.as_millis()).ok()
}

/// Whether `word` is one of the log's decisions.
fn is_decision(word: &str) -> bool {
    Decision::ALL.iter().any(|d| d.as_str() == word)
}

/// Reads the text form (module doc).
fn parse_text(line: &str) -> Result<Record, LineError> {
    let words: Vec<&str> = line.split(' ').collect();
    let mut at = 0;
    let mut next = |what: &'static str| {
        let w = words.get(at).copied().ok_or(LineError::Text(what))?;
        at += 1;
        Ok::<&str, LineError>(w)
    };
    let time = next("no time")?.to_owned();
    let (client, port) = next("no client")?
        .rsplit_once('#')
        .ok_or(LineError::Text("client: no #port"))?;
    let port = port
        .parse()
        .map_err(|_| LineError::Text("client: port not a number"))?;
    let proto = next("no protocol")?.to_owned();
    if client.is_empty() || proto.is_empty() {
        return Err(LineError::Text("empty client or protocol"));
    }
    // `id=X` is the client ID unless it is the name: then the decision
    // comes two words after it, not three.
    let client_id = match words.get(at) {
        Some(w) if w.starts_with("id=") && words.get(at + 3).is_some_and(|d| is_decision(d)) => {
            at += 1;
            Some(w["id=".len()..].to_owned())
        }
        _ => None,
    };
    let mut next = |what: &'static str| {
        let w = words.get(at).copied().ok_or(LineError::Text(what))?;
        at += 1;
        Ok::<&str, LineError>(w)
    };
    let (name, qtype) = match (next("no name")?, next("no type")?) {
        ("-", "-") => (None, None),
        (n, t) if !n.is_empty() && !t.is_empty() => (Some(n.to_owned()), Some(t.to_owned())),
        _ => return Err(LineError::Text("empty name or type")),
    };
    let decision = next("no decision")?;
    if !is_decision(decision) {
        return Err(LineError::Text("not a decision"));
    }
    let mut record = Record {
        time,
        client: client.to_owned(),
        port,
        proto,
        client_id,
        group: None,
        name,
        qtype,
        decision: decision.to_owned(),
        stale: false,
        list: None,
        entry: None,
        net: None,
        action: None,
        rcode: None,
        upstream: None,
        latency_us: 0,
        time_ms: 0,
    };
    let mut rest = words.get(at..).unwrap_or_default();
    if rest.first() == Some(&"stale") {
        record.stale = true;
        rest = &rest[1..];
    }
    // The keys in the order the formatter writes them: each at most once.
    let mut order = 0;
    let mut latency = None;
    for word in rest {
        let (key, value) = word.split_once('=').ok_or(LineError::Text(
            "a word after the decision is not key=value",
        ))?;
        const KEYS: [&str; 8] = [
            "group",
            "list",
            "entry",
            "net",
            "action",
            "rcode",
            "upstream",
            "latency_us",
        ];
        let i = KEYS
            .iter()
            .position(|k| *k == key)
            .ok_or(LineError::Text("unknown key"))?;
        if i < order || latency.is_some() || value.is_empty() {
            return Err(LineError::Text("keys out of order, repeated or empty"));
        }
        order = i + 1;
        let value = value.to_owned();
        match i {
            0 => record.group = Some(value),
            1 => record.list = Some(value),
            2 => record.entry = Some(value),
            3 => record.net = Some(value),
            4 => record.action = Some(value),
            5 => record.rcode = (value != "-").then_some(value),
            6 => record.upstream = Some(value),
            _ => {
                latency = Some(
                    value
                        .parse()
                        .map_err(|_| LineError::Text("latency_us: not a number"))?,
                );
            }
        }
    }
    if order <= 5 {
        return Err(LineError::Text("no rcode"));
    }
    record.latency_us = latency.ok_or(LineError::Text("no latency_us: a cut line?"))?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{ClientIp, LogFormat};
    use crate::matcher::NameKey;
    use crate::observe::event::{QueryEvent, ServerNames, Transport};
    use crate::observe::querylog::{ClientView, Formatter, LogBuf};
    use crate::policy::Action;
    use crate::state::{ListSlot, ListSlots};

    const JSON: &str = r#"{"time":"2026-11-29T21:30:31.123Z","client":"127.0.0.1","port":53124,"proto":"udp","name":"www.seized.example","type":"A","decision":"blocked","stale":false,"list":"seized","entry":"seized.example","action":"nxdomain","rcode":"NXDOMAIN","upstream":null,"latency_us":3}"#;
    const TEXT: &str = "2026-11-29T21:30:31.123Z 127.0.0.1#53124 udp www.seized.example A blocked list=seized entry=seized.example action=nxdomain rcode=NXDOMAIN latency_us=3";

    #[test]
    fn the_module_docs_records_read_as_one() {
        let json = parse_line(JSON.as_bytes()).expect("json");
        let text = parse_line(TEXT.as_bytes()).expect("text");
        assert_eq!(json, text);
        assert_eq!(json.time_ms, 1_795_987_831_123);
        assert_eq!(json.list.as_deref(), Some("seized"));
        assert_eq!(serde_json::to_string(&json).expect("json"), JSON);
    }

    #[test]
    fn a_client_id_is_told_from_a_name_that_looks_like_one() {
        let with_id = "2026-11-29T21:30:31.123Z 127.0.0.1#1 tls id=laptop-1 id=x.example A forwarded rcode=NOERROR upstream=192.0.2.1:53 latency_us=10";
        let r = parse_line(with_id.as_bytes()).expect("id");
        assert_eq!(r.client_id.as_deref(), Some("laptop-1"));
        assert_eq!(r.name.as_deref(), Some("id=x.example"));
        let without = "2026-11-29T21:30:31.123Z 127.0.0.1#1 udp id=x.example A cached stale rcode=NOERROR latency_us=1";
        let r = parse_line(without.as_bytes()).expect("name");
        assert_eq!(r.client_id, None);
        assert_eq!(r.name.as_deref(), Some("id=x.example"));
        assert!(r.stale);
    }

    #[test]
    fn cut_and_corrupt_lines_are_errors_not_panics() {
        // Every prefix of a good line but the whole: a write cut short.
        for end in 0..TEXT.len() - 1 {
            assert!(parse_line(&TEXT.as_bytes()[..end]).is_err(), "{end}");
        }
        for end in 0..JSON.len() - 1 {
            assert!(parse_line(&JSON.as_bytes()[..end]).is_err(), "{end}");
        }
        for bad in [
            &b"\xff\xfe"[..],
            b"{}",
            b"not a record at all",
            b"2026-13-40T99:99:99.000Z 1.2.3.4#1 udp a A blocked rcode=- latency_us=1",
            b"2026-11-29T21:30:31.123Z 1.2.3.4#1 udp a A blocked latency_us=1 rcode=-",
            b"2026-11-29T21:30:31.123Z 1.2.3.4#x udp a A blocked rcode=- latency_us=1",
            b"2026-11-29T21:30:31.123Z 1.2.3.4#1 udp a A maybe rcode=- latency_us=1",
        ] {
            assert!(parse_line(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    /// Every field an event can have, from a seed.
    fn event(seed: &[u8; 12], labels: &[Vec<u8>], slots: &ListSlots) -> QueryEvent {
        let mut key = NameKey::new();
        for label in labels {
            if !key.push_label(label) {
                break;
            }
        }
        let decision = Decision::ALL[usize::from(seed[0]) % Decision::ALL.len()];
        let client = if seed[1].is_multiple_of(2) {
            format!("10.{}.{}.{}:{}", seed[2], seed[3], seed[4], seed[5])
        } else {
            format!("[2001:db8::{:x}]:{}", seed[2], seed[5])
        };
        let transports = [Transport::Udp, Transport::Tcp];
        let mut ev = QueryEvent::new(
            decision,
            client.parse().expect("addr"),
            transports[usize::from(seed[6] % 2)],
            (!seed[7].is_multiple_of(5)).then_some(&key),
            u16::from(seed[8]) * 7,
        );
        if seed[9].is_multiple_of(2) {
            // The whole name, or from its second label.
            let entry = match key.as_bytes() {
                [n, ..]
                    if seed[10].is_multiple_of(2) && usize::from(*n) + 1 < key.as_bytes().len() =>
                {
                    usize::from(*n) + 1
                }
                _ => 0,
            };
            ev = ev.with_block(slots.slot("seized"), entry, Action::Nxdomain);
        }
        if seed[9].is_multiple_of(5) {
            let net = crate::matcher::Net::new("198.51.100.0".parse().expect("ip"), 24).ok();
            ev = ev.with_net(net);
        }
        if seed[8].is_multiple_of(3) {
            ev = ev.with_client_id(crate::groups::ClientId::of("laptop-1"));
        }
        if seed[9].is_multiple_of(3) {
            ev = ev.with_group(slots.slot("lab"));
        }
        if seed[10].is_multiple_of(2) {
            ev = ev.with_upstream(0);
        }
        ev = ev
            .with_stale(seed[11].is_multiple_of(4))
            .with_rcode(u16::from(seed[11]) % 24);
        ev.time_us = 1_795_987_831_123_456 + u64::from(seed[3]) * 999_999;
        ev.latency_us = u32::from(seed[4]) * 1000;
        ev
    }

    fn formatted(format: LogFormat, ev: &QueryEvent, slots: &Arc<ListSlots>) -> String {
        let servers = Arc::new(ServerNames::default());
        servers.id("https://192.0.2.53/dns-query#dns.example");
        let mut f = Formatter::new(
            format,
            ClientView::new(ClientIp::Full),
            slots.clone(),
            servers,
        );
        let mut buf = LogBuf::new(0);
        f.write(ev, &mut buf);
        String::from_utf8_lossy(buf.as_bytes()).into_owned()
    }

    proptest::proptest! {
        /// What the formatter writes reads back: the JSON record into
        /// itself, byte for byte; the text line into the same record.
        #[test]
        fn what_the_formatter_writes_reads_back(
            seed in proptest::array::uniform12(proptest::num::u8::ANY),
            labels in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..20), 1..5),
        ) {
            let slots = Arc::new(ListSlots::default());
            assert_eq!(slots.slot("seized"), ListSlot(0));
            let ev = event(&seed, &labels, &slots);
            let json = formatted(LogFormat::Json, &ev, &slots);
            let text = formatted(LogFormat::Text, &ev, &slots);
            let from_json = parse_line(json.trim_end().as_bytes());
            proptest::prop_assert!(from_json.is_ok(), "{json}: {from_json:?}");
            let from_json = from_json.expect("checked");
            proptest::prop_assert_eq!(
                serde_json::to_string(&from_json).expect("json"),
                json.trim_end()
            );
            let from_text = parse_line(text.trim_end().as_bytes());
            proptest::prop_assert_eq!(Ok(from_json), from_text, "{}", text);
        }

        /// Any bytes: an error or a record, never a panic.
        #[test]
        fn any_line_is_read_without_panic(line in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_line(&line);
        }

        /// A good text line with one word changed: never a panic.
        #[test]
        fn a_damaged_text_line_is_read_without_panic(at in 0usize..12, word in "[a-z=#.0-9-]{0,12}") {
            let mut words: Vec<&str> = TEXT.split(' ').collect();
            if at < words.len() {
                words[at] = &word;
            }
            let _ = parse_line(words.join(" ").as_bytes());
        }
    }
}
