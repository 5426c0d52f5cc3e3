//! One canary question on the wire, and what its answer says.
//!
//! The question is what a client sends: `canary A IN`, RD set, with EDNS
//! (so that a block carries its Extended DNS Error, which names the list);
//! the answer is read with hickory, off the serving path. [`judge`] turns
//! it into an [`Outcome`] for one list, given whether that list's copy in
//! force covers the canary (the snapshot's word, for the case where a list
//! earlier in the config answered the block).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

/// What one answer said, as far as the canary cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) rcode: ResponseCode,
    /// Records in the answer section.
    pub(super) answers: usize,
    /// The Extended DNS Error (RFC 8914): info code and extra text.
    pub(super) ede: Option<(u16, String)>,
}

/// Why a question got no answer to judge.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("the canary is not a name a query can carry: {0}")]
    Name(String),
    #[error("cannot send to {to}: {source}")]
    Send {
        to: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {to} within {} ms", .waited.as_millis())]
    Timeout { to: SocketAddr, waited: Duration },
}

/// The question for `canary`, as a client would ask it, with `id`.
pub(super) fn question(canary: &str, id: u16) -> Result<Vec<u8>, Error> {
    let name = Name::from_ascii(format!("{canary}."))
        .map_err(|e| Error::Name(format!("{canary}: {e}")))?;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    msg.to_vec()
        .map_err(|e| Error::Name(format!("{canary}: {e}")))
}

/// Asks `to` for `canary` over `sock`, waiting at most `wait` for the
/// answer with the question's ID from `to` (anything else that arrives,
/// a late answer to an earlier question, is skipped).
pub(super) async fn ask(
    sock: &UdpSocket,
    to: SocketAddr,
    canary: &str,
    wait: Duration,
) -> Result<Answer, Error> {
    let id = fastrand::u16(..);
    let q = question(canary, id)?;
    sock.send_to(&q, to)
        .await
        .map_err(|source| Error::Send { to, source })?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let got = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let (n, from) = match got {
            Err(_) => return Err(Error::Timeout { to, waited: wait }),
            // An ICMP error from an earlier send: wait on.
            Ok(Err(_)) => continue,
            Ok(Ok(got)) => got,
        };
        if from != to {
            continue;
        }
        if let Some(a) = read(&buf[..n], id) {
            return Ok(a);
        }
    }
}

/// The answer in `bytes` if it answers question `id`.
pub(super) fn read(bytes: &[u8], id: u16) -> Option<Answer> {
    let msg = Message::from_vec(bytes).ok()?;
    if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
        return None;
    }
    let ede = msg
        .edns
        .as_ref()
        .and_then(|e| match e.option(EdnsCode::Unknown(15)) {
            Some(EdnsOption::Unknown(15, data)) if data.len() >= 2 => Some((
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8_lossy(&data[2..]).into_owned(),
            )),
            _ => None,
        });
    Some(Answer {
        rcode: msg.metadata.response_code,
        answers: msg.answers.len(),
        ede,
    })
}

/// What one check of one list's canary came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Blocked: by this list, or by `by` (a list before it in the config,
    /// whose block answers first) while this list's copy covers it too.
    Blocked { by: Option<String> },
    /// Not blocked as it must be, and why.
    Failed(String),
}

/// An RCODE as dig prints it.
fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// EDE info codes of a block (RFC 8914: 15 Blocked, 16 Censored, 17
/// Filtered); the extra text starts `blocked by LIST`.
const BLOCK_CODES: std::ops::RangeInclusive<u16> = 15..=17;
/// EDE 18, Prohibited: `[access]` refused the client.
const PROHIBITED: u16 = 18;

/// Whether `text` (an EDE's extra text) names `list` as the blocker: the
/// text is `blocked by LIST`, then the end, ` (authority)` or `: reason`.
fn names(text: &str, list: &str) -> bool {
    text.strip_prefix("blocked by ")
        .and_then(|rest| rest.strip_prefix(list))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(' ') || rest.starts_with(':'))
}

