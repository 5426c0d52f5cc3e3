//! From the validated config to the frozen table: a model of the local
//! names (what exists, in which zone, with which records), then every
//! answer a query can get, encoded. Runs once per snapshot, off the
//! serving path; nothing here is per query.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Answers, Below, Body, NEGATIVE_TTL, Node};
use crate::config::{ForwardSpec, LocalConfig, Location, Origin, RecordData, ZoneOrigin};
use crate::matcher::NameKey;
use crate::wire::{Rcode, TYPE_A, TYPE_AAAA, TYPE_SOA};
use crate::zones::NameTable;

/// Why the local names could not be frozen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More data at one name than a DNS message holds.
    #[error(
        "{location}: {key}: the records of {name} make an answer of {bytes} bytes, more than a DNS message holds ({MAX_BODY})"
    )]
    TooLarge {
        name: String,
        bytes: usize,
        location: Location,
        key: String,
    },
}

/// The most a pre-built body may hold: 65,535 less the header, the
/// longest question and an OPT record.
const MAX_BODY: usize = 65_535 - 12 - 259 - 11;
/// CNAMEs followed in one answer (the config refuses loops; this bounds
/// a long chain).
const MAX_CHAIN: usize = 16;

const TYPE_CNAME: u16 = 5;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
/// The RNAME of local SOAs (RFC 6303 section 3).
const SOA_RNAME: &[u8] = b"\x06nobody\x07invalid\x00";

/// A zone answered locally.
struct Zone {
    name: String,
    origin: ZoneOrigin,
    /// Its SOA record, owner and MNAME written in full.
    soa: Vec<u8>,
    /// `localhost`: every name below answers 127.0.0.1 and ::1.
    synth: bool,
}

/// The records at one name.
struct Owner {
    name: String,
    /// Encoded RDATA by type, in the order written; the TTL of an RRset
    /// is the lowest of its records' (RFC 2181 5.2).
    rrsets: BTreeMap<u16, (u32, Vec<Vec<u8>>)>,
    cname: Option<NameKey>,
    /// Where its first record was written.
    origin: Origin,
    /// Its zone's apex (wire), or `None`: in no local zone, its own SOA.
    zone: Option<Vec<u8>>,
}

/// Where a name's negative answers take their SOA from.
#[derive(Clone, Copy)]
enum Soa<'m> {
    Zone(&'m Zone),
    /// A name with records in no local zone: an SOA of its own.
    Own(&'m Owner),
}

/// What the local names say about a name.
#[derive(Clone, Copy)]
enum Outcome<'m> {
    /// Not answered here.
    NotLocal,
    /// No such name in this zone.
    Nxdomain(&'m Zone),
    /// The name exists here.
    Exists {
        owner: Option<&'m Owner>,
        soa: Soa<'m>,
        /// The apex of `soa`'s zone (SOA answers).
        apex: bool,
        /// Below `localhost`.
        synth: bool,
    },
}

/// The query type an answer is built for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Q {
    Type(u16),
    /// A type no local name has.
    Other,
}

/// The local names as the config describes them, keyed by wire form.
struct Model {
    zones: HashMap<Vec<u8>, Zone>,
    forwards: HashMap<Vec<u8>, usize>,
    owners: BTreeMap<Vec<u8>, Owner>,
    /// Names between a record and its zone's apex: wire → the zone's apex.
    ents: HashMap<Vec<u8>, Vec<u8>>,
}

/// A normalised name (as the config holds them) as a key.
fn key_of(name: &str) -> Option<NameKey> {
    NameKey::from_text(name, true).ok()
}

/// A key from wire form without the root byte.
fn key_from_wire(wire: &[u8]) -> NameKey {
    let mut key = NameKey::new();
    let mut rest = wire;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        key.push_label(&tail[..n]);
        rest = &tail[n..];
    }
    key
}

/// A name in full wire form, root byte included (`""` is the root).
fn full(name: &str) -> Vec<u8> {
    let mut out = key_of(name).map_or_else(Vec::new, |k| k.as_bytes().to_vec());
    out.push(0);
    out
}

fn full_key(key: &NameKey) -> Vec<u8> {
    let mut out = key.as_bytes().to_vec();
    out.push(0);
    out
}

