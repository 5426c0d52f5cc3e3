//! Tests of `[local_zones]`, `[[records]]` and hosts files as read from the file.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::config::{Config, Error};

fn parse_in(dir: &Path, text: &str) -> Result<Config, Error> {
    Config::parse(&dir.join("local.toml"), text)
}

fn problems_in(dir: &Path, text: &str) -> Vec<String> {
    match parse_in(dir, text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(Error::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("{e}"),
    }
}

/// The records of `name`, as (type, data) in the order written.
fn at<'c>(c: &'c Config, name: &str) -> Vec<&'c RecordData> {
    c.local
        .records
        .iter()
        .filter(|r| r.name == name)
        .map(|r| &r.data)
        .collect()
}

#[test]
fn records_and_hosts_files_become_records_with_ptrs() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hosts"),
        "# the lab\n127.0.0.1 localhost\n192.168.1.10 nas files.home.arpa  # aliases share it\n\nfd00::20%eth0 printer\n",
    )
    .expect("hosts");
    let long = "k".repeat(300);
    let c = parse_in(
        dir.path(),
        &format!(
            "[local_zones]\nhosts_files = [\"hosts\"]\nzones = [\"LAN.\"]\n\
             [[records]]\nname = \"router.home.arpa\"\nttl = 60\na = [\"192.168.1.1\"]\naaaa = \"fd00::1\"\ntxt = [\"hello\", \"{long}\"]\n\
             [[records]]\nname = \"mail.lan\"\nmx = \"10 mx.lan\"\nsrv = [\"0 100 389 dc1.lan\", \"0 0 0 .\"]\nptr = false\na = \"192.168.1.2\"\n\
             [[records]]\nname = \"www.lan\"\ncname = \"router.home.arpa\"\n\
             [[records]]\nname = \"5.1.168.192.in-addr.arpa\"\nptr = \"five.lan\"\n"
        ),
    )
    .expect("valid");
    let l = &c.local;
    assert!(l.defaults && l.ptr);
    assert_eq!(l.domain, "home.arpa");
    assert_eq!(l.zones.len(), 1);
    assert_eq!(l.zones[0].name, "lan");
    assert_eq!(l.hosts_files, [dir.path().join("hosts")]);
    // ttl applies to the table's records.
    assert_eq!(
        at(&c, "router.home.arpa"),
        [
            &RecordData::A("192.168.1.1".parse().expect("v4")),
            &RecordData::Aaaa("fd00::1".parse().expect("v6")),
            &RecordData::Txt(vec![b"hello".to_vec()]),
            &RecordData::Txt(vec![vec![b'k'; 255], vec![b'k'; 45]]),
        ]
    );
    assert!(
        l.records
            .iter()
            .filter(|r| r.name == "router.home.arpa")
            .all(|r| r.ttl == 60)
    );
    let router_ptr = &at(&c, "1.1.168.192.in-addr.arpa");
    assert_eq!(router_ptr, &[&RecordData::Ptr("router.home.arpa".into())]);
    let v6 = reverse_name("fd00::1".parse().expect("v6"));
    assert!(
        v6.starts_with("1.0.0.0.") && v6.ends_with(".d.f.ip6.arpa"),
        "{v6}"
    );
    assert_eq!(at(&c, &v6), [&RecordData::Ptr("router.home.arpa".into())]);
    // ptr = false: no PTR for this table's address.
    assert!(at(&c, "2.1.168.192.in-addr.arpa").is_empty());
    assert_eq!(
        at(&c, "mail.lan"),
        [
            &RecordData::A("192.168.1.2".parse().expect("v4")),
            &RecordData::Mx {
                preference: 10,
                exchange: "mx.lan".into()
            },
            &RecordData::Srv {
                priority: 0,
                weight: 100,
                port: 389,
                target: "dc1.lan".into()
            },
            &RecordData::Srv {
                priority: 0,
                weight: 0,
                port: 0,
                target: String::new()
            },
        ]
    );
    assert_eq!(
        at(&c, "www.lan"),
        [&RecordData::Cname("router.home.arpa".into())]
    );
    assert_eq!(
        at(&c, "5.1.168.192.in-addr.arpa"),
        [&RecordData::Ptr("five.lan".into())]
    );
    // The hosts file: localhost skipped, aliases share the address,
    // the first name gets the PTR, an IPv6 zone index is dropped.
    assert!(at(&c, "localhost.home.arpa").is_empty());
    assert!(at(&c, "1.0.0.127.in-addr.arpa").is_empty());
    let nas = RecordData::A("192.168.1.10".parse().expect("v4"));
    assert_eq!(at(&c, "nas.home.arpa"), [&nas]);
    assert_eq!(at(&c, "files.home.arpa"), [&nas]);
    assert_eq!(
        at(&c, "10.1.168.192.in-addr.arpa"),
        [&RecordData::Ptr("nas.home.arpa".into())]
    );
    let printer = reverse_name("fd00::20".parse().expect("v6"));
    assert_eq!(
        at(&c, &printer),
        [&RecordData::Ptr("printer.home.arpa".into())]
    );
    let nas_record = l
        .records
        .iter()
        .find(|r| r.name == "files.home.arpa")
        .expect("alias");
    assert_eq!(nas_record.origin.key, "local_zones.hosts_files[1]");
    assert_eq!(
        (
            nas_record.origin.location.line,
            nas_record.origin.location.col
        ),
        (3, 18)
    );
    assert_eq!(nas_record.ttl, DEFAULT_RECORD_TTL);
}

