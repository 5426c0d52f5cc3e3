//! The RPZ format's tests, through the line parser: triggers and actions,
//! owners and origins, directives, parentheses and the tokenizer's corners.

#![allow(clippy::unwrap_used)]

use super::super::test_support::*;
use super::super::*;
use super::*;

#[test]
fn rpz_multi_line_soa_and_first_trigger() {
    let results = parse_all(Format::Rpz, &SOA_ZONE);
    for (i, result) in results.iter().enumerate().take(9) {
        assert_eq!(*result, skip(), "line {i}: {:?}", SOA_ZONE[i]);
    }
    assert_eq!(
        results[9],
        (
            Outcome::Entries,
            vec![entry("bad.example", false, EntryKind::Nxdomain)]
        )
    );
}

/// Parses `lines` after the SOA zone header, returning only their results.
fn after_soa<'a>(lines: &[&'a str]) -> Vec<(Outcome, Vec<Entry<'a>>)> {
    let all: Vec<&str> = SOA_ZONE
        .iter()
        .copied()
        .chain(lines.iter().copied())
        .collect();
    parse_all(Format::Rpz, &all).split_off(SOA_ZONE.len())
}

fn rpz_one(line: &str) -> (Outcome, Vec<Entry<'_>>) {
    after_soa(&[line]).pop().unwrap()
}

fn rpz_entry(name: &str, wildcard: bool, kind: EntryKind) -> (Outcome, Vec<Entry<'_>>) {
    (Outcome::Entries, vec![entry(name, wildcard, kind)])
}

#[test]
fn rpz_actions() {
    use EntryKind::*;
    assert_eq!(
        rpz_one("a.com CNAME ."),
        rpz_entry("a.com", false, Nxdomain)
    );
    assert_eq!(rpz_one("a.com CNAME *."), rpz_entry("a.com", false, Nodata));
    assert_eq!(
        rpz_one("a.com CNAME rpz-passthru."),
        rpz_entry("a.com", false, Passthru)
    );
    assert_eq!(
        rpz_one("a.com CNAME a.com."),
        rpz_entry("a.com", false, Passthru)
    );
    assert_eq!(
        rpz_one("a.com CNAME rpz-drop."),
        unsupported("RPZ rpz-drop action")
    );
    assert_eq!(
        rpz_one("a.com CNAME rpz-tcp-only."),
        unsupported("RPZ rpz-tcp-only action")
    );
    assert_eq!(
        rpz_one("a.com CNAME walled.garden."),
        unsupported("RPZ CNAME redirect")
    );
    assert_eq!(
        rpz_one("a.com CNAME rpz-passthru"),
        unsupported("RPZ CNAME redirect")
    );
    assert_eq!(
        rpz_one("*.a.com CNAME *.a.com."),
        unsupported("RPZ CNAME redirect")
    );
}

#[test]
fn rpz_case_insensitive_keywords() {
    use EntryKind::*;
    assert_eq!(
        rpz_one("a.com cname ."),
        rpz_entry("a.com", false, Nxdomain)
    );
    assert_eq!(
        rpz_one("a.com 300 in CName RPZ-PASSTHRU."),
        rpz_entry("a.com", false, Passthru)
    );
    assert_eq!(
        rpz_one("A.Com.RPZ.Test. CNAME ."),
        rpz_entry("A.Com", false, Nxdomain)
    );
    assert_eq!(
        rpz_one("a.com CNAME Rpz-Drop."),
        unsupported("RPZ rpz-drop action")
    );
    assert!(is_invalid(&rpz_one("a.com.RPZ-IP CNAME .")));
    let r = parse_all(
        Format::Rpz,
        &[
            "$origin RPZ.test.",
            "@ soa ns. h. 1 2 3 4 5",
            "x.rpz.TEST. cname *.",
        ],
    );
    assert_eq!(r[0], skip());
    assert_eq!(r[1], skip());
    assert_eq!(r[2], rpz_entry("x", false, Nodata));
}

