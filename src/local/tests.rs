//! The local answers, read back with hickory: unit tests of each rule, and
//! a property test against a naive model written from the rules in words.

use std::collections::BTreeSet;
use std::path::Path;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use proptest::prelude::*;

use super::*;
use crate::config::Config;
use crate::query;

const A: u16 = 1;
const CNAME: u16 = 5;
const SOA: u16 = 6;
const PTR: u16 = 12;
const MX: u16 = 15;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const SRV: u16 = 33;
const NS: u16 = 2;
const ANY: u16 = 255;

fn config(text: &str) -> Config {
    Config::parse(Path::new("/nonexistent/local.toml"), text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn local(text: &str) -> Local {
    let c = config(text);
    Local::build(&c.local, &c.forward).expect("build")
}

/// A query for `name` (dotted, as written: its case is kept) of `qtype`
/// and `qclass`, with an OPT record (DO set) when `edns`.
fn packet(name: &str, qtype: u16, qclass: u16, edns: bool) -> Vec<u8> {
    let mut p = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&qclass.to_be_bytes());
    if edns {
        p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
    }
    p
}

/// What `local` answers to the query, decoded; `None` when not local.
fn ask_with(local: &Local, name: &str, qtype: u16, qclass: u16, edns: bool) -> Option<Message> {
    let p = packet(name, qtype, qclass, edns);
    let (facts, key) = query::parse(&p).expect("a query");
    let answer = local.lookup(&key, qtype, qclass)?;
    let mut out = vec![0xff; 7];
    answer.respond(&p, &facts, &mut out);
    let msg = Message::from_vec(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out:?}"));
    assert_eq!(msg.metadata.id, 0xbeef);
    assert_eq!(msg.queries.len(), 1);
    assert_eq!(
        msg.queries[0].name().to_string(),
        format!("{}.", name.trim_end_matches('.'))
    );
    assert!(msg.metadata.recursion_available && msg.metadata.recursion_desired);
    assert_eq!(msg.edns.is_some(), edns);
    Some(msg)
}

fn ask(local: &Local, name: &str, qtype: u16) -> Option<Message> {
    ask_with(local, name, qtype, 1, false)
}

/// The answer section as `name TYPE rdata` lines.
fn answers(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

/// The owner of the SOA in the authority section, if any (and that it is alone).
fn soa_owner(msg: &Message) -> Option<String> {
    match msg.authorities.as_slice() {
        [] => None,
        [r] => {
            assert_eq!(r.record_type(), RecordType::SOA);
            Some(r.name.to_string())
        }
        more => panic!("authority: {more:?}"),
    }
}

#[test]
fn default_zones_answer_nxdomain_with_their_soa_and_never_go_out() {
    let l = local("");
    for (name, zone) in [
        ("nas.local", "local."),
        ("10.1.168.192.in-addr.arpa", "168.192.in-addr.arpa."),
        ("1.0.0.10.in-addr.arpa", "10.in-addr.arpa."),
        ("9.9.20.172.in-addr.arpa", "20.172.in-addr.arpa."),
        ("1.1.64.100.in-addr.arpa", "64.100.in-addr.arpa."),
        ("7.2.0.192.in-addr.arpa", "2.0.192.in-addr.arpa."),
        ("printer.home.arpa", "home.arpa."),
        ("x.test", "test."),
        ("something.invalid", "invalid."),
        ("hidden.onion", "onion."),
    ] {
        let m = ask(&l, name, PTR).unwrap_or_else(|| panic!("{name}: not local"));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.metadata.authoritative, "{name}");
        assert!(m.answers.is_empty(), "{name}");
        assert_eq!(soa_owner(&m).as_deref(), Some(zone), "{name}");
    }
    let fe80 = reverse_of("fe80::1");
    let m = ask(&l, &fe80, PTR).expect("fe80::/10");
    assert_eq!(soa_owner(&m).as_deref(), Some("8.e.f.ip6.arpa."));
    // The internet, and private-looking names outside the zones, are not ours.
    for name in [
        "example.com",
        "1.0.0.11.in-addr.arpa",
        "1.0.32.172.in-addr.arpa",
        "localhost.example",
        "home.arpa.example",
    ] {
        assert!(ask(&l, name, A).is_none(), "{name}");
    }
    // The apex of a zone exists: SOA answers, other types NODATA.
    let m = ask(&l, "home.arpa", SOA).expect("apex");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&m).len(), 1);
    assert!(
        answers(&m)[0]
            .starts_with("home.arpa. SOA home.arpa. nobody.invalid. 1 3600 1200 604800 300"),
        "{:?}",
        answers(&m)
    );
    let m = ask(&l, "home.arpa", A).expect("apex");
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(soa_owner(&m).as_deref(), Some("home.arpa."));
    // `defaults = false` turns them off.
    let off = local("[local_zones]\ndefaults = false\n");
    assert!(off.is_empty());
    assert!(ask(&off, "nas.local", A).is_none());
}