/// Appends one record, class IN.
fn push_rr(out: &mut Vec<u8>, owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(owner);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// An SOA record for `apex` (full wire form), owned by `owner`.
fn soa_rr(owner: &[u8], apex: &[u8]) -> Vec<u8> {
    let mut rdata = apex.to_vec();
    rdata.extend_from_slice(SOA_RNAME);
    for v in [1u32, 3600, 1200, 604_800, NEGATIVE_TTL] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = Vec::new();
    push_rr(&mut out, owner, TYPE_SOA, NEGATIVE_TTL, &rdata);
    out
}

/// The RDATA of a record.
fn rdata(data: &RecordData) -> Vec<u8> {
    match data {
        RecordData::A(a) => a.octets().to_vec(),
        RecordData::Aaaa(a) => a.octets().to_vec(),
        RecordData::Cname(n) | RecordData::Ptr(n) => full(n),
        RecordData::Txt(strings) => {
            let mut out = Vec::new();
            for s in strings {
                out.push(s.len().min(255) as u8);
                out.extend_from_slice(&s[..s.len().min(255)]);
            }
            out
        }
        RecordData::Mx {
            preference,
            exchange,
        } => {
            let mut out = preference.to_be_bytes().to_vec();
            out.extend_from_slice(&full(exchange));
            out
        }
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            let mut out = Vec::new();
            for v in [priority, weight, port] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(&full(target));
            out
        }
    }
}

impl Model {
    fn new(config: &LocalConfig, forward: &[ForwardSpec]) -> Self {
        let mut zones = HashMap::new();
        for z in config.zones_in_force(forward) {
            let Some(key) = key_of(&z.name) else { continue };
            let apex = full_key(&key);
            zones.insert(
                key.as_bytes().to_vec(),
                Zone {
                    soa: soa_rr(&apex, &apex),
                    synth: z.name == "localhost",
                    name: z.name,
                    origin: z.origin,
                },
            );
        }
        let mut forwards = HashMap::new();
        for (i, f) in forward.iter().enumerate() {
            for z in &f.zones {
                if let Some(key) = key_of(&z.name) {
                    forwards.insert(key.as_bytes().to_vec(), i);
                }
            }
        }
        let mut model = Self {
            zones,
            forwards,
            owners: BTreeMap::new(),
            ents: HashMap::new(),
        };
        for r in &config.records {
            let Some(key) = key_of(&r.name) else { continue };
            let owner = model
                .owners
                .entry(key.as_bytes().to_vec())
                .or_insert_with(|| Owner {
                    name: r.name.clone(),
                    rrsets: BTreeMap::new(),
                    cname: None,
                    origin: r.origin.clone(),
                    zone: None,
                });
            if let RecordData::Cname(target) = &r.data {
                owner.cname = key_of(target);
            }
            let (ttl, rdatas) = owner
                .rrsets
                .entry(r.data.rtype())
                .or_insert((r.ttl, Vec::new()));
            *ttl = (*ttl).min(r.ttl);
            rdatas.push(rdata(&r.data));
        }
        // Each record's zone, and the names between it and the apex.
        let mut ents = HashMap::new();
        let owner_keys: Vec<Vec<u8>> = model.owners.keys().cloned().collect();
        for wire in owner_keys {
            let key = key_from_wire(&wire);
            let Some((zone_at, zone)) = model.zone_of(&key) else {
                continue;
            };
            for i in 1..zone_at {
                let between = &wire[key.label_start(i)..];
                if !model.owners.contains_key(between) {
                    ents.insert(between.to_vec(), zone.clone());
                }
            }
            if let Some(o) = model.owners.get_mut(&wire) {
                o.zone = Some(zone);
            }
        }
        model.ents = ents;
        model
    }

    /// The local zone a record's name is in (label index of its apex in
    /// `key`, and the apex): the most specific zone at or above it with no
    /// forwarded zone in between. `None`: in no local zone.
    fn zone_of(&self, key: &NameKey) -> Option<(usize, Vec<u8>)> {
        let wire = key.as_bytes();
        for i in 0..key.label_count() {
            let s = &wire[key.label_start(i)..];
            if self.zones.contains_key(s) {
                return Some((i, s.to_vec()));
            }
            if self.forwards.contains_key(s) {
                return None;
            }
        }
        None
    }