#[test]
fn rpz_ttl_and_class_in_any_order() {
    use EntryKind::*;
    for line in [
        "a.com 300 IN CNAME .",
        "a.com IN 300 CNAME .",
        "a.com 1h30m CNAME .",
        "a.com IN CNAME .",
        "a.com 2W CNAME .",
        "a.com\t300\tIN\tCNAME\t.\r",
        "a.com CNAME . ; comment",
        "a.com CNAME .;comment",
    ] {
        assert_eq!(rpz_one(line), rpz_entry("a.com", false, Nxdomain), "{line}");
    }
}

#[test]
fn rpz_relative_absolute_and_wildcard_owners() {
    use EntryKind::*;
    assert_eq!(
        rpz_one("a.com.rpz.test. CNAME ."),
        rpz_entry("a.com", false, Nxdomain)
    );
    assert_eq!(
        rpz_one("*.a.com.rpz.test. CNAME ."),
        rpz_entry("a.com", true, Nxdomain)
    );
    assert_eq!(
        rpz_one("*.a.com CNAME *."),
        rpz_entry("a.com", true, Nodata)
    );
    // Absolute but outside the policy zone the SOA set: invalid lines.
    for line in [
        "a.com. CNAME .",
        "*.a.com. CNAME .",
        "a.com.xrpz.test. CNAME .",
    ] {
        assert!(is_invalid(&rpz_one(line)), "{line}: {:?}", rpz_one(line));
    }
    // The apex itself carries no trigger.
    assert_eq!(rpz_one("rpz.test. CNAME ."), skip());
    assert_eq!(rpz_one("@ CNAME ."), skip());
    assert_eq!(rpz_one("@ TXT \"zone\""), skip());
    assert_eq!(rpz_one("* CNAME ."), unsupported(RPZ_WHOLE_ZONE));
    assert_eq!(rpz_one("*.rpz.test. CNAME ."), unsupported(RPZ_WHOLE_ZONE));
}

#[test]
fn rpz_special_triggers() {
    assert_eq!(
        rpz_one("ns.evil.com.rpz-nsdname CNAME ."),
        unsupported("RPZ rpz-nsdname trigger")
    );
    assert_eq!(
        rpz_one("*.evil.com.rpz-nsdname CNAME ."),
        unsupported("RPZ rpz-nsdname trigger")
    );
    assert_eq!(
        rpz_one("24.0.0.168.192.rpz-client-ip CNAME ."),
        unsupported("RPZ rpz-client-ip trigger")
    );
    assert_eq!(
        rpz_one("32.1.0.0.10.rpz-nsip CNAME rpz-passthru."),
        unsupported("RPZ rpz-nsip trigger")
    );
    assert_eq!(
        rpz_one("32.1.2.0.192.rpz-ip A 1.2.3.4"),
        unsupported("RPZ local data")
    );
    // Only the last label counts.
    assert_eq!(
        rpz_one("rpz-ip.a.com CNAME ."),
        rpz_entry("rpz-ip.a.com", false, EntryKind::Nxdomain)
    );
}

type NetLine = (Outcome, usize, Vec<(String, EntryKind)>);

/// `lines` after the SOA zone header: each one's outcome, names and networks.
fn nets_after_soa(lines: &[&str]) -> Vec<NetLine> {
    let mut parser = Format::Rpz.parser();
    for line in SOA_ZONE {
        parser.parse_line(line, &mut |_| {});
    }
    lines
        .iter()
        .map(|line| {
            let (mut names, mut nets) = (0, Vec::new());
            let outcome = parser.parse_line_with_nets(line, &mut |_| names += 1, &mut |n| {
                nets.push((n.net.to_string(), n.kind))
            });
            (outcome, names, nets)
        })
        .collect()
}