fn reverse_of(addr: &str) -> String {
    crate::config::reverse_name(addr.parse().expect("address"))
}

#[test]
fn localhost_and_every_name_below_it_are_the_loopback() {
    let l = local("");
    for name in ["localhost", "a.b.LocalHost"] {
        let m = ask(&l, name, A).expect("local");
        assert!(m.metadata.authoritative);
        assert_eq!(answers(&m), [format!("{name}. A 127.0.0.1")]);
        let m = ask(&l, name, AAAA).expect("local");
        assert_eq!(answers(&m), [format!("{name}. AAAA ::1")]);
        let m = ask(&l, name, MX).expect("local");
        assert_eq!(
            (m.metadata.response_code, m.answers.len()),
            (ResponseCode::NoError, 0)
        );
        assert_eq!(soa_owner(&m).as_deref(), Some("localhost."));
    }
    let m = ask(&l, "localhost", ANY).expect("local");
    assert_eq!(
        answers(&m).len(),
        3,
        "A, AAAA and the apex's SOA: {:?}",
        answers(&m)
    );
}

const HOME: &str = r#"
[local_zones]
zones = ["lan"]
[[records]]
name = "nas.home.arpa"
a = ["192.168.1.10", "192.168.1.11"]
txt = "hello"
[[records]]
name = "_ldap._tcp.dc._msdcs.lan"
srv = "0 100 389 dc1.lan"
ttl = 600
[[records]]
name = "dc1.lan"
aaaa = "fd00::53"
mx = "10 mail.lan"
[[records]]
name = "www.lan"
cname = "nas.home.arpa"
[[records]]
name = "gone.lan"
cname = "nothing.home.arpa"
[[records]]
name = "out.lan"
cname = "www.example.com"
[[records]]
name = "hop.lan"
cname = "www.lan"
"#;