#[test]
fn hosts_ptrs_follow_local_zones_ptr_and_domain() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("h"), "10.0.0.5 box\n").expect("hosts");
    let c = parse_in(
        dir.path(),
        "[local_zones]\nhosts_files = [\"h\"]\nptr = false\ndomain = \"Lab.Example\"\ndefaults = false\n",
    )
    .expect("valid");
    assert!(!c.local.defaults);
    assert_eq!(
        c.local
            .records
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["box.lab.example"]
    );
}

#[test]
fn bad_values_name_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hosts"),
        "192.168.1.300 nas\n10.0.0.1\n10.0.0.2 good bad_name! \n",
    )
    .expect("hosts");
    let p = problems_in(
        dir.path(),
        "[local_zones]\nhosts_files = [\"hosts\", \"missing\"]\nzones = [\".\"]\ndefaults = \"yes\"\n\
         [[records]]\nname = \"nas.home.arpa\"\na = [\"192.168.1.10\", \"fd00::1\"]\naaaa = \"nas\"\nmx = \"mail.lan\"\nttl = -5\n\
         [[records]]\na = \"10.0.0.1\"\n[[records]]\nname = \"empty.lan\"\nptr = false\n",
    );
    let hosts = dir.path().join("hosts").display().to_string();
    let file = dir.path().join("local.toml").display().to_string();
    let missing = dir.path().join("missing").display().to_string();
    let want = [
        format!(
            "{file}:4:12: local_zones.defaults: expected true or false, got the string \"yes\""
        ),
        format!(
            "{file}:3:10: local_zones.zones[1]: \".\" is every name: nothing would be forwarded; a local zone is a domain such as \"lan\""
        ),
        format!(
            "{file}:10:7: records[1].ttl: expected a whole number of seconds (0 to 2147483647), got the number -5"
        ),
        format!(
            "{file}:7:22: records[1].a[2]: expected an IPv4 address such as \"192.168.1.10\", got the string \"fd00::1\""
        ),
        format!(
            "{file}:8:8: records[1].aaaa: expected an IPv6 address such as \"fd00::10\", got the string \"nas\""
        ),
        format!(
            "{file}:9:6: records[1].mx: expected a preference and a mail server, such as \"10 mail.home.arpa\", got the string \"mail.lan\""
        ),
        format!(
            "{file}:11:1: records[2]: missing name: every [[records]] table needs the name its records are for"
        ),
        format!(
            "{file}:13:1: records[3]: no records: give one or more of a, aaaa, cname, txt, mx, srv or ptr"
        ),
        format!(
            "{hosts}:1:1: local_zones.hosts_files[1]: \"192.168.1.300\" is not an IP address (a hosts line is \"address name [alias...]\")"
        ),
        format!("{hosts}:2:1: local_zones.hosts_files[1]: 10.0.0.1 has no name after it"),
        format!(
            "{hosts}:3:15: local_zones.hosts_files[1]: \"bad_name!\" is not a domain name (invalid character '!' in name)"
        ),
    ];
    for w in &want {
        assert!(p.contains(w), "missing {w}\nin {p:#?}");
    }
    assert!(
        p.iter().any(|m| m.starts_with(&format!(
            "{file}:2:25: local_zones.hosts_files[2]: {missing}: "
        ))),
        "{p:#?}"
    );
    assert_eq!(p.len(), want.len() + 1, "{p:#?}");
}