/// Judges `answer` for the canary of `list`. `lists` are the names of the
/// lists in force (to tell which one blocked, when not `list`); `listed`
/// whether `list`'s copy covers the canary; `client` the canary socket's
/// address, for the reason of a refusal.
pub(super) fn judge(
    answer: &Answer,
    list: &str,
    lists: &[&str],
    listed: bool,
    client: std::net::IpAddr,
) -> Outcome {
    let rcode = rcode_name(answer.rcode);
    match &answer.ede {
        Some((code, text)) if BLOCK_CODES.contains(code) && text.starts_with("blocked by ") => {
            if names(text, list) {
                return Outcome::Blocked { by: None };
            }
            // The longest name that fits: "a" and "a:b" are both lists.
            let by = lists
                .iter()
                .filter(|l| names(text, l))
                .max_by_key(|l| l.len())
                .map_or_else(|| text.clone(), |l| (*l).to_owned());
            if listed {
                Outcome::Blocked { by: Some(by) }
            } else {
                Outcome::Failed(format!(
                    "not on the list: the copy in force does not cover it (blocked only by {by}, answered {rcode})"
                ))
            }
        }
        Some((PROHIBITED, _)) if answer.rcode == ResponseCode::Refused => Outcome::Failed(format!(
            "refused: [access] does not let {client} (the canary's own address) ask"
        )),
        _ => {
            let why = if listed {
                // The list holds it, yet it went through: something
                // answers before the lists for this client.
                format!(
                    "; the list covers it, so the allowlist, a local name or the client group of {client} lets it through"
                )
            } else {
                "; the copy in force does not cover it".to_owned()
            };
            Outcome::Failed(format!(
                "answered unblocked ({rcode}, {} answer records){why}",
                answer.answers
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rcode: ResponseCode, ede: Option<(u16, &str)>) -> Answer {
        Answer {
            rcode,
            answers: 0,
            ede: ede.map(|(c, t)| (c, t.to_owned())),
        }
    }

    const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_block_naming_the_list_passes() {
        let a = answer(
            ResponseCode::NXDomain,
            Some((16, "blocked by seized (Test Court): Seized")),
        );
        assert_eq!(
            judge(&a, "seized", &["seized"], true, LOCAL),
            Outcome::Blocked { by: None }
        );
        // Whatever the snapshot thinks: the wire says it is blocked by it.
        assert_eq!(
            judge(&a, "seized", &["seized"], false, LOCAL),
            Outcome::Blocked { by: None }
        );
        // "seized" is not "seized-2".
        assert!(!names("blocked by seized-2: x", "seized"));
        assert!(names("blocked by seized-2: x", "seized-2"));
    }

    #[test]
    fn a_block_by_an_earlier_list_passes_only_while_the_list_covers_it() {
        let a = answer(ResponseCode::NXDomain, Some((15, "blocked by first")));
        let lists = ["first", "second"];
        assert_eq!(
            judge(&a, "second", &lists, true, LOCAL),
            Outcome::Blocked {
                by: Some("first".into())
            }
        );
        let Outcome::Failed(why) = judge(&a, "second", &lists, false, LOCAL) else {
            panic!("a copy that lost the canary fails, whoever else blocks it");
        };
        assert!(
            why.contains("not on the list") && why.contains("first"),
            "{why}"
        );
    }

    #[test]
    fn unblocked_refused_and_foreign_answers_fail_with_their_reason() {
        let Outcome::Failed(why) = judge(
            &answer(ResponseCode::NXDomain, None),
            "seized",
            &["seized"],
            false,
            LOCAL,
        ) else {
            panic!("an upstream NXDOMAIN is not a block");
        };
        assert!(why.starts_with("answered unblocked (NXDOMAIN"), "{why}");
        let Outcome::Failed(why) = judge(
            &answer(ResponseCode::Refused, Some((18, ""))),
            "seized",
            &["seized"],
            true,
            LOCAL,
        ) else {
            panic!("an [access] refusal is not a block");
        };
        assert!(
            why.contains("[access]") && why.contains("127.0.0.1"),
            "{why}"
        );
        // Stale answer (EDE 3) from the cache: not a block either.
        assert!(matches!(
            judge(
                &answer(ResponseCode::NoError, Some((3, ""))),
                "seized",
                &["seized"],
                true,
                LOCAL
            ),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn the_question_is_a_clients_and_only_its_answer_is_read() {
        let q = question("Canary.Example", 0x1234).expect("question");
        let msg = Message::from_vec(&q).expect("decodes");
        assert!(msg.metadata.recursion_desired);
        assert!(msg.edns.is_some(), "EDNS, so that a block says its list");
        assert_eq!(msg.queries[0].query_type(), RecordType::A);
        assert!(question("bad..name", 1).is_err());
        // A query is not an answer; another ID is not ours; garbage is nothing.
        assert_eq!(read(&q, 0x1234), None);
        let mut r = msg.clone();
        r.metadata.message_type = MessageType::Response;
        r.metadata.response_code = ResponseCode::NXDomain;
        let bytes = r.to_vec().expect("encode");
        assert_eq!(read(&bytes, 0x4321), None);
        assert_eq!(read(&[1, 2, 3], 0x1234), None);
        assert_eq!(
            read(&bytes, 0x1234).map(|a| a.rcode),
            Some(ResponseCode::NXDomain)
        );
    }
}