/// Issue 20: rpz-ip triggers name networks, with the record's action.
#[test]
fn r20_rpz_ip_triggers_are_networks() {
    use EntryKind::*;
    let r = nets_after_soa(&[
        "32.1.2.0.192.rpz-ip CNAME .",
        "24.0.2.0.192.rpz-ip.rpz.test. 300 IN CNAME *.",
        "48.zz.101.db8.2001.rpz-ip CNAME .",
        "32.7.2.0.192.rpz-ip CNAME rpz-passthru.",
        "24.1.2.0.192.rpz-ip CNAME .",
        "33.1.2.0.192.rpz-ip CNAME .",
        "*.24.0.2.0.192.rpz-ip CNAME .",
        "rpz-ip CNAME .",
        "32.1.2.0.192.rpz-ip CNAME rpz-drop.",
    ]);
    let net = |n: &str, k| (Outcome::Entries, 0, vec![(n.to_owned(), k)]);
    assert_eq!(r[0], net("192.0.2.1/32", Nxdomain));
    assert_eq!(r[1], net("192.0.2.0/24", Nodata));
    assert_eq!(r[2], net("2001:db8:101::/48", Nxdomain));
    assert_eq!(r[3], net("192.0.2.7/32", Passthru));
    for (i, bad) in r.iter().enumerate().skip(4).take(4) {
        assert!(
            matches!(bad, (Outcome::Invalid(_), 0, nets) if nets.is_empty()),
            "{i}: {bad:?}"
        );
    }
    let Outcome::Invalid(why) = &r[4].0 else {
        panic!()
    };
    assert!(why.contains("192.0.2.0/24"), "{why}");
    assert_eq!(r[8].0, Outcome::Unsupported("RPZ rpz-drop action"));
    // Without a callback for them, networks are not names.
    assert_eq!(
        rpz_one("32.1.2.0.192.rpz-ip CNAME ."),
        (Outcome::Entries, vec![])
    );
}

#[test]
fn rpz_local_data() {
    for line in [
        "a.com A 1.2.3.4",
        "a.com 300 IN AAAA ::1",
        "a.com TXT \"blocked; by policy\"",
        "a.com MX 10 mail.a.com.",
        "a.com TYPE65 \\# 0",
        "a.com DNAME other.",
    ] {
        assert_eq!(rpz_one(line), unsupported("RPZ local data"), "{line}");
    }
}

#[test]
fn rpz_directives() {
    assert_eq!(rpz_one("$TTL 1h"), skip());
    assert_eq!(rpz_one("$INCLUDE other.zone"), unsupported("$INCLUDE"));
    assert_eq!(
        rpz_one("$GENERATE 1-10 host$ CNAME ."),
        unsupported("$GENERATE")
    );
    assert!(is_invalid(&rpz_one("$ORIGIN")));
    assert!(is_invalid(&rpz_one("$TTL")));
    assert!(is_invalid(&rpz_one("$BOGUS x")));
}

#[test]
fn rpz_blank_owner_continuation() {
    let r = after_soa(&[
        "a.com A 1.2.3.4",
        "      AAAA ::1",
        "      CNAME .",
        "32.1.2.0.192.rpz-ip A 1.2.3.4",
        "      AAAA ::1",
        "@ TXT \"x\"",
        "  TXT \"y\"",
    ]);
    assert_eq!(r[0], unsupported("RPZ local data"));
    assert_eq!(r[1], unsupported("RPZ local data"));
    assert!(is_invalid(&r[2]));
    assert_eq!(r[3], unsupported("RPZ local data"));
    assert_eq!(r[4], unsupported("RPZ local data"));
    assert_eq!(r[5], skip());
    assert_eq!(r[6], skip());
    // No record before: nothing to continue.
    assert!(is_invalid(&one(Format::Rpz, "   CNAME .")));
}

#[test]
fn rpz_origin_change() {
    use EntryKind::*;
    // Without an SOA, every $ORIGIN is the apex of what follows.
    let r = parse_all(
        Format::Rpz,
        &[
            "$ORIGIN one.test.",
            "a.com CNAME .",
            "b.com.one.test. CNAME .",
            "$ORIGIN two.test.",
            "c.com CNAME *.",
            "d.com.two.test. CNAME .",
            "@ NS ns.two.test.",
            "e.com.one.test. CNAME .",
        ],
    );
    assert_eq!(r[1], rpz_entry("a.com", false, Nxdomain));
    assert_eq!(r[2], rpz_entry("b.com", false, Nxdomain));
    assert_eq!(r[3], skip());
    assert_eq!(r[4], rpz_entry("c.com", false, Nodata));
    assert_eq!(r[5], rpz_entry("d.com", false, Nxdomain));
    assert_eq!(r[6], skip());
    assert_eq!(r[7], rpz_entry("e.com.one.test.", false, Nxdomain));
}