#[test]
fn a_cname_stands_alone_and_not_at_an_apex_nor_in_a_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hosts"), "192.168.1.20 www.lan\n").expect("hosts");
    let p = problems_in(
        dir.path(),
        "[local_zones]\nzones = [\"lan\"]\nhosts_files = [\"hosts\"]\n\
         [[records]]\nname = \"www.lan\"\ncname = \"nas.lan\"\n\
         [[records]]\nname = \"home.arpa\"\ncname = \"lan\"\n\
         [[records]]\nname = \"lan\"\ncname = \"x.lan\"\n\
         [[records]]\nname = \"a.lan\"\ncname = \"b.lan\"\n\
         [[records]]\nname = \"b.lan\"\ncname = \"a.lan\"\n\
         [[records]]\nname = \"c.lan\"\ncname = \"d.lan\"\n[[records]]\nname = \"c.lan\"\ncname = \"e.lan\"\n",
    );
    let hosts = dir.path().join("hosts").display().to_string();
    let file = dir.path().join("local.toml").display().to_string();
    assert_eq!(
        p,
        [
            format!(
                "{file}:9:9: records[2].cname: home.arpa is a zone served by default (RFC 8375): its apex has an SOA, and a CNAME stands alone at its name"
            ),
            format!(
                "{file}:12:9: records[3].cname: lan is a local zone (at {file}:2:10): its apex has an SOA, and a CNAME stands alone at its name"
            ),
            format!("{file}:15:9: records[4].cname: a CNAME loop: a.lan -> b.lan -> a.lan"),
            format!(
                "{file}:24:9: records[7].cname: c.lan has a CNAME and a second CNAME (at {file}:21:9, records[6].cname): a CNAME stands alone at its name (RFC 1034 3.6.2)"
            ),
            format!(
                "{hosts}:1:14: local_zones.hosts_files[1]: www.lan has a CNAME and other records (A) (at {file}:6:9, records[1].cname): a CNAME stands alone at its name (RFC 1034 3.6.2)"
            ),
        ]
    );
}