#[test]
fn a_name_with_records_answers_its_types_and_nodata_for_others() {
    let l = local(HOME);
    let m = ask(&l, "NAS.Home.Arpa", A).expect("local");
    assert!(m.metadata.authoritative);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        answers(&m),
        [
            "NAS.Home.Arpa. A 192.168.1.10",
            "NAS.Home.Arpa. A 192.168.1.11"
        ],
        "the owner points at the question, case and all"
    );
    assert!(
        m.answers
            .iter()
            .all(|r| r.ttl == crate::config::DEFAULT_RECORD_TTL)
    );
    assert!(m.authorities.is_empty());
    let m = ask(&l, "nas.home.arpa", AAAA).expect("local");
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(soa_owner(&m).as_deref(), Some("home.arpa."));
    assert_eq!(m.authorities[0].ttl, NEGATIVE_TTL);
    let m = ask(&l, "nas.home.arpa", TXT).expect("local");
    assert_eq!(answers(&m), ["nas.home.arpa. TXT hello"]);
    let m = ask(&l, "nas.home.arpa", ANY).expect("local");
    assert_eq!(answers(&m).len(), 3);
    // Its neighbours do not exist; a name below it does not either.
    for name in ["other.home.arpa", "x.nas.home.arpa"] {
        let m = ask(&l, name, A).expect("local");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(soa_owner(&m).as_deref(), Some("home.arpa."));
    }
    // Generated PTRs.
    let m = ask(&l, "11.1.168.192.in-addr.arpa", PTR).expect("local");
    assert_eq!(
        answers(&m),
        ["11.1.168.192.in-addr.arpa. PTR nas.home.arpa."]
    );
    let m = ask(&l, &reverse_of("fd00::53"), PTR).expect("local");
    assert_eq!(
        answers(&m),
        [format!("{}. PTR dc1.lan.", reverse_of("fd00::53"))]
    );
    // SRV, MX, and a name between a record and its zone (RFC 8020: it exists).
    let m = ask(&l, "_ldap._tcp.dc._msdcs.lan", SRV).expect("local");
    assert_eq!(
        answers(&m),
        ["_ldap._tcp.dc._msdcs.lan. SRV 0 100 389 dc1.lan."]
    );
    assert_eq!(m.answers[0].ttl, 600);
    let m = ask(&l, "dc1.lan", MX).expect("local");
    assert_eq!(answers(&m), ["dc1.lan. MX 10 mail.lan."]);
    for ent in ["_tcp.dc._msdcs.lan", "dc._msdcs.lan", "_msdcs.lan"] {
        let m = ask(&l, ent, SRV).expect("local");
        assert_eq!(
            (m.metadata.response_code, m.answers.len()),
            (ResponseCode::NoError, 0),
            "{ent}"
        );
        assert_eq!(soa_owner(&m).as_deref(), Some("lan."));
    }
    let m = ask(&l, "_udp.dc._msdcs.lan", SRV).expect("local");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn a_cname_comes_with_its_local_target_or_says_what_to_chase() {
    let l = local(HOME);
    let m = ask(&l, "www.lan", A).expect("local");
    assert_eq!(
        answers(&m),
        [
            "www.lan. CNAME nas.home.arpa.",
            "nas.home.arpa. A 192.168.1.10",
            "nas.home.arpa. A 192.168.1.11"
        ]
    );
    // A chain, and the target's NODATA with its own zone's SOA.
    let m = ask(&l, "hop.lan", TXT).expect("local");
    assert_eq!(
        answers(&m),
        [
            "hop.lan. CNAME www.lan.",
            "www.lan. CNAME nas.home.arpa.",
            "nas.home.arpa. TXT hello"
        ]
    );
    let m = ask(&l, "www.lan", MX).expect("local");
    assert_eq!(answers(&m), ["www.lan. CNAME nas.home.arpa."]);
    assert_eq!(soa_owner(&m).as_deref(), Some("home.arpa."));
    // The CNAME itself, asked for: alone.
    let m = ask(&l, "hop.lan", CNAME).expect("local");
    assert_eq!(answers(&m), ["hop.lan. CNAME www.lan."]);
    // A target that does not exist: NXDOMAIN, the RCODE of the last name (RFC 6604).
    let m = ask(&l, "gone.lan", A).expect("local");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(answers(&m), ["gone.lan. CNAME nothing.home.arpa."]);
    assert_eq!(soa_owner(&m).as_deref(), Some("home.arpa."));
    // A target that is not local: the CNAME, and the name to resolve upstream.
    let p = packet("out.lan", A, 1, false);
    let (facts, key) = query::parse(&p).expect("query");
    let a = l.lookup(&key, A, 1).expect("local");
    assert_eq!(
        a.chase().map(ToString::to_string).as_deref(),
        Some("www.example.com")
    );
    assert_eq!(a.rcode(), Rcode::NoError);
    let mut out = Vec::new();
    a.respond(&p, &facts, &mut out);
    let m = Message::from_vec(&out).expect("decodes");
    assert_eq!(answers(&m), ["out.lan. CNAME www.example.com."]);
    assert!(l.lookup(&key, CNAME, 1).expect("local").chase().is_none());
    let nas = query::parse(&packet("nas.home.arpa", A, 1, false))
        .expect("query")
        .1;
    assert!(l.lookup(&nas, A, 1).expect("local").chase().is_none());
}

