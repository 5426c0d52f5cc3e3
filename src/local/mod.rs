//! The names embargo answers itself: locally served zones (RFC 6303's
//! private reverse zones, `localhost`, `local`, `home.arpa`, `onion`... and
//! the operator's own) and local records (`[[records]]`, hosts files).
//! Built from the config at load time, frozen into the snapshot, answered
//! from pre-built bytes.
//!
//! ```text
//!  config::LocalConfig (records checked, hosts files read) ─┐
//!  config::ForwardSpec zones (they take a local zone over) ─┴► build: a model of names (BTreeMaps)
//!        │ for every name that matters (record owners, zone apexes, forwarded apexes,
//!        │ empty non-terminals) and every query type that answers differently:
//!        ▼ the answer and authority sections, encoded once (owner of the first RRset:
//!          a pointer to the question; every other name written in full)
//!  Local { NameTable<Node> } ──► lookup(name, qtype, qclass): one suffix walk, longest first
//!        exact name ─► node.exact (None: a forwarded apex, not ours)
//!        a suffix   ─► node.below: Continue (a record's name: look further up),
//!                      Stop (a forwarded zone), or the zone's answer (NXDOMAIN, or
//!                      localhost's 127.0.0.1 / ::1)
//!  Answer::respond(query, facts, out): header (AA) + question copied + body + OPT
//! ```
//!
//! Where it stands in the handler (phase B wires it): after the rate
//! limit and before the lists, because these are the operator's own names
//! and the private names no list should send upstream: access -> parse ->
//! rate limit -> **local** -> lists -> cache -> forward (to the zone's set,
//! [`crate::zones::ForwardZones`]).
//!
//! The rules, decided here once:
//! - The most specific name wins. A `[[forward]]` zone below a local zone
//!   is carved out of it (forwarded); one named like a default zone takes
//!   it over (`config::LocalConfig::zones_in_force`). A local zone below a
//!   forwarded zone stays local.
//! - A name with records answers its types with AA, and other types with
//!   NODATA and the SOA of its zone (or its own SOA when it is in no local
//!   zone: a record beside a forwarded or public zone). A name between a
//!   record and its zone's apex exists (an empty non-terminal: NODATA, not
//!   NXDOMAIN, RFC 8020). Other names of a local zone are NXDOMAIN with the
//!   zone's SOA; at the apex, SOA answers.
//! - `localhost` and every name below it answer A 127.0.0.1 and AAAA ::1
//!   (RFC 6761 6.3).
//! - A CNAME comes with its target's answer when the target is local (a
//!   chain, RCODE of its last name, RFC 6604); a target that is not local
//!   is left to the caller to resolve upstream ([`Answer::chase`]).
//! - Records are class IN: a query of class IN or ANY is answered; one of
//!   another class (CH, HS) for a local name is REFUSED, and never leaves.
//!
//! Synthesised SOAs follow RFC 6303: `nobody.invalid.` as RNAME, serial 1,
//! and a negative TTL of [`NEGATIVE_TTL`].

mod build;

use crate::config::{ForwardSpec, LocalConfig};
use crate::matcher::NameKey;
use crate::policy::{QueryFacts, start_response};
use crate::wire::{self, Rcode};
use crate::zones::NameTable;

pub use build::Error;

/// TTL and MINIMUM of the SOAs of local zones: how long a client may cache
/// "no such name" here. Short, so that a record added to a home zone is
/// seen within minutes by a client that asked before.
pub const NEGATIVE_TTL: u32 = 300;

/// The frozen local names.
#[derive(Default)]
pub struct Local {
    table: NameTable<Node>,
}

/// The counts, not the hundreds of pre-built answers.
impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("names", &self.table.len())
            .finish_non_exhaustive()
    }
}

/// One name of the table.
#[derive(Debug)]
struct Node {
    /// What a query for exactly this name gets; `None` for a forwarded
    /// zone's apex without records (not answered here).
    exact: Option<Answers>,
    /// What a name below it gets when nothing more specific matched.
    below: Below,
    /// For `embargo check`: what the name is, and what names below it are.
    about_exact: Box<str>,
    about_below: Box<str>,
}

/// What a name below a node gets.
#[derive(Debug)]
enum Below {
    /// Nothing from this node: look at a shorter suffix (a record's name).
    Continue,
    /// Not answered here: a forwarded zone.
    Stop,
    /// The zone's answer for names it does not have (or localhost's).
    Answer(Answers),
}

/// The answers of one name (or of any name below a zone), by query type.
#[derive(Debug)]
struct Answers {
    /// The types whose answer differs from `other`, each once (a few).
    by_type: Box<[(u16, Body)]>,
    /// Every other type.
    other: Body,
}