#[test]
fn one_address_gets_one_ptr_across_records_and_hosts_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hosts"),
        "192.168.1.10 nas.home.arpa\n192.168.1.11 one\n192.168.1.11 two\n192.168.1.12 same\n192.168.1.12 same\n",
    )
    .expect("hosts");
    let p = problems_in(
        dir.path(),
        "[local_zones]\nhosts_files = [\"hosts\"]\n\
         [[records]]\nname = \"files.home.arpa\"\na = \"192.168.1.10\"\n\
         [[records]]\nname = \"13.1.168.192.in-addr.arpa\"\nptr = [\"x.lan\", \"y.lan\"]\n\
         [[records]]\nname = \"ok.home.arpa\"\na = \"192.168.1.13\"\n",
    );
    let hosts = dir.path().join("hosts").display().to_string();
    let file = dir.path().join("local.toml").display().to_string();
    assert_eq!(
        p,
        [
            format!(
                "{file}:11:5: records[3].a: 192.168.1.13 would have a PTR to ok.home.arpa and one to x.lan (at {file}:8:8, records[2].ptr[1]): one address, one name; set ptr = false on one (a hosts line: give both names on one line, the first gets the PTR)"
            ),
            format!(
                "{hosts}:1:14: local_zones.hosts_files[1]: 192.168.1.10 would have a PTR to nas.home.arpa and one to files.home.arpa (at {file}:5:5, records[1].a): one address, one name; set ptr = false on one (a hosts line: give both names on one line, the first gets the PTR)"
            ),
            format!(
                "{hosts}:3:14: local_zones.hosts_files[1]: 192.168.1.11 would have a PTR to two.home.arpa and one to one.home.arpa (at {hosts}:2:14, local_zones.hosts_files[1]): one address, one name; set ptr = false on one (a hosts line: give both names on one line, the first gets the PTR)"
            ),
        ]
    );
    // The same with ptr = false where the second name is written: valid.
    let c = parse_in(
        dir.path(),
        "[local_zones]\nhosts_files = [\"hosts\"]\nptr = false\n[[records]]\nname = \"files.home.arpa\"\na = \"192.168.1.10\"\n",
    )
    .expect("valid");
    assert_eq!(
        at(&c, "10.1.168.192.in-addr.arpa"),
        [&RecordData::Ptr("files.home.arpa".into())]
    );
}

#[test]
fn a_forwarded_zone_takes_its_default_over_and_cannot_also_be_local() {
    let c = Config::parse(
        Path::new("z.toml"),
        "[[forward]]\nzones = [\"10.in-addr.arpa\", \"home.arpa\"]\nservers = [\"10.0.0.10\"]\n[local_zones]\nzones = [\"lan\", \"local\"]\n",
    )
    .expect("valid");
    let zones = c.local.zones_in_force(&c.forward);
    let names: Vec<&str> = zones.iter().map(|z| z.name.as_str()).collect();
    assert!(!names.contains(&"10.in-addr.arpa") && !names.contains(&"home.arpa"));
    assert!(names.contains(&"168.192.in-addr.arpa") && names.contains(&"onion"));
    // `local` is both a default and the operator's: once, as theirs.
    assert_eq!(names.iter().filter(|n| **n == "local").count(), 1);
    let local = zones.iter().find(|z| z.name == "local").expect("local");
    assert!(matches!(local.origin, ZoneOrigin::Configured(_)));
    assert_eq!(default_zones().len(), names.len() + 2 - 1);
    let err = Config::parse(
        Path::new("z.toml"),
        "[[forward]]\nzones = [\"corp.example\"]\nservers = [\"10.0.0.10\"]\n[local_zones]\nzones = [\"corp.example\"]\n",
    )
    .expect_err("both");
    assert_eq!(
        err.to_string(),
        "z.toml:5:10: local_zones.zones[1]: corp.example is forwarded by forward[1] (at z.toml:2:10): a zone is either answered here or forwarded"
    );
}

#[test]
fn a_forwarded_tree_holding_default_zones_is_warned_about() {
    let c = Config::parse(
        Path::new("w.toml"),
        "[[forward]]\nzones = [\"in-addr.arpa\", \"10.in-addr.arpa\", \"corp.example\", \"onion.example\"]\nservers = [\"10.0.0.10\"]\n",
    )
    .expect("valid");
    let shown: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].starts_with("w.toml:2:10: forward[1].zones[1]: in-addr.arpa holds 88 zones served locally by default (0.in-addr.arpa, ...): they stay local"),
        "{}",
        shown[0]
    );
    let c = Config::parse(
        Path::new("w.toml"),
        "[local_zones]\ndefaults = false\n[[forward]]\nzones = [\"arpa\"]\nservers = [\"10.0.0.10\"]\n",
    )
    .expect("valid");
    assert!(c.warnings.is_empty());
}