#[test]
fn forwarded_zones_take_local_zones_over_and_are_carved_out_of_them() {
    let l = local(
        "[[forward]]\nzones = [\"10.in-addr.arpa\", \"corp.home.arpa\", \"corp.example\"]\nservers = [\"10.0.0.10\"]\n\
         [local_zones]\nzones = [\"test.corp.example\"]\n\
         [[records]]\nname = \"printer.corp.example\"\na = \"10.0.0.99\"\nptr = false\n\
         [[records]]\nname = \"corp.home.arpa\"\ntxt = \"apex record\"\n",
    );
    // 10.in-addr.arpa goes to the domain controllers; 192.168 stays local.
    assert!(ask(&l, "5.0.0.10.in-addr.arpa", PTR).is_none());
    assert!(ask(&l, "10.in-addr.arpa", SOA).is_none());
    assert_eq!(
        ask(&l, "5.1.168.192.in-addr.arpa", PTR).map(|m| m.metadata.response_code),
        Some(ResponseCode::NXDomain)
    );
    // A forwarded zone below a local one is carved out of it.
    assert!(ask(&l, "dc1.corp.home.arpa", A).is_none());
    assert!(ask(&l, "other.home.arpa", A).is_some());
    // A record at a forwarded apex answers; the rest of the zone is forwarded.
    let m = ask(&l, "corp.home.arpa", TXT).expect("record");
    assert_eq!(answers(&m), ["corp.home.arpa. TXT apex record"]);
    // A record inside a forwarded zone answers, with an SOA of its own for
    // other types; its neighbours go upstream.
    let m = ask(&l, "printer.corp.example", A).expect("record");
    assert_eq!(answers(&m), ["printer.corp.example. A 10.0.0.99"]);
    let m = ask(&l, "printer.corp.example", AAAA).expect("record");
    assert_eq!(soa_owner(&m).as_deref(), Some("printer.corp.example."));
    assert!(ask(&l, "scanner.corp.example", A).is_none());
    assert!(ask(&l, "x.printer.corp.example", A).is_none());
    // A local zone below a forwarded one stays local.
    assert_eq!(
        ask(&l, "x.test.corp.example", A).map(|m| m.metadata.response_code),
        Some(ResponseCode::NXDomain)
    );
}

#[test]
fn other_classes_are_refused_and_edns_is_echoed() {
    let l = local(HOME);
    let m = ask_with(&l, "nas.home.arpa", TXT, 3, true).expect("local");
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative && m.answers.is_empty() && m.authorities.is_empty());
    assert!(m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    let m = ask_with(&l, "nas.home.arpa", A, 255, true).expect("class ANY");
    assert_eq!(m.answers.len(), 2);
    assert_eq!(
        m.edns.as_ref().map(|e| e.max_payload()),
        Some(wire::EDNS_UDP_SIZE)
    );
    assert!(
        ask_with(&l, "example.com", A, 3, true).is_none(),
        "not ours in any class"
    );
}