    /// What the local names say about `key`: the reference behaviour the
    /// frozen table encodes (its tests check the table against a model of
    /// their own).
    fn resolve(&self, key: &NameKey) -> Outcome<'_> {
        let wire = key.as_bytes();
        for i in 0..key.label_count() {
            let s = &wire[key.label_start(i)..];
            if i == 0 {
                let owner = self.owners.get(s);
                let apex = self.zones.get(s);
                let ent = self.ents.get(s).and_then(|z| self.zones.get(z));
                if owner.is_some() || apex.is_some() || ent.is_some() {
                    let zone = apex.or(ent).or_else(|| {
                        owner
                            .and_then(|o| o.zone.as_ref())
                            .and_then(|z| self.zones.get(z))
                    });
                    let soa = match (zone, owner) {
                        (Some(z), _) => Soa::Zone(z),
                        (None, Some(o)) => Soa::Own(o),
                        (None, None) => return Outcome::NotLocal,
                    };
                    return Outcome::Exists {
                        owner,
                        soa,
                        apex: apex.is_some(),
                        // `localhost` itself is the loopback too.
                        synth: apex.is_some_and(|z| z.synth),
                    };
                }
            }
            if self.forwards.contains_key(s) {
                return Outcome::NotLocal;
            }
            if i > 0
                && let Some(z) = self.zones.get(s)
            {
                return if z.synth {
                    Outcome::Exists {
                        owner: None,
                        soa: Soa::Zone(z),
                        apex: false,
                        synth: true,
                    }
                } else {
                    Outcome::Nxdomain(z)
                };
            }
        }
        Outcome::NotLocal
    }

    /// The body answering `q` for a name whose outcome is `first`.
    fn body(&self, first: Outcome<'_>, q: Q) -> Body {
        let mut bytes = Vec::new();
        let mut ancount = 0u16;
        let mut nscount = 0u16;
        let mut rcode = Rcode::ServFail;
        let mut chase = None;
        // The owner of the first RRset: a pointer to the question; after a
        // CNAME, its target in full.
        let mut owner: Vec<u8> = vec![0xc0, 12];
        let mut target_name: Option<&NameKey> = None;
        let mut outcome = first;
        for _ in 0..=MAX_CHAIN {
            match outcome {
                Outcome::NotLocal => {
                    // Only after a CNAME: the first outcome is local.
                    rcode = Rcode::NoError;
                    chase = target_name.map(|t| Box::new(t.clone()));
                    break;
                }
                Outcome::Nxdomain(zone) => {
                    rcode = Rcode::NxDomain;
                    bytes.extend_from_slice(&zone.soa);
                    nscount += 1;
                    break;
                }
                Outcome::Exists {
                    owner: records,
                    soa,
                    apex,
                    synth,
                } => {
                    if let Some(o) = records
                        && let Some(target) = &o.cname
                        && q != Q::Type(TYPE_CNAME)
                    {
                        if let Some((ttl, rdatas)) = o.rrsets.get(&TYPE_CNAME) {
                            for r in rdatas {
                                push_rr(&mut bytes, &owner, TYPE_CNAME, *ttl, r);
                                ancount += 1;
                            }
                        }
                        owner = full_key(target);
                        target_name = Some(target);
                        outcome = self.resolve(target);
                        continue;
                    }
                    let before = ancount;
                    let rrsets = records.map(|o| &o.rrsets);
                    for (t, (ttl, rdatas)) in rrsets.into_iter().flatten() {
                        if q == Q::Type(*t) || q == Q::Type(TYPE_ANY) {
                            for r in rdatas {
                                push_rr(&mut bytes, &owner, *t, *ttl, r);
                                ancount += 1;
                            }
                        }
                    }
                    if apex
                        && (q == Q::Type(TYPE_SOA) || q == Q::Type(TYPE_ANY))
                        && let Soa::Zone(z) = soa
                    {
                        let apex_wire = full(&z.name);
                        let mut rr = soa_rr(&owner, &apex_wire);
                        bytes.append(&mut rr);
                        ancount += 1;
                    }
                    if synth {
                        if q == Q::Type(TYPE_A) || q == Q::Type(TYPE_ANY) {
                            push_rr(&mut bytes, &owner, TYPE_A, NEGATIVE_TTL, &[127, 0, 0, 1]);
                            ancount += 1;
                        }
                        if q == Q::Type(TYPE_AAAA) || q == Q::Type(TYPE_ANY) {
                            let mut one = [0u8; 16];
                            one[15] = 1;
                            push_rr(&mut bytes, &owner, TYPE_AAAA, NEGATIVE_TTL, &one);
                            ancount += 1;
                        }
                    }
                    if ancount == before {
                        // NODATA: the zone's SOA (RFC 2308).
                        match soa {
                            Soa::Zone(z) => bytes.extend_from_slice(&z.soa),
                            Soa::Own(o) => {
                                let own = full(&o.name);
                                bytes.append(&mut soa_rr(&own, &own));
                            }
                        }
                        nscount += 1;
                    }
                    rcode = Rcode::NoError;
                    break;
                }
            }
        }
        Body {
            rcode,
            ancount,
            nscount,
            bytes: bytes.into_boxed_slice(),
            chase,
        }
    }

    /// Every answer for a name whose outcome is `first`, by type:
    /// `types` are the query types that may answer differently.
    fn answers(&self, first: Outcome<'_>, types: &BTreeSet<u16>) -> Answers {
        let other = self.body(first, Q::Other);
        let by_type: Vec<(u16, Body)> = types
            .iter()
            .map(|t| (*t, self.body(first, Q::Type(*t))))
            .filter(|(_, b)| *b != other)
            .collect();
        Answers {
            by_type: by_type.into_boxed_slice(),
            other,
        }
    }
}