impl Answers {
    #[inline]
    fn for_type(&self, qtype: u16) -> &Body {
        self.by_type
            .iter()
            .find(|(t, _)| *t == qtype)
            .map_or(&self.other, |(_, b)| b)
    }
}

/// An answer's sections after the question, encoded once.
#[derive(Debug, Clone)]
struct Body {
    rcode: Rcode,
    ancount: u16,
    nscount: u16,
    /// Answer then authority records. The owner of the first answer RRset
    /// is a pointer to the question (offset 12), whatever the name's case;
    /// every other name is written in full, so nothing depends on the query.
    bytes: Box<[u8]>,
    /// A CNAME chain that left the local names: the name whose answer
    /// must come from upstream, to be appended.
    chase: Option<Box<NameKey>>,
}

/// Bodies are compared at build time, to keep one per distinct answer.
impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.rcode == other.rcode
            && self.ancount == other.ancount
            && self.nscount == other.nscount
            && self.bytes == other.bytes
            && self.chase.as_ref().map(|k| k.as_bytes())
                == other.chase.as_ref().map(|k| k.as_bytes())
    }
}

/// What a local name gets for one query: borrowed from the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// `None`: a class other than IN or ANY (REFUSED).
    body: Option<&'a Body>,
    about: &'a str,
}

/// A class other than IN and ANY for a local name.
const REFUSED_ABOUT: &str = "local name, class other than IN: refused";

impl Local {
    /// Freezes `config`'s local zones and records; `forward` zones take
    /// local zones over or are carved out of them. Fails only on an answer
    /// too large for a DNS message (the config has checked the rest).
    pub fn build(config: &LocalConfig, forward: &[ForwardSpec]) -> Result<Self, Error> {
        Ok(Self {
            table: build::build(config, forward)?,
        })
    }

    /// Whether nothing is answered locally (`defaults = false`, no zones,
    /// no records): the handler may skip the lookup.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Names held (record owners, zone apexes, forwarded apexes, empty
    /// non-terminals).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// The local answer for `name` and `qtype` (class `qclass`), or `None`
    /// when the name is not answered here (forward it, after the lists).
    /// One walk of the name's suffixes; allocates nothing.
    #[inline]
    pub fn lookup(&self, name: &NameKey, qtype: u16, qclass: u16) -> Option<Answer<'_>> {
        for (start, node) in self.table.suffixes(name) {
            let (answers, about) = if start == 0 {
                (node.exact.as_ref()?, &*node.about_exact)
            } else {
                match &node.below {
                    Below::Continue => continue,
                    Below::Stop => return None,
                    Below::Answer(a) => (a, &*node.about_below),
                }
            };
            // Records are IN; ANY (255) asks for every class.
            if qclass != 1 && qclass != 255 {
                return Some(Answer {
                    body: None,
                    about: REFUSED_ABOUT,
                });
            }
            return Some(Answer {
                body: Some(answers.for_type(qtype)),
                about,
            });
        }
        None
    }
}

impl Answer<'_> {
    /// Writes the complete answer into `out` (cleared first): the header
    /// with AA (RA, and RD and CD echoed, as every answer of embargo's),
    /// the question copied byte for byte, the pre-built sections, and an
    /// OPT record when the query had one. The caller truncates for UDP as
    /// for any answer. `query` is the raw query, `q` its parsed facts.
    #[inline]
    pub fn respond(&self, query: &[u8], q: &QueryFacts, out: &mut Vec<u8>) {
        match self.body {
            Some(body) => {
                start_response(query, q, body.rcode, out);
                if let Some(flags) = out.get_mut(2) {
                    *flags |= 0x04; // AA: these names are ours
                }
                out.extend_from_slice(&body.bytes);
                wire::put_u16(out, 6, body.ancount);
                wire::put_u16(out, 8, body.nscount);
            }
            None => start_response(query, q, Rcode::Refused, out),
        }
        if let Some(edns) = q.edns {
            wire::push_opt(out, 0, edns.dnssec_ok, &[]);
        }
    }

    /// The RCODE the answer carries.
    pub fn rcode(&self) -> Rcode {
        self.body.map_or(Rcode::Refused, |b| b.rcode)
    }

    /// For a CNAME (chain) whose target is not local: the name to resolve
    /// upstream for the same type, whose answer records go after these
    /// (and whose RCODE is the answer's). `None` for a complete answer.
    pub fn chase(&self) -> Option<&NameKey> {
        self.body.and_then(|b| b.chase.as_deref())
    }

    /// What answered, for `embargo check` and logs: the record's name and
    /// where it was written, or the zone and why it is local.
    pub fn about(&self) -> &str {
        self.about
    }
}

#[cfg(test)]
mod tests;