#[test]
fn check_is_told_what_answered() {
    let l = local(HOME);
    let about = |name: &str| {
        let key = NameKey::from_text(name, true).expect("name");
        l.lookup(&key, A, 1).map(|a| a.about().to_string())
    };
    let nas = about("nas.home.arpa").expect("local");
    assert!(
        nas.starts_with("local record nas.home.arpa (A, TXT; /nonexistent/local.toml:6:6, records[1].a[1]), local zone home.arpa (RFC 8375, served by default)"),
        "{nas}"
    );
    let ptr = about("10.1.168.192.in-addr.arpa").expect("local");
    assert!(
        ptr.contains("a PTR made for the address at /nonexistent/local.toml:6:6"),
        "{ptr}"
    );
    assert_eq!(
        about("x.home.arpa").as_deref(),
        Some("local zone home.arpa (RFC 8375, served by default): no such name")
    );
    assert_eq!(
        about("x.lan").as_deref(),
        Some("local zone lan (local_zones.zones at /nonexistent/local.toml:3:10): no such name")
    );
    assert!(
        about("dc._msdcs.lan")
            .expect("ent")
            .contains("has no records, names below it have")
    );
    assert_eq!(about("example.com"), None);
}

#[test]
fn an_answer_too_large_for_a_message_is_refused_with_its_place() {
    let many: Vec<String> = (0..300)
        .map(|i| format!("\"{i:03}{}\"", "t".repeat(247)))
        .collect();
    let c = config(&format!(
        "[[records]]\nname = \"big.lan\"\ntxt = [{}]\n",
        many.join(", ")
    ));
    let err = Local::build(&c.local, &c.forward).expect_err("too large");
    assert!(
        err.to_string().starts_with("/nonexistent/local.toml:3:8: records[1].txt[1]: the records of big.lan make an answer of"),
        "{err}"
    );
}

// --- The property test: the table against a model written from the rules.

const LABELS: &[&str] = &["a", "b", "lan", "corp", "localhost"];

/// What a test record is.
#[derive(Debug, Clone)]
enum Data {
    A(u8),
    Aaaa(u8),
    Txt(u8),
    Mx(Vec<&'static str>),
    Cname(Vec<&'static str>),
}

fn name() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(LABELS), 1..4)
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        any::<u8>().prop_map(Data::A),
        any::<u8>().prop_map(Data::Aaaa),
        any::<u8>().prop_map(Data::Txt),
        name().prop_map(Data::Mx),
        name().prop_map(Data::Cname),
    ]
}

fn dotted(labels: &[&str]) -> String {
    labels.join(".")
}

/// (RCODE, answer lines sorted, SOA owner in authority, name to chase).
type Expected = (ResponseCode, Vec<String>, Option<String>, Option<String>);