#[test]
fn rpz_sub_origin_after_soa() {
    use EntryKind::*;
    // named-compilezone style: "$ORIGIN ." then a relative SOA owner.
    let r = parse_all(
        Format::Rpz,
        &[
            "$ORIGIN .",
            "$TTL 300",
            "rpz.test IN SOA ns.rpz.test. h.rpz.test. 1 2 3 4 5",
            "         NS ns.rpz.test.",
            "$ORIGIN rpz.test.",
            "a.com CNAME .",
            "$ORIGIN com.rpz.test.",
            "www CNAME .",
            "@ CNAME .",
            "b.com.rpz.test. CNAME rpz-passthru.",
            "$ORIGIN rpz.test.",
            "c.com CNAME *.",
        ],
    );
    assert_eq!(r[2], skip());
    assert_eq!(r[3], skip());
    assert_eq!(r[5], rpz_entry("a.com", false, Nxdomain));
    // Owners under a $ORIGIN below the apex are qualified by it.
    assert_eq!(r[7], rpz_entry("www.com", false, Nxdomain));
    assert_eq!(r[8], rpz_entry("com", false, Nxdomain));
    assert_eq!(r[9], rpz_entry("b.com", false, Passthru));
    assert_eq!(r[11], rpz_entry("c.com", false, Nodata));
}

/// Issue 9 (1): a second $ORIGIN below the apex, as vendors write
/// policy zones, qualifies the owners under it; nothing outside the
/// policy zone becomes a trigger.
#[test]
fn r9_owners_are_qualified_by_the_origin_in_force() {
    use EntryKind::*;
    let r = parse_all(
        Format::Rpz,
        &[
            "$ORIGIN rpz.vendor.test.",
            "@ SOA ns.vendor.test. h.vendor.test. 7 3600 600 86400 60",
            "  NS ns.vendor.test.",
            "$ORIGIN sub.example.rpz.vendor.test.",
            "www CNAME .",
            "*.deep CNAME *.",
            "@ CNAME rpz-passthru.",
            "$ORIGIN rpz-ip.rpz.vendor.test.",
            "32.1.0.0.127 CNAME .",
            "$ORIGIN rpz.vendor.test.",
            "plain.example CNAME .",
            "other.test. CNAME .",
            "$ORIGIN elsewhere.test.",
            "x CNAME .",
            "  TXT \"also outside\"",
            "$ORIGIN vendor.test.",
            "www.sub2.example.rpz CNAME .",
        ],
    );
    assert_eq!(r[4], rpz_entry("www.sub.example", false, Nxdomain));
    assert_eq!(r[5], rpz_entry("deep.sub.example", true, Nodata));
    assert_eq!(r[6], rpz_entry("sub.example", false, Passthru));
    // An rpz-ip trigger under its own $ORIGIN: a network (issue 20), not a name.
    assert_eq!(r[8], (Outcome::Entries, vec![]));
    assert_eq!(r[10], rpz_entry("plain.example", false, Nxdomain));
    for (i, owner) in [(11, "other.test."), (13, "x.elsewhere.test.")] {
        let Outcome::Invalid(why) = &r[i].0 else {
            panic!("line {i}: {:?}", r[i]);
        };
        assert_eq!(
            why,
            &format!("owner {owner} is outside the policy zone rpz.vendor.test.")
        );
    }
    assert!(is_invalid(&r[14]), "{:?}", r[14]);
    // A $ORIGIN above the apex: owners below the apex are still inside.
    assert_eq!(r[16], rpz_entry("www.sub2.example", false, Nxdomain));
}