#[test]
fn the_default_zones_are_names_and_each_is_there_once() {
    let zones = default_zones();
    let unique: HashSet<&str> = zones.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(unique.len(), zones.len());
    // 6 + 16 (172.16/12) + 64 (100.64/10) + 3 TEST-NETs + 8 IPv6 + 6 names.
    assert_eq!(zones.len(), 6 + 16 + 64 + 3 + 8 + 6);
    for (name, _) in &zones {
        assert_eq!(zone_name(name, "").as_deref(), Ok(name.as_str()));
    }
    for name in [
        "10.in-addr.arpa",
        "31.172.in-addr.arpa",
        "127.100.in-addr.arpa",
        "113.0.203.in-addr.arpa",
        "b.e.f.ip6.arpa",
        "home.arpa",
        "onion",
    ] {
        assert!(unique.contains(name), "{name}");
    }
    assert!(!unique.contains("32.172.in-addr.arpa") && !unique.contains("63.100.in-addr.arpa"));
}

/// The shipped config carries the new sections as comments: each
/// `# key = value` line of them, uncommented, is a key its section
/// takes, with a value it accepts.
#[test]
fn the_commented_sections_of_the_shipped_config_parse() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/embargo.toml"))
            .expect("shipped config");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hosts"), "192.168.1.30 tv\n").expect("hosts");
    let mut text = String::new();
    let mut cname = String::new();
    for header in ["# [[forward]]", "# [local_zones]", "# [[records]]"] {
        let start = shipped.find(&format!("\n{header}\n")).expect(header);
        text.push_str(&header[2..]);
        text.push('\n');
        let mut keys = 0;
        for line in shipped[start + header.len() + 2..].lines() {
            if line.is_empty() {
                break;
            }
            let Some(rest) = line.strip_prefix("# ") else {
                continue;
            };
            let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
            if !is_key {
                continue;
            }
            keys += 1;
            // A CNAME stands alone: it goes in a table of its own.
            if rest.starts_with("cname = ") {
                cname = format!("[[records]]\nname = \"alias.home.arpa\"\n{rest}\n");
            } else {
                text.push_str(rest);
                text.push('\n');
            }
        }
        assert!(keys >= 5, "{header}: {keys} keys");
    }
    text.push_str(&cname);
    let c = parse_in(dir.path(), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(c.forward.len(), 1);
    assert!(c.local.records.iter().any(|r| r.name == "tv.home.arpa"));
    assert!(c.local.records.iter().any(|r| r.name == "alias.home.arpa"));
    assert!(
        c.local
            .records
            .iter()
            .any(|r| matches!(r.data, RecordData::Srv { .. }))
    );
}

#[test]
fn unknown_keys_in_the_new_sections_are_named_with_their_line() {
    for (text, key) in [
        ("[local_zones]\ndefaults = true\nzone = [\"lan\"]\n", "zone"),
        ("[[records]]\nname = \"a.lan\"\nAAAA = \"::1\"\n", "AAAA"),
    ] {
        let err = Config::parse(Path::new("u.toml"), text).expect_err("unknown key");
        let shown = err.to_string();
        assert!(shown.starts_with("u.toml:3:1: unknown field"), "{shown}");
        assert!(shown.contains(key), "{shown}");
    }
}

proptest! {
    #[test]
    fn reverse_names_round_trip(v4 in any::<u32>(), v6 in any::<u128>()) {
        for addr in [IpAddr::V4(Ipv4Addr::from(v4)), IpAddr::V6(Ipv6Addr::from(v6))] {
            let name = reverse_name(addr);
            prop_assert_eq!(address_of(&name), Some(addr));
            prop_assert!(NameKey::from_text(&name, false).is_ok());
        }
    }
}