/// The rules, in the plainest words: names as text, suffixes by `ends_with`.
struct Model {
    zones: Vec<String>,
    forwards: Vec<String>,
    /// (owner, type, rdata as hickory prints it, ttl)
    records: Vec<(String, u16, String)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Said {
    NotLocal,
    Nx(String),
    /// `loopback`: `localhost` itself, which has 127.0.0.1 and ::1 too.
    Exists {
        soa: String,
        apex: bool,
        loopback: bool,
    },
    Loopback,
}

fn at_or_below(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

fn labels(name: &str) -> usize {
    name.split('.').count()
}

impl Model {
    /// The most specific zone or forwarded zone at or above `name`, and
    /// whether it is a local zone.
    fn authority(&self, name: &str) -> Option<(String, bool)> {
        self.zones
            .iter()
            .map(|z| (z, true))
            .chain(self.forwards.iter().map(|f| (f, false)))
            .filter(|(z, _)| at_or_below(name, z))
            .max_by_key(|(z, _)| labels(z))
            .map(|(z, local)| (z.clone(), local))
    }

    fn zone_of_owner(&self, owner: &str) -> Option<String> {
        match self.authority(owner) {
            Some((z, true)) => Some(z),
            _ => None,
        }
    }

    fn owns(&self, name: &str) -> bool {
        self.records.iter().any(|(o, _, _)| o == name)
    }

    fn said(&self, name: &str) -> Said {
        if self.owns(name) {
            let zone = self.zone_of_owner(name);
            let apex = zone.as_deref() == Some(name);
            return Said::Exists {
                apex,
                loopback: apex && name == "localhost",
                soa: zone.unwrap_or_else(|| name.to_string()),
            };
        }
        match self.authority(name) {
            None | Some((_, false)) => Said::NotLocal,
            Some((z, true)) => {
                let ent = self.records.iter().any(|(o, _, _)| {
                    o != name
                        && at_or_below(o, name)
                        && self.zone_of_owner(o).as_deref() == Some(&z)
                });
                if name == z || ent {
                    Said::Exists {
                        apex: name == z,
                        loopback: name == z && z == "localhost",
                        soa: z,
                    }
                } else if z == "localhost" {
                    Said::Loopback
                } else {
                    Said::Nx(z)
                }
            }
        }
    }

    /// (rcode, answer lines sorted, SOA owner in authority, name to chase)
    fn answer(&self, qname: &str, qtype: u16) -> Option<Expected> {
        let mut name = qname.to_string();
        let mut lines = Vec::new();
        for hop in 0.. {
            assert!(hop < 20, "a loop the config let through");
            let said = self.said(&name);
            let mut soa = None;
            match said {
                Said::NotLocal if hop == 0 => return None,
                Said::NotLocal => {
                    lines.sort();
                    return Some((ResponseCode::NoError, lines, None, Some(name)));
                }
                Said::Nx(z) => {
                    lines.sort();
                    return Some((ResponseCode::NXDomain, lines, Some(format!("{z}.")), None));
                }
                Said::Loopback => {
                    let before = lines.len();
                    loopback(&mut lines, &name, qtype);
                    if lines.len() == before {
                        soa = Some("localhost.".to_string());
                    }
                }
                Said::Exists {
                    soa: zone,
                    apex,
                    loopback: lo,
                } => {
                    let cname = self
                        .records
                        .iter()
                        .find(|(o, t, _)| *o == name && *t == CNAME)
                        .map(|(_, _, target)| target.trim_end_matches('.').to_string());
                    if let Some(target) = cname.filter(|_| qtype != CNAME) {
                        lines.push(format!("{name}. CNAME {target}."));
                        name = target;
                        continue;
                    }
                    let before = lines.len();
                    for (o, t, rdata) in &self.records {
                        if *o == name && (*t == qtype || qtype == ANY) {
                            lines.push(format!("{o}. {} {rdata}", RecordType::from(*t)));
                        }
                    }
                    if lo {
                        loopback(&mut lines, &name, qtype);
                    }
                    if apex && matches!(qtype, SOA | ANY) {
                        lines.push(format!(
                            "{name}. SOA {name}. nobody.invalid. 1 3600 1200 604800 300"
                        ));
                    }
                    if lines.len() == before {
                        soa = Some(format!("{zone}."));
                    }
                }
            }
            lines.sort();
            return Some((ResponseCode::NoError, lines, soa, None));
        }
        None
    }
}

/// `localhost`'s answers, as RFC 6761 6.3 has them.
fn loopback(lines: &mut Vec<String>, name: &str, qtype: u16) {
    if matches!(qtype, A | ANY) {
        lines.push(format!("{name}. A 127.0.0.1"));
    }
    if matches!(qtype, AAAA | ANY) {
        lines.push(format!("{name}. AAAA ::1"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every answer decodes, is authoritative, and says what the model
    /// says: the RCODE, the answer records, the SOA, the name to chase.
    #[test]
    fn lookup_agrees_with_a_naive_model(
        zones in prop::collection::vec(name(), 0..3),
        forwards in prop::collection::vec(name(), 0..3),
        records in prop::collection::vec((name(), data()), 0..7),
        extra in prop::collection::vec(name(), 0..6),
    ) {
        let zones: BTreeSet<String> = zones.iter().map(|z| dotted(z)).collect();
        let forwards: BTreeSet<String> = forwards.iter().map(|z| dotted(z)).filter(|f| !zones.contains(f)).collect();
        // A name has a CNAME or other data, as the config requires.
        let mut text = String::from("[local_zones]\ndefaults = false\n");
        let zone_list: Vec<String> = zones.iter().map(|z| format!("{z:?}")).collect();
        text.push_str(&format!("zones = [{}]\n", zone_list.join(", ")));
        for f in &forwards {
            text.push_str(&format!("[[forward]]\nzones = [{f:?}]\nservers = [\"10.0.0.1\"]\n"));
        }
        let mut cname_owners = BTreeSet::new();
        let mut data_owners = BTreeSet::new();
        for (owner, d) in &records {
            let owner = dotted(owner);
            let (key, value) = match d {
                Data::A(n) => ("a", format!("\"192.0.2.{n}\"")),
                Data::Aaaa(n) => ("aaaa", format!("\"2001:db8::{n:x}\"")),
                Data::Txt(n) => ("txt", format!("\"t{n}\"")),
                Data::Mx(target) => ("mx", format!("\"{} {}\"", 10, dotted(target))),
                Data::Cname(target) => ("cname", format!("{:?}", dotted(target))),
            };
            if key == "cname" {
                if data_owners.contains(&owner) || !cname_owners.insert(owner.clone()) {
                    continue;
                }
            } else if cname_owners.contains(&owner) {
                continue;
            } else {
                data_owners.insert(owner.clone());
            }
            text.push_str(&format!("[[records]]\nname = {owner:?}\n{key} = {value}\nptr = false\n"));
        }
        // A CNAME at a zone's apex, or a loop, is refused: nothing to test then.
        let Ok(c) = Config::parse(Path::new("p.toml"), &text) else {
            return Ok(());
        };
        let l = Local::build(&c.local, &c.forward).expect("build");
        let model = Model {
            zones: c.local.zones_in_force(&c.forward).into_iter().map(|z| z.name).collect(),
            forwards: forwards.iter().cloned().collect(),
            records: c
                .local
                .records
                .iter()
                .map(|r| {
                    let rdata = match &r.data {
                        crate::config::RecordData::A(a) => a.to_string(),
                        crate::config::RecordData::Aaaa(a) => a.to_string(),
                        crate::config::RecordData::Txt(t) => String::from_utf8_lossy(&t[0]).into_owned(),
                        crate::config::RecordData::Mx { preference, exchange } => format!("{preference} {exchange}."),
                        crate::config::RecordData::Cname(t) => format!("{t}."),
                        other => format!("{other:?}"),
                    };
                    (r.name.clone(), r.data.rtype(), rdata)
                })
                .collect(),
        };
        // Every name the config mentions, a name below each, and some others.
        let mut names: BTreeSet<String> = BTreeSet::new();
        for n in zones.iter().chain(&forwards).chain(model.records.iter().map(|(o, _, _)| o)) {
            names.insert(n.clone());
            names.insert(format!("a.{n}"));
        }
        names.extend(extra.iter().map(|e| dotted(e)));
        for name in &names {
            for qtype in [A, AAAA, TXT, MX, CNAME, SOA, ANY, NS] {
                let want = model.answer(name, qtype);
                let got = ask(&l, name, qtype);
                let (Some(want), Some(got)) = (&want, &got) else {
                    prop_assert!(want.is_none() && got.is_none(), "{} {}: model {:?}, table {:?}", name, qtype, want, got.map(|m| answers(&m)));
                    continue;
                };
                prop_assert!(got.metadata.authoritative);
                let mut lines = answers(got);
                lines.sort();
                let key = NameKey::from_text(name, true).expect("name");
                let chase = l.lookup(&key, qtype, 1).and_then(|a| a.chase().map(ToString::to_string));
                prop_assert_eq!(
                    (got.metadata.response_code, lines, soa_owner(got), chase),
                    want.clone(),
                    "{} {}\n{}", name, qtype, text
                );
            }
        }
    }
}