#[test]
fn rpz_relative_origin_and_no_origin() {
    use EntryKind::*;
    let r = parse_all(
        Format::Rpz,
        &[
            "$ORIGIN test.",
            "$ORIGIN rpz",
            "a.com.rpz.test. CNAME .",
            "rpz.test. NS x.",
        ],
    );
    assert_eq!(r[2], rpz_entry("a.com", false, Nxdomain));
    assert_eq!(r[3], skip());
    // No $ORIGIN at all: the SOA owner gives the apex.
    let r = parse_all(
        Format::Rpz,
        &[
            "rpz.test. SOA ns. h. 1 2 3 4 5",
            "a.com.rpz.test. CNAME .",
            "b.com CNAME .",
        ],
    );
    assert_eq!(r[1], rpz_entry("a.com", false, Nxdomain));
    assert_eq!(r[2], rpz_entry("b.com", false, Nxdomain));
    // Neither: relative owners are triggers, absolute ones stay absolute.
    let r = parse_all(
        Format::Rpz,
        &["a.com CNAME .", "b.com. CNAME .", "@ CNAME ."],
    );
    assert_eq!(r[0], rpz_entry("a.com", false, Nxdomain));
    assert_eq!(r[1], rpz_entry("b.com.", false, Nxdomain));
    assert_eq!(r[2], skip());
}

#[test]
fn rpz_parentheses() {
    use EntryKind::*;
    let r = after_soa(&[
        "a.com CNAME ( . )",
        "b.com CNAME (",
        "   . )",
        "c.com (",
        "  CNAME . )",
        "d.com CNAME .",
        "e.com A 1.2.3.4 )",
        "f.com TXT \"(\" ; (",
        "g.com CNAME .",
    ]);
    assert_eq!(r[0], rpz_entry("a.com", false, Nxdomain));
    assert_eq!(r[1], unsupported(RPZ_SPLIT));
    assert_eq!(r[2], skip());
    assert_eq!(r[3], unsupported(RPZ_SPLIT));
    assert_eq!(r[4], skip());
    assert_eq!(r[5], rpz_entry("d.com", false, Nxdomain));
    assert!(is_invalid(&r[6]));
    assert_eq!(r[7], unsupported("RPZ local data"));
    assert_eq!(r[8], rpz_entry("g.com", false, Nxdomain));
}

#[test]
fn rpz_unclosed_parenthesis_swallows_a_bounded_number_of_lines() {
    let mut lines = vec!["a.com TXT ( \"oops\""];
    lines.extend(std::iter::repeat_n(
        "b.com CNAME .",
        MAX_OPEN_LINES as usize,
    ));
    lines.push("c.com CNAME .");
    let r = after_soa(&lines);
    assert_eq!(r[0], unsupported("RPZ local data"));
    for result in &r[1..MAX_OPEN_LINES as usize] {
        assert_eq!(*result, skip());
    }
    assert!(is_invalid(&r[MAX_OPEN_LINES as usize]));
    assert_eq!(
        r[MAX_OPEN_LINES as usize + 1],
        rpz_entry("c.com", false, EntryKind::Nxdomain)
    );
}

#[test]
fn rpz_escapes_and_comments_do_not_confuse_the_tokenizer() {
    use EntryKind::*;
    assert_eq!(
        rpz_one("a\\;b.com CNAME ."),
        rpz_entry("a\\;b.com", false, Nxdomain)
    );
    assert_eq!(
        rpz_one("a.com CNAME . ; ) ( \""),
        rpz_entry("a.com", false, Nxdomain)
    );
    // A stray ')' invalidates the line before anything is emitted.
    assert!(is_invalid(&rpz_one("a.com CNAME . )")));
}

#[test]
fn rpz_comments_and_blank_lines() {
    assert_eq!(rpz_one("; comment"), skip());
    assert_eq!(rpz_one("   ; indented comment"), skip());
    assert_eq!(rpz_one(""), skip());
    assert_eq!(rpz_one("  \t\r"), skip());
}

#[test]
fn rpz_invalid() {
    for line in [
        "a.com",
        "a.com 300 IN",
        "a.com CNAME",
        "a.com CNAME . extra.",
        "a.com 1.2.3.4",
        ") a.com CNAME .",
    ] {
        assert!(is_invalid(&rpz_one(line)), "{line}: {:?}", rpz_one(line));
    }
}