/// Says where a record was written, for `check`.
fn written(origin: &Origin) -> String {
    if origin.generated {
        format!(
            "a PTR made for the address at {}, {}",
            origin.location, origin.key
        )
    } else {
        format!("{}, {}", origin.location, origin.key)
    }
}

fn zone_words(zone: &Zone) -> String {
    match &zone.origin {
        ZoneOrigin::Default(rfc) => format!("local zone {} ({rfc}, served by default)", zone.name),
        ZoneOrigin::Configured(at) => {
            format!("local zone {} (local_zones.zones at {at})", zone.name)
        }
    }
}

/// The largest body of `answers`, and whether it fits.
fn check_size(answers: &Answers, owner: Option<&Owner>, name: &NameKey) -> Result<(), Error> {
    let largest = answers
        .by_type
        .iter()
        .map(|(_, b)| b.bytes.len())
        .chain([answers.other.bytes.len()])
        .max()
        .unwrap_or(0);
    if largest <= MAX_BODY {
        return Ok(());
    }
    let (location, key) = owner.map_or_else(
        || {
            (
                Location {
                    file: std::path::PathBuf::new(),
                    line: 0,
                    col: 0,
                },
                String::new(),
            )
        },
        |o| (o.origin.location.clone(), o.origin.key.clone()),
    );
    Err(Error::TooLarge {
        name: name.to_string(),
        bytes: largest,
        location,
        key,
    })
}

/// Builds the frozen table.
pub(super) fn build(
    config: &LocalConfig,
    forward: &[ForwardSpec],
) -> Result<NameTable<Node>, Error> {
    let model = Model::new(config, forward);
    // The query types that may answer differently from "any other type".
    let mut types: BTreeSet<u16> = [TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_SOA, TYPE_ANY].into();
    for o in model.owners.values() {
        types.extend(o.rrsets.keys().copied());
    }
    let mut names: BTreeSet<&[u8]> = BTreeSet::new();
    names.extend(model.zones.keys().map(Vec::as_slice));
    names.extend(model.forwards.keys().map(Vec::as_slice));
    names.extend(model.owners.keys().map(Vec::as_slice));
    names.extend(model.ents.keys().map(Vec::as_slice));
    let mut table = NameTable::default();
    for wire in names {
        let key = key_from_wire(wire);
        let owner = model.owners.get(wire);
        let zone = model.zones.get(wire);
        let exact = match model.resolve(&key) {
            Outcome::NotLocal => None,
            first => Some(model.answers(first, &types)),
        };
        if let Some(a) = &exact {
            check_size(a, owner, &key)?;
        }
        let below = if model.forwards.contains_key(wire) {
            Below::Stop
        } else if let Some(z) = zone {
            let first = if z.synth {
                Outcome::Exists {
                    owner: None,
                    soa: Soa::Zone(z),
                    apex: false,
                    synth: true,
                }
            } else {
                Outcome::Nxdomain(z)
            };
            Below::Answer(model.answers(first, &types))
        } else {
            Below::Continue
        };
        let about_exact = match (
            owner,
            zone,
            model.ents.get(wire).and_then(|z| model.zones.get(z)),
        ) {
            (Some(o), _, _) => {
                let types: Vec<String> = o
                    .rrsets
                    .keys()
                    .map(|t| crate::wire::TypeName(*t).to_string())
                    .collect();
                let zone = o
                    .zone
                    .as_ref()
                    .and_then(|z| model.zones.get(z))
                    .map_or_else(|| "in no local zone".to_string(), zone_words);
                format!(
                    "local record {} ({}; {}), {zone}",
                    o.name,
                    types.join(", "),
                    written(&o.origin)
                )
            }
            (None, Some(z), _) => format!("{}: its apex", zone_words(z)),
            (None, None, Some(z)) => format!(
                "{}: {key} has no records, names below it have",
                zone_words(z)
            ),
            (None, None, None) => String::new(),
        };
        let about_below = match zone {
            Some(z) if z.synth => format!("{}: 127.0.0.1 and ::1", zone_words(z)),
            Some(z) => format!("{}: no such name", zone_words(z)),
            None => String::new(),
        };
        *table.entry(&key, || Node {
            exact: None,
            below: Below::Continue,
            about_exact: "".into(),
            about_below: "".into(),
        }) = Node {
            exact,
            below,
            about_exact: about_exact.into(),
            about_below: about_below.into(),
        };
    }
    Ok(table)
}
